/*
 * Tests of the partition log (partition/plog.h) on the simulated disk (and once on the real one):
 * append and read across segment rolls, lookups, retention, truncation, purge, recovery, power loss at
 * every write boundary, injected I/O errors and damage in the middle of the log.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "partition/piosim.h"
#include "partition/plog.h"
#include "partition/segment.h"

/* A fixture: a loop, an inline flusher and a simulated disk. */
static uv_loop_t loop;
static struct flusher *fl;
static struct pio *sim;
static uint64_t fake_now;

static uint64_t fake_clock(void *ud)
{
	(void)ud;
	return fake_now;
}

static void setup(void)
{
	uv_loop_init(&loop);
	cr_assert_eq(flusher_new(&loop, true, &fl), 0);
	sim = pio_sim_new();
	fake_now = 1000000;
}

static void teardown(void)
{
	flusher_close(fl);
	pio_destroy(sim);
	uv_run(&loop, UV_RUN_NOWAIT);
	cr_assert_eq(uv_loop_close(&loop), 0);
}

static struct plog_opts small_opts(uint64_t segment_size)
{
	struct plog_opts o;
	plog_opts_default(&o);
	o.segment_size = segment_size;
	o.index_interval = 256;
	o.clock_us = fake_clock;
	return o;
}

/* Completion tracking: each request remembers its status. */
struct ack {
	struct plog_append_req req;
	int status;
	bool fired;
};

static void ack_cb(struct plog_append_req *req, int status)
{
	struct ack *a = req->data;
	a->status = status;
	a->fired = true;
}

/*
 * Builds a batch of n messages whose payloads encode (tag, offset-in-batch) and appends it stamped.
 * Returns plog_append's result.
 */
static int append_msgs(struct plog *l, struct ack *a, uint32_t n, uint32_t size, uint32_t tag)
{
	size_t cap = 256 + (size_t)n * (48 + size + 64);
	uint8_t *batch = malloc(cap);
	const void **pl = calloc(n, sizeof(*pl));
	uint32_t *lens = calloc(n, sizeof(*lens));
	uint8_t *bodies = malloc((size_t)n * size + 1);
	for (uint32_t i = 0; i < n; i++) {
		memset(bodies + (size_t)i * size, (int)(tag + i), size);
		if (size >= 8) {
			memcpy(bodies + (size_t)i * size, &tag, 4);
			memcpy(bodies + (size_t)i * size + 4, &i, 4);
		}
		pl[i] = bodies + (size_t)i * size;
		lens[i] = size;
	}
	size_t len = batch_build(batch, cap, n, pl, lens, NULL, NULL, fake_now);
	cr_assert(len > 0);
	plog_stamp(l, batch, 7);
	memset(a, 0, sizeof(*a));
	a->req.data = a;
	struct plog_entry e = {RECORD_MESSAGES, plog_last_index(l) + 1, 1, batch, (uint32_t)len};
	int rv = plog_append(l, &a->req, &e, ack_cb);
	free(batch);
	free(pl);
	free(lens);
	free(bodies);
	fake_now += 1000;
	return rv;
}

/* Reads [from, from+max) and returns the copied bytes; checks every record in them verifies. */
static uint8_t *read_copy(struct plog *l, uint64_t from, uint32_t max, uint64_t upto, struct plog_slice *s)
{
	cr_assert_eq(plog_read(l, from, max, UINT64_MAX, upto, s), 0);
	uint8_t *buf = malloc(s->bytes + 1);
	cr_assert_eq(plog_slice_copy(s, buf), 0);
	size_t at = 0;
	uint32_t msgs = 0;
	uint64_t expect = s->first_offset;
	while (at < s->bytes) {
		struct batch_hdr h;
		batch_hdr_decode(buf + at, &h);
		cr_assert(h.batch_length <= s->bytes - at);
		cr_assert_eq(batch_verify(buf + at, h.batch_length, false), 0, "served record fails its checks");
		/* Offsets are contiguous across the records of the reply. */
		const uint8_t *f = buf + at + 256;
		for (uint32_t i = 0; i < h.message_count; i++) {
			struct batch_frame_hdr fh;
			batch_frame_hdr_decode(f, &fh);
			cr_assert_eq(h.base_offset + fh.offset_delta, expect);
			expect++;
			f += 48 + fh.payload_length + fh.user_headers_length;
		}
		msgs += h.message_count;
		at += h.batch_length;
	}
	cr_assert_eq(msgs, s->messages);
	return buf;
}

