/*
 * metarec — encoding and decoding of metadata commands and snapshots. The byte formats are specified in
 * metarec.h.
 *
 * Decoding reads through a wire_rd: every getter is bounds-checked and, after the first error, reads
 * nothing and returns zero, so the decoders check the reader's error only where a value decides how
 * much to allocate or to loop. A broken rule is recorded in the reader as -EBADMSG, a failed allocation
 * as -ENOMEM.
 */
#include "node/metarec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The smallest encoded size of each repeated entry, to refuse counts the input cannot hold. */
#define MIN_PERM_STREAM 9
#define MIN_PERM_TOPIC 5
#define MIN_STREAM 17
#define MIN_TOPIC 56
#define MIN_PARTITION 10
#define MIN_GROUP 17
#define MIN_MEMBER 8
#define MIN_MEMBER_PARTITION 4
#define MIN_OFFSET 17
#define MIN_USER 22
#define MIN_PAT 41

/* ---- Shared primitives ---- */

static void bad(struct wire_rd *r)
{
	wire_rd_fail(r, -EBADMSG);
}

/* Maps the reader's outcome to the decoders' errors: 0, -ENOMEM or -EBADMSG. */
static int outcome(const struct wire_rd *r)
{
	int rv = wire_rd_done(r);
	if (rv == 0 || rv == -ENOMEM)
		return rv;
	return -EBADMSG;
}

static bool get_bool(struct wire_rd *r)
{
	uint8_t v = wire_get_u8(r);
	if (v > 1)
		bad(r);
	return v == 1;
}

/* Reads a count of entries of at least `min` bytes each; refuses one the input cannot hold. */
static uint32_t get_count(struct wire_rd *r, size_t min)
{
	uint32_t n = wire_get_u32(r);
	if (n > wire_rd_left(r) / min) {
		bad(r);
		return 0;
	}
	return n;
}

static void put_cstr16(struct wire_buf *b, const char *s)
{
	size_t len = strlen(s);
	if (len > UINT16_MAX) {
		if (b->err == 0)
			b->err = -EINVAL; /* The writer's first error sticks, as wire's own codecs record theirs. */
		return;
	}
	wire_put_u16(b, (uint16_t)len);
	wire_put_bytes(b, s, len + 1); /* The string goes with its terminating zero. */
}

/* A cstr16, pointing into the input (NUL-terminated there), or NULL after an error. */
static const char *get_cstr16(struct wire_rd *r)
{
	size_t len = wire_get_u16(r);
	const uint8_t *p = wire_get_bytes(r, len + 1);
	if (p == NULL)
		return NULL;
	if (p[len] != 0 || memchr(p, 0, len) != NULL) {
		bad(r);
		return NULL;
	}
	return (const char *)p;
}

/* A name for the state: str8 without zero bytes, copied NUL-terminated into dst[META_NAME_MAX + 1]. */
static void get_state_name(struct wire_rd *r, char *dst)
{
	struct wire_str s;
	dst[0] = '\0';
	if (wire_get_str8(r, &s) != 0)
		return;
	if (s.len > 0 && memchr(s.ptr, 0, s.len) != NULL) {
		bad(r);
		return;
	}
	if (s.len > 0)
		memcpy(dst, s.ptr, s.len);
	dst[s.len] = '\0';
}

static void put_state_name(struct wire_buf *b, const char *name)
{
	wire_put_str8(b, name, strnlen(name, META_NAME_MAX));
}

/* ---- Permissions ---- */

static void put_perms(struct wire_buf *b, const struct meta_perms *p)
{
	uint16_t g = (uint16_t)(p->manage_servers << 0 | p->read_servers << 1 | p->manage_users << 2 |
				p->read_users << 3 | p->manage_streams << 4 | p->read_streams << 5 |
				p->manage_topics << 6 | p->read_topics << 7 | p->poll_messages << 8 |
				p->send_messages << 9);
	wire_put_u16(b, g);
	wire_put_u32(b, p->n_streams);
	for (uint32_t i = 0; i < p->n_streams; i++) {
		const struct meta_perm_stream *s = &p->streams[i];
		wire_put_u32(b, s->stream_id);
		wire_put_u8(b, (uint8_t)(s->manage_stream << 0 | s->read_stream << 1 | s->manage_topics << 2 |
					 s->read_topics << 3 | s->poll_messages << 4 | s->send_messages << 5));
		wire_put_u32(b, s->n_topics);
		for (uint32_t k = 0; k < s->n_topics; k++) {
			const struct meta_perm_topic *t = &s->topics[k];
			wire_put_u32(b, t->topic_id);
			wire_put_u8(b, (uint8_t)(t->manage_topic << 0 | t->read_topic << 1 | t->poll_messages << 2 |
						 t->send_messages << 3));
		}
	}
}

