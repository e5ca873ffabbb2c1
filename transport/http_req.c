/*
 * http_req — the HTTP listener's request mapping: a REST request (path parameters, query and JSON
 * body) to the binary request of the Iggy protocol it stands for (reference §2 and §3): the
 * operation, or NonReplicated with its code, and the body written with wire_buf. One http__req_*
 * function per route of the table in http.c; each returns 0, or the Iggy error code the call is
 * answered with instead. It reads the call and writes nothing of it but early_status (SendMessages
 * with ?ack=none).
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
 *
 * UserHeader and the permissions object are those of the replies (the top of http_reply.c).
 */
#include "transport/http_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

#define SDK_NAME "galgo-http"
#define SDK_VERSION "0.1.0"
#define POLL_DEFAULT_COUNT 10

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
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
char *http__pct_decode(const char *s, size_t n, bool plus, size_t *out_len)
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
bool http__parse_u32(const char *s, size_t n, uint32_t *v)
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
	if (http__parse_u32(s, n, &out->num)) {
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
			return eq != NULL ? http__pct_decode(eq + 1, n - nl - 1, true, NULL) : strdup("");
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
int http__j_str(const json_t *o, const char *k, const char **s, size_t *n)
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
json_t *http__json_load_body(const char *p, size_t n, json_error_t *err)
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

/* ---- JSON and query to binary requests ---- */

#define NR(cd) (*op = FRAME_OP_NON_REPLICATED, *code = (cd))
#define NEED(x)                                                                                            \
	do {                                                                                               \
		if (!(x))                                                                                  \
			return PROTO_E_INVALID_FORMAT;                                                           \
	} while (0)
#define NEED_ID(c, b, i)                                                                                   \
	do {                                                                                               \
		if (!put_param_id((c), (b), (i)))                                                          \
			return PROTO_E_INVALID_IDENTIFIER;                                                       \
	} while (0)

static void put_version_info(struct wire_buf *b)
{
	struct wire_version_info v = {FRAME_PROTOCOL_VERSION, {(const uint8_t *)SDK_NAME, strlen(SDK_NAME)},
				      {(const uint8_t *)SDK_VERSION, strlen(SDK_VERSION)}};
	wire_put_version_info(b, &v);
}

uint32_t http__req_ping(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_PING);
	return 0;
}

uint32_t http__req_stats(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_STATS);
	return 0;
}

uint32_t http__req_cluster(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CLUSTER_METADATA);
	return 0;
}

uint32_t http__req_clients(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CLIENTS);
	return 0;
}

uint32_t http__req_client(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	uint32_t id;
	if (!http__parse_u32(c->params[0], c->param_len[0], &id))
		return PROTO_E_INVALID_IDENTIFIER;
	NR(FRAME_CODE_GET_CLIENT);
	wire_put_u32(b, id);
	return 0;
}

uint32_t http__req_options(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	static const char *const scopes[] = {"topic", "stream", "user"};
	for (uint8_t i = 0; i < 3; i++)
		if (strcmp(c->params[0], scopes[i]) == 0) {
			NR(FRAME_CODE_DESCRIBE_OPTIONS);
			wire_put_u8(b, (uint8_t)(i + 1));
			return 0;
		}
	return PROTO_E_INVALID_FORMAT;
}

/* The index (0-based) of name in names, compared without case; -1 if absent. */
static int name_index(const char *const *names, size_t n_names, const char *s, size_t n)
{
	for (size_t i = 0; i < n_names; i++)
		if (strlen(names[i]) == n && strncasecmp(names[i], s, n) == 0)
			return (int)i;
	return -1;
}

/*
 * POST /snapshot {"compression"?: name, "snapshot_types"?: [name]}: GetSnapshotFile (NR 11). The names are
 * Iggy's (serde's variant names, any case; the snake_case ones of its CLI are taken too); a missing field
 * takes Iggy's GetSnapshot default (Deflated; FilesystemOverview, ProcessList, ResourceUsage, ServerLogs).
 */
