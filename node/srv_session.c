/*
 * srv_session — sessions and their reply queues (replies leave in request order whatever order they are
 * finished in), authorization of a command against the session's user, and the dispatch of a frame to the
 * room that handles it. Owns: every struct srv_session and struct pending.
 */
#include "node/srv_int.h"

static void pending_free(struct pending *p)
{
	free(p->buf);
	if (p->has_slice)
		plog_slice_release(&p->slice);
	free(p->pieces);
	srv__session_unref(p->ss);
	free(p);
}

static void sent_cb(void *arg, int status)
{
	(void)status;
	pending_free(arg);
}

/* Counts a reply leaving and the time since its request arrived. */
static void observe_latency(struct srv_session *ss, const struct pending *p)
{
	struct srv_tstats *t = &ss->srv->tstats[ss->kind <= SRV_TRANSPORT_LAST ? ss->kind : 0];
	uint64_t us = (uv_hrtime() - p->t0) / 1000u;
	size_t i = 0;
	while (i < LAT_BUCKETS && us > srv__lat_bounds_us[i])
		i++;
	if (i < LAT_BUCKETS)
		t->latency_buckets[i]++;
	t->latency_sum_us += us;
	t->replies++;
}

void srv__flush_queue(struct srv_session *ss)
{
	/* Freeing a closed session's last reply frees the session: hold it until the loop is done. */
	ss->refs++;
	while (ss->head != NULL && ss->head->ready) {
		struct pending *p = ss->head;
		assert(p->seq == ss->seq_out); /* replies leave in request order */
		ss->seq_out++;
		ss->head = p->next;
		if (ss->head == NULL)
			ss->tail = NULL;
		if (ss->closed) {
			pending_free(p);
			continue;
		}
		observe_latency(ss, p);
		size_t n = 1 + (p->has_slice ? p->slice.n_pieces : 0);
		p->pieces = calloc(n, sizeof(*p->pieces));
		if (p->pieces == NULL) {
			pending_free(p);
			continue;
		}
		p->pieces[0] = (struct srv_piece){.mem = p->buf, .fd = -1, .len = p->len};
		for (size_t i = 1; i < n; i++) {
			const struct plog_piece *pp = &p->slice.pieces[i - 1];
			if (pp->file != NULL)
				p->pieces[i] = (struct srv_piece){.fd = pio_fd(ss->srv->pio, pp->file),
								  .off = pp->file_off, .len = pp->len};
			else
				p->pieces[i] = (struct srv_piece){.mem = pp->mem, .fd = -1, .len = pp->len};
		}
		if (ss->send(ss->ctx, p->pieces, n, sent_cb, p) != 0)
			continue; /* the transport called (or will call) sent_cb */
	}
	srv__session_unref(ss);
}

struct pending *srv__pending_new(struct srv_session *ss, const struct frame_request *hdr)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->ss = ss;
	p->hdr = *hdr;
	p->t0 = uv_hrtime();
	p->seq = ss->seq_in++;
	ss->refs++;
	assert(ss->tail == NULL ? ss->head == NULL : ss->tail->next == NULL);
	if (ss->tail != NULL)
		ss->tail->next = p;
	else
		ss->head = p;
	ss->tail = p;
	return p;
}

/*
 * Completes a reply: status (0 or an Iggy code, then the body must be empty) and body bytes (copied).
 * `framed` adds the 4-byte success result section in front of the body.
 */
