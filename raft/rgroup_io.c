/*
 * rgroup_io — the rgroup module's log and wire (see rgroup_int.h for the module's files): the entries of a
 * raft_update appended to the plog and their completions reported, libraft's messages encoded and sent.
 *
 * Bytes: the log entries are plog records (partition/record.h: the envelope's index, term and type are the
 * entry's); messages are rmsg messages (raft/rmsg.c). This file defines no format of its own.
 *
 * Persistence reports. A server persists new entries before they count towards their commitment
 * (dissertation §3.8), so an entry is reported to libraft (which then counts it for the leader's own
 * majority, or acknowledges it to the leader on a follower) only once its plog append has completed.
 * Each append completes through its plog callback, in append order. The highest index
 * completed without a truncation in between is `durable`; it is reported with RAFT_PERSISTED_ENTRIES when
 * it is above libraft's last_stored and the plog still holds that entry with the term it was appended with
 * (the "prefix whose terms still match" rule; rgroup__settle in rgroup.c reports it). A truncation lowers
 * `durable` below the truncation point, as libraft lowers last_stored, and cancels the appends it removes
 * (their callbacks carry -ECANCELED).
 */
#include "raft/rgroup_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "partition/record.h"

int rgroup__reserve(struct rgroup *g, size_t n)
{
	if (n <= g->buf_cap)
		return 0;
	size_t cap = g->buf_cap ? g->buf_cap : 4096;
	while (cap < n)
		cap *= 2;
	uint8_t *b = realloc(g->buf, cap);
	if (b == NULL)
		return -ENOMEM;
	g->buf = b;
	g->buf_cap = cap;
	return 0;
}

static uint8_t record_type_of(const struct rgroup *g, enum raft_entry_type t)
{
	switch (t) {
	case RAFT_BARRIER:
		return RECORD_BARRIER;
	case RAFT_CHANGE:
		return RECORD_CHANGE;
	default:
		return g->cfg.command_type;
	}
}

/* Frees each distinct batch of an entries array once (the array itself belongs to libraft). */
void rgroup__free_batches(struct raft_entry *entries, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		void *b = entries[i].batch;
		bool seen = b == NULL;
		for (unsigned j = 0; j < i && !seen; j++)
			seen = entries[j].batch == b;
		if (!seen)
			raft_free(b);
	}
}

/* Persistence. */

static void append_cb(struct plog_append_req *req, int status)
{
	struct pending *p = req->data;
	struct rgroup *g = p->g;
	if (g != NULL) {
		if (p->prev != NULL)
			p->prev->next = p->next;
		else
			g->pending = p->next;
		if (p->next != NULL)
			p->next->prev = p->prev;
		if (status == 0) {
			/*
			 * Callbacks come in append order, and a truncation cancels every later append: an append
			 * completes right after the durable index (or at or below it, when it was bootstrapped).
			 */
			assert(req->index <= g->durable + 1);
			if (req->index == g->durable + 1) {
				g->durable = req->index;
				g->durable_term = p->term;
			}
			assert(g->durable <= plog_last_index(g->env.log));
			flusher_defer(g->env.fl, &g->item);
		} else if (status != -ECANCELED) {
			rgroup__fail(g, status);
		}
	}
	free(p);
}

int rgroup__append_entry(struct rgroup *g, uint64_t index, uint64_t term, uint8_t type, const void *payload,
			 uint32_t length)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->g = g;
	p->term = term;
	p->req.data = p;
	struct plog_entry e = {type, index, term, payload, length};
	int rv = plog_append(g->env.log, &p->req, &e, append_cb);
	if (rv != 0) {
		free(p);
		return rv;
	}
	p->next = g->pending;
	if (g->pending != NULL)
		g->pending->prev = p;
	g->pending = p;
	return 0;
}

