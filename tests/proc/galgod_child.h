/*
 * galgod_child — the real galgod as a child process of a criterion test: started on a temporary data
 * directory with TCP on a free port, its output collected, stopped with SIGTERM and required to exit 0
 * (under ASan/UBSan that also means no error and no leak). Every wait is bounded by CHILD_TIMEOUT_MS.
 * Header-only: each test program includes it once. The including file defines GALGOD and
 * CHILD_TIMEOUT_MS first.
 */
#ifndef GALGO_TEST_GALGOD_CHILD_H
#define GALGO_TEST_GALGOD_CHILD_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static struct {
	char tmpdir[64];
	pid_t pid;
	int out;
	char *buf;
	size_t len, cap;
	bool eof;
	int port;
} G;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads what galgod printed, waiting at most timeout_ms for something. */
static void child_pump(int timeout_ms)
{
	struct pollfd p = {.fd = G.out, .events = POLLIN};
	if (G.eof || poll(&p, 1, timeout_ms) <= 0)
		return;
	for (;;) {
		if (G.cap - G.len < 4096) {
			G.cap = G.cap * 2 + 8192;
			G.buf = realloc(G.buf, G.cap);
			cr_assert_not_null(G.buf);
		}
		ssize_t n = read(G.out, G.buf + G.len, G.cap - G.len - 1);
		if (n > 0) {
			G.len += (size_t)n;
			G.buf[G.len] = '\0';
			continue;
		}
		if (n == 0)
			G.eof = true;
		return;
	}
}

static const char *child_output(void)
{
	return G.buf != NULL ? G.buf : "";
}

/*
 * Starts galgod on <tmpdir>/data with TCP on a free port, QUIC and HTTP off, iggy/iggy, and `extra` (one
 * more flag, or NULL); waits for "galgod ready: ... tcp 127.0.0.1:PORT" and sets G.port.
 */
static void galgod_start_with(const char *extra)
{
	char datadir[128], flag[160];
	snprintf(datadir, sizeof(datadir), "%s/data", G.tmpdir);
	snprintf(flag, sizeof(flag), "--node.data_dir=%s", datadir);
	char *argv[] = {GALGOD, flag, "--tcp.address=127.0.0.1:0", "--quic.enabled=false", "--http.enabled=false",
			"--websocket.enabled=false",
			"--with-default-root-credentials", (char *)extra, NULL};
	char *envp[256];
	int envc = 0;
	for (char **e = environ; *e != NULL && envc < 255; e++)
		if (strncmp(*e, "GALGO_", 6) != 0 && strncmp(*e, "IGGY_", 5) != 0)
			envp[envc++] = *e;
	envp[envc] = NULL;

	if (G.out >= 0)
		close(G.out);
	G.len = 0;
	G.eof = false;
	if (G.buf != NULL)
		G.buf[0] = '\0';
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	cr_assert_eq(fcntl(fds[0], F_SETFD, FD_CLOEXEC), 0);
	cr_assert_eq(fcntl(fds[1], F_SETFD, FD_CLOEXEC), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		if (chdir(G.tmpdir) < 0)
			_exit(126);
		execve(GALGOD, argv, envp);
		_exit(127);
	}
	close(fds[1]);
	cr_assert_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
	G.pid = pid;
	G.out = fds[0];

	uint64_t end = now_ms() + CHILD_TIMEOUT_MS;
	const char *ready = NULL;
	while ((ready = G.buf != NULL ? strstr(G.buf, "galgod ready") : NULL) == NULL || strchr(ready, '\n') == NULL) {
		cr_assert(!G.eof && now_ms() < end, "no 'galgod ready'; output:\n%s", child_output());
		child_pump(50);
	}
	const char *tcp = strstr(ready, "tcp 127.0.0.1:");
	cr_assert_not_null(tcp, "%s", ready);
	G.port = atoi(tcp + strlen("tcp 127.0.0.1:"));
	cr_assert(G.port > 0 && G.port < 65536, "%s", ready);
}

/* Stops galgod with SIGTERM and requires exit status 0. */
static void galgod_stop(void)
{
	cr_assert_eq(kill(G.pid, SIGTERM), 0);
	uint64_t end = now_ms() + CHILD_TIMEOUT_MS;
	int status = -1;
	for (;;) {
		child_pump(20);
		pid_t r = waitpid(G.pid, &status, WNOHANG);
		if (r == G.pid)
			break;
		if (now_ms() >= end) {
			kill(G.pid, SIGKILL);
			waitpid(G.pid, NULL, 0);
			G.pid = 0;
			cr_assert_fail("galgod did not stop within %d ms; output:\n%s", CHILD_TIMEOUT_MS, child_output());
		}
	}
	G.pid = 0;
	for (uint64_t e2 = now_ms() + 2000; !G.eof && now_ms() < e2;)
		child_pump(20);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "galgod exit status 0x%x; output:\n%s",
		  (unsigned)status, child_output());
}

/* A fresh temporary directory "<prefix>XXXXXX" (prefix up to 50 bytes); no galgod yet. */
static void child_setup(const char *prefix)
{
	memset(&G, 0, sizeof(G));
	G.out = -1;
	snprintf(G.tmpdir, sizeof(G.tmpdir), "%sXXXXXX", prefix);
	cr_assert_not_null(mkdtemp(G.tmpdir));
	signal(SIGPIPE, SIG_IGN);
}

/* Kills a galgod a failed test left running and removes the directory. */
static void child_teardown(void)
{
	if (G.pid > 0 && kill(G.pid, SIGKILL) == 0)
		waitpid(G.pid, NULL, 0);
	if (G.out >= 0)
		close(G.out);
	free(G.buf);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", G.tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", G.tmpdir);
}

#endif /* GALGO_TEST_GALGOD_CHILD_H */