/* Reads permissions into *p (zeroed first). What was allocated stays in *p for meta_perms_free. */
static void get_perms(struct wire_rd *r, struct meta_perms *p)
{
	memset(p, 0, sizeof(*p));
	uint16_t g = wire_get_u16(r);
	if (g >> 10)
		bad(r);
	p->manage_servers = g & 1;
	p->read_servers = g >> 1 & 1;
	p->manage_users = g >> 2 & 1;
	p->read_users = g >> 3 & 1;
	p->manage_streams = g >> 4 & 1;
	p->read_streams = g >> 5 & 1;
	p->manage_topics = g >> 6 & 1;
	p->read_topics = g >> 7 & 1;
	p->poll_messages = g >> 8 & 1;
	p->send_messages = g >> 9 & 1;
	uint32_t n = get_count(r, MIN_PERM_STREAM);
	if (wire_rd_error(r) || n == 0)
		return;
	p->streams = calloc(n, sizeof(*p->streams));
	if (p->streams == NULL) {
		wire_rd_fail(r, -ENOMEM);
		return;
	}
	p->n_streams = n;
	for (uint32_t i = 0; i < n && !wire_rd_error(r); i++) {
		struct meta_perm_stream *s = &p->streams[i];
		s->stream_id = wire_get_u32(r);
		uint8_t f = wire_get_u8(r);
		if (f >> 6)
			bad(r);
		s->manage_stream = f & 1;
		s->read_stream = f >> 1 & 1;
		s->manage_topics = f >> 2 & 1;
		s->read_topics = f >> 3 & 1;
		s->poll_messages = f >> 4 & 1;
		s->send_messages = f >> 5 & 1;
		uint32_t nt = get_count(r, MIN_PERM_TOPIC);
		if (wire_rd_error(r) || nt == 0)
			continue;
		s->topics = calloc(nt, sizeof(*s->topics));
		if (s->topics == NULL) {
			wire_rd_fail(r, -ENOMEM);
			return;
		}
		s->n_topics = nt;
		for (uint32_t k = 0; k < nt; k++) {
			struct meta_perm_topic *t = &s->topics[k];
			t->topic_id = wire_get_u32(r);
			uint8_t tf = wire_get_u8(r);
			if (tf >> 4)
				bad(r);
			t->manage_topic = tf & 1;
			t->read_topic = tf >> 1 & 1;
			t->poll_messages = tf >> 2 & 1;
			t->send_messages = tf >> 3 & 1;
		}
	}
}

/* ---- Commands ---- */

static void put_topic_fields(struct wire_buf *b, const struct meta_cmd *c)
{
	wire_put_u64(b, c->message_expiry);
	wire_put_u64(b, c->max_topic_size);
	wire_put_u64(b, c->dedup_window);
	wire_put_u8(b, c->compression);
	wire_put_u8(b, c->durability);
	wire_put_u8(b, c->replication_factor);
}

static void get_topic_fields(struct wire_rd *r, struct meta_cmd *c)
{
	c->message_expiry = wire_get_u64(r);
	c->max_topic_size = wire_get_u64(r);
	c->dedup_window = wire_get_u64(r);
	c->compression = wire_get_u8(r);
	c->durability = wire_get_u8(r);
	c->replication_factor = wire_get_u8(r);
}

static void put_node(struct wire_buf *b, const struct meta_node *n)
{
	size_t hl = strnlen(n->host, sizeof(n->host) - 1);
	wire_put_u32(b, n->id);
	wire_put_str8(b, n->host, (uint8_t)hl);
	wire_put_u16(b, n->raft_port);
	wire_put_u16(b, n->tcp_port);
	wire_put_u16(b, n->quic_port);
	wire_put_u16(b, n->http_port);
}

/*
 * A node's client addresses (NODE_ADVERTISE, snapshot version 4): [host str8, may be empty][tcp u16]
 * [quic u16][http u16][ws u16].
 */
static void put_adv(struct wire_buf *b, const struct meta_node *n)
{
	size_t hl = strnlen(n->adv_host, sizeof(n->adv_host) - 1);
	wire_put_str8(b, n->adv_host, (uint8_t)hl);
	wire_put_u16(b, n->adv_tcp_port);
	wire_put_u16(b, n->adv_quic_port);
	wire_put_u16(b, n->adv_http_port);
	wire_put_u16(b, n->adv_ws_port);
}

/* A host str8 into out (META_HOST_MAX + 1 bytes, NUL-terminated); one holding a zero byte is refused. */
static void get_host(struct wire_rd *r, char *out)
{
	struct wire_str h;
	if (wire_get_str8(r, &h) != 0)
		return;
	if (memchr(h.ptr, 0, h.len) != NULL)
		bad(r);
	else
		memcpy(out, h.ptr, h.len);
	out[h.len] = '\0';
}

static void get_adv(struct wire_rd *r, struct meta_node *n)
{
	get_host(r, n->adv_host);
	n->adv_tcp_port = wire_get_u16(r);
	n->adv_quic_port = wire_get_u16(r);
	n->adv_http_port = wire_get_u16(r);
	n->adv_ws_port = 0; /* read by the caller where the format has it */
}

