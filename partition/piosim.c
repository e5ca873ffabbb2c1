/*
 * piosim.c — the simulated pio backend (specification in partition/piosim.h).
 *
 * Representation. Files are inodes, each with a volatile and a durable content buffer. The namespace is
 * two tables of (path, inode) entries, the volatile one (what open/list see) and the durable one (what a
 * power loss leaves). Directories are a plain set of paths, durable at once. Paths are normalized
 * (repeated '/', trailing '/' and "." components dropped), so "a//b/" and "./a/b" name the same file; the
 * root ("" for relative paths, "/" for absolute ones) always exists. An inode lives while an entry of
 * either table or an open handle refers to it, which gives POSIX unlink/rename-while-open semantics.
 *
 * For tearing, every inode remembers its last pio_pwritev since its last successful pio_datasync (offset,
 * bytes and a global sequence number); at power loss the one with the highest sequence number is the
 * last write that was not yet made durable.
 *
 * Choices where piosim.h leaves room:
 *   - pio_rmdir is durable at once like pio_mkdir, and drops any durable entries left in the directory
 *     (files unlinked or renamed away without a pio_syncdir); pio_mkdir likewise drops a durable file
 *     entry of the same path;
 *   - pio_sim_crash_after(p, 0) crashes at once; with n > 0 the crash takes effect as soon as the n-th
 *     mutating call has been let through;
 *   - a power loss also disarms a pending pio_sim_crash_after (a pending pio_sim_fail_nth stays armed);
 *   - renaming directories is not supported (-ENOTSUP); nothing in Galgo does it.
 *   - pio_sim_corrupt and pio_sim_durable_size find the file in the volatile namespace, else in the
 *     durable one; pio_sim_corrupt returns -EINVAL if off is beyond both contents.
 */
#include "partition/piosim.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Largest file the simulation accepts (tests are small; this only guards against absurd offsets). */
#define SIM_MAX_FILE ((uint64_t)1 << 32)

struct buf {
	uint8_t *data;
	size_t len, cap;
};

struct inode {
	struct buf vol, dur;
	unsigned opens;
	/* The last pio_pwritev since the last successful datasync, for tearing. */
	bool has_last;
	uint64_t last_seq;
	uint64_t last_off;
	uint8_t *last_data;
	size_t last_len;
	struct inode *next; /* all inodes */
};

struct entry {
	char *path;
	struct inode *ino;
};

struct ns {
	struct entry *v;
	size_t n, cap;
};

struct sim {
	struct pio base; /* first member: struct pio * <-> struct sim * */
	pthread_mutex_t mu;
	struct inode *inodes;
	struct ns vol, dur;
	char **dirs;
	size_t ndirs, capdirs;
	unsigned open_files;
	uint64_t calls, mutations, write_seq;
	uint64_t fail_left; /* 0: disarmed */
	int fail_err;
	bool crash_armed;
	uint64_t crash_left;
	bool crashed;
};

/* A handle; struct pio_file is opaque and each backend casts to its own type. */
struct sim_file {
	struct inode *ino;
	bool writable;
};

static struct sim *sim_of(struct pio *p)
{
	return (struct sim *)p;
}

static struct sim_file *sf(struct pio_file *f)
{
	return (struct sim_file *)f;
}

/* ---- buffers ---- */

