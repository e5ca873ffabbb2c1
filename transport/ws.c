/*
 * ws — the WebSocket framing of the Iggy client protocol (behaviour in ws.h), as a tcp_framing of
 * transport/tcp.c.
 *
 * The handshake (RFC 6455 §4.2). The client opens with one HTTP/1.1 request, for example
 *     GET / HTTP/1.1\r\n
 *     Host: 127.0.0.1:8092\r\n
 *     Upgrade: websocket\r\n
 *     Connection: Upgrade\r\n
 *     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n
 *     Sec-WebSocket-Version: 13\r\n
 *     \r\n
 * The path is not looked at (Iggy's server does not check it either, and its SDK asks for "/"); headers
 * are matched without regard to case, Upgrade must name the token "websocket" and Connection the token
 * "upgrade", the key must be 24 base64 characters (16 bytes) and the version 13. No subprotocol and no
 * extension is chosen (Iggy's SDK asks for none; permessage-deflate is not offered, so RSV bits are a
 * protocol error). The answer is
 *     HTTP/1.1 101 Switching Protocols\r\n
 *     Upgrade: websocket\r\n
 *     Connection: Upgrade\r\n
 *     Sec-WebSocket-Accept: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))\r\n
 *     \r\n
 * and from its end on the byte stream is WebSocket frames. A request that is not such an upgrade gets
 * 400 (426 with "Sec-WebSocket-Version: 13" for another version, 431 past WS_REQUEST_MAX bytes) and the
 * connection is closed. Under wss all of this runs inside TLS (tcp.c's TLS, before the request).
 *
 * The frames (RFC 6455 §5.2). Each frame is
 *     byte 0: FIN (0x80) | RSV1-3 (0x70, zero here) | opcode (0x0F: 0 continuation, 1 text, 2 binary,
 *             8 close, 9 ping, 10 pong)
 *     byte 1: MASK (0x80) | payload length 0..125, or 126: a u16 length follows, or 127: a u64 follows
 *             (big-endian, the smallest form that fits)
 *     then the 4-byte masking key when MASK is set, then the payload.
 * Frames from the client are masked (payload XOR key, byte i with key[i % 4]) and may split a message
 * into a first frame and continuation frames; control frames (close, ping, pong) carry at most 125
 * bytes, are never split and may come between the frames of a message. Frames from the server are never
 * masked. An Iggy request is the payload of one binary message, header and body together, and its
 * `size` field is the message's length; each reply is one unfragmented binary frame, header first:
 *     0x82, then the length as above (2, 4 or 10 bytes of header in all), then the Iggy reply frame.
 * A close frame's payload is a u16 status code (big-endian) and a UTF-8 reason.
 *
 * Library. The frames from the client are parsed by wslay's event API (libwslay, Debian's libwslay-dev,
 * the WebSocket library h2o is built on): unmasking, reassembly of fragmented messages, the limit on a
 * message's length, the rules for control frames, ping answered with pong, the close handshake and the
 * protocol errors, each closed with its status code. wslay reads from the connection's receive buffer
 * (recv callback) and its own frames (pong, close) go through its send callback into the connection's
 * write queue (tcp_conn_write), copied whole, so a wslay frame is never cut by another. Replies do not
 * go through wslay: wslay_event_queue_msg would copy each reply into its own queue and then out again,
 * and poll replies leave from segment files with sendfile(2); so tcp.c puts the 2-10 byte header of
 * ws_head before the reply's pieces, and the reply's bytes are sent as over TCP. h2o's own
 * websocket.h (h2o 2.2.5) was not used: it upgrades only requests of h2o's HTTP server and then runs
 * the connection on h2o's socket layer, without tcp.c's write queue, sendfile(2), backpressure,
 * heartbeat, limits and OpenSSL TLS that the TCP listener already has.
 *
 * Pauses. tcp.c delivers a connection's frames one at a time and stops while the handler pauses it.
 * wslay parses what it has read in one go, so messages already inside wslay when a pause starts are
 * copied aside (held) and delivered, in order, before anything else when the connection resumes; the
 * recv callback gives wslay no more bytes while the connection is paused, so at most what wslay had
 * read (a few KiB, or one message it was completing) is ever held.
 */
