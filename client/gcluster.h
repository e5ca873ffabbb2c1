/*
 * gcluster — a cluster-aware producer on top of gclient: it sends each partition's batches straight to
 * that partition's Raft leader instead of letting a follower forward them.
 *
 * It uses Galgo's two protocol extensions (docs/protocol-extensions.md): GetPartitionLeaders (10001) for
 * the map partition → (leader node, leader epoch) and the nodes' endpoints, and SetRedirect (10002) so
 * that a node which does not lead a partition answers NotLeader (10058, with the leader's id, epoch and
 * endpoint) instead of forwarding.
 *
 * One `struct gcluster` holds one control connection (to a seed, later to any node that answers; used
 * to read the map, and by the caller for polls and metadata through gcluster_any) and one lazily opened
 * connection per leader node, each logged in and in redirect mode. Like gclient it is not thread-safe:
 * one per thread.
 *
 * Routing and retries. A send looks its partition up in the map (resolving stream and topic names to
 * ids once, through the control connection) and goes to the leader's connection. It is retried when
 *   - the node answers NotLeader: the reply's leader replaces the entry if its epoch is higher;
 *   - the connection to the leader is lost or cannot be opened: every entry led by that node becomes
 *     stale (it is no longer trusted until the map shows a leader of a higher epoch);
 * Each such retry is one redirect hop; after max_hops hops the send fails with -ELOOP. A node that answers
 * 58 TransientNotAccepted (a leadership transfer or an election is running, or too much is uncommitted)
 * is asked again after a short pause, with the map read again, spending no hop, until leader_wait_ms;
 * then the send fails with 58. While the map has
 * no usable leader for the partition (none elected yet, or a stale one) the send refreshes the map every
 * few tens of milliseconds without spending hops, for at most leader_wait_ms, then fails with
 * -EHOSTUNREACH. gcluster_last_error describes the last failure in words.
 * An entry of the map is replaced only by a report with a higher epoch (the Raft term of the leader's
 * election), so an answer from a node that has not yet heard of an election never undoes a newer one.
 *
 * Delivery is at least once: a batch whose connection broke before its reply may have been committed
 * and is sent again to the successor. The batch is rebuilt for each attempt: with gcluster_send and the
 * pipelined calls its message ids are new random ones each time; with gcluster_send_ids every attempt
 * carries the caller's ids, so a message sent twice is recognisable (and a topic with Galgo's
 * `dedup_window` option drops the copy).
 *
 * Return values follow gclient.h: 0, a negative errno, or a positive Iggy code the server sent (one that
 * is not retried, e.g. 3007 PartitionNotFound).
 */
#ifndef GALGO_GCLUSTER_H
#define GALGO_GCLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/gclient.h"

#define GCLUSTER_DEFAULT_HOPS 3
#define GCLUSTER_DEFAULT_LEADER_WAIT_MS 10000
#define GCLUSTER_MAX_REPLICAS 16

/* Status codes of the extensions (docs/protocol-extensions.md) and of Iggy's transient refusal. */
#define GCLUSTER_NOT_LEADER 10058
#define GCLUSTER_NOT_ACCEPTED 58
#define GCLUSTER_CODE_PARTITION_LEADERS 10001
#define GCLUSTER_CODE_SET_REDIRECT 10002

struct gcluster;

struct gcluster_opts {
	const char *username, *password; /* NULL: iggy / iggy */
	struct gclient_opts conn;        /* for every connection it opens */
	uint32_t max_hops;               /* 0: GCLUSTER_DEFAULT_HOPS */
	int leader_wait_ms;              /* 0: GCLUSTER_DEFAULT_LEADER_WAIT_MS */
};

/*
 * Connects to the first seed that accepts a login ("host:port,host:port,..."), reads the map and
 * returns the cluster client. `opts` may be NULL. A seed list without any reachable node gives the last
 * connection error.
 */
int gcluster_open(const char *seeds, const struct gcluster_opts *opts, struct gcluster **out);

/* Closes every connection and frees the client. NULL is allowed. */
void gcluster_close(struct gcluster *gc);

/*
 * Reads the map again (GetPartitionLeaders) and merges it: an entry changes only for a higher epoch.
 * Asks the idle leader connections and the control connection until one answers and, if some partition
 * still has no usable leader, the others too. Sends never in flight here: -EBUSY otherwise.
 */
int gcluster_refresh(struct gcluster *gc);

/* One partition of the map as this client knows it. */
struct gcluster_part {
	uint32_t stream_id, topic_id, partition_id;
	uint32_t leader;   /* node id, 0 when unknown */
	uint64_t epoch;
	bool stale;        /* the leader was found gone; waiting for a higher epoch */
	uint8_t n_replicas;
	uint32_t replicas[GCLUSTER_MAX_REPLICAS];
};

