/*
 * galgo-jepsen-client — Galgo's C client (client/gclient.h, client/gcluster.h) as a workload client of
 * the Jepsen suite (jepsen/). The Python runner starts one per client process and talks to it over
 * pipes, one request at a time.
 *
 * PROTOCOL
 *
 * Standard input carries requests, one JSON object per line (UTF-8, '\n'-terminated; blank lines are
 * ignored). For every other line, standard output gets exactly one reply line, a compact JSON object,
 * flushed at once; nothing else is ever written to standard output (diagnostics go to standard error).
 * Requests are handled in order, one at a time, each to its end before the next line is read. The
 * program exits with status 0 after replying to {"op":"quit"} or at the end of standard input.
 *
 * Every reply has "type": "ok" (the operation certainly happened), "fail" (it certainly did not) or
 * "info" (unknown: it may or may not have taken effect), the meanings of jepsen/galgo_jepsen/history.py.
 * A reply other than "ok" has "error" (text). When known, "node" is the id of the node the request was
 * sent to, and "code" the Iggy status code the server answered (absent when there was no answer).
 * A line that is not a JSON object, has no known "op", or lacks or mistypes a field gets
 * {"type":"fail","error":"bad request: ..."} (nothing was sent).
 *
 * Identifiers: "stream" and "topic" are a name (JSON string) or a numeric id (JSON integer). Partition
 * ids are Iggy's as the server numbers them in protocol 0.11: 0-based, 0..n-1 for a topic of n
 * partitions (shared reference iggy-protocol.md §2.3 "IDs are 0-based", and tests/compat
 * test_partitions.py). "consumer" is a name (string) or a numeric id (integer) of a single consumer;
 * default the numeric id 0. Instead of "consumer", "group" names a consumer group (a name or a numeric
 * id) whose offsets poll, store_offset and get_offset then concern; the group need not have been
 * joined to read or store its offsets.
 *
 *   {"op":"connect","servers":"H:P,H:P,...","mode":"pinned"|"leader","username":U,"password":P,
 *    "timeout_ms":N}
 *       Drops any previous connection and remembers the parameters; then connects and logs in. Defaults:
 *       mode "pinned", username and password "iggy", timeout_ms 5000 (connect timeout, reply timeout
 *       of every request, and in "leader" mode how long a send waits for a usable leader).
 *       "pinned": one gclient connection to the first server only; a node that does not lead a
 *       partition forwards its sends to the leader. "leader": gcluster over all servers, each send
 *       going straight to its partition's leader (Galgo's GetPartitionLeaders / SetRedirect
 *       extensions, docs/protocol-extensions.md); polls, offsets and setup go to its control
 *       connection (any node that answers).
 *       ok: {"type":"ok","mode":M,"node":id?}. A connection that fails gives "fail"; the parameters are
 *       kept, and every later request first connects again if there is no connection (so is every
 *       request after a connection broke: reconnection is lazy, never in the background).
 *   {"op":"send","stream":S,"topic":T,"partition":p,"values":[v,...]}
 *       One batch of n >= 1 messages to partition p (absent or null: the server's Balanced choice).
 *       Each value v is an integer 0 <= v < 2^63; its message has payload = v in decimal ASCII (no sign,
 *       no leading zeros) and id = v as an unsigned 128-bit integer (high 64 bits zero), on every
 *       attempt: in "leader" mode gcluster retries a batch after a redirect or a lost connection, always
 *       with these same ids (gcluster_send_ids). ok: {"partition":p,"offset":base offset or null when
 *       the server did not say}; message i of the batch has offset base + i, except on a topic created
 *       with "dedup_window": there the server drops messages whose id it stored recently (a retried
 *       value), the rest get base, base + 1, ..., and a batch of nothing but retries is ok with offset
 *       null. Only a poll tells where each value is.
 *   {"op":"poll","stream":S,"topic":T,"partition":p,"offset":o,"count":n[,"consumer":C]
 *    [,"auto_commit":bool][,"strategy":"offset"|"first"|"last"|"next"][,"full":bool]}
 *       Up to n (default 100) messages of partition p from offset o (strategy "offset", the default;
 *       "offset" is then required). ok: {"partition":p,"current_offset":o,"messages":[[offset,v],...]}
 *       in offset order, v being the payload read back as a decimal integer (a payload that is not one
 *       appears as a JSON string). If a message's id is not its value, "bad_ids":[[offset,"hex id"],...]
 *       lists them (the u128 as 32 hex digits, most significant first). With "full":true each message
 *       is [offset, v, timestamp, origin_timestamp, "checksum", headers_len]: the server's append time
 *       and the producer's origin time (µs), the frame checksum as 16 hex digits (XXH3 of the frame from
 *       its id through its payload and user headers, proto/batch.h), and the user headers' length;
 *       with the id (checked above) that is every byte of the stored message.
 *       A reply that does not verify (a frame or batch checksum, the layout, the message count) is
 *       "fail" ("info" with auto_commit) with "corrupt":true, "offsets": the offsets its frames claim
 *       as far as its layout can be walked, and "bad_frames": those whose frame checksum is wrong.
 *   {"op":"store_offset","stream":S,"topic":T,"partition":p,"consumer":C,"offset":o}
 *       StoreConsumerOffset. ok: {}.
 *   {"op":"get_offset","stream":S,"topic":T,"partition":p,"consumer":C | "group":G}
 *       ok: {"offset": the stored offset or null when none is stored, "current_offset": the partition's
 *       last offset (absent when none is stored)}.
 *   {"op":"create_stream","stream":NAME}
 *   {"op":"create_topic","stream":S,"topic":NAME,"partitions":k[,"replication_factor":r]
 *    [,"durability":"fsync"|"none"|"interval"][,"dedup_window":w]}
 *       Setup conveniences, idempotent: a stream or topic that already exists (1012, 2013) is "ok" with
 *       "existed":true (its partition count and options are then whatever they were).
 *   {"op":"quit"}  ok, then exit.
 *
 * CLASSIFICATION (why each reply type is what it is)
 *
 * Writes (send, store_offset, create_*; and a poll with auto_commit, which stores an offset). "ok" only
 * on a success reply. "fail" only when the operation certainly had no effect:
 *   - nothing was written to any server: no connection could be made or the login failed (the request
 *     is never sent), a local refusal before writing (bad argument, message too big);
 *   - 58 TransientNotAccepted: Galgo answers 58 only for a request it never admitted and never will
 *     (docs/ARCHITECTURE.md "A send" and "Shutdown": "58 says certainly not admitted"; an outcome the
 *     node cannot know is answered 1, never 58);
 *   - 10058 NotLeader (only in "leader" mode, which turns on redirect): the node refused the batch and
 *     "changes nothing" (docs/protocol-extensions.md, SetRedirect);
 *   - validation refusals, all decided before anything is appended or submitted (node/srv_send.c
 *     srv__handle_send; metadata rejections "change nothing anywhere"): 3 InvalidCommand, 4 InvalidFormat,
 *     6 InvalidIdentifier, 20 ResourceNotFound (Galgo's answer to a send to a missing stream, topic or
 *     partition), 40 Unauthenticated, 41 Unauthorized, Iggy's not-found codes 1009 1010 2010 2011 3007
 *     3008 and 3021, the batch checks 4017 4022 4024 4027 4038 4039 4101, 4100 InvalidOffset, and the
 *     setup refusals 1020 2015 2019 2021 3013 (limits, partition counts) and 4041 4042 (topic options).
 * Everything else is "info": a timeout, a connection lost after the request was written (the server
 * may have received and committed it), 1 Error (Galgo's "outcome unknown"), 57 TransientNotCommitted,
 * an eviction (30), any other code, and a reply that breaks the protocol.
 * In "leader" mode a send may take several attempts (gcluster retries after NotLeader, 58 and lost
 * connections). Its reply is "fail" only if every attempt ended in one of the proofs above (or none
 * was written); if any attempt before the last may have been admitted (gcluster_send_report's
 * earlier_unsettled: it ended otherwise than with 58 or 10058), the reply is "info" even when the last
 * attempt was refused. gcluster's own give-ups (-ELOOP after its redirect hops, -EHOSTUNREACH when no
 * leader became usable within timeout_ms, -ENOENT for a partition missing from its map) are judged by
 * the last attempt's result (or "fail" when no attempt was written). A send that succeeded after a
 * lost connection may have been committed twice: the copies carry the same id and value.
 *
 * Reads (poll without auto_commit, get_offset) have no side effect, so any failure is "fail". A poll
 * with auto_commit is classified as a write.
 *
 * Setup: create_stream and create_topic are writes too ("info" when unknown), but "already exists"
 * is "ok".
 *
 * Connections: after a transport failure (a negative gclient result) the connection is closed and the
 * next request opens a new one; in "leader" mode gcluster replaces its broken send connections itself,
 * and a broken control connection makes the next request open the whole gcluster again.
 * A send in "leader" mode may take up to about (3 + 1) x timeout_ms plus timeout_ms of waiting for a
 * leader; a request in "pinned" mode about timeout_ms (plus the connect timeout if it reconnects).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "client/gclient.h"
#include "client/gcluster.h"
#include "proto/batch.h"
#include "proto/reply.h"
#include "proto/wire.h"

#define DEFAULT_TIMEOUT_MS 5000
#define MAX_VALUES 100000
#define MAX_POLL 1000000

enum mode { MODE_PINNED, MODE_LEADER };

static struct {
	bool configured;
	enum mode mode;
	char *servers, *first, *user, *pass;
	int timeout_ms;
	struct gclient *pc;  /* pinned mode */
	uint32_t pc_node;    /* the pinned node's id, 0 if unknown */
	struct gcluster *gc; /* leader mode */
} st;

