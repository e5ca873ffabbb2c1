/*
 * Unit tests of proto/frame and proto/wire: the golden frames of the protocol reference (§10 and
 * the bytes captured from the Node SDK in §12), every request validation rule, replies, evictions, the
 * result section, the command table, and the payload primitives (round trips, rejections, truncation).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/wire.h"

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;
	for (const char *p = hex; *p;) {
		if (*p == ' ') {
			p++;
			continue;
		}
		unsigned v;
		cr_assert_eq(sscanf(p, "%2x", &v), 1);
		cr_assert_lt(n, cap);
		out[n++] = (uint8_t)v;
		p += 2;
	}
	return n;
}

/* Sets the bytes of `hex` at offset `off` of a header. */
static void set_at(uint8_t *hdr, size_t off, const char *hex)
{
	unhex(hex, hdr + off, FRAME_HEADER_SIZE - off);
}

/* The client id of §12 (captured from the Node SDK). */
#define NODE_CLIENT_HEX "f5 73 3c cc 26 95 e6 ba ad 53 dc ba 78 6b 3a 69"

/* The Register body of §12 6.1 (41 bytes). */
static const char register_body_hex[] = "00 2c 00 00 08 6e 6f 64 65 2d 73 64 6b 0d 30 2e 31 30 2e 30 2d 65 64 67 65 "
					 "2e 34 04 69 67 67 79 04 69 67 67 79 00 00 00 00";

/* A valid request header to break one rule at a time: CreateStream, session 1, request 1. */
static struct frame_request valid_request(void)
{
	return (struct frame_request){
		.size = 300,
		.client = {.lo = 0x1122334455667788ull, .hi = 0x99},
		.request = 1,
		.operation = FRAME_OP_CREATE_STREAM,
		.session = 1,
	};
}

static int decode_of(const struct frame_request *r)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	struct frame_request out;
	frame_request_encode(hdr, r);
	return frame_request_decode(hdr, &out);
}

/* ---- Golden frames ---- */

Test(frame, the_ping_before_login_of_section_10_decodes_and_encodes_byte_for_byte)
{
	// §10's ping (client 0x0123456789abcdeffedcba9876543210, request 1, session 0, code 1) decodes to its fields and re-encodes identically.
	uint8_t hdr[FRAME_HEADER_SIZE] = {0};
	set_at(hdr, 48, "00 01 00 00");
	set_at(hdr, 60, "05");
	set_at(hdr, 128, "10 32 54 76 98 ba dc fe ef cd ab 89 67 45 23 01");
	set_at(hdr, 168, "01 00 00 00 00 00 00 00");
	set_at(hdr, 176, "02");
	set_at(hdr, 196, "01 00 00 00");

	struct frame_request req;
	cr_assert_eq(frame_request_decode(hdr, &req), FRAME_OK);
	cr_assert_eq(req.size, 256);
	cr_assert_eq(req.client.lo, 0xfedcba9876543210ull);
	cr_assert_eq(req.client.hi, 0x0123456789abcdefull);
	cr_assert_eq(req.request, 1);
	cr_assert_eq(req.operation, FRAME_OP_NON_REPLICATED);
	cr_assert_eq(req.session, 0);
	cr_assert_eq(req.code, FRAME_CODE_PING);
	cr_assert(frame_u128_is_zero(req.request_checksum));

	uint8_t again[FRAME_HEADER_SIZE];
	frame_request_encode(again, &req);
	cr_assert_arr_eq(again, hdr, FRAME_HEADER_SIZE);
}

Test(frame, the_reply_to_the_ping_of_section_10_has_the_reference_layout)
{
	// The reply to §10's ping is 256 bytes: size 256, command 8, the client at 160, request 1 at 200, operation 2 at 208, status 0, zero elsewhere.
	struct frame_request req = {.size = 256,
				    .client = {.lo = 0xfedcba9876543210ull, .hi = 0x0123456789abcdefull},
				    .request = 1,
				    .operation = FRAME_OP_NON_REPLICATED,
				    .code = FRAME_CODE_PING};
	uint8_t rep[FRAME_HEADER_SIZE], want[FRAME_HEADER_SIZE] = {0};
	cr_assert_eq(frame_reply_encode(rep, &req, 0, 0), 0);
	set_at(want, 48, "00 01 00 00");
	set_at(want, 60, "08");
	set_at(want, 160, "10 32 54 76 98 ba dc fe ef cd ab 89 67 45 23 01");
	set_at(want, 200, "01");
	set_at(want, 208, "02");
	cr_assert_arr_eq(rep, want, FRAME_HEADER_SIZE);

	struct frame_reply back;
	cr_assert_eq(frame_reply_decode(rep, &back), FRAME_OK);
	cr_assert_eq(back.size, 256);
	cr_assert_eq(back.request, 1);
	cr_assert_eq(back.operation, FRAME_OP_NON_REPLICATED);
	cr_assert_eq(back.status, 0);
	cr_assert(frame_u128_eq(back.client, req.client));
}

Test(frame, the_ping_the_node_sdk_sent_before_login_decodes)
{
	// §12 6.2: the Node SDK's ping has size 256, command 5, its client id, request 1, operation 2, session 0 and code 1.
	uint8_t hdr[FRAME_HEADER_SIZE] = {0};
	set_at(hdr, 49, "01");
	set_at(hdr, 60, "05");
	set_at(hdr, 128, NODE_CLIENT_HEX);
	set_at(hdr, 168, "01");
	set_at(hdr, 176, "02");
	set_at(hdr, 196, "01");
	struct frame_request req;
	cr_assert_eq(frame_request_decode(hdr, &req), FRAME_OK);
	cr_assert_eq(req.size, 256);
	cr_assert_eq(req.client.lo, 0xbae69526cc3c73f5ull);
	cr_assert_eq(req.client.hi, 0x693a6b78badc53adull);
	cr_assert_eq(req.request, 1);
	cr_assert_eq(req.session, 0);
	cr_assert_eq(req.code, FRAME_CODE_PING);
	cr_assert_eq(frame_code_to_op(req.code), FRAME_OP_NON_REPLICATED);
}

Test(frame, the_register_request_the_node_sdk_sent_decodes_with_its_body)
{
	// §12 6.1: the header decodes to size 297, Register, request 0, session 0, no checksum; the body to 0.11.0, "node-sdk", "0.10.0-edge.4", iggy/iggy, empty context.
	uint8_t hdr[FRAME_HEADER_SIZE] = {0}, body[64];
	set_at(hdr, 48, "29 01");
	set_at(hdr, 60, "05");
	set_at(hdr, 128, NODE_CLIENT_HEX);
	set_at(hdr, 176, "01");
	size_t len = unhex(register_body_hex, body, sizeof body);
	cr_assert_eq(len, 41);

	struct frame_request req;
	cr_assert_eq(frame_request_decode(hdr, &req), FRAME_OK);
	cr_assert_eq(req.size, 297);
	cr_assert_eq(req.size - FRAME_HEADER_SIZE, len);
	cr_assert_eq(req.operation, FRAME_OP_REGISTER);
	cr_assert_eq(req.request, 0);
	cr_assert_eq(req.session, 0);
	cr_assert_eq(req.code, 0);
	cr_assert(frame_u128_is_zero(req.request_checksum));
	cr_assert_eq(frame_request_checksum_verify(&req, body, len), FRAME_OK);
	cr_assert_eq(frame_op_to_code(req.operation), FRAME_CODE_LOGIN_REGISTER);

	struct wire_rd r;
	struct wire_version_info vi;
	struct wire_str user, pass, ctx;
	wire_rd_init(&r, body, len);
	cr_assert_eq(wire_get_version_info(&r, &vi), 0);
	cr_assert_eq(wire_get_name(&r, &user), 0);
	cr_assert_eq(wire_get_str8(&r, &pass), 0);
	cr_assert_eq(wire_get_str32(&r, &ctx), 0);
	cr_assert_eq(wire_rd_done(&r), 0);
	cr_assert_eq(vi.protocol_version, FRAME_PROTOCOL_VERSION);
	cr_assert(wire_str_eq(vi.sdk_name, "node-sdk"));
	cr_assert(wire_str_eq(vi.sdk_version, "0.10.0-edge.4"));
	cr_assert(wire_str_eq(user, "iggy"));
	cr_assert(wire_str_eq(pass, "iggy"));
	cr_assert_eq(ctx.len, 0);
	cr_assert(frame_version_accepts(vi.protocol_version, FRAME_PROTOCOL_VERSION, true));
}

