/*
 * srv_int.h — the internal header of node/server's rooms (node/server.c lists them): the state they
 * share (struct srv and the types hung on it: sessions, pending replies, partitions, waiters), the
 * constants they agree on, and the functions one room calls in another, all named srv__ (the rest of each
 * room is static). Nothing outside node/server.c and node/srv_*.c includes it, but for the whole-node
 * simulation (tests/sim/test_sim_nodes.c), which reads the rooms' state to check its invariants; the node's
 * interface to main.c and the transports is node/server.h.
 *
 * Ownership: each struct is changed only by the room that owns it (its file's top says which); another
 * room that needs a change asks through that room's srv__ function.
 */
#ifndef GALGO_NODE_SRV_INT_H
#define GALGO_NODE_SRV_INT_H

#include "node/server.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "node/auth.h"
#include "node/cluster.h"
#include "node/dedup.h"
#include "node/log.h"
#include "node/meta.h"
#include "node/metarec.h"
#include "partition/plog.h"
#include "proto/errors.h"
#include "proto/reply.h"
#include "proto/wire.h"

#define TAG "server"
#define SERVER_VERSION "0.9.0"
#define POLL_MAX_BYTES (8u << 20)
#define NO_PARTITION 0xffffffffu
/* Ids remembered per partition at most: ~2.6 MB of window and table each. */
#define DEDUP_WINDOW_MAX 65536u

#define LAT_BUCKETS 9 /* srv__lat_bounds_us */

/* Request counters of one transport kind. */
struct srv_tstats {
	uint64_t requests;                /* frames received */
	uint64_t replies;                 /* replies handed to the transport */
	uint64_t latency_sum_us;
	uint64_t latency_buckets[LAT_BUCKETS]; /* not cumulative */
};

/*
 * A waiter's deadline (srv_deadline.c): `fire` runs once at `at` (ms, srv__mono_ms) unless cancelled first.
 * Zeroed means not registered.
 */
struct srv_dl;
typedef void (*srv_dl_fn)(struct srv *s, struct srv_dl *d);
struct srv_dl {
	uint64_t at, seq;
	uint32_t slot;             /* its place in s->dls + 1; 0 while not registered */
	srv_dl_fn fire;
};
#define SRV_DL_OWNER(d, type, field) ((type *)((char *)(d) - offsetof(type, field)))

/* A send waiting for its entry to commit (leader side). */
struct swait {
	struct swait *next;
	uint64_t index, term;
	struct pending *p;          /* local request, or NULL for a forwarded one */
	uint64_t origin, req_id;    /* forwarded: the node and its request id */
	struct part *pt;
	struct srv_dl dl;
};

/* One partition replica hosted here: its log and its Raft group. */
struct part {
	struct srv *srv;
	uint32_t stream_id, topic_id, pid;
	uint64_t gid;
	struct plog *log;
	struct dedup *dd;
	struct clu_group *g;
	uint64_t committed_next;    /* offset after the last committed message: what polls may read */
	uint64_t last_applied;      /* index of the last entry applied or snapshot restored: only grows */
	uint64_t other_bytes;       /* payload bytes of applied entries that hold no messages (Raft's own) */
	uint64_t transfer_at;       /* ms of the last leadership hand-over to the preferred replica */
	uint64_t leaderless_since;  /* ms since which a leaving replica has known no leader (0: it knows one) */
	bool leaving;               /* the metadata moved this replica away: it closes once removed */
	bool term_barrier;          /* newly elected: an entry of its term is to be committed (srv__part_term_barrier) */
	struct swait *waits, *waits_tail; /* in index order */
};

/* The partition logs of one topic. */
struct tparts {
	uint32_t stream_id, topic_id;
	uint64_t *gids;            /* per partition: its Raft group id, which names its directory */
	uint64_t *reopen_at;       /* per partition: ms when its stopped group is reopened from disk (0: none) */
	struct plog **logs;
	struct dedup **dd;         /* per partition; NULL entries when the topic has no dedup window */
	struct part **pp;          /* per partition; NULL when not hosted here */
	struct fwd **fwds;         /* per partition: the sends forwarded from here for it (what its applies settle) */
	uint32_t n;
	uint32_t rr;
	struct tparts *next;
};

/* The outcome of an applied metadata entry. */
struct mresult {
	uint64_t index, term;
	int rv;                    /* meta_apply's result; -1 for entries that are not commands */
	struct meta_result res;
};

