/*
 * rmeta — the durable Raft term and vote of every Raft group on a node, in one small file.
 *
 * Raft requires a server to persist currentTerm and votedFor on stable storage before it responds to any
 * RPC or sends any message that depends on them (Raft dissertation, Figure 3.1, "Persistent state on all
 * servers ... updated on stable storage before responding to RPCs"). rmeta_set therefore writes and
 * fdatasyncs before it returns; the caller sends nothing of the same step before that.
 *
 * The file is `<dir>/raft.meta`; its byte format is specified at the top of rmeta.c. Each group has a
 * fixed pair of copies written in place, one after the other, so a write torn by a power loss damages only
 * the copy being written, and damage to one copy is survived while damage to both is detected.
 *
 * A node has one rmeta shared by all its groups. It belongs to one event loop and is used only there.
 */
#ifndef GALGO_RMETA_H
#define GALGO_RMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "partition/pio.h"

struct rmeta;

/* The file's name inside the directory given to rmeta_open. */
#define RMETA_FILE "raft.meta"

/*
 * Opens (creating it and `dir` if missing) the node's term-and-vote file and loads every group's record.
 * Returns 0, -EBADMSG when the file holds damage that a torn write cannot explain (both copies of a group
 * unreadable, two different groups in one pair, one group in two pairs), or another negative errno.
 */
int rmeta_open(struct pio *pio, const char *dir, struct rmeta **out);

/* One damaged pair found by rmeta_open_ex. */
struct rmeta_damage {
	uint32_t pair;        /* the pair's number: its copies are at bytes 1024 pair and 1024 pair + 512 */
	const char *what;     /* "both copies unreadable", "two groups in one pair", "a group in two pairs" */
	uint64_t groups[2];   /* the group ids its copies name (0: none readable); unverified when unreadable */
	bool verified[2];     /* whether that copy passed its checks */
};

#define RMETA_MAX_DAMAGE 16

/* What rmeta_open_ex found damaged (at most RMETA_MAX_DAMAGE listed; n counts them all). */
struct rmeta_report {
	size_t n;
	struct rmeta_damage d[RMETA_MAX_DAMAGE];
};

/*
 * rmeta_open, reporting every damaged pair in `rep` (may be NULL). salvage: instead of failing, damaged
 * pairs are zeroed durably (freed) and their groups then have no record: rmeta_get answers -ENOENT for
 * them, which rgroup_open takes as a replica that lost its term and vote (it votes for no one until it
 * has caught up, rgroup_config.recovering). Only an operator decides to salvage (node/cluster.c).
 */
int rmeta_open_ex(struct pio *pio, const char *dir, bool salvage, struct rmeta_report *rep, struct rmeta **out);

/* Closes the file and frees the table. Nothing is pending: every rmeta_set was durable when it returned. */
void rmeta_close(struct rmeta *m);

/*
 * The persisted term and vote of a group. Returns 0, or -ENOENT (and term = voted_for = 0) when nothing was
 * ever recorded for it.
 */
int rmeta_get(const struct rmeta *m, uint64_t group, uint64_t *term, uint64_t *voted_for);

/*
 * Records a group's term and vote durably (a 64-byte record written to both copies, each followed by an
 * fdatasync) and returns 0 once they are on stable storage, or a negative errno: rmeta_get then still
 * returns the previous value, and a restart finds the previous or the new one. Writing the value already
 * recorded does no I/O. group must be non-zero.
 */
int rmeta_set(struct rmeta *m, uint64_t group, uint64_t term, uint64_t voted_for);

/* Forgets a group (its group was deleted): both copies of its pair are zeroed durably and the pair reused. */
int rmeta_drop(struct rmeta *m, uint64_t group);

/* How many groups have a record. */
size_t rmeta_count(const struct rmeta *m);

/* How many pairs rmeta_open found with differing copies (an interrupted write or damage) and rewrote. */
size_t rmeta_repaired(const struct rmeta *m);

#endif /* GALGO_RMETA_H */