/* ---- Replies ---- */

static void emit(json_t *reply)
{
	char *s = json_dumps(reply, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(reply);
	if (s == NULL) {
		fputs("{\"type\":\"info\",\"error\":\"cannot encode the reply\"}\n", stdout);
	} else {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
	if (fflush(stdout) != 0)
		exit(0); /* the runner went away */
}

static json_t *reply_new(const char *type)
{
	json_t *r = json_object();
	json_object_set_new(r, "type", json_string(type));
	return r;
}

__attribute__((format(printf, 2, 3))) static json_t *reply_err(const char *type, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_t *r = reply_new(type);
	json_object_set_new(r, "error", json_string(buf));
	return r;
}

static void set_node(json_t *r, uint32_t node)
{
	if (node != 0)
		json_object_set_new(r, "node", json_integer(node));
}

static const char *errtext(int rv)
{
	static char buf[128];
	return gclient_strerror(rv, buf, sizeof(buf));
}

/* ---- Classification ---- */

/* A server answer that proves a write was not admitted (see CLASSIFICATION in the header). */
static bool code_not_admitted(int code)
{
	switch (code) {
	case 3: case 4: case 6: case 20: case 40: case 41: case 58:
	case 1009: case 1010: case 2010: case 2011: case 3007: case 3008: case 3021:
	case 4017: case 4022: case 4024: case 4027: case 4038: case 4039: case 4100: case 4101:
	case 1020: case 2015: case 2019: case 2021: case 3013: case 4041: case 4042:
	case GCLUSTER_NOT_LEADER:
		return true;
	default:
		return false;
	}
}

/* A negative gclient result produced before anything was written to the socket. */
static bool local_before_write(int rv)
{
	return rv == -EINVAL || rv == -EMSGSIZE || rv == -ENOMEM || rv == -ENOTCONN || rv == -EBUSY;
}

/*
 * The reply to a failed write attempt that got `rv` (a positive code, or a negative errno). `code`
 * sets "code" when the server answered.
 */
static json_t *write_failure(int rv, uint32_t node, const char *what)
{
	bool certain = rv > 0 ? code_not_admitted(rv) : local_before_write(rv);
	json_t *r = reply_err(certain ? "fail" : "info", "%s: %s", what, errtext(rv));
	if (rv > 0)
		json_object_set_new(r, "code", json_integer(rv));
	set_node(r, node);
	return r;
}

/* The reply to a failed read: always "fail" (a read changes nothing). */
static json_t *read_failure(int rv, uint32_t node, const char *what)
{
	json_t *r = reply_err("fail", "%s: %s", what, errtext(rv));
	if (rv > 0)
		json_object_set_new(r, "code", json_integer(rv));
	set_node(r, node);
	return r;
}

/* ---- Connections ---- */

static void disconnect(void)
{
	gclient_close(st.pc);
	st.pc = NULL;
	st.pc_node = 0;
	gcluster_close(st.gc);
	st.gc = NULL;
}

/* The node id of the pinned server, from its GetPartitionLeaders node list (0 if it does not say). */
static uint32_t pinned_node_id(struct gclient *c, const char *addr)
{
	const uint8_t *body;
	size_t len;
	if (gclient_raw(c, GCLUSTER_CODE_PARTITION_LEADERS, NULL, 0, &body, &len) != 0)
		return 0;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	uint32_t nn = wire_get_u32(&r), found = 0;
	for (uint32_t i = 0; i < nn && wire_rd_error(&r) == 0; i++) {
		struct reply_leaders_node n;
		if (reply_get_leaders_node(&r, &n) != 0)
			break;
		char a[300];
		bool v6 = memchr(n.host.ptr, ':', n.host.len) != NULL;
		snprintf(a, sizeof(a), v6 ? "[%.*s]:%u" : "%.*s:%u", (int)n.host.len, (const char *)n.host.ptr,
			 (unsigned)n.tcp);
		if (strcmp(a, addr) == 0)
			found = n.id;
	}
	if (found == 0 && nn == 1 && wire_rd_error(&r) == 0) {
		/* A single node (e.g. reached through another address, such as localhost): it is that one. */
		wire_rd_init(&r, body, len);
		wire_get_u32(&r);
		found = wire_get_u32(&r);
	}
	return found;
}

/*
 * Makes sure there is a connection, opening one if needed. Returns 0, or a reply ("fail": nothing was
 * sent) in *err.
 */
static int ensure(json_t **err)
{
	if (!st.configured) {
		*err = reply_err("fail", "not connected: send a connect request first");
		return -1;
	}
	if (st.mode == MODE_PINNED && st.pc != NULL)
		return 0;
	if (st.mode == MODE_LEADER && st.gc != NULL)
		return 0;
	int rv;
	if (st.mode == MODE_PINNED) {
		struct gclient_opts o = {.connect_timeout_ms = st.timeout_ms, .io_timeout_ms = st.timeout_ms};
		struct gclient *c = NULL;
		rv = gclient_connect(st.first, &o, &c);
		if (rv == 0)
			rv = gclient_login(c, st.user, st.pass);
		if (rv != 0) {
			gclient_close(c);
			*err = reply_err("fail", "connect %s: %s", st.first, errtext(rv));
			if (rv > 0)
				json_object_set_new(*err, "code", json_integer(rv));
			return -1;
		}
		st.pc = c;
		st.pc_node = pinned_node_id(c, st.first);
		return 0;
	}
	struct gcluster_opts o = {.username = st.user, .password = st.pass,
				  .conn = {.connect_timeout_ms = st.timeout_ms, .io_timeout_ms = st.timeout_ms},
				  .leader_wait_ms = st.timeout_ms};
	rv = gcluster_open(st.servers, &o, &st.gc);
	if (rv != 0) {
		st.gc = NULL;
		*err = reply_err("fail", "connect %s: %s", st.servers, errtext(rv));
		if (rv > 0)
			json_object_set_new(*err, "code", json_integer(rv));
		return -1;
	}
	return 0;
}

/* The lock-step connection for everything but leader-mode sends, and its node id. */
static struct gclient *lockstep(json_t **err, uint32_t *node)
{
	if (ensure(err) != 0)
		return NULL;
	if (st.mode == MODE_PINNED) {
		*node = st.pc_node;
		return st.pc;
	}
	struct gclient *c = gcluster_any(st.gc);
	if (c == NULL) {
		gcluster_close(st.gc);
		st.gc = NULL;
		*err = reply_err("fail", "no node of %s answers", st.servers);
		return NULL;
	}
	*node = gcluster_control_node(st.gc);
	return c;
}

/* After a request on the lock-step connection: a transport failure or a lost login drops it. */
static void after(int rv)
{
	if (rv == -ENOENT || (rv >= 0 && rv != 30 && rv != 40))
		return; /* -ENOENT: an empty answer, the connection is fine */
	if (rv > 0 && st.mode == MODE_LEADER)
		return; /* gcluster logs its control connection in again itself */
	disconnect();
}

/* ---- Request fields ---- */

struct req {
	json_t *j;
	char bad[256];
};

__attribute__((format(printf, 2, 3))) static void bad(struct req *q, const char *fmt, ...)
{
	if (q->bad[0] != '\0')
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->bad, sizeof(q->bad), fmt, ap);
	va_end(ap);
}

/* A stream/topic/group identifier: a name or a numeric id. The name points into the request. */
static struct wire_id get_id(struct req *q, const char *key, bool required)
{
	json_t *v = json_object_get(q->j, key);
	if (v == NULL || json_is_null(v)) {
		if (required)
			bad(q, "missing \"%s\"", key);
		return wire_id_num(0);
	}
	if (json_is_string(v)) {
		size_t len = json_string_length(v);
		if (len == 0 || len > 255)
			bad(q, "\"%s\": a name of 1 to 255 bytes", key);
		return gclient_id_name(json_string_value(v));
	}
	if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= UINT32_MAX - 1)
		return wire_id_num((uint32_t)json_integer_value(v));
	bad(q, "\"%s\": a name or an id", key);
	return wire_id_num(0);
}