static void run_until_acked(struct ack *a)
{
	for (int i = 0; i < 1000 && !a->fired; i++) {
		flusher_drain(fl);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	cr_assert(a->fired, "append never completed");
}

TestSuite(plog, .init = setup, .fini = teardown);

Test(plog, appends_read_back_across_segment_rolls_with_offsets_contiguous)
{
	/* Records appended across several segments read back intact, from any offset, in offset order. */
	struct plog_opts o = small_opts(4096);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack acks[60];
	for (int i = 0; i < 60; i++)
		cr_assert_eq(append_msgs(l, &acks[i], 3, 100, (uint32_t)i), 0);
	run_until_acked(&acks[59]);
	for (int i = 0; i < 60; i++)
		cr_assert(acks[i].fired && acks[i].status == 0);
	cr_assert_eq(plog_next_offset(l), 180);
	cr_assert_gt(plog_segment_count(l), 5);
	cr_assert_eq(plog_durable_index(l), 60);
	for (uint64_t from = 0; from < 180; from += 7) {
		struct plog_slice s;
		uint8_t *buf = read_copy(l, from, 1000, UINT64_MAX, &s);
		cr_assert_eq(s.messages, 180 - from);
		cr_assert_eq(s.first_offset, from);
		cr_assert_eq(s.last_offset, 179);
		free(buf);
		plog_slice_release(&s);
	}
	/* A count limit slices the last batch; an upper bound stops at it. */
	struct plog_slice s;
	uint8_t *buf = read_copy(l, 4, 5, UINT64_MAX, &s);
	cr_assert_eq(s.messages, 5);
	cr_assert_eq(s.last_offset, 8);
	free(buf);
	plog_slice_release(&s);
	buf = read_copy(l, 0, 1000, 10, &s);
	cr_assert_eq(s.messages, 11);
	free(buf);
	plog_slice_release(&s);
	/* Beyond the end: empty. */
	cr_assert_eq(plog_read(l, 180, 10, UINT64_MAX, UINT64_MAX, &s), 0);
	cr_assert_eq(s.messages, 0);
	plog_slice_release(&s);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, whole_batches_are_served_as_file_ranges_and_cut_batches_get_a_new_header)
{
	/* A read of whole batches is all file ranges (zero copy); a cut batch adds one 256-byte header. */
	struct plog_opts o = small_opts(1 << 20);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	for (int i = 0; i < 4; i++)
		cr_assert_eq(append_msgs(l, &a, 10, 50, (uint32_t)i), 0);
	struct plog_slice s;
	cr_assert_eq(plog_read(l, 0, 40, UINT64_MAX, UINT64_MAX, &s), 0);
	cr_assert_eq(s.n_pieces, 4);
	for (size_t i = 0; i < s.n_pieces; i++)
		cr_assert_not_null(s.pieces[i].file);
	plog_slice_release(&s);
	cr_assert_eq(plog_read(l, 5, 10, UINT64_MAX, UINT64_MAX, &s), 0);
	cr_assert_eq(s.n_pieces, 4); /* header + frames 5..9, header + frames 0..4 of the second batch */
	cr_assert_null(s.pieces[0].file);
	cr_assert_eq(s.pieces[0].len, 256);
	cr_assert_eq(s.messages, 10);
	plog_slice_release(&s);
	plog_close(l);
}

Test(plog, timestamp_lookup_finds_the_first_batch_at_or_after_the_time)
{
	/* find_timestamp returns the base offset of the first batch whose timestamp is ≥ the one asked for. */
	struct plog_opts o = small_opts(2048);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	uint64_t t0 = fake_now;
	for (int i = 0; i < 40; i++)
		cr_assert_eq(append_msgs(l, &a, 2, 64, (uint32_t)i), 0); /* batch i stamped t0 + 1000 i */
	uint64_t off;
	cr_assert_eq(plog_find_timestamp(l, 0, &off), 0);
	cr_assert_eq(off, 0);
	cr_assert_eq(plog_find_timestamp(l, t0 + 1000 * 17, &off), 0);
	cr_assert_eq(off, 34);
	cr_assert_eq(plog_find_timestamp(l, t0 + 1000 * 17 + 1, &off), 0);
	cr_assert_eq(off, 36);
	cr_assert_eq(plog_find_timestamp(l, t0 + 1000 * 100, &off), 0);
	cr_assert_eq(off, 80);
	plog_close(l);
}

Test(plog, reopening_restores_the_same_log_and_rebuilds_missing_or_damaged_indexes)
{
	/* After close and open the log is the same; index files that vanished or were damaged are rebuilt. */
	struct plog_opts o = small_opts(4096);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	for (int i = 0; i < 50; i++)
		cr_assert_eq(append_msgs(l, &a, 4, 80, (uint32_t)i), 0);
	struct plog_slice s1;
	uint8_t *before = read_copy(l, 0, 10000, UINT64_MAX, &s1);
	uint32_t segs = plog_segment_count(l);
	cr_assert_eq(plog_close(l), 0);

	struct plog_report rep;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, &rep, &l), 0);
	cr_assert_eq(rep.segments, segs);
	cr_assert_eq(rep.torn_bytes_cut, 0);
	cr_assert_eq(rep.indexes_rebuilt, 0);
	cr_assert_eq(plog_next_offset(l), 200);
	struct plog_slice s2;
	uint8_t *after = read_copy(l, 0, 10000, UINT64_MAX, &s2);
	cr_assert_eq(s1.bytes, s2.bytes);
	cr_assert_eq(memcmp(before, after, s1.bytes), 0);
	free(after);
	plog_slice_release(&s2);
	cr_assert_eq(plog_close(l), 0);

	/* Remove one index file, damage another. */
	cr_assert_eq(pio_unlink(sim, "p0/00000000000000000001.oix"), 0);
	char name[64];
	snprintf(name, sizeof(name), "p0/%020u.tix", 0u);
	struct plog *l2;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, &rep, &l2), 0);
	cr_assert_eq(plog_close(l2), 0);
	uint64_t second = 0;
	{
		char **names;
		size_t n;
		cr_assert_eq(pio_list(sim, "p0", &names, &n), 0);
		for (size_t i = 0; i < n && second == 0; i++) {
			uint64_t v;
			if (segment_parse_name(names[i], &v) && v > 1)
				second = v;
		}
		pio_list_free(names, n);
	}
	snprintf(name, sizeof(name), "p0/%020llu.oix", (unsigned long long)second);
	cr_assert_eq(pio_sim_corrupt(sim, name, 17, 0x40), 0);
	cr_assert_eq(plog_open(sim, fl, "p0", &o, &rep, &l), 0);
	struct plog_slice s3;
	after = read_copy(l, 0, 10000, UINT64_MAX, &s3);
	cr_assert_eq(memcmp(before, after, s1.bytes), 0);
	free(after);
	free(before);
	plog_slice_release(&s3);
	plog_slice_release(&s1);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, index_rebuilt_when_its_file_is_missing_is_reported)
{
	/* Recovery reports the index files it had to rebuild. */
	struct plog_opts o = small_opts(4096);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	for (int i = 0; i < 30; i++)
		cr_assert_eq(append_msgs(l, &a, 4, 80, (uint32_t)i), 0);
	cr_assert_eq(plog_close(l), 0);
	cr_assert_eq(pio_unlink(sim, "p0/00000000000000000001.oix"), 0);
	struct plog_report rep;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, &rep, &l), 0);
	cr_assert_geq(rep.indexes_rebuilt, 1);
	uint64_t off;
	cr_assert_eq(plog_find_timestamp(l, 0, &off), 0);
	cr_assert_eq(off, 0);
	struct plog_slice s;
	uint8_t *b = read_copy(l, 3, 10000, UINT64_MAX, &s);
	cr_assert_eq(s.messages, 117);
	free(b);
	plog_slice_release(&s);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, retention_deletes_old_segments_by_age_and_by_size_but_never_the_active_one)
{
	/* Retention removes whole segments from the start, respecting age, size and the safe index. */
	struct plog_opts o = small_opts(2048);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	for (int i = 0; i < 60; i++)
		cr_assert_eq(append_msgs(l, &a, 2, 100, (uint32_t)i), 0);
	uint32_t segs = plog_segment_count(l);
	cr_assert_gt(segs, 4);
	/* Nothing is older than a day: no deletion. */
	cr_assert_eq(plog_retain(l, fake_now, 86400000000ull, 0, UINT64_MAX), 0);
	/* The safe index stops deletion at the first segment. */
	cr_assert_eq(plog_retain(l, fake_now, 1, 0, 1), 0);
	/* Age: everything older than 30 ms (batches 0..29 are older). */
	int del = plog_retain(l, fake_now, 30000, 0, UINT64_MAX);
	cr_assert_gt(del, 0);
	cr_assert_gt(plog_first_offset(l), 0);
	cr_assert_leq(plog_first_offset(l), 2 * 31);
	struct plog_slice s;
	uint8_t *b = read_copy(l, 0, 10000, UINT64_MAX, &s);
	cr_assert_eq(s.first_offset, plog_first_offset(l));
	cr_assert_eq(s.last_offset, 119);
	free(b);
	plog_slice_release(&s);
	/* Size: shrink below 3 KB; the active segment always stays. */
	del = plog_retain(l, fake_now, 0, 3000, UINT64_MAX);
	cr_assert_gt(del, 0);
	cr_assert_leq(plog_segment_count(l), 2);
	cr_assert_eq(plog_retain(l, fake_now, 1, 1, UINT64_MAX) >= 0, true);
	cr_assert_eq(plog_segment_count(l), 1);
	cr_assert_eq(plog_next_offset(l), 120);
	/* Reopen: the log starts where retention left it. */
	uint64_t first = plog_first_offset(l);
	cr_assert_eq(plog_close(l), 0);
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	cr_assert_eq(plog_first_offset(l), first);
	cr_assert_eq(plog_next_offset(l), 120);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, dropping_segments_removes_the_oldest_whole_segments_only)
{
	/* plog_drop_segments deletes the n oldest segments, never the active one nor past the safe index. */
	struct plog_opts o = small_opts(2048);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	for (int i = 0; i < 40; i++)
		cr_assert_eq(append_msgs(l, &a, 2, 100, (uint32_t)i), 0);
	uint32_t segs = plog_segment_count(l);
	cr_assert_gt(segs, 4);
	cr_assert_eq(plog_drop_segments(l, 2, 0), 0, "nothing is below the safe index 0");
	cr_assert_eq(plog_drop_segments(l, 2, UINT64_MAX), 2);
	cr_assert_eq(plog_segment_count(l), segs - 2);
	cr_assert_gt(plog_first_offset(l), 0);
	cr_assert_eq(plog_drop_segments(l, 1000, UINT64_MAX), (int)segs - 3);
	cr_assert_eq(plog_segment_count(l), 1);
	cr_assert_eq(plog_next_offset(l), 80);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, truncation_removes_the_suffix_and_offsets_roll_back)
{
	/* Truncating from a Raft index removes those records, later appends reuse the offsets. */
	struct plog_opts o = small_opts(2048);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a[40];
	for (int i = 0; i < 40; i++)
		cr_assert_eq(append_msgs(l, &a[i], 3, 90, (uint32_t)i), 0);
	run_until_acked(&a[39]);
	uint32_t segs = plog_segment_count(l);
	cr_assert_eq(plog_truncate(l, 11), 0);
	cr_assert_eq(plog_last_index(l), 10);
	cr_assert_eq(plog_next_offset(l), 30);
	cr_assert_lt(plog_segment_count(l), segs);
	cr_assert_eq(plog_durable_index(l), 10);
	struct record_env env;
	cr_assert_eq(plog_entry_at(l, 11, &env), -ENOENT);
	cr_assert_eq(plog_entry_at(l, 10, &env), 0);
	cr_assert_eq(env.base_offset, 27);
	/* New records continue at index 11, offset 30. */
	struct ack b[5];
	for (int i = 0; i < 5; i++)
		cr_assert_eq(append_msgs(l, &b[i], 3, 90, 1000u + (uint32_t)i), 0);
	cr_assert_eq(plog_last_index(l), 15);
	cr_assert_eq(b[0].req.base_offset, 30);
	/* A pending append that is truncated away fails with ECANCELED. */
	cr_assert_eq(plog_truncate(l, 14), 0);
	cr_assert(b[3].fired && b[3].status == -ECANCELED);
	cr_assert(b[4].fired && b[4].status == -ECANCELED);
	run_until_acked(&b[2]);
	cr_assert_eq(b[2].status, 0);
	/* Truncation survives a reopen. */
	cr_assert_eq(plog_close(l), 0);
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	cr_assert_eq(plog_last_index(l), 13);
	cr_assert_eq(plog_next_offset(l), 39);
	struct plog_slice s;
	uint8_t *buf = read_copy(l, 0, 1000, UINT64_MAX, &s);
	cr_assert_eq(s.messages, 39);
	free(buf);
	plog_slice_release(&s);
	cr_assert_eq(plog_truncate(l, 0), -EINVAL);
	cr_assert_eq(plog_truncate(l, 1), 0);
	cr_assert_eq(plog_next_offset(l), 0);
	cr_assert_eq(plog_last_index(l), 0);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, raft_records_without_messages_take_an_index_but_no_offset)
{
	/* BARRIER and CHANGE records use Raft indexes, not offsets, and are never served as messages. */
	struct plog_opts o = small_opts(1 << 20);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	struct plog_append_req r1 = {.data = &a}, r2 = {.data = &a};
	struct plog_entry b = {RECORD_BARRIER, 1, 1, NULL, 0};
	cr_assert_eq(plog_append(l, &r1, &b, ack_cb), 0);
	cr_assert_eq(append_msgs(l, &a, 3, 10, 1), 0);
	const char conf[] = "configuration bytes";
	struct plog_entry c = {RECORD_CHANGE, 3, 2, conf, sizeof(conf)};
	cr_assert_eq(plog_append(l, &r2, &c, ack_cb), 0);
	cr_assert_eq(append_msgs(l, &a, 2, 10, 2), 0);
	cr_assert_eq(plog_next_offset(l), 5);
	cr_assert_eq(plog_last_index(l), 4);
	struct plog_slice s;
	uint8_t *buf = read_copy(l, 0, 100, UINT64_MAX, &s);
	cr_assert_eq(s.messages, 5);
	cr_assert_eq(s.records, 2);
	free(buf);
	plog_slice_release(&s);
	/* Raw records by index: all four. */
	uint32_t n;
	cr_assert_eq(plog_read_records(l, 1, 4, UINT64_MAX, &s, &n), 0);
	cr_assert_eq(n, 4);
	buf = malloc(s.bytes);
	cr_assert_eq(plog_slice_copy(&s, buf), 0);
	struct record_env env;
	cr_assert_eq(record_env_decode(buf, &env), 0);
	cr_assert_eq(env.type, RECORD_BARRIER);
	size_t at = 64 + env.length;
	cr_assert_eq(record_env_decode(buf + at, &env), 0);
	cr_assert_eq(env.type, RECORD_MESSAGES);
	at += 64 + env.length;
	cr_assert_eq(record_env_decode(buf + at, &env), 0);
	cr_assert_eq(env.type, RECORD_CHANGE);
	cr_assert_eq(env.term, 2);
	cr_assert_eq(memcmp(buf + at + 64, conf, sizeof(conf)), 0);
	free(buf);
	plog_slice_release(&s);
	/* A wrong index or a batch with a stale base offset is refused and changes nothing. */
	struct plog_entry bad = {RECORD_BARRIER, 9, 1, NULL, 0};
	cr_assert_eq(plog_append(l, &r1, &bad, ack_cb), -EINVAL);
	cr_assert_eq(plog_last_index(l), 4);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, purge_removes_all_messages_and_keeps_the_raft_index_going)
{
	/* Purge deletes every message; offsets restart where asked and indexes continue. */
	struct plog_opts o = small_opts(2048);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	for (int i = 0; i < 20; i++)
		cr_assert_eq(append_msgs(l, &a, 3, 90, (uint32_t)i), 0);
	cr_assert_eq(plog_purge(l, 0), 0);
	cr_assert_eq(plog_segment_count(l), 1);
	cr_assert_eq(plog_next_offset(l), 0);
	cr_assert_eq(plog_first_index(l), 21);
	struct plog_slice s;
	cr_assert_eq(plog_read(l, 0, 100, UINT64_MAX, UINT64_MAX, &s), 0);
	cr_assert_eq(s.messages, 0);
	plog_slice_release(&s);
	cr_assert_eq(append_msgs(l, &a, 2, 10, 99), 0);
	cr_assert_eq(a.req.index, 21);
	cr_assert_eq(a.req.base_offset, 0);
	cr_assert_eq(plog_purge(l, 0), 0);
	cr_assert_eq(plog_purge(l, 0), 0);
	cr_assert_eq(plog_close(l), 0);
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	cr_assert_eq(plog_next_offset(l), 0);
	cr_assert_eq(plog_last_index(l), 21);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, a_failed_write_fails_the_append_and_the_log_stays_usable)
{
	/* ENOSPC on a write fails that append at once; earlier data stays readable; later appends work. */
	struct plog_opts o = small_opts(1 << 20);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a[3];
	cr_assert_eq(append_msgs(l, &a[0], 5, 100, 1), 0);
	run_until_acked(&a[0]);
	pio_sim_fail_nth(sim, 1, ENOSPC);
	cr_assert_eq(append_msgs(l, &a[1], 5, 100, 2), -ENOSPC);
	cr_assert_not(a[1].fired);
	cr_assert_eq(plog_next_offset(l), 5);
	cr_assert_not(plog_failed(l));
	cr_assert_eq(append_msgs(l, &a[2], 5, 100, 3), 0);
	run_until_acked(&a[2]);
	cr_assert_eq(a[2].status, 0);
	struct plog_slice s;
	uint8_t *buf = read_copy(l, 0, 100, UINT64_MAX, &s);
	cr_assert_eq(s.messages, 10);
	free(buf);
	plog_slice_release(&s);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, a_failed_fsync_fails_pending_appends_and_refuses_writes_but_reads_go_on)
{
	/* EIO from fdatasync fails every pending append; the log refuses writes, still serves reads. */
	struct plog_opts o = small_opts(1 << 20);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a[3];
	cr_assert_eq(append_msgs(l, &a[0], 5, 100, 1), 0);
	run_until_acked(&a[0]);
	cr_assert_eq(append_msgs(l, &a[1], 5, 100, 2), 0);
	pio_sim_fail_nth(sim, 1, EIO); /* the next mutating call is the round's fdatasync */
	run_until_acked(&a[1]);
	cr_assert_eq(a[1].status, -EIO);
	cr_assert(plog_failed(l));
	cr_assert_eq(append_msgs(l, &a[2], 1, 10, 3), -EIO);
	struct plog_slice s;
	uint8_t *buf = read_copy(l, 0, 100, UINT64_MAX, &s);
	cr_assert_eq(s.messages, 10);
	free(buf);
	plog_slice_release(&s);
	cr_assert_eq(plog_close(l), -EIO);
	/* Reopening recovers. */
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	cr_assert_not(plog_failed(l));
	cr_assert_eq(append_msgs(l, &a[2], 1, 10, 3), 0);
	cr_assert_eq(plog_close(l), 0);
}

