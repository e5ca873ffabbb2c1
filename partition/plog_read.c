/*
 * plog_read — reading one partition log: polls by offset or timestamp, the records Raft ships, single
 * entries, and the scrubber that verifies what is at rest. Every record is verified before it is served
 * (once per segment position: a segment remembers how far it has verified); damage found is fenced and
 * reported through plog_damaged. See plog.h for the behaviour, segment.h and record.h for the bytes.
 */
#include "partition/plog_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Reads. */

static void slice_init(struct plog *l, struct plog_slice *s)
{
	memset(s, 0, sizeof(*s));
	s->pio = l->pio;
}

static int slice_ref(struct plog_slice *out, struct segment *s)
{
	if (out->n_segs > 0 && out->segs[out->n_segs - 1] == s)
		return 0;
	int rv = plog__grow((void **)&out->segs, &out->cap_segs, out->n_segs + 1, sizeof(*out->segs));
	if (rv != 0)
		return rv;
	segment_ref(s);
	out->segs[out->n_segs++] = s;
	return 0;
}

static int add_file_piece(struct plog_slice *out, struct segment *s, uint64_t off, size_t len)
{
	int rv = slice_ref(out, s);
	if (rv == 0)
		rv = plog__grow((void **)&out->pieces, &out->cap_pieces, out->n_pieces + 1, sizeof(*out->pieces));
	if (rv != 0)
		return rv;
	assert(off >= SEGMENT_HEADER_SIZE && off + len <= s->size); /* a piece never leaves its segment */
	out->pieces[out->n_pieces++] = (struct plog_piece){.file = s->data, .file_off = off, .len = len};
	out->bytes += len;
	return 0;
}

static int add_mem_piece(struct plog_slice *out, const uint8_t *src, size_t len)
{
	int rv = plog__grow((void **)&out->bufs, &out->cap_bufs, out->n_bufs + 1, sizeof(*out->bufs));
	if (rv == 0)
		rv = plog__grow((void **)&out->pieces, &out->cap_pieces, out->n_pieces + 1, sizeof(*out->pieces));
	if (rv != 0)
		return rv;
	uint8_t *b = malloc(len);
	if (b == NULL)
		return -ENOMEM;
	memcpy(b, src, len);
	out->bufs[out->n_bufs++] = b;
	out->pieces[out->n_pieces++] = (struct plog_piece){.mem = b, .len = len};
	out->bytes += len;
	return 0;
}

void plog_slice_release(struct plog_slice *s)
{
	for (size_t i = 0; i < s->n_segs; i++)
		segment_unref(s->segs[i]);
	for (size_t i = 0; i < s->n_bufs; i++)
		free(s->bufs[i]);
	free(s->segs);
	free(s->bufs);
	free(s->pieces);
	memset(s, 0, sizeof(*s));
}

int plog_slice_copy(const struct plog_slice *s, uint8_t *buf)
{
	for (size_t i = 0; i < s->n_pieces; i++) {
		const struct plog_piece *p = &s->pieces[i];
		if (p->file == NULL) {
			memcpy(buf, p->mem, p->len);
		} else {
			ssize_t n = pio_pread(s->pio, p->file, buf, p->len, p->file_off);
			if (n < 0)
				return (int)n;
			if ((size_t)n != p->len)
				return -EIO;
		}
		buf += p->len;
	}
	return 0;
}

/* The first segment that may hold offset `off` (the last with base_offset ≤ off), or n_segs. */
static size_t seg_for_offset(const struct plog *l, uint64_t off)
{
	size_t lo = 0, hi = l->n_segs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->segs[mid]->base_offset <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == 0 ? 0 : lo - 1;
}

size_t plog__seg_for_index(const struct plog *l, uint64_t index)
{
	size_t lo = 0, hi = l->n_segs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->segs[mid]->first_index <= index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == 0 ? 0 : lo - 1;
}

/*
 * A record that fails its checks (found by a read or the scrubber) is fenced: never served again (reads
 * stop before it) and said once, with where it is, so that it can be repaired.
 */
static void note_damage(struct plog *l, struct segment *s, uint64_t pos, const struct record_env *e, bool was_fenced)
{
	if (was_fenced)
		return;
	segment_fence(s, pos, e != NULL ? pos + RECORD_ENVELOPE_SIZE + (uint64_t)e->length : 0);
	l->damaged++;
	if (e != NULL)
		plog__logf(l, 2,
		      "record at byte %llu of segment %llu (Raft index %llu, offsets %llu..%llu) fails its checksums: "
		      "fenced, not served",
		      (unsigned long long)pos, (unsigned long long)s->first_index, (unsigned long long)e->index,
		      (unsigned long long)e->base_offset,
		      (unsigned long long)(e->base_offset + (e->message_count ? e->message_count - 1 : 0)));
	else
		plog__logf(l, 2, "record envelope at byte %llu of segment %llu is damaged: fenced, not served",
		      (unsigned long long)pos, (unsigned long long)s->first_index);
}

