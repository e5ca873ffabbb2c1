/*
 * Tests of the C client library (client/gclient.h) against the real galgod: each test starts galgod
 * on a temporary data directory and an ephemeral port, drives it through gclient, and stops it with
 * SIGTERM, requiring exit status 0.
 *
 * galgod's output goes to a file in the temporary directory (a pipe nobody drains could block it); the
 * bound port is read from its "galgod ready: ... tcp 127.0.0.1:PORT," line. Every wait is bounded, and
 * the fini hook kills a galgod that a failed test left running.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/gclient.h"
#include "partition/record.h"
#include "proto/frame.h"
#include "proto/wire.h"
#include <xxhash.h>

#define GALGOD GALGO_BUILD_DIR "/galgod"
#define START_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 10000

extern char **environ;

static char tmpdir[64];
static char logpath[128];
static pid_t galgod_pid;
static char address[64];

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* The whole log so far, NUL-terminated (the caller frees it). */
static char *read_log(void)
{
	FILE *f = fopen(logpath, "r");
	if (f == NULL)
		return strdup("");
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	cr_assert_not_null(buf);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 4096) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
	}
	fclose(f);
	buf[len] = '\0';
	return buf;
}

/* Starts galgod and waits (bounded) for its ready line; sets `address` to the bound TCP address. */
static const char *galgod_extra_flag; /* one more flag for the next start, or NULL */

static void galgod_start(void)
{
	char datadir[128], dataflag[160];
	snprintf(datadir, sizeof(datadir), "%s/data", tmpdir);
	snprintf(dataflag, sizeof(dataflag), "--node.data_dir=%s", datadir);
	char *argv[] = {GALGOD, dataflag, "--tcp.address=127.0.0.1:0", "--quic.enabled=false", "--http.enabled=false",
			"--websocket.enabled=false",
			"--with-default-root-credentials", (char *)galgod_extra_flag, NULL};
	char *envp[256];
	int envc = 0;
	for (char **e = environ; *e != NULL && envc < 255; e++)
		if (strncmp(*e, "GALGO_", 6) != 0 && strncmp(*e, "IGGY_", 5) != 0)
			envp[envc++] = *e;
	envp[envc] = NULL;
	int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (chdir(tmpdir) != 0)
			_exit(126);
		execve(GALGOD, argv, envp);
		_exit(127);
	}
	close(fd);
	galgod_pid = pid;
	uint64_t end = now_ms() + START_TIMEOUT_MS;
	for (;;) {
		char *log = read_log();
		const char *ready = strstr(log, "galgod ready:");
		const char *tcp = ready != NULL ? strstr(ready, " tcp 127.0.0.1:") : NULL;
		if (tcp != NULL) {
			unsigned port = (unsigned)strtoul(tcp + strlen(" tcp 127.0.0.1:"), NULL, 10);
			free(log);
			cr_assert(port > 0 && port < 65536, "bad port in the ready line");
			snprintf(address, sizeof(address), "127.0.0.1:%u", port);
			return;
		}
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			galgod_pid = 0;
			cr_assert_fail("galgod exited before it was ready (status 0x%x):\n%s", (unsigned)status, log);
		}
		if (now_ms() > end)
			cr_assert_fail("galgod not ready within %d ms:\n%s", START_TIMEOUT_MS, log);
		free(log);
		sleep_ms(20);
	}
}

/* Stops galgod with SIGTERM and requires exit status 0 within STOP_TIMEOUT_MS. */
static void galgod_stop(void)
{
	cr_assert_gt(galgod_pid, 0);
	cr_assert_eq(kill(galgod_pid, SIGTERM), 0);
	uint64_t end = now_ms() + STOP_TIMEOUT_MS;
	int status = 0;
	for (;;) {
		pid_t r = waitpid(galgod_pid, &status, WNOHANG);
		if (r == galgod_pid)
			break;
		if (now_ms() > end) {
			kill(galgod_pid, SIGKILL);
			waitpid(galgod_pid, NULL, 0);
			galgod_pid = 0;
			cr_assert_fail("galgod did not stop within %d ms", STOP_TIMEOUT_MS);
		}
		sleep_ms(10);
	}
	galgod_pid = 0;
	char *log = read_log();
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "galgod exit status 0x%x:\n%s", (unsigned)status,
		  log);
	free(log);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/galgo-test-client-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(logpath, sizeof(logpath), "%s/galgod.log", tmpdir);
	galgod_start();
}