void srv__finish(struct pending *p, uint32_t status, bool framed, const void *body, size_t body_len)
{
	assert(!p->ready && p->buf == NULL); /* a reply is finished once */
	size_t extra = status == 0 && framed ? 4 : 0;
	/* Error replies carry no body, except Galgo's NotLeader (docs/protocol-extensions.md). */
	if (status != 0 && status != PROTO_E_NOT_LEADER)
		body_len = 0;
	size_t slice_len = p->has_slice ? p->slice.bytes : 0;
	p->len = FRAME_HEADER_SIZE + extra + body_len;
	p->buf = calloc(1, p->len);
	if (p->buf == NULL || frame_reply_encode(p->buf, &p->hdr, (uint32_t)(extra + body_len + slice_len), status) != 0) {
		/* Out of memory or too big: answer with a bare error header. */
		free(p->buf);
		p->len = FRAME_HEADER_SIZE;
		p->buf = calloc(1, p->len);
		if (p->has_slice) {
			plog_slice_release(&p->slice);
			p->has_slice = false;
		}
		if (p->buf != NULL)
			frame_reply_encode(p->buf, &p->hdr, 0, PROTO_E_ERROR);
	} else if (body_len > 0) {
		memcpy(p->buf + FRAME_HEADER_SIZE + extra, body, body_len);
	}
	p->ready = true;
	if (p->buf == NULL) {
		p->len = 0;
	}
	srv__flush_queue(p->ss);
}

void srv__finish_buf(struct pending *p, uint32_t status, bool framed, struct wire_buf *b)
{
	if (wire_buf_error(b) != 0)
		srv__finish(p, PROTO_E_ERROR, framed, NULL, 0);
	else
		srv__finish(p, status, framed, b->p, b->len);
	wire_buf_free(b);
}

/* A committed rejection in the result section (status 0, count 1, the code). */
void srv__reject(struct pending *p, uint32_t code)
{
	uint8_t b[FRAME_RESULT_REJECT_SIZE];
	frame_result_reject(b, code);
	srv__finish(p, 0, false, b, sizeof(b));
}

/* Completes a reply slot with an eviction frame instead of a reply. */
void srv__finish_evict(struct pending *p, const struct frame_request *hdr, uint8_t reason)
{
	struct srv_session *ss = p->ss;
	p->len = FRAME_HEADER_SIZE;
	p->buf = calloc(1, p->len);
	struct frame_eviction e = {.client = hdr->client, .reason = reason};
	if (reason == FRAME_EVICT_INCOMPATIBLE_PROTOCOL) {
		e.protocol_version = FRAME_PROTOCOL_VERSION;
		e.protocol_version_min = FRAME_PROTOCOL_VERSION;
	}
	if (p->buf != NULL)
		frame_eviction_encode(p->buf, &e);
	p->ready = true;
	srv__flush_queue(ss);
}

void srv__evict(struct srv_session *ss, const struct frame_request *hdr, uint8_t reason)
{
	struct pending *p = srv__pending_new(ss, hdr);
	if (p != NULL)
		srv__finish_evict(p, hdr, reason);
}

/* ---- Sessions ---- */


struct srv_session *srv_session_open(struct srv *s, enum srv_transport kind, const char *peer, uint32_t client_id,
				     srv_send_fn send, void *ctx)
{
	struct srv_session *ss = calloc(1, sizeof(*ss));
	if (ss == NULL)
		return NULL;
	ss->srv = s;
	ss->kind = kind;
	snprintf(ss->peer, sizeof(ss->peer), "%s", peer ? peer : "");
	/*
	 * Client ids name consumer-group members in the replicated metadata, so they must be unique in the
	 * cluster, across transports: the node's id (1..31) in the top 5 bits, a counter below. The
	 * transport's own connection number is not used.
	 */
	(void)client_id;
	s->next_client = s->next_client % ((1u << 27) - 1) + 1;
	ss->client_id = ((uint32_t)clu_node_id(s->clu) << 27) | s->next_client;
	ss->send = send;
	ss->ctx = ctx;
	ss->refs = 1;
	ss->next = s->sessions;
	s->sessions = ss;
	return ss;
}

void srv__session_unref(struct srv_session *ss)
{
	if (--ss->refs > 0)
		return;
	free(ss);
}

static void leave_all_groups(struct srv *s, uint32_t client_id)
{
	struct meta_cmd c = {.type = META_REMOVE_MEMBER, .ts = srv__now_us(), .client_id = client_id};
	bool member = false;
	for (uint32_t i = 0; i < s->meta->n_streams && !member; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics && !member; k++) {
			struct meta_topic *t = st->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups && !member; g++)
				member = t->groups[g] != NULL && meta_group_member(t->groups[g], client_id) != NULL;
		}
	}
	if (member)
		srv__commit(s, &c);
}

