/* segment — one segment of a partition log. The byte formats are specified in segment.h. */
#include "partition/segment.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static const uint8_t seg_magic[8] = {'G', 'A', 'L', 'G', 'O', 'S', 'E', 'G'};

char *segment_base_path(const char *dir, uint64_t first_index)
{
	size_t n = strlen(dir) + 32;
	char *p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s/%020" PRIu64, dir, first_index);
	return p;
}

bool segment_parse_name(const char *name, uint64_t *first_index)
{
	uint64_t v = 0;
	for (int i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		uint64_t d = (uint64_t)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (strcmp(name + 20, ".log") != 0)
		return false;
	*first_index = v;
	return true;
}

static char *path_with(const struct segment *s, const char *ext)
{
	size_t n = strlen(s->base) + strlen(ext) + 1;
	char *p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s%s", s->base, ext);
	return p;
}

static int open_ext(struct segment *s, const char *ext, int flags, struct pio_file **f)
{
	char *p = path_with(s, ext);
	if (p == NULL)
		return -ENOMEM;
	int rv = pio_open(s->pio, p, flags, f);
	free(p);
	return rv;
}

static void header_encode(const struct segment *s, uint8_t h[SEGMENT_HEADER_SIZE])
{
	memset(h, 0, SEGMENT_HEADER_SIZE);
	memcpy(h, seg_magic, 8);
	record_put32(h + 8, 1);
	record_put64(h + 16, s->first_index);
	record_put64(h + 24, s->base_offset);
	record_put64(h + 32, s->created_us);
	record_put64(h + 56, XXH3_64bits(h, 56));
}

static int header_decode(const uint8_t h[SEGMENT_HEADER_SIZE], struct segment *s)
{
	if (memcmp(h, seg_magic, 8) != 0 || record_le32(h + 8) != 1)
		return -EBADMSG;
	if (record_le64(h + 56) != XXH3_64bits(h, 56))
		return -EBADMSG;
	s->first_index = record_le64(h + 16);
	s->base_offset = record_le64(h + 24);
	s->created_us = record_le64(h + 32);
	return 0;
}

static struct segment *seg_alloc(struct pio *pio, const char *dir, uint64_t first_index, uint32_t interval)
{
	struct segment *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->base = segment_base_path(dir, first_index);
	if (s->base == NULL) {
		free(s);
		return NULL;
	}
	s->pio = pio;
	s->first_index = first_index;
	s->last_index = first_index - 1;
	s->index_interval = interval ? interval : 4096;
	s->refs = 1;
	s->verified_to = s->vtail = SEGMENT_HEADER_SIZE;
	return s;
}

static void seg_free(struct segment *s)
{
	if (s->data != NULL)
		pio_close(s->pio, s->data);
	if (s->oix != NULL)
		pio_close(s->pio, s->oix);
	if (s->tix != NULL)
		pio_close(s->pio, s->tix);
	free(s->idx);
	free(s->base);
	free(s);
}

void segment_ref(struct segment *s)
{
	assert(s->refs > 0); /* a reference is taken only through a live one */
	s->refs++;
}

void segment_unref(struct segment *s)
{
	assert(s->refs > 0);
	if (--s->refs == 0)
		seg_free(s);
}

int segment_create(struct pio *pio, const char *dir, uint64_t first_index, uint64_t base_offset,
		   uint64_t created_us, uint32_t index_interval, struct segment **out)
{
	struct segment *s = seg_alloc(pio, dir, first_index, index_interval);
	if (s == NULL)
		return -ENOMEM;
	s->base_offset = base_offset;
	s->next_offset = base_offset;
	s->created_us = created_us;
	s->idx_loaded = true;
	int rv = open_ext(s, ".log", PIO_CREATE | PIO_RDWR, &s->data);
	if (rv != 0)
		goto err;
	uint8_t h[SEGMENT_HEADER_SIZE];
	header_encode(s, h);
	struct iovec iov = {h, sizeof(h)};
	rv = pio_truncate(pio, s->data, 0);
	if (rv == 0)
		rv = pio_pwritev(pio, s->data, &iov, 1, 0);
	if (rv != 0)
		goto err;
	s->size = SEGMENT_HEADER_SIZE;
	assert(s->last_index + 1 == s->first_index); /* a new segment holds no record */
	rv = open_ext(s, ".oix", PIO_CREATE | PIO_RDWR, &s->oix);
	if (rv == 0)
		rv = pio_truncate(pio, s->oix, 0);
	if (rv == 0)
		rv = open_ext(s, ".tix", PIO_CREATE | PIO_RDWR, &s->tix);
	if (rv == 0)
		rv = pio_truncate(pio, s->tix, 0);
	if (rv != 0)
		goto err;
	*out = s;
	return 0;
err:
	segment_unlink(s);
	seg_free(s);
	return rv;
}

/* Index entries: encoding, checking, the in-memory array. */

static void oix_encode(const struct seg_ientry *e, uint8_t b[16])
{
	record_put32(b, e->rel_offset);
	record_put32(b + 4, e->position);
	record_put32(b + 8, e->rel_index);
	record_put32(b + 12, (uint32_t)XXH3_64bits(b, 12));
}

static void tix_encode(const struct seg_ientry *e, uint8_t b[16])
{
	record_put64(b, e->timestamp);
	record_put32(b + 8, e->position);
	record_put32(b + 12, (uint32_t)XXH3_64bits(b, 12));
}

static int idx_push(struct segment *s, const struct seg_ientry *e)
{
	/* Every path that adds entries (load, scan, append) goes forward in the file. */
	assert(s->n_idx == 0 || e->position > s->idx[s->n_idx - 1].position);
	if (s->n_idx == s->cap_idx) {
		size_t cap = s->cap_idx ? s->cap_idx * 2 : 64;
		struct seg_ientry *n = realloc(s->idx, cap * sizeof(*n));
		if (n == NULL)
			return -ENOMEM;
		s->idx = n;
		s->cap_idx = cap;
	}
	s->idx[s->n_idx++] = *e;
	return 0;
}

/* Whether a record at pos (the next to be written or scanned) gets an index entry. */
static bool wants_entry(const struct segment *s, uint64_t pos)
{
	if (s->n_idx == 0)
		return true;
	return pos - s->idx[s->n_idx - 1].position >= s->index_interval;
}

static int write_entry_files(struct segment *s, size_t i)
{
	if (s->oix == NULL || s->tix == NULL)
		return 0;
	uint8_t b[16];
	struct iovec iov = {b, 16};
	oix_encode(&s->idx[i], b);
	int rv = pio_pwritev(s->pio, s->oix, &iov, 1, (uint64_t)i * 16);
	if (rv != 0)
		return rv;
	tix_encode(&s->idx[i], b);
	return pio_pwritev(s->pio, s->tix, &iov, 1, (uint64_t)i * 16);
}

int segment_index_write_all(struct segment *s)
{
	bool close_after = false;
	int rv = 0;
	if (s->oix == NULL) {
		rv = open_ext(s, ".oix", PIO_CREATE | PIO_RDWR, &s->oix);
		if (rv == 0)
			rv = open_ext(s, ".tix", PIO_CREATE | PIO_RDWR, &s->tix);
		if (rv != 0)
			goto out;
		close_after = s->sealed;
	}
	size_t n = s->n_idx * 16;
	uint8_t *ob = malloc(n ? n : 1), *tb = malloc(n ? n : 1);
	if (ob == NULL || tb == NULL) {
		free(ob);
		free(tb);
		rv = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < s->n_idx; i++) {
		oix_encode(&s->idx[i], ob + i * 16);
		tix_encode(&s->idx[i], tb + i * 16);
	}
	struct iovec io = {ob, n}, it = {tb, n};
	rv = pio_truncate(s->pio, s->oix, n);
	if (rv == 0 && n)
		rv = pio_pwritev(s->pio, s->oix, &io, 1, 0);
	if (rv == 0)
		rv = pio_truncate(s->pio, s->tix, n);
	if (rv == 0 && n)
		rv = pio_pwritev(s->pio, s->tix, &it, 1, 0);
	if (rv == 0 && s->sealed) {
		rv = pio_datasync(s->pio, s->oix);
		if (rv == 0)
			rv = pio_datasync(s->pio, s->tix);
	}
	free(ob);
	free(tb);
out:
	if (close_after || rv != 0) {
		if (s->oix != NULL)
			pio_close(s->pio, s->oix);
		if (s->tix != NULL)
			pio_close(s->pio, s->tix);
		s->oix = s->tix = NULL;
	}
	return rv;
}

/* Reads a whole small file into memory; a missing file reads as empty. */
static int read_whole(struct segment *s, const char *ext, uint8_t **buf, size_t *len)
{
	struct pio_file *f;
	*buf = NULL;
	*len = 0;
	int rv = open_ext(s, ext, PIO_RDONLY, &f);
	if (rv == -ENOENT)
		return 0;
	if (rv != 0)
		return rv;
	uint64_t size;
	rv = pio_size(s->pio, f, &size);
	if (rv == 0 && size > 0) {
		*buf = malloc(size);
		if (*buf == NULL) {
			rv = -ENOMEM;
		} else {
			ssize_t n = pio_pread(s->pio, f, *buf, size, 0);
			if (n < 0)
				rv = (int)n;
			else
				*len = (size_t)n;
		}
	}
	pio_close(s->pio, f);
	if (rv != 0) {
		free(*buf);
		*buf = NULL;
	}
	return rv;
}

/*
 * Loads the index files, keeping the longest prefix of entries that check, agree between the two files,
 * stay in order and point inside the data. Returns the number of entries the files held in all (so the
 * caller can tell whether anything was dropped).
 */
static int index_load_files(struct segment *s, size_t *file_entries)
{
	uint8_t *ob, *tb;
	size_t ol, tl;
	int rv = read_whole(s, ".oix", &ob, &ol);
	if (rv != 0)
		return rv;
	rv = read_whole(s, ".tix", &tb, &tl);
	if (rv != 0) {
		free(ob);
		return rv;
	}
	size_t n = (ol < tl ? ol : tl) / 16;
	*file_entries = (ol > tl ? ol : tl) / 16 + ((ol % 16) || (tl % 16) || ol != tl);
	s->n_idx = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *o = ob + i * 16, *t = tb + i * 16;
		if (record_le32(o + 12) != (uint32_t)XXH3_64bits(o, 12) ||
		    record_le32(t + 12) != (uint32_t)XXH3_64bits(t, 12))
			break;
		struct seg_ientry e = {
			.rel_offset = record_le32(o),
			.position = record_le32(o + 4),
			.rel_index = record_le32(o + 8),
			.timestamp = record_le64(t),
		};
		if (record_le32(t + 8) != e.position || e.position < SEGMENT_HEADER_SIZE || e.position >= s->size)
			break;
		if (s->n_idx > 0) {
			const struct seg_ientry *p = &s->idx[s->n_idx - 1];
			if (e.position <= p->position || e.rel_index <= p->rel_index || e.rel_offset < p->rel_offset ||
			    e.timestamp < p->timestamp)
				break;
		} else if (e.position != SEGMENT_HEADER_SIZE || e.rel_index != 0 || e.rel_offset != 0) {
			break;
		}
		rv = idx_push(s, &e);
		if (rv != 0)
			break;
	}
	free(ob);
	free(tb);
	return rv;
}

