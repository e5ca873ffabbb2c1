/*
 * cluster — the node's replication layer. See cluster.h.
 *
 * Timers: libraft in raft_step mode asks for an absolute wake-up time per group (rgroup_timeout). One
 * libuv timer serves all groups: a check handle, which runs once per loop iteration after the I/O
 * callbacks, finds the earliest wake-up among the groups and re-arms the timer for it; the timer's
 * callback ticks every group that is due. The scan is linear in the number of groups hosted here,
 * which is cheap at the partition counts measured so far (a heap replaces it when it shows up in a
 * profile).
 */
#include "node/cluster.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "node/clock.h"
#include "node/log.h"
#include "partition/record.h"
#include "raft/rmeta.h"
#include "raft/rmsg.h"
#include "transport/rnet.h"

#define TAG "cluster"
#define BUCKETS 1024u

struct clu_group {
	struct clu *c;
	uint64_t gid;
	struct rgroup *g;
	struct clu_group_ops ops;
	void *ud;
	struct clu_group *next; /* bucket chain */
	bool failed_logged;
};

struct handler {
	void (*fn)(void *ud, uint64_t from, const void *buf, size_t len);
	void *ud;
};

struct clu {
	uv_loop_t *loop;
	const struct galgo_config *cfg;
	struct pio *pio;
	struct flusher *fl;
	uint64_t node_id;
	struct clu_node nodes[CLU_MAX_NODES];
	size_t n_nodes;
	struct rnet *net;
	struct rmeta *rm;
	struct clu_group *buckets[BUCKETS];
	size_t n_groups;
	uv_timer_t timer;
	uv_check_t check;
	uint64_t armed; /* absolute ms the timer is armed for; 0: not armed */
	struct handler handlers[CLU_KIND_MAX];
	unsigned seed;
	struct clk clk;          /* the peers' clock offsets (node/clock.h) */
	bool draining;           /* clu_set_draining */
	uint64_t peer_draining_until[CLU_MAX_NODE_ID + 1]; /* ms: a peer's last STATE said draining, + 3 s */
};

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000u;
}

/* ---- Roster ---- */

