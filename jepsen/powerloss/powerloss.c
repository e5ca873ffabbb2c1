/*
 * powerloss.c — libgalgo-powerloss.so, an LD_PRELOAD shim that makes a process lose, at an instant the
 * caller chooses, everything it wrote under one directory tree and did not make durable, as a power cut
 * would. The jepsen suite's "power loss" nemesis runs galgod under it on a minority of nodes.
 *
 * Environment
 *   GALGO_POWERLOSS_DIR      the directory tree to track. Only files strictly under it are tracked (not
 *                            the directory itself). It or at least its parent must exist at startup (the
 *                            path is made canonical with realpath(3) then). Without this variable the shim
 *                            is a pure pass-through: every call goes straight to the next definition
 *                            (glibc) and nothing is recorded, no thread is started.
 *   GALGO_POWERLOSS_TRIGGER  a path (required with GALGO_POWERLOSS_DIR). A thread started from the
 *                            library's constructor polls it with access(2) every 2 ms; once it exists the
 *                            power is cut (below). The harness must remove it before starting a process.
 *   GALGO_POWERLOSS_REPORT   optional: the file the report line is appended to (created 0644); without
 *                            it the line goes to stderr.
 *   GALGO_POWERLOSS_SIDE     optional: the side directory that keeps hard links of unlinked or replaced
 *                            files until their removal is durable. Default: "<parent of the tracked
 *                            directory>/.galgo-powerloss-<basename>-<pid>", on the same file system as the
 *                            tracked tree (hard links need that) and outside it (so the program never
 *                            sees the links in its own directory listings). It must not lie inside the
 *                            tracked tree. It is created on first use and removed at exit and at the cut.
 *   GALGO_POWERLOSS_STRICT_DIRS  "1": mkdir and rmdir are journalled like file creations and unlinks
 *                            (durable only after an fsync of the parent). Otherwise (the default) they are
 *                            durable at once, as the pio contract that Galgo is written against says
 *                            (partition/piosim.h, partition/piosim.c: "pio_rmdir is durable at once like
 *                            pio_mkdir"); an rmdir then also makes durable the pending removals of the
 *                            entries it held. ext4 behaves close to the default (an fsync commits the
 *                            journal transaction that holds the mkdir); the strict mode is POSIX's letter.
 * A set GALGO_POWERLOSS_DIR with a missing trigger, a directory that cannot be resolved or a side
 * directory inside the tree is a configuration error: the shim prints one line to stderr and the
 * process exits with status 1 before main.
 *
 * The power cut. The watcher thread takes the global lock that every tracked mutation holds for its whole
 * duration (so the cut falls between two mutations, never inside one: a mutation is either entirely
 * before the cut or never happened; an fdatasync/fsync that returned before the cut counts, one that had
 * not begun does not), undoes everything that is not durable (file data first, then directory entries,
 * newest first), writes the report, and calls _exit(137): seen from outside the process died as by
 * SIGKILL (137 = 128 + 9 as a shell reports it) at the instant of the cut, and the tracked tree holds
 * the state a power cut at that instant could leave with the strictest POSIX reading of durability.
 *
 * The model of durability
 *   File data (per inode, whatever name or descriptor it is reached by). The durable state of a file is
 *   its size and contents at the end of its last successful fdatasync(2) or fsync(2) — on any descriptor
 *   of that inode — or, if it has not been synced since the process started, at the moment the shim first
 *   saw it modified (files that exist when the process starts are taken as durable). From its first
 *   modification after a sync the shim keeps the durable size and the pre-images of every byte range
 *   inside the durable size that a write or a truncation changes: before the real call it reads the old
 *   bytes with pread(2) from its own descriptor. Each durable byte is saved at most once (the saved
 *   ranges never overlap), so memory is bounded by the bytes changed since the last sync, and appends
 *   beyond the durable size cost nothing. A sync drops the saved ranges. At the cut every dirty file gets
 *   its pre-images written back with pwrite(2) and is truncated to its durable size. Modifications
 *   counted: write, writev, pwrite, pwrite64, pwritev, pwritev64 on a descriptor opened writable on a
 *   tracked path, ftruncate/ftruncate64, and O_TRUNC at open (turned into an ftruncate to 0).
 *   Directory entries (per parent directory). Creating a file (an open with O_CREAT that made it),
 *   rename and unlink (and, in the strict mode, mkdir and rmdir) under the tree are recorded in a journal, each with its parent
 *   directory (a rename with both: it becomes durable only when both have been synced). fsync(2) or
 *   fdatasync(2) of a descriptor of a directory makes every journal entry older than it whose parent is
 *   that directory durable. At the cut the entries not durable are undone newest first: a created file
 *   is unlinked, a created directory is removed with everything below it, a rename is moved back (and the
 *   file it replaced is moved back from the side directory), an unlinked file is moved back from the
 *   side directory, a removed directory is made again (mkdir with its old mode). Before an unlink or a
 *   rename over an existing file the shim hard-links the victim into the side directory as "<n>" (n a
 *   decimal sequence number); the link is unlinked when the entry becomes durable.
 *   An fsync of a regular file does not make its own name durable (ext4 would; POSIX does not promise it).
 *
 * What it does not model (counted as "unmodeled" in the report where the shim can see it): renames
 * across the boundary of the tree (passed through, not reverted), renameat2 with RENAME_EXCHANGE or
 * RENAME_WHITEOUT, O_TMPFILE, descriptors numbered PL_FD_MAX or higher. Not seen at all: writes through
 * stdio (glibc calls its internal write), mmap, io_uring, O_DIRECT specifics, link/symlink/truncate(2)
 * by path, dup/dup2/fcntl(F_DUPFD) copies of tracked descriptors, fcntl(F_SETFL, O_APPEND) after open,
 * sync(2)/syncfs(2) (they make nothing durable here), other processes writing the same files.
 * Reads are never intercepted. After fork(2) the child is a pure pass-through. galgod does all its file
 * I/O with open, pwritev, pwrite, pread, fdatasync, fsync, ftruncate, rename, unlink, mkdir and rmdir
 * (partition/pio.c), all covered.
 *
 * Report: one line, a JSON object with integer members in this order, then "\n":
 *   {"event":"powerloss","pid":P,"files_touched":N,"bytes_undone":B,"bytes_restored":R,
 *    "bytes_truncated":T,"files_removed":F,"dirs_removed":D,"renames_reverted":X,
 *    "unlinks_reverted":U,"rmdirs_reverted":M,"unmodeled":Q,"errors":E}
 *   files_touched     files with data not durable at the cut (each was restored);
 *   bytes_restored    bytes of pre-images written back; bytes_truncated: bytes cut off beyond the durable
 *                     sizes; bytes_undone = bytes_restored + bytes_truncated;
 *   files_removed     created files unlinked; dirs_removed: created directories removed (files inside a
 *                     removed directory are not counted);
 *   renames_reverted, unlinks_reverted, rmdirs_reverted: journal entries undone;
 *   unmodeled         calls since startup the model could not represent (list above);
 *   errors            failures of the shim's own calls (a pre-image that could not be read, a hard link
 *                     that could not be made, an undo step that failed): non-zero means the tree may not
 *                     hold an exact durable state.
 *
 * Concurrency: one process-wide mutex. Every tracked mutation (the real call and its bookkeeping), every
 * open/close of a tracked descriptor and every sync runs under it; the cut takes it and never gives it
 * back. Writes on descriptors that are not tracked (stderr logging, sockets) only read an atomic
 * descriptor table and never take the lock.
 */
