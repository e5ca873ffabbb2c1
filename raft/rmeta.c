/*
 * rmeta — durable term and vote per Raft group. See rmeta.h for the behaviour.
 *
 * File `raft.meta`: a sequence of 1024-byte pairs. Pair p occupies bytes [1024 p, 1024 p + 1024) and
 * belongs to at most one group. It holds two copies, copy 0 at byte 1024 p and copy 1 at 1024 p + 512,
 * each a 64-byte record at the start of its own 512-byte sector (the remaining 448 bytes of each sector
 * are never written), so that a torn sector write can damage only the copy being written. The file may
 * end inside its last pair; missing bytes read as zero.
 *
 * Record (all integers little-endian):
 *
 *     off size field
 *       0    4 magic      0x544d5247 (bytes "GRMT")
 *       4    1 version    1
 *       5    3 reserved   0
 *       8    8 group      Raft group id, non-zero
 *      16    8 seq        1 for the first record of the pair, each later write seq + 1
 *      24    8 term       currentTerm
 *      32    8 voted_for  votedFor (0: no vote in this term)
 *      40   16 reserved   0
 *      56    8 check      XXH3_64bits of bytes 0..56
 *
 * A copy is "empty" when all 64 bytes are zero and "valid" when magic, version, the reserved bytes, a
 * non-zero group and check all hold.
 *
 * Writing. rmeta_set writes the new record to copy 0 and fdatasyncs, then to copy 1 and fdatasyncs, and
 * only then returns. So when no write is in progress both copies hold the same record, and a power loss
 * during a write leaves one copy with the old or new record and the other with the new one, the old one or
 * torn bytes. Either copy alone is therefore enough to know the last acknowledged value, which lets damage
 * to one copy be survived (and repaired) and damage to both be detected, never mistaken for an old value
 * (a Raft server that forgot its vote could vote twice in one term).
 *
 * Reading a pair:
 *   - both copies empty, or one empty and the other neither empty nor valid (the first write of a new pair
 *     was torn; nothing depended on it since rmeta_set had not returned): the pair is free;
 *   - one copy valid and the other empty or not valid: that record;
 *   - both valid for the same group: the one with the greater seq (equal when no write was interrupted);
 *   - anything else (two different groups, both copies damaged) is damage: rmeta_open fails with -EBADMSG.
 * A group found valid in two pairs is damage too. A pair whose copies differ is rewritten at open so that
 * both hold the chosen record again (rmeta_repaired counts them). Damage is reported pair by pair
 * (rmeta_open_ex), with the group ids its copies name (read from bytes 8..16 of a copy whose magic holds,
 * even when its check fails); in salvage mode the damaged pairs are zeroed instead (both copies, each
 * followed by an fdatasync) and their groups have no record from then on.
 *
 * Dropping a group zeroes copy 0, then copy 1, each followed by an fdatasync; a power loss in between
 * leaves either the group with its current record (the drop did not happen) or a free pair.
 */
#include "raft/rmeta.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "partition/record.h"

#define RMETA_MAGIC 0x544d5247u
#define RMETA_VERSION 1
#define RMETA_REC 64
#define RMETA_COPY 512
#define RMETA_PAIR 1024

struct slot {
	uint64_t group;
	uint64_t seq;
	uint64_t term;
	uint64_t voted_for;
	uint32_t pair;
	bool known; /* false for a new group whose first write failed: it keeps its pair, but has no value */
};

struct rmeta {
	struct pio *pio;
	struct pio_file *f;
	struct slot *slots; /* sorted by group */
	size_t n, cap;
	bool *pair_used;
	uint32_t n_pairs;
	size_t repaired;
	bool salvage;
	struct rmeta_report *rep;
};

static int write_pair(struct rmeta *m, uint32_t pair, const uint8_t rec[RMETA_REC]);

static void rec_encode(const struct slot *s, uint8_t out[RMETA_REC])
{
	assert(s->group != 0); /* never a record that would read back as invalid or free */
	memset(out, 0, RMETA_REC);
	record_put32(out, RMETA_MAGIC);
	out[4] = RMETA_VERSION;
	record_put64(out + 8, s->group);
	record_put64(out + 16, s->seq);
	record_put64(out + 24, s->term);
	record_put64(out + 32, s->voted_for);
	record_put64(out + 56, XXH3_64bits(out, 56));
}

