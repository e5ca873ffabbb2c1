/*
 * srv_snapshot — GetSnapshotFile (NonReplicated code 11; HTTP POST /snapshot): a ZIP archive of this
 * node's diagnostics, what `iggy snapshot` saves. Owns: the snapshot job in flight (one per node).
 *
 * Request body (Iggy's GetSnapshot; bytes, no padding):
 *   [compression u8][types_count u8][type u8] × types_count
 *   compression: 1 Stored, 2 Deflated, 3 Bzip2, 4 Zstd, 5 Lzma, 6 Xz (Iggy's SnapshotCompression codes).
 *     Galgo writes 1 and 2; 3..6 are answered 5 FeatureUnavailable; any other value 3 InvalidCommand.
 *   type: 1 FilesystemOverview, 2 ProcessList, 3 ResourceUsage, 4 Test, 5 ServerLogs, 6 ServerConfig,
 *     100 All (only alone: with another type it is 3 InvalidCommand, as Iggy's server answers); All means
 *     1, 2, 3, 5 and 6. An unknown type, a body shorter than types_count says or with bytes after it: 3.
 *     A type named twice gives one entry. types_count 0 gives an empty archive.
 * Reply: the archive's bytes, as the whole body (not result-framed), as Iggy's server sends it. Each entry
 * is "<type>.txt" (Iggy's names: filesystem_overview.txt, process_list.txt, resource_usage.txt, test.txt,
 * server_logs.txt, server_config.txt), in request order; the ZIP subset is described in node/zipw.h.
 *
 * Errors: 41 Unauthorized without read_servers (or manage_servers), checked before the body as Iggy
 * does; 9000 SnapshotFileCompletionFailed when a snapshot is already being made on this node (Iggy's
 * single-flight answer), or when the archive would pass SNAP_ARCHIVE_MAX.
 *
 * What the entries hold, all of it this node's own view (text, one item a line):
 *   filesystem_overview  the data directory tree (node.data_dir): size, mtime and path of every entry,
 *                        depth-first in name order, at most SNAP_FS_ENTRIES entries and SNAP_FS_DEPTH
 *                        levels, then the totals and the file system's free space (statvfs).
 *   process_list         every process of /proc: pid, ppid, state, threads, RSS, CPU seconds, command
 *                        line (galgod's own is marked "*"); at most SNAP_PROCS.
 *   resource_usage       galgod's own: /proc/self/status (memory, threads, context switches), CPU times,
 *                        getrusage, open descriptors and their limit, the host's load and memory; then
 *                        the node's metrics (the text of GET /metrics).
 *   test                 "test" (Iggy's test entry is the output of `echo test`).
 *   server_logs          galgod logs to standard error and keeps no log file: when stderr is a regular
 *                        file its last SNAP_LOG_TAIL bytes, else a note naming where stderr goes.
 *   server_config        the effective settings (config_dump: secrets are shown as (set) or (unset)).
 * Every entry is cut at SNAP_ENTRY_MAX bytes, with a last line saying so.
 *
 * The loop only decodes the request and copies what belongs to it (the config and metrics text); the
 * walks of the data directory and /proc, and the compression, run on libuv's thread pool, which reads
 * nothing of the node.
 */
#include "node/srv_int.h"
#include "node/version.h"
#include "node/zipw.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define SNAP_ARCHIVE_MAX (32u << 20) /* well under the 64 MiB frame the SDKs accept */
#define SNAP_ENTRY_MAX (4u << 20)
#define SNAP_FS_ENTRIES 20000u
#define SNAP_FS_DEPTH 16
#define SNAP_PROCS 4096u
#define SNAP_LOG_TAIL (1u << 20)
#define SNAP_CONFIG_MAX (64u << 10)
#define E_SNAPSHOT_FAILED 9000u

enum {
	T_FS = 1,
	T_PS = 2,
	T_RES = 3,
	T_TEST = 4,
	T_LOGS = 5,
	T_CONFIG = 6,
	T_LAST = T_CONFIG,
	T_ALL = 100,
};

static const char *const type_files[T_LAST + 1] = {
	NULL, "filesystem_overview.txt", "process_list.txt", "resource_usage.txt", "test.txt", "server_logs.txt",
	"server_config.txt",
};

struct snap_job {
	uv_work_t work;
	struct srv *s;
	struct pending *p;
	uint16_t method;
	uint8_t types[T_LAST];
	size_t n_types;
	char data_dir[2048];
	pid_t pid;
	uint64_t uptime_s;
	char *config; /* gathered on the loop */
	char *metrics;
	size_t metrics_len;
	uint8_t *zip; /* the result (thread pool) */
	size_t zip_len;
	int rc;
};

