/*
 * Unit tests of proto/: the status-code table (codes unique, names and texts present, Iggy's spelling of
 * the names), and each reply structure's encoder and decoder (a round trip gives back what went in; every
 * truncation of an encoding is refused).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/errors.h"

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
