/*
 * http_json — the JSON writer of the HTTP listener (transport/http.c and the files it lists), and base64.
 *
 * A struct jw writes JSON text into a wire_buf: every value (and every key) written after another at
 * the same level gets its comma. Strings are escaped: the quote and the backslash by a backslash, control
 * characters by their code point (four hex digits); other bytes are copied as they are. An out-of-memory
 * is kept in the buffer (wire_buf_error), which the caller turns into a 500. The writer checks no
 * nesting: the caller opens and closes what it writes.
 *
 * Base64 is RFC 4648: http_b64_encode and http_b64_decode (declared in transport/http.h) use the
 * standard alphabet with padding (the decoder also takes the URL-safe one, padding optional);
 * http__b64url_encode writes the URL-safe alphabet without padding (the parts of a JWT).
 *
 * Threading: none of its own; a writer belongs to its caller.
 */
#ifndef GALGO_HTTP_JSON_H
#define GALGO_HTTP_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"

/*
 * A JSON writer on a wire_buf: it places the commas itself. Numbers are written exactly (u64 and
 * u128 too, which jansson cannot hold).
 */
struct jw {
	struct wire_buf b;
	bool comma; /* the next value or key needs a comma before it */
};

void jw_init(struct jw *w);
/* Appends bytes as they are (no comma, no escaping). */
void jw_raw(struct jw *w, const char *s, size_t n);
/* Writes the comma a value needs before it, if any, and marks that the next one needs one. */
void jw_sep(struct jw *w);
/* Opens an object ('{') or an array ('['), as a value. */
void jw_open(struct jw *w, char c);
/* Closes what jw_open opened ('}' or ']'). */
void jw_close(struct jw *w, char c);
/* A string of n bytes, escaped. */
void jw_strn(struct jw *w, const char *s, size_t n);
void jw_str(struct jw *w, const char *s);
/* A key; the value that follows takes no comma. */
void jw_key(struct jw *w, const char *k);
void jw_u64(struct jw *w, uint64_t v);
/* A u128 in decimal. */
void jw_u128(struct jw *w, uint64_t lo, uint64_t hi);
void jw_bool(struct jw *w, bool v);
void jw_null(struct jw *w);
/* A float as %.9g; NaN and values beyond ±1e300 are written 0. */
void jw_f64(struct jw *w, double v);
/* Bytes as a base64 string (standard alphabet, padded). */
void jw_b64(struct jw *w, const uint8_t *p, size_t n);
/* A wire string (name, address, ...) as a JSON string. */
void jw_name(struct jw *w, struct wire_str s);

#define JW_KU64(w, k, v) (jw_key((w), (k)), jw_u64((w), (v)))
#define JW_KSTR(w, k, v) (jw_key((w), (k)), jw_str((w), (v)))
#define JW_KBOOL(w, k, v) (jw_key((w), (k)), jw_bool((w), (v)))

/* Base64url (RFC 4648 §5) without padding, then a NUL; out: 4 * ceil(n / 3) + 1 bytes. Returns the length. */
size_t http__b64url_encode(const uint8_t *in, size_t n, char *out);

#endif /* GALGO_HTTP_JSON_H */