int segment_index_load(struct segment *s)
{
	if (s->idx_loaded)
		return 0;
	size_t file_entries;
	int rv = index_load_files(s, &file_entries);
	if (rv != 0)
		return rv;
	if (s->n_idx != file_entries) {
		/* Damaged since open (or never written): rebuild by scanning. */
		s->n_idx = 0;
		uint64_t pos = SEGMENT_HEADER_SIZE;
		while (pos < s->size) {
			struct record_env e;
			rv = segment_read_env(s, pos, &e);
			if (rv != 0)
				return rv == -ENODATA ? -EBADMSG : rv;
			if (wants_entry(s, pos)) {
				struct seg_ientry ie = {(uint32_t)(e.base_offset - s->base_offset), (uint32_t)pos,
							(uint32_t)(e.index - s->first_index), e.timestamp};
				rv = idx_push(s, &ie);
				if (rv != 0)
					return rv;
			}
			pos += RECORD_ENVELOPE_SIZE + (uint64_t)e.length;
		}
		s->idx_loaded = true;
		return segment_index_write_all(s);
	}
	s->idx_loaded = true;
	return 0;
}

void segment_index_unload(struct segment *s)
{
	if (!s->idx_loaded || !s->sealed || s->oix != NULL)
		return;
	free(s->idx);
	s->idx = NULL;
	s->n_idx = s->cap_idx = 0;
	s->idx_loaded = false;
}

