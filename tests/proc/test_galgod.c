/*
 * Tests of the galgod program, run as a child process with a temporary data directory: startup, the
 * "galgod ready" line, clean exits on SIGTERM and SIGINT, the data directory lock, configuration errors,
 * and the partitions it opens (or skips) at startup.
 *
 * Every wait is bounded (CHILD_TIMEOUT_MS), so a hung galgod fails the test instead of blocking it, and
 * the fini hook kills whatever children a failed test left behind.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <xxhash.h>

#include "partition/flusher.h"
#include "partition/pio.h"
#include "partition/plog.h"
#include "partition/record.h"

#define GALGOD GALGO_BUILD_DIR "/galgod"
#define CHILD_TIMEOUT_MS 10000

extern char **environ;

/* A running galgod and everything it printed so far (stdout and stderr together). */
struct child {
	pid_t pid;
	int out;            /* read end of the output pipe, non-blocking */
	char *buf;
	size_t len, cap;
	bool eof;
};

static char tmpdir[64];
static char datadir[128];
static pid_t spawned[8];
static int n_spawned;

static void setup(void)
{
	strcpy(tmpdir, "/tmp/galgo-test-galgod-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(datadir, sizeof(datadir), "%s/data", tmpdir);
}

static void teardown(void)
{
	for (int i = 0; i < n_spawned; i++) {
		if (spawned[i] > 0 && kill(spawned[i], SIGKILL) == 0)
			waitpid(spawned[i], NULL, 0);
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(galgod, .init = setup, .fini = teardown, .timeout = 60);

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Starts galgod with the given arguments (NULL-terminated), in the temporary directory (so no galgo.ini
 * of the caller's is read) and without any GALGO_ or IGGY_ environment variable of the caller's.
 */
static void child_start(struct child *c, const char *const *args)
{
	int fds[2];
	char *argv[32];
	char *envp[256];
	int argc = 0, envc = 0;

	memset(c, 0, sizeof(*c));
	argv[argc++] = GALGOD;
	for (; *args != NULL && argc < 31; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	for (char **e = environ; *e != NULL && envc < 255; e++) {
		if (strncmp(*e, "GALGO_", 6) != 0 && strncmp(*e, "IGGY_", 5) != 0)
			envp[envc++] = *e;
	}
	envp[envc] = NULL;

	cr_assert_eq(pipe(fds), 0);
	cr_assert_eq(fcntl(fds[0], F_SETFD, FD_CLOEXEC), 0);
	cr_assert_eq(fcntl(fds[1], F_SETFD, FD_CLOEXEC), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		if (chdir(tmpdir) < 0)
			_exit(126);
		execve(GALGOD, argv, envp);
		_exit(127);
	}
	close(fds[1]);
	cr_assert_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
	c->pid = pid;
	c->out = fds[0];
	if (n_spawned < (int)(sizeof(spawned) / sizeof(spawned[0])))
		spawned[n_spawned++] = pid;
}

/* Reads what is available, waiting at most timeout_ms for something. */
static void child_pump(struct child *c, int timeout_ms)
{
	struct pollfd p = {.fd = c->out, .events = POLLIN};
	if (c->eof)
		return;
	if (poll(&p, 1, timeout_ms) <= 0)
		return;
	for (;;) {
		if (c->cap - c->len < 4096) {
			c->cap = c->cap * 2 + 8192;
			c->buf = realloc(c->buf, c->cap);
			cr_assert_not_null(c->buf);
		}
		ssize_t n = read(c->out, c->buf + c->len, c->cap - c->len - 1);
		if (n > 0) {
			c->len += (size_t)n;
			c->buf[c->len] = '\0';
			continue;
		}
		if (n == 0)
			c->eof = true;
		return;
	}
}

/* True if the output contains needle (reading more as needed, for at most timeout_ms). */
static bool child_wait_output(struct child *c, const char *needle, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (c->buf != NULL && strstr(c->buf, needle) != NULL)
			return true;
		if (c->eof || now_ms() >= end)
			return false;
		child_pump(c, 50);
	}
}

/*
 * Waits (at most timeout_ms) for the child to exit and for the end of its output. Returns its wait
 * status, or -1 after killing it on timeout.
 */
static int child_wait(struct child *c, int timeout_ms)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	int status = -1;
	for (;;) {
		child_pump(c, 20);
		if (c->pid > 0) {
			pid_t r = waitpid(c->pid, &status, WNOHANG);
			if (r == c->pid) {
				for (int i = 0; i < n_spawned; i++) {
					if (spawned[i] == c->pid)
						spawned[i] = 0;
				}
				c->pid = 0;
			}
		}
		if (c->pid == 0 && c->eof)
			return status;
		if (now_ms() >= end) {
			if (c->pid > 0) {
				kill(c->pid, SIGKILL);
				waitpid(c->pid, NULL, 0);
				c->pid = 0;
			}
			return c->eof || status != -1 ? status : -1;
		}
	}
}

static void child_free(struct child *c)
{
	if (c->out >= 0)
		close(c->out);
	free(c->buf);
	c->buf = NULL;
}

/* Asserts that a wait status is a normal exit with `code`. */
#define ASSERT_EXIT(c, status, code)                                                                     \
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == (code),                                     \
		  "expected exit %d, got status 0x%x; output:\n%s", (code), (unsigned)(status),          \
		  (c)->buf != NULL ? (c)->buf : "")

/* Starts galgod on the test's data directory and waits for "galgod ready". */
static void start_ready(struct child *c)
{
	char flag[160];
	snprintf(flag, sizeof(flag), "--node.data_dir=%s", datadir);
	const char *args[] = {flag, "--tcp.address=127.0.0.1:0", "--http.address=127.0.0.1:0", "--quic.address=127.0.0.1:0",
			      "--websocket.address=127.0.0.1:0", NULL};
	child_start(c, args);
	cr_assert(child_wait_output(c, "galgod ready", CHILD_TIMEOUT_MS), "no 'galgod ready'; output:\n%s",
		  c->buf != NULL ? c->buf : "");
}

/* galgod logs "galgod ready" and exits 0 on SIGTERM. */
Test(galgod, logs_ready_and_exits_0_on_sigterm)
{
	struct child c;
	start_ready(&c);
	cr_assert(strstr(c.buf, "tcp 127.0.0.1:") != NULL && strstr(c.buf, "tcp 127.0.0.1:0,") == NULL,
		  "the ready line names the bound port: %s", c.buf);
	cr_assert_eq(kill(c.pid, SIGTERM), 0);
	int status = child_wait(&c, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&c, status, 0);
	cr_assert(strstr(c.buf, "SIGTERM") != NULL, "%s", c.buf);
	cr_assert(strstr(c.buf, "galgod stopped") != NULL, "%s", c.buf);
	child_free(&c);
}

/* galgod exits 0 on SIGINT too, and SIGHUP does not stop it. */
Test(galgod, exits_0_on_sigint_and_ignores_sighup)
{
	struct child c;
	start_ready(&c);
	cr_assert_eq(kill(c.pid, SIGHUP), 0);
	cr_assert(child_wait_output(&c, "SIGHUP", CHILD_TIMEOUT_MS), "%s", c.buf);
	cr_assert_eq(kill(c.pid, SIGINT), 0);
	int status = child_wait(&c, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&c, status, 0);
	cr_assert(strstr(c.buf, "SIGINT") != NULL, "%s", c.buf);
	child_free(&c);
}

/* Each log line starts with an ISO-8601 UTC time with milliseconds, then the level and the tag. */
Test(galgod, log_lines_have_time_level_and_tag)
{
	struct child c;
	start_ready(&c);
	kill(c.pid, SIGTERM);
	int status = child_wait(&c, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&c, status, 0);
	char *line = strstr(c.buf, "galgod ready");
	cr_assert_not_null(line);
	while (line > c.buf && line[-1] != '\n')
		line--;
	int y, mo, d, h, mi, s, ms;
	char level[8], tag[16];
	cr_assert_eq(sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %7s [%15[^]]]", &y, &mo, &d, &h, &mi, &s, &ms, level,
			    tag),
		     9, "%s", line);
	cr_assert_str_eq(level, "INFO");
	cr_assert_str_eq(tag, "galgod");
	child_free(&c);
}

