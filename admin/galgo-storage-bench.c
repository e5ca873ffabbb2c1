/*
 * galgo-storage-bench — throughput and latency of the partition log (partition/plog.h) on the real disk,
 * next to the disk's own ceiling for the same write and flush pattern as measured by fio.
 *
 * For every (partition count, durability policy) pair it:
 *   1. opens P partition logs, each in its own directory, on one loop with one group-commit flusher
 *      (thread-pool mode, as galgod runs it);
 *   2. appends batches of --batch messages of --message-size bytes, the data split evenly over the
 *      partitions in whole batches; each partition keeps --inflight batches in flight and appends its next
 *      batch from the completion of a previous one (with --inflight 1 and the fsync policy: one flush per
 *      batch, the flusher sharing fdatasyncs across the partitions of a round);
 *   3. measures the wall time from the first append to the last completion and, for each batch, the
 *      append-to-durable latency (plog_append to its callback);
 *   4. closes the logs (a final flush; timed separately), reopens them and reads every message back with
 *      plog_read + plog_slice_copy, checking counts and offsets and verifying one batch per chunk;
 *   5. runs fio with one job per partition writing its own file sequentially in blocks of one stored
 *      record (envelope + batch), no preallocation (plog's writes extend the file), with fdatasync after
 *      each write for the fsync policy and one final fsync for the others, and reports ours/fio.
 *
 * Both timed write phases start from the same state: the previous phase's data out of the page cache
 * (deleted, or dropped with --keep) and the disk settled (sync + --settle-ms). Without that the second
 * writer paid to reclaim the first one's cached data and fio's figure halved. Phases shorter than 200 ms
 * are marked [short] (fio reports whole milliseconds); use a larger --total-mb on fast disks.
 *
 * MB means MiB (2^20 bytes). Write figures count the bytes that reach the log files (64-byte envelope +
 * the whole Iggy batch per record), which is also what fio writes per block; read figures count the bytes
 * copied out of the slices (the batches).
 *
 * Exit status: 0 when every append and read succeeded (whether or not the target was met), 1 on an
 * append, flush or read error, 2 on bad usage or setup failures.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "partition/flusher.h"
#include "partition/pio.h"
#include "partition/plog.h"
#include "partition/record.h"

#define MIB (1024.0 * 1024.0)
#define TARGET_RATIO 0.80
#define SHORT_S 0.2 /* a timed phase shorter than this is flagged as too short to trust */
#define MAX_LIST 32

/* Options. */

struct bench_opts {
	const char *dir;           /* NULL: mkdtemp under /var/tmp */
	bool keep;
	uint64_t total_mb;
	uint32_t message_size;
	uint32_t batch;
	uint32_t partitions[MAX_LIST];
	size_t n_partitions;
	enum plog_durability policies[MAX_LIST];
	size_t n_policies;
	uint64_t segment_size;
	uint32_t inflight;
	uint32_t read_chunk;
	const char *json;
	bool no_fio;
	bool cold_read;
	uint32_t settle_ms;
};

static const char *policy_name(enum plog_durability d)
{
	switch (d) {
	case PLOG_DURABILITY_FSYNC:
		return "fsync";
	case PLOG_DURABILITY_INTERVAL:
		return "interval";
	case PLOG_DURABILITY_NONE:
		return "none";
	}
	return "?";
}

/* Results of one (partitions, policy) run. */

struct run_result {
	uint32_t partitions;
	enum plog_durability policy;
	uint64_t batches_per_partition;
	uint64_t messages;
	uint64_t bytes;             /* log bytes written (envelopes + batches) */
	double write_s;             /* first append to last completion */
	double lat_p50_ms, lat_p99_ms, lat_p999_ms, lat_max_ms;
	double close_s;             /* plog_close of every partition (final flush) */
	double reopen_s;
	uint64_t read_messages, read_bytes;
	double read_s;
	uint64_t flush_rounds, flush_syncs;
	bool fio_ok;
	double fio_mb_s;
	double fio_runtime_ms;      /* fio's own runtime; its bw is rounded to whole ms, so short runs lie */
	long rss_start_kb, rss_max_kb, rss_end_kb, maxrss_kb;
};

/* Small helpers. */

static double now_s(void)
{
	return (double)uv_hrtime() / 1e9;
}

static uint64_t realtime_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* VmRSS of this process in kB, or -1. */
static long rss_now_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	char line[256];
	long kb = -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

static long maxrss_kb(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return -1;
	return ru.ru_maxrss; /* kB on Linux */
}

/* "206k", "1.23M": a count per second for the table. */
static const char *fmt_rate(char *buf, size_t n, double v)
{
	if (v >= 1e6)
		snprintf(buf, n, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, n, "%.0fk", v / 1e3);
	else
		snprintf(buf, n, "%.0f", v);
	return buf;
}

