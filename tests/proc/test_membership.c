/*
 * Runtime membership with real galgod processes on loopback: a cluster of three takes a fourth node at
 * runtime (the new node starts with cluster.join, AddNode through another node), then loses its first
 * node (RemoveNode): the removed node's partition replicas move to the new node, standby first, then
 * voter, and the removed node leaves every group. The proof is behavioural: with the removed node
 * stopped and one of the original nodes killed, the two nodes left (an original one and the new one)
 * still form a quorum of the metadata group and of every partition group, which they can only do if
 * the new node became a voter and the removed one is no longer counted. Every message acknowledged
 * before and after is then read from both survivors' own copies, at the offset its acknowledgement
 * gave, with the same ids and payload checksums on both.
 *
 * A second test removes a node that died (SIGKILL): the survivors rebuild its replicas on the new node,
 * and again two of the nodes left must make every quorum.
 *
 * Also: AddNode and RemoveNode refuse bad input with their codes (docs/protocol-extensions.md) and
 * change nothing; RemoveNode goes through admin/galgo-admin once.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "client/gclient.h"
#include "proto/wire.h"

#define GALGOD GALGO_BUILD_DIR "/galgod"
#define WAIT_MS 30000
#define NODES 4
#define PARTS 3
#define M 20 /* messages per partition per phase */

#include "galgod_nodes.h"

static struct node nodes[NODES];
static char roster3[512], roster4[512];

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/galgo-members-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	roster3[0] = roster4[0] = '\0';
	for (int i = 0; i < NODES; i++) {
		node_init(&nodes[i], (uint32_t)i + 1);
		if (i < 3)
			roster_add(roster3, sizeof(roster3), &nodes[i]);
		roster_add(roster4, sizeof(roster4), &nodes[i]);
	}
	for (int i = 0; i < 3; i++)
		nodes[i].roster = roster3;
	nodes[3].roster = roster4;
	nodes[3].extra[0] = "--cluster.join=true";
}

static void teardown(void)
{
	nodes_teardown(nodes, NODES);
}

TestSuite(membership, .init = setup, .fini = teardown, .timeout = 300);