#define _GNU_SOURCE

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Descriptors at or above this are never tracked (counted as unmodeled). */
#define PL_FD_MAX (1 << 20)
#define PL_BUCKETS 4096
#define PL_POLL_NS (2 * 1000 * 1000)
#define PL_EXIT_STATUS 137

/* glibc's fortified open entry points; declared here since only fortified builds see them. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* ---- the next definitions (glibc) ---- */

static struct {
	int (*open)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*pwrite)(int, const void *, size_t, off_t);
	ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
	ssize_t (*pread)(int, void *, size_t, off_t);
	int (*fdatasync)(int);
	int (*fsync)(int);
	int (*ftruncate)(int, off_t);
	int (*renameat2)(int, const char *, int, const char *, unsigned int);
	int (*renameat)(int, const char *, int, const char *);
	int (*unlinkat)(int, const char *, int);
	int (*mkdirat)(int, const char *, mode_t);
	int (*close)(int);
} real;

static void *next_sym(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p) {
		/* Without the next write(2) there is no way to say why. */
		_exit(1);
	}
	return p;
}

/* Resolves real.<name> on first use (a call may come before the constructor ran). */
#define REAL(name)                                                                                         \
	(__atomic_load_n(&real.name, __ATOMIC_ACQUIRE)                                                     \
		 ? real.name                                                                               \
		 : (__atomic_store_n(&real.name, (__typeof__(real.name))next_sym(#name), __ATOMIC_RELEASE), \
		    real.name))

/* ---- state ---- */

/* A saved pre-image: bytes [off, off + len) of the file as they were at its last sync. */
struct extent {
	uint64_t off, len;
	unsigned char *data;
};

/* A tracked inode: referenced by the writable descriptors of g_fds, or dirty, or both. */
struct inode {
	struct inode *next; /* hash chain */
	dev_t dev;
	ino_t ino;
	int refs;      /* entries of g_fds that point here */
	bool dirty;    /* changed since the last sync */
	int fd;        /* our own O_RDWR descriptor while dirty, else -1 */
	uint64_t dsize; /* the durable size */
	struct extent *ext; /* sorted by off, disjoint, all inside [0, dsize) */
	size_t n_ext, cap_ext;
};

enum jkind { J_CREATE, J_MKDIR, J_RENAME, J_UNLINK, J_RMDIR };

/* A directory-entry change not yet durable; a doubly linked list, newest at g_jnew. */
struct jent {
	struct jent *older, *newer;
	enum jkind kind;
	dev_t pdev[2];
	ino_t pino[2];
	bool pending[2]; /* parent k not yet synced since this change */
	char *path;      /* the name created/removed; a rename's old name */
	char *path2;     /* a rename's new name */
	char *side;      /* the side link of the unlinked or replaced file, or NULL */
	mode_t mode;     /* J_RMDIR, or a rename that replaced an empty directory: its mode */
	bool replaced_dir;
};

static bool g_active;
static bool g_strict_dirs; /* GALGO_POWERLOSS_STRICT_DIRS=1: mkdir and rmdir wait for the parent's fsync */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_dir[PATH_MAX];
static size_t g_dirlen;
static char g_side[PATH_MAX];
static bool g_side_made;
static uint64_t g_side_seq;
static char g_trigger[PATH_MAX];
static char g_report[PATH_MAX];
static struct inode *g_fds[PL_FD_MAX];
static unsigned char g_append[PL_FD_MAX]; /* the descriptor was opened with O_APPEND */
static struct inode *g_ino[PL_BUCKETS];
static struct jent *g_jnew, *g_jold;
static uint64_t g_unmodeled, g_errors;

/* ---- helpers ---- */

static void fail_config(const char *what)
{
	char line[PATH_MAX + 128];
	int n = snprintf(line, sizeof(line), "galgo-powerloss: %s\n", what);
	(void)!REAL(write)(STDERR_FILENO, line, (size_t)(n > 0 && (size_t)n < sizeof(line) ? n : 0));
	_exit(1);
}

static size_t bucket(dev_t dev, ino_t ino)
{
	return (size_t)(((uint64_t)ino * 0x9E3779B97F4A7C15ull) ^ (uint64_t)dev) % PL_BUCKETS;
}

static struct inode *inode_find(dev_t dev, ino_t ino)
{
	for (struct inode *n = g_ino[bucket(dev, ino)]; n; n = n->next)
		if (n->dev == dev && n->ino == ino)
			return n;
	return NULL;
}

static struct inode *inode_get(dev_t dev, ino_t ino)
{
	struct inode *n = inode_find(dev, ino);
	if (n)
		return n;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->dev = dev;
	n->ino = ino;
	n->fd = -1;
	size_t b = bucket(dev, ino);
	n->next = g_ino[b];
	g_ino[b] = n;
	return n;
}

static void inode_clean(struct inode *n)
{
	for (size_t i = 0; i < n->n_ext; i++)
		free(n->ext[i].data);
	free(n->ext);
	n->ext = NULL;
	n->n_ext = n->cap_ext = 0;
	if (n->fd >= 0)
		REAL(close)(n->fd);
	n->fd = -1;
	n->dirty = false;
}

/* Frees n when nothing refers to it any more. */
static void inode_maybe_free(struct inode *n)
{
	if (n->refs > 0 || n->dirty)
		return;
	for (struct inode **pp = &g_ino[bucket(n->dev, n->ino)]; *pp; pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	}
	free(n);
}

/* Marks n dirty on its first change since a sync: its current size is the durable size. */
static int inode_make_dirty(struct inode *n, int fd)
{
	if (n->dirty)
		return 0;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	int own = REAL(open)(proc, O_RDWR | O_CLOEXEC);
	if (own < 0)
		return -1;
	n->fd = own;
	n->dsize = (uint64_t)st.st_size;
	n->dirty = true;
	return 0;
}

/* Reads [off, off + len) into a new extent at index i. */
static int extent_insert(struct inode *n, size_t i, uint64_t off, uint64_t len)
{
	if (n->n_ext == n->cap_ext) {
		size_t cap = n->cap_ext ? 2 * n->cap_ext : 8;
		struct extent *e = realloc(n->ext, cap * sizeof(*e));
		if (!e)
			return -1;
		n->ext = e;
		n->cap_ext = cap;
	}
	unsigned char *data = malloc(len ? len : 1);
	if (!data)
		return -1;
	uint64_t got = 0;
	while (got < len) {
		ssize_t r = REAL(pread)(n->fd, data + got, len - got, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (uint64_t)r;
	}
	if (got < len) {
		/* The file is shorter than its durable size only if another process cut it. */
		memset(data + got, 0, len - got);
		g_errors++;
	}
	memmove(&n->ext[i + 1], &n->ext[i], (n->n_ext - i) * sizeof(*n->ext));
	n->ext[i] = (struct extent){.off = off, .len = len, .data = data};
	n->n_ext++;
	return 0;
}

/* Saves the pre-images of the durable bytes of [a, b) that are not saved yet. */
static void save_range(struct inode *n, uint64_t a, uint64_t b)
{
	if (b > n->dsize)
		b = n->dsize;
	if (a >= b)
		return;
	/* The first extent that ends after a. */
	size_t lo = 0, hi = n->n_ext;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (n->ext[mid].off + n->ext[mid].len <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t i = lo;
	uint64_t cur = a;
	while (cur < b) {
		if (i < n->n_ext && n->ext[i].off <= cur) {
			cur = n->ext[i].off + n->ext[i].len;
			i++;
			continue;
		}
		uint64_t end = b;
		if (i < n->n_ext && n->ext[i].off < end)
			end = n->ext[i].off;
		if (extent_insert(n, i, cur, end - cur) < 0) {
			g_errors++;
			return;
		}
		i++;
		cur = end;
	}
}

/* The tracked inode of a descriptor, or NULL; callable without the lock (see the header). */
static struct inode *fd_inode(int fd)
{
	if (!__atomic_load_n(&g_active, __ATOMIC_ACQUIRE) || fd < 0 || fd >= PL_FD_MAX)
		return NULL;
	return __atomic_load_n(&g_fds[fd], __ATOMIC_ACQUIRE);
}

/* Under the lock: records a coming write of len bytes at off (-1: the descriptor's position). */
static void note_write(struct inode *n, int fd, int64_t off, uint64_t len)
{
	if (inode_make_dirty(n, fd) < 0) {
		g_errors++;
		return;
	}
	if (off < 0) {
		struct stat st;
		if (g_append[fd]) {
			if (fstat(fd, &st) < 0) {
				g_errors++;
				return;
			}
			off = st.st_size;
		} else {
			off = lseek(fd, 0, SEEK_CUR);
			if (off < 0) {
				g_errors++;
				return;
			}
		}
	} else if (g_append[fd]) {
		/* Linux appends a pwrite on an O_APPEND descriptor: nothing durable is overwritten. */
		return;
	}
	save_range(n, (uint64_t)off, (uint64_t)off + len);
}

static void note_truncate(struct inode *n, int fd, uint64_t len)
{
	if (inode_make_dirty(n, fd) < 0) {
		g_errors++;
		return;
	}
	save_range(n, len, n->dsize);
}

static uint64_t iov_total(const struct iovec *iov, int cnt)
{
	uint64_t t = 0;
	for (int i = 0; i < cnt; i++)
		t += iov[i].iov_len;
	return t;
}

/*
 * Resolves (dirfd, path) to "<realpath of the parent>/<last component>" in out and the parent's identity;
 * true when that names something strictly inside the tracked tree.
 */
static bool resolve(int dirfd, const char *path, char *out, dev_t *pdev, ino_t *pino)
{
	if (!path || !*path)
		return false;
	char buf[PATH_MAX];
	size_t len = strlen(path);
	if (len >= sizeof(buf))
		return false;
	memcpy(buf, path, len + 1);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	char *slash = strrchr(buf, '/');
	const char *base;
	char dir[PATH_MAX];
	if (!slash) {
		base = buf;
		strcpy(dir, ".");
	} else {
		base = slash + 1;
		if (slash == buf)
			strcpy(dir, "/");
		else {
			*slash = '\0';
			strcpy(dir, buf);
		}
	}
	if (!*base || !strcmp(base, ".") || !strcmp(base, ".."))
		return false;
	if (dir[0] != '/' && dirfd != AT_FDCWD) {
		char proc[64], at[PATH_MAX];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
		ssize_t r = readlink(proc, at, sizeof(at) - 1);
		if (r <= 0)
			return false;
		at[r] = '\0';
		char joined[PATH_MAX];
		if ((size_t)snprintf(joined, sizeof(joined), "%s/%s", at, dir) >= sizeof(joined))
			return false;
		strcpy(dir, joined);
	}
	char canon[PATH_MAX];
	if (!realpath(dir, canon))
		return false;
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", strcmp(canon, "/") ? canon : "", base) >= PATH_MAX)
		return false;
	if (strncmp(out, g_dir, g_dirlen) != 0 || out[g_dirlen] != '/')
		return false;
	struct stat st;
	if (stat(canon, &st) < 0)
		return false;
	*pdev = st.st_dev;
	*pino = st.st_ino;
	return true;
}

static struct jent *journal_add(enum jkind kind, const char *path, dev_t pdev, ino_t pino)
{
	struct jent *j = calloc(1, sizeof(*j));
	if (!j || !(j->path = strdup(path))) {
		free(j);
		g_errors++;
		return NULL;
	}
	j->kind = kind;
	j->pdev[0] = pdev;
	j->pino[0] = pino;
	j->pending[0] = true;
	j->older = g_jnew;
	if (g_jnew)
		g_jnew->newer = j;
	else
		g_jold = j;
	g_jnew = j;
	return j;
}

static void journal_drop(struct jent *j)
{
	if (j->older)
		j->older->newer = j->newer;
	else
		g_jold = j->newer;
	if (j->newer)
		j->newer->older = j->older;
	else
		g_jnew = j->older;
	if (j->side && REAL(unlinkat)(AT_FDCWD, j->side, 0) < 0)
		g_errors++;
	free(j->path);
	free(j->path2);
	free(j->side);
	free(j);
}

/* A fresh side-directory path for a hard link (the side directory is made on first use). */
static char *side_name(void)
{
	if (!g_side_made) {
		if (REAL(mkdirat)(AT_FDCWD, g_side, 0700) < 0 && errno != EEXIST)
			return NULL;
		g_side_made = true;
	}
	char p[PATH_MAX];
	if ((size_t)snprintf(p, sizeof(p), "%s/%" PRIu64, g_side, ++g_side_seq) >= sizeof(p))
		return NULL;
	return strdup(p);
}

/* Hard-links path into the side directory; the link's name, or NULL (errors counted). */
static char *side_link(const char *path)
{
	char *s = side_name();
	if (!s || link(path, s) < 0) {
		free(s);
		g_errors++;
		return NULL;
	}
	return s;
}

/* A directory fsync: every journal entry whose parent is (dev, ino) is durable on that side. */
static void dir_synced(dev_t dev, ino_t ino)
{
	struct jent *j = g_jold;
	while (j) {
		struct jent *next = j->newer;
		for (int k = 0; k < 2; k++)
			if (j->pending[k] && j->pdev[k] == dev && j->pino[k] == ino)
				j->pending[k] = false;
		if (!j->pending[0] && !j->pending[1])
			journal_drop(j);
		j = next;
	}
}

/* ---- opening and closing ---- */

static void fd_register(int fd, int flags)
{
	struct stat st;
	if (fstat(fd, &st) < 0) {
		g_errors++;
		return;
	}
	if (!S_ISREG(st.st_mode))
		return;
	if (fd >= PL_FD_MAX) {
		g_unmodeled++;
		return;
	}
	struct inode *n = inode_get(st.st_dev, st.st_ino);
	if (!n) {
		g_errors++;
		return;
	}
	n->refs++;
	g_append[fd] = (flags & O_APPEND) != 0;
	__atomic_store_n(&g_fds[fd], n, __ATOMIC_RELEASE);
}

static int do_open(int dirfd, const char *path, int flags, mode_t mode)
{
	int acc = flags & O_ACCMODE;
	bool writes = acc == O_WRONLY || acc == O_RDWR;
	if (!__atomic_load_n(&g_active, __ATOMIC_ACQUIRE) || (flags & O_PATH) ||
	    (!writes && !(flags & (O_CREAT | O_TRUNC))))
		return REAL(openat)(dirfd, path, flags, mode);
	pthread_mutex_lock(&g_lock);
	char abs[PATH_MAX];
	dev_t pdev;
	ino_t pino;
	if (!resolve(dirfd, path, abs, &pdev, &pino)) {
		pthread_mutex_unlock(&g_lock);
		return REAL(openat)(dirfd, path, flags, mode);
	}
	if ((flags & O_TMPFILE) == O_TMPFILE) {
		g_unmodeled++;
		pthread_mutex_unlock(&g_lock);
		return REAL(openat)(dirfd, path, flags, mode);
	}
	struct stat st;
	bool existed = !(flags & O_CREAT) || lstat(abs, &st) == 0;
	int fd = REAL(openat)(dirfd, path, flags & ~O_TRUNC, mode);
	int err = errno;
	if (fd >= 0) {
		if (!existed)
			journal_add(J_CREATE, abs, pdev, pino);
		if (writes)
			fd_register(fd, flags);
		if ((flags & O_TRUNC) && writes) {
			struct inode *n = fd >= 0 && fd < PL_FD_MAX ? g_fds[fd] : NULL;
			if (n)
				note_truncate(n, fd, 0);
			if (REAL(ftruncate)(fd, 0) < 0)
				g_errors++;
		}
	}
	pthread_mutex_unlock(&g_lock);
	errno = err;
	return fd;
}

static mode_t open_mode(int flags, va_list ap)
{
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
		return (mode_t)va_arg(ap, int);
	return 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return do_open(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return do_open(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return do_open(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	return do_open(dirfd, path, flags, mode);
}

int __open_2(const char *path, int flags)
{
	return do_open(AT_FDCWD, path, flags, 0);
}

int __open64_2(const char *path, int flags)
{
	return do_open(AT_FDCWD, path, flags, 0);
}

int __openat_2(int dirfd, const char *path, int flags)
{
	return do_open(dirfd, path, flags, 0);
}

int __openat64_2(int dirfd, const char *path, int flags)
{
	return do_open(dirfd, path, flags, 0);
}

int close(int fd)
{
	if (!fd_inode(fd))
		return REAL(close)(fd);
	pthread_mutex_lock(&g_lock);
	struct inode *n = g_fds[fd];
	if (n) {
		__atomic_store_n(&g_fds[fd], NULL, __ATOMIC_RELEASE);
		g_append[fd] = 0;
		n->refs--;
		inode_maybe_free(n);
	}
	int r = REAL(close)(fd);
	int err = errno;
	pthread_mutex_unlock(&g_lock);
	errno = err;
	return r;
}

/* ---- writing ---- */

/* Runs the write expression CALL on a tracked descriptor after recording what it overwrites. */
#define TRACKED_WRITE(fd, off, len, CALL)                                                                  \
	do {                                                                                               \
		if (!fd_inode(fd))                                                                         \
			return CALL;                                                                       \
		pthread_mutex_lock(&g_lock);                                                               \
		struct inode *n_ = g_fds[fd];                                                              \
		if (n_)                                                                                    \
			note_write(n_, fd, off, len);                                                      \
		ssize_t r_ = CALL;                                                                         \
		int err_ = errno;                                                                          \
		pthread_mutex_unlock(&g_lock);                                                             \
		errno = err_;                                                                              \
		return r_;                                                                                 \
	} while (0)

ssize_t write(int fd, const void *buf, size_t len)
{
	TRACKED_WRITE(fd, -1, len, REAL(write)(fd, buf, len));
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	TRACKED_WRITE(fd, -1, iov_total(iov, cnt), REAL(writev)(fd, iov, cnt));
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	TRACKED_WRITE(fd, off < 0 ? 0 : off, len, REAL(pwrite)(fd, buf, len, off));
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off)
{
	TRACKED_WRITE(fd, off < 0 ? 0 : off, len, REAL(pwrite)(fd, buf, len, (off_t)off));
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	TRACKED_WRITE(fd, off < 0 ? 0 : off, iov_total(iov, cnt), REAL(pwritev)(fd, iov, cnt, off));
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
	TRACKED_WRITE(fd, off < 0 ? 0 : off, iov_total(iov, cnt), REAL(pwritev)(fd, iov, cnt, (off_t)off));
}

static int do_ftruncate(int fd, off_t len)
{
	if (!fd_inode(fd))
		return REAL(ftruncate)(fd, len);
	pthread_mutex_lock(&g_lock);
	struct inode *n = g_fds[fd];
	if (n && len >= 0)
		note_truncate(n, fd, (uint64_t)len);
	int r = REAL(ftruncate)(fd, len);
	int err = errno;
	pthread_mutex_unlock(&g_lock);
	errno = err;
	return r;
}

int ftruncate(int fd, off_t len)
{
	return do_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len)
{
	return do_ftruncate(fd, (off_t)len);
}

/* ---- syncing ---- */

static int do_sync(int fd, bool data_only)
{
	if (!__atomic_load_n(&g_active, __ATOMIC_ACQUIRE))
		return data_only ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
	pthread_mutex_lock(&g_lock);
	int r = data_only ? REAL(fdatasync)(fd) : REAL(fsync)(fd);
	int err = errno;
	struct stat st;
	if (r == 0 && fstat(fd, &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			dir_synced(st.st_dev, st.st_ino);
		} else if (S_ISREG(st.st_mode)) {
			struct inode *n = inode_find(st.st_dev, st.st_ino);
			if (n && n->dirty) {
				inode_clean(n);
				inode_maybe_free(n);
			}
		}
	}
	pthread_mutex_unlock(&g_lock);
	errno = err;
	return r;
}

int fdatasync(int fd)
{
	return do_sync(fd, true);
}

int fsync(int fd)
{
	return do_sync(fd, false);
}

/* ---- names ---- */

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

static int do_rename(int ofd, const char *from, int nfd, const char *to, unsigned int flags)
{
	if (!__atomic_load_n(&g_active, __ATOMIC_ACQUIRE))
		return flags ? REAL(renameat2)(ofd, from, nfd, to, flags) : REAL(renameat)(ofd, from, nfd, to);
	pthread_mutex_lock(&g_lock);
	char a[PATH_MAX], b[PATH_MAX];
	dev_t ad, bd;
	ino_t ai, bi;
	bool ta = resolve(ofd, from, a, &ad, &ai);
	bool tb = resolve(nfd, to, b, &bd, &bi);
	if (!ta && !tb) {
		pthread_mutex_unlock(&g_lock);
		return flags ? REAL(renameat2)(ofd, from, nfd, to, flags) : REAL(renameat)(ofd, from, nfd, to);
	}
	if (!ta || !tb || (flags & ~(unsigned int)RENAME_NOREPLACE)) {
		g_unmodeled++;
		int r = flags ? REAL(renameat2)(ofd, from, nfd, to, flags) : REAL(renameat)(ofd, from, nfd, to);
		int err = errno;
		pthread_mutex_unlock(&g_lock);
		errno = err;
		return r;
	}
	char *side = NULL;
	bool replaced_dir = false;
	mode_t mode = 0;
	struct stat sa, sb;
	if (lstat(a, &sa) == 0 && lstat(b, &sb) == 0 && !(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino)) {
		if (S_ISDIR(sb.st_mode)) {
			replaced_dir = true;
			mode = sb.st_mode & 07777;
		} else {
			side = side_link(b);
		}
	}
	int r = flags ? REAL(renameat2)(ofd, from, nfd, to, flags) : REAL(renameat)(ofd, from, nfd, to);
	int err = errno;
	if (r < 0) {
		if (side && REAL(unlinkat)(AT_FDCWD, side, 0) < 0)
			g_errors++;
		free(side);
	} else {
		struct jent *j = journal_add(J_RENAME, a, ad, ai);
		if (j) {
			j->path2 = strdup(b);
			if (!j->path2)
				g_errors++;
			j->pdev[1] = bd;
			j->pino[1] = bi;
			j->pending[1] = !(ad == bd && ai == bi);
			j->side = side;
			j->replaced_dir = replaced_dir;
			j->mode = mode;
		} else {
			free(side);
		}
	}
	pthread_mutex_unlock(&g_lock);
	errno = err;
	return r;
}

int rename(const char *from, const char *to)
{
	return do_rename(AT_FDCWD, from, AT_FDCWD, to, 0);
}

int renameat(int ofd, const char *from, int nfd, const char *to)
{
	return do_rename(ofd, from, nfd, to, 0);
}

int renameat2(int ofd, const char *from, int nfd, const char *to, unsigned int flags)
{
	return do_rename(ofd, from, nfd, to, flags);
}

static int do_unlink(int dirfd, const char *path, int flags)
{
	if (!__atomic_load_n(&g_active, __ATOMIC_ACQUIRE))
		return REAL(unlinkat)(dirfd, path, flags);
	pthread_mutex_lock(&g_lock);
	char abs[PATH_MAX];
	dev_t pdev;
	ino_t pino;
	struct stat st;
	if (!resolve(dirfd, path, abs, &pdev, &pino) || lstat(abs, &st) < 0) {
		int r = REAL(unlinkat)(dirfd, path, flags);
		int err = errno;
		pthread_mutex_unlock(&g_lock);
		errno = err;
		return r;
	}
	bool dir = (flags & AT_REMOVEDIR) != 0;
	if (dir && !g_strict_dirs) {
		/* Durable at once, and so are the removals of what it held (nothing can come back into it). */
		int r = REAL(unlinkat)(dirfd, path, flags);
		int err = errno;
		if (r == 0)
			dir_synced(st.st_dev, st.st_ino);
		pthread_mutex_unlock(&g_lock);
		errno = err;
		return r;
	}
	char *side = !dir && !S_ISDIR(st.st_mode) ? side_link(abs) : NULL;
	int r = REAL(unlinkat)(dirfd, path, flags);
	int err = errno;
	if (r < 0) {
		if (side && REAL(unlinkat)(AT_FDCWD, side, 0) < 0)
			g_errors++;
		free(side);
	} else {
		struct jent *j = journal_add(dir ? J_RMDIR : J_UNLINK, abs, pdev, pino);
		if (j) {
			j->side = side;
			j->mode = st.st_mode & 07777;
		} else {
			free(side);
		}
	}
	pthread_mutex_unlock(&g_lock);
	errno = err;
	return r;
}

int unlink(const char *path)
{
	return do_unlink(AT_FDCWD, path, 0);
}

int unlinkat(int dirfd, const char *path, int flags)
{
	return do_unlink(dirfd, path, flags);
}

int rmdir(const char *path)
{
	return do_unlink(AT_FDCWD, path, AT_REMOVEDIR);
}

static int do_mkdir(int dirfd, const char *path, mode_t mode)
{
	if (!__atomic_load_n(&g_active, __ATOMIC_ACQUIRE))
		return REAL(mkdirat)(dirfd, path, mode);
	pthread_mutex_lock(&g_lock);
	char abs[PATH_MAX];
	dev_t pdev;
	ino_t pino;
	bool tracked = resolve(dirfd, path, abs, &pdev, &pino);
	int r = REAL(mkdirat)(dirfd, path, mode);
	int err = errno;
	if (r == 0 && tracked && g_strict_dirs)
		journal_add(J_MKDIR, abs, pdev, pino);
	pthread_mutex_unlock(&g_lock);
	errno = err;
	return r;
}

int mkdir(const char *path, mode_t mode)
{
	return do_mkdir(AT_FDCWD, path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
	return do_mkdir(dirfd, path, mode);
}

/* ---- the cut ---- */

/* Removes path and, for a directory, everything below it, with the real calls. */
static int remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode))
		return REAL(unlinkat)(AT_FDCWD, path, 0);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int rv = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char sub[PATH_MAX];
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >= sizeof(sub) || remove_tree(sub) < 0)
			rv = -1;
	}
	closedir(d);
	if (REAL(unlinkat)(AT_FDCWD, path, AT_REMOVEDIR) < 0)
		rv = -1;
	return rv;
}

struct report {
	uint64_t files_touched, bytes_restored, bytes_truncated, files_removed, dirs_removed;
	uint64_t renames_reverted, unlinks_reverted, rmdirs_reverted;
};

static void undo_inode(struct inode *n, struct report *rep)
{
	rep->files_touched++;
	for (size_t i = 0; i < n->n_ext; i++) {
		const struct extent *e = &n->ext[i];
		uint64_t done = 0;
		while (done < e->len) {
			ssize_t w = REAL(pwrite)(n->fd, e->data + done, e->len - done, (off_t)(e->off + done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				g_errors++;
				break;
			}
			done += (uint64_t)w;
		}
		rep->bytes_restored += e->len;
	}
	struct stat st;
	if (fstat(n->fd, &st) == 0 && (uint64_t)st.st_size > n->dsize)
		rep->bytes_truncated += (uint64_t)st.st_size - n->dsize;
	if (REAL(ftruncate)(n->fd, (off_t)n->dsize) < 0)
		g_errors++;
}

static void undo_entry(const struct jent *j, struct report *rep)
{
	switch (j->kind) {
	case J_CREATE:
		if (REAL(unlinkat)(AT_FDCWD, j->path, 0) < 0)
			g_errors++;
		else
			rep->files_removed++;
		break;
	case J_MKDIR:
		if (remove_tree(j->path) < 0)
			g_errors++;
		else
			rep->dirs_removed++;
		break;
	case J_RENAME:
		if (!j->path2 || REAL(renameat)(AT_FDCWD, j->path2, AT_FDCWD, j->path) < 0) {
			g_errors++;
			break;
		}
		if (j->side && REAL(renameat)(AT_FDCWD, j->side, AT_FDCWD, j->path2) < 0)
			g_errors++;
		if (j->replaced_dir && REAL(mkdirat)(AT_FDCWD, j->path2, j->mode) < 0)
			g_errors++;
		rep->renames_reverted++;
		break;
	case J_UNLINK:
		if (!j->side || REAL(renameat)(AT_FDCWD, j->side, AT_FDCWD, j->path) < 0)
			g_errors++;
		else
			rep->unlinks_reverted++;
		break;
	case J_RMDIR:
		if (REAL(mkdirat)(AT_FDCWD, j->path, j->mode) < 0)
			g_errors++;
		else
			rep->rmdirs_reverted++;
		break;
	}
}

static _Noreturn void power_cut(void)
{
	pthread_mutex_lock(&g_lock); /* never released: no tracked mutation runs any more */
	struct report rep = {0};
	for (size_t b = 0; b < PL_BUCKETS; b++)
		for (struct inode *n = g_ino[b]; n; n = n->next)
			if (n->dirty)
				undo_inode(n, &rep);
	for (struct jent *j = g_jnew; j; j = j->older)
		undo_entry(j, &rep);
	if (g_side_made && remove_tree(g_side) < 0)
		g_errors++;
	char line[768];
	int len = snprintf(line, sizeof(line),
			   "{\"event\":\"powerloss\",\"pid\":%ld,\"files_touched\":%" PRIu64 ",\"bytes_undone\":%" PRIu64
			   ",\"bytes_restored\":%" PRIu64 ",\"bytes_truncated\":%" PRIu64 ",\"files_removed\":%" PRIu64
			   ",\"dirs_removed\":%" PRIu64 ",\"renames_reverted\":%" PRIu64 ",\"unlinks_reverted\":%" PRIu64
			   ",\"rmdirs_reverted\":%" PRIu64 ",\"unmodeled\":%" PRIu64 ",\"errors\":%" PRIu64 "}\n",
			   (long)getpid(), rep.files_touched, rep.bytes_restored + rep.bytes_truncated,
			   rep.bytes_restored, rep.bytes_truncated, rep.files_removed, rep.dirs_removed,
			   rep.renames_reverted, rep.unlinks_reverted, rep.rmdirs_reverted, g_unmodeled, g_errors);
	int out = STDERR_FILENO;
	if (g_report[0])
		out = REAL(open)(g_report, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (out < 0)
		out = STDERR_FILENO;
	if (len > 0)
		(void)!REAL(write)(out, line, (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
	if (out != STDERR_FILENO)
		REAL(fsync)(out);
	_exit(PL_EXIT_STATUS);
}

static void *watch(void *arg)
{
	(void)arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	const struct timespec ts = {.tv_sec = 0, .tv_nsec = PL_POLL_NS};
	for (;;) {
		if (access(g_trigger, F_OK) == 0)
			power_cut();
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void after_fork_child(void)
{
	__atomic_store_n(&g_active, false, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void powerloss_init(void)
{
	const char *dir = getenv("GALGO_POWERLOSS_DIR");
	if (!dir || !*dir)
		return;
	const char *trigger = getenv("GALGO_POWERLOSS_TRIGGER");
	if (!trigger || !*trigger || strlen(trigger) >= sizeof(g_trigger))
		fail_config("GALGO_POWERLOSS_DIR is set but GALGO_POWERLOSS_TRIGGER is not (or too long)");
	strcpy(g_trigger, trigger);
	const char *strict = getenv("GALGO_POWERLOSS_STRICT_DIRS");
	g_strict_dirs = strict && !strcmp(strict, "1");
	const char *report = getenv("GALGO_POWERLOSS_REPORT");
	if (report && strlen(report) < sizeof(g_report))
		strcpy(g_report, report);

	/* The tracked directory: realpath of itself, or of its parent plus its last component. */
	if (!realpath(dir, g_dir)) {
		char parent[PATH_MAX], canon[PATH_MAX];
		if (strlen(dir) >= sizeof(parent))
			fail_config("GALGO_POWERLOSS_DIR is too long");
		strcpy(parent, dir);
		size_t len = strlen(parent);
		while (len > 1 && parent[len - 1] == '/')
			parent[--len] = '\0';
		char *slash = strrchr(parent, '/');
		const char *base = slash ? slash + 1 : parent;
		char name[PATH_MAX];
		strcpy(name, base);
		if (slash == parent)
			strcpy(parent, "/");
		else if (slash)
			*slash = '\0';
		else
			strcpy(parent, ".");
		if (!realpath(parent, canon) || !*name || !strcmp(name, ".") || !strcmp(name, "..") ||
		    (size_t)snprintf(g_dir, sizeof(g_dir), "%s/%s", strcmp(canon, "/") ? canon : "", name) >=
			    sizeof(g_dir))
			fail_config("GALGO_POWERLOSS_DIR cannot be resolved (its parent must exist)");
	}
	if (!strcmp(g_dir, "/"))
		fail_config("GALGO_POWERLOSS_DIR must not be /");
	g_dirlen = strlen(g_dir);

	const char *side = getenv("GALGO_POWERLOSS_SIDE");
	if (side && *side) {
		if (strlen(side) >= sizeof(g_side))
			fail_config("GALGO_POWERLOSS_SIDE is too long");
		strcpy(g_side, side);
	} else {
		char parent[PATH_MAX];
		strcpy(parent, g_dir);
		char *slash = strrchr(parent, '/');
		*slash = '\0';
		if ((size_t)snprintf(g_side, sizeof(g_side), "%s/.galgo-powerloss-%s-%ld", parent, slash + 1,
				     (long)getpid()) >= sizeof(g_side))
			fail_config("the side directory's path is too long");
	}
	char canon_side[PATH_MAX];
	const char *cs = realpath(g_side, canon_side) ? canon_side : g_side;
	if (!strncmp(cs, g_dir, g_dirlen) && (cs[g_dirlen] == '/' || cs[g_dirlen] == '\0'))
		fail_config("GALGO_POWERLOSS_SIDE must not lie inside GALGO_POWERLOSS_DIR");

	pthread_atfork(NULL, NULL, after_fork_child);
	__atomic_store_n(&g_active, true, __ATOMIC_RELEASE);
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, watch, NULL) != 0)
		fail_config("cannot start the trigger thread");
	pthread_attr_destroy(&attr);
}

/* A normal exit: the side links of changes that never became durable are removed with their directory. */
__attribute__((destructor)) static void powerloss_fini(void)
{
	if (!__atomic_load_n(&g_active, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&g_lock);
	__atomic_store_n(&g_active, false, __ATOMIC_RELEASE);
	if (g_side_made)
		remove_tree(g_side);
	g_side_made = false;
	pthread_mutex_unlock(&g_lock);
}
