/*
 * srv_layout — Iggy's reply structures filled from the node's state: identifiers resolved against the
 * metadata, and one writer per reply structure of the reference (§2.4: stream, topic, partition, user,
 * consumer group and member, client, token, stats, cluster metadata) and of Galgo's extensions
 * (GetPartitionLeaders and its node status; see docs/protocol-extensions.md). The bytes are proto/reply's
 * (specified there), the permissions proto/wire's. Owns no state: every function reads the metadata and
 * writes a wire_buf.
 */
#include "node/srv_int.h"

/* ---- Resolving identifiers ---- */

struct meta_stream *srv__find_stream(struct srv *s, const struct wire_id *id)
{
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_stream(s->meta, id->num);
	return meta_stream_by_name(s->meta, (const char *)id->name.ptr, id->name.len);
}

struct meta_topic *srv__find_topic(const struct meta_stream *st, const struct wire_id *id)
{
	if (st == NULL)
		return NULL;
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_topic(st, id->num);
	return meta_topic_by_name(st, (const char *)id->name.ptr, id->name.len);
}

struct meta_group *srv__find_group(const struct meta_topic *t, const struct wire_id *id)
{
	if (t == NULL)
		return NULL;
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_group(t, id->num);
	return meta_group_by_name(t, (const char *)id->name.ptr, id->name.len);
}

struct meta_user *srv__find_user(struct srv *s, const struct wire_id *id)
{
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_user(s->meta, id->num);
	return meta_user_by_name(s->meta, (const char *)id->name.ptr, id->name.len);
}

/* ---- Response structures (reference §2.4) ---- */

void srv__put_name(struct wire_buf *b, const char *name)
{
	wire_put_name(b, name, strlen(name));
}

static struct wire_str name_of(const char *name)
{
	return (struct wire_str){(const uint8_t *)name, strlen(name)};
}

void srv__put_stream_header(struct srv *s, struct wire_buf *b, const struct meta_stream *st)
{
	struct reply_stream h = {.id = st->id, .created_at = st->created_at, .name = name_of(st->name)};
	for (uint32_t i = 0; i < st->n_topics; i++) {
		if (st->topics[i] == NULL)
			continue;
		uint64_t tb, tm;
		srv__topic_usage(s, st->topics[i], &tb, &tm);
		h.topics_count++;
		h.size_bytes += tb;
		h.messages_count += tm;
	}
	reply_put_stream(b, &h);
}

void srv__put_topic_header(struct srv *s, struct wire_buf *b, const struct meta_topic *t)
{
	struct reply_topic h = {.id = t->id, .created_at = t->created_at, .partitions_count = t->n_partitions,
				.message_expiry = t->message_expiry, .compression = t->compression,
				.max_topic_size = t->max_topic_size, .name = name_of(t->name)};
	srv__topic_usage(s, t, &h.size_bytes, &h.messages_count);
	/* Explicit options: the settings that differ from the defaults. */
	struct wire_buf o;
	uint8_t v[8];
	wire_buf_init(&o);
	if (t->compression == META_COMPRESSION_GZIP)
		wire_put_option(&o, "compression_algorithm", 21, WIRE_KIND_STRING, "gzip", 4);
	if (t->message_expiry != META_NEVER) {
		record_put64(v, t->message_expiry);
		wire_put_option(&o, "message_expiry", 14, WIRE_KIND_UINT64, v, 8);
	}
	if (t->max_topic_size != META_NEVER) {
		record_put64(v, t->max_topic_size);
		wire_put_option(&o, "max_topic_size", 14, WIRE_KIND_UINT64, v, 8);
	}
	if (wire_buf_error(&o) != 0)
		wire_put_reserve(b, SIZE_MAX / 2); /* records the error */
	h.options = (struct wire_opts){o.p, o.len, 0};
	reply_put_topic(b, &h);
	wire_buf_free(&o);
}

