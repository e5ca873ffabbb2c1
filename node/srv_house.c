/*
 * srv_house — housekeeping: the node's wall and monotonic clocks as the rooms read them, the one timer
 * (on_house) that retries what replicated work must retry (metadata commands looking for a leader,
 * forwards whose leader moved on, term barriers, topic replies waiting for leaders), and the once-a-second
 * work that is about the node as a whole: its advertised client addresses and the clock-skew watch.
 * Deadlines are not here: every waiter registers its own with srv_deadline. Owns: s->house, s->lwaits'
 * ending. Each other waiter belongs to the room that made it (srv_meta, srv_send, srv_poll).
 */
#include "node/srv_int.h"

uint64_t srv__now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Makes the open logs of a topic match its partition count (opening new ones, destroying removed ones). */
/* ---- Partition replicas (one Raft group each) ---- */

uint64_t srv__mono_ms(void)
{
	return uv_hrtime() / 1000000u;
}

/* A topic reply that waited for its partitions' leaders: it goes with what is known. */
static void lwait_end(struct srv *s, struct lwait *lw)
{
	for (struct lwait **pp = &s->lwaits; *pp != NULL; pp = &(*pp)->next)
		if (*pp == lw) {
			*pp = lw->next;
			break;
		}
	srv__dl_cancel(s, &lw->dl);
	srv__finish_buf(lw->p, 0, true, &lw->body);
	wire_buf_free(&lw->body);
	free(lw);
}

void srv__lwait_expired(struct srv *s, struct srv_dl *d)
{
	lwait_end(s, SRV_DL_OWNER(d, struct lwait, dl));
}

/*
 * The retries of replicated work, every RETRY_MS while there is any (their deadlines are srv_deadline's):
 * metadata commands looking for a leader (refused as never admitted once admit_by passes unsent), forwards
 * whose leader has moved on, term barriers of new partition leaders, topic replies whose leaders are now
 * known, and a new metadata leader's start-of-term work.
 */
void srv__on_house(uv_timer_t *t)
{
	struct srv *s = t->data;
	uint64_t now = srv__mono_ms();
	for (struct mwait *w = s->mwaits, *next; w != NULL; w = next) {
		next = w->next;
		if (!w->placed && !w->sent && now >= w->admit_by)
			srv__mwait_done(s, w, -EAGAIN, 0, NULL);
		else if (!w->placed && w->retry_at <= now)
			srv__mwait_push(s, w);
	}
	for (struct fwd *f = s->fwds, *next; f != NULL; f = next) {
		next = f->next;
		if (srv__fwd_moved_on(s, f, now)) {
			/*
			 * Another leader (or a later term) has been known here for two election timeouts and this
			 * replica's log has not settled the send (srv__fwd_settle): its outcome is unknown, not refused.
			 */
			srv__fwd_answer(s, f, PROTO_E_ERROR, 0, 0);
			continue;
		}
	}
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++) {
			struct part *pt = tp->pp[i];
			if (pt != NULL && pt->term_barrier)
				srv__part_term_barrier(pt);
		}
	for (struct lwait *lw = s->lwaits, *next; lw != NULL; lw = next) {
		next = lw->next;
		if (srv__topic_leaders_known(s, lw->stream_id, lw->topic_id))
			lwait_end(s, lw);
	}
	if (s->leader_work)
		srv__meta_leader_ready(s);
	srv__house_arm(s);
}

void srv__house_arm(struct srv *s)
{
	if (s->closing) {
		/* srv_free ends all waiting work itself; the timer must not fire into what it has closed. */
		uv_timer_stop(&s->house);
		return;
	}
	bool work = s->fwds != NULL || s->mwaits != NULL || s->lwaits != NULL || s->leader_work;
	for (struct tparts *tp = s->parts; tp != NULL && !work; tp = tp->next)
		for (uint32_t i = 0; i < tp->n && !work; i++)
			work = tp->pp[i] != NULL && tp->pp[i]->term_barrier;
	if (!work) {
		uv_timer_stop(&s->house);
		return;
	}
	if (!uv_is_active((uv_handle_t *)&s->house))
		uv_timer_start(&s->house, srv__on_house, RETRY_MS, RETRY_MS);
}

/*
 * Clocks (node/clock.h): a probe to every peer each tick; a warning when a peer's clock goes past half the
 * maximum offset from this node's (and a note when it is back); and when this node's own clock is off from
 * most of the cluster's, it hands over every partition it leads, campaigns for none and admits no send
 * (send_local answers 58: it stamps nothing) until its clock agrees again.
 */
/*
 * This node's client addresses (node.advertised_host, <transport>.advertised_port) go into the metadata
 * (NODE_ADVERTISE) so that every node lists them (srv__client_addr_of): submitted once the metadata is caught
 * up and names this node, and again every 2 s until the metadata holds what the settings say.
 */
