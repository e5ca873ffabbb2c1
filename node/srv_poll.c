/*
 * srv_poll — polls and consumer offsets: a poll served from this node's own replica (up to what is
 * committed and, for fsync topics, durable), or forwarded to a replica when this node hosts none
 * (POLL_FWD, node/cluster.h) and its reply relayed; auto-commit and the consumer-offset commands (stored
 * in the metadata); Iggy's poll routing. Owns: s->pfwds (polls forwarded from here).
 *
 * Poll routing (apache-iggy 0.9.0; not in the reference; codes in proto/frame.h). Once
 * GetClusterMetadata lists more than one node, the SDK sends a poll with auto-commit and every
 * consumer-offset write through a "primary": it asks its connection (the parent) for the route (103 or
 * 123), opens a data connection to the node named, logs in there again (its own session, its own client
 * id), attaches that session to the parent's (14) and sends the poll as 104, or the offset write as the
 * ordinary op 161/162, on it. All integers are little-endian; every reply is a plain NonReplicated reply
 * (no result section), and on an error its status is the Iggy code and its body empty.
 *
 *   103 GetPollRouting. Request: a PollMessages body byte for byte, [Consumer][stream Identifier]
 *       [topic Identifier][Optional partition][PollingStrategy][count u32][auto_commit u8]
 *       (primitives in proto/wire.h); auto_commit must be 1. Reply: a route (below).
 *   123 GetConsumerOffsetRouting. Request: a GetConsumerOffset body, [Consumer][stream Identifier]
 *       [topic Identifier][Optional partition] (the prefix of the Store/DeleteConsumerOffset that
 *       follows). Reply: a route.
 *       A route, 52 bytes or more:
 *         off  size field
 *           0    16 client_id   u128: the parent session's client id (GetMe's client_id) zero-extended
 *          16     8 session     u64: the parent session's login number (a new one at each login)
 *          24     8 watermark   u64: the metadata index applied on this node (the SDK echoes it in 14;
 *                               it re-attaches when a later route carries a higher one)
 *          32       node        one node exactly as in GetClusterMetadata: [name_len u32][name]
 *                               [ip_len u32][ip][tcp_port u16][quic_port u16][http_port u16]
 *                               [websocket_port u16][role u8][status u8]
 *       The node is always the answering node itself, with the host and ports it lists for itself in
 *       GetClusterMetadata, role 0 (Iggy marks the primary so) and status 0 (healthy). That is always a
 *       correct primary here: any replica serves polls and writes go to the partition leader through
 *       this node, and the session to attach to is then one of this node's own; a poll of a partition
 *       this node hosts no replica of is forwarded to one (POLL_FWD, node/cluster.h). Errors, checked in
 *       this order as for the command the route is for: 3 a malformed body (or auto_commit ≠ 1), 1009 no
 *       such stream, 2010 no such topic, 41 no poll permission on the topic, 5000 no such consumer group,
 *       3007 no such partition. (A partition this node hosts no replica of is served all the same: its
 *       polls go to a replica, and an offset request asks one for the partition's current offset.)
 *   14 AttachConsumerSession. Request: exactly 32 bytes, [client_id u128][session u64][watermark u64] as a
 *       route gave them (the watermark is not checked: the parent lives on this node, whose metadata it
 *       read). Reply: empty. The parent must be a logged-in session of this node with that client id and
 *       login number, of the same user as the data session; otherwise 30 (StaleClient, which the SDK
 *       treats as "retry": it asks for a new route). 3 for a body that is not 32 bytes. The data
 *       session then borrows the parent's client id as its consumer-group member identity
 *       (srv_session.member_of), and keeps its own client id for everything else: closing it leaves the
 *       parent's groups alone.
 *   104 PollMessagesOnPrimary. Request and reply exactly as PollMessages (100); served the same way, but
 *       only on an attached session (else 40), whose parent must still be logged in with the same login
 *       (else 30). Group ownership is checked against the parent's membership.
 *   On an attached session, 100, 120, 161 and 162 likewise answer 30 when the parent is gone, and a poll
 *   checks group ownership against the parent. (Offsets are keyed by the consumer or the group, never by
 *   the member, and offset writes check no ownership, so the borrowed identity is not otherwise needed.)
 */
#include "node/srv_int.h"

static void offset_resume(struct srv *s, const struct pfwd *f, uint32_t code, const uint8_t *prefix);
static void pfwd_expired(struct srv *s, struct srv_dl *d);

/* Resolves the consumer of a poll or offset request: kind and numeric id (a group's id). */
static int resolve_consumer(const struct meta_topic *t, const struct wire_consumer *wc, uint8_t *kind, uint32_t *id)
{
	*kind = wc->kind;
	if (wc->kind == WIRE_CONSUMER_GROUP) {
		const struct meta_group *g = srv__find_group(t, &wc->id);
		if (g == NULL)
			return PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND;
		*id = g->id;
		return 0;
	}
	*id = wc->id.kind == WIRE_ID_NUMERIC ? wc->id.num : XXH32(wc->id.name.ptr, wc->id.name.len, 0);
	return 0;
}

