/*
 * Unit tests of partition/record: the envelope, the Iggy batch verifier, slicing and the golden vectors of
 * the protocol reference (§3.6 and the bytes captured from the Node SDK in §12).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "partition/record.h"

/* Captured SendMessages body of reference §12 6.3 (415 bytes: 26 bytes of metadata, then the batch). */
static const char golden_send_2[] =
	"1600000001040000000001040000000002040000000002000000000000000000"
	"00000000000000000000000000000000000000401e18240a0600850100000000"
	"0000e99e6ef7b0f48f9702000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"00000000000000000000000000000000000000000000000000008e5ca59edbbd"
	"bfb9010000000000000000000000000000000000000000000000000000000500"
	"0000000000000000000068656c6c6f5c243eef49c082aa020000000000000000"
	"0000000000000001000000fa0000001b00000005000000000000000000000077"
	"6f726c6402010000006b02010000007602010000006e0b0400000007000000"
	;

/* Captured SendMessages body of reference §12 6.4 (1119 bytes: 26 bytes of metadata, then a 10-message batch). */
static const char golden_send_10[] =
	"160000000104000000000104000000000204000000000a000000000000000000"
	"000000000000000000000000000000000000b0bf7cbd2a610600450400000000"
	"00000358198e84051cc90a000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000fdaa4b9d322e"
	"33d4e80300000000000000000000000000000000000000000000350000000a00"
	"000000000000000000007061796c6f61642d302d0205000000682d7374720202"
	"00000076300205000000682d7533320b04000000000000000206000000682d62"
	"6f6f6c030100000001c3b2bb84e598013ce90300000000000000000000000000"
	"000100000000000000000000000b00000000000000000000007061796c6f6164"
	"2d312d784da8436f35a0b1d3ea03000000000000000000000000000002000000"
	"00000000000000000c00000000000000000000007061796c6f61642d322d7878"
	"ec736517ed28b6a3eb0300000000000000000000000000000300000000000000"
	"350000000d00000000000000000000007061796c6f61642d332d787878020500"
	"0000682d737472020200000076330205000000682d7533320b04000000150000"
	"000206000000682d626f6f6c030100000000322c957d13ede012ec0300000000"
	"000000000000000000000400000000000000000000000e000000000000000000"
	"00007061796c6f61642d342d787878780866d400d3fb6b58ed03000000000000"
	"00000000000000000500000000000000000000000f0000000000000000000000"
	"7061796c6f61642d352d7878787878d22580b8241c4f80ee0300000000000000"
	"0000000000000006000000000000003500000010000000000000000000000070"
	"61796c6f61642d362d7878787878780205000000682d73747202020000007636"
	"0205000000682d7533320b040000002a0000000206000000682d626f6f6c0301"
	"0000000197679a7f2614e08fef03000000000000000000000000000007000000"
	"00000000000000001100000000000000000000007061796c6f61642d372d7878"
	"78787878786140d316a2a59d12f0030000000000000000000000000000080000"
	"0000000000000000001200000000000000000000007061796c6f61642d382d78"
	"78787878787878928bf9fd0b91b989f103000000000000000000000000000009"
	"00000000000000350000001300000000000000000000007061796c6f61642d39"
	"2d7878787878787878780205000000682d737472020200000076390205000000"
	"682d7533320b040000003f0000000206000000682d626f6f6c030100000000"
	;

#define SEND_METADATA_LEN 26 /* metadata_length u32 + 22 bytes of ids, partitioning and count */

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex) / 2;
	cr_assert_leq(n, cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

/* Byte offset of frame `idx` within a well-formed batch. */
static size_t frame_off(const uint8_t *batch, uint32_t idx)
{
	size_t pos = BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < idx; i++) {
		struct batch_frame_hdr fh;
		batch_frame_hdr_decode(batch + pos, &fh);
		pos += BATCH_FRAME_HEADER_SIZE + (size_t)fh.payload_length + fh.user_headers_length;
	}
	return pos;
}

/* Recomputes the frame checksum of frame `idx` after a test edited it. */
static void refresh_frame(uint8_t *batch, uint32_t idx)
{
	uint8_t *f = batch + frame_off(batch, idx);
	struct batch_frame_hdr fh;
	batch_frame_hdr_decode(f, &fh);
	size_t size = BATCH_FRAME_HEADER_SIZE + (size_t)fh.payload_length + fh.user_headers_length;
	record_put64(f, XXH3_64bits(f + 8, size - 8));
}

static void refresh_batch(uint8_t *batch)
{
	record_put64(batch + 40, batch_checksum(batch));
}

