/*
 * gcluster — the cluster-aware producer. See gcluster.h for the API and the retry rules.
 *
 * The bytes it decodes (the GetPartitionLeaders reply and the NotLeader body) are specified in
 * docs/protocol-extensions.md; this file owns no format of its own.
 *
 * State: the nodes (id, endpoint, connection, when a connection to it last failed), the map (entries
 * sorted by stream, topic, partition), a cache of stream/topic names resolved to ids, and a ring of
 * pipelined sends. Two kinds of distrust are kept apart: a node whose connection failed is "down" (it is
 * tried again after PROBE_MS, because a connection can break for reasons other than a crash), an entry
 * whose leader said NotLeader without naming a successor is "stale" (only a higher epoch clears it: the
 * node is alive and has stepped down, so a new election is certain to raise the term).
 */
#define _GNU_SOURCE
#include "client/gcluster.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/reply.h"
#include "proto/wire.h"

#define POLL_MS 20   /* map re-reads while no leader is usable */
#define PROBE_MS 200 /* a node whose connection failed is tried again after this */

struct node {
	uint32_t id;
	char host[256];
	uint16_t port;
	struct gclient *c;
	uint64_t failed_at; /* ms, 0: not down */
};

struct name {
	char *stream, *topic; /* NULL for a numeric identifier */
	uint32_t snum, tnum;
	uint32_t sid, tid;
};

enum pstate { P_ON_CONN, P_RETRY, P_DONE };

struct pending {
	struct wire_id stream, topic;
	uint32_t sid, tid, pid;
	uint32_t n;
	const void *const *payloads;
	const uint32_t *lens;
	const uint8_t (*ids)[16]; /* the caller's message ids, NULL: random ones per attempt */
	struct gcluster_send_report rep;
	enum pstate state;
	uint32_t node;
	uint32_t hops; /* already spent on this send */
	int rv;
	struct gclient_sent sent;
};

