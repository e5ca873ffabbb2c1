/*
 * pio.c — the real pio backend: a thin layer over POSIX file calls (see partition/pio.h).
 *
 * Every call retries on EINTR and turns failures into negative errno values. pio_pwritev loops over
 * short writes, pio_pread loops until it has `len` bytes or reaches end of file.
 */
#include "partition/pio.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* How many iovecs one pwritev(2) call gets at most (well below IOV_MAX). */
#define REAL_IOV_BATCH 64

/* A handle of the real backend; struct pio_file is opaque and each backend casts to its own type. */
struct real_file {
	int fd;
};

static struct real_file *rf(struct pio_file *f)
{
	/* Every call on a handle is made between its open and its close. */
	assert(f != NULL && ((struct real_file *)f)->fd >= 0);
	return (struct real_file *)f;
}

static int real_open(struct pio *p, const char *path, int flags, struct pio_file **out)
{
	(void)p;
	int oflags = O_CLOEXEC;
	if (flags & PIO_CREATE) {
		oflags |= O_RDWR | O_CREAT;
		if (flags & PIO_EXCL)
			oflags |= O_EXCL;
	} else if (flags & PIO_RDWR) {
		oflags |= O_RDWR;
	} else {
		oflags |= O_RDONLY;
	}
	struct real_file *f = malloc(sizeof(*f));
	if (!f)
		return -ENOMEM;
	int fd;
	do
		fd = open(path, oflags, 0644);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int err = errno;
		free(f);
		return -err;
	}
	f->fd = fd;
	*out = (struct pio_file *)f;
	return 0;
}

static void real_close(struct pio *p, struct pio_file *f)
{
	(void)p;
	if (!f)
		return;
	/* Never retry close(2) on EINTR: on Linux the descriptor is released regardless. */
	close(rf(f)->fd);
	free(f);
}

