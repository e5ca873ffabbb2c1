/*
 * gclient — a small blocking C client of Apache Iggy's client protocol (VSR framing, protocol 0.11;
 * shared reference iggy-protocol.md §1-§3) over plain TCP, for galgod or any server that speaks it.
 *
 * One `struct gclient` is one TCP connection and at most one session. It is not thread-safe: use one
 * per thread. Requests are lock-step (write one, read its reply) except SendMessages, which can also be
 * pipelined: gclient_send_async writes a request without reading anything and gclient_wait reads the
 * oldest outstanding reply (the server answers in request order), so a producer can keep K batches in
 * flight. While sends are outstanding every other call returns -EBUSY.
 *
 * Frames are encoded and decoded with proto/frame.h and payloads with proto/wire.h; producer
 * batches are built with proto/batch.h (batch_build).
 *
 * Return values. Every function that returns int returns:
 *   0                  success;
 *   a negative errno   a local or transport failure: -EINVAL (bad argument), -ENOMEM, -ETIMEDOUT (no
 *                      reply within the I/O timeout), -ECONNRESET / -EPIPE (the peer closed), -EPROTO
 *                      (a reply that breaks the protocol: bad header, request or operation echo that
 *                      does not match, malformed body), -ENOENT (a read whose reply is empty: the
 *                      stream, topic, token or stored offset does not exist), -EBUSY (sends are still
 *                      outstanding), -ENOTCONN (the connection broke earlier; close the client);
 *   a positive number  an Iggy error code the server sent, on any of the three channels of reference
 *                      §1.5: the reply status, the result section of a result-framed reply, or an
 *                      eviction, mapped to a code as the Rust SDK does (reference §1.4: reason 9 → 42
 *                      InvalidCredentials, 10 → 53 InvalidPersonalAccessToken, 13 → 30 StaleClient,
 *                      14 → 14003 IncompatibleProtocolVersion, 15 → 4 InvalidFormat, 2..6 → 3
 *                      InvalidCommand, the others → 40 Unauthenticated). An eviction also ends the
 *                      session (the client is logged out); gclient_last_eviction tells its reason.
 * One positive code is produced locally: a write (any operation other than Register and NonReplicated)
 * before login returns 40 (Unauthenticated) without sending anything, because the server silently drops
 * such a frame with session 0 (reference §1.2) and the client would only time out.
 * After a transport failure or a protocol violation the connection is unusable (the stream of replies
 * may be out of step) and every later call returns -ENOTCONN. A positive code leaves it usable.
 *
 * Request numbering (reference §1.6): Register is request 0 with session 0; the counter is 1 on a new
 * connection and after each login; a metadata operation (Logout and operations 128..149) uses the
 * counter and then increments it; NonReplicated reads and partition operations (160..162) use the
 * current value without advancing it. Every request carries the client id of the current login (a
 * fresh random non-zero u128 for each login) and the session the login returned. Register, Logout and
 * metadata operations are stamped with request_checksum = XXH3-64(body), as the Rust SDK does.
 *
 * Identifiers of streams, topics and consumer groups are `struct wire_id` (proto/wire.h): numeric
 * (0-based) with wire_id_num(n), or a name with gclient_id_name(s).
 */
#ifndef GALGO_GCLIENT_H
#define GALGO_GCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/batch.h"
#include "proto/wire.h"

#define GCLIENT_SDK_NAME "galgo-c"
#define GCLIENT_SDK_VERSION "0.1.0"
#define GCLIENT_PROTOCOL_VERSION 0x2C00u /* 0.11.0 (reference §1.10) */

/* A partition argument of gclient_send: let the server choose (Balanced partitioning, kind 1). */
#define GCLIENT_BALANCED UINT32_MAX
/* A partition argument of gclient_poll and the offset calls: no partition (the flag byte is 0). */
#define GCLIENT_NO_PARTITION UINT32_MAX
/* The partition_id of a consumer-group poll for a partition the member no longer owns (§3.5). */
#define GCLIENT_RESYNC_PARTITION UINT32_MAX
/* The base offset reported when the server committed a batch without telling its offsets (count 0). */
#define GCLIENT_OFFSET_UNKNOWN UINT64_MAX

struct gclient;

struct gclient_opts {
	int connect_timeout_ms; /* 0: 5000 */
	int io_timeout_ms;      /* per reply and per blocked write; 0: 30000 (the SDK's); < 0: none */
	int sndbuf, rcvbuf;     /* socket buffer sizes in bytes; 0: the system's */
};

/* Returns a string identifier pointing at `name` (which must outlive the use of the identifier). */
struct wire_id gclient_id_name(const char *name);

