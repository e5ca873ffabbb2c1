/*
 * quic — see quic.h for what the listener does and the stream format (one request frame per
 * bidirectional stream, reference §5).
 *
 * Shape of the code. A packet is looked up by its destination connection ID in a hash of every ID that
 * maps to a connection; an unknown ID with an acceptable Initial makes a new connection. ngtcp2 calls
 * back while it reads a packet; those callbacks only record what happened (stream data buffered, a
 * stream complete or to be reset, the handshake done) and the work that can reach the node (opening the
 * session, handing it frames, which may answer synchronously) runs once ngtcp2_conn_read_pkt has
 * returned, so the handler never re-enters ngtcp2. Connections are freed only from their timer's
 * callback or by the server closing, never in the middle of handling a packet.
 */
#include "transport/quic.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <xxhash.h>

#include "transport/list.h"
#include "transport/tcp.h"

#define SCID_LEN 16
#define CID_BUCKETS 4096u
#define SEND_QUEUE_LIMIT (4u * 1024 * 1024) /* default quic_opts.send_queue_limit */
#define RECV_BUF_SIZE 65536
#define STREAM_WINDOW (1u * 1024 * 1024)
#define CONN_WINDOW (16u * 1024 * 1024)
#define MAX_PKTS_PER_WRITE 4096
#define TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:%DISABLE_TLS13_COMPAT_MODE"

enum conn_state {
	CS_ACTIVE,    /* handshaking or established */
	CS_CLOSING,   /* we sent CONNECTION_CLOSE; it is repeated to packets that still arrive */
	CS_DRAINING,  /* the peer closed; we stay silent */
	CS_DEAD,      /* to be freed by the timer */
};

struct cid_ent {
	ngtcp2_cid cid;
	struct quic_conn *c;
	struct cid_ent *next;       /* in its bucket */
	struct link link;           /* in c->cids */
};

struct qstream {
	struct quic_conn *c;
	int64_t id;
	struct link link;           /* in c->streams */
	struct link ev_link;        /* in c->events while complete or rejected and not yet processed */
	struct link q_link;         /* in c->awaiting while dispatched and its reply not yet here */
	struct link s_link;         /* in c->sending while reply bytes or the FIN remain */
	uint8_t head[FRAME_OFF_SIZE + 4];
	uint8_t *buf;               /* the frame's bytes so far, once its size is known */
	size_t len, cap, size;
	uint64_t reject;            /* application error code, 0: none */
	bool complete, dispatched, closed, blocked, fin_sent;
	uint8_t *reply;
	size_t reply_len, reply_off;
};

struct quic_conn {
	struct quic_server *srv;
	struct link link;           /* in srv->conns */
	struct link blocked_link;   /* in srv->blocked while the send queue is full */
	ngtcp2_conn *conn;
	gnutls_session_t tls;
	ngtcp2_crypto_conn_ref ref;
	uv_timer_t timer;
	enum conn_state state;
	struct sockaddr_storage peer_addr;
	socklen_t peer_len;
	char peer[64];
	uint32_t id;
	void *data;
	bool hs_done, opened, in_io, counted;
	struct link cids, streams, events, awaiting, sending;
	uint8_t *close_pkt;
	size_t close_len;
};

struct qsend {
	uv_udp_send_t req;
	struct quic_server *srv;
	size_t len;
	struct sockaddr_storage to;
	uint8_t data[];
};

struct quic_server {
	uv_loop_t *loop;
	struct quic_opts opts;
	struct quic_handler h;
	void *ud;
	uv_udp_t udp;
	struct sockaddr_storage local;
	socklen_t local_len;
	int port;
	gnutls_certificate_credentials_t cred;
	uint8_t reset_secret[32];
	struct cid_ent *buckets[CID_BUCKETS];
	struct link conns, blocked;
	uint32_t nconns;            /* counted: handshake completed, not closing */
	uint32_t nlive;             /* struct quic_conn allocated (including closing ones) */
	uint32_t next_id;
	size_t queued;              /* bytes in uv_udp_send requests */
	size_t nsends;              /* uv_udp_send requests outstanding */
	uint64_t queued_total;      /* datagrams ever queued */
	uint64_t pauses;            /* times a connection paused on a full queue */
	int open_handles;           /* udp + connection timers */
	bool draining; /* quic_server_drain: no new connections, new requests reset with 58 */
	bool closing;
	uint8_t rbuf[RECV_BUF_SIZE];
};

static void conn_write(struct quic_conn *c);
static void conn_error(struct quic_conn *c, int rv);
static void on_conn_timer(uv_timer_t *t);

/* ---- Logging and time ---- */

static void qlog(struct quic_server *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void qlog(struct quic_server *s, int level, const char *fmt, ...)
{
	if (s->opts.log == NULL)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->opts.log(s->opts.log_ud, level, msg);
}

static ngtcp2_tstamp now_ns(void)
{
	return uv_hrtime();
}

static void addr_name(const struct sockaddr *sa, char *out, size_t n)
{
	char ip[64] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		uv_ip6_name(a, ip, sizeof(ip));
		port = ntohs(a->sin6_port);
		snprintf(out, n, "[%s]:%d", ip, port);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		uv_ip4_name(a, ip, sizeof(ip));
		port = ntohs(a->sin_port);
		snprintf(out, n, "%s:%d", ip, port);
	}
}