/* A port; 0 (not served) is allowed for the client ports, not for the Raft port. */
static int parse_port(const char **p, uint16_t *out, bool zero_ok)
{
	char *end;
	unsigned long v = strtoul(*p, &end, 10);
	if (end == *p || (v == 0 && !zero_ok) || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	*p = end;
	return 0;
}

bool clu_host_valid(const char *h, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char ch = h[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

int clu_roster_parse(const char *s, struct clu_node *out, size_t max, char *err, size_t errlen)
{
	size_t n = 0;
	const char *p = s;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		if (n == max) {
			snprintf(err, errlen, "more than %zu nodes", max);
			return -EINVAL;
		}
		struct clu_node *nd = &out[n];
		memset(nd, 0, sizeof(*nd));
		char *end;
		unsigned long long id = strtoull(p, &end, 10);
		if (end == p || *end != '@' || id == 0 || id > CLU_MAX_NODE_ID) {
			snprintf(err, errlen, "node %zu: expected ID@HOST:RAFT_PORT with ID 1..%u", n + 1, CLU_MAX_NODE_ID);
			return -EINVAL;
		}
		nd->id = id;
		p = end + 1;
		const char *h = p;
		while (*p != '\0' && *p != ':' && *p != ',')
			p++;
		size_t hl = (size_t)(p - h);
		if (hl == 0 || hl >= sizeof(nd->host) || *p != ':') {
			snprintf(err, errlen, "node %llu: bad host", id);
			return -EINVAL;
		}
		if (!clu_host_valid(h, hl)) {
			snprintf(err, errlen, "node %llu: bad character in host", id);
			return -EINVAL;
		}
		memcpy(nd->host, h, hl);
		uint16_t *ports[4] = {&nd->raft_port, &nd->tcp_port, &nd->quic_port, &nd->http_port};
		for (int k = 0; k < 4 && *p == ':'; k++) {
			p++;
			if (parse_port(&p, ports[k], k > 0) != 0) {
				snprintf(err, errlen, "node %llu: bad port", id);
				return -EINVAL;
			}
		}
		if (*p != '\0' && *p != ',') {
			snprintf(err, errlen, "node %llu: unexpected '%c'", id, *p);
			return -EINVAL;
		}
		for (size_t i = 0; i < n; i++)
			if (out[i].id == nd->id) {
				snprintf(err, errlen, "node %llu listed twice", id);
				return -EINVAL;
			}
		n++;
	}
	if (n == 0) {
		snprintf(err, errlen, "empty roster");
		return -EINVAL;
	}
	/* Sorted by id: placement depends on the order, and every node must compute the same. */
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && out[k - 1].id > out[k].id; k--) {
			struct clu_node t = out[k];
			out[k] = out[k - 1];
			out[k - 1] = t;
		}
	return (int)n;
}

/* ---- Groups ---- */

static struct clu_group **bucket(struct clu *c, uint64_t gid)
{
	return &c->buckets[XXH3_64bits(&gid, sizeof(gid)) % BUCKETS];
}

static struct clu_group *find_group(struct clu *c, uint64_t gid)
{
	for (struct clu_group *g = *bucket(c, gid); g != NULL; g = g->next)
		if (g->gid == gid)
			return g;
	return NULL;
}

static uint64_t env_now(void *ud)
{
	(void)ud;
	return now_ms();
}

static int env_send(void *ud, uint64_t to, const void *buf, size_t len)
{
	struct clu_group *g = ud;
	if (g->c->net == NULL)
		return -ENOTCONN;
	return rnet_send(g->c->net, to, CLU_KIND_RAFT, buf, len);
}

static void env_apply(void *ud, const struct rgroup_entry *e)
{
	struct clu_group *g = ud;
	g->ops.apply(g->ud, e);
}

static void env_restore(void *ud, uint64_t index, const void *data, size_t len)
{
	struct clu_group *g = ud;
	glog_info(TAG, "group %" PRIx64 ": state restored from a snapshot through index %" PRIu64, g->gid, index);
	if (g->ops.restore != NULL)
		g->ops.restore(g->ud, index, data, len);
}

static void snap_dir(const struct clu *c, uint64_t gid, char *out, size_t n)
{
	snprintf(out, n, "%s/raft/snap/%016" PRIx64, c->cfg->node.data_dir, gid);
}

static void env_recovered(void *ud, uint64_t commit_index, uint64_t term)
{
	struct clu_group *g = ud;
	glog_info(TAG, "group %" PRIx64 ": caught up with its leader (commit index %" PRIu64 " of term %" PRIu64
		       "); it votes again", g->gid, commit_index, term);
}

static void env_state(void *ud, int state, uint64_t term)
{
	struct clu_group *g = ud;
	glog_debug(TAG, "group %" PRIx64 ": %s in term %" PRIu64, g->gid,
		   state == RAFT_LEADER ? "leader" : state == RAFT_CANDIDATE ? "candidate" : "follower", term);
	if (g->ops.state != NULL)
		g->ops.state(g->ud, state, term);
}

/* The address libraft's configuration records for a node (nodes are reached by id through rnet). */
static const char *node_address(uint64_t id, char *buf, size_t n)
{
	snprintf(buf, n, "node-%" PRIu64, id);
	return buf;
}

int clu_group_open(struct clu *c, uint64_t gid, struct plog *log, const uint64_t *ids, size_t n, bool bootstrap,
		   bool recovering, uint8_t command_type, uint64_t applied_index, bool apply_envelopes, const struct clu_group_ops *ops,
		   void *ud, struct clu_group **out)
{
	if (find_group(c, gid) != NULL)
		return -EEXIST;
	struct clu_group *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	g->c = c;
	g->gid = gid;
	g->ops = *ops;
	g->ud = ud;
	char addrs[CLU_MAX_NODES][32];
	const char *ap[CLU_MAX_NODES];
	if (n > CLU_MAX_NODES) {
		free(g);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		ap[i] = node_address(ids[i], addrs[i], sizeof(addrs[i]));
	struct raft_configuration conf;
	int rv = rgroup_configuration(&conf, n, ids, ap);
	if (rv != 0) {
		free(g);
		return rv;
	}
	struct rgroup_config rc;
	rgroup_config_default(&rc);
	char self[32];
	node_address(c->node_id, self, sizeof(self));
	rc.group_id = gid;
	rc.node_id = c->node_id;
	rc.address = self;
	rc.election_timeout_ms = c->cfg->cluster.election_timeout_ms;
	rc.heartbeat_timeout_ms = rc.election_timeout_ms / 10 > 0 ? rc.election_timeout_ms / 10 : 1;
	/*
	 * A partition's replicas wait (position in its placement + 1) quarters of the election timeout, at
	 * most a whole one: a new partition gets its preferred leader in a fraction of a second, and when a
	 * leader is lost the next replica in line campaigns first instead of all of them after a whole timeout
	 * (failover time). Pre-vote keeps an eager replica from disturbing a live leader.
	 */
	for (size_t i = 0; gid != CLU_META_GROUP && n > 1 && i < n && i < 3; i++) {
		unsigned t = rc.election_timeout_ms * (unsigned)(i + 1) / 4;
		if (ids[i] == c->node_id && t > 2 * rc.heartbeat_timeout_ms)
			rc.election_timeout_ms = t;
	}
	rc.seed = c->seed + (unsigned)gid * 2654435761u;
	rc.command_type = command_type;
	rc.applied_index = applied_index;
	rc.apply_envelopes = apply_envelopes;
	rc.max_pending_entries = 1024;
	rc.max_entry_bytes = 64u << 20;
	rc.bootstrap = bootstrap ? &conf : NULL;
	rc.recovering = recovering;
	char sdir[4200];
	snap_dir(c, gid, sdir, sizeof(sdir));
	rc.snapshot_dir = sdir;
	struct rgroup_env env = {.ud = g,
				 .pio = c->pio,
				 .restore = env_restore,
				 .now_ms = env_now,
				 .send = env_send,
				 .apply = env_apply,
				 .state = env_state,
				 .recovered = env_recovered,
				 .log = log,
				 .meta = c->rm,
				 .fl = c->fl};
	/* Registered before opening: a single voter elects itself and applies inside rgroup_open. */
	struct clu_group **b = bucket(c, gid);
	assert(find_group(c, gid) == NULL); /* one group per id on a node */
	g->next = *b;
	*b = g;
	c->n_groups++;
	rv = rgroup_open(&rc, &env, &g->g);
	raft_configuration_close(&conf);
	if (rv != 0) {
		*b = g->next;
		c->n_groups--;
		free(g);
		return rv;
	}
	*out = g;
	return 0;
}

void clu_group_close(struct clu_group *g, bool destroy)
{
	struct clu *c = g->c;
	assert(find_group(c, g->gid) == g && c->n_groups > 0); /* hosted here, once */
	for (struct clu_group **pp = bucket(c, g->gid); *pp != NULL; pp = &(*pp)->next)
		if (*pp == g) {
			*pp = g->next;
			break;
		}
	c->n_groups--;
	assert(find_group(c, g->gid) == NULL);
	rgroup_close(g->g);
	if (destroy) {
		rmeta_drop(c->rm, g->gid);
		clu_forget_snapshot(c, g->gid);
	}
	free(g);
}

void clu_forget_snapshot(struct clu *c, uint64_t gid)
{
	char dir[4200], path[4500];
	snap_dir(c, gid, dir, sizeof(dir));
	char **names;
	size_t n;
	if (pio_list(c->pio, dir, &names, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
			pio_unlink(c->pio, path);
		}
		pio_list_free(names, n);
		pio_rmdir(c->pio, dir);
	}
}

int clu_group_submit(struct clu_group *g, const void *payload, uint32_t len, uint64_t *index, uint64_t *term)
{
	struct rgroup_status st;
	rgroup_status(g->g, &st);
	int rv = rgroup_submit(g->g, payload, len, index);
	if (term != NULL)
		*term = st.term;
	return rv;
}

int clu_group_barrier(struct clu_group *g)
{
	return rgroup_barrier(g->g);
}

int clu_group_snapshot(struct clu_group *g, uint64_t index, uint64_t keep_from, const void *data, size_t len)
{
	return rgroup_snapshot(g->g, index, keep_from, data, len);
}

int clu_group_transfer(struct clu_group *g, uint64_t to)
{
	return rgroup_transfer(g->g, to);
}


int clu_group_add(struct clu_group *g, uint64_t id)
{
	char a[32];
	return rgroup_add(g->g, id, node_address(id, a, sizeof(a)));
}

int clu_group_promote(struct clu_group *g, uint64_t id)
{
	return rgroup_promote(g->g, id);
}

int clu_group_remove(struct clu_group *g, uint64_t id)
{
	return rgroup_remove(g->g, id);
}

size_t clu_group_members(const struct clu_group *g, struct rgroup_member *out, size_t cap)
{
	return rgroup_members(g->g, out, cap);
}

bool clu_networked(const struct clu *c)
{
	return c->net != NULL;
}

bool clu_connected(const struct clu *c, uint64_t node)
{
	return node == c->node_id || (c->net != NULL && rnet_connected(c->net, node));
}

uint64_t clu_silent_ms(const struct clu *c, uint64_t node)
{
	if (node == c->node_id)
		return 0;
	return c->net != NULL ? rnet_silent_ms(c->net, node) : UINT64_MAX;
}

int clu_group_failed(const struct clu_group *g)
{
	return rgroup_failed(g->g);
}

bool clu_group_leader(const struct clu_group *g)
{
	struct rgroup_status st;
	rgroup_status(g->g, &st);
	return st.state == RAFT_LEADER;
}

uint64_t clu_group_leader_id(const struct clu_group *g)
{
	struct rgroup_status st;
	rgroup_status(g->g, &st);
	return st.leader_id;
}

void clu_group_status(const struct clu_group *g, struct rgroup_status *st)
{
	rgroup_status(g->g, st);
}

uint64_t clu_group_id(const struct clu_group *g)
{
	return g->gid;
}

void clu_each_group(struct clu *c, void (*fn)(void *arg, struct clu_group *g), void *arg)
{
	for (size_t b = 0; b < BUCKETS; b++)
		for (struct clu_group *g = c->buckets[b], *next; g != NULL; g = next) {
			next = g->next;
			fn(arg, g);
		}
}

/* ---- Placement ---- */

uint64_t clu_partition_gid(uint32_t stream_id, uint32_t topic_id, uint64_t topic_created_us, uint32_t partition_id,
			   uint64_t partition_created_us)
{
	uint8_t k[28];
	memcpy(k, &stream_id, 4);
	memcpy(k + 4, &topic_id, 4);
	memcpy(k + 8, &topic_created_us, 8);
	memcpy(k + 16, &partition_id, 4);
	memcpy(k + 20, &partition_created_us, 8);
	return XXH3_64bits(k, sizeof(k)) | (1ull << 63);
}

/* ---- Network ---- */

/* ---- Clocks (node/clock.h; the CLOCK body is specified in cluster.h) ---- */

#define CLOCK_BODY 25

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void clock_send(struct clu *c, uint64_t to, uint8_t type, uint64_t a, uint64_t b, uint64_t w)
{
	uint8_t body[CLOCK_BODY];
	body[0] = type;
	record_put64(body + 1, a);
	record_put64(body + 9, b);
	record_put64(body + 17, w);
	uv_buf_t v = uv_buf_init((char *)body, sizeof(body));
	(void)clu_send(c, to, CLU_KIND_CLOCK, &v, 1);
}

static void clock_message(struct clu *c, uint64_t from, const uint8_t *b, size_t len)
{
	if (len != CLOCK_BODY)
		return;
	uint64_t a = record_le64(b + 1), m = record_le64(b + 9);
	if (b[0] == 0)
		clock_send(c, from, 1, a, m, wall_us()); /* answered at once, with our wall clock */
	else if (b[0] == 1)
		clk_sample(&c->clk, from, a, record_le64(b + 17), m, uv_hrtime() / 1000u);
}

void clu_clock_probe(struct clu *c)
{
	for (size_t i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].id != c->node_id && clu_connected(c, c->nodes[i].id))
			clock_send(c, c->nodes[i].id, 0, wall_us(), uv_hrtime() / 1000u, 0);
}

bool clu_clock_offset(const struct clu *c, uint64_t peer, int64_t *offset_us, uint64_t *error_us)
{
	return clk_offset(&c->clk, peer, uv_hrtime() / 1000u, offset_us, error_us);
}

bool clu_clock_skewed(const struct clu *c)
{
	uint64_t peers[CLU_MAX_NODES];
	unsigned n = 0;
	for (size_t i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].id != c->node_id)
			peers[n++] = c->nodes[i].id;
	return clk_skewed(&c->clk, peers, n, (unsigned)c->n_nodes, uv_hrtime() / 1000u);
}

