/*
 * rmsg — Raft messages as bytes. See rmsg.h for the behaviour.
 *
 * All integers are little-endian. XXH3 means XXH3_64bits() of libxxhash (seed 0).
 *
 * Header (64 bytes):
 *
 *     off size field
 *       0    4 magic       0x4d524c47 (bytes "GLRM")
 *       4    1 version     1
 *       5    1 type        libraft's enum raft_message_type: 1 AppendEntries, 2 AppendEntriesResult,
 *                          3 RequestVote, 4 RequestVoteResult, 5 InstallSnapshot, 6 TimeoutNow; and Galgo's
 *                          own 16 Fetch, 17 FetchReply (out-of-band catch-up, not libraft messages)
 *       6    1 flags       bit 0 disrupt_leader, bit 1 pre_vote, bit 2 vote_granted, bit 3 gone; other bits 0
 *       7    1 rpc_version the `version` field of the libraft RPC struct, passed through
 *       8    8 group       Raft group id
 *      16    8 term        the RPC's term
 *      24    8 a           per type, below
 *      32    8 b
 *      40    8 c
 *      48    2 features    RequestVoteResult and AppendEntriesResult, else 0
 *      50    2 capacity    RequestVoteResult and AppendEntriesResult, else 0
 *      52    4 n_entries   AppendEntries, FetchReply: number of records that follow (≤ 65536), else 0
 *      56    8 check       XXH3 of bytes 0..56
 *
 *   type                  a                b               c              flags used
 *   AppendEntries         prev_log_index   prev_log_term   leader_commit  -
 *   AppendEntriesResult   rejected         last_log_index  0              -
 *   RequestVote           candidate_id     last_log_index  last_log_term  disrupt_leader, pre_vote
 *   RequestVoteResult     0                0               0              vote_granted, pre_vote
 *   TimeoutNow            last_log_index   last_log_term   0              -
 *   InstallSnapshot       last_index       last_term       conf_index     -
 *   Fetch                 start            end             budget         -
 *   FetchReply            start            end             first          gone
 *
 * Fields a type does not use must be zero. The message is exactly the header followed, for
 * AppendEntries, by n_entries records: each a 64-byte record envelope and `length` payload bytes
 * (partition/record.h), the i-th with index prev_log_index + 1 + i; for a FetchReply likewise, the i-th
 * with index start + i, none above end; for an InstallSnapshot by its body:
 *
 *      64    4 conf_len    bytes of configuration
 *      68    4 reserved    0
 *      72    . conf        libraft's raft_configuration_encode() of the snapshot's configuration
 *       .    . data        the snapshot's data (opaque here; rgroup's wrapper of the owner's data)
 *       .    8 check       XXH3 of the body bytes before it (from byte 64)
 *
 * Fetch asks the leader for the stored records [start..end] (at most `budget` bytes of them; at least one
 * record is always sent). FetchReply carries them from `start`, which is the asked start or, when the
 * server's log no longer holds it, the server's first index `first`; `gone` says the server holds none of
 * [start..end] any more (then n_entries is 0). The term of both is the sender's current term.
 */
#include "raft/rmsg.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "partition/record.h"

#define F_DISRUPT 1u
#define F_PRE_VOTE 2u
#define F_GRANTED 4u
#define F_GONE 8u