/* Builds an n-message batch (n ≤ 8) with payloads of varying length, every other one with user headers. */
static size_t build_n(uint8_t *out, size_t cap, uint32_t n)
{
	static const char *payloads[] = {"a", "bb", "", "dddddddd", "e-payload", "ffffff", "g", "hhhhhhhhhhhh"};
	static const char *headers[] = {"", "\x02\x01\x00\x00\x00k\x02\x01\x00\x00\x00v", "", "hdr", "", "HH", "", "x"};
	const void *p[8], *h[8];
	uint32_t pl[8], hl[8];
	cr_assert_leq(n, 8u);
	for (uint32_t i = 0; i < n; i++) {
		p[i] = payloads[i];
		pl[i] = (uint32_t)strlen(payloads[i]);
		h[i] = headers[i];
		hl[i] = i % 2 ? (uint32_t)strlen(headers[i]) : 0;
	}
	size_t len = batch_build(out, cap, n, p, pl, h, hl, 1700000000000000ull);
	cr_assert_gt(len, 0u);
	return len;
}

/* Copies `len` bytes into a heap buffer of exactly that size, so ASan sees any read past the end. */
static uint8_t *exact_copy(const uint8_t *src, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	cr_assert_not_null(p);
	if (len)
		memcpy(p, src, len);
	return p;
}

static int verify_exact(const uint8_t *src, size_t len, bool dense)
{
	uint8_t *p = exact_copy(src, len);
	int rc = batch_verify(p, len, dense);
	free(p);
	return rc;
}

/* ---- golden vectors ---- */

Test(record, the_two_message_golden_batch_of_section_3_6_has_the_reference_checksums)
{
	// Building §3.6's batch (ids 7 and 8, origins 1000 and 1050) gives its exact lengths and checksums.
	const void *p[2] = {"first-payload", "second-payload"};
	const uint32_t pl[2] = {13, 14};
	const void *h[2] = {NULL, "user-header-bytes"};
	const uint32_t hl[2] = {0, 17};
	uint8_t b[512];

	size_t len = batch_build(b, sizeof b, 2, p, pl, h, hl, 1000);
	cr_assert_eq(len, 396u);
	cr_assert_eq(frame_off(b, 1), 317u);
	record_put64(b + 256 + 8, 7);
	record_put64(b + 317 + 8, 8);
	record_put32(b + 317 + 28, 50); /* timestamp_delta: 1050 - 1000 */
	refresh_frame(b, 0);
	refresh_frame(b, 1);
	refresh_batch(b);

	struct batch_hdr bh;
	struct batch_frame_hdr f0, f1;
	batch_hdr_decode(b, &bh);
	batch_frame_hdr_decode(b + 256, &f0);
	batch_frame_hdr_decode(b + 317, &f1);
	cr_assert_eq(bh.batch_length, 396u);
	cr_assert_eq(bh.origin_timestamp, 1000u);
	cr_assert_eq(bh.message_count, 2u);
	cr_assert_eq(f0.checksum, 0x7596755a20b9d2bfull);
	cr_assert_eq(f1.checksum, 0xc0b78e751c7e6bd6ull);
	cr_assert_eq(f1.offset_delta, 1u);
	cr_assert_eq(f1.timestamp_delta, 50u);
	cr_assert_eq(bh.batch_checksum, 0x7c260763c8381fa9ull);
	static const uint8_t le[8] = {0xa9, 0x1f, 0x38, 0xc8, 0x63, 0x07, 0x26, 0x7c};
	cr_assert_arr_eq(b + 40, le, 8);
	cr_assert_eq(verify_exact(b, len, true), RECORD_OK);

	batch_stamp(b, 3, 100, 5000);
	batch_hdr_decode(b, &bh);
	cr_assert_eq(bh.partition_id, 3u);
	cr_assert_eq(bh.base_offset, 100u);
	cr_assert_eq(bh.base_timestamp, 5000u);
	cr_assert_eq(bh.batch_checksum, 0xd2ee8f8ab32668c9ull);
	cr_assert_eq(verify_exact(b, len, true), RECORD_OK);
}

