/*
 * cluster — the node's replication layer: the roster, the node-to-node transport (transport/rnet), the
 * durable terms and votes of every group (raft/rmeta), and the Raft groups hosted here (raft/rgroup):
 * the metadata group and one group per partition replica. One timer drives every group's ticks; Raft
 * messages are routed by the group id in their header; other message kinds (forwarded commands, sends
 * and polls, and their replies) go to handlers the server registers.
 *
 * A single node is a one-voter cluster: the same code path, without a network (rnet is not opened).
 *
 * Each group keeps its snapshot file (raft/rsnap.h) in <data_dir>/raft/snap/<group id, 16 hex digits>.
 *
 * <data_dir>/raft/roster holds the last roster this node used, in cluster.nodes syntax (all four ports
 * written, then a newline), replaced atomically (temporary file, fdatasync, rename, directory sync) each
 * time it changes. At start the nodes it lists that the configured roster lacks are added: a node
 * restarted after nodes were added at runtime can reach them before it has applied the metadata again,
 * which needs their votes. A file that does not parse is ignored with a warning.
 *
 * Group ids: the metadata group is 1; a partition's group id is derived from the partition's identity
 * (see clu_partition_gid), never 1, and has the top bit set.
 *
 * Roster syntax (cluster.nodes): comma-separated ID@HOST:RAFT_PORT[:TCP_PORT[:QUIC_PORT[:HTTP_PORT]]],
 * ids 1..31, a client port 0: not served. The configured roster is where a node starts: the nodes it
 * dials, and (unless cluster.join) the voters it bootstraps the metadata group with. Once the metadata's node table is known (node/meta.h,
 * changed at runtime by AddNode and RemoveNode) the server sets the roster from it (clu_set_nodes).
 *
 * Threading: everything on the server's loop.
 */
#ifndef GALGO_CLUSTER_H
#define GALGO_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "node/config.h"
#include "partition/flusher.h"
#include "partition/pio.h"
#include "raft/rgroup.h"

#define CLU_META_GROUP 1u
#define CLU_MAX_NODES 16
#define CLU_MAX_NODE_ID 31 /* a node id fits the top 5 bits of a client id */
/*
 * The largest node-to-node message sent or accepted (rnet's max_message_bytes). A forwarded poll's reply
 * carries up to a client frame's worth of messages (proto/frame.h FRAME_MAX_SIZE less its header)
 * after its own 20-byte header: node/srv_poll.c checks at compile time that it fits.
 */
#define CLU_MAX_MESSAGE_BYTES (64u << 20)

/*
 * Message kinds on the node-to-node link (transport/rnet's one-byte kind). Bodies, little-endian:
 *   RAFT        an rmsg message (raft/rmsg.c), routed by its group id
 *   META_FWD    [req_id u64][metarec command (node/metarec.h)]; with no command: a read barrier
 *   META_REPLY  [req_id u64][-errno u32: 0 taken][index u64][term u64] (a barrier: the commit index, term 0)
 *   SEND_FWD    [req_id u64][group id u64][fence term u64][the verified Iggy batch]. The fence is the
 *               term in which the sender, a replica, knows the receiver as the partition's leader; 0 (not
 *               fenced) from a node hosting no replica, or from a replica that cannot reach the leader
 *               and asks another replica to relay it. The leader appends the batch only while it leads
 *               in that very term (any term when 0), else answers 58 (it did not append it). A follower
 *               that gets an unfenced one passes it on to its leader (a new req_id, fenced by its own
 *               view) and relays the SEND_REPLY; a fenced one (a replica's own) it answers 58. So a batch
 *               makes two node-to-node hops at most.
 *   SEND_REPLY  [req_id u64][Iggy status u32][base offset u64, UINT64_MAX: all retries][Raft index u64]
 *   SEND_PLACED [req_id u64][Raft index u64][term u64]: where the leader appended a forwarded batch,
 *               sent as it appends it (so before any message that can tell the sender it committed).
 *   POLL_FWD    47 bytes: [req_id u64][group id u64][stream u32][topic u32][partition u32]
 *               [consumer kind u8: 1 consumer, 2 group][consumer id u32: the numeric id, a group's id]
 *               [strategy kind u8: PollingStrategy's kind][strategy value u64][count u32][auto_commit u8]
 *               A poll of a partition the sender hosts no replica of, for a replica of it; everything the
 *               metadata decides (stream, topic, permission, consumer, group ownership) was checked by
 *               the sender. Any other length is ignored.
 *   POLL_REPLY  [req_id u64][Iggy status u32][metadata index u64][the 16-byte poll reply prefix]
 *               [the messages, as PollMessages' reply carries them]. Status ≠ 0: nothing follows the
 *               metadata index. The metadata index is that of the consumer offset the replica stored for
 *               an auto-commit (0: none); the sender relays the reply once it has applied that index too.
 *               At most CLU_MAX_MESSAGE_BYTES, as every message.
 *   CLOCK       25 bytes: [type u8: 0 probe, 1 answer][a u64][b u64][wall u64]. A probe carries the
 *               sender's wall clock (a, µs since the epoch) and monotonic clock (b, µs), wall 0; the
 *               answer echoes a and b and carries the answerer's wall clock when it answered (node/clock.h).
 *               Any other length or type is ignored.
 *   STATE       1 byte: [draining u8: 1 the sender is draining (it takes no leadership: hand it none), 0
 *               not]. Sent to every connected peer once a second and at once when it changes; a peer's
 *               draining counts for 3 s after its last STATE (a node that restarted is not draining).
 *               Any other length is ignored.
 * Request ids start from the sender's boot time in µs << 10, so they do not repeat across restarts.
 */
