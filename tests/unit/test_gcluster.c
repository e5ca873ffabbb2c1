/*
 * Tests of the cluster-aware producer (client/gcluster.h) against three real galgod processes forming a
 * Raft cluster on loopback: free ports are picked for each node's TCP listener and node-to-node link,
 * the roster names them all, every node writes its output to <tmpdir>/nodeN.log, and the test waits for
 * each "galgod ready" line. Nodes still running at the end are stopped with SIGTERM and must exit 0
 * (under ASan/UBSan: no error, no leak); the fini hook kills whatever a failed test left running.
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

extern char **environ;

static char tmpdir[64];
static pid_t pids[NODES + 1];
static int tcp_port[NODES + 1], raft_port[NODES + 1];
static char seeds[256];

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A short pause between two reads of something that changes on its own (the map during an election). */
static void pause_ms(int ms)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000};
	nanosleep(&ts, NULL);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return strdup("");
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	size_t got = fread(buf, 1, (size_t)n, f);
	buf[got] = '\0';
	fclose(f);
	return buf;
}

static void node_log_path(int i, char *buf, size_t len)
{
	snprintf(buf, len, "%s/node%d.log", tmpdir, i);
}

/* Free loopback ports: all sockets stay bound until every port is chosen, so none repeats. */
static void pick_ports(void)
{
	int fds[2 * NODES];
	for (int k = 0; k < 2 * NODES; k++) {
		fds[k] = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert_geq(fds[k], 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		cr_assert_eq(bind(fds[k], (struct sockaddr *)&a, sizeof(a)), 0);
		socklen_t al = sizeof(a);
		cr_assert_eq(getsockname(fds[k], (struct sockaddr *)&a, &al), 0);
		int port = ntohs(a.sin_port);
		if (k < NODES)
			tcp_port[k + 1] = port;
		else
			raft_port[k - NODES + 1] = port;
	}
	for (int k = 0; k < 2 * NODES; k++)
		close(fds[k]);
}

static void start_node(int i, const char *roster)
{
	char id[32], data[128], tcp[64], nodes[512], logpath[128];
	snprintf(id, sizeof(id), "--node.id=%d", i);
	snprintf(data, sizeof(data), "--node.data_dir=%s/node%d", tmpdir, i);
	snprintf(tcp, sizeof(tcp), "--tcp.address=127.0.0.1:%d", tcp_port[i]);
	snprintf(nodes, sizeof(nodes), "--cluster.nodes=%s", roster);
	node_log_path(i, logpath, sizeof(logpath));
	char *argv[] = {GALGOD, id, data, tcp, "--quic.enabled=false", "--http.enabled=false", nodes,
			"--cluster.secret=gcluster-test-secret", "--cluster.election_timeout_ms=500",
			"--with-default-root-credentials", NULL};
	char *envp[256];
	int envc = 0;
	for (char **e = environ; *e != NULL && envc < 255; e++)
		if (strncmp(*e, "GALGO_", 6) != 0 && strncmp(*e, "IGGY_", 5) != 0)
			envp[envc++] = *e;
	envp[envc] = NULL;
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			_exit(126);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		execve(GALGOD, argv, envp);
		_exit(127);
	}
	pids[i] = pid;
}

static void wait_ready(int i)
{
	char logpath[128];
	node_log_path(i, logpath, sizeof(logpath));
	uint64_t end = now_ms() + WAIT_MS;
	for (;;) {
		char *log = read_file(logpath);
		bool ready = strstr(log, "galgod ready") != NULL;
		int st;
		bool died = waitpid(pids[i], &st, WNOHANG) == pids[i];
		if (died)
			pids[i] = 0;
		cr_assert((!died && now_ms() < end) || ready, "node %d not ready; output:\n%s", i, log);
		free(log);
		if (ready)
			return;
		pause_ms(20);
	}
}

static void start_cluster(void)
{
	pick_ports();
	char roster[512] = "";
	for (int i = 1; i <= NODES; i++) {
		size_t l = strlen(roster);
		snprintf(roster + l, sizeof(roster) - l, "%s%d@127.0.0.1:%d:%d", i > 1 ? "," : "", i, raft_port[i],
			 tcp_port[i]);
		l = strlen(seeds);
		snprintf(seeds + l, sizeof(seeds) - l, "%s127.0.0.1:%d", i > 1 ? "," : "", tcp_port[i]);
	}
	for (int i = 1; i <= NODES; i++)
		start_node(i, roster);
	for (int i = 1; i <= NODES; i++)
		wait_ready(i);
}

static void kill9(int i)
{
	cr_assert_gt(pids[i], 0);
	cr_assert_eq(kill(pids[i], SIGKILL), 0);
	int st;
	cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
	pids[i] = 0;
}

/* SIGTERM to every running node; each must exit 0. */
static void stop_cluster(void)
{
	for (int i = 1; i <= NODES; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	for (int i = 1; i <= NODES; i++) {
		if (pids[i] <= 0)
			continue;
		uint64_t end = now_ms() + WAIT_MS;
		int st = -1;
		while (waitpid(pids[i], &st, WNOHANG) != pids[i]) {
			if (now_ms() >= end) {
				kill(pids[i], SIGKILL);
				waitpid(pids[i], NULL, 0);
				st = -1;
				break;
			}
			pause_ms(20);
		}
		pids[i] = 0;
		char logpath[128];
		node_log_path(i, logpath, sizeof(logpath));
		char *log = read_file(logpath);
		cr_expect(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %d exit status 0x%x; output:\n%s", i,
			  (unsigned)st, log);
		free(log);
	}
}

static void setup(void)
{
	memset(pids, 0, sizeof(pids));
	seeds[0] = '\0';
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/galgo-gcluster-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	signal(SIGPIPE, SIG_IGN);
}

static void teardown(void)
{
	for (int i = 1; i <= NODES; i++)
		if (pids[i] > 0 && kill(pids[i], SIGKILL) == 0)
			waitpid(pids[i], NULL, 0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(gcluster, .init = setup, .fini = teardown, .timeout = 180);

/* ---- Helpers ---- */

static struct gclient *login_to(int node)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", tcp_port[node]);
	struct gclient_opts o = {.io_timeout_ms = 10000};
	uint64_t end = now_ms() + WAIT_MS;
	for (;;) {
		/* The root user exists once the metadata group has elected a leader and committed it. */
		struct gclient *c;
		int rv = gclient_connect(addr, &o, &c);
		cr_assert_eq(rv, 0, "connect to node %d: %d", node, rv);
		rv = gclient_login(c, "iggy", "iggy");
		if (rv == 0)
			return c;
		gclient_close(c);
		cr_assert(now_ms() < end, "login on node %d: %d", node, rv);
		pause_ms(50);
	}
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
		snprintf(want, sizeof(want), "127.0.0.1:%d", tcp_port[e->leader]);
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
	cr_assert_eq(nl.tcp_port, tcp_port[leader]);
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
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", tcp_port[survivor]);
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
	/* (-ETIMEDOUT or -ECONNREFUSED when the connection it resolves names on was to the node just killed.) */
	cr_assert(rv == -EHOSTUNREACH || rv == -ELOOP || rv == -ETIMEDOUT || rv == -ECONNREFUSED, "rv %d (%s)", rv,
		  gcluster_last_error(gq));
	cr_assert_neq(gcluster_last_error(gq)[0], '\0');
	gcluster_close(gq);

	gcluster_close(gc);
	stop_cluster();
}
