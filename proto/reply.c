/*
 * reply — the encoders and decoders of Iggy's reply structures (see reply.h for the byte formats). The
 * decoders read untrusted bytes through wire_rd, which checks every length against what is present.
 */
#include "proto/reply.h"

#include <string.h>

#include "proto/frame.h" /* the little-endian stores */

void reply_put_stream(struct wire_buf *b, const struct reply_stream *s)
{
	wire_put_u32(b, s->id);
	wire_put_u64(b, s->created_at);
	wire_put_u32(b, s->topics_count);
	wire_put_u64(b, s->size_bytes);
	wire_put_u64(b, s->messages_count);
	wire_put_name(b, s->name.ptr, s->name.len);
	wire_put_options_prefixed(b, &s->options);
}

int reply_get_stream(struct wire_rd *r, struct reply_stream *s)
{
	memset(s, 0, sizeof(*s));
	s->id = wire_get_u32(r);
	s->created_at = wire_get_u64(r);
	s->topics_count = wire_get_u32(r);
	s->size_bytes = wire_get_u64(r);
	s->messages_count = wire_get_u64(r);
	wire_get_name(r, &s->name);
	wire_get_options_prefixed(r, &s->options);
	return wire_rd_error(r);
}

void reply_put_topic(struct wire_buf *b, const struct reply_topic *t)
{
	wire_put_u32(b, t->id);
	wire_put_u64(b, t->created_at);
	wire_put_u32(b, t->partitions_count);
	wire_put_u64(b, t->message_expiry);
	wire_put_u8(b, t->compression);
	wire_put_u64(b, t->max_topic_size);
	wire_put_u64(b, t->size_bytes);
	wire_put_u64(b, t->messages_count);
	wire_put_name(b, t->name.ptr, t->name.len);
	wire_put_options_prefixed(b, &t->options);
	wire_put_options_prefixed(b, &t->derived);
}

int reply_get_topic(struct wire_rd *r, struct reply_topic *t)
{
	memset(t, 0, sizeof(*t));
	t->id = wire_get_u32(r);
	t->created_at = wire_get_u64(r);
	t->partitions_count = wire_get_u32(r);
	t->message_expiry = wire_get_u64(r);
	t->compression = wire_get_u8(r);
	t->max_topic_size = wire_get_u64(r);
	t->size_bytes = wire_get_u64(r);
	t->messages_count = wire_get_u64(r);
	wire_get_name(r, &t->name);
	wire_get_options_prefixed(r, &t->options);
	wire_get_options_prefixed(r, &t->derived);
	return wire_rd_error(r);
}

void reply_put_partition(struct wire_buf *b, const struct reply_partition *p)
{
	wire_put_u32(b, p->id);
	wire_put_u64(b, p->created_at);
	wire_put_u32(b, p->segments_count);
	wire_put_u64(b, p->current_offset);
	wire_put_u64(b, p->size_bytes);
	wire_put_u64(b, p->messages_count);
}

int reply_get_partition(struct wire_rd *r, struct reply_partition *p)
{
	p->id = wire_get_u32(r);
	p->created_at = wire_get_u64(r);
	p->segments_count = wire_get_u32(r);
	p->current_offset = wire_get_u64(r);
	p->size_bytes = wire_get_u64(r);
	p->messages_count = wire_get_u64(r);
	return wire_rd_error(r);
}

/* Into a fixed array: the server keeps the prefix apart from the messages, which may be file pieces. */
void reply_encode_polled(uint8_t out[REPLY_POLLED_PREFIX_SIZE], const struct reply_polled *p)
{
	frame_put32(out, p->partition_id);
	frame_put64(out + 4, p->current_offset);
	frame_put32(out + 12, p->count);
}

int reply_get_polled(struct wire_rd *r, struct reply_polled *p)
{
	p->partition_id = wire_get_u32(r);
	p->current_offset = wire_get_u64(r);
	p->count = wire_get_u32(r);
	return wire_rd_error(r);
}

