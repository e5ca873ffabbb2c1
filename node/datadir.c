/*
 * datadir — galgod's data directory and its lock (see datadir.h).
 */
#include "node/datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct datadir {
	char *path;
	int lock_fd;
};

static void datadir_err(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void datadir_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (errbuf == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

int datadir_sync_parent(const char *path)
{
	char *copy = strdup(path);
	if (copy == NULL)
		return -ENOMEM;
	char *slash = strrchr(copy, '/');
	const char *dir = ".";
	if (slash == copy)
		dir = "/";
	else if (slash != NULL) {
		*slash = '\0';
		dir = copy;
	}
	int rc = 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

/* Creates one directory (its entry made durable: the parent is synced); 0 if it exists already as a directory. */
static int datadir_mkdir_one(const char *path)
{
	struct stat st;
	if (mkdir(path, 0755) == 0)
		return datadir_sync_parent(path);
	int err = errno;
	if (err == EEXIST) {
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return 0;
		return -ENOTDIR;
	}
	return -err;
}

int datadir_mkdir_p(const char *path)
{
	if (path == NULL || path[0] == '\0')
		return -EINVAL;
	char *copy = strdup(path);
	if (copy == NULL)
		return -ENOMEM;
	int rc = 0;
	/* Create each ancestor in turn, skipping the root and repeated slashes. */
	for (char *p = copy + 1; *p != '\0'; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		rc = datadir_mkdir_one(copy);
		*p = '/';
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = datadir_mkdir_one(copy);
	free(copy);
	return rc;
}

/* Reads the pid the lock holder wrote. Returns it, or 0 if the file holds none (yet). */
static long datadir_read_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *end;
	long pid = strtol(buf, &end, 10);
	if (end == buf || pid <= 0)
		return 0;
	return pid;
}

int datadir_open(const char *path, struct datadir **out, char *errbuf, size_t errlen)
{
	char *lock_path = NULL;
	int fd = -1, rc;

	*out = NULL;
	rc = datadir_mkdir_p(path);
	if (rc < 0) {
		datadir_err(errbuf, errlen, "cannot create data directory %s: %s", path, strerror(-rc));
		return rc;
	}
	size_t lock_len = strlen(path) + 1 + strlen(DATADIR_LOCK_FILE) + 1;
	lock_path = malloc(lock_len);
	if (lock_path == NULL) {
		datadir_err(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(lock_path, lock_len, "%s/%s", path, DATADIR_LOCK_FILE);
	fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		datadir_err(errbuf, errlen, "cannot open lock file %s: %s", lock_path, strerror(-rc));
		goto fail;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		rc = -errno;
		if (rc != -EWOULDBLOCK) {
			datadir_err(errbuf, errlen, "cannot lock %s: %s", lock_path, strerror(-rc));
			goto fail;
		}
		/* The holder may have taken the lock but not yet written its pid: give it a moment. */
		long pid = 0;
		for (int tries = 0; tries < 20 && pid == 0; tries++) {
			pid = datadir_read_pid(fd);
			if (pid == 0)
				nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
		}
		if (pid != 0)
			datadir_err(errbuf, errlen, "data directory %s is locked by pid %ld", path, pid);
		else
			datadir_err(errbuf, errlen, "data directory %s is locked by another process", path);
		rc = -EBUSY;
		goto fail;
	}

	char pidbuf[32];
	int n = snprintf(pidbuf, sizeof(pidbuf), "%ld\n", (long)getpid());
	errno = 0;
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pidbuf, (size_t)n, 0) != n) {
		rc = errno != 0 ? -errno : -EIO;
		datadir_err(errbuf, errlen, "cannot write lock file %s: %s", lock_path, strerror(-rc));
		goto fail;
	}

	struct datadir *d = calloc(1, sizeof(*d));
	if (d == NULL || (d->path = strdup(path)) == NULL) {
		free(d);
		rc = -ENOMEM;
		datadir_err(errbuf, errlen, "out of memory");
		goto fail;
	}
	d->lock_fd = fd;
	free(lock_path);
	*out = d;
	return 0;

fail:
	if (fd >= 0)
		close(fd);
	free(lock_path);
	return rc;
}

const char *datadir_path(const struct datadir *d)
{
	return d->path;
}

void datadir_close(struct datadir *d)
{
	if (d == NULL)
		return;
	/* Clear the pid while still holding the lock, so the file never names a process that is gone. */
	if (ftruncate(d->lock_fd, 0) < 0) {
		/* Nothing to do: the lock is released below all the same. */
	}
	close(d->lock_fd);
	free(d->path);
	free(d);
}
