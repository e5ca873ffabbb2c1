/*
 * http_reply — the HTTP listener's reply mapping: the body of a binary reply (reference §2.4, the
 * result section removed) to the JSON of §6, one http__reply_* function per route of the table in
 * http.c whose answer is made from its reply; an error (an Iggy status, or an eviction of a login) to the error
 * JSON and its HTTP status (see http.h); and the answers of the logins and the logout, which issue and
 * revoke access tokens (http_jwt.h). A reply that does not decode is answered 500 with error 1. The
 * error JSON names a code as proto/errors does; this file owns its field and HTTP status.
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
 */
#include "transport/http_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Errors ---- */

/*
 * The error JSON's "code" and "reason" come from proto/errors (the name in snake_case and the text); this
 * table adds the "field" Iggy's HTTP API names for a code, and the two answers of the listener that are
 * not Iggy codes.
 */
struct http_err {
	uint32_t code;
	const char *field;
};

static const struct http_err http_fields[] = {
	{PROTO_E_INVALID_USERNAME, "username"},
	{PROTO_E_INVALID_PASSWORD, "password"},
	{PROTO_E_USER_ALREADY_EXISTS, "username"},
	{PROTO_E_PERSONAL_ACCESS_TOKEN_ALREADY_EXISTS, "name"},
	{PROTO_E_CLIENT_NOT_FOUND, "client_id"},
	{PROTO_E_STREAM_ID_NOT_FOUND, "stream_id"},
	{PROTO_E_STREAM_NAME_NOT_FOUND, "stream_id"},
	{PROTO_E_STREAM_NAME_ALREADY_EXISTS, "name"},
	{PROTO_E_TOPIC_ID_NOT_FOUND, "topic_id"},
	{PROTO_E_TOPIC_NAME_NOT_FOUND, "topic_id"},
	{PROTO_E_TOPIC_NAME_ALREADY_EXISTS, "name"},
	{PROTO_E_INVALID_PARTITIONS_COUNT, "partitions_count"},
	{PROTO_E_PARTITION_NOT_FOUND, "partition_id"},
	{PROTO_E_SEGMENT_NOT_FOUND, "segment_id"},
	{PROTO_E_INVALID_OFFSET, "offset"},
	{PROTO_E_CONSUMER_GROUP_NAME_ALREADY_EXISTS, "name"},
};

static const char *err_field(uint32_t code)
{
	for (size_t i = 0; i < sizeof(http_fields) / sizeof(http_fields[0]); i++)
		if (http_fields[i].code == code)
			return http_fields[i].field;
	return NULL;
}

/* The name and reason of a code: Iggy's (proto/errors), or the listener's own 404 and 501. */
static bool err_text(uint32_t code, char *name, size_t cap, const char **reason)
{
	const struct proto_error *e = proto_error_find(code);
	if (e != NULL) {
		proto_error_snake(code, name, cap);
		*reason = e->reason;
		return true;
	}
	if (code == HTTP_E_NOT_FOUND || code == HTTP_E_NOT_IMPLEMENTED) {
		snprintf(name, cap, "%s", code == HTTP_E_NOT_FOUND ? "not_found" : "not_implemented");
		*reason = code == HTTP_E_NOT_FOUND ? "Resource not found" : "Not implemented by this server";
		return true;
	}
	return false;
}

/* The HTTP status of an Iggy error code (reference §6). */
static int err_status(uint32_t code)
{
	switch (code) {
	case PROTO_E_STREAM_ID_NOT_FOUND: case PROTO_E_STREAM_NAME_NOT_FOUND: case PROTO_E_TOPIC_ID_NOT_FOUND:
	case PROTO_E_TOPIC_NAME_NOT_FOUND: case PROTO_E_PARTITION_NOT_FOUND: case PROTO_E_SEGMENT_NOT_FOUND:
	case PROTO_E_CLIENT_NOT_FOUND: case PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND:
	case PROTO_E_CONSUMER_GROUP_NAME_NOT_FOUND: case PROTO_E_CONSUMER_GROUP_MEMBER_NOT_FOUND:
	case PROTO_E_CONSUMER_OFFSET_NOT_FOUND: case PROTO_E_RESOURCE_NOT_FOUND: case HTTP_E_NOT_FOUND:
		return 404;
	case PROTO_E_UNAUTHENTICATED: case PROTO_E_ACCESS_TOKEN_MISSING: case PROTO_E_INVALID_ACCESS_TOKEN:
	case PROTO_E_INVALID_PERSONAL_ACCESS_TOKEN:
		return 401;
	case PROTO_E_UNAUTHORIZED:
		return 403;
	case PROTO_E_TRANSIENT_NOT_COMMITTED: case PROTO_E_TRANSIENT_NOT_ACCEPTED:
		return 503;
	case HTTP_E_NOT_IMPLEMENTED:
		return 501;
	default:
		return 400;
	}
}

