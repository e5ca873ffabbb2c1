/*
 * srv_login — logins (Register by password or personal access token) and the password work of user
 * commands. Password hashing and checking (argon2, node/auth) run on libuv's thread pool, never on the
 * loop; a login on a follower first proves its metadata current with a read barrier to the metadata
 * leader and fails closed (58) when it cannot. Owns: the login and password jobs in flight.
 */
#include "node/srv_int.h"

/* ---- Login ---- */

static void login_reply(struct pending *p, struct srv_session *ss)
{
	struct wire_buf b;
	wire_buf_init(&b);
	reply_put_login(&b, &(struct reply_login){ss->user_id, ss->session, FRAME_PROTOCOL_VERSION,
						  {(const uint8_t *)SERVER_VERSION, strlen(SERVER_VERSION)}});
	srv__finish_buf(p, 0, true, &b);
}

/*
 * A password check runs on the thread pool (Argon2id takes tens of milliseconds): the reply slot is
 * taken now, so replies stay in order, and filled when the check is done.
 */
struct login_job {
	uv_work_t work;
	struct pending *p;
	uint32_t user_id;
	char *hash;
	char *pw;
	size_t pw_len;
	bool ok;
};

static void login_work(uv_work_t *w)
{
	struct login_job *j = w->data;
	j->ok = auth_verify_password(j->hash, j->pw, j->pw_len);
}

static void login_after(uv_work_t *w, int status)
{
	struct login_job *j = w->data;
	struct pending *p = j->p;
	struct srv_session *ss = p->ss;
	struct srv *s = ss->srv;
	const struct meta_user *u = meta_user(s->meta, j->user_id);
	s->jobs--;
	if (status == 0 && j->ok && u != NULL && u->status == META_USER_ACTIVE && !ss->closed) {
		if (!ss->bound) {
			ss->bound = true;
			ss->vsr_client = p->hdr.client;
			ss->session = ++s->next_session;
			ss->user_id = u->id;
		}
		login_reply(p, ss);
	} else {
		srv__finish_evict(p, &p->hdr, FRAME_EVICT_INVALID_CREDENTIALS);
	}
	explicit_bzero(j->pw, j->pw_len);
	free(j->pw);
	free(j->hash);
	free(j);
}

static int login_async(struct srv_session *ss, const struct frame_request *hdr, const struct meta_user *u,
		       struct wire_str pw)
{
	struct srv *s = ss->srv;
	struct login_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -ENOMEM;
	j->user_id = u->id;
	j->hash = strdup(u->password_hash);
	j->pw = malloc(pw.len + 1);
	j->pw_len = pw.len;
	j->p = j->hash && j->pw ? srv__pending_new(ss, hdr) : NULL;
	if (j->p == NULL) {
		free(j->hash);
		free(j->pw);
		free(j);
		return -ENOMEM;
	}
	memcpy(j->pw, pw.ptr, pw.len);
	j->work.data = j;
	if (uv_queue_work(s->loop, &j->work, login_work, login_after) != 0) {
		/* No thread pool: check on the loop. */
		j->ok = auth_verify_password(j->hash, j->pw, j->pw_len);
		s->jobs++;
		login_after(&j->work, 0);
		return 0;
	}
	s->jobs++;
	return 0;
}

/* A login waiting for its read barrier on a follower. */
struct deferred_login {
	struct srv_session *ss;
	struct frame_request hdr;
	size_t len;
	uint8_t body[];
};

static void handle_register_now(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
				size_t len, bool current);

static void login_barrier_done(struct srv *s, struct mwait *w, int status, int rv, const struct meta_result *res)
{
	(void)s;
	(void)rv;
	(void)res;
	struct deferred_login *d = w->arg;
	/*
	 * Without the barrier (no metadata leader reached within its deadline) this node cannot prove its
	 * users, passwords, tokens and permissions are current: a password changed or a user deleted through
	 * another node would still log in here. The login fails closed, as "not ready, retry" (58).
	 */
	if (!d->ss->closed)
		handle_register_now(d->ss, &d->hdr, d->body, d->len, status == 0);
	srv__session_unref(d->ss);
	free(d);
}

