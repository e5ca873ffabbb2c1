/*
 * plog — the log of one partition. See plog.h for the behaviour; segment.h and record.h for the bytes.
 *
 * Recovery point file `recovery.meta`: two 32-byte slots, at byte 0 and byte 32.
 *
 *     off size field
 *       0    8 seq        slot written with sequence number seq goes to slot seq % 2
 *       8    8 index      every record with Raft index ≤ index was durable when the slot was written
 *      16    8 reserved   0
 *      24    8 check      XXH3 of bytes 0..24
 *
 * The valid slot with the greater seq is the recovery point (0 if neither is valid or the file is
 * missing). A slot is written only after the records it names were made durable, mostly without an
 * fdatasync of its own, so after a power loss the point found is a lower bound of what was durable: all
 * records up to it were durable, so a bad one among them is damage, never a torn write. The slot is made
 * durable before any truncation that goes below it (so rewritten indexes are never trusted) and at close.
 */
#include "partition/plog.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "partition/segment.h"

#include "partition/plog_int.h"

/* Small helpers. */

static uint64_t real_clock_us(void *ud)
{
	(void)ud;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void plog__logf(struct plog *l, int level, const char *fmt, ...)
{
	if (l->o.log == NULL)
		return;
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "partition %s: ", l->dir);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	l->o.log(l->o.log_ud, level, buf);
}

struct segment *plog__active(const struct plog *l)
{
	assert(l->n_segs > 0); /* an open log always has an active segment */
	return l->segs[l->n_segs - 1];
}

bool plog__seg_empty(const struct segment *s)
{
	return s->last_index < s->first_index;
}

int plog__grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 8;
	while (c < need)
		c *= 2;
	void *n = realloc(*arr, c * elem);
	if (n == NULL)
		return -ENOMEM;
	*arr = n;
	*cap = c;
	return 0;
}

static int segs_push(struct plog *l, struct segment *s)
{
	int rv = plog__grow((void **)&l->segs, &l->cap_segs, l->n_segs + 1, sizeof(*l->segs));
	if (rv == 0)
		l->segs[l->n_segs++] = s;
	return rv;
}

static int dirty_add(struct plog *l, struct segment *s)
{
	for (size_t i = 0; i < l->n_dirty; i++)
		if (l->dirty[i] == s)
			return 0;
	int rv = plog__grow((void **)&l->dirty, &l->cap_dirty, l->n_dirty + 1, sizeof(*l->dirty));
	if (rv != 0)
		return rv;
	segment_ref(s);
	l->dirty[l->n_dirty++] = s;
	return 0;
}

/* Makes sure a segment's index is in memory, unloading the least recently used sealed ones. */
int plog__ensure_index(struct plog *l, struct segment *s)
{
	s->idx_used = ++l->idx_clock;
	if (s->idx_loaded)
		return 0;
	int rv = segment_index_load(s);
	if (rv != 0)
		return rv;
	size_t loaded = 0;
	struct segment *lru = NULL;
	for (size_t i = 0; i + 1 < l->n_segs; i++) {
		struct segment *t = l->segs[i];
		if (!t->idx_loaded || t->oix != NULL)
			continue;
		loaded++;
		if (t != s && (lru == NULL || t->idx_used < lru->idx_used))
			lru = t;
	}
	if (loaded > MAX_LOADED_INDEXES && lru != NULL)
		segment_index_unload(lru);
	return 0;
}

/* Recovery point. */

static int meta_write(struct plog *l, uint64_t index, bool sync)
{
	uint8_t b[32] = {0};
	uint64_t seq = l->rp_seq + 1;
	record_put64(b, seq);
	record_put64(b + 8, index);
	record_put64(b + 24, XXH3_64bits(b, 24));
	struct iovec iov = {b, sizeof(b)};
	int rv = pio_pwritev(l->pio, l->meta, &iov, 1, (seq % 2) * 32);
	if (rv == 0 && sync)
		rv = pio_datasync(l->pio, l->meta);
	if (rv == 0) {
		l->rp_seq = seq;
		l->rp_index = index;
		l->rounds_since_rp = 0;
	}
	return rv;
}

static int meta_open(struct plog *l)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/recovery.meta", l->dir);
	int rv = pio_open(l->pio, path, PIO_CREATE | PIO_RDWR, &l->meta);
	if (rv != 0)
		return rv;
	uint8_t b[64] = {0};
	ssize_t n = pio_pread(l->pio, l->meta, b, sizeof(b), 0);
	if (n < 0)
		return (int)n;
	l->rp_seq = 0;
	l->rp_index = 0;
	for (int s = 0; s < 2; s++) {
		const uint8_t *p = b + 32 * s;
		if ((size_t)n < 32u * (size_t)(s + 1) || record_le64(p + 24) != XXH3_64bits(p, 24))
			continue;
		uint64_t seq = record_le64(p);
		if (seq > l->rp_seq) {
			l->rp_seq = seq;
			l->rp_index = record_le64(p + 8);
		}
	}
	return 0;
}

