/*
 * simnet — rnet on a simulated network. See simnet.h. The struct rnet here is this file's own: the real
 * transport/rnet.c is never reached by a program linked with the wraps.
 */
#include "tests/sim/simnet.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/rnet.h"

struct rnet {
	int node;
	struct rnet_callbacks cb;
	bool peer[SIM_MAX_NODES + 1]; /* in the roster */
};

int __wrap_rnet_open(uv_loop_t *loop, const struct rnet_config *cfg, const struct rnet_callbacks *cb, struct rnet **out);
uint16_t __wrap_rnet_port(const struct rnet *n);
int __wrap_rnet_add_peer(struct rnet *n, uint64_t id, const char *host, uint16_t port);
int __wrap_rnet_remove_peer(struct rnet *n, uint64_t id);
bool __wrap_rnet_connected(const struct rnet *n, uint64_t peer);
uint64_t __wrap_rnet_silent_ms(const struct rnet *n, uint64_t peer);
int __wrap_rnet_sendv(struct rnet *n, uint64_t to, uint8_t kind, const uv_buf_t *bufs, size_t nbufs);
int __wrap_rnet_send(struct rnet *n, uint64_t to, uint8_t kind, const void *buf, size_t len);
void __wrap_rnet_close(struct rnet *n);
void __wrap_rnet_stats(const struct rnet *n, struct rnet_stats *st);

/* One connection per pair (a < b), symmetric. */
struct conn {
	bool up;
	uint64_t dial_at;  /* down: when it is dialed again */
	uint64_t heard[2]; /* when a (0) last heard b, when b (1) last heard a */
};