/* Into a fixed array, as the server answers it without a wire_buf. */
void reply_encode_offset(uint8_t out[REPLY_OFFSET_SIZE], const struct reply_offset *o)
{
	frame_put32(out, o->partition_id);
	frame_put64(out + 4, o->current_offset);
	frame_put64(out + 12, o->stored_offset);
}

int reply_get_offset(struct wire_rd *r, struct reply_offset *o)
{
	o->partition_id = wire_get_u32(r);
	o->current_offset = wire_get_u64(r);
	o->stored_offset = wire_get_u64(r);
	return wire_rd_error(r);
}

void reply_put_pat(struct wire_buf *b, const struct reply_pat *t)
{
	wire_put_name(b, t->name.ptr, t->name.len);
	wire_put_u64(b, t->expiry_at);
}

int reply_get_pat(struct wire_rd *r, struct reply_pat *t)
{
	memset(t, 0, sizeof(*t));
	wire_get_name(r, &t->name);
	t->expiry_at = wire_get_u64(r);
	return wire_rd_error(r);
}

void reply_put_user(struct wire_buf *b, const struct reply_user *u)
{
	wire_put_u32(b, u->id);
	wire_put_u64(b, u->created_at);
	wire_put_u8(b, u->status);
	wire_put_name(b, u->username.ptr, u->username.len);
	wire_put_options_prefixed(b, &u->options);
}

int reply_get_user(struct wire_rd *r, struct reply_user *u)
{
	memset(u, 0, sizeof(*u));
	u->id = wire_get_u32(r);
	u->created_at = wire_get_u64(r);
	u->status = wire_get_u8(r);
	wire_get_name(r, &u->username);
	wire_get_options_prefixed(r, &u->options);
	return wire_rd_error(r);
}

void reply_put_group(struct wire_buf *b, const struct reply_group *g)
{
	wire_put_u32(b, g->id);
	wire_put_u32(b, g->partitions_count);
	wire_put_u32(b, g->members_count);
	wire_put_name(b, g->name.ptr, g->name.len);
}

int reply_get_group(struct wire_rd *r, struct reply_group *g)
{
	memset(g, 0, sizeof(*g));
	g->id = wire_get_u32(r);
	g->partitions_count = wire_get_u32(r);
	g->members_count = wire_get_u32(r);
	wire_get_name(r, &g->name);
	return wire_rd_error(r);
}

/* Writes the ids from `ids` when given (the server's), else re-encodes `raw` (a decoded member). */
void reply_put_group_member(struct wire_buf *b, const struct reply_group_member *m)
{
	wire_put_u32(b, m->client_id);
	wire_put_u32(b, m->partitions_count);
	for (uint32_t k = 0; k < m->partitions_count; k++)
		wire_put_u32(b, m->ids != NULL ? m->ids[k] : reply_group_member_partition(m, k));
}

int reply_get_group_member(struct wire_rd *r, struct reply_group_member *m)
{
	memset(m, 0, sizeof(*m));
	m->client_id = wire_get_u32(r);
	m->partitions_count = wire_get_u32(r);
	/* Checked against the bytes present before the multiplication can matter: at most 4 GiB - 1 ids. */
	if (wire_rd_error(r) == 0 && wire_rd_left(r) / 4 < m->partitions_count)
		wire_rd_fail(r, WIRE_E_SHORT);
	m->raw = wire_get_bytes(r, (size_t)m->partitions_count * 4);
	return wire_rd_error(r);
}

uint32_t reply_group_member_partition(const struct reply_group_member *m, uint32_t k)
{
	return frame_le32(m->raw + (size_t)k * 4);
}

void reply_put_client(struct wire_buf *b, const struct reply_client *c)
{
	wire_put_u32(b, c->client_id);
	wire_put_u32(b, c->user_id);
	wire_put_u8(b, c->transport);
	wire_put_str32(b, c->address.ptr, c->address.len);
	wire_put_u32(b, c->groups_count);
}

