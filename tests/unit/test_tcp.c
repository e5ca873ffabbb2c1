/*
 * Tests of transport/tcp against real sockets: a server on 127.0.0.1 (port 0) runs its loop in a
 * thread, and each test talks to it with plain blocking client sockets. The test handler answers
 * pings, echoes bodies, sends bulk replies, replies from file ranges and replies late (to check
 * ordering with tcp_conn_pause). Some tests run again under TLS (a server context from node/tlscert's
 * development certificate, blocking OpenSSL clients that verify it). Counters shared with the loop thread are atomics; the loop thread never
 * asserts (criterion's asserts belong to the test thread): it records the first problem in `fault`.
 */
#define _GNU_SOURCE /* usleep */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "node/tlscert.h"
#include "proto/frame.h"
#include "transport/tcp.h"
#include "proto/wire.h"

/* Test command codes (NonReplicated), besides Ping. */
#define CODE_ECHO 9001 /* reply body = request body */
#define CODE_BULK 9002 /* body [n u32]: reply with n pattern bytes */
#define CODE_FILE 9003 /* body [off u64][len u32]*: reply "<" range "<" range ... ">" from the test file */
#define CODE_LATE 9004 /* reply "late" after 50 ms, holding the connection's next frames back */

#define CLIENT_LO 0x1111222233334444ull
#define CLIENT_HI 0x5555666677778888ull

/* The server fixture: a loop in a thread. */
static struct {
	uv_loop_t loop;
	uv_async_t stop;
	uv_async_t call;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool ready;
	int start_rc;
	int close_rc;
	struct tcp_opts opts;
	struct tcp_handler h;
	struct tcp_server *srv;
	int port;
	void (*fn)(void *); /* run on the loop thread by run_on_loop */
	void *fn_arg;
	bool fn_done;
} H;

static atomic_int n_connect, n_close, n_frames, n_stale, n_done_ok, n_done_err, n_bulk;
static atomic_size_t max_queued;
static atomic_uint last_conn_id;
static char first_peer[64];
static char file_path[64];
static _Atomic(const char *) fault;
static struct tcp_conn *bulk_conn; /* loop thread only */

#define HCHECK(cond)                                                                                       \
	do {                                                                                               \
		if (!(cond)) {                                                                             \
			const char *none = NULL;                                                           \
			atomic_compare_exchange_strong(&fault, &none, #cond);                              \
		}                                                                                          \
	} while (0)

static void on_stop(uv_async_t *a)
{
	if (H.srv)
		tcp_server_close(H.srv);
	uv_close((uv_handle_t *)&H.stop, NULL);
	uv_close((uv_handle_t *)&H.call, NULL);
}

static void on_call(uv_async_t *a)
{
	pthread_mutex_lock(&H.mu);
	if (H.fn && !H.fn_done) {
		H.fn(H.fn_arg);
		H.fn_done = true;
		pthread_cond_broadcast(&H.cv);
	}
	pthread_mutex_unlock(&H.mu);
}

static void *loop_main(void *arg)
{
	uv_loop_init(&H.loop);
	uv_async_init(&H.loop, &H.stop, on_stop);
	uv_async_init(&H.loop, &H.call, on_call);
	int rc = tcp_server_new(&H.loop, &H.opts, &H.h, NULL, &H.srv);
	if (rc != 0)
		H.srv = NULL;
	pthread_mutex_lock(&H.mu);
	H.start_rc = rc;
	H.port = rc == 0 ? tcp_server_port(H.srv) : 0;
	H.ready = true;
	pthread_cond_broadcast(&H.cv);
	pthread_mutex_unlock(&H.mu);
	uv_run(&H.loop, UV_RUN_DEFAULT);
	H.close_rc = uv_loop_close(&H.loop);
	return NULL;
}

/* Runs fn(arg) on the loop thread and waits for it. */
static void run_on_loop(void (*fn)(void *), void *arg)
{
	pthread_mutex_lock(&H.mu);
	H.fn = fn;
	H.fn_arg = arg;
	H.fn_done = false;
	pthread_mutex_unlock(&H.mu);
	uv_async_send(&H.call);
	pthread_mutex_lock(&H.mu);
	while (!H.fn_done)
		pthread_cond_wait(&H.cv, &H.mu);
	H.fn = NULL;
	pthread_mutex_unlock(&H.mu);
}

/* ---- The test handler (loop thread) ---- */

static void send_done(void *arg, int status)
{
	atomic_fetch_add(status == 0 ? &n_done_ok : &n_done_err, 1);
}

/* The done of a file reply: the kernel has taken the ranges (or the connection died), so close the file. */
static void file_done(void *arg, int status)
{
	close((int)(intptr_t)arg);
	send_done(NULL, status);
}

static void note_queued(struct tcp_conn *c)
{
	size_t q = tcp_conn_queued(c), m = atomic_load(&max_queued);
	while (q > m && !atomic_compare_exchange_weak(&max_queued, &m, q))
		;
}

static void reply(struct tcp_conn *c, const struct frame_request *req, const void *body, size_t len)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	HCHECK(frame_reply_encode(hdr, req, (uint32_t)len, 0) == 0);
	struct tcp_piece p[2] = {TCP_COPY(hdr, sizeof hdr), TCP_COPY(body, len)};
	HCHECK(tcp_conn_send(c, p, 2, send_done, NULL) == 0);
	note_queued(c);
}

static uint8_t pattern_at(uint64_t i)
{
	return (uint8_t)(i * 7 + (i >> 9));
}