int segment_read_env(struct segment *s, uint64_t pos, struct record_env *e)
{
	if (pos >= s->size)
		return -ENODATA;
	if (s->size - pos < RECORD_ENVELOPE_SIZE)
		return -EBADMSG;
	uint8_t b[RECORD_ENVELOPE_SIZE];
	ssize_t n = pio_pread(s->pio, s->data, b, sizeof(b), pos);
	if (n < 0)
		return (int)n;
	if (n != (ssize_t)sizeof(b))
		return -EBADMSG;
	if (record_env_decode(b, e) != 0)
		return -EBADMSG;
	if (e->length > s->size - pos - RECORD_ENVELOPE_SIZE)
		return -EBADMSG;
	return 0;
}

/*
 * Checks one record at pos as the scan expects it: envelope valid, the expected index and offset, inside
 * the file, timestamps not going back, and (if verify) its payload. Returns 0, -EBADMSG or an I/O error.
 */
/*
 * The buffer records are read into to be verified: one per thread (a partition belongs to one loop),
 * grown to the largest record verified and kept, so that verifying a stream of records allocates (and
 * faults in) nothing after the first; freed when its thread exits (the main thread's stays reachable
 * through the key until the process ends).
 */
struct scratch_buf {
	uint8_t *p;
	size_t cap;
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v)
{
	struct scratch_buf *b = v;
	free(b->p);
	free(b);
}

