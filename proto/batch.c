/*
 * batch — decode, verify, stamp, slice, filter, build and walk Iggy message batches (see batch.h for the
 * byte format). The verify, slice and walk functions decode untrusted network and disk bytes: every length
 * is checked against the bytes actually present before anything is read, in 64-bit arithmetic so that no
 * sum of u32 fields can wrap.
 */
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: the batch checksum is hashed incrementally */
#include "proto/batch.h"

#include <assert.h>
#include <string.h>
#include <xxhash.h>

#include "proto/frame.h" /* the little-endian loads and stores */

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

const char *batch_strerror(int err)
{
	switch (err) {
	case BATCH_OK:
		return "ok";
	case BATCH_E_SHORT:
		return "record too short for its layout";
	case BATCH_E_LENGTH:
		return "record length field disagrees with the bytes";
	case BATCH_E_RESERVED:
		return "reserved field is not zero";
	case BATCH_E_FRAME_CHECK:
		return "message checksum mismatch";
	case BATCH_E_BATCH_CHECK:
		return "batch checksum mismatch";
	case BATCH_E_COUNT:
		return "message count is zero or disagrees with the messages";
	case BATCH_E_FIELDS:
		return "record fields disagree (offset, timestamp or offset deltas)";
	default:
		return NULL;
	}
}

void batch_hdr_decode(const uint8_t *batch, struct batch_hdr *h)
{
	h->partition_id = frame_le64(batch + BH_PARTITION);
	h->base_offset = frame_le64(batch + BH_BASE_OFFSET);
	h->base_timestamp = frame_le64(batch + BH_BASE_TS);
	h->origin_timestamp = frame_le64(batch + BH_ORIGIN_TS);
	h->batch_length = frame_le64(batch + BH_LENGTH);
	h->batch_checksum = frame_le64(batch + BH_CHECKSUM);
	h->message_count = frame_le32(batch + BH_COUNT);
}

void batch_frame_hdr_decode(const uint8_t *frame, struct batch_frame_hdr *h)
{
	h->checksum = frame_le64(frame + FH_CHECKSUM);
	memcpy(h->id, frame + FH_ID, sizeof h->id);
	h->offset_delta = frame_le32(frame + FH_OFFSET_DELTA);
	h->timestamp_delta = frame_le32(frame + FH_TS_DELTA);
	h->user_headers_length = frame_le32(frame + FH_HEADERS_LEN);
	h->payload_length = frame_le32(frame + FH_PAYLOAD_LEN);
	h->reserved = frame_le64(frame + FH_RESERVED);
}

/* Total bytes of the frame whose header is at `frame` (48 + payload + user headers; at most 48 + 2^33). */
static uint64_t frame_size(const uint8_t *frame)
{
	return BATCH_FRAME_HEADER_SIZE + (uint64_t)frame_le32(frame + FH_PAYLOAD_LEN) +
	       (uint64_t)frame_le32(frame + FH_HEADERS_LEN);
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
	frame_put32(fields + BH_LENGTH + 8, count);
	XXH3_INITSTATE(st);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, fields, sizeof fields);
}

/*
 * Checks the layout of the batch header: length, batch_length, reserved bytes, message_count ≥ 1.
 */
static int batch_hdr_check(const uint8_t *batch, size_t length)
{
	if (!batch || length < BATCH_HEADER_SIZE)
		return BATCH_E_SHORT;
	if (frame_le64(batch + BH_LENGTH) != (uint64_t)length)
		return BATCH_E_LENGTH;
	if (!all_zero(batch + BH_RESERVED, BATCH_HEADER_SIZE - BH_RESERVED))
		return BATCH_E_RESERVED;
	if (frame_le32(batch + BH_COUNT) == 0)
		return BATCH_E_COUNT;
	return BATCH_OK;
}

/*
 * Checks the frame header at batch[pos] (pos < length) fits in the batch with its body and has a zero
 * reserved field, and returns its size in *size.
 */
