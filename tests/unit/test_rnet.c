/*
 * Tests of transport/rnet against real sockets on 127.0.0.1 (ephemeral ports). Every node of a test lives on
 * one libuv loop that the test drives itself: run_until() runs it until a condition holds, with a timer
 * that ends the wait so a hang fails the test instead of blocking it.
 *
 * Nodes record what they receive. Messages built by mk() carry (from, to, seq) and a pattern derived
 * from them, and the receiving node checks order, kind and every byte as they arrive.
 *
 * "Raw" peers are plain sockets driven by the test. They speak the handshake and frames as the top
 * of transport/rnet.c specifies them, written here again from that text (HMAC with OpenSSL), so they also
 * check that the spec matches what the code does. They send garbage, cut handshakes, reflected proofs
 * and bad frames. A raw socket waits for data through a uv_poll_t on the same loop.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "transport/rnet.h"

#define MAXN 8
#define SECRET "correct horse battery staple"
#define BIG (8u << 20)

static uv_loop_t loop;
static uv_timer_t deadline;
static bool timed_out;

struct node {
	struct rnet *rn;
	uint64_t id;
	uint16_t port;
	bool structured;              /* messages are mk() messages, checked on arrival */
	uint64_t expect[MAXN + 1];    /* next seq expected from each sender */
	uint64_t got[MAXN + 1];       /* messages received from each sender */
	uint64_t bad;                 /* messages out of order or with wrong bytes */
	uint64_t big;                 /* messages of BIG bytes received */
	int ups[MAXN + 1], downs[MAXN + 1];
	/* The last message, for the raw tests. */
	uint64_t last_from;
	uint8_t last_kind;
	size_t last_len;
	uint8_t last[64];
	uint64_t any;
	int on_message_action; /* 1: rnet_close itself, 2: rnet_remove_peer(sender), at the first message */
};
static struct node N[MAXN + 1];

/* ------------------------------------------------------------------------------------- the loop */

static void on_deadline(uv_timer_t *t)
{
	timed_out = true;
}

static bool run_until(bool (*pred)(void *), void *arg, unsigned ms)
{
	timed_out = false;
	uv_timer_start(&deadline, on_deadline, ms, 0);
	while (!pred(arg) && !timed_out)
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&deadline);
	return pred(arg);
}

static bool never(void *arg)
{
	return false;
}

/* Runs the loop for ms: for tests that check what does not happen over some time. */
static void run_for(unsigned ms)
{
	run_until(never, NULL, ms);
}

static void setup(void)
{
	cr_assert_eq(uv_loop_init(&loop), 0);
	uv_timer_init(&loop, &deadline);
	memset(N, 0, sizeof N);
}

static void teardown(void)
{
	for (int i = 0; i <= MAXN; i++)
		if (N[i].rn)
			rnet_close(N[i].rn);
	uv_close((uv_handle_t *)&deadline, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&loop), 0, "every handle of rnet is closed after rnet_close");
}

/* ------------------------------------------------------------------------------------- nodes */

static uint8_t pattern(uint64_t from, uint64_t to, uint64_t seq, size_t i)
{
	return (uint8_t)(from * 31 + to * 7 + seq * 13 + i * 3 + (i >> 8));
}

/* A checked message: [from u64][to u64][seq u64] then pattern bytes; len >= 24. */
static uint8_t *mk(uint64_t from, uint64_t to, uint64_t seq, size_t len)
{
	uint8_t *b = malloc(len);
	memcpy(b, &from, 8);
	memcpy(b + 8, &to, 8);
	memcpy(b + 16, &seq, 8);
	for (size_t i = 24; i < len; i++)
		b[i] = pattern(from, to, seq, i);
	return b;
}

static void on_message(void *ud, uint64_t from, uint8_t kind, const void *buf, size_t len)
{
	struct node *nd = ud;
	const uint8_t *b = buf;
	nd->any++;
	if (nd->on_message_action == 1) {
		rnet_close(nd->rn);
		nd->rn = NULL;
		nd->on_message_action = 0;
	} else if (nd->on_message_action == 2) {
		rnet_remove_peer(nd->rn, from);
		nd->on_message_action = 0;
	}
	if (!nd->structured) {
		nd->last_from = from;
		nd->last_kind = kind;
		nd->last_len = len;
		memcpy(nd->last, b, len < sizeof nd->last ? len : sizeof nd->last);
		return;
	}
	uint64_t f, t, seq;
	if (from > MAXN || len < 24) {
		nd->bad++;
		return;
	}
	memcpy(&f, b, 8);
	memcpy(&t, b + 8, 8);
	memcpy(&seq, b + 16, 8);
	bool ok = f == from && t == nd->id && seq == nd->expect[from] && kind == (uint8_t)seq;
	for (size_t i = 24; ok && i < len; i++)
		ok = b[i] == pattern(f, t, seq, i);
	if (!ok) {
		nd->bad++;
		return;
	}
	nd->expect[from]++;
	nd->got[from]++;
	if (len == BIG)
		nd->big++;
}

static void on_peer(void *ud, uint64_t peer, bool up)
{
	struct node *nd = ud;
	if (peer > MAXN)
		return;
	if (up)
		nd->ups[peer]++;
	else
		nd->downs[peer]++;
}

static struct rnet_config cfg_for(uint64_t id)
{
	struct rnet_config c;
	rnet_config_default(&c);
	c.node_id = id;
	c.secret = SECRET;
	c.listen_host = "127.0.0.1";
	return c;
}

/* Opens node cfg->node_id into N[id] (keeping what it received before, for the restart test). */
static void node_open(const struct rnet_config *cfg)
{
	struct node *nd = &N[cfg->node_id];
	struct rnet_callbacks cb = {.ud = nd, .on_message = on_message, .on_peer = on_peer};
	nd->id = cfg->node_id;
	nd->structured = true;
	cr_assert_eq(rnet_open(&loop, cfg, &cb, &nd->rn), 0);
	nd->port = rnet_port(nd->rn);
	cr_assert_neq(nd->port, 0);
}

static void node_start(uint64_t id)
{
	struct rnet_config c = cfg_for(id);
	node_open(&c);
}

/* Each of the nodes ids[] learns every other one's address. */
static void mesh(const uint64_t *ids, int n)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			if (i != j)
				cr_assert_eq(rnet_add_peer(N[ids[i]].rn, ids[j], "127.0.0.1", N[ids[j]].port), 0);
}

struct pair {
	uint64_t a, b;
};

static bool pair_up(void *arg)
{
	struct pair *p = arg;
	return rnet_connected(N[p->a].rn, p->b) && rnet_connected(N[p->b].rn, p->a);
}

static void wait_up(uint64_t a, uint64_t b)
{
	struct pair p = {a, b};
	cr_assert(run_until(pair_up, &p, 10000), "nodes %lu and %lu connect", (unsigned long)a, (unsigned long)b);
}

struct want {
	uint64_t node, from, count;
};

static bool got_enough(void *arg)
{
	struct want *w = arg;
	return N[w->node].got[w->from] >= w->count || N[w->node].bad > 0;
}