struct mwait;
typedef void (*mdone_fn)(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res);

/*
 * A metadata command on its way: submitted here (we lead) or forwarded to the leader, then waiting for
 * the entry to be applied here, so that the reply reflects this node's own state.
 */
struct mwait {
	struct mwait *next;
	uint8_t *enc;              /* the command's encoding (metarec) */
	size_t enc_len;
	struct meta_cmd c;         /* decoded from enc (its pointers point into enc) */
	struct meta_perms perms;
	uint64_t req_id;
	bool sent;                 /* forwarded, no answer yet */
	bool placed;               /* index and term known: waiting for the apply */
	uint64_t index, term;
	struct srv_dl dl;
	uint64_t retry_at;
	uint64_t admit_by;         /* not taken by a leader by then: refused as never admitted */
	mdone_fn done;
	struct pending *p;
	void (*build)(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res);
	struct wire_buf body;      /* a reply body made before (PAT creation) */
	bool pat;
	bool barrier;              /* no command: done once this node applied the leader's commit index */
	void *arg;
	uint64_t origin, origin_req; /* a forwarded poll's auto-commit: the node to answer and its request id */
};

/* A CreateTopic/CreatePartitions reply waiting for the new partitions' leaders (see srv__topic_leaders_known). */
struct lwait {
	struct lwait *next;
	struct pending *p;
	struct wire_buf body;
	uint32_t stream_id, topic_id;
	struct srv_dl dl;
};

/*
 * A send forwarded to the partition leader (origin side). When this node is a replica of the partition
 * the forward is fenced to the leader's term as seen here (`term`), and its outcome follows from this
 * replica's own log once leadership moves on (srv__fwd_settle): see "A send" in docs/ARCHITECTURE.md.
 */
struct fwd {
	struct fwd *next, *prev;   /* s->fwds: every forward, for replies by request id and retries */
	struct tparts *tp;         /* and its partition's list tp->fwds[partition_id] (NULL: in none) */
	struct fwd *pnext, *pprev;
	uint64_t req_id;
	struct pending *p;
	uint32_t stream_id, topic_id, partition_id;
	struct srv_dl dl;
	bool acked;                /* committed on the leader: waiting for this replica to apply `index` */
	uint64_t index, base;
	uint64_t to;               /* the leader it went to */
	uint64_t term;             /* the term it is fenced to (0: not fenced, this node hosts no replica) */
	uint64_t applied_at;       /* this replica's applied index when it went: the batch is not at or below */
	bool placed;               /* the leader appended it at (index, placed_term) */
	uint64_t placed_term;
	bool unsure;               /* a committed entry of `term` above applied_at may be this batch */
	uint64_t moved_at;         /* ms when this node first saw another leader or a later term (0: not yet) */
	/*
	 * A relay (p NULL): a SEND_FWD that a node hosting no replica sent to this follower, passed on to
	 * the leader; its SEND_REPLY goes back to relay_to as the answer to relay_req.
	 */
	bool relay;
	uint64_t relay_to, relay_req;
	/*
	 * Sent unfenced to another replica to relay (this replica could not reach the leader): settled only
	 * by that replica's answer, and answered as soon as it says committed (this replica, cut off from the
	 * leader, may apply the entry much later).
	 */
	bool via_peer;
};

/*
 * A poll forwarded to a replica of a partition this node hosts none of (origin side). Once answered, the
 * reply may wait here until this node has applied the consumer offset the replica stored for it.
 */
struct pfwd {
	struct pfwd *next;
	uint64_t req_id;
	struct pending *p;
	struct srv_dl dl;
	bool answered;             /* body holds the reply; waiting for meta_index to be applied here */
	uint64_t meta_index;
	uint8_t *body;             /* the 16-byte prefix and the messages */
	size_t body_len;
	/*
	 * Instead of relaying the reply: a consumer-offset request of a partition not hosted here, which
	 * asked the replica for the partition's current offset (offset_resume).
	 */
	bool offset_req;
	uint8_t op;                /* FRAME_OP_NON_REPLICATED (get) or FRAME_OP_STORE_CONSUMER_OFFSET */
	uint32_t stream_id, topic_id, pid, cid;
	uint8_t kind;
	uint64_t offset;
};

