/*
 * http — the HTTP REST API (see http.h for the behaviour).
 *
 * Routes and their binary requests (reference §6 and §2.2; {s} {t} {g} {u} are identifiers: all
 * digits = numeric id, else a name; a path segment is percent-decoded):
 *
 *   GET    /ping                                   Ping (NR 1)                 200 text "pong"
 *   GET    /stats                                  GetStats (NR 10)            Stats
 *   GET    /cluster/metadata                       GetClusterMetadata (NR 12)  ClusterMetadata
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
 *
 * JSON of the responses (numbers are unsigned decimal, u64 and u128 written exactly; timestamps are
 * µs since the epoch; sizes are bytes):
 *   Stream         {id, created_at, name, size, messages_count, topics_count}; StreamDetails adds
 *                  topics: [Topic].
 *   Topic          {id, created_at, name, size, message_expiry, compression_algorithm ("none"|"gzip"),
 *                  max_topic_size, replication_factor (1), messages_count, partitions_count, options};
 *                  options is {key: {"value": string, "explicit": bool}} from the header's explicit and
 *                  derived option blocks. TopicDetails adds partitions: [{id, created_at,
 *                  segments_count, current_offset, size, messages_count}].
 *   UserInfo       {id, created_at, status ("active"|"inactive"), username}; UserInfoDetails adds
 *                  permissions: null or {global: {manage_servers, read_servers, manage_users,
 *                  read_users, manage_streams, read_streams, manage_topics, read_topics,
 *                  poll_messages, send_messages}, streams: null or {"<id>": {manage_stream,
 *                  read_stream, manage_topics, read_topics, poll_messages, send_messages, topics: null or
 *                  {"<id>": {manage_topic, read_topic, poll_messages, send_messages}}}}}.
 *   ConsumerGroup  {id, name, partitions_count, members_count}; details add members: [{id,
 *                  partitions_count, partitions: [u32]}].
 *   PolledMessages {partition_id, current_offset, count, messages: [{header: {checksum, id, offset,
 *                  timestamp, origin_timestamp, user_headers_length, payload_length, reserved},
 *                  payload: base64, user_headers: [UserHeader] or null when the message has none}]};
 *                  timestamp is the batch's base
 *                  timestamp, origin_timestamp the batch's plus the message's delta.
 *   UserHeader     {"key": {"kind": K, "value": base64}, "value": {"kind": K, "value": base64}}, K one
 *                  of raw, string, bool, int8, int16, int32, int64, int128, uint8, uint16, uint32,
 *                  uint64, uint128, float32, float64 (reference §2.3 value kinds 1..15).
 *   IdentityInfo   {user_id, access_token: {token, expiry (the token's exp, seconds since the epoch)}}.
 *   Stats, ClusterMetadata, ClientInfo: the fields of reference §2.4.12, §2.4.13 and §2.4.9 by name.
 *
 * JSON of the requests (unknown fields are ignored; a missing required field or a value of the wrong
 * type is a 400 with id 4 invalid_format; u64 values may also be given as decimal strings):
 *   login {username, password}; PAT login and refresh {token}; streams {name}; topics {name,
 *   partitions_count, compression_algorithm?, message_expiry?, max_topic_size?, options?: {key: string
 *   or {"value": string}}} (the named fields become the topic options of the binary request: strings
 *   are sent as String, message_expiry, max_topic_size, segment_size,
 *   size_of_messages_required_to_save and dedup_window as Uint64, messages_required_to_save as Uint32,
 *   enforce_fsync and preallocate_segments as Bool); partitions {partitions_count}; groups {name};
 *   users {username, password, status?, permissions?}, {username?, status?}, {current_password,
 *   new_password}, {permissions}; PATs {name, expiry?}; offsets {consumer_id, consumer_kind?,
 *   partition_id?, offset}; messages {partitioning?: {kind: "balanced"|"partition_id"|"messages_key",
 *   value: base64 (or a number for partition_id)}, messages: [{id?: 0 | number | decimal or hex
 *   string or UUID, payload: base64, user_headers?: [UserHeader]}]}. A message id of 0 is replaced by
 *   a random UUIDv4, as the reference's HTTP path does. Poll query: consumer_id (default 0),
 *   consumer_kind (consumer|consumer_group), partition_id (absent: none), kind
 *   (offset|timestamp|first|last|next, default offset), value (default 0), count (default 10),
 *   auto_commit (true|false).
 */
#include "transport/http.h"
#include "transport/list.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <xxhash.h>

#include "transport/tcp.h"
#include "transport/wire.h"

#define JWT_ISSUER "iggy.apache.org"
#define SDK_NAME "galgo-http"
#define SDK_VERSION "0.1.0"
#define MAX_PARAMS 4
#define POLL_DEFAULT_COUNT 10
#define BATCH_HEADER_SIZE 256
#define MSG_HEADER_SIZE 48

/* Iggy error codes this file produces itself (the others come from the server's replies). */
enum {
	E_ERROR = 1,
	E_INVALID_COMMAND = 3,
	E_INVALID_FORMAT = 4,
	E_FEATURE_UNAVAILABLE = 5,
	E_INVALID_IDENTIFIER = 6,
	E_RESOURCE_NOT_FOUND = 20,
	E_STALE_CLIENT = 30,
	E_UNAUTHENTICATED = 40,
	E_INVALID_CREDENTIALS = 42,
	E_INVALID_PAT = 53,
	E_ACCESS_TOKEN_MISSING = 77,
	E_INVALID_ACCESS_TOKEN = 78,
	E_NOT_FOUND = 404,        /* the reference listener's generic "not_found" */
	E_NOT_IMPLEMENTED = 501,  /* a route this listener does not serve */
	E_STREAM_NOT_FOUND = 1009,
	E_STREAM_NAME_NOT_FOUND = 1010,
	E_TOPIC_NOT_FOUND = 2010,
	E_TOPIC_NAME_NOT_FOUND = 2011,
	E_OFFSET_NOT_FOUND = 3021,
	E_GROUP_NOT_FOUND = 5000,
	E_GROUP_NAME_NOT_FOUND = 5003,
	E_INCOMPATIBLE_PROTOCOL = 14003,
};


/* ---- Server, connections and calls ---- */

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

/* A revoked access token: refused until it expires. */
struct revoked {
	struct link link;
	char jti[33];
	uint64_t exp;
};

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
	struct link revoked;        /* struct revoked */
	uint8_t secret[64];
	size_t secret_len;
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

/* ---- Logging ---- */

