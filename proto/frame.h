/*
 * frame — the 256-byte headers of Apache Iggy's client protocol (VSR framing, protocol 0.11; reference
 * §1 and §2.1-§2.2): requests, replies, evictions, the reply's result section, operation bytes and
 * command codes.
 *
 * All integers are little-endian. A u128 is stored as its low 8 bytes followed by its high 8 bytes.
 *
 * 1. Frame. Every frame is a 256-byte header followed by a body of `size` - 256 bytes. There is no
 *    length prefix: the frame length is the u32 `size` at byte 48, and it counts the header. A client
 *    sends only command 5 (Request); the server sends only 8 (Reply) and 13 (Eviction).
 *
 * 2. Common prefix, bytes 0..128 (the same for every command):
 *
 *      off size field
 *        0   16 checksum          0; never verified on the client plane
 *       16   16 checksum_body     0; never verified
 *       32   16 cluster           0 (single node); not checked
 *       48    4 size              header + body, 256 ≤ size ≤ 64 MiB
 *       52    4 view              0; not checked
 *       56    4 release           0; not checked
 *       60    1 command           5 Request, 8 Reply, 13 Eviction
 *       61    1 replica           0; not checked
 *       62   66 reserved_frame    zero (checked on requests and evictions)
 *
 * 3. Request, bytes 128..256 (client to server):
 *
 *      off size field
 *      128   16 client            random non-zero client id, opaque
 *      144   16 request_checksum  0 = unstamped; otherwise XXH3-64(body) (seed 0) zero-extended to 128 bits
 *      160    8 timestamp         echoed in the reply
 *      168    8 request           request number (reference §1.6)
 *      176    1 operation         the operation byte (table below)
 *      177    7 padding           zero
 *      184    8 session           0 before login, then the session the login reply returned
 *      192    4 user_id           0 from clients; never trusted
 *      196    4 code              the command code, only when operation = 2 (NonReplicated); else zero
 *      200   56 reserved          zero
 *
 *    A request is valid (reference §1.2, `validate_request_fields`) when: command = 5; 256 ≤ size ≤
 *    FRAME_MAX_SIZE; client ≠ 0; operation ≠ 0 and is a declared operation; a Register has session = 0
 *    and request = 0; every other operation except NonReplicated has session > 0 and request > 0; the
 *    padding, reserved_frame and reserved bytes (and the code bytes unless NonReplicated) are zero. The
 *    reference server drops an invalid request silently (and closes the connection on a bad size).
 *
 * 4. Reply, bytes 128..256 (server to client; command 8):
 *
 *      off size field
 *      128   16 request_checksum  echo of the request's
 *      144   16 context           0
 *      160   16 client            echo of the request's client id
 *      176    8 op                informational (SDKs ignore it)
 *      184    8 commit            informational (SDKs ignore it)
 *      192    8 timestamp         echo
 *      200    8 request           echo (the Go SDK drops the connection on a mismatch)
 *      208    1 operation         echo of the request's operation byte (a declared value)
 *      209    7 padding           zero
 *      216    4 status            0 = OK; else an IggyError code, and then the body is empty
 *      220   36 reserved          zero
 *
 * 5. Eviction, bytes 128..256 (server to client; command 13; header only, size = 256):
 *
 *      off size field
 *      128   16 client                       non-zero
 *      144    4 server_protocol_version      only for reason 14 (IncompatibleProtocol), else 0
 *      148    4 server_protocol_version_min  only for reason 14, else 0
 *      152  103 reserved                     zero
 *      255    1 reason                       1..15 (enum frame_evict_reason)
 *
 *    An eviction ends the session but the reference server keeps the TCP connection open.
 *
 * 6. Result section (reference §1.5). The reply body of a result-framed operation starts with
 *    [count u32][count × {index u32, result u32}]. Success is count = 0 (4 zero bytes) followed by the
 *    typed payload; a committed rejection is count = 1, index = 0, result = the error code, and nothing
 *    else (12 bytes). Result-framed: operations 64..68 and 128..149 except 138 (DeleteSegments), 161,
 *    162, and 1 (Register) when the reply body is not empty. Not framed: 2, 3, 160, 138.
 *
 * 7. Protocol version: major << 20 | minor << 10 | patch (10 bits each); 0.11.0 is 0x2C00 = 11264.
 *
 * 8. Legacy framing (reference appendix A; SDKs up to 0.8.x, e.g. iggy-cli 0.13), never served. A legacy
 *    request is [length u32 = 4 + payload length][code u32][payload] and its reply is
 *    [status u32][payload_length u32][payload]. Such a client waits for an answer the VSR parser would
 *    never give (its login is shorter than a 256-byte header), so the start of a connection is checked
 *    first: the received bytes are a legacy frame when their first u32 L is at least 4, L + 4 is below
 *    256 and no more than the bytes received, and the second u32 is a command code between 1 and 999
 *    (every Iggy code is). A VSR request cannot look like that: every SDK sends the checksum (bytes
 *    0..16) as zero, so its first u32 is 0. The answer is the 8-byte legacy error reply
 *    [status = 3 InvalidCommand][0], which every legacy SDK reports as "Invalid command", and the
 *    connection is closed.
 */
