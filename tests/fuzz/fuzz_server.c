/*
 * libFuzzer target for node/server: the command decoders and handlers behind srv_session_frame must never
 * crash, leak or read out of bounds, whatever body a logged-in client sends, and the server must answer
 * every request with exactly one well-formed frame, in request order.
 *
 * One server world is built once (and rebuilt now and then, see world_check): a uv loop, the real file
 * backend, an inline flusher and a srv on a temporary data directory (in /dev/shm when there is one),
 * a "main" session logged in as root (iggy/iggy) through a Register frame, a stream "fuzz" (id 0) with a
 * topic "t" (id 0) and a topic "d" (id 1, with a message-id dedup window of 16) of 2 partitions holding 3
 * messages each, a consumer group "g" (id 0) on "t" the main session has joined, and a personal access
 * token used to log sessions in again cheaply (a password login costs an Argon2 hash).
 *
 * Each input: byte 0 picks the request, the rest is its body.
 *   - (byte 0 & 0x7f) < N_OPS: ops[i] on the main session;
 *   - (byte 0 & 0x7f) >= N_OPS: ops[(i - N_OPS) % N_OPS] on a fresh session that is not logged in;
 *   - byte 0 & 0x80: the request goes to a fresh session logged in with the token, which is closed right
 *     after the frame is handed over, before the loop runs (a client that disconnects with a request in
 *     flight).
 * The header is always valid (client id non-zero, Register with session and request 0, every other
 * operation with session and request > 0, the code only for NonReplicated), so the fuzzing reaches the
 * body decoders. ops[] has every NonReplicated code of reference §2.2 (plus an unknown code and a
 * replicated code sent as NonReplicated) and every operation byte of §2.1. CreateUser and ChangePassword,
 * which hash a password, and a Register on a session that is not logged in, which may verify one, run
 * for 1 input in 64 only. Partition counts of CreateTopic and CreatePartitions between 17 and 1000 are
 * folded into 1..16 (a thousand partitions are a thousand directories; above 1000 the server rejects).
 *
 * Every reply is checked as a client would read it (the CHECKs abort): it decodes as a Reply or an
 * Eviction, its size is the bytes sent, it echoes the client id, request number and operation of the
 * request it answers (replies come in request order), a status denial has an empty body, a
 * result-framed body splits, a SendMessages reply is a whole list of confirmations, a login reply names
 * a session, and a poll reply's records verify, belong to the partition named and hold the number of
 * messages announced. After each input the loop runs until every request of a live session is answered;
 * every 16 inputs srv_tick runs retention.
 *
 * Seeds (tests/fuzz/corpus/server/) are valid bodies for the fixture: create stream and topic (with
 * options), send batches (by partition id, balanced with user headers, by key on a dropped connection, to
 * the dedup topic), polls (by offset, by group, before login), store and delete offsets, get stream and
 * topic, consumer groups, partitions, users and permissions, a login.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "node/config.h"
#include "node/log.h"
#include "node/server.h"
#include "partition/flusher.h"
#include "partition/pio.h"
#include "partition/record.h"
#include "proto/frame.h"
#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define CHECK(cond)                                                                                        \
	do {                                                                                               \
		if (!(cond)) {                                                                             \
			fprintf(stderr, "fuzz_server: check failed at line %d: %s\n", __LINE__, #cond);   \
			abort();                                                                           \
		}                                                                                          \
	} while (0)

/* What byte 0 selects: an operation byte, and the code for NonReplicated. */
struct fz_op {
	uint8_t op;
	uint32_t code;
};