static void http_log(struct http_server *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void http_log(struct http_server *s, int level, const char *fmt, ...)
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

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- Base64 ---- */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes with the given alphabet; `pad` adds '=' to a multiple of 4. Writes a NUL after. */
static size_t b64_encode(const uint8_t *in, size_t n, char *out, const char *alpha, bool pad)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = alpha[v >> 18];
		out[o++] = alpha[(v >> 12) & 63];
		out[o++] = alpha[(v >> 6) & 63];
		out[o++] = alpha[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = alpha[v >> 18];
		out[o++] = alpha[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = alpha[(v >> 6) & 63];
		else if (pad)
			out[o++] = '=';
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

size_t http_b64_encode(const uint8_t *in, size_t n, char *out)
{
	return b64_encode(in, n, out, b64_std, true);
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

long http_b64_decode(const char *in, size_t n, uint8_t *out)
{
	while (n > 0 && in[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return -EINVAL;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(in[i]);
		if (v < 0)
			return -EINVAL;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return (long)o;
}

/* ---- JSON output ---- */

/*
 * A JSON writer on a wire_buf: it places the commas itself. Numbers are written exactly (u64 and
 * u128 too, which jansson cannot hold).
 */
struct jw {
	struct wire_buf b;
	bool comma; /* the next value or key needs a comma before it */
};

static void jw_init(struct jw *w)
{
	wire_buf_init(&w->b);
	w->comma = false;
}

static void jw_raw(struct jw *w, const char *s, size_t n)
{
	wire_put_bytes(&w->b, s, n);
}

static void jw_sep(struct jw *w)
{
	if (w->comma)
		jw_raw(w, ",", 1);
	w->comma = true;
}

static void jw_open(struct jw *w, char c)
{
	jw_sep(w);
	jw_raw(w, &c, 1);
	w->comma = false;
}

static void jw_close(struct jw *w, char c)
{
	jw_raw(w, &c, 1);
	w->comma = true;
}

static void jw_strn(struct jw *w, const char *s, size_t n)
{
	jw_sep(w);
	jw_raw(w, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			jw_raw(w, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jw_raw(w, esc, 6);
		} else {
			jw_raw(w, (const char *)&c, 1);
		}
	}
	jw_raw(w, "\"", 1);
}

static void jw_str(struct jw *w, const char *s)
{
	jw_strn(w, s, strlen(s));
}

/* A key; the value that follows takes no comma. */
static void jw_key(struct jw *w, const char *k)
{
	jw_str(w, k);
	jw_raw(w, ":", 1);
	w->comma = false;
}

static void jw_u64(struct jw *w, uint64_t v)
{
	char n[24];
	jw_sep(w);
	jw_raw(w, n, (size_t)snprintf(n, sizeof(n), "%" PRIu64, v));
}

/* A u128 in decimal (by repeated division by 10^19). */
static void jw_u128(struct jw *w, uint64_t lo, uint64_t hi)
{
	unsigned __int128 v = (unsigned __int128)hi << 64 | lo;
	char d[48];
	int i = (int)sizeof(d);
	d[--i] = '\0';
	do {
		d[--i] = (char)('0' + (int)(v % 10));
		v /= 10;
	} while (v != 0);
	jw_sep(w);
	jw_raw(w, d + i, strlen(d + i));
}

static void jw_bool(struct jw *w, bool v)
{
	jw_sep(w);
	jw_raw(w, v ? "true" : "false", v ? 4 : 5);
}

static void jw_null(struct jw *w)
{
	jw_sep(w);
	jw_raw(w, "null", 4);
}

static void jw_b64(struct jw *w, const uint8_t *p, size_t n)
{
	char *s = malloc(4 * (n / 3 + 1) + 1);
	if (s == NULL) {
		w->b.err = -ENOMEM;
		return;
	}
	size_t len = http_b64_encode(p, n, s);
	jw_strn(w, s, len);
	free(s);
}

#define JW_KU64(w, k, v) (jw_key((w), (k)), jw_u64((w), (v)))
#define JW_KSTR(w, k, v) (jw_key((w), (k)), jw_str((w), (v)))
#define JW_KBOOL(w, k, v) (jw_key((w), (k)), jw_bool((w), (v)))

/* ---- Errors ---- */

struct http_err {
	uint32_t code;
	const char *name;
	const char *reason;
	const char *field;
};

static const struct http_err http_errs[] = {
	{E_ERROR, "error", "Error", NULL},
	{E_INVALID_COMMAND, "invalid_command", "Invalid command", NULL},
	{E_INVALID_FORMAT, "invalid_format", "Invalid format", NULL},
	{E_FEATURE_UNAVAILABLE, "feature_unavailable", "Feature is unavailable", NULL},
	{E_INVALID_IDENTIFIER, "invalid_identifier", "Invalid identifier", NULL},
	{E_RESOURCE_NOT_FOUND, "resource_not_found", "Resource not found", NULL},
	{E_STALE_CLIENT, "stale_client", "Stale client", NULL},
	{E_UNAUTHENTICATED, "unauthenticated", "Unauthenticated", NULL},
	{41, "unauthorized", "Unauthorized", NULL},
	{E_INVALID_CREDENTIALS, "invalid_credentials", "Invalid credentials", NULL},
	{43, "invalid_username", "Invalid username", "username"},
	{44, "invalid_password", "Invalid password", "password"},
	{46, "user_already_exists", "User already exists", "username"},
	{47, "user_inactive", "User is inactive", NULL},
	{48, "cannot_delete_user", "Cannot delete user", NULL},
	{49, "cannot_change_permissions", "Cannot change permissions", NULL},
	{51, "personal_access_token_already_exists", "Personal access token already exists", "name"},
	{52, "personal_access_tokens_limit_reached", "Personal access tokens limit reached", NULL},
	{E_INVALID_PAT, "invalid_personal_access_token", "Invalid personal access token", NULL},
	{56, "invalid_personal_access_token_expiry", "Invalid personal access token expiry", NULL},
	{57, "transient_not_committed", "Request not committed, retry", NULL},
	{58, "transient_not_accepted", "Request not accepted, retry", NULL},
	{E_ACCESS_TOKEN_MISSING, "access_token_missing", "Access token is missing", NULL},
	{E_INVALID_ACCESS_TOKEN, "invalid_access_token", "Invalid access token", NULL},
	{100, "client_not_found", "Client not found", "client_id"},
	{E_NOT_FOUND, "not_found", "Resource not found", NULL},
	{E_NOT_IMPLEMENTED, "not_implemented", "Not implemented by this server", NULL},
	{E_STREAM_NOT_FOUND, "stream_id_not_found", "Stream not found", "stream_id"},
	{E_STREAM_NAME_NOT_FOUND, "stream_name_not_found", "Stream not found", "stream_id"},
	{1012, "stream_name_already_exists", "Stream name already exists", "name"},
	{1020, "too_many_streams", "Too many streams", NULL},
	{E_TOPIC_NOT_FOUND, "topic_id_not_found", "Topic not found", "topic_id"},
	{E_TOPIC_NAME_NOT_FOUND, "topic_name_not_found", "Topic not found", "topic_id"},
	{2013, "topic_name_already_exists", "Topic name already exists", "name"},
	{2015, "too_many_partitions", "Too many partitions", NULL},
	{2019, "invalid_partitions_count", "Invalid partitions count", "partitions_count"},
	{2021, "too_many_topics", "Too many topics", NULL},
	{3007, "partition_not_found", "Partition not found", "partition_id"},
	{3008, "no_partitions", "No partitions", NULL},
	{3013, "partition_id_space_exhausted", "Partition id space exhausted", NULL},
	{E_OFFSET_NOT_FOUND, "consumer_offset_not_found", "Consumer offset not found", NULL},
	{4000, "segment_not_found", "Segment not found", "segment_id"},
	{4017, "too_big_user_headers", "User headers are too big", NULL},
	{4022, "too_big_message_payload", "Message payload is too big", NULL},
	{4024, "empty_message_payload", "Message payload is empty", NULL},
	{4027, "invalid_message_checksum", "Invalid message checksum", NULL},
	{4038, "invalid_message_timestamp_delta", "Invalid message timestamp delta", NULL},
	{4039, "invalid_batch_checksum", "Invalid batch checksum", NULL},
	{4041, "unsupported_option_key", "Unsupported option key", NULL},
	{4042, "invalid_option_value", "Invalid option value", NULL},
	{4043, "options_block_too_large", "Options block too large", NULL},
	{4100, "invalid_offset", "Invalid offset", "offset"},
	{4101, "invalid_reserved_field", "Invalid reserved field", NULL},
	{E_GROUP_NOT_FOUND, "consumer_group_id_not_found", "Consumer group not found", NULL},
	{E_GROUP_NAME_NOT_FOUND, "consumer_group_name_not_found", "Consumer group not found", NULL},
	{5004, "consumer_group_name_already_exists", "Consumer group name already exists", "name"},
	{5006, "consumer_group_member_not_found", "Consumer group member not found", NULL},
	{5009, "consumer_group_partition_not_owned", "Consumer group partition not owned", NULL},
	{E_INCOMPATIBLE_PROTOCOL, "incompatible_protocol_version", "Incompatible protocol version", NULL},
};

static const struct http_err *err_find(uint32_t code)
{
	for (size_t i = 0; i < sizeof(http_errs) / sizeof(http_errs[0]); i++)
		if (http_errs[i].code == code)
			return &http_errs[i];
	return NULL;
}

/* The HTTP status of an Iggy error code (reference §6). */
static int err_status(uint32_t code)
{
	switch (code) {
	case 1009: case 2010: case 3007: case 4000: case 100: case 5000: case 5003: case 5006: case 3021: case 20:
	case 1010: case 2011: case E_NOT_FOUND:
		return 404;
	case 40: case 77: case 78: case 53:
		return 401;
	case 41:
		return 403;
	case 57: case 58:
		return 503;
	case E_NOT_IMPLEMENTED:
		return 501;
	default:
		return 400;
	}
}

/* The Iggy error a login eviction stands for (reference §1.4, as the SDK maps them). */
static uint32_t evict_error(uint8_t reason)
{
	switch (reason) {
	case FRAME_EVICT_INVALID_CREDENTIALS:
		return E_INVALID_CREDENTIALS;
	case FRAME_EVICT_INVALID_TOKEN:
		return E_INVALID_PAT;
	case FRAME_EVICT_STALE_CLIENT:
		return E_STALE_CLIENT;
	case FRAME_EVICT_INCOMPATIBLE_PROTOCOL:
		return E_INCOMPATIBLE_PROTOCOL;
	case FRAME_EVICT_MALFORMED_LOGIN:
		return E_INVALID_FORMAT;
	case FRAME_EVICT_CLIENT_RELEASE_TOO_LOW:
	case FRAME_EVICT_CLIENT_RELEASE_TOO_HIGH:
	case FRAME_EVICT_INVALID_REQUEST_OPERATION:
	case FRAME_EVICT_INVALID_REQUEST_BODY:
	case FRAME_EVICT_INVALID_REQUEST_BODY_SIZE:
		return E_INVALID_COMMAND;
	default:
		return E_UNAUTHENTICATED;
	}
}

/* ---- Access tokens (JWT, HS256) ---- */

/* HMAC-SHA256 of data under the server's secret. */
static void jwt_sign(const struct http_server *s, const char *data, size_t n, uint8_t mac[32])
{
	unsigned int len = 32;
	HMAC(EVP_sha256(), s->secret, (int)s->secret_len, (const unsigned char *)data, n, mac, &len);
}

/*
 * Issues a token for a user: header {"alg":"HS256","typ":"JWT"}, claims {sub, iss, aud, iat, nbf, exp,
 * jti}. Returns a malloc'd string, or NULL; *exp is the expiry (seconds since the epoch).
 */
static char *jwt_issue(struct http_server *s, uint32_t user_id, uint64_t *exp)
{
	uint8_t rnd[16];
	char jti[33], claims[384], h64[64], c64[520], sig64[48];
	uint8_t mac[32];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return NULL;
	for (int i = 0; i < 16; i++)
		snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
	uint64_t now = (uint64_t)time(NULL);
	*exp = now + s->opts.token_ttl_s;
	int n = snprintf(claims, sizeof(claims),
			 "{\"sub\":\"%" PRIu32 "\",\"iss\":\"" JWT_ISSUER "\",\"aud\":\"" JWT_ISSUER "\",\"iat\":%" PRIu64
			 ",\"nbf\":%" PRIu64 ",\"exp\":%" PRIu64 ",\"jti\":\"%s\"}",
			 user_id, now, now, *exp, jti);
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	size_t hl = b64_encode((const uint8_t *)header, sizeof(header) - 1, h64, b64_url, false);
	size_t cl = b64_encode((const uint8_t *)claims, (size_t)n, c64, b64_url, false);
	size_t total = hl + 1 + cl + 1 + 43 + 1;
	char *tok = malloc(total);
	if (tok == NULL)
		return NULL;
	snprintf(tok, total, "%s.%s", h64, c64);
	jwt_sign(s, tok, hl + 1 + cl, mac);
	size_t sl = b64_encode(mac, sizeof(mac), sig64, b64_url, false); /* 43 characters */
	tok[hl + 1 + cl] = '.';
	memcpy(tok + hl + 1 + cl + 1, sig64, sl);
	tok[hl + 1 + cl + 1 + sl] = '\0';
	return tok;
}

/* Decodes one base64url part of a token into a JSON object. */
static json_t *jwt_part(const char *p, size_t n)
{
	if (n > 4096)
		return NULL;
	uint8_t buf[3 * 4096 / 4 + 3];
	long len = http_b64_decode(p, n, buf);
	if (len < 0)
		return NULL;
	json_t *j = json_loadb((const char *)buf, (size_t)len, 0, NULL);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static bool jwt_aud_ok(const json_t *aud)
{
	if (json_is_string(aud))
		return strcmp(json_string_value(aud), JWT_ISSUER) == 0;
	if (!json_is_array(aud))
		return false;
	size_t i;
	json_t *v;
	json_array_foreach(aud, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), JWT_ISSUER) == 0)
			return true;
	return false;
}

static bool jwt_revoked(struct http_server *s, const char *jti)
{
	uint64_t now = (uint64_t)time(NULL);
	for (struct link *l = s->revoked.next; l != &s->revoked;) {
		struct revoked *r = container_of(l, struct revoked, link);
		l = l->next;
		if (r->exp < now) {
			list_remove(&r->link);
			free(r);
			continue;
		}
		if (strcmp(r->jti, jti) == 0)
			return true;
	}
	return false;
}

/*
 * Verifies a token: three base64url parts, alg HS256, a valid signature, iss and aud
 * "iggy.apache.org", exp in the future, sub a user id, not revoked. Returns 0 and fills the user id,
 * jti and exp, or -EACCES.
 */
static int jwt_verify(struct http_server *s, const char *tok, uint32_t *user_id, char jti[33], uint64_t *exp)
{
	const char *d1 = strchr(tok, '.');
	const char *d2 = d1 != NULL ? strchr(d1 + 1, '.') : NULL;
	if (d2 == NULL || strchr(d2 + 1, '.') != NULL)
		return -EACCES;
	uint8_t mac[32], sig[64];
	jwt_sign(s, tok, (size_t)(d2 - tok), mac);
	size_t sl = strlen(d2 + 1);
	if (sl > 60 || http_b64_decode(d2 + 1, sl, sig) != 32 || CRYPTO_memcmp(mac, sig, 32) != 0)
		return -EACCES;
	json_t *h = jwt_part(tok, (size_t)(d1 - tok));
	json_t *c = jwt_part(d1 + 1, (size_t)(d2 - d1 - 1));
	int rc = -EACCES;
	if (h == NULL || c == NULL)
		goto out;
	const json_t *alg = json_object_get(h, "alg");
	const json_t *iss = json_object_get(c, "iss"), *sub = json_object_get(c, "sub");
	const json_t *ex = json_object_get(c, "exp"), *id = json_object_get(c, "jti");
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
		goto out;
	if (!json_is_string(iss) || strcmp(json_string_value(iss), JWT_ISSUER) != 0 ||
	    !jwt_aud_ok(json_object_get(c, "aud")))
		goto out;
	if (!json_is_integer(ex) || json_integer_value(ex) <= (json_int_t)time(NULL))
		goto out;
	unsigned long long uid;
	char *end;
	if (json_is_string(sub)) {
		const char *sv = json_string_value(sub);
		errno = 0;
		uid = strtoull(sv, &end, 10);
		if (sv[0] < '0' || sv[0] > '9' || *end != '\0' || errno != 0 || uid > UINT32_MAX)
			goto out;
	} else if (json_is_integer(sub) && json_integer_value(sub) >= 0 && json_integer_value(sub) <= UINT32_MAX) {
		uid = (unsigned long long)json_integer_value(sub);
	} else {
		goto out;
	}
	snprintf(jti, 33, "%s", json_is_string(id) ? json_string_value(id) : "");
	if (jti[0] != '\0' && jwt_revoked(s, jti))
		goto out;
	*user_id = (uint32_t)uid;
	*exp = (uint64_t)json_integer_value(ex);
	rc = 0;
out:
	json_decref(h);
	json_decref(c);
	return rc;
}

static void jwt_revoke(struct http_server *s, const char *jti, uint64_t exp)
{
	if (jti[0] == '\0' || jwt_revoked(s, jti))
		return;
	struct revoked *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return;
	snprintf(r->jti, sizeof(r->jti), "%s", jti);
	r->exp = exp;
	list_push(&s->revoked, &r->link);
}

/* ---- Request parsing ---- */

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes n bytes into a new NUL-terminated string ('+' is a space when `plus`). */
static char *pct_decode(const char *s, size_t n, bool plus, size_t *out_len)
{
	char *d = malloc(n + 1);
	if (d == NULL)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%' && i + 2 < n && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
			d[o++] = (char)(hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
			i += 2;
		} else {
			d[o++] = plus && s[i] == '+' ? ' ' : s[i];
		}
	}
	d[o] = '\0';
	if (out_len != NULL)
		*out_len = o;
	return d;
}

/* Whether a string is a u32 in decimal (all digits, no sign); the value in *v. */
static bool parse_u32(const char *s, size_t n, uint32_t *v)
{
	uint64_t x = 0;
	if (n == 0 || n > 10)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	if (x > UINT32_MAX)
		return false;
	*v = (uint32_t)x;
	return true;
}

static bool parse_u64(const char *s, size_t n, uint64_t *v)
{
	uint64_t x = 0;
	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || __builtin_mul_overflow(x, 10, &x) ||
		    __builtin_add_overflow(x, (uint64_t)(s[i] - '0'), &x))
			return false;
	}
	*v = x;
	return true;
}

/* An identifier from a string: all digits = numeric id, else a name of 1..255 bytes (pointing into s). */
static bool str_to_id(const char *s, size_t n, struct wire_id *out)
{
	if (parse_u32(s, n, &out->num)) {
		out->kind = WIRE_ID_NUMERIC;
		return true;
	}
	if (n == 0 || n > WIRE_NAME_MAX)
		return false;
	out->kind = WIRE_ID_STRING;
	out->name = (struct wire_str){(const uint8_t *)s, n};
	return true;
}

/* Appends path parameter i as an Identifier. Returns false when it is not one. */
static bool put_param_id(struct http_call *c, struct wire_buf *b, int i)
{
	struct wire_id id;
	if (i >= c->n_params || !str_to_id(c->params[i], c->param_len[i], &id))
		return false;
	wire_put_id(b, &id);
	return true;
}

/* Looks a query parameter up: a malloc'd decoded value, or NULL when absent (or out of memory). */
static char *query_get(const struct http_call *c, const char *key)
{
	if (c->query == NULL)
		return NULL;
	size_t kl = strlen(key);
	for (const char *p = c->query; *p != '\0';) {
		const char *amp = strchr(p, '&');
		size_t n = amp != NULL ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', n);
		size_t nl = eq != NULL ? (size_t)(eq - p) : n;
		if (nl == kl && memcmp(p, key, kl) == 0)
			return eq != NULL ? pct_decode(eq + 1, n - nl - 1, true, NULL) : strdup("");
		p += n + (amp != NULL ? 1 : 0);
	}
	return NULL;
}

/* A u64 query parameter: 0 found (or absent: *v = def), -1 not a number. */
static int query_u64(const struct http_call *c, const char *key, uint64_t def, uint64_t *v)
{
	char *s = query_get(c, key);
	if (s == NULL) {
		*v = def;
		return 0;
	}
	int rc = parse_u64(s, strlen(s), v) ? 0 : -1;
	free(s);
	return rc;
}

/* JSON field getters: 0 found, 1 absent (or null), -1 present with the wrong type. */
static int j_str(const json_t *o, const char *k, const char **s, size_t *n)
{
	const json_t *v = json_object_get(o, k);
	if (v == NULL || json_is_null(v))
		return 1;
	if (!json_is_string(v))
		return -1;
	*s = json_string_value(v);
	*n = json_string_length(v);
	return 0;
}

/*
 * Parses a request body. jansson's integers are int64, and it refuses a larger literal outright, yet
 * Iggy's bodies carry u64 values such as u64::MAX (IggyExpiry::NeverExpire) as plain numbers, and
 * message ids up to u128. Such literals (non-negative integers above INT64_MAX, outside strings) are
 * turned into decimal strings first, which every reader of numbers here also accepts.
 */
static json_t *json_load_body(const char *p, size_t n, json_error_t *err)
{
	char *q = malloc(n + n / 8 + 16), *o = q;
	if (q == NULL)
		return NULL;
	bool in_str = false;
	for (size_t i = 0; i < n;) {
		char ch = p[i];
		if (in_str) {
			*o++ = ch;
			i++;
			if (ch == '\\' && i < n)
				*o++ = p[i++];
			else if (ch == '"')
				in_str = false;
			continue;
		}
		if (ch == '"') {
			in_str = true;
			*o++ = p[i++];
			continue;
		}
		if (ch >= '0' && ch <= '9' && (i == 0 || strchr("-.+eE0123456789", p[i - 1]) == NULL)) {
			size_t j = i;
			while (j < n && p[j] >= '0' && p[j] <= '9')
				j++;
			size_t len = j - i;
			bool plain = j >= n || strchr(".eE", p[j]) == NULL;
			/* 20 digits at most fit in a u64; 19 fit in an int64 when not above its maximum. */
			if (plain && (len > 19 || (len == 19 && memcmp(p + i, "9223372036854775807", 19) > 0))) {
				*o++ = '"';
				memcpy(o, p + i, len);
				o += len;
				*o++ = '"';
				i = j;
				continue;
			}
			memcpy(o, p + i, len);
			o += len;
			i = j;
			continue;
		}
		*o++ = p[i++];
	}
	json_t *j = json_loadb(q, (size_t)(o - q), 0, err);
	free(q);
	return j;
}

static int j_u64(const json_t *o, const char *k, uint64_t *out)
{
	const json_t *v = json_object_get(o, k);
	if (v == NULL || json_is_null(v))
		return 1;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v) && parse_u64(json_string_value(v), json_string_length(v), out))
		return 0;
	return -1;
}

