/*
 * rnet — the node-to-node transport. Behaviour is described in rnet.h; the bytes (HELLO, PROOF, FRAME) are
 * specified in rnet_wire.c, which encodes and decodes them; this file runs the link.
 *
 * TLS. When the rnet_config names a CA, a certificate and a key, a connection starts with a TLS handshake
 * (RFC 8446; the dialer is the TLS client, the acceptor the server; TLS 1.3 only, no session tickets so
 * no resumption: every connection verifies both certificates afresh). Both sides require the other's
 * certificate and verify it against the CA (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT). Every
 * byte of rnet_wire.c (HELLO, PROOF, FRAME) is then TLS application data, unchanged: the dialer sends
 * its HELLO once its TLS handshake has completed. The secret handshake inside TLS is defence in depth
 * (a stolen certificate alone is not enough) and what binds the connection to node ids, since the
 * certificates say nothing about ids. Name check: the dialer has OpenSSL check that the acceptor's
 * certificate names the roster host (X509_VERIFY_PARAM_set1_host, which also sends it as SNI) when that
 * host is a DNS name. A host given as an IP literal is not checked against the certificate's IP
 * addresses: certificates are issued to names far more often than to addresses, and an address that now
 * leads to another member is already refused by the HELLO's receiver id. The acceptor checks no name
 * (it knows the dialer's address, not its name; the id in HELLO, proven with the secret, is what
 * identifies it). Either side closes the connection on any TLS failure, and a peer that speaks plain
 * rnet to a TLS node (or TLS to a plain one) fails the handshake and is closed.
 *
 * Design. Streams are libuv uv_tcp_t: every message is memory (no sendfile is wanted, unlike the client
 * listener in transport/tcp.c), so libuv's writev with its partial-write handling does everything, and
 * the allocation callback lets reads land where they should: before authentication into the small
 * handshake buffer, sized to exactly the bytes still expected; after it into a receive buffer grown to
 * the size of the frame being received, so even an 8 MiB message is read in place and copied once.
 *
 * TLS runs over the same uv_tcp_t streams through two memory BIOs per connection, rather than handing
 * the fd to OpenSSL (uv_poll): reads and writes keep libuv's buffering, partial writes and close
 * handling, and the plain and TLS paths share everything but the byte conversion. Ciphertext read
 * goes into a 32 KiB buffer, then into the read BIO; plaintext is then pulled with SSL_read straight
 * into the buffer the plain path would have read into (the handshake buffer, exactly the bytes expected
 * next; or the receive buffer), until OpenSSL wants more ciphertext. Writing puts the plaintext through
 * SSL_write into the write BIO and its content, one copy, goes out with one uv_write; every such drain
 * is written at once, so ciphertext leaves in the order it was made (uv_write keeps order per stream).
 * A batch thus costs one more copy (and, transiently, two more buffers of its size) with TLS.
 *
 * Sending appends a copy (header + payload, one allocation) to the connection's queue. A uv_check
 * handle writes each queue with one uv_write of all its messages, at most one write in flight per
 * connection, so messages queued while a write runs leave together in the next one. Queueing also starts
 * a uv_idle handle so that a send from a timer or from outside the loop does not wait for the poll phase
 * to time out before the check runs; both are stopped again by the check.
 *
 * One repeating timer (idle_timeout_ms / 5) queues a keepalive on every authenticated connection that
 * wrote nothing since the previous tick, and closes connections silent for idle_timeout_ms or still not
 * authenticated after 5 s. Each peer the node dials has a retry timer (backoff 50 ms doubling to 1 s,
 * back to 50 ms once authenticated) and resolves its host at every attempt, trying the addresses in
 * order when connecting fails.
 *
 * Choices where rnet.h is silent. listen_host must be an IP literal (NULL: 0.0.0.0). -EAGAIN is
 * returned when the queue is not empty and the message would take it past max_queue_bytes, so an empty
 * queue takes any message up to max_message_bytes whatever the two caps are. A connection replaced by a
 * newer one is reported as on_peer(down) then on_peer(up); rnet_remove_peer reports nothing. Counters:
 * messages_sent and bytes_sent (payload bytes) count messages whose write completed; dropped counts
 * every refused rnet_send and every message lost with its connection; keepalives count nowhere but in
 * writes. Zero max_queue_bytes, max_message_bytes or idle_timeout_ms mean the defaults.
 *
 * Lifetime. A connection is freed in its handle's close callback and a peer once its timer is closed and
 * no resolution is pending; both happen in libuv's own phases, never inside a callback of this file or of
 * the user, so every pointer stays valid for the rest of any callback that closes something. The rnet
 * counts its live handles and pending resolutions (`live`) and frees itself when the last one ends after
 * rnet_close. User callbacks are never called after rnet_close, nor from inside an rnet_* call.
 */
#include "transport/rnet.h"
#include "transport/rnet_wire.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HANDSHAKE_MS 5000
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define MAX_PREAUTH 64                   /* accepted connections not yet authenticated */
#define RBUF_INITIAL (64u * 1024)        /* receive buffer of an authenticated connection */
#define RBUF_SHRINK_ABOVE (1024u * 1024) /* a buffer grown past this goes back to RBUF_INITIAL once drained */
#define LISTEN_BACKLOG 128
#define TLS_IN (32u * 1024)              /* ciphertext read buffer of a TLS connection */



/* One queued frame: header and payload in one allocation. */
struct msg {
	struct msg *next;
	size_t size;    /* wire bytes */
	size_t payload; /* payload bytes; 0 for keepalives */
	bool data;      /* a user message (counted in stats), not a keepalive */
	uint8_t bytes[];
};

