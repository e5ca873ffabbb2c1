/*
 * http — the HTTP REST API of Apache Iggy (shared reference iggy-protocol.md §6) on h2o 2.2.5 (libuv
 * flavour), serving HTTP/1.1 and HTTP/2 (h2c, also with prior knowledge) on the caller's loop, or HTTPS
 * (HTTP/1.1 and h2 chosen by ALPN) with http_opts.ssl_ctx.
 *
 * The listener is a translator: it turns each REST request into exactly the binary request of the
 * Iggy protocol that it stands for (a struct frame_request header and a body built with wire_buf,
 * reference §2), hands it to the handler as transport/tcp does, and turns the binary reply it gets
 * back (a Reply or an Eviction frame) into the JSON and the HTTP status of §6. It knows nothing of
 * the node behind the handler: every request is a "call" with its own context, which the handler
 * binds to a server session of its own (on_open .. on_close).
 *
 * Authentication (§6). POST /users/login and POST /personal-access-tokens/login forward a Register
 * frame (by password, or by personal access token) and, when it succeeds, answer with an access
 * token that the listener issues itself: a JWT signed with HS256, issuer and audience
 * "iggy.apache.org", `sub` the user id as a decimal string, `exp` one hour after `iat`, and a random
 * `jti`. Every other route but /ping needs "Authorization: Bearer <token>": a JWT is verified here
 * (signature, iss, aud, exp, not revoked by a logout) and the call's session is bound to its user
 * with on_auth; anything else is taken as a raw personal access token and a Register-with-PAT frame is
 * forwarded before the request itself. DELETE /users/logout forwards a Logout frame and revokes the
 * token until it expires.
 *
 * Replies. A call's binary reply arrives through http_call_send as pieces (memory, or file ranges read
 * with pread); it is converted after the handler's call stack has unwound (from an idle callback), so
 * a handler may reply synchronously from on_frame. Errors are answered with the JSON
 * {"id":<Iggy error code>,"code":"<snake_case name>","reason":"<text>","field":<string or null>} and the
 * status of §6: 404 for not-found codes, 401 for 40/53/77/78, 403 for 41, 503 with Retry-After for
 * 57/58, 400 otherwise; 413 for a body over max_request_size; 501 for a route not implemented.
 *
 * Threading: everything runs on the loop given to http_server_new.
 */
#ifndef GALGO_HTTP_H
#define GALGO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "proto/frame.h"

struct http_server;
struct http_call;

/* Log levels of http_opts.log (the same numbers as node/log.h's enum glog_level). */
enum http_log_level {
	HTTP_LOG_DEBUG = 0,
	HTTP_LOG_INFO = 1,
	HTTP_LOG_WARN = 2,
	HTTP_LOG_ERROR = 3,
};

struct http_opts {
	/* "host:port" or "[ipv6]:port"; port 0 picks a free port. */
	const char *address;
	size_t max_request_size;  /* default 2 MiB: a larger request body is answered 413 */
	const char *jwt_secret;   /* HS256 key; NULL or empty: 32 random bytes per start */
	uint32_t token_ttl_s;     /* default 3600: lifetime of the access tokens issued */
	/* GET /metrics: the Prometheus text (malloc'd, the listener frees it). NULL: 501. */
	int (*metrics)(void *ud, char **out, size_t *len);
	bool metrics_auth;        /* GET /metrics needs a Bearer token; false (default): open, as in Iggy */
	/*
	 * GET /health/live and /health/ready (open, for probes): a JSON object (malloc'd, the listener frees
	 * it) and the HTTP status to answer, 200 or 503. NULL: /health/live answers 200 {"live":true} and
	 * /health/ready 503.
	 */
	int (*health)(void *ud, bool ready, char **out, size_t *len);
	/* Where the listener says what it does (default: nowhere). level: enum http_log_level. */
	void (*log)(void *ud, int level, const char *msg);
	void *log_ud;             /* passed to metrics, health and log */
	/*
	 * HTTPS: every connection is a TLS server session of this context, ALPN offering h2 and http/1.1
	 * (registered on the context by http_server_new). The server takes its own reference; NULL: plain
	 * HTTP (and h2c).
	 */
	SSL_CTX *ssl_ctx;
};

