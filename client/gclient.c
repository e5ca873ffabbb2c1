/*
 * gclient — the blocking Iggy protocol client. See gclient.h for the API and its conventions.
 *
 * Every request goes through send_request (header + up to two body pieces in one sendmsg) and every
 * reply through read_reply, which reads one frame, checks the echo of the request number and the
 * operation, and turns the three error channels into a return code. A transport error or a reply that
 * breaks the protocol marks the client broken, since the replies that follow could no longer be
 * matched to their requests.
 */
#include "client/gclient.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "proto/batch.h"
#include "proto/reply.h"
#include "proto/frame.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_IO_TIMEOUT_MS 30000
#define POLL_PREFIX_SIZE REPLY_POLLED_PREFIX_SIZE

/* Iggy error codes the client produces from evictions or refuses locally with. */
enum {
	IGGY_INVALID_COMMAND = 3,
	IGGY_INVALID_FORMAT = 4,
	IGGY_STALE_CLIENT = 30,
	IGGY_UNAUTHENTICATED = 40,
	IGGY_INVALID_CREDENTIALS = 42,
	IGGY_INVALID_PAT = 53,
	IGGY_MEMBER_NOT_FOUND = 5006,
	IGGY_INCOMPATIBLE_PROTOCOL = 14003,
};

struct gclient {
	int fd;
	bool broken;
	bool bound;
	struct frame_u128 client_id; /* the VSR client id of the current (or next) login */
	uint64_t session;
	uint32_t user_id;
	uint64_t counter;     /* the request counter (header description) */
	uint8_t last_evict;
	uint32_t inflight;    /* pipelined sends written and not yet collected */
	uint64_t inflight_request;
	uint64_t rng;         /* splitmix64 state for client and message ids */
	struct wire_buf body; /* scratch for request bodies */
	uint8_t *batch;       /* scratch for producer batches */
	size_t batch_cap;
	uint8_t *rbuf;        /* the last reply body */
	size_t rcap;
	size_t rlen;          /* its length; kept for refused replies too (gclient_last_reply) */
};

/* ---- Small helpers ---- */