/*
 * The offset after the last message consumers may see: for fsync topics what is durable (what was
 * acknowledged), for the other policies what is written (they acknowledge on write).
 */
/*
 * Whether this replica may answer a poll in a cluster: it knows a leader, has applied everything it knows
 * to be committed, and either its whole log is committed or an entry of the current term is (before that,
 * entries the previous leader committed may be unknown to a new leader, dissertation §6.4, and to its
 * followers). Right after a restart or an election a replica therefore answers 58 (TransientNotAccepted)
 * for a moment instead of a stale or empty reply. Not closed: a follower restarted empty that has heard
 * from the leader but not yet received entries holds a fully committed log of one entry, and answers
 * empty polls until it catches up. A single node is always readable (it settles before it says ready).
 */
static bool part_readable(struct srv *s, struct part *pt)
{
	const struct clu_node *nodes;
	if (pt == NULL || clu_nodes(s->clu, &nodes) == 1)
		return true;
	/* A stopped group learns no commit: its replica is behind for good until reopened (srv__restart_tick). */
	if (clu_group_failed(pt->g) != 0)
		return false;
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	if (st.leader_id == 0 || st.applied_index < st.commit_index)
		return false;
	/*
	 * A replica whose whole log is known committed lacks no committed entry (a leader holds every one, a
	 * follower learnt its commit index from the leader): libraft appends no barrier for a new leader whose
	 * log is fully committed, so waiting for one would wait forever.
	 */
	if (st.commit_index == st.last_index)
		return true;
	/* (A follower likewise: until it learns a commit of the current term, its commit index may be old.) */
	struct record_env env;
	return st.commit_index > 0 && plog_entry_at(pt->log, st.commit_index, &env) == 0 && env.term == st.term;
}

/* The offset after the last message a consumer may read: the last committed one's. */
static uint64_t served_next(struct srv *s, const struct meta_topic *t, uint32_t pid)
{
	struct tparts *tp = srv__tparts_find(s, t->stream_id, t->id);
	struct part *pt = tp != NULL && pid < tp->n ? tp->pp[pid] : NULL;
	return pt != NULL ? pt->committed_next : 0;
}

/*
 * Where a poll's answer goes: a request of a local session (p), or the node that forwarded the poll to
 * this replica (p NULL; origin and its request id), as POLL_REPLY.
 */
struct poll_to {
	struct pending *p;
	uint64_t origin, req_id;
};

/* A poll once its stream, topic and consumer are resolved: what POLL_FWD carries (node/cluster.h). */
struct poll_args {
	uint32_t pid;
	uint8_t kind;              /* WIRE_CONSUMER_SINGLE or WIRE_CONSUMER_GROUP */
	uint32_t cid;              /* the consumer's numeric id, or the group's id */
	uint8_t strat;             /* WIRE_POLL_* */
	uint64_t value;
	uint32_t count;
	uint8_t auto_commit;
};

/*
 * POLL_FWD and POLL_REPLY (bodies specified in node/cluster.h). A reply's messages are at most what a
 * client frame can carry (the origin relays them in one), so a reply always fits a node-to-node message.
 */
#define POLL_FWD_LEN 47u
#define POLL_REPLY_HDR 20u /* req_id u64, status u32, metadata index u64 */
_Static_assert(POLL_REPLY_HDR + (uint64_t)FRAME_MAX_SIZE - FRAME_HEADER_SIZE <= CLU_MAX_MESSAGE_BYTES,
	       "a forwarded poll's reply must fit a node-to-node message");
/*
 * A forwarded poll unanswered by then is answered 58 (the SDK polls again). Longer than a replica may
 * take to store an auto-commit offset (META_DEADLINE_MS), so that a poll whose offset was stored is not
 * answered "never admitted" while its reply is still on its way.
 */
#define POLL_FWD_DEADLINE_MS (META_DEADLINE_MS + 2000u)

static void poll_reply_remote(struct srv *s, uint64_t origin, uint64_t req_id, uint32_t status, uint64_t meta_index,
			      const uint8_t *body, size_t len)
{
	uint8_t h[POLL_REPLY_HDR];
	record_put64(h, req_id);
	record_put32(h + 8, status);
	record_put64(h + 12, status == 0 ? meta_index : 0);
	uv_buf_t b[2] = {uv_buf_init((char *)h, sizeof(h)), uv_buf_init((char *)body, (unsigned)len)};
	int rv = clu_send(s->clu, origin, CLU_KIND_POLL_REPLY, b, status == 0 && len > 0 ? 2 : 1);
	if (rv != 0)
		glog_warn(TAG, "poll reply to node %" PRIu64 " not sent: %s", origin, strerror(-rv));
}