/* One reply slot in a session's queue. */
struct pending {
	struct pending *next;
	struct srv_session *ss;
	struct frame_request hdr;
	bool ready;                /* finished (srv__finish): set once */
	uint64_t seq;              /* its place in the session's request order (replies leave in this order) */
	uint8_t *buf;              /* header (+ inline body) */
	size_t len;
	struct plog_slice slice;   /* poll data after buf */
	bool has_slice;
	struct srv_piece *pieces;
	uint64_t t0;               /* uv_hrtime() when the request arrived (latency metric) */
};

struct srv_session {
	struct srv *srv;
	enum srv_transport kind;
	char peer[64];
	uint32_t client_id;
	srv_send_fn send;
	void *ctx;
	bool closed;
	int refs;
	bool bound;
	struct frame_u128 vsr_client;
	uint64_t session;
	uint32_t user_id;
	bool redirect;             /* NotLeader replies instead of forwarding (docs/protocol-extensions.md) */
	/*
	 * A data session attached to a parent session of this node (AttachConsumerSession, code 14): the
	 * parent's client id is this session's consumer-group member identity while the parent stays logged in
	 * with login number parent_session. Its own client_id is never changed.
	 */
	bool attached;
	uint32_t member_of;
	uint64_t parent_session;
	struct pending *head, *tail;
	uint64_t seq_in, seq_out;   /* requests queued, replies handed to the transport or dropped */
	struct srv_session *next;
};

struct srv {
	uv_loop_t *loop;
	const struct galgo_config *cfg;
	struct pio *pio;
	struct flusher *fl;
	struct meta *meta;
	struct tparts *parts;
	/* Replication (node/cluster.h): the metadata group and its log. */
	struct clu *clu;
	struct plog *mlog;
	struct clu_group *mg;
	uint64_t meta_applied;     /* last metadata index applied to meta */
	uint64_t meta_replay_to;   /* last index the log held at open: applying up to it is a replay */
	uint64_t meta_snap;        /* index of the last metadata snapshot */
	bool meta_caught_up;       /* the replay is done (orphans were removed) */
	bool meta_rebuilt;         /* the metadata log was damaged and is rebuilt from peers (meta_open) */
	uint64_t advertise_at;     /* srv__advertise_tick: no NODE_ADVERTISE before this (ms) */
	bool draining;             /* srv_drain: leads nothing, hands over what it leads (srv__drain_tick) */
	uint64_t meta_transfer_at; /* srv__drain_tick: the last metadata leadership transfer asked (ms) */
	bool leader_work;          /* a new metadata leader still has its start-of-term housekeeping to do */
	struct mwait *mwaits;      /* metadata commands waiting for their entry */
	struct mresult ring[256];  /* outcomes of the last applied metadata entries */
	struct fwd *fwds;          /* sends forwarded to a partition leader, waiting for its reply */
	struct pfwd *pfwds;        /* polls forwarded to a replica, waiting for its reply */
	struct lwait *lwaits;      /* topic creations waiting for their leaders */
	uint64_t next_req;
	uint32_t next_client;      /* low bits of the last client id given out */
	uint32_t scrub_next;       /* the partition (in s->parts order) the scrubber goes on with */
	bool root_seen;
	uint64_t init_term;        /* the term in which this leader submitted NODES_INIT (0: not submitted) */
	/* Forwarded commands taken lately (leader side): a re-sent one gets its first answer again. */
	struct {
		uint64_t from, req_id, index, term;
	} taken[512];
	bool closing;              /* srv_free runs */
	int clear_state;           /* clear_own_members: 0 pending, 1 done, -1 failed */
	/* srv__members_tick: removals of this node's departed members submitted lately (client id, retry after ms) */
	struct {
		uint32_t client_id;
		uint64_t retry_at;
	} gone[16];
	uv_timer_t house;          /* retries of the above (srv_house.c) */
	uv_timer_t dl_timer;       /* the earliest deadline of s->dls */
	struct srv_dl **dls;       /* every waiter's deadline: a min-heap (srv_deadline.c) */
	size_t n_dls, cap_dls;
	uint64_t dl_seq;
	struct srv_session *sessions;
	uint64_t next_session;
	uint64_t start_us;
	uint32_t jobs;             /* thread-pool jobs in flight (password checks, a snapshot) */
	bool snapshot_busy;        /* a GetSnapshotFile job is in flight (srv_snapshot.c: one at a time) */
	struct srv_tstats tstats[SRV_TRANSPORT_LAST + 1]; /* per transport kind, for srv_metrics_text */
	char pdir[2048];           /* <data_dir>/partitions */
	uint64_t restarts;         /* partition groups reopened from disk after they stopped (galgo_partition_restarts_total) */
	uint64_t repairs;          /* damaged replicas set aside to be rebuilt from peers (galgo_partition_repairs_total) */
	uint64_t sends_via_peer;   /* sends relayed by another replica: the leader was out of reach (send_via_peer) */
	bool clock_skewed;         /* this node's clock is off from most of the cluster's (node/clock.h) */
	bool clock_far[CLU_MAX_NODE_ID + 1]; /* per peer: past half the maximum offset (warned) */
};