Test(record, the_batch_the_node_sdk_sent_with_two_messages_verifies_and_matches_a_rebuilt_one)
{
	// The batch of §12 6.3 verifies, has the captured checksums, and batch_build reproduces it byte for byte.
	uint8_t body[512];
	size_t n = unhex(golden_send_2, body, sizeof body);
	cr_assert_eq(n, 415u);
	const uint8_t *batch = body + SEND_METADATA_LEN;
	size_t len = n - SEND_METADATA_LEN;
	cr_assert_eq(len, 389u);
	cr_assert_eq(record_le32(body + 22), 2u); /* messages_count in the metadata */
	cr_assert_eq(verify_exact(batch, len, true), RECORD_OK);
	cr_assert_eq(verify_exact(batch, len, false), RECORD_OK);
	cr_assert_eq(record_le64(batch + 40), 0x978ff4b0f76e9ee9ull);
	cr_assert_eq(batch_checksum(batch), 0x978ff4b0f76e9ee9ull);
	cr_assert_eq(record_le64(batch + 256), 0xb9bfbddb9ea55c8eull);
	cr_assert_eq(record_le64(batch + 309), 0xaa82c049ef3e245cull);

	static const uint8_t hdrs[27] = {0x02, 1, 0, 0, 0, 'k', 0x02, 1, 0, 0, 0, 'v', 0x02, 1, 0, 0,
					 0,    'n', 0x0b, 4, 0, 0, 0, 7, 0, 0, 0};
	const void *p[2] = {"hello", "world"};
	const uint32_t pl[2] = {5, 5};
	const void *h[2] = {NULL, hdrs};
	const uint32_t hl[2] = {0, 27};
	uint8_t b[512];
	cr_assert_eq(batch_build(b, sizeof b, 2, p, pl, h, hl, 1700000000000000ull), 389u);
	record_put32(b + 309 + 28, 250);
	refresh_frame(b, 1);
	refresh_batch(b);
	cr_assert_arr_eq(b, batch, 389);
}

Test(record, the_batch_the_node_sdk_sent_with_ten_messages_and_user_headers_verifies)
{
	// The 10-message batch of §12 6.4 (4 messages with user headers) passes the full verification.
	uint8_t body[1200];
	size_t n = unhex(golden_send_10, body, sizeof body);
	cr_assert_eq(n, 1119u);
	const uint8_t *batch = body + SEND_METADATA_LEN;
	size_t len = n - SEND_METADATA_LEN;
	struct batch_hdr bh;
	batch_hdr_decode(batch, &bh);
	cr_assert_eq(bh.batch_length, len);
	cr_assert_eq(bh.message_count, 10u);
	cr_assert_eq(verify_exact(batch, len, true), RECORD_OK);
	cr_assert_eq(record_le64(batch + 256), 0xd4332e329d4baafdull);
	cr_assert_eq(frame_off(batch, 10), len);
}

/* ---- envelope ---- */

static struct record_env sample_env(void)
{
	struct record_env e = {
		.version = RECORD_VERSION,
		.type = RECORD_CHANGE,
		.flags = 0x0102,
		.length = 0x11223344,
		.message_count = 0x55667788,
		.index = 0x0102030405060708ull,
		.term = 0x1112131415161718ull,
		.base_offset = 0x2122232425262728ull,
		.timestamp = 0x3132333435363738ull,
		.payload_check = 0x4142434445464748ull,
	};
	return e;
}

Test(record, an_encoded_envelope_decodes_to_the_same_fields)
{
	// Encoding then decoding an envelope keeps every field, with the magic "GLGR" and version 1 on the wire.
	struct record_env e = sample_env(), d;
	uint8_t buf[RECORD_ENVELOPE_SIZE];
	for (uint8_t t = RECORD_MESSAGES; t <= RECORD_CHANGE; t++) {
		e.type = t;
		record_env_encode(&e, buf);
		cr_assert_arr_eq(buf, "GLGR", 4);
		cr_assert_eq(buf[4], 1);
		cr_assert_eq(record_le64(buf + 56), XXH3_64bits(buf, 56));
		memset(&d, 0xee, sizeof d);
		cr_assert_eq(record_env_decode(buf, &d), RECORD_OK);
		cr_assert_eq(d.version, e.version);
		cr_assert_eq(d.type, e.type);
		cr_assert_eq(d.flags, e.flags);
		cr_assert_eq(d.length, e.length);
		cr_assert_eq(d.message_count, e.message_count);
		cr_assert_eq(d.index, e.index);
		cr_assert_eq(d.term, e.term);
		cr_assert_eq(d.base_offset, e.base_offset);
		cr_assert_eq(d.timestamp, e.timestamp);
		cr_assert_eq(d.payload_check, e.payload_check);
	}
}

Test(record, an_envelope_with_a_wrong_magic_is_refused)
{
	// Any change to the magic gives RECORD_E_MAGIC, even when the envelope_check is recomputed.
	struct record_env e = sample_env(), d;
	uint8_t buf[RECORD_ENVELOPE_SIZE];
	for (int i = 0; i < 4; i++) {
		record_env_encode(&e, buf);
		buf[i] ^= 0x20;
		cr_assert_eq(record_env_decode(buf, &d), RECORD_E_MAGIC);
		record_put64(buf + 56, XXH3_64bits(buf, 56));
		cr_assert_eq(record_env_decode(buf, &d), RECORD_E_MAGIC);
	}
}

