/*
 * The QUIC listener (transport/quic) against a minimal ngtcp2 + GnuTLS client written here, both on one
 * libuv loop in the test process. The listener's handler is a stand-in for the node: it answers every
 * request frame with a Reply frame echoing the body (from memory, from a file range, or later from a
 * timer), so what is checked is the transport: one request per stream and its reply with FIN, many
 * streams at once, large frames across many packets, malformed streams reset with the Iggy error code
 * while the connection goes on, garbage datagrams, version negotiation, the connection limit, the idle
 * timeout, ALPN, and the graceful close. Waits are for events (a bounded run of the loop), never sleeps.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <uv.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "node/tlscert.h"
#include "proto/frame.h"
#include "transport/quic.h"

#define DEADLINE_MS 20000
#define MAX_TSTREAMS 64

/* ---- The stand-in node ---- */

enum { CODE_ECHO = 1, CODE_FILE = 100, CODE_LATER = 101 };

struct tnode {
	uv_loop_t loop;
	struct quic_server *qs;
	int opened, closed, frames;
	bool refuse;
	int file_fd;                 /* CODE_FILE replies carry bytes 0..file_len of it */
	size_t file_len;
	uv_timer_t later;            /* CODE_LATER: the reply leaves from here */
	struct quic_conn *later_conn;
	uint8_t later_hdr[FRAME_HEADER_SIZE];
	bool deadline_hit;
	uv_timer_t deadline;
	char dir[64];
	int galgod_port;             /* the real galgod's QUIC port (tests that start one), else 0 */
	pid_t galgod_pid;
};

static struct tnode N;

static void reply_done(void *arg, int status)
{
	cr_assert_eq(status, 0);
}

static int node_open(struct quic_conn *c)
{
	N.opened++;
	return N.refuse ? -1 : 0;
}

static void on_later(uv_timer_t *t)
{
	struct quic_piece p = {N.later_hdr, -1, 0, FRAME_HEADER_SIZE};
	quic_conn_send(N.later_conn, &p, 1, reply_done, NULL);
}

static void node_frame(struct quic_conn *c, const struct frame_request *req, uint8_t *body, size_t len)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	N.frames++;
	if (req->code == CODE_LATER) {
		frame_reply_encode(N.later_hdr, req, 0, 0);
		N.later_conn = c;
		uv_timer_start(&N.later, on_later, 0, 0);
		return;
	}
	if (req->code == CODE_FILE) {
		frame_reply_encode(hdr, req, (uint32_t)N.file_len, 0);
		struct quic_piece p[2] = {{hdr, -1, 0, sizeof(hdr)}, {NULL, N.file_fd, 0, N.file_len}};
		quic_conn_send(c, p, 2, reply_done, NULL);
		return;
	}
	frame_reply_encode(hdr, req, (uint32_t)len, 0);
	struct quic_piece p[2] = {{hdr, -1, 0, sizeof(hdr)}, {body, -1, 0, len}};
	quic_conn_send(c, p, len > 0 ? 2 : 1, reply_done, NULL);
}

static void node_close(struct quic_conn *c)
{
	N.closed++;
}

static const struct quic_handler node_handler = {node_open, node_frame, node_close};

static void on_deadline(uv_timer_t *t)
{
	N.deadline_hit = true;
	uv_stop(&N.loop);
}

/* Runs the loop until cond(arg) holds; fails the test if the deadline passes first. */
static void run_until(bool (*cond)(void *), void *arg, const char *what)
{
	uv_timer_start(&N.deadline, on_deadline, DEADLINE_MS, 0);
	while (!cond(arg) && !N.deadline_hit)
		uv_run(&N.loop, UV_RUN_ONCE);
	uv_timer_stop(&N.deadline);
	cr_assert(!N.deadline_hit, "timed out waiting for %s", what);
}

static bool server_queue_all; /* for the next start_server: every datagram through a 16 KiB queue */

static void start_server(uint32_t max_connections, uint32_t idle_ms)
{
	char cert[128], key[128], err[256];
	snprintf(cert, sizeof(cert), "%s/cert.pem", N.dir);
	snprintf(key, sizeof(key), "%s/key.pem", N.dir);
	cr_assert_eq(tlscert_generate(cert, key, err, sizeof(err)), 0, "%s", err);
	struct quic_opts o;
	quic_opts_default(&o);
	o.address = "127.0.0.1:0";
	o.cert_file = cert;
	o.key_file = key;
	o.max_connections = max_connections;
	if (idle_ms > 0)
		o.idle_timeout_ms = idle_ms;
	o.max_streams = 8;
	if (server_queue_all) {
		o.queue_all = true;
		o.send_queue_limit = 16 * 1024;
	}
	cr_assert_eq(quic_server_new(&N.loop, &o, &node_handler, &N, &N.qs, err, sizeof(err)), 0, "%s", err);
}

