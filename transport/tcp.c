/*
 * tcp — the TCP listener of the Iggy client protocol. Behaviour is described in tcp.h.
 *
 * Design. The server owns its sockets: the listening socket and every connection are plain
 * non-blocking descriptors watched with uv_poll_t, so that one code path can write memory with
 * sendmsg(2) and file ranges with sendfile(2) on the same socket, in order, as the socket becomes
 * writable (libuv's uv_tcp_t streams cannot do sendfile, and a second watcher on their descriptor is
 * not allowed). Readiness is level-triggered: a connection watches for READABLE only while it may read
 * (not paused, not closing, no end of file seen) and for WRITABLE only while its queue is not empty.
 *
 * Work that must not run inside the caller's stack is deferred to a uv_idle_t: `done` callbacks (so
 * that tcp_conn_send never calls back into its caller) and the delivery of frames already buffered
 * when a connection resumes after a pause. A connection with deferred work sits on the server's
 * pending list.
 *
 * TLS (only with tcp_opts.ssl_ctx; a NULL SSL pointer on the connection means plain TCP and every
 * TLS branch below is skipped). Until the handshake is done, a connection polls for exactly what
 * SSL_accept last asked for and nothing else runs on it. After it, the level-triggered rules above
 * hold, with two additions: OpenSSL may keep decrypted bytes that the socket no longer signals, so a
 * connection with such bytes is revisited from the idle callback; and a read that needs the socket
 * writable (or a write that needs it readable) adds that event until it has run. Writes never hand
 * OpenSSL the queue itself: the next bytes of the queue, up to one record, are copied into a bounce
 * buffer (file ranges with pread), and SSL_write is retried on that buffer, unchanged, until it took
 * all of it, as OpenSSL requires after WANT_WRITE.
 *
 * Lifetime. A connection is freed only in the close callback of its poll handle, which libuv runs in
 * its own phase, never inside another callback of this file. So within any callback every connection
 * pointer stays valid; aborting only sets `closing` and starts uv_close.
 */
#define _GNU_SOURCE /* accept4, MSG_MORE */
#include "transport/tcp.h"
#include "transport/list.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define RBUF_INITIAL (16u * 1024)       /* a receive buffer's size until a bigger frame needs more */
#define RBUF_SHRINK_ABOVE (1024u * 1024) /* a buffer this big goes back to RBUF_INITIAL once drained */
#define READ_MIN_ROOM 4096u             /* free space wanted before a read(2) */
#define READS_PER_WAKEUP 16             /* reads per readiness callback, so one peer cannot starve others */
#define ACCEPTS_PER_WAKEUP 64
#define IOV_BATCH 64                    /* memory pieces gathered into one sendmsg(2) */
#define SENDFILE_CHUNK (1u << 30)
#define ACCEPT_BACKOFF_MS 100           /* pause of the listener when out of descriptors */
#define TLS_BOUNCE (16u * 1024)         /* the bounce buffer of a TLS connection: one record's payload */


/* One queued piece, advanced in place as bytes leave. */
struct seg {
	bool file;
	int fd;
	const uint8_t *base; /* memory */
	uint64_t off;        /* file */
	size_t len;          /* bytes left */
};

/* One tcp_conn_send: its pieces, then the copied bytes, in one allocation. */
struct send {
	struct send *next;
	tcp_send_cb done;
	void *arg;
	size_t nsegs;
	size_t cur; /* first segment not fully written */
	struct seg segs[];
};

struct tcp_conn {
	struct tcp_server *srv;
	struct link link; /* in srv->conns */
	struct link pend; /* in srv->pending while in_pending */
	bool in_pending;
	uv_poll_t poll;
	int fd;
	int poll_events;
	uint32_t id;
	char peer[64];
	void *data;

	/* Receive buffer: bytes [rpos, rlen) are received and not yet delivered. */
	uint8_t *rbuf;
	size_t rcap, rpos, rlen;

	/* Sends being written, and sends written whose done is still to be called. */
	struct send *sq_head, *sq_tail;
	struct send *dq_head, *dq_tail;
	size_t queued;

	bool connected;  /* on_connect was called, so on_close will be */
	bool closing;    /* uv_close started */
	bool close_req;  /* graceful close asked: close once the queue is empty */
	bool eof;        /* the peer closed its side */
	bool bp_paused;  /* backpressure */
	bool user_paused;
	bool held;       /* replies are still to come: an end of file does not close yet */
	bool want_parse; /* buffered frames to deliver from the idle callback */
	bool in_parse;
	bool stale_fired;
	bool framed;      /* a VSR frame was delivered: the legacy check (frame.h section 8) is over */
	int close_status; /* for sends not written when the connection closed */
	void *fdata;      /* the framing's state of this connection */
	bool fopen;       /* framing->open succeeded, so framing->close is due */
	uint64_t last_rx, last_tx, close_req_at;
	struct frame_u128 last_client;

	/* TLS; ssl is NULL on a plain connection. */
	SSL *ssl;
	bool tls_ready;            /* the handshake is done (and on_connect was called) */
	int tls_hs_events;         /* during the handshake: the poll events SSL_accept waits for */
	bool tls_read_wants_write; /* the last SSL_read needs the socket writable */
	bool tls_write_wants_read; /* the last SSL_write needs the socket readable */
	uint64_t accepted_at;
	/* Bytes [bpos, blen) of the bounce buffer are the next bytes of the queue, not yet taken by SSL_write. */
	uint8_t *bounce;
	size_t bpos, blen;
};

struct tcp_server {
	uv_loop_t *loop;
	struct tcp_opts opts;
	struct tcp_handler h;
	void *ud;
	int lfd;
	int port;
	uv_poll_t lpoll;
	uv_timer_t timer;
	uv_timer_t backoff;
	uv_idle_t idle;
	struct link conns;
	struct link pending;
	uint32_t nconns;
	uint32_t next_id;
	int handles; /* libuv handles not yet closed (the server is freed at 0 once closing) */
	bool draining;        /* tcp_server_drain: no new connections, no new requests */
	bool listener_closed; /* lpoll is closed (by the drain or the close) */
	bool closing;
};