/* One uv_write of a connection's whole queue. */
struct batch {
	uv_write_t req;
	struct conn *c;
	struct msg *head;
	size_t size;
	uint8_t *cipher; /* TLS: the batch's ciphertext, the one buffer written */
	uv_buf_t bufs[];
};

/* A write of ciphertext made by TLS outside a batch (its handshake, the rnet handshake, alerts). */
struct rawout {
	uv_write_t req;
	struct conn *c;
	uint8_t bytes[];
};

enum cstate {
	C_CONNECTING, /* dialer: TCP connect in flight */
	C_REPLY,      /* dialer: HELLO sent, awaiting the acceptor's HELLO + PROOF */
	C_HELLO,      /* acceptor: awaiting the dialer's HELLO */
	C_PROOF,      /* acceptor: HELLO + PROOF sent, awaiting the dialer's PROOF */
	C_AUTHED,
};

enum why { WHY_LOCAL, WHY_REMOTE };

struct conn {
	uv_tcp_t tcp;
	struct rnet *n;
	struct conn *prev, *next; /* rnet's list of every connection */
	struct peer *peer;        /* dialer: the peer dialed; acceptor: set once authenticated */
	uint64_t peer_id;
	enum cstate st;
	bool dialer, established, closing, preauth_counted, writing, sent_since_tick;
	uint64_t born, last_rx;
	uint8_t my_nonce[NONCE_SIZE], peer_nonce[NONCE_SIZE];
	uint8_t hs[HELLO_SIZE + PROOF_SIZE]; /* handshake bytes received for the current step */
	size_t hs_len, hs_need;
	uint8_t hs_out[HELLO_SIZE + PROOF_SIZE];
	uint8_t hs_out2[PROOF_SIZE];
	uv_write_t hs_req, hs_req2;
	uv_connect_t creq;
	uint8_t *rbuf; /* after authentication */
	size_t rcap, rlen, rneed;
	SSL *ssl;      /* TLS only, with its memory BIOs: */
	BIO *rbio;     /* ciphertext received, read by OpenSSL */
	BIO *wbio;     /* ciphertext OpenSSL made, to be written */
	uint8_t *tin;  /* TLS_IN bytes: where ciphertext is read */
	bool tls_up;   /* the TLS handshake completed */
	struct msg *q_head, *q_tail;
	size_t queued; /* wire bytes queued or being written */
};

struct peer {
	struct rnet *n;
	struct peer *prev, *next;
	uint64_t id;
	char *host;
	uint16_t port;
	bool removed, resolving;
	int refs; /* the timer until it is closed, plus a pending resolution */
	unsigned backoff;
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	struct addrinfo *ai, *ai_cur; /* the addresses of the attempt in progress */
	struct conn *dial;            /* the dialing connection, until authenticated */
	struct conn *conn;            /* the authenticated connection */
};

struct rnet {
	uv_loop_t *loop;
	struct rnet_config cfg;
	struct rnet_callbacks cb;
	uint8_t cluster[CLUSTER_FIELD];
	char *secret;
	size_t secret_len;
	SSL_CTX *tls; /* NULL: plain TCP */
	uv_tcp_t listener;
	uv_timer_t tick;
	uv_check_t check;
	uv_idle_t idle;
	bool armed, closing;
	unsigned live, preauth;
	struct peer *peers;
	struct conn *conns;
	struct rnet_stats st;
};

/* ---------------------------------------------------------------------------------------- lifetime */

static void maybe_free(struct rnet *n)
{
	if (!n->closing || n->live > 0)
		return;
	free(n->secret);
	free((char *)n->cfg.listen_host);
	SSL_CTX_free(n->tls);
	free(n);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct rnet *n = h->data;
	assert(n->live > 0);
	n->live--;
	maybe_free(n);
}

static void peer_unref(struct peer *p)
{
	assert(p->refs > 0);
	if (--p->refs > 0)
		return;
	if (p->ai)
		uv_freeaddrinfo(p->ai);
	free(p->host);
	free(p);
}

static void on_peer_timer_closed(uv_handle_t *h)
{
	struct peer *p = h->data;
	struct rnet *n = p->n;
	peer_unref(p);
	n->live--;
	maybe_free(n);
}

static struct peer *find_peer(const struct rnet *n, uint64_t id)
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

static void free_msgs(struct rnet *n, struct msg *m, bool count_dropped)
{
	while (m) {
		struct msg *next = m->next;
		if (count_dropped && m->data)
			n->st.dropped++;
		free(m);
		m = next;
	}
}

static void on_conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct rnet *n = c->n;
	assert(c->closing && c->peer == NULL && n->live > 0); /* detached from its peer by conn_close */
	if (c->prev)
		c->prev->next = c->next;
	else
		n->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free_msgs(n, c->q_head, true);
	free(c->rbuf);
	SSL_free(c->ssl); /* and its BIOs */
	free(c->tin);
	free(c);
	n->live--;
	maybe_free(n);
}

static void peer_retry(struct peer *p);

static void notify_peer(struct rnet *n, uint64_t id, bool up)
{
	if (!n->closing && n->cb.on_peer)
		n->cb.on_peer(n->cb.ud, id, up);
}

/*
 * Closes a connection: detaches it from its peer (reporting the loss of an authenticated one, and
 * scheduling the next dial on the dialing side), drops its queue and starts closing the handle.
 */