void srv_session_close(struct srv_session *ss)
{
	struct srv *s = ss->srv;
	for (struct srv_session **pp = &s->sessions; *pp != NULL; pp = &(*pp)->next)
		if (*pp == ss) {
			*pp = ss->next;
			break;
		}
	ss->closed = true;
	leave_all_groups(s, ss->client_id);
	/* Ready replies that were not sent yet go; the others free themselves when they complete. */
	srv__flush_queue(ss);
	srv__session_unref(ss);
}

size_t srv_session_owed(const struct srv_session *ss)
{
	size_t n = 0;
	for (const struct pending *p = ss->head; p != NULL; p = p->next)
		n++;
	return n;
}

size_t srv_owed(const struct srv *s)
{
	size_t n = 0;
	for (const struct srv_session *ss = s->sessions; ss != NULL; ss = ss->next)
		n += srv_session_owed(ss);
	return n;
}

bool srv_session_stale(struct srv_session *ss)
{
	uint32_t member;
	if (ss->attached && srv__session_member(ss, &member) == 0)
		return false; /* a data connection: its parent's heartbeats speak for it */
	struct frame_request h = {.client = ss->vsr_client};
	if (frame_u128_is_zero(h.client))
		h.client.lo = 1;
	srv__evict(ss, &h, FRAME_EVICT_STALE_CLIENT);
	return true;
}

struct meta_user *srv__session_user(struct srv_session *ss)
{
	return ss->bound ? meta_user(ss->srv->meta, ss->user_id) : NULL;
}

/* The open, logged-in session of this node with this client id and login number, or NULL. */
struct srv_session *srv__session_find(struct srv *s, uint32_t client_id, uint64_t session)
{
	for (struct srv_session *o = s->sessions; o != NULL; o = o->next)
		if (o->client_id == client_id && !o->closed && o->bound && o->session == session && session != 0)
			return o;
	return NULL;
}

/*
 * The consumer-group member identity of a session: the parent's client id for an attached data session
 * (see "Poll routing" above), else its own. Returns 0, or PROTO_E_STALE_CLIENT when the parent has logged out,
 * logged in again, closed, or is now another user's.
 */
uint32_t srv__session_member(struct srv_session *ss, uint32_t *member)
{
	*member = ss->client_id;
	if (!ss->attached)
		return 0;
	const struct srv_session *parent = srv__session_find(ss->srv, ss->member_of, ss->parent_session);
	if (parent == NULL || !ss->bound || parent->user_id != ss->user_id)
		return PROTO_E_STALE_CLIENT;
	*member = ss->member_of;
	return 0;
}

/* Whether the session may act; replies 41 (as a result-section rejection) if not. */
bool srv__allowed(struct srv_session *ss, struct pending *p, const struct frame_request *hdr, uint32_t sid, uint32_t tid)
{
	if (srv__may(ss, hdr->operation, hdr->code, sid, tid))
		return true;
	srv__reject(p, PROTO_E_UNAUTHORIZED);
	return false;
}

/* ---- Dispatch ---- */

/*
 * The command table: every command the node serves, what it needs, and the room that handles it.
 * Replicated operations are indexed by their operation byte, NonReplicated commands by their code (a
 * sorted table searched by halves). A handler (fn) takes the request's reply slot itself; a query
 * (srv_read.c) writes its reply body and the table's runner answers it. Authorization is data too: a row
 * names the permission its command asks for (auth.h), and the handler asks srv__may (or srv__allowed,
 * which answers 41) once it has resolved the stream and topic the command names, since Iggy's rules say
 * which error comes first (a missing stream before a missing permission). ANON marks the commands
 * served before a login.
 */
enum {
	CMD_ANON = 1,    /* served before a login */
	CMD_PERM = 2,    /* asks for `perm` on the stream and topic it names (srv__may) */
	CMD_OR_POLL = 4, /* ... or for AUTH_POLL_MESSAGES there (a consumer may read its groups) */
};