/*
 * Connects to "host:port" ("[v6addr]:port" for IPv6; a host name is resolved), with TCP_NODELAY.
 * `opts` may be NULL. Nothing is sent. Returns 0 and *out, or a negative errno (-ETIMEDOUT when the
 * connection is not established within the timeout, -EINVAL for an address without a port).
 */
int gclient_connect(const char *address, const struct gclient_opts *opts, struct gclient **out);

/* Closes the connection (without a Logout) and frees the client. NULL is allowed. */
void gclient_close(struct gclient *c);

/* The socket, for poll(2) by callers that multiplex clients. */
int gclient_fd(const struct gclient *c);

/* ---- Session ---- */

/*
 * Logs in with a password: Register (operation 1) with ClientVersionInfo {0x2C00, "galgo-c",
 * GCLIENT_SDK_VERSION}, the username, the password and an empty context. A login on a client that is
 * already logged in first logs out (as the SDK does). A wrong password gives 42 (Eviction 9).
 */
int gclient_login(struct gclient *c, const char *username, const char *password);

/* Logs in with a personal access token (Register with the PAT body). An unknown token gives 53. */
int gclient_login_pat(struct gclient *c, const char *token);

/* Logs out (operation 3). The client keeps its connection and may log in again. */
int gclient_logout(struct gclient *c);

/* Whether the client is logged in, and the values the login returned (0 when not logged in). */
bool gclient_logged_in(const struct gclient *c);
uint32_t gclient_user_id(const struct gclient *c);
uint64_t gclient_session(const struct gclient *c);

/* The reason byte (1..15) of the last eviction received on this connection, 0 if none. */
uint8_t gclient_last_eviction(const struct gclient *c);

/* Ping (code 1): allowed before login. */
int gclient_ping(struct gclient *c);

/* GetMe (code 20): this connection as the server sees it. */
struct gclient_me {
	uint32_t client_id;    /* the server's id of this connection */
	uint32_t user_id;      /* UINT32_MAX when not logged in */
	uint8_t transport;     /* 1 TCP */
	char address[64];      /* the peer address as the server sees it */
	uint32_t groups_count; /* consumer groups this client is a member of */
};
int gclient_get_me(struct gclient *c, struct gclient_me *out);

/* ---- Personal access tokens ---- */

#define GCLIENT_TOKEN_MAX 256

/*
 * Creates a token for the logged-in user (operation 146). expiry_us is a duration in microseconds,
 * 0 = never. The token is written, NUL-terminated, to `token` (at least GCLIENT_TOKEN_MAX bytes).
 */
int gclient_create_pat(struct gclient *c, const char *name, uint64_t expiry_us, char *token);

/* Deletes a token of the logged-in user by name (operation 147). */
int gclient_delete_pat(struct gclient *c, const char *name);

struct gclient_pat {
	char name[256];
	uint64_t expiry_at; /* µs since the epoch, 0 = never */
};

/* Lists the logged-in user's tokens (code 41): at most `cap` into out, the total count in *n. */
int gclient_get_pats(struct gclient *c, struct gclient_pat *out, uint32_t cap, uint32_t *n);

/* ---- Streams and topics ---- */

struct gclient_stream {
	uint32_t id;
	uint64_t created_at;
	uint32_t topics_count;
	uint64_t size_bytes;
	uint64_t messages_count;
	char name[256];
};

/* Creates a stream (operation 128); `out` (may be NULL) receives its header. */
int gclient_create_stream(struct gclient *c, const char *name, struct gclient_stream *out);

/* GetStream (code 200): the stream header (its topic headers are skipped). -ENOENT if none. */
int gclient_get_stream(struct gclient *c, const struct wire_id *stream, struct gclient_stream *out);

/* Deletes a stream and everything in it (operation 130). */
int gclient_delete_stream(struct gclient *c, const struct wire_id *stream);

struct gclient_topic {
	uint32_t id;
	uint64_t created_at;
	uint32_t partitions_count;
	uint64_t message_expiry;
	uint8_t compression;
	uint64_t max_topic_size;
	uint64_t size_bytes;
	uint64_t messages_count;
	char name[256];
};

struct gclient_partition {
	uint32_t id;
	uint64_t created_at;
	uint32_t segments_count;
	uint64_t current_offset; /* the last offset, 0 when empty */
	uint64_t size_bytes;
	uint64_t messages_count;
};

/*
 * Creates a topic (operation 132) with `partitions` partitions. `durability` (may be NULL: the
 * server's default) is sent as the topic option "durability" = "fsync", "none" or "interval".
 * `out` (may be NULL) receives its header.
 */
int gclient_create_topic(struct gclient *c, const struct wire_id *stream, const char *name, uint32_t partitions,
			 const char *durability, struct gclient_topic *out);