static bool rec_empty(const uint8_t *p)
{
	for (size_t i = 0; i < RMETA_REC; i++)
		if (p[i] != 0)
			return false;
	return true;
}

static bool rec_decode(const uint8_t *p, struct slot *s)
{
	if (record_le32(p) != RMETA_MAGIC || p[4] != RMETA_VERSION || p[5] || p[6] || p[7])
		return false;
	for (size_t i = 40; i < 56; i++)
		if (p[i] != 0)
			return false;
	if (record_le64(p + 56) != XXH3_64bits(p, 56))
		return false;
	s->group = record_le64(p + 8);
	s->seq = record_le64(p + 16);
	s->term = record_le64(p + 24);
	s->voted_for = record_le64(p + 32);
	return s->group != 0;
}

/* Binary search: the position of group, or where it would be inserted. */
static size_t find(const struct rmeta *m, uint64_t group, bool *found)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->slots[mid].group < group)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < m->n && m->slots[lo].group == group;
	return lo;
}

static int insert(struct rmeta *m, size_t at, const struct slot *s)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct slot *v = realloc(m->slots, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		m->slots = v;
		m->cap = cap;
	}
	/* Slots stay sorted by group, one per group. */
	assert(at <= m->n && (at == 0 || m->slots[at - 1].group < s->group) &&
	       (at == m->n || m->slots[at].group > s->group));
	assert(s->pair < m->n_pairs && !m->pair_used[s->pair]);
	memmove(&m->slots[at + 1], &m->slots[at], (m->n - at) * sizeof(*m->slots));
	m->slots[at] = *s;
	m->n++;
	return 0;
}

