/*
 * Bad input against the real galgod: each test starts galgod (GALGO_BUILD_DIR "/galgod") on a temporary
 * data directory and 127.0.0.1:0, talks to it over raw TCP sockets with frames built by
 * proto/frame and proto/wire, sends one kind of bad input and checks:
 *   - the reply the reference specifies (§1.5: a status denial, a result-section rejection or an
 *     eviction reason; or the connection closed, for frame sizes out of range);
 *   - that the server still serves another connection normally (login, ping, get streams);
 *   - that the state is unchanged (GetStreams returns the same bytes before and after; for the message
 *     plane, a poll returns the same messages);
 * and finally that galgod exits 0 on SIGTERM (under ASan/UBSan that is also "no error, no leak").
 *
 * Every wait is bounded (IO_TIMEOUT_MS, CHILD_TIMEOUT_MS); the fini hook kills a galgod a failed test
 * left behind.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "partition/record.h"
#include "proto/frame.h"
#include "proto/wire.h"

#define GALGOD GALGO_BUILD_DIR "/galgod"
#define CHILD_TIMEOUT_MS 20000
#define IO_TIMEOUT_MS 10000

/* Iggy error codes the tests expect (reference §1.5, §9). */
enum {
	E_INVALID_COMMAND = 3,
	E_INVALID_FORMAT = 4,
	E_RESOURCE_NOT_FOUND = 20,
	E_UNAUTHENTICATED = 40,
	E_UNAUTHORIZED = 41,
	E_STREAM_NOT_FOUND = 1009,
	E_STREAM_NAME_EXISTS = 1012,
	E_PARTITION_NOT_FOUND = 3007,
	E_INVALID_MESSAGE_CHECKSUM = 4027,
	E_INVALID_BATCH_CHECKSUM = 4039,
	E_INVALID_OFFSET = 4100,
};

#include "galgod_child.h"

static void setup(void)
{
	child_setup("/tmp/galgo-test-badinput-");
	galgod_start_with(NULL);
}

TestSuite(badinput, .init = setup, .fini = child_teardown, .timeout = 60);

/* ---- A raw client ---- */

struct conn {
	int fd;
	struct frame_u128 client;
	uint64_t session;
	uint64_t request;
};

/* A reply as read: the header fields, and the body (malloc'd). */
struct reply {
	uint8_t command;     /* 8 Reply, 13 Eviction, 0: the connection was closed */
	struct frame_reply rep;
	struct frame_eviction ev;
	uint8_t *body;
	size_t len;
};