#include "transport/ws.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "proto/frame.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* A message received while the connection was paused, delivered when it resumes. */
struct ws_held {
	struct ws_held *next;
	size_t len;
	uint8_t data[];
};

struct ws_conn {
	struct tcp_conn *c;
	wslay_event_context_ptr ev; /* NULL until the upgrade is answered */
	char *req;                  /* the upgrade request so far (freed once upgraded) */
	size_t req_len;
	/* The bytes offered to wslay's recv callback during one ws_input. */
	const uint8_t *in;
	size_t in_len, in_used;
	struct ws_held *held, *held_tail;
	bool failed; /* a close with an error is queued: nothing more is delivered */
};

/* ---- The upgrade request ---- */

static bool is_token_char(char ch)
{
	return ch > 32 && ch < 127 && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* Whether the comma-separated list [v, v + n) holds `tok` (compared without regard to case). */
static bool list_has(const char *v, size_t n, const char *tok)
{
	size_t tl = strlen(tok), i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t start = i;
		while (i < n && v[i] != ',')
			i++;
		size_t end = i;
		while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
			end--;
		if (end - start == tl && strncasecmp(v + start, tok, tl) == 0)
			return true;
	}
	return false;
}

/* Whether [v, v + n) is a Sec-WebSocket-Key: base64 of 16 bytes, 22 characters and "==". */
static bool key_valid(const char *v, size_t n)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	if (n != 24 || v[22] != '=' || v[23] != '=')
		return false;
	for (size_t i = 0; i < 22; i++)
		if (v[i] == '\0' || !strchr(b64, v[i]))
			return false;
	return true;
}

/* What the header lines of a request said. */
struct ws_seen {
	bool upgrade, connection, version, version_13, key;
};

/* Takes one header line [line, line + n) (without its CRLF). Returns 0, or WS_UPGRADE_BAD. */
static int header_line(const char *line, size_t n, struct ws_seen *seen, struct ws_upgrade *out)
{
	const char *colon = memchr(line, ':', n);
	if (!colon || colon == line)
		return WS_UPGRADE_BAD;
	size_t nl = (size_t)(colon - line);
	for (size_t i = 0; i < nl; i++)
		if (!is_token_char(line[i]))
			return WS_UPGRADE_BAD; /* also refuses obsolete line folding, which starts with a space */
	const char *v = colon + 1, *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	size_t vl = (size_t)(end - v);
	if (nl == 7 && strncasecmp(line, "Upgrade", 7) == 0) {
		seen->upgrade |= list_has(v, vl, "websocket");
	} else if (nl == 10 && strncasecmp(line, "Connection", 10) == 0) {
		seen->connection |= list_has(v, vl, "upgrade");
	} else if (nl == 17 && strncasecmp(line, "Sec-WebSocket-Key", 17) == 0) {
		if (seen->key || !key_valid(v, vl))
			return WS_UPGRADE_BAD;
		memcpy(out->key, v, 24);
		out->key[24] = '\0';
		seen->key = true;
	} else if (nl == 21 && strncasecmp(line, "Sec-WebSocket-Version", 21) == 0) {
		seen->version = true;
		seen->version_13 = vl == 2 && memcmp(v, "13", 2) == 0;
	}
	return 0;
}

/* Checks the request line [p, p + n): "GET <target> HTTP/1.1". */
static bool request_line_valid(const char *p, size_t n)
{
	static const char proto[] = " HTTP/1.1";
	size_t pl = sizeof proto - 1;
	if (n < 4 + 1 + pl || memcmp(p, "GET ", 4) != 0 || memcmp(p + n - pl, proto, pl) != 0)
		return false;
	for (size_t i = 4; i < n - pl; i++)
		if (p[i] <= 32 || p[i] >= 127)
			return false; /* the target is one token of visible characters */
	return true;
}

