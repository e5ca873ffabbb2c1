/*
 * segment — one segment of a partition log: a data file of records and its two sparse index files.
 *
 * All integers are little-endian; XXH3 is XXH3_64bits (seed 0); XXH3/32 is its low 32 bits.
 *
 * Data file `<first_index as 20 decimal digits>.log`:
 *
 *   Header, 64 bytes:
 *     off size field
 *       0    8 magic          the bytes "GALGOSEG"
 *       8    4 version        1
 *      12    4 reserved       0
 *      16    8 first_index    Raft index of the first record this segment holds (or will hold)
 *      24    8 base_offset    offset of the first message it holds (or will hold)
 *      32    8 created_us     creation time, µs since the epoch (informative)
 *      40   16 reserved       0
 *      56    8 header_check   XXH3 of bytes 0..56
 *
 *   Then records (partition/record.h) back to back from byte 64. Record k (from 0) has Raft index
 *   first_index + k; its base_offset continues the previous record's offsets (base_offset + message_count).
 *   A segment never exceeds 4 GiB - 1 bytes, so positions fit in u32.
 *
 * Offset index `<first_index>.oix`, 16-byte entries:
 *     0    4 rel_offset       record base_offset - segment base_offset
 *     4    4 position         byte position of the record's envelope in the data file
 *     8    4 rel_index        record index - segment first_index
 *    12    4 check            XXH3/32 of entry bytes 0..12
 *
 * Time index `<first_index>.tix`, 16-byte entries:
 *     0    8 timestamp        the record's envelope timestamp (base_timestamp of its batch)
 *     8    4 position         as above
 *    12    4 check            XXH3/32 of entry bytes 0..12
 *
 * Both index files have an entry for the same records: the segment's first record, and every record that
 * starts at least index_interval bytes after the record of the previous entry. Entries are in position
 * order, and offsets, indexes and timestamps never decrease along them. Index files are written as records
 * are appended but made durable only when the segment is sealed (or the log closed); they are always
 * re-derivable from the data file, and recovery rewrites them when they are missing, damaged, disagree
 * with each other or with the data.
 */
#ifndef GALGO_SEGMENT_H
#define GALGO_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "partition/pio.h"
#include "partition/record.h"

#define SEGMENT_HEADER_SIZE 64
#define SEGMENT_INDEX_ENTRY_SIZE 16
#define SEGMENT_MAX_SIZE 0xffffffffull

/* One decoded index entry (an .oix entry and the .tix entry of the same record). */
struct seg_ientry {
	uint32_t rel_offset;
	uint32_t position;
	uint32_t rel_index;
	uint64_t timestamp;
};

struct segment {
	struct pio *pio;
	char *base;                 /* path without extension */
	uint64_t first_index;
	uint64_t base_offset;
	uint64_t created_us;
	uint64_t last_index;        /* first_index - 1 when empty */
	uint64_t next_offset;       /* offset after its last message */
	uint64_t first_ts, last_ts; /* timestamps of its first and last record (0 if empty) */
	uint64_t size;              /* data file bytes, header included */
	uint32_t index_interval;
	struct pio_file *data;
	struct pio_file *oix, *tix; /* open while the segment is written to (until sealed and synced) */
	struct seg_ientry *idx;     /* loaded index (always for the active segment) */
	size_t n_idx, cap_idx;
	bool idx_loaded;
	uint64_t idx_used;          /* LRU stamp */
	int refs;
	bool sealed;                /* no more appends */
	bool unlinked;              /* files removed; freed when refs drop to 0 */
	/*
	 * What of the data file is known good: every record wholly in [SEGMENT_HEADER_SIZE, verified_to) or
	 * at or after vtail passed its full checks (envelope and payload checksums) since the segment was
	 * opened or was written by this process. Records written here are in the tail; recovery verifies
	 * those past the recovery point; the rest is verified by reads (segment_verify_record) and by the
	 * scrubber (segment_scrub), which move verified_to up until it meets vtail. [bad_at, bad_end) is the
	 * first record found damaged (bad_at 0: none; bad_end 0: its envelope is damaged too, so where it ends
	 * is unknown and the fence reaches the end of the file): reads of it are refused (fenced), and the
	 * scrubber stops there. Records after it are still verified one by one when read.
	 */
	uint64_t verified_to, vtail, bad_at, bad_end;
};

/* What scanning a segment's records found. */
struct seg_scan {
	uint64_t records_verified;  /* records whose payload was verified */
	bool index_rebuilt;         /* index entries were rewritten or added */
	bool bad;                   /* an invalid record stopped the scan */
	uint64_t bad_pos;           /* its position */
};

/* Builds "<dir>/<first_index:020>" (malloc'd). */
char *segment_base_path(const char *dir, uint64_t first_index);