#ifndef GALGO_FRAME_H
#define GALGO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_SIZE 256u
#define FRAME_MAX_SIZE (64u * 1024 * 1024) /* header + body (message_bus.max_message_size) */

/* Offsets used before a whole header is decoded (a stream parser peeks at them). */
#define FRAME_OFF_SIZE 48
#define FRAME_OFF_COMMAND 60
#define FRAME_OFF_CODE 196
#define FRAME_OFF_REPLY_STATUS 216
#define FRAME_OFF_EVICT_REASON 255

/* Protocol version packing (reference §1.10). */
#define FRAME_VERSION_PACK(major, minor, patch)                                                            \
	((uint32_t)(major) << 20 | ((uint32_t)(minor) & 0x3ffu) << 10 | ((uint32_t)(patch) & 0x3ffu))
#define FRAME_VERSION_MAJOR(v) ((uint32_t)(v) >> 20)
#define FRAME_VERSION_MINOR(v) (((uint32_t)(v) >> 10) & 0x3ffu)
#define FRAME_VERSION_PATCH(v) ((uint32_t)(v) & 0x3ffu)
#define FRAME_PROTOCOL_VERSION FRAME_VERSION_PACK(0, 11, 0) /* 0x2C00 = 11264 */

/* Frame commands (header byte 60) on the client plane. */
enum frame_command {
	FRAME_CMD_REQUEST = 5,
	FRAME_CMD_REPLY = 8,
	FRAME_CMD_EVICTION = 13,
};

/* Operation bytes (request byte 176, reply byte 208; reference §2.1). */
enum frame_op {
	FRAME_OP_RESERVED = 0,
	FRAME_OP_REGISTER = 1,
	FRAME_OP_NON_REPLICATED = 2,
	FRAME_OP_LOGOUT = 3,
	FRAME_OP_CREATE_TOPIC_WITH_ASSIGNMENTS = 64,
	FRAME_OP_CREATE_PARTITIONS_WITH_ASSIGNMENTS = 65,
	FRAME_OP_REMOVE_CONSUMER_GROUP_MEMBER = 66,
	FRAME_OP_COMPLETE_CONSUMER_GROUP_REVOCATION = 67,
	FRAME_OP_TRUNCATE_PARTITION = 68,
	FRAME_OP_CREATE_STREAM = 128,
	FRAME_OP_UPDATE_STREAM = 129,
	FRAME_OP_DELETE_STREAM = 130,
	FRAME_OP_PURGE_STREAM = 131,
	FRAME_OP_CREATE_TOPIC = 132,
	FRAME_OP_UPDATE_TOPIC = 133,
	FRAME_OP_DELETE_TOPIC = 134,
	FRAME_OP_PURGE_TOPIC = 135,
	FRAME_OP_CREATE_PARTITIONS = 136,
	FRAME_OP_DELETE_PARTITIONS = 137,
	FRAME_OP_DELETE_SEGMENTS = 138,
	FRAME_OP_CREATE_CONSUMER_GROUP = 139,
	FRAME_OP_DELETE_CONSUMER_GROUP = 140,
	FRAME_OP_CREATE_USER = 141,
	FRAME_OP_UPDATE_USER = 142,
	FRAME_OP_DELETE_USER = 143,
	FRAME_OP_CHANGE_PASSWORD = 144,
	FRAME_OP_UPDATE_PERMISSIONS = 145,
	FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN = 146,
	FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN = 147,
	FRAME_OP_JOIN_CONSUMER_GROUP = 148,
	FRAME_OP_LEAVE_CONSUMER_GROUP = 149,
	FRAME_OP_SEND_MESSAGES = 160,
	FRAME_OP_STORE_CONSUMER_OFFSET = 161,
	FRAME_OP_DELETE_CONSUMER_OFFSET = 162,
};