struct wire_id gclient_id_name(const char *name)
{
	return (struct wire_id){.kind = WIRE_ID_STRING, .name = {(const uint8_t *)name, name ? strlen(name) : 0}};
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t rng_next(struct gclient *c)
{
	uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A random non-zero 128-bit value. */
static struct frame_u128 rng_u128(struct gclient *c)
{
	struct frame_u128 v;
	do {
		v.lo = rng_next(c);
		v.hi = rng_next(c);
	} while (frame_u128_is_zero(v));
	return v;
}

static void copy_name(char *dst, size_t cap, struct wire_str s)
{
	size_t n = s.len < cap - 1 ? s.len : cap - 1;
	if (n > 0)
		memcpy(dst, s.ptr, n);
	dst[n] = '\0';
}

static bool op_is_metadata(uint8_t op)
{
	return op == FRAME_OP_LOGOUT || (op >= FRAME_OP_CREATE_STREAM && op <= FRAME_OP_LEAVE_CONSUMER_GROUP);
}

/* The Iggy error code of an eviction, as the Rust SDK maps it (reference §1.4). */
static int evict_code(const struct frame_eviction *e)
{
	switch (e->reason) {
	case FRAME_EVICT_CLIENT_RELEASE_TOO_LOW:
	case FRAME_EVICT_CLIENT_RELEASE_TOO_HIGH:
	case FRAME_EVICT_INVALID_REQUEST_OPERATION:
	case FRAME_EVICT_INVALID_REQUEST_BODY:
	case FRAME_EVICT_INVALID_REQUEST_BODY_SIZE:
		return IGGY_INVALID_COMMAND;
	case FRAME_EVICT_INVALID_CREDENTIALS:
		return IGGY_INVALID_CREDENTIALS;
	case FRAME_EVICT_INVALID_TOKEN:
		return IGGY_INVALID_PAT;
	case FRAME_EVICT_STALE_CLIENT:
		return IGGY_STALE_CLIENT;
	case FRAME_EVICT_INCOMPATIBLE_PROTOCOL:
		if (e->protocol_version_min == 0 || e->protocol_version < e->protocol_version_min)
			return IGGY_UNAUTHENTICATED;
		return IGGY_INCOMPATIBLE_PROTOCOL;
	case FRAME_EVICT_MALFORMED_LOGIN:
		return IGGY_INVALID_FORMAT;
	default:
		return IGGY_UNAUTHENTICATED;
	}
}

/* Forgets the session (after a logout or an eviction); the next login uses a new client id. */
static void unbind(struct gclient *c)
{
	c->bound = false;
	c->session = 0;
	c->user_id = 0;
	c->client_id = rng_u128(c);
}

/* Marks the connection unusable and passes the error on. */
static int fail(struct gclient *c, int err)
{
	c->broken = true;
	return err;
}

/* ---- Socket I/O ---- */

static int io_errno(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK ? -ETIMEDOUT : -e;
}

/* Writes every byte of the pieces (the iovec array is consumed). */
static int io_writev(struct gclient *c, struct iovec *iov, int n)
{
	while (n > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return fail(c, io_errno(errno));
		}
		size_t left = (size_t)w;
		while (n > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

static int io_read(struct gclient *c, void *p, size_t n)
{
	uint8_t *b = p;
	while (n > 0) {
		ssize_t r = recv(c->fd, b, n, 0);
		if (r == 0)
			return fail(c, -ECONNRESET);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return fail(c, io_errno(errno));
		}
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ---- Requests and replies ---- */

/*
 * Writes one request: the header for `op` (and `code` when NonReplicated) numbered as the header
 * comment says, then body pieces a and b. *request receives the request number used.
 */
static int send_request(struct gclient *c, uint8_t op, uint32_t code, const void *a, size_t alen, const void *b,
			size_t blen, uint64_t *request)
{
	if ((uint64_t)FRAME_HEADER_SIZE + alen + blen > FRAME_MAX_SIZE)
		return -EMSGSIZE;
	struct frame_request h = {
		.size = (uint32_t)(FRAME_HEADER_SIZE + alen + blen),
		.client = c->client_id,
		.operation = op,
		.session = op == FRAME_OP_REGISTER ? 0 : c->session,
		.code = op == FRAME_OP_NON_REPLICATED ? code : 0,
	};
	if (op == FRAME_OP_REGISTER)
		h.request = 0;
	else if (op_is_metadata(op))
		h.request = c->counter++;
	else
		h.request = c->counter;
	/* Register alone goes without a request number (the server drops any other frame numbered 0). */
	assert((op == FRAME_OP_REGISTER) == (h.request == 0));
	if (op == FRAME_OP_REGISTER || op_is_metadata(op)) {
		/* As the Rust SDK: XXH3-64 of the body, zero-extended (the body is one piece for these). */
		h.request_checksum = (struct frame_u128){.lo = XXH3_64bits(a, alen), .hi = 0};
	}
	uint8_t hdr[FRAME_HEADER_SIZE];
	frame_request_encode(hdr, &h);
	struct iovec iov[3] = {{hdr, sizeof(hdr)}, {(void *)a, alen}, {(void *)b, blen}};
	int n = blen > 0 ? 3 : alen > 0 ? 2 : 1;
	*request = h.request;
	return io_writev(c, iov, n);
}

/*
 * Reads one reply frame and checks it answers (`request`, `op`). Returns 0 with *payload and *plen set to
 * the body after any result section, a positive Iggy code (status, result section or eviction), or a
 * negative errno.
 */
static int read_reply(struct gclient *c, uint8_t op, uint64_t request, const uint8_t **payload, size_t *plen)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	int rv = io_read(c, hdr, sizeof(hdr));
	if (rv != 0)
		return rv;
	if (frame_peek_command(hdr) == FRAME_CMD_EVICTION) {
		struct frame_eviction e;
		if (frame_eviction_decode(hdr, &e) != 0)
			return fail(c, -EPROTO);
		c->last_evict = e.reason;
		unbind(c);
		return evict_code(&e);
	}
	struct frame_reply rep;
	if (frame_reply_decode(hdr, &rep) != 0)
		return fail(c, -EPROTO);
	size_t len = rep.size - FRAME_HEADER_SIZE;
	if (len + 1 > c->rcap) {
		size_t cap = c->rcap ? c->rcap : 4096;
		while (cap < len + 1)
			cap *= 2;
		uint8_t *nb = realloc(c->rbuf, cap);
		if (nb == NULL)
			return fail(c, -ENOMEM);
		c->rbuf = nb;
		c->rcap = cap;
	}
	assert(len < c->rcap); /* room for the body and a terminating byte */
	c->rlen = 0;
	rv = io_read(c, c->rbuf, len);
	if (rv != 0)
		return rv;
	c->rlen = len;
	bool op_ok = rep.operation == op || (op == FRAME_OP_DELETE_SEGMENTS && rep.operation == FRAME_OP_TRUNCATE_PARTITION);
	if (rep.request != request || !op_ok)
		return fail(c, -EPROTO);
	if (rep.status != 0)
		return rep.status <= INT_MAX ? (int)rep.status : fail(c, -EPROTO);
	size_t off = 0;
	if (frame_op_is_result_framed(rep.operation, len > 0)) {
		uint32_t err;
		if (frame_result_split(c->rbuf, len, &err, &off) != 0)
			return fail(c, -EPROTO);
		if (err != 0)
			return err <= INT_MAX ? (int)err : fail(c, -EPROTO);
	}
	if (payload != NULL)
		*payload = c->rbuf + off;
	if (plen != NULL)
		*plen = len - off;
	return 0;
}

/* A lock-step request: checks the client's state, writes the request and reads its reply. */
static int transact2(struct gclient *c, uint8_t op, uint32_t code, const void *a, size_t alen, const void *b,
		     size_t blen, const uint8_t **payload, size_t *plen)
{
	if (c->broken)
		return -ENOTCONN;
	if (c->inflight > 0)
		return -EBUSY;
	if (!c->bound && op != FRAME_OP_REGISTER && op != FRAME_OP_NON_REPLICATED)
		return IGGY_UNAUTHENTICATED; /* the server would drop a frame with session 0 */
	uint64_t request;
	int rv = send_request(c, op, code, a, alen, b, blen, &request);
	if (rv != 0)
		return rv;
	return read_reply(c, op, request, payload, plen);
}

static int transact(struct gclient *c, uint8_t op, uint32_t code, const uint8_t **payload, size_t *plen)
{
	if (wire_buf_error(&c->body) != 0)
		return -EINVAL;
	return transact2(c, op, code, c->body.p, c->body.len, NULL, 0, payload, plen);
}

/* Starts a request body in the scratch buffer. */
static struct wire_buf *body_start(struct gclient *c)
{
	wire_buf_reset(&c->body);
	return &c->body;
}

/* ---- Connection ---- */

static int split_address(const char *address, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *colon;
	const char *h = address;
	size_t hl;
	if (address == NULL)
		return -EINVAL;
	if (address[0] == '[') {
		const char *end = strchr(address, ']');
		if (end == NULL || end[1] != ':')
			return -EINVAL;
		h = address + 1;
		hl = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(address, ':');
		if (colon == NULL)
			return -EINVAL;
		hl = (size_t)(colon - address);
	}
	if (hl == 0 || hl >= hcap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int connect_one(const struct addrinfo *ai, int timeout_ms, int *out)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		return -errno;
	int rv = 0;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		if (errno != EINPROGRESS) {
			rv = -errno;
		} else {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			int n;
			do
				n = poll(&p, 1, timeout_ms);
			while (n < 0 && errno == EINTR);
			if (n == 0) {
				rv = -ETIMEDOUT;
			} else if (n < 0) {
				rv = -errno;
			} else {
				int err = 0;
				socklen_t el = sizeof(err);
				if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
					rv = -errno;
				else if (err != 0)
					rv = -err;
			}
		}
	}
	if (rv == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
		rv = -errno;
	if (rv != 0) {
		close(fd);
		return rv;
	}
	*out = fd;
	return 0;
}

int gclient_connect(const char *address, const struct gclient_opts *opts, struct gclient **out)
{
	struct gclient_opts o = {0};
	if (opts != NULL)
		o = *opts;
	int ctimeout = o.connect_timeout_ms > 0 ? o.connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
	int iotimeout = o.io_timeout_ms == 0 ? DEFAULT_IO_TIMEOUT_MS : o.io_timeout_ms;
	char host[256], port[16];
	int rv = split_address(address, host, sizeof(host), port, sizeof(port));
	if (rv != 0)
		return rv;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	int g = getaddrinfo(host, port, &hints, &res);
	if (g != 0)
		return g == EAI_SYSTEM ? -errno : g == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
	int fd = -1;
	rv = -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		rv = connect_one(ai, ctimeout, &fd);
		if (rv == 0)
			break;
	}
	freeaddrinfo(res);
	if (rv != 0)
		return rv;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (o.sndbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o.sndbuf, sizeof(o.sndbuf));
	if (o.rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o.rcvbuf, sizeof(o.rcvbuf));
	if (iotimeout > 0) {
		struct timeval tv = {.tv_sec = iotimeout / 1000, .tv_usec = (iotimeout % 1000) * 1000};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	struct gclient *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->counter = 1;
	if (getrandom(&c->rng, sizeof(c->rng), 0) != sizeof(c->rng))
		c->rng = now_us() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
	c->client_id = rng_u128(c);
	wire_buf_init(&c->body);
	*out = c;
	return 0;
}

void gclient_close(struct gclient *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	wire_buf_free(&c->body);
	free(c->batch);
	free(c->rbuf);
	free(c);
}

int gclient_fd(const struct gclient *c)
{
	return c->fd;
}

/* ---- Session ---- */

static int do_register(struct gclient *c)
{
	const uint8_t *p;
	size_t n;
	c->client_id = rng_u128(c);
	int rv = transact(c, FRAME_OP_REGISTER, 0, &p, &n);
	if (rv != 0)
		return rv;
	struct wire_rd r;
	struct reply_login l; /* the server's protocol and version are not used (SDKs only log them) */
	wire_rd_init(&r, p, n);
	reply_get_login(&r, &l);
	if (wire_rd_done(&r) != 0 || l.session == 0)
		return fail(c, -EPROTO);
	c->bound = true;
	c->session = l.session;
	c->user_id = l.user_id;
	c->counter = 1;
	return 0;
}

static void put_version_info(struct wire_buf *b)
{
	struct wire_version_info vi = {
		.protocol_version = GCLIENT_PROTOCOL_VERSION,
		.sdk_name = {(const uint8_t *)GCLIENT_SDK_NAME, strlen(GCLIENT_SDK_NAME)},
		.sdk_version = {(const uint8_t *)GCLIENT_SDK_VERSION, strlen(GCLIENT_SDK_VERSION)},
	};
	wire_put_version_info(b, &vi);
}

int gclient_login(struct gclient *c, const char *username, const char *password)
{
	if (username == NULL || password == NULL)
		return -EINVAL;
	if (c->bound) {
		int rv = gclient_logout(c);
		if (rv != 0)
			return rv;
	}
	struct wire_buf *b = body_start(c);
	put_version_info(b);
	wire_put_name(b, username, strlen(username));
	wire_put_str8(b, password, strlen(password));
	wire_put_u32(b, 0); /* context */
	return do_register(c);
}

int gclient_login_pat(struct gclient *c, const char *token)
{
	if (token == NULL || token[0] == '\0')
		return -EINVAL;
	if (c->bound) {
		int rv = gclient_logout(c);
		if (rv != 0)
			return rv;
	}
	struct wire_buf *b = body_start(c);
	put_version_info(b);
	wire_put_str8(b, token, strlen(token));
	wire_put_u32(b, 0); /* context */
	return do_register(c);
}

int gclient_logout(struct gclient *c)
{
	if (c->broken)
		return -ENOTCONN;
	if (!c->bound)
		return 0; /* nothing to end; a Logout with session 0 would be dropped by the server */
	body_start(c);
	int rv = transact(c, FRAME_OP_LOGOUT, 0, NULL, NULL);
	if (rv == 0)
		unbind(c);
	return rv;
}

bool gclient_logged_in(const struct gclient *c)
{
	return c->bound;
}

uint32_t gclient_user_id(const struct gclient *c)
{
	return c->bound ? c->user_id : 0;
}

uint64_t gclient_session(const struct gclient *c)
{
	return c->bound ? c->session : 0;
}

uint8_t gclient_last_eviction(const struct gclient *c)
{
	return c->last_evict;
}

int gclient_ping(struct gclient *c)
{
	body_start(c);
	return transact(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_PING, NULL, NULL);
}

int gclient_get_me(struct gclient *c, struct gclient_me *out)
{
	const uint8_t *p;
	size_t n;
	body_start(c);
	int rv = transact(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_ME, &p, &n);
	if (rv != 0)
		return rv;
	struct wire_rd r;
	struct reply_client rc;
	wire_rd_init(&r, p, n);
	memset(out, 0, sizeof(*out));
	reply_get_client(&r, &rc);
	for (uint32_t i = 0; i < rc.groups_count && wire_rd_error(&r) == 0; i++) {
		struct reply_client_group g;
		reply_get_client_group(&r, &g); /* not kept: GetMe's caller wants the count */
	}
	if (wire_rd_done(&r) != 0)
		return fail(c, -EPROTO);
	out->client_id = rc.client_id;
	out->user_id = rc.user_id;
	out->transport = rc.transport;
	out->groups_count = rc.groups_count;
	copy_name(out->address, sizeof(out->address), rc.address);
	return 0;
}

/* ---- Personal access tokens ---- */

int gclient_create_pat(struct gclient *c, const char *name, uint64_t expiry_us, char *token)
{
	const uint8_t *p;
	size_t n;
	if (name == NULL || token == NULL)
		return -EINVAL;
	struct wire_buf *b = body_start(c);
	wire_put_name(b, name, strlen(name));
	wire_put_u64(b, expiry_us);
	int rv = transact(c, FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN, 0, &p, &n);
	if (rv != 0)
		return rv;
	struct wire_rd r;
	struct reply_pat_token t;
	wire_rd_init(&r, p, n);
	reply_get_pat_token(&r, &t);
	if (wire_rd_done(&r) != 0 || t.token.len == 0)
		return fail(c, -EPROTO);
	copy_name(token, GCLIENT_TOKEN_MAX, t.token);
	return 0;
}

int gclient_delete_pat(struct gclient *c, const char *name)
{
	if (name == NULL)
		return -EINVAL;
	struct wire_buf *b = body_start(c);
	wire_put_name(b, name, strlen(name));
	return transact(c, FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN, 0, NULL, NULL);
}

int gclient_get_pats(struct gclient *c, struct gclient_pat *out, uint32_t cap, uint32_t *n)
{
	const uint8_t *p;
	size_t len;
	body_start(c);
	int rv = transact(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_PERSONAL_ACCESS_TOKENS, &p, &len);
	if (rv != 0)
		return rv;
	struct wire_rd r;
	wire_rd_init(&r, p, len);
	uint32_t count = 0;
	while (wire_rd_left(&r) > 0) {
		struct reply_pat t;
		if (reply_get_pat(&r, &t) != 0)
			break;
		if (count < cap) {
			copy_name(out[count].name, sizeof(out[count].name), t.name);
			out[count].expiry_at = t.expiry_at;
		}
		count++;
	}
	if (wire_rd_done(&r) != 0)
		return fail(c, -EPROTO);
	*n = count;
	return 0;
}

/* ---- Streams and topics ---- */

static void get_stream_header(struct wire_rd *r, struct gclient_stream *s)
{
	struct reply_stream h;
	if (reply_get_stream(r, &h) != 0)
		return;
	*s = (struct gclient_stream){h.id, h.created_at, h.topics_count, h.size_bytes, h.messages_count, ""};
	copy_name(s->name, sizeof(s->name), h.name);
}

static void get_topic_header(struct wire_rd *r, struct gclient_topic *t)
{
	struct reply_topic h;
	if (reply_get_topic(r, &h) != 0)
		return;
	*t = (struct gclient_topic){h.id, h.created_at, h.partitions_count, h.message_expiry, h.compression,
				    h.max_topic_size, h.size_bytes, h.messages_count, ""};
	copy_name(t->name, sizeof(t->name), h.name);
}

static void get_partition(struct wire_rd *r, struct gclient_partition *p)
{
	struct reply_partition h;
	reply_get_partition(r, &h);
	*p = (struct gclient_partition){h.id, h.created_at, h.segments_count, h.current_offset, h.size_bytes,
					h.messages_count};
}

int gclient_create_stream(struct gclient *c, const char *name, struct gclient_stream *out)
{
	const uint8_t *p;
	size_t n;
	if (name == NULL)
		return -EINVAL;
	struct wire_buf *b = body_start(c);
	wire_put_name(b, name, strlen(name));
	int rv = transact(c, FRAME_OP_CREATE_STREAM, 0, &p, &n);
	if (rv != 0 || out == NULL)
		return rv;
	struct wire_rd r;
	wire_rd_init(&r, p, n);
	get_stream_header(&r, out);
	return wire_rd_done(&r) == 0 ? 0 : fail(c, -EPROTO);
}

int gclient_get_stream(struct gclient *c, const struct wire_id *stream, struct gclient_stream *out)
{
	const uint8_t *p;
	size_t n;
	wire_put_id(body_start(c), stream);
	int rv = transact(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_STREAM, &p, &n);
	if (rv != 0)
		return rv;
	if (n == 0)
		return -ENOENT;
	struct wire_rd r;
	struct gclient_stream tmp;
	wire_rd_init(&r, p, n);
	get_stream_header(&r, out != NULL ? out : &tmp);
	return wire_rd_error(&r) == 0 ? 0 : fail(c, -EPROTO);
}

int gclient_delete_stream(struct gclient *c, const struct wire_id *stream)
{
	wire_put_id(body_start(c), stream);
	return transact(c, FRAME_OP_DELETE_STREAM, 0, NULL, NULL);
}

int gclient_create_topic(struct gclient *c, const struct wire_id *stream, const char *name, uint32_t partitions,
			 const char *durability, struct gclient_topic *out)
{
	struct gclient_topic_opt o = {"durability", WIRE_KIND_STRING, durability, durability ? strlen(durability) : 0};
	return gclient_create_topic_opts(c, stream, name, partitions, &o, durability != NULL ? 1 : 0, out);
}

int gclient_create_topic_opts(struct gclient *c, const struct wire_id *stream, const char *name, uint32_t partitions,
			      const struct gclient_topic_opt *opts, size_t n_opts, struct gclient_topic *out)
{
	const uint8_t *p;
	size_t n;
	if (name == NULL || (n_opts > 0 && opts == NULL))
		return -EINVAL;
	struct wire_buf *b = body_start(c);
	wire_put_id(b, stream);
	wire_put_u32(b, partitions);
	wire_put_name(b, name, strlen(name));
	for (size_t i = 0; i < n_opts; i++) {
		if (opts[i].key == NULL || (opts[i].len > 0 && opts[i].value == NULL))
			return -EINVAL;
		wire_put_option(b, opts[i].key, strlen(opts[i].key), opts[i].kind, opts[i].value, opts[i].len);
	}
	int rv = transact(c, FRAME_OP_CREATE_TOPIC, 0, &p, &n);
	if (rv != 0 || out == NULL)
		return rv;
	struct wire_rd r;
	wire_rd_init(&r, p, n);
	get_topic_header(&r, out);
	return wire_rd_error(&r) == 0 ? 0 : fail(c, -EPROTO);
}

int gclient_get_topic(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
		      struct gclient_topic *out, struct gclient_partition *parts, uint32_t cap)
{
	const uint8_t *p;
	size_t n;
	struct wire_buf *b = body_start(c);
	wire_put_id(b, stream);
	wire_put_id(b, topic);
	int rv = transact(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_TOPIC, &p, &n);
	if (rv != 0)
		return rv;
	if (n == 0)
		return -ENOENT;
	struct wire_rd r;
	struct gclient_topic tmp;
	struct gclient_topic *t = out != NULL ? out : &tmp;
	wire_rd_init(&r, p, n);
	get_topic_header(&r, t);
	for (uint32_t i = 0; i < t->partitions_count && wire_rd_error(&r) == 0; i++) {
		struct gclient_partition part;
		get_partition(&r, &part);
		if (i < cap)
			parts[i] = part;
	}
	return wire_rd_done(&r) == 0 ? 0 : fail(c, -EPROTO);
}

int gclient_delete_topic(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic)
{
	struct wire_buf *b = body_start(c);
	wire_put_id(b, stream);
	wire_put_id(b, topic);
	return transact(c, FRAME_OP_DELETE_TOPIC, 0, NULL, NULL);
}

/* ---- Consumer groups ---- */

int gclient_create_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
			 const char *name, uint32_t *group_id)
{
	const uint8_t *p;
	size_t n;
	if (name == NULL)
		return -EINVAL;
	struct wire_buf *b = body_start(c);
	wire_put_id(b, stream);
	wire_put_id(b, topic);
	wire_put_name(b, name, strlen(name));
	int rv = transact(c, FRAME_OP_CREATE_CONSUMER_GROUP, 0, &p, &n);
	if (rv != 0)
		return rv;
	struct wire_rd r;
	wire_rd_init(&r, p, n);
	uint32_t id = wire_get_u32(&r);
	if (wire_rd_error(&r) != 0)
		return fail(c, -EPROTO);
	if (group_id != NULL)
		*group_id = id;
	return 0;
}

static int group_op(struct gclient *c, uint8_t op, const struct wire_id *stream, const struct wire_id *topic,
		    const struct wire_id *group)
{
	struct wire_buf *b = body_start(c);
	wire_put_id(b, stream);
	wire_put_id(b, topic);
	wire_put_id(b, group);
	return transact(c, op, 0, NULL, NULL);
}

int gclient_delete_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
			 const struct wire_id *group)
{
	return group_op(c, FRAME_OP_DELETE_CONSUMER_GROUP, stream, topic, group);
}

int gclient_join_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
		       const struct wire_id *group)
{
	return group_op(c, FRAME_OP_JOIN_CONSUMER_GROUP, stream, topic, group);
}

int gclient_leave_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
			const struct wire_id *group)
{
	return group_op(c, FRAME_OP_LEAVE_CONSUMER_GROUP, stream, topic, group);
}

int gclient_sync_group(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
		       const struct wire_id *group, uint64_t *generation, uint32_t *parts, uint32_t cap, uint32_t *n)
{
	const uint8_t *p;
	size_t len;
	struct wire_buf *b = body_start(c);
	wire_put_id(b, stream);
	wire_put_id(b, topic);
	wire_put_id(b, group);
	int rv = transact(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_SYNC_CONSUMER_GROUP, &p, &len);
	if (rv != 0)
		return rv;
	if (len == 0)
		return IGGY_MEMBER_NOT_FOUND;
	struct wire_rd r;
	wire_rd_init(&r, p, len);
	uint64_t gen = wire_get_u64(&r);
	uint32_t count = wire_get_u32(&r);
	for (uint32_t i = 0; i < count && wire_rd_error(&r) == 0; i++) {
		uint32_t id = wire_get_u32(&r);
		if (i < cap)
			parts[i] = id;
	}
	if (wire_rd_done(&r) != 0)
		return fail(c, -EPROTO);
	if (generation != NULL)
		*generation = gen;
	*n = count;
	return 0;
}

/* ---- Consumer offsets ---- */

static void put_offset_target(struct wire_buf *b, const struct wire_consumer *consumer, const struct wire_id *stream,
			      const struct wire_id *topic, uint32_t partition)
{
	struct wire_opt_partition op = {.present = partition != GCLIENT_NO_PARTITION,
					.id = partition != GCLIENT_NO_PARTITION ? partition : 0};
	wire_put_consumer(b, consumer);
	wire_put_id(b, stream);
	wire_put_id(b, topic);
	wire_put_opt_partition(b, &op);
}

int gclient_store_offset(struct gclient *c, const struct wire_consumer *consumer, const struct wire_id *stream,
			 const struct wire_id *topic, uint32_t partition, uint64_t offset)
{
	struct wire_buf *b = body_start(c);
	put_offset_target(b, consumer, stream, topic, partition);
	wire_put_u64(b, offset);
	wire_put_u8(b, 1); /* ack level Quorum, as the SDK */
	return transact(c, FRAME_OP_STORE_CONSUMER_OFFSET, 0, NULL, NULL);
}

int gclient_get_offset(struct gclient *c, const struct wire_consumer *consumer, const struct wire_id *stream,
		       const struct wire_id *topic, uint32_t partition, struct gclient_offset *out)
{
	const uint8_t *p;
	size_t n;
	put_offset_target(body_start(c), consumer, stream, topic, partition);
	int rv = transact(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_GET_CONSUMER_OFFSET, &p, &n);
	if (rv != 0)
		return rv;
	if (n == 0)
		return -ENOENT;
	struct wire_rd r;
	wire_rd_init(&r, p, n);
	struct reply_offset o;
	if (reply_get_offset(&r, &o) != 0 || wire_rd_done(&r) != 0)
		return fail(c, -EPROTO);
	if (out != NULL)
		*out = (struct gclient_offset){o.partition_id, o.current_offset, o.stored_offset};
	return 0;
}

int gclient_delete_offset(struct gclient *c, const struct wire_consumer *consumer, const struct wire_id *stream,
			  const struct wire_id *topic, uint32_t partition)
{
	struct wire_buf *b = body_start(c);
	put_offset_target(b, consumer, stream, topic, partition);
	wire_put_u8(b, 1);
	return transact(c, FRAME_OP_DELETE_CONSUMER_OFFSET, 0, NULL, NULL);
}

/* ---- Messages ---- */

/*
 * Builds a producer batch of n messages in the client's batch buffer with batch_build, then
 * gives every message its id: ids[i] as given, or (ids NULL) a random non-zero one (the SDKs replace id
 * 0 with a random one before hashing, reference §3.8), then seals it again (batch_seal). Returns the length or a negative errno.
 */
static ssize_t build_batch(struct gclient *c, uint32_t n, const void *const *payloads, const uint32_t *lens,
			   const uint8_t (*ids)[16])
{
	uint64_t total = BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++) {
		if (lens[i] > 0 && payloads[i] == NULL)
			return -EINVAL;
		total += BATCH_FRAME_HEADER_SIZE + (uint64_t)lens[i];
	}
	if (total > FRAME_MAX_SIZE - FRAME_HEADER_SIZE)
		return -EMSGSIZE;
	if (total > c->batch_cap) {
		uint8_t *nb = realloc(c->batch, (size_t)total);
		if (nb == NULL)
			return -ENOMEM;
		c->batch = nb;
		c->batch_cap = (size_t)total;
	}
	size_t len = batch_build(c->batch, c->batch_cap, n, payloads, lens, NULL, NULL, now_us());
	if (len != total)
		return -EINVAL;
	size_t pos = BATCH_HEADER_SIZE;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *f = c->batch + pos;
		size_t size = BATCH_FRAME_HEADER_SIZE + (size_t)lens[i];
		if (ids != NULL) {
			memcpy(f + 8, ids[i], 16); /* the id field is the u128, little-endian, as it travels */
		} else {
			struct frame_u128 id = rng_u128(c);
			frame_put64(f + 8, id.lo);
			frame_put64(f + 16, id.hi);
		}
		pos += size;
	}
	assert(pos == len); /* the walk over the frames ends exactly at the batch's end */
	batch_seal(c->batch);
	return (ssize_t)len;
}