static void conn_update(struct tcp_conn *c);
static void conn_abort(struct tcp_conn *c, int status);
static void conn_parse(struct tcp_conn *c);
static void conn_read(struct tcp_conn *c);
static void conn_dispatch(struct tcp_conn *c, const uint8_t *p, uint32_t size);
static bool conn_may_read(const struct tcp_conn *c);
static int tls_conn_init(struct tcp_conn *c);
static void tls_handshake(struct tcp_conn *c);
static void tls_read(struct tcp_conn *c);
static void tls_flush(struct tcp_conn *c);

__attribute__((format(printf, 3, 4))) static void slog(struct tcp_server *s, int level, const char *fmt, ...)
{
	if (!s->opts.log)
		return;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	s->opts.log(s->opts.log_ud, level, msg);
}

void tcp_opts_default(struct tcp_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_connections = 10000;
	o->max_frame = FRAME_MAX_SIZE;
	o->heartbeat_timeout_ms = 36000;
	o->write_high_water = 16u * 1024 * 1024;
	o->close_linger_ms = 5000;
	o->backlog = 511;
	o->tls_handshake_timeout_ms = 10000;
}

/* ---- Addresses ---- */

/* tcp_addr_parse is in tcp_addr.c. */

static void addr_name(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
	} else {
		snprintf(out, cap, "?");
	}
}

/* ---- Server lifetime ---- */

/* Frees a server whose handles are all closed, with its reference on the TLS context. */
static void server_free(struct tcp_server *s)
{
	if (s->opts.ssl_ctx)
		SSL_CTX_free(s->opts.ssl_ctx);
	free(s);
}

static void server_handle_closed(uv_handle_t *h)
{
	struct tcp_server *s = h->data;
	if (h == (uv_handle_t *)&s->lpoll)
		close(s->lfd);
	if (--s->handles == 0)
		server_free(s);
}

static void on_idle(uv_idle_t *h);
static void on_timer(uv_timer_t *t);
static void on_listen(uv_poll_t *h, int status, int events);

static void on_backoff(uv_timer_t *t)
{
	struct tcp_server *s = t->data;
	if (!s->closing && !s->listener_closed)
		uv_poll_start(&s->lpoll, UV_READABLE, on_listen);
}

/* Ignores SIGPIPE unless the process already chose a disposition for it. */
static void ignore_sigpipe(void)
{
	struct sigaction old;
	if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO)) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = SIG_IGN;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGPIPE, &sa, NULL);
	}
}

int tcp_server_new(uv_loop_t *loop, const struct tcp_opts *opts, const struct tcp_handler *h, void *ud,
		   struct tcp_server **out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc;

	if (!h || !h->on_frame || opts->max_connections == 0 || opts->max_frame < FRAME_HEADER_SIZE ||
	    opts->max_frame > FRAME_MAX_SIZE || opts->write_high_water == 0 || opts->backlog <= 0)
		return -EINVAL;
	rc = tcp_addr_parse(opts->address, &ss, &sl);
	if (rc != 0)
		return rc;

	struct tcp_server *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->opts = *opts;
	s->opts.address = NULL; /* not kept: the caller's string may go away */
	s->h = *h;
	s->ud = ud;
	s->next_id = 1;
	list_init(&s->conns);
	list_init(&s->pending);

	s->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0) {
		rc = -errno;
		goto err_after_alloc;
	}
	int one = 1;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(s->lfd, (struct sockaddr *)&ss, sl) != 0 || listen(s->lfd, opts->backlog) != 0) {
		rc = -errno;
		goto err_after_socket;
	}
	struct sockaddr_storage bound;
	socklen_t bl = sizeof bound;
	if (getsockname(s->lfd, (struct sockaddr *)&bound, &bl) != 0) {
		rc = -errno;
		goto err_after_socket;
	}
	s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
					      : ntohs(((struct sockaddr_in *)&bound)->sin_port);
	rc = uv_poll_init(loop, &s->lpoll, s->lfd);
	if (rc != 0)
		goto err_after_socket;

	/* Nothing below fails: from here on the handles are closed asynchronously. */
	s->lpoll.data = s;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	uv_timer_init(loop, &s->backoff);
	s->backoff.data = s;
	uv_idle_init(loop, &s->idle);
	s->idle.data = s;
	s->handles = 4;
	if (s->opts.ssl_ctx)
		SSL_CTX_up_ref(s->opts.ssl_ctx);
	ignore_sigpipe();
	uv_poll_start(&s->lpoll, UV_READABLE, on_listen);
	uint64_t period = 1000;
	if (opts->heartbeat_timeout_ms > 0 && opts->heartbeat_timeout_ms / 4 < period)
		period = opts->heartbeat_timeout_ms / 4 ? opts->heartbeat_timeout_ms / 4 : 1;
	if (opts->ssl_ctx && opts->tls_handshake_timeout_ms > 0 && opts->tls_handshake_timeout_ms / 4 < period)
		period = opts->tls_handshake_timeout_ms / 4 ? opts->tls_handshake_timeout_ms / 4 : 1;
	uv_timer_start(&s->timer, on_timer, period, period);

	char name[80];
	addr_name(&bound, name, sizeof name);
	slog(s, TCP_LOG_INFO, "listening on %s%s", name, s->opts.ssl_ctx ? " (TLS)" : "");
	*out = s;
	return 0;

err_after_socket:
	close(s->lfd);
err_after_alloc:
	free(s);
	return rc;
}

int tcp_server_port(const struct tcp_server *s)
{
	return s->port;
}

void *tcp_server_data(const struct tcp_server *s)
{
	return s->ud;
}

uint32_t tcp_server_connections(const struct tcp_server *s)
{
	return s->nconns;
}

/* Closes the listening socket: connection attempts are refused from now on. */
static void server_close_listener(struct tcp_server *s)
{
	if (s->listener_closed)
		return;
	s->listener_closed = true;
	uv_timer_stop(&s->backoff);
	uv_close((uv_handle_t *)&s->lpoll, server_handle_closed);
}

void tcp_server_drain(struct tcp_server *s)
{
	if (s->closing || s->draining)
		return;
	s->draining = true;
	server_close_listener(s);
	/* conn_may_read and conn_parse look at `draining`: each connection stops reading at its next update. */
	for (struct link *l = s->conns.next; l != &s->conns; l = l->next)
		conn_update(container_of(l, struct tcp_conn, link));
	slog(s, TCP_LOG_INFO, "draining: listener closed, no new requests read");
}

