/*
 * meta — the metadata state machine: streams, topics, partitions, users, permissions, personal access
 * tokens, consumer groups and their members, consumer offsets.
 *
 * Every change is a command (struct meta_cmd) applied by one deterministic function, meta_apply: no clock
 * reads, no randomness, no I/O inside it. Whatever a command needs that is not a function of the state
 * (the time it was made, a password hash with its random salt, a token hash) travels in the command. The
 * same sequence of commands from the same state always gives the same state and the same results, so the
 * commands (their encoding, node/metarec.h) are the entries of the metadata Raft group, replicated
 * exactly as they are and applied on every node once committed (node/srv_meta.c, node/cluster.h).
 *
 * A command either fails with an Iggy error code and changes nothing, or succeeds entirely. Ids: streams,
 * topics and users take the lowest free id from 0; partitions are 0..n-1 per topic; consumer-group ids are
 * monotonic per topic from 0 and never reused.
 *
 * The byte formats of an encoded command and of a snapshot are specified in node/metarec.h.
 */
#ifndef GALGO_META_H
#define GALGO_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/errors.h"

#define META_NAME_MAX 255
#define META_MAX_PARTITIONS 1000   /* per create request */
#define META_MAX_TOPIC_PARTITIONS 100000
#define META_MAX_PATS_PER_USER 100
#define META_NEVER UINT64_MAX
#define META_MAX_NODES 16          /* nodes in a cluster (node ids are 1..META_MAX_NODE_ID) */
#define META_MAX_NODE_ID 31        /* a node id fits the top 5 bits of a client id */
#define META_MAX_REPLICAS 8        /* replicas of one partition */
#define META_HOST_MAX 255

/* meta_apply answers META_OK or the Iggy status code it commits (proto/errors.h; reference §9). */
#define META_OK 0

/* Permissions (reference §2.3), the same shape as on the wire. */
struct meta_perm_topic {
	uint32_t topic_id;
	bool manage_topic, read_topic, poll_messages, send_messages;
};

struct meta_perm_stream {
	uint32_t stream_id;
	bool manage_stream, read_stream, manage_topics, read_topics, poll_messages, send_messages;
	struct meta_perm_topic *topics;
	uint32_t n_topics;
};

struct meta_perms {
	bool manage_servers, read_servers, manage_users, read_users, manage_streams, read_streams,
		manage_topics, read_topics, poll_messages, send_messages;
	struct meta_perm_stream *streams;
	uint32_t n_streams;
};

enum meta_compression { META_COMPRESSION_NONE = 1, META_COMPRESSION_GZIP = 2 };
enum meta_durability { META_DURABILITY_FSYNC = 0, META_DURABILITY_INTERVAL = 1, META_DURABILITY_NONE = 2 };
enum meta_user_status { META_USER_ACTIVE = 1, META_USER_INACTIVE = 2 };
enum meta_consumer_kind { META_CONSUMER = 1, META_CONSUMER_GROUP = 2 };

/*
 * A partition's replicas: the nodes that host its Raft group, the first being its preferred leader.
 * Chosen when the partition is created, from the node table at that point of the log (so every node
 * computes the same), and changed only when a node is removed (its replicas move to other nodes).
 * moved: the set is no longer the one the group was bootstrapped with, so a replica that opens the group
 * with an empty log must not bootstrap it (it waits for the leader to add it).
 */
struct meta_partition {
	uint64_t created_at;
	uint8_t n_replicas;
	bool moved;
	uint32_t replicas[META_MAX_REPLICAS];
};

/* A node of the cluster, as the roster names it (node/cluster.h); ports 0 = not served. */
struct meta_node {
	uint32_t id;
	char host[META_HOST_MAX + 1];
	uint16_t raft_port, tcp_port, quic_port, http_port;
	/*
	 * Where clients reach it (GetClusterMetadata, leader hints), as the node itself announces
	 * (NODE_ADVERTISE, from its node.advertised_host and <transport>.advertised_port settings): an empty
	 * host or a port 0 means the roster's host or port.
	 */
	char adv_host[META_HOST_MAX + 1];
	uint16_t adv_tcp_port, adv_quic_port, adv_http_port, adv_ws_port;
};

