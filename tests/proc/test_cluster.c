/*
 * Three real galgod processes on loopback, a cluster of three (replication factor 3), driven through the
 * C client: a partition leader killed with SIGKILL in the middle of a stream of acknowledged sends, the
 * producer carrying on through a survivor (which forwards to the new leader), the killed node restarted
 * with its data, and a node restarted with an empty data directory. Asserts: no acknowledged message is
 * lost (each is found at the offset its acknowledgement gave), offsets are dense and hold one message
 * each, and every replica holds the same messages at the same offsets (ids and payload checksums), read
 * from each node's own copy.
 *
 * Each node's output goes to <tmp>/nodeN.log; a failing assertion prints where. Every wait is bounded.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "client/gclient.h"
#include "partition/record.h"
#include "proto/wire.h"

#define GALGOD GALGO_BUILD_DIR "/galgod"
#define N 3
#define WAIT_MS 30000

#include "galgod_nodes.h"

static struct node nodes[N];
static char roster[512];
static bool with_tls; /* node-to-node mutual TLS with the certificates made by make_pki */
static char tls_args[N][3][160];

/* Ports, roster and the three nodes, in tmpdir (made by the caller). */
static void cluster_start(void)
{
	roster[0] = '\0';
	for (int i = 0; i < N; i++) {
		node_init(&nodes[i], (uint32_t)i + 1);
		roster_add(roster, sizeof(roster), &nodes[i]);
	}
	for (int i = 0; i < N; i++) {
		struct node *n = &nodes[i];
		n->roster = roster;
		if (with_tls) {
			snprintf(tls_args[i][0], sizeof(tls_args[i][0]), "--cluster.tls_ca=%s/ca.pem", tmpdir);
			snprintf(tls_args[i][1], sizeof(tls_args[i][1]), "--cluster.tls_cert=%s/node%u.pem", tmpdir, n->id);
			snprintf(tls_args[i][2], sizeof(tls_args[i][2]), "--cluster.tls_key=%s/node%u.key", tmpdir, n->id);
			for (int k = 0; k < 3; k++)
				n->extra[k] = tls_args[i][k];
		}
		node_start(n);
	}
}

static void cluster_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/galgo-cluster-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	cluster_start();
}

static void cluster_teardown(void)
{
	nodes_teardown(nodes, N);
}

/* GetPartitionLeaders (docs/protocol-extensions.md): the leader of partition `pid` of the only topic. */
static uint32_t partition_leader(struct gclient *c, uint32_t pid, uint64_t *epoch)
{
	struct pmap m;
	pmap_read(c, &m);
	uint32_t leader = 0;
	for (uint32_t i = 0; i < m.np; i++) {
		cr_assert_eq(m.p[i].nr, N, "replication factor 3 on 3 nodes");
		if (m.p[i].pid == pid) {
			leader = m.p[i].leader;
			if (epoch != NULL)
				*epoch = m.p[i].epoch;
		}
	}
	return leader;
}

static uint32_t await_leader(struct gclient *c, uint32_t pid, uint32_t not, uint64_t *epoch)
{
	uint64_t until = now_ms() + WAIT_MS;
	for (;;) {
		uint32_t l = partition_leader(c, pid, epoch);
		if (l != 0 && l != not)
			return l;
		cr_assert_lt(now_ms(), until, "no leader for partition %u", pid);
		pause_ms(50);
	}
}

/* What a replica holds: per offset the message's id and payload hash. */
struct held {
	uint64_t n;
	uint8_t (*id)[16];
	uint64_t *hash;
	char (*payload)[16];
};

static void held_free(struct held *h)
{
	free(h->id);
	free(h->hash);
	free(h->payload);
	memset(h, 0, sizeof(*h));
}

/* Reads node n's own copy of partition 0 from offset `from` until it holds those below `want` (bounded). */
static void read_replica_from(const struct node *n, uint64_t from, uint64_t want, struct held *h)
{
	memset(h, 0, sizeof(*h));
	h->id = calloc(want + 1, 16);
	h->hash = calloc(want + 1, sizeof(uint64_t));
	h->payload = calloc(want + 1, 16);
	struct gclient *c = client_of(n);
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	struct wire_consumer who = {.kind = WIRE_CONSUMER_SINGLE, .id = gclient_id_name("checker")};
	uint64_t until = now_ms() + WAIT_MS;
	h->n = from;
	while (h->n < want) {
		struct gclient_polled pr;
		struct wire_polling at = {.kind = WIRE_POLL_OFFSET, .value = h->n};
		int rv = gclient_poll(c, &who, &s, &t, 0, at, 500, false, &pr);
		if (rv == 58 && now_ms() < until) { /* not readable yet (just restarted, or an election) */
			pause_ms(50);
			continue;
		}
		cr_assert_eq(rv, 0, "poll of node %u: %d", n->id, rv);
		cr_assert_eq(gclient_polled_verify(&pr), 0, "node %u returned a damaged batch", n->id);
		struct gclient_msg_iter it;
		gclient_msg_iter_init(&it, &pr);
		struct gclient_msg m;
		while (gclient_msg_next(&it, &m) == 1) {
			cr_assert_eq(m.offset, h->n, "node %u: offset %lu where %lu was due (dense offsets)", n->id,
				     (unsigned long)m.offset, (unsigned long)h->n);
			cr_assert_lt(h->n, want + 1);
			memcpy(h->id[h->n], m.id, 16);
			h->hash[h->n] = XXH3_64bits(m.payload, m.payload_len);
			snprintf(h->payload[h->n], 16, "%.*s", (int)(m.payload_len < 15 ? m.payload_len : 15),
				 (const char *)m.payload);
			h->n++;
		}
		if (h->n < want) {
			cr_assert_lt(now_ms(), until, "node %u holds %lu of %lu messages; see %s", n->id,
				     (unsigned long)h->n, (unsigned long)want, n->log);
			if (pr.count == 0)
				pause_ms(50);
		}
	}
	gclient_close(c);
}

static void read_replica(const struct node *n, uint64_t want, struct held *h)
{
	read_replica_from(n, 0, want, h);
}

struct acked {
	uint64_t offset; /* UINT64_MAX: not acknowledged */
};