uint32_t http__req_snapshot(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	static const char *const comps[] = {"Stored", "Deflated", "Bzip2", "Zstd", "Lzma", "Xz"};
	static const char *const types[] = {"FilesystemOverview", "ProcessList", "ResourceUsage", "Test",
					    "ServerLogs", "ServerConfig"};
	static const char *const snake[] = {"filesystem_overview", "process_list", "resource_usage", "test",
					    "server_logs", "server_config"};
	static const uint8_t defaults[] = {1, 2, 3, 5};
	const char *s;
	size_t n;
	uint8_t comp = 2, list[255];
	size_t count = 0;
	int rc = http__j_str(c->json, "compression", &s, &n);
	NEED(rc >= 0);
	if (rc == 0) {
		int i = name_index(comps, 6, s, n);
		NEED(i >= 0);
		comp = (uint8_t)(i + 1);
	}
	const json_t *arr = json_object_get(c->json, "snapshot_types");
	if (arr == NULL || json_is_null(arr)) {
		memcpy(list, defaults, sizeof(defaults));
		count = sizeof(defaults);
	} else {
		NEED(json_is_array(arr) && json_array_size(arr) <= sizeof(list));
		for (size_t k = 0; k < json_array_size(arr); k++) {
			const json_t *v = json_array_get(arr, k);
			NEED(json_is_string(v));
			s = json_string_value(v);
			n = json_string_length(v);
			int i = name_index(types, 6, s, n);
			if (i < 0)
				i = name_index(snake, 6, s, n);
			if (i < 0 && n == 3 && strncasecmp(s, "all", 3) == 0)
				i = 99; /* All: code 100 */
			NEED(i >= 0);
			list[count++] = (uint8_t)(i + 1);
		}
	}
	NR(FRAME_CODE_GET_SNAPSHOT_FILE);
	wire_put_u8(b, comp);
	wire_put_u8(b, (uint8_t)count);
	wire_put_bytes(b, list, count);
	return 0;
}

uint32_t http__req_login(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *user, *pw;
	size_t ul, pl;
	NEED(http__j_str(c->json, "username", &user, &ul) == 0 && http__j_str(c->json, "password", &pw, &pl) == 0);
	if (ul == 0 || ul > WIRE_NAME_MAX || pl > 255)
		return PROTO_E_INVALID_CREDENTIALS;
	*op = FRAME_OP_REGISTER;
	put_version_info(b);
	wire_put_name(b, user, ul);
	wire_put_str8(b, pw, pl);
	wire_put_str32(b, "", 0);
	return 0;
}

/* The Register-with-PAT body of a token. */
void http__put_pat_register(struct wire_buf *b, const char *tok, size_t n)
{
	put_version_info(b);
	wire_put_str8(b, tok, n);
	wire_put_str32(b, "", 0);
}

uint32_t http__req_pat_login(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *tok;
	size_t n;
	NEED(http__j_str(c->json, "token", &tok, &n) == 0);
	if (n == 0 || n > 255)
		return PROTO_E_INVALID_PERSONAL_ACCESS_TOKEN;
	*op = FRAME_OP_REGISTER;
	http__put_pat_register(b, tok, n);
	return 0;
}

uint32_t http__req_me(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_ME);
	return 0;
}

uint32_t http__req_logout(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_LOGOUT;
	return 0;
}

/* ---- Users ---- */

uint32_t http__req_users(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
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
	return put_param_id(c, b, 0) ? 0 : PROTO_E_INVALID_IDENTIFIER;
}

uint32_t http__req_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
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

