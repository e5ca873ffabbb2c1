/*
 * record — encode, decode and verify the stored envelope (see record.h for the byte format); a MESSAGES
 * payload is verified as an Iggy batch by proto/batch.
 */
#include "partition/record.h"

#include <assert.h>
#include <string.h>
#include <xxhash.h>

/* Envelope field offsets. */
#define ENV_MAGIC 0
#define ENV_VERSION 4
#define ENV_TYPE 5
#define ENV_FLAGS 6
#define ENV_LENGTH 8
#define ENV_COUNT 12
#define ENV_INDEX 16
#define ENV_TERM 24
#define ENV_BASE_OFFSET 32
#define ENV_TIMESTAMP 40
#define ENV_PAYLOAD_CHECK 48
#define ENV_CHECK 56

/* The batch header fields an envelope copies (proto/batch.h). */
#define BH_BASE_OFFSET 8
#define BH_BASE_TS 16
#define BH_CHECKSUM 40
#define BH_COUNT 48

static const uint8_t empty_payload[1];

const char *record_strerror(int err)
{
	switch (err) {
	case RECORD_E_MAGIC:
		return "unknown record magic or version";
	case RECORD_E_ENV_CHECK:
		return "record envelope checksum mismatch";
	case RECORD_E_TYPE:
		return "unknown record type";
	case RECORD_E_PAYLOAD_CHECK:
		return "record payload checksum mismatch";
	default: {
		const char *s = batch_strerror(err);
		return s != NULL ? s : "unknown record error";
	}
	}
}

/* ---- envelope ---- */

static bool type_known(uint8_t type)
{
	return type == RECORD_MESSAGES || type == RECORD_BARRIER || type == RECORD_CHANGE || type == RECORD_COMMAND;
}

void record_env_encode(const struct record_env *e, uint8_t out[RECORD_ENVELOPE_SIZE])
{
	record_put32(out + ENV_MAGIC, RECORD_MAGIC);
	out[ENV_VERSION] = RECORD_VERSION; /* this code writes only the current version */
	out[ENV_TYPE] = e->type;
	out[ENV_FLAGS] = (uint8_t)e->flags;
	out[ENV_FLAGS + 1] = (uint8_t)(e->flags >> 8);
	record_put32(out + ENV_LENGTH, e->length);
	record_put32(out + ENV_COUNT, e->message_count);
	record_put64(out + ENV_INDEX, e->index);
	record_put64(out + ENV_TERM, e->term);
	record_put64(out + ENV_BASE_OFFSET, e->base_offset);
	record_put64(out + ENV_TIMESTAMP, e->timestamp);
	record_put64(out + ENV_PAYLOAD_CHECK, e->payload_check);
	record_put64(out + ENV_CHECK, XXH3_64bits(out, ENV_CHECK));
}

int record_env_decode(const uint8_t in[RECORD_ENVELOPE_SIZE], struct record_env *e)
{
	if (record_le32(in + ENV_MAGIC) != RECORD_MAGIC || in[ENV_VERSION] != RECORD_VERSION)
		return RECORD_E_MAGIC;
	if (record_le64(in + ENV_CHECK) != XXH3_64bits(in, ENV_CHECK))
		return RECORD_E_ENV_CHECK;
	e->version = in[ENV_VERSION];
	e->type = in[ENV_TYPE];
	e->flags = (uint16_t)(in[ENV_FLAGS] | in[ENV_FLAGS + 1] << 8);
	e->length = record_le32(in + ENV_LENGTH);
	e->message_count = record_le32(in + ENV_COUNT);
	e->index = record_le64(in + ENV_INDEX);
	e->term = record_le64(in + ENV_TERM);
	e->base_offset = record_le64(in + ENV_BASE_OFFSET);
	e->timestamp = record_le64(in + ENV_TIMESTAMP);
	e->payload_check = record_le64(in + ENV_PAYLOAD_CHECK);
	if (!type_known(e->type))
		return RECORD_E_TYPE;
	return RECORD_OK;
}

void record_env_fill(struct record_env *e, const uint8_t *payload, uint32_t length)
{
	e->version = RECORD_VERSION;
	e->length = length;
	if (e->type == RECORD_MESSAGES) {
		if (length < BATCH_HEADER_SIZE) { /* not a batch: leave what verify will reject */
			e->message_count = 0;
			e->payload_check = 0;
			return;
		}
		e->message_count = record_le32(payload + BH_COUNT);
		e->base_offset = record_le64(payload + BH_BASE_OFFSET);
		e->timestamp = record_le64(payload + BH_BASE_TS);
		e->payload_check = record_le64(payload + BH_CHECKSUM);
		return;
	}
	e->message_count = 0;
	e->payload_check = XXH3_64bits(length ? payload : empty_payload, length);
}

int record_payload_verify(const struct record_env *e, const uint8_t *payload, size_t length)
{
	if (length != e->length || length > RECORD_MAX_PAYLOAD)
		return RECORD_E_LENGTH;
	if (e->type == RECORD_MESSAGES) {
		int rc = batch_verify(payload, length, true);
		if (rc)
			return rc;
		if (record_le32(payload + BH_COUNT) != e->message_count)
			return RECORD_E_COUNT;
		if (record_le64(payload + BH_BASE_OFFSET) != e->base_offset ||
		    record_le64(payload + BH_BASE_TS) != e->timestamp)
			return RECORD_E_FIELDS;
		if (record_le64(payload + BH_CHECKSUM) != e->payload_check)
			return RECORD_E_PAYLOAD_CHECK;
		return RECORD_OK;
	}
	if (!type_known(e->type))
		return RECORD_E_TYPE;
	if (e->message_count != 0)
		return RECORD_E_COUNT;
	if (XXH3_64bits(length ? payload : empty_payload, length) != e->payload_check)
		return RECORD_E_PAYLOAD_CHECK;
	return RECORD_OK;
}
