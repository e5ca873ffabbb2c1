/*
 * srv_replica — replica hosting: the partition logs this node hosts (one plog and one Raft group each,
 * opened and closed as the metadata places them), what a partition's group applies (part_apply), repair
 * of a damaged replica from its peers, placement moves (a replica added, caught up, the old one removed),
 * leadership balance towards the preferred replica, the drain before a graceful stop, and the scrubber.
 * Owns: s->parts and every struct part, tparts.
 */
#include "node/srv_int.h"

/* ---- Partition logs ---- */

struct tparts *srv__tparts_find(struct srv *s, uint32_t stream_id, uint32_t topic_id)
{
	for (struct tparts *t = s->parts; t != NULL; t = t->next)
		if (t->stream_id == stream_id && t->topic_id == topic_id)
			return t;
	return NULL;
}

/*
 * A partition replica's directory is named by its Raft group id, 16 lowercase hex digits: the id is a
 * hash of the partition's incarnation (stream, topic and partition ids and their creation times, see
 * clu_partition_gid), so a stream, topic or partition deleted and created again under the same ids gets
 * a directory of its own. Replaying the old incarnation's deletion at start can then never touch the new
 * one's files (it did when directories were named <stream>/<topic>/<partition>).
 */
static void part_dir(struct srv *s, uint64_t gid, char *out, size_t n)
{
	snprintf(out, n, "%s/%016" PRIx64, s->pdir, gid);
}

