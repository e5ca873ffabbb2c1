/*
 * frame — the 256-byte headers of the Iggy client protocol. The byte layouts are specified in frame.h.
 */
#include "proto/frame.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <xxhash.h>

/* Request offsets (frame.h section 3). */
#define REQ_CLIENT 128
#define REQ_CHECKSUM 144
#define REQ_TIMESTAMP 160
#define REQ_REQUEST 168
#define REQ_OPERATION 176
#define REQ_PADDING 177
#define REQ_SESSION 184
#define REQ_USER_ID 192
#define REQ_CODE 196
#define REQ_RESERVED 200

/* Reply offsets (frame.h section 4). */
#define REP_CHECKSUM 128
#define REP_CONTEXT 144
#define REP_CLIENT 160
#define REP_OP 176
#define REP_COMMIT 184
#define REP_TIMESTAMP 192
#define REP_REQUEST 200
#define REP_OPERATION 208
#define REP_PADDING 209
#define REP_STATUS 216
#define REP_RESERVED 220

/* Eviction offsets (frame.h section 5). */
#define EVI_CLIENT 128
#define EVI_VERSION 144
#define EVI_VERSION_MIN 148
#define EVI_RESERVED 152
#define EVI_REASON 255

/* The common prefix's reserved_frame range. */
#define RESERVED_FRAME 62
#define RESERVED_FRAME_END 128

static struct frame_u128 get128(const uint8_t *p)
{
	return (struct frame_u128){.lo = frame_le64(p), .hi = frame_le64(p + 8)};
}