static void reply_file(struct tcp_conn *c, const struct frame_request *req, const uint8_t *body, size_t len)
{
	static const char open_mark[] = "<";
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	size_t n = len / 12, total = 1;
	struct tcp_piece *p = calloc(2 * n + 2, sizeof *p);
	int fd = open(file_path, O_RDONLY | O_CLOEXEC);
	HCHECK(fd >= 0);
	for (size_t i = 0; i < n; i++) {
		uint64_t off = wire_get_u64(&r);
		uint32_t l = wire_get_u32(&r);
		p[1 + 2 * i] = TCP_REF(open_mark, 1);
		p[2 + 2 * i] = TCP_FILE(fd, off, l);
		total += 1 + l;
	}
	HCHECK(wire_rd_done(&r) == 0);
	p[1 + 2 * n] = TCP_COPY(">", 1);
	uint8_t hdr[FRAME_HEADER_SIZE];
	HCHECK(frame_reply_encode(hdr, req, (uint32_t)total, 0) == 0);
	p[0] = TCP_COPY(hdr, sizeof hdr);
	HCHECK(tcp_conn_send(c, p, 2 * n + 2, file_done, (void *)(intptr_t)fd) == 0);
	free(p);
}

struct late {
	uv_timer_t t;
	struct tcp_conn *c;
	struct frame_request req;
};

static void late_closed(uv_handle_t *h)
{
	free(h->data);
}

static void late_fire(uv_timer_t *t)
{
	struct late *l = t->data;
	reply(l->c, &l->req, "late", 4);
	tcp_conn_resume(l->c);
	uv_close((uv_handle_t *)&l->t, late_closed);
}

static void h_connect(struct tcp_conn *c)
{
	if (atomic_fetch_add(&n_connect, 1) == 0)
		snprintf(first_peer, sizeof first_peer, "%s", tcp_conn_peer(c));
	atomic_store(&last_conn_id, tcp_conn_id(c));
	HCHECK(tcp_conn_get_data(c) == NULL);
	tcp_conn_set_data(c, c);
}

static void h_close(struct tcp_conn *c)
{
	HCHECK(tcp_conn_get_data(c) == c);
	if (c == bulk_conn)
		bulk_conn = NULL;
	atomic_fetch_add(&n_close, 1);
}

static void h_stale(struct tcp_conn *c)
{
	atomic_fetch_add(&n_stale, 1);
}

static void h_frame(struct tcp_conn *c, const struct frame_request *req, const uint8_t *body, size_t len)
{
	atomic_fetch_add(&n_frames, 1);
	HCHECK(req->client.lo == CLIENT_LO && req->client.hi == CLIENT_HI);
	HCHECK(len == req->size - FRAME_HEADER_SIZE);
	switch (req->code) {
	case FRAME_CODE_PING:
		reply(c, req, NULL, 0);
		break;
	case CODE_ECHO:
		reply(c, req, body, len);
		break;
	case CODE_BULK: {
		HCHECK(len == 4);
		uint32_t n = frame_le32(body);
		atomic_fetch_add(&n_bulk, 1);
		uint8_t *b = malloc(n);
		for (uint32_t i = 0; i < n; i++)
			b[i] = pattern_at(i);
		reply(c, req, b, n);
		free(b);
		bulk_conn = c;
		break;
	}
	case CODE_FILE:
		reply_file(c, req, body, len);
		break;
	case CODE_LATE: {
		struct late *l = calloc(1, sizeof *l);
		l->c = c;
		l->req = *req;
		l->t.data = l;
		uv_timer_init(&H.loop, &l->t);
		uv_timer_start(&l->t, late_fire, 50, 0);
		tcp_conn_pause(c);
		break;
	}
	default:
		HCHECK(!"an unexpected code");
	}
}

static void start_server_rc(void (*tweak)(struct tcp_opts *o))
{
	pthread_mutex_init(&H.mu, NULL);
	pthread_cond_init(&H.cv, NULL);
	tcp_opts_default(&H.opts);
	H.opts.address = "127.0.0.1:0";
	H.h = (struct tcp_handler){.on_connect = h_connect, .on_frame = h_frame, .on_close = h_close};
	if (tweak)
		tweak(&H.opts);
	cr_assert_eq(pthread_create(&H.thread, NULL, loop_main, NULL), 0);
	pthread_mutex_lock(&H.mu);
	while (!H.ready)
		pthread_cond_wait(&H.cv, &H.mu);
	pthread_mutex_unlock(&H.mu);
}

static void start_server(void (*tweak)(struct tcp_opts *o))
{
	start_server_rc(tweak);
	cr_assert_eq(H.start_rc, 0, "tcp_server_new: %s", strerror(-H.start_rc));
	cr_assert_gt(H.port, 0);
}

static void stop_server(void)
{
	uv_async_send(&H.stop);
	pthread_join(H.thread, NULL);
	cr_assert_eq(H.close_rc, 0, "the loop still had handles open");
	cr_assert_null(atomic_load(&fault), "handler check failed: %s", atomic_load(&fault));
}

/* ---- Client side (test thread) ---- */

/* TLS: the server's context, the clients' context, and the client session of each descriptor. */
#define MAX_CLI_FD 4096
static SSL_CTX *tls_srv_ctx, *tls_cli_ctx;
static SSL *cli_tls[MAX_CLI_FD];
static char tls_dir[64];

/* Makes a development certificate in a temporary directory and the contexts that use it. */
static void tls_setup(void)
{
	snprintf(tls_dir, sizeof tls_dir, "/tmp/galgo-tcp-tls-XXXXXX");
	cr_assert_not_null(mkdtemp(tls_dir));
	char cert[256], err[512];
	bool generated;
	int rc = tlscert_server_ctx(NULL, NULL, tls_dir, &tls_srv_ctx, cert, sizeof cert, &generated, err, sizeof err);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert(generated);
	tls_cli_ctx = SSL_CTX_new(TLS_client_method());
	cr_assert_not_null(tls_cli_ctx);
	cr_assert_eq(SSL_CTX_load_verify_locations(tls_cli_ctx, cert, NULL), 1);
	SSL_CTX_set_verify(tls_cli_ctx, SSL_VERIFY_PEER, NULL);
}

