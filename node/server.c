/*
 * server — the request dispatcher of a single galgod. See server.h.
 *
 * Request handling follows the Iggy reference (shared reference iggy-protocol.md §1-§3):
 *   - before login only Ping is served; other reads get a status-40 deny, writes Eviction(1);
 *   - Register (login by password or token) binds the session; failures are evictions (9, 10, 11, 15);
 *   - metadata writes are decoded, authorized, applied to node/meta (a rejection is a result-section
 *     reply and changes nothing), replicated through the metadata Raft group (node/cluster) and answered
 *     once the entry is committed and applied on this node;
 *   - SendMessages verifies the producer's batch, stamps it and appends it to the partition log; it is
 *     answered when the record is as durable as the topic's policy asks;
 *   - PollMessages answers with the stored records as file ranges (zero copy) up to the durable offset;
 *     on a node that hosts no replica of the partition it is forwarded to one (POLL_FWD, node/cluster.h),
 *     which answers with a copy of the messages that this node relays.
 *
 * Choices where the reference leaves room: errors on result-framed ops use the result section; unknown
 * NonReplicated codes get status 3; message-id deduplication is a per-partition window of recent ids
 * (node/dedup, for topics that ask for it); a producer's Balanced partitioning is a server round-robin per
 * topic.
 *
 * The node is built of rooms, each a file owning its part of the state (see each file's top):
 * srv_session (sessions, reply queues, dispatch), srv_meta (metadata pipeline), srv_login, srv_send,
 * srv_poll (polls, offsets, poll routing), srv_read (read-only queries), srv_replica (replica hosting,
 * moves, balance, repair, drain), srv_layout (Iggy's reply layouts), srv_house (the housekeeping timer),
 * srv_metrics. Their shared types and the names they call across files (prefixed srv__) are in
 * node/srv_int.h; the rest of each room is static. This file is the node's lifecycle: opening the
 * metadata and the partitions, the node's ticks, and closing.
 */
#include "node/srv_int.h"

/* ---- Lifecycle ---- */

static bool gid_open_here(struct srv *s, uint64_t gid)
{
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++)
			if (tp->gids[i] == gid)
				return true;
	return false;
}

/*
 * Removes what <data_dir>/partitions holds that no replica of this node owns once the metadata is
 * replayed: a directory of a group id no slot names (left by a crash during a delete, or a replica that
 * moved away while this node was down), and anything else (the <stream>/<topic>/<partition> directories
 * of the old layout that slot_sync did not move to a group id: they belong to no partition any more).
 */
void srv__remove_orphans(struct srv *s)
{
	char **names;
	size_t n;
	if (pio_list(s->pio, s->pdir, &names, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char d[2400];
		snprintf(d, sizeof(d), "%.2047s/%.255s", s->pdir, names[i]);
		uint64_t gid;
		if (srv__part_dir_name(names[i], &gid) && gid_open_here(s, gid))
			continue;
		glog_warn(TAG, "removing %s: no partition replica of this node owns it", d);
		srv__rm_tree(s->pio, d);
	}
	pio_list_free(names, n);
}

static int ensure_root(struct srv *s)
{
	if (meta_user(s->meta, 0) != NULL)
		return 0;
	const char *pw = s->cfg->root.password;
	char gen[33];
	if (pw == NULL || pw[0] == '\0') {
		uint8_t raw[16];
		char tok[AUTH_PAT_LEN + 1];
		if (auth_pat_generate(tok) != 0)
			return -EIO;
		memcpy(raw, tok, sizeof(raw));
		for (int i = 0; i < 16; i++)
			snprintf(gen + 2 * i, 3, "%02x", raw[i]);
		pw = gen;
		glog_warn(TAG, "root user '%s' created with the generated password: %s", s->cfg->root.username, pw);
	}
	char hash[AUTH_HASH_MAX];
	int rv = auth_hash_password(pw, strlen(pw), hash);
	if (rv != 0)
		return rv;
	struct meta_perms all;
	auth_perms_all(&all);
	struct meta_cmd c = {.type = META_CREATE_USER, .ts = srv__now_us(), .name = s->cfg->root.username,
			     .name_len = (uint8_t)strlen(s->cfg->root.username), .password_hash = hash,
			     .status = META_USER_ACTIVE, .has_perms = true, .perms = &all};
	return srv__commit(s, &c) == META_OK ? 0 : -EINVAL;
}

/*
 * Start-of-term housekeeping of a metadata leader, once it has applied everything its log holds (so its
 * state is the cluster's): the root user on first start, and on a single node the consumer groups'
 * members emptied (no client survives a restart of the only node).
 */
void srv__meta_leader_ready(struct srv *s)
{
	if (s->mg == NULL || !s->leader_work)
		return;
	struct rgroup_status st;
	clu_group_status(s->mg, &st);
	if (st.state != RAFT_LEADER) {
		s->leader_work = false;
		return;
	}
	if (st.applied_index < st.last_index)
		return;
	/*
	 * A new metadata leader whose log is fully committed commits an empty entry of its own term at once,
	 * as a partition leader does (srv__part_term_barrier). Until one commits, a replica rebuilt after damage
	 * (meta_open: recovering) cannot know it holds everything committed, so it grants no vote; had this
	 * leader then died before any command came, the others could never elect (seen: the metadata group
	 * without a leader for good, the rebuilt node refusing every vote).
	 */
	struct record_env env;
	if (st.commit_index == st.last_index &&
	    (st.last_index == 0 || (plog_entry_at(s->mlog, st.last_index, &env) == 0 && env.term < st.term))) {
		int rv = clu_group_barrier(s->mg);
		if (rv == -EBUSY || rv == -EAGAIN)
			return; /* leader_work stays set: the next tick tries again */
	}
	s->leader_work = false;
	if (meta_user(s->meta, 0) == NULL && ensure_root(s) != 0)
		glog_error(TAG, "the root user could not be created");
	const struct clu_node *nodes;
	bool members = false;
	for (uint32_t i = 0; clu_nodes(s->clu, &nodes) == 1 && i < s->meta->n_streams; i++) {
		struct meta_stream *st2 = s->meta->streams[i];
		for (uint32_t k = 0; st2 != NULL && k < st2->n_topics; k++) {
			struct meta_topic *t = st2->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups; g++)
				members |= t->groups[g] != NULL && t->groups[g]->n_members > 0;
		}
	}
	if (members) {
		struct meta_cmd clear = {.type = META_CLEAR_MEMBERS, .ts = srv__now_us()};
		srv__commit(s, &clear);
	}
}

