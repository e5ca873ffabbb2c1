/*
 * Tests of the metadata state machine (node/meta.h) and its byte formats (node/metarec.h): the
 * semantics of each command, determinism, codec round trips and robustness, snapshot round trips. (Its
 * persistence is the metadata Raft group's: tests/unit/test_raft.c and test_cluster.c.)
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "node/log.h"
#include "node/meta.h"
#include "node/metarec.h"
#include "partition/piosim.h"
#include "proto/wire.h"

/* ---- Helpers ---- */

static struct meta_cmd cmd(uint8_t type)
{
	struct meta_cmd c;
	memset(&c, 0, sizeof(c));
	c.type = type;
	c.ts = 1700000000000000ull;
	return c;
}

static struct meta_cmd named(uint8_t type, const char *name)
{
	struct meta_cmd c = cmd(type);
	c.name = name;
	c.name_len = (uint8_t)strlen(name);
	return c;
}

static int apply(struct meta *m, struct meta_cmd c)
{
	return meta_apply(m, &c, NULL);
}

/* Applies a command that must succeed and returns the id it created. */
static uint32_t ok(struct meta *m, struct meta_cmd c)
{
	struct meta_result r;
	int rv = meta_apply(m, &c, &r);
	cr_assert_eq(rv, META_OK, "command %u failed with %d", c.type, rv);
	return r.id;
}

static uint32_t mk_stream(struct meta *m, const char *name)
{
	return ok(m, named(META_CREATE_STREAM, name));
}

static uint32_t mk_topic_rf(struct meta *m, uint32_t stream, const char *name, uint32_t parts, uint8_t rf)
{
	struct meta_cmd c = named(META_CREATE_TOPIC, name);
	c.stream_id = stream;
	c.count = parts;
	c.compression = META_COMPRESSION_NONE;
	c.message_expiry = META_NEVER;
	c.max_topic_size = META_NEVER;
	c.replication_factor = rf;
	return ok(m, c);
}

static uint32_t mk_topic(struct meta *m, uint32_t stream, const char *name, uint32_t parts)
{
	return mk_topic_rf(m, stream, name, parts, 0);
}

static const char HASH[] = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo";

static uint32_t mk_user(struct meta *m, const char *name)
{
	struct meta_cmd c = named(META_CREATE_USER, name);
	c.password_hash = HASH;
	c.status = META_USER_ACTIVE;
	return ok(m, c);
}

static struct meta_cmd group_cmd(uint8_t type, uint32_t s, uint32_t t, uint32_t g, uint32_t client)
{
	struct meta_cmd c = cmd(type);
	c.stream_id = s;
	c.topic_id = t;
	c.group_id = g;
	c.client_id = client;
	return c;
}

static uint32_t mk_group(struct meta *m, uint32_t s, uint32_t t, const char *name)
{
	struct meta_cmd c = named(META_CREATE_GROUP, name);
	c.stream_id = s;
	c.topic_id = t;
	return ok(m, c);
}

static struct meta_cmd offset_cmd(uint8_t type, uint32_t s, uint32_t t, uint8_t kind, uint32_t consumer,
				  uint32_t partition, uint64_t offset)
{
	struct meta_cmd c = cmd(type);
	c.stream_id = s;
	c.topic_id = t;
	c.consumer_kind = kind;
	c.consumer_id = consumer;
	c.partition_id = partition;
	c.offset = offset;
	return c;
}

/* The snapshot bytes of a state (its canonical form). */
static uint8_t *snap(const struct meta *m, size_t *len)
{
	struct wire_buf b;
	wire_buf_init(&b);
	cr_assert_eq(metarec_snapshot_encode(m, &b), 0);
	uint8_t *p = wire_buf_take(&b, len);
	cr_assert_not_null(p);
	return p;
}

static bool same_state(const struct meta *a, const struct meta *b)
{
	size_t la, lb;
	uint8_t *pa = snap(a, &la), *pb = snap(b, &lb);
	bool same = la == lb && memcmp(pa, pb, la) == 0;
	free(pa);
	free(pb);
	return same;
}

static void assert_partitions(const struct meta_member *mb, uint32_t n, const uint32_t *expect)
{
	cr_assert_eq(mb->n_partitions, n, "client %u has %u partitions, expected %u", mb->client_id,
		     mb->n_partitions, n);
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(mb->partitions[i], expect[i]);
}

/* ---- A scripted generator of random-ish commands (fixed seed) ---- */

struct gen {
	uint64_t s;
	uint64_t ts;
};

static uint32_t rnd(struct gen *g, uint32_t n)
{
	g->s ^= g->s << 13;
	g->s ^= g->s >> 7;
	g->s ^= g->s << 17;
	return n ? (uint32_t)(g->s % n) : 0;
}

/* A generated command with the memory its pointers refer to (not to be copied once filled). */
struct gcmd {
	struct meta_cmd c;
	char name[32];
	char hash[96];
	uint8_t token[32];
	struct meta_perms perms;
	struct meta_perm_stream ps[2];
	struct meta_perm_topic pt[2][2];
};

static void gen_perms(struct gen *g, struct gcmd *x)
{
	struct meta_perms *p = &x->perms;
	p->manage_servers = rnd(g, 2);
	p->read_users = rnd(g, 2);
	p->read_streams = rnd(g, 2);
	p->send_messages = rnd(g, 2);
	p->n_streams = rnd(g, 3);
	p->streams = p->n_streams ? x->ps : NULL;
	for (uint32_t i = 0; i < p->n_streams; i++) {
		struct meta_perm_stream *s = &x->ps[i];
		s->stream_id = i * 3 + rnd(g, 3);
		s->read_stream = rnd(g, 2);
		s->poll_messages = rnd(g, 2);
		s->n_topics = rnd(g, 3);
		s->topics = s->n_topics ? x->pt[i] : NULL;
		for (uint32_t k = 0; k < s->n_topics; k++) {
			x->pt[i][k].topic_id = k * 2 + rnd(g, 2);
			x->pt[i][k].send_messages = rnd(g, 2);
			x->pt[i][k].manage_topic = rnd(g, 2);
		}
	}
}

/* A node table entry for commands. */
static struct meta_node node_at(uint32_t id)
{
	struct meta_node n = {.id = id, .raft_port = (uint16_t)(8400 + id), .tcp_port = (uint16_t)(8100 + id)};
	snprintf(n.host, sizeof(n.host), "galgo-%u.galgo", id);
	return n;
}

static struct meta_cmd init_cmd(uint32_t n, uint8_t rf)
{
	struct meta_cmd c = {.type = META_NODES_INIT, .replication_factor = rf, .n_nodes = (uint8_t)n};
	for (uint32_t i = 0; i < n; i++)
		c.nodes[i] = node_at(i + 1);
	return c;
}

static void gen_next(struct gen *g, struct gcmd *x)
{
	static const char *const words[] = {"alpha", "bravo", "carol", "delta", "echo"};
	static const uint8_t types[] = {
		META_CREATE_STREAM, META_CREATE_STREAM, META_CREATE_STREAM, META_UPDATE_STREAM, META_DELETE_STREAM,
		META_PURGE_STREAM, META_CREATE_TOPIC, META_CREATE_TOPIC, META_CREATE_TOPIC, META_CREATE_TOPIC,
		META_UPDATE_TOPIC, META_DELETE_TOPIC, META_PURGE_TOPIC, META_CREATE_PARTITIONS,
		META_CREATE_PARTITIONS, META_DELETE_PARTITIONS, META_CREATE_USER, META_CREATE_USER, META_UPDATE_USER,
		META_DELETE_USER, META_CHANGE_PASSWORD, META_UPDATE_PERMISSIONS, META_CREATE_PAT, META_CREATE_PAT,
		META_DELETE_PAT, META_CREATE_GROUP, META_CREATE_GROUP, META_CREATE_GROUP, META_DELETE_GROUP,
		META_JOIN_GROUP, META_JOIN_GROUP, META_JOIN_GROUP, META_JOIN_GROUP, META_LEAVE_GROUP,
		META_LEAVE_GROUP, META_REMOVE_MEMBER, META_CLEAR_MEMBERS, META_STORE_OFFSET, META_STORE_OFFSET,
		META_STORE_OFFSET, META_STORE_OFFSET, META_DELETE_OFFSET, META_NODE_ADD, META_NODE_REMOVE,
		META_NODE_ADVERTISE,
	};
	memset(x, 0, sizeof(*x));
	struct meta_cmd *c = &x->c;
	c->type = types[rnd(g, sizeof(types))];
	c->ts = g->ts += 1000 + rnd(g, 1000);
	c->stream_id = rnd(g, 4);
	c->topic_id = rnd(g, 3);
	c->group_id = rnd(g, 4);
	c->user_id = rnd(g, 5);
	c->client_id = 1 + rnd(g, 5);
	c->count = rnd(g, 4) + (c->type == META_CREATE_TOPIC ? 0 : 1);
	snprintf(x->name, sizeof(x->name), "%s%u", words[rnd(g, 5)], rnd(g, 2));
	c->name = x->name;
	c->name_len = (uint8_t)strlen(x->name);
	switch (c->type) {
	case META_CREATE_TOPIC:
	case META_UPDATE_TOPIC:
		c->compression = (uint8_t)(1 + rnd(g, 2));
		c->durability = (uint8_t)rnd(g, 3);
		c->replication_factor = (uint8_t)rnd(g, 2);
		c->message_expiry = rnd(g, 2) ? META_NEVER : rnd(g, 1000000);
		c->max_topic_size = rnd(g, 2) ? META_NEVER : (uint64_t)rnd(g, 1000) << 20;
		c->dedup_window = rnd(g, 3) * 1000;
		break;
	case META_CREATE_USER:
	case META_CHANGE_PASSWORD:
	case META_UPDATE_PERMISSIONS:
		snprintf(x->hash, sizeof(x->hash), "%s%u", HASH, rnd(g, 1000));
		c->password_hash = x->hash;
		c->status = (uint8_t)(1 + rnd(g, 2));
		c->has_perms = rnd(g, 2);
		if (c->has_perms) {
			gen_perms(g, x);
			c->perms = &x->perms;
		}
		break;
	case META_UPDATE_USER:
		if (rnd(g, 2)) {
			c->name = NULL;
			c->name_len = 0;
		}
		c->status = (uint8_t)rnd(g, 3);
		break;
	case META_CREATE_PAT:
		for (int i = 0; i < 32; i++)
			x->token[i] = (uint8_t)rnd(g, 256);
		c->token_hash = x->token;
		c->expiry_at = rnd(g, 2) ? 0 : c->ts + 3600000000ull;
		break;
	case META_STORE_OFFSET:
	case META_DELETE_OFFSET:
		c->consumer_kind = (uint8_t)(1 + rnd(g, 2));
		c->consumer_id = rnd(g, 4);
		c->partition_id = rnd(g, 5);
		c->offset = rnd(g, 100000);
		break;
	case META_NODE_ADD:
		c->n_nodes = 1;
		c->nodes[0] = node_at(1 + rnd(g, 6));
		break;
	case META_NODE_REMOVE:
		c->node_id = 1 + rnd(g, 6);
		break;
	case META_NODE_ADVERTISE:
		c->node_id = 1 + rnd(g, 6);
		c->n_nodes = 1;
		memset(&c->nodes[0], 0, sizeof(c->nodes[0]));
		if (rnd(g, 2))
			snprintf(c->nodes[0].adv_host, sizeof(c->nodes[0].adv_host), "10.0.0.%u", rnd(g, 9));
		c->nodes[0].adv_tcp_port = (uint16_t)(rnd(g, 2) ? 8100 + rnd(g, 9) : 0);
		break;
	default:
		break;
	}
}