struct srv_cmd {
	srv_cmd_fn fn;
	srv_query_fn query;
	uint8_t flags;
	enum auth_action perm;
};

#define PERM(a) CMD_PERM, AUTH_##a
#define NO_PERM 0 /* (perm unread without CMD_PERM) */

static void handle_logout(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	(void)body, (void)len;
	if (ss->bound)
		leave_all_groups(ss->srv, ss->client_id);
	ss->bound = false;
	ss->session = 0;
	ss->attached = false;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p != NULL)
		srv__finish(p, 0, false, NULL, 0);
}

static const struct srv_cmd ops[256] = {
	[FRAME_OP_REGISTER] = {srv__handle_register, NULL, CMD_ANON, NO_PERM},
	[FRAME_OP_LOGOUT] = {handle_logout, NULL, CMD_ANON, NO_PERM},
	[FRAME_OP_CREATE_STREAM] = {srv__meta_create_stream, NULL, PERM(MANAGE_STREAMS)},
	[FRAME_OP_UPDATE_STREAM] = {srv__meta_stream, NULL, PERM(MANAGE_STREAM)},
	[FRAME_OP_DELETE_STREAM] = {srv__meta_stream, NULL, PERM(MANAGE_STREAM)},
	[FRAME_OP_PURGE_STREAM] = {srv__meta_stream, NULL, PERM(MANAGE_STREAM)},
	[FRAME_OP_CREATE_TOPIC] = {srv__meta_create_topic, NULL, PERM(MANAGE_TOPICS)},
	[FRAME_OP_UPDATE_TOPIC] = {srv__meta_topic, NULL, PERM(MANAGE_TOPIC)},
	[FRAME_OP_DELETE_TOPIC] = {srv__meta_topic, NULL, PERM(MANAGE_TOPIC)},
	[FRAME_OP_PURGE_TOPIC] = {srv__meta_topic, NULL, PERM(MANAGE_TOPIC)},
	[FRAME_OP_CREATE_PARTITIONS] = {srv__meta_topic, NULL, PERM(MANAGE_TOPIC)},
	[FRAME_OP_DELETE_PARTITIONS] = {srv__meta_topic, NULL, PERM(MANAGE_TOPIC)},
	[FRAME_OP_DELETE_SEGMENTS] = {srv__handle_delete_segments, NULL, PERM(MANAGE_TOPIC)},
	[FRAME_OP_CREATE_CONSUMER_GROUP] = {srv__meta_group, NULL, PERM(MANAGE_TOPIC)},
	[FRAME_OP_DELETE_CONSUMER_GROUP] = {srv__meta_group, NULL, PERM(MANAGE_TOPIC)},
	[FRAME_OP_JOIN_CONSUMER_GROUP] = {srv__meta_group, NULL, PERM(POLL_MESSAGES)},
	[FRAME_OP_LEAVE_CONSUMER_GROUP] = {srv__meta_group, NULL, PERM(POLL_MESSAGES)},
	[FRAME_OP_CREATE_USER] = {srv__meta_create_user, NULL, PERM(MANAGE_USERS)},
	[FRAME_OP_UPDATE_USER] = {srv__meta_user, NULL, PERM(MANAGE_USERS)},
	[FRAME_OP_DELETE_USER] = {srv__meta_user, NULL, PERM(MANAGE_USERS)},
	[FRAME_OP_CHANGE_PASSWORD] = {srv__meta_user, NULL, PERM(MANAGE_USERS)},
	[FRAME_OP_UPDATE_PERMISSIONS] = {srv__meta_user, NULL, PERM(MANAGE_USERS)},
	[FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN] = {srv__meta_pat, NULL, 0, NO_PERM},
	[FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN] = {srv__meta_pat, NULL, 0, NO_PERM},
	[FRAME_OP_SEND_MESSAGES] = {srv__handle_send, NULL, PERM(SEND_MESSAGES)},
	[FRAME_OP_STORE_CONSUMER_OFFSET] = {srv__handle_offset, NULL, PERM(POLL_MESSAGES)},
	[FRAME_OP_DELETE_CONSUMER_OFFSET] = {srv__handle_offset, NULL, PERM(POLL_MESSAGES)},
};