/*
 * The body of a forwarded poll's reply: the prefix and the slice's bytes, copied (pread for the pieces
 * that are file ranges, on the loop: the page cache serves them in the common case of recent messages).
 * -EMSGSIZE when a client frame could not carry it (the local path then answers an error as well).
 */
static int poll_body_copy(const uint8_t prefix[16], const struct plog_slice *sl, uint8_t **out, size_t *len)
{
	uint64_t n = 16 + (sl != NULL ? sl->bytes : 0);
	if (FRAME_HEADER_SIZE + n > FRAME_MAX_SIZE)
		return -EMSGSIZE;
	uint8_t *b = malloc((size_t)n);
	if (b == NULL)
		return -ENOMEM;
	memcpy(b, prefix, 16);
	int rv = sl != NULL ? plog_slice_copy(sl, b + 16) : 0;
	if (rv != 0) {
		free(b);
		return rv;
	}
	*out = b;
	*len = (size_t)n;
	return 0;
}

/*
 * Answers a poll: status (0 or an Iggy code), the 16-byte prefix (status 0) and the messages (sl, taken
 * over; NULL: none).
 */
static void poll_answer(struct srv *s, const struct poll_to *to, uint32_t status, const uint8_t *prefix,
			struct plog_slice *sl)
{
	if (to->p != NULL) {
		if (status == 0 && sl != NULL) {
			to->p->slice = *sl;
			to->p->has_slice = true;
		} else if (sl != NULL) {
			plog_slice_release(sl);
		}
		srv__finish(to->p, status, false, status == 0 ? prefix : NULL, status == 0 ? 16 : 0);
		return;
	}
	uint8_t *body = NULL;
	size_t len = 0;
	if (status == 0) {
		int rv = poll_body_copy(prefix, sl, &body, &len);
		if (rv != 0) {
			glog_error(TAG, "forwarded poll read failed: %s", strerror(-rv));
			status = PROTO_E_ERROR;
		}
	}
	if (sl != NULL)
		plog_slice_release(sl);
	poll_reply_remote(s, to->origin, to->req_id, status, 0, body, len);
	free(body);
}

/*
 * The reply of a poll with auto-commit leaves once the stored offset is applied here; a forwarded one
 * tells its origin the offset's metadata index, so that the origin relays it once applied there too.
 */
/*
 * The offset of an auto-commit poll is stored (or not): the messages go out only once it is. A poll whose
 * offset could not be stored (this node lost the metadata leadership, or no leader answered in time)
 * answers error 1 and no messages: had it answered them, the next poll with the Next strategy would
 * deliver them again (seen by the jepsen suite on a metadata leader resumed after a pause). Not 58: the
 * store may still commit (an entry of a deposed leader can), and then these messages count as consumed.
 */
static void poll_commit_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)rv;
	(void)res;
	if (status != 0) {
		glog_warn(TAG, "auto-commit of a consumer offset failed: %s; the poll answers error 1",
			  strerror(-status));
		if (w->p != NULL) {
			if (w->p->has_slice) {
				plog_slice_release(&w->p->slice);
				w->p->has_slice = false;
			}
			srv__finish(w->p, PROTO_E_ERROR, false, NULL, 0);
		} else {
			poll_reply_remote(s, w->origin, w->origin_req, PROTO_E_ERROR, 0, NULL, 0);
		}
		return;
	}
	if (w->p != NULL)
		srv__finish(w->p, 0, false, w->body.p, w->body.len);
	else
		poll_reply_remote(s, w->origin, w->origin_req, 0, w->index, w->body.p, w->body.len);
}

/*
 * Serves a poll from this node's replica of the partition (its log l; pt NULL only for a log whose group
 * did not start): the one path of local polls and of polls other nodes forward here.
 */
