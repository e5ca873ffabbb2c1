/*
 * plog_int — what the files of one partition log share (plog.c: open, recovery, appends and group
 * commit, truncation, retention; plog_read.c: reads, slices, lookups, the scrubber). Not for use outside
 * partition/plog*.c: plog.h is the interface.
 */
#ifndef GALGO_PARTITION_PLOG_INT_H
#define GALGO_PARTITION_PLOG_INT_H

#include "partition/plog.h"
#include "partition/segment.h"

#define RP_EVERY_ROUNDS 32
#define MAX_LOADED_INDEXES 4

struct snap_seg {
	struct segment *seg;
	bool sync_indexes; /* sealed when captured: its index files are synced and closed too */
};

struct plog {
	struct pio *pio;
	struct flusher *fl;
	char *dir;
	struct plog_opts o;
	struct segment **segs; /* in log order; the last one is active */
	size_t n_segs, cap_segs;
	uint64_t last_ts;
	uint64_t durable_index, durable_next_offset;
	bool failed;
	/* Group commit. */
	struct flusher_item fitem;
	struct segment **dirty; /* segments with unsynced writes (each holds a reference) */
	size_t n_dirty, cap_dirty;
	bool dir_dirty;
	uint64_t epoch; /* bumped by anything that removes records */
	struct {
		struct snap_seg *segs;
		size_t n, cap;
		bool dir;
		uint64_t index, next_offset, epoch;
	} snap;
	struct plog_append_req *pend_head, *pend_tail;
	/* Recovery point. */
	struct pio_file *meta;
	uint64_t rp_index, rp_seq;
	uint32_t rounds_since_rp;
	uint64_t idx_clock;
	/* Integrity: damaged records found since open (each fenced once), the scrubber's position. */
	uint64_t damaged;
	size_t scrub_seg;
};

/* Shared helpers (plog.c unless said). */
void plog__logf(struct plog *l, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
struct segment *plog__active(const struct plog *l); /* the last segment, which takes appends */
bool plog__seg_empty(const struct segment *s);
int plog__grow(void **arr, size_t *cap, size_t need, size_t elem);
int plog__ensure_index(struct plog *l, struct segment *s); /* loads a segment's indexes (bounded count) */
size_t plog__seg_for_index(const struct plog *l, uint64_t index); /* plog_read.c */

#endif
