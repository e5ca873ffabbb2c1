/*
 * record — the one byte format that is at once the Raft log entry, the Iggy wire batch and the stored
 * record of a partition segment.
 *
 * All integers are little-endian. XXH3 means XXH3_64bits() of libxxhash (seed 0).
 *
 * 1. Iggy batch (the payload of a MESSAGES record; Iggy protocol 0.11, reference §3.2-§3.6)
 *
 *    A batch is a 256-byte batch header followed by message_count frames.
 *
 *      off size field
 *        0    8 partition_id       stamped by the server
 *        8    8 base_offset        stamped: offset of the first message
 *       16    8 base_timestamp     stamped: server append time, µs since the Unix epoch, never decreasing
 *       24    8 origin_timestamp   producer: min origin timestamp of the messages
 *       32    8 batch_length       256 + the bytes of all frames
 *       40    8 batch_checksum     XXH3 of the 44 bytes partition_id ‖ base_offset ‖ base_timestamp ‖
 *                                  origin_timestamp ‖ batch_length ‖ message_count(u32), followed by the
 *                                  8-byte checksum of every frame in order
 *       48    4 message_count      ≥ 1
 *       52  204 reserved           must be zero
 *
 *    A frame is a 48-byte frame header, the payload, then the user headers:
 *
 *      off size field
 *        0    8 checksum           XXH3 of frame bytes 8 .. end of frame
 *        8   16 id                 u128, opaque
 *       24    4 offset_delta       offset = base_offset + offset_delta; a stored batch has 0,1,2,...
 *       28    4 timestamp_delta    origin timestamp - batch origin_timestamp
 *       32    4 user_headers_length
 *       36    4 payload_length
 *       40    8 reserved           must be zero
 *       48    . payload, then user headers
 *
 *    Every byte of a batch is covered: the frame checksums cover each frame from byte 8, the batch checksum
 *    covers the header fields and the frame checksums, and the reserved bytes must be zero.
 *
 * 2. Record envelope (64 bytes, in front of every stored record)
 *
 *      off size field
 *        0    4 magic              0x52474c47 (bytes "GLGR")
 *        4    1 version            1
 *        5    1 type               1 MESSAGES (Raft command: the payload is an Iggy batch),
 *                                  2 BARRIER (no payload), 3 CHANGE (Raft configuration, opaque payload);
 *                                  the numbers are libraft's entry types; 4 COMMAND (a state-machine
 *                                  command with an opaque payload: the metadata log's records, which
 *                                  are Raft commands of the metadata group)
 *        6    2 flags              0 (reserved: bit 0 will mark a payload encrypted at rest)
 *        8    4 length             payload bytes after the envelope (= batch_length for MESSAGES)
 *       12    4 message_count      the batch's message_count for MESSAGES, else 0
 *       16    8 index              Raft index (the first record of a log may have any index ≥ 1;
 *                                  each next one has index + 1)
 *       24    8 term               Raft term
 *       32    8 base_offset        the batch's base_offset for MESSAGES; for other types the offset the
 *                                  next message will get
 *       40    8 timestamp          the batch's base_timestamp for MESSAGES; for others the append time
 *       48    8 payload_check      MESSAGES: a copy of the batch_checksum; others: XXH3 of the payload
 *                                  (XXH3 of zero bytes for an empty payload)
 *       56    8 envelope_check     XXH3 of envelope bytes 0..56
 *
 *    A record is valid when its envelope_check matches, magic and version are known, and its payload
 *    verifies: for MESSAGES the whole batch verifies (record_batch_verify) and agrees with the envelope
 *    (length, message_count, base_offset, timestamp, payload_check); for others XXH3(payload) equals
 *    payload_check. Records have no padding; the next one starts right after the payload.
 */
#ifndef GALGO_RECORD_H
#define GALGO_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RECORD_ENVELOPE_SIZE 64
#define RECORD_MAGIC 0x52474c47u
#define RECORD_VERSION 1
#define RECORD_BATCH_HEADER_SIZE 256
#define RECORD_FRAME_HEADER_SIZE 48
#define RECORD_MAX_PAYLOAD (64u * 1024 * 1024)

enum record_type {
	RECORD_MESSAGES = 1,
	RECORD_BARRIER = 2,
	RECORD_CHANGE = 3,
	RECORD_COMMAND = 4,
};

/* Decoded envelope. */
struct record_env {
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t length;
	uint32_t message_count;
	uint64_t index;
	uint64_t term;
	uint64_t base_offset;
	uint64_t timestamp;
	uint64_t payload_check;
};

/* Decoded batch header fields (the reserved bytes are not kept; a decoded batch has them zero). */
struct record_batch_hdr {
	uint64_t partition_id;
	uint64_t base_offset;
	uint64_t base_timestamp;
	uint64_t origin_timestamp;
	uint64_t batch_length;
	uint64_t batch_checksum;
	uint32_t message_count;
};

/* Decoded frame header. */
struct record_frame_hdr {
	uint64_t checksum;
	uint8_t id[16];
	uint32_t offset_delta;
	uint32_t timestamp_delta;
	uint32_t user_headers_length;
	uint32_t payload_length;
	uint64_t reserved;
};

