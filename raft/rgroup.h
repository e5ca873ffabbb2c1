/*
 * rgroup — one replica of one Raft group, driven through libraft's event API (raft_step, libraft 0.22.1).
 *
 * The group's Raft log IS its partition log (partition/plog.h): entry i of the Raft log is the record with
 * Raft index i, whose envelope carries the entry's term and type. The group's durable term and vote live in
 * the node's rmeta (raft/rmeta.h). Messages to the other replicas leave as bytes (raft/rmsg.h) through the
 * environment's send function; whatever carries them to the other nodes is not this module's business, nor
 * is what the entries mean: payloads are opaque (Iggy batches for a partition, commands for the metadata
 * group) and committed entries are handed to the environment's apply function in log order.
 *
 * Everything runs on the loop that owns the plog, rmeta and flusher. There are no timers inside: the owner
 * calls rgroup_tick when its clock reaches rgroup_timeout(), and feeds received messages to rgroup_receive.
 * Persistence completions come from the plog's append callbacks and are reported to Raft on the loop (via
 * the flusher's deferred callbacks).
 *
 * Durability: an entry counts as persisted (towards commitment, and in a follower's acknowledgement) when
 * its plog append completes, which for PLOG_DURABILITY_FSYNC means after the fdatasync that covers it.
 * With the other policies an acknowledgement means "in a quorum's memory", not on their disks.
 *
 * Failures: libraft 0.22.1 has no way to be told about a failed write. When a term/vote write, a log
 * append or a log truncation fails, the group stops (rgroup_failed() returns the error, every call returns
 * it, nothing more is sent) and must be closed and reopened from disk by its owner.
 *
 * Snapshots. The owner captures its state through an applied index and calls rgroup_snapshot, which
 * persists it (raft/rsnap.h) and tells libraft the log is kept from keep_from; the owner may then delete
 * entries below keep_from (plog_retain / plog_drop_segments with safe_index keep_from - 1). A follower too
 * far behind gets InstallSnapshot: it fetches the records [keep_from..index] from the leader out of band,
 * in bounded chunks, into its own log (reset to start there), and completes the install once they are
 * durable; env.restore then hands the owner the snapshot's data. See rgroup.c for the crash argument.
 *
 * Membership: rgroup_add (a standby that replicates but does not vote), rgroup_promote (to voter, after
 * libraft's catch-up rounds), rgroup_remove, one change at a time; rgroup_transfer moves leadership.
 */
#ifndef GALGO_RGROUP_H
#define GALGO_RGROUP_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "partition/flusher.h"
#include "partition/plog.h"
#include "raft/rmeta.h"

struct rgroup;

/* A committed entry, as handed to the apply function. */
struct rgroup_entry {
	uint64_t index;
	uint64_t term;
	uint8_t type;           /* enum record_type: the group's command type, RECORD_BARRIER or RECORD_CHANGE */
	const void *payload;    /* valid during the call only; NULL with config.apply_envelopes (see there) */
	uint32_t length;
	uint64_t base_offset;   /* the stored envelope's base_offset and message_count (partition/record.h) */
	uint32_t message_count;
};

struct rgroup_env {
	void *ud;
	/* Milliseconds of a monotonic clock (the clock of every raft_step event and of rgroup_timeout). */
	uint64_t (*now_ms)(void *ud);
	/*
	 * Sends an encoded message to node `to`. The bytes are valid during the call only. Delivery is best
	 * effort: Raft retries, so a full queue or a lost connection may drop the message (return non-zero).
	 */
	int (*send)(void *ud, uint64_t to, const void *buf, size_t len);
	/* A committed entry, in index order, once per entry from config.applied_index + 1. */
	void (*apply)(void *ud, const struct rgroup_entry *e);
	/* Optional: the replica's Raft state changed (RAFT_FOLLOWER, RAFT_CANDIDATE, RAFT_LEADER). */
	void (*state)(void *ud, int state, uint64_t term);
	/* The group's log, the node's term-and-vote file and the loop's flusher; all must outlive the group. */
	struct plog *log;
	struct rmeta *meta;
	struct flusher *fl;
	/* The disk of config.snapshot_dir (required with it). */
	struct pio *pio;
	/*
	 * Optional: the owner's state must become the snapshot's `data`, which captured it through `index`;
	 * apply continues at index + 1. Called when an install from the leader completes, and at open when
	 * config.applied_index is below the persisted snapshot. The log then holds [plog_first_index ..].
	 */
	void (*restore)(void *ud, uint64_t index, const void *data, size_t len);
	/* Optional: a recovering replica (config.recovering) caught up: it votes again from here on. */
	void (*recovered)(void *ud, uint64_t commit_index, uint64_t term);
};