/* ---- State machine semantics ---- */

Test(meta, streams_topics_and_users_take_the_lowest_free_id_after_deletes)
{
	/* A new stream, topic or user takes the lowest id that is free, reusing ids of deleted ones. */
	struct meta *m = meta_new();
	for (int i = 0; i < 4; i++) {
		char name[8];
		snprintf(name, sizeof(name), "s%d", i);
		cr_assert_eq(mk_stream(m, name), (uint32_t)i);
	}
	struct meta_cmd del = cmd(META_DELETE_STREAM);
	del.stream_id = 1;
	ok(m, del);
	del.stream_id = 3;
	ok(m, del);
	cr_assert_eq(apply(m, del), PROTO_E_STREAM_ID_NOT_FOUND);
	cr_assert_eq(mk_stream(m, "again1"), 1);
	cr_assert_eq(mk_stream(m, "again3"), 3);
	cr_assert_eq(mk_stream(m, "fresh"), 4);

	cr_assert_eq(mk_topic(m, 0, "t0", 1), 0);
	cr_assert_eq(mk_topic(m, 0, "t1", 1), 1);
	cr_assert_eq(mk_topic(m, 0, "t2", 1), 2);
	struct meta_cmd dt = cmd(META_DELETE_TOPIC);
	dt.stream_id = 0;
	dt.topic_id = 0;
	ok(m, dt);
	cr_assert_eq(apply(m, dt), PROTO_E_TOPIC_ID_NOT_FOUND);
	cr_assert_eq(mk_topic(m, 0, "t3", 1), 0);
	cr_assert_eq(mk_topic(m, 0, "t4", 1), 3);
	/* Topic ids are per stream. */
	cr_assert_eq(mk_topic(m, 4, "t0", 1), 0);
	cr_assert_eq(meta_topic(meta_stream(m, 4), 0)->stream_id, 4);

	cr_assert_eq(mk_user(m, "root"), 0);
	cr_assert_eq(mk_user(m, "alice"), 1);
	cr_assert_eq(mk_user(m, "bob"), 2);
	struct meta_cmd du = cmd(META_DELETE_USER);
	du.user_id = 1;
	ok(m, du);
	cr_assert_eq(apply(m, du), PROTO_E_RESOURCE_NOT_FOUND);
	cr_assert_eq(mk_user(m, "carol"), 1);
	cr_assert_eq(mk_user(m, "dave"), 3);
	meta_free(m);
}

Test(meta, consumer_group_ids_are_monotonic_per_topic_and_never_reused)
{
	/* Group ids count up from 0 per topic; a deleted group's id is never given out again. */
	struct meta *m = meta_new();
	mk_stream(m, "s");
	mk_topic(m, 0, "t", 2);
	mk_topic(m, 0, "u", 2);
	cr_assert_eq(mk_group(m, 0, 0, "g0"), 0);
	cr_assert_eq(mk_group(m, 0, 0, "g1"), 1);
	cr_assert_eq(mk_group(m, 0, 1, "g0"), 0);
	ok(m, group_cmd(META_DELETE_GROUP, 0, 0, 1, 0));
	ok(m, group_cmd(META_DELETE_GROUP, 0, 0, 0, 0));
	cr_assert_eq(apply(m, group_cmd(META_DELETE_GROUP, 0, 0, 0, 0)), PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND);
	cr_assert_null(meta_group(meta_topic(meta_stream(m, 0), 0), 0));
	cr_assert_eq(mk_group(m, 0, 0, "g0"), 2);
	cr_assert_eq(mk_group(m, 0, 0, "g3"), 3);
	cr_assert_not_null(meta_group_by_name(meta_topic(meta_stream(m, 0), 0), "g0", 2));
	cr_assert_eq(meta_group_by_name(meta_topic(meta_stream(m, 0), 0), "g0", 2)->id, 2);
	/* A recreated topic starts again from 0. */
	struct meta_cmd dt = cmd(META_DELETE_TOPIC);
	ok(m, dt);
	mk_topic(m, 0, "t", 1);
	cr_assert_eq(mk_group(m, 0, 0, "x"), 0);
	/* Unknown stream or topic. */
	struct meta_cmd c = named(META_CREATE_GROUP, "y");
	c.stream_id = 9;
	cr_assert_eq(apply(m, c), PROTO_E_STREAM_ID_NOT_FOUND);
	c.stream_id = 0;
	c.topic_id = 9;
	cr_assert_eq(apply(m, c), PROTO_E_TOPIC_ID_NOT_FOUND);
	meta_free(m);
}

Test(meta, duplicate_names_are_rejected_with_their_codes_and_change_nothing)
{
	/* Creating or renaming onto a taken name fails with the Iggy code for it and leaves the state as it was. */
	struct meta *m = meta_new();
	mk_user(m, "root");
	mk_user(m, "alice");
	mk_stream(m, "orders");
	mk_stream(m, "spare");
	mk_topic(m, 0, "events", 2);
	mk_topic(m, 0, "other", 2);
	mk_group(m, 0, 0, "workers");
	struct meta_cmd pat = named(META_CREATE_PAT, "ci");
	uint8_t token[32] = {1, 2, 3};
	pat.user_id = 1;
	pat.token_hash = token;
	ok(m, pat);
	size_t before_len;
	uint8_t *before = snap(m, &before_len);

	cr_assert_eq(apply(m, named(META_CREATE_STREAM, "orders")), PROTO_E_STREAM_NAME_ALREADY_EXISTS);
	struct meta_cmd us = named(META_UPDATE_STREAM, "orders");
	us.stream_id = 1;
	cr_assert_eq(apply(m, us), PROTO_E_STREAM_NAME_ALREADY_EXISTS);
	struct meta_cmd ct = named(META_CREATE_TOPIC, "events");
	ct.compression = META_COMPRESSION_NONE;
	cr_assert_eq(apply(m, ct), PROTO_E_TOPIC_NAME_ALREADY_EXISTS);
	struct meta_cmd ut = named(META_UPDATE_TOPIC, "events");
	ut.topic_id = 1;
	ut.compression = META_COMPRESSION_NONE;
	cr_assert_eq(apply(m, ut), PROTO_E_TOPIC_NAME_ALREADY_EXISTS);
	struct meta_cmd cg = named(META_CREATE_GROUP, "workers");
	cr_assert_eq(apply(m, cg), PROTO_E_CONSUMER_GROUP_NAME_ALREADY_EXISTS);
	struct meta_cmd cu = named(META_CREATE_USER, "alice");
	cu.password_hash = HASH;
	cu.status = META_USER_ACTIVE;
	cr_assert_eq(apply(m, cu), PROTO_E_USER_ALREADY_EXISTS);
	struct meta_cmd uu = named(META_UPDATE_USER, "root");
	uu.user_id = 1;
	cr_assert_eq(apply(m, uu), PROTO_E_USER_ALREADY_EXISTS);
	cr_assert_eq(apply(m, pat), PROTO_E_PERSONAL_ACCESS_TOKEN_ALREADY_EXISTS);
	/* Names are bytes: a different case is a different name; renaming to its own name is fine. */
	cr_assert_eq(apply(m, named(META_CREATE_STREAM, "Orders")), META_OK);
	us.stream_id = 0;
	cr_assert_eq(apply(m, us), META_OK);

	/* Invalid values change nothing either. */
	size_t mid_len;
	uint8_t *mid = snap(m, &mid_len);
	cr_assert_eq(apply(m, named(META_CREATE_STREAM, "")), PROTO_E_INVALID_OPTION_VALUE);
	cu = named(META_CREATE_USER, "ab");
	cu.password_hash = HASH;
	cu.status = META_USER_ACTIVE;
	cr_assert_eq(apply(m, cu), PROTO_E_INVALID_USERNAME);
	ct = named(META_CREATE_TOPIC, "new");
	ct.compression = 3;
	cr_assert_eq(apply(m, ct), PROTO_E_INVALID_OPTION_VALUE);
	ct.compression = META_COMPRESSION_GZIP;
	ct.count = META_MAX_PARTITIONS + 1;
	cr_assert_eq(apply(m, ct), PROTO_E_INVALID_PARTITIONS_COUNT);
	struct meta_cmd bad = cmd(200);
	cr_assert_eq(apply(m, bad), PROTO_E_INVALID_OPTION_VALUE);
	size_t after_len;
	uint8_t *after = snap(m, &after_len);
	cr_assert_eq(after_len, mid_len);
	cr_assert_eq(memcmp(after, mid, mid_len), 0, "a failed command changed the state");
	cr_assert_neq(before_len == mid_len && memcmp(before, mid, mid_len) == 0, true);
	free(before);
	free(mid);
	free(after);
	meta_free(m);
}