static void wait_got(uint64_t node, uint64_t from, uint64_t count)
{
	struct want w = {node, from, count};
	cr_assert(run_until(got_enough, &w, 20000), "node %lu receives %lu messages from %lu (got %lu)",
		  (unsigned long)node, (unsigned long)count, (unsigned long)from, (unsigned long)N[node].got[from]);
	cr_assert_eq(N[node].bad, 0, "every message arrives in order with its bytes");
}

/* Sends mk(from, to, seq, len) as two buffers (header, rest) so that rnet_sendv concatenates them. */
static int send_mk(uint64_t from, uint64_t to, uint64_t seq, size_t len)
{
	uint8_t *b = mk(from, to, seq, len);
	uv_buf_t bufs[2] = {uv_buf_init((char *)b, 24), uv_buf_init((char *)b + 24, (unsigned)(len - 24))};
	int rc = rnet_sendv(N[from].rn, to, (uint8_t)seq, bufs, 2);
	free(b);
	return rc;
}

static struct rnet_stats stats(uint64_t id)
{
	struct rnet_stats st;
	rnet_stats(N[id].rn, &st);
	return st;
}

struct counter {
	uint64_t id;
	int field; /* 0 auth_failures, 1 connects */
	uint64_t at_least;
};

static bool counter_reached(void *arg)
{
	struct counter *c = arg;
	struct rnet_stats st = stats(c->id);
	return (c->field == 0 ? st.auth_failures : st.connects) >= c->at_least;
}

/* ------------------------------------------------------------------------------------- raw peers */

struct raw {
	int fd;
	uv_poll_t poll;
	bool readable;
	int keepalives; /* keepalive frames seen by raw_closed */
};
static struct raw R[72];

static void on_raw_poll(uv_poll_t *h, int status, int events)
{
	struct raw *r = h->data;
	r->readable = true;
	uv_poll_stop(h);
}

static bool raw_is_readable(void *arg)
{
	return ((struct raw *)arg)->readable;
}

static void raw_connect(struct raw *r, uint16_t port)
{
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(r->fd, 0);
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", port, &a);
	cr_assert_eq(connect(r->fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
	int one = 1;
	setsockopt(r->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	cr_assert_eq(uv_poll_init_socket(&loop, &r->poll, r->fd), 0);
	r->poll.data = r;
	r->keepalives = 0;
}

static void on_raw_closed(uv_handle_t *h)
{
	struct raw *r = h->data;
	close(r->fd);
	r->fd = -1;
}

static void raw_close(struct raw *r)
{
	uv_close((uv_handle_t *)&r->poll, on_raw_closed);
}

static void raw_send(struct raw *r, const void *buf, size_t len)
{
	cr_assert_eq(send(r->fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static bool raw_wait(struct raw *r, unsigned ms)
{
	r->readable = false;
	uv_poll_start(&r->poll, UV_READABLE | UV_DISCONNECT, on_raw_poll);
	bool ok = run_until(raw_is_readable, r, ms);
	uv_poll_stop(&r->poll);
	return ok;
}

/* Reads exactly len bytes; false at end of file, error or timeout. */
static bool raw_recv(struct raw *r, void *buf, size_t len, unsigned ms)
{
	size_t got = 0;
	while (got < len) {
		ssize_t k = recv(r->fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);
		if (k > 0)
			got += (size_t)k;
		else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!raw_wait(r, ms))
				return false;
		} else
			return false;
	}
	return true;
}

/* Whether the node closes the connection within ms; frames received meanwhile are read and dropped. */
static bool raw_closed(struct raw *r, unsigned ms)
{
	static const uint8_t keepalive[8] = {0, 0, 0, 0, 1, 0, 0, 0};
	uint8_t buf[4096];
	for (;;) {
		ssize_t k = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			return true;
		if (k > 0) {
			for (ssize_t i = 0; i + 8 <= k; i += 8)
				r->keepalives += memcmp(buf + i, keepalive, 8) == 0;
			continue;
		}
		if (!raw_wait(r, ms))
			return false;
	}
}

/* Whether the connection is still open with nothing to read (the node has not closed it). */
static bool raw_open(struct raw *r)
{
	uint8_t b;
	ssize_t k = recv(r->fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
	return k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* HELLO as the spec at the top of transport/rnet.c gives it. */
static void hello(uint8_t out[120], uint64_t from, uint64_t to, const uint8_t nonce[32], const char *cluster)
{
	memset(out, 0, 120);
	memcpy(out, "GLRN", 4);
	out[4] = 1; /* version 1, flags 0 */
	put64(out + 8, from);
	put64(out + 16, to);
	memcpy(out + 24, nonce, 32);
	memcpy(out + 56, cluster, strlen(cluster));
}

/* PROOF as specified: HMAC-SHA256(secret, label | cluster field | dialer | acceptor | nonces). */
static void proof(uint8_t out[32], const char *secret, bool dialer_label, const char *cluster, uint64_t dialer,
		  uint64_t acceptor, const uint8_t dn[32], const uint8_t an[32])
{
	uint8_t m[160] = {0};
	memcpy(m, dialer_label ? "galgo rnet dial " : "galgo rnet acpt ", 16);
	memcpy(m + 16, cluster, strlen(cluster));
	put64(m + 80, dialer);
	put64(m + 88, acceptor);
	memcpy(m + 96, dn, 32);
	memcpy(m + 128, an, 32);
	unsigned len = 0;
	cr_assert_not_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), m, sizeof m, out, &len));
	cr_assert_eq(len, 32);
}

/*
 * Connects to node `to` as node `me` and does the whole dialer side of the handshake, checking the
 * node's HELLO and PROOF; returns once the node counts the connection as authenticated.
 */
static void raw_auth(struct raw *r, uint64_t me, uint64_t to)
{
	uint8_t dn[32], an[32], h[120], reply[152], p[32];
	RAND_bytes(dn, sizeof dn);
	raw_connect(r, N[to].port);
	hello(h, me, to, dn, "galgo");
	raw_send(r, h, sizeof h);
	cr_assert(raw_recv(r, reply, sizeof reply, 5000), "the node answers a valid HELLO with HELLO and PROOF");
	cr_assert_eq(memcmp(reply, "GLRN\x01\x00\x00\x00", 8), 0);
	cr_assert_eq(get64(reply + 8), to);
	cr_assert_eq(get64(reply + 16), me);
	memcpy(an, reply + 24, 32);
	uint8_t cl[64] = "galgo";
	cr_assert_eq(memcmp(reply + 56, cl, 64), 0);
	proof(p, SECRET, false, "galgo", me, to, dn, an);
	cr_assert_eq(memcmp(reply + 120, p, 32), 0, "the acceptor's proof is as specified");
	proof(p, SECRET, true, "galgo", me, to, dn, an);
	raw_send(r, p, sizeof p);
	struct counter c = {to, 1, stats(to).connects + 1};
	cr_assert(run_until(counter_reached, &c, 5000), "the node accepts the raw dialer's proof");
}

static void frame(uint8_t out[8], uint32_t len, uint8_t type, uint8_t kind, uint16_t reserved)
{
	put64(out, 0);
	out[0] = (uint8_t)len;
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 24);
	out[4] = type;
	out[5] = kind;
	out[6] = (uint8_t)reserved;
	out[7] = (uint8_t)(reserved >> 8);
}

/* A node 5 that knows nodes 1 and 3 (both lower: it never dials them) and records raw messages. */
static void raw_target(unsigned idle_ms, size_t max_message)
{
	struct rnet_config c = cfg_for(5);
	if (idle_ms)
		c.idle_timeout_ms = idle_ms;
	if (max_message)
		c.max_message_bytes = max_message;
	node_open(&c);
	N[5].structured = false;
	cr_assert_eq(rnet_add_peer(N[5].rn, 1, "127.0.0.1", 1), 0);
	cr_assert_eq(rnet_add_peer(N[5].rn, 3, "127.0.0.1", 1), 0);
}

/* ------------------------------------------------------------------------------------- tests */

TestSuite(rnet, .init = setup);

static bool all_sent(void *arg)
{
	for (uint64_t id = 1; id <= 3; id++)
		if (stats(id).messages_sent < (uint64_t)(uintptr_t)arg)
			return false;
	return true;
}

Test(rnet, three_nodes_exchange_messages_both_ways_in_order_and_batched)
{
	// Three nodes exchange many small messages and one of 8 MiB on every pair, both ways; each arrives once, in order, intact, and the small ones leave in fewer writes than messages.
	uint64_t ids[] = {1, 2, 3};
	for (int i = 0; i < 3; i++)
		node_start(ids[i]);
	mesh(ids, 3);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				wait_up(ids[i], ids[j]);

	const uint64_t small = 300;
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < 3; j++) {
			if (i == j)
				continue;
			uint64_t seq = 0;
			for (; seq < small; seq++)
				cr_assert_eq(send_mk(ids[i], ids[j], seq, 24 + (seq * 37) % 500), 0);
			cr_assert_eq(send_mk(ids[i], ids[j], seq++, BIG), 0);
			for (; seq < 2 * small + 1; seq++)
				cr_assert_eq(send_mk(ids[i], ids[j], seq, 24 + (seq * 11) % 200), 0);
		}
	}
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			if (i != j)
				wait_got(ids[j], ids[i], 2 * small + 1);
	/* Sent counts a message once its write completed, which may trail the receiver by a loop turn. */
	cr_assert(run_until(all_sent, (void *)(uintptr_t)(2 * (2 * small + 1)), 5000));
	for (int i = 0; i < 3; i++) {
		struct rnet_stats st = stats(ids[i]);
		cr_assert_eq(N[ids[i]].big, 2, "each node gets one 8 MiB message from each other");
		cr_assert_eq(st.messages_received, 2 * (2 * small + 1));
		cr_assert_eq(st.dropped, 0);
		cr_assert_eq(st.auth_failures, 0);
		cr_assert_eq(st.connects, 2);
		cr_assert_eq(st.messages_sent, 2 * (2 * small + 1));
		cr_assert_lt(st.writes, st.messages_sent, "writes %lu for %lu messages: queues are batched",
			     (unsigned long)st.writes, (unsigned long)st.messages_sent);
		cr_assert_gt(st.writes, 0);
	}
	teardown();
}