Test(frame, stamping_the_register_body_gives_the_checksum_the_rust_sdk_would_send)
{
	// XXH3-64 of §12 6.1's body is 0x2643cd28bfebec72; stamped, it verifies, and any other value is a mismatch.
	uint8_t body[64];
	size_t len = unhex(register_body_hex, body, sizeof body);
	cr_assert_eq(frame_body_checksum(body, len), 0x2643cd28bfebec72ull);

	struct frame_request req = {.size = (uint32_t)(FRAME_HEADER_SIZE + len), .client = {1, 0}, .operation = 1};
	frame_request_stamp(&req, body, len);
	cr_assert_eq(req.request_checksum.lo, 0x2643cd28bfebec72ull);
	cr_assert_eq(req.request_checksum.hi, 0);
	cr_assert_eq(frame_request_checksum_verify(&req, body, len), FRAME_OK);

	uint8_t hdr[FRAME_HEADER_SIZE];
	frame_request_encode(hdr, &req);
	cr_assert_eq(frame_le64(hdr + 144), 0x2643cd28bfebec72ull);
	cr_assert_eq(frame_le64(hdr + 152), 0);

	req.request_checksum.lo ^= 1;
	cr_assert_eq(frame_request_checksum_verify(&req, body, len), FRAME_E_CHECKSUM);
	req.request_checksum.lo ^= 1;
	req.request_checksum.hi = 1;
	cr_assert_eq(frame_request_checksum_verify(&req, body, len), FRAME_E_CHECKSUM);
	body[0] ^= 1;
	req.request_checksum.hi = 0;
	cr_assert_eq(frame_request_checksum_verify(&req, body, len), FRAME_E_CHECKSUM);
}

Test(frame, the_rust_sdk_register_body_of_section_10_has_the_reference_checksum)
{
	// §10: the 41-byte body of "rust-sdk" 0.11.0-edge.2 with iggy/iggy hashes to 0x9d136172a64af238.
	uint8_t body[64];
	size_t len = unhex("00 2c 00 00 08 72 75 73 74 2d 73 64 6b 0d 30 2e 31 31 2e 30 2d 65 64 67 65 2e 32 "
			   "04 69 67 67 79 04 69 67 67 79 00 00 00 00",
			   body, sizeof body);
	cr_assert_eq(len, 41);
	cr_assert_eq(frame_body_checksum(body, len), 0x9d136172a64af238ull);
}

Test(frame, the_register_reply_the_node_sdk_accepted_is_reproduced_byte_for_byte)
{
	// §12 6.1's reply: writing its fields (op 1, commit 1 informational) gives the captured header; its body splits into user 0, session 1, 0x2c00, "0.9.0-edge.5".
	uint8_t want[FRAME_HEADER_SIZE] = {0}, hdr[FRAME_HEADER_SIZE], body[64], client[16];
	set_at(want, 48, "21 01");
	set_at(want, 60, "08");
	set_at(want, 160, NODE_CLIENT_HEX " 01");
	set_at(want, 184, "01");
	set_at(want, 208, "01");
	unhex(NODE_CLIENT_HEX, client, sizeof client);
	size_t len = unhex("00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 2c 00 00 0c 30 2e 39 2e 30 2d 65 64 "
			   "67 65 2e 35",
			   body, sizeof body);
	cr_assert_eq(len, 33);

	struct frame_reply rep = {.size = (uint32_t)(FRAME_HEADER_SIZE + len),
				  .client = {frame_le64(client), frame_le64(client + 8)},
				  .op = 1,
				  .commit = 1,
				  .operation = FRAME_OP_REGISTER};
	cr_assert_eq(frame_reply_write(hdr, &rep), 0);
	cr_assert_arr_eq(hdr, want, FRAME_HEADER_SIZE);

	struct frame_reply back;
	cr_assert_eq(frame_reply_decode(want, &back), FRAME_OK);
	cr_assert_eq(back.size, 289);
	cr_assert_eq(back.op, 1);
	cr_assert_eq(back.commit, 1);
	cr_assert(frame_op_is_result_framed(back.operation, true));

	uint32_t error;
	size_t off;
	cr_assert_eq(frame_result_split(body, len, &error, &off), FRAME_OK);
	cr_assert_eq(error, 0);
	cr_assert_eq(off, 4);
	struct wire_rd r;
	struct wire_str version;
	wire_rd_init(&r, body + off, len - off);
	cr_assert_eq(wire_get_u32(&r), 0);
	cr_assert_eq(wire_get_u64(&r), 1);
	cr_assert_eq(wire_get_u32(&r), FRAME_PROTOCOL_VERSION);
	cr_assert_eq(wire_get_name(&r, &version), 0);
	cr_assert_eq(wire_rd_done(&r), 0);
	cr_assert(wire_str_eq(version, "0.9.0-edge.5"));
}

Test(frame, a_reply_echoes_the_request_and_counts_its_body)
{
	// A reply encoded for a request echoes request_checksum, client, timestamp, request and operation, with size 256 + body and the status at 216.
	struct frame_request req = valid_request();
	req.request_checksum = (struct frame_u128){0xaaaa, 0};
	req.timestamp = 0x0102030405060708ull;
	req.request = 77;
	uint8_t hdr[FRAME_HEADER_SIZE];
	cr_assert_eq(frame_reply_encode(hdr, &req, 12, 1012), 0);
	cr_assert_eq(frame_le32(hdr + 48), 268);
	cr_assert_eq(hdr[60], FRAME_CMD_REPLY);
	cr_assert_eq(frame_le64(hdr + 128), 0xaaaa);
	cr_assert_eq(frame_le64(hdr + 160), req.client.lo);
	cr_assert_eq(frame_le64(hdr + 168), req.client.hi);
	cr_assert_eq(frame_le64(hdr + 192), req.timestamp);
	cr_assert_eq(frame_le64(hdr + 200), 77);
	cr_assert_eq(hdr[208], FRAME_OP_CREATE_STREAM);
	cr_assert_eq(frame_le32(hdr + 216), 1012);
	for (size_t i = 0; i < 48; i++)
		cr_assert_eq(hdr[i], 0, "byte %zu", i);
	for (size_t i = 209; i < 216; i++)
		cr_assert_eq(hdr[i], 0, "byte %zu", i);
	for (size_t i = 220; i < 256; i++)
		cr_assert_eq(hdr[i], 0, "byte %zu", i);

	cr_assert_eq(frame_reply_encode(hdr, &req, FRAME_MAX_SIZE - FRAME_HEADER_SIZE, 0), 0);
	cr_assert_eq(frame_reply_encode(hdr, &req, FRAME_MAX_SIZE - FRAME_HEADER_SIZE + 1, 0), -EMSGSIZE);
	cr_assert_eq(frame_reply_encode(hdr, &req, UINT32_MAX, 0), -EMSGSIZE);
}

Test(frame, a_reply_decoder_refuses_what_an_sdk_would_refuse)
{
	// frame_reply_decode refuses a non-Reply command, a bad size, an undeclared operation and non-zero reserved bytes.
	struct frame_request req = valid_request();
	uint8_t hdr[FRAME_HEADER_SIZE];
	struct frame_reply rep;
	frame_reply_encode(hdr, &req, 0, 0);
	cr_assert_eq(frame_reply_decode(hdr, &rep), FRAME_OK);
	hdr[60] = FRAME_CMD_EVICTION;
	cr_assert_eq(frame_reply_decode(hdr, &rep), FRAME_E_COMMAND);
	hdr[60] = FRAME_CMD_REPLY;
	frame_put32(hdr + 48, 255);
	cr_assert_eq(frame_reply_decode(hdr, &rep), FRAME_E_SIZE_SMALL);
	frame_put32(hdr + 48, FRAME_MAX_SIZE + 1);
	cr_assert_eq(frame_reply_decode(hdr, &rep), FRAME_E_SIZE_LARGE);
	frame_put32(hdr + 48, 256);
	hdr[208] = 99;
	cr_assert_eq(frame_reply_decode(hdr, &rep), FRAME_E_OP_UNKNOWN);
	hdr[208] = 0;
	cr_assert_eq(frame_reply_decode(hdr, &rep), FRAME_E_OP_RESERVED);
	hdr[208] = FRAME_OP_TRUNCATE_PARTITION;
	cr_assert_eq(frame_reply_decode(hdr, &rep), FRAME_OK);
	hdr[230] = 1;
	cr_assert_eq(frame_reply_decode(hdr, &rep), FRAME_E_RESERVED);
}

/* ---- Request validation ---- */

