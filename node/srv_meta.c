/*
 * srv_meta — the metadata pipeline: metadata commands decoded and authorized (handle_meta), submitted to
 * the metadata Raft group directly on its leader or forwarded to it (META_FWD), and answered once the
 * entry is committed and applied here (the mwait ring); what an applied command does to the rest of the
 * node (meta_effects: partitions to open or close, groups to reconcile) and the metadata group's
 * snapshots. Owns: s->mwaits and the applied-results ring, the metadata group's callbacks (srv__meta_ops).
 */
#include "node/srv_int.h"

static void mwait_free(struct mwait *w)
{
	free(w->enc);
	meta_perms_free(&w->perms);
	wire_buf_free(&w->body);
	free(w);
}

static void mwait_unlink(struct srv *s, struct mwait *w)
{
	assert(!(w->sent && w->placed)); /* one state at a time: forwarded, or placed, or neither */
	srv__dl_cancel(s, &w->dl);
	for (struct mwait **pp = &s->mwaits; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			return;
		}
}

/* Not applied here in time: its outcome is unknown (it may still be applied). */
static void mwait_expired(struct srv *s, struct srv_dl *d)
{
	srv__mwait_done(s, SRV_DL_OWNER(d, struct mwait, dl), -ETIMEDOUT, 0, NULL);
}

void srv__mwait_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	mwait_unlink(s, w);
	if (w->done != NULL)
		w->done(s, w, status, rv, res);
	mwait_free(w);
}

static const struct mresult *ring_find(const struct srv *s, uint64_t index)
{
	const struct mresult *r = &s->ring[index % (sizeof(s->ring) / sizeof(s->ring[0]))];
	return r->index == index && index != 0 ? r : NULL;
}

/* The entry at w's index has been applied here: resolve w if the ring still knows the outcome. */
static bool mwait_try_resolve(struct srv *s, struct mwait *w)
{
	if (!w->placed || s->meta_applied < w->index)
		return false;
	if (w->barrier) {
		srv__mwait_done(s, w, 0, 0, NULL);
		return true;
	}
	const struct mresult *r = ring_find(s, w->index);
	if (r == NULL || r->term != w->term)
		srv__mwait_done(s, w, r == NULL ? -ETIMEDOUT : -ECANCELED, 0, NULL);
	else
		srv__mwait_done(s, w, 0, r->rv, &r->res);
	return true;
}

/*
 * The node table goes into the metadata log before any command that places partitions: a leader that
 * finds it unset submits NODES_INIT (the configured roster) ahead of its first command, once per term.
 * Log order then puts it before every later command; a second INIT (two leaders in a row before the
 * first applied) changes nothing.
 */
static int nodes_init_submit(struct srv *s)
{
	struct rgroup_status st;
	clu_group_status(s->mg, &st);
	if (s->meta->n_nodes > 0 || s->init_term == st.term)
		return 0;
	struct meta_cmd c = {.type = META_NODES_INIT, .replication_factor = (uint8_t)s->cfg->cluster.replication_factor};
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	for (size_t i = 0; i < n && i < META_MAX_NODES; i++) {
		struct meta_node *mn = &c.nodes[c.n_nodes++];
		mn->id = (uint32_t)nodes[i].id;
		snprintf(mn->host, sizeof(mn->host), "%s", nodes[i].host);
		mn->raft_port = nodes[i].raft_port;
		mn->tcp_port = nodes[i].tcp_port;
		mn->quic_port = nodes[i].quic_port;
		mn->http_port = nodes[i].http_port;
	}
	struct wire_buf b;
	wire_buf_init(&b);
	int rv = metarec_encode(&c, &b);
	uint64_t index, term;
	if (rv == 0)
		rv = clu_group_submit(s->mg, b.p, (uint32_t)b.len, &index, &term);
	wire_buf_free(&b);
	if (rv == 0) {
		s->init_term = term;
		glog_info(TAG, "node table of %zu nodes submitted (entry %" PRIu64 ")", n, index);
	}
	return rv;
}

/* Submits w to the local replica when it leads, or forwards it to the leader. */
void srv__mwait_push(struct srv *s, struct mwait *w)
{
	uint64_t now = srv__mono_ms();
	if (w->barrier && clu_group_leader(s->mg)) {
		struct rgroup_status st;
		clu_group_status(s->mg, &st);
		w->sent = false; /* a forward that had no answer yet is superseded */
		w->placed = true;
		w->index = st.commit_index;
		mwait_try_resolve(s, w);
		srv__house_arm(s); /* a waiter left runs to its deadline even if nothing more is applied */
		return;
	}
	if (clu_group_leader(s->mg)) {
		uint64_t index, term;
		int rv = nodes_init_submit(s);
		if (rv == 0)
			rv = clu_group_submit(s->mg, w->enc, (uint32_t)w->enc_len, &index, &term);
		if (rv == 0) {
			w->sent = false;
			w->placed = true;
			w->index = index;
			w->term = term;
			mwait_try_resolve(s, w);
			/*
			 * Its deadline must run even if the entry never commits: a leader that has lost its quorum
			 * applies nothing more (seen: an auto-commit poll on a metadata leader whose two peers
			 * stopped never got a reply).
			 */
			srv__house_arm(s);
			return;
		}
		/* -EBUSY: called from within an apply (rgroup refuses reentry); the housekeeping timer retries. */
		if (rv != -EPERM && rv != -EAGAIN && rv != -EBUSY) {
			srv__mwait_done(s, w, rv, 0, NULL);
			return;
		}
	} else {
		uint64_t leader = clu_group_leader_id(s->mg);
		if (leader != 0 && leader != clu_node_id(s->clu)) {
			uint8_t h[8];
			record_put64(h, w->req_id);
			uv_buf_t b[2] = {uv_buf_init((char *)h, sizeof(h)), uv_buf_init((char *)w->enc, (unsigned)w->enc_len)};
			if (clu_send(s->clu, leader, CLU_KIND_META_FWD, b, w->enc_len > 0 ? 2 : 1) == 0) {
				w->sent = true;
				w->retry_at = now + 1000; /* no answer within a second: ask again */
				srv__house_arm(s);
				return;
			}
		}
	}
	w->retry_at = now + RETRY_MS;
	srv__house_arm(s);
}