static int j_u32(const json_t *o, const char *k, uint32_t *out)
{
	uint64_t v;
	int rc = j_u64(o, k, &v);
	if (rc == 0 && v > UINT32_MAX)
		return -1;
	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

static int j_bool(const json_t *o, const char *k, bool *out)
{
	const json_t *v = json_object_get(o, k);
	if (v == NULL || json_is_null(v))
		return 1;
	if (!json_is_boolean(v))
		return -1;
	*out = json_is_true(v);
	return 0;
}

/* An identifier given in JSON as a number or a string. */
static int j_id(const json_t *o, const char *k, struct wire_id *out)
{
	const json_t *v = json_object_get(o, k);
	if (v == NULL || json_is_null(v))
		return 1;
	if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= UINT32_MAX) {
		*out = wire_id_num((uint32_t)json_integer_value(v));
		return 0;
	}
	if (json_is_string(v) && str_to_id(json_string_value(v), json_string_length(v), out))
		return 0;
	return -1;
}

/* ---- Calls ---- */

static void on_idle(uv_idle_t *h);

static void call_free(struct http_call *c)
{
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
static void call_respond(struct http_call *c, int status, const char *ctype, const void *body, size_t len,
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

static void call_respond_json(struct http_call *c, int status, struct jw *w, const char *extra_name,
			      const char *extra_value);

/* Answers with the error JSON of an Iggy error code. */
static void call_error(struct http_call *c, uint32_t code)
{
	const struct http_err *e = err_find(code);
	char reason[64];
	struct jw w;
	jw_init(&w);
	jw_open(&w, '{');
	JW_KU64(&w, "id", code);
	JW_KSTR(&w, "code", e != NULL ? e->name : "error");
	if (e == NULL)
		snprintf(reason, sizeof(reason), "Error %" PRIu32, code);
	JW_KSTR(&w, "reason", e != NULL ? e->reason : reason);
	jw_key(&w, "field");
	if (e != NULL && e->field != NULL)
		jw_str(&w, e->field);
	else
		jw_null(&w);
	jw_close(&w, '}');
	int status = err_status(code);
	call_respond_json(c, status, &w, status == 503 ? "retry-after" : NULL, "1");
}

/* Sends a JSON body built with a jw (freed here); a writer error becomes a 500. */
static void call_respond_json(struct http_call *c, int status, struct jw *w, const char *extra_name,
			      const char *extra_value)
{
	if (wire_buf_error(&w->b) != 0) {
		static const char oom[] = "{\"id\":1,\"code\":\"error\",\"reason\":\"Out of memory\",\"field\":null}";
		call_respond(c, 500, "application/json", oom, sizeof(oom) - 1, NULL, NULL);
	} else {
		call_respond(c, status, "application/json", w->b.p, w->b.len, extra_name, extra_value);
	}
	wire_buf_free(&w->b);
}

static void call_ok_empty(struct http_call *c, int status)
{
	call_respond(c, status, NULL, "", 0, NULL, NULL);
}

/* Hands a request frame to the handler: operation op (code for NonReplicated), body b (freed here). */
static void call_forward(struct http_call *c, uint8_t op, uint32_t code, struct wire_buf *b)
{
	static uint8_t empty[1];
	if (wire_buf_error(b) != 0 || b->len > FRAME_MAX_SIZE - FRAME_HEADER_SIZE) {
		uint32_t e = wire_buf_error(b) == -ENOMEM ? E_ERROR : E_INVALID_FORMAT;
		wire_buf_free(b);
		call_error(c, e);
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
		call_error(c, 58);
		return;
	}
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

/* ---- Binary replies to JSON ---- */

static const char *const kind_names[] = {"",      "raw",   "string", "bool",   "int8",    "int16",
					 "int32", "int64", "int128", "uint8",  "uint16",  "uint32",
					 "uint64", "uint128", "float32", "float64"};
#define N_KINDS (sizeof(kind_names) / sizeof(kind_names[0]))

static void jw_f64(struct jw *w, double v)
{
	char n[40];
	if (v != v || v > 1e300 || v < -1e300)
		v = 0;
	jw_sep(w);
	jw_raw(w, n, (size_t)snprintf(n, sizeof(n), "%.9g", v));
}

static void jw_name(struct jw *w, struct wire_str s)
{
	jw_strn(w, (const char *)s.ptr, s.len);
}

static uint64_t le_n(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n && i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* An option's value as a string, by its kind. */
static void jw_opt_value(struct jw *w, uint8_t kind, const uint8_t *v, size_t n)
{
	char buf[48];
	if (kind == WIRE_KIND_STRING) {
		jw_strn(w, (const char *)v, n);
	} else if (kind == WIRE_KIND_BOOL && n == 1) {
		jw_str(w, v[0] ? "true" : "false");
	} else if (kind >= WIRE_KIND_UINT8 && kind <= WIRE_KIND_UINT64 && n <= 8) {
		snprintf(buf, sizeof(buf), "%" PRIu64, le_n(v, n));
		jw_str(w, buf);
	} else if (kind >= WIRE_KIND_INT8 && kind <= WIRE_KIND_INT64 && n >= 1 && n <= 8) {
		uint64_t u = le_n(v, n);
		if (n < 8 && (u >> (8 * n - 1)) & 1)
			u |= ~0ull << (8 * n);
		snprintf(buf, sizeof(buf), "%" PRId64, (int64_t)u);
		jw_str(w, buf);
	} else if (kind == WIRE_KIND_FLOAT32 && n == 4) {
		float f;
		memcpy(&f, v, 4);
		snprintf(buf, sizeof(buf), "%.9g", (double)f);
		jw_str(w, buf);
	} else if (kind == WIRE_KIND_FLOAT64 && n == 8) {
		double d;
		memcpy(&d, v, 8);
		snprintf(buf, sizeof(buf), "%.17g", d);
		jw_str(w, buf);
	} else {
		jw_b64(w, v, n);
	}
}

/* Writes the entries of an options block as {key: {"value", "explicit"}} members (object already open). */
static void jw_options(struct jw *w, const struct wire_opts *o, bool explicit, const struct wire_opts *skip)
{
	size_t pos = 0;
	struct wire_opt opt;
	while (wire_opts_next(o, &pos, &opt)) {
		if (skip != NULL) {
			size_t sp = 0;
			struct wire_opt so;
			bool dup = false;
			while (!dup && wire_opts_next(skip, &sp, &so))
				dup = so.key.len == opt.key.len && memcmp(so.key.ptr, opt.key.ptr, opt.key.len) == 0;
			if (dup)
				continue;
		}
		jw_strn(w, (const char *)opt.key.ptr, opt.key.len);
		jw_raw(w, ":", 1);
		w->comma = false;
		jw_open(w, '{');
		jw_key(w, "value");
		jw_opt_value(w, opt.kind, opt.value.ptr, opt.value.len);
		JW_KBOOL(w, "explicit", explicit);
		jw_close(w, '}');
	}
}

/* StreamHeader fields (inside an open object). */
static void rd_stream(struct wire_rd *r, struct jw *w)
{
	uint32_t id = wire_get_u32(r);
	uint64_t created = wire_get_u64(r);
	uint32_t topics = wire_get_u32(r);
	uint64_t size = wire_get_u64(r), msgs = wire_get_u64(r);
	struct wire_str name = {0};
	struct wire_opts opts;
	wire_get_name(r, &name);
	wire_get_options_prefixed(r, &opts);
	JW_KU64(w, "id", id);
	JW_KU64(w, "created_at", created);
	jw_key(w, "name");
	jw_name(w, name);
	JW_KU64(w, "size", size);
	JW_KU64(w, "messages_count", msgs);
	JW_KU64(w, "topics_count", topics);
}

/* TopicHeader fields (inside an open object); *partitions is its partition count. */
static void rd_topic(struct wire_rd *r, struct jw *w, uint32_t *partitions)
{
	uint32_t id = wire_get_u32(r);
	uint64_t created = wire_get_u64(r);
	uint32_t parts = wire_get_u32(r);
	uint64_t expiry = wire_get_u64(r);
	uint8_t comp = wire_get_u8(r);
	uint64_t max_size = wire_get_u64(r), size = wire_get_u64(r), msgs = wire_get_u64(r);
	struct wire_str name = {0};
	struct wire_opts expl = {0}, derived = {0};
	wire_get_name(r, &name);
	wire_get_options_prefixed(r, &expl);
	wire_get_options_prefixed(r, &derived);
	JW_KU64(w, "id", id);
	JW_KU64(w, "created_at", created);
	jw_key(w, "name");
	jw_name(w, name);
	JW_KU64(w, "size", size);
	JW_KU64(w, "message_expiry", expiry);
	JW_KSTR(w, "compression_algorithm", comp == 2 ? "gzip" : "none");
	JW_KU64(w, "max_topic_size", max_size);
	JW_KU64(w, "replication_factor", 1);
	JW_KU64(w, "messages_count", msgs);
	JW_KU64(w, "partitions_count", parts);
	jw_key(w, "options");
	jw_open(w, '{');
	if (wire_rd_error(r) == 0) {
		jw_options(w, &expl, true, NULL);
		jw_options(w, &derived, false, &expl);
	}
	jw_close(w, '}');
	if (partitions != NULL)
		*partitions = parts;
}

static void rd_partition(struct wire_rd *r, struct jw *w)
{
	uint32_t id = wire_get_u32(r);
	uint64_t created = wire_get_u64(r);
	uint32_t segs = wire_get_u32(r);
	uint64_t cur = wire_get_u64(r), size = wire_get_u64(r), msgs = wire_get_u64(r);
	jw_open(w, '{');
	JW_KU64(w, "id", id);
	JW_KU64(w, "created_at", created);
	JW_KU64(w, "segments_count", segs);
	JW_KU64(w, "current_offset", cur);
	JW_KU64(w, "size", size);
	JW_KU64(w, "messages_count", msgs);
	jw_close(w, '}');
}

/* UserHeader fields (inside an open object). */
static void rd_user(struct wire_rd *r, struct jw *w)
{
	uint32_t id = wire_get_u32(r);
	uint64_t created = wire_get_u64(r);
	uint8_t status = wire_get_u8(r);
	struct wire_str name = {0};
	struct wire_opts opts;
	wire_get_name(r, &name);
	wire_get_options_prefixed(r, &opts);
	JW_KU64(w, "id", id);
	JW_KU64(w, "created_at", created);
	JW_KSTR(w, "status", status == 2 ? "inactive" : "active");
	jw_key(w, "username");
	jw_name(w, name);
}

static void jw_permissions(struct jw *w, const struct wire_perms *p)
{
	jw_open(w, '{');
	jw_key(w, "global");
	jw_open(w, '{');
	JW_KBOOL(w, "manage_servers", p->manage_servers);
	JW_KBOOL(w, "read_servers", p->read_servers);
	JW_KBOOL(w, "manage_users", p->manage_users);
	JW_KBOOL(w, "read_users", p->read_users);
	JW_KBOOL(w, "manage_streams", p->manage_streams);
	JW_KBOOL(w, "read_streams", p->read_streams);
	JW_KBOOL(w, "manage_topics", p->manage_topics);
	JW_KBOOL(w, "read_topics", p->read_topics);
	JW_KBOOL(w, "poll_messages", p->poll_messages);
	JW_KBOOL(w, "send_messages", p->send_messages);
	jw_close(w, '}');
	jw_key(w, "streams");
	if (p->streams_count == 0) {
		jw_null(w);
	} else {
		jw_open(w, '{');
		for (uint32_t i = 0; i < p->streams_count; i++) {
			const struct wire_perm_stream *s = &p->streams[i];
			char id[16];
			snprintf(id, sizeof(id), "%" PRIu32, s->id);
			jw_key(w, id);
			jw_open(w, '{');
			JW_KBOOL(w, "manage_stream", s->manage_stream);
			JW_KBOOL(w, "read_stream", s->read_stream);
			JW_KBOOL(w, "manage_topics", s->manage_topics);
			JW_KBOOL(w, "read_topics", s->read_topics);
			JW_KBOOL(w, "poll_messages", s->poll_messages);
			JW_KBOOL(w, "send_messages", s->send_messages);
			jw_key(w, "topics");
			if (s->topics_count == 0) {
				jw_null(w);
			} else {
				jw_open(w, '{');
				for (uint32_t k = 0; k < s->topics_count; k++) {
					const struct wire_perm_topic *t = &s->topics[k];
					snprintf(id, sizeof(id), "%" PRIu32, t->id);
					jw_key(w, id);
					jw_open(w, '{');
					JW_KBOOL(w, "manage_topic", t->manage_topic);
					JW_KBOOL(w, "read_topic", t->read_topic);
					JW_KBOOL(w, "poll_messages", t->poll_messages);
					JW_KBOOL(w, "send_messages", t->send_messages);
					jw_close(w, '}');
				}
				jw_close(w, '}');
			}
			jw_close(w, '}');
		}
		jw_close(w, '}');
	}
	jw_close(w, '}');
}

/* UserDetails: the header, then [0 ...] (no permissions) or [1][len u32][Permissions]. */
static void rd_user_details(struct wire_rd *r, struct jw *w)
{
	jw_open(w, '{');
	rd_user(r, w);
	jw_key(w, "permissions");
	uint8_t has = wire_get_u8(r);
	if (has == 1) {
		uint32_t len = wire_get_u32(r);
		const uint8_t *p = wire_get_bytes(r, len);
		struct wire_perms perms;
		if (p != NULL && wire_perms_decode(p, len, &perms) == 0) {
			jw_permissions(w, &perms);
			wire_perms_free(&perms);
		} else {
			wire_rd_fail(r, WIRE_E_VALUE);
			jw_null(w);
		}
	} else {
		wire_get_bytes(r, wire_rd_left(r) < 3 ? wire_rd_left(r) : 3);
		jw_null(w);
	}
	jw_close(w, '}');
}

/* GroupHeader fields (inside an open object); *members is its member count. */
static void rd_group(struct wire_rd *r, struct jw *w, uint32_t *members)
{
	uint32_t id = wire_get_u32(r), parts = wire_get_u32(r), n = wire_get_u32(r);
	struct wire_str name = {0};
	wire_get_name(r, &name);
	JW_KU64(w, "id", id);
	jw_key(w, "name");
	jw_name(w, name);
	JW_KU64(w, "partitions_count", parts);
	JW_KU64(w, "members_count", n);
	*members = n;
}

static void rd_group_details(struct wire_rd *r, struct jw *w)
{
	uint32_t n;
	jw_open(w, '{');
	rd_group(r, w, &n);
	jw_key(w, "members");
	jw_open(w, '[');
	for (uint32_t i = 0; i < n && wire_rd_error(r) == 0; i++) {
		uint32_t id = wire_get_u32(r), np = wire_get_u32(r);
		jw_open(w, '{');
		JW_KU64(w, "id", id);
		JW_KU64(w, "partitions_count", np);
		jw_key(w, "partitions");
		jw_open(w, '[');
		for (uint32_t k = 0; k < np && wire_rd_error(r) == 0; k++)
			jw_u64(w, wire_get_u32(r));
		jw_close(w, ']');
		jw_close(w, '}');
	}
	jw_close(w, ']');
	jw_close(w, '}');
}

/* Sends w unless reading the reply failed (then a 500 with error 1: the reply did not decode). */
static void reply_json(struct http_call *c, const struct wire_rd *r, struct jw *w, int status)
{
	if (wire_rd_done(r) != 0) {
		http_log(c->srv, HTTP_LOG_WARN, "reply to %s does not decode", c->route != NULL ? "a route" : "?");
		wire_buf_free(&w->b);
		jw_init(w);
		static const char bad[] = "{\"id\":1,\"code\":\"error\",\"reason\":\"Malformed reply\",\"field\":null}";
		jw_raw(w, bad, sizeof(bad) - 1);
		status = 500;
	}
	call_respond_json(c, status, w, NULL, NULL);
}

static void reply_streams(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '[');
	while (wire_rd_left(&r) > 0) {
		jw_open(&w, '{');
		rd_stream(&r, &w);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	reply_json(c, &r, &w, 200);
}

/* The 404 of an empty Get*: the id kind tells which code (numeric id or name). */
static void not_found(struct http_call *c, int param, uint32_t by_id, uint32_t by_name)
{
	uint32_t v;
	bool numeric = param < c->n_params && parse_u32(c->params[param], c->param_len[param], &v);
	call_error(c, numeric ? by_id : by_name);
}

static void reply_stream(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		not_found(c, 0, E_STREAM_NOT_FOUND, E_STREAM_NAME_NOT_FOUND);
		return;
	}
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '{');
	rd_stream(&r, &w);
	jw_key(&w, "topics");
	jw_open(&w, '[');
	while (wire_rd_left(&r) > 0) {
		jw_open(&w, '{');
		rd_topic(&r, &w, NULL);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

static void reply_topics(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	uint32_t count = wire_get_u32(&r);
	jw_open(&w, '[');
	for (uint32_t i = 0; i < count && wire_rd_error(&r) == 0; i++) {
		jw_open(&w, '{');
		rd_topic(&r, &w, NULL);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	reply_json(c, &r, &w, 200);
}

static void reply_topic(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		not_found(c, 1, E_TOPIC_NOT_FOUND, E_TOPIC_NAME_NOT_FOUND);
		return;
	}
	struct wire_rd r;
	struct jw w;
	uint32_t parts = 0;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '{');
	rd_topic(&r, &w, &parts);
	jw_key(&w, "partitions");
	jw_open(&w, '[');
	for (uint32_t i = 0; i < parts && wire_rd_error(&r) == 0; i++)
		rd_partition(&r, &w);
	jw_close(&w, ']');
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

static void reply_users(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '[');
	while (wire_rd_left(&r) > 0) {
		jw_open(&w, '{');
		rd_user(&r, &w);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	reply_json(c, &r, &w, 200);
}

static void reply_user(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		call_error(c, E_RESOURCE_NOT_FOUND);
		return;
	}
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	rd_user_details(&r, &w);
	reply_json(c, &r, &w, 200);
}

static void reply_groups(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	uint32_t members;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '[');
	while (wire_rd_left(&r) > 0) {
		jw_open(&w, '{');
		rd_group(&r, &w, &members);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	reply_json(c, &r, &w, 200);
}

static void reply_group(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		not_found(c, 2, E_GROUP_NOT_FOUND, E_GROUP_NAME_NOT_FOUND);
		return;
	}
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	rd_group_details(&r, &w);
	reply_json(c, &r, &w, 200);
}

static void reply_pats(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '[');
	while (wire_rd_left(&r) > 0) {
		struct wire_str name = {0};
		wire_get_name(&r, &name);
		uint64_t exp = wire_get_u64(&r);
		jw_open(&w, '{');
		jw_key(&w, "name");
		jw_name(&w, name);
		jw_key(&w, "expiry_at");
		if (exp == 0)
			jw_null(&w);
		else
			jw_u64(&w, exp);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	reply_json(c, &r, &w, 200);
}

static void reply_pat_created(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	struct wire_str tok = {0};
	wire_rd_init(&r, p, n);
	wire_get_str8(&r, &tok);
	jw_init(&w);
	jw_open(&w, '{');
	jw_key(&w, "token");
	jw_name(&w, tok);
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

static const char *transport_name(uint8_t t)
{
	switch (t) {
	case 1: return "tcp";
	case 2: return "quic";
	case 3: return "http";
	case 4: return "websocket";
	default: return "unknown";
	}
}

/* ClientHeader (and, with details, its groups) as an object. */
static void rd_client(struct wire_rd *r, struct jw *w, bool details)
{
	uint32_t id = wire_get_u32(r), user = wire_get_u32(r);
	uint8_t transport = wire_get_u8(r);
	struct wire_str addr = {0};
	wire_get_str32(r, &addr);
	uint32_t groups = wire_get_u32(r);
	jw_open(w, '{');
	JW_KU64(w, "client_id", id);
	jw_key(w, "user_id");
	if (user == UINT32_MAX)
		jw_null(w);
	else
		jw_u64(w, user);
	jw_key(w, "address");
	jw_name(w, addr);
	JW_KSTR(w, "transport", transport_name(transport));
	JW_KU64(w, "consumer_groups_count", groups);
	if (details) {
		jw_key(w, "consumer_groups");
		jw_open(w, '[');
		for (uint32_t i = 0; i < groups && wire_rd_error(r) == 0; i++) {
			uint32_t s = wire_get_u32(r), t = wire_get_u32(r), g = wire_get_u32(r);
			jw_open(w, '{');
			JW_KU64(w, "stream_id", s);
			JW_KU64(w, "topic_id", t);
			JW_KU64(w, "group_id", g);
			jw_close(w, '}');
		}
		jw_close(w, ']');
	}
	jw_close(w, '}');
}

static void reply_clients(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '[');
	while (wire_rd_left(&r) > 0)
		rd_client(&r, &w, false);
	jw_close(&w, ']');
	reply_json(c, &r, &w, 200);
}

static void reply_client(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		call_error(c, 100);
		return;
	}
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	rd_client(&r, &w, true);
	reply_json(c, &r, &w, 200);
}

static void reply_options(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	uint32_t count = wire_get_u32(&r);
	jw_open(&w, '[');
	for (uint32_t i = 0; i < count && wire_rd_error(&r) == 0; i++) {
		struct wire_str key = {0}, def = {0}, desc = {0};
		wire_get_name(&r, &key);
		uint8_t kind = wire_get_u8(&r);
		wire_get_str32(&r, &def);
		wire_get_str32(&r, &desc);
		jw_open(&w, '{');
		jw_key(&w, "key");
		jw_name(&w, key);
		JW_KSTR(&w, "kind", kind < N_KINDS ? kind_names[kind] : "unknown");
		/* The SDK reads the default as its raw bytes in the kind's encoding (a JSON array of bytes). */
		jw_key(&w, "default_value");
		jw_open(&w, '[');
		for (size_t k = 0; k < def.len; k++)
			jw_u64(&w, def.ptr[k]);
		jw_close(&w, ']');
		jw_key(&w, "description");
		jw_name(&w, desc);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	reply_json(c, &r, &w, 200);
}

static void reply_stats(struct http_call *c, const uint8_t *p, size_t n)
{
	static const char *const strs[] = {"hostname", "os_name", "os_version", "kernel_version",
					   "iggy_server_version"};
	struct wire_rd r;
	struct jw w;
	float f;
	uint32_t u;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '{');
	JW_KU64(&w, "process_id", wire_get_u32(&r));
	u = wire_get_u32(&r);
	memcpy(&f, &u, 4);
	jw_key(&w, "cpu_usage");
	jw_f64(&w, (double)f);
	u = wire_get_u32(&r);
	memcpy(&f, &u, 4);
	jw_key(&w, "total_cpu_usage");
	jw_f64(&w, (double)f);
	JW_KU64(&w, "memory_usage", wire_get_u64(&r));
	JW_KU64(&w, "total_memory", wire_get_u64(&r));
	JW_KU64(&w, "available_memory", wire_get_u64(&r));
	JW_KU64(&w, "run_time", wire_get_u64(&r));
	JW_KU64(&w, "start_time", wire_get_u64(&r));
	JW_KU64(&w, "read_bytes", wire_get_u64(&r));
	JW_KU64(&w, "written_bytes", wire_get_u64(&r));
	JW_KU64(&w, "messages_size_bytes", wire_get_u64(&r));
	JW_KU64(&w, "streams_count", wire_get_u32(&r));
	JW_KU64(&w, "topics_count", wire_get_u32(&r));
	JW_KU64(&w, "partitions_count", wire_get_u32(&r));
	JW_KU64(&w, "segments_count", wire_get_u32(&r));
	JW_KU64(&w, "messages_count", wire_get_u64(&r));
	JW_KU64(&w, "clients_count", wire_get_u32(&r));
	JW_KU64(&w, "consumer_groups_count", wire_get_u32(&r));
	for (size_t i = 0; i < 5; i++) {
		struct wire_str s = {0};
		wire_get_str32(&r, &s);
		jw_key(&w, strs[i]);
		jw_name(&w, s);
	}
	JW_KU64(&w, "iggy_server_semver", wire_get_u32(&r));
	uint32_t nc = wire_get_u32(&r);
	/* A map keyed "stream-topic-partition" (the SDK's Stats reads an object, not a list). */
	jw_key(&w, "cache_metrics");
	jw_open(&w, '{');
	for (uint32_t i = 0; i < nc && wire_rd_error(&r) == 0; i++) {
		char key[40];
		uint32_t sid = wire_get_u32(&r), tid = wire_get_u32(&r), pid = wire_get_u32(&r);
		snprintf(key, sizeof(key), "%" PRIu32 "-%" PRIu32 "-%" PRIu32, sid, tid, pid);
		jw_key(&w, key);
		jw_open(&w, '{');
		JW_KU64(&w, "hits", wire_get_u64(&r));
		JW_KU64(&w, "misses", wire_get_u64(&r));
		u = wire_get_u32(&r);
		memcpy(&f, &u, 4);
		jw_key(&w, "hit_ratio");
		jw_f64(&w, (double)f);
		jw_close(&w, '}');
	}
	jw_close(&w, '}');
	JW_KU64(&w, "threads_count", wire_get_u32(&r));
	JW_KU64(&w, "free_disk_space", wire_get_u64(&r));
	JW_KU64(&w, "total_disk_space", wire_get_u64(&r));
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

static void reply_cluster(struct http_call *c, const uint8_t *p, size_t n)
{
	static const char *const statuses[] = {"healthy", "starting", "stopping", "unreachable", "maintenance"};
	struct wire_rd r;
	struct jw w;
	struct wire_str name = {0};
	wire_rd_init(&r, p, n);
	jw_init(&w);
	wire_get_str32(&r, &name);
	uint32_t nodes = wire_get_u32(&r);
	jw_open(&w, '{');
	jw_key(&w, "name");
	jw_name(&w, name);
	jw_key(&w, "nodes");
	jw_open(&w, '[');
	for (uint32_t i = 0; i < nodes && wire_rd_error(&r) == 0; i++) {
		struct wire_str nn = {0}, ip = {0};
		wire_get_str32(&r, &nn);
		wire_get_str32(&r, &ip);
		uint16_t tcp = wire_get_u16(&r), quic = wire_get_u16(&r), http = wire_get_u16(&r), ws = wire_get_u16(&r);
		uint8_t role = wire_get_u8(&r), status = wire_get_u8(&r);
		jw_open(&w, '{');
		jw_key(&w, "name");
		jw_name(&w, nn);
		jw_key(&w, "ip");
		jw_name(&w, ip);
		jw_key(&w, "endpoints");
		jw_open(&w, '{');
		JW_KU64(&w, "tcp", tcp);
		JW_KU64(&w, "quic", quic);
		JW_KU64(&w, "http", http);
		JW_KU64(&w, "websocket", ws);
		jw_close(&w, '}');
		JW_KSTR(&w, "role", role == 0 ? "leader" : "follower");
		JW_KSTR(&w, "status", status < 5 ? statuses[status] : "unknown");
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

static void reply_offset(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		call_error(c, E_OFFSET_NOT_FOUND);
		return;
	}
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '{');
	JW_KU64(&w, "partition_id", wire_get_u32(&r));
	JW_KU64(&w, "current_offset", wire_get_u64(&r));
	JW_KU64(&w, "stored_offset", wire_get_u64(&r));
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

static void reply_sent(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	uint32_t count = wire_get_u32(&r);
	jw_open(&w, '{');
	jw_key(&w, "confirmations");
	jw_open(&w, '[');
	for (uint32_t i = 0; i < count && wire_rd_error(&r) == 0; i++) {
		uint32_t s = wire_get_u32(&r), t = wire_get_u32(&r), part = wire_get_u32(&r);
		uint64_t base = wire_get_u64(&r);
		jw_open(&w, '{');
		JW_KU64(&w, "stream_id", s);
		JW_KU64(&w, "topic_id", t);
		JW_KU64(&w, "partition_id", part);
		JW_KU64(&w, "base_offset", base);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	jw_close(&w, '}');
	if (wire_rd_done(&r) != 0) {
		reply_json(c, &r, &w, 201);
		return;
	}
	call_respond_json(c, 201, &w, "iggy-durability", "replicated-memory");
}

/* Message user headers (TLV of reference §3.3) as [UserHeader]. Returns false when they do not parse. */
static bool jw_user_headers(struct jw *w, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	wire_rd_init(&r, p, n);
	size_t mark = w->b.len;
	bool comma = w->comma;
	jw_open(w, '[');
	while (wire_rd_left(&r) > 0) {
		jw_open(w, '{');
		for (int part = 0; part < 2; part++) {
			uint8_t kind = wire_get_u8(&r);
			uint32_t len = wire_get_u32(&r);
			const uint8_t *v = wire_get_bytes(&r, len);
			if (wire_rd_error(&r) != 0)
				break;
			jw_key(w, part == 0 ? "key" : "value");
			jw_open(w, '{');
			JW_KSTR(w, "kind", kind < N_KINDS && kind > 0 ? kind_names[kind] : "raw");
			jw_key(w, "value");
			jw_b64(w, v, len);
			jw_close(w, '}');
		}
		jw_close(w, '}');
		if (wire_rd_error(&r) != 0)
			break;
	}
	jw_close(w, ']');
	if (wire_rd_error(&r) == 0)
		return true;
	w->b.len = mark; /* undo, and write an empty list */
	w->comma = comma;
	jw_open(w, '[');
	jw_close(w, ']');
	return false;
}

static void reply_polled(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	uint32_t pid = wire_get_u32(&r);
	uint64_t cur = wire_get_u64(&r);
	uint32_t count = wire_get_u32(&r);
	jw_open(&w, '{');
	JW_KU64(&w, "partition_id", pid);
	JW_KU64(&w, "current_offset", cur);
	JW_KU64(&w, "count", count);
	jw_key(&w, "messages");
	jw_open(&w, '[');
	while (wire_rd_left(&r) >= BATCH_HEADER_SIZE) {
		const uint8_t *bh = wire_get_bytes(&r, BATCH_HEADER_SIZE);
		uint64_t base_offset = frame_le64(bh + 8), base_ts = frame_le64(bh + 16), origin = frame_le64(bh + 24);
		uint64_t blen = frame_le64(bh + 32);
		if (blen < BATCH_HEADER_SIZE || blen - BATCH_HEADER_SIZE > wire_rd_left(&r)) {
			wire_rd_fail(&r, WIRE_E_SHORT);
			break;
		}
		struct wire_rd fr;
		wire_rd_init(&fr, wire_get_bytes(&r, blen - BATCH_HEADER_SIZE), blen - BATCH_HEADER_SIZE);
		while (wire_rd_left(&fr) > 0) {
			uint64_t sum = wire_get_u64(&fr), id_lo = wire_get_u64(&fr), id_hi = wire_get_u64(&fr);
			uint32_t od = wire_get_u32(&fr), td = wire_get_u32(&fr), hl = wire_get_u32(&fr), pl = wire_get_u32(&fr);
			uint64_t reserved = wire_get_u64(&fr);
			const uint8_t *payload = wire_get_bytes(&fr, pl), *hdrs = wire_get_bytes(&fr, hl);
			if (wire_rd_error(&fr) != 0) {
				wire_rd_fail(&r, WIRE_E_SHORT);
				break;
			}
			jw_open(&w, '{');
			jw_key(&w, "header");
			jw_open(&w, '{');
			JW_KU64(&w, "checksum", sum);
			jw_key(&w, "id");
			jw_u128(&w, id_lo, id_hi);
			JW_KU64(&w, "offset", base_offset + od);
			JW_KU64(&w, "timestamp", base_ts);
			JW_KU64(&w, "origin_timestamp", origin + td);
			JW_KU64(&w, "user_headers_length", hl);
			JW_KU64(&w, "payload_length", pl);
			JW_KU64(&w, "reserved", reserved);
			jw_close(&w, '}');
			jw_key(&w, "payload");
			jw_b64(&w, payload, pl);
			/* null, not []: the SDK reports a message without headers as having none. */
			jw_key(&w, "user_headers");
			if (hl == 0)
				jw_null(&w);
			else
				jw_user_headers(&w, hdrs, hl);
			jw_close(&w, '}');
		}
	}
	jw_close(&w, ']');
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

/* ---- JSON and query to binary requests ---- */

typedef uint32_t (*build_fn)(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code);

#define NR(cd) (*op = FRAME_OP_NON_REPLICATED, *code = (cd))
#define NEED(x)                                                                                            \
	do {                                                                                               \
		if (!(x))                                                                                  \
			return E_INVALID_FORMAT;                                                           \
	} while (0)
#define NEED_ID(c, b, i)                                                                                   \
	do {                                                                                               \
		if (!put_param_id((c), (b), (i)))                                                          \
			return E_INVALID_IDENTIFIER;                                                       \
	} while (0)

static void put_version_info(struct wire_buf *b)
{
	struct wire_version_info v = {FRAME_PROTOCOL_VERSION, {(const uint8_t *)SDK_NAME, strlen(SDK_NAME)},
				      {(const uint8_t *)SDK_VERSION, strlen(SDK_VERSION)}};
	wire_put_version_info(b, &v);
}

static uint32_t b_ping(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_PING);
	return 0;
}

static uint32_t b_stats(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_STATS);
	return 0;
}

static uint32_t b_cluster(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CLUSTER_METADATA);
	return 0;
}

static uint32_t b_clients(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CLIENTS);
	return 0;
}

static uint32_t b_client(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	uint32_t id;
	if (!parse_u32(c->params[0], c->param_len[0], &id))
		return E_INVALID_IDENTIFIER;
	NR(FRAME_CODE_GET_CLIENT);
	wire_put_u32(b, id);
	return 0;
}

static uint32_t b_options(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	static const char *const scopes[] = {"topic", "stream", "user"};
	for (uint8_t i = 0; i < 3; i++)
		if (strcmp(c->params[0], scopes[i]) == 0) {
			NR(FRAME_CODE_DESCRIBE_OPTIONS);
			wire_put_u8(b, (uint8_t)(i + 1));
			return 0;
		}
	return E_INVALID_FORMAT;
}

static uint32_t b_login(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *user, *pw;
	size_t ul, pl;
	NEED(j_str(c->json, "username", &user, &ul) == 0 && j_str(c->json, "password", &pw, &pl) == 0);
	if (ul == 0 || ul > WIRE_NAME_MAX || pl > 255)
		return E_INVALID_CREDENTIALS;
	*op = FRAME_OP_REGISTER;
	put_version_info(b);
	wire_put_name(b, user, ul);
	wire_put_str8(b, pw, pl);
	wire_put_str32(b, "", 0);
	return 0;
}

/* The Register-with-PAT body of a token. */
static void put_pat_register(struct wire_buf *b, const char *tok, size_t n)
{
	put_version_info(b);
	wire_put_str8(b, tok, n);
	wire_put_str32(b, "", 0);
}

static uint32_t b_pat_login(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *tok;
	size_t n;
	NEED(j_str(c->json, "token", &tok, &n) == 0);
	if (n == 0 || n > 255)
		return E_INVALID_PAT;
	*op = FRAME_OP_REGISTER;
	put_pat_register(b, tok, n);
	return 0;
}

static uint32_t b_me(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_ME);
	return 0;
}