static void setup(void)
{
	memset(&N, 0, sizeof(N));
	cr_assert_eq(uv_loop_init(&N.loop), 0);
	uv_timer_init(&N.loop, &N.deadline);
	uv_timer_init(&N.loop, &N.later);
	snprintf(N.dir, sizeof(N.dir), "/tmp/galgo-quic-XXXXXX");
	cr_assert_not_null(mkdtemp(N.dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/file", N.dir);
	N.file_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert(N.file_fd >= 0);
	N.file_len = 70000;
	uint8_t *b = malloc(N.file_len);
	for (size_t i = 0; i < N.file_len; i++)
		b[i] = (uint8_t)(i * 7 + 3);
	cr_assert_eq(pwrite(N.file_fd, b, N.file_len, 0), (ssize_t)N.file_len);
	free(b);
}

static void walk_close(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void teardown(void)
{
	if (N.qs != NULL)
		quic_server_close(N.qs);
	N.qs = NULL;
	uv_walk(&N.loop, walk_close, NULL);
	uv_run(&N.loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&N.loop), 0);
	close(N.file_fd);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", N.dir);
	cr_assert_eq(system(cmd), 0);
#ifdef __SANITIZE_ADDRESS__
	/* LSan's report alone would not fail a criterion test: a leak aborts the teardown instead. */
	if (__lsan_do_recoverable_leak_check())
		abort();
#endif
}

TestSuite(quic, .init = setup, .fini = teardown, .timeout = 60);

/* ---- A minimal QUIC client ---- */

struct tstream {
	int64_t id;
	uint8_t *out;
	size_t outlen, outoff;
	bool fin, fin_sent;
	uint8_t *in;
	size_t inlen, incap;
	bool done, reset;
	uint64_t code;
};

struct tclient {
	uv_udp_t udp;
	uv_timer_t timer;
	ngtcp2_conn *conn;
	gnutls_session_t tls;
	gnutls_certificate_credentials_t cred;
	ngtcp2_crypto_conn_ref ref;
	struct sockaddr_storage local;
	struct sockaddr_in remote;
	bool hs_done, closed;
	ngtcp2_ccerr ccerr;
	char alpn[32];
	struct tstream st[MAX_TSTREAMS];
	int nst;
};

static struct tstream *tc_find(struct tclient *tc, int64_t id)
{
	for (int i = 0; i < tc->nst; i++)
		if (tc->st[i].id == id)
			return &tc->st[i];
	return NULL;
}

static void tc_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
	gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

static int tc_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud)
{
	gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen);
	cid->datalen = cidlen;
	gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN);
	return 0;
}

static int tc_hs_done(ngtcp2_conn *conn, void *ud)
{
	struct tclient *tc = ud;
	tc->hs_done = true;
	gnutls_datum_t p;
	if (gnutls_alpn_get_selected_protocol(tc->tls, &p) == 0)
		snprintf(tc->alpn, sizeof(tc->alpn), "%.*s", (int)p.size, p.data);
	return 0;
}

static int tc_recv(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t off, const uint8_t *data, size_t len,
		   void *ud, void *sud)
{
	struct tstream *s = tc_find(ud, id);
	ngtcp2_conn_extend_max_stream_offset(conn, id, len);
	ngtcp2_conn_extend_max_offset(conn, len);
	if (s == NULL)
		return 0;
	if (s->inlen + len > s->incap) {
		s->incap = (s->inlen + len) * 2;
		s->in = realloc(s->in, s->incap);
	}
	memcpy(s->in + s->inlen, data, len);
	s->inlen += len;
	if (flags & NGTCP2_STREAM_DATA_FLAG_FIN)
		s->done = true;
	return 0;
}

static int tc_reset(ngtcp2_conn *conn, int64_t id, uint64_t final_size, uint64_t code, void *ud, void *sud)
{
	struct tstream *s = tc_find(ud, id);
	if (s != NULL) {
		s->reset = s->done = true;
		s->code = code;
	}
	return 0;
}

static int tc_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t code, void *ud, void *sud)
{
	struct tstream *s = tc_find(ud, id);
	if (s != NULL && !s->done && (flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET)) {
		s->reset = s->done = true;
		s->code = code;
	}
	return 0;
}

static const ngtcp2_callbacks tc_callbacks = {
	.client_initial = ngtcp2_crypto_client_initial_cb,
	.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
	.handshake_completed = tc_hs_done,
	.encrypt = ngtcp2_crypto_encrypt_cb,
	.decrypt = ngtcp2_crypto_decrypt_cb,
	.hp_mask = ngtcp2_crypto_hp_mask_cb,
	.recv_stream_data = tc_recv,
	.stream_close = tc_stream_close,
	.stream_reset = tc_reset,
	.recv_retry = ngtcp2_crypto_recv_retry_cb,
	.rand = tc_rand,
	.get_new_connection_id = tc_new_cid,
	.update_key = ngtcp2_crypto_update_key_cb,
	.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
	.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
	.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
	.version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

static ngtcp2_conn *tc_get_conn(ngtcp2_crypto_conn_ref *ref)
{
	return ((struct tclient *)ref->user_data)->conn;
}

static void tc_timer(uv_timer_t *t);

static void tc_write(struct tclient *tc)
{
	if (tc->closed)
		return;
	uint8_t buf[1500];
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_tstamp ts = uv_hrtime();
	bool blocked[MAX_TSTREAMS] = {0};
	for (int guard = 0; guard < 100000; guard++) {
		struct tstream *s = NULL;
		int si = -1;
		for (int i = 0; i < tc->nst; i++)
			if (!blocked[i] && !tc->st[i].fin_sent && (tc->st[i].outoff < tc->st[i].outlen || tc->st[i].fin)) {
				s = &tc->st[i];
				si = i;
				break;
			}
		ngtcp2_vec v = {0};
		uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
		if (s != NULL) {
			v.base = s->out + s->outoff;
			v.len = s->outlen - s->outoff;
			if (s->fin)
				flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
		}
		ngtcp2_ssize nd = -1;
		ngtcp2_pkt_info pi;
		ngtcp2_ssize n = ngtcp2_conn_writev_stream(tc->conn, &ps.path, &pi, buf, sizeof(buf) > 1452 ? 1452 : sizeof(buf),
							   &nd, flags, s ? s->id : -1, &v, s ? 1 : 0, ts);
		if (s != NULL && nd >= 0) {
			s->outoff += (size_t)nd;
			if (s->outoff == s->outlen && s->fin)
				s->fin_sent = true;
			else if (s->outoff == s->outlen && !s->fin)
				blocked[si] = true; /* all written, no FIN wanted */
		}
		if (n < 0) {
			if (n == NGTCP2_ERR_WRITE_MORE)
				continue;
			if (s != NULL && (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR ||
					  n == NGTCP2_ERR_STREAM_NOT_FOUND)) {
				blocked[si] = true;
				continue;
			}
			tc->closed = true;
			return;
		}
		if (n == 0)
			break;
		uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);
		uv_udp_try_send(&tc->udp, &b, 1, (const struct sockaddr *)&tc->remote);
	}
	ngtcp2_conn_update_pkt_tx_time(tc->conn, ts);
	ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(tc->conn), now = uv_hrtime();
	if (exp != UINT64_MAX)
		uv_timer_start(&tc->timer, tc_timer, exp <= now ? 0 : (exp - now + 999999) / 1000000, 0);
}