Test(meta, partitions_are_added_and_removed_at_the_end_and_take_their_offsets_with_them)
{
	/* CreatePartitions appends partitions stamped with the command's time; DeletePartitions drops the last ones. */
	struct meta *m = meta_new();
	mk_stream(m, "s");
	mk_topic(m, 0, "t", 2);
	struct meta_topic *t = meta_topic(meta_stream(m, 0), 0);
	cr_assert_eq(t->n_partitions, 2);
	struct meta_cmd cp = cmd(META_CREATE_PARTITIONS);
	cp.count = 3;
	cp.ts = 42;
	ok(m, cp);
	cr_assert_eq(t->n_partitions, 5);
	cr_assert_eq(t->partitions[4].created_at, 42);
	cr_assert_eq(t->partitions[1].created_at, 1700000000000000ull);
	ok(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER, 1, 4, 10));
	ok(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER, 1, 1, 11));
	struct meta_cmd dp = cmd(META_DELETE_PARTITIONS);
	dp.count = 2;
	ok(m, dp);
	cr_assert_eq(t->n_partitions, 3);
	cr_assert_null(meta_offset_get(t, META_CONSUMER, 1, 4));
	cr_assert_not_null(meta_offset_get(t, META_CONSUMER, 1, 1));
	/* Counts: zero, more than exist, more than the per-request limit. */
	dp.count = 4;
	cr_assert_eq(apply(m, dp), PROTO_E_INVALID_PARTITIONS_COUNT);
	dp.count = 0;
	cr_assert_eq(apply(m, dp), PROTO_E_INVALID_PARTITIONS_COUNT);
	cp.count = META_MAX_PARTITIONS + 1;
	cr_assert_eq(apply(m, cp), PROTO_E_INVALID_PARTITIONS_COUNT);
	cp.topic_id = 5;
	cp.count = 1;
	cr_assert_eq(apply(m, cp), PROTO_E_TOPIC_ID_NOT_FOUND);
	dp.count = 3;
	ok(m, dp);
	cr_assert_eq(t->n_partitions, 0);
	meta_free(m);
}

Test(meta, group_partitions_are_dealt_round_robin_and_every_change_bumps_the_generation)
{
	/* Joins, leaves and partition changes re-deal partitions p to member p mod n and bump the generation. */
	struct meta *m = meta_new();
	mk_stream(m, "s");
	mk_topic(m, 0, "t", 7);
	mk_group(m, 0, 0, "g");
	struct meta_group *g = meta_group(meta_topic(meta_stream(m, 0), 0), 0);
	cr_assert_eq(g->generation, 0);
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, 10));
	cr_assert_eq(g->generation, 1);
	assert_partitions(&g->members[0], 7, (uint32_t[]){0, 1, 2, 3, 4, 5, 6});
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, 20));
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, 30));
	cr_assert_eq(g->generation, 3);
	cr_assert_eq(g->n_members, 3);
	assert_partitions(meta_group_member(g, 10), 3, (uint32_t[]){0, 3, 6});
	assert_partitions(meta_group_member(g, 20), 2, (uint32_t[]){1, 4});
	assert_partitions(meta_group_member(g, 30), 2, (uint32_t[]){2, 5});
	/* The first member leaves: the others move up in join order. */
	ok(m, group_cmd(META_LEAVE_GROUP, 0, 0, 0, 10));
	cr_assert_eq(g->generation, 4);
	cr_assert_null(meta_group_member(g, 10));
	assert_partitions(meta_group_member(g, 20), 4, (uint32_t[]){0, 2, 4, 6});
	assert_partitions(meta_group_member(g, 30), 3, (uint32_t[]){1, 3, 5});
	/* Partition changes re-deal too. */
	struct meta_cmd dp = cmd(META_DELETE_PARTITIONS);
	dp.count = 5;
	ok(m, dp);
	cr_assert_eq(g->generation, 5);
	assert_partitions(meta_group_member(g, 20), 1, (uint32_t[]){0});
	assert_partitions(meta_group_member(g, 30), 1, (uint32_t[]){1});
	dp.count = 1;
	ok(m, dp);
	cr_assert_eq(g->generation, 6);
	assert_partitions(meta_group_member(g, 20), 1, (uint32_t[]){0});
	assert_partitions(meta_group_member(g, 30), 0, NULL);
	struct meta_cmd cp = cmd(META_CREATE_PARTITIONS);
	cp.count = 3;
	ok(m, cp);
	cr_assert_eq(g->generation, 7);
	assert_partitions(meta_group_member(g, 20), 2, (uint32_t[]){0, 2});
	assert_partitions(meta_group_member(g, 30), 2, (uint32_t[]){1, 3});
	/* A client that goes away leaves every group it is in; other groups are untouched. */
	mk_group(m, 0, 0, "h");
	struct meta_group *h = meta_group(meta_topic(meta_stream(m, 0), 0), 1);
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 1, 30));
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 1, 40));
	struct meta_cmd rm = cmd(META_REMOVE_MEMBER);
	rm.client_id = 30;
	ok(m, rm);
	cr_assert_eq(g->generation, 8);
	cr_assert_eq(h->generation, 3);
	assert_partitions(meta_group_member(g, 20), 4, (uint32_t[]){0, 1, 2, 3});
	assert_partitions(meta_group_member(h, 40), 4, (uint32_t[]){0, 1, 2, 3});
	rm.client_id = 99;
	ok(m, rm);
	cr_assert_eq(g->generation, 8);
	/* A restart clears every member and bumps the generation of groups that had members. */
	mk_group(m, 0, 0, "empty");
	ok(m, cmd(META_CLEAR_MEMBERS));
	cr_assert_eq(g->n_members, 0);
	cr_assert_eq(h->n_members, 0);
	cr_assert_eq(g->generation, 9);
	cr_assert_eq(meta_group(meta_topic(meta_stream(m, 0), 0), 2)->generation, 0);
	/* Members can join again after that. */
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, 50));
	assert_partitions(meta_group_member(g, 50), 4, (uint32_t[]){0, 1, 2, 3});
	cr_assert_eq(apply(m, group_cmd(META_JOIN_GROUP, 0, 0, 7, 50)), PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND);
	meta_free(m);
}

Test(meta, a_restarted_node_s_members_leave_every_group_and_the_others_take_their_partitions)
{
	/* Client ids carry the node's roster position in their top 5 bits: node 1's are 1 << 27 | n. */
	struct meta *m = meta_new();
	mk_stream(m, "s");
	mk_topic(m, 0, "t", 4);
	mk_group(m, 0, 0, "g");
	uint32_t a1 = (1u << 27) | 1, b1 = (2u << 27) | 1, a2 = (1u << 27) | 2;
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, a1));
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, b1));
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, a2));
	struct meta_group *g = meta_group(meta_topic(meta_stream(m, 0), 0), 0);
	cr_assert_eq(g->n_members, 3);
	uint64_t gen = g->generation;
	struct meta_cmd c = cmd(META_CLEAR_NODE_MEMBERS);
	c.client_id = 1u << 27;
	ok(m, c);
	cr_assert_eq(g->n_members, 1);
	cr_assert_null(meta_group_member(g, a1));
	cr_assert_null(meta_group_member(g, a2));
	assert_partitions(meta_group_member(g, b1), 4, (uint32_t[]){0, 1, 2, 3});
	cr_assert_gt(g->generation, gen);
	/* Nothing of that node left: a second clear changes nothing. */
	gen = g->generation;
	ok(m, c);
	cr_assert_eq(g->generation, gen);
	meta_free(m);
}

Test(meta, a_removed_node_s_members_leave_every_group)
{
	/*
	 * No node runs a removed node's sessions any more, so nothing else would remove its members: they
	 * must leave with it, or they keep their partitions from every other member for good.
	 */
	struct meta *m = meta_new();
	ok(m, init_cmd(3, 3));
	mk_stream(m, "s");
	mk_topic(m, 0, "t", 3);
	mk_group(m, 0, 0, "g");
	uint32_t a = (2u << 27) | 1, b = (3u << 27) | 1;
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, a));
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, b));
	struct meta_group *g = meta_group(meta_topic(meta_stream(m, 0), 0), 0);
	cr_assert_eq(g->n_members, 2);
	uint64_t gen = g->generation;
	struct meta_cmd rm = {.type = META_NODE_REMOVE, .node_id = 2};
	ok(m, rm);
	cr_assert_eq(g->n_members, 1);
	cr_assert_null(meta_group_member(g, a));
	assert_partitions(meta_group_member(g, b), 3, (uint32_t[]){0, 1, 2});
	cr_assert_gt(g->generation, gen);
	/* The removed node may still run: its clients cannot join again (nothing would remove them later). */
	gen = g->generation;
	cr_assert_eq(apply(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, (2u << 27) | 2)), PROTO_E_NODE_NOT_FOUND);
	cr_assert_eq(g->n_members, 1);
	cr_assert_eq(g->generation, gen);
	meta_free(m);
}

