/*
 * srv_read — the read-only queries (NonReplicated commands that change nothing: streams, topics, users,
 * clients, stats, cluster metadata, Galgo's extensions) and the routing of every NonReplicated code to its
 * room. Owns no state.
 */
#include "node/srv_int.h"

/*
 * The queries: each reads its request body from r and writes its reply body into b, and returns 0, or the
 * Iggy status to answer instead (PROTO_E_INVALID_COMMAND for a malformed body, PROTO_E_UNAUTHORIZED, a not-found
 * code); srv__query runs them (node/srv_session.c's command table names them).
 */

uint32_t srv__q_ping(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)ss, (void)code, (void)r, (void)b;
	return 0;
}

uint32_t srv__q_stats(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code, (void)r;
	if (!srv__may(ss, FRAME_OP_NON_REPLICATED, code, 0, 0))
		return PROTO_E_UNAUTHORIZED;
	srv__put_stats(ss->srv, b);
	return 0;
}

/* GetPartitionLeaders: no body, the original reply; a flags byte asks for appended sections (1: node status). */
uint32_t srv__q_partition_leaders(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code;
	uint8_t flags = r->len > 0 ? wire_get_u8(r) : 0;
	if (wire_rd_done(r) != 0 || (flags & ~1u) != 0)
		return PROTO_E_INVALID_COMMAND;
	srv__put_partition_leaders(ss->srv, b);
	if (flags & 1)
		srv__put_node_status(ss->srv, b);
	return 0;
}

uint32_t srv__q_set_redirect(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code, (void)b;
	uint8_t mode = wire_get_u8(r);
	if (wire_rd_done(r) != 0 || mode > 1)
		return PROTO_E_INVALID_COMMAND;
	ss->redirect = mode == 1;
	return 0;
}

uint32_t srv__q_cluster_metadata(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code, (void)r;
	srv__put_cluster(ss->srv, b);
	return 0;
}

uint32_t srv__q_describe_options(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)ss, (void)code;
	uint8_t scope = wire_get_u8(r);
	if (wire_rd_done(r) != 0 || scope < 1 || scope > 3)
		return PROTO_E_INVALID_COMMAND;
	if (scope == 1)
		srv__put_topic_option_catalog(b);
	else
		wire_put_u32(b, 0);
	return 0;
}

uint32_t srv__q_me(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code, (void)r;
	srv__put_client(ss->srv, b, ss, true);
	return 0;
}

/* GetClient (one, by id) and GetClients. */
uint32_t srv__q_clients(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	bool one = code == FRAME_CODE_GET_CLIENT;
	uint32_t id = one ? wire_get_u32(r) : 0;
	if (one && wire_rd_done(r) != 0)
		return PROTO_E_INVALID_COMMAND;
	if (!srv__may(ss, FRAME_OP_NON_REPLICATED, code, 0, 0))
		return PROTO_E_UNAUTHORIZED;
	for (struct srv_session *o = ss->srv->sessions; o != NULL; o = o->next)
		if (!one || o->client_id == id)
			srv__put_client(ss->srv, b, o, one);
	return 0;
}

uint32_t srv__q_user(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code;
	struct wire_id uid;
	wire_get_id(r, &uid);
	if (wire_rd_done(r) != 0)
		return PROTO_E_INVALID_COMMAND;
	struct meta_user *me = srv__session_user(ss), *u = srv__find_user(ss->srv, &uid);
	if (u != NULL && u != me && !srv__may(ss, FRAME_OP_NON_REPLICATED, code, 0, 0))
		return PROTO_E_UNAUTHORIZED;
	if (u != NULL)
		srv__put_user_details(b, u);
	return 0;
}

uint32_t srv__q_users(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code, (void)r;
	const struct meta *m = ss->srv->meta;
	if (!srv__may(ss, FRAME_OP_NON_REPLICATED, code, 0, 0))
		return PROTO_E_UNAUTHORIZED;
	for (uint32_t i = 0; i < m->n_users; i++)
		if (m->users[i] != NULL)
			srv__put_user_header(b, m->users[i]);
	return 0;
}