/* A node; its host holds no zero byte (the state keeps it NUL-terminated). */
static void get_node(struct wire_rd *r, struct meta_node *n)
{
	memset(n, 0, sizeof(*n));
	n->id = wire_get_u32(r);
	get_host(r, n->host);
	n->raft_port = wire_get_u16(r);
	n->tcp_port = wire_get_u16(r);
	n->quic_port = wire_get_u16(r);
	n->http_port = wire_get_u16(r);
}

static bool hash_ok(const char *h)
{
	return h != NULL && strlen(h) <= UINT16_MAX;
}

static void get_name(struct wire_rd *r, struct meta_cmd *c)
{
	struct wire_str s;
	if (wire_get_str8(r, &s) != 0)
		return;
	c->name = s.len > 0 ? (const char *)s.ptr : "";
	c->name_len = (uint8_t)s.len;
}

/* The body of a command on streams and topics; false for a command that cannot be encoded. */
static bool put_stream_cmd(struct wire_buf *b, const struct meta_cmd *c)
{
	bool ok = true;
	switch (c->type) {
	case META_CREATE_STREAM:
		wire_put_u64(b, c->ts);
		wire_put_str8(b, c->name, c->name_len);
		break;
	case META_UPDATE_STREAM:
		wire_put_u32(b, c->stream_id);
		wire_put_str8(b, c->name, c->name_len);
		break;
	case META_DELETE_STREAM:
	case META_PURGE_STREAM:
		wire_put_u32(b, c->stream_id);
		break;
	case META_CREATE_TOPIC:
		wire_put_u64(b, c->ts);
		wire_put_u32(b, c->stream_id);
		wire_put_str8(b, c->name, c->name_len);
		wire_put_u32(b, c->count);
		put_topic_fields(b, c);
		break;
	case META_UPDATE_TOPIC:
		wire_put_u32(b, c->stream_id);
		wire_put_u32(b, c->topic_id);
		wire_put_str8(b, c->name, c->name_len);
		put_topic_fields(b, c);
		break;
	case META_DELETE_TOPIC:
	case META_PURGE_TOPIC:
		wire_put_u32(b, c->stream_id);
		wire_put_u32(b, c->topic_id);
		break;
	case META_CREATE_PARTITIONS:
	case META_DELETE_PARTITIONS:
		wire_put_u64(b, c->ts);
		wire_put_u32(b, c->stream_id);
		wire_put_u32(b, c->topic_id);
		wire_put_u32(b, c->count);
		break;
	default:
		ok = false;
		break;
	}
	return ok;
}

/* The body of a command on users and tokens; false for a command that cannot be encoded. */
static bool put_user_cmd(struct wire_buf *b, const struct meta_cmd *c)
{
	bool ok = true;
	switch (c->type) {
	case META_CREATE_USER:
		if (!hash_ok(c->password_hash) || (c->has_perms && c->perms == NULL)) {
			ok = false;
			break;
		}
		wire_put_u64(b, c->ts);
		wire_put_str8(b, c->name, c->name_len);
		put_cstr16(b, c->password_hash);
		wire_put_u8(b, c->status);
		wire_put_u8(b, c->has_perms);
		if (c->has_perms)
			put_perms(b, c->perms);
		break;
	case META_UPDATE_USER:
		wire_put_u32(b, c->user_id);
		wire_put_u8(b, c->name != NULL);
		if (c->name != NULL)
			wire_put_str8(b, c->name, c->name_len);
		wire_put_u8(b, c->status);
		break;
	case META_DELETE_USER:
		wire_put_u32(b, c->user_id);
		break;
	case META_CHANGE_PASSWORD:
		if (!hash_ok(c->password_hash)) {
			ok = false;
			break;
		}
		wire_put_u32(b, c->user_id);
		put_cstr16(b, c->password_hash);
		break;
	case META_UPDATE_PERMISSIONS:
		if (c->has_perms && c->perms == NULL) {
			ok = false;
			break;
		}
		wire_put_u32(b, c->user_id);
		wire_put_u8(b, c->has_perms);
		if (c->has_perms)
			put_perms(b, c->perms);
		break;
	case META_CREATE_PAT:
		if (c->token_hash == NULL) {
			ok = false;
			break;
		}
		wire_put_u32(b, c->user_id);
		wire_put_str8(b, c->name, c->name_len);
		wire_put_bytes(b, c->token_hash, 32);
		wire_put_u64(b, c->expiry_at);
		break;
	case META_DELETE_PAT:
		wire_put_u32(b, c->user_id);
		wire_put_str8(b, c->name, c->name_len);
		break;
	default:
		ok = false;
		break;
	}
	return ok;
}