Test(frame, a_request_with_another_command_is_not_a_request)
{
	// Command 8, 13 or 0 in a frame read as a request gives FRAME_E_COMMAND.
	uint8_t hdr[FRAME_HEADER_SIZE];
	struct frame_request r = valid_request(), out;
	frame_request_encode(hdr, &r);
	const uint8_t cmds[] = {0, 1, 4, 6, 8, 13, 255};
	for (size_t i = 0; i < sizeof cmds; i++) {
		hdr[60] = cmds[i];
		cr_assert_eq(frame_request_decode(hdr, &out), FRAME_E_COMMAND, "command %u", cmds[i]);
	}
}

Test(frame, a_request_size_must_be_between_256_and_64_mib)
{
	// Sizes 0 and 255 are too small, 64 MiB + 1 and 4 GiB - 1 too large; 256 and exactly 64 MiB are accepted.
	struct frame_request r = valid_request();
	r.size = 0;
	cr_assert_eq(decode_of(&r), FRAME_E_SIZE_SMALL);
	r.size = 255;
	cr_assert_eq(decode_of(&r), FRAME_E_SIZE_SMALL);
	r.size = 256;
	cr_assert_eq(decode_of(&r), FRAME_OK);
	r.size = FRAME_MAX_SIZE;
	cr_assert_eq(decode_of(&r), FRAME_OK);
	r.size = FRAME_MAX_SIZE + 1;
	cr_assert_eq(decode_of(&r), FRAME_E_SIZE_LARGE);
	r.size = UINT32_MAX;
	cr_assert_eq(decode_of(&r), FRAME_E_SIZE_LARGE);
}

Test(frame, a_request_needs_a_non_zero_client_id)
{
	// A zero client id is refused; a client id whose only set bit is in the high half is accepted.
	struct frame_request r = valid_request();
	r.client = (struct frame_u128){0, 0};
	cr_assert_eq(decode_of(&r), FRAME_E_CLIENT);
	r.client = (struct frame_u128){0, 1ull << 63};
	cr_assert_eq(decode_of(&r), FRAME_OK);
}

Test(frame, a_request_needs_a_declared_non_reserved_operation)
{
	// Operation 0 is FRAME_E_OP_RESERVED; bytes outside 1..3, 64..68, 128..149 and 160..162 are FRAME_E_OP_UNKNOWN.
	struct frame_request r = valid_request();
	r.operation = 0;
	cr_assert_eq(decode_of(&r), FRAME_E_OP_RESERVED);
	for (unsigned op = 1; op < 256; op++) {
		r.operation = (uint8_t)op;
		bool known = op <= 3 || (op >= 64 && op <= 68) || (op >= 128 && op <= 149) || (op >= 160 && op <= 162);
		if (op == FRAME_OP_REGISTER) {
			r.session = 0;
			r.request = 0;
		} else {
			r.session = 1;
			r.request = 1;
		}
		cr_assert_eq(frame_op_is_known((uint8_t)op), known, "op %u", op);
		cr_assert_eq(decode_of(&r), known ? FRAME_OK : FRAME_E_OP_UNKNOWN, "op %u", op);
	}
}

Test(frame, a_register_carries_neither_a_session_nor_a_request_number)
{
	// Register with session 0 and request 0 is valid; a session gives FRAME_E_REGISTER_SESSION, a request number FRAME_E_REGISTER_REQUEST.
	struct frame_request r = valid_request();
	r.operation = FRAME_OP_REGISTER;
	r.session = 0;
	r.request = 0;
	cr_assert_eq(decode_of(&r), FRAME_OK);
	r.session = 5;
	cr_assert_eq(decode_of(&r), FRAME_E_REGISTER_SESSION);
	r.session = 0;
	r.request = 1;
	cr_assert_eq(decode_of(&r), FRAME_E_REGISTER_REQUEST);
}

Test(frame, replicated_operations_need_a_session_and_a_request_number)
{
	// Logout, metadata and partition operations with session 0 give FRAME_E_SESSION and with request 0 FRAME_E_REQUEST.
	const uint8_t ops[] = {FRAME_OP_LOGOUT, FRAME_OP_CREATE_STREAM, FRAME_OP_LEAVE_CONSUMER_GROUP,
			       FRAME_OP_SEND_MESSAGES, FRAME_OP_STORE_CONSUMER_OFFSET, FRAME_OP_TRUNCATE_PARTITION};
	for (size_t i = 0; i < sizeof ops; i++) {
		struct frame_request r = valid_request();
		r.operation = ops[i];
		cr_assert_eq(decode_of(&r), FRAME_OK, "op %u", ops[i]);
		r.session = 0;
		cr_assert_eq(decode_of(&r), FRAME_E_SESSION, "op %u", ops[i]);
		r.session = 1;
		r.request = 0;
		cr_assert_eq(decode_of(&r), FRAME_E_REQUEST, "op %u", ops[i]);
	}
}

Test(frame, non_replicated_requests_are_exempt_from_the_session_rules)
{
	// A NonReplicated request is valid with session 0 and request 0 (a ping before login), or with both set.
	struct frame_request r = valid_request();
	r.operation = FRAME_OP_NON_REPLICATED;
	r.code = FRAME_CODE_GET_STREAMS;
	r.session = 0;
	r.request = 0;
	cr_assert_eq(decode_of(&r), FRAME_OK);
	r.session = 9;
	r.request = 9;
	cr_assert_eq(decode_of(&r), FRAME_OK);
}

Test(frame, reserved_and_padding_bytes_of_a_request_must_be_zero)
{
	// Any non-zero byte in reserved_frame (62..128), the operation padding (177..184) or the reserved tail (200..256) gives FRAME_E_RESERVED.
	struct frame_request r = valid_request();
	uint8_t hdr[FRAME_HEADER_SIZE];
	struct frame_request out;
	frame_request_encode(hdr, &r);
	for (size_t i = 0; i < FRAME_HEADER_SIZE; i++) {
		bool reserved = (i >= 62 && i < 128) || (i >= 177 && i < 184) || i >= 200;
		if (!reserved)
			continue;
		hdr[i] = 0x80;
		cr_assert_eq(frame_request_decode(hdr, &out), FRAME_E_RESERVED, "byte %zu", i);
		hdr[i] = 0;
	}
	cr_assert_eq(frame_request_decode(hdr, &out), FRAME_OK);
}

Test(frame, the_command_code_is_only_read_for_non_replicated_requests)
{
	// Bytes 196..200 carry the code of a NonReplicated request; set on a replicated one they give FRAME_E_CODE.
	struct frame_request r = valid_request(), out;
	uint8_t hdr[FRAME_HEADER_SIZE];
	frame_request_encode(hdr, &r);
	cr_assert_eq(frame_le32(hdr + 196), 0);
	for (size_t i = 196; i < 200; i++) {
		hdr[i] = 1;
		cr_assert_eq(frame_request_decode(hdr, &out), FRAME_E_CODE, "byte %zu", i);
		hdr[i] = 0;
	}
	r.operation = FRAME_OP_NON_REPLICATED;
	r.code = 60000;
	frame_request_encode(hdr, &r);
	cr_assert_eq(frame_request_decode(hdr, &out), FRAME_OK);
	cr_assert_eq(out.code, 60000);
}

Test(frame, fields_the_server_ignores_do_not_invalidate_a_request)
{
	// checksum, checksum_body, cluster, view, release, replica, timestamp and user_id may hold anything.
	struct frame_request r = valid_request(), out;
	uint8_t hdr[FRAME_HEADER_SIZE];
	frame_request_encode(hdr, &r);
	for (size_t i = 0; i < 48; i++)
		hdr[i] = (uint8_t)(i + 1);
	frame_put32(hdr + 52, 7);
	frame_put32(hdr + 56, 8);
	hdr[61] = 3;
	frame_put64(hdr + 160, 12345);
	frame_put32(hdr + 192, 42);
	cr_assert_eq(frame_request_decode(hdr, &out), FRAME_OK);
	cr_assert_eq(out.timestamp, 12345);
	cr_assert_eq(out.user_id, 42);
}

/* ---- Evictions, result sections, tables ---- */