/*
 * A topic option of gclient_create_topic_opts: `key` with a value of kind `kind` (WIRE_KIND_*,
 * proto/wire.h), `len` bytes as they travel (an integer little-endian, e.g. WIRE_KIND_UINT64 with 8
 * bytes). Galgo knows "durability" (string), "replication_factor" and "dedup_window" (u64), and Iggy's.
 */
struct gclient_topic_opt {
	const char *key;
	uint8_t kind;
	const void *value;
	size_t len;
};

/* As gclient_create_topic, with any topic options (n_opts of them; opts may be NULL when 0). */
int gclient_create_topic_opts(struct gclient *c, const struct wire_id *stream, const char *name, uint32_t partitions,
			      const struct gclient_topic_opt *opts, size_t n_opts, struct gclient_topic *out);

/*
 * GetTopic (code 300): the topic header and up to `cap` partitions (parts may be NULL when cap is 0).
 * -ENOENT if there is no such topic.
 */
int gclient_get_topic(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
		      struct gclient_topic *out, struct gclient_partition *parts, uint32_t cap);

/* Deletes a topic (operation 134). */
int gclient_delete_topic(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic);

/* ---- Consumer groups ---- */

/* Creates a consumer group (operation 139); *group_id (may be NULL) receives its id. */
int gclient_create_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
			 const char *name, uint32_t *group_id);

/* Deletes a consumer group (operation 140). */
int gclient_delete_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
			 const struct wire_id *group);

/* Joins (operation 148) or leaves (operation 149) a group as this client's login. */
int gclient_join_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
		       const struct wire_id *group);
int gclient_leave_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
			const struct wire_id *group);

/*
 * SyncConsumerGroup (code 606): the group's generation and this member's partitions (up to `cap`
 * into parts, the total in *n). A client that is not a member gets 5006 (MemberNotFound), as the SDK.
 */
int gclient_sync_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
		       const struct wire_id *group, uint64_t *generation, uint32_t *parts, uint32_t cap, uint32_t *n);

/* ---- Consumer offsets ---- */

/* A single consumer with a numeric id, or a consumer group (by id or name). */
static inline struct wire_consumer gclient_consumer(uint32_t id)
{
	return (struct wire_consumer){.kind = WIRE_CONSUMER_SINGLE, .id = wire_id_num(id)};
}
static inline struct wire_consumer gclient_group_consumer(struct wire_id group)
{
	return (struct wire_consumer){.kind = WIRE_CONSUMER_GROUP, .id = group};
}

struct gclient_offset {
	uint32_t partition_id;
	uint64_t current_offset; /* the partition's last offset */
	uint64_t stored_offset;
};

/* StoreConsumerOffset (operation 161). An offset above the partition's last gives 4100. */
int gclient_store_offset(struct gclient *c, const struct wire_consumer *consumer, const struct wire_id *stream,
			 const struct wire_id *topic, uint32_t partition, uint64_t offset);

/* GetConsumerOffset (code 120). -ENOENT when no offset is stored. */
int gclient_get_offset(struct gclient *c, const struct wire_consumer *consumer, const struct wire_id *stream,
		       const struct wire_id *topic, uint32_t partition, struct gclient_offset *out);

/* DeleteConsumerOffset (operation 162). A missing offset gives 3021. */
int gclient_delete_offset(struct gclient *c, const struct wire_consumer *consumer, const struct wire_id *stream,
			  const struct wire_id *topic, uint32_t partition);

/* ---- Messages ---- */

struct gclient_sent {
	uint32_t stream_id, topic_id, partition_id;
	uint64_t base_offset; /* GCLIENT_OFFSET_UNKNOWN when the server did not tell */
};

/*
 * Sends n ≥ 1 messages (payloads[i] of lens[i] bytes, no user headers) as one batch to `partition`
 * (GCLIENT_BALANCED: the server chooses). The batch is built with batch_build: offset deltas
 * 0..n-1, every message's origin timestamp = now (µs since the epoch), random non-zero 128-bit ids;
 * it travels in the SendMessages body of reference §3.1. `out` (may be NULL) receives the reply: the
 * partition and the base offset the batch got.
 */
int gclient_send(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic, uint32_t partition,
		 uint32_t n, const void *const *payloads, const uint32_t *lens, struct gclient_sent *out);

/*
 * As gclient_send, with the caller's message ids: message i gets ids[i], the 16 bytes of its u128 id as
 * they travel (little-endian; any value, 0 included: the server never rewrites ids). ids NULL: random
 * ids, as gclient_send.
 */
int gclient_send_ids(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic, uint32_t partition,
		     uint32_t n, const void *const *payloads, const uint32_t *lens, const uint8_t (*ids)[16],
		     struct gclient_sent *out);

/*
 * Pipelined send: builds and writes the same request as gclient_send and returns without reading the
 * reply. Collect the replies, oldest first, with gclient_wait. gclient_inflight tells how many are
 * outstanding.
 */