Test(meta, joining_a_group_twice_is_a_no_op)
{
	/* A second join by a member changes neither the members, their partitions nor the generation. */
	struct meta *m = meta_new();
	mk_stream(m, "s");
	mk_topic(m, 0, "t", 4);
	mk_group(m, 0, 0, "g");
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, 1));
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, 2));
	struct meta_group *g = meta_group(meta_topic(meta_stream(m, 0), 0), 0);
	uint64_t gen = g->generation;
	cr_assert_eq(apply(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, 1)), META_OK);
	cr_assert_eq(g->generation, gen);
	cr_assert_eq(g->n_members, 2);
	assert_partitions(meta_group_member(g, 1), 2, (uint32_t[]){0, 2});
	assert_partitions(meta_group_member(g, 2), 2, (uint32_t[]){1, 3});
	meta_free(m);
}

Test(meta, leaving_a_group_one_is_not_a_member_of_fails_with_5006)
{
	/* LeaveConsumerGroup by a client that is not a member fails with MEMBER_NOT_FOUND and changes nothing. */
	struct meta *m = meta_new();
	mk_stream(m, "s");
	mk_topic(m, 0, "t", 2);
	mk_group(m, 0, 0, "g");
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, 1));
	size_t l1;
	uint8_t *s1 = snap(m, &l1);
	cr_assert_eq(apply(m, group_cmd(META_LEAVE_GROUP, 0, 0, 0, 2)), PROTO_E_CONSUMER_GROUP_MEMBER_NOT_FOUND);
	size_t l2;
	uint8_t *s2 = snap(m, &l2);
	cr_assert(l1 == l2 && memcmp(s1, s2, l1) == 0);
	ok(m, group_cmd(META_LEAVE_GROUP, 0, 0, 0, 1));
	cr_assert_eq(apply(m, group_cmd(META_LEAVE_GROUP, 0, 0, 0, 1)), PROTO_E_CONSUMER_GROUP_MEMBER_NOT_FOUND);
	cr_assert_eq(apply(m, group_cmd(META_LEAVE_GROUP, 0, 0, 3, 1)), PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND);
	free(s1);
	free(s2);
	meta_free(m);
}

Test(meta, offsets_are_stored_read_overwritten_and_deleted)
{
	/* StoreOffset creates or overwrites; DeleteOffset removes and fails with 3021 when there is none. */
	struct meta *m = meta_new();
	mk_stream(m, "s");
	mk_topic(m, 0, "t", 3);
	mk_group(m, 0, 0, "g");
	struct meta_topic *t = meta_topic(meta_stream(m, 0), 0);
	ok(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER, 7, 1, 100));
	ok(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER_GROUP, 0, 1, 200));
	ok(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER, 7, 2, 300));
	cr_assert_eq(meta_offset_get(t, META_CONSUMER, 7, 1)->offset, 100);
	cr_assert_eq(meta_offset_get(t, META_CONSUMER_GROUP, 0, 1)->offset, 200);
	cr_assert_null(meta_offset_get(t, META_CONSUMER, 0, 1)); /* Kinds are separate. */
	ok(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER, 7, 1, 150));
	cr_assert_eq(meta_offset_get(t, META_CONSUMER, 7, 1)->offset, 150);
	cr_assert_eq(t->n_offsets, 3);
	/* Errors. */
	cr_assert_eq(apply(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER, 7, 3, 1)),
		     PROTO_E_PARTITION_NOT_FOUND);
	cr_assert_eq(apply(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER_GROUP, 5, 0, 1)),
		     PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND);
	cr_assert_eq(apply(m, offset_cmd(META_STORE_OFFSET, 0, 0, 3, 7, 0, 1)), PROTO_E_INVALID_OPTION_VALUE);
	cr_assert_eq(apply(m, offset_cmd(META_STORE_OFFSET, 1, 0, META_CONSUMER, 7, 0, 1)),
		     PROTO_E_STREAM_ID_NOT_FOUND);
	/* Delete. */
	ok(m, offset_cmd(META_DELETE_OFFSET, 0, 0, META_CONSUMER, 7, 1, 0));
	cr_assert_null(meta_offset_get(t, META_CONSUMER, 7, 1));
	cr_assert_eq(meta_offset_get(t, META_CONSUMER, 7, 2)->offset, 300);
	cr_assert_eq(apply(m, offset_cmd(META_DELETE_OFFSET, 0, 0, META_CONSUMER, 7, 1, 0)),
		     PROTO_E_CONSUMER_OFFSET_NOT_FOUND);
	/* A deleted group's offsets go with it. */
	ok(m, group_cmd(META_DELETE_GROUP, 0, 0, 0, 0));
	cr_assert_null(meta_offset_get(t, META_CONSUMER_GROUP, 0, 1));
	cr_assert_eq(t->n_offsets, 1);
	meta_free(m);
}

Test(meta, the_root_user_cannot_be_deleted_nor_have_its_permissions_changed)
{
	/* User 0 is root: DeleteUser fails with 48 and UpdatePermissions with 49; other users can be. */
	struct meta *m = meta_new();
	mk_user(m, "iggy");
	mk_user(m, "alice");
	struct meta_cmd du = cmd(META_DELETE_USER);
	cr_assert_eq(apply(m, du), PROTO_E_CANNOT_DELETE_USER);
	struct meta_perms p = {.read_streams = true};
	struct meta_cmd up = cmd(META_UPDATE_PERMISSIONS);
	up.has_perms = true;
	up.perms = &p;
	cr_assert_eq(apply(m, up), PROTO_E_CANNOT_CHANGE_PERMISSIONS);
	up.user_id = 1;
	ok(m, up);
	cr_assert(meta_user(m, 1)->has_perms && meta_user(m, 1)->perms.read_streams);
	du.user_id = 1;
	ok(m, du);
	cr_assert_not_null(meta_user(m, 0));
	cr_assert_null(meta_user(m, 1));
	meta_free(m);
}

Test(meta, users_passwords_and_personal_access_tokens_follow_their_rules)
{
	/* Update, password change and PAT create/delete succeed on the right user and fail with the right codes. */
	struct meta *m = meta_new();
	mk_user(m, "iggy");
	mk_user(m, "alice");
	struct meta_cmd uu = named(META_UPDATE_USER, "alicia");
	uu.user_id = 1;
	uu.status = META_USER_INACTIVE;
	ok(m, uu);
	cr_assert_str_eq(meta_user(m, 1)->username, "alicia");
	cr_assert_eq(meta_user(m, 1)->status, META_USER_INACTIVE);
	uu.name = NULL;
	uu.name_len = 0;
	uu.status = 0;
	ok(m, uu);
	cr_assert_str_eq(meta_user(m, 1)->username, "alicia");
	cr_assert_eq(meta_user(m, 1)->status, META_USER_INACTIVE);
	uu.status = 9;
	cr_assert_eq(apply(m, uu), PROTO_E_INVALID_OPTION_VALUE);
	uu.user_id = 5;
	cr_assert_eq(apply(m, uu), PROTO_E_RESOURCE_NOT_FOUND);

	struct meta_cmd cp = cmd(META_CHANGE_PASSWORD);
	cp.user_id = 1;
	cp.password_hash = "$argon2id$new";
	ok(m, cp);
	cr_assert_str_eq(meta_user(m, 1)->password_hash, "$argon2id$new");
	cp.password_hash = NULL;
	cr_assert_eq(apply(m, cp), PROTO_E_INVALID_OPTION_VALUE);
	cr_assert_str_eq(meta_user(m, 1)->password_hash, "$argon2id$new");

	uint8_t token[32];
	memset(token, 0xab, sizeof(token));
	struct meta_cmd pat = named(META_CREATE_PAT, "t0");
	pat.user_id = 1;
	pat.token_hash = token;
	pat.expiry_at = 77;
	for (int i = 0; i < META_MAX_PATS_PER_USER; i++) {
		char name[8];
		snprintf(name, sizeof(name), "t%d", i);
		pat.name = name;
		pat.name_len = (uint8_t)strlen(name);
		ok(m, pat);
	}
	pat.name = "one-more";
	pat.name_len = 8;
	cr_assert_eq(apply(m, pat), PROTO_E_PERSONAL_ACCESS_TOKENS_LIMIT_REACHED);
	cr_assert_eq(meta_user(m, 1)->pats[0].expiry_at, 77);
	struct meta_cmd dp = named(META_DELETE_PAT, "t0");
	dp.user_id = 1;
	ok(m, dp);
	cr_assert_eq(apply(m, dp), PROTO_E_RESOURCE_NOT_FOUND);
	cr_assert_eq(meta_user(m, 1)->n_pats, META_MAX_PATS_PER_USER - 1);
	ok(m, pat);
	meta_free(m);
}

