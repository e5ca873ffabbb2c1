/*
 * rgroup — one Raft replica on libraft's raft_step API. See rgroup.h for the behaviour.
 *
 * Bytes: the log entries are plog records (partition/record.h: the envelope's index, term and type are the
 * entry's); the term and vote are rmeta records (raft/rmeta.c); messages are rmsg messages (raft/rmsg.c).
 * The bootstrap entry (index 1, term 1, type CHANGE) holds libraft's own encoding of the configuration
 * (raft_configuration_encode), which libraft decodes again at RAFT_START; it is not a Galgo format.
 *
 * How a raft_update is carried out (libraft 0.22.1 raft_step contract; the order matters):
 *   1. current term and vote are written to rmeta synchronously, before anything else of the update, so no
 *      message of this step leaves before they are durable (dissertation Figure 3.1, persistent state);
 *   2. new entries: the plog is truncated at the first new index if it holds entries there (a conflict,
 *      Figure 3.1 AppendEntries receiver rule 3), then every entry is appended with its index and term; the
 *      batch memory is freed (it became ours);
 *   3. messages are encoded and sent; an AppendEntries with entries is filled from the plog, which already
 *      holds every entry it names (they were appended in step 2 or earlier);
 *   4. a state change is reported to the owner;
 *   5. a new commit index is applied afterwards, outside the step (see settle()).
 *
 * Persistence reports. A server persists new entries before they count towards their commitment
 * (dissertation §3.8), so an entry is reported to libraft (which then counts it for the leader's own
 * majority, or acknowledges it to the leader on a follower) only once its plog append has completed.
 * Each append completes through its plog callback, in append order. The highest index
 * completed without a truncation in between is `durable`; it is reported with RAFT_PERSISTED_ENTRIES when
 * it is above libraft's last_stored and the plog still holds that entry with the term it was appended with
 * (the "prefix whose terms still match" rule). A truncation lowers `durable` below the truncation point, as
 * libraft lowers last_stored, and cancels the appends it removes (their callbacks carry -ECANCELED).
 */
#include "raft/rgroup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition/record.h"
#include "raft/rmsg.h"

#define APPLY_READ_BYTES (1u << 20)

/* One plog append in flight. */
struct pending {
	struct plog_append_req req;
	struct rgroup *g; /* NULL once the group is closed: the callback then only frees this */
	uint64_t term;
	struct pending *prev, *next;
};

/* A committed configuration waiting to be stepped back as RAFT_CONFIGURATION. */
struct conf_event {
	uint64_t index;
	struct raft_configuration conf;
};

struct peer {
	uint64_t id;
	char *address; /* stable for the group's lifetime: libraft is given these pointers */
};

struct rgroup {
	struct raft raft;
	bool raft_open;
	struct rgroup_config cfg;
	char *address;
	struct rgroup_env env;
	struct flusher_item item; /* deferred persistence reports */
	struct pending *pending;
	uint64_t durable, durable_term;
	uint64_t applied;
	int failed;
	int depth;   /* > 0 while a step or settle runs: settle is then left to the outermost call */
	bool in_cb;  /* inside an owner callback: reentrant calls are refused */
	struct peer *peers;
	size_t n_peers;
	uint8_t *buf;
	size_t buf_cap;
	struct conf_event *confs;
	size_t n_confs, cap_confs;
	uint64_t stale_rejections;
};

void rgroup_config_default(struct rgroup_config *c)
{
	memset(c, 0, sizeof(*c));
	c->election_timeout_ms = 1000;
	c->heartbeat_timeout_ms = 100;
	c->max_inflight_entries = 32;
	c->max_pending_entries = 64;
	c->max_entry_bytes = 1u << 20;
	c->command_type = RECORD_COMMAND;
}

static uint64_t now(const struct rgroup *g)
{
	return g->env.now_ms(g->env.ud);
}

static int fail(struct rgroup *g, int rv)
{
	if (g->failed == 0)
		g->failed = rv < 0 ? rv : -EIO;
	return g->failed;
}

/* Maps a libraft error code to a negative errno. */
static int raft_errno(int rv)
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