/* The Iggy error a login eviction stands for (reference §1.4, as the SDK maps them). */
uint32_t http__evict_error(uint8_t reason)
{
	switch (reason) {
	case FRAME_EVICT_INVALID_CREDENTIALS:
		return PROTO_E_INVALID_CREDENTIALS;
	case FRAME_EVICT_INVALID_TOKEN:
		return PROTO_E_INVALID_PERSONAL_ACCESS_TOKEN;
	case FRAME_EVICT_STALE_CLIENT:
		return PROTO_E_STALE_CLIENT;
	case FRAME_EVICT_INCOMPATIBLE_PROTOCOL:
		return PROTO_E_INCOMPATIBLE_PROTOCOL_VERSION;
	case FRAME_EVICT_MALFORMED_LOGIN:
		return PROTO_E_INVALID_FORMAT;
	case FRAME_EVICT_CLIENT_RELEASE_TOO_LOW:
	case FRAME_EVICT_CLIENT_RELEASE_TOO_HIGH:
	case FRAME_EVICT_INVALID_REQUEST_OPERATION:
	case FRAME_EVICT_INVALID_REQUEST_BODY:
	case FRAME_EVICT_INVALID_REQUEST_BODY_SIZE:
		return PROTO_E_INVALID_COMMAND;
	default:
		return PROTO_E_UNAUTHENTICATED;
	}
}

/* Answers with the error JSON of an Iggy error code. */
void http__call_error(struct http_call *c, uint32_t code)
{
	char name[64], reason_buf[64];
	const char *reason = NULL, *field = err_field(code);
	bool known = err_text(code, name, sizeof(name), &reason);
	struct jw w;
	jw_init(&w);
	jw_open(&w, '{');
	JW_KU64(&w, "id", code);
	JW_KSTR(&w, "code", known ? name : "error");
	if (!known) {
		snprintf(reason_buf, sizeof(reason_buf), "Error %" PRIu32, code);
		reason = reason_buf;
	}
	JW_KSTR(&w, "reason", reason);
	jw_key(&w, "field");
	if (field != NULL)
		jw_str(&w, field);
	else
		jw_null(&w);
	jw_close(&w, '}');
	int status = err_status(code);
	http__call_respond_json(c, status, &w, status == 503 ? "retry-after" : NULL, "1");
}

/* ---- Binary replies to JSON ---- */

const char *const http__kind_names[HTTP__N_KINDS] = {"",       "raw",    "string",  "bool",    "int8",    "int16",
						     "int32",  "int64",  "int128",  "uint8",   "uint16",  "uint32",
						     "uint64", "uint128", "float32", "float64"};

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
	struct reply_stream h;
	reply_get_stream(r, &h);
	JW_KU64(w, "id", h.id);
	JW_KU64(w, "created_at", h.created_at);
	jw_key(w, "name");
	jw_name(w, h.name);
	JW_KU64(w, "size", h.size_bytes);
	JW_KU64(w, "messages_count", h.messages_count);
	JW_KU64(w, "topics_count", h.topics_count);
}

/* TopicHeader fields (inside an open object); *partitions is its partition count. */
static void rd_topic(struct wire_rd *r, struct jw *w, uint32_t *partitions)
{
	struct reply_topic h;
	int err = reply_get_topic(r, &h);
	JW_KU64(w, "id", h.id);
	JW_KU64(w, "created_at", h.created_at);
	jw_key(w, "name");
	jw_name(w, h.name);
	JW_KU64(w, "size", h.size_bytes);
	JW_KU64(w, "message_expiry", h.message_expiry);
	JW_KSTR(w, "compression_algorithm", h.compression == 2 ? "gzip" : "none");
	JW_KU64(w, "max_topic_size", h.max_topic_size);
	JW_KU64(w, "replication_factor", 1);
	JW_KU64(w, "messages_count", h.messages_count);
	JW_KU64(w, "partitions_count", h.partitions_count);
	jw_key(w, "options");
	jw_open(w, '{');
	if (err == 0) {
		jw_options(w, &h.options, true, NULL);
		jw_options(w, &h.derived, false, &h.options);
	}
	jw_close(w, '}');
	if (partitions != NULL)
		*partitions = h.partitions_count;
}

