/*
 * wire — payload reader, writer and primitive codecs. The byte formats are specified in wire.h.
 */
#include "proto/wire.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- Reader ---- */

void wire_rd_init(struct wire_rd *r, const void *p, size_t len)
{
	r->p = p;
	r->len = p ? len : 0;
	r->pos = 0;
	r->err = 0;
}

void wire_rd_fail(struct wire_rd *r, int err)
{
	if (r->err == 0)
		r->err = err;
}

int wire_rd_error(const struct wire_rd *r)
{
	return r->err;
}

size_t wire_rd_left(const struct wire_rd *r)
{
	return r->err ? 0 : r->len - r->pos;
}

int wire_rd_done(const struct wire_rd *r)
{
	if (r->err)
		return r->err;
	return r->pos == r->len ? 0 : WIRE_E_TRAILING;
}

/* Claims n bytes: a pointer to them, or NULL after recording WIRE_E_SHORT. */
static const uint8_t *take(struct wire_rd *r, size_t n)
{
	if (r->err)
		return NULL;
	if (n > r->len - r->pos) {
		r->err = WIRE_E_SHORT;
		return NULL;
	}
	if (n == 0)
		return r->p ? r->p + r->pos : NULL;
	const uint8_t *q = r->p + r->pos;
	r->pos += n;
	assert(r->pos <= r->len); /* the cursor never passes the end of the payload */
	return q;
}

uint8_t wire_get_u8(struct wire_rd *r)
{
	const uint8_t *q = take(r, 1);
	return q ? q[0] : 0;
}

uint16_t wire_get_u16(struct wire_rd *r)
{
	const uint8_t *q = take(r, 2);
	return q ? (uint16_t)(q[0] | q[1] << 8) : 0;
}