static int grow_pairs(struct rmeta *m, uint32_t n_pairs)
{
	if (n_pairs <= m->n_pairs)
		return 0;
	bool *u = realloc(m->pair_used, n_pairs * sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	memset(u + m->n_pairs, 0, (n_pairs - m->n_pairs) * sizeof(*u));
	m->pair_used = u;
	m->n_pairs = n_pairs;
	return 0;
}

/* The group id a copy names, read whether or not its check holds (0 when its magic does not). */
static uint64_t rec_group_raw(const uint8_t *p)
{
	return record_le32(p) == RMETA_MAGIC ? record_le64(p + 8) : 0;
}

/*
 * A damaged pair: reported; then -EBADMSG, or in salvage mode the pair is zeroed and freed (a group found
 * in two pairs loses both: neither record can be trusted over the other).
 */
static int damaged(struct rmeta *m, uint32_t pair, const char *what, const uint8_t *c0, const uint8_t *c1,
		   bool v0, bool v1)
{
	if (m->rep != NULL) {
		if (m->rep->n < RMETA_MAX_DAMAGE) {
			struct rmeta_damage *d = &m->rep->d[m->rep->n];
			d->pair = pair;
			d->what = what;
			d->groups[0] = rec_group_raw(c0);
			d->groups[1] = rec_group_raw(c1);
			d->verified[0] = v0;
			d->verified[1] = v1;
		}
		m->rep->n++;
	}
	if (!m->salvage)
		return -EBADMSG;
	static const uint8_t zero[RMETA_REC];
	return write_pair(m, pair, zero);
}

/* Interprets one pair read from the file (see the header comment). */
static int load_pair(struct rmeta *m, uint32_t pair, const uint8_t *c0, const uint8_t *c1)
{
	struct slot a, b;
	bool va = rec_decode(c0, &a), vb = rec_decode(c1, &b);
	bool ea = rec_empty(c0), eb = rec_empty(c1);
	struct slot s;
	if (va && vb) {
		if (a.group != b.group)
			return damaged(m, pair, "two groups in one pair", c0, c1, va, vb);
		s = a.seq >= b.seq ? a : b;
	} else if (va) {
		s = a;
	} else if (vb) {
		s = b;
	} else if (ea || eb) {
		return 0; /* free, or a torn first write */
	} else {
		return damaged(m, pair, "both copies unreadable", c0, c1, va, vb);
	}
	s.pair = pair;
	s.known = true;
	bool found;
	size_t at = find(m, s.group, &found);
	if (found) {
		int rv = damaged(m, pair, "a group in two pairs", c0, c1, va, vb);
		if (rv == 0) {
			/* Salvage: the other pair of that group goes too. */
			uint32_t other = m->slots[at].pair;
			static const uint8_t zero[RMETA_REC];
			rv = write_pair(m, other, zero);
			if (rv == 0) {
				m->pair_used[other] = false;
				memmove(&m->slots[at], &m->slots[at + 1], (m->n - at - 1) * sizeof(*m->slots));
				m->n--;
			}
		}
		return rv;
	}
	int rv = 0;
	if (!va || !vb || a.seq != b.seq) {
		/* An interrupted write or a damaged copy: both copies hold the chosen record again. */
		uint8_t rec[RMETA_REC];
		rec_encode(&s, rec);
		rv = write_pair(m, pair, rec);
		m->repaired++;
	}
	if (rv == 0)
		rv = insert(m, at, &s);
	if (rv == 0)
		m->pair_used[pair] = true;
	return rv;
}

int rmeta_open(struct pio *pio, const char *dir, struct rmeta **out)
{
	return rmeta_open_ex(pio, dir, false, NULL, out);
}

int rmeta_open_ex(struct pio *pio, const char *dir, bool salvage, struct rmeta_report *rep, struct rmeta **out)
{
	char path[4096];
	if (rep != NULL)
		memset(rep, 0, sizeof(*rep));
	if (snprintf(path, sizeof(path), "%s/%s", dir, RMETA_FILE) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	struct rmeta *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->pio = pio;
	m->salvage = salvage;
	m->rep = rep;
	uint8_t *buf = NULL;
	int rv = pio_mkdir(pio, dir);
	if (rv != 0)
		goto fail;
	rv = pio_open(pio, path, PIO_RDWR, &m->f);
	if (rv == -ENOENT) {
		/* A new file: its existence is made durable before any record is trusted to it. */
		rv = pio_open(pio, path, PIO_CREATE | PIO_RDWR, &m->f);
		if (rv == 0)
			rv = pio_datasync(pio, m->f);
		if (rv == 0)
			rv = pio_syncdir(pio, dir);
	}
	if (rv != 0)
		goto fail;
	uint64_t size;
	rv = pio_size(pio, m->f, &size);
	if (rv != 0)
		goto fail;
	if (size > (uint64_t)UINT32_MAX * RMETA_PAIR) {
		rv = -EFBIG;
		goto fail;
	}
	uint32_t n_pairs = (uint32_t)((size + RMETA_PAIR - 1) / RMETA_PAIR);
	rv = grow_pairs(m, n_pairs);
	if (rv != 0)
		goto fail;
	buf = calloc(1, (size_t)n_pairs * RMETA_PAIR + 1);
	if (buf == NULL) {
		rv = -ENOMEM;
		goto fail;
	}
	for (uint64_t off = 0; off < size;) {
		ssize_t got = pio_pread(pio, m->f, buf + off, (size_t)(size - off), off);
		if (got < 0) {
			rv = (int)got;
			goto fail;
		}
		if (got == 0)
			break;
		off += (uint64_t)got;
	}
	bool bad = false;
	for (uint32_t p = 0; p < n_pairs; p++) {
		const uint8_t *base = buf + (size_t)p * RMETA_PAIR;
		rv = load_pair(m, p, base, base + RMETA_COPY);
		if (rv == -EBADMSG && !salvage) {
			bad = true; /* every damaged pair is reported before failing */
			continue;
		}
		if (rv != 0)
			goto fail;
	}
	if (bad) {
		rv = -EBADMSG;
		goto fail;
	}
	free(buf);
	m->rep = NULL;
	*out = m;
	return 0;
fail:
	free(buf);
	rmeta_close(m);
	return rv;
}

void rmeta_close(struct rmeta *m)
{
	if (m == NULL)
		return;
	if (m->f != NULL)
		pio_close(m->pio, m->f);
	free(m->slots);
	free(m->pair_used);
	free(m);
}

int rmeta_get(const struct rmeta *m, uint64_t group, uint64_t *term, uint64_t *voted_for)
{
	bool found;
	size_t at = find(m, group, &found);
	found = found && m->slots[at].known;
	*term = found ? m->slots[at].term : 0;
	*voted_for = found ? m->slots[at].voted_for : 0;
	return found ? 0 : -ENOENT;
}

/* Writes 64 bytes at a copy's offset and makes them durable. */
static int write_copy(struct rmeta *m, uint32_t pair, uint8_t copy, const uint8_t rec[RMETA_REC])
{
	assert(copy <= 1 && pair < m->n_pairs);
	struct iovec iov = {(void *)rec, RMETA_REC};
	uint64_t off = (uint64_t)pair * RMETA_PAIR + (uint64_t)copy * RMETA_COPY;
	int rv = pio_pwritev(m->pio, m->f, &iov, 1, off);
	if (rv == 0)
		rv = pio_datasync(m->pio, m->f);
	return rv;
}

/* Writes a record to copy 0, then copy 1, each durably (see the header comment). */
static int write_pair(struct rmeta *m, uint32_t pair, const uint8_t rec[RMETA_REC])
{
	int rv = write_copy(m, pair, 0, rec);
	if (rv == 0)
		rv = write_copy(m, pair, 1, rec);
	return rv;
}

int rmeta_set(struct rmeta *m, uint64_t group, uint64_t term, uint64_t voted_for)
{
	if (group == 0)
		return -EINVAL;
	bool found;
	size_t at = find(m, group, &found);
	struct slot s;
	if (found) {
		s = m->slots[at];
		/* currentTerm only increases (dissertation §3.3): the record never goes back to an older term. */
		assert(!s.known || term >= s.term);
		if (s.known && s.term == term && s.voted_for == voted_for)
			return 0;
	} else {
		uint32_t p = 0;
		while (p < m->n_pairs && m->pair_used[p])
			p++;
		if (p == UINT32_MAX)
			return -ENOSPC;
		int rv = grow_pairs(m, p + 1);
		if (rv != 0)
			return rv;
		assert(!m->pair_used[p]); /* a new group never shares a pair */
		memset(&s, 0, sizeof(s));
		s.group = group;
		s.pair = p;
	}
	struct slot next = s;
	next.seq++;
	next.term = term;
	next.voted_for = voted_for;
	next.known = true;
	uint8_t rec[RMETA_REC];
	rec_encode(&next, rec);
	int rv = write_pair(m, s.pair, rec);
	if (rv == 0)
		s = next;
	else
		s.seq = next.seq; /* the attempted record may be on disk: a later write must not reuse its seq */
	if (found) {
		m->slots[at] = s;
		return rv;
	}
	/*
	 * A new group keeps its pair even if the write failed, so that no other group is given a pair that
	 * may hold its (unacknowledged) record, and its next write goes to the same pair.
	 */
	int rv2 = insert(m, at, &s);
	if (rv2 == 0)
		m->pair_used[s.pair] = true;
	return rv != 0 ? rv : rv2;
}

int rmeta_drop(struct rmeta *m, uint64_t group)
{
	bool found;
	size_t at = find(m, group, &found);
	if (!found)
		return 0;
	uint8_t zero[RMETA_REC] = {0};
	uint32_t pair = m->slots[at].pair;
	assert(m->pair_used[pair]);
	int rv = write_pair(m, pair, zero);
	if (rv != 0)
		return rv;
	m->pair_used[pair] = false;
	memmove(&m->slots[at], &m->slots[at + 1], (m->n - at - 1) * sizeof(*m->slots));
	m->n--;
	return 0;
}

size_t rmeta_count(const struct rmeta *m)
{
	return m->n;
}

size_t rmeta_repaired(const struct rmeta *m)
{
	return m->repaired;
}
