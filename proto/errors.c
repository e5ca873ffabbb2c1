/*
 * errors — the table of status codes (see errors.h). The names are Iggy's IggyError variants; the texts
 * are those the HTTP API answers with (the "reason" of its error JSON).
 */
#include "proto/errors.h"

#include <ctype.h>
#include <string.h>

static const struct proto_error errors[] = {
	{PROTO_E_ERROR, "Error", "Error"},
	{PROTO_E_INVALID_COMMAND, "InvalidCommand", "Invalid command"},
	{PROTO_E_INVALID_FORMAT, "InvalidFormat", "Invalid format"},
	{PROTO_E_FEATURE_UNAVAILABLE, "FeatureUnavailable", "Feature is unavailable"},
	{PROTO_E_INVALID_IDENTIFIER, "InvalidIdentifier", "Invalid identifier"},
	{PROTO_E_RESOURCE_NOT_FOUND, "ResourceNotFound", "Resource not found"},
	{PROTO_E_STALE_CLIENT, "StaleClient", "Stale client"},
	{PROTO_E_UNAUTHENTICATED, "Unauthenticated", "Unauthenticated"},
	{PROTO_E_UNAUTHORIZED, "Unauthorized", "Unauthorized"},
	{PROTO_E_INVALID_CREDENTIALS, "InvalidCredentials", "Invalid credentials"},
	{PROTO_E_INVALID_USERNAME, "InvalidUsername", "Invalid username"},
	{PROTO_E_INVALID_PASSWORD, "InvalidPassword", "Invalid password"},
	{PROTO_E_USER_ALREADY_EXISTS, "UserAlreadyExists", "User already exists"},
	{PROTO_E_USER_INACTIVE, "UserInactive", "User is inactive"},
	{PROTO_E_CANNOT_DELETE_USER, "CannotDeleteUser", "Cannot delete user"},
	{PROTO_E_CANNOT_CHANGE_PERMISSIONS, "CannotChangePermissions", "Cannot change permissions"},
	{PROTO_E_PERSONAL_ACCESS_TOKEN_ALREADY_EXISTS, "PersonalAccessTokenAlreadyExists",
	 "Personal access token already exists"},
	{PROTO_E_PERSONAL_ACCESS_TOKENS_LIMIT_REACHED, "PersonalAccessTokensLimitReached",
	 "Personal access tokens limit reached"},
	{PROTO_E_INVALID_PERSONAL_ACCESS_TOKEN, "InvalidPersonalAccessToken", "Invalid personal access token"},
	{PROTO_E_INVALID_PERSONAL_ACCESS_TOKEN_EXPIRY, "InvalidPersonalAccessTokenExpiry",
	 "Invalid personal access token expiry"},
	{PROTO_E_TRANSIENT_NOT_COMMITTED, "TransientNotCommitted", "Request not committed, retry"},
	{PROTO_E_TRANSIENT_NOT_ACCEPTED, "TransientNotAccepted", "Request not accepted, retry"},
	{PROTO_E_ACCESS_TOKEN_MISSING, "AccessTokenMissing", "Access token is missing"},
	{PROTO_E_INVALID_ACCESS_TOKEN, "InvalidAccessToken", "Invalid access token"},
	{PROTO_E_CLIENT_NOT_FOUND, "ClientNotFound", "Client not found"},
	{PROTO_E_STREAM_ID_NOT_FOUND, "StreamIdNotFound", "Stream not found"},
	{PROTO_E_STREAM_NAME_NOT_FOUND, "StreamNameNotFound", "Stream not found"},
	{PROTO_E_STREAM_NAME_ALREADY_EXISTS, "StreamNameAlreadyExists", "Stream name already exists"},
	{PROTO_E_TOO_MANY_STREAMS, "TooManyStreams", "Too many streams"},
	{PROTO_E_TOPIC_ID_NOT_FOUND, "TopicIdNotFound", "Topic not found"},
	{PROTO_E_TOPIC_NAME_NOT_FOUND, "TopicNameNotFound", "Topic not found"},
	{PROTO_E_TOPIC_NAME_ALREADY_EXISTS, "TopicNameAlreadyExists", "Topic name already exists"},
	{PROTO_E_TOO_MANY_PARTITIONS, "TooManyPartitions", "Too many partitions"},
	{PROTO_E_INVALID_PARTITIONS_COUNT, "InvalidPartitionsCount", "Invalid partitions count"},
	{PROTO_E_TOO_MANY_TOPICS, "TooManyTopics", "Too many topics"},
	{PROTO_E_PARTITION_NOT_FOUND, "PartitionNotFound", "Partition not found"},
	{PROTO_E_NO_PARTITIONS, "NoPartitions", "No partitions"},
	{PROTO_E_PARTITION_ID_SPACE_EXHAUSTED, "PartitionIdSpaceExhausted", "Partition id space exhausted"},
	{PROTO_E_CONSUMER_OFFSET_NOT_FOUND, "ConsumerOffsetNotFound", "Consumer offset not found"},
	{PROTO_E_SEGMENT_NOT_FOUND, "SegmentNotFound", "Segment not found"},
	{PROTO_E_CANNOT_READ_MESSAGE, "CannotReadMessage", "Cannot read message"},
	{PROTO_E_TOO_BIG_USER_HEADERS, "TooBigUserHeaders", "User headers are too big"},
	{PROTO_E_TOO_BIG_MESSAGE_PAYLOAD, "TooBigMessagePayload", "Message payload is too big"},
	{PROTO_E_EMPTY_MESSAGE_PAYLOAD, "EmptyMessagePayload", "Message payload is empty"},
	{PROTO_E_INVALID_MESSAGE_CHECKSUM, "InvalidMessageChecksum", "Invalid message checksum"},
	{PROTO_E_INVALID_MESSAGE_TIMESTAMP_DELTA, "InvalidMessageTimestampDelta", "Invalid message timestamp delta"},
	{PROTO_E_INVALID_BATCH_CHECKSUM, "InvalidBatchChecksum", "Invalid batch checksum"},
	{PROTO_E_UNSUPPORTED_OPTION_KEY, "UnsupportedOptionKey", "Unsupported option key"},
	{PROTO_E_INVALID_OPTION_VALUE, "InvalidOptionValue", "Invalid option value"},
	{PROTO_E_OPTIONS_BLOCK_TOO_LARGE, "OptionsBlockTooLarge", "Options block too large"},
	{PROTO_E_INVALID_OFFSET, "InvalidOffset", "Invalid offset"},
	{PROTO_E_INVALID_RESERVED_FIELD, "InvalidReservedField", "Invalid reserved field"},
	{PROTO_E_CONSUMER_GROUP_ID_NOT_FOUND, "ConsumerGroupIdNotFound", "Consumer group not found"},
	{PROTO_E_CONSUMER_GROUP_NAME_NOT_FOUND, "ConsumerGroupNameNotFound", "Consumer group not found"},
	{PROTO_E_CONSUMER_GROUP_NAME_ALREADY_EXISTS, "ConsumerGroupNameAlreadyExists",
	 "Consumer group name already exists"},
	{PROTO_E_CONSUMER_GROUP_MEMBER_NOT_FOUND, "ConsumerGroupMemberNotFound", "Consumer group member not found"},
	{PROTO_E_CONSUMER_GROUP_PARTITION_NOT_OWNED, "ConsumerGroupPartitionNotOwned",
	 "Consumer group partition not owned"},
	{PROTO_E_SNAPSHOT_FILE_COMPLETION_FAILED, "SnapshotFileCompletionFailed", "Snapshot file completion failed"},
	{PROTO_E_INCOMPATIBLE_PROTOCOL_VERSION, "IncompatibleProtocolVersion", "Incompatible protocol version"},
	{PROTO_E_NOT_LEADER, "NotLeader", "This node does not lead the partition"},
	{PROTO_E_NODE_EXISTS, "NodeExists", "The node is a member already"},
	{PROTO_E_NODE_NOT_FOUND, "NodeNotFound", "No such node"},
	{PROTO_E_NODE_LIMIT, "NodeLimit", "The roster is full, or the last node cannot go"},
	{PROTO_E_NO_LIVE_MAJORITY, "NoLiveMajority", "The nodes left would have no live majority"},
};

const struct proto_error *proto_error_find(uint32_t code)
{
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
		if (errors[i].code == code)
			return &errors[i];
	return NULL;
}

const char *proto_error_name(uint32_t code)
{
	const struct proto_error *e = proto_error_find(code);
	return e != NULL ? e->name : NULL;
}

/* An underscore before every capital but the first, all lower case: Iggy's own derivation of as_string. */
bool proto_error_snake(uint32_t code, char *out, size_t cap)
{
	const struct proto_error *e = proto_error_find(code);
	if (e == NULL || cap == 0)
		return false;
	size_t n = 0;
	for (const char *p = e->name; *p != '\0' && n + 1 < cap; p++) {
		if (isupper((unsigned char)*p) && p != e->name) {
			out[n++] = '_';
			if (n + 1 == cap)
				break;
		}
		out[n++] = (char)tolower((unsigned char)*p);
	}
	out[n] = '\0';
	return true;
}

const struct proto_error *proto_error_table(size_t *n)
{
	*n = sizeof(errors) / sizeof(errors[0]);
	return errors;
}
