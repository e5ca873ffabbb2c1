/*
 * http_json — the JSON writer and base64 of the HTTP listener (see http_json.h for the behaviour).
 *
 * Owns the text a struct jw writes (commas, escaping, exact numbers) and the base64 alphabets; which
 * JSON answers what is the callers' (http_reply.c: the replies, the errors and the access tokens).
 */
#include "transport/http_json.h"
#include "transport/http.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Base64 ---- */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes with the given alphabet; `pad` adds '=' to a multiple of 4. Writes a NUL after. */
static size_t b64_encode(const uint8_t *in, size_t n, char *out, const char *alpha, bool pad)
{
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = alpha[v >> 18];
		out[o++] = alpha[(v >> 12) & 63];
		out[o++] = alpha[(v >> 6) & 63];
		out[o++] = alpha[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		out[o++] = alpha[v >> 18];
		out[o++] = alpha[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = alpha[(v >> 6) & 63];
		else if (pad)
			out[o++] = '=';
		if (pad)
			out[o++] = '=';
	}
	/* Exactly 4 characters per 3 bytes (rounded up), as the callers' buffers are sized. */
	assert(o == (pad ? 4 * ((n + 2) / 3) : (4 * n + 2) / 3));
	out[o] = '\0';
	return o;
}

size_t http_b64_encode(const uint8_t *in, size_t n, char *out)
{
	return b64_encode(in, n, out, b64_std, true);
}

size_t http__b64url_encode(const uint8_t *in, size_t n, char *out)
{
	return b64_encode(in, n, out, b64_url, false);
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

long http_b64_decode(const char *in, size_t n, uint8_t *out)
{
	while (n > 0 && in[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return -EINVAL;
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value(in[i]);
		if (v < 0)
			return -EINVAL;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	assert(o <= n / 4 * 3 + 2); /* 3 bytes per 4 characters: within the caller's buffer */
	return (long)o;
}

/* ---- JSON output ---- */

void jw_init(struct jw *w)
{
	wire_buf_init(&w->b);
	w->comma = false;
}

void jw_raw(struct jw *w, const char *s, size_t n)
{
	wire_put_bytes(&w->b, s, n);
}

void jw_sep(struct jw *w)
{
	if (w->comma)
		jw_raw(w, ",", 1);
	w->comma = true;
}

void jw_open(struct jw *w, char c)
{
	jw_sep(w);
	jw_raw(w, &c, 1);
	w->comma = false;
}

void jw_close(struct jw *w, char c)
{
	jw_raw(w, &c, 1);
	w->comma = true;
}

void jw_strn(struct jw *w, const char *s, size_t n)
{
	jw_sep(w);
	jw_raw(w, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			jw_raw(w, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jw_raw(w, esc, 6);
		} else {
			jw_raw(w, (const char *)&c, 1);
		}
	}
	jw_raw(w, "\"", 1);
}

void jw_str(struct jw *w, const char *s)
{
	jw_strn(w, s, strlen(s));
}

/* A key; the value that follows takes no comma. */
void jw_key(struct jw *w, const char *k)
{
	jw_str(w, k);
	jw_raw(w, ":", 1);
	w->comma = false;
}

void jw_u64(struct jw *w, uint64_t v)
{
	char n[24];
	jw_sep(w);
	int len = snprintf(n, sizeof(n), "%" PRIu64, v);
	assert(len > 0 && (size_t)len < sizeof(n)); /* 20 digits at most */
	jw_raw(w, n, (size_t)len);
}

/* A u128 in decimal (by repeated division by 10). */
void jw_u128(struct jw *w, uint64_t lo, uint64_t hi)
{
	unsigned __int128 v = (unsigned __int128)hi << 64 | lo;
	char d[48];
	int i = (int)sizeof(d);
	d[--i] = '\0';
	do {
		d[--i] = (char)('0' + (int)(v % 10));
		v /= 10;
	} while (v != 0);
	jw_sep(w);
	jw_raw(w, d + i, strlen(d + i));
}

void jw_bool(struct jw *w, bool v)
{
	jw_sep(w);
	jw_raw(w, v ? "true" : "false", v ? 4 : 5);
}

void jw_null(struct jw *w)
{
	jw_sep(w);
	jw_raw(w, "null", 4);
}

void jw_b64(struct jw *w, const uint8_t *p, size_t n)
{
	char *s = malloc(4 * (n / 3 + 1) + 1);
	if (s == NULL) {
		w->b.err = -ENOMEM;
		return;
	}
	size_t len = http_b64_encode(p, n, s);
	jw_strn(w, s, len);
	free(s);
}

void jw_f64(struct jw *w, double v)
{
	char n[40];
	if (v != v || v > 1e300 || v < -1e300)
		v = 0;
	jw_sep(w);
	int len = snprintf(n, sizeof(n), "%.9g", v);
	assert(len > 0 && (size_t)len < sizeof(n)); /* a finite double in %.9g fits */
	jw_raw(w, n, (size_t)len);
}

void jw_name(struct jw *w, struct wire_str s)
{
	jw_strn(w, (const char *)s.ptr, s.len);
}
