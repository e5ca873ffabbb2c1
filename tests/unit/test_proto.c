/*
 * Unit tests of proto/: the status-code table (codes unique, names and texts present, Iggy's spelling of
 * the names), the message batch's seal and walk (the rest of batch.c is tested through partition/record in
 * test_record.c).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/batch.h"
#include "proto/errors.h"
#include "proto/frame.h"
#include "proto/wire.h"

/* ---- Status codes ---- */

Test(errors, codes_unique_and_named)
{
	size_t n;
	const struct proto_error *t = proto_error_table(&n);
	cr_assert_gt(n, 50);
	for (size_t i = 0; i < n; i++) {
		cr_assert_neq(t[i].code, 0);
		cr_assert(t[i].name != NULL && t[i].name[0] != '\0', "code %u has no name", t[i].code);
		cr_assert(t[i].reason != NULL && t[i].reason[0] != '\0', "code %u has no text", t[i].code);
		for (size_t k = i + 1; k < n; k++) {
			cr_assert_neq(t[i].code, t[k].code, "code %u twice", t[i].code);
			cr_assert_str_neq(t[i].name, t[k].name, "name %s twice", t[i].name);
		}
		cr_assert_eq(proto_error_find(t[i].code), &t[i]);
	}
}

Test(errors, iggy_names)
{
	cr_assert_str_eq(proto_error_name(PROTO_E_TRANSIENT_NOT_ACCEPTED), "TransientNotAccepted");
	cr_assert_str_eq(proto_error_name(58), "TransientNotAccepted");
	cr_assert_str_eq(proto_error_name(1009), "StreamIdNotFound");
	cr_assert_str_eq(proto_error_name(14003), "IncompatibleProtocolVersion");
	cr_assert_str_eq(proto_error_name(10058), "NotLeader");
	cr_assert_str_eq(proto_error_name(10063), "NoLiveMajority");
	for (uint32_t c = 10060; c <= 10063; c++)
		cr_assert_not_null(proto_error_name(c));
}

Test(errors, unknown_code)
{
	char buf[8] = "x";
	cr_assert_null(proto_error_find(0));
	cr_assert_null(proto_error_name(0));
	cr_assert_null(proto_error_name(2));     /* InvalidConfiguration: never on Galgo's wire */
	cr_assert_null(proto_error_name(60000));
	cr_assert_null(proto_error_name(UINT32_MAX));
	cr_assert_not(proto_error_snake(60000, buf, sizeof(buf)));
	cr_assert_str_eq(buf, "x");
}

Test(errors, snake_case)
{
	char buf[64];
	cr_assert(proto_error_snake(PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND, buf, sizeof(buf)));
	cr_assert_str_eq(buf, "consumer_group_id_not_found");
	cr_assert(proto_error_snake(PROTO_E_ERROR, buf, sizeof(buf)));
	cr_assert_str_eq(buf, "error");
	cr_assert(proto_error_snake(PROTO_E_PERSONAL_ACCESS_TOKENS_LIMIT_REACHED, buf, sizeof(buf)));
	cr_assert_str_eq(buf, "personal_access_tokens_limit_reached");
	/* Truncated, still terminated. */
	cr_assert(proto_error_snake(PROTO_E_TRANSIENT_NOT_ACCEPTED, buf, 10));
	cr_assert_str_eq(buf, "transient");
	cr_assert(proto_error_snake(PROTO_E_TRANSIENT_NOT_ACCEPTED, buf, 11));
	cr_assert_str_eq(buf, "transient_");
	cr_assert_not(proto_error_snake(PROTO_E_ERROR, buf, 0));
}

/* ---- Batches ---- */

static size_t build3(uint8_t *out, size_t cap)
{
	const void *pl[3] = {"a", "bb", "ccc"};
	const uint32_t lens[3] = {1, 2, 3};
	const void *hd[3] = {NULL, "hh", NULL};
	const uint32_t hlens[3] = {0, 2, 0};
	return batch_build(out, cap, 3, pl, lens, hd, hlens, 1000);
}