/*
 * Opens the metadata group: its log (<data_dir>/meta/log), replayed from the start by the group itself
 * (meta_apply_entry applies each entry as the group learns it is committed; on a single node right after
 * start). The log is small (what follows the last snapshot), so it is verified whole first (plog_scrub):
 * a record that fails its checks is never applied. The configured roster bootstraps the group on an empty
 * log; a joining node does not bootstrap: it waits for the metadata leader to add it (after an AddNode for
 * it has committed).
 *
 * Damage (the log fails to open or to verify, or the group's snapshot fails its checks) on a node with
 * peers: the log is set aside to <data_dir>/damaged/meta-<µs>, the snapshot forgotten, and the group starts
 * empty and recovering, as a damaged partition replica does (slot_open): it does not bootstrap (its leader
 * knows it as a voter and rebuilds it, with entries or a snapshot), and it votes in no election until it
 * has caught up (rgroup_config.recovering), keeping its term and vote. Partition directories are then left
 * alone for this run (srv__remove_orphans needs the whole metadata). A single node has no peer: the error stops
 * it, naming the log.
 */
static int meta_open(struct srv *s, const uint64_t *ids, size_t n)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/meta/log", s->cfg->node.data_dir);
	struct plog_opts o;
	plog_opts_default(&o);
	o.durability = PLOG_DURABILITY_FSYNC;
	o.segment_size = 4u << 20;
	bool recovering = false;
	for (;;) {
		struct plog_report rep;
		int rv = plog_open(s->pio, s->fl, dir, &o, &rep, &s->mlog);
		if (rv == 0) {
			int64_t done;
			while ((done = plog_scrub(s->mlog, 1u << 20)) > 0)
				;
			rv = done < 0 ? (int)done : plog_damaged(s->mlog) > 0 ? -EBADMSG : 0;
		}
		if (rv == 0) {
			s->meta_replay_to = plog_last_index(s->mlog);
			rv = clu_group_open(s->clu, CLU_META_GROUP, s->mlog, ids, n, !s->cfg->cluster.join && !recovering,
					    recovering, RECORD_COMMAND, 0, false, &srv__meta_ops, s, &s->mg);
			if (rv == 0)
				return 0;
		}
		if (s->mlog != NULL)
			(void)plog_close(s->mlog);
		s->mlog = NULL;
		if (rv != -EBADMSG || recovering || n < 2) {
			glog_error(TAG, "the metadata log %s or its group cannot be opened: %s%s", dir, strerror(-rv),
				   rv == -EBADMSG && n < 2 ? " (damaged, and a single node has no peer to rebuild it from)"
							  : "");
			return rv;
		}
		char parent[4096], aside[4200];
		snprintf(parent, sizeof(parent), "%s/meta", s->cfg->node.data_dir);
		rv = srv__set_aside(s, "meta", dir, parent, aside, sizeof(aside));
		if (rv != 0)
			return rv;
		clu_forget_snapshot(s->clu, CLU_META_GROUP);
		glog_warn(TAG, "the metadata log %s or its snapshot is damaged: the log is moved to %s; this node's "
			       "metadata is rebuilt from its peers and it votes in no metadata election until it has "
			       "caught up",
			  dir, aside);
		s->meta_rebuilt = true;
		recovering = true;
	}
}