static void tc_timer(uv_timer_t *t)
{
	struct tclient *tc = t->data;
	if (tc->closed)
		return;
	if (ngtcp2_conn_handle_expiry(tc->conn, uv_hrtime()) != 0) {
		tc->closed = true;
		return;
	}
	tc_write(tc);
}

static void tc_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	static uint8_t rb[65536];
	*b = uv_buf_init((char *)rb, sizeof(rb));
}

static void tc_on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b, const struct sockaddr *from, unsigned flags)
{
	struct tclient *tc = h->data;
	if (n <= 0 || tc->closed)
		return;
	ngtcp2_path path = {
		.local = {(ngtcp2_sockaddr *)&tc->local, sizeof(struct sockaddr_in)},
		.remote = {(ngtcp2_sockaddr *)from, sizeof(struct sockaddr_in)},
	};
	ngtcp2_pkt_info pi = {0};
	int rv = ngtcp2_conn_read_pkt(tc->conn, &path, &pi, (const uint8_t *)b->base, (size_t)n, uv_hrtime());
	if (rv != 0) {
		tc->ccerr = *ngtcp2_conn_get_ccerr(tc->conn);
		tc->closed = true;
		return;
	}
	tc_write(tc);
}

/* Starts a connection to the test server offering `alpn` (NULL: none). */
static struct tclient *tc_new(const char *alpn)
{
	struct tclient *tc = calloc(1, sizeof(*tc));
	uv_udp_init(&N.loop, &tc->udp);
	uv_timer_init(&N.loop, &tc->timer);
	tc->udp.data = tc->timer.data = tc;
	uv_ip4_addr("127.0.0.1", 0, (struct sockaddr_in *)&tc->local);
	cr_assert_eq(uv_udp_bind(&tc->udp, (const struct sockaddr *)&tc->local, 0), 0);
	int len = sizeof(tc->local);
	uv_udp_getsockname(&tc->udp, (struct sockaddr *)&tc->local, &len);
	uv_ip4_addr("127.0.0.1", N.qs != NULL ? quic_server_port(N.qs) : N.galgod_port, &tc->remote);
	uv_udp_recv_start(&tc->udp, tc_alloc, tc_on_recv);

	ngtcp2_cid dcid = {.datalen = 16}, scid = {.datalen = 12};
	gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
	gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
	ngtcp2_settings st;
	ngtcp2_settings_default(&st);
	st.initial_ts = uv_hrtime();
	ngtcp2_transport_params p;
	ngtcp2_transport_params_default(&p);
	p.initial_max_stream_data_bidi_local = 8u << 20;
	p.initial_max_data = 64u << 20;
	p.max_idle_timeout = 60 * NGTCP2_SECONDS;
	ngtcp2_path path = {
		.local = {(ngtcp2_sockaddr *)&tc->local, sizeof(struct sockaddr_in)},
		.remote = {(ngtcp2_sockaddr *)&tc->remote, sizeof(struct sockaddr_in)},
	};
	cr_assert_eq(ngtcp2_conn_client_new(&tc->conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &tc_callbacks, &st,
					    &p, NULL, tc),
		     0);
	cr_assert_eq(gnutls_certificate_allocate_credentials(&tc->cred), 0);
	cr_assert_eq(gnutls_init(&tc->tls, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA), 0);
	cr_assert_eq(gnutls_priority_set_direct(tc->tls, "NORMAL:-VERS-ALL:+VERS-TLS1.3:%DISABLE_TLS13_COMPAT_MODE",
						NULL),
		     0);
	cr_assert_eq(ngtcp2_crypto_gnutls_configure_client_session(tc->tls), 0);
	gnutls_credentials_set(tc->tls, GNUTLS_CRD_CERTIFICATE, tc->cred);
	gnutls_server_name_set(tc->tls, GNUTLS_NAME_DNS, "localhost", 9);
	if (alpn != NULL) {
		gnutls_datum_t d = {(unsigned char *)alpn, (unsigned)strlen(alpn)};
		gnutls_alpn_set_protocols(tc->tls, &d, 1, 0);
	}
	tc->ref.get_conn = tc_get_conn;
	tc->ref.user_data = tc;
	gnutls_session_set_ptr(tc->tls, &tc->ref);
	ngtcp2_conn_set_tls_native_handle(tc->conn, tc->tls);
	tc_write(tc);
	return tc;
}