Test(frame, every_eviction_reason_survives_a_round_trip)
{
	// Reasons 1..15 encode to a 256-byte command-13 frame and decode to the same client and reason; versions appear only for reason 14.
	for (unsigned reason = 1; reason <= 15; reason++) {
		struct frame_eviction e = {.client = {0x1234, 0x5678},
					   .protocol_version = FRAME_PROTOCOL_VERSION,
					   .protocol_version_min = FRAME_VERSION_PACK(0, 11, 0),
					   .reason = (uint8_t)reason},
				      back;
		uint8_t hdr[FRAME_HEADER_SIZE];
		cr_assert_eq(frame_eviction_encode(hdr, &e), 0);
		cr_assert_eq(frame_le32(hdr + 48), 256);
		cr_assert_eq(hdr[60], FRAME_CMD_EVICTION);
		cr_assert_eq(hdr[255], reason);
		cr_assert_eq(frame_eviction_decode(hdr, &back), FRAME_OK, "reason %u", reason);
		cr_assert(frame_u128_eq(back.client, e.client));
		cr_assert_eq(back.reason, reason);
		if (reason == FRAME_EVICT_INCOMPATIBLE_PROTOCOL) {
			cr_assert_eq(frame_le32(hdr + 144), 0x2c00);
			cr_assert_eq(back.protocol_version, FRAME_PROTOCOL_VERSION);
			cr_assert_eq(back.protocol_version_min, 0x2c00);
		} else {
			cr_assert_eq(frame_le64(hdr + 144), 0);
			cr_assert_eq(back.protocol_version, 0);
			cr_assert_eq(back.protocol_version_min, 0);
		}
	}
}

Test(frame, a_malformed_eviction_is_refused)
{
	// Encoding refuses reason 0 or 16 and a zero client; decoding refuses versions on reason 13, a size ≠ 256, reserved bytes and unknown reasons.
	struct frame_eviction e = {.client = {1, 0}, .reason = 0}, back;
	uint8_t hdr[FRAME_HEADER_SIZE];
	cr_assert_eq(frame_eviction_encode(hdr, &e), -EINVAL);
	e.reason = 16;
	cr_assert_eq(frame_eviction_encode(hdr, &e), -EINVAL);
	e.reason = FRAME_EVICT_STALE_CLIENT;
	e.client = (struct frame_u128){0, 0};
	cr_assert_eq(frame_eviction_encode(hdr, &e), -EINVAL);
	e.client = (struct frame_u128){1, 0};
	cr_assert_eq(frame_eviction_encode(hdr, &e), 0);

	frame_put32(hdr + 144, 5);
	cr_assert_eq(frame_eviction_decode(hdr, &back), FRAME_E_VERSION);
	frame_put32(hdr + 144, 0);
	frame_put32(hdr + 48, 257);
	cr_assert_eq(frame_eviction_decode(hdr, &back), FRAME_E_SIZE_LARGE);
	frame_put32(hdr + 48, 256);
	hdr[200] = 1;
	cr_assert_eq(frame_eviction_decode(hdr, &back), FRAME_E_RESERVED);
	hdr[200] = 0;
	hdr[70] = 1;
	cr_assert_eq(frame_eviction_decode(hdr, &back), FRAME_E_RESERVED);
	hdr[70] = 0;
	hdr[255] = 16;
	cr_assert_eq(frame_eviction_decode(hdr, &back), FRAME_E_REASON);
	hdr[255] = 13;
	hdr[60] = FRAME_CMD_REPLY;
	cr_assert_eq(frame_eviction_decode(hdr, &back), FRAME_E_COMMAND);
}

Test(frame, result_framed_operations_are_those_of_section_1_5)
{
	// Metadata ops (64..68, 128..149 but 138), 161, 162 and a non-empty Register reply are framed; 2, 3, 160, 138 and an empty Register are not.
	for (unsigned op = 0; op < 256; op++) {
		bool framed = (op >= 64 && op <= 68) || (op >= 128 && op <= 149 && op != 138) || op == 161 || op == 162;
		cr_assert_eq(frame_op_is_result_framed((uint8_t)op, true), framed || op == 1, "op %u", op);
		cr_assert_eq(frame_op_is_result_framed((uint8_t)op, false), framed, "op %u", op);
	}
}

Test(frame, a_result_section_splits_like_the_sdk_splits_it)
{
	// count 0 strips 4 bytes; a 12-byte rejection gives its code; count 2 strips 20 bytes; short bodies give FRAME_E_RESULT.
	uint8_t body[32] = {0};
	uint32_t error = 99;
	size_t off = 0;
	cr_assert_eq(frame_result_split(body, 4, &error, &off), FRAME_OK);
	cr_assert_eq(error, 0);
	cr_assert_eq(off, 4);
	cr_assert_eq(frame_result_split(body, 3, &error, &off), FRAME_E_RESULT);

	frame_result_reject(body, 1012);
	cr_assert_eq(frame_le32(body), 1);
	cr_assert_eq(frame_le32(body + 4), 0);
	cr_assert_eq(frame_le32(body + 8), 1012);
	cr_assert_eq(frame_result_split(body, FRAME_RESULT_REJECT_SIZE, &error, &off), FRAME_OK);
	cr_assert_eq(error, 1012);
	cr_assert_eq(off, 12);
	cr_assert_eq(frame_result_split(body, 11, &error, &off), FRAME_E_RESULT);

	frame_put32(body, 2);
	frame_put32(body + 8, 0);
	cr_assert_eq(frame_result_split(body, 24, &error, &off), FRAME_OK);
	cr_assert_eq(error, 0);
	cr_assert_eq(off, 20);
	frame_put32(body, UINT32_MAX);
	cr_assert_eq(frame_result_split(body, sizeof body, &error, &off), FRAME_E_RESULT);
}

Test(frame, command_codes_map_to_their_operation_bytes_and_back)
{
	// Reads travel as NonReplicated, writes as their operation; each replicated op maps back to its code; unknown codes map to 0.
	cr_assert_eq(frame_code_to_op(FRAME_CODE_PING), FRAME_OP_NON_REPLICATED);
	cr_assert_eq(frame_code_to_op(FRAME_CODE_POLL_MESSAGES), FRAME_OP_NON_REPLICATED);
	cr_assert_eq(frame_code_to_op(FRAME_CODE_LOGIN_USER), FRAME_OP_NON_REPLICATED);
	cr_assert_eq(frame_code_to_op(FRAME_CODE_SEND_MESSAGES), FRAME_OP_SEND_MESSAGES);
	cr_assert_eq(frame_code_to_op(FRAME_CODE_LOGIN_REGISTER), FRAME_OP_REGISTER);
	cr_assert_eq(frame_code_to_op(FRAME_CODE_LOGIN_REGISTER_WITH_PAT), FRAME_OP_REGISTER);
	cr_assert_eq(frame_code_to_op(FRAME_CODE_LOGOUT_USER), FRAME_OP_LOGOUT);
	cr_assert_eq(frame_code_to_op(FRAME_CODE_CREATE_USER), FRAME_OP_CREATE_USER);
	cr_assert_eq(frame_code_to_op(FRAME_CODE_DELETE_SEGMENTS), FRAME_OP_DELETE_SEGMENTS);
	cr_assert_eq(frame_code_to_op(FRAME_CODE_DELETE_CONSUMER_OFFSET), FRAME_OP_DELETE_CONSUMER_OFFSET);
	cr_assert_eq(frame_code_to_op(60000), FRAME_OP_RESERVED);
	cr_assert_eq(frame_code_to_op(0), FRAME_OP_RESERVED);
	cr_assert_not(frame_code_is_known(60000));

	/* Every replicated client operation has exactly one code that maps back to it. */
	for (unsigned op = 1; op < 256; op++) {
		uint32_t code = frame_op_to_code((uint8_t)op);
		bool client_op = op == 1 || op == 3 || (op >= 128 && op <= 149) || (op >= 160 && op <= 162);
		cr_assert_eq(code != 0, client_op, "op %u", op);
		if (code)
			cr_assert_eq(frame_code_to_op(code), op, "op %u code %u", op, code);
	}
	cr_assert_eq(frame_op_to_code(FRAME_OP_REGISTER), FRAME_CODE_LOGIN_REGISTER);
	cr_assert_eq(frame_op_to_code(FRAME_OP_CREATE_STREAM), FRAME_CODE_CREATE_STREAM);
	cr_assert_eq(frame_op_to_code(FRAME_OP_CHANGE_PASSWORD), FRAME_CODE_CHANGE_PASSWORD);
	cr_assert_str_eq(frame_code_name(FRAME_CODE_GET_CLUSTER_METADATA), "GetClusterMetadata");
	cr_assert_str_eq(frame_op_name(FRAME_OP_SEND_MESSAGES), "SendMessages");
	cr_assert_str_eq(frame_op_name(FRAME_OP_TRUNCATE_PARTITION), "TruncatePartition");
	cr_assert_str_eq(frame_code_name(7), "unknown");
}