static const char *get_str(struct req *q, const char *key, const char *def)
{
	json_t *v = json_object_get(q->j, key);
	if (v == NULL || json_is_null(v)) {
		if (def == NULL)
			bad(q, "missing \"%s\"", key);
		return def;
	}
	if (!json_is_string(v)) {
		bad(q, "\"%s\": a string", key);
		return def;
	}
	return json_string_value(v);
}

/* An integer in [min, max]; `def` when absent (required when has_def is false). */
static int64_t get_int(struct req *q, const char *key, int64_t min, int64_t max, bool has_def, int64_t def)
{
	json_t *v = json_object_get(q->j, key);
	if (v == NULL || json_is_null(v)) {
		if (!has_def)
			bad(q, "missing \"%s\"", key);
		return def;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
		bad(q, "\"%s\": an integer in [%" PRId64 ", %" PRId64 "]", key, min, max);
		return def;
	}
	return (int64_t)json_integer_value(v);
}

static bool get_bool(struct req *q, const char *key, bool def)
{
	json_t *v = json_object_get(q->j, key);
	if (v == NULL || json_is_null(v))
		return def;
	if (!json_is_boolean(v)) {
		bad(q, "\"%s\": true or false", key);
		return def;
	}
	return json_is_true(v);
}

/* "consumer" (a single consumer, default the numeric id 0) or "group" (a consumer group); not both. */
static struct wire_consumer get_consumer(struct req *q)
{
	json_t *v = json_object_get(q->j, "consumer"), *g = json_object_get(q->j, "group");
	if (g != NULL && !json_is_null(g)) {
		if (v != NULL && !json_is_null(v))
			bad(q, "\"consumer\" and \"group\": one or the other");
		return (struct wire_consumer){.kind = WIRE_CONSUMER_GROUP, .id = get_id(q, "group", true)};
	}
	if (v == NULL || json_is_null(v))
		return gclient_consumer(0);
	return (struct wire_consumer){.kind = WIRE_CONSUMER_SINGLE, .id = get_id(q, "consumer", true)};
}

