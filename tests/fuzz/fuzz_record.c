/*
 * libFuzzer target for partition/record and proto/batch: the decoders of untrusted bytes must never read
 * out of bounds, and what they accept must be self-consistent.
 *
 * Each input is tried as is (as an envelope + payload and as a batch), then once more with its checksums
 * recomputed, so that mutations of lengths, counts and deltas get past the checksum gates and reach the
 * layout checks behind them; and walked message by message (batch_iter) as a poll reader does. Seeds
 * (tests/fuzz/corpus/record/) are plain batches from batch_build.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. partition/record.c proto/batch.c proto/frame.c \
 *         tests/fuzz/fuzz_record.c $(pkg-config --cflags --libs libxxhash) -o /tmp/fuzz_record \
 *     && /tmp/fuzz_record tests/fuzz/corpus/record
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "partition/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                        \
	do {                                                                                               \
		if (!(cond))                                                                               \
			abort();                                                                           \
	} while (0)

static void envelope(const uint8_t *data, size_t size)
{
	struct record_env e;

	if (size < RECORD_ENVELOPE_SIZE)
		return;
	if (record_env_decode(data, &e) == RECORD_OK)
		(void)record_payload_verify(&e, data + RECORD_ENVELOPE_SIZE, size - RECORD_ENVELOPE_SIZE);

	/* Again with a matching envelope_check, to reach the magic/type decisions and the payload. */
	uint8_t env[RECORD_ENVELOPE_SIZE];
	memcpy(env, data, sizeof env);
	record_put64(env + 56, XXH3_64bits(env, 56));
	int rc = record_env_decode(env, &e);
	if (rc == RECORD_OK) {
		uint8_t again[RECORD_ENVELOPE_SIZE];
		record_env_encode(&e, again);
		CHECK(memcmp(again, env, sizeof env) == 0);
		(void)record_payload_verify(&e, data + RECORD_ENVELOPE_SIZE, size - RECORD_ENVELOPE_SIZE);
	}
}

/* A verified batch must slice into verified batches. */
static void slices(const uint8_t *batch, size_t size, bool dense)
{
	uint32_t n = record_le32(batch + 48);
	const uint32_t ranges[][2] = {{0, n}, {0, 1}, {n - 1, 1}, {n / 2, n - n / 2}, {1, n > 2 ? n - 2 : 1},
				      {0, 0}, {n, 1}, {UINT32_MAX, 2}};

	CHECK(batch_checksum(batch) == record_le64(batch + 40));
	for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
		uint32_t first = ranges[i][0], count = ranges[i][1];
		uint8_t hdr[BATCH_HEADER_SIZE];
		size_t off = 0, len = 0;
		int rc = batch_slice(batch, size, first, count, hdr, &off, &len);
		bool in_range = count > 0 && (uint64_t)first + count <= n;
		CHECK((rc == RECORD_OK) == in_range);
		if (rc != RECORD_OK)
			continue;
		CHECK(off >= BATCH_HEADER_SIZE && off <= size && len <= size - off && len > 0);
		size_t slen = BATCH_HEADER_SIZE + len;
		uint8_t *s = malloc(slen);
		CHECK(s);
		memcpy(s, hdr, BATCH_HEADER_SIZE);
		memcpy(s + BATCH_HEADER_SIZE, batch + off, len);
		CHECK(batch_verify(s, slen, false) == RECORD_OK);
		if (dense && first == 0)
			CHECK(batch_verify(s, slen, true) == RECORD_OK);
		CHECK(record_le64(s + 8) == record_le64(batch + 8));
		free(s);
	}
}

static void batch(const uint8_t *data, size_t size)
{
	int dense = batch_verify(data, size, true);
	int loose = batch_verify(data, size, false);
	CHECK(dense <= 0 && loose <= 0);
	if (dense == RECORD_OK)
		CHECK(loose == RECORD_OK);
	if (loose == RECORD_OK) {
		slices(data, size, dense == RECORD_OK);
		/* As the payload of a MESSAGES record: the envelope agrees, and stored batches must be dense. */
		struct record_env e = {.type = RECORD_MESSAGES, .index = 1, .term = 1}, d;
		uint8_t env[RECORD_ENVELOPE_SIZE];
		record_env_fill(&e, data, (uint32_t)size);
		record_env_encode(&e, env);
		CHECK(record_env_decode(env, &d) == RECORD_OK);
		CHECK(record_payload_verify(&d, data, size) == (size > RECORD_MAX_PAYLOAD ? RECORD_E_LENGTH : dense));
	} else
		(void)batch_slice(data, size, 0, 1, (uint8_t[BATCH_HEADER_SIZE]){0}, &(size_t){0},
					 &(size_t){0});
}

/*
 * Recomputes the frame checksums and the batch checksum of a copy, walking the frames with bounds checks
 * of its own (independent of record.c), so that the mutated layout is what decides.
 */
static void fix_checksums(uint8_t *b, size_t size)
{
	if (size < BATCH_HEADER_SIZE)
		return;
	size_t pos = BATCH_HEADER_SIZE;
	while (size - pos >= BATCH_FRAME_HEADER_SIZE) {
		uint64_t flen = BATCH_FRAME_HEADER_SIZE + (uint64_t)record_le32(b + pos + 36) +
				record_le32(b + pos + 32);
		if (flen > size - pos)
			break;
		record_put64(b + pos, XXH3_64bits(b + pos + 8, (size_t)flen - 8));
		pos += (size_t)flen;
	}
	if (record_le64(b + 32) == size) /* batch_checksum trusts batch_length */
		record_put64(b + 40, batch_checksum(b));
}

/* Walks the input as batches laid end to end: every message it gives lies inside the input. */
static void walk(const uint8_t *data, size_t size)
{
	struct batch_iter it;
	struct batch_msg m;
	int rc;
	uint64_t n = 0;
	batch_iter_init(&it, data, size);
	while ((rc = batch_iter_next(&it, &m)) > 0) {
		CHECK(m.frame >= data && m.payload == m.frame + BATCH_FRAME_HEADER_SIZE);
		CHECK((size_t)(m.payload - data) + m.payload_len + m.headers_len <= size);
		CHECK(m.headers == NULL || m.headers == m.payload + m.payload_len);
		n++;
	}
	CHECK(rc == 0 || batch_strerror(rc) != NULL);
	CHECK(it.seen == n);
	/* A batch that verifies walks cleanly. */
	if (size >= BATCH_HEADER_SIZE && batch_verify(data, size, false) == 0)
		CHECK(rc == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	envelope(data, size);
	batch(data, size);
	walk(data, size);

	uint8_t *copy = malloc(size ? size : 1);
	CHECK(copy);
	memcpy(copy, data, size);
	fix_checksums(copy, size);
	batch(copy, size);
	free(copy);
	return 0;
}