/*
 * Replicates a command: done(s, w, status, rv, res) runs once its entry has been applied here (status 0;
 * rv is meta_apply's verdict) or it failed (status < 0: not replicated within the deadline, or replaced
 * after a leader change; its outcome is then unknown to the client). Returns the waiter (to attach a
 * pending request and a reply builder), or NULL when the command cannot be encoded or memory is short.
 */
struct mwait *srv__meta_submit(struct srv *s, const struct meta_cmd *c, mdone_fn done)
{
	struct mwait *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	wire_buf_init(&w->body);
	struct wire_buf b;
	wire_buf_init(&b);
	if (metarec_encode(c, &b) != 0 || b.len == 0) {
		wire_buf_free(&b);
		free(w);
		return NULL;
	}
	w->enc = b.p;
	w->enc_len = b.len;
	if (metarec_decode(w->enc, w->enc_len, &w->c, &w->perms) != 0) {
		free(w->enc);
		free(w);
		return NULL;
	}
	w->done = done;
	w->req_id = ++s->next_req;
	srv__dl_add(s, &w->dl, srv__mono_ms() + META_DEADLINE_MS, mwait_expired);
	w->admit_by = srv__mono_ms() + ADMIT_MS;
	w->next = s->mwaits;
	s->mwaits = w;
	return w;
}

/* Fire and forget (consumer offsets, group membership, housekeeping). */
int srv__commit(struct srv *s, const struct meta_cmd *c)
{
	struct mwait *w = srv__meta_submit(s, c, NULL);
	if (w == NULL)
		return -ENOMEM;
	srv__mwait_push(s, w);
	return 0;
}

/*
 * A read barrier ("read index", dissertation §6.4, without the leader's heartbeat round): done(s, w, ...)
 * runs once this node has applied everything the metadata leader had committed when asked, or after 2 s
 * (ADMIT_MS) without that (a non-zero status). A follower passes one before a login, so that a password or user
 * changed through another node is seen.
 */
int srv__meta_barrier(struct srv *s, mdone_fn done, void *arg)
{
	struct mwait *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	wire_buf_init(&w->body);
	w->barrier = true;
	w->done = done;
	w->arg = arg;
	w->req_id = ++s->next_req;
	/* A barrier takes a round trip and an apply; one that has not come back within ADMIT_MS fails. */
	srv__dl_add(s, &w->dl, srv__mono_ms() + ADMIT_MS, mwait_expired);
	w->admit_by = srv__mono_ms() + ADMIT_MS;
	w->next = s->mwaits;
	s->mwaits = w;
	srv__mwait_push(s, w); /* (done may already have run) */
	return 0;
}

/* The metadata leader's side of a forwarded command: submit it and say where it went. */
void srv__on_meta_fwd(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	if (len < 8)
		return;
	uint8_t out[8 + 4 + 8 + 8];
	memcpy(out, buf, 8);
	uint64_t index = 0, term = 0;
	int rv = -EPERM;
	struct meta_cmd c;
	struct meta_perms scratch;
	if (len == 8) {
		/* A read barrier: the commit index the asking node must apply before it answers a read. */
		if (clu_group_leader(s->mg)) {
			struct rgroup_status st;
			clu_group_status(s->mg, &st);
			rv = 0;
			index = st.commit_index;
		}
	} else if (metarec_decode((const uint8_t *)buf + 8, len - 8, &c, &scratch) != 0) {
		rv = -EBADMSG;
	} else {
		meta_perms_free(&scratch);
		/*
		 * The origin re-sends a command it got no answer for; submitting it twice would apply it twice.
		 * Request ids only grow per origin, so the slot is a function of both.
		 */
		uint64_t req = record_le64(buf);
		size_t slot = (size_t)((req * 31 + from) % (sizeof(s->taken) / sizeof(s->taken[0])));
		if (s->taken[slot].from == from && s->taken[slot].req_id == req) {
			rv = 0;
			index = s->taken[slot].index;
			term = s->taken[slot].term;
		} else if (clu_group_leader(s->mg)) {
			rv = clu_group_submit(s->mg, (const uint8_t *)buf + 8, (uint32_t)(len - 8), &index, &term);
			if (rv == 0) {
				s->taken[slot].from = from;
				s->taken[slot].req_id = req;
				s->taken[slot].index = index;
				s->taken[slot].term = term;
			}
		}
	}
	record_put32(out + 8, (uint32_t)-rv);
	record_put64(out + 12, index);
	record_put64(out + 20, term);
	uv_buf_t b = uv_buf_init((char *)out, sizeof(out));
	clu_send(s->clu, from, CLU_KIND_META_REPLY, &b, 1);
}

void srv__on_meta_reply(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	(void)from;
	if (len != 28)
		return;
	const uint8_t *p = buf;
	uint64_t req = record_le64(p);
	int rv = -(int)record_le32(p + 8);
	for (struct mwait *w = s->mwaits; w != NULL; w = w->next) {
		if (w->req_id != req || !w->sent || w->placed)
			continue;
		w->sent = false;
		if (rv == 0) {
			w->placed = true;
			w->index = record_le64(p + 12);
			w->term = record_le64(p + 20);
			mwait_try_resolve(s, w);
		} else if (rv == -EBADMSG) {
			srv__mwait_done(s, w, rv, 0, NULL);
		} else {
			w->retry_at = srv__mono_ms() + RETRY_MS; /* not the leader (any more), or busy */
			srv__house_arm(s);
		}
		return;
	}
}

/* ---- Metadata writes ---- */