int gclient_send_async(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
		       uint32_t partition, uint32_t n, const void *const *payloads, const uint32_t *lens);

/* As gclient_send_async, with the caller's message ids (see gclient_send_ids). */
int gclient_send_async_ids(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
			   uint32_t partition, uint32_t n, const void *const *payloads, const uint32_t *lens,
			   const uint8_t (*ids)[16]);

/*
 * Reads the reply to the oldest outstanding gclient_send_async into `out` (may be NULL). Returns
 * -EINVAL when nothing is outstanding; a positive code when that send was refused (the following
 * ones are still outstanding).
 */
int gclient_wait(struct gclient *c, struct gclient_sent *out);

/* The number of sends written and not yet collected with gclient_wait. */
uint32_t gclient_inflight(const struct gclient *c);

/*
 * A poll reply (reference §3.5). `data`/`len` is the whole reply body: the 16-byte prefix
 * [partition_id u32][current_offset u64][messages_count u32], then the stored batches. It points into
 * the client's receive buffer and stays valid until the next call on the client.
 */
struct gclient_polled {
	uint32_t partition_id; /* GCLIENT_RESYNC_PARTITION: fenced consumer-group poll, sync again */
	uint64_t current_offset;
	uint32_t count;
	const uint8_t *data;
	size_t len;
};

/*
 * PollMessages (code 100): up to `count` messages of `partition` (GCLIENT_NO_PARTITION: none sent)
 * for `consumer`, from where `strategy` says (struct wire_polling: WIRE_POLL_OFFSET with the offset,
 * WIRE_POLL_TIMESTAMP with µs, WIRE_POLL_FIRST, WIRE_POLL_LAST, WIRE_POLL_NEXT). With auto_commit the
 * server stores the offset of the last message returned as the consumer's.
 */
int gclient_poll(struct gclient *c, const struct wire_consumer *consumer, const struct wire_id *stream,
		 const struct wire_id *topic, uint32_t partition, struct wire_polling strategy, uint32_t count,
		 bool auto_commit, struct gclient_polled *out);

/* One message of a poll reply; the pointers point into the reply. */
struct gclient_msg {
	uint64_t offset;           /* base_offset + offset_delta */
	uint64_t timestamp;        /* the batch's base_timestamp (server append time, µs) */
	uint64_t origin_timestamp; /* the batch's origin_timestamp + timestamp_delta */
	uint64_t checksum;         /* the frame's checksum as stored (XXH3 of frame bytes 8 .. end), unverified */
	uint8_t id[16];
	const uint8_t *payload;
	uint32_t payload_len;
	const uint8_t *headers; /* user headers (TLV), NULL when none */
	uint32_t headers_len;
};

/* An iterator over the messages of a poll reply. */
struct gclient_msg_iter {
	struct batch_iter b; /* over the batches after the prefix */
	uint32_t expect;     /* the prefix's messages_count */
	int err;
};

void gclient_msg_iter_init(struct gclient_msg_iter *it, const struct gclient_polled *polled);

/*
 * The next message: returns 1 and fills *m, 0 at the end, or -EBADMSG when the reply is malformed
 * (a batch or frame that does not fit, reserved bytes that are not zero, or a total that disagrees
 * with the prefix's messages_count). Checksums are not verified here: see gclient_polled_verify.
 */
int gclient_msg_next(struct gclient_msg_iter *it, struct gclient_msg *m);

/*
 * Verifies a whole poll reply: every batch with batch_verify (layout, reserved bytes, frame
 * and batch checksums, dense offset deltas) and the message total against the prefix. Returns 0 or
 * -EBADMSG.
 */
int gclient_polled_verify(const struct gclient_polled *polled);

/* ---- Raw requests ---- */

/*
 * Sends any command by its code (reference §2.2) with a pre-encoded body and waits for the reply. The
 * operation byte and the result section follow the code's table entry. On success *reply and *reply_len
 * (may be NULL) is the reply payload after the result section; it stays valid until the next call.
 * Codes 38, 39, 40, 44 and 45 are refused with -EINVAL (use the login and logout calls).
 */
int gclient_raw(struct gclient *c, uint32_t code, const void *body, size_t len, const uint8_t **reply,
		size_t *reply_len);

/*
 * The whole body of the last reply read on this connection, whatever its status: the body of a refused
 * request (e.g. Galgo's NotLeader, docs/protocol-extensions.md) is only reachable this way. It stays
 * valid until the next call on the client; (NULL, 0) before any reply.
 */
void gclient_last_reply(const struct gclient *c, const uint8_t **body, size_t *len);

/* A short English description of a gclient return value (errno text or "Iggy error N"). */
const char *gclient_strerror(int rv, char *buf, size_t len);

#endif /* GALGO_GCLIENT_H */