static int frame_check_layout(const uint8_t *batch, size_t length, size_t pos, uint64_t *size)
{
	assert(pos < length);
	if (length - pos < BATCH_FRAME_HEADER_SIZE)
		return BATCH_E_LENGTH;
	const uint8_t *f = batch + pos;
	*size = frame_size(f);
	if (*size > (uint64_t)(length - pos))
		return BATCH_E_LENGTH;
	if (frame_le64(f + FH_RESERVED) != 0)
		return BATCH_E_RESERVED;
	return BATCH_OK;
}

int batch_verify(const uint8_t *batch, size_t length, bool require_dense)
{
	int rc = batch_hdr_check(batch, length);
	if (rc)
		return rc;

	uint32_t count = frame_le32(batch + BH_COUNT);
	XXH3_state_t st;
	batch_hash_start(&st, batch, count);

	size_t pos = BATCH_HEADER_SIZE;
	uint32_t i = 0;
	while (pos < length) {
		uint64_t size;
		rc = frame_check_layout(batch, length, pos, &size);
		if (rc)
			return rc;
		if (i == count)
			return BATCH_E_COUNT; /* more frames than message_count */
		const uint8_t *f = batch + pos;
		if (require_dense && frame_le32(f + FH_OFFSET_DELTA) != i)
			return BATCH_E_FIELDS;
		if (XXH3_64bits(f + FH_ID, (size_t)size - FH_ID) != frame_le64(f + FH_CHECKSUM))
			return BATCH_E_FRAME_CHECK;
		XXH3_64bits_update(&st, f + FH_CHECKSUM, 8);
		pos += (size_t)size;
		i++;
	}
	assert(pos == length); /* each frame was checked to fit: the walk ends exactly at the end */
	if (i != count)
		return BATCH_E_COUNT;
	if (XXH3_64bits_digest(&st) != frame_le64(batch + BH_CHECKSUM))
		return BATCH_E_BATCH_CHECK;
	return BATCH_OK;
}

uint64_t batch_checksum(const uint8_t *batch)
{
	uint32_t count = frame_le32(batch + BH_COUNT);
	uint64_t blen = frame_le64(batch + BH_LENGTH);
	XXH3_state_t st;
	batch_hash_start(&st, batch, count);

	/* Trusts the layout, but never walks past batch_length. */
	uint64_t pos = BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < count && pos <= blen && blen - pos >= BATCH_FRAME_HEADER_SIZE; i++) {
		const uint8_t *f = batch + pos;
		XXH3_64bits_update(&st, f + FH_CHECKSUM, 8);
		pos += frame_size(f);
	}
	return XXH3_64bits_digest(&st);
}

void batch_seal(uint8_t *batch)
{
	uint32_t count = frame_le32(batch + BH_COUNT);
	uint64_t blen = frame_le64(batch + BH_LENGTH);
	uint64_t pos = BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < count && pos <= blen && blen - pos >= BATCH_FRAME_HEADER_SIZE; i++) {
		uint8_t *f = batch + pos;
		uint64_t size = frame_size(f);
		if (size > blen - pos)
			break;
		frame_put64(f + FH_CHECKSUM, XXH3_64bits(f + FH_ID, (size_t)size - FH_ID));
		pos += size;
	}
	frame_put64(batch + BH_CHECKSUM, batch_checksum(batch));
}

void batch_stamp(uint8_t *batch, uint64_t partition_id, uint64_t base_offset, uint64_t base_timestamp)
{
	frame_put64(batch + BH_PARTITION, partition_id);
	frame_put64(batch + BH_BASE_OFFSET, base_offset);
	frame_put64(batch + BH_BASE_TS, base_timestamp);
	frame_put64(batch + BH_CHECKSUM, batch_checksum(batch));
}

/*
 * Slicing checks the layout (as batch_verify does) but not the frame checksums: it serves stored
 * batches, which were verified when written and read, and it copies their frame checksums unchanged.
 */