/* A metadata write waiting for durability, with its reply payload ready. */
/* Answers a metadata write once its entry was applied here (or failed). */
static void meta_reply_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	if (w->p == NULL)
		return;
	if (status == -EAGAIN) {
		srv__reject(w->p, PROTO_E_TRANSIENT_NOT_ACCEPTED);
	} else if (status != 0) {
		srv__finish(w->p, PROTO_E_ERROR, false, NULL, 0);
	} else if (rv != META_OK) {
		if (w->pat && rv == PROTO_E_PERSONAL_ACCESS_TOKENS_LIMIT_REACHED)
			srv__finish(w->p, PROTO_E_PERSONAL_ACCESS_TOKENS_LIMIT_REACHED, false, NULL, 0);
		else
			srv__reject(w->p, (uint32_t)(rv < 0 ? PROTO_E_ERROR : rv));
	} else if (w->pat) {
		srv__finish_buf(w->p, 0, true, &w->body);
	} else {
		struct wire_buf body;
		wire_buf_init(&body);
		if (w->build != NULL)
			w->build(s, &body, &w->c, res);
		const struct clu_node *nodes;
		struct lwait *lw = NULL;
		if ((w->c.type == META_CREATE_TOPIC || w->c.type == META_CREATE_PARTITIONS) &&
		    clu_nodes(s->clu, &nodes) > 1 && (lw = calloc(1, sizeof(*lw))) != NULL) {
			/*
			 * In a cluster a new partition has no leader for a moment (its first election): the reply
			 * waits for them (at most 5 s), as Kafka's CreateTopics does, so that the first send does
			 * not meet the election (and the SDK's 58 replays).
			 */
			lw->p = w->p;
			lw->body = body;
			lw->stream_id = w->c.stream_id;
			lw->topic_id = w->c.type == META_CREATE_TOPIC ? res->id : w->c.topic_id;
			srv__dl_add(s, &lw->dl, srv__mono_ms() + 5000, srv__lwait_expired);
			lw->next = s->lwaits;
			s->lwaits = lw;
			srv__house_arm(s);
			return;
		}
		srv__finish_buf(w->p, 0, true, &body);
		wire_buf_free(&body);
	}
}

/* Whether every partition of a topic hosted here knows its leader. */
bool srv__topic_leaders_known(struct srv *s, uint32_t stream_id, uint32_t topic_id)
{
	struct tparts *tp = srv__tparts_find(s, stream_id, topic_id);
	for (uint32_t i = 0; tp != NULL && i < tp->n; i++)
		if (tp->pp[i] != NULL && clu_group_leader_id(tp->pp[i]->g) == 0)
			return false;
	return true;
}

/*
 * Replicates c through the metadata group and replies with the framed body made by `build` (may be NULL)
 * from this node's state once the entry has been applied here. What the command does to the partitions
 * (opening, deleting, purging logs) happens when it is applied, on every node (see meta_effects).
 */
void srv__meta_write(struct srv *s, struct pending *p, const struct meta_cmd *c,
		       void (*build)(struct srv *s, struct wire_buf *b, const struct meta_cmd *c,
				     const struct meta_result *res))
{
	struct mwait *w = srv__meta_submit(s, c, meta_reply_done);
	if (w == NULL) {
		srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
		return;
	}
	w->p = p;
	w->build = build;
	srv__mwait_push(s, w);
}

/*
 * A purge empties each replica's log where it stands when the command applies, which is one consistent
 * cut only with a single replica; with several it would need to be an entry of each partition's own
 * log. Until then a cluster of more than one node refuses it (5, FeatureUnavailable).
 */
static void purge_write(struct srv *s, struct pending *p, const struct meta_cmd *c)
{
	const struct clu_node *nodes;
	if (clu_nodes(s->clu, &nodes) > 1) {
		srv__finish(p, PROTO_E_FEATURE_UNAVAILABLE, false, NULL, 0);
		return;
	}
	srv__meta_write(s, p, c, NULL);
}

static void build_stream(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)c;
	srv__put_stream_header(s, b, meta_stream(s->meta, res->id));
}

static void build_topic(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, c->stream_id), res->id);
	srv__put_topic_header(s, b, t);
	srv__put_partitions(s, b, t);
}

static void build_user(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)c;
	srv__put_user_details(b, meta_user(s->meta, res->id));
}

static void build_group(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, c->stream_id), c->topic_id);
	srv__put_group_details(b, t, meta_group(t, res->id), true);
}

static void effect_topic(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	uint32_t tid = c->type == META_CREATE_TOPIC ? res->id : c->topic_id;
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, c->stream_id), tid);
	if (t != NULL)
		srv__tparts_sync(s, t);
}

static void effect_delete_topic(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)res;
	srv__tparts_drop(s, c->stream_id, c->topic_id, true);
}

/*
 * Empties each partition log of a topic. The entries go with a snapshot first (at the applied index, its
 * manifest saying offsets restart at 0): without one, the next start would find a log that no longer
 * begins at its bootstrap entry and no snapshot to begin from, and the group would begin again from
 * nothing, losing every message sent after the purge.
 */
static void purge_topic_logs(struct srv *s, uint32_t stream_id, uint32_t topic_id)
{
	struct tparts *tp = srv__tparts_find(s, stream_id, topic_id);
	for (uint32_t i = 0; tp != NULL && i < tp->n; i++) {
		if (tp->logs[i] == NULL)
			continue;
		struct part *pt = tp->pp[i];
		if (pt != NULL) {
			uint64_t applied = srv__part_applied(pt);
			uint8_t manifest[8];
			record_put64(manifest, 0);
			int rv = applied >= plog_first_index(tp->logs[i])
					 ? clu_group_snapshot(pt->g, applied, applied + 1, manifest, sizeof(manifest))
					 : 0;
			if (rv != 0 && rv != -EINVAL) /* -EINVAL: a snapshot at that index exists already */
				glog_warn(TAG, "partition %" PRIu32 "/%" PRIu32 "/%" PRIu32 ": no snapshot before the purge: %s",
					  stream_id, topic_id, i, strerror(-rv));
		}
		plog_purge(tp->logs[i], 0);
		if (pt != NULL) {
			pt->committed_next = 0;
			pt->other_bytes = 0;
		}
	}
}

static void effect_purge(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)res;
	if (c->type == META_PURGE_TOPIC) {
		purge_topic_logs(s, c->stream_id, c->topic_id);
		return;
	}
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		if (tp->stream_id == c->stream_id)
			purge_topic_logs(s, tp->stream_id, tp->topic_id);
}

static void effect_delete_stream(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)res;
	struct tparts *tp = s->parts;
	while (tp != NULL) {
		struct tparts *next = tp->next;
		if (tp->stream_id == c->stream_id)
			srv__tparts_drop(s, tp->stream_id, tp->topic_id, true);
		tp = next;
	}
}

