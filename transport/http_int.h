/*
 * http_int.h — the internal header of the HTTP listener's files: transport/http.c (listener, routes and
 * the life of a call), http_req.c (a REST request to the binary request it stands for), http_reply.c
 * (a binary reply, or an error, to JSON and an HTTP status), with the JSON writer and base64 in
 * http_json.h and the access tokens in http_jwt.h. It holds what they share: the server and call
 * structs, the Iggy error codes the listener makes itself, and the functions one file calls in another,
 * all named http__ (the rest of each file is static). Nothing outside transport/http*.c includes it; the
 * listener's interface is transport/http.h.
 *
 * Ownership: http.c creates, runs and frees servers and calls; http_req.c reads a call's request (path
 * parameters, query, JSON body, user) and sets only early_status; http_reply.c reads a call and answers
 * it through http__call_respond*.
 */
#ifndef GALGO_HTTP_INT_H
#define GALGO_HTTP_INT_H

#include "transport/http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <jansson.h>

#include "transport/http_json.h"
#include "transport/http_jwt.h"
#include "transport/list.h"
#include "proto/batch.h"
#include "proto/errors.h"
#include "proto/reply.h"
#include "proto/wire.h"

#define MAX_PARAMS 4

/* The answers of the HTTP API that are not Iggy status codes (the reference listener's own). */
enum {
	HTTP_E_NOT_FOUND = 404,       /* the reference listener's generic "not_found" */
	HTTP_E_NOT_IMPLEMENTED = 501, /* a route this listener does not serve */
};

/* ---- Server and calls (http.c) ---- */

struct http_server {
	uv_loop_t *loop;
	struct http_opts opts;
	struct http_handler h;
	void *ud;
	h2o_globalconf_t config;
	h2o_context_t ctx;
	h2o_accept_ctx_t accept_ctx;
	bool ctx_ready;
	uv_tcp_t listener;
	bool listening;
	int port;
	uv_idle_t idle;             /* converts replies outside the handler's stack */
	struct link socks;          /* struct http_sock */
	struct link calls;          /* every live struct http_call */
	struct link ready;          /* calls with a reply to convert */
	struct jwt_keys jwt;        /* the access tokens' key and the revoked ones */
	uint32_t next_call;
	uint64_t client_hi;         /* high half of the VSR client ids of the calls */
	bool draining;              /* http_server_drain: new requests are answered 58, never handed over */
	bool listener_closed;
	bool closing;
	int open_handles;           /* listener + idle, closed at close */
};

enum call_stage {
	STAGE_PAT,   /* the Register-with-PAT frame of a raw-PAT bearer is out */
	STAGE_MAIN,  /* the request's own frame is out */
	STAGE_DONE,
};

struct http_route;

/* The request's anchor in h2o's memory pool: its disposal tells the call that the request is gone. */
struct http_anchor {
	struct http_call *call;
};

struct http_call {
	struct http_server *srv;
	struct link link;           /* in srv->calls */
	struct link ready_link;     /* in srv->ready while has_reply */
	h2o_req_t *req;             /* NULL once answered or gone */
	struct http_anchor *anchor;
	const struct http_route *route;
	uint32_t id;
	char peer[64];
	void *data;
	bool opened;                /* on_open succeeded: on_close is owed */
	bool waiting;               /* a frame is out, its reply not yet here */
	bool has_reply;
	enum call_stage stage;
	char *params[MAX_PARAMS];   /* decoded path parameters */
	size_t param_len[MAX_PARAMS];
	int n_params;
	char *query;                /* the raw query string (after '?'), or NULL */
	json_t *json;               /* the parsed body, or NULL */
	char *bearer;               /* the token of the Authorization header */
	bool bearer_is_jwt;
	char jti[33];               /* of a verified JWT */
	uint64_t jwt_exp;
	uint32_t user_id;           /* the authenticated user (valid once stage >= MAIN for bearer routes) */
	bool authenticated;
	bool no_view;               /* no iggy-view header (/ping) */
	int early_status;           /* answered right after the frame is out (ack=none), else 0 */
	struct frame_u128 client;
	uint64_t session;
	uint8_t *reply;             /* the whole reply frame */
	size_t reply_len;
};

