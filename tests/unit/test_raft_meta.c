/*
 * Tests of raft/rmeta (durable term and vote per group) on the simulated disk: values across reopen,
 * power loss at every write boundary with and without torn writes, damage to one or both copies, drop and
 * reuse of pairs, failed writes; and of raft/rmsg (the message bytes): round trips of every message type
 * and rejection of damaged or inconsistent messages.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "partition/piosim.h"
#include "partition/record.h"
#include "raft/rmeta.h"
#include "raft/rmsg.h"

static struct pio *sim;

static void setup(void)
{
	sim = pio_sim_new();
}

static void teardown(void)
{
	pio_destroy(sim);
}

TestSuite(rmeta, .init = setup, .fini = teardown);

static void expect(struct rmeta *m, uint64_t group, uint64_t term, uint64_t vote)
{
	uint64_t t, v;
	int rv = rmeta_get(m, group, &t, &v);
	if (term == 0) {
		cr_assert_eq(rv, -ENOENT, "group %llu should have no record", (unsigned long long)group);
		return;
	}
	cr_assert_eq(rv, 0, "group %llu has no record", (unsigned long long)group);
	cr_assert(t == term && v == vote, "group %llu: %llu/%llu, expected %llu/%llu", (unsigned long long)group,
		  (unsigned long long)t, (unsigned long long)v, (unsigned long long)term, (unsigned long long)vote);
}

Test(rmeta, values_of_many_groups_survive_reopen)
{
	/* Hundreds of groups, each written several times, read back the same after closing and reopening. */
	struct rmeta *m;
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	cr_assert_eq(rmeta_count(m), 0);
	expect(m, 5, 0, 0);
	for (uint64_t round = 1; round <= 3; round++)
		for (uint64_t g = 1; g <= 300; g++)
			cr_assert_eq(rmeta_set(m, g * 7919, g + round, round == 3 ? g % 5 : 0), 0);
	cr_assert_eq(rmeta_set(m, 0, 1, 1), -EINVAL);
	rmeta_close(m);
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	cr_assert_eq(rmeta_count(m), 300);
	cr_assert_eq(rmeta_repaired(m), 0);
	for (uint64_t g = 1; g <= 300; g++)
		expect(m, g * 7919, g + 3, g % 5);
	rmeta_close(m);
}

Test(rmeta, writing_the_same_value_does_no_io)
{
	struct rmeta *m;
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	cr_assert_eq(rmeta_set(m, 1, 4, 2), 0);
	uint64_t before = pio_sim_mutations(sim);
	cr_assert_eq(rmeta_set(m, 1, 4, 2), 0);
	cr_assert_eq(pio_sim_mutations(sim), before);
	cr_assert_eq(rmeta_set(m, 1, 4, 3), 0);
	cr_assert_gt(pio_sim_mutations(sim), before);
	rmeta_close(m);
}

Test(rmeta, dropped_groups_disappear_and_their_pairs_are_reused)
{
	struct rmeta *m;
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	for (uint64_t g = 1; g <= 4; g++)
		cr_assert_eq(rmeta_set(m, g, g, 0), 0);
	cr_assert_eq(rmeta_drop(m, 2), 0);
	cr_assert_eq(rmeta_drop(m, 99), 0);
	expect(m, 2, 0, 0);
	cr_assert_eq(rmeta_set(m, 9, 9, 1), 0); /* takes the freed pair: the file does not grow */
	uint64_t size;
	cr_assert_eq(pio_sim_durable_size(sim, "node/" RMETA_FILE, &size), 0);
	cr_assert_leq(size, 4 * 1024);
	rmeta_close(m);
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	cr_assert_eq(rmeta_count(m), 4);
	expect(m, 1, 1, 0);
	expect(m, 2, 0, 0);
	expect(m, 3, 3, 0);
	expect(m, 9, 9, 1);
	rmeta_close(m);
}

/* One step of a workload: set (group, term, vote), or drop the group when term is 0. */
struct op {
	uint64_t group, term, vote;
};

static const struct op ops[] = {
	{1, 1, 0}, {2, 1, 0}, {1, 2, 1}, {3, 1, 0}, {2, 3, 2}, {1, 3, 0}, {2, 0, 0}, {3, 5, 3},
	{4, 2, 0}, {2, 6, 1}, {1, 4, 4}, {4, 3, 1}, {3, 6, 0}, {1, 0, 0}, {5, 1, 1}, {2, 7, 7},
};