/* The topic option catalog (DescribeOptions scope 1): key, kind, default, description. */
void srv__put_topic_option_catalog(struct wire_buf *b)
{
	static const struct {
		const char *key;
		uint8_t kind;
		uint8_t width;
		uint64_t def;
		const char *desc;
	} cat[] = {
		{"compression_algorithm", WIRE_KIND_STRING, 0, 0, "Compression of stored messages: none or gzip."},
		{"message_expiry", WIRE_KIND_UINT64, 8, 0, "Age in microseconds after which messages are deleted; 0 uses the server default (never)."},
		{"max_topic_size", WIRE_KIND_UINT64, 8, 0, "Size in bytes above which the oldest segments are deleted; 0 uses the server default (unlimited)."},
		{"segment_size", WIRE_KIND_UINT64, 8, 1ull << 30, "Bytes per segment file before a new one is started."},
		{"enforce_fsync", WIRE_KIND_BOOL, 1, 0, "Acknowledge messages only after they are flushed to disk (galgo does so by default)."},
		{"messages_required_to_save", WIRE_KIND_UINT32, 4, 1, "Accepted for compatibility; galgo writes every batch at once."},
		{"size_of_messages_required_to_save", WIRE_KIND_UINT64, 8, 0, "Accepted for compatibility; galgo writes every batch at once."},
		{"preallocate_segments", WIRE_KIND_BOOL, 1, 0, "Accepted for compatibility; segments grow as written."},
		{"dedup_window", WIRE_KIND_UINT64, 8, 0, "Galgo: how many recent message ids (at most 65536) each partition remembers; a message with a remembered nonzero id is dropped as a retry. 0 = off. Also a decimal string (Iggy SDK options)."},
	};
	wire_put_u32(b, (uint32_t)(sizeof(cat) / sizeof(cat[0])));
	for (size_t i = 0; i < sizeof(cat) / sizeof(cat[0]); i++) {
		uint8_t v[8];
		struct reply_option_info o = {name_of(cat[i].key), cat[i].kind, {v, cat[i].width}, name_of(cat[i].desc)};
		if (cat[i].kind == WIRE_KIND_STRING)
			o.default_value = name_of("none");
		else
			record_put64(v, cat[i].def);
		reply_put_option_info(b, &o);
	}
}

void srv__put_partitions(struct srv *s, struct wire_buf *b, const struct meta_topic *t)
{
	for (uint32_t p = 0; p < t->n_partitions; p++) {
		struct plog *l = srv__part_log(s, t->stream_id, t->id, p);
		uint64_t next = l ? plog_next_offset(l) : 0, first = l ? plog_first_offset(l) : 0;
		reply_put_partition(b, &(struct reply_partition){
					       .id = p,
					       .created_at = t->partitions[p].created_at,
					       .segments_count = l ? plog_segment_count(l) : 1,
					       .current_offset = next > 0 ? next - 1 : 0,
					       .size_bytes = srv__part_bytes(s, t->stream_id, t->id, p),
					       .messages_count = next - first,
				       });
	}
}

void srv__put_user_header(struct wire_buf *b, const struct meta_user *u)
{
	reply_put_user(b, &(struct reply_user){.id = u->id, .created_at = u->created_at, .status = u->status,
					      .username = name_of(u->username)});
}

static void perms_to_wire(const struct meta_perms *m, struct wire_perms *w)
{
	memset(w, 0, sizeof(*w));
	w->manage_servers = m->manage_servers;
	w->read_servers = m->read_servers;
	w->manage_users = m->manage_users;
	w->read_users = m->read_users;
	w->manage_streams = m->manage_streams;
	w->read_streams = m->read_streams;
	w->manage_topics = m->manage_topics;
	w->read_topics = m->read_topics;
	w->poll_messages = m->poll_messages;
	w->send_messages = m->send_messages;
}