/* Step 2 of an update (see the header comment of rgroup.c). Always frees the batches. */
int rgroup__persist_entries(struct rgroup *g, uint64_t index, struct raft_entry *entries, unsigned n)
{
	struct plog *log = g->env.log;
	int rv = 0;
	if (index <= g->applied) {
		/*
		 * Committed entries are never truncated (Leader Completeness, dissertation §3.6.3): a request to
		 * replace an applied entry means the log or libraft is broken. Stop rather than diverge.
		 */
		rv = -EIO;
	} else if (index <= plog_last_index(log)) {
		/* Figure 3.1, AppendEntries receiver rule 3: delete the conflicting entry and all that follow. */
		rv = plog_truncate(log, index);
		if (g->durable >= index)
			g->durable = index - 1;
		assert(rv != 0 || plog_last_index(log) == index - 1);
	}
	if (rv == 0 && index != plog_last_index(log) + 1)
		rv = -EIO;
	for (unsigned i = 0; rv == 0 && i < n; i++) {
		const struct raft_entry *e = &entries[i];
		/* No replica stores an entry of a term newer than its own (rmsg_decode bounds a leader's). */
		assert(e->term > 0 && e->term <= raft_current_term(&g->raft));
		if (e->buf.len > UINT32_MAX)
			rv = -EMSGSIZE;
		else
			rv = rgroup__append_entry(g, index + i, e->term, record_type_of(g, e->type), e->buf.base,
					  (uint32_t)e->buf.len);
		assert(rv != 0 || plog_last_index(log) == index + i); /* the plog is the Raft log */
	}
	rgroup__free_batches(entries, n);
	return rv;
}

/* Messages. */

void rgroup__send_bytes(struct rgroup *g, uint64_t to, const void *buf, size_t len)
{
	if (len > g->max_message)
		g->max_message = len;
	(void)g->env.send(g->env.ud, to, buf, len);
}


/* Step 3 of an update (see the header comment of rgroup.c). */
void rgroup__send_message(struct rgroup *g, const struct raft_message *m)
{
	if ((g->recovering || g->no_campaign) && m->type == RAFT_REQUEST_VOTE)
		return; /* rgroup_config.recovering or rgroup_set_campaign: it asks for no vote */
	if (m->type == RAFT_INSTALL_SNAPSHOT) {
		rgroup__send_snapshot(g, m);
		return;
	}
	uint8_t hdr[RMSG_HEADER_SIZE];
	struct raft_message fixed;
	if (m->type == RAFT_APPEND_ENTRIES_RESULT && g->stale_reject_to != 0 && m->server_id == g->stale_reject_to) {
		/*
		 * libraft 0.22.1 rejects an AppendEntries of an older term without setting last_log_index (it
		 * is left uninitialised: raft/README.md). A leader that has meanwhile reached the replier's term
		 * would read it as the follower's progress, and with rejected = 0 as an acknowledgement up to
		 * that index. It is set here as libraft's own amendment of a rejection would: rejected - 1, or 0.
		 */
		fixed = *m;
		raft_index r = fixed.append_entries_result.rejected;
		fixed.append_entries_result.last_log_index = r > 0 ? r - 1 : 0;
		m = &fixed;
	}
	if (rmsg_encode_header(g->cfg.group_id, m, hdr) != 0)
		return;
	size_t len = RMSG_HEADER_SIZE;
	if (m->type == RAFT_APPEND_ENTRIES && m->append_entries.n_entries > 0) {
		/*
		 * libraft names the entries (prev + 1 .. prev + n); their bytes come from our log. Past
		 * max_message_bytes fewer are sent (at least one): the follower acknowledges what it got and the
		 * leader's next AppendEntries resumes there (after one rejection when it was pipelining).
		 */
		uint64_t from = m->append_entries.prev_log_index + 1;
		uint64_t to = m->append_entries.prev_log_index + m->append_entries.n_entries;
		struct plog_slice s;
		uint32_t n = 0;
		int rv = plog_read_records(g->env.log, from, to, g->cfg.max_message_bytes, &s, &n);
		if (rv == 0 && (n == 0 || n > m->append_entries.n_entries))
			rv = -EIO;
		if (rv == 0 && n < m->append_entries.n_entries) {
			struct raft_message c = *m;
			c.append_entries.n_entries = n;
			rv = rmsg_encode_header(g->cfg.group_id, &c, hdr);
		}
		if (rv == 0)
			rv = rgroup__reserve(g, RMSG_HEADER_SIZE + s.bytes);
		if (rv == 0)
			rv = plog_slice_copy(&s, g->buf + RMSG_HEADER_SIZE);
		len += s.bytes;
		plog_slice_release(&s);
		if (rv != 0)
			return; /* dropped: libraft retries after the heartbeat timeout */
	} else if (rgroup__reserve(g, RMSG_HEADER_SIZE) != 0) {
		return;
	}
	memcpy(g->buf, hdr, RMSG_HEADER_SIZE);
	rgroup__send_bytes(g, m->server_id, g->buf, len);
}