Test(record, an_envelope_with_an_unknown_version_is_refused)
{
	// Versions other than 1 give RECORD_E_MAGIC, even with a matching envelope_check.
	struct record_env e = sample_env(), d;
	uint8_t buf[RECORD_ENVELOPE_SIZE];
	const uint8_t versions[] = {0, 2, 255};
	for (size_t i = 0; i < sizeof versions; i++) {
		record_env_encode(&e, buf);
		buf[4] = versions[i];
		record_put64(buf + 56, XXH3_64bits(buf, 56));
		cr_assert_eq(record_env_decode(buf, &d), RECORD_E_MAGIC);
	}
}

Test(record, an_envelope_with_an_unknown_type_is_refused)
{
	// Types other than MESSAGES, BARRIER, CHANGE and COMMAND give RECORD_E_TYPE.
	struct record_env e = sample_env(), d;
	uint8_t buf[RECORD_ENVELOPE_SIZE];
	const uint8_t types[] = {0, 5, 9, 255};
	for (size_t i = 0; i < sizeof types; i++) {
		e.type = types[i];
		record_env_encode(&e, buf);
		cr_assert_eq(record_env_decode(buf, &d), RECORD_E_TYPE);
	}
}

Test(record, an_envelope_with_any_bit_flipped_after_the_magic_fails_its_check)
{
	// Flipping any single bit of bytes 5..63 gives RECORD_E_ENV_CHECK; flipping one in 0..4 gives RECORD_E_MAGIC.
	struct record_env e = sample_env(), d;
	uint8_t good[RECORD_ENVELOPE_SIZE], buf[RECORD_ENVELOPE_SIZE];
	record_env_encode(&e, good);
	for (int i = 0; i < RECORD_ENVELOPE_SIZE; i++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(buf, good, sizeof buf);
			buf[i] ^= (uint8_t)(1u << bit);
			cr_assert_eq(record_env_decode(buf, &d), i < 5 ? RECORD_E_MAGIC : RECORD_E_ENV_CHECK,
				     "byte %d bit %d", i, bit);
		}
}

/* ---- record_env_fill and record_payload_verify ---- */

/* A stamped 3-message batch and its filled MESSAGES envelope. */
static size_t messages_record(uint8_t *b, size_t cap, struct record_env *e)
{
	size_t len = build_n(b, cap, 3);
	batch_stamp(b, 4, 700, 123456789);
	memset(e, 0, sizeof *e);
	e->type = RECORD_MESSAGES;
	e->index = 9;
	e->term = 2;
	record_env_fill(e, b, (uint32_t)len);
	return len;
}

Test(record, filling_a_messages_envelope_copies_the_batch_header)
{
	// For MESSAGES, fill copies length, message_count, base_offset, base_timestamp and batch_checksum.
	uint8_t b[1024];
	struct record_env e;
	size_t len = messages_record(b, sizeof b, &e);
	cr_assert_eq(e.version, RECORD_VERSION);
	cr_assert_eq(e.type, RECORD_MESSAGES);
	cr_assert_eq(e.length, len);
	cr_assert_eq(e.message_count, 3u);
	cr_assert_eq(e.base_offset, 700u);
	cr_assert_eq(e.timestamp, 123456789u);
	cr_assert_eq(e.payload_check, record_le64(b + 40));
	cr_assert_eq(e.index, 9u);
	cr_assert_eq(e.term, 2u);
	cr_assert_eq(record_payload_verify(&e, b, len), RECORD_OK);

	uint8_t env[RECORD_ENVELOPE_SIZE];
	struct record_env d;
	record_env_encode(&e, env);
	cr_assert_eq(record_env_decode(env, &d), RECORD_OK);
	cr_assert_eq(record_payload_verify(&d, b, len), RECORD_OK);
}

Test(record, filling_other_envelopes_hashes_the_payload_and_keeps_the_callers_fields)
{
	// For BARRIER and CHANGE, fill sets payload_check to XXH3 of the payload (of zero bytes when empty), count 0.
	struct record_env e = {.type = RECORD_BARRIER, .index = 5, .term = 1, .base_offset = 42, .timestamp = 77};
	record_env_fill(&e, NULL, 0);
	cr_assert_eq(e.version, RECORD_VERSION);
	cr_assert_eq(e.length, 0u);
	cr_assert_eq(e.message_count, 0u);
	cr_assert_eq(e.payload_check, XXH3_64bits("", 0));
	cr_assert_eq(e.base_offset, 42u);
	cr_assert_eq(e.timestamp, 77u);
	cr_assert_eq(record_payload_verify(&e, NULL, 0), RECORD_OK);

	const uint8_t conf[] = "raft configuration bytes";
	struct record_env c = {.type = RECORD_CHANGE, .message_count = 99, .base_offset = 10, .timestamp = 11};
	record_env_fill(&c, conf, sizeof conf);
	cr_assert_eq(c.length, sizeof conf);
	cr_assert_eq(c.message_count, 0u);
	cr_assert_eq(c.payload_check, XXH3_64bits(conf, sizeof conf));
	cr_assert_eq(c.base_offset, 10u);
	cr_assert_eq(c.timestamp, 11u);
	cr_assert_eq(record_payload_verify(&c, conf, sizeof conf), RECORD_OK);
}

