/*
 * srv_send — sends: a producer's batch verified, deduplicated and stamped on the partition leader and
 * answered once committed (swait), or forwarded to the leader (SEND_FWD, fenced to its term) or through
 * another replica, and settled from this replica's own log (fwd_settle; docs/ARCHITECTURE.md "A send").
 * Owns: s->fwds and the partitions' tp->fwds lists (sends forwarded from here), each partition's swait list.
 */
#include "node/srv_int.h"

bool srv__fwd_of(const struct fwd *f, const struct part *pt)
{
	return f->stream_id == pt->stream_id && f->topic_id == pt->topic_id && f->partition_id == pt->pid;
}

/*
 * The forwards of this node are on two lists: s->fwds, every one (replies find them by request id, and
 * the housekeeping timer runs their deadlines), and their partition's, tp->fwds[partition_id], which the
 * partition's applied entries settle (srv__fwd_settle) without looking at any other partition's.
 */
static void fwd_link_partition(struct srv *s, struct fwd *f)
{
	assert(f->tp == NULL);
	struct tparts *tp = srv__tparts_find(s, f->stream_id, f->topic_id);
	f->tp = tp != NULL && f->partition_id < tp->n ? tp : NULL;
	f->pprev = NULL;
	f->pnext = NULL;
	if (f->tp != NULL) {
		f->pnext = tp->fwds[f->partition_id];
		if (f->pnext != NULL)
			f->pnext->pprev = f;
		tp->fwds[f->partition_id] = f;
	}
}

static void fwd_link(struct srv *s, struct fwd *f)
{
	f->prev = NULL;
	f->next = s->fwds;
	if (s->fwds != NULL)
		s->fwds->prev = f;
	s->fwds = f;
	f->tp = NULL;
	fwd_link_partition(s, f);
}

static void fwd_unlink_partition(struct fwd *f)
{
	if (f->tp == NULL)
		return;
	assert(f->partition_id < f->tp->n);
	if (f->pprev != NULL)
		f->pprev->pnext = f->pnext;
	else
		f->tp->fwds[f->partition_id] = f->pnext;
	if (f->pnext != NULL)
		f->pnext->pprev = f->pprev;
	f->tp = NULL;
	f->pnext = f->pprev = NULL;
}

static void fwd_unlink(struct srv *s, struct fwd *f)
{
	assert(f->prev != NULL || s->fwds == f); /* on the list */
	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		s->fwds = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	fwd_unlink_partition(f);
	srv__dl_cancel(s, &f->dl);
}

/* A partition's list goes (its topic or the partition itself is dropped): its forwards stay on s->fwds. */
void srv__fwds_detach(struct tparts *tp, uint32_t pid)
{
	while (tp->fwds[pid] != NULL)
		fwd_unlink_partition(tp->fwds[pid]);
}

/*
 * Answers a forwarded send and forgets it: code 0 with the batch's base offset (UINT64_MAX: every message
 * was a retry already stored) and its entry's index, or an Iggy code. A relay passes it to its origin.
 */
/*
 * A forward's deadline: committed on the leader but not yet applied here, it is answered as committed
 * (only this replica lags); otherwise its outcome is unknown.
 */
static void fwd_expired(struct srv *s, struct srv_dl *d)
{
	struct fwd *f = SRV_DL_OWNER(d, struct fwd, dl);
	if (f->acked && !f->relay)
		srv__fwd_answer(s, f, 0, f->base, f->index);
	else
		srv__fwd_answer(s, f, PROTO_E_ERROR, 0, 0);
}

void srv__fwd_answer(struct srv *s, struct fwd *f, uint32_t code, uint64_t base, uint64_t index)
{
	assert(f->relay == (f->p == NULL)); /* a relay answers a node, any other forward a client's request */
	fwd_unlink(s, f);
	if (f->relay) {
		srv__send_reply_remote(s, f->relay_to, f->relay_req, code, base, index);
	} else if (code != 0) {
		srv__finish(f->p, code, false, NULL, 0);
	} else if (base == UINT64_MAX) {
		uint8_t zero[4] = {0};
		srv__finish(f->p, 0, false, zero, sizeof(zero));
	} else {
		srv__send_reply_ok(f->p, f->stream_id, f->topic_id, f->partition_id, base);
	}
	free(f);
}