Test(plog, every_injected_error_at_every_call_leaves_a_readable_log)
{
	/* Failing each mutating call in turn (EIO and ENOSPC) never crashes and never serves a bad record. */
	struct plog_opts o = small_opts(2048);
	for (int err = 0; err < 2; err++) {
		for (uint64_t nth = 1; nth < 120; nth++) {
			const char *dir = "e";
			pio_destroy(sim);
			sim = pio_sim_new();
			pio_sim_fail_nth(sim, nth, err ? ENOSPC : EIO);
			struct plog *l;
			if (plog_open(sim, fl, dir, &o, NULL, &l) != 0)
				continue;
			struct ack a[20];
			for (int i = 0; i < 20; i++) {
				append_msgs(l, &a[i], 3, 100, (uint32_t)i);
				if (i % 4 == 3)
					flusher_drain(fl);
			}
			flusher_drain(fl);
			struct plog_slice s;
			uint8_t *buf = read_copy(l, 0, 1000, UINT64_MAX, &s);
			free(buf);
			plog_slice_release(&s);
			plog_close(l);
			pio_sim_fail_nth(sim, 0, 0);
			/* Reopen works and every record in it verifies. */
			cr_assert_eq(plog_open(sim, fl, dir, &o, NULL, &l), 0, "reopen after error at call %llu",
				     (unsigned long long)nth);
			buf = read_copy(l, 0, 1000, UINT64_MAX, &s);
			free(buf);
			plog_slice_release(&s);
			plog_close(l);
		}
	}
}