/* Pending appends. */

static void complete_upto(struct plog *l, uint64_t index, int status)
{
	while (l->pend_head != NULL && l->pend_head->index <= index) {
		struct plog_append_req *r = l->pend_head;
		l->pend_head = r->next;
		if (l->pend_head == NULL)
			l->pend_tail = NULL;
		r->next = NULL;
		r->cb(r, status);
	}
}

/* Fails the pending appends with index ≥ from (they were removed from the log). */
static void cancel_from(struct plog *l, uint64_t from, int status)
{
	struct plog_append_req *keep_tail = NULL, *r = l->pend_head, *cancel = NULL;
	while (r != NULL && r->index < from) {
		keep_tail = r;
		r = r->next;
	}
	cancel = r;
	if (keep_tail != NULL)
		keep_tail->next = NULL;
	else
		l->pend_head = NULL;
	l->pend_tail = keep_tail;
	while (cancel != NULL) {
		struct plog_append_req *next = cancel->next;
		cancel->next = NULL;
		cancel->cb(cancel, status);
		cancel = next;
	}
}

/* Flusher callbacks. */

#define PLOG_OF(it) ((struct plog *)((char *)(it) - offsetof(struct plog, fitem)))

static void fl_prepare(struct flusher_item *it)
{
	struct plog *l = PLOG_OF(it);
	assert(l->snap.n == 0); /* the flusher never prepares a log whose sync is still in flight */
	if (plog__grow((void **)&l->snap.segs, &l->snap.cap, l->n_dirty, sizeof(*l->snap.segs)) != 0) {
		/* Sync nothing this round; the segments stay dirty for the next one. */
		l->snap.index = l->durable_index;
		l->snap.next_offset = l->durable_next_offset;
		l->snap.epoch = l->epoch;
		l->snap.dir = false;
		return;
	}
	for (size_t i = 0; i < l->n_dirty; i++) {
		struct segment *s = l->dirty[i];
		l->snap.segs[l->snap.n++] = (struct snap_seg){s, s->sealed && s->oix != NULL};
	}
	l->n_dirty = 0; /* the references move to the snapshot */
	l->snap.dir = l->dir_dirty;
	l->dir_dirty = false;
	l->snap.index = plog__active(l)->last_index;
	l->snap.next_offset = plog__active(l)->next_offset;
	l->snap.epoch = l->epoch;
	assert(l->snap.index >= l->durable_index);
}

static int fl_sync(struct flusher_item *it)
{
	struct plog *l = PLOG_OF(it);
	for (size_t i = 0; i < l->snap.n; i++) {
		struct segment *s = l->snap.segs[i].seg;
		int rv = pio_datasync(l->pio, s->data);
		if (rv == 0 && l->snap.segs[i].sync_indexes) {
			rv = pio_datasync(l->pio, s->oix);
			if (rv == 0)
				rv = pio_datasync(l->pio, s->tix);
		}
		if (rv != 0)
			return rv;
	}
	if (l->snap.dir)
		return pio_syncdir(l->pio, l->dir);
	return 0;
}

static void fl_done(struct flusher_item *it, int status)
{
	struct plog *l = PLOG_OF(it);
	for (size_t i = 0; i < l->snap.n; i++) {
		struct segment *s = l->snap.segs[i].seg;
		if (l->snap.segs[i].sync_indexes && status == 0 && s->sealed && s->oix != NULL) {
			pio_close(l->pio, s->oix);
			pio_close(l->pio, s->tix);
			s->oix = s->tix = NULL;
		}
		segment_unref(s);
	}
	l->snap.n = 0;
	uint64_t was_durable = l->durable_index;
	if (status != 0) {
		plog__logf(l, 2, "flush failed (%s); the partition refuses writes until reopened", strerror(-status));
		l->failed = true;
		complete_upto(l, UINT64_MAX, status);
		return;
	}
	if (l->snap.epoch == l->epoch && l->snap.index > l->durable_index) {
		l->durable_index = l->snap.index;
		l->durable_next_offset = l->snap.next_offset;
	}
	/* A flush never moves the durable index back, nor past what was written. */
	assert(l->durable_index >= was_durable && l->durable_index <= plog__active(l)->last_index);
	if (l->o.durability == PLOG_DURABILITY_FSYNC)
		complete_upto(l, l->durable_index, 0);
	if (l->durable_index > l->rp_index && ++l->rounds_since_rp >= RP_EVERY_ROUNDS)
		(void)meta_write(l, l->durable_index, false);
}

