/*
 * meta — the metadata state machine. Behaviour in meta.h.
 *
 * Consumer-group assignment: after every membership change (join, leave, a member's client gone) and
 * every change of the topic's partition count, partitions are dealt round-robin over the members in join
 * order (partition p goes to member p mod n) and the group's generation goes up by one. Every member
 * therefore learns a new assignment from SyncConsumerGroup; a member polling a partition it no longer owns
 * is fenced by the server.
 */
#include "node/meta.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct meta *meta_new(void)
{
	return calloc(1, sizeof(struct meta));
}

void meta_perms_free(struct meta_perms *p)
{
	if (p == NULL)
		return;
	for (uint32_t i = 0; i < p->n_streams; i++)
		free(p->streams[i].topics);
	free(p->streams);
	p->streams = NULL;
	p->n_streams = 0;
}

int meta_perms_copy(struct meta_perms *dst, const struct meta_perms *src)
{
	*dst = *src;
	dst->streams = NULL;
	dst->n_streams = 0;
	if (src->n_streams == 0)
		return 0;
	dst->streams = calloc(src->n_streams, sizeof(*dst->streams));
	if (dst->streams == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < src->n_streams; i++) {
		dst->streams[i] = src->streams[i];
		dst->streams[i].topics = NULL;
		dst->n_streams = i + 1;
		if (src->streams[i].n_topics > 0) {
			size_t n = src->streams[i].n_topics * sizeof(struct meta_perm_topic);
			dst->streams[i].topics = malloc(n);
			if (dst->streams[i].topics == NULL) {
				dst->streams[i].n_topics = 0;
				meta_perms_free(dst);
				return -ENOMEM;
			}
			memcpy(dst->streams[i].topics, src->streams[i].topics, n);
		}
	}
	return 0;
}

static void group_free(struct meta_group *g)
{
	if (g == NULL)
		return;
	for (uint32_t i = 0; i < g->n_members; i++)
		free(g->members[i].partitions);
	free(g->members);
	free(g);
}

static void topic_free(struct meta_topic *t)
{
	if (t == NULL)
		return;
	for (uint32_t i = 0; i < t->n_groups; i++)
		group_free(t->groups[i]);
	free(t->groups);
	free(t->partitions);
	free(t->offsets);
	free(t);
}

static void stream_free(struct meta_stream *s)
{
	if (s == NULL)
		return;
	for (uint32_t i = 0; i < s->n_topics; i++)
		topic_free(s->topics[i]);
	free(s->topics);
	free(s);
}

static void user_free(struct meta_user *u)
{
	if (u == NULL)
		return;
	free(u->password_hash);
	meta_perms_free(&u->perms);
	free(u->pats);
	free(u);
}

void meta_free(struct meta *m)
{
	if (m == NULL)
		return;
	for (uint32_t i = 0; i < m->n_streams; i++)
		stream_free(m->streams[i]);
	for (uint32_t i = 0; i < m->n_users; i++)
		user_free(m->users[i]);
	free(m->streams);
	free(m->users);
	free(m);
}

/* Lookups. */

static bool name_eq(const char *a, const char *b, size_t len)
{
	return strlen(a) == len && memcmp(a, b, len) == 0;
}

struct meta_stream *meta_stream(const struct meta *m, uint32_t id)
{
	return id < m->n_streams ? m->streams[id] : NULL;
}

struct meta_stream *meta_stream_by_name(const struct meta *m, const char *name, size_t len)
{
	for (uint32_t i = 0; i < m->n_streams; i++)
		if (m->streams[i] != NULL && name_eq(m->streams[i]->name, name, len))
			return m->streams[i];
	return NULL;
}

struct meta_topic *meta_topic(const struct meta_stream *s, uint32_t id)
{
	return id < s->n_topics ? s->topics[id] : NULL;
}

struct meta_topic *meta_topic_by_name(const struct meta_stream *s, const char *name, size_t len)
{
	for (uint32_t i = 0; i < s->n_topics; i++)
		if (s->topics[i] != NULL && name_eq(s->topics[i]->name, name, len))
			return s->topics[i];
	return NULL;
}

struct meta_group *meta_group(const struct meta_topic *t, uint32_t id)
{
	for (uint32_t i = 0; i < t->n_groups; i++)
		if (t->groups[i] != NULL && t->groups[i]->id == id)
			return t->groups[i];
	return NULL;
}

struct meta_group *meta_group_by_name(const struct meta_topic *t, const char *name, size_t len)
{
	for (uint32_t i = 0; i < t->n_groups; i++)
		if (t->groups[i] != NULL && name_eq(t->groups[i]->name, name, len))
			return t->groups[i];
	return NULL;
}

struct meta_user *meta_user(const struct meta *m, uint32_t id)
{
	return id < m->n_users ? m->users[id] : NULL;
}

