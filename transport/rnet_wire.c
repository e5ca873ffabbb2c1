/*
 * rnet_wire — the bytes of the node-to-node link. What the link does with them (TLS under them, the
 * order of the handshake's checks, queues, timers) is rnet.c's; this file owns the bytes.
 *
 * All integers are little-endian. A connection carries, in order: the handshake, then frames both ways.
 * With TLS, every byte below is TLS application data, unchanged.
 *
 * HELLO (120 bytes). The dialer sends one as soon as TCP connects; the acceptor answers with its own
 * once it has checked the dialer's.
 *
 *   offset size  field
 *        0    4  magic "GLRN" (0x47 0x4C 0x52 0x4E)
 *        4    2  version, 1
 *        6    2  flags, 0 (anything else is refused, so a later version can use them)
 *        8    8  sender node id (non-zero)
 *       16    8  intended receiver node id (non-zero): the dialer names the node it meant to reach, so
 *                a stale address that now leads to another member is refused by both ends
 *       24   32  sender's nonce (RAND_bytes, fresh per connection)
 *       56   64  cluster name, zero-padded (names are 1..64 bytes without NUL); compared byte for byte
 *
 * PROOF (32 bytes) = HMAC-SHA256(key = the cluster secret's bytes, message of 160 bytes:
 *
 *        0   16  direction label: "galgo rnet dial " from the dialer, "galgo rnet acpt " from the acceptor
 *       16   64  the cluster name field as in HELLO
 *       80    8  dialer id
 *       88    8  acceptor id
 *       96   32  dialer's nonce
 *      128   32  acceptor's nonce)
 *
 * The exchange is three messages:
 *
 *   dialer -> acceptor: HELLO(from = dialer, to = acceptor, dialer nonce)
 *   acceptor -> dialer: HELLO(from = acceptor, to = dialer, acceptor nonce) PROOF(acceptor label)
 *   dialer -> acceptor: PROOF(dialer label)
 *
 * A side is authenticated once it has checked the other's proof: the dialer after the second message
 * (it may send frames right behind its PROOF), the acceptor after the third. Each proof covers both fresh
 * nonces, so an old one cannot be replayed; the label makes the two directions' proofs differ, so a proof
 * reflected back to the node that made it fails; the ids and cluster are inside, so it cannot be moved to
 * another pair of nodes. Comparison is constant-time (CRYPTO_memcmp). A HELLO is refused for a wrong
 * magic, version, flags or cluster, a zero id, a receiver id that is not this node, a sender that is this
 * node or not in the roster, or a sender with a higher id than the acceptor (the lower id dials), and on
 * the dialer for a sender other than the peer it dialed. Every connection that reached TCP and closes
 * before it is authenticated, for any reason but this node's own shutdown, counts in auth_failures.
 * Until then the receiver reads exactly the handshake bytes it expects next into a buffer inside the
 * connection (at most 152 bytes in all) and allocates nothing else; bytes a peer sends ahead stay in
 * the kernel (with TLS: the SSL object and a 32 KiB ciphertext buffer too, and bytes a peer sends ahead
 * stay in TLS's buffers, at most what one read brought). At most 64 accepted connections may be unauthenticated at once, and the handshake
 * (including TCP connect on the dialer) must finish within 5 s and without a silence of idle_timeout_ms.
 * Known limit without TLS: only the handshake is authenticated. Frames carry no MAC and nothing is
 * encrypted, so the network between nodes must be trusted against an attacker on the path; with TLS,
 * every byte after the TLS handshake is encrypted and authenticated by TLS.
 *
 * FRAME (8-byte header, then the payload):
 *
 *        0    4  payload length (at most max_message_bytes of the receiver; larger closes the connection)
 *        4    1  type: 0 message, 1 keepalive (payload length 0, kind 0; never delivered); else closes
 *        5    1  kind (the user's tag for a message)
 *        6    2  reserved, 0 (else closes)
 */
#include "transport/rnet_wire.h"