int reply_get_client(struct wire_rd *r, struct reply_client *c)
{
	memset(c, 0, sizeof(*c));
	c->client_id = wire_get_u32(r);
	c->user_id = wire_get_u32(r);
	c->transport = wire_get_u8(r);
	wire_get_str32(r, &c->address);
	c->groups_count = wire_get_u32(r);
	return wire_rd_error(r);
}

void reply_put_client_group(struct wire_buf *b, const struct reply_client_group *g)
{
	wire_put_u32(b, g->stream_id);
	wire_put_u32(b, g->topic_id);
	wire_put_u32(b, g->group_id);
}

int reply_get_client_group(struct wire_rd *r, struct reply_client_group *g)
{
	g->stream_id = wire_get_u32(r);
	g->topic_id = wire_get_u32(r);
	g->group_id = wire_get_u32(r);
	return wire_rd_error(r);
}

void reply_put_cluster(struct wire_buf *b, const struct reply_cluster *c)
{
	wire_put_str32(b, c->name.ptr, c->name.len);
	wire_put_u32(b, c->nodes_count);
}

int reply_get_cluster(struct wire_rd *r, struct reply_cluster *c)
{
	memset(c, 0, sizeof(*c));
	wire_get_str32(r, &c->name);
	c->nodes_count = wire_get_u32(r);
	return wire_rd_error(r);
}

void reply_put_node(struct wire_buf *b, const struct reply_node *n)
{
	wire_put_str32(b, n->name.ptr, n->name.len);
	wire_put_str32(b, n->ip.ptr, n->ip.len);
	wire_put_u16(b, n->tcp);
	wire_put_u16(b, n->quic);
	wire_put_u16(b, n->http);
	wire_put_u16(b, n->websocket);
	wire_put_u8(b, n->role);
	wire_put_u8(b, n->status);
}

int reply_get_node(struct wire_rd *r, struct reply_node *n)
{
	memset(n, 0, sizeof(*n));
	wire_get_str32(r, &n->name);
	wire_get_str32(r, &n->ip);
	n->tcp = wire_get_u16(r);
	n->quic = wire_get_u16(r);
	n->http = wire_get_u16(r);
	n->websocket = wire_get_u16(r);
	n->role = wire_get_u8(r);
	n->status = wire_get_u8(r);
	return wire_rd_error(r);
}

static void put_f32(struct wire_buf *b, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	wire_put_u32(b, u);
}

static float get_f32(struct wire_rd *r)
{
	uint32_t u = wire_get_u32(r);
	float f;
	memcpy(&f, &u, 4);
	return f;
}

void reply_put_stats(struct wire_buf *b, const struct reply_stats *s)
{
	wire_put_u32(b, s->process_id);
	put_f32(b, s->cpu_usage);
	put_f32(b, s->total_cpu_usage);
	wire_put_u64(b, s->memory_usage);
	wire_put_u64(b, s->total_memory);
	wire_put_u64(b, s->available_memory);
	wire_put_u64(b, s->run_time);
	wire_put_u64(b, s->start_time);
	wire_put_u64(b, s->read_bytes);
	wire_put_u64(b, s->written_bytes);
	wire_put_u64(b, s->messages_size_bytes);
	wire_put_u32(b, s->streams_count);
	wire_put_u32(b, s->topics_count);
	wire_put_u32(b, s->partitions_count);
	wire_put_u32(b, s->segments_count);
	wire_put_u64(b, s->messages_count);
	wire_put_u32(b, s->clients_count);
	wire_put_u32(b, s->consumer_groups_count);
	wire_put_str32(b, s->hostname.ptr, s->hostname.len);
	wire_put_str32(b, s->os_name.ptr, s->os_name.len);
	wire_put_str32(b, s->os_version.ptr, s->os_version.len);
	wire_put_str32(b, s->kernel_version.ptr, s->kernel_version.len);
	wire_put_str32(b, s->iggy_server_version.ptr, s->iggy_server_version.len);
	wire_put_u32(b, s->iggy_server_semver);
	wire_put_u32(b, s->cache_metrics_count);
	wire_put_bytes(b, s->cache_metrics, (size_t)s->cache_metrics_count * REPLY_CACHE_METRIC_SIZE);
	wire_put_u32(b, s->threads_count);
	wire_put_u64(b, s->free_disk_space);
	wire_put_u64(b, s->total_disk_space);
}

