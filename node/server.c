/*
 * server — the request dispatcher of a single galgod. See server.h.
 *
 * Request handling follows the Iggy reference (shared reference iggy-protocol.md §1-§3):
 *   - before login only Ping is served; other reads get a status-40 deny, writes Eviction(1);
 *   - Register (login by password or token) binds the session; failures are evictions (9, 10, 11, 15);
 *   - metadata writes are decoded, authorized, applied to node/meta (a rejection is a result-section
 *     reply and changes nothing), replicated through the metadata Raft group (node/cluster) and answered
 *     once the entry is committed and applied on this node;
 *   - SendMessages verifies the producer's batch, stamps it and appends it to the partition log; it is
 *     answered when the record is as durable as the topic's policy asks;
 *   - PollMessages answers with the stored records as file ranges (zero copy) up to the durable offset;
 *     on a node that hosts no replica of the partition it is forwarded to one (POLL_FWD, node/cluster.h),
 *     which answers with a copy of the messages that this node relays.
 *
 * Choices where the reference leaves room: errors on result-framed ops use the result section; unknown
 * NonReplicated codes get status 3; message-id deduplication is a per-partition window of recent ids
 * (node/dedup, for topics that ask for it); a producer's Balanced partitioning is a server round-robin per
 * topic.
 *
 * Poll routing (apache-iggy 0.9.0; not in the reference; codes in transport/frame.h). Once
 * GetClusterMetadata lists more than one node, the SDK sends a poll with auto-commit and every
 * consumer-offset write through a "primary": it asks its connection (the parent) for the route (103 or
 * 123), opens a data connection to the node named, logs in there again (its own session, its own client
 * id), attaches that session to the parent's (14) and sends the poll as 104, or the offset write as the
 * ordinary op 161/162, on it. All integers are little-endian; every reply is a plain NonReplicated reply
 * (no result section), and on an error its status is the Iggy code and its body empty.
 *
 *   103 GetPollRouting. Request: a PollMessages body byte for byte, [Consumer][stream Identifier]
 *       [topic Identifier][Optional partition][PollingStrategy][count u32][auto_commit u8]
 *       (primitives in transport/wire.h); auto_commit must be 1. Reply: a route (below).
 *   123 GetConsumerOffsetRouting. Request: a GetConsumerOffset body, [Consumer][stream Identifier]
 *       [topic Identifier][Optional partition] (the prefix of the Store/DeleteConsumerOffset that
 *       follows). Reply: a route.
 *       A route, 52 bytes or more:
 *         off  size field
 *           0    16 client_id   u128: the parent session's client id (GetMe's client_id) zero-extended
 *          16     8 session     u64: the parent session's login number (a new one at each login)
 *          24     8 watermark   u64: the metadata index applied on this node (the SDK echoes it in 14;
 *                               it re-attaches when a later route carries a higher one)
 *          32       node        one node exactly as in GetClusterMetadata: [name_len u32][name]
 *                               [ip_len u32][ip][tcp_port u16][quic_port u16][http_port u16]
 *                               [websocket_port u16][role u8][status u8]
 *       The node is always the answering node itself, with the host and ports it lists for itself in
 *       GetClusterMetadata, role 0 (Iggy marks the primary so) and status 0 (healthy). That is always a
 *       correct primary here: any replica serves polls and writes go to the partition leader through
 *       this node, and the session to attach to is then one of this node's own; a poll of a partition
 *       this node hosts no replica of is forwarded to one (POLL_FWD, node/cluster.h). Errors, checked in
 *       this order as for the command the route is for: 3 a malformed body (or auto_commit ≠ 1), 1009 no
 *       such stream, 2010 no such topic, 41 no poll permission on the topic, 5000 no such consumer group,
 *       3007 no such partition. (A partition this node hosts no replica of is served all the same: its
 *       polls go to a replica, and an offset request asks one for the partition's current offset.)
 *   14 AttachConsumerSession. Request: exactly 32 bytes, [client_id u128][session u64][watermark u64] as a
 *       route gave them (the watermark is not checked: the parent lives on this node, whose metadata it
 *       read). Reply: empty. The parent must be a logged-in session of this node with that client id and
 *       login number, of the same user as the data session; otherwise 30 (StaleClient, which the SDK
 *       treats as "retry": it asks for a new route). 3 for a body that is not 32 bytes. The data
 *       session then borrows the parent's client id as its consumer-group member identity
 *       (srv_session.member_of), and keeps its own client id for everything else: closing it leaves the
 *       parent's groups alone.
 *   104 PollMessagesOnPrimary. Request and reply exactly as PollMessages (100); served the same way, but
 *       only on an attached session (else 40), whose parent must still be logged in with the same login
 *       (else 30). Group ownership is checked against the parent's membership.
 *   On an attached session, 100, 120, 161 and 162 likewise answer 30 when the parent is gone, and a poll
 *   checks group ownership against the parent. (Offsets are keyed by the consumer or the group, never by
 *   the member, and offset writes check no ownership, so the borrowed identity is not otherwise needed.)
 */
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
#include "transport/wire.h"

#define TAG "server"
#define SERVER_VERSION "0.9.0"
#define POLL_MAX_BYTES (8u << 20)
#define NO_PARTITION 0xffffffffu
/* Ids remembered per partition at most: ~2.6 MB of window and table each. */
#define DEDUP_WINDOW_MAX 65536u

/* Iggy status codes used directly here (the metadata ones are in meta.h). */
enum {
	E_ERROR = 1,
	E_INVALID_COMMAND = 3,
	E_INVALID_FORMAT = 4,
	E_FEATURE_UNAVAILABLE = 5,
	E_INVALID_IDENTIFIER = 6,
	E_RESOURCE_NOT_FOUND = 20,
	E_STALE_CLIENT = 30,
	E_UNAUTHENTICATED = 40,
	E_UNAUTHORIZED = 41,
	E_NOT_ACCEPTED = 58,
	E_GALGO_NOT_LEADER = 10058, /* docs/protocol-extensions.md, in redirect mode */
	E_CANNOT_READ_MESSAGE = 4011,
	E_INVALID_MESSAGE_CHECKSUM = 4027,
	E_INVALID_BATCH_CHECKSUM = 4039,
	E_UNSUPPORTED_OPTION = 4041,
	E_INVALID_OPTION_VALUE = 4042,
};

/* Request latency buckets of the metrics, in microseconds (upper bounds; +Inf is implicit). */
static const uint64_t lat_bounds_us[] = {500, 1000, 5000, 10000, 50000, 100000, 500000, 1000000, 5000000};
#define LAT_BUCKETS (sizeof(lat_bounds_us) / sizeof(lat_bounds_us[0]))

/* Request counters of one transport kind. */
struct srv_tstats {
	uint64_t requests;                /* frames received */
	uint64_t replies;                 /* replies handed to the transport */
	uint64_t latency_sum_us;
	uint64_t latency_buckets[LAT_BUCKETS]; /* not cumulative */
};

/* A send waiting for its entry to commit (leader side). */
struct swait {
	struct swait *next;
	uint64_t index, term;
	struct pending *p;          /* local request, or NULL for a forwarded one */
	uint64_t origin, req_id;    /* forwarded: the node and its request id */
	uint64_t deadline;          /* ms */
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
	uint64_t other_bytes;       /* payload bytes of applied entries that hold no messages (Raft's own) */
	uint64_t transfer_at;       /* ms of the last leadership hand-over to the preferred replica */
	uint64_t leaderless_since;  /* ms since which a leaving replica has known no leader (0: it knows one) */
	bool leaving;               /* the metadata moved this replica away: it closes once removed */
	bool term_barrier;          /* newly elected: an entry of its term is to be committed (part_term_barrier) */
	struct swait *waits, *waits_tail; /* in index order */
};

/* The partition logs of one topic. */
struct tparts {
	uint32_t stream_id, topic_id;
	uint64_t *gids;            /* per partition: its Raft group id, which names its directory */
	struct plog **logs;
	struct dedup **dd;         /* per partition; NULL entries when the topic has no dedup window */
	struct part **pp;          /* per partition; NULL when not hosted here */
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
	uint64_t deadline, retry_at;
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

/* A CreateTopic/CreatePartitions reply waiting for the new partitions' leaders (see topic_leaders_known). */
struct lwait {
	struct lwait *next;
	struct pending *p;
	struct wire_buf body;
	uint32_t stream_id, topic_id;
	uint64_t deadline;
};

/*
 * A send forwarded to the partition leader (origin side). When this node is a replica of the partition
 * the forward is fenced to the leader's term as seen here (`term`), and its outcome follows from this
 * replica's own log once leadership moves on (fwd_settle): see "A send" in docs/ARCHITECTURE.md.
 */
struct fwd {
	struct fwd *next;
	uint64_t req_id;
	struct pending *p;
	uint32_t stream_id, topic_id, partition_id;
	uint64_t deadline;
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
	uint64_t deadline;         /* ms */
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
	bool ready;
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
	uint64_t advertise_at;     /* advertise_tick: no NODE_ADVERTISE before this (ms) */
	bool draining;             /* srv_drain: leads nothing, hands over what it leads (drain_tick) */
	uint64_t meta_transfer_at; /* drain_tick: the last metadata leadership transfer asked (ms) */
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
	/* members_tick: removals of this node's departed members submitted lately (client id, retry after ms) */
	struct {
		uint32_t client_id;
		uint64_t retry_at;
	} gone[16];
	uv_timer_t house;          /* retries and deadlines of the above */
	struct srv_session *sessions;
	uint64_t next_session;
	uint64_t start_us;
	uint32_t jobs;             /* thread-pool jobs in flight (password checks) */
	struct srv_tstats tstats[SRV_HTTP + 1]; /* per transport kind, for srv_metrics_text */
	char pdir[2048];           /* <data_dir>/partitions */
	uint64_t repairs;          /* damaged replicas set aside to be rebuilt from peers (galgo_partition_repairs_total) */
	uint64_t sends_via_peer;   /* sends relayed by another replica: the leader was out of reach (send_via_peer) */
	bool clock_skewed;         /* this node's clock is off from most of the cluster's (node/clock.h) */
	bool clock_far[CLU_MAX_NODE_ID + 1]; /* per peer: past half the maximum offset (warned) */
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- Partition logs ---- */

static struct tparts *tparts_find(struct srv *s, uint32_t stream_id, uint32_t topic_id)
{
	for (struct tparts *t = s->parts; t != NULL; t = t->next)
		if (t->stream_id == stream_id && t->topic_id == topic_id)
			return t;
	return NULL;
}

/*
 * A partition replica's directory is named by its Raft group id, 16 lowercase hex digits: the id is a
 * hash of the partition's incarnation (stream, topic and partition ids and their creation times, see
 * clu_partition_gid), so a stream, topic or partition deleted and created again under the same ids gets
 * a directory of its own. Replaying the old incarnation's deletion at start can then never touch the new
 * one's files (it did when directories were named <stream>/<topic>/<partition>).
 */
static void part_dir(struct srv *s, uint64_t gid, char *out, size_t n)
{
	snprintf(out, n, "%s/%016" PRIx64, s->pdir, gid);
}

/* Whether a name under <data_dir>/partitions is a group id as part_dir writes it. */
static bool part_dir_name(const char *name, uint64_t *gid)
{
	if (strlen(name) != 16)
		return false;
	for (const char *c = name; *c != '\0'; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return false;
	*gid = strtoull(name, NULL, 16);
	return true;
}

/* Removes a directory tree through pio (partition and topic directories). */
static int rm_tree(struct pio *pio, const char *path)
{
	char **names;
	size_t n;
	int rv = pio_list(pio, path, &names, &n);
	if (rv == -ENOENT)
		return 0;
	if (rv == -ENOTDIR)
		return pio_unlink(pio, path);
	if (rv != 0)
		return rv;
	for (size_t i = 0; i < n && rv == 0; i++) {
		char child[4096];
		snprintf(child, sizeof(child), "%s/%s", path, names[i]);
		rv = rm_tree(pio, child);
	}
	pio_list_free(names, n);
	return rv == 0 ? pio_rmdir(pio, path) : rv;
}

static void plog_opts_for(struct srv *s, const struct meta_topic *t, uint32_t pid, struct plog_opts *o)
{
	plog_opts_default(o);
	o->segment_size = s->cfg->storage.segment_size;
	o->index_interval = s->cfg->storage.index_interval;
	o->durability = (enum plog_durability)t->durability;
	o->interval_ms = s->cfg->storage.interval_ms;
	o->log = glog_sink;
	o->log_ud = "partition";
	(void)pid;
}

/* Calls fn on every frame of the batches in buf (a sequence of stored batches). */
static void each_frame(const uint8_t *buf, size_t len, void (*fn)(void *arg, const uint8_t *frame), void *arg)
{
	size_t at = 0;
	while (at + RECORD_BATCH_HEADER_SIZE <= len) {
		struct record_batch_hdr h;
		record_batch_hdr_decode(buf + at, &h);
		if (h.batch_length < RECORD_BATCH_HEADER_SIZE || h.batch_length > len - at)
			return;
		size_t f = at + RECORD_BATCH_HEADER_SIZE, end = at + h.batch_length;
		for (uint32_t i = 0; i < h.message_count && f + RECORD_FRAME_HEADER_SIZE <= end; i++) {
			fn(arg, buf + f);
			f += RECORD_FRAME_HEADER_SIZE + (size_t)record_le32(buf + f + 36) + record_le32(buf + f + 32);
		}
		at = end;
	}
}

static bool id_is_zero(const uint8_t *id)
{
	static const uint8_t zero[16];
	return memcmp(id, zero, 16) == 0;
}

static void add_frame_id(void *arg, const uint8_t *frame)
{
	if (!id_is_zero(frame + 8))
		dedup_add(arg, frame + 8);
}

/* Fills a partition's dedup window with the ids of its last messages (it is derived from the log). */
static void dedup_rebuild(struct plog *l, struct dedup *d)
{
	if (d == NULL)
		return;
	uint64_t next = plog_next_offset(l), first = plog_first_offset(l), cap = dedup_capacity(d);
	uint64_t from = next - first > cap ? next - cap : first;
	while (from < next) {
		struct plog_slice sl;
		if (plog_read(l, from, 100000, 16u << 20, next - 1, &sl) != 0 || sl.messages == 0) {
			plog_slice_release(&sl);
			return;
		}
		uint8_t *buf = malloc(sl.bytes);
		if (buf != NULL && plog_slice_copy(&sl, buf) == 0)
			each_frame(buf, sl.bytes, add_frame_id, d);
		free(buf);
		from = sl.last_offset + 1;
		plog_slice_release(&sl);
	}
}

/* Makes the open logs of a topic match its partition count (opening new ones, destroying removed ones). */
/* ---- Partition replicas (one Raft group each) ---- */

static uint64_t mono_ms(void)
{
	return uv_hrtime() / 1000000u;
}

static void swait_finish(struct part *pt, struct swait *w, int status, uint64_t base_offset);
static void pfwd_expire(struct srv *s, uint64_t now);
static void send_reply_remote(struct srv *s, uint64_t origin, uint64_t req_id, uint32_t status, uint64_t base,
			      uint64_t index);
static void offset_resume(struct srv *s, const struct pfwd *f, uint32_t code, const uint8_t *prefix);
static void send_reply_ok(struct pending *p, uint32_t stream_id, uint32_t topic_id, uint32_t pid, uint64_t base);
static void finish(struct pending *p, uint32_t status, bool result, const void *body, size_t len);
static void house_arm(struct srv *s);

static bool fwd_of(const struct fwd *f, const struct part *pt)
{
	return f->stream_id == pt->stream_id && f->topic_id == pt->topic_id && f->partition_id == pt->pid;
}

/*
 * Answers a forwarded send and forgets it: code 0 with the batch's base offset (UINT64_MAX: every message
 * was a retry already stored) and its entry's index, or an Iggy code. A relay passes it to its origin.
 */
static void fwd_answer(struct srv *s, struct fwd **pp, uint32_t code, uint64_t base, uint64_t index)
{
	struct fwd *f = *pp;
	*pp = f->next;
	if (f->relay) {
		send_reply_remote(s, f->relay_to, f->relay_req, code, base, index);
	} else if (code != 0) {
		finish(f->p, code, false, NULL, 0);
	} else if (base == UINT64_MAX) {
		uint8_t zero[4] = {0};
		finish(f->p, 0, false, zero, sizeof(zero));
	} else {
		send_reply_ok(f->p, f->stream_id, f->topic_id, f->partition_id, base);
	}
	free(f);
}

/*
 * Whether the committed entry e of pt is known to hold another forwarded batch of this node: one the
 * leader said it placed at (e->index, e->term), or one acknowledged at e->index.
 */
static bool fwd_entry_known(const struct srv *s, const struct part *pt, const struct rgroup_entry *e)
{
	for (const struct fwd *g = s->fwds; g != NULL; g = g->next)
		if (fwd_of(g, pt) && g->index == e->index && (g->acked || (g->placed && g->placed_term == e->term)))
			return true;
	return false;
}

/*
 * What this replica's own log says about the sends it forwarded, as it applies the committed entry e
 * (see "A send" in docs/ARCHITECTURE.md). Raft never changes a committed entry, and a leader appends a
 * fenced forward only in the term it is fenced to (on_send_fwd). So:
 *   - acknowledged by the leader: answered once applied here (the client reads its write here);
 *   - placed by the leader at (i, t): the entry committed at i is it if its term is t, and then it is
 *     acknowledged; any other entry at i means it was replaced and can never commit: 58;
 *   - not known to be placed: the batch, if the leader took it, is an entry of term `term` above
 *     applied_at. Once an entry of a later term commits, every committed entry of `term` has been
 *     applied here (terms never decrease along a log) and no other ever will be: if none of those above
 *     applied_at could be the batch (each is known to hold another forward), it was certainly not
 *     admitted: 58. Otherwise its fate is unknown here: error 1, never 58 (it may have committed, and
 *     the client would send it twice).
 */
static void fwd_settle(struct part *pt, const struct rgroup_entry *e, bool msgs)
{
	struct srv *s = pt->srv;
	int known = -1; /* fwd_entry_known(e), computed when first needed, before anything is answered */
	if (msgs)
		for (struct fwd *f = s->fwds; f != NULL && known < 0; f = f->next)
			if (fwd_of(f, pt) && !f->acked && !f->placed && f->term == e->term && e->index > f->applied_at)
				known = fwd_entry_known(s, pt, e);
	for (struct fwd **pp = &s->fwds; *pp != NULL;) {
		struct fwd *f = *pp;
		if (!fwd_of(f, pt) || (!f->acked && f->term == 0)) {
			pp = &f->next;
			continue;
		}
		if (f->acked) {
			if (f->index <= e->index)
				fwd_answer(s, pp, 0, f->base, f->index);
			else
				pp = &f->next;
		} else if (f->placed) {
			if (f->index != e->index)
				pp = &f->next;
			else if (msgs && e->term == f->placed_term)
				fwd_answer(s, pp, 0, e->base_offset, e->index);
			else
				fwd_answer(s, pp, E_NOT_ACCEPTED, 0, 0);
		} else if (e->index <= f->applied_at) {
			pp = &f->next;
		} else if (e->term > f->term) {
			fwd_answer(s, pp, f->unsure ? E_ERROR : E_NOT_ACCEPTED, 0, 0);
		} else {
			if (msgs && e->term == f->term && known == 0)
				f->unsure = true;
			pp = &f->next;
		}
	}
}

/*
 * A forward placed at or below `applied`, an index this replica has applied (the placement came late, or
 * a snapshot install went past it): settled by the entry its log holds there, if it still holds it.
 * Returns whether *pp was answered.
 */
static bool fwd_check_placed(struct part *pt, struct fwd **pp, uint64_t applied)
{
	struct fwd *f = *pp;
	struct record_env env;
	if (!f->placed || applied < f->index || plog_entry_at(pt->log, f->index, &env) != 0)
		return false;
	if (env.term == f->placed_term && env.type == RECORD_MESSAGES)
		fwd_answer(pt->srv, pp, 0, env.base_offset, f->index);
	else
		fwd_answer(pt->srv, pp, E_NOT_ACCEPTED, 0, 0);
	return true;
}

static void part_apply(void *ud, const struct rgroup_entry *e)
{
	struct part *pt = ud;
	uint64_t base = 0;
	bool msgs = e->type == RECORD_MESSAGES && e->length >= RECORD_BATCH_HEADER_SIZE;
	if (msgs) {
		base = e->base_offset;
		pt->committed_next = base + e->message_count;
		/*
		 * The leader remembered the ids when it took the batch; the others learn them here (payloads are
		 * read back only for topics with a dedup window, see part_open).
		 */
		if (pt->dd != NULL && e->payload != NULL && pt->g != NULL && !clu_group_leader(pt->g))
			each_frame(e->payload, e->length, add_frame_id, pt->dd);
	} else {
		pt->other_bytes += e->length;
	}
	fwd_settle(pt, e, msgs);
	while (pt->waits != NULL && pt->waits->index <= e->index) {
		struct swait *w = pt->waits;
		pt->waits = w->next;
		if (pt->waits == NULL)
			pt->waits_tail = NULL;
		bool ok = msgs && w->index == e->index && w->term == e->term;
		swait_finish(pt, w, ok ? 0 : -ECANCELED, base);
	}
}

static void part_state(void *ud, int state, uint64_t term)
{
	struct part *pt = ud;
	(void)term;
	/* A new leader answers for every id its log holds, committed or not. */
	if (state == RAFT_LEADER && pt->dd != NULL)
		dedup_rebuild(pt->log, pt->dd);
	/* A leadership hand-over to the preferred replica waits BALANCE_MS after an election (see balance_leaders). */
	if (state == RAFT_LEADER)
		pt->transfer_at = mono_ms();
	const struct clu_node *nodes;
	if (state == RAFT_LEADER && clu_nodes(pt->srv->clu, &nodes) > 1) {
		pt->term_barrier = true; /* not from within the group's callback: the housekeeping timer does it */
		house_arm(pt->srv);
	}
}

/*
 * A partition's snapshot is a manifest of 8 bytes: the offset after the last message it covers (u64 LE).
 * The messages themselves stay in the log from keep_from on; a follower fetches them from the leader
 * (raft/rgroup.h) before this runs.
 */
static void part_restore(void *ud, uint64_t index, const void *data, size_t len)
{
	struct part *pt = ud;
	if (len >= 8)
		pt->committed_next = record_le64(data);
	pt->other_bytes = 0;
	if (pt->dd != NULL)
		dedup_rebuild(pt->log, pt->dd);
	/*
	 * The install went past entries fwd_settle never saw: a forward placed below it is settled by the
	 * log if it still holds that entry; any other may have been among the skipped entries (unknown).
	 */
	for (struct fwd **pp = &pt->srv->fwds; *pp != NULL;) {
		struct fwd *f = *pp;
		if (fwd_of(f, pt) && !f->acked && f->term != 0) {
			if (fwd_check_placed(pt, pp, index))
				continue; /* answered: *pp is the next one */
			if (f->placed && f->index <= index)
				f->placed = false;
			if (!f->placed && f->applied_at < index)
				f->unsure = true;
		}
		pp = &f->next;
	}
}

static const struct clu_group_ops part_ops = {part_apply, part_state, part_restore};

/*
 * Before entries below keep_from leave the log (retention, DeleteSegments), the group records a snapshot
 * through its applied index, so that Raft never asks for them again. Returns 0 when they may go.
 */
static int part_compact(struct part *pt, uint64_t keep_from)
{
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	if (keep_from <= plog_first_index(pt->log) || keep_from > st.applied_index + 1)
		return -EINVAL;
	uint8_t manifest[8];
	record_put64(manifest, pt->committed_next);
	return clu_group_snapshot(pt->g, st.applied_index, keep_from, manifest, sizeof(manifest));
}

static uint64_t part_applied(const struct part *pt)
{
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	return st.applied_index;
}

static int part_open(struct srv *s, const struct meta_topic *t, uint32_t pid, uint64_t gid, struct plog *log,
		     struct dedup *dd, bool recovering, struct part **out)
{
	struct part *pt = calloc(1, sizeof(*pt));
	if (pt == NULL)
		return -ENOMEM;
	pt->srv = s;
	pt->stream_id = t->stream_id;
	pt->topic_id = t->id;
	pt->pid = pid;
	pt->gid = gid;
	pt->log = log;
	pt->dd = dd;
	pt->committed_next = plog_first_offset(log);
	if (dd != NULL)
		dedup_rebuild(log, dd);
	uint64_t ids[META_MAX_REPLICAS];
	const struct meta_partition *mp = &t->partitions[pid];
	for (uint32_t i = 0; i < mp->n_replicas; i++)
		ids[i] = mp->replicas[i];
	/* The first replicas bootstrap the group; one that joined later waits for its leader to add it. */
	int rv = clu_group_open(s->clu, gid, log, ids, mp->n_replicas, !mp->moved, recovering, RECORD_MESSAGES, 0,
				dd == NULL,
				&part_ops, pt, &pt->g);
	if (rv != 0) {
		free(pt);
		return rv;
	}
	if (s->clock_skewed || s->draining)
		clu_group_set_campaign(pt->g, false);
	*out = pt;
	return 0;
}

static void part_close(struct part *pt, bool destroy)
{
	if (pt == NULL)
		return;
	clu_group_close(pt->g, destroy);
	while (pt->waits != NULL) {
		struct swait *w = pt->waits;
		pt->waits = w->next;
		swait_finish(pt, w, -ECANCELED, 0);
	}
	free(pt);
}

static struct part *part_by_gid(struct srv *s, uint64_t gid)
{
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++)
			if (tp->pp[i] != NULL && tp->pp[i]->gid == gid)
				return tp->pp[i];
	return NULL;
}

/* Closes a replica hosted here and deletes its log (the partition went, or the replica moved away). */
static void slot_drop(struct srv *s, struct tparts *tp, uint32_t p)
{
	part_close(tp->pp[p], true);
	tp->pp[p] = NULL;
	dedup_free(tp->dd[p]);
	tp->dd[p] = NULL;
	if (tp->logs[p] != NULL) {
		plog_destroy(tp->logs[p]);
	} else if (tp->gids[p] != 0) {
		/* A replica whose log could not be opened (damaged): its files go with it all the same. */
		char dir[4096];
		part_dir(s, tp->gids[p], dir, sizeof(dir));
		rm_tree(s->pio, dir);
	}
	tp->logs[p] = NULL;
	tp->gids[p] = 0;
}

/*
 * A data directory written before partition directories were named by group id keeps a partition in
 * <partitions>/<stream>/<topic>/<partition>: it becomes the group's directory when that does not exist
 * yet. (In the old layout one directory served every incarnation of the same ids: when ids were reused,
 * the first incarnation the replay creates takes it, as the old layout could not tell them apart either.)
 */
static void move_old_layout(struct srv *s, const struct meta_topic *t, uint32_t p, const char *dir)
{
	char old[4096], **names;
	size_t n;
	snprintf(old, sizeof(old), "%s/%" PRIu32 "/%" PRIu32 "/%" PRIu32, s->pdir, t->stream_id, t->id, p);
	if (pio_list(s->pio, dir, &names, &n) == 0) {
		pio_list_free(names, n);
		return;
	}
	if (pio_list(s->pio, old, &names, &n) != 0)
		return;
	pio_list_free(names, n);
	int rv = pio_rename(s->pio, old, dir);
	if (rv == 0)
		rv = pio_syncdir(s->pio, s->pdir);
	if (rv != 0)
		glog_error(TAG, "partition directory %s cannot become %s: %s", old, dir, strerror(-rv));
	else
		glog_info(TAG, "partition directory %s is now %s", old, dir);
}

/*
 * Moves a damaged directory (a partition replica, or the metadata log) to
 * <data_dir>/damaged/<name>-<µs since the epoch> (made durable, and so is its removal from parent), where
 * nothing of Galgo's reads or deletes it: it is there for an operator to inspect and remove.
 */
static int set_aside(struct srv *s, const char *name, const char *dir, const char *parent, char *out, size_t n)
{
	char base[4096];
	snprintf(base, sizeof(base), "%s/damaged", s->cfg->node.data_dir);
	int rv = pio_mkdir(s->pio, base);
	if (rv != 0 && rv != -EEXIST)
		goto fail;
	rv = pio_syncdir(s->pio, s->cfg->node.data_dir);
	if (rv != 0)
		goto fail;
	snprintf(out, n, "%s/%s-%" PRIu64, base, name, now_us());
	rv = pio_rename(s->pio, dir, out);
	if (rv == 0)
		rv = pio_syncdir(s->pio, base);
	if (rv == 0)
		rv = pio_syncdir(s->pio, parent);
	if (rv == 0)
		return 0;
fail:
	glog_error(TAG, "the damaged %s cannot be set aside: %s", dir, strerror(-rv));
	return rv;
}

/*
 * Makes slot p of a topic match the metadata: opens the replica when this node hosts it and it is not
 * open; a replica open here that the metadata moved to other nodes is marked leaving and stays until the
 * group has removed it (part_leave_check), so that it can still hand its log to the new replicas.
 */
static int slot_open(struct srv *s, const struct meta_topic *t, struct tparts *tp, uint32_t p, bool damaged);

static int slot_sync(struct srv *s, const struct meta_topic *t, struct tparts *tp, uint32_t p)
{
	bool hosted = meta_partition_hosts(&t->partitions[p], (uint32_t)clu_node_id(s->clu));
	if (tp->pp[p] != NULL) {
		tp->pp[p]->leaving = !hosted;
		return 0;
	}
	if (!hosted || tp->logs[p] != NULL)
		return 0;
	return slot_open(s, t, tp, p, false);
}

/*
 * Opens this node's replica of slot p (closed now). damaged: the open replica was found damaged at run
 * time (and closed): it is set aside without trying to open it.
 */
static int slot_open(struct srv *s, const struct meta_topic *t, struct tparts *tp, uint32_t p, bool damaged)
{
	char dir[4096];
	struct plog_opts o;
	struct plog_report rep;
	uint64_t gid = clu_partition_gid(t->stream_id, t->id, t->created_at, p, t->partitions[p].created_at);
	tp->gids[p] = gid;
	part_dir(s, gid, dir, sizeof(dir));
	if (!damaged)
		move_old_layout(s, t, p, dir);
	plog_opts_for(s, t, p, &o);
	int r = damaged ? -EBADMSG : plog_open(s->pio, s->fl, dir, &o, &rep, &tp->logs[p]);
	bool recovering = false;
	if (r == -EBADMSG && t->partitions[p].n_replicas > 1) {
		/*
		 * Damage below the recovery point, and peers to repair it from: the damaged replica is set aside
		 * whole (kept for inspection), with its snapshot, and this replica restarts empty, keeping its
		 * term and vote. It is rebuilt from its leader (entries or a snapshot and an out-of-band fetch)
		 * and votes in no election until it has caught up (rgroup_config.recovering).
		 */
		char aside[4200];
		tp->logs[p] = NULL;
		char name[20];
		snprintf(name, sizeof(name), "%016" PRIx64, gid);
		if (set_aside(s, name, dir, s->pdir, aside, sizeof(aside)) == 0) {
			clu_forget_snapshot(s->clu, gid);
			glog_warn(TAG, "partition %s is damaged: moved to %s; this replica is rebuilt from its peers and "
				       "votes in no election until it has caught up",
				  dir, aside);
			s->repairs++;
			recovering = true;
			r = plog_open(s->pio, s->fl, dir, &o, &rep, &tp->logs[p]);
		}
	}
	if (r != 0) {
		glog_error(TAG, "partition %s cannot be opened: %s", dir, strerror(-r));
		tp->logs[p] = NULL;
		return r;
	}
	if (t->dedup_window > 0)
		tp->dd[p] = dedup_new((uint32_t)(t->dedup_window > DEDUP_WINDOW_MAX ? DEDUP_WINDOW_MAX : t->dedup_window));
	r = part_open(s, t, p, gid, tp->logs[p], tp->dd[p], recovering, &tp->pp[p]);
	if (r == -EBADMSG && !recovering && t->partitions[p].n_replicas > 1) {
		/* Its snapshot is damaged (raft/rsnap.c checks): the replica is rebuilt from its peers likewise. */
		glog_warn(TAG, "partition %s: its snapshot is damaged", dir);
		tp->pp[p] = NULL;
		dedup_free(tp->dd[p]);
		tp->dd[p] = NULL;
		(void)plog_close(tp->logs[p]);
		tp->logs[p] = NULL;
		return slot_open(s, t, tp, p, true);
	}
	if (r != 0)
		glog_error(TAG, "partition %s: its Raft group cannot start: %s", dir, strerror(-r));
	return r;
}

static int tparts_sync(struct srv *s, const struct meta_topic *t)
{
	struct tparts *tp = tparts_find(s, t->stream_id, t->id);
	if (tp == NULL) {
		tp = calloc(1, sizeof(*tp));
		if (tp == NULL)
			return -ENOMEM;
		tp->stream_id = t->stream_id;
		tp->topic_id = t->id;
		tp->next = s->parts;
		s->parts = tp;
	}
	int rv = 0;
	while (tp->n > t->n_partitions)
		slot_drop(s, tp, --tp->n);
	if (t->n_partitions > tp->n) {
		struct plog **a = realloc(tp->logs, t->n_partitions * sizeof(*a));
		if (a == NULL)
			return -ENOMEM;
		tp->logs = a;
		uint64_t *g = realloc(tp->gids, t->n_partitions * sizeof(*g));
		if (g == NULL)
			return -ENOMEM;
		tp->gids = g;
		struct dedup **d = realloc(tp->dd, t->n_partitions * sizeof(*d));
		if (d == NULL)
			return -ENOMEM;
		tp->dd = d;
		struct part **pp = realloc(tp->pp, t->n_partitions * sizeof(*pp));
		if (pp == NULL)
			return -ENOMEM;
		tp->pp = pp;
		for (uint32_t p = tp->n; p < t->n_partitions; p++) {
			tp->dd[p] = NULL;
			tp->pp[p] = NULL;
			tp->logs[p] = NULL;
			tp->gids[p] = 0;
		}
		tp->n = t->n_partitions;
	}
	for (uint32_t p = 0; p < tp->n; p++) {
		int r = slot_sync(s, t, tp, p);
		if (r != 0)
			rv = r;
	}
	return rv;
}

/* Closes (destroy: and deletes) every log of a topic. */
static void tparts_drop(struct srv *s, uint32_t stream_id, uint32_t topic_id, bool destroy)
{
	for (struct tparts **pp = &s->parts; *pp != NULL; pp = &(*pp)->next) {
		struct tparts *tp = *pp;
		if (tp->stream_id != stream_id || tp->topic_id != topic_id)
			continue;
		for (uint32_t i = 0; i < tp->n; i++) {
			if (destroy) {
				slot_drop(s, tp, i);
				continue;
			}
			part_close(tp->pp[i], false);
			dedup_free(tp->dd[i]);
			if (tp->logs[i] != NULL)
				plog_close(tp->logs[i]);
		}
		*pp = tp->next;
		free(tp->gids);
		free(tp->pp);
		free(tp->dd);
		free(tp->logs);
		free(tp);
		break;
	}
}

static struct plog *part_log(struct srv *s, uint32_t stream_id, uint32_t topic_id, uint32_t pid)
{
	struct tparts *tp = tparts_find(s, stream_id, topic_id);
	return tp != NULL && pid < tp->n ? tp->logs[pid] : NULL;
}

/* Bytes of the messages a partition holds (Raft's configuration and barrier entries left out). */
static uint64_t part_bytes(struct srv *s, uint32_t stream_id, uint32_t topic_id, uint32_t pid)
{
	struct tparts *tp = tparts_find(s, stream_id, topic_id);
	if (tp == NULL || pid >= tp->n || tp->logs[pid] == NULL)
		return 0;
	struct plog *l = tp->logs[pid];
	struct part *pt = tp->pp[pid];
	uint64_t n = plog_payload_bytes(l), other = pt != NULL ? pt->other_bytes : 0;
	/*
	 * other_bytes counts the applied entries; those appended and not applied yet (a new leader's barrier,
	 * a configuration change) are found in the log itself: usually none or a few (at most the leader's
	 * cap of uncommitted entries are looked at).
	 */
	uint64_t last = plog_last_index(l), from = pt != NULL ? part_applied(pt) + 1 : last + 1;
	if (from < plog_first_index(l))
		from = plog_first_index(l);
	for (uint64_t i = from; i <= last && i - from < 2048; i++) {
		struct record_env env;
		if (plog_entry_at(l, i, &env) == 0 && env.type != RECORD_MESSAGES)
			other += env.length;
	}
	return n > other ? n - other : 0;
}

/* Sizes and message counts for headers. */
static void topic_usage(struct srv *s, const struct meta_topic *t, uint64_t *bytes, uint64_t *msgs)
{
	*bytes = *msgs = 0;
	for (uint32_t p = 0; p < t->n_partitions; p++) {
		struct plog *l = part_log(s, t->stream_id, t->id, p);
		if (l == NULL)
			continue;
		*bytes += part_bytes(s, t->stream_id, t->id, p);
		*msgs += plog_next_offset(l) - plog_first_offset(l);
	}
}

/* ---- Reply queue ---- */

static void session_unref(struct srv_session *ss);

static void pending_free(struct pending *p)
{
	free(p->buf);
	if (p->has_slice)
		plog_slice_release(&p->slice);
	free(p->pieces);
	session_unref(p->ss);
	free(p);
}

static void sent_cb(void *arg, int status)
{
	(void)status;
	pending_free(arg);
}

/* Counts a reply leaving and the time since its request arrived. */
static void observe_latency(struct srv_session *ss, const struct pending *p)
{
	struct srv_tstats *t = &ss->srv->tstats[ss->kind <= SRV_HTTP ? ss->kind : 0];
	uint64_t us = (uv_hrtime() - p->t0) / 1000u;
	size_t i = 0;
	while (i < LAT_BUCKETS && us > lat_bounds_us[i])
		i++;
	if (i < LAT_BUCKETS)
		t->latency_buckets[i]++;
	t->latency_sum_us += us;
	t->replies++;
}

static void flush_queue(struct srv_session *ss)
{
	/* Freeing a closed session's last reply frees the session: hold it until the loop is done. */
	ss->refs++;
	while (ss->head != NULL && ss->head->ready) {
		struct pending *p = ss->head;
		ss->head = p->next;
		if (ss->head == NULL)
			ss->tail = NULL;
		if (ss->closed) {
			pending_free(p);
			continue;
		}
		observe_latency(ss, p);
		size_t n = 1 + (p->has_slice ? p->slice.n_pieces : 0);
		p->pieces = calloc(n, sizeof(*p->pieces));
		if (p->pieces == NULL) {
			pending_free(p);
			continue;
		}
		p->pieces[0] = (struct srv_piece){.mem = p->buf, .fd = -1, .len = p->len};
		for (size_t i = 1; i < n; i++) {
			const struct plog_piece *pp = &p->slice.pieces[i - 1];
			if (pp->file != NULL)
				p->pieces[i] = (struct srv_piece){.fd = pio_fd(ss->srv->pio, pp->file),
								  .off = pp->file_off, .len = pp->len};
			else
				p->pieces[i] = (struct srv_piece){.mem = pp->mem, .fd = -1, .len = pp->len};
		}
		if (ss->send(ss->ctx, p->pieces, n, sent_cb, p) != 0)
			continue; /* the transport called (or will call) sent_cb */
	}
	session_unref(ss);
}

static struct pending *pending_new(struct srv_session *ss, const struct frame_request *hdr)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->ss = ss;
	p->hdr = *hdr;
	p->t0 = uv_hrtime();
	ss->refs++;
	if (ss->tail != NULL)
		ss->tail->next = p;
	else
		ss->head = p;
	ss->tail = p;
	return p;
}

/*
 * Completes a reply: status (0 or an Iggy code, then the body must be empty) and body bytes (copied).
 * `framed` adds the 4-byte success result section in front of the body.
 */
static void finish(struct pending *p, uint32_t status, bool framed, const void *body, size_t body_len)
{
	size_t extra = status == 0 && framed ? 4 : 0;
	/* Error replies carry no body, except Galgo's NotLeader (docs/protocol-extensions.md). */
	if (status != 0 && status != E_GALGO_NOT_LEADER)
		body_len = 0;
	size_t slice_len = p->has_slice ? p->slice.bytes : 0;
	p->len = FRAME_HEADER_SIZE + extra + body_len;
	p->buf = calloc(1, p->len);
	if (p->buf == NULL || frame_reply_encode(p->buf, &p->hdr, (uint32_t)(extra + body_len + slice_len), status) != 0) {
		/* Out of memory or too big: answer with a bare error header. */
		free(p->buf);
		p->len = FRAME_HEADER_SIZE;
		p->buf = calloc(1, p->len);
		if (p->has_slice) {
			plog_slice_release(&p->slice);
			p->has_slice = false;
		}
		if (p->buf != NULL)
			frame_reply_encode(p->buf, &p->hdr, 0, E_ERROR);
	} else if (body_len > 0) {
		memcpy(p->buf + FRAME_HEADER_SIZE + extra, body, body_len);
	}
	p->ready = true;
	if (p->buf == NULL) {
		p->len = 0;
	}
	flush_queue(p->ss);
}

static void finish_buf(struct pending *p, uint32_t status, bool framed, struct wire_buf *b)
{
	if (wire_buf_error(b) != 0)
		finish(p, E_ERROR, framed, NULL, 0);
	else
		finish(p, status, framed, b->p, b->len);
	wire_buf_free(b);
}

/* A committed rejection in the result section (status 0, count 1, the code). */
static void reject(struct pending *p, uint32_t code)
{
	uint8_t b[FRAME_RESULT_REJECT_SIZE];
	frame_result_reject(b, code);
	finish(p, 0, false, b, sizeof(b));
}

/* Completes a reply slot with an eviction frame instead of a reply. */
static void finish_evict(struct pending *p, const struct frame_request *hdr, uint8_t reason)
{
	struct srv_session *ss = p->ss;
	p->len = FRAME_HEADER_SIZE;
	p->buf = calloc(1, p->len);
	struct frame_eviction e = {.client = hdr->client, .reason = reason};
	if (reason == FRAME_EVICT_INCOMPATIBLE_PROTOCOL) {
		e.protocol_version = FRAME_PROTOCOL_VERSION;
		e.protocol_version_min = FRAME_PROTOCOL_VERSION;
	}
	if (p->buf != NULL)
		frame_eviction_encode(p->buf, &e);
	p->ready = true;
	flush_queue(ss);
}

static void evict(struct srv_session *ss, const struct frame_request *hdr, uint8_t reason)
{
	struct pending *p = pending_new(ss, hdr);
	if (p != NULL)
		finish_evict(p, hdr, reason);
}

/* ---- Sessions ---- */


struct srv_session *srv_session_open(struct srv *s, enum srv_transport kind, const char *peer, uint32_t client_id,
				     srv_send_fn send, void *ctx)
{
	struct srv_session *ss = calloc(1, sizeof(*ss));
	if (ss == NULL)
		return NULL;
	ss->srv = s;
	ss->kind = kind;
	snprintf(ss->peer, sizeof(ss->peer), "%s", peer ? peer : "");
	/*
	 * Client ids name consumer-group members in the replicated metadata, so they must be unique in the
	 * cluster, across transports: the node's id (1..31) in the top 5 bits, a counter below. The
	 * transport's own connection number is not used.
	 */
	(void)client_id;
	s->next_client = s->next_client % ((1u << 27) - 1) + 1;
	ss->client_id = ((uint32_t)clu_node_id(s->clu) << 27) | s->next_client;
	ss->send = send;
	ss->ctx = ctx;
	ss->refs = 1;
	ss->next = s->sessions;
	s->sessions = ss;
	return ss;
}

static void session_unref(struct srv_session *ss)
{
	if (--ss->refs > 0)
		return;
	free(ss);
}

/* ---- Metadata commands through the metadata Raft group ---- */

#define META_DEADLINE_MS 10000u
#define RETRY_MS 50u
#define SEND_DEADLINE_MS 10000u
#define ADMIT_MS 2000u


static void mwait_free(struct mwait *w)
{
	free(w->enc);
	meta_perms_free(&w->perms);
	wire_buf_free(&w->body);
	free(w);
}

static void mwait_unlink(struct srv *s, struct mwait *w)
{
	for (struct mwait **pp = &s->mwaits; *pp != NULL; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			return;
		}
}

static void mwait_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	mwait_unlink(s, w);
	if (w->done != NULL)
		w->done(s, w, status, rv, res);
	mwait_free(w);
}