#include <assert.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

static const uint8_t MAGIC[4] = {'G', 'L', 'R', 'N'};
static const char LABEL_DIAL[17] = "galgo rnet dial ";
static const char LABEL_ACPT[17] = "galgo rnet acpt ";

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

void rnet__hello_encode(uint8_t out[HELLO_SIZE], const struct rnet__hello *h)
{
	memcpy(out, MAGIC, 4);
	put16(out + 4, RNET_VERSION);
	put16(out + 6, 0);
	put64(out + 8, h->from);
	put64(out + 16, h->to);
	memcpy(out + 24, h->nonce, NONCE_SIZE);
	memcpy(out + 56, h->cluster, CLUSTER_FIELD);
}

/* 0, or -EPROTO for anything that is not a version-1 HELLO with two non-zero ids. */
int rnet__hello_decode(const uint8_t *b, size_t len, struct rnet__hello *h)
{
	if (len != HELLO_SIZE || memcmp(b, MAGIC, 4) != 0 || get16(b + 4) != RNET_VERSION || get16(b + 6) != 0)
		return -EPROTO;
	h->from = get64(b + 8);
	h->to = get64(b + 16);
	if (h->from == 0 || h->to == 0)
		return -EPROTO;
	memcpy(h->nonce, b + 24, NONCE_SIZE);
	memcpy(h->cluster, b + 56, CLUSTER_FIELD);
	return 0;
}

int rnet__proof(uint8_t out[PROOF_SIZE], const void *secret, size_t secret_len, bool from_dialer,
		const uint8_t cluster[CLUSTER_FIELD], uint64_t dialer, uint64_t acceptor,
		const uint8_t dialer_nonce[NONCE_SIZE], const uint8_t acceptor_nonce[NONCE_SIZE])
{
	uint8_t m[PROOF_MSG_SIZE];
	memcpy(m, from_dialer ? LABEL_DIAL : LABEL_ACPT, 16);
	memcpy(m + 16, cluster, CLUSTER_FIELD);
	put64(m + 80, dialer);
	put64(m + 88, acceptor);
	memcpy(m + 96, dialer_nonce, NONCE_SIZE);
	memcpy(m + 128, acceptor_nonce, NONCE_SIZE);
	unsigned int outlen = 0;
	if (HMAC(EVP_sha256(), secret, (int)secret_len, m, sizeof m, out, &outlen) == NULL || outlen != PROOF_SIZE)
		return -EIO;
	return 0;
}

void rnet__frame_header(uint8_t out[FRAME_HDR], uint8_t type, uint8_t kind, uint32_t len)
{
	/* Never a header rnet__frame_next would refuse. */
	assert(type <= FRAME_KEEPALIVE && (type != FRAME_KEEPALIVE || (len == 0 && kind == 0)));
	put32(out, len);
	out[4] = type;
	out[5] = kind;
	put16(out + 6, 0);
}

/*
 * The frame at the start of b[0, avail): 1 with *f filled when it is complete, 0 when more bytes are
 * needed (f->size says how many in all: the header, or the whole frame once the header is there), or
 * -EMSGSIZE / -EPROTO for a frame that must close the connection.
 */
int rnet__frame_next(const uint8_t *b, size_t avail, size_t max_payload, struct rnet__frame *f)
{
	f->size = FRAME_HDR;
	if (avail < FRAME_HDR)
		return 0;
	uint32_t len = get32(b);
	f->type = b[4];
	f->kind = b[5];
	if (get16(b + 6) != 0 || f->type > FRAME_KEEPALIVE)
		return -EPROTO;
	if (f->type == FRAME_KEEPALIVE && (len != 0 || f->kind != 0))
		return -EPROTO;
	if (len > max_payload)
		return -EMSGSIZE;
	f->len = len;
	f->size = FRAME_HDR + (size_t)len;
	if (avail < f->size)
		return 0;
	f->payload = b + FRAME_HDR;
	return 1;
}
