/*
 * datadir — galgod's data directory and the lock that keeps a second galgod out of it.
 *
 * datadir_open creates the directory and its missing parents, then takes an exclusive flock on
 * <dir>/galgod.lock and writes the process id into that file. Another process that tries the same gets
 * -EBUSY and the message "data directory DIR is locked by pid N". The lock is released by
 * datadir_close, or by the kernel when the process dies, so a crash never leaves a stale lock behind
 * (the file itself stays; its content only tells who holds it).
 */
#ifndef GALGO_DATADIR_H
#define GALGO_DATADIR_H

#include <stddef.h>

#define DATADIR_LOCK_FILE "galgod.lock"

struct datadir;

/*
 * Creates (mkdir -p) and locks the data directory. Returns 0 and sets *out, or a negative errno with a
 * one-line message in errbuf: -EBUSY if another process holds the lock.
 */
int datadir_open(const char *path, struct datadir **out, char *errbuf, size_t errlen);

/* The directory's path as given to datadir_open. */
const char *datadir_path(const struct datadir *d);

/* Releases the lock and frees d (NULL is allowed). */
void datadir_close(struct datadir *d);

/* fsyncs the directory holding `path`, which makes a new, renamed or removed entry there durable. 0 or -errno. */
int datadir_sync_parent(const char *path);

/* Creates a directory and any missing parents (mode 0755); 0 if it already exists. */
int datadir_mkdir_p(const char *path);

#endif /* GALGO_DATADIR_H */