/* Whether a name under <data_dir>/partitions is a group id as part_dir writes it. */
bool srv__part_dir_name(const char *name, uint64_t *gid)
{
	if (strlen(name) != 16)
		return false;
	for (const char *c = name; *c != '\0'; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return false;
	*gid = strtoull(name, NULL, 16);
	return true;
}

/* Removes a directory tree through pio (partition and topic directories). */
int srv__rm_tree(struct pio *pio, const char *path)
{
	char **names;
	size_t n;
	int rv = pio_list(pio, path, &names, &n);
	if (rv == -ENOENT)
		return 0;
	if (rv == -ENOTDIR)
		return pio_unlink(pio, path);
	if (rv != 0)
		return rv;
	for (size_t i = 0; i < n && rv == 0; i++) {
		char child[4096];
		snprintf(child, sizeof(child), "%s/%s", path, names[i]);
		rv = srv__rm_tree(pio, child);
	}
	pio_list_free(names, n);
	return rv == 0 ? pio_rmdir(pio, path) : rv;
}

static void plog_opts_for(struct srv *s, const struct meta_topic *t, uint32_t pid, struct plog_opts *o)
{
	plog_opts_default(o);
	o->segment_size = s->cfg->storage.segment_size;
	o->index_interval = s->cfg->storage.index_interval;
	o->durability = (enum plog_durability)t->durability;
	o->interval_ms = s->cfg->storage.interval_ms;
	o->log = glog_sink;
	o->log_ud = "partition";
	(void)pid;
}

/* Calls fn on every frame of the batches in buf (a sequence of stored batches). */
void srv__each_frame(const uint8_t *buf, size_t len, void (*fn)(void *arg, const uint8_t *frame), void *arg)
{
	size_t at = 0;
	while (at + BATCH_HEADER_SIZE <= len) {
		struct batch_hdr h;
		batch_hdr_decode(buf + at, &h);
		if (h.batch_length < BATCH_HEADER_SIZE || h.batch_length > len - at)
			return;
		size_t f = at + BATCH_HEADER_SIZE, end = at + h.batch_length;
		for (uint32_t i = 0; i < h.message_count && f + BATCH_FRAME_HEADER_SIZE <= end; i++) {
			fn(arg, buf + f);
			f += BATCH_FRAME_HEADER_SIZE + (size_t)record_le32(buf + f + 36) + record_le32(buf + f + 32);
		}
		at = end;
	}
}

bool srv__id_is_zero(const uint8_t *id)
{
	static const uint8_t zero[16];
	return memcmp(id, zero, 16) == 0;
}

void srv__add_frame_id(void *arg, const uint8_t *frame)
{
	if (!srv__id_is_zero(frame + 8))
		dedup_add(arg, frame + 8);
}

/* Fills a partition's dedup window with the ids of its last messages (it is derived from the log). */
static void dedup_rebuild(struct plog *l, struct dedup *d)
{
	if (d == NULL)
		return;
	uint64_t next = plog_next_offset(l), first = plog_first_offset(l), cap = dedup_capacity(d);
	uint64_t from = next - first > cap ? next - cap : first;
	while (from < next) {
		struct plog_slice sl;
		if (plog_read(l, from, 100000, 16u << 20, next - 1, &sl) != 0 || sl.messages == 0) {
			plog_slice_release(&sl);
			return;
		}
		uint8_t *buf = malloc(sl.bytes);
		if (buf != NULL && plog_slice_copy(&sl, buf) == 0)
			srv__each_frame(buf, sl.bytes, srv__add_frame_id, d);
		free(buf);
		from = sl.last_offset + 1;
		plog_slice_release(&sl);
	}
}

static void part_apply(void *ud, const struct rgroup_entry *e)
{
	struct part *pt = ud;
	uint64_t base = 0;
	bool msgs = e->type == RECORD_MESSAGES && e->length >= BATCH_HEADER_SIZE;
	assert(e->index > pt->last_applied); /* applied in index order, each entry once */
	pt->last_applied = e->index;
	if (msgs) {
		base = e->base_offset;
		pt->committed_next = base + e->message_count;
		/*
		 * The leader remembered the ids when it took the batch; the others learn them here (payloads are
		 * read back only for topics with a dedup window, see part_open).
		 */
		if (pt->dd != NULL && e->payload != NULL && pt->g != NULL && !clu_group_leader(pt->g))
			srv__each_frame(e->payload, e->length, srv__add_frame_id, pt->dd);
	} else {
		pt->other_bytes += e->length;
	}
	srv__fwd_settle(pt, e, msgs);
	while (pt->waits != NULL && pt->waits->index <= e->index) {
		struct swait *w = pt->waits;
		pt->waits = w->next;
		if (pt->waits == NULL)
			pt->waits_tail = NULL;
		bool ok = msgs && w->index == e->index && w->term == e->term;
		srv__swait_finish(pt, w, ok ? 0 : -ECANCELED, base);
	}
}

static void part_state(void *ud, int state, uint64_t term)
{
	struct part *pt = ud;
	(void)term;
	/* A new leader answers for every id its log holds, committed or not. */
	if (state == RAFT_LEADER && pt->dd != NULL)
		dedup_rebuild(pt->log, pt->dd);
	/* A leadership hand-over to the preferred replica waits BALANCE_MS after an election (see srv__balance_leaders). */
	if (state == RAFT_LEADER)
		pt->transfer_at = srv__mono_ms();
	const struct clu_node *nodes;
	if (state == RAFT_LEADER && clu_nodes(pt->srv->clu, &nodes) > 1) {
		pt->term_barrier = true; /* not from within the group's callback: the housekeeping timer does it */
		srv__house_arm(pt->srv);
	}
}

/*
 * A partition's snapshot is a manifest of 8 bytes: the offset after the last message it covers (u64 LE).
 * The messages themselves stay in the log from keep_from on; a follower fetches them from the leader
 * (raft/rgroup.h) before this runs.
 */
static void part_restore(void *ud, uint64_t index, const void *data, size_t len)
{
	struct part *pt = ud;
	assert(index >= pt->last_applied); /* a snapshot restored never takes the applied state back */
	pt->last_applied = index;
	if (len >= 8)
		pt->committed_next = record_le64(data);
	pt->other_bytes = 0;
	if (pt->dd != NULL)
		dedup_rebuild(pt->log, pt->dd);
	/*
	 * The install went past entries srv__fwd_settle never saw: a forward placed below it is settled by the
	 * log if it still holds that entry; any other may have been among the skipped entries (unknown).
	 */
	struct tparts *tp = srv__tparts_find(pt->srv, pt->stream_id, pt->topic_id);
	for (struct fwd *f = tp != NULL && pt->pid < tp->n ? tp->fwds[pt->pid] : NULL, *next; f != NULL; f = next) {
		next = f->pnext;
		if (!f->acked && f->term != 0) {
			if (srv__fwd_check_placed(pt, f, index))
				continue; /* answered */
			if (f->placed && f->index <= index)
				f->placed = false;
			if (!f->placed && f->applied_at < index)
				f->unsure = true;
		}
	}
}

static const struct clu_group_ops part_ops = {part_apply, part_state, part_restore};

/*
 * Before entries below keep_from leave the log (retention, DeleteSegments), the group records a snapshot
 * through its applied index, so that Raft never asks for them again. Returns 0 when they may go.
 */
int srv__part_compact(struct part *pt, uint64_t keep_from)
{
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	if (keep_from <= plog_first_index(pt->log) || keep_from > st.applied_index + 1)
		return -EINVAL;
	uint8_t manifest[8];
	record_put64(manifest, pt->committed_next);
	return clu_group_snapshot(pt->g, st.applied_index, keep_from, manifest, sizeof(manifest));
}

uint64_t srv__part_applied(const struct part *pt)
{
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	return st.applied_index;
}

static int part_open(struct srv *s, const struct meta_topic *t, uint32_t pid, uint64_t gid, struct plog *log,
		     struct dedup *dd, bool recovering, struct part **out)
{
	struct part *pt = calloc(1, sizeof(*pt));
	if (pt == NULL)
		return -ENOMEM;
	pt->srv = s;
	pt->stream_id = t->stream_id;
	pt->topic_id = t->id;
	pt->pid = pid;
	pt->gid = gid;
	pt->log = log;
	pt->dd = dd;
	pt->committed_next = plog_first_offset(log);
	if (dd != NULL)
		dedup_rebuild(log, dd);
	uint64_t ids[META_MAX_REPLICAS];
	const struct meta_partition *mp = &t->partitions[pid];
	for (uint32_t i = 0; i < mp->n_replicas; i++)
		ids[i] = mp->replicas[i];
	/* The first replicas bootstrap the group; one that joined later waits for its leader to add it. */
	int rv = clu_group_open(s->clu, gid, log, ids, mp->n_replicas, !mp->moved, recovering, RECORD_MESSAGES, 0,
				dd == NULL,
				&part_ops, pt, &pt->g);
	if (rv != 0) {
		free(pt);
		return rv;
	}
	if (s->clock_skewed || s->draining)
		clu_group_set_campaign(pt->g, false);
	*out = pt;
	return 0;
}

static void part_close(struct part *pt, bool destroy)
{
	if (pt == NULL)
		return;
	clu_group_close(pt->g, destroy);
	while (pt->waits != NULL) {
		struct swait *w = pt->waits;
		pt->waits = w->next;
		srv__swait_finish(pt, w, -ECANCELED, 0);
	}
	free(pt);
}

struct part *srv__part_by_gid(struct srv *s, uint64_t gid)
{
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++)
			if (tp->pp[i] != NULL && tp->pp[i]->gid == gid)
				return tp->pp[i];
	return NULL;
}

/* Closes a replica hosted here and deletes its log (the partition went, or the replica moved away). */
static void slot_drop(struct srv *s, struct tparts *tp, uint32_t p)
{
	srv__fwds_detach(tp, p);
	part_close(tp->pp[p], true);
	tp->pp[p] = NULL;
	dedup_free(tp->dd[p]);
	tp->dd[p] = NULL;
	if (tp->logs[p] != NULL) {
		plog_destroy(tp->logs[p]);
	} else if (tp->gids[p] != 0) {
		/* A replica whose log could not be opened (damaged): its files go with it all the same. */
		char dir[4096];
		part_dir(s, tp->gids[p], dir, sizeof(dir));
		srv__rm_tree(s->pio, dir);
	}
	tp->logs[p] = NULL;
	tp->gids[p] = 0;
}

/*
 * A data directory written before partition directories were named by group id keeps a partition in
 * <partitions>/<stream>/<topic>/<partition>: it becomes the group's directory when that does not exist
 * yet. (In the old layout one directory served every incarnation of the same ids: when ids were reused,
 * the first incarnation the replay creates takes it, as the old layout could not tell them apart either.)
 */