Test(plog, damage_in_the_middle_is_reported_and_never_cut)
{
	/* With verify_all, a record that fails its checksum below the recovery point fails open (EBADMSG). */
	struct plog_opts o = small_opts(1 << 20);
	o.verify_all = true;
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	for (int i = 0; i < 20; i++)
		cr_assert_eq(append_msgs(l, &a, 4, 100, (uint32_t)i), 0);
	struct record_env env;
	cr_assert_eq(plog_entry_at(l, 10, &env), 0);
	cr_assert_eq(plog_close(l), 0);
	/* Record 10 starts at 64 + 9 records; hit a payload byte in it. */
	uint64_t rec = 64 + 9 * (64 + env.length);
	cr_assert_eq(pio_sim_corrupt(sim, "p0/00000000000000000001.log", rec + 64 + 300, 0x01), 0);
	struct plog_report rep;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, &rep, &l), -EBADMSG);
	cr_assert_eq(rep.damaged_index, 10);
	cr_assert_eq(rep.damaged_pos, rec);
	/* The files were not changed by the failed open. */
	uint64_t size;
	cr_assert_eq(pio_sim_durable_size(sim, "p0/00000000000000000001.log", &size), 0);
	cr_assert_eq(size, 64 + 20 * (64 + env.length));
}