int gclient_send_async(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
		       uint32_t partition, uint32_t n, const void *const *payloads, const uint32_t *lens)
{
	return gclient_send_async_ids(c, stream, topic, partition, n, payloads, lens, NULL);
}

int gclient_send_async_ids(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic,
			   uint32_t partition, uint32_t n, const void *const *payloads, const uint32_t *lens,
			   const uint8_t (*ids)[16])
{
	if (c->broken)
		return -ENOTCONN;
	if (n == 0 || lens == NULL || payloads == NULL)
		return -EINVAL;
	if (!c->bound)
		return IGGY_UNAUTHENTICATED;
	ssize_t blen = build_batch(c, n, payloads, lens, ids);
	if (blen < 0)
		return (int)blen;
	struct wire_buf *b = body_start(c);
	size_t at = wire_put_reserve(b, 4);
	wire_put_id(b, stream);
	wire_put_id(b, topic);
	struct wire_partitioning part = {.kind = WIRE_PART_BALANCED};
	if (partition != GCLIENT_BALANCED)
		part = (struct wire_partitioning){.kind = WIRE_PART_PARTITION_ID, .partition_id = partition};
	wire_put_partitioning(b, &part);
	wire_put_u32(b, n);
	wire_patch_u32(b, at, (uint32_t)(b->len - 4));
	if (wire_buf_error(b) != 0)
		return -EINVAL;
	uint64_t request;
	int rv = send_request(c, FRAME_OP_SEND_MESSAGES, 0, b->p, b->len, c->batch, (size_t)blen, &request);
	if (rv != 0)
		return rv;
	c->inflight++;
	c->inflight_request = request;
	return 0;
}