static bool has(const uint32_t *ids, uint32_t n, uint32_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* Waits until every partition has a leader among the live nodes (bounded). */
static void await_leaders(struct gclient *c, uint32_t dead1, uint32_t dead2)
{
	uint64_t until = now_ms() + WAIT_MS;
	for (;;) {
		struct pmap m;
		pmap_read(c, &m);
		bool all = m.np == PARTS;
		for (uint32_t i = 0; all && i < m.np; i++)
			all = m.p[i].leader != 0 && m.p[i].leader != dead1 && m.p[i].leader != dead2;
		if (all)
			return;
		cr_assert_lt(now_ms(), until, "partitions without a live leader");
		pause_ms(50);
	}
}

/* What a replica holds: per offset the message's id, payload hash and payload. */
struct held {
	uint8_t id[4 * M][16];
	uint64_t hash[4 * M];
	char payload[4 * M][16];
};

/*
 * Reads node n's own copy of partition pid until it holds the messages below offset `want` (bounded).
 * (A send retried after an error may have been stored twice: offsets are compared, not counts.)
 */
static void read_replica(const struct node *n, uint32_t pid, uint64_t want, struct held *h)
{
	struct gclient *c = client_of(n);
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	struct wire_consumer who = {.kind = WIRE_CONSUMER_SINGLE, .id = gclient_id_name("checker")};
	uint64_t until = now_ms() + WAIT_MS, got = 0;
	while (got < want) {
		struct gclient_polled pr;
		struct wire_polling at = {.kind = WIRE_POLL_OFFSET, .value = got};
		int rv = gclient_poll(c, &who, &s, &t, pid, at, 100, false, &pr);
		if (rv == 58 && now_ms() < until) {
			pause_ms(50);
			continue;
		}
		cr_assert_eq(rv, 0, "poll of node %u: %d", n->id, rv);
		cr_assert_eq(gclient_polled_verify(&pr), 0, "node %u returned a damaged batch", n->id);
		struct gclient_msg_iter it;
		gclient_msg_iter_init(&it, &pr);
		struct gclient_msg msg;
		while (got < want && gclient_msg_next(&it, &msg) == 1) {
			cr_assert_eq(msg.offset, got, "node %u partition %u: offset %lu where %lu was due", n->id, pid,
				     (unsigned long)msg.offset, (unsigned long)got);
			memcpy(h->id[got], msg.id, 16);
			h->hash[got] = XXH3_64bits(msg.payload, msg.payload_len);
			snprintf(h->payload[got], 16, "%.*s", (int)(msg.payload_len < 15 ? msg.payload_len : 15),
				 (const char *)msg.payload);
			got++;
		}
		if (got < want) {
			cr_assert_lt(now_ms(), until, "node %u holds %lu of %lu messages of partition %u; see %s", n->id,
				     (unsigned long)got, (unsigned long)want, pid, n->log);
			if (pr.count == 0)
				pause_ms(50);
		}
	}
	gclient_close(c);
}

static int raw_status(struct gclient *c, uint32_t code, const void *body, size_t len)
{
	return gclient_raw(c, code, body, len, NULL, NULL);
}

/* AddNode's body for node n: [id u32][host str8][raft u16][tcp u16][quic u16][http u16]. */
static size_t add_body(const struct node *n, uint8_t *b)
{
	size_t at = 0;
	memcpy(b + at, &n->id, 4);
	at += 4;
	b[at++] = 9;
	memcpy(b + at, "127.0.0.1", 9);
	at += 9;
	uint16_t ports[4] = {(uint16_t)n->raft, (uint16_t)n->tcp, 0, 0};
	memcpy(b + at, ports, sizeof(ports));
	return at + sizeof(ports);
}

static void check_survivors(const struct node *a, const struct node *b, uint64_t acked[PARTS][2 * M]);

/*
 * After a membership change: messages M..2M-1 of every partition through `via` (c, its client, is
 * closed after), and a stream created, which needs a quorum of the metadata group.
 */
static void second_half(struct gclient *c, const struct node *via, uint64_t acked[PARTS][2 * M])
{
	for (uint32_t p = 0; p < PARTS; p++)
		for (uint32_t k = M; k < 2 * M; k++)
			acked[p][k] = send_part_acked(&c, via, p, k, false);
	cr_assert_eq(gclient_create_stream(c, "after", NULL), 0, "the metadata group has no quorum");
	gclient_close(c);
}

/*
 * Nodes 1-3 as a cluster, stream "s" with topic "t" of PARTS partitions, M messages sent to each through
 * `via` (acked[p][k] their offsets). Returns the client of `via`.
 */
static struct gclient *start_three(const struct node *via, uint64_t acked[PARTS][2 * M])
{
	for (int i = 0; i < 3; i++)
		node_start(&nodes[i]);
	struct gclient *c = client_of(via);
	struct wire_id sid = gclient_id_name("s");
	cr_assert_eq(gclient_create_stream(c, "s", NULL), 0);
	cr_assert_eq(gclient_create_topic(c, &sid, "t", PARTS, NULL, NULL), 0);
	await_leaders(c, 0, 0);
	for (uint32_t p = 0; p < PARTS; p++)
		for (uint32_t k = 0; k < M; k++)
			acked[p][k] = send_part_acked(&c, via, p, k, false);
	return c;
}

Test(membership, a_node_added_at_runtime_takes_the_replicas_of_a_removed_node_and_keeps_the_quorum)
{
	uint64_t acked[PARTS][2 * M];
	struct gclient *c = start_three(&nodes[1], acked);

	/* The new node starts without bootstrapping anything and is added through node 2. */
	node_start(&nodes[3]);
	uint8_t body[64];
	size_t blen = add_body(&nodes[3], body);
	cr_assert_eq(raw_status(c, 10003, body, 3), 3, "a truncated AddNode is an invalid command");
	uint32_t nine = 9, one = 1;
	cr_assert_eq(raw_status(c, 10004, &nine, 4), 10061, "RemoveNode of an unknown node");
	uint8_t bad[64];
	memcpy(bad, body, blen);
	bad[0] = 40; /* node id 40: above 31 */
	cr_assert_eq(raw_status(c, 10003, bad, blen), 4042, "AddNode of an id above 31");
	cr_assert_eq(raw_status(c, 10003, body, blen), 0, "AddNode");
	cr_assert_eq(raw_status(c, 10003, body, blen), 10060, "AddNode of a member");
	/* The new node receives the metadata: the root user can log in there, and it names four nodes. */
	struct gclient *c4 = client_of(&nodes[3]);
	uint64_t until = now_ms() + WAIT_MS;
	for (;;) {
		struct pmap m;
		pmap_read(c4, &m);
		if (m.n_nodes == 4 && m.np == PARTS)
			break;
		cr_assert_lt(now_ms(), until, "node 4 does not know the four nodes and the topic");
		pause_ms(50);
	}
	gclient_close(c4);
	/* Existing partitions stay where they are until a node leaves. */
	struct pmap m;
	pmap_read(c, &m);
	for (uint32_t i = 0; i < m.np; i++)
		cr_assert(m.p[i].nr == 3 && !has(m.p[i].rep, m.p[i].nr, 4));

	/* Node 1 leaves (through admin/galgo-admin): its replicas go to node 4. */
	(void)one;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s/galgo-admin --server 127.0.0.1:%d remove-node 9 >/dev/null 2>&1",
		 GALGO_BUILD_DIR, nodes[1].tcp);
	int st = system(cmd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "galgo-admin remove-node of an unknown node: %d", st);
	snprintf(cmd, sizeof(cmd), "%s/galgo-admin --server 127.0.0.1:%d remove-node 1 >%s/admin.out 2>&1",
		 GALGO_BUILD_DIR, nodes[1].tcp, tmpdir);
	st = system(cmd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "galgo-admin remove-node 1: %d; see %s/admin.out", st,
		  tmpdir);
	pmap_read(c, &m);
	for (uint32_t i = 0; i < m.np; i++)
		cr_assert(m.p[i].nr == 3 && has(m.p[i].rep, 3, 2) && has(m.p[i].rep, 3, 3) && has(m.p[i].rep, 3, 4),
			  "partition %u: replicas %u,%u,%u", m.p[i].pid, m.p[i].rep[0], m.p[i].rep[1], m.p[i].rep[2]);
	/*
	 * Wait (bounded) until the groups have done it: the leaders log each member removal (three partition
	 * groups and the metadata group), node 1 closes its three replicas, and node 2 stops listing node 1
	 * (a removed node stays in the roster while a group here still counts it).
	 */
	until = now_ms() + 2 * WAIT_MS;
	for (;;) {
		int removed = 0;
		for (int i = 0; i < NODES; i++)
			removed += log_count(&nodes[i], ": node 1 removed");
		int closed = log_count(&nodes[0], "replica moved away; closed");
		pmap_read(c, &m);
		if (removed >= PARTS + 1 && closed >= PARTS && m.n_nodes == 3 && !has(m.node_ids, m.n_nodes, 1))
			break;
		cr_assert_lt(now_ms(), until, "node 1 not out of its groups: %d removals, %d replicas closed, %u nodes listed",
			     removed, closed, m.n_nodes);
		pause_ms(100);
	}
	gclient_close(c);

	/* Node 1 stops, node 2 dies: nodes 3 and 4 must still make every quorum. */
	node_stop(&nodes[0]);
	node_kill(&nodes[1]);
	c = client_of(&nodes[2]);
	await_leaders(c, 1, 2);
	second_half(c, &nodes[2], acked);

	/* Both survivors hold every message, the same at every offset, each acknowledged one where it was. */
	check_survivors(&nodes[2], &nodes[3], acked);
	/* Both restart with their data (node 4 still with cluster.join): the same again. */
	node_stop(&nodes[2]);
	node_stop(&nodes[3]);
	node_start(&nodes[2]);
	node_start(&nodes[3]);
	check_survivors(&nodes[2], &nodes[3], acked);
	node_stop(&nodes[2]);
	node_stop(&nodes[3]);
}

