/*
 * plog — the log of one partition: an ordered sequence of records (partition/record.h) kept in segment
 * files (partition/segment.h), which is at once the partition's message log and its Raft log.
 *
 * Positions. Every record has a Raft index (consecutive, starting at the log's first index) and a
 * base_offset; MESSAGES records hold message_count messages at offsets base_offset .. +count-1, other
 * records hold none. Offsets are dense: each MESSAGES record starts where the previous one ended.
 *
 * Appends. plog_append writes the record to the active segment at once (into the page cache; it never
 * waits for a flush) and returns; the request's callback fires later, on the loop, when the record is as
 * durable as the partition's policy asks:
 *   PLOG_DURABILITY_FSYNC     after an fdatasync that covers it (group commit via the flusher);
 *   PLOG_DURABILITY_INTERVAL  once written; an fdatasync follows within interval_ms;
 *   PLOG_DURABILITY_NONE      once written; the OS flushes when it likes (and plog at seal and close).
 * Callbacks fire in append order. An fdatasync failure fails every pending append with its error and puts
 * the log in the failed state: appends are refused with -EIO until the partition is reopened (after a
 * failed fsync the page cache can no longer be trusted to reach the disk), reads keep working.
 * A write that fails (EIO, ENOSPC) fails that append at once (the partial record is cut off again); the
 * log stays usable.
 *
 * Reads return the stored bytes as a list of pieces (struct plog_slice), each either a range of a
 * segment file or a small buffer (the rewritten header of a batch sliced at the start or end of the
 * range), so a transport can send them with sendfile and copy nothing through user space. A slice holds a
 * reference on the segments it names until plog_slice_release: retention may delete the files meanwhile
 * and the bytes stay readable through the open handles.
 *
 * Recovery (plog_open): the segment directory is listed; each segment's index files are checked and
 * rebuilt from the segment where missing or damaged; records past the recovery point (a lower bound of
 * what was durable, kept in `recovery.meta`) are verified by checksum and a torn tail is cut (records
 * below it only have their envelopes checked, unless opts.verify_all); a record that fails its checks
 * below the recovery point, or valid records after a damaged one, are damage in the middle of the log:
 * plog_open fails with -EBADMSG, changes nothing, and says where in the report.
 *
 * Threading: a plog belongs to the loop of its flusher and is used only on that loop.
 *
 * The layout of the partition directory:
 *   <dir>/<first_index, 20 digits>.log   segment data (format in segment.h)
 *   <dir>/<first_index, 20 digits>.oix   offset index of that segment
 *   <dir>/<first_index, 20 digits>.tix   time index of that segment
 *   <dir>/recovery.meta                  recovery point (format in plog.c)
 */
#ifndef GALGO_PLOG_H
#define GALGO_PLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "partition/flusher.h"
#include "partition/pio.h"
#include "partition/record.h"

struct plog;
struct segment;

enum plog_durability {
	PLOG_DURABILITY_FSYNC = 0,
	PLOG_DURABILITY_INTERVAL = 1,
	PLOG_DURABILITY_NONE = 2,
};

struct plog_opts {
	uint64_t segment_size;      /* roll to a new segment past this many bytes (default 1 GiB, max 4 GiB-1) */
	uint32_t index_interval;    /* bytes between sparse index entries (default 4096) */
	enum plog_durability durability;
	uint32_t interval_ms;       /* for PLOG_DURABILITY_INTERVAL (default 1000) */
	uint64_t first_index;       /* Raft index of the first record of a new log (default 1) */
	uint64_t first_offset;      /* offset of the first message of a new log (default 0) */
	/*
	 * Verify every record's checksums at open, not only those past the recovery point (slower: reads the
	 * whole log). Without it, damage to records below the recovery point is not looked for at open.
	 */
	bool verify_all;
	/* Clock for stamping, µs since the epoch (default: CLOCK_REALTIME). */
	uint64_t (*clock_us)(void *ud);
	void *clock_ud;
	/* Where plog says what it repaired or found damaged (default: nowhere). level: 0 info, 1 warn, 2 error */
	void (*log)(void *ud, int level, const char *msg);
	void *log_ud;
};

/* What recovery found and did, for logs and tests. */
struct plog_report {
	uint32_t segments;          /* segment files found */
	uint32_t indexes_rebuilt;   /* index files written anew or extended from the segment */
	uint64_t torn_bytes_cut;    /* bytes of torn tail removed */
	uint64_t records_verified;  /* records whose checksums were verified */
	uint64_t damaged_index;     /* for -EBADMSG: Raft index (or 0) and byte position of the damage */
	uint64_t damaged_pos;
	char damaged_segment[64];
};