int rmsg_encode_header(uint64_t group, const struct raft_message *m, uint8_t out[RMSG_HEADER_SIZE])
{
	uint64_t term = 0, a = 0, b = 0, c = 0;
	uint8_t flags = 0, rpc_version = 0;
	uint16_t features = 0, capacity = 0;
	uint32_t n = 0;
	switch (m->type) {
	case RAFT_APPEND_ENTRIES:
		rpc_version = m->append_entries.version;
		term = m->append_entries.term;
		a = m->append_entries.prev_log_index;
		b = m->append_entries.prev_log_term;
		c = m->append_entries.leader_commit;
		n = m->append_entries.n_entries;
		break;
	case RAFT_APPEND_ENTRIES_RESULT:
		rpc_version = m->append_entries_result.version;
		term = m->append_entries_result.term;
		a = m->append_entries_result.rejected;
		b = m->append_entries_result.last_log_index;
		features = m->append_entries_result.features;
		capacity = m->append_entries_result.capacity;
		break;
	case RAFT_REQUEST_VOTE:
		rpc_version = m->request_vote.version;
		term = m->request_vote.term;
		a = m->request_vote.candidate_id;
		b = m->request_vote.last_log_index;
		c = m->request_vote.last_log_term;
		flags = (uint8_t)((m->request_vote.disrupt_leader ? F_DISRUPT : 0) |
				  (m->request_vote.pre_vote ? F_PRE_VOTE : 0));
		break;
	case RAFT_REQUEST_VOTE_RESULT:
		rpc_version = m->request_vote_result.version;
		term = m->request_vote_result.term;
		flags = (uint8_t)((m->request_vote_result.vote_granted ? F_GRANTED : 0) |
				  (m->request_vote_result.pre_vote ? F_PRE_VOTE : 0));
		features = m->request_vote_result.features;
		capacity = m->request_vote_result.capacity;
		break;
	case RAFT_TIMEOUT_NOW:
		rpc_version = m->timeout_now.version;
		term = m->timeout_now.term;
		a = m->timeout_now.last_log_index;
		b = m->timeout_now.last_log_term;
		break;
	case RAFT_INSTALL_SNAPSHOT:
		return -ENOTSUP; /* it has a body: rmsg_encode_snapshot */
	default:
		return -EINVAL;
	}
	if (n > RMSG_MAX_ENTRIES)
		return -E2BIG;
	memset(out, 0, RMSG_HEADER_SIZE);
	record_put32(out, RMSG_MAGIC);
	out[4] = RMSG_VERSION;
	out[5] = (uint8_t)m->type;
	out[6] = flags;
	out[7] = rpc_version;
	record_put64(out + 8, group);
	record_put64(out + 16, term);
	record_put64(out + 24, a);
	record_put64(out + 32, b);
	record_put64(out + 40, c);
	out[48] = (uint8_t)features;
	out[49] = (uint8_t)(features >> 8);
	out[50] = (uint8_t)capacity;
	out[51] = (uint8_t)(capacity >> 8);
	record_put32(out + 52, n);
	record_put64(out + 56, XXH3_64bits(out, 56));
	return 0;
}

static void put_header(uint8_t *out, uint8_t type, uint8_t flags, uint64_t group, uint64_t term, uint64_t a,
		       uint64_t b, uint64_t c, uint32_t n)
{
	memset(out, 0, RMSG_HEADER_SIZE);
	record_put32(out, RMSG_MAGIC);
	out[4] = RMSG_VERSION;
	out[5] = type;
	out[6] = flags;
	record_put64(out + 8, group);
	record_put64(out + 16, term);
	record_put64(out + 24, a);
	record_put64(out + 32, b);
	record_put64(out + 40, c);
	record_put32(out + 52, n);
	record_put64(out + 56, XXH3_64bits(out, 56));
}

int rmsg_encode_snapshot(uint64_t group, const struct raft_message *m, uint8_t **out, size_t *len)
{
	const struct raft_install_snapshot *is = &m->install_snapshot;
	if (m->type != RAFT_INSTALL_SNAPSHOT)
		return -EINVAL;
	struct raft_buffer conf;
	int rv = raft_configuration_encode(&is->conf, &conf);
	if (rv != 0)
		return rv == RAFT_NOMEM ? -ENOMEM : -EINVAL;
	size_t n = RMSG_HEADER_SIZE + 8 + conf.len + is->data.len + 8;
	uint8_t *p = conf.len <= UINT32_MAX ? malloc(n) : NULL;
	if (p == NULL) {
		raft_free(conf.base);
		return -ENOMEM;
	}
	put_header(p, RAFT_INSTALL_SNAPSHOT, 0, group, is->term, is->last_index, is->last_term, is->conf_index, 0);
	p[7] = is->version;
	record_put64(p + 56, XXH3_64bits(p, 56));
	uint8_t *b = p + RMSG_HEADER_SIZE;
	record_put32(b, (uint32_t)conf.len);
	record_put32(b + 4, 0);
	memcpy(b + 8, conf.base, conf.len);
	if (is->data.len > 0)
		memcpy(b + 8 + conf.len, is->data.base, is->data.len);
	size_t body = 8 + conf.len + is->data.len;
	assert(b + body + 8 == p + n); /* the checksum ends exactly the buffer reserved */
	record_put64(b + body, XXH3_64bits(b, body));
	raft_free(conf.base);
	*out = p;
	*len = n;
	return 0;
}