struct meta_user *meta_user_by_name(const struct meta *m, const char *name, size_t len)
{
	for (uint32_t i = 0; i < m->n_users; i++)
		if (m->users[i] != NULL && name_eq(m->users[i]->username, name, len))
			return m->users[i];
	return NULL;
}

const struct meta_offset *meta_offset_get(const struct meta_topic *t, uint8_t kind, uint32_t consumer_id,
					  uint32_t partition_id)
{
	for (uint32_t i = 0; i < t->n_offsets; i++) {
		const struct meta_offset *o = &t->offsets[i];
		if (o->kind == kind && o->consumer_id == consumer_id && o->partition_id == partition_id)
			return o;
	}
	return NULL;
}

struct meta_member *meta_group_member(const struct meta_group *g, uint32_t client_id)
{
	for (uint32_t i = 0; i < g->n_members; i++)
		if (g->members[i].client_id == client_id)
			return &g->members[i];
	return NULL;
}

/* Slot arrays (streams, topics, users): the lowest free slot, growing by one if none is free. */
static int free_slot(void ***arr, uint32_t *n, uint32_t *slot)
{
	for (uint32_t i = 0; i < *n; i++)
		if ((*arr)[i] == NULL) {
			*slot = i;
			return 0;
		}
	void **a = realloc(*arr, (*n + 1) * sizeof(void *));
	if (a == NULL)
		return -ENOMEM;
	a[*n] = NULL;
	*arr = a;
	*slot = (*n)++;
	return 0;
}