#define N_OPS (sizeof(ops) / sizeof(ops[0]))
#define N_GROUPS 6

Test(rmeta, a_power_loss_at_any_write_keeps_every_acknowledged_value)
{
	/*
	 * The workload runs until the disk dies after k mutating calls (k = 0, 1, 2, ...), then the power goes
	 * (with or without a torn last write). Reopened, every group holds its last acknowledged value, except
	 * the one whose write was in progress, which holds its previous or its new value; never anything else
	 * and never an error.
	 */
	for (int tear = 0; tear < 3; tear++)
		for (uint64_t k = 0;; k++) {
			struct pio *p = pio_sim_new();
			uint64_t acked[N_GROUPS][2] = {{0}};
			struct rmeta *m;
			pio_sim_crash_after(p, k);
			int rv = rmeta_open(p, "node", &m);
			size_t done = 0;
			const struct op *inflight = NULL;
			if (rv == 0) {
				for (; done < N_OPS; done++) {
					const struct op *o = &ops[done];
					rv = o->term ? rmeta_set(m, o->group, o->term, o->vote) : rmeta_drop(m, o->group);
					if (rv != 0) {
						inflight = o;
						break;
					}
					acked[o->group][0] = o->term;
					acked[o->group][1] = o->term ? o->vote : 0;
				}
				rmeta_close(m);
			}
			cr_assert_eq(pio_sim_power_loss(p, tear == 0 ? 0 : (uint32_t)(k * 13 + (uint64_t)tear * 29)), 0);
			cr_assert_eq(rmeta_open(p, "node", &m), 0, "k=%llu tear=%d: reopen failed",
				     (unsigned long long)k, tear);
			for (uint64_t g = 1; g < N_GROUPS; g++) {
				uint64_t t, v;
				if (rmeta_get(m, g, &t, &v) != 0)
					t = v = 0;
				bool old = t == acked[g][0] && v == acked[g][1];
				bool new = inflight != NULL && inflight->group == g && t == inflight->term &&
					   v == (inflight->term ? inflight->vote : 0);
				cr_assert(old || new, "k=%llu tear=%d group %llu: %llu/%llu, acknowledged %llu/%llu",
					  (unsigned long long)k, tear, (unsigned long long)g, (unsigned long long)t,
					  (unsigned long long)v, (unsigned long long)acked[g][0],
					  (unsigned long long)acked[g][1]);
			}
			rmeta_close(m);
			pio_destroy(p);
			if (done == N_OPS)
				break;
		}
}

Test(rmeta, damage_to_one_copy_is_repaired_and_to_both_is_reported)
{
	struct rmeta *m;
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	cr_assert_eq(rmeta_set(m, 11, 3, 1), 0);
	cr_assert_eq(rmeta_set(m, 12, 5, 2), 0);
	cr_assert_eq(rmeta_set(m, 12, 6, 0), 0);
	rmeta_close(m);
	/* A flipped byte in copy 1 of group 12's pair (pair 1, byte 1024 + 512 + 24): the other copy serves. */
	cr_assert_eq(pio_sim_corrupt(sim, "node/" RMETA_FILE, 1024 + 512 + 24, 0x40), 0);
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	cr_assert_eq(rmeta_repaired(m), 1);
	expect(m, 12, 6, 0);
	rmeta_close(m);
	/* Repaired: now copy 0 may be damaged instead. */
	cr_assert_eq(pio_sim_corrupt(sim, "node/" RMETA_FILE, 1024 + 30, 0x01), 0);
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	expect(m, 12, 6, 0);
	expect(m, 11, 3, 1);
	rmeta_close(m);
	/* Both copies damaged: detected, never read as an older or missing value. */
	cr_assert_eq(pio_sim_corrupt(sim, "node/" RMETA_FILE, 1024 + 8, 0x10), 0);
	cr_assert_eq(pio_sim_corrupt(sim, "node/" RMETA_FILE, 1024 + 512 + 40, 0x10), 0);
	cr_assert_eq(rmeta_open(sim, "node", &m), -EBADMSG);
}