int rmsg_encode_fetch(uint64_t group, const struct rmsg_fetch *f, uint8_t out[RMSG_HEADER_SIZE])
{
	if (f->kind == RMSG_FETCH) {
		if (f->start == 0 || f->end < f->start)
			return -EINVAL;
		put_header(out, RMSG_FETCH, 0, group, f->term, f->start, f->end, f->budget, 0);
		return 0;
	}
	if (f->kind != RMSG_FETCH_REPLY || f->n > RMSG_MAX_ENTRIES || (f->gone && f->n != 0))
		return -EINVAL;
	put_header(out, RMSG_FETCH_REPLY, f->gone ? F_GONE : 0, group, f->term, f->start, f->end, f->first, f->n);
	return 0;
}

static int header_check(const uint8_t *p, size_t len)
{
	if (len < RMSG_HEADER_SIZE || record_le32(p) != RMSG_MAGIC || p[4] != RMSG_VERSION ||
	    record_le64(p + 56) != XXH3_64bits(p, 56))
		return -EBADMSG;
	return 0;
}

int rmsg_peek_group(const void *buf, size_t len, uint64_t *group)
{
	const uint8_t *p = buf;
	int rv = header_check(p, len);
	if (rv == 0)
		*group = record_le64(p + 8);
	return rv;
}

/* Maps a stored record type to a libraft entry type; -1 if it has no place in this group. */
static int entry_type(uint8_t record_type, uint8_t command_type)
{
	if (record_type == command_type)
		return RAFT_COMMAND;
	if (record_type == RECORD_BARRIER)
		return RAFT_BARRIER;
	if (record_type == RECORD_CHANGE)
		return RAFT_CHANGE;
	return -1;
}

/* Decodes and checks the records of an AppendEntries into one batch (see rmsg_decode). */
static int decode_entries(const uint8_t *p, size_t len, uint8_t command_type, struct raft_append_entries *ae)
{
	uint32_t n = ae->n_entries;
	/* First pass: check every record and add up the payload bytes. */
	size_t at = 0, payload = 0;
	uint64_t prev_term = ae->prev_log_index > 0 ? ae->prev_log_term : 0;
	for (uint32_t i = 0; i < n; i++) {
		struct record_env env;
		if (len - at < RECORD_ENVELOPE_SIZE || record_env_decode(p + at, &env) != 0)
			return -EBADMSG;
		if (env.length > len - at - RECORD_ENVELOPE_SIZE || env.index != ae->prev_log_index + 1 + i ||
		    env.term == 0 || env.term < prev_term || env.term > ae->term ||
		    entry_type(env.type, command_type) < 0 ||
		    record_payload_verify(&env, p + at + RECORD_ENVELOPE_SIZE, env.length) != 0)
			return -EBADMSG;
		prev_term = env.term;
		payload += env.length;
		at += RECORD_ENVELOPE_SIZE + env.length;
	}
	if (at != len)
		return -EBADMSG;
	struct raft_entry *entries = calloc(n, sizeof(*entries));
	uint8_t *batch = raft_malloc(payload > 0 ? payload : 1);
	if (entries == NULL || batch == NULL) {
		free(entries);
		if (batch != NULL)
			raft_free(batch);
		return -ENOMEM;
	}
	/* Second pass: copy the payloads into the batch. */
	at = 0;
	size_t boff = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct record_env env;
		int rc = record_env_decode(p + at, &env);
		assert(rc == 0 && boff + env.length <= payload); /* the same bytes the first pass checked */
		(void)rc;
		memcpy(batch + boff, p + at + RECORD_ENVELOPE_SIZE, env.length);
		entries[i].term = env.term;
		entries[i].type = (enum raft_entry_type)entry_type(env.type, command_type);
		entries[i].buf.base = batch + boff;
		entries[i].buf.len = env.length;
		entries[i].batch = batch;
		boff += env.length;
		at += RECORD_ENVELOPE_SIZE + env.length;
	}
	assert(at == len && boff == payload);
	ae->entries = entries;
	return 0;
}

/* Checks the records of a FetchReply (see rmsg_decode); they stay in the caller's buffer. */
static int check_records(const uint8_t *p, size_t len, uint32_t n, uint64_t first, uint64_t end, uint64_t term,
			 uint8_t command_type)
{
	size_t at = 0;
	uint64_t prev_term = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct record_env env;
		if (len - at < RECORD_ENVELOPE_SIZE || record_env_decode(p + at, &env) != 0)
			return -EBADMSG;
		if (env.length > len - at - RECORD_ENVELOPE_SIZE || env.index != first + i || env.index > end ||
		    env.term == 0 || env.term < prev_term || env.term > term || entry_type(env.type, command_type) < 0 ||
		    record_payload_verify(&env, p + at + RECORD_ENVELOPE_SIZE, env.length) != 0)
			return -EBADMSG;
		prev_term = env.term;
		at += RECORD_ENVELOPE_SIZE + env.length;
	}
	return at == len ? 0 : -EBADMSG;
}

