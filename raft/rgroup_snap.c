/*
 * rgroup_snap — the rgroup module's snapshots (see rgroup_int.h for the module's files): rgroup_snapshot,
 * the InstallSnapshot a leader sends and the Fetches it serves, the install on a follower with the
 * out-of-band fetch of the retained records, and the reconciliation of the log with the snapshot at open.
 * The crash argument for installs, which rgroup.h locates in rgroup.c, is here ("Why not stage" below).
 *
 * Bytes: the snapshot file is raft/rsnap.c's, Fetch and FetchReply are raft/rmsg.c's. The data of an
 * InstallSnapshot (rmsg.c's "data" field, opaque there) is this file's wrapper of the owner's data:
 *
 *   offset  size  field
 *        0     8  keep_from    the sender's log is kept from this index on (rsnap.c's keep_from; >= 1 and
 *                              <= the snapshot's index + 1)
 *        8     8  next_offset  the log's offset after the snapshot's index (rsnap.c's next_offset)
 *       16     .  data         the owner's data, as given to rgroup_snapshot
 *
 * Integers are little-endian (partition/record.h's record_put64). A receiver drops an InstallSnapshot whose
 * data is shorter than 16 bytes or whose keep_from is out of range (rgroup__wire_ok).
 *
 * Snapshots. rgroup_snapshot writes the snapshot file (raft/rsnap.c, the commit point) and then steps
 * RAFT_SNAPSHOT with trailing = index + 1 - keep_from, so libraft's trail (and every AppendEntries it asks
 * for) starts at keep_from and a follower that needs anything older gets InstallSnapshot. The snapshot's
 * data travels wrapped (WIRE_PREFIX: keep_from, next_offset, then the owner's data) and is kept in memory.
 *
 * Installing (follower). On RAFT_UPDATE_SNAPSHOT the records [keep_from..index] are fetched from the
 * leader with Fetch messages (one outstanding, at most max_message_bytes of records per reply, re-asked
 * after 3 heartbeats), written straight into the live log, which is first reset to start at the first
 * record fetched (plog_reset), and once every one of them is durable the snapshot file is written and
 * RAFT_PERSISTED_SNAPSHOT stepped. When the leader no longer holds keep_from the log starts at its first
 * index; when it holds nothing of the range, right after the snapshot (at its next_offset).
 *
 * Why not stage the records elsewhere and switch atomically: a power loss in the middle of an install here
 * leaves the previous snapshot with a log that does not connect to it (it starts above snapshot.index + 1, or
 * is a prefix of the old log, or is empty), never a log that claims entries it does not have. rgroup_open
 * (rgroup__reconcile) recognises a log that does not hold the snapshot's last entry (with its term) or start
 * right after it as an interrupted install and resets it to start after the snapshot; libraft then asks for
 * the install again. What the replica loses is safe to lose: libraft sends InstallSnapshot only when the
 * follower's log matches the leader's at no index from keep_from on (else the probe would have found the
 * match), so every entry the follower holds is either at or below keep_from - 1 <= index <= the leader's
 * commit index, hence committed and held by the majority that acknowledged the commit index (which excludes
 * this follower, whose log does not reach it), or conflicts with the leader's log and so is uncommitted. An
 * AppendEntries acknowledged to this leader beyond index makes the install a no-op in libraft (it already has
 * the entry). This saves a second copy of the records and an owner-level directory switch; the simulation
 * checks it (every committed entry stays on a majority, counting a replica only for what its persisted
 * snapshot or its durable log holds) with a power loss at every write of an install.
 */
#include "raft/rgroup_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "partition/record.h"

/* The data libraft carries in an InstallSnapshot: keep_from, next_offset, then the owner's data. */
#define WIRE_PREFIX 16

bool rgroup__wire_ok(const struct raft_buffer *data, uint64_t last_index)
{
	const uint8_t *w = data->base;
	return data->len >= WIRE_PREFIX && record_le64(w) >= 1 && record_le64(w) <= last_index + 1;
}