static uint32_t b_logout(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_LOGOUT;
	return 0;
}

/* ---- Users ---- */

static uint32_t b_users(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_USERS);
	return 0;
}

/* The user parameter, "me" standing for the authenticated user. */
static uint32_t put_user_param(struct http_call *c, struct wire_buf *b)
{
	if (strcmp(c->params[0], "me") == 0) {
		struct wire_id id = wire_id_num(c->user_id);
		wire_put_id(b, &id);
		return 0;
	}
	return put_param_id(c, b, 0) ? 0 : E_INVALID_IDENTIFIER;
}

static uint32_t b_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_USER);
	return put_user_param(c, b);
}

static int perm_id_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Reads a boolean flag of a permissions object (absent = false). Returns false for a wrong type. */
static bool perm_flag(const json_t *o, const char *k, bool *out)
{
	*out = false;
	return j_bool(o, k, out) >= 0;
}

/* Permissions JSON (see the file comment) to the wire struct; free with wire_perms_free. */
static uint32_t perms_from_json(const json_t *j, struct wire_perms *p)
{
	memset(p, 0, sizeof(*p));
	if (!json_is_object(j))
		return E_INVALID_FORMAT;
	const json_t *g = json_object_get(j, "global");
	if (g != NULL && !json_is_null(g)) {
		if (!json_is_object(g))
			return E_INVALID_FORMAT;
		bool ok = perm_flag(g, "manage_servers", &p->manage_servers) && perm_flag(g, "read_servers", &p->read_servers) &&
			  perm_flag(g, "manage_users", &p->manage_users) && perm_flag(g, "read_users", &p->read_users) &&
			  perm_flag(g, "manage_streams", &p->manage_streams) &&
			  perm_flag(g, "read_streams", &p->read_streams) &&
			  perm_flag(g, "manage_topics", &p->manage_topics) && perm_flag(g, "read_topics", &p->read_topics) &&
			  perm_flag(g, "poll_messages", &p->poll_messages) &&
			  perm_flag(g, "send_messages", &p->send_messages);
		if (!ok)
			return E_INVALID_FORMAT;
	}
	const json_t *ss = json_object_get(j, "streams");
	if (ss == NULL || json_is_null(ss) || json_object_size(ss) == 0)
		return json_is_object(ss) || ss == NULL || json_is_null(ss) ? 0 : E_INVALID_FORMAT;
	if (!json_is_object(ss))
		return E_INVALID_FORMAT;
	p->streams = calloc(json_object_size(ss), sizeof(*p->streams));
	if (p->streams == NULL)
		return E_ERROR;
	const char *key;
	const json_t *sv;
	json_object_foreach((json_t *)ss, key, sv) {
		struct wire_perm_stream *st = &p->streams[p->streams_count++];
		if (!parse_u32(key, strlen(key), &st->id) || !json_is_object(sv))
			goto bad;
		if (!perm_flag(sv, "manage_stream", &st->manage_stream) || !perm_flag(sv, "read_stream", &st->read_stream) ||
		    !perm_flag(sv, "manage_topics", &st->manage_topics) || !perm_flag(sv, "read_topics", &st->read_topics) ||
		    !perm_flag(sv, "poll_messages", &st->poll_messages) || !perm_flag(sv, "send_messages", &st->send_messages))
			goto bad;
		const json_t *ts = json_object_get(sv, "topics");
		if (ts == NULL || json_is_null(ts))
			continue;
		if (!json_is_object(ts))
			goto bad;
		if (json_object_size(ts) == 0)
			continue;
		st->topics = calloc(json_object_size(ts), sizeof(*st->topics));
		if (st->topics == NULL)
			goto bad;
		const char *tk;
		const json_t *tv;
		json_object_foreach((json_t *)ts, tk, tv) {
			struct wire_perm_topic *t = &st->topics[st->topics_count++];
			if (!parse_u32(tk, strlen(tk), &t->id) || !json_is_object(tv) ||
			    !perm_flag(tv, "manage_topic", &t->manage_topic) || !perm_flag(tv, "read_topic", &t->read_topic) ||
			    !perm_flag(tv, "poll_messages", &t->poll_messages) ||
			    !perm_flag(tv, "send_messages", &t->send_messages))
				goto bad;
		}
		qsort(st->topics, st->topics_count, sizeof(*st->topics), perm_id_cmp);
	}
	qsort(p->streams, p->streams_count, sizeof(*p->streams), perm_id_cmp);
	return 0;
bad:
	wire_perms_free(p);
	return E_INVALID_FORMAT;
}