void srv__handle_register(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	if (!clu_group_leader(s->mg) && !s->closing) {
		/* SDKs send nothing else on a connection until the login is answered, so deferring keeps the order. */
		struct deferred_login *d = malloc(sizeof(*d) + len);
		if (d != NULL) {
			d->ss = ss;
			d->hdr = *hdr;
			d->len = len;
			memcpy(d->body, body, len);
			ss->refs++;
			if (srv__meta_barrier(s, login_barrier_done, d) == 0)
				return;
			ss->refs--;
			free(d);
		}
	}
	handle_register_now(ss, hdr, body, len, true);
}

static void handle_register_now(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body,
				size_t len, bool current)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct wire_version_info vi;
	wire_rd_init(&r, body, len);
	if (wire_get_version_info(&r, &vi) != 0) {
		srv__evict(ss, hdr, FRAME_EVICT_MALFORMED_LOGIN);
		return;
	}
	if (!frame_version_accepts(vi.protocol_version, FRAME_PROTOCOL_VERSION, true)) {
		srv__evict(ss, hdr, FRAME_EVICT_INCOMPATIBLE_PROTOCOL);
		return;
	}
	if (!s->root_seen || !current) {
		/*
		 * The metadata has not reached the root user yet (a cluster node before its first leader, or
		 * still catching up), or this node could not prove it is current (login_barrier_done): the users
		 * known here say nothing reliable, and the login certainly did nothing, so it is "not ready,
		 * retry" (58, result-framed as Iggy's transient login reply).
		 */
		struct pending *p = srv__pending_new(ss, hdr);
		if (p != NULL)
			srv__reject(p, PROTO_E_TRANSIENT_NOT_ACCEPTED);
		return;
	}
	if (ss->bound) {
		/* A re-login without logout replays the binding. */
		struct pending *p = srv__pending_new(ss, hdr);
		if (p != NULL)
			login_reply(p, ss);
		return;
	}
	size_t after_version = r.pos;
	struct wire_str user, pw, ctx;
	wire_get_name(&r, &user);
	wire_get_str8(&r, &pw);
	wire_get_str32(&r, &ctx);
	struct meta_user *u = NULL;
	bool cred_failure = false;
	if (wire_rd_done(&r) == 0) {
		u = meta_user_by_name(s->meta, (const char *)user.ptr, user.len);
		if (u != NULL && u->status == META_USER_ACTIVE && login_async(ss, hdr, u, pw) == 0)
			return;
		u = NULL;
		cred_failure = true;
	}
	if (u == NULL) {
		wire_rd_init(&r, body + after_version, len - after_version);
		struct wire_str tok;
		wire_get_str8(&r, &tok);
		wire_get_str32(&r, &ctx);
		if (wire_rd_done(&r) == 0 && tok.len > 0 && !cred_failure) {
			struct meta_pat *pat;
			u = auth_pat_lookup(s->meta, (const char *)tok.ptr, tok.len, &pat);
			if (u == NULL || (pat->expiry_at != 0 && pat->expiry_at <= srv__now_us())) {
				srv__evict(ss, hdr, FRAME_EVICT_INVALID_TOKEN);
				return;
			}
			if (u->status != META_USER_ACTIVE) {
				srv__evict(ss, hdr, FRAME_EVICT_USER_INACTIVE);
				return;
			}
		}
	}
	if (u == NULL) {
		srv__evict(ss, hdr, cred_failure ? FRAME_EVICT_INVALID_CREDENTIALS : FRAME_EVICT_MALFORMED_LOGIN);
		return;
	}
	ss->bound = true;
	ss->vsr_client = hdr->client;
	ss->session = ++s->next_session;
	ss->user_id = u->id;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p != NULL)
		login_reply(p, ss);
}