static void fl_ready(struct flusher_item *it)
{
	struct plog *l = PLOG_OF(it);
	if (l->o.durability != PLOG_DURABILITY_FSYNC)
		complete_upto(l, plog__active(l)->last_index, 0);
}

static const struct flusher_item_ops plog_fl_ops = {fl_prepare, fl_sync, fl_done, fl_ready};

/* Open and recovery. */

void plog_opts_default(struct plog_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->segment_size = 1ull << 30;
	o->index_interval = 4096;
	o->durability = PLOG_DURABILITY_FSYNC;
	o->interval_ms = 1000;
	o->first_index = 1;
	o->first_offset = 0;
}

static int list_segments(struct plog *l, uint64_t **out, size_t *n_out)
{
	char **names;
	size_t n;
	int rv = pio_list(l->pio, l->dir, &names, &n);
	if (rv != 0)
		return rv;
	uint64_t *idx = calloc(n ? n : 1, sizeof(*idx));
	size_t k = 0;
	if (idx == NULL) {
		pio_list_free(names, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t v;
		if (segment_parse_name(names[i], &v) && v > 0)
			idx[k++] = v;
	}
	pio_list_free(names, n);
	*out = idx;
	*n_out = k;
	return 0;
}

static void report_damage(struct plog *l, struct plog_report *rep, const struct segment *s, uint64_t index,
			  uint64_t pos, const char *why)
{
	rep->damaged_index = index;
	rep->damaged_pos = pos;
	snprintf(rep->damaged_segment, sizeof(rep->damaged_segment), "%020llu.log",
		 (unsigned long long)(s != NULL ? s->first_index : index));
	plog__logf(l, 2, "damage in the middle of the log: %s (record %llu at byte %llu of %s)", why,
	      (unsigned long long)index, (unsigned long long)pos, rep->damaged_segment);
}

static void drop_segment(struct plog *l, struct segment *s, struct plog_report *rep, const char *why)
{
	plog__logf(l, 1, "removing segment %llu: %s", (unsigned long long)s->first_index, why);
	rep->torn_bytes_cut += s->size;
	segment_unlink(s);
	segment_unref(s);
	l->dir_dirty = true;
}

static int recover(struct plog *l, struct plog_report *rep)
{
	uint64_t *firsts;
	size_t n;
	int rv = list_segments(l, &firsts, &n);
	if (rv != 0)
		return rv;
	rep->segments = (uint32_t)n;
	struct segment **opened = calloc(n ? n : 1, sizeof(*opened));
	struct seg_scan *scans = calloc(n ? n : 1, sizeof(*scans));
	if (opened == NULL || scans == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		rv = segment_open(l->pio, l->dir, firsts[i], l->o.index_interval, l->o.verify_all ? 0 : l->rp_index,
				  &opened[i], &scans[i]);
		if (rv == -EBADMSG && i + 1 == n) {
			/* A last segment whose header is missing or torn: a roll that never became durable. */
			struct segment tmp = {.first_index = firsts[i]};
			char *base = segment_base_path(l->dir, firsts[i]);
			char path[4200];
			snprintf(path, sizeof(path), "%s.log", base ? base : "");
			struct pio_file *f;
			uint64_t size = 0;
			if (base != NULL && pio_open(l->pio, path, PIO_RDONLY, &f) == 0) {
				pio_size(l->pio, f, &size);
				pio_close(l->pio, f);
			}
			if (base != NULL && size <= SEGMENT_HEADER_SIZE) {
				static const char *const exts[] = {".log", ".oix", ".tix"};
				for (int e = 0; e < 3; e++) {
					snprintf(path, sizeof(path), "%s%s", base, exts[e]);
					pio_unlink(l->pio, path);
				}
				free(base);
				rep->torn_bytes_cut += size;
				l->dir_dirty = true;
				plog__logf(l, 1, "removed segment %llu whose creation was torn", (unsigned long long)firsts[i]);
				n--;
				rv = 0;
				break;
			}
			free(base);
			report_damage(l, rep, &tmp, firsts[i], 0, "segment header is invalid");
			goto out;
		}
		if (rv == -EBADMSG) {
			struct segment tmp = {.first_index = firsts[i]};
			report_damage(l, rep, &tmp, firsts[i], 0, "segment header is invalid");
			goto out;
		}
		if (rv != 0)
			goto out;
		rep->records_verified += scans[i].records_verified;
		if (scans[i].index_rebuilt)
			rep->indexes_rebuilt++;
	}
	/* Walk the segments in order, checking continuity and deciding on torn tails. */
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		struct segment *s = opened[i];
		if (i > start) {
			struct segment *p = opened[i - 1];
			if (s->first_index != p->last_index + 1) {
				report_damage(l, rep, s, p->last_index + 1, 0, "Raft indexes are not contiguous");
				rv = -EBADMSG;
				goto out;
			}
			if (s->base_offset != p->next_offset) {
				/* A purge started a new history here; what came before is obsolete. */
				for (size_t k = start; k < i; k++) {
					drop_segment(l, opened[k], rep, "precedes a purge");
					opened[k] = NULL;
				}
				start = i;
			}
		}
		if (!scans[i].bad)
			continue;
		uint64_t bad_index = s->last_index + 1;
		if (bad_index <= l->rp_index) {
			report_damage(l, rep, s, bad_index, scans[i].bad_pos, "a durable record fails its checks");
			rv = -EBADMSG;
			goto out;
		}
		bool found = false;
		rv = segment_valid_after(s, scans[i].bad_pos + 1, s->last_index, &found);
		if (rv != 0)
			goto out;
		for (size_t k = i + 1; k < n && !found; k++)
			found = !plog__seg_empty(opened[k]);
		if (found) {
			report_damage(l, rep, s, bad_index, scans[i].bad_pos, "valid records follow an invalid one");
			rv = -EBADMSG;
			goto out;
		}
		uint64_t cut = s->size - scans[i].bad_pos;
		plog__logf(l, 1, "cutting a torn tail of %llu bytes at byte %llu of segment %llu", (unsigned long long)cut,
		      (unsigned long long)scans[i].bad_pos, (unsigned long long)s->first_index);
		rv = segment_cut(s, scans[i].bad_pos);
		if (rv == 0 && scans[i].index_rebuilt)
			rv = segment_index_write_all(s);
		if (rv != 0)
			goto out;
		rep->torn_bytes_cut += cut;
		for (size_t k = i + 1; k < n; k++) {
			drop_segment(l, opened[k], rep, "follows a torn tail");
			opened[k] = NULL;
		}
		n = i + 1;
		break;
	}
	for (size_t i = start; i < n; i++) {
		rv = segs_push(l, opened[i]);
		if (rv != 0)
			goto out;
		opened[i] = NULL;
	}
	if (l->n_segs > 0 && plog__active(l)->last_index < l->rp_index) {
		report_damage(l, rep, plog__active(l), plog__active(l)->last_index + 1, plog__active(l)->size,
			      "durable records are missing from the end");
		rv = -EBADMSG;
		goto out;
	}
out:
	if (opened != NULL)
		for (size_t i = 0; i < n; i++)
			if (opened[i] != NULL)
				segment_unref(opened[i]);
	free(opened);
	free(scans);
	free(firsts);
	return rv;
}

