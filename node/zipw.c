/*
 * zipw — the in-memory ZIP writer; the byte format is at the top of zipw.h. Deflate and CRC-32 are
 * zlib's. Owns: the archive buffer until zipw_finish hands it over.
 */
#include "node/zipw.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define VERSION_NEEDED 20u
#define VERSION_MADE_BY 0x0314u /* Unix (3), spec 2.0 */
#define FLAG_UTF8 0x0800u
#define EXT_ATTR_FILE (0100644u << 16)
#define LOCAL_SIZE 30u
#define CENTRAL_SIZE 46u
#define END_SIZE 22u

uint32_t zipw_crc32(uint32_t crc, const void *p, size_t n)
{
	const Bytef *b = p;
	uLong c = crc;
	while (n > 0) {
		uInt k = n > UINT_MAX / 2 ? UINT_MAX / 2 : (uInt)n;
		c = crc32(c, b, k);
		b += k;
		n -= k;
	}
	return (uint32_t)c;
}

void zipw_init(struct zipw *z, uint16_t method, size_t limit)
{
	assert(method == ZIPW_STORED || method == ZIPW_DEFLATED);
	memset(z, 0, sizeof(*z));
	wire_buf_init(&z->b);
	z->method = method;
	z->limit = limit < UINT32_MAX ? limit : UINT32_MAX;
}

void zipw_free(struct zipw *z)
{
	wire_buf_free(&z->b);
	z->n = 0;
}

/* The MS-DOS time and date of t (UTC); DOS dates start in 1980. */
static void dos_time(time_t t, uint16_t *time_out, uint16_t *date_out)
{
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year < 80) {
		*time_out = 0;
		*date_out = (uint16_t)(1u << 5 | 1u); /* 1980-01-01 */
		return;
	}
	*time_out = (uint16_t)(tm.tm_hour << 11 | tm.tm_min << 5 | tm.tm_sec / 2);
	*date_out = (uint16_t)((tm.tm_year - 80) << 9 | (tm.tm_mon + 1) << 5 | tm.tm_mday);
}

/* Raw deflate of data into a new buffer. Returns 0, -ENOMEM or -EFBIG (larger than max). */
static int deflate_raw(const void *data, size_t len, size_t max, uint8_t **out, size_t *out_len)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	size_t cap = deflateBound(&zs, (uLong)len);
	if (cap > max)
		cap = max;
	uint8_t *buf = malloc(cap > 0 ? cap : 1);
	if (buf == NULL) {
		deflateEnd(&zs);
		return -ENOMEM;
	}
	zs.next_in = (Bytef *)(uintptr_t)data;
	zs.avail_in = (uInt)len;
	zs.next_out = buf;
	zs.avail_out = (uInt)cap;
	int rc = deflate(&zs, Z_FINISH);
	size_t produced = zs.total_out;
	deflateEnd(&zs);
	if (rc != Z_STREAM_END) {
		free(buf);
		return rc == Z_OK || rc == Z_BUF_ERROR ? -EFBIG : -ENOMEM;
	}
	*out = buf;
	*out_len = produced;
	return 0;
}

/*
 * The fields a local header and its central directory header share, from "version needed" to the name
 * length: [version needed u16][flags u16][method u16][time u16][date u16][crc u32][csize u32][usize u32]
 * [name length u16].
 */
static void put_shared(struct wire_buf *b, const struct zipw_entry *e, size_t nlen)
{
	wire_put_u16(b, VERSION_NEEDED);
	wire_put_u16(b, FLAG_UTF8);
	wire_put_u16(b, e->method);
	wire_put_u16(b, e->time);
	wire_put_u16(b, e->date);
	wire_put_u32(b, e->crc);
	wire_put_u32(b, e->csize);
	wire_put_u32(b, e->usize);
	wire_put_u16(b, (uint16_t)nlen);
}

int zipw_add(struct zipw *z, const char *name, const void *data, size_t len, time_t mtime)
{
	size_t nlen = name != NULL ? strlen(name) : 0;
	if (z->err != 0)
		return z->err;
	if (nlen == 0 || nlen > ZIPW_NAME_MAX || z->n >= ZIPW_MAX_ENTRIES || len > UINT32_MAX)
		return z->err = -EINVAL;
	size_t room = z->limit - z->b.len;
	assert(z->b.len <= z->limit);
	/* What is left after this header and the central directory and end record it will need. */
	size_t overhead = LOCAL_SIZE + nlen + z->cd_bytes + CENTRAL_SIZE + nlen + END_SIZE;
	if (room < overhead)
		return z->err = -EFBIG;
	room -= overhead;
	struct zipw_entry *e = &z->e[z->n];
	memcpy(e->name, name, nlen + 1);
	e->method = z->method;
	e->crc = zipw_crc32(0, data, len);
	e->usize = (uint32_t)len;
	e->offset = (uint32_t)z->b.len;
	dos_time(mtime, &e->time, &e->date);
	uint8_t *packed = NULL;
	const void *payload = data;
	size_t plen = len;
	if (z->method == ZIPW_DEFLATED) {
		int rc = deflate_raw(data, len, room, &packed, &plen);
		if (rc != 0)
			return z->err = rc;
		payload = packed;
	} else if (len > room) {
		return z->err = -EFBIG;
	}
	e->csize = (uint32_t)plen;
	struct wire_buf *b = &z->b;
	wire_put_u32(b, SIG_LOCAL);
	put_shared(b, e, nlen);
	wire_put_u16(b, 0);
	wire_put_bytes(b, name, nlen);
	wire_put_bytes(b, payload, plen);
	free(packed);
	if (wire_buf_error(b) != 0)
		return z->err = -ENOMEM;
	z->n++;
	z->cd_bytes += CENTRAL_SIZE + nlen;
	return 0;
}

int zipw_finish(struct zipw *z, uint8_t **out, size_t *len)
{
	struct wire_buf *b = &z->b;
	int err = z->err;
	size_t cd_off = b->len;
	for (size_t i = 0; i < z->n && err == 0; i++) {
		const struct zipw_entry *e = &z->e[i];
		size_t nlen = strlen(e->name);
		wire_put_u32(b, SIG_CENTRAL);
		wire_put_u16(b, VERSION_MADE_BY);
		put_shared(b, e, nlen);
		wire_put_u16(b, 0);
		wire_put_u16(b, 0);
		wire_put_u16(b, 0);
		wire_put_u16(b, 0);
		wire_put_u32(b, EXT_ATTR_FILE);
		wire_put_u32(b, e->offset);
		wire_put_bytes(b, e->name, nlen);
	}
	size_t cd_len = b->len - cd_off;
	wire_put_u32(b, SIG_END);
	wire_put_u16(b, 0);
	wire_put_u16(b, 0);
	wire_put_u16(b, (uint16_t)z->n);
	wire_put_u16(b, (uint16_t)z->n);
	wire_put_u32(b, (uint32_t)cd_len);
	wire_put_u32(b, (uint32_t)cd_off);
	wire_put_u16(b, 0);
	if (err == 0 && wire_buf_error(b) != 0)
		err = -ENOMEM;
	/* zipw_add kept room for all of this. */
	assert(err != 0 || b->len <= z->limit);
	if (err != 0) {
		zipw_free(z);
		return err;
	}
	*out = b->p;
	*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	z->n = 0;
	z->cd_bytes = 0;
	return 0;
}