/* The body of a command on groups, members and offsets; false for a command that cannot be encoded. */
static bool put_group_cmd(struct wire_buf *b, const struct meta_cmd *c)
{
	bool ok = true;
	switch (c->type) {
	case META_CREATE_GROUP:
		wire_put_u32(b, c->stream_id);
		wire_put_u32(b, c->topic_id);
		wire_put_str8(b, c->name, c->name_len);
		break;
	case META_DELETE_GROUP:
		wire_put_u32(b, c->stream_id);
		wire_put_u32(b, c->topic_id);
		wire_put_u32(b, c->group_id);
		break;
	case META_JOIN_GROUP:
	case META_LEAVE_GROUP:
		wire_put_u32(b, c->stream_id);
		wire_put_u32(b, c->topic_id);
		wire_put_u32(b, c->group_id);
		wire_put_u32(b, c->client_id);
		break;
	case META_REMOVE_MEMBER:
	case META_CLEAR_NODE_MEMBERS:
		wire_put_u32(b, c->client_id);
		break;
	case META_CLEAR_MEMBERS:
		break;
	case META_STORE_OFFSET:
	case META_DELETE_OFFSET:
		wire_put_u32(b, c->stream_id);
		wire_put_u32(b, c->topic_id);
		wire_put_u8(b, c->consumer_kind);
		wire_put_u32(b, c->consumer_id);
		wire_put_u32(b, c->partition_id);
		if (c->type == META_STORE_OFFSET)
			wire_put_u64(b, c->offset);
		break;
	default:
		ok = false;
		break;
	}
	return ok;
}

/* The body of a command on the node table; false for a command that cannot be encoded. */
static bool put_node_cmd(struct wire_buf *b, const struct meta_cmd *c)
{
	bool ok = true;
	switch (c->type) {
	case META_NODES_INIT:
		if (c->n_nodes == 0 || c->n_nodes > META_MAX_NODES) {
			ok = false;
			break;
		}
		wire_put_u8(b, c->replication_factor);
		wire_put_u8(b, c->n_nodes);
		for (uint32_t i = 0; i < c->n_nodes; i++)
			put_node(b, &c->nodes[i]);
		break;
	case META_NODE_ADD:
		if (c->n_nodes != 1) {
			ok = false;
			break;
		}
		put_node(b, &c->nodes[0]);
		break;
	case META_NODE_REMOVE:
		wire_put_u32(b, c->node_id);
		break;
	case META_NODE_ADVERTISE:
		if (c->n_nodes != 1) {
			ok = false;
			break;
		}
		wire_put_u32(b, c->node_id);
		put_adv(b, &c->nodes[0]);
		break;
	default:
		ok = false;
		break;
	}
	return ok;
}

int metarec_encode(const struct meta_cmd *c, struct wire_buf *b)
{
	if (c->name == NULL && c->name_len > 0)
		return -EINVAL;
	size_t start = b->len;
	wire_put_u8(b, c->type == META_NODE_ADVERTISE ? METAREC_VERSION_WS : METAREC_VERSION);
	wire_put_u8(b, c->type);
	bool ok = false; /* the families by their ranges of types (meta.h) */
	if (c->type >= META_CREATE_STREAM && c->type <= META_DELETE_PARTITIONS)
		ok = put_stream_cmd(b, c);
	else if (c->type >= META_CREATE_USER && c->type <= META_DELETE_PAT)
		ok = put_user_cmd(b, c);
	else if (c->type >= META_CREATE_GROUP && c->type <= META_CLEAR_NODE_MEMBERS)
		ok = put_group_cmd(b, c);
	else if (c->type >= META_NODES_INIT && c->type <= META_NODE_ADVERTISE)
		ok = put_node_cmd(b, c);
	int rv = wire_buf_error(b);
	if (rv == 0 && !ok)
		rv = -EINVAL;
	if (rv != 0 && wire_buf_error(b) == 0)
		b->len = start; /* The partial record is taken back and the buffer stays usable. */
	return rv;
}

/* The body of a command on streams and topics. */
static void get_stream_cmd(struct wire_rd *r, struct meta_cmd *c)
{
	switch (c->type) {
	case META_CREATE_STREAM:
		c->ts = wire_get_u64(r);
		get_name(r, c);
		break;
	case META_UPDATE_STREAM:
		c->stream_id = wire_get_u32(r);
		get_name(r, c);
		break;
	case META_DELETE_STREAM:
	case META_PURGE_STREAM:
		c->stream_id = wire_get_u32(r);
		break;
	case META_CREATE_TOPIC:
		c->ts = wire_get_u64(r);
		c->stream_id = wire_get_u32(r);
		get_name(r, c);
		c->count = wire_get_u32(r);
		get_topic_fields(r, c);
		break;
	case META_UPDATE_TOPIC:
		c->stream_id = wire_get_u32(r);
		c->topic_id = wire_get_u32(r);
		get_name(r, c);
		get_topic_fields(r, c);
		break;
	case META_DELETE_TOPIC:
	case META_PURGE_TOPIC:
		c->stream_id = wire_get_u32(r);
		c->topic_id = wire_get_u32(r);
		break;
	case META_CREATE_PARTITIONS:
	case META_DELETE_PARTITIONS:
		c->ts = wire_get_u64(r);
		c->stream_id = wire_get_u32(r);
		c->topic_id = wire_get_u32(r);
		c->count = wire_get_u32(r);
		break;
	default:
		bad(r);
		break;
	}
}

