/*
 * simnet — transport/rnet's interface served by a simulated network, for whole nodes in one process.
 *
 * Linked with `--wrap` for every rnet function node/cluster.c calls (SIMNET_WRAPS in CMakeLists.txt), so
 * a node's rnet_open gets a simulated endpoint; galgod links the real rnet only.
 *
 * The model is rnet's: one connection per pair of nodes, in order, best effort. A message travels as an
 * event of the simulation (tests/sim/sim.h, sim_net with fifo) after a random delay; a connection reset
 * (simnet_reset, or a node that stops) loses what was in flight and takes the connection down, and it is
 * dialed again after a random backoff (50..1000 ms, checked every simnet_tick). A cut link
 * (simnet_cut, sim_net's partitions) loses every message silently, as a partition does: both sides still
 * believe the connection up, hear nothing (rnet_silent_ms grows), and close it after the idle timeout
 * (5 s). A connection that is up and not cut is heard at least every second (rnet's keepalives).
 * rnet_sendv on a connection that is down answers -ENOTCONN, as rnet does.
 */
#ifndef GALGO_SIMNET_H
#define GALGO_SIMNET_H

#include <stdbool.h>
#include <stdint.h>

#include "tests/sim/sim.h"

#define SIMNET_IDLE_MS 5000
#define SIMNET_KEEPALIVE_MS 1000

/* Binds the simulated network to a simulation; messages are events of `kind` for `nodes` nodes. */
void simnet_init(struct sim *s, int kind, int nodes, unsigned min_ms, unsigned max_ms);
void simnet_free(void);
/* The underlying sim_net (its cut matrix, counters). */
struct sim_net *simnet_net(void);

/* Delivers a message event to its node's rnet (dropped when the connection or the node is gone). Frees its buffer. */
void simnet_deliver(struct sim_event *e);
/* Connection upkeep (dial after backoff, close after the idle timeout); call it every 50 ms or so. */
void simnet_tick(void);
/* Resets the connection between a and b (in flight lost, down until redialed). */
void simnet_reset(int a, int b);
/* Cuts or heals the link between a and b. */
void simnet_cut(int a, int b, bool cut);
/* Whether node `node` has an open rnet endpoint. */
bool simnet_open(int node);

#endif /* GALGO_SIMNET_H */