Test(frame, the_poll_routing_codes_of_the_sdk_are_known_non_replicated_reads)
{
	// 103 is GetPollRouting (not a poll), 104 PollMessagesOnPrimary, 14 AttachConsumerSession, 123 GetConsumerOffsetRouting: all NonReplicated.
	cr_assert_eq(FRAME_CODE_GET_POLL_ROUTING, 103);
	cr_assert_eq(FRAME_CODE_POLL_MESSAGES_ON_PRIMARY, 104);
	cr_assert_eq(FRAME_CODE_ATTACH_CONSUMER_SESSION, 14);
	cr_assert_eq(FRAME_CODE_GET_CONSUMER_OFFSET_ROUTING, 123);
	uint32_t codes[] = {103, 104, 14, 123};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		cr_assert(frame_code_is_known(codes[i]), "code %u", codes[i]);
		cr_assert_eq(frame_code_to_op(codes[i]), FRAME_OP_NON_REPLICATED, "code %u", codes[i]);
	}
	cr_assert_str_eq(frame_code_name(103), "GetPollRouting");
	cr_assert_str_eq(frame_code_name(104), "PollMessagesOnPrimary");
	cr_assert_str_eq(frame_code_name(14), "AttachConsumerSession");
	cr_assert_str_eq(frame_code_name(123), "GetConsumerOffsetRouting");
}

Test(frame, the_protocol_version_packs_to_0x2c00_and_is_gated_like_the_reference)
{
	// 0.11.0 packs to 0x2C00 = 11264; the gate takes 0.11.x, refuses 0.10.x, and takes 0.12.0 only without the upper bound.
	cr_assert_eq(FRAME_PROTOCOL_VERSION, 0x2c00);
	cr_assert_eq(FRAME_PROTOCOL_VERSION, 11264);
	uint32_t v = FRAME_VERSION_PACK(1, 2, 3);
	cr_assert_eq(FRAME_VERSION_MAJOR(v), 1);
	cr_assert_eq(FRAME_VERSION_MINOR(v), 2);
	cr_assert_eq(FRAME_VERSION_PATCH(v), 3);
	uint32_t server = FRAME_VERSION_PACK(0, 11, 4);
	cr_assert(frame_version_accepts(FRAME_VERSION_PACK(0, 11, 0), server, true));
	cr_assert(frame_version_accepts(FRAME_VERSION_PACK(0, 11, 9), server, true));
	cr_assert_not(frame_version_accepts(FRAME_VERSION_PACK(0, 10, 9), server, true));
	cr_assert_not(frame_version_accepts(FRAME_VERSION_PACK(0, 12, 0), server, true));
	cr_assert(frame_version_accepts(FRAME_VERSION_PACK(0, 12, 0), server, false));
	cr_assert_not(frame_version_accepts(FRAME_VERSION_PACK(0, 10, 9), server, false));
}

/* ---- Reader and writer ---- */

Test(wire, a_reader_records_running_past_the_end_and_reads_nothing_more)
{
	// Reading a u32 from 3 bytes gives 0 and WIRE_E_SHORT; later getters return 0; wire_rd_done reports the error.
	const uint8_t b[3] = {1, 2, 3};
	struct wire_rd r;
	wire_rd_init(&r, b, sizeof b);
	cr_assert_eq(wire_get_u8(&r), 1);
	cr_assert_eq(wire_get_u32(&r), 0);
	cr_assert_eq(wire_rd_error(&r), WIRE_E_SHORT);
	cr_assert_eq(wire_get_u8(&r), 0);
	cr_assert_null(wire_get_bytes(&r, 1));
	cr_assert_eq(wire_rd_left(&r), 0);
	cr_assert_eq(wire_rd_done(&r), WIRE_E_SHORT);

	wire_rd_init(&r, b, sizeof b);
	cr_assert_eq(wire_get_u16(&r), 0x0201);
	cr_assert_eq(wire_rd_done(&r), WIRE_E_TRAILING);
	cr_assert_eq(wire_get_u8(&r), 3);
	cr_assert_eq(wire_rd_done(&r), 0);

	wire_rd_init(&r, NULL, 0);
	cr_assert_eq(wire_get_u64(&r), 0);
	cr_assert_eq(wire_rd_done(&r), WIRE_E_SHORT);
}

Test(wire, a_writer_grows_and_patches_reserved_fields)
{
	// Puts append little-endian; a reserved count is patched at the end; take hands over exactly the bytes written.
	struct wire_buf b;
	wire_buf_init(&b);
	size_t count_at = wire_put_reserve(&b, 4);
	for (uint32_t i = 0; i < 1000; i++)
		wire_put_u64(&b, i);
	wire_put_u16(&b, 0xbeef);
	wire_patch_u32(&b, count_at, 1000);
	cr_assert_eq(wire_buf_error(&b), 0);
	size_t len;
	uint8_t *p = wire_buf_take(&b, &len);
	cr_assert_eq(len, 4 + 8000 + 2);
	cr_assert_eq(frame_le32(p), 1000);
	cr_assert_eq(frame_le64(p + 4 + 8 * 999), 999);
	cr_assert_eq(frame_le16(p + 8004), 0xbeef);
	free(p);
	cr_assert_null(b.p);

	wire_put_name(&b, "", 0);
	cr_assert_eq(wire_buf_error(&b), WIRE_E_VALUE);
	wire_put_u8(&b, 1);
	cr_assert_eq(b.len, 0);
	cr_assert_null(wire_buf_take(&b, &len));
	cr_assert_eq(len, 0);
	wire_buf_free(&b);
}

/* ---- Primitives ---- */

/* Checks that every strict prefix of an encoding fails to decode with `decode`, reading only its bytes. */
static void every_prefix_fails(const uint8_t *enc, size_t len, int (*decode)(struct wire_rd *r))
{
	for (size_t n = 0; n < len; n++) {
		/* An exact-size heap copy, so that a read past the prefix is caught by AddressSanitizer. */
		uint8_t *copy = malloc(n ? n : 1);
		memcpy(copy, enc, n);
		struct wire_rd r;
		wire_rd_init(&r, copy, n);
		int rc = decode(&r);
		cr_assert_neq(rc, 0, "a prefix of %zu of %zu bytes decoded", n, len);
		cr_assert_neq(wire_rd_error(&r), 0);
		free(copy);
	}
}

static int dec_name(struct wire_rd *r)
{
	struct wire_str s;
	return wire_get_name(r, &s);
}

static int dec_id(struct wire_rd *r)
{
	struct wire_id id;
	return wire_get_id(r, &id);
}

static int dec_consumer(struct wire_rd *r)
{
	struct wire_consumer c;
	return wire_get_consumer(r, &c);
}

static int dec_opt_partition(struct wire_rd *r)
{
	struct wire_opt_partition p;
	return wire_get_opt_partition(r, &p);
}

static int dec_polling(struct wire_rd *r)
{
	struct wire_polling p;
	return wire_get_polling(r, &p);
}

static int dec_partitioning(struct wire_rd *r)
{
	struct wire_partitioning p;
	return wire_get_partitioning(r, &p);
}

static int dec_options_prefixed(struct wire_rd *r)
{
	struct wire_opts o;
	return wire_get_options_prefixed(r, &o);
}

/* Permissions must decode whole: a prefix that stops between entries is still incomplete. */
static int dec_permissions(struct wire_rd *r)
{
	struct wire_perms p;
	int rc = wire_get_permissions(r, &p);
	if (rc == 0)
		wire_perms_free(&p);
	return rc;
}

static int dec_version_info(struct wire_rd *r)
{
	struct wire_version_info v;
	return wire_get_version_info(r, &v);
}