static int buf_reserve(struct buf *b, size_t need)
{
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	uint8_t *d = realloc(b->data, cap);
	if (!d)
		return -ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

/* Sets the length, zero-filling any growth. */
static int buf_resize(struct buf *b, size_t size)
{
	if (buf_reserve(b, size) < 0)
		return -ENOMEM;
	if (size > b->len)
		memset(b->data + b->len, 0, size - b->len);
	b->len = size;
	return 0;
}

/* Writes len bytes at off, zero-filling a gap after the current end. */
static int buf_write(struct buf *b, size_t off, const uint8_t *data, size_t len)
{
	size_t end = off + len;
	if (buf_reserve(b, end) < 0)
		return -ENOMEM;
	if (off > b->len)
		memset(b->data + b->len, 0, off - b->len);
	if (len)
		memcpy(b->data + off, data, len);
	if (end > b->len)
		b->len = end;
	return 0;
}

static int buf_copy(struct buf *dst, const struct buf *src)
{
	if (buf_reserve(dst, src->len) < 0)
		return -ENOMEM;
	if (src->len)
		memcpy(dst->data, src->data, src->len);
	dst->len = src->len;
	return 0;
}

/* ---- paths ---- */

/* The normalized form of path (malloc'd), or NULL when out of memory. */
static char *norm(const char *path)
{
	size_t n = strlen(path);
	char *out = malloc(n + 2);
	if (!out)
		return NULL;
	size_t o = 0;
	bool abs = path[0] == '/';
	if (abs)
		out[o++] = '/';
	const char *s = path;
	while (*s) {
		while (*s == '/')
			s++;
		const char *e = s;
		while (*e && *e != '/')
			e++;
		size_t len = (size_t)(e - s);
		if (len > 0 && !(len == 1 && s[0] == '.')) {
			if (o > 0 && out[o - 1] != '/')
				out[o++] = '/';
			memcpy(out + o, s, len);
			o += len;
		}
		s = e;
	}
	out[o] = '\0';
	return out;
}

static bool is_root(const char *path)
{
	return path[0] == '\0' || strcmp(path, "/") == 0;
}

/* Length of the parent-directory part of a normalized path ("a/b" -> 1, "/a" -> 1 for "/", "a" -> 0). */
static size_t parent_len(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return 0;
	if (slash == path)
		return 1;
	return (size_t)(slash - path);
}

/* Whether normalized `path` lies directly in normalized directory `dir`. */
static bool in_dir(const char *path, const char *dir)
{
	if (is_root(path))
		return false;
	size_t pl = parent_len(path);
	return strlen(dir) == pl && strncmp(path, dir, pl) == 0;
}

/* The last component of a normalized, non-root path. */
static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* ---- namespace ---- */

static long ns_find(const struct ns *t, const char *path)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].path, path) == 0)
			return (long)i;
	return -1;
}

static struct inode *ns_get(const struct ns *t, const char *path)
{
	long i = ns_find(t, path);
	return i < 0 ? NULL : t->v[i].ino;
}

static bool ns_refers(const struct ns *t, const struct inode *ino)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].ino == ino)
			return true;
	return false;
}

/* Makes path refer to ino, replacing an existing entry. */
static int ns_set(struct ns *t, const char *path, struct inode *ino)
{
	long i = ns_find(t, path);
	if (i >= 0) {
		t->v[i].ino = ino;
		return 0;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		struct entry *v = realloc(t->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	t->v[t->n].path = copy;
	t->v[t->n].ino = ino;
	t->n++;
	return 0;
}

static void ns_del(struct ns *t, size_t i)
{
	free(t->v[i].path);
	t->v[i] = t->v[--t->n];
}

static void ns_clear(struct ns *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].path);
	t->n = 0;
}

static bool dir_exists(const struct sim *s, const char *path)
{
	if (is_root(path))
		return true;
	for (size_t i = 0; i < s->ndirs; i++)
		if (strcmp(s->dirs[i], path) == 0)
			return true;
	return false;
}

/* 0 if the parent directory of normalized `path` exists, else -ENOENT or -ENOTDIR. */
static int check_parent(const struct sim *s, const char *path)
{
	size_t pl = parent_len(path);
	char *parent = strndup(path, pl);
	if (!parent)
		return -ENOMEM;
	int r = 0;
	if (!dir_exists(s, parent))
		r = ns_get(&s->vol, parent) ? -ENOTDIR : -ENOENT;
	free(parent);
	return r;
}

/* ---- inodes ---- */

