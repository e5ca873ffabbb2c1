/*
 * simuv — virtual time and a hand-driven event loop. See simuv.h; the functions named __wrap_X replace X
 * in the node's code at link time, __real_X is libuv's (or libc's) own.
 */
#include "tests/sim/simuv.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WALL_BASE_US 1700000000000000ull

/* Prototypes of the wrappers and of the real functions (the linker provides __real_X). */
uint64_t __wrap_uv_hrtime(void);
uint64_t __wrap_uv_now(const uv_loop_t *loop);
void __wrap_uv_update_time(uv_loop_t *loop);
int __wrap_clock_gettime(clockid_t clk, struct timespec *ts);
int __real_clock_gettime(clockid_t clk, struct timespec *ts);
int __wrap_uv_timer_start(uv_timer_t *h, uv_timer_cb cb, uint64_t timeout, uint64_t repeat);
int __wrap_uv_timer_stop(uv_timer_t *h);
uint64_t __wrap_uv_timer_get_due_in(const uv_timer_t *h);
int __wrap_uv_idle_start(uv_idle_t *h, uv_idle_cb cb);
int __wrap_uv_idle_stop(uv_idle_t *h);
int __wrap_uv_check_start(uv_check_t *h, uv_check_cb cb);
int __wrap_uv_is_active(const uv_handle_t *h);
int __real_uv_is_active(const uv_handle_t *h);
void __wrap_uv_close(uv_handle_t *h, uv_close_cb cb);
void __real_uv_close(uv_handle_t *h, uv_close_cb cb);
int __wrap_uv_queue_work(uv_loop_t *loop, uv_work_t *req, uv_work_cb work, uv_after_work_cb after);
int __wrap_uv_run(uv_loop_t *loop, uv_run_mode mode);
int __real_uv_run(uv_loop_t *loop, uv_run_mode mode);
int __wrap_RAND_bytes(unsigned char *buf, int num);

/* A handle kept here: a timer, an idle or a check handle. */
struct kept {
	uv_handle_t *h;
	bool active;
	uint64_t due, repeat, order; /* timers: due time (ms), period, start order (ties) */
	void (*cb)(void *h);
};

/* A finished work request whose after-callback waits for its loop's next iteration. */
struct done_work {
	uv_work_t *req;
	uv_after_work_cb after;
};

static struct {
	uint64_t now;
	uint64_t rng;
	uint64_t order;
	struct kept *k;
	size_t n, cap;
	struct done_work *w;
	size_t n_w, cap_w;
} U;

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	size_t c = *cap ? *cap * 2 : 64;
	while (c < need)
		c *= 2;
	void *q = realloc(p, c * size);
	if (q == NULL) {
		fprintf(stderr, "simuv: out of memory\n");
		abort();
	}
	*cap = c;
	return q;
}

static struct kept *find(const uv_handle_t *h)
{
	for (size_t i = 0; i < U.n; i++)
		if (U.k[i].h == h)
			return &U.k[i];
	return NULL;
}

static struct kept *keep(uv_handle_t *h)
{
	struct kept *k = find(h);
	if (k != NULL)
		return k;
	U.k = grow(U.k, &U.cap, U.n + 1, sizeof(*U.k));
	k = &U.k[U.n++];
	memset(k, 0, sizeof(*k));
	k->h = h;
	return k;
}

static void unkeep(const uv_handle_t *h)
{
	for (size_t i = 0; i < U.n; i++)
		if (U.k[i].h == h) {
			U.k[i] = U.k[--U.n];
			return;
		}
}

/* ---- Clock and randomness ---- */

void simuv_reset(void)
{
	free(U.k);
	free(U.w);
	memset(&U, 0, sizeof(U));
}

void simuv_set_now(uint64_t ms)
{
	assert(ms >= U.now);
	U.now = ms;
}

uint64_t simuv_now(void)
{
	return U.now;
}

void simuv_seed(uint64_t seed)
{
	U.rng = seed ^ 0x5eed5eed5eedull;
}

uint64_t __wrap_uv_hrtime(void)
{
	return U.now * 1000000u;
}

uint64_t __wrap_uv_now(const uv_loop_t *loop)
{
	(void)loop;
	return U.now;
}

void __wrap_uv_update_time(uv_loop_t *loop)
{
	(void)loop;
}

int __wrap_clock_gettime(clockid_t clk, struct timespec *ts)
{
	if (clk != CLOCK_REALTIME)
		return __real_clock_gettime(clk, ts);
	uint64_t us = WALL_BASE_US + U.now * 1000u;
	ts->tv_sec = (time_t)(us / 1000000u);
	ts->tv_nsec = (long)(us % 1000000u) * 1000;
	return 0;
}