/* Permissions JSON (UserInfoDetails at the top of http_reply.c) to the wire struct; free with wire_perms_free. */
static uint32_t perms_from_json(const json_t *j, struct wire_perms *p)
{
	memset(p, 0, sizeof(*p));
	if (!json_is_object(j))
		return PROTO_E_INVALID_FORMAT;
	const json_t *g = json_object_get(j, "global");
	if (g != NULL && !json_is_null(g)) {
		if (!json_is_object(g))
			return PROTO_E_INVALID_FORMAT;
		bool ok = perm_flag(g, "manage_servers", &p->manage_servers) && perm_flag(g, "read_servers", &p->read_servers) &&
			  perm_flag(g, "manage_users", &p->manage_users) && perm_flag(g, "read_users", &p->read_users) &&
			  perm_flag(g, "manage_streams", &p->manage_streams) &&
			  perm_flag(g, "read_streams", &p->read_streams) &&
			  perm_flag(g, "manage_topics", &p->manage_topics) && perm_flag(g, "read_topics", &p->read_topics) &&
			  perm_flag(g, "poll_messages", &p->poll_messages) &&
			  perm_flag(g, "send_messages", &p->send_messages);
		if (!ok)
			return PROTO_E_INVALID_FORMAT;
	}
	const json_t *ss = json_object_get(j, "streams");
	if (ss == NULL || json_is_null(ss) || json_object_size(ss) == 0)
		return json_is_object(ss) || ss == NULL || json_is_null(ss) ? 0 : PROTO_E_INVALID_FORMAT;
	if (!json_is_object(ss))
		return PROTO_E_INVALID_FORMAT;
	p->streams = calloc(json_object_size(ss), sizeof(*p->streams));
	if (p->streams == NULL)
		return PROTO_E_ERROR;
	const char *key;
	const json_t *sv;
	json_object_foreach((json_t *)ss, key, sv) {
		struct wire_perm_stream *st = &p->streams[p->streams_count++];
		if (!http__parse_u32(key, strlen(key), &st->id) || !json_is_object(sv))
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
			if (!http__parse_u32(tk, strlen(tk), &t->id) || !json_is_object(tv) ||
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
	return PROTO_E_INVALID_FORMAT;
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
	int rc = http__j_str(o, "status", &s, &n);
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

uint32_t http__req_create_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *user, *pw;
	size_t ul, pl;
	uint8_t status;
	NEED(http__j_str(c->json, "username", &user, &ul) == 0 && http__j_str(c->json, "password", &pw, &pl) == 0);
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

uint32_t http__req_update_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *user;
	size_t ul;
	uint8_t status;
	int hu = http__j_str(c->json, "username", &user, &ul), hs = user_status(c->json, 0, &status);
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

uint32_t http__req_delete_user(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_DELETE_USER;
	return put_user_param(c, b);
}

uint32_t http__req_password(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *cur, *new;
	size_t cl, nl;
	NEED(http__j_str(c->json, "current_password", &cur, &cl) == 0 &&
	     http__j_str(c->json, "new_password", &new, &nl) == 0);
	if (cl > 255 || nl == 0 || nl > 255)
		return 44;
	*op = FRAME_OP_CHANGE_PASSWORD;
	uint32_t e = put_user_param(c, b);
	wire_put_str8(b, cur, cl);
	wire_put_str8(b, new, nl);
	return e;
}

uint32_t http__req_permissions(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_UPDATE_PERMISSIONS;
	uint32_t e = put_user_param(c, b);
	return e != 0 ? e : put_perms_field(c->json, b);
}

/* ---- Personal access tokens ---- */

uint32_t http__req_pats(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_PERSONAL_ACCESS_TOKENS);
	return 0;
}

uint32_t http__req_create_pat(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	uint64_t expiry = 0;
	NEED(http__j_str(c->json, "name", &name, &n) == 0 && j_u64(c->json, "expiry", &expiry) >= 0);
	*op = FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN;
	wire_put_name(b, name, n);
	wire_put_u64(b, expiry);
	return 0;
}

uint32_t http__req_delete_pat(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN;
	wire_put_name(b, c->params[0], c->param_len[0]);
	return 0;
}

/* ---- Streams ---- */

uint32_t http__req_streams(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_STREAMS);
	return 0;
}

uint32_t http__req_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_STREAM);
	NEED_ID(c, b, 0);
	return 0;
}

uint32_t http__req_create_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	NEED(http__j_str(c->json, "name", &name, &n) == 0);
	*op = FRAME_OP_CREATE_STREAM;
	wire_put_name(b, name, n);
	return 0;
}

uint32_t http__req_update_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	NEED(http__j_str(c->json, "name", &name, &n) == 0);
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

uint32_t http__req_delete_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_DELETE_STREAM;
	return put_ids(c, b, 1);
}

uint32_t http__req_purge_stream(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_PURGE_STREAM;
	return put_ids(c, b, 1);
}