/* The body of a command on users and tokens. */
static void get_user_cmd(struct wire_rd *r, struct meta_cmd *c, struct meta_perms *scratch)
{
	switch (c->type) {
	case META_CREATE_USER:
		c->ts = wire_get_u64(r);
		get_name(r, c);
		c->password_hash = get_cstr16(r);
		c->status = wire_get_u8(r);
		c->has_perms = get_bool(r);
		if (c->has_perms && !wire_rd_error(r)) {
			get_perms(r, scratch);
			c->perms = scratch;
		}
		break;
	case META_UPDATE_USER:
		c->user_id = wire_get_u32(r);
		if (get_bool(r))
			get_name(r, c);
		c->status = wire_get_u8(r);
		break;
	case META_DELETE_USER:
		c->user_id = wire_get_u32(r);
		break;
	case META_CHANGE_PASSWORD:
		c->user_id = wire_get_u32(r);
		c->password_hash = get_cstr16(r);
		break;
	case META_UPDATE_PERMISSIONS:
		c->user_id = wire_get_u32(r);
		c->has_perms = get_bool(r);
		if (c->has_perms && !wire_rd_error(r)) {
			get_perms(r, scratch);
			c->perms = scratch;
		}
		break;
	case META_CREATE_PAT:
		c->user_id = wire_get_u32(r);
		get_name(r, c);
		c->token_hash = wire_get_bytes(r, 32);
		c->expiry_at = wire_get_u64(r);
		break;
	case META_DELETE_PAT:
		c->user_id = wire_get_u32(r);
		get_name(r, c);
		break;
	default:
		bad(r);
		break;
	}
}

/* The body of a command on groups, members and offsets. */
static void get_group_cmd(struct wire_rd *r, struct meta_cmd *c)
{
	switch (c->type) {
	case META_CREATE_GROUP:
		c->stream_id = wire_get_u32(r);
		c->topic_id = wire_get_u32(r);
		get_name(r, c);
		break;
	case META_DELETE_GROUP:
		c->stream_id = wire_get_u32(r);
		c->topic_id = wire_get_u32(r);
		c->group_id = wire_get_u32(r);
		break;
	case META_JOIN_GROUP:
	case META_LEAVE_GROUP:
		c->stream_id = wire_get_u32(r);
		c->topic_id = wire_get_u32(r);
		c->group_id = wire_get_u32(r);
		c->client_id = wire_get_u32(r);
		break;
	case META_REMOVE_MEMBER:
	case META_CLEAR_NODE_MEMBERS:
		c->client_id = wire_get_u32(r);
		break;
	case META_CLEAR_MEMBERS:
		break;
	case META_STORE_OFFSET:
	case META_DELETE_OFFSET:
		c->stream_id = wire_get_u32(r);
		c->topic_id = wire_get_u32(r);
		c->consumer_kind = wire_get_u8(r);
		c->consumer_id = wire_get_u32(r);
		c->partition_id = wire_get_u32(r);
		if (c->type == META_STORE_OFFSET)
			c->offset = wire_get_u64(r);
		break;
	default:
		bad(r);
		break;
	}
}

/* The body of a command on the node table. */
static void get_node_cmd(struct wire_rd *r, struct meta_cmd *c, uint8_t version)
{
	switch (c->type) {
	case META_NODES_INIT:
		c->replication_factor = wire_get_u8(r);
		c->n_nodes = wire_get_u8(r);
		if (c->n_nodes == 0 || c->n_nodes > META_MAX_NODES)
			bad(r);
		for (uint32_t i = 0; i < c->n_nodes && !wire_rd_error(r); i++)
			get_node(r, &c->nodes[i]);
		break;
	case META_NODE_ADD:
		c->n_nodes = 1;
		get_node(r, &c->nodes[0]);
		break;
	case META_NODE_REMOVE:
		c->node_id = wire_get_u32(r);
		break;
	case META_NODE_ADVERTISE:
		c->node_id = wire_get_u32(r);
		c->n_nodes = 1;
		memset(&c->nodes[0], 0, sizeof(c->nodes[0]));
		get_adv(r, &c->nodes[0]);
		if (version >= METAREC_VERSION_WS)
			c->nodes[0].adv_ws_port = wire_get_u16(r);
		break;
	default:
		bad(r);
		break;
	}
}