/*
 * Whether the committed entry e of pt is known to hold another forwarded batch of this node: one the
 * leader said it placed at (e->index, e->term), or one acknowledged at e->index.
 */
static bool fwd_entry_known(const struct fwd *list, const struct rgroup_entry *e)
{
	for (const struct fwd *g = list; g != NULL; g = g->pnext)
		if (g->index == e->index && (g->acked || (g->placed && g->placed_term == e->term)))
			return true;
	return false;
}

/*
 * What this replica's own log says about the sends it forwarded, as it applies the committed entry e
 * (see "A send" in docs/ARCHITECTURE.md). Raft never changes a committed entry, and a leader appends a
 * fenced forward only in the term it is fenced to (srv__on_send_fwd). So:
 *   - acknowledged by the leader: answered once applied here (the client reads its write here);
 *   - placed by the leader at (i, t): the entry committed at i is it if its term is t, and then it is
 *     acknowledged; any other entry at i means it was replaced and can never commit: 58;
 *   - not known to be placed: the batch, if the leader took it, is an entry of term `term` above
 *     applied_at. Once an entry of a later term commits, every committed entry of `term` has been
 *     applied here (terms never decrease along a log) and no other ever will be: if none of those above
 *     applied_at could be the batch (each is known to hold another forward), it was certainly not
 *     admitted: 58. Otherwise its fate is unknown here: error 1, never 58 (it may have committed, and
 *     the client would send it twice).
 */
void srv__fwd_settle(struct part *pt, const struct rgroup_entry *e, bool msgs)
{
	struct srv *s = pt->srv;
	if (s->fwds == NULL)
		return;
	struct tparts *tp = srv__tparts_find(s, pt->stream_id, pt->topic_id);
	if (tp == NULL || pt->pid >= tp->n || tp->fwds[pt->pid] == NULL)
		return;
	int known = -1; /* fwd_entry_known(e), computed when first needed, before anything is answered */
	if (msgs)
		for (struct fwd *f = tp->fwds[pt->pid]; f != NULL && known < 0; f = f->pnext)
			if (!f->acked && !f->placed && f->term == e->term && e->index > f->applied_at)
				known = fwd_entry_known(tp->fwds[pt->pid], e);
	for (struct fwd *f = tp->fwds[pt->pid], *next; f != NULL; f = next) {
		next = f->pnext;
		assert(srv__fwd_of(f, pt));
		if (!f->acked && f->term == 0)
			continue;
		if (f->acked) {
			if (f->index <= e->index)
				srv__fwd_answer(s, f, 0, f->base, f->index);
		} else if (f->placed) {
			if (f->index != e->index)
				continue;
			if (msgs && e->term == f->placed_term)
				srv__fwd_answer(s, f, 0, e->base_offset, e->index);
			else
				srv__fwd_answer(s, f, PROTO_E_TRANSIENT_NOT_ACCEPTED, 0, 0);
		} else if (e->index <= f->applied_at) {
			continue;
		} else if (e->term > f->term) {
			srv__fwd_answer(s, f, f->unsure ? PROTO_E_ERROR : PROTO_E_TRANSIENT_NOT_ACCEPTED, 0, 0);
		} else if (msgs && e->term == f->term && known == 0) {
			f->unsure = true;
		}
	}
}

/*
 * A forward placed at or below `applied`, an index this replica has applied (the placement came late, or
 * a snapshot install went past it): settled by the entry its log holds there, if it still holds it.
 * Returns whether *pp was answered.
 */
bool srv__fwd_check_placed(struct part *pt, struct fwd *f, uint64_t applied)
{
	struct record_env env;
	if (!f->placed || applied < f->index || plog_entry_at(pt->log, f->index, &env) != 0)
		return false;
	if (env.term == f->placed_term && env.type == RECORD_MESSAGES)
		srv__fwd_answer(pt->srv, f, 0, env.base_offset, f->index);
	else
		srv__fwd_answer(pt->srv, f, PROTO_E_TRANSIENT_NOT_ACCEPTED, 0, 0);
	return true;
}

/* ---- Housekeeping: retries and deadlines of replicated work ---- */

/*
 * Whether leadership of a fenced forward's partition moved on from where it went (another leader or a
 * later term seen here, or no leader known, or no link to the one it went to) at least two election
 * timeouts ago; the first sighting is remembered.
 */
