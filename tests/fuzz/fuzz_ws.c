/*
 * libFuzzer target for transport/ws's upgrade request parser (ws_upgrade_parse), the first thing the
 * WebSocket listener reads from an untrusted client: it must never crash or read past the bytes it was
 * given, and what it accepts must be a whole request ending in a blank line with a 24-character key,
 * whose accept key is 28 base64 characters. Every prefix of an accepted request is incomplete (0),
 * so that a request arriving in pieces is parsed the same. Seeds: tests/fuzz/corpus/ws/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                        \
	do {                                                                                               \
		if (!(cond))                                                                               \
			abort();                                                                           \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly `size` bytes, so that ASan sees any read past them. */
	char *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	struct ws_upgrade up;
	int rc = ws_upgrade_parse(p, size, &up);
	CHECK(rc == 0 || rc == WS_UPGRADE_BAD || rc == WS_UPGRADE_VERSION || rc == WS_UPGRADE_LONG || rc > 0);
	if (rc > 0) {
		CHECK((size_t)rc <= size && rc >= 4 && memcmp(p + rc - 4, "\r\n\r\n", 4) == 0);
		CHECK(strlen(up.key) == 24);
		char accept[29];
		ws_accept_key(up.key, accept);
		CHECK(strlen(accept) == 28);
		for (size_t cut = 0; cut < (size_t)rc; cut += 1 + cut / 8) {
			struct ws_upgrade u2;
			CHECK(ws_upgrade_parse(p, cut, &u2) == 0);
		}
	}
	if (rc == 0)
		CHECK(size < WS_REQUEST_MAX);
	free(p);
	return 0;
}