/*
 * Reads the envelope of the record at pos and, with verify, makes sure the whole record is known good
 * before any of it is served (segment_verified, else verified now). -EBADMSG for a damaged or fenced
 * record.
 */
static int verify_checked(struct plog *l, struct segment *s, uint64_t pos, const struct record_env *e)
{
	if (segment_verified(s, pos, pos + RECORD_ENVELOPE_SIZE + (uint64_t)e->length))
		return 0;
	if (segment_fenced(s, pos))
		return -EBADMSG;
	int rv = segment_verify_record(s, pos, e);
	if (rv == -EBADMSG)
		note_damage(l, s, pos, e, false);
	return rv;
}

static int read_checked(struct plog *l, struct segment *s, uint64_t pos, struct record_env *e, bool verify)
{
	if (segment_fenced(s, pos))
		return -EBADMSG;
	int rv = segment_read_env(s, pos, e);
	if (rv == -EBADMSG)
		note_damage(l, s, pos, NULL, false);
	if (rv != 0 || !verify)
		return rv;
	return verify_checked(l, s, pos, e);
}

/* Adds the messages [first, last] of the MESSAGES record at pos to the slice. */
static int add_messages(struct plog_slice *out, struct segment *s, uint64_t pos, const struct record_env *e,
			uint64_t first, uint64_t last)
{
	uint64_t end = e->base_offset + e->message_count - 1;
	int rv;
	if (first == e->base_offset && last == end) {
		rv = add_file_piece(out, s, pos + RECORD_ENVELOPE_SIZE, e->length);
	} else {
		uint8_t *buf = malloc(e->length);
		if (buf == NULL)
			return -ENOMEM;
		ssize_t n = pio_pread(s->pio, s->data, buf, e->length, pos + RECORD_ENVELOPE_SIZE);
		uint8_t hdr[BATCH_HEADER_SIZE];
		size_t foff = 0, flen = 0;
		if (n < 0)
			rv = (int)n;
		else if ((size_t)n != e->length)
			rv = -EIO;
		else if (batch_slice(buf, e->length, (uint32_t)(first - e->base_offset),
					    (uint32_t)(last - first + 1), hdr, &foff, &flen) != 0)
			rv = -EBADMSG;
		else
			rv = 0;
		free(buf);
		if (rv == 0)
			rv = add_mem_piece(out, hdr, sizeof(hdr));
		if (rv == 0)
			rv = add_file_piece(out, s, pos + RECORD_ENVELOPE_SIZE + foff, flen);
	}
	if (rv != 0)
		return rv;
	assert(first >= e->base_offset && first <= last && last <= end);
	if (out->messages == 0)
		out->first_offset = first;
	out->last_offset = last;
	out->messages += (uint32_t)(last - first + 1);
	out->records++;
	return 0;
}

int plog_read(struct plog *l, uint64_t from, uint32_t max_messages, uint64_t max_bytes, uint64_t upto,
	      struct plog_slice *out)
{
	slice_init(l, out);
	uint64_t next = plog__active(l)->next_offset, first = plog_first_offset(l);
	if (max_messages == 0 || next == first)
		return 0;
	if (from < first)
		from = first;
	uint64_t last = upto < next - 1 ? upto : next - 1;
	if (from > last)
		return 0;
	for (size_t i = seg_for_offset(l, from); i < l->n_segs; i++) {
		struct segment *s = l->segs[i];
		if (plog__seg_empty(s) || s->next_offset <= from)
			continue;
		int rv = plog__ensure_index(l, s);
		if (rv != 0)
			return rv;
		uint64_t pos = segment_seek_offset(s, from);
		while (pos < s->size) {
			struct record_env e;
			rv = read_checked(l, s, pos, &e, false);
			if (rv == -EBADMSG && out->messages > 0)
				return 0; /* serve what precedes the damage */
			if (rv != 0)
				return rv == -ENODATA ? 0 : rv;
			uint64_t rec_next = pos + RECORD_ENVELOPE_SIZE + (uint64_t)e.length;
			if (e.type != RECORD_MESSAGES || e.base_offset + e.message_count <= from) {
				pos = rec_next;
				continue;
			}
			if (e.base_offset > last)
				return 0;
			rv = verify_checked(l, s, pos, &e);
			if (rv == -EBADMSG && out->messages > 0)
				return 0;
			if (rv != 0)
				return rv;
			uint64_t a = from > e.base_offset ? from : e.base_offset;
			uint64_t b = e.base_offset + e.message_count - 1;
			if (b > last)
				b = last;
			uint64_t room = (uint64_t)max_messages - out->messages;
			if (b - a + 1 > room)
				b = a + room - 1;
			rv = add_messages(out, s, pos, &e, a, b);
			if (rv != 0)
				return rv;
			if (out->messages >= max_messages || b == last || out->bytes >= max_bytes)
				return 0;
			from = b + 1;
			pos = rec_next;
		}
	}
	return 0;
}