static const struct mresult *ring_find(const struct srv *s, uint64_t index)
{
	const struct mresult *r = &s->ring[index % (sizeof(s->ring) / sizeof(s->ring[0]))];
	return r->index == index && index != 0 ? r : NULL;
}

/* The entry at w's index has been applied here: resolve w if the ring still knows the outcome. */
static bool mwait_try_resolve(struct srv *s, struct mwait *w)
{
	if (!w->placed || s->meta_applied < w->index)
		return false;
	if (w->barrier) {
		mwait_done(s, w, 0, 0, NULL);
		return true;
	}
	const struct mresult *r = ring_find(s, w->index);
	if (r == NULL || r->term != w->term)
		mwait_done(s, w, r == NULL ? -ETIMEDOUT : -ECANCELED, 0, NULL);
	else
		mwait_done(s, w, 0, r->rv, &r->res);
	return true;
}

static void house_arm(struct srv *s);

/*
 * The node table goes into the metadata log before any command that places partitions: a leader that
 * finds it unset submits NODES_INIT (the configured roster) ahead of its first command, once per term.
 * Log order then puts it before every later command; a second INIT (two leaders in a row before the
 * first applied) changes nothing.
 */
static int nodes_init_submit(struct srv *s)
{
	struct rgroup_status st;
	clu_group_status(s->mg, &st);
	if (s->meta->n_nodes > 0 || s->init_term == st.term)
		return 0;
	struct meta_cmd c = {.type = META_NODES_INIT, .replication_factor = (uint8_t)s->cfg->cluster.replication_factor};
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	for (size_t i = 0; i < n && i < META_MAX_NODES; i++) {
		struct meta_node *mn = &c.nodes[c.n_nodes++];
		mn->id = (uint32_t)nodes[i].id;
		snprintf(mn->host, sizeof(mn->host), "%s", nodes[i].host);
		mn->raft_port = nodes[i].raft_port;
		mn->tcp_port = nodes[i].tcp_port;
		mn->quic_port = nodes[i].quic_port;
		mn->http_port = nodes[i].http_port;
	}
	struct wire_buf b;
	wire_buf_init(&b);
	int rv = metarec_encode(&c, &b);
	uint64_t index, term;
	if (rv == 0)
		rv = clu_group_submit(s->mg, b.p, (uint32_t)b.len, &index, &term);
	wire_buf_free(&b);
	if (rv == 0) {
		s->init_term = term;
		glog_info(TAG, "node table of %zu nodes submitted (entry %" PRIu64 ")", n, index);
	}
	return rv;
}

/* Submits w to the local replica when it leads, or forwards it to the leader. */
static void mwait_push(struct srv *s, struct mwait *w)
{
	uint64_t now = mono_ms();
	if (w->barrier && clu_group_leader(s->mg)) {
		struct rgroup_status st;
		clu_group_status(s->mg, &st);
		w->placed = true;
		w->index = st.commit_index;
		mwait_try_resolve(s, w);
		house_arm(s); /* a waiter left runs to its deadline even if nothing more is applied */
		return;
	}
	if (clu_group_leader(s->mg)) {
		uint64_t index, term;
		int rv = nodes_init_submit(s);
		if (rv == 0)
			rv = clu_group_submit(s->mg, w->enc, (uint32_t)w->enc_len, &index, &term);
		if (rv == 0) {
			w->placed = true;
			w->index = index;
			w->term = term;
			mwait_try_resolve(s, w);
			/*
			 * Its deadline must run even if the entry never commits: a leader that has lost its quorum
			 * applies nothing more (seen: an auto-commit poll on a metadata leader whose two peers
			 * stopped never got a reply).
			 */
			house_arm(s);
			return;
		}
		/* -EBUSY: called from within an apply (rgroup refuses reentry); the housekeeping timer retries. */
		if (rv != -EPERM && rv != -EAGAIN && rv != -EBUSY) {
			mwait_done(s, w, rv, 0, NULL);
			return;
		}
	} else {
		uint64_t leader = clu_group_leader_id(s->mg);
		if (leader != 0 && leader != clu_node_id(s->clu)) {
			uint8_t h[8];
			record_put64(h, w->req_id);
			uv_buf_t b[2] = {uv_buf_init((char *)h, sizeof(h)), uv_buf_init((char *)w->enc, (unsigned)w->enc_len)};
			if (clu_send(s->clu, leader, CLU_KIND_META_FWD, b, w->enc_len > 0 ? 2 : 1) == 0) {
				w->sent = true;
				w->retry_at = now + 1000; /* no answer within a second: ask again */
				house_arm(s);
				return;
			}
		}
	}
	w->retry_at = now + RETRY_MS;
	house_arm(s);
}

/*
 * Replicates a command: done(s, w, status, rv, res) runs once its entry has been applied here (status 0;
 * rv is meta_apply's verdict) or it failed (status < 0: not replicated within the deadline, or replaced
 * after a leader change; its outcome is then unknown to the client). Returns the waiter (to attach a
 * pending request and a reply builder), or NULL when the command cannot be encoded or memory is short.
 */
static struct mwait *meta_submit(struct srv *s, const struct meta_cmd *c, mdone_fn done)
{
	struct mwait *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	wire_buf_init(&w->body);
	struct wire_buf b;
	wire_buf_init(&b);
	if (metarec_encode(c, &b) != 0 || b.len == 0) {
		wire_buf_free(&b);
		free(w);
		return NULL;
	}
	w->enc = b.p;
	w->enc_len = b.len;
	if (metarec_decode(w->enc, w->enc_len, &w->c, &w->perms) != 0) {
		free(w->enc);
		free(w);
		return NULL;
	}
	w->done = done;
	w->req_id = ++s->next_req;
	w->deadline = mono_ms() + META_DEADLINE_MS;
	w->admit_by = mono_ms() + ADMIT_MS;
	w->next = s->mwaits;
	s->mwaits = w;
	return w;
}

/* Fire and forget (consumer offsets, group membership, housekeeping). */
static int commit(struct srv *s, const struct meta_cmd *c)
{
	struct mwait *w = meta_submit(s, c, NULL);
	if (w == NULL)
		return -ENOMEM;
	mwait_push(s, w);
	return 0;
}

/*
 * A read barrier ("read index", dissertation §6.4, without the leader's heartbeat round): done(s, w, ...)
 * runs once this node has applied everything the metadata leader had committed when asked, or after 2 s
 * (ADMIT_MS) without that (a non-zero status). A follower passes one before a login, so that a password or user
 * changed through another node is seen.
 */
static int meta_barrier(struct srv *s, mdone_fn done, void *arg)
{
	struct mwait *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	wire_buf_init(&w->body);
	w->barrier = true;
	w->done = done;
	w->arg = arg;
	w->req_id = ++s->next_req;
	/* A barrier takes a round trip and an apply; one that has not come back within ADMIT_MS fails. */
	w->deadline = mono_ms() + ADMIT_MS;
	w->admit_by = mono_ms() + ADMIT_MS;
	w->next = s->mwaits;
	s->mwaits = w;
	mwait_push(s, w); /* (done may already have run) */
	return 0;
}

/* The metadata leader's side of a forwarded command: submit it and say where it went. */
static void on_meta_fwd(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	if (len < 8)
		return;
	uint8_t out[8 + 4 + 8 + 8];
	memcpy(out, buf, 8);
	uint64_t index = 0, term = 0;
	int rv = -EPERM;
	struct meta_cmd c;
	struct meta_perms scratch;
	if (len == 8) {
		/* A read barrier: the commit index the asking node must apply before it answers a read. */
		if (clu_group_leader(s->mg)) {
			struct rgroup_status st;
			clu_group_status(s->mg, &st);
			rv = 0;
			index = st.commit_index;
		}
	} else if (metarec_decode((const uint8_t *)buf + 8, len - 8, &c, &scratch) != 0) {
		rv = -EBADMSG;
	} else {
		meta_perms_free(&scratch);
		/*
		 * The origin re-sends a command it got no answer for; submitting it twice would apply it twice.
		 * Request ids only grow per origin, so the slot is a function of both.
		 */
		uint64_t req = record_le64(buf);
		size_t slot = (size_t)((req * 31 + from) % (sizeof(s->taken) / sizeof(s->taken[0])));
		if (s->taken[slot].from == from && s->taken[slot].req_id == req) {
			rv = 0;
			index = s->taken[slot].index;
			term = s->taken[slot].term;
		} else if (clu_group_leader(s->mg)) {
			rv = clu_group_submit(s->mg, (const uint8_t *)buf + 8, (uint32_t)(len - 8), &index, &term);
			if (rv == 0) {
				s->taken[slot].from = from;
				s->taken[slot].req_id = req;
				s->taken[slot].index = index;
				s->taken[slot].term = term;
			}
		}
	}
	record_put32(out + 8, (uint32_t)-rv);
	record_put64(out + 12, index);
	record_put64(out + 20, term);
	uv_buf_t b = uv_buf_init((char *)out, sizeof(out));
	clu_send(s->clu, from, CLU_KIND_META_REPLY, &b, 1);
}

static void on_meta_reply(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	(void)from;
	if (len != 28)
		return;
	const uint8_t *p = buf;
	uint64_t req = record_le64(p);
	int rv = -(int)record_le32(p + 8);
	for (struct mwait *w = s->mwaits; w != NULL; w = w->next) {
		if (w->req_id != req || !w->sent || w->placed)
			continue;
		w->sent = false;
		if (rv == 0) {
			w->placed = true;
			w->index = record_le64(p + 12);
			w->term = record_le64(p + 20);
			mwait_try_resolve(s, w);
		} else if (rv == -EBADMSG) {
			mwait_done(s, w, rv, 0, NULL);
		} else {
			w->retry_at = mono_ms() + RETRY_MS; /* not the leader (any more), or busy */
			house_arm(s);
		}
		return;
	}
}

static void leave_all_groups(struct srv *s, uint32_t client_id)
{
	struct meta_cmd c = {.type = META_REMOVE_MEMBER, .ts = now_us(), .client_id = client_id};
	bool member = false;
	for (uint32_t i = 0; i < s->meta->n_streams && !member; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics && !member; k++) {
			struct meta_topic *t = st->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups && !member; g++)
				member = t->groups[g] != NULL && meta_group_member(t->groups[g], client_id) != NULL;
		}
	}
	if (member)
		commit(s, &c);
}

void srv_session_close(struct srv_session *ss)
{
	struct srv *s = ss->srv;
	for (struct srv_session **pp = &s->sessions; *pp != NULL; pp = &(*pp)->next)
		if (*pp == ss) {
			*pp = ss->next;
			break;
		}
	ss->closed = true;
	leave_all_groups(s, ss->client_id);
	/* Ready replies that were not sent yet go; the others free themselves when they complete. */
	flush_queue(ss);
	session_unref(ss);
}

size_t srv_session_owed(const struct srv_session *ss)
{
	size_t n = 0;
	for (const struct pending *p = ss->head; p != NULL; p = p->next)
		n++;
	return n;
}

size_t srv_owed(const struct srv *s)
{
	size_t n = 0;
	for (const struct srv_session *ss = s->sessions; ss != NULL; ss = ss->next)
		n += srv_session_owed(ss);
	return n;
}

static uint32_t session_member(struct srv_session *ss, uint32_t *member);

bool srv_session_stale(struct srv_session *ss)
{
	uint32_t member;
	if (ss->attached && session_member(ss, &member) == 0)
		return false; /* a data connection: its parent's heartbeats speak for it */
	struct frame_request h = {.client = ss->vsr_client};
	if (frame_u128_is_zero(h.client))
		h.client.lo = 1;
	evict(ss, &h, FRAME_EVICT_STALE_CLIENT);
	return true;
}

static struct meta_user *session_user(struct srv_session *ss)
{
	return ss->bound ? meta_user(ss->srv->meta, ss->user_id) : NULL;
}

/* The open, logged-in session of this node with this client id and login number, or NULL. */
static struct srv_session *session_find(struct srv *s, uint32_t client_id, uint64_t session)
{
	for (struct srv_session *o = s->sessions; o != NULL; o = o->next)
		if (o->client_id == client_id && !o->closed && o->bound && o->session == session && session != 0)
			return o;
	return NULL;
}

/*
 * The consumer-group member identity of a session: the parent's client id for an attached data session
 * (see "Poll routing" above), else its own. Returns 0, or E_STALE_CLIENT when the parent has logged out,
 * logged in again, closed, or is now another user's.
 */
static uint32_t session_member(struct srv_session *ss, uint32_t *member)
{
	*member = ss->client_id;
	if (!ss->attached)
		return 0;
	const struct srv_session *parent = session_find(ss->srv, ss->member_of, ss->parent_session);
	if (parent == NULL || !ss->bound || parent->user_id != ss->user_id)
		return E_STALE_CLIENT;
	*member = ss->member_of;
	return 0;
}

/* ---- Resolving identifiers ---- */

static struct meta_stream *find_stream(struct srv *s, const struct wire_id *id)
{
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_stream(s->meta, id->num);
	return meta_stream_by_name(s->meta, (const char *)id->name.ptr, id->name.len);
}

static struct meta_topic *find_topic(const struct meta_stream *st, const struct wire_id *id)
{
	if (st == NULL)
		return NULL;
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_topic(st, id->num);
	return meta_topic_by_name(st, (const char *)id->name.ptr, id->name.len);
}

static struct meta_group *find_group(const struct meta_topic *t, const struct wire_id *id)
{
	if (t == NULL)
		return NULL;
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_group(t, id->num);
	return meta_group_by_name(t, (const char *)id->name.ptr, id->name.len);
}

static struct meta_user *find_user(struct srv *s, const struct wire_id *id)
{
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_user(s->meta, id->num);
	return meta_user_by_name(s->meta, (const char *)id->name.ptr, id->name.len);
}

/* ---- Response structures (reference §2.4) ---- */

static void put_name(struct wire_buf *b, const char *name)
{
	wire_put_name(b, name, strlen(name));
}

static void put_stream_header(struct srv *s, struct wire_buf *b, const struct meta_stream *st)
{
	uint32_t topics = 0;
	uint64_t bytes = 0, msgs = 0;
	for (uint32_t i = 0; i < st->n_topics; i++) {
		if (st->topics[i] == NULL)
			continue;
		uint64_t tb, tm;
		topic_usage(s, st->topics[i], &tb, &tm);
		topics++;
		bytes += tb;
		msgs += tm;
	}
	wire_put_u32(b, st->id);
	wire_put_u64(b, st->created_at);
	wire_put_u32(b, topics);
	wire_put_u64(b, bytes);
	wire_put_u64(b, msgs);
	put_name(b, st->name);
	wire_put_u32(b, 0); /* options */
}

static void put_topic_header(struct srv *s, struct wire_buf *b, const struct meta_topic *t)
{
	uint64_t bytes, msgs;
	topic_usage(s, t, &bytes, &msgs);
	wire_put_u32(b, t->id);
	wire_put_u64(b, t->created_at);
	wire_put_u32(b, t->n_partitions);
	wire_put_u64(b, t->message_expiry);
	wire_put_u8(b, t->compression);
	wire_put_u64(b, t->max_topic_size);
	wire_put_u64(b, bytes);
	wire_put_u64(b, msgs);
	put_name(b, t->name);
	/* Explicit options: the settings that differ from the defaults. */
	size_t at = wire_put_reserve(b, 4);
	size_t start = b->len;
	uint8_t v[8];
	if (t->compression == META_COMPRESSION_GZIP)
		wire_put_option(b, "compression_algorithm", 21, WIRE_KIND_STRING, "gzip", 4);
	if (t->message_expiry != META_NEVER) {
		record_put64(v, t->message_expiry);
		wire_put_option(b, "message_expiry", 14, WIRE_KIND_UINT64, v, 8);
	}
	if (t->max_topic_size != META_NEVER) {
		record_put64(v, t->max_topic_size);
		wire_put_option(b, "max_topic_size", 14, WIRE_KIND_UINT64, v, 8);
	}
	wire_patch_u32(b, at, (uint32_t)(b->len - start));
	wire_put_u32(b, 0); /* derived options */
}