static void clear_last(struct inode *ino)
{
	free(ino->last_data);
	ino->last_data = NULL;
	ino->last_len = 0;
	ino->has_last = false;
}

static void inode_free(struct inode *ino)
{
	free(ino->vol.data);
	free(ino->dur.data);
	free(ino->last_data);
	free(ino);
}

/* Frees every inode that no entry and no open handle refers to. */
static void gc(struct sim *s)
{
	struct inode **pp = &s->inodes;
	while (*pp) {
		struct inode *ino = *pp;
		if (ino->opens == 0 && !ns_refers(&s->vol, ino) && !ns_refers(&s->dur, ino)) {
			*pp = ino->next;
			inode_free(ino);
		} else {
			pp = &ino->next;
		}
	}
}

/* ---- call accounting ---- */

/*
 * Counts a call and applies faults. Returns 0 if the call may proceed, or the error it must fail with
 * (changing nothing).
 */
static int begin(struct sim *s, bool mutating)
{
	s->calls++;
	if (mutating)
		s->mutations++;
	if (s->crashed)
		return -EIO;
	if (!mutating)
		return 0;
	if (s->crash_armed && --s->crash_left == 0) {
		/* This call is the last one let through; the machine is dead afterwards. */
		s->crash_armed = false;
		s->crashed = true;
	}
	if (s->fail_left && --s->fail_left == 0)
		return -s->fail_err;
	return 0;
}

/* ---- operations ---- */

static int sim_open(struct pio *p, const char *path, int flags, struct pio_file **out)
{
	struct sim *s = sim_of(p);
	bool create = flags & PIO_CREATE;
	pthread_mutex_lock(&s->mu);
	int r = begin(s, create);
	char *np = NULL;
	struct sim_file *f = NULL;
	struct inode *ino = NULL;
	if (r < 0)
		goto out;
	r = -ENOMEM;
	np = norm(path);
	f = malloc(sizeof(*f));
	if (!np || !f)
		goto out;
	if (dir_exists(s, np)) {
		r = -EISDIR;
		goto out;
	}
	if ((r = check_parent(s, np)) < 0)
		goto out;
	ino = ns_get(&s->vol, np);
	if (ino && create && (flags & PIO_EXCL)) {
		r = -EEXIST;
		goto out;
	}
	if (!ino && !create) {
		r = -ENOENT;
		goto out;
	}
	if (!ino) {
		ino = calloc(1, sizeof(*ino));
		if (!ino) {
			r = -ENOMEM;
			goto out;
		}
		if ((r = ns_set(&s->vol, np, ino)) < 0) {
			free(ino);
			goto out;
		}
		ino->next = s->inodes;
		s->inodes = ino;
	}
	ino->opens++;
	s->open_files++;
	f->ino = ino;
	f->writable = create || (flags & PIO_RDWR);
	*out = (struct pio_file *)f;
	f = NULL;
	r = 0;
out:
	pthread_mutex_unlock(&s->mu);
	free(np);
	free(f);
	return r;
}

static void sim_close(struct pio *p, struct pio_file *f)
{
	if (!f)
		return;
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	sf(f)->ino->opens--;
	s->open_files--;
	gc(s);
	pthread_mutex_unlock(&s->mu);
	free(f);
}

static int sim_pwritev(struct pio *p, struct pio_file *f, const struct iovec *iov, int iovcnt, uint64_t off)
{
	struct sim *s = sim_of(p);
	struct inode *ino = sf(f)->ino;
	uint8_t *data = NULL;
	pthread_mutex_lock(&s->mu);
	int r = begin(s, true);
	if (r < 0)
		goto out;
	r = -EBADF;
	if (!sf(f)->writable)
		goto out;
	r = -EINVAL;
	if (iovcnt < 0)
		goto out;
	uint64_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	r = -EFBIG;
	if (off > SIM_MAX_FILE || total > SIM_MAX_FILE - off)
		goto out;
	r = -ENOMEM;
	data = malloc(total ? total : 1);
	if (!data)
		goto out;
	size_t pos = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(data + pos, iov[i].iov_base, iov[i].iov_len);
		pos += iov[i].iov_len;
	}
	if (total > 0 || off <= ino->vol.len) {
		/* A zero-length write past the end does not extend the file. */
		if ((r = buf_write(&ino->vol, off, data, total)) < 0)
			goto out;
	}
	clear_last(ino);
	ino->has_last = true;
	ino->last_seq = ++s->write_seq;
	ino->last_off = off;
	ino->last_data = data;
	ino->last_len = total;
	data = NULL;
	r = 0;