int ws_upgrade_parse(const char *p, size_t n, struct ws_upgrade *out)
{
	size_t lim = n < WS_REQUEST_MAX ? n : WS_REQUEST_MAX;
	size_t end = 0;
	for (size_t i = 0; i + 4 <= lim; i++) {
		if (memcmp(p + i, "\r\n\r\n", 4) == 0) {
			end = i + 4;
			break;
		}
	}
	if (end == 0)
		return n >= WS_REQUEST_MAX ? WS_UPGRADE_LONG : 0;
	struct ws_seen seen = {0};
	memset(out, 0, sizeof *out);
	const char *line = p;
	bool first = true;
	for (;;) {
		const char *eol = memchr(line, '\r', (size_t)(p + end - line));
		assert(eol != NULL); /* the request ends with CRLF CRLF, found above */
		size_t ll = (size_t)(eol - line);
		if (eol[1] != '\n')
			return WS_UPGRADE_BAD;
		if (first) {
			if (!request_line_valid(line, ll))
				return WS_UPGRADE_BAD;
			first = false;
		} else if (ll == 0) {
			break;
		} else if (header_line(line, ll, &seen, out) != 0) {
			return WS_UPGRADE_BAD;
		}
		line = eol + 2;
	}
	if (!seen.upgrade || !seen.connection || !seen.key || !seen.version)
		return WS_UPGRADE_BAD;
	if (!seen.version_13)
		return WS_UPGRADE_VERSION;
	return (int)end;
}

void ws_accept_key(const char *key, char out[29])
{
	char in[24 + sizeof WS_GUID];
	size_t kl = strlen(key);
	assert(kl == 24); /* ws_upgrade_parse checked it */
	memcpy(in, key, kl);
	memcpy(in + kl, WS_GUID, sizeof WS_GUID - 1);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int ml = 0;
	if (EVP_Digest(in, kl + sizeof WS_GUID - 1, md, &ml, EVP_sha1(), NULL) != 1 || ml != 20) {
		out[0] = '\0'; /* no SHA-1 in this OpenSSL: the client refuses the handshake */
		return;
	}
	int n = EVP_EncodeBlock((unsigned char *)out, md, 20);
	assert(n == 28);
	(void)n;
}

/* ---- Messages ---- */