static void free_log(struct plog *l)
{
	for (size_t i = 0; i < l->n_segs; i++)
		segment_unref(l->segs[i]);
	for (size_t i = 0; i < l->n_dirty; i++)
		segment_unref(l->dirty[i]);
	for (size_t i = 0; i < l->snap.n; i++)
		segment_unref(l->snap.segs[i].seg);
	if (l->meta != NULL)
		pio_close(l->pio, l->meta);
	free(l->segs);
	free(l->dirty);
	free(l->snap.segs);
	free(l->dir);
	free(l);
}

int plog_open(struct pio *pio, struct flusher *fl, const char *dir, const struct plog_opts *opts,
	      struct plog_report *report, struct plog **out)
{
	struct plog_report local;
	if (report == NULL)
		report = &local;
	memset(report, 0, sizeof(*report));
	struct plog *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->pio = pio;
	l->fl = fl;
	l->dir = strdup(dir);
	if (opts != NULL)
		l->o = *opts;
	else
		plog_opts_default(&l->o);
	if (l->o.segment_size == 0 || l->o.segment_size > SEGMENT_MAX_SIZE)
		l->o.segment_size = l->o.segment_size ? SEGMENT_MAX_SIZE : 1ull << 30;
	if (l->o.index_interval == 0)
		l->o.index_interval = 4096;
	if (l->o.first_index == 0)
		l->o.first_index = 1;
	if (l->o.clock_us == NULL)
		l->o.clock_us = real_clock_us;
	l->fitem.ops = &plog_fl_ops;
	int rv = l->dir == NULL ? -ENOMEM : pio_mkdir(pio, dir);
	if (rv == 0)
		rv = meta_open(l);
	if (rv == 0)
		rv = recover(l, report);
	if (rv != 0)
		goto err;
	if (l->n_segs == 0) {
		struct segment *s;
		rv = segment_create(pio, dir, l->o.first_index, l->o.first_offset, l->o.clock_us(l->o.clock_ud),
				    l->o.index_interval, &s);
		if (rv != 0)
			goto err;
		rv = segs_push(l, s);
		if (rv != 0) {
			segment_unref(s);
			goto err;
		}
		l->dir_dirty = true;
	}
	for (size_t i = 0; i + 1 < l->n_segs; i++) {
		l->segs[i]->sealed = true;
		segment_index_unload(l->segs[i]);
	}
	/* The active segment's index files are open for appending and match its loaded index. */
	rv = segment_index_write_all(plog__active(l));
	if (rv != 0)
		goto err;
	for (size_t i = l->n_segs; i-- > 0;)
		if (!plog__seg_empty(l->segs[i])) {
			l->last_ts = l->segs[i]->last_ts;
			break;
		}
	/* What recovery saw may still be only in the page cache (a process crash): make it durable once. */
	rv = pio_datasync(pio, plog__active(l)->data);
	if (rv == 0)
		rv = pio_syncdir(pio, dir);
	if (rv == 0)
		rv = meta_write(l, plog__active(l)->last_index, true);
	if (rv != 0)
		goto err;
	l->dir_dirty = false;
	l->durable_index = plog__active(l)->last_index;
	l->durable_next_offset = plog__active(l)->next_offset;
	assert(l->rp_index == l->durable_index && l->pend_head == NULL);
	if (report->torn_bytes_cut || report->indexes_rebuilt)
		plog__logf(l, 1, "recovered: %u segments, %u indexes rebuilt, %llu torn bytes cut, %llu records verified",
		      report->segments, report->indexes_rebuilt, (unsigned long long)report->torn_bytes_cut,
		      (unsigned long long)report->records_verified);
	*out = l;
	return 0;
err:
	free_log(l);
	return rv;
}