Test(rnet, messages_keep_flowing_both_ways_after_a_burst)
{
	// Messages sent one per loop turn (from the receive callback path) still arrive in order, and the sent counters catch up with the receivers.
	uint64_t ids[] = {1, 2};
	node_start(1);
	node_start(2);
	mesh(ids, 2);
	wait_up(1, 2);
	for (uint64_t seq = 0; seq < 50; seq++) {
		cr_assert_eq(send_mk(1, 2, seq, 100), 0);
		cr_assert_eq(send_mk(2, 1, seq, 100), 0);
		wait_got(2, 1, seq + 1);
		wait_got(1, 2, seq + 1);
	}
	struct rnet_stats a = stats(1), b = stats(2);
	cr_assert_eq(a.messages_received, 50);
	cr_assert_eq(b.messages_received, 50);
	cr_assert_eq(a.bytes_received, 50 * 100);
	teardown();
}

Test(rnet, wrong_secret_never_connects)
{
	// A dialer with another secret is refused again and again; neither side ever reports it connected and nothing is delivered.
	struct rnet_config c1 = cfg_for(1), c2 = cfg_for(2);
	c1.secret = "not the secret";
	node_open(&c1);
	node_open(&c2);
	uint64_t ids[] = {1, 2};
	mesh(ids, 2);
	struct counter f1 = {1, 0, 3}, f2 = {2, 0, 3};
	cr_assert(run_until(counter_reached, &f1, 15000), "the dialer fails its handshakes");
	cr_assert(run_until(counter_reached, &f2, 15000), "the acceptor fails them too");
	cr_assert(!rnet_connected(N[1].rn, 2) && !rnet_connected(N[2].rn, 1));
	cr_assert_eq(rnet_send(N[1].rn, 2, 0, "x", 1), -ENOTCONN);
	cr_assert_eq(rnet_send(N[2].rn, 1, 0, "x", 1), -ENOTCONN);
	cr_assert_eq(stats(1).connects + stats(2).connects, 0);
	cr_assert_eq(N[1].ups[2] + N[2].ups[1], 0);
	cr_assert_eq(N[1].any + N[2].any, 0);
	teardown();
}

Test(rnet, wrong_cluster_never_connects)
{
	// Same secret, other cluster name: refused at the HELLO, never connected, nothing delivered.
	struct rnet_config c1 = cfg_for(1), c2 = cfg_for(2);
	c2.cluster = "other";
	node_open(&c1);
	node_open(&c2);
	uint64_t ids[] = {1, 2};
	mesh(ids, 2);
	struct counter f1 = {1, 0, 3}, f2 = {2, 0, 3};
	cr_assert(run_until(counter_reached, &f1, 15000));
	cr_assert(run_until(counter_reached, &f2, 15000));
	cr_assert(!rnet_connected(N[1].rn, 2) && !rnet_connected(N[2].rn, 1));
	cr_assert_eq(stats(1).connects + stats(2).connects, 0);
	cr_assert_eq(N[1].any + N[2].any, 0);
	teardown();
}

Test(rnet, an_address_that_leads_to_another_member_is_refused)
{
	// Node 1 believes node 3 listens where node 2 does: node 2 refuses a HELLO meant for 3 and nothing connects.
	node_start(1);
	node_start(2);
	node_start(3);
	cr_assert_eq(rnet_add_peer(N[1].rn, 3, "127.0.0.1", N[2].port), 0);
	cr_assert_eq(rnet_add_peer(N[2].rn, 1, "127.0.0.1", N[1].port), 0);
	struct counter f2 = {2, 0, 2};
	cr_assert(run_until(counter_reached, &f2, 15000));
	cr_assert(!rnet_connected(N[1].rn, 3) && !rnet_connected(N[2].rn, 1));
	cr_assert_eq(stats(2).connects, 0);
	teardown();
}