static void ws_log(struct ws_conn *w, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void ws_log(struct ws_conn *w, int level, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	tcp_conn_log(w->c, level, msg);
}

static void held_free(struct ws_conn *w)
{
	while (w->held) {
		struct ws_held *h = w->held;
		w->held = h->next;
		free(h);
	}
	w->held_tail = NULL;
}

/* Queues a close with an error and reads no more (the reason is for people: wslay caps it at 123 bytes). */
static void ws_fail(struct ws_conn *w, uint16_t code, const char *reason)
{
	if (w->failed)
		return;
	w->failed = true;
	ws_log(w, TCP_LOG_INFO, "WebSocket: %s; closing (%u)", reason, code);
	held_free(w);
	(void)wslay_event_queue_close(w->ev, code, (const uint8_t *)reason, strlen(reason));
	wslay_event_shutdown_read(w->ev);
}

static void ws_deliver(struct ws_conn *w, const uint8_t *p, size_t len)
{
	int rc = tcp_conn_deliver(w->c, p, len);
	if (rc == -E2BIG)
		ws_fail(w, WSLAY_CODE_MESSAGE_TOO_BIG, "message larger than the largest Iggy frame allowed");
	else if (rc != 0)
		ws_fail(w, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "a binary message must be exactly one Iggy frame");
}

/* Delivers the held messages while the connection takes them. Returns whether none is left. */
static bool ws_deliver_held(struct ws_conn *w)
{
	while (w->held && !w->failed && tcp_conn_may_deliver(w->c)) {
		struct ws_held *h = w->held;
		w->held = h->next;
		if (!w->held)
			w->held_tail = NULL;
		ws_deliver(w, h->data, h->len);
		free(h);
	}
	return w->held == NULL;
}

static void ws_hold(struct ws_conn *w, const uint8_t *p, size_t len)
{
	struct ws_held *h = malloc(sizeof *h + len);
	if (!h) {
		ws_fail(w, WSLAY_CODE_INTERNAL_SERVER_ERROR, "out of memory");
		return;
	}
	h->next = NULL;
	h->len = len;
	memcpy(h->data, p, len);
	if (w->held_tail)
		w->held_tail->next = h;
	else
		w->held = h;
	w->held_tail = h;
}

static void ws_on_msg(wslay_event_context_ptr ev, const struct wslay_event_on_msg_recv_arg *m, void *ud)
{
	struct ws_conn *w = ud;
	(void)ev;
	if (w->failed)
		return;
	if (m->opcode == WSLAY_BINARY_FRAME) {
		if (w->held || !tcp_conn_may_deliver(w->c))
			ws_hold(w, m->msg, m->msg_length);
		else
			ws_deliver(w, m->msg, m->msg_length);
	} else if (m->opcode == WSLAY_TEXT_FRAME) {
		ws_fail(w, WSLAY_CODE_UNSUPPORTED_DATA, "text message (Iggy frames travel in binary messages)");
	}
	/* Ping, pong and close: wslay has queued the pong or the closing answer itself. */
}

static ssize_t ws_recv_cb(wslay_event_context_ptr ev, uint8_t *buf, size_t len, int flags, void *ud)
{
	struct ws_conn *w = ud;
	(void)flags;
	size_t avail = w->in_len - w->in_used;
	/* A paused connection keeps its bytes in tcp.c's buffer, so that little is ever held here. */
	if (avail == 0 || !tcp_conn_may_deliver(w->c)) {
		wslay_event_set_error(ev, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	size_t k = avail < len ? avail : len;
	memcpy(buf, w->in + w->in_used, k);
	w->in_used += k;
	return (ssize_t)k;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ev, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct ws_conn *w = ud;
	(void)flags;
	struct tcp_piece p = TCP_COPY(data, len);
	if (tcp_conn_write(w->c, &p, 1, NULL, NULL) != 0) {
		wslay_event_set_error(ev, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)len; /* taken whole: wslay never has half a frame out when a reply is queued */
}

/* After wslay ran: its frames go out, and a close exchanged (or a fatal error) ends the connection. */
static void ws_after(struct ws_conn *w, int rv)
{
	if (rv != 0) {
		ws_log(w, TCP_LOG_INFO, "WebSocket: %s; aborting",
		       rv == WSLAY_ERR_NOMEM ? "out of memory" : "cannot queue a control frame");
		tcp_conn_abort(w->c);
		return;
	}
	if (wslay_event_want_write(w->ev) && wslay_event_send(w->ev) != 0) {
		tcp_conn_abort(w->c);
		return;
	}
	if (!wslay_event_want_read(w->ev) && !wslay_event_want_write(w->ev))
		tcp_conn_close(w->c); /* graceful: the close frame and the replies before it are written first */
}

/* ---- The framing ---- */

static const struct wslay_event_callbacks ws_callbacks = {
	.recv_callback = ws_recv_cb,
	.send_callback = ws_send_cb,
	.on_msg_recv_callback = ws_on_msg,
};

/* Answers an upgrade request: 101 and the WebSocket from here on. Returns 0 or a negative errno. */
static int ws_accept(struct ws_conn *w, const struct ws_upgrade *up)
{
	char accept[29];
	ws_accept_key(up->key, accept);
	char resp[200];
	int n = snprintf(resp, sizeof resp,
			 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Accept: %s\r\n\r\n",
			 accept);
	assert(n > 0 && (size_t)n < sizeof resp);
	if (wslay_event_context_server_init(&w->ev, &ws_callbacks, w) != 0)
		return -ENOMEM;
	/* A message longer than any frame is refused (1009) before wslay buffers it. */
	wslay_event_config_set_max_recv_msg_length(w->ev, FRAME_MAX_SIZE);
	struct tcp_piece p = TCP_COPY(resp, (size_t)n);
	int rc = tcp_conn_write(w->c, &p, 1, NULL, NULL);
	if (rc != 0)
		return rc;
	free(w->req);
	w->req = NULL;
	tcp_conn_upgraded(w->c);
	return 0;
}

static void ws_refuse(struct ws_conn *w, int why)
{
	static const char bad[] = "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
	static const char version[] = "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
				      "Connection: close\r\nContent-Length: 0\r\n\r\n";
	static const char lng[] = "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
				  "Content-Length: 0\r\n\r\n";
	const char *r = why == WS_UPGRADE_VERSION ? version : why == WS_UPGRADE_LONG ? lng : bad;
	ws_log(w, TCP_LOG_INFO, "not a WebSocket upgrade (%s); closing", why == WS_UPGRADE_VERSION ? "version"
									 : why == WS_UPGRADE_LONG ? "too long"
												   : "malformed");
	struct tcp_piece p = TCP_COPY(r, strlen(r));
	(void)tcp_conn_write(w->c, &p, 1, NULL, NULL);
	tcp_conn_close(w->c);
}

/* Reads the upgrade request from [p, p + n). Returns the bytes consumed. */
static size_t ws_handshake(struct ws_conn *w, const uint8_t *p, size_t n)
{
	assert(w->req != NULL && w->req_len < WS_REQUEST_MAX); /* still reading the request */
	size_t take = WS_REQUEST_MAX - w->req_len < n ? WS_REQUEST_MAX - w->req_len : n;
	size_t before = w->req_len;
	memcpy(w->req + w->req_len, p, take);
	w->req_len += take;
	struct ws_upgrade up;
	int rc = ws_upgrade_parse(w->req, w->req_len, &up);
	if (rc == 0)
		return take;
	if (rc < 0) {
		ws_refuse(w, rc);
		return n;
	}
	/* The request was incomplete before these bytes, so it ends within them; what follows is frames. */
	assert((size_t)rc > before && (size_t)rc <= w->req_len);
	if (ws_accept(w, &up) != 0) {
		tcp_conn_abort(w->c);
		return n;
	}
	return (size_t)rc - before;
}

static size_t ws_input(struct tcp_conn *c, const uint8_t *p, size_t n)
{
	struct ws_conn *w = tcp_conn_get_framing_data(c);
	size_t used = 0;
	if (!w->ev) {
		used = ws_handshake(w, p, n);
		if (!w->ev || !tcp_conn_may_deliver(c))
			return used;
	}
	if (!ws_deliver_held(w) || w->failed) {
		ws_after(w, 0);
		return used;
	}
	w->in = p + used;
	w->in_len = n - used;
	w->in_used = 0;
	int rv = wslay_event_recv(w->ev);
	used += w->in_used;
	assert(used <= n);
	w->in = NULL;
	w->in_len = w->in_used = 0;
	ws_after(w, rv);
	return used;
}

static int ws_head(struct tcp_conn *c, size_t len, uint8_t out[TCP_FRAMING_HEAD_MAX])
{
	struct ws_conn *w = tcp_conn_get_framing_data(c);
	/* No data frame may follow a close (RFC 6455 §5.5.1). */
	if (!w->ev || wslay_event_get_close_sent(w->ev))
		return -ENOTCONN;
	out[0] = 0x80 | WSLAY_BINARY_FRAME;
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xFFFF) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	return 10;
}

static int ws_open(struct tcp_conn *c)
{
	struct ws_conn *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	w->req = malloc(WS_REQUEST_MAX);
	if (!w->req) {
		free(w);
		return -ENOMEM;
	}
	w->c = c;
	tcp_conn_set_framing_data(c, w);
	return 0;
}

static void ws_close(struct tcp_conn *c)
{
	struct ws_conn *w = tcp_conn_get_framing_data(c);
	assert(w != NULL && w->c == c);
	held_free(w);
	if (w->ev)
		wslay_event_context_free(w->ev);
	free(w->req);
	free(w);
	tcp_conn_set_framing_data(c, NULL);
}

static const struct tcp_framing ws_framing = {ws_open, ws_input, ws_head, ws_close};

int ws_server_new(uv_loop_t *loop, const struct tcp_opts *opts, const struct tcp_handler *h, void *ud,
		  struct tcp_server **out)
{
	struct tcp_opts o = *opts;
	o.framing = &ws_framing;
	return tcp_server_new(loop, &o, h, ud, out);
}