int __wrap_RAND_bytes(unsigned char *buf, int num)
{
	for (int i = 0; i < num; i++) {
		uint64_t z = (U.rng += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		buf[i] = (unsigned char)(z ^ (z >> 31));
	}
	return 1;
}

/* ---- Timers ---- */

int __wrap_uv_timer_start(uv_timer_t *h, uv_timer_cb cb, uint64_t timeout, uint64_t repeat)
{
	struct kept *k = keep((uv_handle_t *)h);
	k->active = true;
	k->due = U.now + timeout;
	k->repeat = repeat;
	k->order = U.order++;
	k->cb = (void (*)(void *))cb;
	return 0;
}

int __wrap_uv_timer_stop(uv_timer_t *h)
{
	struct kept *k = find((uv_handle_t *)h);
	if (k != NULL)
		k->active = false;
	return 0;
}

uint64_t __wrap_uv_timer_get_due_in(const uv_timer_t *h)
{
	struct kept *k = find((const uv_handle_t *)h);
	if (k == NULL || !k->active || k->due <= U.now)
		return 0;
	return k->due - U.now;
}

static struct kept *earliest(void)
{
	struct kept *best = NULL;
	for (size_t i = 0; i < U.n; i++) {
		struct kept *k = &U.k[i];
		if (k->active && k->h->type == UV_TIMER &&
		    (best == NULL || k->due < best->due || (k->due == best->due && k->order < best->order)))
			best = k;
	}
	return best;
}

uint64_t simuv_next_due(void)
{
	struct kept *k = earliest();
	return k != NULL ? k->due : UINT64_MAX;
}

uv_loop_t *simuv_fire_next(void)
{
	struct kept *k = earliest();
	if (k == NULL || k->due > U.now)
		return NULL;
	uv_handle_t *h = k->h;
	void (*cb)(void *) = k->cb;
	if (k->repeat != 0) {
		k->due = U.now + k->repeat;
		k->order = U.order++;
	} else {
		k->active = false;
	}
	uv_loop_t *loop = h->loop;
	cb(h); /* may stop, restart or close it */
	return loop;
}

/* ---- Idle and check handles ---- */

int __wrap_uv_idle_start(uv_idle_t *h, uv_idle_cb cb)
{
	struct kept *k = keep((uv_handle_t *)h);
	if (!k->active)
		k->order = U.order++;
	k->active = true;
	k->cb = (void (*)(void *))cb;
	return 0;
}

int __wrap_uv_idle_stop(uv_idle_t *h)
{
	struct kept *k = find((uv_handle_t *)h);
	if (k != NULL)
		k->active = false;
	return 0;
}

int __wrap_uv_check_start(uv_check_t *h, uv_check_cb cb)
{
	struct kept *k = keep((uv_handle_t *)h);
	k->active = true;
	k->order = U.order++;
	k->cb = (void (*)(void *))cb;
	return 0;
}

int __wrap_uv_is_active(const uv_handle_t *h)
{
	struct kept *k = find(h);
	if (k != NULL)
		return k->active;
	if (h->type == UV_TIMER || h->type == UV_IDLE || h->type == UV_CHECK)
		return 0; /* never started here */
	return __real_uv_is_active(h);
}

void __wrap_uv_close(uv_handle_t *h, uv_close_cb cb)
{
	unkeep(h);
	__real_uv_close(h, cb);
}

bool simuv_idle_active(uv_loop_t *loop)
{
	for (size_t i = 0; i < U.n; i++)
		if (U.k[i].active && U.k[i].h->type == UV_IDLE && U.k[i].h->loop == loop)
			return true;
	return false;
}

/* Runs the active handles of one type of a loop once each, in start order (a callback may change the set). */
static void run_type(uv_loop_t *loop, uv_handle_type type)
{
	uv_handle_t *hs[64];
	size_t n = 0;
	for (size_t i = 0; i < U.n && n < 64; i++)
		if (U.k[i].active && U.k[i].h->type == type && U.k[i].h->loop == loop)
			hs[n++] = U.k[i].h;
	for (size_t i = 0; i < n; i++) {
		struct kept *k = find(hs[i]);
		if (k != NULL && k->active)
			k->cb(hs[i]);
	}
}

void simuv_run_idles(uv_loop_t *loop)
{
	run_type(loop, UV_IDLE);
}

/* ---- Work and the loop ---- */

int __wrap_uv_queue_work(uv_loop_t *loop, uv_work_t *req, uv_work_cb work, uv_after_work_cb after)
{
	req->loop = loop;
	work(req);
	U.w = grow(U.w, &U.cap_w, U.n_w + 1, sizeof(*U.w));
	U.w[U.n_w++] = (struct done_work){req, after};
	return 0;
}

void simuv_iterate(uv_loop_t *loop)
{
	/* After-callbacks in the order the work was queued; one may queue more work (run next time). */
	size_t n = U.n_w;
	for (size_t i = 0; i < n && i < U.n_w;) {
		if (U.w[i].req->loop != loop) {
			i++;
			continue;
		}
		struct done_work d = U.w[i];
		memmove(&U.w[i], &U.w[i + 1], (U.n_w - i - 1) * sizeof(*U.w));
		U.n_w--;
		n--;
		if (d.after != NULL)
			d.after(d.req, 0);
	}
	run_type(loop, UV_CHECK);
}

int __wrap_uv_run(uv_loop_t *loop, uv_run_mode mode)
{
	(void)mode;
	simuv_iterate(loop);
	return __real_uv_run(loop, UV_RUN_NOWAIT);
}

void simuv_forget(uv_loop_t *loop)
{
	for (size_t i = 0; i < U.n;)
		if (U.k[i].h->loop == loop)
			U.k[i] = U.k[--U.n];
		else
			i++;
	for (size_t i = 0; i < U.n_w;)
		if (U.w[i].req->loop == loop) {
			memmove(&U.w[i], &U.w[i + 1], (U.n_w - i - 1) * sizeof(*U.w));
			U.n_w--;
		} else {
			i++;
		}
}