static void poll_serve(struct srv *s, const struct meta_topic *t, struct part *pt, struct plog *l,
		       const struct poll_args *a, const struct poll_to *to)
{
	if (!part_readable(s, pt)) {
		poll_answer(s, to, PROTO_E_TRANSIENT_NOT_ACCEPTED, NULL, NULL); /* the SDK asks again shortly */
		return;
	}
	uint32_t pid = a->pid;
	uint64_t next = served_next(s, t, pid), first = plog_first_offset(l);
	uint64_t current = next > 0 ? next - 1 : 0;
	uint64_t from = 0;
	bool empty = next == first || a->count == 0;
	const struct meta_offset *stored = meta_offset_get(t, a->kind, a->cid, pid);
	switch (a->strat) {
	case WIRE_POLL_OFFSET:
		from = a->value;
		break;
	case WIRE_POLL_TIMESTAMP:
		if (plog_find_timestamp(l, a->value, &from) != 0)
			empty = true;
		break;
	case WIRE_POLL_FIRST:
		from = first;
		break;
	case WIRE_POLL_LAST:
		from = next > a->count ? next - a->count : 0;
		break;
	case WIRE_POLL_NEXT:
		from = stored != NULL ? stored->offset + 1 : 0;
		break;
	default:
		empty = true;
		break;
	}
	struct plog_slice sl = {0};
	bool has = false;
	if (!empty && from < next) {
		int rv = plog_read(l, from, a->count, POLL_MAX_BYTES, next - 1, &sl);
		if (rv != 0) {
			/*
			 * A damaged stored record (it failed its checksums: plog fenced and logged it) is never served;
			 * a poll that starts at it gets Iggy's CannotReadMessage.
			 */
			if (rv != -EBADMSG)
				glog_error(TAG, "poll read failed: %s", strerror(-rv));
			plog_slice_release(&sl);
			poll_answer(s, to, rv == -EBADMSG ? PROTO_E_CANNOT_READ_MESSAGE : PROTO_E_ERROR, NULL, NULL);
			return;
		}
		if (sl.messages == 0)
			plog_slice_release(&sl);
		else
			has = true;
	}
	/* Never a message a consumer may not see yet (uncommitted, or not durable on an fsync topic). */
	assert(!has || sl.last_offset < next);
	uint32_t n = has ? sl.messages : 0;
	uint8_t prefix[REPLY_POLLED_PREFIX_SIZE];
	reply_encode_polled(prefix, &(struct reply_polled){pid, current, n});
	if (n > 0 && a->auto_commit) {
		/* A forwarded poll's reply is copied first: a read that fails then stores no offset. */
		uint8_t *body = NULL;
		size_t len = 0;
		if (to->p == NULL) {
			int rv = poll_body_copy(prefix, &sl, &body, &len);
			if (rv != 0) {
				glog_error(TAG, "forwarded poll read failed: %s", strerror(-rv));
				plog_slice_release(&sl);
				poll_answer(s, to, PROTO_E_ERROR, NULL, NULL);
				return;
			}
		}
		struct meta_cmd c = {.type = META_STORE_OFFSET, .ts = srv__now_us(), .stream_id = t->stream_id,
				     .topic_id = t->id, .consumer_kind = a->kind, .consumer_id = a->cid,
				     .partition_id = pid, .offset = sl.last_offset};
		struct mwait *w = srv__meta_submit(s, &c, poll_commit_done);
		if (w != NULL) {
			/* A following poll with the next strategy then starts after these messages. */
			if (to->p != NULL) {
				w->p = to->p;
				wire_put_bytes(&w->body, prefix, sizeof(prefix));
				to->p->slice = sl;
				to->p->has_slice = true;
			} else {
				w->origin = to->origin;
				w->origin_req = to->req_id;
				w->body.p = body;
				w->body.len = w->body.cap = len;
				plog_slice_release(&sl);
			}
			srv__mwait_push(s, w);
			return;
		}
		free(body);
	}
	poll_answer(s, to, 0, prefix, has ? &sl : NULL);
}

/*
 * A poll of a partition this node hosts no replica of goes to a replica that is connected, in placement
 * order (the first is the preferred leader, so polls tend to go where the writes are), as POLL_FWD; its
 * POLL_REPLY is relayed (srv__on_poll_reply). No replica connected: 58, the SDK polls again.
 */
/* Sends POLL_FWD for `a` to a connected replica; the waiter (its p set) or NULL with p answered. */
static struct pfwd *poll_forward_to(struct srv *s, struct pending *p, const struct meta_topic *t,
				    const struct poll_args *a)
{
	const struct meta_partition *mp = &t->partitions[a->pid];
	bool others;
	uint64_t to = srv__replica_to_ask(s, mp, &others);
	if (!others) {
		srv__finish(p, PROTO_E_PARTITION_NOT_FOUND, false, NULL, 0); /* placed here alone, and not open */
		return NULL;
	}
	struct pfwd *f = to != 0 ? calloc(1, sizeof(*f)) : NULL;
	if (f == NULL) {
		srv__finish(p, PROTO_E_TRANSIENT_NOT_ACCEPTED, false, NULL, 0);
		return NULL;
	}
	f->req_id = ++s->next_req;
	f->p = p;
	uint8_t b[POLL_FWD_LEN];
	record_put64(b, f->req_id);
	record_put64(b + 8, clu_partition_gid(t->stream_id, t->id, t->created_at, a->pid, mp->created_at));
	record_put32(b + 16, t->stream_id);
	record_put32(b + 20, t->id);
	record_put32(b + 24, a->pid);
	b[28] = a->kind;
	record_put32(b + 29, a->cid);
	b[33] = a->strat;
	record_put64(b + 34, a->value);
	record_put32(b + 42, a->count);
	b[46] = a->auto_commit;
	uv_buf_t ub = uv_buf_init((char *)b, sizeof(b));
	if (clu_send(s->clu, to, CLU_KIND_POLL_FWD, &ub, 1) != 0) {
		free(f);
		srv__finish(p, PROTO_E_TRANSIENT_NOT_ACCEPTED, false, NULL, 0);
		return NULL;
	}
	f->next = s->pfwds;
	s->pfwds = f;
	srv__dl_add(s, &f->dl, srv__mono_ms() + POLL_FWD_DEADLINE_MS, pfwd_expired);
	return f;
}