static const struct fz_op ops[] = {
	/* NonReplicated codes (reference §2.2), an unknown one and a replicated code sent as NR. */
	{2, 1}, {2, 10}, {2, 11}, {2, 12}, {2, 13}, {2, 20}, {2, 21}, {2, 22}, {2, 31}, {2, 32}, {2, 38}, {2, 41},
	{2, 44}, {2, 100}, {2, 102}, {2, 120}, {2, 200}, {2, 201}, {2, 300}, {2, 301}, {2, 600}, {2, 601},
	{2, 606}, {2, 60000}, {2, 202},
	/* Iggy's poll routing: GetPollRouting, PollMessagesOnPrimary, AttachConsumerSession, GetConsumerOffsetRouting. */
	{2, 103}, {2, 104}, {2, 14}, {2, 123},
	/* Galgo's extensions (docs/protocol-extensions.md). */
	{2, 10001}, {2, 10002}, {2, 10003}, {2, 10004},
	/* Register, Logout, the internal operations, metadata, partition plane (reference §2.1). */
	{1, 0}, {3, 0}, {64, 0}, {65, 0}, {66, 0}, {67, 0}, {68, 0}, {128, 0}, {129, 0}, {130, 0}, {131, 0},
	{132, 0}, {133, 0}, {134, 0}, {135, 0}, {136, 0}, {137, 0}, {138, 0}, {139, 0}, {140, 0}, {141, 0},
	{142, 0}, {143, 0}, {144, 0}, {145, 0}, {146, 0}, {147, 0}, {148, 0}, {149, 0}, {160, 0}, {161, 0},
	{162, 0},
};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))

#define ROOT_USER "iggy"
#define ROOT_PASSWORD "iggy"
#define FIXTURE_PAT "fuzz-fixture-token"
#define RESET_EVERY 20000u      /* inputs between rebuilds of the world */
#define MAX_PARTITIONS 128u     /* open partitions above which the world is rebuilt */
#define REPLY_DEADLINE_MS 20000 /* how long a live session's request may stay unanswered */

/* A request waiting for its reply. */
struct expect {
	struct frame_u128 client;
	uint64_t request;
	uint8_t op;
	uint32_t code;
};

/* The client side of one session. */
struct fz_client {
	struct srv_session *ss;
	struct expect q[8];
	unsigned qhead, qlen;
	bool capture;        /* keep the last reply's body in `last` */
	uint8_t *last;
	size_t last_len;
	uint32_t last_status;
	uint8_t last_command;
};

/* A `done` of the server's send function, deferred as a transport defers it. */
struct fz_done {
	void (*done)(void *arg, int status);
	void *arg;
};

static struct {
	bool ready;
	char dir[128];
	uv_loop_t loop;
	struct pio *pio;
	struct flusher *fl;
	struct galgo_config cfg;
	struct srv *srv;
	struct fz_client main;
	char token[256];
	uint32_t next_conn;
	uint64_t next_request;
	uint64_t next_vsr;
	unsigned inputs;
	unsigned slow;
	struct fz_done *dones;
	size_t n_dones, cap_dones;
	uint8_t *scratch;
	size_t scratch_cap;
	bool verbose; /* FUZZ_SERVER_VERBOSE set: print every reply (to check what the seeds reach) */
	unsigned worlds;
	uint64_t n_ok, n_denied, n_rejected, n_evicted; /* replies by outcome, printed at exit */
} W;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct frame_u128 new_client_id(void)
{
	return (struct frame_u128){.lo = ++W.next_vsr, .hi = 0x66757a7aull};
}

/* ---- Checking replies ---- */

/* The bytes of the reply pieces after the header, gathered (file ranges read with pread). */
static const uint8_t *gather_body(const struct srv_piece *pieces, size_t n, size_t total)
{
	if (total > W.scratch_cap) {
		uint8_t *p = realloc(W.scratch, total);
		CHECK(p != NULL);
		W.scratch = p;
		W.scratch_cap = total;
	}
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		if (pieces[i].len == 0)
			continue;
		if (pieces[i].mem != NULL) {
			memcpy(W.scratch + at, pieces[i].mem, pieces[i].len);
		} else {
			CHECK(pieces[i].fd >= 0);
			size_t got = 0;
			while (got < pieces[i].len) {
				ssize_t r = pread(pieces[i].fd, W.scratch + at + got, pieces[i].len - got,
						  (off_t)(pieces[i].off + got));
				CHECK(r > 0); /* a file range the server announced must be there */
				got += (size_t)r;
			}
		}
		at += pieces[i].len;
	}
	return W.scratch;
}