/*
 * A cluster node that (re)starts has no client: the consumer-group members of its previous run (client
 * ids with its node id in the top bits) are removed through the metadata group, so that their
 * partitions go to members on other nodes. Until that has applied, a JoinConsumerGroup on this node is
 * answered 58 (re-issue), so a new client of this run is never taken for an old one. Resubmitted until it
 * applies (the metadata group needs a quorum).
 */
static void clear_own_members(struct srv *s);

static void clear_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)w;
	(void)rv;
	(void)res;
	s->clear_state = status == 0 ? 1 : -1;
	if (status == 0)
		glog_info(TAG, "consumer-group members of this node's previous run removed");
	else if (!s->closing)
		clear_own_members(s);
}

static void clear_own_members(struct srv *s)
{
	struct meta_cmd c = {.type = META_CLEAR_NODE_MEMBERS, .ts = srv__now_us(), .client_id = (uint32_t)clu_node_id(s->clu) << 27};
	struct mwait *w = srv__meta_submit(s, &c, clear_done);
	s->clear_state = 0;
	if (w == NULL) {
		s->clear_state = 1; /* out of memory at start: give up on it */
		return;
	}
	srv__mwait_push(s, w);
}

int srv_new(uv_loop_t *loop, const struct galgo_config *cfg, struct pio *pio, struct flusher *fl, struct srv **out)
{
	struct srv *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->cfg = cfg;
	s->pio = pio;
	s->fl = fl;
	s->start_us = srv__now_us();
	/*
	 * Request ids of forwarded commands must not repeat across restarts: the leader recognises a re-sent
	 * command by (node, request id) and would answer a new one with an old entry.
	 */
	s->next_req = s->start_us << 10;
	uv_timer_init(loop, &s->house);
	s->house.data = s;
	uv_unref((uv_handle_t *)&s->house);
	uv_timer_init(loop, &s->dl_timer);
	s->dl_timer.data = s;
	uv_unref((uv_handle_t *)&s->dl_timer);
	snprintf(s->pdir, sizeof(s->pdir), "%s/partitions", cfg->node.data_dir);
	char mdir[4096];
	snprintf(mdir, sizeof(mdir), "%s/meta", cfg->node.data_dir);
	s->meta = meta_new();
	int rv = s->meta == NULL ? -ENOMEM : 0;
	if (rv == 0)
		rv = pio_mkdir(pio, s->pdir);
	if (rv == 0)
		rv = pio_mkdir(pio, mdir);
	if (rv == 0)
		rv = clu_new(loop, cfg, pio, fl, &s->clu);
	if (rv != 0) {
		srv_free(s);
		return rv;
	}
	clu_on(s->clu, CLU_KIND_META_FWD, srv__on_meta_fwd, s);
	clu_on(s->clu, CLU_KIND_META_REPLY, srv__on_meta_reply, s);
	clu_on(s->clu, CLU_KIND_SEND_FWD, srv__on_send_fwd, s);
	clu_on(s->clu, CLU_KIND_SEND_REPLY, srv__on_send_reply, s);
	clu_on(s->clu, CLU_KIND_SEND_PLACED, srv__on_send_placed, s);
	clu_on(s->clu, CLU_KIND_POLL_FWD, srv__on_poll_fwd, s);
	clu_on(s->clu, CLU_KIND_POLL_REPLY, srv__on_poll_reply, s);
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	uint64_t ids[CLU_MAX_NODES];
	for (size_t i = 0; i < n; i++)
		ids[i] = nodes[i].id;
	rv = meta_open(s, ids, n);
	if (rv != 0) {
		srv_free(s);
		return rv;
	}
	if (n > 1)
		clear_own_members(s);
	else
		s->clear_state = 1; /* a single node empties every group instead (srv__meta_leader_ready) */
	if (n == 1) {
		/* A single node has its state at once: wait for the replay and the root user. */
		uint64_t until = srv__mono_ms() + 30000;
		/* The Raft timers do not keep the loop alive (see cluster.c): this one does, meanwhile. */
		uv_ref((uv_handle_t *)&s->house);
		uv_timer_start(&s->house, srv__on_house, 1, 1);
		while ((!s->meta_caught_up || s->leader_work || meta_user(s->meta, 0) == NULL) && srv__mono_ms() < until)
			uv_run(loop, UV_RUN_ONCE);
		uv_timer_stop(&s->house);
		uv_unref((uv_handle_t *)&s->house);
		srv__house_arm(s);
		if (meta_user(s->meta, 0) == NULL) {
			glog_error(TAG, "the metadata did not become ready");
			srv_free(s);
			return -EIO;
		}
	}
	glog_info(TAG, "metadata: %" PRIu64 " entries, %u partitions here", s->meta_replay_to, srv_partition_count(s));
	*out = s;
	return 0;
}