uint32_t tcp_server_unsent(const struct tcp_server *s)
{
	uint32_t n = 0;
	for (const struct link *l = s->conns.next; l != &s->conns; l = l->next) {
		const struct tcp_conn *c = container_of(l, const struct tcp_conn, link);
		if (!c->closing && c->sq_head != NULL)
			n++;
	}
	return n;
}

void tcp_server_close(struct tcp_server *s)
{
	if (s->closing)
		return;
	s->closing = true;
	server_close_listener(s);
	uv_close((uv_handle_t *)&s->timer, server_handle_closed);
	uv_close((uv_handle_t *)&s->backoff, server_handle_closed);
	uv_close((uv_handle_t *)&s->idle, server_handle_closed);
	for (struct link *l = s->conns.next; l != &s->conns; l = l->next)
		conn_abort(container_of(l, struct tcp_conn, link), -ECANCELED);
}

/* ---- Deferred work ---- */

static void conn_defer(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	if (c->in_pending || s->closing)
		return;
	c->in_pending = true;
	list_push(&s->pending, &c->pend);
	uv_idle_start(&s->idle, on_idle);
}

/* Calls the done of every send already written, in order. */
static void conn_run_done(struct tcp_conn *c)
{
	while (c->dq_head) {
		struct send *snd = c->dq_head;
		c->dq_head = snd->next;
		if (!c->dq_head)
			c->dq_tail = NULL;
		if (snd->done)
			snd->done(snd->arg, 0);
		free(snd);
	}
}

static void on_idle(uv_idle_t *h)
{
	struct tcp_server *s = h->data;
	/* Work the current list; connections deferred meanwhile wait for the next turn of the loop. */
	struct link batch;
	list_init(&batch);
	if (!list_empty(&s->pending)) {
		batch.next = s->pending.next;
		batch.prev = s->pending.prev;
		batch.next->prev = &batch;
		batch.prev->next = &batch;
		list_init(&s->pending);
	}
	while (!list_empty(&batch)) {
		struct tcp_conn *c = container_of(batch.next, struct tcp_conn, pend);
		assert(c->in_pending); /* on the pending list exactly while flagged so */
		list_remove(&c->pend);
		c->in_pending = false;
		conn_run_done(c);
		if (!c->closing && c->want_parse) {
			c->want_parse = false;
			conn_parse(c);
		}
		/* Bytes OpenSSL already holds are not signalled by the socket: read them now. */
		if (c->ssl && c->tls_ready && conn_may_read(c) && SSL_has_pending(c->ssl))
			conn_read(c);
		conn_update(c);
	}
	if (!s->closing && list_empty(&s->pending))
		uv_idle_stop(&s->idle);
}

/* ---- Connections ---- */

static bool conn_paused(const struct tcp_conn *c)
{
	return c->bp_paused || c->user_paused;
}

static bool conn_may_read(const struct tcp_conn *c)
{
	return !c->closing && !c->close_req && !c->eof && !conn_paused(c) && !c->srv->draining;
}

static void on_conn_poll(uv_poll_t *h, int status, int events);

static void conn_closed(uv_handle_t *h)
{
	struct tcp_conn *c = container_of(h, struct tcp_conn, poll);
	struct tcp_server *s = c->srv;
	/* Only conn_abort closes the handle, once. */
	assert(c->closing && s->nconns > 0 && s->handles > 0);

	if (c->ssl)
		SSL_free(c->ssl);
	close(c->fd);
	if (c->in_pending)
		list_remove(&c->pend);
	list_remove(&c->link);
	s->nconns--;

	conn_run_done(c);
	int status = c->close_status < 0 ? c->close_status : -ECANCELED;
	while (c->sq_head) {
		struct send *snd = c->sq_head;
		c->sq_head = snd->next;
		if (snd->done)
			snd->done(snd->arg, status);
		free(snd);
	}
	c->sq_tail = NULL;
	if (c->connected && s->h.on_close)
		s->h.on_close(c);
	if (c->fopen)
		s->opts.framing->close(c);
	free(c->rbuf);
	free(c->bounce);
	free(c);
	if (--s->handles == 0)
		server_free(s);
}