Test(meta, the_same_commands_from_the_same_state_give_the_same_state)
{
	/* Two fresh states that apply the same 200 scripted commands encode to the same snapshot bytes. */
	struct meta *a = meta_new(), *b = meta_new();
	struct gen g1 = {0x9e3779b97f4a7c15ull, 0}, g2 = g1;
	int oks = 0;
	for (int i = 0; i < 200; i++) {
		struct gcmd x, y;
		gen_next(&g1, &x);
		gen_next(&g2, &y);
		int ra = meta_apply(a, &x.c, NULL);
		int rb = meta_apply(b, &y.c, NULL);
		cr_assert_eq(ra, rb);
		oks += ra == META_OK;
	}
	cr_assert_gt(oks, 60, "the script should mostly succeed (%d of 200)", oks);
	cr_assert(same_state(a, b));
	cr_assert_eq(a->applied, (uint64_t)oks);
	meta_free(a);
	meta_free(b);
}

/* Checks the state's invariants: ids match slots, names are unique, assignments and offsets are sound. */
static void check_invariants(const struct meta *m)
{
	for (uint32_t i = 0; i < m->n_streams; i++) {
		const struct meta_stream *s = m->streams[i];
		if (s == NULL)
			continue;
		cr_assert_eq(s->id, i);
		cr_assert_eq(meta_stream_by_name(m, s->name, strlen(s->name)), s, "stream names are not unique");
		for (uint32_t k = 0; k < s->n_topics; k++) {
			const struct meta_topic *t = s->topics[k];
			if (t == NULL)
				continue;
			cr_assert_eq(t->id, k);
			cr_assert_eq(t->stream_id, i);
			cr_assert_eq(meta_topic_by_name(s, t->name, strlen(t->name)), t, "topic names are not unique");
			uint32_t last_id = 0;
			bool first = true;
			for (uint32_t gi = 0; gi < t->n_groups; gi++) {
				const struct meta_group *g = t->groups[gi];
				if (g == NULL)
					continue;
				cr_assert(first || g->id > last_id, "group ids are not increasing");
				cr_assert_lt(g->id, t->next_group_id);
				first = false;
				last_id = g->id;
				cr_assert_eq(meta_group_by_name(t, g->name, strlen(g->name)), g, "group names are not unique");
				/* Partition p belongs to member p mod n, in ascending order. */
				uint32_t n = g->n_members;
				for (uint32_t mi = 0; mi < n; mi++) {
					const struct meta_member *mb = &g->members[mi];
					cr_assert_eq(meta_group_member(g, mb->client_id), mb, "a client is a member twice");
					uint32_t j = 0;
					for (uint32_t p = mi; p < t->n_partitions; p += n)
						cr_assert_eq(mb->partitions[j++], p);
					cr_assert_eq(mb->n_partitions, j);
				}
			}
			for (uint32_t oi = 0; oi < t->n_offsets; oi++) {
				const struct meta_offset *o = &t->offsets[oi];
				cr_assert_lt(o->partition_id, t->n_partitions, "an offset outlived its partition");
				cr_assert(o->kind == META_CONSUMER || o->kind == META_CONSUMER_GROUP);
				if (o->kind == META_CONSUMER_GROUP)
					cr_assert_not_null(meta_group(t, o->consumer_id), "an offset outlived its group");
				cr_assert_eq(meta_offset_get(t, o->kind, o->consumer_id, o->partition_id), o,
					     "an offset is stored twice");
			}
		}
	}
	for (uint32_t i = 0; i < m->n_users; i++) {
		const struct meta_user *u = m->users[i];
		if (u == NULL)
			continue;
		cr_assert_eq(u->id, i);
		cr_assert_not_null(u->password_hash);
		cr_assert_eq(meta_user_by_name(m, u->username, strlen(u->username)), u, "usernames are not unique");
		cr_assert(u->status == META_USER_ACTIVE || u->status == META_USER_INACTIVE);
		cr_assert_leq(u->n_pats, META_MAX_PATS_PER_USER);
	}
}

Test(meta, the_state_stays_consistent_after_every_command_of_a_long_script)
{
	/* After each of 3000 scripted commands, ids, names, assignments and offsets satisfy the invariants. */
	struct meta *m = meta_new();
	struct gen g = {0x6a09e667f3bcc908ull, 0};
	for (int i = 0; i < 3000; i++) {
		struct gcmd x;
		gen_next(&g, &x);
		size_t l1;
		uint8_t *before = snap(m, &l1);
		int rv = meta_apply(m, &x.c, NULL);
		cr_assert(rv >= 0, "command %d (type %u) failed with errno %d", i, x.c.type, rv);
		if (rv != META_OK) {
			size_t l2;
			uint8_t *after = snap(m, &l2);
			cr_assert(l1 == l2 && memcmp(before, after, l1) == 0, "failed command %d (type %u, code %d) changed the state", i,
				  x.c.type, rv);
			free(after);
		}
		free(before);
		check_invariants(m);
	}
	meta_free(m);
}

/* ---- Command records ---- */

/*
 * The base state of the codec tests: root and alice (with permissions and a PAT), stream 0 "orders"
 * with topic 0 "events" (3 partitions, group 0 with member 7, two stored offsets), stream 1 "spare"
 * with topic 0 "t".
 */
static struct meta_perm_topic base_pt[2] = {{.topic_id = 0, .read_topic = true}, {.topic_id = 4, .send_messages = true}};
static struct meta_perm_stream base_ps[2] = {
	{.stream_id = 0, .read_stream = true, .topics = base_pt, .n_topics = 2},
	{.stream_id = 3, .manage_topics = true},
};
static struct meta_perms base_perms = {.read_servers = true, .poll_messages = true, .streams = base_ps, .n_streams = 2};
static uint8_t base_token[32] = {9, 8, 7, 6, 5, 4, 3, 2, 1};

static struct meta *base_state(void)
{
	struct meta *m = meta_new();
	cr_assert_eq(meta_apply(m, &(struct meta_cmd){0}, NULL), PROTO_E_INVALID_OPTION_VALUE);
	struct meta_cmd init = init_cmd(3, 3);
	ok(m, init);
	mk_user(m, "iggy");
	struct meta_cmd cu = named(META_CREATE_USER, "alice");
	cu.password_hash = HASH;
	cu.status = META_USER_ACTIVE;
	cu.has_perms = true;
	cu.perms = &base_perms;
	ok(m, cu);
	struct meta_cmd pat = named(META_CREATE_PAT, "tok");
	pat.user_id = 1;
	pat.token_hash = base_token;
	ok(m, pat);
	mk_stream(m, "orders");
	mk_stream(m, "spare");
	mk_topic(m, 0, "events", 3);
	mk_topic(m, 1, "t", 1);
	mk_group(m, 0, 0, "workers");
	ok(m, group_cmd(META_JOIN_GROUP, 0, 0, 0, (1u << 27) | 7)); /* a client of node 1 */
	ok(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER, 1, 0, 5));
	ok(m, offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER_GROUP, 0, 1, 6));
	return m;
}

static struct meta_perm_topic new_pt[1] = {{.topic_id = 2, .manage_topic = true, .poll_messages = true}};
static struct meta_perm_stream new_ps[1] = {{.stream_id = 1, .send_messages = true, .topics = new_pt, .n_topics = 1}};
static struct meta_perms new_perms = {.manage_users = true, .read_topics = true, .streams = new_ps, .n_streams = 1};
static uint8_t new_token[32] = {0xff, 0xee, 0xdd};

