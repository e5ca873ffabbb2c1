/*
 * TLS on the TCP listener, against the real galgod: each test starts galgod (GALGO_BUILD_DIR "/galgod")
 * with --tcp.tls_enabled=true on a temporary data directory and 127.0.0.1:0, so that galgod makes its
 * self-signed development certificate in <data_dir>/tls/. The clients are OpenSSL clients that verify
 * the server against that certificate (and the name localhost), and speak frames built by
 * proto/frame and proto/wire. Checked:
 *   - login and ping round trips over TLS;
 *   - a client that sends garbage instead of a ClientHello, one that stops in the middle of the
 *     handshake, one that closes in the middle of it and one that sends plain frames are each dropped,
 *     while a good TLS client keeps working;
 *   - the certificate is reused when galgod starts again on the same data directory;
 * and that galgod exits 0 on SIGTERM (under ASan/UBSan that is also "no error, no leak").
 *
 * Every wait is bounded; the fini hook kills a galgod a failed test left behind.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "partition/record.h"
#include "proto/frame.h"
#include "proto/wire.h"

#define GALGOD GALGO_BUILD_DIR "/galgod"
#define CHILD_TIMEOUT_MS 20000
#define IO_TIMEOUT_MS 10000
/* galgod's TLS handshake limit (tcp_opts.tls_handshake_timeout_ms) plus its timer's period and slack. */
#define HANDSHAKE_DROP_MS 15000

#include "galgod_child.h"

static char cert_path[192]; /* the development certificate galgod makes */

static void galgod_start(void)
{
	galgod_start_with("--tcp.tls_enabled=true");
	snprintf(cert_path, sizeof(cert_path), "%s/data/tls/cert.pem", G.tmpdir);
}

static void setup(void)
{
	child_setup("/tmp/galgo-test-tls-");
	galgod_start();
}

TestSuite(tls, .init = setup, .fini = child_teardown, .timeout = 90);

/* ---- Clients ---- */

/* A TCP connection to galgod with bounded blocking I/O. */
static int tcp_open(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)G.port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
	return fd;
}

/*
 * Sends bytes on a raw connection. The server may drop such a client before it has sent everything, so
 * a reset (or a broken pipe) ends the send without failing the test.
 */
static void raw_send(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == ECONNRESET || errno == EPIPE))
			return;
		cr_assert_gt(w, 0, "send: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
}

/* Asserts that the server closes a raw connection (EOF or a reset) within ms, whatever it sent before. */
static void assert_raw_closed(int fd, int ms)
{
	uint8_t b[4096];
	uint64_t end = now_ms() + (uint64_t)ms;
	for (;;) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		int left = (int)(end > now_ms() ? end - now_ms() : 0);
		cr_assert(poll(&pf, 1, left) > 0, "the connection is still open after %d ms", ms);
		ssize_t r = recv(fd, b, sizeof(b), 0);
		if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE)))
			return;
		cr_assert(r > 0 || errno == EINTR, "recv: %s", strerror(errno));
	}
}

/* The last OpenSSL error of this thread, as text. */
static const char *ssl_error(void)
{
	static char msg[256];
	unsigned long e = ERR_get_error();
	if (e == 0)
		return "no OpenSSL error";
	ERR_error_string_n(e, msg, sizeof(msg));
	ERR_clear_error();
	return msg;
}

/* A client context that trusts galgod's development certificate only. */
static SSL_CTX *client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	cr_assert_not_null(ctx);
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, cert_path, NULL), 1, "cannot load %s: %s", cert_path, ssl_error());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

/* A logged-out TLS client. */
struct tconn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	struct frame_u128 client;
	uint64_t session;
	uint64_t request;
};

static uint64_t client_seq;

/* Connects over TLS, verifying the certificate and the name localhost. */
static struct tconn tls_open(void)
{
	struct tconn c = {.fd = tcp_open(), .ctx = client_ctx()};
	c.ssl = SSL_new(c.ctx);
	cr_assert_not_null(c.ssl);
	cr_assert_eq(SSL_set_fd(c.ssl, c.fd), 1);
	cr_assert_eq(SSL_set_tlsext_host_name(c.ssl, "localhost"), 1);
	cr_assert_eq(SSL_set1_host(c.ssl, "localhost"), 1);
	int rc = SSL_connect(c.ssl);
	cr_assert_eq(rc, 1, "TLS handshake: %s (verify result %ld); galgod output:\n%s", ssl_error(),
		     SSL_get_verify_result(c.ssl), child_output());
	cr_assert_eq(SSL_get_verify_result(c.ssl), X509_V_OK);
	c.client = (struct frame_u128){.lo = ++client_seq * 0x9e3779b97f4a7c15ull, .hi = (uint64_t)getpid()};
	return c;
}