int reply_get_stats(struct wire_rd *r, struct reply_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->process_id = wire_get_u32(r);
	s->cpu_usage = get_f32(r);
	s->total_cpu_usage = get_f32(r);
	s->memory_usage = wire_get_u64(r);
	s->total_memory = wire_get_u64(r);
	s->available_memory = wire_get_u64(r);
	s->run_time = wire_get_u64(r);
	s->start_time = wire_get_u64(r);
	s->read_bytes = wire_get_u64(r);
	s->written_bytes = wire_get_u64(r);
	s->messages_size_bytes = wire_get_u64(r);
	s->streams_count = wire_get_u32(r);
	s->topics_count = wire_get_u32(r);
	s->partitions_count = wire_get_u32(r);
	s->segments_count = wire_get_u32(r);
	s->messages_count = wire_get_u64(r);
	s->clients_count = wire_get_u32(r);
	s->consumer_groups_count = wire_get_u32(r);
	wire_get_str32(r, &s->hostname);
	wire_get_str32(r, &s->os_name);
	wire_get_str32(r, &s->os_version);
	wire_get_str32(r, &s->kernel_version);
	wire_get_str32(r, &s->iggy_server_version);
	s->iggy_server_semver = wire_get_u32(r);
	s->cache_metrics_count = wire_get_u32(r);
	/* Checked against the bytes present first, so the product below cannot matter when it is large. */
	if (wire_rd_error(r) == 0 && wire_rd_left(r) / REPLY_CACHE_METRIC_SIZE < s->cache_metrics_count)
		wire_rd_fail(r, WIRE_E_SHORT);
	s->cache_metrics = wire_get_bytes(r, (size_t)s->cache_metrics_count * REPLY_CACHE_METRIC_SIZE);
	s->threads_count = wire_get_u32(r);
	s->free_disk_space = wire_get_u64(r);
	s->total_disk_space = wire_get_u64(r);
	return wire_rd_error(r);
}

void reply_stats_cache_metric(const struct reply_stats *s, uint32_t i, struct reply_cache_metric *m)
{
	const uint8_t *p = s->cache_metrics + (size_t)i * REPLY_CACHE_METRIC_SIZE;
	uint32_t u = frame_le32(p + 28);
	m->stream_id = frame_le32(p);
	m->topic_id = frame_le32(p + 4);
	m->partition_id = frame_le32(p + 8);
	m->hits = frame_le64(p + 12);
	m->misses = frame_le64(p + 20);
	memcpy(&m->hit_ratio, &u, 4);
}

void reply_put_leaders_node(struct wire_buf *b, const struct reply_leaders_node *n)
{
	wire_put_u32(b, n->id);
	wire_put_str8(b, n->host.ptr, n->host.len);
	wire_put_u16(b, n->tcp);
	wire_put_u16(b, n->quic);
	wire_put_u16(b, n->http);
}

int reply_get_leaders_node(struct wire_rd *r, struct reply_leaders_node *n)
{
	memset(n, 0, sizeof(*n));
	n->id = wire_get_u32(r);
	wire_get_str8(r, &n->host);
	n->tcp = wire_get_u16(r);
	n->quic = wire_get_u16(r);
	n->http = wire_get_u16(r);
	return wire_rd_error(r);
}

void reply_put_leaders_part(struct wire_buf *b, const struct reply_leaders_part *p)
{
	wire_put_u32(b, p->stream_id);
	wire_put_u32(b, p->topic_id);
	wire_put_u32(b, p->partition_id);
	wire_put_u32(b, p->leader);
	wire_put_u64(b, p->epoch);
	wire_put_u8(b, p->replica_count);
	for (uint8_t k = 0; k < p->replica_count; k++)
		wire_put_u32(b, p->ids != NULL ? p->ids[k] : reply_leaders_part_replica(p, k));
}