/* Errors returned by the verify functions (negative). Each names the first rule the bytes break. */
enum record_err {
	RECORD_OK = 0,
	RECORD_E_SHORT = -1,          /* fewer bytes than the layout needs */
	RECORD_E_MAGIC = -2,          /* envelope magic or version unknown */
	RECORD_E_ENV_CHECK = -3,      /* envelope_check mismatch */
	RECORD_E_TYPE = -4,           /* unknown record type */
	RECORD_E_LENGTH = -5,         /* a length field disagrees with the bytes or another field */
	RECORD_E_RESERVED = -6,       /* a reserved field is not zero */
	RECORD_E_FRAME_CHECK = -7,    /* a frame checksum mismatch */
	RECORD_E_BATCH_CHECK = -8,    /* the batch checksum mismatch */
	RECORD_E_COUNT = -9,          /* message_count is 0 or disagrees with the frames */
	RECORD_E_PAYLOAD_CHECK = -10, /* payload_check mismatch (non-MESSAGES) or disagreement with batch */
	RECORD_E_FIELDS = -11,        /* envelope and batch disagree (offset, timestamp) */
};

/* A short English description of a record_err, for logs and error replies. */
const char *record_strerror(int err);

/* Little-endian loads and stores used throughout the code base. */
static inline uint32_t record_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t record_le64(const uint8_t *p)
{
	return (uint64_t)record_le32(p) | (uint64_t)record_le32(p + 4) << 32;
}
static inline void record_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}
static inline void record_put64(uint8_t *p, uint64_t v)
{
	record_put32(p, (uint32_t)v);
	record_put32(p + 4, (uint32_t)(v >> 32));
}

/* Envelope: encode (computes envelope_check) and decode (checks magic, version, type, envelope_check). */
void record_env_encode(const struct record_env *e, uint8_t out[RECORD_ENVELOPE_SIZE]);
int record_env_decode(const uint8_t in[RECORD_ENVELOPE_SIZE], struct record_env *e);

/*
 * Fills an envelope for a payload: computes payload_check (the batch checksum for MESSAGES, XXH3 of the
 * payload otherwise) and, for MESSAGES, copies length, message_count, base_offset and timestamp from the
 * batch header. The caller sets type, index and term (and, for non-MESSAGES, base_offset and timestamp).
 */
void record_env_fill(struct record_env *e, const uint8_t *payload, uint32_t length);

/* Verifies a payload against its decoded envelope, as the format comment says. */
int record_payload_verify(const struct record_env *e, const uint8_t *payload, size_t length);

/* Batch header decode (no checks) and the batch checksum computed from a batch's bytes. */
void record_batch_hdr_decode(const uint8_t *batch, struct record_batch_hdr *h);
void record_frame_hdr_decode(const uint8_t *frame, struct record_frame_hdr *h);

/*
 * Verifies a whole batch of exactly `length` bytes: layout (batch_length == length, frames fit exactly,
 * message_count ≥ 1 and equal to the frames found), reserved bytes zero, every frame checksum, the batch
 * checksum. With `require_dense` the offset_deltas must be 0,1,2,... (stored batches); producers' batches
 * are checked with it too, since the server assigns offsets from the deltas.
 */
int record_batch_verify(const uint8_t *batch, size_t length, bool require_dense);

/* Computes the batch checksum of a batch whose frames are already laid out (does not verify them). */
uint64_t record_batch_checksum(const uint8_t *batch);

/*
 * Stamps a verified batch as the server does at commit: writes partition_id, base_offset and
 * base_timestamp and recomputes batch_checksum.
 */
void record_batch_stamp(uint8_t *batch, uint64_t partition_id, uint64_t base_offset, uint64_t base_timestamp);

/*
 * Builds the header of a slice of a stored batch: the frames [first, first + count) of `batch`. Writes a
 * 256-byte header into `out` with message_count = count, batch_length = 256 + the sliced frames' bytes and
 * the batch_checksum recomputed over the sliced frames, every other field kept. Sets *frames_off and
 * *frames_len to the byte range of those frames within `batch`, so header + that range is the slice.
 * Returns 0 or a record_err if the batch is malformed or the range is out of bounds.
 */
int record_batch_slice(const uint8_t *batch, size_t length, uint32_t first, uint32_t count,
		       uint8_t out[RECORD_BATCH_HEADER_SIZE], size_t *frames_off, size_t *frames_len);

/*
 * Compacts a verified batch in place, keeping only the frames whose `keep[i]` is true: the kept frames
 * move to the front with offset_deltas renumbered 0..k-1 and their checksums recomputed; message_count,
 * batch_length and the batch checksum are rewritten (origin_timestamp and timestamp deltas are kept).
 * Returns the new length, or 0 if no frame is kept (the batch is then unchanged).
 */
size_t record_batch_filter(uint8_t *batch, size_t length, const bool *keep);

/*
 * Test and tool helper: builds a batch in `out` (capacity `cap`) from n payloads, as a producer does
 * (ids 1..n unless ids is given, origin timestamps `origin` for all, no user headers unless given,
 * deltas 0..n-1, checksums computed, partition/offset/timestamp zero). Returns the batch length, or 0
 * if it does not fit.
 */
size_t record_batch_build(uint8_t *out, size_t cap, uint32_t n, const void *const *payloads,
			  const uint32_t *payload_lens, const void *const *user_headers,
			  const uint32_t *user_header_lens, uint64_t origin);

#endif /* GALGO_RECORD_H */