Test(wire, names_round_trip_and_empty_or_invalid_names_are_refused)
{
	// A WireName of 1..255 UTF-8 bytes round-trips; length 0 and invalid UTF-8 are refused; every truncation fails.
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_name(&b, "str\xc3\xa9" "am", 7);
	char long_name[255];
	memset(long_name, 'a', sizeof long_name);
	wire_put_name(&b, long_name, sizeof long_name);
	cr_assert_eq(wire_buf_error(&b), 0);
	struct wire_rd r;
	struct wire_str s1, s2;
	wire_rd_init(&r, b.p, b.len);
	cr_assert_eq(wire_get_name(&r, &s1), 0);
	cr_assert_eq(wire_get_name(&r, &s2), 0);
	cr_assert_eq(wire_rd_done(&r), 0);
	cr_assert_eq(s1.len, 7);
	cr_assert_eq(s1.ptr, b.p + 1, "names point into the input");
	cr_assert_eq(s2.len, 255);
	every_prefix_fails(b.p, 8, dec_name);
	wire_buf_free(&b);

	const uint8_t empty[] = {0};
	wire_rd_init(&r, empty, sizeof empty);
	cr_assert_eq(wire_get_name(&r, &s1), WIRE_E_VALUE);
	const uint8_t bad_utf8[] = {2, 0xff, 0xfe};
	wire_rd_init(&r, bad_utf8, sizeof bad_utf8);
	cr_assert_eq(wire_get_name(&r, &s1), WIRE_E_UTF8);
	const uint8_t surrogate[] = {3, 0xed, 0xa0, 0x80};
	wire_rd_init(&r, surrogate, sizeof surrogate);
	cr_assert_eq(wire_get_name(&r, &s1), WIRE_E_UTF8);
	const uint8_t overlong[] = {2, 0xc0, 0xaf};
	wire_rd_init(&r, overlong, sizeof overlong);
	cr_assert_eq(wire_get_name(&r, &s1), WIRE_E_UTF8);
}

Test(wire, identifiers_round_trip_and_a_numeric_one_must_be_four_bytes)
{
	// Numeric (0, 42, u32 max) and string identifiers round-trip; numeric lengths other than 4, empty strings and kinds 0 and 3 are refused.
	struct wire_buf b;
	wire_buf_init(&b);
	const uint32_t nums[] = {0, 42, UINT32_MAX};
	for (size_t i = 0; i < 3; i++)
		wire_put_id(&b, &(struct wire_id){.kind = WIRE_ID_NUMERIC, .num = nums[i]});
	struct wire_id named = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"orders", 6}};
	wire_put_id(&b, &named);
	cr_assert_eq(wire_buf_error(&b), 0);
	cr_assert_eq(b.len, 3 * 6 + 8);
	struct wire_rd r;
	struct wire_id id;
	wire_rd_init(&r, b.p, b.len);
	for (size_t i = 0; i < 3; i++) {
		cr_assert_eq(wire_get_id(&r, &id), 0);
		cr_assert_eq(id.kind, WIRE_ID_NUMERIC);
		cr_assert_eq(id.num, nums[i]);
	}
	cr_assert_eq(wire_get_id(&r, &id), 0);
	cr_assert_eq(id.kind, WIRE_ID_STRING);
	cr_assert(wire_str_eq(id.name, "orders"));
	cr_assert_eq(wire_rd_done(&r), 0);
	every_prefix_fails(b.p, 6, dec_id);
	every_prefix_fails(b.p + 18, 8, dec_id);
	wire_buf_free(&b);

	const uint8_t len3[] = {1, 3, 1, 0, 0};
	const uint8_t len5[] = {1, 5, 1, 0, 0, 0, 0};
	const uint8_t len0[] = {1, 0};
	const uint8_t empty_str[] = {2, 0};
	const uint8_t kind0[] = {0, 4, 1, 0, 0, 0};
	const uint8_t kind3[] = {3, 4, 1, 0, 0, 0};
	const struct {
		const uint8_t *p;
		size_t n;
	} bad[] = {{len3, sizeof len3}, {len5, sizeof len5},   {len0, sizeof len0},
		   {empty_str, 2},      {kind0, sizeof kind0}, {kind3, sizeof kind3}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		wire_rd_init(&r, bad[i].p, bad[i].n);
		cr_assert_eq(wire_get_id(&r, &id), WIRE_E_VALUE, "case %zu", i);
		cr_assert_eq(wire_rd_done(&r), WIRE_E_VALUE);
	}
}

Test(wire, consumers_round_trip_and_unknown_kinds_are_refused)
{
	// A single consumer and a consumer group round-trip; kinds 0 and 3 are refused.
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_consumer(&b, &(struct wire_consumer){.kind = WIRE_CONSUMER_SINGLE, .id = wire_id_num(7)});
	wire_put_consumer(&b, &(struct wire_consumer){
				      .kind = WIRE_CONSUMER_GROUP,
				      .id = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"g1", 2}}});
	struct wire_rd r;
	struct wire_consumer c;
	wire_rd_init(&r, b.p, b.len);
	cr_assert_eq(wire_get_consumer(&r, &c), 0);
	cr_assert_eq(c.kind, WIRE_CONSUMER_SINGLE);
	cr_assert_eq(c.id.num, 7);
	cr_assert_eq(wire_get_consumer(&r, &c), 0);
	cr_assert_eq(c.kind, WIRE_CONSUMER_GROUP);
	cr_assert(wire_str_eq(c.id.name, "g1"));
	cr_assert_eq(wire_rd_done(&r), 0);
	every_prefix_fails(b.p, 7, dec_consumer);
	b.p[0] = 0;
	wire_rd_init(&r, b.p, 7);
	cr_assert_eq(wire_get_consumer(&r, &c), WIRE_E_VALUE);
	b.p[0] = 3;
	wire_rd_init(&r, b.p, 7);
	cr_assert_eq(wire_get_consumer(&r, &c), WIRE_E_VALUE);
	wire_buf_free(&b);
}

Test(wire, optional_partitions_and_polling_strategies_round_trip)
{
	// Present and absent partitions and the five polling kinds round-trip in 5 and 9 bytes; flag 2 and kinds 0 and 6 are refused.
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_opt_partition(&b, &(struct wire_opt_partition){.present = true, .id = 3});
	wire_put_opt_partition(&b, &(struct wire_opt_partition){.present = false});
	cr_assert_eq(b.len, 10);
	for (uint8_t k = WIRE_POLL_OFFSET; k <= WIRE_POLL_NEXT; k++)
		wire_put_polling(&b, &(struct wire_polling){.kind = k, .value = 1000u * k});
	cr_assert_eq(b.len, 10 + 5 * WIRE_POLLING_SIZE);
	struct wire_rd r;
	struct wire_opt_partition op;
	struct wire_polling pl;
	wire_rd_init(&r, b.p, b.len);
	cr_assert_eq(wire_get_opt_partition(&r, &op), 0);
	cr_assert(op.present);
	cr_assert_eq(op.id, 3);
	cr_assert_eq(wire_get_opt_partition(&r, &op), 0);
	cr_assert_not(op.present);
	for (uint8_t k = WIRE_POLL_OFFSET; k <= WIRE_POLL_NEXT; k++) {
		cr_assert_eq(wire_get_polling(&r, &pl), 0);
		cr_assert_eq(pl.kind, k);
		cr_assert_eq(pl.value, 1000u * k);
	}
	cr_assert_eq(wire_rd_done(&r), 0);
	every_prefix_fails(b.p, 5, dec_opt_partition);
	every_prefix_fails(b.p + 10, 9, dec_polling);

	const uint8_t flag2[] = {2, 0, 0, 0, 0};
	wire_rd_init(&r, flag2, sizeof flag2);
	cr_assert_eq(wire_get_opt_partition(&r, &op), WIRE_E_VALUE);
	uint8_t poll[9] = {0};
	wire_rd_init(&r, poll, sizeof poll);
	cr_assert_eq(wire_get_polling(&r, &pl), WIRE_E_VALUE);
	poll[0] = 6;
	wire_rd_init(&r, poll, sizeof poll);
	cr_assert_eq(wire_get_polling(&r, &pl), WIRE_E_VALUE);
	wire_buf_free(&b);
}