static socklen_t sa_len(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* ---- Connection ID map ---- */

static uint32_t cid_bucket(const uint8_t *p, size_t n)
{
	return (uint32_t)(XXH3_64bits(p, n) % CID_BUCKETS);
}

static struct quic_conn *cid_find(struct quic_server *s, const uint8_t *p, size_t n)
{
	for (struct cid_ent *e = s->buckets[cid_bucket(p, n)]; e != NULL; e = e->next)
		if (e->cid.datalen == n && memcmp(e->cid.data, p, n) == 0)
			return e->c;
	return NULL;
}

static int cid_add(struct quic_conn *c, const ngtcp2_cid *cid)
{
	struct quic_server *s = c->srv;
	struct cid_ent *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	e->cid = *cid;
	e->c = c;
	uint32_t b = cid_bucket(cid->data, cid->datalen);
	e->next = s->buckets[b];
	s->buckets[b] = e;
	list_push(&c->cids, &e->link);
	return 0;
}

static void cid_ent_free(struct quic_server *s, struct cid_ent *e)
{
	for (struct cid_ent **pp = &s->buckets[cid_bucket(e->cid.data, e->cid.datalen)]; *pp != NULL;
	     pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	list_remove(&e->link);
	free(e);
}

static void cid_remove(struct quic_conn *c, const ngtcp2_cid *cid)
{
	for (struct link *l = c->cids.next; l != &c->cids; l = l->next) {
		struct cid_ent *e = container_of(l, struct cid_ent, link);
		if (ngtcp2_cid_eq(&e->cid, cid)) {
			cid_ent_free(c->srv, e);
			return;
		}
	}
}

/* ---- Sending datagrams ---- */

static void on_sent(uv_udp_send_t *req, int status)
{
	struct qsend *q = container_of(req, struct qsend, req);
	struct quic_server *s = q->srv;
	assert(s->nsends > 0 && q->len <= s->queued); /* each queued datagram is counted once */
	s->queued -= q->len;
	s->nsends--;
	free(q);
	/* Connections that paused on a full queue resume once half of it has gone. */
	if (!s->closing && s->queued <= s->opts.send_queue_limit / 2) {
		while (!list_empty(&s->blocked)) {
			struct quic_conn *c = container_of(s->blocked.next, struct quic_conn, blocked_link);
			list_remove(&c->blocked_link);
			conn_write(c);
			if (s->queued > s->opts.send_queue_limit)
				break;
		}
	}
}

/* Sends one datagram; a datagram that cannot go now is queued (and a failed one dropped: QUIC resends). */
static void send_packet(struct quic_server *s, const struct sockaddr *to, const uint8_t *p, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)p, (unsigned int)n);
	if (s->nsends == 0 && !s->opts.queue_all) {
		int rc = uv_udp_try_send(&s->udp, &b, 1, to);
		if (rc >= 0)
			return;
		if (rc != UV_EAGAIN) {
			qlog(s, QUIC_LOG_DEBUG, "send: %s", uv_strerror(rc));
			return;
		}
	}
	struct qsend *q = malloc(sizeof(*q) + n);
	if (q == NULL)
		return;
	q->srv = s;
	q->len = n;
	memcpy(q->data, p, n);
	memcpy(&q->to, to, sa_len(to));
	b = uv_buf_init((char *)q->data, (unsigned int)n);
	if (uv_udp_send(&q->req, &s->udp, &b, 1, (const struct sockaddr *)&q->to, on_sent) != 0) {
		free(q);
		return;
	}
	s->queued += n;
	s->nsends++;
	s->queued_total++;
}

/* ---- Streams ---- */

static struct qstream *stream_new(struct quic_conn *c, int64_t id)
{
	struct qstream *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	st->c = c;
	st->id = id;
	list_init(&st->ev_link);
	list_init(&st->q_link);
	list_init(&st->s_link);
	list_push(&c->streams, &st->link);
	return st;
}

static void stream_free(struct qstream *st)
{
	list_remove(&st->link);
	list_remove(&st->ev_link);
	list_remove(&st->q_link);
	list_remove(&st->s_link);
	free(st->buf);
	free(st->reply);
	free(st);
}

/* The stream is not one well-formed request: it will be reset with `code` once the packet is handled. */
static void stream_reject(struct qstream *st, uint64_t code)
{
	if (st->reject != 0)
		return;
	st->reject = code;
	free(st->buf);
	st->buf = NULL;
	list_remove(&st->ev_link);
	list_push(&st->c->events, &st->ev_link);
}