/* ---- Bounded text ---- */

struct text {
	struct wire_buf b;
	bool cut;
};

static void tprintf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tprintf(struct text *t, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	if (t->cut)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (t->b.len + (size_t)n > SNAP_ENTRY_MAX - 128) {
		t->cut = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		wire_put_bytes(&t->b, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (big == NULL) {
		t->cut = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	wire_put_bytes(&t->b, big, (size_t)n);
	free(big);
}

static void tput(struct text *t, const void *p, size_t n)
{
	if (t->cut)
		return;
	if (t->b.len + n > SNAP_ENTRY_MAX - 128) {
		n = SNAP_ENTRY_MAX - 128 - t->b.len;
		t->cut = true;
	}
	wire_put_bytes(&t->b, p, n);
}

/* Ends the text: the note of a cut goes last (there is room: tprintf keeps 128 bytes). */
static void tend(struct text *t)
{
	if (t->cut) {
		static const char note[] = "\n(cut: this entry is bounded to 4 MiB)\n";
		wire_put_bytes(&t->b, note, sizeof(note) - 1);
	}
}

static void put_time(struct text *t, time_t when)
{
	struct tm tm;
	char buf[32];
	if (gmtime_r(&when, &tm) == NULL || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, sizeof(buf), "%lld", (long long)when);
	tprintf(t, "%s", buf);
}

/* ---- filesystem_overview ---- */

struct walk {
	struct text *t;
	size_t entries;
	uint64_t files, dirs, bytes;
	bool truncated;
};

static void walk_entry(struct walk *w, char *path, size_t plen, size_t cap, size_t base, int depth);

/* Lists path (plen bytes in a buffer of cap) and below; the data directory's own path is `base` bytes. */
static void walk_dir(struct walk *w, char *path, size_t plen, size_t cap, size_t base, int depth)
{
	struct dirent **names = NULL;
	int n = scandir(path, &names, NULL, alphasort);
	if (n < 0) {
		tprintf(w->t, "%12s %-20s %s/ (unreadable: %s)\n", "-", "-", plen > base ? path + base + 1 : ".",
			strerror(errno));
		return;
	}
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		size_t nl = strlen(name);
		bool skip = strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || plen + 1 + nl + 1 > cap;
		if (!skip && !w->truncated && w->entries >= SNAP_FS_ENTRIES)
			w->truncated = true;
		if (!skip && !w->truncated) {
			path[plen] = '/';
			memcpy(path + plen + 1, name, nl + 1);
			walk_entry(w, path, plen + 1 + nl, cap, base, depth);
			path[plen] = '\0';
		}
		free(names[i]);
	}
	free(names);
}

/* One entry of the tree (path, plen bytes): its line, and what is below it. */
static void walk_entry(struct walk *w, char *path, size_t plen, size_t cap, size_t base, int depth)
{
	const char *rel = path + base + 1;
	struct stat st;
	w->entries++;
	if (lstat(path, &st) != 0) {
		tprintf(w->t, "%12s %-20s %s (%s)\n", "-", "-", rel, strerror(errno));
		return;
	}
	bool dir = S_ISDIR(st.st_mode);
	tprintf(w->t, "%12lld ", (long long)st.st_size);
	put_time(w->t, st.st_mtime);
	tprintf(w->t, " %s%s\n", rel, dir ? "/" : S_ISLNK(st.st_mode) ? " (symlink)" : "");
	if (dir) {
		w->dirs++;
		if (depth + 1 < SNAP_FS_DEPTH)
			walk_dir(w, path, plen, cap, base, depth + 1);
		else
			tprintf(w->t, "%12s %-20s %s/... (deeper than %d levels: not listed)\n", "-", "-", rel,
				SNAP_FS_DEPTH);
	} else if (S_ISREG(st.st_mode)) {
		w->files++;
		w->bytes += (uint64_t)st.st_size;
	}
}

static void filesystem_overview(struct snap_job *j, struct text *t)
{
	char path[4096];
	struct walk w = {.t = t};
	int n = snprintf(path, sizeof(path), "%s", j->data_dir);
	tprintf(t, "Data directory: %s\n", j->data_dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		tprintf(t, "(path too long to list)\n");
		return;
	}
	while (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
	tprintf(t, "%12s %-20s %s\n", "size", "modified (UTC)", "path (relative to the data directory)");
	walk_dir(&w, path, (size_t)n, sizeof(path), (size_t)n, 0);
	if (w.truncated)
		tprintf(t, "(stopped after %u entries)\n", SNAP_FS_ENTRIES);
	tprintf(t, "\nTotal: %" PRIu64 " files, %" PRIu64 " bytes, %" PRIu64 " directories\n", w.files, w.bytes,
		w.dirs);
	struct statvfs vfs;
	if (statvfs(j->data_dir, &vfs) == 0)
		tprintf(t, "File system: %" PRIu64 " bytes, %" PRIu64 " available, %" PRIu64 " inodes free\n",
			(uint64_t)vfs.f_blocks * vfs.f_frsize, (uint64_t)vfs.f_bavail * vfs.f_frsize,
			(uint64_t)vfs.f_favail);
}

/* ---- process_list ---- */

/* Reads a small file (up to cap-1 bytes) into buf, NUL-terminated. Returns the length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

static void process_line(struct text *t, pid_t pid, pid_t self, long tck)
{
	char path[64], stat[1024], cmd[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_small(path, stat, sizeof(stat)) <= 0)
		return; /* gone meanwhile */
	char *open_paren = strchr(stat, '('), *close_paren = strrchr(stat, ')');
	if (open_paren == NULL || close_paren == NULL || close_paren < open_paren)
		return;
	*close_paren = '\0';
	char state = '?';
	int ppid = 0;
	unsigned long long ut = 0, st = 0;
	long threads = 0, rss = 0;
	sscanf(close_paren + 1, " %c %d %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu %*s %*s %*s %*s %ld %*s %*s %*s %ld",
	       &state, &ppid, &ut, &st, &threads, &rss);
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	ssize_t cl = read_small(path, cmd, sizeof(cmd));
	for (ssize_t i = 0; i < cl; i++)
		if (cmd[i] == '\0' || cmd[i] == '\n')
			cmd[i] = ' ';
	while (cl > 0 && cmd[cl - 1] == ' ')
		cmd[--cl] = '\0';
	long page_kib = sysconf(_SC_PAGESIZE) / 1024;
	/* A kernel thread has no command line: its name, in brackets, as ps shows it. */
	tprintf(t, "%c%7d %7d %c %7ld %10ld %10.2f %s%s%s\n", pid == self ? '*' : ' ', (int)pid, ppid, state, threads,
		rss * page_kib, (double)(ut + st) / (double)tck, cl > 0 ? "" : "[", cl > 0 ? cmd : open_paren + 1,
		cl > 0 ? "" : "]");
}

static void process_list(struct snap_job *j, struct text *t)
{
	long tck = sysconf(_SC_CLK_TCK);
	if (tck <= 0)
		tck = 100;
	DIR *d = opendir("/proc");
	if (d == NULL) {
		tprintf(t, "/proc is not readable: %s\n", strerror(errno));
		return;
	}
	tprintf(t, "Processes (from /proc; * marks this galgod, pid %d)\n", (int)j->pid);
	tprintf(t, "%8s %7s %c %7s %10s %10s %s\n", "pid", "ppid", 'S', "threads", "rss_kib", "cpu_s", "command");
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end != '\0' || pid <= 0)
			continue;
		if (n++ >= SNAP_PROCS) {
			tprintf(t, "(stopped after %u processes)\n", SNAP_PROCS);
			break;
		}
		process_line(t, (pid_t)pid, j->pid, tck);
	}
	closedir(d);
}