int batch_slice(const uint8_t *batch, size_t length, uint32_t first, uint32_t count,
		       uint8_t out[BATCH_HEADER_SIZE], size_t *frames_off, size_t *frames_len)
{
	int rc = batch_hdr_check(batch, length);
	if (rc)
		return rc;
	uint32_t total = frame_le32(batch + BH_COUNT);
	if (count == 0 || (uint64_t)first + count > total)
		return BATCH_E_COUNT;

	/* Walk the whole batch so a malformed one is refused, noting where the slice starts and ends. */
	size_t pos = BATCH_HEADER_SIZE, start = 0, end = 0;
	uint32_t i = 0;
	while (pos < length) {
		uint64_t size;
		rc = frame_check_layout(batch, length, pos, &size);
		if (rc)
			return rc;
		if (i == total)
			return BATCH_E_COUNT;
		if (i == first)
			start = pos;
		pos += (size_t)size;
		i++;
		if (i == first + count)
			end = pos;
	}
	if (i != total)
		return BATCH_E_COUNT;
	/* first + count <= total frames were walked: the slice is a non-empty run of whole frames. */
	assert(start >= BATCH_HEADER_SIZE && start < end && end <= length);

	uint8_t hdr[BATCH_HEADER_SIZE];
	memcpy(hdr, batch, sizeof hdr);
	frame_put64(hdr + BH_LENGTH, BATCH_HEADER_SIZE + (uint64_t)(end - start));
	frame_put32(hdr + BH_COUNT, count);

	XXH3_state_t st;
	batch_hash_start(&st, hdr, count);
	for (pos = start; pos < end; pos += (size_t)frame_size(batch + pos))
		XXH3_64bits_update(&st, batch + pos + FH_CHECKSUM, 8);
	frame_put64(hdr + BH_CHECKSUM, XXH3_64bits_digest(&st));

	memcpy(out, hdr, sizeof hdr); /* through hdr, so out may be the batch itself */
	*frames_off = start;
	*frames_len = end - start;
	return BATCH_OK;
}

size_t batch_build(uint8_t *out, size_t cap, uint32_t n, const void *const *payloads,
			  const uint32_t *payload_lens, const void *const *user_headers,
			  const uint32_t *user_header_lens, uint64_t origin)
{
	if (n == 0)
		return 0;
	uint64_t total = BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t pl = payload_lens ? payload_lens[i] : 0;
		uint64_t hl = user_header_lens ? user_header_lens[i] : 0;
		total += BATCH_FRAME_HEADER_SIZE + pl + hl;
		if (total > cap)
			return 0;
	}

	memset(out, 0, BATCH_HEADER_SIZE);
	frame_put64(out + BH_ORIGIN_TS, origin);
	frame_put64(out + BH_LENGTH, total);
	frame_put32(out + BH_COUNT, n);

	size_t pos = BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t pl = payload_lens ? payload_lens[i] : 0;
		uint32_t hl = user_header_lens ? user_header_lens[i] : 0;
		uint8_t *f = out + pos;
		memset(f, 0, BATCH_FRAME_HEADER_SIZE);
		frame_put64(f + FH_ID, (uint64_t)i + 1); /* u128 LE: the high 8 bytes stay zero */
		frame_put32(f + FH_OFFSET_DELTA, i);
		frame_put32(f + FH_HEADERS_LEN, hl);
		frame_put32(f + FH_PAYLOAD_LEN, pl);
		if (pl)
			memcpy(f + BATCH_FRAME_HEADER_SIZE, payloads[i], pl);
		if (hl)
			memcpy(f + BATCH_FRAME_HEADER_SIZE + pl, user_headers[i], hl);
		size_t size = BATCH_FRAME_HEADER_SIZE + (size_t)pl + hl;
		frame_put64(f + FH_CHECKSUM, XXH3_64bits(f + FH_ID, size - FH_ID));
		pos += size;
	}
	assert(pos == total); /* the frames fill exactly the length the header announces */
	frame_put64(out + BH_CHECKSUM, batch_checksum(out));
	return (size_t)total;
}