static void learn_peers(struct rgroup *g, const struct raft_configuration *c)
{
	for (unsigned i = 0; i < c->n; i++)
		(void)peer_address(g, c->servers[i].id, c->servers[i].address);
}

static int reserve(struct rgroup *g, size_t n)
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
static void free_batches(struct raft_entry *entries, unsigned n)
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
			/* Callbacks come in append order, and a truncation cancels every later append. */
			if (req->index == g->durable + 1) {
				g->durable = req->index;
				g->durable_term = p->term;
			}
			flusher_defer(g->env.fl, &g->item);
		} else if (status != -ECANCELED) {
			fail(g, status);
		}
	}
	free(p);
}

static int append_entry(struct rgroup *g, uint64_t index, uint64_t term, uint8_t type, const void *payload,
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

/* Step 2 of an update (see the header comment). Always frees the batches. */
static int persist_entries(struct rgroup *g, uint64_t index, struct raft_entry *entries, unsigned n)
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
	}
	if (rv == 0 && index != plog_last_index(log) + 1)
		rv = -EIO;
	for (unsigned i = 0; rv == 0 && i < n; i++) {
		const struct raft_entry *e = &entries[i];
		if (e->buf.len > UINT32_MAX)
			rv = -EMSGSIZE;
		else
			rv = append_entry(g, index + i, e->term, record_type_of(g, e->type), e->buf.base,
					  (uint32_t)e->buf.len);
	}
	free_batches(entries, n);
	return rv;
}

/* Messages. */

static void send_message(struct rgroup *g, const struct raft_message *m)
{
	uint8_t hdr[RMSG_HEADER_SIZE];
	if (rmsg_encode_header(g->cfg.group_id, m, hdr) != 0)
		return; /* InstallSnapshot cannot occur: no snapshot is ever taken in this phase */
	size_t len = RMSG_HEADER_SIZE;
	if (m->type == RAFT_APPEND_ENTRIES && m->append_entries.n_entries > 0) {
		/* libraft names the entries (prev + 1 .. prev + n); their bytes come from our log. */
		uint64_t from = m->append_entries.prev_log_index + 1;
		uint64_t to = m->append_entries.prev_log_index + m->append_entries.n_entries;
		struct plog_slice s;
		uint32_t n = 0;
		int rv = plog_read_records(g->env.log, from, to, UINT64_MAX, &s, &n);
		if (rv == 0 && n != m->append_entries.n_entries)
			rv = -EIO;
		if (rv == 0)
			rv = reserve(g, RMSG_HEADER_SIZE + s.bytes);
		if (rv == 0)
			rv = plog_slice_copy(&s, g->buf + RMSG_HEADER_SIZE);
		len += s.bytes;
		plog_slice_release(&s);
		if (rv != 0)
			return; /* dropped: libraft retries after the heartbeat timeout */
	} else if (reserve(g, RMSG_HEADER_SIZE) != 0) {
		return;
	}
	memcpy(g->buf, hdr, RMSG_HEADER_SIZE);
	(void)g->env.send(g->env.ud, m->server_id, g->buf, len);
}

/* Carries out an update, in the order of the header comment. Returns 0 or the failure. */
static int handle_update(struct rgroup *g, struct raft_update *u)
{
	int rv = 0;
	if (u->flags & (RAFT_UPDATE_CURRENT_TERM | RAFT_UPDATE_VOTED_FOR)) {
		rv = rmeta_set(g->env.meta, g->cfg.group_id, raft_current_term(&g->raft), raft_voted_for(&g->raft));
		if (rv != 0)
			fail(g, rv);
	}
	if (u->flags & RAFT_UPDATE_SNAPSHOT) {
		/* Unreachable in this phase (no snapshot is ever taken); refuse rather than lose data. */
		raft_configuration_close(&u->snapshot.metadata.configuration);
		raft_free(u->snapshot.chunk.base);
		fail(g, -ENOTSUP);
	}
	if (u->flags & RAFT_UPDATE_ENTRIES) {
		if (g->failed)
			free_batches(u->entries.batch, u->entries.n);
		else if ((rv = persist_entries(g, u->entries.index, u->entries.batch, u->entries.n)) != 0)
			fail(g, rv);
	}
	if (g->failed)
		return g->failed; /* nothing leaves a failed group */
	if (u->flags & RAFT_UPDATE_MESSAGES)
		for (unsigned i = 0; i < u->messages.n; i++)
			send_message(g, &u->messages.batch[i]);
	if ((u->flags & RAFT_UPDATE_STATE) && g->env.state != NULL) {
		g->in_cb = true;
		g->env.state(g->env.ud, raft_state(&g->raft), raft_current_term(&g->raft));
		g->in_cb = false;
	}
	return 0;
}