bool srv__fwd_moved_on(struct srv *s, struct fwd *f, uint64_t now)
{
	if (f->acked || f->term == 0)
		return false;
	struct tparts *tp = srv__tparts_find(s, f->stream_id, f->topic_id);
	struct part *pt = tp != NULL && f->partition_id < tp->n ? tp->pp[f->partition_id] : NULL;
	if (pt == NULL)
		return false;
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	if (f->moved_at == 0 &&
	    (st.term > f->term || st.leader_id != f->to || !clu_connected(s->clu, f->to)))
		f->moved_at = now;
	return f->moved_at != 0 && now - f->moved_at >= 2ull * s->cfg->cluster.election_timeout_ms;
}

/* ---- Message plane ---- */

void srv__send_reply_ok(struct pending *p, uint32_t stream_id, uint32_t topic_id, uint32_t pid, uint64_t base)
{
	struct wire_buf wb;
	wire_buf_init(&wb);
	wire_put_u32(&wb, 1); /* one batch */
	reply_put_sent(&wb, &(struct reply_sent){stream_id, topic_id, pid, base});
	srv__finish_buf(p, 0, false, &wb);
	wire_buf_free(&wb);
}

/*
 * A forwarded send's outcome, leader to origin: req_id u64, status u32 (Iggy code, 0 = ok), base offset u64
 * (UINT64_MAX: every message was a retry already stored), the entry's Raft index u64 (0: none).
 */
void srv__send_reply_remote(struct srv *s, uint64_t origin, uint64_t req_id, uint32_t status, uint64_t base,
			      uint64_t index)
{
	uint8_t out[28];
	record_put64(out, req_id);
	record_put32(out + 8, status);
	record_put64(out + 12, base);
	record_put64(out + 20, index);
	uv_buf_t b = uv_buf_init((char *)out, sizeof(out));
	clu_send(s->clu, origin, CLU_KIND_SEND_REPLY, &b, 1);
}

static size_t drop_duplicates(const struct dedup *d, uint8_t *batch, size_t len);

/* A send whose entry did not commit in time (the leader lost its quorum): its outcome is unknown. */
static void swait_expired(struct srv *s, struct srv_dl *d)
{
	struct swait *w = SRV_DL_OWNER(d, struct swait, dl);
	struct part *pt = w->pt;
	(void)s;
	struct swait *prev = NULL;
	for (struct swait *x = pt->waits; x != NULL && x != w; x = x->next)
		prev = x;
	assert(prev == NULL ? pt->waits == w : prev->next == w); /* a registered send is on its list */
	if (prev == NULL)
		pt->waits = w->next;
	else
		prev->next = w->next;
	if (pt->waits_tail == w)
		pt->waits_tail = prev;
	srv__swait_finish(pt, w, -ETIMEDOUT, 0);
}

void srv__swait_finish(struct part *pt, struct swait *w, int status, uint64_t base_offset)
{
	srv__dl_cancel(pt->srv, &w->dl);
	uint32_t code = status == 0 ? 0 : PROTO_E_ERROR;
	assert(status != 0 || pt->last_applied >= w->index); /* acknowledged only once applied here */
	if (w->p != NULL) {
		if (code == 0)
			srv__send_reply_ok(w->p, pt->stream_id, pt->topic_id, pt->pid, base_offset);
		else
			srv__finish(w->p, code, false, NULL, 0);
	} else {
		srv__send_reply_remote(pt->srv, w->origin, w->req_id, code, base_offset, w->index);
	}
	free(w);
}

/*
 * The leader takes a verified batch: drops retried ids, stamps it with the next offset and submits it to
 * the partition's group; the reply goes once the entry commits (part_apply). p is a local request, or
 * NULL for one forwarded by `origin`. Returns 0 (the reply will come) or the Iggy code to answer now.
 */