/* InstallSnapshot: libraft sets the indexes and terms; the configuration and data come from our snapshot. */
void rgroup__send_snapshot(struct rgroup *g, const struct raft_message *m)
{
	if (!g->have_snap || m->install_snapshot.last_index != g->snap.index)
		return; /* cannot happen: libraft only sends the snapshot it was told about */
	struct raft_message c = *m;
	raft_configuration_init(&c.install_snapshot.conf);
	struct raft_buffer b = {g->snap.conf, g->snap.conf_len};
	uint8_t *buf = NULL;
	size_t len = 0;
	if (raft_configuration_decode(&b, &c.install_snapshot.conf) == 0) {
		c.install_snapshot.conf_index = g->snap.conf_index;
		c.install_snapshot.data.base = g->wire;
		c.install_snapshot.data.len = g->wire_len;
		if (rmsg_encode_snapshot(g->cfg.group_id, &c, &buf, &len) == 0)
			rgroup__send_bytes(g, m->server_id, buf, len);
	}
	free(buf);
	raft_configuration_close(&c.install_snapshot.conf);
}

/* Installing a snapshot from the leader (follower side). */

static unsigned fetch_retry_ms(const struct rgroup *g)
{
	unsigned hb = g->cfg.heartbeat_timeout_ms ? g->cfg.heartbeat_timeout_ms : 100;
	return 3 * hb;
}

void rgroup__send_fetch(struct rgroup *g)
{
	raft_id leader = 0;
	const char *addr = NULL;
	raft_leader(&g->raft, &leader, &addr);
	uint64_t to = leader != 0 && leader != g->cfg.node_id ? leader : g->inst.source;
	g->inst.deadline = rgroup__now(g) + fetch_retry_ms(g);
	struct rmsg_fetch f = {.kind = RMSG_FETCH, .term = raft_current_term(&g->raft), .start = g->inst.next,
			       .end = g->inst.meta.index, .budget = g->cfg.max_message_bytes};
	uint8_t hdr[RMSG_HEADER_SIZE];
	if (to != 0 && rmsg_encode_fetch(g->cfg.group_id, &f, hdr) == 0)
		rgroup__send_bytes(g, to, hdr, sizeof(hdr));
}

void rgroup__install_free(struct rgroup *g)
{
	if (!g->inst.active)
		return;
	raft_configuration_close(&g->inst.meta.configuration);
	free(g->inst.data);
	memset(&g->inst, 0, sizeof(g->inst));
}

/*
 * RAFT_UPDATE_SNAPSHOT: libraft has forgotten its log and waits for RAFT_PERSISTED_SNAPSHOT (it ignores
 * entries and votes meanwhile and does not campaign). The configuration and chunk are ours now. The chunk
 * was checked in rgroup_receive (rgroup__wire_ok).
 */
void rgroup__install_start(struct rgroup *g, struct raft_snapshot_metadata *meta, struct raft_buffer chunk)
{
	rgroup__install_free(g);
	if (g->cfg.snapshot_dir == NULL || chunk.len < WIRE_PREFIX) {
		raft_configuration_close(&meta->configuration);
		raft_free(chunk.base);
		rgroup__fail(g, -ENOTSUP);
		return;
	}
	const uint8_t *w = chunk.base;
	g->inst.meta = *meta;
	g->inst.keep_from = record_le64(w);
	g->inst.next_offset = record_le64(w + 8);
	g->inst.data_len = chunk.len - WIRE_PREFIX;
	g->inst.data = malloc(g->inst.data_len ? g->inst.data_len : 1);
	if (g->inst.data != NULL)
		memcpy(g->inst.data, w + WIRE_PREFIX, g->inst.data_len);
	raft_free(chunk.base);
	g->inst.active = true;
	if (g->inst.data == NULL) {
		rgroup__fail(g, -ENOMEM);
		return;
	}
	g->inst.next = g->inst.keep_from;
	raft_id leader = 0;
	const char *addr = NULL;
	raft_leader(&g->raft, &leader, &addr);
	g->inst.source = leader;
	if (g->inst.next <= meta->index)
		rgroup__send_fetch(g);
}

/* Restarts the log at `index` (offset `offset`) for the records that follow. */
static int install_reset(struct rgroup *g, uint64_t index, uint64_t offset)
{
	assert(g->inst.active && index > 0);
	int rv = plog_reset(g->env.log, index, offset);
	if (rv != 0)
		return rv;
	/* The reset cancelled every append in flight; the log holds nothing yet. */
	assert(g->pending == NULL && plog_last_index(g->env.log) == index - 1);
	g->durable = index - 1;
	g->durable_term = 0;
	g->inst.reset = true;
	g->inst.next = index;
	return 0;
}