/* Every replica holds the same messages at the same offsets, and each acknowledged one where its ack said. */
static void check_replicas(uint64_t want, const struct acked *acks, uint32_t n_acks)
{
	struct held h[N];
	for (int i = 0; i < N; i++)
		read_replica(&nodes[i], want, &h[i]);
	for (int i = 1; i < N; i++)
		for (uint64_t o = 0; o < want; o++) {
			cr_assert(memcmp(h[0].id[o], h[i].id[o], 16) == 0 && h[0].hash[o] == h[i].hash[o],
				  "offset %lu differs between node 1 and node %d", (unsigned long)o, i + 1);
		}
	for (uint32_t k = 0; k < n_acks; k++) {
		if (acks[k].offset == UINT64_MAX)
			continue;
		char expect[16];
		snprintf(expect, sizeof(expect), "m-%05u", k);
		cr_assert_lt(acks[k].offset, want);
		cr_assert_str_eq(h[0].payload[acks[k].offset], expect, "acknowledged message %u lost: offset %lu holds %s",
				 k, (unsigned long)acks[k].offset, h[0].payload[acks[k].offset]);
	}
	for (int i = 0; i < N; i++)
		held_free(&h[i]);
}

/* Sends message k ("m-%05u") through c until acknowledged (an election answers 58 or an error meanwhile). */
static uint64_t send_until_acked(struct gclient **c, const struct node *via, uint32_t k, uint32_t *retries)
{
	char payload[16];
	snprintf(payload, sizeof(payload), "m-%05u", k);
	const void *pl[1] = {payload};
	uint32_t len[1] = {(uint32_t)strlen(payload)};
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	uint64_t until = now_ms() + WAIT_MS;
	for (;;) {
		struct gclient_sent out;
		int rv = gclient_send(*c, &s, &t, 0, 1, pl, len, &out);
		if (rv == 0)
			return out.base_offset;
		(*retries)++;
		cr_assert_lt(now_ms(), until, "message %u not acknowledged within %d ms: %d", k, WAIT_MS, rv);
		if (rv < 0) { /* the connection broke: a new one */
			gclient_close(*c);
			*c = client_of(via);
		}
		pause_ms(50);
	}
}

TestSuite(cluster, .init = cluster_setup, .fini = cluster_teardown, .timeout = 240);

Test(cluster, a_killed_partition_leader_loses_no_acknowledged_message_and_replicas_converge)
{
	struct gclient *admin = client_of(&nodes[0]);
	struct gclient_stream st;
	cr_assert_eq(gclient_create_stream(admin, "s", &st), 0);
	struct wire_id s = gclient_id_name("s");
	cr_assert_eq(gclient_create_topic(admin, &s, "t", 1, "fsync", NULL), 0);
	uint64_t epoch0 = 0;
	uint32_t leader = await_leader(admin, 0, 0, &epoch0);
	gclient_close(admin);

	/* The producer talks to a node that does not lead the partition: its sends are forwarded. */
	const struct node *via = &nodes[leader % N]; /* ids are 1..3: this is the next node */
	cr_assert_neq(via->id, leader);
	struct gclient *prod = client_of(via);
	enum { TOTAL = 300, KILL_AT = 100, RESTART_AT = 200 };
	struct acked acks[TOTAL];
	uint32_t retries = 0;
	uint32_t new_leader = 0;
	for (uint32_t k = 0; k < TOTAL; k++) {
		if (k == KILL_AT)
			node_kill(&nodes[leader - 1]); /* the next sends meet the election: 58, retried */
		if (k == RESTART_AT)
			node_start(&nodes[leader - 1]);
		acks[k].offset = send_until_acked(&prod, via, k, &retries);
	}
	new_leader = await_leader(prod, 0, 0, NULL);
	gclient_close(prod);
	cr_assert_neq(new_leader, 0);
	uint64_t want = 0;
	for (uint32_t k = 0; k < TOTAL; k++)
		if (acks[k].offset + 1 > want)
			want = acks[k].offset + 1;
	cr_assert_geq(want, TOTAL, "every message was acknowledged at a distinct offset");
	/* The restarted node catches up, and all three agree. */
	check_replicas(want, acks, TOTAL);

	/* A follower restarted with an empty data directory is caught up from its peers. */
	admin = client_of(via);
	uint32_t now_leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	struct node *wiped = NULL;
	for (int i = 0; i < N && wiped == NULL; i++)
		if (nodes[i].id != now_leader && &nodes[i] != via)
			wiped = &nodes[i];
	cr_assert_not_null(wiped);
	node_kill(wiped);
	rm_rf(wiped->dir);
	node_start(wiped);
	check_replicas(want, acks, TOTAL);

	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
	cr_log_info("leader %u killed, %u now, %u retried sends, %lu messages", leader, new_leader, retries,
		    (unsigned long)want);
}