/* Steps one event and carries out its update. Returns 0 or a negative errno (libraft's error mapped). */
static int do_step(struct rgroup *g, struct raft_event *ev)
{
	struct raft_update u;
	memset(&u, 0, sizeof(u));
	ev->time = now(g);
	ev->capacity = 0; /* no capacity threshold is set */
	g->depth++;
	int rv = raft_step(&g->raft, ev, &u);
	if (rv == 0)
		rv = handle_update(g, &u);
	else
		rv = raft_errno(rv);
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
	learn_peers(g, &c->conf);
	g->n_confs++;
	return 0;
}

/* Applies committed entries from applied + 1, up to about APPLY_READ_BYTES of them. */
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
		struct rgroup_entry e = {env.index, env.term, env.type, payload, env.length};
		g->in_cb = true;
		g->env.apply(g->env.ud, &e);
		g->in_cb = false;
		at += RECORD_ENVELOPE_SIZE + env.length;
	}
	free(buf);
	return rv;
}

/*
 * Does what is left after an event: feeds back committed configurations, reports persisted entries and
 * applies committed ones ("once a follower learns that a log entry is committed, it applies the entry to
 * its local state machine (in log order)", dissertation §3.5), until none is left. Runs only in the
 * outermost call.
 */
static void settle(struct rgroup *g)
{
	if (g->depth > 0)
		return;
	g->depth++;
	while (!g->failed) {
		struct raft_event ev;
		memset(&ev, 0, sizeof(ev));
		uint64_t last = plog_last_index(g->env.log);
		if (last != raft_last_index(&g->raft)) {
			fail(g, -EIO); /* the plog is the Raft log: they can never differ */
			break;
		}
		if (g->n_confs > 0) {
			ev.type = RAFT_CONFIGURATION;
			ev.configuration.index = g->confs[0].index;
			ev.configuration.conf = g->confs[0].conf; /* ownership passes to libraft */
			memmove(&g->confs[0], &g->confs[1], (g->n_confs - 1) * sizeof(*g->confs));
			g->n_confs--;
			g->depth--;
			int rv = do_step(g, &ev);
			g->depth++;
			if (rv != 0)
				fail(g, rv);
			continue;
		}
		if (g->durable > g->raft.last_stored && g->durable <= last) {
			struct record_env env;
			int rv = plog_entry_at(g->env.log, g->durable, &env);
			if (rv != 0 || env.term != g->durable_term) {
				fail(g, rv != 0 ? rv : -EIO);
				break;
			}
			ev.type = RAFT_PERSISTED_ENTRIES;
			ev.persisted_entries.index = g->durable;
			g->depth--;
			rv = do_step(g, &ev);
			g->depth++;
			if (rv != 0)
				fail(g, rv);
			continue;
		}
		uint64_t commit = raft_commit_index(&g->raft);
		uint64_t to = commit < last ? commit : last;
		if (g->applied < to) {
			int rv = apply_some(g, to);
			if (rv != 0)
				fail(g, rv);
			continue;
		}
		break;
	}
	g->depth--;
}

static void item_ready(struct flusher_item *it)
{
	struct rgroup *g = (struct rgroup *)((char *)it - offsetof(struct rgroup, item));
	settle(g);
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
		return raft_errno(rv);
	rv = rmeta_set(g->env.meta, g->cfg.group_id, 1, voted_for);
	if (rv == 0 && b.len > UINT32_MAX)
		rv = -EMSGSIZE;
	if (rv == 0)
		rv = append_entry(g, 1, 1, RECORD_CHANGE, b.base, (uint32_t)b.len);
	raft_free(b.base);
	return rv;
}