uint32_t srv__q_pats(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code, (void)r;
	const struct meta_user *me = srv__session_user(ss);
	for (uint32_t i = 0; me != NULL && i < me->n_pats; i++) {
		const char *name = me->pats[i].name;
		reply_put_pat(b, &(struct reply_pat){{(const uint8_t *)name, strlen(name)}, me->pats[i].expiry_at});
	}
	return 0;
}

uint32_t srv__q_stream(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code;
	struct wire_id sid;
	wire_get_id(r, &sid);
	if (wire_rd_done(r) != 0)
		return PROTO_E_INVALID_COMMAND;
	struct meta_stream *st = srv__find_stream(ss->srv, &sid);
	if (st == NULL)
		return 0;
	if (!srv__may(ss, FRAME_OP_NON_REPLICATED, code, st->id, 0))
		return PROTO_E_UNAUTHORIZED;
	srv__put_stream_header(ss->srv, b, st);
	for (uint32_t i = 0; i < st->n_topics; i++)
		if (st->topics[i] != NULL)
			srv__put_topic_header(ss->srv, b, st->topics[i]);
	return 0;
}

uint32_t srv__q_streams(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code, (void)r;
	const struct meta *m = ss->srv->meta;
	if (!srv__may(ss, FRAME_OP_NON_REPLICATED, code, 0, 0))
		return PROTO_E_UNAUTHORIZED;
	for (uint32_t i = 0; i < m->n_streams; i++)
		if (m->streams[i] != NULL)
			srv__put_stream_header(ss->srv, b, m->streams[i]);
	return 0;
}

uint32_t srv__q_topic(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code;
	struct wire_id sid, tid;
	wire_get_id(r, &sid);
	wire_get_id(r, &tid);
	if (wire_rd_done(r) != 0)
		return PROTO_E_INVALID_COMMAND;
	struct meta_stream *st = srv__find_stream(ss->srv, &sid);
	struct meta_topic *t = srv__find_topic(st, &tid);
	if (t == NULL)
		return 0;
	if (!srv__may(ss, FRAME_OP_NON_REPLICATED, code, st->id, t->id))
		return PROTO_E_UNAUTHORIZED;
	srv__put_topic_header(ss->srv, b, t);
	srv__put_partitions(ss->srv, b, t);
	return 0;
}

uint32_t srv__q_topics(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)code;
	struct wire_id sid;
	wire_get_id(r, &sid);
	if (wire_rd_done(r) != 0)
		return PROTO_E_INVALID_COMMAND;
	struct meta_stream *st = srv__find_stream(ss->srv, &sid);
	if (st != NULL && !srv__may(ss, FRAME_OP_NON_REPLICATED, code, st->id, 0))
		return PROTO_E_UNAUTHORIZED;
	size_t at = wire_put_reserve(b, 4);
	uint32_t n = 0;
	for (uint32_t i = 0; st != NULL && i < st->n_topics; i++)
		if (st->topics[i] != NULL) {
			srv__put_topic_header(ss->srv, b, st->topics[i]);
			n++;
		}
	wire_patch_u32(b, at, n);
	return 0;
}

