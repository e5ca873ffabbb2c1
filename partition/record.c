/*
 * record — encode, decode and verify the record envelope and the Iggy message batch (see record.h for the
 * byte format). The verify and slice functions decode untrusted network and disk bytes: every length is
 * checked against the bytes actually present before anything is read, in 64-bit arithmetic so that no
 * sum of u32 fields can wrap.
 */
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: the batch checksum is hashed incrementally */
#include "partition/record.h"

#include <assert.h>
#include <string.h>
#include <xxhash.h>

/* Envelope field offsets. */
#define ENV_MAGIC 0
#define ENV_VERSION 4
#define ENV_TYPE 5
#define ENV_FLAGS 6
#define ENV_LENGTH 8
#define ENV_COUNT 12
#define ENV_INDEX 16
#define ENV_TERM 24
#define ENV_BASE_OFFSET 32
#define ENV_TIMESTAMP 40
#define ENV_PAYLOAD_CHECK 48
#define ENV_CHECK 56

/* Batch header field offsets. */
#define BH_PARTITION 0
#define BH_BASE_OFFSET 8
#define BH_BASE_TS 16
#define BH_ORIGIN_TS 24
#define BH_LENGTH 32
#define BH_CHECKSUM 40
#define BH_COUNT 48
#define BH_RESERVED 52
#define BH_HASHED 44 /* partition_id .. batch_length (40 bytes), then message_count (4) */

/* Frame header field offsets. */
#define FH_CHECKSUM 0
#define FH_ID 8
#define FH_OFFSET_DELTA 24
#define FH_TS_DELTA 28
#define FH_HEADERS_LEN 32
#define FH_PAYLOAD_LEN 36
#define FH_RESERVED 40

static const uint8_t empty_payload[1];

const char *record_strerror(int err)
{
	switch (err) {
	case RECORD_OK:
		return "ok";
	case RECORD_E_SHORT:
		return "record too short for its layout";
	case RECORD_E_MAGIC:
		return "unknown record magic or version";
	case RECORD_E_ENV_CHECK:
		return "record envelope checksum mismatch";
	case RECORD_E_TYPE:
		return "unknown record type";
	case RECORD_E_LENGTH:
		return "record length field disagrees with the bytes";
	case RECORD_E_RESERVED:
		return "reserved field is not zero";
	case RECORD_E_FRAME_CHECK:
		return "message checksum mismatch";
	case RECORD_E_BATCH_CHECK:
		return "batch checksum mismatch";
	case RECORD_E_COUNT:
		return "message count is zero or disagrees with the messages";
	case RECORD_E_PAYLOAD_CHECK:
		return "record payload checksum mismatch";
	case RECORD_E_FIELDS:
		return "record fields disagree (offset, timestamp or offset deltas)";
	default:
		return "unknown record error";
	}
}

/* ---- envelope ---- */

static bool type_known(uint8_t type)
{
	return type == RECORD_MESSAGES || type == RECORD_BARRIER || type == RECORD_CHANGE || type == RECORD_COMMAND;
}

void record_env_encode(const struct record_env *e, uint8_t out[RECORD_ENVELOPE_SIZE])
{
	record_put32(out + ENV_MAGIC, RECORD_MAGIC);
	out[ENV_VERSION] = RECORD_VERSION; /* this code writes only the current version */
	out[ENV_TYPE] = e->type;
	out[ENV_FLAGS] = (uint8_t)e->flags;
	out[ENV_FLAGS + 1] = (uint8_t)(e->flags >> 8);
	record_put32(out + ENV_LENGTH, e->length);
	record_put32(out + ENV_COUNT, e->message_count);
	record_put64(out + ENV_INDEX, e->index);
	record_put64(out + ENV_TERM, e->term);
	record_put64(out + ENV_BASE_OFFSET, e->base_offset);
	record_put64(out + ENV_TIMESTAMP, e->timestamp);
	record_put64(out + ENV_PAYLOAD_CHECK, e->payload_check);
	record_put64(out + ENV_CHECK, XXH3_64bits(out, ENV_CHECK));
}

int record_env_decode(const uint8_t in[RECORD_ENVELOPE_SIZE], struct record_env *e)
{
	if (record_le32(in + ENV_MAGIC) != RECORD_MAGIC || in[ENV_VERSION] != RECORD_VERSION)
		return RECORD_E_MAGIC;
	if (record_le64(in + ENV_CHECK) != XXH3_64bits(in, ENV_CHECK))
		return RECORD_E_ENV_CHECK;
	e->version = in[ENV_VERSION];
	e->type = in[ENV_TYPE];
	e->flags = (uint16_t)(in[ENV_FLAGS] | in[ENV_FLAGS + 1] << 8);
	e->length = record_le32(in + ENV_LENGTH);
	e->message_count = record_le32(in + ENV_COUNT);
	e->index = record_le64(in + ENV_INDEX);
	e->term = record_le64(in + ENV_TERM);
	e->base_offset = record_le64(in + ENV_BASE_OFFSET);
	e->timestamp = record_le64(in + ENV_TIMESTAMP);
	e->payload_check = record_le64(in + ENV_PAYLOAD_CHECK);
	if (!type_known(e->type))
		return RECORD_E_TYPE;
	return RECORD_OK;
}