static void move_old_layout(struct srv *s, const struct meta_topic *t, uint32_t p, const char *dir)
{
	char old[4096], **names;
	size_t n;
	snprintf(old, sizeof(old), "%s/%" PRIu32 "/%" PRIu32 "/%" PRIu32, s->pdir, t->stream_id, t->id, p);
	if (pio_list(s->pio, dir, &names, &n) == 0) {
		pio_list_free(names, n);
		return;
	}
	if (pio_list(s->pio, old, &names, &n) != 0)
		return;
	pio_list_free(names, n);
	int rv = pio_rename(s->pio, old, dir);
	if (rv == 0)
		rv = pio_syncdir(s->pio, s->pdir);
	if (rv != 0)
		glog_error(TAG, "partition directory %s cannot become %s: %s", old, dir, strerror(-rv));
	else
		glog_info(TAG, "partition directory %s is now %s", old, dir);
}

/*
 * Moves a damaged directory (a partition replica, or the metadata log) to
 * <data_dir>/damaged/<name>-<µs since the epoch> (made durable, and so is its removal from parent), where
 * nothing of Galgo's reads or deletes it: it is there for an operator to inspect and remove.
 */
int srv__set_aside(struct srv *s, const char *name, const char *dir, const char *parent, char *out, size_t n)
{
	char base[4096];
	snprintf(base, sizeof(base), "%s/damaged", s->cfg->node.data_dir);
	int rv = pio_mkdir(s->pio, base);
	if (rv != 0 && rv != -EEXIST)
		goto fail;
	rv = pio_syncdir(s->pio, s->cfg->node.data_dir);
	if (rv != 0)
		goto fail;
	snprintf(out, n, "%s/%s-%" PRIu64, base, name, srv__now_us());
	rv = pio_rename(s->pio, dir, out);
	if (rv == 0)
		rv = pio_syncdir(s->pio, base);
	if (rv == 0)
		rv = pio_syncdir(s->pio, parent);
	if (rv == 0)
		return 0;
fail:
	glog_error(TAG, "the damaged %s cannot be set aside: %s", dir, strerror(-rv));
	return rv;
}

/*
 * Makes slot p of a topic match the metadata: opens the replica when this node hosts it and it is not
 * open; a replica open here that the metadata moved to other nodes is marked leaving and stays until the
 * group has removed it (part_leave_check), so that it can still hand its log to the new replicas.
 */
static int slot_open(struct srv *s, const struct meta_topic *t, struct tparts *tp, uint32_t p, bool damaged);

static int slot_sync(struct srv *s, const struct meta_topic *t, struct tparts *tp, uint32_t p)
{
	bool hosted = meta_partition_hosts(&t->partitions[p], (uint32_t)clu_node_id(s->clu));
	if (tp->pp[p] != NULL) {
		tp->pp[p]->leaving = !hosted;
		return 0;
	}
	if (!hosted || tp->logs[p] != NULL)
		return 0;
	return slot_open(s, t, tp, p, false);
}

/*
 * Opens this node's replica of slot p (closed now). damaged: the open replica was found damaged at run
 * time (and closed): it is set aside without trying to open it.
 */
static int slot_open(struct srv *s, const struct meta_topic *t, struct tparts *tp, uint32_t p, bool damaged)
{
	assert(tp->pp[p] == NULL && tp->logs[p] == NULL && p < t->n_partitions); /* opens a closed slot */
	char dir[4096];
	struct plog_opts o;
	struct plog_report rep;
	uint64_t gid = clu_partition_gid(t->stream_id, t->id, t->created_at, p, t->partitions[p].created_at);
	tp->gids[p] = gid;
	part_dir(s, gid, dir, sizeof(dir));
	if (!damaged)
		move_old_layout(s, t, p, dir);
	plog_opts_for(s, t, p, &o);
	int r = damaged ? -EBADMSG : plog_open(s->pio, s->fl, dir, &o, &rep, &tp->logs[p]);
	bool recovering = false;
	if (r == -EBADMSG && t->partitions[p].n_replicas > 1) {
		/*
		 * Damage below the recovery point, and peers to repair it from: the damaged replica is set aside
		 * whole (kept for inspection), with its snapshot, and this replica restarts empty, keeping its
		 * term and vote. It is rebuilt from its leader (entries or a snapshot and an out-of-band fetch)
		 * and votes in no election until it has caught up (rgroup_config.recovering).
		 */
		char aside[4200];
		tp->logs[p] = NULL;
		char name[20];
		snprintf(name, sizeof(name), "%016" PRIx64, gid);
		if (srv__set_aside(s, name, dir, s->pdir, aside, sizeof(aside)) == 0) {
			clu_forget_snapshot(s->clu, gid);
			glog_warn(TAG, "partition %s is damaged: moved to %s; this replica is rebuilt from its peers and "
				       "votes in no election until it has caught up",
				  dir, aside);
			s->repairs++;
			recovering = true;
			r = plog_open(s->pio, s->fl, dir, &o, &rep, &tp->logs[p]);
		}
	}
	if (r != 0) {
		glog_error(TAG, "partition %s cannot be opened: %s", dir, strerror(-r));
		tp->logs[p] = NULL;
		return r;
	}
	if (t->dedup_window > 0)
		tp->dd[p] = dedup_new((uint32_t)(t->dedup_window > DEDUP_WINDOW_MAX ? DEDUP_WINDOW_MAX : t->dedup_window));
	r = part_open(s, t, p, gid, tp->logs[p], tp->dd[p], recovering, &tp->pp[p]);
	if (r == -EBADMSG && !recovering && t->partitions[p].n_replicas > 1) {
		/* Its snapshot is damaged (raft/rsnap.c checks): the replica is rebuilt from its peers likewise. */
		glog_warn(TAG, "partition %s: its snapshot is damaged", dir);
		tp->pp[p] = NULL;
		dedup_free(tp->dd[p]);
		tp->dd[p] = NULL;
		(void)plog_close(tp->logs[p]);
		tp->logs[p] = NULL;
		return slot_open(s, t, tp, p, true);
	}
	if (r != 0)
		glog_error(TAG, "partition %s: its Raft group cannot start: %s", dir, strerror(-r));
	return r;
}

