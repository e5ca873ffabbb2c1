/*
 * Tests of the cluster-aware producer (client/gcluster.h) against three real galgod processes forming a
 * Raft cluster on loopback, started by tests/proc/galgod_nodes.h (free ports for each node's TCP listener
 * and node-to-node link, the roster names them all, each node's output in <tmpdir>/nodeN.log, "galgod
 * ready" awaited). Nodes still running at the end are stopped with SIGTERM and must exit 0 (under
 * ASan/UBSan: no error, no leak); the fini hook kills whatever a failed test left running.
 *
 * Leader elections are awaited by reading the partition map in a bounded loop (the map is the only
 * place an election becomes visible to a client); nothing sleeps to let time pass.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/gclient.h"
#include "client/gcluster.h"

#define GALGOD GALGO_BUILD_DIR "/galgod"
#define NODES 3
#define WAIT_MS 30000 /* every bounded wait: start, stop, election */

#include "galgod_nodes.h"

static struct node nodes[NODES];
static char roster[512], seeds[256];
#define TCP_OF(i) (nodes[(i) - 1].tcp)

static void start_cluster(void)
{
	roster[0] = seeds[0] = '\0';
	for (int i = 0; i < NODES; i++) {
		node_init(&nodes[i], (uint32_t)i + 1);
		roster_add(roster, sizeof(roster), &nodes[i]);
		size_t l = strlen(seeds);
		snprintf(seeds + l, sizeof(seeds) - l, "%s127.0.0.1:%d", i ? "," : "", nodes[i].tcp);
	}
	for (int i = 0; i < NODES; i++) {
		nodes[i].roster = roster;
		node_start(&nodes[i]);
	}
}

static void kill9(int i)
{
	node_kill(&nodes[i - 1]);
}

/* SIGTERM to every running node; each must exit 0. */
static void stop_cluster(void)
{
	for (int i = 0; i < NODES; i++)
		node_stop(&nodes[i]);
}

static void setup(void)
{
	memset(nodes, 0, sizeof(nodes));
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/galgo-gcluster-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	signal(SIGPIPE, SIG_IGN);
}

static void teardown(void)
{
	nodes_teardown(nodes, NODES);
}

TestSuite(gcluster, .init = setup, .fini = teardown, .timeout = 180);

/* ---- Helpers ---- */

static struct gclient *login_to(int node)
{
	return client_of(&nodes[node - 1]);
}

/*
 * Creates stream "s" and topic "t" with `parts` partitions through node 1, retrying 58
 * TransientNotAccepted while the metadata group has no leader yet. Returns the stream and topic ids.
 */
static void create_topic(uint32_t parts, uint32_t *sid, uint32_t *tid)
{
	struct gclient *c = login_to(1);
	struct gclient_stream st;
	struct gclient_topic t;
	int rv;
	uint64_t end = now_ms() + WAIT_MS;
	while ((rv = gclient_create_stream(c, "s", &st)) == 58 && now_ms() < end)
		pause_ms(50);
	cr_assert_eq(rv, 0, "create stream: %d", rv);
	struct wire_id s = gclient_id_name("s");
	while ((rv = gclient_create_topic(c, &s, "t", parts, "fsync", &t)) == 58 && now_ms() < end)
		pause_ms(50);
	cr_assert_eq(rv, 0, "create topic: %d", rv);
	*sid = st.id;
	*tid = t.id;
	gclient_close(c);
}

/* Refreshes gc's map until every partition of the topic has a leader other than `not` (bounded). */
static void await_leaders(struct gcluster *gc, uint32_t sid, uint32_t tid, uint32_t parts, uint32_t not)
{
	uint64_t end = now_ms() + WAIT_MS;
	for (;;) {
		uint32_t ok = 0;
		if (gcluster_refresh(gc) == 0)
			for (uint32_t p = 0; p < parts; p++) {
				const struct gcluster_part *e = gcluster_lookup(gc, sid, tid, p);
				ok += e != NULL && e->leader != 0 && e->leader != not && !e->stale;
			}
		if (ok == parts)
			return;
		cr_assert_lt(now_ms(), end, "no leader for every partition within %d ms", WAIT_MS);
		pause_ms(50);
	}
}

static bool is_replica(const struct gcluster_part *e, uint32_t id)
{
	for (uint8_t i = 0; i < e->n_replicas; i++)
		if (e->replicas[i] == id)
			return true;
	return false;
}