struct still_member {
	uint64_t id;
	bool found;
};

static void member_of_group(void *arg, struct clu_group *g)
{
	struct still_member *sm = arg;
	struct rgroup_member m[2 * CLU_MAX_NODES];
	size_t n = clu_group_members(g, m, sizeof(m) / sizeof(m[0]));
	/*
	 * A group with no configuration yet (a replica moved here, waiting for its leader to add it) may have
	 * any node as that leader, a departed one included: dropping it would refuse the very link that
	 * brings the group here (seen: a removed node leading two partitions could never hand them to the new
	 * node, and once it stopped they had no quorum).
	 */
	if (n == 0)
		sm->found = true;
	for (size_t i = 0; i < n && i < sizeof(m) / sizeof(m[0]) && !sm->found; i++)
		sm->found = m[i].id == sm->id;
}

/*
 * The roster (peers to dial and to accept, the nodes GetClusterMetadata lists): the node table, once set,
 * and a node that left the table for as long as a group hosted here still counts it as a member, so
 * that a removed node stays reachable until the groups have moved off it (it may still be a leader that
 * hands its log to its successor, and it must hear of its removal).
 */
void srv__roster_from_meta(struct srv *s)
{
	if (s->meta->n_nodes == 0)
		return;
	struct clu_node nodes[CLU_MAX_NODES];
	size_t n = 0;
	for (uint32_t i = 0; i < s->meta->n_nodes && n < CLU_MAX_NODES; i++) {
		const struct meta_node *mn = &s->meta->nodes[i];
		struct clu_node *cn = &nodes[n++];
		memset(cn, 0, sizeof(*cn));
		cn->id = mn->id;
		snprintf(cn->host, sizeof(cn->host), "%s", mn->host);
		cn->raft_port = mn->raft_port;
		cn->tcp_port = mn->tcp_port;
		cn->quic_port = mn->quic_port;
		cn->http_port = mn->http_port;
	}
	const struct clu_node *cur;
	size_t nc = clu_nodes(s->clu, &cur);
	for (size_t i = 0; i < nc && n < CLU_MAX_NODES; i++) {
		if (meta_node(s->meta, (uint32_t)cur[i].id) != NULL)
			continue;
		struct still_member sm = {cur[i].id, cur[i].id == clu_node_id(s->clu)}; /* (a node keeps itself) */
		if (!sm.found)
			clu_each_group(s->clu, member_of_group, &sm);
		if (!sm.found)
			continue;
		size_t at = n++;
		while (at > 0 && nodes[at - 1].id > cur[i].id) {
			nodes[at] = nodes[at - 1];
			at--;
		}
		nodes[at] = cur[i];
	}
	bool same = n == nc;
	for (size_t i = 0; same && i < n; i++)
		same = nodes[i].id == cur[i].id && strcmp(nodes[i].host, cur[i].host) == 0 &&
		       nodes[i].raft_port == cur[i].raft_port && nodes[i].tcp_port == cur[i].tcp_port &&
		       nodes[i].quic_port == cur[i].quic_port && nodes[i].http_port == cur[i].http_port;
	if (same)
		return;
	if (clu_set_nodes(s->clu, nodes, n) != 0)
		glog_error(TAG, "the node table cannot become the roster");
}

static void reconcile_parts(struct srv *s);

/* What an applied command does to the partitions, on every node, in log order. */
static void meta_effects(struct srv *s, const struct meta_cmd *c, const struct meta_result *res, bool replay)
{
	switch (c->type) {
	case META_NODES_INIT:
	case META_NODE_ADD:
		srv__roster_from_meta(s);
		break;
	case META_NODE_REMOVE:
		srv__roster_from_meta(s);
		reconcile_parts(s); /* replicas moved: open the new ones here, mark the old ones leaving */
		break;
	case META_CREATE_TOPIC:
	case META_CREATE_PARTITIONS:
	case META_DELETE_PARTITIONS:
		effect_topic(s, c, res);
		break;
	case META_DELETE_TOPIC:
		effect_delete_topic(s, c, res);
		break;
	case META_DELETE_STREAM:
		effect_delete_stream(s, c, res);
		break;
	case META_PURGE_TOPIC:
	case META_PURGE_STREAM:
		/*
		 * A purge empties the logs as they are when it applies. Replaying it at start would also empty
		 * what was appended after it, so a replayed purge is skipped (one cut short by a crash stays
		 * undone: the gap noted in docs/ARCHITECTURE.md).
		 */
		if (!replay)
			effect_purge(s, c, res);
		break;
	default:
		break;
	}
}

/* A committed metadata entry, on every node in log order. */
static void meta_apply_entry(void *ud, const struct rgroup_entry *e)
{
	struct srv *s = ud;
	assert(e->index > s->meta_applied); /* the metadata group applies in index order, each entry once */
	struct mresult *slot = &s->ring[e->index % (sizeof(s->ring) / sizeof(s->ring[0]))];
	memset(slot, 0, sizeof(*slot));
	slot->index = e->index;
	slot->term = e->term;
	slot->rv = -1;
	if (e->type == RECORD_COMMAND) {
		struct meta_cmd c;
		struct meta_perms scratch;
		if (metarec_decode(e->payload, e->length, &c, &scratch) != 0) {
			/* Every replica holds the same bytes: all of them skip it alike. */
			glog_error(TAG, "metadata entry %" PRIu64 " does not decode; skipped", e->index);
		} else {
			slot->rv = meta_apply(s->meta, &c, &slot->res);
			if (slot->rv == META_OK)
				meta_effects(s, &c, &slot->res, e->index <= s->meta_replay_to);
			meta_perms_free(&scratch);
		}
	}
	s->meta_applied = e->index;
	if (!s->root_seen && meta_user(s->meta, 0) != NULL) {
		/* Logins can succeed here from now on (scripts wait for this line). */
		s->root_seen = true;
		glog_info(TAG, "metadata ready: the root user exists");
	}
	for (struct mwait *w = s->mwaits, *next; w != NULL; w = next) {
		next = w->next;
		if (w->placed && w->index <= e->index)
			mwait_try_resolve(s, w);
	}
	if (s->pfwds != NULL)
		srv__pfwd_applied(s);
	if (!s->meta_caught_up && e->index >= s->meta_replay_to) {
		s->meta_caught_up = true;
		if (!s->meta_rebuilt)
			srv__remove_orphans(s);
	}
	if (s->leader_work)
		srv__house_arm(s); /* srv__meta_leader_ready submits: not from within an apply */
}

