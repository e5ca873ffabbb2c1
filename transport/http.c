/*
 * http — the HTTP REST API (see http.h for the behaviour): the listener on h2o, the route table, and
 * the life of a call (authentication, the frames it sends, its reply converted after the handler's
 * stack has unwound), the local routes (/metrics, /health), and the server's lifecycle (drain, close).
 *
 * The other files of the listener, sharing transport/http_int.h (names crossing files are http__):
 *   http_req.c    a REST request (path, query, JSON body) to its binary request; the JSON of requests
 *   http_reply.c  a binary reply to JSON and an HTTP status; the errors; the JSON of responses
 *   http_jwt.c    the access tokens (JWT HS256): issue, verify, revoke (http_jwt.h)
 *   http_json.c   the JSON writer and base64 (http_json.h)
 *
 * Routes and their binary requests (reference §6 and §2.2; {s} {t} {g} {u} are identifiers: all
 * digits = numeric id, else a name; a path segment is percent-decoded):
 *
 *   GET    /ping                                   Ping (NR 1)                 200 text "pong"
 *   GET    /stats                                  GetStats (NR 10)            Stats
 *   GET    /cluster/metadata                       GetClusterMetadata (NR 12)  ClusterMetadata
 *   POST   /snapshot                               GetSnapshotFile (NR 11)     application/zip (http_req.c)
 *   GET    /metrics                                (http_opts.metrics)          Prometheus text; open
 *                                                  unless http_opts.metrics_auth (Iggy serves it openly)
 *   GET    /health/live, /health/ready             (http_opts.health)           200 or 503, a JSON object; open
 *                                                  (probes: live = the node answers; ready = see node/server.h)
 *   GET    /clients, /clients/{id}                 GetClients 22, GetClient 21 [ClientInfo], ClientInfoDetails
 *   GET    /options/{topic|stream|user}            DescribeOptions (NR 13)     [OptionSpec]
 *   POST   /users/login                            Register (op 1, code 40)    IdentityInfo
 *   POST   /personal-access-tokens/login           Register (op 1, code 45)    IdentityInfo
 *   POST   /users/refresh-token                    GetMe (NR 20)               IdentityInfo
 *   DELETE /users/logout                           Logout (op 3)               204
 *   GET    /users, /users/{u} ("me" allowed)       GetUsers 32, GetUser 31     [UserInfo], UserInfoDetails
 *   POST   /users                                  CreateUser (op 141)         UserInfoDetails
 *   PUT    /users/{u}, DELETE /users/{u}           UpdateUser 142, DeleteUser 143          204
 *   PUT    /users/{u}/password                     ChangePassword (op 144)     204
 *   PUT    /users/{u}/permissions                  UpdatePermissions (op 145)  204
 *   GET    /personal-access-tokens                 GetPersonalAccessTokens 41  [{name, expiry_at}]
 *   POST   /personal-access-tokens                 CreatePersonalAccessToken 146   {token}
 *   DELETE /personal-access-tokens/{name}          DeletePersonalAccessToken 147   204
 *   GET    /streams, /streams/{s}                  GetStreams 201, GetStream 200   [Stream], StreamDetails
 *   POST   /streams                                CreateStream (op 128)       StreamDetails
 *   PUT    /streams/{s}, DELETE /streams/{s}       UpdateStream 129, DeleteStream 130       204
 *   DELETE /streams/{s}/purge                      PurgeStream (op 131)        204
 *   GET    /streams/{s}/topics, .../topics/{t}     GetTopics 301, GetTopic 300 [Topic], TopicDetails
 *   POST   /streams/{s}/topics                     CreateTopic (op 132)        TopicDetails
 *   PUT, DELETE /streams/{s}/topics/{t}            UpdateTopic 133, DeleteTopic 134         204
 *   DELETE /streams/{s}/topics/{t}/purge           PurgeTopic (op 135)         204
 *   POST   .../topics/{t}/partitions               CreatePartitions (op 136)   200, empty
 *   DELETE .../topics/{t}/partitions?partitions_count=N   DeletePartitions (op 137)  204
 *   DELETE .../topics/{t}/partitions/{p}?segments_count=N DeleteSegments (op 138)    204
 *   GET    .../topics/{t}/consumer-groups[/{g}]    GetConsumerGroups 601, GetConsumerGroup 600
 *   POST   .../topics/{t}/consumer-groups          CreateConsumerGroup (op 139)  ConsumerGroupDetails
 *   DELETE .../topics/{t}/consumer-groups/{g}      DeleteConsumerGroup (op 140)  204
 *   POST   .../topics/{t}/messages                 SendMessages (op 160)       201 {confirmations}; ?ack=none 202
 *   GET    .../topics/{t}/messages                 PollMessages (NR 100)       PolledMessages
 *   GET    .../topics/{t}/consumer-offsets         GetConsumerOffset (NR 120)  ConsumerOffsetInfo
 *   PUT    .../topics/{t}/consumer-offsets         StoreConsumerOffset (op 161)  204
 *   DELETE .../topics/{t}/consumer-offsets/{c}     DeleteConsumerOffset (op 162) 204
 *
 * Creations answer 200 with the created object (as the reference listener does), except messages.
 * Every response but /ping carries "iggy-view: 0" (a single node has no consensus view).
 */
