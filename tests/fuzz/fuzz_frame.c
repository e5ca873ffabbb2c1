/*
 * libFuzzer target for proto/frame, proto/wire and proto/reply: the decoders of untrusted client bytes must
 * never crash or read out of bounds, and what they accept must encode back to the same bytes.
 *
 * Each input is read three ways: its first 256 bytes (zero-padded when shorter) as a request, reply
 * and eviction header; the whole input by every wire decoder on its own (identifier, name, consumer,
 * optional partition, polling strategy, partitioning, options, permissions, version info) and every reply
 * structure decoder (stream, topic, partition, poll prefix, consumer offset, token, user, consumer group
 * and member, client and its groups, cluster metadata and node, stats, send confirmation, token, option
 * info, login, and Galgo's GetPartitionLeaders pieces and NotLeader); and, led by
 * a selector byte, as one of the request payload shapes of reference §2.2 decoded primitive by
 * primitive. Seeds (tests/fuzz/corpus/frame/) are the golden frames of reference §10 and §12.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. proto/frame.c proto/wire.c proto/reply.c \
 *         tests/fuzz/fuzz_frame.c $(pkg-config --cflags --libs libxxhash) -o /tmp/fuzz_frame \
 *     && /tmp/fuzz_frame tests/fuzz/corpus/frame
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "proto/reply.h"
#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                        \
	do {                                                                                               \
		if (!(cond))                                                                               \
			abort();                                                                           \
	} while (0)

/* Whether bytes [from, to) of two headers are equal. */
static bool same(const uint8_t *a, const uint8_t *b, size_t from, size_t to)
{
	return memcmp(a + from, b + from, to - from) == 0;
}

/* The bytes the decoders check or keep: size, command and everything from reserved_frame on. */
static bool same_kept(const uint8_t *a, const uint8_t *b)
{
	return same(a, b, 48, 52) && a[60] == b[60] && same(a, b, 62, FRAME_HEADER_SIZE);
}

static void headers(const uint8_t *data, size_t size)
{
	uint8_t hdr[FRAME_HEADER_SIZE] = {0}, again[FRAME_HEADER_SIZE];
	memcpy(hdr, data, size < sizeof hdr ? size : sizeof hdr);

	struct frame_request req;
	int rc = frame_request_decode(hdr, &req);
	CHECK(rc <= 0);
	if (rc == FRAME_OK) {
		CHECK(req.size >= FRAME_HEADER_SIZE && req.size <= FRAME_MAX_SIZE);
		CHECK(!frame_u128_is_zero(req.client) && frame_op_is_known(req.operation));
		frame_request_encode(again, &req);
		CHECK(same_kept(hdr, again));
		const uint8_t *body = data + (size < FRAME_HEADER_SIZE ? size : FRAME_HEADER_SIZE);
		size_t body_len = size > FRAME_HEADER_SIZE ? size - FRAME_HEADER_SIZE : 0;
		(void)frame_request_checksum_verify(&req, body, body_len);
		CHECK(frame_reply_encode(again, &req, (uint32_t)body_len, 0) == 0 || body_len > FRAME_MAX_SIZE - 256);
		if (req.operation == FRAME_OP_NON_REPLICATED)
			(void)frame_code_name(req.code);
		(void)frame_op_to_code(req.operation);
	}
	(void)frame_strerror(rc);

	struct frame_reply rep;
	if (frame_reply_decode(hdr, &rep) == FRAME_OK) {
		CHECK(frame_reply_write(again, &rep) == 0);
		/* The reply decoder does not look at `context` (144..160), which the writer zeroes. */
		CHECK(same(hdr, again, 48, 52) && same(hdr, again, 128, 144) && same(hdr, again, 160, 256));
	}

	struct frame_eviction e;
	if (frame_eviction_decode(hdr, &e) == FRAME_OK) {
		CHECK(frame_eviction_encode(again, &e) == 0);
		CHECK(same_kept(hdr, again));
	}

	uint32_t error;
	size_t off;
	if (frame_result_split(data, size, &error, &off) == FRAME_OK)
		CHECK(off >= 4 && off <= size);
}

/* Decodes one primitive from the whole input; when it decodes, it must re-encode to the bytes it read. */
#define ROUND_TRIP(type, get, put)                                                                         \
	do {                                                                                               \
		struct wire_rd r;                                                                          \
		type v;                                                                                    \
		wire_rd_init(&r, data, size);                                                              \
		if (get(&r, &v) == 0) {                                                                    \
			CHECK(r.err == 0 && r.pos <= size);                                                \
			struct wire_buf b;                                                                 \
			wire_buf_init(&b);                                                                 \
			put(&b, &v);                                                                       \
			CHECK(wire_buf_error(&b) == 0 && b.len == r.pos && memcmp(b.p, data, b.len) == 0); \
			wire_buf_free(&b);                                                                 \
		} else {                                                                                   \
			CHECK(r.err < 0);                                                                  \
		}                                                                                          \
	} while (0)