struct meta_member {
	uint32_t client_id;             /* the session's client id (GetMe's client_id) */
	uint32_t *partitions;           /* assigned partition ids, ascending */
	uint32_t n_partitions;
};

struct meta_group {
	uint32_t id;
	char name[META_NAME_MAX + 1];
	uint64_t generation;            /* bumped by every membership change */
	struct meta_member *members;    /* in join order */
	uint32_t n_members;
};

/* A stored consumer offset. consumer_id is the group id for groups, the numeric consumer id otherwise. */
struct meta_offset {
	uint8_t kind;
	uint32_t consumer_id;
	uint32_t partition_id;
	uint64_t offset;
};

struct meta_topic {
	uint32_t id;
	uint32_t stream_id;
	char name[META_NAME_MAX + 1];
	uint64_t created_at;
	uint64_t message_expiry;        /* µs; META_NEVER = never */
	uint64_t max_topic_size;        /* bytes; META_NEVER = unlimited */
	uint8_t compression;            /* enum meta_compression */
	uint8_t durability;             /* enum meta_durability */
	uint8_t replication_factor;     /* replicas of each partition; 0 = the cluster's default */
	uint64_t dedup_window;          /* message-id dedup window (ids remembered); 0 = off */
	struct meta_partition *partitions;
	uint32_t n_partitions;
	struct meta_group **groups;     /* sparse by position; NULL = deleted */
	uint32_t n_groups;              /* slots used */
	uint32_t next_group_id;
	struct meta_offset *offsets;
	uint32_t n_offsets, cap_offsets;
};

struct meta_stream {
	uint32_t id;
	char name[META_NAME_MAX + 1];
	uint64_t created_at;
	struct meta_topic **topics;     /* indexed by id; NULL = free */
	uint32_t n_topics;              /* slots */
};

struct meta_pat {
	char name[META_NAME_MAX + 1];
	uint8_t hash[32];               /* SHA-256 of the token */
	uint64_t expiry_at;             /* µs since epoch; 0 = never */
};

struct meta_user {
	uint32_t id;
	char username[META_NAME_MAX + 1];
	char *password_hash;            /* PHC string (argon2id) */
	uint8_t status;                 /* enum meta_user_status */
	uint64_t created_at;
	bool has_perms;
	struct meta_perms perms;
	struct meta_pat *pats;
	uint32_t n_pats;
};

struct meta {
	struct meta_stream **streams;   /* indexed by id; NULL = free */
	uint32_t n_streams;
	struct meta_user **users;       /* indexed by id; NULL = free */
	uint32_t n_users;
	uint64_t applied;               /* commands applied (for snapshots) */
	/* The cluster's nodes by increasing id (empty until META_NODES_INIT applies). */
	struct meta_node nodes[META_MAX_NODES];
	uint32_t n_nodes;
	uint8_t default_rf;             /* replication factor of topics that set none */
};

enum meta_cmd_type {
	META_CREATE_STREAM = 1,
	META_UPDATE_STREAM = 2,
	META_DELETE_STREAM = 3,
	META_PURGE_STREAM = 4,
	META_CREATE_TOPIC = 5,
	META_UPDATE_TOPIC = 6,
	META_DELETE_TOPIC = 7,
	META_PURGE_TOPIC = 8,
	META_CREATE_PARTITIONS = 9,
	META_DELETE_PARTITIONS = 10,
	META_CREATE_USER = 11,
	META_UPDATE_USER = 12,
	META_DELETE_USER = 13,
	META_CHANGE_PASSWORD = 14,
	META_UPDATE_PERMISSIONS = 15,
	META_CREATE_PAT = 16,
	META_DELETE_PAT = 17,
	META_CREATE_GROUP = 18,
	META_DELETE_GROUP = 19,
	META_JOIN_GROUP = 20,
	META_LEAVE_GROUP = 21,
	META_REMOVE_MEMBER = 22,        /* a client went away: leave every group */
	META_CLEAR_MEMBERS = 23,        /* a node restarted: no client is connected */
	META_STORE_OFFSET = 24,
	META_DELETE_OFFSET = 25,
	/*
	 * A node of a cluster restarted: no client of it is connected any more. Removes, from every group,
	 * the members whose client id has the top 5 bits of client_id (the node's id, see
	 * srv_session_open), and deals their partitions to the others.
	 */
	META_CLEAR_NODE_MEMBERS = 26,
	/*
	 * Cluster membership. NODES_INIT sets the node table and the default replication factor once (the
	 * metadata leader submits it before anything else; later ones change nothing). NODE_ADD adds a node
	 * (new partitions may be placed on it). NODE_REMOVE removes one and moves each of its replicas to the
	 * node, not yet a replica of that partition, that holds the fewest replicas (ties: the lowest id).
	 */
	META_NODES_INIT = 27,
	META_NODE_ADD = 28,
	META_NODE_REMOVE = 29,
	META_NODE_ADVERTISE = 30,
};