/* The topic option catalog (DescribeOptions scope 1): key, kind, default, description. */
static void put_topic_option_catalog(struct wire_buf *b)
{
	static const struct {
		const char *key;
		uint8_t kind;
		uint8_t width;
		uint64_t def;
		const char *desc;
	} cat[] = {
		{"compression_algorithm", WIRE_KIND_STRING, 0, 0, "Compression of stored messages: none or gzip."},
		{"message_expiry", WIRE_KIND_UINT64, 8, 0, "Age in microseconds after which messages are deleted; 0 uses the server default (never)."},
		{"max_topic_size", WIRE_KIND_UINT64, 8, 0, "Size in bytes above which the oldest segments are deleted; 0 uses the server default (unlimited)."},
		{"segment_size", WIRE_KIND_UINT64, 8, 1ull << 30, "Bytes per segment file before a new one is started."},
		{"enforce_fsync", WIRE_KIND_BOOL, 1, 0, "Acknowledge messages only after they are flushed to disk (galgo does so by default)."},
		{"messages_required_to_save", WIRE_KIND_UINT32, 4, 1, "Accepted for compatibility; galgo writes every batch at once."},
		{"size_of_messages_required_to_save", WIRE_KIND_UINT64, 8, 0, "Accepted for compatibility; galgo writes every batch at once."},
		{"preallocate_segments", WIRE_KIND_BOOL, 1, 0, "Accepted for compatibility; segments grow as written."},
		{"dedup_window", WIRE_KIND_UINT64, 8, 0, "Galgo: how many recent message ids (at most 65536) each partition remembers; a message with a remembered nonzero id is dropped as a retry. 0 = off. Also a decimal string (Iggy SDK options)."},
	};
	wire_put_u32(b, (uint32_t)(sizeof(cat) / sizeof(cat[0])));
	for (size_t i = 0; i < sizeof(cat) / sizeof(cat[0]); i++) {
		uint8_t v[8];
		put_name(b, cat[i].key);
		wire_put_u8(b, cat[i].kind);
		if (cat[i].kind == WIRE_KIND_STRING) {
			wire_put_str32(b, "none", 4);
		} else {
			record_put64(v, cat[i].def);
			wire_put_str32(b, v, cat[i].width);
		}
		wire_put_str32(b, cat[i].desc, strlen(cat[i].desc));
	}
}

static void put_partitions(struct srv *s, struct wire_buf *b, const struct meta_topic *t)
{
	for (uint32_t p = 0; p < t->n_partitions; p++) {
		struct plog *l = part_log(s, t->stream_id, t->id, p);
		uint64_t next = l ? plog_next_offset(l) : 0, first = l ? plog_first_offset(l) : 0;
		wire_put_u32(b, p);
		wire_put_u64(b, t->partitions[p].created_at);
		wire_put_u32(b, l ? plog_segment_count(l) : 1);
		wire_put_u64(b, next > 0 ? next - 1 : 0);
		wire_put_u64(b, part_bytes(s, t->stream_id, t->id, p));
		wire_put_u64(b, next - first);
	}
}

static void put_user_header(struct wire_buf *b, const struct meta_user *u)
{
	wire_put_u32(b, u->id);
	wire_put_u64(b, u->created_at);
	wire_put_u8(b, u->status);
	put_name(b, u->username);
	wire_put_u32(b, 0); /* options */
}

static void perms_to_wire(const struct meta_perms *m, struct wire_perms *w)
{
	memset(w, 0, sizeof(*w));
	w->manage_servers = m->manage_servers;
	w->read_servers = m->read_servers;
	w->manage_users = m->manage_users;
	w->read_users = m->read_users;
	w->manage_streams = m->manage_streams;
	w->read_streams = m->read_streams;
	w->manage_topics = m->manage_topics;
	w->read_topics = m->read_topics;
	w->poll_messages = m->poll_messages;
	w->send_messages = m->send_messages;
}

static void put_user_details(struct wire_buf *b, const struct meta_user *u)
{
	put_user_header(b, u);
	if (!u->has_perms) {
		wire_put_u32(b, 0);
		return;
	}
	struct wire_perms w;
	perms_to_wire(&u->perms, &w);
	struct wire_perm_stream *ws = calloc(u->perms.n_streams ? u->perms.n_streams : 1, sizeof(*ws));
	struct wire_perm_topic **wt = calloc(u->perms.n_streams ? u->perms.n_streams : 1, sizeof(*wt));
	if (ws == NULL || wt == NULL) {
		free(ws);
		free(wt);
		wire_put_reserve(b, SIZE_MAX / 2); /* records the error */
		return;
	}
	for (uint32_t i = 0; i < u->perms.n_streams; i++) {
		const struct meta_perm_stream *ms = &u->perms.streams[i];
		ws[i] = (struct wire_perm_stream){ms->stream_id, ms->manage_stream, ms->read_stream, ms->manage_topics,
						  ms->read_topics, ms->poll_messages, ms->send_messages, ms->n_topics,
						  NULL};
		wt[i] = calloc(ms->n_topics ? ms->n_topics : 1, sizeof(**wt));
		for (uint32_t k = 0; wt[i] != NULL && k < ms->n_topics; k++) {
			const struct meta_perm_topic *mt = &ms->topics[k];
			wt[i][k] = (struct wire_perm_topic){mt->topic_id, mt->manage_topic, mt->read_topic,
							    mt->poll_messages, mt->send_messages};
		}
		ws[i].topics = wt[i];
	}
	w.streams = ws;
	w.streams_count = u->perms.n_streams;
	wire_put_u8(b, 1);
	size_t at = wire_put_reserve(b, 4);
	size_t start = b->len;
	wire_put_permissions(b, &w);
	wire_patch_u32(b, at, (uint32_t)(b->len - start));
	for (uint32_t i = 0; i < u->perms.n_streams; i++)
		free(wt[i]);
	free(wt);
	free(ws);
}

static int perms_from_wire(const struct wire_perms *w, struct meta_perms *m)
{
	memset(m, 0, sizeof(*m));
	m->manage_servers = w->manage_servers;
	m->read_servers = w->read_servers;
	m->manage_users = w->manage_users;
	m->read_users = w->read_users;
	m->manage_streams = w->manage_streams;
	m->read_streams = w->read_streams;
	m->manage_topics = w->manage_topics;
	m->read_topics = w->read_topics;
	m->poll_messages = w->poll_messages;
	m->send_messages = w->send_messages;
	if (w->streams_count == 0)
		return 0;
	m->streams = calloc(w->streams_count, sizeof(*m->streams));
	if (m->streams == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < w->streams_count; i++) {
		const struct wire_perm_stream *ws = &w->streams[i];
		struct meta_perm_stream *ms = &m->streams[i];
		m->n_streams = i + 1;
		*ms = (struct meta_perm_stream){ws->id, ws->manage_stream, ws->read_stream, ws->manage_topics,
						ws->read_topics, ws->poll_messages, ws->send_messages, NULL, 0};
		if (ws->topics_count == 0)
			continue;
		ms->topics = calloc(ws->topics_count, sizeof(*ms->topics));
		if (ms->topics == NULL) {
			meta_perms_free(m);
			return -ENOMEM;
		}
		ms->n_topics = ws->topics_count;
		for (uint32_t k = 0; k < ws->topics_count; k++) {
			const struct wire_perm_topic *wt = &ws->topics[k];
			ms->topics[k] = (struct meta_perm_topic){wt->id, wt->manage_topic, wt->read_topic,
								 wt->poll_messages, wt->send_messages};
		}
	}
	return 0;
}

static void put_group_details(struct wire_buf *b, const struct meta_topic *t, const struct meta_group *g, bool members)
{
	wire_put_u32(b, g->id);
	wire_put_u32(b, t->n_partitions);
	wire_put_u32(b, g->n_members);
	put_name(b, g->name);
	if (!members)
		return;
	for (uint32_t i = 0; i < g->n_members; i++) {
		const struct meta_member *m = &g->members[i];
		wire_put_u32(b, m->client_id);
		wire_put_u32(b, m->n_partitions);
		for (uint32_t k = 0; k < m->n_partitions; k++)
			wire_put_u32(b, m->partitions[k]);
	}
}

static void put_client(struct srv *s, struct wire_buf *b, const struct srv_session *ss, bool details)
{
	wire_put_u32(b, ss->client_id);
	wire_put_u32(b, ss->bound ? ss->user_id : UINT32_MAX);
	wire_put_u8(b, (uint8_t)ss->kind);
	wire_put_str32(b, ss->peer, strlen(ss->peer));
	size_t at = wire_put_reserve(b, 4);
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
			struct meta_topic *t = st->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups; g++) {
				if (t->groups[g] == NULL || meta_group_member(t->groups[g], ss->client_id) == NULL)
					continue;
				n++;
				if (details) {
					wire_put_u32(b, st->id);
					wire_put_u32(b, t->id);
					wire_put_u32(b, t->groups[g]->id);
				}
			}
		}
	}
	wire_patch_u32(b, at, n);
}

/* ---- Login ---- */

static void login_reply(struct pending *p, struct srv_session *ss)
{
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_u32(&b, ss->user_id);
	wire_put_u64(&b, ss->session);
	wire_put_u32(&b, FRAME_PROTOCOL_VERSION);
	wire_put_name(&b, SERVER_VERSION, strlen(SERVER_VERSION));
	finish_buf(p, 0, true, &b);
}

/*
 * A password check runs on the thread pool (Argon2id takes tens of milliseconds): the reply slot is
 * taken now, so replies stay in order, and filled when the check is done.
 */
struct login_job {
	uv_work_t work;
	struct pending *p;
	uint32_t user_id;
	char *hash;
	char *pw;
	size_t pw_len;
	bool ok;
};

static void login_work(uv_work_t *w)
{
	struct login_job *j = w->data;
	j->ok = auth_verify_password(j->hash, j->pw, j->pw_len);
}

static void login_after(uv_work_t *w, int status)
{
	struct login_job *j = w->data;
	struct pending *p = j->p;
	struct srv_session *ss = p->ss;
	struct srv *s = ss->srv;
	const struct meta_user *u = meta_user(s->meta, j->user_id);
	s->jobs--;
	if (status == 0 && j->ok && u != NULL && u->status == META_USER_ACTIVE && !ss->closed) {
		if (!ss->bound) {
			ss->bound = true;
			ss->vsr_client = p->hdr.client;
			ss->session = ++s->next_session;
			ss->user_id = u->id;
		}
		login_reply(p, ss);
	} else {
		finish_evict(p, &p->hdr, FRAME_EVICT_INVALID_CREDENTIALS);
	}
	explicit_bzero(j->pw, j->pw_len);
	free(j->pw);
	free(j->hash);
	free(j);
}

static int login_async(struct srv_session *ss, const struct frame_request *hdr, const struct meta_user *u,
		       struct wire_str pw)
{
	struct srv *s = ss->srv;
	struct login_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->user_id = u->id;
	j->hash = strdup(u->password_hash);
	j->pw = malloc(pw.len + 1);
	j->pw_len = pw.len;
	j->p = j->hash && j->pw ? pending_new(ss, hdr) : NULL;
	if (j->p == NULL) {
		free(j->hash);
		free(j->pw);
		free(j);
		return -ENOMEM;
	}
	memcpy(j->pw, pw.ptr, pw.len);
	j->work.data = j;
	if (uv_queue_work(s->loop, &j->work, login_work, login_after) != 0) {
		/* No thread pool: check on the loop. */
		j->ok = auth_verify_password(j->hash, j->pw, j->pw_len);
		s->jobs++;
		login_after(&j->work, 0);
		return 0;
	}
	s->jobs++;
	return 0;
}

/* A login waiting for its read barrier on a follower. */
struct deferred_login {
	struct srv_session *ss;
	struct frame_request hdr;
	size_t len;
	uint8_t body[];
};

static void handle_register_now(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body,
				size_t len, bool current);

static void login_barrier_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)s;
	(void)rv;
	(void)res;
	struct deferred_login *d = w->arg;
	/*
	 * Without the barrier (no metadata leader reached within its deadline) this node cannot prove its
	 * users, passwords, tokens and permissions are current: a password changed or a user deleted through
	 * another node would still log in here. The login fails closed, as "not ready, retry" (58).
	 */
	if (!d->ss->closed)
		handle_register_now(d->ss, &d->hdr, d->body, d->len, status == 0);
	session_unref(d->ss);
	free(d);
}

static void handle_register(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	if (!clu_group_leader(s->mg) && !s->closing) {
		/* SDKs send nothing else on a connection until the login is answered, so deferring keeps the order. */
		struct deferred_login *d = malloc(sizeof(*d) + len);
		if (d != NULL) {
			d->ss = ss;
			d->hdr = *hdr;
			d->len = len;
			memcpy(d->body, body, len);
			ss->refs++;
			if (meta_barrier(s, login_barrier_done, d) == 0)
				return;
			ss->refs--;
			free(d);
		}
	}
	handle_register_now(ss, hdr, body, len, true);
}

static void handle_register_now(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body,
				size_t len, bool current)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct wire_version_info vi;
	wire_rd_init(&r, body, len);
	if (wire_get_version_info(&r, &vi) != 0) {
		evict(ss, hdr, FRAME_EVICT_MALFORMED_LOGIN);
		return;
	}
	if (!frame_version_accepts(vi.protocol_version, FRAME_PROTOCOL_VERSION, false)) {
		evict(ss, hdr, FRAME_EVICT_INCOMPATIBLE_PROTOCOL);
		return;
	}
	if (!s->root_seen || !current) {
		/*
		 * The metadata has not reached the root user yet (a cluster node before its first leader, or
		 * still catching up), or this node could not prove it is current (login_barrier_done): the users
		 * known here say nothing reliable, and the login certainly did nothing, so it is "not ready,
		 * retry" (58, result-framed as Iggy's transient login reply).
		 */
		struct pending *p = pending_new(ss, hdr);
		if (p != NULL)
			reject(p, E_NOT_ACCEPTED);
		return;
	}
	if (ss->bound) {
		/* A re-login without logout replays the binding. */
		struct pending *p = pending_new(ss, hdr);
		if (p != NULL)
			login_reply(p, ss);
		return;
	}
	size_t after_version = r.pos;
	struct wire_str user, pw, ctx;
	wire_get_name(&r, &user);
	wire_get_str8(&r, &pw);
	wire_get_str32(&r, &ctx);
	struct meta_user *u = NULL;
	bool cred_failure = false;
	if (wire_rd_done(&r) == 0) {
		u = meta_user_by_name(s->meta, (const char *)user.ptr, user.len);
		if (u != NULL && u->status == META_USER_ACTIVE && login_async(ss, hdr, u, pw) == 0)
			return;
		u = NULL;
		cred_failure = true;
	}
	if (u == NULL) {
		wire_rd_init(&r, body + after_version, len - after_version);
		struct wire_str tok;
		wire_get_str8(&r, &tok);
		wire_get_str32(&r, &ctx);
		if (wire_rd_done(&r) == 0 && tok.len > 0 && !cred_failure) {
			struct meta_pat *pat;
			u = auth_pat_lookup(s->meta, (const char *)tok.ptr, tok.len, &pat);
			if (u == NULL || (pat->expiry_at != 0 && pat->expiry_at <= now_us())) {
				evict(ss, hdr, FRAME_EVICT_INVALID_TOKEN);
				return;
			}
			if (u->status != META_USER_ACTIVE) {
				evict(ss, hdr, FRAME_EVICT_USER_INACTIVE);
				return;
			}
		}
	}
	if (u == NULL) {
		evict(ss, hdr, cred_failure ? FRAME_EVICT_INVALID_CREDENTIALS : FRAME_EVICT_MALFORMED_LOGIN);
		return;
	}
	ss->bound = true;
	ss->vsr_client = hdr->client;
	ss->session = ++s->next_session;
	ss->user_id = u->id;
	struct pending *p = pending_new(ss, hdr);
	if (p != NULL)
		login_reply(p, ss);
}

/* ---- Metadata writes ---- */

/* A metadata write waiting for durability, with its reply payload ready. */
/* Answers a metadata write once its entry was applied here (or failed). */
static void meta_reply_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	if (w->p == NULL)
		return;
	if (status == -EAGAIN) {
		reject(w->p, E_NOT_ACCEPTED);
	} else if (status != 0) {
		finish(w->p, E_ERROR, false, NULL, 0);
	} else if (rv != META_OK) {
		if (w->pat && rv == META_E_PAT_LIMIT)
			finish(w->p, META_E_PAT_LIMIT, false, NULL, 0);
		else
			reject(w->p, (uint32_t)(rv < 0 ? E_ERROR : rv));
	} else if (w->pat) {
		finish_buf(w->p, 0, true, &w->body);
	} else {
		struct wire_buf body;
		wire_buf_init(&body);
		if (w->build != NULL)
			w->build(s, &body, &w->c, res);
		const struct clu_node *nodes;
		struct lwait *lw = NULL;
		if ((w->c.type == META_CREATE_TOPIC || w->c.type == META_CREATE_PARTITIONS) &&
		    clu_nodes(s->clu, &nodes) > 1 && (lw = calloc(1, sizeof(*lw))) != NULL) {
			/*
			 * In a cluster a new partition has no leader for a moment (its first election): the reply
			 * waits for them (at most 5 s), as Kafka's CreateTopics does, so that the first send does
			 * not meet the election (and the SDK's 58 replays).
			 */
			lw->p = w->p;
			lw->body = body;
			lw->stream_id = w->c.stream_id;
			lw->topic_id = w->c.type == META_CREATE_TOPIC ? res->id : w->c.topic_id;
			lw->deadline = mono_ms() + 5000;
			lw->next = s->lwaits;
			s->lwaits = lw;
			house_arm(s);
			return;
		}
		finish_buf(w->p, 0, true, &body);
		wire_buf_free(&body);
	}
}

/* Whether every partition of a topic hosted here knows its leader. */
static bool topic_leaders_known(struct srv *s, uint32_t stream_id, uint32_t topic_id)
{
	struct tparts *tp = tparts_find(s, stream_id, topic_id);
	for (uint32_t i = 0; tp != NULL && i < tp->n; i++)
		if (tp->pp[i] != NULL && clu_group_leader_id(tp->pp[i]->g) == 0)
			return false;
	return true;
}

/*
 * Replicates c through the metadata group and replies with the framed body made by `build` (may be NULL)
 * from this node's state once the entry has been applied here. What the command does to the partitions
 * (opening, deleting, purging logs) happens when it is applied, on every node (see meta_effects).
 */
static void meta_write(struct srv *s, struct pending *p, const struct meta_cmd *c,
		       void (*build)(struct srv *s, struct wire_buf *b, const struct meta_cmd *c,
				     const struct meta_result *res))
{
	struct mwait *w = meta_submit(s, c, meta_reply_done);
	if (w == NULL) {
		finish(p, E_ERROR, false, NULL, 0);
		return;
	}
	w->p = p;
	w->build = build;
	mwait_push(s, w);
}

/*
 * A purge empties each replica's log where it stands when the command applies, which is one consistent
 * cut only with a single replica; with several it would need to be an entry of each partition's own
 * log. Until then a cluster of more than one node refuses it (5, FeatureUnavailable).
 */
static void purge_write(struct srv *s, struct pending *p, const struct meta_cmd *c)
{
	const struct clu_node *nodes;
	if (clu_nodes(s->clu, &nodes) > 1) {
		finish(p, E_FEATURE_UNAVAILABLE, false, NULL, 0);
		return;
	}
	meta_write(s, p, c, NULL);
}

static void build_stream(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)c;
	put_stream_header(s, b, meta_stream(s->meta, res->id));
}

static void build_topic(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, c->stream_id), res->id);
	put_topic_header(s, b, t);
	put_partitions(s, b, t);
}

static void build_user(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)c;
	put_user_details(b, meta_user(s->meta, res->id));
}

static void build_group(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, c->stream_id), c->topic_id);
	put_group_details(b, t, meta_group(t, res->id), true);
}

static void effect_topic(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	uint32_t tid = c->type == META_CREATE_TOPIC ? res->id : c->topic_id;
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, c->stream_id), tid);
	if (t != NULL)
		tparts_sync(s, t);
}

static void effect_delete_topic(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)res;
	tparts_drop(s, c->stream_id, c->topic_id, true);
}

/*
 * Empties each partition log of a topic. The entries go with a snapshot first (at the applied index, its
 * manifest saying offsets restart at 0): without one, the next start would find a log that no longer
 * begins at its bootstrap entry and no snapshot to begin from, and the group would begin again from
 * nothing, losing every message sent after the purge.
 */
static void purge_topic_logs(struct srv *s, uint32_t stream_id, uint32_t topic_id)
{
	struct tparts *tp = tparts_find(s, stream_id, topic_id);
	for (uint32_t i = 0; tp != NULL && i < tp->n; i++) {
		if (tp->logs[i] == NULL)
			continue;
		struct part *pt = tp->pp[i];
		if (pt != NULL) {
			uint64_t applied = part_applied(pt);
			uint8_t manifest[8];
			record_put64(manifest, 0);
			int rv = applied >= plog_first_index(tp->logs[i])
					 ? clu_group_snapshot(pt->g, applied, applied + 1, manifest, sizeof(manifest))
					 : 0;
			if (rv != 0 && rv != -EINVAL) /* -EINVAL: a snapshot at that index exists already */
				glog_warn(TAG, "partition %" PRIu32 "/%" PRIu32 "/%" PRIu32 ": no snapshot before the purge: %s",
					  stream_id, topic_id, i, strerror(-rv));
		}
		plog_purge(tp->logs[i], 0);
		if (pt != NULL) {
			pt->committed_next = 0;
			pt->other_bytes = 0;
		}
	}
}

static void effect_purge(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)res;
	if (c->type == META_PURGE_TOPIC) {
		purge_topic_logs(s, c->stream_id, c->topic_id);
		return;
	}
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		if (tp->stream_id == c->stream_id)
			purge_topic_logs(s, tp->stream_id, tp->topic_id);
}

static void effect_delete_stream(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)res;
	struct tparts *tp = s->parts;
	while (tp != NULL) {
		struct tparts *next = tp->next;
		if (tp->stream_id == c->stream_id)
			tparts_drop(s, tp->stream_id, tp->topic_id, true);
		tp = next;
	}
}

struct still_member {
	uint64_t id;
	bool found;
};

static void member_of_group(void *arg, struct clu_group *g)
{
	struct still_member *sm = arg;
	struct rgroup_member m[2 * CLU_MAX_NODES];
	size_t n = clu_group_members(g, m, sizeof(m) / sizeof(m[0]));
	/*
	 * A group with no configuration yet (a replica moved here, waiting for its leader to add it) may have
	 * any node as that leader, a departed one included: dropping it would refuse the very link that
	 * brings the group here (seen: a removed node leading two partitions could never hand them to the new
	 * node, and once it stopped they had no quorum).
	 */
	if (n == 0)
		sm->found = true;
	for (size_t i = 0; i < n && i < sizeof(m) / sizeof(m[0]) && !sm->found; i++)
		sm->found = m[i].id == sm->id;
}

/*
 * The roster (peers to dial and to accept, the nodes GetClusterMetadata lists): the node table, once set,
 * and a node that left the table for as long as a group hosted here still counts it as a member, so
 * that a removed node stays reachable until the groups have moved off it (it may still be a leader that
 * hands its log to its successor, and it must hear of its removal).
 */
static void roster_from_meta(struct srv *s)
{
	if (s->meta->n_nodes == 0)
		return;
	struct clu_node nodes[CLU_MAX_NODES];
	size_t n = 0;
	for (uint32_t i = 0; i < s->meta->n_nodes && n < CLU_MAX_NODES; i++) {
		const struct meta_node *mn = &s->meta->nodes[i];
		struct clu_node *cn = &nodes[n++];
		memset(cn, 0, sizeof(*cn));
		cn->id = mn->id;
		snprintf(cn->host, sizeof(cn->host), "%s", mn->host);
		cn->raft_port = mn->raft_port;
		cn->tcp_port = mn->tcp_port;
		cn->quic_port = mn->quic_port;
		cn->http_port = mn->http_port;
	}
	const struct clu_node *cur;
	size_t nc = clu_nodes(s->clu, &cur);
	for (size_t i = 0; i < nc && n < CLU_MAX_NODES; i++) {
		if (meta_node(s->meta, (uint32_t)cur[i].id) != NULL)
			continue;
		struct still_member sm = {cur[i].id, cur[i].id == clu_node_id(s->clu)}; /* (a node keeps itself) */
		if (!sm.found)
			clu_each_group(s->clu, member_of_group, &sm);
		if (!sm.found)
			continue;
		size_t at = n++;
		while (at > 0 && nodes[at - 1].id > cur[i].id) {
			nodes[at] = nodes[at - 1];
			at--;
		}
		nodes[at] = cur[i];
	}
	bool same = n == nc;
	for (size_t i = 0; same && i < n; i++)
		same = nodes[i].id == cur[i].id && strcmp(nodes[i].host, cur[i].host) == 0 &&
		       nodes[i].raft_port == cur[i].raft_port && nodes[i].tcp_port == cur[i].tcp_port &&
		       nodes[i].quic_port == cur[i].quic_port && nodes[i].http_port == cur[i].http_port;
	if (same)
		return;
	if (clu_set_nodes(s->clu, nodes, n) != 0)
		glog_error(TAG, "the node table cannot become the roster");
}

static void reconcile_parts(struct srv *s);

/* What an applied command does to the partitions, on every node, in log order. */
static void meta_effects(struct srv *s, const struct meta_cmd *c, const struct meta_result *res, bool replay)
{
	switch (c->type) {
	case META_NODES_INIT:
	case META_NODE_ADD:
		roster_from_meta(s);
		break;
	case META_NODE_REMOVE:
		roster_from_meta(s);
		reconcile_parts(s); /* replicas moved: open the new ones here, mark the old ones leaving */
		break;
	case META_CREATE_TOPIC:
	case META_CREATE_PARTITIONS:
	case META_DELETE_PARTITIONS:
		effect_topic(s, c, res);
		break;
	case META_DELETE_TOPIC:
		effect_delete_topic(s, c, res);
		break;
	case META_DELETE_STREAM:
		effect_delete_stream(s, c, res);
		break;
	case META_PURGE_TOPIC:
	case META_PURGE_STREAM:
		/*
		 * A purge empties the logs as they are when it applies. Replaying it at start would also empty
		 * what was appended after it, so a replayed purge is skipped (one cut short by a crash stays
		 * undone: the gap noted in docs/ARCHITECTURE.md).
		 */
		if (!replay)
			effect_purge(s, c, res);
		break;
	default:
		break;
	}
}

static void meta_leader_ready(struct srv *s);
static void remove_orphans(struct srv *s);
static void meta_compact(struct srv *s, bool force);

/* A committed metadata entry, on every node in log order. */
static void meta_apply_entry(void *ud, const struct rgroup_entry *e)
{
	struct srv *s = ud;
	struct mresult *slot = &s->ring[e->index % (sizeof(s->ring) / sizeof(s->ring[0]))];
	memset(slot, 0, sizeof(*slot));
	slot->index = e->index;
	slot->term = e->term;
	slot->rv = -1;
	if (e->type == RECORD_COMMAND) {
		struct meta_cmd c;
		struct meta_perms scratch;
		if (metarec_decode(e->payload, e->length, &c, &scratch) != 0) {
			/* Every replica holds the same bytes: all of them skip it alike. */
			glog_error(TAG, "metadata entry %" PRIu64 " does not decode; skipped", e->index);
		} else {
			slot->rv = meta_apply(s->meta, &c, &slot->res);
			if (slot->rv == META_OK)
				meta_effects(s, &c, &slot->res, e->index <= s->meta_replay_to);
			meta_perms_free(&scratch);
		}
	}
	s->meta_applied = e->index;
	if (!s->root_seen && meta_user(s->meta, 0) != NULL) {
		/* Logins can succeed here from now on (scripts wait for this line). */
		s->root_seen = true;
		glog_info(TAG, "metadata ready: the root user exists");
	}
	for (struct mwait *w = s->mwaits, *next; w != NULL; w = next) {
		next = w->next;
		if (w->placed && w->index <= e->index)
			mwait_try_resolve(s, w);
	}
	if (s->pfwds != NULL)
		pfwd_expire(s, 0);
	if (!s->meta_caught_up && e->index >= s->meta_replay_to) {
		s->meta_caught_up = true;
		if (!s->meta_rebuilt)
			remove_orphans(s);
	}
	if (s->leader_work)
		house_arm(s); /* meta_leader_ready submits: not from within an apply */
}

static void meta_state(void *ud, int state, uint64_t term)
{
	struct srv *s = ud;
	(void)term;
	s->leader_work = state == RAFT_LEADER;
	if (s->leader_work)
		house_arm(s);
}

/* Opens what the metadata names and not open yet, closes and deletes what it no longer names. */
static void reconcile_parts(struct srv *s)
{
	for (struct tparts *tp = s->parts, *next; tp != NULL; tp = next) {
		next = tp->next;
		if (meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id) == NULL)
			tparts_drop(s, tp->stream_id, tp->topic_id, true);
	}
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++)
			if (st->topics[k] != NULL)
				tparts_sync(s, st->topics[k]);
	}
}

