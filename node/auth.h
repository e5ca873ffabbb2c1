/*
 * auth — passwords, personal access tokens and permission checks.
 *
 * Passwords are stored as Argon2id PHC strings (t=2, m=19456 KiB, p=1: the parameters of Iggy's Rust
 * server, so hashes are interchangeable). Personal access tokens are 50 random bytes in standard base64
 * (68 characters), shown once; only their SHA-256 is stored (Iggy stores BLAKE3, which Debian does not
 * package for C; the hash never appears on the wire).
 *
 * Hashing and verifying a password takes tens of milliseconds: callers run them off the event loop.
 */
#ifndef GALGO_AUTH_H
#define GALGO_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/meta.h"

#define AUTH_HASH_MAX 128
#define AUTH_PAT_LEN 68

/* Hashes a password into a PHC string (out must hold AUTH_HASH_MAX bytes). Returns 0 or -errno. */
int auth_hash_password(const char *pw, size_t len, char out[AUTH_HASH_MAX]);
bool auth_verify_password(const char *phc, const char *pw, size_t len);

/* A new token (NUL-terminated) and the hash of any token. */
int auth_pat_generate(char out[AUTH_PAT_LEN + 1]);
void auth_pat_hash(const char *token, size_t len, uint8_t out[32]);

/* Finds the user and token a PAT belongs to, or NULL. */
struct meta_user *auth_pat_lookup(const struct meta *m, const char *token, size_t len, struct meta_pat **pat);

/* Permission checks (reference §2.3 permissions; rules as Iggy's permissioner). Root (id 0) may do all. */
enum auth_action {
	AUTH_READ_SERVERS,
	AUTH_MANAGE_SERVERS,
	AUTH_READ_USERS,
	AUTH_MANAGE_USERS,
	AUTH_READ_STREAMS,       /* list streams */
	AUTH_READ_STREAM,        /* one stream (stream id given) */
	AUTH_MANAGE_STREAMS,     /* create streams */
	AUTH_MANAGE_STREAM,      /* update/delete/purge one stream */
	AUTH_READ_TOPICS,        /* topics of a stream */
	AUTH_READ_TOPIC,
	AUTH_MANAGE_TOPICS,      /* create topics in a stream */
	AUTH_MANAGE_TOPIC,       /* update/delete/purge/partitions/groups of a topic */
	AUTH_POLL_MESSAGES,
	AUTH_SEND_MESSAGES,
};

bool auth_allowed(const struct meta_user *u, enum auth_action a, uint32_t stream_id, uint32_t topic_id);

/* All global permissions set (the root user's). */
void auth_perms_all(struct meta_perms *p);

#endif /* GALGO_AUTH_H */