/* One command of every type (and a few variants), each of which applies to the base state. */
static size_t all_commands(struct meta_cmd *out)
{
	size_t n = 0;
	struct meta_cmd c;
	out[n++] = named(META_CREATE_STREAM, "new");
	c = named(META_UPDATE_STREAM, "renamed");
	out[n++] = c;
	c = cmd(META_DELETE_STREAM);
	c.stream_id = 1;
	out[n++] = c;
	out[n++] = cmd(META_PURGE_STREAM);
	c = named(META_CREATE_TOPIC, "t2");
	c.count = 5;
	c.compression = META_COMPRESSION_GZIP;
	c.durability = META_DURABILITY_INTERVAL;
	c.replication_factor = 1;
	c.message_expiry = 60000000;
	c.max_topic_size = 1ull << 30;
	c.dedup_window = 1000;
	out[n++] = c;
	c = named(META_UPDATE_TOPIC, "events2");
	c.compression = META_COMPRESSION_GZIP;
	c.message_expiry = 5;
	c.max_topic_size = 7;
	out[n++] = c;
	c = cmd(META_DELETE_TOPIC);
	c.stream_id = 1;
	out[n++] = c;
	out[n++] = cmd(META_PURGE_TOPIC);
	c = cmd(META_CREATE_PARTITIONS);
	c.count = 2;
	c.ts = 123;
	out[n++] = c;
	c = cmd(META_DELETE_PARTITIONS);
	c.count = 1;
	out[n++] = c;
	c = named(META_CREATE_USER, "bob");
	c.password_hash = "$argon2id$v=19$bob";
	c.status = META_USER_INACTIVE;
	c.has_perms = true;
	c.perms = &new_perms;
	out[n++] = c;
	c = named(META_CREATE_USER, "eve");
	c.password_hash = "";
	c.status = META_USER_ACTIVE;
	out[n++] = c;
	c = named(META_UPDATE_USER, "alicia");
	c.user_id = 1;
	c.status = META_USER_INACTIVE;
	out[n++] = c;
	c = cmd(META_UPDATE_USER);
	c.user_id = 1;
	c.status = META_USER_INACTIVE;
	out[n++] = c;
	c = cmd(META_DELETE_USER);
	c.user_id = 1;
	out[n++] = c;
	c = cmd(META_CHANGE_PASSWORD);
	c.user_id = 1;
	c.password_hash = "$argon2id$v=19$changed";
	out[n++] = c;
	c = cmd(META_UPDATE_PERMISSIONS);
	c.user_id = 1;
	c.has_perms = true;
	c.perms = &new_perms;
	out[n++] = c;
	c = cmd(META_UPDATE_PERMISSIONS);
	c.user_id = 1;
	out[n++] = c;
	c = named(META_CREATE_PAT, "ci");
	c.user_id = 1;
	c.token_hash = new_token;
	c.expiry_at = 1800000000000000ull;
	out[n++] = c;
	c = named(META_DELETE_PAT, "tok");
	c.user_id = 1;
	out[n++] = c;
	out[n++] = named(META_CREATE_GROUP, "readers");
	out[n++] = group_cmd(META_DELETE_GROUP, 0, 0, 0, 0);
	out[n++] = group_cmd(META_JOIN_GROUP, 0, 0, 0, (1u << 27) | 9);
	out[n++] = group_cmd(META_LEAVE_GROUP, 0, 0, 0, (1u << 27) | 7);
	c = cmd(META_REMOVE_MEMBER);
	c.client_id = (1u << 27) | 7;
	out[n++] = c;
	out[n++] = cmd(META_CLEAR_MEMBERS);
	c = cmd(META_CLEAR_NODE_MEMBERS);
	c.client_id = 2u << 27;
	out[n++] = c;
	out[n++] = offset_cmd(META_STORE_OFFSET, 0, 0, META_CONSUMER, 3, 2, 99);
	out[n++] = offset_cmd(META_DELETE_OFFSET, 0, 0, META_CONSUMER, 1, 0, 0);
	out[n++] = init_cmd(5, 2); /* applies as a no-op: the table is set */
	c = (struct meta_cmd){.type = META_NODE_ADD, .n_nodes = 1};
	c.nodes[0] = node_at(9);
	out[n++] = c;
	c = (struct meta_cmd){.type = META_NODE_ADVERTISE, .node_id = 2, .n_nodes = 1};
	snprintf(c.nodes[0].adv_host, sizeof(c.nodes[0].adv_host), "127.0.0.1");
	c.nodes[0].adv_tcp_port = 8101;
	c.nodes[0].adv_http_port = 8301;
	c.nodes[0].adv_ws_port = 8501;
	out[n++] = c;
	out[n++] = (struct meta_cmd){.type = META_NODE_REMOVE, .node_id = 2};
	return n;
}

static uint8_t *encode(const struct meta_cmd *c, size_t *len)
{
	struct wire_buf b;
	wire_buf_init(&b);
	cr_assert_eq(metarec_encode(c, &b), 0, "type %u does not encode", c->type);
	uint8_t *p = wire_buf_take(&b, len);
	cr_assert_not_null(p);
	return p;
}

Test(metarec, every_command_type_round_trips_through_its_record)
{
	/* encode → decode → apply gives the same state as applying the original, and re-encodes to the same bytes. */
	struct meta_cmd cmds[40];
	size_t n = all_commands(cmds);
	bool seen[META_NODE_ADVERTISE + 1] = {false};
	for (size_t i = 0; i < n; i++) {
		struct meta *a = base_state(), *b = base_state();
		size_t len;
		uint8_t *rec = encode(&cmds[i], &len);
		cr_assert_eq(rec[0], cmds[i].type == META_NODE_ADVERTISE ? METAREC_VERSION_WS : METAREC_VERSION);
		cr_assert_eq(rec[1], cmds[i].type);
		struct meta_cmd d;
		struct meta_perms scratch;
		cr_assert_eq(metarec_decode(rec, len, &d, &scratch), 0, "type %u does not decode", cmds[i].type);
		cr_assert_eq(d.type, cmds[i].type);
		size_t len2;
		uint8_t *rec2 = encode(&d, &len2);
		cr_assert(len == len2 && memcmp(rec, rec2, len) == 0, "type %u re-encodes differently", d.type);
		cr_assert_eq(meta_apply(a, &cmds[i], NULL), META_OK, "command %zu (type %u) does not apply", i,
			     cmds[i].type);
		cr_assert_eq(meta_apply(b, &d, NULL), META_OK, "decoded type %u does not apply", d.type);
		cr_assert(same_state(a, b), "type %u: the decoded command changes the state differently", d.type);
		seen[d.type] = true;
		meta_perms_free(&scratch);
		free(rec);
		free(rec2);
		meta_free(a);
		meta_free(b);
	}
	for (int t = META_CREATE_STREAM; t <= META_NODE_ADVERTISE; t++)
		cr_assert(seen[t], "type %d not covered", t);
}

Test(metarec, decoded_strings_point_into_the_record_and_the_hash_is_nul_terminated)
{
	/* A decoded CreateUser points into its input; its password hash is a C string there; perms go to scratch. */
	struct meta_cmd c = named(META_CREATE_USER, "bob");
	c.password_hash = "phc";
	c.status = META_USER_ACTIVE;
	c.has_perms = true;
	c.perms = &new_perms;
	size_t len;
	uint8_t *rec = encode(&c, &len);
	struct meta_cmd d;
	struct meta_perms scratch;
	cr_assert_eq(metarec_decode(rec, len, &d, &scratch), 0);
	cr_assert((const uint8_t *)d.name > rec && (const uint8_t *)d.name < rec + len);
	cr_assert_eq(d.name_len, 3);
	cr_assert_str_eq(d.password_hash, "phc");
	cr_assert((const uint8_t *)d.password_hash > rec && (const uint8_t *)d.password_hash < rec + len);
	cr_assert_eq(d.perms, &scratch);
	cr_assert_eq(scratch.n_streams, 1);
	cr_assert_eq(scratch.streams[0].stream_id, 1);
	cr_assert(scratch.streams[0].send_messages && !scratch.streams[0].read_stream);
	cr_assert_eq(scratch.streams[0].n_topics, 1);
	cr_assert(scratch.streams[0].topics[0].manage_topic && scratch.streams[0].topics[0].poll_messages);
	cr_assert(scratch.manage_users && scratch.read_topics && !scratch.manage_servers);
	meta_perms_free(&scratch);
	free(rec);
}

Test(metarec, records_that_break_the_format_are_refused)
{
	/* Unknown versions and types, trailing bytes, non-boolean flags and zero bytes inside a hash fail with EBADMSG. */
	struct meta_cmd d;
	struct meta_perms scratch;
	struct meta_cmd c = named(META_CREATE_STREAM, "s");
	size_t len;
	uint8_t *rec = encode(&c, &len);
	uint8_t buf[64];
	memcpy(buf, rec, len);
	buf[0] = 2;
	cr_assert_eq(metarec_decode(buf, len, &d, &scratch), -EBADMSG);
	buf[0] = 1;
	buf[1] = 0;
	cr_assert_eq(metarec_decode(buf, len, &d, &scratch), -EBADMSG);
	buf[1] = 26;
	cr_assert_eq(metarec_decode(buf, len, &d, &scratch), -EBADMSG);
	buf[1] = META_CREATE_STREAM;
	buf[len] = 0;
	cr_assert_eq(metarec_decode(buf, len + 1, &d, &scratch), -EBADMSG);
	cr_assert_eq(metarec_decode(buf, len, &d, &scratch), 0);
	cr_assert_eq(metarec_decode(NULL, 0, &d, &scratch), -EBADMSG);
	free(rec);

	c = cmd(META_UPDATE_PERMISSIONS);
	c.user_id = 1;
	rec = encode(&c, &len);
	memcpy(buf, rec, len);
	buf[6] = 2; /* has_perms is neither 0 nor 1. */
	cr_assert_eq(metarec_decode(buf, len, &d, &scratch), -EBADMSG);
	free(rec);

	c = cmd(META_CHANGE_PASSWORD);
	c.password_hash = "abcd";
	rec = encode(&c, &len);
	memcpy(buf, rec, len);
	buf[8] = 0; /* A zero byte inside the hash. */
	cr_assert_eq(metarec_decode(buf, len, &d, &scratch), -EBADMSG);
	memcpy(buf, rec, len);
	buf[len - 1] = 'x'; /* No terminating zero. */
	cr_assert_eq(metarec_decode(buf, len, &d, &scratch), -EBADMSG);
	free(rec);

	/* Permission flags outside their bits. */
	c = cmd(META_UPDATE_PERMISSIONS);
	c.has_perms = true;
	c.perms = &new_perms;
	rec = encode(&c, &len);
	memcpy(buf, rec, len);
	buf[8] |= 0x04; /* Global bit 10 is set. */
	cr_assert_eq(metarec_decode(buf, len, &d, &scratch), -EBADMSG);
	free(rec);
}

Test(metarec, commands_that_cannot_be_encoded_are_refused_and_the_buffer_stays_usable)
{
	/* The encoder refuses unknown types and missing hashes or permissions with EINVAL, writing nothing. */
	struct wire_buf b;
	wire_buf_init(&b);
	struct meta_cmd c = cmd(99);
	cr_assert_eq(metarec_encode(&c, &b), -EINVAL);
	c = named(META_CREATE_USER, "bob");
	cr_assert_eq(metarec_encode(&c, &b), -EINVAL);
	c.password_hash = "h";
	c.has_perms = true;
	cr_assert_eq(metarec_encode(&c, &b), -EINVAL);
	c = cmd(META_CHANGE_PASSWORD);
	cr_assert_eq(metarec_encode(&c, &b), -EINVAL);
	c = cmd(META_CREATE_PAT);
	cr_assert_eq(metarec_encode(&c, &b), -EINVAL);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(wire_buf_error(&b), 0);
	c = named(META_CREATE_STREAM, "ok");
	cr_assert_eq(metarec_encode(&c, &b), 0);
	cr_assert_eq(b.len, 2 + 8 + 1 + 2);
	wire_buf_free(&b);
}