Test(record, a_messages_payload_that_disagrees_with_its_envelope_is_refused)
{
	// Each disagreement between a MESSAGES envelope and its batch gives its own error.
	uint8_t b[1024];
	struct record_env e, bad;
	size_t len = messages_record(b, sizeof b, &e);

	cr_assert_eq(record_payload_verify(&e, b, len - 1), RECORD_E_LENGTH);
	bad = e;
	bad.length++;
	cr_assert_eq(record_payload_verify(&bad, b, len), RECORD_E_LENGTH);
	bad = e;
	bad.message_count = 2;
	cr_assert_eq(record_payload_verify(&bad, b, len), RECORD_E_COUNT);
	bad = e;
	bad.base_offset++;
	cr_assert_eq(record_payload_verify(&bad, b, len), RECORD_E_FIELDS);
	bad = e;
	bad.timestamp--;
	cr_assert_eq(record_payload_verify(&bad, b, len), RECORD_E_FIELDS);
	bad = e;
	bad.payload_check ^= 1;
	cr_assert_eq(record_payload_verify(&bad, b, len), RECORD_E_PAYLOAD_CHECK);
	bad = e;
	bad.type = 7;
	cr_assert_eq(record_payload_verify(&bad, b, len), RECORD_E_TYPE);

	size_t p1 = frame_off(b, 1) + BATCH_FRAME_HEADER_SIZE; /* corrupt frame 1's payload */
	b[p1] ^= 1;
	cr_assert_eq(record_payload_verify(&e, b, len), RECORD_E_FRAME_CHECK);
	b[p1] ^= 1;

	record_put32(b + frame_off(b, 0) + 24, 1); /* deltas 1,1,2: not dense */
	refresh_frame(b, 0);
	refresh_batch(b);
	record_env_fill(&e, b, (uint32_t)len);
	cr_assert_eq(record_payload_verify(&e, b, len), RECORD_E_FIELDS);
}

Test(record, a_non_messages_payload_that_disagrees_with_its_envelope_is_refused)
{
	// A BARRIER or CHANGE payload must match length and payload_check and carry message_count 0.
	const uint8_t conf[] = "conf";
	uint8_t copy[sizeof conf];
	struct record_env e = {.type = RECORD_CHANGE}, bad;
	record_env_fill(&e, conf, sizeof conf);
	memcpy(copy, conf, sizeof conf);

	cr_assert_eq(record_payload_verify(&e, conf, sizeof conf - 1), RECORD_E_LENGTH);
	copy[2] ^= 0x40;
	cr_assert_eq(record_payload_verify(&e, copy, sizeof copy), RECORD_E_PAYLOAD_CHECK);
	bad = e;
	bad.payload_check++;
	cr_assert_eq(record_payload_verify(&bad, conf, sizeof conf), RECORD_E_PAYLOAD_CHECK);
	bad = e;
	bad.message_count = 1;
	cr_assert_eq(record_payload_verify(&bad, conf, sizeof conf), RECORD_E_COUNT);
	bad = e;
	bad.type = 0;
	cr_assert_eq(record_payload_verify(&bad, conf, sizeof conf), RECORD_E_TYPE);

	struct record_env big = {.type = RECORD_CHANGE, .length = RECORD_MAX_PAYLOAD + 1};
	cr_assert_eq(record_payload_verify(&big, conf, (size_t)RECORD_MAX_PAYLOAD + 1), RECORD_E_LENGTH);

	struct record_env m = {.type = RECORD_MESSAGES};
	record_env_fill(&m, conf, sizeof conf); /* too short to be a batch */
	cr_assert_eq(record_payload_verify(&m, conf, sizeof conf), RECORD_E_SHORT);
}

/* ---- batch_verify ---- */

