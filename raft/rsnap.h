/*
 * rsnap — the durable snapshot of one Raft group: a small file naming the index and term the owner's state
 * was captured at, the configuration in force there, where the log is kept from, and the owner's opaque
 * data (a partition's manifest, the metadata group's serialized state).
 *
 * The file is `<dir>/snapshot`, written crash-atomically through pio: a temporary file
 * `<dir>/snapshot.tmp` is written and fdatasync'd, renamed over the snapshot and the directory synced, so a
 * power loss at any point leaves the previous snapshot or the new one. The byte format is specified at the
 * top of rsnap.c.
 */
#ifndef GALGO_RSNAP_H
#define GALGO_RSNAP_H

#include <stddef.h>
#include <stdint.h>

#include "partition/pio.h"

#define RSNAP_FILE "snapshot"
#define RSNAP_MAX_DATA (64u << 20)

struct rsnap {
	uint64_t group;
	uint64_t index, term;     /* the last entry the snapshot covers */
	uint64_t conf_index;      /* index of the configuration entry in force at `index` */
	uint64_t keep_from;       /* the log keeps entries from here on (≤ index + 1) */
	uint64_t next_offset;     /* the log's offset after `index` (where a log emptied by an install resumes) */
	uint8_t *conf;            /* libraft's encoding of that configuration (raft_configuration_encode) */
	uint32_t conf_len;
	uint8_t *data;            /* the owner's data */
	uint32_t data_len;
};

/* Writes s as the group's snapshot, durably and atomically (see above). Returns 0 or a negative errno. */
int rsnap_write(struct pio *pio, const char *dir, const struct rsnap *s);

/*
 * Reads the group's snapshot (malloc'd conf and data, freed by rsnap_free). Returns 0, -ENOENT when there
 * is none, or -EBADMSG when the file fails its checks (or names another group).
 */
int rsnap_read(struct pio *pio, const char *dir, uint64_t group, struct rsnap *out);

void rsnap_free(struct rsnap *s);

#endif /* GALGO_RSNAP_H */