/* NonReplicated commands, in code order. */
static const struct {
	uint32_t code;
	struct srv_cmd cmd;
} reads[] = {
	{FRAME_CODE_PING, {NULL, srv__q_ping, CMD_ANON, NO_PERM}},
	{FRAME_CODE_GET_STATS, {NULL, srv__q_stats, PERM(READ_SERVERS)}},
	{FRAME_CODE_GET_SNAPSHOT_FILE, {srv__handle_snapshot, NULL, PERM(READ_SERVERS)}},
	{FRAME_CODE_GET_CLUSTER_METADATA, {NULL, srv__q_cluster_metadata, 0, NO_PERM}},
	{FRAME_CODE_DESCRIBE_OPTIONS, {NULL, srv__q_describe_options, 0, NO_PERM}},
	{FRAME_CODE_ATTACH_CONSUMER_SESSION, {srv__handle_attach, NULL, 0, NO_PERM}},
	{FRAME_CODE_GET_ME, {NULL, srv__q_me, 0, NO_PERM}},
	{FRAME_CODE_GET_CLIENT, {NULL, srv__q_clients, PERM(READ_SERVERS)}},
	{FRAME_CODE_GET_CLIENTS, {NULL, srv__q_clients, PERM(READ_SERVERS)}},
	{FRAME_CODE_GET_USER, {NULL, srv__q_user, PERM(READ_USERS)}},
	{FRAME_CODE_GET_USERS, {NULL, srv__q_users, PERM(READ_USERS)}},
	{FRAME_CODE_LOGIN_USER, {srv__handle_legacy_login, NULL, 0, NO_PERM}},
	{FRAME_CODE_GET_PERSONAL_ACCESS_TOKENS, {NULL, srv__q_pats, 0, NO_PERM}},
	{FRAME_CODE_LOGIN_WITH_PERSONAL_ACCESS_TOKEN, {srv__handle_legacy_login, NULL, 0, NO_PERM}},
	{FRAME_CODE_POLL_MESSAGES, {srv__handle_poll, NULL, PERM(POLL_MESSAGES)}},
	{FRAME_CODE_FLUSH_UNSAVED_BUFFER, {NULL, srv__q_unavailable, 0, NO_PERM}},
	{FRAME_CODE_GET_POLL_ROUTING, {srv__handle_routing, NULL, PERM(POLL_MESSAGES)}},
	{FRAME_CODE_POLL_MESSAGES_ON_PRIMARY, {srv__handle_poll, NULL, PERM(POLL_MESSAGES)}},
	{FRAME_CODE_GET_CONSUMER_OFFSET, {srv__handle_offset, NULL, PERM(POLL_MESSAGES)}},
	{FRAME_CODE_GET_CONSUMER_OFFSET_ROUTING, {srv__handle_routing, NULL, PERM(POLL_MESSAGES)}},
	{FRAME_CODE_GET_STREAM, {NULL, srv__q_stream, PERM(READ_STREAM)}},
	{FRAME_CODE_GET_STREAMS, {NULL, srv__q_streams, PERM(READ_STREAMS)}},
	{FRAME_CODE_GET_TOPIC, {NULL, srv__q_topic, PERM(READ_TOPIC)}},
	{FRAME_CODE_GET_TOPICS, {NULL, srv__q_topics, PERM(READ_TOPICS)}},
	{FRAME_CODE_GET_CONSUMER_GROUP, {NULL, srv__q_groups, CMD_PERM | CMD_OR_POLL, AUTH_READ_TOPIC}},
	{FRAME_CODE_GET_CONSUMER_GROUPS, {NULL, srv__q_groups, CMD_PERM | CMD_OR_POLL, AUTH_READ_TOPIC}},
	{FRAME_CODE_SYNC_CONSUMER_GROUP, {NULL, srv__q_groups, CMD_PERM | CMD_OR_POLL, AUTH_READ_TOPIC}},
	{FRAME_CODE_GALGO_PARTITION_LEADERS, {NULL, srv__q_partition_leaders, 0, NO_PERM}},
	{FRAME_CODE_GALGO_SET_REDIRECT, {NULL, srv__q_set_redirect, 0, NO_PERM}},
	{FRAME_CODE_GALGO_ADD_NODE, {srv__handle_membership, NULL, PERM(MANAGE_SERVERS)}},
	{FRAME_CODE_GALGO_REMOVE_NODE, {srv__handle_membership, NULL, PERM(MANAGE_SERVERS)}},
	{FRAME_CODE_GALGO_DRAIN, {srv__handle_drain, NULL, PERM(MANAGE_SERVERS)}},
};

