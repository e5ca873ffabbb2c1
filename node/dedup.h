/*
 * dedup — a bounded window of recently seen message ids (16 bytes each) with O(1) lookup.
 *
 * The window remembers the last `capacity` ids added; adding one more forgets the oldest. A partition of a
 * topic with a deduplication window keeps one, fed with the ids of the messages it stores; a message whose
 * id is in the window is dropped as a retry (id 0 means "no id" and is never deduplicated). The window is
 * derived from the log itself (rebuilt from the last `capacity` messages at start), so it needs no state
 * of its own on disk and every replica derives the same one.
 */
#ifndef GALGO_DEDUP_H
#define GALGO_DEDUP_H

#include <stdbool.h>
#include <stdint.h>

struct dedup;

struct dedup *dedup_new(uint32_t capacity);
void dedup_free(struct dedup *d);
bool dedup_seen(const struct dedup *d, const uint8_t id[16]);
void dedup_add(struct dedup *d, const uint8_t id[16]);
uint32_t dedup_capacity(const struct dedup *d);
uint32_t dedup_count(const struct dedup *d);

#endif /* GALGO_DEDUP_H */