/*
 * CreateUser and ChangePassword hash (and check) passwords on the thread pool, like logins: the command
 * is built with copies of everything it names, then applied and persisted when the hashing is done.
 */
struct pw_job {
	uv_work_t work;
	struct srv *s;
	struct pending *p;
	struct meta_cmd c;
	char name[META_NAME_MAX + 1];
	struct meta_perms perms;
	char *pw, *cur_pw, *cur_hash; /* cur_*: the current password to check first (ChangePassword) */
	size_t pw_len, cur_len;
	char hash[AUTH_HASH_MAX];
	int hash_rv;
	bool cur_ok;
	void (*build)(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res);
};

static void pw_job_free(struct pw_job *j)
{
	if (j->pw != NULL)
		explicit_bzero(j->pw, j->pw_len);
	if (j->cur_pw != NULL)
		explicit_bzero(j->cur_pw, j->cur_len);
	free(j->pw);
	free(j->cur_pw);
	free(j->cur_hash);
	meta_perms_free(&j->perms);
	free(j);
}

static void pw_work(uv_work_t *w)
{
	struct pw_job *j = w->data;
	j->cur_ok = j->cur_hash == NULL || auth_verify_password(j->cur_hash, j->cur_pw, j->cur_len);
	j->hash_rv = j->cur_ok ? auth_hash_password(j->pw, j->pw_len, j->hash) : 0;
}


static void pw_after(uv_work_t *w, int status)
{
	struct pw_job *j = w->data;
	j->s->jobs--;
	if (!j->cur_ok) {
		srv__reject(j->p, PROTO_E_INVALID_CREDENTIALS);
	} else if (status != 0 || j->hash_rv != 0) {
		srv__finish(j->p, PROTO_E_ERROR, false, NULL, 0);
	} else {
		j->c.password_hash = j->hash;
		srv__meta_write(j->s, j->p, &j->c, j->build);
	}
	pw_job_free(j);
}

/* Copies what the command names into the job and queues it; consumes `perms` (if any). */
void srv__pw_job_start(struct srv *s, struct pending *p, const struct meta_cmd *c, struct meta_perms *perms,
			 struct wire_str pw, const char *cur_hash, struct wire_str cur,
			 void (*build)(struct srv *, struct wire_buf *, const struct meta_cmd *,
				       const struct meta_result *))
{
	struct pw_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		meta_perms_free(perms);
		srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
		return;
	}
	j->s = s;
	j->p = p;
	j->c = *c;
	j->build = build;
	if (c->name != NULL) {
		memcpy(j->name, c->name, c->name_len);
		j->name[c->name_len] = '\0';
		j->c.name = j->name;
	}
	if (perms != NULL) {
		j->perms = *perms; /* takes ownership */
		memset(perms, 0, sizeof(*perms));
		j->c.perms = &j->perms;
	}
	j->pw = malloc(pw.len + 1);
	j->pw_len = pw.len;
	bool ok = j->pw != NULL;
	if (ok)
		memcpy(j->pw, pw.ptr, pw.len);
	if (ok && cur_hash != NULL) {
		j->cur_hash = strdup(cur_hash);
		j->cur_pw = malloc(cur.len + 1);
		j->cur_len = cur.len;
		ok = j->cur_hash != NULL && j->cur_pw != NULL;
		if (ok)
			memcpy(j->cur_pw, cur.ptr, cur.len);
	}
	j->work.data = j;
	if (!ok) {
		pw_job_free(j);
		srv__finish(p, PROTO_E_ERROR, false, NULL, 0);
		return;
	}
	s->jobs++;
	if (uv_queue_work(s->loop, &j->work, pw_work, pw_after) != 0) {
		pw_work(&j->work);
		pw_after(&j->work, 0);
	}
}
