/*
 * wire — bounds-checked reading and growable writing of request and response payloads, and the codecs
 * of the payload primitives of Iggy's client protocol (reference §2.3).
 *
 * All integers are little-endian. Byte formats of the primitives:
 *
 *   WireName        [len u8, 1..255][UTF-8 bytes]
 *   str8 / str32    [len u8 or u32][bytes]: a length-prefixed byte string without further rules (sdk
 *                   name and version, password, token, login context); the caller applies its own.
 *   Identifier      [kind u8][len u8][value]: kind 1 numeric (len must be 4, value u32), kind 2 string
 *                   (len 1..255, UTF-8). Ids are 0-based: numeric 0 is valid.
 *   Consumer        [kind u8][Identifier]: kind 1 single consumer, 2 consumer group.
 *   Optional        [flag u8][partition_id u32]: flag 1 present, 0 absent (the u32 is still there,
 *   partition       normally 0); any other flag is refused.
 *   PollingStrategy [kind u8][value u64], 9 bytes: 1 Offset, 2 Timestamp (µs), 3 First, 4 Last, 5 Next
 *                   (the value is ignored for 3..5).
 *   Partitioning    [kind u8][len u8][value]: 1 Balanced (len 0), 2 PartitionId (len 4, u32),
 *                   3 MessagesKey (len 1..255, raw key bytes).
 *   Options TLV     a sequence of [key_kind u8][key_len u32][key][value_kind u8][value_len u32][value]
 *                   (the encoding of message user headers). Every kind is non-zero and every length is
 *                   1..255; keys have kind 2 (String) and are valid UTF-8 and unique; at most 1024
 *                   entries and 100,000 bytes. Value kinds other than 1..15 are kept as they are
 *                   (forward compatible, as the reference's validate_options). In a request the block
 *                   runs to the end of the payload; in a response it is prefixed by [len u32].
 *   Permissions     ten global u8 booleans (manage_servers, read_servers, manage_users, read_users,
 *                   manage_streams, read_streams, manage_topics, read_topics, poll_messages,
 *                   send_messages), then [has_streams u8]. If 1, stream entries follow, each
 *                   [stream_id u32][manage_stream, read_stream, manage_topics, read_topics,
 *                   poll_messages, send_messages: 6 × u8][has_topics u8], then if has_topics is 1 topic
 *                   entries, each [topic_id u32][manage_topic, read_topic, poll_messages,
 *                   send_messages: 4 × u8][has_next_topic u8], and after the topics (or the 0
 *                   has_topics) [has_next_stream u8]. Every boolean and flag is 0 or 1. Stream ids are
 *                   unique, topic ids unique within their stream; the decoder returns them sorted by id.
 *   ClientVersion   [protocol_version u32][sdk_name str8][sdk_version str8] (the start of a Register
 *   Info            body).
 *
 * Reading: a `struct wire_rd` walks a byte range. Every getter checks the bounds first; when the bytes
 * are not there it records the error (WIRE_E_SHORT), returns zero and reads nothing, and every later
 * getter does the same. The codecs (wire_get_*) also record a broken rule in the reader. The caller
 * therefore reads a whole payload and checks once at the end with wire_rd_done (which also requires
 * that every byte was consumed). Decoded names, ids and keys point into the input: they stay valid as
 * long as the input bytes do.
 *
 * Writing: a `struct wire_buf` grows with malloc. The first failure (out of memory, or a value a codec
 * cannot encode) is recorded and every later put does nothing; the caller checks wire_buf_error once.
 */
#ifndef GALGO_WIRE_H
#define GALGO_WIRE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Errors (negative errno values), recorded by the reader or returned by the codecs. */
#define WIRE_E_SHORT (-EBADMSG)  /* the input ends before the value does */
#define WIRE_E_VALUE (-EINVAL)   /* a kind, length or flag out of range */
#define WIRE_E_UTF8 (-EILSEQ)    /* a name or key is not valid UTF-8 */
#define WIRE_E_DUP (-EEXIST)     /* a duplicate option key, stream id or topic id */
#define WIRE_E_LIMIT (-E2BIG)    /* too many entries or bytes */
#define WIRE_E_TRAILING (-EPROTO) /* bytes left over where the value must end the input */
#define WIRE_E_NOMEM (-ENOMEM)   /* an allocation failed */

#define WIRE_NAME_MAX 255
#define WIRE_OPTIONS_MAX_ENTRIES 1024
#define WIRE_OPTIONS_MAX_BYTES 100000
#define WIRE_POLLING_SIZE 9

/* ---- Reader ---- */

struct wire_rd {
	const uint8_t *p;
	size_t len;
	size_t pos;
	int err; /* 0, or the first error */
};

/* Starts reading `len` bytes at `p`. */
void wire_rd_init(struct wire_rd *r, const void *p, size_t len);

/* Fixed-width getters: the value, or 0 after recording WIRE_E_SHORT (or after an earlier error). */
uint8_t wire_get_u8(struct wire_rd *r);
uint16_t wire_get_u16(struct wire_rd *r);
uint32_t wire_get_u32(struct wire_rd *r);
uint64_t wire_get_u64(struct wire_rd *r);