int srv__tparts_sync(struct srv *s, const struct meta_topic *t)
{
	struct tparts *tp = srv__tparts_find(s, t->stream_id, t->id);
	if (tp == NULL) {
		tp = calloc(1, sizeof(*tp));
		if (tp == NULL)
			return -ENOMEM;
		tp->stream_id = t->stream_id;
		tp->topic_id = t->id;
		tp->next = s->parts;
		s->parts = tp;
	}
	int rv = 0;
	while (tp->n > t->n_partitions)
		slot_drop(s, tp, --tp->n);
	if (t->n_partitions > tp->n) {
		struct plog **a = realloc(tp->logs, t->n_partitions * sizeof(*a));
		if (a == NULL)
			return -ENOMEM;
		tp->logs = a;
		uint64_t *g = realloc(tp->gids, t->n_partitions * sizeof(*g));
		if (g == NULL)
			return -ENOMEM;
		tp->gids = g;
		struct fwd **fl = realloc(tp->fwds, t->n_partitions * sizeof(*fl));
		if (fl == NULL)
			return -ENOMEM;
		tp->fwds = fl;
		for (uint32_t p = tp->n; p < t->n_partitions; p++)
			tp->fwds[p] = NULL;
		uint64_t *ra = realloc(tp->reopen_at, t->n_partitions * sizeof(*ra));
		if (ra == NULL)
			return -ENOMEM;
		tp->reopen_at = ra;
		struct dedup **d = realloc(tp->dd, t->n_partitions * sizeof(*d));
		if (d == NULL)
			return -ENOMEM;
		tp->dd = d;
		struct part **pp = realloc(tp->pp, t->n_partitions * sizeof(*pp));
		if (pp == NULL)
			return -ENOMEM;
		tp->pp = pp;
		for (uint32_t p = tp->n; p < t->n_partitions; p++) {
			tp->dd[p] = NULL;
			tp->pp[p] = NULL;
			tp->logs[p] = NULL;
			tp->gids[p] = 0;
			tp->reopen_at[p] = 0;
		}
		tp->n = t->n_partitions;
	}
	for (uint32_t p = 0; p < tp->n; p++) {
		int r = slot_sync(s, t, tp, p);
		if (r != 0)
			rv = r;
	}
	return rv;
}

/* Closes (destroy: and deletes) every log of a topic. */
void srv__tparts_drop(struct srv *s, uint32_t stream_id, uint32_t topic_id, bool destroy)
{
	for (struct tparts **pp = &s->parts; *pp != NULL; pp = &(*pp)->next) {
		struct tparts *tp = *pp;
		if (tp->stream_id != stream_id || tp->topic_id != topic_id)
			continue;
		for (uint32_t i = 0; i < tp->n; i++) {
			srv__fwds_detach(tp, i);
			if (destroy) {
				slot_drop(s, tp, i);
				continue;
			}
			part_close(tp->pp[i], false);
			dedup_free(tp->dd[i]);
			if (tp->logs[i] != NULL)
				plog_close(tp->logs[i]);
		}
		*pp = tp->next;
		free(tp->gids);
		free(tp->reopen_at);
		free(tp->fwds);
		free(tp->pp);
		free(tp->dd);
		free(tp->logs);
		free(tp);
		break;
	}
}

struct plog *srv__part_log(struct srv *s, uint32_t stream_id, uint32_t topic_id, uint32_t pid)
{
	struct tparts *tp = srv__tparts_find(s, stream_id, topic_id);
	return tp != NULL && pid < tp->n ? tp->logs[pid] : NULL;
}

/* Bytes of the messages a partition holds (Raft's configuration and barrier entries left out). */
uint64_t srv__part_bytes(struct srv *s, uint32_t stream_id, uint32_t topic_id, uint32_t pid)
{
	struct tparts *tp = srv__tparts_find(s, stream_id, topic_id);
	if (tp == NULL || pid >= tp->n || tp->logs[pid] == NULL)
		return 0;
	struct plog *l = tp->logs[pid];
	struct part *pt = tp->pp[pid];
	uint64_t n = plog_payload_bytes(l), other = pt != NULL ? pt->other_bytes : 0;
	/*
	 * other_bytes counts the applied entries; those appended and not applied yet (a new leader's barrier,
	 * a configuration change) are found in the log itself: usually none or a few (at most the leader's
	 * cap of uncommitted entries are looked at).
	 */
	uint64_t last = plog_last_index(l), from = pt != NULL ? srv__part_applied(pt) + 1 : last + 1;
	if (from < plog_first_index(l))
		from = plog_first_index(l);
	for (uint64_t i = from; i <= last && i - from < 2048; i++) {
		struct record_env env;
		if (plog_entry_at(l, i, &env) == 0 && env.type != RECORD_MESSAGES)
			other += env.length;
	}
	return n > other ? n - other : 0;
}

/* Sizes and message counts for headers. */
void srv__topic_usage(struct srv *s, const struct meta_topic *t, uint64_t *bytes, uint64_t *msgs)
{
	*bytes = *msgs = 0;
	for (uint32_t p = 0; p < t->n_partitions; p++) {
		struct plog *l = srv__part_log(s, t->stream_id, t->id, p);
		if (l == NULL)
			continue;
		*bytes += srv__part_bytes(s, t->stream_id, t->id, p);
		*msgs += plog_next_offset(l) - plog_first_offset(l);
	}
}

/*
 * A new partition leader whose log is fully committed commits an empty entry of its own term at once
 * (libraft appends one itself only when its log is not fully committed). Until an entry of a later term
 * commits, an uncommitted entry of the previous leader (a forwarded send it took just before it stalled)
 * could still commit if that leader came back and won an election; once one has, it never can, and a
 * replica that forwarded such a send can tell the client for certain (srv__fwd_settle).
 */