static int real_pwritev(struct pio *p, struct pio_file *f, const struct iovec *iov, int iovcnt, uint64_t off)
{
	(void)p;
	if (iovcnt < 0)
		return -EINVAL;
	struct iovec batch[REAL_IOV_BATCH];
	int idx = 0;     /* first iovec not yet completely written */
	size_t done = 0; /* bytes of iov[idx] already written */
	for (;;) {
		while (idx < iovcnt && done == iov[idx].iov_len) {
			idx++;
			done = 0;
		}
		if (idx == iovcnt)
			return 0;
		if (off > (uint64_t)INT64_MAX)
			return -EFBIG;
		int n = 0;
		for (int i = idx; i < iovcnt && n < REAL_IOV_BATCH; i++, n++) {
			batch[n] = iov[i];
			if (i == idx) {
				batch[n].iov_base = (char *)iov[i].iov_base + done;
				batch[n].iov_len = iov[i].iov_len - done;
			}
		}
		assert(n > 0 && batch[0].iov_len > 0); /* never a call that cannot make progress */
		ssize_t w = pwritev(rf(f)->fd, batch, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO; /* no progress on a non-empty write: should not happen on a regular file */
		off += (uint64_t)w;
		size_t left = (size_t)w;
		while (left > 0) {
			size_t avail = iov[idx].iov_len - done;
			if (left >= avail) {
				left -= avail;
				idx++;
				done = 0;
			} else {
				done += left;
				left = 0;
			}
		}
	}
}

static ssize_t real_pread(struct pio *p, struct pio_file *f, void *buf, size_t len, uint64_t off)
{
	(void)p;
	size_t got = 0;
	while (got < len) {
		if (off + got > (uint64_t)INT64_MAX)
			break; /* beyond any possible end of file */
		ssize_t r = pread(rf(f)->fd, (char *)buf + got, len - got, (off_t)(off + got));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static int real_datasync(struct pio *p, struct pio_file *f)
{
	(void)p;
	int r;
	do
		r = fdatasync(rf(f)->fd);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int real_truncate(struct pio *p, struct pio_file *f, uint64_t size)
{
	(void)p;
	if (size > (uint64_t)INT64_MAX)
		return -EFBIG;
	int r;
	do
		r = ftruncate(rf(f)->fd, (off_t)size);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int real_size(struct pio *p, struct pio_file *f, uint64_t *out)
{
	(void)p;
	struct stat st;
	if (fstat(rf(f)->fd, &st) < 0)
		return -errno;
	*out = (uint64_t)st.st_size;
	return 0;
}

static int real_fd(struct pio *p, struct pio_file *f)
{
	(void)p;
	return rf(f)->fd;
}

static int real_rename(struct pio *p, const char *from, const char *to)
{
	(void)p;
	return rename(from, to) < 0 ? -errno : 0;
}

static int real_unlink(struct pio *p, const char *path)
{
	(void)p;
	return unlink(path) < 0 ? -errno : 0;
}

static int real_syncdir(struct pio *p, const char *path);

/*
 * fsyncs the directory holding `path` (a writable copy, restored before returning): POSIX makes an entry
 * made or removed there durable only through it.
 */
static int sync_parent(char *path)
{
	char *slash = strrchr(path, '/');
	if (slash == NULL)
		return real_syncdir(NULL, ".");
	if (slash == path)
		return real_syncdir(NULL, "/");
	*slash = '\0';
	int r = real_syncdir(NULL, path);
	*slash = '/';
	return r;
}

/* mkdir(2) one directory, its entry made durable (sync_parent); 0 if it already exists as a directory. */
static int mkdir_one(char *path)
{
	if (mkdir(path, 0755) == 0)
		return sync_parent(path);
	int err = errno;
	if (err == EEXIST) {
		struct stat st;
		if (stat(path, &st) < 0)
			return -errno;
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	}
	return -err;
}

static int real_mkdir(struct pio *p, const char *path)
{
	(void)p;
	if (!path || !*path)
		return -ENOENT;
	char *buf = strdup(path);
	if (!buf)
		return -ENOMEM;
	int r = 0;
	/* Make every proper prefix ending before a '/', then the whole path. */
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/' || s[-1] == '/')
			continue;
		*s = '\0';
		r = mkdir_one(buf);
		*s = '/';
		if (r < 0)
			goto out;
	}
	r = mkdir_one(buf);
out:
	free(buf);
	return r;
}

static int real_rmdir(struct pio *p, const char *path)
{
	(void)p;
	if (rmdir(path) < 0)
		return -errno;
	char *buf = strdup(path); /* the removal is durable once the parent is synced */
	if (!buf)
		return -ENOMEM;
	int r = sync_parent(buf);
	free(buf);
	return r;
}

static int real_syncdir(struct pio *p, const char *path)
{
	(void)p;
	int fd;
	do
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -errno;
	int r;
	do
		r = fsync(fd);
	while (r < 0 && errno == EINTR);
	int err = r < 0 ? errno : 0;
	close(fd);
	return -err;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int real_list(struct pio *p, const char *dir, char ***names, size_t *count)
{
	(void)p;
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	size_t n = 0, cap = 16;
	char **v = malloc(cap * sizeof(*v));
	int err = 0;
	if (!v) {
		err = ENOMEM;
		goto fail;
	}
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			err = errno;
			if (err)
				goto fail;
			break;
		}
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (n == cap) {
			char **nv = realloc(v, 2 * cap * sizeof(*v));
			if (!nv) {
				err = ENOMEM;
				goto fail;
			}
			v = nv;
			cap *= 2;
		}
		v[n] = strdup(e->d_name);
		if (!v[n]) {
			err = ENOMEM;
			goto fail;
		}
		n++;
	}
	closedir(d);
	qsort(v, n, sizeof(*v), cmp_names);
	*names = v;
	*count = n;
	return 0;
fail:
	closedir(d);
	pio_list_free(v, n);
	return -err;
}

static void real_destroy(struct pio *p)
{
	free(p);
}

static const struct pio_ops real_ops = {
	.open = real_open,
	.close = real_close,
	.pwritev = real_pwritev,
	.pread = real_pread,
	.datasync = real_datasync,
	.truncate = real_truncate,
	.size = real_size,
	.fd = real_fd,
	.rename = real_rename,
	.unlink = real_unlink,
	.mkdir = real_mkdir,
	.rmdir = real_rmdir,
	.syncdir = real_syncdir,
	.list = real_list,
	.destroy = real_destroy,
};

struct pio *pio_real_new(void)
{
	struct pio *p = malloc(sizeof(*p));
	if (!p)
		return NULL;
	p->ops = &real_ops;
	return p;
}

void pio_list_free(char **names, size_t count)
{
	if (!names)
		return;
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}