/* The WebSocket port this node tells clients: websocket.advertised_port, else its listener's; 0 without one. */
uint16_t srv__own_ws_port(const struct galgo_config *cfg)
{
	char h[256];
	uint16_t port = 0;
	if (!cfg->websocket.enabled)
		return 0;
	if (cfg->websocket.advertised_port != 0)
		return (uint16_t)cfg->websocket.advertised_port;
	config_split_address(cfg->websocket.address, h, sizeof(h), &port);
	return port;
}

void srv__advertise_tick(struct srv *s)
{
	if (s->closing || !s->meta_caught_up)
		return;
	uint32_t me = (uint32_t)clu_node_id(s->clu);
	const struct meta_node *mn = meta_node(s->meta, me);
	const struct galgo_config *cfg = s->cfg;
	if (mn == NULL || (strcmp(mn->adv_host, cfg->node.advertised_host) == 0 &&
			   mn->adv_tcp_port == cfg->tcp.advertised_port && mn->adv_quic_port == cfg->quic.advertised_port &&
			   mn->adv_http_port == cfg->http.advertised_port && mn->adv_ws_port == srv__own_ws_port(cfg)))
		return;
	uint64_t now = srv__mono_ms();
	if (now < s->advertise_at)
		return;
	s->advertise_at = now + 2000;
	struct meta_cmd c = {.type = META_NODE_ADVERTISE, .ts = srv__now_us(), .node_id = me, .n_nodes = 1};
	snprintf(c.nodes[0].adv_host, sizeof(c.nodes[0].adv_host), "%s", cfg->node.advertised_host);
	c.nodes[0].adv_tcp_port = (uint16_t)cfg->tcp.advertised_port;
	c.nodes[0].adv_quic_port = (uint16_t)cfg->quic.advertised_port;
	c.nodes[0].adv_http_port = (uint16_t)cfg->http.advertised_port;
	c.nodes[0].adv_ws_port = srv__own_ws_port(cfg);
	glog_info(TAG, "advertising to clients: host %s, tcp %u, quic %u, http %u (empty or 0: the roster's), websocket %u",
		  cfg->node.advertised_host, cfg->tcp.advertised_port, cfg->quic.advertised_port, cfg->http.advertised_port,
		  c.nodes[0].adv_ws_port);
	srv__commit(s, &c);
}

void srv__clock_tick(struct srv *s)
{
	uint64_t max = (uint64_t)s->cfg->cluster.max_clock_offset_ms * 1000u, self = clu_node_id(s->clu);
	if (max == 0)
		return;
	clu_clock_probe(s->clu);
	const struct clu_node *nodes;
	size_t n = clu_nodes(s->clu, &nodes);
	for (size_t i = 0; i < n; i++) {
		uint64_t peer = nodes[i].id;
		int64_t off;
		uint64_t err;
		if (peer == self || peer > CLU_MAX_NODE_ID || !clu_clock_offset(s->clu, peer, &off, &err))
			continue;
		uint64_t mag = off < 0 ? (uint64_t)0 - (uint64_t)off : (uint64_t)off;
		bool far = mag > err && mag - err > max / 2;
		if (far && !s->clock_far[peer])
			glog_warn(TAG, "node %" PRIu64 "'s clock is %+.3f s from this node's (± %.1f ms); at most %" PRIu32
				       " ms is tolerated",
				  peer, (double)off / 1e6, (double)err / 1e3, s->cfg->cluster.max_clock_offset_ms);
		else if (!far && s->clock_far[peer])
			glog_info(TAG, "node %" PRIu64 "'s clock is back within %.3f s of this node's", peer,
				  (double)max / 2e6);
		s->clock_far[peer] = far;
	}
	bool skewed = clu_clock_skewed(s->clu);
	if (skewed != s->clock_skewed) {
		if (skewed)
			glog_error(TAG, "this node's clock is off by more than %" PRIu32 " ms from most of the cluster: it "
					"leads no partition and stamps no timestamp until that is fixed",
				   s->cfg->cluster.max_clock_offset_ms);
		else
			glog_info(TAG, "this node's clock agrees with the cluster's again: it may lead partitions");
		s->clock_skewed = skewed;
		for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
			for (uint32_t i = 0; i < tp->n; i++)
				if (tp->pp[i] != NULL)
					clu_group_set_campaign(tp->pp[i]->g, !skewed && !s->draining);
	}
	if (!skewed)
		return;
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		for (uint32_t i = 0; t != NULL && i < tp->n && i < t->n_partitions; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL || !clu_group_leader(pt->g))
				continue;
			const struct meta_partition *mp = &t->partitions[i];
			for (uint32_t k = 0; k < mp->n_replicas; k++)
				if (mp->replicas[k] != self && clu_connected(s->clu, mp->replicas[k]) &&
				    clu_group_transfer(pt->g, mp->replicas[k]) == 0)
					break;
		}
	}
}