/* Waits until the flusher is done with this log. */
static void detach(struct plog *l)
{
	if (l->fl == NULL)
		return;
	flusher_forget(l->fl, &l->fitem);
	while (flusher_busy(&l->fitem))
		flusher_drain(l->fl);
}

/* Makes everything written durable, synchronously (close). */
static int flush_all(struct plog *l)
{
	int rv = 0;
	for (size_t i = 0; i < l->n_segs && rv == 0; i++) {
		struct segment *s = l->segs[i];
		bool dirty = false;
		for (size_t k = 0; k < l->n_dirty; k++)
			dirty |= l->dirty[k] == s;
		if (!dirty && s->oix == NULL)
			continue;
		rv = pio_datasync(l->pio, s->data);
		if (rv == 0 && s->oix != NULL) {
			rv = pio_datasync(l->pio, s->oix);
			if (rv == 0)
				rv = pio_datasync(l->pio, s->tix);
		}
	}
	if (rv == 0 && l->dir_dirty)
		rv = pio_syncdir(l->pio, l->dir);
	if (rv == 0 && !l->failed)
		rv = meta_write(l, plog__active(l)->last_index, true);
	return rv;
}

int plog_close(struct plog *l)
{
	detach(l);
	int rv = l->failed ? -EIO : flush_all(l);
	complete_upto(l, UINT64_MAX, rv);
	free_log(l);
	return rv;
}

int plog_destroy(struct plog *l)
{
	detach(l);
	cancel_from(l, 0, -ECANCELED);
	int rv = 0;
	for (size_t i = 0; i < l->n_segs; i++) {
		int r = segment_unlink(l->segs[i]);
		if (rv == 0)
			rv = r;
	}
	char path[4200];
	snprintf(path, sizeof(path), "%s/recovery.meta", l->dir);
	pio_unlink(l->pio, path);
	int r = pio_rmdir(l->pio, l->dir);
	if (rv == 0 && r != -ENOENT)
		rv = r;
	free_log(l);
	return rv;
}

/* Appends. */

void plog_stamp(struct plog *l, uint8_t *batch, uint64_t partition_id)
{
	uint64_t now = l->o.clock_us(l->o.clock_ud);
	if (now < l->last_ts)
		now = l->last_ts;
	batch_stamp(batch, partition_id, plog__active(l)->next_offset, now);
}

/* Seals the active segment and starts a new one at index/offset. */
static int roll(struct plog *l, uint64_t first_index)
{
	struct segment *old = plog__active(l);
	/* Only a segment holding records is sealed, and the new one continues it. */
	assert(!plog__seg_empty(old) && first_index == old->last_index + 1);
	struct segment *s;
	int rv = segment_create(l->pio, l->dir, first_index, old->next_offset, l->o.clock_us(l->o.clock_ud),
				l->o.index_interval, &s);
	if (rv != 0)
		return rv;
	rv = segs_push(l, s);
	if (rv == 0)
		rv = dirty_add(l, old);
	if (rv == 0)
		rv = dirty_add(l, s);
	if (rv != 0) {
		/* Undo: the new segment never became part of the log. */
		if (l->n_segs > 0 && plog__active(l) == s)
			l->n_segs--;
		for (size_t i = 0; i < l->n_dirty; i++)
			if (l->dirty[i] == s) {
				segment_unref(s);
				l->dirty[i] = l->dirty[--l->n_dirty];
				break;
			}
		segment_unlink(s);
		segment_unref(s);
		return rv;
	}
	old->sealed = true;
	l->dir_dirty = true;
	flusher_mark(l->fl, &l->fitem, 0);
	return 0;
}

