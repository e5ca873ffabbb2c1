/*
 * tcp — the TCP listener of the Iggy client protocol: accepts connections, cuts the byte stream into
 * frames (proto/frame.h), hands valid requests to a handler in arrival order and writes replies,
 * from memory or from file ranges with sendfile(2), in the order they are queued.
 *
 * Threading: a server, its connections and every callback belong to one libuv loop; every function
 * here is called on that loop's thread.
 *
 * Reading. Each connection has one receive buffer. A frame is delivered once all of its `size` bytes
 * are there: the header is decoded with frame_request_decode and the body is passed as a pointer into
 * the buffer, valid only during the on_frame call. Frames of one connection are delivered one at a
 * time, in order; the handler may answer at once or later (tcp_conn_pause keeps the next frames back
 * while an answer is pending, so that replies stay in request order). What happens to a frame:
 *   - its size field (known from the first 52 bytes) is < 256 or > max_frame: the connection is
 *     closed at once, without reading the rest (reference §1.7);
 *   - its command is not 5 (Request): ignored (logged at debug level, reference §1.1);
 *   - frame_request_decode refuses it: dropped silently (logged at debug level, reference §1.2);
 *   - otherwise: on_frame.
 *
 * Writing. tcp_conn_send queues a reply made of pieces, each either memory or a range of a file:
 *   - TCP_PIECE_COPY: the bytes are copied into the queue at once; the caller may reuse its memory as
 *     soon as tcp_conn_send returns (headers, small bodies);
 *   - TCP_PIECE_REF: the bytes are referenced, not copied; the caller keeps them unchanged until
 *     `done` is called (large bodies built once);
 *   - TCP_PIECE_FILE: `len` bytes of file descriptor `fd` from offset `off`, sent with sendfile(2)
 *     without passing through user space (under TLS: through a bounce buffer, see TLS below); the
 *     caller keeps the descriptor open and the range unchanged until `done` (the storage layer hands
 *     over segment ranges for poll replies).
 * Bytes leave in queue order: pieces in the order given, sends in the order queued. The queue is
 * written as far as the socket takes it (partial writes and EAGAIN are handled; memory pieces are
 * gathered into one sendmsg). `done(arg, status)` is called exactly once per queued send, never from
 * within tcp_conn_send, in queue order: status 0 when every byte was handed to the kernel, a negative
 * errno when the connection closed first (-ECANCELED, or the write error). A file range that turns out
 * shorter than announced closes the connection (-EIO), since the frame it belongs to can no longer be
 * completed.
 *
 * Backpressure. When the bytes queued on a connection (all kinds of pieces count) exceed
 * write_high_water, the server stops reading from it and stops delivering its buffered frames; both
 * resume once the queue drains to half of write_high_water. A client that sends requests but never
 * reads replies therefore costs at most write_high_water plus one reply plus one receive buffer.
 *
 * Heartbeat. A connection from which nothing was received and to which nothing could be written for
 * more than heartbeat_timeout_ms is stale. The reference server evicts after 1.2 × heartbeat.interval
 * (30 s by default, so 36 s; reference §1.8); SDKs ping every 5 s. Any received byte counts as a sign of
 * life, and the time a connection is held by tcp_conn_pause does not count. on_stale is called once
 * per silence (a handler that keeps the connection may restart the count, tcp_conn_restart_silence); without an on_stale handler the server sends Eviction(13 StaleClient) for the client id
 * of the connection's last valid request (if there was one) and closes the connection.
 *
 * Closing. tcp_conn_close is graceful: no more frames are delivered, the queued replies are written,
 * then the socket is closed (or after close_linger_ms without write progress). tcp_conn_abort closes at
 * once. The peer closing its side is a graceful close after the frames already received are answered.
 * on_close is called once for every connection that got on_connect, after the `done` of its sends; the
 * connection must not be used after on_close returns.
 *
 * TLS. With tcp_opts.ssl_ctx set, every connection is a TLS server session of that context around the
 * same byte stream; without it the server is plain TCP and none of what follows applies. The handshake
 * (SSL_accept) is driven by the poll events: OpenSSL's WANT_READ and WANT_WRITE become UV_READABLE and
 * UV_WRITABLE. on_connect is called only once the handshake has completed, so the handler never sees
 * a connection that is not yet secured (and on_close only follows an on_connect, as above). A
 * handshake that fails (garbage or plain frames instead of a ClientHello, a certificate the peer
 * rejects, the peer closing midway) or does not complete within tls_handshake_timeout_ms closes that
 * connection alone, without any callback. After the handshake, reads go through SSL_read into the same
 * receive buffer and writes through SSL_write, with the same framing, backpressure, heartbeat, limits
 * and ordering. There is no sendfile(2) under TLS, since the kernel cannot encrypt: file pieces are
 * read with pread(2) into a per-connection bounce buffer of one TLS record (16 KiB), together with
 * the memory pieces around them, and encrypted from there. The server takes its own reference on the
 * SSL_CTX (the caller may free its reference after tcp_server_new). Renegotiation is refused, and a
 * peer that closes without close_notify is treated as an ordinary end of file (the frames carry their
 * own lengths, so truncation cannot go unnoticed). A graceful close sends close_notify.
 *
 * Framing. With tcp_opts.framing set, the byte stream does not carry Iggy frames directly but another
 * framing around them (transport/ws.h: WebSocket). The server then hands every byte it receives to
 * framing->input instead of cutting frames itself; the framing unwraps the Iggy frames and hands each
 * one back with tcp_conn_deliver, which checks and delivers it as above (or refuses it). tcp_conn_send
 * puts framing->head's header before each reply, so that the handler sends exactly as it does over TCP;
 * the framing writes its own bytes (handshake, control messages) unwrapped with tcp_conn_write. A new
 * connection (after its TLS handshake, if any) goes to framing->open, and on_connect waits until the
 * framing calls tcp_conn_upgraded; one that is not upgraded within tls_handshake_timeout_ms is closed
 * without any callback. Accepting, TLS, the write queue, backpressure, heartbeat, limits and closing
 * stay as described above.
 *
 * SIGPIPE: a write to a connection the peer has reset must not kill the process. Memory pieces are sent
 * with MSG_NOSIGNAL, but sendfile(2) has no such flag, so tcp_server_new sets SIGPIPE to SIG_IGN when its
 * disposition is still the default.
 */
