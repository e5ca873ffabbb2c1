/*
 * libFuzzer target for the byte formats of transport/rnet (specified at the top of transport/rnet_wire.c):
 * the HELLO decoder and the frame splitter that every byte from another node goes through. They must
 * never crash or read out of bounds, and what they accept must encode back to the same bytes.
 *
 * The input is read as a HELLO (its first 120 bytes) and, after a 4-byte little-endian max_payload, as a
 * stream of frames split the way a connection's receive buffer is. The last check makes the proof's
 * direction label matter: the dialer's and the acceptor's proofs over the same fields always differ.
 * Seeds (tests/fuzz/corpus/rnet/) are a valid HELLO, HELLO + PROOF, and a few frame streams.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. transport/rnet_wire.c tests/fuzz/fuzz_rnet.c \
 *         $(pkg-config --cflags --libs libcrypto) -o /tmp/fuzz_rnet && /tmp/fuzz_rnet tests/fuzz/corpus/rnet
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/rnet_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                        \
	do {                                                                                               \
		if (!(cond))                                                                               \
			abort();                                                                           \
	} while (0)

static void hello(const uint8_t *data, size_t size)
{
	struct rnet__hello h;
	uint8_t again[120];
	CHECK(rnet__hello_decode(data, size < 119 ? size : 119, &h) != 0); /* short input never decodes */
	if (size < 120)
		return;
	if (rnet__hello_decode(data, 120, &h) != 0)
		return;
	CHECK(h.from != 0 && h.to != 0);
	rnet__hello_encode(again, &h);
	CHECK(memcmp(again, data, 120) == 0);

	if (size >= 152) {
		/* The fields decoded, used as a proof's input: the two directions never agree. */
		uint8_t pd[32], pa[32];
		CHECK(rnet__proof(pd, data + 120, 32, true, h.cluster, h.from, h.to, h.nonce, data + 88) == 0);
		CHECK(rnet__proof(pa, data + 120, 32, false, h.cluster, h.from, h.to, h.nonce, data + 88) == 0);
		CHECK(memcmp(pd, pa, 32) != 0);
	}
}

static void frames(const uint8_t *data, size_t size)
{
	if (size < 4)
		return;
	size_t max = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
	const uint8_t *b = data + 4;
	size_t avail = size - 4;
	for (;;) {
		struct rnet__frame f;
		int rc = rnet__frame_next(b, avail, max, &f);
		if (rc < 0)
			return;
		if (rc == 0) {
			CHECK(f.size > avail && f.size >= 8);
			return;
		}
		CHECK(rc == 1 && f.size == 8 + f.len && f.size <= avail && f.len <= max && f.payload == b + 8);
		CHECK(f.type == 0 || (f.type == 1 && f.len == 0 && f.kind == 0));
		uint8_t hdr[8];
		rnet__frame_header(hdr, f.type, f.kind, (uint32_t)f.len);
		CHECK(memcmp(hdr, b, 8) == 0);
		b += f.size;
		avail -= f.size;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	hello(data, size);
	frames(data, size);
	return 0;
}