static void tls_close(struct tconn *c)
{
	if (c->ssl != NULL) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

static void tls_send_all(struct tconn *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		int w = SSL_write(c->ssl, b, (int)n);
		cr_assert_gt(w, 0, "SSL_write: %s", ssl_error());
		b += w;
		n -= (size_t)w;
	}
}

static void tls_recv_exact(struct tconn *c, void *p, size_t n)
{
	uint8_t *b = p;
	size_t got = 0;
	while (got < n) {
		int r = SSL_read(c->ssl, b + got, (int)(n - got));
		cr_assert_gt(r, 0, "SSL_read: %s (error %d); galgod output:\n%s", ssl_error(), SSL_get_error(c->ssl, r),
			     child_output());
		got += (size_t)r;
	}
}

/* One request over TLS and its reply (which must answer it); returns the body (malloc'd). */
static uint8_t *tls_call(struct tconn *c, uint8_t op, uint32_t code, const void *body, size_t len,
			 struct frame_reply *rep, size_t *body_len)
{
	struct frame_request req = {0};
	req.size = (uint32_t)(FRAME_HEADER_SIZE + len);
	req.client = c->client;
	req.operation = op;
	req.code = op == FRAME_OP_NON_REPLICATED ? code : 0;
	if (op != FRAME_OP_REGISTER) {
		req.session = c->session;
		req.request = ++c->request;
	}
	uint8_t hdr[FRAME_HEADER_SIZE];
	frame_request_encode(hdr, &req);
	tls_send_all(c, hdr, sizeof(hdr));
	if (len > 0)
		tls_send_all(c, body, len);

	tls_recv_exact(c, hdr, sizeof(hdr));
	cr_assert_eq(hdr[FRAME_OFF_COMMAND], FRAME_CMD_REPLY, "a frame with command %u", hdr[FRAME_OFF_COMMAND]);
	cr_assert_eq(frame_reply_decode(hdr, rep), FRAME_OK);
	cr_assert_eq(rep->request, req.request);
	cr_assert_eq(rep->operation, op);
	*body_len = rep->size - FRAME_HEADER_SIZE;
	uint8_t *b = malloc(*body_len ? *body_len : 1);
	cr_assert_not_null(b);
	tls_recv_exact(c, b, *body_len);
	return b;
}

/* Logs in as iggy/iggy (Register) and keeps the session. */
static void tls_login(struct tconn *c)
{
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_version_info vi = {FRAME_PROTOCOL_VERSION, {(const uint8_t *)"tls-test", 8},
				       {(const uint8_t *)"1.0.0", 5}};
	wire_put_version_info(&b, &vi);
	wire_put_name(&b, "iggy", 4);
	wire_put_str8(&b, "iggy", 4);
	wire_put_u32(&b, 0);
	cr_assert_eq(wire_buf_error(&b), 0);
	struct frame_reply rep;
	size_t n;
	uint8_t *body = tls_call(c, FRAME_OP_REGISTER, 0, b.p, b.len, &rep, &n);
	cr_assert_eq(rep.status, 0, "login status %u", rep.status);
	uint32_t err;
	size_t off;
	cr_assert_eq(frame_result_split(body, n, &err, &off), FRAME_OK);
	cr_assert_eq(err, 0, "login error %u", err);
	cr_assert_geq(n, 16);
	c->session = record_le64(body + 4);
	cr_assert_gt(c->session, 0);
	free(body);
	wire_buf_free(&b);
}

static void tls_ping(struct tconn *c)
{
	struct frame_reply rep;
	size_t n;
	uint8_t *body = tls_call(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_PING, NULL, 0, &rep, &n);
	cr_assert_eq(rep.status, 0, "ping status %u", rep.status);
	cr_assert_eq(n, 0);
	free(body);
}

/* A connected, logged-in TLS client. */
static struct tconn good_client(void)
{
	struct tconn c = tls_open();
	tls_login(&c);
	tls_ping(&c);
	return c;
}

