/*
 * reply — Iggy's reply structures (reference §2.4): one plain struct per structure, an encoder that the
 * server writes it with and a decoder that the HTTP JSON mapping and the C client read it with.
 *
 * All integers are little-endian; a name is [len u8][bytes] (1..255 bytes of UTF-8); an options block is
 * [len u32][options] (wire.h). Fields in order:
 *
 *   StreamHeader   id u32, created_at u64 (µs), topics_count u32, size u64 (bytes), messages_count u64,
 *                  name, options block (empty: a stream has no options).
 *                  GetStreams is StreamHeaders end to end; GetStream and CreateStream one StreamHeader,
 *                  GetStream followed by the stream's TopicHeaders.
 *   TopicHeader    id u32, created_at u64, partitions_count u32, message_expiry u64 (µs; u64 max =
 *                  never), compression_algorithm u8 (1 none, 2 gzip), max_topic_size u64 (bytes; u64 max
 *                  = unlimited), size u64, messages_count u64, name, explicit options block (the settings
 *                  that differ from the defaults), derived options block.
 *                  GetTopics is TopicHeaders end to end; GetTopic and CreateTopic one TopicHeader, GetTopic
 *                  followed by partitions_count Partitions.
 *   Partition      id u32, created_at u64, segments_count u32, current_offset u64 (the last offset, 0 when
 *                  empty), size u64, messages_count u64: 40 bytes.
 *   PolledMessages prefix: partition_id u32, current_offset u64, count u32 (16 bytes), then the batches
 *                  (batch.h) end to end.
 *
 * A decoder reads one structure from a wire_rd and returns wire_rd_error: on an error the struct is
 * partly filled and must not be used. Names and options point into the decoded bytes.
 */
#ifndef GALGO_PROTO_REPLY_H
#define GALGO_PROTO_REPLY_H

#include <stdint.h>

#include "proto/wire.h"

struct reply_stream {
	uint32_t id;
	uint64_t created_at;
	uint32_t topics_count;
	uint64_t size_bytes;
	uint64_t messages_count;
	struct wire_str name;
	struct wire_opts options;
};

void reply_put_stream(struct wire_buf *b, const struct reply_stream *s);
int reply_get_stream(struct wire_rd *r, struct reply_stream *s);

struct reply_topic {
	uint32_t id;
	uint64_t created_at;
	uint32_t partitions_count;
	uint64_t message_expiry;
	uint8_t compression;
	uint64_t max_topic_size;
	uint64_t size_bytes;
	uint64_t messages_count;
	struct wire_str name;
	struct wire_opts options; /* explicit */
	struct wire_opts derived;
};

void reply_put_topic(struct wire_buf *b, const struct reply_topic *t);
int reply_get_topic(struct wire_rd *r, struct reply_topic *t);

#define REPLY_PARTITION_SIZE 40

struct reply_partition {
	uint32_t id;
	uint64_t created_at;
	uint32_t segments_count;
	uint64_t current_offset;
	uint64_t size_bytes;
	uint64_t messages_count;
};

void reply_put_partition(struct wire_buf *b, const struct reply_partition *p);
int reply_get_partition(struct wire_rd *r, struct reply_partition *p);

#define REPLY_POLLED_PREFIX_SIZE 16

struct reply_polled {
	uint32_t partition_id;
	uint64_t current_offset;
	uint32_t count;
};

void reply_encode_polled(uint8_t out[REPLY_POLLED_PREFIX_SIZE], const struct reply_polled *p);
int reply_get_polled(struct wire_rd *r, struct reply_polled *p);

#endif /* GALGO_PROTO_REPLY_H */
