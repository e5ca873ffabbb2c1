/*
 * rnet — the node-to-node transport: one authenticated TCP connection per pair of nodes, carrying every
 * Raft group's messages and the node layer's own traffic (forwarded client requests and their replies),
 * each message tagged with a one-byte kind chosen by the user of this module.
 *
 * Connections. Of two nodes, the one with the lower id dials and the other accepts, so a pair shares
 * exactly one connection and messages flow both ways on it. A peer's address is a host name or an IP
 * literal and a port; the name is resolved (uv_getaddrinfo) at every connection attempt, so a peer that
 * comes back at a new address (a Kubernetes pod) is found again. A lost or refused connection is retried
 * with a backoff from 50 ms doubling up to 1 s. A connection from which nothing (not even a keepalive) was
 * received for idle_timeout_ms is closed and, on the dialing side, dialed again. A new authenticated
 * connection from a peer replaces an older one from the same peer.
 *
 * Authentication. With tls_* configured, the connection is first a mutual TLS 1.3 session in which each
 * side verifies the other's certificate against the CA. Then, in TLS or on plain TCP alike, both sides
 * prove knowledge of the cluster secret without sending it (HMAC-SHA256 challenge and response over
 * both nonces and both node ids) and check the cluster name; a peer that fails, names an id that is not
 * in the roster, or does not complete (TLS included) within 5 s is disconnected. The handshake and frame
 * formats are specified at the top of rnet.c.
 *
 * Sending. rnet_send copies the message into the peer's output queue; queues are written once per loop
 * iteration (uv_check), so every message queued to a peer during one iteration (appends and heartbeats
 * of every group) leaves in one write. Delivery is in order per peer and best effort: a message queued
 * to a peer that is not connected, or whose queue holds more than max_queue_bytes, is refused
 * (-ENOTCONN, -EAGAIN), and messages still queued when a connection breaks are dropped. Raft retries
 * by itself; the node layer answers a forwarded request whose connection broke with an error.
 *
 * Receiving. Every message is handed to on_message once complete, in order, with the sender's id; the
 * bytes are valid during the call only. A frame longer than max_message_bytes closes the connection.
 *
 * Threading: an rnet and all its callbacks belong to one libuv loop.
 */
#ifndef GALGO_RNET_H
#define GALGO_RNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct rnet;

struct rnet_callbacks {
	void *ud;
	/* A complete message of `kind` from node `from`; buf is valid during the call only. */
	void (*on_message)(void *ud, uint64_t from, uint8_t kind, const void *buf, size_t len);
	/* Optional: the connection to `peer` became authenticated (up = true) or was lost (up = false). */
	void (*on_peer)(void *ud, uint64_t peer, bool up);
};

struct rnet_config {
	uint64_t node_id;          /* this node, non-zero */
	const char *cluster;       /* cluster name both sides must agree on (default "galgo") */
	const char *secret;        /* the cluster secret, non-empty */
	const char *listen_host;   /* address to bind for peers, e.g. "0.0.0.0" or "127.0.0.1" */
	uint16_t listen_port;      /* 0: an ephemeral port (see rnet_port) */
	size_t max_queue_bytes;    /* per peer output queue cap (default 64 MiB) */
	size_t max_message_bytes;  /* largest message accepted or sent (default 64 MiB) */
	unsigned idle_timeout_ms;  /* default 5000; a keepalive is sent every idle_timeout_ms / 5 */
	/*
	 * Mutual TLS (TLS 1.3 at least), on when all three are set (NULL or "" = off: plain TCP). PEM files:
	 * the CA every peer's certificate must chain to, this node's certificate (chain) and its key. The
	 * certificate serves both as server and as client certificate (no extended key usage, or both
	 * serverAuth and clientAuth). The dialer also checks that the peer's certificate names the roster
	 * host when that host is a DNS name. The secret handshake still runs, inside TLS.
	 */
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
};

/* Fills the defaults of the optional fields (and zeroes the rest). */
void rnet_config_default(struct rnet_config *c);

/*
 * Binds and listens; copies every string of cfg. Returns 0 or a negative errno (e.g. -EADDRINUSE;
 * -EINVAL also for one or two of the tls_* fields set without the others; -EIO when a TLS file cannot be
 * loaded or the key does not match the certificate, OpenSSL's error queue then says why).
 */
int rnet_open(uv_loop_t *loop, const struct rnet_config *cfg, const struct rnet_callbacks *cb, struct rnet **out);

/* The port actually listened on. */
uint16_t rnet_port(const struct rnet *n);

/*
 * Adds a peer to the roster (or changes its address), and starts dialing it if this node's id is the
 * lower. host is a DNS name or an IP literal. Returns 0, -EINVAL (id 0, this node's id, empty host).
 */
int rnet_add_peer(struct rnet *n, uint64_t id, const char *host, uint16_t port);

/* Removes a peer: closes its connection and stops dialing it. Returns 0 or -ENOENT. */
int rnet_remove_peer(struct rnet *n, uint64_t id);

/* Whether the connection to `peer` is authenticated and up. */
bool rnet_connected(const struct rnet *n, uint64_t peer);

/*
 * Milliseconds since anything (a message or a keepalive) last arrived on the connection to `peer`, or
 * UINT64_MAX when there is none. A live peer is heard at least every idle_timeout_ms / 5 (its keepalive);
 * one cut off by a network partition goes silent until the connection closes at idle_timeout_ms.
 */
uint64_t rnet_silent_ms(const struct rnet *n, uint64_t peer);

/*
 * Queues one message of `kind` to `to`, made of the concatenation of n buffers (copied). Returns 0,
 * -ENOTCONN (no authenticated connection), -EAGAIN (queue over max_queue_bytes), -EMSGSIZE, -ENOENT
 * (unknown peer).
 */
int rnet_sendv(struct rnet *n, uint64_t to, uint8_t kind, const uv_buf_t *bufs, size_t nbufs);
int rnet_send(struct rnet *n, uint64_t to, uint8_t kind, const void *buf, size_t len);

/* Counters for metrics and tests. */
struct rnet_stats {
	uint64_t messages_sent, messages_received;
	uint64_t bytes_sent, bytes_received;
	uint64_t writes;          /* write syscalls batches (one per peer per loop iteration at most) */
	uint64_t dropped;         /* messages refused or dropped with a broken connection */
	uint64_t auth_failures;   /* handshakes that failed */
	uint64_t connects;        /* connections that became authenticated */
};
void rnet_stats(const struct rnet *n, struct rnet_stats *st);

/*
 * Closes every connection and the listener. The rnet is freed once libuv has closed its handles, so the
 * loop must run after this (uv_run until it has no more work) before it is closed.
 */
void rnet_close(struct rnet *n);

#endif /* GALGO_RNET_H */