static struct {
	struct sim *s;
	struct sim_net net;
	int nodes;
	struct rnet *ep[SIM_MAX_NODES + 1];
	struct conn c[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
} N;

static struct conn *conn(int a, int b)
{
	return a < b ? &N.c[a][b] : &N.c[b][a];
}

void simnet_init(struct sim *s, int kind, int nodes, unsigned min_ms, unsigned max_ms)
{
	memset(&N, 0, sizeof(N));
	N.s = s;
	N.nodes = nodes;
	sim_net_init(&N.net, kind, min_ms, max_ms);
	N.net.fifo = true;
}

void simnet_free(void)
{
	for (int i = 1; i <= SIM_MAX_NODES; i++) {
		free(N.ep[i]);
		N.ep[i] = NULL;
	}
}

struct sim_net *simnet_net(void)
{
	return &N.net;
}

bool simnet_open(int node)
{
	return N.ep[node] != NULL;
}

static void set_down(int a, int b)
{
	struct conn *c = conn(a, b);
	sim_net_reset(&N.net, a, b);
	c->dial_at = N.s->now + sim_rand_in(N.s, 50, 1000);
	if (!c->up)
		return;
	c->up = false;
	if (N.ep[a] != NULL && N.ep[a]->cb.on_peer != NULL)
		N.ep[a]->cb.on_peer(N.ep[a]->cb.ud, (uint64_t)b, false);
	if (N.ep[b] != NULL && N.ep[b]->cb.on_peer != NULL)
		N.ep[b]->cb.on_peer(N.ep[b]->cb.ud, (uint64_t)a, false);
}

void simnet_reset(int a, int b)
{
	set_down(a, b);
}

void simnet_cut(int a, int b, bool cut)
{
	sim_net_cut(&N.net, a, b, cut);
}

void simnet_tick(void)
{
	uint64_t now = N.s->now;
	for (int a = 1; a <= N.nodes; a++)
		for (int b = a + 1; b <= N.nodes; b++) {
			struct conn *c = conn(a, b);
			bool both = N.ep[a] != NULL && N.ep[b] != NULL && N.ep[a]->peer[b] && N.ep[b]->peer[a];
			if (c->up && !both) {
				set_down(a, b);
				continue;
			}
			if (c->up && N.net.cut[a][b]) {
				/* Nothing heard for the idle timeout: each side closes (rnet's idle timeout). */
				if (now - c->heard[0] >= SIMNET_IDLE_MS || now - c->heard[1] >= SIMNET_IDLE_MS)
					set_down(a, b);
				continue;
			}
			if (!c->up && both && !N.net.cut[a][b] && now >= c->dial_at) {
				c->up = true;
				c->heard[0] = c->heard[1] = now;
				N.ep[a]->cb.on_peer != NULL ? N.ep[a]->cb.on_peer(N.ep[a]->cb.ud, (uint64_t)b, true) : (void)0;
				N.ep[b]->cb.on_peer != NULL ? N.ep[b]->cb.on_peer(N.ep[b]->cb.ud, (uint64_t)a, true) : (void)0;
			}
			if (c->up && !N.net.cut[a][b]) {
				/* Keepalives flow on a connection that is up and not cut. */
				uint64_t ka = now - now % SIMNET_KEEPALIVE_MS;
				if (c->heard[0] < ka)
					c->heard[0] = ka;
				if (c->heard[1] < ka)
					c->heard[1] = ka;
			}
		}
}

void simnet_deliver(struct sim_event *e)
{
	int to = e->node, from = e->from;
	struct rnet *r = N.ep[to];
	if (r != NULL && sim_net_deliverable(&N.net, e) && conn(from, to)->up) {
		conn(from, to)->heard[from < to ? 1 : 0] = N.s->now;
		r->cb.on_message(r->cb.ud, (uint64_t)from, (uint8_t)e->tag, e->buf, e->len);
	}
	free(e->buf);
	e->buf = NULL;
}

/* ---- rnet's interface ---- */

int __wrap_rnet_open(uv_loop_t *loop, const struct rnet_config *cfg, const struct rnet_callbacks *cb, struct rnet **out)
{
	(void)loop;
	int node = (int)cfg->node_id;
	assert(N.s != NULL && node >= 1 && node <= N.nodes && N.ep[node] == NULL);
	struct rnet *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->node = node;
	r->cb = *cb;
	N.ep[node] = r;
	*out = r;
	return 0;
}

uint16_t __wrap_rnet_port(const struct rnet *n)
{
	return (uint16_t)(7000 + n->node);
}

int __wrap_rnet_add_peer(struct rnet *n, uint64_t id, const char *host, uint16_t port)
{
	(void)host;
	(void)port;
	if (id == 0 || id == (uint64_t)n->node)
		return -EINVAL;
	if (id <= (uint64_t)N.nodes)
		n->peer[id] = true;
	return 0;
}

int __wrap_rnet_remove_peer(struct rnet *n, uint64_t id)
{
	if (id == 0 || id > (uint64_t)N.nodes || !n->peer[id])
		return -ENOENT;
	n->peer[id] = false;
	if (conn(n->node, (int)id)->up)
		set_down(n->node, (int)id);
	return 0;
}

bool __wrap_rnet_connected(const struct rnet *n, uint64_t peer)
{
	return peer >= 1 && peer <= (uint64_t)N.nodes && peer != (uint64_t)n->node && conn(n->node, (int)peer)->up;
}

uint64_t __wrap_rnet_silent_ms(const struct rnet *n, uint64_t peer)
{
	if (!__wrap_rnet_connected(n, peer))
		return UINT64_MAX;
	const struct conn *c = conn(n->node, (int)peer);
	uint64_t heard = c->heard[n->node < (int)peer ? 0 : 1];
	return N.s->now - heard;
}

int __wrap_rnet_sendv(struct rnet *n, uint64_t to, uint8_t kind, const uv_buf_t *bufs, size_t nbufs)
{
	if (to == 0 || to > (uint64_t)N.nodes || !n->peer[to])
		return -ENOENT;
	if (!conn(n->node, (int)to)->up)
		return -ENOTCONN;
	size_t len = 0;
	for (size_t i = 0; i < nbufs; i++)
		len += bufs[i].len;
	uint8_t *m = malloc(len ? len : 1);
	if (m == NULL)
		return -ENOMEM;
	size_t at = 0;
	for (size_t i = 0; i < nbufs; i++) {
		memcpy(m + at, bufs[i].base, bufs[i].len);
		at += bufs[i].len;
	}
	(void)sim_net_send(N.s, &N.net, n->node, (int)to, kind, m, len);
	free(m);
	return 0;
}

int __wrap_rnet_send(struct rnet *n, uint64_t to, uint8_t kind, const void *buf, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
	return __wrap_rnet_sendv(n, to, kind, &b, 1);
}

void __wrap_rnet_close(struct rnet *n)
{
	int node = n->node;
	for (int p = 1; p <= N.nodes; p++)
		if (p != node)
			set_down(node, p);
	assert(N.ep[node] == n);
	N.ep[node] = NULL;
	free(n);
}

void __wrap_rnet_stats(const struct rnet *n, struct rnet_stats *st)
{
	(void)n;
	memset(st, 0, sizeof(*st));
}
