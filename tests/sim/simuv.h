/*
 * simuv — virtual time and a hand-driven event loop for whole galgod nodes in one process.
 *
 * The seam is the link: a simulation program is linked with `--wrap` for the functions through which the
 * node's code (node/, partition/, raft/: static libraries) reaches time, timers, the loop and randomness
 * (the list is SIMUV_WRAPS in CMakeLists.txt). galgod links none of this; the node's code is unchanged.
 *
 *   uv_hrtime, uv_now, uv_update_time, clock_gettime(CLOCK_REALTIME)   the virtual clock (simuv_set_now);
 *                                          the wall clock is 2023-11-14T22:13:20Z plus the virtual time
 *   uv_timer_start/stop/get_due_in      timers kept here: the simulation fires the earliest one
 *                                          (simuv_next_due, simuv_fire_next) when it is the next event
 *   uv_idle_start/stop, uv_check_start  kept here; run by simuv_run_idles and simuv_iterate
 *   uv_is_active, uv_close              answer for (and forget) the handles kept here, else libuv's
 *   uv_queue_work                       the work runs at once on the loop thread; its after-callback runs
 *                                          at the loop's next simuv_iterate (no thread: deterministic)
 *   uv_run                              one simuv_iterate, then libuv's own run without waiting (closes)
 *   RAND_bytes                          a seeded generator (simuv_seed)
 *
 * Every kept handle belongs to the loop it was initialized on; a simulation gives each node its own
 * uv_loop_t and drives them all from one thread.
 */
#ifndef GALGO_SIMUV_H
#define GALGO_SIMUV_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Starts over at time 0 with nothing kept (a new run; every loop of the previous one is gone). */
void simuv_reset(void);
/* The virtual time in ms (never goes back). */
void simuv_set_now(uint64_t ms);
uint64_t simuv_now(void);
/* Seeds RAND_bytes. */
void simuv_seed(uint64_t seed);

/* Due time of the earliest active timer of any loop (UINT64_MAX: none). */
uint64_t simuv_next_due(void);
/* Fires the earliest active timer (due at or before now) and returns its loop, or NULL when none is due. */
uv_loop_t *simuv_fire_next(void);

/* Whether an idle handle of the loop is active (its callbacks wait for simuv_run_idles). */
bool simuv_idle_active(uv_loop_t *loop);
/* Runs the loop's active idle handles once. */
void simuv_run_idles(uv_loop_t *loop);
/* One loop iteration's tail: completed work's after-callbacks, then the check handles. */
void simuv_iterate(uv_loop_t *loop);
/* Forgets every handle and queued completion of a loop (a node stopped: its handles were closed). */
void simuv_forget(uv_loop_t *loop);

#endif /* GALGO_SIMUV_H */