/* ---- Topics ---- */

uint32_t http__req_topics(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_TOPICS);
	return put_ids(c, b, 1);
}

uint32_t http__req_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
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
		return PROTO_E_INVALID_FORMAT;
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
		return PROTO_E_INVALID_FORMAT;
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

uint32_t http__req_create_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	uint32_t parts = 1;
	NEED(http__j_str(c->json, "name", &name, &n) == 0 && j_u32(c->json, "partitions_count", &parts) >= 0);
	*op = FRAME_OP_CREATE_TOPIC;
	NEED_ID(c, b, 0);
	wire_put_u32(b, parts);
	wire_put_name(b, name, n);
	return put_topic_options(c->json, b);
}

uint32_t http__req_update_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	NEED(http__j_str(c->json, "name", &name, &n) == 0);
	*op = FRAME_OP_UPDATE_TOPIC;
	uint32_t e = put_ids(c, b, 2);
	if (e != 0)
		return e;
	wire_put_name(b, name, n);
	return put_topic_options(c->json, b);
}

uint32_t http__req_delete_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_DELETE_TOPIC;
	return put_ids(c, b, 2);
}

uint32_t http__req_purge_topic(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	*op = FRAME_OP_PURGE_TOPIC;
	return put_ids(c, b, 2);
}

/* ---- Partitions and segments ---- */

uint32_t http__req_create_partitions(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	uint32_t n;
	NEED(j_u32(c->json, "partitions_count", &n) == 0);
	*op = FRAME_OP_CREATE_PARTITIONS;
	uint32_t e = put_ids(c, b, 2);
	wire_put_u32(b, n);
	return e;
}

uint32_t http__req_delete_partitions(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	uint64_t n;
	NEED(query_u64(c, "partitions_count", 1, &n) == 0 && n <= UINT32_MAX);
	*op = FRAME_OP_DELETE_PARTITIONS;
	uint32_t e = put_ids(c, b, 2);
	wire_put_u32(b, (uint32_t)n);
	return e;
}

uint32_t http__req_delete_segments(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	uint64_t n;
	uint32_t pid;
	NEED(query_u64(c, "segments_count", 1, &n) == 0 && n <= UINT32_MAX);
	if (!http__parse_u32(c->params[2], c->param_len[2], &pid))
		return PROTO_E_INVALID_IDENTIFIER;
	*op = FRAME_OP_DELETE_SEGMENTS;
	uint32_t e = put_ids(c, b, 2);
	wire_put_u32(b, pid);
	wire_put_u32(b, (uint32_t)n);
	return e;
}

/* ---- Consumer groups ---- */

uint32_t http__req_groups(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CONSUMER_GROUPS);
	return put_ids(c, b, 2);
}

uint32_t http__req_group(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CONSUMER_GROUP);
	return put_ids(c, b, 3);
}

uint32_t http__req_create_group(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	const char *name;
	size_t n;
	NEED(http__j_str(c->json, "name", &name, &n) == 0);
	*op = FRAME_OP_CREATE_CONSUMER_GROUP;
	uint32_t e = put_ids(c, b, 2);
	wire_put_name(b, name, n);
	return e;
}

uint32_t http__req_delete_group(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
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
		return PROTO_E_INVALID_FORMAT;
	wire_put_consumer(b, &wc);
	return 0;
}

/* The Consumer of a query (consumer_id, default 0, and consumer_kind). */
static uint32_t put_query_consumer(struct http_call *c, struct wire_buf *b)
{
	char *id = query_get(c, "consumer_id"), *kind = query_get(c, "consumer_kind");
	struct wire_id wid = wire_id_num(0);
	uint32_t e = id != NULL && !str_to_id(id, strlen(id), &wid) ? PROTO_E_INVALID_IDENTIFIER : 0;
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
	bool ok = s == NULL || http__parse_u32(s, strlen(s), &p.id);
	free(s);
	if (!ok)
		return PROTO_E_INVALID_FORMAT;
	wire_put_opt_partition(b, &p);
	return 0;
}