static void meta_state(void *ud, int state, uint64_t term)
{
	struct srv *s = ud;
	(void)term;
	s->leader_work = state == RAFT_LEADER;
	if (s->leader_work)
		srv__house_arm(s);
}

/* Opens what the metadata names and not open yet, closes and deletes what it no longer names. */
static void reconcile_parts(struct srv *s)
{
	for (struct tparts *tp = s->parts, *next; tp != NULL; tp = next) {
		next = tp->next;
		if (meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id) == NULL)
			srv__tparts_drop(s, tp->stream_id, tp->topic_id, true);
	}
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++)
			if (st->topics[k] != NULL)
				srv__tparts_sync(s, st->topics[k]);
	}
}

/* The metadata state becomes a snapshot's (metarec_snapshot_encode): at open, or installed from the leader. */
static void meta_restore(void *ud, uint64_t index, const void *data, size_t len)
{
	struct srv *s = ud;
	struct meta *m = NULL;
	int rv = metarec_snapshot_decode(data, len, &m);
	if (rv != 0) {
		/* Checksummed on disk and on the wire: this is a bug, and going on would diverge. */
		glog_error(TAG, "metadata snapshot through %" PRIu64 " does not decode (%s); stopping", index,
			   strerror(-rv));
		abort();
	}
	meta_free(s->meta);
	s->meta = m;
	assert(index >= s->meta_applied); /* a snapshot restored never takes the applied state back */
	s->meta_applied = index;
	s->meta_snap = index;
	srv__roster_from_meta(s);
	reconcile_parts(s);
}
void srv__meta_compact(struct srv *s, bool force)
{
	if (s->mg == NULL || s->meta_applied <= s->meta_snap ||
	    (!force && s->meta_applied - s->meta_snap < META_SNAPSHOT_EVERY))
		return;
	struct wire_buf b;
	wire_buf_init(&b);
	if (metarec_snapshot_encode(s->meta, &b) != 0 || b.err != 0) {
		wire_buf_free(&b);
		return;
	}
	uint64_t index = s->meta_applied;
	uint64_t keep = index > META_TRAILING ? index - META_TRAILING + 1 : 1;
	if (keep < plog_first_index(s->mlog))
		keep = plog_first_index(s->mlog);
	int rv = clu_group_snapshot(s->mg, index, keep, b.p, b.len);
	wire_buf_free(&b);
	if (rv != 0) {
		glog_warn(TAG, "metadata snapshot through %" PRIu64 " failed: %s", index, strerror(-rv));
		return;
	}
	s->meta_snap = index;
	if (keep > 1)
		plog_drop_segments(s->mlog, UINT32_MAX, keep - 1);
}

const struct clu_group_ops srv__meta_ops = {meta_apply_entry, meta_state, meta_restore};

/* Topic options at create and update (reference §2.3): known keys, typed values. */
static int parse_topic_option(const struct wire_opt *opt, struct meta_cmd *c, bool update);

static int parse_topic_options(const struct wire_opts *o, struct meta_cmd *c, bool update)
{
	size_t pos = 0;
	struct wire_opt opt;
	while (wire_opts_next(o, &pos, &opt)) {
		int rv = parse_topic_option(&opt, c, update);
		if (rv != 0) {
			glog_info(TAG, "topic option '%.*s' (kind %u, %zu bytes) refused: %d", (int)opt.key.len,
				  (const char *)opt.key.ptr, opt.kind, opt.value.len, rv);
			return rv;
		}
	}
	return 0;
}

/*
 * A number given as a String of 1 to `digits` decimal digits: Iggy's SDKs send option keys they do not know
 * (their `options`) as strings, so Galgo's own numeric options also accept that form.
 */