size_t batch_filter(uint8_t *batch, size_t length, const bool *keep)
{
	uint32_t n = frame_le32(batch + BH_COUNT), kept = 0;
	size_t in = BATCH_HEADER_SIZE, out = BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++)
		kept += keep[i];
	if (kept == 0)
		return 0;
	kept = 0;
	for (uint32_t i = 0; i < n && in < length; i++) {
		uint8_t *f = batch + in;
		size_t size = BATCH_FRAME_HEADER_SIZE + (size_t)frame_le32(f + FH_PAYLOAD_LEN) +
			      frame_le32(f + FH_HEADERS_LEN);
		if (keep[i]) {
			if (out != in)
				memmove(batch + out, f, size);
			uint8_t *g = batch + out;
			frame_put32(g + FH_OFFSET_DELTA, kept++);
			frame_put64(g + FH_CHECKSUM, XXH3_64bits(g + FH_ID, size - FH_ID));
			out += size;
		}
		in += size;
	}
	frame_put32(batch + BH_COUNT, kept);
	frame_put64(batch + BH_LENGTH, out);
	frame_put64(batch + BH_CHECKSUM, batch_checksum(batch));
	return out;
}

/* ---- walking the messages of batches laid end to end ---- */

void batch_iter_init(struct batch_iter *it, const uint8_t *p, size_t len)
{
	memset(it, 0, sizeof(*it));
	it->p = p;
	it->len = p ? len : 0;
}

/* Steps into the batch at it->batch_end; 0 or a batch_err (the layout of its header). */
static int iter_enter(struct batch_iter *it)
{
	size_t at = it->batch_end;
	if (it->len - at < BATCH_HEADER_SIZE)
		return BATCH_E_SHORT;
	const uint8_t *b = it->p + at;
	uint64_t blen = frame_le64(b + BH_LENGTH);
	if (blen < BATCH_HEADER_SIZE || blen > it->len - at)
		return BATCH_E_LENGTH;
	if (frame_le32(b + BH_COUNT) == 0)
		return BATCH_E_COUNT;
	if (!all_zero(b + BH_RESERVED, BATCH_HEADER_SIZE - BH_RESERVED))
		return BATCH_E_RESERVED;
	it->batch = at;
	it->batch_end = at + (size_t)blen;
	it->frame = at + BATCH_HEADER_SIZE;
	it->batch_left = frame_le32(b + BH_COUNT);
	return BATCH_OK;
}

int batch_iter_next(struct batch_iter *it, struct batch_msg *m)
{
	if (it->err != 0)
		return it->err;
	while (it->batch_left == 0) {
		/* The current batch is done: its frames must have filled it exactly. */
		if (it->frame != it->batch_end)
			return it->err = BATCH_E_COUNT;
		if (it->batch_end == it->len)
			return 0;
		int rc = iter_enter(it);
		if (rc != 0)
			return it->err = rc;
	}
	if (it->batch_end - it->frame < BATCH_FRAME_HEADER_SIZE)
		return it->err = BATCH_E_LENGTH;
	const uint8_t *b = it->p + it->batch, *f = it->p + it->frame;
	struct batch_frame_hdr fh;
	batch_frame_hdr_decode(f, &fh);
	uint64_t size = frame_size(f);
	if (size > it->batch_end - it->frame)
		return it->err = BATCH_E_LENGTH;
	if (fh.reserved != 0)
		return it->err = BATCH_E_RESERVED;
	m->offset = frame_le64(b + BH_BASE_OFFSET) + fh.offset_delta;
	m->timestamp = frame_le64(b + BH_BASE_TS);
	m->origin_timestamp = frame_le64(b + BH_ORIGIN_TS) + fh.timestamp_delta;
	m->checksum = fh.checksum;
	memcpy(m->id, fh.id, sizeof(m->id));
	m->reserved = fh.reserved;
	m->frame = f;
	m->payload = f + BATCH_FRAME_HEADER_SIZE;
	m->payload_len = fh.payload_length;
	m->headers = fh.user_headers_length ? f + BATCH_FRAME_HEADER_SIZE + fh.payload_length : NULL;
	m->headers_len = fh.user_headers_length;
	it->frame += (size_t)size;
	it->batch_left--;
	it->seen++;
	return 1;
}