/* Re-issues a request refused with 58 (TransientNotAccepted: an election or a leadership hand-over). */
#define RETRY(call)                                                                                      \
	do {                                                                                             \
		uint64_t until_ = now_ms() + WAIT_MS;                                                    \
		int rv_;                                                                                 \
		while ((rv_ = (call)) == 58 && now_ms() < until_)                                         \
			pause_ms(50);                                                                    \
		cr_assert_eq(rv_, 0, "%s: %d", #call, rv_);                                              \
	} while (0)

/* The first offset node n still holds in partition 0. */
static uint64_t first_offset(const struct node *n)
{
	struct gclient *c = client_of(n);
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	struct wire_consumer who = {.kind = WIRE_CONSUMER_SINGLE, .id = gclient_id_name("checker")};
	struct gclient_polled pr;
	struct wire_polling first = {.kind = WIRE_POLL_FIRST};
	RETRY(gclient_poll(c, &who, &s, &t, 0, first, 1, false, &pr));
	struct gclient_msg_iter it;
	gclient_msg_iter_init(&it, &pr);
	struct gclient_msg m;
	cr_assert_eq(gclient_msg_next(&it, &m), 1);
	gclient_close(c);
	return m.offset;
}

/* DeleteSegments (code 503) on node n's replica: its oldest `count` segments. */
static void delete_segments(const struct node *n, uint32_t count)
{
	struct gclient *c = client_of(n);
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	wire_put_id(&b, &s);
	wire_put_id(&b, &t);
	wire_put_u32(&b, 0);
	wire_put_u32(&b, count);
	int rv = gclient_raw(c, 503, b.p, b.len, NULL, NULL);
	cr_assert_eq(rv, 0, "DeleteSegments on node %u: %d", n->id, rv);
	wire_buf_free(&b);
	gclient_close(c);
}

Test(cluster, a_follower_behind_the_retained_log_is_caught_up_by_snapshots_and_an_out_of_band_fetch)
{
	struct gclient *admin = client_of(&nodes[0]);
	struct gclient_stream st;
	cr_assert_eq(gclient_create_stream(admin, "s", &st), 0);
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	cr_assert_eq(gclient_create_topic(admin, &s, "t", 1, "none", NULL), 0);
	uint32_t leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	struct node *follower = &nodes[leader % N], *other = NULL;
	for (int i = 0; i < N; i++)
		if (nodes[i].id != leader && &nodes[i] != follower)
			other = &nodes[i];
	node_kill(follower);

	/* While it is down: ~300 KB of messages (many 16 KiB segments) and >1024 metadata commands. */
	struct gclient *prod = client_of(&nodes[leader - 1]);
	char pl[10][120];
	const void *pp[10];
	uint32_t lens[10];
	for (int i = 0; i < 10; i++) {
		pp[i] = pl[i];
		lens[i] = sizeof(pl[i]);
	}
	enum { BATCHES = 250 };
	for (uint32_t b = 0; b < BATCHES; b++) {
		for (int i = 0; i < 10; i++)
			snprintf(pl[i], sizeof(pl[i]), "m-%05u", b * 10 + (uint32_t)i);
		struct gclient_sent out;
		/* Leadership may move meanwhile (balancing): 58 (not accepted) is re-issued, as the SDK does. */
		RETRY(gclient_send(prod, &s, &t, 0, 10, pp, lens, &out));
		cr_assert_eq(out.base_offset, (uint64_t)b * 10);
	}
	struct wire_consumer who = {.kind = WIRE_CONSUMER_SINGLE, .id = gclient_id_name("reader")};
	for (uint32_t k = 0; k < 1100; k++)
		RETRY(gclient_store_offset(prod, &who, &s, &t, 0, k % (BATCHES * 10)));
	RETRY(gclient_store_offset(prod, &who, &s, &t, 0, 1234));
	gclient_close(prod);
	const uint64_t total = BATCHES * 10;

	/* The survivors drop their oldest segments (each replica its own, after a snapshot covering them). */
	delete_segments(&nodes[leader - 1], 8);
	delete_segments(other, 8);
	uint64_t first = first_offset(&nodes[leader - 1]);
	cr_assert_gt(first, 0, "segments were dropped on the leader");
	/* The metadata snapshot is taken by the once-a-second housekeeping tick: give it two. */
	pause_ms(2500);

	node_start(follower);
	/* Its log restarts at the leader's retained range: fetched out of band, not replayed from 1. */
	struct held h[N];
	for (int i = 0; i < N; i++)
		read_replica_from(&nodes[i], first, total, &h[i]);
	for (int i = 1; i < N; i++)
		for (uint64_t o = first; o < total; o++)
			cr_assert(memcmp(h[0].id[o], h[i].id[o], 16) == 0 && h[0].hash[o] == h[i].hash[o],
				  "offset %lu differs between node 1 and node %d", (unsigned long)o, i + 1);
	for (uint64_t o = first; o < total; o++) {
		char expect[16];
		snprintf(expect, sizeof(expect), "m-%05lu", (unsigned long)o);
		cr_assert_str_eq(h[0].payload[o], expect);
	}
	for (int i = 0; i < N; i++)
		held_free(&h[i]);
	uint64_t f_first = first_offset(follower);
	cr_assert_gt(f_first, 0, "the follower's log starts past offset 0: it was installed, not replayed");

	/* The metadata it missed arrived too (by snapshot or log): the last stored offset is there. */
	struct gclient *fc = client_of(follower);
	struct gclient_offset off;
	uint64_t until = now_ms() + WAIT_MS;
	for (;;) {
		int rv = gclient_get_offset(fc, &who, &s, &t, 0, &off);
		if (rv == 0 && off.stored_offset == 1234)
			break;
		cr_assert_lt(now_ms(), until, "the follower's metadata did not catch up (%d)", rv);
		pause_ms(50);
	}
	gclient_close(fc);
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
}

/* A throwaway CA and a certificate per node, made with the openssl command in the test's directory. */
static void make_pki(void)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
		 "-subj '/CN=galgo test CA' -keyout ca.key -out ca.pem 2>/dev/null && "
		 "for i in 1 2 3; do openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		 "-subj /CN=node$i -keyout node$i.key -out node$i.csr 2>/dev/null && "
		 "openssl x509 -req -in node$i.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
		 "-out node$i.pem 2>/dev/null || exit 1; done",
		 tmpdir);
	cr_assert_eq(system(cmd), 0, "openssl could not make the test certificates");
}

/* cluster_setup with node-to-node mutual TLS: the certificates go in the test's directory first. */
static void tls_cluster_setup(void)
{
	with_tls = true;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/galgo-cluster-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	make_pki();
	cluster_start();
}

static void tls_cluster_teardown(void)
{
	with_tls = false;
	cluster_teardown();
}

/* The same replication over mutually authenticated TLS between the nodes (cluster.tls_*). */
/*
 * A suite of its own: criterion runs a suite's .init before a test's own .init, so under suite `cluster`
 * this test started (and orphaned) a plain cluster first.
 */
TestSuite(cluster_tls, .init = tls_cluster_setup, .fini = tls_cluster_teardown, .timeout = 240);

Test(cluster_tls, nodes_replicate_over_mutual_tls)
{
	struct gclient *admin = client_of(&nodes[0]);
	struct gclient_stream st;
	RETRY(gclient_create_stream(admin, "s", &st));
	struct wire_id s = gclient_id_name("s");
	RETRY(gclient_create_topic(admin, &s, "t", 1, "fsync", NULL));
	uint32_t leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	const struct node *via = &nodes[leader % N]; /* a follower: its sends are forwarded over TLS */
	struct gclient *prod = client_of(via);
	struct acked acks[50];
	uint32_t retries = 0;
	for (uint32_t k = 0; k < 50; k++)
		acks[k].offset = send_until_acked(&prod, via, k, &retries);
	gclient_close(prod);
	check_replicas(50, acks, 50);
	for (int i = 0; i < N; i++) {
		FILE *f = fopen(nodes[i].log, "r");
		cr_assert_not_null(f);
		char line[1024];
		bool tls = false;
		while (fgets(line, sizeof(line), f) != NULL)
			tls |= strstr(line, "mutual TLS") != NULL;
		fclose(f);
		cr_assert(tls, "node %u does not say it uses mutual TLS between nodes; see %s", nodes[i].id, nodes[i].log);
	}
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
}

