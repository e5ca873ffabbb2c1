/*
 * record — the stored envelope: the 64 bytes in front of every record of a partition log, which make a
 * payload at once a Raft log entry and a segment record. A MESSAGES record's payload is an Iggy message
 * batch exactly as it travels (proto/batch.h), so a poll serves stored bytes with the envelope skipped.
 *
 * All integers are little-endian. XXH3 means XXH3_64bits() of libxxhash (seed 0).
 *
 * Envelope (64 bytes, in front of every stored record)
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
 *    verifies: for MESSAGES the whole batch verifies (batch_verify, dense offset deltas) and agrees with the envelope
 *    (length, message_count, base_offset, timestamp, payload_check); for others XXH3(payload) equals
 *    payload_check. Records have no padding; the next one starts right after the payload.
 */
#ifndef GALGO_RECORD_H
#define GALGO_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/batch.h"

#define RECORD_ENVELOPE_SIZE 64
#define RECORD_MAGIC 0x52474c47u
#define RECORD_VERSION 1
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

/*
 * Errors returned by the verify functions (negative). Each names the first rule the bytes break. A
 * record's payload verifies as a batch, so the batch's errors (proto/batch.h) are record errors too.
 */
enum record_err {
	RECORD_OK = BATCH_OK,
	RECORD_E_SHORT = BATCH_E_SHORT,             /* fewer bytes than the layout needs */
	RECORD_E_MAGIC = -2,                        /* envelope magic or version unknown */
	RECORD_E_ENV_CHECK = -3,                    /* envelope_check mismatch */
	RECORD_E_TYPE = -4,                         /* unknown record type */
	RECORD_E_LENGTH = BATCH_E_LENGTH,           /* a length field disagrees with the bytes or another field */
	RECORD_E_RESERVED = BATCH_E_RESERVED,       /* a reserved field is not zero */
	RECORD_E_FRAME_CHECK = BATCH_E_FRAME_CHECK, /* a frame checksum mismatch */
	RECORD_E_BATCH_CHECK = BATCH_E_BATCH_CHECK, /* the batch checksum mismatch */
	RECORD_E_COUNT = BATCH_E_COUNT,             /* message_count is 0 or disagrees with the frames */
	RECORD_E_PAYLOAD_CHECK = -10,               /* payload_check mismatch (non-MESSAGES) or disagreement with batch */
	RECORD_E_FIELDS = BATCH_E_FIELDS,           /* envelope and batch disagree (offset, timestamp), or deltas */
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

#endif /* GALGO_RECORD_H */