/* Buffers request bytes (delivered in order by ngtcp2), checking them against the size in the header. */
static void stream_consume(struct qstream *st, const uint8_t *data, size_t n)
{
	struct quic_server *s = st->c->srv;
	if (n == 0)
		return; /* a bare FIN: data may be NULL */
	if (st->buf == NULL) {
		size_t take = sizeof(st->head) - st->len;
		if (take > n)
			take = n;
		memcpy(st->head + st->len, data, take);
		st->len += take;
		data += take;
		n -= take;
		if (st->len < sizeof(st->head))
			return;
		uint32_t size = frame_peek_size(st->head);
		if (size < FRAME_HEADER_SIZE || size > s->opts.max_frame) {
			qlog(s, QUIC_LOG_DEBUG, "connection %u: stream %lld: frame size %u out of range", st->c->id,
			     (long long)st->id, size);
			stream_reject(st, QUIC_APP_INVALID_FORMAT);
			return;
		}
		/* Memory follows the bytes that came, not the size claimed: a header alone holds little. */
		st->cap = size < 64 * 1024 ? size : 64 * 1024;
		st->buf = malloc(st->cap);
		if (st->buf == NULL) {
			stream_reject(st, QUIC_APP_INVALID_FORMAT);
			return;
		}
		st->size = size;
		memcpy(st->buf, st->head, st->len);
	}
	if (n > st->size - st->len) {
		qlog(s, QUIC_LOG_DEBUG, "connection %u: stream %lld: more bytes than the frame's size %zu",
		     st->c->id, (long long)st->id, st->size);
		stream_reject(st, QUIC_APP_INVALID_FORMAT);
		return;
	}
	if (st->len + n > st->cap) {
		size_t cap = st->cap * 2 > st->len + n ? st->cap * 2 : st->len + n;
		if (cap > st->size)
			cap = st->size;
		uint8_t *p = realloc(st->buf, cap);
		if (p == NULL) {
			stream_reject(st, QUIC_APP_INVALID_FORMAT);
			return;
		}
		st->buf = p;
		st->cap = cap;
	}
	memcpy(st->buf + st->len, data, n);
	st->len += n;
	/* What a stream buffers never passes the size its frame announced. */
	assert(st->len <= st->cap && st->cap <= st->size);
}

/* ---- ngtcp2 callbacks (record only; see the top of the file) ---- */

static void cb_rand(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
	(void)ctx;
	if (gnutls_rnd(GNUTLS_RND_RANDOM, dest, len) != 0)
		memset(dest, 0, len); /* only padding and probes use this; never key material */
}