enum clu_kind {
	CLU_KIND_RAFT = 1,        /* an rmsg message of some group */
	CLU_KIND_META_FWD = 2,    /* a metadata command for the metadata leader */
	CLU_KIND_META_REPLY = 3,  /* its outcome */
	CLU_KIND_SEND_FWD = 4,    /* a producer's batch for a partition leader */
	CLU_KIND_SEND_REPLY = 5,  /* its outcome */
	CLU_KIND_POLL_FWD = 6,    /* a consumer's poll for a replica of the partition */
	CLU_KIND_POLL_REPLY = 7,  /* its outcome and the messages */
	CLU_KIND_SEND_PLACED = 8, /* where the leader appended a forwarded batch */
	CLU_KIND_CLOCK = 9,       /* a clock probe or its answer (node/clock.h) */
	CLU_KIND_STATE = 10,      /* the sender's own state: whether it is draining */
	CLU_KIND_MAX = 16,
};

struct clu_node {
	uint64_t id;
	char host[256];
	uint16_t raft_port, tcp_port, quic_port, http_port;
};

/* Whether a host name or IP literal has only the characters a roster allows: letters, digits, . - _ */
bool clu_host_valid(const char *h, size_t len);

/* Parses a roster. Ports left out are 0. Returns the number of nodes (>= 1) or -EINVAL; err says why. */
int clu_roster_parse(const char *s, struct clu_node *out, size_t max, char *err, size_t errlen);

struct clu;
struct clu_group;

struct clu_group_ops {
	void (*apply)(void *ud, const struct rgroup_entry *e);
	void (*state)(void *ud, int state, uint64_t term); /* optional */
	/* Optional: the owner's state becomes a snapshot's data, through `index` (raft/rgroup.h env.restore). */
	void (*restore)(void *ud, uint64_t index, const void *data, size_t len);
};

/* Creates the layer; with more than one node in the roster also opens the node-to-node listener. */
int clu_new(uv_loop_t *loop, const struct galgo_config *cfg, struct pio *pio, struct flusher *fl, struct clu **out);
void clu_free(struct clu *c);
/* Closes the node-to-node transport (the start of a shutdown): the groups stay, cut off. */
void clu_stop_network(struct clu *c);

uint64_t clu_node_id(const struct clu *c);
size_t clu_nodes(const struct clu *c, const struct clu_node **nodes);
const struct clu_node *clu_node(const struct clu *c, uint64_t id);

/*
 * Replaces the roster (nodes by increasing id): peers that left are disconnected, new ones dialed. A
 * roster without this node keeps this node's entry. Returns 0 or -EINVAL.
 */
int clu_set_nodes(struct clu *c, const struct clu_node *nodes, size_t n);

/* Whether this node has the node-to-node listener (a roster of several nodes, or one with a secret). */
bool clu_networked(const struct clu *c);

/* Whether the node-to-node link to `node` is up (always true for this node). */
bool clu_connected(const struct clu *c, uint64_t node);
/* Milliseconds since node was last heard on its link (0 for this node, UINT64_MAX: no link; rnet_silent_ms). */
uint64_t clu_silent_ms(const struct clu *c, uint64_t node);

/* Registers the handler of a non-Raft message kind. */
void clu_on(struct clu *c, uint8_t kind, void (*fn)(void *ud, uint64_t from, const void *buf, size_t len), void *ud);