static void scratch_init(void)
{
	(void)pthread_key_create(&scratch_key, scratch_free);
}

static uint8_t *scratch(size_t len)
{
	(void)pthread_once(&scratch_once, scratch_init);
	struct scratch_buf *b = pthread_getspecific(scratch_key);
	if (b == NULL) {
		b = calloc(1, sizeof(*b));
		if (b == NULL || pthread_setspecific(scratch_key, b) != 0) {
			free(b);
			return NULL;
		}
	}
	if (len > b->cap) {
		uint8_t *p = realloc(b->p, len);
		if (p == NULL)
			return NULL;
		b->p = p;
		b->cap = len;
	}
	return b->p;
}

static int check_record(struct segment *s, uint64_t pos, uint64_t file_size, uint64_t want_index,
			uint64_t want_offset, uint64_t min_ts, bool verify, struct record_env *e)
{
	uint8_t b[RECORD_ENVELOPE_SIZE];
	if (file_size - pos < RECORD_ENVELOPE_SIZE)
		return -EBADMSG;
	ssize_t n = pio_pread(s->pio, s->data, b, sizeof(b), pos);
	if (n < 0)
		return (int)n;
	if (n != (ssize_t)sizeof(b) || record_env_decode(b, e) != 0)
		return -EBADMSG;
	if (e->index != want_index || e->base_offset != want_offset || e->timestamp < min_ts ||
	    e->length > file_size - pos - RECORD_ENVELOPE_SIZE || e->length > RECORD_MAX_PAYLOAD)
		return -EBADMSG;
	if (e->type != RECORD_MESSAGES && e->message_count != 0)
		return -EBADMSG;
	if (!verify)
		return 0;
	uint8_t *p = scratch(e->length ? e->length : 1);
	if (p == NULL)
		return -ENOMEM;
	n = pio_pread(s->pio, s->data, p, e->length, pos + RECORD_ENVELOPE_SIZE);
	int rv = 0;
	if (n < 0)
		rv = (int)n;
	else if (n != (ssize_t)e->length || record_payload_verify(e, p, e->length) != 0)
		rv = -EBADMSG;
	return rv;
}

static bool entries_equal(const struct seg_ientry *a, const struct seg_ientry *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].rel_offset != b[i].rel_offset || a[i].position != b[i].position ||
		    a[i].rel_index != b[i].rel_index || a[i].timestamp != b[i].timestamp)
			return false;
	return true;
}