/* Both nodes hold every message of every partition, the same at every offset, each acked one where it was. */
static void check_survivors(const struct node *a, const struct node *b, uint64_t acked[PARTS][2 * M])
{
	static struct held ha, hb;
	for (uint32_t p = 0; p < PARTS; p++) {
		uint64_t want = 0;
		for (uint32_t k = 0; k < 2 * M; k++)
			want = acked[p][k] + 1 > want ? acked[p][k] + 1 : want;
		cr_assert_leq(want, 4 * M, "partition %u: too many retries stored twice", p);
		read_replica(a, p, want, &ha);
		read_replica(b, p, want, &hb);
		for (uint32_t o = 0; o < want; o++)
			cr_assert(memcmp(ha.id[o], hb.id[o], 16) == 0 && ha.hash[o] == hb.hash[o],
				  "partition %u offset %u differs between nodes %u and %u", p, o, a->id, b->id);
		for (uint32_t k = 0; k < 2 * M; k++) {
			char expect[16];
			snprintf(expect, sizeof(expect), "p%u-%05u", p, k);
			cr_assert_str_eq(hb.payload[acked[p][k]], expect, "acknowledged message %s lost", expect);
		}
	}
}

Test(membership, a_dead_node_is_removed_and_its_replicas_are_rebuilt_on_a_new_node)
{
	uint64_t acked[PARTS][2 * M];
	struct gclient *c = start_three(&nodes[0], acked);
	node_start(&nodes[3]);
	uint8_t body[64];
	size_t blen = add_body(&nodes[3], body);
	cr_assert_eq(raw_status(c, 10003, body, blen), 0, "AddNode");

	/* Node 3 dies for good and is removed: its replicas are rebuilt on node 4 from the survivors. */
	node_kill(&nodes[2]);
	uint32_t three = 3;
	uint64_t until = now_ms() + WAIT_MS;
	int rv;
	while ((rv = raw_status(c, 10004, &three, 4)) == 58 && now_ms() < until)
		pause_ms(100);
	cr_assert_eq(rv, 0, "RemoveNode of a dead node: %d", rv);
	until = now_ms() + 2 * WAIT_MS;
	for (;;) {
		struct pmap m1, m2;
		pmap_read(c, &m1);
		struct gclient *c2 = client_of(&nodes[1]);
		pmap_read(c2, &m2);
		gclient_close(c2);
		/* (node 3 leaves a roster once no group there counts it any more) */
		if (m1.n_nodes == 3 && !has(m1.node_ids, 3, 3) && m2.n_nodes == 3 && !has(m2.node_ids, 3, 3))
			break;
		cr_assert_lt(now_ms(), until, "node 3 still in the groups: nodes 1 and 2 list %u and %u nodes", m1.n_nodes,
			     m2.n_nodes);
		pause_ms(100);
	}
	/* Node 2 dies too: nodes 1 and 4 are a quorum of every group only if node 4 votes and node 3 does not. */
	node_kill(&nodes[1]);
	await_leaders(c, 2, 3);
	second_half(c, &nodes[0], acked);
	check_survivors(&nodes[0], &nodes[3], acked);
	node_stop(&nodes[0]);
	node_stop(&nodes[3]);
}