/* A poll reply body: [partition u32][current u64][count u32][records]. */
static void check_poll_body(const uint8_t *b, size_t len)
{
	CHECK(len >= 16);
	uint32_t pid = record_le32(b);
	uint32_t count = record_le32(b + 12);
	size_t at = 16;
	uint64_t msgs = 0;
	while (at < len) {
		CHECK(len - at >= BATCH_HEADER_SIZE);
		uint64_t blen = record_le64(b + at + 32);
		CHECK(blen >= BATCH_HEADER_SIZE && blen <= len - at);
		CHECK(batch_verify(b + at, (size_t)blen, false) == RECORD_OK);
		CHECK(record_le64(b + at) == pid);
		msgs += record_le32(b + at + 48);
		at += (size_t)blen;
	}
	CHECK(msgs == count);
	if (pid == 0xffffffffu)
		CHECK(count == 0);
}

static void check_reply(struct fz_client *c, const uint8_t *hdr, const uint8_t *body, size_t body_len)
{
	CHECK(c->qlen > 0); /* a reply to a request that was sent */
	struct expect e = c->q[c->qhead];
	c->qhead = (c->qhead + 1) % 8;
	c->qlen--;
	c->last_command = hdr[FRAME_OFF_COMMAND];

	if (hdr[FRAME_OFF_COMMAND] == FRAME_CMD_EVICTION) {
		struct frame_eviction ev;
		CHECK(frame_eviction_decode(hdr, &ev) == FRAME_OK);
		CHECK(body_len == 0);
		CHECK(frame_u128_eq(ev.client, e.client));
		c->last_status = ev.reason;
		W.n_evicted++;
		if (W.verbose)
			fprintf(stderr, "fuzz_server: %s: eviction %u\n", frame_op_name(e.op), ev.reason);
		return;
	}
	struct frame_reply rep;
	CHECK(frame_reply_decode(hdr, &rep) == FRAME_OK);
	CHECK(rep.size == FRAME_HEADER_SIZE + body_len);
	CHECK(frame_u128_eq(rep.client, e.client));
	CHECK(rep.request == e.request);
	CHECK(rep.operation == e.op || (e.op == FRAME_OP_DELETE_SEGMENTS && rep.operation == 68));
	c->last_status = rep.status;
	if (W.verbose) {
		uint32_t err = 0;
		size_t off;
		if (rep.status == 0 && frame_op_is_result_framed(rep.operation, body_len > 0))
			(void)frame_result_split(body, body_len, &err, &off);
		fprintf(stderr, "fuzz_server: %s %s: status %u, result %u, %zu body bytes\n", frame_op_name(e.op),
			e.op == FRAME_OP_NON_REPLICATED ? frame_code_name(e.code) : "", rep.status, err, body_len);
	}
	if (c->capture) {
		free(c->last);
		c->last = malloc(body_len ? body_len : 1);
		CHECK(c->last != NULL);
		memcpy(c->last, body, body_len);
		c->last_len = body_len;
	}
	if (rep.status != 0) {
		CHECK(body_len == 0);
		W.n_denied++;
		return;
	}
	if (frame_op_is_result_framed(rep.operation, body_len > 0)) {
		uint32_t err;
		size_t off;
		CHECK(frame_result_split(body, body_len, &err, &off) == FRAME_OK);
		if (err != 0)
			CHECK(body_len == FRAME_RESULT_REJECT_SIZE);
		err != 0 ? W.n_rejected++ : W.n_ok++;
		if (e.op == FRAME_OP_REGISTER && err == 0) {
			CHECK(body_len >= 4 + 4 + 8 + 4 + 2);
			CHECK(record_le64(body + 8) > 0); /* the session */
		}
		return;
	}
	W.n_ok++;
	if (e.op == FRAME_OP_SEND_MESSAGES) {
		CHECK(body_len >= 4);
		CHECK(body_len == 4 + (size_t)record_le32(body) * 20);
		return;
	}
	if (e.op == FRAME_OP_NON_REPLICATED &&
	    (e.code == FRAME_CODE_POLL_MESSAGES || e.code == FRAME_CODE_POLL_MESSAGES_ON_PRIMARY))
		check_poll_body(body, body_len);
	if (e.op == FRAME_OP_NON_REPLICATED && e.code == FRAME_CODE_PING)
		CHECK(body_len == 0);
}

