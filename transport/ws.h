/*
 * ws — the WebSocket listener of the Iggy client protocol (Iggy 0.9's `[websocket]`, `ws://` and
 * `wss://` in the SDKs): the binary protocol of transport/tcp.h, one Iggy frame per WebSocket binary
 * message in each direction. The byte format and the handshake are described at the top of ws.c.
 *
 * A ws server is a tcp_server (transport/tcp.h) with the WebSocket framing: the same accepting,
 * optional TLS (wss), write queue, backpressure, heartbeat, connection limit and closing, and the same
 * struct tcp_handler and tcp_conn_* calls for the handler, so that a session layer written for TCP serves
 * WebSocket unchanged. What differs for the handler:
 *   - on_connect comes once the HTTP/1.1 upgrade is done (after the TLS handshake, under wss);
 *   - every tcp_conn_send is one binary message (its pieces are the message's payload, still sent from
 *     memory or with sendfile(2) as over TCP);
 *   - a connection is closed by the server, with a WebSocket close message saying why, when a message
 *     is not a single whole Iggy frame (1007), is a text message (1003), is larger than max_frame
 *     (1009), or breaks RFC 6455 (1002, e.g. an unmasked frame); the server goes on serving the others.
 * Pings are answered with pongs, and a close from the client is answered with a close, after the
 * replies to the frames it sent before (they are already queued), then the TCP connection is closed.
 *
 * Threading: as tcp.h (one libuv loop).
 */
#ifndef GALGO_WS_H
#define GALGO_WS_H

#include <stddef.h>
#include <stdint.h>

#include "transport/tcp.h"

/* The largest upgrade request read; a longer one is answered 431 and closed. */
#define WS_REQUEST_MAX 8192

/*
 * Starts a WebSocket listener: tcp_server_new with opts->framing set to the WebSocket framing (the other
 * options as tcp.h, ssl_ctx for wss). The server is then used and closed with the tcp_server_* calls.
 */
int ws_server_new(uv_loop_t *loop, const struct tcp_opts *opts, const struct tcp_handler *h, void *ud,
		  struct tcp_server **out);

/* What a valid upgrade request carries. */
struct ws_upgrade {
	char key[25]; /* Sec-WebSocket-Key: 24 base64 characters of 16 bytes, NUL-terminated */
};

/* Results of ws_upgrade_parse besides a length. */
enum ws_upgrade_error {
	WS_UPGRADE_BAD = -1,     /* not an HTTP/1.1 GET upgrading to WebSocket: 400 */
	WS_UPGRADE_VERSION = -2, /* Sec-WebSocket-Version is not 13: 426 with the version we speak */
	WS_UPGRADE_LONG = -3,    /* no end of the headers within WS_REQUEST_MAX bytes: 431 */
};

/*
 * Parses the upgrade request at the start of [p, p + n): returns its length (> 0, up to and including the
 * blank line) and fills *out when it is a complete and valid WebSocket upgrade, 0 when more bytes are
 * needed, or an enum ws_upgrade_error. Pure: no I/O, no allocation (the fuzz target calls it).
 */
int ws_upgrade_parse(const char *p, size_t n, struct ws_upgrade *out);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + the RFC 6455 GUID)), 28 characters and a NUL. */
void ws_accept_key(const char *key, char out[29]);

#endif /* GALGO_WS_H */