/* The metadata state becomes a snapshot's (metarec_snapshot_encode): at open, or installed from the leader. */
static void meta_restore(void *ud, uint64_t index, const void *data, size_t len)
{
	struct srv *s = ud;
	struct meta *m = NULL;
	int rv = metarec_snapshot_decode(data, len, &m);
	if (rv != 0) {
		/* Checksummed on disk and on the wire: this is a bug, and going on would diverge. */
		glog_error(TAG, "metadata snapshot through %" PRIu64 " does not decode (%s); stopping", index,
			   strerror(-rv));
		abort();
	}
	meta_free(s->meta);
	s->meta = m;
	s->meta_applied = index;
	s->meta_snap = index;
	roster_from_meta(s);
	reconcile_parts(s);
}

/*
 * Every META_SNAPSHOT_EVERY applied commands the metadata is snapshotted and the log segments wholly
 * before the last META_TRAILING entries go (followers that far behind get the snapshot instead).
 */
#define META_SNAPSHOT_EVERY 1024u
#define META_TRAILING 256u
static void meta_compact(struct srv *s, bool force)
{
	if (s->mg == NULL || s->meta_applied <= s->meta_snap ||
	    (!force && s->meta_applied - s->meta_snap < META_SNAPSHOT_EVERY))
		return;
	struct wire_buf b;
	wire_buf_init(&b);
	if (metarec_snapshot_encode(s->meta, &b) != 0 || b.err != 0) {
		wire_buf_free(&b);
		return;
	}
	uint64_t index = s->meta_applied;
	uint64_t keep = index > META_TRAILING ? index - META_TRAILING + 1 : 1;
	if (keep < plog_first_index(s->mlog))
		keep = plog_first_index(s->mlog);
	int rv = clu_group_snapshot(s->mg, index, keep, b.p, b.len);
	wire_buf_free(&b);
	if (rv != 0) {
		glog_warn(TAG, "metadata snapshot through %" PRIu64 " failed: %s", index, strerror(-rv));
		return;
	}
	s->meta_snap = index;
	if (keep > 1)
		plog_drop_segments(s->mlog, UINT32_MAX, keep - 1);
}

static const struct clu_group_ops meta_ops = {meta_apply_entry, meta_state, meta_restore};

/* ---- Housekeeping: retries and deadlines of replicated work ---- */

/*
 * Whether leadership of a fenced forward's partition moved on from where it went (another leader or a
 * later term seen here, or no leader known, or no link to the one it went to) at least two election
 * timeouts ago; the first sighting is remembered.
 */
static bool fwd_moved_on(struct srv *s, struct fwd *f, uint64_t now)
{
	if (f->acked || f->term == 0)
		return false;
	struct tparts *tp = tparts_find(s, f->stream_id, f->topic_id);
	struct part *pt = tp != NULL && f->partition_id < tp->n ? tp->pp[f->partition_id] : NULL;
	if (pt == NULL)
		return false;
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	if (f->moved_at == 0 &&
	    (st.term > f->term || st.leader_id != f->to || !clu_connected(s->clu, f->to)))
		f->moved_at = now;
	return f->moved_at != 0 && now - f->moved_at >= 2ull * s->cfg->cluster.election_timeout_ms;
}

/*
 * A new partition leader whose log is fully committed commits an empty entry of its own term at once
 * (libraft appends one itself only when its log is not fully committed). Until an entry of a later term
 * commits, an uncommitted entry of the previous leader (a forwarded send it took just before it stalled)
 * could still commit if that leader came back and won an election; once one has, it never can, and a
 * replica that forwarded such a send can tell the client for certain (fwd_settle).
 */
static void part_term_barrier(struct part *pt)
{
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	struct record_env env;
	bool needed = st.state == RAFT_LEADER && st.commit_index == st.last_index &&
		      (st.last_index == 0 || (plog_entry_at(pt->log, st.last_index, &env) == 0 && env.term < st.term));
	int rv = needed ? clu_group_barrier(pt->g) : 0;
	if (rv != -EBUSY && rv != -EAGAIN)
		pt->term_barrier = false;
}

static void on_house(uv_timer_t *t)
{
	struct srv *s = t->data;
	uint64_t now = mono_ms();
	for (struct mwait *w = s->mwaits, *next; w != NULL; w = next) {
		next = w->next;
		if (now >= w->deadline)
			mwait_done(s, w, -ETIMEDOUT, 0, NULL);
		else if (!w->placed && !w->sent && now >= w->admit_by)
			mwait_done(s, w, -EAGAIN, 0, NULL);
		else if (!w->placed && w->retry_at <= now)
			mwait_push(s, w);
	}
	for (struct fwd **pp = &s->fwds; *pp != NULL;) {
		struct fwd *f = *pp;
		if (now >= f->deadline) {
			if (f->acked && !f->relay) /* committed; only this replica lags */
				fwd_answer(s, pp, 0, f->base, f->index);
			else
				fwd_answer(s, pp, E_ERROR, 0, 0);
			continue;
		}
		if (fwd_moved_on(s, f, now)) {
			/*
			 * Another leader (or a later term) has been known here for two election timeouts and this
			 * replica's log has not settled the send (fwd_settle): its outcome is unknown, not refused.
			 */
			fwd_answer(s, pp, E_ERROR, 0, 0);
			continue;
		}
		pp = &f->next;
	}
	pfwd_expire(s, now);
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++) {
			struct part *pt = tp->pp[i];
			if (pt != NULL && pt->term_barrier)
				part_term_barrier(pt);
			/* An entry that never commits (the leader lost its quorum) fails after the deadline. */
			while (pt != NULL && pt->waits != NULL && now >= pt->waits->deadline) {
				struct swait *w = pt->waits;
				pt->waits = w->next;
				if (pt->waits == NULL)
					pt->waits_tail = NULL;
				swait_finish(pt, w, -ETIMEDOUT, 0);
			}
		}
	for (struct lwait **pp = &s->lwaits; *pp != NULL;) {
		struct lwait *lw = *pp;
		if (now < lw->deadline && !topic_leaders_known(s, lw->stream_id, lw->topic_id)) {
			pp = &lw->next;
			continue;
		}
		*pp = lw->next;
		finish_buf(lw->p, 0, true, &lw->body);
		wire_buf_free(&lw->body);
		free(lw);
	}
	if (s->leader_work)
		meta_leader_ready(s);
	house_arm(s);
}

static void house_arm(struct srv *s)
{
	if (s->closing) {
		/* srv_free ends all waiting work itself; the timer must not fire into what it has closed. */
		uv_timer_stop(&s->house);
		return;
	}
	bool work = s->fwds != NULL || s->pfwds != NULL || s->mwaits != NULL || s->lwaits != NULL || s->leader_work;
	for (struct tparts *tp = s->parts; tp != NULL && !work; tp = tp->next)
		for (uint32_t i = 0; i < tp->n && !work; i++)
			work = tp->pp[i] != NULL && (tp->pp[i]->waits != NULL || tp->pp[i]->term_barrier);
	if (!work) {
		uv_timer_stop(&s->house);
		return;
	}
	if (!uv_is_active((uv_handle_t *)&s->house))
		uv_timer_start(&s->house, on_house, RETRY_MS, RETRY_MS);
}

/* Topic options at create and update (reference §2.3): known keys, typed values. */
static int parse_topic_option(const struct wire_opt *opt, struct meta_cmd *c, bool update);

static int parse_topic_options(const struct wire_opts *o, struct meta_cmd *c, bool update)
{
	size_t pos = 0;
	struct wire_opt opt;
	while (wire_opts_next(o, &pos, &opt)) {
		int rv = parse_topic_option(&opt, c, update);
		if (rv != 0) {
			glog_info(TAG, "topic option '%.*s' (kind %u, %zu bytes) refused: %d", (int)opt.key.len,
				  (const char *)opt.key.ptr, opt.kind, opt.value.len, rv);
			return rv;
		}
	}
	return 0;
}

/*
 * A number given as a String of 1 to `digits` decimal digits: Iggy's SDKs send option keys they do not know
 * (their `options`) as strings, so Galgo's own numeric options also accept that form.
 */
static bool option_decimal(const struct wire_opt *opt, size_t digits, uint64_t *out)
{
	if (opt->kind != WIRE_KIND_STRING || opt->value.len < 1 || opt->value.len > digits)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < opt->value.len; i++) {
		if (opt->value.ptr[i] < '0' || opt->value.ptr[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(opt->value.ptr[i] - '0');
	}
	*out = v;
	return true;
}

static int parse_topic_option(const struct wire_opt *optp, struct meta_cmd *c, bool update)
{
	const struct wire_opt opt = *optp;
	{
		const char *k = (const char *)opt.key.ptr;
		size_t kl = opt.key.len;
#define KEY_IS(s) (kl == strlen(s) && memcmp(k, s, kl) == 0)
		bool num = opt.kind == WIRE_KIND_UINT64 && opt.value.len == 8;
		uint64_t v = num ? record_le64(opt.value.ptr) : 0;
		if (KEY_IS("compression_algorithm")) {
			if (opt.kind != WIRE_KIND_STRING)
				return E_INVALID_OPTION_VALUE;
			if (wire_str_eq(opt.value, "none"))
				c->compression = META_COMPRESSION_NONE;
			else if (wire_str_eq(opt.value, "gzip"))
				c->compression = META_COMPRESSION_GZIP;
			else
				return E_INVALID_OPTION_VALUE;
		} else if (KEY_IS("message_expiry")) {
			if (!num)
				return E_INVALID_OPTION_VALUE;
			c->message_expiry = v == 0 ? META_NEVER : v;
		} else if (KEY_IS("max_topic_size")) {
			if (!num)
				return E_INVALID_OPTION_VALUE;
			c->max_topic_size = v == 0 ? META_NEVER : v;
		} else if (update) {
			return E_UNSUPPORTED_OPTION;
		} else if (KEY_IS("durability")) {
			if (opt.kind != WIRE_KIND_STRING)
				return E_INVALID_OPTION_VALUE;
			if (wire_str_eq(opt.value, "fsync"))
				c->durability = META_DURABILITY_FSYNC;
			else if (wire_str_eq(opt.value, "interval"))
				c->durability = META_DURABILITY_INTERVAL;
			else if (wire_str_eq(opt.value, "none"))
				c->durability = META_DURABILITY_NONE;
			else if (wire_str_eq(opt.value, "persisted"))
				c->durability = META_DURABILITY_FSYNC;
			else if (!wire_str_eq(opt.value, "replicated"))
				return E_INVALID_OPTION_VALUE;
			/*
			 * Iggy's "replicated" (its SDK's default: acknowledged on a quorum in memory) keeps the
			 * node's configured policy, fsync unless set otherwise: never weaker than asked.
			 */
		} else if (KEY_IS("dedup_window")) {
			if (option_decimal(&opt, 5, &v))
				num = true;
			if (!num || v > DEDUP_WINDOW_MAX)
				return E_INVALID_OPTION_VALUE;
			c->dedup_window = v;
		} else if (KEY_IS("enforce_fsync")) {
			if (opt.kind != WIRE_KIND_BOOL || opt.value.len != 1)
				return E_INVALID_OPTION_VALUE;
			if (opt.value.ptr[0])
				c->durability = META_DURABILITY_FSYNC;
		} else if (KEY_IS("replication_factor")) {
			/* Replicas of each partition; 0 = the cluster's default; at most the node count is used. */
			if (option_decimal(&opt, 3, &v))
				num = true;
			if (!num || v > META_MAX_REPLICAS || update)
				return E_INVALID_OPTION_VALUE;
			c->replication_factor = (uint8_t)v;
		} else if (KEY_IS("segment_size") || KEY_IS("messages_required_to_save") ||
			   KEY_IS("size_of_messages_required_to_save") || KEY_IS("preallocate_segments") ||
			   KEY_IS("consumer_offset_durability")) {
			/* Accepted and not used by a single node. */
		} else {
			return E_UNSUPPORTED_OPTION;
		}
#undef KEY_IS
	}
	return 0;
}

/* Whether the session may act; replies 41 (as a result-section rejection) if not. */
static bool allowed(struct srv_session *ss, struct pending *p, enum auth_action a, uint32_t sid, uint32_t tid)
{
	if (auth_allowed(session_user(ss), a, sid, tid))
		return true;
	reject(p, E_UNAUTHORIZED);
	return false;
}

/*
 * CreateUser and ChangePassword hash (and check) passwords on the thread pool, like logins: the command
 * is built with copies of everything it names, then applied and persisted when the hashing is done.
 */
struct pw_job {
	uv_work_t work;
	struct srv *s;
	struct pending *p;
	struct meta_cmd c;
	char name[META_NAME_MAX + 1];
	struct meta_perms perms;
	char *pw, *cur_pw, *cur_hash; /* cur_*: the current password to check first (ChangePassword) */
	size_t pw_len, cur_len;
	char hash[AUTH_HASH_MAX];
	int hash_rv;
	bool cur_ok;
	void (*build)(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res);
};

static void pw_job_free(struct pw_job *j)
{
	if (j->pw != NULL)
		explicit_bzero(j->pw, j->pw_len);
	if (j->cur_pw != NULL)
		explicit_bzero(j->cur_pw, j->cur_len);
	free(j->pw);
	free(j->cur_pw);
	free(j->cur_hash);
	meta_perms_free(&j->perms);
	free(j);
}

static void pw_work(uv_work_t *w)
{
	struct pw_job *j = w->data;
	j->cur_ok = j->cur_hash == NULL || auth_verify_password(j->cur_hash, j->cur_pw, j->cur_len);
	j->hash_rv = j->cur_ok ? auth_hash_password(j->pw, j->pw_len, j->hash) : 0;
}


static void pw_after(uv_work_t *w, int status)
{
	struct pw_job *j = w->data;
	j->s->jobs--;
	if (!j->cur_ok) {
		reject(j->p, META_E_INVALID_CREDENTIALS);
	} else if (status != 0 || j->hash_rv != 0) {
		finish(j->p, E_ERROR, false, NULL, 0);
	} else {
		j->c.password_hash = j->hash;
		meta_write(j->s, j->p, &j->c, j->build);
	}
	pw_job_free(j);
}

/* Copies what the command names into the job and queues it; consumes `perms` (if any). */
static void pw_job_start(struct srv *s, struct pending *p, const struct meta_cmd *c, struct meta_perms *perms,
			 struct wire_str pw, const char *cur_hash, struct wire_str cur,
			 void (*build)(struct srv *, struct wire_buf *, const struct meta_cmd *,
				       const struct meta_result *))
{
	struct pw_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		meta_perms_free(perms);
		finish(p, E_ERROR, false, NULL, 0);
		return;
	}
	j->s = s;
	j->p = p;
	j->c = *c;
	j->build = build;
	if (c->name != NULL) {
		memcpy(j->name, c->name, c->name_len);
		j->name[c->name_len] = '\0';
		j->c.name = j->name;
	}
	if (perms != NULL) {
		j->perms = *perms; /* takes ownership */
		memset(perms, 0, sizeof(*perms));
		j->c.perms = &j->perms;
	}
	j->pw = malloc(pw.len + 1);
	j->pw_len = pw.len;
	bool ok = j->pw != NULL;
	if (ok)
		memcpy(j->pw, pw.ptr, pw.len);
	if (ok && cur_hash != NULL) {
		j->cur_hash = strdup(cur_hash);
		j->cur_pw = malloc(cur.len + 1);
		j->cur_len = cur.len;
		ok = j->cur_hash != NULL && j->cur_pw != NULL;
		if (ok)
			memcpy(j->cur_pw, cur.ptr, cur.len);
	}
	j->work.data = j;
	if (!ok) {
		pw_job_free(j);
		finish(p, E_ERROR, false, NULL, 0);
		return;
	}
	s->jobs++;
	if (uv_queue_work(s->loop, &j->work, pw_work, pw_after) != 0) {
		pw_work(&j->work);
		pw_after(&j->work, 0);
	}
}

static void handle_meta(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct meta_cmd c = {.type = 0, .ts = now_us()};
	struct wire_id sid, tid, gid, uid;
	struct wire_str name;
	struct wire_opts opts;
	struct meta_stream *st;
	struct meta_topic *t;
	struct meta_perms perms = {0};
	int rv;
	switch (hdr->operation) {
	case FRAME_OP_CREATE_STREAM:
		wire_get_name(&r, &name);
		wire_get_options(&r, &opts);
		if (wire_rd_done(&r) != 0)
			break;
		if (opts.count > 0) {
			reject(p, E_UNSUPPORTED_OPTION);
			return;
		}
		if (!allowed(ss, p, AUTH_MANAGE_STREAMS, 0, 0))
			return;
		c.type = META_CREATE_STREAM;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		meta_write(s, p, &c, build_stream);
		return;
	case FRAME_OP_UPDATE_STREAM:
	case FRAME_OP_DELETE_STREAM:
	case FRAME_OP_PURGE_STREAM:
		wire_get_id(&r, &sid);
		if (hdr->operation == FRAME_OP_UPDATE_STREAM) {
			wire_get_name(&r, &name);
			wire_get_options(&r, &opts);
		}
		if (wire_rd_done(&r) != 0)
			break;
		st = find_stream(s, &sid);
		if (st == NULL) {
			reject(p, META_E_STREAM_NOT_FOUND);
			return;
		}
		if (!allowed(ss, p, AUTH_MANAGE_STREAM, st->id, 0))
			return;
		c.stream_id = st->id;
		if (hdr->operation == FRAME_OP_UPDATE_STREAM) {
			if (opts.count > 0) {
				reject(p, E_UNSUPPORTED_OPTION);
				return;
			}
			c.type = META_UPDATE_STREAM;
			c.name = (const char *)name.ptr;
			c.name_len = (uint8_t)name.len;
			meta_write(s, p, &c, NULL);
		} else if (hdr->operation == FRAME_OP_DELETE_STREAM) {
			c.type = META_DELETE_STREAM;
			meta_write(s, p, &c, NULL);
		} else {
			c.type = META_PURGE_STREAM;
			purge_write(s, p, &c);
		}
		return;
	case FRAME_OP_CREATE_TOPIC:
		wire_get_id(&r, &sid);
		c.count = wire_get_u32(&r);
		wire_get_name(&r, &name);
		wire_get_options(&r, &opts);
		if (wire_rd_done(&r) != 0)
			break;
		st = find_stream(s, &sid);
		if (st == NULL) {
			reject(p, META_E_STREAM_NOT_FOUND);
			return;
		}
		if (!allowed(ss, p, AUTH_MANAGE_TOPICS, st->id, 0))
			return;
		c.type = META_CREATE_TOPIC;
		c.stream_id = st->id;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		c.message_expiry = META_NEVER;
		c.max_topic_size = META_NEVER;
		c.compression = META_COMPRESSION_NONE;
		c.durability = (uint8_t)s->cfg->storage.durability;
		c.replication_factor = 0; /* the cluster's default (cluster.replication_factor) */
		rv = parse_topic_options(&opts, &c, false);
		if (rv != 0) {
			reject(p, (uint32_t)rv);
			return;
		}
		meta_write(s, p, &c, build_topic);
		return;
	case FRAME_OP_UPDATE_TOPIC:
	case FRAME_OP_DELETE_TOPIC:
	case FRAME_OP_PURGE_TOPIC:
	case FRAME_OP_CREATE_PARTITIONS:
	case FRAME_OP_DELETE_PARTITIONS:
		wire_get_id(&r, &sid);
		wire_get_id(&r, &tid);
		if (hdr->operation == FRAME_OP_UPDATE_TOPIC) {
			wire_get_name(&r, &name);
			wire_get_options(&r, &opts);
		} else if (hdr->operation == FRAME_OP_CREATE_PARTITIONS ||
			   hdr->operation == FRAME_OP_DELETE_PARTITIONS) {
			c.count = wire_get_u32(&r);
		}
		if (wire_rd_done(&r) != 0)
			break;
		st = find_stream(s, &sid);
		t = find_topic(st, &tid);
		if (st == NULL || t == NULL) {
			reject(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND);
			return;
		}
		if (!allowed(ss, p, AUTH_MANAGE_TOPIC, st->id, t->id))
			return;
		c.stream_id = st->id;
		c.topic_id = t->id;
		switch (hdr->operation) {
		case FRAME_OP_UPDATE_TOPIC:
			c.type = META_UPDATE_TOPIC;
			c.name = (const char *)name.ptr;
			c.name_len = (uint8_t)name.len;
			c.message_expiry = t->message_expiry;
			c.max_topic_size = t->max_topic_size;
			c.compression = t->compression;
			rv = parse_topic_options(&opts, &c, true);
			if (rv != 0) {
				reject(p, (uint32_t)rv);
				return;
			}
			meta_write(s, p, &c, NULL);
			return;
		case FRAME_OP_DELETE_TOPIC:
			c.type = META_DELETE_TOPIC;
			meta_write(s, p, &c, NULL);
			return;
		case FRAME_OP_PURGE_TOPIC:
			c.type = META_PURGE_TOPIC;
			purge_write(s, p, &c);
			return;
		default:
			c.type = hdr->operation == FRAME_OP_CREATE_PARTITIONS ? META_CREATE_PARTITIONS
									       : META_DELETE_PARTITIONS;
			meta_write(s, p, &c, NULL);
			return;
		}
	case FRAME_OP_CREATE_CONSUMER_GROUP:
	case FRAME_OP_DELETE_CONSUMER_GROUP:
	case FRAME_OP_JOIN_CONSUMER_GROUP:
	case FRAME_OP_LEAVE_CONSUMER_GROUP:
		wire_get_id(&r, &sid);
		wire_get_id(&r, &tid);
		if (hdr->operation == FRAME_OP_CREATE_CONSUMER_GROUP)
			wire_get_name(&r, &name);
		else
			wire_get_id(&r, &gid);
		if (wire_rd_done(&r) != 0)
			break;
		st = find_stream(s, &sid);
		t = find_topic(st, &tid);
		if (st == NULL || t == NULL) {
			reject(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND);
			return;
		}
		c.stream_id = st->id;
		c.topic_id = t->id;
		if (hdr->operation == FRAME_OP_CREATE_CONSUMER_GROUP) {
			if (!allowed(ss, p, AUTH_MANAGE_TOPIC, st->id, t->id))
				return;
			c.type = META_CREATE_GROUP;
			c.name = (const char *)name.ptr;
			c.name_len = (uint8_t)name.len;
			meta_write(s, p, &c, build_group);
			return;
		}
		struct meta_group *g = find_group(t, &gid);
		if (g == NULL) {
			reject(p, META_E_GROUP_NOT_FOUND);
			return;
		}
		c.group_id = g->id;
		c.client_id = ss->client_id;
		if (hdr->operation == FRAME_OP_DELETE_CONSUMER_GROUP) {
			if (!allowed(ss, p, AUTH_MANAGE_TOPIC, st->id, t->id))
				return;
			c.type = META_DELETE_GROUP;
		} else {
			if (!allowed(ss, p, AUTH_POLL_MESSAGES, st->id, t->id))
				return;
			c.type = hdr->operation == FRAME_OP_JOIN_CONSUMER_GROUP ? META_JOIN_GROUP : META_LEAVE_GROUP;
		}
		if (c.type == META_JOIN_GROUP && s->clear_state != 1) {
			/* This node's previous members are not removed yet (clear_own_members): re-issue shortly. */
			finish(p, E_NOT_ACCEPTED, false, NULL, 0);
			return;
		}
		meta_write(s, p, &c, NULL);
		return;
	case FRAME_OP_CREATE_USER: {
		struct wire_str pw;
		wire_get_name(&r, &name);
		wire_get_str8(&r, &pw);
		c.status = wire_get_u8(&r);
		uint8_t has = wire_get_u8(&r);
		struct wire_perms wp = {0};
		if (has == 1) {
			uint32_t plen = wire_get_u32(&r);
			const uint8_t *pb = wire_get_bytes(&r, plen);
			if (wire_rd_error(&r) == 0 && wire_perms_decode(pb, plen, &wp) != 0)
				wire_rd_fail(&r, WIRE_E_VALUE);
		} else if (has != 0) {
			wire_rd_fail(&r, WIRE_E_VALUE);
		}
		wire_get_options(&r, &opts);
		if (wire_rd_done(&r) != 0 || opts.count > 0) {
			wire_perms_free(&wp);
			if (wire_rd_done(&r) != 0)
				break;
			reject(p, E_UNSUPPORTED_OPTION);
			return;
		}
		rv = has ? perms_from_wire(&wp, &perms) : 0;
		wire_perms_free(&wp);
		if (rv != 0 || !allowed(ss, p, AUTH_MANAGE_USERS, 0, 0)) {
			meta_perms_free(&perms);
			if (rv != 0)
				finish(p, E_ERROR, false, NULL, 0);
			return;
		}
		if (pw.len < 3 || pw.len > 100) {
			meta_perms_free(&perms);
			reject(p, 44);
			return;
		}
		c.type = META_CREATE_USER;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		c.has_perms = has == 1;
		pw_job_start(s, p, &c, has == 1 ? &perms : NULL, pw, NULL, (struct wire_str){0}, build_user);
		meta_perms_free(&perms);
		return;
	}
	case FRAME_OP_UPDATE_USER:
	case FRAME_OP_DELETE_USER:
	case FRAME_OP_UPDATE_PERMISSIONS:
	case FRAME_OP_CHANGE_PASSWORD: {
		wire_get_id(&r, &uid);
		struct wire_str cur = {0}, nw = {0};
		struct wire_perms wp = {0};
		uint8_t has = 0;
		if (hdr->operation == FRAME_OP_UPDATE_USER) {
			if (wire_get_u8(&r) == 1) {
				wire_get_name(&r, &name);
				c.name = (const char *)name.ptr;
				c.name_len = (uint8_t)name.len;
			}
			if (wire_get_u8(&r) == 1)
				c.status = wire_get_u8(&r);
			wire_get_options(&r, &opts);
		} else if (hdr->operation == FRAME_OP_UPDATE_PERMISSIONS) {
			has = wire_get_u8(&r);
			if (has == 1) {
				uint32_t plen = wire_get_u32(&r);
				const uint8_t *pb = wire_get_bytes(&r, plen);
				if (wire_rd_error(&r) == 0 && wire_perms_decode(pb, plen, &wp) != 0)
					wire_rd_fail(&r, WIRE_E_VALUE);
			}
		} else if (hdr->operation == FRAME_OP_CHANGE_PASSWORD) {
			wire_get_str8(&r, &cur);
			wire_get_str8(&r, &nw);
		}
		if (wire_rd_done(&r) != 0) {
			wire_perms_free(&wp);
			break;
		}
		struct meta_user *u = find_user(s, &uid);
		struct meta_user *me = session_user(ss);
		if (u == NULL) {
			wire_perms_free(&wp);
			reject(p, META_E_NOT_FOUND);
			return;
		}
		c.user_id = u->id;
		bool self = me != NULL && me->id == u->id;
		if (!(hdr->operation == FRAME_OP_CHANGE_PASSWORD && self) &&
		    !allowed(ss, p, AUTH_MANAGE_USERS, 0, 0)) {
			wire_perms_free(&wp);
			return;
		}
		if (hdr->operation == FRAME_OP_UPDATE_USER) {
			c.type = META_UPDATE_USER;
		} else if (hdr->operation == FRAME_OP_DELETE_USER) {
			c.type = META_DELETE_USER;
			if (self) {
				reject(p, META_E_CANNOT_DELETE_USER);
				return;
			}
		} else if (hdr->operation == FRAME_OP_UPDATE_PERMISSIONS) {
			rv = has == 1 ? perms_from_wire(&wp, &perms) : 0;
			wire_perms_free(&wp);
			if (rv != 0) {
				finish(p, E_ERROR, false, NULL, 0);
				return;
			}
			c.type = META_UPDATE_PERMISSIONS;
			c.has_perms = has == 1;
			c.perms = &perms;
		} else {
			if (nw.len < 3 || nw.len > 100) {
				reject(p, 44);
				return;
			}
			c.type = META_CHANGE_PASSWORD;
			pw_job_start(s, p, &c, NULL, nw, u->password_hash, cur, NULL);
			return;
		}
		meta_write(s, p, &c, NULL);
		meta_perms_free(&perms);
		return;
	}
	case FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN:
	case FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN: {
		wire_get_name(&r, &name);
		uint64_t expiry = 0;
		if (hdr->operation == FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN)
			expiry = wire_get_u64(&r);
		if (wire_rd_done(&r) != 0)
			break;
		c.user_id = ss->user_id;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		if (hdr->operation == FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN) {
			c.type = META_DELETE_PAT;
			meta_write(s, p, &c, NULL);
			return;
		}
		char token[AUTH_PAT_LEN + 1];
		uint8_t th[32];
		if (auth_pat_generate(token) != 0) {
			finish(p, E_ERROR, false, NULL, 0);
			return;
		}
		auth_pat_hash(token, AUTH_PAT_LEN, th);
		c.type = META_CREATE_PAT;
		c.token_hash = th;
		/* 0 and u64::MAX mean never; so does an expiry beyond the clock's range (no wrap to the past). */
		c.expiry_at = expiry == 0 || expiry > UINT64_MAX - c.ts ? 0 : c.ts + expiry;
		struct mwait *w = meta_submit(s, &c, meta_reply_done);
		if (w == NULL) {
			finish(p, E_ERROR, false, NULL, 0);
			return;
		}
		w->p = p;
		w->pat = true;
		wire_put_str8(&w->body, token, AUTH_PAT_LEN);
		mwait_push(s, w);
		return;
	}
	default:
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	/* A body that does not decode. */
	finish(p, E_INVALID_COMMAND, false, NULL, 0);
}

/* ---- Message plane ---- */

static void send_reply_ok(struct pending *p, uint32_t stream_id, uint32_t topic_id, uint32_t pid, uint64_t base)
{
	struct wire_buf wb;
	wire_buf_init(&wb);
	wire_put_u32(&wb, 1);
	wire_put_u32(&wb, stream_id);
	wire_put_u32(&wb, topic_id);
	wire_put_u32(&wb, pid);
	wire_put_u64(&wb, base);
	finish_buf(p, 0, false, &wb);
	wire_buf_free(&wb);
}

/*
 * A forwarded send's outcome, leader to origin: req_id u64, status u32 (Iggy code, 0 = ok), base offset u64
 * (UINT64_MAX: every message was a retry already stored), the entry's Raft index u64 (0: none).
 */
static void send_reply_remote(struct srv *s, uint64_t origin, uint64_t req_id, uint32_t status, uint64_t base,
			      uint64_t index)
{
	uint8_t out[28];
	record_put64(out, req_id);
	record_put32(out + 8, status);
	record_put64(out + 12, base);
	record_put64(out + 20, index);
	uv_buf_t b = uv_buf_init((char *)out, sizeof(out));
	clu_send(s->clu, origin, CLU_KIND_SEND_REPLY, &b, 1);
}

static size_t drop_duplicates(const struct dedup *d, uint8_t *batch, size_t len);

static void swait_finish(struct part *pt, struct swait *w, int status, uint64_t base_offset)
{
	uint32_t code = status == 0 ? 0 : E_ERROR;
	if (w->p != NULL) {
		if (code == 0)
			send_reply_ok(w->p, pt->stream_id, pt->topic_id, pt->pid, base_offset);
		else
			finish(w->p, code, false, NULL, 0);
	} else {
		send_reply_remote(pt->srv, w->origin, w->req_id, code, base_offset, w->index);
	}
	free(w);
}

/*
 * The leader takes a verified batch: drops retried ids, stamps it with the next offset and submits it to
 * the partition's group; the reply goes once the entry commits (part_apply). p is a local request, or
 * NULL for one forwarded by `origin`. Returns 0 (the reply will come) or the Iggy code to answer now.
 */
static uint32_t send_local(struct part *pt, struct pending *p, uint64_t origin, uint64_t req_id, uint8_t *batch,
			   size_t blen)
{
	struct srv *s = pt->srv;
	if (s->clock_skewed)
		return E_NOT_ACCEPTED; /* its clock is not trusted: it stamps nothing (clock_tick hands over) */
	if (pt->dd != NULL) {
		blen = drop_duplicates(pt->dd, batch, blen);
		if (blen == 0) {
			/* Every message is a retry of one already stored: committed, offsets not reported. */
			if (p != NULL) {
				uint8_t zero[4] = {0};
				finish(p, 0, false, zero, sizeof(zero));
			} else {
				send_reply_remote(s, origin, req_id, 0, UINT64_MAX, 0);
			}
			return 0;
		}
	}
	struct swait *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return E_ERROR;
	plog_stamp(pt->log, batch, pt->pid);
	uint64_t index, term;
	int rv = clu_group_submit(pt->g, batch, (uint32_t)blen, &index, &term);
	if (rv != 0) {
		free(w);
		if (rv == -EPERM || rv == -EAGAIN || rv == -ENOSPC)
			return E_NOT_ACCEPTED; /* lost the leadership, or too much uncommitted: re-issue */
		glog_warn(TAG, "send to partition %" PRIu32 " refused: %s", pt->pid, strerror(-rv));
		return E_ERROR;
	}
	if (pt->dd != NULL)
		each_frame(batch, blen, add_frame_id, pt->dd);
	if (p == NULL) {
		/* Where the forwarded batch went, before anything can say it committed (fwd_settle). */
		uint8_t out[24];
		record_put64(out, req_id);
		record_put64(out + 8, index);
		record_put64(out + 16, term);
		uv_buf_t ub = uv_buf_init((char *)out, sizeof(out));
		clu_send(s->clu, origin, CLU_KIND_SEND_PLACED, &ub, 1);
	}
	w->p = p;
	w->origin = origin;
	w->req_id = req_id;
	w->index = index;
	w->term = term;
	w->deadline = mono_ms() + SEND_DEADLINE_MS;
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	if (st.applied_index >= index) {
		/* Committed and applied inside the submit (a single voter whose policy does not wait for the disk). */
		swait_finish(pt, w, 0, record_le64(batch + 8));
		return 0;
	}
	/* Indexes only grow on a leader, so appending keeps the list in index order. */
	if (pt->waits_tail != NULL) {
		pt->waits_tail->next = w;
	} else {
		pt->waits = w;
		house_arm(s); /* the deadline of the oldest waiting send */
	}
	pt->waits_tail = w;
	return 0;
}

/*
 * A send for a partition this node replicates but does not lead: the verified batch goes to the leader
 * (`to`) over the node-to-node link as SEND_FWD (node/cluster.h), fenced to the leader's term as this
 * replica knows it; the leader says where it appended it (SEND_PLACED) and its outcome comes back as
 * SEND_REPLY (send_reply_remote), or this replica's log settles it (fwd_settle). `to` 0: no leader known
 * (an election), 58.
 */
/*
 * Sends SEND_FWD to `to` and returns its waiter (p and the relay fields are the caller's), or NULL. pt is
 * this node's replica of the partition (NULL: it hosts none, and the forward is not fenced).
 */
static struct fwd *fwd_send(struct srv *s, struct part *pt, uint64_t to, uint64_t gid, uint32_t stream_id,
			    uint32_t topic_id, uint32_t pid, const uint8_t *batch, size_t blen)
{
	struct fwd *f = calloc(1, sizeof(*f));
	if (to == 0 || to == clu_node_id(s->clu) || f == NULL) {
		free(f);
		return NULL;
	}
	f->req_id = ++s->next_req;
	f->stream_id = stream_id;
	f->topic_id = topic_id;
	f->partition_id = pid;
	f->deadline = mono_ms() + SEND_DEADLINE_MS;
	f->to = to;
	if (pt != NULL) {
		struct rgroup_status st;
		clu_group_status(pt->g, &st);
		if (st.leader_id == to) {
			f->term = st.term;
			f->applied_at = st.applied_index;
		}
	}
	uint8_t h[24];
	record_put64(h, f->req_id);
	record_put64(h + 8, gid);
	record_put64(h + 16, f->term);
	uv_buf_t b[2] = {uv_buf_init((char *)h, sizeof(h)), uv_buf_init((char *)batch, (unsigned)blen)};
	if (clu_send(s->clu, to, CLU_KIND_SEND_FWD, b, 2) != 0) {
		free(f);
		return NULL;
	}
	f->next = s->fwds;
	s->fwds = f;
	house_arm(s);
	return f;
}

static void send_forward(struct srv *s, struct pending *p, struct part *pt, uint64_t to, uint64_t gid,
			 uint32_t stream_id, uint32_t topic_id, uint32_t pid, const uint8_t *batch, size_t blen)
{
	struct fwd *f = fwd_send(s, pt, to, gid, stream_id, topic_id, pid, batch, blen);
	if (f == NULL)
		finish(p, E_NOT_ACCEPTED, false, NULL, 0); /* no leader known (an election): re-issue */
	else
		f->p = p;
}

/*
 * A replica that does not lead and cannot reach a leader (none known, or no link to it: a partition of
 * the network where it still sees another replica, the "bridge" topology) asks a connected replica to
 * relay the send: unfenced, so that replica passes it on to its own leader, fenced by its own view, and
 * settles it from its own log (fwd_settle) as if it were its producer's. This replica only relays the
 * answer (via_peer): 58 still means certainly not admitted, and a relay that never answers leaves the
 * outcome unknown (1 at the deadline). Returns false (nothing sent) when the leader is reachable or no
 * other replica is connected; the caller then forwards as usual.
 */
#define RELAY_HEARD_MS 3000 /* a relay must have been heard within (an idle link carries a keepalive at least every 2 s) */

static bool send_via_peer(struct srv *s, struct pending *p, struct part *pt, const struct meta_topic *t,
			  const uint8_t *batch, size_t blen)
{
	uint64_t leader = clu_group_leader_id(pt->g), self = clu_node_id(s->clu);
	if ((leader != 0 && clu_connected(s->clu, leader)) || pt->pid >= t->n_partitions)
		return false;
	/*
	 * The replica heard most lately, and within RELAY_HEARD_MS: a link that is still up may lead into the
	 * cut (the former leader's, until its idle timeout closes it), and that one has gone silent.
	 */
	const struct meta_partition *mp = &t->partitions[pt->pid];
	uint64_t best = 0, best_silent = RELAY_HEARD_MS;
	for (uint32_t i = 0; i < mp->n_replicas; i++) {
		uint64_t r = mp->replicas[i], silent = clu_silent_ms(s->clu, r);
		if (r != self && r != leader && silent < best_silent) {
			best = r;
			best_silent = silent;
		}
	}
	struct fwd *f = best != 0 ? fwd_send(s, NULL, best, pt->gid, pt->stream_id, pt->topic_id, pt->pid, batch, blen)
				  : NULL;
	if (f == NULL)
		return false;
	f->p = p;
	f->via_peer = true;
	s->sends_via_peer++;
	return true;
}

/*
 * The node a send or poll of a partition this node hosts no replica of goes to: the first replica in
 * placement order that is connected (the first is the preferred leader, which leadership returns to once
 * it is connected, see balance_leaders), or 0. *others says whether any replica is elsewhere.
 */
static uint64_t replica_to_ask(struct srv *s, const struct meta_partition *mp, bool *others)
{
	uint64_t self = clu_node_id(s->clu);
	*others = false;
	for (uint32_t i = 0; i < mp->n_replicas; i++) {
		if (mp->replicas[i] == self)
			continue;
		*others = true;
		if (clu_connected(s->clu, mp->replicas[i]))
			return mp->replicas[i];
	}
	return 0;
}

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
};