/*
 * The next n bytes (a pointer into the input), or NULL after recording WIRE_E_SHORT. For n = 0 the
 * result may be NULL without an error: check the reader's error, not the pointer.
 */
const uint8_t *wire_get_bytes(struct wire_rd *r, size_t n);

/* Bytes not yet consumed (0 after an error). */
size_t wire_rd_left(const struct wire_rd *r);

/* Records an error (the first one sticks); later getters read nothing. */
void wire_rd_fail(struct wire_rd *r, int err);

/* The recorded error, or 0. */
int wire_rd_error(const struct wire_rd *r);

/* 0 when no error was recorded and every byte was consumed; else the error or WIRE_E_TRAILING. */
int wire_rd_done(const struct wire_rd *r);

/* ---- Writer ---- */

struct wire_buf {
	uint8_t *p;
	size_t len;
	size_t cap;
	int err; /* 0, or the first error */
};

void wire_buf_init(struct wire_buf *b);
void wire_buf_free(struct wire_buf *b);

/* Empties the buffer and clears its error, keeping the memory. */
void wire_buf_reset(struct wire_buf *b);

/* Makes room for n more bytes without writing them. Returns 0 or the (recorded) error. */
int wire_buf_reserve(struct wire_buf *b, size_t n);

/* The first recorded error, or 0. */
int wire_buf_error(const struct wire_buf *b);

/*
 * Hands the bytes to the caller (free() them) and leaves the buffer empty. Returns NULL, and sets *len
 * to 0, when an error was recorded (the bytes are freed) or nothing was written.
 */
uint8_t *wire_buf_take(struct wire_buf *b, size_t *len);

void wire_put_u8(struct wire_buf *b, uint8_t v);
void wire_put_u16(struct wire_buf *b, uint16_t v);
void wire_put_u32(struct wire_buf *b, uint32_t v);
void wire_put_u64(struct wire_buf *b, uint64_t v);
void wire_put_bytes(struct wire_buf *b, const void *p, size_t n);

/*
 * Appends n zero bytes to be filled in later (a count or a length known only at the end) and returns
 * their offset. After an error the offset is meaningless and the patches below do nothing.
 */
size_t wire_put_reserve(struct wire_buf *b, size_t n);
void wire_patch_u8(struct wire_buf *b, size_t off, uint8_t v);
void wire_patch_u32(struct wire_buf *b, size_t off, uint32_t v);
void wire_patch_u64(struct wire_buf *b, size_t off, uint64_t v);

/* ---- Primitives ---- */

/* A byte string pointing into the input (or, to encode, into the caller's memory). */
struct wire_str {
	const uint8_t *ptr;
	size_t len;
};

/* Whether n bytes are valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). */
bool wire_utf8_valid(const uint8_t *p, size_t n);

/* Whether a string equals a NUL-terminated C string. */
bool wire_str_eq(struct wire_str s, const char *c);

int wire_get_name(struct wire_rd *r, struct wire_str *out);
void wire_put_name(struct wire_buf *b, const void *s, size_t len); /* records WIRE_E_VALUE if len ∉ 1..255 */

int wire_get_str8(struct wire_rd *r, struct wire_str *out);
void wire_put_str8(struct wire_buf *b, const void *s, size_t len); /* records WIRE_E_VALUE if len > 255 */
int wire_get_str32(struct wire_rd *r, struct wire_str *out);
void wire_put_str32(struct wire_buf *b, const void *s, size_t len);

enum wire_id_kind {
	WIRE_ID_NUMERIC = 1,
	WIRE_ID_STRING = 2,
};

struct wire_id {
	uint8_t kind;         /* enum wire_id_kind */
	uint32_t num;         /* WIRE_ID_NUMERIC */
	struct wire_str name; /* WIRE_ID_STRING */
};

static inline struct wire_id wire_id_num(uint32_t n)
{
	return (struct wire_id){.kind = WIRE_ID_NUMERIC, .num = n};
}

int wire_get_id(struct wire_rd *r, struct wire_id *out);
void wire_put_id(struct wire_buf *b, const struct wire_id *id);

enum wire_consumer_kind {
	WIRE_CONSUMER_SINGLE = 1,
	WIRE_CONSUMER_GROUP = 2,
};

struct wire_consumer {
	uint8_t kind; /* enum wire_consumer_kind */
	struct wire_id id;
};

int wire_get_consumer(struct wire_rd *r, struct wire_consumer *out);
void wire_put_consumer(struct wire_buf *b, const struct wire_consumer *c);

struct wire_opt_partition {
	bool present;
	uint32_t id; /* as sent, also when absent */
};

int wire_get_opt_partition(struct wire_rd *r, struct wire_opt_partition *out);
void wire_put_opt_partition(struct wire_buf *b, const struct wire_opt_partition *p);

enum wire_polling_kind {
	WIRE_POLL_OFFSET = 1,
	WIRE_POLL_TIMESTAMP = 2,
	WIRE_POLL_FIRST = 3,
	WIRE_POLL_LAST = 4,
	WIRE_POLL_NEXT = 5,
};

