/*
 * rgroup — one Raft replica on libraft's raft_step API. See rgroup.h for the behaviour.
 *
 * The module's files share raft/rgroup_int.h: this one is the driver (carrying out an update, settling,
 * applying, opening and closing, receiving, ticking, submitting, membership changes and leadership
 * transfer); rgroup_io.c the log and the wire (plog appends, persistence reports, messages); rgroup_snap.c
 * snapshots and installs, with the crash argument for an interrupted install that rgroup.h refers to.
 *
 * Bytes: the log entries are plog records (partition/record.h: the envelope's index, term and type are the
 * entry's); the term and vote are rmeta records (raft/rmeta.c); messages are rmsg messages (raft/rmsg.c).
 * The bootstrap entry (index 1, term 1, type CHANGE) holds libraft's own encoding of the configuration
 * (raft_configuration_encode), which libraft decodes again at RAFT_START; it is not a Galgo format. The
 * data of an InstallSnapshot is specified in rgroup_snap.c.
 *
 * How a raft_update is carried out (libraft 0.22.1 raft_step contract; the order matters):
 *   1. current term and vote are written to rmeta synchronously, before anything else of the update, so no
 *      message of this step leaves before they are durable (dissertation Figure 3.1, persistent state);
 *   2. new entries: the plog is truncated at the first new index if it holds entries there (a conflict,
 *      Figure 3.1 AppendEntries receiver rule 3), then every entry is appended with its index and term; the
 *      batch memory is freed (it became ours) (rgroup__persist_entries, rgroup_io.c);
 *   3. messages are encoded and sent; an AppendEntries with entries is filled from the plog, which already
 *      holds every entry it names (they were appended in step 2 or earlier) (rgroup__send_message);
 *   4. a state change is reported to the owner;
 *   5. a new commit index is applied afterwards, outside the step (see rgroup__settle()).
 * Entries count as persisted only once their plog appends complete (rgroup_io.c: persistence reports).
 */
#include "raft/rgroup_int.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition/record.h"

#define APPLY_READ_BYTES (1u << 20)

void rgroup_config_default(struct rgroup_config *c)
{
	memset(c, 0, sizeof(*c));
	c->election_timeout_ms = 1000;
	c->heartbeat_timeout_ms = 100;
	c->max_inflight_entries = 32;
	c->max_pending_entries = 64;
	c->max_entry_bytes = 1u << 20;
	c->command_type = RECORD_COMMAND;
	c->max_pending_bytes = 64ull << 20;
	c->max_message_bytes = 1u << 20;
}

uint64_t rgroup__now(const struct rgroup *g)
{
	return g->env.now_ms(g->env.ud);
}

int rgroup__fail(struct rgroup *g, int rv)
{
	if (g->failed == 0)
		g->failed = rv < 0 ? rv : -EIO;
	return g->failed;
}

/* Maps a libraft error code to a negative errno. */
int rgroup__raft_errno(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case RAFT_NOMEM:
		return -ENOMEM;
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST:
		return -EPERM;
	case RAFT_NOSPACE:
		return -ENOSPC;
	case RAFT_CANTCHANGE:
	case RAFT_BUSY:
		return -EBUSY;
	case RAFT_MALFORMED:
		return -EBADMSG;
	case RAFT_INVALID:
		return -EINVAL;
	default:
		return -EIO; /* RAFT_SHUTDOWN: a conflict at or below the commit index, and the rest */
	}
}

static const char *peer_address(struct rgroup *g, uint64_t id, const char *known)
{
	for (size_t i = 0; i < g->n_peers; i++)
		if (g->peers[i].id == id)
			return g->peers[i].address;
	char tmp[32];
	if (known == NULL) {
		snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)id);
		known = tmp;
	}
	struct peer *v = realloc(g->peers, (g->n_peers + 1) * sizeof(*v));
	char *a = strdup(known);
	if (v != NULL)
		g->peers = v;
	if (v == NULL || a == NULL) {
		free(a);
		return "?";
	}
	g->peers[g->n_peers++] = (struct peer){id, a};
	return a;
}

void rgroup__learn_peers(struct rgroup *g, const struct raft_configuration *c)
{
	for (unsigned i = 0; i < c->n; i++)
		(void)peer_address(g, c->servers[i].id, c->servers[i].address);
}


/* Carries out an update, in the order of the header comment. Returns 0 or the failure. */
static int handle_update(struct rgroup *g, struct raft_update *u)
{
	int rv = 0;
	if (u->flags & (RAFT_UPDATE_CURRENT_TERM | RAFT_UPDATE_VOTED_FOR)) {
		rv = rmeta_set(g->env.meta, g->cfg.group_id, raft_current_term(&g->raft), raft_voted_for(&g->raft));
		if (rv != 0)
			rgroup__fail(g, rv);
	}
	if (u->flags & RAFT_UPDATE_SNAPSHOT)
		rgroup__install_start(g, &u->snapshot.metadata, u->snapshot.chunk);
	if (u->flags & RAFT_UPDATE_ENTRIES) {
		if (g->failed)
			rgroup__free_batches(u->entries.batch, u->entries.n);
		else if ((rv = rgroup__persist_entries(g, u->entries.index, u->entries.batch, u->entries.n)) != 0)
			rgroup__fail(g, rv);
	}
	if (g->failed)
		return g->failed; /* nothing leaves a failed group */
	if (u->flags & RAFT_UPDATE_MESSAGES)
		for (unsigned i = 0; i < u->messages.n; i++)
			rgroup__send_message(g, &u->messages.batch[i]);
	if ((u->flags & RAFT_UPDATE_STATE) && g->env.state != NULL) {
		g->in_cb = true;
		g->env.state(g->env.ud, raft_state(&g->raft), raft_current_term(&g->raft));
		g->in_cb = false;
	}
	return 0;
}