void record_env_fill(struct record_env *e, const uint8_t *payload, uint32_t length)
{
	e->version = RECORD_VERSION;
	e->length = length;
	if (e->type == RECORD_MESSAGES) {
		if (length < RECORD_BATCH_HEADER_SIZE) { /* not a batch: leave what verify will reject */
			e->message_count = 0;
			e->payload_check = 0;
			return;
		}
		e->message_count = record_le32(payload + BH_COUNT);
		e->base_offset = record_le64(payload + BH_BASE_OFFSET);
		e->timestamp = record_le64(payload + BH_BASE_TS);
		e->payload_check = record_le64(payload + BH_CHECKSUM);
		return;
	}
	e->message_count = 0;
	e->payload_check = XXH3_64bits(length ? payload : empty_payload, length);
}

int record_payload_verify(const struct record_env *e, const uint8_t *payload, size_t length)
{
	if (length != e->length || length > RECORD_MAX_PAYLOAD)
		return RECORD_E_LENGTH;
	if (e->type == RECORD_MESSAGES) {
		int rc = record_batch_verify(payload, length, true);
		if (rc)
			return rc;
		if (record_le32(payload + BH_COUNT) != e->message_count)
			return RECORD_E_COUNT;
		if (record_le64(payload + BH_BASE_OFFSET) != e->base_offset ||
		    record_le64(payload + BH_BASE_TS) != e->timestamp)
			return RECORD_E_FIELDS;
		if (record_le64(payload + BH_CHECKSUM) != e->payload_check)
			return RECORD_E_PAYLOAD_CHECK;
		return RECORD_OK;
	}
	if (!type_known(e->type))
		return RECORD_E_TYPE;
	if (e->message_count != 0)
		return RECORD_E_COUNT;
	if (XXH3_64bits(length ? payload : empty_payload, length) != e->payload_check)
		return RECORD_E_PAYLOAD_CHECK;
	return RECORD_OK;
}

/* ---- batch ---- */

void record_batch_hdr_decode(const uint8_t *batch, struct record_batch_hdr *h)
{
	h->partition_id = record_le64(batch + BH_PARTITION);
	h->base_offset = record_le64(batch + BH_BASE_OFFSET);
	h->base_timestamp = record_le64(batch + BH_BASE_TS);
	h->origin_timestamp = record_le64(batch + BH_ORIGIN_TS);
	h->batch_length = record_le64(batch + BH_LENGTH);
	h->batch_checksum = record_le64(batch + BH_CHECKSUM);
	h->message_count = record_le32(batch + BH_COUNT);
}

void record_frame_hdr_decode(const uint8_t *frame, struct record_frame_hdr *h)
{
	h->checksum = record_le64(frame + FH_CHECKSUM);
	memcpy(h->id, frame + FH_ID, sizeof h->id);
	h->offset_delta = record_le32(frame + FH_OFFSET_DELTA);
	h->timestamp_delta = record_le32(frame + FH_TS_DELTA);
	h->user_headers_length = record_le32(frame + FH_HEADERS_LEN);
	h->payload_length = record_le32(frame + FH_PAYLOAD_LEN);
	h->reserved = record_le64(frame + FH_RESERVED);
}

/* Total bytes of the frame whose header is at `frame` (48 + payload + user headers; at most 48 + 2^33). */
static uint64_t frame_size(const uint8_t *frame)
{
	return RECORD_FRAME_HEADER_SIZE + (uint64_t)record_le32(frame + FH_PAYLOAD_LEN) +
	       (uint64_t)record_le32(frame + FH_HEADERS_LEN);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Starts the batch checksum: the 44 hashed header bytes of `hdr`, with message_count replaced by `count`. */
static void batch_hash_start(XXH3_state_t *st, const uint8_t *hdr, uint32_t count)
{
	uint8_t fields[BH_HASHED];

	memcpy(fields, hdr, BH_LENGTH + 8);
	record_put32(fields + BH_LENGTH + 8, count);
	XXH3_INITSTATE(st);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, fields, sizeof fields);
}

/*
 * Checks the layout of the batch header: length, batch_length, reserved bytes, message_count ≥ 1.
 */