void srv__put_user_details(struct wire_buf *b, const struct meta_user *u)
{
	srv__put_user_header(b, u);
	if (!u->has_perms) {
		wire_put_u32(b, 0);
		return;
	}
	struct wire_perms w;
	perms_to_wire(&u->perms, &w);
	struct wire_perm_stream *ws = calloc(u->perms.n_streams ? u->perms.n_streams : 1, sizeof(*ws));
	struct wire_perm_topic **wt = calloc(u->perms.n_streams ? u->perms.n_streams : 1, sizeof(*wt));
	if (ws == NULL || wt == NULL) {
		free(ws);
		free(wt);
		wire_put_reserve(b, SIZE_MAX / 2); /* records the error */
		return;
	}
	for (uint32_t i = 0; i < u->perms.n_streams; i++) {
		const struct meta_perm_stream *ms = &u->perms.streams[i];
		ws[i] = (struct wire_perm_stream){ms->stream_id, ms->manage_stream, ms->read_stream, ms->manage_topics,
						  ms->read_topics, ms->poll_messages, ms->send_messages, ms->n_topics,
						  NULL};
		wt[i] = calloc(ms->n_topics ? ms->n_topics : 1, sizeof(**wt));
		for (uint32_t k = 0; wt[i] != NULL && k < ms->n_topics; k++) {
			const struct meta_perm_topic *mt = &ms->topics[k];
			wt[i][k] = (struct wire_perm_topic){mt->topic_id, mt->manage_topic, mt->read_topic,
							    mt->poll_messages, mt->send_messages};
		}
		ws[i].topics = wt[i];
	}
	w.streams = ws;
	w.streams_count = u->perms.n_streams;
	wire_put_u8(b, 1);
	size_t at = wire_put_reserve(b, 4);
	size_t start = b->len;
	wire_put_permissions(b, &w);
	wire_patch_u32(b, at, (uint32_t)(b->len - start));
	for (uint32_t i = 0; i < u->perms.n_streams; i++)
		free(wt[i]);
	free(wt);
	free(ws);
}

int srv__perms_from_wire(const struct wire_perms *w, struct meta_perms *m)
{
	memset(m, 0, sizeof(*m));
	m->manage_servers = w->manage_servers;
	m->read_servers = w->read_servers;
	m->manage_users = w->manage_users;
	m->read_users = w->read_users;
	m->manage_streams = w->manage_streams;
	m->read_streams = w->read_streams;
	m->manage_topics = w->manage_topics;
	m->read_topics = w->read_topics;
	m->poll_messages = w->poll_messages;
	m->send_messages = w->send_messages;
	if (w->streams_count == 0)
		return 0;
	m->streams = calloc(w->streams_count, sizeof(*m->streams));
	if (m->streams == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < w->streams_count; i++) {
		const struct wire_perm_stream *ws = &w->streams[i];
		struct meta_perm_stream *ms = &m->streams[i];
		m->n_streams = i + 1;
		*ms = (struct meta_perm_stream){ws->id, ws->manage_stream, ws->read_stream, ws->manage_topics,
						ws->read_topics, ws->poll_messages, ws->send_messages, NULL, 0};
		if (ws->topics_count == 0)
			continue;
		ms->topics = calloc(ws->topics_count, sizeof(*ms->topics));
		if (ms->topics == NULL) {
			meta_perms_free(m);
			return -ENOMEM;
		}
		ms->n_topics = ws->topics_count;
		for (uint32_t k = 0; k < ws->topics_count; k++) {
			const struct wire_perm_topic *wt = &ws->topics[k];
			ms->topics[k] = (struct meta_perm_topic){wt->id, wt->manage_topic, wt->read_topic,
								 wt->poll_messages, wt->send_messages};
		}
	}
	return 0;
}

void srv__put_group_details(struct wire_buf *b, const struct meta_topic *t, const struct meta_group *g, bool members)
{
	reply_put_group(b, &(struct reply_group){g->id, t->n_partitions, g->n_members, name_of(g->name)});
	if (!members)
		return;
	for (uint32_t i = 0; i < g->n_members; i++) {
		const struct meta_member *m = &g->members[i];
		reply_put_group_member(b, &(struct reply_group_member){.client_id = m->client_id,
									.partitions_count = m->n_partitions,
									.ids = m->partitions});
	}
}

/* The consumer groups a session is a member of: how many, each written to b unless b is NULL. */
static uint32_t client_groups(struct srv *s, const struct srv_session *ss, struct wire_buf *b)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
			struct meta_topic *t = st->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups; g++) {
				if (t->groups[g] == NULL || meta_group_member(t->groups[g], ss->client_id) == NULL)
					continue;
				n++;
				if (b != NULL)
					reply_put_client_group(b, &(struct reply_client_group){st->id, t->id,
												 t->groups[g]->id});
			}
		}
	}
	return n;
}

void srv__put_client(struct srv *s, struct wire_buf *b, const struct srv_session *ss, bool details)
{
	reply_put_client(b, &(struct reply_client){ss->client_id, ss->bound ? ss->user_id : UINT32_MAX,
						   (uint8_t)ss->kind, name_of(ss->peer), client_groups(s, ss, NULL)});
	if (details)
		client_groups(s, ss, b);
}

