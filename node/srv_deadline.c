/*
 * srv_deadline — the one deadline mechanism of the node's rooms. Every waiter of replicated work (a
 * metadata command, a send waiting for its commit, a send or poll forwarded to another node, a topic
 * reply waiting for its leaders) registers its deadline here with what to do when it passes, and cancels
 * it when it ends first. Owns: s->dls (a binary min-heap by (at, seq)) and s->dl_timer, armed for the
 * earliest deadline only.
 *
 * Deadlines that are equal fire in the order they were registered (seq), so the sends of one partition,
 * registered in index order with equal or growing deadlines, time out in index order. A fire callback
 * may end its waiter, register or cancel others: each deadline leaves the heap before its callback runs.
 * The periodic retries of that work (a metadata command looking for a leader, a forward whose leader
 * moved on, a term barrier) are srv_house's, not deadlines.
 */
#include <assert.h>
#include <stdlib.h>

#include "node/srv_int.h"

static bool before(const struct srv_dl *a, const struct srv_dl *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void put(struct srv *s, size_t i, struct srv_dl *d)
{
	s->dls[i] = d;
	d->slot = (uint32_t)i + 1;
}

static void sift_up(struct srv *s, size_t i)
{
	struct srv_dl *d = s->dls[i];
	while (i > 0 && before(d, s->dls[(i - 1) / 2])) {
		put(s, i, s->dls[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	put(s, i, d);
}

static void sift_down(struct srv *s, size_t i)
{
	struct srv_dl *d = s->dls[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= s->n_dls)
			break;
		if (c + 1 < s->n_dls && before(s->dls[c + 1], s->dls[c]))
			c++;
		if (!before(s->dls[c], d))
			break;
		put(s, i, s->dls[c]);
		i = c;
	}
	put(s, i, d);
}

static void arm(struct srv *s)
{
	if (s->n_dls == 0 || s->closing) {
		uv_timer_stop(&s->dl_timer);
		return;
	}
	uint64_t now = srv__mono_ms(), at = s->dls[0]->at;
	uv_timer_start(&s->dl_timer, srv__dl_on_timer, at > now ? at - now : 0, 0);
}

static void take(struct srv *s, struct srv_dl *d)
{
	size_t i = d->slot - 1;
	assert(i < s->n_dls && s->dls[i] == d); /* a registered deadline is where its slot says */
	d->slot = 0;
	struct srv_dl *last = s->dls[--s->n_dls];
	if (last == d)
		return;
	put(s, i, last);
	if (i > 0 && before(last, s->dls[(i - 1) / 2]))
		sift_up(s, i);
	else
		sift_down(s, i);
}

void srv__dl_add(struct srv *s, struct srv_dl *d, uint64_t at, srv_dl_fn fire)
{
	assert(d->slot == 0); /* a waiter has one deadline at a time */
	if (s->n_dls == s->cap_dls) {
		size_t cap = s->cap_dls ? 2 * s->cap_dls : 64;
		struct srv_dl **h = realloc(s->dls, cap * sizeof(*h));
		if (h == NULL)
			abort(); /* a waiter without its deadline could wait for ever */
		s->dls = h;
		s->cap_dls = cap;
	}
	d->at = at;
	d->seq = ++s->dl_seq;
	d->fire = fire;
	s->dls[s->n_dls++] = d;
	sift_up(s, s->n_dls - 1);
	if (s->dls[0] == d)
		arm(s);
}

void srv__dl_cancel(struct srv *s, struct srv_dl *d)
{
	if (d->slot == 0)
		return;
	bool first = s->dls[0] == d;
	take(s, d);
	if (first)
		arm(s);
}

bool srv__dl_pending(const struct srv_dl *d)
{
	return d->slot != 0;
}

void srv__dl_on_timer(uv_timer_t *t)
{
	struct srv *s = t->data;
	uint64_t now = srv__mono_ms();
	while (s->n_dls > 0 && s->dls[0]->at <= now && !s->closing) {
		struct srv_dl *d = s->dls[0];
		take(s, d);
		d->fire(s, d);
	}
	arm(s);
}

void srv__dl_free(struct srv *s)
{
	for (size_t i = 0; i < s->n_dls; i++)
		s->dls[i]->slot = 0;
	free(s->dls);
	s->dls = NULL;
	s->n_dls = s->cap_dls = 0;
}