static void reply_free(struct reply *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static uint64_t client_seq;

static struct conn conn_open(void)
{
	struct conn c = {.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
	cr_assert_geq(c.fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)G.port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000};
	setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int one = 1;
	setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	cr_assert_eq(connect(c.fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
	c.client = (struct frame_u128){.lo = ++client_seq * 0x9e3779b97f4a7c15ull, .hi = (uint64_t)getpid()};
	return c;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static void send_all(struct conn *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		cr_assert_gt(w, 0, "send: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
}

/* Reads exactly n bytes. Returns n, or 0 when the peer closed (or reset) the connection first. */
static size_t recv_exact(struct conn *c, void *p, size_t n)
{
	uint8_t *b = p;
	size_t got = 0;
	uint64_t end = now_ms() + IO_TIMEOUT_MS;
	while (got < n) {
		struct pollfd pf = {.fd = c->fd, .events = POLLIN};
		int left = (int)(end > now_ms() ? end - now_ms() : 0);
		int pr = poll(&pf, 1, left);
		cr_assert(pr > 0, "no reply within %d ms", IO_TIMEOUT_MS);
		ssize_t r = recv(c->fd, b + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return 0;
		cr_assert_gt(r, 0, "recv: %s", strerror(errno));
		got += (size_t)r;
	}
	return n;
}

/* Reads one frame; command 0 when the connection was closed instead. The header must decode. */
static struct reply read_reply(struct conn *c)
{
	struct reply r = {0};
	uint8_t hdr[FRAME_HEADER_SIZE];
	if (recv_exact(c, hdr, sizeof(hdr)) == 0)
		return r;
	r.command = hdr[FRAME_OFF_COMMAND];
	if (r.command == FRAME_CMD_EVICTION) {
		cr_assert_eq(frame_eviction_decode(hdr, &r.ev), FRAME_OK, "a malformed eviction");
		cr_assert(frame_u128_eq(r.ev.client, c->client), "the eviction names another client");
		return r;
	}
	cr_assert_eq(r.command, FRAME_CMD_REPLY, "a frame with command %u", r.command);
	cr_assert_eq(frame_reply_decode(hdr, &r.rep), FRAME_OK, "a malformed reply header");
	r.len = r.rep.size - FRAME_HEADER_SIZE;
	r.body = malloc(r.len ? r.len : 1);
	cr_assert_not_null(r.body);
	cr_assert_eq(recv_exact(c, r.body, r.len), r.len, "the connection closed inside a reply");
	if (r.rep.status != 0)
		cr_assert_eq(r.len, 0, "a status denial (%u) with a body", r.rep.status);
	return r;
}

/* Encodes a request header with the connection's client id and session. */
static void make_header(struct conn *c, uint8_t hdr[FRAME_HEADER_SIZE], uint8_t op, uint32_t code, size_t body_len,
			uint64_t *request_out)
{
	struct frame_request req = {0};
	req.size = (uint32_t)(FRAME_HEADER_SIZE + body_len);
	req.client = c->client;
	req.operation = op;
	req.code = op == FRAME_OP_NON_REPLICATED ? code : 0;
	if (op != FRAME_OP_REGISTER) {
		req.session = c->session ? c->session : (op == FRAME_OP_NON_REPLICATED ? 0 : 1);
		req.request = ++c->request;
	}
	frame_request_encode(hdr, &req);
	if (request_out != NULL)
		*request_out = req.request;
}

/* Writes one request (header + body) without reading. */
static uint64_t put_request(struct conn *c, uint8_t op, uint32_t code, const void *body, size_t len)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	uint64_t request;
	make_header(c, hdr, op, code, len, &request);
	send_all(c, hdr, sizeof(hdr));
	if (len > 0)
		send_all(c, body, len);
	return request;
}

/* One request and its reply; the reply must answer it (request number and operation echoed). */
static struct reply call(struct conn *c, uint8_t op, uint32_t code, const void *body, size_t len)
{
	uint64_t request = put_request(c, op, code, body, len);
	struct reply r = read_reply(c);
	if (r.command == 0) {
		child_pump(200); /* galgod's last words, if it died */
		cr_assert_fail("the connection was closed instead of a reply; galgod output:\n%s", child_output());
	}
	if (r.command == FRAME_CMD_REPLY) {
		cr_assert_eq(r.rep.request, request);
		cr_assert(r.rep.operation == op || (op == FRAME_OP_DELETE_SEGMENTS && r.rep.operation == 68));
	}
	return r;
}

static struct reply call_buf(struct conn *c, uint8_t op, uint32_t code, struct wire_buf *b)
{
	cr_assert_eq(wire_buf_error(b), 0);
	struct reply r = call(c, op, code, b->p, b->len);
	wire_buf_reset(b);
	return r;
}

/*
 * The error a client sees in a reply, whichever channel carries it: the status, else (for a
 * result-framed operation) the first result; 0 for success. An eviction is not an error code here.
 */
static uint32_t error_of(const struct reply *r)
{
	cr_assert_eq(r->command, FRAME_CMD_REPLY, "expected a reply, got command %u (eviction reason %u)", r->command,
		     r->ev.reason);
	if (r->rep.status != 0)
		return r->rep.status;
	if (!frame_op_is_result_framed(r->rep.operation, r->len > 0))
		return 0;
	uint32_t err;
	size_t off;
	cr_assert_eq(frame_result_split(r->body, r->len, &err, &off), FRAME_OK, "a result section too short");
	if (err != 0)
		cr_assert_eq(r->len, FRAME_RESULT_REJECT_SIZE);
	return err;
}

/* The payload after the result section of a successful result-framed reply. */
static const uint8_t *payload_of(const struct reply *r, size_t *len)
{
	cr_assert_eq(error_of(r), 0);
	*len = r->len - 4;
	return r->body + 4;
}

#define ASSERT_ERROR(r, code)                                                                            \
	do {                                                                                             \
		struct reply *r_ = &(r);                                                                 \
		uint32_t e_ = error_of(r_);                                                              \
		cr_assert_eq(e_, (uint32_t)(code), "expected error %u, got %u", (unsigned)(code), e_);   \
	} while (0)

#define ASSERT_STATUS(r, code)                                                                           \
	do {                                                                                             \
		cr_assert_eq((r).command, FRAME_CMD_REPLY);                                              \
		cr_assert_eq((r).rep.status, (uint32_t)(code), "expected status %u, got %u", (unsigned)(code), \
			     (r).rep.status);                                                            \
	} while (0)

#define ASSERT_EVICTION(r, why)                                                                          \
	do {                                                                                             \
		cr_assert_eq((r).command, FRAME_CMD_EVICTION, "expected eviction %u, got command %u (status %u)", \
			     (unsigned)(why), (r).command, (r).rep.status);                              \
		cr_assert_eq((r).ev.reason, (why));                                                      \
	} while (0)

/* Asserts that the server closes the connection (reads EOF or a reset) within IO_TIMEOUT_MS. */
static void assert_closed(struct conn *c)
{
	uint8_t b[512];
	uint64_t end = now_ms() + IO_TIMEOUT_MS;
	for (;;) {
		struct pollfd pf = {.fd = c->fd, .events = POLLIN};
		int left = (int)(end > now_ms() ? end - now_ms() : 0);
		cr_assert(poll(&pf, 1, left) > 0, "the connection is still open after %d ms", IO_TIMEOUT_MS);
		ssize_t r = recv(c->fd, b, sizeof(b), 0);
		if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return;
		cr_assert(r > 0 || errno == EINTR, "recv: %s", strerror(errno));
		cr_assert(r <= 0, "the server sent %zd bytes instead of closing", r);
	}
}

/* ---- Requests ---- */

static void put_version(struct wire_buf *b, uint32_t protocol)
{
	struct wire_version_info vi = {protocol, {(const uint8_t *)"badinput", 8}, {(const uint8_t *)"1.0.0", 5}};
	wire_put_version_info(b, &vi);
}

/* A LoginUser body of a client of `protocol`. */
static void put_login_v(struct wire_buf *b, uint32_t protocol, const char *user, const char *pw)
{
	put_version(b, protocol);
	wire_put_name(b, user, strlen(user));
	wire_put_str8(b, pw, strlen(pw));
	wire_put_u32(b, 0);
}

static void put_login(struct wire_buf *b, const char *user, const char *pw)
{
	put_login_v(b, FRAME_PROTOCOL_VERSION, user, pw);
}

/* Logs in (Register) and keeps the session. */
static void login_as(struct conn *c, const char *user, const char *pw)
{
	struct wire_buf b;
	wire_buf_init(&b);
	put_login(&b, user, pw);
	struct reply r = call_buf(c, FRAME_OP_REGISTER, 0, &b);
	size_t n;
	const uint8_t *p = payload_of(&r, &n);
	cr_assert_geq(n, 16);
	c->session = record_le64(p + 4);
	cr_assert_gt(c->session, 0);
	reply_free(&r);
	wire_buf_free(&b);
}

static struct conn root_conn(void)
{
	struct conn c = conn_open();
	login_as(&c, "iggy", "iggy");
	return c;
}

static void ping_ok(struct conn *c)
{
	struct reply r = call(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_PING, NULL, 0);
	ASSERT_STATUS(r, 0);
	cr_assert_eq(r.len, 0);
	reply_free(&r);
}

/* GetStreams as root: the bytes of the reply body (a snapshot of the metadata). */
static struct reply get_streams(struct conn *c)
{
	struct reply r = call(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_STREAMS, NULL, 0);
	ASSERT_STATUS(r, 0);
	return r;
}

/* Whether two replies carry the same body. */
static void assert_same_body(const struct reply *a, const struct reply *b, const char *what)
{
	cr_assert(a->len == b->len && memcmp(a->body, b->body, a->len) == 0, "%s changed (%zu bytes, then %zu)", what,
		  a->len, b->len);
}

/* A metadata snapshot taken on its own connection. */
static struct reply snapshot(void)
{
	struct conn c = root_conn();
	struct reply r = get_streams(&c);
	conn_close(&c);
	return r;
}

/*
 * The server still serves a new connection normally (login, ping, get streams) and its metadata is
 * what it was before the bad input.
 */
static void assert_healthy_and_unchanged(const struct reply *before)
{
	struct conn c = root_conn();
	ping_ok(&c);
	struct reply after = get_streams(&c);
	assert_same_body(before, &after, "GetStreams");
	reply_free(&after);
	conn_close(&c);
}

static uint32_t create_stream(struct conn *c, const char *name)
{
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_name(&b, name, strlen(name));
	struct reply r = call_buf(c, FRAME_OP_CREATE_STREAM, 0, &b);
	size_t n;
	const uint8_t *p = payload_of(&r, &n);
	cr_assert_geq(n, 4);
	uint32_t id = record_le32(p);
	reply_free(&r);
	wire_buf_free(&b);
	return id;
}

static uint32_t create_topic(struct conn *c, uint32_t stream, const char *name, uint32_t partitions)
{
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id sid = wire_id_num(stream);
	wire_put_id(&b, &sid);
	wire_put_u32(&b, partitions);
	wire_put_name(&b, name, strlen(name));
	struct reply r = call_buf(c, FRAME_OP_CREATE_TOPIC, 0, &b);
	size_t n;
	const uint8_t *p = payload_of(&r, &n);
	cr_assert_geq(n, 4);
	uint32_t id = record_le32(p);
	reply_free(&r);
	wire_buf_free(&b);
	return id;
}

/* A producer batch of n messages "<tag>-<i>" (ids from id0). Returns its length in out. */
static size_t make_batch(uint8_t *out, size_t cap, uint32_t n, const char *tag)
{
	char text[16][32];
	const void *pl[16];
	uint32_t pll[16];
	cr_assert_leq(n, 16);
	for (uint32_t i = 0; i < n; i++) {
		snprintf(text[i], sizeof(text[i]), "%s-%u", tag, i);
		pl[i] = text[i];
		pll[i] = (uint32_t)strlen(text[i]);
	}
	size_t len = batch_build(out, cap, n, pl, pll, NULL, NULL, 1000);
	cr_assert_gt(len, 0);
	/* Distinct message ids per tag, so that no id-based deduplication can interfere. */
	uint64_t salt = XXH3_64bits(tag, strlen(tag));
	size_t at = BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *f = out + at;
		record_put64(f + 16, salt);
		uint32_t flen = BATCH_FRAME_HEADER_SIZE + record_le32(f + 36) + record_le32(f + 32);
		record_put64(f, XXH3_64bits(f + 8, flen - 8));
		at += flen;
	}
	record_put64(out + 40, batch_checksum(out));
	cr_assert_eq(batch_verify(out, len, true), 0);
	return len;
}

/* A SendMessages body: metadata (partition id), count, then the batch. */
static void put_send(struct wire_buf *b, uint32_t stream, uint32_t topic, uint32_t partition, uint32_t count,
		     const uint8_t *batch, size_t blen)
{
	struct wire_id sid = wire_id_num(stream), tid = wire_id_num(topic);
	struct wire_partitioning part = {.kind = WIRE_PART_PARTITION_ID, .partition_id = partition};
	size_t at = wire_put_reserve(b, 4);
	wire_put_id(b, &sid);
	wire_put_id(b, &tid);
	wire_put_partitioning(b, &part);
	wire_put_u32(b, count);
	wire_patch_u32(b, at, (uint32_t)(b->len - at - 4));
	wire_put_bytes(b, batch, blen);
}

static void send_ok(struct conn *c, uint32_t stream, uint32_t topic, uint32_t partition, uint32_t n, const char *tag)
{
	uint8_t batch[4096];
	size_t blen = make_batch(batch, sizeof(batch), n, tag);
	struct wire_buf b;
	wire_buf_init(&b);
	put_send(&b, stream, topic, partition, n, batch, blen);
	struct reply r = call_buf(c, FRAME_OP_SEND_MESSAGES, 0, &b);
	ASSERT_STATUS(r, 0);
	cr_assert_eq(r.len, 24);
	cr_assert_eq(record_le32(r.body), 1);
	reply_free(&r);
	wire_buf_free(&b);
}

/* PollMessages for a single consumer 1 from offset 0 (up to 100 messages), without auto-commit. */
static struct reply poll_all(struct conn *c, uint32_t stream, uint32_t topic, uint32_t partition)
{
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_consumer wc = {WIRE_CONSUMER_SINGLE, wire_id_num(1)};
	struct wire_id sid = wire_id_num(stream), tid = wire_id_num(topic);
	struct wire_opt_partition op = {true, partition};
	struct wire_polling strat = {WIRE_POLL_OFFSET, 0};
	wire_put_consumer(&b, &wc);
	wire_put_id(&b, &sid);
	wire_put_id(&b, &tid);
	wire_put_opt_partition(&b, &op);
	wire_put_polling(&b, &strat);
	wire_put_u32(&b, 100);
	wire_put_u8(&b, 0);
	struct reply r = call_buf(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_POLL_MESSAGES, &b);
	wire_buf_free(&b);
	return r;
}

/* Messages in a poll reply (its 16-byte prefix). */
static uint32_t poll_count(const struct reply *r)
{
	cr_assert_eq(r->rep.status, 0);
	cr_assert_geq(r->len, 16);
	return record_le32(r->body + 12);
}

/* The number of messages a poll of a partition returns from offset 0. */
static uint32_t count_in(struct conn *c, uint32_t partition)
{
	struct reply p = poll_all(c, 0, 0, partition);
	uint32_t n = poll_count(&p);
	reply_free(&p);
	return n;
}

/* Root's fixture for the message plane: stream "s" (0), topic "t" (0) with 2 partitions, 3 messages in 0. */
static void message_fixture(struct conn *c)
{
	cr_assert_eq(create_stream(c, "s"), 0);
	cr_assert_eq(create_topic(c, 0, "t", 2), 0);
	send_ok(c, 0, 0, 0, 3, "old");
}

/* ---- Framing ---- */

/* Bytes that are no frame at all (their size field is far beyond 64 MiB): the connection is closed. */
Test(badinput, garbage_bytes_close_the_connection)
{
	struct reply before = snapshot();
	struct conn c = conn_open();
	uint8_t junk[700];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(0xa5 ^ (i * 37));
	record_put32(junk + FRAME_OFF_SIZE, 0xdeadbeef);
	send_all(&c, junk, sizeof(junk));
	assert_closed(&c);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/*
 * A pre-0.9 client (legacy framing, frame.h section 8): the LoginUser that iggy-cli 0.13 sends, code 38 with
 * [username u8-len][password u8-len][version u32-len "0.10.0"][context u32-len ""], 32 bytes in all. It is
 * answered at once with the legacy error reply (status 3, no payload) and the connection is closed, not
 * left waiting for the 36 s heartbeat eviction.
 */
Test(badinput, a_legacy_framed_login_is_answered_and_closed_at_once)
{
	struct reply before = snapshot();
	struct conn c = conn_open();
	static const uint8_t login[] = {
		28, 0, 0, 0, 38, 0, 0, 0,                  /* length = 4 + 24, code 38 LoginUser */
		4, 'i', 'g', 'g', 'y', 4, 'i', 'g', 'g', 'y', /* username, password */
		6, 0, 0, 0, '0', '.', '1', '0', '.', '0',   /* client version */
		0, 0, 0, 0,                                 /* context */
	};
	cr_assert_eq(sizeof(login), 32);
	uint64_t t0 = now_ms();
	send_all(&c, login, sizeof(login));
	uint8_t rep[8];
	cr_assert_eq(recv_exact(&c, rep, sizeof(rep)), sizeof(rep), "closed without the legacy error reply");
	cr_assert_lt(now_ms() - t0, 2000, "answered after %llu ms", (unsigned long long)(now_ms() - t0));
	static const uint8_t want[8] = {3, 0, 0, 0, 0, 0, 0, 0};
	cr_assert_arr_eq(rep, want, sizeof(want), "not [status 3][length 0]");
	assert_closed(&c);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A frame of the right size whose header is garbage (not a Request) is ignored; the next ping is answered. */
Test(badinput, a_garbage_frame_of_valid_size_is_ignored)
{
	struct reply before = snapshot();
	struct conn c = conn_open();
	uint8_t junk[400];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(0x5a ^ (i * 101));
	record_put32(junk + FRAME_OFF_SIZE, sizeof(junk));
	junk[FRAME_OFF_COMMAND] = 77;
	send_all(&c, junk, sizeof(junk));
	/* A Request header that breaks the rules (client id 0) is dropped too. */
	uint8_t hdr[FRAME_HEADER_SIZE];
	struct frame_request bad = {.size = FRAME_HEADER_SIZE, .operation = FRAME_OP_NON_REPLICATED,
				    .code = FRAME_CODE_PING};
	frame_request_encode(hdr, &bad);
	send_all(&c, hdr, sizeof(hdr));
	ping_ok(&c); /* the first reply on the connection answers this ping */
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A header announcing more than 64 MiB: the connection is closed without a reply. */
Test(badinput, a_frame_larger_than_64_mib_closes_the_connection)
{
	struct reply before = snapshot();
	struct conn c = root_conn();
	uint8_t hdr[FRAME_HEADER_SIZE];
	make_header(&c, hdr, FRAME_OP_NON_REPLICATED, FRAME_CODE_PING, 0, NULL);
	record_put32(hdr + FRAME_OFF_SIZE, FRAME_MAX_SIZE + 1);
	send_all(&c, hdr, sizeof(hdr));
	uint8_t more[4096] = {0};
	(void)send(c.fd, more, sizeof(more), MSG_NOSIGNAL); /* may fail: the server is closing */
	assert_closed(&c);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A header announcing fewer than 256 bytes: the connection is closed without a reply. */
Test(badinput, a_frame_smaller_than_256_bytes_closes_the_connection)
{
	struct reply before = snapshot();
	struct conn c = root_conn();
	uint8_t hdr[FRAME_HEADER_SIZE];
	make_header(&c, hdr, FRAME_OP_NON_REPLICATED, FRAME_CODE_PING, 0, NULL);
	record_put32(hdr + FRAME_OFF_SIZE, 100);
	send_all(&c, hdr, sizeof(hdr));
	assert_closed(&c);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A frame cut short (a CreateStream announcing 1000 bytes, 40 sent) and then the close: nothing happens. */
Test(badinput, a_truncated_frame_then_close_changes_nothing)
{
	struct reply before = snapshot();
	struct conn c = root_conn();
	uint8_t frame[FRAME_HEADER_SIZE + 40] = {0};
	make_header(&c, frame, FRAME_OP_CREATE_STREAM, 0, 1000 - FRAME_HEADER_SIZE, NULL);
	frame[FRAME_HEADER_SIZE] = 9;
	memcpy(frame + FRAME_HEADER_SIZE + 1, "truncated", 9);
	send_all(&c, frame, sizeof(frame));
	usleep(100 * 1000);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* ---- Sessions and authentication ---- */

/* An unknown NonReplicated code (60000) gets status 3 (InvalidCommand). */
Test(badinput, an_unknown_code_gets_status_3)
{
	struct reply before = snapshot();
	struct conn c = root_conn();
	struct reply r = call(&c, FRAME_OP_NON_REPLICATED, 60000, "xyz", 3);
	ASSERT_STATUS(r, E_INVALID_COMMAND);
	reply_free(&r);
	ping_ok(&c);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A replicated operation (CreateStream) before login gets Eviction(1 NoSession) and creates nothing. */
Test(badinput, a_write_before_login_gets_eviction_1)
{
	struct reply before = snapshot();
	struct conn c = conn_open();
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_name(&b, "sneaky", 6);
	struct reply r = call_buf(&c, FRAME_OP_CREATE_STREAM, 0, &b);
	ASSERT_EVICTION(r, FRAME_EVICT_NO_SESSION);
	reply_free(&r);
	ping_ok(&c); /* the connection stays open */
	wire_buf_free(&b);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A read (GetStreams) before login gets status 40 (Unauthenticated). */
Test(badinput, a_read_before_login_gets_status_40)
{
	struct reply before = snapshot();
	struct conn c = conn_open();
	struct reply r = call(&c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_STREAMS, NULL, 0);
	ASSERT_STATUS(r, E_UNAUTHENTICATED);
	reply_free(&r);
	ping_ok(&c);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A login with a wrong password gets Eviction(9); a retry on the same socket with the right one works. */
Test(badinput, a_wrong_password_gets_eviction_9)
{
	struct reply before = snapshot();
	struct conn c = conn_open();
	struct wire_buf b;
	wire_buf_init(&b);
	put_login(&b, "iggy", "not-the-password");
	struct reply r = call_buf(&c, FRAME_OP_REGISTER, 0, &b);
	ASSERT_EVICTION(r, FRAME_EVICT_INVALID_CREDENTIALS);
	reply_free(&r);
	/* Still not logged in. */
	r = call(&c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_STREAMS, NULL, 0);
	ASSERT_STATUS(r, E_UNAUTHENTICATED);
	reply_free(&r);
	login_as(&c, "iggy", "iggy");
	r = get_streams(&c);
	assert_same_body(&before, &r, "GetStreams");
	reply_free(&r);
	wire_buf_free(&b);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A Register body that is not a login (too short, then a bad sdk name length) gets Eviction(15). */
Test(badinput, a_malformed_login_gets_eviction_15)
{
	struct reply before = snapshot();
	struct conn c = conn_open();
	struct reply r = call(&c, FRAME_OP_REGISTER, 0, "\x00\x2c", 2);
	ASSERT_EVICTION(r, FRAME_EVICT_MALFORMED_LOGIN);
	reply_free(&r);
	uint8_t body[16] = {0};
	record_put32(body, FRAME_PROTOCOL_VERSION);
	body[4] = 200; /* sdk name of 200 bytes, 11 present */
	r = call(&c, FRAME_OP_REGISTER, 0, body, sizeof(body));
	ASSERT_EVICTION(r, FRAME_EVICT_MALFORMED_LOGIN);
	reply_free(&r);
	r = call(&c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_STREAMS, NULL, 0);
	ASSERT_STATUS(r, E_UNAUTHENTICATED);
	reply_free(&r);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A request_checksum that does not match the body gets status 4 (InvalidFormat); nothing is created. */
Test(badinput, a_request_checksum_mismatch_gets_status_4)
{
	struct reply before = snapshot();
	struct conn c = root_conn();
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_name(&b, "checked", 7);
	struct frame_request req = {.size = (uint32_t)(FRAME_HEADER_SIZE + b.len), .client = c.client,
				    .operation = FRAME_OP_CREATE_STREAM, .session = c.session,
				    .request = ++c.request};
	frame_request_stamp(&req, b.p, b.len);
	req.request_checksum.lo ^= 1; /* the checksum of other bytes */
	uint8_t hdr[FRAME_HEADER_SIZE];
	frame_request_encode(hdr, &req);
	send_all(&c, hdr, sizeof(hdr));
	send_all(&c, b.p, b.len);
	struct reply r = read_reply(&c);
	ASSERT_STATUS(r, E_INVALID_FORMAT);
	cr_assert_eq(r.rep.request, req.request);
	reply_free(&r);
	/* A correctly stamped request is accepted (so the denial was about the checksum). */
	req = (struct frame_request){.size = FRAME_HEADER_SIZE, .client = c.client,
				     .operation = FRAME_OP_NON_REPLICATED, .code = FRAME_CODE_PING,
				     .session = c.session, .request = c.request};
	frame_request_stamp(&req, NULL, 0);
	cr_assert(!frame_u128_is_zero(req.request_checksum));
	frame_request_encode(hdr, &req);
	send_all(&c, hdr, sizeof(hdr));
	r = read_reply(&c);
	ASSERT_STATUS(r, 0);
	reply_free(&r);
	wire_buf_free(&b);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* ---- Metadata ---- */

/* CreateStream with an empty name, a name longer than its body, or trailing bytes: an error, nothing created. */
Test(badinput, create_stream_with_a_bad_name_or_trailing_bytes_creates_nothing)
{
	struct reply before = snapshot();
	struct conn c = root_conn();
	static const struct {
		const char *what;
		const char *body;
		size_t len;
	} cases[] = {
		{"an empty body", "", 0},
		{"an empty name", "\x00", 1},
		{"a name longer than the body", "\xc8short", 6},
		{"a name that is not UTF-8", "\x03\xff\xfe\xfd", 4},
		{"trailing bytes", "\x04good\x01\x02\x03", 8},
		{"a trailing byte", "\x04good\x00", 6},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct reply r = call(&c, FRAME_OP_CREATE_STREAM, 0, cases[i].body, cases[i].len);
		uint32_t err = error_of(&r);
		cr_assert_neq(err, 0, "CreateStream with %s succeeded", cases[i].what);
		cr_assert(r.rep.status == 0 || r.rep.status == E_INVALID_COMMAND,
			  "CreateStream with %s: status %u (expected 3 or a result-section error)", cases[i].what,
			  r.rep.status);
		reply_free(&r);
	}
	ping_ok(&c);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* CreateStream with a name that exists: result-section 1012; the stream is not touched. */
Test(badinput, create_stream_with_a_duplicate_name_gets_1012)
{
	struct conn c = root_conn();
	create_stream(&c, "dup");
	struct reply before = get_streams(&c);
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_name(&b, "dup", 3);
	struct reply r = call_buf(&c, FRAME_OP_CREATE_STREAM, 0, &b);
	ASSERT_STATUS(r, 0); /* a committed rejection: result section, not status */
	ASSERT_ERROR(r, E_STREAM_NAME_EXISTS);
	reply_free(&r);
	wire_buf_free(&b);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* CreateTopic on a stream that does not exist: 1009; nothing created. */
Test(badinput, create_topic_on_a_missing_stream_gets_1009)
{
	struct conn c = root_conn();
	create_stream(&c, "only");
	struct reply before = get_streams(&c);
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id sid = wire_id_num(7);
	wire_put_id(&b, &sid);
	wire_put_u32(&b, 1);
	wire_put_name(&b, "orphan", 6);
	struct reply r = call_buf(&c, FRAME_OP_CREATE_TOPIC, 0, &b);
	ASSERT_ERROR(r, E_STREAM_NOT_FOUND);
	reply_free(&r);
	struct wire_id sname = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"nope", 4}};
	wire_put_id(&b, &sname);
	wire_put_u32(&b, 1);
	wire_put_name(&b, "orphan", 6);
	r = call_buf(&c, FRAME_OP_CREATE_TOPIC, 0, &b);
	ASSERT_ERROR(r, E_STREAM_NOT_FOUND);
	reply_free(&r);
	wire_buf_free(&b);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* ---- Message plane ---- */

/*
 * SendMessages that must be refused, each with its status: a frame checksum that does not match (4027),
 * a batch checksum that does not match (4039), messages_count that disagrees with the batch (3), a
 * stream that does not exist (20). Nothing is appended: the partition polls the same before and after.
 */
Test(badinput, bad_send_messages_are_denied_and_append_nothing)
{
	struct conn c = root_conn();
	message_fixture(&c);
	struct reply before = get_streams(&c);
	struct reply poll_before = poll_all(&c, 0, 0, 0);
	cr_assert_eq(poll_count(&poll_before), 3);

	uint8_t good[4096], bad[4096];
	size_t blen = make_batch(good, sizeof(good), 2, "new");
	struct wire_buf b;
	wire_buf_init(&b);

	/* A payload byte changed after the producer hashed it. */
	memcpy(bad, good, blen);
	bad[BATCH_HEADER_SIZE + BATCH_FRAME_HEADER_SIZE] ^= 0x20;
	put_send(&b, 0, 0, 0, 2, bad, blen);
	struct reply r = call_buf(&c, FRAME_OP_SEND_MESSAGES, 0, &b);
	ASSERT_STATUS(r, E_INVALID_MESSAGE_CHECKSUM);
	reply_free(&r);

	/* The batch checksum changed. */
	memcpy(bad, good, blen);
	bad[40] ^= 0x01;
	put_send(&b, 0, 0, 0, 2, bad, blen);
	r = call_buf(&c, FRAME_OP_SEND_MESSAGES, 0, &b);
	ASSERT_STATUS(r, E_INVALID_BATCH_CHECKSUM);
	reply_free(&r);

	/* messages_count 3 for a batch of 2. */
	put_send(&b, 0, 0, 0, 3, good, blen);
	r = call_buf(&c, FRAME_OP_SEND_MESSAGES, 0, &b);
	ASSERT_STATUS(r, E_INVALID_COMMAND);
	reply_free(&r);

	/* A stream that does not exist. */
	put_send(&b, 42, 0, 0, 2, good, blen);
	r = call_buf(&c, FRAME_OP_SEND_MESSAGES, 0, &b);
	ASSERT_STATUS(r, E_RESOURCE_NOT_FOUND);
	reply_free(&r);

	/* A partition that does not exist. */
	put_send(&b, 0, 0, 9, 2, good, blen);
	r = call_buf(&c, FRAME_OP_SEND_MESSAGES, 0, &b);
	ASSERT_STATUS(r, E_RESOURCE_NOT_FOUND);
	reply_free(&r);

	struct reply poll_after = poll_all(&c, 0, 0, 0);
	assert_same_body(&poll_before, &poll_after, "the poll of partition 0");
	reply_free(&poll_after);
	poll_after = poll_all(&c, 0, 0, 1);
	cr_assert_eq(poll_count(&poll_after), 0);
	reply_free(&poll_after);
	reply_free(&poll_before);
	wire_buf_free(&b);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* PollMessages on a partition that does not exist: status 3007. */
Test(badinput, poll_on_a_missing_partition_gets_3007)
{
	struct conn c = root_conn();
	message_fixture(&c);
	struct reply before = get_streams(&c);
	struct reply r = poll_all(&c, 0, 0, 5);
	ASSERT_STATUS(r, E_PARTITION_NOT_FOUND);
	reply_free(&r);
	r = poll_all(&c, 0, 0, 0);
	cr_assert_eq(poll_count(&r), 3);
	reply_free(&r);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* StoreConsumerOffset beyond the partition's current offset: status 4100; no offset is stored. */
Test(badinput, store_offset_beyond_the_current_offset_gets_4100)
{
	struct conn c = root_conn();
	message_fixture(&c);
	struct reply before = get_streams(&c);
	struct wire_consumer wc = {WIRE_CONSUMER_SINGLE, wire_id_num(1)};
	struct wire_id sid = wire_id_num(0), tid = wire_id_num(0);
	struct wire_opt_partition op = {true, 0};
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_consumer(&b, &wc);
	wire_put_id(&b, &sid);
	wire_put_id(&b, &tid);
	wire_put_opt_partition(&b, &op);
	wire_put_u64(&b, 3); /* offsets 0..2 exist */
	wire_put_u8(&b, 1);
	struct reply r = call_buf(&c, FRAME_OP_STORE_CONSUMER_OFFSET, 0, &b);
	ASSERT_STATUS(r, E_INVALID_OFFSET);
	reply_free(&r);
	/* Nothing stored: GetConsumerOffset answers empty. */
	wire_put_consumer(&b, &wc);
	wire_put_id(&b, &sid);
	wire_put_id(&b, &tid);
	wire_put_opt_partition(&b, &op);
	r = call_buf(&c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_CONSUMER_OFFSET, &b);
	ASSERT_STATUS(r, 0);
	cr_assert_eq(r.len, 0, "an offset was stored");
	reply_free(&r);
	/* The partition without messages refuses offset 0 too. */
	struct wire_opt_partition op1 = {true, 1};
	wire_put_consumer(&b, &wc);
	wire_put_id(&b, &sid);
	wire_put_id(&b, &tid);
	wire_put_opt_partition(&b, &op1);
	wire_put_u64(&b, 0);
	wire_put_u8(&b, 1);
	r = call_buf(&c, FRAME_OP_STORE_CONSUMER_OFFSET, 0, &b);
	ASSERT_STATUS(r, E_INVALID_OFFSET);
	reply_free(&r);
	wire_buf_free(&b);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* A user created without permissions is denied (41) for send, poll and create stream; nothing changes. */
Test(badinput, a_user_without_permissions_is_denied_with_41)
{
	struct conn root = root_conn();
	message_fixture(&root);
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_name(&b, "nobody", 6); /* CreateUser: active, no permissions, no options */
	wire_put_str8(&b, "nobody-pw", 9);
	wire_put_u8(&b, 1);
	wire_put_u8(&b, 0);
	struct reply r = call_buf(&root, FRAME_OP_CREATE_USER, 0, &b);
	ASSERT_ERROR(r, 0);
	reply_free(&r);
	struct reply before = get_streams(&root);
	struct reply poll_before = poll_all(&root, 0, 0, 0);

	struct conn u = conn_open();
	login_as(&u, "nobody", "nobody-pw");
	uint8_t batch[4096];
	size_t blen = make_batch(batch, sizeof(batch), 1, "denied");
	put_send(&b, 0, 0, 0, 1, batch, blen);
	r = call_buf(&u, FRAME_OP_SEND_MESSAGES, 0, &b);
	ASSERT_STATUS(r, E_UNAUTHORIZED);
	reply_free(&r);
	r = poll_all(&u, 0, 0, 0);
	ASSERT_STATUS(r, E_UNAUTHORIZED);
	reply_free(&r);
	wire_put_name(&b, "mine", 4);
	r = call_buf(&u, FRAME_OP_CREATE_STREAM, 0, &b);
	ASSERT_ERROR(r, E_UNAUTHORIZED);
	reply_free(&r);
	ping_ok(&u);
	conn_close(&u);

	struct reply poll_after = poll_all(&root, 0, 0, 0);
	assert_same_body(&poll_before, &poll_after, "the poll of partition 0");
	reply_free(&poll_after);
	reply_free(&poll_before);
	wire_buf_free(&b);
	conn_close(&root);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/* 100 pings, a send, 100 pings in one write: 201 replies, in order, the send's in the middle. */
Test(badinput, pipelined_pings_and_a_send_are_answered_in_order)
{
	struct conn c = root_conn();
	message_fixture(&c);
	uint8_t batch[4096];
	size_t blen = make_batch(batch, sizeof(batch), 2, "piped");
	struct wire_buf body, all;
	wire_buf_init(&body);
	wire_buf_init(&all);
	put_send(&body, 0, 0, 1, 2, batch, blen);
	uint64_t requests[201];
	uint8_t hdr[FRAME_HEADER_SIZE];
	for (int i = 0; i < 201; i++) {
		bool send = i == 100;
		make_header(&c, hdr, send ? FRAME_OP_SEND_MESSAGES : FRAME_OP_NON_REPLICATED,
			    send ? 0 : FRAME_CODE_PING, send ? body.len : 0, &requests[i]);
		wire_put_bytes(&all, hdr, sizeof(hdr));
		if (send)
			wire_put_bytes(&all, body.p, body.len);
	}
	cr_assert_eq(wire_buf_error(&all), 0);
	send_all(&c, all.p, all.len);
	for (int i = 0; i < 201; i++) {
		struct reply r = read_reply(&c);
		cr_assert_eq(r.command, FRAME_CMD_REPLY, "reply %d: command %u", i, r.command);
		cr_assert_eq(r.rep.request, requests[i], "reply %d answers request %llu, not %llu", i,
			     (unsigned long long)r.rep.request, (unsigned long long)requests[i]);
		ASSERT_STATUS(r, 0);
		if (i == 100) {
			cr_assert_eq(r.rep.operation, FRAME_OP_SEND_MESSAGES);
			cr_assert_eq(r.len, 24);
			cr_assert_eq(record_le32(r.body + 12), 1);  /* partition */
			cr_assert_eq(record_le64(r.body + 16), 0); /* base offset */
		} else {
			cr_assert_eq(r.rep.operation, FRAME_OP_NON_REPLICATED);
			cr_assert_eq(r.len, 0);
		}
		reply_free(&r);
	}
	struct reply p = poll_all(&c, 0, 0, 1);
	cr_assert_eq(poll_count(&p), 2);
	reply_free(&p);
	wire_buf_free(&body);
	wire_buf_free(&all);
	conn_close(&c);
	galgod_stop();
}

/*
 * A client that sends messages and disconnects before the reply: the server completes the append,
 * drops the reply, and goes on serving (it used to free the session under its own reply queue).
 */
Test(badinput, a_client_that_disconnects_with_a_send_in_flight)
{
	struct conn c = root_conn();
	message_fixture(&c);
	uint8_t batch[4096];
	struct wire_buf b;
	for (int i = 0; i < 5; i++) {
		char tag[16];
		snprintf(tag, sizeof(tag), "gone-%d", i);
		size_t blen = make_batch(batch, sizeof(batch), 4, tag);
		wire_buf_init(&b);
		put_send(&b, 0, 0, 1, 4, batch, blen);
		struct conn d = root_conn();
		put_request(&d, FRAME_OP_SEND_MESSAGES, 0, b.p, b.len);
		conn_close(&d);
		wire_buf_free(&b);
	}
	/* Each append completes (the messages are there); the server still answers. */
	uint64_t end = now_ms() + IO_TIMEOUT_MS;
	uint32_t n;
	while ((n = count_in(&c, 1)) < 20 && now_ms() < end)
		usleep(20 * 1000);
	cr_assert_eq(n, 20);
	ping_ok(&c);
	conn_close(&c);
	galgod_stop();
}

/*
 * A personal access token with an expiry far beyond the clock's range (u64::MAX - 1 µs; only 0 and
 * u64::MAX mean "never") must not wrap around into the past: logging in with it works.
 */
Test(badinput, a_token_with_a_huge_expiry_does_not_expire_at_once)
{
	struct conn c = root_conn();
	struct reply before = get_streams(&c);
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_name(&b, "far-future", 10);
	wire_put_u64(&b, UINT64_MAX - 1);
	struct reply r = call_buf(&c, FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN, 0, &b);
	size_t n;
	const uint8_t *p = payload_of(&r, &n);
	cr_assert(n >= 2 && (size_t)p[0] + 1 == n, "a token reply of %zu bytes", n);
	char token[256];
	memcpy(token, p + 1, p[0]);
	token[p[0]] = '\0';
	reply_free(&r);

	struct conn t = conn_open();
	put_version(&b, FRAME_PROTOCOL_VERSION);
	wire_put_str8(&b, token, strlen(token));
	wire_put_u32(&b, 0);
	r = call_buf(&t, FRAME_OP_REGISTER, 0, &b);
	cr_assert_eq(r.command, FRAME_CMD_REPLY, "login with the token: eviction %u", r.ev.reason);
	ASSERT_ERROR(r, 0);
	reply_free(&r);
	ping_ok(&t);
	conn_close(&t);
	wire_buf_free(&b);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}

/*
 * A client that sends a request and then shuts down its sending side (a half close) must still get the
 * reply, also for requests answered after a flush such as SendMessages (galgod holds the connection
 * with tcp_conn_hold while its session owes replies).
 */
Test(badinput, a_half_closed_connection_still_gets_its_late_reply)
{
	struct conn c = root_conn();
	message_fixture(&c);
	uint8_t batch[4096];
	size_t blen = make_batch(batch, sizeof(batch), 2, "half");
	struct wire_buf b;
	wire_buf_init(&b);
	put_send(&b, 0, 0, 1, 2, batch, blen);
	uint64_t request = put_request(&c, FRAME_OP_SEND_MESSAGES, 0, b.p, b.len);
	cr_assert_eq(shutdown(c.fd, SHUT_WR), 0);
	struct reply r = read_reply(&c);
	cr_assert_eq(r.command, FRAME_CMD_REPLY, "the connection was closed before the reply");
	cr_assert_eq(r.rep.request, request);
	ASSERT_STATUS(r, 0);
	reply_free(&r);
	wire_buf_free(&b);
	conn_close(&c);
	galgod_stop();
}

/*
 * A client of another protocol version (0.12, the unreleased line of iggy-cli 0.14.1-edge; or 0.10) is told
 * so at login: Eviction(14 IncompatibleProtocol) naming the versions this server speaks (0.11.0 to 0.11.x),
 * which the SDKs report as IncompatibleProtocolVersion, instead of failing on a body it cannot read. A
 * 0.11 client with another patch level is served.
 */
Test(badinput, a_login_of_another_protocol_version_gets_eviction_14_with_the_server_s_versions)
{
	struct reply before = snapshot();
	const uint32_t others[] = {FRAME_VERSION_PACK(0, 12, 0), FRAME_VERSION_PACK(0, 10, 3), FRAME_VERSION_PACK(1, 11, 0)};
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		struct conn c = conn_open();
		struct wire_buf b;
		wire_buf_init(&b);
		put_login_v(&b, others[i], "iggy", "iggy");
		struct reply r = call_buf(&c, FRAME_OP_REGISTER, 0, &b);
		ASSERT_EVICTION(r, FRAME_EVICT_INCOMPATIBLE_PROTOCOL);
		cr_assert_eq(r.ev.protocol_version, FRAME_PROTOCOL_VERSION, "version %#x", others[i]);
		cr_assert_eq(r.ev.protocol_version_min, FRAME_PROTOCOL_VERSION);
		reply_free(&r);
		wire_buf_free(&b);
		conn_close(&c);
	}
	/* 0.11.7: the same protocol line, served */
	struct conn c = conn_open();
	struct wire_buf b;
	wire_buf_init(&b);
	put_login_v(&b, FRAME_VERSION_PACK(0, 11, 7), "iggy", "iggy");
	struct reply r = call_buf(&c, FRAME_OP_REGISTER, 0, &b);
	cr_assert_eq(r.command, FRAME_CMD_REPLY, "a 0.11.7 login: command %u", r.command);
	cr_assert_eq(r.rep.status, 0);
	reply_free(&r);
	wire_buf_free(&b);
	conn_close(&c);
	assert_healthy_and_unchanged(&before);
	reply_free(&before);
	galgod_stop();
}