static void conn_abort(struct tcp_conn *c, int status)
{
	if (c->closing)
		return;
	c->closing = true;
	c->close_status = status;
	/* A graceful close of a TLS session says so (best effort: the socket is not waited for). */
	if (c->ssl && c->tls_ready && status == 0) {
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	slog(c->srv, TCP_LOG_DEBUG, "connection %u (%s) closed (%s)", c->id, c->peer,
	     status ? strerror(-status) : "normally");
	uv_close((uv_handle_t *)&c->poll, conn_closed);
}

/* Brings the poll registration in line with the state, and closes when a graceful close is due. */
static void conn_update(struct tcp_conn *c)
{
	if (c->closing)
		return;
	/* The peer closed its side: close once every frame it sent was delivered. */
	if (c->eof && !c->close_req && !c->in_parse && !c->want_parse && !conn_paused(c) && !c->held) {
		c->close_req = true;
		c->close_req_at = uv_now(c->srv->loop);
	}
	if (c->close_req && !c->sq_head) {
		conn_abort(c, 0);
		return;
	}
	int ev = 0;
	if (c->ssl && !c->tls_ready) {
		ev = c->tls_hs_events;
	} else {
		if (conn_may_read(c))
			ev |= UV_READABLE;
		if (c->sq_head)
			ev |= UV_WRITABLE;
		if (c->tls_read_wants_write && conn_may_read(c))
			ev |= UV_WRITABLE;
		if (c->tls_write_wants_read && c->sq_head)
			ev |= UV_READABLE;
	}
	if (ev == c->poll_events)
		return;
	int rc = ev ? uv_poll_start(&c->poll, ev, on_conn_poll) : uv_poll_stop(&c->poll);
	if (rc != 0) {
		conn_abort(c, rc);
		return;
	}
	c->poll_events = ev;
}

/* The connection is secured (or plain): the handler learns of it now, or once the framing's handshake is done. */
static void conn_secured(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	if (!s->opts.framing) {
		tcp_conn_upgraded(c);
		return;
	}
	int rc = s->opts.framing->open(c);
	if (rc != 0) {
		conn_abort(c, rc);
		return;
	}
	c->fopen = true;
}

void tcp_conn_upgraded(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	assert(!c->connected && !c->closing); /* once, before anything is delivered */
	c->connected = true;
	if (s->h.on_connect)
		s->h.on_connect(c);
}

static void conn_new(struct tcp_server *s, int fd, const struct sockaddr_storage *ss)
{
	struct tcp_conn *c = calloc(1, sizeof *c);
	if (!c) {
		slog(s, TCP_LOG_ERROR, "out of memory accepting a connection");
		close(fd);
		return;
	}
	c->srv = s;
	c->fd = fd;
	if (s->opts.ssl_ctx && tls_conn_init(c) != 0) {
		slog(s, TCP_LOG_ERROR, "cannot start a TLS session on an accepted socket");
		close(fd);
		free(c);
		return;
	}
	if (uv_poll_init(s->loop, &c->poll, fd) != 0) {
		slog(s, TCP_LOG_ERROR, "cannot watch an accepted socket");
		if (c->ssl)
			SSL_free(c->ssl);
		close(fd);
		free(c);
		return;
	}
	c->poll.data = c;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->id = s->next_id++;
	if (s->next_id == 0)
		s->next_id = 1;
	addr_name(ss, c->peer, sizeof c->peer);
	list_init(&c->pend);
	list_push(&s->conns, &c->link);
	s->nconns++;
	s->handles++;
	c->last_rx = c->last_tx = c->accepted_at = uv_now(s->loop);
	slog(s, TCP_LOG_DEBUG, "connection %u from %s", c->id, c->peer);
	if (c->ssl) {
		/* on_connect waits for the handshake, which starts with the client's hello. */
		c->tls_hs_events = UV_READABLE;
		conn_update(c);
		return;
	}
	conn_update(c);
	conn_secured(c);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
	struct tcp_server *s = h->data;
	if (status < 0) {
		slog(s, TCP_LOG_ERROR, "listener: %s", uv_strerror(status));
		return;
	}
	for (int i = 0; i < ACCEPTS_PER_WAKEUP && !s->closing && !s->listener_closed; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			slog(s, TCP_LOG_WARN, "accept: %s; pausing the listener", strerror(errno));
			/* Out of descriptors or memory: the level-triggered listener would spin, so rest. */
			uv_poll_stop(&s->lpoll);
			uv_timer_start(&s->backoff, on_backoff, ACCEPT_BACKOFF_MS, 0);
			return;
		}
		if (s->nconns >= s->opts.max_connections) {
			char name[80];
			addr_name(&ss, name, sizeof name);
			slog(s, TCP_LOG_WARN, "refusing %s: %u connections open", name, s->nconns);
			close(fd);
			continue;
		}
		conn_new(s, fd, &ss);
	}
}

/* ---- Reading and frame delivery ---- */

/* Makes room for a frame of `size` bytes starting at rpos. Returns 0 or -ENOMEM. */
static int rbuf_fit(struct tcp_conn *c, size_t size)
{
	if (c->rcap - c->rpos >= size)
		return 0;
	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	if (c->rcap >= size)
		return 0;
	uint8_t *p = realloc(c->rbuf, size);
	if (!p)
		return -ENOMEM;
	c->rbuf = p;
	c->rcap = size;
	assert(c->rpos == 0 && c->rlen <= c->rcap);
	return 0;
}

/* Delivers one complete frame of `size` bytes at p. */
static void conn_dispatch(struct tcp_conn *c, const uint8_t *p, uint32_t size)
{
	struct tcp_server *s = c->srv;
	uint8_t command = frame_peek_command(p);
	if (command != FRAME_CMD_REQUEST) {
		slog(s, TCP_LOG_DEBUG, "connection %u: ignoring a frame with command %u", c->id, command);
		return;
	}
	struct frame_request req = {0};
	int rc = frame_request_decode(p, &req);
	if (rc != 0) {
		slog(s, TCP_LOG_DEBUG, "connection %u: dropping a request (operation %u, request %llu): %s", c->id,
		     req.operation, (unsigned long long)req.request, frame_strerror(rc));
		return;
	}
	c->last_client = req.client;
	s->h.on_frame(c, &req, p + FRAME_HEADER_SIZE, size - FRAME_HEADER_SIZE);
}

bool tcp_conn_may_deliver(const struct tcp_conn *c)
{
	const struct tcp_server *s = c->srv;
	return !c->closing && !c->close_req && !conn_paused(c) && !s->closing && !s->draining;
}

int tcp_conn_deliver(struct tcp_conn *c, const uint8_t *p, size_t len)
{
	assert(c->connected && tcp_conn_may_deliver(c)); /* the framing asks before it delivers */
	if (len > c->srv->opts.max_frame)
		return -E2BIG;
	if (len < FRAME_HEADER_SIZE || frame_peek_size(p) != len)
		return -EMSGSIZE;
	conn_dispatch(c, p, (uint32_t)len);
	return 0;
}

/* conn_parse with a framing: it takes the bytes and delivers the frames inside them. */
static void conn_parse_framed(struct tcp_conn *c)
{
	c->in_parse = true;
	if (tcp_conn_may_deliver(c)) {
		size_t avail = c->rlen - c->rpos;
		size_t used = c->srv->opts.framing->input(c, c->rbuf + c->rpos, avail);
		assert(used <= avail); /* a framing consumes only what it was offered */
		c->rpos += used;
	}
	c->in_parse = false;
	if (!c->closing && c->rpos == c->rlen)
		c->rpos = c->rlen = 0;
}