static void put_polled(struct wire_buf *b, const struct reply_polled *p)
{
	uint8_t out[REPLY_POLLED_PREFIX_SIZE];
	reply_encode_polled(out, p);
	wire_put_bytes(b, out, sizeof(out));
}

static void put_offset(struct wire_buf *b, const struct reply_offset *o)
{
	uint8_t out[REPLY_OFFSET_SIZE];
	reply_encode_offset(out, o);
	wire_put_bytes(b, out, sizeof(out));
}

static void put_name(struct wire_buf *b, const struct wire_str *s)
{
	wire_put_name(b, s->ptr, s->len);
}

static void put_str8(struct wire_buf *b, const struct wire_str *s)
{
	wire_put_str8(b, s->ptr, s->len);
}

static void put_str32(struct wire_buf *b, const struct wire_str *s)
{
	wire_put_str32(b, s->ptr, s->len);
}

static void options(const uint8_t *data, size_t size)
{
	struct wire_opts o;
	if (wire_opts_parse(data, size, &o) != 0)
		return;
	CHECK(o.count <= WIRE_OPTIONS_MAX_ENTRIES && o.len == size);
	/* Iterating gives `count` options that re-encode to the block. */
	struct wire_buf b;
	struct wire_opt opt;
	size_t pos = 0;
	uint32_t n = 0;
	wire_buf_init(&b);
	while (wire_opts_next(&o, &pos, &opt)) {
		wire_put_option(&b, opt.key.ptr, opt.key.len, opt.kind, opt.value.ptr, opt.value.len);
		n++;
	}
	CHECK(n == o.count && wire_buf_error(&b) == 0 && b.len == size);
	CHECK(size == 0 || memcmp(b.p, data, size) == 0);
	wire_buf_free(&b);
}

static void permissions(const uint8_t *data, size_t size)
{
	struct wire_perms p, q;
	if (wire_perms_decode(data, size, &p) != 0) {
		CHECK(p.streams == NULL && p.streams_count == 0);
		return;
	}
	/* Decoded permissions are sorted; their encoding decodes to an encoding of the same bytes. */
	for (uint32_t i = 0; i < p.streams_count; i++) {
		CHECK(i == 0 || p.streams[i - 1].id < p.streams[i].id);
		for (uint32_t j = 1; j < p.streams[i].topics_count; j++)
			CHECK(p.streams[i].topics[j - 1].id < p.streams[i].topics[j].id);
	}
	struct wire_buf b1, b2;
	wire_buf_init(&b1);
	wire_buf_init(&b2);
	wire_put_permissions(&b1, &p);
	CHECK(wire_buf_error(&b1) == 0 && b1.len == size);
	CHECK(wire_perms_decode(b1.p, b1.len, &q) == 0);
	wire_put_permissions(&b2, &q);
	CHECK(b2.len == b1.len && memcmp(b1.p, b2.p, b1.len) == 0);
	wire_perms_free(&q);
	wire_perms_free(&p);
	wire_buf_free(&b1);
	wire_buf_free(&b2);
}

