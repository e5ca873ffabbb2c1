/*
 * http_jwt — the access tokens of the HTTP listener: JWTs (RFC 7519) signed with HS256 (HMAC-SHA256),
 * issued after a login and verified on every request that carries one; and the tokens revoked by a
 * logout, refused until they expire.
 *
 * A token is three base64url parts (no padding) joined by '.': the header {"alg":"HS256","typ":"JWT"},
 * the claims {sub, iss, aud, iat, nbf, exp, jti}, and the HMAC-SHA256 of "<header>.<claims>" under the
 * secret. `sub` is the user id as a decimal string, iss and aud "iggy.apache.org", iat and nbf the
 * time of issue and exp that time plus the lifetime (seconds since the epoch), jti 32 random hex digits.
 * A token verifies when its header's alg is HS256, its signature matches (compared in constant time),
 * iss is "iggy.apache.org" and aud is that string or an array holding it, exp is in the future, sub is
 * a user id (a decimal string or a number, up to 2^32 - 1), and its jti was not revoked.
 *
 * The revoked tokens are a list searched in full: logouts are rare, and an entry is dropped once its
 * token has expired (at the next search).
 *
 * Threading: a struct jwt_keys belongs to the loop of its listener.
 */
#ifndef GALGO_HTTP_JWT_H
#define GALGO_HTTP_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "transport/list.h"

struct jwt_keys {
	uint8_t secret[64];
	size_t secret_len;
	uint32_t ttl_s;      /* lifetime of the tokens issued */
	struct link revoked; /* struct jwt_revoked */
};

/*
 * Sets the key up: `secret` (NULL or empty: 32 random bytes; one over 64 bytes is hashed to 32 with
 * SHA-256, as HMAC itself would do with a key above its block) and the lifetime of the tokens issued.
 * Returns 0, or -EIO when no random secret could be made.
 */
int jwt_init(struct jwt_keys *k, const char *secret, uint32_t ttl_s);

/* Forgets the revoked tokens and wipes the secret. */
void jwt_free(struct jwt_keys *k);

/* Issues a token for a user. Returns a malloc'd string, or NULL; *exp is its expiry (seconds since the epoch). */
char *jwt_issue(struct jwt_keys *k, uint32_t user_id, uint64_t *exp);

/* Verifies a token (see above). Returns 0 and fills the user id, jti ("" when none) and exp, or -EACCES. */
int jwt_verify(struct jwt_keys *k, const char *tok, uint32_t *user_id, char jti[33], uint64_t *exp);

/* Refuses the token `jti` until exp (a token without a jti cannot be revoked). */
void jwt_revoke(struct jwt_keys *k, const char *jti, uint64_t exp);

#endif /* GALGO_HTTP_JWT_H */
