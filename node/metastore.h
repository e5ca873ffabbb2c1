/*
 * metastore — persistence of the metadata state machine (node/meta.h): a log of the commands that
 * applied, plus periodic snapshots of the whole state so that the log can be cut.
 *
 * The log is a partition log (partition/plog.h) in <dir>/log with the fsync durability policy: every
 * command that applied is appended as one RECORD_COMMAND record (payload: the command's encoding,
 * node/metarec.h) with the next Raft index and term 1. Other record types (BARRIER) carry no command
 * and are skipped by replay. The log never holds a command that failed to apply.
 *
 * Opening loads the newest valid snapshot (see below), then replays with meta_apply every command
 * record after the snapshot's index. A record that fails its checks, fails to decode or fails to apply
 * is damage (-EBADMSG), as is a log that starts after the snapshot's index + 1 (commands are missing).
 * A log that ends before the snapshot's index (its tail was not yet durable when the snapshot was, and
 * the power went) is padded with BARRIER records up to that index, so the next command gets the index
 * after the snapshot's.
 *
 * Snapshot file (<dir>/snapshot; a new one is written to <dir>/snapshot.tmp, fdatasynced, renamed over
 * <dir>/snapshot, and the directory synced). Little-endian:
 *
 *   off size field
 *     0    4 magic      0x534d4c47 (bytes "GLMS")
 *     4    4 version    1
 *     8    8 index      the last log index whose command the snapshot includes
 *    16    8 length     bytes of the body (the file is exactly 32 + length bytes)
 *    24    8 checksum   XXH3-64 of the body with, as seed, XXH3-64 of header bytes 0..24
 *    32    . body       the state (metarec_snapshot_encode)
 *
 * At open both <dir>/snapshot and <dir>/snapshot.tmp are considered: the valid one (magic, version,
 * length and checksum) with the higher index wins (a valid snapshot.tmp is a snapshot whose rename the
 * power cut off). Once a snapshot is durable the log drops its segments wholly at or below the
 * snapshot's index (a log segment is 4 MiB by default).
 *
 * A snapshot is written after every snapshot_every appended commands (default 10000), synchronously on
 * the loop inside metastore_append; a failed snapshot is only logged (the log still holds every
 * command) and is tried again after as many commands.
 *
 * Threading: a metastore belongs to the loop of its flusher, as its plog does.
 */
#ifndef GALGO_METASTORE_H
#define GALGO_METASTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "node/meta.h"
#include "partition/flusher.h"
#include "partition/pio.h"

#define METASTORE_SNAPSHOT_MAGIC 0x534d4c47u
#define METASTORE_SNAPSHOT_VERSION 1
#define METASTORE_SNAPSHOT_HEADER 32
#define METASTORE_SEGMENT_SIZE (4u << 20)
#define METASTORE_SNAPSHOT_EVERY 10000

struct metastore;

struct metastore_opts {
	uint64_t segment_size;   /* log segment size (default METASTORE_SEGMENT_SIZE) */
	uint64_t snapshot_every; /* commands between snapshots (default METASTORE_SNAPSHOT_EVERY; 0 = never) */
	/* Where the log says what it repaired or found (plog_opts.log; default glog_sink, tag "metastore"). */
	void (*log)(void *ud, int level, const char *msg);
	void *log_ud;
};

void metastore_opts_default(struct metastore_opts *o);

/*
 * Opens (creating if missing) the store in `dir` and recovers the state as described above. On success
 * *state is the recovered state (meta_free it after metastore_close) and *out the store. The caller
 * changes the state only with meta_apply, and appends every command that applied. Returns 0, -EBADMSG
 * for damage, or another negative errno.
 */
int metastore_open(struct pio *pio, struct flusher *fl, const char *dir, struct meta **state,
		   struct metastore **out);

/* The same with options (NULL: the defaults). */
int metastore_open_opts(struct pio *pio, struct flusher *fl, const char *dir, const struct metastore_opts *o,
			struct meta **state, struct metastore **out);

/*
 * Appends a command that the caller has just applied to the state: it becomes the next record, and
 * cb(arg, status) runs on the loop once it is durable (status 0) or failed to become so (a negative
 * errno). Many appends share one fdatasync. Returns 0, or an error and then cb is not called. Any error,
 * here or in a callback, leaves the store failed (the state holds a command the log may not): every
 * later append fails with -EIO, and the caller treats that as fatal.
 */
int metastore_append(struct metastore *ms, const struct meta_cmd *c, void (*cb)(void *arg, int status),
		     void *arg);

/* Sets the number of commands between snapshots (0: never); the count so far is kept. */
void metastore_set_snapshot_every(struct metastore *ms, uint64_t n);

/* Writes a snapshot of the state now and cuts the log below it. Returns 0 or a negative errno. */
int metastore_snapshot(struct metastore *ms);

/*
 * Flushes and closes the log (pending callbacks run first) and frees the store, not the state. Returns
 * 0, the final flush's error, or -EIO if the store had failed.
 */
int metastore_close(struct metastore *ms);

uint64_t metastore_last_index(const struct metastore *ms);     /* index of the last record appended */
uint64_t metastore_snapshot_index(const struct metastore *ms); /* index of the newest snapshot (0: none) */
uint64_t metastore_first_index(const struct metastore *ms);    /* first index the log still holds */
bool metastore_failed(const struct metastore *ms);

#endif /* GALGO_METASTORE_H */