static uint32_t send_local(struct part *pt, struct pending *p, uint64_t origin, uint64_t req_id, uint8_t *batch,
			   size_t blen)
{
	struct srv *s = pt->srv;
	if (s->clock_skewed)
		return PROTO_E_TRANSIENT_NOT_ACCEPTED; /* its clock is not trusted: it stamps nothing (srv__clock_tick hands over) */
	if (pt->dd != NULL) {
		blen = drop_duplicates(pt->dd, batch, blen);
		if (blen == 0) {
			/* Every message is a retry of one already stored: committed, offsets not reported. */
			if (p != NULL) {
				uint8_t zero[4] = {0};
				srv__finish(p, 0, false, zero, sizeof(zero));
			} else {
				srv__send_reply_remote(s, origin, req_id, 0, UINT64_MAX, 0);
			}
			return 0;
		}
	}
	struct swait *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return PROTO_E_ERROR;
	plog_stamp(pt->log, batch, pt->pid);
	uint64_t index, term;
	int rv = clu_group_submit(pt->g, batch, (uint32_t)blen, &index, &term);
	if (rv != 0) {
		free(w);
		if (rv == -EPERM || rv == -EAGAIN || rv == -ENOSPC)
			return PROTO_E_TRANSIENT_NOT_ACCEPTED; /* lost the leadership, or too much uncommitted: re-issue */
		glog_warn(TAG, "send to partition %" PRIu32 " refused: %s", pt->pid, strerror(-rv));
		return PROTO_E_ERROR;
	}
	if (pt->dd != NULL)
		srv__each_frame(batch, blen, srv__add_frame_id, pt->dd);
	if (p == NULL) {
		/* Where the forwarded batch went, before anything can say it committed (srv__fwd_settle). */
		uint8_t out[24];
		record_put64(out, req_id);
		record_put64(out + 8, index);
		record_put64(out + 16, term);
		uv_buf_t ub = uv_buf_init((char *)out, sizeof(out));
		clu_send(s->clu, origin, CLU_KIND_SEND_PLACED, &ub, 1);
	}
	w->p = p;
	w->origin = origin;
	w->req_id = req_id;
	w->index = index;
	w->term = term;
	w->pt = pt;
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	if (st.applied_index >= index) {
		/* Committed and applied inside the submit (a single voter whose policy does not wait for the disk). */
		srv__swait_finish(pt, w, 0, record_le64(batch + 8));
		return 0;
	}
	/* Indexes only grow on a leader, so appending keeps the list in index order. */
	assert(pt->waits_tail == NULL || pt->waits_tail->index < index);
	assert(index > st.applied_index && term == st.term);
	if (pt->waits_tail != NULL)
		pt->waits_tail->next = w;
	else
		pt->waits = w;
	pt->waits_tail = w;
	srv__dl_add(s, &w->dl, srv__mono_ms() + SEND_DEADLINE_MS, swait_expired);
	return 0;
}

/*
 * A send for a partition this node replicates but does not lead: the verified batch goes to the leader
 * (`to`) over the node-to-node link as SEND_FWD (node/cluster.h), fenced to the leader's term as this
 * replica knows it; the leader says where it appended it (SEND_PLACED) and its outcome comes back as
 * SEND_REPLY (srv__send_reply_remote), or this replica's log settles it (srv__fwd_settle). `to` 0: no leader known
 * (an election), 58.
 */
/*
 * Sends SEND_FWD to `to` and returns its waiter (p and the relay fields are the caller's), or NULL. pt is
 * this node's replica of the partition (NULL: it hosts none, and the forward is not fenced).
 */
static struct fwd *fwd_send(struct srv *s, struct part *pt, uint64_t to, uint64_t gid, uint32_t stream_id,
			    uint32_t topic_id, uint32_t pid, const uint8_t *batch, size_t blen)
{
	struct fwd *f = calloc(1, sizeof(*f));
	if (to == 0 || to == clu_node_id(s->clu) || f == NULL) {
		free(f);
		return NULL;
	}
	f->req_id = ++s->next_req;
	f->stream_id = stream_id;
	f->topic_id = topic_id;
	f->partition_id = pid;
	f->to = to;
	if (pt != NULL) {
		struct rgroup_status st;
		clu_group_status(pt->g, &st);
		if (st.leader_id == to) {
			f->term = st.term;
			f->applied_at = st.applied_index;
		}
	}
	uint8_t h[24];
	record_put64(h, f->req_id);
	record_put64(h + 8, gid);
	record_put64(h + 16, f->term);
	uv_buf_t b[2] = {uv_buf_init((char *)h, sizeof(h)), uv_buf_init((char *)batch, (unsigned)blen)};
	if (clu_send(s->clu, to, CLU_KIND_SEND_FWD, b, 2) != 0) {
		free(f);
		return NULL;
	}
	fwd_link(s, f);
	srv__dl_add(s, &f->dl, srv__mono_ms() + SEND_DEADLINE_MS, fwd_expired);
	srv__house_arm(s); /* its retries: the leader may move on */
	return f;
}

