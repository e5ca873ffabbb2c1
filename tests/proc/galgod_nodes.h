/*
 * galgod_nodes — several real galgod processes of one cluster as children of a criterion test, on
 * loopback: free ports below the ephemeral range for each node's TCP listener and node-to-node link,
 * each node's output in <tmpdir>/nodeN.log (a failing wait prints where), "galgod ready" awaited in the
 * log, SIGKILL, and SIGTERM with exit status 0 required (under ASan/UBSan: no error, no leak). Every wait
 * is bounded by WAIT_MS. Header-only: each test program includes it once, after defining GALGOD and
 * WAIT_MS.
 *
 * A node runs with: its id, data dir and TCP port, cluster.nodes = its `roster`, the secret
 * "test-secret", a 500 ms election timeout, 16 KiB segments, QUIC and HTTP off, the default root
 * credentials, then the (up to 8) strings of `extra`; `env` adds to its environment (e.g. libfaketime).
 */
#ifndef GALGO_TEST_GALGOD_NODES_H
#define GALGO_TEST_GALGOD_NODES_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/gclient.h"
#include "proto/wire.h"

struct node {
	uint32_t id;
	pid_t pid;
	int tcp, raft;
	char dir[128];
	char log[128];
	int starts;
	const char *roster;    /* its cluster.nodes */
	const char *extra[9];  /* more flags, NULL-terminated */
	const char *env[5];    /* NAME=value settings of its environment, NULL-terminated */
};

static char tmpdir[64];

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/*
 * A free loopback port for a node, below Linux's ephemeral range (32768-60999) and never one handed out
 * before in this process. Nodes are restarted on the same ports: a port from the ephemeral range could
 * meanwhile be taken by an outgoing connection or by another test program's port-0 bind (ctest runs two
 * programs at once), and the restart would fail with EADDRINUSE.
 */
static int free_port(void)
{
	static int given[64];
	static size_t n_given;
	static unsigned seed;
	if (seed == 0)
		seed = (unsigned)getpid() ^ (unsigned)now_ms();
	for (;;) {
		int port = 20000 + (int)(rand_r(&seed) % 12000);
		bool seen = false;
		for (size_t i = 0; i < n_given && i < 64; i++)
			seen |= given[i] == port;
		if (seen)
			continue;
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert_geq(fd, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(fd);
		if (!ok)
			continue;
		/*
		 * Free now is not enough: test programs run in parallel (ctest -j2) and another may have picked
		 * the same port for a galgod it has not started yet. Each port given out is reserved with a lock
		 * on /tmp/galgo-test-ports/<port>, held until this process exits.
		 */
		char lock[64];
		(void)mkdir("/tmp/galgo-test-ports", 0777);
		snprintf(lock, sizeof(lock), "/tmp/galgo-test-ports/%d", port);
		int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
		if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) != 0) {
			close(lfd);
			continue;
		}
		given[n_given++ % 64] = port;
		return port;
	}
}

/* How many lines of node n's log contain `needle`. */
static int log_count(const struct node *n, const char *needle)
{
	FILE *f = fopen(n->log, "r");
	if (f == NULL)
		return 0;
	char line[1024];
	int c = 0;
	while (fgets(line, sizeof(line), f) != NULL)
		c += strstr(line, needle) != NULL;
	fclose(f);
	return c;
}

/* How many times the node's log says it became ready. */
static int ready_count(const struct node *n)
{
	return log_count(n, "galgod ready:");
}

static pid_t node_spawn(struct node *n)
{
	char a_id[32], a_dir[160], a_tcp[64], a_nodes[600];
	snprintf(a_id, sizeof(a_id), "--node.id=%u", n->id);
	snprintf(a_dir, sizeof(a_dir), "--node.data_dir=%s", n->dir);
	snprintf(a_tcp, sizeof(a_tcp), "--tcp.address=127.0.0.1:%d", n->tcp);
	snprintf(a_nodes, sizeof(a_nodes), "--cluster.nodes=%s", n->roster);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd < 0)
			_exit(127);
		dup2(fd, 1);
		dup2(fd, 2);
		for (int i = 0; i < 5 && n->env[i] != NULL; i++)
			putenv((char *)n->env[i]);
		char *argv[24] = {GALGOD, a_id, a_dir, a_tcp, a_nodes, "--cluster.secret=test-secret",
				  "--cluster.election_timeout_ms=500", "--storage.segment_size=16KiB", "--quic.enabled=false",
				  "--http.enabled=false", "--websocket.enabled=false", "--with-default-root-credentials"};
		for (int i = 0, k = 12; i < 9 && n->extra[i] != NULL; i++)
			argv[k++] = (char *)n->extra[i];
		execv(GALGOD, argv);
		_exit(127);
	}
	return pid;
}

