/*
 * dedup — a bounded window of message ids. See dedup.h.
 *
 * A ring of `capacity` ids (the order of arrival) and an open-addressing hash table (linear probing, at
 * most half full) of ring slots. Evicting the oldest id deletes its table entry with backward-shift
 * deletion, so lookups never meet tombstones.
 */
#include "node/dedup.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define EMPTY UINT32_MAX

struct dedup {
	uint8_t (*ring)[16];
	uint32_t cap, n, head; /* head: the slot the next id goes to */
	uint32_t *table;
	uint32_t mask;
};

struct dedup *dedup_new(uint32_t capacity)
{
	if (capacity == 0)
		return NULL;
	struct dedup *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	uint32_t size = 16;
	while (size < capacity * 2u && size < (1u << 31))
		size *= 2;
	d->cap = capacity;
	d->mask = size - 1;
	d->ring = malloc((size_t)capacity * 16);
	d->table = malloc((size_t)size * sizeof(uint32_t));
	if (d->ring == NULL || d->table == NULL) {
		dedup_free(d);
		return NULL;
	}
	memset(d->table, 0xff, (size_t)size * sizeof(uint32_t));
	return d;
}

void dedup_free(struct dedup *d)
{
	if (d == NULL)
		return;
	free(d->ring);
	free(d->table);
	free(d);
}

static uint32_t home(const struct dedup *d, const uint8_t id[16])
{
	return (uint32_t)XXH3_64bits(id, 16) & d->mask;
}

bool dedup_seen(const struct dedup *d, const uint8_t id[16])
{
	if (d == NULL)
		return false;
	for (uint32_t i = home(d, id);; i = (i + 1) & d->mask) {
		uint32_t slot = d->table[i];
		if (slot == EMPTY)
			return false;
		if (memcmp(d->ring[slot], id, 16) == 0)
			return true;
	}
}

/* Deletes the table entry that points at ring slot `slot` (backward-shift deletion). */
static void table_remove(struct dedup *d, uint32_t slot)
{
	uint32_t i = home(d, d->ring[slot]);
	while (d->table[i] != slot)
		i = (i + 1) & d->mask;
	for (uint32_t j = (i + 1) & d->mask;; j = (j + 1) & d->mask) {
		uint32_t s = d->table[j];
		if (s == EMPTY)
			break;
		uint32_t h = home(d, d->ring[s]);
		/* Move s back to i unless its home lies cyclically in (i, j]. */
		bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
		if (!stays) {
			d->table[i] = s;
			i = j;
		}
	}
	d->table[i] = EMPTY;
}

void dedup_add(struct dedup *d, const uint8_t id[16])
{
	if (d == NULL || dedup_seen(d, id))
		return;
	uint32_t slot = d->head;
	if (d->n == d->cap)
		table_remove(d, slot);
	else
		d->n++;
	assert(d->n <= d->cap && slot < d->cap && 2 * d->n <= d->mask + 1); /* the table stays at most half full */
	memcpy(d->ring[slot], id, 16);
	uint32_t i = home(d, id);
	while (d->table[i] != EMPTY)
		i = (i + 1) & d->mask;
	d->table[i] = slot;
	d->head = (slot + 1) % d->cap;
}

uint32_t dedup_capacity(const struct dedup *d)
{
	return d ? d->cap : 0;
}

uint32_t dedup_count(const struct dedup *d)
{
	return d ? d->n : 0;
}