static void teardown(void)
{
	if (galgod_pid > 0 && kill(galgod_pid, SIGKILL) == 0)
		waitpid(galgod_pid, NULL, 0);
	galgod_pid = 0;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(client, .init = setup, .fini = teardown, .timeout = 30);

/* A connected client (5 s I/O timeout: nothing here takes that long). */
static struct gclient *connect_client(void)
{
	struct gclient_opts o = {.connect_timeout_ms = 2000, .io_timeout_ms = 5000};
	struct gclient *c;
	int rv = gclient_connect(address, &o, &c);
	cr_assert_eq(rv, 0, "connect %s: %d", address, rv);
	return c;
}

static struct gclient *login_root(void)
{
	struct gclient *c = connect_client();
	int rv = gclient_login(c, "iggy", "iggy");
	cr_assert_eq(rv, 0, "login: %d", rv);
	cr_assert(gclient_logged_in(c));
	cr_assert_gt(gclient_session(c), 0);
	cr_assert_eq(gclient_user_id(c), 0); /* root is user 0 */
	return c;
}

/* ---- Messages ---- */

#define LOCKSTEP_BATCHES 10
#define PIPELINED_BATCHES 50
#define INFLIGHT 8
#define MAX_MESSAGES 512

/* Message k's payload: "m<k>-" then (k % 37) filler bytes. */
static uint32_t payload_of(uint32_t k, char *out)
{
	int n = sprintf(out, "m%" PRIu32 "-", k);
	for (uint32_t i = 0; i < k % 37; i++)
		out[n + (int)i] = (char)('a' + (k + i) % 26);
	return (uint32_t)n + k % 37;
}

/* The payloads of messages first..first+n-1 (buffers owned by the caller). */
static void batch_of(uint32_t first, uint32_t n, char bufs[][64], const void **ptrs, uint32_t *lens)
{
	for (uint32_t i = 0; i < n; i++) {
		lens[i] = payload_of(first + i, bufs[i]);
		ptrs[i] = bufs[i];
	}
}

/* Checks one message against what was sent at its offset. */
static void check_message(const struct gclient_msg *m, uint64_t expect_offset)
{
	char want[64];
	cr_assert_eq(m->offset, expect_offset, "offset %" PRIu64 ", expected %" PRIu64, m->offset, expect_offset);
	uint32_t len = payload_of((uint32_t)expect_offset, want);
	cr_assert_eq(m->payload_len, len, "payload length at %" PRIu64, m->offset);
	cr_assert(memcmp(m->payload, want, len) == 0, "payload at %" PRIu64, m->offset);
	cr_assert_null(m->headers);
	static const uint8_t zero[16];
	cr_assert(memcmp(m->id, zero, 16) != 0, "message id is zero at %" PRIu64, m->offset);
}

/* Polls and checks that the reply holds exactly offsets [first, first + n) with the right payloads. */
static void poll_expect(struct gclient *c, const struct wire_consumer *consumer, const struct wire_id *s,
			const struct wire_id *t, struct wire_polling strat, uint32_t count, bool commit,
			uint64_t first, uint32_t n, uint64_t last_offset)
{
	struct gclient_polled p;
	int rv = gclient_poll(c, consumer, s, t, 0, strat, count, commit, &p);
	cr_assert_eq(rv, 0, "poll (kind %u): %d", strat.kind, rv);
	cr_assert_eq(p.partition_id, 0);
	cr_assert_eq(p.current_offset, last_offset);
	cr_assert_eq(p.count, n, "poll kind %u value %" PRIu64 ": %u messages, expected %u", strat.kind, strat.value,
		     p.count, n);
	cr_assert_eq(gclient_polled_verify(&p), 0);
	struct gclient_msg_iter it;
	struct gclient_msg m;
	gclient_msg_iter_init(&it, &p);
	for (uint32_t i = 0; i < n; i++) {
		cr_assert_eq(gclient_msg_next(&it, &m), 1, "message %u of %u", i, n);
		check_message(&m, first + i);
	}
	cr_assert_eq(gclient_msg_next(&it, &m), 0);
}

Test(client, send_lockstep_and_pipelined_then_poll_every_strategy)
{
	struct gclient *c = login_root();
	struct gclient_stream st;
	struct gclient_topic tp;
	cr_assert_eq(gclient_create_stream(c, "s1", &st), 0);
	cr_assert_str_eq(st.name, "s1");
	struct wire_id s = wire_id_num(st.id);
	cr_assert_eq(gclient_create_topic(c, &s, "t1", 2, "fsync", &tp), 0);
	cr_assert_eq(tp.partitions_count, 2);
	cr_assert_str_eq(tp.name, "t1");
	struct wire_id t = wire_id_num(tp.id);

	static char bufs[64][64];
	const void *ptrs[64];
	uint32_t lens[64];
	uint32_t next = 0;
	/* Lock-step: batch i has i + 1 messages. */
	for (uint32_t i = 0; i < LOCKSTEP_BATCHES; i++) {
		struct gclient_sent sent;
		batch_of(next, i + 1, bufs, ptrs, lens);
		int rv = gclient_send(c, &s, &t, 0, i + 1, ptrs, lens, &sent);
		cr_assert_eq(rv, 0, "send %u: %d", i, rv);
		cr_assert_eq(sent.base_offset, next);
		cr_assert_eq(sent.partition_id, 0);
		cr_assert_eq(sent.stream_id, st.id);
		cr_assert_eq(sent.topic_id, tp.id);
		next += i + 1;
	}
	/* Pipelined: batch j has j % 7 + 1 messages, INFLIGHT of them outstanding at a time. */
	uint64_t expect_base[PIPELINED_BATCHES];
	uint32_t sent_n = 0, done = 0;
	while (done < PIPELINED_BATCHES) {
		if (sent_n < PIPELINED_BATCHES && gclient_inflight(c) < INFLIGHT) {
			uint32_t n = sent_n % 7 + 1;
			batch_of(next, n, bufs, ptrs, lens);
			expect_base[sent_n] = next;
			cr_assert_eq(gclient_send_async(c, &s, &t, 0, n, ptrs, lens), 0);
			next += n;
			sent_n++;
			/* Other requests wait until the pipeline is drained. */
			cr_assert_eq(gclient_ping(c), -EBUSY);
			continue;
		}
		struct gclient_sent sent;
		int rv = gclient_wait(c, &sent);
		cr_assert_eq(rv, 0, "wait %u: %d", done, rv);
		cr_assert_eq(sent.base_offset, expect_base[done], "pipelined batch %u", done);
		done++;
	}
	cr_assert_eq(gclient_inflight(c), 0);
	cr_assert_eq(gclient_wait(c, NULL), -EINVAL);
	const uint32_t total = next;
	const uint64_t last = total - 1;

	struct gclient_partition parts[2];
	cr_assert_eq(gclient_get_topic(c, &s, &t, &tp, parts, 2), 0);
	cr_assert_eq(tp.messages_count, total);
	cr_assert_eq(parts[0].current_offset, last);
	cr_assert_eq(parts[0].messages_count, total);
	cr_assert_eq(parts[1].messages_count, 0);

	struct wire_consumer cons = gclient_consumer(7);
	/* Offset: everything, then a window in the middle. */
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_OFFSET, 0}, MAX_MESSAGES, false, 0, total, last);
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_OFFSET, 17}, 40, false, 17, 40, last);
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_OFFSET, last}, 10, false, last, 1, last);
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_OFFSET, total}, 10, false, 0, 0, last);
	/* First and Last. */
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_FIRST, 0}, 7, false, 0, 7, last);
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_LAST, 0}, 5, false, total - 5, 5, last);
	/* Next: from 0 while nothing is stored; without auto_commit nothing is stored. */
	struct gclient_offset off;
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_NEXT, 0}, 10, false, 0, 10, last);
	cr_assert_eq(gclient_get_offset(c, &cons, &s, &t, 0, &off), -ENOENT);
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_NEXT, 0}, 10, true, 0, 10, last);
	cr_assert_eq(gclient_get_offset(c, &cons, &s, &t, 0, &off), 0);
	cr_assert_eq(off.stored_offset, 9);
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_NEXT, 0}, 10, true, 10, 10, last);
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_NEXT, 0}, MAX_MESSAGES, true, 20, total - 20,
		    last);
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_NEXT, 0}, 10, true, 0, 0, last);

	/* Timestamp: the first message whose (batch) timestamp is ≥ that of pipelined batch 30. */
	struct gclient_polled p;
	static uint64_t ts[MAX_MESSAGES];
	cr_assert_eq(gclient_poll(c, &cons, &s, &t, 0, (struct wire_polling){WIRE_POLL_OFFSET, 0}, MAX_MESSAGES,
				  false, &p),
		     0);
	struct gclient_msg_iter it;
	struct gclient_msg m;
	gclient_msg_iter_init(&it, &p);
	uint64_t now = (uint64_t)time(NULL) * 1000000u;
	for (uint32_t i = 0; i < total; i++) {
		cr_assert_eq(gclient_msg_next(&it, &m), 1);
		ts[i] = m.timestamp;
		cr_assert(i == 0 || ts[i] >= ts[i - 1], "timestamps never decrease");
		cr_assert(m.origin_timestamp + 60000000u > now && m.origin_timestamp < now + 60000000u,
			  "origin timestamp is the send time");
	}
	uint64_t value = ts[expect_base[30]];
	uint32_t first = 0;
	while (ts[first] < value)
		first++;
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_TIMESTAMP, value}, MAX_MESSAGES, false, first,
		    total - first, last);
	poll_expect(c, &cons, &s, &t, (struct wire_polling){WIRE_POLL_TIMESTAMP, ts[last] + 1}, MAX_MESSAGES, false,
		    0, 0, last);

	/* The empty partition answers the 16-byte prefix only. */
	cr_assert_eq(gclient_poll(c, &cons, &s, &t, 1, (struct wire_polling){WIRE_POLL_FIRST, 0}, 10, false, &p), 0);
	cr_assert_eq(p.partition_id, 1);
	cr_assert_eq(p.count, 0);
	cr_assert_eq(p.len, 16);

	cr_assert_eq(gclient_delete_stream(c, &s), 0);
	cr_assert_eq(gclient_get_stream(c, &s, &st), -ENOENT);
	gclient_close(c);
	galgod_stop();
}