struct client_addr srv__client_addr_of(struct srv *s, const struct clu_node *cn, bool single)
{
	static char own_host[256];
	char h[256];
	uint16_t tcp = 0, quic = 0, http = 0;
	snprintf(own_host, sizeof(own_host), "127.0.0.1");
	config_split_address(s->cfg->tcp.address, own_host, sizeof(own_host), &tcp);
	config_split_address(s->cfg->quic.address, h, sizeof(h), &quic);
	config_split_address(s->cfg->http.address, h, sizeof(h), &http);
	struct client_addr a = {single ? own_host : cn->host, cn->tcp_port != 0 ? cn->tcp_port : tcp,
				cn->quic_port != 0 ? cn->quic_port : quic, cn->http_port != 0 ? cn->http_port : http, 0};
	if (!s->cfg->quic.enabled)
		a.quic = 0;
	if (!s->cfg->http.enabled)
		a.http = 0;
	a.ws = srv__own_ws_port(s->cfg); /* until the node has advertised its own */
	const struct meta_node *mn = meta_node(s->meta, (uint32_t)cn->id);
	if (mn != NULL) {
		if (mn->adv_host[0] != '\0')
			a.host = mn->adv_host;
		a.tcp = mn->adv_tcp_port != 0 ? mn->adv_tcp_port : a.tcp;
		a.quic = mn->adv_quic_port != 0 ? mn->adv_quic_port : a.quic;
		a.http = mn->adv_http_port != 0 ? mn->adv_http_port : a.http;
		a.ws = mn->adv_ws_port != 0 ? mn->adv_ws_port : a.ws;
	}
	return a;
}

/* GetPartitionLeaders (docs/protocol-extensions.md). */
void srv__put_partition_leaders(struct srv *s, struct wire_buf *b)
{
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	wire_put_u32(b, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		struct client_addr a = srv__client_addr_of(s, &nodes[i], false);
		reply_put_leaders_node(b, &(struct reply_leaders_node){(uint32_t)nodes[i].id, name_of(a.host), a.tcp,
									a.quic, a.http});
	}
	struct rgroup_status ms;
	clu_group_status(s->mg, &ms);
	wire_put_u32(b, (uint32_t)ms.leader_id);
	wire_put_u64(b, ms.term);
	size_t count_at = b->len;
	wire_put_u32(b, 0);
	uint32_t count = 0;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		const struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
			const struct meta_topic *t = st->topics[k];
			struct tparts *tp = t != NULL ? srv__tparts_find(s, st->id, t->id) : NULL;
			for (uint32_t pid = 0; t != NULL && pid < t->n_partitions; pid++) {
				struct part *pt = tp != NULL && pid < tp->n ? tp->pp[pid] : NULL;
				struct rgroup_status gs = {0};
				if (pt != NULL)
					clu_group_status(pt->g, &gs);
				const struct meta_partition *mp = &t->partitions[pid];
				reply_put_leaders_part(b, &(struct reply_leaders_part){
								  .stream_id = st->id,
								  .topic_id = t->id,
								  .partition_id = pid,
								  .leader = (uint32_t)gs.leader_id,
								  .epoch = gs.leader_id != 0 ? gs.term : 0,
								  .replica_count = mp->n_replicas,
								  .ids = mp->replicas,
							  });
				count++;
			}
		}
	}
	if (b->err == 0)
		record_put32(b->p + count_at, count);
}

/*
 * GetPartitionLeaders' node-status section (flag 1; docs/protocol-extensions.md): per roster node, in the
 * order of the node list, whether this node's node-to-node link to it is up and its role in the
 * metadata group as this node's configuration has it.
 */
void srv__put_node_status(struct srv *s, struct wire_buf *b)
{
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	struct rgroup_status ms;
	clu_group_status(s->mg, &ms);
	struct rgroup_member m[64];
	size_t nm = clu_group_members(s->mg, m, sizeof(m) / sizeof(m[0]));
	if (nm > sizeof(m) / sizeof(m[0]))
		nm = sizeof(m) / sizeof(m[0]);
	for (size_t i = 0; i < n; i++) {
		uint8_t role = 0; /* not a member of the metadata group */
		for (size_t k = 0; k < nm; k++)
			if (m[k].id == nodes[i].id)
				role = m[k].role == RAFT_VOTER ? (ms.leader_id == nodes[i].id ? 1 : 2)
								: m[k].role == RAFT_STANDBY ? 3 : 4;
		reply_put_node_status(b, &(struct reply_node_status){clu_connected(s->clu, nodes[i].id) ? 1 : 0, role});
	}
}