Test(batch, seal_gives_what_build_gives)
{
	uint8_t a[512], b[512];
	size_t n = build3(a, sizeof(a));
	cr_assert_gt(n, 0);
	cr_assert_eq(batch_verify(a, n, true), BATCH_OK);
	memcpy(b, a, n);
	memset(b + 40, 0, 8);                     /* batch checksum */
	memset(b + BATCH_HEADER_SIZE, 0, 8);      /* first frame checksum */
	cr_assert_neq(batch_verify(b, n, true), BATCH_OK);
	batch_seal(b);
	cr_assert_eq(memcmp(a, b, n), 0);
}

Test(batch, walk_two_batches)
{
	uint8_t buf[1024];
	size_t n1 = build3(buf, sizeof(buf));
	batch_stamp(buf, 0, 10, 5000);
	size_t n2 = build3(buf + n1, sizeof(buf) - n1);
	batch_stamp(buf + n1, 0, 13, 6000);
	struct batch_iter it;
	struct batch_msg m;
	batch_iter_init(&it, buf, n1 + n2);
	for (uint64_t i = 0; i < 6; i++) {
		cr_assert_eq(batch_iter_next(&it, &m), 1);
		cr_assert_eq(m.offset, 10 + i);
		cr_assert_eq(m.timestamp, i < 3 ? 5000u : 6000u);
		cr_assert_eq(m.origin_timestamp, 1000);
		cr_assert_eq(m.payload_len, i % 3 + 1);
		cr_assert_eq(m.headers_len, i % 3 == 1 ? 2u : 0u);
		cr_assert_eq(m.headers == NULL, i % 3 != 1);
		cr_assert_eq(frame_le64(m.id), i % 3 + 1);
	}
	cr_assert_eq(batch_iter_next(&it, &m), 0);
	cr_assert_eq(batch_iter_next(&it, &m), 0);
	cr_assert_eq(it.seen, 6);
}

Test(batch, walk_refuses_every_truncation)
{
	uint8_t buf[512];
	size_t n = build3(buf, sizeof(buf));
	for (size_t cut = 1; cut < n; cut++) {
		struct batch_iter it;
		struct batch_msg m;
		int rc;
		batch_iter_init(&it, buf, cut);
		while ((rc = batch_iter_next(&it, &m)) > 0)
			;
		cr_assert_lt(rc, 0, "truncated to %zu bytes", cut);
		cr_assert_eq(batch_iter_next(&it, &m), rc); /* the error sticks */
	}
	struct batch_iter it;
	struct batch_msg m;
	batch_iter_init(&it, NULL, 0);
	cr_assert_eq(batch_iter_next(&it, &m), 0); /* no batches at all: an empty poll */
}

Test(batch, walk_refuses_bad_layout)
{
	uint8_t buf[512];
	struct batch_iter it;
	struct batch_msg m;
	size_t n = build3(buf, sizeof(buf));
	buf[100] = 1; /* a reserved header byte */
	batch_iter_init(&it, buf, n);
	cr_assert_eq(batch_iter_next(&it, &m), BATCH_E_RESERVED);
	n = build3(buf, sizeof(buf));
	frame_put32(buf + 48, 2); /* message_count below the frames present */
	batch_iter_init(&it, buf, n);
	cr_assert_eq(batch_iter_next(&it, &m), 1);
	cr_assert_eq(batch_iter_next(&it, &m), 1);
	cr_assert_eq(batch_iter_next(&it, &m), BATCH_E_COUNT);
	n = build3(buf, sizeof(buf));
	frame_put32(buf + 48, 0);
	batch_iter_init(&it, buf, n);
	cr_assert_eq(batch_iter_next(&it, &m), BATCH_E_COUNT);
}
