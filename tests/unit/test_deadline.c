/*
 * Tests of the rooms' one deadline mechanism (node/srv_deadline.c) on a real libuv loop: deadlines fire
 * once, in (time, registration) order, never when cancelled, and a fire callback may cancel or register
 * others. Only the fields of struct srv the mechanism owns are set up.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "node/srv_int.h"

#define N 2000

struct waiter {
	struct srv_dl dl;
	int id;
	int fired;
};

static struct srv S;
static uv_loop_t loop;
static struct waiter w[N];
static int order[N], n_order;
static int victim = -1; /* a waiter the next fire cancels */

static void setup(void)
{
	memset(&S, 0, sizeof(S));
	memset(w, 0, sizeof(w));
	n_order = 0;
	victim = -1;
	cr_assert_eq(uv_loop_init(&loop), 0);
	uv_timer_init(&loop, &S.dl_timer);
	S.dl_timer.data = &S;
}

static void teardown(void)
{
	srv__dl_free(&S);
	uv_close((uv_handle_t *)&S.dl_timer, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
}

TestSuite(deadline, .init = setup, .fini = teardown, .timeout = 30);

static void fire(struct srv *s, struct srv_dl *d)
{
	struct waiter *x = SRV_DL_OWNER(d, struct waiter, dl);
	cr_assert(!srv__dl_pending(d), "a deadline leaves the heap before it fires");
	x->fired++;
	order[n_order++] = x->id;
	if (victim >= 0) {
		srv__dl_cancel(s, &w[victim].dl);
		victim = -1;
	}
}

static void run_until_quiet(void)
{
	uint64_t end = srv__mono_ms() + 5000;
	while (S.n_dls > 0 && srv__mono_ms() < end)
		uv_run(&loop, UV_RUN_ONCE);
}

Test(deadline, fire_once_in_time_then_registration_order_and_never_when_cancelled)
{
	uint64_t base = srv__mono_ms();
	srand(7);
	for (int i = 0; i < N; i++) {
		w[i].id = i;
		/* few distinct times, so many ties: order among equals is registration order */
		srv__dl_add(&S, &w[i].dl, base + (uint64_t)(rand() % 20), fire);
	}
	int cancelled = 0;
	for (int i = 0; i < N; i += 3) {
		srv__dl_cancel(&S, &w[i].dl);
		srv__dl_cancel(&S, &w[i].dl); /* twice is harmless */
		cancelled++;
	}
	cr_assert_eq(S.n_dls, (size_t)(N - cancelled));
	run_until_quiet();
	cr_assert_eq(n_order, N - cancelled, "fired %d of %d", n_order, N - cancelled);
	for (int i = 0; i < N; i++)
		cr_assert_eq(w[i].fired, i % 3 == 0 ? 0 : 1, "waiter %d fired %d times", i, w[i].fired);
	for (int k = 1; k < n_order; k++) {
		const struct waiter *a = &w[order[k - 1]], *b = &w[order[k]];
		cr_assert(a->dl.at < b->dl.at || (a->dl.at == b->dl.at && a->id < b->id), "%d fired before %d", a->id,
			  b->id);
	}
	cr_assert(srv__mono_ms() >= base + 19, "deadlines fired early");
}

Test(deadline, a_fire_may_cancel_another_and_a_new_earliest_deadline_rearms_the_timer)
{
	uint64_t now = srv__mono_ms();
	w[0].id = 0;
	w[1].id = 1;
	w[2].id = 2;
	srv__dl_add(&S, &w[0].dl, now + 2000, fire);
	srv__dl_add(&S, &w[1].dl, now + 30, fire); /* earlier than the armed one: the timer must follow */
	srv__dl_add(&S, &w[2].dl, now + 60, fire);
	victim = 2; /* w[1]'s fire cancels w[2] */
	uint64_t end = now + 1000;
	while (w[1].fired == 0 && srv__mono_ms() < end)
		uv_run(&loop, UV_RUN_ONCE);
	cr_assert_eq(w[1].fired, 1);
	cr_assert_lt(srv__mono_ms(), now + 1000, "the earlier deadline waited for the later one");
	cr_assert(!srv__dl_pending(&w[2].dl));
	cr_assert(srv__dl_pending(&w[0].dl));
	srv__dl_cancel(&S, &w[0].dl);
	cr_assert_eq(S.n_dls, 0);
	cr_assert_eq(w[0].fired + w[2].fired, 0);
}