/* Balanced partitioning: the server spreads consecutive batches over the partitions. */
Test(client, balanced_send_spreads_over_partitions)
{
	struct gclient *c = login_root();
	struct gclient_stream st;
	cr_assert_eq(gclient_create_stream(c, "bal", &st), 0);
	struct wire_id s = gclient_id_name("bal"), t = gclient_id_name("tb");
	cr_assert_eq(gclient_create_topic(c, &s, "tb", 3, "none", NULL), 0);
	const void *ptr[1] = {"x"};
	uint32_t len[1] = {1};
	bool seen[3] = {false, false, false};
	for (int i = 0; i < 3; i++) {
		struct gclient_sent sent;
		cr_assert_eq(gclient_send(c, &s, &t, GCLIENT_BALANCED, 1, ptr, len, &sent), 0);
		cr_assert_lt(sent.partition_id, 3);
		seen[sent.partition_id] = true;
	}
	cr_assert(seen[0] && seen[1] && seen[2]);
	gclient_close(c);
	galgod_stop();
}

/* ---- Errors ---- */

Test(client, wrong_password_is_eviction_42_and_the_connection_stays_usable)
{
	struct gclient *c = connect_client();
	cr_assert_eq(gclient_ping(c), 0); /* allowed before login */
	cr_assert_eq(gclient_login(c, "iggy", "wrong-password"), 42);
	cr_assert_eq(gclient_last_eviction(c), FRAME_EVICT_INVALID_CREDENTIALS);
	cr_assert_not(gclient_logged_in(c));
	cr_assert_eq(gclient_login(c, "nobody", "iggy"), 42);
	/* The reference server keeps the socket open after an eviction: a retry on it works. */
	cr_assert_eq(gclient_login(c, "iggy", "iggy"), 0);
	cr_assert_eq(gclient_ping(c), 0);
	gclient_close(c);
	galgod_stop();
}