#include "transport/http.h"
#include "transport/http_int.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "transport/tcp.h"

/* ---- Connections ---- */

/* The h2o handler, extended with its server. */
struct http_h2o_handler {
	h2o_handler_t super;
	struct http_server *srv;
};

/* An accepted TCP connection, tracked so that closing the server can shut every one down. */
struct http_sock {
	uv_tcp_t tcp;
	struct http_server *srv;
	struct link link;
};

/* ---- Logging ---- */

void http__log(struct http_server *s, int level, const char *fmt, ...)
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

/* ---- Calls ---- */

static void on_idle(uv_idle_t *h);

static void call_free(struct http_call *c)
{
	assert(!c->waiting && !c->opened); /* no reply is owed to it and its session is closed */
	list_remove(&c->link);
	if (c->has_reply)
		list_remove(&c->ready_link);
	if (c->anchor != NULL)
		c->anchor->call = NULL;
	for (int i = 0; i < c->n_params; i++)
		free(c->params[i]);
	free(c->query);
	json_decref(c->json);
	free(c->bearer);
	free(c->reply);
	free(c);
}

/* Ends the call once it is answered (or its request gone) and no reply is owed to it. */
static void call_maybe_end(struct http_call *c)
{
	if (c->req != NULL || c->waiting)
		return;
	if (c->opened) {
		c->opened = false;
		c->srv->h.on_close(c);
	}
	call_free(c);
}

static const char *status_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

/* Sends the response (at most once; nothing when the request is gone). extra: a header name and value. */
void http__call_respond(struct http_call *c, int status, const char *ctype, const void *body, size_t len,
			 const char *extra_name, const char *extra_value)
{
	h2o_req_t *req = c->req;
	if (req == NULL)
		return;
	c->req = NULL;
	if (c->anchor != NULL) {
		c->anchor->call = NULL;
		c->anchor = NULL;
	}
	req->res.status = status;
	req->res.reason = status_reason(status);
	if (ctype != NULL)
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
	if (!c->no_view)
		h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("iggy-view"), 0, NULL, H2O_STRLIT("0"));
	if (extra_name != NULL)
		h2o_add_header_by_str(&req->pool, &req->res.headers, extra_name, strlen(extra_name), 0, NULL, extra_value,
				      strlen(extra_value));
	req->res.content_length = len;
	h2o_send_inline(req, body, len);
}


/* Sends a JSON body built with a jw (freed here); a writer error becomes a 500. */
void http__call_respond_json(struct http_call *c, int status, struct jw *w, const char *extra_name,
			      const char *extra_value)
{
	if (wire_buf_error(&w->b) != 0) {
		static const char oom[] = "{\"id\":1,\"code\":\"error\",\"reason\":\"Out of memory\",\"field\":null}";
		http__call_respond(c, 500, "application/json", oom, sizeof(oom) - 1, NULL, NULL);
	} else {
		http__call_respond(c, status, "application/json", w->b.p, w->b.len, extra_name, extra_value);
	}
	wire_buf_free(&w->b);
}

void http__call_ok_empty(struct http_call *c, int status)
{
	http__call_respond(c, status, NULL, "", 0, NULL, NULL);
}

/* Hands a request frame to the handler: operation op (code for NonReplicated), body b (freed here). */
static void call_forward(struct http_call *c, uint8_t op, uint32_t code, struct wire_buf *b)
{
	static uint8_t empty[1];
	if (wire_buf_error(b) != 0 || b->len > FRAME_MAX_SIZE - FRAME_HEADER_SIZE) {
		uint32_t e = wire_buf_error(b) == -ENOMEM ? PROTO_E_ERROR : PROTO_E_INVALID_FORMAT;
		wire_buf_free(b);
		http__call_error(c, e);
		return;
	}
	struct frame_request h = {0};
	h.size = (uint32_t)(FRAME_HEADER_SIZE + b->len);
	h.client = c->client;
	h.operation = op;
	h.code = op == FRAME_OP_NON_REPLICATED ? code : 0;
	h.request = op == FRAME_OP_REGISTER ? 0 : 1;
	h.session = op == FRAME_OP_REGISTER ? 0 : (c->session != 0 ? c->session : 1);
	if (c->srv->closing) {
		/* The second frame of a raw-PAT call after the close: this request never reached the server. */
		wire_buf_free(b);
		http__call_error(c, 58);
		return;
	}
	/* One frame out at a time: the PAT login's reply is handled before the request's own frame. */
	assert(!c->waiting && !c->has_reply && c->opened);
	c->waiting = true;
	c->srv->h.on_frame(c, &h, b->p != NULL ? b->p : empty, b->len);
	wire_buf_free(b);
}

