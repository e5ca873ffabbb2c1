/*
 * rmsg — the byte format of the Raft messages one group sends to another node's replica of that group.
 *
 * A message is a 64-byte header followed, for an AppendEntries with entries, by the entries as stored in
 * the partition log: each a 64-byte record envelope and its payload (partition/record.h), so every entry
 * carries its own checksums from the leader's disk to the follower's. The layout is specified in rmsg.c.
 * The transport that carries these bytes between nodes (and the group id it routes by) is not part of
 * this module; rmsg_peek_group lets it find the group without decoding the rest.
 *
 * InstallSnapshot carries the snapshot's configuration and data (rmsg_encode_snapshot). Two more kinds
 * are Galgo's own, not libraft's: Fetch and FetchReply, with which a replica installing a snapshot fetches
 * the leader's stored records out of band (see rgroup.c), carried exactly as AppendEntries carries them.
 */
#ifndef GALGO_RMSG_H
#define GALGO_RMSG_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RMSG_HEADER_SIZE 64
#define RMSG_MAGIC 0x4d524c47u /* bytes "GLRM" */
#define RMSG_VERSION 1
#define RMSG_MAX_ENTRIES 65536
#define RMSG_FETCH 16
#define RMSG_FETCH_REPLY 17

/*
 * Encodes the header of m for `group`. For AppendEntries the header announces m->append_entries.n_entries
 * records, which the caller appends after it. Returns 0, or -ENOTSUP for InstallSnapshot and -EINVAL for an
 * unknown type.
 */
int rmsg_encode_header(uint64_t group, const struct raft_message *m, uint8_t out[RMSG_HEADER_SIZE]);

/* Encodes an InstallSnapshot (header and body) into a malloc'd buffer. Returns 0, -EINVAL or -ENOMEM. */
int rmsg_encode_snapshot(uint64_t group, const struct raft_message *m, uint8_t **out, size_t *len);

/* A Fetch or FetchReply (format in rmsg.c). */
struct rmsg_fetch {
	uint8_t kind;            /* RMSG_FETCH or RMSG_FETCH_REPLY */
	uint64_t term;           /* the sender's term */
	uint64_t start, end;     /* Fetch: records [start..end] wanted; FetchReply: records from start */
	uint64_t budget;         /* Fetch: bytes of records wanted at most */
	uint64_t first;          /* FetchReply: the server's first log index */
	bool gone;               /* FetchReply: the server holds nothing of [start..end] any more */
	uint32_t n;              /* FetchReply: records that follow */
	const uint8_t *records;  /* FetchReply, decoded: the records, inside the decoded buffer */
	size_t records_len;
};

/*
 * Encodes the header of a Fetch or FetchReply; a FetchReply's n records follow it. Returns 0 or -EINVAL.
 */
int rmsg_encode_fetch(uint64_t group, const struct rmsg_fetch *f, uint8_t out[RMSG_HEADER_SIZE]);

/* Reads the group id of an encoded message after checking its header. Returns 0 or -EBADMSG. */
int rmsg_peek_group(const void *buf, size_t len, uint64_t *group);

/* A decoded message. */
struct rmsg_decoded {
	uint64_t group;
	uint8_t kind;            /* 0: a libraft message in msg; RMSG_FETCH or RMSG_FETCH_REPLY: in fetch */
	struct rmsg_fetch fetch;
	/*
	 * server_id and server_address are left zero for the receiver to fill with the sender. For an
	 * AppendEntries with entries, append_entries.entries is a malloc'd array (freed by rmsg_release) whose
	 * entries all share one raft_malloc'd batch; that batch is raft's once the message is stepped.
	 */
	struct raft_message msg;
};

/*
 * Decodes and verifies a message: header checksum and fields, then every entry's envelope and payload
 * checksums, consecutive indexes from prev_log_index + 1, terms that never decrease and never exceed the
 * message's term. A stored record of type `command_type` (RECORD_MESSAGES or RECORD_COMMAND) becomes a
 * RAFT_COMMAND entry; RECORD_BARRIER and RECORD_CHANGE keep their libraft meaning. An InstallSnapshot's
 * configuration and data are allocated (libraft's once stepped). A FetchReply's records are checked the
 * same way (from start, none above end) and left in buf. Returns 0, -EBADMSG for bytes that break a rule,
 * or -ENOMEM.
 */
int rmsg_decode(const void *buf, size_t len, uint8_t command_type, struct rmsg_decoded *out);

/* Frees the entries array of a decoded message (after it was stepped: the batch belongs to raft). */
void rmsg_release(struct rmsg_decoded *d);

/* Frees the entries array and the batch of a decoded message that was not stepped. */
void rmsg_discard(struct rmsg_decoded *d);

#endif /* GALGO_RMSG_H */