/* GetConsumerGroup (600) of group "g" of s/t, through node n: the number of members. */
static uint32_t group_members(const struct node *n)
{
	struct gclient *c = client_of(n);
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t"), g = gclient_id_name("g");
	wire_put_id(&b, &s);
	wire_put_id(&b, &t);
	wire_put_id(&b, &g);
	const uint8_t *r;
	size_t len;
	int rv = gclient_raw(c, 600, b.p, b.len, &r, &len);
	cr_assert_eq(rv, 0, "GetConsumerGroup through node %u: %d", n->id, rv);
	cr_assert_geq(len, 12);
	uint32_t members = record_le32(r + 8);
	wire_buf_free(&b);
	gclient_close(c);
	return members;
}

/*
 * A consumer-group member connected to a node that is killed stays a member while the node is down (no
 * one can tell a crash from a slow client), and is gone once that node has restarted: it removes its
 * previous run's members before it serves clients, so their partitions go to the members elsewhere.
 */
Test(cluster, the_group_members_of_a_killed_node_are_removed_when_it_restarts)
{
	struct gclient *admin = client_of(&nodes[0]);
	struct gclient_stream st;
	RETRY(gclient_create_stream(admin, "s", &st));
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t"), g = gclient_id_name("g");
	RETRY(gclient_create_topic(admin, &s, "t", 2, "fsync", NULL));
	uint32_t gid;
	RETRY(gclient_create_group(admin, &s, &t, "g", &gid));
	gclient_close(admin);
	struct gclient *m2 = client_of(&nodes[1]), *m3 = client_of(&nodes[2]);
	RETRY(gclient_join_group(m2, &s, &t, &g));
	RETRY(gclient_join_group(m3, &s, &t, &g));
	uint64_t until = now_ms() + WAIT_MS;
	while (group_members(&nodes[0]) != 2) {
		cr_assert_lt(now_ms(), until, "the two members are not seen on node 1");
		pause_ms(50);
	}
	node_kill(&nodes[2]);
	gclient_close(m3);
	cr_assert_eq(group_members(&nodes[0]), 2, "a killed node's member stays until the node is back");
	node_start(&nodes[2]);
	until = now_ms() + WAIT_MS;
	while (group_members(&nodes[0]) != 1) {
		cr_assert_lt(now_ms(), until, "node 3's member was not removed after its restart");
		pause_ms(50);
	}
	gclient_close(m2);
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
}

/* ---- A node that has not applied the root user yet ---- */

static void lonely_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/galgo-lonely-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	roster[0] = '\0';
	for (int i = 0; i < N; i++) {
		node_init(&nodes[i], (uint32_t)i + 1);
		roster_add(roster, sizeof(roster), &nodes[i]);
		nodes[i].roster = roster;
	}
}

TestSuite(cluster_lonely, .init = lonely_setup, .fini = cluster_teardown, .timeout = 120);

/*
 * One node of a three-node roster, alone: no quorum, so its metadata never gets the root user. A login
 * there certainly did nothing, so it is answered 58 TransientNotAccepted (the SDK retries), not 42
 * InvalidCredentials; with a second node up the root user is applied and the same login succeeds.
 */
Test(cluster_lonely, a_login_before_the_root_user_is_applied_gets_58)
{
	node_start(&nodes[0]);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", nodes[0].tcp);
	struct gclient_opts o = {.connect_timeout_ms = 2000, .io_timeout_ms = 15000};
	struct gclient *c = NULL;
	cr_assert_eq(gclient_connect(addr, &o, &c), 0);
	cr_assert_eq(gclient_login(c, "iggy", "iggy"), 58);
	cr_assert_eq(gclient_login(c, "nobody", "wrong-pw"), 58, "not ready is not an answer about the password");
	gclient_close(c);
	node_start(&nodes[1]);
	c = client_of(&nodes[0]);
	gclient_close(c);
	node_stop(&nodes[1]);
	node_stop(&nodes[0]);
}

/* The output of `galgo-admin nodes` asked of node n (malloc'd). */
static char *admin_nodes(const struct node *n)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s/galgo-admin --server 127.0.0.1:%d nodes 2>&1", GALGO_BUILD_DIR, n->tcp);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	cr_assert_not_null(out);
	size_t got;
	while ((got = fread(out + len, 1, cap - 1 - len, f)) > 0)
		len += got;
	out[len] = '\0';
	int st = pclose(f);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "galgo-admin nodes: %d\n%s", st, out);
	return out;
}

/* The line of `galgo-admin nodes` about node `id` ("  ID  host ..."), copied into line. */
static void admin_node_line(const char *out, uint32_t id, char *line, size_t cap)
{
	char head[32];
	snprintf(head, sizeof(head), "\n  %u  ", id);
	const char *at = strstr(out, head);
	cr_assert_not_null(at, "no line for node %u in:\n%s", id, out);
	at++;
	size_t n = strcspn(at, "\n");
	snprintf(line, cap, "%.*s", (int)(n < cap ? n : cap - 1), at);
}

/*
 * Two nodes of a three-node roster: `galgo-admin nodes` shows the third as unreachable from the asked
 * node, the two others as connected, and each node's metadata role: one leader, the others followers
 * (the third is still a voter of the configuration).
 */
Test(cluster_lonely, admin_nodes_shows_liveness_and_roles)
{
	node_start(&nodes[0]);
	node_start(&nodes[1]);
	struct gclient *c = client_of(&nodes[0]); /* the root user exists: a metadata leader was elected */
	gclient_close(c);
	char *out = admin_nodes(&nodes[0]);
	char line[3][256];
	for (uint32_t i = 0; i < 3; i++)
		admin_node_line(out, i + 1, line[i], sizeof(line[i]));
	cr_assert(strstr(line[0], "  connected  ") != NULL, "%s", out);
	cr_assert(strstr(line[1], "  connected  ") != NULL, "%s", out);
	cr_assert(strstr(line[2], "  UNREACHABLE  follower") != NULL, "%s", out);
	int leaders = (strstr(line[0], "metadata leader") != NULL) + (strstr(line[1], "metadata leader") != NULL);
	int followers = (strstr(line[0], "follower") != NULL) + (strstr(line[1], "follower") != NULL);
	cr_assert(leaders == 1 && followers == 1, "%s", out);
	free(out);
	node_stop(&nodes[1]);
	node_stop(&nodes[0]);
}