Test(record, a_built_batch_verifies_and_carries_the_producer_fields)
{
	// batch_build lays out ids 1..n, deltas 0..n-1 and the given origin, and the result verifies.
	uint8_t b[1024];
	size_t len = build_n(b, sizeof b, 8);
	struct batch_hdr bh;
	batch_hdr_decode(b, &bh);
	cr_assert_eq(bh.partition_id, 0u);
	cr_assert_eq(bh.base_offset, 0u);
	cr_assert_eq(bh.base_timestamp, 0u);
	cr_assert_eq(bh.origin_timestamp, 1700000000000000ull);
	cr_assert_eq(bh.batch_length, len);
	cr_assert_eq(bh.message_count, 8u);
	cr_assert_eq(bh.batch_checksum, batch_checksum(b));
	for (uint32_t i = 0; i < 8; i++) {
		struct batch_frame_hdr fh;
		batch_frame_hdr_decode(b + frame_off(b, i), &fh);
		cr_assert_eq(record_le64(fh.id), i + 1u);
		cr_assert_eq(record_le64(fh.id + 8), 0u);
		cr_assert_eq(fh.offset_delta, i);
		cr_assert_eq(fh.timestamp_delta, 0u);
		cr_assert_eq(fh.reserved, 0u);
		cr_assert_eq(fh.user_headers_length, i % 2 ? fh.user_headers_length : 0u);
	}
	cr_assert_eq(frame_off(b, 8), len);
	cr_assert_eq(verify_exact(b, len, true), RECORD_OK);
	cr_assert_eq(verify_exact(b, len, false), RECORD_OK);
}

Test(record, building_a_batch_that_does_not_fit_returns_zero)
{
	// batch_build returns 0 for every capacity below the batch size, and for zero messages.
	uint8_t b[1024];
	const void *p[4] = {"a", "bb", "", "dddddddd"};
	const uint32_t pl[4] = {1, 2, 0, 8};
	const size_t len = 256u + 4 * 48 + 11;
	for (size_t cap = 0; cap < len; cap++) {
		uint8_t *out = malloc(cap ? cap : 1);
		cr_assert_eq(batch_build(out, cap, 4, p, pl, NULL, NULL, 0), 0u, "cap %zu", cap);
		free(out);
	}
	cr_assert_eq(batch_build(b, sizeof b, 4, p, pl, NULL, NULL, 0), len);
	cr_assert_eq(batch_build(b, len, 4, p, pl, NULL, NULL, 0), len);
	cr_assert_eq(batch_build(b, sizeof b, 0, p, pl, NULL, NULL, 0), 0u);
}

Test(record, every_single_bit_flip_in_a_batch_is_detected)
{
	// Flipping any one bit of a valid batch makes batch_verify fail, with or without dense deltas.
	uint8_t good[1024];
	size_t len = build_n(good, sizeof good, 4);
	uint8_t *b = malloc(len);
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(b, good, len);
			b[i] ^= (uint8_t)(1u << bit);
			int dense = batch_verify(b, len, true);
			int loose = batch_verify(b, len, false);
			cr_assert_lt(dense, 0, "byte %zu bit %d", i, bit);
			cr_assert_lt(loose, 0, "byte %zu bit %d", i, bit);
			cr_assert_str_neq(record_strerror(loose), "unknown record error");
		}
	free(b);
}

Test(record, a_batch_truncated_at_any_length_is_refused)
{
	// Every proper prefix of a valid batch fails, also when batch_length and the batch checksum are fixed up.
	uint8_t good[1024], tmp[1024];
	size_t len = build_n(good, sizeof good, 5);
	for (size_t cut = 0; cut < len; cut++) {
		cr_assert_lt(verify_exact(good, cut, true), 0, "cut %zu", cut);
		cr_assert_lt(verify_exact(good, cut, false), 0, "cut %zu", cut);
		if (cut < BATCH_HEADER_SIZE) {
			cr_assert_eq(verify_exact(good, cut, false), RECORD_E_SHORT);
			continue;
		}
		memcpy(tmp, good, cut);
		record_put64(tmp + 32, cut);
		cr_assert_lt(verify_exact(tmp, cut, false), 0, "fixed-up cut %zu", cut);
	}
	cr_assert_eq(batch_verify(NULL, 0, true), RECORD_E_SHORT);
}

Test(record, a_batch_with_trailing_bytes_is_refused)
{
	// Bytes after the last frame fail, whether batch_length counts them or not.
	uint8_t good[1024], tmp[1200];
	size_t len = build_n(good, sizeof good, 3);
	for (size_t extra = 1; extra <= 100; extra++) {
		memset(tmp, 0, sizeof tmp);
		memcpy(tmp, good, len);
		cr_assert_eq(verify_exact(tmp, len + extra, true), RECORD_E_LENGTH, "extra %zu", extra);
		record_put64(tmp + 32, len + extra);
		refresh_batch(tmp);
		int rc = verify_exact(tmp, len + extra, true);
		cr_assert(rc == RECORD_E_LENGTH || rc == RECORD_E_COUNT, "extra %zu: %d", extra, rc);
	}
}