static bool tc_ready_or_closed(void *arg)
{
	struct tclient *tc = arg;
	return tc->hs_done || tc->closed;
}

static struct tclient *tc_connect(const char *alpn)
{
	struct tclient *tc = tc_new(alpn);
	run_until(tc_ready_or_closed, tc, "the handshake");
	return tc;
}

static void tc_free(struct tclient *tc)
{
	ngtcp2_conn_del(tc->conn);
	gnutls_deinit(tc->tls);
	gnutls_certificate_free_credentials(tc->cred);
	for (int i = 0; i < tc->nst; i++) {
		free(tc->st[i].out);
		free(tc->st[i].in);
	}
	uv_close((uv_handle_t *)&tc->udp, NULL);
	uv_close((uv_handle_t *)&tc->timer, NULL);
	uv_run(&N.loop, UV_RUN_NOWAIT);
	free(tc);
}

/* Opens a stream and sends `len` bytes of p, then FIN if `fin`. Returns the stream's index. */
static int tc_send(struct tclient *tc, const void *p, size_t len, bool fin)
{
	cr_assert(tc->nst < MAX_TSTREAMS);
	struct tstream *s = &tc->st[tc->nst];
	cr_assert_eq(ngtcp2_conn_open_bidi_stream(tc->conn, &s->id, NULL), 0);
	s->out = malloc(len > 0 ? len : 1);
	memcpy(s->out, p, len);
	s->outlen = len;
	s->fin = fin;
	tc->nst++;
	tc_write(tc);
	return tc->nst - 1;
}

struct stream_ref {
	struct tclient *tc;
	int i;
};

static bool stream_done(void *arg)
{
	struct stream_ref *r = arg;
	return r->tc->st[r->i].done || r->tc->closed;
}

static bool stream_all_sent(void *arg)
{
	const struct tstream *s = arg;
	return s->outoff == s->outlen;
}

static struct tstream *tc_wait(struct tclient *tc, int i)
{
	struct stream_ref r = {tc, i};
	run_until(stream_done, &r, "a stream's end");
	cr_assert(!tc->closed, "the connection closed (error 0x%llx)", (unsigned long long)tc->ccerr.error_code);
	return &tc->st[i];
}

/* A request frame: NonReplicated with `code`, a body of `len` patterned bytes. The caller frees it. */
static uint8_t *request(uint32_t code, size_t len, uint64_t client, size_t *total)
{
	uint8_t *f = malloc(FRAME_HEADER_SIZE + len);
	struct frame_request r = {.size = (uint32_t)(FRAME_HEADER_SIZE + len), .client = {client, 0},
				  .operation = FRAME_OP_NON_REPLICATED, .code = code};
	frame_request_encode(f, &r);
	for (size_t i = 0; i < len; i++)
		f[FRAME_HEADER_SIZE + i] = (uint8_t)(i * 13 + code);
	*total = FRAME_HEADER_SIZE + len;
	return f;
}

/* Asserts that the stream got back exactly one Reply frame for `req` whose body equals `body`. */
static void assert_reply(const struct tstream *s, const uint8_t *req, const void *body, size_t len)
{
	cr_assert(!s->reset, "stream reset with code %llu", (unsigned long long)s->code);
	cr_assert_eq(s->inlen, FRAME_HEADER_SIZE + len, "reply of %zu bytes, expected %zu", s->inlen,
		     FRAME_HEADER_SIZE + len);
	struct frame_reply rep;
	cr_assert_eq(frame_reply_decode(s->in, &rep), 0);
	cr_assert_eq(rep.size, FRAME_HEADER_SIZE + len);
	cr_assert_eq(rep.status, 0);
	struct frame_request r;
	cr_assert_eq(frame_request_decode(req, &r), 0);
	cr_assert_eq(rep.client.lo, r.client.lo);
	cr_assert(len == 0 || memcmp(s->in + FRAME_HEADER_SIZE, body, len) == 0, "reply body differs");
}

/* ---- Tests ---- */

static bool node_opened(void *arg)
{
	return N.opened >= *(int *)arg;
}

Test(quic, one_request_per_stream_and_its_reply_with_fin)
{
	start_server(16, 0);
	struct tclient *tc = tc_connect(NULL);
	cr_assert(tc->hs_done && !tc->closed);
	cr_assert_str_eq(tc->alpn, "", "no ALPN offered, none chosen");
	size_t n;
	uint8_t *f = request(CODE_ECHO, 100, 7, &n);
	int i = tc_send(tc, f, n, true);
	struct tstream *s = tc_wait(tc, i);
	assert_reply(s, f, f + FRAME_HEADER_SIZE, 100);
	cr_assert_eq(N.opened, 1);
	cr_assert_eq(N.frames, 1);
	cr_assert_eq(quic_server_conn_count(N.qs), 1);
	free(f);
	tc_free(tc);
}