/* GetConsumerGroup, GetConsumerGroups and SyncConsumerGroup (this session's member: generation, partitions). */
uint32_t srv__q_groups(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	struct wire_id sid, tid, gid;
	wire_get_id(r, &sid);
	wire_get_id(r, &tid);
	if (code != FRAME_CODE_GET_CONSUMER_GROUPS)
		wire_get_id(r, &gid);
	if (wire_rd_done(r) != 0)
		return PROTO_E_INVALID_COMMAND;
	struct meta_stream *st = srv__find_stream(ss->srv, &sid);
	struct meta_topic *t = srv__find_topic(st, &tid);
	if (t == NULL)
		return st == NULL ? PROTO_E_STREAM_ID_NOT_FOUND : PROTO_E_TOPIC_ID_NOT_FOUND;
	if (!srv__may(ss, FRAME_OP_NON_REPLICATED, code, st->id, t->id))
		return PROTO_E_UNAUTHORIZED;
	if (code == FRAME_CODE_GET_CONSUMER_GROUPS) {
		for (uint32_t i = 0; i < t->n_groups; i++)
			if (t->groups[i] != NULL)
				srv__put_group_details(b, t, t->groups[i], false);
		return 0;
	}
	struct meta_group *g = srv__find_group(t, &gid);
	if (g != NULL && code == FRAME_CODE_GET_CONSUMER_GROUP) {
		srv__put_group_details(b, t, g, true);
	} else if (g != NULL) {
		struct meta_member *m = meta_group_member(g, ss->client_id);
		if (m != NULL) {
			wire_put_u64(b, g->generation);
			wire_put_u32(b, m->n_partitions);
			for (uint32_t i = 0; i < m->n_partitions; i++)
				wire_put_u32(b, m->partitions[i]);
		}
	}
	return 0;
}

/* Known commands Galgo does not serve (GetSnapshotFile, FlushUnsavedBuffer). */
uint32_t srv__q_unavailable(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b)
{
	(void)ss, (void)code, (void)r, (void)b;
	return PROTO_E_FEATURE_UNAVAILABLE;
}

/* Runs a query (srv_cmd.query) in the request's reply slot. */
void srv__query(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len,
		srv_query_fn q)
{
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct wire_buf b;
	wire_buf_init(&b);
	uint32_t status = q(ss, hdr->code, &r, &b);
	if (status == 0) {
		srv__finish_buf(p, 0, false, &b);
	} else {
		wire_buf_free(&b);
		srv__finish(p, status, false, NULL, 0);
	}
}

/* The legacy logins (38, 44): the slot is taken and answered with the eviction. */
void srv__handle_legacy_login(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
			      size_t len)
{
	(void)body, (void)len;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct frame_eviction e = {.client = hdr->client, .reason = FRAME_EVICT_MALFORMED_LOGIN};
	p->len = FRAME_HEADER_SIZE;
	p->buf = calloc(1, p->len);
	if (p->buf != NULL)
		frame_eviction_encode(p->buf, &e);
	p->ready = true;
	srv__flush_queue(ss);
}

/* DeleteSegments (op 138, not result-framed): the n oldest whole segments of a partition. */
void srv__handle_delete_segments(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
				   size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	struct wire_id sid, tid;
	wire_rd_init(&r, body, len);
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	uint32_t pid = wire_get_u32(&r), n = wire_get_u32(&r);
	if (wire_rd_done(&r) != 0) {
		srv__finish(p, PROTO_E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = srv__find_stream(s, &sid);
	struct meta_topic *t = srv__find_topic(st, &tid);
	if (t == NULL) {
		srv__finish(p, st == NULL ? PROTO_E_STREAM_ID_NOT_FOUND : PROTO_E_TOPIC_ID_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!srv__may(ss, hdr->operation, hdr->code, st->id, t->id)) {
		srv__finish(p, PROTO_E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct tparts *tp = srv__tparts_find(s, st->id, t->id);
	struct part *pt = tp != NULL && pid < tp->n ? tp->pp[pid] : NULL;
	if (pt == NULL) {
		srv__finish(p, PROTO_E_PARTITION_NOT_FOUND, false, NULL, 0);
		return;
	}
	/* This replica's segments only: every replica keeps its own retained range (a snapshot covers the rest). */
	int rv = 0;
	uint64_t keep = plog_drop_keep_from(pt->log, n, srv__part_applied(pt));
	if (keep > plog_first_index(pt->log)) {
		rv = srv__part_compact(pt, keep);
		if (rv == 0)
			rv = plog_drop_segments(pt->log, n, keep - 1);
	}
	srv__finish(p, rv < 0 ? PROTO_E_ERROR : 0, false, NULL, 0);
}