/* A login of iggy/password on node n: 0, or the status it was refused with (58: not ready, retry). */
static int login_on(const struct node *n, const char *password, uint64_t *took_ms)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", n->tcp);
	struct gclient_opts o = {.connect_timeout_ms = 2000, .io_timeout_ms = 15000};
	struct gclient *c = NULL;
	uint64_t t0 = now_ms();
	int rv = gclient_connect(addr, &o, &c);
	if (rv == 0)
		rv = gclient_login(c, "iggy", password);
	gclient_close(c);
	if (took_ms != NULL)
		*took_ms = now_ms() - t0;
	return rv;
}

/*
 * A node that cannot reach the metadata leader cannot prove its credentials are current: a login there
 * fails closed with 58 (not ready, retry) within a bound, whether it names the password changed meanwhile
 * through another node or the old one; once it reaches the leader again only the new password works.
 * (It once fell back to its own state: the old password logged in, the new one was refused.)
 */
Test(cluster, a_login_on_a_node_cut_off_from_the_metadata_leader_fails_closed)
{
	struct gclient *c1 = client_of(&nodes[0]); /* node 1 has applied the root user */
	gclient_close(c1);
	kill(nodes[0].pid, SIGSTOP);
	struct gclient *c2 = client_of(&nodes[1]);
	/* ChangePassword (37): [user Identifier][cur_len u8][cur][new_len u8][new]; user 0 is root. */
	uint8_t body[64];
	size_t at = 0;
	body[at++] = 1; /* numeric identifier */
	body[at++] = 4;
	memset(body + at, 0, 4);
	at += 4;
	body[at++] = 4;
	memcpy(body + at, "iggy", 4);
	at += 4;
	body[at++] = 6;
	memcpy(body + at, "new-pw", 6);
	at += 6;
	uint64_t until = now_ms() + WAIT_MS;
	int rv;
	while ((rv = gclient_raw(c2, 37, body, at, NULL, NULL)) != 0) {
		cr_assert_lt(now_ms(), until, "ChangePassword through node 2: %d", rv);
		pause_ms(100);
	}
	gclient_close(c2);
	kill(nodes[1].pid, SIGSTOP);
	kill(nodes[2].pid, SIGSTOP);
	kill(nodes[0].pid, SIGCONT);
	uint64_t took_old, took_new;
	int old_pw = login_on(&nodes[0], "iggy", &took_old);
	int new_pw = login_on(&nodes[0], "new-pw", &took_new);
	kill(nodes[1].pid, SIGCONT);
	kill(nodes[2].pid, SIGCONT);
	cr_assert_eq(old_pw, 58, "the old password on a node cut off from the leader: %d (0 = logged in)", old_pw);
	cr_assert_eq(new_pw, 58, "the new password on a node cut off from the leader: %d", new_pw);
	cr_assert_lt(took_old, 5000, "the refusal took %lu ms", (unsigned long)took_old);
	cr_log_info("logins on the cut-off node refused after %lu and %lu ms", (unsigned long)took_old,
		    (unsigned long)took_new);
	until = now_ms() + WAIT_MS;
	while ((rv = login_on(&nodes[0], "new-pw", NULL)) != 0) {
		cr_assert_lt(now_ms(), until, "the new password never logged in on node 1 after the heal: %d", rv);
		pause_ms(100);
	}
	rv = login_on(&nodes[0], "iggy", NULL);
	cr_assert(rv != 0 && rv != 58, "the old password after the heal: %d", rv);
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
}

/* The one partition directory under node n's <data_dir>/partitions (one topic of one partition). */
static void the_partition_dir(const struct node *n, char *out, size_t cap)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "ls -d %s/partitions/*/ | head -1", n->dir);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	cr_assert_not_null(fgets(out, (int)cap, p), "no partition directory on node %u", n->id);
	pclose(p);
	out[strcspn(out, "\n")] = '\0';
}

/*
 * A follower's segment truncated in the middle (not the last one: a torn tail is recovered, this is damage
 * below the recovery point) makes its replica fail to open. It is set aside and rebuilt from the peers: the
 * follower serves every message again, identical to its peers, and with it the partition survives losing
 * one more node (sends are committed by the leader and the rebuilt replica).
 */
Test(cluster, a_replica_with_a_segment_truncated_in_the_middle_is_rebuilt_from_its_peers)
{
	struct gclient *admin = client_of(&nodes[0]);
	struct gclient_stream st;
	RETRY(gclient_create_stream(admin, "s", &st));
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	RETRY(gclient_create_topic(admin, &s, "t", 1, "fsync", NULL));
	uint32_t leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	struct gclient *prod = client_of(&nodes[leader - 1]);
	char pl[10][120];
	const void *pp[10];
	uint32_t lens[10];
	for (int i = 0; i < 10; i++) {
		pp[i] = pl[i];
		lens[i] = sizeof(pl[i]);
	}
	enum { BATCHES = 100, MORE = 20 };
	for (uint32_t b = 0; b < BATCHES; b++) {
		for (int i = 0; i < 10; i++)
			snprintf(pl[i], sizeof(pl[i]), "m-%05u", b * 10 + (uint32_t)i);
		struct gclient_sent out;
		RETRY(gclient_send(prod, &s, &t, 0, 10, pp, lens, &out));
	}
	gclient_close(prod);
	uint64_t total = BATCHES * 10;
	struct node *f = &nodes[leader % N];
	struct held h;
	read_replica(f, total, &h); /* the follower holds it all */
	held_free(&h);
	node_stop(f);

	/* ~120 KB in 16 KiB segments: the third segment loses its second half. */
	char dir[512], cmd[1200];
	the_partition_dir(f, dir, sizeof(dir));
	snprintf(cmd, sizeof(cmd),
		 "cd %s && s=$(ls *.log | sort | sed -n 3p) && [ -n \"$s\" ] && [ $(ls *.log | wc -l) -gt 3 ] && "
		 "truncate -s $(( $(stat -c %%s $s) / 2 )) $s",
		 dir);
	cr_assert_eq(system(cmd), 0, "no third segment of several in %s", dir);
	node_start(f);

	/* Rebuilt from its peers: every message, the same as on the others. */
	check_replicas(total, NULL, 0);

	/* One more node lost (not the leader): the leader and the rebuilt replica still commit. */
	admin = client_of(&nodes[leader - 1]);
	uint32_t now_leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	struct node *other = NULL;
	for (int i = 0; i < N; i++)
		if (&nodes[i] != f && nodes[i].id != now_leader)
			other = &nodes[i];
	cr_assert_not_null(other);
	node_kill(other);
	prod = client_of(&nodes[now_leader - 1]);
	for (uint32_t b = 0; b < MORE; b++) {
		for (int i = 0; i < 10; i++)
			snprintf(pl[i], sizeof(pl[i]), "m-%05u", (BATCHES + b) * 10 + (uint32_t)i);
		struct gclient_sent out;
		RETRY(gclient_send(prod, &s, &t, 0, 10, pp, lens, &out));
	}
	gclient_close(prod);
	read_replica(f, total + MORE * 10, &h);
	for (uint64_t o = 0; o < total + MORE * 10; o++) {
		char expect[16];
		snprintf(expect, sizeof(expect), "m-%05lu", (unsigned long)o);
		cr_assert_str_eq(h.payload[o], expect, "the rebuilt replica holds %s at %lu", h.payload[o], (unsigned long)o);
	}
	held_free(&h);
	cr_assert_eq(log_count(f, "is damaged: moved to"), 1, "node %u did not log the damage; see %s", f->id, f->log);
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
}