static struct client_addr client_addr_of(struct srv *s, const struct clu_node *cn, bool single)
{
	static char own_host[256];
	char h[256];
	uint16_t tcp = 0, quic = 0, http = 0;
	snprintf(own_host, sizeof(own_host), "127.0.0.1");
	config_split_address(s->cfg->tcp.address, own_host, sizeof(own_host), &tcp);
	config_split_address(s->cfg->quic.address, h, sizeof(h), &quic);
	config_split_address(s->cfg->http.address, h, sizeof(h), &http);
	struct client_addr a = {single ? own_host : cn->host, cn->tcp_port != 0 ? cn->tcp_port : tcp,
				cn->quic_port != 0 ? cn->quic_port : quic, cn->http_port != 0 ? cn->http_port : http};
	if (!s->cfg->quic.enabled)
		a.quic = 0;
	if (!s->cfg->http.enabled)
		a.http = 0;
	const struct meta_node *mn = meta_node(s->meta, (uint32_t)cn->id);
	if (mn != NULL) {
		if (mn->adv_host[0] != '\0')
			a.host = mn->adv_host;
		a.tcp = mn->adv_tcp_port != 0 ? mn->adv_tcp_port : a.tcp;
		a.quic = mn->adv_quic_port != 0 ? mn->adv_quic_port : a.quic;
		a.http = mn->adv_http_port != 0 ? mn->adv_http_port : a.http;
	}
	return a;
}

/* Redirect mode: status NotLeader with the leader's id, epoch and endpoint. */
static void not_leader(struct srv *s, struct pending *p, struct part *pt)
{
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	const struct clu_node *n = st.leader_id != 0 ? clu_node(s->clu, st.leader_id) : NULL;
	struct wire_buf wb;
	wire_buf_init(&wb);
	wire_put_u32(&wb, n != NULL ? (uint32_t)st.leader_id : 0);
	wire_put_u64(&wb, n != NULL ? st.term : 0);
	const struct clu_node *all;
	struct client_addr a = {"", 0, 0, 0};
	if (n != NULL)
		a = client_addr_of(s, n, clu_nodes(s->clu, &all) == 1);
	wire_put_str8(&wb, a.host, strlen(a.host));
	wire_put_u16(&wb, a.tcp);
	finish_buf(p, E_GALGO_NOT_LEADER, false, &wb);
	wire_buf_free(&wb);
}

/* GetPartitionLeaders (docs/protocol-extensions.md). */
static void put_partition_leaders(struct srv *s, struct wire_buf *b)
{
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	wire_put_u32(b, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		struct client_addr a = client_addr_of(s, &nodes[i], false);
		wire_put_u32(b, (uint32_t)nodes[i].id);
		wire_put_str8(b, a.host, strlen(a.host));
		wire_put_u16(b, a.tcp);
		wire_put_u16(b, a.quic);
		wire_put_u16(b, a.http);
	}
	struct rgroup_status ms;
	clu_group_status(s->mg, &ms);
	wire_put_u32(b, (uint32_t)ms.leader_id);
	wire_put_u64(b, ms.term);
	size_t count_at = b->len;
	wire_put_u32(b, 0);
	uint32_t count = 0;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		const struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
			const struct meta_topic *t = st->topics[k];
			struct tparts *tp = t != NULL ? tparts_find(s, st->id, t->id) : NULL;
			for (uint32_t pid = 0; t != NULL && pid < t->n_partitions; pid++) {
				struct part *pt = tp != NULL && pid < tp->n ? tp->pp[pid] : NULL;
				struct rgroup_status gs = {0};
				if (pt != NULL)
					clu_group_status(pt->g, &gs);
				wire_put_u32(b, st->id);
				wire_put_u32(b, t->id);
				wire_put_u32(b, pid);
				wire_put_u32(b, (uint32_t)gs.leader_id);
				wire_put_u64(b, gs.leader_id != 0 ? gs.term : 0);
				const struct meta_partition *mp = &t->partitions[pid];
				wire_put_u8(b, mp->n_replicas);
				for (uint32_t r = 0; r < mp->n_replicas; r++)
					wire_put_u32(b, mp->replicas[r]);
				count++;
			}
		}
	}
	if (b->err == 0)
		record_put32(b->p + count_at, count);
}

/*
 * GetPartitionLeaders' node-status section (flag 1; docs/protocol-extensions.md): per roster node, in the
 * order of the node list, whether this node's node-to-node link to it is up and its role in the
 * metadata group as this node's configuration has it.
 */
static void put_node_status(struct srv *s, struct wire_buf *b)
{
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	struct rgroup_status ms;
	clu_group_status(s->mg, &ms);
	struct rgroup_member m[64];
	size_t nm = clu_group_members(s->mg, m, sizeof(m) / sizeof(m[0]));
	if (nm > sizeof(m) / sizeof(m[0]))
		nm = sizeof(m) / sizeof(m[0]);
	for (size_t i = 0; i < n; i++) {
		uint8_t role = 0; /* not a member of the metadata group */
		for (size_t k = 0; k < nm; k++)
			if (m[k].id == nodes[i].id)
				role = m[k].role == RAFT_VOTER ? (ms.leader_id == nodes[i].id ? 1 : 2)
								: m[k].role == RAFT_STANDBY ? 3 : 4;
		wire_put_u8(b, clu_connected(s->clu, nodes[i].id) ? 1 : 0);
		wire_put_u8(b, role);
	}
}

static void on_send_fwd(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	if (len < 24 + RECORD_BATCH_HEADER_SIZE)
		return;
	uint8_t *b = (uint8_t *)buf; /* rnet's receive buffer, ours during the call: stamped in place */
	uint64_t req = record_le64(b), gid = record_le64(b + 8), fence = record_le64(b + 16);
	struct part *pt = part_by_gid(s, gid);
	uint32_t code = E_NOT_ACCEPTED;
	struct rgroup_status st = {0};
	if (pt != NULL)
		clu_group_status(pt->g, &st);
	/*
	 * A fenced forward is taken only in the term it names: its sender settles it from its own log by that
	 * term (fwd_settle), so a leader deposed and elected again, or one that resumes after a pause with the
	 * forward still in its socket after its term ended, must not append it in another term.
	 */
	if (pt != NULL && clu_group_leader(pt->g) && (fence == 0 || fence == st.term)) {
		code = record_batch_verify(b + 24, len - 24, true) == 0 ? send_local(pt, NULL, from, req, b + 24, len - 24)
									: E_INVALID_COMMAND;
	} else if (pt != NULL && !clu_group_leader(pt->g) && fence == 0) {
		/*
		 * Unfenced: from a node hosting no replica (it picked the first connected one), or from a replica
		 * that cannot reach the leader (send_via_peer). Passed on to the leader once, fenced; a replica's
		 * own fenced forward is not passed on (it asked the leader it knew), so a batch makes two hops at
		 * most.
		 */
		struct fwd *f = fwd_send(s, pt, clu_group_leader_id(pt->g), gid, pt->stream_id, pt->topic_id, pt->pid,
					 b + 24, len - 24);
		if (f != NULL) {
			f->relay = true;
			f->relay_to = from;
			f->relay_req = req;
			return;
		}
	}
	if (code != 0)
		send_reply_remote(s, from, req, code, 0, 0);
}

static void on_send_reply(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	(void)from;
	if (len != 28)
		return;
	const uint8_t *b = buf;
	uint64_t req = record_le64(b);
	for (struct fwd **pp = &s->fwds; *pp != NULL; pp = &(*pp)->next) {
		struct fwd *f = *pp;
		if (f->req_id != req || f->acked)
			continue;
		uint32_t code = record_le32(b + 8);
		uint64_t base = record_le64(b + 12), index = record_le64(b + 20);
		if (f->relay) {
			*pp = f->next;
			send_reply_remote(s, f->relay_to, f->relay_req, code, base, index);
			free(f);
			return;
		}
		/*
		 * Committed. The reply waits until this replica has applied the entry too, so that the client
		 * reads its write here (polls are served from the local replica).
		 */
		struct tparts *tp = tparts_find(s, f->stream_id, f->topic_id);
		struct part *pt = tp != NULL && f->partition_id < tp->n ? tp->pp[f->partition_id] : NULL;
		if (code == 0 && index != 0 && pt != NULL && part_applied(pt) < index && !f->via_peer) {
			f->acked = true;
			f->index = index;
			f->base = base;
			return;
		}
		fwd_answer(s, pp, code, base, index);
		return;
	}
}

/* SEND_PLACED: where the leader appended a batch this node forwarded (node/cluster.h). */
static void on_send_placed(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	if (len != 24)
		return;
	const uint8_t *b = buf;
	uint64_t req = record_le64(b);
	for (struct fwd **pp = &s->fwds; *pp != NULL; pp = &(*pp)->next) {
		struct fwd *f = *pp;
		if (f->req_id != req)
			continue;
		if (f->acked || f->placed || f->term == 0 || f->to != from)
			return;
		struct tparts *tp = tparts_find(s, f->stream_id, f->topic_id);
		struct part *pt = tp != NULL && f->partition_id < tp->n ? tp->pp[f->partition_id] : NULL;
		if (pt == NULL)
			return;
		f->placed = true;
		f->index = record_le64(b + 8);
		f->placed_term = record_le64(b + 16);
		fwd_check_placed(pt, pp, part_applied(pt));
		return;
	}
}

static uint32_t batch_error(int rec_err)
{
	switch (rec_err) {
	case RECORD_E_FRAME_CHECK:
		return E_INVALID_MESSAGE_CHECKSUM;
	case RECORD_E_BATCH_CHECK:
		return E_INVALID_BATCH_CHECKSUM;
	case RECORD_E_RESERVED:
		return 4101;
	default:
		return E_INVALID_COMMAND;
	}
}

struct id_ref {
	const uint8_t *id;
	uint32_t index;
};