int segment_open(struct pio *pio, const char *dir, uint64_t first_index, uint32_t index_interval,
		 uint64_t trusted_index, struct segment **out, struct seg_scan *scan)
{
	memset(scan, 0, sizeof(*scan));
	struct seg_ientry *was = NULL;
	struct segment *s = seg_alloc(pio, dir, first_index, index_interval);
	if (s == NULL)
		return -ENOMEM;
	int rv = open_ext(s, ".log", PIO_RDWR, &s->data);
	if (rv != 0)
		goto err;
	rv = pio_size(pio, s->data, &s->size);
	if (rv != 0)
		goto err;
	uint8_t h[SEGMENT_HEADER_SIZE];
	ssize_t n = pio_pread(pio, s->data, h, sizeof(h), 0);
	if (n < 0) {
		rv = (int)n;
		goto err;
	}
	if (n != SEGMENT_HEADER_SIZE || header_decode(h, s) != 0 || s->first_index != first_index) {
		rv = -EBADMSG;
		goto err;
	}
	if (s->size > SEGMENT_MAX_SIZE) {
		rv = -EBADMSG;
		goto err;
	}
	size_t file_entries;
	rv = index_load_files(s, &file_entries);
	if (rv != 0)
		goto err;
	size_t loaded = s->n_idx;
	if (loaded > 0) {
		was = malloc(loaded * sizeof(*was));
		if (was == NULL) {
			rv = -ENOMEM;
			goto err;
		}
		memcpy(was, s->idx, loaded * sizeof(*was));
	}
	/* Start at the last entry of a trusted record; entries after it are re-derived by the scan. */
	while (s->n_idx > 0 && s->first_index + s->idx[s->n_idx - 1].rel_index > trusted_index)
		s->n_idx--;
	uint64_t pos = SEGMENT_HEADER_SIZE, want_index = s->first_index, want_offset = s->base_offset, min_ts = 0;
	bool skip_entry = false;
	if (s->n_idx > 0) {
		const struct seg_ientry *ie = &s->idx[s->n_idx - 1];
		pos = ie->position;
		want_index = s->first_index + ie->rel_index;
		want_offset = s->base_offset + ie->rel_offset;
		min_ts = ie->timestamp;
		skip_entry = true;
	}
	s->next_offset = s->base_offset;
	s->last_index = s->first_index - 1;
	s->vtail = s->size; /* moved down to the first record the scan verifies */
	while (pos < s->size) {
		struct record_env e;
		bool verify = want_index > trusted_index;
		rv = check_record(s, pos, s->size, want_index, want_offset, min_ts, verify, &e);
		if (rv == -EBADMSG) {
			if (skip_entry) {
				/* The index pointed at something that is not the record it named: rebuild it all. */
				s->n_idx = 0;
				pos = SEGMENT_HEADER_SIZE;
				want_index = s->first_index;
				want_offset = s->base_offset;
				min_ts = 0;
				skip_entry = false;
				scan->index_rebuilt = true;
				continue;
			}
			scan->bad = true;
			scan->bad_pos = pos;
			rv = 0;
			break;
		}
		if (rv != 0)
			goto err;
		if (verify) {
			if (scan->records_verified == 0)
				s->vtail = pos;
			scan->records_verified++;
		}
		if (skip_entry) {
			skip_entry = false;
		} else if (wants_entry(s, pos)) {
			struct seg_ientry ie = {(uint32_t)(e.base_offset - s->base_offset), (uint32_t)pos,
						(uint32_t)(e.index - s->first_index), e.timestamp};
			rv = idx_push(s, &ie);
			if (rv != 0)
				goto err;
		}
		if (e.index == s->first_index)
			s->first_ts = e.timestamp;
		s->last_ts = e.timestamp;
		s->last_index = e.index;
		s->next_offset = e.base_offset + e.message_count;
		want_index = e.index + 1;
		want_offset = s->next_offset;
		min_ts = e.timestamp;
		pos += RECORD_ENVELOPE_SIZE + (uint64_t)e.length;
	}
	/* The scan consumed the whole file, unless an invalid record stopped it inside the file. */
	assert(scan->bad ? pos < s->size : pos == s->size);
	assert(s->last_index + 1 >= s->first_index && s->vtail <= s->size);
	if (s->n_idx > 0 && s->first_ts == 0)
		s->first_ts = s->idx[0].timestamp;
	s->idx_loaded = true;
	if (s->n_idx != loaded || loaded != file_entries ||
	    !entries_equal(was, s->idx, loaded))
		scan->index_rebuilt = true;
	free(was);
	was = NULL;
	if (scan->index_rebuilt && !scan->bad) {
		rv = segment_index_write_all(s);
		if (rv != 0)
			goto err;
	}
	*out = s;
	return 0;
err:
	free(was);
	seg_free(s);
	return rv;
}