/* [has u8]([len u32][Permissions])? from the "permissions" field (absent or null: none). */
static uint32_t put_perms_field(const json_t *o, struct wire_buf *b)
{
	const json_t *j = json_object_get(o, "permissions");
	if (j == NULL || json_is_null(j)) {
		wire_put_u8(b, 0);
		return 0;
	}
	struct wire_perms p;
	uint32_t e = perms_from_json(j, &p);
	if (e != 0)
		return e;
	wire_put_u8(b, 1);
	size_t at = wire_put_reserve(b, 4);
	size_t start = b->len;
	wire_put_permissions(b, &p);
	wire_patch_u32(b, at, (uint32_t)(b->len - start));
	wire_perms_free(&p);
	return 0;
}

/* A user status field: "active" 1, "inactive" 2; absent gives def. */
static int user_status(const json_t *o, uint8_t def, uint8_t *out)
{
	const char *s;
	size_t n;
	int rc = j_str(o, "status", &s, &n);
	if (rc == 1) {
		*out = def;
		return 1;
	}
	if (rc < 0)
		return -1;
	if (strcasecmp(s, "active") == 0)
		*out = 1;
	else if (strcasecmp(s, "inactive") == 0)
		*out = 2;
	else
		return -1;
	return 0;
}

static uint32_t b_create_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *user, *pw;
	size_t ul, pl;
	uint8_t status;
	NEED(j_str(c->json, "username", &user, &ul) == 0 && j_str(c->json, "password", &pw, &pl) == 0);
	NEED(user_status(c->json, 1, &status) >= 0);
	if (ul == 0 || ul > WIRE_NAME_MAX)
		return 43;
	if (pl == 0 || pl > 255)
		return 44;
	*op = FRAME_OP_CREATE_USER;
	wire_put_name(b, user, ul);
	wire_put_str8(b, pw, pl);
	wire_put_u8(b, status);
	return put_perms_field(c->json, b);
}