static int batch_hdr_check(const uint8_t *batch, size_t length)
{
	if (!batch || length < RECORD_BATCH_HEADER_SIZE)
		return RECORD_E_SHORT;
	if (record_le64(batch + BH_LENGTH) != (uint64_t)length)
		return RECORD_E_LENGTH;
	if (!all_zero(batch + BH_RESERVED, RECORD_BATCH_HEADER_SIZE - BH_RESERVED))
		return RECORD_E_RESERVED;
	if (record_le32(batch + BH_COUNT) == 0)
		return RECORD_E_COUNT;
	return RECORD_OK;
}

/*
 * Checks the frame header at batch[pos] (pos < length) fits in the batch with its body and has a zero
 * reserved field, and returns its size in *size.
 */
static int frame_check_layout(const uint8_t *batch, size_t length, size_t pos, uint64_t *size)
{
	assert(pos < length);
	if (length - pos < RECORD_FRAME_HEADER_SIZE)
		return RECORD_E_LENGTH;
	const uint8_t *f = batch + pos;
	*size = frame_size(f);
	if (*size > (uint64_t)(length - pos))
		return RECORD_E_LENGTH;
	if (record_le64(f + FH_RESERVED) != 0)
		return RECORD_E_RESERVED;
	return RECORD_OK;
}

int record_batch_verify(const uint8_t *batch, size_t length, bool require_dense)
{
	int rc = batch_hdr_check(batch, length);
	if (rc)
		return rc;

	uint32_t count = record_le32(batch + BH_COUNT);
	XXH3_state_t st;
	batch_hash_start(&st, batch, count);

	size_t pos = RECORD_BATCH_HEADER_SIZE;
	uint32_t i = 0;
	while (pos < length) {
		uint64_t size;
		rc = frame_check_layout(batch, length, pos, &size);
		if (rc)
			return rc;
		if (i == count)
			return RECORD_E_COUNT; /* more frames than message_count */
		const uint8_t *f = batch + pos;
		if (require_dense && record_le32(f + FH_OFFSET_DELTA) != i)
			return RECORD_E_FIELDS;
		if (XXH3_64bits(f + FH_ID, (size_t)size - FH_ID) != record_le64(f + FH_CHECKSUM))
			return RECORD_E_FRAME_CHECK;
		XXH3_64bits_update(&st, f + FH_CHECKSUM, 8);
		pos += (size_t)size;
		i++;
	}
	assert(pos == length); /* each frame was checked to fit: the walk ends exactly at the end */
	if (i != count)
		return RECORD_E_COUNT;
	if (XXH3_64bits_digest(&st) != record_le64(batch + BH_CHECKSUM))
		return RECORD_E_BATCH_CHECK;
	return RECORD_OK;
}

uint64_t record_batch_checksum(const uint8_t *batch)
{
	uint32_t count = record_le32(batch + BH_COUNT);
	uint64_t blen = record_le64(batch + BH_LENGTH);
	XXH3_state_t st;
	batch_hash_start(&st, batch, count);

	/* Trusts the layout, but never walks past batch_length. */
	uint64_t pos = RECORD_BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < count && pos <= blen && blen - pos >= RECORD_FRAME_HEADER_SIZE; i++) {
		const uint8_t *f = batch + pos;
		XXH3_64bits_update(&st, f + FH_CHECKSUM, 8);
		pos += frame_size(f);
	}
	return XXH3_64bits_digest(&st);
}

void record_batch_stamp(uint8_t *batch, uint64_t partition_id, uint64_t base_offset, uint64_t base_timestamp)
{
	record_put64(batch + BH_PARTITION, partition_id);
	record_put64(batch + BH_BASE_OFFSET, base_offset);
	record_put64(batch + BH_BASE_TS, base_timestamp);
	record_put64(batch + BH_CHECKSUM, record_batch_checksum(batch));
}

/*
 * Slicing checks the layout (as record_batch_verify does) but not the frame checksums: it serves stored
 * batches, which were verified when written and read, and it copies their frame checksums unchanged.
 */