/*
 * A digest of the records of node n's one partition: its .log files in name order, each without its 64-byte
 * header (which holds the segment's creation time, informative and local: partition/segment.h).
 */
static void replica_digest(const struct node *n, char *out, size_t cap)
{
	char cmd[800];
	/* The directory may be gone for a moment (set aside, then made again): an empty digest then. */
	snprintf(cmd, sizeof(cmd),
		 "cd %s/partitions/* 2>/dev/null && for f in $(ls *.log | sort); do echo $f; tail -c +65 $f; done | "
		 "sha256sum",
		 n->dir);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	if (fgets(out, (int)cap, p) == NULL)
		snprintf(out, cap, "(no replica) %u", n->id);
	pclose(p);
}

/*
 * A byte flipped inside a message payload of a follower's stored segment passes the envelope checks at
 * open; the scrubber (or a read) finds it and fences it, and the replica is then rebuilt from its peers:
 * it ends byte-identical to them, and nobody was ever served the altered payload.
 */
static void flipped_and_rebuilt(bool on_the_leader)
{
	struct gclient *admin = client_of(&nodes[0]);
	struct gclient_stream st;
	RETRY(gclient_create_stream(admin, "s", &st));
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	RETRY(gclient_create_topic(admin, &s, "t", 1, "fsync", NULL));
	uint32_t leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	struct gclient *prod = client_of(&nodes[leader - 1]);
	char pl[10][120];
	const void *pp[10];
	uint32_t lens[10];
	for (int i = 0; i < 10; i++) {
		pp[i] = pl[i];
		lens[i] = sizeof(pl[i]);
	}
	enum { BATCHES = 60 };
	for (uint32_t b = 0; b < BATCHES; b++) {
		for (int i = 0; i < 10; i++)
			snprintf(pl[i], sizeof(pl[i]), "m-%05u", b * 10 + (uint32_t)i);
		struct gclient_sent out;
		RETRY(gclient_send(prod, &s, &t, 0, 10, pp, lens, &out));
	}
	gclient_close(prod);
	const uint64_t total = BATCHES * 10;
	struct node *f = on_the_leader ? &nodes[leader - 1] : &nodes[leader % N];
	const struct node *peer = &nodes[(f->id) % N]; /* another node */
	struct held h;
	for (int i = 0; i < N; i++) {
		read_replica(&nodes[i], total, &h);
		held_free(&h);
	}
	node_stop(f);

	/* "m-00150" becomes "X-00150" in the follower's copy (in its second segment). */
	char dir[512], cmd[1200];
	the_partition_dir(f, dir, sizeof(dir));
	snprintf(cmd, sizeof(cmd),
		 "cd %s && s=$(ls *.log | sort | sed -n 2p) && o=$(grep -boa 'm-00150' $s | head -1 | cut -d: -f1) && "
		 "[ -n \"$o\" ] && printf X | dd of=$s bs=1 seek=$o conv=notrunc status=none",
		 dir);
	cr_assert_eq(system(cmd), 0, "message 150 is not in the second segment of %s", dir);
	node_start(f);

	/* Rebuilt: its records become the same bytes as the leader's, and every poll verifies. */
	char want[128], got[128];
	uint64_t until = now_ms() + WAIT_MS;
	for (;;) {
		replica_digest(peer, want, sizeof(want));
		replica_digest(f, got, sizeof(got));
		if (strcmp(want, got) == 0)
			break;
		cr_assert_lt(now_ms(), until, "node %u's records never became identical to node %u's; see %s", f->id,
			     peer->id, f->log);
		pause_ms(200);
	}
	check_replicas(total, NULL, 0); /* every poll verifies each batch's checksums (read_replica_from) */
	cr_assert_eq(log_count(f, "damaged records: rebuilding it from its peers"), 1, "see %s", f->log);
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
}

Test(cluster, a_follower_whose_payload_bytes_were_flipped_is_rebuilt_byte_identical_to_its_peers)
{
	flipped_and_rebuilt(false);
}

/* The damaged replica is the partition's leader (it leads again after its restart, or not): the same. */
Test(cluster, a_leader_whose_payload_bytes_were_flipped_is_rebuilt_byte_identical_to_its_peers)
{
	flipped_and_rebuilt(true);
}

/*
 * Both copies of the term-and-vote record of a follower's partition group damaged in its raft/raft.meta:
 * the node refuses to start and names the group and the way forward; started once with
 * cluster.salvage_votes it drops that record, the group takes part again (recovering first: no vote until
 * it has caught up, which it logs) and then the partition keeps committing with it when another node is
 * lost.
 */