static void send_forward(struct srv *s, struct pending *p, struct part *pt, uint64_t to, uint64_t gid,
			 uint32_t stream_id, uint32_t topic_id, uint32_t pid, const uint8_t *batch, size_t blen)
{
	struct fwd *f = fwd_send(s, pt, to, gid, stream_id, topic_id, pid, batch, blen);
	if (f == NULL)
		srv__finish(p, PROTO_E_TRANSIENT_NOT_ACCEPTED, false, NULL, 0); /* no leader known (an election): re-issue */
	else
		f->p = p;
}

static bool send_via_peer(struct srv *s, struct pending *p, struct part *pt, const struct meta_topic *t,
			  const uint8_t *batch, size_t blen)
{
	uint64_t leader = clu_group_leader_id(pt->g), self = clu_node_id(s->clu);
	if ((leader != 0 && clu_connected(s->clu, leader)) || pt->pid >= t->n_partitions)
		return false;
	/*
	 * The replica heard most lately, and within RELAY_HEARD_MS: a link that is still up may lead into the
	 * cut (the former leader's, until its idle timeout closes it), and that one has gone silent.
	 */
	const struct meta_partition *mp = &t->partitions[pt->pid];
	uint64_t best = 0, best_silent = RELAY_HEARD_MS;
	for (uint32_t i = 0; i < mp->n_replicas; i++) {
		uint64_t r = mp->replicas[i], silent = clu_silent_ms(s->clu, r);
		if (r != self && r != leader && silent < best_silent) {
			best = r;
			best_silent = silent;
		}
	}
	struct fwd *f = best != 0 ? fwd_send(s, NULL, best, pt->gid, pt->stream_id, pt->topic_id, pt->pid, batch, blen)
				  : NULL;
	if (f == NULL)
		return false;
	f->p = p;
	f->via_peer = true;
	s->sends_via_peer++;
	return true;
}

/*
 * The node a send or poll of a partition this node hosts no replica of goes to: the first replica in
 * placement order that is connected (the first is the preferred leader, which leadership returns to once
 * it is connected, see srv__balance_leaders), or 0. *others says whether any replica is elsewhere.
 */
uint64_t srv__replica_to_ask(struct srv *s, const struct meta_partition *mp, bool *others)
{
	uint64_t self = clu_node_id(s->clu);
	*others = false;
	for (uint32_t i = 0; i < mp->n_replicas; i++) {
		if (mp->replicas[i] == self)
			continue;
		*others = true;
		if (clu_connected(s->clu, mp->replicas[i]))
			return mp->replicas[i];
	}
	return 0;
}

/* Redirect mode: status NotLeader with the leader's id, epoch and endpoint. */
static void not_leader(struct srv *s, struct pending *p, struct part *pt)
{
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	const struct clu_node *n = st.leader_id != 0 ? clu_node(s->clu, st.leader_id) : NULL;
	struct wire_buf wb;
	wire_buf_init(&wb);
	const struct clu_node *all;
	struct client_addr a = {"", 0, 0, 0, 0};
	if (n != NULL)
		a = srv__client_addr_of(s, n, clu_nodes(s->clu, &all) == 1);
	reply_put_not_leader(&wb, &(struct reply_not_leader){n != NULL ? (uint32_t)st.leader_id : 0,
							     n != NULL ? st.term : 0,
							     {(const uint8_t *)a.host, strlen(a.host)}, a.tcp});
	srv__finish_buf(p, PROTO_E_NOT_LEADER, false, &wb);
	wire_buf_free(&wb);
}