int plog_append(struct plog *l, struct plog_append_req *req, const struct plog_entry *e, plog_append_cb cb)
{
	if (l->failed)
		return -EIO;
	struct segment *s = plog__active(l);
	if (e->index != s->last_index + 1 || e->length > RECORD_MAX_PAYLOAD || (e->length > 0 && e->payload == NULL))
		return -EINVAL;
	struct record_env env = {.type = e->type, .index = e->index, .term = e->term};
	if (e->type == RECORD_MESSAGES) {
		if (e->length < BATCH_HEADER_SIZE)
			return -EINVAL;
		struct batch_hdr bh;
		batch_hdr_decode(e->payload, &bh);
		record_env_fill(&env, e->payload, e->length);
		if (bh.batch_length != e->length || env.message_count == 0 || env.base_offset != s->next_offset ||
		    env.timestamp < l->last_ts)
			return -EINVAL;
	} else if (e->type == RECORD_BARRIER || e->type == RECORD_CHANGE || e->type == RECORD_COMMAND) {
		env.base_offset = s->next_offset;
		env.timestamp = l->last_ts;
		record_env_fill(&env, e->payload, e->length);
		env.length = e->length;
		env.message_count = 0;
	} else {
		return -EINVAL;
	}
	env.type = e->type;
	env.index = e->index;
	env.term = e->term;
	if (!plog__seg_empty(s) && s->size + RECORD_ENVELOPE_SIZE + e->length > l->o.segment_size) {
		int rv = roll(l, e->index);
		if (rv != 0)
			return rv;
		s = plog__active(l);
	}
	assert(env.base_offset == s->next_offset && env.index == s->last_index + 1);
	uint8_t eb[RECORD_ENVELOPE_SIZE];
	record_env_encode(&env, eb);
	int rv = dirty_add(l, s);
	if (rv != 0)
		return rv;
	rv = segment_append(s, eb, &env, e->payload);
	if (rv != 0) {
		if (rv == -EIO) {
			l->failed = true;
			plog__logf(l, 2, "a failed write could not be undone; the partition refuses writes until reopened");
		}
		return rv;
	}
	/* Offsets stay contiguous: the next offset is exactly the previous plus the record's messages. */
	assert(s->last_index == env.index && s->next_offset == env.base_offset + env.message_count);
	assert(l->durable_index < s->last_index);
	assert(l->pend_tail == NULL || l->pend_tail->index < env.index);
	l->last_ts = env.timestamp;
	req->index = env.index;
	req->base_offset = env.base_offset;
	req->message_count = env.message_count;
	req->cb = cb;
	req->end = s->size;
	req->next = NULL;
	if (l->pend_tail != NULL)
		l->pend_tail->next = req;
	else
		l->pend_head = req;
	l->pend_tail = req;
	switch (l->o.durability) {
	case PLOG_DURABILITY_FSYNC:
		flusher_mark(l->fl, &l->fitem, 0);
		break;
	case PLOG_DURABILITY_INTERVAL:
		flusher_mark(l->fl, &l->fitem, l->o.interval_ms);
		flusher_defer(l->fl, &l->fitem);
		break;
	case PLOG_DURABILITY_NONE:
		flusher_defer(l->fl, &l->fitem);
		break;
	}
	return 0;
}

/* Removing records. */

/* Takes segment i out of the log (files unlinked; open handles live on in references). */
/* Drops segment i from the log's bookkeeping (its files are left alone). */
static void forget_segment(struct plog *l, size_t i)
{
	struct segment *s = l->segs[i];
	memmove(&l->segs[i], &l->segs[i + 1], (l->n_segs - i - 1) * sizeof(*l->segs));
	l->n_segs--;
	for (size_t k = 0; k < l->n_dirty; k++)
		if (l->dirty[k] == s) {
			l->dirty[k] = l->dirty[--l->n_dirty];
			segment_unref(s);
			break;
		}
	segment_unref(s);
	l->dir_dirty = true;
}

static void remove_segment(struct plog *l, size_t i)
{
	segment_unlink(l->segs[i]);
	forget_segment(l, i);
}