Test(plog, damage_followed_by_valid_records_past_the_recovery_point_is_not_taken_for_a_torn_tail)
{
	/* Past the recovery point, a bad record with valid ones after it is damage, not a torn write. */
	struct plog_opts o = small_opts(1 << 20);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	uint32_t len = 0;
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(append_msgs(l, &a, 4, 100, (uint32_t)i), 0);
		run_until_acked(&a); /* durable, but the recovery point lags (written every 32 rounds) */
	}
	struct record_env env;
	cr_assert_eq(plog_entry_at(l, 5, &env), 0);
	len = env.length;
	/* Crash without close: only what was flushed survives. */
	pio_sim_crash_after(sim, 0);
	plog_close(l);
	cr_assert_eq(pio_sim_power_loss(sim, 0), 0);
	cr_assert_eq(pio_sim_corrupt(sim, "p0/00000000000000000001.log", 64 + 4 * (64 + len) + 100, 0x80), 0);
	struct plog_report rep;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, &rep, &l), -EBADMSG);
	cr_assert_eq(rep.damaged_index, 5);
}

/*
 * The power-loss workload: three partitions with small segments, appends interleaved with flush rounds.
 * Every append remembers its payload; acked ones must survive.
 */
#define PL_PARTS 3
#define PL_STEPS 36