static uint32_t b_update_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *user;
	size_t ul;
	uint8_t status;
	int hu = j_str(c->json, "username", &user, &ul), hs = user_status(c->json, 0, &status);
	NEED(hu >= 0 && hs >= 0);
	*op = FRAME_OP_UPDATE_USER;
	uint32_t e = put_user_param(c, b);
	if (e != 0)
		return e;
	wire_put_u8(b, hu == 0);
	if (hu == 0)
		wire_put_name(b, user, ul);
	wire_put_u8(b, hs == 0);
	if (hs == 0)
		wire_put_u8(b, status);
	return 0;
}

static uint32_t b_delete_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_DELETE_USER;
	return put_user_param(c, b);
}

static uint32_t b_password(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *cur, *new;
	size_t cl, nl;
	NEED(j_str(c->json, "current_password", &cur, &cl) == 0 && j_str(c->json, "new_password", &new, &nl) == 0);
	if (cl > 255 || nl == 0 || nl > 255)
		return 44;
	*op = FRAME_OP_CHANGE_PASSWORD;
	uint32_t e = put_user_param(c, b);
	wire_put_str8(b, cur, cl);
	wire_put_str8(b, new, nl);
	return e;
}

static uint32_t b_permissions(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_UPDATE_PERMISSIONS;
	uint32_t e = put_user_param(c, b);
	return e != 0 ? e : put_perms_field(c->json, b);
}

/* ---- Personal access tokens ---- */

static uint32_t b_pats(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_PERSONAL_ACCESS_TOKENS);
	return 0;
}

static uint32_t b_create_pat(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	uint64_t expiry = 0;
	NEED(j_str(c->json, "name", &name, &n) == 0 && j_u64(c->json, "expiry", &expiry) >= 0);
	*op = FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN;
	wire_put_name(b, name, n);
	wire_put_u64(b, expiry);
	return 0;
}

static uint32_t b_delete_pat(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN;
	wire_put_name(b, c->params[0], c->param_len[0]);
	return 0;
}

/* ---- Streams ---- */

static uint32_t b_streams(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_STREAMS);
	return 0;
}

static uint32_t b_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_STREAM);
	NEED_ID(c, b, 0);
	return 0;
}

static uint32_t b_create_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	NEED(j_str(c->json, "name", &name, &n) == 0);
	*op = FRAME_OP_CREATE_STREAM;
	wire_put_name(b, name, n);
	return 0;
}

static uint32_t b_update_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	NEED(j_str(c->json, "name", &name, &n) == 0);
	*op = FRAME_OP_UPDATE_STREAM;
	NEED_ID(c, b, 0);
	wire_put_name(b, name, n);
	return 0;
}

/* Operations whose body is just the path's identifiers: nparams Identifiers. */
static uint32_t put_ids(struct http_call *c, struct wire_buf *b, int nparams)
{
	for (int i = 0; i < nparams; i++)
		NEED_ID(c, b, i);
	return 0;
}

static uint32_t b_delete_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_DELETE_STREAM;
	return put_ids(c, b, 1);
}

static uint32_t b_purge_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_PURGE_STREAM;
	return put_ids(c, b, 1);
}

/* ---- Topics ---- */

static uint32_t b_topics(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_TOPICS);
	return put_ids(c, b, 1);
}

static uint32_t b_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_TOPIC);
	return put_ids(c, b, 2);
}

/* The value kind a topic option key is sent with (a string given for it is converted). */
static uint8_t topic_option_kind(const char *key)
{
	static const char *const u64_keys[] = {"message_expiry", "max_topic_size", "segment_size",
					       "size_of_messages_required_to_save", "dedup_window"};
	for (size_t i = 0; i < sizeof(u64_keys) / sizeof(u64_keys[0]); i++)
		if (strcmp(key, u64_keys[i]) == 0)
			return WIRE_KIND_UINT64;
	if (strcmp(key, "messages_required_to_save") == 0)
		return WIRE_KIND_UINT32;
	if (strcmp(key, "enforce_fsync") == 0 || strcmp(key, "preallocate_segments") == 0)
		return WIRE_KIND_BOOL;
	return WIRE_KIND_STRING;
}

/* Appends one topic option from its JSON value (a string, number or boolean). */
static uint32_t put_topic_option(struct wire_buf *b, const char *key, const json_t *v)
{
	uint8_t kind = topic_option_kind(key), raw[8];
	char num[32];
	const char *s = NULL;
	size_t n = 0;
	if (json_is_object(v))
		v = json_object_get(v, "value");
	if (json_is_string(v)) {
		s = json_string_value(v);
		n = json_string_length(v);
	} else if (json_is_integer(v) && json_integer_value(v) >= 0) {
		n = (size_t)snprintf(num, sizeof(num), "%" PRIu64, (uint64_t)json_integer_value(v));
		s = num;
	} else if (json_is_boolean(v)) {
		s = json_is_true(v) ? "true" : "false";
		n = strlen(s);
	} else {
		return E_INVALID_FORMAT;
	}
	if (kind == WIRE_KIND_UINT64 || kind == WIRE_KIND_UINT32) {
		uint64_t x;
		if (strcmp(s, "never") == 0 || strcmp(s, "unlimited") == 0)
			x = UINT64_MAX;
		else if (!parse_u64(s, n, &x) || (kind == WIRE_KIND_UINT32 && x > UINT32_MAX))
			return 4042;
		for (int i = 0; i < 8; i++)
			raw[i] = (uint8_t)(x >> (8 * i));
		wire_put_option(b, key, strlen(key), kind, raw, kind == WIRE_KIND_UINT64 ? 8 : 4);
	} else if (kind == WIRE_KIND_BOOL) {
		if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
			return 4042;
		raw[0] = s[0] == 't';
		wire_put_option(b, key, strlen(key), kind, raw, 1);
	} else {
		wire_put_option(b, key, strlen(key), kind, s, n);
	}
	return 0;
}

/* The options TLV of a topic create or update: the named fields, then the "options" map. */
static uint32_t put_topic_options(const json_t *o, struct wire_buf *b)
{
	static const char *const named[] = {"compression_algorithm", "message_expiry", "max_topic_size"};
	const json_t *opts = json_object_get(o, "options");
	if (opts != NULL && !json_is_null(opts) && !json_is_object(opts))
		return E_INVALID_FORMAT;
	for (size_t i = 0; i < 3; i++) {
		const json_t *v = json_object_get(o, named[i]);
		if (v == NULL || json_is_null(v) || (json_is_object(opts) && json_object_get(opts, named[i]) != NULL))
			continue;
		/* 0 is the server default, as if absent; "none" is the default compression. */
		if ((json_is_integer(v) && json_integer_value(v) == 0) ||
		    (json_is_string(v) && (strcmp(json_string_value(v), "0") == 0 || strcmp(json_string_value(v), "server_default") == 0)))
			continue;
		uint32_t e = put_topic_option(b, named[i], v);
		if (e != 0)
			return e;
	}
	if (json_is_object(opts)) {
		const char *key;
		const json_t *v;
		json_object_foreach((json_t *)opts, key, v) {
			uint32_t e = put_topic_option(b, key, v);
			if (e != 0)
				return e;
		}
	}
	return 0;
}

static uint32_t b_create_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	uint32_t parts = 1;
	NEED(j_str(c->json, "name", &name, &n) == 0 && j_u32(c->json, "partitions_count", &parts) >= 0);
	*op = FRAME_OP_CREATE_TOPIC;
	NEED_ID(c, b, 0);
	wire_put_u32(b, parts);
	wire_put_name(b, name, n);
	return put_topic_options(c->json, b);
}

static uint32_t b_update_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	NEED(j_str(c->json, "name", &name, &n) == 0);
	*op = FRAME_OP_UPDATE_TOPIC;
	uint32_t e = put_ids(c, b, 2);
	if (e != 0)
		return e;
	wire_put_name(b, name, n);
	return put_topic_options(c->json, b);
}

static uint32_t b_delete_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_DELETE_TOPIC;
	return put_ids(c, b, 2);
}

static uint32_t b_purge_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_PURGE_TOPIC;
	return put_ids(c, b, 2);
}

/* ---- Partitions and segments ---- */

static uint32_t b_create_partitions(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	uint32_t n;
	NEED(j_u32(c->json, "partitions_count", &n) == 0);
	*op = FRAME_OP_CREATE_PARTITIONS;
	uint32_t e = put_ids(c, b, 2);
	wire_put_u32(b, n);
	return e;
}

static uint32_t b_delete_partitions(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	uint64_t n;
	NEED(query_u64(c, "partitions_count", 1, &n) == 0 && n <= UINT32_MAX);
	*op = FRAME_OP_DELETE_PARTITIONS;
	uint32_t e = put_ids(c, b, 2);
	wire_put_u32(b, (uint32_t)n);
	return e;
}

static uint32_t b_delete_segments(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	uint64_t n;
	uint32_t pid;
	NEED(query_u64(c, "segments_count", 1, &n) == 0 && n <= UINT32_MAX);
	if (!parse_u32(c->params[2], c->param_len[2], &pid))
		return E_INVALID_IDENTIFIER;
	*op = FRAME_OP_DELETE_SEGMENTS;
	uint32_t e = put_ids(c, b, 2);
	wire_put_u32(b, pid);
	wire_put_u32(b, (uint32_t)n);
	return e;
}

/* ---- Consumer groups ---- */

static uint32_t b_groups(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CONSUMER_GROUPS);
	return put_ids(c, b, 2);
}

static uint32_t b_group(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CONSUMER_GROUP);
	return put_ids(c, b, 3);
}

static uint32_t b_create_group(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	NEED(j_str(c->json, "name", &name, &n) == 0);
	*op = FRAME_OP_CREATE_CONSUMER_GROUP;
	uint32_t e = put_ids(c, b, 2);
	wire_put_name(b, name, n);
	return e;
}

static uint32_t b_delete_group(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_DELETE_CONSUMER_GROUP;
	return put_ids(c, b, 3);
}

/* ---- Messages and offsets ---- */

/* A Consumer from a kind name ("consumer" default, "consumer_group") and an identifier. */
static uint32_t put_consumer(struct wire_buf *b, const char *kind, const struct wire_id *id)
{
	struct wire_consumer wc = {WIRE_CONSUMER_SINGLE, *id};
	if (kind != NULL && strcmp(kind, "consumer_group") == 0)
		wc.kind = WIRE_CONSUMER_GROUP;
	else if (kind != NULL && kind[0] != '\0' && strcmp(kind, "consumer") != 0)
		return E_INVALID_FORMAT;
	wire_put_consumer(b, &wc);
	return 0;
}