int metarec_decode(const uint8_t *p, size_t len, struct meta_cmd *out, struct meta_perms *scratch)
{
	memset(out, 0, sizeof(*out));
	memset(scratch, 0, sizeof(*scratch));
	struct wire_rd rd, *r = &rd;
	wire_rd_init(r, p, len);
	uint8_t version = wire_get_u8(r);
	if (version != METAREC_VERSION && version != METAREC_VERSION_WS) {
		bad(r);
		return -EBADMSG;
	}
	struct meta_cmd *c = out;
	c->type = wire_get_u8(r);
	if (version == METAREC_VERSION_WS && c->type != META_NODE_ADVERTISE)
		bad(r); /* only NODE_ADVERTISE has a version 2 */
	else if (c->type >= META_CREATE_STREAM && c->type <= META_DELETE_PARTITIONS)
		get_stream_cmd(r, c);
	else if (c->type >= META_CREATE_USER && c->type <= META_DELETE_PAT)
		get_user_cmd(r, c, scratch);
	else if (c->type >= META_CREATE_GROUP && c->type <= META_CLEAR_NODE_MEMBERS)
		get_group_cmd(r, c);
	else if (c->type >= META_NODES_INIT && c->type <= META_NODE_ADVERTISE)
		get_node_cmd(r, c, version);
	else
		bad(r);
	int rv = outcome(r);
	if (rv != 0) {
		meta_perms_free(scratch);
		memset(out, 0, sizeof(*out));
	}
	return rv;
}

/* ---- Snapshots ---- */

static void put_topic(struct wire_buf *b, const struct meta_topic *t)
{
	wire_put_u32(b, t->id);
	put_state_name(b, t->name);
	wire_put_u64(b, t->created_at);
	wire_put_u64(b, t->message_expiry);
	wire_put_u64(b, t->max_topic_size);
	wire_put_u64(b, t->dedup_window);
	wire_put_u8(b, t->compression);
	wire_put_u8(b, t->durability);
	wire_put_u8(b, t->replication_factor);
	wire_put_u32(b, t->n_partitions);
	for (uint32_t i = 0; i < t->n_partitions; i++) {
		const struct meta_partition *pp = &t->partitions[i];
		wire_put_u64(b, pp->created_at);
		wire_put_u8(b, pp->moved);
		wire_put_u8(b, pp->n_replicas);
		for (uint32_t k = 0; k < pp->n_replicas; k++)
			wire_put_u32(b, pp->replicas[k]);
	}
	wire_put_u32(b, t->next_group_id);
	uint32_t n_groups = 0;
	for (uint32_t i = 0; i < t->n_groups; i++)
		n_groups += t->groups[i] != NULL;
	wire_put_u32(b, n_groups);
	for (uint32_t i = 0; i < t->n_groups; i++) {
		const struct meta_group *g = t->groups[i];
		if (g == NULL)
			continue;
		wire_put_u32(b, g->id);
		put_state_name(b, g->name);
		wire_put_u64(b, g->generation);
		wire_put_u32(b, g->n_members);
		for (uint32_t k = 0; k < g->n_members; k++) {
			const struct meta_member *mb = &g->members[k];
			wire_put_u32(b, mb->client_id);
			wire_put_u32(b, mb->n_partitions);
			for (uint32_t j = 0; j < mb->n_partitions; j++)
				wire_put_u32(b, mb->partitions[j]);
		}
	}
	wire_put_u32(b, t->n_offsets);
	for (uint32_t i = 0; i < t->n_offsets; i++) {
		const struct meta_offset *o = &t->offsets[i];
		wire_put_u8(b, o->kind);
		wire_put_u32(b, o->consumer_id);
		wire_put_u32(b, o->partition_id);
		wire_put_u64(b, o->offset);
	}
}

static void put_user(struct wire_buf *b, const struct meta_user *u)
{
	wire_put_u32(b, u->id);
	put_state_name(b, u->username);
	put_cstr16(b, u->password_hash != NULL ? u->password_hash : "");
	wire_put_u8(b, u->status);
	wire_put_u64(b, u->created_at);
	wire_put_u8(b, u->has_perms);
	if (u->has_perms)
		put_perms(b, &u->perms);
	wire_put_u32(b, u->n_pats);
	for (uint32_t i = 0; i < u->n_pats; i++) {
		const struct meta_pat *p = &u->pats[i];
		put_state_name(b, p->name);
		wire_put_bytes(b, p->hash, sizeof(p->hash));
		wire_put_u64(b, p->expiry_at);
	}
}

int metarec_snapshot_encode(const struct meta *m, struct wire_buf *b)
{
	wire_put_u8(b, METAREC_SNAPSHOT_VERSION);
	wire_put_u64(b, m->applied);
	wire_put_u8(b, m->default_rf);
	wire_put_u8(b, (uint8_t)m->n_nodes);
	for (uint32_t i = 0; i < m->n_nodes; i++) {
		put_node(b, &m->nodes[i]);
		put_adv(b, &m->nodes[i]);
	}
	uint32_t n = 0;
	for (uint32_t i = 0; i < m->n_streams; i++)
		n += m->streams[i] != NULL;
	wire_put_u32(b, n);
	for (uint32_t i = 0; i < m->n_streams; i++) {
		const struct meta_stream *s = m->streams[i];
		if (s == NULL)
			continue;
		wire_put_u32(b, s->id);
		put_state_name(b, s->name);
		wire_put_u64(b, s->created_at);
		uint32_t nt = 0;
		for (uint32_t k = 0; k < s->n_topics; k++)
			nt += s->topics[k] != NULL;
		wire_put_u32(b, nt);
		for (uint32_t k = 0; k < s->n_topics; k++)
			if (s->topics[k] != NULL)
				put_topic(b, s->topics[k]);
	}
	n = 0;
	for (uint32_t i = 0; i < m->n_users; i++)
		n += m->users[i] != NULL;
	wire_put_u32(b, n);
	for (uint32_t i = 0; i < m->n_users; i++)
		if (m->users[i] != NULL)
			put_user(b, m->users[i]);
	return wire_buf_error(b);
}