Test(wire, partitionings_round_trip_and_lengths_must_fit_their_kind)
{
	// Balanced (len 0), PartitionId (len 4) and MessagesKey (len 1..255) round-trip; other lengths and kinds are refused.
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_partitioning(&b, &(struct wire_partitioning){.kind = WIRE_PART_BALANCED});
	wire_put_partitioning(&b, &(struct wire_partitioning){.kind = WIRE_PART_PARTITION_ID, .partition_id = 9});
	wire_put_partitioning(&b, &(struct wire_partitioning){.kind = WIRE_PART_MESSAGES_KEY,
							      .key = {(const uint8_t *)"\x00\xffkey", 5}});
	cr_assert_eq(wire_buf_error(&b), 0);
	cr_assert_eq(b.len, 2 + 6 + 7);
	struct wire_rd r;
	struct wire_partitioning p;
	wire_rd_init(&r, b.p, b.len);
	cr_assert_eq(wire_get_partitioning(&r, &p), 0);
	cr_assert_eq(p.kind, WIRE_PART_BALANCED);
	cr_assert_eq(wire_get_partitioning(&r, &p), 0);
	cr_assert_eq(p.kind, WIRE_PART_PARTITION_ID);
	cr_assert_eq(p.partition_id, 9);
	cr_assert_eq(wire_get_partitioning(&r, &p), 0);
	cr_assert_eq(p.kind, WIRE_PART_MESSAGES_KEY);
	cr_assert_eq(p.key.len, 5);
	cr_assert_eq(memcmp(p.key.ptr, "\x00\xffkey", 5), 0);
	cr_assert_eq(wire_rd_done(&r), 0);
	every_prefix_fails(b.p + 2, 6, dec_partitioning);
	every_prefix_fails(b.p + 8, 7, dec_partitioning);

	const uint8_t bal1[] = {1, 1, 0};
	const uint8_t id3[] = {2, 3, 0, 0, 0};
	const uint8_t key0[] = {3, 0};
	const uint8_t kind4[] = {4, 0};
	const struct {
		const uint8_t *p;
		size_t n;
	} bad[] = {{bal1, 3}, {id3, 5}, {key0, 2}, {kind4, 2}};
	for (size_t i = 0; i < 4; i++) {
		wire_rd_init(&r, bad[i].p, bad[i].n);
		cr_assert_eq(wire_get_partitioning(&r, &p), WIRE_E_VALUE, "case %zu", i);
	}
	wire_buf_free(&b);
}

Test(wire, an_options_block_round_trips_and_options_are_found_by_key)
{
	// Two options encode to the user-header TLV, validate, iterate in order and are found by key; an empty block has no options.
	struct wire_buf b;
	wire_buf_init(&b);
	uint64_t size = 1u << 30;
	uint8_t le[8];
	frame_put64(le, size);
	wire_put_option(&b, "segment_size", 12, WIRE_KIND_UINT64, le, 8);
	wire_put_option(&b, "message_expiry", 14, WIRE_KIND_STRING, "7 days", 6);
	cr_assert_eq(wire_buf_error(&b), 0);
	cr_assert_eq(b.len, (1 + 4 + 12 + 1 + 4 + 8) + (1 + 4 + 14 + 1 + 4 + 6));

	struct wire_rd r;
	struct wire_opts o;
	wire_rd_init(&r, b.p, b.len);
	cr_assert_eq(wire_get_options(&r, &o), 0);
	cr_assert_eq(wire_rd_done(&r), 0);
	cr_assert_eq(o.count, 2);
	size_t pos = 0;
	struct wire_opt opt;
	cr_assert(wire_opts_next(&o, &pos, &opt));
	cr_assert(wire_str_eq(opt.key, "segment_size"));
	cr_assert_eq(opt.kind, WIRE_KIND_UINT64);
	cr_assert_eq(frame_le64(opt.value.ptr), size);
	cr_assert(wire_opts_next(&o, &pos, &opt));
	cr_assert(wire_str_eq(opt.value, "7 days"));
	cr_assert_not(wire_opts_next(&o, &pos, &opt));
	cr_assert_eq(wire_opts_find(&o, "message_expiry", &opt), 0);
	cr_assert_eq(opt.kind, WIRE_KIND_STRING);
	cr_assert_eq(wire_opts_find(&o, "enforce_fsync", &opt), -ENOENT);

	/* The same block with its [len u32] prefix, as in responses. */
	struct wire_buf pb;
	wire_buf_init(&pb);
	wire_put_options_prefixed(&pb, &o);
	wire_rd_init(&r, pb.p, pb.len);
	struct wire_opts o2;
	cr_assert_eq(wire_get_options_prefixed(&r, &o2), 0);
	cr_assert_eq(wire_rd_done(&r), 0);
	cr_assert_eq(o2.count, 2);
	cr_assert_eq(o2.len, o.len);
	every_prefix_fails(pb.p, pb.len, dec_options_prefixed);
	/* Every truncation of the bare block is refused too, except the one that ends after the first entry. */
	for (size_t n = 1; n < b.len; n++) {
		if (n == 1 + 4 + 12 + 1 + 4 + 8)
			continue;
		uint8_t *copy = malloc(n);
		memcpy(copy, b.p, n);
		cr_assert_neq(wire_opts_parse(copy, n, &o2), 0, "prefix %zu", n);
		free(copy);
	}
	wire_buf_free(&pb);
	wire_buf_free(&b);

	wire_rd_init(&r, NULL, 0);
	cr_assert_eq(wire_get_options(&r, &o), 0);
	cr_assert_eq(o.count, 0);
}

Test(wire, an_options_block_with_a_duplicate_key_is_refused)
{
	// Two entries with the key "segment_size" give WIRE_E_DUP, wherever they are in the block.
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_option(&b, "segment_size", 12, WIRE_KIND_STRING, "1 GiB", 5);
	wire_put_option(&b, "enforce_fsync", 13, WIRE_KIND_BOOL, "\x01", 1);
	wire_put_option(&b, "segment_size", 12, WIRE_KIND_STRING, "2 GiB", 5);
	struct wire_opts o;
	cr_assert_eq(wire_opts_parse(b.p, b.len, &o), WIRE_E_DUP);
	cr_assert_eq(o.count, 0);
	struct wire_rd r;
	wire_rd_init(&r, b.p, b.len);
	cr_assert_eq(wire_get_options(&r, &o), WIRE_E_DUP);
	cr_assert_eq(wire_rd_done(&r), WIRE_E_DUP);
	wire_buf_free(&b);
}

Test(wire, options_kinds_lengths_and_limits_are_checked)
{
	// Keys must be UTF-8 strings; kinds non-zero; lengths 1..255; unknown value kinds pass; 1024 entries pass, 1025 and 100,001 bytes do not.
	uint8_t e[64];
	struct wire_opts o;
	/* [2][len 1]["k"][value kind][len 1]["v"] */
	const uint8_t good[] = {2, 1, 0, 0, 0, 'k', 200, 1, 0, 0, 0, 'v'};
	cr_assert_eq(wire_opts_parse(good, sizeof good, &o), 0, "an unknown value kind is forwarded");
	memcpy(e, good, sizeof good);
	e[0] = WIRE_KIND_UINT64;
	cr_assert_eq(wire_opts_parse(e, sizeof good, &o), WIRE_E_VALUE);
	memcpy(e, good, sizeof good);
	e[6] = 0;
	cr_assert_eq(wire_opts_parse(e, sizeof good, &o), WIRE_E_VALUE);
	memcpy(e, good, sizeof good);
	e[5] = 0xff;
	cr_assert_eq(wire_opts_parse(e, sizeof good, &o), WIRE_E_UTF8);
	const uint8_t zero_value[] = {2, 1, 0, 0, 0, 'k', 2, 0, 0, 0, 0};
	cr_assert_eq(wire_opts_parse(zero_value, sizeof zero_value, &o), WIRE_E_VALUE);
	const uint8_t long_key[] = {2, 0, 1, 0, 0};
	cr_assert_eq(wire_opts_parse(long_key, sizeof long_key, &o), WIRE_E_VALUE);
	const uint8_t huge_len[] = {2, 0xff, 0xff, 0xff, 0xff, 'k'};
	cr_assert_eq(wire_opts_parse(huge_len, sizeof huge_len, &o), WIRE_E_VALUE);

	struct wire_buf b;
	wire_buf_init(&b);
	char key[16];
	for (int i = 0; i < WIRE_OPTIONS_MAX_ENTRIES; i++) {
		int n = snprintf(key, sizeof key, "key_%d", i);
		wire_put_option(&b, key, (size_t)n, WIRE_KIND_STRING, "v", 1);
	}
	cr_assert_eq(wire_opts_parse(b.p, b.len, &o), 0);
	cr_assert_eq(o.count, WIRE_OPTIONS_MAX_ENTRIES);
	wire_put_option(&b, "one_more", 8, WIRE_KIND_STRING, "v", 1);
	cr_assert_eq(wire_opts_parse(b.p, b.len, &o), WIRE_E_LIMIT);
	wire_buf_reset(&b);
	char big[255];
	memset(big, 'v', sizeof big);
	for (int i = 0; b.len <= WIRE_OPTIONS_MAX_BYTES; i++) {
		int n = snprintf(key, sizeof key, "k%d", i);
		wire_put_option(&b, key, (size_t)n, WIRE_KIND_STRING, big, sizeof big);
	}
	cr_assert_eq(wire_opts_parse(b.p, b.len, &o), WIRE_E_LIMIT);
	wire_buf_free(&b);
}