/*
 * With node 3 down, removing node 2 would leave nodes 1 and 3, one of them down: the metadata group and
 * every partition could not commit until node 3 returned. The removal is refused (10063) through either
 * live node and nothing changes; once node 3 is back the same removal is taken and completes.
 */
Test(membership, a_removal_that_would_leave_no_live_majority_is_refused_until_the_down_node_returns)
{
	uint64_t acked[PARTS][2 * M];
	struct gclient *c = start_three(&nodes[0], acked);
	node_kill(&nodes[2]);
	pause_ms(1500); /* the links to node 3 see it go (its sockets closed with it) */
	uint32_t two = 2;
	cr_assert_eq(raw_status(c, 10004, &two, 4), 10063, "RemoveNode 2 through node 1 with node 3 down");
	struct gclient *c2 = client_of(&nodes[1]);
	cr_assert_eq(raw_status(c2, 10004, &two, 4), 10063, "RemoveNode 2 through node 2 itself with node 3 down");
	gclient_close(c2);
	struct pmap m;
	pmap_read(c, &m);
	cr_assert(m.n_nodes == 3 && has(m.node_ids, 3, 2), "the refused removal changed the roster: %u nodes", m.n_nodes);
	await_leaders(c, 3, 0); /* nodes 1 and 2 still carry every partition */

	node_start(&nodes[2]);
	uint64_t until = now_ms() + WAIT_MS;
	int rv;
	while ((rv = raw_status(c, 10004, &two, 4)) == 10063 || rv == 58) {
		cr_assert_lt(now_ms(), until, "RemoveNode 2 still refused with node 3 back: %d", rv);
		pause_ms(200);
	}
	cr_assert_eq(rv, 0, "RemoveNode 2 with every node up: %d", rv);
	/* (node 3, just restarted, first catches up on every group: under ASan beside other tests this is slow) */
	until = now_ms() + 4 * WAIT_MS;
	for (;;) {
		pmap_read(c, &m);
		if (m.n_nodes == 2 && !has(m.node_ids, 2, 2))
			break;
		cr_assert_lt(now_ms(), until, "node 2 still in the groups: node 1 lists %u nodes", m.n_nodes);
		pause_ms(100);
	}
	await_leaders(c, 2, 0);
	second_half(c, &nodes[0], acked);
	node_stop(&nodes[1]);
	node_stop(&nodes[0]);
	node_stop(&nodes[2]);
}