/* The ClientHello an OpenSSL client would send first (written to a memory BIO, never to a socket). */
static size_t client_hello(uint8_t *out, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	cr_assert_not_null(ctx);
	SSL *s = SSL_new(ctx);
	BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
	cr_assert(s != NULL && rb != NULL && wb != NULL);
	SSL_set_bio(s, rb, wb);
	SSL_set_tlsext_host_name(s, "localhost");
	cr_assert_eq(SSL_connect(s), -1);
	cr_assert_eq(SSL_get_error(s, -1), SSL_ERROR_WANT_READ);
	char *p;
	long n = BIO_get_mem_data(wb, &p);
	cr_assert(n > 5 && (size_t)n <= cap && p[0] == 22, "no ClientHello record (%ld bytes)", n);
	memcpy(out, p, (size_t)n);
	SSL_free(s);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return (size_t)n;
}

/* ---- Tests ---- */

/* Login and ping travel over TLS, verified against the generated certificate; its path is logged. */
Test(tls, login_and_ping_round_trip)
{
	cr_assert(strstr(child_output(), cert_path) != NULL, "the certificate path is not logged:\n%s", child_output());
	cr_assert_eq(access(cert_path, R_OK), 0);
	struct tconn a = good_client();
	struct tconn b = good_client();
	for (int i = 0; i < 20; i++) {
		tls_ping(&a);
		tls_ping(&b);
	}
	tls_close(&a);
	tls_close(&b);
	galgod_stop();
}

/* Garbage instead of a ClientHello closes that connection only. */
Test(tls, garbage_instead_of_client_hello_is_dropped)
{
	struct tconn good = good_client();
	int fd = tcp_open();
	uint8_t junk[600];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	raw_send(fd, junk, sizeof(junk));
	assert_raw_closed(fd, IO_TIMEOUT_MS);
	close(fd);
	tls_ping(&good);
	tls_close(&good);
	struct tconn again = good_client();
	tls_close(&again);
	galgod_stop();
}

/*
 * A client that sends its ClientHello and then nothing more holds no one up and is dropped once the
 * handshake limit passes; one that closes half-way through its ClientHello is forgotten at once.
 */
Test(tls, a_stalled_or_truncated_handshake_is_dropped)
{
	uint8_t hello[4096];
	size_t n = client_hello(hello, sizeof(hello));
	int stalled = tcp_open();
	raw_send(stalled, hello, n);
	int truncated = tcp_open();
	raw_send(truncated, hello, n / 2);
	close(truncated);
	int silent = tcp_open();

	uint64_t start = now_ms();
	struct tconn good = good_client();
	for (int i = 0; i < 10; i++)
		tls_ping(&good);
	cr_assert_lt(now_ms() - start, 5000, "the good client was held up");

	assert_raw_closed(stalled, HANDSHAKE_DROP_MS);
	assert_raw_closed(silent, HANDSHAKE_DROP_MS);
	close(stalled);
	close(silent);
	tls_ping(&good);
	tls_close(&good);
	galgod_stop();
}

/* Plain frames sent to the TLS port are not a ClientHello: the connection is closed, nothing crashes. */
Test(tls, plain_frames_to_the_tls_port_are_refused)
{
	struct tconn good = good_client();
	int fd = tcp_open();
	struct frame_request req = {0};
	req.size = FRAME_HEADER_SIZE;
	req.client = (struct frame_u128){.lo = 7, .hi = 7};
	req.operation = FRAME_OP_NON_REPLICATED;
	req.code = FRAME_CODE_PING;
	req.request = 1;
	uint8_t frames[4 * FRAME_HEADER_SIZE];
	for (int i = 0; i < 4; i++)
		frame_request_encode(frames + i * FRAME_HEADER_SIZE, &req);
	raw_send(fd, frames, sizeof(frames));
	assert_raw_closed(fd, IO_TIMEOUT_MS);
	close(fd);
	tls_ping(&good);
	tls_close(&good);
	galgod_stop();
}

/* The development certificate is made once: a restart on the same data directory reuses it. */
Test(tls, the_development_certificate_is_reused)
{
	FILE *f = fopen(cert_path, "r");
	cr_assert_not_null(f);
	char first[8192] = {0}, second[8192] = {0};
	cr_assert_gt(fread(first, 1, sizeof(first) - 1, f), 0);
	fclose(f);
	cr_assert(strstr(child_output(), "new self-signed") != NULL, "%s", child_output());
	galgod_stop();

	galgod_start();
	cr_assert(strstr(child_output(), "new self-signed") == NULL, "%s", child_output());
	cr_assert(strstr(child_output(), cert_path) != NULL, "%s", child_output());
	f = fopen(cert_path, "r");
	cr_assert_not_null(f);
	cr_assert_gt(fread(second, 1, sizeof(second) - 1, f), 0);
	fclose(f);
	cr_assert_str_eq(first, second);
	struct tconn good = good_client();
	tls_close(&good);
	galgod_stop();
}