Test(rmeta, damaged_pairs_are_named_with_their_groups_and_salvage_drops_only_them)
{
	struct rmeta *m;
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	for (uint64_t g = 1; g <= 4; g++)
		cr_assert_eq(rmeta_set(m, 0x8000000000000000ull + g, g + 10, g), 0);
	rmeta_close(m);
	/* Pair 1 (group ...02): both copies' terms flipped (magic and group still readable). */
	cr_assert_eq(pio_sim_corrupt(sim, "node/" RMETA_FILE, 1024 + 24, 0x01), 0);
	cr_assert_eq(pio_sim_corrupt(sim, "node/" RMETA_FILE, 1024 + 512 + 24, 0x01), 0);
	/* Pair 3 (group ...04): both copies' magic gone. */
	cr_assert_eq(pio_sim_corrupt(sim, "node/" RMETA_FILE, 3 * 1024, 0xff), 0);
	cr_assert_eq(pio_sim_corrupt(sim, "node/" RMETA_FILE, 3 * 1024 + 512, 0xff), 0);
	struct rmeta_report rep;
	cr_assert_eq(rmeta_open_ex(sim, "node", false, &rep, &m), -EBADMSG);
	cr_assert_eq(rep.n, 2, "every damaged pair is reported, not only the first");
	cr_assert_eq(rep.d[0].pair, 1);
	cr_assert_str_eq(rep.d[0].what, "both copies unreadable");
	cr_assert(rep.d[0].groups[0] == 0x8000000000000002ull && rep.d[0].groups[1] == 0x8000000000000002ull &&
		  !rep.d[0].verified[0] && !rep.d[0].verified[1]);
	cr_assert_eq(rep.d[1].pair, 3);
	cr_assert(rep.d[1].groups[0] == 0 && rep.d[1].groups[1] == 0, "no magic: no group named");
	/* Salvage: the two damaged pairs are dropped durably, the others kept. */
	cr_assert_eq(rmeta_open_ex(sim, "node", true, &rep, &m), 0);
	cr_assert_eq(rep.n, 2);
	expect(m, 0x8000000000000001ull, 11, 1);
	expect(m, 0x8000000000000002ull, 0, 0);
	expect(m, 0x8000000000000003ull, 13, 3);
	expect(m, 0x8000000000000004ull, 0, 0);
	rmeta_close(m);
	cr_assert_eq(pio_sim_power_loss(sim, 0), 0);
	cr_assert_eq(rmeta_open(sim, "node", &m), 0, "the salvage was durable");
	cr_assert_eq(rmeta_count(m), 2);
	cr_assert_eq(rmeta_set(m, 0x8000000000000002ull, 20, 0), 0); /* a free pair again */
	rmeta_close(m);
}

Test(rmeta, a_failed_write_keeps_the_previous_value_and_a_later_write_succeeds)
{
	struct rmeta *m;
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	cr_assert_eq(rmeta_set(m, 1, 2, 2), 0);
	for (uint64_t n = 1; n <= 4; n++) {
		pio_sim_fail_nth(sim, n, EIO);
		cr_assert_eq(rmeta_set(m, 1, 3 + n, 1), -EIO);
		expect(m, 1, 2, 2);
		pio_sim_fail_nth(sim, n, EIO);
		cr_assert_eq(rmeta_set(m, 40 + n, 1, 0), -EIO); /* a new group whose first write fails */
		expect(m, 40 + n, 0, 0);
	}
	cr_assert_eq(rmeta_set(m, 1, 9, 3), 0);
	for (uint64_t n = 1; n <= 4; n++)
		cr_assert_eq(rmeta_set(m, 40 + n, 2, n), 0);
	rmeta_close(m);
	cr_assert_eq(rmeta_open(sim, "node", &m), 0);
	expect(m, 1, 9, 3);
	for (uint64_t n = 1; n <= 4; n++)
		expect(m, 40 + n, 2, n);
	rmeta_close(m);
}

/* rmsg. */

static struct raft_message msg_of(enum raft_message_type type)
{
	struct raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = type;
	switch (type) {
	case RAFT_APPEND_ENTRIES:
		m.append_entries = (struct raft_append_entries){.version = 0, .term = 9, .prev_log_index = 41,
								  .prev_log_term = 8, .leader_commit = 40};
		break;
	case RAFT_APPEND_ENTRIES_RESULT:
		m.append_entries_result = (struct raft_append_entries_result){
			.version = 1, .term = 9, .rejected = 42, .last_log_index = 40, .features = 1, .capacity = 77};
		break;
	case RAFT_REQUEST_VOTE:
		m.request_vote = (struct raft_request_vote){.version = 2, .term = 10, .candidate_id = 3,
							    .last_log_index = 50, .last_log_term = 9,
							    .disrupt_leader = true, .pre_vote = true};
		break;
	case RAFT_REQUEST_VOTE_RESULT:
		m.request_vote_result = (struct raft_request_vote_result){
			.version = 2, .term = 10, .vote_granted = true, .pre_vote = false, .features = 1, .capacity = 5};
		break;
	case RAFT_TIMEOUT_NOW:
		m.timeout_now = (struct raft_timeout_now){.version = 1, .term = 11, .last_log_index = 60,
							  .last_log_term = 10};
		break;
	default:
		break;
	}
	return m;
}