out:
	pthread_mutex_unlock(&s->mu);
	free(data);
	return r;
}

static ssize_t sim_pread(struct pio *p, struct pio_file *f, void *buf, size_t len, uint64_t off)
{
	struct sim *s = sim_of(p);
	struct inode *ino = sf(f)->ino;
	pthread_mutex_lock(&s->mu);
	ssize_t r = begin(s, false);
	if (r == 0) {
		size_t n = 0;
		if (off < ino->vol.len) {
			n = ino->vol.len - (size_t)off;
			if (n > len)
				n = len;
			memcpy(buf, ino->vol.data + off, n);
		}
		r = (ssize_t)n;
	}
	pthread_mutex_unlock(&s->mu);
	return r;
}

static int sim_datasync(struct pio *p, struct pio_file *f)
{
	struct sim *s = sim_of(p);
	struct inode *ino = sf(f)->ino;
	pthread_mutex_lock(&s->mu);
	int r = begin(s, true);
	if (r == 0)
		r = buf_copy(&ino->dur, &ino->vol);
	if (r == 0)
		clear_last(ino);
	pthread_mutex_unlock(&s->mu);
	return r;
}

static int sim_truncate(struct pio *p, struct pio_file *f, uint64_t size)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = begin(s, true);
	if (r == 0 && !sf(f)->writable)
		r = -EBADF;
	if (r == 0 && size > SIM_MAX_FILE)
		r = -EFBIG;
	if (r == 0)
		r = buf_resize(&sf(f)->ino->vol, (size_t)size);
	pthread_mutex_unlock(&s->mu);
	return r;
}

static int sim_size(struct pio *p, struct pio_file *f, uint64_t *out)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	*out = sf(f)->ino->vol.len;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int sim_fd(struct pio *p, struct pio_file *f)
{
	(void)p;
	(void)f;
	return -1;
}

static int sim_rename(struct pio *p, const char *from, const char *to)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = begin(s, true);
	char *nf = NULL, *nt = NULL;
	if (r < 0)
		goto out;
	r = -ENOMEM;
	nf = norm(from);
	nt = norm(to);
	if (!nf || !nt)
		goto out;
	r = -ENOTSUP;
	if (dir_exists(s, nf))
		goto out;
	r = -ENOENT;
	long i = ns_find(&s->vol, nf);
	if (i < 0)
		goto out;
	if ((r = check_parent(s, nt)) < 0)
		goto out;
	r = -EISDIR;
	if (dir_exists(s, nt))
		goto out;
	r = 0;
	if (strcmp(nf, nt) == 0)
		goto out;
	struct inode *ino = s->vol.v[i].ino;
	if ((r = ns_set(&s->vol, nt, ino)) < 0)
		goto out;
	ns_del(&s->vol, (size_t)i); /* ns_set replaced or appended an entry, so i still names `from` */
	gc(s);
out:
	pthread_mutex_unlock(&s->mu);
	free(nf);
	free(nt);
	return r;
}

static int sim_unlink(struct pio *p, const char *path)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = begin(s, true);
	char *np = NULL;
	if (r < 0)
		goto out;
	r = -ENOMEM;
	np = norm(path);
	if (!np)
		goto out;
	r = -EISDIR;
	if (dir_exists(s, np))
		goto out;
	r = -ENOENT;
	long i = ns_find(&s->vol, np);
	if (i < 0)
		goto out;
	ns_del(&s->vol, (size_t)i);
	gc(s);
	r = 0;
