/*
 * piosim — the simulated pio backend for tests: an in-memory file system with a durable and a volatile
 * view, simulated power loss and injected errors.
 *
 * Model. Every file (inode) has two contents: `volatile` (what reads see) and `durable` (what survives a
 * power loss). pio_pwritev and pio_truncate change the volatile content; pio_datasync copies volatile to
 * durable. The namespace has two views too: creating, renaming and unlinking change the volatile
 * namespace; pio_syncdir(dir) makes the volatile state of every entry in `dir` durable (an entry that was
 * created appears, a renamed one moves, an unlinked one disappears, in the durable view). Directories made
 * by pio_mkdir are durable at once.
 *
 * Power loss (pio_sim_power_loss) replaces the volatile state by the durable one: every file keeps only
 * its durable content and the namespace only its durable entries. With `tear` nonzero, the last
 * pio_pwritev that was not yet made durable is partly kept: its first (tear % length) bytes are applied on
 * top of that file's durable content (if the file is still in the durable namespace), as a torn sector
 * write would leave it. All handles must be closed before a power loss.
 *
 * Call counting and faults. Every operation except close, fd, size and destroy is a "call" and is counted
 * in order; the count is pio_sim_calls(). Calls are of two kinds: mutating (open with PIO_CREATE,
 * pwritev, datasync, truncate, rename, unlink, mkdir, rmdir, syncdir) and reading (open without
 * PIO_CREATE, pread, list). Faults count mutating calls only:
 *   - pio_sim_fail_nth(p, n, err): the n-th mutating call from now (1 = the next one) fails with -err,
 *     changing nothing; calls after it succeed again;
 *   - pio_sim_crash_after(p, n): the first n mutating calls from now succeed; every call after that
 *     (mutating or reading, but not close) fails with -EIO, as if the machine had died. A power loss
 *     ends the crashed state.
 *   - pio_sim_mutations(p): how many mutating calls have been made in total.
 *
 * The backend is thread-safe (one mutex), so it also works under the flusher's thread pool, though
 * deterministic tests run the flusher inline.
 */
#ifndef GALGO_PIOSIM_H
#define GALGO_PIOSIM_H

#include "partition/pio.h"

struct pio *pio_sim_new(void);

void pio_sim_fail_nth(struct pio *p, uint64_t n, int err);
void pio_sim_crash_after(struct pio *p, uint64_t n);
uint64_t pio_sim_calls(struct pio *p);
uint64_t pio_sim_mutations(struct pio *p);

/* Simulates power loss as described above. Returns -EBUSY (and does nothing) if a file is still open. */
int pio_sim_power_loss(struct pio *p, uint32_t tear);

/*
 * Test helpers that bypass the model: flip one byte of a file's volatile AND durable content (simulated
 * media damage), and read a file's durable size. Both return -ENOENT if there is no such file.
 */
int pio_sim_corrupt(struct pio *p, const char *path, uint64_t off, uint8_t xor_mask);
int pio_sim_durable_size(struct pio *p, const char *path, uint64_t *out);

#endif /* GALGO_PIOSIM_H */