TestSuite(rmsg);

Test(rmsg, every_message_type_round_trips)
{
	const enum raft_message_type types[] = {RAFT_APPEND_ENTRIES, RAFT_APPEND_ENTRIES_RESULT, RAFT_REQUEST_VOTE,
						RAFT_REQUEST_VOTE_RESULT, RAFT_TIMEOUT_NOW};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct raft_message m = msg_of(types[i]);
		uint8_t buf[RMSG_HEADER_SIZE];
		cr_assert_eq(rmsg_encode_header(77, &m, buf), 0);
		uint64_t group;
		cr_assert_eq(rmsg_peek_group(buf, sizeof(buf), &group), 0);
		cr_assert_eq(group, 77);
		struct rmsg_decoded d;
		cr_assert_eq(rmsg_decode(buf, sizeof(buf), RECORD_COMMAND, &d), 0, "type %d", types[i]);
		cr_assert_eq(d.group, 77);
		cr_assert_eq(d.msg.type, m.type);
		/* The union compares equal field by field; compare the decoded struct for the type. */
		switch (types[i]) {
		case RAFT_APPEND_ENTRIES:
			cr_assert(d.msg.append_entries.term == 9 && d.msg.append_entries.prev_log_index == 41 &&
				  d.msg.append_entries.prev_log_term == 8 && d.msg.append_entries.leader_commit == 40 &&
				  d.msg.append_entries.n_entries == 0);
			break;
		case RAFT_APPEND_ENTRIES_RESULT:
			cr_assert(d.msg.append_entries_result.version == 1 && d.msg.append_entries_result.rejected == 42 &&
				  d.msg.append_entries_result.last_log_index == 40 &&
				  d.msg.append_entries_result.features == 1 && d.msg.append_entries_result.capacity == 77);
			break;
		case RAFT_REQUEST_VOTE:
			cr_assert(d.msg.request_vote.term == 10 && d.msg.request_vote.candidate_id == 3 &&
				  d.msg.request_vote.last_log_index == 50 && d.msg.request_vote.last_log_term == 9 &&
				  d.msg.request_vote.disrupt_leader && d.msg.request_vote.pre_vote &&
				  d.msg.request_vote.version == 2);
			break;
		case RAFT_REQUEST_VOTE_RESULT:
			cr_assert(d.msg.request_vote_result.term == 10 && d.msg.request_vote_result.vote_granted &&
				  !d.msg.request_vote_result.pre_vote && d.msg.request_vote_result.capacity == 5);
			break;
		default:
			cr_assert(d.msg.timeout_now.term == 11 && d.msg.timeout_now.last_log_index == 60 &&
				  d.msg.timeout_now.last_log_term == 10);
			break;
		}
		rmsg_release(&d);
	}
	struct raft_message snap;
	memset(&snap, 0, sizeof(snap));
	snap.type = RAFT_INSTALL_SNAPSHOT;
	uint8_t buf[RMSG_HEADER_SIZE];
	cr_assert_eq(rmsg_encode_header(1, &snap, buf), -ENOTSUP);
}

/* Appends a stored record (envelope + payload) for entry `index` to buf; returns the new length. */
static size_t put_record(uint8_t *buf, size_t at, uint8_t type, uint64_t index, uint64_t term, const char *text)
{
	struct record_env e;
	memset(&e, 0, sizeof(e));
	e.version = RECORD_VERSION;
	e.type = type;
	e.index = index;
	e.term = term;
	uint32_t len = (uint32_t)strlen(text);
	record_env_fill(&e, (const uint8_t *)text, len);
	e.length = len;
	record_env_encode(&e, buf + at);
	memcpy(buf + at + RECORD_ENVELOPE_SIZE, text, len);
	return at + RECORD_ENVELOPE_SIZE + len;
}