out:
	pthread_mutex_unlock(&s->mu);
	free(np);
	return r;
}

/* Adds one directory (normalized, non-root) if missing. */
static int add_dir(struct sim *s, const char *path)
{
	if (dir_exists(s, path))
		return 0;
	if (ns_get(&s->vol, path))
		return -ENOTDIR;
	if (s->ndirs == s->capdirs) {
		size_t cap = s->capdirs ? 2 * s->capdirs : 16;
		char **v = realloc(s->dirs, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->dirs = v;
		s->capdirs = cap;
	}
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	s->dirs[s->ndirs++] = copy;
	/* The directory is durable at once; a stale durable file entry of that name cannot coexist. */
	long i = ns_find(&s->dur, path);
	if (i >= 0) {
		ns_del(&s->dur, (size_t)i);
		gc(s);
	}
	return 0;
}

static int sim_mkdir(struct pio *p, const char *path)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = begin(s, true);
	char *np = NULL;
	if (r < 0)
		goto out;
	r = -ENOMEM;
	np = norm(path);
	if (!np)
		goto out;
	r = 0;
	if (is_root(np))
		goto out;
	/* Every prefix ending before a '/' (the first character is skipped so "/" itself is not one). */
	for (char *c = np + 1; *c; c++) {
		if (*c != '/')
			continue;
		*c = '\0';
		r = add_dir(s, np);
		*c = '/';
		if (r < 0)
			goto out;
	}
	r = add_dir(s, np);
out:
	pthread_mutex_unlock(&s->mu);
	free(np);
	return r;
}

static int sim_rmdir(struct pio *p, const char *path)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = begin(s, true);
	char *np = NULL;
	if (r < 0)
		goto out;
	r = -ENOMEM;
	np = norm(path);
	if (!np)
		goto out;
	r = -EBUSY;
	if (is_root(np))
		goto out;
	size_t di;
	for (di = 0; di < s->ndirs; di++)
		if (strcmp(s->dirs[di], np) == 0)
			break;
	if (di == s->ndirs) {
		r = ns_get(&s->vol, np) ? -ENOTDIR : -ENOENT;
		goto out;
	}
	r = -ENOTEMPTY;
	for (size_t i = 0; i < s->vol.n; i++)
		if (in_dir(s->vol.v[i].path, np))
			goto out;
	for (size_t i = 0; i < s->ndirs; i++)
		if (in_dir(s->dirs[i], np))
			goto out;
	free(s->dirs[di]);
	s->dirs[di] = s->dirs[--s->ndirs];
	for (size_t i = 0; i < s->dur.n;) {
		if (in_dir(s->dur.v[i].path, np))
			ns_del(&s->dur, i);
		else
			i++;
	}
	gc(s);
	r = 0;
out:
	pthread_mutex_unlock(&s->mu);
	free(np);
	return r;
}