struct pl_state {
	struct plog *l[PL_PARTS];
	struct ack acks[PL_PARTS][PL_STEPS];
	uint64_t offsets[PL_PARTS][PL_STEPS];
	int n[PL_PARTS];
};

static void pl_workload(struct pl_state *st, const struct plog_opts *o)
{
	memset(st, 0, sizeof(*st));
	char dir[16];
	for (int p = 0; p < PL_PARTS; p++) {
		snprintf(dir, sizeof(dir), "part%d", p);
		if (plog_open(sim, fl, dir, o, NULL, &st->l[p]) != 0)
			st->l[p] = NULL;
	}
	for (int step = 0; step < PL_STEPS; step++) {
		int p = (step * 7 + step / 5) % PL_PARTS;
		if (st->l[p] != NULL) {
			int k = st->n[p];
			if (append_msgs(st->l[p], &st->acks[p][k], 1 + (uint32_t)(step % 4), 150, (uint32_t)(step * 16 + p)) ==
			    0) {
				st->offsets[p][k] = st->acks[p][k].req.base_offset;
				st->n[p]++;
			}
		}
		if (step % 3 == 2)
			flusher_drain(fl);
	}
	flusher_drain(fl);
}

static void pl_check(struct pl_state *st, const struct plog_opts *o, uint64_t k, uint32_t tear)
{
	char dir[16];
	for (int p = 0; p < PL_PARTS; p++) {
		snprintf(dir, sizeof(dir), "part%d", p);
		struct plog *l;
		struct plog_report rep;
		int rv = plog_open(sim, fl, dir, o, &rep, &l);
		cr_assert_eq(rv, 0, "crash after %llu calls (tear %u): partition %d does not open: %d",
			     (unsigned long long)k, tear, p, rv);
		struct plog_slice s;
		uint8_t *buf = read_copy(l, 0, 100000, UINT64_MAX, &s); /* every record served verifies */
		cr_assert(s.messages == 0 || s.first_offset == 0);
		cr_assert_eq(s.messages, plog_next_offset(l), "offsets are not contiguous from 0");
		/* Every acknowledged append is there, with its own payloads at its own offsets. */
		for (int i = 0; i < st->n[p]; i++) {
			struct ack *a = &st->acks[p][i];
			if (!(a->fired && a->status == 0))
				continue;
			cr_assert_lt(st->offsets[p][i] + a->req.message_count - 1, plog_next_offset(l),
				     "crash after %llu calls: acked append %d of partition %d lost", (unsigned long long)k,
				     i, p);
			struct record_env env;
			cr_assert_eq(plog_entry_at(l, a->req.index, &env), 0);
			cr_assert_eq(env.base_offset, st->offsets[p][i]);
			cr_assert_eq(env.message_count, a->req.message_count);
		}
		/* The log takes appends again. */
		struct ack a2;
		cr_assert_eq(append_msgs(l, &a2, 1, 10, 5), 0);
		free(buf);
		plog_slice_release(&s);
		cr_assert_eq(plog_close(l), 0);
	}
}