static void defer_done(void (*done)(void *, int), void *arg)
{
	if (W.n_dones == W.cap_dones) {
		size_t cap = W.cap_dones ? W.cap_dones * 2 : 64;
		struct fz_done *d = realloc(W.dones, cap * sizeof(*d));
		CHECK(d != NULL);
		W.dones = d;
		W.cap_dones = cap;
	}
	W.dones[W.n_dones++] = (struct fz_done){done, arg};
}

static void run_dones(void)
{
	for (size_t i = 0; i < W.n_dones; i++) /* a done may not queue another, but be safe */
		W.dones[i].done(W.dones[i].arg, 0);
	W.n_dones = 0;
}

/* The server's send function: every frame is checked as it leaves. */
static int fz_send(void *ctx, const struct srv_piece *pieces, size_t n, void (*done)(void *, int), void *arg)
{
	struct fz_client *c = ctx;
	CHECK(n >= 1 && pieces[0].mem != NULL && pieces[0].len >= FRAME_HEADER_SIZE);
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += pieces[i].len;
	CHECK(total <= FRAME_MAX_SIZE);
	const uint8_t *all = gather_body(pieces, n, total);
	CHECK(frame_peek_size(all) == total);
	check_reply(c, all, all + FRAME_HEADER_SIZE, total - FRAME_HEADER_SIZE);
	defer_done(done, arg);
	return 0;
}

/* ---- Sending requests ---- */

static void send_frame(struct fz_client *c, struct frame_u128 client, uint8_t op, uint32_t code, const uint8_t *body,
		       size_t len)
{
	struct frame_request req = {0};
	req.size = (uint32_t)(FRAME_HEADER_SIZE + len);
	req.client = client;
	req.operation = op;
	if (op == FRAME_OP_REGISTER) {
		req.request = 0;
		req.session = 0;
	} else {
		req.request = ++W.next_request;
		req.session = 1;
	}
	req.code = op == FRAME_OP_NON_REPLICATED ? code : 0;
	req.timestamp = W.next_request * 7;

	/* The header as a transport would have decoded it. */
	uint8_t hdr[FRAME_HEADER_SIZE];
	struct frame_request dec;
	frame_request_encode(hdr, &req);
	CHECK(frame_request_decode(hdr, &dec) == FRAME_OK);

	CHECK(c->qlen < 8);
	c->q[(c->qhead + c->qlen) % 8] = (struct expect){client, dec.request, op, dec.code};
	c->qlen++;
	/* An exact-size copy, so that ASan sees any read past the body. */
	uint8_t *copy = malloc(len ? len : 1);
	CHECK(copy != NULL);
	if (len)
		memcpy(copy, body, len);
	srv_session_frame(c->ss, &dec, copy, len);
	free(copy);
}

/* Runs the loop until the client has every reply (deadline: abort) and nothing is in flight. */
static void pump(struct fz_client *c)
{
	uint64_t deadline = now_ms() + REPLY_DEADLINE_MS;
	for (int rounds = 0;; rounds++) {
		run_dones();
		flusher_drain(W.fl);
		uv_run(&W.loop, UV_RUN_NOWAIT);
		run_dones();
		if ((c == NULL || c->qlen == 0) && W.n_dones == 0 && rounds >= 1)
			break;
		if (now_ms() > deadline) {
			fprintf(stderr, "fuzz_server: a request got no reply within %d ms\n", REPLY_DEADLINE_MS);
			abort();
		}
		if (rounds > 2)
			usleep(100);
	}
}

