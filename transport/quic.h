/*
 * quic — the Iggy binary protocol over QUIC (shared reference iggy-protocol.md §5), on ngtcp2 1.11 with
 * GnuTLS for TLS 1.3, on the caller's libuv loop (one UDP socket, a timer per connection).
 *
 * The byte format is TCP's, cut into streams: a client opens one bidirectional stream per request,
 * writes exactly one VSR request frame (256-byte header and body, proto/frame.h; the size field at
 * byte 48 counts both) and finishes its sending side. The listener reads that frame, hands it to the
 * handler, and writes exactly one reply frame (Reply or Eviction) on the same stream followed by FIN.
 * A stream that is not one well-formed request frame is reset (RESET_STREAM and STOP_SENDING) with an
 * Iggy error code as the application error code: 4 (InvalidFormat) when the bytes are not one frame of
 * the size its header states (size out of 256..max_frame, more or fewer bytes than it, FIN missing),
 * 3 (InvalidCommand) when the header is not a valid request (frame_request_decode). The connection and
 * its other streams carry on.
 *
 * A connection is one handler session (on_open once its handshake completes .. on_close). Its streams
 * may be open at once (up to max_streams); their frames reach the handler in the order the streams
 * completed, and the handler's replies (quic_conn_send, always in request order) go to them in that
 * same order. ALPN: the listener offers "iggy"; a client that offers no ALPN (Iggy's SDKs) or another
 * protocol is served too.
 *
 * Connection IDs: 16 random bytes; every ID the connection issues, and the client's original
 * destination ID, map to it until the connection ends. Flow control: a stream's and the connection's
 * receive credit is returned as soon as bytes are buffered (a request buffer grows with the bytes that
 * came, not with the size its header claims), so the memory a connection can hold is bounded by
 * max_streams × max_frame of bytes actually sent. Sending: packets go out with uv_udp_try_send; when the socket
 * would block they are copied to a queue (uv_udp_send), and connections stop producing packets while
 * the queue holds more than send_queue_limit bytes, until it has drained to half. Idle timeout and loss recovery are ngtcp2's, driven by one timer per
 * connection from ngtcp2_conn_get_expiry. A connection closed by either side lingers three PTOs (closing
 * or draining period) before it is freed. Not implemented: Retry (address validation tokens),
 * stateless resets for unknown connection IDs, 0-RTT, connection migration beyond what ngtcp2 does
 * itself.
 *
 * Threading: everything runs on the loop given to quic_server_new.
 */
#ifndef GALGO_QUIC_H
#define GALGO_QUIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proto/frame.h"

struct quic_server;
struct quic_conn;

/* Log levels of quic_opts.log (the same numbers as node/log.h's enum glog_level). */
enum quic_log_level {
	QUIC_LOG_DEBUG = 0,
	QUIC_LOG_INFO = 1,
	QUIC_LOG_WARN = 2,
	QUIC_LOG_ERROR = 3,
};

/* Application error codes of reset streams and closed connections (Iggy error codes where one fits). */
enum {
	QUIC_APP_NO_ERROR = 0,
	QUIC_APP_INVALID_COMMAND = 3,
	QUIC_APP_INVALID_FORMAT = 4,
	QUIC_APP_NOT_ACCEPTED = 58,      /* TransientNotAccepted: the request was not handed over (a drain) */
	QUIC_APP_SERVER_BUSY = 0x1001,   /* the handler could not open a session */
};

struct quic_opts {
	const char *address;          /* "host:port" or "[ipv6]:port" (UDP); port 0 picks a free port */
	const char *cert_file;        /* PEM certificate chain (required) */
	const char *key_file;         /* PEM private key of cert_file (required) */
	uint32_t idle_timeout_ms;     /* default 30000 */
	uint32_t max_streams;         /* concurrent bidirectional streams per connection; default 16 */
	uint32_t max_connections;     /* default 1024: further Initials are answered CONNECTION_REFUSED */
	uint32_t max_frame;           /* default FRAME_MAX_SIZE */
	size_t send_queue_limit;      /* bytes queued on a full socket before connections pause; 4 MiB */
	bool queue_all;               /* every datagram through the queue, as if the socket were full (tests) */
	void (*log)(void *ud, int level, const char *msg);
	void *log_ud;
};

void quic_opts_default(struct quic_opts *o);

/* What a connection needs from the node. Every callback is required. */
struct quic_handler {
	/* The handshake completed: give the connection a session. Nonzero refuses it (connection closed). */
	int (*on_open)(struct quic_conn *c);
	/* One request frame; `body` may be modified during the call and is not used after it. */
	void (*on_frame)(struct quic_conn *c, const struct frame_request *hdr, uint8_t *body, size_t len);
	/* The connection is over (closed by either side, timed out, or the server closing). */
	void (*on_close)(struct quic_conn *c);
};

/* One piece of a reply frame: memory (mem != NULL) or `len` bytes of file `fd` from `off`. */
struct quic_piece {
	const void *mem;
	int fd;
	uint64_t off;
	size_t len;
};

/*
 * Binds the UDP socket and loads the certificate. Returns 0 and sets *out; -EINVAL for a bad address or
 * option, -EIO when the certificate or key cannot be loaded, or the negative errno of bind. errbuf gets
 * a one-line message on failure (may be NULL).
 */
int quic_server_new(uv_loop_t *loop, const struct quic_opts *opts, const struct quic_handler *h, void *ud,
		    struct quic_server **out, char *errbuf, size_t errlen);

int quic_server_port(const struct quic_server *s);
void *quic_server_data(const struct quic_server *s);
/* Connections with a completed handshake that are not closing. */
uint32_t quic_server_conn_count(const struct quic_server *s);
/* Datagrams that went through the send queue, and the times a connection paused on a full queue. */
void quic_server_send_stats(const struct quic_server *s, uint64_t *queued, uint64_t *pauses);

/*
 * The first phase of a shutdown: Initial packets that would open a connection are dropped, and request
 * streams completed from now on are reset with QUIC_APP_NOT_ACCEPTED instead of reaching the handler.
 * Requests handed over before are still answered.
 */
void quic_server_drain(struct quic_server *s);

/*
 * Graceful close: every connection gets a CONNECTION_CLOSE (NO_ERROR), on_close is called for those
 * with a session, and the server frees itself once its handles are closed: run the loop until then.
 */
void quic_server_close(struct quic_server *s);

/*
 * The reply to the oldest request of the connection still waiting for one: the pieces in order form
 * one frame. The bytes are copied (file ranges read with pread) before this returns, and done(arg,
 * status) is called exactly once before it returns (0, or a negative errno). Returns 0.
 */
int quic_conn_send(struct quic_conn *c, const struct quic_piece *pieces, size_t n, void (*done)(void *arg, int status),
		   void *arg);

void quic_conn_set_data(struct quic_conn *c, void *data);
void *quic_conn_get_data(const struct quic_conn *c);
uint32_t quic_conn_id(const struct quic_conn *c);          /* 1, 2, 3, ... */
const char *quic_conn_peer(const struct quic_conn *c);     /* "ip:port" or "[ipv6]:port" */
struct quic_server *quic_conn_server(const struct quic_conn *c);

#endif /* GALGO_QUIC_H */