static void rd_partition(struct wire_rd *r, struct jw *w)
{
	struct reply_partition p;
	reply_get_partition(r, &p);
	jw_open(w, '{');
	JW_KU64(w, "id", p.id);
	JW_KU64(w, "created_at", p.created_at);
	JW_KU64(w, "segments_count", p.segments_count);
	JW_KU64(w, "current_offset", p.current_offset);
	JW_KU64(w, "size", p.size_bytes);
	JW_KU64(w, "messages_count", p.messages_count);
	jw_close(w, '}');
}

/* UserHeader fields (inside an open object). */
static void rd_user(struct wire_rd *r, struct jw *w)
{
	struct reply_user u;
	reply_get_user(r, &u);
	JW_KU64(w, "id", u.id);
	JW_KU64(w, "created_at", u.created_at);
	JW_KSTR(w, "status", u.status == 2 ? "inactive" : "active");
	jw_key(w, "username");
	jw_name(w, u.username);
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
	struct reply_group g;
	reply_get_group(r, &g);
	JW_KU64(w, "id", g.id);
	jw_key(w, "name");
	jw_name(w, g.name);
	JW_KU64(w, "partitions_count", g.partitions_count);
	JW_KU64(w, "members_count", g.members_count);
	*members = g.members_count;
}

static void rd_group_details(struct wire_rd *r, struct jw *w)
{
	uint32_t n;
	jw_open(w, '{');
	rd_group(r, w, &n);
	jw_key(w, "members");
	jw_open(w, '[');
	for (uint32_t i = 0; i < n && wire_rd_error(r) == 0; i++) {
		struct reply_group_member m;
		if (reply_get_group_member(r, &m) != 0)
			break;
		jw_open(w, '{');
		JW_KU64(w, "id", m.client_id);
		JW_KU64(w, "partitions_count", m.partitions_count);
		jw_key(w, "partitions");
		jw_open(w, '[');
		for (uint32_t k = 0; k < m.partitions_count; k++)
			jw_u64(w, reply_group_member_partition(&m, k));
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
		http__log(c->srv, HTTP_LOG_WARN, "reply to %s does not decode", c->route != NULL ? "a route" : "?");
		wire_buf_free(&w->b);
		jw_init(w);
		static const char bad[] = "{\"id\":1,\"code\":\"error\",\"reason\":\"Malformed reply\",\"field\":null}";
		jw_raw(w, bad, sizeof(bad) - 1);
		status = 500;
	}
	http__call_respond_json(c, status, w, NULL, NULL);
}

void http__reply_streams(struct http_call *c, const uint8_t *p, size_t n)
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
	bool numeric = param < c->n_params && http__parse_u32(c->params[param], c->param_len[param], &v);
	http__call_error(c, numeric ? by_id : by_name);
}

void http__reply_stream(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		not_found(c, 0, PROTO_E_STREAM_ID_NOT_FOUND, PROTO_E_STREAM_NAME_NOT_FOUND);
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

void http__reply_topics(struct http_call *c, const uint8_t *p, size_t n)
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

void http__reply_topic(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		not_found(c, 1, PROTO_E_TOPIC_ID_NOT_FOUND, PROTO_E_TOPIC_NAME_NOT_FOUND);
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

void http__reply_users(struct http_call *c, const uint8_t *p, size_t n)
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

void http__reply_user(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		http__call_error(c, PROTO_E_RESOURCE_NOT_FOUND);
		return;
	}
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	rd_user_details(&r, &w);
	reply_json(c, &r, &w, 200);
}

void http__reply_groups(struct http_call *c, const uint8_t *p, size_t n)
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

void http__reply_group(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		not_found(c, 2, PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND, PROTO_E_CONSUMER_GROUP_NAME_NOT_FOUND);
		return;
	}
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	rd_group_details(&r, &w);
	reply_json(c, &r, &w, 200);
}