static void tls_teardown(void)
{
	SSL_CTX_free(tls_srv_ctx);
	SSL_CTX_free(tls_cli_ctx);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tls_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tls_dir);
}

static void with_tls(struct tcp_opts *o)
{
	o->ssl_ctx = tls_srv_ctx;
}

static int cli_connect_opts(int rcvbuf)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)H.port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
	return fd;
}

static int cli_connect(void)
{
	return cli_connect_opts(0);
}

/* A connection, over TLS (verifying the certificate and the name localhost) when tls is set. */
static int cli_open(bool tls, int rcvbuf)
{
	int fd = cli_connect_opts(rcvbuf);
	if (!tls)
		return fd;
	cr_assert_lt(fd, MAX_CLI_FD);
	SSL *s = SSL_new(tls_cli_ctx);
	cr_assert_not_null(s);
	cr_assert_eq(SSL_set_fd(s, fd), 1);
	cr_assert_eq(SSL_set1_host(s, "localhost"), 1);
	cr_assert_eq(SSL_connect(s), 1, "TLS handshake failed (verify result %ld)", SSL_get_verify_result(s));
	cli_tls[fd] = s;
	return fd;
}

/* Closes a connection made by cli_open. */
static void cli_close(int fd)
{
	if (fd < MAX_CLI_FD && cli_tls[fd]) {
		SSL_free(cli_tls[fd]);
		cli_tls[fd] = NULL;
	}
	close(fd);
}

static void send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	if (fd < MAX_CLI_FD && cli_tls[fd]) {
		while (n > 0) {
			int w = SSL_write(cli_tls[fd], b, n > INT32_MAX ? INT32_MAX : (int)n);
			cr_assert_gt(w, 0, "SSL_write failed");
			b += w;
			n -= (size_t)w;
		}
		return;
	}
	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		cr_assert_gt(w, 0, "send: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
}

/* Reads exactly n bytes; returns false on end of file or error. */
static bool recv_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n > 0) {
		ssize_t r = fd < MAX_CLI_FD && cli_tls[fd] ? SSL_read(cli_tls[fd], b, n > INT32_MAX ? INT32_MAX : (int)n)
							   : recv(fd, b, n, 0);
		if (r <= 0)
			return false;
		b += r;
		n -= (size_t)r;
	}
	return true;
}

/* Encodes a NonReplicated request frame into out (256 + len bytes). */
static size_t build_req(uint8_t *out, uint64_t request, uint32_t code, const void *body, size_t len)
{
	struct frame_request r = {.size = (uint32_t)(FRAME_HEADER_SIZE + len),
				  .client = {CLIENT_LO, CLIENT_HI},
				  .request = request,
				  .operation = FRAME_OP_NON_REPLICATED,
				  .code = code};
	frame_request_encode(out, &r);
	if (len)
		memcpy(out + FRAME_HEADER_SIZE, body, len);
	return FRAME_HEADER_SIZE + len;
}

static void cli_send(int fd, uint64_t request, uint32_t code, const void *body, size_t len)
{
	uint8_t *f = malloc(FRAME_HEADER_SIZE + len);
	size_t n = build_req(f, request, code, body, len);
	send_all(fd, f, n);
	free(f);
}

/* Reads one reply; returns its body (malloc'd: free it) and sets *rep. */
static uint8_t *cli_reply(int fd, struct frame_reply *rep)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	cr_assert(recv_all(fd, hdr, sizeof hdr), "no reply header");
	cr_assert_eq(frame_reply_decode(hdr, rep), FRAME_OK);
	size_t len = rep->size - FRAME_HEADER_SIZE;
	uint8_t *body = malloc(len ? len : 1);
	cr_assert(recv_all(fd, body, len), "short reply body");
	return body;
}

static void cli_ping(int fd, uint64_t request)
{
	struct frame_reply rep;
	cli_send(fd, request, FRAME_CODE_PING, NULL, 0);
	free(cli_reply(fd, &rep));
	cr_assert_eq(rep.request, request);
	cr_assert_eq(rep.operation, FRAME_OP_NON_REPLICATED);
	cr_assert_eq(rep.status, 0);
	cr_assert_eq(rep.size, FRAME_HEADER_SIZE);
	cr_assert_eq(rep.client.lo, CLIENT_LO);
	cr_assert_eq(rep.client.hi, CLIENT_HI);
}

