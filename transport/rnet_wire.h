/*
 * rnet_wire — the bytes of the node-to-node link (specified at the top of rnet_wire.c): the handshake
 * messages, the proof and the frame header, as pure functions with no I/O. rnet.c and the fuzzer
 * (tests/fuzz/fuzz_rnet.c) use them; the node layer does not (rnet.h is its interface).
 */
#ifndef GALGO_TRANSPORT_RNET_WIRE_H
#define GALGO_TRANSPORT_RNET_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HELLO_SIZE 120
#define PROOF_SIZE 32
#define NONCE_SIZE 32
#define CLUSTER_FIELD 64
#define PROOF_MSG_SIZE 160
#define FRAME_HDR 8
#define FRAME_MESSAGE 0
#define FRAME_KEEPALIVE 1
#define RNET_VERSION 1

struct rnet__hello {
	uint64_t from, to;
	uint8_t nonce[NONCE_SIZE];
	uint8_t cluster[CLUSTER_FIELD];
};
struct rnet__frame {
	uint8_t type, kind;
	const uint8_t *payload;
	size_t len;  /* payload bytes */
	size_t size; /* header + payload: the bytes this frame takes, or needs when incomplete */
};
void rnet__hello_encode(uint8_t out[HELLO_SIZE], const struct rnet__hello *h);
int rnet__hello_decode(const uint8_t *b, size_t len, struct rnet__hello *h);
int rnet__proof(uint8_t out[PROOF_SIZE], const void *secret, size_t secret_len, bool from_dialer,
		const uint8_t cluster[CLUSTER_FIELD], uint64_t dialer, uint64_t acceptor,
		const uint8_t dialer_nonce[NONCE_SIZE], const uint8_t acceptor_nonce[NONCE_SIZE]);
int rnet__frame_next(const uint8_t *b, size_t avail, size_t max_payload, struct rnet__frame *f);
void rnet__frame_header(uint8_t out[FRAME_HDR], uint8_t type, uint8_t kind, uint32_t len);

#endif