/* ---- Metadata commands through the metadata Raft group ---- */

#define META_DEADLINE_MS 10000u
#define RETRY_MS 50u
#define SEND_DEADLINE_MS 10000u
#define ADMIT_MS 2000u

/*
 * Every META_SNAPSHOT_EVERY applied commands the metadata is snapshotted and the log segments wholly
 * before the last META_TRAILING entries go (followers that far behind get the snapshot instead).
 */
#define META_SNAPSHOT_EVERY 1024u
#define META_TRAILING 256u

/*
 * A replica that does not lead and cannot reach a leader (none known, or no link to it: a partition of
 * the network where it still sees another replica, the "bridge" topology) asks a connected replica to
 * relay the send: unfenced, so that replica passes it on to its own leader, fenced by its own view, and
 * settles it from its own log (srv__fwd_settle) as if it were its producer's. This replica only relays the
 * answer (via_peer): 58 still means certainly not admitted, and a relay that never answers leaves the
 * outcome unknown (1 at the deadline). Returns false (nothing sent) when the leader is reachable or no
 * other replica is connected; the caller then forwards as usual.
 */
/* A relay must have been heard within this (an idle link carries a keepalive at least every 2 s). */
#define RELAY_HEARD_MS 3000

/*
 * Where clients reach roster node `cn` (GetClusterMetadata, routes, leader hints): the host and ports it
 * advertised (NODE_ADVERTISE, from its node.advertised_host and <transport>.advertised_port) where it
 * did, else its roster host and ports. A port the roster leaves out is taken to be this node's own (nodes
 * on different hosts usually share them); a single node gives its TCP listener's host. A transport this
 * node does not serve is given port 0 unless the node advertised a port for it.
 */
struct client_addr {
	const char *host;
	uint16_t tcp, quic, http;
	uint16_t ws; /* the roster has no WebSocket port: every node is taken to listen on this node's own */
};


/* server.c (lifecycle and wiring) */
void srv__remove_orphans(struct srv *s);
void srv__meta_leader_ready(struct srv *s);

/* srv_session.c (sessions, the reply queue, authorization and dispatch) */
void srv__flush_queue(struct srv_session *ss);
struct pending *srv__pending_new(struct srv_session *ss, const struct frame_request *hdr);
void srv__finish(struct pending *p, uint32_t status, bool framed, const void *body, size_t body_len);
void srv__finish_buf(struct pending *p, uint32_t status, bool framed, struct wire_buf *b);
void srv__reject(struct pending *p, uint32_t code);
void srv__finish_evict(struct pending *p, const struct frame_request *hdr, uint8_t reason);
void srv__evict(struct srv_session *ss, const struct frame_request *hdr, uint8_t reason);
void srv__session_unref(struct srv_session *ss);
struct meta_user *srv__session_user(struct srv_session *ss);
struct srv_session *srv__session_find(struct srv *s, uint32_t client_id, uint64_t session);
uint32_t srv__session_member(struct srv_session *ss, uint32_t *member);
/*
 * Whether the session's user may run command (op, code) on stream sid and topic tid: the permission the
 * command table names for it (none: yes). srv__allowed answers 41 Unauthorized when not.
 */
bool srv__may(struct srv_session *ss, uint8_t op, uint32_t code, uint32_t sid, uint32_t tid);
bool srv__allowed(struct srv_session *ss, struct pending *p, const struct frame_request *hdr, uint32_t sid,
		  uint32_t tid);

/* srv_meta.c (the metadata pipeline) */
void srv__mwait_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res);
void srv__mwait_push(struct srv *s, struct mwait *w);
struct mwait *srv__meta_submit(struct srv *s, const struct meta_cmd *c, mdone_fn done);
int srv__commit(struct srv *s, const struct meta_cmd *c);
int srv__meta_barrier(struct srv *s, mdone_fn done, void *arg);
void srv__on_meta_fwd(void *ud, uint64_t from, const void *buf, size_t len);
void srv__on_meta_reply(void *ud, uint64_t from, const void *buf, size_t len);
bool srv__topic_leaders_known(struct srv *s, uint32_t stream_id, uint32_t topic_id);
void srv__meta_write(struct srv *s, struct pending *p, const struct meta_cmd *c,
		       void (*build)(struct srv *s, struct wire_buf *b, const struct meta_cmd *c,
				     const struct meta_result *res));
