/*
 * libFuzzer target for node/metarec: the decoders of metadata commands and snapshots (the entries and
 * snapshots of the metadata Raft group) must never read out of bounds or leak, whatever the bytes, and
 * what they accept must be canonical and usable.
 *
 * Byte 0 picks the decoder, the rest is its input:
 *   - even: a command record. Accepted: it encodes again, and that encoding decodes and re-encodes to
 *     itself; then it is applied to a small state (a node table of three, a stream, a topic of three
 *     partitions, a user), whose snapshot must round-trip.
 *   - odd: a snapshot. Accepted: decoding its encoding gives the same bytes again (the canonical form),
 *     and the state takes a few commands (a stream, a node added and one removed).
 * Seeds: tests/fuzz/corpus/metarec/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/meta.h"
#include "node/metarec.h"
#include "proto/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                        \
	do {                                                                                               \
		if (!(cond))                                                                               \
			abort();                                                                           \
	} while (0)

static uint8_t *snap(const struct meta *m, size_t *len)
{
	struct wire_buf b;
	wire_buf_init(&b);
	CHECK(metarec_snapshot_encode(m, &b) == 0);
	uint8_t *p = wire_buf_take(&b, len);
	CHECK(p != NULL);
	return p;
}

static void snapshot_round_trips(const struct meta *m)
{
	size_t len, len2;
	uint8_t *a = snap(m, &len);
	struct meta *d = NULL;
	CHECK(metarec_snapshot_decode(a, len, &d) == 0);
	uint8_t *b = snap(d, &len2);
	CHECK(len == len2 && memcmp(a, b, len) == 0);
	free(a);
	free(b);
	meta_free(d);
}

static struct meta *small_state(void)
{
	struct meta *m = meta_new();
	CHECK(m != NULL);
	struct meta_cmd init = {.type = META_NODES_INIT, .replication_factor = 3, .n_nodes = 3};
	for (uint32_t i = 0; i < 3; i++) {
		init.nodes[i].id = i + 1;
		init.nodes[i].raft_port = (uint16_t)(8400 + i);
		memcpy(init.nodes[i].host, "node", 5);
	}
	CHECK(meta_apply(m, &init, NULL) == META_OK);
	struct meta_cmd cs = {.type = META_CREATE_STREAM, .ts = 1, .name = "s", .name_len = 1};
	CHECK(meta_apply(m, &cs, NULL) == META_OK);
	struct meta_cmd ct = {.type = META_CREATE_TOPIC, .ts = 2, .name = "t", .name_len = 1, .count = 3,
			      .compression = META_COMPRESSION_NONE, .message_expiry = META_NEVER,
			      .max_topic_size = META_NEVER};
	CHECK(meta_apply(m, &ct, NULL) == META_OK);
	return m;
}

static void command(const uint8_t *p, size_t len)
{
	struct meta_cmd c;
	struct meta_perms scratch;
	if (metarec_decode(p, len, &c, &scratch) != 0)
		return;
	struct wire_buf b1, b2;
	wire_buf_init(&b1);
	wire_buf_init(&b2);
	CHECK(metarec_encode(&c, &b1) == 0);
	struct meta_cmd d;
	struct meta_perms scratch2;
	CHECK(metarec_decode(b1.p, b1.len, &d, &scratch2) == 0);
	CHECK(metarec_encode(&d, &b2) == 0);
	CHECK(b1.len == b2.len && memcmp(b1.p, b2.p, b1.len) == 0);
	struct meta *m = small_state();
	(void)meta_apply(m, &c, NULL);
	snapshot_round_trips(m);
	meta_free(m);
	meta_perms_free(&scratch2);
	meta_perms_free(&scratch);
	wire_buf_free(&b1);
	wire_buf_free(&b2);
}

static void snapshot(const uint8_t *p, size_t len)
{
	struct meta *m = NULL;
	if (metarec_snapshot_decode(p, len, &m) != 0) {
		CHECK(m == NULL);
		return;
	}
	snapshot_round_trips(m);
	struct meta_cmd cs = {.type = META_CREATE_STREAM, .ts = 3, .name = "probe", .name_len = 5};
	(void)meta_apply(m, &cs, NULL);
	struct meta_cmd add = {.type = META_NODE_ADD, .n_nodes = 1};
	add.nodes[0].id = 7;
	add.nodes[0].raft_port = 1;
	memcpy(add.nodes[0].host, "seven", 6);
	(void)meta_apply(m, &add, NULL);
	struct meta_cmd rm = {.type = META_NODE_REMOVE, .node_id = 1};
	(void)meta_apply(m, &rm, NULL);
	snapshot_round_trips(m);
	meta_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] % 2 == 0)
		command(data + 1, size - 1);
	else
		snapshot(data + 1, size - 1);
	return 0;
}