Test(quic, alpn_iggy_is_chosen_and_another_one_is_tolerated)
{
	start_server(16, 0);
	struct tclient *a = tc_connect("iggy");
	cr_assert(a->hs_done);
	cr_assert_str_eq(a->alpn, "iggy");
	struct tclient *b = tc_connect("h3");
	cr_assert(b->hs_done, "a client offering another protocol is served");
	cr_assert_str_eq(b->alpn, "");
	tc_free(a);
	tc_free(b);
}

Test(quic, many_streams_at_once_and_large_frames)
{
	start_server(16, 0);
	struct tclient *tc = tc_connect(NULL);
	/* Eight concurrent streams (the limit), one of 3 MiB: many packets, flow-control credit returned. */
	uint8_t *f[8];
	size_t n[8], len[8];
	int idx[8];
	for (int k = 0; k < 8; k++) {
		len[k] = k == 3 ? (3u << 20) : 1000u * (size_t)k;
		f[k] = request(CODE_ECHO, len[k], 100 + (uint64_t)k, &n[k]);
		idx[k] = tc_send(tc, f[k], n[k], true);
	}
	for (int k = 0; k < 8; k++)
		assert_reply(tc_wait(tc, idx[k]), f[k], f[k] + FRAME_HEADER_SIZE, len[k]);
	/* More streams than the limit, one after another: the credit comes back as streams close. */
	for (int k = 0; k < 20; k++) {
		size_t m;
		uint8_t *g = request(CODE_ECHO, 10, 500 + (uint64_t)k, &m);
		int i = tc_send(tc, g, m, true);
		assert_reply(tc_wait(tc, i), g, g + FRAME_HEADER_SIZE, 10);
		free(g);
	}
	for (int k = 0; k < 8; k++)
		free(f[k]);
	cr_assert_eq(N.frames, 28);
	tc_free(tc);
}

/*
 * Every datagram through a small send queue (as when the socket is full): connections pause when it is
 * full and resume as it drains, and every reply arrives intact.
 */
Test(quic, a_full_send_queue_pauses_connections_and_everything_arrives)
{
	server_queue_all = true;
	start_server(16, 0);
	struct tclient *a = tc_connect(NULL), *b = tc_connect(NULL);
	size_t n[4];
	uint8_t *f[4];
	int idx[4];
	for (int k = 0; k < 4; k++) {
		f[k] = request(CODE_ECHO, (1u << 20) + (size_t)k, 30 + (uint64_t)k, &n[k]);
		idx[k] = tc_send(k % 2 ? b : a, f[k], n[k], true);
	}
	for (int k = 0; k < 4; k++) {
		assert_reply(tc_wait(k % 2 ? b : a, idx[k]), f[k], f[k] + FRAME_HEADER_SIZE, (1u << 20) + (size_t)k);
		free(f[k]);
	}
	uint64_t queued, pauses;
	quic_server_send_stats(N.qs, &queued, &pauses);
	cr_assert_gt(queued, 4 * 700, "every reply datagram went through the queue (%llu)", (unsigned long long)queued);
	cr_assert_gt(pauses, 0, "the 16 KiB queue filled up");
	tc_free(a);
	tc_free(b);
}

Test(quic, replies_from_files_and_from_later_callbacks)
{
	start_server(16, 0);
	struct tclient *tc = tc_connect(NULL);
	size_t n;
	uint8_t *f = request(CODE_FILE, 0, 9, &n);
	struct tstream *s = tc_wait(tc, tc_send(tc, f, n, true));
	uint8_t *expect = malloc(N.file_len);
	cr_assert_eq(pread(N.file_fd, expect, N.file_len, 0), (ssize_t)N.file_len);
	assert_reply(s, f, expect, N.file_len);
	free(expect);
	free(f);
	f = request(CODE_LATER, 0, 10, &n);
	s = tc_wait(tc, tc_send(tc, f, n, true));
	assert_reply(s, f, NULL, 0);
	free(f);
	tc_free(tc);
}

/* The request's bytes first and the FIN alone in a later, empty STREAM frame (as some clients do). */
Test(quic, a_fin_in_an_empty_stream_frame_completes_the_request)
{
	start_server(16, 0);
	struct tclient *tc = tc_connect(NULL);
	size_t n;
	uint8_t *f = request(CODE_ECHO, 40, 5, &n);
	int i = tc_send(tc, f, n, false);
	struct tstream *s = &tc->st[i];
	/* Every byte goes out without FIN; then the FIN follows on its own. */
	run_until(stream_all_sent, s, "the request bytes to leave");
	s->fin = true;
	tc_write(tc);
	assert_reply(tc_wait(tc, i), f, f + FRAME_HEADER_SIZE, 40);
	free(f);
	tc_free(tc);
}