void http__reply_pats(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	jw_open(&w, '[');
	while (wire_rd_left(&r) > 0) {
		struct reply_pat t;
		reply_get_pat(&r, &t);
		jw_open(&w, '{');
		jw_key(&w, "name");
		jw_name(&w, t.name);
		jw_key(&w, "expiry_at");
		if (t.expiry_at == 0)
			jw_null(&w);
		else
			jw_u64(&w, t.expiry_at);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	reply_json(c, &r, &w, 200);
}

void http__reply_pat_created(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	struct reply_pat_token t;
	wire_rd_init(&r, p, n);
	reply_get_pat_token(&r, &t);
	jw_init(&w);
	jw_open(&w, '{');
	jw_key(&w, "token");
	jw_name(&w, t.token);
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
	struct reply_client c;
	reply_get_client(r, &c);
	jw_open(w, '{');
	JW_KU64(w, "client_id", c.client_id);
	jw_key(w, "user_id");
	if (c.user_id == UINT32_MAX)
		jw_null(w);
	else
		jw_u64(w, c.user_id);
	jw_key(w, "address");
	jw_name(w, c.address);
	JW_KSTR(w, "transport", transport_name(c.transport));
	JW_KU64(w, "consumer_groups_count", c.groups_count);
	if (details) {
		jw_key(w, "consumer_groups");
		jw_open(w, '[');
		for (uint32_t i = 0; i < c.groups_count && wire_rd_error(r) == 0; i++) {
			struct reply_client_group g;
			if (reply_get_client_group(r, &g) != 0)
				break;
			jw_open(w, '{');
			JW_KU64(w, "stream_id", g.stream_id);
			JW_KU64(w, "topic_id", g.topic_id);
			JW_KU64(w, "group_id", g.group_id);
			jw_close(w, '}');
		}
		jw_close(w, ']');
	}
	jw_close(w, '}');
}

void http__reply_clients(struct http_call *c, const uint8_t *p, size_t n)
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

void http__reply_client(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		http__call_error(c, 100);
		return;
	}
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	rd_client(&r, &w, true);
	reply_json(c, &r, &w, 200);
}