/* Delivers the complete frames in the buffer while the connection may take them. */
static void conn_parse(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	if (c->in_parse)
		return;
	if (s->opts.framing) {
		conn_parse_framed(c);
		return;
	}
	c->in_parse = true;
	while (!c->closing && !c->close_req && !conn_paused(c) && !s->closing && !s->draining) {
		size_t avail = c->rlen - c->rpos;
		if (avail == 0)
			break;
		const uint8_t *p = c->rbuf + c->rpos;
		uint32_t legacy = c->framed ? 0 : frame_legacy_peek(p, avail);
		if (legacy != 0) {
			/* A pre-0.9 SDK would otherwise wait for an answer until the heartbeat eviction. */
			slog(s, TCP_LOG_INFO,
			     "connection %u (%s): legacy Iggy framing (command %u; SDK 0.8 or older), not supported; "
			     "answering InvalidCommand and closing",
			     c->id, c->peer, legacy);
			uint8_t rep[FRAME_LEGACY_REPLY_SIZE];
			frame_legacy_reply(rep);
			struct tcp_piece piece = TCP_COPY(rep, sizeof rep);
			(void)tcp_conn_send(c, &piece, 1, NULL, NULL);
			c->rpos = c->rlen;
			tcp_conn_close(c);
			break;
		}
		if (avail < FRAME_OFF_SIZE + 4)
			break;
		uint32_t size = frame_peek_size(p);
		if (size < FRAME_HEADER_SIZE || size > s->opts.max_frame) {
			slog(s, TCP_LOG_INFO, "connection %u (%s): frame size %u out of range; closing", c->id,
			     c->peer, size);
			conn_abort(c, -EMSGSIZE);
			break;
		}
		if (avail < size) {
			if (rbuf_fit(c, size) != 0)
				conn_abort(c, -ENOMEM);
			break;
		}
		c->framed = true;
		conn_dispatch(c, p, size);
		c->rpos += size;
	}
	c->in_parse = false;
	assert(c->rpos <= c->rlen && c->rlen <= c->rcap); /* a frame is taken only once wholly received */
	if (c->closing)
		return;
	if (c->rpos == c->rlen)
		c->rpos = c->rlen = 0;
	/* A buffer grown for a big frame shrinks back, unless the next frame is big as well. */
	size_t n = c->rlen - c->rpos;
	bool next_big = n >= FRAME_OFF_SIZE + 4 && frame_peek_size(c->rbuf + c->rpos) > RBUF_INITIAL;
	if (c->rcap > RBUF_SHRINK_ABOVE && n <= RBUF_INITIAL && !next_big) {
		memmove(c->rbuf, c->rbuf + c->rpos, n);
		uint8_t *p = realloc(c->rbuf, RBUF_INITIAL);
		if (p) {
			c->rbuf = p;
			c->rcap = RBUF_INITIAL;
		}
		c->rpos = 0;
		c->rlen = n;
	}
}

