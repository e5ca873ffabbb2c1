/* flusher — group commit for the partitions of one loop. See flusher.h. */
#include "partition/flusher.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

struct flusher {
	uv_loop_t *loop;
	bool inline_mode;
	uv_timer_t timer;            /* fires at the earliest due time of a dirty item */
	uv_idle_t kick;              /* runs ready callbacks and starts due rounds before the loop sleeps */
	struct flusher_item *dirty_head, *dirty_tail;
	struct flusher_item *ready_head, *ready_tail;
	struct flusher_item **round; /* the items of the running round */
	size_t n_round, cap_round;
	size_t in_flight;            /* items whose sync runs */
	int handles_open;
	struct flusher_stats stats;
};

static void kick_cb(uv_idle_t *h);
static void timer_cb(uv_timer_t *h);

static void kick_start(struct flusher *fl)
{
	if (!uv_is_active((uv_handle_t *)&fl->kick))
		uv_idle_start(&fl->kick, kick_cb);
}

/* An item's sync finished: report it; if it was marked again meanwhile it goes out with the next batch. */
static void item_finished(struct flusher *fl, struct flusher_item *it)
{
	assert(it->in_round && fl->in_flight > 0); /* each started sync finishes exactly once */
	it->in_round = false;
	fl->in_flight--;
	fl->stats.syncs++;
	if (it->status != 0)
		fl->stats.errors++;
	/* done may mark the item (or others) dirty again. */
	it->ops->done(it, it->status);
	if (fl->dirty_head != NULL)
		kick_start(fl);
}

static void work_cb(uv_work_t *w)
{
	struct flusher_item *it = w->data;
	it->status = it->ops->sync(it);
}

static void after_work_cb(uv_work_t *w, int status)
{
	struct flusher_item *it = w->data;
	if (status == UV_ECANCELED)
		it->status = -ECANCELED;
	item_finished(it->fl, it);
}

static uint64_t earliest_due(const struct flusher *fl)
{
	uint64_t m = UINT64_MAX;
	for (const struct flusher_item *it = fl->dirty_head; it != NULL; it = it->next_dirty)
		if (!it->in_round && it->due_ms < m)
			m = it->due_ms;
	return m;
}

/*
 * Starts a sync for every due dirty item that has none in flight. Items are independent: each one's
 * done runs as soon as its own sync finishes, and an item marked while its sync runs goes out again right
 * after, so a slow disk file never holds back the others.
 */
static void maybe_start_round(struct flusher *fl)
{
	uint64_t now = uv_now(fl->loop);
	size_t n = 0;
	assert(fl->n_round == 0); /* a round's array is emptied as soon as its items are started */
	struct flusher_item **pp = &fl->dirty_head, *prev = NULL;
	while (*pp != NULL) {
		struct flusher_item *it = *pp;
		if (it->due_ms > now || it->in_round) {
			prev = it;
			pp = &it->next_dirty;
			continue;
		}
		assert(it->dirty && it->fl == fl); /* the dirty list holds exactly the marked items */
		*pp = it->next_dirty;
		if (fl->dirty_tail == it)
			fl->dirty_tail = prev;
		it->next_dirty = NULL;
		it->dirty = false;
		if (fl->n_round == fl->cap_round) {
			size_t cap = fl->cap_round ? fl->cap_round * 2 : 16;
			struct flusher_item **r = realloc(fl->round, cap * sizeof(*r));
			if (r == NULL) {
				/* Put it back and try again later. */
				it->dirty = true;
				it->next_dirty = *pp;
				*pp = it;
				if (fl->dirty_tail == prev)
					fl->dirty_tail = it;
				break;
			}
			fl->round = r;
			fl->cap_round = cap;
		}
		fl->round[fl->n_round++] = it;
		it->in_round = true;
		n++;
	}
	uint64_t due = earliest_due(fl);
	if (due != UINT64_MAX && due > now)
		uv_timer_start(&fl->timer, timer_cb, due - now, 0);
	if (n == 0)
		return;
	fl->stats.rounds++;
	size_t count = fl->n_round;
	fl->n_round = 0;
	fl->in_flight += count;
	for (size_t i = 0; i < count; i++)
		fl->round[i]->ops->prepare(fl->round[i]);
	if (fl->inline_mode) {
		/* done never starts a batch itself (it only marks), so fl->round stays ours meanwhile. */
		for (size_t i = 0; i < count; i++)
			fl->round[i]->status = fl->round[i]->ops->sync(fl->round[i]);
		for (size_t i = 0; i < count; i++)
			item_finished(fl, fl->round[i]);
		return;
	}
	for (size_t i = 0; i < count; i++) {
		struct flusher_item *it = fl->round[i];
		it->work.data = it;
		if (uv_queue_work(fl->loop, &it->work, work_cb, after_work_cb) != 0) {
			it->status = -EIO;
			item_finished(fl, it);
		}
	}
}