static void node_start(struct node *n)
{
	int before = ready_count(n);
	pid_t pid = node_spawn(n);
	n->pid = pid;
	n->starts++;
	uint64_t until = now_ms() + WAIT_MS;
	while (ready_count(n) <= before) {
		int st;
		if (waitpid(pid, &st, WNOHANG) != 0) {
			char cmd[256];
			snprintf(cmd, sizeof(cmd), "tail -5 '%s' >&2", n->log);
			if (system(cmd) != 0)
				fprintf(stderr, "(no log)\n");
			cr_assert_fail("node %u exited at start (status %d); see %s", n->id, st, n->log);
		}
		cr_assert_lt(now_ms(), until, "node %u not ready; see %s", n->id, n->log);
		pause_ms(20);
	}
}

/* Starts node n expecting it to exit before it is ready; returns its exit status (-1: killed by a signal). */
__attribute__((unused)) static int node_start_fails(struct node *n)
{
	pid_t pid = node_spawn(n);
	uint64_t until = now_ms() + WAIT_MS;
	int st;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (now_ms() >= until) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("node %u did not exit at start; see %s", n->id, n->log);
		}
		pause_ms(20);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

__attribute__((unused)) static void node_kill(struct node *n)
{
	cr_assert_gt(n->pid, 0);
	kill(n->pid, SIGKILL);
	int st;
	waitpid(n->pid, &st, 0);
	n->pid = 0;
}

/* SIGTERM, and exit status 0 (under ASan: no error, no leak). */
static void node_stop(struct node *n)
{
	if (n->pid <= 0)
		return;
	kill(n->pid, SIGTERM);
	uint64_t until = now_ms() + WAIT_MS;
	int st = 0;
	pid_t r;
	while ((r = waitpid(n->pid, &st, WNOHANG)) == 0 && now_ms() < until)
		pause_ms(20);
	if (r == 0) {
		kill(n->pid, SIGKILL);
		waitpid(n->pid, &st, 0);
	}
	pid_t was = n->pid;
	n->pid = 0;
	cr_assert_neq(r, 0, "node %u (pid %d) did not stop on SIGTERM; see %s", n->id, (int)was, n->log);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %u exited with status %d; see %s", n->id, st,
		  n->log);
}

static void rm_rf(const char *path)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	cr_assert_eq(system(cmd), 0);
}

/* The fini of a test: kills whatever nodes a failed test left running and removes tmpdir (unless
 * GALGO_KEEP_TMP is set). */
static void nodes_teardown(struct node *nodes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (nodes[i].pid > 0) {
			kill(nodes[i].pid, SIGKILL);
			waitpid(nodes[i].pid, NULL, 0);
			nodes[i].pid = 0;
		}
	if (tmpdir[0] != '\0' && getenv("GALGO_KEEP_TMP") == NULL)
		rm_rf(tmpdir);
}

/* A node's id, ports and paths in tmpdir (its roster and extra flags are the caller's). */
static void node_init(struct node *n, uint32_t id)
{
	memset(n, 0, sizeof(*n));
	n->id = id;
	n->tcp = free_port();
	n->raft = free_port();
	snprintf(n->dir, sizeof(n->dir), "%s/node%u", tmpdir, n->id);
	snprintf(n->log, sizeof(n->log), "%s/node%u.log", tmpdir, n->id);
}

/* Appends node n to a roster (ID@127.0.0.1:RAFT:TCP, comma-separated). */
static void roster_add(char *roster, size_t cap, const struct node *n)
{
	size_t at = strlen(roster);
	snprintf(roster + at, cap - at, "%s%u@127.0.0.1:%d:%d", at ? "," : "", n->id, n->raft, n->tcp);
}