#ifndef GALGO_TCP_H
#define GALGO_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "proto/frame.h"

struct tcp_server;
struct tcp_conn;
struct tcp_framing;

/* Log levels of tcp_opts.log (the same numbers as node/log.h's enum glog_level). */
enum tcp_log_level {
	TCP_LOG_DEBUG = 0,
	TCP_LOG_INFO = 1,
	TCP_LOG_WARN = 2,
	TCP_LOG_ERROR = 3,
};

struct tcp_opts {
	/* "host:port" or "[ipv6]:port"; an empty host is 0.0.0.0; port 0 picks a free port. */
	const char *address;
	uint32_t max_connections;      /* default 10000; more are accepted and closed at once */
	uint32_t max_frame;            /* default FRAME_MAX_SIZE (64 MiB); 256..FRAME_MAX_SIZE */
	uint32_t heartbeat_timeout_ms; /* default 36000; 0 disables the stale check */
	size_t write_high_water;       /* default 16 MiB: queued bytes beyond which reading pauses */
	uint32_t close_linger_ms;      /* default 5000: how long a graceful close waits for the peer */
	int backlog;                   /* default 511 */
	/* TLS (see TLS above): a server context made by the caller, or NULL for plain TCP (the default). */
	SSL_CTX *ssl_ctx;
	uint32_t tls_handshake_timeout_ms; /* default 10000: how long a TLS handshake (and an upgrade) may take */
	/* Framing (see Framing above): NULL (the default) for Iggy frames straight on the byte stream. */
	const struct tcp_framing *framing;
	/* Where the server says what it does (default: nowhere). level: enum tcp_log_level. */
	void (*log)(void *ud, int level, const char *msg);
	void *log_ud;
};

/* Fills the defaults (address NULL: the caller sets it). */
void tcp_opts_default(struct tcp_opts *o);