/* ---- http.c: logging and answers ---- */

void http__log(struct http_server *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Sends the response (at most once; nothing when the request is gone). extra: a header name and value. */
void http__call_respond(struct http_call *c, int status, const char *ctype, const void *body, size_t len,
			const char *extra_name, const char *extra_value);
/* Sends a JSON body built with a jw (freed here); a writer error becomes a 500. */
void http__call_respond_json(struct http_call *c, int status, struct jw *w, const char *extra_name,
			     const char *extra_value);
/* Answers with the status and an empty body. */
void http__call_ok_empty(struct http_call *c, int status);

/* ---- http_req.c: request parsing ---- */

/* Percent-decodes n bytes into a new NUL-terminated string ('+' is a space when `plus`). */
char *http__pct_decode(const char *s, size_t n, bool plus, size_t *out_len);
/* Whether a string is a u32 in decimal (all digits, no sign); the value in *v. */
bool http__parse_u32(const char *s, size_t n, uint32_t *v);
/* A string field of a JSON object: 0 found, 1 absent (or null), -1 present with the wrong type. */
int http__j_str(const json_t *o, const char *k, const char **s, size_t *n);
/* Parses a request body, u64 and u128 literals included (see http_req.c). */
json_t *http__json_load_body(const char *p, size_t n, json_error_t *err);
/* The Register-with-PAT body of a token. */
void http__put_pat_register(struct wire_buf *b, const char *tok, size_t n);

/*
 * The binary request of each route: sets *op (and *code for NonReplicated) and writes the body into b.
 * Returns 0, or the Iggy error code to answer instead (the request is then not sent).
 */
uint32_t http__req_ping(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_stats(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_snapshot(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_cluster(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_clients(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_client(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_options(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_login(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_pat_login(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_me(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_logout(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_users(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_create_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_update_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_delete_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_password(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_permissions(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_pats(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_create_pat(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_delete_pat(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_streams(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_create_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_update_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_delete_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_purge_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_topics(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_create_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_update_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_delete_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_purge_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_create_partitions(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_delete_partitions(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_delete_segments(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_groups(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_group(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_create_group(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_delete_group(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_poll(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_get_offset(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_store_offset(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_delete_offset(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);
uint32_t http__req_send(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);

/* ---- http_reply.c: replies and errors ---- */

/* The names of the user header and option value kinds (reference §2.3, kinds 1..15; index 0 unused). */
#define HTTP__N_KINDS 16
extern const char *const http__kind_names[HTTP__N_KINDS];

/* Answers with the error JSON of an Iggy error code, and its HTTP status. */
void http__call_error(struct http_call *c, uint32_t code);
/* The Iggy error a login eviction stands for (reference §1.4, as the SDK maps them). */
uint32_t http__evict_error(uint8_t reason);
/* LoginRegisterResponse: [user_id u32][session u64][protocol u32][server_version WireName]. */
bool http__parse_login(const uint8_t *p, size_t n, uint32_t *user_id, uint64_t *session);

/* A route's answer to a reply without error: p, n is the reply's body (its result section removed). */
void http__reply_streams(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_stream(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_topics(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_topic(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_users(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_user(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_groups(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_group(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_pats(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_pat_created(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_clients(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_client(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_options(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_stats(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_snapshot(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_cluster(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_offset(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_sent(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_polled(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_login(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_refresh(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_logout(struct http_call *c, const uint8_t *p, size_t n);
void http__reply_pong(struct http_call *c, const uint8_t *p, size_t n);

#endif /* GALGO_HTTP_INT_H */