int reply_get_leaders_part(struct wire_rd *r, struct reply_leaders_part *p)
{
	memset(p, 0, sizeof(*p));
	p->stream_id = wire_get_u32(r);
	p->topic_id = wire_get_u32(r);
	p->partition_id = wire_get_u32(r);
	p->leader = wire_get_u32(r);
	p->epoch = wire_get_u64(r);
	p->replica_count = wire_get_u8(r);
	p->raw = wire_get_bytes(r, (size_t)p->replica_count * 4);
	return wire_rd_error(r);
}

uint32_t reply_leaders_part_replica(const struct reply_leaders_part *p, uint8_t k)
{
	return frame_le32(p->raw + (size_t)k * 4);
}

void reply_put_node_status(struct wire_buf *b, const struct reply_node_status *s)
{
	wire_put_u8(b, s->connected);
	wire_put_u8(b, s->role);
}

int reply_get_node_status(struct wire_rd *r, struct reply_node_status *s)
{
	s->connected = wire_get_u8(r);
	s->role = wire_get_u8(r);
	return wire_rd_error(r);
}

void reply_put_not_leader(struct wire_buf *b, const struct reply_not_leader *n)
{
	wire_put_u32(b, n->leader);
	wire_put_u64(b, n->epoch);
	wire_put_str8(b, n->host.ptr, n->host.len);
	wire_put_u16(b, n->tcp);
}

int reply_get_not_leader(struct wire_rd *r, struct reply_not_leader *n)
{
	memset(n, 0, sizeof(*n));
	n->leader = wire_get_u32(r);
	n->epoch = wire_get_u64(r);
	wire_get_str8(r, &n->host);
	n->tcp = wire_get_u16(r);
	return wire_rd_error(r);
}

void reply_put_sent(struct wire_buf *b, const struct reply_sent *s)
{
	wire_put_u32(b, s->stream_id);
	wire_put_u32(b, s->topic_id);
	wire_put_u32(b, s->partition_id);
	wire_put_u64(b, s->base_offset);
}

int reply_get_sent(struct wire_rd *r, struct reply_sent *s)
{
	s->stream_id = wire_get_u32(r);
	s->topic_id = wire_get_u32(r);
	s->partition_id = wire_get_u32(r);
	s->base_offset = wire_get_u64(r);
	return wire_rd_error(r);
}

void reply_put_pat_token(struct wire_buf *b, const struct reply_pat_token *t)
{
	wire_put_str8(b, t->token.ptr, t->token.len);
}

int reply_get_pat_token(struct wire_rd *r, struct reply_pat_token *t)
{
	memset(t, 0, sizeof(*t));
	wire_get_str8(r, &t->token);
	return wire_rd_error(r);
}

void reply_put_option_info(struct wire_buf *b, const struct reply_option_info *o)
{
	wire_put_name(b, o->key.ptr, o->key.len);
	wire_put_u8(b, o->kind);
	wire_put_str32(b, o->default_value.ptr, o->default_value.len);
	wire_put_str32(b, o->description.ptr, o->description.len);
}

int reply_get_option_info(struct wire_rd *r, struct reply_option_info *o)
{
	memset(o, 0, sizeof(*o));
	wire_get_name(r, &o->key);
	o->kind = wire_get_u8(r);
	wire_get_str32(r, &o->default_value);
	wire_get_str32(r, &o->description);
	return wire_rd_error(r);
}

void reply_put_login(struct wire_buf *b, const struct reply_login *l)
{
	wire_put_u32(b, l->user_id);
	wire_put_u64(b, l->session);
	wire_put_u32(b, l->protocol_version);
	wire_put_name(b, l->server_version.ptr, l->server_version.len);
}

int reply_get_login(struct wire_rd *r, struct reply_login *l)
{
	memset(l, 0, sizeof(*l));
	l->user_id = wire_get_u32(r);
	l->session = wire_get_u64(r);
	l->protocol_version = wire_get_u32(r);
	wire_get_name(r, &l->server_version);
	return wire_rd_error(r);
}
