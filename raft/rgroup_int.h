/*
 * rgroup_int.h — the internal header of the rgroup module's files: raft/rgroup.c (the raft_step driver:
 * carrying out an update, settling persistence reports and applying, opening and closing, receiving,
 * ticking, submitting, membership changes and leadership transfer), rgroup_io.c (the log and the wire: plog
 * appends and their completions, the entries of an update persisted, messages encoded and sent) and
 * rgroup_snap.c (snapshots: taking one, sending it, installing one from the leader with the out-of-band
 * fetch of its retained records, serving those fetches, and reconciling the log with the snapshot at
 * open). It holds what they share: struct rgroup and the structs it points to, and the functions one file
 * calls in another, all named rgroup__ (the rest of each file is static). Nothing outside raft/rgroup*.c
 * includes it; the module's interface is raft/rgroup.h.
 *
 * Ownership: rgroup.c creates and frees the group and is the only caller of raft_step (rgroup__do_step,
 * and the RAFT_SUBMIT of submit_entry); rgroup_io.c keeps the list of appends in flight and advances the
 * durable index as they complete (opening and an install's reset set it too); rgroup_snap.c keeps the
 * persisted snapshot (have_snap, snap, wire), the history of configuration entries (hist, which applying
 * and opening add to) and the install in progress (inst).
 */
#ifndef GALGO_RGROUP_INT_H
#define GALGO_RGROUP_INT_H

#include "raft/rgroup.h"

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "partition/plog.h"
#include "raft/rmsg.h"
#include "raft/rsnap.h"

/* One plog append in flight. */
struct pending {
	struct plog_append_req req;
	struct rgroup *g; /* NULL once the group is closed: the callback then only frees this */
	uint64_t term;
	struct pending *prev, *next;
};

/* A committed configuration waiting to be stepped back as RAFT_CONFIGURATION. */
struct conf_event {
	uint64_t index;
	struct raft_configuration conf;
};

/* A configuration entry applied (or loaded as applied): a snapshot takes the last one at or below it. */
struct conf_rec {
	uint64_t index;
	uint8_t *buf;
	uint32_t len;
};

/* An uncommitted entry this leader submitted, for max_pending_bytes. */
struct pend_bytes {
	uint64_t index, term, len;
};

struct peer {
	uint64_t id;
	char *address; /* stable for the group's lifetime: libraft is given these pointers */
};

struct rgroup {
	struct raft raft;
	uint64_t stale_reject_to; /* while a step handles an AppendEntries of an older term: its sender */
	bool raft_open;
	struct rgroup_config cfg;
	char *address;
	struct rgroup_env env;
	struct flusher_item item; /* deferred persistence reports */
	struct pending *pending;
	uint64_t durable, durable_term;
	uint64_t applied;
	int failed;
	int depth;   /* > 0 while a step or settle runs: settle is then left to the outermost call */
	bool in_cb;  /* inside an owner callback: reentrant calls are refused */
	struct peer *peers;
	size_t n_peers;
	uint8_t *buf;
	size_t buf_cap;
	struct conf_event *confs;
	size_t n_confs, cap_confs;
	uint64_t stale_rejections;
	uint64_t lost_peer;        /* the follower whose stale rejections are being counted */
	unsigned lost_count;       /* consecutive stale rejections from it that said its log is shorter */
	uint64_t lost_transfers;
	/* Snapshots. */
	bool have_snap;
	struct rsnap snap;        /* the persisted snapshot */
	uint8_t *wire;            /* its InstallSnapshot data (WIRE_PREFIX + owner data) */
	size_t wire_len;
	struct conf_rec *hist;
	size_t n_hist, cap_hist;
	struct {
		bool active;
		struct raft_snapshot_metadata meta; /* its configuration is ours until PERSISTED_SNAPSHOT */
		uint64_t keep_from, next_offset;
		uint8_t *data;
		size_t data_len;
		bool reset;         /* the log was reset to take the fetched records */
		uint64_t next;      /* next index to fetch */
		uint64_t source;    /* who sent the InstallSnapshot */
		uint64_t deadline;  /* when to ask again */
	} inst;
	struct pend_bytes *pb;
	size_t n_pb, cap_pb;
	uint64_t installs, fetched, served, max_message;
	bool recovering;          /* cfg.recovering until caught up (recovery_check) */
	bool no_campaign;         /* rgroup_set_campaign(false) */
	uint64_t refused_votes;
};