/* Malformed streams are reset with the Iggy error code; the same connection keeps working. */
Test(quic, malformed_streams_are_reset_and_the_connection_goes_on)
{
	start_server(16, 0);
	struct tclient *tc = tc_connect(NULL);
	size_t n;
	uint8_t *good = request(CODE_ECHO, 300, 11, &n);

	struct {
		const char *what;
		uint8_t *bytes;
		size_t len;
		bool fin;
		uint64_t code;
	} cases[6];
	int nc = 0;
	uint8_t small[FRAME_HEADER_SIZE];
	memcpy(small, good, sizeof(small));
	frame_put32(small + FRAME_OFF_SIZE, 100);
	cases[nc++] = (typeof(cases[0])){"size below 256", small, sizeof(small), true, QUIC_APP_INVALID_FORMAT};
	uint8_t *huge = malloc(n);
	memcpy(huge, good, n);
	frame_put32(huge + FRAME_OFF_SIZE, FRAME_MAX_SIZE + 1);
	cases[nc++] = (typeof(cases[0])){"size above the limit", huge, n, true, QUIC_APP_INVALID_FORMAT};
	cases[nc++] = (typeof(cases[0])){"truncated frame", good, n - 10, true, QUIC_APP_INVALID_FORMAT};
	uint8_t *longer = malloc(n + 5);
	memcpy(longer, good, n);
	memset(longer + n, 0xAB, 5);
	cases[nc++] = (typeof(cases[0])){"bytes after the frame", longer, n + 5, true, QUIC_APP_INVALID_FORMAT};
	uint8_t *notreq = malloc(n);
	memcpy(notreq, good, n);
	notreq[FRAME_OFF_COMMAND] = FRAME_CMD_REPLY;
	cases[nc++] = (typeof(cases[0])){"a reply header", notreq, n, true, QUIC_APP_INVALID_COMMAND};
	uint8_t *badop = malloc(n);
	memcpy(badop, good, n);
	struct frame_request r = {.size = (uint32_t)n, .client = {0, 0}, .operation = FRAME_OP_NON_REPLICATED, .code = 1};
	frame_request_encode(badop, &r); /* client id 0 */
	cases[nc++] = (typeof(cases[0])){"client id 0", badop, n, true, QUIC_APP_INVALID_COMMAND};

	for (int k = 0; k < nc; k++) {
		struct tstream *s = tc_wait(tc, tc_send(tc, cases[k].bytes, cases[k].len, cases[k].fin));
		cr_assert(s->reset, "%s: the stream was answered instead of reset", cases[k].what);
		cr_assert_eq(s->code, cases[k].code, "%s: code %llu", cases[k].what, (unsigned long long)s->code);
		/* The connection still serves requests. */
		struct tstream *ok = tc_wait(tc, tc_send(tc, good, n, true));
		assert_reply(ok, good, good + FRAME_HEADER_SIZE, 300);
	}
	cr_assert_eq(N.frames, nc, "no malformed stream reached the node");
	cr_assert_eq(N.closed, 0);
	free(huge);
	free(longer);
	free(notreq);
	free(badop);
	free(good);
	tc_free(tc);
}

/* ---- Raw datagrams ---- */

struct raw {
	uv_udp_t udp;
	int got;
	uint8_t last[2048];
	size_t last_len;
};

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	static uint8_t rb[65536];
	*b = uv_buf_init((char *)rb, sizeof(rb));
}

static void raw_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *b, const struct sockaddr *from, unsigned flags)
{
	struct raw *r = h->data;
	if (n <= 0)
		return;
	r->got++;
	r->last_len = (size_t)n < sizeof(r->last) ? (size_t)n : sizeof(r->last);
	memcpy(r->last, b->base, r->last_len);
}

static void raw_send(struct raw *r, const uint8_t *p, size_t n)
{
	struct sockaddr_in to;
	uv_ip4_addr("127.0.0.1", quic_server_port(N.qs), &to);
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
	cr_assert_eq(uv_udp_try_send(&r->udp, &b, 1, (const struct sockaddr *)&to), (int)n);
}

static bool raw_got(void *arg)
{
	return ((struct raw *)arg)->got > 0;
}

Test(quic, garbage_datagrams_are_dropped_and_others_keep_working)
{
	start_server(16, 0);
	struct tclient *before = tc_connect(NULL);
	struct raw r = {0};
	uv_udp_init(&N.loop, &r.udp);
	r.udp.data = &r;
	struct sockaddr_in any;
	uv_ip4_addr("127.0.0.1", 0, &any);
	uv_udp_bind(&r.udp, (const struct sockaddr *)&any, 0);
	uv_udp_recv_start(&r.udp, raw_alloc, raw_recv);
	uint8_t buf[1400];
	unsigned seed = 12345;
	for (int k = 0; k < 300; k++) {
		size_t len = 1 + (size_t)(rand_r(&seed) % sizeof(buf));
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand_r(&seed);
		if (k % 3 == 0) {
			/* A long-header Initial of version 1 cut short, or with random lengths inside. */
			buf[0] = 0xC0 | (buf[0] & 0x0F);
			memcpy(buf + 1, "\x00\x00\x00\x01", 4);
			buf[5] = (uint8_t)(k % 21);
		}
		raw_send(&r, buf, len);
	}
	/* Short-header packets for connection IDs nobody has. */
	for (int k = 0; k < 20; k++) {
		buf[0] = 0x40;
		raw_send(&r, buf, 60);
	}
	uv_run(&N.loop, UV_RUN_NOWAIT);
	cr_assert_eq(N.opened, 1, "garbage opened no session");
	/* The existing connection and a new one still work. */
	size_t n;
	uint8_t *f = request(CODE_ECHO, 50, 3, &n);
	assert_reply(tc_wait(before, tc_send(before, f, n, true)), f, f + FRAME_HEADER_SIZE, 50);
	struct tclient *after = tc_connect(NULL);
	cr_assert(after->hs_done);
	assert_reply(tc_wait(after, tc_send(after, f, n, true)), f, f + FRAME_HEADER_SIZE, 50);
	free(f);
	uv_close((uv_handle_t *)&r.udp, NULL);
	uv_run(&N.loop, UV_RUN_NOWAIT); /* the handle lives on this stack frame */
	tc_free(before);
	tc_free(after);
}