struct gcluster {
	struct gcluster_opts o;
	char *user, *pass;
	char **seeds;
	size_t n_seeds;
	struct gclient *ctl;
	uint32_t ctl_node; /* the node ctl is connected to, 0: a seed (see ctl_addr) */
	char ctl_addr[300];
	struct node *nodes;
	size_t n_nodes;
	struct gcluster_part *parts;
	size_t n_parts;
	struct name *names;
	size_t n_names;
	struct pending *q;
	size_t q_cap, q_head, q_len;
	uint32_t rr;
	struct gcluster_stats st;
	char err[512];
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

__attribute__((format(printf, 2, 3))) static void set_err(struct gcluster *gc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(gc->err, sizeof(gc->err), fmt, ap);
	va_end(ap);
}

static const char *errtext(int rv)
{
	static __thread char buf[96];
	return gclient_strerror(rv, buf, sizeof(buf));
}

/* ---- Nodes and connections ---- */

static struct node *node_find(struct gcluster *gc, uint32_t id)
{
	for (size_t i = 0; i < gc->n_nodes; i++)
		if (gc->nodes[i].id == id)
			return &gc->nodes[i];
	return NULL;
}

/* Adds a node or updates its endpoint (a changed endpoint drops the old connection). */
static struct node *node_put(struct gcluster *gc, uint32_t id, const char *host, size_t hlen, uint16_t port)
{
	if (id == 0 || hlen == 0 || hlen >= sizeof(gc->nodes[0].host) || port == 0)
		return NULL;
	struct node *n = node_find(gc, id);
	if (n == NULL) {
		struct node *nn = realloc(gc->nodes, (gc->n_nodes + 1) * sizeof(*nn));
		if (nn == NULL)
			return NULL;
		gc->nodes = nn;
		n = &gc->nodes[gc->n_nodes++];
		memset(n, 0, sizeof(*n));
		n->id = id;
	} else if (n->port == port && strlen(n->host) == hlen && memcmp(n->host, host, hlen) == 0) {
		return n;
	}
	gclient_close(n->c);
	n->c = NULL;
	memcpy(n->host, host, hlen);
	n->host[hlen] = '\0';
	n->port = port;
	return n;
}

static void node_addr(const struct node *n, char *buf, size_t len)
{
	snprintf(buf, len, strchr(n->host, ':') != NULL ? "[%s]:%u" : "%s:%u", n->host, (unsigned)n->port);
}

/* Connects to `addr` and logs in; redirect mode when asked. */
static int conn_open(struct gcluster *gc, const char *addr, bool redirect, struct gclient **out)
{
	struct gclient *c;
	int rv = gclient_connect(addr, &gc->o.conn, &c);
	if (rv != 0)
		return rv;
	gc->st.connects++;
	rv = gclient_login(c, gc->user, gc->pass);
	if (rv == 0 && redirect) {
		uint8_t mode = 1;
		rv = gclient_raw(c, GCLUSTER_CODE_SET_REDIRECT, &mode, 1, NULL, NULL);
	}
	if (rv != 0) {
		gclient_close(c);
		return rv;
	}
	*out = c;
	return 0;
}

static void node_failed(struct node *n)
{
	gclient_close(n->c);
	n->c = NULL;
	n->failed_at = mono_ms();
	if (n->failed_at == 0)
		n->failed_at = 1;
}

/* A down node is not used before PROBE_MS have passed since its failure. */
static bool node_usable(const struct node *n)
{
	return n->c != NULL || n->failed_at == 0 || mono_ms() - n->failed_at >= PROBE_MS;
}

/* The node's send connection (opened when missing or logged out by an eviction). */
static int node_conn(struct gcluster *gc, struct node *n, struct gclient **out)
{
	if (n->c != NULL && !gclient_logged_in(n->c)) {
		gclient_close(n->c);
		n->c = NULL;
	}
	if (n->c == NULL) {
		char addr[300];
		node_addr(n, addr, sizeof(addr));
		int rv = conn_open(gc, addr, true, &n->c);
		if (rv != 0) {
			node_failed(n);
			set_err(gc, "node %u (%s): %s", n->id, addr, errtext(rv));
			return rv;
		}
		n->failed_at = 0;
	}
	*out = n->c;
	return 0;
}

/* Opens the control connection: known nodes that are not down first, then the seeds, then the rest. */
static int ctl_ensure(struct gcluster *gc)
{
	if (gc->ctl != NULL && gclient_logged_in(gc->ctl))
		return 0;
	gclient_close(gc->ctl);
	gc->ctl = NULL;
	int rv = -EHOSTUNREACH;
	char addr[300];
	for (int pass = 0; pass < 3; pass++) {
		size_t n = pass == 1 ? gc->n_seeds : gc->n_nodes;
		for (size_t i = 0; i < n; i++) {
			struct node *nd = pass == 1 ? NULL : &gc->nodes[i];
			if (nd != NULL && (pass == 0) != (nd->failed_at == 0))
				continue;
			if (nd != NULL)
				node_addr(nd, addr, sizeof(addr));
			else
				snprintf(addr, sizeof(addr), "%s", gc->seeds[i]);
			rv = conn_open(gc, addr, false, &gc->ctl);
			if (rv == 0) {
				gc->ctl_node = nd != NULL ? nd->id : 0;
				snprintf(gc->ctl_addr, sizeof(gc->ctl_addr), "%s", addr);
				return 0;
			}
			if (nd != NULL)
				nd->failed_at = mono_ms();
			set_err(gc, "%s: %s", addr, errtext(rv));
		}
	}
	return rv;
}

/* The control connection broke: its node counts as down and the next use opens another. */
static void ctl_failed(struct gcluster *gc)
{
	struct node *cn = gc->ctl_node ? node_find(gc, gc->ctl_node) : NULL;
	for (size_t i = 0; cn == NULL && i < gc->n_nodes; i++) {
		char addr[300];
		node_addr(&gc->nodes[i], addr, sizeof(addr));
		if (strcmp(addr, gc->ctl_addr) == 0)
			cn = &gc->nodes[i]; /* a seed that is a node of the map */
	}
	if (cn != NULL)
		cn->failed_at = mono_ms() | 1;
	gclient_close(gc->ctl);
	gc->ctl = NULL;
}

/* ---- The map ---- */

static int part_cmp(const void *a, const void *b)
{
	const struct gcluster_part *x = a, *y = b;
	if (x->stream_id != y->stream_id)
		return x->stream_id < y->stream_id ? -1 : 1;
	if (x->topic_id != y->topic_id)
		return x->topic_id < y->topic_id ? -1 : 1;
	if (x->partition_id != y->partition_id)
		return x->partition_id < y->partition_id ? -1 : 1;
	return 0;
}

static struct gcluster_part *part_find(const struct gcluster *gc, uint32_t sid, uint32_t tid, uint32_t pid)
{
	struct gcluster_part key = {.stream_id = sid, .topic_id = tid, .partition_id = pid};
	return gc->n_parts ? bsearch(&key, gc->parts, gc->n_parts, sizeof(key), part_cmp) : NULL;
}

/* An entry changes only for a leader of a higher epoch (a new term's election). */
static void part_learn(struct gcluster_part *p, uint32_t leader, uint64_t epoch)
{
	if (leader != 0 && epoch > p->epoch) {
		p->leader = leader;
		p->epoch = epoch;
		p->stale = false;
	}
}

static bool part_usable(struct gcluster *gc, const struct gcluster_part *p)
{
	if (p == NULL || p->leader == 0 || p->stale)
		return false;
	struct node *n = node_find(gc, p->leader);
	return n != NULL && node_usable(n);
}

/* Merges one GetPartitionLeaders reply into the map. */
static int map_merge(struct gcluster *gc, const uint8_t *body, size_t len)
{
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	uint32_t nn = wire_get_u32(&r);
	for (uint32_t i = 0; i < nn && wire_rd_error(&r) == 0; i++) {
		struct reply_leaders_node n;
		if (reply_get_leaders_node(&r, &n) == 0)
			node_put(gc, n.id, (const char *)n.host.ptr, n.host.len, n.tcp);
	}
	wire_get_u32(&r); /* the metadata leader and its term: not used by a producer */
	wire_get_u64(&r);
	uint32_t np = wire_get_u32(&r);
	if (wire_rd_error(&r) != 0 || np > wire_rd_left(&r) / 25)
		return -EPROTO;
	size_t added = 0;
	struct gcluster_part *grown = realloc(gc->parts, (gc->n_parts + np + 1) * sizeof(*grown));
	if (grown == NULL)
		return -ENOMEM;
	gc->parts = grown;
	size_t old = gc->n_parts;
	for (uint32_t i = 0; i < np; i++) {
		struct gcluster_part p = {0};
		struct reply_leaders_part lp;
		if (reply_get_leaders_part(&r, &lp) != 0)
			return -EPROTO;
		p.stream_id = lp.stream_id;
		p.topic_id = lp.topic_id;
		p.partition_id = lp.partition_id;
		uint32_t leader = lp.leader;
		uint64_t epoch = lp.epoch;
		for (uint8_t k = 0; k < lp.replica_count && k < GCLUSTER_MAX_REPLICAS; k++)
			p.replicas[p.n_replicas++] = reply_leaders_part_replica(&lp, k);
		/* The old entries are still sorted: look there, append the new ones after them. */
		struct gcluster_part key = p, *e = old ? bsearch(&key, gc->parts, old, sizeof(key), part_cmp) : NULL;
		if (e == NULL) {
			e = &gc->parts[old + added++];
			*e = p;
		} else {
			memcpy(e->replicas, p.replicas, sizeof(p.replicas));
			e->n_replicas = p.n_replicas;
		}
		part_learn(e, leader, epoch);
	}
	if (wire_rd_done(&r) != 0)
		return -EPROTO;
	gc->n_parts = old + added;
	if (added > 0)
		qsort(gc->parts, gc->n_parts, sizeof(*gc->parts), part_cmp);
	return 0;
}

static int ask(struct gcluster *gc, struct gclient *c)
{
	const uint8_t *body;
	size_t len;
	int rv = gclient_raw(c, GCLUSTER_CODE_PARTITION_LEADERS, NULL, 0, &body, &len);
	if (rv == 0)
		rv = map_merge(gc, body, len);
	return rv;
}

static bool map_complete(struct gcluster *gc)
{
	for (size_t i = 0; i < gc->n_parts; i++)
		if (!part_usable(gc, &gc->parts[i]))
			return false;
	return true;
}

int gcluster_refresh(struct gcluster *gc)
{
	gc->st.refreshes++;
	int rv = -EHOSTUNREACH;
	bool answered = false;
	/* Idle send connections first (no login to pay), then the control connection. */
	for (size_t i = 0; i < gc->n_nodes && !(answered && map_complete(gc)); i++) {
		struct node *n = &gc->nodes[i];
		if (n->c == NULL || gclient_inflight(n->c) > 0 || !gclient_logged_in(n->c))
			continue;
		rv = ask(gc, n->c);
		if (rv < 0)
			node_failed(n);
		answered |= rv == 0;
	}
	if (!answered || !map_complete(gc)) {
		for (int attempt = 0; attempt < 2; attempt++) {
			int r2 = ctl_ensure(gc);
			if (r2 == 0)
				r2 = ask(gc, gc->ctl);
			if (r2 == 0) {
				answered = true;
				break;
			}
			rv = r2;
			if (r2 > 0)
				break;
			ctl_failed(gc);
		}
	}
	if (answered)
		return 0;
	set_err(gc, "cannot read the partition map: %s", errtext(rv));
	return rv;
}

size_t gcluster_partition_count(const struct gcluster *gc)
{
	return gc->n_parts;
}

const struct gcluster_part *gcluster_partition(const struct gcluster *gc, size_t i)
{
	return i < gc->n_parts ? &gc->parts[i] : NULL;
}

const struct gcluster_part *gcluster_lookup(const struct gcluster *gc, uint32_t stream_id, uint32_t topic_id,
					    uint32_t partition_id)
{
	return part_find(gc, stream_id, topic_id, partition_id);
}

bool gcluster_node_address(const struct gcluster *gc, uint32_t node_id, char *buf, size_t len)
{
	for (size_t i = 0; i < gc->n_nodes; i++)
		if (gc->nodes[i].id == node_id) {
			node_addr(&gc->nodes[i], buf, len);
			return true;
		}
	return false;
}

int gcluster_parse_not_leader(const uint8_t *body, size_t len, struct gcluster_not_leader *out)
{
	struct wire_rd r;
	struct reply_not_leader nl;
	wire_rd_init(&r, body, len);
	memset(out, 0, sizeof(*out));
	reply_get_not_leader(&r, &nl);
	if (wire_rd_done(&r) != 0 || nl.host.len >= sizeof(out->host))
		return -EPROTO;
	out->leader = nl.leader;
	out->epoch = nl.epoch;
	out->tcp_port = nl.tcp;
	if (nl.host.len > 0)
		memcpy(out->host, nl.host.ptr, nl.host.len);
	out->host[nl.host.len] = '\0';
	return 0;
}

/* ---- Open and close ---- */

int gcluster_open(const char *seeds, const struct gcluster_opts *opts, struct gcluster **out)
{
	if (seeds == NULL || *seeds == '\0')
		return -EINVAL;
	struct gcluster *gc = calloc(1, sizeof(*gc));
	if (gc == NULL)
		return -ENOMEM;
	if (opts != NULL)
		gc->o = *opts;
	if (gc->o.max_hops == 0)
		gc->o.max_hops = GCLUSTER_DEFAULT_HOPS;
	if (gc->o.leader_wait_ms <= 0)
		gc->o.leader_wait_ms = GCLUSTER_DEFAULT_LEADER_WAIT_MS;
	gc->user = strdup(gc->o.username ? gc->o.username : "iggy");
	gc->pass = strdup(gc->o.password ? gc->o.password : "iggy");
	char *list = strdup(seeds);
	int rv = gc->user && gc->pass && list ? 0 : -ENOMEM;
	char *save = NULL;
	for (char *s = list ? strtok_r(list, ",", &save) : NULL; s != NULL && rv == 0; s = strtok_r(NULL, ",", &save)) {
		char **ns = realloc(gc->seeds, (gc->n_seeds + 1) * sizeof(*ns));
		if (ns == NULL || (ns[gc->n_seeds] = strdup(s)) == NULL)
			rv = -ENOMEM;
		if (ns != NULL)
			gc->seeds = ns;
		if (rv == 0)
			gc->n_seeds++;
	}
	free(list);
	if (rv == 0 && gc->n_seeds == 0)
		rv = -EINVAL;
	if (rv == 0)
		rv = ctl_ensure(gc);
	if (rv == 0)
		rv = gcluster_refresh(gc);
	if (rv != 0) {
		gcluster_close(gc);
		return rv;
	}
	*out = gc;
	return 0;
}

void gcluster_close(struct gcluster *gc)
{
	if (gc == NULL)
		return;
	gclient_close(gc->ctl);
	for (size_t i = 0; i < gc->n_nodes; i++)
		gclient_close(gc->nodes[i].c);
	for (size_t i = 0; i < gc->n_seeds; i++)
		free(gc->seeds[i]);
	for (size_t i = 0; i < gc->n_names; i++) {
		free(gc->names[i].stream);
		free(gc->names[i].topic);
	}
	free(gc->names);
	free(gc->seeds);
	free(gc->nodes);
	free(gc->parts);
	free(gc->q);
	free(gc->user);
	free(gc->pass);
	free(gc);
}

struct gclient *gcluster_any(struct gcluster *gc)
{
	return ctl_ensure(gc) == 0 ? gc->ctl : NULL;
}

void gcluster_get_stats(const struct gcluster *gc, struct gcluster_stats *out)
{
	*out = gc->st;
}

const char *gcluster_last_error(const struct gcluster *gc)
{
	return gc->err;
}

/* ---- Routing ---- */

static bool id_matches(const struct wire_id *id, const char *name, uint32_t num)
{
	if (id->kind == WIRE_ID_NUMERIC)
		return name == NULL && num == id->num;
	return name != NULL && strlen(name) == id->name.len && memcmp(name, id->name.ptr, id->name.len) == 0;
}

static char *id_copy(const struct wire_id *id)
{
	if (id->kind == WIRE_ID_NUMERIC)
		return NULL;
	return strndup((const char *)id->name.ptr, id->name.len);
}

/* Stream and topic ids of the identifiers, resolved once through the control connection. */
static int resolve(struct gcluster *gc, const struct wire_id *stream, const struct wire_id *topic, uint32_t *sid,
		   uint32_t *tid)
{
	if (stream->kind == WIRE_ID_NUMERIC && topic->kind == WIRE_ID_NUMERIC) {
		*sid = stream->num;
		*tid = topic->num;
		return 0;
	}
	for (size_t i = 0; i < gc->n_names; i++) {
		const struct name *nm = &gc->names[i];
		if (id_matches(stream, nm->stream, nm->snum) && id_matches(topic, nm->topic, nm->tnum)) {
			*sid = nm->sid;
			*tid = nm->tid;
			return 0;
		}
	}
	struct gclient_stream s;
	struct gclient_topic t;
	int rv = -EHOSTUNREACH;
	/* A control connection that broke (its node died) is replaced by one to another node. */
	for (size_t attempt = 0; attempt <= gc->n_nodes + gc->n_seeds; attempt++) {
		rv = ctl_ensure(gc);
		if (rv == 0)
			rv = gclient_get_stream(gc->ctl, stream, &s);
		if (rv == 0)
			rv = gclient_get_topic(gc->ctl, stream, topic, &t, NULL, 0);
		if (rv >= 0)
			break;
		ctl_failed(gc);
	}
	if (rv != 0) {
		set_err(gc, "cannot resolve the stream and topic: %s", errtext(rv));
		return rv;
	}
	struct name *nn = realloc(gc->names, (gc->n_names + 1) * sizeof(*nn));
	if (nn == NULL)
		return -ENOMEM;
	gc->names = nn;
	struct name *nm = &gc->names[gc->n_names];
	*nm = (struct name){.stream = id_copy(stream), .topic = id_copy(topic), .snum = stream->num,
			    .tnum = topic->num, .sid = s.id, .tid = t.id};
	if ((stream->kind != WIRE_ID_NUMERIC && nm->stream == NULL) || (topic->kind != WIRE_ID_NUMERIC && nm->topic == NULL)) {
		free(nm->stream);
		free(nm->topic);
		return -ENOMEM;
	}
	gc->n_names++;
	*sid = s.id;
	*tid = t.id;
	return 0;
}

/* The partitions the map knows for a topic (its highest partition id + 1). */
static uint32_t topic_partitions(const struct gcluster *gc, uint32_t sid, uint32_t tid)
{
	uint32_t n = 0;
	for (size_t i = 0; i < gc->n_parts; i++)
		if (gc->parts[i].stream_id == sid && gc->parts[i].topic_id == tid && gc->parts[i].partition_id >= n)
			n = gc->parts[i].partition_id + 1;
	return n;
}

/* Fills the ids of a send; a Balanced partition becomes the next of the topic's, round robin. */
static int route(struct gcluster *gc, struct pending *e, uint32_t partition)
{
	int rv = resolve(gc, &e->stream, &e->topic, &e->sid, &e->tid);
	if (rv != 0)
		return rv;
	if (partition != GCLIENT_BALANCED) {
		e->pid = partition;
		return 0;
	}
	uint32_t n = topic_partitions(gc, e->sid, e->tid);
	if (n == 0) {
		gcluster_refresh(gc);
		n = topic_partitions(gc, e->sid, e->tid);
	}
	if (n == 0) {
		set_err(gc, "stream %u topic %u: no partitions in the map", e->sid, e->tid);
		return -ENOENT;
	}
	e->pid = gc->rr++ % n;
	return 0;
}

/* What a NotLeader reply teaches: the named leader if newer, else that the entry is not to be trusted. */
static void learn_not_leader(struct gcluster *gc, struct gclient *c, struct gcluster_part *p)
{
	const uint8_t *body;
	size_t len;
	struct gcluster_not_leader nl;
	gclient_last_reply(c, &body, &len);
	if (p == NULL)
		return;
	if (gcluster_parse_not_leader(body, len, &nl) == 0 && nl.leader != 0 && nl.epoch > p->epoch) {
		node_put(gc, nl.leader, nl.host, strlen(nl.host), nl.tcp_port);
		part_learn(p, nl.leader, nl.epoch);
	} else {
		p->stale = true;
	}
}

/* A failure that a retry may cure; updates the map and the connections accordingly. */
static bool retryable(struct gcluster *gc, struct node *n, struct gcluster_part *p, int rv)
{
	if (rv == GCLUSTER_NOT_LEADER) {
		learn_not_leader(gc, n->c, p);
		return true;
	}
	if (rv == GCLUSTER_NOT_ACCEPTED)
		return true;
	if (rv == 30 || rv == 40) { /* evicted (StaleClient) or logged out: log in again */
		gclient_close(n->c);
		n->c = NULL;
		return true;
	}
	if (rv < 0) {
		node_failed(n);
		return true;
	}
	return false;
}

/*
 * Records one request written to node `node` with result rv in the report (gcluster.h): the attempt it
 * replaces is unsettled unless its answer proved it was not admitted (58, 10058).
 */
static void note_attempt(struct gcluster_send_report *r, uint32_t node, int rv)
{
	if (r->attempts > 0 && r->last_rv != GCLUSTER_NOT_ACCEPTED && r->last_rv != GCLUSTER_NOT_LEADER)
		r->earlier_unsettled = true;
	r->attempts++;
	r->node = node;
	r->last_rv = rv;
}

/* One send, lock-step, with the retries of gcluster.h; e->hops counts those already spent. */
static int send_retrying(struct gcluster *gc, struct pending *e)
{
	uint64_t deadline = mono_ms() + (uint64_t)gc->o.leader_wait_ms;
	int last = 0;
	for (;;) {
		struct gcluster_part *p = part_find(gc, e->sid, e->tid, e->pid);
		if (!part_usable(gc, p)) {
			if (mono_ms() >= deadline) {
				if (p == NULL)
					set_err(gc, "stream %u topic %u partition %u is not in the partition map", e->sid, e->tid,
						e->pid);
				else
					set_err(gc, "stream %u topic %u partition %u: no usable leader within %d ms (last known: node %u, epoch %llu)",
						e->sid, e->tid, e->pid, gc->o.leader_wait_ms, p->leader, (unsigned long long)p->epoch);
				return p == NULL ? -ENOENT : -EHOSTUNREACH;
			}
			gcluster_refresh(gc);
			if (!part_usable(gc, part_find(gc, e->sid, e->tid, e->pid)))
				sleep_ms(POLL_MS);
			continue;
		}
		struct node *n = node_find(gc, p->leader);
		struct gclient *c;
		bool was_down = n->c == NULL && n->failed_at != 0;
		int rv = node_conn(gc, n, &c);
		if (rv < 0 && was_down)
			continue; /* a probe of a node already known down: still waiting, not a hop */
		if (rv == 0) {
			rv = gclient_send_ids(c, &e->stream, &e->topic, e->pid, e->n, e->payloads, e->lens, e->ids, &e->sent);
			note_attempt(&e->rep, n->id, rv);
		}
		if (rv == 0)
			return 0;
		uint32_t leader = p->leader;
		uint64_t epoch = p->epoch;
		if (!retryable(gc, n, p, rv)) {
			set_err(gc, "partition %u on node %u: %s", e->pid, leader, errtext(rv));
			return rv;
		}
		last = rv;
		if (rv == GCLUSTER_NOT_ACCEPTED) {
			/*
			 * The leader could not take the batch for now (a leadership transfer or an election running,
			 * too much uncommitted): not a redirect, so no hop; asked again after a pause, the map read
			 * again, until leader_wait_ms.
			 */
			if (mono_ms() >= deadline) {
				set_err(gc, "stream %u topic %u partition %u: node %u (epoch %llu) did not take the batch within %d ms: %s",
					e->sid, e->tid, e->pid, leader, (unsigned long long)epoch, gc->o.leader_wait_ms,
					errtext(last));
				return rv;
			}
			sleep_ms(POLL_MS);
			gcluster_refresh(gc);
			continue;
		}
		if (e->hops >= gc->o.max_hops) {
			set_err(gc, "stream %u topic %u partition %u: gave up after %u redirect hops (last: node %u, epoch %llu: %s)",
				e->sid, e->tid, e->pid, e->hops, leader, (unsigned long long)epoch, errtext(last));
			return -ELOOP;
		}
		e->hops++;
		gc->st.hops++;
	}
}

int gcluster_send(struct gcluster *gc, const struct wire_id *stream, const struct wire_id *topic, uint32_t partition,
		  uint32_t n, const void *const *payloads, const uint32_t *lens, struct gclient_sent *out)
{
	return gcluster_send_ids(gc, stream, topic, partition, n, payloads, lens, NULL, out, NULL);
}

int gcluster_send_ids(struct gcluster *gc, const struct wire_id *stream, const struct wire_id *topic,
		      uint32_t partition, uint32_t n, const void *const *payloads, const uint32_t *lens,
		      const uint8_t (*ids)[16], struct gclient_sent *out, struct gcluster_send_report *report)
{
	if (report != NULL)
		*report = (struct gcluster_send_report){0};
	if (gc->q_len > 0)
		return -EBUSY;
	if (n == 0 || payloads == NULL || lens == NULL || stream == NULL || topic == NULL)
		return -EINVAL;
	struct pending e = {.stream = *stream, .topic = *topic, .n = n, .payloads = payloads, .lens = lens, .ids = ids};
	int rv = route(gc, &e, partition);
	if (rv == 0)
		rv = send_retrying(gc, &e);
	if (rv == 0 && out != NULL)
		*out = e.sent;
	if (report != NULL)
		*report = e.rep;
	return rv;
}

uint32_t gcluster_control_node(const struct gcluster *gc)
{
	if (gc->ctl == NULL)
		return 0;
	if (gc->ctl_node != 0)
		return gc->ctl_node;
	for (size_t i = 0; i < gc->n_nodes; i++) {
		char addr[300];
		node_addr(&gc->nodes[i], addr, sizeof(addr));
		if (strcmp(addr, gc->ctl_addr) == 0)
			return gc->nodes[i].id; /* a seed that is a node of the map */
	}
	return 0;
}

/* ---- Pipelining ---- */

static struct pending *q_at(struct gcluster *gc, size_t i)
{
	assert(i < gc->q_cap && gc->q_len <= gc->q_cap); /* a ring of q_cap entries, q_len of them used */
	return &gc->q[(gc->q_head + i) % gc->q_cap];
}

/* Reads the reply of a send written on its leader's connection. */
static void collect(struct gcluster *gc, struct pending *e)
{
	struct node *n = node_find(gc, e->node);
	struct gcluster_part *p = part_find(gc, e->sid, e->tid, e->pid);
	int rv = n != NULL && n->c != NULL ? gclient_wait(n->c, &e->sent) : -ENOTCONN;
	if (rv == 0 || (rv > 0 && !retryable(gc, n, p, rv))) {
		e->rv = rv;
		e->state = P_DONE;
		return;
	}
	if (rv < 0 && n != NULL && n->c != NULL)
		node_failed(n);
	e->hops = 1;
	gc->st.hops++;
	e->state = P_RETRY;
}

/*
 * After a failure: every reply still outstanding is read first (no connection has a send in flight
 * afterwards, so the map can be read), then the failed sends go again in their original order.
 */
static void drain_and_retry(struct gcluster *gc)
{
	for (size_t i = 0; i < gc->q_len; i++) {
		struct pending *e = q_at(gc, i);
		if (e->state == P_ON_CONN)
			collect(gc, e);
	}
	for (size_t i = 0; i < gc->q_len; i++) {
		struct pending *e = q_at(gc, i);
		if (e->state == P_RETRY) {
			e->rv = send_retrying(gc, e);
			e->state = P_DONE;
		}
	}
}

int gcluster_send_async(struct gcluster *gc, const struct wire_id *stream, const struct wire_id *topic,
			uint32_t partition, uint32_t n, const void *const *payloads, const uint32_t *lens)
{
	if (n == 0 || payloads == NULL || lens == NULL || stream == NULL || topic == NULL)
		return -EINVAL;
	if (gc->q_len == gc->q_cap) {
		size_t cap = gc->q_cap ? gc->q_cap * 2 : 16;
		struct pending *nq = malloc(cap * sizeof(*nq));
		if (nq == NULL)
			return -ENOMEM;
		for (size_t i = 0; i < gc->q_len; i++)
			nq[i] = *q_at(gc, i);
		free(gc->q);
		gc->q = nq;
		gc->q_cap = cap;
		gc->q_head = 0;
	}
	struct pending *e = q_at(gc, gc->q_len);
	*e = (struct pending){.stream = *stream, .topic = *topic, .n = n, .payloads = payloads, .lens = lens};
	int rv = route(gc, e, partition);
	if (rv != 0)
		return rv;
	gc->q_len++;
	struct gcluster_part *p = part_find(gc, e->sid, e->tid, e->pid);
	struct node *nd = part_usable(gc, p) ? node_find(gc, p->leader) : NULL;
	struct gclient *c;
	if (nd != NULL && node_conn(gc, nd, &c) == 0 &&
	    gclient_send_async(c, &e->stream, &e->topic, e->pid, n, payloads, lens) == 0) {
		e->state = P_ON_CONN;
		e->node = nd->id;
		return 0;
	}
	/* No leader to write to right now: this one waits its turn behind the ones in flight. */
	if (nd != NULL && nd->c != NULL && gclient_inflight(nd->c) == 0)
		node_failed(nd);
	e->state = P_RETRY;
	drain_and_retry(gc);
	return 0;
}

int gcluster_wait(struct gcluster *gc, struct gclient_sent *out)
{
	if (gc->q_len == 0)
		return -EINVAL;
	struct pending *e = q_at(gc, 0);
	if (e->state == P_ON_CONN)
		collect(gc, e);
	if (e->state == P_RETRY)
		drain_and_retry(gc);
	/* Results are handed back in send order, each once settled. */
	assert(e->state == P_DONE);
	int rv = e->rv;
	if (rv == 0 && out != NULL)
		*out = e->sent;
	gc->q_head = (gc->q_head + 1) % gc->q_cap;
	gc->q_len--;
	return rv;
}

uint32_t gcluster_inflight(const struct gcluster *gc)
{
	return (uint32_t)gc->q_len;
}