Test(record, a_batch_with_nonzero_reserved_bytes_is_refused)
{
	// Any nonzero byte in batch header bytes 52..255 or in a frame's reserved u64 gives RECORD_E_RESERVED.
	uint8_t good[1024], b[1024];
	size_t len = build_n(good, sizeof good, 3);
	for (size_t i = 52; i < BATCH_HEADER_SIZE; i++) {
		memcpy(b, good, len);
		b[i] = 0x80;
		cr_assert_eq(verify_exact(b, len, true), RECORD_E_RESERVED, "byte %zu", i);
	}
	for (uint32_t f = 0; f < 3; f++)
		for (size_t i = 40; i < 48; i++) {
			memcpy(b, good, len);
			b[frame_off(b, f) + i] = 1;
			refresh_frame(b, f);
			refresh_batch(b);
			cr_assert_eq(verify_exact(b, len, false), RECORD_E_RESERVED, "frame %u byte %zu", f, i);
		}
}

Test(record, a_batch_with_a_zero_or_wrong_message_count_is_refused)
{
	// message_count 0, or one more or one fewer than the frames, gives RECORD_E_COUNT even with a fixed checksum.
	uint8_t good[1024], b[1024];
	size_t len = build_n(good, sizeof good, 3);
	const uint32_t counts[] = {0, 1, 2, 4, 1000, UINT32_MAX};
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		memcpy(b, good, len);
		record_put32(b + 48, counts[i]);
		refresh_batch(b);
		cr_assert_eq(verify_exact(b, len, false), RECORD_E_COUNT, "count %u", counts[i]);
	}
}

Test(record, a_batch_with_non_dense_offset_deltas_is_refused_only_when_density_is_required)
{
	// Deltas other than 0,1,2,... fail with require_dense (RECORD_E_FIELDS) and pass without it.
	uint8_t good[1024], b[1024];
	size_t len = build_n(good, sizeof good, 3);
	const uint32_t cases[][3] = {{1, 2, 3}, {1, 0, 2}, {0, 2, 1}, {0, 1, 1}, {0, 0, 0}, {5, 9, UINT32_MAX}};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		memcpy(b, good, len);
		for (uint32_t f = 0; f < 3; f++) {
			record_put32(b + frame_off(b, f) + 24, cases[c][f]);
			refresh_frame(b, f);
		}
		refresh_batch(b);
		cr_assert_eq(verify_exact(b, len, true), RECORD_E_FIELDS, "case %zu", c);
		cr_assert_eq(verify_exact(b, len, false), RECORD_OK, "case %zu", c);
	}
}

Test(record, frame_lengths_that_overflow_or_overrun_the_batch_are_refused)
{
	// Huge payload and header lengths (their sum up to 2^33) never wrap or read past the batch.
	uint8_t good[1024], b[1024];
	size_t len = build_n(good, sizeof good, 2);
	const uint32_t lens[][2] = {{UINT32_MAX, UINT32_MAX}, {UINT32_MAX, 0}, {0, UINT32_MAX},
				    {UINT32_MAX - 47, 48},   {1000, 0},       {0, 1000}};
	for (size_t c = 0; c < sizeof lens / sizeof lens[0]; c++)
		for (uint32_t f = 0; f < 2; f++) {
			memcpy(b, good, len);
			size_t o = frame_off(b, f);
			record_put32(b + o + 36, lens[c][0]);
			record_put32(b + o + 32, lens[c][1]);
			cr_assert_eq(verify_exact(b, len, false), RECORD_E_LENGTH, "case %zu frame %u", c, f);
			uint8_t hdr[BATCH_HEADER_SIZE];
			size_t off, flen;
			uint8_t *copy = exact_copy(b, len);
			cr_assert_eq(batch_slice(copy, len, 0, 1, hdr, &off, &flen), RECORD_E_LENGTH);
			free(copy);
		}
}

Test(record, stamping_keeps_a_batch_valid_and_changes_its_checksum)
{
	// Stamping writes partition, base_offset and base_timestamp and leaves a batch that verifies.
	uint8_t b[1024];
	size_t len = build_n(b, sizeof b, 3);
	uint64_t before = record_le64(b + 40);
	batch_stamp(b, UINT64_MAX, 1ull << 40, 1700000000123456ull);
	cr_assert_neq(record_le64(b + 40), before);
	cr_assert_eq(record_le64(b + 0), UINT64_MAX);
	cr_assert_eq(record_le64(b + 8), 1ull << 40);
	cr_assert_eq(record_le64(b + 16), 1700000000123456ull);
	cr_assert_eq(verify_exact(b, len, true), RECORD_OK);
	batch_stamp(b, 0, 0, 0);
	cr_assert_eq(record_le64(b + 40), before);
}

/* ---- batch_slice ---- */