int gclient_wait(struct gclient *c, struct gclient_sent *out)
{
	const uint8_t *p;
	size_t n;
	if (c->broken)
		return -ENOTCONN;
	if (c->inflight == 0)
		return -EINVAL;
	int rv = read_reply(c, FRAME_OP_SEND_MESSAGES, c->inflight_request, &p, &n);
	if (rv < 0)
		return rv;
	c->inflight--;
	if (rv > 0)
		return rv;
	struct wire_rd r;
	wire_rd_init(&r, p, n);
	uint32_t count = wire_get_u32(&r);
	struct gclient_sent s = {.base_offset = GCLIENT_OFFSET_UNKNOWN};
	for (uint32_t i = 0; i < count && wire_rd_error(&r) == 0; i++) {
		struct reply_sent e;
		if (reply_get_sent(&r, &e) == 0 && i == 0)
			s = (struct gclient_sent){e.stream_id, e.topic_id, e.partition_id, e.base_offset};
	}
	if (wire_rd_done(&r) != 0)
		return fail(c, -EPROTO);
	if (out != NULL)
		*out = s;
	return 0;
}

uint32_t gclient_inflight(const struct gclient *c)
{
	return c->inflight;
}

int gclient_send(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic, uint32_t partition,
		 uint32_t n, const void *const *payloads, const uint32_t *lens, struct gclient_sent *out)
{
	return gclient_send_ids(c, stream, topic, partition, n, payloads, lens, NULL, out);
}