static void conn_close(struct conn *c, enum why why)
{
	if (c->closing)
		return;
	struct rnet *n = c->n;
	c->closing = true;
	if (c->st != C_AUTHED && c->established && why == WHY_REMOTE)
		n->st.auth_failures++;
	if (c->preauth_counted) {
		c->preauth_counted = false;
		n->preauth--;
	}
	free_msgs(n, c->q_head, true);
	c->q_head = c->q_tail = NULL;
	struct peer *p = c->peer;
	c->peer = NULL;
	if (p && p->dial == c) {
		p->dial = NULL;
		if (p->ai)
			uv_freeaddrinfo(p->ai);
		p->ai = p->ai_cur = NULL;
		peer_retry(p);
	} else if (p && p->conn == c) {
		p->conn = NULL;
		notify_peer(n, p->id, false);
		if (p->id > n->cfg.node_id)
			peer_retry(p);
	}
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static struct conn *conn_new(struct rnet *n)
{
	struct conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	if (uv_tcp_init(n->loop, &c->tcp) != 0) {
		free(c);
		return NULL;
	}
	c->tcp.data = c;
	c->n = n;
	c->born = c->last_rx = uv_now(n->loop);
	c->next = n->conns;
	if (n->conns)
		n->conns->prev = c;
	n->conns = c;
	n->live++;
	if (RAND_bytes(c->my_nonce, NONCE_SIZE) != 1) {
		conn_close(c, WHY_LOCAL);
		return NULL;
	}
	if (n->tls) {
		/* The role (client or server) is set by the dialer or the acceptor. */
		c->tin = malloc(TLS_IN);
		c->ssl = SSL_new(n->tls);
		c->rbio = BIO_new(BIO_s_mem());
		c->wbio = BIO_new(BIO_s_mem());
		if (!c->tin || !c->ssl || !c->rbio || !c->wbio) {
			BIO_free(c->rbio);
			BIO_free(c->wbio);
			c->rbio = c->wbio = NULL;
			conn_close(c, WHY_LOCAL);
			return NULL;
		}
		/* An empty read BIO means "wait for more" (SSL_ERROR_WANT_READ), never end of stream. */
		BIO_set_mem_eof_return(c->rbio, -1);
		SSL_set_bio(c->ssl, c->rbio, c->wbio); /* the SSL owns both BIOs from here */
	}
	return c;
}

/* ---------------------------------------------------------------------------------------- TLS */

static void on_rawout_written(uv_write_t *req, int status)
{
	struct rawout *w = req->data;
	struct conn *c = w->c;
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		conn_close(c, WHY_REMOTE);
}

/* Writes out whatever ciphertext OpenSSL has produced, at once, so that it leaves in order. */
static int tls_drain(struct conn *c)
{
	size_t len = BIO_ctrl_pending(c->wbio), got = 0;
	if (len == 0)
		return 0;
	struct rawout *w = malloc(sizeof *w + len);
	if (!w)
		return -ENOMEM;
	if (BIO_read_ex(c->wbio, w->bytes, len, &got) != 1 || got != len) {
		free(w);
		return -EIO;
	}
	w->c = c;
	w->req.data = w;
	uv_buf_t b = uv_buf_init((char *)w->bytes, (unsigned)len);
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_rawout_written);
	if (rc != 0)
		free(w);
	return rc;
}

/* Puts plaintext through TLS into the write BIO (a memory BIO takes it all). */
static int tls_put(struct conn *c, const void *bytes, size_t len)
{
	size_t done = 0;
	ERR_clear_error();
	if (SSL_write_ex(c->ssl, bytes, len, &done) != 1 || done != len) {
		ERR_clear_error();
		return -EIO;
	}
	return 0;
}

/*
 * Starts TLS on a connected stream: the dialer as client (sending its ClientHello now), the acceptor
 * as server (waiting for it). host is the roster host the dialer dialed.
 */
static int tls_start(struct conn *c, const char *host)
{
	if (!c->dialer) {
		SSL_set_accept_state(c->ssl);
		return 0;
	}
	SSL_set_connect_state(c->ssl);
	struct in6_addr a;
	bool literal = inet_pton(AF_INET, host, &a) == 1 || inet_pton(AF_INET6, host, &a) == 1;
	/* A DNS name must be in the acceptor's certificate (see the top of this file for IP literals). */
	if (!literal && (SSL_set1_host(c->ssl, host) != 1 || SSL_set_tlsext_host_name(c->ssl, host) != 1))
		return -EIO;
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r != 1 && SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
		ERR_clear_error();
		return -EIO;
	}
	return tls_drain(c);
}

/* ---------------------------------------------------------------------------------------- sending */

static void on_check(uv_check_t *h);

static void on_idle(uv_idle_t *h)
{
	/* Only there to keep the poll phase from blocking while a queue waits for the check. */
}

static void arm(struct rnet *n)
{
	if (n->armed || n->closing)
		return;
	n->armed = true;
	uv_check_start(&n->check, on_check);
	uv_idle_start(&n->idle, on_idle);
}

static void on_batch_written(uv_write_t *req, int status)
{
	struct batch *b = req->data;
	struct conn *c = b->c;
	struct rnet *n = c->n;
	assert(c->writing && b->size <= c->queued); /* one batch in flight, counted in queued */
	c->writing = false;
	c->queued -= b->size;
	for (struct msg *m = b->head; m; m = m->next) {
		if (m->data && status == 0) {
			n->st.messages_sent++;
			n->st.bytes_sent += m->payload;
		}
	}
	free_msgs(n, b->head, status != 0);
	free(b->cipher);
	free(b);
	if (status < 0 && status != UV_ECANCELED)
		conn_close(c, WHY_REMOTE);
	else if (!c->closing && c->q_head)
		arm(n);
}