Test(quic, an_unknown_version_gets_version_negotiation)
{
	start_server(16, 0);
	struct raw r = {0};
	uv_udp_init(&N.loop, &r.udp);
	r.udp.data = &r;
	struct sockaddr_in any;
	uv_ip4_addr("127.0.0.1", 0, &any);
	uv_udp_bind(&r.udp, (const struct sockaddr *)&any, 0);
	uv_udp_recv_start(&r.udp, raw_alloc, raw_recv);
	uint8_t pkt[1200] = {0xC0, 0x1a, 0x2a, 0x3a, 0x4a, 8, 1, 2, 3, 4, 5, 6, 7, 8, 4, 9, 9, 9, 9};
	raw_send(&r, pkt, sizeof(pkt));
	run_until(raw_got, &r, "a version negotiation packet");
	cr_assert(r.last_len >= 7);
	cr_assert(r.last[0] & 0x80, "long header");
	cr_assert_eq(frame_le32(r.last + 1), 0, "version 0 marks version negotiation");
	/* Its destination ID is our source ID and vice versa. */
	cr_assert_eq(r.last[5], 4);
	cr_assert_eq(memcmp(r.last + 6, "\x09\x09\x09\x09", 4), 0);
	uv_close((uv_handle_t *)&r.udp, NULL);
	uv_run(&N.loop, UV_RUN_NOWAIT); /* the handle lives on this stack frame */
}

static bool tc_closed(void *arg)
{
	return ((struct tclient *)arg)->closed;
}

Test(quic, connections_beyond_the_limit_are_refused)
{
	start_server(1, 0);
	struct tclient *a = tc_connect(NULL);
	cr_assert(a->hs_done);
	struct tclient *b = tc_new(NULL);
	run_until(tc_closed, b, "the refusal");
	cr_assert(!b->hs_done);
	cr_assert_eq(b->ccerr.error_code, NGTCP2_CONNECTION_REFUSED, "error 0x%llx",
		     (unsigned long long)b->ccerr.error_code);
	size_t n;
	uint8_t *f = request(CODE_ECHO, 5, 3, &n);
	assert_reply(tc_wait(a, tc_send(a, f, n, true)), f, f + FRAME_HEADER_SIZE, 5);
	free(f);
	tc_free(a);
	tc_free(b);
}

Test(quic, a_refused_session_closes_the_connection)
{
	start_server(16, 0);
	N.refuse = true;
	struct tclient *tc = tc_new(NULL);
	run_until(tc_closed, tc, "the close");
	cr_assert_eq(tc->ccerr.type, NGTCP2_CCERR_TYPE_APPLICATION);
	cr_assert_eq(tc->ccerr.error_code, QUIC_APP_SERVER_BUSY);
	cr_assert_eq(N.closed, 0, "a session never opened is never closed");
	tc_free(tc);
}

static bool node_closed(void *arg)
{
	return N.closed >= 1;
}

Test(quic, an_idle_connection_is_dropped_after_the_idle_timeout)
{
	start_server(16, 1000);
	struct tclient *tc = tc_connect(NULL);
	cr_assert(tc->hs_done);
	/* The client stays silent (its own limit is 60 s): the server's 1 s ends the session. */
	uv_timer_stop(&tc->timer);
	run_until(node_closed, NULL, "the idle timeout");
	cr_assert_eq(N.closed, 1);
	cr_assert_eq(quic_server_conn_count(N.qs), 0);
	tc_free(tc);
}

Test(quic, closing_the_server_sends_connection_close_and_ends_sessions)
{
	start_server(16, 0);
	struct tclient *a = tc_connect(NULL), *b = tc_connect("iggy");
	int two = 2;
	run_until(node_opened, &two, "two sessions");
	quic_server_close(N.qs);
	N.qs = NULL;
	cr_assert_eq(N.closed, 2);
	run_until(tc_closed, a, "the first client's close");
	run_until(tc_closed, b, "the second client's close");
	cr_assert_eq(a->ccerr.type, NGTCP2_CCERR_TYPE_APPLICATION);
	cr_assert_eq(a->ccerr.error_code, QUIC_APP_NO_ERROR);
	tc_free(a);
	tc_free(b);
}

Test(quic, bad_options_are_refused)
{
	struct quic_opts o;
	struct quic_server *s = NULL;
	char err[256];
	quic_opts_default(&o);
	o.address = "nonsense";
	o.cert_file = o.key_file = "/nonexistent";
	cr_assert_eq(quic_server_new(&N.loop, &o, &node_handler, NULL, &s, err, sizeof(err)), -EINVAL);
	o.address = "127.0.0.1:0";
	cr_assert_eq(quic_server_new(&N.loop, &o, &node_handler, NULL, &s, err, sizeof(err)), -EIO);
	cr_assert(strstr(err, "/nonexistent") != NULL, "%s", err);
	cr_assert_null(s);
}

/* ---- The real galgod over QUIC ---- */

