/*
 * zipw — a small in-memory ZIP writer (the subset GetSnapshotFile needs; srv_snapshot.c).
 *
 * Bytes written (PKWARE APPNOTE 6.3, all integers little-endian, no ZIP64, no encryption, no data
 * descriptors, no extra fields, no comments):
 *
 *   per entry, a local file header (30 bytes) and the entry's data:
 *     u32 0x04034b50  u16 version needed (20)  u16 flags (0x0800: the name is UTF-8)
 *     u16 method (0 stored, 8 deflated: raw RFC 1951, zlib windowBits -15)  u16 DOS time  u16 DOS date
 *     u32 CRC-32 of the uncompressed data  u32 compressed size  u32 uncompressed size
 *     u16 name length  u16 extra length (0)  name bytes  then the (compressed) data
 *   then the central directory, one record (46 bytes + name) per entry, in the same order:
 *     u32 0x02014b50  u16 version made by (0x0314: Unix, 2.0)  u16 version needed (20)  u16 flags
 *     u16 method  u16 time  u16 date  u32 CRC-32  u32 compressed  u32 uncompressed  u16 name length
 *     u16 extra (0)  u16 comment (0)  u16 disk (0)  u16 internal attributes (0)
 *     u32 external attributes (0100644 << 16: a regular file, rw-r--r--)  u32 offset of the local header
 *   and the end of central directory record (22 bytes):
 *     u32 0x06054b50  u16 disk (0)  u16 disk of the directory (0)  u16 entries here  u16 entries
 *     u32 directory size  u32 directory offset  u16 comment length (0)
 *
 * The archive is bounded by `limit` (below 4 GiB, so no field needs ZIP64); entries by ZIPW_MAX_ENTRIES.
 * Times are UTC. Nothing here touches the loop: zipw runs on any thread.
 */
#ifndef GALGO_ZIPW_H
#define GALGO_ZIPW_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proto/wire.h"

#define ZIPW_STORED 0
#define ZIPW_DEFLATED 8
#define ZIPW_MAX_ENTRIES 64
#define ZIPW_NAME_MAX 255

struct zipw_entry {
	char name[ZIPW_NAME_MAX + 1];
	uint16_t method, time, date;
	uint32_t crc, csize, usize, offset;
};

struct zipw {
	struct wire_buf b;   /* the archive so far */
	size_t limit;        /* its maximum size */
	uint16_t method;
	int err;             /* the first error: -ENOMEM, -EFBIG (past limit), -EINVAL; later adds do nothing */
	size_t n;
	size_t cd_bytes;     /* the central directory the entries so far need */
	struct zipw_entry e[ZIPW_MAX_ENTRIES];
};

/* Starts an empty archive whose entries use `method` (ZIPW_STORED or ZIPW_DEFLATED). */
void zipw_init(struct zipw *z, uint16_t method, size_t limit);

/* Appends an entry (name: 1..ZIPW_NAME_MAX bytes, no NUL) dated `mtime`. Returns 0 or the recorded error. */
int zipw_add(struct zipw *z, const char *name, const void *data, size_t len, time_t mtime);

/*
 * Writes the central directory and the end record, and hands the archive over (*out, free() it).
 * Returns 0, or the first error (nothing handed over; the writer is freed either way).
 */
int zipw_finish(struct zipw *z, uint8_t **out, size_t *len);

/* Frees an archive that will not be finished. */
void zipw_free(struct zipw *z);

/* CRC-32 (ISO-HDLC, the one of ZIP and zlib) of n bytes, continuing from crc (0 to start). */
uint32_t zipw_crc32(uint32_t crc, const void *p, size_t n);

#endif /* GALGO_ZIPW_H */