static struct srv_session *open_session(struct fz_client *c)
{
	memset(c, 0, sizeof(*c));
	char peer[32];
	uint32_t id = ++W.next_conn;
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", 10000 + id % 50000);
	c->ss = srv_session_open(W.srv, SRV_TCP, peer, id, fz_send, c);
	CHECK(c->ss != NULL);
	return c->ss;
}

static void close_session(struct fz_client *c)
{
	srv_session_close(c->ss);
	c->ss = NULL;
	free(c->last);
	c->last = NULL;
}

/* A request built by the harness itself; returns its status (reply status or eviction reason). */
static uint32_t call(struct fz_client *c, struct frame_u128 client, uint8_t op, uint32_t code, struct wire_buf *b)
{
	CHECK(wire_buf_error(b) == 0);
	c->capture = true;
	send_frame(c, client, op, code, b->p, b->len);
	pump(c);
	c->capture = false;
	wire_buf_reset(b);
	return c->last_status;
}

/* A committed rejection code of the last (result-framed) reply, or 0. */
static uint32_t last_result(const struct fz_client *c)
{
	uint32_t err = 0;
	size_t off;
	if (c->last_command == FRAME_CMD_REPLY && c->last_status == 0 && c->last != NULL &&
	    frame_result_split(c->last, c->last_len, &err, &off) != FRAME_OK)
		return UINT32_MAX;
	return err;
}

static void put_version(struct wire_buf *b)
{
	struct wire_version_info vi = {FRAME_PROTOCOL_VERSION, {(const uint8_t *)"fuzz", 4},
				       {(const uint8_t *)"1.0", 3}};
	wire_put_version_info(b, &vi);
}

/* Logs a session in with the fixture token (cheap), else with the password. Returns true when bound. */
static bool login(struct fz_client *c, bool password_too)
{
	struct wire_buf b;
	wire_buf_init(&b);
	struct frame_u128 id = new_client_id();
	if (W.token[0] != '\0') {
		put_version(&b);
		wire_put_str8(&b, W.token, strlen(W.token));
		wire_put_u32(&b, 0);
		if (call(c, id, FRAME_OP_REGISTER, 0, &b) == 0 && c->last_command == FRAME_CMD_REPLY) {
			wire_buf_free(&b);
			return true;
		}
	}
	bool ok = false;
	if (password_too) {
		put_version(&b);
		wire_put_name(&b, ROOT_USER, strlen(ROOT_USER));
		wire_put_str8(&b, ROOT_PASSWORD, strlen(ROOT_PASSWORD));
		wire_put_u32(&b, 0);
		ok = call(c, id, FRAME_OP_REGISTER, 0, &b) == 0 && c->last_command == FRAME_CMD_REPLY;
	}
	wire_buf_free(&b);
	return ok;
}

/* ---- The world ---- */

static void rm_rf(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_server: could not remove %s\n", dir);
}

static void world_down(void)
{
	if (!W.ready)
		return;
	pump(&W.main);
	close_session(&W.main);
	pump(NULL);
	srv_free(W.srv);
	W.srv = NULL;
	run_dones();
	flusher_close(W.fl);
	pio_destroy(W.pio);
	uv_run(&W.loop, UV_RUN_DEFAULT);
	CHECK(uv_loop_close(&W.loop) == 0);
	config_free(&W.cfg);
	rm_rf(W.dir);
	W.ready = false;
}

static void at_exit(void)
{
	world_down();
	fprintf(stderr,
		"fuzz_server: %u inputs, %u worlds; replies: %llu ok, %llu denied (status), %llu rejected (result), "
		"%llu evictions\n",
		W.inputs, W.worlds, (unsigned long long)W.n_ok, (unsigned long long)W.n_denied,
		(unsigned long long)W.n_rejected, (unsigned long long)W.n_evicted);
	free(W.dones);
	free(W.scratch);
}

