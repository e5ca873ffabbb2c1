/*
 * Unit tests of proto/: the status-code table (codes unique, names and texts present, Iggy's spelling of
 * the names), the message batch's seal and walk (the rest of batch.c is tested through partition/record in
 * test_record.c), and each reply structure's encoder and decoder (a round trip gives back what went in;
 * every truncation of an encoding is refused).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/batch.h"
#include "proto/errors.h"
#include "proto/frame.h"
#include "proto/reply.h"
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

/* ---- Reply structures ---- */

/*
 * Checks that `enc` (n bytes) decodes with `get` into what `check` expects, re-encodes to the same bytes
 * with `put`, and that each of its truncations is refused.
 */
#define ROUND_TRIP(type, get, put, enc, n, check)                                                          \
	do {                                                                                               \
		struct wire_rd r;                                                                          \
		type v;                                                                                    \
		wire_rd_init(&r, (enc), (n));                                                              \
		cr_assert_eq(get(&r, &v), 0);                                                              \
		cr_assert_eq(wire_rd_done(&r), 0);                                                         \
		check(&v);                                                                                 \
		struct wire_buf b2;                                                                        \
		wire_buf_init(&b2);                                                                        \
		put(&b2, &v);                                                                              \
		cr_assert_eq(b2.len, (n));                                                                 \
		cr_assert_eq(memcmp(b2.p, (enc), (n)), 0);                                                 \
		wire_buf_free(&b2);                                                                        \
		for (size_t cut = 0; cut < (n); cut++) {                                                   \
			wire_rd_init(&r, (enc), cut);                                                      \
			cr_assert_neq(get(&r, &v), 0, #type " truncated to %zu bytes", cut);               \
		}                                                                                          \
	} while (0)

static struct wire_str str(const char *s)
{
	return (struct wire_str){(const uint8_t *)s, strlen(s)};
}

static void check_stream(const struct reply_stream *s)
{
	cr_assert_eq(s->id, 7);
	cr_assert_eq(s->created_at, 1234567);
	cr_assert_eq(s->topics_count, 2);
	cr_assert_eq(s->size_bytes, 1ull << 40);
	cr_assert_eq(s->messages_count, 99);
	cr_assert(wire_str_eq(s->name, "orders"));
	cr_assert_eq(s->options.len, 0);
}

Test(reply, stream_header)
{
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_stream(&b, &(struct reply_stream){7, 1234567, 2, 1ull << 40, 99, str("orders"), {0}});
	cr_assert_eq(wire_buf_error(&b), 0);
	cr_assert_eq(b.len, 4 + 8 + 4 + 8 + 8 + 1 + 6 + 4);
	ROUND_TRIP(struct reply_stream, reply_get_stream, reply_put_stream, b.p, b.len, check_stream);
	wire_buf_free(&b);
}

static void check_topic(const struct reply_topic *t)
{
	cr_assert_eq(t->id, 3);
	cr_assert_eq(t->partitions_count, 4);
	cr_assert_eq(t->message_expiry, UINT64_MAX);
	cr_assert_eq(t->compression, 2);
	cr_assert_eq(t->max_topic_size, 1000);
	cr_assert_eq(t->size_bytes, 10);
	cr_assert_eq(t->messages_count, 1);
	cr_assert(wire_str_eq(t->name, "t"));
	struct wire_opt o;
	cr_assert_eq(wire_opts_find(&t->options, "compression_algorithm", &o), 0);
	cr_assert(wire_str_eq(o.value, "gzip"));
	cr_assert_eq(t->derived.len, 0);
}

Test(reply, topic_header)
{
	struct wire_buf o, b;
	wire_buf_init(&o);
	wire_buf_init(&b);
	wire_put_option(&o, "compression_algorithm", 21, WIRE_KIND_STRING, "gzip", 4);
	struct wire_opts opts;
	cr_assert_eq(wire_opts_parse(o.p, o.len, &opts), 0);
	reply_put_topic(&b, &(struct reply_topic){3, 55, 4, UINT64_MAX, 2, 1000, 10, 1, str("t"), opts, {0}});
	cr_assert_eq(wire_buf_error(&b), 0);
	ROUND_TRIP(struct reply_topic, reply_get_topic, reply_put_topic, b.p, b.len, check_topic);
	wire_buf_free(&o);
	wire_buf_free(&b);
}

static void check_partition(const struct reply_partition *p)
{
	cr_assert_eq(p->id, 1);
	cr_assert_eq(p->created_at, 2);
	cr_assert_eq(p->segments_count, 3);
	cr_assert_eq(p->current_offset, 4);
	cr_assert_eq(p->size_bytes, 5);
	cr_assert_eq(p->messages_count, 6);
}

Test(reply, partition)
{
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_partition(&b, &(struct reply_partition){1, 2, 3, 4, 5, 6});
	cr_assert_eq(b.len, REPLY_PARTITION_SIZE);
	ROUND_TRIP(struct reply_partition, reply_get_partition, reply_put_partition, b.p, b.len, check_partition);
	wire_buf_free(&b);
}

static void put_polled(struct wire_buf *b, const struct reply_polled *p)
{
	uint8_t out[REPLY_POLLED_PREFIX_SIZE];
	reply_encode_polled(out, p);
	wire_put_bytes(b, out, sizeof(out));
}

static void check_polled(const struct reply_polled *p)
{
	cr_assert_eq(p->partition_id, 0xffffffffu);
	cr_assert_eq(p->current_offset, 1ull << 33);
	cr_assert_eq(p->count, 5);
}

Test(reply, polled_prefix)
{
	uint8_t out[REPLY_POLLED_PREFIX_SIZE];
	reply_encode_polled(out, &(struct reply_polled){0xffffffffu, 1ull << 33, 5});
	ROUND_TRIP(struct reply_polled, reply_get_polled, put_polled, out, sizeof(out), check_polled);
}

Test(reply, bad_name_refused)
{
	/* A stream header whose name is empty: refused, as the SDK refuses it. */
	uint8_t enc[4 + 8 + 4 + 8 + 8 + 1 + 4] = {0};
	struct wire_rd r;
	struct reply_stream s;
	wire_rd_init(&r, enc, sizeof(enc));
	cr_assert_neq(reply_get_stream(&r, &s), 0);
}

static void put_offset(struct wire_buf *b, const struct reply_offset *o)
{
	uint8_t out[REPLY_OFFSET_SIZE];
	reply_encode_offset(out, o);
	wire_put_bytes(b, out, sizeof(out));
}

static void check_offset(const struct reply_offset *o)
{
	cr_assert_eq(o->partition_id, 3);
	cr_assert_eq(o->current_offset, 100);
	cr_assert_eq(o->stored_offset, 42);
}

Test(reply, consumer_offset)
{
	uint8_t out[REPLY_OFFSET_SIZE];
	reply_encode_offset(out, &(struct reply_offset){3, 100, 42});
	ROUND_TRIP(struct reply_offset, reply_get_offset, put_offset, out, sizeof(out), check_offset);
}

static void check_pat(const struct reply_pat *t)
{
	cr_assert(wire_str_eq(t->name, "ci-token"));
	cr_assert_eq(t->expiry_at, 1700000000000000ull);
}

Test(reply, personal_access_token)
{
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_pat(&b, &(struct reply_pat){str("ci-token"), 1700000000000000ull});
	cr_assert_eq(b.len, 1 + 8 + 8);
	ROUND_TRIP(struct reply_pat, reply_get_pat, reply_put_pat, b.p, b.len, check_pat);
	wire_buf_free(&b);
}

static void check_user(const struct reply_user *u)
{
	cr_assert_eq(u->id, 1);
	cr_assert_eq(u->created_at, 77);
	cr_assert_eq(u->status, 2);
	cr_assert(wire_str_eq(u->username, "iggy"));
	cr_assert_eq(u->options.len, 0);
}

Test(reply, user_info)
{
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_user(&b, &(struct reply_user){1, 77, 2, str("iggy"), {0}});
	cr_assert_eq(b.len, 4 + 8 + 1 + 1 + 4 + 4);
	ROUND_TRIP(struct reply_user, reply_get_user, reply_put_user, b.p, b.len, check_user);
	wire_buf_free(&b);
}

static void check_group(const struct reply_group *g)
{
	cr_assert_eq(g->id, 9);
	cr_assert_eq(g->partitions_count, 3);
	cr_assert_eq(g->members_count, 2);
	cr_assert(wire_str_eq(g->name, "readers"));
}

Test(reply, consumer_group)
{
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_group(&b, &(struct reply_group){9, 3, 2, str("readers")});
	ROUND_TRIP(struct reply_group, reply_get_group, reply_put_group, b.p, b.len, check_group);
	wire_buf_free(&b);
}

static void check_member(const struct reply_group_member *m)
{
	cr_assert_eq(m->client_id, 0x10000005);
	cr_assert_eq(m->partitions_count, 2);
	cr_assert_eq(reply_group_member_partition(m, 0), 0);
	cr_assert_eq(reply_group_member_partition(m, 1), 2);
}

Test(reply, consumer_group_member)
{
	static const uint32_t ids[] = {0, 2};
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_group_member(&b, &(struct reply_group_member){.client_id = 0x10000005, .partitions_count = 2,
								 .ids = ids});
	cr_assert_eq(b.len, 16);
	ROUND_TRIP(struct reply_group_member, reply_get_group_member, reply_put_group_member, b.p, b.len,
		   check_member);
	/* A partition count beyond the bytes present is refused before anything is read. */
	uint8_t big[12] = {0};
	frame_put32(big + 4, UINT32_MAX);
	struct wire_rd r;
	struct reply_group_member m;
	wire_rd_init(&r, big, sizeof(big));
	cr_assert_neq(reply_get_group_member(&r, &m), 0);
	wire_buf_free(&b);
}

static void check_client(const struct reply_client *c)
{
	cr_assert_eq(c->client_id, 5);
	cr_assert_eq(c->user_id, UINT32_MAX);
	cr_assert_eq(c->transport, 1);
	cr_assert(wire_str_eq(c->address, "127.0.0.1:4000"));
	cr_assert_eq(c->groups_count, 1);
}

static void check_client_group(const struct reply_client_group *g)
{
	cr_assert_eq(g->stream_id, 1);
	cr_assert_eq(g->topic_id, 2);
	cr_assert_eq(g->group_id, 3);
}

Test(reply, client_info)
{
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_client(&b, &(struct reply_client){5, UINT32_MAX, 1, str("127.0.0.1:4000"), 1});
	ROUND_TRIP(struct reply_client, reply_get_client, reply_put_client, b.p, b.len, check_client);
	wire_buf_reset(&b);
	reply_put_client_group(&b, &(struct reply_client_group){1, 2, 3});
	cr_assert_eq(b.len, REPLY_CLIENT_GROUP_SIZE);
	ROUND_TRIP(struct reply_client_group, reply_get_client_group, reply_put_client_group, b.p, b.len,
		   check_client_group);
	wire_buf_free(&b);
}

static void check_cluster(const struct reply_cluster *c)
{
	cr_assert(wire_str_eq(c->name, "galgo"));
	cr_assert_eq(c->nodes_count, 3);
}

static void check_node(const struct reply_node *n)
{
	cr_assert(wire_str_eq(n->name, "galgo-node-2"));
	cr_assert(wire_str_eq(n->ip, "10.0.0.2"));
	cr_assert_eq(n->tcp, 8090);
	cr_assert_eq(n->quic, 8080);
	cr_assert_eq(n->http, 3000);
	cr_assert_eq(n->websocket, 0);
	cr_assert_eq(n->role, 1);
	cr_assert_eq(n->status, 0);
}

Test(reply, cluster_metadata)
{
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_cluster(&b, &(struct reply_cluster){str("galgo"), 3});
	ROUND_TRIP(struct reply_cluster, reply_get_cluster, reply_put_cluster, b.p, b.len, check_cluster);
	wire_buf_reset(&b);
	reply_put_node(&b, &(struct reply_node){str("galgo-node-2"), str("10.0.0.2"), 8090, 8080, 3000, 0, 1, 0});
	cr_assert_eq(b.len, 4 + 12 + 4 + 8 + 8 + 2);
	ROUND_TRIP(struct reply_node, reply_get_node, reply_put_node, b.p, b.len, check_node);
	wire_buf_free(&b);
}

static void check_stats(const struct reply_stats *s)
{
	cr_assert_eq(s->process_id, 4242);
	cr_assert_float_eq(s->cpu_usage, 12.5f, 0.0f);
	cr_assert_eq(s->messages_count, 1ull << 35);
	cr_assert_eq(s->consumer_groups_count, 6);
	cr_assert(wire_str_eq(s->hostname, "host"));
	cr_assert(wire_str_eq(s->iggy_server_version, "0.9.0"));
	cr_assert_eq(s->iggy_server_semver, 9000);
	cr_assert_eq(s->cache_metrics_count, 1);
	struct reply_cache_metric m;
	reply_stats_cache_metric(s, 0, &m);
	cr_assert_eq(m.stream_id, 1);
	cr_assert_eq(m.topic_id, 2);
	cr_assert_eq(m.partition_id, 3);
	cr_assert_eq(m.hits, 10);
	cr_assert_eq(m.misses, 5);
	cr_assert_float_eq(m.hit_ratio, 0.5f, 0.0f);
	cr_assert_eq(s->threads_count, 1);
	cr_assert_eq(s->total_disk_space, 1ull << 40);
}

Test(reply, stats)
{
	uint8_t metric[REPLY_CACHE_METRIC_SIZE];
	float half = 0.5f;
	uint32_t u;
	memcpy(&u, &half, 4);
	frame_put32(metric, 1);
	frame_put32(metric + 4, 2);
	frame_put32(metric + 8, 3);
	frame_put64(metric + 12, 10);
	frame_put64(metric + 20, 5);
	frame_put32(metric + 28, u);
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_stats(&b, &(struct reply_stats){.process_id = 4242, .cpu_usage = 12.5f,
						  .messages_count = 1ull << 35, .consumer_groups_count = 6,
						  .hostname = str("host"), .os_name = str("Linux"),
						  .os_version = str("#1"), .kernel_version = str("6.1"),
						  .iggy_server_version = str("0.9.0"), .iggy_server_semver = 9000,
						  .cache_metrics_count = 1, .cache_metrics = metric, .threads_count = 1,
						  .total_disk_space = 1ull << 40});
	ROUND_TRIP(struct reply_stats, reply_get_stats, reply_put_stats, b.p, b.len, check_stats);
	wire_buf_free(&b);
}

/* ---- Galgo's extensions ---- */

static void check_leaders_node(const struct reply_leaders_node *n)
{
	cr_assert_eq(n->id, 2);
	cr_assert(wire_str_eq(n->host, "node-2.galgo"));
	cr_assert_eq(n->tcp, 8090);
	cr_assert_eq(n->quic, 0);
	cr_assert_eq(n->http, 3000);
}

static void check_leaders_part(const struct reply_leaders_part *p)
{
	cr_assert_eq(p->stream_id, 1);
	cr_assert_eq(p->topic_id, 2);
	cr_assert_eq(p->partition_id, 3);
	cr_assert_eq(p->leader, 2);
	cr_assert_eq(p->epoch, 7);
	cr_assert_eq(p->replica_count, 3);
	cr_assert_eq(reply_leaders_part_replica(p, 0), 1);
	cr_assert_eq(reply_leaders_part_replica(p, 2), 3);
}

static void check_node_status(const struct reply_node_status *s)
{
	cr_assert_eq(s->connected, 1);
	cr_assert_eq(s->role, 3);
}

static void check_not_leader(const struct reply_not_leader *n)
{
	cr_assert_eq(n->leader, 3);
	cr_assert_eq(n->epoch, 12);
	cr_assert(wire_str_eq(n->host, "::1"));
	cr_assert_eq(n->tcp, 8103);
}

Test(reply, partition_leaders)
{
	static const uint32_t replicas[] = {1, 2, 3};
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_leaders_node(&b, &(struct reply_leaders_node){2, str("node-2.galgo"), 8090, 0, 3000});
	ROUND_TRIP(struct reply_leaders_node, reply_get_leaders_node, reply_put_leaders_node, b.p, b.len,
		   check_leaders_node);
	wire_buf_reset(&b);
	reply_put_leaders_part(&b, &(struct reply_leaders_part){1, 2, 3, 2, 7, 3, replicas, NULL});
	cr_assert_eq(b.len, 4 * 4 + 8 + 1 + 3 * 4);
	ROUND_TRIP(struct reply_leaders_part, reply_get_leaders_part, reply_put_leaders_part, b.p, b.len,
		   check_leaders_part);
	wire_buf_reset(&b);
	reply_put_node_status(&b, &(struct reply_node_status){1, 3});
	ROUND_TRIP(struct reply_node_status, reply_get_node_status, reply_put_node_status, b.p, b.len,
		   check_node_status);
	wire_buf_reset(&b);
	reply_put_not_leader(&b, &(struct reply_not_leader){3, 12, str("::1"), 8103});
	cr_assert_eq(b.len, 4 + 8 + 1 + 3 + 2);
	ROUND_TRIP(struct reply_not_leader, reply_get_not_leader, reply_put_not_leader, b.p, b.len, check_not_leader);
	wire_buf_free(&b);
}

/* ---- Answers of writes and DescribeOptions ---- */

static void check_sent(const struct reply_sent *s)
{
	cr_assert_eq(s->stream_id, 1);
	cr_assert_eq(s->topic_id, 2);
	cr_assert_eq(s->partition_id, 0);
	cr_assert_eq(s->base_offset, UINT64_MAX);
}

static void check_pat_token(const struct reply_pat_token *t)
{
	cr_assert(wire_str_eq(t->token, "abcdefghijklmnopqrstuvwxyz012345"));
}

static void check_option_info(const struct reply_option_info *o)
{
	cr_assert(wire_str_eq(o->key, "dedup_window"));
	cr_assert_eq(o->kind, WIRE_KIND_UINT64);
	cr_assert_eq(o->default_value.len, 8);
	cr_assert_eq(frame_le64(o->default_value.ptr), 0);
	cr_assert(wire_str_eq(o->description, "ids remembered"));
}

Test(reply, writes_and_options)
{
	uint8_t zero[8] = {0};
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_sent(&b, &(struct reply_sent){1, 2, 0, UINT64_MAX});
	cr_assert_eq(b.len, REPLY_SENT_SIZE);
	ROUND_TRIP(struct reply_sent, reply_get_sent, reply_put_sent, b.p, b.len, check_sent);
	wire_buf_reset(&b);
	reply_put_pat_token(&b, &(struct reply_pat_token){str("abcdefghijklmnopqrstuvwxyz012345")});
	ROUND_TRIP(struct reply_pat_token, reply_get_pat_token, reply_put_pat_token, b.p, b.len, check_pat_token);
	wire_buf_reset(&b);
	reply_put_option_info(&b, &(struct reply_option_info){str("dedup_window"), WIRE_KIND_UINT64, {zero, 8},
							      str("ids remembered")});
	ROUND_TRIP(struct reply_option_info, reply_get_option_info, reply_put_option_info, b.p, b.len,
		   check_option_info);
	wire_buf_free(&b);
}

static void check_login(const struct reply_login *l)
{
	cr_assert_eq(l->user_id, 1);
	cr_assert_eq(l->session, 0x1122334455667788ull);
	cr_assert_eq(l->protocol_version, FRAME_PROTOCOL_VERSION);
	cr_assert(wire_str_eq(l->server_version, "0.9.0"));
}

Test(reply, login)
{
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_login(&b, &(struct reply_login){1, 0x1122334455667788ull, FRAME_PROTOCOL_VERSION, str("0.9.0")});
	cr_assert_eq(b.len, 4 + 8 + 4 + 1 + 5);
	ROUND_TRIP(struct reply_login, reply_get_login, reply_put_login, b.p, b.len, check_login);
	wire_buf_free(&b);
}