int http_call_send(struct http_call *c, const struct http_piece *pieces, size_t n, void (*done)(void *arg, int status),
		   void *arg)
{
	struct http_server *s = c->srv;
	size_t total = 0;
	int st = 0;
	for (size_t i = 0; i < n; i++)
		total += pieces[i].len;
	uint8_t *buf = malloc(total > 0 ? total : 1);
	if (buf == NULL)
		st = -ENOMEM;
	for (size_t i = 0, at = 0; st == 0 && i < n; i++) {
		const struct http_piece *p = &pieces[i];
		if (p->mem != NULL) {
			memcpy(buf + at, p->mem, p->len);
			at += p->len;
			continue;
		}
		for (size_t got = 0; got < p->len;) {
			ssize_t r = pread(p->fd, buf + at + got, p->len - got, (off_t)(p->off + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				st = r < 0 ? -errno : -EIO;
				break;
			}
			got += (size_t)r;
		}
		at += p->len;
	}
	if (st != 0) {
		free(buf);
		buf = NULL;
		total = 0;
	}
	if (c->has_reply) {
		/* A second reply to one request: keep the first. */
		free(buf);
		done(arg, -EPROTO);
		return 0;
	}
	c->reply = buf;
	c->reply_len = total;
	c->has_reply = true;
	list_push(&s->ready, &c->ready_link);
	if (!s->closing)
		uv_idle_start(&s->idle, on_idle);
	done(arg, st);
	return 0;
}

void http_call_set_data(struct http_call *c, void *data)
{
	c->data = data;
}

void *http_call_get_data(const struct http_call *c)
{
	return c->data;
}

uint32_t http_call_id(const struct http_call *c)
{
	return c->id;
}

const char *http_call_peer(const struct http_call *c)
{
	return c->peer;
}

struct http_server *http_call_server(const struct http_call *c)
{
	return c->srv;
}

/* ---- Local routes ---- */

static void local_metrics(struct http_call *c)
{
	char *text = NULL;
	size_t len = 0;
	if (c->srv->opts.metrics == NULL) {
		http__call_error(c, HTTP_E_NOT_IMPLEMENTED);
		return;
	}
	if (c->srv->opts.metrics(c->srv->opts.log_ud, &text, &len) != 0 || text == NULL) {
		free(text);
		http__call_error(c, PROTO_E_ERROR);
		return;
	}
	http__call_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL, NULL);
	free(text);
}

static void local_health(struct http_call *c, bool ready)
{
	char *text = NULL;
	size_t len = 0;
	int status;
	if (c->srv->opts.health == NULL) {
		static const char live[] = "{\"live\":true}", not_ready[] = "{\"ready\":false}";
		http__call_respond(c, ready ? 503 : 200, "application/json", ready ? not_ready : live,
			     ready ? sizeof(not_ready) - 1 : sizeof(live) - 1, NULL, NULL);
		return;
	}
	status = c->srv->opts.health(c->srv->opts.log_ud, ready, &text, &len);
	if ((status != 200 && status != 503) || text == NULL) {
		free(text);
		http__call_error(c, PROTO_E_ERROR);
		return;
	}
	http__call_respond(c, status, "application/json", text, len, NULL, NULL);
	free(text);
}

static void local_health_live(struct http_call *c)
{
	local_health(c, false);
}

static void local_health_ready(struct http_call *c)
{
	local_health(c, true);
}

/* ---- Routes ---- */

typedef uint32_t (*build_fn)(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);

enum route_auth {
	AUTH_NONE,       /* /ping and the logins */
	AUTH_BEARER,     /* Authorization: Bearer <JWT or PAT> */
	AUTH_BODY_TOKEN, /* a JWT in the body's "token" (refresh) */
	AUTH_METRICS,    /* /metrics: AUTH_BEARER with http_opts.metrics_auth, else AUTH_NONE */
};

struct http_route {
	const char *method;
	const char *path;  /* '/'-separated; a "*" segment is a parameter */
	enum route_auth auth;
	bool json;         /* needs a JSON object body */
	build_fn build;    /* the binary request; NULL with `local` */
	void (*reply)(struct http_call *c, const uint8_t *p, size_t n); /* NULL: ok_status, empty body */
	int ok_status;
	void (*local)(struct http_call *c); /* answered here instead of by a frame */
};