Test(rnet, a_peer_named_localhost_is_resolved_and_connects)
{
	// A peer given by DNS name is resolved and dialed; messages flow.
	node_start(1);
	node_start(2);
	cr_assert_eq(rnet_add_peer(N[1].rn, 2, "localhost", N[2].port), 0);
	cr_assert_eq(rnet_add_peer(N[2].rn, 1, "127.0.0.1", N[1].port), 0);
	wait_up(1, 2);
	cr_assert_eq(send_mk(1, 2, 0, 64), 0);
	cr_assert_eq(send_mk(2, 1, 0, 64), 0);
	wait_got(2, 1, 1);
	wait_got(1, 2, 1);
	cr_assert_eq(N[1].ups[2], 1);
	cr_assert_eq(N[2].ups[1], 1);
	teardown();
}

static bool down_seen(void *arg)
{
	struct pair *p = arg;
	return N[p->a].downs[p->b] > 0;
}

Test(rnet, the_dialer_reconnects_to_a_restarted_node_and_delivery_resumes)
{
	// Node 2 closes and a new node 2 opens on the same port: node 1 sees the loss, dials again with backoff, and messages flow both ways again.
	node_start(1);
	node_start(2);
	uint64_t ids[] = {1, 2};
	mesh(ids, 2);
	wait_up(1, 2);
	cr_assert_eq(send_mk(1, 2, 0, 100), 0);
	wait_got(2, 1, 1);

	uint16_t port = N[2].port;
	rnet_close(N[2].rn);
	N[2].rn = NULL;
	struct pair p = {1, 2};
	cr_assert(run_until(down_seen, &p, 10000), "node 1 learns the connection is lost");
	cr_assert(!rnet_connected(N[1].rn, 2));
	cr_assert_eq(send_mk(1, 2, 1, 100), -ENOTCONN);
	run_for(300); /* a few refused attempts while nothing listens */

	struct rnet_config c2 = cfg_for(2);
	c2.listen_port = port;
	memset(N[2].expect, 0, sizeof N[2].expect);
	memset(N[2].got, 0, sizeof N[2].got);
	node_open(&c2);
	cr_assert_eq(rnet_add_peer(N[2].rn, 1, "127.0.0.1", N[1].port), 0);
	wait_up(1, 2);
	cr_assert_eq(send_mk(1, 2, 0, 100), 0);
	cr_assert_eq(send_mk(2, 1, 0, 100), 0);
	wait_got(2, 1, 1);
	wait_got(1, 2, 1);
	cr_assert_eq(stats(1).connects, 2);
	cr_assert_eq(N[1].ups[2], 2);
	cr_assert_eq(N[1].downs[2], 1);
	teardown();
}

Test(rnet, keepalives_hold_an_idle_connection_open)
{
	// With a 300 ms idle timeout and no traffic for 1.5 s, keepalives keep the one connection up.
	struct rnet_config c1 = cfg_for(1), c2 = cfg_for(2);
	c1.idle_timeout_ms = c2.idle_timeout_ms = 300;
	node_open(&c1);
	node_open(&c2);
	uint64_t ids[] = {1, 2};
	mesh(ids, 2);
	wait_up(1, 2);
	run_for(1500);
	cr_assert(rnet_connected(N[1].rn, 2) && rnet_connected(N[2].rn, 1));
	cr_assert_eq(stats(1).connects, 1);
	cr_assert_eq(stats(2).connects, 1);
	cr_assert_eq(N[1].any + N[2].any, 0, "keepalives are never delivered");
	teardown();
}

Test(rnet, send_and_peer_errors_are_returned_as_the_header_says)
{
	// -ENOENT for an unknown peer, -ENOTCONN before a connection, -EMSGSIZE above max_message_bytes, -EAGAIN above max_queue_bytes; refusals count as dropped.
	struct rnet_config c1 = cfg_for(1);
	c1.max_queue_bytes = 64 * 1024;
	c1.max_message_bytes = 128 * 1024;
	node_open(&c1);
	node_start(2);
	uint8_t *buf = calloc(1, 200 * 1024);

	cr_assert_eq(rnet_send(N[1].rn, 9, 0, buf, 10), -ENOENT);
	cr_assert_eq(rnet_add_peer(N[1].rn, 0, "127.0.0.1", 1), -EINVAL);
	cr_assert_eq(rnet_add_peer(N[1].rn, 1, "127.0.0.1", 1), -EINVAL);
	cr_assert_eq(rnet_add_peer(N[1].rn, 2, "", 1), -EINVAL);
	cr_assert_eq(rnet_add_peer(N[1].rn, 2, NULL, 1), -EINVAL);
	cr_assert_eq(rnet_remove_peer(N[1].rn, 2), -ENOENT);

	uint64_t ids[] = {1, 2};
	mesh(ids, 2);
	cr_assert_eq(rnet_send(N[1].rn, 2, 0, buf, 10), -ENOTCONN, "not connected before the loop ran");
	wait_up(1, 2);

	N[2].structured = false;
	cr_assert_eq(rnet_send(N[1].rn, 2, 7, buf, 128 * 1024 + 1), -EMSGSIZE);
	cr_assert_eq(rnet_send(N[1].rn, 2, 7, buf, 100 * 1024), 0, "an empty queue takes any message up to the size cap");
	cr_assert_eq(rnet_send(N[1].rn, 2, 7, buf, 1), -EAGAIN);
	/* Once written, the queue takes messages again. */
	timed_out = false;
	uv_timer_start(&deadline, on_deadline, 10000, 0);
	while (N[2].any < 1 && !timed_out)
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&deadline);
	cr_assert_eq(N[2].any, 1);
	cr_assert_eq(N[2].last_len, 100 * 1024);
	cr_assert_eq(N[2].last_kind, 7);
	cr_assert_eq(rnet_send(N[1].rn, 2, 8, buf, 40 * 1024), 0);
	cr_assert_eq(rnet_send(N[1].rn, 2, 8, buf, 20 * 1024), 0);
	cr_assert_eq(rnet_send(N[1].rn, 2, 8, buf, 10 * 1024), -EAGAIN, "40 + 20 + 10 KiB is over 64 KiB");
	cr_assert_eq(stats(1).dropped, 5);

	cr_assert_eq(rnet_remove_peer(N[1].rn, 2), 0);
	cr_assert(!rnet_connected(N[1].rn, 2));
	cr_assert_eq(rnet_send(N[1].rn, 2, 0, buf, 10), -ENOENT);
	cr_assert_eq(rnet_remove_peer(N[1].rn, 2), -ENOENT);
	struct pair p = {2, 1};
	cr_assert(run_until(down_seen, &p, 10000), "removing a peer closes its connection");
	free(buf);
	teardown();
}

Test(rnet, open_refuses_bad_configuration_and_a_busy_port)
{
	// rnet_open returns -EINVAL for a bad configuration and -EADDRINUSE for a port in use, and leaves nothing behind.
	node_start(1);
	struct rnet *x = NULL;
	struct rnet_callbacks cb = {0};
	struct rnet_config c = cfg_for(2);
	c.listen_port = N[1].port;
	cr_assert_eq(rnet_open(&loop, &c, &cb, &x), -EADDRINUSE);
	c = cfg_for(0);
	cr_assert_eq(rnet_open(&loop, &c, &cb, &x), -EINVAL);
	c = cfg_for(2);
	c.secret = "";
	cr_assert_eq(rnet_open(&loop, &c, &cb, &x), -EINVAL);
	c.secret = NULL;
	cr_assert_eq(rnet_open(&loop, &c, &cb, &x), -EINVAL);
	c = cfg_for(2);
	c.cluster = "an-extremely-long-cluster-name-that-does-not-fit-in-sixty-four-bytes";
	cr_assert_eq(rnet_open(&loop, &c, &cb, &x), -EINVAL);
	c = cfg_for(2);
	c.listen_host = "not-an-address";
	cr_assert_eq(rnet_open(&loop, &c, &cb, &x), -EINVAL);
	cr_assert_null(x);
	teardown();
}