int plog_truncate(struct plog *l, uint64_t index)
{
	struct segment *a = plog__active(l);
	if (index > a->last_index)
		return 0;
	if (index < plog_first_index(l))
		return -EINVAL;
	/* Records at index and above may be rewritten with other contents: stop trusting them first. */
	int rv = 0;
	if (l->rp_index >= index)
		rv = meta_write(l, index - 1, true);
	if (rv != 0)
		return rv;
	size_t si = plog__seg_for_index(l, index);
	struct segment *s = l->segs[si];
	uint64_t pos = SEGMENT_HEADER_SIZE, new_next = s->base_offset, new_last_ts = 0;
	struct record_env e;
	if (index > s->first_index || !plog__seg_empty(s)) {
		rv = plog__ensure_index(l, s);
		if (rv == 0)
			rv = segment_find_index(s, index, &pos, &e);
		if (rv != 0)
			return rv;
		new_next = e.base_offset;
	}
	if (index - 1 >= plog_first_index(l) && index > 1) {
		struct record_env prev;
		rv = plog_entry_at(l, index - 1, &prev);
		if (rv != 0)
			return rv;
		new_last_ts = prev.timestamp;
	}
	while (l->n_segs > si + 1)
		remove_segment(l, l->n_segs - 1);
	if (s->oix == NULL) {
		/* It becomes the active segment again: reopen its index files for writing. */
		s->sealed = false;
		rv = plog__ensure_index(l, s);
		if (rv == 0)
			rv = segment_index_write_all(s);
		if (rv != 0)
			return rv;
	}
	s->sealed = false;
	rv = segment_cut(s, pos);
	if (rv != 0) {
		l->failed = true;
		return rv;
	}
	s->last_index = index - 1;
	s->next_offset = new_next;
	if (s->last_index < s->first_index)
		s->first_ts = s->last_ts = 0;
	else
		s->last_ts = new_last_ts;
	l->last_ts = new_last_ts;
	l->epoch++;
	if (l->durable_index >= index) {
		l->durable_index = index - 1;
		l->durable_next_offset = new_next;
	}
	assert(l->durable_index <= s->last_index && l->rp_index < index);
	rv = dirty_add(l, s);
	flusher_mark(l->fl, &l->fitem, 0);
	cancel_from(l, index, -ECANCELED);
	return rv;
}

int plog_retain(struct plog *l, uint64_t now_us, uint64_t max_age_us, uint64_t max_bytes, uint64_t safe_index)
{
	int deleted = 0;
	while (l->n_segs > 1) {
		struct segment *s = l->segs[0];
		if (s->last_index > safe_index)
			break;
		bool old = max_age_us != 0 && now_us > max_age_us && s->last_ts < now_us - max_age_us;
		bool big = max_bytes != 0 && plog_size(l) > max_bytes;
		if (!old && !big)
			break;
		remove_segment(l, 0);
		deleted++;
	}
	if (deleted > 0)
		flusher_mark(l->fl, &l->fitem, 0);
	return deleted;
}

uint64_t plog_retain_keep_from(const struct plog *l, uint64_t now_us, uint64_t max_age_us, uint64_t max_bytes,
			       uint64_t safe_index)
{
	uint64_t size = plog_size(l);
	for (size_t i = 0; i + 1 < l->n_segs; i++) {
		const struct segment *s = l->segs[i];
		bool old = max_age_us != 0 && now_us > max_age_us && s->last_ts < now_us - max_age_us;
		bool big = max_bytes != 0 && size > max_bytes;
		if (s->last_index > safe_index || (!old && !big))
			return s->first_index;
		size -= s->size;
	}
	return plog__active(l)->first_index;
}

uint64_t plog_drop_keep_from(const struct plog *l, uint32_t n, uint64_t safe_index)
{
	size_t i = 0;
	while (i < n && i + 1 < l->n_segs && l->segs[i]->last_index <= safe_index)
		i++;
	return l->segs[i]->first_index;
}

int plog_drop_segments(struct plog *l, uint32_t n, uint64_t safe_index)
{
	int deleted = 0;
	while ((uint32_t)deleted < n && l->n_segs > 1 && l->segs[0]->last_index <= safe_index) {
		remove_segment(l, 0);
		deleted++;
	}
	if (deleted > 0)
		flusher_mark(l->fl, &l->fitem, 0);
	return deleted;
}