static uint32_t get_partition(struct req *q, bool allow_balanced)
{
	json_t *v = json_object_get(q->j, "partition");
	if (allow_balanced && (v == NULL || json_is_null(v)))
		return GCLIENT_BALANCED;
	return (uint32_t)get_int(q, "partition", 0, UINT32_MAX - 1, false, 0);
}

static json_t *bad_reply(struct req *q)
{
	return reply_err("fail", "bad request: %s", q->bad);
}

/* ---- Operations ---- */

static json_t *op_connect(struct req *q)
{
	const char *servers = get_str(q, "servers", NULL);
	const char *mode = get_str(q, "mode", "pinned");
	const char *user = get_str(q, "username", "iggy");
	const char *pass = get_str(q, "password", "iggy");
	int64_t timeout = get_int(q, "timeout_ms", 1, 3600000, true, DEFAULT_TIMEOUT_MS);
	enum mode m = MODE_PINNED;
	if (mode != NULL && strcmp(mode, "leader") == 0)
		m = MODE_LEADER;
	else if (mode != NULL && strcmp(mode, "pinned") != 0)
		bad(q, "\"mode\": \"pinned\" or \"leader\"");
	if (servers != NULL && (servers[0] == '\0' || servers[0] == ','))
		bad(q, "\"servers\": host:port[,host:port...]");
	if (q->bad[0] != '\0')
		return bad_reply(q);
	disconnect();
	free(st.servers);
	free(st.first);
	free(st.user);
	free(st.pass);
	st.servers = strdup(servers);
	st.first = strndup(servers, strcspn(servers, ","));
	st.user = strdup(user);
	st.pass = strdup(pass);
	if (st.servers == NULL || st.first == NULL || st.user == NULL || st.pass == NULL) {
		st.configured = false;
		return reply_err("fail", "out of memory");
	}
	st.mode = m;
	st.timeout_ms = (int)timeout;
	st.configured = true;
	json_t *err = NULL;
	if (ensure(&err) != 0)
		return err;
	json_t *r = reply_new("ok");
	json_object_set_new(r, "mode", json_string(m == MODE_LEADER ? "leader" : "pinned"));
	set_node(r, m == MODE_PINNED ? st.pc_node : gcluster_control_node(st.gc));
	return r;
}