/* An AppendEntries after index 41 (term 8) with entries 42^8 "alpha", 43^9 barrier "", 44^9 "gamma". */
static size_t build_ae(uint8_t *buf)
{
	struct raft_message m = msg_of(RAFT_APPEND_ENTRIES);
	m.append_entries.n_entries = 3;
	cr_assert_eq(rmsg_encode_header(5, &m, buf), 0);
	size_t at = RMSG_HEADER_SIZE;
	at = put_record(buf, at, RECORD_COMMAND, 42, 8, "alpha");
	at = put_record(buf, at, RECORD_BARRIER, 43, 9, "");
	at = put_record(buf, at, RECORD_COMMAND, 44, 9, "gamma");
	return at;
}

Test(rmsg, append_entries_carry_their_records_into_one_batch)
{
	uint8_t buf[1024];
	size_t len = build_ae(buf);
	struct rmsg_decoded d;
	cr_assert_eq(rmsg_decode(buf, len, RECORD_COMMAND, &d), 0);
	const struct raft_append_entries *ae = &d.msg.append_entries;
	cr_assert_eq(ae->n_entries, 3);
	cr_assert(ae->entries[0].term == 8 && ae->entries[0].type == RAFT_COMMAND && ae->entries[0].buf.len == 5 &&
		  memcmp(ae->entries[0].buf.base, "alpha", 5) == 0);
	cr_assert(ae->entries[1].term == 9 && ae->entries[1].type == RAFT_BARRIER && ae->entries[1].buf.len == 0);
	cr_assert(memcmp(ae->entries[2].buf.base, "gamma", 5) == 0);
	cr_assert(ae->entries[0].batch != NULL && ae->entries[0].batch == ae->entries[1].batch &&
		  ae->entries[1].batch == ae->entries[2].batch);
	rmsg_discard(&d);
	/* A group whose commands are Iggy batches does not accept opaque COMMAND records. */
	cr_assert_eq(rmsg_decode(buf, len, RECORD_MESSAGES, &d), -EBADMSG);
}

Test(rmsg, damaged_or_inconsistent_messages_are_rejected)
{
	uint8_t buf[1024], bad[1024];
	size_t len = build_ae(buf);
	struct rmsg_decoded d;
	/* Any flipped bit anywhere is caught by a checksum or a field check. */
	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit += 3) {
			memcpy(bad, buf, len);
			bad[i] ^= (uint8_t)(1u << bit);
			int rv = rmsg_decode(bad, len, RECORD_COMMAND, &d);
			cr_assert_eq(rv, -EBADMSG, "flip of bit %d of byte %zu accepted", bit, i);
		}
	/* Truncated, or with trailing bytes. */
	for (size_t l = 0; l < len; l += 7)
		cr_assert_eq(rmsg_decode(buf, l, RECORD_COMMAND, &d), -EBADMSG);
	memcpy(bad, buf, len);
	bad[len] = 0;
	cr_assert_eq(rmsg_decode(bad, len + 1, RECORD_COMMAND, &d), -EBADMSG);
	/* Entries that do not follow prev_log_index, or whose terms go down or exceed the message's term. */
	struct raft_message m = msg_of(RAFT_APPEND_ENTRIES);
	m.append_entries.n_entries = 2;
	const uint64_t cases[][4] = {{43, 8, 44, 8}, {42, 9, 43, 8}, {42, 7, 43, 8}, {42, 8, 43, 10}, {42, 8, 44, 8}};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		cr_assert_eq(rmsg_encode_header(5, &m, bad), 0);
		size_t at = put_record(bad, RMSG_HEADER_SIZE, RECORD_COMMAND, cases[c][0], cases[c][1], "x");
		at = put_record(bad, at, RECORD_COMMAND, cases[c][2], cases[c][3], "y");
		cr_assert_eq(rmsg_decode(bad, at, RECORD_COMMAND, &d), -EBADMSG, "case %zu accepted", c);
	}
	/* A header with fields its type does not use. */
	struct raft_message v = msg_of(RAFT_REQUEST_VOTE_RESULT);
	cr_assert_eq(rmsg_encode_header(5, &v, bad), 0);
	record_put64(bad + 24, 1);
	record_put64(bad + 56, XXH3_64bits(bad, 56));
	cr_assert_eq(rmsg_decode(bad, RMSG_HEADER_SIZE, RECORD_COMMAND, &d), -EBADMSG);
}
