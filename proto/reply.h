/*
 * reply — Iggy's reply structures (reference §2.4): one plain struct per structure, an encoder that the
 * server writes it with and a decoder that the HTTP JSON mapping and the C client read it with.
 *
 * All integers are little-endian; a name is [len u8][bytes] (1..255 bytes of UTF-8); an options block is
 * [len u32][options] (wire.h). Fields in order:
 *
 *   StreamHeader   id u32, created_at u64 (µs), topics_count u32, size u64 (bytes), messages_count u64,
 *                  name, options block (empty: a stream has no options).
 *                  GetStreams is StreamHeaders end to end; GetStream and CreateStream one StreamHeader,
 *                  GetStream followed by the stream's TopicHeaders.
 *   TopicHeader    id u32, created_at u64, partitions_count u32, message_expiry u64 (µs; u64 max =
 *                  never), compression_algorithm u8 (1 none, 2 gzip), max_topic_size u64 (bytes; u64 max
 *                  = unlimited), size u64, messages_count u64, name, explicit options block (the settings
 *                  that differ from the defaults), derived options block.
 *                  GetTopics is TopicHeaders end to end; GetTopic and CreateTopic one TopicHeader, GetTopic
 *                  followed by partitions_count Partitions.
 *   Partition      id u32, created_at u64, segments_count u32, current_offset u64 (the last offset, 0 when
 *                  empty), size u64, messages_count u64: 40 bytes.
 *   PolledMessages prefix: partition_id u32, current_offset u64, count u32 (16 bytes), then the batches
 *                  (batch.h) end to end.
 *   UserInfo       id u32, created_at u64, status u8 (1 active, 2 inactive), username (a name), options
 *                  block (empty). GetUsers is these end to end; UserInfoDetails (GetUser, CreateUser)
 *                  follows one with the permissions (wire.h).
 *   ConsumerGroup  id u32, partitions_count u32 (the topic's), members_count u32, name. GetConsumerGroups
 *                  is these end to end; ConsumerGroupDetails follows one with members_count members.
 *   ConsumerGroupMember  client_id u32, partitions_count u32, then that many partition ids u32.
 *   ClientInfo     client_id u32, user_id u32 (u32 max: not logged in), transport u8 (1 TCP, 2 QUIC,
 *                  3 HTTP, 4 WebSocket), address [len u32][bytes], consumer_groups_count u32. GetClients is
 *                  these end to end; ClientInfoDetails (GetClient, GetMe) follows one with that many
 *                  ClientGroups: stream_id u32, topic_id u32, group_id u32 (12 bytes each).
 *   ClusterMetadata  name [len u32][bytes], nodes_count u32, then that many ClusterNodes.
 *   ClusterNode    name [len u32][bytes], ip [len u32][bytes], tcp u16, quic u16, http u16, websocket u16
 *                  (ports; 0: not served), role u8 (0 leader, 1 follower), status u8 (0 healthy, 1
 *                  starting, 2 stopping, 3 unreachable, 4 maintenance). Also the primary named by a
 *                  poll or offset route (node/srv_poll.c).
 *   Stats          process_id u32, cpu_usage f32, total_cpu_usage f32, memory_usage u64, total_memory u64,
 *                  available_memory u64 (bytes), run_time u64, start_time u64 (µs), read_bytes u64,
 *                  written_bytes u64, messages_size_bytes u64, streams_count u32, topics_count u32,
 *                  partitions_count u32, segments_count u32, messages_count u64, clients_count u32,
 *                  consumer_groups_count u32, hostname, os_name, os_version, kernel_version,
 *                  iggy_server_version (each [len u32][bytes]), iggy_server_semver u32,
 *                  cache_metrics_count u32 and that many CacheMetrics (stream_id u32, topic_id u32,
 *                  partition_id u32, hits u64, misses u64, hit_ratio f32: 32 bytes each), threads_count
 *                  u32, free_disk_space u64, total_disk_space u64 (bytes). An f32 is IEEE 754 binary32.
 *   SendMessagesConfirmation  count u32, then that many SentBatches (Galgo answers one).
 *   SentBatch      stream_id u32, topic_id u32, partition_id u32, base_offset u64 (the offset of the
 *                  first message appended; u64 max: every message was a retry already stored): 20 bytes.
 *   RawPersonalAccessToken  the token, [len u8][bytes]: CreatePersonalAccessToken's answer, given once.
 *   DescribeOptions  count u32, then that many OptionInfos.
 *   OptionInfo     key (a name), kind u8 (the value kinds of wire.h), default value [len u32][bytes] (the
 *                  kind's encoding), description [len u32][bytes].
 *   LoginReply     the answer of Register (a login by password or token): user_id u32, session u64 (the
 *                  session every later request carries), protocol_version u32 (packed as frame.h's
 *                  FRAME_VERSION_PACK), server version (a name).
 *   ConsumerOffsetInfo  partition_id u32, current_offset u64 (the partition's last offset), stored_offset
 *                  u64: 20 bytes. GetConsumerOffset answers it, or an empty body when nothing is stored.
 *   PersonalAccessTokenInfo  name, expiry_at u64 (µs since the epoch; 0 = never).
 *                  GetPersonalAccessTokens is these end to end.
 *
 * Galgo's extensions (docs/protocol-extensions.md has the requests and the meaning of each field):
 *
 *   GetPartitionLeaders (10001)  node_count u32, then that many LeadersNodes; metadata leader u32 (0:
 *                  none known), metadata term u64; partition_count u32, then that many LeadersPartitions;
 *                  with request flag 1, then one NodeStatus per node, in the order of the node list.
 *   LeadersNode    id u32, host [len u8][bytes], tcp u16, quic u16, http u16 (ports; 0: not served).
 *   LeadersPartition  stream_id u32, topic_id u32, partition_id u32, leader u32 (0: unknown), epoch
 *                  u64 (the Raft term the leader was elected in), replica_count u8, then that many node
 *                  ids u32.
 *   NodeStatus     connected u8 (0 or 1), role u8 (0 not a member of the metadata group, 1 its leader,
 *                  2 follower, 3 standby, 4 spare).
 *   NotLeader      the body of status 10058: leader u32 (0: none known), epoch u64, host [len u8][bytes],
 *                  tcp u16.
 *
 * A decoder reads one structure from a wire_rd and returns wire_rd_error: on an error the struct is
 * partly filled and must not be used. Names and options point into the decoded bytes.
 */