static void conn_flush(struct conn *c)
{
	struct rnet *n = c->n;
	size_t count = 0, size = 0;
	bool data = false;
	for (struct msg *m = c->q_head; m; m = m->next) {
		count++;
		size += m->size;
		data |= m->data;
	}
	/* No batch in flight: the queue's byte count is exactly the sum of its frames. */
	assert(!c->writing && !c->closing && c->st == C_AUTHED && size == c->queued && count > 0);
	struct batch *b = malloc(sizeof *b + count * sizeof(uv_buf_t));
	if (!b) {
		conn_close(c, WHY_LOCAL);
		return;
	}
	size_t i = 0;
	for (struct msg *m = c->q_head; m; m = m->next)
		b->bufs[i++] = (uv_buf_t){.base = (char *)m->bytes, .len = m->size};
	b->c = c;
	b->head = c->q_head;
	b->size = size;
	b->cipher = NULL;
	b->req.data = b;
	c->q_head = c->q_tail = NULL;
	int rc = 0;
	if (c->ssl) {
		/* The whole batch through TLS, then its ciphertext as the one buffer of the write. */
		for (i = 0; i < count && rc == 0; i++)
			rc = tls_put(c, b->bufs[i].base, b->bufs[i].len);
		size_t clen = BIO_ctrl_pending(c->wbio), got = 0;
		if (rc == 0 && (b->cipher = malloc(clen ? clen : 1)) == NULL)
			rc = -ENOMEM;
		if (rc == 0 && (BIO_read_ex(c->wbio, b->cipher, clen, &got) != 1 || got != clen))
			rc = -EIO;
		b->bufs[0] = uv_buf_init((char *)b->cipher, (unsigned)clen);
		count = 1;
	}
	if (rc == 0)
		rc = uv_write(&b->req, (uv_stream_t *)&c->tcp, b->bufs, (unsigned)count, on_batch_written);
	if (rc != 0) {
		c->queued -= size;
		free_msgs(n, b->head, true);
		free(b->cipher);
		free(b);
		conn_close(c, WHY_REMOTE);
		return;
	}
	c->writing = true;
	c->sent_since_tick |= data; /* a keepalive alone does not put off the next one */
	n->st.writes++;
}

static void on_check(uv_check_t *h)
{
	struct rnet *n = h->data;
	n->armed = false;
	uv_check_stop(&n->check);
	uv_idle_stop(&n->idle);
	for (struct conn *c = n->conns; c; c = c->next)
		if (!c->closing && c->st == C_AUTHED && c->q_head && !c->writing)
			conn_flush(c);
}

static void enqueue(struct conn *c, struct msg *m)
{
	assert(!c->closing && c->st == C_AUTHED && m->size == FRAME_HDR + m->payload);
	m->next = NULL;
	if (c->q_tail)
		c->q_tail->next = m;
	else
		c->q_head = m;
	c->q_tail = m;
	c->queued += m->size;
	arm(c->n);
}

int rnet_sendv(struct rnet *n, uint64_t to, uint8_t kind, const uv_buf_t *bufs, size_t nbufs)
{
	int rc;
	size_t total = 0;
	struct peer *p = n->closing ? NULL : find_peer(n, to);
	if (!p) {
		rc = n->closing ? -ENOTCONN : -ENOENT;
		goto refused;
	}
	for (size_t i = 0; i < nbufs; i++) {
		if (bufs[i].len > SIZE_MAX - total) {
			rc = -EMSGSIZE;
			goto refused;
		}
		total += bufs[i].len;
	}
	if (total > n->cfg.max_message_bytes) {
		rc = -EMSGSIZE;
		goto refused;
	}
	struct conn *c = p->conn;
	if (!c || c->closing) {
		rc = -ENOTCONN;
		goto refused;
	}
	/* An empty queue takes any message up to max_message_bytes, so the two caps need not agree. */
	if (c->queued > 0 && c->queued + FRAME_HDR + total > n->cfg.max_queue_bytes) {
		rc = -EAGAIN;
		goto refused;
	}
	struct msg *m = malloc(sizeof *m + FRAME_HDR + total);
	if (!m) {
		rc = -ENOMEM;
		goto refused;
	}
	m->size = FRAME_HDR + total;
	m->payload = total;
	m->data = true;
	rnet__frame_header(m->bytes, FRAME_MESSAGE, kind, (uint32_t)total);
	size_t off = FRAME_HDR;
	for (size_t i = 0; i < nbufs; i++) {
		if (bufs[i].len)
			memcpy(m->bytes + off, bufs[i].base, bufs[i].len);
		off += bufs[i].len;
	}
	assert(off == m->size); /* the frame fills exactly what was reserved */
	enqueue(c, m);
	return 0;
refused:
	n->st.dropped++;
	return rc;
}

int rnet_send(struct rnet *n, uint64_t to, uint8_t kind, const void *buf, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	if (len > UINT32_MAX) {
		n->st.dropped++;
		return -EMSGSIZE;
	}
	return rnet_sendv(n, to, kind, &b, 1);
}

/* ---------------------------------------------------------------------------------------- receiving */

/* Where the next plaintext bytes go (read from the socket, or pulled out of TLS). */
static uv_buf_t plain_target(struct conn *c)
{
	if (c->st != C_AUTHED) {
		/* Exactly the handshake bytes expected next: nothing more is read before authentication. */
		return uv_buf_init((char *)c->hs + c->hs_len, (unsigned)(c->hs_need - c->hs_len));
	}
	return uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;
	*buf = c->ssl ? uv_buf_init((char *)c->tin, TLS_IN) : plain_target(c);
}