/* Command codes (reference §2.2). Each travels as an operation byte or, for reads, as NonReplicated. */
enum frame_code {
	FRAME_CODE_PING = 1,
	FRAME_CODE_GET_STATS = 10,
	FRAME_CODE_GET_SNAPSHOT_FILE = 11,
	FRAME_CODE_GET_CLUSTER_METADATA = 12,
	/* Galgo's own (docs/protocol-extensions.md), above Iggy's range. */
	FRAME_CODE_GALGO_PARTITION_LEADERS = 10001,
	FRAME_CODE_GALGO_SET_REDIRECT = 10002,
	FRAME_CODE_GALGO_ADD_NODE = 10003,
	FRAME_CODE_GALGO_REMOVE_NODE = 10004,
	FRAME_CODE_GALGO_DRAIN = 10005,
	FRAME_CODE_DESCRIBE_OPTIONS = 13,
	/*
	 * Iggy's poll routing (not in the reference; the codes of apache-iggy 0.9.0, seen on the wire). Against
	 * a roster of more than one node the SDK asks its connection for a partition's primary (103 for a poll
	 * with auto-commit, 123 for a consumer-offset write), opens a data connection to the node named, logs
	 * in, attaches it to the first connection's session (14) and sends the poll there as 104 (or the
	 * offset write as the usual op 161/162). All four travel as NonReplicated. Their bodies and replies
	 * are specified in node/srv_poll.c, which serves them.
	 */
	FRAME_CODE_ATTACH_CONSUMER_SESSION = 14,
	FRAME_CODE_GET_ME = 20,
	FRAME_CODE_GET_CLIENT = 21,
	FRAME_CODE_GET_CLIENTS = 22,
	FRAME_CODE_GET_USER = 31,
	FRAME_CODE_GET_USERS = 32,
	FRAME_CODE_CREATE_USER = 33,
	FRAME_CODE_DELETE_USER = 34,
	FRAME_CODE_UPDATE_USER = 35,
	FRAME_CODE_UPDATE_PERMISSIONS = 36,
	FRAME_CODE_CHANGE_PASSWORD = 37,
	FRAME_CODE_LOGIN_USER = 38, /* legacy: answered with Eviction(15) */
	FRAME_CODE_LOGOUT_USER = 39,
	FRAME_CODE_LOGIN_REGISTER = 40,
	FRAME_CODE_GET_PERSONAL_ACCESS_TOKENS = 41,
	FRAME_CODE_CREATE_PERSONAL_ACCESS_TOKEN = 42,
	FRAME_CODE_DELETE_PERSONAL_ACCESS_TOKEN = 43,
	FRAME_CODE_LOGIN_WITH_PERSONAL_ACCESS_TOKEN = 44, /* legacy: answered with Eviction(15) */
	FRAME_CODE_LOGIN_REGISTER_WITH_PAT = 45,
	FRAME_CODE_POLL_MESSAGES = 100,
	FRAME_CODE_SEND_MESSAGES = 101,
	FRAME_CODE_FLUSH_UNSAVED_BUFFER = 102,
	FRAME_CODE_GET_POLL_ROUTING = 103,
	FRAME_CODE_POLL_MESSAGES_ON_PRIMARY = 104,
	FRAME_CODE_GET_CONSUMER_OFFSET = 120,
	FRAME_CODE_STORE_CONSUMER_OFFSET = 121,
	FRAME_CODE_DELETE_CONSUMER_OFFSET = 122,
	FRAME_CODE_GET_CONSUMER_OFFSET_ROUTING = 123,
	FRAME_CODE_GET_STREAM = 200,
	FRAME_CODE_GET_STREAMS = 201,
	FRAME_CODE_CREATE_STREAM = 202,
	FRAME_CODE_DELETE_STREAM = 203,
	FRAME_CODE_UPDATE_STREAM = 204,
	FRAME_CODE_PURGE_STREAM = 205,
	FRAME_CODE_GET_TOPIC = 300,
	FRAME_CODE_GET_TOPICS = 301,
	FRAME_CODE_CREATE_TOPIC = 302,
	FRAME_CODE_DELETE_TOPIC = 303,
	FRAME_CODE_UPDATE_TOPIC = 304,
	FRAME_CODE_PURGE_TOPIC = 305,
	FRAME_CODE_CREATE_PARTITIONS = 402,
	FRAME_CODE_DELETE_PARTITIONS = 403,
	FRAME_CODE_DELETE_SEGMENTS = 503,
	FRAME_CODE_GET_CONSUMER_GROUP = 600,
	FRAME_CODE_GET_CONSUMER_GROUPS = 601,
	FRAME_CODE_CREATE_CONSUMER_GROUP = 602,
	FRAME_CODE_DELETE_CONSUMER_GROUP = 603,
	FRAME_CODE_JOIN_CONSUMER_GROUP = 604,
	FRAME_CODE_LEAVE_CONSUMER_GROUP = 605,
	FRAME_CODE_SYNC_CONSUMER_GROUP = 606,
};