/* The number of partitions in the map, and the i-th (in stream, topic, partition order). */
size_t gcluster_partition_count(const struct gcluster *gc);
const struct gcluster_part *gcluster_partition(const struct gcluster *gc, size_t i);
/* The entry of one partition, or NULL when the map does not have it. */
const struct gcluster_part *gcluster_lookup(const struct gcluster *gc, uint32_t stream_id, uint32_t topic_id,
					    uint32_t partition_id);

/* The TCP endpoint ("host:port") of a node of the map; false when the node is not known. */
bool gcluster_node_address(const struct gcluster *gc, uint32_t node_id, char *buf, size_t len);

/*
 * Sends n messages as one batch to `partition` of the topic (GCLIENT_BALANCED: this client picks the
 * topic's partitions round robin) on the partition leader's connection, with the retries described
 * above. `out` (may be NULL) receives the partition and base offset.
 */
int gcluster_send(struct gcluster *gc, const struct wire_id *stream, const struct wire_id *topic, uint32_t partition,
		  uint32_t n, const void *const *payloads, const uint32_t *lens, struct gclient_sent *out);

/*
 * What happened to one gcluster_send_ids, attempt by attempt, so that a caller can tell a batch that was
 * certainly not admitted from one whose fate is unknown. An attempt is a request written to a node's
 * connection (a connection that could not be opened, or a map without a usable leader, makes none).
 */
struct gcluster_send_report {
	uint32_t attempts;      /* requests written */
	uint32_t node;          /* the node of the last attempt, 0 when none */
	int last_rv;            /* the last attempt's result: 0, an Iggy code or a negative errno (see
				 * gclient.h); when the send's own return value is gcluster's (-ELOOP,
				 * -EHOSTUNREACH, -ENOENT, 58 after leader_wait_ms) this is what the node said */
	bool earlier_unsettled; /* an attempt before the last ended otherwise than with 58 or 10058, the two
				 * answers that prove a batch was not admitted (docs/protocol-extensions.md,
				 * docs/ARCHITECTURE.md "A send"): that attempt may have been committed */
};

/*
 * As gcluster_send, with the caller's message ids (ids[i] for message i, the u128 little-endian as it
 * travels; NULL: random, as gcluster_send) on every attempt, and the report (may be NULL) filled whatever
 * the result. The identifiers, payloads, lens and ids are only read during the call.
 */
int gcluster_send_ids(struct gcluster *gc, const struct wire_id *stream, const struct wire_id *topic,
		      uint32_t partition, uint32_t n, const void *const *payloads, const uint32_t *lens,
		      const uint8_t (*ids)[16], struct gclient_sent *out, struct gcluster_send_report *report);

/*
 * Pipelined sends, as gclient_send_async / gclient_wait, over the leaders' connections: replies come
 * back in the order of the sends. The identifiers, payloads and lens must stay valid (and unchanged)
 * until gcluster_wait has returned that send's reply, because a batch that has to be re-sent is built
 * again from them. When one reply fails in a retryable way, every later send is collected first and the
 * failed ones are re-sent in their original order, one at a time, so a partition's batches keep their
 * order.
 */
int gcluster_send_async(struct gcluster *gc, const struct wire_id *stream, const struct wire_id *topic,
			uint32_t partition, uint32_t n, const void *const *payloads, const uint32_t *lens);
int gcluster_wait(struct gcluster *gc, struct gclient_sent *out);
uint32_t gcluster_inflight(const struct gcluster *gc);

/* The control connection (logged in), for polls, metadata and anything else lock-step; NULL if none. */
struct gclient *gcluster_any(struct gcluster *gc);

/* The node id of the control connection's node (0: none open, or a seed not in the map). */
uint32_t gcluster_control_node(const struct gcluster *gc);

/* Counters since open: retries taken (hops), map reads, connections opened. */
struct gcluster_stats {
	uint64_t hops, refreshes, connects;
};
void gcluster_get_stats(const struct gcluster *gc, struct gcluster_stats *out);

/* A sentence about the last failure of a send or refresh ("" if none). */
const char *gcluster_last_error(const struct gcluster *gc);

/* A NotLeader reply body (docs/protocol-extensions.md). */
struct gcluster_not_leader {
	uint32_t leader; /* 0: no leader known */
	uint64_t epoch;
	char host[256];
	uint16_t tcp_port;
};

/* Decodes a NotLeader body; -EPROTO when it is malformed. */
int gcluster_parse_not_leader(const uint8_t *body, size_t len, struct gcluster_not_leader *out);

#endif /* GALGO_GCLUSTER_H */