bool clu_clock_disagrees(const struct clu *c, uint64_t peer)
{
	return clk_disagrees(&c->clk, peer, uv_hrtime() / 1000u);
}

void clu_group_set_campaign(struct clu_group *g, bool allowed)
{
	rgroup_set_campaign(g->g, allowed);
}

/* ---- Node state (STATE, specified in cluster.h) ---- */

#define DRAINING_HOLD_MS 3000u

void clu_state_tick(struct clu *c)
{
	uint8_t b = c->draining ? 1 : 0;
	for (size_t i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].id != c->node_id && clu_connected(c, c->nodes[i].id)) {
			uv_buf_t v = uv_buf_init((char *)&b, 1);
			(void)clu_send(c, c->nodes[i].id, CLU_KIND_STATE, &v, 1);
		}
}

void clu_set_draining(struct clu *c, bool draining)
{
	c->draining = draining;
	clu_state_tick(c);
}

bool clu_peer_draining(const struct clu *c, uint64_t peer)
{
	return peer <= CLU_MAX_NODE_ID && c->peer_draining_until[peer] > now_ms();
}

static void state_message(struct clu *c, uint64_t from, const uint8_t *b, size_t len)
{
	if (len != 1 || from > CLU_MAX_NODE_ID)
		return;
	c->peer_draining_until[from] = b[0] == 1 ? now_ms() + DRAINING_HOLD_MS : 0;
}