/*
 * The replica's side of a forwarded poll. Where the two nodes' metadata disagree on the partition (one
 * of them lags: the topic or partition unknown here, or another incarnation of it) the answer is 58 and
 * the SDK asks again; a partition the metadata here places elsewhere and that is no longer open here is
 * 3007; one placed here but not open yet is 58.
 */
void srv__on_poll_fwd(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	if (len != POLL_FWD_LEN)
		return;
	const uint8_t *b = buf;
	uint64_t gid = record_le64(b + 8);
	uint32_t sid = record_le32(b + 16), tid = record_le32(b + 20);
	struct poll_args a = {.pid = record_le32(b + 24), .kind = b[28], .cid = record_le32(b + 29), .strat = b[33],
			      .value = record_le64(b + 34), .count = record_le32(b + 42), .auto_commit = b[46]};
	struct poll_to to = {.p = NULL, .origin = from, .req_id = record_le64(b)};
	const struct meta_stream *st = meta_stream(s->meta, sid);
	const struct meta_topic *t = st != NULL ? meta_topic(st, tid) : NULL;
	struct part *pt = srv__part_by_gid(s, gid);
	uint32_t code = 0;
	if ((a.kind != WIRE_CONSUMER_SINGLE && a.kind != WIRE_CONSUMER_GROUP) || a.auto_commit > 1)
		code = PROTO_E_INVALID_COMMAND;
	else if (t == NULL || a.pid >= t->n_partitions ||
		 clu_partition_gid(sid, tid, t->created_at, a.pid, t->partitions[a.pid].created_at) != gid)
		code = PROTO_E_TRANSIENT_NOT_ACCEPTED;
	else if (pt == NULL)
		code = meta_partition_hosts(&t->partitions[a.pid], (uint32_t)clu_node_id(s->clu)) ? PROTO_E_TRANSIENT_NOT_ACCEPTED
											      : PROTO_E_PARTITION_NOT_FOUND;
	if (code != 0) {
		poll_answer(s, &to, code, NULL, NULL);
		return;
	}
	poll_serve(s, t, pt, pt->log, &a, &to);
}

/*
 * Relays a forwarded poll's reply. One that stored an offset waits until this node has applied it, so
 * that the client reads the offset (GetConsumerOffset) on the node it talks to. A reply for a request
 * that is no longer waiting (late, after the deadline) is ignored.
 */
void srv__on_poll_reply(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	(void)from;
	if (len < POLL_REPLY_HDR)
		return;
	const uint8_t *b = buf;
	uint64_t req = record_le64(b), meta_index = record_le64(b + 12);
	uint32_t code = record_le32(b + 8);
	if (code == 0 && len < POLL_REPLY_HDR + 16)
		code = PROTO_E_ERROR; /* no prefix */
	for (struct pfwd **pp = &s->pfwds; *pp != NULL; pp = &(*pp)->next) {
		struct pfwd *f = *pp;
		if (f->req_id != req || f->answered)
			continue;
		if (code == 0 && meta_index > s->meta_applied && !f->offset_req) {
			f->body = malloc(len - POLL_REPLY_HDR);
			if (f->body != NULL) {
				memcpy(f->body, b + POLL_REPLY_HDR, len - POLL_REPLY_HDR);
				f->body_len = len - POLL_REPLY_HDR;
				f->meta_index = meta_index;
				f->answered = true;
				return;
			}
			code = PROTO_E_ERROR;
		}
		*pp = f->next;
		srv__dl_cancel(s, &f->dl);
		if (f->offset_req)
			offset_resume(s, f, code, code == 0 ? b + POLL_REPLY_HDR : NULL);
		else
			srv__finish(f->p, code, false, code == 0 ? b + POLL_REPLY_HDR : NULL,
			       code == 0 ? len - POLL_REPLY_HDR : 0);
		free(f);
		return;
	}
}

/*
 * Ends a forwarded poll that is off the list: an answered one is relayed (at its deadline too: its offset
 * is stored, only this node lags), an unanswered one gets 58.
 */
static void pfwd_end(struct srv *s, struct pfwd *f)
{
	srv__dl_cancel(s, &f->dl);
	if (f->answered)
		srv__finish(f->p, 0, false, f->body, f->body_len);
	else if (f->offset_req)
		offset_resume(s, f, PROTO_E_TRANSIENT_NOT_ACCEPTED, NULL);
	else
		srv__finish(f->p, PROTO_E_TRANSIENT_NOT_ACCEPTED, false, NULL, 0);
	free(f->body);
	free(f);
}