#ifndef GALGO_PROTO_REPLY_H
#define GALGO_PROTO_REPLY_H

#include <stdint.h>

#include "proto/wire.h"

struct reply_stream {
	uint32_t id;
	uint64_t created_at;
	uint32_t topics_count;
	uint64_t size_bytes;
	uint64_t messages_count;
	struct wire_str name;
	struct wire_opts options;
};

void reply_put_stream(struct wire_buf *b, const struct reply_stream *s);
int reply_get_stream(struct wire_rd *r, struct reply_stream *s);

struct reply_topic {
	uint32_t id;
	uint64_t created_at;
	uint32_t partitions_count;
	uint64_t message_expiry;
	uint8_t compression;
	uint64_t max_topic_size;
	uint64_t size_bytes;
	uint64_t messages_count;
	struct wire_str name;
	struct wire_opts options; /* explicit */
	struct wire_opts derived;
};

void reply_put_topic(struct wire_buf *b, const struct reply_topic *t);
int reply_get_topic(struct wire_rd *r, struct reply_topic *t);

#define REPLY_PARTITION_SIZE 40

struct reply_partition {
	uint32_t id;
	uint64_t created_at;
	uint32_t segments_count;
	uint64_t current_offset;
	uint64_t size_bytes;
	uint64_t messages_count;
};

void reply_put_partition(struct wire_buf *b, const struct reply_partition *p);
int reply_get_partition(struct wire_rd *r, struct reply_partition *p);

#define REPLY_POLLED_PREFIX_SIZE 16

struct reply_polled {
	uint32_t partition_id;
	uint64_t current_offset;
	uint32_t count;
};

void reply_encode_polled(uint8_t out[REPLY_POLLED_PREFIX_SIZE], const struct reply_polled *p);
int reply_get_polled(struct wire_rd *r, struct reply_polled *p);

#define REPLY_OFFSET_SIZE 20

struct reply_offset {
	uint32_t partition_id;
	uint64_t current_offset;
	uint64_t stored_offset;
};

void reply_encode_offset(uint8_t out[REPLY_OFFSET_SIZE], const struct reply_offset *o);
int reply_get_offset(struct wire_rd *r, struct reply_offset *o);

struct reply_pat {
	struct wire_str name;
	uint64_t expiry_at;
};

void reply_put_pat(struct wire_buf *b, const struct reply_pat *t);
int reply_get_pat(struct wire_rd *r, struct reply_pat *t);

struct reply_user {
	uint32_t id;
	uint64_t created_at;
	uint8_t status;
	struct wire_str username;
	struct wire_opts options;
};

void reply_put_user(struct wire_buf *b, const struct reply_user *u);
int reply_get_user(struct wire_rd *r, struct reply_user *u);

struct reply_group {
	uint32_t id;
	uint32_t partitions_count;
	uint32_t members_count;
	struct wire_str name;
};

void reply_put_group(struct wire_buf *b, const struct reply_group *g);
int reply_get_group(struct wire_rd *r, struct reply_group *g);

/* A member: to encode, `ids` holds partitions_count ids; decoded, `raw` points at them as they travel. */
struct reply_group_member {
	uint32_t client_id;
	uint32_t partitions_count;
	const uint32_t *ids;
	const uint8_t *raw;
};

void reply_put_group_member(struct wire_buf *b, const struct reply_group_member *m);
int reply_get_group_member(struct wire_rd *r, struct reply_group_member *m);

/* The k-th partition id of a decoded member (k < partitions_count). */
uint32_t reply_group_member_partition(const struct reply_group_member *m, uint32_t k);

struct reply_client {
	uint32_t client_id;
	uint32_t user_id;
	uint8_t transport;
	struct wire_str address;
	uint32_t groups_count;
};