static void net_message(void *ud, uint64_t from, uint8_t kind, const void *buf, size_t len)
{
	struct clu *c = ud;
	if (kind == CLU_KIND_CLOCK) {
		clock_message(c, from, buf, len);
		return;
	}
	if (kind == CLU_KIND_STATE) {
		state_message(c, from, buf, len);
		return;
	}
	if (kind == CLU_KIND_RAFT) {
		uint64_t gid;
		if (rmsg_peek_group(buf, len, &gid) != 0)
			return;
		struct clu_group *g = find_group(c, gid);
		if (g == NULL)
			return; /* not (yet) hosted here: the sender retries */
		int rv = rgroup_receive(g->g, from, buf, len);
		/*
		 * -EBUSY: received inside one of this group's own callbacks (a nested loop iteration while an
		 * entry applies, e.g. a partition log closing waits for its flusher): dropped, which Raft allows;
		 * the group goes on. Anything else stops the group.
		 */
		if (rv != 0 && rv != -EBADMSG && rv != -EBUSY && !g->failed_logged) {
			g->failed_logged = true;
			glog_error(TAG, "group %" PRIx64 " stopped: %s", gid, strerror(-rv));
		}
		return;
	}
	if (kind < CLU_KIND_MAX && c->handlers[kind].fn != NULL)
		c->handlers[kind].fn(c->handlers[kind].ud, from, buf, len);
}