Test(rnet, removing_a_peer_on_the_dialing_side_stops_dialing)
{
	// After node 1 removes node 2, the connection closes and node 1 does not dial again.
	node_start(1);
	node_start(2);
	uint64_t ids[] = {1, 2};
	mesh(ids, 2);
	wait_up(1, 2);
	cr_assert_eq(rnet_remove_peer(N[1].rn, 2), 0);
	struct pair p = {2, 1};
	cr_assert(run_until(down_seen, &p, 10000));
	run_for(500);
	cr_assert_eq(stats(2).connects, 1, "no new connection after the removal");
	cr_assert(!rnet_connected(N[2].rn, 1));
	cr_assert_eq(N[1].downs[2], 0, "rnet_remove_peer does not call back its caller");
	teardown();
}

Test(rnet, garbage_from_a_raw_socket_is_disconnected)
{
	// 120 bytes that are not a HELLO close the connection, count one auth failure, deliver nothing.
	raw_target(0, 0);
	uint8_t junk[120];
	memset(junk, 0xAB, sizeof junk);
	raw_connect(&R[0], N[5].port);
	raw_send(&R[0], junk, sizeof junk);
	cr_assert(raw_closed(&R[0], 5000));
	cr_assert_eq(stats(5).auth_failures, 1);
	cr_assert_eq(N[5].any, 0);
	raw_close(&R[0]);
	teardown();
}

Test(rnet, a_truncated_handshake_is_disconnected_by_the_idle_timeout)
{
	// Half a HELLO and then silence: the node closes the connection after idle_timeout_ms; nothing is delivered.
	raw_target(300, 0);
	uint8_t nonce[32] = {1}, h[120];
	hello(h, 1, 5, nonce, "galgo");
	raw_connect(&R[0], N[5].port);
	raw_send(&R[0], h, 60);
	cr_assert(raw_closed(&R[0], 5000));
	cr_assert_eq(stats(5).auth_failures, 1);
	/* A HELLO cut by the peer closing is a failure too. */
	raw_connect(&R[1], N[5].port);
	raw_send(&R[1], h, 100);
	shutdown(R[1].fd, SHUT_WR);
	cr_assert(raw_closed(&R[1], 5000));
	struct counter f = {5, 0, 2};
	cr_assert(run_until(counter_reached, &f, 5000));
	cr_assert_eq(N[5].any, 0);
	raw_close(&R[0]);
	raw_close(&R[1]);
	teardown();
}

Test(rnet, a_hello_with_wrong_ids_or_fields_is_refused)
{
	// A HELLO naming another receiver, an unknown sender, the node itself, a higher sender (which must accept, not dial), a bad version or non-zero flags is refused.
	raw_target(0, 0);
	cr_assert_eq(rnet_add_peer(N[5].rn, 7, "127.0.0.1", 1), 0); /* known, but higher than 5 */
	struct {
		uint64_t from, to;
		int byte, value; /* one byte overwritten, or -1 */
	} cases[] = {
		{1, 4, -1, 0}, {2, 5, -1, 0}, {5, 5, -1, 0}, {7, 5, -1, 0}, {1, 5, 4, 2}, {1, 5, 6, 1}, {0, 5, -1, 0},
	};
	size_t ncases = sizeof cases / sizeof cases[0];
	for (size_t i = 0; i < ncases; i++) {
		uint8_t nonce[32] = {9}, h[120];
		hello(h, cases[i].from, cases[i].to, nonce, "galgo");
		if (cases[i].byte >= 0)
			h[cases[i].byte] = (uint8_t)cases[i].value;
		raw_connect(&R[i], N[5].port);
		raw_send(&R[i], h, sizeof h);
		cr_assert(raw_closed(&R[i], 5000), "case %zu is refused", i);
		raw_close(&R[i]);
	}
	struct counter f = {5, 0, ncases};
	cr_assert(run_until(counter_reached, &f, 5000));
	cr_assert_eq(stats(5).connects, 0);
	teardown();
}

Test(rnet, a_reflected_proof_is_refused)
{
	// A dialer that sends the acceptor's own proof back as its proof is refused: the direction label differs.
	raw_target(0, 0);
	uint8_t dn[32] = {3}, h[120], reply[152];
	raw_connect(&R[0], N[5].port);
	hello(h, 1, 5, dn, "galgo");
	raw_send(&R[0], h, sizeof h);
	cr_assert(raw_recv(&R[0], reply, sizeof reply, 5000));
	raw_send(&R[0], reply + 120, 32);
	cr_assert(raw_closed(&R[0], 5000));
	cr_assert_eq(stats(5).connects, 0);
	cr_assert_eq(stats(5).auth_failures, 1);
	raw_close(&R[0]);
	teardown();
}

Test(rnet, bytes_sent_ahead_of_the_handshake_are_not_taken_as_frames)
{
	// A HELLO followed at once by 256 KiB of junk: the junk's first 32 bytes are read as the PROOF, which fails; nothing is delivered.
	raw_target(0, 0);
	uint8_t dn[32] = {4}, h[120];
	size_t junk_len = 256 * 1024;
	uint8_t *junk = malloc(sizeof h + junk_len);
	hello(h, 1, 5, dn, "galgo");
	memcpy(junk, h, sizeof h);
	for (size_t i = 0; i < junk_len; i++)
		junk[sizeof h + i] = (uint8_t)i;
	raw_connect(&R[0], N[5].port);
	(void)send(R[0].fd, junk, sizeof h + junk_len, MSG_NOSIGNAL | MSG_DONTWAIT);
	cr_assert(raw_closed(&R[0], 5000));
	cr_assert_eq(stats(5).connects, 0);
	cr_assert_eq(N[5].any, 0);
	free(junk);
	raw_close(&R[0]);
	teardown();
}