/* Steps one event and carries out its update. Returns 0 or a negative errno (libraft's error mapped). */
int rgroup__do_step(struct rgroup *g, struct raft_event *ev)
{
	struct raft_update u;
	memset(&u, 0, sizeof(u));
	ev->time = rgroup__now(g);
	ev->capacity = 0; /* no capacity threshold is set */
	g->depth++;
	int rv = raft_step(&g->raft, ev, &u);
	if (rv == 0)
		rv = handle_update(g, &u);
	else
		rv = rgroup__raft_errno(rv);
	g->depth--;
	return rv;
}

/* Applying. */

static int push_conf(struct rgroup *g, uint64_t index, const uint8_t *payload, uint32_t length)
{
	if (g->n_confs == g->cap_confs) {
		size_t cap = g->cap_confs ? g->cap_confs * 2 : 4;
		struct conf_event *v = realloc(g->confs, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		g->confs = v;
		g->cap_confs = cap;
	}
	struct conf_event *c = &g->confs[g->n_confs];
	raft_configuration_init(&c->conf);
	struct raft_buffer b = {(void *)payload, length};
	if (raft_configuration_decode(&b, &c->conf) != 0)
		return -EBADMSG;
	c->index = index;
	rgroup__learn_peers(g, &c->conf);
	g->n_confs++;
	return rgroup__hist_add(g, index, payload, length);
}

/* Applies committed entries from applied + 1, up to about APPLY_READ_BYTES of them. */
static int apply_some(struct rgroup *g, uint64_t to);

/* apply_some for config.apply_envelopes: envelopes from the log's index, no payloads. */
static int apply_envelopes(struct rgroup *g, uint64_t to)
{
	for (unsigned n = 0; g->applied < to && n < 4096; n++) {
		struct record_env env;
		int rv = plog_entry_at(g->env.log, g->applied + 1, &env);
		if (rv != 0)
			return rv;
		if (env.index != g->applied + 1)
			return -EBADMSG;
		if (env.type == RECORD_CHANGE)
			return apply_some(g, env.index); /* the configuration is needed: read it */
		g->applied = env.index;
		struct rgroup_entry e = {env.index, env.term, env.type, NULL, env.length, env.base_offset,
					 env.message_count};
		g->in_cb = true;
		g->env.apply(g->env.ud, &e);
		g->in_cb = false;
	}
	return 0;
}

static int apply_some(struct rgroup *g, uint64_t to)
{
	struct plog_slice s;
	uint32_t n = 0;
	int rv = plog_read_records(g->env.log, g->applied + 1, to, APPLY_READ_BYTES, &s, &n);
	uint8_t *buf = NULL;
	if (rv == 0 && n == 0)
		rv = -EIO;
	if (rv == 0 && (buf = malloc(s.bytes)) == NULL)
		rv = -ENOMEM;
	if (rv == 0)
		rv = plog_slice_copy(&s, buf);
	size_t bytes = s.bytes;
	plog_slice_release(&s);
	for (size_t at = 0; rv == 0 && at < bytes;) {
		struct record_env env;
		if (bytes - at < RECORD_ENVELOPE_SIZE || record_env_decode(buf + at, &env) != 0 ||
		    env.length > bytes - at - RECORD_ENVELOPE_SIZE || env.index != g->applied + 1 ||
		    record_payload_verify(&env, buf + at + RECORD_ENVELOPE_SIZE, env.length) != 0) {
			rv = -EBADMSG; /* a stored record fails its checksums: the replica must be repaired */
			break;
		}
		const uint8_t *payload = buf + at + RECORD_ENVELOPE_SIZE;
		/*
		 * Committed configurations are fed back to libraft (it has no state machine callbacks), which then
		 * treats the configuration as committed and allows the next change (dissertation §4.1: one change
		 * at a time, the next only after the previous one committed).
		 */
		if (env.type == RECORD_CHANGE && (rv = push_conf(g, env.index, payload, env.length)) != 0)
			break;
		g->applied = env.index;
		struct rgroup_entry e = {env.index, env.term, env.type, payload, env.length, env.base_offset,
					 env.message_count};
		g->in_cb = true;
		g->env.apply(g->env.ud, &e);
		g->in_cb = false;
		at += RECORD_ENVELOPE_SIZE + env.length;
	}
	free(buf);
	return rv;
}

/*
 * Ends the recovery of a replica that lost records (rgroup_config.recovering): once its commit index, as
 * its leader told it, names an entry of the current term that it durably holds. A leader's commit index
 * reaching an entry of its own term covers every entry committed in any earlier term (Leader
 * Completeness), and the replica holds the same log up to there (Log Matching), so whatever it may have
 * acknowledged before the loss is held again.
 */
static void recovery_check(struct rgroup *g)
{
	if (!g->recovering)
		return;
	if (raft_state(&g->raft) == RAFT_LEADER) {
		/* Elected (a group of one voter elects itself without asking anyone): it holds what is committed. */
		g->recovering = false;
		return;
	}
	if (raft_state(&g->raft) != RAFT_FOLLOWER)
		return;
	uint64_t c = raft_commit_index(&g->raft), term = raft_current_term(&g->raft), at = 0;
	if (c == 0 || g->durable < c)
		return;
	struct record_env env;
	if (plog_entry_at(g->env.log, c, &env) == 0)
		at = env.term;
	else if (g->have_snap && g->snap.index == c)
		at = g->snap.term;
	if (at != term)
		return;
	g->recovering = false;
	if (g->env.recovered != NULL)
		g->env.recovered(g->env.ud, c, term);
}

/*
 * Does what is left after an event: feeds back committed configurations, reports persisted entries and
 * applies committed ones ("once a follower learns that a log entry is committed, it applies the entry to
 * its local state machine (in log order)", dissertation §3.5), until none is left. Runs only in the
 * outermost call.
 */
void rgroup__settle(struct rgroup *g)
{
	if (g->depth > 0)
		return;
	assert(!g->in_cb); /* owner callbacks never reenter the group */
	g->depth++;
	while (!g->failed) {
		/* Installing or not, never half of it: the staged state exists only while an install runs. */
		assert(g->inst.active || (!g->inst.reset && g->inst.data == NULL && g->inst.next == 0));
		if (g->inst.active) {
			/* The log is being replaced: nothing is reported or applied until the install completes. */
			int rv = rgroup__install_progress(g);
			if (rv != 0)
				rgroup__fail(g, rv);
			if (g->inst.active)
				break;
			continue;
		}
		struct raft_event ev;
		memset(&ev, 0, sizeof(ev));
		uint64_t last = plog_last_index(g->env.log);
		if (last != raft_last_index(&g->raft)) {
			rgroup__fail(g, -EIO); /* the plog is the Raft log: they can never differ */
			break;
		}
		if (g->n_confs > 0) {
			ev.type = RAFT_CONFIGURATION;
			ev.configuration.index = g->confs[0].index;
			ev.configuration.conf = g->confs[0].conf; /* ownership passes to libraft */
			memmove(&g->confs[0], &g->confs[1], (g->n_confs - 1) * sizeof(*g->confs));
			g->n_confs--;
			g->depth--;
			int rv = rgroup__do_step(g, &ev);
			g->depth++;
			if (rv != 0)
				rgroup__fail(g, rv);
			continue;
		}
		if (g->durable > g->raft.last_stored && g->durable <= last) {
			struct record_env env;
			int rv = plog_entry_at(g->env.log, g->durable, &env);
			if (rv != 0 || env.term != g->durable_term) {
				rgroup__fail(g, rv != 0 ? rv : -EIO);
				break;
			}
			ev.type = RAFT_PERSISTED_ENTRIES;
			ev.persisted_entries.index = g->durable;
			g->depth--;
			rv = rgroup__do_step(g, &ev);
			g->depth++;
			if (rv != 0)
				rgroup__fail(g, rv);
			continue;
		}
		uint64_t commit = raft_commit_index(&g->raft);
		uint64_t to = commit < last ? commit : last;
		if (g->applied < to) {
			uint64_t was = g->applied;
			int rv = g->cfg.apply_envelopes ? apply_envelopes(g, to) : apply_some(g, to);
			/* Applying only moves forward, never past what is committed and held. */
			assert(g->applied >= was && g->applied <= to);
			if (rv != 0)
				rgroup__fail(g, rv);
			continue;
		}
		recovery_check(g);
		break;
	}
	g->depth--;
}

static void item_ready(struct flusher_item *it)
{
	struct rgroup *g = (struct rgroup *)((char *)it - offsetof(struct rgroup, item));
	rgroup__settle(g);
}

static void item_prepare(struct flusher_item *it)
{
	(void)it;
}

static int item_sync(struct flusher_item *it)
{
	(void)it;
	return 0;
}

static void item_done(struct flusher_item *it, int status)
{
	(void)it;
	(void)status;
}

/* Only `ready` is used: the item is deferred, never marked dirty. */
static const struct flusher_item_ops rgroup_item_ops = {item_prepare, item_sync, item_done, item_ready};

/* Opening. */

/*
 * Bootstraps an empty log (the caller checked it is empty and the persisted term is at most 1): term 1 is
 * made durable first, then entry 1 = RAFT_CHANGE of term 1 holding the configuration is appended. libraft
 * takes the entries given to RAFT_START as stored; entry 1 may still be in flight then, which is safe: it is
 * identical on every replica and committed by construction, and a replica that loses it to a power loss
 * restarts with an empty log and term 1 and bootstraps the same entry again (or receives it from a leader).
 */
static int bootstrap(struct rgroup *g, uint64_t voted_for)
{
	struct raft_buffer b;
	int rv = raft_configuration_encode(g->cfg.bootstrap, &b);
	if (rv != 0)
		return rgroup__raft_errno(rv);
	rv = rmeta_set(g->env.meta, g->cfg.group_id, 1, voted_for);
	if (rv == 0 && b.len > UINT32_MAX)
		rv = -EMSGSIZE;
	if (rv == 0)
		rv = rgroup__append_entry(g, 1, 1, RECORD_CHANGE, b.base, (uint32_t)b.len);
	raft_free(b.base);
	return rv;
}

/* Loads the entries' terms and types (and the payloads of CHANGE entries) for RAFT_START. */
static int load_entries(struct rgroup *g, struct raft_entry **out, unsigned *n_out)
{
	struct plog *log = g->env.log;
	uint64_t first = plog_first_index(log), last = plog_last_index(log);
	*out = NULL;
	*n_out = 0;
	if (last < first)
		return 0;
	if (last - first + 1 > UINT32_MAX)
		return -EFBIG;
	uint64_t count = last - first + 1;
	struct raft_entry *v = calloc(count, sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	int rv = 0;
	for (uint64_t i = first; rv == 0 && i <= last; i++) {
		struct record_env env;
		rv = plog_entry_at(log, i, &env);
		if (rv != 0)
			break;
		struct raft_entry *e = &v[i - first];
		e->term = env.term;
		e->type = env.type == RECORD_BARRIER ? RAFT_BARRIER : env.type == RECORD_CHANGE ? RAFT_CHANGE
												 : RAFT_COMMAND;
		if (env.type != RECORD_BARRIER && env.type != RECORD_CHANGE && env.type != g->cfg.command_type)
			rv = -EBADMSG;
		if (rv != 0 || env.type != RECORD_CHANGE)
			continue;
		/* libraft decodes the configuration of the last CHANGE entry. */
		struct plog_slice s;
		uint32_t n;
		rv = plog_read_records(log, i, i, UINT64_MAX, &s, &n);
		uint8_t *rec = NULL;
		if (rv == 0 && (n != 1 || s.bytes != RECORD_ENVELOPE_SIZE + (uint64_t)env.length))
			rv = -EIO;
		if (rv == 0 && (rec = raft_malloc(s.bytes)) == NULL)
			rv = -ENOMEM;
		if (rv == 0)
			rv = plog_slice_copy(&s, rec);
		plog_slice_release(&s);
		if (rv == 0 && record_payload_verify(&env, rec + RECORD_ENVELOPE_SIZE, env.length) != 0)
			rv = -EBADMSG;
		/* Applied configurations are remembered for snapshots; later ones are added as they are applied. */
		if (rv == 0 && i <= g->applied)
			rv = rgroup__hist_add(g, i, rec + RECORD_ENVELOPE_SIZE, env.length);
		if (rec != NULL) {
			e->batch = rec;
			e->buf.base = rec + RECORD_ENVELOPE_SIZE;
			e->buf.len = env.length;
		}
	}
	if (rv != 0) {
		rgroup__free_batches(v, (unsigned)count);
		free(v);
		return rv;
	}
	*out = v;
	*n_out = (unsigned)count;
	return 0;
}

/* What rgroup_open refuses before it allocates anything. */
static int open_check(const struct rgroup_config *cfg, const struct rgroup_env *env)
{
	if (cfg->group_id == 0 || cfg->node_id == 0 || env->log == NULL || env->meta == NULL || env->fl == NULL ||
	    env->now_ms == NULL || env->send == NULL || env->apply == NULL ||
	    (cfg->command_type != RECORD_COMMAND && cfg->command_type != RECORD_MESSAGES))
		return -EINVAL;
	if (cfg->snapshot_dir == NULL && plog_first_index(env->log) != 1)
		return -ENOTSUP; /* a compacted log starts from a snapshot */
	if (cfg->snapshot_dir != NULL && env->pio == NULL)
		return -EINVAL;
	return 0;
}

/*
 * Allocates the group, with its own copies of the configuration's strings and the defaults of the caps.
 * *out is NULL only when the group itself could not be allocated; otherwise the caller closes it on error.
 */
static int open_alloc(const struct rgroup_config *cfg, const struct rgroup_env *env, struct rgroup **out)
{
	struct rgroup *g = calloc(1, sizeof(*g));
	*out = g;
	if (g == NULL)
		return -ENOMEM;
	g->cfg = *cfg;
	g->cfg.bootstrap = NULL;
	g->env = *env;
	g->item.ops = &rgroup_item_ops;
	g->applied = cfg->applied_index;
	g->recovering = cfg->recovering;
	if (g->cfg.max_message_bytes == 0)
		g->cfg.max_message_bytes = 1u << 20;
	if (g->cfg.max_pending_bytes == 0)
		g->cfg.max_pending_bytes = 64ull << 20;
	g->address = strdup(cfg->address != NULL ? cfg->address : "");
	g->cfg.address = NULL;
	g->cfg.snapshot_dir = cfg->snapshot_dir != NULL ? strdup(cfg->snapshot_dir) : NULL;
	return g->address != NULL && (cfg->snapshot_dir == NULL || g->cfg.snapshot_dir != NULL) ? 0 : -ENOMEM;
}

/*
 * With a snapshot directory: adopts the persisted snapshot, if any, makes the log agree with it
 * (rgroup__reconcile) and hands it to the owner when the owner's state predates it.
 */
static int open_snapshot(struct rgroup *g)
{
	int rv = rsnap_read(g->env.pio, g->cfg.snapshot_dir, g->cfg.group_id, &g->snap);
	if (rv == 0) {
		struct rsnap copy = g->snap;
		memset(&g->snap, 0, sizeof(g->snap));
		rv = rgroup__snap_adopt(g, &copy);
		if (rv == 0)
			rv = rgroup__hist_add(g, g->snap.conf_index, g->snap.conf, g->snap.conf_len);
	} else if (rv == -ENOENT) {
		rv = 0;
	}
	if (rv == 0)
		rv = rgroup__reconcile(g);
	if (rv == 0 && g->have_snap && g->applied < g->snap.index) {
		/* The owner's state predates the snapshot (an install completed just before a crash). */
		if (g->env.restore != NULL)
			g->env.restore(g->env.ud, g->snap.index, g->snap.data, g->snap.data_len);
		g->applied = g->snap.index;
	}
	return rv;
}

/*
 * Reads the persisted term and vote (left as they are when there is no record) and bootstraps an empty
 * log when the configuration gives one (`boot`).
 */
static int open_term(struct rgroup *g, const struct raft_configuration *boot, uint64_t *term, uint64_t *vote)
{
	struct plog *log = g->env.log;
	int rv = 0;
	/*
	 * A log or snapshot without a term-and-vote record: the record was lost (raft.meta salvaged,
	 * rmeta_open_ex): this replica may have voted in a term it no longer knows, so it recovers
	 * (rgroup_config.recovering) before it votes again.
	 */
	if (rmeta_get(g->env.meta, g->cfg.group_id, term, vote) == -ENOENT &&
	    (plog_last_index(log) > 0 || g->have_snap))
		g->recovering = true;
	if (plog_last_index(log) == 0 && !g->have_snap && boot != NULL && *term <= 1) {
		g->cfg.bootstrap = boot;
		rv = bootstrap(g, *term == 1 ? *vote : 0);
		g->cfg.bootstrap = NULL;
		*term = 1;
		rgroup__learn_peers(g, boot);
	}
	return rv;
}

/*
 * Takes from the snapshot and the loaded entries the durable term, a current term at least theirs, and the
 * addresses of every configuration they hold.
 */
static void open_terms(struct rgroup *g, struct raft_entry *entries, unsigned n, uint64_t *term, uint64_t *vote)
{
	if (g->have_snap) {
		g->durable_term = g->snap.term;
		if (*term < g->snap.term) {
			*term = g->snap.term;
			*vote = 0;
		}
		struct raft_configuration c;
		struct raft_buffer b = {g->snap.conf, g->snap.conf_len};
		raft_configuration_init(&c);
		if (raft_configuration_decode(&b, &c) == 0)
			rgroup__learn_peers(g, &c);
		raft_configuration_close(&c);
	}
	if (n > 0) {
		g->durable_term = entries[n - 1].term;
		/*
		 * A log without a recorded term can only come from a lost term file; the last entry's term is a
		 * safe current term then: any vote this replica cast was recorded before it was sent.
		 */
		if (*term < entries[n - 1].term) {
			*term = entries[n - 1].term;
			*vote = 0;
		}
		for (unsigned i = 0; i < n; i++)
			if (entries[i].type == RAFT_CHANGE) {
				struct raft_configuration c;
				raft_configuration_init(&c);
				if (raft_configuration_decode(&entries[i].buf, &c) == 0)
					rgroup__learn_peers(g, &c);
				raft_configuration_close(&c);
			}
	}
}

/* Initialises libraft with the configured timeouts and steps RAFT_START (the entries are only read). */
static int open_raft(struct rgroup *g, uint64_t term, uint64_t vote, struct raft_entry *entries, unsigned n)
{
	const struct rgroup_config *cfg = &g->cfg;
	int rv = rgroup__raft_errno(raft_init(&g->raft, NULL, NULL, cfg->node_id, g->address));
	g->raft_open = rv == 0;
	if (rv != 0)
		return rv;
	/* raft_seed before the timeouts: setting the election timeout draws from the seeded generator. */
	raft_seed(&g->raft, cfg->seed != 0 ? cfg->seed : (unsigned)(cfg->node_id * 2654435761u + 1));
	raft_set_election_timeout(&g->raft, cfg->election_timeout_ms ? cfg->election_timeout_ms : 1000);
	raft_set_heartbeat_timeout(&g->raft, cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms : 100);
	raft_set_pre_vote(&g->raft, !cfg->no_pre_vote);
	raft_set_max_inflight_entries(&g->raft, cfg->max_inflight_entries ? cfg->max_inflight_entries : 32);
	unsigned et = cfg->election_timeout_ms ? cfg->election_timeout_ms : 1000;
	unsigned ist = cfg->install_snapshot_timeout_ms;
	raft_set_install_snapshot_timeout(&g->raft, ist ? ist : 10 * et);
	/*
	 * In the raft_step API libraft has no snapshot threshold or trailing count of its own: a snapshot
	 * exists only when the owner calls rgroup_snapshot, which steps RAFT_SNAPSHOT with its trailing.
	 */
	struct raft_snapshot_metadata meta;
	memset(&meta, 0, sizeof(meta));
	raft_configuration_init(&meta.configuration);
	if (g->have_snap) {
		meta.index = g->snap.index;
		meta.term = g->snap.term;
		meta.configuration_index = g->snap.conf_index;
		struct raft_buffer b = {g->snap.conf, g->snap.conf_len};
		rv = rgroup__raft_errno(raft_configuration_decode(&b, &meta.configuration));
	}
	struct raft_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = RAFT_START;
	ev.start.term = term;
	ev.start.voted_for = vote;
	ev.start.metadata = g->have_snap ? &meta : NULL; /* its configuration passes to libraft */
	ev.start.start_index = plog_first_index(g->env.log);
	ev.start.entries = entries;
	ev.start.n_entries = n;
	if (rv == 0)
		rv = rgroup__do_step(g, &ev);
	else
		raft_configuration_close(&meta.configuration);
	return rv;
}

int rgroup_open(const struct rgroup_config *cfg, const struct rgroup_env *env, struct rgroup **out)
{
	int rv = open_check(cfg, env);
	if (rv != 0)
		return rv;
	struct rgroup *g;
	rv = open_alloc(cfg, env, &g);
	if (g == NULL)
		return rv;
	if (rv == 0 && cfg->snapshot_dir != NULL)
		rv = open_snapshot(g);
	uint64_t term = 0, vote = 0;
	if (rv == 0)
		rv = open_term(g, cfg->bootstrap, &term, &vote);
	/* Everything in the log is the durable log of a previous run (plog_open recovered it). */
	g->durable = plog_last_index(g->env.log);
	struct raft_entry *entries = NULL;
	unsigned n = 0;
	if (rv == 0)
		rv = load_entries(g, &entries, &n);
	if (rv == 0) {
		open_terms(g, entries, n, &term, &vote);
		rv = open_raft(g, term, vote, entries, n);
	}
	/* libraft only read the entries during RAFT_START; they stay ours. */
	rgroup__free_batches(entries, n);
	free(entries);
	if (rv == 0) {
		rgroup__settle(g);
		rv = g->failed;
	}
	if (rv != 0) {
		rgroup_close(g);
		return rv;
	}
	*out = g;
	return 0;
}

void rgroup_close(struct rgroup *g)
{
	if (g == NULL)
		return;
	if (g->raft_open)
		raft_close(&g->raft, NULL);
	for (struct pending *p = g->pending; p != NULL; p = p->next)
		p->g = NULL;
	flusher_forget(g->env.fl, &g->item);
	for (size_t i = 0; i < g->n_confs; i++)
		raft_configuration_close(&g->confs[i].conf);
	free(g->confs);
	rgroup__install_free(g);
	if (g->have_snap)
		rsnap_free(&g->snap);
	free(g->wire);
	for (size_t i = 0; i < g->n_hist; i++)
		free(g->hist[i].buf);
	free(g->hist);
	free(g->pb);
	free((char *)g->cfg.snapshot_dir);
	for (size_t i = 0; i < g->n_peers; i++)
		free(g->peers[i].address);
	free(g->peers);
	free(g->buf);
	free(g->address);
	free(g);
}

int rgroup__enter(const struct rgroup *g)
{
	if (g->in_cb)
		return -EBUSY;
	return g->failed;
}

int rgroup_receive(struct rgroup *g, uint64_t from, const void *buf, size_t len)
{
	int rv = rgroup__enter(g);
	if (rv != 0)
		return rv;
	struct rmsg_decoded d;
	rv = rmsg_decode(buf, len, g->cfg.command_type, &d);
	if (rv == 0 && (d.group != g->cfg.group_id || from == g->cfg.node_id || from == 0)) {
		rmsg_discard(&d);
		rv = -EBADMSG;
	}
	if (rv != 0)
		return rv;
	if (d.kind == RMSG_FETCH) {
		rgroup__serve_fetch(g, from, &d.fetch);
		return 0;
	}
	if (d.kind == RMSG_FETCH_REPLY) {
		rv = rgroup__install_records(g, &d.fetch);
		if (rv == 0)
			rgroup__settle(g);
		return g->failed;
	}
	if (d.msg.type == RAFT_INSTALL_SNAPSHOT) {
		const struct raft_install_snapshot *is = &d.msg.install_snapshot;
		bool ok = rgroup__wire_ok(&is->data, is->last_index);
		/*
		 * While an install runs, libraft 0.22.1 drops a further InstallSnapshot without freeing its
		 * configuration and data (raft/README.md); it would be dropped anyway, so it is dropped here.
		 */
		if (!ok || g->inst.active || g->cfg.snapshot_dir == NULL) {
			rmsg_discard(&d);
			return ok ? 0 : -EBADMSG;
		}
	}
	/*
	 * Work around a libraft 0.22.1 liveness bug (raft/README.md): a leader probing a follower accepts a
	 * reordered, stale rejection of an index the follower has already acknowledged, sets next_index to
	 * match_index and then never sends it entries again. A rejection at or below the match index is stale
	 * (the follower acknowledged that entry, and a follower never drops an entry it acknowledged to the
	 * leader of this term), so it is dropped here, as libraft itself does in pipeline mode. Dropping a
	 * message is always safe in Raft.
	 */
	if (d.msg.type == RAFT_APPEND_ENTRIES_RESULT && d.msg.append_entries_result.rejected > 0 &&
	    raft_state(&g->raft) == RAFT_LEADER) {
		raft_index match = 0;
		if (raft_match_index(&g->raft, from, &match) == 0 && d.msg.append_entries_result.rejected <= match) {
			g->stale_rejections++;
			/*
			 * A follower that keeps rejecting below its match index with a log shorter than that index
			 * has lost its log (a node restarted with an empty data directory: outside Raft's model,
			 * which assumes durable state). libraft 0.22.1 cannot lower a match index, so this leader
			 * could never repair it; a new leader starts with no match index for anyone. So the
			 * leadership is handed to another voter, which then catches the follower up from scratch.
			 */
			bool shorter = d.msg.append_entries_result.last_log_index < match;
			if (!shorter || from != g->lost_peer) {
				g->lost_peer = shorter ? from : 0;
				g->lost_count = shorter ? 1 : 0;
			} else if (++g->lost_count >= 8 && raft_transferee(&g->raft) == 0) {
				g->lost_count = 0;
				const struct raft_configuration *c = &g->raft.configuration;
				for (unsigned i = 0; i < c->n; i++) {
					const struct raft_server *sv = &c->servers[i];
					if (sv->role == RAFT_VOTER && sv->id != g->cfg.node_id && sv->id != from) {
						if (rgroup_transfer(g, sv->id) == 0)
							g->lost_transfers++;
						break;
					}
				}
			}
			return 0;
		}
	}
	if (g->recovering && d.msg.type == RAFT_REQUEST_VOTE) {
		g->refused_votes++; /* rgroup_config.recovering: no vote from a replica that lost records */
		rmsg_discard(&d);
		return 0;
	}
	if ((g->recovering || g->no_campaign) && d.msg.type == RAFT_TIMEOUT_NOW) {
		/*
		 * A leadership transfer to a replica that may not campaign: libraft would start an election at
		 * once, without pre-vote, and bump this replica's term although its vote requests are dropped,
		 * which deposes the leader for nothing. Ignored: the transfer times out and the leader stays.
		 */
		rmsg_discard(&d);
		return 0;
	}
	/* On input, server_id and server_address name the sender. */
	d.msg.server_id = from;
	d.msg.server_address = peer_address(g, from, NULL);
	struct raft_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = RAFT_RECEIVE;
	ev.receive.message = &d.msg;
	/* rgroup__send_message completes libraft's rejection of an AppendEntries of an older term (stale_reject_to). */
	if (d.msg.type == RAFT_APPEND_ENTRIES && d.msg.append_entries.term < raft_current_term(&g->raft))
		g->stale_reject_to = from;
	rv = rgroup__do_step(g, &ev);
	g->stale_reject_to = 0;
	rmsg_release(&d);
	if (rv != 0)
		return rgroup__fail(g, rv);
	rgroup__settle(g);
	return g->failed;
}

uint64_t rgroup_timeout(const struct rgroup *g)
{
	uint64_t t = raft_timeout(&g->raft);
	if (g->inst.active && g->inst.next <= g->inst.meta.index && g->inst.deadline < t)
		t = g->inst.deadline;
	return t;
}

int rgroup_tick(struct rgroup *g)
{
	int rv = rgroup__enter(g);
	if (rv != 0)
		return rv;
	if (g->inst.active && g->inst.next <= g->inst.meta.index && rgroup__now(g) >= g->inst.deadline)
		rgroup__send_fetch(g); /* the last request or its reply was lost, or the leader changed */
	if (rgroup__now(g) < raft_timeout(&g->raft))
		return 0;
	struct raft_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = RAFT_TIMEOUT;
	rv = rgroup__do_step(g, &ev);
	if (rv != 0)
		return rgroup__fail(g, rv);
	rgroup__settle(g);
	return g->failed;
}

/* Uncommitted payload bytes this leader submitted in its term (entries of earlier terms are not counted). */
static uint64_t pending_bytes(struct rgroup *g)
{
	uint64_t commit = raft_commit_index(&g->raft), term = raft_current_term(&g->raft), sum = 0;
	size_t keep = 0;
	for (size_t i = 0; i < g->n_pb; i++)
		if (g->pb[i].index > commit && g->pb[i].term == term) {
			g->pb[keep++] = g->pb[i];
			sum += g->pb[i].len;
		}
	g->n_pb = keep;
	return sum;
}

/* Appends one entry of `type` holding a copy of payload (leader only; checks done by the caller). */
static int submit_entry(struct rgroup *g, enum raft_entry_type type, const void *payload, size_t length,
			uint64_t *index)
{
	uint64_t last = plog_last_index(g->env.log);
	if (g->n_pb == g->cap_pb) {
		size_t cap = g->cap_pb ? g->cap_pb * 2 : 16;
		struct pend_bytes *v = realloc(g->pb, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		g->pb = v;
		g->cap_pb = cap;
	}
	void *batch = raft_malloc(length > 0 ? length : 1);
	if (batch == NULL)
		return -ENOMEM;
	if (length > 0)
		memcpy(batch, payload, length);
	struct raft_entry e;
	memset(&e, 0, sizeof(e));
	e.term = raft_current_term(&g->raft);
	/* Only a leader submits, and its term is at least that of every entry in its log. */
	assert(raft_state(&g->raft) == RAFT_LEADER && e.term >= g->durable_term && e.term > 0);
	e.type = type;
	e.buf.base = batch;
	e.buf.len = length;
	e.batch = batch;
	struct raft_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = RAFT_SUBMIT;
	ev.submit.entries = &e;
	ev.submit.n = 1;
	g->depth++;
	struct raft_update u;
	memset(&u, 0, sizeof(u));
	ev.time = rgroup__now(g);
	int rv = raft_step(&g->raft, &ev, &u);
	if (rv != 0) {
		/* Refused before it was taken into the log: the batch is still ours. */
		g->depth--;
		raft_free(batch);
		return rgroup__raft_errno(rv);
	}
	rv = handle_update(g, &u);
	g->depth--;
	if (rv != 0)
		return rgroup__fail(g, rv);
	assert(plog_last_index(g->env.log) == last + 1); /* the entry was appended at once, after the last */
	g->pb[g->n_pb++] = (struct pend_bytes){last + 1, e.term, length};
	if (index != NULL)
		*index = last + 1;
	rgroup__settle(g);
	return g->failed;
}

int rgroup_submit(struct rgroup *g, const void *payload, uint32_t length, uint64_t *index)
{
	int rv = rgroup__enter(g);
	if (rv != 0)
		return rv;
	if (raft_state(&g->raft) != RAFT_LEADER || raft_transferee(&g->raft) != 0)
		return -EPERM;
	if (length > g->cfg.max_entry_bytes)
		return -EMSGSIZE;
	/*
	 * Bound memory and the work at risk: at most max_pending_entries entries and max_pending_bytes bytes
	 * are uncommitted (one entry is always accepted, however large, when nothing is pending).
	 */
	uint64_t last = plog_last_index(g->env.log);
	if (last - raft_commit_index(&g->raft) >= g->cfg.max_pending_entries)
		return -EAGAIN;
	uint64_t pb = pending_bytes(g);
	if (pb > 0 && pb + length > g->cfg.max_pending_bytes)
		return -EAGAIN;
	return submit_entry(g, RAFT_COMMAND, payload, length, index);
}

void rgroup_set_campaign(struct rgroup *g, bool allowed)
{
	g->no_campaign = !allowed;
}

int rgroup_barrier(struct rgroup *g)
{
	int rv = rgroup__enter(g);
	if (rv != 0)
		return rv;
	if (raft_state(&g->raft) != RAFT_LEADER || raft_transferee(&g->raft) != 0)
		return -EPERM;
	static const uint8_t zero[8];
	return submit_entry(g, RAFT_BARRIER, zero, sizeof(zero), NULL);
}

void rgroup_status(const struct rgroup *g, struct rgroup_status *st)
{
	struct raft *r = (struct raft *)&g->raft; /* libraft's getters take a non-const pointer */
	memset(st, 0, sizeof(*st));
	st->state = raft_state(r);
	st->term = raft_current_term(r);
	st->voted_for = raft_voted_for(r);
	raft_id id = 0;
	const char *addr = NULL;
	raft_leader(r, &id, &addr);
	st->leader_id = id;
	st->commit_index = raft_commit_index(r);
	st->applied_index = g->applied;
	st->last_index = plog_last_index(g->env.log);
	st->durable_index = g->durable;
	st->last_stored = r->last_stored;
	st->failed = g->failed;
	st->stale_rejections = g->stale_rejections;
	st->snapshot_index = g->have_snap ? g->snap.index : 0;
	st->installing = g->inst.active;
	st->installs = g->installs;
	st->fetched_records = g->fetched;
	st->served_records = g->served;
	st->max_message = g->max_message;
	st->recovering = g->recovering;
	st->refused_votes = g->refused_votes;
}

static int leader_enter(struct rgroup *g)
{
	int rv = rgroup__enter(g);
	if (rv != 0)
		return rv;
	if (raft_state(&g->raft) != RAFT_LEADER)
		return -EPERM;
	return 0;
}

static const struct raft_server *member(const struct rgroup *g, uint64_t id)
{
	const struct raft_configuration *c = &g->raft.configuration;
	for (unsigned i = 0; i < c->n; i++)
		if (c->servers[i].id == id)
			return &c->servers[i];
	return NULL;
}

/*
 * Submits the current configuration with `id` set to `role` (added with `address` if missing), or
 * removed when role < 0. One change at a time (dissertation §4.1).
 */
static int change(struct rgroup *g, uint64_t id, const char *address, int role)
{
	if (g->raft.configuration_uncommitted_index != 0)
		return -EBUSY;
	if (raft_transferee(&g->raft) != 0)
		return -EPERM;
	struct raft_configuration c;
	raft_configuration_init(&c);
	const struct raft_configuration *cur = &g->raft.configuration;
	int rv = 0;
	bool found = false;
	for (unsigned i = 0; rv == 0 && i < cur->n; i++) {
		const struct raft_server *sv = &cur->servers[i];
		if (sv->id == id) {
			found = true;
			if (role < 0)
				continue;
			rv = raft_configuration_add(&c, sv->id, sv->address, role);
		} else {
			rv = raft_configuration_add(&c, sv->id, sv->address, sv->role);
		}
	}
	if (rv == 0 && !found && role >= 0)
		rv = raft_configuration_add(&c, id, address, role);
	struct raft_buffer b = {NULL, 0};
	if (rv == 0)
		rv = raft_configuration_encode(&c, &b);
	raft_configuration_close(&c);
	if (rv != 0)
		return rgroup__raft_errno(rv);
	rv = submit_entry(g, RAFT_CHANGE, b.base, b.len, NULL);
	raft_free(b.base);
	return rv;
}

int rgroup_add(struct rgroup *g, uint64_t id, const char *address)
{
	int rv = leader_enter(g);
	if (rv != 0)
		return rv;
	if (id == 0)
		return -EINVAL;
	if (member(g, id) != NULL)
		return -EEXIST;
	char tmp[32];
	if (address == NULL) {
		snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)id);
		address = tmp;
	}
	(void)peer_address(g, id, address);
	return change(g, id, address, RAFT_STANDBY);
}

int rgroup_promote(struct rgroup *g, uint64_t id)
{
	int rv = leader_enter(g);
	if (rv != 0)
		return rv;
	const struct raft_server *sv = member(g, id);
	if (sv == NULL)
		return -ENOENT;
	if (sv->role == RAFT_VOTER)
		return -EALREADY;
	if (g->raft.configuration_uncommitted_index != 0)
		return -EBUSY;
	int status = RAFT_CATCH_UP_NONE;
	if (raft_catch_up(&g->raft, id, &status) != 0)
		return -ENOENT;
	if (status == RAFT_CATCH_UP_FINISHED)
		return change(g, id, NULL, RAFT_VOTER);
	if (status != RAFT_CATCH_UP_RUNNING) {
		/* libraft's catch-up rounds (dissertation §4.2.1): the new voter must not stall commitment. */
		struct raft_event ev;
		memset(&ev, 0, sizeof(ev));
		ev.type = RAFT_CATCH_UP;
		ev.catch_up.server_id = id;
		rv = rgroup__do_step(g, &ev);
		if (rv != 0)
			return rgroup__fail(g, rv);
		rgroup__settle(g);
		if (g->failed)
			return g->failed;
	}
	/*
	 * libraft 0.22.1 ends a round only when the promotee acknowledges a new entry (raft/README.md): a
	 * standby already up to date on an idle log would never finish. An empty barrier gives it one.
	 */
	raft_index match = 0;
	uint64_t last = plog_last_index(g->env.log);
	if (raft_match_index(&g->raft, id, &match) == 0 && match == last && raft_commit_index(&g->raft) == last) {
		static const uint8_t zero[8];
		rv = submit_entry(g, RAFT_BARRIER, zero, sizeof(zero), NULL);
		if (rv != 0 && rv != -EPERM && rv != -EBUSY)
			return rv;
	}
	return -EINPROGRESS;
}

int rgroup_remove(struct rgroup *g, uint64_t id)
{
	int rv = leader_enter(g);
	if (rv != 0)
		return rv;
	if (member(g, id) == NULL)
		return -ENOENT;
	return change(g, id, NULL, -1);
}

int rgroup_transfer(struct rgroup *g, uint64_t id)
{
	int rv = leader_enter(g);
	if (rv != 0)
		return rv;
	if (id != 0) {
		const struct raft_server *sv = member(g, id);
		if (sv == NULL || sv->role != RAFT_VOTER || id == g->cfg.node_id)
			return -ENOENT;
	}
	if (raft_transferee(&g->raft) != 0)
		return -EBUSY;
	struct raft_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = RAFT_TRANSFER;
	ev.transfer.server_id = id;
	rv = rgroup__do_step(g, &ev);
	if (rv == -EIO || rv == -ENOMEM)
		return rgroup__fail(g, rv);
	if (rv == 0)
		rgroup__settle(g);
	return rv != 0 ? rv : g->failed;
}

size_t rgroup_members(const struct rgroup *g, struct rgroup_member *out, size_t cap)
{
	const struct raft_configuration *c = &g->raft.configuration;
	for (unsigned i = 0; i < c->n && i < cap; i++)
		out[i] = (struct rgroup_member){c->servers[i].id, c->servers[i].role, c->servers[i].address};
	return c->n;
}

int rgroup_failed(const struct rgroup *g)
{
	return g->failed;
}

int rgroup_configuration(struct raft_configuration *conf, size_t n, const uint64_t *ids,
			 const char *const *addresses)
{
	raft_configuration_init(conf);
	for (size_t i = 0; i < n; i++) {
		char tmp[32];
		const char *a = addresses != NULL ? addresses[i] : NULL;
		if (a == NULL) {
			snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)ids[i]);
			a = tmp;
		}
		int rv = raft_configuration_add(conf, ids[i], a, RAFT_VOTER);
		if (rv != 0) {
			raft_configuration_close(conf);
			return rgroup__raft_errno(rv);
		}
	}
	return 0;
}