void reply_put_client(struct wire_buf *b, const struct reply_client *c);
int reply_get_client(struct wire_rd *r, struct reply_client *c);

#define REPLY_CLIENT_GROUP_SIZE 12

struct reply_client_group {
	uint32_t stream_id;
	uint32_t topic_id;
	uint32_t group_id;
};

void reply_put_client_group(struct wire_buf *b, const struct reply_client_group *g);
int reply_get_client_group(struct wire_rd *r, struct reply_client_group *g);

struct reply_cluster {
	struct wire_str name;
	uint32_t nodes_count;
};

void reply_put_cluster(struct wire_buf *b, const struct reply_cluster *c);
int reply_get_cluster(struct wire_rd *r, struct reply_cluster *c);

struct reply_node {
	struct wire_str name;
	struct wire_str ip;
	uint16_t tcp, quic, http, websocket;
	uint8_t role;
	uint8_t status;
};

void reply_put_node(struct wire_buf *b, const struct reply_node *n);
int reply_get_node(struct wire_rd *r, struct reply_node *n);

#define REPLY_CACHE_METRIC_SIZE 32

struct reply_cache_metric {
	uint32_t stream_id, topic_id, partition_id;
	uint64_t hits, misses;
	float hit_ratio;
};

struct reply_stats {
	uint32_t process_id;
	float cpu_usage, total_cpu_usage;
	uint64_t memory_usage, total_memory, available_memory;
	uint64_t run_time, start_time;
	uint64_t read_bytes, written_bytes, messages_size_bytes;
	uint32_t streams_count, topics_count, partitions_count, segments_count;
	uint64_t messages_count;
	uint32_t clients_count, consumer_groups_count;
	struct wire_str hostname, os_name, os_version, kernel_version, iggy_server_version;
	uint32_t iggy_server_semver;
	uint32_t cache_metrics_count;
	const uint8_t *cache_metrics; /* cache_metrics_count entries as they travel (reply_stats_cache_metric) */
	uint32_t threads_count;
	uint64_t free_disk_space, total_disk_space;
};

void reply_put_stats(struct wire_buf *b, const struct reply_stats *s);
int reply_get_stats(struct wire_rd *r, struct reply_stats *s);

/* The i-th cache metric of a decoded Stats (i < cache_metrics_count). */
void reply_stats_cache_metric(const struct reply_stats *s, uint32_t i, struct reply_cache_metric *m);

struct reply_leaders_node {
	uint32_t id;
	struct wire_str host;
	uint16_t tcp, quic, http;
};

void reply_put_leaders_node(struct wire_buf *b, const struct reply_leaders_node *n);
int reply_get_leaders_node(struct wire_rd *r, struct reply_leaders_node *n);

/* To encode, `ids` holds replica_count ids; decoded, `raw` points at them as they travel. */
struct reply_leaders_part {
	uint32_t stream_id, topic_id, partition_id;
	uint32_t leader;
	uint64_t epoch;
	uint8_t replica_count;
	const uint32_t *ids;
	const uint8_t *raw;
};

void reply_put_leaders_part(struct wire_buf *b, const struct reply_leaders_part *p);
int reply_get_leaders_part(struct wire_rd *r, struct reply_leaders_part *p);

/* The k-th replica of a decoded partition (k < replica_count). */
uint32_t reply_leaders_part_replica(const struct reply_leaders_part *p, uint8_t k);

struct reply_node_status {
	uint8_t connected;
	uint8_t role;
};

void reply_put_node_status(struct wire_buf *b, const struct reply_node_status *s);
int reply_get_node_status(struct wire_rd *r, struct reply_node_status *s);

struct reply_not_leader {
	uint32_t leader;
	uint64_t epoch;
	struct wire_str host;
	uint16_t tcp;
};

void reply_put_not_leader(struct wire_buf *b, const struct reply_not_leader *n);
int reply_get_not_leader(struct wire_rd *r, struct reply_not_leader *n);

#define REPLY_SENT_SIZE 20

struct reply_sent {
	uint32_t stream_id, topic_id, partition_id;
	uint64_t base_offset;
};

void reply_put_sent(struct wire_buf *b, const struct reply_sent *s);
int reply_get_sent(struct wire_rd *r, struct reply_sent *s);

struct reply_pat_token {
	struct wire_str token;
};

void reply_put_pat_token(struct wire_buf *b, const struct reply_pat_token *t);
int reply_get_pat_token(struct wire_rd *r, struct reply_pat_token *t);

struct reply_option_info {
	struct wire_str key;
	uint8_t kind;
	struct wire_str default_value;
	struct wire_str description;
};

void reply_put_option_info(struct wire_buf *b, const struct reply_option_info *o);
int reply_get_option_info(struct wire_rd *r, struct reply_option_info *o);

struct reply_login {
	uint32_t user_id;
	uint64_t session;
	uint32_t protocol_version;
	struct wire_str server_version;
};

void reply_put_login(struct wire_buf *b, const struct reply_login *l);
int reply_get_login(struct wire_rd *r, struct reply_login *l);

#endif /* GALGO_PROTO_REPLY_H */