/* Eviction reasons (header byte 255; reference §1.4). */
enum frame_evict_reason {
	FRAME_EVICT_NO_SESSION = 1,
	FRAME_EVICT_CLIENT_RELEASE_TOO_LOW = 2,
	FRAME_EVICT_CLIENT_RELEASE_TOO_HIGH = 3,
	FRAME_EVICT_INVALID_REQUEST_OPERATION = 4,
	FRAME_EVICT_INVALID_REQUEST_BODY = 5,
	FRAME_EVICT_INVALID_REQUEST_BODY_SIZE = 6,
	FRAME_EVICT_SESSION_TOO_LOW = 7,
	FRAME_EVICT_SESSION_RELEASE_MISMATCH = 8,
	FRAME_EVICT_INVALID_CREDENTIALS = 9,
	FRAME_EVICT_INVALID_TOKEN = 10,
	FRAME_EVICT_USER_INACTIVE = 11,
	FRAME_EVICT_SESSION_ERROR = 12,
	FRAME_EVICT_STALE_CLIENT = 13,
	FRAME_EVICT_INCOMPATIBLE_PROTOCOL = 14,
	FRAME_EVICT_MALFORMED_LOGIN = 15,
};

/* Errors of the decoders (negative). Each names the first rule the header breaks. */
enum frame_err {
	FRAME_OK = 0,
	FRAME_E_COMMAND = -1,          /* command is not the one the decoder reads (5, 8 or 13) */
	FRAME_E_SIZE_SMALL = -2,       /* size < 256 (or, for an eviction, ≠ 256) */
	FRAME_E_SIZE_LARGE = -3,       /* size > FRAME_MAX_SIZE */
	FRAME_E_CLIENT = -4,           /* client id is 0 */
	FRAME_E_OP_RESERVED = -5,      /* operation is 0 (Reserved) */
	FRAME_E_OP_UNKNOWN = -6,       /* operation is not a declared Operation value */
	FRAME_E_REGISTER_SESSION = -7, /* a Register with session ≠ 0 */
	FRAME_E_REGISTER_REQUEST = -8, /* a Register with request ≠ 0 */
	FRAME_E_SESSION = -9,          /* an op other than Register and NonReplicated with session 0 */
	FRAME_E_REQUEST = -10,         /* an op other than Register and NonReplicated with request 0 */
	FRAME_E_RESERVED = -11,        /* a padding or reserved byte is not zero */
	FRAME_E_CODE = -12,            /* code bytes 196..200 set on an operation other than NonReplicated */
	FRAME_E_CHECKSUM = -13,        /* request_checksum is stamped and does not match the body */
	FRAME_E_REASON = -14,          /* eviction reason is not 1..15 */
	FRAME_E_VERSION = -15,         /* eviction protocol versions set on a reason other than 14 */
	FRAME_E_RESULT = -16,          /* a result-framed body too short for its result section */
};