static int cb_new_cid(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud)
{
	struct quic_conn *c = ud;
	if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	cid->datalen = cidlen;
	if (ngtcp2_crypto_generate_stateless_reset_token(token, c->srv->reset_secret, sizeof(c->srv->reset_secret),
							 cid) != 0)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	return cid_add(c, cid) == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

static int cb_remove_cid(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *ud)
{
	cid_remove(ud, cid);
	return 0;
}

static int cb_handshake_completed(ngtcp2_conn *conn, void *ud)
{
	struct quic_conn *c = ud;
	c->hs_done = true;
	return 0;
}

static int cb_stream_open(ngtcp2_conn *conn, int64_t id, void *ud)
{
	struct quic_conn *c = ud;
	if (!ngtcp2_is_bidi_stream(id))
		return 0;
	struct qstream *st = stream_new(c, id);
	if (st == NULL)
		return NGTCP2_ERR_CALLBACK_FAILURE;
	ngtcp2_conn_set_stream_user_data(conn, id, st);
	return 0;
}

static int cb_recv_stream_data(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t offset, const uint8_t *data,
			       size_t datalen, void *ud, void *sud)
{
	struct qstream *st = sud;
	/* Credit comes back at once: what a stream may hold is bounded by the frame size check instead. */
	ngtcp2_conn_extend_max_stream_offset(conn, id, datalen);
	ngtcp2_conn_extend_max_offset(conn, datalen);
	if (st == NULL || st->reject != 0)
		return 0;
	if (st->complete || st->dispatched) {
		stream_reject(st, QUIC_APP_INVALID_FORMAT);
		return 0;
	}
	stream_consume(st, data, datalen);
	if (st->reject == 0 && (flags & NGTCP2_STREAM_DATA_FLAG_FIN)) {
		if (st->buf == NULL || st->len != st->size) {
			stream_reject(st, QUIC_APP_INVALID_FORMAT);
		} else {
			st->complete = true;
			list_push(&st->c->events, &st->ev_link);
		}
	}
	return 0;
}

static int cb_stream_close(ngtcp2_conn *conn, uint32_t flags, int64_t id, uint64_t code, void *ud, void *sud)
{
	struct qstream *st = sud;
	if (ngtcp2_is_bidi_stream(id))
		ngtcp2_conn_extend_max_streams_bidi(conn, 1);
	if (st == NULL)
		return 0;
	st->closed = true;
	list_remove(&st->ev_link);
	list_remove(&st->s_link);
	/* A request the handler still owes a reply to keeps its place in the order until the reply comes. */
	if (st->dispatched && st->reply == NULL && !list_empty(&st->q_link))
		return 0;
	stream_free(st);
	return 0;
}

static int cb_extend_max_stream_data(ngtcp2_conn *conn, int64_t id, uint64_t max_data, void *ud, void *sud)
{
	struct qstream *st = sud;
	if (st != NULL)
		st->blocked = false;
	return 0;
}

static ngtcp2_conn *get_conn(ngtcp2_crypto_conn_ref *ref)
{
	struct quic_conn *c = ref->user_data;
	return c->conn;
}

/* ---- Connections ---- */

static void conn_arm_timer(struct quic_conn *c)
{
	ngtcp2_tstamp exp = ngtcp2_conn_get_expiry(c->conn), now = now_ns();
	if (exp == UINT64_MAX) {
		uv_timer_stop(&c->timer);
		return;
	}
	uint64_t ms = exp <= now ? 0 : (exp - now + 999999) / 1000000;
	uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

/* The session ends (the connection is closing or gone); owed replies will not be asked for any more. */
static void conn_end_session(struct quic_conn *c)
{
	struct quic_server *s = c->srv;
	if (c->counted) {
		assert(s->nconns > 0);
		c->counted = false;
		s->nconns--;
	}
	if (c->opened) {
		c->opened = false;
		s->h.on_close(c);
	}
	/* Nothing will answer the streams that wait: they can go. */
	while (!list_empty(&c->awaiting)) {
		struct qstream *st = container_of(c->awaiting.next, struct qstream, q_link);
		list_remove(&st->q_link);
		if (st->closed)
			stream_free(st);
	}
	list_remove(&c->blocked_link);
}

/* Lingers for three PTOs in the closing or draining state, then is freed. */
static void conn_linger(struct quic_conn *c, enum conn_state state)
{
	/* A connection leaves the active state once, for closing, draining or dead. */
	assert(c->state == CS_ACTIVE && (state == CS_CLOSING || state == CS_DRAINING));
	c->state = state;
	conn_end_session(c);
	uint64_t ms = 3 * ngtcp2_conn_get_pto(c->conn) / 1000000 + 1;
	uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

static void conn_die(struct quic_conn *c)
{
	assert(c->state == CS_ACTIVE);
	c->state = CS_DEAD;
	conn_end_session(c);
	uv_timer_start(&c->timer, on_conn_timer, 0, 0);
}

/* Sends CONNECTION_CLOSE with ccerr and enters the closing period. */
static void conn_close_with(struct quic_conn *c, const ngtcp2_ccerr *ccerr)
{
	if (c->state != CS_ACTIVE)
		return;
	if (ngtcp2_conn_in_closing_period(c->conn) || ngtcp2_conn_in_draining_period(c->conn)) {
		conn_linger(c, CS_DRAINING);
		return;
	}
	uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_pkt_info pi;
	ngtcp2_ssize n = ngtcp2_conn_write_connection_close(c->conn, &ps.path, &pi, buf, sizeof(buf), ccerr, now_ns());
	if (n <= 0) {
		conn_die(c);
		return;
	}
	c->close_pkt = malloc((size_t)n);
	if (c->close_pkt != NULL) {
		memcpy(c->close_pkt, buf, (size_t)n);
		c->close_len = (size_t)n;
	}
	send_packet(c->srv, (const struct sockaddr *)&c->peer_addr, buf, (size_t)n);
	conn_linger(c, CS_CLOSING);
}

static void conn_close_app(struct quic_conn *c, uint64_t code, const char *reason)
{
	ngtcp2_ccerr e;
	ngtcp2_ccerr_default(&e);
	ngtcp2_ccerr_set_application_error(&e, code, (const uint8_t *)reason, strlen(reason));
	conn_close_with(c, &e);
}

/* An error from ngtcp2 while reading, writing or handling a timeout. */
static void conn_error(struct quic_conn *c, int rv)
{
	struct quic_server *s = c->srv;
	if (c->state != CS_ACTIVE)
		return;
	switch (rv) {
	case NGTCP2_ERR_DRAINING:
		qlog(s, QUIC_LOG_DEBUG, "connection %u (%s): closed by the peer", c->id, c->peer);
		conn_linger(c, CS_DRAINING);
		return;
	case NGTCP2_ERR_IDLE_CLOSE:
		qlog(s, QUIC_LOG_DEBUG, "connection %u (%s): idle timeout", c->id, c->peer);
		conn_die(c);
		return;
	case NGTCP2_ERR_DROP_CONN:
		conn_die(c);
		return;
	default:
		break;
	}
	qlog(s, QUIC_LOG_DEBUG, "connection %u (%s): %s; closing", c->id, c->peer, ngtcp2_strerror(rv));
	ngtcp2_ccerr e;
	ngtcp2_ccerr_default(&e);
	if (rv == NGTCP2_ERR_CRYPTO)
		ngtcp2_ccerr_set_tls_alert(&e, ngtcp2_conn_get_tls_alert(c->conn), NULL, 0);
	else
		ngtcp2_ccerr_set_liberr(&e, rv, NULL, 0);
	conn_close_with(c, &e);
}

static void conn_timer_closed(uv_handle_t *h);

/* Frees everything of the connection but its memory, which goes with the timer's close callback. */
static void conn_free(struct quic_conn *c)
{
	struct quic_server *s = c->srv;
	conn_end_session(c);
	while (!list_empty(&c->cids))
		cid_ent_free(s, container_of(c->cids.next, struct cid_ent, link));
	while (!list_empty(&c->streams))
		stream_free(container_of(c->streams.next, struct qstream, link));
	list_remove(&c->link);
	if (c->conn != NULL)
		ngtcp2_conn_del(c->conn);
	c->conn = NULL;
	if (c->tls != NULL)
		gnutls_deinit(c->tls);
	c->tls = NULL;
	free(c->close_pkt);
	c->close_pkt = NULL;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, conn_timer_closed);
}

static void on_conn_timer(uv_timer_t *t)
{
	struct quic_conn *c = t->data;
	if (c->state != CS_ACTIVE) {
		conn_free(c);
		return;
	}
	int rv = ngtcp2_conn_handle_expiry(c->conn, now_ns());
	if (rv != 0) {
		conn_error(c, rv);
		return;
	}
	conn_write(c);
}

/* Hands completed requests to the handler and resets rejected streams (after ngtcp2 has returned). */
static void conn_process(struct quic_conn *c)
{
	struct quic_server *s = c->srv;
	if (c->state != CS_ACTIVE)
		return;
	if (c->hs_done && !c->opened && !c->counted) {
		c->counted = true;
		s->nconns++;
		if (s->h.on_open(c) != 0) {
			qlog(s, QUIC_LOG_WARN, "connection %u (%s): no session; closing", c->id, c->peer);
			conn_close_app(c, QUIC_APP_SERVER_BUSY, "no session");
			return;
		}
		c->opened = true;
	}
	while (!list_empty(&c->events) && c->state == CS_ACTIVE) {
		struct qstream *st = container_of(c->events.next, struct qstream, ev_link);
		list_remove(&st->ev_link);
		if (st->reject == 0 && st->complete) {
			struct frame_request req = {0};
			int rc = frame_peek_command(st->buf) == FRAME_CMD_REQUEST ? frame_request_decode(st->buf, &req)
										  : FRAME_E_COMMAND;
			if (rc == 0 && c->opened && s->draining) {
				st->reject = QUIC_APP_NOT_ACCEPTED; /* true: the handler never sees it */
			} else if (rc != 0 || !c->opened) {
				qlog(s, QUIC_LOG_DEBUG, "connection %u: stream %lld: not a valid request: %s", c->id,
				     (long long)st->id, rc != 0 ? frame_strerror(rc) : "no session");
				st->reject = QUIC_APP_INVALID_COMMAND;
			} else {
				assert(st->buf != NULL && st->len == st->size && st->size >= FRAME_HEADER_SIZE);
				st->complete = false;
				st->dispatched = true;
				list_push(&c->awaiting, &st->q_link);
				s->h.on_frame(c, &req, st->buf + FRAME_HEADER_SIZE, st->size - FRAME_HEADER_SIZE);
				continue;
			}
		}
		if (st->reject != 0)
			ngtcp2_conn_shutdown_stream(c->conn, 0, st->id, st->reject);
	}
}

/* The send queue is full: the connection writes again once it has drained to half (on_sent). */
static void conn_pause(struct quic_conn *c)
{
	if (list_empty(&c->blocked_link)) {
		list_push(&c->srv->blocked, &c->blocked_link);
		c->srv->pauses++;
	}
}

/* Writes whatever ngtcp2 has to send: replies, acknowledgements, retransmissions, control frames. */
static void conn_write(struct quic_conn *c)
{
	struct quic_server *s = c->srv;
	if (c->state != CS_ACTIVE || c->in_io)
		return;
	if (s->queued > s->opts.send_queue_limit) {
		conn_pause(c);
		return;
	}
	/* Any packet may have brought credit: every stream gets another try. */
	for (struct link *l = c->sending.next; l != &c->sending; l = l->next)
		container_of(l, struct qstream, s_link)->blocked = false;
	uint8_t buf[NGTCP2_MAX_PMTUD_UDP_PAYLOAD_SIZE];
	size_t max = ngtcp2_conn_get_path_max_tx_udp_payload_size(c->conn);
	if (max > sizeof(buf))
		max = sizeof(buf);
	ngtcp2_path_storage ps;
	ngtcp2_path_storage_zero(&ps);
	ngtcp2_tstamp ts = now_ns();
	for (int i = 0; i < MAX_PKTS_PER_WRITE; i++) {
		struct qstream *st = NULL;
		for (struct link *l = c->sending.next; l != &c->sending; l = l->next) {
			struct qstream *x = container_of(l, struct qstream, s_link);
			if (!x->blocked) {
				st = x;
				break;
			}
		}
		ngtcp2_vec v = {0};
		int64_t sid = -1;
		size_t nv = 0;
		uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
		if (st != NULL) {
			sid = st->id;
			v.base = st->reply + st->reply_off;
			v.len = st->reply_len - st->reply_off;
			nv = 1;
			flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
		}
		ngtcp2_ssize ndata = -1;
		ngtcp2_pkt_info pi;
		ngtcp2_ssize n =
			ngtcp2_conn_writev_stream(c->conn, &ps.path, &pi, buf, max, &ndata, flags, sid, &v, nv, ts);
		if (st != NULL && ndata >= 0) {
			st->reply_off += (size_t)ndata;
			assert(st->reply_off <= st->reply_len);
			if (st->reply_off == st->reply_len) {
				st->fin_sent = true;
				list_remove(&st->s_link);
			}
		}
		if (n < 0) {
			if (n == NGTCP2_ERR_WRITE_MORE)
				continue;
			if (st != NULL && n == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
				st->blocked = true;
				continue;
			}
			if (st != NULL && (n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND)) {
				list_remove(&st->s_link);
				continue;
			}
			conn_error(c, (int)n);
			return;
		}
		if (n == 0)
			break;
		send_packet(s, (const struct sockaddr *)ps.path.remote.addr, buf, (size_t)n);
		if (s->queued > s->opts.send_queue_limit) {
			conn_pause(c);
			break;
		}
	}
	ngtcp2_conn_update_pkt_tx_time(c->conn, ts);
	conn_arm_timer(c);
}

static const ngtcp2_callbacks conn_callbacks = {
	.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb,
	.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
	.handshake_completed = cb_handshake_completed,
	.encrypt = ngtcp2_crypto_encrypt_cb,
	.decrypt = ngtcp2_crypto_decrypt_cb,
	.hp_mask = ngtcp2_crypto_hp_mask_cb,
	.recv_stream_data = cb_recv_stream_data,
	.stream_open = cb_stream_open,
	.stream_close = cb_stream_close,
	.rand = cb_rand,
	.get_new_connection_id = cb_new_cid,
	.remove_connection_id = cb_remove_cid,
	.update_key = ngtcp2_crypto_update_key_cb,
	.extend_max_stream_data = cb_extend_max_stream_data,
	.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
	.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
	.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
	.version_negotiation = ngtcp2_crypto_version_negotiation_cb,
};

static const gnutls_datum_t alpn_iggy = {(unsigned char *)"iggy", 4};

static int conn_tls_init(struct quic_conn *c)
{
	struct quic_server *s = c->srv;
	if (gnutls_init(&c->tls, GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA) != 0) {
		c->tls = NULL;
		return -1;
	}
	if (gnutls_priority_set_direct(c->tls, TLS_PRIORITY, NULL) != 0 ||
	    ngtcp2_crypto_gnutls_configure_server_session(c->tls) != 0 ||
	    gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, s->cred) != 0)
		return -1;
	/* Offered, never required: Iggy's SDKs send no ALPN at all. */
	gnutls_alpn_set_protocols(c->tls, &alpn_iggy, 1, GNUTLS_ALPN_SERVER_PRECEDENCE);
	c->ref.get_conn = get_conn;
	c->ref.user_data = c;
	gnutls_session_set_ptr(c->tls, &c->ref);
	ngtcp2_conn_set_tls_native_handle(c->conn, c->tls);
	return 0;
}

static struct quic_conn *conn_new(struct quic_server *s, const struct sockaddr *from, const ngtcp2_pkt_hd *hd)
{
	struct quic_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->srv = s;
	c->id = ++s->next_id;
	if (c->id == 0)
		c->id = ++s->next_id;
	list_init(&c->link);
	list_init(&c->blocked_link);
	list_init(&c->cids);
	list_init(&c->streams);
	list_init(&c->events);
	list_init(&c->awaiting);
	list_init(&c->sending);
	c->peer_len = sa_len(from);
	memcpy(&c->peer_addr, from, c->peer_len);
	addr_name(from, c->peer, sizeof(c->peer));
	uv_timer_init(s->loop, &c->timer);
	c->timer.data = c;
	s->open_handles++;
	s->nlive++;
	list_push(&s->conns, &c->link);

	ngtcp2_cid scid;
	scid.datalen = SCID_LEN;
	if (gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, SCID_LEN) != 0)
		goto fail;
	ngtcp2_settings st;
	ngtcp2_settings_default(&st);
	st.initial_ts = now_ns();
	st.token = hd->token;
	st.tokenlen = hd->tokenlen;
	ngtcp2_transport_params p;
	ngtcp2_transport_params_default(&p);
	p.initial_max_streams_bidi = s->opts.max_streams;
	p.initial_max_streams_uni = 0;
	p.initial_max_stream_data_bidi_remote = STREAM_WINDOW;
	p.initial_max_data = CONN_WINDOW;
	p.max_idle_timeout = (ngtcp2_duration)s->opts.idle_timeout_ms * NGTCP2_MILLISECONDS;
	p.original_dcid = hd->dcid;
	p.original_dcid_present = 1;
	p.stateless_reset_token_present = 1;
	if (ngtcp2_crypto_generate_stateless_reset_token(p.stateless_reset_token, s->reset_secret,
							 sizeof(s->reset_secret), &scid) != 0)
		goto fail;
	ngtcp2_path path = {
		.local = {.addr = (ngtcp2_sockaddr *)&s->local, .addrlen = s->local_len},
		.remote = {.addr = (ngtcp2_sockaddr *)&c->peer_addr, .addrlen = c->peer_len},
	};
	int rv = ngtcp2_conn_server_new(&c->conn, &hd->scid, &scid, &path, hd->version, &conn_callbacks, &st, &p,
					NULL, c);
	if (rv != 0) {
		c->conn = NULL;
		qlog(s, QUIC_LOG_DEBUG, "new connection from %s: %s", c->peer, ngtcp2_strerror(rv));
		goto fail;
	}
	if (conn_tls_init(c) != 0 || cid_add(c, &scid) != 0 || cid_add(c, &hd->dcid) != 0)
		goto fail;
	qlog(s, QUIC_LOG_DEBUG, "connection %u from %s", c->id, c->peer);
	return c;
fail:
	conn_free(c);
	return NULL;
}