static int id_ref_cmp(const void *a, const void *b)
{
	const struct id_ref *x = a, *y = b;
	int c = memcmp(x->id, y->id, 16);
	return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

/*
 * Drops the messages of a verified batch whose id the window remembers or that repeat an id earlier in
 * the same batch (id 0 never counts). Returns the batch's new length, 0 when every message was dropped.
 */
static size_t drop_duplicates(const struct dedup *d, uint8_t *batch, size_t len)
{
	uint32_t n = record_le32(batch + 48);
	struct id_ref *ids = malloc(n * sizeof(*ids));
	bool *keep = malloc(n * sizeof(*keep));
	size_t out = len;
	if (ids == NULL || keep == NULL)
		goto done; /* keep everything: at-least-once, as without a window */
	size_t f = RECORD_BATCH_HEADER_SIZE;
	bool all = true;
	for (uint32_t i = 0; i < n; i++) {
		ids[i] = (struct id_ref){batch + f + 8, i};
		keep[i] = id_is_zero(batch + f + 8) || !dedup_seen(d, batch + f + 8);
		f += RECORD_FRAME_HEADER_SIZE + (size_t)record_le32(batch + f + 36) + record_le32(batch + f + 32);
	}
	qsort(ids, n, sizeof(*ids), id_ref_cmp);
	for (uint32_t i = 1; i < n; i++)
		if (memcmp(ids[i].id, ids[i - 1].id, 16) == 0 && !id_is_zero(ids[i].id))
			keep[ids[i].index] = false;
	for (uint32_t i = 0; i < n; i++)
		all &= keep[i];
	if (!all)
		out = record_batch_filter(batch, len, keep);
done:
	free(ids);
	free(keep);
	return out;
}

static void handle_send(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	uint32_t mlen = wire_get_u32(&r);
	size_t start = r.pos;
	struct wire_id sid, tid;
	struct wire_partitioning part;
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	wire_get_partitioning(&r, &part);
	uint32_t count = wire_get_u32(&r);
	if (wire_rd_error(&r) != 0 || r.pos - start != mlen || len - r.pos < RECORD_BATCH_HEADER_SIZE) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = find_stream(s, &sid);
	struct meta_topic *t = find_topic(st, &tid);
	if (t == NULL) {
		finish(p, E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!auth_allowed(session_user(ss), AUTH_SEND_MESSAGES, st->id, t->id)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct tparts *tp = tparts_find(s, st->id, t->id);
	if (tp == NULL || tp->n == 0) {
		finish(p, E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	uint32_t pid;
	if (part.kind == WIRE_PART_PARTITION_ID)
		pid = part.partition_id;
	else if (part.kind == WIRE_PART_MESSAGES_KEY)
		pid = XXH32(part.key.ptr, part.key.len, 0) % tp->n;
	else
		pid = tp->rr++ % tp->n;
	if (pid >= tp->n) {
		finish(p, E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	uint8_t *batch = body + r.pos;
	size_t blen = len - r.pos;
	int rv = record_batch_verify(batch, blen, true);
	if (rv != 0) {
		finish(p, batch_error(rv), false, NULL, 0);
		return;
	}
	if (record_le32(batch + 48) != count) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct part *pt = tp->pp[pid];
	if (tp->logs[pid] == NULL && pid < t->n_partitions) {
		/*
		 * No replica here: to the preferred leader if connected (else the next replica). A replica that
		 * does not lead answers 58 and the SDK sends again (leadership returns to the preferred replica).
		 */
		const struct meta_partition *mp = &t->partitions[pid];
		bool others;
		uint64_t to = replica_to_ask(s, mp, &others);
		if (!others) {
			finish(p, E_RESOURCE_NOT_FOUND, false, NULL, 0); /* placed here alone, and not open */
			return;
		}
		send_forward(s, p, NULL, to, clu_partition_gid(t->stream_id, t->id, t->created_at, pid, mp->created_at),
			     t->stream_id, t->id, pid, batch, blen);
		return;
	}
	if (pt == NULL) {
		finish(p, E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!clu_group_leader(pt->g)) {
		if (ss->redirect)
			not_leader(s, p, pt);
		else if (!send_via_peer(s, p, pt, t, batch, blen))
			send_forward(s, p, pt, clu_group_leader_id(pt->g), pt->gid, pt->stream_id, pt->topic_id, pt->pid,
				     batch, blen);
		return;
	}
	uint32_t st_code = send_local(pt, p, 0, 0, batch, blen);
	if (st_code != 0)
		finish(p, st_code, false, NULL, 0);
}

/* Resolves the consumer of a poll or offset request: kind and numeric id (a group's id). */
static int resolve_consumer(const struct meta_topic *t, const struct wire_consumer *wc, uint8_t *kind, uint32_t *id)
{
	*kind = wc->kind;
	if (wc->kind == WIRE_CONSUMER_GROUP) {
		const struct meta_group *g = find_group(t, &wc->id);
		if (g == NULL)
			return META_E_GROUP_NOT_FOUND;
		*id = g->id;
		return 0;
	}
	*id = wc->id.kind == WIRE_ID_NUMERIC ? wc->id.num : XXH32(wc->id.name.ptr, wc->id.name.len, 0);
	return 0;
}

/*
 * The offset after the last message consumers may see: for fsync topics what is durable (what was
 * acknowledged), for the other policies what is written (they acknowledge on write).
 */
/*
 * Whether this replica may answer a poll in a cluster: it knows a leader, has applied everything it knows
 * to be committed, and either its whole log is committed or an entry of the current term is (before that,
 * entries the previous leader committed may be unknown to a new leader, dissertation §6.4, and to its
 * followers). Right after a restart or an election a replica therefore answers 58 (TransientNotAccepted)
 * for a moment instead of a stale or empty reply. Not closed: a follower restarted empty that has heard
 * from the leader but not yet received entries holds a fully committed log of one entry, and answers
 * empty polls until it catches up. A single node is always readable (it settles before it says ready).
 */
static bool part_readable(struct srv *s, struct part *pt)
{
	const struct clu_node *nodes;
	if (pt == NULL || clu_nodes(s->clu, &nodes) == 1)
		return true;
	struct rgroup_status st;
	clu_group_status(pt->g, &st);
	if (st.leader_id == 0 || st.applied_index < st.commit_index)
		return false;
	/*
	 * A replica whose whole log is known committed lacks no committed entry (a leader holds every one, a
	 * follower learnt its commit index from the leader): libraft appends no barrier for a new leader whose
	 * log is fully committed, so waiting for one would wait forever.
	 */
	if (st.commit_index == st.last_index)
		return true;
	/* (A follower likewise: until it learns a commit of the current term, its commit index may be old.) */
	struct record_env env;
	return st.commit_index > 0 && plog_entry_at(pt->log, st.commit_index, &env) == 0 && env.term == st.term;
}

/* The offset after the last message a consumer may read: the last committed one's. */
static uint64_t served_next(struct srv *s, const struct meta_topic *t, uint32_t pid)
{
	struct tparts *tp = tparts_find(s, t->stream_id, t->id);
	struct part *pt = tp != NULL && pid < tp->n ? tp->pp[pid] : NULL;
	return pt != NULL ? pt->committed_next : 0;
}

/*
 * Where a poll's answer goes: a request of a local session (p), or the node that forwarded the poll to
 * this replica (p NULL; origin and its request id), as POLL_REPLY.
 */
struct poll_to {
	struct pending *p;
	uint64_t origin, req_id;
};

/* A poll once its stream, topic and consumer are resolved: what POLL_FWD carries (node/cluster.h). */
struct poll_args {
	uint32_t pid;
	uint8_t kind;              /* WIRE_CONSUMER_SINGLE or WIRE_CONSUMER_GROUP */
	uint32_t cid;              /* the consumer's numeric id, or the group's id */
	uint8_t strat;             /* WIRE_POLL_* */
	uint64_t value;
	uint32_t count;
	uint8_t auto_commit;
};

/*
 * POLL_FWD and POLL_REPLY (bodies specified in node/cluster.h). A reply's messages are at most what a
 * client frame can carry (the origin relays them in one), so a reply always fits a node-to-node message.
 */
#define POLL_FWD_LEN 47u
#define POLL_REPLY_HDR 20u /* req_id u64, status u32, metadata index u64 */
_Static_assert(POLL_REPLY_HDR + (uint64_t)FRAME_MAX_SIZE - FRAME_HEADER_SIZE <= CLU_MAX_MESSAGE_BYTES,
	       "a forwarded poll's reply must fit a node-to-node message");
/*
 * A forwarded poll unanswered by then is answered 58 (the SDK polls again). Longer than a replica may
 * take to store an auto-commit offset (META_DEADLINE_MS), so that a poll whose offset was stored is not
 * answered "never admitted" while its reply is still on its way.
 */
#define POLL_FWD_DEADLINE_MS (META_DEADLINE_MS + 2000u)

static void poll_reply_remote(struct srv *s, uint64_t origin, uint64_t req_id, uint32_t status, uint64_t meta_index,
			      const uint8_t *body, size_t len)
{
	uint8_t h[POLL_REPLY_HDR];
	record_put64(h, req_id);
	record_put32(h + 8, status);
	record_put64(h + 12, status == 0 ? meta_index : 0);
	uv_buf_t b[2] = {uv_buf_init((char *)h, sizeof(h)), uv_buf_init((char *)body, (unsigned)len)};
	int rv = clu_send(s->clu, origin, CLU_KIND_POLL_REPLY, b, status == 0 && len > 0 ? 2 : 1);
	if (rv != 0)
		glog_warn(TAG, "poll reply to node %" PRIu64 " not sent: %s", origin, strerror(-rv));
}

/*
 * The body of a forwarded poll's reply: the prefix and the slice's bytes, copied (pread for the pieces
 * that are file ranges, on the loop: the page cache serves them in the common case of recent messages).
 * -EMSGSIZE when a client frame could not carry it (the local path then answers an error as well).
 */
static int poll_body_copy(const uint8_t prefix[16], const struct plog_slice *sl, uint8_t **out, size_t *len)
{
	uint64_t n = 16 + (sl != NULL ? sl->bytes : 0);
	if (FRAME_HEADER_SIZE + n > FRAME_MAX_SIZE)
		return -EMSGSIZE;
	uint8_t *b = malloc((size_t)n);
	if (b == NULL)
		return -ENOMEM;
	memcpy(b, prefix, 16);
	int rv = sl != NULL ? plog_slice_copy(sl, b + 16) : 0;
	if (rv != 0) {
		free(b);
		return rv;
	}
	*out = b;
	*len = (size_t)n;
	return 0;
}

/*
 * Answers a poll: status (0 or an Iggy code), the 16-byte prefix (status 0) and the messages (sl, taken
 * over; NULL: none).
 */
static void poll_answer(struct srv *s, const struct poll_to *to, uint32_t status, const uint8_t *prefix,
			struct plog_slice *sl)
{
	if (to->p != NULL) {
		if (status == 0 && sl != NULL) {
			to->p->slice = *sl;
			to->p->has_slice = true;
		} else if (sl != NULL) {
			plog_slice_release(sl);
		}
		finish(to->p, status, false, status == 0 ? prefix : NULL, status == 0 ? 16 : 0);
		return;
	}
	uint8_t *body = NULL;
	size_t len = 0;
	if (status == 0) {
		int rv = poll_body_copy(prefix, sl, &body, &len);
		if (rv != 0) {
			glog_error(TAG, "forwarded poll read failed: %s", strerror(-rv));
			status = E_ERROR;
		}
	}
	if (sl != NULL)
		plog_slice_release(sl);
	poll_reply_remote(s, to->origin, to->req_id, status, 0, body, len);
	free(body);
}

/*
 * The reply of a poll with auto-commit leaves once the stored offset is applied here; a forwarded one
 * tells its origin the offset's metadata index, so that the origin relays it once applied there too.
 */
/*
 * The offset of an auto-commit poll is stored (or not): the messages go out only once it is. A poll whose
 * offset could not be stored (this node lost the metadata leadership, or no leader answered in time)
 * answers error 1 and no messages: had it answered them, the next poll with the Next strategy would
 * deliver them again (seen by the jepsen suite on a metadata leader resumed after a pause). Not 58: the
 * store may still commit (an entry of a deposed leader can), and then these messages count as consumed.
 */
static void poll_commit_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)rv;
	(void)res;
	if (status != 0) {
		glog_warn(TAG, "auto-commit of a consumer offset failed: %s; the poll answers error 1",
			  strerror(-status));
		if (w->p != NULL) {
			if (w->p->has_slice) {
				plog_slice_release(&w->p->slice);
				w->p->has_slice = false;
			}
			finish(w->p, E_ERROR, false, NULL, 0);
		} else {
			poll_reply_remote(s, w->origin, w->origin_req, E_ERROR, 0, NULL, 0);
		}
		return;
	}
	if (w->p != NULL)
		finish(w->p, 0, false, w->body.p, w->body.len);
	else
		poll_reply_remote(s, w->origin, w->origin_req, 0, w->index, w->body.p, w->body.len);
}

/*
 * Serves a poll from this node's replica of the partition (its log l; pt NULL only for a log whose group
 * did not start): the one path of local polls and of polls other nodes forward here.
 */
static void poll_serve(struct srv *s, const struct meta_topic *t, struct part *pt, struct plog *l,
		       const struct poll_args *a, const struct poll_to *to)
{
	if (!part_readable(s, pt)) {
		poll_answer(s, to, E_NOT_ACCEPTED, NULL, NULL); /* the SDK asks again shortly */
		return;
	}
	uint32_t pid = a->pid;
	uint64_t next = served_next(s, t, pid), first = plog_first_offset(l);
	uint64_t current = next > 0 ? next - 1 : 0;
	uint64_t from = 0;
	bool empty = next == first || a->count == 0;
	const struct meta_offset *stored = meta_offset_get(t, a->kind, a->cid, pid);
	switch (a->strat) {
	case WIRE_POLL_OFFSET:
		from = a->value;
		break;
	case WIRE_POLL_TIMESTAMP:
		if (plog_find_timestamp(l, a->value, &from) != 0)
			empty = true;
		break;
	case WIRE_POLL_FIRST:
		from = first;
		break;
	case WIRE_POLL_LAST:
		from = next > a->count ? next - a->count : 0;
		break;
	case WIRE_POLL_NEXT:
		from = stored != NULL ? stored->offset + 1 : 0;
		break;
	default:
		empty = true;
		break;
	}
	struct plog_slice sl = {0};
	bool has = false;
	if (!empty && from < next) {
		int rv = plog_read(l, from, a->count, POLL_MAX_BYTES, next - 1, &sl);
		if (rv != 0) {
			/*
			 * A damaged stored record (it failed its checksums: plog fenced and logged it) is never served;
			 * a poll that starts at it gets Iggy's CannotReadMessage.
			 */
			if (rv != -EBADMSG)
				glog_error(TAG, "poll read failed: %s", strerror(-rv));
			plog_slice_release(&sl);
			poll_answer(s, to, rv == -EBADMSG ? E_CANNOT_READ_MESSAGE : E_ERROR, NULL, NULL);
			return;
		}
		if (sl.messages == 0)
			plog_slice_release(&sl);
		else
			has = true;
	}
	uint32_t n = has ? sl.messages : 0;
	uint8_t prefix[16];
	record_put32(prefix, pid);
	record_put64(prefix + 4, current);
	record_put32(prefix + 12, n);
	if (n > 0 && a->auto_commit) {
		/* A forwarded poll's reply is copied first: a read that fails then stores no offset. */
		uint8_t *body = NULL;
		size_t len = 0;
		if (to->p == NULL) {
			int rv = poll_body_copy(prefix, &sl, &body, &len);
			if (rv != 0) {
				glog_error(TAG, "forwarded poll read failed: %s", strerror(-rv));
				plog_slice_release(&sl);
				poll_answer(s, to, E_ERROR, NULL, NULL);
				return;
			}
		}
		struct meta_cmd c = {.type = META_STORE_OFFSET, .ts = now_us(), .stream_id = t->stream_id,
				     .topic_id = t->id, .consumer_kind = a->kind, .consumer_id = a->cid,
				     .partition_id = pid, .offset = sl.last_offset};
		struct mwait *w = meta_submit(s, &c, poll_commit_done);
		if (w != NULL) {
			/* A following poll with the next strategy then starts after these messages. */
			if (to->p != NULL) {
				w->p = to->p;
				wire_put_bytes(&w->body, prefix, sizeof(prefix));
				to->p->slice = sl;
				to->p->has_slice = true;
			} else {
				w->origin = to->origin;
				w->origin_req = to->req_id;
				w->body.p = body;
				w->body.len = w->body.cap = len;
				plog_slice_release(&sl);
			}
			mwait_push(s, w);
			return;
		}
		free(body);
	}
	poll_answer(s, to, 0, prefix, has ? &sl : NULL);
}

/*
 * A poll of a partition this node hosts no replica of goes to a replica that is connected, in placement
 * order (the first is the preferred leader, so polls tend to go where the writes are), as POLL_FWD; its
 * POLL_REPLY is relayed (on_poll_reply). No replica connected: 58, the SDK polls again.
 */
/* Sends POLL_FWD for `a` to a connected replica; the waiter (its p set) or NULL with p answered. */
static struct pfwd *poll_forward_to(struct srv *s, struct pending *p, const struct meta_topic *t,
				    const struct poll_args *a)
{
	const struct meta_partition *mp = &t->partitions[a->pid];
	bool others;
	uint64_t to = replica_to_ask(s, mp, &others);
	if (!others) {
		finish(p, META_E_PARTITION_NOT_FOUND, false, NULL, 0); /* placed here alone, and not open */
		return NULL;
	}
	struct pfwd *f = to != 0 ? calloc(1, sizeof(*f)) : NULL;
	if (f == NULL) {
		finish(p, E_NOT_ACCEPTED, false, NULL, 0);
		return NULL;
	}
	f->req_id = ++s->next_req;
	f->p = p;
	f->deadline = mono_ms() + POLL_FWD_DEADLINE_MS;
	uint8_t b[POLL_FWD_LEN];
	record_put64(b, f->req_id);
	record_put64(b + 8, clu_partition_gid(t->stream_id, t->id, t->created_at, a->pid, mp->created_at));
	record_put32(b + 16, t->stream_id);
	record_put32(b + 20, t->id);
	record_put32(b + 24, a->pid);
	b[28] = a->kind;
	record_put32(b + 29, a->cid);
	b[33] = a->strat;
	record_put64(b + 34, a->value);
	record_put32(b + 42, a->count);
	b[46] = a->auto_commit;
	uv_buf_t ub = uv_buf_init((char *)b, sizeof(b));
	if (clu_send(s->clu, to, CLU_KIND_POLL_FWD, &ub, 1) != 0) {
		free(f);
		finish(p, E_NOT_ACCEPTED, false, NULL, 0);
		return NULL;
	}
	f->next = s->pfwds;
	s->pfwds = f;
	house_arm(s);
	return f;
}


/*
 * The replica's side of a forwarded poll. Where the two nodes' metadata disagree on the partition (one
 * of them lags: the topic or partition unknown here, or another incarnation of it) the answer is 58 and
 * the SDK asks again; a partition the metadata here places elsewhere and that is no longer open here is
 * 3007; one placed here but not open yet is 58.
 */
static void on_poll_fwd(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	if (len != POLL_FWD_LEN)
		return;
	const uint8_t *b = buf;
	uint64_t gid = record_le64(b + 8);
	uint32_t sid = record_le32(b + 16), tid = record_le32(b + 20);
	struct poll_args a = {.pid = record_le32(b + 24), .kind = b[28], .cid = record_le32(b + 29), .strat = b[33],
			      .value = record_le64(b + 34), .count = record_le32(b + 42), .auto_commit = b[46]};
	struct poll_to to = {.p = NULL, .origin = from, .req_id = record_le64(b)};
	const struct meta_stream *st = meta_stream(s->meta, sid);
	const struct meta_topic *t = st != NULL ? meta_topic(st, tid) : NULL;
	struct part *pt = part_by_gid(s, gid);
	uint32_t code = 0;
	if ((a.kind != WIRE_CONSUMER_SINGLE && a.kind != WIRE_CONSUMER_GROUP) || a.auto_commit > 1)
		code = E_INVALID_COMMAND;
	else if (t == NULL || a.pid >= t->n_partitions ||
		 clu_partition_gid(sid, tid, t->created_at, a.pid, t->partitions[a.pid].created_at) != gid)
		code = E_NOT_ACCEPTED;
	else if (pt == NULL)
		code = meta_partition_hosts(&t->partitions[a.pid], (uint32_t)clu_node_id(s->clu)) ? E_NOT_ACCEPTED
											      : META_E_PARTITION_NOT_FOUND;
	if (code != 0) {
		poll_answer(s, &to, code, NULL, NULL);
		return;
	}
	poll_serve(s, t, pt, pt->log, &a, &to);
}

/*
 * Relays a forwarded poll's reply. One that stored an offset waits until this node has applied it, so
 * that the client reads the offset (GetConsumerOffset) on the node it talks to. A reply for a request
 * that is no longer waiting (late, after the deadline) is ignored.
 */
static void on_poll_reply(void *ud, uint64_t from, const void *buf, size_t len)
{
	struct srv *s = ud;
	(void)from;
	if (len < POLL_REPLY_HDR)
		return;
	const uint8_t *b = buf;
	uint64_t req = record_le64(b), meta_index = record_le64(b + 12);
	uint32_t code = record_le32(b + 8);
	if (code == 0 && len < POLL_REPLY_HDR + 16)
		code = E_ERROR; /* no prefix */
	for (struct pfwd **pp = &s->pfwds; *pp != NULL; pp = &(*pp)->next) {
		struct pfwd *f = *pp;
		if (f->req_id != req || f->answered)
			continue;
		if (code == 0 && meta_index > s->meta_applied && !f->offset_req) {
			f->body = malloc(len - POLL_REPLY_HDR);
			if (f->body != NULL) {
				memcpy(f->body, b + POLL_REPLY_HDR, len - POLL_REPLY_HDR);
				f->body_len = len - POLL_REPLY_HDR;
				f->meta_index = meta_index;
				f->answered = true;
				return;
			}
			code = E_ERROR;
		}
		*pp = f->next;
		if (f->offset_req)
			offset_resume(s, f, code, code == 0 ? b + POLL_REPLY_HDR : NULL);
		else
			finish(f->p, code, false, code == 0 ? b + POLL_REPLY_HDR : NULL,
			       code == 0 ? len - POLL_REPLY_HDR : 0);
		free(f);
		return;
	}
}

/*
 * Relays the answered forwarded polls whose offset this node has applied, and (now ≠ 0) ends those past
 * their deadline: an answered one is relayed anyway (its offset is stored; only this node lags), an
 * unanswered one gets 58.
 */
static void pfwd_expire(struct srv *s, uint64_t now)
{
	for (struct pfwd **pp = &s->pfwds; *pp != NULL;) {
		struct pfwd *f = *pp;
		bool applied = f->answered && f->meta_index <= s->meta_applied;
		if (!applied && (now == 0 || now < f->deadline)) {
			pp = &f->next;
			continue;
		}
		*pp = f->next;
		if (f->answered)
			finish(f->p, 0, false, f->body, f->body_len);
		else if (f->offset_req)
			offset_resume(s, f, E_NOT_ACCEPTED, NULL);
		else
			finish(f->p, E_NOT_ACCEPTED, false, NULL, 0);
		free(f->body);
		free(f);
	}
}

/* A decoded PollMessages body (also the body of 103 and 104). Names point into the request. */
struct poll_req {
	struct wire_consumer wc;
	struct wire_id sid, tid;
	struct wire_opt_partition op;
	struct wire_polling strat;
	uint32_t count;
	uint8_t auto_commit;
};

/* Decodes a whole PollMessages body. Returns 0, or E_INVALID_COMMAND when it is malformed. */
static uint32_t poll_req_decode(const uint8_t *body, size_t len, struct poll_req *q)
{
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	wire_get_consumer(&r, &q->wc);
	wire_get_id(&r, &q->sid);
	wire_get_id(&r, &q->tid);
	wire_get_opt_partition(&r, &q->op);
	wire_get_polling(&r, &q->strat);
	q->count = wire_get_u32(&r);
	q->auto_commit = wire_get_u8(&r);
	return wire_rd_done(&r) == 0 ? 0 : E_INVALID_COMMAND;
}

/*
 * PollMessages (100) and PollMessagesOnPrimary (104): everything the metadata decides is checked here,
 * on any node; the messages come from this node's replica of the partition, or from another replica
 * through poll_forward when none is hosted here.
 */
static void handle_poll(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	/* PollMessagesOnPrimary is served only on a data session attached to its parent. */
	uint32_t member, err = session_member(ss, &member);
	if (err == 0 && hdr->code == FRAME_CODE_POLL_MESSAGES_ON_PRIMARY && !ss->attached)
		err = E_UNAUTHENTICATED;
	struct poll_req q;
	if (err == 0)
		err = poll_req_decode(body, len, &q);
	if (err != 0) {
		finish(p, err, false, NULL, 0);
		return;
	}
	struct meta_stream *st = find_stream(s, &q.sid);
	if (st == NULL) {
		finish(p, META_E_STREAM_NOT_FOUND, false, NULL, 0);
		return;
	}
	struct meta_topic *t = find_topic(st, &q.tid);
	if (t == NULL) {
		finish(p, META_E_TOPIC_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!auth_allowed(session_user(ss), AUTH_POLL_MESSAGES, st->id, t->id)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct poll_args a = {.pid = q.op.present ? q.op.id : 0, .strat = q.strat.kind, .value = q.strat.value,
			      .count = q.count, .auto_commit = q.auto_commit};
	if (resolve_consumer(t, &q.wc, &a.kind, &a.cid) != 0) {
		finish(p, META_E_GROUP_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (a.kind == WIRE_CONSUMER_GROUP) {
		const struct meta_member *m = meta_group_member(meta_group(t, a.cid), member);
		bool owns = false;
		for (uint32_t i = 0; m != NULL && i < m->n_partitions; i++)
			owns |= m->partitions[i] == a.pid;
		if (!q.op.present || !owns) {
			/* Fenced: an empty poll with the resync sentinel. */
			uint8_t prefix[16];
			record_put32(prefix, NO_PARTITION);
			record_put64(prefix + 4, 0);
			record_put32(prefix + 12, 0);
			finish(p, 0, false, prefix, sizeof(prefix));
			return;
		}
	}
	if (a.pid >= t->n_partitions) {
		finish(p, META_E_PARTITION_NOT_FOUND, false, NULL, 0);
		return;
	}
	struct plog *l = part_log(s, st->id, t->id, a.pid);
	if (l == NULL) {
		(void)poll_forward_to(s, p, t, &a);
		return;
	}
	struct poll_to to = {.p = p};
	poll_serve(s, t, tparts_find(s, st->id, t->id)->pp[a.pid], l, &a, &to);
}

static void offset_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)s;
	(void)res;
	if (status != 0)
		finish(w->p, status == -EAGAIN ? E_NOT_ACCEPTED : E_ERROR, false, NULL, 0);
	else if (rv != META_OK)
		finish(w->p, rv < 0 ? E_ERROR : (uint32_t)rv, false, NULL, 0);
	else
		finish(w->p, 0, true, NULL, 0);
}

/* A consumer-offset request once resolved (handle_offset), to finish with the partition's next offset. */
struct offset_req {
	uint8_t op;                /* FRAME_OP_NON_REPLICATED (get), FRAME_OP_STORE_/DELETE_CONSUMER_OFFSET */
	uint32_t stream_id, topic_id, pid, cid;
	uint8_t kind;
	uint64_t offset;
};

/*
 * Answers a get from the metadata, or replicates a store (refused 4100 beyond the current offset) or a
 * delete. next: the offset after the partition's last committed message.
 */
static void offset_finish(struct srv *s, struct pending *p, const struct offset_req *q, uint64_t next)
{
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, q->stream_id), q->topic_id);
	if (t == NULL || q->pid >= t->n_partitions) {
		/* (gone while a replica was asked) */
		finish(p, q->op == FRAME_OP_NON_REPLICATED ? META_E_TOPIC_NOT_FOUND : E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (q->op == FRAME_OP_NON_REPLICATED) {
		const struct meta_offset *o = meta_offset_get(t, q->kind, q->cid, q->pid);
		if (o == NULL) {
			finish(p, 0, false, NULL, 0);
			return;
		}
		uint8_t b[20];
		record_put32(b, q->pid);
		record_put64(b + 4, next > 0 ? next - 1 : 0);
		record_put64(b + 12, o->offset);
		finish(p, 0, false, b, sizeof(b));
		return;
	}
	struct meta_cmd c = {.ts = now_us(), .stream_id = q->stream_id, .topic_id = q->topic_id,
			     .consumer_kind = q->kind, .consumer_id = q->cid, .partition_id = q->pid, .offset = q->offset};
	if (q->op == FRAME_OP_STORE_CONSUMER_OFFSET) {
		if (next == 0 || q->offset > next - 1) {
			finish(p, META_E_INVALID_OFFSET, false, NULL, 0);
			return;
		}
		c.type = META_STORE_OFFSET;
	} else {
		c.type = META_DELETE_OFFSET;
	}
	struct mwait *w = meta_submit(s, &c, offset_done);
	if (w == NULL) {
		finish(p, E_ERROR, false, NULL, 0);
		return;
	}
	w->p = p;
	mwait_push(s, w);
}

static void handle_offset(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	bool get = hdr->operation == FRAME_OP_NON_REPLICATED;
	/* Offsets are keyed by consumer or group, not by member: only a stale attachment matters here. */
	uint32_t member, stale = session_member(ss, &member);
	if (stale != 0) {
		finish(p, stale, false, NULL, 0);
		return;
	}
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct wire_consumer wc;
	struct wire_id sid, tid;
	struct wire_opt_partition op;
	wire_get_consumer(&r, &wc);
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	wire_get_opt_partition(&r, &op);
	uint64_t offset = 0;
	if (hdr->operation == FRAME_OP_STORE_CONSUMER_OFFSET)
		offset = wire_get_u64(&r);
	if (!get)
		(void)wire_get_u8(&r); /* ack level */
	if (wire_rd_done(&r) != 0) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = find_stream(s, &sid);
	struct meta_topic *t = find_topic(st, &tid);
	if (t == NULL) {
		finish(p, get ? (st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND) : E_RESOURCE_NOT_FOUND,
		       false, NULL, 0);
		return;
	}
	if (!auth_allowed(session_user(ss), AUTH_POLL_MESSAGES, st->id, t->id)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	uint8_t kind;
	uint32_t cid;
	uint32_t pid = op.present ? op.id : 0;
	if (resolve_consumer(t, &wc, &kind, &cid) != 0 || pid >= t->n_partitions) {
		finish(p, get ? META_E_PARTITION_NOT_FOUND : E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	struct offset_req q = {.op = hdr->operation, .stream_id = st->id, .topic_id = t->id, .pid = pid, .kind = kind,
			       .cid = cid, .offset = offset};
	bool needs_next = get ? meta_offset_get(t, kind, cid, pid) != NULL : q.op == FRAME_OP_STORE_CONSUMER_OFFSET;
	if (needs_next && part_log(s, st->id, t->id, pid) == NULL) {
		/*
		 * Offsets are metadata, but the partition's current offset is not: a partition with no replica
		 * here asks one for it (a forwarded poll of the first message), then goes on in offset_resume.
		 */
		struct poll_args a = {.pid = pid, .kind = kind, .cid = cid, .strat = WIRE_POLL_FIRST, .count = 1};
		struct pfwd *f = poll_forward_to(s, p, t, &a);
		if (f != NULL) {
			f->offset_req = true;
			f->op = q.op;
			f->stream_id = q.stream_id;
			f->topic_id = q.topic_id;
			f->pid = pid;
			f->kind = kind;
			f->cid = cid;
			f->offset = offset;
		}
		return;
	}
	offset_finish(s, p, &q, needs_next ? served_next(s, t, pid) : 0);
}

/*
 * The answer to a forwarded poll of the first message that a consumer-offset request asked for (see
 * handle_offset): the replica's prefix carries the current offset and how many messages it returned, so
 * next = current + 1 unless the partition is empty (no message, current 0).
 */
static void offset_resume(struct srv *s, const struct pfwd *f, uint32_t code, const uint8_t *prefix)
{
	if (code != 0) {
		finish(f->p, f->op == FRAME_OP_NON_REPLICATED ? code
			     : code == META_E_PARTITION_NOT_FOUND ? E_RESOURCE_NOT_FOUND
								   : code,
		       false, NULL, 0);
		return;
	}
	uint64_t current = record_le64(prefix + 4);
	uint32_t n = record_le32(prefix + 12);
	uint64_t next = n == 0 && current == 0 ? 0 : current + 1;
	struct offset_req q = {.op = f->op, .stream_id = f->stream_id, .topic_id = f->topic_id, .pid = f->pid,
			       .kind = f->kind, .cid = f->cid, .offset = f->offset};
	offset_finish(s, f->p, &q, next);
}

/* ---- Poll routing (103, 123, 14; see the top of this file) ---- */

static void put_node(struct srv *s, struct wire_buf *b, size_t i, uint8_t role);

/*
 * GetPollRouting (103) and GetConsumerOffsetRouting (123): validated as the poll or offset request they
 * route, then answered with this node as the primary and this session as the parent to attach to.
 */
static void handle_routing(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct poll_req q;
	uint32_t err;
	if (hdr->code == FRAME_CODE_GET_POLL_ROUTING) {
		err = poll_req_decode(body, len, &q);
		if (err == 0 && q.auto_commit != 1)
			err = E_INVALID_COMMAND; /* only a poll with auto-commit is routed (as the reference) */
	} else {
		struct wire_rd r;
		wire_rd_init(&r, body, len);
		wire_get_consumer(&r, &q.wc);
		wire_get_id(&r, &q.sid);
		wire_get_id(&r, &q.tid);
		wire_get_opt_partition(&r, &q.op);
		err = wire_rd_done(&r) == 0 ? 0 : E_INVALID_COMMAND;
	}
	if (err != 0) {
		finish(p, err, false, NULL, 0);
		return;
	}
	struct meta_stream *st = find_stream(s, &q.sid);
	struct meta_topic *t = find_topic(st, &q.tid);
	uint8_t kind;
	uint32_t cid, pid = q.op.present ? q.op.id : 0;
	if (st == NULL)
		err = META_E_STREAM_NOT_FOUND;
	else if (t == NULL)
		err = META_E_TOPIC_NOT_FOUND;
	else if (!auth_allowed(session_user(ss), AUTH_POLL_MESSAGES, st->id, t->id))
		err = E_UNAUTHORIZED;
	else if (resolve_consumer(t, &q.wc, &kind, &cid) != 0)
		err = META_E_GROUP_NOT_FOUND;
	else if (pid >= t->n_partitions)
		err = META_E_PARTITION_NOT_FOUND;
	if (err != 0) {
		finish(p, err, false, NULL, 0);
		return;
	}
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes), self = 0;
	for (size_t i = 0; i < n; i++)
		if (nodes[i].id == clu_node_id(s->clu))
			self = i;
	if (n == 0) {
		finish(p, E_NOT_ACCEPTED, false, NULL, 0); /* no roster yet */
		return;
	}
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_u64(&b, ss->client_id); /* client_id u128: low half, then high half */
	wire_put_u64(&b, 0);
	wire_put_u64(&b, ss->session);
	wire_put_u64(&b, s->meta_applied);
	put_node(s, &b, self, 0);
	finish_buf(p, 0, false, &b);
}

/* AttachConsumerSession (14), on a data session: borrow the parent's client id as the member identity. */
static void handle_attach(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	if (len != 32) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	uint64_t lo = frame_le64(body), hi = frame_le64(body + 8), session = frame_le64(body + 16);
	const struct srv_session *parent =
		hi == 0 && lo <= UINT32_MAX ? session_find(ss->srv, (uint32_t)lo, session) : NULL;
	if (parent == NULL || parent->user_id != ss->user_id) {
		finish(p, E_STALE_CLIENT, false, NULL, 0);
		return;
	}
	ss->attached = true;
	ss->member_of = parent->client_id;
	ss->parent_session = parent->session;
	finish(p, 0, false, NULL, 0);
}

/* ---- Reads (NonReplicated) ---- */

static void put_stats(struct srv *s, struct wire_buf *b)
{
	uint32_t streams = 0, topics = 0, partitions = 0, segments = 0, groups = 0, clients = 0;
	uint64_t msgs = 0, bytes = 0;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		if (st == NULL)
			continue;
		streams++;
		for (uint32_t k = 0; k < st->n_topics; k++) {
			struct meta_topic *t = st->topics[k];
			if (t == NULL)
				continue;
			topics++;
			partitions += t->n_partitions;
			for (uint32_t g = 0; g < t->n_groups; g++)
				groups += t->groups[g] != NULL;
			uint64_t tb, tm;
			topic_usage(s, t, &tb, &tm);
			bytes += tb;
			msgs += tm;
			for (uint32_t pi = 0; pi < t->n_partitions; pi++) {
				struct plog *l = part_log(s, st->id, t->id, pi);
				segments += l ? plog_segment_count(l) : 0;
			}
		}
	}
	for (struct srv_session *ss = s->sessions; ss != NULL; ss = ss->next)
		clients++;
	long rss_pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f != NULL) {
		long size;
		if (fscanf(f, "%ld %ld", &size, &rss_pages) != 2)
			rss_pages = 0;
		fclose(f);
	}
	long page = sysconf(_SC_PAGESIZE), phys = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
	struct utsname un;
	uname(&un);
	wire_put_u32(b, (uint32_t)getpid());
	wire_put_u32(b, 0); /* cpu_usage f32 */
	wire_put_u32(b, 0); /* total_cpu_usage f32 */
	wire_put_u64(b, (uint64_t)rss_pages * (uint64_t)page);
	wire_put_u64(b, (uint64_t)phys * (uint64_t)page);
	wire_put_u64(b, (uint64_t)avail * (uint64_t)page);
	wire_put_u64(b, now_us() - s->start_us);
	wire_put_u64(b, s->start_us);
	wire_put_u64(b, 0); /* read_bytes */
	wire_put_u64(b, bytes); /* written_bytes */
	wire_put_u64(b, bytes);
	wire_put_u32(b, streams);
	wire_put_u32(b, topics);
	wire_put_u32(b, partitions);
	wire_put_u32(b, segments);
	wire_put_u64(b, msgs);
	wire_put_u32(b, clients);
	wire_put_u32(b, groups);
	wire_put_str32(b, un.nodename, strlen(un.nodename));
	wire_put_str32(b, un.sysname, strlen(un.sysname));
	wire_put_str32(b, un.version, strlen(un.version));
	wire_put_str32(b, un.release, strlen(un.release));
	wire_put_str32(b, SERVER_VERSION, strlen(SERVER_VERSION));
	wire_put_u32(b, 9000); /* semver 0.9.0 */
	wire_put_u32(b, 0);    /* cache metrics */
	wire_put_u32(b, 1);    /* threads */
	struct statvfs vfs;
	uint64_t free_disk = 0, total_disk = 0;
	if (statvfs(s->cfg->node.data_dir, &vfs) == 0) {
		free_disk = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		total_disk = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	}
	wire_put_u64(b, free_disk);
	wire_put_u64(b, total_disk);
}

/*
 * GetClusterMetadata: every node of the roster with its client endpoints (put_node); the metadata leader
 * is marked Leader (the SDK moves its connection there after login, reference §8).
 */
static void put_cluster(struct srv *s, struct wire_buf *b)
{
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	uint64_t leader = clu_group_leader_id(s->mg);
	wire_put_str32(b, s->cfg->cluster.name, strlen(s->cfg->cluster.name));
	wire_put_u32(b, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		put_node(s, b, i, n == 1 || nodes[i].id == leader ? 0 : 1); /* 0 Leader, 1 Follower */
}

/*
 * Roster entry i as one node of GetClusterMetadata (also the primary of a route), at its client address
 * (client_addr_of).
 */
static void put_node(struct srv *s, struct wire_buf *b, size_t i, uint8_t role)
{
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	assert(i < n);
	char name[32];
	snprintf(name, sizeof(name), "galgo-node-%" PRIu64, nodes[i].id);
	struct client_addr a = client_addr_of(s, &nodes[i], n == 1);
	wire_put_str32(b, name, strlen(name));
	wire_put_str32(b, a.host, strlen(a.host));
	wire_put_u16(b, a.tcp);
	wire_put_u16(b, a.quic);
	wire_put_u16(b, a.http);
	wire_put_u16(b, 0);    /* websocket */
	wire_put_u8(b, role);
	wire_put_u8(b, 0);     /* healthy */
}

static void membership_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)s;
	(void)res;
	if (w->p == NULL)
		return;
	if (status == -EAGAIN)
		finish(w->p, E_NOT_ACCEPTED, false, NULL, 0);
	else if (status != 0 || rv < 0)
		finish(w->p, E_ERROR, false, NULL, 0);
	else
		finish(w->p, (uint32_t)rv, false, NULL, 0);
}

/*
 * AddNode (10003) and RemoveNode (10004), docs/protocol-extensions.md: a change of the node table through
 * the metadata group, answered once applied here; the leaders then change their groups (membership_tick).
 */
static void handle_membership(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body,
			      size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct meta_cmd c = {.ts = now_us()};
	if (hdr->code == FRAME_CODE_GALGO_ADD_NODE) {
		struct meta_node *n = &c.nodes[0];
		struct wire_str host;
		c.type = META_NODE_ADD;
		c.n_nodes = 1;
		n->id = wire_get_u32(&r);
		wire_get_str8(&r, &host);
		n->raft_port = wire_get_u16(&r);
		n->tcp_port = wire_get_u16(&r);
		n->quic_port = wire_get_u16(&r);
		n->http_port = wire_get_u16(&r);
		if (wire_rd_done(&r) != 0 || host.len == 0 || n->raft_port == 0 ||
		    !clu_host_valid((const char *)host.ptr, host.len)) {
			finish(p, E_INVALID_COMMAND, false, NULL, 0);
			return;
		}
		memcpy(n->host, host.ptr, host.len);
	} else {
		c.type = META_NODE_REMOVE;
		c.node_id = wire_get_u32(&r);
		if (wire_rd_done(&r) != 0) {
			finish(p, E_INVALID_COMMAND, false, NULL, 0);
			return;
		}
	}
	if (!auth_allowed(session_user(ss), AUTH_MANAGE_SERVERS, 0, 0)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	/* A node without the node-to-node listener (no cluster.nodes and cluster.secret) cannot take peers. */
	if (c.type == META_NODE_ADD && !clu_networked(s->clu)) {
		finish(p, E_FEATURE_UNAVAILABLE, false, NULL, 0);
		return;
	}
	struct mwait *w = meta_submit(s, &c, membership_done);
	if (w == NULL) {
		finish(p, E_ERROR, false, NULL, 0);
		return;
	}
	w->p = p;
	mwait_push(s, w);
}

static uint32_t drain_tick(struct srv *s);

/*
 * Drain (10005), docs/protocol-extensions.md: body [mode u8]: 1 drain this node, 0 end the drain, 2 only
 * report. Reply: [draining u8][groups led here u32]; the drain is done when that count is 0.
 */
static void handle_drain(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	if (len != 1 || body[0] > 2) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	if (!auth_allowed(session_user(ss), AUTH_MANAGE_SERVERS, 0, 0)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct srv *s = ss->srv;
	uint32_t led = body[0] == 2 ? drain_tick(s) : srv_drain(s, body[0] == 1);
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_u8(&b, s->draining ? 1 : 0);
	wire_put_u32(&b, led);
	finish_buf(p, 0, false, &b);
	wire_buf_free(&b);
}

static void handle_read(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	uint32_t code = hdr->code;
	if (code == FRAME_CODE_POLL_MESSAGES || code == FRAME_CODE_POLL_MESSAGES_ON_PRIMARY) {
		handle_poll(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_GET_CONSUMER_OFFSET) {
		handle_offset(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_GALGO_ADD_NODE || code == FRAME_CODE_GALGO_REMOVE_NODE) {
		handle_membership(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_GALGO_DRAIN) {
		handle_drain(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_GET_POLL_ROUTING || code == FRAME_CODE_GET_CONSUMER_OFFSET_ROUTING) {
		handle_routing(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_ATTACH_CONSUMER_SESSION) {
		handle_attach(ss, hdr, body, len);
		return;
	}
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id sid, tid, gid, uid;
	struct meta_stream *st;
	struct meta_topic *t;
	struct meta_user *me = session_user(ss);
	switch (code) {
	case FRAME_CODE_PING:
		break;
	case FRAME_CODE_GET_STATS:
		if (!auth_allowed(me, AUTH_READ_SERVERS, 0, 0))
			goto denied;
		put_stats(s, &b);
		break;
	case FRAME_CODE_GALGO_PARTITION_LEADERS: {
		/* No body: the original reply. A flags byte asks for appended sections (only 1: node status). */
		uint8_t flags = len > 0 ? wire_get_u8(&r) : 0;
		if (wire_rd_done(&r) != 0 || (flags & ~1u) != 0)
			goto bad;
		put_partition_leaders(s, &b);
		if (flags & 1)
			put_node_status(s, &b);
		break;
	}
	case FRAME_CODE_GALGO_SET_REDIRECT: {
		uint8_t mode = wire_get_u8(&r);
		if (wire_rd_done(&r) != 0 || mode > 1)
			goto bad;
		ss->redirect = mode == 1;
		break;
	}
	case FRAME_CODE_GET_CLUSTER_METADATA:
		put_cluster(s, &b);
		break;
	case FRAME_CODE_DESCRIBE_OPTIONS: {
		uint8_t scope = wire_get_u8(&r);
		if (wire_rd_done(&r) != 0 || scope < 1 || scope > 3)
			goto bad;
		if (scope == 1)
			put_topic_option_catalog(&b);
		else
			wire_put_u32(&b, 0);
		break;
	}
	case FRAME_CODE_GET_ME:
		put_client(s, &b, ss, true);
		break;
	case FRAME_CODE_GET_CLIENT: {
		uint32_t id = wire_get_u32(&r);
		if (wire_rd_done(&r) != 0)
			goto bad;
		if (!auth_allowed(me, AUTH_READ_SERVERS, 0, 0))
			goto denied;
		for (struct srv_session *o = s->sessions; o != NULL; o = o->next)
			if (o->client_id == id)
				put_client(s, &b, o, true);
		break;
	}
	case FRAME_CODE_GET_CLIENTS:
		if (!auth_allowed(me, AUTH_READ_SERVERS, 0, 0))
			goto denied;
		for (struct srv_session *o = s->sessions; o != NULL; o = o->next)
			put_client(s, &b, o, false);
		break;
	case FRAME_CODE_GET_USER:
		wire_get_id(&r, &uid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		{
			struct meta_user *u = find_user(s, &uid);
			if (u != NULL && u != me && !auth_allowed(me, AUTH_READ_USERS, 0, 0))
				goto denied;
			if (u != NULL)
				put_user_details(&b, u);
		}
		break;
	case FRAME_CODE_GET_USERS:
		if (!auth_allowed(me, AUTH_READ_USERS, 0, 0))
			goto denied;
		for (uint32_t i = 0; i < s->meta->n_users; i++)
			if (s->meta->users[i] != NULL)
				put_user_header(&b, s->meta->users[i]);
		break;
	case FRAME_CODE_GET_PERSONAL_ACCESS_TOKENS:
		for (uint32_t i = 0; me != NULL && i < me->n_pats; i++) {
			put_name(&b, me->pats[i].name);
			wire_put_u64(&b, me->pats[i].expiry_at);
		}
		break;
	case FRAME_CODE_GET_STREAM:
		wire_get_id(&r, &sid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = find_stream(s, &sid);
		if (st != NULL) {
			if (!auth_allowed(me, AUTH_READ_STREAM, st->id, 0))
				goto denied;
			put_stream_header(s, &b, st);
			for (uint32_t i = 0; i < st->n_topics; i++)
				if (st->topics[i] != NULL)
					put_topic_header(s, &b, st->topics[i]);
		}
		break;
	case FRAME_CODE_GET_STREAMS:
		if (!auth_allowed(me, AUTH_READ_STREAMS, 0, 0))
			goto denied;
		for (uint32_t i = 0; i < s->meta->n_streams; i++)
			if (s->meta->streams[i] != NULL)
				put_stream_header(s, &b, s->meta->streams[i]);
		break;
	case FRAME_CODE_GET_TOPIC:
		wire_get_id(&r, &sid);
		wire_get_id(&r, &tid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = find_stream(s, &sid);
		t = find_topic(st, &tid);
		if (t != NULL) {
			if (!auth_allowed(me, AUTH_READ_TOPIC, st->id, t->id))
				goto denied;
			put_topic_header(s, &b, t);
			put_partitions(s, &b, t);
		}
		break;
	case FRAME_CODE_GET_TOPICS: {
		wire_get_id(&r, &sid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = find_stream(s, &sid);
		if (st != NULL && !auth_allowed(me, AUTH_READ_TOPICS, st->id, 0))
			goto denied;
		size_t at = wire_put_reserve(&b, 4);
		uint32_t n = 0;
		for (uint32_t i = 0; st != NULL && i < st->n_topics; i++)
			if (st->topics[i] != NULL) {
				put_topic_header(s, &b, st->topics[i]);
				n++;
			}
		wire_patch_u32(&b, at, n);
		break;
	}
	case FRAME_CODE_GET_CONSUMER_GROUP:
	case FRAME_CODE_GET_CONSUMER_GROUPS:
	case FRAME_CODE_SYNC_CONSUMER_GROUP:
		wire_get_id(&r, &sid);
		wire_get_id(&r, &tid);
		if (code != FRAME_CODE_GET_CONSUMER_GROUPS)
			wire_get_id(&r, &gid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = find_stream(s, &sid);
		t = find_topic(st, &tid);
		if (t == NULL) {
			wire_buf_free(&b);
			finish(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND, false, NULL, 0);
			return;
		}
		if (!auth_allowed(me, AUTH_READ_TOPIC, st->id, t->id) &&
		    !auth_allowed(me, AUTH_POLL_MESSAGES, st->id, t->id))
			goto denied;
		if (code == FRAME_CODE_GET_CONSUMER_GROUPS) {
			for (uint32_t i = 0; i < t->n_groups; i++)
				if (t->groups[i] != NULL)
					put_group_details(&b, t, t->groups[i], false);
		} else {
			struct meta_group *g = find_group(t, &gid);
			if (g != NULL && code == FRAME_CODE_GET_CONSUMER_GROUP) {
				put_group_details(&b, t, g, true);
			} else if (g != NULL) {
				struct meta_member *m = meta_group_member(g, ss->client_id);
				if (m != NULL) {
					wire_put_u64(&b, g->generation);
					wire_put_u32(&b, m->n_partitions);
					for (uint32_t i = 0; i < m->n_partitions; i++)
						wire_put_u32(&b, m->partitions[i]);
				}
			}
		}
		break;
	case FRAME_CODE_GET_SNAPSHOT_FILE:
	case FRAME_CODE_FLUSH_UNSAVED_BUFFER:
		wire_buf_free(&b);
		finish(p, E_FEATURE_UNAVAILABLE, false, NULL, 0);
		return;
	case FRAME_CODE_LOGIN_USER:
	case FRAME_CODE_LOGIN_WITH_PERSONAL_ACCESS_TOKEN:
		wire_buf_free(&b);
		/* Legacy logins: the slot is taken, answer it with the eviction. */
		{
			struct frame_eviction e = {.client = hdr->client, .reason = FRAME_EVICT_MALFORMED_LOGIN};
			p->len = FRAME_HEADER_SIZE;
			p->buf = calloc(1, p->len);
			if (p->buf != NULL)
				frame_eviction_encode(p->buf, &e);
			p->ready = true;
			flush_queue(ss);
		}
		return;
	default:
		wire_buf_free(&b);
		finish(p, frame_code_is_known(code) ? E_FEATURE_UNAVAILABLE : E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	finish_buf(p, 0, false, &b);
	return;
denied:
	wire_buf_free(&b);
	finish(p, E_UNAUTHORIZED, false, NULL, 0);
	return;
bad:
	wire_buf_free(&b);
	finish(p, E_INVALID_COMMAND, false, NULL, 0);
}

/* DeleteSegments (op 138, not result-framed): the n oldest whole segments of a partition. */
static void handle_delete_segments(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body,
				   size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	struct wire_id sid, tid;
	wire_rd_init(&r, body, len);
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	uint32_t pid = wire_get_u32(&r), n = wire_get_u32(&r);
	if (wire_rd_done(&r) != 0) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = find_stream(s, &sid);
	struct meta_topic *t = find_topic(st, &tid);
	if (t == NULL) {
		finish(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!auth_allowed(session_user(ss), AUTH_MANAGE_TOPIC, st->id, t->id)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct tparts *tp = tparts_find(s, st->id, t->id);
	struct part *pt = tp != NULL && pid < tp->n ? tp->pp[pid] : NULL;
	if (pt == NULL) {
		finish(p, META_E_PARTITION_NOT_FOUND, false, NULL, 0);
		return;
	}
	/* This replica's segments only: every replica keeps its own retained range (a snapshot covers the rest). */
	int rv = 0;
	uint64_t keep = plog_drop_keep_from(pt->log, n, part_applied(pt));
	if (keep > plog_first_index(pt->log)) {
		rv = part_compact(pt, keep);
		if (rv == 0)
			rv = plog_drop_segments(pt->log, n, keep - 1);
	}
	finish(p, rv < 0 ? E_ERROR : 0, false, NULL, 0);
}

/* ---- Dispatch ---- */

void srv_session_frame(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	if (ss->closed)
		return;
	ss->srv->tstats[ss->kind <= SRV_HTTP ? ss->kind : 0].requests++;
	if (glog_get_level() <= GLOG_DEBUG)
		glog_debug(TAG, "client %u: %s%s%s (code %u), %zu bytes", ss->client_id, frame_op_name(hdr->operation),
			   hdr->operation == FRAME_OP_NON_REPLICATED ? " " : "",
			   hdr->operation == FRAME_OP_NON_REPLICATED ? frame_code_name(hdr->code) : "", hdr->code, len);
	if (frame_request_checksum_verify(hdr, body, len) != 0) {
		struct pending *p = pending_new(ss, hdr);
		if (p != NULL)
			finish(p, E_INVALID_FORMAT, false, NULL, 0);
		return;
	}
	switch (hdr->operation) {
	case FRAME_OP_REGISTER:
		handle_register(ss, hdr, body, len);
		return;
	case FRAME_OP_LOGOUT: {
		if (ss->bound)
			leave_all_groups(ss->srv, ss->client_id);
		ss->bound = false;
		ss->session = 0;
		ss->attached = false;
		struct pending *p = pending_new(ss, hdr);
		if (p != NULL)
			finish(p, 0, false, NULL, 0);
		return;
	}
	case FRAME_OP_NON_REPLICATED:
		if (!ss->bound && hdr->code != FRAME_CODE_PING) {
			struct pending *p = pending_new(ss, hdr);
			if (p != NULL)
				finish(p, E_UNAUTHENTICATED, false, NULL, 0);
			return;
		}
		handle_read(ss, hdr, body, len);
		return;
	default:
		break;
	}
	if (!ss->bound) {
		evict(ss, hdr, FRAME_EVICT_NO_SESSION);
		return;
	}
	if (hdr->operation == FRAME_OP_SEND_MESSAGES)
		handle_send(ss, hdr, body, len);
	else if (hdr->operation == FRAME_OP_DELETE_SEGMENTS)
		handle_delete_segments(ss, hdr, body, len);
	else if (hdr->operation == FRAME_OP_STORE_CONSUMER_OFFSET || hdr->operation == FRAME_OP_DELETE_CONSUMER_OFFSET)
		handle_offset(ss, hdr, body, len);
	else if (hdr->operation >= FRAME_OP_CREATE_STREAM && hdr->operation <= FRAME_OP_LEAVE_CONSUMER_GROUP &&
		 hdr->operation != FRAME_OP_DELETE_SEGMENTS)
		handle_meta(ss, hdr, body, len);
	else {
		struct pending *p = pending_new(ss, hdr);
		if (p != NULL)
			finish(p, E_INVALID_COMMAND, false, NULL, 0);
	}
}

/* ---- Lifecycle ---- */

static bool gid_open_here(struct srv *s, uint64_t gid)
{
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++)
			if (tp->gids[i] == gid)
				return true;
	return false;
}

/*
 * Removes what <data_dir>/partitions holds that no replica of this node owns once the metadata is
 * replayed: a directory of a group id no slot names (left by a crash during a delete, or a replica that
 * moved away while this node was down), and anything else (the <stream>/<topic>/<partition> directories
 * of the old layout that slot_sync did not move to a group id: they belong to no partition any more).
 */
static void remove_orphans(struct srv *s)
{
	char **names;
	size_t n;
	if (pio_list(s->pio, s->pdir, &names, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		char d[2400];
		snprintf(d, sizeof(d), "%.2047s/%.255s", s->pdir, names[i]);
		uint64_t gid;
		if (part_dir_name(names[i], &gid) && gid_open_here(s, gid))
			continue;
		glog_warn(TAG, "removing %s: no partition replica of this node owns it", d);
		rm_tree(s->pio, d);
	}
	pio_list_free(names, n);
}

static int ensure_root(struct srv *s)
{
	if (meta_user(s->meta, 0) != NULL)
		return 0;
	const char *pw = s->cfg->root.password;
	char gen[33];
	if (pw == NULL || pw[0] == '\0') {
		uint8_t raw[16];
		char tok[AUTH_PAT_LEN + 1];
		if (auth_pat_generate(tok) != 0)
			return -EIO;
		memcpy(raw, tok, sizeof(raw));
		for (int i = 0; i < 16; i++)
			snprintf(gen + 2 * i, 3, "%02x", raw[i]);
		pw = gen;
		glog_warn(TAG, "root user '%s' created with the generated password: %s", s->cfg->root.username, pw);
	}
	char hash[AUTH_HASH_MAX];
	int rv = auth_hash_password(pw, strlen(pw), hash);
	if (rv != 0)
		return rv;
	struct meta_perms all;
	auth_perms_all(&all);
	struct meta_cmd c = {.type = META_CREATE_USER, .ts = now_us(), .name = s->cfg->root.username,
			     .name_len = (uint8_t)strlen(s->cfg->root.username), .password_hash = hash,
			     .status = META_USER_ACTIVE, .has_perms = true, .perms = &all};
	return commit(s, &c) == META_OK ? 0 : -EINVAL;
}

/*
 * Start-of-term housekeeping of a metadata leader, once it has applied everything its log holds (so its
 * state is the cluster's): the root user on first start, and on a single node the consumer groups'
 * members emptied (no client survives a restart of the only node).
 */
static void meta_leader_ready(struct srv *s)
{
	if (s->mg == NULL || !s->leader_work)
		return;
	struct rgroup_status st;
	clu_group_status(s->mg, &st);
	if (st.state != RAFT_LEADER) {
		s->leader_work = false;
		return;
	}
	if (st.applied_index < st.last_index)
		return;
	/*
	 * A new metadata leader whose log is fully committed commits an empty entry of its own term at once,
	 * as a partition leader does (part_term_barrier). Until one commits, a replica rebuilt after damage
	 * (meta_open: recovering) cannot know it holds everything committed, so it grants no vote; had this
	 * leader then died before any command came, the others could never elect (seen: the metadata group
	 * without a leader for good, the rebuilt node refusing every vote).
	 */
	struct record_env env;
	if (st.commit_index == st.last_index &&
	    (st.last_index == 0 || (plog_entry_at(s->mlog, st.last_index, &env) == 0 && env.term < st.term))) {
		int rv = clu_group_barrier(s->mg);
		if (rv == -EBUSY || rv == -EAGAIN)
			return; /* leader_work stays set: the next tick tries again */
	}
	s->leader_work = false;
	if (meta_user(s->meta, 0) == NULL && ensure_root(s) != 0)
		glog_error(TAG, "the root user could not be created");
	const struct clu_node *nodes;
	bool members = false;
	for (uint32_t i = 0; clu_nodes(s->clu, &nodes) == 1 && i < s->meta->n_streams; i++) {
		struct meta_stream *st2 = s->meta->streams[i];
		for (uint32_t k = 0; st2 != NULL && k < st2->n_topics; k++) {
			struct meta_topic *t = st2->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups; g++)
				members |= t->groups[g] != NULL && t->groups[g]->n_members > 0;
		}
	}
	if (members) {
		struct meta_cmd clear = {.type = META_CLEAR_MEMBERS, .ts = now_us()};
		commit(s, &clear);
	}
}

/*
 * Opens the metadata group: its log (<data_dir>/meta/log), replayed from the start by the group itself
 * (meta_apply_entry applies each entry as the group learns it is committed; on a single node right after
 * start). The log is small (what follows the last snapshot), so it is verified whole first (plog_scrub):
 * a record that fails its checks is never applied. The configured roster bootstraps the group on an empty
 * log; a joining node does not bootstrap: it waits for the metadata leader to add it (after an AddNode for
 * it has committed).
 *
 * Damage (the log fails to open or to verify, or the group's snapshot fails its checks) on a node with
 * peers: the log is set aside to <data_dir>/damaged/meta-<µs>, the snapshot forgotten, and the group starts
 * empty and recovering, as a damaged partition replica does (slot_open): it does not bootstrap (its leader
 * knows it as a voter and rebuilds it, with entries or a snapshot), and it votes in no election until it
 * has caught up (rgroup_config.recovering), keeping its term and vote. Partition directories are then left
 * alone for this run (remove_orphans needs the whole metadata). A single node has no peer: the error stops
 * it, naming the log.
 */
static int meta_open(struct srv *s, const uint64_t *ids, size_t n)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/meta/log", s->cfg->node.data_dir);
	struct plog_opts o;
	plog_opts_default(&o);
	o.durability = PLOG_DURABILITY_FSYNC;
	o.segment_size = 4u << 20;
	bool recovering = false;
	for (;;) {
		struct plog_report rep;
		int rv = plog_open(s->pio, s->fl, dir, &o, &rep, &s->mlog);
		if (rv == 0) {
			int64_t done;
			while ((done = plog_scrub(s->mlog, 1u << 20)) > 0)
				;
			rv = done < 0 ? (int)done : plog_damaged(s->mlog) > 0 ? -EBADMSG : 0;
		}
		if (rv == 0) {
			s->meta_replay_to = plog_last_index(s->mlog);
			rv = clu_group_open(s->clu, CLU_META_GROUP, s->mlog, ids, n, !s->cfg->cluster.join && !recovering,
					    recovering, RECORD_COMMAND, 0, false, &meta_ops, s, &s->mg);
			if (rv == 0)
				return 0;
		}
		if (s->mlog != NULL)
			(void)plog_close(s->mlog);
		s->mlog = NULL;
		if (rv != -EBADMSG || recovering || n < 2) {
			glog_error(TAG, "the metadata log %s or its group cannot be opened: %s%s", dir, strerror(-rv),
				   rv == -EBADMSG && n < 2 ? " (damaged, and a single node has no peer to rebuild it from)"
							  : "");
			return rv;
		}
		char parent[4096], aside[4200];
		snprintf(parent, sizeof(parent), "%s/meta", s->cfg->node.data_dir);
		rv = set_aside(s, "meta", dir, parent, aside, sizeof(aside));
		if (rv != 0)
			return rv;
		clu_forget_snapshot(s->clu, CLU_META_GROUP);
		glog_warn(TAG, "the metadata log %s or its snapshot is damaged: the log is moved to %s; this node's "
			       "metadata is rebuilt from its peers and it votes in no metadata election until it has "
			       "caught up",
			  dir, aside);
		s->meta_rebuilt = true;
		recovering = true;
	}
}

/*
 * A cluster node that (re)starts has no client: the consumer-group members of its previous run (client
 * ids with its node id in the top bits) are removed through the metadata group, so that their
 * partitions go to members on other nodes. Until that has applied, a JoinConsumerGroup on this node is
 * answered 58 (re-issue), so a new client of this run is never taken for an old one. Resubmitted until it
 * applies (the metadata group needs a quorum).
 */
static void clear_own_members(struct srv *s);

static void clear_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)w;
	(void)rv;
	(void)res;
	s->clear_state = status == 0 ? 1 : -1;
	if (status == 0)
		glog_info(TAG, "consumer-group members of this node's previous run removed");
	else if (!s->closing)
		clear_own_members(s);
}

static void clear_own_members(struct srv *s)
{
	struct meta_cmd c = {.type = META_CLEAR_NODE_MEMBERS, .ts = now_us(), .client_id = (uint32_t)clu_node_id(s->clu) << 27};
	struct mwait *w = meta_submit(s, &c, clear_done);
	s->clear_state = 0;
	if (w == NULL) {
		s->clear_state = 1; /* out of memory at start: give up on it */
		return;
	}
	mwait_push(s, w);
}

int srv_new(uv_loop_t *loop, const struct galgo_config *cfg, struct pio *pio, struct flusher *fl, struct srv **out)
{
	struct srv *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->cfg = cfg;
	s->pio = pio;
	s->fl = fl;
	s->start_us = now_us();
	/*
	 * Request ids of forwarded commands must not repeat across restarts: the leader recognises a re-sent
	 * command by (node, request id) and would answer a new one with an old entry.
	 */
	s->next_req = s->start_us << 10;
	uv_timer_init(loop, &s->house);
	s->house.data = s;
	uv_unref((uv_handle_t *)&s->house);
	snprintf(s->pdir, sizeof(s->pdir), "%s/partitions", cfg->node.data_dir);
	char mdir[4096];
	snprintf(mdir, sizeof(mdir), "%s/meta", cfg->node.data_dir);
	s->meta = meta_new();
	int rv = s->meta == NULL ? -ENOMEM : 0;
	if (rv == 0)
		rv = pio_mkdir(pio, s->pdir);
	if (rv == 0)
		rv = pio_mkdir(pio, mdir);
	if (rv == 0)
		rv = clu_new(loop, cfg, pio, fl, &s->clu);
	if (rv != 0) {
		srv_free(s);
		return rv;
	}
	clu_on(s->clu, CLU_KIND_META_FWD, on_meta_fwd, s);
	clu_on(s->clu, CLU_KIND_META_REPLY, on_meta_reply, s);
	clu_on(s->clu, CLU_KIND_SEND_FWD, on_send_fwd, s);
	clu_on(s->clu, CLU_KIND_SEND_REPLY, on_send_reply, s);
	clu_on(s->clu, CLU_KIND_SEND_PLACED, on_send_placed, s);
	clu_on(s->clu, CLU_KIND_POLL_FWD, on_poll_fwd, s);
	clu_on(s->clu, CLU_KIND_POLL_REPLY, on_poll_reply, s);
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	uint64_t ids[CLU_MAX_NODES];
	for (size_t i = 0; i < n; i++)
		ids[i] = nodes[i].id;
	rv = meta_open(s, ids, n);
	if (rv != 0) {
		srv_free(s);
		return rv;
	}
	if (n > 1)
		clear_own_members(s);
	else
		s->clear_state = 1; /* a single node empties every group instead (meta_leader_ready) */
	if (n == 1) {
		/* A single node has its state at once: wait for the replay and the root user. */
		uint64_t until = mono_ms() + 30000;
		/* The Raft timers do not keep the loop alive (see cluster.c): this one does, meanwhile. */
		uv_ref((uv_handle_t *)&s->house);
		uv_timer_start(&s->house, on_house, 1, 1);
		while ((!s->meta_caught_up || s->leader_work || meta_user(s->meta, 0) == NULL) && mono_ms() < until)
			uv_run(loop, UV_RUN_ONCE);
		uv_timer_stop(&s->house);
		uv_unref((uv_handle_t *)&s->house);
		house_arm(s);
		if (meta_user(s->meta, 0) == NULL) {
			glog_error(TAG, "the metadata did not become ready");
			srv_free(s);
			return -EIO;
		}
	}
	glog_info(TAG, "metadata: %" PRIu64 " entries, %u partitions here", s->meta_replay_to, srv_partition_count(s));
	*out = s;
	return 0;
}

void srv_stop_network(struct srv *s)
{
	clu_stop_network(s->clu);
}

void srv_free(struct srv *s)
{
	s->closing = true;
	while (s->jobs > 0)
		uv_run(s->loop, UV_RUN_ONCE);
	while (s->sessions != NULL)
		srv_session_close(s->sessions);
	while (s->parts != NULL)
		tparts_drop(s, s->parts->stream_id, s->parts->topic_id, false);
	while (s->mwaits != NULL)
		mwait_done(s, s->mwaits, -ECANCELED, 0, NULL);
	while (s->lwaits != NULL) {
		struct lwait *lw = s->lwaits;
		s->lwaits = lw->next;
		finish_buf(lw->p, 0, true, &lw->body);
		wire_buf_free(&lw->body);
		free(lw);
	}
	while (s->fwds != NULL) {
		struct fwd *f = s->fwds;
		s->fwds = f->next;
		if (!f->relay)
			finish(f->p, E_ERROR, false, NULL, 0);
		free(f);
	}
	while (s->pfwds != NULL) {
		struct pfwd *f = s->pfwds;
		s->pfwds = f->next;
		finish(f->p, E_ERROR, false, NULL, 0);
		free(f->body);
		free(f);
	}
	uv_timer_stop(&s->house);
	if (s->mg != NULL)
		clu_group_close(s->mg, false);
	s->mg = NULL;
	if (s->mlog != NULL)
		plog_close(s->mlog);
	clu_free(s->clu);
	uv_close((uv_handle_t *)&s->house, NULL);
	uv_run(s->loop, UV_RUN_NOWAIT);
	meta_free(s->meta);
	free(s);
}

/*
 * Draining (srv_drain; galgo-admin drain, and galgod itself on SIGTERM): the node asks for no vote in any
 * group and ignores leadership transfers to it (rgroup_set_campaign), tells its peers it is draining
 * (STATE: their balance_leaders hands it nothing), and hands every leadership it holds to another voter
 * that is connected, not draining and whose clock agrees, in placement order, retried each second per
 * group until it leads nothing that could be handed over (a group whose other replicas are all down or
 * draining, or that has none, is not waited for). It ends with srv_drain(false) or a restart.
 */
static bool drain_target_ok(struct srv *s, uint64_t id)
{
	return id != clu_node_id(s->clu) && clu_connected(s->clu, id) && !clu_peer_draining(s->clu, id) &&
	       !clu_clock_disagrees(s->clu, id);
}

static uint32_t drain_tick(struct srv *s)
{
	uint32_t led = 0;
	uint64_t now = mono_ms();
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			const struct meta_partition *mp = &t->partitions[i];
			if (pt == NULL || !clu_group_leader(pt->g))
				continue;
			bool can = false;
			for (uint32_t k = 0; k < mp->n_replicas && !can; k++)
				can = drain_target_ok(s, mp->replicas[k]);
			if (!can)
				continue; /* no replica to hand it to (one replica, or the others down or draining) */
			led++;
			if (!s->draining || now - pt->transfer_at < 1000)
				continue;
			pt->transfer_at = now;
			for (uint32_t k = 0; k < mp->n_replicas; k++)
				if (drain_target_ok(s, mp->replicas[k]) && clu_group_transfer(pt->g, mp->replicas[k]) == 0)
					break;
		}
	}
	if (s->mg != NULL && clu_group_leader(s->mg)) {
		struct rgroup_member m[2 * CLU_MAX_NODES];
		size_t nm = clu_group_members(s->mg, m, sizeof(m) / sizeof(m[0]));
		if (nm > sizeof(m) / sizeof(m[0]))
			nm = sizeof(m) / sizeof(m[0]);
		bool can = false;
		for (size_t k = 0; k < nm && !can; k++)
			can = m[k].role == RAFT_VOTER && drain_target_ok(s, m[k].id);
		led += can;
		if (can && s->draining && now - s->meta_transfer_at >= 1000) {
			s->meta_transfer_at = now;
			for (size_t k = 0; k < nm; k++)
				if (m[k].role == RAFT_VOTER && drain_target_ok(s, m[k].id) && clu_group_transfer(s->mg, m[k].id) == 0)
					break;
		}
	}
	return led;
}

uint32_t srv_drain(struct srv *s, bool on)
{
	if (on != s->draining) {
		s->draining = on;
		glog_info(TAG, on ? "draining: handing over every leadership this node holds, taking none"
				  : "drain ended: this node may lead again");
		bool campaign = on ? false : !s->clock_skewed;
		for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
			for (uint32_t i = 0; i < tp->n; i++)
				if (tp->pp[i] != NULL)
					clu_group_set_campaign(tp->pp[i]->g, campaign);
		if (s->mg != NULL)
			clu_group_set_campaign(s->mg, !on);
		clu_set_draining(s->clu, on);
	}
	return drain_tick(s);
}

/*
 * Leadership balance: the first replica of a partition is its preferred leader, and placement rotates
 * the first replica over the nodes (node/meta.c), so preferred leaders spread evenly. A leader that is
 * not the preferred one hands over to it when its link is up, at most every BALANCE_MS per partition;
 * libraft sends the TimeoutNow only once the target has caught up.
 */
#define BALANCE_MS 5000u
static void balance_leaders(struct srv *s)
{
	uint64_t now = mono_ms(), self = clu_node_id(s->clu);
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			const struct meta_partition *mp = &t->partitions[i];
			if (pt == NULL || pt->leaving || !clu_group_leader(pt->g) || now - pt->transfer_at < BALANCE_MS)
				continue;
			if (mp->n_replicas < 2 || mp->replicas[0] == self || !clu_connected(s->clu, mp->replicas[0]) ||
			    clu_clock_disagrees(s->clu, mp->replicas[0]) || clu_peer_draining(s->clu, mp->replicas[0]))
				continue;
			pt->transfer_at = now;
			if (clu_group_transfer(pt->g, mp->replicas[0]) == 0)
				glog_debug(TAG, "partition %" PRIu32 "/%" PRIu32 "/%" PRIu32 ": leadership to node %" PRIu32,
					   pt->stream_id, pt->topic_id, pt->pid, mp->replicas[0]);
		}
	}
}

static bool id_in(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/*
 * Membership of a group, driven by its leader one change at a time (each must commit before the next;
 * rgroup answers -EBUSY meanwhile): first a wanted node that is not a member joins as a standby, then a
 * wanted standby is promoted (libraft's catch-up rounds first) while there are fewer than max_voters
 * voters, and last a member that is not wanted goes; the leader itself goes by handing leadership to a
 * wanted voter first. So a replica set changes standby-first, and never drops below its quorum.
 */
static void group_reconcile(struct srv *s, struct clu_group *g, const uint64_t *want, size_t n_want,
			    size_t max_voters, const char *what)
{
	struct rgroup_member m[2 * CLU_MAX_NODES];
	size_t nm = clu_group_members(g, m, sizeof(m) / sizeof(m[0]));
	if (nm > sizeof(m) / sizeof(m[0]))
		nm = sizeof(m) / sizeof(m[0]);
	uint64_t self = clu_node_id(s->clu), members[2 * CLU_MAX_NODES];
	size_t voters = 0;
	for (size_t i = 0; i < nm; i++) {
		members[i] = m[i].id;
		voters += m[i].role == RAFT_VOTER;
	}
	for (size_t k = 0; k < n_want; k++)
		if (!id_in(members, nm, want[k])) {
			if (clu_group_add(g, want[k]) == 0)
				glog_info(TAG, "%s: node %" PRIu64 " added as a standby", what, want[k]);
			return;
		}
	for (size_t i = 0; i < nm && voters < max_voters; i++)
		if (m[i].role != RAFT_VOTER && id_in(want, n_want, m[i].id)) {
			uint64_t id = m[i].id;
			if (clu_group_promote(g, id) == 0)
				glog_info(TAG, "%s: node %" PRIu64 " promoted to voter", what, id);
			return; /* -EINPROGRESS: catching up; asked again at the next tick */
		}
	for (size_t i = 0; i < nm; i++) {
		uint64_t id = m[i].id;
		if (id_in(want, n_want, id))
			continue;
		if (id != self) {
			if (clu_group_remove(g, id) == 0)
				glog_info(TAG, "%s: node %" PRIu64 " removed", what, id);
			return;
		}
		for (size_t j = 0; j < nm; j++) {
			uint64_t to = m[j].id;
			if (m[j].role == RAFT_VOTER && to != self && id_in(want, n_want, to) && clu_connected(s->clu, to)) {
				if (clu_group_transfer(g, to) == 0)
					glog_info(TAG, "%s: this node is leaving; leadership to node %" PRIu64, what, to);
				return;
			}
		}
		return;
	}
}

/*
 * A replica the metadata moved away closes (and deletes its log) once the group no longer needs it:
 * its configuration no longer lists it, or it has known no leader for three election timeouts (the
 * leader stops talking to a removed member, which then never hears of its removal).
 */
static bool part_may_leave(struct srv *s, struct part *pt)
{
	if (clu_group_leader(pt->g))
		return false;
	struct rgroup_member m[2 * CLU_MAX_NODES];
	size_t nm = clu_group_members(pt->g, m, sizeof(m) / sizeof(m[0]));
	bool member = false;
	for (size_t i = 0; i < nm && i < sizeof(m) / sizeof(m[0]); i++)
		member |= m[i].id == clu_node_id(s->clu);
	if (!member)
		return true;
	uint64_t now = mono_ms();
	if (clu_group_leader_id(pt->g) != 0) {
		pt->leaderless_since = 0;
		return false;
	}
	if (pt->leaderless_since == 0)
		pt->leaderless_since = now;
	return now - pt->leaderless_since >= 3ull * s->cfg->cluster.election_timeout_ms;
}

/* Every tick: the metadata leader and each partition leader bring their group to the node table. */
static void membership_tick(struct srv *s)
{
	const struct meta *m = s->meta;
	if (m->n_nodes == 0 || !s->meta_caught_up)
		return;
	roster_from_meta(s); /* a removed node leaves the roster once no group here counts it */
	uint64_t want[CLU_MAX_NODES];
	if (clu_group_leader(s->mg)) {
		for (uint32_t i = 0; i < m->n_nodes; i++)
			want[i] = m->nodes[i].id;
		group_reconcile(s, s->mg, want, m->n_nodes, 5, "metadata group");
	}
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(m, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL)
				continue;
			if (pt->leaving && part_may_leave(s, pt)) {
				glog_info(TAG, "partition %" PRIu32 "/%" PRIu32 "/%" PRIu32 ": replica moved away; closed",
					  pt->stream_id, pt->topic_id, pt->pid);
				slot_drop(s, tp, i);
				continue;
			}
			if (!clu_group_leader(pt->g))
				continue;
			const struct meta_partition *mp = &t->partitions[i];
			for (uint32_t r = 0; r < mp->n_replicas; r++)
				want[r] = mp->replicas[r];
			char what[64];
			snprintf(what, sizeof(what), "partition %" PRIu32 "/%" PRIu32 "/%" PRIu32, pt->stream_id, pt->topic_id,
				 pt->pid);
			group_reconcile(s, pt->g, want, mp->n_replicas, META_MAX_REPLICAS, what);
		}
	}
}

/*
 * The scrubber: once a tick (a second) it verifies up to storage.scrub_rate bytes of stored records not yet
 * known good (partition/plog.h), one partition after another, going on where it stopped; damage it finds
 * is fenced and logged by plog and counted in galgo_partition_damaged_records. Reads verify what they
 * serve whether or not the scrubber got there first, so this only moves that work off the read path.
 */
static void scrub_tick(struct srv *s)
{
	uint64_t budget = s->cfg->storage.scrub_rate;
	uint32_t n = srv_partition_count(s), start = n ? s->scrub_next % n : 0, k = 0;
	for (struct tparts *tp = s->parts; tp != NULL && budget > 0; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++, k++) {
			if (k < start || tp->logs[i] == NULL || budget == 0)
				continue;
			int64_t done = plog_scrub(tp->logs[i], budget);
			if (done > 0)
				budget = (uint64_t)done >= budget ? 0 : budget - (uint64_t)done;
			s->scrub_next = k + 1;
		}
	if (budget > 0)
		s->scrub_next = 0; /* everything after the start is verified: next time from the first again */
}

/*
 * Repair of damage found at run time (a read or the scrubber fenced a record: plog_damaged). A replica
 * with peers is rebuilt from them: a leader hands its leadership to another replica first (libraft hands
 * it over only to a replica that has caught up), and keeps it, serving what is not damaged, until that
 * works; a follower that knows a leader other than itself then closes, is set aside and reopens empty and
 * recovering, as when damage is found at open (slot_open). So a replica is only set aside while another
 * one leads, never leaving its group without the replica that still holds the data. A partition with a
 * single replica keeps its damage fenced.
 */

static void repair_tick(struct srv *s)
{
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL || pt->leaving || tp->logs[i] == NULL || plog_damaged(tp->logs[i]) == 0 ||
			    t->partitions[i].n_replicas < 2)
				continue;
			if (clu_group_leader(pt->g)) {
				const struct meta_partition *mp = &t->partitions[i];
				for (uint32_t k = 0; k < mp->n_replicas; k++)
					if (mp->replicas[k] != (uint32_t)clu_node_id(s->clu) &&
					    clu_connected(s->clu, mp->replicas[k]) &&
					    clu_group_transfer(pt->g, mp->replicas[k]) == 0)
						break;
				continue;
			}
			uint64_t leader = clu_group_leader_id(pt->g);
			if (leader == 0 || leader == clu_node_id(s->clu))
				continue; /* no other leader to rebuild from yet */
			char dir[4096];
			part_dir(s, tp->gids[i], dir, sizeof(dir));
			glog_warn(TAG, "partition %s holds %" PRIu64 " damaged records: rebuilding it from its peers", dir,
				  plog_damaged(tp->logs[i]));
			part_close(pt, false);
			tp->pp[i] = NULL;
			dedup_free(tp->dd[i]);
			tp->dd[i] = NULL;
			int rv = plog_close(tp->logs[i]);
			tp->logs[i] = NULL;
			if (rv != 0)
				glog_warn(TAG, "partition %s: closing its damaged log: %s", dir, strerror(-rv));
			(void)slot_open(s, t, tp, i, true);
		}
	}
}

/*
 * Clocks (node/clock.h): a probe to every peer each tick; a warning when a peer's clock goes past half the
 * maximum offset from this node's (and a note when it is back); and when this node's own clock is off from
 * most of the cluster's, it hands over every partition it leads, campaigns for none and admits no send
 * (send_local answers 58: it stamps nothing) until its clock agrees again.
 */
/*
 * This node's client addresses (node.advertised_host, <transport>.advertised_port) go into the metadata
 * (NODE_ADVERTISE) so that every node lists them (client_addr_of): submitted once the metadata is caught
 * up and names this node, and again every 2 s until the metadata holds what the settings say.
 */
static void advertise_tick(struct srv *s)
{
	if (s->closing || !s->meta_caught_up)
		return;
	uint32_t me = (uint32_t)clu_node_id(s->clu);
	const struct meta_node *mn = meta_node(s->meta, me);
	const struct galgo_config *cfg = s->cfg;
	if (mn == NULL || (strcmp(mn->adv_host, cfg->node.advertised_host) == 0 &&
			   mn->adv_tcp_port == cfg->tcp.advertised_port && mn->adv_quic_port == cfg->quic.advertised_port &&
			   mn->adv_http_port == cfg->http.advertised_port))
		return;
	uint64_t now = mono_ms();
	if (now < s->advertise_at)
		return;
	s->advertise_at = now + 2000;
	struct meta_cmd c = {.type = META_NODE_ADVERTISE, .ts = now_us(), .node_id = me, .n_nodes = 1};
	snprintf(c.nodes[0].adv_host, sizeof(c.nodes[0].adv_host), "%s", cfg->node.advertised_host);
	c.nodes[0].adv_tcp_port = (uint16_t)cfg->tcp.advertised_port;
	c.nodes[0].adv_quic_port = (uint16_t)cfg->quic.advertised_port;
	c.nodes[0].adv_http_port = (uint16_t)cfg->http.advertised_port;
	glog_info(TAG, "advertising to clients: host %s, tcp %u, quic %u, http %u (empty or 0: the roster's)",
		  cfg->node.advertised_host, cfg->tcp.advertised_port, cfg->quic.advertised_port, cfg->http.advertised_port);
	commit(s, &c);
}

/*
 * A consumer-group member whose client was this node's (client ids carry the node id) but whose session is
 * gone: the removal its session's close submitted (leave_all_groups) failed — the node could not reach the
 * metadata leader then — or never ran. Such a member would keep its partitions from every other member
 * for good (the jepsen group workload saw all three partitions held by clients long gone after a network
 * partition). Once a second each such member's removal is submitted again, at most every 2 s per client,
 * until it has applied.
 */
static void members_tick(struct srv *s)
{
	if (s->closing || s->clear_state != 1)
		return;
	uint64_t now = mono_ms();
	uint32_t me = (uint32_t)clu_node_id(s->clu);
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
			struct meta_topic *t = st->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups; g++) {
				const struct meta_group *grp = t->groups[g];
				for (uint32_t m = 0; grp != NULL && m < grp->n_members; m++) {
					uint32_t cid = grp->members[m].client_id;
					if (cid >> 27 != me)
						continue;
					bool live = false;
					for (struct srv_session *o = s->sessions; o != NULL && !live; o = o->next)
						live = !o->closed && o->client_id == cid;
					if (live)
						continue;
					size_t slot = sizeof(s->gone) / sizeof(s->gone[0]), free_slot = slot;
					for (size_t j = 0; j < sizeof(s->gone) / sizeof(s->gone[0]); j++) {
						if (s->gone[j].client_id == cid)
							slot = j;
						else if (s->gone[j].retry_at <= now && free_slot == sizeof(s->gone) / sizeof(s->gone[0]))
							free_slot = j;
					}
					if (slot == sizeof(s->gone) / sizeof(s->gone[0]))
						slot = free_slot;
					if (slot == sizeof(s->gone) / sizeof(s->gone[0]) ||
					    (s->gone[slot].client_id == cid && s->gone[slot].retry_at > now))
						continue; /* submitted lately, or too many at once: next time */
					s->gone[slot].client_id = cid;
					s->gone[slot].retry_at = now + 2000;
					glog_info(TAG, "consumer-group member %" PRIu32 " has no session here any more: removing it",
						  cid);
					struct meta_cmd c = {.type = META_REMOVE_MEMBER, .ts = now_us(), .client_id = cid};
					commit(s, &c);
				}
			}
		}
	}
}

static void clock_tick(struct srv *s)
{
	uint64_t max = (uint64_t)s->cfg->cluster.max_clock_offset_ms * 1000u, self = clu_node_id(s->clu);
	if (max == 0)
		return;
	clu_clock_probe(s->clu);
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	for (size_t i = 0; i < n; i++) {
		uint64_t peer = nodes[i].id;
		int64_t off;
		uint64_t err;
		if (peer == self || peer > CLU_MAX_NODE_ID || !clu_clock_offset(s->clu, peer, &off, &err))
			continue;
		uint64_t mag = off < 0 ? (uint64_t)0 - (uint64_t)off : (uint64_t)off;
		bool far = mag > err && mag - err > max / 2;
		if (far && !s->clock_far[peer])
			glog_warn(TAG, "node %" PRIu64 "'s clock is %+.3f s from this node's (± %.1f ms); at most %" PRIu32
				       " ms is tolerated",
				  peer, (double)off / 1e6, (double)err / 1e3, s->cfg->cluster.max_clock_offset_ms);
		else if (!far && s->clock_far[peer])
			glog_info(TAG, "node %" PRIu64 "'s clock is back within %.3f s of this node's", peer,
				  (double)max / 2e6);
		s->clock_far[peer] = far;
	}
	bool skewed = clu_clock_skewed(s->clu);
	if (skewed != s->clock_skewed) {
		if (skewed)
			glog_error(TAG, "this node's clock is off by more than %" PRIu32 " ms from most of the cluster: it "
					"leads no partition and stamps no timestamp until that is fixed",
				   s->cfg->cluster.max_clock_offset_ms);
		else
			glog_info(TAG, "this node's clock agrees with the cluster's again: it may lead partitions");
		s->clock_skewed = skewed;
		for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
			for (uint32_t i = 0; i < tp->n; i++)
				if (tp->pp[i] != NULL)
					clu_group_set_campaign(tp->pp[i]->g, !skewed && !s->draining);
	}
	if (!skewed)
		return;
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL || !clu_group_leader(pt->g))
				continue;
			const struct meta_partition *mp = &t->partitions[i];
			for (uint32_t k = 0; k < mp->n_replicas; k++)
				if (mp->replicas[k] != self && clu_connected(s->clu, mp->replicas[k]) &&
				    clu_group_transfer(pt->g, mp->replicas[k]) == 0)
					break;
		}
	}
}

void srv_tick(struct srv *s)
{
	uint64_t now = now_us();
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		if (t == NULL)
			continue;
		uint64_t age = t->message_expiry == META_NEVER ? 0 : t->message_expiry;
		uint64_t size = t->max_topic_size == META_NEVER ? 0 : t->max_topic_size / (tp->n ? tp->n : 1);
		if (age == 0 && size == 0)
			continue;
		for (uint32_t i = 0; i < tp->n; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL)
				continue;
			uint64_t keep = plog_retain_keep_from(pt->log, now, age, size, part_applied(pt));
			if (part_compact(pt, keep) == 0)
				plog_retain(pt->log, now, age, size, keep - 1);
		}
	}
	meta_compact(s, false);
	membership_tick(s);
	members_tick(s);
	advertise_tick(s);
	clu_state_tick(s->clu);
	if (s->draining)
		(void)drain_tick(s);
	else
		balance_leaders(s);
	scrub_tick(s);
	repair_tick(s);
	clock_tick(s);
}

uint32_t srv_partition_count(const struct srv *s)
{
	uint32_t n = 0;
	for (const struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		n += tp->n;
	return n;
}

int srv_session_bind_user(struct srv_session *ss, uint32_t user_id)
{
	struct meta_user *u = meta_user(ss->srv->meta, user_id);
	if (u == NULL || u->status != META_USER_ACTIVE)
		return -ENOENT;
	ss->bound = true;
	ss->user_id = user_id;
	ss->session = ++ss->srv->next_session;
	return 0;
}

/* ---- Metrics ---- */

/* Appends a label value with the escapes of the Prometheus text format (backslash, quote, newline). */
static void metrics_label(struct wire_buf *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			wire_put_u8(b, '\\');
		if (*v == '\n')
			wire_put_bytes(b, "\\n", 2);
		else
			wire_put_u8(b, (uint8_t)*v);
	}
}

static void metrics_printf(struct wire_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void metrics_printf(struct wire_buf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		wire_put_bytes(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* One per-partition sample: name{stream="..",topic="..",partition="N"} value. */
static void metrics_partition(struct wire_buf *b, const char *name, const struct meta_stream *st,
			      const struct meta_topic *t, uint32_t pid, uint64_t v)
{
	metrics_printf(b, "%s{stream_id=\"%" PRIu32 "\",stream=\"", name, st->id);
	metrics_label(b, st->name);
	metrics_printf(b, "\",topic_id=\"%" PRIu32 "\",topic=\"", t->id);
	metrics_label(b, t->name);
	metrics_printf(b, "\",partition=\"%" PRIu32 "\"} %" PRIu64 "\n", pid, v);
}

/*
 * Per Raft group hosted here (label group: "meta" or the partition's stream/topic/partition labels):
 * galgo_raft_term, galgo_raft_leader (1 on the leader), galgo_raft_commit_lag (entries in this replica's log
 * not known committed) and galgo_raft_apply_lag (committed, not applied); galgo_raft_leader_id names the
 * leader this replica knows (0: none).
 */
static void metrics_raft_one(struct wire_buf *b, const char *name, const char *labels, uint64_t v)
{
	metrics_printf(b, "%s{%s} %" PRIu64 "\n", name, labels, v);
}

static void metrics_raft(struct srv *s, struct wire_buf *b)
{
	static const struct {
		const char *name, *help;
	} m[] = {
		{"galgo_raft_term", "Current Raft term of the group on this node."},
		{"galgo_raft_leader", "1 when this node leads the group."},
		{"galgo_raft_leader_id", "The leader this replica knows (0: none)."},
		{"galgo_raft_commit_lag", "Entries in this replica's log not yet known to be committed."},
		{"galgo_raft_apply_lag", "Committed entries not yet applied here."},
		{"galgo_raft_recovering", "1 while this replica, rebuilt after damage, catches up (it votes in no "
					  "election meanwhile)."},
	};
	for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
		metrics_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", m[k].name, m[k].help, m[k].name);
		struct rgroup_status st;
		clu_group_status(s->mg, &st);
		uint64_t v[] = {st.term, st.state == RAFT_LEADER, st.leader_id,
				st.last_index > st.commit_index ? st.last_index - st.commit_index : 0,
				st.commit_index > st.applied_index ? st.commit_index - st.applied_index : 0,
				st.recovering};
		metrics_raft_one(b, m[k].name, "group=\"meta\"", v[k]);
		for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
			for (uint32_t i = 0; i < tp->n; i++) {
				if (tp->pp[i] == NULL)
					continue;
				clu_group_status(tp->pp[i]->g, &st);
				uint64_t w[] = {st.term, st.state == RAFT_LEADER, st.leader_id,
						st.last_index > st.commit_index ? st.last_index - st.commit_index : 0,
						st.commit_index > st.applied_index ? st.commit_index - st.applied_index : 0,
						st.recovering};
				char labels[96];
				snprintf(labels, sizeof(labels), "group=\"partition\",stream_id=\"%" PRIu32 "\",topic_id=\"%" PRIu32
					 "\",partition=\"%" PRIu32 "\"", tp->stream_id, tp->topic_id, i);
				metrics_raft_one(b, m[k].name, labels, w[k]);
			}
	}
	metrics_printf(b, "# HELP galgo_clock_skewed 1 while this node's clock is off from most of the cluster's by "
			  "more than cluster.max_clock_offset_ms.\n# TYPE galgo_clock_skewed gauge\ngalgo_clock_skewed %d\n",
		       s->clock_skewed ? 1 : 0);
	metrics_printf(b, "# HELP galgo_clock_offset_seconds The peer's wall clock minus this node's, measured on "
			  "the node-to-node link.\n# TYPE galgo_clock_offset_seconds gauge\n");
	const struct clu_node *nodes;
	size_t nn = clu_nodes(s->clu, &nodes);
	for (size_t i = 0; i < nn; i++) {
		int64_t off;
		uint64_t err;
		if (nodes[i].id != clu_node_id(s->clu) && clu_clock_offset(s->clu, nodes[i].id, &off, &err))
			metrics_printf(b, "galgo_clock_offset_seconds{peer=\"%" PRIu64 "\"} %.6f\n", nodes[i].id,
				       (double)off / 1e6);
	}
	metrics_printf(b, "# HELP galgo_sends_via_peer_total Sends of a partition this node replicates that another replica "
			  "relayed to the leader, which this node could not reach.\n# TYPE galgo_sends_via_peer_total counter\n"
			  "galgo_sends_via_peer_total %" PRIu64 "\n", s->sends_via_peer);
	metrics_printf(b, "# HELP galgo_partition_repairs_total Damaged replicas set aside on this node to be rebuilt "
			  "from their peers.\n# TYPE galgo_partition_repairs_total counter\ngalgo_partition_repairs_total %"
			  PRIu64 "\n", s->repairs);
}

int srv_health(struct srv *s, bool ready, char **out, size_t *len)
{
	struct rgroup_status ms = {0};
	if (s->mg != NULL)
		clu_group_status(s->mg, &ms);
	uint32_t parts = 0, leaderless = 0;
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL || pt->leaving)
				continue;
			parts++;
			leaderless += clu_group_leader_id(pt->g) == 0;
		}
	bool ok = !s->closing && s->mg != NULL && ms.leader_id != 0 && s->meta_caught_up &&
		  ms.applied_index >= ms.commit_index && s->root_seen && leaderless == 0;
	char buf[512];
	int n = snprintf(buf, sizeof(buf),
			 "{\"live\":true,\"ready\":%s,\"node_id\":%" PRIu64 ",\"metadata_leader\":%" PRIu64
			 ",\"metadata_commit\":%" PRIu64 ",\"metadata_applied\":%" PRIu64
			 ",\"partitions\":%" PRIu32 ",\"partitions_without_leader\":%" PRIu32 "}",
			 ok ? "true" : "false", clu_node_id(s->clu), ms.leader_id, ms.commit_index, ms.applied_index, parts,
			 leaderless);
	*out = strdup(buf);
	if (*out == NULL)
		return -ENOMEM;
	*len = (size_t)n;
	return !ready || ok ? 200 : 503;
}

int srv_metrics_text(struct srv *s, char **out, size_t *len)
{
	static const char *const kinds[] = {"", "tcp", "quic", "http"};
	static const struct {
		const char *name, *help;
	} part_metrics[] = {
		{"galgo_partition_messages", "Messages held by the partition."},
		{"galgo_partition_bytes", "Bytes of the message batches held by the partition."},
		{"galgo_partition_current_offset", "Offset of the partition's last message (0 when empty)."},
		{"galgo_partition_damaged_records", "Stored records of this replica found failing their checksums "
						    "(fenced: never served)."},
		{"galgo_partition_unverified_bytes", "Stored bytes of this replica not verified yet since it opened."},
	};
	struct wire_buf b;
	wire_buf_init(&b);
	for (size_t m = 0; m < sizeof(part_metrics) / sizeof(part_metrics[0]); m++) {
		metrics_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n", part_metrics[m].name, part_metrics[m].help,
			       part_metrics[m].name);
		for (uint32_t i = 0; i < s->meta->n_streams; i++) {
			const struct meta_stream *st = s->meta->streams[i];
			for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
				const struct meta_topic *t = st->topics[k];
				for (uint32_t pid = 0; t != NULL && pid < t->n_partitions; pid++) {
					struct plog *l = part_log(s, st->id, t->id, pid);
					uint64_t next = l != NULL ? plog_next_offset(l) : 0;
					uint64_t v = m == 0   ? (l != NULL ? next - plog_first_offset(l) : 0)
						     : m == 1 ? part_bytes(s, st->id, t->id, pid)
						     : m == 2 ? (next > 0 ? next - 1 : 0)
						     : m == 3 ? (l != NULL ? plog_damaged(l) : 0)
							      : (l != NULL ? plog_unverified_bytes(l) : 0);
					metrics_partition(&b, part_metrics[m].name, st, t, pid, v);
				}
			}
		}
	}
	uint32_t conns[SRV_HTTP + 1] = {0};
	for (const struct srv_session *ss = s->sessions; ss != NULL; ss = ss->next)
		conns[ss->kind <= SRV_HTTP ? ss->kind : 0]++;
	metrics_printf(&b, "# HELP galgo_connections Client sessions open (an HTTP request holds one while it runs).\n"
			   "# TYPE galgo_connections gauge\n");
	for (int k = SRV_TCP; k <= SRV_HTTP; k++)
		metrics_printf(&b, "galgo_connections{transport=\"%s\"} %" PRIu32 "\n", kinds[k], conns[k]);
	metrics_printf(&b, "# HELP galgo_requests_total Request frames received.\n"
			   "# TYPE galgo_requests_total counter\n");
	for (int k = SRV_TCP; k <= SRV_HTTP; k++)
		metrics_printf(&b, "galgo_requests_total{transport=\"%s\"} %" PRIu64 "\n", kinds[k], s->tstats[k].requests);
	metrics_printf(&b, "# HELP galgo_request_duration_seconds Time from a request's arrival to its reply leaving.\n"
			   "# TYPE galgo_request_duration_seconds histogram\n");
	for (int k = SRV_TCP; k <= SRV_HTTP; k++) {
		const struct srv_tstats *t = &s->tstats[k];
		uint64_t cum = 0;
		for (size_t i = 0; i < LAT_BUCKETS; i++) {
			cum += t->latency_buckets[i];
			metrics_printf(&b, "galgo_request_duration_seconds_bucket{transport=\"%s\",le=\"%g\"} %" PRIu64 "\n",
				       kinds[k], (double)lat_bounds_us[i] / 1e6, cum);
		}
		metrics_printf(&b, "galgo_request_duration_seconds_bucket{transport=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
			       kinds[k], t->replies);
		metrics_printf(&b, "galgo_request_duration_seconds_sum{transport=\"%s\"} %.6f\n", kinds[k],
			       (double)t->latency_sum_us / 1e6);
		metrics_printf(&b, "galgo_request_duration_seconds_count{transport=\"%s\"} %" PRIu64 "\n", kinds[k],
			       t->replies);
	}
	metrics_raft(s, &b);
	wire_put_u8(&b, 0);
	if (wire_buf_error(&b) != 0) {
		wire_buf_free(&b);
		return -ENOMEM;
	}
	*len = b.len - 1;
	*out = (char *)wire_buf_take(&b, &(size_t){0});
	return 0;
}