struct plog_append_req;
typedef void (*plog_append_cb)(struct plog_append_req *req, int status);

/* Caller-owned request; must stay valid until the callback. */
struct plog_append_req {
	void *data;
	/* Filled by plog: */
	uint64_t index;
	uint64_t base_offset;
	uint32_t message_count;
	plog_append_cb cb;
	struct plog_append_req *next;
	uint64_t end;               /* log position after this record, for the flusher */
};

/* What to append. For MESSAGES, payload is a verified, stamped Iggy batch. */
struct plog_entry {
	uint8_t type;               /* enum record_type */
	uint64_t index;             /* must be plog_last_index() + 1 */
	uint64_t term;
	const void *payload;
	uint32_t length;
};

/* A piece of a read: a file range (file != NULL) or a buffer owned by the slice (mem). */
struct plog_piece {
	struct pio_file *file;
	uint64_t file_off;
	const uint8_t *mem;
	size_t len;
};

struct plog_slice {
	struct plog_piece *pieces;
	size_t n_pieces, cap_pieces;
	uint64_t bytes;             /* sum of the pieces' lengths */
	uint32_t messages;          /* messages in the slice */
	uint32_t records;           /* Iggy batches (records) in the slice */
	uint64_t first_offset, last_offset; /* valid when messages > 0 */
	/* Private: */
	struct segment **segs;      /* referenced segments */
	size_t n_segs, cap_segs;
	uint8_t **bufs;             /* owned buffers */
	size_t n_bufs, cap_bufs;
	struct pio *pio;
};

/* Fills opts with the defaults. */
void plog_opts_default(struct plog_opts *o);

/*
 * Opens (creating if missing) the partition log in `dir`, recovering as described above. The directory is
 * created if needed. On -EBADMSG the report says where the damage is. `report` may be NULL.
 */
int plog_open(struct pio *pio, struct flusher *fl, const char *dir, const struct plog_opts *opts,
	      struct plog_report *report, struct plog **out);

/*
 * Closes the log: flushes what was written (whatever the policy), records the recovery point, completes
 * pending appends (0 if the final flush succeeded, else its error) and frees it. Runs the loop while the
 * flusher finishes a round that involves this log. Returns the flush status.
 */
int plog_close(struct plog *l);

/*
 * Appends a record (see the header comment). Returns 0 if the record was written and the callback will
 * fire, or a negative error (and the callback will not fire): -EINVAL for an index that is not
 * last_index + 1, a MESSAGES batch whose base_offset is not plog_next_offset() or whose envelope fields
 * disagree, a timestamp below the last one, or a payload too big; -EIO in the failed state; the write's
 * error.
 */
int plog_append(struct plog *l, struct plog_append_req *req, const struct plog_entry *e, plog_append_cb cb);

/*
 * Stamps a verified producer batch for appending as the next record: partition_id, base_offset =
 * plog_next_offset(), base_timestamp = max(clock, last timestamp). Recomputes its checksum.
 */
void plog_stamp(struct plog *l, uint8_t *batch, uint64_t partition_id);

/*
 * Reads messages from offset `from`, at most max_messages and (roughly) max_bytes — always at least the
 * first message found — never any message above `upto` (inclusive; pass the commit or durable offset).
 * Whole stored batches are returned as file ranges; a batch cut by from/max/upto is sliced (new header in
 * memory). An empty slice (messages 0) if nothing is there. Returns 0 or a negative errno.
 * The slice must be released with plog_slice_release, even after an error.
 */
int plog_read(struct plog *l, uint64_t from, uint32_t max_messages, uint64_t max_bytes, uint64_t upto,
	      struct plog_slice *out);

/*
 * The offset of the first message whose batch base_timestamp is ≥ ts, or plog_next_offset() if none.
 */
int plog_find_timestamp(struct plog *l, uint64_t ts, uint64_t *offset);

/*
 * Reads whole records (envelope and payload) by Raft index: from index `from` up to `to` inclusive,
 * stopping after max_bytes (at least one record). For replication and tests. *n_records says how many.
 */
int plog_read_records(struct plog *l, uint64_t from, uint64_t to, uint64_t max_bytes, struct plog_slice *out,
		      uint32_t *n_records);

/* Decodes the envelope of the record with Raft index `index`. */
int plog_entry_at(struct plog *l, uint64_t index, struct record_env *env);