/* A u128 as it is stored: the low 8 bytes first. */
struct frame_u128 {
	uint64_t lo;
	uint64_t hi;
};

static inline bool frame_u128_is_zero(struct frame_u128 v)
{
	return (v.lo | v.hi) == 0;
}

static inline bool frame_u128_eq(struct frame_u128 a, struct frame_u128 b)
{
	return a.lo == b.lo && a.hi == b.hi;
}

/* A decoded request header (section 3). */
struct frame_request {
	uint32_t size;                      /* header + body bytes */
	struct frame_u128 client;
	struct frame_u128 request_checksum; /* 0 = unstamped */
	uint64_t timestamp;
	uint64_t request;
	uint8_t operation;                  /* enum frame_op */
	uint64_t session;
	uint32_t user_id;
	uint32_t code;                      /* the command code when operation = 2, else 0 */
};

/* A reply header (section 4). */
struct frame_reply {
	uint32_t size; /* header + body bytes */
	struct frame_u128 request_checksum;
	struct frame_u128 client;
	uint64_t op;
	uint64_t commit;
	uint64_t timestamp;
	uint64_t request;
	uint8_t operation;
	uint32_t status;
};

/* An eviction header (section 5). */
struct frame_eviction {
	struct frame_u128 client;
	uint32_t protocol_version;     /* reason 14 only */
	uint32_t protocol_version_min; /* reason 14 only */
	uint8_t reason;                /* enum frame_evict_reason */
};

/* Little-endian loads and stores. */
static inline uint16_t frame_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t frame_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t frame_le64(const uint8_t *p)
{
	return (uint64_t)frame_le32(p) | (uint64_t)frame_le32(p + 4) << 32;
}
static inline void frame_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}
static inline void frame_put64(uint8_t *p, uint64_t v)
{
	frame_put32(p, (uint32_t)v);
	frame_put32(p + 4, (uint32_t)(v >> 32));
}

/* The size field of a header of which at least the first 52 bytes are present. */
static inline uint32_t frame_peek_size(const uint8_t *hdr)
{
	return frame_le32(hdr + FRAME_OFF_SIZE);
}

/* The command byte of a header of which at least the first 61 bytes are present. */
static inline uint8_t frame_peek_command(const uint8_t *hdr)
{
	return hdr[FRAME_OFF_COMMAND];
}

/* A short English description of a frame_err, for logs. */
const char *frame_strerror(int err);

/*
 * Decodes a request header and checks every rule of section 3. Returns 0 or the frame_err of the first
 * rule broken. The fields are filled even when a rule is broken (for logs), except that nothing is
 * filled when the command is not 5.
 */
int frame_request_decode(const uint8_t hdr[FRAME_HEADER_SIZE], struct frame_request *req);

/*
 * Encodes a request header as a client does: command 5, the fields of `req`, the code at byte 196 only
 * when the operation is NonReplicated, zero elsewhere. Nothing is validated (tests encode bad headers).
 */
void frame_request_encode(uint8_t out[FRAME_HEADER_SIZE], const struct frame_request *req);

/* XXH3-64 (seed 0) of a body: the low half of a stamped request_checksum. */
uint64_t frame_body_checksum(const void *body, size_t len);

/* Stamps req->request_checksum with the body's checksum zero-extended to 128 bits (as the Rust SDK). */
void frame_request_stamp(struct frame_request *req, const void *body, size_t len);

/*
 * Checks a request's request_checksum against its body: 0 when it is unstamped (zero) or equals
 * XXH3-64(body) zero-extended to 128 bits, else FRAME_E_CHECKSUM (the server then denies with status
 * 4, InvalidFormat).
 */
int frame_request_checksum_verify(const struct frame_request *req, const void *body, size_t len);

/*
 * Encodes the reply header for a request: command 8, size = 256 + body_len, request_checksum, client,
 * timestamp, request and operation echoed, the status, zero elsewhere. Returns 0, or -EMSGSIZE when
 * the frame would exceed FRAME_MAX_SIZE.
 */
int frame_reply_encode(uint8_t out[FRAME_HEADER_SIZE], const struct frame_request *req, uint32_t body_len,
		       uint32_t status);