/* Makes room at the end of the receive buffer for the next read. Returns 0 or -ENOMEM. */
static int rbuf_room(struct tcp_conn *c)
{
	if (c->rcap - c->rlen < READ_MIN_ROOM && c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	if (c->rcap == c->rlen) {
		/* Only the first read gets here: rbuf_fit makes room for every frame seen. */
		size_t cap = c->rcap ? c->rcap * 2 : RBUF_INITIAL;
		uint8_t *p = realloc(c->rbuf, cap);
		if (!p)
			return -ENOMEM;
		c->rbuf = p;
		c->rcap = cap;
	}
	return 0;
}

static void conn_read(struct tcp_conn *c)
{
	if (c->ssl) {
		tls_read(c);
		return;
	}
	for (int i = 0; i < READS_PER_WAKEUP && conn_may_read(c); i++) {
		if (rbuf_room(c) != 0) {
			conn_abort(c, -ENOMEM);
			return;
		}
		size_t room = c->rcap - c->rlen;
		ssize_t n = read(c->fd, c->rbuf + c->rlen, room);
		if (n > 0) {
			c->rlen += (size_t)n;
			c->last_rx = uv_now(c->srv->loop);
			c->stale_fired = false;
			conn_parse(c);
			if ((size_t)n < room)
				break;
			continue;
		}
		if (n == 0) {
			c->eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		conn_abort(c, -errno);
		return;
	}
}

/* ---- Writing ---- */

/* Moves fully written sends from the write queue to the done queue. */
static void conn_complete_heads(struct tcp_conn *c)
{
	while (c->sq_head && c->sq_head->cur == c->sq_head->nsegs) {
		struct send *snd = c->sq_head;
		c->sq_head = snd->next;
		if (!c->sq_head)
			c->sq_tail = NULL;
		snd->next = NULL;
		if (c->dq_tail)
			c->dq_tail->next = snd;
		else
			c->dq_head = snd;
		c->dq_tail = snd;
		conn_defer(c);
	}
}

/* Accounts for n bytes written from the head of the queue. */
static void conn_advance(struct tcp_conn *c, size_t n)
{
	assert(n <= c->queued); /* never more written than was queued */
	c->queued -= n;
	while (n > 0) {
		struct send *snd = c->sq_head;
		assert(snd != NULL && snd->cur < snd->nsegs);
		struct seg *sg = &snd->segs[snd->cur];
		size_t take = n < sg->len ? n : sg->len;
		if (sg->file)
			sg->off += take;
		else
			sg->base += take;
		sg->len -= take;
		n -= take;
		if (sg->len == 0) {
			snd->cur++;
			conn_complete_heads(c);
		}
	}
	/* The byte count is the sum of the queued pieces: nothing queued exactly when no send waits. */
	assert((c->sq_head == NULL) == (c->queued == 0));
}

/* Gathers the memory segments from the head of the queue; *then_file tells whether a file range follows. */
static int gather(struct tcp_conn *c, struct iovec *iov, bool *then_file)
{
	int n = 0;
	*then_file = false;
	for (struct send *snd = c->sq_head; snd && n < IOV_BATCH; snd = snd->next) {
		for (size_t i = snd->cur; i < snd->nsegs && n < IOV_BATCH; i++) {
			if (snd->segs[i].file) {
				*then_file = true;
				return n;
			}
			iov[n].iov_base = (void *)snd->segs[i].base;
			iov[n].iov_len = snd->segs[i].len;
			n++;
		}
	}
	return n;
}

/* After a write: notes the progress and lifts the backpressure once the queue has drained enough. */
static void conn_wrote(struct tcp_conn *c, bool progress)
{
	struct tcp_server *s = c->srv;
	if (progress)
		c->last_tx = uv_now(s->loop);
	if (c->bp_paused && c->queued <= s->opts.write_high_water / 2) {
		c->bp_paused = false;
		c->want_parse = true;
		conn_defer(c);
	}
}

/* Writes as much of the queue as the socket takes. */
static void conn_flush(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	bool progress = false;
	if (c->ssl) {
		tls_flush(c);
		return;
	}
	while (c->sq_head && !c->closing) {
		struct send *snd = c->sq_head;
		struct seg *sg = &snd->segs[snd->cur];
		ssize_t n;
		if (sg->file) {
			off_t off = (off_t)sg->off;
			n = sendfile(c->fd, sg->fd, &off, sg->len < SENDFILE_CHUNK ? sg->len : SENDFILE_CHUNK);
			if (n == 0) {
				slog(s, TCP_LOG_ERROR, "connection %u: file range ends early (fd %d, offset %llu)", c->id,
				     sg->fd, (unsigned long long)sg->off);
				conn_abort(c, -EIO);
				return;
			}
		} else {
			struct iovec iov[IOV_BATCH];
			bool then_file;
			struct msghdr m = {.msg_iov = iov};
			m.msg_iovlen = (size_t)gather(c, iov, &then_file);
			n = sendmsg(c->fd, &m, MSG_NOSIGNAL | (then_file ? MSG_MORE : 0));
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			conn_abort(c, -errno);
			return;
		}
		conn_advance(c, (size_t)n);
		progress = true;
	}
	conn_wrote(c, progress);
}

static void on_conn_poll(uv_poll_t *h, int status, int events)
{
	struct tcp_conn *c = h->data;
	if (c->closing)
		return;
	if (status < 0) {
		conn_abort(c, status);
		return;
	}
	if (c->ssl && !c->tls_ready) {
		tls_handshake(c);
		/* The client's first request may follow its Finished message at once. */
		if (!c->closing && c->tls_ready && conn_may_read(c))
			conn_read(c);
		conn_update(c);
		return;
	}
	/* The tls_ flags are false on plain connections: there, only the events themselves count. */
	if ((events & UV_WRITABLE) || ((events & UV_READABLE) && c->tls_write_wants_read))
		conn_flush(c);
	if (((events & UV_READABLE) || ((events & UV_WRITABLE) && c->tls_read_wants_write)) && conn_may_read(c))
		conn_read(c);
	conn_update(c);
}

/* Queues a send: `head` (COPY, may be empty) and then the pieces. */
static int conn_queue(struct tcp_conn *c, const uint8_t *head, size_t head_len, const struct tcp_piece *pieces,
		      size_t n, tcp_send_cb done, void *arg)
{
	if (c->closing || c->close_req)
		return -ENOTCONN;
	size_t nsegs = head_len > 0, copy = head_len, total = head_len;
	for (size_t i = 0; i < n; i++) {
		const struct tcp_piece *p = &pieces[i];
		if (p->kind != TCP_PIECE_COPY && p->kind != TCP_PIECE_REF && p->kind != TCP_PIECE_FILE)
			return -EINVAL;
		if (p->len == 0)
			continue;
		if ((p->kind != TCP_PIECE_FILE && !p->base) || (p->kind == TCP_PIECE_FILE && p->fd < 0))
			return -EINVAL;
		if (p->len > SIZE_MAX / 2 - total)
			return -EINVAL;
		total += p->len;
		if (p->kind == TCP_PIECE_COPY)
			copy += p->len;
		nsegs++;
	}
	if (nsegs > SIZE_MAX / 4 / sizeof(struct seg) || copy > SIZE_MAX / 4)
		return -EINVAL;
	struct send *snd = malloc(sizeof *snd + nsegs * sizeof(struct seg) + copy);
	if (!snd)
		return -ENOMEM;
	snd->next = NULL;
	snd->done = done;
	snd->arg = arg;
	snd->nsegs = nsegs;
	snd->cur = 0;
	uint8_t *copy_to = (uint8_t *)&snd->segs[nsegs];
	size_t k = 0;
	if (head_len > 0) {
		memcpy(copy_to, head, head_len);
		snd->segs[k++] = (struct seg){.fd = -1, .base = copy_to, .len = head_len};
		copy_to += head_len;
	}
	for (size_t i = 0; i < n; i++) {
		const struct tcp_piece *p = &pieces[i];
		if (p->len == 0)
			continue;
		struct seg *sg = &snd->segs[k++];
		sg->len = p->len;
		sg->file = p->kind == TCP_PIECE_FILE;
		sg->fd = p->fd;
		sg->off = p->off;
		sg->base = p->base;
		if (p->kind == TCP_PIECE_COPY) {
			memcpy(copy_to, p->base, p->len);
			sg->base = copy_to;
			copy_to += p->len;
		}
	}
	/* The pieces and their copies fill exactly the allocation sized for them. */
	assert(k == nsegs && copy_to == (uint8_t *)&snd->segs[nsegs] + copy);

	bool was_empty = c->sq_head == NULL;
	if (c->sq_tail)
		c->sq_tail->next = snd;
	else
		c->sq_head = snd;
	c->sq_tail = snd;
	c->queued += total;
	conn_complete_heads(c);
	assert((c->sq_head == NULL) == (c->queued == 0));
	if (was_empty)
		conn_flush(c);
	if (c->closing)
		return 0; /* the write failed: done gets the error from the close callback */
	if (c->queued > c->srv->opts.write_high_water && !c->bp_paused) {
		c->bp_paused = true;
		slog(c->srv, TCP_LOG_DEBUG, "connection %u: %zu bytes queued; pausing reads", c->id, c->queued);
	}
	conn_update(c);
	return 0;
}

int tcp_conn_write(struct tcp_conn *c, const struct tcp_piece *pieces, size_t n, tcp_send_cb done, void *arg)
{
	return conn_queue(c, NULL, 0, pieces, n, done, arg);
}

int tcp_conn_send(struct tcp_conn *c, const struct tcp_piece *pieces, size_t n, tcp_send_cb done, void *arg)
{
	const struct tcp_framing *f = c->srv->opts.framing;
	if (!f)
		return conn_queue(c, NULL, 0, pieces, n, done, arg);
	if (c->closing || c->close_req || !c->connected)
		return -ENOTCONN;
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		if (pieces[i].len > SIZE_MAX / 2 - total)
			return -EINVAL;
		total += pieces[i].len;
	}
	uint8_t head[TCP_FRAMING_HEAD_MAX];
	int hl = f->head(c, total, head);
	if (hl < 0)
		return hl;
	assert(hl <= TCP_FRAMING_HEAD_MAX);
	return conn_queue(c, head, (size_t)hl, pieces, n, done, arg);
}

void tcp_conn_log(struct tcp_conn *c, int level, const char *msg)
{
	slog(c->srv, level, "connection %u (%s): %s", c->id, c->peer, msg);
}

void tcp_conn_set_framing_data(struct tcp_conn *c, void *data)
{
	c->fdata = data;
}

void *tcp_conn_get_framing_data(const struct tcp_conn *c)
{
	return c->fdata;
}

void tcp_conn_close(struct tcp_conn *c)
{
	if (c->closing || c->close_req)
		return;
	c->close_req = true;
	c->close_req_at = uv_now(c->srv->loop);
	conn_update(c);
}

void tcp_conn_abort(struct tcp_conn *c)
{
	conn_abort(c, -ECANCELED);
}

void tcp_conn_pause(struct tcp_conn *c)
{
	if (c->closing || c->user_paused)
		return;
	c->user_paused = true;
	conn_update(c);
}

void tcp_conn_resume(struct tcp_conn *c)
{
	if (c->closing || !c->user_paused)
		return;
	c->user_paused = false;
	/* The time the handler held the connection is not the client's silence. */
	c->last_rx = uv_now(c->srv->loop);
	/* The buffered frames are delivered from the idle callback, never inside the caller's stack. */
	c->want_parse = true;
	conn_defer(c);
	conn_update(c);
}

void tcp_conn_hold(struct tcp_conn *c, bool held)
{
	if (c->closing || c->held == held)
		return;
	c->held = held;
	if (!held)
		conn_update(c);
}

void tcp_conn_restart_silence(struct tcp_conn *c)
{
	c->last_rx = uv_now(c->srv->loop);
	c->stale_fired = false;
}

void tcp_conn_set_data(struct tcp_conn *c, void *data)
{
	c->data = data;
}

void *tcp_conn_get_data(const struct tcp_conn *c)
{
	return c->data;
}

uint32_t tcp_conn_id(const struct tcp_conn *c)
{
	return c->id;
}

const char *tcp_conn_peer(const struct tcp_conn *c)
{
	return c->peer;
}

struct tcp_server *tcp_conn_server(const struct tcp_conn *c)
{
	return c->srv;
}

size_t tcp_conn_queued(const struct tcp_conn *c)
{
	return c->queued;
}

bool tcp_conn_reading(const struct tcp_conn *c)
{
	return (c->poll_events & UV_READABLE) != 0;
}

struct frame_u128 tcp_conn_last_client(const struct tcp_conn *c)
{
	return c->last_client;
}

int tcp_conn_evict(struct tcp_conn *c, uint8_t reason)
{
	if (frame_u128_is_zero(c->last_client))
		return -ENOENT;
	struct frame_eviction e = {.client = c->last_client, .reason = reason};
	uint8_t hdr[FRAME_HEADER_SIZE];
	int rc = frame_eviction_encode(hdr, &e);
	if (rc != 0)
		return rc;
	struct tcp_piece p = TCP_COPY(hdr, sizeof hdr);
	return tcp_conn_send(c, &p, 1, NULL, NULL);
}

/* ---- TLS ---- */

/* Starts the server side of a TLS session on a new connection. Returns 0 or -ENOMEM. */
static int tls_conn_init(struct tcp_conn *c)
{
	c->ssl = SSL_new(c->srv->opts.ssl_ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) {
		if (c->ssl)
			SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
		return -ENOMEM;
	}
	SSL_set_accept_state(c->ssl);
	SSL_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return 0;
}

/* Describes why an OpenSSL call failed (err from SSL_get_error, e the errno right after the call). */
static void tls_why(int err, int e, char *out, size_t cap)
{
	unsigned long code = ERR_peek_last_error();
	const char *reason = code ? ERR_reason_error_string(code) : NULL;
	if (reason)
		snprintf(out, cap, "%s", reason);
	else if (code)
		snprintf(out, cap, "OpenSSL error %lx", code);
	else if (err == SSL_ERROR_SYSCALL && e != 0)
		snprintf(out, cap, "%s", strerror(e));
	else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN)
		snprintf(out, cap, "closed by the peer");
	else
		snprintf(out, cap, "TLS error %d", err);
	ERR_clear_error();
}

