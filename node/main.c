/*
 * galgod — the Galgo server process.
 *
 * Startup: read the configuration (exit 2 on a bad one, 0 after --help or --version), lock the data directory (exit 1
 * if that fails), load the metadata and open every partition it names (node/server), start the TCP
 * listener (transport/tcp; with tcp.tls_enabled, inside TLS with the context node/tlscert makes, exit 1
 * if that fails) and log "galgod ready". SIGINT and SIGTERM stop the process cleanly within
 * SHUTDOWN_BOUND_MS whatever the clients do (galgod_shutdown: drain, close, teardown; see
 * docs/ARCHITECTURE.md, "Shutdown"): every partition log is closed (which flushes it), the loop is torn
 * down, the lock released, and the exit status is 0. SIGHUP is logged and otherwise ignored. A node whose
 * replica of the metadata group stopped (a failed write: a full disk) shuts down the same way on its own
 * and exits with status 1 (srv_fatal, fail-stop).
 *
 * This file is the wiring: it maps the TCP transport's callbacks onto server sessions, those of QUIC
 * (transport/quic: a session per connection, a stream per request; TLS from quic.tls_cert/tls_key or the
 * development certificate node/tlscert makes) and those of the HTTP API (transport/http, HTTPS with
 * http.tls_enabled) too: there every REST request is a session of its own, bound to the user of its
 * access token (srv_session_bind_user) or logged in by the Register frame the listener forwards. The
 * WebSocket listener (transport/ws, wss with websocket.tls_enabled) is a TCP listener with the WebSocket
 * framing: its connections take the TCP callbacks below unchanged, as sessions of kind SRV_WS.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "node/config.h"
#include "node/datadir.h"
#include "node/log.h"
#include "partition/flusher.h"
#include "partition/pio.h"
#include "node/server.h"
#include "node/version.h"
#include "node/tlscert.h"
#include "partition/plog.h"
#include "transport/http.h"
#include "transport/quic.h"
#include "transport/tcp.h"
#include "transport/ws.h"

#define TAG "galgod"

/*
 * The shutdown's bounds, from the signal on: admitted requests have SHUTDOWN_DRAIN_MS to be answered,
 * and whatever is still open at SHUTDOWN_BOUND_MS is closed without waiting any more.
 */
#define SHUTDOWN_DRAIN_MS 3000u
#define SHUTDOWN_BOUND_MS 5000u
#define SHUTDOWN_POLL_MS 10u

struct galgod {
	struct galgo_config cfg;
	struct datadir *dd;
	uv_loop_t loop;
	bool loop_ready;
	struct flusher *fl;
	struct pio *pio;
	struct srv *srv;
	struct tcp_server *tcp;
	struct tcp_server *ws;      /* the WebSocket listener: a tcp_server with the WebSocket framing */
	struct http_server *http;
	struct quic_server *quic;
	uv_timer_t tick;
	bool tick_ready;
	uv_signal_t sigint, sigterm, sighup;
	bool signals_ready;
	int stop_signal;            /* the signal that started the shutdown, 0 before */
	int exit_status;            /* 1 once the node stopped itself (srv_fatal) */
	uv_timer_t stop_timer;      /* paces the shutdown's phases (galgod_shutdown) */
	uint64_t stop_at;           /* loop time the shutdown began */
	int stop_phase;             /* 1 drain, 2 close */
};

/* ---- TCP transport -> server sessions ---- */

static int galgod_tcp_send(void *ctx, const struct srv_piece *pieces, size_t n, void (*done)(void *, int),
			   void *arg)
{
	struct tcp_piece local[8] = {0}, *tp = n <= 8 ? local : malloc(n * sizeof(*tp));
	int rc = -ENOMEM;
	if (tp != NULL) {
		for (size_t i = 0; i < n; i++)
			tp[i] = pieces[i].mem != NULL ? TCP_REF(pieces[i].mem, pieces[i].len)
						      : TCP_FILE(pieces[i].fd, pieces[i].off, pieces[i].len);
		rc = tcp_conn_send(ctx, tp, n, done, arg);
		if (tp != local)
			free(tp);
	}
	if (rc != 0)
		done(arg, rc); /* the server's contract: done is called exactly once */
	struct srv_session *ss = tcp_conn_get_data(ctx);
	if (ss != NULL && srv_session_owed(ss) == 0)
		tcp_conn_hold(ctx, false);
	return 0;
}