static void pl_close_all(struct pl_state *st)
{
	for (int p = 0; p < PL_PARTS; p++)
		if (st->l[p] != NULL)
			plog_close(st->l[p]);
}

Test(plog, power_loss_at_every_write_boundary_keeps_every_acked_record_and_serves_no_bad_one)
{
	/* Crash after each mutating call of a multi-partition workload, with and without a torn write. */
	struct plog_opts o = small_opts(1500);
	static struct pl_state st;
	/* Count the workload's mutating calls. */
	uint64_t m0 = pio_sim_mutations(sim);
	pl_workload(&st, &o);
	uint64_t total = pio_sim_mutations(sim) - m0;
	pl_close_all(&st);
	cr_assert_gt(total, 50);
	pio_destroy(sim);
	for (uint64_t k = 0; k <= total; k++) {
		for (uint32_t tear = 0; tear < 2; tear++) {
			sim = pio_sim_new();
			pio_sim_crash_after(sim, k);
			pl_workload(&st, &o);
			pl_close_all(&st);
			cr_assert_eq(pio_sim_power_loss(sim, tear ? (uint32_t)(k * 37 + 11) : 0), 0);
			pl_check(&st, &o, k, tear);
			pio_destroy(sim);
		}
	}
	sim = pio_sim_new();
}

Test(plog, group_commit_shares_flush_rounds_between_partitions)
{
	/* With the thread-pool flusher, appends to many partitions complete after far fewer flush rounds. */
	flusher_close(fl);
	cr_assert_eq(flusher_new(&loop, false, &fl), 0);
	struct plog_opts o = small_opts(1 << 20);
	struct plog *l[8];
	struct ack a[8][10];
	char dir[16];
	for (int p = 0; p < 8; p++) {
		snprintf(dir, sizeof(dir), "g%d", p);
		cr_assert_eq(plog_open(sim, fl, dir, &o, NULL, &l[p]), 0);
	}
	for (int i = 0; i < 10; i++)
		for (int p = 0; p < 8; p++)
			cr_assert_eq(append_msgs(l[p], &a[p][i], 10, 100, (uint32_t)i), 0);
	for (int p = 0; p < 8; p++)
		run_until_acked(&a[p][9]);
	struct flusher_stats fs;
	flusher_stats(fl, &fs);
	cr_assert_lt(fs.rounds, 80);
	cr_assert_leq(fs.rounds, 3, "80 appends took %llu rounds", (unsigned long long)fs.rounds);
	for (int p = 0; p < 8; p++) {
		for (int i = 0; i < 10; i++)
			cr_assert(a[p][i].fired && a[p][i].status == 0);
		cr_assert_eq(plog_close(l[p]), 0);
	}
}

Test(plog, interval_and_none_policies_complete_appends_without_waiting_for_a_flush)
{
	/* Under the interval and none policies an append completes once written. */
	for (int pol = 1; pol <= 2; pol++) {
		struct plog_opts o = small_opts(1 << 20);
		o.durability = (enum plog_durability)pol;
		o.interval_ms = 60000;
		struct plog *l;
		char dir[16];
		snprintf(dir, sizeof(dir), "pol%d", pol);
		cr_assert_eq(plog_open(sim, fl, dir, &o, NULL, &l), 0);
		struct ack a;
		cr_assert_eq(append_msgs(l, &a, 3, 10, 1), 0);
		for (int i = 0; i < 10 && !a.fired; i++)
			uv_run(&loop, UV_RUN_NOWAIT);
		cr_assert(a.fired && a.status == 0);
		/* It completed before any flush made it durable. */
		cr_assert_eq(plog_durable_index(l), 0);
		cr_assert_eq(plog_close(l), 0);
	}
}

Test(plog, the_real_disk_backend_round_trips_a_log)
{
	/* The same log on real files in a temporary directory appends, closes, reopens and reads back. */
	char tmpl[] = "/tmp/galgo-plog-XXXXXX";
	cr_assert_not_null(mkdtemp(tmpl));
	struct pio *real = pio_real_new();
	struct plog_opts o = small_opts(8192);
	struct plog *l;
	char dir[64];
	snprintf(dir, sizeof(dir), "%s/p", tmpl);
	cr_assert_eq(plog_open(real, fl, dir, &o, NULL, &l), 0);
	struct ack a;
	for (int i = 0; i < 30; i++)
		cr_assert_eq(append_msgs(l, &a, 5, 200, (uint32_t)i), 0);
	run_until_acked(&a);
	cr_assert_eq(a.status, 0);
	cr_assert_eq(plog_close(l), 0);
	cr_assert_eq(plog_open(real, fl, dir, &o, NULL, &l), 0);
	cr_assert_eq(plog_next_offset(l), 150);
	struct plog_slice s;
	uint8_t *buf = read_copy(l, 0, 1000, UINT64_MAX, &s);
	cr_assert_eq(s.messages, 150);
	for (size_t i = 0; i < s.n_pieces; i++)
		if (s.pieces[i].file != NULL)
			cr_assert_geq(pio_fd(real, s.pieces[i].file), 0);
	free(buf);
	plog_slice_release(&s);
	cr_assert_eq(plog_destroy(l), 0);
	pio_destroy(real);
	cr_assert_eq(rmdir(tmpl), 0);
}