static int decode_fetch(const uint8_t *p, size_t len, uint8_t command_type, struct rmsg_decoded *out)
{
	struct rmsg_fetch *f = &out->fetch;
	uint8_t type = p[5], flags = p[6];
	f->kind = type;
	f->term = record_le64(p + 16);
	f->start = record_le64(p + 24);
	f->end = record_le64(p + 32);
	uint64_t c = record_le64(p + 40);
	uint32_t n = record_le32(p + 52);
	if (p[7] != 0 || p[48] != 0 || p[49] != 0 || p[50] != 0 || p[51] != 0 || f->start == 0 || f->end < f->start)
		return -EBADMSG;
	if (type == RMSG_FETCH) {
		if (flags != 0 || n != 0 || len != RMSG_HEADER_SIZE)
			return -EBADMSG;
		f->budget = c;
		out->kind = RMSG_FETCH;
		return 0;
	}
	f->first = c;
	f->gone = (flags & F_GONE) != 0;
	f->n = n;
	if ((flags & ~F_GONE) != 0 || n > RMSG_MAX_ENTRIES || (f->gone && n != 0))
		return -EBADMSG;
	f->records = p + RMSG_HEADER_SIZE;
	f->records_len = len - RMSG_HEADER_SIZE;
	if (check_records(f->records, f->records_len, n, f->start, f->end, f->term, command_type) != 0)
		return -EBADMSG;
	out->kind = RMSG_FETCH_REPLY;
	return 0;
}

static int decode_snapshot(const uint8_t *p, size_t len, struct rmsg_decoded *out)
{
	if (len < RMSG_HEADER_SIZE + 16 || p[6] != 0 || record_le32(p + 52) != 0 || p[48] != 0 || p[49] != 0 ||
	    p[50] != 0 || p[51] != 0)
		return -EBADMSG;
	const uint8_t *b = p + RMSG_HEADER_SIZE;
	size_t body = len - RMSG_HEADER_SIZE - 8;
	assert(body >= 8); /* the length was checked to hold the body's two words and the checksum */
	uint32_t conf_len = record_le32(b);
	if (record_le32(b + 4) != 0 || conf_len > body - 8 || record_le64(b + body) != XXH3_64bits(b, body))
		return -EBADMSG;
	struct raft_install_snapshot *is = &out->msg.install_snapshot;
	out->msg.type = RAFT_INSTALL_SNAPSHOT;
	is->version = p[7];
	is->term = record_le64(p + 16);
	is->last_index = record_le64(p + 24);
	is->last_term = record_le64(p + 32);
	is->conf_index = record_le64(p + 40);
	if (is->last_index == 0 || is->last_term == 0 || is->last_term > is->term || is->conf_index > is->last_index)
		return -EBADMSG;
	raft_configuration_init(&is->conf);
	const struct raft_buffer cb = {(void *)(b + 8), conf_len};
	int rv = raft_configuration_decode(&cb, &is->conf);
	if (rv != 0) {
		raft_configuration_close(&is->conf);
		return rv == RAFT_NOMEM ? -ENOMEM : -EBADMSG;
	}
	size_t dl = body - 8 - conf_len;
	is->data.len = dl;
	is->data.base = raft_malloc(dl > 0 ? dl : 1);
	if (is->data.base == NULL) {
		raft_configuration_close(&is->conf);
		return -ENOMEM;
	}
	if (dl > 0)
		memcpy(is->data.base, b + 8 + conf_len, dl);
	return 0;
}