/* One datagram for a connection. */
static void conn_recv(struct quic_conn *c, const struct sockaddr *from, const uint8_t *data, size_t len)
{
	struct quic_server *s = c->srv;
	if (c->state == CS_CLOSING) {
		if (c->close_pkt != NULL)
			send_packet(s, from, c->close_pkt, c->close_len);
		return;
	}
	if (c->state != CS_ACTIVE)
		return;
	ngtcp2_path path = {
		.local = {.addr = (ngtcp2_sockaddr *)&s->local, .addrlen = s->local_len},
		.remote = {.addr = (ngtcp2_sockaddr *)from, .addrlen = sa_len(from)},
	};
	ngtcp2_pkt_info pi = {0};
	c->in_io = true;
	int rv = ngtcp2_conn_read_pkt(c->conn, &path, &pi, data, len, now_ns());
	if (rv == 0)
		conn_process(c);
	c->in_io = false;
	if (rv != 0) {
		conn_error(c, rv);
		return;
	}
	conn_write(c);
}

/* ---- The socket ---- */

static void send_version_negotiation(struct quic_server *s, const struct sockaddr *to, const ngtcp2_version_cid *vc)
{
	uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE], r = 0;
	const uint32_t sv[] = {NGTCP2_PROTO_VER_V1, NGTCP2_PROTO_VER_V2};
	cb_rand(&r, 1, NULL);
	ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(buf, sizeof(buf), r, vc->scid, vc->scidlen, vc->dcid,
							      vc->dcidlen, sv, 2);
	if (n > 0)
		send_packet(s, to, buf, (size_t)n);
}