Test(membership, the_metadata_leader_itself_can_be_removed)
{
	uint64_t acked[PARTS][2 * M];
	struct gclient *c = start_three(&nodes[0], acked);
	node_start(&nodes[3]);
	uint8_t body[64];
	size_t blen = add_body(&nodes[3], body);
	cr_assert_eq(raw_status(c, 10003, body, blen), 0, "AddNode");
	gclient_close(c);
	/* The metadata leader, asked through another node, removes itself: it hands leadership over first. */
	struct pmap m;
	uint64_t until = now_ms() + WAIT_MS;
	c = client_of(&nodes[3]);
	for (;;) {
		pmap_read(c, &m);
		if (m.meta_leader != 0)
			break;
		cr_assert_lt(now_ms(), until, "no metadata leader");
		pause_ms(50);
	}
	uint32_t leader = m.meta_leader;
	cr_assert_eq(raw_status(c, 10004, &leader, 4), 0, "RemoveNode of the metadata leader %u", leader);
	until = now_ms() + 2 * WAIT_MS;
	for (;;) {
		pmap_read(c, &m);
		if (m.meta_leader != 0 && m.meta_leader != leader && m.n_nodes == 3 && !has(m.node_ids, 3, leader))
			break;
		cr_assert_lt(now_ms(), until, "node %u still leads or is still listed (leader %u, %u nodes)", leader,
			     m.meta_leader, m.n_nodes);
		pause_ms(100);
	}
	/* The removed node stops; the three others carry on: metadata and sends. */
	node_stop(&nodes[leader - 1]);
	second_half(c, &nodes[3], acked);
	const struct node *other = leader == 1 ? &nodes[1] : &nodes[0];
	check_survivors(other, &nodes[3], acked);
	for (int i = 0; i < NODES; i++)
		node_stop(&nodes[i]);
}

/*
 * Two removals in a row with a node added between them (the jepsen member nemesis's schedule): node 3
 * leaves (the partitions shrink to nodes 1 and 2), node 4 is added, then node 1, leading partitions and
 * the metadata, leaves too. Node 4 must take node 1's replicas: it learns of node 1's removal at the
 * moment its own replicas (not configured yet) wait for node 1 to add them, and must keep node 1 reachable
 * until they are configured. Then, with node 1 stopped, nodes 2 and 4 make every quorum.
 */
Test(membership, a_node_removed_after_another_hands_its_partitions_to_a_node_added_between)
{
	uint64_t acked[PARTS][2 * M];
	struct gclient *c = start_three(&nodes[1], acked);
	uint32_t three = 3, one = 1;
	cr_assert_eq(raw_status(c, 10004, &three, 4), 0, "RemoveNode 3");
	uint64_t until = now_ms() + 2 * WAIT_MS;
	for (;;) {
		struct pmap m;
		pmap_read(c, &m);
		bool moved = m.n_nodes == 2 && m.np == PARTS;
		for (uint32_t i = 0; moved && i < m.np; i++)
			moved = m.p[i].nr == 2 && !has(m.p[i].rep, m.p[i].nr, 3);
		if (moved && log_count(&nodes[2], "replica moved away; closed") >= PARTS)
			break;
		cr_assert_lt(now_ms(), until, "node 3 not out of its groups");
		pause_ms(100);
	}
	node_stop(&nodes[2]);
	node_start(&nodes[3]);
	uint8_t body[64];
	size_t blen = add_body(&nodes[3], body);
	cr_assert_eq(raw_status(c, 10003, body, blen), 0, "AddNode 4");
	int rv;
	until = now_ms() + WAIT_MS;
	/* 10063 until node 2 has a link to node 4 (a node just added counts as live once its link is up) */
	while (((rv = raw_status(c, 10004, &one, 4)) == 58 || rv == 10063) && now_ms() < until)
		pause_ms(100);
	cr_assert_eq(rv, 0, "RemoveNode 1: %d", rv);
	until = now_ms() + 2 * WAIT_MS;
	for (;;) {
		struct pmap m;
		pmap_read(c, &m);
		bool moved = m.np == PARTS;
		for (uint32_t i = 0; moved && i < m.np; i++)
			moved = m.p[i].nr == 2 && has(m.p[i].rep, 2, 2) && has(m.p[i].rep, 2, 4);
		int closed = log_count(&nodes[0], "replica moved away; closed");
		if (moved && closed >= PARTS && m.n_nodes == 2 && !has(m.node_ids, m.n_nodes, 1))
			break;
		cr_assert_lt(now_ms(), until, "node 1 not out of its groups: %d of its replicas closed, %u nodes listed; see %s",
			     closed, m.n_nodes, nodes[3].log);
		pause_ms(100);
	}
	gclient_close(c);
	node_stop(&nodes[0]);
	c = client_of(&nodes[1]);
	await_leaders(c, 1, 3);
	second_half(c, &nodes[1], acked);
	check_survivors(&nodes[1], &nodes[3], acked);
	node_stop(&nodes[1]);
	node_stop(&nodes[3]);
}