/* ---- resource_usage ---- */

static void status_lines(struct text *t)
{
	static const char *const keys[] = {"VmPeak:", "VmSize:", "VmHWM:", "VmRSS:", "RssAnon:", "RssFile:",
					   "VmSwap:", "Threads:", "voluntary_ctxt_switches:",
					   "nonvoluntary_ctxt_switches:"};
	char buf[8192];
	if (read_small("/proc/self/status", buf, sizeof(buf)) <= 0)
		return;
	for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n"))
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (strncmp(line, keys[k], strlen(keys[k])) == 0)
				tprintf(t, "%s\n", line);
}

static size_t count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	size_t n = 0;
	if (d == NULL)
		return 0;
	for (struct dirent *de; (de = readdir(d)) != NULL;)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n > 0 ? n - 1 : 0; /* less the one that reads the directory */
}

static void resource_usage(struct snap_job *j, struct text *t)
{
	struct rusage ru;
	struct rlimit rl;
	char buf[4096];
	tprintf(t, "galgod pid %d, up %" PRIu64 " s\n\n-- /proc/self/status --\n", (int)j->pid, j->uptime_s);
	status_lines(t);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		tprintf(t, "\n-- getrusage(RUSAGE_SELF) --\nuser_cpu_s: %ld.%06ld\nsystem_cpu_s: %ld.%06ld\n"
			   "max_rss_kib: %ld\nminor_faults: %ld\nmajor_faults: %ld\nblock_in: %ld\nblock_out: %ld\n",
			(long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec,
			(long)ru.ru_stime.tv_usec, ru.ru_maxrss, ru.ru_minflt, ru.ru_majflt, ru.ru_inblock, ru.ru_oublock);
	tprintf(t, "\n-- descriptors --\nopen_fds: %zu\n", count_fds());
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		tprintf(t, "fd_limit_soft: %llu\nfd_limit_hard: %llu\n", (unsigned long long)rl.rlim_cur,
			(unsigned long long)rl.rlim_max);
	if (read_small("/proc/loadavg", buf, sizeof(buf)) > 0)
		tprintf(t, "\n-- host --\nloadavg: %s", buf);
	if (read_small("/proc/meminfo", buf, sizeof(buf)) > 0)
		for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n"))
			if (strncmp(line, "MemTotal:", 9) == 0 || strncmp(line, "MemAvailable:", 13) == 0)
				tprintf(t, "%s\n", line);
	tprintf(t, "online_cpus: %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	tprintf(t, "\n-- node metrics (the text of GET /metrics) --\n");
	if (j->metrics != NULL)
		tput(t, j->metrics, j->metrics_len);
	else
		tprintf(t, "(unavailable)\n");
}

/* ---- server_logs ---- */

static void server_logs(struct text *t)
{
	char target[1024];
	ssize_t n = readlink("/proc/self/fd/2", target, sizeof(target) - 1);
	struct stat st;
	target[n > 0 ? n : 0] = '\0';
	if (n <= 0)
		snprintf(target, sizeof(target), "%s", "(unknown)");
	if (fstat(STDERR_FILENO, &st) != 0 || !S_ISREG(st.st_mode)) {
		tprintf(t, "galgod keeps no log file: it writes its log to standard error, which here is %s.\n"
			   "Read it where that leads (the terminal, journalctl, docker logs, kubectl logs, ...).\n",
			target);
		return;
	}
	off_t from = st.st_size > (off_t)SNAP_LOG_TAIL ? st.st_size - (off_t)SNAP_LOG_TAIL : 0;
	tprintf(t, "galgod writes its log to standard error, here the file %s (%lld bytes); %s:\n\n", target,
		(long long)st.st_size, from > 0 ? "its last 1 MiB" : "all of it");
	int fd = open("/proc/self/fd/2", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		tprintf(t, "(not readable: %s)\n", strerror(errno));
		return;
	}
	char buf[65536];
	for (off_t off = from; off < st.st_size;) {
		ssize_t r = pread(fd, buf, sizeof(buf), off);
		if (r <= 0)
			break;
		tput(t, buf, (size_t)r);
		off += r;
	}
	close(fd);
}

/* ---- The job ---- */

static void snap_work(uv_work_t *w)
{
	struct snap_job *j = w->data;
	struct zipw z;
	time_t now = time(NULL);
	zipw_init(&z, j->method, SNAP_ARCHIVE_MAX);
	for (size_t i = 0; i < j->n_types && z.err == 0; i++) {
		struct text t = {.cut = false};
		uint8_t type = j->types[i];
		assert(type >= T_FS && type <= T_LAST);
		wire_buf_init(&t.b);
		switch (type) {
		case T_FS:
			filesystem_overview(j, &t);
			break;
		case T_PS:
			process_list(j, &t);
			break;
		case T_RES:
			resource_usage(j, &t);
			break;
		case T_TEST:
			tprintf(&t, "test\n");
			break;
		case T_LOGS:
			server_logs(&t);
			break;
		case T_CONFIG:
			tprintf(&t, "%s", j->config != NULL ? j->config : "(unavailable)\n");
			break;
		}
		tend(&t);
		if (wire_buf_error(&t.b) != 0)
			z.err = -ENOMEM;
		else
			zipw_add(&z, type_files[type], t.b.p, t.b.len, now);
		wire_buf_free(&t.b);
	}
	j->rc = zipw_finish(&z, &j->zip, &j->zip_len);
}

static void snap_after(uv_work_t *w, int status)
{
	struct snap_job *j = w->data;
	struct srv *s = j->s;
	assert(s->jobs > 0 && s->snapshot_busy);
	s->jobs--;
	s->snapshot_busy = false;
	if (status != 0 || j->rc != 0) {
		glog_warn(TAG, "snapshot not made: %s", status != 0 ? "cancelled" : strerror(-j->rc));
		srv__finish(j->p, E_SNAPSHOT_FAILED, false, NULL, 0);
	} else {
		glog_info(TAG, "snapshot of %zu entries made: %zu bytes", j->n_types, j->zip_len);
		srv__finish(j->p, 0, false, j->zip, j->zip_len);
	}
	free(j->zip);
	free(j->config);
	free(j->metrics);
	free(j);
}

/* Decodes the request body into the job's types (each once). Returns 0 or the Iggy code to answer. */
static uint32_t snap_decode(struct snap_job *j, const uint8_t *body, size_t len)
{
	if (len < 2)
		return PROTO_E_INVALID_COMMAND;
	uint8_t comp = body[0], count = body[1];
	if (len != 2u + count)
		return PROTO_E_INVALID_COMMAND;
	bool all = false, seen[T_LAST + 1] = {false};
	for (size_t i = 0; i < count; i++) {
		uint8_t type = body[2 + i];
		if (type == T_ALL)
			all = true;
		else if (type < T_FS || type > T_LAST)
			return PROTO_E_INVALID_COMMAND;
	}
	if (all && count > 1)
		return PROTO_E_INVALID_COMMAND;
	if (comp < 1 || comp > 6)
		return PROTO_E_INVALID_COMMAND;
	if (comp > 2)
		return PROTO_E_FEATURE_UNAVAILABLE; /* Bzip2, Zstd, Lzma, Xz: not written here */
	j->method = comp == 1 ? ZIPW_STORED : ZIPW_DEFLATED;
	static const uint8_t every[] = {T_FS, T_PS, T_RES, T_LOGS, T_CONFIG};
	const uint8_t *types = all ? every : body + 2;
	size_t n = all ? sizeof(every) : count;
	for (size_t i = 0; i < n; i++)
		if (!seen[types[i]]) {
			seen[types[i]] = true;
			assert(j->n_types < T_LAST);
			j->types[j->n_types++] = types[i];
		}
	return 0;
}

/* Copies what the job needs of the node (read on the loop only). Returns 0 or -ENOMEM. */
static int snap_gather(struct srv *s, struct snap_job *j)
{
	const struct galgo_config *cfg = s->cfg;
	const char *dir = cfg->node.data_dir != NULL ? cfg->node.data_dir : ".";
	char *abs = realpath(dir, NULL); /* a relative data_dir is named from / */
	snprintf(j->data_dir, sizeof(j->data_dir), "%s", abs != NULL ? abs : dir);
	free(abs);
	j->pid = getpid();
	j->uptime_s = (srv__now_us() - s->start_us) / 1000000u;
	for (size_t i = 0; i < j->n_types; i++) {
		if (j->types[i] == T_CONFIG && j->config == NULL) {
			char *dump = malloc(SNAP_CONFIG_MAX);
			j->config = malloc(SNAP_CONFIG_MAX + 512);
			if (dump == NULL || j->config == NULL) {
				free(dump);
				return -ENOMEM;
			}
			int cut = config_dump_sep(cfg, dump, SNAP_CONFIG_MAX, "\n");
			snprintf(j->config, SNAP_CONFIG_MAX + 512,
				 "# galgod %s (Iggy server %s), node %" PRIu64 ": the effective settings; secrets are shown\n"
				 "# as (set) or (unset). Config file: %s\n%s\n%s",
				 GALGO_VERSION, SERVER_VERSION, clu_node_id(s->clu),
				 cfg->config_file != NULL ? cfg->config_file : "(none)", dump,
				 cut != 0 ? "(cut)\n" : "");
			free(dump);
		}
		if (j->types[i] == T_RES && j->metrics == NULL && srv_metrics_text(s, &j->metrics, &j->metrics_len) != 0)
			j->metrics = NULL;
	}
	return 0;
}

void srv__handle_snapshot(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	if (!srv__may(ss, hdr->operation, hdr->code, 0, 0)) {
		srv__finish(p, PROTO_E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct snap_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
		return;
	}
	uint32_t status = snap_decode(j, body, len);
	if (status == 0 && (s->snapshot_busy || s->closing))
		status = E_SNAPSHOT_FAILED; /* one at a time, as Iggy's server */
	if (status == 0 && snap_gather(s, j) != 0)
		status = PROTO_E_ERROR;
	if (status != 0) {
		free(j->config);
		free(j->metrics);
		free(j);
		srv__finish(p, status, false, NULL, 0);
		return;
	}
	j->s = s;
	j->p = p;
	j->work.data = j;
	s->snapshot_busy = true;
	s->jobs++;
	if (uv_queue_work(s->loop, &j->work, snap_work, snap_after) != 0) {
		snap_work(&j->work); /* no thread pool: on the loop */
		snap_after(&j->work, 0);
	}
}
