/* clock — the clock-offset estimate and the skew decision. See clock.h. */
#include "node/clock.h"

#include <assert.h>
#include <string.h>

void clk_init(struct clk *c, uint64_t max_offset_us)
{
	memset(c, 0, sizeof(*c));
	c->max_offset_us = max_offset_us;
}

static struct clk_peer *find(const struct clk *c, uint64_t peer)
{
	for (unsigned i = 0; i < c->n_peers; i++)
		if (c->peers[i].id == peer)
			return (struct clk_peer *)&c->peers[i];
	return NULL;
}

void clk_sample(struct clk *c, uint64_t peer, uint64_t sent_wall_us, uint64_t peer_wall_us, uint64_t sent_mono_us,
		uint64_t now_mono_us)
{
	if (now_mono_us < sent_mono_us)
		return;
	struct clk_peer *p = find(c, peer);
	if (p == NULL) {
		if (c->n_peers == CLK_MAX_PEERS)
			return;
		p = &c->peers[c->n_peers++];
		memset(p, 0, sizeof(*p));
		p->id = peer;
	}
	uint64_t rtt = now_mono_us - sent_mono_us;
	struct clk_sample *s = &p->s[p->next];
	s->rtt_us = rtt;
	s->at_us = now_mono_us;
	s->offset_us = (int64_t)(peer_wall_us - sent_wall_us - rtt / 2);
	p->next = (p->next + 1) % CLK_SAMPLES;
	if (p->n < CLK_SAMPLES)
		p->n++;
	assert(p->n <= CLK_SAMPLES && p->next < CLK_SAMPLES);
}

bool clk_offset(const struct clk *c, uint64_t peer, uint64_t now_mono_us, int64_t *offset_us, uint64_t *error_us)
{
	const struct clk_peer *p = find(c, peer);
	const struct clk_sample *best = NULL;
	for (unsigned i = 0; p != NULL && i < p->n; i++) {
		const struct clk_sample *s = &p->s[i];
		if (now_mono_us - s->at_us > CLK_MAX_AGE_US)
			continue;
		if (best == NULL || s->rtt_us < best->rtt_us)
			best = s;
	}
	if (best == NULL)
		return false;
	*offset_us = best->offset_us;
	*error_us = best->rtt_us / 2;
	return true;
}

bool clk_disagrees(const struct clk *c, uint64_t peer, uint64_t now_mono_us)
{
	int64_t off;
	uint64_t err;
	if (!clk_offset(c, peer, now_mono_us, &off, &err))
		return false;
	uint64_t mag = off < 0 ? (uint64_t)0 - (uint64_t)off : (uint64_t)off;
	return mag > err && mag - err > c->max_offset_us;
}

bool clk_skewed(const struct clk *c, const uint64_t *peers, unsigned n_peers, unsigned n_nodes, uint64_t now_mono_us)
{
	if (c->max_offset_us == 0)
		return false; /* no maximum: never skewed */
	unsigned disagree = 0;
	for (unsigned i = 0; i < n_peers; i++)
		disagree += clk_disagrees(c, peers[i], now_mono_us);
	unsigned agree = n_nodes > disagree ? n_nodes - disagree : 0;
	return agree < n_nodes / 2 + 1;
}