/* The handler. Every callback but on_frame may be NULL. */
struct tcp_handler {
	/* A connection was accepted. */
	void (*on_connect)(struct tcp_conn *c);
	/* A valid request arrived; `body` is valid only during the call. */
	void (*on_frame)(struct tcp_conn *c, const struct frame_request *hdr, const uint8_t *body,
			 size_t body_len);
	/* The connection is closed; after this call it no longer exists. */
	void (*on_close)(struct tcp_conn *c);
	/* The connection has been silent for heartbeat_timeout_ms (see Heartbeat above). */
	void (*on_stale)(struct tcp_conn *c);
};

enum tcp_piece_kind {
	TCP_PIECE_COPY = 1,
	TCP_PIECE_REF = 2,
	TCP_PIECE_FILE = 3,
};

/* One piece of a reply (see Writing above). */
struct tcp_piece {
	enum tcp_piece_kind kind;
	const void *base; /* COPY, REF */
	int fd;           /* FILE */
	uint64_t off;     /* FILE */
	size_t len;
};

#define TCP_COPY(p, n) ((struct tcp_piece){.kind = TCP_PIECE_COPY, .base = (p), .len = (n)})
#define TCP_REF(p, n) ((struct tcp_piece){.kind = TCP_PIECE_REF, .base = (p), .len = (n)})
#define TCP_FILE(f, o, n) ((struct tcp_piece){.kind = TCP_PIECE_FILE, .fd = (f), .off = (o), .len = (n)})

typedef void (*tcp_send_cb)(void *arg, int status);

/*
 * Binds and listens, and starts accepting on `loop`. `h` is copied; `ud` is returned by
 * tcp_server_data. Returns 0 and sets *out, -EINVAL for a bad address or option, or the negative
 * errno of socket, bind or listen (-EADDRINUSE, ...).
 */
int tcp_server_new(uv_loop_t *loop, const struct tcp_opts *opts, const struct tcp_handler *h, void *ud,
		   struct tcp_server **out);

/* The port the server is bound to (useful after asking for port 0). */
int tcp_server_port(const struct tcp_server *s);

/* The `ud` given to tcp_server_new. */
void *tcp_server_data(const struct tcp_server *s);

/* Connections open (including those being closed). */
uint32_t tcp_server_connections(const struct tcp_server *s);

/*
 * The first phase of a shutdown: closes the listening socket (connection attempts are refused) and stops
 * reading on every connection, so that no new request reaches the handler; frames already received but
 * not yet delivered never will be. Replies to the requests delivered before are still written, and
 * connections stay open until tcp_server_close.
 */
void tcp_server_drain(struct tcp_server *s);

/* Connections with replies queued and not yet written to their socket (a drain waits for 0). */
uint32_t tcp_server_unsent(const struct tcp_server *s);

/*
 * Stops accepting and aborts every connection (their queued sends finish with -ECANCELED, then
 * on_close). The server frees itself once all its handles are closed: run the loop until then. The
 * server must not be used after this call.
 */
void tcp_server_close(struct tcp_server *s);

/*
 * Queues a reply of n pieces (n may be 0; zero-length pieces are skipped). Returns 0 when queued,
 * and then done (which may be NULL) is called exactly once, later; or -ENOTCONN when the connection is
 * closing, -EINVAL for a bad piece, -ENOMEM; then done is not called.
 */
int tcp_conn_send(struct tcp_conn *c, const struct tcp_piece *pieces, size_t n, tcp_send_cb done, void *arg);

/* Graceful close: no more frames; queued replies are written first. */
void tcp_conn_close(struct tcp_conn *c);

/* Immediate close: queued replies are dropped (their done gets -ECANCELED). */
void tcp_conn_abort(struct tcp_conn *c);

/*
 * Holds back the next frames of this connection (and stops reading it) until tcp_conn_resume: for a
 * handler that answers a frame later and wants replies in request order.
 */
void tcp_conn_pause(struct tcp_conn *c);
void tcp_conn_resume(struct tcp_conn *c);

/*
 * Holds (held = true) or releases a connection whose handler still owes replies: while held, a peer
 * that closed its sending side does not make the connection close, so late replies (after a flush)
 * still reach it. Unlike tcp_conn_pause it does not hold back the next frames.
 */