/* ---- The driver (rgroup.c) ---- */

/* Milliseconds of the environment's clock. */
uint64_t rgroup__now(const struct rgroup *g);
/* Stops the group with rv (-EIO if rv is not negative) unless it already failed; returns the failure. */
int rgroup__fail(struct rgroup *g, int rv);
/* Maps a libraft error code to a negative errno. */
int rgroup__raft_errno(int rv);
/* Remembers the address of every server of c (libraft is given stable pointers to them). */
void rgroup__learn_peers(struct rgroup *g, const struct raft_configuration *c);
/* 0, -EBUSY from within an owner callback, or the failure: the check at every entry point. */
int rgroup__enter(const struct rgroup *g);
/* Steps one event and carries out its update. Returns 0 or a negative errno (libraft's error mapped). */
int rgroup__do_step(struct rgroup *g, struct raft_event *ev);
/* Reports persisted entries, feeds back configurations and applies, in the outermost call only. */
void rgroup__settle(struct rgroup *g);

/* ---- The log and the wire (rgroup_io.c) ---- */

/* Grows g->buf, the scratch buffer of outgoing messages, to at least n bytes. */
int rgroup__reserve(struct rgroup *g, size_t n);
/* Frees each distinct batch of an entries array once (the array itself belongs to libraft). */
void rgroup__free_batches(struct raft_entry *entries, unsigned n);
/* Appends one entry to the plog; its completion advances g->durable and defers a settle. */
int rgroup__append_entry(struct rgroup *g, uint64_t index, uint64_t term, uint8_t type, const void *payload,
			 uint32_t length);
/* Step 2 of an update (rgroup.c's header comment). Always frees the batches. */
int rgroup__persist_entries(struct rgroup *g, uint64_t index, struct raft_entry *entries, unsigned n);
/* Hands encoded bytes to env.send, counting the largest message. */
void rgroup__send_bytes(struct rgroup *g, uint64_t to, const void *buf, size_t len);
/* Step 3 of an update: encodes one of libraft's messages (AppendEntries filled from the plog) and sends it. */
void rgroup__send_message(struct rgroup *g, const struct raft_message *m);

/* ---- Snapshots and installs (rgroup_snap.c) ---- */

/* Whether an InstallSnapshot's data is a snapshot as rgroup_snap.c wraps it, for a snapshot at last_index. */
bool rgroup__wire_ok(const struct raft_buffer *data, uint64_t last_index);
/* Sends libraft's InstallSnapshot m with the configuration and data of the persisted snapshot. */
void rgroup__send_snapshot(struct rgroup *g, const struct raft_message *m);
/* Asks the leader (or the sender of the InstallSnapshot) for the next records of the install. */
void rgroup__send_fetch(struct rgroup *g);
/* Frees the install in progress, if any. */
void rgroup__install_free(struct rgroup *g);
/* RAFT_UPDATE_SNAPSHOT: starts an install; meta's configuration and the chunk become the group's. */
void rgroup__install_start(struct rgroup *g, struct raft_snapshot_metadata *meta, struct raft_buffer chunk);
/* A FetchReply while installing: appends the records that continue the fetched range. */
int rgroup__install_records(struct rgroup *g, const struct rmsg_fetch *f);
/* Completes the install once every fetched record is durable (called by rgroup__settle). */
int rgroup__install_progress(struct rgroup *g);
/* A Fetch from an installing replica: served from the log while this replica leads. */
void rgroup__serve_fetch(struct rgroup *g, uint64_t from, const struct rmsg_fetch *f);
/* Remembers a configuration entry (index order; a later one replaces any at or above its index). */
int rgroup__hist_add(struct rgroup *g, uint64_t index, const void *buf, uint32_t len);
/* Makes s the group's snapshot in memory (it is already on disk); takes its buffers. */
int rgroup__snap_adopt(struct rgroup *g, struct rsnap *s);
/* At open: makes the log and the persisted snapshot agree (an interrupted install is undone). */
int rgroup__reconcile(struct rgroup *g);

#endif /* GALGO_RGROUP_INT_H */