int plog_find_timestamp(struct plog *l, uint64_t ts, uint64_t *offset)
{
	for (size_t i = 0; i < l->n_segs; i++) {
		struct segment *s = l->segs[i];
		if (plog__seg_empty(s) || s->last_ts < ts || s->next_offset == s->base_offset)
			continue;
		int rv = plog__ensure_index(l, s);
		if (rv != 0)
			return rv;
		uint64_t pos = segment_seek_time_before(s, ts);
		while (pos < s->size) {
			struct record_env e;
			rv = segment_read_env(s, pos, &e);
			if (rv == -ENODATA)
				break;
			if (rv != 0)
				return rv;
			if (e.type == RECORD_MESSAGES && e.timestamp >= ts) {
				*offset = e.base_offset;
				return 0;
			}
			pos += RECORD_ENVELOPE_SIZE + (uint64_t)e.length;
		}
	}
	*offset = plog__active(l)->next_offset;
	return 0;
}

int plog_read_records(struct plog *l, uint64_t from, uint64_t to, uint64_t max_bytes, struct plog_slice *out,
		      uint32_t *n_records)
{
	slice_init(l, out);
	*n_records = 0;
	if (from < plog_first_index(l) || from > to || to > plog__active(l)->last_index)
		return from > to ? 0 : -ENOENT;
	for (size_t i = plog__seg_for_index(l, from); i < l->n_segs && from <= to; i++) {
		struct segment *s = l->segs[i];
		if (plog__seg_empty(s) || s->last_index < from)
			continue;
		int rv = plog__ensure_index(l, s);
		uint64_t pos;
		struct record_env e;
		if (rv == 0)
			rv = segment_find_index(s, from, &pos, &e);
		if (rv != 0)
			return rv;
		while (from <= to && from <= s->last_index) {
			if (e.index != from)
				return -EBADMSG;
			rv = verify_checked(l, s, pos, &e);
			if (rv == -EBADMSG && *n_records > 0)
				return 0; /* send what precedes the damage */
			if (rv != 0)
				return rv;
			rv = add_file_piece(out, s, pos, RECORD_ENVELOPE_SIZE + (size_t)e.length);
			if (rv != 0)
				return rv;
			(*n_records)++;
			from++;
			if (out->bytes >= max_bytes)
				return 0;
			pos += RECORD_ENVELOPE_SIZE + (uint64_t)e.length;
			if (from <= s->last_index) {
				rv = read_checked(l, s, pos, &e, false);
				if (rv == -EBADMSG && *n_records > 0)
					return 0;
				if (rv != 0)
					return rv;
			}
		}
	}
	return 0;
}

int plog_entry_at(struct plog *l, uint64_t index, struct record_env *env)
{
	if (index < plog_first_index(l) || index > plog__active(l)->last_index)
		return -ENOENT;
	struct segment *s = l->segs[plog__seg_for_index(l, index)];
	int rv = plog__ensure_index(l, s);
	uint64_t pos;
	if (rv == 0)
		rv = segment_find_index(s, index, &pos, env);
	return rv;
}

int64_t plog_scrub(struct plog *l, uint64_t max_bytes)
{
	uint64_t done = 0;
	if (l->scrub_seg >= l->n_segs)
		l->scrub_seg = 0;
	for (size_t k = 0; k < l->n_segs && done < max_bytes; k++) {
		struct segment *s = l->segs[l->scrub_seg];
		bool was_fenced = s->bad_at != 0 && s->verified_to >= s->bad_at;
		int64_t n = segment_scrub(s, max_bytes - done);
		if (n == -EBADMSG) {
			struct record_env e;
			bool env_ok = segment_read_env(s, s->bad_at, &e) == 0;
			note_damage(l, s, s->bad_at, env_ok ? &e : NULL, was_fenced);
			n = 0;
		}
		if (n < 0)
			return n;
		done += (uint64_t)n;
		if (done < max_bytes)
			l->scrub_seg = (l->scrub_seg + 1) % l->n_segs;
	}
	return (int64_t)done;
}

uint64_t plog_damaged(const struct plog *l)
{
	return l->damaged;
}

uint64_t plog_unverified_bytes(const struct plog *l)
{
	uint64_t n = 0;
	for (size_t i = 0; i < l->n_segs; i++) {
		const struct segment *s = l->segs[i];
		if (s->verified_to < s->vtail)
			n += s->vtail - s->verified_to;
	}
	return n;
}