void http__reply_options(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	uint32_t count = wire_get_u32(&r);
	jw_open(&w, '[');
	for (uint32_t i = 0; i < count && wire_rd_error(&r) == 0; i++) {
		struct reply_option_info o;
		reply_get_option_info(&r, &o);
		jw_open(&w, '{');
		jw_key(&w, "key");
		jw_name(&w, o.key);
		JW_KSTR(&w, "kind", o.kind < HTTP__N_KINDS ? http__kind_names[o.kind] : "unknown");
		/* The SDK reads the default as its raw bytes in the kind's encoding (a JSON array of bytes). */
		jw_key(&w, "default_value");
		jw_open(&w, '[');
		for (size_t k = 0; k < o.default_value.len; k++)
			jw_u64(&w, o.default_value.ptr[k]);
		jw_close(&w, ']');
		jw_key(&w, "description");
		jw_name(&w, o.description);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	reply_json(c, &r, &w, 200);
}

/* GetSnapshotFile: the archive as it came, a ZIP file. */
void http__reply_snapshot(struct http_call *c, const uint8_t *p, size_t n)
{
	http__call_respond(c, 200, "application/zip", p, n, "content-disposition",
			   "attachment; filename=\"snapshot.zip\"");
}

void http__reply_stats(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	struct reply_stats st;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	reply_get_stats(&r, &st);
	jw_open(&w, '{');
	JW_KU64(&w, "process_id", st.process_id);
	jw_key(&w, "cpu_usage");
	jw_f64(&w, (double)st.cpu_usage);
	jw_key(&w, "total_cpu_usage");
	jw_f64(&w, (double)st.total_cpu_usage);
	JW_KU64(&w, "memory_usage", st.memory_usage);
	JW_KU64(&w, "total_memory", st.total_memory);
	JW_KU64(&w, "available_memory", st.available_memory);
	JW_KU64(&w, "run_time", st.run_time);
	JW_KU64(&w, "start_time", st.start_time);
	JW_KU64(&w, "read_bytes", st.read_bytes);
	JW_KU64(&w, "written_bytes", st.written_bytes);
	JW_KU64(&w, "messages_size_bytes", st.messages_size_bytes);
	JW_KU64(&w, "streams_count", st.streams_count);
	JW_KU64(&w, "topics_count", st.topics_count);
	JW_KU64(&w, "partitions_count", st.partitions_count);
	JW_KU64(&w, "segments_count", st.segments_count);
	JW_KU64(&w, "messages_count", st.messages_count);
	JW_KU64(&w, "clients_count", st.clients_count);
	JW_KU64(&w, "consumer_groups_count", st.consumer_groups_count);
	jw_key(&w, "hostname");
	jw_name(&w, st.hostname);
	jw_key(&w, "os_name");
	jw_name(&w, st.os_name);
	jw_key(&w, "os_version");
	jw_name(&w, st.os_version);
	jw_key(&w, "kernel_version");
	jw_name(&w, st.kernel_version);
	jw_key(&w, "iggy_server_version");
	jw_name(&w, st.iggy_server_version);
	JW_KU64(&w, "iggy_server_semver", st.iggy_server_semver);
	/* A map keyed "stream-topic-partition" (the SDK's Stats reads an object, not a list). */
	jw_key(&w, "cache_metrics");
	jw_open(&w, '{');
	for (uint32_t i = 0; wire_rd_error(&r) == 0 && i < st.cache_metrics_count; i++) {
		struct reply_cache_metric m;
		char key[40];
		reply_stats_cache_metric(&st, i, &m);
		snprintf(key, sizeof(key), "%" PRIu32 "-%" PRIu32 "-%" PRIu32, m.stream_id, m.topic_id, m.partition_id);
		jw_key(&w, key);
		jw_open(&w, '{');
		JW_KU64(&w, "hits", m.hits);
		JW_KU64(&w, "misses", m.misses);
		jw_key(&w, "hit_ratio");
		jw_f64(&w, (double)m.hit_ratio);
		jw_close(&w, '}');
	}
	jw_close(&w, '}');
	JW_KU64(&w, "threads_count", st.threads_count);
	JW_KU64(&w, "free_disk_space", st.free_disk_space);
	JW_KU64(&w, "total_disk_space", st.total_disk_space);
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

void http__reply_cluster(struct http_call *c, const uint8_t *p, size_t n)
{
	static const char *const statuses[] = {"healthy", "starting", "stopping", "unreachable", "maintenance"};
	struct wire_rd r;
	struct jw w;
	struct reply_cluster cl;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	reply_get_cluster(&r, &cl);
	jw_open(&w, '{');
	jw_key(&w, "name");
	jw_name(&w, cl.name);
	jw_key(&w, "nodes");
	jw_open(&w, '[');
	for (uint32_t i = 0; i < cl.nodes_count && wire_rd_error(&r) == 0; i++) {
		struct reply_node nd;
		if (reply_get_node(&r, &nd) != 0)
			break;
		jw_open(&w, '{');
		jw_key(&w, "name");
		jw_name(&w, nd.name);
		jw_key(&w, "ip");
		jw_name(&w, nd.ip);
		jw_key(&w, "endpoints");
		jw_open(&w, '{');
		JW_KU64(&w, "tcp", nd.tcp);
		JW_KU64(&w, "quic", nd.quic);
		JW_KU64(&w, "http", nd.http);
		JW_KU64(&w, "websocket", nd.websocket);
		jw_close(&w, '}');
		JW_KSTR(&w, "role", nd.role == 0 ? "leader" : "follower");
		JW_KSTR(&w, "status", nd.status < 5 ? statuses[nd.status] : "unknown");
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

void http__reply_offset(struct http_call *c, const uint8_t *p, size_t n)
{
	if (n == 0) {
		http__call_error(c, PROTO_E_CONSUMER_OFFSET_NOT_FOUND);
		return;
	}
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	struct reply_offset o;
	reply_get_offset(&r, &o);
	jw_open(&w, '{');
	JW_KU64(&w, "partition_id", o.partition_id);
	JW_KU64(&w, "current_offset", o.current_offset);
	JW_KU64(&w, "stored_offset", o.stored_offset);
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

void http__reply_sent(struct http_call *c, const uint8_t *p, size_t n)
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
		struct reply_sent sb;
		reply_get_sent(&r, &sb);
		jw_open(&w, '{');
		JW_KU64(&w, "stream_id", sb.stream_id);
		JW_KU64(&w, "topic_id", sb.topic_id);
		JW_KU64(&w, "partition_id", sb.partition_id);
		JW_KU64(&w, "base_offset", sb.base_offset);
		jw_close(&w, '}');
	}
	jw_close(&w, ']');
	jw_close(&w, '}');
	if (wire_rd_done(&r) != 0) {
		reply_json(c, &r, &w, 201);
		return;
	}
	http__call_respond_json(c, 201, &w, "iggy-durability", "replicated-memory");
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
			JW_KSTR(w, "kind", kind < HTTP__N_KINDS && kind > 0 ? http__kind_names[kind] : "raw");
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

void http__reply_polled(struct http_call *c, const uint8_t *p, size_t n)
{
	struct wire_rd r;
	struct jw w;
	wire_rd_init(&r, p, n);
	jw_init(&w);
	struct reply_polled pre;
	reply_get_polled(&r, &pre);
	jw_open(&w, '{');
	JW_KU64(&w, "partition_id", pre.partition_id);
	JW_KU64(&w, "current_offset", pre.current_offset);
	JW_KU64(&w, "count", pre.count);
	jw_key(&w, "messages");
	jw_open(&w, '[');
	struct batch_iter it;
	struct batch_msg m;
	size_t left = wire_rd_left(&r);
	batch_iter_init(&it, wire_get_bytes(&r, left), left);
	int rc;
	while ((rc = batch_iter_next(&it, &m)) > 0) {
		jw_open(&w, '{');
		jw_key(&w, "header");
		jw_open(&w, '{');
		JW_KU64(&w, "checksum", m.checksum);
		jw_key(&w, "id");
		jw_u128(&w, frame_le64(m.id), frame_le64(m.id + 8));
		JW_KU64(&w, "offset", m.offset);
		JW_KU64(&w, "timestamp", m.timestamp);
		JW_KU64(&w, "origin_timestamp", m.origin_timestamp);
		JW_KU64(&w, "user_headers_length", m.headers_len);
		JW_KU64(&w, "payload_length", m.payload_len);
		JW_KU64(&w, "reserved", m.reserved);
		jw_close(&w, '}');
		jw_key(&w, "payload");
		jw_b64(&w, m.payload, m.payload_len);
		/* null, not []: the SDK reports a message without headers as having none. */
		jw_key(&w, "user_headers");
		if (m.headers_len == 0)
			jw_null(&w);
		else
			jw_user_headers(&w, m.headers, m.headers_len);
		jw_close(&w, '}');
	}
	if (rc < 0)
		wire_rd_fail(&r, WIRE_E_SHORT);
	jw_close(&w, ']');
	jw_close(&w, '}');
	reply_json(c, &r, &w, 200);
}

/* ---- Authentication replies ---- */

/* Answers IdentityInfo with a new access token for the user. */
static void respond_identity(struct http_call *c, uint32_t user_id)
{
	uint64_t exp;
	char *tok = jwt_issue(&c->srv->jwt, user_id, &exp);
	if (tok == NULL) {
		http__call_error(c, PROTO_E_ERROR);
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
	http__call_respond_json(c, 200, &w, NULL, NULL);
}

/* LoginRegisterResponse: [user_id u32][session u64][protocol u32][server_version WireName]. */
bool http__parse_login(const uint8_t *p, size_t n, uint32_t *user_id, uint64_t *session)
{
	struct wire_rd r;
	struct reply_login l;
	wire_rd_init(&r, p, n);
	if (reply_get_login(&r, &l) != 0)
		return false;
	*user_id = l.user_id;
	*session = l.session;
	return true;
}

void http__reply_login(struct http_call *c, const uint8_t *p, size_t n)
{
	uint32_t uid;
	uint64_t session;
	if (!http__parse_login(p, n, &uid, &session)) {
		http__call_error(c, PROTO_E_ERROR);
		return;
	}
	respond_identity(c, uid);
}

void http__reply_refresh(struct http_call *c, const uint8_t *p, size_t n)
{
	respond_identity(c, c->user_id);
}

void http__reply_logout(struct http_call *c, const uint8_t *p, size_t n)
{
	if (c->bearer_is_jwt)
		jwt_revoke(&c->srv->jwt, c->jti, c->jwt_exp);
	http__call_ok_empty(c, 204);
}

void http__reply_pong(struct http_call *c, const uint8_t *p, size_t n)
{
	http__call_respond(c, 200, "text/plain; charset=utf-8", "pong", 4, NULL, NULL);
}