/* ---- Tests ---- */

Test(gcluster, the_map_names_leaders_and_sends_go_straight_to_them)
{
	start_cluster();
	uint32_t sid, tid;
	create_topic(3, &sid, &tid);
	struct gcluster *gc;
	struct gcluster_opts o = {.conn = {.io_timeout_ms = 10000}};
	cr_assert_eq(gcluster_open(seeds, &o, &gc), 0);
	await_leaders(gc, sid, tid, 3, 0);

	/* Every partition: three replicas, all cluster nodes, the leader among them. */
	uint32_t leader[3];
	for (uint32_t p = 0; p < 3; p++) {
		const struct gcluster_part *e = gcluster_lookup(gc, sid, tid, p);
		cr_assert_eq(e->n_replicas, 3);
		for (uint32_t n = 1; n <= NODES; n++)
			cr_assert(is_replica(e, n), "partition %u lacks node %u", p, n);
		cr_assert(is_replica(e, e->leader));
		cr_assert_gt(e->epoch, 0);
		leader[p] = e->leader;
		char addr[64], want[64];
		cr_assert(gcluster_node_address(gc, e->leader, addr, sizeof(addr)));
		snprintf(want, sizeof(want), "127.0.0.1:%d", TCP_OF(e->leader));
		cr_assert_str_eq(addr, want);
	}

	/* A follower in redirect mode refuses with NotLeader (its body: the next test). */
	uint8_t payload[100];
	memset(payload, 'x', sizeof(payload));
	const void *ptrs[2] = {payload, payload};
	uint32_t lens[2] = {sizeof(payload), sizeof(payload)};
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	for (uint32_t p = 0; p < 3; p++) {
		uint32_t follower = leader[p] % NODES + 1;
		struct gclient *c = login_to((int)follower);
		uint8_t mode = 1;
		cr_assert_eq(gclient_raw(c, GCLUSTER_CODE_SET_REDIRECT, &mode, 1, NULL, NULL), 0);
		int rv;
		uint64_t until = now_ms() + WAIT_MS;
		/* A follower learns the new topic a heartbeat after the leader (20 ResourceNotFound meanwhile). */
		while ((rv = gclient_send(c, &s, &t, p, 2, ptrs, lens, NULL)) == 20 && now_ms() < until)
			pause_ms(50);
		cr_assert_eq(rv, GCLUSTER_NOT_LEADER, "partition %u via follower %u: %d", p, follower, rv);
		/* The same connection keeps working: a poll is served by any node. */
		struct gclient_polled pl;
		struct wire_consumer cons = gclient_consumer(1);
		/* (58: the replica has not yet learnt a commit of the current term; the SDK asks again too.) */
		until = now_ms() + WAIT_MS;
		while ((rv = gclient_poll(c, &cons, &s, &t, p, (struct wire_polling){WIRE_POLL_OFFSET, 0}, 10, false,
					  &pl)) == 58 && now_ms() < until)
			pause_ms(50);
		cr_assert_eq(rv, 0);
		cr_assert_eq(pl.count, 0, "the refused batch changed nothing");
		gclient_close(c);
	}

	/* Lock-step sends through gcluster: all accepted, consecutive offsets, no redirect needed. */
	uint64_t next[3] = {0, 0, 0};
	for (int k = 0; k < 5; k++)
		for (uint32_t p = 0; p < 3; p++) {
			struct gclient_sent sent;
			int rv = gcluster_send(gc, &s, &t, p, 2, ptrs, lens, &sent);
			cr_assert_eq(rv, 0, "send %d to partition %u: %d (%s)", k, p, rv, gcluster_last_error(gc));
			cr_assert_eq(sent.partition_id, p);
			cr_assert_eq(sent.base_offset, next[p], "partition %u: base %" PRIu64 ", expected %" PRIu64, p,
				     sent.base_offset, next[p]);
			next[p] += 2;
		}
	struct gcluster_stats stats;
	gcluster_get_stats(gc, &stats);
	cr_assert_eq(stats.hops, 0, "every send went to its leader first");

	/* Pipelined, balanced over the partitions: replies in order, offsets continue per partition. */
	for (int k = 0; k < 9; k++)
		cr_assert_eq(gcluster_send_async(gc, &s, &t, GCLIENT_BALANCED, 2, ptrs, lens), 0);
	cr_assert_eq(gcluster_inflight(gc), 9);
	for (int k = 0; k < 9; k++) {
		struct gclient_sent sent;
		cr_assert_eq(gcluster_wait(gc, &sent), 0, "%s", gcluster_last_error(gc));
		cr_assert_lt(sent.partition_id, 3);
		cr_assert_eq(sent.base_offset, next[sent.partition_id]);
		next[sent.partition_id] += 2;
	}
	cr_assert_eq(gcluster_inflight(gc), 0);
	cr_assert_eq(gcluster_wait(gc, NULL), -EINVAL);
	for (uint32_t p = 0; p < 3; p++)
		cr_assert_eq(next[p], 16, "balanced sends spread evenly");

	/* What was acknowledged is there, read through the control connection. */
	struct gclient *any = gcluster_any(gc);
	cr_assert_not_null(any);
	for (uint32_t p = 0; p < 3; p++) {
		/* A follower serves what it knows to be committed: it may learn the last commit a moment later. */
		struct gclient_polled pl;
		struct wire_consumer cons = gclient_consumer(1);
		uint64_t end = now_ms() + WAIT_MS;
		for (;;) {
			int prv = gclient_poll(any, &cons, &s, &t, p, (struct wire_polling){WIRE_POLL_OFFSET, 0}, 100, false,
					       &pl);
			if (prv == 58 && now_ms() < end) {
				pause_ms(20);
				continue;
			}
			cr_assert_eq(prv, 0);
			cr_assert_leq(pl.count, 16);
			if (pl.count == 16 || now_ms() >= end)
				break;
			pause_ms(20);
		}
		cr_assert_eq(pl.count, 16, "partition %u holds %u", p, pl.count);
	}

	/* A partition that does not exist is an error, not an endless wait. */
	struct gcluster_opts quick = {.leader_wait_ms = 300};
	struct gcluster *gq;
	cr_assert_eq(gcluster_open(seeds, &quick, &gq), 0);
	cr_assert_eq(gcluster_send(gq, &s, &t, 7, 2, ptrs, lens, NULL), -ENOENT);
	cr_assert(strstr(gcluster_last_error(gq), "not in the partition map") != NULL, "%s", gcluster_last_error(gq));
	gcluster_close(gq);

	gcluster_close(gc);
	stop_cluster();
}