static const struct http_route routes[] = {
	{"GET", "/ping", AUTH_NONE, false, http__req_ping, http__reply_pong, 200, NULL},
	{"GET", "/stats", AUTH_BEARER, false, http__req_stats, http__reply_stats, 200, NULL},
	{"GET", "/cluster/metadata", AUTH_BEARER, false, http__req_cluster, http__reply_cluster, 200, NULL},
	{"GET", "/metrics", AUTH_METRICS, false, NULL, NULL, 200, local_metrics},
	{"GET", "/health/live", AUTH_NONE, false, NULL, NULL, 200, local_health_live},
	{"GET", "/health/ready", AUTH_NONE, false, NULL, NULL, 200, local_health_ready},
	{"GET", "/clients", AUTH_BEARER, false, http__req_clients, http__reply_clients, 200, NULL},
	{"GET", "/clients/*", AUTH_BEARER, false, http__req_client, http__reply_client, 200, NULL},
	{"GET", "/options/*", AUTH_BEARER, false, http__req_options, http__reply_options, 200, NULL},
	{"POST", "/snapshot", AUTH_BEARER, true, http__req_snapshot, http__reply_snapshot, 200, NULL},
	{"POST", "/users/login", AUTH_NONE, true, http__req_login, http__reply_login, 200, NULL},
	{"POST", "/users/refresh-token", AUTH_BODY_TOKEN, true, http__req_me, http__reply_refresh, 200, NULL},
	{"DELETE", "/users/logout", AUTH_BEARER, false, http__req_logout, http__reply_logout, 204, NULL},
	{"POST", "/personal-access-tokens/login", AUTH_NONE, true, http__req_pat_login, http__reply_login, 200, NULL},
	{"GET", "/personal-access-tokens", AUTH_BEARER, false, http__req_pats, http__reply_pats, 200, NULL},
	{"POST", "/personal-access-tokens", AUTH_BEARER, true, http__req_create_pat, http__reply_pat_created, 200, NULL},
	{"DELETE", "/personal-access-tokens/*", AUTH_BEARER, false, http__req_delete_pat, NULL, 204, NULL},
	{"GET", "/users", AUTH_BEARER, false, http__req_users, http__reply_users, 200, NULL},
	{"POST", "/users", AUTH_BEARER, true, http__req_create_user, http__reply_user, 200, NULL},
	{"GET", "/users/*", AUTH_BEARER, false, http__req_user, http__reply_user, 200, NULL},
	{"PUT", "/users/*", AUTH_BEARER, true, http__req_update_user, NULL, 204, NULL},
	{"DELETE", "/users/*", AUTH_BEARER, false, http__req_delete_user, NULL, 204, NULL},
	{"PUT", "/users/*/password", AUTH_BEARER, true, http__req_password, NULL, 204, NULL},
	{"PUT", "/users/*/permissions", AUTH_BEARER, true, http__req_permissions, NULL, 204, NULL},
	{"GET", "/streams", AUTH_BEARER, false, http__req_streams, http__reply_streams, 200, NULL},
	{"POST", "/streams", AUTH_BEARER, true, http__req_create_stream, http__reply_stream, 200, NULL},
	{"GET", "/streams/*", AUTH_BEARER, false, http__req_stream, http__reply_stream, 200, NULL},
	{"PUT", "/streams/*", AUTH_BEARER, true, http__req_update_stream, NULL, 204, NULL},
	{"DELETE", "/streams/*", AUTH_BEARER, false, http__req_delete_stream, NULL, 204, NULL},
	{"DELETE", "/streams/*/purge", AUTH_BEARER, false, http__req_purge_stream, NULL, 204, NULL},
	{"GET", "/streams/*/topics", AUTH_BEARER, false, http__req_topics, http__reply_topics, 200, NULL},
	{"POST", "/streams/*/topics", AUTH_BEARER, true, http__req_create_topic, http__reply_topic, 200, NULL},
	{"GET", "/streams/*/topics/*", AUTH_BEARER, false, http__req_topic, http__reply_topic, 200, NULL},
	{"PUT", "/streams/*/topics/*", AUTH_BEARER, true, http__req_update_topic, NULL, 204, NULL},
	{"DELETE", "/streams/*/topics/*", AUTH_BEARER, false, http__req_delete_topic, NULL, 204, NULL},
	{"DELETE", "/streams/*/topics/*/purge", AUTH_BEARER, false, http__req_purge_topic, NULL, 204, NULL},
	{"POST", "/streams/*/topics/*/partitions", AUTH_BEARER, true, http__req_create_partitions, NULL, 200, NULL},
	{"DELETE", "/streams/*/topics/*/partitions", AUTH_BEARER, false, http__req_delete_partitions, NULL, 204, NULL},
	{"DELETE", "/streams/*/topics/*/partitions/*", AUTH_BEARER, false, http__req_delete_segments, NULL, 204, NULL},
	{"GET", "/streams/*/topics/*/consumer-groups", AUTH_BEARER, false, http__req_groups, http__reply_groups, 200, NULL},
	{"POST", "/streams/*/topics/*/consumer-groups", AUTH_BEARER, true, http__req_create_group, http__reply_group, 200, NULL},
	{"GET", "/streams/*/topics/*/consumer-groups/*", AUTH_BEARER, false, http__req_group, http__reply_group, 200, NULL},
	{"DELETE", "/streams/*/topics/*/consumer-groups/*", AUTH_BEARER, false, http__req_delete_group, NULL, 204, NULL},
	{"POST", "/streams/*/topics/*/messages", AUTH_BEARER, true, http__req_send, http__reply_sent, 201, NULL},
	{"GET", "/streams/*/topics/*/messages", AUTH_BEARER, false, http__req_poll, http__reply_polled, 200, NULL},
	{"GET", "/streams/*/topics/*/consumer-offsets", AUTH_BEARER, false, http__req_get_offset, http__reply_offset, 200, NULL},
	{"PUT", "/streams/*/topics/*/consumer-offsets", AUTH_BEARER, true, http__req_store_offset, NULL, 204, NULL},
	{"DELETE", "/streams/*/topics/*/consumer-offsets/*", AUTH_BEARER, false, http__req_delete_offset, NULL, 204, NULL},
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/* Whether a path (without its query) matches a pattern; the parameters' raw spans go to seg/seg_len. */
static bool route_match(const char *pattern, const char *path, size_t len, const char **seg, size_t *seg_len,
			int *nseg)
{
	const char *p = pattern;
	size_t i = 0;
	*nseg = 0;
	while (*p != '\0') {
		if (*p != '/' || i >= len || path[i] != '/')
			return false;
		p++;
		i++;
		const char *pe = strchr(p, '/');
		size_t pl = pe != NULL ? (size_t)(pe - p) : strlen(p);
		size_t j = i;
		while (j < len && path[j] != '/')
			j++;
		if (pl == 1 && p[0] == '*') {
			if (j == i || *nseg >= MAX_PARAMS)
				return false;
			seg[*nseg] = path + i;
			seg_len[(*nseg)++] = j - i;
		} else if (pl != j - i || memcmp(p, path + i, pl) != 0) {
			return false;
		}
		p += pl;
		i = j;
	}
	return i == len;
}

/* ---- The life of a call ---- */

static void call_main(struct http_call *c)
{
	const struct http_route *rt = c->route;
	c->stage = STAGE_MAIN;
	if (rt->local != NULL) {
		rt->local(c);
		return;
	}
	struct wire_buf b;
	uint8_t op = 0;
	uint32_t code = 0;
	wire_buf_init(&b);
	uint32_t e = rt->build(c, &b, &op, &code);
	if (e != 0) {
		wire_buf_free(&b);
		http__call_error(c, e);
		return;
	}
	call_forward(c, op, code, &b);
	if (c->early_status != 0 && c->waiting)
		http__call_ok_empty(c, c->early_status);
}

/* A reply frame arrived for the call: convert it (called from the idle callback). */
static void call_on_reply(struct http_call *c)
{
	uint8_t *f = c->reply;
	size_t n = c->reply_len;
	uint32_t err = 0;
	uint8_t reason = 0;
	const uint8_t *body = NULL;
	size_t blen = 0;
	c->reply = NULL;
	if (f == NULL || n < FRAME_HEADER_SIZE) {
		err = PROTO_E_ERROR;
	} else if (frame_peek_command(f) == FRAME_CMD_EVICTION) {
		struct frame_eviction ev;
		reason = frame_eviction_decode(f, &ev) == 0 ? ev.reason : FRAME_EVICT_SESSION_ERROR;
	} else {
		struct frame_reply r;
		if (frame_reply_decode(f, &r) != 0 || r.size != n) {
			err = PROTO_E_ERROR;
		} else if (r.status != 0) {
			err = r.status;
		} else {
			body = f + FRAME_HEADER_SIZE;
			blen = n - FRAME_HEADER_SIZE;
			if (frame_op_is_result_framed(r.operation, blen > 0)) {
				uint32_t re;
				size_t off;
				if (frame_result_split(body, blen, &re, &off) != 0)
					err = PROTO_E_INVALID_COMMAND;
				else if (re != 0)
					err = re;
				else {
					body += off;
					blen -= off;
				}
			}
		}
	}
	if (c->stage == STAGE_PAT) {
		uint64_t session;
		if (reason != 0)
			err = reason == FRAME_EVICT_USER_INACTIVE ? PROTO_E_UNAUTHENTICATED : PROTO_E_INVALID_PERSONAL_ACCESS_TOKEN;
		if (err == 0 && !http__parse_login(body, blen, &c->user_id, &session))
			err = PROTO_E_ERROR;
		if (err != 0) {
			http__call_error(c, err);
		} else {
			c->session = session;
			c->authenticated = true;
			call_main(c);
		}
	} else if (c->stage == STAGE_MAIN) {
		c->stage = STAGE_DONE;
		if (reason != 0)
			http__call_error(c, http__evict_error(reason));
		else if (err != 0)
			http__call_error(c, err);
		else if (c->route->reply != NULL)
			c->route->reply(c, body, blen);
		else
			http__call_ok_empty(c, c->route->ok_status);
	}
	free(f);
	call_maybe_end(c);
}

static void on_idle(uv_idle_t *h)
{
	struct http_server *s = h->data;
	while (!list_empty(&s->ready)) {
		struct http_call *c = container_of(s->ready.next, struct http_call, ready_link);
		assert(c->has_reply); /* on the ready list exactly while a reply is held */
		list_remove(&c->ready_link);
		c->has_reply = false;
		c->waiting = false;
		call_on_reply(c);
	}
	uv_idle_stop(h);
}

/* The token of "Authorization: Bearer <token>" (a malloc'd copy), or NULL. */
static char *bearer_token(h2o_req_t *req)
{
	ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
	if (i < 0)
		return NULL;
	h2o_iovec_t v = req->headers.entries[i].value;
	if (v.len < 7 || strncasecmp(v.base, "Bearer ", 7) != 0)
		return NULL;
	size_t at = 7;
	while (at < v.len && v.base[at] == ' ')
		at++;
	size_t end = v.len;
	while (end > at && v.base[end - 1] == ' ')
		end--;
	return end > at ? strndup(v.base + at, end - at) : NULL;
}

/* Authenticates the call as its route asks, opens its session, and sends its first frame. */
static void call_start(struct http_call *c)
{
	struct http_server *s = c->srv;
	const struct http_route *rt = c->route;
	uint32_t uid = 0;
	bool jwt = false;
	enum route_auth auth = rt->auth;
	if (auth == AUTH_METRICS)
		auth = s->opts.metrics_auth ? AUTH_BEARER : AUTH_NONE;
	if (auth == AUTH_BEARER) {
		c->bearer = bearer_token(c->req);
		if (c->bearer == NULL) {
			http__call_error(c, PROTO_E_ACCESS_TOKEN_MISSING);
			return;
		}
		if (strchr(c->bearer, '.') != NULL) {
			if (jwt_verify(&s->jwt, c->bearer, &uid, c->jti, &c->jwt_exp) != 0) {
				http__call_error(c, PROTO_E_INVALID_ACCESS_TOKEN);
				return;
			}
			jwt = c->bearer_is_jwt = true;
		} else if (strlen(c->bearer) > 255) {
			http__call_error(c, PROTO_E_INVALID_PERSONAL_ACCESS_TOKEN);
			return;
		}
	} else if (auth == AUTH_BODY_TOKEN) {
		const char *tok;
		size_t n;
		if (http__j_str(c->json, "token", &tok, &n) != 0 ||
		    jwt_verify(&s->jwt, tok, &uid, c->jti, &c->jwt_exp) != 0) {
			http__call_error(c, PROTO_E_INVALID_ACCESS_TOKEN);
			return;
		}
		jwt = true;
	}
	if (s->h.on_open(c) != 0) {
		http__call_error(c, 58);
		return;
	}
	c->opened = true;
	if (jwt) {
		if (s->h.on_auth(c, uid) != 0) {
			http__call_error(c, PROTO_E_INVALID_ACCESS_TOKEN);
			return;
		}
		c->user_id = uid;
		c->authenticated = true;
		call_main(c);
	} else if (auth == AUTH_BEARER) {
		struct wire_buf b;
		wire_buf_init(&b);
		http__put_pat_register(&b, c->bearer, strlen(c->bearer));
		c->stage = STAGE_PAT;
		call_forward(c, FRAME_OP_REGISTER, 0, &b);
	} else {
		call_main(c);
	}
}

static void anchor_dispose(void *p)
{
	struct http_anchor *a = p;
	struct http_call *c = a->call;
	if (c == NULL)
		return;
	c->anchor = NULL;
	c->req = NULL;
	call_maybe_end(c);
}

static void peer_name(h2o_req_t *req, char *out, size_t n)
{
	struct sockaddr_storage ss;
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	snprintf(out, n, "unknown");
	if (req->conn->callbacks->get_peername == NULL ||
	    req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) == 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		port = ntohs(a->sin_port);
		snprintf(out, n, "%s:%d", host, port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		port = ntohs(a->sin6_port);
		snprintf(out, n, "[%s]:%d", host, port);
	}
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	struct http_server *s = ((struct http_h2o_handler *)self)->srv;
	struct http_call *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		h2o_send_error_generic(req, 500, "Internal Server Error", "out of memory", 0);
		return 0;
	}
	c->srv = s;
	c->req = req;
	if (++s->next_call == 0)
		s->next_call = 1;
	c->id = s->next_call;
	c->client = (struct frame_u128){.lo = (uint64_t)c->id << 32 | 1u, .hi = s->client_hi};
	list_init(&c->ready_link);
	list_push(&s->calls, &c->link);
	c->anchor = h2o_mem_alloc_shared(&req->pool, sizeof(*c->anchor), anchor_dispose);
	c->anchor->call = c;
	peer_name(req, c->peer, sizeof(c->peer));

	size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
	const char *path = req->path.base;
	if (plen > 1 && path[plen - 1] == '/')
		plen--;
	if (req->query_at != SIZE_MAX)
		c->query = strndup(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
	const char *seg[MAX_PARAMS];
	size_t seg_len[MAX_PARAMS];
	int nseg = 0;
	bool path_known = false;
	for (size_t i = 0; i < N_ROUTES && c->route == NULL; i++) {
		if (!route_match(routes[i].path, path, plen, seg, seg_len, &nseg))
			continue;
		path_known = true;
		if (h2o_memis(req->method.base, req->method.len, routes[i].method, strlen(routes[i].method)))
			c->route = &routes[i];
	}
	if (s->closing || s->draining) {
		http__call_error(c, 58); /* true: nothing of it reached the server */
	} else if (c->route == NULL) {
		if (path_known) {
			c->no_view = true;
			http__call_respond(c, 405, "text/plain; charset=utf-8", "method not allowed", 18, NULL, NULL);
		} else {
			http__call_error(c, HTTP_E_NOT_FOUND);
		}
	} else {
		c->no_view = c->route->build == http__req_ping;
		for (int i = 0; i < nseg; i++) {
			c->params[i] = http__pct_decode(seg[i], seg_len[i], false, &c->param_len[i]);
			if (c->params[i] == NULL)
				break;
			c->n_params = i + 1;
		}
		json_error_t jerr;
		if (c->n_params != nseg) {
			http__call_error(c, PROTO_E_ERROR);
		} else if (c->route->json &&
			   ((c->json = http__json_load_body(req->entity.base != NULL ? req->entity.base : "",
							    req->entity.len, &jerr)) == NULL ||
			    !json_is_object(c->json))) {
			http__call_error(c, PROTO_E_INVALID_FORMAT);
		} else {
			call_start(c);
		}
	}
	call_maybe_end(c);
	return 0;
}

/* ---- Listener ---- */

void http_opts_default(struct http_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_request_size = 2u * 1024 * 1024;
	o->token_ttl_s = 3600;
}

static void server_maybe_free(struct http_server *s)
{
	if (!s->closing || s->open_handles > 0 || !list_empty(&s->socks))
		return;
	if (s->ctx_ready) {
		/* Linked by h2o_context_request_shutdown (the drain); h2o_context_dispose wants none left. */
		if (h2o_timeout_is_linked(&s->ctx.http2._graceful_shutdown_timeout))
			h2o_timeout_unlink(&s->ctx.http2._graceful_shutdown_timeout);
		h2o_context_dispose(&s->ctx);
	}
	h2o_config_dispose(&s->config);
	if (s->opts.ssl_ctx != NULL)
		SSL_CTX_free(s->opts.ssl_ctx);
	jwt_free(&s->jwt);
	free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct http_server *s = h->data;
	s->open_handles--;
	server_maybe_free(s);
}

static void on_sock_closed(uv_handle_t *h)
{
	struct http_sock *hs = container_of((uv_tcp_t *)h, struct http_sock, tcp);
	struct http_server *s = hs->srv;
	list_remove(&hs->link);
	free(hs);
	server_maybe_free(s);
}

static void on_accept(uv_stream_t *listener, int status)
{
	struct http_server *s = listener->data;
	if (status < 0 || s->closing)
		return;
	struct http_sock *hs = calloc(1, sizeof(*hs));
	if (hs == NULL)
		return;
	hs->srv = s;
	list_init(&hs->link);
	if (uv_tcp_init(s->loop, &hs->tcp) != 0) {
		free(hs);
		return;
	}
	list_push(&s->socks, &hs->link);
	if (uv_accept(listener, (uv_stream_t *)&hs->tcp) != 0) {
		uv_close((uv_handle_t *)&hs->tcp, on_sock_closed);
		return;
	}
	uv_tcp_nodelay(&hs->tcp, 1);
	h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&hs->tcp, on_sock_closed);
	h2o_accept(&s->accept_ctx, sock);
}