/* A FetchReply while installing: appends the records that continue the staged range. */
int rgroup__install_records(struct rgroup *g, const struct rmsg_fetch *f)
{
	if (!g->inst.active || f->end != g->inst.meta.index)
		return 0; /* not (or no longer) asked for */
	int rv = 0;
	if (f->gone) {
		/* Nothing of the range is left anywhere we can ask: the log restarts after the snapshot. */
		if (f->first <= g->inst.meta.index)
			return 0;
		rv = install_reset(g, g->inst.meta.index + 1, g->inst.next_offset);
		return rv != 0 ? rgroup__fail(g, rv) : 0;
	}
	if (f->n == 0)
		return 0;
	bool restart = (!g->inst.reset && f->start == g->inst.next) || (f->start > g->inst.next && f->start == f->first);
	if (!restart && !(g->inst.reset && f->start == g->inst.next))
		return 0; /* a duplicate or a reply to an older request */
	const uint8_t *p = f->records;
	for (uint32_t i = 0; i < f->n && rv == 0; i++) {
		struct record_env env;
		int rc = record_env_decode(p, &env);
		assert(rc == 0); /* checked by rmsg_decode */
		(void)rc;
		if (i == 0 && restart)
			rv = install_reset(g, env.index, env.base_offset);
		if (rv == 0 && env.index == g->inst.meta.index && env.term != g->inst.meta.term)
			rv = -EIO; /* the leader's log disagrees with its own snapshot: stop rather than diverge */
		if (rv == 0)
			rv = rgroup__append_entry(g, env.index, env.term, env.type, p + RECORD_ENVELOPE_SIZE, env.length);
		if (rv == 0) {
			assert(g->inst.reset && plog_last_index(g->env.log) == env.index);
			g->inst.next = env.index + 1;
			g->fetched++;
		}
		p += RECORD_ENVELOPE_SIZE + env.length;
	}
	if (rv != 0)
		return rgroup__fail(g, rv);
	if (g->inst.next <= g->inst.meta.index)
		rgroup__send_fetch(g);
	return 0;
}