static void handle_datagram(struct quic_server *s, const struct sockaddr *from, const uint8_t *data, size_t len)
{
	ngtcp2_version_cid vc;
	int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, SCID_LEN);
	if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
		send_version_negotiation(s, from, &vc);
		return;
	}
	if (rv != 0)
		return;
	struct quic_conn *c = cid_find(s, vc.dcid, vc.dcidlen);
	if (c == NULL) {
		ngtcp2_pkt_hd hd;
		if (s->closing || s->draining || ngtcp2_accept(&hd, data, len) != 0)
			return; /* not an Initial that may open a connection (or garbage): dropped */
		if (s->nlive >= s->opts.max_connections) {
			uint8_t buf[NGTCP2_MAX_UDP_PAYLOAD_SIZE];
			qlog(s, QUIC_LOG_WARN, "refusing %s: %u connections open", "a connection", s->nlive);
			ngtcp2_ssize n = ngtcp2_crypto_write_connection_close(buf, sizeof(buf), hd.version, &hd.scid,
									     &hd.dcid, NGTCP2_CONNECTION_REFUSED,
									     NULL, 0);
			if (n > 0)
				send_packet(s, from, buf, (size_t)n);
			return;
		}
		c = conn_new(s, from, &hd);
		if (c == NULL)
			return;
	}
	conn_recv(c, from, data, len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct quic_server *s = h->data;
	*buf = uv_buf_init((char *)s->rbuf, sizeof(s->rbuf));
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr, unsigned flags)
{
	struct quic_server *s = h->data;
	if (nread < 0) {
		qlog(s, QUIC_LOG_DEBUG, "recv: %s", uv_strerror((int)nread));
		return;
	}
	if (nread == 0 || addr == NULL || (flags & UV_UDP_PARTIAL) || s->closing)
		return;
	handle_datagram(s, addr, (const uint8_t *)buf->base, (size_t)nread);
}