/* A second galgod on the same data directory fails with "locked by pid N" while the first runs. */
Test(galgod, second_instance_on_the_same_data_dir_is_refused)
{
	struct child a, b;
	char expect[64], lockpath[160], content[32] = {0};
	start_ready(&a);

	snprintf(lockpath, sizeof(lockpath), "%s/galgod.lock", datadir);
	FILE *f = fopen(lockpath, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(content, sizeof(content), f));
	fclose(f);
	cr_assert_eq(atol(content), (long)a.pid);

	char flag[160];
	snprintf(flag, sizeof(flag), "--node.data_dir=%s", datadir);
	const char *args[] = {flag, "--tcp.address=127.0.0.1:0", "--http.address=127.0.0.1:0", "--quic.address=127.0.0.1:0",
			      "--websocket.address=127.0.0.1:0", NULL};
	child_start(&b, args);
	int status = child_wait(&b, CHILD_TIMEOUT_MS);
	cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0, "status 0x%x; output:\n%s",
		  (unsigned)status, b.buf != NULL ? b.buf : "");
	snprintf(expect, sizeof(expect), "is locked by pid %ld", (long)a.pid);
	cr_assert(strstr(b.buf, expect) != NULL, "no '%s' in:\n%s", expect, b.buf);
	cr_assert(strstr(b.buf, datadir) != NULL, "%s", b.buf);

	/* The first one is unaffected, and once it has stopped the directory can be used again. */
	kill(a.pid, SIGTERM);
	status = child_wait(&a, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&a, status, 0);
	child_free(&a);
	child_free(&b);

	start_ready(&b);
	kill(b.pid, SIGTERM);
	status = child_wait(&b, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&b, status, 0);
	child_free(&b);
}