static void net_peer(void *ud, uint64_t peer, bool up)
{
	(void)ud;
	glog_info(TAG, "node %" PRIu64 " %s", peer, up ? "connected" : "disconnected");
}

void clu_on(struct clu *c, uint8_t kind, void (*fn)(void *ud, uint64_t from, const void *buf, size_t len), void *ud)
{
	if (kind < CLU_KIND_MAX) {
		c->handlers[kind].fn = fn;
		c->handlers[kind].ud = ud;
	}
}

int clu_send(struct clu *c, uint64_t to, uint8_t kind, const uv_buf_t *bufs, size_t n)
{
	if (c->net == NULL)
		return -ENOTCONN;
	return rnet_sendv(c->net, to, kind, bufs, n);
}

/* ---- Timer ---- */

struct tick_arg {
	uint64_t now, next;
};

static void tick_one(void *arg, struct clu_group *g)
{
	struct tick_arg *a = arg;
	if (rgroup_failed(g->g) != 0)
		return;
	if (rgroup_timeout(g->g) <= a->now) {
		int rv = rgroup_tick(g->g);
		if (rv != 0 && rv != -EBUSY && !g->failed_logged) { /* -EBUSY: inside its own callback, see above */
			g->failed_logged = true;
			glog_error(TAG, "group %" PRIx64 " stopped: %s", g->gid, strerror(-rv));
		}
	}
}

static void min_one(void *arg, struct clu_group *g)
{
	struct tick_arg *a = arg;
	if (rgroup_failed(g->g) != 0)
		return;
	uint64_t t = rgroup_timeout(g->g);
	if (a->next == 0 || t < a->next)
		a->next = t;
}

static void rearm(struct clu *c);

static void on_timer(uv_timer_t *t)
{
	struct clu *c = t->data;
	c->armed = 0;
	struct tick_arg a = {now_ms(), 0};
	clu_each_group(c, tick_one, &a);
	/*
	 * Re-armed here too, not only by the check handle: the check phase comes after the loop's poll, and
	 * a tick that sends nothing (a single-voter group's) leaves rnet's idle handle stopped, so the poll
	 * would block with no Raft timer until some I/O came, and the other groups' heartbeats would be
	 * late (followers then time out: seen with topics of replication factor 1).
	 */
	rearm(c);
}

static void on_check(uv_check_t *h)
{
	rearm(h->data);
}

/* Arms the timer for the earliest wake-up any group asks for, unless it is armed for that already. */
static void rearm(struct clu *c)
{
	struct tick_arg a = {now_ms(), 0};
	clu_each_group(c, min_one, &a);
	if (a.next == 0)
		return;
	if (c->armed != 0 && c->armed <= a.next)
		return;
	uint64_t delay = a.next > a.now ? a.next - a.now : 0;
	c->armed = a.next;
	uv_timer_start(&c->timer, on_timer, delay, 0);
}

/* ---- Life cycle ---- */

static void roster_load(struct clu *c);