/* Whether the server closed the connection (end of file or reset) within the receive timeout. */
static bool cli_closed(int fd)
{
	uint8_t b[4096];
	for (;;) {
		ssize_t r = recv(fd, b, sizeof b, 0);
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return true;
		if (r < 0)
			return false; /* timeout */
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits up to ms for an atomic counter to reach a value. */
static bool wait_for(atomic_int *v, int want, uint64_t ms)
{
	uint64_t end = now_ms() + ms;
	while (atomic_load(v) < want) {
		if (now_ms() > end)
			return false;
		usleep(5000);
	}
	return true;
}

/* ---- Request and reply ---- */

Test(tcp, a_client_and_the_server_exchange_requests_and_replies_in_lock_step)
{
	// Twenty pings, each answered before the next is sent, come back with the request number, the client id and operation 2.
	start_server(NULL);
	int fd = cli_connect();
	for (uint64_t i = 1; i <= 20; i++)
		cli_ping(fd, i);
	cr_assert_eq(atomic_load(&n_frames), 20);
	cr_assert_eq(atomic_load(&n_connect), 1);
	cr_assert_eq(atomic_load(&last_conn_id), 1);
	cr_assert_eq(strncmp(first_peer, "127.0.0.1:", 10), 0, "peer %s", first_peer);
	close(fd);
	cr_assert(wait_for(&n_close, 1, 5000));
	stop_server();
	cr_assert_eq(atomic_load(&n_done_ok), 20);
	cr_assert_eq(atomic_load(&n_done_err), 0);
}

Test(tcp, a_hundred_pipelined_pings_are_answered_in_order)
{
	// 100 pings written at once are answered 1..100 in order.
	start_server(NULL);
	int fd = cli_connect();
	uint8_t *buf = malloc(100 * FRAME_HEADER_SIZE);
	for (uint64_t i = 0; i < 100; i++)
		build_req(buf + i * FRAME_HEADER_SIZE, i + 1, FRAME_CODE_PING, NULL, 0);
	send_all(fd, buf, 100 * FRAME_HEADER_SIZE);
	free(buf);
	for (uint64_t i = 1; i <= 100; i++) {
		struct frame_reply rep;
		free(cli_reply(fd, &rep));
		cr_assert_eq(rep.request, i);
	}
	close(fd);
	stop_server();
	cr_assert_eq(atomic_load(&n_frames), 100);
}

Test(tcp, pipelined_requests_of_mixed_sizes_are_answered_in_order)
{
	// Pings and echoes of 0 B..5 MiB (beyond the initial receive buffer) written back to back are answered in order with their bodies.
	start_server(NULL);
	int fd = cli_connect();
	const size_t sizes[] = {0, 1, 0, 20000, 0, 5u << 20, 0, 70000, 0, 3};
	const size_t n = sizeof sizes / sizeof sizes[0];
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += FRAME_HEADER_SIZE + sizes[i];
	uint8_t *buf = malloc(total), *body = malloc(5u << 20);
	for (size_t i = 0; i < (5u << 20); i++)
		body[i] = pattern_at(i);
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		len += build_req(buf + len, i + 1, sizes[i] || i % 2 ? CODE_ECHO : FRAME_CODE_PING, body, sizes[i]);
	send_all(fd, buf, len);
	for (size_t i = 0; i < n; i++) {
		struct frame_reply rep;
		uint8_t *b = cli_reply(fd, &rep);
		cr_assert_eq(rep.request, i + 1);
		cr_assert_eq(rep.size - FRAME_HEADER_SIZE, sizes[i], "reply %zu", i);
		cr_assert(memcmp(b, body, sizes[i]) == 0, "reply %zu body", i);
		free(b);
	}
	free(buf);
	free(body);
	close(fd);
	stop_server();
}

Test(tcp, a_frame_split_byte_by_byte_across_writes_is_reassembled)
{
	// An echo request with a 100-byte body, written one byte per send, is delivered once and echoed whole.
	start_server(NULL);
	int fd = cli_connect();
	uint8_t body[100], frame[FRAME_HEADER_SIZE + 100];
	for (size_t i = 0; i < sizeof body; i++)
		body[i] = (uint8_t)(255 - i);
	size_t n = build_req(frame, 5, CODE_ECHO, body, sizeof body);
	for (size_t i = 0; i < n; i++) {
		send_all(fd, frame + i, 1);
		if (i % 8 == 0)
			usleep(200);
	}
	struct frame_reply rep;
	uint8_t *b = cli_reply(fd, &rep);
	cr_assert_eq(rep.request, 5);
	cr_assert_eq(rep.size, n);
	cr_assert_arr_eq(b, body, sizeof body);
	free(b);
	cli_ping(fd, 6);
	cr_assert_eq(atomic_load(&n_frames), 2);
	close(fd);
	stop_server();
}

Test(tcp, a_late_reply_keeps_the_following_replies_behind_it)
{
	// A frame answered 50 ms later with the connection paused is still answered before the two pings pipelined after it.
	start_server(NULL);
	int fd = cli_connect();
	uint8_t buf[3 * FRAME_HEADER_SIZE];
	build_req(buf, 1, CODE_LATE, NULL, 0);
	build_req(buf + FRAME_HEADER_SIZE, 2, FRAME_CODE_PING, NULL, 0);
	build_req(buf + 2 * FRAME_HEADER_SIZE, 3, FRAME_CODE_PING, NULL, 0);
	send_all(fd, buf, sizeof buf);
	for (uint64_t i = 1; i <= 3; i++) {
		struct frame_reply rep;
		uint8_t *b = cli_reply(fd, &rep);
		cr_assert_eq(rep.request, i);
		if (i == 1) {
			cr_assert_eq(rep.size, FRAME_HEADER_SIZE + 4);
			cr_assert_eq(memcmp(b, "late", 4), 0);
		}
		free(b);
	}
	close(fd);
	stop_server();
}

Test(tcp, a_client_that_closes_its_side_still_gets_its_replies)
{
	// Pings followed by shutdown(SHUT_WR) are all answered, then the server closes the connection.
	start_server(NULL);
	int fd = cli_connect();
	uint8_t buf[3 * FRAME_HEADER_SIZE];
	for (int i = 0; i < 3; i++)
		build_req(buf + i * FRAME_HEADER_SIZE, (uint64_t)i + 1, i == 0 ? CODE_LATE : FRAME_CODE_PING, NULL, 0);
	send_all(fd, buf, sizeof buf);
	shutdown(fd, SHUT_WR);
	for (uint64_t i = 1; i <= 3; i++) {
		struct frame_reply rep;
		free(cli_reply(fd, &rep));
		cr_assert_eq(rep.request, i);
	}
	cr_assert(cli_closed(fd));
	cr_assert(wait_for(&n_close, 1, 5000));
	close(fd);
	stop_server();
}

/* ---- Bad input ---- */

Test(tcp, a_frame_announcing_more_than_64_mib_closes_only_its_connection)
{
	// Garbage whose size field reads 0xffffffff closes that connection at once; another connection keeps working.
	start_server(NULL);
	int good = cli_connect();
	cli_ping(good, 1);
	int bad = cli_connect();
	uint8_t junk[FRAME_HEADER_SIZE];
	memset(junk, 0xab, sizeof junk);
	frame_put32(junk + FRAME_OFF_SIZE, UINT32_MAX);
	send_all(bad, junk, sizeof junk);
	cr_assert(cli_closed(bad));
	close(bad);
	cli_ping(good, 2);

	/* Just over the limit, announced in the first 52 bytes, is enough. */
	bad = cli_connect();
	memset(junk, 0, sizeof junk);
	frame_put32(junk + FRAME_OFF_SIZE, FRAME_MAX_SIZE + 1);
	send_all(bad, junk, FRAME_OFF_SIZE + 4);
	cr_assert(cli_closed(bad));
	close(bad);
	cli_ping(good, 3);
	close(good);
	stop_server();
	cr_assert_eq(atomic_load(&n_frames), 3);
}

Test(tcp, a_frame_smaller_than_its_header_closes_the_connection)
{
	// A size field of 100 closes the connection.
	start_server(NULL);
	int fd = cli_connect();
	uint8_t frame[FRAME_HEADER_SIZE];
	build_req(frame, 1, FRAME_CODE_PING, NULL, 0);
	frame_put32(frame + FRAME_OFF_SIZE, 100);
	send_all(fd, frame, sizeof frame);
	cr_assert(cli_closed(fd));
	close(fd);
	stop_server();
	cr_assert_eq(atomic_load(&n_frames), 0);
}

Test(tcp, invalid_requests_are_dropped_and_other_commands_ignored)
{
	// A zero client id, a Register with a session and a Reply-command frame with a body get no answer; the next ping on the same connection does.
	start_server(NULL);
	int fd = cli_connect();
	uint8_t f[FRAME_HEADER_SIZE + 44];
	build_req(f, 1, FRAME_CODE_PING, NULL, 0);
	memset(f + 128, 0, 16); /* client 0 */
	send_all(fd, f, FRAME_HEADER_SIZE);

	struct frame_request reg = {.size = FRAME_HEADER_SIZE,
				    .client = {CLIENT_LO, CLIENT_HI},
				    .operation = FRAME_OP_REGISTER,
				    .session = 5};
	frame_request_encode(f, &reg);
	send_all(fd, f, FRAME_HEADER_SIZE);

	build_req(f, 3, CODE_ECHO, "0123456789012345678901234567890123456789abcd", 44);
	f[FRAME_OFF_COMMAND] = FRAME_CMD_REPLY;
	send_all(fd, f, sizeof f);

	cli_ping(fd, 4);
	cli_ping(fd, 5);
	cr_assert_eq(atomic_load(&n_frames), 2);
	close(fd);
	stop_server();
}

/* ---- File ranges ---- */

static void make_test_file(size_t size)
{
	snprintf(file_path, sizeof file_path, "/tmp/galgo-tcp-XXXXXX");
	int fd = mkstemp(file_path);
	cr_assert_geq(fd, 0);
	uint8_t *b = malloc(size);
	for (size_t i = 0; i < size; i++)
		b[i] = pattern_at(i);
	cr_assert_eq(write(fd, b, size), (ssize_t)size);
	free(b);
	close(fd);
}

/* Ranges of an 8 MiB file between memory markers, pipelined between two pings, arrive exactly and in order. */
static void file_ranges_case(bool tls)
{
	make_test_file(8u << 20);
	if (tls)
		tls_setup();
	start_server(tls ? with_tls : NULL);
	int fd = cli_open(tls, 0);
	const struct {
		uint64_t off;
		uint32_t len;
	} ranges[] = {{0, 10}, {100, 1u << 20}, {(8u << 20) - 5, 5}, {4u << 20, 3u << 20}, {17, 1}};
	const size_t n = sizeof ranges / sizeof ranges[0];
	uint8_t req[12 * 5];
	for (size_t i = 0; i < n; i++) {
		frame_put64(req + 12 * i, ranges[i].off);
		frame_put32(req + 12 * i + 8, ranges[i].len);
	}
	uint8_t buf[3 * FRAME_HEADER_SIZE + sizeof req];
	size_t len = build_req(buf, 1, FRAME_CODE_PING, NULL, 0);
	len += build_req(buf + len, 2, CODE_FILE, req, sizeof req);
	len += build_req(buf + len, 3, FRAME_CODE_PING, NULL, 0);
	send_all(fd, buf, len);

	struct frame_reply rep;
	free(cli_reply(fd, &rep));
	cr_assert_eq(rep.request, 1);
	uint8_t *b = cli_reply(fd, &rep);
	cr_assert_eq(rep.request, 2);
	size_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(b[pos++], '<', "marker before range %zu", i);
		for (uint32_t k = 0; k < ranges[i].len; k++)
			cr_assert_eq(b[pos + k], pattern_at(ranges[i].off + k), "range %zu byte %u", i, k);
		pos += ranges[i].len;
	}
	cr_assert_eq(b[pos++], '>');
	cr_assert_eq(pos, rep.size - FRAME_HEADER_SIZE);
	free(b);
	free(cli_reply(fd, &rep));
	cr_assert_eq(rep.request, 3);
	cr_assert(wait_for(&n_done_ok, 3, 5000));
	cli_close(fd);
	stop_server();
	unlink(file_path);
	cr_assert_eq(atomic_load(&n_done_err), 0);
	if (tls)
		tls_teardown();
}

Test(tcp, file_range_pieces_arrive_byte_for_byte_between_memory_pieces)
{
	// The ranges go out with sendfile.
	file_ranges_case(false);
}

Test(tcp, under_tls_file_range_pieces_arrive_byte_for_byte_between_memory_pieces)
{
	// The ranges go through the bounce buffer (pread, then SSL_write).
	file_ranges_case(true);
}

Test(tcp, a_file_range_shorter_than_announced_closes_the_connection)
{
	// A range running past the end of the file cannot complete its frame: the connection closes and the send's done gets an error.
	make_test_file(4096);
	start_server(NULL);
	int fd = cli_connect();
	uint8_t req[12], buf[FRAME_HEADER_SIZE + 12];
	frame_put64(req, 4000);
	frame_put32(req + 8, 1000);
	send_all(fd, buf, build_req(buf, 1, CODE_FILE, req, sizeof req));
	cr_assert(cli_closed(fd));
	cr_assert(wait_for(&n_done_err, 1, 5000));
	close(fd);
	stop_server();
	unlink(file_path);
}

/* ---- Backpressure ---- */

static void high_water_4mib(struct tcp_opts *o)
{
	o->write_high_water = 4u << 20;
}

struct probe {
	bool reading;
	size_t queued;
	bool found;
};

static void probe_bulk(void *arg)
{
	struct probe *p = arg;
	p->found = bulk_conn != NULL;
	if (bulk_conn) {
		p->reading = tcp_conn_reading(bulk_conn);
		p->queued = tcp_conn_queued(bulk_conn);
	}
}

static void tls_high_water_4mib(struct tcp_opts *o)
{
	high_water_4mib(o);
	with_tls(o);
}

/*
 * 64 pipelined requests for 1 MiB replies from a client that does not read: the server pauses with at
 * most high water + one reply queued, serves another client, and answers all 64 once the client reads.
 */
static void slow_reader_case(bool tls)
{
	if (tls)
		tls_setup();
	start_server(tls ? tls_high_water_4mib : high_water_4mib);
	const int N = 64;
	const uint32_t reply_len = 1u << 20;
	int slow = cli_open(tls, 64 * 1024);
	uint8_t *buf = malloc((size_t)N * (FRAME_HEADER_SIZE + 4)), body[4];
	frame_put32(body, reply_len);
	size_t len = 0;
	for (int i = 0; i < N; i++)
		len += build_req(buf + len, (uint64_t)i + 1, CODE_BULK, body, 4);
	send_all(slow, buf, len);
	free(buf);

	/* Wait until the server stops reading the slow client. */
	struct probe p = {0};
	uint64_t deadline = now_ms() + 20000;
	do {
		usleep(20000);
		run_on_loop(probe_bulk, &p);
	} while ((!p.found || p.reading) && now_ms() < deadline);
	cr_assert(p.found);
	cr_assert_not(p.reading, "the server still reads the slow client");
	cr_assert_gt(p.queued, H.opts.write_high_water / 2);

	/* While paused it takes no more frames, and what it queued stays under high water + one reply. */
	int taken = atomic_load(&n_bulk);
	usleep(300000);
	cr_assert_eq(atomic_load(&n_bulk), taken);
	cr_assert_gt(taken, 0);
	cr_assert_lt(taken, N, "the server took every frame");
	size_t bound = H.opts.write_high_water + reply_len + FRAME_HEADER_SIZE;
	cr_assert_leq(atomic_load(&max_queued), bound, "queued %zu", atomic_load(&max_queued));

	/* Another client is served meanwhile. */
	int other = cli_open(tls, 0);
	for (uint64_t i = 1; i <= 5; i++)
		cli_ping(other, i);
	cli_close(other);

	/* Once the slow client reads, every reply arrives, whole and in order. */
	uint8_t *want = malloc(reply_len);
	for (uint32_t i = 0; i < reply_len; i++)
		want[i] = pattern_at(i);
	for (int i = 0; i < N; i++) {
		struct frame_reply rep;
		uint8_t *b = cli_reply(slow, &rep);
		cr_assert_eq(rep.request, (uint64_t)i + 1);
		cr_assert_eq(rep.size, FRAME_HEADER_SIZE + reply_len);
		cr_assert(memcmp(b, want, reply_len) == 0, "reply %d", i);
		free(b);
	}
	free(want);
	cr_assert_eq(atomic_load(&n_bulk), N);
	cr_assert_leq(atomic_load(&max_queued), bound);
	cli_close(slow);
	stop_server();
	if (tls)
		tls_teardown();
}

Test(tcp, a_client_that_never_reads_stops_being_read_and_its_queue_stays_bounded)
{
	slow_reader_case(false);
}

Test(tcp, under_tls_a_client_that_never_reads_stops_being_read_and_its_queue_stays_bounded)
{
	slow_reader_case(true);
}

static void tls_short_handshake(struct tcp_opts *o)
{
	with_tls(o);
	o->tls_handshake_timeout_ms = 300;
}

Test(tcp, under_tls_a_bad_or_missing_handshake_closes_only_that_connection)
{
	// Plain bytes instead of a ClientHello, and silence past the handshake limit, each close their connection without on_connect; a TLS client is unaffected.
	tls_setup();
	start_server(tls_short_handshake);
	int good = cli_open(true, 0);
	cli_ping(good, 1);
	cr_assert(wait_for(&n_connect, 1, 5000));

	int junk = cli_connect();
	uint8_t frame[FRAME_HEADER_SIZE];
	build_req(frame, 1, FRAME_CODE_PING, NULL, 0);
	send_all(junk, frame, sizeof frame);
	cr_assert(cli_closed(junk));
	close(junk);

	int silent = cli_connect();
	uint64_t t0 = now_ms();
	cr_assert(cli_closed(silent));
	cr_assert_geq(now_ms() - t0, 250);
	close(silent);

	cli_ping(good, 2);
	cr_assert_eq(atomic_load(&n_connect), 1, "on_connect for a connection without a handshake");
	cr_assert_eq(atomic_load(&n_close), 0);
	cli_close(good);
	cr_assert(wait_for(&n_close, 1, 5000));
	stop_server();
	cr_assert_eq(atomic_load(&n_close), 1);
	tls_teardown();
}

/* ---- Limits and heartbeat ---- */

static void three_connections(struct tcp_opts *o)
{
	o->max_connections = 3;
}

Test(tcp, the_connection_limit_refuses_the_extra_connection)
{
	// With max_connections 3 a fourth connection is closed at once; after one of the three leaves, a new one is served.
	start_server(three_connections);
	int fds[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = cli_connect();
		cli_ping(fds[i], 1);
	}
	int extra = cli_connect();
	cr_assert(cli_closed(extra));
	close(extra);
	cr_assert_eq(atomic_load(&n_connect), 3);
	close(fds[0]);
	cr_assert(wait_for(&n_close, 1, 5000));
	int again = cli_connect();
	cli_ping(again, 1);
	cr_assert_eq(atomic_load(&n_connect), 4);
	close(again);
	close(fds[1]);
	close(fds[2]);
	stop_server();
}

static void short_heartbeat(struct tcp_opts *o)
{
	o->heartbeat_timeout_ms = 300;
}

Test(tcp, a_silent_connection_is_evicted_as_stale_by_default)
{
	// Without on_stale, a client silent for the heartbeat timeout gets Eviction(13) for its client id, then the connection closes.
	start_server(short_heartbeat);
	int fd = cli_connect();
	cli_ping(fd, 1);
	uint64_t t0 = now_ms();
	uint8_t hdr[FRAME_HEADER_SIZE];
	cr_assert(recv_all(fd, hdr, sizeof hdr));
	cr_assert_geq(now_ms() - t0, 250);
	struct frame_eviction e;
	cr_assert_eq(frame_eviction_decode(hdr, &e), FRAME_OK);
	cr_assert_eq(e.reason, FRAME_EVICT_STALE_CLIENT);
	cr_assert_eq(e.client.lo, CLIENT_LO);
	cr_assert_eq(e.client.hi, CLIENT_HI);
	cr_assert(cli_closed(fd));
	close(fd);

	/* A connection that never sent a frame has no client id to evict: it is just closed. */
	fd = cli_connect();
	cr_assert(cli_closed(fd));
	close(fd);
	stop_server();
}

static void short_heartbeat_with_handler(struct tcp_opts *o)
{
	o->heartbeat_timeout_ms = 200;
	H.h.on_stale = h_stale;
}

Test(tcp, a_silent_connection_is_reported_stale_once_per_silence)
{
	// With on_stale, a silent connection is reported after the timeout and left open; after more traffic and silence it is reported again.
	start_server(short_heartbeat_with_handler);
	int fd = cli_connect();
	uint64_t t0 = now_ms();
	cr_assert(wait_for(&n_stale, 1, 5000));
	cr_assert_geq(now_ms() - t0, 150);
	usleep(500000);
	cr_assert_eq(atomic_load(&n_stale), 1, "reported again without new traffic");
	cli_ping(fd, 1);
	cr_assert(wait_for(&n_stale, 2, 5000));
	close(fd);
	stop_server();
}

static void h_stale_keep(struct tcp_conn *c)
{
	atomic_fetch_add(&n_stale, 1);
	tcp_conn_restart_silence(c);
}

static void short_heartbeat_with_keeping_handler(struct tcp_opts *o)
{
	o->heartbeat_timeout_ms = 200;
	H.h.on_stale = h_stale_keep;
}

Test(tcp, a_handler_that_restarts_the_silence_is_told_again_after_each_timeout)
{
	// An on_stale handler that keeps the connection with tcp_conn_restart_silence hears of it again after another silent timeout, without traffic; the connection stays open.
	start_server(short_heartbeat_with_keeping_handler);
	int fd = cli_connect();
	uint64_t t0 = now_ms();
	cr_assert(wait_for(&n_stale, 1, 5000));
	cr_assert(wait_for(&n_stale, 3, 5000));
	cr_assert_geq(now_ms() - t0, 500, "three silences of 200 ms took %llu ms", (unsigned long long)(now_ms() - t0));
	cli_ping(fd, 1); /* the kept connection still answers */
	close(fd);
	stop_server();
}

static void half_second_heartbeat_with_handler(struct tcp_opts *o)
{
	o->heartbeat_timeout_ms = 500;
	H.h.on_stale = h_stale;
}

Test(tcp, a_connection_that_keeps_pinging_is_never_stale)
{
	// Pings every 50 ms for 1.5 s keep a connection with a 500 ms timeout alive.
	start_server(half_second_heartbeat_with_handler);
	int fd = cli_connect();
	for (uint64_t i = 1; i <= 30; i++) {
		cli_ping(fd, i);
		usleep(50000);
	}
	cr_assert_eq(atomic_load(&n_stale), 0);
	close(fd);
	stop_server();
}

/* ---- Lifecycle and addresses ---- */

Test(tcp, closing_the_server_closes_every_connection_and_reports_each)
{
	// tcp_server_close with three clients connected calls on_close three times, the clients see the end, and the loop ends with no handle left.
	start_server(NULL);
	int fds[3];
	for (int i = 0; i < 3; i++) {
		fds[i] = cli_connect();
		cli_ping(fds[i], 1);
	}
	stop_server();
	cr_assert_eq(atomic_load(&n_close), 3);
	for (int i = 0; i < 3; i++) {
		cr_assert(cli_closed(fds[i]));
		close(fds[i]);
	}
}

Test(tcp, connection_ids_count_from_one)
{
	// Three connections get ids 1, 2 and 3.
	start_server(NULL);
	for (unsigned i = 1; i <= 3; i++) {
		int fd = cli_connect();
		cli_ping(fd, 1);
		cr_assert_eq(atomic_load(&last_conn_id), i);
		close(fd);
	}
	stop_server();
}

Test(tcp, addresses_parse_as_host_and_port)
{
	// IPv4, bracketed IPv6, an empty host and names parse; missing ports, bad ports and bare IPv6 do not.
	struct sockaddr_storage ss;
	socklen_t sl;
	cr_assert_eq(tcp_addr_parse("127.0.0.1:8090", &ss, &sl), 0);
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8090);
	cr_assert_eq(tcp_addr_parse("[::1]:0", &ss, &sl), 0);
	cr_assert_eq(ss.ss_family, AF_INET6);
	cr_assert_eq(tcp_addr_parse(":65535", &ss, &sl), 0);
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
	cr_assert_eq(tcp_addr_parse("localhost:1", &ss, &sl), 0);
	cr_assert_eq(tcp_addr_parse("::1:80", &ss, &sl), -EINVAL);
	cr_assert_eq(tcp_addr_parse("1.2.3.4", &ss, &sl), -EINVAL);
	cr_assert_eq(tcp_addr_parse("1.2.3.4:", &ss, &sl), -EINVAL);
	cr_assert_eq(tcp_addr_parse("1.2.3.4:65536", &ss, &sl), -EINVAL);
	cr_assert_eq(tcp_addr_parse("1.2.3.4:8x", &ss, &sl), -EINVAL);
	cr_assert_eq(tcp_addr_parse("[::1]8090", &ss, &sl), -EINVAL);
	cr_assert_eq(tcp_addr_parse(NULL, &ss, &sl), -EINVAL);
}