int segment_valid_after(struct segment *s, uint64_t from, uint64_t after_index, bool *found)
{
	*found = false;
	const size_t chunk = 1 << 20;
	uint8_t *buf = malloc(chunk + RECORD_ENVELOPE_SIZE);
	if (buf == NULL)
		return -ENOMEM;
	int rv = 0;
	for (uint64_t at = from; at < s->size && !*found; at += chunk) {
		size_t want = chunk + RECORD_ENVELOPE_SIZE;
		if (want > s->size - at)
			want = (size_t)(s->size - at);
		ssize_t n = pio_pread(s->pio, s->data, buf, want, at);
		if (n < 0) {
			rv = (int)n;
			break;
		}
		for (size_t i = 0; i + RECORD_ENVELOPE_SIZE <= (size_t)n && i < chunk; i++) {
			if (buf[i] != 0x47 || record_le32(buf + i) != RECORD_MAGIC)
				continue;
			struct record_env e;
			if (record_env_decode(buf + i, &e) != 0 || e.index <= after_index)
				continue;
			struct record_env e2;
			if (check_record(s, at + i, s->size, e.index, e.base_offset, 0, true, &e2) == 0) {
				*found = true;
				break;
			}
		}
	}
	free(buf);
	return rv;
}

/* Moves verified_to past the record [pos, end) that just verified, and joins it with the tail when they meet. */
static void verified_advance(struct segment *s, uint64_t pos, uint64_t end)
{
	assert(pos >= SEGMENT_HEADER_SIZE && pos < end && end <= s->size);
	if (pos == s->verified_to)
		s->verified_to = end;
	if (s->verified_to >= s->vtail)
		s->verified_to = s->vtail = SEGMENT_HEADER_SIZE; /* all verified: the tail is the whole file */
}

int segment_verify_record(struct segment *s, uint64_t pos, const struct record_env *e)
{
	uint64_t end = pos + RECORD_ENVELOPE_SIZE + (uint64_t)e->length;
	if (segment_verified(s, pos, end))
		return 0;
	if (segment_fenced(s, pos))
		return -EBADMSG;
	struct record_env again;
	int rv = check_record(s, pos, s->size, e->index, e->base_offset, 0, true, &again);
	if (rv == -EBADMSG) {
		segment_fence(s, pos, end);
		return rv;
	}
	if (rv == 0)
		verified_advance(s, pos, end);
	return rv;
}

int64_t segment_scrub(struct segment *s, uint64_t max_bytes)
{
	uint64_t done = 0;
	while (done < max_bytes && !segment_verified(s, s->verified_to, s->verified_to + 1)) {
		uint64_t pos = s->verified_to;
		if (s->bad_at != 0 && pos >= s->bad_at)
			break;
		struct record_env e;
		int rv = segment_read_env(s, pos, &e);
		if (rv == -ENODATA || rv == -EBADMSG) {
			/* The envelope itself is damaged: nothing after it can be found from here. */
			segment_fence(s, pos, 0);
			return -EBADMSG;
		}
		if (rv != 0)
			return rv;
		rv = segment_verify_record(s, pos, &e);
		if (rv != 0)
			return rv;
		done += RECORD_ENVELOPE_SIZE + (uint64_t)e.length;
	}
	return (int64_t)done;
}

int segment_cut(struct segment *s, uint64_t pos)
{
	/* A cut is at a record boundary inside the data, never into the header. */
	assert(pos >= SEGMENT_HEADER_SIZE && pos <= s->size);
	int rv = pio_truncate(s->pio, s->data, pos);
	if (rv != 0)
		return rv;
	s->size = pos;
	if (s->verified_to > pos)
		s->verified_to = pos;
	if (s->vtail > pos)
		s->vtail = pos;
	if (s->bad_at >= pos)
		s->bad_at = s->bad_end = 0;
	else if (s->bad_end > pos)
		s->bad_end = pos;
	assert(s->verified_to <= s->size && s->vtail <= s->size && s->bad_end <= s->size);
	if (s->idx_loaded) {
		size_t n = s->n_idx;
		while (s->n_idx > 0 && s->idx[s->n_idx - 1].position >= pos)
			s->n_idx--;
		if (n != s->n_idx)
			rv = segment_index_write_all(s);
	}
	return rv;
}