static const struct srv_cmd *read_cmd(uint32_t code)
{
	size_t lo = 0, hi = sizeof(reads) / sizeof(reads[0]);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (reads[mid].code == code)
			return &reads[mid].cmd;
		if (reads[mid].code < code)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Whether the NonReplicated table is in code order (checked once: the search above depends on it). */
static bool reads_sorted(void)
{
	for (size_t i = 1; i < sizeof(reads) / sizeof(reads[0]); i++)
		if (reads[i - 1].code >= reads[i].code)
			return false;
	return true;
}

static const struct srv_cmd *cmd_of(uint8_t op, uint32_t code)
{
	return op == FRAME_OP_NON_REPLICATED ? read_cmd(code) : &ops[op];
}

bool srv__may(struct srv_session *ss, uint8_t op, uint32_t code, uint32_t sid, uint32_t tid)
{
	const struct srv_cmd *c = cmd_of(op, code);
	if (c == NULL || !(c->flags & CMD_PERM))
		return true;
	const struct meta_user *u = srv__session_user(ss);
	return auth_allowed(u, c->perm, sid, tid) || ((c->flags & CMD_OR_POLL) && auth_allowed(u, AUTH_POLL_MESSAGES, sid, tid));
}

static void answer(struct srv_session *ss, const struct frame_request *hdr, uint32_t status)
{
	struct pending *p = srv__pending_new(ss, hdr);
	if (p != NULL)
		srv__finish(p, status, false, NULL, 0);
}

void srv_session_frame(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	static int sorted = -1;
	if (sorted < 0 && (sorted = reads_sorted()) != 1) {
		glog_error(TAG, "the NonReplicated command table is out of order");
		abort();
	}
	if (ss->closed)
		return;
	ss->srv->tstats[ss->kind <= SRV_TRANSPORT_LAST ? ss->kind : 0].requests++;
	if (glog_get_level() <= GLOG_DEBUG)
		glog_debug(TAG, "client %u: %s%s%s (code %u), %zu bytes", ss->client_id, frame_op_name(hdr->operation),
			   hdr->operation == FRAME_OP_NON_REPLICATED ? " " : "",
			   hdr->operation == FRAME_OP_NON_REPLICATED ? frame_code_name(hdr->code) : "", hdr->code, len);
	if (frame_request_checksum_verify(hdr, body, len) != 0) {
		answer(ss, hdr, PROTO_E_INVALID_FORMAT);
		return;
	}
	bool read = hdr->operation == FRAME_OP_NON_REPLICATED;
	const struct srv_cmd *c = read ? read_cmd(hdr->code) : &ops[hdr->operation];
	if (c != NULL && c->fn == NULL && c->query == NULL)
		c = NULL;
	if (!ss->bound && (c == NULL || !(c->flags & CMD_ANON))) {
		/* Before a login: a read is refused (40), any other operation evicts the client (reference §1). */
		if (read)
			answer(ss, hdr, PROTO_E_UNAUTHENTICATED);
		else
			srv__evict(ss, hdr, FRAME_EVICT_NO_SESSION);
		return;
	}
	if (c == NULL)
		answer(ss, hdr, read && frame_code_is_known(hdr->code) ? PROTO_E_FEATURE_UNAVAILABLE : PROTO_E_INVALID_COMMAND);
	else if (c->fn != NULL)
		c->fn(ss, hdr, body, len);
	else
		srv__query(ss, hdr, body, len, c->query);
}