static void pfwd_expired(struct srv *s, struct srv_dl *d)
{
	struct pfwd *f = SRV_DL_OWNER(d, struct pfwd, dl);
	for (struct pfwd **pp = &s->pfwds; *pp != NULL; pp = &(*pp)->next)
		if (*pp == f) {
			*pp = f->next;
			pfwd_end(s, f);
			return;
		}
	assert(false); /* a registered forward is on the list */
}

/* Relays the answered forwarded polls whose offset this node has applied. */
void srv__pfwd_applied(struct srv *s)
{
	for (struct pfwd **pp = &s->pfwds; *pp != NULL;) {
		struct pfwd *f = *pp;
		if (!f->answered || f->meta_index > s->meta_applied) {
			pp = &f->next;
			continue;
		}
		*pp = f->next;
		pfwd_end(s, f);
	}
}

/* A decoded PollMessages body (also the body of 103 and 104). Names point into the request. */
struct poll_req {
	struct wire_consumer wc;
	struct wire_id sid, tid;
	struct wire_opt_partition op;
	struct wire_polling strat;
	uint32_t count;
	uint8_t auto_commit;
};

/* Decodes a whole PollMessages body. Returns 0, or PROTO_E_INVALID_COMMAND when it is malformed. */
static uint32_t poll_req_decode(const uint8_t *body, size_t len, struct poll_req *q)
{
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	wire_get_consumer(&r, &q->wc);
	wire_get_id(&r, &q->sid);
	wire_get_id(&r, &q->tid);
	wire_get_opt_partition(&r, &q->op);
	wire_get_polling(&r, &q->strat);
	q->count = wire_get_u32(&r);
	q->auto_commit = wire_get_u8(&r);
	return wire_rd_done(&r) == 0 ? 0 : PROTO_E_INVALID_COMMAND;
}

/*
 * PollMessages (100) and PollMessagesOnPrimary (104): everything the metadata decides is checked here,
 * on any node; the messages come from this node's replica of the partition, or from another replica
 * through poll_forward when none is hosted here.
 */