int http_server_new(uv_loop_t *loop, const struct http_opts *opts, const struct http_handler *h, void *ud,
		    struct http_server **out)
{
	struct sockaddr_storage addr;
	socklen_t alen;
	if (opts->address == NULL || tcp_addr_parse(opts->address, &addr, &alen) != 0 || opts->max_request_size == 0 ||
	    h->on_open == NULL || h->on_auth == NULL || h->on_frame == NULL || h->on_close == NULL)
		return -EINVAL;
	struct http_server *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->opts = *opts;
	s->opts.address = NULL; /* the caller's string may go */
	if (s->opts.token_ttl_s == 0)
		s->opts.token_ttl_s = 3600;
	s->h = *h;
	s->ud = ud;
	list_init(&s->socks);
	list_init(&s->calls);
	list_init(&s->ready);
	if (jwt_init(&s->jwt, opts->jwt_secret, s->opts.token_ttl_s) != 0) {
		free(s);
		return -EIO;
	}
	uint8_t hi[8];
	if (RAND_bytes(hi, sizeof(hi)) != 1) {
		free(s);
		return -EIO;
	}
	s->client_hi = frame_le64(hi) | 1u;

	h2o_config_init(&s->config);
	s->config.max_request_entity_size = opts->max_request_size;
	s->config.server_name = h2o_iovec_init(H2O_STRLIT("galgo"));
	h2o_hostconf_t *host = h2o_config_register_host(&s->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
	struct http_h2o_handler *hh = (struct http_h2o_handler *)h2o_create_handler(path, sizeof(*hh));
	hh->super.on_req = on_req;
	hh->srv = s;
	h2o_context_init(&s->ctx, loop, &s->config);
	s->ctx_ready = true;
	s->accept_ctx.ctx = &s->ctx;
	s->accept_ctx.hosts = s->config.hosts;
	if (opts->ssl_ctx != NULL) {
		/*
		 * h2o's list is h2 (and its drafts) only: a client offering just http/1.1 gets no ALPN answer,
		 * which h2o takes as HTTP/1.1, so both are served.
		 */
		SSL_CTX_up_ref(opts->ssl_ctx);
		h2o_ssl_register_alpn_protocols(opts->ssl_ctx, h2o_http2_alpn_protocols);
		/*
		 * No close_notify when h2o closes a TLS connection. h2o 2.2 sends it with a write whose failure
		 * it never reports when libuv refuses the write at once, which it does after a read error such as
		 * a reset by the peer: the socket then stayed open for good, and a shutdown waited for it forever
		 * (a client that negotiated h2 and reset the connection). HTTP frames its own messages (lengths,
		 * chunks, h2 frames), so a missing close_notify truncates nothing unnoticed.
		 */
		SSL_CTX_set_quiet_shutdown(opts->ssl_ctx, 1);
		s->accept_ctx.ssl_ctx = opts->ssl_ctx;
	}

	int rc = uv_tcp_init(loop, &s->listener);
	if (rc != 0) {
		s->closing = true;
		server_maybe_free(s);
		return rc;
	}
	s->listener.data = s;
	s->idle.data = s;
	uv_idle_init(loop, &s->idle);
	s->open_handles = 2;
	rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, 511, on_accept);
	if (rc == 0) {
		struct sockaddr_storage bound;
		int blen = sizeof(bound);
		rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
		s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
						      : ntohs(((struct sockaddr_in *)&bound)->sin_port);
	}
	if (rc != 0) {
		s->closing = true;
		uv_close((uv_handle_t *)&s->listener, on_handle_closed);
		uv_close((uv_handle_t *)&s->idle, on_handle_closed);
		return rc;
	}
	s->listening = true;
	*out = s;
	return 0;
}