/* Decodes mutated bytes: must not crash, must return 0 or EBADMSG; what decodes must also apply safely. */
static void try_decode(const uint8_t *p, size_t len, bool must_fail)
{
	uint8_t *copy = malloc(len ? len : 1); /* Exactly len bytes, so ASan sees any overread. */
	if (len)
		memcpy(copy, p, len);
	struct meta_cmd d;
	struct meta_perms scratch;
	int rv = metarec_decode(copy, len, &d, &scratch);
	cr_assert(rv == 0 || rv == -EBADMSG, "decode returned %d", rv);
	if (must_fail)
		cr_assert_eq(rv, -EBADMSG, "a truncated record of %zu bytes decoded", len);
	if (rv == 0) {
		struct meta *m = base_state();
		meta_apply(m, &d, NULL);
		meta_free(m);
		meta_perms_free(&scratch);
	}
	free(copy);
}

Test(metarec, truncated_or_bit_flipped_records_never_crash_the_decoder)
{
	/* Every strict prefix of every record fails; every single-bit flip decodes or fails, never reads out of bounds. */
	struct meta_cmd cmds[40];
	size_t n = all_commands(cmds);
	for (size_t i = 0; i < n; i++) {
		size_t len;
		uint8_t *rec = encode(&cmds[i], &len);
		for (size_t k = 0; k < len; k++)
			try_decode(rec, k, true);
		for (size_t k = 0; k < len; k++)
			for (int bit = 0; bit < 8; bit++) {
				rec[k] ^= (uint8_t)(1u << bit);
				try_decode(rec, len, false);
				rec[k] ^= (uint8_t)(1u << bit);
			}
		free(rec);
	}
}

/* ---- Snapshots ---- */

/* A state with a bit of everything, from the base state and the script. */
static struct meta *rich_state(int steps)
{
	struct meta *m = base_state();
	struct gen g = {0x2545f4914f6cdd1dull, 0};
	for (int i = 0; i < steps; i++) {
		struct gcmd x;
		gen_next(&g, &x);
		meta_apply(m, &x.c, NULL);
	}
	return m;
}

Test(snapshot, a_decoded_snapshot_encodes_to_the_same_bytes_and_behaves_the_same)
{
	/* encode(decode(encode(s))) == encode(s), and both states react identically to the same commands. */
	for (int steps = 0; steps <= 400; steps += 100) {
		struct meta *m = rich_state(steps);
		size_t len;
		uint8_t *bytes = snap(m, &len);
		struct meta *d;
		cr_assert_eq(metarec_snapshot_decode(bytes, len, &d), 0);
		size_t len2;
		uint8_t *bytes2 = snap(d, &len2);
		cr_assert(len == len2 && memcmp(bytes, bytes2, len) == 0);
		cr_assert_eq(d->applied, m->applied);
		/* Lowest free ids, group id counters, names and members carry over. */
		struct gen g = {0xdeadbeefcafef00dull, 1ull << 50};
		for (int i = 0; i < 300; i++) {
			struct gcmd x;
			gen_next(&g, &x);
			struct meta_result r1, r2;
			int a = meta_apply(m, &x.c, &r1);
			int b = meta_apply(d, &x.c, &r2);
			cr_assert_eq(a, b, "step %d: %d vs %d", i, a, b);
			cr_assert_eq(r1.id, r2.id);
		}
		cr_assert(same_state(m, d));
		free(bytes);
		free(bytes2);
		meta_free(m);
		meta_free(d);
	}
}

Test(snapshot, an_empty_state_round_trips)
{
	/* The empty state encodes to 19 bytes and decodes to an empty state. */
	struct meta *m = meta_new();
	size_t len;
	uint8_t *bytes = snap(m, &len);
	cr_assert_eq(len, 1 + 8 + 1 + 1 + 4 + 4);
	struct meta *d;
	cr_assert_eq(metarec_snapshot_decode(bytes, len, &d), 0);
	cr_assert_eq(d->n_streams, 0);
	cr_assert_eq(d->n_users, 0);
	free(bytes);
	meta_free(m);
	meta_free(d);
}

Test(snapshot, truncated_or_bit_flipped_snapshots_never_crash_the_decoder)
{
	/* Every strict prefix fails; every bit flip decodes or fails with EBADMSG, without overreads or leaks. */
	struct meta *m = rich_state(150);
	size_t len;
	uint8_t *bytes = snap(m, &len);
	for (size_t k = 0; k < len; k++) {
		uint8_t *copy = malloc(k ? k : 1);
		memcpy(copy, bytes, k);
		struct meta *d = NULL;
		cr_assert_eq(metarec_snapshot_decode(copy, k, &d), -EBADMSG, "a %zu-byte prefix decoded", k);
		cr_assert_null(d);
		free(copy);
	}
	uint8_t *copy = malloc(len);
	for (size_t k = 0; k < len; k++)
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, bytes, len);
			copy[k] ^= (uint8_t)(1u << bit);
			struct meta *d = NULL;
			int rv = metarec_snapshot_decode(copy, len, &d);
			cr_assert(rv == 0 || rv == -EBADMSG);
			if (rv == 0) {
				/* Whatever decoded is a state the machine can work on. */
				struct meta_cmd c = named(META_CREATE_STREAM, "probe");
				meta_apply(d, &c, NULL);
				meta_apply(d, &(struct meta_cmd){.type = META_CLEAR_MEMBERS}, NULL);
				meta_free(d);
			}
		}
	free(copy);
	free(bytes);
	meta_free(m);
}

Test(snapshot, ids_out_of_order_or_out_of_range_are_refused)
{
	/* Streams must come by increasing id below METAREC_MAX_ID, groups below next_group_id. */
	struct meta *m = meta_new();
	mk_stream(m, "a");
	mk_stream(m, "b");
	size_t len;
	uint8_t *bytes = snap(m, &len);
	/*
	 * Layout: version(1) applied(8) default_rf(1) n_nodes(1) n(4) then stream 0 at 15: id(4) name(1+1)
	 * created(8) n_topics(4).
	 */
	size_t second = 15 + 4 + 2 + 8 + 4;
	struct meta *d;
	bytes[second] = 0; /* The second stream's id 1 becomes 0. */
	cr_assert_eq(metarec_snapshot_decode(bytes, len, &d), -EBADMSG);
	bytes[second] = 0;
	bytes[second + 3] = 0x01; /* The id becomes 1 << 24. */
	cr_assert_eq(metarec_snapshot_decode(bytes, len, &d), -EBADMSG);
	bytes[second + 3] = 0x00;
	bytes[second] = 0xff;
	bytes[second + 1] = 0xff;
	bytes[second + 2] = 0x0f; /* The id 2^20 - 1 is allowed: ids may be sparse. */
	cr_assert_eq(metarec_snapshot_decode(bytes, len, &d), 0);
	cr_assert_eq(d->n_streams, (1u << 20));
	cr_assert_not_null(meta_stream(d, (1u << 20) - 1));
	cr_assert_eq(mk_stream(d, "c"), 1); /* It takes the lowest free id. */
	meta_free(d);
	free(bytes);
	meta_free(m);
}

/* ---- Cluster membership and placement ---- */

static uint32_t load_of(const struct meta *m, uint32_t node)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < m->n_streams; i++)
		for (uint32_t k = 0; m->streams[i] != NULL && k < m->streams[i]->n_topics; k++) {
			const struct meta_topic *t = m->streams[i]->topics[k];
			for (uint32_t p = 0; t != NULL && p < t->n_partitions; p++)
				n += meta_partition_hosts(&t->partitions[p], node);
		}
	return n;
}

Test(meta, partitions_are_placed_on_consecutive_nodes_and_their_first_replicas_rotate)
{
	struct meta *m = meta_new();
	mk_stream(m, "s");
	/* Before the node table is set, a partition has no replica. */
	uint32_t t0 = mk_topic(m, 0, "early", 1);
	cr_assert_eq(meta_topic(meta_stream(m, 0), t0)->partitions[0].n_replicas, 0);
	ok(m, init_cmd(5, 3));
	cr_assert_eq(m->n_nodes, 5);
	cr_assert_eq(m->default_rf, 3);
	/* A second INIT changes nothing. */
	ok(m, init_cmd(2, 1));
	cr_assert_eq(m->n_nodes, 5);
	cr_assert_eq(m->default_rf, 3);
	const struct meta_topic *t = meta_topic(meta_stream(m, 0), mk_topic(m, 0, "five", 5));
	bool first[6] = {false};
	for (uint32_t p = 0; p < 5; p++) {
		const struct meta_partition *pp = &t->partitions[p];
		cr_assert_eq(pp->n_replicas, 3, "the default replication factor applies");
		cr_assert_not(pp->moved);
		for (uint32_t r = 1; r < 3; r++)
			cr_assert_eq(pp->replicas[r], pp->replicas[r - 1] % 5 + 1, "replicas are consecutive nodes");
		first[pp->replicas[0]] = true;
	}
	for (uint32_t n = 1; n <= 5; n++)
		cr_assert(first[n], "node %u leads none of the five partitions", n);
	/* An explicit factor wins, and is capped by the node count. */
	t = meta_topic(meta_stream(m, 0), mk_topic_rf(m, 0, "one", 2, 1));
	cr_assert_eq(t->partitions[0].n_replicas, 1);
	t = meta_topic(meta_stream(m, 0), mk_topic_rf(m, 0, "all", 1, 7));
	cr_assert_eq(t->partitions[0].n_replicas, 5);
	struct meta_cmd big = named(META_CREATE_TOPIC, "nine");
	big.compression = META_COMPRESSION_NONE;
	big.replication_factor = META_MAX_REPLICAS + 1;
	cr_assert_eq(apply(m, big), PROTO_E_INVALID_OPTION_VALUE);
	/* Partitions added later are placed the same way. */
	struct meta_cmd cp = cmd(META_CREATE_PARTITIONS);
	cp.stream_id = 0;
	cp.topic_id = 1;
	cp.count = 2;
	ok(m, cp);
	t = meta_topic(meta_stream(m, 0), 1);
	cr_assert_eq(t->n_partitions, 7);
	cr_assert_eq(t->partitions[6].n_replicas, 3);
	meta_free(m);
}

