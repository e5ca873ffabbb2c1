/*
 * sim — virtual clock, seeded randomness, event queue and datagram network. See sim.h.
 */
#include "tests/sim/sim.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_init(struct sim *s, uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	s->rng = seed;
}

void sim_free(struct sim *s)
{
	for (size_t i = 0; i < s->n_heap; i++)
		free(s->heap[i].buf);
	free(s->heap);
	s->heap = NULL;
	s->n_heap = s->cap_heap = 0;
}

uint64_t sim_rand(struct sim *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t sim_rand_in(struct sim *s, uint64_t lo, uint64_t hi)
{
	assert(hi >= lo);
	return lo + sim_rand(s) % (hi - lo + 1);
}

bool sim_chance(struct sim *s, unsigned pct)
{
	return sim_rand_in(s, 1, 100) <= pct;
}

/* The queue: a binary heap ordered by (time, seq). */
static bool ev_less(const struct sim_event *a, const struct sim_event *b)
{
	return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

void sim_push(struct sim *s, struct sim_event e)
{
	if (s->n_heap == s->cap_heap) {
		size_t cap = s->cap_heap ? s->cap_heap * 2 : 256;
		struct sim_event *h = realloc(s->heap, cap * sizeof(*h));
		if (h == NULL) {
			fprintf(stderr, "sim: out of memory\n");
			abort();
		}
		s->heap = h;
		s->cap_heap = cap;
	}
	assert(e.time >= s->now); /* nothing is scheduled in the past */
	e.seq = s->seq++;
	size_t i = s->n_heap++;
	while (i > 0 && ev_less(&e, &s->heap[(i - 1) / 2])) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = e;
}

struct sim_event sim_pop(struct sim *s)
{
	assert(s->n_heap > 0);
	struct sim_event top = s->heap[0];
	struct sim_event last = s->heap[--s->n_heap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->n_heap)
			break;
		if (c + 1 < s->n_heap && ev_less(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_less(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->n_heap > 0)
		s->heap[i] = last;
	s->events++;
	return top;
}

uint64_t sim_next_time(const struct sim *s)
{
	return s->n_heap > 0 ? s->heap[0].time : UINT64_MAX;
}

/* ---- The datagram network ---- */

void sim_net_init(struct sim_net *n, int kind, unsigned min_ms, unsigned max_ms)
{
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->min_ms = min_ms;
	n->max_ms = max_ms;
}

bool sim_net_send(struct sim *s, struct sim_net *n, int from, int to, uint32_t tag, const void *buf, size_t len)
{
	assert(from >= 1 && from <= SIM_MAX_NODES && to >= 1 && to <= SIM_MAX_NODES);
	n->sent++;
	/* The random draws come in this order (drop, then delay) so that a seed replays the same schedule. */
	if (n->cut[from][to] || sim_rand_in(s, 1, 100) <= n->drop_pct) {
		n->dropped++;
		return false;
	}
	uint8_t *copy = malloc(len ? len : 1);
	if (copy == NULL) {
		fprintf(stderr, "sim: out of memory\n");
		abort();
	}
	if (len > 0)
		memcpy(copy, buf, len);
	uint64_t at = s->now + sim_rand_in(s, n->min_ms, n->max_ms);
	if (n->fifo && at < n->last_at[from][to])
		at = n->last_at[from][to];
	n->last_at[from][to] = at;
	struct sim_event e = {.time = at, .kind = n->kind, .node = to, .from = from, .inc = n->epoch[from][to],
			      .tag = tag, .buf = copy, .len = len};
	sim_push(s, e);
	return true;
}

bool sim_net_deliverable(const struct sim_net *n, const struct sim_event *e)
{
	return !n->cut[e->from][e->node] && e->inc == n->epoch[e->from][e->node];
}

void sim_net_cut(struct sim_net *n, int a, int b, bool cut)
{
	n->cut[a][b] = n->cut[b][a] = cut;
}

void sim_net_partition(struct sim_net *n, int count, unsigned side)
{
	for (int a = 1; a <= count; a++)
		for (int b = 1; b <= count; b++)
			n->cut[a][b] = a != b && (((side >> a) & 1u) != ((side >> b) & 1u));
}

void sim_net_heal(struct sim_net *n)
{
	memset(n->cut, 0, sizeof(n->cut));
}

void sim_net_reset(struct sim_net *n, int a, int b)
{
	n->epoch[a][b]++;
	n->epoch[b][a]++;
}