/* WebSocket sessions get client ids with bit 29 set, so that they never meet those of the other transports. */
#define GALGOD_WS_CLIENT_BIT 0x20000000u

static void galgod_on_connect(struct tcp_conn *c)
{
	struct galgod *g = tcp_server_data(tcp_conn_server(c));
	bool ws = tcp_conn_server(c) == g->ws;
	struct srv_session *ss = srv_session_open(g->srv, ws ? SRV_WS : SRV_TCP, tcp_conn_peer(c),
						  (ws ? GALGOD_WS_CLIENT_BIT : 0) | tcp_conn_id(c), galgod_tcp_send, c);
	if (ss == NULL) {
		tcp_conn_abort(c);
		return;
	}
	tcp_conn_set_data(c, ss);
}

static void galgod_on_frame(struct tcp_conn *c, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv_session *ss = tcp_conn_get_data(c);
	/* The body lies in the connection's own read buffer, which the server may stamp in place. */
	if (ss == NULL)
		return;
	srv_session_frame(ss, hdr, (uint8_t *)body, len);
	/* A reply due after a flush must reach a client that has already closed its sending side. */
	if (srv_session_owed(ss) > 0)
		tcp_conn_hold(c, true);
}

static void galgod_on_close(struct tcp_conn *c)
{
	struct srv_session *ss = tcp_conn_get_data(c);
	if (ss != NULL)
		srv_session_close(ss);
	tcp_conn_set_data(c, NULL);
}

static void galgod_on_stale(struct tcp_conn *c)
{
	struct srv_session *ss = tcp_conn_get_data(c);
	if (ss != NULL && !srv_session_stale(ss)) {
		tcp_conn_restart_silence(c); /* an attached data connection: checked again after the next silence */
		return;
	}
	tcp_conn_close(c);
}

static const struct tcp_handler galgod_tcp_handler = {galgod_on_connect, galgod_on_frame, galgod_on_close,
						      galgod_on_stale};

static void galgod_tcp_log(void *ud, int level, const char *msg)
{
	static const enum glog_level map[] = {GLOG_DEBUG, GLOG_INFO, GLOG_WARN, GLOG_ERROR};
	glog_log(map[level >= 0 && level <= 3 ? level : 3], "tcp", "%s", msg);
	(void)ud;
}

/* ---- HTTP transport -> server sessions (a session per request) ---- */

/* HTTP sessions get client ids with the high bit set, so that they never meet a TCP connection's. */
#define GALGOD_HTTP_CLIENT_BIT 0x80000000u