void srv_stop_network(struct srv *s)
{
	clu_stop_network(s->clu);
}

void srv_free(struct srv *s)
{
	s->closing = true;
	while (s->jobs > 0)
		uv_run(s->loop, UV_RUN_ONCE);
	while (s->sessions != NULL)
		srv_session_close(s->sessions);
	while (s->parts != NULL)
		srv__tparts_drop(s, s->parts->stream_id, s->parts->topic_id, false);
	while (s->mwaits != NULL)
		srv__mwait_done(s, s->mwaits, -ECANCELED, 0, NULL);
	srv__dl_free(s); /* the waiters left end below without their deadlines */
	while (s->lwaits != NULL) {
		struct lwait *lw = s->lwaits;
		s->lwaits = lw->next;
		srv__finish_buf(lw->p, 0, true, &lw->body);
		wire_buf_free(&lw->body);
		free(lw);
	}
	while (s->fwds != NULL) {
		struct fwd *f = s->fwds;
		s->fwds = f->next;
		if (!f->relay)
			srv__finish(f->p, PROTO_E_ERROR, false, NULL, 0);
		free(f);
	}
	while (s->pfwds != NULL) {
		struct pfwd *f = s->pfwds;
		s->pfwds = f->next;
		srv__finish(f->p, PROTO_E_ERROR, false, NULL, 0);
		free(f->body);
		free(f);
	}
	uv_timer_stop(&s->house);
	uv_timer_stop(&s->dl_timer);
	if (s->mg != NULL)
		clu_group_close(s->mg, false);
	s->mg = NULL;
	if (s->mlog != NULL)
		plog_close(s->mlog);
	clu_free(s->clu);
	uv_close((uv_handle_t *)&s->house, NULL);
	uv_close((uv_handle_t *)&s->dl_timer, NULL);
	uv_run(s->loop, UV_RUN_NOWAIT);
	meta_free(s->meta);
	free(s);
}

void srv_tick(struct srv *s)
{
	uint64_t now = srv__now_us();
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		if (t == NULL)
			continue;
		uint64_t age = t->message_expiry == META_NEVER ? 0 : t->message_expiry;
		uint64_t size = t->max_topic_size == META_NEVER ? 0 : t->max_topic_size / (tp->n ? tp->n : 1);
		if (age == 0 && size == 0)
			continue;
		for (uint32_t i = 0; i < tp->n; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL)
				continue;
			uint64_t keep = plog_retain_keep_from(pt->log, now, age, size, srv__part_applied(pt));
			if (srv__part_compact(pt, keep) == 0)
				plog_retain(pt->log, now, age, size, keep - 1);
		}
	}
	srv__meta_compact(s, false);
	srv__membership_tick(s);
	srv__members_tick(s);
	srv__advertise_tick(s);
	clu_state_tick(s->clu);
	if (s->draining)
		(void)srv__drain_tick(s);
	else
		srv__balance_leaders(s);
	srv__scrub_tick(s);
	srv__repair_tick(s);
	srv__restart_tick(s);
	srv__clock_tick(s);
}

int srv_fatal(const struct srv *s)
{
	return s->mg != NULL ? clu_group_failed(s->mg) : 0;
}

uint32_t srv_partition_count(const struct srv *s)
{
	uint32_t n = 0;
	for (const struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		n += tp->n;
	return n;
}

int srv_session_bind_user(struct srv_session *ss, uint32_t user_id)
{
	struct meta_user *u = meta_user(ss->srv->meta, user_id);
	if (u == NULL || u->status != META_USER_ACTIVE)
		return -ENOENT;
	ss->bound = true;
	ss->user_id = user_id;
	ss->session = ++ss->srv->next_session;
	return 0;
}