static void run_ready(struct flusher *fl)
{
	struct flusher_item *it = fl->ready_head;
	fl->ready_head = fl->ready_tail = NULL;
	while (it != NULL) {
		struct flusher_item *next = it->next_ready;
		assert(it->ready_queued);
		it->next_ready = NULL;
		it->ready_queued = false;
		it->ops->ready(it);
		it = next;
	}
}

static void kick_cb(uv_idle_t *h)
{
	struct flusher *fl = h->data;
	uv_idle_stop(h);
	run_ready(fl);
	maybe_start_round(fl);
	if (fl->ready_head != NULL)
		kick_start(fl);
}

static void timer_cb(uv_timer_t *h)
{
	struct flusher *fl = h->data;
	maybe_start_round(fl);
}

int flusher_new(uv_loop_t *loop, bool inline_mode, struct flusher **out)
{
	struct flusher *fl = calloc(1, sizeof(*fl));
	if (fl == NULL)
		return -ENOMEM;
	fl->loop = loop;
	fl->inline_mode = inline_mode;
	uv_timer_init(loop, &fl->timer);
	uv_idle_init(loop, &fl->kick);
	fl->timer.data = fl;
	fl->kick.data = fl;
	fl->handles_open = 2;
	*out = fl;
	return 0;
}

static void handle_closed(uv_handle_t *h)
{
	struct flusher *fl = h->data;
	fl->handles_open--;
}

void flusher_close(struct flusher *fl)
{
	while (fl->in_flight > 0)
		uv_run(fl->loop, UV_RUN_ONCE);
	run_ready(fl);
	uv_close((uv_handle_t *)&fl->timer, handle_closed);
	uv_close((uv_handle_t *)&fl->kick, handle_closed);
	while (fl->handles_open > 0)
		uv_run(fl->loop, UV_RUN_NOWAIT);
	free(fl->round);
	free(fl);
}

void flusher_mark(struct flusher *fl, struct flusher_item *it, uint32_t delay_ms)
{
	assert(it->fl == NULL || it->fl == fl); /* an item belongs to one flusher (one loop) */
	it->fl = fl;
	uint64_t due = uv_now(fl->loop) + delay_ms;
	if (it->dirty) {
		if (due < it->due_ms)
			it->due_ms = due;
	} else {
		assert(it->next_dirty == NULL && fl->dirty_tail != it); /* not on the list yet */
		it->dirty = true;
		it->due_ms = due;
		it->next_dirty = NULL;
		if (fl->dirty_tail != NULL)
			fl->dirty_tail->next_dirty = it;
		else
			fl->dirty_head = it;
		fl->dirty_tail = it;
	}
	if (it->in_round)
		return; /* its sync's end looks again */
	if (delay_ms == 0)
		kick_start(fl);
	else if (!uv_is_active((uv_handle_t *)&fl->timer) || uv_timer_get_due_in(&fl->timer) > delay_ms)
		uv_timer_start(&fl->timer, timer_cb, delay_ms, 0);
}

void flusher_defer(struct flusher *fl, struct flusher_item *it)
{
	assert(it->fl == NULL || it->fl == fl);
	it->fl = fl;
	if (it->ready_queued)
		return;
	it->ready_queued = true;
	it->next_ready = NULL;
	if (fl->ready_tail != NULL)
		fl->ready_tail->next_ready = it;
	else
		fl->ready_head = it;
	fl->ready_tail = it;
	kick_start(fl);
}

bool flusher_forget(struct flusher *fl, struct flusher_item *it)
{
	struct flusher_item *prev = NULL;
	for (struct flusher_item **pp = &fl->dirty_head; *pp != NULL; pp = &(*pp)->next_dirty) {
		if (*pp == it) {
			*pp = it->next_dirty;
			if (fl->dirty_tail == it)
				fl->dirty_tail = prev;
			break;
		}
		prev = *pp;
	}
	it->dirty = false;
	it->next_dirty = NULL;
	prev = NULL;
	for (struct flusher_item **pp = &fl->ready_head; *pp != NULL; pp = &(*pp)->next_ready) {
		if (*pp == it) {
			*pp = it->next_ready;
			if (fl->ready_tail == it)
				fl->ready_tail = prev;
			break;
		}
		prev = *pp;
	}
	it->ready_queued = false;
	it->next_ready = NULL;
	return it->in_round;
}

bool flusher_busy(const struct flusher_item *it)
{
	return it->in_round;
}

void flusher_drain(struct flusher *fl)
{
	for (;;) {
		bool due = fl->dirty_head != NULL && earliest_due(fl) <= uv_now(fl->loop);
		if (fl->in_flight == 0 && !due && fl->ready_head == NULL)
			return;
		if (fl->in_flight == 0) {
			run_ready(fl);
			maybe_start_round(fl);
			continue;
		}
		uv_run(fl->loop, UV_RUN_ONCE);
		uv_update_time(fl->loop);
	}
}

void flusher_stats(const struct flusher *fl, struct flusher_stats *out)
{
	*out = fl->stats;
}