/* Loads the entries' terms and types (and the payloads of CHANGE entries) for RAFT_START. */
static int load_entries(struct rgroup *g, struct raft_entry **out, unsigned *n_out)
{
	struct plog *log = g->env.log;
	uint64_t last = plog_last_index(log);
	*out = NULL;
	*n_out = 0;
	if (last == 0)
		return 0;
	if (last > UINT32_MAX)
		return -EFBIG;
	struct raft_entry *v = calloc(last, sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	int rv = 0;
	for (uint64_t i = 1; rv == 0 && i <= last; i++) {
		struct record_env env;
		rv = plog_entry_at(log, i, &env);
		if (rv != 0)
			break;
		struct raft_entry *e = &v[i - 1];
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
		if (rec != NULL) {
			e->batch = rec;
			e->buf.base = rec + RECORD_ENVELOPE_SIZE;
			e->buf.len = env.length;
		}
	}
	if (rv != 0) {
		free_batches(v, (unsigned)last);
		free(v);
		return rv;
	}
	*out = v;
	*n_out = (unsigned)last;
	return 0;
}

int rgroup_open(const struct rgroup_config *cfg, const struct rgroup_env *env, struct rgroup **out)
{
	if (cfg->group_id == 0 || cfg->node_id == 0 || env->log == NULL || env->meta == NULL || env->fl == NULL ||
	    env->now_ms == NULL || env->send == NULL || env->apply == NULL ||
	    (cfg->command_type != RECORD_COMMAND && cfg->command_type != RECORD_MESSAGES))
		return -EINVAL;
	struct plog *log = env->log;
	if (plog_first_index(log) != 1)
		return -ENOTSUP; /* a compacted log starts from a snapshot: not in this phase */
	struct rgroup *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	g->cfg = *cfg;
	g->cfg.bootstrap = NULL;
	g->env = *env;
	g->item.ops = &rgroup_item_ops;
	g->applied = cfg->applied_index;
	g->address = strdup(cfg->address != NULL ? cfg->address : "");
	int rv = g->address != NULL ? 0 : -ENOMEM;
	uint64_t term = 0, vote = 0;
	if (rv == 0) {
		(void)rmeta_get(env->meta, cfg->group_id, &term, &vote);
		if (plog_last_index(log) == 0 && cfg->bootstrap != NULL && term <= 1) {
			g->cfg.bootstrap = cfg->bootstrap;
			rv = bootstrap(g, term == 1 ? vote : 0);
			g->cfg.bootstrap = NULL;
			term = 1;
			learn_peers(g, cfg->bootstrap);
		}
	}
	/* Everything in the log is the durable log of a previous run (plog_open recovered it). */
	g->durable = plog_last_index(log);
	struct raft_entry *entries = NULL;
	unsigned n = 0;
	if (rv == 0)
		rv = load_entries(g, &entries, &n);
	if (rv == 0 && n > 0) {
		g->durable_term = entries[n - 1].term;
		/*
		 * A log without a recorded term can only come from a lost term file; the last entry's term is a
		 * safe current term then: any vote this replica cast was recorded before it was sent.
		 */
		if (term < entries[n - 1].term) {
			term = entries[n - 1].term;
			vote = 0;
		}
		for (unsigned i = 0; i < n; i++)
			if (entries[i].type == RAFT_CHANGE) {
				struct raft_configuration c;
				raft_configuration_init(&c);
				if (raft_configuration_decode(&entries[i].buf, &c) == 0)
					learn_peers(g, &c);
				raft_configuration_close(&c);
			}
	}
	if (rv == 0) {
		rv = raft_errno(raft_init(&g->raft, NULL, NULL, cfg->node_id, g->address));
		g->raft_open = rv == 0;
	}
	if (rv == 0) {
		/* raft_seed before the timeouts: setting the election timeout draws from the seeded generator. */
		raft_seed(&g->raft, cfg->seed != 0 ? cfg->seed : (unsigned)(cfg->node_id * 2654435761u + 1));
		raft_set_election_timeout(&g->raft, cfg->election_timeout_ms ? cfg->election_timeout_ms : 1000);
		raft_set_heartbeat_timeout(&g->raft, cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms : 100);
		raft_set_pre_vote(&g->raft, !cfg->no_pre_vote);
		raft_set_max_inflight_entries(&g->raft, cfg->max_inflight_entries ? cfg->max_inflight_entries : 32);
		/*
		 * Snapshots never trigger in this phase. In the raft_step API libraft has no snapshot threshold or
		 * trailing count of its own (raft_set_snapshot_threshold/trailing only drive the legacy raft_io
		 * path): a snapshot exists only when the owner steps RAFT_SNAPSHOT, which rgroup never does. So the
		 * log is never compacted, every follower is caught up from the log by AppendEntries, and libraft
		 * never sends InstallSnapshot (rmsg could not encode it; handle_update refuses UPDATE_SNAPSHOT).
		 */
		struct raft_event ev;
		memset(&ev, 0, sizeof(ev));
		ev.type = RAFT_START;
		ev.start.term = term;
		ev.start.voted_for = vote;
		ev.start.metadata = NULL;
		ev.start.start_index = 1;
		ev.start.entries = entries;
		ev.start.n_entries = n;
		rv = do_step(g, &ev);
	}
	/* libraft only read the entries during RAFT_START; they stay ours. */
	free_batches(entries, n);
	free(entries);
	if (rv == 0) {
		settle(g);
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
	for (size_t i = 0; i < g->n_peers; i++)
		free(g->peers[i].address);
	free(g->peers);
	free(g->buf);
	free(g->address);
	free(g);
}

static int enter(const struct rgroup *g)
{
	if (g->in_cb)
		return -EBUSY;
	return g->failed;
}

int rgroup_receive(struct rgroup *g, uint64_t from, const void *buf, size_t len)
{
	int rv = enter(g);
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
			return 0;
		}
	}
	/* On input, server_id and server_address name the sender. */
	d.msg.server_id = from;
	d.msg.server_address = peer_address(g, from, NULL);
	struct raft_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = RAFT_RECEIVE;
	ev.receive.message = &d.msg;
	rv = do_step(g, &ev);
	rmsg_release(&d);
	if (rv != 0)
		return fail(g, rv);
	settle(g);
	return g->failed;
}