/*
 * Makes slot `id` of an id-indexed pointer array exist: ids must come strictly increasing and below
 * METAREC_MAX_ID. *n becomes id + 1; the capacity grows geometrically (kept in *cap).
 */
static bool slot_for(struct wire_rd *r, void ***arr, uint32_t *n, uint32_t *cap, uint32_t id)
{
	if (id >= METAREC_MAX_ID || (*n > 0 && id < *n)) {
		bad(r);
		return false;
	}
	if (id >= *cap) {
		uint32_t c = *cap ? *cap : 8;
		while (c <= id)
			c *= 2;
		void **a = realloc(*arr, (size_t)c * sizeof(void *));
		if (a == NULL) {
			wire_rd_fail(r, -ENOMEM);
			return false;
		}
		memset(a + *cap, 0, (size_t)(c - *cap) * sizeof(void *));
		*arr = a;
		*cap = c;
	}
	*n = id + 1;
	return true;
}

static void get_group(struct wire_rd *r, struct meta_group *g)
{
	get_state_name(r, g->name);
	g->generation = wire_get_u64(r);
	uint32_t n = get_count(r, MIN_MEMBER);
	if (wire_rd_error(r) || n == 0)
		return;
	g->members = calloc(n, sizeof(*g->members));
	if (g->members == NULL) {
		wire_rd_fail(r, -ENOMEM);
		return;
	}
	g->n_members = n;
	for (uint32_t i = 0; i < n && !wire_rd_error(r); i++) {
		struct meta_member *mb = &g->members[i];
		mb->client_id = wire_get_u32(r);
		uint32_t np = get_count(r, MIN_MEMBER_PARTITION);
		if (wire_rd_error(r) || np == 0)
			continue;
		mb->partitions = malloc((size_t)np * sizeof(uint32_t));
		if (mb->partitions == NULL) {
			wire_rd_fail(r, -ENOMEM);
			return;
		}
		mb->n_partitions = np;
		for (uint32_t k = 0; k < np; k++)
			mb->partitions[k] = wire_get_u32(r);
	}
}

static void get_topic(struct wire_rd *r, struct meta_topic *t)
{
	get_state_name(r, t->name);
	t->created_at = wire_get_u64(r);
	t->message_expiry = wire_get_u64(r);
	t->max_topic_size = wire_get_u64(r);
	t->dedup_window = wire_get_u64(r);
	t->compression = wire_get_u8(r);
	t->durability = wire_get_u8(r);
	t->replication_factor = wire_get_u8(r);
	uint32_t np = get_count(r, MIN_PARTITION);
	if (wire_rd_error(r))
		return;
	if (np > 0) {
		t->partitions = malloc((size_t)np * sizeof(*t->partitions));
		if (t->partitions == NULL) {
			wire_rd_fail(r, -ENOMEM);
			return;
		}
		t->n_partitions = np;
		for (uint32_t i = 0; i < np && !wire_rd_error(r); i++) {
			struct meta_partition *pp = &t->partitions[i];
			memset(pp, 0, sizeof(*pp));
			pp->created_at = wire_get_u64(r);
			pp->moved = get_bool(r);
			pp->n_replicas = wire_get_u8(r);
			if (pp->n_replicas > META_MAX_REPLICAS) {
				bad(r);
				return;
			}
			for (uint32_t k = 0; k < pp->n_replicas; k++)
				pp->replicas[k] = wire_get_u32(r);
		}
	}
	t->next_group_id = wire_get_u32(r);
	uint32_t ng = get_count(r, MIN_GROUP);
	if (wire_rd_error(r))
		return;
	if (ng > 0) {
		t->groups = calloc(ng, sizeof(*t->groups));
		if (t->groups == NULL) {
			wire_rd_fail(r, -ENOMEM);
			return;
		}
	}
	for (uint32_t i = 0; i < ng && !wire_rd_error(r); i++) {
		uint32_t id = wire_get_u32(r);
		if (id >= t->next_group_id || (i > 0 && id <= t->groups[i - 1]->id)) {
			bad(r);
			return;
		}
		struct meta_group *g = calloc(1, sizeof(*g));
		if (g == NULL) {
			wire_rd_fail(r, -ENOMEM);
			return;
		}
		g->id = id;
		t->groups[t->n_groups++] = g;
		get_group(r, g);
	}
	uint32_t no = get_count(r, MIN_OFFSET);
	if (wire_rd_error(r) || no == 0)
		return;
	t->offsets = calloc(no, sizeof(*t->offsets));
	if (t->offsets == NULL) {
		wire_rd_fail(r, -ENOMEM);
		return;
	}
	t->n_offsets = t->cap_offsets = no;
	for (uint32_t i = 0; i < no; i++) {
		struct meta_offset *o = &t->offsets[i];
		o->kind = wire_get_u8(r);
		o->consumer_id = wire_get_u32(r);
		o->partition_id = wire_get_u32(r);
		o->offset = wire_get_u64(r);
	}
}