/* ---- Reads (NonReplicated) ---- */

void srv__put_stats(struct srv *s, struct wire_buf *b)
{
	uint32_t streams = 0, topics = 0, partitions = 0, segments = 0, groups = 0, clients = 0;
	uint64_t msgs = 0, bytes = 0;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		if (st == NULL)
			continue;
		streams++;
		for (uint32_t k = 0; k < st->n_topics; k++) {
			struct meta_topic *t = st->topics[k];
			if (t == NULL)
				continue;
			topics++;
			partitions += t->n_partitions;
			for (uint32_t g = 0; g < t->n_groups; g++)
				groups += t->groups[g] != NULL;
			uint64_t tb, tm;
			srv__topic_usage(s, t, &tb, &tm);
			bytes += tb;
			msgs += tm;
			for (uint32_t pi = 0; pi < t->n_partitions; pi++) {
				struct plog *l = srv__part_log(s, st->id, t->id, pi);
				segments += l ? plog_segment_count(l) : 0;
			}
		}
	}
	for (struct srv_session *ss = s->sessions; ss != NULL; ss = ss->next)
		clients++;
	long rss_pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f != NULL) {
		long size;
		if (fscanf(f, "%ld %ld", &size, &rss_pages) != 2)
			rss_pages = 0;
		fclose(f);
	}
	long page = sysconf(_SC_PAGESIZE), phys = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
	struct utsname un;
	uname(&un);
	struct statvfs vfs;
	uint64_t free_disk = 0, total_disk = 0;
	if (statvfs(s->cfg->node.data_dir, &vfs) == 0) {
		free_disk = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		total_disk = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	}
	reply_put_stats(b, &(struct reply_stats){
				   .process_id = (uint32_t)getpid(),
				   .memory_usage = (uint64_t)rss_pages * (uint64_t)page,
				   .total_memory = (uint64_t)phys * (uint64_t)page,
				   .available_memory = (uint64_t)avail * (uint64_t)page,
				   .run_time = srv__now_us() - s->start_us,
				   .start_time = s->start_us,
				   .written_bytes = bytes,
				   .messages_size_bytes = bytes,
				   .streams_count = streams,
				   .topics_count = topics,
				   .partitions_count = partitions,
				   .segments_count = segments,
				   .messages_count = msgs,
				   .clients_count = clients,
				   .consumer_groups_count = groups,
				   .hostname = name_of(un.nodename),
				   .os_name = name_of(un.sysname),
				   .os_version = name_of(un.version),
				   .kernel_version = name_of(un.release),
				   .iggy_server_version = name_of(SERVER_VERSION),
				   .iggy_server_semver = 9000, /* 0.9.0 */
				   .threads_count = 1,
				   .free_disk_space = free_disk,
				   .total_disk_space = total_disk,
			   }); /* no CPU figures, no read counter, no cache metrics */
}

/*
 * GetClusterMetadata: every node of the roster with its client endpoints (srv__put_node); the metadata leader
 * is marked Leader (the SDK moves its connection there after login, reference §8).
 */
void srv__put_cluster(struct srv *s, struct wire_buf *b)
{
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	uint64_t leader = clu_group_leader_id(s->mg);
	reply_put_cluster(b, &(struct reply_cluster){name_of(s->cfg->cluster.name), (uint32_t)n});
	for (size_t i = 0; i < n; i++)
		srv__put_node(s, b, i, n == 1 || nodes[i].id == leader ? 0 : 1); /* 0 Leader, 1 Follower */
}

/*
 * Roster entry i as one node of GetClusterMetadata (also the primary of a route), at its client address
 * (srv__client_addr_of).
 */
void srv__put_node(struct srv *s, struct wire_buf *b, size_t i, uint8_t role)
{
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	assert(i < n);
	char name[32];
	snprintf(name, sizeof(name), "galgo-node-%" PRIu64, nodes[i].id);
	struct client_addr a = srv__client_addr_of(s, &nodes[i], n == 1);
	reply_put_node(b, &(struct reply_node){.name = name_of(name), .ip = name_of(a.host), .tcp = a.tcp,
					       .quic = a.quic, .http = a.http, .websocket = a.ws, .role = role});
					       /* status 0: healthy */
}