uint32_t http__req_poll(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
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
		return PROTO_E_INVALID_FORMAT;
	wire_put_polling(b, &pol);
	wire_put_u32(b, (uint32_t)count);
	wire_put_u8(b, auto_commit);
	return 0;
}

uint32_t http__req_get_offset(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	NR(FRAME_CODE_GET_CONSUMER_OFFSET);
	uint32_t e = put_query_consumer(c, b);
	if (e == 0)
		e = put_ids(c, b, 2);
	return e != 0 ? e : put_query_partition(c, b);
}

uint32_t http__req_store_offset(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	struct wire_id id = wire_id_num(0);
	const char *kind = NULL;
	size_t kl;
	uint64_t offset;
	struct wire_opt_partition p = {false, 0};
	int hp = j_u32(c->json, "partition_id", &p.id);
	NEED(j_id(c->json, "consumer_id", &id) >= 0 && hp >= 0 && j_u64(c->json, "offset", &offset) == 0 &&
	     http__j_str(c->json, "consumer_kind", &kind, &kl) >= 0);
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

uint32_t http__req_delete_offset(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
{
	struct wire_id id;
	if (!str_to_id(c->params[2], c->param_len[2], &id))
		return PROTO_E_INVALID_IDENTIFIER;
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
	int rc = http__j_str(o, k, &s, &sl);
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

/* A kind name (UserHeader at the top of http_reply.c) to its value, or 0. */
static uint8_t kind_from_name(const char *s)
{
	for (uint8_t i = 1; i < HTTP__N_KINDS; i++)
		if (strcasecmp(s, http__kind_names[i]) == 0)
			return i;
	return 0;
}

/* User headers JSON to the TLV of reference §3.3. */
static uint32_t put_user_headers(const json_t *arr, struct wire_buf *b)
{
	if (arr == NULL || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return PROTO_E_INVALID_FORMAT;
	size_t i;
	const json_t *h;
	json_array_foreach(arr, i, h) {
		for (int part = 0; part < 2; part++) {
			const json_t *kv = json_object_get(h, part == 0 ? "key" : "value");
			const char *kn;
			size_t kl;
			uint8_t *v;
			size_t vl;
			if (!json_is_object(kv) || http__j_str(kv, "kind", &kn, &kl) != 0 ||
			    j_b64(kv, "value", &v, &vl) != 0)
				return PROTO_E_INVALID_FORMAT;
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
		if (!json_is_object(p) || http__j_str(p, "kind", &kind, &kl) != 0)
			return PROTO_E_INVALID_FORMAT;
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
					return PROTO_E_INVALID_FORMAT;
				}
				wp.partition_id = frame_le32(v);
			}
		} else if (strcmp(kind, "messages_key") == 0) {
			if (j_b64(p, "value", &v, &vl) != 0 || vl == 0 || vl > 255) {
				free(v);
				return PROTO_E_INVALID_FORMAT;
			}
			wp.kind = WIRE_PART_MESSAGES_KEY;
			wp.key = (struct wire_str){v, vl};
		} else {
			return PROTO_E_INVALID_FORMAT;
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
uint32_t http__req_send(struct http_call *c, struct wire_buf *b, uint8_t *op, uint32_t *code)
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
	uint64_t origin = now_us();
	size_t i;
	const json_t *m;
	json_array_foreach(msgs, i, m) {
		uint64_t lo, hi;
		uint8_t *payload;
		size_t pl;
		if (!json_is_object(m) || !message_id(json_object_get(m, "id"), &lo, &hi) ||
		    j_b64(m, "payload", &payload, &pl) != 0)
			return PROTO_E_INVALID_FORMAT;
		wire_put_u64(b, 0); /* checksum: batch_seal */
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
		if (e != 0)
			return e;
		wire_patch_u32(b, hl_at, (uint32_t)(b->len - h_start));
	}
	if (wire_buf_error(b) != 0)
		return PROTO_E_ERROR;
	uint8_t *h = b->p + batch_at;
	memset(h, 0, BATCH_HEADER_SIZE);
	frame_put64(h + 24, origin);
	frame_put64(h + 32, b->len - batch_at);
	frame_put32(h + 48, count);
	batch_seal(h);
	return 0;
}