/* Request payloads of reference §2.2, decoded the way a server would, selected by the first byte. */
static void payload(const uint8_t *data, size_t size)
{
	if (size == 0)
		return;
	struct wire_rd r;
	struct wire_id s_id, t_id, g_id;
	struct wire_consumer c;
	struct wire_opt_partition part;
	struct wire_polling poll;
	struct wire_partitioning pt;
	struct wire_str name, a, b;
	struct wire_opts o;
	struct wire_perms perms;
	struct wire_version_info vi;
	wire_rd_init(&r, data + 1, size - 1);
	switch (data[0] % 8) {
	case 0: /* PollMessages: consumer, stream, topic, partition, strategy, count, auto_commit */
		wire_get_consumer(&r, &c);
		wire_get_id(&r, &s_id);
		wire_get_id(&r, &t_id);
		wire_get_opt_partition(&r, &part);
		wire_get_polling(&r, &poll);
		(void)wire_get_u32(&r);
		(void)wire_get_u8(&r);
		break;
	case 1: /* SendMessages metadata: length, stream, topic, partitioning, then the batch */
		(void)wire_get_u32(&r);
		wire_get_id(&r, &s_id);
		wire_get_id(&r, &t_id);
		wire_get_partitioning(&r, &pt);
		(void)wire_get_bytes(&r, wire_rd_left(&r));
		break;
	case 2: /* CreateTopic: stream, partitions_count, name, options to the end */
		wire_get_id(&r, &s_id);
		(void)wire_get_u32(&r);
		wire_get_name(&r, &name);
		wire_get_options(&r, &o);
		break;
	case 3: /* CreateUser: username, password, status, permissions, options */
		wire_get_name(&r, &name);
		wire_get_str8(&r, &a);
		(void)wire_get_u8(&r);
		if (wire_get_u8(&r) == 1) {
			uint32_t n = wire_get_u32(&r);
			const uint8_t *pb = wire_get_bytes(&r, n);
			if (pb && wire_perms_decode(pb, n, &perms) == 0)
				wire_perms_free(&perms);
		}
		wire_get_options(&r, &o);
		break;
	case 4: /* LoginRegister: version info, username, password, context */
		wire_get_version_info(&r, &vi);
		wire_get_name(&r, &name);
		wire_get_str8(&r, &a);
		wire_get_str32(&r, &b);
		break;
	case 5: /* StoreConsumerOffset: consumer, stream, topic, partition, offset, ack */
		wire_get_consumer(&r, &c);
		wire_get_id(&r, &s_id);
		wire_get_id(&r, &t_id);
		wire_get_opt_partition(&r, &part);
		(void)wire_get_u64(&r);
		(void)wire_get_u8(&r);
		break;
	case 6: /* UpdatePermissions: user, has, [len][permissions] */
		wire_get_id(&r, &s_id);
		if (wire_get_u8(&r) == 1) {
			uint32_t n = wire_get_u32(&r);
			const uint8_t *pb = wire_get_bytes(&r, n);
			if (pb && wire_perms_decode(pb, n, &perms) == 0)
				wire_perms_free(&perms);
		}
		break;
	default: /* JoinConsumerGroup: stream, topic, group; a stream header's prefixed options */
		wire_get_id(&r, &s_id);
		wire_get_id(&r, &t_id);
		wire_get_id(&r, &g_id);
		wire_get_options_prefixed(&r, &o);
		break;
	}
	int rc = wire_rd_done(&r);
	CHECK(rc <= 0 && r.pos <= r.len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	headers(data, size);
	if (size > FRAME_HEADER_SIZE)
		payload(data + FRAME_HEADER_SIZE, size - FRAME_HEADER_SIZE);
	payload(data, size);

	ROUND_TRIP(struct wire_id, wire_get_id, wire_put_id);
	ROUND_TRIP(struct wire_str, wire_get_name, put_name);
	ROUND_TRIP(struct wire_str, wire_get_str8, put_str8);
	ROUND_TRIP(struct wire_str, wire_get_str32, put_str32);
	ROUND_TRIP(struct wire_consumer, wire_get_consumer, wire_put_consumer);
	ROUND_TRIP(struct wire_opt_partition, wire_get_opt_partition, wire_put_opt_partition);
	ROUND_TRIP(struct wire_polling, wire_get_polling, wire_put_polling);
	ROUND_TRIP(struct wire_partitioning, wire_get_partitioning, wire_put_partitioning);
	ROUND_TRIP(struct wire_version_info, wire_get_version_info, wire_put_version_info);
	ROUND_TRIP(struct reply_stream, reply_get_stream, reply_put_stream);
	ROUND_TRIP(struct reply_topic, reply_get_topic, reply_put_topic);
	ROUND_TRIP(struct reply_partition, reply_get_partition, reply_put_partition);
	ROUND_TRIP(struct reply_polled, reply_get_polled, put_polled);
	ROUND_TRIP(struct reply_offset, reply_get_offset, put_offset);
	ROUND_TRIP(struct reply_pat, reply_get_pat, reply_put_pat);
	ROUND_TRIP(struct reply_user, reply_get_user, reply_put_user);
	ROUND_TRIP(struct reply_group, reply_get_group, reply_put_group);
	ROUND_TRIP(struct reply_group_member, reply_get_group_member, reply_put_group_member);
	ROUND_TRIP(struct reply_client, reply_get_client, reply_put_client);
	ROUND_TRIP(struct reply_client_group, reply_get_client_group, reply_put_client_group);
	ROUND_TRIP(struct reply_cluster, reply_get_cluster, reply_put_cluster);
	ROUND_TRIP(struct reply_node, reply_get_node, reply_put_node);
	ROUND_TRIP(struct reply_stats, reply_get_stats, reply_put_stats);
	ROUND_TRIP(struct reply_leaders_node, reply_get_leaders_node, reply_put_leaders_node);
	ROUND_TRIP(struct reply_leaders_part, reply_get_leaders_part, reply_put_leaders_part);
	ROUND_TRIP(struct reply_node_status, reply_get_node_status, reply_put_node_status);
	ROUND_TRIP(struct reply_not_leader, reply_get_not_leader, reply_put_not_leader);
	ROUND_TRIP(struct reply_sent, reply_get_sent, reply_put_sent);
	ROUND_TRIP(struct reply_pat_token, reply_get_pat_token, reply_put_pat_token);
	ROUND_TRIP(struct reply_option_info, reply_get_option_info, reply_put_option_info);
	ROUND_TRIP(struct reply_login, reply_get_login, reply_put_login);
	options(data, size);
	permissions(data, size);
	{
		struct wire_rd r;
		struct wire_opts o;
		wire_rd_init(&r, data, size);
		if (wire_get_options_prefixed(&r, &o) == 0)
			CHECK(r.pos == 4 + o.len);
	}
	if (size > FRAME_HEADER_SIZE) {
		options(data + FRAME_HEADER_SIZE, size - FRAME_HEADER_SIZE);
		permissions(data + FRAME_HEADER_SIZE, size - FRAME_HEADER_SIZE);
	}
	return 0;
}