Test(rnet, a_raw_peer_following_the_spec_is_served_and_bad_frames_disconnect)
{
	// A peer written from the spec authenticates and its message is delivered; an oversize length, an unknown type, a non-zero reserved field and a keepalive with a payload each close the connection without delivery.
	raw_target(0, 4096);
	uint8_t hdr[8];
	raw_auth(&R[0], 1, 5);
	cr_assert(rnet_connected(N[5].rn, 1));
	frame(hdr, 5, 0, 42, 0);
	raw_send(&R[0], hdr, 8);
	raw_send(&R[0], "hello", 5);
	frame(hdr, 0, 1, 0, 0); /* a keepalive is not delivered */
	raw_send(&R[0], hdr, 8);
	frame(hdr, 3, 0, 43, 0);
	raw_send(&R[0], hdr, 8);
	raw_send(&R[0], "bye", 3);
	struct {
		uint32_t len;
		uint8_t type, kind;
		uint16_t reserved;
	} bad[] = {{4097, 0, 1, 0}, {UINT32_MAX, 0, 1, 0}, {4, 2, 0, 0}, {4, 0, 0, 1}, {4, 1, 0, 0}, {0, 1, 5, 0}};
	/* Wait for both messages first. */
	timed_out = false;
	uv_timer_start(&deadline, on_deadline, 5000, 0);
	while (N[5].any < 2 && !timed_out)
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&deadline);
	cr_assert_eq(N[5].any, 2);
	cr_assert_eq(N[5].last_from, 1);
	cr_assert_eq(N[5].last_kind, 43);
	cr_assert_eq(N[5].last_len, 3);
	cr_assert_eq(memcmp(N[5].last, "bye", 3), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct raw *r = &R[1 + i];
		raw_auth(r, 1, 5);
		frame(hdr, bad[i].len, bad[i].type, bad[i].kind, bad[i].reserved);
		raw_send(r, hdr, 8);
		raw_send(r, "abcd", 4);
		cr_assert(raw_closed(r, 5000), "bad frame %zu closes the connection", i);
		raw_close(r);
	}
	cr_assert_eq(N[5].any, 2, "no bad frame is delivered");
	cr_assert_eq(stats(5).messages_received, 2);
	raw_close(&R[0]);
	teardown();
}

Test(rnet, a_newer_connection_from_the_same_peer_replaces_the_older)
{
	// A second authenticated connection as node 1 closes the first; messages on the new one are delivered from node 1.
	raw_target(0, 0);
	uint8_t hdr[8];
	raw_auth(&R[0], 1, 5);
	raw_auth(&R[1], 1, 5);
	cr_assert(raw_closed(&R[0], 5000), "the older connection is closed");
	cr_assert(raw_open(&R[1]));
	frame(hdr, 3, 0, 9, 0);
	raw_send(&R[1], hdr, 8);
	raw_send(&R[1], "new", 3);
	timed_out = false;
	uv_timer_start(&deadline, on_deadline, 5000, 0);
	while (N[5].any < 1 && !timed_out)
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&deadline);
	cr_assert_eq(N[5].any, 1);
	cr_assert_eq(N[5].last_from, 1);
	cr_assert_eq(memcmp(N[5].last, "new", 3), 0);
	cr_assert_eq(stats(5).connects, 2);
	cr_assert_eq(N[5].ups[1], 2);
	cr_assert_eq(N[5].downs[1], 1);
	cr_assert(rnet_connected(N[5].rn, 1));
	/* Messages to node 1 now leave on the new connection. */
	cr_assert_eq(rnet_send(N[5].rn, 1, 77, "reply", 5), 0);
	uint8_t got[13];
	cr_assert(raw_recv(&R[1], got, sizeof got, 5000));
	uint8_t want[8];
	frame(want, 5, 0, 77, 0);
	cr_assert_eq(memcmp(got, want, 8), 0, "the frame header is as specified");
	cr_assert_eq(memcmp(got + 8, "reply", 5), 0);
	raw_close(&R[0]);
	raw_close(&R[1]);
	teardown();
}

Test(rnet, a_silent_authenticated_peer_gets_keepalives_and_is_closed_when_idle)
{
	// A raw peer that authenticates and then sends nothing receives keepalive frames, and is closed after the idle timeout.
	raw_target(300, 0);
	raw_auth(&R[0], 1, 5);
	cr_assert(raw_closed(&R[0], 5000));
	cr_assert_geq(R[0].keepalives, 1, "keepalives as specified arrive before the close");
	cr_assert_eq(stats(5).auth_failures, 0);
	struct pair p = {5, 1};
	cr_assert(run_until(down_seen, &p, 5000));
	raw_close(&R[0]);
	teardown();
}

Test(rnet, unauthenticated_connections_are_capped)
{
	// With 64 connections stuck before authentication, further ones are closed at once; the stuck ones stay until the idle timeout, and a real peer connects once they are gone.
	raw_target(0, 0);
	for (int i = 0; i < 70; i++)
		raw_connect(&R[i], N[5].port);
	for (int i = 64; i < 70; i++)
		cr_assert(raw_closed(&R[i], 4000), "connection %d over the cap is closed", i);
	for (int i = 0; i < 64; i++)
		cr_assert(raw_open(&R[i]), "connection %d under the cap stays", i);
	cr_assert_eq(stats(5).auth_failures, 6);
	for (int i = 0; i < 70; i++)
		raw_close(&R[i]);
	struct counter f = {5, 0, 70};
	cr_assert(run_until(counter_reached, &f, 5000), "closing them frees their places");
	raw_auth(&R[70], 1, 5);
	cr_assert(rnet_connected(N[5].rn, 1));
	raw_close(&R[70]);
	teardown();
}

struct trickle {
	struct raw *r;
	uv_timer_t t;
	uint8_t h[120];
	size_t sent;
};