/* Reads node n's answer to GetClusterMetadata (12) and GetPartitionLeaders (10001): each node's host and ports. */
struct advert {
	uint32_t n;
	struct {
		char host[64];
		uint16_t tcp, quic, http;
	} node[8];
};

static void read_adverts(const struct node *n, bool cluster_metadata, struct advert *a)
{
	memset(a, 0, sizeof(*a));
	struct gclient *c = client_of(n);
	const uint8_t *r;
	size_t len;
	cr_assert_eq(gclient_raw(c, cluster_metadata ? 12 : 10001, NULL, 0, &r, &len), 0);
	struct wire_rd rd;
	wire_rd_init(&rd, r, len);
	if (cluster_metadata) {
		uint32_t nl = wire_get_u32(&rd);
		for (uint32_t k = 0; k < nl; k++)
			(void)wire_get_u8(&rd);
	}
	a->n = wire_get_u32(&rd);
	cr_assert_leq(a->n, 8);
	for (uint32_t i = 0; i < a->n; i++) {
		if (cluster_metadata) {
			uint32_t nl = wire_get_u32(&rd);
			for (uint32_t k = 0; k < nl; k++)
				(void)wire_get_u8(&rd);
		} else {
			(void)wire_get_u32(&rd);
		}
		uint32_t hl = cluster_metadata ? wire_get_u32(&rd) : wire_get_u8(&rd);
		cr_assert_lt(hl, sizeof(a->node[i].host));
		for (uint32_t k = 0; k < hl; k++)
			a->node[i].host[k] = (char)wire_get_u8(&rd);
		a->node[i].tcp = wire_get_u16(&rd);
		a->node[i].quic = wire_get_u16(&rd);
		a->node[i].http = wire_get_u16(&rd);
		if (cluster_metadata) {
			(void)wire_get_u16(&rd);
			(void)wire_get_u8(&rd);
			(void)wire_get_u8(&rd);
		}
	}
	cr_assert_eq(wire_rd_error(&rd), 0);
	gclient_close(c);
}

/*
 * Advertised client addresses (node.advertised_host, <transport>.advertised_port): every node lists
 * every node at the address that node advertises, in GetClusterMetadata and in GetPartitionLeaders; a
 * node advertising nothing keeps its roster address. They survive a restart of the whole cluster.
 */
Test(membership, every_node_lists_the_client_addresses_each_node_advertises)
{
	static char host[3][64], tcp[3][32], quic[3][32];
	for (int i = 0; i < 2; i++) { /* node 3 advertises nothing */
		snprintf(host[i], sizeof(host[i]), "--node.advertised_host=galgo-%d.example", i);
		snprintf(tcp[i], sizeof(tcp[i]), "--tcp.advertised_port=%d", 8101 + i);
		snprintf(quic[i], sizeof(quic[i]), "--quic.advertised_port=%d", 8201 + i);
		nodes[i].extra[0] = host[i];
		nodes[i].extra[1] = tcp[i];
		nodes[i].extra[2] = quic[i];
	}
	for (int i = 0; i < 3; i++)
		node_start(&nodes[i]);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 3; i++)
			for (int kind = 0; kind < 2; kind++) {
				struct advert a;
				uint64_t until = now_ms() + WAIT_MS;
				for (;;) {
					read_adverts(&nodes[i], kind == 0, &a);
					if (a.n == 3 && strcmp(a.node[0].host, "galgo-0.example") == 0 &&
					    strcmp(a.node[1].host, "galgo-1.example") == 0)
						break;
					cr_assert_lt(now_ms(), until, "node %u (%s) lists %u nodes, the first at %s", nodes[i].id,
						     kind == 0 ? "GetClusterMetadata" : "GetPartitionLeaders", a.n, a.node[0].host);
					pause_ms(100);
				}
				cr_assert_eq(a.node[0].tcp, 8101);
				cr_assert_eq(a.node[1].tcp, 8102);
				cr_assert_eq(a.node[0].quic, 8201);
				cr_assert_eq(a.node[0].http, 0, "HTTP is off and not advertised");
				cr_assert_str_eq(a.node[2].host, "127.0.0.1");
				cr_assert_eq(a.node[2].tcp, nodes[2].tcp);
			}
		if (round == 0) {
			for (int i = 0; i < 3; i++)
				node_stop(&nodes[i]);
			for (int i = 0; i < 3; i++)
				node_start(&nodes[i]);
		}
	}
	for (int i = 0; i < 3; i++)
		node_stop(&nodes[i]);
}