Test(client, errors_map_to_codes)
{
	struct gclient *c = connect_client();
	struct wire_id s = gclient_id_name("e"), t = gclient_id_name("t"), missing = wire_id_num(99);
	struct gclient_stream st;
	/* Before login: reads are denied with 40; writes are refused locally with 40. */
	cr_assert_eq(gclient_get_stream(c, &s, &st), 40);
	cr_assert_eq(gclient_create_stream(c, "e", NULL), 40);
	cr_assert_eq(gclient_login(c, "iggy", "iggy"), 0);
	cr_assert_eq(gclient_create_stream(c, "e", NULL), 0);
	cr_assert_eq(gclient_create_stream(c, "e", NULL), 1012);  /* StreamNameAlreadyExists */
	cr_assert_eq(gclient_get_stream(c, &missing, &st), -ENOENT);
	cr_assert_eq(gclient_delete_stream(c, &missing), 1009);   /* StreamIdNotFound */
	cr_assert_eq(gclient_create_topic(c, &s, "t", 1, "sometimes", NULL), 4042); /* InvalidOptionValue */
	cr_assert_eq(gclient_create_topic(c, &s, "t", 1, NULL, NULL), 0);
	cr_assert_eq(gclient_create_topic(c, &s, "t", 1, NULL, NULL), 2013); /* TopicNameAlreadyExists */
	struct gclient_topic tp;
	cr_assert_eq(gclient_get_topic(c, &s, &missing, &tp, NULL, 0), -ENOENT);
	const void *ptr[1] = {"x"};
	uint32_t len[1] = {1};
	cr_assert_eq(gclient_send(c, &s, &missing, 0, 1, ptr, len, NULL), 20); /* ResourceNotFound */
	cr_assert_eq(gclient_send(c, &s, &t, 5, 1, ptr, len, NULL), 20);
	struct wire_consumer cons = gclient_consumer(1);
	struct gclient_polled p;
	cr_assert_eq(gclient_poll(c, &cons, &missing, &t, 0, (struct wire_polling){WIRE_POLL_FIRST, 0}, 1, false, &p),
		     1009);
	cr_assert_eq(gclient_poll(c, &cons, &s, &missing, 0, (struct wire_polling){WIRE_POLL_FIRST, 0}, 1, false, &p),
		     2010);
	cr_assert_eq(gclient_poll(c, &cons, &s, &t, 3, (struct wire_polling){WIRE_POLL_FIRST, 0}, 1, false, &p), 3007);
	/* Raw requests: an unknown code is refused locally; FlushUnsavedBuffer gets status 5. */
	cr_assert_eq(gclient_raw(c, 60000, NULL, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(gclient_raw(c, FRAME_CODE_FLUSH_UNSAVED_BUFFER, "\x01\x04\x00\x00\x00\x00", 6, NULL, NULL), 5);
	cr_assert_eq(gclient_ping(c), 0);
	/* After a logout the session is gone. */
	cr_assert_eq(gclient_logout(c), 0);
	cr_assert_eq(gclient_get_stream(c, &s, &st), 40);
	cr_assert_eq(gclient_login(c, "iggy", "iggy"), 0);
	cr_assert_eq(gclient_get_stream(c, &s, &st), 0);
	cr_assert_str_eq(st.name, "e");
	cr_assert_eq(st.topics_count, 1);
	gclient_close(c);
	galgod_stop();
}

/* ---- Personal access tokens ---- */

Test(client, pat_create_login_delete)
{
	struct gclient *c = login_root();
	char token[GCLIENT_TOKEN_MAX];
	cr_assert_eq(gclient_create_pat(c, "bench-token", 0, token), 0);
	cr_assert_gt(strlen(token), 0);
	char again[GCLIENT_TOKEN_MAX];
	cr_assert_eq(gclient_create_pat(c, "bench-token", 0, again), 51); /* PersonalAccessTokenAlreadyExists */
	struct gclient_pat pats[4];
	uint32_t n = 0;
	cr_assert_eq(gclient_get_pats(c, pats, 4, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(pats[0].name, "bench-token");
	cr_assert_eq(pats[0].expiry_at, 0);

	struct gclient *d = connect_client();
	cr_assert_eq(gclient_login_pat(d, token), 0);
	cr_assert(gclient_logged_in(d));
	cr_assert_eq(gclient_user_id(d), 0);
	struct gclient_stream st;
	cr_assert_eq(gclient_get_stream(d, &(struct wire_id){.kind = WIRE_ID_NUMERIC, .num = 0}, &st), -ENOENT);
	gclient_close(d);

	cr_assert_eq(gclient_delete_pat(c, "bench-token"), 0);
	cr_assert_eq(gclient_get_pats(c, pats, 4, &n), 0);
	cr_assert_eq(n, 0);
	struct gclient *e = connect_client();
	cr_assert_eq(gclient_login_pat(e, token), 53); /* InvalidPersonalAccessToken (Eviction 10) */
	cr_assert_eq(gclient_last_eviction(e), FRAME_EVICT_INVALID_TOKEN);
	cr_assert_not(gclient_logged_in(e));
	gclient_close(e);
	gclient_close(c);
	galgod_stop();
}

/* ---- Consumer offsets ---- */

Test(client, consumer_offsets_store_get_delete)
{
	struct gclient *c = login_root();
	struct wire_id s = gclient_id_name("o"), t = gclient_id_name("t");
	cr_assert_eq(gclient_create_stream(c, "o", NULL), 0);
	cr_assert_eq(gclient_create_topic(c, &s, "t", 1, NULL, NULL), 0);
	struct wire_consumer cons = gclient_consumer(42);
	struct gclient_offset off;
	/* Nothing stored yet; the partition is empty, so every offset is above its current one. */
	cr_assert_eq(gclient_get_offset(c, &cons, &s, &t, 0, &off), -ENOENT);
	cr_assert_eq(gclient_store_offset(c, &cons, &s, &t, 0, 0), 4100);

	static char bufs[64][64];
	const void *ptrs[64];
	uint32_t lens[64];
	batch_of(0, 10, bufs, ptrs, lens);
	cr_assert_eq(gclient_send(c, &s, &t, 0, 10, ptrs, lens, NULL), 0);

	cr_assert_eq(gclient_store_offset(c, &cons, &s, &t, 0, 5), 0);
	cr_assert_eq(gclient_get_offset(c, &cons, &s, &t, 0, &off), 0);
	cr_assert_eq(off.partition_id, 0);
	cr_assert_eq(off.stored_offset, 5);
	cr_assert_eq(off.current_offset, 9);
	/* The absent partition flag means partition 0 for a single consumer. */
	cr_assert_eq(gclient_get_offset(c, &cons, &s, &t, GCLIENT_NO_PARTITION, &off), 0);
	cr_assert_eq(off.stored_offset, 5);
	cr_assert_eq(gclient_store_offset(c, &cons, &s, &t, 0, 10), 4100); /* above the current offset */
	cr_assert_eq(gclient_store_offset(c, &cons, &s, &t, 0, 9), 0);
	cr_assert_eq(gclient_get_offset(c, &cons, &s, &t, 0, &off), 0);
	cr_assert_eq(off.stored_offset, 9);
	/* Another consumer has its own offset. */
	struct wire_consumer other = gclient_consumer(43);
	cr_assert_eq(gclient_get_offset(c, &other, &s, &t, 0, &off), -ENOENT);

	cr_assert_eq(gclient_delete_offset(c, &cons, &s, &t, 0), 0);
	cr_assert_eq(gclient_get_offset(c, &cons, &s, &t, 0, &off), -ENOENT);
	cr_assert_eq(gclient_delete_offset(c, &cons, &s, &t, 0), 3021); /* ConsumerOffsetNotFound */
	cr_assert_eq(gclient_get_offset(c, &cons, &s, &t, 1, &off), 3007); /* no such partition */
	gclient_close(c);
	galgod_stop();
}

/* ---- GetMe and consumer groups ---- */

Test(client, get_me_is_this_connection)
{
	struct gclient *a = login_root();
	struct gclient *b = login_root();
	struct gclient_me ma, mb;
	cr_assert_eq(gclient_get_me(a, &ma), 0);
	cr_assert_eq(gclient_get_me(b, &mb), 0);
	cr_assert_neq(ma.client_id, mb.client_id);
	cr_assert_eq(ma.user_id, 0);
	cr_assert_eq(ma.transport, 1);
	cr_assert_eq(ma.groups_count, 0);
	/* The address the server reports is this socket's own address. */
	struct gclient *cs[2] = {a, b};
	struct gclient_me *ms[2] = {&ma, &mb};
	for (int i = 0; i < 2; i++) {
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		cr_assert_eq(getsockname(gclient_fd(cs[i]), (struct sockaddr *)&sa, &sl), 0);
		char want[64], ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
		snprintf(want, sizeof(want), "%s:%u", ip, (unsigned)ntohs(sa.sin_port));
		cr_assert_str_eq(ms[i]->address, want);
	}
	/* Before login GetMe is denied like any read. */
	struct gclient *c = connect_client();
	cr_assert_eq(gclient_get_me(c, &ma), 40);
	gclient_close(c);
	gclient_close(a);
	gclient_close(b);
	galgod_stop();
}

Test(client, consumer_group_join_sync_poll_leave)
{
	struct gclient *c = login_root();
	struct wire_id s = gclient_id_name("g"), t = gclient_id_name("t"), g = gclient_id_name("grp");
	cr_assert_eq(gclient_create_stream(c, "g", NULL), 0);
	cr_assert_eq(gclient_create_topic(c, &s, "t", 3, "none", NULL), 0);
	uint32_t gid = 99;
	cr_assert_eq(gclient_create_group(c, &s, &t, "grp", &gid), 0);
	cr_assert_eq(gid, 0);
	cr_assert_eq(gclient_create_group(c, &s, &t, "grp", NULL), 5004);
	uint64_t gen;
	uint32_t parts[8], n;
	cr_assert_eq(gclient_sync_group(c, &s, &t, &g, &gen, parts, 8, &n), 5006); /* not a member */
	cr_assert_eq(gclient_join_group(c, &s, &t, &g), 0);
	cr_assert_eq(gclient_sync_group(c, &s, &t, &g, &gen, parts, 8, &n), 0);
	cr_assert_eq(n, 3, "the only member owns every partition");
	struct gclient_me me;
	cr_assert_eq(gclient_get_me(c, &me), 0);
	cr_assert_eq(me.groups_count, 1);

	static char bufs[64][64];
	const void *ptrs[64];
	uint32_t lens[64];
	batch_of(0, 4, bufs, ptrs, lens);
	cr_assert_eq(gclient_send(c, &s, &t, 2, 4, ptrs, lens, NULL), 0);
	struct wire_consumer gc = gclient_group_consumer(g);
	struct gclient_polled p;
	cr_assert_eq(gclient_poll(c, &gc, &s, &t, 2, (struct wire_polling){WIRE_POLL_NEXT, 0}, 10, true, &p), 0);
	cr_assert_eq(p.partition_id, 2);
	cr_assert_eq(p.count, 4);
	cr_assert_eq(gclient_poll(c, &gc, &s, &t, 2, (struct wire_polling){WIRE_POLL_NEXT, 0}, 10, true, &p), 0);
	cr_assert_eq(p.count, 0, "the group's offset was committed");
	struct gclient_offset off;
	cr_assert_eq(gclient_get_offset(c, &gc, &s, &t, 2, &off), 0);
	cr_assert_eq(off.stored_offset, 3);

	cr_assert_eq(gclient_leave_group(c, &s, &t, &g), 0);
	cr_assert_eq(gclient_sync_group(c, &s, &t, &g, &gen, parts, 8, &n), 5006);
	/* A poll by a non-member is fenced with the resync sentinel. */
	cr_assert_eq(gclient_poll(c, &gc, &s, &t, 2, (struct wire_polling){WIRE_POLL_FIRST, 0}, 10, false, &p), 0);
	cr_assert_eq(p.partition_id, GCLIENT_RESYNC_PARTITION);
	cr_assert_eq(p.count, 0);
	cr_assert_eq(gclient_delete_group(c, &s, &t, &g), 0);
	cr_assert_eq(gclient_join_group(c, &s, &t, &g), 5000);
	gclient_close(c);
	galgod_stop();
}

/* ---- Request headers, against a scripted server ---- */

/*
 * A one-connection server in a thread that records every request header and answers as galgod would
 * (Register with a session, empty or result-framed replies, a send confirmation), except that the
 * request with index `bad_echo` is answered with a wrong request number.
 */
#define FAKE_MAX 32

struct fake {
	int lfd;
	uint16_t port;
	pthread_t thread;
	struct frame_request reqs[FAKE_MAX];
	uint64_t body_sum[FAKE_MAX]; /* XXH3 of each body, to compare with request_checksum */
	int n;
	int bad_echo;
};

static bool read_full(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n > 0) {
		ssize_t r = read(fd, b, n);
		if (r <= 0)
			return false;
		b += r;
		n -= (size_t)r;
	}
	return true;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd = accept(f->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	static uint8_t body[1 << 20];
	uint8_t hdr[FRAME_HEADER_SIZE];
	while (f->n < FAKE_MAX && read_full(fd, hdr, sizeof(hdr))) {
		struct frame_request req;
		if (frame_request_decode(hdr, &req) != 0)
			break;
		size_t len = req.size - FRAME_HEADER_SIZE;
		if (len > sizeof(body) || !read_full(fd, body, len))
			break;
		int i = f->n;
		f->reqs[i] = req;
		f->body_sum[i] = frame_body_checksum(body, len);
		uint8_t out[FRAME_HEADER_SIZE + 64];
		uint8_t *rb = out + FRAME_HEADER_SIZE;
		uint32_t rlen = 0;
		if (req.operation == FRAME_OP_REGISTER) {
			memset(rb, 0, 4);                   /* result section: success */
			frame_put32(rb + 4, 0);             /* user id */
			frame_put64(rb + 8, 77);            /* session */
			frame_put32(rb + 16, FRAME_PROTOCOL_VERSION);
			rb[20] = 1;
			rb[21] = 'x';
			rlen = 22;
		} else if (req.operation == FRAME_OP_SEND_MESSAGES) {
			frame_put32(rb, 1);
			memset(rb + 4, 0, 12);
			frame_put64(rb + 16, 1000 + (uint64_t)i);
			rlen = 24;
		} else if (frame_op_is_result_framed(req.operation, true)) {
			memset(rb, 0, 4);
			rlen = 4;
		}
		if (i == f->bad_echo)
			req.request += 5;
		frame_reply_encode(out, &req, rlen, 0);
		f->n++;
		if (write(fd, out, FRAME_HEADER_SIZE + rlen) != (ssize_t)(FRAME_HEADER_SIZE + rlen))
			break;
	}
	close(fd);
	return NULL;
}

static void fake_start(struct fake *f, int bad_echo)
{
	memset(f, 0, sizeof(*f));
	f->bad_echo = bad_echo;
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(f->lfd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(f->lfd, 1), 0);
	cr_assert_eq(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
	f->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

static void no_galgod(void)
{
}

TestSuite(client_wire, .init = no_galgod, .timeout = 30);

Test(client_wire, request_numbering_sessions_and_checksums)
{
	struct fake f;
	fake_start(&f, -1);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", f.port);
	struct gclient_opts o = {.io_timeout_ms = 5000};
	struct gclient *c;
	cr_assert_eq(gclient_connect(addr, &o, &c), 0);
	struct wire_id s = wire_id_num(0), t = wire_id_num(0);
	struct gclient_stream st;
	const void *ptr[1] = {"x"};
	uint32_t len[1] = {1};
	struct gclient_sent sent;
	cr_assert_eq(gclient_ping(c), 0);                                     /* 0: NR before login */
	cr_assert_eq(gclient_login(c, "iggy", "iggy"), 0);                    /* 1: Register */
	cr_assert_eq(gclient_session(c), 77);
	cr_assert_eq(gclient_create_stream(c, "a", NULL), 0);                 /* 2: metadata */
	cr_assert_eq(gclient_get_stream(c, &s, &st), -ENOENT);                /* 3: NR */
	cr_assert_eq(gclient_create_topic(c, &s, "b", 1, NULL, NULL), 0);     /* 4: metadata */
	cr_assert_eq(gclient_send_async(c, &s, &t, 0, 1, ptr, len), 0);       /* 5: partition op */
	cr_assert_eq(gclient_send_async(c, &s, &t, 0, 1, ptr, len), 0);       /* 6: partition op */
	cr_assert_eq(gclient_wait(c, &sent), 0);
	cr_assert_eq(sent.base_offset, 1005);
	cr_assert_eq(gclient_wait(c, &sent), 0);
	cr_assert_eq(sent.base_offset, 1006);
	cr_assert_eq(gclient_store_offset(c, &(struct wire_consumer){1, wire_id_num(1)}, &s, &t, 0, 0), 0); /* 7 */
	cr_assert_eq(gclient_logout(c), 0);                                   /* 8: metadata */
	cr_assert_eq(gclient_login(c, "iggy", "iggy"), 0);                    /* 9: Register, new client id */
	cr_assert_eq(gclient_ping(c), 0);                                     /* 10 */
	gclient_close(c);
	fake_stop(&f);
	cr_assert_eq(f.n, 11);

	static const struct {
		uint8_t op;
		uint64_t request;
		uint64_t session;
		bool stamped;
	} want[] = {
		{FRAME_OP_NON_REPLICATED, 1, 0, false}, {FRAME_OP_REGISTER, 0, 0, true},
		{FRAME_OP_CREATE_STREAM, 1, 77, true},  {FRAME_OP_NON_REPLICATED, 2, 77, false},
		{FRAME_OP_CREATE_TOPIC, 2, 77, true},   {FRAME_OP_SEND_MESSAGES, 3, 77, false},
		{FRAME_OP_SEND_MESSAGES, 3, 77, false}, {FRAME_OP_STORE_CONSUMER_OFFSET, 3, 77, false},
		{FRAME_OP_LOGOUT, 3, 77, true},         {FRAME_OP_REGISTER, 0, 0, true},
		{FRAME_OP_NON_REPLICATED, 1, 77, false},
	};
	for (int i = 0; i < 11; i++) {
		const struct frame_request *r = &f.reqs[i];
		cr_assert_eq(r->operation, want[i].op, "request %d: operation %u", i, r->operation);
		cr_assert_eq(r->request, want[i].request, "request %d: number %" PRIu64, i, r->request);
		cr_assert_eq(r->session, want[i].session, "request %d: session %" PRIu64, i, r->session);
		if (want[i].stamped)
			cr_assert(r->request_checksum.lo == f.body_sum[i] && r->request_checksum.hi == 0,
				  "request %d: request_checksum is XXH3-64 of the body", i);
		else
			cr_assert(frame_u128_is_zero(r->request_checksum), "request %d is not stamped", i);
		cr_assert(!frame_u128_is_zero(r->client));
	}
	cr_assert_eq(f.reqs[0].code, FRAME_CODE_PING);
	cr_assert_eq(f.reqs[3].code, FRAME_CODE_GET_STREAM);
	/* One client id per login: the same from the login to the logout, a new one after. */
	for (int i = 2; i <= 8; i++)
		cr_assert(frame_u128_eq(f.reqs[i].client, f.reqs[1].client));
	cr_assert(!frame_u128_eq(f.reqs[9].client, f.reqs[1].client));
	cr_assert(frame_u128_eq(f.reqs[10].client, f.reqs[9].client));
}

Test(client_wire, a_reply_to_another_request_breaks_the_connection)
{
	struct fake f;
	fake_start(&f, 1);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", f.port);
	struct gclient_opts o = {.io_timeout_ms = 5000};
	struct gclient *c;
	cr_assert_eq(gclient_connect(addr, &o, &c), 0);
	cr_assert_eq(gclient_ping(c), 0);
	cr_assert_eq(gclient_ping(c), -EPROTO);
	cr_assert_eq(gclient_ping(c), -ENOTCONN);
	gclient_close(c);
	fake_stop(&f);
}

/* ---- Message-id deduplication ---- */

/* Sends a batch of messages with the given ids (raw SendMessages to partition 0); returns the reply count. */
static uint32_t send_ids(struct gclient *c, const uint64_t *ids, uint32_t n)
{
	uint8_t batch[4096];
	const void *pl[16];
	uint32_t lens[16];
	char bodies[16][16];
	for (uint32_t i = 0; i < n; i++) {
		lens[i] = (uint32_t)snprintf(bodies[i], sizeof(bodies[i]), "msg-%llu", (unsigned long long)ids[i]);
		pl[i] = bodies[i];
	}
	size_t blen = batch_build(batch, sizeof(batch), n, pl, lens, NULL, NULL, 1000);
	cr_assert_gt(blen, 0);
	/* Set the ids and recompute the checksums. */
	size_t f = 256;
	for (uint32_t i = 0; i < n; i++) {
		memset(batch + f + 8, 0, 16);
		memcpy(batch + f + 8, &ids[i], 8);
		size_t size = 48 + lens[i];
		record_put64(batch + f, XXH3_64bits(batch + f + 8, size - 8));
		f += size;
	}
	record_put64(batch + 40, batch_checksum(batch));
	struct wire_buf b;
	wire_buf_init(&b);
	size_t at = wire_put_reserve(&b, 4);
	struct wire_id s = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"dd", 2}};
	struct wire_id t = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"t", 1}};
	struct wire_partitioning part = {.kind = WIRE_PART_PARTITION_ID, .partition_id = 0};
	wire_put_id(&b, &s);
	wire_put_id(&b, &t);
	wire_put_partitioning(&b, &part);
	wire_put_u32(&b, n);
	wire_patch_u32(&b, at, (uint32_t)(b.len - 4));
	wire_put_bytes(&b, batch, blen);
	cr_assert_eq(wire_buf_error(&b), 0);
	const uint8_t *reply;
	size_t rlen;
	int rv = gclient_raw(c, FRAME_CODE_SEND_MESSAGES, b.p, b.len, &reply, &rlen);
	wire_buf_free(&b);
	cr_assert_eq(rv, 0, "send: %d", rv);
	cr_assert_geq(rlen, 4);
	return record_le32(reply);
}

/* Polls partition 0 of dd/t from offset 0 and returns the ids in offset order. */
static uint32_t poll_ids(struct gclient *c, uint64_t *ids, uint32_t cap)
{
	struct wire_consumer cons = {.kind = WIRE_CONSUMER_SINGLE, .id = wire_id_num(1)};
	struct wire_id s = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"dd", 2}};
	struct wire_id t = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"t", 1}};
	struct gclient_polled polled;
	int rv = gclient_poll(c, &cons, &s, &t, 0, (struct wire_polling){WIRE_POLL_FIRST, 0}, 100, false, &polled);
	cr_assert_eq(rv, 0, "poll: %d", rv);
	struct gclient_msg_iter it;
	struct gclient_msg m;
	uint32_t n = 0;
	gclient_msg_iter_init(&it, &polled);
	while (gclient_msg_next(&it, &m) == 1 && n < cap) {
		cr_assert_eq(m.offset, n, "offsets stay dense");
		memcpy(&ids[n++], m.id, 8);
	}
	return n;
}