/* Runs the handshake as far as the socket allows; on success the handler learns of the connection. */
static void tls_handshake(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	ERR_clear_error();
	errno = 0;
	int rc = SSL_accept(c->ssl);
	if (rc == 1) {
		c->tls_ready = true;
		c->tls_hs_events = 0;
		c->last_rx = c->last_tx = uv_now(s->loop);
		slog(s, TCP_LOG_DEBUG, "connection %u (%s): TLS handshake done (%s, %s)", c->id, c->peer,
		     SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
		conn_secured(c);
		return;
	}
	int e = errno;
	int err = SSL_get_error(c->ssl, rc);
	if (err == SSL_ERROR_WANT_READ) {
		c->tls_hs_events = UV_READABLE;
		return;
	}
	if (err == SSL_ERROR_WANT_WRITE) {
		c->tls_hs_events = UV_WRITABLE;
		return;
	}
	if (err == SSL_ERROR_SYSCALL && e == EINTR) {
		c->tls_hs_events = UV_READABLE | UV_WRITABLE;
		return;
	}
	char why[160];
	tls_why(err, e, why, sizeof why);
	slog(s, TCP_LOG_INFO, "connection %u (%s): TLS handshake failed: %s", c->id, c->peer, why);
	conn_abort(c, -EPROTO);
}

/* conn_read for a TLS connection whose handshake is done. */
static void tls_read(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	c->tls_read_wants_write = false;
	for (int i = 0; i < READS_PER_WAKEUP && conn_may_read(c); i++) {
		if (rbuf_room(c) != 0) {
			conn_abort(c, -ENOMEM);
			return;
		}
		size_t room = c->rcap - c->rlen;
		ERR_clear_error();
		errno = 0;
		int n = SSL_read(c->ssl, c->rbuf + c->rlen, room > INT_MAX ? INT_MAX : (int)room);
		if (n > 0) {
			c->rlen += (size_t)n;
			c->last_rx = uv_now(s->loop);
			c->stale_fired = false;
			conn_parse(c);
			continue;
		}
		int e = errno;
		int err = SSL_get_error(c->ssl, n);
		if (err == SSL_ERROR_WANT_READ)
			return;
		if (err == SSL_ERROR_WANT_WRITE) {
			c->tls_read_wants_write = true;
			return;
		}
		if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && e == 0)) {
			ERR_clear_error();
			c->eof = true;
			return;
		}
		if (err == SSL_ERROR_SYSCALL && e == EINTR)
			continue;
		char why[160];
		tls_why(err, e, why, sizeof why);
		slog(s, TCP_LOG_INFO, "connection %u (%s): TLS read failed: %s", c->id, c->peer, why);
		conn_abort(c, err == SSL_ERROR_SYSCALL ? -e : -EPROTO);
		return;
	}
	/* Stopped by the read limit: what OpenSSL still holds waits for the idle callback, not the socket. */
	if (conn_may_read(c) && SSL_has_pending(c->ssl))
		conn_defer(c);
}