static void ipv6_loopback(struct tcp_opts *o)
{
	o->address = "[::1]:0";
}

Test(tcp, the_server_listens_on_ipv6)
{
	// On [::1] the server answers a ping from an IPv6 client (skipped where the machine has no IPv6).
	start_server_rc(ipv6_loopback);
	if (H.start_rc == -EADDRNOTAVAIL || H.start_rc == -EAFNOSUPPORT) {
		stop_server();
		cr_skip_test("no IPv6 loopback here");
	}
	cr_assert_eq(H.start_rc, 0, "%s", strerror(-H.start_rc));
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)H.port),
				 .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	cli_ping(fd, 1);
	cr_assert_eq(strncmp(first_peer, "[::1]:", 6), 0, "peer %s", first_peer);
	close(fd);
	stop_server();
}

static void drain_on_loop(void *arg)
{
	tcp_server_drain(H.srv);
}

static void count_unsent(void *arg)
{
	*(uint32_t *)arg = tcp_server_unsent(H.srv);
}

Test(tcp, a_drained_server_answers_what_it_took_reads_nothing_new_and_refuses_connections)
{
	// A request delivered before tcp_server_drain is answered after it; a ping sent after it never reaches the handler, a new connection is refused, and nothing is left unsent.
	start_server(NULL);
	int fd = cli_connect();
	cli_send(fd, 1, CODE_LATE, NULL, 0);
	cr_assert(wait_for(&n_frames, 1, 5000));
	run_on_loop(drain_on_loop, NULL);
	cli_send(fd, 2, FRAME_CODE_PING, NULL, 0);
	struct frame_reply rep;
	uint8_t *body = cli_reply(fd, &rep);
	cr_assert_eq(rep.request, 1);
	cr_assert_eq(rep.size, FRAME_HEADER_SIZE + 4);
	cr_assert_eq(memcmp(body, "late", 4), 0);
	free(body);
	usleep(200 * 1000);
	cr_assert_eq(atomic_load(&n_frames), 1, "a frame sent after the drain was delivered");
	int other = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)H.port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_neq(connect(other, (struct sockaddr *)&a, sizeof a), 0, "a connection was accepted after the drain");
	cr_assert_eq(errno, ECONNREFUSED);
	close(other);
	uint32_t unsent = 99;
	run_on_loop(count_unsent, &unsent);
	cr_assert_eq(unsent, 0);
	close(fd);
	stop_server();
	cr_assert_eq(atomic_load(&n_frames), 1);
	cr_assert_eq(atomic_load(&n_close), 1);
}

Test(tcp, bad_options_are_refused)
{
	// A missing on_frame, a frame limit outside 256..64 MiB, zero connections or a bad address give -EINVAL.
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct tcp_opts o;
	struct tcp_server *s;
	struct tcp_handler h = {.on_frame = h_frame};
	tcp_opts_default(&o);
	o.address = "127.0.0.1:0";
	cr_assert_eq(tcp_server_new(&loop, &o, &(struct tcp_handler){0}, NULL, &s), -EINVAL);
	o.max_frame = FRAME_MAX_SIZE + 1;
	cr_assert_eq(tcp_server_new(&loop, &o, &h, NULL, &s), -EINVAL);
	o.max_frame = 255;
	cr_assert_eq(tcp_server_new(&loop, &o, &h, NULL, &s), -EINVAL);
	o.max_frame = FRAME_MAX_SIZE;
	o.max_connections = 0;
	cr_assert_eq(tcp_server_new(&loop, &o, &h, NULL, &s), -EINVAL);
	o.max_connections = 1;
	o.address = "nonsense";
	cr_assert_eq(tcp_server_new(&loop, &o, &h, NULL, &s), -EINVAL);
	cr_assert_eq(uv_loop_close(&loop), 0);
}
