/*
 * http_jwt — the HTTP listener's access tokens: JWT HS256 issue and verification, and the revoked
 * tokens (see http_jwt.h for the token's bytes and the rules of verification).
 *
 * Owns struct jwt_keys: the secret (wiped when freed) and the list of revoked tokens.
 */
#include "transport/http_jwt.h"
#include "transport/http.h"
#include "transport/http_json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define JWT_ISSUER "iggy.apache.org"

/* ---- Keys ---- */

/* A revoked access token: refused until it expires. */
struct jwt_revoked {
	struct link link;
	char jti[33];
	uint64_t exp;
};

int jwt_init(struct jwt_keys *k, const char *secret, uint32_t ttl_s)
{
	memset(k, 0, sizeof(*k));
	k->ttl_s = ttl_s;
	list_init(&k->revoked);
	if (secret != NULL && secret[0] != '\0') {
		/* A longer secret is hashed to 32 bytes, as HMAC itself would do with one above its block. */
		size_t n = strlen(secret);
		if (n <= sizeof(k->secret)) {
			memcpy(k->secret, secret, n);
			k->secret_len = n;
		} else {
			unsigned int len = 32;
			EVP_Digest(secret, n, k->secret, &len, EVP_sha256(), NULL);
			k->secret_len = len;
		}
	} else {
		k->secret_len = 32;
		if (RAND_bytes(k->secret, 32) != 1)
			return -EIO;
	}
	return 0;
}

void jwt_free(struct jwt_keys *k)
{
	while (!list_empty(&k->revoked)) {
		struct jwt_revoked *r = container_of(k->revoked.next, struct jwt_revoked, link);
		list_remove(&r->link);
		free(r);
	}
	OPENSSL_cleanse(k->secret, sizeof(k->secret));
}

/* ---- Tokens ---- */

/* HMAC-SHA256 of data under the server's secret. */
static void jwt_sign(const struct jwt_keys *k, const char *data, size_t n, uint8_t mac[32])
{
	unsigned int len = 32;
	HMAC(EVP_sha256(), k->secret, (int)k->secret_len, (const unsigned char *)data, n, mac, &len);
}

/*
 * Issues a token for a user: header {"alg":"HS256","typ":"JWT"}, claims {sub, iss, aud, iat, nbf, exp,
 * jti}. Returns a malloc'd string, or NULL; *exp is the expiry (seconds since the epoch).
 */
char *jwt_issue(struct jwt_keys *k, uint32_t user_id, uint64_t *exp)
{
	uint8_t rnd[16];
	char jti[33], claims[384], h64[64], c64[520], sig64[48];
	uint8_t mac[32];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return NULL;
	for (int i = 0; i < 16; i++)
		snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
	uint64_t now = (uint64_t)time(NULL);
	*exp = now + k->ttl_s;
	int n = snprintf(claims, sizeof(claims),
			 "{\"sub\":\"%" PRIu32 "\",\"iss\":\"" JWT_ISSUER "\",\"aud\":\"" JWT_ISSUER "\",\"iat\":%" PRIu64
			 ",\"nbf\":%" PRIu64 ",\"exp\":%" PRIu64 ",\"jti\":\"%s\"}",
			 user_id, now, now, *exp, jti);
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	size_t hl = http__b64url_encode((const uint8_t *)header, sizeof(header) - 1, h64);
	size_t cl = http__b64url_encode((const uint8_t *)claims, (size_t)n, c64);
	size_t total = hl + 1 + cl + 1 + 43 + 1;
	char *tok = malloc(total);
	if (tok == NULL)
		return NULL;
	snprintf(tok, total, "%s.%s", h64, c64);
	jwt_sign(k, tok, hl + 1 + cl, mac);
	size_t sl = http__b64url_encode(mac, sizeof(mac), sig64); /* 43 characters */
	tok[hl + 1 + cl] = '.';
	memcpy(tok + hl + 1 + cl + 1, sig64, sl);
	tok[hl + 1 + cl + 1 + sl] = '\0';
	return tok;
}