/* Logs what rmeta_open_ex found damaged, a line per pair naming the groups its copies name. */
static void report_rmeta(const char *dir, const struct rmeta_report *rep, bool salvaged)
{
	for (size_t i = 0; i < rep->n && i < RMETA_MAX_DAMAGE; i++) {
		const struct rmeta_damage *d = &rep->d[i];
		char g[2][64];
		for (int k = 0; k < 2; k++) {
			if (d->groups[k] == 0)
				snprintf(g[k], sizeof(g[k]), "unreadable");
			else
				snprintf(g[k], sizeof(g[k]), "group %016" PRIx64 "%s", d->groups[k],
					 d->verified[k] ? "" : " (unverified)");
		}
		glog_error(TAG, "%s/%s: pair %" PRIu32 " (bytes %" PRIu64 " and %" PRIu64 "): %s; copy 0: %s, copy 1: %s%s",
			   dir, RMETA_FILE, d->pair, (uint64_t)d->pair * 1024u, (uint64_t)d->pair * 1024u + 512u, d->what,
			   g[0], g[1], salvaged ? "; dropped (salvage_votes): those groups recover before they vote" : "");
	}
	if (rep->n > RMETA_MAX_DAMAGE)
		glog_error(TAG, "%s/%s: %zu more damaged pairs", dir, RMETA_FILE, rep->n - RMETA_MAX_DAMAGE);
}