static int galgod_http_send(void *ctx, const struct srv_piece *pieces, size_t n, void (*done)(void *, int),
			    void *arg)
{
	struct http_piece local[8] = {{0}}, *hp = n <= 8 ? local : malloc(n * sizeof(*hp));
	if (hp == NULL) {
		done(arg, -ENOMEM);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		hp[i] = (struct http_piece){pieces[i].mem, pieces[i].fd, pieces[i].off, pieces[i].len};
	http_call_send(ctx, hp, n, done, arg);
	if (hp != local)
		free(hp);
	return 0;
}

static int galgod_http_open(struct http_call *c)
{
	struct galgod *g = http_server_data(http_call_server(c));
	struct srv_session *ss = srv_session_open(g->srv, SRV_HTTP, http_call_peer(c),
						  GALGOD_HTTP_CLIENT_BIT | http_call_id(c), galgod_http_send, c);
	if (ss == NULL)
		return -ENOMEM;
	http_call_set_data(c, ss);
	return 0;
}

static int galgod_http_auth(struct http_call *c, uint32_t user_id)
{
	return srv_session_bind_user(http_call_get_data(c), user_id);
}

static void galgod_http_frame(struct http_call *c, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	srv_session_frame(http_call_get_data(c), hdr, body, len);
}

static void galgod_http_close(struct http_call *c)
{
	srv_session_close(http_call_get_data(c));
	http_call_set_data(c, NULL);
}

static const struct http_handler galgod_http_handler = {galgod_http_open, galgod_http_auth, galgod_http_frame,
							galgod_http_close};

/* ---- QUIC transport -> server sessions (a session per connection, a stream per request) ---- */

/* QUIC sessions get client ids with bit 30 set, so that they never meet TCP's or HTTP's. */
#define GALGOD_QUIC_CLIENT_BIT 0x40000000u

static int galgod_quic_send(void *ctx, const struct srv_piece *pieces, size_t n, void (*done)(void *, int),
			    void *arg)
{
	struct quic_piece local[8] = {{0}}, *qp = n <= 8 ? local : malloc(n * sizeof(*qp));
	if (qp == NULL) {
		done(arg, -ENOMEM);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		qp[i] = (struct quic_piece){pieces[i].mem, pieces[i].fd, pieces[i].off, pieces[i].len};
	quic_conn_send(ctx, qp, n, done, arg);
	if (qp != local)
		free(qp);
	return 0;
}

static int galgod_quic_open(struct quic_conn *c)
{
	struct galgod *g = quic_server_data(quic_conn_server(c));
	struct srv_session *ss = srv_session_open(g->srv, SRV_QUIC, quic_conn_peer(c),
						  GALGOD_QUIC_CLIENT_BIT | quic_conn_id(c), galgod_quic_send, c);
	if (ss == NULL)
		return -ENOMEM;
	quic_conn_set_data(c, ss);
	return 0;
}

static void galgod_quic_frame(struct quic_conn *c, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	srv_session_frame(quic_conn_get_data(c), hdr, body, len);
}

static void galgod_quic_close(struct quic_conn *c)
{
	srv_session_close(quic_conn_get_data(c));
	quic_conn_set_data(c, NULL);
}

static const struct quic_handler galgod_quic_handler = {galgod_quic_open, galgod_quic_frame, galgod_quic_close};

static void galgod_quic_log(void *ud, int level, const char *msg)
{
	static const enum glog_level map[] = {GLOG_DEBUG, GLOG_INFO, GLOG_WARN, GLOG_ERROR};
	glog_log(map[level >= 0 && level <= 3 ? level : 3], "quic", "%s", msg);
	(void)ud;
}

static int galgod_http_metrics(void *ud, char **out, size_t *len)
{
	struct galgod *g = ud;
	return srv_metrics_text(g->srv, out, len);
}

static int galgod_http_health(void *ud, bool ready, char **out, size_t *len)
{
	struct galgod *g = ud;
	return srv_health(g->srv, ready, out, len);
}

static void galgod_http_log(void *ud, int level, const char *msg)
{
	static const enum glog_level map[] = {GLOG_DEBUG, GLOG_INFO, GLOG_WARN, GLOG_ERROR};
	glog_log(map[level >= 0 && level <= 3 ? level : 3], "http", "%s", msg);
	(void)ud;
}

static void galgod_on_tick(uv_timer_t *t)
{
	struct galgod *g = t->data;
	srv_tick(g->srv);
	int fatal = srv_fatal(g->srv);
	if (fatal != 0 && g->stop_signal == 0 && g->exit_status == 0) {
		glog_error(TAG, "the metadata group stopped (%s): this node cannot keep its metadata; stopping (exit "
				"status 1) so that it restarts from its disk",
			   strerror(-fatal));
		g->exit_status = 1;
		uv_stop(&g->loop);
	}
}

/* SIGINT and SIGTERM start the shutdown (once; another ends its drain); SIGHUP is ignored for now. */
static void galgod_on_signal(uv_signal_t *h, int signum)
{
	struct galgod *g = h->data;
	if (signum == SIGHUP) {
		glog_info(TAG, "received SIGHUP; ignored");
		return;
	}
	if (g->stop_signal != 0) {
		/* A second signal cuts the drain short; the close that follows is bounded anyway. */
		glog_info(TAG, "received %s; already shutting down%s", strsignal(signum),
			  g->stop_phase == 1 ? ", ending the drain now" : "");
		if (g->stop_phase == 1)
			uv_stop(&g->loop);
		return;
	}
	g->stop_signal = signum;
	glog_info(TAG, "received %s; shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
	uv_stop(&g->loop);
}

static int galgod_start_signals(struct galgod *g)
{
	uv_signal_t *hs[] = {&g->sigint, &g->sigterm, &g->sighup};
	int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	for (int i = 0; i < 3; i++) {
		int rc = uv_signal_init(&g->loop, hs[i]);
		if (rc == 0) {
			hs[i]->data = g;
			rc = uv_signal_start(hs[i], galgod_on_signal, sigs[i]);
		}
		if (rc < 0) {
			glog_error(TAG, "cannot handle signal %d: %s", sigs[i], uv_strerror(rc));
			return rc;
		}
	}
	g->signals_ready = true;
	return 0;
}

static void galgod_close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Every admitted request answered and its reply handed to the socket (the drain is over). */
static bool galgod_drained(const struct galgod *g)
{
	return (g->srv == NULL || srv_owed(g->srv) == 0) && (g->http == NULL || http_server_calls(g->http) == 0) &&
	       (g->tcp == NULL || tcp_server_unsent(g->tcp) == 0) && (g->ws == NULL || tcp_server_unsent(g->ws) == 0);
}

/*
 * In a cluster, whether this node leads no group any more: the drain (srv_drain) hands every leadership to
 * another replica before the node goes, so its partitions change leader at once instead of after an
 * election timeout. A single node has no one to hand to.
 */
static bool galgod_handed_over(struct galgod *g)
{
	return g->srv == NULL || g->cfg.cluster.nodes[0] == '\0' || srv_drain(g->srv, true) == 0;
}

static void galgod_on_stop_timer(uv_timer_t *t)
{
	struct galgod *g = t->data;
	uint64_t elapsed = uv_now(&g->loop) - g->stop_at;
	if (g->stop_phase == 1 && ((galgod_drained(g) && galgod_handed_over(g)) || elapsed >= SHUTDOWN_DRAIN_MS))
		uv_stop(&g->loop);
	else if (g->stop_phase == 2 && elapsed >= SHUTDOWN_BOUND_MS)
		uv_stop(&g->loop);
}

/*
 * Phase 1, the drain: the listeners close and the transports stop taking new requests (a request that
 * arrives now is never handed to the server: HTTP and QUIC answer it 58, TCP leaves it unread), while
 * everything else keeps running (the node-to-node links above all: forwarded requests get their
 * answers, sends their replication), and in a cluster the node hands every leadership it holds to
 * another replica (srv_drain), until every admitted request is answered and its reply written and
 * nothing is led here, or SHUTDOWN_DRAIN_MS have passed.
 */
static void galgod_drain(struct galgod *g)
{
	if (g->tcp != NULL)
		tcp_server_drain(g->tcp);
	if (g->ws != NULL)
		tcp_server_drain(g->ws);
	if (g->http != NULL)
		http_server_drain(g->http);
	if (g->quic != NULL)
		quic_server_drain(g->quic);
	g->stop_phase = 1;
	uv_timer_start(&g->stop_timer, galgod_on_stop_timer, 0, SHUTDOWN_POLL_MS);
	uv_run(&g->loop, UV_RUN_DEFAULT);
	uint64_t took = uv_now(&g->loop) - g->stop_at;
	if (g->srv != NULL && g->cfg.cluster.nodes[0] != '\0') {
		uint32_t led = srv_drain(g->srv, true);
		if (led > 0)
			glog_warn(TAG, "shutdown: still leading %" PRIu32 " groups after %" PRIu64 " ms; they elect a new "
				       "leader once this node is gone",
				  led, took);
		else
			glog_info(TAG, "shutdown: every leadership handed over after %" PRIu64 " ms", took);
	}
	if (galgod_drained(g))
		glog_info(TAG, "shutdown: drained in %" PRIu64 " ms", took);
	else
		glog_warn(TAG, "shutdown: not drained after %" PRIu64 " ms (%zu replies owed, %zu HTTP calls, %u TCP "
			  "and WebSocket connections with unsent replies); closing", took, g->srv != NULL ? srv_owed(g->srv) : 0,
			  g->http != NULL ? http_server_calls(g->http) : 0,
			  (g->tcp != NULL ? tcp_server_unsent(g->tcp) : 0) + (g->ws != NULL ? tcp_server_unsent(g->ws) : 0));
}

/*
 * Phase 2, the close: node-to-node links, QUIC (CONNECTION_CLOSE to every client), HTTP (a call still
 * running is answered error 1, never 58: it was admitted) and TCP (connections aborted: a request without
 * its reply gets none) are closed together, and the loop runs until they are gone or the shutdown has
 * taken SHUTDOWN_BOUND_MS; what is left then is closed by the teardown's walk over every handle.
 */
static void galgod_close_network(struct galgod *g, bool bounded)
{
	if (g->tick_ready) {
		uv_timer_stop(&g->tick);
		uv_close((uv_handle_t *)&g->tick, NULL);
		g->tick_ready = false;
	}
	if (g->srv != NULL)
		srv_stop_network(g->srv);
	if (g->signals_ready) {
		/* Signal handles would keep the loop running while the listeners close. */
		uv_close((uv_handle_t *)&g->sigint, NULL);
		uv_close((uv_handle_t *)&g->sigterm, NULL);
		uv_close((uv_handle_t *)&g->sighup, NULL);
		g->signals_ready = false;
	}
	bool any = g->quic != NULL || g->http != NULL || g->tcp != NULL || g->ws != NULL;
	if (g->quic != NULL) {
		quic_server_close(g->quic);
		g->quic = NULL;
	}
	if (g->http != NULL) {
		http_server_close(g->http);
		g->http = NULL;
	}
	if (g->tcp != NULL) {
		tcp_server_close(g->tcp);
		g->tcp = NULL;
	}
	if (g->ws != NULL) {
		tcp_server_close(g->ws);
		g->ws = NULL;
	}
	if (!any)
		return;
	if (bounded) {
		/* Unreferenced: the loop ends by itself as soon as the transports are gone. */
		g->stop_phase = 2;
		uv_timer_start(&g->stop_timer, galgod_on_stop_timer, 0, SHUTDOWN_POLL_MS);
		uv_unref((uv_handle_t *)&g->stop_timer);
	}
	uv_run(&g->loop, UV_RUN_DEFAULT);
	if (bounded) {
		uint64_t took = uv_now(&g->loop) - g->stop_at;
		if (took >= SHUTDOWN_BOUND_MS)
			glog_warn(TAG, "shutdown: connections still open after %" PRIu64 " ms; closing them", took);
		else
			glog_info(TAG, "shutdown: connections closed after %" PRIu64 " ms", took);
		uv_timer_stop(&g->stop_timer);
	}
}

/*
 * Closes every partition, the flusher, the loop and the lock: whatever startup got to open. After a
 * signal (started) the network is drained and closed first, within SHUTDOWN_BOUND_MS.
 */
static void galgod_shutdown(struct galgod *g, bool started)
{
	if (started && g->loop_ready) {
		uv_update_time(&g->loop);
		g->stop_at = uv_now(&g->loop);
		uv_timer_init(&g->loop, &g->stop_timer);
		g->stop_timer.data = g;
		galgod_drain(g);
	}
	galgod_close_network(g, started && g->loop_ready);
	if (g->srv != NULL) {
		srv_free(g->srv);
		g->srv = NULL;
	}
	if (g->fl != NULL) {
		flusher_close(g->fl);
		g->fl = NULL;
	}
	if (g->pio != NULL) {
		pio_destroy(g->pio);
		g->pio = NULL;
	}
	if (g->loop_ready) {
		uv_walk(&g->loop, galgod_close_walk, NULL);
		uv_run(&g->loop, UV_RUN_DEFAULT);
		int rc = uv_loop_close(&g->loop);
		if (rc < 0)
			glog_warn(TAG, "event loop did not close cleanly: %s", uv_strerror(rc));
		g->loop_ready = false;
	}
	if (g->dd != NULL) {
		datadir_close(g->dd);
		g->dd = NULL;
	}
}

/* "host:port" with the port actually bound (IPv6 hosts in brackets), or "disabled". */
static void galgod_bound(char *out, size_t n, const char *address, bool on, int port)
{
	char host[256];
	uint16_t configured;
	if (!on || config_split_address(address, host, sizeof(host), &configured) != 0) {
		snprintf(out, n, "disabled");
		return;
	}
	bool v6 = strchr(host, ':') != NULL;
	snprintf(out, n, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

/* Logs "galgod ready" with the addresses actually bound. */
static void galgod_log_ready(const struct galgod *g)
{
	const struct galgo_config *c = &g->cfg;
	char tcp[300], http[300], quic[300], ws[300];
	galgod_bound(tcp, sizeof(tcp), c->tcp.address, g->tcp != NULL, g->tcp ? tcp_server_port(g->tcp) : 0);
	galgod_bound(http, sizeof(http), c->http.address, g->http != NULL, g->http ? http_server_port(g->http) : 0);
	galgod_bound(quic, sizeof(quic), c->quic.address, g->quic != NULL, g->quic ? quic_server_port(g->quic) : 0);
	galgod_bound(ws, sizeof(ws), c->websocket.address, g->ws != NULL, g->ws ? tcp_server_port(g->ws) : 0);
	glog_info(TAG, "galgod ready: node %" PRIu32 ", data dir %s, tcp %s, http %s%s, quic %s, websocket %s%s",
		  c->node.id, c->node.data_dir, tcp, http, g->http != NULL && c->http.tls_enabled ? " (https)" : "", quic,
		  ws, g->ws != NULL && c->websocket.tls_enabled ? " (wss)" : "");
}

/* The TCP listener (tcp.enabled), inside TLS with tcp.tls_enabled. Returns 0 or -1 (logged). */
static int galgod_start_tcp(struct galgod *g)
{
	char err[512];
	int rc;
	struct tcp_opts to;
	tcp_opts_default(&to);
	to.address = g->cfg.tcp.address;
	to.log = galgod_tcp_log;
	if (g->cfg.tcp.tls_enabled) {
		char cert[4096];
		bool generated;
		rc = tlscert_server_ctx(g->cfg.tcp.tls_cert, g->cfg.tcp.tls_key, g->cfg.node.data_dir, &to.ssl_ctx,
					cert, sizeof(cert), &generated, err, sizeof(err));
		if (rc < 0) {
			glog_error(TAG, "TLS: %s", err);
			return -1;
		}
		glog_info(TAG, "TLS on the TCP listener with %s certificate %s",
			  generated ? "a new self-signed development" : g->cfg.tcp.tls_cert[0] ? "the" : "the development",
			  cert);
	}
	rc = tcp_server_new(&g->loop, &to, &galgod_tcp_handler, g, &g->tcp);
	/* The server holds its own reference on the context. */
	if (to.ssl_ctx != NULL)
		SSL_CTX_free(to.ssl_ctx);
	if (rc < 0) {
		glog_error(TAG, "cannot listen on %s: %s", g->cfg.tcp.address, strerror(-rc));
		return -1;
	}
	return 0;
}

/* Whether websocket.address is the built-in default (config_defaults). */
static bool galgod_ws_default_address(const struct galgo_config *cfg)
{
	struct galgo_config d;
	if (config_defaults(&d) != 0)
		return false;
	bool same = strcmp(d.websocket.address, cfg->websocket.address) == 0;
	config_free(&d);
	return same;
}

/* The WebSocket listener (websocket.enabled), wss with websocket.tls_enabled. Returns 0 or -1 (logged). */
static int galgod_start_ws(struct galgod *g)
{
	char err[512];
	int rc;
	struct tcp_opts to;
	tcp_opts_default(&to);
	to.address = g->cfg.websocket.address;
	to.log = galgod_tcp_log;
	if (g->cfg.websocket.tls_enabled) {
		char cert[4096];
		bool generated;
		rc = tlscert_server_ctx(g->cfg.websocket.tls_cert, g->cfg.websocket.tls_key, g->cfg.node.data_dir,
					&to.ssl_ctx, cert, sizeof(cert), &generated, err, sizeof(err));
		if (rc < 0) {
			glog_error(TAG, "TLS (websocket): %s", err);
			return -1;
		}
		glog_info(TAG, "wss with %s certificate %s",
			  generated ? "a new self-signed development" : g->cfg.websocket.tls_cert[0] ? "the" : "the development",
			  cert);
	}
	rc = ws_server_new(&g->loop, &to, &galgod_tcp_handler, g, &g->ws);
	if (to.ssl_ctx != NULL)
		SSL_CTX_free(to.ssl_ctx);
	if (rc == -EADDRINUSE && galgod_ws_default_address(&g->cfg)) {
		/*
		 * Only the default address, which nobody asked for, is taken (another galgod on this host, or
		 * Iggy's server): this node serves its other transports rather than refuse to start, as it did
		 * before it had a WebSocket listener. An address set on purpose that cannot be had stops it.
		 */
		glog_warn(TAG, "the default WebSocket address %s is in use: no WebSocket listener (set websocket.address "
			       "or websocket.enabled=false)", g->cfg.websocket.address);
		g->cfg.websocket.enabled = false; /* nor is one advertised to clients */
		return 0;
	}
	if (rc < 0) {
		glog_error(TAG, "cannot listen on %s (websocket): %s", g->cfg.websocket.address, strerror(-rc));
		return -1;
	}
	return 0;
}

/* The HTTP API listener (http.enabled), HTTPS with http.tls_enabled. Returns 0 or -1 (logged). */
static int galgod_start_http(struct galgod *g)
{
	char err[512];
	int rc;
	struct http_opts ho;
	http_opts_default(&ho);
	ho.address = g->cfg.http.address;
	ho.max_request_size = (size_t)g->cfg.http.max_request_size;
	ho.jwt_secret = g->cfg.http.jwt_secret;
	ho.metrics = galgod_http_metrics;
	ho.health = galgod_http_health;
	ho.metrics_auth = g->cfg.http.metrics_auth;
	ho.log = galgod_http_log;
	ho.log_ud = g;
	if (g->cfg.http.tls_enabled) {
		char cert[4096];
		bool generated;
		rc = tlscert_server_ctx(g->cfg.http.tls_cert, g->cfg.http.tls_key, g->cfg.node.data_dir, &ho.ssl_ctx,
					cert, sizeof(cert), &generated, err, sizeof(err));
		if (rc < 0) {
			glog_error(TAG, "TLS (http): %s", err);
			return -1;
		}
		glog_info(TAG, "HTTPS with %s certificate %s",
			  generated ? "a new self-signed development" : g->cfg.http.tls_cert[0] ? "the" : "the development",
			  cert);
	}
	rc = http_server_new(&g->loop, &ho, &galgod_http_handler, g, &g->http);
	if (ho.ssl_ctx != NULL)
		SSL_CTX_free(ho.ssl_ctx);
	if (rc < 0) {
		glog_error(TAG, "cannot listen on %s (http): %s", g->cfg.http.address, strerror(-rc));
		return -1;
	}
	return 0;
}

/* The QUIC listener (quic.enabled): GnuTLS reads the PEM files itself. Returns 0 or -1 (logged). */
static int galgod_start_quic(struct galgod *g)
{
	char err[512];
	int rc;
	/* GnuTLS reads the PEM files itself; without configured ones, the development pair (made if need be). */
	char cert[4096], key[4096];
	bool generated = false;
	snprintf(cert, sizeof(cert), "%s", g->cfg.quic.tls_cert);
	snprintf(key, sizeof(key), "%s", g->cfg.quic.tls_key);
	if (cert[0] == '\0' && key[0] == '\0') {
		SSL_CTX *dev = NULL;
		rc = tlscert_server_ctx(NULL, NULL, g->cfg.node.data_dir, &dev, cert, sizeof(cert), &generated, err,
					sizeof(err));
		if (rc < 0) {
			glog_error(TAG, "TLS (quic): %s", err);
			return -1;
		}
		SSL_CTX_free(dev);
		snprintf(key, sizeof(key), "%s/%s/%s", g->cfg.node.data_dir, TLSCERT_DIR, TLSCERT_KEY_FILE);
	} else if (cert[0] == '\0' || key[0] == '\0') {
		glog_error(TAG, "TLS (quic): quic.tls_cert and quic.tls_key must be set together");
		return -1;
	}
	struct quic_opts qo;
	quic_opts_default(&qo);
	qo.address = g->cfg.quic.address;
	qo.cert_file = cert;
	qo.key_file = key;
	qo.idle_timeout_ms = g->cfg.quic.idle_timeout_ms;
	qo.max_streams = g->cfg.quic.max_streams;
	qo.max_connections = g->cfg.quic.max_connections;
	qo.log = galgod_quic_log;
	rc = quic_server_new(&g->loop, &qo, &galgod_quic_handler, g, &g->quic, err, sizeof(err));
	if (rc < 0) {
		glog_error(TAG, "quic: %s", err);
		return -1;
	}
	glog_info(TAG, "QUIC with %s certificate %s",
		  generated ? "a new self-signed development" : g->cfg.quic.tls_cert[0] ? "the" : "the development", cert);
	return 0;
}

int main(int argc, char **argv)
{
	static struct galgod g;
	char err[512], dump[2048];
	enum glog_level level;
	int rc;

	rc = config_load(&g.cfg, argc, argv, NULL, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "galgod: %s\n(see galgod --help)\n", err);
		config_free(&g.cfg);
		return 2;
	}
	if (g.cfg.help) {
		config_help(stdout, "galgod");
		config_free(&g.cfg);
		return 0;
	}
	if (g.cfg.version) {
		printf("galgod %s (%s)\n", GALGO_VERSION, GALGO_IGGY_COMPAT);
		config_free(&g.cfg);
		return 0;
	}
	if (glog_parse_level(g.cfg.log.level, &level) == 0)
		glog_set_level(level);
	/*
	 * A fixed mmap threshold: Argon2id allocates 19 MiB per password check on the thread pool, and with
	 * glibc's adaptive threshold those blocks would stay in per-thread arenas after the first free
	 * (measured: 90 MiB RSS after eight logins instead of 26 MiB).
	 */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	signal(SIGPIPE, SIG_IGN);

	config_dump(&g.cfg, dump, sizeof(dump));
	glog_info(TAG, "starting (pid %ld), config file %s", (long)getpid(),
		  g.cfg.config_file != NULL ? g.cfg.config_file : "(none)");
	glog_info(TAG, "config: %s", dump);

	rc = datadir_open(g.cfg.node.data_dir, &g.dd, err, sizeof(err));
	if (rc < 0) {
		glog_error(TAG, "%s", err);
		config_free(&g.cfg);
		return 1;
	}

	rc = uv_loop_init(&g.loop);
	if (rc < 0) {
		glog_error(TAG, "cannot create the event loop: %s", uv_strerror(rc));
		goto fail;
	}
	g.loop_ready = true;
	rc = flusher_new(&g.loop, false, &g.fl);
	if (rc < 0) {
		glog_error(TAG, "cannot create the flusher: %s", strerror(-rc));
		goto fail;
	}
	g.pio = pio_real_new();
	if (g.pio == NULL) {
		glog_error(TAG, "cannot create the file I/O backend");
		goto fail;
	}

	rc = srv_new(&g.loop, &g.cfg, g.pio, g.fl, &g.srv);
	if (rc < 0) {
		glog_error(TAG, "cannot start the server: %s", strerror(-rc));
		goto fail;
	}
	glog_info(TAG, "partitions opened: %" PRIu32, srv_partition_count(g.srv));
	if ((g.cfg.tcp.enabled && galgod_start_tcp(&g) < 0) || (g.cfg.http.enabled && galgod_start_http(&g) < 0) ||
	    (g.cfg.quic.enabled && galgod_start_quic(&g) < 0) || (g.cfg.websocket.enabled && galgod_start_ws(&g) < 0))
		goto fail;
	uv_timer_init(&g.loop, &g.tick);
	g.tick.data = &g;
	g.tick_ready = true;
	uv_timer_start(&g.tick, galgod_on_tick, 1000, 1000);

	if (galgod_start_signals(&g) < 0)
		goto fail;
	galgod_log_ready(&g);

	uv_run(&g.loop, UV_RUN_DEFAULT);

	if (g.stop_signal == 0 && g.exit_status == 0)
		glog_warn(TAG, "event loop stopped unexpectedly; shutting down");
	galgod_shutdown(&g, true);
	glog_info(TAG, "galgod stopped");
	config_free(&g.cfg);
	return g.exit_status;

fail:
	galgod_shutdown(&g, false);
	config_free(&g.cfg);
	return 1;
}