static void set_name(char *dst, const char *src, size_t len)
{
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Group assignment. */

static int reassign(const struct meta_topic *t, struct meta_group *g)
{
	g->generation++;
	uint32_t n = g->n_members;
	for (uint32_t i = 0; i < n; i++) {
		struct meta_member *mb = &g->members[i];
		free(mb->partitions);
		mb->partitions = NULL;
		mb->n_partitions = 0;
		uint32_t cnt = t->n_partitions / n + (i < t->n_partitions % n ? 1 : 0);
		if (cnt == 0)
			continue;
		mb->partitions = malloc(cnt * sizeof(uint32_t));
		if (mb->partitions == NULL)
			return -ENOMEM;
		for (uint32_t p = i; p < t->n_partitions; p += n)
			mb->partitions[mb->n_partitions++] = p;
		assert(mb->n_partitions == cnt); /* round robin: member i holds i, i + n, ... and no partition twice */
	}
	return 0;
}

static void reassign_all(struct meta_topic *t)
{
	for (uint32_t i = 0; i < t->n_groups; i++)
		if (t->groups[i] != NULL)
			reassign(t, t->groups[i]);
}

static bool remove_member(struct meta_topic *t, struct meta_group *g, uint32_t client_id)
{
	for (uint32_t i = 0; i < g->n_members; i++) {
		if (g->members[i].client_id != client_id)
			continue;
		assert(meta_group_member(g, client_id) == &g->members[i]); /* a client is a member once */
		free(g->members[i].partitions);
		memmove(&g->members[i], &g->members[i + 1], (g->n_members - i - 1) * sizeof(*g->members));
		g->n_members--;
		reassign(t, g);
		return true;
	}
	return false;
}

/* Resolving the stream/topic a command names. */

static int get_topic(struct meta *m, const struct meta_cmd *c, struct meta_stream **s, struct meta_topic **t)
{
	*s = meta_stream(m, c->stream_id);
	if (*s == NULL)
		return PROTO_E_STREAM_ID_NOT_FOUND;
	*t = meta_topic(*s, c->topic_id);
	if (*t == NULL)
		return PROTO_E_TOPIC_ID_NOT_FOUND;
	return META_OK;
}

/* splitmix64's finalizer: spreads the first replica of consecutive topics over the nodes. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/*
 * Placement of a new partition: rf consecutive nodes of the table (by id), starting at a position that
 * is the topic's hash plus the partition id, so a topic's partitions (and their preferred leaders) rotate
 * over the nodes. rf: the topic's, else the cluster's default, at most the node count.
 */
static void place(const struct meta *m, const struct meta_topic *t, uint32_t pid, struct meta_partition *p)
{
	p->n_replicas = 0;
	p->moved = false;
	if (m->n_nodes == 0)
		return;
	uint32_t rf = t->replication_factor ? t->replication_factor : (m->default_rf ? m->default_rf : 1);
	if (rf > m->n_nodes)
		rf = m->n_nodes;
	if (rf > META_MAX_REPLICAS)
		rf = META_MAX_REPLICAS;
	uint64_t h = mix64(((uint64_t)t->stream_id << 32 | t->id) ^ mix64(t->created_at));
	uint32_t start = (uint32_t)((h + pid) % m->n_nodes);
	for (uint32_t i = 0; i < rf; i++)
		p->replicas[p->n_replicas++] = m->nodes[(start + i) % m->n_nodes].id;
	assert(p->n_replicas >= 1 && p->n_replicas <= m->n_nodes); /* distinct nodes, at least one */
}

static int resize_partitions(const struct meta *m, struct meta_topic *t, uint32_t n, uint64_t ts)
{
	if (n > t->n_partitions) {
		struct meta_partition *p = realloc(t->partitions, n * sizeof(*p));
		if (p == NULL)
			return -ENOMEM;
		for (uint32_t i = t->n_partitions; i < n; i++) {
			memset(&p[i], 0, sizeof(p[i]));
			p[i].created_at = ts;
			place(m, t, i, &p[i]);
		}
		t->partitions = p;
	}
	/* Offsets of removed partitions go with them. */
	uint32_t k = 0;
	for (uint32_t i = 0; i < t->n_offsets; i++)
		if (t->offsets[i].partition_id < n)
			t->offsets[k++] = t->offsets[i];
	t->n_offsets = k;
	t->n_partitions = n;
	reassign_all(t);
	return 0;
}

bool meta_partition_hosts(const struct meta_partition *p, uint32_t id)
{
	for (uint32_t i = 0; i < p->n_replicas; i++)
		if (p->replicas[i] == id)
			return true;
	return false;
}

const struct meta_node *meta_node(const struct meta *m, uint32_t id)
{
	for (uint32_t i = 0; i < m->n_nodes; i++)
		if (m->nodes[i].id == id)
			return &m->nodes[i];
	return NULL;
}

/* ---- Cluster membership ---- */

static bool node_valid(const struct meta_node *n)
{
	return n->id >= 1 && n->id <= META_MAX_NODE_ID && n->host[0] != '\0' &&
	       memchr(n->host, '\0', sizeof(n->host)) != NULL;
}

/* Inserts a node keeping the table sorted by id. */
static int node_insert(struct meta *m, const struct meta_node *n)
{
	if (!node_valid(n))
		return PROTO_E_INVALID_OPTION_VALUE;
	if (meta_node(m, n->id) != NULL)
		return PROTO_E_NODE_EXISTS;
	if (m->n_nodes == META_MAX_NODES)
		return PROTO_E_NODE_LIMIT;
	uint32_t at = m->n_nodes;
	while (at > 0 && m->nodes[at - 1].id > n->id) {
		m->nodes[at] = m->nodes[at - 1];
		at--;
	}
	m->nodes[at] = *n;
	/* Client addresses come only from the node itself (NODE_ADVERTISE). */
	m->nodes[at].adv_host[0] = '\0';
	m->nodes[at].adv_tcp_port = m->nodes[at].adv_quic_port = m->nodes[at].adv_http_port = 0;
	m->nodes[at].adv_ws_port = 0;
	m->n_nodes++;
	/* The table stays sorted by id, each id once. */
	assert((at == 0 || m->nodes[at - 1].id < n->id) && (at + 1 == m->n_nodes || m->nodes[at + 1].id > n->id));
	return META_OK;
}

/* A node's client addresses, as it announces them: only ever set by the node itself. */
static int node_advertise(struct meta *m, const struct meta_cmd *c)
{
	const struct meta_node *a = &c->nodes[0];
	if (c->n_nodes != 1 || memchr(a->adv_host, '\0', sizeof(a->adv_host)) == NULL)
		return PROTO_E_INVALID_OPTION_VALUE;
	for (uint32_t i = 0; i < m->n_nodes; i++) {
		struct meta_node *n = &m->nodes[i];
		if (n->id != c->node_id)
			continue;
		memcpy(n->adv_host, a->adv_host, sizeof(n->adv_host));
		n->adv_tcp_port = a->adv_tcp_port;
		n->adv_quic_port = a->adv_quic_port;
		n->adv_http_port = a->adv_http_port;
		n->adv_ws_port = a->adv_ws_port;
		return META_OK;
	}
	return PROTO_E_NODE_NOT_FOUND;
}

static int nodes_init(struct meta *m, const struct meta_cmd *c)
{
	if (m->n_nodes > 0)
		return META_OK; /* a second INIT (from a later leader that had not applied the first) */
	if (c->n_nodes == 0 || c->n_nodes > META_MAX_NODES)
		return PROTO_E_INVALID_OPTION_VALUE;
	for (uint32_t i = 0; i < c->n_nodes; i++) {
		int rv = node_insert(m, &c->nodes[i]);
		if (rv != META_OK) {
			m->n_nodes = 0;
			return rv;
		}
	}
	m->default_rf = c->replication_factor ? c->replication_factor : 1;
	return META_OK;
}

struct load {
	uint32_t id, replicas;
};

static void count_loads(struct meta *m, struct load *ld)
{
	for (uint32_t i = 0; i < m->n_nodes; i++)
		ld[i] = (struct load){m->nodes[i].id, 0};
	for (uint32_t i = 0; i < m->n_streams; i++) {
		struct meta_stream *s = m->streams[i];
		for (uint32_t k = 0; s != NULL && k < s->n_topics; k++) {
			struct meta_topic *t = s->topics[k];
			for (uint32_t p = 0; t != NULL && p < t->n_partitions; p++)
				for (uint32_t r = 0; r < t->partitions[p].n_replicas; r++)
					for (uint32_t q = 0; q < m->n_nodes; q++)
						if (ld[q].id == t->partitions[p].replicas[r])
							ld[q].replicas++;
		}
	}
}

static void each_topic(struct meta *m, void (*fn)(struct meta_topic *t, const struct meta_cmd *c),
		       const struct meta_cmd *c);
static void clear_node_members(struct meta_topic *t, const struct meta_cmd *c);

static int node_remove(struct meta *m, const struct meta_cmd *c)
{
	uint32_t at = 0;
	while (at < m->n_nodes && m->nodes[at].id != c->node_id)
		at++;
	if (at == m->n_nodes)
		return PROTO_E_NODE_NOT_FOUND;
	if (m->n_nodes == 1)
		return PROTO_E_NODE_LIMIT;
	memmove(&m->nodes[at], &m->nodes[at + 1], (m->n_nodes - at - 1) * sizeof(m->nodes[0]));
	m->n_nodes--;
	/*
	 * The removed node's consumer-group members (client ids with its node id in the top bits) leave
	 * every group: no node runs their sessions any more, so nothing else would ever remove them, and each
	 * would keep its partitions from every other member for good.
	 */
	struct meta_cmd gone = {.type = META_CLEAR_NODE_MEMBERS, .client_id = (uint32_t)c->node_id << 27};
	each_topic(m, clear_node_members, &gone);
	struct load ld[META_MAX_NODES];
	count_loads(m, ld);
	for (uint32_t i = 0; i < m->n_streams; i++) {
		struct meta_stream *s = m->streams[i];
		for (uint32_t k = 0; s != NULL && k < s->n_topics; k++) {
			struct meta_topic *t = s->topics[k];
			for (uint32_t pi = 0; t != NULL && pi < t->n_partitions; pi++) {
				struct meta_partition *p = &t->partitions[pi];
				if (!meta_partition_hosts(p, c->node_id))
					continue;
				uint32_t w = 0;
				for (uint32_t r = 0; r < p->n_replicas; r++)
					if (p->replicas[r] != c->node_id)
						p->replicas[w++] = p->replicas[r];
				p->n_replicas = (uint8_t)w;
				p->moved = true;
				int best = -1;
				for (uint32_t q = 0; q < m->n_nodes; q++)
					if (!meta_partition_hosts(p, ld[q].id) &&
					    (best < 0 || ld[q].replicas < ld[best].replicas))
						best = (int)q;
				if (best >= 0) {
					p->replicas[p->n_replicas++] = ld[best].id;
					ld[best].replicas++;
				}
			}
		}
	}
	return META_OK;
}

/* Each command. */

static int create_stream(struct meta *m, const struct meta_cmd *c, struct meta_result *r)
{
	if (c->name_len == 0)
		return PROTO_E_INVALID_OPTION_VALUE;
	if (meta_stream_by_name(m, c->name, c->name_len) != NULL)
		return PROTO_E_STREAM_NAME_ALREADY_EXISTS;
	struct meta_stream *s = calloc(1, sizeof(*s));
	uint32_t id;
	if (s == NULL || free_slot((void ***)&m->streams, &m->n_streams, &id) != 0) {
		free(s);
		return -ENOMEM;
	}
	assert(id < m->n_streams && m->streams[id] == NULL); /* a free slot: ids are never shared */
	s->id = id;
	set_name(s->name, c->name, c->name_len);
	s->created_at = c->ts;
	m->streams[id] = s;
	r->id = id;
	return META_OK;
}

static int update_stream(struct meta *m, const struct meta_cmd *c)
{
	struct meta_stream *s = meta_stream(m, c->stream_id);
	if (s == NULL)
		return PROTO_E_STREAM_ID_NOT_FOUND;
	if (c->name_len == 0)
		return PROTO_E_INVALID_OPTION_VALUE;
	struct meta_stream *o = meta_stream_by_name(m, c->name, c->name_len);
	if (o != NULL && o != s)
		return PROTO_E_STREAM_NAME_ALREADY_EXISTS;
	set_name(s->name, c->name, c->name_len);
	return META_OK;
}

static int create_topic(struct meta *m, const struct meta_cmd *c, struct meta_result *r)
{
	struct meta_stream *s = meta_stream(m, c->stream_id);
	if (s == NULL)
		return PROTO_E_STREAM_ID_NOT_FOUND;
	if (c->name_len == 0 || c->compression < META_COMPRESSION_NONE || c->compression > META_COMPRESSION_GZIP ||
	    c->durability > META_DURABILITY_NONE || c->replication_factor > META_MAX_REPLICAS)
		return PROTO_E_INVALID_OPTION_VALUE;
	if (c->count > META_MAX_PARTITIONS)
		return PROTO_E_INVALID_PARTITIONS_COUNT;
	if (meta_topic_by_name(s, c->name, c->name_len) != NULL)
		return PROTO_E_TOPIC_NAME_ALREADY_EXISTS;
	struct meta_topic *t = calloc(1, sizeof(*t));
	uint32_t id;
	if (t == NULL || free_slot((void ***)&s->topics, &s->n_topics, &id) != 0) {
		free(t);
		return -ENOMEM;
	}
	assert(id < s->n_topics && s->topics[id] == NULL); /* a free slot: ids are never shared */
	t->id = id;
	t->stream_id = s->id;
	set_name(t->name, c->name, c->name_len);
	t->created_at = c->ts;
	t->message_expiry = c->message_expiry;
	t->max_topic_size = c->max_topic_size;
	t->compression = c->compression;
	t->durability = c->durability;
	t->replication_factor = c->replication_factor;
	t->dedup_window = c->dedup_window;
	if (resize_partitions(m, t, c->count, c->ts) != 0) {
		topic_free(t);
		return -ENOMEM;
	}
	s->topics[id] = t;
	r->id = id;
	return META_OK;
}

static int update_topic(struct meta *m, const struct meta_cmd *c)
{
	struct meta_stream *s;
	struct meta_topic *t;
	int rv = get_topic(m, c, &s, &t);
	if (rv != META_OK)
		return rv;
	if (c->name_len == 0 || c->compression < META_COMPRESSION_NONE || c->compression > META_COMPRESSION_GZIP)
		return PROTO_E_INVALID_OPTION_VALUE;
	struct meta_topic *o = meta_topic_by_name(s, c->name, c->name_len);
	if (o != NULL && o != t)
		return PROTO_E_TOPIC_NAME_ALREADY_EXISTS;
	set_name(t->name, c->name, c->name_len);
	t->message_expiry = c->message_expiry;
	t->max_topic_size = c->max_topic_size;
	t->compression = c->compression;
	return META_OK;
}

static int partitions(struct meta *m, const struct meta_cmd *c, bool create)
{
	struct meta_stream *s;
	struct meta_topic *t;
	int rv = get_topic(m, c, &s, &t);
	if (rv != META_OK)
		return rv;
	if (c->count == 0 || c->count > META_MAX_PARTITIONS)
		return PROTO_E_INVALID_PARTITIONS_COUNT;
	if (create) {
		if (t->n_partitions + c->count > META_MAX_TOPIC_PARTITIONS)
			return PROTO_E_INVALID_PARTITIONS_COUNT;
		return resize_partitions(m, t, t->n_partitions + c->count, c->ts);
	}
	if (c->count > t->n_partitions)
		return PROTO_E_INVALID_PARTITIONS_COUNT;
	return resize_partitions(m, t, t->n_partitions - c->count, c->ts);
}

static int create_user(struct meta *m, const struct meta_cmd *c, struct meta_result *r)
{
	if (c->name_len < 3 || c->name_len > 50)
		return PROTO_E_INVALID_USERNAME;
	if (c->password_hash == NULL || (c->status != META_USER_ACTIVE && c->status != META_USER_INACTIVE))
		return PROTO_E_INVALID_OPTION_VALUE;
	if (meta_user_by_name(m, c->name, c->name_len) != NULL)
		return PROTO_E_USER_ALREADY_EXISTS;
	struct meta_user *u = calloc(1, sizeof(*u));
	uint32_t id;
	if (u == NULL || (u->password_hash = strdup(c->password_hash)) == NULL ||
	    (c->has_perms && meta_perms_copy(&u->perms, c->perms) != 0) ||
	    free_slot((void ***)&m->users, &m->n_users, &id) != 0) {
		user_free(u);
		return -ENOMEM;
	}
	assert(id < m->n_users && m->users[id] == NULL); /* a free slot: ids are never shared */
	u->id = id;
	set_name(u->username, c->name, c->name_len);
	u->status = c->status;
	u->created_at = c->ts;
	u->has_perms = c->has_perms;
	m->users[id] = u;
	r->id = id;
	return META_OK;
}

static int update_user(struct meta *m, const struct meta_cmd *c)
{
	struct meta_user *u = meta_user(m, c->user_id);
	if (u == NULL)
		return PROTO_E_RESOURCE_NOT_FOUND;
	if (c->name != NULL) {
		if (c->name_len < 3 || c->name_len > 50)
			return PROTO_E_INVALID_USERNAME;
		struct meta_user *o = meta_user_by_name(m, c->name, c->name_len);
		if (o != NULL && o != u)
			return PROTO_E_USER_ALREADY_EXISTS;
	}
	if (c->status != 0 && c->status != META_USER_ACTIVE && c->status != META_USER_INACTIVE)
		return PROTO_E_INVALID_OPTION_VALUE;
	if (c->name != NULL)
		set_name(u->username, c->name, c->name_len);
	if (c->status != 0)
		u->status = c->status;
	return META_OK;
}

static int change_password(struct meta *m, const struct meta_cmd *c)
{
	struct meta_user *u = meta_user(m, c->user_id);
	if (u == NULL)
		return PROTO_E_RESOURCE_NOT_FOUND;
	if (c->password_hash == NULL)
		return PROTO_E_INVALID_OPTION_VALUE;
	char *h = strdup(c->password_hash);
	if (h == NULL)
		return -ENOMEM;
	free(u->password_hash);
	u->password_hash = h;
	return META_OK;
}

static int update_permissions(struct meta *m, const struct meta_cmd *c)
{
	struct meta_user *u = meta_user(m, c->user_id);
	if (u == NULL)
		return PROTO_E_RESOURCE_NOT_FOUND;
	if (u->id == 0)
		return PROTO_E_CANNOT_CHANGE_PERMISSIONS;
	struct meta_perms p = {0};
	if (c->has_perms && meta_perms_copy(&p, c->perms) != 0)
		return -ENOMEM;
	meta_perms_free(&u->perms);
	u->perms = p;
	u->has_perms = c->has_perms;
	return META_OK;
}

static struct meta_pat *find_pat(struct meta_user *u, const char *name, size_t len)
{
	for (uint32_t i = 0; i < u->n_pats; i++)
		if (name_eq(u->pats[i].name, name, len))
			return &u->pats[i];
	return NULL;
}

static int create_pat(struct meta *m, const struct meta_cmd *c)
{
	struct meta_user *u = meta_user(m, c->user_id);
	if (u == NULL)
		return PROTO_E_RESOURCE_NOT_FOUND;
	if (c->name_len == 0 || c->token_hash == NULL)
		return PROTO_E_INVALID_OPTION_VALUE;
	if (find_pat(u, c->name, c->name_len) != NULL)
		return PROTO_E_PERSONAL_ACCESS_TOKEN_ALREADY_EXISTS;
	if (u->n_pats >= META_MAX_PATS_PER_USER)
		return PROTO_E_PERSONAL_ACCESS_TOKENS_LIMIT_REACHED;
	struct meta_pat *p = realloc(u->pats, (u->n_pats + 1) * sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	u->pats = p;
	p = &u->pats[u->n_pats++];
	memset(p, 0, sizeof(*p));
	set_name(p->name, c->name, c->name_len);
	memcpy(p->hash, c->token_hash, 32);
	p->expiry_at = c->expiry_at;
	return META_OK;
}

static int delete_pat(struct meta *m, const struct meta_cmd *c)
{
	struct meta_user *u = meta_user(m, c->user_id);
	if (u == NULL)
		return PROTO_E_RESOURCE_NOT_FOUND;
	struct meta_pat *p = find_pat(u, c->name, c->name_len);
	if (p == NULL)
		return PROTO_E_RESOURCE_NOT_FOUND;
	size_t i = (size_t)(p - u->pats);
	memmove(p, p + 1, (u->n_pats - i - 1) * sizeof(*p));
	u->n_pats--;
	return META_OK;
}

static int create_group(struct meta *m, const struct meta_cmd *c, struct meta_result *r)
{
	struct meta_stream *s;
	struct meta_topic *t;
	int rv = get_topic(m, c, &s, &t);
	if (rv != META_OK)
		return rv;
	if (c->name_len == 0)
		return PROTO_E_INVALID_OPTION_VALUE;
	if (meta_group_by_name(t, c->name, c->name_len) != NULL)
		return PROTO_E_CONSUMER_GROUP_NAME_ALREADY_EXISTS;
	struct meta_group *g = calloc(1, sizeof(*g));
	struct meta_group **a = g ? realloc(t->groups, (t->n_groups + 1) * sizeof(*a)) : NULL;
	if (a == NULL) {
		free(g);
		return -ENOMEM;
	}
	t->groups = a;
	assert(meta_group(t, t->next_group_id) == NULL); /* group ids are never reused */
	g->id = t->next_group_id++;
	set_name(g->name, c->name, c->name_len);
	t->groups[t->n_groups++] = g;
	r->id = g->id;
	return META_OK;
}

static int get_group(struct meta *m, const struct meta_cmd *c, struct meta_topic **t, struct meta_group **g)
{
	struct meta_stream *s;
	int rv = get_topic(m, c, &s, t);
	if (rv != META_OK)
		return rv;
	*g = meta_group(*t, c->group_id);
	return *g == NULL ? PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND : META_OK;
}

static int delete_group(struct meta *m, const struct meta_cmd *c)
{
	struct meta_topic *t;
	struct meta_group *g;
	int rv = get_group(m, c, &t, &g);
	if (rv != META_OK)
		return rv;
	for (uint32_t i = 0; i < t->n_groups; i++)
		if (t->groups[i] == g)
			t->groups[i] = NULL;
	/* The group's stored offsets go with it. */
	uint32_t k = 0;
	for (uint32_t i = 0; i < t->n_offsets; i++)
		if (!(t->offsets[i].kind == META_CONSUMER_GROUP && t->offsets[i].consumer_id == g->id))
			t->offsets[k++] = t->offsets[i];
	t->n_offsets = k;
	group_free(g);
	return META_OK;
}

static int join_group(struct meta *m, const struct meta_cmd *c)
{
	struct meta_topic *t;
	struct meta_group *g;
	int rv = get_group(m, c, &t, &g);
	if (rv != META_OK)
		return rv;
	if (meta_group_member(g, c->client_id) != NULL)
		return META_OK; /* joining twice is a no-op */
	/*
	 * A client of a node no longer in the roster (removed while it still runs) cannot join: nothing would
	 * remove the member once that node stops (node_remove removed the ones it had).
	 */
	if (m->n_nodes > 0 && meta_node(m, c->client_id >> 27) == NULL)
		return PROTO_E_NODE_NOT_FOUND;
	struct meta_member *a = realloc(g->members, (g->n_members + 1) * sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	g->members = a;
	g->members[g->n_members++] = (struct meta_member){.client_id = c->client_id};
	uint64_t gen = g->generation;
	rv = reassign(t, g);
	assert(rv != 0 || g->generation == gen + 1); /* every change of membership is a new generation */
	return rv;
}

static int leave_group(struct meta *m, const struct meta_cmd *c)
{
	struct meta_topic *t;
	struct meta_group *g;
	int rv = get_group(m, c, &t, &g);
	if (rv != META_OK)
		return rv;
	return remove_member(t, g, c->client_id) ? META_OK : PROTO_E_CONSUMER_GROUP_MEMBER_NOT_FOUND;
}

/* Calls fn on every topic. */
static void each_topic(struct meta *m, void (*fn)(struct meta_topic *t, const struct meta_cmd *c),
		       const struct meta_cmd *c)
{
	for (uint32_t i = 0; i < m->n_streams; i++) {
		struct meta_stream *s = m->streams[i];
		for (uint32_t k = 0; s != NULL && k < s->n_topics; k++)
			if (s->topics[k] != NULL)
				fn(s->topics[k], c);
	}
}

static void remove_member_everywhere(struct meta_topic *t, const struct meta_cmd *c)
{
	for (uint32_t i = 0; i < t->n_groups; i++)
		if (t->groups[i] != NULL)
			remove_member(t, t->groups[i], c->client_id);
}

static void clear_node_members(struct meta_topic *t, const struct meta_cmd *c)
{
	for (uint32_t i = 0; i < t->n_groups; i++) {
		struct meta_group *g = t->groups[i];
		for (uint32_t k = 0; g != NULL && k < g->n_members;) {
			if ((g->members[k].client_id >> 27) == (c->client_id >> 27))
				remove_member(t, g, g->members[k].client_id); /* shifts the rest down */
			else
				k++;
		}
	}
}

static void clear_members(struct meta_topic *t, const struct meta_cmd *c)
{
	(void)c;
	for (uint32_t i = 0; i < t->n_groups; i++) {
		struct meta_group *g = t->groups[i];
		if (g == NULL || g->n_members == 0)
			continue;
		for (uint32_t k = 0; k < g->n_members; k++)
			free(g->members[k].partitions);
		g->n_members = 0;
		g->generation++;
	}
}

static int store_offset(struct meta *m, const struct meta_cmd *c, bool del)
{
	struct meta_stream *s;
	struct meta_topic *t;
	int rv = get_topic(m, c, &s, &t);
	if (rv != META_OK)
		return rv;
	if (c->partition_id >= t->n_partitions)
		return PROTO_E_PARTITION_NOT_FOUND;
	if (c->consumer_kind == META_CONSUMER_GROUP && meta_group(t, c->consumer_id) == NULL)
		return PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND;
	if (c->consumer_kind != META_CONSUMER && c->consumer_kind != META_CONSUMER_GROUP)
		return PROTO_E_INVALID_OPTION_VALUE;
	struct meta_offset *o = (struct meta_offset *)meta_offset_get(t, c->consumer_kind, c->consumer_id,
								      c->partition_id);
	if (del) {
		if (o == NULL)
			return PROTO_E_CONSUMER_OFFSET_NOT_FOUND;
		*o = t->offsets[--t->n_offsets];
		return META_OK;
	}
	if (o == NULL) {
		if (t->n_offsets == t->cap_offsets) {
			uint32_t cap = t->cap_offsets ? t->cap_offsets * 2 : 8;
			struct meta_offset *a = realloc(t->offsets, cap * sizeof(*a));
			if (a == NULL)
				return -ENOMEM;
			t->offsets = a;
			t->cap_offsets = cap;
		}
		o = &t->offsets[t->n_offsets++];
		*o = (struct meta_offset){c->consumer_kind, c->consumer_id, c->partition_id, 0};
	}
	o->offset = c->offset;
	return META_OK;
}

int meta_apply(struct meta *m, const struct meta_cmd *c, struct meta_result *res)
{
	struct meta_result local;
	if (res == NULL)
		res = &local;
	memset(res, 0, sizeof(*res));
	struct meta_stream *s;
	struct meta_topic *t;
	int rv;
	switch (c->type) {
	case META_CREATE_STREAM:
		rv = create_stream(m, c, res);
		break;
	case META_UPDATE_STREAM:
		rv = update_stream(m, c);
		break;
	case META_DELETE_STREAM:
		s = meta_stream(m, c->stream_id);
		rv = s == NULL ? PROTO_E_STREAM_ID_NOT_FOUND : META_OK;
		if (rv == META_OK) {
			m->streams[s->id] = NULL;
			stream_free(s);
		}
		break;
	case META_PURGE_STREAM:
		rv = meta_stream(m, c->stream_id) == NULL ? PROTO_E_STREAM_ID_NOT_FOUND : META_OK;
		break;
	case META_CREATE_TOPIC:
		rv = create_topic(m, c, res);
		break;
	case META_UPDATE_TOPIC:
		rv = update_topic(m, c);
		break;
	case META_DELETE_TOPIC:
		rv = get_topic(m, c, &s, &t);
		if (rv == META_OK) {
			s->topics[t->id] = NULL;
			topic_free(t);
		}
		break;
	case META_PURGE_TOPIC:
		rv = get_topic(m, c, &s, &t);
		break;
	case META_CREATE_PARTITIONS:
	case META_DELETE_PARTITIONS:
		rv = partitions(m, c, c->type == META_CREATE_PARTITIONS);
		break;
	case META_CREATE_USER:
		rv = create_user(m, c, res);
		break;
	case META_UPDATE_USER:
		rv = update_user(m, c);
		break;
	case META_DELETE_USER:
		if (meta_user(m, c->user_id) == NULL) {
			rv = PROTO_E_RESOURCE_NOT_FOUND;
		} else if (c->user_id == 0) {
			rv = PROTO_E_CANNOT_DELETE_USER;
		} else {
			user_free(m->users[c->user_id]);
			m->users[c->user_id] = NULL;
			rv = META_OK;
		}
		break;
	case META_CHANGE_PASSWORD:
		rv = change_password(m, c);
		break;
	case META_UPDATE_PERMISSIONS:
		rv = update_permissions(m, c);
		break;
	case META_CREATE_PAT:
		rv = create_pat(m, c);
		break;
	case META_DELETE_PAT:
		rv = delete_pat(m, c);
		break;
	case META_CREATE_GROUP:
		rv = create_group(m, c, res);
		break;
	case META_DELETE_GROUP:
		rv = delete_group(m, c);
		break;
	case META_JOIN_GROUP:
		rv = join_group(m, c);
		break;
	case META_LEAVE_GROUP:
		rv = leave_group(m, c);
		break;
	case META_REMOVE_MEMBER:
		each_topic(m, remove_member_everywhere, c);
		rv = META_OK;
		break;
	case META_CLEAR_MEMBERS:
		each_topic(m, clear_members, c);
		rv = META_OK;
		break;
	case META_CLEAR_NODE_MEMBERS:
		each_topic(m, clear_node_members, c);
		rv = META_OK;
		break;
	case META_STORE_OFFSET:
	case META_DELETE_OFFSET:
		rv = store_offset(m, c, c->type == META_DELETE_OFFSET);
		break;
	case META_NODES_INIT:
		rv = nodes_init(m, c);
		break;
	case META_NODE_ADD:
		rv = c->n_nodes == 1 ? node_insert(m, &c->nodes[0]) : PROTO_E_INVALID_OPTION_VALUE;
		break;
	case META_NODE_REMOVE:
		rv = node_remove(m, c);
		break;
	case META_NODE_ADVERTISE:
		rv = node_advertise(m, c);
		break;
	default:
		rv = PROTO_E_INVALID_OPTION_VALUE;
		break;
	}
	if (rv == META_OK)
		m->applied++;
	return rv;
}