/* A bad configuration flag makes galgod exit 2 with a message naming the flag. */
Test(galgod, bad_config_flag_exits_2_naming_the_flag)
{
	struct child c;
	const char *args1[] = {"--tcp.address=nowhere", NULL};
	child_start(&c, args1);
	int status = child_wait(&c, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&c, status, 2);
	cr_assert(strstr(c.buf, "flag --tcp.address") != NULL, "%s", c.buf);
	child_free(&c);

	const char *args2[] = {"--storage.segmentsize", "1GiB", NULL};
	child_start(&c, args2);
	status = child_wait(&c, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&c, status, 2);
	cr_assert(strstr(c.buf, "--storage.segmentsize") != NULL, "%s", c.buf);
	child_free(&c);
}

/* A bad config file makes galgod exit 2 with a message naming the file and line. */
Test(galgod, bad_config_file_exits_2_naming_file_and_line)
{
	struct child c;
	char path[128], flag[160];
	snprintf(path, sizeof(path), "%s/galgo.ini", tmpdir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("[storage]\ndurability = fsync\ndurability = sometimes\n", f);
	fclose(f);
	snprintf(flag, sizeof(flag), "--config=%s", path);
	const char *args[] = {flag, NULL};
	child_start(&c, args);
	int status = child_wait(&c, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&c, status, 2);
	char expect[160];
	snprintf(expect, sizeof(expect), "%s:3: storage.durability", path);
	cr_assert(strstr(c.buf, expect) != NULL, "no '%s' in:\n%s", expect, c.buf);
	child_free(&c);
}

/* --help prints every setting and exits 0 without touching a data directory. */
Test(galgod, help_exits_0)
{
	struct child c;
	const char *args[] = {"--help", NULL};
	child_start(&c, args);
	int status = child_wait(&c, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&c, status, 0);
	cr_assert(strstr(c.buf, "GALGO_STORAGE_SEGMENT_SIZE") != NULL, "%s", c.buf);
	cr_assert(strstr(c.buf, "--with-default-root-credentials") != NULL, "%s", c.buf);
	struct stat st;
	char dflt[128];
	snprintf(dflt, sizeof(dflt), "%s/local_data", tmpdir);
	cr_assert_neq(stat(dflt, &st), 0, "--help created %s", dflt);
	child_free(&c);
}

/* --version prints Galgo's version and the Iggy protocol it speaks, and exits 0 without a data dir. */
Test(galgod, version_exits_0)
{
	struct child c;
	const char *args[] = {"--version", NULL};
	child_start(&c, args);
	int status = child_wait(&c, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&c, status, 0);
	cr_assert(strncmp(c.buf, "galgod 0.", 9) == 0, "%s", c.buf);
	cr_assert(strstr(c.buf, "protocol 0.11") != NULL, "%s", c.buf);
	struct stat st;
	char dflt[128];
	snprintf(dflt, sizeof(dflt), "%s/local_data", tmpdir);
	cr_assert_neq(stat(dflt, &st), 0, "--version created %s", dflt);
	child_free(&c);
}

/* The test's inline flusher and real file backend, for writing partitions before galgod starts. */
struct writer {
	uv_loop_t loop;
	struct flusher *fl;
	struct pio *pio;
};

static void writer_open(struct writer *w)
{
	cr_assert_eq(uv_loop_init(&w->loop), 0);
	cr_assert_eq(flusher_new(&w->loop, true, &w->fl), 0);
	w->pio = pio_real_new();
	cr_assert_not_null(w->pio);
}

static void writer_close(struct writer *w)
{
	flusher_close(w->fl);
	pio_destroy(w->pio);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	cr_assert_eq(uv_loop_close(&w->loop), 0);
}

/* Builds an unstamped producer batch of `count` messages of `size` bytes each. */
static uint8_t *make_batch(uint32_t count, uint32_t size, uint32_t *len_out)
{
	uint32_t frame = BATCH_FRAME_HEADER_SIZE + size;
	uint32_t len = BATCH_HEADER_SIZE + count * frame;
	uint8_t *b = calloc(1, len);
	cr_assert_not_null(b);
	record_put64(b + 24, 1000);
	record_put64(b + 32, len);
	record_put32(b + 48, count);
	for (uint32_t i = 0; i < count; i++) {
		uint8_t *f = b + BATCH_HEADER_SIZE + i * frame;
		record_put64(f + 8, i + 1);
		record_put32(f + 24, i);
		record_put32(f + 36, size);
		memset(f + BATCH_FRAME_HEADER_SIZE, 'a' + (int)(i % 26), size);
		record_put64(f, XXH3_64bits(f + 8, frame - 8));
	}
	record_put64(b + 40, batch_checksum(b));
	cr_assert_eq(batch_verify(b, len, true), 0);
	*len_out = len;
	return b;
}

static void on_appended(struct plog_append_req *req, int status)
{
	*(int *)req->data = status;
}

/* Appends one batch of `count` messages to a log and waits until it is durable. */
static void append_batch(struct writer *w, struct plog *l, uint32_t count)
{
	uint32_t len;
	uint8_t *batch = make_batch(count, 100, &len);
	int status = 1;
	struct plog_append_req req = {.data = &status};
	plog_stamp(l, batch, 0);
	struct plog_entry e = {.type = RECORD_MESSAGES, .index = plog_last_index(l) + 1, .term = 1, .payload = batch,
			       .length = len};
	cr_assert_eq(plog_append(l, &req, &e, on_appended), 0);
	uint64_t end = now_ms() + CHILD_TIMEOUT_MS;
	while (status == 1 && now_ms() < end) {
		flusher_drain(w->fl);
		uv_run(&w->loop, UV_RUN_NOWAIT);
	}
	cr_assert_eq(status, 0);
	free(batch);
}

/* Writes partition stream/topic/partition under the data directory with the given batches. */
static void write_partition(struct writer *w, const char *rel, const uint32_t *counts, int n)
{
	char dir[256];
	struct plog *l;
	struct plog_opts o;
	snprintf(dir, sizeof(dir), "%s/partitions/%s", datadir, rel);
	plog_opts_default(&o);
	cr_assert_eq(plog_open(w->pio, w->fl, dir, &o, NULL, &l), 0);
	for (int i = 0; i < n; i++)
		append_batch(w, l, counts[i]);
	cr_assert_eq(plog_close(l), 0);
}

/*
 * Partition directories that no replica of the node owns (left by a crash during a delete) are removed:
 * one named by a group id the metadata does not place here, and one of the old <stream>/<topic>/<partition>
 * layout that names no partition.
 */
Test(galgod, partition_directories_unknown_to_the_metadata_are_removed)
{
	struct writer w;
	const uint32_t a[] = {3, 4};
	writer_open(&w);
	write_partition(&w, "1/1/1", a, 2);
	write_partition(&w, "80000000deadbeef", a, 1);
	writer_close(&w);
	char dir[256], gdir[256];
	snprintf(dir, sizeof(dir), "%s/partitions/1", datadir);
	snprintf(gdir, sizeof(gdir), "%s/partitions/80000000deadbeef", datadir);
	struct stat st;
	cr_assert_eq(stat(dir, &st), 0);
	cr_assert_eq(stat(gdir, &st), 0);

	struct child c;
	start_ready(&c);
	cr_assert(strstr(c.buf, "no partition replica of this node owns it") != NULL, "%s", c.buf);
	cr_assert(strstr(c.buf, "partitions opened: 0") != NULL, "%s", c.buf);
	cr_assert_neq(stat(dir, &st), 0, "%s still exists", dir);
	cr_assert_neq(stat(gdir, &st), 0, "%s still exists", gdir);
	kill(c.pid, SIGTERM);
	int status = child_wait(&c, CHILD_TIMEOUT_MS);
	ASSERT_EXIT(&c, status, 0);
	child_free(&c);
}