void srv__part_term_barrier(struct part *pt)
{
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	struct record_env env;
	bool needed = st.state == RAFT_LEADER && st.commit_index == st.last_index &&
		      (st.last_index == 0 || (plog_entry_at(pt->log, st.last_index, &env) == 0 && env.term < st.term));
	int rv = needed ? clu_group_barrier(pt->g) : 0;
	if (rv != -EBUSY && rv != -EAGAIN)
		pt->term_barrier = false;
}

static void membership_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)s;
	(void)res;
	if (w->p == NULL)
		return;
	if (status == -EAGAIN)
		srv__finish(w->p, PROTO_E_TRANSIENT_NOT_ACCEPTED, false, NULL, 0);
	else if (status != 0 || rv < 0)
		srv__finish(w->p, PROTO_E_ERROR, false, NULL, 0);
	else
		srv__finish(w->p, (uint32_t)rv, false, NULL, 0);
}

/* A node counts as live for a membership change when it is this node or its link to this node is up. */
static bool node_live(const struct srv *s, uint64_t id)
{
	return id == clu_node_id(s->clu) || clu_connected(s->clu, id);
}

/* Whether more than half of `ids` but `gone` are live (etcd's strict reconfiguration check). */
static bool majority_live_without(const struct srv *s, const uint64_t *ids, size_t n, uint64_t gone)
{
	size_t rest = 0, live = 0;
	for (size_t i = 0; i < n; i++) {
		if (ids[i] == gone)
			continue;
		rest++;
		live += node_live(s, ids[i]);
	}
	return rest == 0 || 2 * live > rest;
}

/*
 * RemoveNode's admission check, as this node sees its links: the roster without the node, and the
 * metadata group's voters without it, must each keep a live majority. Otherwise the removal would leave
 * the metadata group (or a partition whose replicas are the rest) unable to commit until a down node
 * returns, so it is refused (10063) and nothing changes; the operator brings the down node back, or
 * removes it first. The leaders check again before they drop a voter (group_reconcile).
 */
static bool removal_keeps_majority(const struct srv *s, uint64_t gone)
{
	uint64_t ids[2 * CLU_MAX_NODES];
	size_t n = 0;
	for (uint32_t i = 0; i < s->meta->n_nodes && n < CLU_MAX_NODES; i++)
		ids[n++] = s->meta->nodes[i].id;
	if (!majority_live_without(s, ids, n, gone))
		return false;
	struct rgroup_member m[2 * CLU_MAX_NODES];
	size_t nm = clu_group_members(s->mg, m, sizeof(m) / sizeof(m[0]));
	n = 0;
	for (size_t i = 0; i < nm && i < sizeof(m) / sizeof(m[0]); i++)
		if (m[i].role == RAFT_VOTER)
			ids[n++] = m[i].id;
	return majority_live_without(s, ids, n, gone);
}

/*
 * AddNode (10003) and RemoveNode (10004), docs/protocol-extensions.md: a change of the node table through
 * the metadata group, answered once applied here; the leaders then change their groups (srv__membership_tick).
 */