void srv__roster_from_meta(struct srv *s);
void srv__meta_compact(struct srv *s, bool force);
extern const struct clu_group_ops srv__meta_ops;
void srv__meta_create_stream(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
		     size_t len);
void srv__meta_stream(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
		     size_t len);
void srv__meta_create_topic(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
		     size_t len);
void srv__meta_topic(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
		     size_t len);
void srv__meta_group(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
		     size_t len);
void srv__meta_create_user(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
		     size_t len);
void srv__meta_user(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
		     size_t len);
void srv__meta_pat(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
		     size_t len);

/* srv_login.c (logins and password work) */
void srv__handle_register(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);
void srv__pw_job_start(struct srv *s, struct pending *p, const struct meta_cmd *c, struct meta_perms *perms,
			 struct wire_str pw, const char *cur_hash, struct wire_str cur,
			 void (*build)(struct srv *, struct wire_buf *, const struct meta_cmd *,
				       const struct meta_result *));

/* srv_layout.c (Iggy's reply layouts) */
struct meta_stream *srv__find_stream(struct srv *s, const struct wire_id *id);
struct meta_topic *srv__find_topic(const struct meta_stream *st, const struct wire_id *id);
struct meta_group *srv__find_group(const struct meta_topic *t, const struct wire_id *id);
struct meta_user *srv__find_user(struct srv *s, const struct wire_id *id);
void srv__put_name(struct wire_buf *b, const char *name);
void srv__put_stream_header(struct srv *s, struct wire_buf *b, const struct meta_stream *st);
void srv__put_topic_header(struct srv *s, struct wire_buf *b, const struct meta_topic *t);
void srv__put_topic_option_catalog(struct wire_buf *b);
void srv__put_partitions(struct srv *s, struct wire_buf *b, const struct meta_topic *t);
void srv__put_user_header(struct wire_buf *b, const struct meta_user *u);
void srv__put_user_details(struct wire_buf *b, const struct meta_user *u);
int srv__perms_from_wire(const struct wire_perms *w, struct meta_perms *m);
void srv__put_group_details(struct wire_buf *b, const struct meta_topic *t, const struct meta_group *g, bool members);
void srv__put_client(struct srv *s, struct wire_buf *b, const struct srv_session *ss, bool details);
struct client_addr srv__client_addr_of(struct srv *s, const struct clu_node *cn, bool single);
void srv__put_partition_leaders(struct srv *s, struct wire_buf *b);
void srv__put_node_status(struct srv *s, struct wire_buf *b);
void srv__put_stats(struct srv *s, struct wire_buf *b);
void srv__put_cluster(struct srv *s, struct wire_buf *b);
void srv__put_node(struct srv *s, struct wire_buf *b, size_t i, uint8_t role);

/* srv_replica.c (replica hosting) */
struct tparts *srv__tparts_find(struct srv *s, uint32_t stream_id, uint32_t topic_id);
bool srv__part_dir_name(const char *name, uint64_t *gid);
int srv__rm_tree(struct pio *pio, const char *path);
void srv__each_frame(const uint8_t *buf, size_t len, void (*fn)(void *arg, const uint8_t *frame), void *arg);
bool srv__id_is_zero(const uint8_t *id);
void srv__add_frame_id(void *arg, const uint8_t *frame);
int srv__part_compact(struct part *pt, uint64_t keep_from);
uint64_t srv__part_applied(const struct part *pt);
struct part *srv__part_by_gid(struct srv *s, uint64_t gid);
int srv__set_aside(struct srv *s, const char *name, const char *dir, const char *parent, char *out, size_t n);
int srv__tparts_sync(struct srv *s, const struct meta_topic *t);
void srv__tparts_drop(struct srv *s, uint32_t stream_id, uint32_t topic_id, bool destroy);
struct plog *srv__part_log(struct srv *s, uint32_t stream_id, uint32_t topic_id, uint32_t pid);
uint64_t srv__part_bytes(struct srv *s, uint32_t stream_id, uint32_t topic_id, uint32_t pid);
void srv__topic_usage(struct srv *s, const struct meta_topic *t, uint64_t *bytes, uint64_t *msgs);
void srv__part_term_barrier(struct part *pt);
void srv__handle_membership(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
			      size_t len);