void srv__handle_poll(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	/* PollMessagesOnPrimary is served only on a data session attached to its parent. */
	uint32_t member, err = srv__session_member(ss, &member);
	if (err == 0 && hdr->code == FRAME_CODE_POLL_MESSAGES_ON_PRIMARY && !ss->attached)
		err = PROTO_E_UNAUTHENTICATED;
	struct poll_req q;
	if (err == 0)
		err = poll_req_decode(body, len, &q);
	if (err != 0) {
		srv__finish(p, err, false, NULL, 0);
		return;
	}
	struct meta_stream *st = srv__find_stream(s, &q.sid);
	if (st == NULL) {
		srv__finish(p, PROTO_E_STREAM_ID_NOT_FOUND, false, NULL, 0);
		return;
	}
	struct meta_topic *t = srv__find_topic(st, &q.tid);
	if (t == NULL) {
		srv__finish(p, PROTO_E_TOPIC_ID_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!srv__may(ss, hdr->operation, hdr->code, st->id, t->id)) {
		srv__finish(p, PROTO_E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct poll_args a = {.pid = q.op.present ? q.op.id : 0, .strat = q.strat.kind, .value = q.strat.value,
			      .count = q.count, .auto_commit = q.auto_commit};
	if (resolve_consumer(t, &q.wc, &a.kind, &a.cid) != 0) {
		srv__finish(p, PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (a.kind == WIRE_CONSUMER_GROUP) {
		const struct meta_member *m = meta_group_member(meta_group(t, a.cid), member);
		bool owns = false;
		for (uint32_t i = 0; m != NULL && i < m->n_partitions; i++)
			owns |= m->partitions[i] == a.pid;
		if (!q.op.present || !owns) {
			/* Fenced: an empty poll with the resync sentinel. */
			uint8_t prefix[REPLY_POLLED_PREFIX_SIZE];
			reply_encode_polled(prefix, &(struct reply_polled){NO_PARTITION, 0, 0});
			srv__finish(p, 0, false, prefix, sizeof(prefix));
			return;
		}
	}
	if (a.pid >= t->n_partitions) {
		srv__finish(p, PROTO_E_PARTITION_NOT_FOUND, false, NULL, 0);
		return;
	}
	struct plog *l = srv__part_log(s, st->id, t->id, a.pid);
	if (l == NULL) {
		(void)poll_forward_to(s, p, t, &a);
		return;
	}
	struct poll_to to = {.p = p};
	poll_serve(s, t, srv__tparts_find(s, st->id, t->id)->pp[a.pid], l, &a, &to);
}

static void offset_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)s;
	(void)res;
	if (status != 0)
		srv__finish(w->p, status == -EAGAIN ? PROTO_E_TRANSIENT_NOT_ACCEPTED : PROTO_E_ERROR, false, NULL, 0);
	else if (rv != META_OK)
		srv__finish(w->p, rv < 0 ? PROTO_E_ERROR : (uint32_t)rv, false, NULL, 0);
	else
		srv__finish(w->p, 0, true, NULL, 0);
}

/* A consumer-offset request once resolved (srv__handle_offset), to finish with the partition's next offset. */
struct offset_req {
	uint8_t op;                /* FRAME_OP_NON_REPLICATED (get), FRAME_OP_STORE_/DELETE_CONSUMER_OFFSET */
	uint32_t stream_id, topic_id, pid, cid;
	uint8_t kind;
	uint64_t offset;
};

/*
 * Answers a get from the metadata, or replicates a store (refused 4100 beyond the current offset) or a
 * delete. next: the offset after the partition's last committed message.
 */
static void offset_finish(struct srv *s, struct pending *p, const struct offset_req *q, uint64_t next)
{
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, q->stream_id), q->topic_id);
	if (t == NULL || q->pid >= t->n_partitions) {
		/* (gone while a replica was asked) */
		srv__finish(p, q->op == FRAME_OP_NON_REPLICATED ? PROTO_E_TOPIC_ID_NOT_FOUND : PROTO_E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (q->op == FRAME_OP_NON_REPLICATED) {
		const struct meta_offset *o = meta_offset_get(t, q->kind, q->cid, q->pid);
		if (o == NULL) {
			srv__finish(p, 0, false, NULL, 0);
			return;
		}
		uint8_t b[REPLY_OFFSET_SIZE];
		reply_encode_offset(b, &(struct reply_offset){q->pid, next > 0 ? next - 1 : 0, o->offset});
		srv__finish(p, 0, false, b, sizeof(b));
		return;
	}
	struct meta_cmd c = {.ts = srv__now_us(), .stream_id = q->stream_id, .topic_id = q->topic_id,
			     .consumer_kind = q->kind, .consumer_id = q->cid, .partition_id = q->pid, .offset = q->offset};
	if (q->op == FRAME_OP_STORE_CONSUMER_OFFSET) {
		if (next == 0 || q->offset > next - 1) {
			srv__finish(p, PROTO_E_INVALID_OFFSET, false, NULL, 0);
			return;
		}
		c.type = META_STORE_OFFSET;
	} else {
		c.type = META_DELETE_OFFSET;
	}
	struct mwait *w = srv__meta_submit(s, &c, offset_done);
	if (w == NULL) {
		srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
		return;
	}
	w->p = p;
	srv__mwait_push(s, w);
}

void srv__handle_offset(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	bool get = hdr->operation == FRAME_OP_NON_REPLICATED;
	/* Offsets are keyed by consumer or group, not by member: only a stale attachment matters here. */
	uint32_t member, stale = srv__session_member(ss, &member);
	if (stale != 0) {
		srv__finish(p, stale, false, NULL, 0);
		return;
	}
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct wire_consumer wc;
	struct wire_id sid, tid;
	struct wire_opt_partition op;
	wire_get_consumer(&r, &wc);
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	wire_get_opt_partition(&r, &op);
	uint64_t offset = 0;
	if (hdr->operation == FRAME_OP_STORE_CONSUMER_OFFSET)
		offset = wire_get_u64(&r);
	if (!get)
		(void)wire_get_u8(&r); /* ack level */
	if (wire_rd_done(&r) != 0) {
		srv__finish(p, PROTO_E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = srv__find_stream(s, &sid);
	struct meta_topic *t = srv__find_topic(st, &tid);
	if (t == NULL) {
		srv__finish(p, get ? (st == NULL ? PROTO_E_STREAM_ID_NOT_FOUND : PROTO_E_TOPIC_ID_NOT_FOUND) : PROTO_E_RESOURCE_NOT_FOUND,
		       false, NULL, 0);
		return;
	}
	if (!srv__may(ss, hdr->operation, hdr->code, st->id, t->id)) {
		srv__finish(p, PROTO_E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	uint8_t kind;
	uint32_t cid;
	uint32_t pid = op.present ? op.id : 0;
	if (resolve_consumer(t, &wc, &kind, &cid) != 0 || pid >= t->n_partitions) {
		srv__finish(p, get ? PROTO_E_PARTITION_NOT_FOUND : PROTO_E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	struct offset_req q = {.op = hdr->operation, .stream_id = st->id, .topic_id = t->id, .pid = pid, .kind = kind,
			       .cid = cid, .offset = offset};
	bool needs_next = get ? meta_offset_get(t, kind, cid, pid) != NULL : q.op == FRAME_OP_STORE_CONSUMER_OFFSET;
	if (needs_next && srv__part_log(s, st->id, t->id, pid) == NULL) {
		/*
		 * Offsets are metadata, but the partition's current offset is not: a partition with no replica
		 * here asks one for it (a forwarded poll of the first message), then goes on in offset_resume.
		 */
		struct poll_args a = {.pid = pid, .kind = kind, .cid = cid, .strat = WIRE_POLL_FIRST, .count = 1};
		struct pfwd *f = poll_forward_to(s, p, t, &a);
		if (f != NULL) {
			f->offset_req = true;
			f->op = q.op;
			f->stream_id = q.stream_id;
			f->topic_id = q.topic_id;
			f->pid = pid;
			f->kind = kind;
			f->cid = cid;
			f->offset = offset;
		}
		return;
	}
	offset_finish(s, p, &q, needs_next ? served_next(s, t, pid) : 0);
}

/*
 * The answer to a forwarded poll of the first message that a consumer-offset request asked for (see
 * srv__handle_offset): the replica's prefix carries the current offset and how many messages it returned, so
 * next = current + 1 unless the partition is empty (no message, current 0).
 */
static void offset_resume(struct srv *s, const struct pfwd *f, uint32_t code, const uint8_t *prefix)
{
	if (code != 0) {
		srv__finish(f->p, f->op == FRAME_OP_NON_REPLICATED ? code
			     : code == PROTO_E_PARTITION_NOT_FOUND ? PROTO_E_RESOURCE_NOT_FOUND
								   : code,
		       false, NULL, 0);
		return;
	}
	uint64_t current = record_le64(prefix + 4);
	uint32_t n = record_le32(prefix + 12);
	uint64_t next = n == 0 && current == 0 ? 0 : current + 1;
	struct offset_req q = {.op = f->op, .stream_id = f->stream_id, .topic_id = f->topic_id, .pid = f->pid,
			       .kind = f->kind, .cid = f->cid, .offset = f->offset};
	offset_finish(s, f->p, &q, next);
}

/*
 * GetPollRouting (103) and GetConsumerOffsetRouting (123): validated as the poll or offset request they
 * route, then answered with this node as the primary and this session as the parent to attach to.
 */
void srv__handle_routing(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct poll_req q;
	uint32_t err;
	if (hdr->code == FRAME_CODE_GET_POLL_ROUTING) {
		err = poll_req_decode(body, len, &q);
		if (err == 0 && q.auto_commit != 1)
			err = PROTO_E_INVALID_COMMAND; /* only a poll with auto-commit is routed (as the reference) */
	} else {
		struct wire_rd r;
		wire_rd_init(&r, body, len);
		wire_get_consumer(&r, &q.wc);
		wire_get_id(&r, &q.sid);
		wire_get_id(&r, &q.tid);
		wire_get_opt_partition(&r, &q.op);
		err = wire_rd_done(&r) == 0 ? 0 : PROTO_E_INVALID_COMMAND;
	}
	if (err != 0) {
		srv__finish(p, err, false, NULL, 0);
		return;
	}
	struct meta_stream *st = srv__find_stream(s, &q.sid);
	struct meta_topic *t = srv__find_topic(st, &q.tid);
	uint8_t kind;
	uint32_t cid, pid = q.op.present ? q.op.id : 0;
	if (st == NULL)
		err = PROTO_E_STREAM_ID_NOT_FOUND;
	else if (t == NULL)
		err = PROTO_E_TOPIC_ID_NOT_FOUND;
	else if (!srv__may(ss, hdr->operation, hdr->code, st->id, t->id))
		err = PROTO_E_UNAUTHORIZED;
	else if (resolve_consumer(t, &q.wc, &kind, &cid) != 0)
		err = PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND;
	else if (pid >= t->n_partitions)
		err = PROTO_E_PARTITION_NOT_FOUND;
	if (err != 0) {
		srv__finish(p, err, false, NULL, 0);
		return;
	}
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes), self = 0;
	for (size_t i = 0; i < n; i++)
		if (nodes[i].id == clu_node_id(s->clu))
			self = i;
	if (n == 0) {
		srv__finish(p, PROTO_E_TRANSIENT_NOT_ACCEPTED, false, NULL, 0); /* no roster yet */
		return;
	}
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_u64(&b, ss->client_id); /* client_id u128: low half, then high half */
	wire_put_u64(&b, 0);
	wire_put_u64(&b, ss->session);
	wire_put_u64(&b, s->meta_applied);
	srv__put_node(s, &b, self, 0);
	srv__finish_buf(p, 0, false, &b);
}

/* AttachConsumerSession (14), on a data session: borrow the parent's client id as the member identity. */
void srv__handle_attach(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	if (len != 32) {
		srv__finish(p, PROTO_E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	uint64_t lo = frame_le64(body), hi = frame_le64(body + 8), session = frame_le64(body + 16);
	const struct srv_session *parent =
		hi == 0 && lo <= UINT32_MAX ? srv__session_find(ss->srv, (uint32_t)lo, session) : NULL;
	if (parent == NULL || parent->user_id != ss->user_id) {
		srv__finish(p, PROTO_E_STALE_CLIENT, false, NULL, 0);
		return;
	}
	ss->attached = true;
	ss->member_of = parent->client_id;
	ss->parent_session = parent->session;
	srv__finish(p, 0, false, NULL, 0);
}