struct rgroup_config {
	uint64_t group_id;            /* non-zero */
	uint64_t node_id;             /* this replica's server id, non-zero */
	const char *address;          /* this replica's address (informational for libraft) */
	unsigned election_timeout_ms; /* default 1000; libraft randomizes it in [1x, 2x) */
	unsigned heartbeat_timeout_ms; /* default 100 */
	bool no_pre_vote;             /* pre-vote (dissertation §9.6) is on unless this is set */
	unsigned seed;                /* for libraft's election timer randomization */
	unsigned max_inflight_entries; /* un-acknowledged entries per follower and per AppendEntries (default 32) */
	uint32_t max_pending_entries; /* uncommitted entries the leader accepts before -EAGAIN (default 64) */
	uint32_t max_entry_bytes;     /* largest payload accepted by rgroup_submit (default 1 MiB) */
	uint8_t command_type;         /* record type of command entries: RECORD_COMMAND (default) or RECORD_MESSAGES */
	uint64_t applied_index;       /* entries up to here were already applied by the owner; apply resumes after */
	/*
	 * The group's initial configuration, used when the log is empty and the persisted term is at most 1:
	 * entry 1 becomes a RAFT_CHANGE entry of term 1 holding it. Every replica must be given the same one.
	 */
	const struct raft_configuration *bootstrap;
	/*
	 * Directory of the group's snapshot file (created if missing; env.pio). NULL: no snapshots, and a log
	 * whose first index is not 1 is refused with -ENOTSUP.
	 */
	const char *snapshot_dir;
	/*
	 * Apply hands over only what the stored envelopes say (index, term, type, length, base offset and
	 * message count), with payload NULL, for every entry but configuration changes: the owner of a
	 * partition needs no more, and the batches are not read back from the log.
	 */
	bool apply_envelopes;
	uint64_t max_pending_bytes;   /* uncommitted payload bytes the leader accepts before -EAGAIN (default 64 MiB) */
	uint32_t max_message_bytes;   /* record bytes per AppendEntries or FetchReply, at least one record (1 MiB) */
	unsigned install_snapshot_timeout_ms; /* leader re-sends InstallSnapshot after this (default 10 x election) */
	/*
	 * This replica lost records it may have acknowledged (its log was found damaged and set aside; the
	 * owner reopened it empty). The protocol-aware recovery rule: it grants no vote, and asks for none
	 * (RequestVote, pre-vote included, is dropped both ways), until it has caught up with a leader that
	 * has committed an entry of its own term: its commit index then covers every entry committed before,
	 * and this replica durably holds the log up to it. Acknowledging appends meanwhile is truthful (it acks
	 * only what it now holds), so it still helps the leader commit.
	 */
	bool recovering;
};

/* What a replica knows, for the owner, metrics and tests. */
struct rgroup_status {
	int state;              /* enum raft_state */
	uint64_t term;
	uint64_t voted_for;
	uint64_t leader_id;     /* 0 if unknown */
	uint64_t commit_index;
	uint64_t applied_index;
	uint64_t last_index;    /* last index in the log (written, maybe not durable) */
	uint64_t durable_index; /* last index whose append completed */
	uint64_t last_stored;   /* last index reported persisted to libraft */
	int failed;             /* 0 or the error that stopped the group */
	uint64_t stale_rejections; /* stale AppendEntries rejections dropped (see rgroup_receive in rgroup.c) */
	uint64_t snapshot_index;   /* index of the persisted snapshot (0: none) */
	bool installing;           /* an InstallSnapshot is being completed (records being fetched) */
	uint64_t installs;         /* installs completed since open */
	uint64_t fetched_records;  /* records fetched out of band since open */
	uint64_t served_records;   /* records served to fetching replicas since open */
	uint64_t max_message;      /* largest message sent since open, bytes */
	bool recovering;           /* rgroup_config.recovering and not caught up yet */
	uint64_t refused_votes;    /* vote requests dropped while recovering */
};

/* Fills defaults for the optional fields (timeouts, caps, command type). */
void rgroup_config_default(struct rgroup_config *c);

/*
 * Opens a replica on its (already opened) plog: reads the term and vote from rmeta and the entries' terms
 * from the log, bootstraps an empty log if the config says so, and starts libraft (RAFT_START). A log whose
 * first index is not 1 needs a snapshot to start from and is refused with -ENOTSUP in this phase.
 * Returns 0 or a negative errno.
 */
int rgroup_open(const struct rgroup_config *cfg, const struct rgroup_env *env, struct rgroup **out);

/*
 * Closes the replica. Appends still pending in the plog are left to complete there (their callbacks then
 * only free their requests), so the plog may be closed after this, never before.
 */
void rgroup_close(struct rgroup *g);