void srv__handle_membership(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
			      size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct meta_cmd c = {.ts = srv__now_us()};
	if (hdr->code == FRAME_CODE_GALGO_ADD_NODE) {
		struct meta_node *n = &c.nodes[0];
		struct wire_str host;
		c.type = META_NODE_ADD;
		c.n_nodes = 1;
		n->id = wire_get_u32(&r);
		wire_get_str8(&r, &host);
		n->raft_port = wire_get_u16(&r);
		n->tcp_port = wire_get_u16(&r);
		n->quic_port = wire_get_u16(&r);
		n->http_port = wire_get_u16(&r);
		if (wire_rd_done(&r) != 0 || host.len == 0 || n->raft_port == 0 ||
		    !clu_host_valid((const char *)host.ptr, host.len)) {
			srv__finish(p, PROTO_E_INVALID_COMMAND, false, NULL, 0);
			return;
		}
		memcpy(n->host, host.ptr, host.len);
	} else {
		c.type = META_NODE_REMOVE;
		c.node_id = wire_get_u32(&r);
		if (wire_rd_done(&r) != 0) {
			srv__finish(p, PROTO_E_INVALID_COMMAND, false, NULL, 0);
			return;
		}
	}
	if (!srv__may(ss, hdr->operation, hdr->code, 0, 0)) {
		srv__finish(p, PROTO_E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	/* A node without the node-to-node listener (no cluster.nodes and cluster.secret) cannot take peers. */
	if (c.type == META_NODE_ADD && !clu_networked(s->clu)) {
		srv__finish(p, PROTO_E_FEATURE_UNAVAILABLE, false, NULL, 0);
		return;
	}
	if (c.type == META_NODE_REMOVE && !removal_keeps_majority(s, c.node_id)) {
		glog_warn(TAG, "RemoveNode %" PRIu32 " refused: the other nodes would have no live majority", c.node_id);
		srv__finish(p, PROTO_E_NO_LIVE_MAJORITY, false, NULL, 0);
		return;
	}
	struct mwait *w = srv__meta_submit(s, &c, membership_done);
	if (w == NULL) {
		srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
		return;
	}
	w->p = p;
	srv__mwait_push(s, w);
}

/*
 * Drain (10005), docs/protocol-extensions.md: body [mode u8]: 1 drain this node, 0 end the drain, 2 only
 * report. Reply: [draining u8][groups led here u32]; the drain is done when that count is 0.
 */
void srv__handle_drain(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	if (len != 1 || body[0] > 2) {
		srv__finish(p, PROTO_E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	if (!srv__may(ss, hdr->operation, hdr->code, 0, 0)) {
		srv__finish(p, PROTO_E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct srv *s = ss->srv;
	uint32_t led = body[0] == 2 ? srv__drain_tick(s) : srv_drain(s, body[0] == 1);
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_u8(&b, s->draining ? 1 : 0);
	wire_put_u32(&b, led);
	srv__finish_buf(p, 0, false, &b);
	wire_buf_free(&b);
}

/*
 * Draining (srv_drain; galgo-admin drain, and galgod itself on SIGTERM): the node asks for no vote in any
 * group and ignores leadership transfers to it (rgroup_set_campaign), tells its peers it is draining
 * (STATE: their srv__balance_leaders hands it nothing), and hands every leadership it holds to another voter
 * that is connected, not draining and whose clock agrees, in placement order, retried each second per
 * group until it leads nothing that could be handed over (a group whose other replicas are all down or
 * draining, or that has none, is not waited for). It ends with srv_drain(false) or a restart.
 */
static bool drain_target_ok(struct srv *s, uint64_t id)
{
	return id != clu_node_id(s->clu) && clu_connected(s->clu, id) && !clu_peer_draining(s->clu, id) &&
	       !clu_clock_disagrees(s->clu, id);
}

uint32_t srv__drain_tick(struct srv *s)
{
	uint32_t led = 0;
	uint64_t now = srv__mono_ms();
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			const struct meta_partition *mp = &t->partitions[i];
			if (pt == NULL || !clu_group_leader(pt->g))
				continue;
			bool can = false;
			for (uint32_t k = 0; k < mp->n_replicas && !can; k++)
				can = drain_target_ok(s, mp->replicas[k]);
			if (!can)
				continue; /* no replica to hand it to (one replica, or the others down or draining) */
			led++;
			if (!s->draining || now - pt->transfer_at < 1000)
				continue;
			pt->transfer_at = now;
			for (uint32_t k = 0; k < mp->n_replicas; k++)
				if (drain_target_ok(s, mp->replicas[k]) && clu_group_transfer(pt->g, mp->replicas[k]) == 0)
					break;
		}
	}
	if (s->mg != NULL && clu_group_leader(s->mg)) {
		struct rgroup_member m[2 * CLU_MAX_NODES];
		size_t nm = clu_group_members(s->mg, m, sizeof(m) / sizeof(m[0]));
		if (nm > sizeof(m) / sizeof(m[0]))
			nm = sizeof(m) / sizeof(m[0]);
		bool can = false;
		for (size_t k = 0; k < nm && !can; k++)
			can = m[k].role == RAFT_VOTER && drain_target_ok(s, m[k].id);
		led += can;
		if (can && s->draining && now - s->meta_transfer_at >= 1000) {
			s->meta_transfer_at = now;
			for (size_t k = 0; k < nm; k++)
				if (m[k].role == RAFT_VOTER && drain_target_ok(s, m[k].id) && clu_group_transfer(s->mg, m[k].id) == 0)
					break;
		}
	}
	return led;
}

uint32_t srv_drain(struct srv *s, bool on)
{
	if (on != s->draining) {
		s->draining = on;
		glog_info(TAG, on ? "draining: handing over every leadership this node holds, taking none"
				  : "drain ended: this node may lead again");
		bool campaign = on ? false : !s->clock_skewed;
		for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
			for (uint32_t i = 0; i < tp->n; i++)
				if (tp->pp[i] != NULL)
					clu_group_set_campaign(tp->pp[i]->g, campaign);
		if (s->mg != NULL)
			clu_group_set_campaign(s->mg, !on);
		clu_set_draining(s->clu, on);
	}
	return srv__drain_tick(s);
}

/*
 * Leadership balance: the first replica of a partition is its preferred leader, and placement rotates
 * the first replica over the nodes (node/meta.c), so preferred leaders spread evenly. A leader that is
 * not the preferred one hands over to it when its link is up, at most every BALANCE_MS per partition;
 * libraft sends the TimeoutNow only once the target has caught up.
 */
#define BALANCE_MS 5000u
void srv__balance_leaders(struct srv *s)
{
	uint64_t now = srv__mono_ms(), self = clu_node_id(s->clu);
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			const struct meta_partition *mp = &t->partitions[i];
			if (pt == NULL || pt->leaving || !clu_group_leader(pt->g) || now - pt->transfer_at < BALANCE_MS)
				continue;
			if (mp->n_replicas < 2 || mp->replicas[0] == self || !clu_connected(s->clu, mp->replicas[0]) ||
			    clu_clock_disagrees(s->clu, mp->replicas[0]) || clu_peer_draining(s->clu, mp->replicas[0]))
				continue;
			pt->transfer_at = now;
			if (clu_group_transfer(pt->g, mp->replicas[0]) == 0)
				glog_debug(TAG, "partition %" PRIu32 "/%" PRIu32 "/%" PRIu32 ": leadership to node %" PRIu32,
					   pt->stream_id, pt->topic_id, pt->pid, mp->replicas[0]);
		}
	}
}

static bool id_in(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static bool majority_live_voters_without(const struct srv *s, const struct rgroup_member *m, size_t nm,
					 uint64_t gone)
{
	uint64_t ids[2 * CLU_MAX_NODES];
	size_t n = 0;
	for (size_t i = 0; i < nm && n < sizeof(ids) / sizeof(ids[0]); i++)
		if (m[i].role == RAFT_VOTER)
			ids[n++] = m[i].id;
	return majority_live_without(s, ids, n, gone);
}

/*
 * Membership of a group, driven by its leader one change at a time (each must commit before the next;
 * rgroup answers -EBUSY meanwhile): first a wanted node that is not a member joins as a standby, then a
 * wanted standby is promoted (libraft's catch-up rounds first) while there are fewer than max_voters
 * voters, and last a member that is not wanted goes (a voter only while the voters left have a live
 * majority: a removal waits for a down node to return rather than leave the group unable to commit); the
 * leader itself goes by handing leadership to a wanted voter first. So a replica set changes
 * standby-first, and never drops below its quorum.
 */
static void group_reconcile(struct srv *s, struct clu_group *g, const uint64_t *want, size_t n_want,
			    size_t max_voters, const char *what)
{
	struct rgroup_member m[2 * CLU_MAX_NODES];
	size_t nm = clu_group_members(g, m, sizeof(m) / sizeof(m[0]));
	if (nm > sizeof(m) / sizeof(m[0]))
		nm = sizeof(m) / sizeof(m[0]);
	uint64_t self = clu_node_id(s->clu), members[2 * CLU_MAX_NODES];
	size_t voters = 0;
	for (size_t i = 0; i < nm; i++) {
		members[i] = m[i].id;
		voters += m[i].role == RAFT_VOTER;
	}
	for (size_t k = 0; k < n_want; k++)
		if (!id_in(members, nm, want[k])) {
			if (clu_group_add(g, want[k]) == 0)
				glog_info(TAG, "%s: node %" PRIu64 " added as a standby", what, want[k]);
			return;
		}
	for (size_t i = 0; i < nm && voters < max_voters; i++)
		if (m[i].role != RAFT_VOTER && id_in(want, n_want, m[i].id)) {
			uint64_t id = m[i].id;
			if (clu_group_promote(g, id) == 0)
				glog_info(TAG, "%s: node %" PRIu64 " promoted to voter", what, id);
			return; /* -EINPROGRESS: catching up; asked again at the next tick */
		}
	for (size_t i = 0; i < nm; i++) {
		uint64_t id = m[i].id;
		if (id_in(want, n_want, id))
			continue;
		if (id != self) {
			bool voter = false;
			for (size_t j = 0; j < nm; j++)
				voter |= m[j].id == id && m[j].role == RAFT_VOTER;
			/* a voter goes only if the voters left have a live majority: else wait for a node to return */
			if (voter && !majority_live_voters_without(s, m, nm, id)) {
				glog_debug(TAG, "%s: node %" PRIu64 " stays until the other voters have a live majority",
					   what, id);
				return;
			}
			if (clu_group_remove(g, id) == 0)
				glog_info(TAG, "%s: node %" PRIu64 " removed", what, id);
			return;
		}
		for (size_t j = 0; j < nm; j++) {
			uint64_t to = m[j].id;
			if (m[j].role == RAFT_VOTER && to != self && id_in(want, n_want, to) && clu_connected(s->clu, to)) {
				if (clu_group_transfer(g, to) == 0)
					glog_info(TAG, "%s: this node is leaving; leadership to node %" PRIu64, what, to);
				return;
			}
		}
		return;
	}
}

/*
 * A replica the metadata moved away closes (and deletes its log) once the group no longer needs it:
 * its configuration no longer lists it, or it has known no leader for three election timeouts (the
 * leader stops talking to a removed member, which then never hears of its removal).
 */
static bool part_may_leave(struct srv *s, struct part *pt)
{
	if (clu_group_leader(pt->g))
		return false;
	struct rgroup_member m[2 * CLU_MAX_NODES];
	size_t nm = clu_group_members(pt->g, m, sizeof(m) / sizeof(m[0]));
	bool member = false;
	for (size_t i = 0; i < nm && i < sizeof(m) / sizeof(m[0]); i++)
		member |= m[i].id == clu_node_id(s->clu);
	if (!member)
		return true;
	uint64_t now = srv__mono_ms();
	if (clu_group_leader_id(pt->g) != 0) {
		pt->leaderless_since = 0;
		return false;
	}
	if (pt->leaderless_since == 0)
		pt->leaderless_since = now;
	return now - pt->leaderless_since >= 3ull * s->cfg->cluster.election_timeout_ms;
}

/* Every tick: the metadata leader and each partition leader bring their group to the node table. */
void srv__membership_tick(struct srv *s)
{
	const struct meta *m = s->meta;
	if (m->n_nodes == 0 || !s->meta_caught_up)
		return;
	srv__roster_from_meta(s); /* a removed node leaves the roster once no group here counts it */
	uint64_t want[CLU_MAX_NODES];
	if (clu_group_leader(s->mg)) {
		for (uint32_t i = 0; i < m->n_nodes; i++)
			want[i] = m->nodes[i].id;
		group_reconcile(s, s->mg, want, m->n_nodes, 5, "metadata group");
	}
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(m, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL)
				continue;
			if (pt->leaving && part_may_leave(s, pt)) {
				glog_info(TAG, "partition %" PRIu32 "/%" PRIu32 "/%" PRIu32 ": replica moved away; closed",
					  pt->stream_id, pt->topic_id, pt->pid);
				slot_drop(s, tp, i);
				continue;
			}
			if (!clu_group_leader(pt->g))
				continue;
			const struct meta_partition *mp = &t->partitions[i];
			for (uint32_t r = 0; r < mp->n_replicas; r++)
				want[r] = mp->replicas[r];
			char what[64];
			snprintf(what, sizeof(what), "partition %" PRIu32 "/%" PRIu32 "/%" PRIu32, pt->stream_id, pt->topic_id,
				 pt->pid);
			group_reconcile(s, pt->g, want, mp->n_replicas, META_MAX_REPLICAS, what);
		}
	}
}

/*
 * The scrubber: once a tick (a second) it verifies up to storage.scrub_rate bytes of stored records not yet
 * known good (partition/plog.h), one partition after another, going on where it stopped; damage it finds
 * is fenced and logged by plog and counted in galgo_partition_damaged_records. Reads verify what they
 * serve whether or not the scrubber got there first, so this only moves that work off the read path.
 */
void srv__scrub_tick(struct srv *s)
{
	uint64_t budget = s->cfg->storage.scrub_rate;
	uint32_t n = srv_partition_count(s), start = n ? s->scrub_next % n : 0, k = 0;
	for (struct tparts *tp = s->parts; tp != NULL && budget > 0; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++, k++) {
			if (k < start || tp->logs[i] == NULL || budget == 0)
				continue;
			int64_t done = plog_scrub(tp->logs[i], budget);
			if (done > 0)
				budget = (uint64_t)done >= budget ? 0 : budget - (uint64_t)done;
			s->scrub_next = k + 1;
		}
	if (budget > 0)
		s->scrub_next = 0; /* everything after the start is verified: next time from the first again */
}

/*
 * Repair of damage found at run time (a read or the scrubber fenced a record: plog_damaged). A replica
 * with peers is rebuilt from them: a leader hands its leadership to another replica first (libraft hands
 * it over only to a replica that has caught up), and keeps it, serving what is not damaged, until that
 * works; a follower that knows a leader other than itself then closes, is set aside and reopens empty and
 * recovering, as when damage is found at open (slot_open). So a replica is only set aside while another
 * one leads, never leaving its group without the replica that still holds the data. A partition with a
 * single replica keeps its damage fenced.
 */

/*
 * A partition whose Raft group stopped (a write or flush of its log failed: a full disk, an I/O error)
 * would stay stopped until the process restarts, and its replica would still answer polls from what it
 * held then. It is closed and reopened from its disk instead, RESTART_MS after the group stopped and
 * again every RESTART_MS while that fails: what its log made durable is kept (the open recovers a torn
 * tail), what it had not is fetched again from the leader, as after a crash of this node alone. Polls of
 * a stopped group are refused meanwhile (part_readable in node/srv_poll.c).
 */
#define RESTART_MS 5000u

void srv__restart_tick(struct srv *s)
{
	uint64_t now = srv__mono_ms();
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			int failed = pt != NULL ? clu_group_failed(pt->g) : 0;
			if (failed != 0 && tp->reopen_at[i] == 0) {
				char dir[4096];
				part_dir(s, tp->gids[i], dir, sizeof(dir));
				glog_warn(TAG, "partition %s: its Raft group stopped (%s); reopened from disk in %u s", dir,
					  strerror(-failed), RESTART_MS / 1000);
				tp->reopen_at[i] = now + RESTART_MS;
			}
			if (tp->reopen_at[i] == 0 || now < tp->reopen_at[i] || (pt != NULL && failed == 0))
				continue;
			if (pt != NULL) {
				part_close(pt, false);
				tp->pp[i] = NULL;
			}
			dedup_free(tp->dd[i]);
			tp->dd[i] = NULL;
			if (tp->logs[i] != NULL)
				(void)plog_close(tp->logs[i]);
			tp->logs[i] = NULL;
			s->restarts++;
			tp->reopen_at[i] = 0;
			if (!meta_partition_hosts(&t->partitions[i], (uint32_t)clu_node_id(s->clu)))
				continue;
			if (slot_open(s, t, tp, i, false) != 0 || tp->pp[i] == NULL) {
				if (tp->pp[i] == NULL && tp->logs[i] != NULL) {
					dedup_free(tp->dd[i]);
					tp->dd[i] = NULL;
					(void)plog_close(tp->logs[i]);
					tp->logs[i] = NULL;
				}
				tp->reopen_at[i] = now + RESTART_MS;
			} else {
				glog_info(TAG, "partition of group %016" PRIx64 " reopened from disk", tp->gids[i]);
			}
		}
	}
}