Test(record, every_slice_of_a_five_message_batch_is_a_valid_batch)
{
	// Each [first, first+count) slice gives a header and frame range that verify (deltas kept) with base_offset kept.
	uint8_t b[1024];
	size_t len = build_n(b, sizeof b, 5);
	batch_stamp(b, 2, 1000, 555);
	for (uint32_t first = 0; first < 5; first++)
		for (uint32_t count = 1; first + count <= 5; count++) {
			uint8_t hdr[BATCH_HEADER_SIZE];
			size_t off = 0, flen = 0;
			cr_assert_eq(batch_slice(b, len, first, count, hdr, &off, &flen), RECORD_OK);
			cr_assert_eq(off, frame_off(b, first));
			cr_assert_eq(off + flen, frame_off(b, first + count));

			size_t slen = BATCH_HEADER_SIZE + flen;
			uint8_t *s = malloc(slen);
			memcpy(s, hdr, BATCH_HEADER_SIZE);
			memcpy(s + BATCH_HEADER_SIZE, b + off, flen);
			struct batch_hdr sh;
			batch_hdr_decode(s, &sh);
			cr_assert_eq(sh.partition_id, 2u);
			cr_assert_eq(sh.base_offset, 1000u);
			cr_assert_eq(sh.base_timestamp, 555u);
			cr_assert_eq(sh.origin_timestamp, 1700000000000000ull);
			cr_assert_eq(sh.message_count, count);
			cr_assert_eq(sh.batch_length, slen);
			cr_assert_eq(batch_verify(s, slen, false), RECORD_OK, "first %u count %u", first, count);
			cr_assert_eq(batch_verify(s, slen, true), first == 0 ? RECORD_OK : RECORD_E_FIELDS);
			struct batch_frame_hdr fh;
			batch_frame_hdr_decode(s + BATCH_HEADER_SIZE, &fh);
			cr_assert_eq(fh.offset_delta, first);
			free(s);
		}
}

Test(record, slicing_the_whole_batch_reproduces_its_header)
{
	// The slice [0, n) has exactly the original header, and slicing may write over the batch's own header.
	uint8_t b[1024], orig[BATCH_HEADER_SIZE], hdr[BATCH_HEADER_SIZE];
	size_t len = build_n(b, sizeof b, 4), off, flen;
	batch_stamp(b, 1, 2, 3);
	memcpy(orig, b, sizeof orig);
	cr_assert_eq(batch_slice(b, len, 0, 4, hdr, &off, &flen), RECORD_OK);
	cr_assert_arr_eq(hdr, orig, sizeof orig);
	cr_assert_eq(off, (size_t)BATCH_HEADER_SIZE);
	cr_assert_eq(flen, len - BATCH_HEADER_SIZE);

	cr_assert_eq(batch_slice(b, len, 0, 2, b, &off, &flen), RECORD_OK);
	cr_assert_eq(batch_verify(b, BATCH_HEADER_SIZE + flen, true), RECORD_OK);
}

Test(record, out_of_range_or_malformed_slices_are_refused)
{
	// Empty ranges, ranges past the last message (also ones whose end overflows u32) and malformed batches fail.
	uint8_t b[1024], hdr[BATCH_HEADER_SIZE];
	size_t len = build_n(b, sizeof b, 5), off, flen;
	const uint32_t ranges[][2] = {{0, 0}, {5, 1}, {3, 3}, {0, 6}, {4, 2}, {UINT32_MAX, 2}, {1, UINT32_MAX}};
	for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
		cr_assert_eq(batch_slice(b, len, ranges[i][0], ranges[i][1], hdr, &off, &flen), RECORD_E_COUNT,
			     "range %zu", i);
	cr_assert_eq(batch_slice(b, len - 1, 0, 1, hdr, &off, &flen), RECORD_E_LENGTH);
	cr_assert_eq(batch_slice(b, 100, 0, 1, hdr, &off, &flen), RECORD_E_SHORT);
	record_put32(b + 48, 6);
	cr_assert_eq(batch_slice(b, len, 0, 1, hdr, &off, &flen), RECORD_E_COUNT);
	record_put32(b + 48, 4);
	cr_assert_eq(batch_slice(b, len, 0, 1, hdr, &off, &flen), RECORD_E_COUNT);
	record_put32(b + 48, 5);
	b[100] = 1;
	cr_assert_eq(batch_slice(b, len, 0, 1, hdr, &off, &flen), RECORD_E_RESERVED);
}

/* ---- record_strerror ---- */

Test(record, every_error_has_its_own_description)
{
	// record_strerror gives a distinct text for each code and a fallback for unknown codes.
	for (int a = RECORD_E_FIELDS; a <= RECORD_OK; a++) {
		cr_assert_str_neq(record_strerror(a), "unknown record error");
		for (int c = a + 1; c <= RECORD_OK; c++)
			cr_assert_str_neq(record_strerror(a), record_strerror(c));
	}
	cr_assert_str_eq(record_strerror(-100), "unknown record error");
	cr_assert_str_eq(record_strerror(1), "unknown record error");
}
