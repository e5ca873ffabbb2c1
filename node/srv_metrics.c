/*
 * srv_metrics — the Prometheus text of GET /metrics and the health answers of /health/live and
 * /health/ready. Reads every room's counters; owns none.
 */
#include "node/srv_int.h"

/* Request latency buckets of the metrics, in microseconds (upper bounds; +Inf is implicit). */
const uint64_t srv__lat_bounds_us[LAT_BUCKETS] = {500, 1000, 5000, 10000, 50000, 100000, 500000, 1000000, 5000000};

/* ---- Metrics ---- */

/* Appends a label value with the escapes of the Prometheus text format (backslash, quote, newline). */
static void metrics_label(struct wire_buf *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			wire_put_u8(b, '\\');
		if (*v == '\n')
			wire_put_bytes(b, "\\n", 2);
		else
			wire_put_u8(b, (uint8_t)*v);
	}
}

static void metrics_printf(struct wire_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void metrics_printf(struct wire_buf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		wire_put_bytes(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* One per-partition sample: name{stream="..",topic="..",partition="N"} value. */
static void metrics_partition(struct wire_buf *b, const char *name, const struct meta_stream *st,
			      const struct meta_topic *t, uint32_t pid, uint64_t v)
{
	metrics_printf(b, "%s{stream_id=\"%" PRIu32 "\",stream=\"", name, st->id);
	metrics_label(b, st->name);
	metrics_printf(b, "\",topic_id=\"%" PRIu32 "\",topic=\"", t->id);
	metrics_label(b, t->name);
	metrics_printf(b, "\",partition=\"%" PRIu32 "\"} %" PRIu64 "\n", pid, v);
}

/*
 * Per Raft group hosted here (label group: "meta" or the partition's stream/topic/partition labels):
 * galgo_raft_term, galgo_raft_leader (1 on the leader), galgo_raft_commit_lag (entries in this replica's log
 * not known committed) and galgo_raft_apply_lag (committed, not applied); galgo_raft_leader_id names the
 * leader this replica knows (0: none).
 */
static void metrics_raft_one(struct wire_buf *b, const char *name, const char *labels, uint64_t v)
{
	metrics_printf(b, "%s{%s} %" PRIu64 "\n", name, labels, v);
}

static void metrics_raft(struct srv *s, struct wire_buf *b)
{
	static const struct {
		const char *name, *help;
	} m[] = {
		{"galgo_raft_term", "Current Raft term of the group on this node."},
		{"galgo_raft_leader", "1 when this node leads the group."},
		{"galgo_raft_leader_id", "The leader this replica knows (0: none)."},
		{"galgo_raft_commit_lag", "Entries in this replica's log not yet known to be committed."},
		{"galgo_raft_apply_lag", "Committed entries not yet applied here."},
		{"galgo_raft_recovering", "1 while this replica, rebuilt after damage, catches up (it votes in no "
					  "election meanwhile)."},
	};
	for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
		metrics_printf(b, "# HELP %s %s\n# TYPE %s gauge\n", m[k].name, m[k].help, m[k].name);
		struct rgroup_status st;
		clu_group_status(s->mg, &st);
		uint64_t v[] = {st.term, st.state == RAFT_LEADER, st.leader_id,
				st.last_index > st.commit_index ? st.last_index - st.commit_index : 0,
				st.commit_index > st.applied_index ? st.commit_index - st.applied_index : 0,
				st.recovering};
		metrics_raft_one(b, m[k].name, "group=\"meta\"", v[k]);
		for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
			for (uint32_t i = 0; i < tp->n; i++) {
				if (tp->pp[i] == NULL)
					continue;
				clu_group_status(tp->pp[i]->g, &st);
				uint64_t w[] = {st.term, st.state == RAFT_LEADER, st.leader_id,
						st.last_index > st.commit_index ? st.last_index - st.commit_index : 0,
						st.commit_index > st.applied_index ? st.commit_index - st.applied_index : 0,
						st.recovering};
				char labels[96];
				snprintf(labels, sizeof(labels), "group=\"partition\",stream_id=\"%" PRIu32 "\",topic_id=\"%" PRIu32
					 "\",partition=\"%" PRIu32 "\"", tp->stream_id, tp->topic_id, i);
				metrics_raft_one(b, m[k].name, labels, w[k]);
			}
	}
	metrics_printf(b, "# HELP galgo_clock_skewed 1 while this node's clock is off from most of the cluster's by "
			  "more than cluster.max_clock_offset_ms.\n# TYPE galgo_clock_skewed gauge\ngalgo_clock_skewed %d\n",
		       s->clock_skewed ? 1 : 0);
	metrics_printf(b, "# HELP galgo_clock_offset_seconds The peer's wall clock minus this node's, measured on "
			  "the node-to-node link.\n# TYPE galgo_clock_offset_seconds gauge\n");
	const struct clu_node *nodes;
	size_t nn = clu_nodes(s->clu, &nodes);
	for (size_t i = 0; i < nn; i++) {
		int64_t off;
		uint64_t err;
		if (nodes[i].id != clu_node_id(s->clu) && clu_clock_offset(s->clu, nodes[i].id, &off, &err))
			metrics_printf(b, "galgo_clock_offset_seconds{peer=\"%" PRIu64 "\"} %.6f\n", nodes[i].id,
				       (double)off / 1e6);
	}
	metrics_printf(b, "# HELP galgo_sends_via_peer_total Sends of a partition this node replicates that another replica "
			  "relayed to the leader, which this node could not reach.\n# TYPE galgo_sends_via_peer_total counter\n"
			  "galgo_sends_via_peer_total %" PRIu64 "\n", s->sends_via_peer);
	metrics_printf(b, "# HELP galgo_partition_restarts_total Partition groups that stopped (a failed write or flush: "
			  "a full disk) and were reopened from disk.\n# TYPE galgo_partition_restarts_total counter\n"
			  "galgo_partition_restarts_total %" PRIu64 "\n", s->restarts);
	metrics_printf(b, "# HELP galgo_partition_repairs_total Damaged replicas set aside on this node to be rebuilt "
			  "from their peers.\n# TYPE galgo_partition_repairs_total counter\ngalgo_partition_repairs_total %"
			  PRIu64 "\n", s->repairs);
}

int srv_health(struct srv *s, bool ready, char **out, size_t *len)
{
	struct rgroup_status ms = {0};
	if (s->mg != NULL)
		clu_group_status(s->mg, &ms);
	uint32_t parts = 0, leaderless = 0;
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		for (uint32_t i = 0; i < tp->n; i++) {
			struct part *pt = tp->pp[i];
			if (pt == NULL || pt->leaving)
				continue;
			parts++;
			leaderless += clu_group_leader_id(pt->g) == 0;
		}
	bool ok = !s->closing && s->mg != NULL && ms.leader_id != 0 && s->meta_caught_up &&
		  ms.applied_index >= ms.commit_index && s->root_seen && leaderless == 0;
	char buf[512];
	int n = snprintf(buf, sizeof(buf),
			 "{\"live\":true,\"ready\":%s,\"node_id\":%" PRIu64 ",\"metadata_leader\":%" PRIu64
			 ",\"metadata_commit\":%" PRIu64 ",\"metadata_applied\":%" PRIu64
			 ",\"partitions\":%" PRIu32 ",\"partitions_without_leader\":%" PRIu32 "}",
			 ok ? "true" : "false", clu_node_id(s->clu), ms.leader_id, ms.commit_index, ms.applied_index, parts,
			 leaderless);
	*out = strdup(buf);
	if (*out == NULL)
		return -ENOMEM;
	*len = (size_t)n;
	return !ready || ok ? 200 : 503;
}

int srv_metrics_text(struct srv *s, char **out, size_t *len)
{
	static const char *const kinds[] = {"", "tcp", "quic", "http", "websocket"};
	static const struct {
		const char *name, *help;
	} part_metrics[] = {
		{"galgo_partition_messages", "Messages held by the partition."},
		{"galgo_partition_bytes", "Bytes of the message batches held by the partition."},
		{"galgo_partition_current_offset", "Offset of the partition's last message (0 when empty)."},
		{"galgo_partition_damaged_records", "Stored records of this replica found failing their checksums "
						    "(fenced: never served)."},
		{"galgo_partition_unverified_bytes", "Stored bytes of this replica not verified yet since it opened."},
	};
	struct wire_buf b;
	wire_buf_init(&b);
	for (size_t m = 0; m < sizeof(part_metrics) / sizeof(part_metrics[0]); m++) {
		metrics_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n", part_metrics[m].name, part_metrics[m].help,
			       part_metrics[m].name);
		for (uint32_t i = 0; i < s->meta->n_streams; i++) {
			const struct meta_stream *st = s->meta->streams[i];
			for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
				const struct meta_topic *t = st->topics[k];
				for (uint32_t pid = 0; t != NULL && pid < t->n_partitions; pid++) {
					struct plog *l = srv__part_log(s, st->id, t->id, pid);
					uint64_t next = l != NULL ? plog_next_offset(l) : 0;
					uint64_t v = m == 0   ? (l != NULL ? next - plog_first_offset(l) : 0)
						     : m == 1 ? srv__part_bytes(s, st->id, t->id, pid)
						     : m == 2 ? (next > 0 ? next - 1 : 0)
						     : m == 3 ? (l != NULL ? plog_damaged(l) : 0)
							      : (l != NULL ? plog_unverified_bytes(l) : 0);
					metrics_partition(&b, part_metrics[m].name, st, t, pid, v);
				}
			}
		}
	}
	uint32_t conns[SRV_TRANSPORT_LAST + 1] = {0};
	for (const struct srv_session *ss = s->sessions; ss != NULL; ss = ss->next)
		conns[ss->kind <= SRV_TRANSPORT_LAST ? ss->kind : 0]++;
	metrics_printf(&b, "# HELP galgo_connections Client sessions open (an HTTP request holds one while it runs).\n"
			   "# TYPE galgo_connections gauge\n");
	for (int k = SRV_TCP; k <= SRV_TRANSPORT_LAST; k++)
		metrics_printf(&b, "galgo_connections{transport=\"%s\"} %" PRIu32 "\n", kinds[k], conns[k]);
	metrics_printf(&b, "# HELP galgo_requests_total Request frames received.\n"
			   "# TYPE galgo_requests_total counter\n");
	for (int k = SRV_TCP; k <= SRV_TRANSPORT_LAST; k++)
		metrics_printf(&b, "galgo_requests_total{transport=\"%s\"} %" PRIu64 "\n", kinds[k], s->tstats[k].requests);
	metrics_printf(&b, "# HELP galgo_request_duration_seconds Time from a request's arrival to its reply leaving.\n"
			   "# TYPE galgo_request_duration_seconds histogram\n");
	for (int k = SRV_TCP; k <= SRV_TRANSPORT_LAST; k++) {
		const struct srv_tstats *t = &s->tstats[k];
		uint64_t cum = 0;
		for (size_t i = 0; i < LAT_BUCKETS; i++) {
			cum += t->latency_buckets[i];
			metrics_printf(&b, "galgo_request_duration_seconds_bucket{transport=\"%s\",le=\"%g\"} %" PRIu64 "\n",
				       kinds[k], (double)srv__lat_bounds_us[i] / 1e6, cum);
		}
		metrics_printf(&b, "galgo_request_duration_seconds_bucket{transport=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
			       kinds[k], t->replies);
		metrics_printf(&b, "galgo_request_duration_seconds_sum{transport=\"%s\"} %.6f\n", kinds[k],
			       (double)t->latency_sum_us / 1e6);
		metrics_printf(&b, "galgo_request_duration_seconds_count{transport=\"%s\"} %" PRIu64 "\n", kinds[k],
			       t->replies);
	}
	metrics_raft(s, &b);
	wire_put_u8(&b, 0);
	if (wire_buf_error(&b) != 0) {
		wire_buf_free(&b);
		return -ENOMEM;
	}
	*len = b.len - 1;
	*out = (char *)wire_buf_take(&b, &(size_t){0});
	return 0;
}