/* Fills the defaults (address NULL: the caller sets it). */
void http_opts_default(struct http_opts *o);

/* The handler: what a call needs from the node. Every callback is required. */
struct http_handler {
	/* A call starts: give it a session (http_call_set_data). Returns 0 or a negative errno (503). */
	int (*on_open)(struct http_call *c);
	/* Binds the call's session to a user whose access token was verified: 0, or -ENOENT (401). */
	int (*on_auth)(struct http_call *c, uint32_t user_id);
	/* A request frame for the call's session; `body` may be modified during the call. */
	void (*on_frame)(struct http_call *c, const struct frame_request *hdr, uint8_t *body, size_t len);
	/* The call is over (answered, or its client gone, or the server closing): end its session. */
	void (*on_close)(struct http_call *c);
};

/* One piece of a reply frame: memory (mem != NULL) or `len` bytes of file `fd` from `off`. */
struct http_piece {
	const void *mem;
	int fd;
	uint64_t off;
	size_t len;
};

/*
 * Binds and listens on `loop`. `h` is copied; `ud` is returned by http_server_data. Returns 0 and sets
 * *out, -EINVAL for a bad address or option, -EIO when no random secret could be made, or the negative
 * errno of bind or listen.
 */
int http_server_new(uv_loop_t *loop, const struct http_opts *opts, const struct http_handler *h, void *ud,
		    struct http_server **out);

/* The port the listener is bound to (useful after asking for port 0). */
int http_server_port(const struct http_server *s);

void *http_server_data(const struct http_server *s);

/*
 * The first phase of a shutdown: closes the listener, answers every request that arrives from now on
 * with 58 (TransientNotAccepted, true: it is not handed to the handler), closes idle HTTP/1.1
 * connections and sends GOAWAY on h2 ones. Calls already running go on and are answered.
 */
void http_server_drain(struct http_server *s);

/* Calls running: requests received and not yet answered (a drain waits for 0). */
size_t http_server_calls(const struct http_server *s);

/*
 * Stops accepting, answers the calls still running (a reply already received as it says; a call whose
 * frame is out and unanswered with error 1, as it may still take effect; their on_close is called now),
 * shuts the connections down, and frees the server once every handle is closed: run the loop until
 * then. The server must not be used after this call.
 */
void http_server_close(struct http_server *s);

/*
 * Delivers the reply frame of the call's last request: the pieces in order form one Reply or Eviction
 * frame. The bytes are copied (file ranges read) before this returns, and done(arg, status) is called
 * exactly once, before this returns: 0, or a negative errno when the frame could not be taken. Returns 0.
 */
int http_call_send(struct http_call *c, const struct http_piece *pieces, size_t n, void (*done)(void *arg, int status),
		   void *arg);

void http_call_set_data(struct http_call *c, void *data);
void *http_call_get_data(const struct http_call *c);

/* The call's id: 1, 2, 3, ... (a u32 unique among calls, used as the session's client id). */
uint32_t http_call_id(const struct http_call *c);

/* The client's address, "ip:port" or "[ipv6]:port". */
const char *http_call_peer(const struct http_call *c);

struct http_server *http_call_server(const struct http_call *c);

/* Base64 (RFC 4648, standard alphabet with padding), exposed for tests. Returns the length written. */
size_t http_b64_encode(const uint8_t *in, size_t n, char *out); /* out: 4 * ceil(n / 3) + 1 bytes */
/* Decodes standard or URL-safe base64, padding optional. Returns the length, or -EINVAL. */
long http_b64_decode(const char *in, size_t n, uint8_t *out);  /* out: 3 * n / 4 + 3 bytes */

#endif /* GALGO_HTTP_H */
