/*
 * sim — the core of Galgo's deterministic simulations: one virtual clock (milliseconds), a seeded random
 * source and one queue of events ordered by (time, order of scheduling), so that a run is a pure function
 * of its seed. The Raft group simulation (tests/unit/test_raft.c) and the whole-node simulation
 * (tests/sim/test_sim_nodes.c) step it event by event.
 *
 * A datagram network is included (sim_net): every message is a copy queued as an event for its
 * destination after a random delay (so messages overtake each other), unless the link is cut or the
 * message is dropped at random. With `fifo` set, a link keeps its order (a message is never delivered
 * before one sent earlier on the same link), as a TCP connection does; its epoch counts the connection's
 * resets, and a message from an earlier epoch is lost (sim_net_reset).
 *
 * Nothing here knows Galgo: an event carries an owner-defined kind, a subject node, a sender, an
 * incarnation and an optional byte buffer.
 */
#ifndef GALGO_SIM_H
#define GALGO_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_MAX_NODES 8

struct sim_event {
	uint64_t time, seq;
	int kind;      /* the owner's event kind */
	int node;      /* destination or subject, 1-based (0: none) */
	int from;      /* sender of a message */
	uint32_t inc;  /* incarnation of the subject the event belongs to, or the link epoch of a message */
	uint32_t tag;  /* owner-defined (a message kind) */
	uint8_t *buf;  /* owned by the event: the receiver frees it */
	size_t len;
};

struct sim {
	uint64_t now;  /* virtual milliseconds */
	uint64_t seq;
	uint64_t rng;
	uint64_t events; /* popped so far */
	struct sim_event *heap;
	size_t n_heap, cap_heap;
};

/* Starts a simulation at time 0 with the random source seeded by `seed`. */
void sim_init(struct sim *s, uint64_t seed);
/* Frees the queue and the buffers of the events still in it. */
void sim_free(struct sim *s);

/* Deterministic randomness (splitmix64). */
uint64_t sim_rand(struct sim *s);
/* Uniform in lo..hi, both included (hi >= lo). */
uint64_t sim_rand_in(struct sim *s, uint64_t lo, uint64_t hi);
/* True with probability pct percent. */
bool sim_chance(struct sim *s, unsigned pct);

/* Queues an event (its seq is set here: events of equal time run in the order they were queued). */
void sim_push(struct sim *s, struct sim_event e);
/* Removes and returns the earliest event; the queue must not be empty. */
struct sim_event sim_pop(struct sim *s);
/* Time of the earliest event, UINT64_MAX when there is none. */
uint64_t sim_next_time(const struct sim *s);

/* ---- The datagram network ---- */

struct sim_net {
	int kind;                /* the event kind of a delivered message */
	unsigned drop_pct;       /* messages lost at random, percent */
	unsigned min_ms, max_ms; /* delivery delay */
	bool fifo;               /* links keep their order (TCP) */
	bool cut[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
	uint32_t epoch[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
	uint64_t last_at[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* delivery time of the latest message queued */
	uint64_t sent, dropped;
};

void sim_net_init(struct sim_net *n, int kind, unsigned min_ms, unsigned max_ms);

/*
 * Sends a copy of buf from `from` to `to`: queued as an event of n->kind (tag and the link's epoch in
 * it), or lost when the link is cut or the message is dropped (returns false).
 */
bool sim_net_send(struct sim *s, struct sim_net *n, int from, int to, uint32_t tag, const void *buf, size_t len);

/* Whether a message event may be delivered now: its link is not cut and has not been reset since. */
bool sim_net_deliverable(const struct sim_net *n, const struct sim_event *e);

/* Cuts or heals both directions between a and b. */
void sim_net_cut(struct sim_net *n, int a, int b, bool cut);
/* Separates `side` (a bitmask of node ids, bit i for node i) from the other nodes of 1..count. */
void sim_net_partition(struct sim_net *n, int count, unsigned side);
/* Heals every link. */
void sim_net_heal(struct sim_net *n);
/* Loses every message in flight between a and b, both ways (a connection reset). */
void sim_net_reset(struct sim_net *n, int a, int b);

#endif /* GALGO_SIM_H */