Test(gcluster, a_follower_in_redirect_mode_names_the_leader_in_its_not_leader_reply)
{
	start_cluster();
	uint32_t sid, tid;
	create_topic(1, &sid, &tid);
	struct gcluster *gc;
	cr_assert_eq(gcluster_open(seeds, NULL, &gc), 0);
	/*
	 * Leadership may move while this runs (the preferred replica takes it over within seconds of the
	 * election): the probe is repeated until the map read before and after it names the same leader.
	 */
	struct gclient *c = NULL;
	struct gcluster_not_leader nl;
	int prv = -1;
	size_t len = 0;
	uint32_t leader = 0;
	uint64_t epoch = 0;
	for (int attempt = 0; attempt < 20; attempt++) {
		await_leaders(gc, sid, tid, 1, 0);
		const struct gcluster_part *e = gcluster_lookup(gc, sid, tid, 0);
		leader = e->leader;
		epoch = e->epoch;
		uint32_t follower = leader % NODES + 1;
		gclient_close(c);
		c = login_to((int)follower);
		uint8_t mode = 1, payload[10] = {0};
		const void *ptrs[1] = {payload};
		uint32_t lens[1] = {sizeof(payload)};
		struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
		cr_assert_eq(gclient_raw(c, GCLUSTER_CODE_SET_REDIRECT, &mode, 1, NULL, NULL), 0);
		int rv = gclient_send(c, &s, &t, 0, 1, ptrs, lens, NULL);
		const uint8_t *body;
		gclient_last_reply(c, &body, &len);
		prv = rv == GCLUSTER_NOT_LEADER ? gcluster_parse_not_leader(body, len, &nl) : -1;
		await_leaders(gc, sid, tid, 1, 0);
		e = gcluster_lookup(gc, sid, tid, 0);
		if (prv == 0 && e->leader == leader && nl.leader == leader)
			break;
		pause_ms(200);
	}
	gclient_close(c);
	gcluster_close(gc);
	stop_cluster();
	cr_assert_eq(prv, 0, "NotLeader body of %zu bytes", len);
	cr_assert_eq(nl.leader, leader);
	cr_assert_eq(nl.epoch, epoch);
	cr_assert_str_eq(nl.host, "127.0.0.1");
	cr_assert_eq(nl.tcp_port, TCP_OF(leader));
}

