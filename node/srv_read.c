/*
 * srv_read — the read-only queries (NonReplicated commands that change nothing: streams, topics, users,
 * clients, stats, cluster metadata, Galgo's extensions) and the routing of every NonReplicated code to its
 * room. Owns no state.
 */
#include "node/srv_int.h"

void srv__handle_read(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	uint32_t code = hdr->code;
	if (code == FRAME_CODE_POLL_MESSAGES || code == FRAME_CODE_POLL_MESSAGES_ON_PRIMARY) {
		srv__handle_poll(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_GET_CONSUMER_OFFSET) {
		srv__handle_offset(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_GALGO_ADD_NODE || code == FRAME_CODE_GALGO_REMOVE_NODE) {
		srv__handle_membership(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_GALGO_DRAIN) {
		srv__handle_drain(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_GET_POLL_ROUTING || code == FRAME_CODE_GET_CONSUMER_OFFSET_ROUTING) {
		srv__handle_routing(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_ATTACH_CONSUMER_SESSION) {
		srv__handle_attach(ss, hdr, body, len);
		return;
	}
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id sid, tid, gid, uid;
	struct meta_stream *st;
	struct meta_topic *t;
	struct meta_user *me = srv__session_user(ss);
	switch (code) {
	case FRAME_CODE_PING:
		break;
	case FRAME_CODE_GET_STATS:
		if (!auth_allowed(me, AUTH_READ_SERVERS, 0, 0))
			goto denied;
		srv__put_stats(s, &b);
		break;
	case FRAME_CODE_GALGO_PARTITION_LEADERS: {
		/* No body: the original reply. A flags byte asks for appended sections (only 1: node status). */
		uint8_t flags = len > 0 ? wire_get_u8(&r) : 0;
		if (wire_rd_done(&r) != 0 || (flags & ~1u) != 0)
			goto bad;
		srv__put_partition_leaders(s, &b);
		if (flags & 1)
			srv__put_node_status(s, &b);
		break;
	}
	case FRAME_CODE_GALGO_SET_REDIRECT: {
		uint8_t mode = wire_get_u8(&r);
		if (wire_rd_done(&r) != 0 || mode > 1)
			goto bad;
		ss->redirect = mode == 1;
		break;
	}
	case FRAME_CODE_GET_CLUSTER_METADATA:
		srv__put_cluster(s, &b);
		break;
	case FRAME_CODE_DESCRIBE_OPTIONS: {
		uint8_t scope = wire_get_u8(&r);
		if (wire_rd_done(&r) != 0 || scope < 1 || scope > 3)
			goto bad;
		if (scope == 1)
			srv__put_topic_option_catalog(&b);
		else
			wire_put_u32(&b, 0);
		break;
	}
	case FRAME_CODE_GET_ME:
		srv__put_client(s, &b, ss, true);
		break;
	case FRAME_CODE_GET_CLIENT: {
		uint32_t id = wire_get_u32(&r);
		if (wire_rd_done(&r) != 0)
			goto bad;
		if (!auth_allowed(me, AUTH_READ_SERVERS, 0, 0))
			goto denied;
		for (struct srv_session *o = s->sessions; o != NULL; o = o->next)
			if (o->client_id == id)
				srv__put_client(s, &b, o, true);
		break;
	}
	case FRAME_CODE_GET_CLIENTS:
		if (!auth_allowed(me, AUTH_READ_SERVERS, 0, 0))
			goto denied;
		for (struct srv_session *o = s->sessions; o != NULL; o = o->next)
			srv__put_client(s, &b, o, false);
		break;
	case FRAME_CODE_GET_USER:
		wire_get_id(&r, &uid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		{
			struct meta_user *u = srv__find_user(s, &uid);
			if (u != NULL && u != me && !auth_allowed(me, AUTH_READ_USERS, 0, 0))
				goto denied;
			if (u != NULL)
				srv__put_user_details(&b, u);
		}
		break;
	case FRAME_CODE_GET_USERS:
		if (!auth_allowed(me, AUTH_READ_USERS, 0, 0))
			goto denied;
		for (uint32_t i = 0; i < s->meta->n_users; i++)
			if (s->meta->users[i] != NULL)
				srv__put_user_header(&b, s->meta->users[i]);
		break;
	case FRAME_CODE_GET_PERSONAL_ACCESS_TOKENS:
		for (uint32_t i = 0; me != NULL && i < me->n_pats; i++) {
			srv__put_name(&b, me->pats[i].name);
			wire_put_u64(&b, me->pats[i].expiry_at);
		}
		break;
	case FRAME_CODE_GET_STREAM:
		wire_get_id(&r, &sid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = srv__find_stream(s, &sid);
		if (st != NULL) {
			if (!auth_allowed(me, AUTH_READ_STREAM, st->id, 0))
				goto denied;
			srv__put_stream_header(s, &b, st);
			for (uint32_t i = 0; i < st->n_topics; i++)
				if (st->topics[i] != NULL)
					srv__put_topic_header(s, &b, st->topics[i]);
		}
		break;
	case FRAME_CODE_GET_STREAMS:
		if (!auth_allowed(me, AUTH_READ_STREAMS, 0, 0))
			goto denied;
		for (uint32_t i = 0; i < s->meta->n_streams; i++)
			if (s->meta->streams[i] != NULL)
				srv__put_stream_header(s, &b, s->meta->streams[i]);
		break;
	case FRAME_CODE_GET_TOPIC:
		wire_get_id(&r, &sid);
		wire_get_id(&r, &tid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = srv__find_stream(s, &sid);
		t = srv__find_topic(st, &tid);
		if (t != NULL) {
			if (!auth_allowed(me, AUTH_READ_TOPIC, st->id, t->id))
				goto denied;
			srv__put_topic_header(s, &b, t);
			srv__put_partitions(s, &b, t);
		}
		break;
	case FRAME_CODE_GET_TOPICS: {
		wire_get_id(&r, &sid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = srv__find_stream(s, &sid);
		if (st != NULL && !auth_allowed(me, AUTH_READ_TOPICS, st->id, 0))
			goto denied;
		size_t at = wire_put_reserve(&b, 4);
		uint32_t n = 0;
		for (uint32_t i = 0; st != NULL && i < st->n_topics; i++)
			if (st->topics[i] != NULL) {
				srv__put_topic_header(s, &b, st->topics[i]);
				n++;
			}
		wire_patch_u32(&b, at, n);
		break;
	}
	case FRAME_CODE_GET_CONSUMER_GROUP:
	case FRAME_CODE_GET_CONSUMER_GROUPS:
	case FRAME_CODE_SYNC_CONSUMER_GROUP:
		wire_get_id(&r, &sid);
		wire_get_id(&r, &tid);
		if (code != FRAME_CODE_GET_CONSUMER_GROUPS)
			wire_get_id(&r, &gid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = srv__find_stream(s, &sid);
		t = srv__find_topic(st, &tid);
		if (t == NULL) {
			wire_buf_free(&b);
			srv__finish(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND, false, NULL, 0);
			return;
		}
		if (!auth_allowed(me, AUTH_READ_TOPIC, st->id, t->id) &&
		    !auth_allowed(me, AUTH_POLL_MESSAGES, st->id, t->id))
			goto denied;
		if (code == FRAME_CODE_GET_CONSUMER_GROUPS) {
			for (uint32_t i = 0; i < t->n_groups; i++)
				if (t->groups[i] != NULL)
					srv__put_group_details(&b, t, t->groups[i], false);
		} else {
			struct meta_group *g = srv__find_group(t, &gid);
			if (g != NULL && code == FRAME_CODE_GET_CONSUMER_GROUP) {
				srv__put_group_details(&b, t, g, true);
			} else if (g != NULL) {
				struct meta_member *m = meta_group_member(g, ss->client_id);
				if (m != NULL) {
					wire_put_u64(&b, g->generation);
					wire_put_u32(&b, m->n_partitions);
					for (uint32_t i = 0; i < m->n_partitions; i++)
						wire_put_u32(&b, m->partitions[i]);
				}
			}
		}
		break;
	case FRAME_CODE_GET_SNAPSHOT_FILE:
	case FRAME_CODE_FLUSH_UNSAVED_BUFFER:
		wire_buf_free(&b);
		srv__finish(p, E_FEATURE_UNAVAILABLE, false, NULL, 0);
		return;
	case FRAME_CODE_LOGIN_USER:
	case FRAME_CODE_LOGIN_WITH_PERSONAL_ACCESS_TOKEN:
		wire_buf_free(&b);
		/* Legacy logins: the slot is taken, answer it with the eviction. */
		{
			struct frame_eviction e = {.client = hdr->client, .reason = FRAME_EVICT_MALFORMED_LOGIN};
			p->len = FRAME_HEADER_SIZE;
			p->buf = calloc(1, p->len);
			if (p->buf != NULL)
				frame_eviction_encode(p->buf, &e);
			p->ready = true;
			srv__flush_queue(ss);
		}
		return;
	default:
		wire_buf_free(&b);
		srv__finish(p, frame_code_is_known(code) ? E_FEATURE_UNAVAILABLE : E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	srv__finish_buf(p, 0, false, &b);
	return;
denied:
	wire_buf_free(&b);
	srv__finish(p, E_UNAUTHORIZED, false, NULL, 0);
	return;
bad:
	wire_buf_free(&b);
	srv__finish(p, E_INVALID_COMMAND, false, NULL, 0);
}

/* DeleteSegments (op 138, not result-framed): the n oldest whole segments of a partition. */
void srv__handle_delete_segments(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body,
				   size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = srv__pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	struct wire_id sid, tid;
	wire_rd_init(&r, body, len);
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	uint32_t pid = wire_get_u32(&r), n = wire_get_u32(&r);
	if (wire_rd_done(&r) != 0) {
		srv__finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = srv__find_stream(s, &sid);
	struct meta_topic *t = srv__find_topic(st, &tid);
	if (t == NULL) {
		srv__finish(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!auth_allowed(srv__session_user(ss), AUTH_MANAGE_TOPIC, st->id, t->id)) {
		srv__finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct tparts *tp = srv__tparts_find(s, st->id, t->id);
	struct part *pt = tp != NULL && pid < tp->n ? tp->pp[pid] : NULL;
	if (pt == NULL) {
		srv__finish(p, META_E_PARTITION_NOT_FOUND, false, NULL, 0);
		return;
	}
	/* This replica's segments only: every replica keeps its own retained range (a snapshot covers the rest). */
	int rv = 0;
	uint64_t keep = plog_drop_keep_from(pt->log, n, srv__part_applied(pt));
	if (keep > plog_first_index(pt->log)) {
		rv = srv__part_compact(pt, keep);
		if (rv == 0)
			rv = plog_drop_segments(pt->log, n, keep - 1);
	}
	srv__finish(p, rv < 0 ? E_ERROR : 0, false, NULL, 0);
}