void tcp_conn_hold(struct tcp_conn *c, bool held);

/*
 * For an on_stale handler that keeps the connection: its silence is counted again from now, so on_stale
 * comes again after another heartbeat_timeout_ms without traffic (instead of only after traffic).
 */
void tcp_conn_restart_silence(struct tcp_conn *c);

void tcp_conn_set_data(struct tcp_conn *c, void *data);
void *tcp_conn_get_data(const struct tcp_conn *c);

/* The connection's id: 1, 2, 3, ... in accept order (0 is never used). */
uint32_t tcp_conn_id(const struct tcp_conn *c);

/* The peer's address, "ip:port" or "[ipv6]:port". */
const char *tcp_conn_peer(const struct tcp_conn *c);

/* The server of a connection. */
struct tcp_server *tcp_conn_server(const struct tcp_conn *c);

/* Bytes queued and not yet written. */
size_t tcp_conn_queued(const struct tcp_conn *c);

/* Whether the connection is being read now (false while paused, by backpressure or tcp_conn_pause). */
bool tcp_conn_reading(const struct tcp_conn *c);

/* The client id of the last valid request received (zero before the first). */
struct frame_u128 tcp_conn_last_client(const struct tcp_conn *c);

/*
 * Sends Eviction(reason) to the client id of the last valid request (reason 14 is not for this: it
 * needs the protocol versions). Returns what tcp_conn_send returns, or -ENOENT when no valid request
 * was received yet.
 */
int tcp_conn_evict(struct tcp_conn *c, uint8_t reason);

/* ---- For a framing (see Framing above) ---- */

#define TCP_FRAMING_HEAD_MAX 16 /* the longest header framing->head may write */

struct tcp_framing {
	/* A connection was accepted (and secured): returns 0, or a negative errno to close it at once. */
	int (*open)(struct tcp_conn *c);
	/*
	 * Bytes [p, p + n) are received and not yet consumed (n may be 0 when the connection resumes after
	 * a pause): returns how many it consumed, the rest is offered again with what follows. Called only
	 * while the connection may deliver frames (tcp_conn_may_deliver).
	 */
	size_t (*input)(struct tcp_conn *c, const uint8_t *p, size_t n);
	/* Writes the header of a reply of `len` bytes to out: its length, or a negative errno to refuse it. */
	int (*head)(struct tcp_conn *c, size_t len, uint8_t out[TCP_FRAMING_HEAD_MAX]);
	/* The connection is gone (after on_close): frees what open made. */
	void (*close)(struct tcp_conn *c);
};

/* The framing's handshake is done: the handler learns of the connection (on_connect). Once. */
void tcp_conn_upgraded(struct tcp_conn *c);

/* Whether a frame handed to tcp_conn_deliver now would reach the handler (not paused, not closing). */
bool tcp_conn_may_deliver(const struct tcp_conn *c);

/*
 * One whole Iggy frame of exactly `len` bytes, unwrapped by the framing: delivered as a frame read from
 * TCP would be (a command other than Request or an undecodable request is dropped). Returns 0, -E2BIG
 * when it is longer than max_frame, or -EMSGSIZE when its size field is not `len` or below 256: the
 * framing closes then.
 */
int tcp_conn_deliver(struct tcp_conn *c, const uint8_t *p, size_t len);

/* Queues bytes as they are, without framing->head (as tcp_conn_send otherwise). */
int tcp_conn_write(struct tcp_conn *c, const struct tcp_piece *pieces, size_t n, tcp_send_cb done, void *arg);

/* Says something about a connection through tcp_opts.log (level: enum tcp_log_level). */
void tcp_conn_log(struct tcp_conn *c, int level, const char *msg);

void tcp_conn_set_framing_data(struct tcp_conn *c, void *data);
void *tcp_conn_get_framing_data(const struct tcp_conn *c);

/*
 * Parses "host:port" or "[ipv6]:port" (a numeric address or a name resolved with getaddrinfo; an empty
 * host is 0.0.0.0). Returns 0, or -EINVAL.
 */
int tcp_addr_parse(const char *address, struct sockaddr_storage *out, socklen_t *len);

#endif /* GALGO_TCP_H */