int http_server_port(const struct http_server *s)
{
	return s->port;
}

void *http_server_data(const struct http_server *s)
{
	return s->ud;
}

static void server_close_listener(struct http_server *s)
{
	if (s->listener_closed)
		return;
	s->listener_closed = true;
	uv_close((uv_handle_t *)&s->listener, on_handle_closed);
}

void http_server_drain(struct http_server *s)
{
	if (s->closing || s->draining)
		return;
	s->draining = true;
	server_close_listener(s);
	/* Idle HTTP/1.1 connections close, h2 ones get a GOAWAY; the requests they carry are answered. */
	h2o_context_request_shutdown(&s->ctx);
	http__log(s, HTTP_LOG_INFO, "draining: listener closed, new requests answered 58");
}

size_t http_server_calls(const struct http_server *s)
{
	size_t n = 0;
	for (const struct link *l = s->calls.next; l != &s->calls; l = l->next)
		n++;
	return n;
}

void http_server_close(struct http_server *s)
{
	s->closing = true;
	uv_idle_stop(&s->idle);
	/* Replies already here are answered as they say (a second frame a call would need is not sent). */
	on_idle(&s->idle);
	while (!list_empty(&s->calls)) {
		struct http_call *c = container_of(s->calls.next, struct http_call, link);
		/*
		 * Its frame reached the server and no reply came: it may still take effect (a send submitted
		 * to Raft commits), so the answer is error 1, never 58 ("not admitted, retry").
		 */
		if (c->waiting && c->req != NULL)
			http__call_error(c, PROTO_E_ERROR);
		c->waiting = false;
		if (c->opened) {
			c->opened = false;
			s->h.on_close(c);
		}
		call_free(c);
	}
	server_close_listener(s);
	uv_close((uv_handle_t *)&s->idle, on_handle_closed);
	for (struct link *l = s->socks.next; l != &s->socks; l = l->next) {
		struct http_sock *hs = container_of(l, struct http_sock, link);
		uv_os_fd_t fd;
		if (uv_fileno((uv_handle_t *)&hs->tcp, &fd) == 0)
			shutdown(fd, SHUT_RDWR);
	}
}