int gclient_send_ids(struct gclient *c, const struct wire_id *stream, const struct wire_id *topic, uint32_t partition,
		     uint32_t n, const void *const *payloads, const uint32_t *lens, const uint8_t (*ids)[16],
		     struct gclient_sent *out)
{
	if (c->inflight > 0)
		return -EBUSY;
	int rv = gclient_send_async_ids(c, stream, topic, partition, n, payloads, lens, ids);
	if (rv != 0)
		return rv;
	return gclient_wait(c, out);
}

int gclient_poll(struct gclient *c, const struct wire_consumer *consumer, const struct wire_id *stream,
		 const struct wire_id *topic, uint32_t partition, struct wire_polling strategy, uint32_t count,
		 bool auto_commit, struct gclient_polled *out)
{
	const uint8_t *p;
	size_t n;
	struct wire_buf *b = body_start(c);
	put_offset_target(b, consumer, stream, topic, partition);
	wire_put_polling(b, &strategy);
	wire_put_u32(b, count);
	wire_put_u8(b, auto_commit ? 1 : 0);
	int rv = transact(c, FRAME_OP_NON_REPLICATED, FRAME_CODE_POLL_MESSAGES, &p, &n);
	if (rv != 0)
		return rv;
	struct wire_rd r;
	struct reply_polled pre;
	wire_rd_init(&r, p, n);
	if (reply_get_polled(&r, &pre) != 0)
		return fail(c, -EPROTO);
	out->partition_id = pre.partition_id;
	out->current_offset = pre.current_offset;
	out->count = pre.count;
	out->data = p;
	out->len = n;
	return 0;
}