void srv__repair_tick(struct srv *s)
{
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL || pt->leaving || tp->logs[i] == NULL || plog_damaged(tp->logs[i]) == 0 ||
			    t->partitions[i].n_replicas < 2)
				continue;
			if (clu_group_leader(pt->g)) {
				const struct meta_partition *mp = &t->partitions[i];
				for (uint32_t k = 0; k < mp->n_replicas; k++)
					if (mp->replicas[k] != (uint32_t)clu_node_id(s->clu) &&
					    clu_connected(s->clu, mp->replicas[k]) &&
					    clu_group_transfer(pt->g, mp->replicas[k]) == 0)
						break;
				continue;
			}
			uint64_t leader = clu_group_leader_id(pt->g);
			if (leader == 0 || leader == clu_node_id(s->clu))
				continue; /* no other leader to rebuild from yet */
			char dir[4096];
			part_dir(s, tp->gids[i], dir, sizeof(dir));
			glog_warn(TAG, "partition %s holds %" PRIu64 " damaged records: rebuilding it from its peers", dir,
				  plog_damaged(tp->logs[i]));
			part_close(pt, false);
			tp->pp[i] = NULL;
			dedup_free(tp->dd[i]);
			tp->dd[i] = NULL;
			int rv = plog_close(tp->logs[i]);
			tp->logs[i] = NULL;
			if (rv != 0)
				glog_warn(TAG, "partition %s: closing its damaged log: %s", dir, strerror(-rv));
			(void)slot_open(s, t, tp, i, true);
		}
	}
}