/* Decodes one base64url part of a token into a JSON object. */
static json_t *jwt_part(const char *p, size_t n)
{
	if (n > 4096)
		return NULL;
	uint8_t buf[3 * 4096 / 4 + 3];
	long len = http_b64_decode(p, n, buf);
	if (len < 0)
		return NULL;
	json_t *j = json_loadb((const char *)buf, (size_t)len, 0, NULL);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static bool jwt_aud_ok(const json_t *aud)
{
	if (json_is_string(aud))
		return strcmp(json_string_value(aud), JWT_ISSUER) == 0;
	if (!json_is_array(aud))
		return false;
	size_t i;
	json_t *v;
	json_array_foreach(aud, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), JWT_ISSUER) == 0)
			return true;
	return false;
}

static bool jwt_revoked(struct jwt_keys *k, const char *jti)
{
	uint64_t now = (uint64_t)time(NULL);
	for (struct link *l = k->revoked.next; l != &k->revoked;) {
		struct jwt_revoked *r = container_of(l, struct jwt_revoked, link);
		l = l->next;
		if (r->exp < now) {
			list_remove(&r->link);
			free(r);
			continue;
		}
		if (strcmp(r->jti, jti) == 0)
			return true;
	}
	return false;
}

/*
 * Verifies a token: three base64url parts, alg HS256, a valid signature, iss and aud
 * "iggy.apache.org", exp in the future, sub a user id, not revoked. Returns 0 and fills the user id,
 * jti and exp, or -EACCES.
 */
int jwt_verify(struct jwt_keys *k, const char *tok, uint32_t *user_id, char jti[33], uint64_t *exp)
{
	const char *d1 = strchr(tok, '.');
	const char *d2 = d1 != NULL ? strchr(d1 + 1, '.') : NULL;
	if (d2 == NULL || strchr(d2 + 1, '.') != NULL)
		return -EACCES;
	uint8_t mac[32], sig[64];
	jwt_sign(k, tok, (size_t)(d2 - tok), mac);
	size_t sl = strlen(d2 + 1);
	if (sl > 60 || http_b64_decode(d2 + 1, sl, sig) != 32 || CRYPTO_memcmp(mac, sig, 32) != 0)
		return -EACCES;
	json_t *h = jwt_part(tok, (size_t)(d1 - tok));
	json_t *c = jwt_part(d1 + 1, (size_t)(d2 - d1 - 1));
	int rc = -EACCES;
	if (h == NULL || c == NULL)
		goto out;
	const json_t *alg = json_object_get(h, "alg");
	const json_t *iss = json_object_get(c, "iss"), *sub = json_object_get(c, "sub");
	const json_t *ex = json_object_get(c, "exp"), *id = json_object_get(c, "jti");
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
		goto out;
	if (!json_is_string(iss) || strcmp(json_string_value(iss), JWT_ISSUER) != 0 ||
	    !jwt_aud_ok(json_object_get(c, "aud")))
		goto out;
	if (!json_is_integer(ex) || json_integer_value(ex) <= (json_int_t)time(NULL))
		goto out;
	unsigned long long uid;
	char *end;
	if (json_is_string(sub)) {
		const char *sv = json_string_value(sub);
		errno = 0;
		uid = strtoull(sv, &end, 10);
		if (sv[0] < '0' || sv[0] > '9' || *end != '\0' || errno != 0 || uid > UINT32_MAX)
			goto out;
	} else if (json_is_integer(sub) && json_integer_value(sub) >= 0 && json_integer_value(sub) <= UINT32_MAX) {
		uid = (unsigned long long)json_integer_value(sub);
	} else {
		goto out;
	}
	snprintf(jti, 33, "%s", json_is_string(id) ? json_string_value(id) : "");
	if (jti[0] != '\0' && jwt_revoked(k, jti))
		goto out;
	*user_id = (uint32_t)uid;
	*exp = (uint64_t)json_integer_value(ex);
	rc = 0;
out:
	json_decref(h);
	json_decref(c);
	return rc;
}

void jwt_revoke(struct jwt_keys *k, const char *jti, uint64_t exp)
{
	if (jti[0] == '\0' || jwt_revoked(k, jti))
		return;
	struct jwt_revoked *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return;
	snprintf(r->jti, sizeof(r->jti), "%s", jti);
	r->exp = exp;
	list_push(&k->revoked, &r->link);
}