static int sim_syncdir(struct pio *p, const char *path)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = begin(s, true);
	char *np = NULL;
	if (r < 0)
		goto out;
	r = -ENOMEM;
	np = norm(path);
	if (!np)
		goto out;
	if (!dir_exists(s, np)) {
		r = ns_get(&s->vol, np) ? -ENOTDIR : -ENOENT;
		goto out;
	}
	/* Make room first so that the update below cannot fail halfway. */
	size_t need = s->dur.n;
	for (size_t i = 0; i < s->vol.n; i++)
		if (in_dir(s->vol.v[i].path, np))
			need++;
	if (need > s->dur.cap) {
		struct entry *v = realloc(s->dur.v, need * sizeof(*v));
		if (!v)
			goto out;
		s->dur.v = v;
		s->dur.cap = need;
	}
	char **copies = calloc(need ? need : 1, sizeof(*copies));
	if (!copies)
		goto out;
	size_t nc = 0;
	for (size_t i = 0; i < s->vol.n; i++) {
		if (!in_dir(s->vol.v[i].path, np))
			continue;
		copies[nc] = strdup(s->vol.v[i].path);
		if (!copies[nc]) {
			for (size_t k = 0; k < nc; k++)
				free(copies[k]);
			free(copies);
			goto out;
		}
		nc++;
	}
	/* The durable entries of dir become exactly its volatile entries. */
	for (size_t i = 0; i < s->dur.n;) {
		if (in_dir(s->dur.v[i].path, np))
			ns_del(&s->dur, i);
		else
			i++;
	}
	for (size_t i = 0, c = 0; i < s->vol.n; i++) {
		if (!in_dir(s->vol.v[i].path, np))
			continue;
		s->dur.v[s->dur.n].path = copies[c++];
		s->dur.v[s->dur.n].ino = s->vol.v[i].ino;
		s->dur.n++;
	}
	free(copies);
	gc(s);
	r = 0;
out:
	pthread_mutex_unlock(&s->mu);
	free(np);
	return r;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int sim_list(struct pio *p, const char *dir, char ***names, size_t *count)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = begin(s, false);
	char *np = NULL;
	char **v = NULL;
	size_t n = 0;
	if (r < 0)
		goto out;
	r = -ENOMEM;
	np = norm(dir);
	if (!np)
		goto out;
	if (!dir_exists(s, np)) {
		r = ns_get(&s->vol, np) ? -ENOTDIR : -ENOENT;
		goto out;
	}
	r = -ENOMEM;
	v = malloc((s->vol.n + s->ndirs + 1) * sizeof(*v));
	if (!v)
		goto out;
	for (size_t i = 0; i < s->vol.n + s->ndirs; i++) {
		const char *path = i < s->vol.n ? s->vol.v[i].path : s->dirs[i - s->vol.n];
		if (!in_dir(path, np))
			continue;
		v[n] = strdup(base_name(path));
		if (!v[n])
			goto out;
		n++;
	}
	qsort(v, n, sizeof(*v), cmp_names);
	*names = v;
	*count = n;
	v = NULL;
	r = 0;
out:
	pthread_mutex_unlock(&s->mu);
	free(np);
	pio_list_free(v, n);
	return r;
}

static void sim_destroy(struct pio *p)
{
	struct sim *s = sim_of(p);
	while (s->inodes) {
		struct inode *ino = s->inodes;
		s->inodes = ino->next;
		inode_free(ino);
	}
	ns_clear(&s->vol);
	ns_clear(&s->dur);
	free(s->vol.v);
	free(s->dur.v);
	for (size_t i = 0; i < s->ndirs; i++)
		free(s->dirs[i]);
	free(s->dirs);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static const struct pio_ops sim_ops = {
	.open = sim_open,
	.close = sim_close,
	.pwritev = sim_pwritev,
	.pread = sim_pread,
	.datasync = sim_datasync,
	.truncate = sim_truncate,
	.size = sim_size,
	.fd = sim_fd,
	.rename = sim_rename,
	.unlink = sim_unlink,
	.mkdir = sim_mkdir,
	.rmdir = sim_rmdir,
	.syncdir = sim_syncdir,
	.list = sim_list,
	.destroy = sim_destroy,
};

struct pio *pio_sim_new(void)
{
	struct sim *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->base.ops = &sim_ops;
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s);
		return NULL;
	}
	return &s->base;
}

/* ---- controls ---- */

void pio_sim_fail_nth(struct pio *p, uint64_t n, int err)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	s->fail_left = n;
	s->fail_err = err > 0 ? err : (err < 0 ? -err : EIO);
	pthread_mutex_unlock(&s->mu);
}

void pio_sim_crash_after(struct pio *p, uint64_t n)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	if (n == 0) {
		s->crash_armed = false;
		s->crashed = true;
	} else {
		s->crash_armed = true;
		s->crash_left = n;
	}
	pthread_mutex_unlock(&s->mu);
}