int plog_purge(struct plog *l, uint64_t next_offset)
{
	uint64_t next_index = plog__active(l)->last_index + 1;
	int rv = plog__grow((void **)&l->segs, &l->cap_segs, l->n_segs + 1, sizeof(*l->segs));
	if (rv != 0)
		return rv;
	/* An empty active segment already named next_index must make room for the new one. */
	struct segment *keep = NULL;
	if (plog__active(l)->first_index == next_index) {
		keep = plog__active(l);
		segment_ref(keep);
		remove_segment(l, l->n_segs - 1);
	}
	struct segment *s;
	rv = segment_create(l->pio, l->dir, next_index, next_offset, l->o.clock_us(l->o.clock_ud),
			    l->o.index_interval, &s);
	if (rv != 0) {
		if (keep != NULL) {
			l->segs[l->n_segs++] = keep; /* its files are gone: refuse writes from now on */
			l->failed = true;
		}
		return rv;
	}
	if (keep != NULL)
		segment_unref(keep);
	while (l->n_segs > 0)
		remove_segment(l, l->n_segs - 1);
	l->segs[l->n_segs++] = s;
	l->epoch++;
	l->last_ts = 0;
	l->durable_next_offset = next_offset;
	/* A purge removes messages, never Raft indexes: the log goes on at next_index. */
	assert(s->last_index + 1 == next_index && l->durable_index < next_index);
	rv = dirty_add(l, s);
	l->dir_dirty = true;
	flusher_mark(l->fl, &l->fitem, 0);
	cancel_from(l, 0, -ECANCELED);
	return rv;
}

/*
 * The old history goes before the new one starts, each step durable, so a power loss at any point leaves
 * a log recovery accepts: the recovery point is lowered to 0 first (what is left of the old history is then
 * never mistaken for damage), the old segments are unlinked newest first (a directory that kept only some
 * of them keeps a prefix of the log) and the directory synced; only then is the new segment created (so a
 * file of the same name is never clobbered). A failure after the first unlink leaves the log failed.
 */
int plog_reset(struct plog *l, uint64_t first_index, uint64_t first_offset)
{
	if (first_index == 0 || first_index == UINT64_MAX)
		return -EINVAL;
	int rv = meta_write(l, 0, true);
	if (rv != 0)
		return rv;
	for (size_t i = l->n_segs; i-- > 0;)
		segment_unlink(l->segs[i]);
	rv = pio_syncdir(l->pio, l->dir);
	struct segment *s = NULL;
	if (rv == 0)
		rv = segment_create(l->pio, l->dir, first_index, first_offset, l->o.clock_us(l->o.clock_ud),
				    l->o.index_interval, &s);
	if (rv != 0) {
		l->failed = true; /* the old segments' files are gone; reads still work through their handles */
		return rv;
	}
	while (l->n_segs > 0)
		forget_segment(l, l->n_segs - 1);
	l->segs[l->n_segs++] = s;
	l->epoch++;
	l->last_ts = 0;
	l->durable_index = first_index - 1;
	l->durable_next_offset = first_offset;
	assert(l->n_segs == 1 && plog__active(l)->last_index == l->durable_index && l->rp_index == 0);
	rv = dirty_add(l, s);
	l->dir_dirty = true;
	flusher_mark(l->fl, &l->fitem, 0);
	cancel_from(l, 0, -ECANCELED);
	return rv;
}

/* Accessors. */

uint64_t plog_first_index(const struct plog *l)
{
	for (size_t i = 0; i < l->n_segs; i++)
		if (!plog__seg_empty(l->segs[i]))
			return l->segs[i]->first_index;
	return plog__active(l)->last_index + 1;
}

uint64_t plog_last_index(const struct plog *l)
{
	return plog__active(l)->last_index;
}

uint64_t plog_durable_index(const struct plog *l)
{
	return l->durable_index;
}

uint64_t plog_first_offset(const struct plog *l)
{
	for (size_t i = 0; i < l->n_segs; i++)
		if (l->segs[i]->next_offset != l->segs[i]->base_offset)
			return l->segs[i]->base_offset;
	return plog__active(l)->next_offset;
}

uint64_t plog_next_offset(const struct plog *l)
{
	return plog__active(l)->next_offset;
}

uint64_t plog_durable_next_offset(const struct plog *l)
{
	return l->durable_next_offset;
}

uint64_t plog_size(const struct plog *l)
{
	uint64_t n = 0;
	for (size_t i = 0; i < l->n_segs; i++)
		n += l->segs[i]->size;
	return n;
}

uint64_t plog_payload_bytes(const struct plog *l)
{
	uint64_t n = 0;
	for (size_t i = 0; i < l->n_segs; i++) {
		const struct segment *s = l->segs[i];
		uint64_t records = s->last_index + 1 - s->first_index;
		n += s->size - SEGMENT_HEADER_SIZE - records * RECORD_ENVELOPE_SIZE;
	}
	return n;
}

uint32_t plog_segment_count(const struct plog *l)
{
	return (uint32_t)l->n_segs;
}

uint64_t plog_last_timestamp(const struct plog *l)
{
	return l->last_ts;
}

bool plog_failed(const struct plog *l)
{
	return l->failed;
}