/* Delivers the complete frames at the start of the receive buffer and makes room for the next one. */
static void conn_frames(struct conn *c)
{
	struct rnet *n = c->n;
	size_t off = 0;
	struct rnet__frame f;
	for (;;) {
		if (c->closing || n->closing)
			return;
		int rc = rnet__frame_next(c->rbuf + off, c->rlen - off, n->cfg.max_message_bytes, &f);
		if (rc < 0) {
			conn_close(c, WHY_REMOTE);
			return;
		}
		if (rc == 0)
			break;
		off += f.size;
		if (f.type == FRAME_MESSAGE) {
			n->st.messages_received++;
			n->st.bytes_received += f.len;
			if (n->cb.on_message)
				n->cb.on_message(n->cb.ud, c->peer_id, f.kind, f.payload, f.len);
		}
	}
	assert(off <= c->rlen);
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	c->rneed = f.size;
	size_t want = c->rneed > RBUF_INITIAL ? c->rneed : RBUF_INITIAL;
	if (c->rcap < want || (c->rcap > RBUF_SHRINK_ABOVE && want == RBUF_INITIAL)) {
		uint8_t *nb = realloc(c->rbuf, want);
		if (!nb) {
			conn_close(c, WHY_LOCAL);
			return;
		}
		c->rbuf = nb;
		c->rcap = want;
	}
	/* What is left is less than the next frame, and the buffer has room for all of it. */
	assert(c->rlen < c->rneed && c->rneed <= c->rcap);
}

static void on_hs_written(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	if (status < 0 && status != UV_ECANCELED)
		conn_close(c, WHY_REMOTE);
}

static int hs_write(struct conn *c, uv_write_t *req, uint8_t *bytes, size_t len)
{
	if (c->ssl) {
		int rc = tls_put(c, bytes, len);
		return rc != 0 ? rc : tls_drain(c);
	}
	uv_buf_t b = uv_buf_init((char *)bytes, (unsigned)len);
	req->data = c;
	return uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_hs_written);
}

/* The connection is authenticated with peer p: it becomes p's connection, replacing any older one. */
static void conn_authenticated(struct conn *c, struct peer *p)
{
	struct rnet *n = c->n;
	assert(!c->closing && c->st != C_AUTHED && p->conn != c && !p->removed);
	c->rbuf = malloc(RBUF_INITIAL);
	if (!c->rbuf) {
		conn_close(c, WHY_LOCAL);
		return;
	}
	c->rcap = RBUF_INITIAL;
	c->rlen = 0;
	c->rneed = FRAME_HDR;
	c->st = C_AUTHED;
	if (c->preauth_counted) {
		c->preauth_counted = false;
		n->preauth--;
	}
	if (p->dial == c)
		p->dial = NULL;
	c->peer = p;
	c->peer_id = p->id;
	p->backoff = BACKOFF_MIN_MS;
	n->st.connects++;
	struct conn *old = p->conn;
	p->conn = c;
	if (old) {
		/* The peer restarted (or lost its old connection without us noticing): the newer one wins. */
		old->peer = NULL;
		conn_close(old, WHY_LOCAL);
		notify_peer(n, p->id, false);
		if (c->closing)
			return; /* the callback removed the peer or closed the rnet */
	}
	notify_peer(n, p->id, true);
}

static void handshake_step(struct conn *c)
{
	struct rnet *n = c->n;
	uint64_t me = n->cfg.node_id;
	struct rnet__hello h;
	uint8_t want[PROOF_SIZE];
	struct peer *p;

	/* Each side walks only its own handshake states. */
	assert(c->dialer ? c->st == C_REPLY : c->st == C_HELLO || c->st == C_PROOF);
	switch (c->st) {
	case C_HELLO: /* acceptor: the dialer's HELLO */
		if (rnet__hello_decode(c->hs, HELLO_SIZE, &h) != 0 || memcmp(h.cluster, n->cluster, CLUSTER_FIELD) != 0)
			goto fail;
		if (h.to != me || h.from >= me || !find_peer(n, h.from))
			goto fail;
		c->peer_id = h.from;
		memcpy(c->peer_nonce, h.nonce, NONCE_SIZE);
		h = (struct rnet__hello){.from = me, .to = c->peer_id};
		memcpy(h.nonce, c->my_nonce, NONCE_SIZE);
		memcpy(h.cluster, n->cluster, CLUSTER_FIELD);
		rnet__hello_encode(c->hs_out, &h);
		if (rnet__proof(c->hs_out + HELLO_SIZE, n->secret, n->secret_len, false, n->cluster, c->peer_id, me,
				c->peer_nonce, c->my_nonce) != 0)
			goto fail;
		if (hs_write(c, &c->hs_req, c->hs_out, HELLO_SIZE + PROOF_SIZE) != 0)
			goto fail;
		c->st = C_PROOF;
		c->hs_len = 0;
		c->hs_need = PROOF_SIZE;
		return;
	case C_PROOF: /* acceptor: the dialer's PROOF */
		if (rnet__proof(want, n->secret, n->secret_len, true, n->cluster, c->peer_id, me, c->peer_nonce,
				c->my_nonce) != 0)
			goto fail;
		if (CRYPTO_memcmp(want, c->hs, PROOF_SIZE) != 0)
			goto fail;
		p = find_peer(n, c->peer_id);
		if (!p)
			goto fail; /* removed during the handshake */
		conn_authenticated(c, p);
		return;
	case C_REPLY: /* dialer: the acceptor's HELLO and PROOF */
		p = c->peer;
		if (!p || rnet__hello_decode(c->hs, HELLO_SIZE, &h) != 0 ||
		    memcmp(h.cluster, n->cluster, CLUSTER_FIELD) != 0 || h.to != me || h.from != p->id)
			goto fail;
		memcpy(c->peer_nonce, h.nonce, NONCE_SIZE);
		if (rnet__proof(want, n->secret, n->secret_len, false, n->cluster, me, p->id, c->my_nonce,
				c->peer_nonce) != 0)
			goto fail;
		if (CRYPTO_memcmp(want, c->hs + HELLO_SIZE, PROOF_SIZE) != 0)
			goto fail;
		if (rnet__proof(c->hs_out2, n->secret, n->secret_len, true, n->cluster, me, p->id, c->my_nonce,
				c->peer_nonce) != 0)
			goto fail;
		if (hs_write(c, &c->hs_req2, c->hs_out2, PROOF_SIZE) != 0)
			goto fail;
		conn_authenticated(c, p);
		return;
	default:
		goto fail;
	}
fail:
	conn_close(c, WHY_REMOTE);
}