/*
 * Copies the next bytes of the queue, up to TLS_BOUNCE, into the empty bounce buffer: memory pieces
 * with memcpy, file ranges with pread. Returns 0, or a negative errno when nothing could be copied.
 */
static int tls_bounce_fill(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	if (!c->bounce) {
		c->bounce = malloc(TLS_BOUNCE);
		if (!c->bounce)
			return -ENOMEM;
	}
	size_t n = 0;
	for (struct send *snd = c->sq_head; snd && n < TLS_BOUNCE; snd = snd->next) {
		for (size_t i = snd->cur; i < snd->nsegs && n < TLS_BOUNCE; i++) {
			const struct seg *sg = &snd->segs[i];
			size_t take = sg->len < TLS_BOUNCE - n ? sg->len : TLS_BOUNCE - n;
			if (!sg->file) {
				memcpy(c->bounce + n, sg->base, take);
				n += take;
				continue;
			}
			ssize_t r;
			do
				r = pread(sg->fd, c->bounce + n, take, (off_t)sg->off);
			while (r < 0 && errno == EINTR);
			if (r <= 0 && n > 0)
				goto filled; /* what was copied goes first; the range is read again next time */
			if (r == 0) {
				slog(s, TCP_LOG_ERROR, "connection %u: file range ends early (fd %d, offset %llu)", c->id,
				     sg->fd, (unsigned long long)sg->off);
				return -EIO;
			}
			if (r < 0)
				return -errno;
			n += (size_t)r;
			if ((size_t)r < take)
				goto filled;
		}
	}
filled:
	assert(n <= c->queued); /* the bounce buffer holds only bytes still queued */
	c->bpos = 0;
	c->blen = n;
	return 0;
}

/* conn_flush for a TLS connection: encrypts the queue through the bounce buffer. */
static void tls_flush(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	bool progress = false;
	c->tls_write_wants_read = false;
	if (!c->tls_ready)
		return;
	while (c->sq_head && !c->closing) {
		if (c->bpos == c->blen) {
			int rc = tls_bounce_fill(c);
			if (rc < 0) {
				conn_abort(c, rc);
				return;
			}
		}
		ERR_clear_error();
		errno = 0;
		int n = SSL_write(c->ssl, c->bounce + c->bpos, (int)(c->blen - c->bpos));
		if (n > 0) {
			assert((size_t)n <= c->blen - c->bpos);
			c->bpos += (size_t)n;
			if (c->bpos == c->blen)
				c->bpos = c->blen = 0;
			conn_advance(c, (size_t)n);
			progress = true;
			continue;
		}
		int e = errno;
		int err = SSL_get_error(c->ssl, n);
		if (err == SSL_ERROR_WANT_WRITE)
			break;
		if (err == SSL_ERROR_WANT_READ) {
			c->tls_write_wants_read = true;
			break;
		}
		if (err == SSL_ERROR_SYSCALL && e == EINTR)
			continue;
		char why[160];
		tls_why(err, e, why, sizeof why);
		slog(s, TCP_LOG_DEBUG, "connection %u (%s): TLS write failed: %s", c->id, c->peer, why);
		conn_abort(c, err == SSL_ERROR_SYSCALL && e != 0 ? -e : -EPROTO);
		return;
	}
	conn_wrote(c, progress);
}

/* ---- Heartbeat and lingering closes ---- */

static void conn_stale(struct tcp_conn *c)
{
	struct tcp_server *s = c->srv;
	slog(s, TCP_LOG_INFO, "connection %u (%s) silent for %u ms", c->id, c->peer, s->opts.heartbeat_timeout_ms);
	if (s->h.on_stale) {
		s->h.on_stale(c);
		return;
	}
	if (tcp_conn_evict(c, FRAME_EVICT_STALE_CLIENT) == 0)
		tcp_conn_close(c);
	else
		conn_abort(c, -ETIMEDOUT);
}

static void on_timer(uv_timer_t *t)
{
	struct tcp_server *s = t->data;
	uint64_t now = uv_now(s->loop);
	uint64_t hb = s->opts.heartbeat_timeout_ms;
	for (struct link *l = s->conns.next; l != &s->conns && !s->closing; l = l->next) {
		struct tcp_conn *c = container_of(l, struct tcp_conn, link);
		if (c->closing)
			continue;
		if (!c->connected) { /* only during a TLS handshake or a framing's upgrade */
			uint64_t limit = s->opts.tls_handshake_timeout_ms;
			if (limit > 0 && now - c->accepted_at >= limit) {
				slog(s, TCP_LOG_INFO, "connection %u (%s): no %s handshake within %u ms; closing", c->id,
				     c->peer, c->ssl && !c->tls_ready ? "TLS" : "upgrade", s->opts.tls_handshake_timeout_ms);
				conn_abort(c, -ETIMEDOUT);
			}
			continue;
		}
		uint64_t last = c->last_rx > c->last_tx ? c->last_rx : c->last_tx;
		if (c->close_req) {
			uint64_t since = c->close_req_at > c->last_tx ? c->close_req_at : c->last_tx;
			if (now - since >= s->opts.close_linger_ms)
				conn_abort(c, -ETIMEDOUT);
			continue;
		}
		/* A connection held back by its handler waits for the server, not the other way round. */
		if (hb > 0 && !c->stale_fired && !c->user_paused && now - last > hb) {
			c->stale_fired = true;
			conn_stale(c);
		}
	}
}
