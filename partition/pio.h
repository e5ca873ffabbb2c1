/*
 * pio — the file I/O interface that every byte of partition storage goes through.
 *
 * Storage code never calls open(2), pwrite(2) or fdatasync(2) itself; it calls these functions on a
 * `struct pio` backend. Two backends exist:
 *
 *   - the real one (pio_real_new), a thin layer over POSIX calls;
 *   - the simulated one (pio_sim_new, partition/piosim.h), an in-memory file system that keeps a durable
 *     and a volatile view of every file and directory, can simulate power loss (drop all that was not
 *     flushed, optionally tearing the last write) and can fail the Nth call with an injected error.
 *
 * Conventions: functions return 0 (or a non-negative count) on success and a negative errno on failure.
 * Paths are plain strings interpreted by the backend; directories are separated by '/'.
 *
 * Durability rules, which the simulated backend enforces strictly and which the real disk may or may
 * not be kinder about:
 *   - data written with pio_pwritev and size changes made by pio_truncate become durable when
 *     pio_datasync on that file returns 0;
 *   - that a file exists (creation), its name (rename) and its removal (unlink) become durable when
 *     pio_syncdir on its parent directory returns 0;
 *   - directories made with pio_mkdir are durable at once: the real backend fsyncs the parent of every
 *     directory it creates; the simulation treats mkdir as durable.
 *
 * Thread safety: a backend may be called from several threads at once (the flusher runs pio_datasync on
 * libuv's thread pool while the loop thread writes), but one pio_file is never used by two threads at
 * once except for pio_datasync concurrently with pio_pwritev/pio_pread, which both backends allow.
 */
#ifndef GALGO_PIO_H
#define GALGO_PIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct pio;
struct pio_file;

/* pio_open flags. */
enum {
	PIO_RDONLY = 0,
	PIO_RDWR = 1 << 0,
	PIO_CREATE = 1 << 1, /* create if missing (implies PIO_RDWR) */
	PIO_EXCL = 1 << 2,   /* with PIO_CREATE: fail with -EEXIST if it exists */
};

/* The operations a backend implements. Users call the pio_* wrappers below, never these directly. */
struct pio_ops {
	int (*open)(struct pio *p, const char *path, int flags, struct pio_file **out);
	void (*close)(struct pio *p, struct pio_file *f);
	int (*pwritev)(struct pio *p, struct pio_file *f, const struct iovec *iov, int iovcnt, uint64_t off);
	ssize_t (*pread)(struct pio *p, struct pio_file *f, void *buf, size_t len, uint64_t off);
	int (*datasync)(struct pio *p, struct pio_file *f);
	int (*truncate)(struct pio *p, struct pio_file *f, uint64_t size);
	int (*size)(struct pio *p, struct pio_file *f, uint64_t *out);
	int (*fd)(struct pio *p, struct pio_file *f);
	int (*rename)(struct pio *p, const char *from, const char *to);
	int (*unlink)(struct pio *p, const char *path);
	int (*mkdir)(struct pio *p, const char *path);
	int (*rmdir)(struct pio *p, const char *path);
	int (*syncdir)(struct pio *p, const char *path);
	int (*list)(struct pio *p, const char *dir, char ***names, size_t *count);
	void (*destroy)(struct pio *p);
};

struct pio {
	const struct pio_ops *ops;
};

/* Opens (and with PIO_CREATE creates) a file. *out is valid until pio_close. */
static inline int pio_open(struct pio *p, const char *path, int flags, struct pio_file **out)
{
	return p->ops->open(p, path, flags, out);
}

/* Closes a file. Never fails from the caller's point of view; it does not flush. */
static inline void pio_close(struct pio *p, struct pio_file *f)
{
	p->ops->close(p, f);
}

/*
 * Writes all iovcnt buffers contiguously at off. Returns 0 when every byte was written, or a negative
 * errno; after an error an unknown prefix of the data may have reached the file.
 */
static inline int pio_pwritev(struct pio *p, struct pio_file *f, const struct iovec *iov, int iovcnt,
			      uint64_t off)
{
	return p->ops->pwritev(p, f, iov, iovcnt, off);
}

/* Reads up to len bytes at off. Returns the byte count (short only at end of file) or a negative errno. */
static inline ssize_t pio_pread(struct pio *p, struct pio_file *f, void *buf, size_t len, uint64_t off)
{
	return p->ops->pread(p, f, buf, len, off);
}

/* Makes the file's data and size durable (fdatasync). */
static inline int pio_datasync(struct pio *p, struct pio_file *f)
{
	return p->ops->datasync(p, f);
}

/* Sets the file's size; the change is durable after pio_datasync. */
static inline int pio_truncate(struct pio *p, struct pio_file *f, uint64_t size)
{
	return p->ops->truncate(p, f, size);
}

/* The file's current (volatile) size. */
static inline int pio_size(struct pio *p, struct pio_file *f, uint64_t *out)
{
	return p->ops->size(p, f, out);
}

/*
 * The operating-system file descriptor behind f, for zero-copy sends (sendfile), or -1 when the backend
 * has none (the simulation). Callers must then copy with pio_pread.
 */
static inline int pio_fd(struct pio *p, struct pio_file *f)
{
	return p->ops->fd(p, f);
}

/* Renames atomically, replacing `to` if it exists. Durable after pio_syncdir of both parents. */
static inline int pio_rename(struct pio *p, const char *from, const char *to)
{
	return p->ops->rename(p, from, to);
}

/* Removes a file. Open handles stay usable until closed (POSIX semantics). */
static inline int pio_unlink(struct pio *p, const char *path)
{
	return p->ops->unlink(p, path);
}

/* Creates a directory and any missing parents; 0 if it already exists. */
static inline int pio_mkdir(struct pio *p, const char *path)
{
	return p->ops->mkdir(p, path);
}

/* Removes an empty directory. */
static inline int pio_rmdir(struct pio *p, const char *path)
{
	return p->ops->rmdir(p, path);
}

/* Makes the directory's entries (creations, renames, removals) durable. */
static inline int pio_syncdir(struct pio *p, const char *path)
{
	return p->ops->syncdir(p, path);
}

/*
 * Lists the names (not paths; no "." or "..") in a directory, sorted by strcmp. On success *names is a
 * malloc'd array of *count malloc'd strings, released with pio_list_free.
 */
static inline int pio_list(struct pio *p, const char *dir, char ***names, size_t *count)
{
	return p->ops->list(p, dir, names, count);
}

void pio_list_free(char **names, size_t count);

/* Destroys the backend. Every file must have been closed. */
static inline void pio_destroy(struct pio *p)
{
	p->ops->destroy(p);
}

/* The real backend: POSIX files under the given paths. */
struct pio *pio_real_new(void);

#endif /* GALGO_PIO_H */