int segment_append(struct segment *s, const uint8_t env[RECORD_ENVELOPE_SIZE], const struct record_env *e,
		   const void *payload)
{
	uint64_t pos = s->size;
	/* Records are appended to the active segment only, each continuing the one before it. */
	assert(!s->sealed && !s->unlinked);
	assert(e->index == s->last_index + 1 && e->base_offset == s->next_offset);
	struct iovec iov[2] = {{(void *)env, RECORD_ENVELOPE_SIZE}, {(void *)payload, e->length}};
	int rv = pio_pwritev(s->pio, s->data, iov, e->length ? 2 : 1, pos);
	if (rv != 0) {
		if (pio_truncate(s->pio, s->data, pos) != 0)
			return -EIO;
		return rv;
	}
	if (wants_entry(s, pos)) {
		struct seg_ientry ie = {(uint32_t)(e->base_offset - s->base_offset), (uint32_t)pos,
					(uint32_t)(e->index - s->first_index), e->timestamp};
		if (idx_push(s, &ie) == 0) {
			/* Index files are re-derivable; a failed index write is repaired at open. */
			(void)write_entry_files(s, s->n_idx - 1);
		}
	}
	if (e->index == s->first_index)
		s->first_ts = e->timestamp;
	s->last_ts = e->timestamp;
	s->last_index = e->index;
	s->next_offset = e->base_offset + e->message_count;
	s->size = pos + RECORD_ENVELOPE_SIZE + e->length;
	return 0;
}

/* Binary search: the last entry i with key(i) ≤ k (or < k when strict); -1 if none. */
#define SEEK_LAST_LE(s, field, k, strict)                                                                      \
	do {                                                                                                   \
		size_t lo_ = 0, hi_ = (s)->n_idx;                                                              \
		while (lo_ < hi_) {                                                                            \
			size_t mid_ = lo_ + (hi_ - lo_) / 2;                                                   \
			uint64_t v_ = (s)->idx[mid_].field;                                                    \
			if ((strict) ? v_ < (k) : v_ <= (k))                                                   \
				lo_ = mid_ + 1;                                                                \
			else                                                                                   \
				hi_ = mid_;                                                                    \
		}                                                                                              \
		return lo_ == 0 ? SEGMENT_HEADER_SIZE : (s)->idx[lo_ - 1].position;                            \
	} while (0)

uint64_t segment_seek_offset(const struct segment *s, uint64_t offset)
{
	uint64_t k = offset < s->base_offset ? 0 : offset - s->base_offset;
	SEEK_LAST_LE(s, rel_offset, k, false);
}

uint64_t segment_seek_index(const struct segment *s, uint64_t index)
{
	uint64_t k = index < s->first_index ? 0 : index - s->first_index;
	SEEK_LAST_LE(s, rel_index, k, false);
}

uint64_t segment_seek_time_before(const struct segment *s, uint64_t ts)
{
	SEEK_LAST_LE(s, timestamp, ts, true);
}

int segment_find_index(struct segment *s, uint64_t index, uint64_t *pos, struct record_env *e)
{
	if (index < s->first_index || index > s->last_index)
		return -ENOENT;
	int rv = segment_index_load(s);
	if (rv != 0)
		return rv;
	uint64_t p = segment_seek_index(s, index);
	for (;;) {
		rv = segment_read_env(s, p, e);
		if (rv != 0)
			return rv == -ENODATA ? -ENOENT : rv;
		if (e->index == index) {
			*pos = p;
			return 0;
		}
		if (e->index > index)
			return -EBADMSG;
		p += RECORD_ENVELOPE_SIZE + (uint64_t)e->length;
	}
}

int segment_unlink(struct segment *s)
{
	static const char *const exts[] = {".log", ".oix", ".tix"};
	int first_err = 0;
	for (size_t i = 0; i < 3; i++) {
		char *p = path_with(s, exts[i]);
		if (p == NULL)
			return -ENOMEM;
		int rv = pio_unlink(s->pio, p);
		free(p);
		if (rv != 0 && rv != -ENOENT && first_err == 0)
			first_err = rv;
	}
	s->unlinked = true;
	return first_err;
}