/* Copies every piece of a slice into buf (which must hold slice->bytes). For tests and non-zero-copy sends. */
int plog_slice_copy(const struct plog_slice *s, uint8_t *buf);
void plog_slice_release(struct plog_slice *s);

/*
 * Removes every record with Raft index ≥ index (a log conflict). Pending appends of those records fail
 * with -ECANCELED. Offsets roll back with them. -EINVAL if index is below the first index.
 */
int plog_truncate(struct plog *l, uint64_t index);

/*
 * Retention: deletes whole segments from the start of the log, oldest first, while either the segment's
 * newest message is older than now_us - max_age_us (max_age_us 0: no age limit) or the log is bigger than
 * max_bytes (0: no size limit); never the active segment, never a segment holding an index above
 * safe_index. Returns the number of segments deleted, or a negative errno.
 */
int plog_retain(struct plog *l, uint64_t now_us, uint64_t max_age_us, uint64_t max_bytes, uint64_t safe_index);

/*
 * Deletes up to n whole segments from the start of the log (never the active one, never one holding an
 * index above safe_index). Returns the number deleted or a negative errno. (Iggy's DeleteSegments.)
 */
int plog_drop_segments(struct plog *l, uint32_t n, uint64_t safe_index);

/*
 * What plog_retain and plog_drop_segments would do, without doing it: the first Raft index the log would
 * still hold (its first index when nothing would go). A replicated log records a snapshot covering the
 * entries below it before they are deleted (raft/rgroup.h).
 */
uint64_t plog_retain_keep_from(const struct plog *l, uint64_t now_us, uint64_t max_age_us, uint64_t max_bytes,
			       uint64_t safe_index);
uint64_t plog_drop_keep_from(const struct plog *l, uint32_t n, uint64_t safe_index);

/*
 * Deletes every record. The log continues at the same next Raft index; offsets restart at next_offset.
 * Pending appends fail with -ECANCELED.
 */
int plog_purge(struct plog *l, uint64_t next_offset);

/*
 * Replaces the whole log by an empty one whose next record has Raft index first_index and offset
 * first_offset (a replica installing a snapshot from its leader: the records it fetches continue there).
 * Pending appends fail with -ECANCELED. Crash-safe: after a power loss at any point the log reopens as
 * either a prefix of the old log or the new one (possibly empty, or with no segment at all, in which case
 * plog_open starts at opts.first_index). -EINVAL for index 0; on an I/O error after the old files started
 * to go, the log is failed (see plog_failed).
 */
int plog_reset(struct plog *l, uint64_t first_index, uint64_t first_offset);

/* Removes the partition's files and directory and frees the log (deleting a partition). */
int plog_destroy(struct plog *l);

/*
 * Integrity of stored bytes. Every record is verified (envelope and payload checksums) before a read or
 * plog_read_records serves any of it, unless it is known good: written by this process, verified by
 * recovery (past the recovery point) or by an earlier read or scrub. A record that fails is fenced: reads
 * stop before it (returning what precedes it, or -EBADMSG when nothing does), it is logged once with its
 * segment, position, index and offsets, and counted (plog_damaged).
 * plog_scrub verifies about max_bytes of what is not known good yet, a segment after another, and returns
 * the bytes it verified (0 when everything is verified or fenced) or a negative errno. Run it in the
 * background so that reads rarely verify inline; plog_unverified_bytes says how much is left.
 */
int64_t plog_scrub(struct plog *l, uint64_t max_bytes);
uint64_t plog_damaged(const struct plog *l);
uint64_t plog_unverified_bytes(const struct plog *l);

uint64_t plog_first_index(const struct plog *l);    /* first Raft index held (next index if empty) */
uint64_t plog_last_index(const struct plog *l);     /* last Raft index written (first_index - 1 if empty) */
uint64_t plog_durable_index(const struct plog *l);  /* last Raft index known durable */
uint64_t plog_first_offset(const struct plog *l);   /* offset of the first message held */
uint64_t plog_next_offset(const struct plog *l);    /* offset the next message will get */
uint64_t plog_durable_next_offset(const struct plog *l); /* next_offset as of the durable index */
uint64_t plog_size(const struct plog *l);           /* bytes in all segments */
uint64_t plog_payload_bytes(const struct plog *l);  /* bytes of the stored batches alone (no headers, envelopes) */
uint32_t plog_segment_count(const struct plog *l);
uint64_t plog_last_timestamp(const struct plog *l);
bool plog_failed(const struct plog *l);

#endif /* GALGO_PLOG_H */
