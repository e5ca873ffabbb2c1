/*
 * The whole-node simulation: three complete galgod nodes (node/server with its metadata group, partition
 * groups, forwarding, poll routing) in one process, each on its own simulated disk (partition/piosim), on
 * a simulated network (tests/sim/simnet, standing in for transport/rnet) and one virtual clock
 * (tests/sim/simuv, standing in for libuv's timers, thread pool and clocks). Clients drive the nodes through
 * srv_session_frame as a transport would. Everything runs on one thread, event by event, and a run is a
 * function of its seed (SIM_NODES_SEED replays one, SIM_NODES_SEEDS sets how many the test runs).
 *
 * Faults: message delays (1..10 ms, so messages of different links overtake each other), connection resets
 * (what was in flight is lost), partitions (one node cut from the others until its links time out),
 * process crashes (the node stops at once; what it wrote stays in the page cache) and power losses (what
 * was not made durable is lost, the last write possibly torn), each followed by a restart from the disk.
 *
 * The workload: stream "s", topic "t" of 3 partitions replicated on all 3 nodes; producers on random
 * nodes send batches of 1..3 unique messages to a partition each and send a batch again only when the
 * answer was 58 (not admitted); consumers on random nodes poll random offsets.
 *
 * Invariants, checked after every event:
 *   - at most one leader per group and term (Election Safety);
 *   - every replica applies, at an index, the entry every other replica applied there (State Machine
 *     Safety), for the metadata group and every partition group;
 *   - an acknowledged send names offsets no other acknowledged message has;
 *   - a poll returns records that verify, with contiguous offsets starting at the one asked for, and an
 *     offset's message is the same in every poll of any node (a poll never shows data that could still
 *     be replaced: only committed messages are served).
 * At the end (faults healed, every node up, a quiet period), every node serves each partition whole, and
 * the logs are the same on every node; every acknowledged message is there at its offset, every message
 * any poll returned is there at its offset, and no message is there twice.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <xxhash.h>

#include "node/config.h"
#include "node/log.h"
#include "node/server.h"
#include "node/srv_int.h"
#include "partition/flusher.h"
#include "partition/piosim.h"
#include "partition/plog.h"
#include "partition/record.h"
#include "tests/sim/sim.h"
#include "tests/sim/simnet.h"
#include "tests/sim/simuv.h"
#include "proto/frame.h"
#include "proto/wire.h"

#define NODES 3
#define PARTS 3
#define PRODUCERS 4
#define CONSUMERS 2
#define CLIENTS (1 + PRODUCERS + CONSUMERS)
#define READER CLIENTS /* the client that reads every partition at the end */
#define MAX_OFFSETS 4096
#define ELECTION_MS 1000

enum { EV_NET = 1, EV_IDLE, EV_TICK, EV_NETTICK, EV_CLIENT, EV_FAULT, EV_HEAL, EV_RESTART };