static json_t *op_send(struct req *q)
{
	struct wire_id stream = get_id(q, "stream", true), topic = get_id(q, "topic", true);
	uint32_t partition = get_partition(q, true);
	json_t *vals = json_object_get(q->j, "values");
	size_t n = json_is_array(vals) ? json_array_size(vals) : 0;
	if (!json_is_array(vals) || n == 0 || n > MAX_VALUES)
		bad(q, "\"values\": an array of 1 to %d integers", MAX_VALUES);
	for (size_t i = 0; i < n && q->bad[0] == '\0'; i++) {
		json_t *v = json_array_get(vals, i);
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			bad(q, "\"values\"[%zu]: a non-negative integer", i);
	}
	if (q->bad[0] != '\0')
		return bad_reply(q);
	char(*text)[24] = calloc(n, sizeof(*text));
	const void **payloads = calloc(n, sizeof(*payloads));
	uint32_t *lens = calloc(n, sizeof(*lens));
	uint8_t(*ids)[16] = calloc(n, sizeof(*ids));
	json_t *r = NULL;
	if (text == NULL || payloads == NULL || lens == NULL || ids == NULL) {
		r = reply_err("fail", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t v = (uint64_t)json_integer_value(json_array_get(vals, i));
		lens[i] = (uint32_t)snprintf(text[i], sizeof(text[i]), "%" PRIu64, v);
		payloads[i] = text[i];
		for (int b = 0; b < 8; b++)
			ids[i][b] = (uint8_t)(v >> (8 * b)); /* u128 little-endian, high half zero */
	}
	json_t *err = NULL;
	if (ensure(&err) != 0) {
		r = err;
		goto out;
	}
	struct gclient_sent sent = {.base_offset = GCLIENT_OFFSET_UNKNOWN};
	int rv;
	uint32_t node;
	if (st.mode == MODE_PINNED) {
		node = st.pc_node;
		rv = gclient_send_ids(st.pc, &stream, &topic, partition, (uint32_t)n, payloads, lens,
				      (const uint8_t(*)[16])ids, &sent);
		if (rv != 0)
			r = write_failure(rv, node, "send");
		after(rv);
	} else {
		struct gcluster_send_report rep;
		rv = gcluster_send_ids(st.gc, &stream, &topic, partition, (uint32_t)n, payloads, lens,
				       (const uint8_t(*)[16])ids, &sent, &rep);
		node = rep.node;
		if (rv != 0) {
			const char *why = gcluster_last_error(st.gc);
			if (rep.earlier_unsettled) {
				r = reply_err("info", "send: %s (%s); an earlier attempt may have been committed",
					      errtext(rv), why);
			} else if (rep.attempts == 0) {
				r = reply_err("fail", "send: %s (%s); no request was written", errtext(rv), why);
				if (rv > 0)
					json_object_set_new(r, "code", json_integer(rv));
			} else {
				r = write_failure(rep.last_rv, 0, "send");
				json_object_set_new(r, "error", json_sprintf("send: %s (%s)", errtext(rv), why));
			}
			if (rep.attempts > 0 && rep.last_rv > 0)
				json_object_set_new(r, "code", json_integer(rep.last_rv));
			json_object_set_new(r, "attempts", json_integer(rep.attempts));
			set_node(r, node);
		}
	}
	if (rv == 0) {
		r = reply_new("ok");
		set_node(r, node);
		json_object_set_new(r, "partition", json_integer(sent.partition_id));
		json_object_set_new(r, "offset", sent.base_offset == GCLIENT_OFFSET_UNKNOWN ? json_null()
											 : json_integer((json_int_t)sent.base_offset));
	}
out:
	free(text);
	free(payloads);
	free(lens);
	free(ids);
	return r;
}

/* Parses a payload as a value: a decimal integer without sign or leading zeros, < 2^63. */
static bool payload_value(const uint8_t *p, uint32_t len, uint64_t *out)
{
	if (len == 0 || len > 19 || (len > 1 && p[0] == '0'))
		return false;
	uint64_t v = 0;
	for (uint32_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (v > INT64_MAX)
		return false;
	*out = v;
	return true;
}

/*
 * The reply to a poll whose reply does not verify (gclient_polled_verify, or a layout the iterator
 * refuses): "fail" ("info" with auto_commit: the store may be done) with "corrupt":true, and what can
 * still be told of it: "offsets", the offsets its frames claim as far as the layout can be walked, and
 * "bad_frames", those of them whose frame checksum (XXH3 of frame bytes 8 .. end) does not match.
 */
static json_t *corrupt_reply(const struct gclient_polled *polled, uint32_t node, bool auto_commit)
{
	json_t *r = reply_err(auto_commit ? "info" : "fail", "poll: the reply does not verify (checksums or layout)");
	set_node(r, node);
	json_object_set_new(r, "corrupt", json_true());
	json_object_set_new(r, "partition", json_integer(polled->partition_id));
	json_t *offs = json_array(), *bad_frames = json_array();
	struct gclient_msg_iter it;
	struct gclient_msg m;
	gclient_msg_iter_init(&it, polled);
	while (gclient_msg_next(&it, &m) == 1) {
		json_array_append_new(offs, json_integer((json_int_t)m.offset));
		const uint8_t *frame = m.payload - BATCH_FRAME_HEADER_SIZE;
		size_t covered = BATCH_FRAME_HEADER_SIZE - 8 + (size_t)m.payload_len + m.headers_len;
		if (XXH3_64bits(frame + 8, covered) != m.checksum)
			json_array_append_new(bad_frames, json_integer((json_int_t)m.offset));
	}
	json_object_set_new(r, "offsets", offs);
	json_object_set_new(r, "bad_frames", bad_frames);
	return r;
}

static json_t *op_poll(struct req *q)
{
	struct wire_id stream = get_id(q, "stream", true), topic = get_id(q, "topic", true);
	uint32_t partition = get_partition(q, false);
	struct wire_consumer consumer = get_consumer(q);
	bool auto_commit = get_bool(q, "auto_commit", false);
	int64_t count = get_int(q, "count", 1, MAX_POLL, true, 100);
	bool full = get_bool(q, "full", false);
	const char *strategy = get_str(q, "strategy", "offset");
	struct wire_polling pol = {.kind = WIRE_POLL_OFFSET};
	if (strategy != NULL && strcmp(strategy, "offset") == 0)
		pol.value = (uint64_t)get_int(q, "offset", 0, INT64_MAX, false, 0);
	else if (strategy != NULL && strcmp(strategy, "first") == 0)
		pol.kind = WIRE_POLL_FIRST;
	else if (strategy != NULL && strcmp(strategy, "last") == 0)
		pol.kind = WIRE_POLL_LAST;
	else if (strategy != NULL && strcmp(strategy, "next") == 0)
		pol.kind = WIRE_POLL_NEXT;
	else
		bad(q, "\"strategy\": offset, first, last or next");
	if (q->bad[0] != '\0')
		return bad_reply(q);
	json_t *err = NULL;
	uint32_t node = 0;
	struct gclient *c = lockstep(&err, &node);
	if (c == NULL)
		return err;
	struct gclient_polled polled;
	int rv = gclient_poll(c, &consumer, &stream, &topic, partition, pol, (uint32_t)count, auto_commit, &polled);
	if (rv != 0) {
		json_t *r = auto_commit ? write_failure(rv, node, "poll") : read_failure(rv, node, "poll");
		after(rv);
		return r;
	}
	/* A reply that does not verify: nothing it says is trusted (with auto_commit, the store may be done). */
	if (gclient_polled_verify(&polled) != 0)
		return corrupt_reply(&polled, node, auto_commit);
	json_t *msgs = json_array(), *bad_ids = json_array();
	struct gclient_msg_iter it;
	struct gclient_msg m;
	gclient_msg_iter_init(&it, &polled);
	int k;
	while ((k = gclient_msg_next(&it, &m)) == 1) {
		uint64_t v;
		json_t *val;
		bool ok = payload_value(m.payload, m.payload_len, &v);
		if (ok)
			val = json_integer((json_int_t)v);
		else
			val = json_stringn((const char *)m.payload, m.payload_len);
		if (val == NULL) /* not UTF-8 */
			val = json_string("<binary payload>");
		json_t *msg = json_pack("[I,o]", (json_int_t)m.offset, val);
		if (full) {
			char sum[17];
			snprintf(sum, sizeof(sum), "%016" PRIx64, m.checksum);
			json_array_append_new(msg, json_integer((json_int_t)m.timestamp));
			json_array_append_new(msg, json_integer((json_int_t)m.origin_timestamp));
			json_array_append_new(msg, json_string(sum));
			json_array_append_new(msg, json_integer((json_int_t)m.headers_len));
		}
		json_array_append_new(msgs, msg);
		uint8_t want[16] = {0};
		for (int b = 0; ok && b < 8; b++)
			want[b] = (uint8_t)(v >> (8 * b));
		if (!ok || memcmp(want, m.id, 16) != 0) {
			char hex[33];
			for (int b = 0; b < 16; b++)
				snprintf(hex + 2 * b, 3, "%02x", m.id[15 - b]);
			json_array_append_new(bad_ids, json_pack("[I,s]", (json_int_t)m.offset, hex));
		}
	}
	if (k < 0) {
		json_decref(msgs);
		json_decref(bad_ids);
		return corrupt_reply(&polled, node, auto_commit);
	}
	json_t *r = reply_new("ok");
	set_node(r, node);
	json_object_set_new(r, "partition", json_integer(polled.partition_id));
	json_object_set_new(r, "current_offset", json_integer((json_int_t)polled.current_offset));
	json_object_set_new(r, "messages", msgs);
	if (json_array_size(bad_ids) > 0)
		json_object_set_new(r, "bad_ids", bad_ids);
	else
		json_decref(bad_ids);
	return r;
}

static json_t *op_store_offset(struct req *q)
{
	struct wire_id stream = get_id(q, "stream", true), topic = get_id(q, "topic", true);
	uint32_t partition = get_partition(q, false);
	struct wire_consumer consumer = get_consumer(q);
	uint64_t offset = (uint64_t)get_int(q, "offset", 0, INT64_MAX, false, 0);
	if (q->bad[0] != '\0')
		return bad_reply(q);
	json_t *err = NULL;
	uint32_t node = 0;
	struct gclient *c = lockstep(&err, &node);
	if (c == NULL)
		return err;
	int rv = gclient_store_offset(c, &consumer, &stream, &topic, partition, offset);
	json_t *r;
	if (rv != 0) {
		r = write_failure(rv, node, "store_offset");
	} else {
		r = reply_new("ok");
		set_node(r, node);
	}
	after(rv);
	return r;
}

static json_t *op_get_offset(struct req *q)
{
	struct wire_id stream = get_id(q, "stream", true), topic = get_id(q, "topic", true);
	uint32_t partition = get_partition(q, false);
	struct wire_consumer consumer = get_consumer(q);
	if (q->bad[0] != '\0')
		return bad_reply(q);
	json_t *err = NULL;
	uint32_t node = 0;
	struct gclient *c = lockstep(&err, &node);
	if (c == NULL)
		return err;
	struct gclient_offset o;
	int rv = gclient_get_offset(c, &consumer, &stream, &topic, partition, &o);
	json_t *r;
	if (rv == 0 || rv == -ENOENT) {
		r = reply_new("ok");
		set_node(r, node);
		json_object_set_new(r, "offset", rv == 0 ? json_integer((json_int_t)o.stored_offset) : json_null());
		if (rv == 0)
			json_object_set_new(r, "current_offset", json_integer((json_int_t)o.current_offset));
		return r;
	}
	r = read_failure(rv, node, "get_offset");
	after(rv);
	return r;
}

static json_t *setup_result(int rv, uint32_t node, int exists_code, const char *what)
{
	json_t *r;
	if (rv == 0 || rv == exists_code) {
		r = reply_new("ok");
		if (rv != 0)
			json_object_set_new(r, "existed", json_true());
		set_node(r, node);
	} else {
		r = write_failure(rv, node, what);
	}
	after(rv);
	return r;
}

static json_t *op_create_stream(struct req *q)
{
	const char *name = get_str(q, "stream", NULL);
	if (name != NULL && (name[0] == '\0' || strlen(name) > 255))
		bad(q, "\"stream\": a name of 1 to 255 bytes");
	if (q->bad[0] != '\0')
		return bad_reply(q);
	json_t *err = NULL;
	uint32_t node = 0;
	struct gclient *c = lockstep(&err, &node);
	if (c == NULL)
		return err;
	return setup_result(gclient_create_stream(c, name, NULL), node, 1012, "create_stream");
}

static void le64(uint8_t out[8], uint64_t v)
{
	for (int b = 0; b < 8; b++)
		out[b] = (uint8_t)(v >> (8 * b));
}

static json_t *op_create_topic(struct req *q)
{
	struct wire_id stream = get_id(q, "stream", true);
	const char *name = get_str(q, "topic", NULL);
	if (name != NULL && (name[0] == '\0' || strlen(name) > 255))
		bad(q, "\"topic\": a name of 1 to 255 bytes");
	uint32_t partitions = (uint32_t)get_int(q, "partitions", 0, 100000, true, 1);
	struct gclient_topic_opt opts[3];
	uint8_t rf[8], dw[8];
	size_t n_opts = 0;
	json_t *v;
	if ((v = json_object_get(q->j, "replication_factor")) != NULL && !json_is_null(v)) {
		le64(rf, (uint64_t)get_int(q, "replication_factor", 0, 255, false, 0));
		opts[n_opts++] = (struct gclient_topic_opt){"replication_factor", WIRE_KIND_UINT64, rf, 8};
	}
	if ((v = json_object_get(q->j, "dedup_window")) != NULL && !json_is_null(v)) {
		le64(dw, (uint64_t)get_int(q, "dedup_window", 0, INT64_MAX, false, 0));
		opts[n_opts++] = (struct gclient_topic_opt){"dedup_window", WIRE_KIND_UINT64, dw, 8};
	}
	const char *durability = get_str(q, "durability", "");
	if (durability != NULL && durability[0] != '\0')
		opts[n_opts++] = (struct gclient_topic_opt){"durability", WIRE_KIND_STRING, durability, strlen(durability)};
	if (q->bad[0] != '\0')
		return bad_reply(q);
	json_t *err = NULL;
	uint32_t node = 0;
	struct gclient *c = lockstep(&err, &node);
	if (c == NULL)
		return err;
	return setup_result(gclient_create_topic_opts(c, &stream, name, partitions, opts, n_opts, NULL), node, 2013,
			    "create_topic");
}

/* ---- Main loop ---- */

static json_t *handle(const char *line, bool *quit)
{
	json_error_t jerr;
	struct req q = {.j = json_loads(line, JSON_REJECT_DUPLICATES, &jerr)};
	if (q.j == NULL)
		return reply_err("fail", "bad request: not JSON: %s", jerr.text);
	json_t *r;
	const char *op = json_is_object(q.j) ? json_string_value(json_object_get(q.j, "op")) : NULL;
	if (!json_is_object(q.j))
		r = reply_err("fail", "bad request: not a JSON object");
	else if (op == NULL)
		r = reply_err("fail", "bad request: no \"op\" string");
	else if (strcmp(op, "connect") == 0)
		r = op_connect(&q);
	else if (strcmp(op, "send") == 0)
		r = op_send(&q);
	else if (strcmp(op, "poll") == 0)
		r = op_poll(&q);
	else if (strcmp(op, "store_offset") == 0)
		r = op_store_offset(&q);
	else if (strcmp(op, "get_offset") == 0)
		r = op_get_offset(&q);
	else if (strcmp(op, "create_stream") == 0)
		r = op_create_stream(&q);
	else if (strcmp(op, "create_topic") == 0)
		r = op_create_topic(&q);
	else if (strcmp(op, "quit") == 0) {
		*quit = true;
		r = reply_new("ok");
	} else
		r = reply_err("fail", "bad request: unknown op \"%.64s\"", op);
	json_decref(q.j);
	return r;
}

int main(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: galgo-jepsen-client  (JSON requests on stdin, one per line; see the source header)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* a write to a closed socket is an error return, not a death */
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	bool quit = false;
	while (!quit && (len = getline(&line, &cap, stdin)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		size_t sp = strspn(line, " \t");
		if (line[sp] == '\0')
			continue;
		if (memchr(line, '\0', (size_t)len) != NULL) {
			emit(reply_err("fail", "bad request: a NUL byte in the line"));
			continue;
		}
		emit(handle(line, &quit));
	}
	free(line);
	disconnect();
	free(st.servers);
	free(st.first);
	free(st.user);
	free(st.pass);
	return 0;
}