/* len plaintext bytes have landed where plain_target said. */
static void plain_input(struct conn *c, size_t len)
{
	if (c->st != C_AUTHED) {
		c->hs_len += len;
		assert(c->hs_len <= c->hs_need); /* plain_target offered exactly the bytes still expected */
		if (c->hs_len == c->hs_need)
			handshake_step(c);
		return;
	}
	c->rlen += len;
	assert(c->rlen <= c->rcap);
	if (c->rlen >= c->rneed)
		conn_frames(c);
}

static int send_hello(struct conn *c);

/* len bytes of ciphertext are in c->tin: feed TLS, advance its handshake, then take the plaintext out. */
static void tls_input(struct conn *c, size_t len)
{
	size_t done = 0;
	ERR_clear_error();
	if (BIO_write_ex(c->rbio, c->tin, len, &done) != 1 || done != len)
		goto fail;
	if (!c->tls_up) {
		int r = SSL_do_handshake(c->ssl);
		int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
		/* Written even on failure: it may be the alert telling the peer why. */
		if (tls_drain(c) != 0 || (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ))
			goto fail;
		if (e == SSL_ERROR_WANT_READ)
			return;
		c->tls_up = true;
		if (c->dialer && send_hello(c) != 0)
			goto fail;
	}
	/* Pulled until TLS needs more ciphertext; each step may change where the next bytes go. */
	while (!c->closing) {
		uv_buf_t t = plain_target(c);
		if (SSL_read_ex(c->ssl, t.base, t.len, &done) != 1) {
			int e = SSL_get_error(c->ssl, 0);
			if (tls_drain(c) != 0 || e != SSL_ERROR_WANT_READ)
				goto fail; /* a close_notify (SSL_ERROR_ZERO_RETURN) included: the peer is leaving */
			return;
		}
		plain_input(c, done);
	}
	return;
fail:
	ERR_clear_error();
	conn_close(c, WHY_REMOTE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	if (c->closing)
		return;
	if (nread < 0) {
		conn_close(c, WHY_REMOTE);
		return;
	}
	if (nread == 0)
		return;
	c->last_rx = uv_now(c->n->loop);
	if (c->ssl)
		tls_input(c, (size_t)nread);
	else
		plain_input(c, (size_t)nread);
}

/* ---------------------------------------------------------------------------------------- dialing */

static void dial_addrs(struct peer *p, struct addrinfo *ai);

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	if (c->closing)
		return;
	struct peer *p = c->peer;
	struct rnet *n = c->n;
	if (status < 0) {
		/* Not yet a handshake: try the next address of this resolution before backing off. */
		p->dial = NULL;
		c->peer = NULL;
		conn_close(c, WHY_LOCAL);
		dial_addrs(p, p->ai_cur ? p->ai_cur->ai_next : NULL);
		return;
	}
	uv_freeaddrinfo(p->ai);
	p->ai = p->ai_cur = NULL;
	c->established = true;
	c->last_rx = uv_now(n->loop);
	uv_tcp_nodelay(&c->tcp, 1);
	c->st = C_REPLY;
	c->hs_need = HELLO_SIZE + PROOF_SIZE;
	/* With TLS, the HELLO waits for the TLS handshake (tls_input sends it). */
	if ((c->ssl ? tls_start(c, p->host) : send_hello(c)) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_close(c, WHY_REMOTE);
}

/* The dialer's HELLO. */
static int send_hello(struct conn *c)
{
	struct rnet *n = c->n;
	struct rnet__hello h = {.from = n->cfg.node_id, .to = c->peer_id};
	memcpy(h.nonce, c->my_nonce, NONCE_SIZE);
	memcpy(h.cluster, n->cluster, CLUSTER_FIELD);
	rnet__hello_encode(c->hs_out, &h);
	return hs_write(c, &c->hs_req, c->hs_out, HELLO_SIZE);
}

/* Connects to the first address of ai that takes a connect request; when none does, backs off. */
static void dial_addrs(struct peer *p, struct addrinfo *ai)
{
	struct rnet *n = p->n;
	for (; ai && !n->closing && !p->removed; ai = ai->ai_next) {
		struct conn *c = conn_new(n);
		if (!c)
			break;
		c->dialer = true;
		c->peer = p;
		c->peer_id = p->id;
		c->st = C_CONNECTING;
		c->creq.data = c;
		if (uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connect) == 0) {
			p->dial = c;
			p->ai_cur = ai;
			return;
		}
		c->peer = NULL;
		conn_close(c, WHY_LOCAL);
	}
	if (p->ai)
		uv_freeaddrinfo(p->ai);
	p->ai = p->ai_cur = NULL;
	peer_retry(p);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct peer *p = req->data;
	struct rnet *n = p->n;
	p->resolving = false;
	n->live--;
	if (p->removed || n->closing || status < 0) {
		if (res)
			uv_freeaddrinfo(res);
		if (!p->removed && !n->closing)
			peer_retry(p);
		peer_unref(p);
		maybe_free(n);
		return;
	}
	p->ai = res;
	dial_addrs(p, res);
	peer_unref(p);
}