/* A latency in ms with a precision that suits its size. */
static const char *fmt_ms(char *buf, size_t n, double ms)
{
	if (ms >= 100)
		snprintf(buf, n, "%.0f ms", ms);
	else if (ms >= 1)
		snprintf(buf, n, "%.1f ms", ms);
	else
		snprintf(buf, n, "%.3f ms", ms);
	return buf;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values, p in (0, 1]. */
static uint64_t percentile(const uint64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	double r = p * (double)n;
	size_t k = (size_t)r;
	if ((double)k < r)
		k++;
	if (k == 0)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

/*
 * Lets the disk settle before a timed write phase: flushes everything dirty (earlier runs' files, their
 * deletion) and waits, so one phase's writeback and discards do not land in the next one's figures.
 */
static void settle(const struct bench_opts *o)
{
	sync();
	if (o->settle_ms > 0) {
		struct timespec ts = {o->settle_ms / 1000, (long)(o->settle_ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0 && errno != ENOENT)
		fprintf(stderr, "galgo-storage-bench: cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Drops the page cache of every file under path (they must be clean: the logs are closed). */
static int drop_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	return 0;
}

/* mkdir -p; 0 if it made the last component, 1 if it already existed, -1 on error (errno set). */
static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	if ((size_t)snprintf(buf, sizeof(buf), "%s", path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *c = buf + 1; *c != '\0'; c++) {
		if (*c != '/')
			continue;
		*c = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -1;
		*c = '/';
	}
	if (mkdir(buf, 0755) == 0)
		return 0;
	if (errno != EEXIST)
		return -1;
	struct stat st;
	if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 1;
}

/* Parsing of comma lists. */

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static int parse_partitions(const char *arg, struct bench_opts *o)
{
	char *copy = strdup(arg), *save = NULL;
	if (copy == NULL)
		return -1;
	o->n_partitions = 0;
	int rv = 0;
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		if (o->n_partitions == MAX_LIST || parse_u32(t, 1, 4096, &o->partitions[o->n_partitions]) != 0) {
			rv = -1;
			break;
		}
		o->n_partitions++;
	}
	free(copy);
	return rv == 0 && o->n_partitions > 0 ? 0 : -1;
}

static int parse_policies(const char *arg, struct bench_opts *o)
{
	char *copy = strdup(arg), *save = NULL;
	if (copy == NULL)
		return -1;
	o->n_policies = 0;
	int rv = 0;
	for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		enum plog_durability d;
		if (strcmp(t, "fsync") == 0)
			d = PLOG_DURABILITY_FSYNC;
		else if (strcmp(t, "interval") == 0)
			d = PLOG_DURABILITY_INTERVAL;
		else if (strcmp(t, "none") == 0)
			d = PLOG_DURABILITY_NONE;
		else {
			rv = -1;
			break;
		}
		if (o->n_policies == MAX_LIST) {
			rv = -1;
			break;
		}
		o->policies[o->n_policies++] = d;
	}
	free(copy);
	return rv == 0 && o->n_policies > 0 ? 0 : -1;
}

/* The workload. */

struct bench;
struct part;

/* One batch in flight: its request and its own copy of the batch bytes. */
struct slot {
	struct plog_append_req req;
	struct part *part;
	uint8_t *buf;
	uint64_t t0; /* uv_hrtime() just before plog_append */
};

struct part {
	struct bench *b;
	uint32_t id;
	char dir[PATH_MAX];
	struct plog *log;
	struct slot *slots;
	uint64_t sent, completed;
};

struct bench {
	const struct bench_opts *o;
	uv_loop_t loop;
	struct flusher *fl;
	struct pio *pio;
	uv_timer_t rss_timer;
	long rss_max_kb;
	struct part *parts;
	uint32_t n_parts;
	size_t batch_len;         /* bytes of one built batch */
	uint64_t batches_pp;      /* batches per partition */
	uint64_t total_batches, completed;
	uint64_t *lat_ns;
	size_t n_lat;
	uint64_t t_first, t_last;
	int err;                  /* first append error (negative errno) */
};

static void rss_sample(struct bench *b)
{
	long kb = rss_now_kb();
	if (kb > b->rss_max_kb)
		b->rss_max_kb = kb;
}

static void rss_timer_cb(uv_timer_t *t)
{
	rss_sample(t->data);
}

static void append_cb(struct plog_append_req *req, int status);

/* Stamps the slot's batch as the next record of its partition and appends it. */
static int append_slot(struct slot *s)
{
	struct part *p = s->part;
	struct bench *b = p->b;
	plog_stamp(p->log, s->buf, p->id);
	struct plog_entry e = {
		.type = RECORD_MESSAGES,
		.index = plog_last_index(p->log) + 1,
		.term = 1,
		.payload = s->buf,
		.length = (uint32_t)b->batch_len,
	};
	memset(&s->req, 0, sizeof(s->req));
	s->req.data = s;
	s->t0 = uv_hrtime();
	int rv = plog_append(p->log, &s->req, &e, append_cb);
	if (rv != 0) {
		fprintf(stderr, "galgo-storage-bench: append to partition %u failed: %s\n", p->id, strerror(-rv));
		if (b->err == 0)
			b->err = rv;
		return rv;
	}
	p->sent++;
	return 0;
}

static void append_cb(struct plog_append_req *req, int status)
{
	struct slot *s = req->data;
	struct part *p = s->part;
	struct bench *b = p->b;
	uint64_t now = uv_hrtime();
	if (status != 0) {
		if (b->err == 0) {
			fprintf(stderr, "galgo-storage-bench: append to partition %u completed with error: %s\n", p->id,
				strerror(-status));
			b->err = status;
		}
		return;
	}
	if (b->n_lat < b->total_batches)
		b->lat_ns[b->n_lat++] = now - s->t0;
	p->completed++;
	b->completed++;
	b->t_last = now;
	if (b->err == 0 && p->sent < b->batches_pp)
		(void)append_slot(s);
}

/* Builds one batch of `n` messages of `size` bytes into a fresh buffer (partition/offset/time zero). */
static uint8_t *build_batch(uint32_t n, uint32_t size, size_t *len)
{
	size_t cap = BATCH_HEADER_SIZE + (size_t)n * (BATCH_FRAME_HEADER_SIZE + size) + 64;
	uint8_t *out = malloc(cap);
	uint8_t *bodies = malloc((size_t)n * size + 1);
	const void **pl = calloc(n, sizeof(*pl));
	uint32_t *lens = calloc(n, sizeof(*lens));
	if (out == NULL || bodies == NULL || pl == NULL || lens == NULL) {
		free(out);
		out = NULL;
		goto done;
	}
	/* Incompressible-looking payloads (xorshift), each message different. */
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i + 8 <= (size_t)n * size; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(bodies + i, &x, 8);
	}
	for (uint32_t i = 0; i < n; i++) {
		pl[i] = bodies + (size_t)i * size;
		lens[i] = size;
	}
	*len = batch_build(out, cap, n, pl, lens, NULL, NULL, realtime_us());
	if (*len == 0) {
		free(out);
		out = NULL;
	}
done:
	free(bodies);
	free(pl);
	free(lens);
	return out;
}

static struct plog_opts log_opts(const struct bench_opts *o, enum plog_durability d)
{
	struct plog_opts lo;
	plog_opts_default(&lo);
	lo.segment_size = o->segment_size;
	lo.durability = d;
	return lo;
}

static int open_parts(struct bench *b, enum plog_durability d)
{
	struct plog_opts lo = log_opts(b->o, d);
	for (uint32_t i = 0; i < b->n_parts; i++) {
		int rv = plog_open(b->pio, b->fl, b->parts[i].dir, &lo, NULL, &b->parts[i].log);
		if (rv != 0) {
			fprintf(stderr, "galgo-storage-bench: plog_open %s: %s\n", b->parts[i].dir, strerror(-rv));
			return rv;
		}
	}
	return 0;
}

/* Closes every open log; returns the first error. */
static int close_parts(struct bench *b)
{
	int err = 0;
	for (uint32_t i = 0; i < b->n_parts; i++) {
		if (b->parts[i].log == NULL)
			continue;
		int rv = plog_close(b->parts[i].log);
		b->parts[i].log = NULL;
		if (rv != 0) {
			fprintf(stderr, "galgo-storage-bench: plog_close partition %u: %s\n", i, strerror(-rv));
			if (err == 0)
				err = rv;
		}
	}
	return err;
}

/* Reads partition p back in chunks; checks offsets, counts and one batch per chunk. */
static int read_part(struct bench *b, struct part *p, uint8_t **buf, size_t *cap, uint64_t *msgs,
		     uint64_t *bytes)
{
	uint64_t expect = b->batches_pp * b->o->batch;
	uint64_t from = 0, got = 0;
	for (;;) {
		struct plog_slice s;
		int rv = plog_read(p->log, from, b->o->read_chunk, UINT64_MAX, UINT64_MAX, &s);
		if (rv != 0) {
			fprintf(stderr, "galgo-storage-bench: plog_read partition %u at %" PRIu64 ": %s\n", p->id, from,
				strerror(-rv));
			plog_slice_release(&s);
			return rv;
		}
		if (s.messages == 0) {
			plog_slice_release(&s);
			break;
		}
		if (s.first_offset != from) {
			fprintf(stderr, "galgo-storage-bench: partition %u: read at %" PRIu64 " starts at %" PRIu64 "\n",
				p->id, from, s.first_offset);
			plog_slice_release(&s);
			return -EBADMSG;
		}
		if (s.bytes > *cap) {
			uint8_t *nb = realloc(*buf, s.bytes);
			if (nb == NULL) {
				plog_slice_release(&s);
				return -ENOMEM;
			}
			*buf = nb;
			*cap = s.bytes;
		}
		rv = plog_slice_copy(&s, *buf);
		if (rv == 0) {
			struct batch_hdr h;
			batch_hdr_decode(*buf, &h);
			int vr = s.bytes < BATCH_HEADER_SIZE || h.batch_length > s.bytes
					 ? RECORD_E_SHORT
					 : batch_verify(*buf, h.batch_length, false);
			if (vr == 0) {
				/* A batch cut at the front keeps base_offset and its frames' deltas. */
				struct batch_frame_hdr fh;
				batch_frame_hdr_decode(*buf + BATCH_HEADER_SIZE, &fh);
				if (h.base_offset + fh.offset_delta != from)
					vr = RECORD_E_FIELDS;
			}
			if (vr != 0) {
				fprintf(stderr, "galgo-storage-bench: partition %u: batch at offset %" PRIu64 " fails: %s\n",
					p->id, from, record_strerror(vr));
				rv = -EBADMSG;
			}
		} else {
			fprintf(stderr, "galgo-storage-bench: plog_slice_copy partition %u: %s\n", p->id, strerror(-rv));
		}
		got += s.messages;
		*bytes += s.bytes;
		from = s.last_offset + 1;
		plog_slice_release(&s);
		if (rv != 0)
			return rv;
		rss_sample(b);
	}
	*msgs += got;
	if (got != expect) {
		fprintf(stderr, "galgo-storage-bench: partition %u: read %" PRIu64 " messages, wrote %" PRIu64 "\n",
			p->id, got, expect);
		return -EBADMSG;
	}
	return 0;
}

/* fio. */

/*
 * Finds the first "key" : <number> after position `from` in a JSON text. A tiny search, not a parser:
 * fio's JSON is regular enough (one job object with group_reporting).
 */
static const char *json_find(const char *from, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\"", key);
	size_t n = strlen(pat);
	/* A key, not a value: the quoted name must be followed by a colon (as in "write" : {, not "rw" : "write"). */
	for (const char *at = from; at != NULL && (at = strstr(at, pat)) != NULL; at += n) {
		const char *c = at + n;
		while (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r')
			c++;
		if (*c == ':')
			return at;
	}
	return NULL;
}

static int json_number_after(const char *at, double *out)
{
	if (at == NULL)
		return -1;
	const char *c = strchr(at, ':');
	if (c == NULL)
		return -1;
	char *end;
	double v = strtod(c + 1, &end);
	if (end == c + 1)
		return -1;
	*out = v;
	return 0;
}

/*
 * Runs fio: `jobs` jobs, each writing its own file of `size` bytes sequentially in blocks of `bs`, with an
 * fdatasync after every write (fsync) or one fsync at the end. Sets *mb_s from the group's write bw_bytes.
 */
static int run_fio(const char *dir, uint32_t jobs, uint64_t bs, uint64_t size, bool fsync_each, double *mb_s,
		   double *runtime_ms)
{
	char a_dir[PATH_MAX + 16], a_bs[64], a_size[64], a_jobs[64];
	if ((size_t)snprintf(a_dir, sizeof(a_dir), "--directory=%s", dir) >= sizeof(a_dir))
		return -ENAMETOOLONG;
	snprintf(a_bs, sizeof(a_bs), "--bs=%" PRIu64, bs);
	snprintf(a_size, sizeof(a_size), "--size=%" PRIu64, size);
	snprintf(a_jobs, sizeof(a_jobs), "--numjobs=%u", jobs);
	char *argv[] = {
		"fio",
		"--name=galgo-bench",
		a_dir,
		"--rw=write",
		a_bs,
		a_size,
		a_jobs,
		"--ioengine=psync",
		"--fallocate=none", /* plog does not preallocate: its writes extend the file, so must fio's */
		fsync_each ? "--fdatasync=1" : "--end_fsync=1",
		"--unlink=1",
		"--group_reporting",
		"--output-format=json",
		NULL,
	};
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(pfd[0]);
		close(pfd[1]);
		return -e;
	}
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		execvp("fio", argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	bool oom = out == NULL;
	for (;;) {
		char chunk[8192];
		ssize_t n = read(pfd[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (oom)
			continue;
		if (len + (size_t)n + 1 > cap) {
			char *no = realloc(out, cap * 2 + (size_t)n);
			if (no == NULL) {
				oom = true;
				continue;
			}
			out = no;
			cap = cap * 2 + (size_t)n;
		}
		memcpy(out + len, chunk, (size_t)n);
		len += (size_t)n;
	}
	close(pfd[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (oom) {
		free(out);
		return -ENOMEM;
	}
	out[len] = '\0';
	int rv = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
			fprintf(stderr, "galgo-storage-bench: fio not found (use --no-fio to skip it)\n");
		else
			fprintf(stderr, "galgo-storage-bench: fio failed (status %d)\n", st);
		rv = -1;
	} else {
		const char *write_at = json_find(json_find(out, "jobs"), "write");
		double bw;
		if (json_number_after(json_find(write_at, "bw_bytes"), &bw) != 0) {
			fprintf(stderr, "galgo-storage-bench: cannot find the write bandwidth in fio's output\n");
			rv = -1;
		} else {
			*mb_s = bw / MIB;
			if (json_number_after(json_find(write_at, "runtime"), runtime_ms) != 0)
				*runtime_ms = 0;
		}
	}
	free(out);
	return rv;
}

/* One run. */

static bool run_short(const struct run_result *r)
{
	return r->write_s < SHORT_S || (r->fio_ok && r->fio_runtime_ms < SHORT_S * 1000);
}

static void print_run(const struct run_result *r, bool target_applies)
{
	char b1[32], b2[32], b3[32], b4[32], b5[32];
	double mb = (double)r->bytes / MIB;
	double mbs = r->write_s > 0 ? mb / r->write_s : 0;
	double msgs = r->write_s > 0 ? (double)r->messages / r->write_s : 0;
	double rmbs = r->read_s > 0 ? (double)r->read_bytes / MIB / r->read_s : 0;
	double rmsgs = r->read_s > 0 ? (double)r->read_messages / r->read_s : 0;
	printf("partitions=%u policy=%-8s write %.1f MB in %.2f s: %.1f MB/s, %s msgs/s; latency p50 %s p99 %s "
	       "p999 %s; read %.0f MB/s, %s msgs/s",
	       r->partitions, policy_name(r->policy), mb, r->write_s, mbs, fmt_rate(b1, sizeof(b1), msgs),
	       fmt_ms(b2, sizeof(b2), r->lat_p50_ms), fmt_ms(b3, sizeof(b3), r->lat_p99_ms),
	       fmt_ms(b4, sizeof(b4), r->lat_p999_ms), rmbs, fmt_rate(b5, sizeof(b5), rmsgs));
	if (r->fio_ok) {
		double ratio = r->fio_mb_s > 0 ? mbs / r->fio_mb_s : 0;
		printf("; fio %.1f MB/s; ratio %.2f", r->fio_mb_s, ratio);
		if (target_applies)
			printf(" (target %.2f: %s)", TARGET_RATIO, ratio >= TARGET_RATIO ? "met" : "MISSED");
	} else {
		printf("; fio -");
	}
	if (run_short(r))
		printf(" [short: write %.0f ms, fio %.0f ms]", r->write_s * 1000, r->fio_runtime_ms);
	printf("\n");
	printf("    %" PRIu64 " batches/partition, %" PRIu64 " msgs; max latency %s; close %.3f s (write+close "
	       "%.1f MB/s); reopen %.3f s; flush rounds %" PRIu64 ", item syncs %" PRIu64 " (%.1f/round); RSS start "
	       "%.1f MB, max %.1f MB, end %.1f MB; peak RSS %.1f MB\n",
	       r->batches_per_partition, r->messages, fmt_ms(b1, sizeof(b1), r->lat_max_ms), r->close_s,
	       r->write_s + r->close_s > 0 ? mb / (r->write_s + r->close_s) : 0, r->reopen_s,
	       r->flush_rounds, r->flush_syncs,
	       r->flush_rounds ? (double)r->flush_syncs / (double)r->flush_rounds : 0.0, r->rss_start_kb / 1024.0,
	       r->rss_max_kb / 1024.0, r->rss_end_kb / 1024.0, r->maxrss_kb / 1024.0);
	fflush(stdout);
}

static void free_parts(struct bench *b)
{
	if (b->parts == NULL)
		return;
	for (uint32_t i = 0; i < b->n_parts; i++) {
		if (b->parts[i].slots != NULL)
			for (uint32_t k = 0; k < b->o->inflight; k++)
				free(b->parts[i].slots[k].buf);
		free(b->parts[i].slots);
	}
	free(b->parts);
	b->parts = NULL;
}

/*
 * Runs one (partitions, policy) workload in `workdir`. Returns 0, a negative errno for an append, flush or
 * read error (1 exit), or 1 for a setup failure.
 */
static int run_one(const struct bench_opts *o, struct pio *pio, const char *workdir, uint32_t n_parts,
		   enum plog_durability policy, struct run_result *r)
{
	memset(r, 0, sizeof(*r));
	r->partitions = n_parts;
	r->policy = policy;
	r->rss_start_kb = rss_now_kb();

	struct bench b;
	memset(&b, 0, sizeof(b));
	uint8_t *proto = NULL;
	uint64_t record_bytes = 0;
	b.o = o;
	b.pio = pio;
	b.n_parts = n_parts;
	b.rss_max_kb = r->rss_start_kb;
	int rv = 0;

	/* Whole batches, the total split evenly (rounded, at least one batch per partition). */
	uint64_t total_msgs = o->total_mb * 1024 * 1024 / o->message_size;
	uint64_t per_round = (uint64_t)n_parts * o->batch;
	b.batches_pp = (total_msgs + per_round / 2) / per_round;
	if (b.batches_pp == 0)
		b.batches_pp = 1;
	b.total_batches = b.batches_pp * n_parts;
	r->batches_per_partition = b.batches_pp;

	char rundir[PATH_MAX];
	if ((size_t)snprintf(rundir, sizeof(rundir), "%s/p%u-%s", workdir, n_parts, policy_name(policy)) >=
	    sizeof(rundir) - 32) {
		fprintf(stderr, "galgo-storage-bench: directory name too long\n");
		return 1;
	}
	rm_rf(rundir);
	if (mkdir(rundir, 0755) != 0) {
		fprintf(stderr, "galgo-storage-bench: mkdir %s: %s\n", rundir, strerror(errno));
		return 1;
	}

	if (uv_loop_init(&b.loop) != 0) {
		fprintf(stderr, "galgo-storage-bench: uv_loop_init failed\n");
		return 1;
	}
	if (flusher_new(&b.loop, false, &b.fl) != 0) {
		fprintf(stderr, "galgo-storage-bench: flusher_new failed\n");
		uv_loop_close(&b.loop);
		return 1;
	}
	uv_timer_init(&b.loop, &b.rss_timer);
	b.rss_timer.data = &b;

	b.parts = calloc(n_parts, sizeof(*b.parts));
	b.lat_ns = calloc(b.total_batches, sizeof(*b.lat_ns));
	proto = build_batch(o->batch, o->message_size, &b.batch_len);
	if (b.parts == NULL || b.lat_ns == NULL || proto == NULL) {
		fprintf(stderr, "galgo-storage-bench: out of memory\n");
		rv = 1;
		goto out;
	}
	for (uint32_t i = 0; i < n_parts; i++) {
		struct part *p = &b.parts[i];
		p->b = &b;
		p->id = i;
		if ((size_t)snprintf(p->dir, sizeof(p->dir), "%s/partition-%u", rundir, i) >= sizeof(p->dir)) {
			rv = 1;
			goto out;
		}
		p->slots = calloc(o->inflight, sizeof(*p->slots));
		if (p->slots == NULL) {
			rv = 1;
			goto out;
		}
		for (uint32_t k = 0; k < o->inflight; k++) {
			p->slots[k].part = p;
			p->slots[k].buf = malloc(b.batch_len);
			if (p->slots[k].buf == NULL) {
				fprintf(stderr, "galgo-storage-bench: out of memory\n");
				rv = 1;
				goto out;
			}
			memcpy(p->slots[k].buf, proto, b.batch_len);
		}
	}
	record_bytes = RECORD_ENVELOPE_SIZE + b.batch_len;
	r->bytes = record_bytes * b.total_batches;
	r->messages = b.total_batches * o->batch;

	if (open_parts(&b, policy) != 0) {
		rv = 1;
		goto out;
	}
	struct flusher_stats fs0;
	flusher_stats(b.fl, &fs0);

	/* Write phase. */
	settle(o);
	uv_timer_start(&b.rss_timer, rss_timer_cb, 20, 20);
	b.t_first = uv_hrtime();
	b.t_last = b.t_first;
	for (uint32_t i = 0; i < n_parts && b.err == 0; i++)
		for (uint32_t k = 0; k < o->inflight && b.parts[i].sent < b.batches_pp && b.err == 0; k++)
			(void)append_slot(&b.parts[i].slots[k]);
	while (b.err == 0 && b.completed < b.total_batches)
		uv_run(&b.loop, UV_RUN_ONCE);
	uv_timer_stop(&b.rss_timer);
	rss_sample(&b);
	r->write_s = (double)(b.t_last - b.t_first) / 1e9;
	struct flusher_stats fs1;
	flusher_stats(b.fl, &fs1);
	r->flush_rounds = fs1.rounds - fs0.rounds;
	r->flush_syncs = fs1.syncs - fs0.syncs;
	if (b.err != 0) {
		rv = b.err;
		goto out;
	}
	qsort(b.lat_ns, b.n_lat, sizeof(*b.lat_ns), cmp_u64);
	r->lat_p50_ms = (double)percentile(b.lat_ns, b.n_lat, 0.50) / 1e6;
	r->lat_p99_ms = (double)percentile(b.lat_ns, b.n_lat, 0.99) / 1e6;
	r->lat_p999_ms = (double)percentile(b.lat_ns, b.n_lat, 0.999) / 1e6;
	r->lat_max_ms = b.n_lat ? (double)b.lat_ns[b.n_lat - 1] / 1e6 : 0;

	/* Close (final flush for interval/none), optionally drop the cache, reopen. */
	double t = now_s();
	rv = close_parts(&b);
	r->close_s = now_s() - t;
	if (rv != 0)
		goto out;
	if (o->cold_read)
		nftw(rundir, drop_entry, 16, FTW_PHYS);
	t = now_s();
	if (open_parts(&b, policy) != 0) {
		rv = -EIO;
		goto out;
	}
	r->reopen_s = now_s() - t;

	/* Read phase. */
	uint8_t *rbuf = NULL;
	size_t rcap = 0;
	t = now_s();
	for (uint32_t i = 0; i < n_parts && rv == 0; i++)
		rv = read_part(&b, &b.parts[i], &rbuf, &rcap, &r->read_messages, &r->read_bytes);
	r->read_s = now_s() - t;
	free(rbuf);
	rss_sample(&b);
	if (rv == 0 && r->read_messages != r->messages) {
		fprintf(stderr, "galgo-storage-bench: read %" PRIu64 " messages, wrote %" PRIu64 "\n", r->read_messages,
			r->messages);
		rv = -EBADMSG;
	}

out:;
	int crv = close_parts(&b);
	if (rv == 0 && crv != 0)
		rv = crv;
	uv_close((uv_handle_t *)&b.rss_timer, NULL);
	if (b.fl != NULL)
		flusher_close(b.fl);
	uv_run(&b.loop, UV_RUN_NOWAIT);
	if (uv_loop_close(&b.loop) != 0)
		fprintf(stderr, "galgo-storage-bench: loop still has handles at close\n");
	free(proto);
	free(b.lat_ns);
	free_parts(&b);
	r->rss_max_kb = b.rss_max_kb;

	/*
	 * Our data leaves the page cache before fio runs: deleted, or with --keep dropped from the cache (the
	 * logs are closed, so it is clean). Left cached, it made fio's buffered writes pay for reclaiming it
	 * (fio's write latency went from 0.18 ms to 1.5-2.3 ms per block on the development VM, halving its
	 * figure and flattering our ratio).
	 */
	if (!o->keep)
		rm_rf(rundir);
	else
		nftw(rundir, drop_entry, 16, FTW_PHYS);

	/* fio's ceiling for the same pattern, on the same file system. */
	if (rv == 0 && !o->no_fio) {
		char fiodir[PATH_MAX + 8];
		if ((size_t)snprintf(fiodir, sizeof(fiodir), "%s/fio-p%u-%s", workdir, n_parts, policy_name(policy)) <
			    sizeof(fiodir) &&
		    mkdir(fiodir, 0755) == 0) {
			settle(o);
			r->fio_ok = run_fio(fiodir, n_parts, record_bytes, record_bytes * b.batches_pp,
					    policy == PLOG_DURABILITY_FSYNC, &r->fio_mb_s, &r->fio_runtime_ms) == 0;
			rm_rf(fiodir);
		} else {
			fprintf(stderr, "galgo-storage-bench: mkdir %s: %s\n", fiodir, strerror(errno));
		}
	}
	r->rss_end_kb = rss_now_kb();
	r->maxrss_kb = maxrss_kb();
	return rv;
}

/* JSON output. */

static void json_num(FILE *f, const char *key, double v, bool last)
{
	fprintf(f, "\"%s\": %.6g%s", key, v, last ? "" : ", ");
}

static int write_json(const char *path, const struct bench_opts *o, const char *workdir,
		      const struct run_result *rs, size_t n, long rss_start_kb, long rss_end_kb)
{
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		fprintf(stderr, "galgo-storage-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"config\": {\"dir\": \"%s\", \"total_mb\": %" PRIu64 ", \"message_size\": %u, "
		   "\"batch\": %u, \"segment_size\": %" PRIu64 ", \"inflight\": %u, \"read_chunk\": %u, "
		   "\"cold_read\": %s, \"settle_ms\": %u, \"target_ratio\": %.2f, \"mb\": \"MiB\"},\n",
		workdir, o->total_mb, o->message_size, o->batch, o->segment_size, o->inflight, o->read_chunk,
		o->cold_read ? "true" : "false", o->settle_ms, TARGET_RATIO);
	fprintf(f, "  \"rss_start_kb\": %ld, \"rss_end_kb\": %ld, \"peak_rss_kb\": %ld,\n  \"runs\": [\n",
		rss_start_kb, rss_end_kb, maxrss_kb());
	for (size_t i = 0; i < n; i++) {
		const struct run_result *r = &rs[i];
		double mbs = r->write_s > 0 ? (double)r->bytes / MIB / r->write_s : 0;
		fprintf(f, "    {\"partitions\": %u, \"policy\": \"%s\", ", r->partitions, policy_name(r->policy));
		json_num(f, "batches_per_partition", (double)r->batches_per_partition, false);
		json_num(f, "messages", (double)r->messages, false);
		json_num(f, "bytes", (double)r->bytes, false);
		json_num(f, "write_s", r->write_s, false);
		json_num(f, "write_mb_s", mbs, false);
		json_num(f, "write_msgs_s", r->write_s > 0 ? (double)r->messages / r->write_s : 0, false);
		json_num(f, "latency_p50_ms", r->lat_p50_ms, false);
		json_num(f, "latency_p99_ms", r->lat_p99_ms, false);
		json_num(f, "latency_p999_ms", r->lat_p999_ms, false);
		json_num(f, "latency_max_ms", r->lat_max_ms, false);
		json_num(f, "close_s", r->close_s, false);
		json_num(f, "write_close_mb_s",
			 r->write_s + r->close_s > 0 ? (double)r->bytes / MIB / (r->write_s + r->close_s) : 0, false);
		json_num(f, "reopen_s", r->reopen_s, false);
		json_num(f, "read_messages", (double)r->read_messages, false);
		json_num(f, "read_bytes", (double)r->read_bytes, false);
		json_num(f, "read_s", r->read_s, false);
		json_num(f, "read_mb_s", r->read_s > 0 ? (double)r->read_bytes / MIB / r->read_s : 0, false);
		json_num(f, "read_msgs_s", r->read_s > 0 ? (double)r->read_messages / r->read_s : 0, false);
		json_num(f, "flush_rounds", (double)r->flush_rounds, false);
		json_num(f, "flush_syncs", (double)r->flush_syncs, false);
		json_num(f, "rss_start_kb", (double)r->rss_start_kb, false);
		json_num(f, "rss_max_kb", (double)r->rss_max_kb, false);
		json_num(f, "rss_end_kb", (double)r->rss_end_kb, false);
		json_num(f, "peak_rss_kb", (double)r->maxrss_kb, false);
		if (r->fio_ok) {
			double ratio = r->fio_mb_s > 0 ? mbs / r->fio_mb_s : 0;
			json_num(f, "fio_mb_s", r->fio_mb_s, false);
			json_num(f, "fio_runtime_ms", r->fio_runtime_ms, false);
			json_num(f, "ratio", ratio, false);
			if (r->policy == PLOG_DURABILITY_FSYNC)
				fprintf(f, "\"target_met\": %s, ", ratio >= TARGET_RATIO ? "true" : "false");
		} else {
			fprintf(f, "\"fio_mb_s\": null, \"ratio\": null, ");
		}
		fprintf(f, "\"short\": %s}%s\n", run_short(r) ? "true" : "false", i + 1 < n ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	if (fclose(f) != 0) {
		fprintf(stderr, "galgo-storage-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* main. */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: galgo-storage-bench [options]\n"
		"  --dir DIR            where to write (default: a new directory under /var/tmp, removed at the end)\n"
		"  --keep               keep the data written\n"
		"  --total-mb N         MiB of messages per run (default 256), split over the partitions\n"
		"  --message-size N     payload bytes per message (default 1024)\n"
		"  --batch N            messages per batch (default 1000)\n"
		"  --partitions LIST    comma list of partition counts (default 1,8,64)\n"
		"  --policies LIST      comma list of fsync, interval, none (default fsync,interval,none)\n"
		"  --segment-size N     segment size in bytes (default 64 MiB)\n"
		"  --inflight N         batches in flight per partition (default 1)\n"
		"  --read-chunk N       messages per plog_read (default 10000)\n"
		"  --cold-read          drop the files' page cache before reading back\n"
		"  --settle-ms N        sync and wait N ms before each timed write phase (default 250)\n"
		"  --json FILE          write every result to FILE as JSON\n"
		"  --no-fio             do not measure the disk with fio\n"
		"The libuv thread pool that runs the fdatasyncs has UV_THREADPOOL_SIZE threads (default 4).\n");
}

int main(int argc, char **argv)
{
	struct bench_opts o = {
		.total_mb = 256,
		.message_size = 1024,
		.batch = 1000,
		.partitions = {1, 8, 64},
		.n_partitions = 3,
		.policies = {PLOG_DURABILITY_FSYNC, PLOG_DURABILITY_INTERVAL, PLOG_DURABILITY_NONE},
		.n_policies = 3,
		.segment_size = 64ull << 20,
		.inflight = 1,
		.read_chunk = 10000,
		.settle_ms = 250,
	};
	enum { O_DIR = 256, O_KEEP, O_TOTAL, O_MSIZE, O_BATCH, O_PARTS, O_POLS, O_SEG, O_INFL, O_CHUNK, O_COLD,
	       O_JSON, O_NOFIO, O_SETTLE, O_HELP };
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, O_DIR},
		{"keep", no_argument, NULL, O_KEEP},
		{"total-mb", required_argument, NULL, O_TOTAL},
		{"message-size", required_argument, NULL, O_MSIZE},
		{"batch", required_argument, NULL, O_BATCH},
		{"partitions", required_argument, NULL, O_PARTS},
		{"policies", required_argument, NULL, O_POLS},
		{"segment-size", required_argument, NULL, O_SEG},
		{"inflight", required_argument, NULL, O_INFL},
		{"read-chunk", required_argument, NULL, O_CHUNK},
		{"cold-read", no_argument, NULL, O_COLD},
		{"json", required_argument, NULL, O_JSON},
		{"no-fio", no_argument, NULL, O_NOFIO},
		{"settle-ms", required_argument, NULL, O_SETTLE},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case O_DIR:
			o.dir = optarg;
			break;
		case O_KEEP:
			o.keep = true;
			break;
		case O_TOTAL:
			bad = parse_u64(optarg, 1, 1ull << 30, &o.total_mb);
			break;
		case O_MSIZE:
			bad = parse_u32(optarg, 1, 16u << 20, &o.message_size);
			break;
		case O_BATCH:
			bad = parse_u32(optarg, 1, 1000000, &o.batch);
			break;
		case O_PARTS:
			bad = parse_partitions(optarg, &o);
			break;
		case O_POLS:
			bad = parse_policies(optarg, &o);
			break;
		case O_SEG:
			bad = parse_u64(optarg, 4096, UINT32_MAX, &o.segment_size);
			break;
		case O_INFL:
			bad = parse_u32(optarg, 1, 1024, &o.inflight);
			break;
		case O_CHUNK:
			bad = parse_u32(optarg, 1, UINT32_MAX, &o.read_chunk);
			break;
		case O_COLD:
			o.cold_read = true;
			break;
		case O_JSON:
			o.json = optarg;
			break;
		case O_NOFIO:
			o.no_fio = true;
			break;
		case O_SETTLE:
			bad = parse_u32(optarg, 0, 600000, &o.settle_ms);
			break;
		case 'h':
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (bad) {
			fprintf(stderr, "galgo-storage-bench: bad value for --%s: %s\n", longopts[c - O_DIR].name, optarg);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	uint64_t batch_bytes = BATCH_HEADER_SIZE + (uint64_t)o.batch * (BATCH_FRAME_HEADER_SIZE + o.message_size);
	if (batch_bytes > RECORD_MAX_PAYLOAD || RECORD_ENVELOPE_SIZE + batch_bytes + 64 > o.segment_size) {
		fprintf(stderr, "galgo-storage-bench: a batch of %" PRIu64 " bytes does not fit (max %u bytes, and "
				"below --segment-size)\n", batch_bytes, RECORD_MAX_PAYLOAD);
		return 2;
	}

	long rss_start = rss_now_kb();
	char workdir[PATH_MAX];
	bool made_dir = false;
	if (o.dir == NULL) {
		snprintf(workdir, sizeof(workdir), "/var/tmp/galgo-storage-bench-XXXXXX");
		if (mkdtemp(workdir) == NULL) {
			fprintf(stderr, "galgo-storage-bench: mkdtemp %s: %s\n", workdir, strerror(errno));
			return 2;
		}
		made_dir = true;
	} else {
		if ((size_t)snprintf(workdir, sizeof(workdir), "%s", o.dir) >= sizeof(workdir) - 64) {
			fprintf(stderr, "galgo-storage-bench: --dir too long\n");
			return 2;
		}
		int m = mkdir_p(workdir);
		if (m == 0)
			made_dir = true;
		else if (m < 0) {
			fprintf(stderr, "galgo-storage-bench: mkdir %s: %s\n", workdir, strerror(errno));
			return 2;
		}
	}
	struct pio *pio = pio_real_new();
	if (pio == NULL) {
		fprintf(stderr, "galgo-storage-bench: pio_real_new failed\n");
		return 2;
	}

	const char *tp = getenv("UV_THREADPOOL_SIZE");
	printf("galgo-storage-bench: dir %s; %" PRIu64 " MB of %u-byte messages per run, batches of %u (%" PRIu64
	       " bytes per record), segments of %" PRIu64 " MB, %u batch(es) in flight per partition, libuv "
	       "thread pool %s; MB = MiB of log bytes written\n",
	       workdir, o.total_mb, o.message_size, o.batch, batch_bytes + RECORD_ENVELOPE_SIZE,
	       o.segment_size >> 20, o.inflight, tp != NULL ? tp : "4 (default)");
	fflush(stdout);

	size_t n_runs = o.n_partitions * o.n_policies, done = 0;
	struct run_result *rs = calloc(n_runs, sizeof(*rs));
	if (rs == NULL)
		return 2;
	int status = 0;
	for (size_t i = 0; i < o.n_partitions && status == 0; i++) {
		for (size_t k = 0; k < o.n_policies && status == 0; k++) {
			int rv = run_one(&o, pio, workdir, o.partitions[i], o.policies[k], &rs[done]);
			if (rv != 0) {
				fprintf(stderr, "galgo-storage-bench: run partitions=%u policy=%s failed\n", o.partitions[i],
					policy_name(o.policies[k]));
				status = rv > 0 ? 2 : 1;
				break;
			}
			print_run(&rs[done], o.policies[k] == PLOG_DURABILITY_FSYNC);
			done++;
		}
	}
	pio_destroy(pio);
	long rss_end = rss_now_kb();

	if (done > 0) {
		printf("\nsummary (MB/s; latency p50/p99/p999 in ms; ratio = ours/fio, target %.2f with fsync)\n",
		       TARGET_RATIO);
		printf("%5s %-8s %9s %10s %9s %9s %9s %9s %9s %6s %s\n", "parts", "policy", "write", "msgs/s", "p50",
		       "p99", "p999", "read", "fio", "ratio", "target");
		for (size_t i = 0; i < done; i++) {
			const struct run_result *r = &rs[i];
			double mbs = r->write_s > 0 ? (double)r->bytes / MIB / r->write_s : 0;
			double ratio = r->fio_ok && r->fio_mb_s > 0 ? mbs / r->fio_mb_s : 0;
			char fio[32] = "-", rat[32] = "-";
			if (r->fio_ok) {
				snprintf(fio, sizeof(fio), "%.1f", r->fio_mb_s);
				snprintf(rat, sizeof(rat), "%.2f", ratio);
			}
			printf("%5u %-8s %9.1f %10.0f %9.3f %9.3f %9.3f %9.0f %9s %6s %s%s\n", r->partitions,
			       policy_name(r->policy), mbs, r->write_s > 0 ? (double)r->messages / r->write_s : 0,
			       r->lat_p50_ms, r->lat_p99_ms, r->lat_p999_ms,
			       r->read_s > 0 ? (double)r->read_bytes / MIB / r->read_s : 0, fio, rat,
			       r->policy != PLOG_DURABILITY_FSYNC || !r->fio_ok ? "" : ratio >= TARGET_RATIO ? "met" : "MISSED",
			       run_short(r) ? " [short]" : "");
		}
		printf("RSS at start %.1f MB, at end %.1f MB; peak RSS (ru_maxrss) %.1f MB\n", rss_start / 1024.0,
		       rss_end / 1024.0, maxrss_kb() / 1024.0);
		bool any_short = false;
		for (size_t i = 0; i < done; i++)
			any_short |= run_short(&rs[i]);
		if (any_short)
			printf("runs marked [short] timed a phase under %.0f ms: too short to trust (fio rounds its "
			       "runtime to whole ms); use a larger --total-mb\n", SHORT_S * 1000);
	}
	if (o.json != NULL && write_json(o.json, &o, workdir, rs, done, rss_start, rss_end) != 0 && status == 0)
		status = 2;
	free(rs);
	if (!o.keep && made_dir)
		rm_rf(workdir);
	return status;
}