Test(meta, a_removed_node_s_replicas_move_to_the_least_loaded_nodes_and_errors_change_nothing)
{
	struct meta *m = meta_new();
	ok(m, init_cmd(4, 2));
	mk_stream(m, "s");
	uint32_t tid = mk_topic(m, 0, "t", 8);
	for (uint32_t n = 1; n <= 4; n++)
		cr_assert_eq(load_of(m, n), 4, "node %u hosts %u replicas", n, load_of(m, n));
	struct meta_cmd rm = {.type = META_NODE_REMOVE, .node_id = 1};
	ok(m, rm);
	cr_assert_null(meta_node(m, 1));
	cr_assert_eq(m->n_nodes, 3);
	const struct meta_topic *t = meta_topic(meta_stream(m, 0), tid);
	uint32_t moved = 0;
	for (uint32_t p = 0; p < t->n_partitions; p++) {
		const struct meta_partition *pp = &t->partitions[p];
		cr_assert_eq(pp->n_replicas, 2, "partition %u keeps its replication factor", p);
		cr_assert_neq(pp->replicas[0], pp->replicas[1]);
		cr_assert_not(meta_partition_hosts(pp, 1));
		moved += pp->moved;
	}
	cr_assert_eq(moved, 4, "exactly the partitions node 1 hosted moved");
	uint32_t lo = UINT32_MAX, hi = 0;
	for (uint32_t n = 2; n <= 4; n++) {
		uint32_t l = load_of(m, n);
		lo = l < lo ? l : lo;
		hi = l > hi ? l : hi;
	}
	cr_assert(hi - lo <= 1, "replicas spread unevenly: %u..%u", lo, hi);
	/* Errors: each leaves the state as it was. */
	struct meta *before = meta_new();
	ok(before, init_cmd(4, 2));
	size_t len;
	uint8_t *snap_before = snap(m, &len);
	meta_free(before);
	cr_assert_eq(apply(m, rm), PROTO_E_NODE_NOT_FOUND);
	struct meta_cmd add = {.type = META_NODE_ADD, .n_nodes = 1};
	add.nodes[0] = node_at(3);
	cr_assert_eq(apply(m, add), PROTO_E_NODE_EXISTS);
	add.nodes[0] = node_at(META_MAX_NODE_ID + 1);
	cr_assert_eq(apply(m, add), PROTO_E_INVALID_OPTION_VALUE);
	add.nodes[0] = node_at(7);
	add.nodes[0].host[0] = '\0';
	cr_assert_eq(apply(m, add), PROTO_E_INVALID_OPTION_VALUE);
	size_t len2;
	uint8_t *snap_after = snap(m, &len2);
	cr_assert(len == len2 && memcmp(snap_before, snap_after, len) == 0);
	free(snap_before);
	free(snap_after);
	/* A new node takes no existing replica, but the next removal can move replicas to it. */
	add.nodes[0] = node_at(7);
	ok(m, add);
	cr_assert_eq(m->nodes[m->n_nodes - 1].id, 7, "the table stays sorted by id");
	cr_assert_eq(load_of(m, 7), 0);
	rm.node_id = 2;
	ok(m, rm);
	cr_assert(load_of(m, 7) > 0);
	rm.node_id = 3;
	ok(m, rm);
	rm.node_id = 4;
	ok(m, rm);
	cr_assert_eq(m->n_nodes, 1);
	for (uint32_t p = 0; p < t->n_partitions; p++)
		cr_assert(t->partitions[p].n_replicas == 1 && t->partitions[p].replicas[0] == 7);
	rm.node_id = 7;
	cr_assert_eq(apply(m, rm), PROTO_E_NODE_LIMIT, "the last node cannot go");
	for (uint32_t id = 10; id < 10 + META_MAX_NODES - 1; id++) {
		add.nodes[0] = node_at(id);
		ok(m, add);
	}
	add.nodes[0] = node_at(30);
	cr_assert_eq(apply(m, add), PROTO_E_NODE_LIMIT, "the table is full");
	meta_free(m);
}

/* NODE_ADVERTISE sets a node's client addresses, only its own; snapshots keep them; version 2 still reads. */
Test(meta, a_node_s_advertised_client_addresses_are_kept_and_snapshotted)
{
	struct meta *m = meta_new();
	ok(m, init_cmd(3, 3));
	struct meta_cmd c = {.type = META_NODE_ADVERTISE, .node_id = 2, .n_nodes = 1};
	snprintf(c.nodes[0].adv_host, sizeof(c.nodes[0].adv_host), "127.0.0.1");
	c.nodes[0].adv_tcp_port = 8102;
	c.nodes[0].adv_quic_port = 8202;
	c.nodes[0].adv_ws_port = 8502;
	ok(m, c);
	const struct meta_node *n = meta_node(m, 2);
	cr_assert_eq(n->adv_ws_port, 8502);
	cr_assert_str_eq(n->adv_host, "127.0.0.1");
	cr_assert_eq(n->adv_tcp_port, 8102);
	cr_assert_eq(n->adv_quic_port, 8202);
	cr_assert_eq(n->adv_http_port, 0);
	cr_assert_str_eq(meta_node(m, 1)->adv_host, "");
	/* An unknown node: 10061, nothing changes. */
	size_t len, len2;
	uint8_t *before = snap(m, &len);
	c.node_id = 7;
	cr_assert_eq(apply(m, c), PROTO_E_NODE_NOT_FOUND);
	uint8_t *after = snap(m, &len2);
	cr_assert(len == len2 && memcmp(before, after, len) == 0);
	free(after);
	/* The snapshot carries them. */
	struct meta *d = NULL;
	cr_assert_eq(metarec_snapshot_decode(before, len, &d), 0);
	cr_assert_str_eq(meta_node(d, 2)->adv_host, "127.0.0.1");
	cr_assert_eq(meta_node(d, 2)->adv_quic_port, 8202);
	cr_assert_eq(meta_node(d, 2)->adv_ws_port, 8502);
	meta_free(d);
	free(before);
	meta_free(m);
	/* A version 1 NODE_ADVERTISE record (it ends after the HTTP port) still decodes, with no WebSocket port. */
	uint8_t old_adv[] = {METAREC_VERSION, META_NODE_ADVERTISE, 2, 0, 0, 0, 1, 'h', 0x9e, 0x1f, 0, 0, 0, 0};
	struct meta_cmd oc;
	struct meta_perms scratch;
	cr_assert_eq(metarec_decode(old_adv, sizeof(old_adv), &oc, &scratch), 0);
	cr_assert_eq(oc.nodes[0].adv_tcp_port, 8094);
	cr_assert_eq(oc.nodes[0].adv_ws_port, 0);
	cr_assert_neq(metarec_decode(old_adv, sizeof(old_adv) - 1, &oc, &scratch), 0, "a cut record decodes");
	/* A version 3 snapshot (client addresses, no WebSocket port): one node "h" advertising tcp 8094. */
	uint8_t v3[] = {3, 5, 0, 0, 0, 0, 0, 0, 0, /* applied 5 */ 3, /* rf */ 1, /* one node */
			1, 0, 0, 0, 1, 'h', 0x20, 0x21, 0x9a, 0x1f, 0x90, 0x1f, 0xb8, 0x0b, /* id, host, ports */
			0, 0x9e, 0x1f, 0, 0, 0, 0, /* client addresses */
			0, 0, 0, 0, /* streams */ 0, 0, 0, 0 /* users */};
	cr_assert_eq(metarec_snapshot_decode(v3, sizeof(v3), &d), 0);
	cr_assert_eq(d->nodes[0].adv_tcp_port, 8094);
	cr_assert_eq(d->nodes[0].adv_ws_port, 0);
	meta_free(d);
	/* A version 2 snapshot (no client addresses): one node "h", nothing else. */
	uint8_t v2[] = {2, 5, 0, 0, 0, 0, 0, 0, 0, /* applied 5 */ 3, /* rf */ 1, /* one node */
			1, 0, 0, 0, 1, 'h', 0x20, 0x21, 0x9a, 0x1f, 0x90, 0x1f, 0xb8, 0x0b, /* id, host, ports */
			0, 0, 0, 0, /* streams */ 0, 0, 0, 0 /* users */};
	cr_assert_eq(metarec_snapshot_decode(v2, sizeof(v2), &d), 0);
	cr_assert_eq(d->n_nodes, 1);
	cr_assert_str_eq(d->nodes[0].host, "h");
	cr_assert_str_eq(d->nodes[0].adv_host, "");
	cr_assert_eq(d->nodes[0].adv_tcp_port, 0);
	meta_free(d);
}