void srv__handle_drain(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);
uint32_t srv__drain_tick(struct srv *s);
void srv__balance_leaders(struct srv *s);
void srv__membership_tick(struct srv *s);
void srv__scrub_tick(struct srv *s);
void srv__repair_tick(struct srv *s);
void srv__restart_tick(struct srv *s);
void srv__members_tick(struct srv *s);

/* srv_send.c (sends) */
bool srv__fwd_of(const struct fwd *f, const struct part *pt);
void srv__fwd_answer(struct srv *s, struct fwd *f, uint32_t code, uint64_t base, uint64_t index);
void srv__fwds_detach(struct tparts *tp, uint32_t pid);
void srv__fwd_settle(struct part *pt, const struct rgroup_entry *e, bool msgs);
bool srv__fwd_check_placed(struct part *pt, struct fwd *f, uint64_t applied);
bool srv__fwd_moved_on(struct srv *s, struct fwd *f, uint64_t now);
void srv__send_reply_ok(struct pending *p, uint32_t stream_id, uint32_t topic_id, uint32_t pid, uint64_t base);
void srv__send_reply_remote(struct srv *s, uint64_t origin, uint64_t req_id, uint32_t status, uint64_t base,
			      uint64_t index);
void srv__swait_finish(struct part *pt, struct swait *w, int status, uint64_t base_offset);
uint64_t srv__replica_to_ask(struct srv *s, const struct meta_partition *mp, bool *others);
void srv__on_send_fwd(void *ud, uint64_t from, const void *buf, size_t len);
void srv__on_send_reply(void *ud, uint64_t from, const void *buf, size_t len);
void srv__on_send_placed(void *ud, uint64_t from, const void *buf, size_t len);
void srv__handle_send(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);

/* srv_poll.c (polls and consumer offsets) */
void srv__on_poll_fwd(void *ud, uint64_t from, const void *buf, size_t len);
void srv__on_poll_reply(void *ud, uint64_t from, const void *buf, size_t len);
void srv__pfwd_applied(struct srv *s);
void srv__handle_poll(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);
void srv__handle_offset(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);
void srv__handle_routing(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);
void srv__handle_attach(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);

/* srv_read.c (read-only queries) */
/*
 * A command handler of the command table (srv_session.c): it takes the request's reply slot itself; the
 * frame body is its own (a send stamps its batch in place).
 */
typedef void (*srv_cmd_fn)(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);
/* The query functions of the command table: see srv_read.c. */
typedef uint32_t (*srv_query_fn)(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_ping(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_stats(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_partition_leaders(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_set_redirect(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_cluster_metadata(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_describe_options(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_me(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_clients(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_user(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_users(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_pats(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_stream(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_streams(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_topic(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_topics(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_groups(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
uint32_t srv__q_unavailable(struct srv_session *ss, uint32_t code, struct wire_rd *r, struct wire_buf *b);
void srv__query(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len,
		srv_query_fn q);
void srv__handle_legacy_login(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
			      size_t len);
void srv__handle_delete_segments(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
				   size_t len);

/* srv_snapshot.c (GetSnapshotFile: a ZIP archive of diagnostics, made on the thread pool) */
void srv__handle_snapshot(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);

/* srv_house.c (housekeeping) */
uint64_t srv__now_us(void);
uint64_t srv__mono_ms(void);
void srv__on_house(uv_timer_t *t);
void srv__lwait_expired(struct srv *s, struct srv_dl *d);
void srv__house_arm(struct srv *s);

/* srv_deadline.c: register a waiter's deadline (one at a time), cancel it (no-op if none), and the rest. */
void srv__dl_add(struct srv *s, struct srv_dl *d, uint64_t at, srv_dl_fn fire);
void srv__dl_cancel(struct srv *s, struct srv_dl *d);
bool srv__dl_pending(const struct srv_dl *d);
void srv__dl_on_timer(uv_timer_t *t);
void srv__dl_free(struct srv *s); /* srv_free: every waiter is gone or going without its deadline */
void srv__advertise_tick(struct srv *s);
uint16_t srv__own_ws_port(const struct galgo_config *cfg);
void srv__clock_tick(struct srv *s);

/* srv_metrics.c (metrics) */
extern const uint64_t srv__lat_bounds_us[LAT_BUCKETS];

#endif