/* Feeds a message received from node `from`. Returns 0, -EBADMSG for bytes rmsg rejects, or the failure. */
int rgroup_receive(struct rgroup *g, uint64_t from, const void *buf, size_t len);

/* Absolute time (env clock, ms) at which rgroup_tick must be called next. */
uint64_t rgroup_timeout(const struct rgroup *g);

/* Fires libraft's timer if the clock has reached rgroup_timeout(); otherwise does nothing. */
int rgroup_tick(struct rgroup *g);

/*
 * Leader only: appends a command entry holding a copy of payload and replicates it. *index (may be NULL) is
 * the entry's Raft index; its outcome is known when apply reports that index (with this term) or when
 * another entry takes the index. Returns 0, -EPERM when this replica is not the leader, -EAGAIN when
 * max_pending_entries are uncommitted, -EMSGSIZE above max_entry_bytes, or the failure. For a group whose
 * command type is RECORD_MESSAGES, the caller stamps the batch (plog_stamp) immediately before this call.
 */
int rgroup_submit(struct rgroup *g, const void *payload, uint32_t length, uint64_t *index);

/*
 * Whether this replica may campaign (default yes). When not, it asks for no vote (its RequestVote and
 * pre-vote messages are dropped, so it never becomes leader; a pre-vote candidate bumps no term) and
 * ignores a leader's TimeoutNow (a transfer to it times out), but still grants votes and follows. For a
 * node that must not lead: one whose clock is not trusted, or one being drained.
 */
void rgroup_set_campaign(struct rgroup *g, bool allowed);

/*
 * Leader only: appends an empty barrier entry (RECORD_BARRIER, 8 zero bytes) of the current term, the
 * "no-op" a leader commits at the start of its term (dissertation §6.4). libraft appends one itself only
 * when the new leader's log is not fully committed; once one of the leader's own term commits, no entry
 * of an earlier term that is not committed yet ever can be. Returns 0, -EPERM, -EBUSY (called from within
 * a step) or the failure.
 */
int rgroup_barrier(struct rgroup *g);

void rgroup_status(const struct rgroup *g, struct rgroup_status *st);

/* 0, or the error that stopped the group. */
int rgroup_failed(const struct rgroup *g);

/*
 * Persists a snapshot of the owner's state through `index` (≤ the applied index, and durable in the log),
 * captured by data/len (opaque here, ≤ 64 MiB), and lets libraft forget the entries below keep_from
 * (≤ index + 1, ≥ the log's first index). Only after it returns 0 may the owner delete entries below
 * keep_from. Returns 0, -EINVAL (bad arguments, or not above the last snapshot), -ENOTSUP without
 * snapshot_dir, -EBUSY while an install runs, or the failure (the group stops on a write error).
 */
int rgroup_snapshot(struct rgroup *g, uint64_t index, uint64_t keep_from, const void *data, size_t len);

/*
 * Membership changes (leader only; each submits a configuration entry and returns once it is in the log;
 * the change takes effect at once and is final when committed). One change at a time: -EBUSY while the
 * previous one is uncommitted. -EPERM when not the leader.
 *   rgroup_add:     a new member as a standby (replicates, does not vote); -EEXIST if already a member.
 *   rgroup_promote: a standby to voter. The first calls start libraft's catch-up rounds and return
 *                   -EINPROGRESS; call again (e.g. at every tick) until it returns 0. -ENOENT if not a member,
 *                   -EALREADY if a voter.
 *   rgroup_remove:  any member, the leader itself included (it steps down once the change commits).
 * rgroup_transfer: leadership to `id` (0: let libraft pick the most up-to-date voter); submits are refused
 * with -EPERM while it runs. -ENOENT for an id that is not a voter.
 */
int rgroup_add(struct rgroup *g, uint64_t id, const char *address);
int rgroup_promote(struct rgroup *g, uint64_t id);
int rgroup_remove(struct rgroup *g, uint64_t id);
int rgroup_transfer(struct rgroup *g, uint64_t id);

/* A member of the configuration this replica follows (the latest in its log, maybe uncommitted). */
struct rgroup_member {
	uint64_t id;
	int role;              /* RAFT_VOTER, RAFT_STANDBY or RAFT_SPARE */
	const char *address;   /* valid until the next call into the group */
};

/* Fills up to cap members and returns how many there are. */
size_t rgroup_members(const struct rgroup *g, struct rgroup_member *out, size_t cap);

/* Builds a configuration of n voters (ids[i], addresses[i]) for rgroup_config.bootstrap. */
int rgroup_configuration(struct raft_configuration *conf, size_t n, const uint64_t *ids,
			 const char *const *addresses);

#endif /* GALGO_RGROUP_H */