/* Parses a data file name "<20 digits>.log"; returns true and the index if it is one. */
bool segment_parse_name(const char *name, uint64_t *first_index);

/* Creates a new, empty segment (data file with header, empty index files). */
int segment_create(struct pio *pio, const char *dir, uint64_t first_index, uint64_t base_offset,
		   uint64_t created_us, uint32_t index_interval, struct segment **out);

/*
 * Opens an existing segment and recovers it: validates the header (-EBADMSG if it is invalid or too
 * short, -ENOENT if the file is missing), loads the index files (keeping their valid prefix), then scans
 * the records from the last index entry whose record index is ≤ trusted_index (from the start if none).
 * Records with index > trusted_index are verified by checksum; below, only their envelopes. The scan stops
 * at the end of the file or at the first invalid record (scan->bad, scan->bad_pos; the segment then holds
 * only the records before it). Index entries are added for scanned records and the index files rewritten
 * if they differed. Leaves the index loaded.
 */
int segment_open(struct pio *pio, const char *dir, uint64_t first_index, uint32_t index_interval,
		 uint64_t trusted_index, struct segment **out, struct seg_scan *scan);

/*
 * Looks for any valid record at or after byte `from` whose index is > after_index (envelope and payload
 * checks). Used to tell a torn tail (nothing valid follows) from damage in the middle. Sets *found.
 */
int segment_valid_after(struct segment *s, uint64_t from, uint64_t after_index, bool *found);

/* Whether the record at pos is fenced as damaged (see struct segment). */
static inline bool segment_fenced(const struct segment *s, uint64_t pos)
{
	return s->bad_at != 0 && pos >= s->bad_at && (s->bad_end == 0 || pos < s->bad_end);
}

/* Records [pos, end) as damaged, unless a damaged record before it is fenced already. */
static inline void segment_fence(struct segment *s, uint64_t pos, uint64_t end)
{
	if (s->bad_at == 0 || pos < s->bad_at) {
		s->bad_at = pos;
		s->bad_end = end;
	}
}

/* Whether the record at [pos, end) is known good (see struct segment). */
static inline bool segment_verified(const struct segment *s, uint64_t pos, uint64_t end)
{
	return end <= s->verified_to || pos >= s->vtail;
}

/*
 * Verifies the record at byte pos (a record boundary) whose envelope is *e (as segment_read_env decoded
 * it): its envelope again and its payload checksums. 0 when good (verified_to moves past it when it
 * starts there); -EBADMSG when damaged (bad_at is set); another negative errno for a read error.
 */
int segment_verify_record(struct segment *s, uint64_t pos, const struct record_env *e);

/*
 * The scrubber's step: verifies records from verified_to on, at most about max_bytes of them. Returns the
 * bytes verified (0 when the segment is wholly verified or fenced), or -EBADMSG when it found a damaged
 * record (bad_at is set), or another negative errno.
 */
int64_t segment_scrub(struct segment *s, uint64_t max_bytes);

/* Cuts the data file (and index entries) at byte position pos, a record boundary. */
int segment_cut(struct segment *s, uint64_t pos);

/*
 * Appends a record (encoded envelope + payload) at the end of the data file and indexes it. On a write
 * error the data file is cut back and the error returned (-EIO if even that failed: the caller must then
 * stop writing to this segment).
 */
int segment_append(struct segment *s, const uint8_t env[RECORD_ENVELOPE_SIZE], const struct record_env *e,
		   const void *payload);

/* Loads the index files into memory (if not loaded). */
int segment_index_load(struct segment *s);
void segment_index_unload(struct segment *s);

/*
 * Finds the position from which to scan for a record: the greatest index entry whose offset (or index,
 * or timestamp) is ≤ (<, for timestamps) the key; SEGMENT_HEADER_SIZE if none. Needs the index loaded.
 */
uint64_t segment_seek_offset(const struct segment *s, uint64_t offset);
uint64_t segment_seek_index(const struct segment *s, uint64_t index);
uint64_t segment_seek_time_before(const struct segment *s, uint64_t ts);

/* Reads and decodes the envelope at pos. -ENODATA at the end of the data, -EBADMSG if invalid. */
int segment_read_env(struct segment *s, uint64_t pos, struct record_env *e);

/* Finds the position of the record with Raft index `index` (which the segment must hold). */
int segment_find_index(struct segment *s, uint64_t index, uint64_t *pos, struct record_env *e);

/* Writes the whole loaded index to the index files (after a rebuild or cut). */
int segment_index_write_all(struct segment *s);

/* Reference counting: segment_unref frees (closing files) when the count drops to 0. */
void segment_ref(struct segment *s);
void segment_unref(struct segment *s);

/* Removes the segment's files (the handles stay open until the last unref). */
int segment_unlink(struct segment *s);

#endif /* GALGO_SEGMENT_H */