void srv__on_send_fwd(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	if (len < 24 + BATCH_HEADER_SIZE)
		return;
	uint8_t *b = (uint8_t *)buf; /* rnet's receive buffer, ours during the call: stamped in place */
	uint64_t req = record_le64(b), gid = record_le64(b + 8), fence = record_le64(b + 16);
	struct part *pt = srv__part_by_gid(s, gid);
	uint32_t code = PROTO_E_TRANSIENT_NOT_ACCEPTED;
	struct rgroup_status st = {0};
	if (pt != NULL)
		clu_group_status(pt->g, &st);
	/*
	 * A fenced forward is taken only in the term it names: its sender settles it from its own log by that
	 * term (srv__fwd_settle), so a leader deposed and elected again, or one that resumes after a pause with the
	 * forward still in its socket after its term ended, must not append it in another term.
	 */
	if (pt != NULL && clu_group_leader(pt->g) && (fence == 0 || fence == st.term)) {
		code = batch_verify(b + 24, len - 24, true) == 0 ? send_local(pt, NULL, from, req, b + 24, len - 24)
									: PROTO_E_INVALID_COMMAND;
	} else if (pt != NULL && !clu_group_leader(pt->g) && fence == 0) {
		/*
		 * Unfenced: from a node hosting no replica (it picked the first connected one), or from a replica
		 * that cannot reach the leader (send_via_peer). Passed on to the leader once, fenced; a replica's
		 * own fenced forward is not passed on (it asked the leader it knew), so a batch makes two hops at
		 * most.
		 */
		struct fwd *f = fwd_send(s, pt, clu_group_leader_id(pt->g), gid, pt->stream_id, pt->topic_id, pt->pid,
					 b + 24, len - 24);
		if (f != NULL) {
			f->relay = true;
			f->relay_to = from;
			f->relay_req = req;
			return;
		}
	}
	if (code != 0)
		srv__send_reply_remote(s, from, req, code, 0, 0);
}

void srv__on_send_reply(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	(void)from;
	if (len != 28)
		return;
	const uint8_t *b = buf;
	uint64_t req = record_le64(b);
	for (struct fwd *f = s->fwds; f != NULL; f = f->next) {
		if (f->req_id != req || f->acked)
			continue;
		uint32_t code = record_le32(b + 8);
		uint64_t base = record_le64(b + 12), index = record_le64(b + 20);
		if (f->relay) {
			srv__fwd_answer(s, f, code, base, index);
			return;
		}
		/*
		 * Committed. The reply waits until this replica has applied the entry too, so that the client
		 * reads its write here (polls are served from the local replica).
		 */
		struct tparts *tp = srv__tparts_find(s, f->stream_id, f->topic_id);
		struct part *pt = tp != NULL && f->partition_id < tp->n ? tp->pp[f->partition_id] : NULL;
		if (code == 0 && index != 0 && pt != NULL && srv__part_applied(pt) < index && !f->via_peer) {
			f->acked = true;
			f->index = index;
			f->base = base;
			if (f->tp == NULL) /* placed here since it went: its applies settle it */
				fwd_link_partition(s, f);
			return;
		}
		srv__fwd_answer(s, f, code, base, index);
		return;
	}
}

/* SEND_PLACED: where the leader appended a batch this node forwarded (node/cluster.h). */
void srv__on_send_placed(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	if (len != 24)
		return;
	const uint8_t *b = buf;
	uint64_t req = record_le64(b);
	for (struct fwd *f = s->fwds; f != NULL; f = f->next) {
		if (f->req_id != req)
			continue;
		if (f->acked || f->placed || f->term == 0 || f->to != from)
			return;
		struct tparts *tp = srv__tparts_find(s, f->stream_id, f->topic_id);
		struct part *pt = tp != NULL && f->partition_id < tp->n ? tp->pp[f->partition_id] : NULL;
		if (pt == NULL)
			return;
		f->placed = true;
		f->index = record_le64(b + 8);
		f->placed_term = record_le64(b + 16);
		if (f->tp == NULL)
			fwd_link_partition(s, f);
		srv__fwd_check_placed(pt, f, srv__part_applied(pt));
		return;
	}
}

static uint32_t batch_error(int rec_err)
{
	switch (rec_err) {
	case RECORD_E_FRAME_CHECK:
		return PROTO_E_INVALID_MESSAGE_CHECKSUM;
	case RECORD_E_BATCH_CHECK:
		return PROTO_E_INVALID_BATCH_CHECKSUM;
	case RECORD_E_RESERVED:
		return PROTO_E_INVALID_RESERVED_FIELD;
	default:
		return PROTO_E_INVALID_COMMAND;
	}
}

struct id_ref {
	const uint8_t *id;
	uint32_t index;
};

