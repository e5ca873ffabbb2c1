/*
 * rsnap — a group's snapshot file. See rsnap.h for the behaviour.
 *
 * All integers are little-endian; XXH3 is XXH3_64bits() of libxxhash (seed 0).
 *
 *     off size field
 *       0    4 magic        0x4e534c47 (bytes "GLSN")
 *       4    4 version      1
 *       8    8 group        Raft group id
 *      16    8 index        last index covered by the snapshot
 *      24    8 term         its term
 *      32    8 conf_index   index of the configuration entry in force at `index`
 *      40    8 keep_from    first index the log keeps (≤ index + 1)
 *      48    8 next_offset  the log's offset after `index`
 *      56    4 conf_len     bytes of configuration
 *      60    4 data_len     bytes of owner data (≤ 64 MiB)
 *      64    . conf         raft_configuration_encode() output (libraft's format)
 *       .    . data         the owner's bytes
 *       .    8 check        XXH3 of every byte before it
 *
 * The file is exactly 72 + conf_len + data_len bytes. The temporary file is never read.
 */
#include "raft/rsnap.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <xxhash.h>

#include "partition/record.h"

#define MAGIC 0x4e534c47u
#define VERSION 1
#define HDR 64

static int paths(const char *dir, char *file, char *tmp, size_t cap)
{
	int a = snprintf(file, cap, "%s/%s", dir, RSNAP_FILE);
	int b = snprintf(tmp, cap, "%s/%s.tmp", dir, RSNAP_FILE);
	return a < 0 || b < 0 || (size_t)a >= cap || (size_t)b >= cap ? -ENAMETOOLONG : 0;
}

int rsnap_write(struct pio *pio, const char *dir, const struct rsnap *s)
{
	if (s->data_len > RSNAP_MAX_DATA || s->keep_from > s->index + 1 || s->index == 0 || s->term == 0)
		return -EINVAL;
	/* A group's snapshot names its group (rsnap_read checks it) and holds what its lengths say. */
	assert(s->group != 0 && (s->conf_len == 0 || s->conf != NULL) && (s->data_len == 0 || s->data != NULL));
	char file[4096], tmp[4096];
	int rv = paths(dir, file, tmp, sizeof(file));
	if (rv != 0)
		return rv;
	uint8_t h[HDR];
	record_put32(h, MAGIC);
	record_put32(h + 4, VERSION);
	record_put64(h + 8, s->group);
	record_put64(h + 16, s->index);
	record_put64(h + 24, s->term);
	record_put64(h + 32, s->conf_index);
	record_put64(h + 40, s->keep_from);
	record_put64(h + 48, s->next_offset);
	record_put32(h + 56, s->conf_len);
	record_put32(h + 60, s->data_len);
	XXH3_state_t *st = XXH3_createState();
	if (st == NULL)
		return -ENOMEM;
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, h, HDR);
	XXH3_64bits_update(st, s->conf, s->conf_len);
	XXH3_64bits_update(st, s->data, s->data_len);
	uint8_t check[8];
	record_put64(check, XXH3_64bits_digest(st));
	XXH3_freeState(st);
	struct iovec iov[4] = {{h, HDR}, {s->conf, s->conf_len}, {s->data, s->data_len}, {check, 8}};
	rv = pio_mkdir(pio, dir);
	struct pio_file *f = NULL;
	if (rv == 0)
		rv = pio_open(pio, tmp, PIO_CREATE | PIO_RDWR, &f);
	if (rv != 0)
		return rv;
	rv = pio_truncate(pio, f, 0);
	if (rv == 0)
		rv = pio_pwritev(pio, f, iov, 4, 0);
	if (rv == 0)
		rv = pio_datasync(pio, f);
	pio_close(pio, f);
	if (rv == 0)
		rv = pio_rename(pio, tmp, file);
	if (rv == 0)
		rv = pio_syncdir(pio, dir);
	return rv;
}

int rsnap_read(struct pio *pio, const char *dir, uint64_t group, struct rsnap *out)
{
	memset(out, 0, sizeof(*out));
	char file[4096], tmp[4096];
	int rv = paths(dir, file, tmp, sizeof(file));
	if (rv != 0)
		return rv;
	struct pio_file *f;
	rv = pio_open(pio, file, PIO_RDONLY, &f);
	if (rv != 0)
		return rv;
	uint64_t size = 0;
	uint8_t *buf = NULL;
	rv = pio_size(pio, f, &size);
	if (rv == 0 && (size < HDR + 8 || size > HDR + 8 + (uint64_t)RSNAP_MAX_DATA + (1u << 20)))
		rv = -EBADMSG;
	if (rv == 0 && (buf = malloc(size)) == NULL)
		rv = -ENOMEM;
	if (rv == 0) {
		ssize_t n = pio_pread(pio, f, buf, size, 0);
		rv = n < 0 ? (int)n : (uint64_t)n != size ? -EBADMSG : 0;
	}
	pio_close(pio, f);
	if (rv == 0) {
		uint32_t cl = record_le32(buf + 56), dl = record_le32(buf + 60);
		if (record_le32(buf) != MAGIC || record_le32(buf + 4) != VERSION ||
		    (uint64_t)HDR + cl + dl + 8 != size || record_le64(buf + size - 8) != XXH3_64bits(buf, size - 8) ||
		    record_le64(buf + 8) != group || dl > RSNAP_MAX_DATA)
			rv = -EBADMSG;
		out->group = group;
		out->index = record_le64(buf + 16);
		out->term = record_le64(buf + 24);
		out->conf_index = record_le64(buf + 32);
		out->keep_from = record_le64(buf + 40);
		out->next_offset = record_le64(buf + 48);
		out->conf_len = cl;
		out->data_len = dl;
		if (rv == 0 && (out->index == 0 || out->term == 0 || out->keep_from > out->index + 1 ||
				out->conf_index > out->index))
			rv = -EBADMSG;
		if (rv == 0) {
			out->conf = malloc(cl ? cl : 1);
			out->data = malloc(dl ? dl : 1);
			if (out->conf == NULL || out->data == NULL)
				rv = -ENOMEM;
		}
		if (rv == 0) {
			memcpy(out->conf, buf + HDR, cl);
			memcpy(out->data, buf + HDR + cl, dl);
		}
	}
	free(buf);
	if (rv != 0)
		rsnap_free(out);
	return rv;
}

void rsnap_free(struct rsnap *s)
{
	free(s->conf);
	free(s->data);
	s->conf = s->data = NULL;
	s->conf_len = s->data_len = 0;
}
