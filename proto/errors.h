/*
 * errors — the status codes of Iggy's client protocol that Galgo sends or reads, with their Iggy names,
 * and Galgo's extension codes (docs/protocol-extensions.md).
 *
 * A status is a u32. 0 is success; any other value is an error code, carried in one of the three error
 * channels of a reply (the reply header's status, the result section of a result-framed reply, or, for a
 * login, the eviction reason the SDK maps to a code: see frame.h). Over HTTP the same code is the "id" of
 * the error JSON, whose "code" is the name in snake_case and "reason" the text below.
 *
 * The name of a code is the name of its variant in Iggy's IggyError (apache/iggy, core/common/src/error/
 * iggy_error.rs), e.g. 58 TransientNotAccepted; Iggy's own string form of a code (as_string, and the HTTP
 * "code") is that name in snake_case, transient_not_accepted. Galgo's extension codes (10058, 10060-10063)
 * are not Iggy's: an Iggy SDK reads them as its generic Error, Galgo's own clients by their number.
 *
 * Iggy never reuses a retired code, so a code's meaning here never changes either. The table in errors.c
 * is the one list of codes, names and texts; the enum below names the codes for the code that sends them.
 */
#ifndef GALGO_PROTO_ERRORS_H
#define GALGO_PROTO_ERRORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum proto_err {
	PROTO_OK = 0,
	PROTO_E_ERROR = 1,
	PROTO_E_INVALID_COMMAND = 3,
	PROTO_E_INVALID_FORMAT = 4,
	PROTO_E_FEATURE_UNAVAILABLE = 5,
	PROTO_E_INVALID_IDENTIFIER = 6,
	PROTO_E_RESOURCE_NOT_FOUND = 20,
	PROTO_E_STALE_CLIENT = 30,
	PROTO_E_UNAUTHENTICATED = 40,
	PROTO_E_UNAUTHORIZED = 41,
	PROTO_E_INVALID_CREDENTIALS = 42,
	PROTO_E_INVALID_USERNAME = 43,
	PROTO_E_INVALID_PASSWORD = 44,
	PROTO_E_USER_ALREADY_EXISTS = 46,
	PROTO_E_USER_INACTIVE = 47,
	PROTO_E_CANNOT_DELETE_USER = 48,
	PROTO_E_CANNOT_CHANGE_PERMISSIONS = 49,
	PROTO_E_PERSONAL_ACCESS_TOKEN_ALREADY_EXISTS = 51,
	PROTO_E_PERSONAL_ACCESS_TOKENS_LIMIT_REACHED = 52,
	PROTO_E_INVALID_PERSONAL_ACCESS_TOKEN = 53,
	PROTO_E_INVALID_PERSONAL_ACCESS_TOKEN_EXPIRY = 56,
	PROTO_E_TRANSIENT_NOT_COMMITTED = 57, /* the SDK retries: the request may not have been applied */
	PROTO_E_TRANSIENT_NOT_ACCEPTED = 58,  /* the SDK retries: the request was certainly not applied */
	PROTO_E_ACCESS_TOKEN_MISSING = 77,
	PROTO_E_INVALID_ACCESS_TOKEN = 78,
	PROTO_E_CLIENT_NOT_FOUND = 100,
	PROTO_E_STREAM_ID_NOT_FOUND = 1009,
	PROTO_E_STREAM_NAME_NOT_FOUND = 1010,
	PROTO_E_STREAM_NAME_ALREADY_EXISTS = 1012,
	PROTO_E_TOO_MANY_STREAMS = 1020,
	PROTO_E_TOPIC_ID_NOT_FOUND = 2010,
	PROTO_E_TOPIC_NAME_NOT_FOUND = 2011,
	PROTO_E_TOPIC_NAME_ALREADY_EXISTS = 2013,
	PROTO_E_TOO_MANY_PARTITIONS = 2015,
	PROTO_E_INVALID_PARTITIONS_COUNT = 2019,
	PROTO_E_TOO_MANY_TOPICS = 2021,
	PROTO_E_PARTITION_NOT_FOUND = 3007,
	PROTO_E_NO_PARTITIONS = 3008,
	PROTO_E_PARTITION_ID_SPACE_EXHAUSTED = 3013,
	PROTO_E_CONSUMER_OFFSET_NOT_FOUND = 3021,
	PROTO_E_SEGMENT_NOT_FOUND = 4000,
	PROTO_E_CANNOT_READ_MESSAGE = 4011,
	PROTO_E_TOO_BIG_USER_HEADERS = 4017,
	PROTO_E_TOO_BIG_MESSAGE_PAYLOAD = 4022,
	PROTO_E_EMPTY_MESSAGE_PAYLOAD = 4024,
	PROTO_E_INVALID_MESSAGE_CHECKSUM = 4027,
	PROTO_E_INVALID_MESSAGE_TIMESTAMP_DELTA = 4038,
	PROTO_E_INVALID_BATCH_CHECKSUM = 4039,
	PROTO_E_UNSUPPORTED_OPTION_KEY = 4041,
	PROTO_E_INVALID_OPTION_VALUE = 4042,
	PROTO_E_OPTIONS_BLOCK_TOO_LARGE = 4043,
	PROTO_E_INVALID_OFFSET = 4100,
	PROTO_E_INVALID_RESERVED_FIELD = 4101,
	PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND = 5000,
	PROTO_E_CONSUMER_GROUP_NAME_NOT_FOUND = 5003,
	PROTO_E_CONSUMER_GROUP_NAME_ALREADY_EXISTS = 5004,
	PROTO_E_CONSUMER_GROUP_MEMBER_NOT_FOUND = 5006,
	PROTO_E_CONSUMER_GROUP_PARTITION_NOT_OWNED = 5009,
	PROTO_E_SNAPSHOT_FILE_COMPLETION_FAILED = 9000,
	PROTO_E_INCOMPATIBLE_PROTOCOL_VERSION = 14003,
	/* Galgo's extensions (docs/protocol-extensions.md). */
	PROTO_E_NOT_LEADER = 10058,       /* redirect mode: this node does not lead the partition */
	PROTO_E_NODE_EXISTS = 10060,      /* AddNode: the id is a member */
	PROTO_E_NODE_NOT_FOUND = 10061,   /* RemoveNode: no such member */
	PROTO_E_NODE_LIMIT = 10062,       /* the roster is full, or the last node cannot go */
	PROTO_E_NO_LIVE_MAJORITY = 10063, /* RemoveNode: the nodes left would have no live majority */
};

struct proto_error {
	uint32_t code;
	const char *name;   /* Iggy's name, e.g. "TransientNotAccepted" */
	const char *reason; /* a short English text, e.g. "Request not accepted, retry" */
};

/* The entry of a code, or NULL for a code the table does not know (0 included). */
const struct proto_error *proto_error_find(uint32_t code);

/* The name of a code, or NULL when unknown. */
const char *proto_error_name(uint32_t code);

/*
 * Writes the snake_case form of a code's name ("transient_not_accepted") into out (NUL-terminated,
 * truncated to cap - 1 bytes). Returns false, writing nothing, when the code is unknown or cap is 0.
 */
bool proto_error_snake(uint32_t code, char *out, size_t cap);

/* The table itself, for tests and documentation: *n entries. */
const struct proto_error *proto_error_table(size_t *n);

#endif /* GALGO_PROTO_ERRORS_H */