/*
 * A command. Which fields matter depends on the type; strings point into memory the caller owns (or
 * into the decoded buffer) and are copied by apply.
 */
struct meta_cmd {
	uint8_t type;
	uint64_t ts;                    /* when it was made, µs since epoch (created_at) */
	uint32_t stream_id, topic_id, group_id, user_id;
	const char *name;               /* stream/topic/group/user/PAT name */
	uint8_t name_len;
	uint32_t count;                 /* partitions to create/delete */
	/* topics */
	uint64_t message_expiry, max_topic_size, dedup_window;
	uint8_t compression, durability, replication_factor;
	/* users */
	const char *password_hash;      /* NUL-terminated PHC string */
	uint8_t status;                 /* 0 = unchanged (update) */
	bool has_perms;
	const struct meta_perms *perms;
	/* PATs */
	const uint8_t *token_hash;      /* 32 bytes */
	uint64_t expiry_at;
	/* groups and offsets */
	uint32_t client_id;
	uint8_t consumer_kind;
	uint32_t consumer_id, partition_id;
	uint64_t offset;
	/* cluster membership: nodes (INIT: all of them, ADD: one; replication_factor is INIT's default) */
	struct meta_node nodes[META_MAX_NODES];
	uint8_t n_nodes;
	uint32_t node_id;               /* NODE_REMOVE, NODE_ADVERTISE (its addresses in nodes[0].adv_*) */
};

/* What a successful apply produced. */
struct meta_result {
	uint32_t id;                    /* created stream/topic/user/group id */
};

struct meta *meta_new(void);
void meta_free(struct meta *m);

/* Applies a command. Returns META_OK or an Iggy error code; on error nothing changed. */
int meta_apply(struct meta *m, const struct meta_cmd *c, struct meta_result *res);

/* Lookups. Names are compared as bytes. NULL if absent. */
struct meta_stream *meta_stream(const struct meta *m, uint32_t id);
struct meta_stream *meta_stream_by_name(const struct meta *m, const char *name, size_t len);
struct meta_topic *meta_topic(const struct meta_stream *s, uint32_t id);
struct meta_topic *meta_topic_by_name(const struct meta_stream *s, const char *name, size_t len);
struct meta_group *meta_group(const struct meta_topic *t, uint32_t id);
struct meta_group *meta_group_by_name(const struct meta_topic *t, const char *name, size_t len);
struct meta_user *meta_user(const struct meta *m, uint32_t id);
struct meta_user *meta_user_by_name(const struct meta *m, const char *name, size_t len);
const struct meta_offset *meta_offset_get(const struct meta_topic *t, uint8_t kind, uint32_t consumer_id,
					  uint32_t partition_id);
struct meta_member *meta_group_member(const struct meta_group *g, uint32_t client_id);
const struct meta_node *meta_node(const struct meta *m, uint32_t id);
/* Whether node `id` hosts a replica of p. */
bool meta_partition_hosts(const struct meta_partition *p, uint32_t id);

/* Permission structures. */
void meta_perms_free(struct meta_perms *p);
int meta_perms_copy(struct meta_perms *dst, const struct meta_perms *src);

#endif /* GALGO_META_H */