/* Reads every message of the log with plog_read, page by page; returns the bytes served (caller frees). */
static uint8_t *read_everything(struct plog *l, size_t *len, uint32_t *messages)
{
	uint8_t *all = NULL;
	*len = 0;
	*messages = 0;
	uint64_t from = plog_first_offset(l), next = plog_next_offset(l);
	while (from < next) {
		struct plog_slice s;
		int rv = plog_read(l, from, 2, UINT64_MAX, next - 1, &s);
		if (rv != 0 || s.messages == 0) {
			plog_slice_release(&s);
			break;
		}
		all = realloc(all, *len + s.bytes + 1);
		cr_assert_eq(plog_slice_copy(&s, all + *len), 0);
		/* Whatever is served verifies. */
		size_t at = *len;
		while (at < *len + s.bytes) {
			struct batch_hdr h;
			batch_hdr_decode(all + at, &h);
			cr_assert_eq(batch_verify(all + at, h.batch_length, false), 0, "a served batch fails its checks");
			at += h.batch_length;
		}
		*len += s.bytes;
		*messages += s.messages;
		from = s.last_offset + 1;
		plog_slice_release(&s);
	}
	return all;
}

/*
 * Bytes flipped anywhere in a closed log (below its recovery point, where open checks envelopes only) are
 * never served: at every byte position, either open refuses the log, or every read returns exactly the
 * original bytes of the records before the damage and the damaged record is fenced and counted; the
 * scrubber finds the same damage without any read; plog_read_records (replication) serves no bad record.
 */
Test(plog, a_byte_flipped_anywhere_below_the_recovery_point_is_never_served, .timeout = 120)
{
	struct plog_opts o = small_opts(1 << 20);
	struct plog *l;
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	struct ack a;
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(append_msgs(l, &a, 2, 20, (uint32_t)i), 0);
		run_until_acked(&a);
	}
	size_t orig_len;
	uint32_t orig_msgs;
	uint8_t *orig = read_everything(l, &orig_len, &orig_msgs);
	cr_assert_eq(orig_msgs, 10);
	cr_assert_eq(plog_close(l), 0);
	const char *path = "p0/00000000000000000001.log";
	uint64_t size;
	cr_assert_eq(pio_sim_durable_size(sim, path, &size), 0);
	uint32_t refused = 0, fenced = 0;
	for (uint64_t pos = SEGMENT_HEADER_SIZE; pos < size; pos++) {
		cr_assert_eq(pio_sim_corrupt(sim, path, pos, 0x10), 0);
		int rv = plog_open(sim, fl, "p0", &o, NULL, &l);
		if (rv == -EBADMSG) {
			refused++;
		} else {
			cr_assert_eq(rv, 0, "open at flipped byte %" PRIu64 ": %d", pos, rv);
			size_t len;
			uint32_t msgs;
			uint8_t *got = read_everything(l, &len, &msgs);
			cr_assert_lt(msgs, orig_msgs, "byte %" PRIu64 " flipped and every message still served", pos);
			cr_assert(len == 0 || memcmp(got, orig, len) == 0, "byte %" PRIu64 ": served bytes differ", pos);
			cr_assert_eq(plog_damaged(l), 1, "byte %" PRIu64, pos);
			/* Replication reads stop before the damage too. */
			struct plog_slice s;
			uint32_t n = 0;
			rv = plog_read_records(l, plog_first_index(l), plog_last_index(l), UINT64_MAX, &s, &n);
			cr_assert(rv == -EBADMSG || (rv == 0 && n < plog_last_index(l)), "byte %" PRIu64, pos);
			plog_slice_release(&s);
			free(got);
			cr_assert_eq(plog_close(l), 0);
			/* The scrubber alone finds it. */
			cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
			cr_assert_gt(plog_unverified_bytes(l), 0);
			while (plog_scrub(l, 100) > 0)
				;
			cr_assert_eq(plog_damaged(l), 1, "the scrubber missed byte %" PRIu64, pos);
			cr_assert_eq(plog_close(l), 0);
			fenced++;
		}
		cr_assert_eq(pio_sim_corrupt(sim, path, pos, 0x10), 0);
	}
	cr_assert_gt(fenced, 0);
	/* Undamaged again: everything is served, and the scrubber verifies it all. */
	cr_assert_eq(plog_open(sim, fl, "p0", &o, NULL, &l), 0);
	while (plog_scrub(l, 100) > 0)
		;
	cr_assert_eq(plog_unverified_bytes(l), 0);
	cr_assert_eq(plog_damaged(l), 0);
	size_t len;
	uint32_t msgs;
	uint8_t *got = read_everything(l, &len, &msgs);
	cr_assert_eq(len, orig_len);
	cr_assert_eq(memcmp(got, orig, len), 0);
	free(got);
	free(orig);
	cr_assert_eq(plog_close(l), 0);
	cr_log_info("flipped bytes: %u refused at open, %u fenced at read", refused, fenced);
}