/* ---- Server ---- */

void quic_opts_default(struct quic_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->idle_timeout_ms = 30000;
	o->max_streams = 16;
	o->max_connections = 1024;
	o->max_frame = FRAME_MAX_SIZE;
	o->send_queue_limit = SEND_QUEUE_LIMIT;
}

static void server_maybe_free(struct quic_server *s)
{
	if (!s->closing || s->open_handles > 0)
		return;
	for (size_t i = 0; i < CID_BUCKETS; i++)
		while (s->buckets[i] != NULL)
			cid_ent_free(s, s->buckets[i]);
	if (s->cred != NULL)
		gnutls_certificate_free_credentials(s->cred);
	gnutls_memset(s->reset_secret, 0, sizeof(s->reset_secret));
	free(s);
}

static void conn_timer_closed(uv_handle_t *h)
{
	struct quic_conn *c = h->data;
	struct quic_server *s = c->srv;
	assert(s->open_handles > 0 && s->nlive > 0);
	s->open_handles--;
	s->nlive--;
	free(c);
	server_maybe_free(s);
}

static void on_udp_closed(uv_handle_t *h)
{
	struct quic_server *s = h->data;
	s->open_handles--;
	server_maybe_free(s);
}

static void errf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *buf, size_t len, const char *fmt, ...)
{
	if (buf == NULL || len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

int quic_server_new(uv_loop_t *loop, const struct quic_opts *opts, const struct quic_handler *h, void *ud,
		    struct quic_server **out, char *errbuf, size_t errlen)
{
	struct sockaddr_storage addr;
	socklen_t alen;
	if (opts->address == NULL || tcp_addr_parse(opts->address, &addr, &alen) != 0) {
		errf(errbuf, errlen, "bad address %s", opts->address ? opts->address : "(none)");
		return -EINVAL;
	}
	if (opts->cert_file == NULL || opts->key_file == NULL || opts->max_streams == 0 || opts->max_connections == 0 ||
	    opts->idle_timeout_ms == 0 || opts->max_frame < FRAME_HEADER_SIZE || opts->send_queue_limit == 0 ||
	    h->on_open == NULL ||
	    h->on_frame == NULL || h->on_close == NULL) {
		errf(errbuf, errlen, "bad options");
		return -EINVAL;
	}
	struct quic_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->opts = *opts;
	s->opts.address = s->opts.cert_file = s->opts.key_file = NULL; /* the caller's strings may go */
	s->h = *h;
	s->ud = ud;
	list_init(&s->conns);
	list_init(&s->blocked);
	s->closing = true; /* until listening: server_maybe_free may free it */
	if (gnutls_rnd(GNUTLS_RND_KEY, s->reset_secret, sizeof(s->reset_secret)) != 0) {
		errf(errbuf, errlen, "no random bytes");
		free(s);
		return -EIO;
	}
	int rc = gnutls_certificate_allocate_credentials(&s->cred);
	if (rc == 0)
		rc = gnutls_certificate_set_x509_key_file(s->cred, opts->cert_file, opts->key_file, GNUTLS_X509_FMT_PEM);
	if (rc != 0) {
		errf(errbuf, errlen, "cannot load certificate %s and key %s: %s", opts->cert_file, opts->key_file,
		     gnutls_strerror(rc));
		server_maybe_free(s);
		return -EIO;
	}
	uv_udp_init(loop, &s->udp);
	s->udp.data = s;
	s->open_handles = 1;
	rc = uv_udp_bind(&s->udp, (const struct sockaddr *)&addr, 0);
	int namelen = sizeof(s->local);
	if (rc == 0)
		rc = uv_udp_getsockname(&s->udp, (struct sockaddr *)&s->local, &namelen);
	if (rc == 0)
		rc = uv_udp_recv_start(&s->udp, on_alloc, on_recv);
	if (rc != 0) {
		errf(errbuf, errlen, "cannot bind %s (udp): %s", opts->address, uv_strerror(rc));
		uv_close((uv_handle_t *)&s->udp, on_udp_closed);
		return rc;
	}
	s->local_len = (socklen_t)namelen;
	s->port = s->local.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&s->local)->sin6_port)
						 : ntohs(((struct sockaddr_in *)&s->local)->sin_port);
	s->closing = false;
	qlog(s, QUIC_LOG_INFO, "listening on %s (udp)", opts->address);
	*out = s;
	return 0;
}