Test(cluster, a_damaged_vote_record_is_named_and_salvage_brings_the_group_back)
{
	struct gclient *admin = client_of(&nodes[0]);
	struct gclient_stream st;
	RETRY(gclient_create_stream(admin, "s", &st));
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	RETRY(gclient_create_topic(admin, &s, "t", 1, "fsync", NULL));
	uint32_t leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	struct gclient *prod = client_of(&nodes[leader - 1]);
	char pl[16];
	const void *pp[1] = {pl};
	uint32_t lens[1];
	enum { FIRST = 50, MORE = 50 };
	for (uint32_t k = 0; k < FIRST; k++) {
		snprintf(pl, sizeof(pl), "m-%05u", k);
		lens[0] = (uint32_t)strlen(pl);
		struct gclient_sent out;
		RETRY(gclient_send(prod, &s, &t, 0, 1, pp, lens, &out));
	}
	struct node *f = &nodes[leader % N];
	struct held h;
	read_replica(f, FIRST, &h);
	held_free(&h);
	node_stop(f);

	/* The group's pair: the record whose group field (bytes 8..16) is the partition directory's name. */
	char dir[512], path[300];
	the_partition_dir(f, dir, sizeof(dir));
	const char *name = strrchr(dir, '/');
	while (name != NULL && name > dir && name[1] == '\0') { /* "…/<gid>/": the last component */
		*(char *)name = '\0';
		name = strrchr(dir, '/');
	}
	cr_assert_not_null(name);
	uint64_t gid = strtoull(name + 1, NULL, 16);
	snprintf(path, sizeof(path), "%s/raft/raft.meta", f->dir);
	FILE *fp = fopen(path, "r+b");
	cr_assert_not_null(fp);
	uint8_t pair[1024];
	long at = -1;
	for (long p = 0; at < 0 && fseek(fp, p * 1024, SEEK_SET) == 0 && fread(pair, 1, sizeof(pair), fp) >= 64; p++)
		if (record_le64(pair + 8) == gid)
			at = p * 1024;
	cr_assert_geq(at, 0, "no record of group %016lx in %s", (unsigned long)gid, path);
	for (long c = 0; c < 2; c++) { /* each copy's term */
		uint8_t b;
		cr_assert_eq(fseek(fp, at + c * 512 + 24, SEEK_SET), 0);
		cr_assert_eq(fread(&b, 1, 1, fp), 1);
		b ^= 0x5a;
		cr_assert_eq(fseek(fp, at + c * 512 + 24, SEEK_SET), 0);
		cr_assert_eq(fwrite(&b, 1, 1, fp), 1);
	}
	cr_assert_eq(fclose(fp), 0);

	/* Refused, naming the group and the way forward. */
	cr_assert_neq(node_start_fails(f), 0);
	char named[64];
	snprintf(named, sizeof(named), "group %016lx (unverified)", (unsigned long)gid);
	cr_assert_geq(log_count(f, named), 1, "the error does not name %s; see %s", named, f->log);
	cr_assert_geq(log_count(f, "--cluster.salvage_votes=true"), 1, "no way forward given; see %s", f->log);

	/* Salvaged: it rejoins; with another node lost, the leader and it still commit, and it catches up. */
	f->extra[0] = "--cluster.salvage_votes=true";
	node_start(f);
	f->extra[0] = NULL;
	uint64_t until = now_ms() + WAIT_MS;
	while (log_count(f, "caught up with its leader") == 0) {
		cr_assert_lt(now_ms(), until, "the salvaged group never left recovery; see %s", f->log);
		pause_ms(100);
	}
	/* Leadership may move to the returning node (its preferred leader): wait until it holds still. */
	gclient_close(prod);
	admin = client_of(&nodes[leader - 1]);
	uint32_t now_leader = await_leader(admin, 0, 0, NULL), still = 0;
	while (still < 20) {
		pause_ms(100);
		uint32_t l = await_leader(admin, 0, 0, NULL);
		still = l == now_leader ? still + 1 : 0;
		now_leader = l;
	}
	gclient_close(admin);
	struct node *other = NULL;
	for (int i = 0; i < N; i++)
		if (&nodes[i] != f && nodes[i].id != now_leader)
			other = &nodes[i];
	cr_assert_not_null(other);
	node_kill(other);
	prod = client_of(&nodes[now_leader - 1]);
	for (uint32_t k = FIRST; k < FIRST + MORE; k++) {
		snprintf(pl, sizeof(pl), "m-%05u", k);
		lens[0] = (uint32_t)strlen(pl);
		struct gclient_sent out;
		RETRY(gclient_send(prod, &s, &t, 0, 1, pp, lens, &out));
	}
	gclient_close(prod);
	read_replica(f, FIRST + MORE, &h);
	for (uint64_t o = 0; o < FIRST + MORE; o++) {
		char expect[16];
		snprintf(expect, sizeof(expect), "m-%05lu", (unsigned long)o);
		cr_assert_str_eq(h.payload[o], expect);
	}
	held_free(&h);
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
}

/*
 * A follower's snapshot file damaged (a flipped byte: raft/rsnap.c's checks fail) makes its replica's group
 * fail to start. It is rebuilt from its peers like a damaged log: it serves every message again, and the
 * partition then survives losing one more node.
 */