/* Builds the permissions of the nested round trip: streams 2 (topics 9 and 1) and 5 (no topics). */
static struct wire_perms sample_perms(struct wire_perm_stream *streams, struct wire_perm_topic *topics)
{
	topics[0] = (struct wire_perm_topic){.id = 1, .read_topic = true, .poll_messages = true};
	topics[1] = (struct wire_perm_topic){.id = 9, .manage_topic = true, .send_messages = true};
	streams[0] = (struct wire_perm_stream){.id = 2, .read_stream = true, .poll_messages = true, .topics_count = 2,
					       .topics = topics};
	streams[1] = (struct wire_perm_stream){.id = 5, .manage_stream = true, .manage_topics = true};
	return (struct wire_perms){.read_servers = true, .manage_users = true, .read_topics = true,
				   .send_messages = true, .streams_count = 2, .streams = streams};
}

Test(wire, permissions_round_trip_with_nested_streams_and_topics)
{
	// Global flags, two streams and the first stream's two topics encode with the has_next chain of §2.3 and decode to the same values.
	struct wire_perm_stream streams[2];
	struct wire_perm_topic topics[2];
	struct wire_perms in = sample_perms(streams, topics), out;
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_permissions(&b, &in);
	cr_assert_eq(wire_buf_error(&b), 0);
	/* 10 globals + has_streams, then stream 2 (11) + its topics (2 × 9), has_next, stream 5 (11), has_next. */
	cr_assert_eq(b.len, 11 + 11 + 18 + 1 + 11 + 1);
	const uint8_t head[] = {0, 1, 1, 0, 0, 0, 0, 1, 0, 1, /* globals */ 1, /* has_streams */
				2, 0, 0, 0, 0, 1, 0, 0, 1, 0, /* stream 2 */ 1, /* has_topics */
				1, 0, 0, 0, 0, 1, 1, 0, 1, /* topic 1, has_next_topic */
				9, 0, 0, 0, 1, 0, 0, 1, 0, /* topic 9, last */ 1, /* has_next_stream */
				5, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, /* stream 5, no topics */ 0};
	cr_assert_eq(sizeof head, b.len);
	cr_assert_arr_eq(b.p, head, sizeof head);

	cr_assert_eq(wire_perms_decode(b.p, b.len, &out), 0);
	cr_assert(out.read_servers && out.manage_users && out.read_topics && out.send_messages);
	cr_assert_not(out.manage_servers || out.read_users || out.manage_streams || out.read_streams ||
		      out.manage_topics || out.poll_messages);
	cr_assert_eq(out.streams_count, 2);
	cr_assert_eq(out.streams[0].id, 2);
	cr_assert(out.streams[0].read_stream && out.streams[0].poll_messages);
	cr_assert_eq(out.streams[0].topics_count, 2);
	cr_assert_eq(out.streams[0].topics[0].id, 1);
	cr_assert(out.streams[0].topics[0].read_topic && out.streams[0].topics[0].poll_messages);
	cr_assert_eq(out.streams[0].topics[1].id, 9);
	cr_assert(out.streams[0].topics[1].manage_topic && out.streams[0].topics[1].send_messages);
	cr_assert_eq(out.streams[1].id, 5);
	cr_assert(out.streams[1].manage_stream && out.streams[1].manage_topics);
	cr_assert_eq(out.streams[1].topics_count, 0);

	struct wire_buf again;
	wire_buf_init(&again);
	wire_put_permissions(&again, &out);
	cr_assert_eq(again.len, b.len);
	cr_assert_arr_eq(again.p, b.p, b.len);
	wire_perms_free(&out);
	wire_buf_free(&again);

	every_prefix_fails(b.p, b.len, dec_permissions);
	wire_buf_free(&b);
}

Test(wire, permissions_come_out_sorted_and_duplicates_or_bad_flags_are_refused)
{
	// Streams and topics sent out of order are sorted by id; a repeated stream or topic id gives WIRE_E_DUP; a flag of 2 WIRE_E_VALUE; extra bytes WIRE_E_TRAILING.
	struct wire_perm_topic t[2] = {{.id = 8}, {.id = 3}};
	struct wire_perm_stream s[2] = {{.id = 7, .topics_count = 2, .topics = t}, {.id = 4}};
	struct wire_perms in = {.streams_count = 2, .streams = s}, out;
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_permissions(&b, &in);
	cr_assert_eq(wire_perms_decode(b.p, b.len, &out), 0);
	cr_assert_eq(out.streams[0].id, 4);
	cr_assert_eq(out.streams[1].id, 7);
	cr_assert_eq(out.streams[1].topics[0].id, 3);
	cr_assert_eq(out.streams[1].topics[1].id, 8);
	wire_perms_free(&out);

	t[1].id = 8;
	wire_buf_reset(&b);
	wire_put_permissions(&b, &in);
	cr_assert_eq(wire_perms_decode(b.p, b.len, &out), WIRE_E_DUP);
	cr_assert_null(out.streams);
	t[1].id = 3;
	s[1].id = 7;
	wire_buf_reset(&b);
	wire_put_permissions(&b, &in);
	cr_assert_eq(wire_perms_decode(b.p, b.len, &out), WIRE_E_DUP);

	s[1].id = 4;
	wire_buf_reset(&b);
	wire_put_permissions(&b, &in);
	b.p[3] = 2;
	cr_assert_eq(wire_perms_decode(b.p, b.len, &out), WIRE_E_VALUE);
	b.p[3] = 0;
	b.p[10] = 2; /* has_streams */
	cr_assert_eq(wire_perms_decode(b.p, b.len, &out), WIRE_E_VALUE);
	b.p[10] = 1;
	wire_put_u8(&b, 0);
	cr_assert_eq(wire_perms_decode(b.p, b.len, &out), WIRE_E_TRAILING);
	cr_assert_null(out.streams);

	const uint8_t none[11] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0};
	cr_assert_eq(wire_perms_decode(none, sizeof none, &out), 0);
	cr_assert(out.manage_servers && out.send_messages);
	cr_assert_eq(out.streams_count, 0);
	wire_perms_free(&out);
	wire_buf_free(&b);
}

Test(wire, client_version_info_round_trips_and_every_truncation_fails)
{
	// ClientVersionInfo encodes as [u32][str8][str8], decodes to the same fields, and no prefix of it decodes.
	struct wire_version_info v = {.protocol_version = FRAME_PROTOCOL_VERSION,
				      .sdk_name = {(const uint8_t *)"rust-sdk", 8},
				      .sdk_version = {(const uint8_t *)"0.11.0-edge.2", 13}},
				 back;
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_version_info(&b, &v);
	cr_assert_eq(b.len, 4 + 9 + 14);
	struct wire_rd r;
	wire_rd_init(&r, b.p, b.len);
	cr_assert_eq(wire_get_version_info(&r, &back), 0);
	cr_assert_eq(wire_rd_done(&r), 0);
	cr_assert_eq(back.protocol_version, 0x2c00);
	cr_assert(wire_str_eq(back.sdk_name, "rust-sdk"));
	cr_assert(wire_str_eq(back.sdk_version, "0.11.0-edge.2"));
	every_prefix_fails(b.p, b.len, dec_version_info);
	wire_buf_free(&b);
}

Test(frame, a_legacy_frame_is_told_apart_from_a_vsr_header)
{
	// frame.h section 8: a complete short legacy frame is recognised, a VSR header (zero checksum) never.
	const uint8_t ping[8] = {4, 0, 0, 0, 1, 0, 0, 0};
	cr_assert_eq(frame_legacy_peek(ping, sizeof ping), 1);
	cr_assert_eq(frame_legacy_peek(ping, 7), 0, "a partial legacy header is not judged yet");
	uint8_t login[32] = {28, 0, 0, 0, 38, 0, 0, 0};
	cr_assert_eq(frame_legacy_peek(login, sizeof login), 38);
	cr_assert_eq(frame_legacy_peek(login, 31), 0, "the legacy frame is not complete yet");
	uint8_t vsr[FRAME_HEADER_SIZE] = {0};
	struct frame_request req = {.size = FRAME_HEADER_SIZE,
				    .client = {.lo = 1},
				    .request = 1,
				    .operation = FRAME_OP_NON_REPLICATED,
				    .code = FRAME_CODE_PING};
	frame_request_encode(vsr, &req);
	for (size_t n = 0; n <= sizeof vsr; n++)
		cr_assert_eq(frame_legacy_peek(vsr, n), 0);
	uint8_t reply[FRAME_LEGACY_REPLY_SIZE];
	frame_legacy_reply(reply);
	const uint8_t want[8] = {3, 0, 0, 0, 0, 0, 0, 0};
	cr_assert_arr_eq(reply, want, sizeof want);
}
