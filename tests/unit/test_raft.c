/*
 * Tests of raft/rgroup on a simulated cluster: 3 or 5 replicas of one group, each with its own simulated
 * disk (pio_sim, flusher inline), plog, rmeta and libuv loop, connected by a simulated network (a queue of
 * messages with random delays, drops and partitions), all driven by one virtual clock stepped event by
 * event: the clock, the event queue and the network are tests/sim/sim.h's. Everything is deterministic for
 * a seed.
 *
 * The invariants of the Raft dissertation (Figure 3.2) are checked as the schedule runs and at its end:
 *   - Election Safety: at most one leader per term (checked at every state change);
 *   - Leader Completeness: a replica that becomes leader of term T holds every entry committed by a leader
 *     of a term below T (checked at every election);
 *   - State Machine Safety: no two replicas apply different entries at one index (checked at every apply),
 *     and each applies indexes in order without gaps;
 *   - Log Matching: two logs holding an entry with the same index and term are identical up to it (checked
 *     periodically), and after healing every log is the same (same index -> same term and payload);
 *   - durability: every committed entry is durable on a majority (checked whenever every replica is up);
 *   - the client's values: each accepted value ends up committed exactly once (values whose entry was
 *     overwritten are resubmitted, which is safe because the outcome is then known).
 *
 * With compaction on, each replica snapshots as an owner would (rgroup_snapshot, then deleting whole
 * segments below keep_from): an entry below a log's first index counts as held by that replica only when
 * its persisted snapshot covers it, and logs are compared where both hold entries.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <xxhash.h>

#include "partition/piosim.h"
#include "partition/plog.h"
#include "partition/segment.h"
#include "partition/record.h"
#include "raft/rgroup.h"
#include "raft/rmeta.h"
#include "raft/rmsg.h"
#include "tests/sim/sim.h"

#define MAXN 5
#define GROUP 7
#define ELECTION_MS 200
#define HEARTBEAT_MS 20

/* Fails the test with the schedule's seed in the message. */
static unsigned long long cur_seed;
#define CHECK(cond, ...)                                                                                    \
	do {                                                                                                \
		if (!(cond)) {                                                                              \
			char m_[512];                                                                       \
			snprintf(m_, sizeof(m_), __VA_ARGS__);                                              \
			cr_assert_fail("seed %llu: %s (%s)", cur_seed, m_, #cond);                          \
		}                                                                                           \
	} while (0)

enum { EV_MSG, EV_DISK, EV_CLIENT, EV_POWEROFF };

/* Settings of the next rsim_new's replicas (0: rgroup's defaults). */
static uint32_t sim_max_message;
static uint64_t sim_max_pending_bytes;


struct rsim;

/*
 * Each node's disk is a pio_sim behind a thin wrapper that can fail the writes of the term-and-vote file
 * (every other call goes straight through).
 */
struct pio_file {
	struct pio_file *inner;
	bool meta;
};

struct fpio {
	struct pio base;
	struct pio *inner;
	bool fail_meta;   /* fail every write of raft.meta with EIO */
	bool meta_failed; /* such a write was refused */
};

struct node {
	struct rsim *s;
	int id;
	bool up;
	uint32_t inc;
	uv_loop_t loop;
	struct flusher *fl;
	struct fpio fpio;
	struct pio *pio;  /* the simulated disk under fpio */
	unsigned disk_max; /* this disk's flush latency is 1..disk_max ms */
	uint64_t sent;    /* messages sent */
	uint64_t last_before_stop;
	struct plog *log;
	struct rmeta *meta;
	struct rgroup *g;
	bool disk_pending;
	uint64_t applied;
	bool joiner;      /* started without a bootstrap configuration (added by a membership change) */
	bool recovering;  /* the next start passes rgroup_config.recovering (its log was lost) */
	bool removed;     /* removed from the group and stopped for good */
	uint64_t restored; /* snapshots restored */
};

/* A client value: 0 not (or no longer) submitted, 1 submitted with unknown outcome, 2 committed. */
struct value {
	int st;
	uint64_t index, term;
};

struct committed {
	bool set;
	uint64_t term, sum, value, commit_term;
};

struct rsim {
	int n;
	struct node nodes[MAXN + 1];
	struct sim core; /* clock, randomness, event queue (tests/sim/sim.h) */
	struct sim_net net; /* cut links, drops, delays */
	struct raft_configuration conf;
	/* What is known committed, by index. */
	struct committed *com;
	size_t cap_com;
	uint64_t max_com;
	/* Leader of each term. */
	int *leader_of;
	size_t cap_leader;
	/* Client. */
	struct value *vals;
	uint32_t n_vals, cursor;
	unsigned client_period;
	bool client_on;
	uint64_t fillers;
	/* Entries (index, term) submitted while a test watches (the split scenario). */
	bool record_subs;
	uint64_t subs[512][2];
	size_t n_subs;
	int subs_to;
	/* When set, the first message node capture_from sends is copied to captured (and still delivered). */
	int capture_from;
	uint8_t captured[RMSG_HEADER_SIZE];
	bool have_captured;
	/* Stats. */
	uint64_t events, elections, restarts, lost_tails;
	/* Compaction: snapshot every `compact` applied entries, keeping `trail` entries behind. */
	uint64_t compact, trail;
	uint32_t max_message; /* rgroup_config.max_message_bytes (0: default) */
	uint64_t snapshots;
};

/* Committed-entry bookkeeping. */

static struct committed *com_at(struct rsim *s, uint64_t index)
{
	if (index >= s->cap_com) {
		size_t cap = s->cap_com ? s->cap_com : 256;
		while (cap <= index)
			cap *= 2;
		s->com = realloc(s->com, cap * sizeof(*s->com));
		cr_assert_not_null(s->com);
		memset(s->com + s->cap_com, 0, (cap - s->cap_com) * sizeof(*s->com));
		s->cap_com = cap;
	}
	return &s->com[index];
}

static uint64_t payload_value(uint8_t type, const void *payload, uint32_t len)
{
	if (type != RECORD_COMMAND || len < 8)
		return 0;
	return record_le64(payload);
}

/* Environment callbacks. */

static uint64_t env_now(void *ud)
{
	struct node *n = ud;
	return n->s->core.now;
}

static int env_send(void *ud, uint64_t to, const void *buf, size_t len)
{
	struct node *n = ud;
	struct rsim *s = n->s;
	CHECK(to >= 1 && to <= (uint64_t)s->n && to != (uint64_t)n->id, "send to %llu", (unsigned long long)to);
	/* Nothing leaves a replica whose term or vote could not be made durable. */
	CHECK(!n->fpio.meta_failed, "node %d sends after a failed term/vote write", n->id);
	n->sent++;
	if (s->capture_from == n->id && !s->have_captured && len >= RMSG_HEADER_SIZE) {
		memcpy(s->captured, buf, RMSG_HEADER_SIZE);
		s->have_captured = true;
	}
	(void)sim_net_send(&s->core, &s->net, n->id, (int)to, 0, buf, len); /* lost when cut or dropped */
	return 0;
}

static void env_apply(void *ud, const struct rgroup_entry *e)
{
	struct node *n = ud;
	struct rsim *s = n->s;
	CHECK(e->index == n->applied + 1, "node %d applied %llu after %llu", n->id, (unsigned long long)e->index,
	      (unsigned long long)n->applied);
	n->applied = e->index;
	uint64_t sum = XXH3_64bits(e->payload, e->length);
	/*
	 * The applier's term bounds the term of the leader that committed the entry (that leader applies it
	 * first, in its own term). During rgroup_open only the bootstrap entry is applied, committed by
	 * construction before any leader.
	 */
	uint64_t term = e->term;
	if (n->g != NULL) {
		struct rgroup_status st;
		rgroup_status(n->g, &st);
		term = st.term;
	}
	struct committed *c = com_at(s, e->index);
	if (c->set) {
		/* State Machine Safety: one entry per index, whoever applies it. */
		CHECK(c->term == e->term && c->sum == sum, "node %d applies %llu^%llu, but %llu^%llu was committed",
		      n->id, (unsigned long long)e->index, (unsigned long long)e->term, (unsigned long long)e->index,
		      (unsigned long long)c->term);
		if (term < c->commit_term)
			c->commit_term = term;
	} else {
		*c = (struct committed){true, e->term, sum, payload_value(e->type, e->payload, e->length), term};
		if (e->index > s->max_com)
			s->max_com = e->index;
	}
}

static void env_restore(void *ud, uint64_t index, const void *data, size_t len)
{
	struct node *n = ud;
	/* The sim's state is its apply cursor; the snapshot data names the index it was taken at. */
	CHECK(len == 16 && record_le64(data) == index, "node %d restores data of %llu at %llu", n->id,
	      (unsigned long long)(len >= 8 ? record_le64(data) : 0), (unsigned long long)index);
	CHECK(index > n->applied || n->g == NULL, "node %d restores %llu below applied %llu", n->id,
	      (unsigned long long)index, (unsigned long long)n->applied);
	n->applied = index;
	n->restored++;
}

/* Reads a node's whole log: term, payload checksum and value per index (arrays of last + 1). */
static uint64_t read_log(struct node *n, uint64_t **terms, uint64_t **sums, uint64_t **values)
{
	uint64_t last = plog_last_index(n->log);
	*terms = calloc(last + 1, sizeof(uint64_t));
	*sums = calloc(last + 1, sizeof(uint64_t));
	*values = calloc(last + 1, sizeof(uint64_t));
	for (uint64_t from = plog_first_index(n->log); from <= last;) {
		struct plog_slice sl;
		uint32_t k;
		cr_assert_eq(plog_read_records(n->log, from, last, 1 << 20, &sl, &k), 0);
		uint8_t *buf = malloc(sl.bytes + 1);
		cr_assert_eq(plog_slice_copy(&sl, buf), 0);
		size_t at = 0;
		for (uint32_t i = 0; i < k; i++) {
			struct record_env env;
			cr_assert_eq(record_env_decode(buf + at, &env), 0);
			cr_assert_eq(env.index, from + i);
			(*terms)[env.index] = env.term;
			(*sums)[env.index] = XXH3_64bits(buf + at + 64, env.length);
			(*values)[env.index] = payload_value(env.type, buf + at + 64, env.length);
			at += 64 + env.length;
		}
		free(buf);
		plog_slice_release(&sl);
		from += k;
	}
	return last;
}

static void free_log(uint64_t *t, uint64_t *su, uint64_t *v)
{
	free(t);
	free(su);
	free(v);
}

static void env_state(void *ud, int state, uint64_t term)
{
	struct node *n = ud;
	struct rsim *s = n->s;
	if (state != RAFT_LEADER)
		return;
	s->elections++;
	/* Election Safety: at most one leader per term. */
	if (term >= s->cap_leader) {
		size_t cap = s->cap_leader ? s->cap_leader : 64;
		while (cap <= term)
			cap *= 2;
		s->leader_of = realloc(s->leader_of, cap * sizeof(int));
		memset(s->leader_of + s->cap_leader, 0, (cap - s->cap_leader) * sizeof(int));
		s->cap_leader = cap;
	}
	CHECK(s->leader_of[term] == 0 || s->leader_of[term] == n->id, "term %llu has leaders %d and %d",
	      (unsigned long long)term, s->leader_of[term], n->id);
	s->leader_of[term] = n->id;
	/* Leader Completeness: every entry committed in an earlier term is in the new leader's log. */
	uint64_t *t, *su, *v;
	uint64_t last = read_log(n, &t, &su, &v);
	uint64_t first = plog_first_index(n->log);
	for (uint64_t i = 1; i <= s->max_com; i++) {
		const struct committed *c = &s->com[i];
		/* Below its log's first index the leader holds entries through its snapshot (rgroup_open checks). */
		if (!c->set || c->commit_term >= term || i < first)
			continue;
		CHECK(i <= last && t[i] == c->term && su[i] == c->sum,
		      "new leader %d of term %llu lacks committed entry %llu^%llu", n->id, (unsigned long long)term,
		      (unsigned long long)i, (unsigned long long)c->term);
	}
	free_log(t, su, v);
}

/* The wrapping pio. */

static struct fpio *fp(struct pio *p)
{
	return (struct fpio *)p;
}

static int f_open(struct pio *p, const char *path, int flags, struct pio_file **out)
{
	struct pio_file *f = calloc(1, sizeof(*f));
	cr_assert_not_null(f);
	int rv = pio_open(fp(p)->inner, path, flags, &f->inner);
	if (rv != 0) {
		free(f);
		return rv;
	}
	f->meta = strstr(path, RMETA_FILE) != NULL;
	*out = f;
	return 0;
}

static void f_close(struct pio *p, struct pio_file *f)
{
	pio_close(fp(p)->inner, f->inner);
	free(f);
}

static int f_pwritev(struct pio *p, struct pio_file *f, const struct iovec *iov, int n, uint64_t off)
{
	if (f->meta && fp(p)->fail_meta) {
		fp(p)->meta_failed = true;
		return -EIO;
	}
	return pio_pwritev(fp(p)->inner, f->inner, iov, n, off);
}

static ssize_t f_pread(struct pio *p, struct pio_file *f, void *buf, size_t len, uint64_t off)
{
	return pio_pread(fp(p)->inner, f->inner, buf, len, off);
}

static int f_datasync(struct pio *p, struct pio_file *f)
{
	return pio_datasync(fp(p)->inner, f->inner);
}

static int f_truncate(struct pio *p, struct pio_file *f, uint64_t size)
{
	return pio_truncate(fp(p)->inner, f->inner, size);
}

static int f_size(struct pio *p, struct pio_file *f, uint64_t *out)
{
	return pio_size(fp(p)->inner, f->inner, out);
}

static int f_fd(struct pio *p, struct pio_file *f)
{
	return pio_fd(fp(p)->inner, f->inner);
}

static int f_rename(struct pio *p, const char *from, const char *to)
{
	return pio_rename(fp(p)->inner, from, to);
}

static int f_unlink(struct pio *p, const char *path)
{
	return pio_unlink(fp(p)->inner, path);
}

static int f_mkdir(struct pio *p, const char *path)
{
	return pio_mkdir(fp(p)->inner, path);
}

static int f_rmdir(struct pio *p, const char *path)
{
	return pio_rmdir(fp(p)->inner, path);
}

static int f_syncdir(struct pio *p, const char *path)
{
	return pio_syncdir(fp(p)->inner, path);
}

static int f_list(struct pio *p, const char *dir, char ***names, size_t *count)
{
	return pio_list(fp(p)->inner, dir, names, count);
}

static void f_destroy(struct pio *p)
{
	(void)p;
}

static const struct pio_ops fpio_ops = {f_open,	  f_close, f_pwritev, f_pread, f_datasync,
					f_truncate, f_size,  f_fd,      f_rename, f_unlink,
					f_mkdir,    f_rmdir, f_syncdir, f_list,   f_destroy};

static void fpio_init(struct fpio *f, struct pio *inner)
{
	memset(f, 0, sizeof(*f));
	f->base.ops = &fpio_ops;
	f->inner = inner;
}

/* Nodes. */

static uint64_t plog_clock(void *ud)
{
	struct node *n = ud;
	return 1700000000000000ull + n->s->core.now * 1000;
}

static void schedule_disk(struct node *n)
{
	struct rsim *s = n->s;
	if (!n->up || n->disk_pending || plog_durable_index(n->log) >= plog_last_index(n->log))
		return;
	n->disk_pending = true;
	struct sim_event e = {.time = s->core.now + sim_rand_in(&s->core, 1, n->disk_max), .kind = EV_DISK, .node = n->id,
			  .inc = n->inc};
	sim_push(&s->core, e);
}

static void node_start(struct rsim *s, int id)
{
	struct node *n = &s->nodes[id];
	cr_assert(!n->up);
	cr_assert_eq(uv_loop_init(&n->loop), 0);
	cr_assert_eq(flusher_new(&n->loop, true, &n->fl), 0);
	struct plog_opts o;
	plog_opts_default(&o);
	o.segment_size = 16384;
	o.index_interval = 512;
	o.clock_us = plog_clock;
	o.clock_ud = n;
	cr_assert_eq(plog_open(&n->fpio.base, n->fl, "group", &o, NULL, &n->log), 0);
	cr_assert_eq(rmeta_open(&n->fpio.base, "meta", &n->meta), 0);
	if (n->inc > 0) {
		s->restarts++;
		s->lost_tails += plog_last_index(n->log) < n->last_before_stop;
	}
	struct rgroup_config c;
	rgroup_config_default(&c);
	c.group_id = GROUP;
	c.node_id = (uint64_t)id;
	c.address = "sim";
	c.election_timeout_ms = ELECTION_MS;
	c.heartbeat_timeout_ms = HEARTBEAT_MS;
	c.seed = (unsigned)(sim_rand(&s->core) | 1);
	c.max_pending_entries = 32;
	c.max_inflight_entries = 8;
	c.bootstrap = n->joiner ? NULL : &s->conf;
	c.snapshot_dir = "snap";
	c.recovering = n->recovering;
	n->recovering = false;
	if (s->max_message != 0)
		c.max_message_bytes = s->max_message;
	if (sim_max_pending_bytes != 0)
		c.max_pending_bytes = sim_max_pending_bytes;
	struct rgroup_env env = {.ud = n, .now_ms = env_now, .send = env_send, .apply = env_apply,
				 .state = env_state, .log = n->log, .meta = n->meta, .fl = n->fl,
				 .pio = &n->fpio.base, .restore = env_restore};
	n->applied = 0;
	n->up = true;
	n->disk_pending = false;
	int rv = rgroup_open(&c, &env, &n->g);
	CHECK(rv == 0, "rgroup_open on node %d: %d", id, rv);
	schedule_disk(n);
}

/* Stops a node. crash: the disk dies first, then loses power (tear: see pio_sim_power_loss). */
static void node_stop(struct rsim *s, int id, bool crash, uint32_t tear)
{
	struct node *n = &s->nodes[id];
	if (!n->up)
		return;
	if (crash)
		pio_sim_crash_after(n->pio, 0);
	n->last_before_stop = plog_last_index(n->log);
	rgroup_close(n->g);
	n->g = NULL;
	int rv = plog_close(n->log);
	cr_assert(crash || rv == 0);
	n->log = NULL;
	rmeta_close(n->meta);
	n->meta = NULL;
	flusher_close(n->fl);
	n->fl = NULL;
	uv_run(&n->loop, UV_RUN_NOWAIT);
	cr_assert_eq(uv_loop_close(&n->loop), 0);
	if (crash)
		cr_assert_eq(pio_sim_power_loss(n->pio, tear), 0);
	n->up = false;
	n->inc++;
}

static bool alive(const struct node *n)
{
	return n->up && rgroup_failed(n->g) == 0;
}

/* The node a client talks to: the live leader with the highest term (0 if none). */
static int leader(struct rsim *s)
{
	int best = 0;
	uint64_t best_term = 0;
	for (int i = 1; i <= s->n; i++) {
		struct node *n = &s->nodes[i];
		if (!alive(n))
			continue;
		struct rgroup_status st;
		rgroup_status(n->g, &st);
		if (st.state == RAFT_LEADER && st.term > best_term) {
			best = i;
			best_term = st.term;
		}
	}
	return best;
}

/* Client. */

/* Settles the outcome of submitted values whose index is now known committed. */
static void resolve_values(struct rsim *s)
{
	for (uint32_t v = 1; v <= s->n_vals; v++) {
		struct value *x = &s->vals[v];
		if (x->st != 1 || x->index > s->max_com || !s->com[x->index].set)
			continue;
		const struct committed *c = &s->com[x->index];
		if (c->term == x->term) {
			CHECK(c->value == v, "index %llu term %llu holds value %llu, not %u", (unsigned long long)x->index,
			      (unsigned long long)x->term, (unsigned long long)c->value, v);
			x->st = 2;
		} else {
			x->st = 0; /* another entry took its index: it was not committed, submit it again */
			if (v < s->cursor)
				s->cursor = v;
		}
	}
}

static bool values_done(struct rsim *s)
{
	for (uint32_t v = 1; v <= s->n_vals; v++)
		if (s->vals[v].st != 2)
			return false;
	return true;
}

static void client_submit(struct rsim *s)
{
	resolve_values(s);
	int l = leader(s);
	if (l == 0)
		return;
	while (s->cursor <= s->n_vals && s->vals[s->cursor].st != 0)
		s->cursor++;
	uint32_t v = s->cursor <= s->n_vals ? s->cursor : 0;
	if (v == 0) {
		bool unknown = false;
		for (uint32_t i = 1; i <= s->n_vals && !unknown; i++)
			unknown = s->vals[i].st == 1;
		if (!unknown)
			return;
	}
	uint8_t payload[256];
	uint32_t len = 16 + (uint32_t)sim_rand_in(&s->core, 0, 200);
	record_put64(payload, v);
	record_put64(payload + 8, v == 0 ? ++s->fillers : 0);
	for (uint32_t i = 16; i < len; i++)
		payload[i] = (uint8_t)(v * 31 + i);
	struct node *n = &s->nodes[l];
	uint64_t index;
	int rv = rgroup_submit(n->g, payload, len, &index);
	if (rv == -EAGAIN || rv == -EPERM || (rv != 0 && rgroup_failed(n->g) == rv))
		return; /* not (or no longer) the leader, too much in flight, or its disk is dying */
	CHECK(rv == 0, "submit on node %d: %d", l, rv);
	struct rgroup_status st;
	rgroup_status(n->g, &st);
	if (v != 0)
		s->vals[v] = (struct value){1, index, st.term};
	if (s->record_subs && l == s->subs_to && s->n_subs < 512) {
		s->subs[s->n_subs][0] = index;
		s->subs[s->n_subs][1] = st.term;
		s->n_subs++;
	}
	schedule_disk(n);
}

/* The event loop. */

/* With RAFT_SIM_TRACE set, prints every delivered message (for debugging one seed). */
static void trace_msg(struct rsim *s, const struct sim_event *e)
{
	static int on = -1;
	if (on < 0)
		on = getenv("RAFT_SIM_TRACE") != NULL;
	if (!on)
		return;
	const uint8_t *p = e->buf;
	fprintf(stderr, "t=%llu %d->%d type %u term %llu a %llu b %llu c %llu n %u flags %u\n",
		(unsigned long long)s->core.now, e->from, e->node, p[5], (unsigned long long)record_le64(p + 16),
		(unsigned long long)record_le64(p + 24), (unsigned long long)record_le64(p + 32),
		(unsigned long long)record_le64(p + 40), record_le32(p + 52), p[6]);
}

static void deliver(struct rsim *s, struct sim_event *e)
{
	struct node *n = &s->nodes[e->node];
	if (alive(n) && !s->net.cut[e->from][e->node]) {
		trace_msg(s, e);
		int rv = rgroup_receive(n->g, (uint64_t)e->from, e->buf, e->len);
		CHECK(rv == 0 || rgroup_failed(n->g) != 0, "receive on node %d: %d", n->id, rv);
		schedule_disk(n);
	}
	free(e->buf);
}

/*
 * The owner's compaction: every s->compact applied (and durable) entries, a snapshot keeping s->trail
 * entries behind it, then every whole segment below keep_from deleted.
 */
static void maybe_compact(struct rsim *s, struct node *n)
{
	if (s->compact == 0 || !alive(n))
		return;
	struct rgroup_status st;
	rgroup_status(n->g, &st);
	uint64_t idx = st.applied_index < st.durable_index ? st.applied_index : st.durable_index;
	if (st.installing || idx < st.snapshot_index + s->compact)
		return;
	uint64_t keep = idx > s->trail ? idx - s->trail + 1 : 1;
	if (keep < plog_first_index(n->log))
		keep = plog_first_index(n->log);
	uint8_t data[16];
	record_put64(data, idx);
	record_put64(data + 8, XXH3_64bits(&idx, sizeof(idx)));
	int rv = rgroup_snapshot(n->g, idx, keep, data, sizeof(data));
	if (rv != 0) {
		CHECK(rgroup_failed(n->g) != 0, "snapshot on node %d at %llu: %d", n->id, (unsigned long long)idx, rv);
		return;
	}
	s->snapshots++;
	CHECK(plog_drop_segments(n->log, UINT32_MAX, keep - 1) >= 0, "drop segments");
	CHECK(plog_first_index(n->log) <= keep, "dropped past keep_from");
}

/* Runs events and timers up to virtual time `until`. */
static void run_until(struct rsim *s, uint64_t until)
{
	for (;;) {
		uint64_t t_ev = sim_next_time(&s->core);
		uint64_t t_tm = UINT64_MAX;
		int tn = 0;
		for (int i = 1; i <= s->n; i++) {
			struct node *n = &s->nodes[i];
			if (!alive(n))
				continue;
			uint64_t t = rgroup_timeout(n->g);
			if (t < t_tm) {
				t_tm = t;
				tn = i;
			}
		}
		uint64_t next = t_ev < t_tm ? t_ev : t_tm;
		if (next > until) {
			s->core.now = until;
			return;
		}
		if (next > s->core.now)
			s->core.now = next;
		s->events++;
		CHECK(s->events < 20000000, "runaway schedule");
		if (t_tm <= t_ev) {
			struct node *n = &s->nodes[tn];
			int rv = rgroup_tick(n->g);
			CHECK(rv == 0 || rgroup_failed(n->g) != 0, "tick on node %d: %d", tn, rv);
			CHECK(rgroup_failed(n->g) != 0 || rgroup_timeout(n->g) > s->core.now, "timer of node %d stuck", tn);
			schedule_disk(n);
			maybe_compact(s, n);
			continue;
		}
		struct sim_event e = sim_pop(&s->core);
		struct node *n = &s->nodes[e.node];
		switch (e.kind) {
		case EV_MSG:
			deliver(s, &e);
			break;
		case EV_DISK:
			if (n->up && e.inc == n->inc) {
				n->disk_pending = false;
				flusher_drain(n->fl);
				schedule_disk(n);
				maybe_compact(s, n);
			}
			break;
		case EV_CLIENT:
			if (s->client_on) {
				client_submit(s);
				sim_push(&s->core, (struct sim_event){.time = s->core.now + s->client_period, .kind = EV_CLIENT});
			}
			break;
		case EV_POWEROFF:
			if (n->up && e.inc == n->inc)
				node_stop(s, n->id, true, (uint32_t)e.len);
			break;
		}
	}
}

/* Checks. */

/* Log Matching (Figure 3.2) between every two live logs. */
static void check_log_matching(struct rsim *s)
{
	uint64_t *t[MAXN + 1] = {0}, *su[MAXN + 1] = {0}, *v[MAXN + 1] = {0}, last[MAXN + 1] = {0};
	for (int i = 1; i <= s->n; i++)
		if (s->nodes[i].up)
			last[i] = read_log(&s->nodes[i], &t[i], &su[i], &v[i]);
	for (int a = 1; a <= s->n; a++)
		for (int b = a + 1; b <= s->n; b++) {
			if (!s->nodes[a].up || !s->nodes[b].up)
				continue;
			uint64_t m = last[a] < last[b] ? last[a] : last[b];
			uint64_t fa = plog_first_index(s->nodes[a].log), fb = plog_first_index(s->nodes[b].log);
			uint64_t lo = fa > fb ? fa : fb;
			uint64_t k = 0;
			for (uint64_t i = m; i >= lo && i >= 1 && k == 0; i--)
				if (t[a][i] == t[b][i])
					k = i;
			for (uint64_t i = lo; i <= k; i++)
				CHECK(t[a][i] == t[b][i] && su[a][i] == su[b][i],
				      "logs of %d and %d match at %llu but differ at %llu", a, b, (unsigned long long)k,
				      (unsigned long long)i);
		}
	for (int i = 1; i <= s->n; i++)
		if (s->nodes[i].up)
			free_log(t[i], su[i], v[i]);
}

/* Every committed entry is durable on a majority (meaningful when every node is up). */
static void check_durable_majority(struct rsim *s)
{
	uint64_t *t[MAXN + 1] = {0}, *su[MAXN + 1] = {0}, *v[MAXN + 1] = {0}, last[MAXN + 1] = {0};
	uint64_t snap[MAXN + 1] = {0}, first[MAXN + 1] = {0};
	int members = 0;
	for (int i = 1; i <= s->n; i++) {
		if (s->nodes[i].removed)
			continue;
		members++;
		cr_assert(s->nodes[i].up);
		last[i] = read_log(&s->nodes[i], &t[i], &su[i], &v[i]);
		first[i] = plog_first_index(s->nodes[i].log);
		struct rgroup_status st;
		rgroup_status(s->nodes[i].g, &st);
		snap[i] = st.snapshot_index;
	}
	for (uint64_t x = 1; x <= s->max_com; x++) {
		const struct committed *c = &s->com[x];
		if (!c->set)
			continue;
		int count = 0;
		for (int i = 1; i <= s->n; i++)
			if (!s->nodes[i].removed &&
			    (x <= snap[i] || (x >= first[i] && x <= last[i] && x <= plog_durable_index(s->nodes[i].log) &&
					      t[i][x] == c->term && su[i][x] == c->sum)))
				count++;
		CHECK(count > members / 2, "committed entry %llu^%llu durable on %d of %d", (unsigned long long)x,
		      (unsigned long long)c->term, count, members);
	}
	for (int i = 1; i <= s->n; i++)
		if (!s->nodes[i].removed)
			free_log(t[i], su[i], v[i]);
}

static bool converged(struct rsim *s)
{
	uint64_t last = 0;
	bool seen = false;
	for (int i = 1; i <= s->n; i++) {
		struct node *n = &s->nodes[i];
		if (n->removed)
			continue;
		if (!alive(n))
			return false;
		struct rgroup_status st;
		rgroup_status(n->g, &st);
		if (!seen)
			last = st.last_index;
		seen = true;
		if (st.last_index != last || st.commit_index != last || st.applied_index != last ||
		    st.durable_index != last)
			return false;
	}
	return leader(s) != 0;
}

/* Heals everything, runs until every value is committed and all logs agree, then checks them. */
static void finish(struct rsim *s, uint64_t budget_ms)
{
	memset(s->net.cut, 0, sizeof(s->net.cut));
	s->net.drop_pct = 0;
	uint64_t deadline = s->core.now + budget_ms;
	while (s->core.now < deadline) {
		/* Nodes that are down, or whose dying disk stopped their group, are (re)started from their disks. */
		for (int i = 1; i <= s->n; i++) {
			if (s->nodes[i].removed)
				continue;
			if (s->nodes[i].up && !alive(&s->nodes[i]))
				node_stop(s, i, true, 0);
			if (!s->nodes[i].up)
				node_start(s, i);
		}
		run_until(s, s->core.now + 50);
		resolve_values(s);
		if (values_done(s) && converged(s))
			break;
	}
	if (!(values_done(s) && converged(s)))
		for (int i = 1; i <= s->n; i++) {
			struct node *n = &s->nodes[i];
			if (!n->up) {
				fprintf(stderr, "node %d down\n", i);
				continue;
			}
			struct rgroup_status st;
			rgroup_status(n->g, &st);
			fprintf(stderr,
				"node %d: state %d term %llu leader %llu commit %llu applied %llu last %llu durable %llu "
				"stored %llu failed %d plog durable %llu pending %d\n",
				i, st.state, (unsigned long long)st.term, (unsigned long long)st.leader_id,
				(unsigned long long)st.commit_index, (unsigned long long)st.applied_index,
				(unsigned long long)st.last_index, (unsigned long long)st.durable_index,
				(unsigned long long)st.last_stored, st.failed,
				(unsigned long long)plog_durable_index(n->log), n->disk_pending);
		}
	CHECK(values_done(s) && converged(s), "no convergence by t=%llu (leader %d)", (unsigned long long)s->core.now,
	      leader(s));
	check_durable_majority(s);
	/*
	 * Every log is the same where logs overlap, ends at the same index, holds only committed entries, and
	 * every value is committed exactly once.
	 */
	int ref = 0;
	for (int i = 1; i <= s->n && ref == 0; i++)
		if (!s->nodes[i].removed)
			ref = i;
	uint64_t *t[MAXN + 1] = {0}, *su[MAXN + 1] = {0}, *v[MAXN + 1] = {0}, last[MAXN + 1] = {0},
		 first[MAXN + 1] = {0};
	for (int i = 1; i <= s->n; i++)
		if (!s->nodes[i].removed) {
			last[i] = read_log(&s->nodes[i], &t[i], &su[i], &v[i]);
			first[i] = plog_first_index(s->nodes[i].log);
		}
	CHECK(last[ref] >= s->max_com, "the log ends at %llu below committed entry %llu",
	      (unsigned long long)last[ref], (unsigned long long)s->max_com);
	for (int i = 1; i <= s->n; i++) {
		if (s->nodes[i].removed)
			continue;
		CHECK(last[i] == last[ref], "node %d has %llu entries, node %d %llu", i, (unsigned long long)last[i],
		      ref, (unsigned long long)last[ref]);
		for (uint64_t x = first[i]; x <= last[i]; x++) {
			CHECK(x < first[ref] || (t[i][x] == t[ref][x] && su[i][x] == su[ref][x]),
			      "node %d differs from node %d at %llu", i, ref, (unsigned long long)x);
			const struct committed *c = &s->com[x];
			CHECK(x <= s->max_com && c->set && c->term == t[i][x] && c->sum == su[i][x],
			      "entry %llu not as committed", (unsigned long long)x);
		}
	}
	uint32_t *seen = calloc(s->n_vals + 1, sizeof(uint32_t));
	for (uint64_t x = 1; x <= s->max_com; x++) {
		const struct committed *c = &s->com[x];
		CHECK(c->set, "committed entry %llu was applied nowhere", (unsigned long long)x);
		if (c->value != 0) {
			CHECK(c->value <= s->n_vals, "unknown value %llu", (unsigned long long)c->value);
			seen[c->value]++;
		}
	}
	for (uint32_t x = 1; x <= s->n_vals; x++)
		CHECK(seen[x] == 1, "value %u is committed %u times", x, seen[x]);
	free(seen);
	for (int i = 1; i <= s->n; i++)
		if (!s->nodes[i].removed)
			free_log(t[i], su[i], v[i]);
}

/* Setup and teardown of one schedule. */

/* A new cluster of n nodes for schedule `seed`, or NULL when RAFT_SIM_SEED asks for another schedule. */
static struct rsim *rsim_new(int n, unsigned long long seed)
{
	const char *only = getenv("RAFT_SIM_SEED");
	if (only != NULL && strtoull(only, NULL, 10) != seed)
		return NULL;
	cur_seed = seed;
	struct rsim *s = calloc(1, sizeof(*s));
	cr_assert_not_null(s);
	s->n = n;
	sim_init(&s->core, seed * 0x2545f4914f6cdd1dull + 1);
	s->core.now = 1000;
	sim_net_init(&s->net, EV_MSG, 1, 8);
	/* Some schedules have slow networks, some slow disks (a leader may commit before its own flush). */
	s->net.max_ms = sim_rand_in(&s->core, 0, 3) == 0 ? 30 : 8;
	s->client_period = 4;
	s->max_message = sim_max_message;
	uint64_t ids[MAXN];
	for (int i = 0; i < n; i++)
		ids[i] = (uint64_t)i + 1;
	cr_assert_eq(rgroup_configuration(&s->conf, (size_t)n, ids, NULL), 0);
	for (int i = 1; i <= n; i++) {
		s->nodes[i].s = s;
		s->nodes[i].id = i;
		s->nodes[i].pio = pio_sim_new();
		fpio_init(&s->nodes[i].fpio, s->nodes[i].pio);
		static const unsigned lat[] = {2, 4, 10, 40};
		s->nodes[i].disk_max = lat[sim_rand_in(&s->core, 0, 3)];
		node_start(s, i);
	}
	return s;
}

static void rsim_free(struct rsim *s)
{
	uint64_t installs = 0;
	for (int i = 1; i <= s->n; i++)
		if (s->nodes[i].up) {
			struct rgroup_status st;
			rgroup_status(s->nodes[i].g, &st);
			installs += st.installs;
		}
	if (getenv("RAFT_SIM_VERBOSE") != NULL)
		fprintf(stderr,
			"seed %llu: n=%d t=%llu events=%llu elections=%llu committed=%llu fillers=%llu restarts=%llu "
			"lost_tails=%llu split_entries=%zu snapshots=%llu installs=%llu\n",
			cur_seed, s->n, (unsigned long long)s->core.now, (unsigned long long)s->events,
			(unsigned long long)s->elections, (unsigned long long)s->max_com,
			(unsigned long long)s->fillers, (unsigned long long)s->restarts,
			(unsigned long long)s->lost_tails, s->n_subs, (unsigned long long)s->snapshots,
			(unsigned long long)installs);
	for (int i = 1; i <= s->n; i++) {
		node_stop(s, i, false, 0);
		pio_destroy(s->nodes[i].pio);
	}
	sim_free(&s->core);
	free(s->com);
	free(s->leader_of);
	free(s->vals);
	raft_configuration_close(&s->conf);
	free(s);
}

static void client_start(struct rsim *s, uint32_t n_vals)
{
	s->n_vals = n_vals;
	s->vals = calloc(n_vals + 1, sizeof(*s->vals));
	s->cursor = 1;
	s->client_on = true;
	sim_push(&s->core, (struct sim_event){.time = s->core.now + 1, .kind = EV_CLIENT});
}

/* Runs until some node is a leader; returns it. */
static int await_leader(struct rsim *s, uint64_t budget_ms)
{
	uint64_t deadline = s->core.now + budget_ms;
	while (leader(s) == 0 && s->core.now < deadline)
		run_until(s, s->core.now + 10);
	int l = leader(s);
	CHECK(l != 0, "no leader by t=%llu", (unsigned long long)s->core.now);
	return l;
}

static uint64_t commit_of(struct rsim *s, int id)
{
	struct rgroup_status st;
	rgroup_status(s->nodes[id].g, &st);
	return st.commit_index;
}

/* Schedules per scenario (and cluster size): 50, or RAFT_SIM_SEEDS for longer hunts. */
static unsigned long long seeds(void)
{
	const char *v = getenv("RAFT_SIM_SEEDS");
	return v != NULL ? strtoull(v, NULL, 10) : 50;
}

TestSuite(raft, .timeout = 120);

Test(raft, a_leader_is_elected_and_others_follow_it)
{
	/* With a quiet network one leader emerges quickly, and every other replica follows it in its term. */
	for (int n = 3; n <= 5; n += 2)
		for (unsigned long long seed = 1; seed <= seeds(); seed++) {
			struct rsim *s = rsim_new(n, seed * 100 + (unsigned long long)n);
			if (s == NULL)
				continue; /* RAFT_SIM_SEED names another schedule */
			int l = await_leader(s, 3000);
			CHECK(s->core.now < 1000 + 3 * ELECTION_MS * 2, "leader only at t=%llu", (unsigned long long)s->core.now);
			run_until(s, s->core.now + 500);
			cr_assert_eq(leader(s), l);
			struct rgroup_status ls;
			rgroup_status(s->nodes[l].g, &ls);
			for (int i = 1; i <= n; i++) {
				struct rgroup_status st;
				rgroup_status(s->nodes[i].g, &st);
				CHECK(st.term == ls.term, "node %d in term %llu, leader in %llu", i,
				      (unsigned long long)st.term, (unsigned long long)ls.term);
				CHECK(i == l || (st.state == RAFT_FOLLOWER && st.leader_id == (uint64_t)l),
				      "node %d: state %d leader %llu", i, st.state, (unsigned long long)st.leader_id);
				/*
				 * Everyone knows the leader's commit index and applied up to it. (With only the bootstrap
				 * entry in the log the new leader appends no barrier: libraft does so only when its last
				 * index is above its commit index.)
				 */
				CHECK(st.commit_index == ls.commit_index && st.applied_index == st.commit_index &&
				      st.last_index == ls.last_index,
				      "node %d commit %llu applied %llu last %llu", i, (unsigned long long)st.commit_index,
				      (unsigned long long)st.applied_index, (unsigned long long)st.last_index);
			}
			check_log_matching(s);
			rsim_free(s);
		}
}

Test(raft, submitted_entries_are_committed_and_applied_on_all_in_the_same_order)
{
	/* 150 values through a lossy, reordering network: each is committed once, the same on every replica. */
	for (int n = 3; n <= 5; n += 2)
		for (unsigned long long seed = 1; seed <= seeds(); seed++) {
			struct rsim *s = rsim_new(n, seed * 1000 + (unsigned long long)n);
			if (s == NULL)
				continue; /* RAFT_SIM_SEED names another schedule */
			s->net.drop_pct = 3;
			await_leader(s, 3000);
			client_start(s, 150);
			for (int k = 0; k < 20; k++) {
				run_until(s, s->core.now + 100);
				check_log_matching(s);
			}
			finish(s, 20000);
			rsim_free(s);
		}
}

static uint64_t split_truncated;

Test(raft, a_split_leader_cannot_commit_the_majority_moves_on_and_logs_converge_after_healing)
{
	/*
	 * 5 replicas; the leader and one follower are cut off from the other three while the client keeps
	 * writing. The old leader commits nothing more, the majority elects a leader and commits, and after
	 * healing the old leader's entries of the split are gone from every log.
	 */
	for (unsigned long long seed = 1; seed <= seeds(); seed++) {
		struct rsim *s = rsim_new(5, seed * 7 + 5000);
		if (s == NULL)
			continue; /* RAFT_SIM_SEED names another schedule */
		s->net.drop_pct = 1;
		int old = await_leader(s, 3000);
		client_start(s, 120);
		run_until(s, s->core.now + sim_rand_in(&s->core, 20, 200));
		old = leader(s);
		cr_assert_neq(old, 0);
		struct rgroup_status os;
		rgroup_status(s->nodes[old].g, &os);
		int buddy = old % 5 + 1;
		for (int a = 1; a <= 5; a++)
			for (int b = 1; b <= 5; b++) {
				bool sa = a == old || a == buddy, sb = b == old || b == buddy;
				s->net.cut[a][b] = sa != sb;
			}
		/*
		 * What the majority side holds now bounds what the old leader can still commit: it may commit
		 * entries one of them acknowledged before the cut (with its buddy's and its own acknowledgements),
		 * never one appended after the cut.
		 */
		uint64_t maj_last = 0;
		for (int i = 1; i <= 5; i++)
			if (i != old && i != buddy) {
				struct rgroup_status st;
				rgroup_status(s->nodes[i].g, &st);
				if (st.last_index > maj_last)
					maj_last = st.last_index;
			}
		s->record_subs = true;
		s->subs_to = old;
		run_until(s, s->core.now + 1500);
		s->record_subs = false;
		CHECK(!alive(&s->nodes[old]) || commit_of(s, old) <= maj_last, "split leader %d committed %llu > %llu",
		      old, (unsigned long long)commit_of(s, old), (unsigned long long)maj_last);
		CHECK(commit_of(s, buddy) <= maj_last, "minority follower committed");
		/* The majority elected a leader of a higher term, which committed entries of its own. */
		int nl = leader(s);
		CHECK(nl != 0 && nl != old && nl != buddy, "majority leader %d", nl);
		struct rgroup_status ns;
		rgroup_status(s->nodes[nl].g, &ns);
		CHECK(ns.term > os.term && ns.commit_index > maj_last, "majority term %llu commit %llu",
		      (unsigned long long)ns.term, (unsigned long long)ns.commit_index);
		check_log_matching(s);
		/* The old leader's log holds entries of the split (uncommitted): healing must truncate them. */
		{
			uint64_t *t0, *su0, *v0;
			uint64_t last0 = read_log(&s->nodes[old], &t0, &su0, &v0);
			for (size_t i = 0; i < s->n_subs; i++)
				if (s->subs[i][1] == os.term && s->subs[i][0] <= last0 && t0[s->subs[i][0]] == os.term)
					split_truncated++;
			free_log(t0, su0, v0);
		}
		finish(s, 30000);
		/* Entries the old leader took during the split were never committed: other entries hold their indexes. */
		uint64_t *t, *su, *v;
		uint64_t last = read_log(&s->nodes[1], &t, &su, &v);
		for (size_t i = 0; i < s->n_subs; i++) {
			uint64_t idx = s->subs[i][0], term = s->subs[i][1];
			if (term != os.term)
				continue;
			CHECK(idx > last || t[idx] != term, "split entry %llu^%llu survived",
			      (unsigned long long)idx, (unsigned long long)term);
		}
		free_log(t, su, v);
		rsim_free(s);
	}
	/* Truncation of an uncommitted suffix on a deposed leader did happen (and was checked above). */
	if (getenv("RAFT_SIM_SEED") == NULL)
		CHECK(split_truncated > 0, "no schedule truncated a deposed leader's suffix");
}

/* Crashes node `id` at once or after a few more disk writes (then powers it off), with a random tear. */
/* Removes every file of directory `dir` on node n's disk, and the directory. */
static void wipe_dir(struct node *n, const char *dir)
{
	struct pio *p = &n->fpio.base;
	char **names;
	size_t k;
	if (pio_list(p, dir, &names, &k) != 0)
		return;
	for (size_t i = 0; i < k; i++) {
		char path[256];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		cr_assert_eq(pio_unlink(p, path), 0);
	}
	pio_list_free(names, k);
	cr_assert_eq(pio_rmdir(p, dir), 0);
}

/* Truncates node n's log (it is stopped) after entry 1, the bootstrap configuration. */
static void keep_first_entry(struct node *n)
{
	uv_loop_t loop;
	struct flusher *fl;
	struct plog *log;
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(flusher_new(&loop, true, &fl), 0);
	struct plog_opts o;
	plog_opts_default(&o);
	o.segment_size = 16384;
	o.index_interval = 512;
	cr_assert_eq(plog_open(&n->fpio.base, fl, "group", &o, NULL, &log), 0);
	cr_assert_eq(plog_first_index(log), 1, "no compaction in this scenario");
	cr_assert_eq(plog_truncate(log, 2), 0);
	cr_assert_eq(plog_close(log), 0);
	flusher_close(fl);
	uv_run(&loop, UV_RUN_NOWAIT);
	cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(raft, a_replica_that_lost_its_log_votes_for_no_one_until_it_has_caught_up)
{
	/*
	 * Entries are committed by the leader L and follower A while B is cut off. A then loses its log (as
	 * when its damaged segments are set aside) and restarts recovering, with its term and vote; L stops
	 * and B comes back. Were A to vote, B (which lacks the committed entries) would win with A's vote and
	 * the committed entries would be lost (env_state checks Leader Completeness at every election). A
	 * must grant no vote: no leader until L is back; then A catches up, leaves recovery, and every log
	 * converges on every committed entry.
	 */
	for (unsigned long long seed = 1; seed <= seeds() / 5 + 1; seed++) {
		struct rsim *s = rsim_new(3, seed * 31 + 9100);
		if (s == NULL)
			continue;
		int l = await_leader(s, 3000);
		int a = l % 3 + 1, b = a % 3 + 1;
		client_start(s, 60);
		run_until(s, s->core.now + 100);
		for (int i = 1; i <= 3; i++)
			s->net.cut[b][i] = s->net.cut[i][b] = true;
		run_until(s, s->core.now + 400);
		s->client_on = false;
		run_until(s, s->core.now + 300);
		CHECK(leader(s) == l, "node %d still leads", l);
		struct rgroup_status sb;
		rgroup_status(s->nodes[b].g, &sb);
		CHECK(sb.last_index < s->max_com, "B (%d) holds %llu, committed %llu: B must lack some", b,
		      (unsigned long long)sb.last_index, (unsigned long long)s->max_com);
		node_stop(s, a, false, 0);
		if (seed % 2 == 0) {
			/* All of it: no configuration either (libraft then refuses votes on its own too). */
			wipe_dir(&s->nodes[a], "group");
			wipe_dir(&s->nodes[a], "snap");
		} else {
			/* All but its first entry, the bootstrap configuration: it knows it is a voter. */
			keep_first_entry(&s->nodes[a]);
		}
		s->nodes[a].recovering = true;
		node_start(s, a);
		node_stop(s, l, false, 0);
		memset(s->net.cut, 0, sizeof(s->net.cut));
		run_until(s, s->core.now + 20 * ELECTION_MS);
		CHECK(leader(s) == 0, "node %d leads without the leader that held the committed entries", leader(s));
		struct rgroup_status st;
		rgroup_status(s->nodes[a].g, &st);
		CHECK(st.recovering && st.refused_votes > 0, "A (%d) recovering %d, %llu vote requests refused", a,
		      st.recovering, (unsigned long long)st.refused_votes);
		s->client_on = true;
		sim_push(&s->core, (struct sim_event){.time = s->core.now + 1, .kind = EV_CLIENT});
		finish(s, 20000);
		rgroup_status(s->nodes[a].g, &st);
		CHECK(!st.recovering, "A (%d) caught up but is still recovering", a);
		rsim_free(s);
	}
}

Test(raft, a_rejection_of_an_older_terms_append_names_a_defined_log_index)
{
	/*
	 * libraft 0.22.1 leaves last_log_index unset when it rejects an AppendEntries of an older term
	 * (raft/README.md, 13). The follower's reply must carry rejected - 1 (0 when rejected is 0), never
	 * whatever the stack held: a leader that reached the replier's term would take it as progress.
	 */
	static const uint64_t prevs[] = {0, 1, 7, 1000};
	for (size_t i = 0; i < sizeof(prevs) / sizeof(prevs[0]); i++) {
		struct rsim *s = rsim_new(3, 9300 + i);
		cr_assert_not_null(s);
		int old = await_leader(s, 3000);
		node_stop(s, old, false, 0); /* a second election: the follower's term is then above 1 */
		int l = await_leader(s, 6000);
		cr_assert(l != 0 && l != old);
		int f = 6 - l - old;
		struct rgroup_status st;
		rgroup_status(s->nodes[f].g, &st);
		cr_assert_geq(st.term, 2, "follower %d in term %llu", f, (unsigned long long)st.term);
		struct raft_message m;
		memset(&m, 0, sizeof(m));
		m.type = RAFT_APPEND_ENTRIES;
		m.append_entries.term = st.term - 1;
		m.append_entries.prev_log_index = prevs[i];
		m.append_entries.prev_log_term = prevs[i] > 0 ? 1 : 0;
		m.append_entries.leader_commit = 0;
		uint8_t hdr[RMSG_HEADER_SIZE];
		cr_assert_eq(rmsg_encode_header(GROUP, &m, hdr), 0);
		s->capture_from = f;
		s->have_captured = false;
		int rrv = rgroup_receive(s->nodes[f].g, (uint64_t)l, hdr, sizeof(hdr));
		cr_assert_eq(rrv, 0, "receive: %d", rrv);
		cr_assert(s->have_captured, "the follower did not answer the stale AppendEntries");
		struct rmsg_decoded d;
		cr_assert_eq(rmsg_decode(s->captured, RMSG_HEADER_SIZE, RECORD_COMMAND, &d), 0);
		cr_assert_eq(d.msg.type, RAFT_APPEND_ENTRIES_RESULT);
		cr_assert_eq(d.msg.append_entries_result.term, st.term);
		cr_assert_eq(d.msg.append_entries_result.rejected, prevs[i]);
		cr_assert_eq(d.msg.append_entries_result.last_log_index, prevs[i] > 0 ? prevs[i] - 1 : 0,
			     "prev %llu: last_log_index %llu", (unsigned long long)prevs[i],
			     (unsigned long long)d.msg.append_entries_result.last_log_index);
		rmsg_release(&d);
		s->capture_from = 0;
		rsim_free(s);
	}
}

static void crash(struct rsim *s, int id)
{
	uint32_t tear = (uint32_t)sim_rand_in(&s->core, 0, 3) == 0 ? 0 : (uint32_t)sim_rand(&s->core);
	if (sim_rand_in(&s->core, 0, 1) == 0) {
		node_stop(s, id, true, tear);
		return;
	}
	/* The disk dies after k more writes; the node notices (its group stops) and is powered off soon. */
	pio_sim_crash_after(s->nodes[id].pio, sim_rand_in(&s->core, 1, 6));
	sim_push(&s->core, (struct sim_event){.time = s->core.now + sim_rand_in(&s->core, 0, 15), .kind = EV_POWEROFF, .node = id,
			       .inc = s->nodes[id].inc, .len = tear});
}

static void await_down(struct rsim *s, int id)
{
	while (s->nodes[id].up)
		run_until(s, s->core.now + 5);
}

Test(raft, a_follower_that_crashes_and_restarts_catches_up)
{
	/* A follower loses power mid-stream (its unflushed writes vanish, the last one maybe torn), misses a
	 * while, restarts from its disk and catches up; nothing it acknowledged is lost. */
	for (int n = 3; n <= 5; n += 2)
		for (unsigned long long seed = 1; seed <= seeds(); seed++) {
			struct rsim *s = rsim_new(n, seed * 13 + 7000 + (unsigned long long)n);
			if (s == NULL)
				continue; /* RAFT_SIM_SEED names another schedule */
			s->net.drop_pct = 2;
			await_leader(s, 3000);
			client_start(s, 120);
			run_until(s, s->core.now + sim_rand_in(&s->core, 10, 250));
			int l = leader(s);
			int f = l != 0 ? l % n + 1 : 1;
			crash(s, f);
			await_down(s, f);
			run_until(s, s->core.now + sim_rand_in(&s->core, 50, 600));
			check_log_matching(s);
			node_start(s, f);
			check_durable_majority(s);
			run_until(s, s->core.now + 300);
			check_log_matching(s);
			finish(s, 20000);
			rsim_free(s);
		}
}

Test(raft, a_leader_that_crashes_mid_stream_loses_no_committed_entry)
{
	/* The leader loses power while entries are in flight; a new leader takes over with every committed
	 * entry (checked at its election), the old one restarts and converges. */
	for (int n = 3; n <= 5; n += 2)
		for (unsigned long long seed = 1; seed <= seeds(); seed++) {
			struct rsim *s = rsim_new(n, seed * 17 + 9000 + (unsigned long long)n);
			if (s == NULL)
				continue; /* RAFT_SIM_SEED names another schedule */
			s->net.drop_pct = 2;
			await_leader(s, 3000);
			client_start(s, 120);
			run_until(s, s->core.now + sim_rand_in(&s->core, 10, 300));
			int l = leader(s);
			cr_assert_neq(l, 0);
			uint64_t elections = s->elections;
			crash(s, l);
			await_down(s, l);
			int nl = await_leader(s, 5000);
			CHECK(nl != l && s->elections > elections, "no new election");
			run_until(s, s->core.now + sim_rand_in(&s->core, 0, 400));
			check_log_matching(s);
			node_start(s, l);
			check_durable_majority(s);
			finish(s, 20000);
			rsim_free(s);
		}
}

Test(raft, random_partitions_crashes_and_losses_keep_every_invariant)
{
	/*
	 * A random schedule of partitions (random halves, an isolated leader), message loss, crashes of random
	 * nodes and of the leader, and restarts (never more than a minority down at once), while the client
	 * writes; then healing: every invariant holds throughout and the logs converge.
	 */
	for (unsigned long long seed = 1; seed <= seeds(); seed++) {
		int n = seed % 2 ? 5 : 3;
		struct rsim *s = rsim_new(n, seed * 31 + 11000);
		if (s == NULL)
			continue; /* RAFT_SIM_SEED names another schedule */
		await_leader(s, 3000);
		client_start(s, 300);
		s->client_period = 10;
		for (int step = 0; step < 16; step++) {
			int what = (int)sim_rand_in(&s->core, 0, 6);
			int down = 0;
			for (int i = 1; i <= n; i++)
				down += !s->nodes[i].up;
			int l = leader(s);
			if (what == 0) {
				uint64_t side = sim_rand(&s->core);
				for (int a = 1; a <= n; a++)
					for (int b = 1; b <= n; b++)
						s->net.cut[a][b] = ((side >> a) & 1) != ((side >> b) & 1);
			} else if (what == 1) {
				memset(s->net.cut, 0, sizeof(s->net.cut));
			} else if (what == 2 || what == 3) {
				int id = what == 3 && l != 0 ? l : (int)sim_rand_in(&s->core, 1, (uint64_t)n);
				if (s->nodes[id].up && down + 1 <= (n - 1) / 2)
					crash(s, id);
			} else if (what == 4) {
				for (int i = 1; i <= n; i++)
					if (!s->nodes[i].up) {
						node_start(s, i);
						break;
					}
			} else if (what == 5) {
				s->net.drop_pct = (unsigned)sim_rand_in(&s->core, 0, 20);
			} else if (l != 0) {
				for (int i = 1; i <= n; i++)
					s->net.cut[l][i] = s->net.cut[i][l] = i != l;
			}
			run_until(s, s->core.now + sim_rand_in(&s->core, 30, 500));
			check_log_matching(s);
		}
		finish(s, 30000);
		rsim_free(s);
	}
}

Test(raft, every_node_losing_power_at_once_loses_no_committed_entry)
{
	/* All replicas lose power at the same moment mid-stream (each keeps only what it had flushed, maybe
	 * with a torn last write); after restarting, every entry that was committed before is still there. */
	for (int n = 3; n <= 5; n += 2)
		for (unsigned long long seed = 1; seed <= seeds(); seed++) {
			struct rsim *s = rsim_new(n, seed * 19 + 13000 + (unsigned long long)n);
			if (s == NULL)
				continue; /* RAFT_SIM_SEED names another schedule */
			s->net.drop_pct = 2;
			await_leader(s, 3000);
			client_start(s, 120);
			run_until(s, s->core.now + sim_rand_in(&s->core, 10, 400));
			uint64_t committed = s->max_com;
			for (int i = 1; i <= n; i++)
				node_stop(s, i, true, sim_rand_in(&s->core, 0, 1) ? (uint32_t)sim_rand(&s->core) : 0);
			run_until(s, s->core.now + sim_rand_in(&s->core, 0, 100)); /* messages still in flight are lost */
			for (int i = 1; i <= n; i++)
				node_start(s, i);
			check_durable_majority(s);
			check_log_matching(s);
			finish(s, 20000);
			CHECK(s->max_com >= committed, "committed shrank");
			rsim_free(s);
		}
}

Test(raft, a_failed_term_or_vote_write_stops_the_replica_before_any_message_leaves)
{
	/*
	 * A follower's term-and-vote file refuses writes; the leader is then cut off, so an election starts
	 * and the follower must record a new term. Its group stops with the error and sends nothing more
	 * (env_send checks it); the others elect a leader and go on; reopened from its disk, it catches up.
	 */
	for (unsigned long long seed = 1; seed <= seeds(); seed++) {
		struct rsim *s = rsim_new(3, seed * 23 + 15000);
		if (s == NULL)
			continue; /* RAFT_SIM_SEED names another schedule */
		int l = await_leader(s, 3000);
		client_start(s, 60);
		run_until(s, s->core.now + 100);
		l = leader(s);
		int f = l % 3 + 1;
		s->nodes[f].fpio.fail_meta = true;
		for (int i = 1; i <= 3; i++)
			s->net.cut[l][i] = s->net.cut[i][l] = i != l;
		for (int k = 0; k < 100 && rgroup_failed(s->nodes[f].g) == 0; k++)
			run_until(s, s->core.now + 20);
		CHECK(s->nodes[f].fpio.meta_failed && rgroup_failed(s->nodes[f].g) == -EIO, "follower %d did not stop",
		      f);
		uint64_t sent = s->nodes[f].sent;
		CHECK(rgroup_submit(s->nodes[f].g, "x", 1, NULL) == -EIO, "a stopped group accepts work");
		run_until(s, s->core.now + 500);
		CHECK(s->nodes[f].sent == sent, "stopped follower sent messages");
		/* The owner reopens the replica from its disk once the disk works again. */
		s->nodes[f].fpio.fail_meta = false;
		s->nodes[f].fpio.meta_failed = false;
		node_stop(s, f, false, 0);
		node_start(s, f);
		finish(s, 20000);
		rsim_free(s);
	}
}

/* Snapshots, out-of-band catch-up, membership. */

/* Starts a new, empty replica `id` that joins through a membership change (no bootstrap). */
static void node_join(struct rsim *s, int id)
{
	cr_assert(id <= MAXN && id == s->n + 1);
	struct node *n = &s->nodes[id];
	n->s = s;
	n->id = id;
	n->pio = pio_sim_new();
	fpio_init(&n->fpio, n->pio);
	n->disk_max = 4;
	n->joiner = true;
	s->n = id;
	node_start(s, id);
}

/* Reads records [from..to] of a log as bytes. */
static uint8_t *read_bytes(struct node *n, uint64_t from, uint64_t to, size_t *len)
{
	struct plog_slice sl;
	uint32_t k;
	size_t cap = 0, used = 0;
	uint8_t *out = NULL;
	while (from <= to) {
		cr_assert_eq(plog_read_records(n->log, from, to, 1 << 20, &sl, &k), 0);
		out = realloc(out, cap = used + sl.bytes + 1);
		cr_assert_eq(plog_slice_copy(&sl, out + used), 0);
		used += sl.bytes;
		plog_slice_release(&sl);
		from += k;
	}
	(void)cap;
	*len = used;
	return out;
}

/* Records of a and b over [from..to] are the same: envelope fields (not a non-batch record's local time
 * stamp) and payload bytes. */
static void check_same_records(struct node *a, struct node *b, uint64_t from, uint64_t to)
{
	size_t la, lb;
	uint8_t *pa = read_bytes(a, from, to, &la), *pb = read_bytes(b, from, to, &lb);
	CHECK(la == lb, "nodes %d and %d hold %zu and %zu bytes in [%llu..%llu]", a->id, b->id, la, lb,
	      (unsigned long long)from, (unsigned long long)to);
	for (size_t at = 0; at < la;) {
		struct record_env ea, eb;
		cr_assert_eq(record_env_decode(pa + at, &ea), 0);
		cr_assert_eq(record_env_decode(pb + at, &eb), 0);
		CHECK(ea.index == eb.index && ea.term == eb.term && ea.type == eb.type && ea.length == eb.length &&
			      ea.base_offset == eb.base_offset && ea.message_count == eb.message_count &&
			      ea.payload_check == eb.payload_check &&
			      memcmp(pa + at + 64, pb + at + 64, ea.length) == 0,
		      "record %llu differs between nodes %d and %d", (unsigned long long)ea.index, a->id, b->id);
		at += 64 + ea.length;
	}
	free(pa);
	free(pb);
}

/*
 * A cluster whose follower f is down while the others run and compact past its log; returns f (to be
 * started by the caller). Deterministic for a seed.
 */
static int setup_behind(struct rsim *s, uint32_t values)
{
	s->compact = 25;
	s->trail = 30;
	s->net.drop_pct = 2;
	await_leader(s, 3000);
	client_start(s, values);
	run_until(s, s->core.now + 60);
	int l = leader(s);
	cr_assert_neq(l, 0);
	int f = l % s->n + 1;
	node_stop(s, f, true, 0);
	uint64_t f_last = s->nodes[f].last_before_stop;
	for (int k = 0; k < 400; k++) {
		run_until(s, s->core.now + 50);
		int nl = leader(s);
		bool past = true;
		for (int i = 1; i <= s->n; i++)
			if (s->nodes[i].up)
				past = past && plog_first_index(s->nodes[i].log) > f_last + 1;
		if (nl != 0 && past)
			return f;
	}
	CHECK(false, "the others never compacted past node %d's log (%llu)", f, (unsigned long long)f_last);
	return f;
}

Test(raft, a_follower_behind_the_compacted_log_installs_a_snapshot_fetched_out_of_band)
{
	/*
	 * A follower is down while the others compact past its log. Restarted, it gets InstallSnapshot, fetches
	 * the leader's retained records [keep_from..index] in capped chunks, and ends with a log identical to
	 * the leader's from its first index on, then applies what follows like any follower.
	 */
	for (unsigned long long seed = 1; seed <= seeds() / 3 + 1; seed++) {
		sim_max_message = 1500;
		struct rsim *s = rsim_new(3, seed * 41 + 17000);
		sim_max_message = 0;
		if (s == NULL)
			continue; /* RAFT_SIM_SEED names another schedule */
		int f = setup_behind(s, 250);
		node_start(s, f);
		finish(s, 30000);
		struct rgroup_status st;
		rgroup_status(s->nodes[f].g, &st);
		CHECK(st.installs >= 1 && st.fetched_records > 0, "node %d: %llu installs, %llu records fetched", f,
		      (unsigned long long)st.installs, (unsigned long long)st.fetched_records);
		CHECK(s->nodes[f].restored >= 1, "node %d restored no snapshot", f);
		int l = leader(s);
		uint64_t from = plog_first_index(s->nodes[f].log);
		if (plog_first_index(s->nodes[l].log) > from)
			from = plog_first_index(s->nodes[l].log);
		if (l != f)
			check_same_records(&s->nodes[f], &s->nodes[l], from, plog_last_index(s->nodes[l].log));
		/* No message carried more than the cap plus one record (a record is never split). */
		for (int i = 1; i <= 3; i++) {
			rgroup_status(s->nodes[i].g, &st);
			CHECK(st.max_message <= 1500 + 64 + 64 + 256, "node %d sent a %llu-byte message", i,
			      (unsigned long long)st.max_message);
		}
		rsim_free(s);
	}
}

Test(raft, power_loss_at_every_write_of_an_install_leaves_a_replica_that_reopens_and_converges)
{
	/*
	 * The same install, with the installing replica's disk dying after k writes, for every k from its
	 * restart until an install completes without a crash; it is then powered off (unflushed writes lost,
	 * the last one torn), restarted from its disk, and must open and converge with every invariant.
	 */
	unsigned long long seed = 3;
	const char *only = getenv("RAFT_SIM_SEED");
	if (only != NULL && strtoull(only, NULL, 10) != seed * 41 + 19000)
		return;
	uint64_t crashed_mid_install = 0, writes = 0;
	for (uint64_t k = 1;; k++) {
		writes = k;
		sim_max_message = 1200;
		struct rsim *s = rsim_new(3, seed * 41 + 19000);
		sim_max_message = 0;
		int f = setup_behind(s, 250);
		node_start(s, f);
		pio_sim_crash_after(s->nodes[f].pio, k);
		bool installing_seen = false;
		for (int i = 0; i < 200 && alive(&s->nodes[f]); i++) {
			run_until(s, s->core.now + 10);
			if (!alive(&s->nodes[f]))
				break;
			struct rgroup_status st;
			rgroup_status(s->nodes[f].g, &st);
			installing_seen = installing_seen || st.installing;
			if (st.installs > 0)
				break;
		}
		bool done = alive(&s->nodes[f]);
		if (done) {
			struct rgroup_status st;
			rgroup_status(s->nodes[f].g, &st);
			done = st.installs > 0;
		}
		if (!done) {
			crashed_mid_install += installing_seen;
			node_stop(s, f, true, (uint32_t)(k * 2654435761u));
			node_start(s, f);
		}
		finish(s, 30000);
		rsim_free(s);
		if (done)
			break;
		cr_assert_lt(k, 5000);
	}
	if (getenv("RAFT_SIM_VERBOSE") != NULL)
		fprintf(stderr, "install power loss: %llu crash points, %llu during an install\n",
			(unsigned long long)writes, (unsigned long long)crashed_mid_install);
	CHECK(crashed_mid_install >= 5, "only %llu crashes hit an install", (unsigned long long)crashed_mid_install);
}

Test(raft, random_schedules_with_compaction_keep_log_matching_and_durable_majority)
{
	/* The random schedule of partitions, losses and crashes, with every replica compacting as it goes. */
	for (unsigned long long seed = 1; seed <= seeds() / 2 + 1; seed++) {
		int n = seed % 2 ? 5 : 3;
		sim_max_message = seed % 3 == 0 ? 900 : 0;
		struct rsim *s = rsim_new(n, seed * 37 + 21000);
		sim_max_message = 0;
		if (s == NULL)
			continue; /* RAFT_SIM_SEED names another schedule */
		s->compact = sim_rand_in(&s->core, 10, 40);
		s->trail = sim_rand_in(&s->core, 0, 30);
		await_leader(s, 3000);
		client_start(s, 300);
		s->client_period = 6;
		for (int step = 0; step < 16; step++) {
			int what = (int)sim_rand_in(&s->core, 0, 5);
			int down = 0;
			for (int i = 1; i <= n; i++)
				down += !s->nodes[i].up;
			int l = leader(s);
			if (what == 0) {
				uint64_t side = sim_rand(&s->core);
				for (int a = 1; a <= n; a++)
					for (int b = 1; b <= n; b++)
						s->net.cut[a][b] = ((side >> a) & 1) != ((side >> b) & 1);
			} else if (what == 1) {
				memset(s->net.cut, 0, sizeof(s->net.cut));
			} else if (what == 2 || what == 3) {
				int id = what == 3 && l != 0 ? l : (int)sim_rand_in(&s->core, 1, (uint64_t)n);
				if (s->nodes[id].up && down + 1 <= (n - 1) / 2)
					crash(s, id);
			} else if (what == 4) {
				for (int i = 1; i <= n; i++)
					if (!s->nodes[i].up) {
						node_start(s, i);
						break;
					}
			} else {
				s->net.drop_pct = (unsigned)sim_rand_in(&s->core, 0, 15);
			}
			run_until(s, s->core.now + sim_rand_in(&s->core, 30, 500));
			check_log_matching(s);
		}
		finish(s, 40000);
		rsim_free(s);
	}
}

/* Retries op at the current leader until it returns something other than a transient refusal. */
static int at_leader(struct rsim *s, int (*op)(struct rgroup *, uint64_t), uint64_t id)
{
	for (int k = 0; k < 2000; k++) {
		int l = leader(s);
		if (l != 0) {
			int rv = op(s->nodes[l].g, id);
			if (rv != -EPERM && rv != -EBUSY && rv != -EINPROGRESS)
				return rv;
		}
		run_until(s, s->core.now + 10);
	}
	int l = leader(s);
	CHECK(false, "no leader took the change (leader %d, last %d)", l,
	      l != 0 ? op(s->nodes[l].g, id) : 0);
	return -1;
}

static int op_add(struct rgroup *g, uint64_t id)
{
	return rgroup_add(g, id, "sim");
}

static bool has_member(struct rsim *s, int on, uint64_t id, int role)
{
	struct rgroup_member m[MAXN + 2];
	size_t k = rgroup_members(s->nodes[on].g, m, MAXN + 2);
	for (size_t i = 0; i < k && i < MAXN + 2; i++)
		if (m[i].id == id)
			return role < 0 || m[i].role == role;
	return false;
}

/* Runs until the leader's configuration has (or lacks) id with role, committed. */
static void await_conf(struct rsim *s, uint64_t id, int role, bool present)
{
	for (int k = 0; k < 1000; k++) {
		int l = leader(s);
		if (l != 0 && has_member(s, l, id, role) == present) {
			struct rgroup_status st;
			rgroup_status(s->nodes[l].g, &st);
			if (st.commit_index == st.last_index)
				return;
		}
		run_until(s, s->core.now + 10);
	}
	CHECK(false, "configuration never settled for %llu", (unsigned long long)id);
}

Test(raft, a_standby_is_added_promoted_a_voter_removed_and_leadership_transferred_under_loss)
{
	for (unsigned long long seed = 1; seed <= seeds() / 3 + 1; seed++) {
		struct rsim *s = rsim_new(3, seed * 43 + 23000);
		if (s == NULL)
			continue; /* RAFT_SIM_SEED names another schedule */
		s->net.drop_pct = 5;
		s->compact = seed % 2 ? 30 : 0; /* half of them also catch the newcomer up by a snapshot */
		s->trail = 10;
		await_leader(s, 3000);
		client_start(s, 200);
		run_until(s, s->core.now + 200);
		node_join(s, 4);
		int rv = at_leader(s, op_add, 4);
		CHECK(rv == 0 || rv == -EEXIST, "add: %d", rv);
		await_conf(s, 4, RAFT_STANDBY, true);
		CHECK(at_leader(s, rgroup_promote, 4) == 0, "promote");
		await_conf(s, 4, RAFT_VOTER, true);
		/* Remove a voter other than the leader and the newcomer. */
		int l = leader(s);
		int victim = l % 3 + 1;
		if (victim == 4)
			victim = 1;
		CHECK(at_leader(s, rgroup_remove, (uint64_t)victim) == 0, "remove");
		await_conf(s, (uint64_t)victim, -1, false);
		node_stop(s, victim, false, 0);
		s->nodes[victim].removed = true;
		/* Hand leadership to the newcomer. */
		for (int k = 0; k < 20 && leader(s) != 4; k++) {
			rv = at_leader(s, rgroup_transfer, 4);
			CHECK(rv == 0 || rv == -ENOENT, "transfer: %d", rv);
			for (int j = 0; j < 50 && leader(s) != 4; j++)
				run_until(s, s->core.now + 10);
		}
		CHECK(leader(s) == 4, "leadership is at %d, not 4", leader(s));
		finish(s, 30000);
		for (int i = 1; i <= 4; i++)
			if (!s->nodes[i].removed) {
				CHECK(has_member(s, i, 4, RAFT_VOTER) && !has_member(s, i, (uint64_t)victim, -1),
				      "node %d's configuration", i);
				CHECK(rgroup_members(s->nodes[i].g, NULL, 0) == 3, "node %d: not 3 members", i);
			}
		rsim_free(s);
	}
}

Test(raft, a_leader_refuses_work_past_max_pending_bytes)
{
	sim_max_pending_bytes = 1000;
	struct rsim *s = rsim_new(3, 99);
	sim_max_pending_bytes = 0;
	if (s == NULL)
		return;
	int l = await_leader(s, 3000);
	run_until(s, s->core.now + 100);
	l = leader(s);
	for (int i = 1; i <= 3; i++)
		s->net.cut[l][i] = s->net.cut[i][l] = i != l;
	uint8_t payload[200] = {0};
	int accepted = 0, rv = 0;
	while ((rv = rgroup_submit(s->nodes[l].g, payload, sizeof(payload), NULL)) == 0)
		accepted++;
	CHECK(rv == -EAGAIN && accepted == 5, "accepted %d, then %d", accepted, rv);
	CHECK(rgroup_submit(s->nodes[l].g, payload, 1, NULL) == -EAGAIN, "a small one past the cap");
	rsim_free(s);
}

/*
 * Whether node n's stopped log opens and verifies whole: plog_open refuses damage below the recovery
 * point that its envelope checks see, and the scrubber (as the node runs it in the background) finds any
 * other. Leaves nothing open.
 */
static bool log_verifies(struct node *n)
{
	uv_loop_t loop;
	struct flusher *fl;
	struct plog *log;
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(flusher_new(&loop, true, &fl), 0);
	struct plog_opts o;
	plog_opts_default(&o);
	o.segment_size = 16384;
	o.index_interval = 512;
	int rv = plog_open(&n->fpio.base, fl, "group", &o, NULL, &log);
	bool ok = rv == 0;
	cr_assert(rv == 0 || rv == -EBADMSG, "open: %d", rv);
	if (ok) {
		while (plog_scrub(log, 4096) > 0)
			;
		ok = plog_damaged(log) == 0;
		cr_assert_eq(plog_close(log), 0);
	}
	flusher_close(fl);
	uv_run(&loop, UV_RUN_NOWAIT);
	cr_assert_eq(uv_loop_close(&loop), 0);
	return ok;
}

/* The name of node n's first segment file ("group/<first index>.log"). */
static void first_segment(struct node *n, char *out, size_t cap)
{
	char **names;
	size_t k;
	out[0] = '\0';
	cr_assert_eq(pio_list(&n->fpio.base, "group", &names, &k), 0);
	for (size_t i = 0; i < k; i++) {
		size_t len = strlen(names[i]);
		if (len > 4 && strcmp(names[i] + len - 4, ".log") == 0 && (out[0] == '\0' || strcmp(names[i], out + 6) < 0))
			snprintf(out, cap, "group/%s", names[i]);
	}
	pio_list_free(names, k);
	cr_assert_neq(out[0], '\0');
}

/* A 3-replica group for the flipped-byte test: a few values committed, every log the same. */
static struct rsim *small_group(unsigned long long seed)
{
	struct rsim *s = rsim_new(3, seed);
	if (s == NULL)
		return NULL;
	await_leader(s, 3000);
	client_start(s, 3);
	finish(s, 20000);
	return s;
}

Test(raft, a_byte_flipped_anywhere_in_a_replica_s_log_is_repaired_from_its_peers, .timeout = 900)
{
	/*
	 * Every byte position of a small log (after the segment header, whose damage open refuses: test_plog),
	 * each on a fresh group built by the same schedule, so on the same log: one replica (a follower, the
	 * two in turn; the leader at every eighth position) is stopped, the byte is flipped, and it starts
	 * again under the node's repair rule (node/srv_replica.c slot_open and srv__repair_tick): damage found by open
	 * or by the scrubber sets the replica's log and snapshot aside, and it restarts empty and recovering
	 * (no vote until caught up). The damage must be found at every position; the group must stay whole
	 * (finish: every value committed once, every applied entry as committed, so no damaged record was
	 * applied or replicated anywhere); the repaired replica must leave recovery and end with records
	 * identical to the leader's.
	 */
	const unsigned long long seed = 424242;
	struct rsim *s = small_group(seed);
	if (s == NULL)
		return; /* RAFT_SIM_SEED names another schedule */
	size_t len;
	free(read_bytes(&s->nodes[1], 1, plog_last_index(s->nodes[1].log), &len));
	uint64_t end = SEGMENT_HEADER_SIZE + len;
	CHECK(end < 16384, "one segment");
	rsim_free(s);
	uint32_t repaired = 0, elections = 0;
	for (uint64_t pos = SEGMENT_HEADER_SIZE; pos < end; pos++) {
		s = small_group(seed);
		int l = leader(s), v = pos % 8 == 0 ? l : (l + (int)(pos % 2)) % 3 + 1;
		struct node *n = &s->nodes[v];
		char path[64];
		first_segment(n, path, sizeof(path));
		node_stop(s, v, false, 0);
		uint64_t size;
		cr_assert_eq(pio_sim_durable_size(n->pio, path, &size), 0);
		CHECK(size >= end, "node %d's %s holds %llu bytes, the log %llu", v, path, (unsigned long long)size,
		      (unsigned long long)end);
		cr_assert_eq(pio_sim_corrupt(n->pio, path, pos, 0x10), 0);
		CHECK(!log_verifies(n), "byte %llu of node %d's %s flipped and not found", (unsigned long long)pos, v,
		      path);
		wipe_dir(n, "group");
		wipe_dir(n, "snap");
		n->recovering = true;
		node_start(s, v);
		finish(s, 20000);
		/* A new leader commits an entry of its term, as a partition leader does (srv__part_term_barrier). */
		l = leader(s);
		struct rgroup_status st;
		rgroup_status(s->nodes[l].g, &st);
		struct record_env env;
		if (plog_entry_at(s->nodes[l].log, st.last_index, &env) == 0 && env.term < st.term) {
			int rv = -EPERM;
			for (int k = 0; k < 100 && rv == -EPERM; k++) {
				if ((l = leader(s)) != 0 && (rv = rgroup_barrier(s->nodes[l].g)) == 0)
					break;
				run_until(s, s->core.now + 20); /* a leadership transfer may be under way */
			}
			CHECK(rv == 0, "barrier on node %d: %d", l, rv);
			schedule_disk(&s->nodes[l]);
			finish(s, 20000);
			l = leader(s);
		}
		rgroup_status(n->g, &st);
		CHECK(!st.recovering, "node %d still recovering after byte %llu", v, (unsigned long long)pos);
		elections += (uint32_t)s->elections;
		if (l != v)
			check_same_records(n, &s->nodes[l], 1, plog_last_index(s->nodes[l].log));
		repaired++;
		rsim_free(s);
	}
	cr_log_info("%u byte positions flipped, found and repaired (%u elections in all)", repaired,
		    elections);
}