Test(cluster, a_replica_with_a_damaged_snapshot_is_rebuilt_from_its_peers)
{
	struct gclient *admin = client_of(&nodes[0]);
	struct gclient_stream st;
	RETRY(gclient_create_stream(admin, "s", &st));
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	RETRY(gclient_create_topic(admin, &s, "t", 1, "fsync", NULL));
	uint32_t leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	struct gclient *prod = client_of(&nodes[leader - 1]);
	char pl[10][120];
	const void *pp[10];
	uint32_t lens[10];
	for (int i = 0; i < 10; i++) {
		pp[i] = pl[i];
		lens[i] = sizeof(pl[i]);
	}
	enum { BATCHES = 60, MORE = 10 };
	for (uint32_t b = 0; b < BATCHES + MORE; b++) {
		if (b == BATCHES) {
			/* The follower snapshots and drops its two oldest segments; then it stops. */
			struct node *f = &nodes[leader % N];
			struct held h;
			read_replica(f, BATCHES * 10, &h);
			held_free(&h);
			delete_segments(f, 2);
			node_stop(f);
			char path[400];
			snprintf(path, sizeof(path), "ls %s/raft/snap/*/snapshot | head -1", f->dir);
			FILE *p = popen(path, "r");
			cr_assert_not_null(p);
			cr_assert_not_null(fgets(path, sizeof(path), p), "node %u took no snapshot", f->id);
			pclose(p);
			path[strcspn(path, "\n")] = '\0';
			FILE *fp = fopen(path, "r+b");
			cr_assert_not_null(fp);
			cr_assert_eq(fseek(fp, 0, SEEK_END), 0);
			long size = ftell(fp);
			uint8_t c;
			cr_assert_eq(fseek(fp, size / 2, SEEK_SET), 0);
			cr_assert_eq(fread(&c, 1, 1, fp), 1);
			c ^= 0x20;
			cr_assert_eq(fseek(fp, size / 2, SEEK_SET), 0);
			cr_assert_eq(fwrite(&c, 1, 1, fp), 1);
			cr_assert_eq(fclose(fp), 0);
			node_start(f);
		}
		for (int i = 0; i < 10; i++)
			snprintf(pl[i], sizeof(pl[i]), "m-%05u", b * 10 + (uint32_t)i);
		struct gclient_sent out;
		RETRY(gclient_send(prod, &s, &t, 0, 10, pp, lens, &out));
	}
	gclient_close(prod);
	const uint64_t total = (BATCHES + MORE) * 10;
	struct node *f = &nodes[leader % N];
	check_replicas(total, NULL, 0);

	/* One more node lost (not the leader, not the rebuilt one): the partition still commits. */
	admin = client_of(&nodes[leader - 1]);
	uint32_t now_leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	struct node *other = NULL;
	for (int i = 0; i < N; i++)
		if (&nodes[i] != f && nodes[i].id != now_leader)
			other = &nodes[i];
	cr_assert_not_null(other);
	node_kill(other);
	prod = client_of(&nodes[now_leader - 1]);
	for (int i = 0; i < 10; i++)
		snprintf(pl[i], sizeof(pl[i]), "m-%05u", (uint32_t)total + (uint32_t)i);
	struct gclient_sent out;
	RETRY(gclient_send(prod, &s, &t, 0, 10, pp, lens, &out));
	gclient_close(prod);
	struct held h;
	read_replica(f, total + 10, &h);
	for (uint64_t o = 0; o < total + 10; o++) {
		char expect[16];
		snprintf(expect, sizeof(expect), "m-%05lu", (unsigned long)o);
		cr_assert_str_eq(h.payload[o], expect);
	}
	held_free(&h);
	cr_assert_geq(log_count(f, "its snapshot is damaged"), 1, "see %s", f->log);
	for (int i = 0; i < N; i++)
		node_stop(&nodes[i]);
}

/*
 * A byte flipped inside a record of a node's metadata log (in a stream's name, so the record's envelope
 * still reads well): the node verifies its whole metadata log at start, sets it aside, and rebuilds its
 * metadata from its peers. It then serves the stream whose record was damaged and the one created while it
 * was down, keeps its partition replica (nothing is removed as an orphan meanwhile), and its metadata
 * replica counts toward the quorum again: with another node killed, a stream is still created through it.
 */
Test(cluster, a_node_whose_metadata_log_is_damaged_rebuilds_it_from_its_peers)
{
	struct gclient *admin = client_of(&nodes[0]);
	struct gclient_stream st;
	RETRY(gclient_create_stream(admin, "s", &st));
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	RETRY(gclient_create_topic(admin, &s, "t", 1, "fsync", NULL));
	RETRY(gclient_create_stream(admin, "before-damage", &st));
	uint32_t leader = await_leader(admin, 0, 0, NULL);
	gclient_close(admin);
	struct gclient *prod = client_of(&nodes[leader - 1]);
	char pl[10][32];
	const void *pp[10];
	uint32_t lens[10];
	enum { BATCHES = 10 };
	for (uint32_t b = 0; b < BATCHES; b++) {
		for (int i = 0; i < 10; i++) {
			lens[i] = (uint32_t)snprintf(pl[i], sizeof(pl[i]), "m-%05u", b * 10 + (uint32_t)i);
			pp[i] = pl[i];
		}
		struct gclient_sent out;
		RETRY(gclient_send(prod, &s, &t, 0, 10, pp, lens, &out));
	}
	gclient_close(prod);
	const uint64_t total = BATCHES * 10;
	struct node *f = &nodes[leader % N];
	struct held h;
	read_replica(f, total, &h);
	held_free(&h);
	node_stop(f);

	char cmd[1200];
	snprintf(cmd, sizeof(cmd),
		 "cd %s/meta/log && s=$(grep -la 'before-damage' *.log | head -1) && [ -n \"$s\" ] && "
		 "o=$(grep -boa 'before-damage' $s | head -1 | cut -d: -f1) && "
		 "printf X | dd of=$s bs=1 seek=$o conv=notrunc status=none",
		 f->dir);
	cr_assert_eq(system(cmd), 0, "no record naming the stream in %s/meta/log", f->dir);
	admin = client_of(&nodes[leader - 1]);
	RETRY(gclient_create_stream(admin, "while-down", &st));
	gclient_close(admin);
	node_start(f);

	/* A login succeeds only once the node knows its metadata is current (the login barrier). */
	struct gclient *c = client_of(f);
	struct wire_id before = gclient_id_name("before-damage"), during = gclient_id_name("while-down");
	cr_assert_eq(gclient_get_stream(c, &before, &st), 0, "node %u lost a stream; see %s", f->id, f->log);
	cr_assert_eq(gclient_get_stream(c, &during, &st), 0, "node %u missed a stream; see %s", f->id, f->log);
	gclient_close(c);
	check_replicas(total, NULL, 0);
	cr_assert_eq(log_count(f, "is damaged: the log is moved to"), 1, "see %s", f->log);
	snprintf(cmd, sizeof(cmd), "ls -d %s/damaged/meta-* >/dev/null", f->dir);
	cr_assert_eq(system(cmd), 0, "the damaged metadata log was not kept in %s/damaged", f->dir);

	/*
	 * Its metadata replica is a voter again: with the metadata leader killed (never the rebuilt node: it
	 * asked for no vote while it caught up), the two others elect one and metadata still commits. The
	 * rebuilt node grants its vote only once it knows it holds everything committed, which takes an entry
	 * of the current leader's term: a leader commits an empty one when it is elected.
	 */
	struct pmap pm;
	c = client_of(f);
	uint64_t until = now_ms() + WAIT_MS;
	for (pmap_read(c, &pm); pm.meta_leader == 0; pmap_read(c, &pm)) {
		cr_assert_lt(now_ms(), until, "no metadata leader known to node %u", f->id);
		pause_ms(50);
	}
	gclient_close(c);
	cr_assert_neq(pm.meta_leader, f->id, "the rebuilt node leads the metadata group already");
	struct node *other = &nodes[pm.meta_leader - 1];
	node_kill(other);
	c = client_of(f);
	RETRY(gclient_create_stream(c, "after-repair", &st));
	gclient_close(c);
	for (int i = 0; i < N; i++)
		if (&nodes[i] != other)
			node_stop(&nodes[i]);
}