int quic_server_port(const struct quic_server *s)
{
	return s->port;
}

void *quic_server_data(const struct quic_server *s)
{
	return s->ud;
}

uint32_t quic_server_conn_count(const struct quic_server *s)
{
	return s->nconns;
}

void quic_server_send_stats(const struct quic_server *s, uint64_t *queued, uint64_t *pauses)
{
	*queued = s->queued_total;
	*pauses = s->pauses;
}

void quic_server_drain(struct quic_server *s)
{
	if (s->closing || s->draining)
		return;
	s->draining = true;
	qlog(s, QUIC_LOG_INFO, "draining: no new connections, new requests reset with %d", QUIC_APP_NOT_ACCEPTED);
}

void quic_server_close(struct quic_server *s)
{
	s->closing = true;
	uv_udp_recv_stop(&s->udp);
	while (!list_empty(&s->conns)) {
		struct quic_conn *c = container_of(s->conns.next, struct quic_conn, link);
		if (c->state == CS_ACTIVE)
			conn_close_app(c, QUIC_APP_NO_ERROR, "server shutdown");
		conn_free(c);
	}
	uv_close((uv_handle_t *)&s->udp, on_udp_closed);
}

int quic_conn_send(struct quic_conn *c, const struct quic_piece *pieces, size_t n, void (*done)(void *arg, int status),
		   void *arg)
{
	if (list_empty(&c->awaiting)) {
		/* Nothing asked for it (an unsolicited eviction): a stream-per-request transport drops it. */
		done(arg, -ENOTCONN);
		return 0;
	}
	/* Replies come in request order: this one answers the oldest request still waiting. */
	struct qstream *st = container_of(c->awaiting.next, struct qstream, q_link);
	assert(st->dispatched && st->reply == NULL);
	list_remove(&st->q_link);
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += pieces[i].len;
	uint8_t *buf = malloc(total > 0 ? total : 1);
	int status = buf == NULL ? -ENOMEM : 0;
	size_t at = 0;
	for (size_t i = 0; i < n && status == 0; i++) {
		if (pieces[i].mem != NULL) {
			memcpy(buf + at, pieces[i].mem, pieces[i].len);
			at += pieces[i].len;
			continue;
		}
		size_t got = 0;
		while (got < pieces[i].len) {
			ssize_t r = pread(pieces[i].fd, buf + at + got, pieces[i].len - got, (off_t)(pieces[i].off + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				status = r < 0 ? -errno : -EIO;
				break;
			}
			got += (size_t)r;
		}
		at += pieces[i].len;
	}
	assert(status != 0 || at == total); /* the reply fills exactly the buffer sized for it */
	done(arg, status);
	if (st->closed || c->state != CS_ACTIVE) {
		free(buf);
		stream_free(st);
		return 0;
	}
	free(st->buf);
	st->buf = NULL;
	if (status != 0) {
		free(buf);
		ngtcp2_conn_shutdown_stream(c->conn, 0, st->id, QUIC_APP_INVALID_FORMAT);
	} else {
		st->reply = buf;
		st->reply_len = total;
		list_push(&c->sending, &st->s_link);
	}
	/*
	 * While the connection handles a packet it writes afterwards anyway. Otherwise the write waits for
	 * the next loop turn (the timer at 0): the handler is in the middle of its own reply queue here, and
	 * a write error must not end its session under it.
	 */
	if (!c->in_io)
		uv_timer_start(&c->timer, on_conn_timer, 0, 0);
	return 0;
}

void quic_conn_set_data(struct quic_conn *c, void *data)
{
	c->data = data;
}

void *quic_conn_get_data(const struct quic_conn *c)
{
	return c->data;
}

uint32_t quic_conn_id(const struct quic_conn *c)
{
	return c->id;
}

const char *quic_conn_peer(const struct quic_conn *c)
{
	return c->peer;
}

struct quic_server *quic_conn_server(const struct quic_conn *c)
{
	return c->srv;
}
