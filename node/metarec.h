/*
 * metarec — the byte formats of the metadata state machine (node/meta.h): one command (the payload of a
 * RECORD_COMMAND record in the metadata log) and a snapshot of the whole state.
 *
 * All integers are little-endian. Primitive field types:
 *
 *   u8, u16, u32, u64  unsigned integers of that width
 *   bool               u8, 0 or 1 (anything else is refused)
 *   str8               [len u8][len bytes]: a name, any bytes, possibly empty
 *   cstr16             [len u16][len bytes, none of them zero][one zero byte]: a password hash (PHC
 *                      string). The trailing zero lets a decoded command point into its input and still
 *                      hand meta_apply a NUL-terminated string.
 *   perms              the permissions of a user:
 *                        [global u16] bits 0..9: manage_servers, read_servers, manage_users, read_users,
 *                                     manage_streams, read_streams, manage_topics, read_topics,
 *                                     poll_messages, send_messages; bits 10..15 must be zero
 *                        [n_streams u32] then n_streams stream entries, in the order of the array:
 *                          [stream_id u32]
 *                          [flags u8] bits 0..5: manage_stream, read_stream, manage_topics, read_topics,
 *                                     poll_messages, send_messages; bits 6..7 must be zero
 *                          [n_topics u32] then n_topics topic entries, in the order of the array:
 *                            [topic_id u32]
 *                            [flags u8] bits 0..3: manage_topic, read_topic, poll_messages,
 *                                       send_messages; bits 4..7 must be zero
 *
 * 1. Command record (version 1; version 2 for NODE_ADVERTISE only)
 *
 *    [version u8 = 1, or 2 for NODE_ADVERTISE][type u8 = enum meta_cmd_type][the fields of that type,
 *    in this order]:
 *
 *      1  CREATE_STREAM       [ts u64][name str8]
 *      2  UPDATE_STREAM       [stream_id u32][name str8]
 *      3  DELETE_STREAM       [stream_id u32]
 *      4  PURGE_STREAM        [stream_id u32]
 *      5  CREATE_TOPIC        [ts u64][stream_id u32][name str8][count u32][topic fields]
 *      6  UPDATE_TOPIC        [stream_id u32][topic_id u32][name str8][topic fields]
 *                             where topic fields = [message_expiry u64][max_topic_size u64]
 *                             [dedup_window u64][compression u8][durability u8][replication_factor u8]
 *      7  DELETE_TOPIC        [stream_id u32][topic_id u32]
 *      8  PURGE_TOPIC         [stream_id u32][topic_id u32]
 *      9  CREATE_PARTITIONS   [ts u64][stream_id u32][topic_id u32][count u32]
 *     10  DELETE_PARTITIONS   [ts u64][stream_id u32][topic_id u32][count u32]
 *     11  CREATE_USER         [ts u64][username str8][password_hash cstr16][status u8][has_perms bool]
 *                             [perms, only if has_perms]
 *     12  UPDATE_USER         [user_id u32][has_name bool][username str8, only if has_name][status u8]
 *                             (has_name 0 is a command whose name is NULL: the username is unchanged)
 *     13  DELETE_USER         [user_id u32]
 *     14  CHANGE_PASSWORD     [user_id u32][password_hash cstr16]
 *     15  UPDATE_PERMISSIONS  [user_id u32][has_perms bool][perms, only if has_perms]
 *     16  CREATE_PAT          [user_id u32][name str8][token_hash 32 bytes][expiry_at u64]
 *     17  DELETE_PAT          [user_id u32][name str8]
 *     18  CREATE_GROUP        [stream_id u32][topic_id u32][name str8]
 *     19  DELETE_GROUP        [stream_id u32][topic_id u32][group_id u32]
 *     20  JOIN_GROUP          [stream_id u32][topic_id u32][group_id u32][client_id u32]
 *     21  LEAVE_GROUP         [stream_id u32][topic_id u32][group_id u32][client_id u32]
 *     22  REMOVE_MEMBER       [client_id u32]
 *     23  CLEAR_MEMBERS       (no fields)
 *     24  STORE_OFFSET        [stream_id u32][topic_id u32][consumer_kind u8][consumer_id u32]
 *                             [partition_id u32][offset u64]
 *     25  DELETE_OFFSET       [stream_id u32][topic_id u32][consumer_kind u8][consumer_id u32]
 *                             [partition_id u32]
 *     26  CLEAR_NODE_MEMBERS  [client_id u32] (members whose client id has these top 5 bits go)
 *     27  NODES_INIT          [default_replication_factor u8][n u8, 1..16] then n × node
 *     28  NODE_ADD            [node]
 *     29  NODE_REMOVE         [node_id u32]
 *     30  NODE_ADVERTISE      [node_id u32][client addresses][ws_port u16, in version 2 records only]
 *                             where node = [id u32][host str8, no zero byte][raft_port u16][tcp_port u16]
 *                             [quic_port u16][http_port u16] (a port 0: not served)
 *                             and client addresses = [host str8, no zero byte, may be empty][tcp_port u16]
 *                             [quic_port u16][http_port u16] (where clients reach the node; an empty host
 *                             or a port 0: the node's own); ws_port is where clients reach its
 *                             WebSocket listener (0: none). NODE_ADVERTISE is written as version 2;
 *                             every other type as version 1 (so that a node of the version before
 *                             reads every other record); a version 1 NODE_ADVERTISE has ws_port 0.
 *
 *    The record ends with the last field: trailing bytes are refused. A field a type does not list is
 *    zero (NULL for pointers) in the decoded command. A decoder of a later version keeps reading
 *    version 1 records.
 *
 * 2. Snapshot (version 4)
 *
 *    [version u8 = 4][applied u64]
 *    [default_replication_factor u8][n_nodes u8, at most 16] then the nodes by increasing id, each a
 *      node as in NODES_INIT (id 1..31, non-empty host) followed by its client addresses and ws_port
 *      as in NODE_ADVERTISE. (Versions 2, without client addresses, and 3, without ws_port, are still
 *      decoded; they are never written.)
 *    [n_streams u32] then the streams present, by increasing id:
 *      [id u32][name str8][created_at u64]
 *      [n_topics u32] then the topics present, by increasing id:
 *        [id u32][name str8][created_at u64][message_expiry u64][max_topic_size u64][dedup_window u64]
 *        [compression u8][durability u8][replication_factor u8]
 *        [n_partitions u32] then n_partitions × (partition 0 first):
 *          [created_at u64][moved bool][n_replicas u8, at most 8] then n_replicas × [node_id u32]
 *          (the replicas in placement order: the first is the preferred leader)
 *        [next_group_id u32]
 *        [n_groups u32] then the groups present, by increasing id (every id below next_group_id):
 *          [id u32][name str8][generation u64]
 *          [n_members u32] then the members in join order:
 *            [client_id u32][n_partitions u32] then n_partitions × [partition_id u32]
 *        [n_offsets u32] then the stored offsets in the state's order:
 *          [kind u8][consumer_id u32][partition_id u32][offset u64]
 *    [n_users u32] then the users present, by increasing id:
 *      [id u32][username str8][password_hash cstr16][status u8][created_at u64]
 *      [has_perms bool][perms, only if has_perms]
 *      [n_pats u32] then n_pats × [name str8][hash 32 bytes][expiry_at u64]
 *
 *    Stream, topic and user ids are below METAREC_MAX_ID (the state keeps them in arrays indexed by id);
 *    names in a snapshot hold no zero byte (the state keeps them NUL-terminated). Free slots are not
 *    encoded: they change no behaviour (a new object takes the lowest free id either way), so a
 *    snapshot is a canonical form of the state — two states that behave the same encode to the same
 *    bytes, and decoding then encoding gives the input back.
 *
 * Decoders refuse any input that breaks these rules with -EBADMSG (or fail with -ENOMEM) and never read
 * outside it. A count is refused when the bytes left cannot hold that many entries, so the entries
 * allocated stay within a small multiple of the input's size; the one exception is the id-indexed
 * arrays of streams, topics and users, which hold up to METAREC_MAX_ID pointers however few ids the
 * input names.
 */