/*
 * A consumer-group member whose client was this node's (client ids carry the node id) but whose session is
 * gone: the removal its session's close submitted (leave_all_groups) failed — the node could not reach the
 * metadata leader then — or never ran. Such a member would keep its partitions from every other member
 * for good (the jepsen group workload saw all three partitions held by clients long gone after a network
 * partition). Once a second each such member's removal is submitted again, at most every 2 s per client,
 * until it has applied.
 */
void srv__members_tick(struct srv *s)
{
	if (s->closing || s->clear_state != 1)
		return;
	uint64_t now = srv__mono_ms();
	uint32_t me = (uint32_t)clu_node_id(s->clu);
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
			struct meta_topic *t = st->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups; g++) {
				const struct meta_group *grp = t->groups[g];
				for (uint32_t m = 0; grp != NULL && m < grp->n_members; m++) {
					uint32_t cid = grp->members[m].client_id;
					if (cid >> 27 != me)
						continue;
					bool live = false;
					for (struct srv_session *o = s->sessions; o != NULL && !live; o = o->next)
						live = !o->closed && o->client_id == cid;
					if (live)
						continue;
					size_t slot = sizeof(s->gone) / sizeof(s->gone[0]), free_slot = slot;
					for (size_t j = 0; j < sizeof(s->gone) / sizeof(s->gone[0]); j++) {
						if (s->gone[j].client_id == cid)
							slot = j;
						else if (s->gone[j].retry_at <= now && free_slot == sizeof(s->gone) / sizeof(s->gone[0]))
							free_slot = j;
					}
					if (slot == sizeof(s->gone) / sizeof(s->gone[0]))
						slot = free_slot;
					if (slot == sizeof(s->gone) / sizeof(s->gone[0]) ||
					    (s->gone[slot].client_id == cid && s->gone[slot].retry_at > now))
						continue; /* submitted lately, or too many at once: next time */
					s->gone[slot].client_id = cid;
					s->gone[slot].retry_at = now + 2000;
					glog_info(TAG, "consumer-group member %" PRIu32 " has no session here any more: removing it",
						  cid);
					struct meta_cmd c = {.type = META_REMOVE_MEMBER, .ts = srv__now_us(), .client_id = cid};
					srv__commit(s, &c);
				}
			}
		}
	}
}