/* Starts one connection attempt: resolve, then connect. */
static void peer_dial(struct peer *p)
{
	struct rnet *n = p->n;
	if (p->resolving || p->dial || p->conn || p->removed || n->closing)
		return;
	char port[8];
	snprintf(port, sizeof port, "%u", (unsigned)p->port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	p->gai.data = p;
	if (uv_getaddrinfo(n->loop, &p->gai, on_resolved, p->host, port, &hints) != 0) {
		peer_retry(p);
		return;
	}
	p->resolving = true;
	p->refs++;
	n->live++;
}

static void on_retry(uv_timer_t *t)
{
	peer_dial(t->data);
}

/* Schedules the next attempt to dial p (only the lower id dials) after the current backoff. */
static void peer_retry(struct peer *p)
{
	struct rnet *n = p->n;
	if (p->removed || n->closing || p->id < n->cfg.node_id)
		return;
	uv_timer_start(&p->timer, on_retry, p->backoff, 0);
	p->backoff = p->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff * 2;
}

/* ---------------------------------------------------------------------------------------- timers, accept */

static void on_tick(uv_timer_t *t)
{
	struct rnet *n = t->data;
	uint64_t now = uv_now(n->loop);
	for (struct conn *c = n->conns; c; c = c->next) {
		if (c->closing)
			continue;
		if (c->st != C_AUTHED && now - c->born >= HANDSHAKE_MS) {
			conn_close(c, WHY_REMOTE);
		} else if (c->established && now - c->last_rx >= n->cfg.idle_timeout_ms) {
			conn_close(c, WHY_REMOTE);
		} else if (c->st == C_AUTHED) {
			if (!c->sent_since_tick && !c->q_head && !c->writing) {
				struct msg *m = malloc(sizeof *m + FRAME_HDR);
				if (m) {
					m->size = FRAME_HDR;
					m->payload = 0;
					m->data = false;
					rnet__frame_header(m->bytes, FRAME_KEEPALIVE, 0, 0);
					enqueue(c, m);
				}
			}
			c->sent_since_tick = false;
		}
	}
}

static void on_accept(uv_stream_t *server, int status)
{
	struct rnet *n = server->data;
	if (status < 0 || n->closing)
		return;
	struct conn *c = conn_new(n);
	if (!c)
		return;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c, WHY_LOCAL);
		return;
	}
	c->established = true;
	c->st = C_HELLO;
	c->hs_need = HELLO_SIZE;
	if (n->preauth >= MAX_PREAUTH) {
		conn_close(c, WHY_REMOTE);
		return;
	}
	c->preauth_counted = true;
	n->preauth++;
	uv_tcp_nodelay(&c->tcp, 1);
	if (c->ssl)
		tls_start(c, NULL); /* the acceptor only waits for the ClientHello */
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_close(c, WHY_REMOTE);
}

/* ---------------------------------------------------------------------------------------- API */

void rnet_config_default(struct rnet_config *c)
{
	memset(c, 0, sizeof *c);
	c->cluster = "galgo";
	c->max_queue_bytes = 64u << 20;
	c->max_message_bytes = 64u << 20;
	c->idle_timeout_ms = 5000;
}

/* A listening socket of our own, so that every failure is known before any libuv handle exists. */
static int listen_socket(const char *host, uint16_t port, int *out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0)
		sl = sizeof(struct sockaddr_in);
	else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0)
		sl = sizeof(struct sockaddr_in6);
	else
		return -EINVAL;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

static bool set(const char *s)
{
	return s && s[0];
}

/* The one TLS context of an rnet: the node's identity and the CA, for both roles. */
static int tls_context(const struct rnet_config *cfg, SSL_CTX **out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (!ctx)
		return -ENOMEM;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 || SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1) {
		SSL_CTX_free(ctx); /* OpenSSL's error queue keeps the reason for the caller */
		return -EIO;
	}
	/* Mutual: the acceptor demands a client certificate; both verify against the CA alone. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	/* No resumption: connections are rare and every one should verify the certificates again. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	*out = ctx;
	return 0;
}

int rnet_open(uv_loop_t *loop, const struct rnet_config *cfg, const struct rnet_callbacks *cb, struct rnet **out)
{
	const char *cluster = cfg->cluster ? cfg->cluster : "galgo";
	const char *host = cfg->listen_host ? cfg->listen_host : "0.0.0.0";
	size_t clen = strlen(cluster);
	if (cfg->node_id == 0 || !cfg->secret || !cfg->secret[0] || clen == 0 || clen > CLUSTER_FIELD ||
	    cfg->max_message_bytes > UINT32_MAX - FRAME_HDR || cfg->idle_timeout_ms > 24u * 3600 * 1000 || strlen(cfg->secret) > INT32_MAX)
		return -EINVAL;
	int ntls = set(cfg->tls_ca) + set(cfg->tls_cert) + set(cfg->tls_key);
	if (ntls != 0 && ntls != 3)
		return -EINVAL;
	SSL_CTX *tls = NULL;
	if (ntls == 3) {
		int trc = tls_context(cfg, &tls);
		if (trc != 0)
			return trc;
	}
	struct rnet *n = calloc(1, sizeof *n);
	if (!n) {
		SSL_CTX_free(tls);
		return -ENOMEM;
	}
	n->tls = tls;
	n->loop = loop;
	n->cfg = *cfg;
	if (cb)
		n->cb = *cb;
	if (!n->cfg.max_queue_bytes)
		n->cfg.max_queue_bytes = 64u << 20;
	if (!n->cfg.max_message_bytes)
		n->cfg.max_message_bytes = 64u << 20;
	if (!n->cfg.idle_timeout_ms)
		n->cfg.idle_timeout_ms = 5000;
	memcpy(n->cluster, cluster, clen);
	n->cfg.cluster = NULL; /* the padded field is the copy */
	n->secret_len = strlen(cfg->secret);
	n->secret = strdup(cfg->secret);
	n->cfg.secret = NULL;
	n->cfg.tls_ca = n->cfg.tls_cert = n->cfg.tls_key = NULL; /* loaded into n->tls, not kept */
	n->cfg.listen_host = strdup(host);
	int fd = -1, rc = -ENOMEM;
	if (!n->secret || !n->cfg.listen_host)
		goto err_after_alloc;
	rc = listen_socket(host, cfg->listen_port, &fd);
	if (rc != 0)
		goto err_after_alloc;

	uv_tcp_init(loop, &n->listener);
	uv_timer_init(loop, &n->tick);
	uv_check_init(loop, &n->check);
	uv_idle_init(loop, &n->idle);
	n->listener.data = n->tick.data = n->check.data = n->idle.data = n;
	n->live = 4;
	rc = uv_tcp_open(&n->listener, fd);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&n->listener, LISTEN_BACKLOG, on_accept);
	if (rc != 0) {
		if (uv_fileno((uv_handle_t *)&n->listener, &(uv_os_fd_t){0}) != 0)
			close(fd);
		/* The handles are closed by libuv; the rnet goes with the last of them once the loop runs. */
		rnet_close(n);
		return rc;
	}
	unsigned period = n->cfg.idle_timeout_ms / 5 ? n->cfg.idle_timeout_ms / 5 : 1;
	uv_timer_start(&n->tick, on_tick, period, period);
	*out = n;
	return 0;