void gclient_msg_iter_init(struct gclient_msg_iter *it, const struct gclient_polled *polled)
{
	memset(it, 0, sizeof(*it));
	it->expect = polled->count;
	if (polled->len < POLL_PREFIX_SIZE) {
		it->err = -EBADMSG;
		return;
	}
	batch_iter_init(&it->b, polled->data + POLL_PREFIX_SIZE, polled->len - POLL_PREFIX_SIZE);
}

int gclient_msg_next(struct gclient_msg_iter *it, struct gclient_msg *m)
{
	if (it->err != 0)
		return it->err;
	struct batch_msg bm;
	int rc = batch_iter_next(&it->b, &bm);
	if (rc < 0)
		return it->err = -EBADMSG;
	if (rc == 0)
		return it->b.seen == it->expect ? 0 : (it->err = -EBADMSG);
	m->offset = bm.offset;
	m->timestamp = bm.timestamp;
	m->origin_timestamp = bm.origin_timestamp;
	m->checksum = bm.checksum;
	memcpy(m->id, bm.id, sizeof(m->id));
	m->payload = bm.payload;
	m->payload_len = bm.payload_len;
	m->headers = bm.headers;
	m->headers_len = bm.headers_len;
	return 1;
}

int gclient_polled_verify(const struct gclient_polled *polled)
{
	if (polled->len < POLL_PREFIX_SIZE)
		return -EBADMSG;
	size_t pos = POLL_PREFIX_SIZE;
	uint64_t total = 0;
	while (pos < polled->len) {
		if (polled->len - pos < BATCH_HEADER_SIZE)
			return -EBADMSG;
		struct batch_hdr h;
		batch_hdr_decode(polled->data + pos, &h);
		if (h.batch_length > polled->len - pos ||
		    batch_verify(polled->data + pos, (size_t)h.batch_length, false) != 0)
			return -EBADMSG;
		total += h.message_count;
		pos += (size_t)h.batch_length;
	}
	return total == polled->count ? 0 : -EBADMSG;
}