/* A topic with a dedup window drops messages whose id it remembers, also after a restart. */
Test(client, a_dedup_window_drops_retried_ids_and_survives_a_restart)
{
	struct gclient *c = login_root();
	cr_assert_eq(gclient_create_stream(c, "dd", NULL), 0);
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id s = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"dd", 2}};
	wire_put_id(&b, &s);
	wire_put_u32(&b, 1);
	wire_put_name(&b, "t", 1);
	uint8_t w[8];
	record_put64(w, 100);
	wire_put_option(&b, "dedup_window", 12, WIRE_KIND_UINT64, w, 8);
	cr_assert_eq(gclient_raw(c, FRAME_CODE_CREATE_TOPIC, b.p, b.len, NULL, NULL), 0);
	wire_buf_free(&b);

	const uint64_t first[3] = {1, 2, 3}, overlap[3] = {3, 4, 5}, inner[3] = {6, 6, 7};
	cr_assert_eq(send_ids(c, first, 3), 1);
	cr_assert_eq(send_ids(c, first, 3), 0, "a retry of a whole batch is committed with no offsets");
	cr_assert_eq(send_ids(c, overlap, 3), 1);
	cr_assert_eq(send_ids(c, inner, 3), 1, "a repeat inside one batch keeps the first");
	uint64_t ids[32];
	uint32_t n = poll_ids(c, ids, 32);
	const uint64_t want[7] = {1, 2, 3, 4, 5, 6, 7};
	cr_assert_eq(n, 7);
	cr_assert_eq(memcmp(ids, want, sizeof(want)), 0);
	gclient_close(c);

	/* The window is rebuilt from the log at start. */
	galgod_stop();
	galgod_start();
	c = login_root();
	const uint64_t again[3] = {5, 7, 8};
	cr_assert_eq(send_ids(c, again, 3), 1);
	n = poll_ids(c, ids, 32);
	cr_assert_eq(n, 8);
	cr_assert_eq(ids[7], 8);
	gclient_close(c);
}