int rmsg_decode(const void *buf, size_t len, uint8_t command_type, struct rmsg_decoded *out)
{
	const uint8_t *p = buf;
	memset(out, 0, sizeof(*out));
	int rv = header_check(p, len);
	if (rv != 0)
		return rv;
	uint8_t type = p[5], flags = p[6], rpc_version = p[7];
	uint64_t term = record_le64(p + 16), a = record_le64(p + 24), b = record_le64(p + 32),
		 c = record_le64(p + 40);
	uint16_t features = (uint16_t)(p[48] | p[49] << 8), capacity = (uint16_t)(p[50] | p[51] << 8);
	uint32_t n = record_le32(p + 52);
	struct raft_message *m = &out->msg;
	out->group = record_le64(p + 8);
	if (type == RMSG_FETCH || type == RMSG_FETCH_REPLY)
		return decode_fetch(p, len, command_type, out);
	if (type == RAFT_INSTALL_SNAPSHOT)
		return decode_snapshot(p, len, out);
	bool results = type == RAFT_APPEND_ENTRIES_RESULT || type == RAFT_REQUEST_VOTE_RESULT;
	if ((!results && (features != 0 || capacity != 0)) || (type != RAFT_APPEND_ENTRIES && n != 0) ||
	    (len != RMSG_HEADER_SIZE && type != RAFT_APPEND_ENTRIES))
		return -EBADMSG;
	switch (type) {
	case RAFT_APPEND_ENTRIES:
		if (flags != 0 || n > RMSG_MAX_ENTRIES || (a == 0 && b != 0))
			return -EBADMSG;
		m->type = RAFT_APPEND_ENTRIES;
		m->append_entries.version = rpc_version;
		m->append_entries.term = term;
		m->append_entries.prev_log_index = a;
		m->append_entries.prev_log_term = b;
		m->append_entries.leader_commit = c;
		m->append_entries.n_entries = n;
		m->append_entries.entries = NULL;
		if (n == 0)
			return len == RMSG_HEADER_SIZE ? 0 : -EBADMSG;
		return decode_entries(p + RMSG_HEADER_SIZE, len - RMSG_HEADER_SIZE, command_type, &m->append_entries);
	case RAFT_APPEND_ENTRIES_RESULT:
		if (flags != 0 || c != 0)
			return -EBADMSG;
		m->type = RAFT_APPEND_ENTRIES_RESULT;
		m->append_entries_result.version = rpc_version;
		m->append_entries_result.term = term;
		m->append_entries_result.rejected = a;
		m->append_entries_result.last_log_index = b;
		m->append_entries_result.features = features;
		m->append_entries_result.capacity = capacity;
		return 0;
	case RAFT_REQUEST_VOTE:
		if ((flags & ~(F_DISRUPT | F_PRE_VOTE)) != 0)
			return -EBADMSG;
		m->type = RAFT_REQUEST_VOTE;
		m->request_vote.version = rpc_version;
		m->request_vote.term = term;
		m->request_vote.candidate_id = a;
		m->request_vote.last_log_index = b;
		m->request_vote.last_log_term = c;
		m->request_vote.disrupt_leader = (flags & F_DISRUPT) != 0;
		m->request_vote.pre_vote = (flags & F_PRE_VOTE) != 0;
		return 0;
	case RAFT_REQUEST_VOTE_RESULT:
		if ((flags & ~(F_GRANTED | F_PRE_VOTE)) != 0 || a != 0 || b != 0 || c != 0)
			return -EBADMSG;
		m->type = RAFT_REQUEST_VOTE_RESULT;
		m->request_vote_result.version = rpc_version;
		m->request_vote_result.term = term;
		m->request_vote_result.vote_granted = (flags & F_GRANTED) != 0;
		m->request_vote_result.pre_vote = (flags & F_PRE_VOTE) != 0;
		m->request_vote_result.features = features;
		m->request_vote_result.capacity = capacity;
		return 0;
	case RAFT_TIMEOUT_NOW:
		if (flags != 0 || c != 0)
			return -EBADMSG;
		m->type = RAFT_TIMEOUT_NOW;
		m->timeout_now.version = rpc_version;
		m->timeout_now.term = term;
		m->timeout_now.last_log_index = a;
		m->timeout_now.last_log_term = b;
		return 0;
	default:
		return -EBADMSG;
	}
}

void rmsg_release(struct rmsg_decoded *d)
{
	if (d->kind == 0 && d->msg.type == RAFT_APPEND_ENTRIES) {
		free(d->msg.append_entries.entries);
		d->msg.append_entries.entries = NULL;
	}
}

void rmsg_discard(struct rmsg_decoded *d)
{
	if (d->kind == 0 && d->msg.type == RAFT_INSTALL_SNAPSHOT) {
		raft_configuration_close(&d->msg.install_snapshot.conf);
		raft_free(d->msg.install_snapshot.data.base);
		d->msg.install_snapshot.data.base = NULL;
		return;
	}
	if (d->msg.type == RAFT_APPEND_ENTRIES && d->msg.append_entries.entries != NULL &&
	    d->msg.append_entries.n_entries > 0)
		raft_free(d->msg.append_entries.entries[0].batch);
	rmsg_release(d);
}