Test(gcluster, after_kill_9_of_the_leader_sends_reach_the_successor)
{
	start_cluster();
	uint32_t sid, tid;
	create_topic(1, &sid, &tid);
	struct gcluster *gc;
	struct gcluster_opts o = {.conn = {.io_timeout_ms = 10000}, .leader_wait_ms = WAIT_MS};
	cr_assert_eq(gcluster_open(seeds, &o, &gc), 0);
	await_leaders(gc, sid, tid, 1, 0);
	const struct gcluster_part *e = gcluster_lookup(gc, sid, tid, 0);
	uint32_t old = e->leader;
	uint64_t old_epoch = e->epoch;

	uint8_t payload[64];
	memset(payload, 'y', sizeof(payload));
	const void *ptrs[4] = {payload, payload, payload, payload};
	uint32_t lens[4] = {64, 64, 64, 64};
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	uint64_t next = 0;
	for (int k = 0; k < 5; k++) {
		struct gclient_sent sent;
		cr_assert_eq(gcluster_send(gc, &s, &t, 0, 4, ptrs, lens, &sent), 0, "%s", gcluster_last_error(gc));
		cr_assert_eq(sent.base_offset, next);
		next += 4;
	}

	kill9((int)old);

	/* An observer on a surviving node sees the election (bounded); gc learns nothing from it. */
	int survivor = (int)old % NODES + 1;
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", TCP_OF(survivor));
	struct gcluster *obs;
	cr_assert_eq(gcluster_open(addr, NULL, &obs), 0);
	await_leaders(obs, sid, tid, 1, old);
	uint32_t successor = gcluster_lookup(obs, sid, tid, 0)->leader;
	cr_assert_gt(gcluster_lookup(obs, sid, tid, 0)->epoch, old_epoch);
	gcluster_close(obs);

	struct gcluster_stats before, after;
	gcluster_get_stats(gc, &before);
	struct gclient_sent sent;
	int rv = gcluster_send(gc, &s, &t, 0, 4, ptrs, lens, &sent);
	cr_assert_eq(rv, 0, "send after failover: %d (%s)", rv, gcluster_last_error(gc));
	gcluster_get_stats(gc, &after);
	cr_assert_geq(after.hops - before.hops, 1, "the lost connection counted as a hop");
	cr_assert_leq(after.hops - before.hops, GCLUSTER_DEFAULT_HOPS);
	cr_assert_eq(gcluster_lookup(gc, sid, tid, 0)->leader, successor);
	cr_assert_eq(sent.base_offset, next, "every acknowledged batch survived, none was duplicated");
	next += 4;
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(gcluster_send(gc, &s, &t, 0, 4, ptrs, lens, &sent), 0);
		cr_assert_eq(sent.base_offset, next);
		next += 4;
	}

	/*
	 * With a second node gone no leader can be elected: the send gives up with a clear error within
	 * its bounds instead of hanging.
	 */
	struct gcluster *gq;
	struct gcluster_opts quick = {.conn = {.io_timeout_ms = 2000}, .leader_wait_ms = 1500, .max_hops = 2};
	cr_assert_eq(gcluster_open(seeds, &quick, &gq), 0);
	kill9((int)successor);
	rv = gcluster_send(gq, &s, &t, 0, 4, ptrs, lens, NULL);
	/*
	 * (-ETIMEDOUT or -ECONNREFUSED when the connection it resolves names on was to the node just killed;
	 * 58 when the node it asks cannot prove its metadata current without a metadata leader: its login or
	 * name lookup fails closed, not admitted.)
	 */
	cr_assert(rv == -EHOSTUNREACH || rv == -ELOOP || rv == -ETIMEDOUT || rv == -ECONNREFUSED || rv == 58,
		  "rv %d (%s)", rv, gcluster_last_error(gq));
	cr_assert_neq(gcluster_last_error(gq)[0], '\0');
	gcluster_close(gq);

	gcluster_close(gc);
	stop_cluster();
}