/* The Consumer of a query (consumer_id, default 0, and consumer_kind). */
static uint32_t put_query_consumer(struct http_call *c, struct wire_buf *b)
{
	char *id = query_get(c, "consumer_id"), *kind = query_get(c, "consumer_kind");
	struct wire_id wid = wire_id_num(0);
	uint32_t e = id != NULL && !str_to_id(id, strlen(id), &wid) ? E_INVALID_IDENTIFIER : 0;
	if (e == 0)
		e = put_consumer(b, kind, &wid); /* the name is copied before id is freed */
	free(id);
	free(kind);
	return e;
}

/* The optional partition of a query: [flag u8][partition u32]. */
static uint32_t put_query_partition(struct http_call *c, struct wire_buf *b)
{
	char *s = query_get(c, "partition_id");
	struct wire_opt_partition p = {s != NULL, 0};
	bool ok = s == NULL || parse_u32(s, strlen(s), &p.id);
	free(s);
	if (!ok)
		return E_INVALID_FORMAT;
	wire_put_opt_partition(b, &p);
	return 0;
}

static uint32_t b_poll(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	static const char *const kinds[] = {"offset", "timestamp", "first", "last", "next"};
	NR(FRAME_CODE_POLL_MESSAGES);
	uint32_t e = put_query_consumer(c, b);
	if (e == 0)
		e = put_ids(c, b, 2);
	if (e == 0)
		e = put_query_partition(c, b);
	if (e != 0)
		return e;
	char *k = query_get(c, "kind"), *ac = query_get(c, "auto_commit");
	struct wire_polling pol = {WIRE_POLL_OFFSET, 0};
	uint64_t count;
	bool ok = true;
	if (k != NULL) {
		pol.kind = 0;
		for (uint8_t i = 0; i < 5; i++)
			if (strcasecmp(k, kinds[i]) == 0)
				pol.kind = (uint8_t)(i + 1);
		ok = pol.kind != 0;
	}
	ok = ok && query_u64(c, "value", 0, &pol.value) == 0 && query_u64(c, "count", POLL_DEFAULT_COUNT, &count) == 0 &&
	     count <= UINT32_MAX;
	bool auto_commit = ac != NULL && (strcmp(ac, "true") == 0 || strcmp(ac, "1") == 0);
	ok = ok && (ac == NULL || auto_commit || strcmp(ac, "false") == 0 || strcmp(ac, "0") == 0);
	free(k);
	free(ac);
	if (!ok)
		return E_INVALID_FORMAT;
	wire_put_polling(b, &pol);
	wire_put_u32(b, (uint32_t)count);
	wire_put_u8(b, auto_commit);
	return 0;
}

static uint32_t b_get_offset(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CONSUMER_OFFSET);
	uint32_t e = put_query_consumer(c, b);
	if (e == 0)
		e = put_ids(c, b, 2);
	return e != 0 ? e : put_query_partition(c, b);
}

static uint32_t b_store_offset(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	struct wire_id id = wire_id_num(0);
	const char *kind = NULL;
	size_t kl;
	uint64_t offset;
	struct wire_opt_partition p = {false, 0};
	int hp = j_u32(c->json, "partition_id", &p.id);
	NEED(j_id(c->json, "consumer_id", &id) >= 0 && hp >= 0 && j_u64(c->json, "offset", &offset) == 0 &&
	     j_str(c->json, "consumer_kind", &kind, &kl) >= 0);
	p.present = hp == 0;
	*op = FRAME_OP_STORE_CONSUMER_OFFSET;
	uint32_t e = put_consumer(b, kind, &id);
	if (e == 0)
		e = put_ids(c, b, 2);
	wire_put_opt_partition(b, &p);
	wire_put_u64(b, offset);
	wire_put_u8(b, 1);
	return e;
}

static uint32_t b_delete_offset(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	struct wire_id id;
	if (!str_to_id(c->params[2], c->param_len[2], &id))
		return E_INVALID_IDENTIFIER;
	char *kind = query_get(c, "consumer_kind");
	*op = FRAME_OP_DELETE_CONSUMER_OFFSET;
	uint32_t e = put_consumer(b, kind, &id);
	free(kind);
	if (e == 0)
		e = put_ids(c, b, 2);
	if (e == 0)
		e = put_query_partition(c, b);
	wire_put_u8(b, 1);
	return e;
}

/* A message id: absent or 0 (a random UUIDv4 then), a number, a decimal string, or hex / a UUID. */
static bool message_id(const json_t *v, uint64_t *lo, uint64_t *hi)
{
	unsigned __int128 x = 0;
	if (v == NULL || json_is_null(v)) {
		x = 0;
	} else if (json_is_integer(v) && json_integer_value(v) >= 0) {
		x = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		bool digits = n > 0 && strspn(s, "0123456789") == n;
		int ndig = 0;
		for (size_t i = 0; i < n; i++) {
			if (s[i] == '-' && !digits)
				continue;
			int d = digits ? s[i] - '0' : hex_value(s[i]);
			if (d < 0 || ++ndig > (digits ? 39 : 32))
				return false;
			unsigned __int128 next = x * (digits ? 10u : 16u) + (unsigned)d;
			if (digits && next / 10u != x)
				return false;
			x = next;
		}
		if (ndig == 0)
			return false;
	} else {
		return false;
	}
	if (x == 0) {
		uint8_t r[16];
		if (RAND_bytes(r, sizeof(r)) != 1)
			return false;
		r[9] = (uint8_t)((r[9] & 0x0f) | 0x40); /* version 4 (UUID byte 6, stored little-endian) */
		r[7] = (uint8_t)((r[7] & 0x3f) | 0x80); /* variant (UUID byte 8) */
		*lo = frame_le64(r);
		*hi = frame_le64(r + 8);
		return true;
	}
	*lo = (uint64_t)x;
	*hi = (uint64_t)(x >> 64);
	return true;
}

/* A base64 field decoded into a new buffer (empty string: NULL with *n = 0). */
static int j_b64(const json_t *o, const char *k, uint8_t **out, size_t *n)
{
	const char *s;
	size_t sl;
	int rc = j_str(o, k, &s, &sl);
	*out = NULL;
	*n = 0;
	if (rc != 0)
		return rc;
	uint8_t *buf = malloc(sl / 4 * 3 + 3);
	if (buf == NULL)
		return -1;
	long len = http_b64_decode(s, sl, buf);
	if (len < 0) {
		free(buf);
		return -1;
	}
	*out = buf;
	*n = (size_t)len;
	return 0;
}

/* A kind name (see the file comment) to its value, or 0. */
static uint8_t kind_from_name(const char *s)
{
	for (uint8_t i = 1; i < N_KINDS; i++)
		if (strcasecmp(s, kind_names[i]) == 0)
			return i;
	return 0;
}

/* User headers JSON to the TLV of reference §3.3. */
static uint32_t put_user_headers(const json_t *arr, struct wire_buf *b)
{
	if (arr == NULL || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return E_INVALID_FORMAT;
	size_t i;
	const json_t *h;
	json_array_foreach(arr, i, h) {
		for (int part = 0; part < 2; part++) {
			const json_t *kv = json_object_get(h, part == 0 ? "key" : "value");
			const char *kn;
			size_t kl;
			uint8_t *v;
			size_t vl;
			if (!json_is_object(kv) || j_str(kv, "kind", &kn, &kl) != 0 || j_b64(kv, "value", &v, &vl) != 0)
				return E_INVALID_FORMAT;
			uint8_t kind = kind_from_name(kn);
			bool ok = kind != 0 && vl >= 1 && vl <= 255;
			if (ok) {
				wire_put_u8(b, kind);
				wire_put_u32(b, (uint32_t)vl);
				wire_put_bytes(b, v, vl);
			}
			free(v);
			if (!ok)
				return 4017;
		}
	}
	return 0;
}

/* The partitioning object: balanced (default), partition_id (base64 of a u32 or a number), messages_key. */
static uint32_t put_partitioning(const json_t *o, struct wire_buf *b)
{
	const json_t *p = json_object_get(o, "partitioning");
	struct wire_partitioning wp = {WIRE_PART_BALANCED, 0, {NULL, 0}};
	uint8_t *v = NULL;
	size_t vl = 0;
	if (p != NULL && !json_is_null(p)) {
		const char *kind;
		size_t kl;
		if (!json_is_object(p) || j_str(p, "kind", &kind, &kl) != 0)
			return E_INVALID_FORMAT;
		const json_t *val = json_object_get(p, "value");
		if (strcmp(kind, "balanced") == 0) {
			wp.kind = WIRE_PART_BALANCED;
		} else if (strcmp(kind, "partition_id") == 0) {
			wp.kind = WIRE_PART_PARTITION_ID;
			if (json_is_integer(val) && json_integer_value(val) >= 0 && json_integer_value(val) <= UINT32_MAX) {
				wp.partition_id = (uint32_t)json_integer_value(val);
			} else {
				if (j_b64(p, "value", &v, &vl) != 0 || vl != 4) {
					free(v);
					return E_INVALID_FORMAT;
				}
				wp.partition_id = frame_le32(v);
			}
		} else if (strcmp(kind, "messages_key") == 0) {
			if (j_b64(p, "value", &v, &vl) != 0 || vl == 0 || vl > 255) {
				free(v);
				return E_INVALID_FORMAT;
			}
			wp.kind = WIRE_PART_MESSAGES_KEY;
			wp.key = (struct wire_str){v, vl};
		} else {
			return E_INVALID_FORMAT;
		}
	}
	wire_put_partitioning(b, &wp);
	free(v);
	return 0;
}

/*
 * SendMessages (reference §3.1-§3.3): [metadata_length u32][stream Id][topic Id][partitioning]
 * [messages_count u32], then one batch: a 256-byte header and a 48-byte frame header + payload + user
 * headers per message, with the frame and batch checksums (XXH3-64) the producer computes.
 */
static uint32_t b_send(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const json_t *msgs = json_object_get(c->json, "messages");
	NEED(json_is_array(msgs) && json_array_size(msgs) > 0 && json_array_size(msgs) <= UINT32_MAX);
	uint32_t count = (uint32_t)json_array_size(msgs);
	char *ack = query_get(c, "ack");
	if (ack != NULL && strcmp(ack, "none") == 0)
		c->early_status = 202;
	free(ack);
	*op = FRAME_OP_SEND_MESSAGES;
	size_t meta_at = wire_put_reserve(b, 4);
	uint32_t e = put_ids(c, b, 2);
	if (e == 0)
		e = put_partitioning(c->json, b);
	if (e != 0)
		return e;
	wire_put_u32(b, count);
	wire_patch_u32(b, meta_at, (uint32_t)(b->len - meta_at - 4));
	size_t batch_at = wire_put_reserve(b, BATCH_HEADER_SIZE);
	size_t *frames = calloc(count + 1, sizeof(*frames));
	if (frames == NULL)
		return E_ERROR;
	uint64_t origin = now_us();
	size_t i;
	const json_t *m;
	json_array_foreach(msgs, i, m) {
		uint64_t lo, hi;
		uint8_t *payload;
		size_t pl;
		if (!json_is_object(m) || !message_id(json_object_get(m, "id"), &lo, &hi) ||
		    j_b64(m, "payload", &payload, &pl) != 0) {
			free(frames);
			return E_INVALID_FORMAT;
		}
		frames[i] = b->len;
		wire_put_u64(b, 0); /* checksum, below */
		wire_put_u64(b, lo);
		wire_put_u64(b, hi);
		wire_put_u32(b, (uint32_t)i);
		wire_put_u32(b, 0); /* timestamp delta: every message has the batch's origin timestamp */
		size_t hl_at = wire_put_reserve(b, 4);
		wire_put_u32(b, (uint32_t)pl);
		wire_put_u64(b, 0);
		wire_put_bytes(b, payload, pl);
		free(payload);
		size_t h_start = b->len;
		e = put_user_headers(json_object_get(m, "user_headers"), b);
		if (e != 0) {
			free(frames);
			return e;
		}
		wire_patch_u32(b, hl_at, (uint32_t)(b->len - h_start));
	}
	frames[count] = b->len;
	if (wire_buf_error(b) != 0) {
		free(frames);
		return E_ERROR;
	}
	uint64_t batch_len = b->len - batch_at;
	XXH3_state_t *st = XXH3_createState();
	if (st == NULL) {
		free(frames);
		return E_ERROR;
	}
	uint8_t head[44] = {0};
	frame_put64(head + 24, origin);
	frame_put64(head + 32, batch_len);
	frame_put32(head + 40, count);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, head, sizeof(head));
	for (uint32_t k = 0; k < count; k++) {
		uint8_t sum[8];
		uint64_t v = XXH3_64bits(b->p + frames[k] + 8, frames[k + 1] - frames[k] - 8);
		frame_put64(b->p + frames[k], v);
		frame_put64(sum, v);
		XXH3_64bits_update(st, sum, 8);
	}
	uint64_t batch_sum = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	free(frames);
	uint8_t *h = b->p + batch_at;
	memset(h, 0, BATCH_HEADER_SIZE);
	frame_put64(h + 24, origin);
	frame_put64(h + 32, batch_len);
	frame_put64(h + 40, batch_sum);
	frame_put32(h + 48, count);
	return 0;
}

/* ---- Authentication replies ---- */

/* Answers IdentityInfo with a new access token for the user. */
static void respond_identity(struct http_call *c, uint32_t user_id)
{
	uint64_t exp;
	char *tok = jwt_issue(c->srv, user_id, &exp);
	if (tok == NULL) {
		call_error(c, E_ERROR);
		return;
	}
	struct jw w;
	jw_init(&w);
	jw_open(&w, '{');
	JW_KU64(&w, "user_id", user_id);
	jw_key(&w, "access_token");
	jw_open(&w, '{');
	JW_KSTR(&w, "token", tok);
	JW_KU64(&w, "expiry", exp);
	jw_close(&w, '}');
	jw_close(&w, '}');
	free(tok);
	call_respond_json(c, 200, &w, NULL, NULL);
}