static void on_trickle(uv_timer_t *t)
{
	struct trickle *tr = t->data;
	if (tr->sent < 119 && send(tr->r->fd, tr->h + tr->sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
		tr->sent++;
}

Test(rnet, a_handshake_trickled_byte_by_byte_is_cut_after_five_seconds)
{
	// A peer that keeps sending one HELLO byte every 100 ms is never idle, but is closed when the handshake has not completed within 5 s.
	raw_target(2000, 0);
	static struct trickle tr;
	uint8_t nonce[32] = {7};
	hello(tr.h, 1, 5, nonce, "galgo");
	tr.r = &R[0];
	tr.sent = 0;
	raw_connect(&R[0], N[5].port);
	uv_timer_init(&loop, &tr.t);
	tr.t.data = &tr;
	uv_timer_start(&tr.t, on_trickle, 100, 100);
	cr_assert(raw_closed(&R[0], 10000), "the node closes the trickling connection");
	cr_assert_lt(tr.sent, 119, "the HELLO never completed");
	cr_assert_eq(stats(5).auth_failures, 1);
	uv_close((uv_handle_t *)&tr.t, NULL);
	raw_close(&R[0]);
	teardown();
}

Test(rnet, closing_with_work_in_flight_frees_everything)
{
	// rnet_close with a resolution, a connect, queued and half-written messages pending, called without running the loop first: the loop then ends with every handle closed and no leak.
	node_start(1);
	node_start(2);
	uint64_t ids[] = {1, 2};
	mesh(ids, 2);
	wait_up(1, 2);
	for (uint64_t seq = 0; seq < 3; seq++)
		cr_assert_eq(send_mk(1, 2, seq, BIG), 0);
	for (uint64_t seq = 3; seq < 100; seq++)
		cr_assert_eq(send_mk(2, 1, seq - 3, 100), 0);
	/* Let the 8 MiB writes start, then add peers that are being resolved and dialed. */
	uv_run(&loop, UV_RUN_NOWAIT);
	cr_assert_eq(rnet_add_peer(N[1].rn, 3, "localhost", 1), 0);
	cr_assert_eq(rnet_add_peer(N[2].rn, 4, "127.0.0.1", 1), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	cr_assert_eq(rnet_add_peer(N[2].rn, 6, "localhost", 9), 0);
	teardown();
}

Test(rnet, closing_or_removing_from_inside_on_message_stops_delivery)
{
	// A node that closes itself in on_message, with more frames of the same read buffered, delivers nothing more and frees everything; one that removes the sender stops its delivery too.
	node_start(1);
	node_start(2);
	node_start(3);
	uint64_t ids[] = {1, 2, 3};
	mesh(ids, 3);
	wait_up(1, 2);
	wait_up(1, 3);
	N[2].on_message_action = 1;
	N[3].on_message_action = 2;
	for (uint64_t seq = 0; seq < 20; seq++) {
		cr_assert_eq(send_mk(1, 2, seq, 50), 0);
		cr_assert_eq(send_mk(1, 3, seq, 50), 0);
	}
	struct pair p = {1, 3};
	cr_assert(run_until(down_seen, &p, 10000), "node 1 sees node 3 drop the connection");
	run_for(100);
	cr_assert_eq(N[2].any, 1, "nothing is delivered after rnet_close");
	cr_assert_eq(N[3].any, 1, "nothing more is delivered from a removed peer");
	cr_assert_null(N[2].rn);
	teardown();
}

/* ------------------------------------------------------------------------------------- mutual TLS */

/*
 * A throwaway PKI made with OpenSSL's API in a temporary directory: CA "A" and CA "B" (P-256,
 * self-signed, CA:TRUE), and node certificates (no extended key usage, so good as client and server)
 * with a DNS name in subjectAltName. PEM files: ca-X.pem, ID.pem and ID.key.
 */
struct pki {
	char dir[64];
	EVP_PKEY *ca_key[2];
	X509 *ca[2];
};
static struct pki P;

static void pem_write(const char *name, X509 *cert, EVP_PKEY *key)
{
	char path[128];
	snprintf(path, sizeof path, "%s/%s", P.dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	cr_assert_not_null(ext);
	cr_assert_eq(X509_add_ext(cert, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* A certificate for key, named cn, signed by CA ca (0: A, 1: B) for DNS name dns, or (ca -1) a CA. */
static X509 *cert_make(EVP_PKEY *key, const char *cn, int ca, const char *dns)
{
	static long serial = 1;
	X509 *x = X509_new();
	cr_assert_not_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509 *issuer = ca >= 0 ? P.ca[ca] : x;
	X509_set_issuer_name(x, X509_get_subject_name(issuer));
	if (ca < 0) {
		add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		add_ext(x, issuer, NID_subject_alt_name, dns);
	}
	cr_assert_gt(X509_sign(x, ca >= 0 ? P.ca_key[ca] : key, EVP_sha256()), 0);
	return x;
}

static void pki_make(void)
{
	snprintf(P.dir, sizeof P.dir, "/tmp/rnet-tls-XXXXXX");
	cr_assert_not_null(mkdtemp(P.dir));
	for (int i = 0; i < 2; i++) {
		P.ca_key[i] = EVP_EC_gen("P-256");
		cr_assert_not_null(P.ca_key[i]);
		P.ca[i] = cert_make(P.ca_key[i], i ? "galgo test CA B" : "galgo test CA A", -1, NULL);
		pem_write(i ? "ca-B.pem" : "ca-A.pem", P.ca[i], NULL);
	}
}

/* Node id's key and certificate, signed by CA ca (0: A, 1: B), for DNS name dns ("DNS:localhost"). */
static void pki_node(uint64_t id, int ca, const char *dns)
{
	char name[32];
	EVP_PKEY *k = EVP_EC_gen("P-256");
	cr_assert_not_null(k);
	X509 *x = cert_make(k, "galgo node", ca, dns);
	snprintf(name, sizeof name, "%lu.pem", (unsigned long)id);
	pem_write(name, x, NULL);
	snprintf(name, sizeof name, "%lu.key", (unsigned long)id);
	pem_write(name, NULL, k);
	X509_free(x);
	EVP_PKEY_free(k);
}

static void pki_free(void)
{
	for (int i = 0; i < 2; i++) {
		X509_free(P.ca[i]);
		EVP_PKEY_free(P.ca_key[i]);
	}
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", P.dir); /* the directory this file made, nothing else */
	cr_assert_eq(system(cmd), 0);
	memset(&P, 0, sizeof P);
}

/* Per node paths; rnet_open loads the files and keeps nothing of the paths. */
static char tls_paths[MAXN + 1][3][128];

/* Opens node id with mutual TLS: trusting CA ca_trusted, with the certificate pki_node made for it. */
static void tls_node_start(uint64_t id, int ca_trusted)
{
	struct rnet_config c = cfg_for(id);
	snprintf(tls_paths[id][0], 128, "%s/ca-%c.pem", P.dir, ca_trusted ? 'B' : 'A');
	snprintf(tls_paths[id][1], 128, "%s/%lu.pem", P.dir, (unsigned long)id);
	snprintf(tls_paths[id][2], 128, "%s/%lu.key", P.dir, (unsigned long)id);
	c.tls_ca = tls_paths[id][0];
	c.tls_cert = tls_paths[id][1];
	c.tls_key = tls_paths[id][2];
	node_open(&c);
}

/* a dials b (a < b) at host; b knows a at 127.0.0.1. */
static void link_pair(uint64_t a, uint64_t b, const char *host)
{
	cr_assert_eq(rnet_add_peer(N[a].rn, b, host, N[b].port), 0);
	cr_assert_eq(rnet_add_peer(N[b].rn, a, "127.0.0.1", N[a].port), 0);
}

#define TLS_BIG (2u << 20)

Test(rnet, mutual_tls_nodes_exchange_messages_both_ways)
{
	// Two nodes with certificates of the same CA connect over mutual TLS (the dialer checking the name "localhost" in the acceptor's certificate) and exchange small messages and a 2 MiB one both ways, in order and intact.
	pki_make();
	pki_node(1, 0, "DNS:localhost");
	pki_node(2, 0, "DNS:localhost");
	tls_node_start(1, 0);
	tls_node_start(2, 0);
	link_pair(1, 2, "localhost");
	wait_up(1, 2);
	for (int dir = 0; dir < 2; dir++) {
		uint64_t from = dir ? 2 : 1, to = dir ? 1 : 2, seq = 0;
		for (; seq < 100; seq++)
			cr_assert_eq(send_mk(from, to, seq, 24 + (seq * 37) % 3000), 0);
		cr_assert_eq(send_mk(from, to, seq++, TLS_BIG), 0);
		for (; seq < 150; seq++)
			cr_assert_eq(send_mk(from, to, seq, 24 + seq), 0);
	}
	wait_got(2, 1, 150);
	wait_got(1, 2, 150);
	for (uint64_t id = 1; id <= 2; id++) {
		struct rnet_stats st = stats(id);
		cr_assert_eq(st.messages_received, 150);
		cr_assert_eq(st.bytes_received, stats(id == 1 ? 2 : 1).bytes_received, "same traffic both ways");
		cr_assert_eq(st.auth_failures, 0);
		cr_assert_eq(st.connects, 1);
		cr_assert_eq(st.dropped, 0);
	}
	teardown();
	pki_free();
}

Test(rnet, mutual_tls_peer_of_another_ca_never_connects)
{
	// A node whose certificate another CA signed (and which trusts only that CA) is refused by a TLS node in both directions of dialing: never connected, nothing delivered, failures counted on both sides.
	pki_make();
	pki_node(1, 0, "DNS:localhost");
	pki_node(2, 1, "DNS:localhost"); /* CA B, trusting B */
	pki_node(3, 0, "DNS:localhost");
	pki_node(4, 1, "DNS:localhost");
	tls_node_start(1, 0); /* A, trusting A: dials node 2 */
	tls_node_start(2, 1); /* B, trusting B */
	tls_node_start(3, 1); /* A, trusting B: its server (node 4) accepts, but node 4 refuses it */
	tls_node_start(4, 1); /* B, trusting B */
	link_pair(1, 2, "localhost");
	link_pair(3, 4, "localhost");
	for (uint64_t id = 1; id <= 4; id++) {
		struct counter f = {id, 0, 3};
		cr_assert(run_until(counter_reached, &f, 15000), "node %lu fails handshakes", (unsigned long)id);
	}
	cr_assert(!rnet_connected(N[1].rn, 2) && !rnet_connected(N[2].rn, 1));
	cr_assert(!rnet_connected(N[3].rn, 4) && !rnet_connected(N[4].rn, 3));
	cr_assert_eq(rnet_send(N[1].rn, 2, 0, "x", 1), -ENOTCONN);
	cr_assert_eq(rnet_send(N[4].rn, 3, 0, "x", 1), -ENOTCONN);
	for (uint64_t id = 1; id <= 4; id++) {
		cr_assert_eq(stats(id).connects, 0);
		cr_assert_eq(N[id].any, 0);
	}
	cr_assert_eq(N[1].ups[2] + N[2].ups[1] + N[3].ups[4] + N[4].ups[3], 0);
	teardown();
	pki_free();
}

Test(rnet, mutual_tls_dialer_checks_the_host_name)
{
	// The acceptor's certificate (right CA) names another host than the one the dialer dialed: the dialer refuses it; dialed by IP literal instead, the same pair connects.
	pki_make();
	pki_node(1, 0, "DNS:localhost");
	pki_node(2, 0, "DNS:elsewhere.invalid");
	tls_node_start(1, 0);
	tls_node_start(2, 0);
	link_pair(1, 2, "localhost");
	struct counter f1 = {1, 0, 3}, f2 = {2, 0, 3};
	cr_assert(run_until(counter_reached, &f1, 15000), "the dialer refuses the certificate");
	cr_assert(run_until(counter_reached, &f2, 15000), "the acceptor sees the handshakes fail");
	cr_assert_eq(stats(1).connects + stats(2).connects, 0);
	cr_assert_eq(N[1].any + N[2].any, 0);
	/* The next attempt resolves the new address: an IP literal is not checked against the name. */
	cr_assert_eq(rnet_add_peer(N[1].rn, 2, "127.0.0.1", N[2].port), 0);
	wait_up(1, 2);
	cr_assert_eq(send_mk(1, 2, 0, 64), 0);
	wait_got(2, 1, 1);
	teardown();
	pki_free();
}

Test(rnet, plain_and_tls_nodes_refuse_each_other)
{
	// A plain node dialing a TLS node, and a TLS node dialing a plain one, both fail their handshakes again and again: never connected, nothing delivered.
	pki_make();
	pki_node(2, 0, "DNS:localhost");
	pki_node(3, 0, "DNS:localhost");
	node_start(1);        /* plain, dials TLS node 2 */
	tls_node_start(2, 0);
	tls_node_start(3, 0); /* TLS, dials plain node 4 */
	node_start(4);
	link_pair(1, 2, "127.0.0.1");
	link_pair(3, 4, "127.0.0.1");
	for (uint64_t id = 1; id <= 4; id++) {
		struct counter f = {id, 0, 3};
		cr_assert(run_until(counter_reached, &f, 15000), "node %lu fails handshakes", (unsigned long)id);
	}
	for (uint64_t id = 1; id <= 4; id++) {
		cr_assert_eq(stats(id).connects, 0);
		cr_assert_eq(N[id].any, 0);
	}
	cr_assert(!rnet_connected(N[1].rn, 2) && !rnet_connected(N[3].rn, 4));
	teardown();
	pki_free();
}

Test(rnet, raw_plain_hello_to_a_tls_node_is_closed)
{
	// A raw socket that sends a valid plain HELLO to a TLS node is closed without an answer of rnet bytes, and counted as a failed handshake.
	pki_make();
	pki_node(2, 0, "DNS:localhost");
	tls_node_start(2, 0);
	cr_assert_eq(rnet_add_peer(N[2].rn, 1, "127.0.0.1", 1), 0);
	struct raw *r = &R[0];
	raw_connect(r, N[2].port);
	uint8_t h[120], nonce[32] = {0};
	hello(h, 1, 2, nonce, "galgo");
	raw_send(r, h, sizeof h);
	uint8_t reply[152];
	cr_assert(!raw_recv(r, reply, sizeof reply, 5000), "no HELLO + PROOF comes back");
	struct counter f = {2, 0, 1};
	cr_assert(run_until(counter_reached, &f, 5000));
	cr_assert_eq(stats(2).connects, 0);
	raw_close(r);
	teardown();
	pki_free();
}

Test(rnet, tls_settings_are_all_or_nothing_and_loaded_at_open)
{
	// rnet_open refuses one or two TLS files without the others (-EINVAL), missing files or a key that does not match the certificate (-EIO), and opens nothing then.
	pki_make();
	pki_node(1, 0, "DNS:localhost");
	pki_node(2, 0, "DNS:localhost");
	char ca[128], cert[128], key[128], key2[128];
	snprintf(ca, sizeof ca, "%s/ca-A.pem", P.dir);
	snprintf(cert, sizeof cert, "%s/1.pem", P.dir);
	snprintf(key, sizeof key, "%s/1.key", P.dir);
	snprintf(key2, sizeof key2, "%s/2.key", P.dir);
	struct rnet_callbacks cb = {.ud = &N[1], .on_message = on_message};
	struct rnet *rn = NULL;
	struct rnet_config c = cfg_for(1);
	c.tls_ca = ca;
	cr_assert_eq(rnet_open(&loop, &c, &cb, &rn), -EINVAL);
	c.tls_cert = cert;
	cr_assert_eq(rnet_open(&loop, &c, &cb, &rn), -EINVAL);
	c.tls_key = "";
	cr_assert_eq(rnet_open(&loop, &c, &cb, &rn), -EINVAL, "an empty string is unset");
	c.tls_key = key2;
	cr_assert_eq(rnet_open(&loop, &c, &cb, &rn), -EIO, "the key of another certificate");
	c.tls_key = key;
	c.tls_ca = "/nonexistent/ca.pem";
	cr_assert_eq(rnet_open(&loop, &c, &cb, &rn), -EIO);
	c.tls_ca = ca;
	cr_assert_null(rn);
	cr_assert_eq(rnet_open(&loop, &c, &cb, &rn), 0);
	N[1].rn = rn;
	ERR_clear_error();
	teardown();
	pki_free();
}