int clu_new(uv_loop_t *loop, const struct galgo_config *cfg, struct pio *pio, struct flusher *fl, struct clu **out)
{
	struct clu *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->loop = loop;
	c->cfg = cfg;
	c->pio = pio;
	c->fl = fl;
	c->node_id = cfg->node.id;
	c->seed = (unsigned)(uv_hrtime() ^ (cfg->node.id * 7919u));
	clk_init(&c->clk, (uint64_t)cfg->cluster.max_clock_offset_ms * 1000u);
	char err[256];
	if (cfg->cluster.nodes != NULL && cfg->cluster.nodes[0] != '\0') {
		int n = clu_roster_parse(cfg->cluster.nodes, c->nodes, CLU_MAX_NODES, err, sizeof(err));
		if (n < 0) {
			glog_error(TAG, "cluster.nodes: %s", err);
			free(c);
			return -EINVAL;
		}
		c->n_nodes = (size_t)n;
	} else {
		c->n_nodes = 1;
		c->nodes[0].id = c->node_id;
		snprintf(c->nodes[0].host, sizeof(c->nodes[0].host), "127.0.0.1");
	}
	const struct clu_node *self = clu_node(c, c->node_id);
	if (self == NULL) {
		glog_error(TAG, "cluster.nodes does not list this node's id %" PRIu64, c->node_id);
		free(c);
		return -EINVAL;
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/raft", cfg->node.data_dir);
	int rv = pio_mkdir(pio, dir);
	char sdir[4200];
	snprintf(sdir, sizeof(sdir), "%s/snap", dir);
	if (rv == 0)
		rv = pio_mkdir(pio, sdir);
	struct rmeta_report rep = {0};
	if (rv == 0) {
		rv = rmeta_open_ex(pio, dir, cfg->cluster.salvage_votes, &rep, &c->rm);
		report_rmeta(dir, &rep, cfg->cluster.salvage_votes);
	}
	if (rv != 0) {
		glog_error(TAG, "%s: %s", dir, strerror(-rv));
		if (rv == -EBADMSG && rep.n > 0)
			glog_error(TAG, "%s/%s holds damaged term-and-vote records (listed above). To go on, either put "
					"back a copy of that file from this node's own backup, or start once with "
					"--cluster.salvage_votes=true: the damaged records are dropped and each group "
					"named takes part again without voting until it has caught up with its leader",
				   dir, RMETA_FILE);
		free(c);
		return rv;
	}
	roster_load(c);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	/* Raft's timers alone do not keep the loop running: the listeners and connections do. */
	uv_unref((uv_handle_t *)&c->timer);
	uv_check_init(loop, &c->check);
	c->check.data = c;
	uv_check_start(&c->check, on_check);
	uv_unref((uv_handle_t *)&c->check);
	/* Mutual TLS between nodes is all three files or none: half a setting is a mistake, not "off". */
	int tls_set = (cfg->cluster.tls_ca != NULL && cfg->cluster.tls_ca[0] != '\0') +
		      (cfg->cluster.tls_cert != NULL && cfg->cluster.tls_cert[0] != '\0') +
		      (cfg->cluster.tls_key != NULL && cfg->cluster.tls_key[0] != '\0');
	if (tls_set != 0 && tls_set != 3) {
		glog_error(TAG, "cluster.tls_ca, cluster.tls_cert and cluster.tls_key must be set all three or none");
		clu_free(c);
		return -EINVAL;
	}
	bool secret = cfg->cluster.secret != NULL && cfg->cluster.secret[0] != '\0';
	if ((c->n_nodes > 1 || cfg->cluster.join) && !secret) {
		glog_error(TAG, "cluster.secret must be set when cluster.nodes lists more than one node or cluster.join is set");
		clu_free(c);
		return -EINVAL;
	}
	/*
	 * The node-to-node listener opens for a roster of more than one node, and for a roster of one node
	 * with a secret: such a node can take more nodes at runtime (AddNode).
	 */
	if (c->n_nodes > 1 || (secret && cfg->cluster.nodes != NULL && cfg->cluster.nodes[0] != '\0')) {
		struct rnet_config nc;
		rnet_config_default(&nc);
		char host[256] = "0.0.0.0";
		uint16_t port = self->raft_port;
		if (cfg->cluster.listen != NULL && cfg->cluster.listen[0] != '\0' &&
		    config_split_address(cfg->cluster.listen, host, sizeof(host), &port) != 0) {
			glog_error(TAG, "cluster.listen: not an IP:PORT address");
			clu_free(c);
			return -EINVAL;
		}
		nc.node_id = c->node_id;
		nc.max_message_bytes = CLU_MAX_MESSAGE_BYTES;
		nc.cluster = cfg->cluster.name;
		nc.secret = cfg->cluster.secret;
		nc.listen_host = host;
		nc.listen_port = port;
		if (tls_set == 3) {
			nc.tls_ca = cfg->cluster.tls_ca;
			nc.tls_cert = cfg->cluster.tls_cert;
			nc.tls_key = cfg->cluster.tls_key;
		}
		struct rnet_callbacks cb = {.ud = c, .on_message = net_message, .on_peer = net_peer};
		ERR_clear_error();
		rv = rnet_open(loop, &nc, &cb, &c->net);
		if (rv == -EIO && tls_set == 3) {
			/* rnet leaves OpenSSL's reason (a missing file, a key of another certificate) in its queue. */
			char why[256];
			ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
			glog_error(TAG, "cluster.tls_ca/tls_cert/tls_key (%s, %s, %s): cannot load: %s", cfg->cluster.tls_ca,
				   cfg->cluster.tls_cert, cfg->cluster.tls_key, why);
			ERR_clear_error();
			clu_free(c);
			return rv;
		}
		if (rv != 0) {
			glog_error(TAG, "node-to-node listener on %s:%u: %s", host, port, strerror(-rv));
			clu_free(c);
			return rv;
		}
		for (size_t i = 0; i < c->n_nodes; i++)
			if (c->nodes[i].id != c->node_id)
				rnet_add_peer(c->net, c->nodes[i].id, c->nodes[i].host, c->nodes[i].raft_port);
		glog_info(TAG, "node %" PRIu64 " of %zu; node-to-node on %s:%u (%s)", c->node_id, c->n_nodes, host,
			  rnet_port(c->net), nc.tls_ca != NULL ? "mutual TLS and the cluster secret" : "the cluster secret");
	}
	*out = c;
	return 0;
}

static void close_one(void *arg, struct clu_group *g)
{
	(void)arg;
	glog_warn(TAG, "group %" PRIx64 " still open at shutdown", g->gid);
	clu_group_close(g, false);
}

void clu_stop_network(struct clu *c)
{
	if (c != NULL && c->net != NULL) {
		rnet_close(c->net);
		c->net = NULL;
	}
}

void clu_free(struct clu *c)
{
	if (c == NULL)
		return;
	clu_each_group(c, close_one, NULL);
	clu_stop_network(c);
	if (c->rm != NULL)
		rmeta_close(c->rm);
	uv_close((uv_handle_t *)&c->check, NULL);
	uv_close((uv_handle_t *)&c->timer, NULL);
	/* The handles live in c: let libuv finish closing them before it goes. */
	uv_run(c->loop, UV_RUN_NOWAIT);
	free(c);
}

uint64_t clu_node_id(const struct clu *c)
{
	return c->node_id;
}

/* ---- The saved roster (<data_dir>/raft/roster, see cluster.h) ---- */

static void roster_path(const struct clu *c, char *out, size_t n, const char *suffix)
{
	snprintf(out, n, "%s/raft/roster%s", c->cfg->node.data_dir, suffix);
}

/* Writes the roster in cluster.nodes syntax: a temporary file, flushed, renamed over the old one. */
static void roster_save(struct clu *c)
{
	char text[CLU_MAX_NODES * 300], tmp[4200], path[4200], dir[4200];
	size_t at = 0;
	for (size_t i = 0; i < c->n_nodes && at < sizeof(text); i++) {
		const struct clu_node *nd = &c->nodes[i];
		at += (size_t)snprintf(text + at, sizeof(text) - at, "%s%" PRIu64 "@%s:%u:%u:%u:%u", i ? "," : "", nd->id,
				       nd->host, nd->raft_port, nd->tcp_port, nd->quic_port, nd->http_port);
	}
	if (at >= sizeof(text))
		return;
	text[at++] = '\n';
	roster_path(c, tmp, sizeof(tmp), ".tmp");
	roster_path(c, path, sizeof(path), "");
	snprintf(dir, sizeof(dir), "%s/raft", c->cfg->node.data_dir);
	struct pio_file *f;
	int rv = pio_open(c->pio, tmp, PIO_CREATE, &f);
	if (rv == 0) {
		struct iovec iov = {text, at};
		rv = pio_truncate(c->pio, f, 0);
		if (rv == 0)
			rv = pio_pwritev(c->pio, f, &iov, 1, 0);
		if (rv == 0)
			rv = pio_datasync(c->pio, f);
		pio_close(c->pio, f);
	}
	if (rv == 0)
		rv = pio_rename(c->pio, tmp, path);
	if (rv == 0)
		rv = pio_syncdir(c->pio, dir);
	if (rv != 0)
		glog_warn(TAG, "%s: the roster could not be saved: %s", path, strerror(-rv));
}

/*
 * Adds the saved roster's nodes that the configured one lacks: a node restarted after nodes were added at
 * runtime can reach them before it has applied the metadata again (which it needs their votes for).
 */
static void roster_load(struct clu *c)
{
	char path[4200], text[CLU_MAX_NODES * 300 + 1];
	roster_path(c, path, sizeof(path), "");
	struct pio_file *f;
	if (pio_open(c->pio, path, PIO_RDONLY, &f) != 0)
		return;
	ssize_t n = pio_pread(c->pio, f, text, sizeof(text) - 1, 0);
	pio_close(c->pio, f);
	if (n <= 0)
		return;
	text[n] = '\0';
	if (text[n - 1] == '\n')
		text[n - 1] = '\0';
	struct clu_node saved[CLU_MAX_NODES];
	char err[256];
	int k = clu_roster_parse(text, saved, CLU_MAX_NODES, err, sizeof(err));
	if (k < 0) {
		glog_warn(TAG, "%s ignored: %s", path, err);
		return;
	}
	for (int i = 0; i < k && c->n_nodes < CLU_MAX_NODES; i++) {
		if (clu_node(c, saved[i].id) != NULL)
			continue;
		size_t at = c->n_nodes++;
		while (at > 0 && c->nodes[at - 1].id > saved[i].id) {
			c->nodes[at] = c->nodes[at - 1];
			at--;
		}
		c->nodes[at] = saved[i];
		glog_info(TAG, "node %" PRIu64 " (%s:%u) from the saved roster", saved[i].id, saved[i].host,
			  saved[i].raft_port);
	}
}

int clu_set_nodes(struct clu *c, const struct clu_node *nodes, size_t n)
{
	if (n == 0 || n > CLU_MAX_NODES)
		return -EINVAL;
	struct clu_node next[CLU_MAX_NODES];
	size_t k = 0;
	bool self = false;
	for (size_t i = 0; i < n; i++) {
		if (nodes[i].id == 0 || (k > 0 && nodes[i].id <= next[k - 1].id))
			return -EINVAL; /* by increasing id */
		self |= nodes[i].id == c->node_id;
		next[k++] = nodes[i];
	}
	if (!self) {
		/* This node was removed: it keeps its own entry (it still answers clients until stopped). */
		if (k == CLU_MAX_NODES)
			return -EINVAL;
		const struct clu_node *me = clu_node(c, c->node_id);
		size_t at = k;
		while (at > 0 && next[at - 1].id > c->node_id) {
			next[at] = next[at - 1];
			at--;
		}
		next[at] = *me;
		k++;
	}
	if (c->net != NULL) {
		for (size_t i = 0; i < c->n_nodes; i++) {
			bool kept = false;
			for (size_t j = 0; j < k; j++)
				kept |= next[j].id == c->nodes[i].id;
			if (!kept && c->nodes[i].id != c->node_id)
				rnet_remove_peer(c->net, c->nodes[i].id);
		}
		for (size_t j = 0; j < k; j++)
			if (next[j].id != c->node_id)
				rnet_add_peer(c->net, next[j].id, next[j].host, next[j].raft_port);
	}
	bool changed = k != c->n_nodes || memcmp(c->nodes, next, k * sizeof(next[0])) != 0;
	memcpy(c->nodes, next, k * sizeof(next[0]));
	c->n_nodes = k;
	if (changed)
		roster_save(c);
	return 0;
}

size_t clu_nodes(const struct clu *c, const struct clu_node **nodes)
{
	*nodes = c->nodes;
	return c->n_nodes;
}

const struct clu_node *clu_node(const struct clu *c, uint64_t id)
{
	for (size_t i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].id == id)
			return &c->nodes[i];
	return NULL;
}