static void world_up(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(W.dir, sizeof(W.dir), "%s/galgo-fuzz-server-XXXXXX", base);
	CHECK(mkdtemp(W.dir) != NULL);
	CHECK(uv_loop_init(&W.loop) == 0);
	W.pio = pio_real_new();
	CHECK(W.pio != NULL);
	CHECK(flusher_new(&W.loop, true, &W.fl) == 0);
	CHECK(config_defaults(&W.cfg) == 0);
	free(W.cfg.node.data_dir);
	W.cfg.node.data_dir = strdup(W.dir);
	free(W.cfg.root.password);
	W.cfg.root.password = strdup(ROOT_PASSWORD);
	CHECK(W.cfg.node.data_dir != NULL && W.cfg.root.password != NULL);
	W.cfg.storage.segment_size = 1u << 20;
	W.cfg.storage.interval_ms = 1;
	CHECK(srv_new(&W.loop, &W.cfg, W.pio, W.fl, &W.srv) == 0);
	W.token[0] = '\0';

	struct fz_client *m = &W.main;
	open_session(m);
	CHECK(login(m, true));
	struct frame_u128 id = new_client_id();
	struct wire_buf b;
	wire_buf_init(&b);

	wire_put_name(&b, "fuzz", 4); /* CreateStream "fuzz": id 0 */
	CHECK(call(m, id, FRAME_OP_CREATE_STREAM, 0, &b) == 0 && last_result(m) == 0);
	struct wire_id s0 = wire_id_num(0), t0 = wire_id_num(0);
	wire_put_id(&b, &s0); /* CreateTopic "t" with 2 partitions: id 0 */
	wire_put_u32(&b, 2);
	wire_put_name(&b, "t", 1);
	CHECK(call(m, id, FRAME_OP_CREATE_TOPIC, 0, &b) == 0 && last_result(m) == 0);
	wire_put_id(&b, &s0); /* CreateTopic "d" with 2 partitions and a dedup window of 16: id 1 */
	wire_put_u32(&b, 2);
	wire_put_name(&b, "d", 1);
	uint8_t window[8];
	record_put64(window, 16);
	wire_put_option(&b, "dedup_window", 12, WIRE_KIND_UINT64, window, 8);
	CHECK(call(m, id, FRAME_OP_CREATE_TOPIC, 0, &b) == 0 && last_result(m) == 0);
	wire_put_id(&b, &s0); /* CreateConsumerGroup "g": id 0, joined */
	wire_put_id(&b, &t0);
	wire_put_name(&b, "g", 1);
	CHECK(call(m, id, FRAME_OP_CREATE_CONSUMER_GROUP, 0, &b) == 0 && last_result(m) == 0);
	struct wire_id g0 = wire_id_num(0);
	wire_put_id(&b, &s0);
	wire_put_id(&b, &t0);
	wire_put_id(&b, &g0);
	CHECK(call(m, id, FRAME_OP_JOIN_CONSUMER_GROUP, 0, &b) == 0 && last_result(m) == 0);
	for (uint32_t k = 0; k < 4; k++) { /* 3 messages in each partition of both topics */
		uint32_t pid = k % 2;
		struct wire_id tk = wire_id_num(k / 2);
		const void *pl[3] = {"one", "two", "three"};
		const uint32_t pll[3] = {3, 3, 5};
		uint8_t batch[1024];
		size_t blen = batch_build(batch, sizeof(batch), 3, pl, pll, NULL, NULL, 1000);
		CHECK(blen > 0);
		struct wire_partitioning part = {.kind = WIRE_PART_PARTITION_ID, .partition_id = pid};
		size_t at = wire_put_reserve(&b, 4);
		wire_put_id(&b, &s0);
		wire_put_id(&b, &tk);
		wire_put_partitioning(&b, &part);
		wire_put_u32(&b, 3);
		wire_patch_u32(&b, at, (uint32_t)(b.len - at - 4));
		wire_put_bytes(&b, batch, blen);
		CHECK(call(m, id, FRAME_OP_SEND_MESSAGES, 0, &b) == 0);
	}
	wire_put_name(&b, FIXTURE_PAT, strlen(FIXTURE_PAT)); /* the token for cheap logins */
	wire_put_u64(&b, 0);
	CHECK(call(m, id, FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN, 0, &b) == 0 && last_result(m) == 0);
	CHECK(m->last_len >= 5 && m->last[4] > 0 && (size_t)m->last[4] + 5 <= m->last_len);
	memcpy(W.token, m->last + 5, m->last[4]);
	W.token[m->last[4]] = '\0';
	wire_buf_free(&b);
	free(m->last);
	m->last = NULL;
	W.ready = true;
	W.worlds++;
}