static void get_stream(struct wire_rd *r, struct meta_stream *s)
{
	get_state_name(r, s->name);
	s->created_at = wire_get_u64(r);
	uint32_t n = get_count(r, MIN_TOPIC), cap = 0;
	for (uint32_t i = 0; i < n && !wire_rd_error(r); i++) {
		uint32_t id = wire_get_u32(r);
		if (wire_rd_error(r) || !slot_for(r, (void ***)&s->topics, &s->n_topics, &cap, id))
			return;
		struct meta_topic *t = calloc(1, sizeof(*t));
		if (t == NULL) {
			wire_rd_fail(r, -ENOMEM);
			return;
		}
		t->id = id;
		t->stream_id = s->id;
		s->topics[id] = t;
		get_topic(r, t);
	}
}

static void get_user(struct wire_rd *r, struct meta_user *u)
{
	get_state_name(r, u->username);
	const char *hash = get_cstr16(r);
	if (hash != NULL && (u->password_hash = strdup(hash)) == NULL) {
		wire_rd_fail(r, -ENOMEM);
		return;
	}
	u->status = wire_get_u8(r);
	u->created_at = wire_get_u64(r);
	u->has_perms = get_bool(r);
	if (u->has_perms && !wire_rd_error(r))
		get_perms(r, &u->perms);
	uint32_t n = get_count(r, MIN_PAT);
	if (wire_rd_error(r) || n == 0)
		return;
	u->pats = calloc(n, sizeof(*u->pats));
	if (u->pats == NULL) {
		wire_rd_fail(r, -ENOMEM);
		return;
	}
	u->n_pats = n;
	for (uint32_t i = 0; i < n && !wire_rd_error(r); i++) {
		struct meta_pat *p = &u->pats[i];
		get_state_name(r, p->name);
		const uint8_t *h = wire_get_bytes(r, sizeof(p->hash));
		if (h != NULL)
			memcpy(p->hash, h, sizeof(p->hash));
		p->expiry_at = wire_get_u64(r);
	}
}

int metarec_snapshot_decode(const uint8_t *p, size_t len, struct meta **out)
{
	*out = NULL;
	struct meta *m = meta_new();
	if (m == NULL)
		return -ENOMEM;
	struct wire_rd rd, *r = &rd;
	wire_rd_init(r, p, len);
	/* Versions 2 (before client addresses) and 3 (before the WebSocket port) are still read. */
	uint8_t version = wire_get_u8(r);
	if (version != METAREC_SNAPSHOT_VERSION && version != 2 && version != 3)
		bad(r);
	m->applied = wire_get_u64(r);
	m->default_rf = wire_get_u8(r);
	m->n_nodes = wire_get_u8(r);
	if (m->n_nodes > META_MAX_NODES)
		bad(r);
	for (uint32_t i = 0; i < m->n_nodes && !wire_rd_error(r); i++) {
		get_node(r, &m->nodes[i]);
		if (version >= 3)
			get_adv(r, &m->nodes[i]);
		if (version >= 4)
			m->nodes[i].adv_ws_port = wire_get_u16(r);
		/* by increasing id, each a valid node */
		if (m->nodes[i].id == 0 || m->nodes[i].id > META_MAX_NODE_ID || m->nodes[i].host[0] == '\0' ||
		    (i > 0 && m->nodes[i].id <= m->nodes[i - 1].id))
			bad(r);
	}
	uint32_t n = get_count(r, MIN_STREAM), cap = 0;
	for (uint32_t i = 0; i < n && !wire_rd_error(r); i++) {
		uint32_t id = wire_get_u32(r);
		if (wire_rd_error(r) || !slot_for(r, (void ***)&m->streams, &m->n_streams, &cap, id))
			break;
		struct meta_stream *s = calloc(1, sizeof(*s));
		if (s == NULL) {
			wire_rd_fail(r, -ENOMEM);
			break;
		}
		s->id = id;
		m->streams[id] = s;
		get_stream(r, s);
	}
	n = get_count(r, MIN_USER);
	cap = 0;
	for (uint32_t i = 0; i < n && !wire_rd_error(r); i++) {
		uint32_t id = wire_get_u32(r);
		if (wire_rd_error(r) || !slot_for(r, (void ***)&m->users, &m->n_users, &cap, id))
			break;
		struct meta_user *u = calloc(1, sizeof(*u));
		if (u == NULL) {
			wire_rd_fail(r, -ENOMEM);
			break;
		}
		u->id = id;
		m->users[id] = u;
		get_user(r, u);
	}
	int rv = outcome(r);
	if (rv != 0) {
		meta_free(m);
		return rv;
	}
	*out = m;
	return 0;
}