uint32_t wire_get_u32(struct wire_rd *r)
{
	const uint8_t *q = take(r, 4);
	return q ? (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24 : 0;
}

uint64_t wire_get_u64(struct wire_rd *r)
{
	uint64_t lo = wire_get_u32(r);
	uint64_t hi = wire_get_u32(r);
	return r->err ? 0 : lo | hi << 32;
}

const uint8_t *wire_get_bytes(struct wire_rd *r, size_t n)
{
	return take(r, n);
}

/* ---- Writer ---- */

void wire_buf_init(struct wire_buf *b)
{
	memset(b, 0, sizeof *b);
}

void wire_buf_free(struct wire_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

void wire_buf_reset(struct wire_buf *b)
{
	b->len = 0;
	b->err = 0;
}

int wire_buf_error(const struct wire_buf *b)
{
	return b->err;
}

static void buf_fail(struct wire_buf *b, int err)
{
	if (b->err == 0)
		b->err = err;
}

int wire_buf_reserve(struct wire_buf *b, size_t n)
{
	if (b->err)
		return b->err;
	if (n <= b->cap - b->len)
		return 0;
	if (n > SIZE_MAX / 2 - b->len) {
		buf_fail(b, WIRE_E_NOMEM);
		return b->err;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < n)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p) {
		buf_fail(b, WIRE_E_NOMEM);
		return b->err;
	}
	b->p = p;
	b->cap = cap;
	assert(b->len <= b->cap && n <= b->cap - b->len);
	return 0;
}

uint8_t *wire_buf_take(struct wire_buf *b, size_t *len)
{
	uint8_t *p = b->p;
	*len = b->len;
	if (b->err || b->len == 0) {
		free(p);
		p = NULL;
		*len = 0;
	}
	memset(b, 0, sizeof *b);
	return p;
}

/* Appends n bytes and returns where they go, or NULL after an error. */
static uint8_t *grow(struct wire_buf *b, size_t n)
{
	if (wire_buf_reserve(b, n) != 0)
		return NULL;
	uint8_t *q = b->p + b->len;
	b->len += n;
	return q;
}

static void put_le(uint8_t *q, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		q[i] = (uint8_t)(v >> (8 * i));
}

void wire_put_u8(struct wire_buf *b, uint8_t v)
{
	uint8_t *q = grow(b, 1);
	if (q)
		q[0] = v;
}

void wire_put_u16(struct wire_buf *b, uint16_t v)
{
	uint8_t *q = grow(b, 2);
	if (q)
		put_le(q, v, 2);
}

void wire_put_u32(struct wire_buf *b, uint32_t v)
{
	uint8_t *q = grow(b, 4);
	if (q)
		put_le(q, v, 4);
}

void wire_put_u64(struct wire_buf *b, uint64_t v)
{
	uint8_t *q = grow(b, 8);
	if (q)
		put_le(q, v, 8);
}

void wire_put_bytes(struct wire_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	uint8_t *q = grow(b, n);
	if (q)
		memcpy(q, p, n);
}

size_t wire_put_reserve(struct wire_buf *b, size_t n)
{
	size_t off = b->len;
	uint8_t *q = grow(b, n);
	if (q)
		memset(q, 0, n);
	return off;
}

static void patch(struct wire_buf *b, size_t off, uint64_t v, size_t n)
{
	if (b->err || off > b->len || n > b->len - off)
		return;
	put_le(b->p + off, v, n);
}

void wire_patch_u8(struct wire_buf *b, size_t off, uint8_t v)
{
	patch(b, off, v, 1);
}

void wire_patch_u32(struct wire_buf *b, size_t off, uint32_t v)
{
	patch(b, off, v, 4);
}

void wire_patch_u64(struct wire_buf *b, size_t off, uint64_t v)
{
	patch(b, off, v, 8);
}

/* ---- Strings ---- */

bool wire_utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t need;
		uint32_t cp, min;
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i - 1 < need)
			return false;
		for (size_t k = 1; k <= need; k++) {
			uint8_t d = s[i + k];
			if ((d & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (d & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

bool wire_str_eq(struct wire_str s, const char *c)
{
	size_t n = strlen(c);
	return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

int wire_get_str8(struct wire_rd *r, struct wire_str *out)
{
	size_t n = wire_get_u8(r);
	out->ptr = wire_get_bytes(r, n);
	out->len = r->err ? 0 : n;
	return r->err;
}

void wire_put_str8(struct wire_buf *b, const void *s, size_t len)
{
	if (len > WIRE_NAME_MAX) {
		buf_fail(b, WIRE_E_VALUE);
		return;
	}
	size_t at = b->len;
	wire_put_u8(b, (uint8_t)len);
	wire_put_bytes(b, s, len);
	assert(b->err || b->len == at + 1 + len); /* the length byte and exactly the bytes it counts */
}

int wire_get_str32(struct wire_rd *r, struct wire_str *out)
{
	size_t n = wire_get_u32(r);
	out->ptr = wire_get_bytes(r, n);
	out->len = r->err ? 0 : n;
	return r->err;
}

void wire_put_str32(struct wire_buf *b, const void *s, size_t len)
{
	if (len > UINT32_MAX) {
		buf_fail(b, WIRE_E_VALUE);
		return;
	}
	wire_put_u32(b, (uint32_t)len);
	wire_put_bytes(b, s, len);
}

/* Checks a name's length (1..255) and encoding, recording the broken rule in the reader. */
static int check_name(struct wire_rd *r, struct wire_str s)
{
	if (s.len == 0 || s.len > WIRE_NAME_MAX)
		wire_rd_fail(r, WIRE_E_VALUE);
	else if (!wire_utf8_valid(s.ptr, s.len))
		wire_rd_fail(r, WIRE_E_UTF8);
	return r->err;
}

int wire_get_name(struct wire_rd *r, struct wire_str *out)
{
	if (wire_get_str8(r, out) != 0)
		return r->err;
	if (check_name(r, *out) != 0) {
		*out = (struct wire_str){0};
		return r->err;
	}
	return 0;
}

void wire_put_name(struct wire_buf *b, const void *s, size_t len)
{
	if (len == 0 || len > WIRE_NAME_MAX) {
		buf_fail(b, WIRE_E_VALUE);
		return;
	}
	wire_put_str8(b, s, len);
}

/* ---- Identifier, Consumer, optional partition, polling strategy, partitioning ---- */

int wire_get_id(struct wire_rd *r, struct wire_id *out)
{
	memset(out, 0, sizeof *out);
	uint8_t kind = wire_get_u8(r);
	size_t len = wire_get_u8(r);
	const uint8_t *v = wire_get_bytes(r, len);
	if (r->err)
		return r->err;
	if (kind == WIRE_ID_NUMERIC) {
		if (len != 4) {
			wire_rd_fail(r, WIRE_E_VALUE);
			return r->err;
		}
		out->num = (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24;
	} else if (kind == WIRE_ID_STRING) {
		struct wire_str s = {v, len};
		if (check_name(r, s) != 0)
			return r->err;
		out->name = s;
	} else {
		wire_rd_fail(r, WIRE_E_VALUE);
		return r->err;
	}
	out->kind = kind;
	return 0;
}

void wire_put_id(struct wire_buf *b, const struct wire_id *id)
{
	size_t at = b->len;
	if (id->kind == WIRE_ID_NUMERIC) {
		wire_put_u8(b, WIRE_ID_NUMERIC);
		wire_put_u8(b, 4);
		wire_put_u32(b, id->num);
	} else if (id->kind == WIRE_ID_STRING && id->name.len >= 1 && id->name.len <= WIRE_NAME_MAX) {
		wire_put_u8(b, WIRE_ID_STRING);
		wire_put_str8(b, id->name.ptr, id->name.len);
	} else {
		buf_fail(b, WIRE_E_VALUE);
	}
	/* kind, length, value: the length byte counts exactly the value written. */
	assert(b->err || b->len == at + 2 + (id->kind == WIRE_ID_NUMERIC ? 4 : id->name.len));
}

int wire_get_consumer(struct wire_rd *r, struct wire_consumer *out)
{
	memset(out, 0, sizeof *out);
	uint8_t kind = wire_get_u8(r);
	if (r->err)
		return r->err;
	if (kind != WIRE_CONSUMER_SINGLE && kind != WIRE_CONSUMER_GROUP) {
		wire_rd_fail(r, WIRE_E_VALUE);
		return r->err;
	}
	if (wire_get_id(r, &out->id) != 0)
		return r->err;
	out->kind = kind;
	return 0;
}

void wire_put_consumer(struct wire_buf *b, const struct wire_consumer *c)
{
	wire_put_u8(b, c->kind);
	wire_put_id(b, &c->id);
}

int wire_get_opt_partition(struct wire_rd *r, struct wire_opt_partition *out)
{
	memset(out, 0, sizeof *out);
	uint8_t flag = wire_get_u8(r);
	uint32_t id = wire_get_u32(r);
	if (r->err)
		return r->err;
	if (flag > 1) {
		wire_rd_fail(r, WIRE_E_VALUE);
		return r->err;
	}
	out->present = flag == 1;
	out->id = id;
	return 0;
}

void wire_put_opt_partition(struct wire_buf *b, const struct wire_opt_partition *p)
{
	wire_put_u8(b, p->present ? 1 : 0);
	wire_put_u32(b, p->id);
}

int wire_get_polling(struct wire_rd *r, struct wire_polling *out)
{
	memset(out, 0, sizeof *out);
	uint8_t kind = wire_get_u8(r);
	uint64_t value = wire_get_u64(r);
	if (r->err)
		return r->err;
	if (kind < WIRE_POLL_OFFSET || kind > WIRE_POLL_NEXT) {
		wire_rd_fail(r, WIRE_E_VALUE);
		return r->err;
	}
	out->kind = kind;
	out->value = value;
	return 0;
}

void wire_put_polling(struct wire_buf *b, const struct wire_polling *p)
{
	wire_put_u8(b, p->kind);
	wire_put_u64(b, p->value);
}

int wire_get_partitioning(struct wire_rd *r, struct wire_partitioning *out)
{
	memset(out, 0, sizeof *out);
	uint8_t kind = wire_get_u8(r);
	size_t len = wire_get_u8(r);
	const uint8_t *v = wire_get_bytes(r, len);
	if (r->err)
		return r->err;
	switch (kind) {
	case WIRE_PART_BALANCED:
		if (len != 0)
			wire_rd_fail(r, WIRE_E_VALUE);
		break;
	case WIRE_PART_PARTITION_ID:
		if (len != 4)
			wire_rd_fail(r, WIRE_E_VALUE);
		else
			out->partition_id = (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 |
					    (uint32_t)v[3] << 24;
		break;
	case WIRE_PART_MESSAGES_KEY:
		if (len == 0)
			wire_rd_fail(r, WIRE_E_VALUE);
		else
			out->key = (struct wire_str){v, len};
		break;
	default:
		wire_rd_fail(r, WIRE_E_VALUE);
		break;
	}
	if (r->err) {
		memset(out, 0, sizeof *out);
		return r->err;
	}
	out->kind = kind;
	return 0;
}

void wire_put_partitioning(struct wire_buf *b, const struct wire_partitioning *p)
{
	switch (p->kind) {
	case WIRE_PART_BALANCED:
		wire_put_u8(b, WIRE_PART_BALANCED);
		wire_put_u8(b, 0);
		break;
	case WIRE_PART_PARTITION_ID:
		wire_put_u8(b, WIRE_PART_PARTITION_ID);
		wire_put_u8(b, 4);
		wire_put_u32(b, p->partition_id);
		break;
	case WIRE_PART_MESSAGES_KEY:
		if (p->key.len == 0 || p->key.len > WIRE_NAME_MAX) {
			buf_fail(b, WIRE_E_VALUE);
			break;
		}
		wire_put_u8(b, WIRE_PART_MESSAGES_KEY);
		wire_put_str8(b, p->key.ptr, p->key.len);
		break;
	default:
		buf_fail(b, WIRE_E_VALUE);
		break;
	}
}

/* ---- Options ---- */

/* Reads one TLV field: [kind u8][len u32][bytes], kind ≠ 0 and len 1..255. */
static void tlv_field(struct wire_rd *r, uint8_t *kind, struct wire_str *s)
{
	*kind = wire_get_u8(r);
	uint32_t len = wire_get_u32(r);
	if (r->err)
		return;
	if (*kind == 0 || len == 0 || len > WIRE_NAME_MAX) {
		wire_rd_fail(r, WIRE_E_VALUE);
		return;
	}
	s->ptr = wire_get_bytes(r, len);
	s->len = len;
}

static int str_cmp(const void *a, const void *b)
{
	const struct wire_str *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->ptr, y->ptr, n);
	if (c != 0)
		return c;
	return (x->len > y->len) - (x->len < y->len);
}

int wire_opts_parse(const void *p, size_t len, struct wire_opts *out)
{
	memset(out, 0, sizeof *out);
	if (len > WIRE_OPTIONS_MAX_BYTES)
		return WIRE_E_LIMIT;

	/* Keys are collected, sorted and compared with their neighbours to find duplicates. */
	struct wire_str *keys = NULL;
	uint32_t n = 0;
	struct wire_rd r;
	int err = 0;
	wire_rd_init(&r, p, len);
	while (r.err == 0 && r.pos < r.len) {
		uint8_t key_kind, value_kind;
		struct wire_str key = {0}, value = {0};
		tlv_field(&r, &key_kind, &key);
		tlv_field(&r, &value_kind, &value);
		if (r.err)
			break;
		if (n == WIRE_OPTIONS_MAX_ENTRIES) {
			err = WIRE_E_LIMIT;
			break;
		}
		if (key_kind != WIRE_KIND_STRING) {
			err = WIRE_E_VALUE;
			break;
		}
		if (!wire_utf8_valid(key.ptr, key.len)) {
			err = WIRE_E_UTF8;
			break;
		}
		if (!keys) {
			keys = malloc(WIRE_OPTIONS_MAX_ENTRIES * sizeof *keys);
			if (!keys) {
				err = WIRE_E_NOMEM;
				break;
			}
		}
		keys[n++] = key;
	}
	if (err == 0)
		err = r.err;
	if (err == 0 && n > 1) {
		qsort(keys, n, sizeof *keys, str_cmp);
		for (uint32_t i = 1; i < n; i++)
			if (str_cmp(&keys[i - 1], &keys[i]) == 0) {
				err = WIRE_E_DUP;
				break;
			}
	}
	free(keys);
	if (err != 0)
		return err;
	out->ptr = len ? p : NULL;
	out->len = len;
	out->count = n;
	return 0;
}

int wire_get_options(struct wire_rd *r, struct wire_opts *out)
{
	memset(out, 0, sizeof *out);
	if (r->err)
		return r->err;
	size_t n = r->len - r->pos;
	int err = wire_opts_parse(n ? r->p + r->pos : NULL, n, out);
	if (err != 0) {
		wire_rd_fail(r, err);
		return err;
	}
	r->pos = r->len;
	return 0;
}

int wire_get_options_prefixed(struct wire_rd *r, struct wire_opts *out)
{
	memset(out, 0, sizeof *out);
	uint32_t n = wire_get_u32(r);
	const uint8_t *p = wire_get_bytes(r, n);
	if (r->err)
		return r->err;
	int err = wire_opts_parse(p, n, out);
	if (err != 0)
		wire_rd_fail(r, err);
	return err;
}

bool wire_opts_next(const struct wire_opts *o, size_t *pos, struct wire_opt *out)
{
	if (*pos >= o->len)
		return false;
	/* The block was validated, but the reader keeps this safe even on a block that was not. */
	struct wire_rd r;
	uint8_t key_kind;
	wire_rd_init(&r, o->ptr, o->len);
	r.pos = *pos;
	memset(out, 0, sizeof *out);
	tlv_field(&r, &key_kind, &out->key);
	tlv_field(&r, &out->kind, &out->value);
	if (r.err) {
		memset(out, 0, sizeof *out);
		*pos = o->len;
		return false;
	}
	assert(r.pos > *pos && r.pos <= o->len); /* every option moves forward: a walk ends */
	*pos = r.pos;
	return true;
}

int wire_opts_find(const struct wire_opts *o, const char *key, struct wire_opt *out)
{
	size_t pos = 0;
	while (wire_opts_next(o, &pos, out))
		if (wire_str_eq(out->key, key))
			return 0;
	memset(out, 0, sizeof *out);
	return -ENOENT;
}

void wire_put_option(struct wire_buf *b, const void *key, size_t key_len, uint8_t kind, const void *value,
		     size_t value_len)
{
	if (key_len == 0 || key_len > WIRE_NAME_MAX || value_len == 0 || value_len > WIRE_NAME_MAX || kind == 0) {
		buf_fail(b, WIRE_E_VALUE);
		return;
	}
	size_t at = b->len;
	wire_put_u8(b, WIRE_KIND_STRING);
	wire_put_u32(b, (uint32_t)key_len);
	wire_put_bytes(b, key, key_len);
	wire_put_u8(b, kind);
	wire_put_u32(b, (uint32_t)value_len);
	wire_put_bytes(b, value, value_len);
	assert(b->err || b->len == at + 10 + key_len + value_len); /* two TLV fields, as tlv_field reads them */
}

void wire_put_options_prefixed(struct wire_buf *b, const struct wire_opts *o)
{
	wire_put_u32(b, (uint32_t)o->len);
	wire_put_bytes(b, o->ptr, o->len);
}

/* ---- Permissions ---- */

/* Reads a u8 that must be 0 or 1. */
static bool get_bool(struct wire_rd *r)
{
	uint8_t v = wire_get_u8(r);
	if (v > 1)
		wire_rd_fail(r, WIRE_E_VALUE);
	return v == 1;
}

static void put_bool(struct wire_buf *b, bool v)
{
	wire_put_u8(b, v ? 1 : 0);
}

static int topic_cmp(const void *a, const void *b)
{
	const struct wire_perm_topic *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

static int stream_cmp(const void *a, const void *b)
{
	const struct wire_perm_stream *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

void wire_perms_free(struct wire_perms *p)
{
	for (uint32_t i = 0; i < p->streams_count; i++)
		free(p->streams[i].topics);
	free(p->streams);
	memset(p, 0, sizeof *p);
}

/* Grows an array of `size`-byte elements so that it holds at least n + 1 of them. */
static int grow_array(void **arr, uint32_t *cap, uint32_t n, size_t size)
{
	if (n < *cap)
		return 0;
	if (n == UINT32_MAX)
		return WIRE_E_LIMIT;
	uint32_t c = *cap ? (*cap > UINT32_MAX / 2 ? UINT32_MAX : *cap * 2) : 4;
	void *q = realloc(*arr, (size_t)c * size);
	if (!q)
		return WIRE_E_NOMEM;
	*arr = q;
	*cap = c;
	return 0;
}

static void read_topics(struct wire_rd *r, struct wire_perm_stream *s)
{
	uint32_t cap = 0;
	bool more = true;
	while (more && r->err == 0) {
		struct wire_perm_topic t;
		t.id = wire_get_u32(r);
		t.manage_topic = get_bool(r);
		t.read_topic = get_bool(r);
		t.poll_messages = get_bool(r);
		t.send_messages = get_bool(r);
		more = get_bool(r);
		if (r->err)
			break;
		int err = grow_array((void **)&s->topics, &cap, s->topics_count, sizeof t);
		if (err) {
			wire_rd_fail(r, err);
			break;
		}
		s->topics[s->topics_count++] = t;
	}
	if (r->err == 0 && s->topics_count > 1) {
		qsort(s->topics, s->topics_count, sizeof *s->topics, topic_cmp);
		for (uint32_t i = 1; i < s->topics_count; i++)
			if (s->topics[i - 1].id == s->topics[i].id)
				wire_rd_fail(r, WIRE_E_DUP);
	}
}

int wire_get_permissions(struct wire_rd *r, struct wire_perms *out)
{
	memset(out, 0, sizeof *out);
	out->manage_servers = get_bool(r);
	out->read_servers = get_bool(r);
	out->manage_users = get_bool(r);
	out->read_users = get_bool(r);
	out->manage_streams = get_bool(r);
	out->read_streams = get_bool(r);
	out->manage_topics = get_bool(r);
	out->read_topics = get_bool(r);
	out->poll_messages = get_bool(r);
	out->send_messages = get_bool(r);
	bool more = get_bool(r);

	uint32_t cap = 0;
	while (more && r->err == 0) {
		int err = grow_array((void **)&out->streams, &cap, out->streams_count, sizeof *out->streams);
		if (err) {
			wire_rd_fail(r, err);
			break;
		}
		/* The entry is counted before its topics are read, so that wire_perms_free finds them. */
		struct wire_perm_stream *s = &out->streams[out->streams_count++];
		memset(s, 0, sizeof *s);
		s->id = wire_get_u32(r);
		s->manage_stream = get_bool(r);
		s->read_stream = get_bool(r);
		s->manage_topics = get_bool(r);
		s->read_topics = get_bool(r);
		s->poll_messages = get_bool(r);
		s->send_messages = get_bool(r);
		if (get_bool(r))
			read_topics(r, s);
		more = get_bool(r);
	}
	if (r->err == 0 && out->streams_count > 1) {
		qsort(out->streams, out->streams_count, sizeof *out->streams, stream_cmp);
		for (uint32_t i = 1; i < out->streams_count; i++)
			if (out->streams[i - 1].id == out->streams[i].id)
				wire_rd_fail(r, WIRE_E_DUP);
	}
	if (r->err) {
		wire_perms_free(out);
		return r->err;
	}
	return 0;
}

int wire_perms_decode(const void *p, size_t len, struct wire_perms *out)
{
	struct wire_rd r;
	wire_rd_init(&r, p, len);
	if (wire_get_permissions(&r, out) != 0)
		return r.err;
	int err = wire_rd_done(&r);
	if (err != 0)
		wire_perms_free(out);
	return err;
}

void wire_put_permissions(struct wire_buf *b, const struct wire_perms *p)
{
	put_bool(b, p->manage_servers);
	put_bool(b, p->read_servers);
	put_bool(b, p->manage_users);
	put_bool(b, p->read_users);
	put_bool(b, p->manage_streams);
	put_bool(b, p->read_streams);
	put_bool(b, p->manage_topics);
	put_bool(b, p->read_topics);
	put_bool(b, p->poll_messages);
	put_bool(b, p->send_messages);
	put_bool(b, p->streams_count > 0);
	for (uint32_t i = 0; i < p->streams_count; i++) {
		const struct wire_perm_stream *s = &p->streams[i];
		wire_put_u32(b, s->id);
		put_bool(b, s->manage_stream);
		put_bool(b, s->read_stream);
		put_bool(b, s->manage_topics);
		put_bool(b, s->read_topics);
		put_bool(b, s->poll_messages);
		put_bool(b, s->send_messages);
		put_bool(b, s->topics_count > 0);
		for (uint32_t j = 0; j < s->topics_count; j++) {
			const struct wire_perm_topic *t = &s->topics[j];
			wire_put_u32(b, t->id);
			put_bool(b, t->manage_topic);
			put_bool(b, t->read_topic);
			put_bool(b, t->poll_messages);
			put_bool(b, t->send_messages);
			put_bool(b, j + 1 < s->topics_count);
		}
		put_bool(b, i + 1 < p->streams_count);
	}
}

/* ---- ClientVersionInfo ---- */

int wire_get_version_info(struct wire_rd *r, struct wire_version_info *out)
{
	memset(out, 0, sizeof *out);
	out->protocol_version = wire_get_u32(r);
	wire_get_str8(r, &out->sdk_name);
	wire_get_str8(r, &out->sdk_version);
	if (r->err)
		memset(out, 0, sizeof *out);
	return r->err;
}

void wire_put_version_info(struct wire_buf *b, const struct wire_version_info *v)
{
	wire_put_u32(b, v->protocol_version);
	wire_put_str8(b, v->sdk_name.ptr, v->sdk_name.len);
	wire_put_str8(b, v->sdk_version.ptr, v->sdk_version.len);
}