uint64_t rgroup_timeout(const struct rgroup *g)
{
	return raft_timeout(&g->raft);
}

int rgroup_tick(struct rgroup *g)
{
	int rv = enter(g);
	if (rv != 0)
		return rv;
	if (now(g) < raft_timeout(&g->raft))
		return 0;
	struct raft_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = RAFT_TIMEOUT;
	rv = do_step(g, &ev);
	if (rv != 0)
		return fail(g, rv);
	settle(g);
	return g->failed;
}

int rgroup_submit(struct rgroup *g, const void *payload, uint32_t length, uint64_t *index)
{
	int rv = enter(g);
	if (rv != 0)
		return rv;
	if (raft_state(&g->raft) != RAFT_LEADER || raft_transferee(&g->raft) != 0)
		return -EPERM;
	if (length > g->cfg.max_entry_bytes)
		return -EMSGSIZE;
	/* Bound memory and the work at risk: at most max_pending_entries entries are uncommitted. */
	uint64_t last = plog_last_index(g->env.log);
	if (last - raft_commit_index(&g->raft) >= g->cfg.max_pending_entries)
		return -EAGAIN;
	void *batch = raft_malloc(length > 0 ? length : 1);
	if (batch == NULL)
		return -ENOMEM;
	if (length > 0)
		memcpy(batch, payload, length);
	struct raft_entry e;
	memset(&e, 0, sizeof(e));
	e.term = raft_current_term(&g->raft);
	e.type = RAFT_COMMAND;
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
	ev.time = now(g);
	rv = raft_step(&g->raft, &ev, &u);
	if (rv != 0) {
		/* Refused before it was taken into the log: the batch is still ours. */
		g->depth--;
		raft_free(batch);
		return raft_errno(rv);
	}
	rv = handle_update(g, &u);
	g->depth--;
	if (rv != 0)
		return fail(g, rv);
	if (index != NULL)
		*index = last + 1;
	settle(g);
	return g->failed;
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
			return raft_errno(rv);
		}
	}
	return 0;
}