/* Topics with a message expiry lose their old segments in the background, never the active one. */
Test(client, expired_segments_are_deleted_in_the_background)
{
	galgod_stop();
	galgod_extra_flag = "--storage.segment_size=4KiB";
	galgod_start();
	struct gclient *c = login_root();
	cr_assert_eq(gclient_create_stream(c, "dd", NULL), 0);
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id s = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"dd", 2}};
	wire_put_id(&b, &s);
	wire_put_u32(&b, 1);
	wire_put_name(&b, "t", 1);
	uint8_t w[8];
	record_put64(w, 1500000); /* 1.5 s */
	wire_put_option(&b, "message_expiry", 14, WIRE_KIND_UINT64, w, 8);
	cr_assert_eq(gclient_raw(c, FRAME_CODE_CREATE_TOPIC, b.p, b.len, NULL, NULL), 0);
	wire_buf_free(&b);
	for (uint64_t i = 1; i <= 40; i++) {
		uint64_t ids[3] = {i * 3, i * 3 + 1, i * 3 + 2};
		cr_assert_eq(send_ids(c, ids, 3), 1);
	}
	uint64_t got[200];
	cr_assert_eq(poll_ids(c, got, 200), 100); /* one poll: at most 100 */
	/* Within ~1.5 s plus a tick, the sealed segments go; the active one keeps the newest messages. */
	struct wire_consumer cons = {.kind = WIRE_CONSUMER_SINGLE, .id = wire_id_num(1)};
	struct wire_id t = {.kind = WIRE_ID_STRING, .name = {(const uint8_t *)"t", 1}};
	uint64_t first = 0, end = now_ms() + 8000;
	while (now_ms() < end) {
		struct gclient_polled polled;
		cr_assert_eq(gclient_poll(c, &cons, &s, &t, 0, (struct wire_polling){WIRE_POLL_FIRST, 0}, 1, false,
					  &polled),
			     0);
		struct gclient_msg_iter it;
		struct gclient_msg m;
		gclient_msg_iter_init(&it, &polled);
		cr_assert_eq(gclient_msg_next(&it, &m), 1, "the active segment's messages stay");
		first = m.offset;
		if (first > 0)
			break;
		sleep_ms(200);
	}
	cr_assert_gt(first, 0, "no segment was deleted by retention");
	cr_assert_lt(first, 120);
	gclient_close(c);
	galgod_extra_flag = NULL;
}