static bool option_decimal(const struct wire_opt *opt, size_t digits, uint64_t *out)
{
	if (opt->kind != WIRE_KIND_STRING || opt->value.len < 1 || opt->value.len > digits)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < opt->value.len; i++) {
		if (opt->value.ptr[i] < '0' || opt->value.ptr[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(opt->value.ptr[i] - '0');
	}
	*out = v;
	return true;
}

static int parse_topic_option(const struct wire_opt *optp, struct meta_cmd *c, bool update)
{
	const struct wire_opt opt = *optp;
	{
		const char *k = (const char *)opt.key.ptr;
		size_t kl = opt.key.len;
#define KEY_IS(s) (kl == strlen(s) && memcmp(k, s, kl) == 0)
		bool num = opt.kind == WIRE_KIND_UINT64 && opt.value.len == 8;
		uint64_t v = num ? record_le64(opt.value.ptr) : 0;
		if (KEY_IS("compression_algorithm")) {
			if (opt.kind != WIRE_KIND_STRING)
				return PROTO_E_INVALID_OPTION_VALUE;
			if (wire_str_eq(opt.value, "none"))
				c->compression = META_COMPRESSION_NONE;
			else if (wire_str_eq(opt.value, "gzip"))
				c->compression = META_COMPRESSION_GZIP;
			else
				return PROTO_E_INVALID_OPTION_VALUE;
		} else if (KEY_IS("message_expiry")) {
			if (!num)
				return PROTO_E_INVALID_OPTION_VALUE;
			c->message_expiry = v == 0 ? META_NEVER : v;
		} else if (KEY_IS("max_topic_size")) {
			if (!num)
				return PROTO_E_INVALID_OPTION_VALUE;
			c->max_topic_size = v == 0 ? META_NEVER : v;
		} else if (update) {
			return PROTO_E_UNSUPPORTED_OPTION_KEY;
		} else if (KEY_IS("durability")) {
			if (opt.kind != WIRE_KIND_STRING)
				return PROTO_E_INVALID_OPTION_VALUE;
			if (wire_str_eq(opt.value, "fsync"))
				c->durability = META_DURABILITY_FSYNC;
			else if (wire_str_eq(opt.value, "interval"))
				c->durability = META_DURABILITY_INTERVAL;
			else if (wire_str_eq(opt.value, "none"))
				c->durability = META_DURABILITY_NONE;
			else if (wire_str_eq(opt.value, "persisted"))
				c->durability = META_DURABILITY_FSYNC;
			else if (!wire_str_eq(opt.value, "replicated"))
				return PROTO_E_INVALID_OPTION_VALUE;
			/*
			 * Iggy's "replicated" (its SDK's default: acknowledged on a quorum in memory) keeps the
			 * node's configured policy, fsync unless set otherwise: never weaker than asked.
			 */
		} else if (KEY_IS("dedup_window")) {
			if (option_decimal(&opt, 5, &v))
				num = true;
			if (!num || v > DEDUP_WINDOW_MAX)
				return PROTO_E_INVALID_OPTION_VALUE;
			c->dedup_window = v;
		} else if (KEY_IS("enforce_fsync")) {
			if (opt.kind != WIRE_KIND_BOOL || opt.value.len != 1)
				return PROTO_E_INVALID_OPTION_VALUE;
			if (opt.value.ptr[0])
				c->durability = META_DURABILITY_FSYNC;
		} else if (KEY_IS("replication_factor")) {
			/* Replicas of each partition; 0 = the cluster's default; at most the node count is used. */
			if (option_decimal(&opt, 3, &v))
				num = true;
			if (!num || v > META_MAX_REPLICAS || update)
				return PROTO_E_INVALID_OPTION_VALUE;
			c->replication_factor = (uint8_t)v;
		} else if (KEY_IS("segment_size") || KEY_IS("messages_required_to_save") ||
			   KEY_IS("size_of_messages_required_to_save") || KEY_IS("preallocate_segments") ||
			   KEY_IS("consumer_offset_durability")) {
			/* Accepted and not used by a single node. */
		} else {
			return PROTO_E_UNSUPPORTED_OPTION_KEY;
		}
#undef KEY_IS
	}
	return 0;
}

/*
 * The start of every metadata command handler: the request's reply slot (NULL: none could be taken, the
 * request is dropped), a reader over its body and a command stamped with this node's clock.
 */
static struct pending *meta_begin(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len,
				  struct wire_rd *r, struct meta_cmd *c)
{
	wire_rd_init(r, body, len);
	*c = (struct meta_cmd){.type = 0, .ts = srv__now_us()};
	return srv__pending_new(ss, hdr);
}

/* A body that does not decode: InvalidCommand, nothing submitted. */
static void undecodable(struct pending *p)
{
	srv__finish(p, PROTO_E_INVALID_COMMAND, false, NULL, 0);
}

/* CreateStream. */
void srv__meta_create_stream(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct meta_cmd c;
	struct pending *p = meta_begin(ss, hdr, body, len, &r, &c);
	if (p == NULL)
		return;
	struct wire_str name;
	struct wire_opts opts;
	wire_get_name(&r, &name);
	wire_get_options(&r, &opts);
	if (wire_rd_done(&r) != 0) {
		undecodable(p);
		return;
	}
	if (opts.count > 0) {
		srv__reject(p, PROTO_E_UNSUPPORTED_OPTION_KEY);
		return;
	}
	if (!srv__allowed(ss, p, hdr, 0, 0))
		return;
	c.type = META_CREATE_STREAM;
	c.name = (const char *)name.ptr;
	c.name_len = (uint8_t)name.len;
	srv__meta_write(s, p, &c, build_stream);
	return;
}

/* UpdateStream, DeleteStream, PurgeStream. */
void srv__meta_stream(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct meta_cmd c;
	struct pending *p = meta_begin(ss, hdr, body, len, &r, &c);
	if (p == NULL)
		return;
	struct wire_id sid;
	struct wire_str name;
	struct wire_opts opts;
	struct meta_stream *st;
	wire_get_id(&r, &sid);
	if (hdr->operation == FRAME_OP_UPDATE_STREAM) {
		wire_get_name(&r, &name);
		wire_get_options(&r, &opts);
	}
	if (wire_rd_done(&r) != 0) {
		undecodable(p);
		return;
	}
	st = srv__find_stream(s, &sid);
	if (st == NULL) {
		srv__reject(p, PROTO_E_STREAM_ID_NOT_FOUND);
		return;
	}
	if (!srv__allowed(ss, p, hdr, st->id, 0))
		return;
	c.stream_id = st->id;
	if (hdr->operation == FRAME_OP_UPDATE_STREAM) {
		if (opts.count > 0) {
			srv__reject(p, PROTO_E_UNSUPPORTED_OPTION_KEY);
			return;
		}
		c.type = META_UPDATE_STREAM;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		srv__meta_write(s, p, &c, NULL);
	} else if (hdr->operation == FRAME_OP_DELETE_STREAM) {
		c.type = META_DELETE_STREAM;
		srv__meta_write(s, p, &c, NULL);
	} else {
		c.type = META_PURGE_STREAM;
		purge_write(s, p, &c);
	}
	return;
}

/* CreateTopic. */
void srv__meta_create_topic(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct meta_cmd c;
	struct pending *p = meta_begin(ss, hdr, body, len, &r, &c);
	if (p == NULL)
		return;
	struct wire_id sid;
	struct wire_str name;
	struct wire_opts opts;
	struct meta_stream *st;
	int rv;
	wire_get_id(&r, &sid);
	c.count = wire_get_u32(&r);
	wire_get_name(&r, &name);
	wire_get_options(&r, &opts);
	if (wire_rd_done(&r) != 0) {
		undecodable(p);
		return;
	}
	st = srv__find_stream(s, &sid);
	if (st == NULL) {
		srv__reject(p, PROTO_E_STREAM_ID_NOT_FOUND);
		return;
	}
	if (!srv__allowed(ss, p, hdr, st->id, 0))
		return;
	c.type = META_CREATE_TOPIC;
	c.stream_id = st->id;
	c.name = (const char *)name.ptr;
	c.name_len = (uint8_t)name.len;
	c.message_expiry = META_NEVER;
	c.max_topic_size = META_NEVER;
	c.compression = META_COMPRESSION_NONE;
	c.durability = (uint8_t)s->cfg->storage.durability;
	c.replication_factor = 0; /* the cluster's default (cluster.replication_factor) */
	rv = parse_topic_options(&opts, &c, false);
	if (rv != 0) {
		srv__reject(p, (uint32_t)rv);
		return;
	}
	srv__meta_write(s, p, &c, build_topic);
	return;
}

/* UpdateTopic, DeleteTopic, PurgeTopic, CreatePartitions, DeletePartitions. */
void srv__meta_topic(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct meta_cmd c;
	struct pending *p = meta_begin(ss, hdr, body, len, &r, &c);
	if (p == NULL)
		return;
	struct wire_id sid;
	struct wire_id tid;
	struct wire_str name;
	struct wire_opts opts;
	struct meta_stream *st;
	struct meta_topic *t;
	int rv;
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	if (hdr->operation == FRAME_OP_UPDATE_TOPIC) {
		wire_get_name(&r, &name);
		wire_get_options(&r, &opts);
	} else if (hdr->operation == FRAME_OP_CREATE_PARTITIONS ||
		   hdr->operation == FRAME_OP_DELETE_PARTITIONS) {
		c.count = wire_get_u32(&r);
	}
	if (wire_rd_done(&r) != 0) {
		undecodable(p);
		return;
	}
	st = srv__find_stream(s, &sid);
	t = srv__find_topic(st, &tid);
	if (st == NULL || t == NULL) {
		srv__reject(p, st == NULL ? PROTO_E_STREAM_ID_NOT_FOUND : PROTO_E_TOPIC_ID_NOT_FOUND);
		return;
	}
	if (!srv__allowed(ss, p, hdr, st->id, t->id))
		return;
	c.stream_id = st->id;
	c.topic_id = t->id;
	switch (hdr->operation) {
	case FRAME_OP_UPDATE_TOPIC:
		c.type = META_UPDATE_TOPIC;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		c.message_expiry = t->message_expiry;
		c.max_topic_size = t->max_topic_size;
		c.compression = t->compression;
		rv = parse_topic_options(&opts, &c, true);
		if (rv != 0) {
			srv__reject(p, (uint32_t)rv);
			return;
		}
		srv__meta_write(s, p, &c, NULL);
		return;
	case FRAME_OP_DELETE_TOPIC:
		c.type = META_DELETE_TOPIC;
		srv__meta_write(s, p, &c, NULL);
		return;
	case FRAME_OP_PURGE_TOPIC:
		c.type = META_PURGE_TOPIC;
		purge_write(s, p, &c);
		return;
	default:
		c.type = hdr->operation == FRAME_OP_CREATE_PARTITIONS ? META_CREATE_PARTITIONS
								       : META_DELETE_PARTITIONS;
		srv__meta_write(s, p, &c, NULL);
		return;
	}
}

/* CreateConsumerGroup, DeleteConsumerGroup, JoinConsumerGroup, LeaveConsumerGroup. */
void srv__meta_group(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct meta_cmd c;
	struct pending *p = meta_begin(ss, hdr, body, len, &r, &c);
	if (p == NULL)
		return;
	struct wire_id sid;
	struct wire_id tid;
	struct wire_id gid;
	struct wire_str name;
	struct meta_stream *st;
	struct meta_topic *t;
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	if (hdr->operation == FRAME_OP_CREATE_CONSUMER_GROUP)
		wire_get_name(&r, &name);
	else
		wire_get_id(&r, &gid);
	if (wire_rd_done(&r) != 0) {
		undecodable(p);
		return;
	}
	st = srv__find_stream(s, &sid);
	t = srv__find_topic(st, &tid);
	if (st == NULL || t == NULL) {
		srv__reject(p, st == NULL ? PROTO_E_STREAM_ID_NOT_FOUND : PROTO_E_TOPIC_ID_NOT_FOUND);
		return;
	}
	c.stream_id = st->id;
	c.topic_id = t->id;
	if (hdr->operation == FRAME_OP_CREATE_CONSUMER_GROUP) {
		if (!srv__allowed(ss, p, hdr, st->id, t->id))
			return;
		c.type = META_CREATE_GROUP;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		srv__meta_write(s, p, &c, build_group);
		return;
	}
	struct meta_group *g = srv__find_group(t, &gid);
	if (g == NULL) {
		srv__reject(p, PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND);
		return;
	}
	c.group_id = g->id;
	c.client_id = ss->client_id;
	if (hdr->operation == FRAME_OP_DELETE_CONSUMER_GROUP) {
		if (!srv__allowed(ss, p, hdr, st->id, t->id))
			return;
		c.type = META_DELETE_GROUP;
	} else {
		if (!srv__allowed(ss, p, hdr, st->id, t->id))
			return;
		c.type = hdr->operation == FRAME_OP_JOIN_CONSUMER_GROUP ? META_JOIN_GROUP : META_LEAVE_GROUP;
	}
	if (c.type == META_JOIN_GROUP && s->clear_state != 1) {
		/* This node's previous members are not removed yet (clear_own_members): re-issue shortly. */
		srv__finish(p, PROTO_E_TRANSIENT_NOT_ACCEPTED, false, NULL, 0);
		return;
	}
	srv__meta_write(s, p, &c, NULL);
	return;
}

/* CreateUser (the password is hashed on the thread pool first). */
void srv__meta_create_user(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct meta_cmd c;
	struct pending *p = meta_begin(ss, hdr, body, len, &r, &c);
	if (p == NULL)
		return;
	struct wire_str name;
	struct wire_opts opts;
	struct meta_perms perms = {0};
	int rv;
	struct wire_str pw;
	wire_get_name(&r, &name);
	wire_get_str8(&r, &pw);
	c.status = wire_get_u8(&r);
	uint8_t has = wire_get_u8(&r);
	struct wire_perms wp = {0};
	if (has == 1) {
		uint32_t plen = wire_get_u32(&r);
		const uint8_t *pb = wire_get_bytes(&r, plen);
		if (wire_rd_error(&r) == 0 && wire_perms_decode(pb, plen, &wp) != 0)
			wire_rd_fail(&r, WIRE_E_VALUE);
	} else if (has != 0) {
		wire_rd_fail(&r, WIRE_E_VALUE);
	}
	wire_get_options(&r, &opts);
	if (wire_rd_done(&r) != 0 || opts.count > 0) {
		wire_perms_free(&wp);
		if (wire_rd_done(&r) != 0) {
			undecodable(p);
			return;
		}
		srv__reject(p, PROTO_E_UNSUPPORTED_OPTION_KEY);
		return;
	}
	rv = has ? srv__perms_from_wire(&wp, &perms) : 0;
	wire_perms_free(&wp);
	if (rv != 0 || !srv__allowed(ss, p, hdr, 0, 0)) {
		meta_perms_free(&perms);
		if (rv != 0)
			srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
		return;
	}
	if (pw.len < 3 || pw.len > 100) {
		meta_perms_free(&perms);
		srv__reject(p, 44);
		return;
	}
	c.type = META_CREATE_USER;
	c.name = (const char *)name.ptr;
	c.name_len = (uint8_t)name.len;
	c.has_perms = has == 1;
	srv__pw_job_start(s, p, &c, has == 1 ? &perms : NULL, pw, NULL, (struct wire_str){0}, build_user);
	meta_perms_free(&perms);
	return;
}

/* UpdateUser, DeleteUser, UpdatePermissions, ChangePassword. */
void srv__meta_user(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct meta_cmd c;
	struct pending *p = meta_begin(ss, hdr, body, len, &r, &c);
	if (p == NULL)
		return;
	struct wire_id uid;
	struct wire_str name;
	struct wire_opts opts;
	struct meta_perms perms = {0};
	int rv;
	wire_get_id(&r, &uid);
	struct wire_str cur = {0}, nw = {0};
	struct wire_perms wp = {0};
	uint8_t has = 0;
	if (hdr->operation == FRAME_OP_UPDATE_USER) {
		if (wire_get_u8(&r) == 1) {
			wire_get_name(&r, &name);
			c.name = (const char *)name.ptr;
			c.name_len = (uint8_t)name.len;
		}
		if (wire_get_u8(&r) == 1)
			c.status = wire_get_u8(&r);
		wire_get_options(&r, &opts);
	} else if (hdr->operation == FRAME_OP_UPDATE_PERMISSIONS) {
		has = wire_get_u8(&r);
		if (has == 1) {
			uint32_t plen = wire_get_u32(&r);
			const uint8_t *pb = wire_get_bytes(&r, plen);
			if (wire_rd_error(&r) == 0 && wire_perms_decode(pb, plen, &wp) != 0)
				wire_rd_fail(&r, WIRE_E_VALUE);
		}
	} else if (hdr->operation == FRAME_OP_CHANGE_PASSWORD) {
		wire_get_str8(&r, &cur);
		wire_get_str8(&r, &nw);
	}
	if (wire_rd_done(&r) != 0) {
		wire_perms_free(&wp);
		undecodable(p);
		return;
	}
	struct meta_user *u = srv__find_user(s, &uid);
	struct meta_user *me = srv__session_user(ss);
	if (u == NULL) {
		wire_perms_free(&wp);
		srv__reject(p, PROTO_E_RESOURCE_NOT_FOUND);
		return;
	}
	c.user_id = u->id;
	bool self = me != NULL && me->id == u->id;
	if (!(hdr->operation == FRAME_OP_CHANGE_PASSWORD && self) &&
	    !srv__allowed(ss, p, hdr, 0, 0)) {
		wire_perms_free(&wp);
		return;
	}
	if (hdr->operation == FRAME_OP_UPDATE_USER) {
		c.type = META_UPDATE_USER;
	} else if (hdr->operation == FRAME_OP_DELETE_USER) {
		c.type = META_DELETE_USER;
		if (self) {
			srv__reject(p, PROTO_E_CANNOT_DELETE_USER);
			return;
		}
	} else if (hdr->operation == FRAME_OP_UPDATE_PERMISSIONS) {
		rv = has == 1 ? srv__perms_from_wire(&wp, &perms) : 0;
		wire_perms_free(&wp);
		if (rv != 0) {
			srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
			return;
		}
		c.type = META_UPDATE_PERMISSIONS;
		c.has_perms = has == 1;
		c.perms = &perms;
	} else {
		if (nw.len < 3 || nw.len > 100) {
			srv__reject(p, 44);
			return;
		}
		c.type = META_CHANGE_PASSWORD;
		srv__pw_job_start(s, p, &c, NULL, nw, u->password_hash, cur, NULL);
		return;
	}
	srv__meta_write(s, p, &c, NULL);
	meta_perms_free(&perms);
	return;
}

/* CreatePersonalAccessToken (the token is answered once, its hash replicated), DeletePersonalAccessToken. */
void srv__meta_pat(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct meta_cmd c;
	struct pending *p = meta_begin(ss, hdr, body, len, &r, &c);
	if (p == NULL)
		return;
	struct wire_str name;
	wire_get_name(&r, &name);
	uint64_t expiry = 0;
	if (hdr->operation == FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN)
		expiry = wire_get_u64(&r);
	if (wire_rd_done(&r) != 0) {
		undecodable(p);
		return;
	}
	c.user_id = ss->user_id;
	c.name = (const char *)name.ptr;
	c.name_len = (uint8_t)name.len;
	if (hdr->operation == FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN) {
		c.type = META_DELETE_PAT;
		srv__meta_write(s, p, &c, NULL);
		return;
	}
	char token[AUTH_PAT_LEN + 1];
	uint8_t th[32];
	if (auth_pat_generate(token) != 0) {
		srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
		return;
	}
	auth_pat_hash(token, AUTH_PAT_LEN, th);
	c.type = META_CREATE_PAT;
	c.token_hash = th;
	/* 0 and u64::MAX mean never; so does an expiry beyond the clock's range (no wrap to the past). */
	c.expiry_at = expiry == 0 || expiry > UINT64_MAX - c.ts ? 0 : c.ts + expiry;
	struct mwait *w = srv__meta_submit(s, &c, meta_reply_done);
	if (w == NULL) {
		srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
		return;
	}
	w->p = p;
	w->pat = true;
	reply_put_pat_token(&w->body, &(struct reply_pat_token){{(const uint8_t *)token, AUTH_PAT_LEN}});
	srv__mwait_push(s, w);
	return;
}