static void put128(uint8_t *p, struct frame_u128 v)
{
	frame_put64(p, v.lo);
	frame_put64(p + 8, v.hi);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

const char *frame_strerror(int err)
{
	switch (err) {
	case FRAME_OK:
		return "ok";
	case FRAME_E_COMMAND:
		return "unexpected frame command";
	case FRAME_E_SIZE_SMALL:
		return "frame size below the header size";
	case FRAME_E_SIZE_LARGE:
		return "frame size above the maximum";
	case FRAME_E_CLIENT:
		return "client id is zero";
	case FRAME_E_OP_RESERVED:
		return "operation is Reserved (0)";
	case FRAME_E_OP_UNKNOWN:
		return "operation is not a declared value";
	case FRAME_E_REGISTER_SESSION:
		return "register with a non-zero session";
	case FRAME_E_REGISTER_REQUEST:
		return "register with a non-zero request number";
	case FRAME_E_SESSION:
		return "session is zero";
	case FRAME_E_REQUEST:
		return "request number is zero";
	case FRAME_E_RESERVED:
		return "reserved bytes are not zero";
	case FRAME_E_CODE:
		return "command code set on a replicated operation";
	case FRAME_E_CHECKSUM:
		return "request checksum mismatch";
	case FRAME_E_REASON:
		return "unknown eviction reason";
	case FRAME_E_VERSION:
		return "protocol versions on an eviction other than IncompatibleProtocol";
	case FRAME_E_RESULT:
		return "reply body too short for its result section";
	default:
		return "unknown frame error";
	}
}

bool frame_op_is_known(uint8_t op)
{
	return op <= FRAME_OP_LOGOUT || (op >= 64 && op <= 68) || (op >= 128 && op <= 149) ||
	       (op >= 160 && op <= 162);
}

int frame_request_decode(const uint8_t hdr[FRAME_HEADER_SIZE], struct frame_request *req)
{
	if (hdr[FRAME_OFF_COMMAND] != FRAME_CMD_REQUEST)
		return FRAME_E_COMMAND;

	memset(req, 0, sizeof *req);
	req->size = frame_le32(hdr + FRAME_OFF_SIZE);
	req->client = get128(hdr + REQ_CLIENT);
	req->request_checksum = get128(hdr + REQ_CHECKSUM);
	req->timestamp = frame_le64(hdr + REQ_TIMESTAMP);
	req->request = frame_le64(hdr + REQ_REQUEST);
	req->operation = hdr[REQ_OPERATION];
	req->session = frame_le64(hdr + REQ_SESSION);
	req->user_id = frame_le32(hdr + REQ_USER_ID);
	if (req->operation == FRAME_OP_NON_REPLICATED)
		req->code = frame_le32(hdr + REQ_CODE);

	if (req->size < FRAME_HEADER_SIZE)
		return FRAME_E_SIZE_SMALL;
	if (req->size > FRAME_MAX_SIZE)
		return FRAME_E_SIZE_LARGE;
	if (frame_u128_is_zero(req->client))
		return FRAME_E_CLIENT;
	if (req->operation == FRAME_OP_RESERVED)
		return FRAME_E_OP_RESERVED;
	if (!frame_op_is_known(req->operation))
		return FRAME_E_OP_UNKNOWN;
	/* Reference §1.2: Register carries neither a session nor a request number; NonReplicated is exempt
	 * (a ping works before login); every other operation needs both. */
	if (req->operation == FRAME_OP_REGISTER) {
		if (req->session != 0)
			return FRAME_E_REGISTER_SESSION;
		if (req->request != 0)
			return FRAME_E_REGISTER_REQUEST;
	} else if (req->operation != FRAME_OP_NON_REPLICATED) {
		if (req->session == 0)
			return FRAME_E_SESSION;
		if (req->request == 0)
			return FRAME_E_REQUEST;
	}
	if (req->operation != FRAME_OP_NON_REPLICATED && !all_zero(hdr + REQ_CODE, 4))
		return FRAME_E_CODE;
	if (!all_zero(hdr + RESERVED_FRAME, RESERVED_FRAME_END - RESERVED_FRAME) ||
	    !all_zero(hdr + REQ_PADDING, REQ_SESSION - REQ_PADDING) ||
	    !all_zero(hdr + REQ_RESERVED, FRAME_HEADER_SIZE - REQ_RESERVED))
		return FRAME_E_RESERVED;
	return FRAME_OK;
}

void frame_request_encode(uint8_t out[FRAME_HEADER_SIZE], const struct frame_request *req)
{
	memset(out, 0, FRAME_HEADER_SIZE);
	frame_put32(out + FRAME_OFF_SIZE, req->size);
	out[FRAME_OFF_COMMAND] = FRAME_CMD_REQUEST;
	put128(out + REQ_CLIENT, req->client);
	put128(out + REQ_CHECKSUM, req->request_checksum);
	frame_put64(out + REQ_TIMESTAMP, req->timestamp);
	frame_put64(out + REQ_REQUEST, req->request);
	out[REQ_OPERATION] = req->operation;
	frame_put64(out + REQ_SESSION, req->session);
	frame_put32(out + REQ_USER_ID, req->user_id);
	if (req->operation == FRAME_OP_NON_REPLICATED)
		frame_put32(out + REQ_CODE, req->code);
}

uint64_t frame_body_checksum(const void *body, size_t len)
{
	return XXH3_64bits(body, len);
}

void frame_request_stamp(struct frame_request *req, const void *body, size_t len)
{
	req->request_checksum = (struct frame_u128){.lo = frame_body_checksum(body, len), .hi = 0};
}

int frame_request_checksum_verify(const struct frame_request *req, const void *body, size_t len)
{
	if (frame_u128_is_zero(req->request_checksum))
		return FRAME_OK;
	if (req->request_checksum.hi != 0 || req->request_checksum.lo != frame_body_checksum(body, len))
		return FRAME_E_CHECKSUM;
	return FRAME_OK;
}

int frame_reply_write(uint8_t out[FRAME_HEADER_SIZE], const struct frame_reply *rep)
{
	if (rep->size < FRAME_HEADER_SIZE)
		return -EINVAL;
	if (rep->size > FRAME_MAX_SIZE)
		return -EMSGSIZE;
	memset(out, 0, FRAME_HEADER_SIZE);
	frame_put32(out + FRAME_OFF_SIZE, rep->size);
	out[FRAME_OFF_COMMAND] = FRAME_CMD_REPLY;
	put128(out + REP_CHECKSUM, rep->request_checksum);
	put128(out + REP_CLIENT, rep->client);
	frame_put64(out + REP_OP, rep->op);
	frame_put64(out + REP_COMMIT, rep->commit);
	frame_put64(out + REP_TIMESTAMP, rep->timestamp);
	frame_put64(out + REP_REQUEST, rep->request);
	out[REP_OPERATION] = rep->operation;
	frame_put32(out + REP_STATUS, rep->status);
	return 0;
}

int frame_reply_encode(uint8_t out[FRAME_HEADER_SIZE], const struct frame_request *req, uint32_t body_len,
		       uint32_t status)
{
	uint64_t size = (uint64_t)FRAME_HEADER_SIZE + body_len;
	if (size > FRAME_MAX_SIZE)
		return -EMSGSIZE;
	struct frame_reply rep = {
		.size = (uint32_t)size,
		.request_checksum = req->request_checksum,
		.client = req->client,
		.timestamp = req->timestamp,
		.request = req->request,
		.operation = req->operation,
		.status = status,
	};
	return frame_reply_write(out, &rep);
}

int frame_reply_decode(const uint8_t hdr[FRAME_HEADER_SIZE], struct frame_reply *rep)
{
	if (hdr[FRAME_OFF_COMMAND] != FRAME_CMD_REPLY)
		return FRAME_E_COMMAND;
	memset(rep, 0, sizeof *rep);
	rep->size = frame_le32(hdr + FRAME_OFF_SIZE);
	rep->request_checksum = get128(hdr + REP_CHECKSUM);
	rep->client = get128(hdr + REP_CLIENT);
	rep->op = frame_le64(hdr + REP_OP);
	rep->commit = frame_le64(hdr + REP_COMMIT);
	rep->timestamp = frame_le64(hdr + REP_TIMESTAMP);
	rep->request = frame_le64(hdr + REP_REQUEST);
	rep->operation = hdr[REP_OPERATION];
	rep->status = frame_le32(hdr + REP_STATUS);
	if (rep->size < FRAME_HEADER_SIZE)
		return FRAME_E_SIZE_SMALL;
	if (rep->size > FRAME_MAX_SIZE)
		return FRAME_E_SIZE_LARGE;
	if (rep->operation == FRAME_OP_RESERVED)
		return FRAME_E_OP_RESERVED;
	if (!frame_op_is_known(rep->operation))
		return FRAME_E_OP_UNKNOWN;
	if (!all_zero(hdr + REP_PADDING, REP_STATUS - REP_PADDING) ||
	    !all_zero(hdr + REP_RESERVED, FRAME_HEADER_SIZE - REP_RESERVED))
		return FRAME_E_RESERVED;
	return FRAME_OK;
}

int frame_eviction_encode(uint8_t out[FRAME_HEADER_SIZE], const struct frame_eviction *e)
{
	if (frame_u128_is_zero(e->client) || e->reason < FRAME_EVICT_NO_SESSION ||
	    e->reason > FRAME_EVICT_MALFORMED_LOGIN)
		return -EINVAL;
	memset(out, 0, FRAME_HEADER_SIZE);
	frame_put32(out + FRAME_OFF_SIZE, FRAME_HEADER_SIZE);
	out[FRAME_OFF_COMMAND] = FRAME_CMD_EVICTION;
	put128(out + EVI_CLIENT, e->client);
	if (e->reason == FRAME_EVICT_INCOMPATIBLE_PROTOCOL) {
		frame_put32(out + EVI_VERSION, e->protocol_version);
		frame_put32(out + EVI_VERSION_MIN, e->protocol_version_min);
	}
	out[EVI_REASON] = e->reason;
	assert(frame_le32(out + FRAME_OFF_SIZE) == FRAME_HEADER_SIZE); /* an eviction is a bare header */
	return 0;
}

int frame_eviction_decode(const uint8_t hdr[FRAME_HEADER_SIZE], struct frame_eviction *e)
{
	if (hdr[FRAME_OFF_COMMAND] != FRAME_CMD_EVICTION)
		return FRAME_E_COMMAND;
	memset(e, 0, sizeof *e);
	e->client = get128(hdr + EVI_CLIENT);
	e->protocol_version = frame_le32(hdr + EVI_VERSION);
	e->protocol_version_min = frame_le32(hdr + EVI_VERSION_MIN);
	e->reason = hdr[EVI_REASON];
	uint32_t size = frame_le32(hdr + FRAME_OFF_SIZE);
	if (size < FRAME_HEADER_SIZE)
		return FRAME_E_SIZE_SMALL;
	if (size > FRAME_HEADER_SIZE)
		return FRAME_E_SIZE_LARGE;
	if (frame_u128_is_zero(e->client))
		return FRAME_E_CLIENT;
	if (e->reason < FRAME_EVICT_NO_SESSION || e->reason > FRAME_EVICT_MALFORMED_LOGIN)
		return FRAME_E_REASON;
	if (e->reason != FRAME_EVICT_INCOMPATIBLE_PROTOCOL && (e->protocol_version | e->protocol_version_min))
		return FRAME_E_VERSION;
	if (!all_zero(hdr + RESERVED_FRAME, RESERVED_FRAME_END - RESERVED_FRAME) ||
	    !all_zero(hdr + EVI_RESERVED, EVI_REASON - EVI_RESERVED))
		return FRAME_E_RESERVED;
	return FRAME_OK;
}

bool frame_op_is_result_framed(uint8_t op, bool body_nonempty)
{
	if (op == FRAME_OP_REGISTER)
		return body_nonempty;
	if (op == FRAME_OP_DELETE_SEGMENTS)
		return false;
	return (op >= 64 && op <= 68) || (op >= 128 && op <= 149) || op == FRAME_OP_STORE_CONSUMER_OFFSET ||
	       op == FRAME_OP_DELETE_CONSUMER_OFFSET;
}

int frame_result_split(const uint8_t *body, size_t len, uint32_t *error, size_t *payload_off)
{
	if (len < 4)
		return FRAME_E_RESULT;
	uint32_t count = frame_le32(body);
	if (count == 0) {
		*error = 0;
		*payload_off = 4;
		return FRAME_OK;
	}
	/* Reference §1.5: the SDK strips 4 + 8 × count bytes and reports the first entry's result. */
	uint64_t need = 4 + 8 * (uint64_t)count;
	if (len < need)
		return FRAME_E_RESULT;
	*error = frame_le32(body + 8);
	*payload_off = (size_t)need;
	assert(*payload_off <= len && *payload_off >= 12); /* the payload starts inside the body */
	return FRAME_OK;
}

void frame_result_reject(uint8_t out[FRAME_RESULT_REJECT_SIZE], uint32_t code)
{
	frame_put32(out, 1);
	frame_put32(out + 4, 0);
	frame_put32(out + 8, code);
}

/* The command table of reference §2.2: code, the operation it travels as, name. */
static const struct code_entry {
	uint32_t code;
	uint8_t op;
	const char *name;
} code_table[] = {
	{FRAME_CODE_PING, FRAME_OP_NON_REPLICATED, "Ping"},
	{FRAME_CODE_GET_STATS, FRAME_OP_NON_REPLICATED, "GetStats"},
	{FRAME_CODE_GET_SNAPSHOT_FILE, FRAME_OP_NON_REPLICATED, "GetSnapshotFile"},
	{FRAME_CODE_GET_CLUSTER_METADATA, FRAME_OP_NON_REPLICATED, "GetClusterMetadata"},
	{FRAME_CODE_GALGO_PARTITION_LEADERS, FRAME_OP_NON_REPLICATED, "GalgoGetPartitionLeaders"},
	{FRAME_CODE_GALGO_SET_REDIRECT, FRAME_OP_NON_REPLICATED, "GalgoSetRedirect"},
	{FRAME_CODE_GALGO_ADD_NODE, FRAME_OP_NON_REPLICATED, "GalgoAddNode"},
	{FRAME_CODE_GALGO_REMOVE_NODE, FRAME_OP_NON_REPLICATED, "GalgoRemoveNode"},
	{FRAME_CODE_GALGO_DRAIN, FRAME_OP_NON_REPLICATED, "GalgoDrain"},
	{FRAME_CODE_DESCRIBE_OPTIONS, FRAME_OP_NON_REPLICATED, "DescribeOptions"},
	{FRAME_CODE_ATTACH_CONSUMER_SESSION, FRAME_OP_NON_REPLICATED, "AttachConsumerSession"},
	{FRAME_CODE_GET_ME, FRAME_OP_NON_REPLICATED, "GetMe"},
	{FRAME_CODE_GET_CLIENT, FRAME_OP_NON_REPLICATED, "GetClient"},
	{FRAME_CODE_GET_CLIENTS, FRAME_OP_NON_REPLICATED, "GetClients"},
	{FRAME_CODE_GET_USER, FRAME_OP_NON_REPLICATED, "GetUser"},
	{FRAME_CODE_GET_USERS, FRAME_OP_NON_REPLICATED, "GetUsers"},
	{FRAME_CODE_CREATE_USER, FRAME_OP_CREATE_USER, "CreateUser"},
	{FRAME_CODE_DELETE_USER, FRAME_OP_DELETE_USER, "DeleteUser"},
	{FRAME_CODE_UPDATE_USER, FRAME_OP_UPDATE_USER, "UpdateUser"},
	{FRAME_CODE_UPDATE_PERMISSIONS, FRAME_OP_UPDATE_PERMISSIONS, "UpdatePermissions"},
	{FRAME_CODE_CHANGE_PASSWORD, FRAME_OP_CHANGE_PASSWORD, "ChangePassword"},
	{FRAME_CODE_LOGIN_USER, FRAME_OP_NON_REPLICATED, "LoginUser"},
	{FRAME_CODE_LOGOUT_USER, FRAME_OP_LOGOUT, "LogoutUser"},
	{FRAME_CODE_LOGIN_REGISTER, FRAME_OP_REGISTER, "LoginRegister"},
	{FRAME_CODE_GET_PERSONAL_ACCESS_TOKENS, FRAME_OP_NON_REPLICATED, "GetPersonalAccessTokens"},
	{FRAME_CODE_CREATE_PERSONAL_ACCESS_TOKEN, FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN, "CreatePersonalAccessToken"},
	{FRAME_CODE_DELETE_PERSONAL_ACCESS_TOKEN, FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN, "DeletePersonalAccessToken"},
	{FRAME_CODE_LOGIN_WITH_PERSONAL_ACCESS_TOKEN, FRAME_OP_NON_REPLICATED, "LoginWithPersonalAccessToken"},
	{FRAME_CODE_LOGIN_REGISTER_WITH_PAT, FRAME_OP_REGISTER, "LoginRegisterWithPat"},
	{FRAME_CODE_POLL_MESSAGES, FRAME_OP_NON_REPLICATED, "PollMessages"},
	{FRAME_CODE_SEND_MESSAGES, FRAME_OP_SEND_MESSAGES, "SendMessages"},
	{FRAME_CODE_FLUSH_UNSAVED_BUFFER, FRAME_OP_NON_REPLICATED, "FlushUnsavedBuffer"},
	{FRAME_CODE_GET_POLL_ROUTING, FRAME_OP_NON_REPLICATED, "GetPollRouting"},
	{FRAME_CODE_POLL_MESSAGES_ON_PRIMARY, FRAME_OP_NON_REPLICATED, "PollMessagesOnPrimary"},
	{FRAME_CODE_GET_CONSUMER_OFFSET, FRAME_OP_NON_REPLICATED, "GetConsumerOffset"},
	{FRAME_CODE_STORE_CONSUMER_OFFSET, FRAME_OP_STORE_CONSUMER_OFFSET, "StoreConsumerOffset"},
	{FRAME_CODE_DELETE_CONSUMER_OFFSET, FRAME_OP_DELETE_CONSUMER_OFFSET, "DeleteConsumerOffset"},
	{FRAME_CODE_GET_CONSUMER_OFFSET_ROUTING, FRAME_OP_NON_REPLICATED, "GetConsumerOffsetRouting"},
	{FRAME_CODE_GET_STREAM, FRAME_OP_NON_REPLICATED, "GetStream"},
	{FRAME_CODE_GET_STREAMS, FRAME_OP_NON_REPLICATED, "GetStreams"},
	{FRAME_CODE_CREATE_STREAM, FRAME_OP_CREATE_STREAM, "CreateStream"},
	{FRAME_CODE_DELETE_STREAM, FRAME_OP_DELETE_STREAM, "DeleteStream"},
	{FRAME_CODE_UPDATE_STREAM, FRAME_OP_UPDATE_STREAM, "UpdateStream"},
	{FRAME_CODE_PURGE_STREAM, FRAME_OP_PURGE_STREAM, "PurgeStream"},
	{FRAME_CODE_GET_TOPIC, FRAME_OP_NON_REPLICATED, "GetTopic"},
	{FRAME_CODE_GET_TOPICS, FRAME_OP_NON_REPLICATED, "GetTopics"},
	{FRAME_CODE_CREATE_TOPIC, FRAME_OP_CREATE_TOPIC, "CreateTopic"},
	{FRAME_CODE_DELETE_TOPIC, FRAME_OP_DELETE_TOPIC, "DeleteTopic"},
	{FRAME_CODE_UPDATE_TOPIC, FRAME_OP_UPDATE_TOPIC, "UpdateTopic"},
	{FRAME_CODE_PURGE_TOPIC, FRAME_OP_PURGE_TOPIC, "PurgeTopic"},
	{FRAME_CODE_CREATE_PARTITIONS, FRAME_OP_CREATE_PARTITIONS, "CreatePartitions"},
	{FRAME_CODE_DELETE_PARTITIONS, FRAME_OP_DELETE_PARTITIONS, "DeletePartitions"},
	{FRAME_CODE_DELETE_SEGMENTS, FRAME_OP_DELETE_SEGMENTS, "DeleteSegments"},
	{FRAME_CODE_GET_CONSUMER_GROUP, FRAME_OP_NON_REPLICATED, "GetConsumerGroup"},
	{FRAME_CODE_GET_CONSUMER_GROUPS, FRAME_OP_NON_REPLICATED, "GetConsumerGroups"},
	{FRAME_CODE_CREATE_CONSUMER_GROUP, FRAME_OP_CREATE_CONSUMER_GROUP, "CreateConsumerGroup"},
	{FRAME_CODE_DELETE_CONSUMER_GROUP, FRAME_OP_DELETE_CONSUMER_GROUP, "DeleteConsumerGroup"},
	{FRAME_CODE_JOIN_CONSUMER_GROUP, FRAME_OP_JOIN_CONSUMER_GROUP, "JoinConsumerGroup"},
	{FRAME_CODE_LEAVE_CONSUMER_GROUP, FRAME_OP_LEAVE_CONSUMER_GROUP, "LeaveConsumerGroup"},
	{FRAME_CODE_SYNC_CONSUMER_GROUP, FRAME_OP_NON_REPLICATED, "SyncConsumerGroup"},
};

#define CODE_TABLE_LEN (sizeof code_table / sizeof code_table[0])

static const struct code_entry *code_find(uint32_t code)
{
	for (size_t i = 0; i < CODE_TABLE_LEN; i++)
		if (code_table[i].code == code)
			return &code_table[i];
	return NULL;
}

uint8_t frame_code_to_op(uint32_t code)
{
	const struct code_entry *e = code_find(code);
	return e ? e->op : FRAME_OP_RESERVED;
}

uint32_t frame_op_to_code(uint8_t op)
{
	/* The first table entry with this byte wins: for Register that is 40 (45 travels as the same byte). */
	if (op == FRAME_OP_NON_REPLICATED || op == FRAME_OP_RESERVED)
		return 0;
	for (size_t i = 0; i < CODE_TABLE_LEN; i++)
		if (code_table[i].op == op)
			return code_table[i].code;
	return 0;
}

bool frame_code_is_known(uint32_t code)
{
	return code_find(code) != NULL;
}

const char *frame_code_name(uint32_t code)
{
	const struct code_entry *e = code_find(code);
	return e ? e->name : "unknown";
}

const char *frame_op_name(uint8_t op)
{
	switch (op) {
	case FRAME_OP_RESERVED:
		return "Reserved";
	case FRAME_OP_REGISTER:
		return "Register";
	case FRAME_OP_NON_REPLICATED:
		return "NonReplicated";
	case FRAME_OP_LOGOUT:
		return "Logout";
	case FRAME_OP_CREATE_TOPIC_WITH_ASSIGNMENTS:
		return "CreateTopicWithAssignments";
	case FRAME_OP_CREATE_PARTITIONS_WITH_ASSIGNMENTS:
		return "CreatePartitionsWithAssignments";
	case FRAME_OP_REMOVE_CONSUMER_GROUP_MEMBER:
		return "RemoveConsumerGroupMember";
	case FRAME_OP_COMPLETE_CONSUMER_GROUP_REVOCATION:
		return "CompleteConsumerGroupRevocation";
	case FRAME_OP_TRUNCATE_PARTITION:
		return "TruncatePartition";
	default:
		break;
	}
	uint32_t code = frame_op_to_code(op);
	return code ? frame_code_name(code) : "unknown";
}

bool frame_version_accepts(uint32_t client, uint32_t server, bool upper_bound)
{
	uint32_t min = server & ~0x3ffu;
	if (client < min)
		return false;
	return !upper_bound || (client >> 10) <= (server >> 10);
}

uint32_t frame_legacy_peek(const uint8_t *p, size_t len)
{
	if (len < 8)
		return 0;
	uint32_t length = frame_le32(p), code = frame_le32(p + 4);
	if (length < 4 || length >= FRAME_HEADER_SIZE - 4 || (size_t)length + 4 > len)
		return 0;
	return code >= 1 && code <= 999 ? code : 0;
}

void frame_legacy_reply(uint8_t out[FRAME_LEGACY_REPLY_SIZE])
{
	frame_put32(out, FRAME_LEGACY_STATUS);
	frame_put32(out + 4, 0);
}
