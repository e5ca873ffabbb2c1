/*
 * flusher — group commit for every partition owned by one event loop.
 *
 * A partition that has written data it wants durable marks itself dirty (flusher_mark). When the loop
 * next runs the flusher's kick, every due dirty item that has no sync in flight is asked to capture what
 * it will sync (prepare, on the loop), its sync runs on libuv's thread pool (one work request per item, so
 * the fdatasyncs of many partitions proceed in parallel), and as soon as that sync finishes the item is
 * told (done, on the loop). An item marked while its sync runs goes out again right after it: so each
 * partition has at most one fdatasync in flight, every fdatasync covers every batch written before it
 * (group commit), the fdatasync count per second is bounded by the disk's flush latency rather than by
 * the append rate, and a slow file never holds back the others. (An earlier version waited for a whole
 * round of items before reporting any; with 64 partitions that halved throughput.)
 *
 * Due time: an item marked with delay 0 is due at once (the `fsync` durability policy); with a delay of
 * D ms it is due D ms after it was first marked (the `interval` policy). Under the `none` policy a
 * partition marks itself only when a segment is sealed or files are created or removed; close flushes
 * synchronously.
 *
 * flusher_defer queues an item's `ready` callback to run on the loop soon (before the loop next sleeps),
 * for completions that need no flush.
 *
 * Ownership: one flusher per loop; items belong to objects owned by the same loop. Nothing here takes a
 * lock: prepare and done run on the loop thread, sync only touches what prepare captured.
 *
 * Inline mode (tests): the syncs run on the loop thread, one after another, in item order, from the
 * kick. With a simulated disk this makes whole workloads deterministic.
 */
#ifndef GALGO_FLUSHER_H
#define GALGO_FLUSHER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct flusher;
struct flusher_item;

struct flusher_item_ops {
	/* On the loop, before its sync: capture what sync will make durable. */
	void (*prepare)(struct flusher_item *it);
	/* On a worker thread (or the loop in inline mode): make it durable. Returns 0 or a negative errno. */
	int (*sync)(struct flusher_item *it);
	/* On the loop, once its sync finished: report the outcome. */
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
	uint64_t rounds;     /* batches of syncs started (a kick that started at least one) */
	uint64_t syncs;      /* item syncs run */
	uint64_t errors;     /* item syncs that failed */
};

/* Creates a flusher on a loop. inline_mode: see above. */
int flusher_new(uv_loop_t *loop, bool inline_mode, struct flusher **out);

/*
 * Stops the flusher. Waits (by running the loop) for syncs in flight to finish; items still dirty are
 * not synced (their owners flush on close). Frees it.
 */
void flusher_close(struct flusher *fl);

/* Marks an item dirty, due in delay_ms (0: at once). A dirty item keeps its earlier due time. */
void flusher_mark(struct flusher *fl, struct flusher_item *it, uint32_t delay_ms);

/* Queues it->ops->ready to run on the loop soon. */
void flusher_defer(struct flusher *fl, struct flusher_item *it);

/*
 * Removes an item from every queue. If its sync is in flight, its done is still called, so owners must
 * call flusher_forget and then wait for flusher_busy(it) to become false. Returns true if a sync of the
 * item is in flight.
 */
bool flusher_forget(struct flusher *fl, struct flusher_item *it);
bool flusher_busy(const struct flusher_item *it);

/* Runs the loop until no sync is in flight and no item is due (tests, shutdown). */
void flusher_drain(struct flusher *fl);

void flusher_stats(const struct flusher *fl, struct flusher_stats *out);

#endif /* GALGO_FLUSHER_H */