/* LoginRegisterResponse: [user_id u32][session u64][protocol u32][server_version WireName]. */
static bool parse_login(const uint8_t *p, size_t n, uint32_t *user_id, uint64_t *session)
{
	struct wire_rd r;
	wire_rd_init(&r, p, n);
	*user_id = wire_get_u32(&r);
	*session = wire_get_u64(&r);
	return wire_rd_error(&r) == 0;
}

static void reply_login(struct http_call *c, const uint8_t *p, size_t n)
{
	uint32_t uid;
	uint64_t session;
	if (!parse_login(p, n, &uid, &session)) {
		call_error(c, E_ERROR);
		return;
	}
	respond_identity(c, uid);
}

static void reply_refresh(struct http_call *c, const uint8_t *p, size_t n)
{
	respond_identity(c, c->user_id);
}

static void reply_logout(struct http_call *c, const uint8_t *p, size_t n)
{
	if (c->bearer_is_jwt)
		jwt_revoke(c->srv, c->jti, c->jwt_exp);
	call_ok_empty(c, 204);
}

static void reply_pong(struct http_call *c, const uint8_t *p, size_t n)
{
	call_respond(c, 200, "text/plain; charset=utf-8", "pong", 4, NULL, NULL);
}

/* ---- Local routes ---- */

static void local_metrics(struct http_call *c)
{
	char *text = NULL;
	size_t len = 0;
	if (c->srv->opts.metrics == NULL) {
		call_error(c, E_NOT_IMPLEMENTED);
		return;
	}
	if (c->srv->opts.metrics(c->srv->opts.log_ud, &text, &len) != 0 || text == NULL) {
		free(text);
		call_error(c, E_ERROR);
		return;
	}
	call_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL, NULL);
	free(text);
}

static void local_health(struct http_call *c, bool ready)
{
	char *text = NULL;
	size_t len = 0;
	int status;
	if (c->srv->opts.health == NULL) {
		static const char live[] = "{\"live\":true}", not_ready[] = "{\"ready\":false}";
		call_respond(c, ready ? 503 : 200, "application/json", ready ? not_ready : live,
			     ready ? sizeof(not_ready) - 1 : sizeof(live) - 1, NULL, NULL);
		return;
	}
	status = c->srv->opts.health(c->srv->opts.log_ud, ready, &text, &len);
	if ((status != 200 && status != 503) || text == NULL) {
		free(text);
		call_error(c, E_ERROR);
		return;
	}
	call_respond(c, status, "application/json", text, len, NULL, NULL);
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

static void local_not_implemented(struct http_call *c)
{
	call_error(c, E_NOT_IMPLEMENTED);
}

/* ---- Routes ---- */

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
	{"GET", "/ping", AUTH_NONE, false, b_ping, reply_pong, 200, NULL},
	{"GET", "/stats", AUTH_BEARER, false, b_stats, reply_stats, 200, NULL},
	{"GET", "/cluster/metadata", AUTH_BEARER, false, b_cluster, reply_cluster, 200, NULL},
	{"GET", "/metrics", AUTH_METRICS, false, NULL, NULL, 200, local_metrics},
	{"GET", "/health/live", AUTH_NONE, false, NULL, NULL, 200, local_health_live},
	{"GET", "/health/ready", AUTH_NONE, false, NULL, NULL, 200, local_health_ready},
	{"GET", "/clients", AUTH_BEARER, false, b_clients, reply_clients, 200, NULL},
	{"GET", "/clients/*", AUTH_BEARER, false, b_client, reply_client, 200, NULL},
	{"GET", "/options/*", AUTH_BEARER, false, b_options, reply_options, 200, NULL},
	{"POST", "/snapshot", AUTH_BEARER, false, NULL, NULL, 200, local_not_implemented},
	{"POST", "/users/login", AUTH_NONE, true, b_login, reply_login, 200, NULL},
	{"POST", "/users/refresh-token", AUTH_BODY_TOKEN, true, b_me, reply_refresh, 200, NULL},
	{"DELETE", "/users/logout", AUTH_BEARER, false, b_logout, reply_logout, 204, NULL},
	{"POST", "/personal-access-tokens/login", AUTH_NONE, true, b_pat_login, reply_login, 200, NULL},
	{"GET", "/personal-access-tokens", AUTH_BEARER, false, b_pats, reply_pats, 200, NULL},
	{"POST", "/personal-access-tokens", AUTH_BEARER, true, b_create_pat, reply_pat_created, 200, NULL},
	{"DELETE", "/personal-access-tokens/*", AUTH_BEARER, false, b_delete_pat, NULL, 204, NULL},
	{"GET", "/users", AUTH_BEARER, false, b_users, reply_users, 200, NULL},
	{"POST", "/users", AUTH_BEARER, true, b_create_user, reply_user, 200, NULL},
	{"GET", "/users/*", AUTH_BEARER, false, b_user, reply_user, 200, NULL},
	{"PUT", "/users/*", AUTH_BEARER, true, b_update_user, NULL, 204, NULL},
	{"DELETE", "/users/*", AUTH_BEARER, false, b_delete_user, NULL, 204, NULL},
	{"PUT", "/users/*/password", AUTH_BEARER, true, b_password, NULL, 204, NULL},
	{"PUT", "/users/*/permissions", AUTH_BEARER, true, b_permissions, NULL, 204, NULL},
	{"GET", "/streams", AUTH_BEARER, false, b_streams, reply_streams, 200, NULL},
	{"POST", "/streams", AUTH_BEARER, true, b_create_stream, reply_stream, 200, NULL},
	{"GET", "/streams/*", AUTH_BEARER, false, b_stream, reply_stream, 200, NULL},
	{"PUT", "/streams/*", AUTH_BEARER, true, b_update_stream, NULL, 204, NULL},
	{"DELETE", "/streams/*", AUTH_BEARER, false, b_delete_stream, NULL, 204, NULL},
	{"DELETE", "/streams/*/purge", AUTH_BEARER, false, b_purge_stream, NULL, 204, NULL},
	{"GET", "/streams/*/topics", AUTH_BEARER, false, b_topics, reply_topics, 200, NULL},
	{"POST", "/streams/*/topics", AUTH_BEARER, true, b_create_topic, reply_topic, 200, NULL},
	{"GET", "/streams/*/topics/*", AUTH_BEARER, false, b_topic, reply_topic, 200, NULL},
	{"PUT", "/streams/*/topics/*", AUTH_BEARER, true, b_update_topic, NULL, 204, NULL},
	{"DELETE", "/streams/*/topics/*", AUTH_BEARER, false, b_delete_topic, NULL, 204, NULL},
	{"DELETE", "/streams/*/topics/*/purge", AUTH_BEARER, false, b_purge_topic, NULL, 204, NULL},
	{"POST", "/streams/*/topics/*/partitions", AUTH_BEARER, true, b_create_partitions, NULL, 200, NULL},
	{"DELETE", "/streams/*/topics/*/partitions", AUTH_BEARER, false, b_delete_partitions, NULL, 204, NULL},
	{"DELETE", "/streams/*/topics/*/partitions/*", AUTH_BEARER, false, b_delete_segments, NULL, 204, NULL},
	{"GET", "/streams/*/topics/*/consumer-groups", AUTH_BEARER, false, b_groups, reply_groups, 200, NULL},
	{"POST", "/streams/*/topics/*/consumer-groups", AUTH_BEARER, true, b_create_group, reply_group, 200, NULL},
	{"GET", "/streams/*/topics/*/consumer-groups/*", AUTH_BEARER, false, b_group, reply_group, 200, NULL},
	{"DELETE", "/streams/*/topics/*/consumer-groups/*", AUTH_BEARER, false, b_delete_group, NULL, 204, NULL},
	{"POST", "/streams/*/topics/*/messages", AUTH_BEARER, true, b_send, reply_sent, 201, NULL},
	{"GET", "/streams/*/topics/*/messages", AUTH_BEARER, false, b_poll, reply_polled, 200, NULL},
	{"GET", "/streams/*/topics/*/consumer-offsets", AUTH_BEARER, false, b_get_offset, reply_offset, 200, NULL},
	{"PUT", "/streams/*/topics/*/consumer-offsets", AUTH_BEARER, true, b_store_offset, NULL, 204, NULL},
	{"DELETE", "/streams/*/topics/*/consumer-offsets/*", AUTH_BEARER, false, b_delete_offset, NULL, 204, NULL},
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
		call_error(c, e);
		return;
	}
	call_forward(c, op, code, &b);
	if (c->early_status != 0 && c->waiting)
		call_ok_empty(c, c->early_status);
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
		err = E_ERROR;
	} else if (frame_peek_command(f) == FRAME_CMD_EVICTION) {
		struct frame_eviction ev;
		reason = frame_eviction_decode(f, &ev) == 0 ? ev.reason : FRAME_EVICT_SESSION_ERROR;
	} else {
		struct frame_reply r;
		if (frame_reply_decode(f, &r) != 0 || r.size != n) {
			err = E_ERROR;
		} else if (r.status != 0) {
			err = r.status;
		} else {
			body = f + FRAME_HEADER_SIZE;
			blen = n - FRAME_HEADER_SIZE;
			if (frame_op_is_result_framed(r.operation, blen > 0)) {
				uint32_t re;
				size_t off;
				if (frame_result_split(body, blen, &re, &off) != 0)
					err = E_INVALID_COMMAND;
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
			err = reason == FRAME_EVICT_USER_INACTIVE ? E_UNAUTHENTICATED : E_INVALID_PAT;
		if (err == 0 && !parse_login(body, blen, &c->user_id, &session))
			err = E_ERROR;
		if (err != 0) {
			call_error(c, err);
		} else {
			c->session = session;
			c->authenticated = true;
			call_main(c);
		}
	} else if (c->stage == STAGE_MAIN) {
		c->stage = STAGE_DONE;
		if (reason != 0)
			call_error(c, evict_error(reason));
		else if (err != 0)
			call_error(c, err);
		else if (c->route->reply != NULL)
			c->route->reply(c, body, blen);
		else
			call_ok_empty(c, c->route->ok_status);
	}
	free(f);
	call_maybe_end(c);
}

static void on_idle(uv_idle_t *h)
{
	struct http_server *s = h->data;
	while (!list_empty(&s->ready)) {
		struct http_call *c = container_of(s->ready.next, struct http_call, ready_link);
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
			call_error(c, E_ACCESS_TOKEN_MISSING);
			return;
		}
		if (strchr(c->bearer, '.') != NULL) {
			if (jwt_verify(s, c->bearer, &uid, c->jti, &c->jwt_exp) != 0) {
				call_error(c, E_INVALID_ACCESS_TOKEN);
				return;
			}
			jwt = c->bearer_is_jwt = true;
		} else if (strlen(c->bearer) > 255) {
			call_error(c, E_INVALID_PAT);
			return;
		}
	} else if (auth == AUTH_BODY_TOKEN) {
		const char *tok;
		size_t n;
		if (j_str(c->json, "token", &tok, &n) != 0 || jwt_verify(s, tok, &uid, c->jti, &c->jwt_exp) != 0) {
			call_error(c, E_INVALID_ACCESS_TOKEN);
			return;
		}
		jwt = true;
	}
	if (s->h.on_open(c) != 0) {
		call_error(c, 58);
		return;
	}
	c->opened = true;
	if (jwt) {
		if (s->h.on_auth(c, uid) != 0) {
			call_error(c, E_INVALID_ACCESS_TOKEN);
			return;
		}
		c->user_id = uid;
		c->authenticated = true;
		call_main(c);
	} else if (auth == AUTH_BEARER) {
		struct wire_buf b;
		wire_buf_init(&b);
		put_pat_register(&b, c->bearer, strlen(c->bearer));
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
		call_error(c, 58); /* true: nothing of it reached the server */
	} else if (c->route == NULL) {
		if (path_known) {
			c->no_view = true;
			call_respond(c, 405, "text/plain; charset=utf-8", "method not allowed", 18, NULL, NULL);
		} else {
			call_error(c, E_NOT_FOUND);
		}
	} else {
		c->no_view = c->route->build == b_ping;
		for (int i = 0; i < nseg; i++) {
			c->params[i] = pct_decode(seg[i], seg_len[i], false, &c->param_len[i]);
			if (c->params[i] == NULL)
				break;
			c->n_params = i + 1;
		}
		json_error_t jerr;
		if (c->n_params != nseg) {
			call_error(c, E_ERROR);
		} else if (c->route->json &&
			   ((c->json = json_load_body(req->entity.base != NULL ? req->entity.base : "", req->entity.len,
						      &jerr)) == NULL ||
			    !json_is_object(c->json))) {
			call_error(c, E_INVALID_FORMAT);
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
	while (!list_empty(&s->revoked)) {
		struct revoked *r = container_of(s->revoked.next, struct revoked, link);
		list_remove(&r->link);
		free(r);
	}
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
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
	list_init(&s->revoked);
	if (opts->jwt_secret != NULL && opts->jwt_secret[0] != '\0') {
		/* A longer secret is hashed to 32 bytes, as HMAC itself would do with one above its block. */
		size_t n = strlen(opts->jwt_secret);
		if (n <= sizeof(s->secret)) {
			memcpy(s->secret, opts->jwt_secret, n);
			s->secret_len = n;
		} else {
			unsigned int len = 32;
			EVP_Digest(opts->jwt_secret, n, s->secret, &len, EVP_sha256(), NULL);
			s->secret_len = len;
		}
	} else {
		s->secret_len = 32;
		if (RAND_bytes(s->secret, 32) != 1) {
			free(s);
			return -EIO;
		}
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
	http_log(s, HTTP_LOG_INFO, "draining: listener closed, new requests answered 58");
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
			call_error(c, E_ERROR);
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