uint64_t pio_sim_calls(struct pio *p)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	uint64_t n = s->calls;
	pthread_mutex_unlock(&s->mu);
	return n;
}

uint64_t pio_sim_mutations(struct pio *p)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	uint64_t n = s->mutations;
	pthread_mutex_unlock(&s->mu);
	return n;
}

int pio_sim_power_loss(struct pio *p, uint32_t tear)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = -EBUSY;
	if (s->open_files > 0)
		goto out;
	/* Build the new volatile namespace first, so that running out of memory changes nothing. */
	struct ns fresh = {0};
	r = -ENOMEM;
	if (s->dur.n) {
		fresh.v = malloc(s->dur.n * sizeof(*fresh.v));
		if (!fresh.v)
			goto out;
		fresh.cap = s->dur.n;
		for (size_t i = 0; i < s->dur.n; i++) {
			fresh.v[i].path = strdup(s->dur.v[i].path);
			fresh.v[i].ino = s->dur.v[i].ino;
			if (!fresh.v[i].path) {
				ns_clear(&fresh);
				free(fresh.v);
				goto out;
			}
			fresh.n++;
		}
	}
	/* Tear: the last write not yet made durable keeps tear % len bytes, if its file survives. */
	struct inode *last = NULL;
	for (struct inode *ino = s->inodes; ino; ino = ino->next)
		if (ino->has_last && (!last || ino->last_seq > last->last_seq))
			last = ino;
	size_t keep = 0, torn_end = 0;
	if (tear && last && last->last_len && ns_refers(&s->dur, last)) {
		keep = tear % last->last_len;
		torn_end = (size_t)last->last_off + keep;
	}
	/* Reserve every buffer first; from here on nothing can fail. */
	bool ok = !keep || buf_reserve(&last->dur, torn_end) == 0;
	for (struct inode *ino = s->inodes; ok && ino; ino = ino->next) {
		size_t need = ino->dur.len;
		if (keep && ino == last && torn_end > need)
			need = torn_end;
		ok = buf_reserve(&ino->vol, need) == 0;
	}
	if (!ok) {
		ns_clear(&fresh);
		free(fresh.v);
		goto out;
	}
	if (keep)
		buf_write(&last->dur, (size_t)last->last_off, last->last_data, keep);
	for (struct inode *ino = s->inodes; ino; ino = ino->next) {
		clear_last(ino);
		buf_copy(&ino->vol, &ino->dur);
	}
	ns_clear(&s->vol);
	free(s->vol.v);
	s->vol = fresh;
	s->crashed = false;
	s->crash_armed = false;
	gc(s);
	r = 0;
out:
	pthread_mutex_unlock(&s->mu);
	return r;
}

/* The inode named path: the volatile namespace first, else the durable one. Caller holds the mutex. */
static struct inode *lookup_any(struct sim *s, const char *path)
{
	char *np = norm(path);
	if (!np)
		return NULL;
	struct inode *ino = ns_get(&s->vol, np);
	if (!ino)
		ino = ns_get(&s->dur, np);
	free(np);
	return ino;
}

int pio_sim_corrupt(struct pio *p, const char *path, uint64_t off, uint8_t xor_mask)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = -ENOENT;
	struct inode *ino = lookup_any(s, path);
	if (ino) {
		r = -EINVAL;
		if (off < ino->vol.len) {
			ino->vol.data[off] ^= xor_mask;
			r = 0;
		}
		if (off < ino->dur.len) {
			ino->dur.data[off] ^= xor_mask;
			r = 0;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return r;
}

int pio_sim_durable_size(struct pio *p, const char *path, uint64_t *out)
{
	struct sim *s = sim_of(p);
	pthread_mutex_lock(&s->mu);
	int r = -ENOENT;
	struct inode *ino = lookup_any(s, path);
	if (ino) {
		*out = ino->dur.len;
		r = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return r;
}
