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