extern char **environ;

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Starts GALGO_BUILD_DIR/galgod with QUIC on a free port; returns its output pipe once it is ready. */
static int galgod_start(char *out, size_t cap)
{
	char data[128];
	snprintf(data, sizeof(data), "--node.data_dir=%s/data", N.dir);
	char *argv[] = {GALGO_BUILD_DIR "/galgod", data, "--tcp.address=127.0.0.1:0", "--http.enabled=false",
			"--websocket.enabled=false",
			"--quic.address=127.0.0.1:0", "--with-default-root-credentials", NULL};
	char *envp[256];
	int envc = 0;
	for (char **e = environ; *e != NULL && envc < 255; e++)
		if (strncmp(*e, "GALGO_", 6) != 0 && strncmp(*e, "IGGY_", 5) != 0)
			envp[envc++] = *e;
	envp[envc] = NULL;
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		if (chdir(N.dir) != 0)
			_exit(126);
		execve(argv[0], argv, envp);
		_exit(127);
	}
	close(fds[1]);
	N.galgod_pid = pid;
	size_t len = 0;
	out[0] = '\0';
	uint64_t end = mono_ms() + DEADLINE_MS;
	const char *ready;
	while ((ready = strstr(out, "galgod ready")) == NULL || strchr(ready, '\n') == NULL) {
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		cr_assert(mono_ms() < end, "no 'galgod ready':\n%s", out);
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fds[0], out + len, cap - len - 1);
		cr_assert(n > 0, "galgod exited:\n%s", out);
		len += (size_t)n;
		out[len] = '\0';
	}
	const char *q = strstr(ready, "quic 127.0.0.1:");
	cr_assert_not_null(q, "%s", ready);
	N.galgod_port = atoi(q + strlen("quic 127.0.0.1:"));
	cr_assert(N.galgod_port > 0, "%s", ready);
	return fds[0];
}

/* SIGTERM; galgod must exit 0 (under ASan: also without leaks). */
static void galgod_stop(void)
{
	/* A pidfd becomes readable when the process exits: the wait is for that event, bounded. */
	int pfd = (int)syscall(SYS_pidfd_open, N.galgod_pid, 0);
	cr_assert_eq(kill(N.galgod_pid, SIGTERM), 0);
	uint64_t end = mono_ms() + DEADLINE_MS;
	int status = 0;
	pid_t r;
	while ((r = waitpid(N.galgod_pid, &status, WNOHANG)) == 0 && mono_ms() < end) {
		struct pollfd p = {.fd = pfd, .events = POLLIN};
		poll(pfd >= 0 ? &p : NULL, pfd >= 0 ? 1 : 0, pfd >= 0 ? (int)(end - mono_ms()) : 20);
	}
	if (pfd >= 0)
		close(pfd);
	if (r == 0)
		kill(N.galgod_pid, SIGKILL);
	cr_assert(r == N.galgod_pid && WIFEXITED(status) && WEXITSTATUS(status) == 0, "galgod status 0x%x",
		  (unsigned)status);
	N.galgod_pid = 0;
}

/* A request frame to the real galgod (NonReplicated `code`, empty body) on a new stream; the reply. */
static struct tstream *galgod_call(struct tclient *tc, uint32_t code, uint64_t client)
{
	uint8_t f[FRAME_HEADER_SIZE];
	struct frame_request r = {.size = FRAME_HEADER_SIZE, .client = {client, 0}, .operation = FRAME_OP_NON_REPLICATED,
				  .code = code};
	frame_request_encode(f, &r);
	return tc_wait(tc, tc_send(tc, f, sizeof(f), true));
}

static uint32_t reply_status(const struct tstream *s)
{
	struct frame_reply rep;
	cr_assert(!s->reset, "stream reset with %llu", (unsigned long long)s->code);
	cr_assert_eq(frame_reply_decode(s->in, &rep), 0);
	cr_assert_eq(rep.size, s->inlen);
	return rep.status;
}

/* galgod over QUIC: requests are answered by the server, malformed streams reset, galgod stays up. */
Test(quic, galgod_answers_over_quic_and_survives_bad_streams)
{
	static char out[1 << 16];
	int fd = galgod_start(out, sizeof(out));
	struct tclient *tc = tc_connect(NULL);
	cr_assert(tc->hs_done, "handshake with galgod");
	cr_assert_eq(reply_status(galgod_call(tc, FRAME_CODE_PING, 42)), 0, "ping");
	/* Before login a read is refused with Iggy's Unauthenticated (40), on the stream of the request. */
	cr_assert_eq(reply_status(galgod_call(tc, FRAME_CODE_GET_STREAMS, 42)), 40);
	uint8_t junk[300];
	memset(junk, 0x5A, sizeof(junk));
	struct tstream *s = tc_wait(tc, tc_send(tc, junk, sizeof(junk), true));
	cr_assert(s->reset && s->code == QUIC_APP_INVALID_FORMAT, "junk stream: reset %d code %llu", s->reset,
		  (unsigned long long)s->code);
	uint8_t half[FRAME_HEADER_SIZE];
	struct frame_request r = {.size = 1000, .client = {42, 0}, .operation = FRAME_OP_NON_REPLICATED, .code = 1};
	frame_request_encode(half, &r);
	s = tc_wait(tc, tc_send(tc, half, sizeof(half), true));
	cr_assert(s->reset && s->code == QUIC_APP_INVALID_FORMAT, "truncated frame");
	cr_assert_eq(reply_status(galgod_call(tc, FRAME_CODE_PING, 42)), 0, "ping after bad streams");
	/* A second connection works alongside. */
	struct tclient *other = tc_connect("iggy");
	cr_assert_eq(reply_status(galgod_call(other, FRAME_CODE_PING, 43)), 0);
	tc_free(other);
	tc_free(tc);
	galgod_stop();
	close(fd);
}
