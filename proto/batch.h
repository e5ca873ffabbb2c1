/*
 * batch — Iggy's message batch: the one byte format of messages on the wire and on disk.
 *
 * All integers are little-endian. XXH3 means XXH3_64bits() of libxxhash (seed 0).
 *
 * Iggy protocol 0.11, reference §3.2-§3.6: the messages of a SendMessages request and of a poll reply (each
 * after its own prefix), and, unchanged, the payload of every stored message record.
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
 *    A message's timestamp is its batch's base_timestamp; its origin timestamp is origin_timestamp +
 *    timestamp_delta.
 */
#ifndef GALGO_PROTO_BATCH_H
#define GALGO_PROTO_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BATCH_HEADER_SIZE 256
#define BATCH_FRAME_HEADER_SIZE 48

/* Decoded batch header fields (the reserved bytes are not kept; a decoded batch has them zero). */
struct batch_hdr {
	uint64_t partition_id;
	uint64_t base_offset;
	uint64_t base_timestamp;
	uint64_t origin_timestamp;
	uint64_t batch_length;
	uint64_t batch_checksum;
	uint32_t message_count;
};

/* Decoded frame header. */
struct batch_frame_hdr {
	uint64_t checksum;
	uint8_t id[16];
	uint32_t offset_delta;
	uint32_t timestamp_delta;
	uint32_t user_headers_length;
	uint32_t payload_length;
	uint64_t reserved;
};

/*
 * Errors of the verify functions (negative). Each names the first rule the bytes break. The numbers are
 * shared with the stored envelope's errors, which extend this list.
 */
enum batch_err {
	BATCH_OK = 0,
	BATCH_E_SHORT = -1,       /* fewer bytes than the layout needs */
	BATCH_E_LENGTH = -5,      /* a length field disagrees with the bytes or another field */
	BATCH_E_RESERVED = -6,    /* a reserved field is not zero */
	BATCH_E_FRAME_CHECK = -7, /* a frame checksum mismatch */
	BATCH_E_BATCH_CHECK = -8, /* the batch checksum mismatch */
	BATCH_E_COUNT = -9,       /* message_count is 0 or disagrees with the frames */
	BATCH_E_FIELDS = -11,     /* offset deltas not dense where they must be */
};

/* A short English description of a batch_err (NULL for a number that is none). */
const char *batch_strerror(int err);

/* Header decodes (no checks). */
void batch_hdr_decode(const uint8_t *batch, struct batch_hdr *h);
void batch_frame_hdr_decode(const uint8_t *frame, struct batch_frame_hdr *h);

/*
 * Verifies a whole batch of exactly `length` bytes: layout (batch_length == length, frames fit exactly,
 * message_count ≥ 1 and equal to the frames found), reserved bytes zero, every frame checksum, the batch
 * checksum. With `require_dense` the offset_deltas must be 0,1,2,... (stored batches); producers' batches
 * are checked with it too, since the server assigns offsets from the deltas.
 */
int batch_verify(const uint8_t *batch, size_t length, bool require_dense);

/* Computes the batch checksum of a batch whose frames are already laid out (does not verify them). */
uint64_t batch_checksum(const uint8_t *batch);

/*
 * Seals a batch as a producer does once its header (batch_length, message_count, origin_timestamp) and its
 * frames are laid out: computes every frame checksum, then the batch checksum. Trusts the layout, but
 * never walks past batch_length.
 */
void batch_seal(uint8_t *batch);

/*
 * Stamps a verified batch as the server does at commit: writes partition_id, base_offset and
 * base_timestamp and recomputes batch_checksum.
 */
void batch_stamp(uint8_t *batch, uint64_t partition_id, uint64_t base_offset, uint64_t base_timestamp);

/*
 * Builds the header of a slice of a batch: the frames [first, first + count) of `batch`. Writes a
 * 256-byte header into `out` with message_count = count, batch_length = 256 + the sliced frames' bytes and
 * the batch_checksum recomputed over the sliced frames, every other field kept. Sets *frames_off and
 * *frames_len to the byte range of those frames within `batch`, so header + that range is the slice.
 * Returns 0 or a batch_err if the batch is malformed or the range is out of bounds.
 */
int batch_slice(const uint8_t *batch, size_t length, uint32_t first, uint32_t count,
		uint8_t out[BATCH_HEADER_SIZE], size_t *frames_off, size_t *frames_len);

/*
 * Compacts a verified batch in place, keeping only the frames whose `keep[i]` is true: the kept frames
 * move to the front with offset_deltas renumbered 0..k-1 and their checksums recomputed; message_count,
 * batch_length and the batch checksum are rewritten (origin_timestamp and timestamp deltas are kept).
 * Returns the new length, or 0 if no frame is kept (the batch is then unchanged).
 */
size_t batch_filter(uint8_t *batch, size_t length, const bool *keep);

/*
 * Builds a batch in `out` (capacity `cap`) from n payloads, as a producer does (ids 1..n, origin
 * timestamps `origin` for all, no user headers unless given, deltas 0..n-1, checksums computed,
 * partition/offset/timestamp zero). Returns the batch length, or 0 if it does not fit.
 */
size_t batch_build(uint8_t *out, size_t cap, uint32_t n, const void *const *payloads, const uint32_t *payload_lens,
		   const void *const *user_headers, const uint32_t *user_header_lens, uint64_t origin);

/* One message of a batch, as batch_iter_next gives it: its fields resolved against the batch header. */
struct batch_msg {
	uint64_t offset;           /* base_offset + offset_delta */
	uint64_t timestamp;        /* the batch's base_timestamp */
	uint64_t origin_timestamp; /* the batch's origin_timestamp + timestamp_delta */
	uint64_t checksum;
	uint8_t id[16];
	uint64_t reserved;
	const uint8_t *frame; /* the frame header; the payload follows it */
	const uint8_t *payload;
	uint32_t payload_len;
	const uint8_t *headers; /* NULL when the message has none */
	uint32_t headers_len;
};

/*
 * Walks the messages of a run of batches laid end to end (a poll reply after its prefix), checking the
 * layout as it goes (each header's batch_length within the bytes, reserved header bytes zero,
 * message_count ≥ 1 frames filling the batch exactly, frame reserved field zero) but no checksum: a
 * reader verifies with batch_verify when it wants to. Iggy's SDK decodes polls with these same checks.
 */
struct batch_iter {
	const uint8_t *p;
	size_t len;
	size_t batch, batch_end, frame; /* byte positions in p */
	uint32_t batch_left;            /* frames of the current batch not yet read */
	uint64_t seen;                  /* messages read so far */
	int err;
};

void batch_iter_init(struct batch_iter *it, const uint8_t *p, size_t len);

/* 1 and *m filled for the next message, 0 at the clean end, or BATCH_E_LENGTH/BATCH_E_RESERVED/BATCH_E_COUNT
 * (then every later call returns it too). */
int batch_iter_next(struct batch_iter *it, struct batch_msg *m);

#endif /* GALGO_PROTO_BATCH_H */