#ifndef GALGO_METAREC_H
#define GALGO_METAREC_H

#include <stddef.h>
#include <stdint.h>

#include "node/meta.h"
#include "proto/wire.h"

#define METAREC_VERSION 1
#define METAREC_VERSION_WS 2 /* NODE_ADVERTISE records carry the WebSocket port */
#define METAREC_SNAPSHOT_VERSION 4
#define METAREC_MAX_ID (1u << 24)

/*
 * Appends the record of a command to b. Returns 0, or -EINVAL for a command that cannot be encoded (an
 * unknown type, a missing password hash, token hash or permissions that the type needs, a hash longer
 * than 65535 bytes or holding a zero byte), or the buffer's error.
 */
int metarec_encode(const struct meta_cmd *c, struct wire_buf *b);

/*
 * Decodes a record. Names, the token hash and the password hash point into `p` (valid as long as the
 * input is); permissions are decoded into *scratch, which is overwritten (not freed) first and must be
 * released with meta_perms_free after use, whether or not the command has permissions. On an error
 * nothing is left allocated. Returns 0, -EBADMSG or -ENOMEM.
 */
int metarec_decode(const uint8_t *p, size_t len, struct meta_cmd *out, struct meta_perms *scratch);

/* Appends the snapshot of a state to b. Returns 0 or the buffer's error. */
int metarec_snapshot_encode(const struct meta *m, struct wire_buf *b);

/* Decodes a snapshot into a new state (*out, freed with meta_free). Returns 0, -EBADMSG or -ENOMEM. */
int metarec_snapshot_decode(const uint8_t *p, size_t len, struct meta **out);

#endif /* GALGO_METAREC_H */