/* Remembers a configuration entry (index order; a later one replaces any at or above its index). */
int rgroup__hist_add(struct rgroup *g, uint64_t index, const void *buf, uint32_t len)
{
	while (g->n_hist > 0 && g->hist[g->n_hist - 1].index >= index)
		free(g->hist[--g->n_hist].buf);
	if (g->n_hist == g->cap_hist) {
		size_t cap = g->cap_hist ? g->cap_hist * 2 : 4;
		struct conf_rec *v = realloc(g->hist, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		g->hist = v;
		g->cap_hist = cap;
	}
	uint8_t *b = malloc(len ? len : 1);
	if (b == NULL)
		return -ENOMEM;
	memcpy(b, buf, len);
	g->hist[g->n_hist++] = (struct conf_rec){index, b, len};
	assert(g->n_hist < 2 || g->hist[g->n_hist - 2].index < index); /* kept in index order */
	return 0;
}

/* Keeps only the configuration entries a later snapshot may still need (the last one at or below index). */
static void hist_prune(struct rgroup *g, uint64_t index)
{
	size_t keep = 0;
	while (keep + 1 < g->n_hist && g->hist[keep + 1].index <= index)
		keep++;
	for (size_t i = 0; i < keep; i++)
		free(g->hist[i].buf);
	memmove(g->hist, g->hist + keep, (g->n_hist - keep) * sizeof(*g->hist));
	g->n_hist -= keep;
}

/* Makes s the group's snapshot in memory (it is already on disk); takes its buffers. */
int rgroup__snap_adopt(struct rgroup *g, struct rsnap *s)
{
	uint8_t *w = malloc(WIRE_PREFIX + s->data_len);
	if (w == NULL) {
		rsnap_free(s);
		return -ENOMEM;
	}
	record_put64(w, s->keep_from);
	record_put64(w + 8, s->next_offset);
	memcpy(w + WIRE_PREFIX, s->data, s->data_len);
	if (g->have_snap)
		rsnap_free(&g->snap);
	free(g->wire);
	g->snap = *s;
	g->have_snap = true;
	g->wire = w;
	g->wire_len = WIRE_PREFIX + s->data_len;
	return 0;
}


/*
 * Completes the install once every fetched record is durable: the snapshot file is written (the commit
 * point, see the header comment), then libraft is told and the owner restores its state.
 */
int rgroup__install_progress(struct rgroup *g)
{
	assert(g->inst.active);
	uint64_t index = g->inst.meta.index;
	int rv = 0;
	if (!g->inst.reset && g->inst.keep_from > index)
		rv = install_reset(g, index + 1, g->inst.next_offset);
	if (rv != 0 || !g->inst.reset || g->inst.next <= index || g->durable < index ||
	    plog_last_index(g->env.log) != index)
		return rv;
	/* Every fetched record up to the snapshot's index is in the log and durable. */
	assert(g->durable == index && g->pending == NULL);
	struct rsnap sn = {.group = g->cfg.group_id, .index = index, .term = g->inst.meta.term,
			   .conf_index = g->inst.meta.configuration_index, .keep_from = plog_first_index(g->env.log),
			   .next_offset = g->inst.next_offset, .data_len = (uint32_t)g->inst.data_len};
	struct raft_buffer cb;
	rv = rgroup__raft_errno(raft_configuration_encode(&g->inst.meta.configuration, &cb));
	if (rv != 0)
		return rv;
	sn.conf = malloc(cb.len ? cb.len : 1);
	sn.conf_len = (uint32_t)cb.len;
	if (sn.conf != NULL)
		memcpy(sn.conf, cb.base, cb.len);
	raft_free(cb.base);
	sn.data = g->inst.data;
	g->inst.data = NULL;
	if (sn.conf == NULL) {
		rsnap_free(&sn);
		return -ENOMEM;
	}
	rv = rsnap_write(g->env.pio, g->cfg.snapshot_dir, &sn);
	if (rv == 0)
		rv = rgroup__hist_add(g, sn.conf_index, sn.conf, sn.conf_len);
	if (rv != 0) {
		rsnap_free(&sn);
		return rv;
	}
	hist_prune(g, index);
	rgroup__learn_peers(g, &g->inst.meta.configuration);
	if ((rv = rgroup__snap_adopt(g, &sn)) != 0)
		return rv;
	struct raft_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = RAFT_PERSISTED_SNAPSHOT;
	ev.persisted_snapshot.metadata = g->inst.meta; /* the configuration passes to libraft */
	ev.persisted_snapshot.offset = 0;
	ev.persisted_snapshot.last = true;
	memset(&g->inst, 0, sizeof(g->inst));
	g->durable_term = sn.term;
	g->installs++;
	g->depth--;
	rv = rgroup__do_step(g, &ev);
	g->depth++;
	if (rv != 0)
		return rv;
	g->applied = index;
	if (g->env.restore != NULL) {
		g->in_cb = true;
		g->env.restore(g->env.ud, index, g->snap.data, g->snap.data_len);
		g->in_cb = false;
	}
	return 0;
}

/* A Fetch from an installing replica: served from our log while we lead. */
void rgroup__serve_fetch(struct rgroup *g, uint64_t from, const struct rmsg_fetch *f)
{
	if (raft_state(&g->raft) != RAFT_LEADER)
		return;
	struct plog *log = g->env.log;
	uint64_t first = plog_first_index(log), last = plog_last_index(log);
	struct rmsg_fetch r = {.kind = RMSG_FETCH_REPLY, .term = raft_current_term(&g->raft), .start = f->start,
			       .end = f->end, .first = first};
	uint8_t hdr[RMSG_HEADER_SIZE];
	if (first > f->end) {
		r.gone = true;
		if (rmsg_encode_fetch(g->cfg.group_id, &r, hdr) == 0)
			rgroup__send_bytes(g, from, hdr, sizeof(hdr));
		return;
	}
	if (r.start < first)
		r.start = first;
	if (r.start > last)
		return; /* not here yet: the replica asks again */
	uint64_t to = f->end < last ? f->end : last;
	uint64_t budget = f->budget < g->cfg.max_message_bytes ? f->budget : g->cfg.max_message_bytes;
	struct plog_slice sl;
	uint32_t n = 0;
	int rv = plog_read_records(log, r.start, to, budget, &sl, &n);
	r.n = n;
	if (rv == 0)
		rv = rgroup__reserve(g, RMSG_HEADER_SIZE + sl.bytes);
	if (rv == 0)
		rv = plog_slice_copy(&sl, g->buf + RMSG_HEADER_SIZE);
	if (rv == 0)
		rv = rmsg_encode_fetch(g->cfg.group_id, &r, g->buf);
	size_t len = RMSG_HEADER_SIZE + sl.bytes;
	plog_slice_release(&sl);
	if (rv == 0) {
		g->served += n;
		rgroup__send_bytes(g, from, g->buf, len);
	}
}

/*
 * Makes the log and the persisted snapshot agree (see the header comment on installs): the log must hold
 * the snapshot's last entry with its term, or start right after it; without a snapshot it must start at 1.
 * Anything else is what an interrupted install left, and the log restarts right after the snapshot.
 */
int rgroup__reconcile(struct rgroup *g)
{
	struct plog *log = g->env.log;
	uint64_t first = plog_first_index(log), last = plog_last_index(log);
	uint64_t si = g->have_snap ? g->snap.index : 0;
	bool ok = first <= si + 1 && last >= si;
	if (ok && g->have_snap && first <= si) {
		struct record_env env;
		ok = plog_entry_at(log, si, &env) == 0 && env.term == g->snap.term;
	}
	if (ok)
		return 0;
	return plog_reset(log, si + 1, g->have_snap ? g->snap.next_offset : 0);
}

int rgroup_snapshot(struct rgroup *g, uint64_t index, uint64_t keep_from, const void *data, size_t len)
{
	int rv = rgroup__enter(g);
	if (rv != 0)
		return rv;
	if (g->cfg.snapshot_dir == NULL)
		return -ENOTSUP;
	if (g->inst.active)
		return -EBUSY;
	struct plog *log = g->env.log;
	if (index == 0 || index > g->applied || index > g->durable || index < plog_first_index(log) ||
	    (g->have_snap && index <= g->snap.index) || keep_from == 0 || keep_from > index + 1 ||
	    keep_from < plog_first_index(log) || len > RSNAP_MAX_DATA || (len > 0 && data == NULL))
		return -EINVAL;
	struct record_env env;
	rv = plog_entry_at(log, index, &env);
	if (rv != 0)
		return rv;
	/* The configuration in force at index: the last configuration entry at or below it. */
	const struct conf_rec *c = NULL;
	for (size_t i = 0; i < g->n_hist; i++)
		if (g->hist[i].index <= index)
			c = &g->hist[i];
	if (c == NULL)
		return -EIO;
	struct rsnap sn = {.group = g->cfg.group_id, .index = index, .term = env.term, .conf_index = c->index,
			   .keep_from = keep_from,
			   .next_offset = env.base_offset + (env.type == RECORD_MESSAGES ? env.message_count : 0),
			   .conf_len = c->len, .data_len = (uint32_t)len};
	sn.conf = malloc(c->len ? c->len : 1);
	sn.data = malloc(len ? len : 1);
	if (sn.conf == NULL || sn.data == NULL) {
		rsnap_free(&sn);
		return -ENOMEM;
	}
	memcpy(sn.conf, c->buf, c->len);
	if (len > 0)
		memcpy(sn.data, data, len);
	struct raft_event ev;
	memset(&ev, 0, sizeof(ev));
	raft_configuration_init(&ev.snapshot.metadata.configuration);
	struct raft_buffer b = {sn.conf, sn.conf_len};
	rv = rgroup__raft_errno(raft_configuration_decode(&b, &ev.snapshot.metadata.configuration));
	if (rv == 0)
		rv = rsnap_write(g->env.pio, g->cfg.snapshot_dir, &sn);
	if (rv != 0) {
		raft_configuration_close(&ev.snapshot.metadata.configuration);
		rsnap_free(&sn);
		return rv == -ENOMEM || rv == -EINVAL ? rv : rgroup__fail(g, rv);
	}
	hist_prune(g, index);
	rv = rgroup__snap_adopt(g, &sn);
	if (rv != 0) {
		raft_configuration_close(&ev.snapshot.metadata.configuration);
		return rgroup__fail(g, rv);
	}
	/* libraft keeps its trail from index - trailing + 1 = keep_from on. */
	ev.type = RAFT_SNAPSHOT;
	ev.snapshot.metadata.index = index;
	ev.snapshot.metadata.term = env.term;
	ev.snapshot.metadata.configuration_index = c->index;
	ev.snapshot.trailing = (unsigned)(index + 1 - keep_from);
	rv = rgroup__do_step(g, &ev);
	if (rv != 0)
		return rgroup__fail(g, rv);
	assert(g->have_snap && g->snap.index == index && index <= g->applied);
	rgroup__settle(g);
	return g->failed;
}