static int id_ref_cmp(const void *a, const void *b)
{
	const struct id_ref *x = a, *y = b;
	int c = memcmp(x->id, y->id, 16);
	return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

/*
 * Drops the messages of a verified batch whose id the window remembers or that repeat an id earlier in
 * the same batch (id 0 never counts). Returns the batch's new length, 0 when every message was dropped.
 */
static size_t drop_duplicates(const struct dedup *d, uint8_t *batch, size_t len)
{
	uint32_t n = record_le32(batch + 48);
	struct id_ref *ids = malloc(n * sizeof(*ids));
	bool *keep = malloc(n * sizeof(*keep));
	size_t out = len;
	if (ids == NULL || keep == NULL)
		goto done; /* keep everything: at-least-once, as without a window */
	size_t f = BATCH_HEADER_SIZE;
	bool all = true;
	for (uint32_t i = 0; i < n; i++) {
		ids[i] = (struct id_ref){batch + f + 8, i};
		keep[i] = srv__id_is_zero(batch + f + 8) || !dedup_seen(d, batch + f + 8);
		f += BATCH_FRAME_HEADER_SIZE + (size_t)record_le32(batch + f + 36) + record_le32(batch + f + 32);
	}
	qsort(ids, n, sizeof(*ids), id_ref_cmp);
	for (uint32_t i = 1; i < n; i++)
		if (memcmp(ids[i].id, ids[i - 1].id, 16) == 0 && !srv__id_is_zero(ids[i].id))
			keep[ids[i].index] = false;
	for (uint32_t i = 0; i < n; i++)
		all &= keep[i];
	if (!all)
		out = batch_filter(batch, len, keep);
done:
	free(ids);
	free(keep);
	return out;
}

void srv__handle_send(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	uint32_t mlen = wire_get_u32(&r);
	size_t start = r.pos;
	struct wire_id sid, tid;
	struct wire_partitioning part;
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	wire_get_partitioning(&r, &part);
	uint32_t count = wire_get_u32(&r);
	if (wire_rd_error(&r) != 0 || r.pos - start != mlen || len - r.pos < BATCH_HEADER_SIZE) {
		srv__finish(p, PROTO_E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = srv__find_stream(s, &sid);
	struct meta_topic *t = srv__find_topic(st, &tid);
	if (t == NULL) {
		srv__finish(p, PROTO_E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!srv__may(ss, hdr->operation, hdr->code, st->id, t->id)) {
		srv__finish(p, PROTO_E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct tparts *tp = srv__tparts_find(s, st->id, t->id);
	if (tp == NULL || tp->n == 0) {
		srv__finish(p, PROTO_E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	uint32_t pid;
	if (part.kind == WIRE_PART_PARTITION_ID)
		pid = part.partition_id;
	else if (part.kind == WIRE_PART_MESSAGES_KEY)
		pid = XXH32(part.key.ptr, part.key.len, 0) % tp->n;
	else
		pid = tp->rr++ % tp->n;
	if (pid >= tp->n) {
		srv__finish(p, PROTO_E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	uint8_t *batch = body + r.pos;
	size_t blen = len - r.pos;
	int rv = batch_verify(batch, blen, true);
	if (rv != 0) {
		srv__finish(p, batch_error(rv), false, NULL, 0);
		return;
	}
	if (record_le32(batch + 48) != count) {
		srv__finish(p, PROTO_E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct part *pt = tp->pp[pid];
	if (tp->logs[pid] == NULL && pid < t->n_partitions) {
		/*
		 * No replica here: to the preferred leader if connected (else the next replica). A replica that
		 * does not lead answers 58 and the SDK sends again (leadership returns to the preferred replica).
		 */
		const struct meta_partition *mp = &t->partitions[pid];
		bool others;
		uint64_t to = srv__replica_to_ask(s, mp, &others);
		if (!others) {
			srv__finish(p, PROTO_E_RESOURCE_NOT_FOUND, false, NULL, 0); /* placed here alone, and not open */
			return;
		}
		send_forward(s, p, NULL, to, clu_partition_gid(t->stream_id, t->id, t->created_at, pid, mp->created_at),
			     t->stream_id, t->id, pid, batch, blen);
		return;
	}
	if (pt == NULL) {
		srv__finish(p, PROTO_E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!clu_group_leader(pt->g)) {
		if (ss->redirect)
			not_leader(s, p, pt);
		else if (!send_via_peer(s, p, pt, t, batch, blen))
			send_forward(s, p, pt, clu_group_leader_id(pt->g), pt->gid, pt->stream_id, pt->topic_id, pt->pid,
				     batch, blen);
		return;
	}
	uint32_t st_code = send_local(pt, p, 0, 0, batch, blen);
	if (st_code != 0)
		srv__finish(p, st_code, false, NULL, 0);
}