/*
 * Encodes a reply header from its fields (for replies that do not echo the operation, such as
 * DeleteSegments answered as TruncatePartition). Returns 0, -EMSGSIZE when size > FRAME_MAX_SIZE, or
 * -EINVAL when size < 256.
 */
int frame_reply_write(uint8_t out[FRAME_HEADER_SIZE], const struct frame_reply *rep);

/*
 * Decodes a reply header (for the client): command 8, 256 ≤ size ≤ FRAME_MAX_SIZE, a declared operation,
 * padding and reserved bytes zero. Returns 0 or a frame_err.
 */
int frame_reply_decode(const uint8_t hdr[FRAME_HEADER_SIZE], struct frame_reply *rep);

/*
 * Encodes an eviction header. The protocol versions are written only for reason 14; for other reasons
 * those bytes stay zero whatever `e` holds. Returns 0, or -EINVAL for a zero client id or an unknown
 * reason.
 */
int frame_eviction_encode(uint8_t out[FRAME_HEADER_SIZE], const struct frame_eviction *e);

/*
 * Decodes an eviction header: command 13, size 256, client ≠ 0, reason 1..15, versions zero unless the
 * reason is 14, reserved bytes zero. Returns 0 or a frame_err.
 */
int frame_eviction_decode(const uint8_t hdr[FRAME_HEADER_SIZE], struct frame_eviction *e);

/* Whether an operation byte is a declared Operation value (0 Reserved is declared but never valid). */
bool frame_op_is_known(uint8_t op);

/* Whether a reply body for this operation starts with a result section (section 6). */
bool frame_op_is_result_framed(uint8_t op, bool body_nonempty);

/*
 * Splits a result-framed reply body as the SDK does: *error = 0 and *payload_off = 4 for count = 0;
 * for count > 0, *error = the first entry's result (0 is success) and *payload_off = 4 + 8 × count.
 * Returns 0, or FRAME_E_RESULT when the body is too short.
 */
int frame_result_split(const uint8_t *body, size_t len, uint32_t *error, size_t *payload_off);

/* Writes a committed rejection body: count 1, index 0, result = code (12 bytes). */
#define FRAME_RESULT_REJECT_SIZE 12
void frame_result_reject(uint8_t out[FRAME_RESULT_REJECT_SIZE], uint32_t code);

/*
 * The operation byte a command code travels as: its replicated operation, FRAME_OP_NON_REPLICATED for
 * reads (and the legacy logins 38 and 44), or FRAME_OP_RESERVED (0) for an unknown code.
 */
uint8_t frame_code_to_op(uint32_t code);

/*
 * The command code of a replicated operation (Register gives 40 LoginRegister; it may also carry 45).
 * Returns 0 for NonReplicated (the code is in the header), the internal operations 64..68 and unknown
 * bytes.
 */
uint32_t frame_op_to_code(uint8_t op);

/* Whether a command code is in the table of reference §2.2. */
bool frame_code_is_known(uint32_t code);

/* Names for logs: "Ping", "CreateStream"; "unknown" for values not in the tables. */
const char *frame_code_name(uint32_t code);
const char *frame_op_name(uint8_t op);

/*
 * The reference server's protocol gate (§1.10): a client is accepted when client ≥ the server version
 * with patch 0 and its major.minor is not above the server's. With `upper_bound` false only the lower
 * bound is checked (what §11.1 recommends for unknown newer SDKs).
 */
bool frame_version_accepts(uint32_t client, uint32_t server, bool upper_bound);

/*
 * Whether the first `len` bytes received on a connection are a legacy frame (section 8). Returns its
 * command code, or 0 when they are not (or not yet) one.
 */
uint32_t frame_legacy_peek(const uint8_t *p, size_t len);

#define FRAME_LEGACY_REPLY_SIZE 8u
#define FRAME_LEGACY_STATUS 3u /* InvalidCommand: known to every legacy SDK */

/* The legacy error reply of section 8: [FRAME_LEGACY_STATUS u32][0 u32]. */
void frame_legacy_reply(uint8_t out[FRAME_LEGACY_REPLY_SIZE]);

#endif /* GALGO_FRAME_H */