struct wire_polling {
	uint8_t kind; /* enum wire_polling_kind */
	uint64_t value;
};

int wire_get_polling(struct wire_rd *r, struct wire_polling *out);
void wire_put_polling(struct wire_buf *b, const struct wire_polling *p);

enum wire_partitioning_kind {
	WIRE_PART_BALANCED = 1,
	WIRE_PART_PARTITION_ID = 2,
	WIRE_PART_MESSAGES_KEY = 3,
};

struct wire_partitioning {
	uint8_t kind;         /* enum wire_partitioning_kind */
	uint32_t partition_id; /* WIRE_PART_PARTITION_ID */
	struct wire_str key;  /* WIRE_PART_MESSAGES_KEY */
};

int wire_get_partitioning(struct wire_rd *r, struct wire_partitioning *out);
void wire_put_partitioning(struct wire_buf *b, const struct wire_partitioning *p);

/* Value kinds of options and user headers (reference §2.3). */
enum wire_value_kind {
	WIRE_KIND_RAW = 1,
	WIRE_KIND_STRING = 2,
	WIRE_KIND_BOOL = 3,
	WIRE_KIND_INT8 = 4,
	WIRE_KIND_INT16 = 5,
	WIRE_KIND_INT32 = 6,
	WIRE_KIND_INT64 = 7,
	WIRE_KIND_INT128 = 8,
	WIRE_KIND_UINT8 = 9,
	WIRE_KIND_UINT16 = 10,
	WIRE_KIND_UINT32 = 11,
	WIRE_KIND_UINT64 = 12,
	WIRE_KIND_UINT128 = 13,
	WIRE_KIND_FLOAT32 = 14,
	WIRE_KIND_FLOAT64 = 15,
};

/* A validated options block (pointing into the input). */
struct wire_opts {
	const uint8_t *ptr;
	size_t len;
	uint32_t count;
};

/* One option. */
struct wire_opt {
	struct wire_str key;
	uint8_t kind; /* the value's kind */
	struct wire_str value;
};

/* Validates `len` bytes as an options block (all of them). Returns 0 or an error. */
int wire_opts_parse(const void *p, size_t len, struct wire_opts *out);

/* Reads an options block that runs to the end of the reader's input (requests). */
int wire_get_options(struct wire_rd *r, struct wire_opts *out);

/* Reads a [len u32]-prefixed options block (responses). */
int wire_get_options_prefixed(struct wire_rd *r, struct wire_opts *out);

/*
 * Iterates a validated block: start with *pos = 0; each call fills *out and returns true, or returns
 * false at the end.
 */
bool wire_opts_next(const struct wire_opts *o, size_t *pos, struct wire_opt *out);

/* Finds an option by key. Returns 0, or -ENOENT. */
int wire_opts_find(const struct wire_opts *o, const char *key, struct wire_opt *out);

/* Appends one option (key kind String). Records WIRE_E_VALUE for a length outside 1..255 or kind 0. */
void wire_put_option(struct wire_buf *b, const void *key, size_t key_len, uint8_t kind, const void *value,
		     size_t value_len);

/* Appends a block with its [len u32] prefix, as responses carry it. */
void wire_put_options_prefixed(struct wire_buf *b, const struct wire_opts *o);

/* Permissions (reference §2.3). */
struct wire_perm_topic {
	uint32_t id;
	bool manage_topic;
	bool read_topic;
	bool poll_messages;
	bool send_messages;
};

struct wire_perm_stream {
	uint32_t id;
	bool manage_stream;
	bool read_stream;
	bool manage_topics;
	bool read_topics;
	bool poll_messages;
	bool send_messages;
	uint32_t topics_count;
	struct wire_perm_topic *topics;
};

struct wire_perms {
	bool manage_servers;
	bool read_servers;
	bool manage_users;
	bool read_users;
	bool manage_streams;
	bool read_streams;
	bool manage_topics;
	bool read_topics;
	bool poll_messages;
	bool send_messages;
	uint32_t streams_count;
	struct wire_perm_stream *streams;
};

/*
 * Reads permissions, allocating the stream and topic arrays (release them with wire_perms_free; on an
 * error nothing is left allocated and *out is zeroed). Streams and topics come out sorted by id.
 */
int wire_get_permissions(struct wire_rd *r, struct wire_perms *out);

/* Decodes permissions that must fill exactly `len` bytes (the [perm_len u32] of CreateUser). */
int wire_perms_decode(const void *p, size_t len, struct wire_perms *out);

void wire_perms_free(struct wire_perms *p);

/* Appends permissions in the order of the arrays (keep them sorted by id, as decoded ones are). */
void wire_put_permissions(struct wire_buf *b, const struct wire_perms *p);

/* ClientVersionInfo, the start of a Register body. */
struct wire_version_info {
	uint32_t protocol_version;
	struct wire_str sdk_name;
	struct wire_str sdk_version;
};

int wire_get_version_info(struct wire_rd *r, struct wire_version_info *out);
void wire_put_version_info(struct wire_buf *b, const struct wire_version_info *v);

#endif /* GALGO_WIRE_H */