/* Whether node `id` leads any partition, as node n sees the map (after a bounded wait for a full map). */
static uint32_t led_by(struct gclient *c, uint32_t id, uint32_t *meta_leader)
{
	struct pmap m;
	pmap_read(c, &m);
	uint32_t n = 0;
	for (uint32_t i = 0; i < m.np; i++)
		n += m.p[i].leader == id;
	*meta_leader = m.meta_leader;
	return n;
}

/*
 * Drain (galgo-admin drain, 10005): the metadata leader, drained, hands every leadership it holds to the
 * others and takes none back, not even from leadership balance (its partitions' preferred leader) for
 * longer than the balance interval; sends through it still work. Undrained, it leads its preferred
 * partitions again. Stopped with SIGTERM, a node hands its leaderships over before it goes.
 */
Test(membership, a_drained_node_leads_nothing_until_undrained_and_sigterm_hands_leadership_over)
{
	uint64_t acked[PARTS][2 * M];
	struct gclient *c = start_three(&nodes[0], acked);
	uint32_t meta = 0;
	uint64_t until = now_ms() + WAIT_MS;
	while ((void)led_by(c, 0, &meta), meta == 0) {
		cr_assert_lt(now_ms(), until, "no metadata leader");
		pause_ms(50);
	}
	struct node *x = &nodes[meta - 1];
	const struct node *other = &nodes[meta % 3];
	gclient_close(c);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s/galgo-admin --server 127.0.0.1:%d drain 30 >%s/drain.out 2>&1", GALGO_BUILD_DIR,
		 x->tcp, tmpdir);
	int st = system(cmd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "galgo-admin drain of node %u: %d; see %s/drain.out", x->id, st,
		  tmpdir);
	c = client_of(other);
	uint32_t ml;
	cr_assert_eq(led_by(c, x->id, &ml), 0, "node %u still leads partitions once drained", x->id);
	cr_assert_neq(ml, x->id, "node %u still leads the metadata group once drained", x->id);
	/* Longer than the balance interval (5 s): nothing comes back to it. */
	pause_ms(7000);
	cr_assert_eq(led_by(c, x->id, &ml), 0, "a drained node took a partition's leadership back");
	cr_assert_neq(ml, x->id);
	/* Through the drained node, sends are forwarded to the leaders. */
	struct gclient *cx = client_of(x);
	for (uint32_t p = 0; p < PARTS; p++)
		acked[p][M] = send_part_acked(&cx, x, p, M, true);
	gclient_close(cx);
	snprintf(cmd, sizeof(cmd), "%s/galgo-admin --server 127.0.0.1:%d undrain >>%s/drain.out 2>&1", GALGO_BUILD_DIR,
		 x->tcp, tmpdir);
	st = system(cmd);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "galgo-admin undrain: %d", st);
	until = now_ms() + 2 * WAIT_MS;
	while (led_by(c, x->id, &ml) == 0) {
		cr_assert_lt(now_ms(), until, "node %u leads nothing after undrain", x->id);
		pause_ms(200);
	}
	gclient_close(c);
	/* SIGTERM: it hands its leaderships over before it stops (logged), and the others lead everything. */
	node_stop(x);
	cr_assert_eq(log_count(x, "shutdown: every leadership handed over"), 1, "see %s", x->log);
	c = client_of(other);
	await_leaders(c, x->id, 0);
	gclient_close(c);
	for (int i = 0; i < 3; i++)
		node_stop(&nodes[i]);
}