/* ---- Raw requests ---- */

int gclient_raw(struct gclient *c, uint32_t code, const void *body, size_t len, const uint8_t **reply,
		size_t *reply_len)
{
	uint8_t op = frame_code_to_op(code);
	if (op == FRAME_OP_RESERVED || op == FRAME_OP_REGISTER || op == FRAME_OP_LOGOUT ||
	    code == FRAME_CODE_LOGIN_USER || code == FRAME_CODE_LOGIN_WITH_PERSONAL_ACCESS_TOKEN ||
	    (len > 0 && body == NULL))
		return -EINVAL;
	return transact2(c, op, code, body, len, NULL, 0, reply, reply_len);
}

void gclient_last_reply(const struct gclient *c, const uint8_t **body, size_t *len)
{
	*body = c->rbuf;
	*len = c->rbuf != NULL ? c->rlen : 0;
}

/* ---- Errors ---- */

static const struct {
	int code;
	const char *name;
} iggy_errors[] = {
	{1, "Error"},
	{3, "InvalidCommand"},
	{4, "InvalidFormat"},
	{5, "FeatureUnavailable"},
	{6, "InvalidIdentifier"},
	{20, "ResourceNotFound"},
	{30, "StaleClient"},
	{40, "Unauthenticated"},
	{41, "Unauthorized"},
	{42, "InvalidCredentials"},
	{46, "UserAlreadyExists"},
	{51, "PersonalAccessTokenAlreadyExists"},
	{52, "PersonalAccessTokensLimitReached"},
	{53, "InvalidPersonalAccessToken"},
	{1009, "StreamIdNotFound"},
	{1012, "StreamNameAlreadyExists"},
	{2010, "TopicIdNotFound"},
	{2013, "TopicNameAlreadyExists"},
	{2019, "InvalidPartitionsCount"},
	{3007, "PartitionNotFound"},
	{3021, "ConsumerOffsetNotFound"},
	{4027, "InvalidMessageChecksum"},
	{4039, "InvalidBatchChecksum"},
	{4041, "UnsupportedOption"},
	{4042, "InvalidOptionValue"},
	{4100, "InvalidOffset"},
	{5000, "ConsumerGroupNotFound"},
	{5004, "ConsumerGroupNameAlreadyExists"},
	{5006, "ConsumerGroupMemberNotFound"},
	{14003, "IncompatibleProtocolVersion"},
	{58, "TransientNotAccepted"},
	{10058, "GalgoNotLeader"},
};

const char *gclient_strerror(int rv, char *buf, size_t len)
{
	if (rv < 0) {
		snprintf(buf, len, "%s", strerror(-rv));
		return buf;
	}
	for (size_t i = 0; i < sizeof(iggy_errors) / sizeof(iggy_errors[0]); i++)
		if (iggy_errors[i].code == rv) {
			snprintf(buf, len, "Iggy error %d (%s)", rv, iggy_errors[i].name);
			return buf;
		}
	if (rv == 0)
		snprintf(buf, len, "success");
	else
		snprintf(buf, len, "Iggy error %d", rv);
	return buf;
}