int record_batch_slice(const uint8_t *batch, size_t length, uint32_t first, uint32_t count,
		       uint8_t out[RECORD_BATCH_HEADER_SIZE], size_t *frames_off, size_t *frames_len)
{
	int rc = batch_hdr_check(batch, length);
	if (rc)
		return rc;
	uint32_t total = record_le32(batch + BH_COUNT);
	if (count == 0 || (uint64_t)first + count > total)
		return RECORD_E_COUNT;

	/* Walk the whole batch so a malformed one is refused, noting where the slice starts and ends. */
	size_t pos = RECORD_BATCH_HEADER_SIZE, start = 0, end = 0;
	uint32_t i = 0;
	while (pos < length) {
		uint64_t size;
		rc = frame_check_layout(batch, length, pos, &size);
		if (rc)
			return rc;
		if (i == total)
			return RECORD_E_COUNT;
		if (i == first)
			start = pos;
		pos += (size_t)size;
		i++;
		if (i == first + count)
			end = pos;
	}
	if (i != total)
		return RECORD_E_COUNT;
	/* first + count <= total frames were walked: the slice is a non-empty run of whole frames. */
	assert(start >= RECORD_BATCH_HEADER_SIZE && start < end && end <= length);

	uint8_t hdr[RECORD_BATCH_HEADER_SIZE];
	memcpy(hdr, batch, sizeof hdr);
	record_put64(hdr + BH_LENGTH, RECORD_BATCH_HEADER_SIZE + (uint64_t)(end - start));
	record_put32(hdr + BH_COUNT, count);

	XXH3_state_t st;
	batch_hash_start(&st, hdr, count);
	for (pos = start; pos < end; pos += (size_t)frame_size(batch + pos))
		XXH3_64bits_update(&st, batch + pos + FH_CHECKSUM, 8);
	record_put64(hdr + BH_CHECKSUM, XXH3_64bits_digest(&st));

	memcpy(out, hdr, sizeof hdr); /* through hdr, so out may be the batch itself */
	*frames_off = start;
	*frames_len = end - start;
	return RECORD_OK;
}

size_t record_batch_build(uint8_t *out, size_t cap, uint32_t n, const void *const *payloads,
			  const uint32_t *payload_lens, const void *const *user_headers,
			  const uint32_t *user_header_lens, uint64_t origin)
{
	if (n == 0)
		return 0;
	uint64_t total = RECORD_BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pl = payload_lens ? payload_lens[i] : 0;
		uint64_t hl = user_header_lens ? user_header_lens[i] : 0;
		total += RECORD_FRAME_HEADER_SIZE + pl + hl;
		if (total > cap)
			return 0;
	}

	memset(out, 0, RECORD_BATCH_HEADER_SIZE);
	record_put64(out + BH_ORIGIN_TS, origin);
	record_put64(out + BH_LENGTH, total);
	record_put32(out + BH_COUNT, n);

	size_t pos = RECORD_BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t pl = payload_lens ? payload_lens[i] : 0;
		uint32_t hl = user_header_lens ? user_header_lens[i] : 0;
		uint8_t *f = out + pos;
		memset(f, 0, RECORD_FRAME_HEADER_SIZE);
		record_put64(f + FH_ID, (uint64_t)i + 1); /* u128 LE: the high 8 bytes stay zero */
		record_put32(f + FH_OFFSET_DELTA, i);
		record_put32(f + FH_HEADERS_LEN, hl);
		record_put32(f + FH_PAYLOAD_LEN, pl);
		if (pl)
			memcpy(f + RECORD_FRAME_HEADER_SIZE, payloads[i], pl);
		if (hl)
			memcpy(f + RECORD_FRAME_HEADER_SIZE + pl, user_headers[i], hl);
		size_t size = RECORD_FRAME_HEADER_SIZE + (size_t)pl + hl;
		record_put64(f + FH_CHECKSUM, XXH3_64bits(f + FH_ID, size - FH_ID));
		pos += size;
	}
	assert(pos == total); /* the frames fill exactly the length the header announces */
	record_put64(out + BH_CHECKSUM, record_batch_checksum(out));
	return (size_t)total;
}

size_t record_batch_filter(uint8_t *batch, size_t length, const bool *keep)
{
	uint32_t n = record_le32(batch + BH_COUNT), kept = 0;
	size_t in = RECORD_BATCH_HEADER_SIZE, out = RECORD_BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++)
		kept += keep[i];
	if (kept == 0)
		return 0;
	kept = 0;
	for (uint32_t i = 0; i < n && in < length; i++) {
		uint8_t *f = batch + in;
		size_t size = RECORD_FRAME_HEADER_SIZE + (size_t)record_le32(f + FH_PAYLOAD_LEN) +
			      record_le32(f + FH_HEADERS_LEN);
		if (keep[i]) {
			if (out != in)
				memmove(batch + out, f, size);
			uint8_t *g = batch + out;
			record_put32(g + FH_OFFSET_DELTA, kept++);
			record_put64(g + FH_CHECKSUM, XXH3_64bits(g + FH_ID, size - FH_ID));
			out += size;
		}
		in += size;
	}
	record_put32(batch + BH_COUNT, kept);
	record_put64(batch + BH_LENGTH, out);
	record_put64(batch + BH_CHECKSUM, record_batch_checksum(batch));
	return out;
}