err_after_alloc:
	free(n->secret);
	free((char *)n->cfg.listen_host);
	SSL_CTX_free(n->tls);
	free(n);
	return rc;
}

uint16_t rnet_port(const struct rnet *n)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	if (uv_tcp_getsockname(&n->listener, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

int rnet_add_peer(struct rnet *n, uint64_t id, const char *host, uint16_t port)
{
	if (id == 0 || id == n->cfg.node_id || !host || !host[0] || n->closing)
		return -EINVAL;
	char *h = strdup(host);
	if (!h)
		return -ENOMEM;
	struct peer *p = find_peer(n, id);
	if (p) {
		/* The next attempt resolves the new address; a working connection is kept. */
		free(p->host);
		p->host = h;
		p->port = port;
		return 0;
	}
	p = calloc(1, sizeof *p);
	if (!p) {
		free(h);
		return -ENOMEM;
	}
	p->n = n;
	p->id = id;
	p->host = h;
	p->port = port;
	p->backoff = BACKOFF_MIN_MS;
	p->refs = 1;
	uv_timer_init(n->loop, &p->timer);
	p->timer.data = p;
	n->live++;
	p->next = n->peers;
	if (n->peers)
		n->peers->prev = p;
	n->peers = p;
	if (id > n->cfg.node_id)
		uv_timer_start(&p->timer, on_retry, 0, 0); /* dial from the loop, not inside this call */
	return 0;
}

/* Takes p out of the roster and closes what it owns; it is freed once its timer and resolution end. */
static void peer_shutdown(struct peer *p)
{
	struct rnet *n = p->n;
	if (p->prev)
		p->prev->next = p->next;
	else
		n->peers = p->next;
	if (p->next)
		p->next->prev = p->prev;
	p->removed = true;
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, on_peer_timer_closed);
	if (p->resolving)
		uv_cancel((uv_req_t *)&p->gai);
	struct conn *cs[2] = {p->dial, p->conn};
	p->dial = p->conn = NULL;
	for (int i = 0; i < 2; i++) {
		if (cs[i]) {
			cs[i]->peer = NULL;
			conn_close(cs[i], WHY_LOCAL);
		}
	}
	if (p->ai && !p->resolving) {
		uv_freeaddrinfo(p->ai);
		p->ai = p->ai_cur = NULL;
	}
}

int rnet_remove_peer(struct rnet *n, uint64_t id)
{
	struct peer *p = n->closing ? NULL : find_peer(n, id);
	if (!p)
		return -ENOENT;
	peer_shutdown(p);
	return 0;
}

bool rnet_connected(const struct rnet *n, uint64_t peer)
{
	const struct peer *p = n->closing ? NULL : find_peer(n, peer);
	return p && p->conn && !p->conn->closing;
}

uint64_t rnet_silent_ms(const struct rnet *n, uint64_t peer)
{
	if (!rnet_connected(n, peer))
		return UINT64_MAX;
	const struct conn *c = find_peer(n, peer)->conn;
	uint64_t now = uv_now(n->loop);
	return now > c->last_rx ? now - c->last_rx : 0;
}

void rnet_stats(const struct rnet *n, struct rnet_stats *st)
{
	*st = n->st;
}

void rnet_close(struct rnet *n)
{
	if (n->closing)
		return;
	n->closing = true;
	n->armed = false;
	uv_close((uv_handle_t *)&n->listener, on_handle_closed);
	uv_close((uv_handle_t *)&n->tick, on_handle_closed);
	uv_close((uv_handle_t *)&n->check, on_handle_closed);
	uv_close((uv_handle_t *)&n->idle, on_handle_closed);
	while (n->peers)
		peer_shutdown(n->peers);
	for (struct conn *c = n->conns; c; c = c->next)
		conn_close(c, WHY_LOCAL);
}
