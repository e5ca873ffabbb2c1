/*
 * clock — how far this node's wall clock is from its peers', and whether it is too far to be trusted.
 *
 * Every second a node sends each connected peer a probe on the node-to-node link (node/cluster.c, kind
 * CLOCK); the peer answers at once with its wall clock. From one round trip (the NTP estimate):
 *
 *     offset = t_peer - (t_sent + rtt / 2),   error bound = rtt / 2,
 *
 * where t_sent is this node's wall clock when it sent the probe, t_peer the peer's wall clock in the
 * answer, and rtt the round trip measured on the monotonic clock (so a wall-clock jump during the trip
 * does not distort it). A positive offset: the peer's clock is ahead of this node's.
 *
 * Each peer keeps its last CLK_SAMPLES samples; its estimate is the sample with the smallest round trip
 * among those younger than CLK_MAX_AGE_US (the tightest bound). A peer with no such sample is unknown.
 *
 * Skew (CockroachDB's maximum clock offset is the model). A peer disagrees with this node when
 * |offset| - error > max_offset. This node's clock is untrusted ("skewed") when the nodes that do not
 * disagree with it, itself included and unknown peers counted as agreeing, are not a majority of the
 * cluster: in a cluster of three, a node whose clock is off from both others is skewed, and the two others
 * are not (each agrees with itself and the third). A skewed node leads no partition and stamps no
 * timestamp (node/srv_house.c clock_tick, node/srv_send.c). Two-node clusters: a disagreement makes both nodes skewed.
 */
#ifndef GALGO_NODE_CLOCK_H
#define GALGO_NODE_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#define CLK_MAX_PEERS 32
#define CLK_SAMPLES 8
#define CLK_MAX_AGE_US (30u * 1000000u)

struct clk_sample {
	int64_t offset_us;
	uint64_t rtt_us;
	uint64_t at_us; /* monotonic time of the answer */
};

struct clk_peer {
	uint64_t id;
	struct clk_sample s[CLK_SAMPLES];
	unsigned n, next;
};

struct clk {
	uint64_t max_offset_us;
	struct clk_peer peers[CLK_MAX_PEERS];
	unsigned n_peers;
};

/* An estimator for a cluster whose nodes may disagree by at most max_offset_us. */
void clk_init(struct clk *c, uint64_t max_offset_us);

/*
 * Records one answered probe from `peer`: sent_wall_us (this node's wall clock when sent), peer_wall_us
 * (the peer's in its answer), sent_mono_us and now_mono_us (this node's monotonic clock at sending and on
 * the answer). Ignored when the monotonic times go backwards or the peer table is full.
 */
void clk_sample(struct clk *c, uint64_t peer, uint64_t sent_wall_us, uint64_t peer_wall_us, uint64_t sent_mono_us,
		uint64_t now_mono_us);

/* The current estimate for `peer`: true and its offset and error bound, or false when it is unknown. */
bool clk_offset(const struct clk *c, uint64_t peer, uint64_t now_mono_us, int64_t *offset_us, uint64_t *error_us);

/* Whether `peer` disagrees with this node (|offset| - error > max_offset). */
bool clk_disagrees(const struct clk *c, uint64_t peer, uint64_t now_mono_us);

/* Whether this node's clock is skewed in a cluster of n_nodes (itself included) whose other ids are `peers`. */
bool clk_skewed(const struct clk *c, const uint64_t *peers, unsigned n_peers, unsigned n_nodes, uint64_t now_mono_us);

#endif
