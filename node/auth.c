/* auth — passwords, personal access tokens and permission checks. See auth.h. */
#include "node/auth.h"

#include <argon2.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>

#define T_COST 2
#define M_COST 19456
#define PARALLELISM 1
#define SALT_LEN 16
#define HASH_LEN 32

int auth_hash_password(const char *pw, size_t len, char out[AUTH_HASH_MAX])
{
	uint8_t salt[SALT_LEN];
	if (RAND_bytes(salt, sizeof(salt)) != 1)
		return -EIO;
	int rv = argon2id_hash_encoded(T_COST, M_COST, PARALLELISM, pw, len, salt, sizeof(salt), HASH_LEN, out,
				       AUTH_HASH_MAX);
	return rv == ARGON2_OK ? 0 : -EINVAL;
}

bool auth_verify_password(const char *phc, const char *pw, size_t len)
{
	if (phc == NULL || strncmp(phc, "$argon2id$", 10) != 0)
		return false;
	return argon2id_verify(phc, pw, len) == ARGON2_OK;
}

int auth_pat_generate(char out[AUTH_PAT_LEN + 1])
{
	uint8_t raw[50];
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	int n = EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
	return n == AUTH_PAT_LEN ? 0 : -EIO;
}

void auth_pat_hash(const char *token, size_t len, uint8_t out[32])
{
	SHA256((const unsigned char *)token, len, out);
}

struct meta_user *auth_pat_lookup(const struct meta *m, const char *token, size_t len, struct meta_pat **pat)
{
	uint8_t h[32];
	auth_pat_hash(token, len, h);
	for (uint32_t i = 0; i < m->n_users; i++) {
		struct meta_user *u = m->users[i];
		for (uint32_t k = 0; u != NULL && k < u->n_pats; k++)
			if (memcmp(u->pats[k].hash, h, 32) == 0) {
				*pat = &u->pats[k];
				return u;
			}
	}
	return NULL;
}

void auth_perms_all(struct meta_perms *p)
{
	memset(p, 0, sizeof(*p));
	p->manage_servers = p->read_servers = p->manage_users = p->read_users = true;
	p->manage_streams = p->read_streams = p->manage_topics = p->read_topics = true;
	p->poll_messages = p->send_messages = true;
}

static const struct meta_perm_stream *stream_perm(const struct meta_perms *p, uint32_t id)
{
	for (uint32_t i = 0; i < p->n_streams; i++)
		if (p->streams[i].stream_id == id)
			return &p->streams[i];
	return NULL;
}

static const struct meta_perm_topic *topic_perm(const struct meta_perm_stream *s, uint32_t id)
{
	for (uint32_t i = 0; s != NULL && i < s->n_topics; i++)
		if (s->topics[i].topic_id == id)
			return &s->topics[i];
	return NULL;
}

bool auth_allowed(const struct meta_user *u, enum auth_action a, uint32_t stream_id, uint32_t topic_id)
{
	if (u == NULL)
		return false;
	if (u->id == 0)
		return true;
	if (!u->has_perms)
		return false;
	const struct meta_perms *g = &u->perms;
	const struct meta_perm_stream *s = stream_perm(g, stream_id);
	const struct meta_perm_topic *t = topic_perm(s, topic_id);
	bool ms = g->manage_streams || (s && s->manage_stream);
	bool rs = g->read_streams || ms || (s && s->read_stream);
	bool mt = ms || g->manage_topics || (s && s->manage_topics) || (t && t->manage_topic);
	bool rt = rs || mt || g->read_topics || (s && s->read_topics) || (t && t->read_topic);
	switch (a) {
	case AUTH_READ_SERVERS:
		return g->read_servers || g->manage_servers;
	case AUTH_MANAGE_SERVERS:
		return g->manage_servers;
	case AUTH_READ_USERS:
		return g->read_users || g->manage_users;
	case AUTH_MANAGE_USERS:
		return g->manage_users;
	case AUTH_READ_STREAMS:
		return g->read_streams || g->manage_streams;
	case AUTH_READ_STREAM:
		return rs;
	case AUTH_MANAGE_STREAMS:
		return g->manage_streams;
	case AUTH_MANAGE_STREAM:
		return ms;
	case AUTH_READ_TOPICS:
	case AUTH_READ_TOPIC:
		return rt;
	case AUTH_MANAGE_TOPICS:
		return ms || g->manage_topics || (s && s->manage_topics);
	case AUTH_MANAGE_TOPIC:
		return mt;
	case AUTH_POLL_MESSAGES:
		return rt || g->poll_messages || (s && s->poll_messages) || (t && t->poll_messages);
	case AUTH_SEND_MESSAGES:
		return mt || g->send_messages || (s && s->send_messages) || (t && t->send_messages);
	}
	return false;
}