/* A logged-in client of node n; the root user exists once a metadata leader was elected. */
static struct gclient *client_of(const struct node *n)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", n->tcp);
	struct gclient_opts o = {.connect_timeout_ms = 2000, .io_timeout_ms = 15000};
	uint64_t until = now_ms() + WAIT_MS;
	for (;;) {
		struct gclient *c = NULL;
		int rv = gclient_connect(addr, &o, &c);
		if (rv == 0 && (rv = gclient_login(c, "iggy", "iggy")) == 0)
			return c;
		gclient_close(c);
		cr_assert_lt(now_ms(), until, "cannot log in to node %u: %d; see %s", n->id, rv, n->log);
		pause_ms(100);
	}
}

/* GetPartitionLeaders (docs/protocol-extensions.md), decoded: node ids; per partition its leader, epoch, replicas. */
#define PMAP_MAX_PARTS 16
struct pmap {
	uint32_t n_nodes, node_ids[16];
	uint32_t meta_leader; /* 0: none known */
	uint32_t np;
	struct {
		uint32_t pid, leader, nr, rep[8];
		uint64_t epoch;
	} p[PMAP_MAX_PARTS];
};

__attribute__((unused)) static void pmap_read(struct gclient *c, struct pmap *m)
{
	memset(m, 0, sizeof(*m));
	const uint8_t *r;
	size_t len;
	int rv = gclient_raw(c, 10001, NULL, 0, &r, &len);
	cr_assert_eq(rv, 0, "GetPartitionLeaders: %d", rv);
	struct wire_rd rd;
	wire_rd_init(&rd, r, len);
	m->n_nodes = wire_get_u32(&rd);
	cr_assert_leq(m->n_nodes, 16);
	for (uint32_t i = 0; i < m->n_nodes; i++) {
		m->node_ids[i] = wire_get_u32(&rd);
		uint8_t hl = wire_get_u8(&rd);
		for (uint8_t k = 0; k < hl; k++)
			(void)wire_get_u8(&rd);
		(void)wire_get_u16(&rd);
		(void)wire_get_u16(&rd);
		(void)wire_get_u16(&rd);
	}
	m->meta_leader = wire_get_u32(&rd);
	(void)wire_get_u64(&rd);
	m->np = wire_get_u32(&rd);
	cr_assert_leq(m->np, PMAP_MAX_PARTS);
	for (uint32_t i = 0; i < m->np; i++) {
		(void)wire_get_u32(&rd);
		(void)wire_get_u32(&rd);
		m->p[i].pid = wire_get_u32(&rd);
		m->p[i].leader = wire_get_u32(&rd);
		m->p[i].epoch = wire_get_u64(&rd);
		m->p[i].nr = wire_get_u8(&rd);
		cr_assert_leq(m->p[i].nr, 8);
		for (uint32_t k = 0; k < m->p[i].nr; k++)
			m->p[i].rep[k] = wire_get_u32(&rd);
	}
	cr_assert_eq(wire_rd_done(&rd), 0, "GetPartitionLeaders reply does not decode");
}

/*
 * Sends message k of partition pid ("p%u-%05u", to stream "s", topic "t") through *c, the client of node
 * `via`, until acknowledged: 58 is retried; an error of the connection opens a new one to `via`, unless
 * strict (then nothing but 58 may come back). The reply must name the partition. Returns the offset.
 */
__attribute__((unused)) static uint64_t send_part_acked(struct gclient **c, const struct node *via, uint32_t pid,
							 uint32_t k, bool strict)
{
	char payload[16];
	snprintf(payload, sizeof(payload), "p%u-%05u", pid, k);
	const void *pl[1] = {payload};
	uint32_t len[1] = {(uint32_t)strlen(payload)};
	struct wire_id s = gclient_id_name("s"), t = gclient_id_name("t");
	uint64_t until = now_ms() + WAIT_MS;
	for (;;) {
		struct gclient_sent out;
		int rv = gclient_send(*c, &s, &t, pid, 1, pl, len, &out);
		if (rv == 0) {
			cr_assert_eq(out.partition_id, pid);
			return out.base_offset;
		}
		if (strict)
			cr_assert_eq(rv, 58, "message %u of partition %u through node %u: %d", k, pid, via->id, rv);
		cr_assert_lt(now_ms(), until, "message %u of partition %u not acknowledged through node %u: %d", k, pid,
			     via->id, rv);
		if (rv < 0) {
			gclient_close(*c);
			*c = client_of(via);
		}
		pause_ms(50);
	}
}

#endif /* GALGO_TEST_GALGOD_NODES_H */