static unsigned long long cur_seed;
#define CHECK(cond, ...)                                                                                    \
	do {                                                                                                \
		if (!(cond)) {                                                                              \
			char m_[512];                                                                       \
			snprintf(m_, sizeof(m_), __VA_ARGS__);                                              \
			cr_assert_fail("seed %llu, t=%llu ms: %s (%s)", cur_seed,                           \
				       (unsigned long long)W.s.now, m_, #cond);                             \
		}                                                                                           \
	} while (0)

/* ---- The disk: piosim behind a wrapper that can die (a crashed process) and names files by number ---- */

#define MAX_FILES 4096

struct pio_file {
	struct pio_file *inner;
	int fd;
};

struct wpio {
	struct pio base;
	struct pio *inner;
	bool dead;                     /* the process died: nothing it does reaches the disk */
	struct pio_file *files[MAX_FILES]; /* by fd - 3 */
};

static struct wpio *wp(struct pio *p)
{
	return (struct wpio *)p;
}

static int w_open(struct pio *p, const char *path, int flags, struct pio_file **out)
{
	if (wp(p)->dead)
		return -EIO;
	struct pio_file *f = calloc(1, sizeof(*f));
	cr_assert_not_null(f);
	int rv = pio_open(wp(p)->inner, path, flags, &f->inner);
	if (rv != 0) {
		free(f);
		return rv;
	}
	f->fd = -1;
	for (int i = 0; i < MAX_FILES && f->fd < 0; i++)
		if (wp(p)->files[i] == NULL) {
			wp(p)->files[i] = f;
			f->fd = i + 3;
		}
	cr_assert(f->fd >= 0);
	*out = f;
	return 0;
}

static void w_close(struct pio *p, struct pio_file *f)
{
	wp(p)->files[f->fd - 3] = NULL;
	pio_close(wp(p)->inner, f->inner);
	free(f);
}

#define DEAD_OR(p, call) (wp(p)->dead ? -EIO : (call))

static int w_pwritev(struct pio *p, struct pio_file *f, const struct iovec *iov, int n, uint64_t off)
{
	return DEAD_OR(p, pio_pwritev(wp(p)->inner, f->inner, iov, n, off));
}

static ssize_t w_pread(struct pio *p, struct pio_file *f, void *buf, size_t len, uint64_t off)
{
	return DEAD_OR(p, pio_pread(wp(p)->inner, f->inner, buf, len, off));
}

static int w_datasync(struct pio *p, struct pio_file *f)
{
	return DEAD_OR(p, pio_datasync(wp(p)->inner, f->inner));
}

static int w_truncate(struct pio *p, struct pio_file *f, uint64_t size)
{
	return DEAD_OR(p, pio_truncate(wp(p)->inner, f->inner, size));
}

static int w_size(struct pio *p, struct pio_file *f, uint64_t *out)
{
	return pio_size(wp(p)->inner, f->inner, out);
}

static int w_fd(struct pio *p, struct pio_file *f)
{
	(void)p;
	return f->fd;
}

static int w_rename(struct pio *p, const char *from, const char *to)
{
	return DEAD_OR(p, pio_rename(wp(p)->inner, from, to));
}

static int w_unlink(struct pio *p, const char *path)
{
	return DEAD_OR(p, pio_unlink(wp(p)->inner, path));
}

static int w_mkdir(struct pio *p, const char *path)
{
	return DEAD_OR(p, pio_mkdir(wp(p)->inner, path));
}

static int w_rmdir(struct pio *p, const char *path)
{
	return DEAD_OR(p, pio_rmdir(wp(p)->inner, path));
}

static int w_syncdir(struct pio *p, const char *path)
{
	return DEAD_OR(p, pio_syncdir(wp(p)->inner, path));
}

static int w_list(struct pio *p, const char *dir, char ***names, size_t *count)
{
	return DEAD_OR(p, pio_list(wp(p)->inner, dir, names, count));
}

static void w_destroy(struct pio *p)
{
	(void)p;
}

static const struct pio_ops wpio_ops = {w_open,	    w_close, w_pwritev, w_pread, w_datasync,
					w_truncate, w_size,  w_fd,      w_rename, w_unlink,
					w_mkdir,    w_rmdir, w_syncdir, w_list,   w_destroy};

/* ---- The world ---- */

struct node {
	int id;
	bool up;
	uint32_t inc;
	uv_loop_t loop;
	struct pio *disk; /* piosim */
	struct wpio w;
	struct flusher *fl;
	struct galgo_config cfg;
	struct srv *srv;
	bool idle_queued;
	uint64_t checked[64]; /* State Machine Safety: applied entries checked, per group slot */
	uint64_t checked_gid[64];
};

enum cstate { C_NEW, C_READY, C_WAIT };
enum ckind { K_ADMIN, K_PRODUCER, K_CONSUMER, K_READER };

struct client {
	int idx;
	enum ckind kind;
	int node;
	struct srv_session *ss;
	enum cstate st;
	struct frame_u128 cid;
	uint64_t next_req;
	uint8_t op;
	/* The reply, once it came. */
	bool replied;
	uint32_t status;
	uint8_t *body;
	size_t body_len;
	/* Admin: the setup step. Producer: its batch. Consumer: its poll. */
	int step;
	uint32_t part;
	uint64_t seq;
	uint32_t n_msgs;
	bool resend;
	uint64_t poll_from;
	bool got; /* the reader: a reply came */
};

/* One message identity: producer, sequence, index in its batch. */
static uint64_t msg_key(int producer, uint64_t seq, uint32_t i)
{
	return ((uint64_t)producer << 48) | (seq << 4) | i;
}

struct done_cb {
	void (*done)(void *arg, int status);
	void *arg;
};

static struct {
	struct sim s;
	struct node n[NODES + 1];
	struct client c[CLIENTS + 1];
	bool setup_done;
	bool faults;
	bool workload;
	int down; /* a node that is down (0: none) */
	/* Per partition: the message key at each offset, as acknowledged and as polled (0: unknown). */
	uint64_t acked[PARTS][MAX_OFFSETS];
	uint64_t seen[PARTS][MAX_OFFSETS];
	uint64_t hi[PARTS];
	/* Election Safety: (gid, term) -> leader. */
	struct {
		uint64_t gid, term;
		int node;
	} leaders[4096];
	size_t n_leaders;
	/* State Machine Safety: per group, the (term, checksum) applied at each index. */
	struct {
		uint64_t gid;
		uint64_t *term, *sum;
		size_t cap;
	} groups[64];
	size_t n_groups;
	struct done_cb *dones;
	size_t n_dones, cap_dones;
	uint64_t acked_by[CLIENTS];
	uint64_t acks, nacks, unknown, polls, crashes, power_losses, partitions, resets;
	uint8_t scratch[1 << 20];
} W;

/* ---- Clients: requests and replies as a transport would carry them ---- */

static int c_send(void *ctx, const struct srv_piece *pieces, size_t n, void (*done)(void *, int), void *arg)
{
	struct client *c = ctx;
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += pieces[i].len;
	CHECK(total <= sizeof(W.scratch), "reply of %zu bytes", total);
	size_t at = 0;
	struct node *nd = &W.n[c->node];
	for (size_t i = 0; i < n; i++) {
		if (pieces[i].mem != NULL) {
			memcpy(W.scratch + at, pieces[i].mem, pieces[i].len);
		} else if (pieces[i].len > 0) {
			CHECK(pieces[i].fd >= 3 && pieces[i].fd - 3 < MAX_FILES && nd->w.files[pieces[i].fd - 3] != NULL,
			      "a reply names file %d, not open", pieces[i].fd);
			ssize_t r = pio_pread(nd->disk, nd->w.files[pieces[i].fd - 3]->inner, W.scratch + at, pieces[i].len,
					      pieces[i].off);
			CHECK(r == (ssize_t)pieces[i].len, "reading a reply's file range: %zd", r);
		}
		at += pieces[i].len;
	}
	if (W.n_dones == W.cap_dones) {
		W.cap_dones = W.cap_dones ? W.cap_dones * 2 : 64;
		W.dones = realloc(W.dones, W.cap_dones * sizeof(*W.dones));
		cr_assert_not_null(W.dones);
	}
	W.dones[W.n_dones++] = (struct done_cb){done, arg};
	CHECK(total >= FRAME_HEADER_SIZE && c->st == C_WAIT && !c->replied, "client %d: a reply it did not ask for",
	      c->idx);
	if (W.scratch[FRAME_OFF_COMMAND] == FRAME_CMD_EVICTION) {
		c->status = UINT32_MAX;
	} else {
		struct frame_reply rep;
		CHECK(frame_reply_decode(W.scratch, &rep) == FRAME_OK, "reply header");
		CHECK(rep.request == c->next_req - 1 || c->op == FRAME_OP_REGISTER, "reply to request %llu, not %llu",
		      (unsigned long long)rep.request, (unsigned long long)(c->next_req - 1));
		c->status = rep.status;
	}
	free(c->body);
	c->body_len = total - FRAME_HEADER_SIZE;
	c->body = malloc(c->body_len + 1);
	cr_assert_not_null(c->body);
	memcpy(c->body, W.scratch + FRAME_HEADER_SIZE, c->body_len);
	c->replied = true;
	return 0;
}

static void run_dones(void)
{
	for (size_t i = 0; i < W.n_dones; i++) /* a done may send another reply: the list may grow */
		W.dones[i].done(W.dones[i].arg, 0);
	W.n_dones = 0;
}

static void c_request(struct client *c, uint8_t op, uint32_t code, struct wire_buf *b)
{
	CHECK(wire_buf_error(b) == 0, "request body");
	struct frame_request req = {0};
	req.size = (uint32_t)(FRAME_HEADER_SIZE + b->len);
	req.client = c->cid;
	req.operation = op;
	req.request = op == FRAME_OP_REGISTER ? 0 : c->next_req++;
	req.session = op == FRAME_OP_REGISTER ? 0 : 1;
	req.code = code;
	req.timestamp = W.s.now;
	uint8_t hdr[FRAME_HEADER_SIZE];
	struct frame_request dec;
	frame_request_encode(hdr, &req);
	CHECK(frame_request_decode(hdr, &dec) == FRAME_OK, "request header");
	c->op = op;
	c->st = C_WAIT;
	c->replied = false;
	uint8_t *copy = malloc(b->len + 1);
	cr_assert_not_null(copy);
	memcpy(copy, b->p, b->len);
	srv_session_frame(c->ss, &dec, copy, b->len);
	free(copy);
	wire_buf_reset(b);
}

/* The committed rejection code of a result-framed reply (0: success). */
static uint32_t c_result(const struct client *c)
{
	uint32_t err = 0;
	size_t off;
	if (c->status == 0 && frame_op_is_result_framed(c->op, c->body_len > 0) &&
	    frame_result_split(c->body, c->body_len, &err, &off) != FRAME_OK)
		return UINT32_MAX;
	return c->status != 0 ? c->status : err;
}

static void c_schedule(struct client *c, uint64_t delay)
{
	sim_push(&W.s, (struct sim_event){.time = W.s.now + delay, .kind = EV_CLIENT, .node = c->idx});
}

/* The client's connection is gone (its node stopped): what it waited for has an unknown outcome. */
static void c_lost(struct client *c)
{
	if (c->st == C_WAIT && c->kind == K_PRODUCER) {
		W.unknown++;
		c->seq++;
		c->resend = false;
	}
	if (c->st == C_WAIT)
		c_schedule(c, 100); /* it connects again (a client that was not waiting has its next step queued) */
	c->ss = NULL;
	c->st = C_NEW;
}

static struct wire_id name_id(const char *s)
{
	return (struct wire_id){.kind = WIRE_ID_STRING, .name = {(const uint8_t *)s, strlen(s)}};
}

static void c_login(struct client *c)
{
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_version_info vi = {FRAME_PROTOCOL_VERSION, {(const uint8_t *)"sim", 3}, {(const uint8_t *)"1", 1}};
	wire_put_version_info(&b, &vi);
	wire_put_name(&b, "iggy", 4);
	wire_put_str8(&b, "iggy", 4);
	wire_put_u32(&b, 0);
	c_request(c, FRAME_OP_REGISTER, 0, &b);
	wire_buf_free(&b);
}

static void c_produce(struct client *c)
{
	if (!c->resend) {
		c->n_msgs = 1 + (uint32_t)sim_rand_in(&W.s, 0, 2);
		c->part = (uint32_t)(c->idx % PARTS);
	}
	uint8_t pl[3][16];
	const void *pls[3];
	uint32_t lens[3];
	for (uint32_t i = 0; i < c->n_msgs; i++) {
		record_put64(pl[i], msg_key(c->idx, c->seq, i));
		record_put64(pl[i] + 8, XXH3_64bits(pl[i], 8));
		pls[i] = pl[i];
		lens[i] = 16;
	}
	uint8_t batch[1024];
	size_t blen = batch_build(batch, sizeof(batch), c->n_msgs, pls, lens, NULL, NULL, 1000);
	CHECK(blen > 0, "batch");
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id sid = name_id("s"), tid = name_id("t");
	struct wire_partitioning part = {.kind = WIRE_PART_PARTITION_ID, .partition_id = c->part};
	size_t at = wire_put_reserve(&b, 4);
	wire_put_id(&b, &sid);
	wire_put_id(&b, &tid);
	wire_put_partitioning(&b, &part);
	wire_put_u32(&b, c->n_msgs);
	wire_patch_u32(&b, at, (uint32_t)(b.len - at - 4));
	wire_put_bytes(&b, batch, blen);
	c_request(c, FRAME_OP_SEND_MESSAGES, 0, &b);
	wire_buf_free(&b);
}

static void c_poll(struct client *c, uint32_t part, uint64_t from, uint32_t count)
{
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_consumer con = {.kind = WIRE_CONSUMER_SINGLE, .id = {.kind = WIRE_ID_NUMERIC, .num = 1u + (uint32_t)c->idx}};
	struct wire_id sid = name_id("s"), tid = name_id("t");
	struct wire_opt_partition op = {.present = true, .id = part};
	struct wire_polling strat = {.kind = WIRE_POLL_OFFSET, .value = from};
	wire_put_consumer(&b, &con);
	wire_put_id(&b, &sid);
	wire_put_id(&b, &tid);
	wire_put_opt_partition(&b, &op);
	wire_put_polling(&b, &strat);
	wire_put_u32(&b, count);
	wire_put_u8(&b, 0);
	c->part = part;
	c->poll_from = from;
	c_request(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_POLL_MESSAGES, &b);
	wire_buf_free(&b);
}

/*
 * Checks a poll reply: [partition u32][current offset u64][count u32][batches]. Each batch verifies, the
 * offsets run on from the one asked for, and each offset holds the message every earlier poll saw there.
 * Calls fn for each message. Returns the number of messages.
 */
static uint32_t check_poll(struct client *c, void (*fn)(uint32_t part, uint64_t off, uint64_t key))
{
	const uint8_t *b = c->body;
	size_t len = c->body_len;
	CHECK(len >= 16, "poll reply of %zu bytes", len);
	uint32_t pid = record_le32(b), count = record_le32(b + 12);
	CHECK(pid == c->part, "poll of partition %u answered for %u", c->part, pid);
	size_t at = 16;
	uint64_t next = c->poll_from;
	uint32_t msgs = 0;
	while (at < len) {
		CHECK(len - at >= BATCH_HEADER_SIZE, "a cut batch header");
		uint64_t blen = record_le64(b + at + 32);
		CHECK(blen >= BATCH_HEADER_SIZE && blen <= len - at, "batch length %llu", (unsigned long long)blen);
		CHECK(batch_verify(b + at, (size_t)blen, false) == RECORD_OK, "a polled batch does not verify");
		uint64_t base = record_le64(b + at + 8);
		uint32_t n = record_le32(b + at + 48);
		size_t f = at + BATCH_HEADER_SIZE;
		for (uint32_t i = 0; i < n; i++) {
			uint64_t off = base + record_le32(b + f + 24);
			uint32_t hl = record_le32(b + f + 32), pl = record_le32(b + f + 36);
			CHECK(off == next, "partition %u: polled offset %llu where %llu was next", pid, (unsigned long long)off,
			      (unsigned long long)next);
			CHECK(pl == 16, "payload of %u bytes", pl);
			uint64_t key = record_le64(b + f + 48);
			CHECK(off < MAX_OFFSETS, "offset %llu", (unsigned long long)off);
			CHECK(W.seen[pid][off] == 0 || W.seen[pid][off] == key,
			      "partition %u offset %llu: polled %llx, earlier %llx (uncommitted data served)", pid,
			      (unsigned long long)off, (unsigned long long)key, (unsigned long long)W.seen[pid][off]);
			CHECK(W.acked[pid][off] == 0 || W.acked[pid][off] == key,
			      "partition %u offset %llu: polled %llx, acknowledged %llx", pid, (unsigned long long)off,
			      (unsigned long long)key, (unsigned long long)W.acked[pid][off]);
			W.seen[pid][off] = key;
			if (off + 1 > W.hi[pid])
				W.hi[pid] = off + 1;
			if (fn != NULL)
				fn(pid, off, key);
			next++;
			msgs++;
			f += BATCH_FRAME_HEADER_SIZE + pl + hl;
		}
		at += (size_t)blen;
	}
	CHECK(msgs == count, "poll announced %u messages, carried %u", count, msgs);
	return msgs;
}

/* A producer's reply. */
static void produced(struct client *c)
{
	if (c->status == 0) {
		CHECK(c->body_len == 24 && record_le32(c->body) == 1, "send reply of %zu bytes", c->body_len);
		uint32_t pid = record_le32(c->body + 12);
		uint64_t base = record_le64(c->body + 16);
		CHECK(pid == c->part, "sent to %u, acknowledged for %u", c->part, pid);
		for (uint32_t i = 0; i < c->n_msgs; i++) {
			uint64_t off = base + i, key = msg_key(c->idx, c->seq, i);
			CHECK(off < MAX_OFFSETS, "offset %llu", (unsigned long long)off);
			CHECK(W.acked[pid][off] == 0, "partition %u offset %llu acknowledged twice (%llx, then %llx)", pid,
			      (unsigned long long)off, (unsigned long long)W.acked[pid][off], (unsigned long long)key);
			CHECK(W.seen[pid][off] == 0 || W.seen[pid][off] == key,
			      "partition %u offset %llu: acknowledged %llx, polled %llx", pid, (unsigned long long)off,
			      (unsigned long long)key, (unsigned long long)W.seen[pid][off]);
			W.acked[pid][off] = key;
			if (off + 1 > W.hi[pid])
				W.hi[pid] = off + 1;
		}
		W.acks++;
		W.acked_by[c->idx]++;
		c->seq++;
		c->resend = false;
	} else if (c->status == PROTO_E_TRANSIENT_NOT_ACCEPTED) {
		W.nacks++;
		c->resend = true; /* not admitted: the same batch goes again, as Iggy's SDK does */
	} else {
		W.unknown++;
		c->seq++;
		c->resend = false;
	}
}

/* The admin's setup: login, stream "s", topic "t" (3 partitions, replicated on every node). */
static void admin_step(struct client *c)
{
	struct wire_buf b;
	wire_buf_init(&b);
	if (c->step == 0) {
		wire_put_name(&b, "s", 1);
		c_request(c, FRAME_OP_CREATE_STREAM, 0, &b);
	} else if (c->step == 1) {
		struct wire_id sid = name_id("s");
		wire_put_id(&b, &sid);
		wire_put_u32(&b, PARTS);
		wire_put_name(&b, "t", 1);
		c_request(c, FRAME_OP_CREATE_TOPIC, 0, &b);
	} else {
		/* The topic is there when a poll of each partition is answered. */
		c_poll(c, (uint32_t)(c->step - 2), 0, 1);
	}
	wire_buf_free(&b);
}

static void client_event(int idx)
{
	struct client *c = &W.c[idx];
	if (c->st == C_WAIT || c->kind == K_READER)
		return; /* its reply comes first; the reader is driven by read_all */
	if (c->kind != K_ADMIN && !W.workload)
		return;
	if (c->kind == K_ADMIN && W.setup_done)
		return;
	if (c->ss == NULL || !W.n[c->node].up) {
		int tries = 0;
		do
			c->node = (int)sim_rand_in(&W.s, 1, NODES);
		while (!W.n[c->node].up && ++tries < 16);
		if (!W.n[c->node].up) {
			c_schedule(c, 100);
			return;
		}
		char peer[32];
		snprintf(peer, sizeof(peer), "10.0.0.%d:%d", c->idx, 40000 + (int)c->next_req % 1000);
		c->ss = srv_session_open(W.n[c->node].srv, SRV_TCP, peer, 0, c_send, c);
		cr_assert_not_null(c->ss);
		c->cid = (struct frame_u128){.lo = W.s.now * 64 + (uint64_t)c->idx + 1, .hi = 0x73696d};
		c->st = C_NEW;
	}
	if (c->st == C_NEW) {
		c_login(c);
		return;
	}
	if (c->kind == K_ADMIN)
		admin_step(c);
	else if (c->kind == K_PRODUCER)
		c_produce(c);
	else {
		uint32_t part = (uint32_t)sim_rand_in(&W.s, 0, PARTS - 1);
		c_poll(c, part, sim_rand_in(&W.s, 0, W.hi[part] + 2), (uint32_t)sim_rand_in(&W.s, 1, 16));
	}
}

/* A reply arrived (after the step that made it): the client goes on. */
static void client_replied(struct client *c)
{
	c->replied = false;
	c->got = true;
	c->st = C_READY;
	if (c->op == FRAME_OP_REGISTER) {
		if (c_result(c) != 0)
			c->st = C_NEW; /* 58 while the metadata is not ready: log in again */
		c_schedule(c, c_result(c) != 0 ? 200 : 1);
		return;
	}
	if (c->kind == K_ADMIN) {
		uint32_t r = c_result(c);
		if (r == 0)
			c->step++;
		else
			CHECK(r == PROTO_E_TRANSIENT_NOT_ACCEPTED || c->step >= 2 || r == 1, "setup step %d: %u", c->step, r);
		if (c->step == 2 + PARTS) {
			W.setup_done = true;
			return;
		}
		c_schedule(c, r == 0 ? 1 : 200);
		return;
	}
	if (c->kind == K_PRODUCER) {
		produced(c);
		c_schedule(c, sim_rand_in(&W.s, 1, 40));
		return;
	}
	if (c->kind == K_READER)
		return; /* read_all looks at the reply */
	W.polls++;
	if (c->status == 0)
		check_poll(c, NULL);
	c_schedule(c, sim_rand_in(&W.s, 1, 60));
}

/* ---- Nodes ---- */

static void node_config(struct node *nd)
{
	struct galgo_config *cfg = &nd->cfg;
	cr_assert_eq(config_defaults(cfg), 0);
	cfg->node.id = (uint32_t)nd->id;
	free(cfg->node.data_dir);
	cfg->node.data_dir = strdup("/data");
	free(cfg->cluster.nodes);
	cfg->cluster.nodes = strdup("1@n1:7001:8091,2@n2:7002:8092,3@n3:7003:8093");
	free(cfg->cluster.secret);
	cfg->cluster.secret = strdup("sim");
	free(cfg->root.password);
	cfg->root.password = strdup("iggy");
	cfg->cluster.replication_factor = NODES;
	cfg->cluster.election_timeout_ms = ELECTION_MS;
	cfg->storage.segment_size = 64u << 10;
	cr_assert(cfg->node.data_dir != NULL && cfg->cluster.nodes != NULL && cfg->cluster.secret != NULL);
}

static void node_start(struct node *nd)
{
	cr_assert(!nd->up);
	cr_assert_eq(uv_loop_init(&nd->loop), 0);
	cr_assert_eq(flusher_new(&nd->loop, true, &nd->fl), 0);
	int rv = srv_new(&nd->loop, &nd->cfg, &nd->w.base, nd->fl, &nd->srv);
	CHECK(rv == 0, "node %d does not start: %d", nd->id, rv);
	nd->up = true;
	nd->idle_queued = false;
	memset(nd->checked, 0, sizeof(nd->checked));
	memset(nd->checked_gid, 0, sizeof(nd->checked_gid));
	sim_push(&W.s, (struct sim_event){.time = W.s.now + 1000, .kind = EV_TICK, .node = nd->id, .inc = nd->inc});
}

/* Stops a node as a process dies: its network first, then its disk, then what is left in memory. */
static void node_crash(struct node *nd, bool power, uint32_t tear)
{
	cr_assert(nd->up);
	srv_stop_network(nd->srv);
	nd->w.dead = true;
	run_dones();
	for (int i = 0; i <= CLIENTS; i++)
		if (W.c[i].ss != NULL && W.c[i].node == nd->id) {
			srv_session_close(W.c[i].ss);
			c_lost(&W.c[i]);
		}
	run_dones();
	srv_free(nd->srv);
	nd->srv = NULL;
	run_dones();
	flusher_close(nd->fl);
	nd->fl = NULL;
	uv_run(&nd->loop, UV_RUN_NOWAIT);
	simuv_forget(&nd->loop);
	cr_assert_eq(uv_loop_close(&nd->loop), 0);
	nd->w.dead = false;
	if (power)
		CHECK(pio_sim_power_loss(nd->disk, tear) == 0, "power loss with files open");
	nd->up = false;
	nd->inc++;
}

static void after_step(struct node *nd)
{
	if (!nd->up)
		return;
	simuv_iterate(&nd->loop);
	run_dones();
	if (!nd->idle_queued && simuv_idle_active(&nd->loop)) {
		/* The flusher's kick: the disk answers after 0..3 ms. */
		nd->idle_queued = true;
		sim_push(&W.s, (struct sim_event){.time = W.s.now + sim_rand_in(&W.s, 0, 3), .kind = EV_IDLE,
						  .node = nd->id, .inc = nd->inc});
	}
}

/* ---- Invariants ---- */

static void check_leaders_one(void *arg, struct clu_group *g)
{
	struct node *nd = arg;
	struct rgroup_status st;
	clu_group_status(g, &st);
	if (st.state != RAFT_LEADER)
		return;
	uint64_t gid = clu_group_id(g);
	for (size_t i = 0; i < W.n_leaders; i++)
		if (W.leaders[i].gid == gid && W.leaders[i].term == st.term) {
			CHECK(W.leaders[i].node == nd->id, "group %llx has leaders %d and %d in term %llu",
			      (unsigned long long)gid, W.leaders[i].node, nd->id, (unsigned long long)st.term);
			return;
		}
	CHECK(W.n_leaders < 4096, "too many terms");
	W.leaders[W.n_leaders].gid = gid;
	W.leaders[W.n_leaders].term = st.term;
	W.leaders[W.n_leaders].node = nd->id;
	W.n_leaders++;
}

static size_t group_slot(uint64_t gid)
{
	for (size_t i = 0; i < W.n_groups; i++)
		if (W.groups[i].gid == gid)
			return i;
	CHECK(W.n_groups < 64, "too many groups");
	W.groups[W.n_groups].gid = gid;
	return W.n_groups++;
}

/* State Machine Safety for one replica: the entries it applied since the last check. */
static void check_applied(struct node *nd, uint64_t gid, struct plog *log, uint64_t applied)
{
	size_t slot = group_slot(gid);
	size_t k;
	for (k = 0; k < 64 && nd->checked_gid[k] != 0 && nd->checked_gid[k] != gid; k++)
		;
	CHECK(k < 64, "slots");
	nd->checked_gid[k] = gid;
	uint64_t from = nd->checked[k] + 1;
	if (from < plog_first_index(log))
		from = plog_first_index(log);
	if (applied > plog_last_index(log))
		applied = plog_last_index(log);
	while (from <= applied) {
		struct plog_slice sl;
		uint32_t n;
		int rv = plog_read_records(log, from, applied, 1 << 20, &sl, &n);
		if (rv != 0) {
			plog_slice_release(&sl);
			return; /* a damaged record: fenced, served by no one */
		}
		uint8_t *buf = malloc(sl.bytes + 1);
		cr_assert_not_null(buf);
		CHECK(plog_slice_copy(&sl, buf) == 0, "slice copy");
		plog_slice_release(&sl);
		size_t at = 0;
		for (uint32_t i = 0; i < n; i++) {
			struct record_env env;
			CHECK(record_env_decode(buf + at, &env) == 0, "envelope");
			uint64_t sum = XXH3_64bits(buf + at + RECORD_ENVELOPE_SIZE, env.length);
			typeof(W.groups[0]) *g = &W.groups[slot];
			if (env.index >= g->cap) {
				size_t cap = g->cap ? g->cap : 256;
				while (cap <= env.index)
					cap *= 2;
				g->term = realloc(g->term, cap * sizeof(uint64_t));
				g->sum = realloc(g->sum, cap * sizeof(uint64_t));
				cr_assert(g->term != NULL && g->sum != NULL);
				memset(g->term + g->cap, 0, (cap - g->cap) * sizeof(uint64_t));
				memset(g->sum + g->cap, 0, (cap - g->cap) * sizeof(uint64_t));
				g->cap = cap;
			}
			if (g->term[env.index] == 0) {
				g->term[env.index] = env.term;
				g->sum[env.index] = sum;
			} else {
				CHECK(g->term[env.index] == env.term && g->sum[env.index] == sum,
				      "group %llx: node %d applied %llu^%llu, another replica %llu^%llu", (unsigned long long)gid,
				      nd->id, (unsigned long long)env.index, (unsigned long long)env.term,
				      (unsigned long long)env.index, (unsigned long long)g->term[env.index]);
			}
			at += RECORD_ENVELOPE_SIZE + env.length;
		}
		free(buf);
		from += n;
		nd->checked[k] = from - 1;
	}
}

static void check_invariants(void)
{
	for (int i = 1; i <= NODES; i++) {
		struct node *nd = &W.n[i];
		if (!nd->up)
			continue;
		struct srv *s = nd->srv;
		clu_each_group(s->clu, check_leaders_one, nd);
		if (s->mg != NULL && s->mlog != NULL && clu_group_failed(s->mg) == 0)
			check_applied(nd, CLU_META_GROUP, s->mlog, s->meta_applied);
		for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
			for (uint32_t p = 0; p < tp->n; p++) {
				struct part *pt = tp->pp[p];
				if (pt != NULL && pt->log != NULL && pt->g != NULL && clu_group_failed(pt->g) == 0)
					check_applied(nd, pt->gid, pt->log, pt->last_applied);
			}
	}
}

/* ---- Faults ---- */

static void fault(void)
{
	uint64_t r = sim_rand_in(&W.s, 1, 100);
	int a = (int)sim_rand_in(&W.s, 1, NODES), b = (int)sim_rand_in(&W.s, 1, NODES - 1);
	if (b >= a)
		b++;
	if (r <= 35) {
		simnet_reset(a, b);
		W.resets++;
	} else if (r <= 55 && W.down == 0) {
		for (int k = 1; k <= NODES; k++)
			if (k != a)
				simnet_cut(a, k, true);
		W.partitions++;
		sim_push(&W.s, (struct sim_event){.time = W.s.now + sim_rand_in(&W.s, 1000, 8000), .kind = EV_HEAL});
	} else if (r <= 80 && W.down == 0) {
		bool power = r > 68;
		node_crash(&W.n[a], power, power ? (uint32_t)sim_rand_in(&W.s, 0, 4096) : 0);
		power ? W.power_losses++ : W.crashes++;
		W.down = a;
		sim_push(&W.s, (struct sim_event){.time = W.s.now + sim_rand_in(&W.s, 500, 5000), .kind = EV_RESTART,
						  .node = a});
	}
	if (W.faults)
		sim_push(&W.s, (struct sim_event){.time = W.s.now + sim_rand_in(&W.s, 200, 1500), .kind = EV_FAULT});
}

static void heal(void)
{
	for (int a = 1; a <= NODES; a++)
		for (int b = 1; b <= NODES; b++)
			if (a != b)
				simnet_cut(a, b, false);
}

/* ---- The schedule ---- */

/* Runs events up to virtual time `until`, checking the invariants after each. */
static void run_until(uint64_t until)
{
	for (;;) {
		uint64_t t_ev = sim_next_time(&W.s), t_tm = simuv_next_due();
		uint64_t next = t_ev < t_tm ? t_ev : t_tm;
		if (next > until) {
			W.s.now = until;
			simuv_set_now(until);
			return;
		}
		if (next > W.s.now) {
			W.s.now = next;
			simuv_set_now(next);
		}
		CHECK(W.s.events < 5000000, "runaway schedule");
		if (t_tm <= t_ev) {
			uv_loop_t *loop = simuv_fire_next();
			for (int i = 1; i <= NODES; i++)
				if (W.n[i].up && &W.n[i].loop == loop)
					after_step(&W.n[i]);
		} else {
			struct sim_event e = sim_pop(&W.s);
			struct node *nd = e.node >= 1 && e.node <= NODES ? &W.n[e.node] : NULL;
			switch (e.kind) {
			case EV_NET:
				simnet_deliver(&e);
				after_step(nd);
				break;
			case EV_IDLE:
				if (nd->up && e.inc == nd->inc) {
					nd->idle_queued = false;
					simuv_run_idles(&nd->loop);
					after_step(nd);
				}
				break;
			case EV_TICK:
				if (nd->up && e.inc == nd->inc) {
					srv_tick(nd->srv);
					after_step(nd);
					sim_push(&W.s, (struct sim_event){.time = W.s.now + 1000, .kind = EV_TICK, .node = e.node,
									  .inc = nd->inc});
				}
				break;
			case EV_NETTICK:
				simnet_tick();
				for (int i = 1; i <= NODES; i++)
					after_step(&W.n[i]);
				sim_push(&W.s, (struct sim_event){.time = W.s.now + 50, .kind = EV_NETTICK});
				break;
			case EV_CLIENT: {
				struct client *c = &W.c[e.node];
				client_event(e.node);
				if (c->ss != NULL)
					after_step(&W.n[c->node]);
				break;
			}
			case EV_FAULT:
				if (W.faults)
					fault();
				break;
			case EV_HEAL:
				heal();
				break;
			case EV_RESTART:
				node_start(nd);
				W.down = 0;
				after_step(nd);
				break;
			default:
				free(e.buf);
				break;
			}
		}
		run_dones();
		for (int i = 0; i <= CLIENTS; i++)
			if (W.c[i].replied)
				client_replied(&W.c[i]);
		check_invariants();
	}
}

/* ---- The end: every node serves every partition whole, and they agree ---- */

static uint64_t read_keys[MAX_OFFSETS];

static void collect(uint32_t part, uint64_t off, uint64_t key)
{
	(void)part;
	read_keys[off] = key;
}

/* Waits (running the schedule) for the reader's reply; false after `limit` ms. */
static bool reader_wait(struct client *r, uint64_t limit)
{
	uint64_t until = W.s.now + limit;
	while (!r->got && W.s.now < until)
		run_until(W.s.now + 5);
	return r->got;
}

/* Reads partition `part` whole through node `node` into read_keys; returns the message count. */
static uint64_t read_all(int node, uint32_t part)
{
	struct client *r = &W.c[READER];
	memset(read_keys, 0, sizeof(read_keys));
	r->node = node;
	r->ss = srv_session_open(W.n[node].srv, SRV_TCP, "10.0.0.99:1", 0, c_send, r);
	cr_assert_not_null(r->ss);
	r->cid = (struct frame_u128){.lo = W.s.now * 64 + 63, .hi = 0x73696d};
	bool logged = false;
	uint64_t n = 0, deadline = W.s.now + 60000;
	while (W.s.now < deadline) {
		r->got = false;
		if (!logged)
			c_login(r);
		else
			c_poll(r, part, n, 100);
		after_step(&W.n[node]);
		run_dones();
		if (r->replied)
			client_replied(r);
		if (!reader_wait(r, 15000))
			break;
		if (!logged) {
			logged = c_result(r) == 0;
		} else if (r->status == 0) {
			uint32_t m = check_poll(r, collect);
			if (m == 0) {
				srv_session_close(r->ss);
				r->ss = NULL;
				return n;
			}
			n += m;
			continue;
		}
		run_until(W.s.now + 200);
	}
	CHECK(false, "node %d does not serve partition %u (status %u)", node, part, r->status);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void final_check(void)
{
	static uint64_t first[MAX_OFFSETS], sorted[MAX_OFFSETS];
	for (uint32_t p = 0; p < PARTS; p++) {
		uint64_t n0 = 0;
		for (int i = 1; i <= NODES; i++) {
			uint64_t n = read_all(i, p);
			if (i == 1) {
				n0 = n;
				memcpy(first, read_keys, sizeof(first));
				continue;
			}
			CHECK(n == n0, "partition %u: node 1 serves %llu messages, node %d %llu", p, (unsigned long long)n0, i,
			      (unsigned long long)n);
			for (uint64_t o = 0; o < n; o++)
				CHECK(read_keys[o] == first[o], "partition %u offset %llu: node 1 has %llx, node %d %llx", p,
				      (unsigned long long)o, (unsigned long long)first[o], i, (unsigned long long)read_keys[o]);
		}
		for (uint64_t o = 0; o < MAX_OFFSETS; o++) {
			CHECK(W.acked[p][o] == 0 || (o < n0 && first[o] == W.acked[p][o]),
			      "partition %u: acknowledged message %llx at offset %llu is lost (the log holds %llu messages)", p,
			      (unsigned long long)W.acked[p][o], (unsigned long long)o, (unsigned long long)n0);
			CHECK(W.seen[p][o] == 0 || (o < n0 && first[o] == W.seen[p][o]),
			      "partition %u: polled message %llx at offset %llu is gone", p, (unsigned long long)W.seen[p][o],
			      (unsigned long long)o);
		}
		memcpy(sorted, first, n0 * sizeof(uint64_t));
		qsort(sorted, n0, sizeof(uint64_t), cmp_u64);
		for (uint64_t o = 1; o < n0; o++)
			CHECK(sorted[o] != sorted[o - 1], "partition %u holds message %llx twice", p, (unsigned long long)sorted[o]);
	}
}

/* ---- A run ---- */

static void run_seed(uint64_t seed, uint64_t fault_ms)
{
	memset(&W, 0, sizeof(W));
	cur_seed = seed;
	sim_init(&W.s, seed);
	simuv_reset();
	simuv_seed(seed);
	simnet_init(&W.s, EV_NET, NODES, 1, 10);
	glog_set_level(getenv("SIM_NODES_LOG") != NULL ? GLOG_INFO : GLOG_ERROR);
	for (int i = 1; i <= NODES; i++) {
		struct node *nd = &W.n[i];
		nd->id = i;
		nd->disk = pio_sim_new();
		cr_assert_not_null(nd->disk);
		nd->w.base.ops = &wpio_ops;
		nd->w.inner = nd->disk;
		node_config(nd);
		node_start(nd);
	}
	for (int i = 0; i <= CLIENTS; i++) {
		struct client *c = &W.c[i];
		c->idx = i;
		c->next_req = 1;
		c->kind = i == 0 ? K_ADMIN : i <= PRODUCERS ? K_PRODUCER : i < CLIENTS ? K_CONSUMER : K_READER;
	}
	sim_push(&W.s, (struct sim_event){.time = 0, .kind = EV_NETTICK});
	c_schedule(&W.c[0], 100);
	while (!W.setup_done && W.s.now < 60000)
		run_until(W.s.now + 100);
	CHECK(W.setup_done, "the stream and topic were not created within 60 s");

	W.workload = true;
	for (int i = 1; i < CLIENTS; i++)
		c_schedule(&W.c[i], sim_rand_in(&W.s, 1, 100));
	W.faults = fault_ms > 0;
	if (W.faults)
		sim_push(&W.s, (struct sim_event){.time = W.s.now + 500, .kind = EV_FAULT});
	run_until(W.s.now + (fault_ms > 0 ? fault_ms : 10000));
	W.faults = false;
	W.workload = false;
	heal();
	run_until(W.s.now + 15000); /* restarts come, replies in flight land, the groups settle */
	for (int i = 1; i <= NODES; i++)
		CHECK(W.n[i].up, "node %d is still down", i);
	final_check();
	if (getenv("SIM_NODES_VERBOSE") != NULL)
		fprintf(stderr,
			"seed %llu: %llu events, %llu ms; %llu acks, %llu 58s, %llu unknown, %llu polls; %llu resets, %llu "
			"partitions, %llu crashes, %llu power losses; messages %llu/%llu/%llu\n",
			cur_seed, (unsigned long long)W.s.events, (unsigned long long)W.s.now, (unsigned long long)W.acks,
			(unsigned long long)W.nacks, (unsigned long long)W.unknown, (unsigned long long)W.polls,
			(unsigned long long)W.resets, (unsigned long long)W.partitions, (unsigned long long)W.crashes,
			(unsigned long long)W.power_losses, (unsigned long long)W.hi[0], (unsigned long long)W.hi[1],
			(unsigned long long)W.hi[2]);
	if (getenv("SIM_NODES_VERBOSE") != NULL)
		for (int i = 1; i <= PRODUCERS; i++)
			fprintf(stderr, "  producer %d: %llu acks, state %d, node %d, seq %llu\n", i,
				(unsigned long long)W.acked_by[i], W.c[i].st, W.c[i].node, (unsigned long long)W.c[i].seq);

	for (int i = 1; i <= NODES; i++) {
		struct node *nd = &W.n[i];
		if (nd->up)
			node_crash(nd, false, 0);
		pio_destroy(nd->disk);
		config_free(&nd->cfg);
	}
	for (int i = 0; i <= CLIENTS; i++)
		free(W.c[i].body);
	for (size_t i = 0; i < W.n_groups; i++) {
		free(W.groups[i].term);
		free(W.groups[i].sum);
	}
	free(W.dones);
	simnet_free();
	simuv_reset();
	sim_free(&W.s);
}

/* The seeds a test runs: SIM_NODES_SEED=n runs that one, else 1..SIM_NODES_SEEDS (default `dflt`). */
static void run_seeds(unsigned dflt, uint64_t fault_ms)
{
	const char *one = getenv("SIM_NODES_SEED"), *many = getenv("SIM_NODES_SEEDS");
	if (one != NULL) {
		run_seed(strtoull(one, NULL, 10), fault_ms);
		return;
	}
	unsigned n = many != NULL ? (unsigned)strtoul(many, NULL, 10) : dflt;
	for (unsigned k = 1; k <= n; k++)
		run_seed(k, fault_ms);
}

Test(sim_nodes, three_nodes_serve_what_they_acknowledged_without_faults)
{
	run_seeds(1, 0);
}

Test(sim_nodes, three_nodes_lose_no_acknowledged_message_and_serve_no_uncommitted_one_under_faults)
{
	run_seeds(4, 30000);
}