/* Rebuilds the world now and then, when it has grown, or when root can no longer log in. */
static void world_check(void)
{
	if (W.ready && (W.inputs % RESET_EVERY == 0 || srv_partition_count(W.srv) > MAX_PARTITIONS))
		world_down();
	if (!W.ready)
		world_up();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	glog_set_level(GLOG_ERROR);
	W.verbose = getenv("FUZZ_SERVER_VERBOSE") != NULL;
	world_up();
	atexit(at_exit);
	return 0;
}

/* Folds a partition count between 17 and 1000 at `off` into 1..16. */
static void fold_count(uint8_t *body, size_t len, size_t off)
{
	if (off > len || len - off < 4)
		return;
	uint32_t n = record_le32(body + off);
	if (n > 16 && n <= 1000)
		record_put32(body + off, 1 + n % 16);
}

/* The offset of the field after `ids` identifiers at the start of a body, or SIZE_MAX. */
static size_t after_ids(const uint8_t *body, size_t len, int ids)
{
	struct wire_rd r;
	struct wire_id id;
	wire_rd_init(&r, body, len);
	for (int i = 0; i < ids; i++)
		wire_get_id(&r, &id);
	return wire_rd_error(&r) == 0 ? r.pos : SIZE_MAX;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1u << 20))
		return 0;
	W.inputs++;
	world_check();

	unsigned idx = data[0] & 0x7f;
	bool unbound = idx >= N_OPS;
	bool drop = (data[0] & 0x80) != 0;
	const struct fz_op *o = &ops[unbound ? (idx - N_OPS) % N_OPS : idx];
	bool slow = o->op == FRAME_OP_CREATE_USER || o->op == FRAME_OP_CHANGE_PASSWORD ||
		    (o->op == FRAME_OP_REGISTER && unbound && !drop);
	if (slow && ++W.slow % 64 != 0)
		return 0;

	size_t len = size - 1;
	uint8_t *body = malloc(len ? len : 1);
	CHECK(body != NULL);
	memcpy(body, data + 1, len);
	if (o->op == FRAME_OP_CREATE_TOPIC)
		fold_count(body, len, after_ids(body, len, 1));
	else if (o->op == FRAME_OP_CREATE_PARTITIONS)
		fold_count(body, len, after_ids(body, len, 2));

	if (drop || unbound) {
		struct fz_client t;
		open_session(&t);
		if (drop)
			login(&t, false);
		send_frame(&t, new_client_id(), o->op, o->code, body, len);
		if (drop) {
			t.qlen = 0; /* replies not sent yet are dropped with the session */
			close_session(&t);
			pump(NULL);
		} else {
			pump(&t);
			close_session(&t);
			pump(NULL);
		}
	} else {
		send_frame(&W.main, new_client_id(), o->op, o->code, body, len);
		pump(&W.main);
	}
	free(body);

	/* Retention now and then (galgod ticks once a second), with whatever expiry and size options were set. */
	if (W.inputs % 16 == 0) {
		srv_tick(W.srv);
		pump(NULL);
	}

	/* A Logout leaves the main session unbound: log it in again. */
	if (o->op == FRAME_OP_LOGOUT && !unbound && !drop && !login(&W.main, true))
		world_down(); /* root was renamed, deactivated or its password changed: start over */
	return 0;
}
