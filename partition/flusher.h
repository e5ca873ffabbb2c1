/*
 * flusher — group commit for every partition owned by one event loop.
 *
 * A partition that has written data it wants durable marks itself dirty (flusher_mark). The flusher runs
 * flush rounds: a round takes every dirty item that is due, asks each to capture what it will sync
 * (prepare, on the loop), runs all their syncs (sync, on libuv's thread pool, one work request per item so
 * several fdatasyncs proceed in parallel), and when every sync of the round is done reports to each item
 * (done, on the loop). Items marked while a round runs wait for the next round, which starts as soon as
 * the current one ends: so with N partitions appending, the fdatasync count per second is bounded by the
 * disk's flush latency, not by the append rate, and one round serves every batch written before it.
 *
 * Due time: an item marked with delay 0 is due at once (the `fsync` durability policy); with a delay of
 * D ms it is due D ms after it was first marked (the `interval` policy). Nothing is ever marked for the
 * `none` policy except at seal and close, which partitions do synchronously.
 *
 * flusher_defer queues an item's `ready` callback to run on the loop soon (before the loop next sleeps),
 * for completions that need no flush.
 *
 * Ownership: one flusher per loop; items belong to objects owned by the same loop. Nothing here takes a
 * lock: prepare and done run on the loop thread, sync only touches what prepare captured.
 *
 * Inline mode (tests): rounds run their syncs on the loop thread, one after another, in item order, from a
 * zero-delay timer. With a simulated disk this makes whole workloads deterministic.
 */
#ifndef GALGO_FLUSHER_H
#define GALGO_FLUSHER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct flusher;
struct flusher_item;

struct flusher_item_ops {
	/* On the loop, at round start: capture what sync will make durable. */
	void (*prepare)(struct flusher_item *it);
	/* On a worker thread (or the loop in inline mode): make it durable. Returns 0 or a negative errno. */
	int (*sync)(struct flusher_item *it);
	/* On the loop, after the round: report the outcome of sync. */
	void (*done)(struct flusher_item *it, int status);
	/* On the loop, for flusher_defer. */
	void (*ready)(struct flusher_item *it);
};

/* Embedded in its owner (container_of style); zero it before first use. */
struct flusher_item {
	const struct flusher_item_ops *ops;
	struct flusher *fl;
	/* Private to the flusher. */
	struct flusher_item *next_dirty, *next_ready;
	uint64_t due_ms;
	bool dirty, in_round, ready_queued;
	int status;
	uv_work_t work;
};

struct flusher_stats {
	uint64_t rounds;     /* flush rounds completed */
	uint64_t syncs;      /* item syncs run */
	uint64_t errors;     /* item syncs that failed */
};

/* Creates a flusher on a loop. inline_mode: see above. */
int flusher_new(uv_loop_t *loop, bool inline_mode, struct flusher **out);

/*
 * Stops the flusher. Waits (by running the loop) for a round in progress to finish; items still dirty
 * are not synced (their owners flush on close). Frees it.
 */
void flusher_close(struct flusher *fl);

/* Marks an item dirty, due in delay_ms (0: at once). A dirty item keeps its earlier due time. */
void flusher_mark(struct flusher *fl, struct flusher_item *it, uint32_t delay_ms);

/* Queues it->ops->ready to run on the loop soon. */
void flusher_defer(struct flusher *fl, struct flusher_item *it);

/*
 * Removes an item from every queue. If it is part of a running round, the round's done for it is still
 * called, so owners must call flusher_forget and then wait for flusher_busy(it) to become false (or close
 * after the round). Returns true if the item is in a running round.
 */
bool flusher_forget(struct flusher *fl, struct flusher_item *it);
bool flusher_busy(const struct flusher_item *it);

/* Runs the loop until no round is running and no item is due (tests, shutdown). */
void flusher_drain(struct flusher *fl);

void flusher_stats(const struct flusher *fl, struct flusher_stats *out);

#endif /* GALGO_FLUSHER_H */