/* Sends a message of a non-Raft kind. Returns 0 or a negative errno (-ENOTCONN, -EAGAIN, ...). */
int clu_send(struct clu *c, uint64_t to, uint8_t kind, const uv_buf_t *bufs, size_t n);

/*
 * The group id of a partition: stream, topic, the topic's creation time, partition id and the partition's
 * creation time, so that a partition deleted and added again (or a topic deleted and created again with
 * the same ids) is a new group that no message of the old one can reach.
 */
uint64_t clu_partition_gid(uint32_t stream_id, uint32_t topic_id, uint64_t topic_created_us, uint32_t partition_id,
			   uint64_t partition_created_us);

/*
 * Opens a group on its plog. ids: its replicas in placement order (the first is the preferred leader;
 * the next ones campaign a little later). bootstrap: an empty log starts with them as voters; without it
 * an empty replica waits for a leader to add it. recovering: this replica lost records it may have
 * acknowledged (rgroup_config.recovering: no vote until caught up). applied_index: entries the owner
 * already applied. command_type: RECORD_COMMAND or RECORD_MESSAGES. apply_envelopes: apply without payloads
 * (raft/rgroup.h).
 */
int clu_group_open(struct clu *c, uint64_t gid, struct plog *log, const uint64_t *ids, size_t n, bool bootstrap,
		   bool recovering, uint8_t command_type, uint64_t applied_index, bool apply_envelopes, const struct clu_group_ops *ops,
		   void *ud, struct clu_group **out);
/* Closes a group (the plog stays the caller's, to close after this); destroy also forgets its term/vote. */
void clu_group_close(struct clu_group *g, bool destroy);
/* Deletes the snapshot of a group that is not open (its log was set aside: the snapshot must go with it). */
void clu_forget_snapshot(struct clu *c, uint64_t gid);

/* rgroup_submit, with the term of the entry. */
int clu_group_submit(struct clu_group *g, const void *payload, uint32_t len, uint64_t *index, uint64_t *term);
/* rgroup_barrier of the group (raft/rgroup.h). */
int clu_group_barrier(struct clu_group *g);
/* rgroup_snapshot: the owner's state through `index`; entries below keep_from may go once it returns 0. */
int clu_group_snapshot(struct clu_group *g, uint64_t index, uint64_t keep_from, const void *data, size_t len);
/* Sends a clock probe to every connected peer (once a second, from the owner's tick). */
void clu_clock_probe(struct clu *c);
/* The offset of `peer`'s wall clock from this node's, and its error bound (false: unknown). */
bool clu_clock_offset(const struct clu *c, uint64_t peer, int64_t *offset_us, uint64_t *error_us);
/* Whether this node's clock is off from most of the cluster by more than cluster.max_clock_offset_ms. */
bool clu_clock_skewed(const struct clu *c);
/* Whether `peer`'s clock is off from this node's by more than cluster.max_clock_offset_ms. */
bool clu_clock_disagrees(const struct clu *c, uint64_t peer);
/* rgroup_set_campaign of the group. */
void clu_group_set_campaign(struct clu_group *g, bool allowed);
/* This node's draining flag, told to every connected peer now and by clu_state_tick (STATE). */
void clu_set_draining(struct clu *c, bool draining);
/* Sends STATE to every connected peer (once a second, from the owner's tick). */
void clu_state_tick(struct clu *c);
/* Whether `peer` said it is draining within the last 3 s. */
bool clu_peer_draining(const struct clu *c, uint64_t peer);

/* rgroup_transfer: hands leadership to `to` once it has caught up. */
int clu_group_transfer(struct clu_group *g, uint64_t to);
/* Membership changes and the configuration, as raft/rgroup.h has them. */
int clu_group_add(struct clu_group *g, uint64_t id);
int clu_group_promote(struct clu_group *g, uint64_t id);
int clu_group_remove(struct clu_group *g, uint64_t id);
size_t clu_group_members(const struct clu_group *g, struct rgroup_member *out, size_t cap);
bool clu_group_leader(const struct clu_group *g);
/* 0, or the error that stopped the group (it then takes no message and no tick: see rgroup_failed). */
int clu_group_failed(const struct clu_group *g);
uint64_t clu_group_leader_id(const struct clu_group *g);
void clu_group_status(const struct clu_group *g, struct rgroup_status *st);
uint64_t clu_group_id(const struct clu_group *g);

/* Visits every group (metrics). */
void clu_each_group(struct clu *c, void (*fn)(void *arg, struct clu_group *g), void *arg);

#endif /* GALGO_CLUSTER_H */
