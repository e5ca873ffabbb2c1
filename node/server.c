/*
 * server — the request dispatcher of a single galgod. See server.h.
 *
 * Request handling follows the Iggy reference (shared reference iggy-protocol.md §1-§3):
 *   - before login only Ping is served; other reads get a status-40 deny, writes Eviction(1);
 *   - Register (login by password or token) binds the session; failures are evictions (9, 10, 11, 15);
 *   - metadata writes are decoded, authorized, applied to node/meta (a rejection is a result-section
 *     reply and changes nothing), persisted through node/metastore and answered once durable;
 *   - SendMessages verifies the producer's batch, stamps it and appends it to the partition log; it is
 *     answered when the record is as durable as the topic's policy asks;
 *   - PollMessages answers with the stored records as file ranges (zero copy) up to the durable offset.
 *
 * Choices where the reference leaves room: errors on result-framed ops use the result section; unknown
 * NonReplicated codes get status 3; message-id dedup is not implemented yet; a producer's Balanced
 * partitioning is a server round-robin per topic.
 */
#include "node/server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "node/auth.h"
#include "node/dedup.h"
#include "node/log.h"
#include "node/meta.h"
#include "node/metastore.h"
#include "partition/plog.h"
#include "transport/wire.h"

#define TAG "server"
#define SERVER_VERSION "0.9.0"
#define POLL_MAX_BYTES (8u << 20)
#define NO_PARTITION 0xffffffffu
/* Ids remembered per partition at most: ~2.6 MB of window and table each. */
#define DEDUP_WINDOW_MAX 65536u

/* Iggy status codes used directly here (the metadata ones are in meta.h). */
enum {
	E_ERROR = 1,
	E_INVALID_COMMAND = 3,
	E_INVALID_FORMAT = 4,
	E_FEATURE_UNAVAILABLE = 5,
	E_INVALID_IDENTIFIER = 6,
	E_RESOURCE_NOT_FOUND = 20,
	E_UNAUTHENTICATED = 40,
	E_UNAUTHORIZED = 41,
	E_INVALID_MESSAGE_CHECKSUM = 4027,
	E_INVALID_BATCH_CHECKSUM = 4039,
	E_UNSUPPORTED_OPTION = 4041,
	E_INVALID_OPTION_VALUE = 4042,
};

/* Request latency buckets of the metrics, in microseconds (upper bounds; +Inf is implicit). */
static const uint64_t lat_bounds_us[] = {500, 1000, 5000, 10000, 50000, 100000, 500000, 1000000, 5000000};
#define LAT_BUCKETS (sizeof(lat_bounds_us) / sizeof(lat_bounds_us[0]))

/* Request counters of one transport kind. */
struct srv_tstats {
	uint64_t requests;                /* frames received */
	uint64_t replies;                 /* replies handed to the transport */
	uint64_t latency_sum_us;
	uint64_t latency_buckets[LAT_BUCKETS]; /* not cumulative */
};

/* The partition logs of one topic. */
struct tparts {
	uint32_t stream_id, topic_id;
	struct plog **logs;
	struct dedup **dd;         /* per partition; NULL entries when the topic has no dedup window */
	uint32_t n;
	uint32_t rr;
	struct tparts *next;
};

/* One reply slot in a session's queue. */
struct pending {
	struct pending *next;
	struct srv_session *ss;
	struct frame_request hdr;
	bool ready;
	uint8_t *buf;              /* header (+ inline body) */
	size_t len;
	struct plog_slice slice;   /* poll data after buf */
	bool has_slice;
	struct srv_piece *pieces;
	uint64_t t0;               /* uv_hrtime() when the request arrived (latency metric) */
};

struct srv_session {
	struct srv *srv;
	enum srv_transport kind;
	char peer[64];
	uint32_t client_id;
	srv_send_fn send;
	void *ctx;
	bool closed;
	int refs;
	bool bound;
	struct frame_u128 vsr_client;
	uint64_t session;
	uint32_t user_id;
	struct pending *head, *tail;
	struct srv_session *next;
};

struct srv {
	uv_loop_t *loop;
	const struct galgo_config *cfg;
	struct pio *pio;
	struct flusher *fl;
	struct meta *meta;
	struct metastore *ms;
	struct tparts *parts;
	struct srv_session *sessions;
	uint64_t next_session;
	uint64_t start_us;
	uint32_t jobs;             /* thread-pool jobs in flight (password checks) */
	struct srv_tstats tstats[SRV_HTTP + 1]; /* per transport kind, for srv_metrics_text */
	char pdir[2048];           /* <data_dir>/partitions */
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- Partition logs ---- */

static struct tparts *tparts_find(struct srv *s, uint32_t stream_id, uint32_t topic_id)
{
	for (struct tparts *t = s->parts; t != NULL; t = t->next)
		if (t->stream_id == stream_id && t->topic_id == topic_id)
			return t;
	return NULL;
}

static void part_dir(struct srv *s, uint32_t stream_id, uint32_t topic_id, uint32_t pid, char *out, size_t n)
{
	snprintf(out, n, "%s/%" PRIu32 "/%" PRIu32 "/%" PRIu32, s->pdir, stream_id, topic_id, pid);
}

/* Removes a directory tree through pio (partition and topic directories). */
static int rm_tree(struct pio *pio, const char *path)
{
	char **names;
	size_t n;
	int rv = pio_list(pio, path, &names, &n);
	if (rv == -ENOENT)
		return 0;
	if (rv == -ENOTDIR)
		return pio_unlink(pio, path);
	if (rv != 0)
		return rv;
	for (size_t i = 0; i < n && rv == 0; i++) {
		char child[4096];
		snprintf(child, sizeof(child), "%s/%s", path, names[i]);
		rv = rm_tree(pio, child);
	}
	pio_list_free(names, n);
	return rv == 0 ? pio_rmdir(pio, path) : rv;
}

static void plog_opts_for(struct srv *s, const struct meta_topic *t, uint32_t pid, struct plog_opts *o)
{
	plog_opts_default(o);
	o->segment_size = s->cfg->storage.segment_size;
	o->index_interval = s->cfg->storage.index_interval;
	o->durability = (enum plog_durability)t->durability;
	o->interval_ms = s->cfg->storage.interval_ms;
	o->log = glog_sink;
	o->log_ud = "partition";
	(void)pid;
}

/* Calls fn on every frame of the batches in buf (a sequence of stored batches). */
static void each_frame(const uint8_t *buf, size_t len, void (*fn)(void *arg, const uint8_t *frame), void *arg)
{
	size_t at = 0;
	while (at + RECORD_BATCH_HEADER_SIZE <= len) {
		struct record_batch_hdr h;
		record_batch_hdr_decode(buf + at, &h);
		if (h.batch_length < RECORD_BATCH_HEADER_SIZE || h.batch_length > len - at)
			return;
		size_t f = at + RECORD_BATCH_HEADER_SIZE, end = at + h.batch_length;
		for (uint32_t i = 0; i < h.message_count && f + RECORD_FRAME_HEADER_SIZE <= end; i++) {
			fn(arg, buf + f);
			f += RECORD_FRAME_HEADER_SIZE + (size_t)record_le32(buf + f + 36) + record_le32(buf + f + 32);
		}
		at = end;
	}
}

static bool id_is_zero(const uint8_t *id)
{
	static const uint8_t zero[16];
	return memcmp(id, zero, 16) == 0;
}

static void add_frame_id(void *arg, const uint8_t *frame)
{
	if (!id_is_zero(frame + 8))
		dedup_add(arg, frame + 8);
}

/* Fills a partition's dedup window with the ids of its last messages (it is derived from the log). */
static void dedup_rebuild(struct plog *l, struct dedup *d)
{
	if (d == NULL)
		return;
	uint64_t next = plog_next_offset(l), first = plog_first_offset(l), cap = dedup_capacity(d);
	uint64_t from = next - first > cap ? next - cap : first;
	while (from < next) {
		struct plog_slice sl;
		if (plog_read(l, from, 100000, 16u << 20, next - 1, &sl) != 0 || sl.messages == 0) {
			plog_slice_release(&sl);
			return;
		}
		uint8_t *buf = malloc(sl.bytes);
		if (buf != NULL && plog_slice_copy(&sl, buf) == 0)
			each_frame(buf, sl.bytes, add_frame_id, d);
		free(buf);
		from = sl.last_offset + 1;
		plog_slice_release(&sl);
	}
}

/* Makes the open logs of a topic match its partition count (opening new ones, destroying removed ones). */
static int tparts_sync(struct srv *s, const struct meta_topic *t)
{
	struct tparts *tp = tparts_find(s, t->stream_id, t->id);
	if (tp == NULL) {
		tp = calloc(1, sizeof(*tp));
		if (tp == NULL)
			return -ENOMEM;
		tp->stream_id = t->stream_id;
		tp->topic_id = t->id;
		tp->next = s->parts;
		s->parts = tp;
	}
	int rv = 0;
	while (tp->n > t->n_partitions) {
		struct plog *l = tp->logs[--tp->n];
		dedup_free(tp->dd[tp->n]);
		if (l != NULL)
			plog_destroy(l);
	}
	if (t->n_partitions > tp->n) {
		struct plog **a = realloc(tp->logs, t->n_partitions * sizeof(*a));
		if (a == NULL)
			return -ENOMEM;
		tp->logs = a;
		struct dedup **d = realloc(tp->dd, t->n_partitions * sizeof(*d));
		if (d == NULL)
			return -ENOMEM;
		tp->dd = d;
		for (uint32_t p = tp->n; p < t->n_partitions; p++) {
			char dir[4096];
			struct plog_opts o;
			struct plog_report rep;
			part_dir(s, t->stream_id, t->id, p, dir, sizeof(dir));
			plog_opts_for(s, t, p, &o);
			int r = plog_open(s->pio, s->fl, dir, &o, &rep, &tp->logs[p]);
			tp->dd[p] = NULL;
			if (r != 0) {
				glog_error(TAG, "partition %s cannot be opened: %s", dir, strerror(-r));
				tp->logs[p] = NULL;
				rv = r;
			} else if (t->dedup_window > 0) {
				tp->dd[p] = dedup_new((uint32_t)(t->dedup_window > DEDUP_WINDOW_MAX ? DEDUP_WINDOW_MAX : t->dedup_window));
				dedup_rebuild(tp->logs[p], tp->dd[p]);
			}
		}
		tp->n = t->n_partitions;
	}
	return rv;
}

/* Closes (destroy: and deletes) every log of a topic. */
static void tparts_drop(struct srv *s, uint32_t stream_id, uint32_t topic_id, bool destroy)
{
	for (struct tparts **pp = &s->parts; *pp != NULL; pp = &(*pp)->next) {
		struct tparts *tp = *pp;
		if (tp->stream_id != stream_id || tp->topic_id != topic_id)
			continue;
		for (uint32_t i = 0; i < tp->n; i++) {
			dedup_free(tp->dd[i]);
			if (tp->logs[i] != NULL)
				destroy ? plog_destroy(tp->logs[i]) : plog_close(tp->logs[i]);
		}
		*pp = tp->next;
		free(tp->dd);
		free(tp->logs);
		free(tp);
		break;
	}
	if (destroy) {
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s/%" PRIu32 "/%" PRIu32, s->pdir, stream_id, topic_id);
		rm_tree(s->pio, dir);
	}
}

static struct plog *part_log(struct srv *s, uint32_t stream_id, uint32_t topic_id, uint32_t pid)
{
	struct tparts *tp = tparts_find(s, stream_id, topic_id);
	return tp != NULL && pid < tp->n ? tp->logs[pid] : NULL;
}

/* Sizes and message counts for headers. */
static void topic_usage(struct srv *s, const struct meta_topic *t, uint64_t *bytes, uint64_t *msgs)
{
	*bytes = *msgs = 0;
	for (uint32_t p = 0; p < t->n_partitions; p++) {
		struct plog *l = part_log(s, t->stream_id, t->id, p);
		if (l == NULL)
			continue;
		*bytes += plog_payload_bytes(l);
		*msgs += plog_next_offset(l) - plog_first_offset(l);
	}
}

/* ---- Reply queue ---- */

static void session_unref(struct srv_session *ss);

static void pending_free(struct pending *p)
{
	free(p->buf);
	if (p->has_slice)
		plog_slice_release(&p->slice);
	free(p->pieces);
	session_unref(p->ss);
	free(p);
}

static void sent_cb(void *arg, int status)
{
	(void)status;
	pending_free(arg);
}

/* Counts a reply leaving and the time since its request arrived. */
static void observe_latency(struct srv_session *ss, const struct pending *p)
{
	struct srv_tstats *t = &ss->srv->tstats[ss->kind <= SRV_HTTP ? ss->kind : 0];
	uint64_t us = (uv_hrtime() - p->t0) / 1000u;
	size_t i = 0;
	while (i < LAT_BUCKETS && us > lat_bounds_us[i])
		i++;
	if (i < LAT_BUCKETS)
		t->latency_buckets[i]++;
	t->latency_sum_us += us;
	t->replies++;
}

static void flush_queue(struct srv_session *ss)
{
	/* Freeing a closed session's last reply frees the session: hold it until the loop is done. */
	ss->refs++;
	while (ss->head != NULL && ss->head->ready) {
		struct pending *p = ss->head;
		ss->head = p->next;
		if (ss->head == NULL)
			ss->tail = NULL;
		if (ss->closed) {
			pending_free(p);
			continue;
		}
		observe_latency(ss, p);
		size_t n = 1 + (p->has_slice ? p->slice.n_pieces : 0);
		p->pieces = calloc(n, sizeof(*p->pieces));
		if (p->pieces == NULL) {
			pending_free(p);
			continue;
		}
		p->pieces[0] = (struct srv_piece){.mem = p->buf, .fd = -1, .len = p->len};
		for (size_t i = 1; i < n; i++) {
			const struct plog_piece *pp = &p->slice.pieces[i - 1];
			if (pp->file != NULL)
				p->pieces[i] = (struct srv_piece){.fd = pio_fd(ss->srv->pio, pp->file),
								  .off = pp->file_off, .len = pp->len};
			else
				p->pieces[i] = (struct srv_piece){.mem = pp->mem, .fd = -1, .len = pp->len};
		}
		if (ss->send(ss->ctx, p->pieces, n, sent_cb, p) != 0)
			continue; /* the transport called (or will call) sent_cb */
	}
	session_unref(ss);
}

static struct pending *pending_new(struct srv_session *ss, const struct frame_request *hdr)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->ss = ss;
	p->hdr = *hdr;
	p->t0 = uv_hrtime();
	ss->refs++;
	if (ss->tail != NULL)
		ss->tail->next = p;
	else
		ss->head = p;
	ss->tail = p;
	return p;
}

/*
 * Completes a reply: status (0 or an Iggy code, then the body must be empty) and body bytes (copied).
 * `framed` adds the 4-byte success result section in front of the body.
 */
static void finish(struct pending *p, uint32_t status, bool framed, const void *body, size_t body_len)
{
	size_t extra = status == 0 && framed ? 4 : 0;
	if (status != 0)
		body_len = 0;
	size_t slice_len = p->has_slice ? p->slice.bytes : 0;
	p->len = FRAME_HEADER_SIZE + extra + body_len;
	p->buf = calloc(1, p->len);
	if (p->buf == NULL || frame_reply_encode(p->buf, &p->hdr, (uint32_t)(extra + body_len + slice_len), status) != 0) {
		/* Out of memory or too big: answer with a bare error header. */
		free(p->buf);
		p->len = FRAME_HEADER_SIZE;
		p->buf = calloc(1, p->len);
		if (p->has_slice) {
			plog_slice_release(&p->slice);
			p->has_slice = false;
		}
		if (p->buf != NULL)
			frame_reply_encode(p->buf, &p->hdr, 0, E_ERROR);
	} else if (body_len > 0) {
		memcpy(p->buf + FRAME_HEADER_SIZE + extra, body, body_len);
	}
	p->ready = true;
	if (p->buf == NULL) {
		p->len = 0;
	}
	flush_queue(p->ss);
}

static void finish_buf(struct pending *p, uint32_t status, bool framed, struct wire_buf *b)
{
	if (wire_buf_error(b) != 0)
		finish(p, E_ERROR, framed, NULL, 0);
	else
		finish(p, status, framed, b->p, b->len);
	wire_buf_free(b);
}

/* A committed rejection in the result section (status 0, count 1, the code). */
static void reject(struct pending *p, uint32_t code)
{
	uint8_t b[FRAME_RESULT_REJECT_SIZE];
	frame_result_reject(b, code);
	finish(p, 0, false, b, sizeof(b));
}

/* Completes a reply slot with an eviction frame instead of a reply. */
static void finish_evict(struct pending *p, const struct frame_request *hdr, uint8_t reason)
{
	struct srv_session *ss = p->ss;
	p->len = FRAME_HEADER_SIZE;
	p->buf = calloc(1, p->len);
	struct frame_eviction e = {.client = hdr->client, .reason = reason};
	if (reason == FRAME_EVICT_INCOMPATIBLE_PROTOCOL) {
		e.protocol_version = FRAME_PROTOCOL_VERSION;
		e.protocol_version_min = FRAME_PROTOCOL_VERSION;
	}
	if (p->buf != NULL)
		frame_eviction_encode(p->buf, &e);
	p->ready = true;
	flush_queue(ss);
}

static void evict(struct srv_session *ss, const struct frame_request *hdr, uint8_t reason)
{
	struct pending *p = pending_new(ss, hdr);
	if (p != NULL)
		finish_evict(p, hdr, reason);
}

/* ---- Sessions ---- */

struct srv_session *srv_session_open(struct srv *s, enum srv_transport kind, const char *peer, uint32_t client_id,
				     srv_send_fn send, void *ctx)
{
	struct srv_session *ss = calloc(1, sizeof(*ss));
	if (ss == NULL)
		return NULL;
	ss->srv = s;
	ss->kind = kind;
	snprintf(ss->peer, sizeof(ss->peer), "%s", peer ? peer : "");
	ss->client_id = client_id;
	ss->send = send;
	ss->ctx = ctx;
	ss->refs = 1;
	ss->next = s->sessions;
	s->sessions = ss;
	return ss;
}

static void session_unref(struct srv_session *ss)
{
	if (--ss->refs > 0)
		return;
	free(ss);
}

/* Applies a command and persists it; cb (may be NULL) learns the outcome of the persistence. */
static int commit(struct srv *s, const struct meta_cmd *c, struct meta_result *res, void (*cb)(void *, int),
		  void *arg)
{
	int rv = meta_apply(s->meta, c, res);
	if (rv != META_OK)
		return rv;
	int r = metastore_append(s->ms, c, cb, arg);
	if (r != 0) {
		glog_error(TAG, "metadata could not be persisted (%s); stopping", strerror(-r));
		abort();
	}
	return META_OK;
}

static void leave_all_groups(struct srv *s, uint32_t client_id)
{
	struct meta_cmd c = {.type = META_REMOVE_MEMBER, .ts = now_us(), .client_id = client_id};
	bool member = false;
	for (uint32_t i = 0; i < s->meta->n_streams && !member; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics && !member; k++) {
			struct meta_topic *t = st->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups && !member; g++)
				member = t->groups[g] != NULL && meta_group_member(t->groups[g], client_id) != NULL;
		}
	}
	if (member)
		commit(s, &c, NULL, NULL, NULL);
}

void srv_session_close(struct srv_session *ss)
{
	struct srv *s = ss->srv;
	for (struct srv_session **pp = &s->sessions; *pp != NULL; pp = &(*pp)->next)
		if (*pp == ss) {
			*pp = ss->next;
			break;
		}
	ss->closed = true;
	leave_all_groups(s, ss->client_id);
	/* Ready replies that were not sent yet go; the others free themselves when they complete. */
	flush_queue(ss);
	session_unref(ss);
}

size_t srv_session_owed(const struct srv_session *ss)
{
	size_t n = 0;
	for (const struct pending *p = ss->head; p != NULL; p = p->next)
		n++;
	return n;
}

void srv_session_stale(struct srv_session *ss)
{
	struct frame_request h = {.client = ss->vsr_client};
	if (frame_u128_is_zero(h.client))
		h.client.lo = 1;
	evict(ss, &h, FRAME_EVICT_STALE_CLIENT);
}

static struct meta_user *session_user(struct srv_session *ss)
{
	return ss->bound ? meta_user(ss->srv->meta, ss->user_id) : NULL;
}

/* ---- Resolving identifiers ---- */

static struct meta_stream *find_stream(struct srv *s, const struct wire_id *id)
{
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_stream(s->meta, id->num);
	return meta_stream_by_name(s->meta, (const char *)id->name.ptr, id->name.len);
}

static struct meta_topic *find_topic(const struct meta_stream *st, const struct wire_id *id)
{
	if (st == NULL)
		return NULL;
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_topic(st, id->num);
	return meta_topic_by_name(st, (const char *)id->name.ptr, id->name.len);
}

static struct meta_group *find_group(const struct meta_topic *t, const struct wire_id *id)
{
	if (t == NULL)
		return NULL;
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_group(t, id->num);
	return meta_group_by_name(t, (const char *)id->name.ptr, id->name.len);
}

static struct meta_user *find_user(struct srv *s, const struct wire_id *id)
{
	if (id->kind == WIRE_ID_NUMERIC)
		return meta_user(s->meta, id->num);
	return meta_user_by_name(s->meta, (const char *)id->name.ptr, id->name.len);
}

/* ---- Response structures (reference §2.4) ---- */

static void put_name(struct wire_buf *b, const char *name)
{
	wire_put_name(b, name, strlen(name));
}

static void put_stream_header(struct srv *s, struct wire_buf *b, const struct meta_stream *st)
{
	uint32_t topics = 0;
	uint64_t bytes = 0, msgs = 0;
	for (uint32_t i = 0; i < st->n_topics; i++) {
		if (st->topics[i] == NULL)
			continue;
		uint64_t tb, tm;
		topic_usage(s, st->topics[i], &tb, &tm);
		topics++;
		bytes += tb;
		msgs += tm;
	}
	wire_put_u32(b, st->id);
	wire_put_u64(b, st->created_at);
	wire_put_u32(b, topics);
	wire_put_u64(b, bytes);
	wire_put_u64(b, msgs);
	put_name(b, st->name);
	wire_put_u32(b, 0); /* options */
}

static void put_topic_header(struct srv *s, struct wire_buf *b, const struct meta_topic *t)
{
	uint64_t bytes, msgs;
	topic_usage(s, t, &bytes, &msgs);
	wire_put_u32(b, t->id);
	wire_put_u64(b, t->created_at);
	wire_put_u32(b, t->n_partitions);
	wire_put_u64(b, t->message_expiry);
	wire_put_u8(b, t->compression);
	wire_put_u64(b, t->max_topic_size);
	wire_put_u64(b, bytes);
	wire_put_u64(b, msgs);
	put_name(b, t->name);
	/* Explicit options: the settings that differ from the defaults. */
	size_t at = wire_put_reserve(b, 4);
	size_t start = b->len;
	uint8_t v[8];
	if (t->compression == META_COMPRESSION_GZIP)
		wire_put_option(b, "compression_algorithm", 21, WIRE_KIND_STRING, "gzip", 4);
	if (t->message_expiry != META_NEVER) {
		record_put64(v, t->message_expiry);
		wire_put_option(b, "message_expiry", 14, WIRE_KIND_UINT64, v, 8);
	}
	if (t->max_topic_size != META_NEVER) {
		record_put64(v, t->max_topic_size);
		wire_put_option(b, "max_topic_size", 14, WIRE_KIND_UINT64, v, 8);
	}
	wire_patch_u32(b, at, (uint32_t)(b->len - start));
	wire_put_u32(b, 0); /* derived options */
}

/* The topic option catalog (DescribeOptions scope 1): key, kind, default, description. */
static void put_topic_option_catalog(struct wire_buf *b)
{
	static const struct {
		const char *key;
		uint8_t kind;
		uint8_t width;
		uint64_t def;
		const char *desc;
	} cat[] = {
		{"compression_algorithm", WIRE_KIND_STRING, 0, 0, "Compression of stored messages: none or gzip."},
		{"message_expiry", WIRE_KIND_UINT64, 8, 0, "Age in microseconds after which messages are deleted; 0 uses the server default (never)."},
		{"max_topic_size", WIRE_KIND_UINT64, 8, 0, "Size in bytes above which the oldest segments are deleted; 0 uses the server default (unlimited)."},
		{"segment_size", WIRE_KIND_UINT64, 8, 1ull << 30, "Bytes per segment file before a new one is started."},
		{"enforce_fsync", WIRE_KIND_BOOL, 1, 0, "Acknowledge messages only after they are flushed to disk (galgo does so by default)."},
		{"messages_required_to_save", WIRE_KIND_UINT32, 4, 1, "Accepted for compatibility; galgo writes every batch at once."},
		{"size_of_messages_required_to_save", WIRE_KIND_UINT64, 8, 0, "Accepted for compatibility; galgo writes every batch at once."},
		{"preallocate_segments", WIRE_KIND_BOOL, 1, 0, "Accepted for compatibility; segments grow as written."},
		{"dedup_window", WIRE_KIND_UINT64, 8, 0, "Galgo: how many recent message ids (at most 65536) each partition remembers; a message with a remembered nonzero id is dropped as a retry. 0 = off."},
	};
	wire_put_u32(b, (uint32_t)(sizeof(cat) / sizeof(cat[0])));
	for (size_t i = 0; i < sizeof(cat) / sizeof(cat[0]); i++) {
		uint8_t v[8];
		put_name(b, cat[i].key);
		wire_put_u8(b, cat[i].kind);
		if (cat[i].kind == WIRE_KIND_STRING) {
			wire_put_str32(b, "none", 4);
		} else {
			record_put64(v, cat[i].def);
			wire_put_str32(b, v, cat[i].width);
		}
		wire_put_str32(b, cat[i].desc, strlen(cat[i].desc));
	}
}

static void put_partitions(struct srv *s, struct wire_buf *b, const struct meta_topic *t)
{
	for (uint32_t p = 0; p < t->n_partitions; p++) {
		struct plog *l = part_log(s, t->stream_id, t->id, p);
		uint64_t next = l ? plog_next_offset(l) : 0, first = l ? plog_first_offset(l) : 0;
		wire_put_u32(b, p);
		wire_put_u64(b, t->partitions[p].created_at);
		wire_put_u32(b, l ? plog_segment_count(l) : 1);
		wire_put_u64(b, next > 0 ? next - 1 : 0);
		wire_put_u64(b, l ? plog_payload_bytes(l) : 0);
		wire_put_u64(b, next - first);
	}
}

static void put_user_header(struct wire_buf *b, const struct meta_user *u)
{
	wire_put_u32(b, u->id);
	wire_put_u64(b, u->created_at);
	wire_put_u8(b, u->status);
	put_name(b, u->username);
	wire_put_u32(b, 0); /* options */
}

static void perms_to_wire(const struct meta_perms *m, struct wire_perms *w)
{
	memset(w, 0, sizeof(*w));
	w->manage_servers = m->manage_servers;
	w->read_servers = m->read_servers;
	w->manage_users = m->manage_users;
	w->read_users = m->read_users;
	w->manage_streams = m->manage_streams;
	w->read_streams = m->read_streams;
	w->manage_topics = m->manage_topics;
	w->read_topics = m->read_topics;
	w->poll_messages = m->poll_messages;
	w->send_messages = m->send_messages;
}

static void put_user_details(struct wire_buf *b, const struct meta_user *u)
{
	put_user_header(b, u);
	if (!u->has_perms) {
		wire_put_u32(b, 0);
		return;
	}
	struct wire_perms w;
	perms_to_wire(&u->perms, &w);
	struct wire_perm_stream *ws = calloc(u->perms.n_streams ? u->perms.n_streams : 1, sizeof(*ws));
	struct wire_perm_topic **wt = calloc(u->perms.n_streams ? u->perms.n_streams : 1, sizeof(*wt));
	if (ws == NULL || wt == NULL) {
		free(ws);
		free(wt);
		wire_put_reserve(b, SIZE_MAX / 2); /* records the error */
		return;
	}
	for (uint32_t i = 0; i < u->perms.n_streams; i++) {
		const struct meta_perm_stream *ms = &u->perms.streams[i];
		ws[i] = (struct wire_perm_stream){ms->stream_id, ms->manage_stream, ms->read_stream, ms->manage_topics,
						  ms->read_topics, ms->poll_messages, ms->send_messages, ms->n_topics,
						  NULL};
		wt[i] = calloc(ms->n_topics ? ms->n_topics : 1, sizeof(**wt));
		for (uint32_t k = 0; wt[i] != NULL && k < ms->n_topics; k++) {
			const struct meta_perm_topic *mt = &ms->topics[k];
			wt[i][k] = (struct wire_perm_topic){mt->topic_id, mt->manage_topic, mt->read_topic,
							    mt->poll_messages, mt->send_messages};
		}
		ws[i].topics = wt[i];
	}
	w.streams = ws;
	w.streams_count = u->perms.n_streams;
	wire_put_u8(b, 1);
	size_t at = wire_put_reserve(b, 4);
	size_t start = b->len;
	wire_put_permissions(b, &w);
	wire_patch_u32(b, at, (uint32_t)(b->len - start));
	for (uint32_t i = 0; i < u->perms.n_streams; i++)
		free(wt[i]);
	free(wt);
	free(ws);
}

static int perms_from_wire(const struct wire_perms *w, struct meta_perms *m)
{
	memset(m, 0, sizeof(*m));
	m->manage_servers = w->manage_servers;
	m->read_servers = w->read_servers;
	m->manage_users = w->manage_users;
	m->read_users = w->read_users;
	m->manage_streams = w->manage_streams;
	m->read_streams = w->read_streams;
	m->manage_topics = w->manage_topics;
	m->read_topics = w->read_topics;
	m->poll_messages = w->poll_messages;
	m->send_messages = w->send_messages;
	if (w->streams_count == 0)
		return 0;
	m->streams = calloc(w->streams_count, sizeof(*m->streams));
	if (m->streams == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < w->streams_count; i++) {
		const struct wire_perm_stream *ws = &w->streams[i];
		struct meta_perm_stream *ms = &m->streams[i];
		m->n_streams = i + 1;
		*ms = (struct meta_perm_stream){ws->id, ws->manage_stream, ws->read_stream, ws->manage_topics,
						ws->read_topics, ws->poll_messages, ws->send_messages, NULL, 0};
		if (ws->topics_count == 0)
			continue;
		ms->topics = calloc(ws->topics_count, sizeof(*ms->topics));
		if (ms->topics == NULL) {
			meta_perms_free(m);
			return -ENOMEM;
		}
		ms->n_topics = ws->topics_count;
		for (uint32_t k = 0; k < ws->topics_count; k++) {
			const struct wire_perm_topic *wt = &ws->topics[k];
			ms->topics[k] = (struct meta_perm_topic){wt->id, wt->manage_topic, wt->read_topic,
								 wt->poll_messages, wt->send_messages};
		}
	}
	return 0;
}

static void put_group_details(struct wire_buf *b, const struct meta_topic *t, const struct meta_group *g, bool members)
{
	wire_put_u32(b, g->id);
	wire_put_u32(b, t->n_partitions);
	wire_put_u32(b, g->n_members);
	put_name(b, g->name);
	if (!members)
		return;
	for (uint32_t i = 0; i < g->n_members; i++) {
		const struct meta_member *m = &g->members[i];
		wire_put_u32(b, m->client_id);
		wire_put_u32(b, m->n_partitions);
		for (uint32_t k = 0; k < m->n_partitions; k++)
			wire_put_u32(b, m->partitions[k]);
	}
}

static void put_client(struct srv *s, struct wire_buf *b, const struct srv_session *ss, bool details)
{
	wire_put_u32(b, ss->client_id);
	wire_put_u32(b, ss->bound ? ss->user_id : UINT32_MAX);
	wire_put_u8(b, (uint8_t)ss->kind);
	wire_put_str32(b, ss->peer, strlen(ss->peer));
	size_t at = wire_put_reserve(b, 4);
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
			struct meta_topic *t = st->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups; g++) {
				if (t->groups[g] == NULL || meta_group_member(t->groups[g], ss->client_id) == NULL)
					continue;
				n++;
				if (details) {
					wire_put_u32(b, st->id);
					wire_put_u32(b, t->id);
					wire_put_u32(b, t->groups[g]->id);
				}
			}
		}
	}
	wire_patch_u32(b, at, n);
}

/* ---- Login ---- */

static void login_reply(struct pending *p, struct srv_session *ss)
{
	struct wire_buf b;
	wire_buf_init(&b);
	wire_put_u32(&b, ss->user_id);
	wire_put_u64(&b, ss->session);
	wire_put_u32(&b, FRAME_PROTOCOL_VERSION);
	wire_put_name(&b, SERVER_VERSION, strlen(SERVER_VERSION));
	finish_buf(p, 0, true, &b);
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
		finish_evict(p, &p->hdr, FRAME_EVICT_INVALID_CREDENTIALS);
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
	j->p = j->hash && j->pw ? pending_new(ss, hdr) : NULL;
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

static void handle_register(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct wire_rd r;
	struct wire_version_info vi;
	wire_rd_init(&r, body, len);
	if (wire_get_version_info(&r, &vi) != 0) {
		evict(ss, hdr, FRAME_EVICT_MALFORMED_LOGIN);
		return;
	}
	if (!frame_version_accepts(vi.protocol_version, FRAME_PROTOCOL_VERSION, false)) {
		evict(ss, hdr, FRAME_EVICT_INCOMPATIBLE_PROTOCOL);
		return;
	}
	if (ss->bound) {
		/* A re-login without logout replays the binding. */
		struct pending *p = pending_new(ss, hdr);
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
			if (u == NULL || (pat->expiry_at != 0 && pat->expiry_at <= now_us())) {
				evict(ss, hdr, FRAME_EVICT_INVALID_TOKEN);
				return;
			}
			if (u->status != META_USER_ACTIVE) {
				evict(ss, hdr, FRAME_EVICT_USER_INACTIVE);
				return;
			}
		}
	}
	if (u == NULL) {
		evict(ss, hdr, cred_failure ? FRAME_EVICT_INVALID_CREDENTIALS : FRAME_EVICT_MALFORMED_LOGIN);
		return;
	}
	ss->bound = true;
	ss->vsr_client = hdr->client;
	ss->session = ++s->next_session;
	ss->user_id = u->id;
	struct pending *p = pending_new(ss, hdr);
	if (p != NULL)
		login_reply(p, ss);
}

/* ---- Metadata writes ---- */

/* A metadata write waiting for durability, with its reply payload ready. */
struct meta_wait {
	struct pending *p;
	struct wire_buf body;
};

static void meta_durable(void *arg, int status)
{
	struct meta_wait *w = arg;
	if (status != 0)
		finish(w->p, E_ERROR, false, NULL, 0);
	else
		finish_buf(w->p, 0, true, &w->body);
	wire_buf_free(&w->body);
	free(w);
}

/* Applies and persists c; replies with the framed body built by `build` (may be NULL) once durable. */
static void meta_write(struct srv *s, struct pending *p, const struct meta_cmd *c,
		       void (*build)(struct srv *s, struct wire_buf *b, const struct meta_cmd *c,
				     const struct meta_result *res),
		       void (*effect)(struct srv *s, const struct meta_cmd *c, const struct meta_result *res))
{
	struct meta_wait *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		finish(p, E_ERROR, false, NULL, 0);
		return;
	}
	w->p = p;
	wire_buf_init(&w->body);
	struct meta_result res;
	int rv = meta_apply(s->meta, c, &res);
	if (rv != META_OK) {
		free(w);
		if (rv < 0)
			finish(p, E_ERROR, false, NULL, 0);
		else
			reject(p, (uint32_t)rv);
		return;
	}
	if (effect != NULL)
		effect(s, c, &res);
	if (build != NULL)
		build(s, &w->body, c, &res);
	int r = metastore_append(s->ms, c, meta_durable, w);
	if (r != 0) {
		glog_error(TAG, "metadata could not be persisted (%s); stopping", strerror(-r));
		abort();
	}
}

static void build_stream(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)c;
	put_stream_header(s, b, meta_stream(s->meta, res->id));
}

static void build_topic(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, c->stream_id), res->id);
	put_topic_header(s, b, t);
	put_partitions(s, b, t);
}

static void build_user(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)c;
	put_user_details(b, meta_user(s->meta, res->id));
}

static void build_group(struct srv *s, struct wire_buf *b, const struct meta_cmd *c, const struct meta_result *res)
{
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, c->stream_id), c->topic_id);
	put_group_details(b, t, meta_group(t, res->id), true);
}

static void effect_topic(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	uint32_t tid = c->type == META_CREATE_TOPIC ? res->id : c->topic_id;
	const struct meta_topic *t = meta_topic(meta_stream(s->meta, c->stream_id), tid);
	if (t != NULL)
		tparts_sync(s, t);
}

static void effect_delete_topic(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)res;
	tparts_drop(s, c->stream_id, c->topic_id, true);
}

static void purge_topic_logs(struct srv *s, uint32_t stream_id, uint32_t topic_id)
{
	struct tparts *tp = tparts_find(s, stream_id, topic_id);
	for (uint32_t i = 0; tp != NULL && i < tp->n; i++)
		if (tp->logs[i] != NULL)
			plog_purge(tp->logs[i], 0);
}

static void effect_purge(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)res;
	if (c->type == META_PURGE_TOPIC) {
		purge_topic_logs(s, c->stream_id, c->topic_id);
		return;
	}
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		if (tp->stream_id == c->stream_id)
			purge_topic_logs(s, tp->stream_id, tp->topic_id);
}

static void effect_delete_stream(struct srv *s, const struct meta_cmd *c, const struct meta_result *res)
{
	(void)res;
	struct tparts *tp = s->parts;
	while (tp != NULL) {
		struct tparts *next = tp->next;
		if (tp->stream_id == c->stream_id)
			tparts_drop(s, tp->stream_id, tp->topic_id, true);
		tp = next;
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/%" PRIu32, s->pdir, c->stream_id);
	rm_tree(s->pio, dir);
}

/* Topic options at create and update (reference §2.3): known keys, typed values. */
static int parse_topic_option(const struct wire_opt *opt, struct meta_cmd *c, bool update);

static int parse_topic_options(const struct wire_opts *o, struct meta_cmd *c, bool update)
{
	size_t pos = 0;
	struct wire_opt opt;
	while (wire_opts_next(o, &pos, &opt)) {
		int rv = parse_topic_option(&opt, c, update);
		if (rv != 0) {
			glog_info(TAG, "topic option '%.*s' (kind %u, %zu bytes) refused: %d", (int)opt.key.len,
				  (const char *)opt.key.ptr, opt.kind, opt.value.len, rv);
			return rv;
		}
	}
	return 0;
}

static int parse_topic_option(const struct wire_opt *optp, struct meta_cmd *c, bool update)
{
	const struct wire_opt opt = *optp;
	{
		const char *k = (const char *)opt.key.ptr;
		size_t kl = opt.key.len;
#define KEY_IS(s) (kl == strlen(s) && memcmp(k, s, kl) == 0)
		bool num = opt.kind == WIRE_KIND_UINT64 && opt.value.len == 8;
		uint64_t v = num ? record_le64(opt.value.ptr) : 0;
		if (KEY_IS("compression_algorithm")) {
			if (opt.kind != WIRE_KIND_STRING)
				return E_INVALID_OPTION_VALUE;
			if (wire_str_eq(opt.value, "none"))
				c->compression = META_COMPRESSION_NONE;
			else if (wire_str_eq(opt.value, "gzip"))
				c->compression = META_COMPRESSION_GZIP;
			else
				return E_INVALID_OPTION_VALUE;
		} else if (KEY_IS("message_expiry")) {
			if (!num)
				return E_INVALID_OPTION_VALUE;
			c->message_expiry = v == 0 ? META_NEVER : v;
		} else if (KEY_IS("max_topic_size")) {
			if (!num)
				return E_INVALID_OPTION_VALUE;
			c->max_topic_size = v == 0 ? META_NEVER : v;
		} else if (update) {
			return E_UNSUPPORTED_OPTION;
		} else if (KEY_IS("durability")) {
			if (opt.kind != WIRE_KIND_STRING)
				return E_INVALID_OPTION_VALUE;
			if (wire_str_eq(opt.value, "fsync"))
				c->durability = META_DURABILITY_FSYNC;
			else if (wire_str_eq(opt.value, "interval"))
				c->durability = META_DURABILITY_INTERVAL;
			else if (wire_str_eq(opt.value, "none"))
				c->durability = META_DURABILITY_NONE;
			else if (wire_str_eq(opt.value, "persisted"))
				c->durability = META_DURABILITY_FSYNC;
			else if (!wire_str_eq(opt.value, "replicated"))
				return E_INVALID_OPTION_VALUE;
			/*
			 * Iggy's "replicated" (its SDK's default: acknowledged on a quorum in memory) keeps the
			 * node's configured policy, fsync unless set otherwise: never weaker than asked.
			 */
		} else if (KEY_IS("dedup_window")) {
			if (!num || v > DEDUP_WINDOW_MAX)
				return E_INVALID_OPTION_VALUE;
			c->dedup_window = v;
		} else if (KEY_IS("enforce_fsync")) {
			if (opt.kind != WIRE_KIND_BOOL || opt.value.len != 1)
				return E_INVALID_OPTION_VALUE;
			if (opt.value.ptr[0])
				c->durability = META_DURABILITY_FSYNC;
		} else if (KEY_IS("segment_size") || KEY_IS("messages_required_to_save") ||
			   KEY_IS("size_of_messages_required_to_save") || KEY_IS("preallocate_segments") ||
			   KEY_IS("replication_factor") || KEY_IS("consumer_offset_durability")) {
			/* Accepted and not used by a single node. */
		} else {
			return E_UNSUPPORTED_OPTION;
		}
#undef KEY_IS
	}
	return 0;
}

/* Whether the session may act; replies 41 (as a result-section rejection) if not. */
static bool allowed(struct srv_session *ss, struct pending *p, enum auth_action a, uint32_t sid, uint32_t tid)
{
	if (auth_allowed(session_user(ss), a, sid, tid))
		return true;
	reject(p, E_UNAUTHORIZED);
	return false;
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

static void meta_write(struct srv *s, struct pending *p, const struct meta_cmd *c,
		       void (*build)(struct srv *s, struct wire_buf *b, const struct meta_cmd *c,
				     const struct meta_result *res),
		       void (*effect)(struct srv *s, const struct meta_cmd *c, const struct meta_result *res));

static void pw_after(uv_work_t *w, int status)
{
	struct pw_job *j = w->data;
	j->s->jobs--;
	if (!j->cur_ok) {
		reject(j->p, META_E_INVALID_CREDENTIALS);
	} else if (status != 0 || j->hash_rv != 0) {
		finish(j->p, E_ERROR, false, NULL, 0);
	} else {
		j->c.password_hash = j->hash;
		meta_write(j->s, j->p, &j->c, j->build, NULL);
	}
	pw_job_free(j);
}

/* Copies what the command names into the job and queues it; consumes `perms` (if any). */
static void pw_job_start(struct srv *s, struct pending *p, const struct meta_cmd *c, struct meta_perms *perms,
			 struct wire_str pw, const char *cur_hash, struct wire_str cur,
			 void (*build)(struct srv *, struct wire_buf *, const struct meta_cmd *,
				       const struct meta_result *))
{
	struct pw_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		meta_perms_free(perms);
		finish(p, E_ERROR, false, NULL, 0);
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
		finish(p, E_ERROR, false, NULL, 0);
		return;
	}
	s->jobs++;
	if (uv_queue_work(s->loop, &j->work, pw_work, pw_after) != 0) {
		pw_work(&j->work);
		pw_after(&j->work, 0);
	}
}

static void handle_meta(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct meta_cmd c = {.type = 0, .ts = now_us()};
	struct wire_id sid, tid, gid, uid;
	struct wire_str name;
	struct wire_opts opts;
	struct meta_stream *st;
	struct meta_topic *t;
	struct meta_perms perms = {0};
	int rv;
	switch (hdr->operation) {
	case FRAME_OP_CREATE_STREAM:
		wire_get_name(&r, &name);
		wire_get_options(&r, &opts);
		if (wire_rd_done(&r) != 0)
			break;
		if (opts.count > 0) {
			reject(p, E_UNSUPPORTED_OPTION);
			return;
		}
		if (!allowed(ss, p, AUTH_MANAGE_STREAMS, 0, 0))
			return;
		c.type = META_CREATE_STREAM;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		meta_write(s, p, &c, build_stream, NULL);
		return;
	case FRAME_OP_UPDATE_STREAM:
	case FRAME_OP_DELETE_STREAM:
	case FRAME_OP_PURGE_STREAM:
		wire_get_id(&r, &sid);
		if (hdr->operation == FRAME_OP_UPDATE_STREAM) {
			wire_get_name(&r, &name);
			wire_get_options(&r, &opts);
		}
		if (wire_rd_done(&r) != 0)
			break;
		st = find_stream(s, &sid);
		if (st == NULL) {
			reject(p, META_E_STREAM_NOT_FOUND);
			return;
		}
		if (!allowed(ss, p, AUTH_MANAGE_STREAM, st->id, 0))
			return;
		c.stream_id = st->id;
		if (hdr->operation == FRAME_OP_UPDATE_STREAM) {
			if (opts.count > 0) {
				reject(p, E_UNSUPPORTED_OPTION);
				return;
			}
			c.type = META_UPDATE_STREAM;
			c.name = (const char *)name.ptr;
			c.name_len = (uint8_t)name.len;
			meta_write(s, p, &c, NULL, NULL);
		} else if (hdr->operation == FRAME_OP_DELETE_STREAM) {
			c.type = META_DELETE_STREAM;
			meta_write(s, p, &c, NULL, effect_delete_stream);
		} else {
			c.type = META_PURGE_STREAM;
			meta_write(s, p, &c, NULL, effect_purge);
		}
		return;
	case FRAME_OP_CREATE_TOPIC:
		wire_get_id(&r, &sid);
		c.count = wire_get_u32(&r);
		wire_get_name(&r, &name);
		wire_get_options(&r, &opts);
		if (wire_rd_done(&r) != 0)
			break;
		st = find_stream(s, &sid);
		if (st == NULL) {
			reject(p, META_E_STREAM_NOT_FOUND);
			return;
		}
		if (!allowed(ss, p, AUTH_MANAGE_TOPICS, st->id, 0))
			return;
		c.type = META_CREATE_TOPIC;
		c.stream_id = st->id;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		c.message_expiry = META_NEVER;
		c.max_topic_size = META_NEVER;
		c.compression = META_COMPRESSION_NONE;
		c.durability = (uint8_t)s->cfg->storage.durability;
		c.replication_factor = 1;
		rv = parse_topic_options(&opts, &c, false);
		if (rv != 0) {
			reject(p, (uint32_t)rv);
			return;
		}
		meta_write(s, p, &c, build_topic, effect_topic);
		return;
	case FRAME_OP_UPDATE_TOPIC:
	case FRAME_OP_DELETE_TOPIC:
	case FRAME_OP_PURGE_TOPIC:
	case FRAME_OP_CREATE_PARTITIONS:
	case FRAME_OP_DELETE_PARTITIONS:
		wire_get_id(&r, &sid);
		wire_get_id(&r, &tid);
		if (hdr->operation == FRAME_OP_UPDATE_TOPIC) {
			wire_get_name(&r, &name);
			wire_get_options(&r, &opts);
		} else if (hdr->operation == FRAME_OP_CREATE_PARTITIONS ||
			   hdr->operation == FRAME_OP_DELETE_PARTITIONS) {
			c.count = wire_get_u32(&r);
		}
		if (wire_rd_done(&r) != 0)
			break;
		st = find_stream(s, &sid);
		t = find_topic(st, &tid);
		if (st == NULL || t == NULL) {
			reject(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND);
			return;
		}
		if (!allowed(ss, p, AUTH_MANAGE_TOPIC, st->id, t->id))
			return;
		c.stream_id = st->id;
		c.topic_id = t->id;
		switch (hdr->operation) {
		case FRAME_OP_UPDATE_TOPIC:
			c.type = META_UPDATE_TOPIC;
			c.name = (const char *)name.ptr;
			c.name_len = (uint8_t)name.len;
			c.message_expiry = t->message_expiry;
			c.max_topic_size = t->max_topic_size;
			c.compression = t->compression;
			rv = parse_topic_options(&opts, &c, true);
			if (rv != 0) {
				reject(p, (uint32_t)rv);
				return;
			}
			meta_write(s, p, &c, NULL, NULL);
			return;
		case FRAME_OP_DELETE_TOPIC:
			c.type = META_DELETE_TOPIC;
			meta_write(s, p, &c, NULL, effect_delete_topic);
			return;
		case FRAME_OP_PURGE_TOPIC:
			c.type = META_PURGE_TOPIC;
			meta_write(s, p, &c, NULL, effect_purge);
			return;
		default:
			c.type = hdr->operation == FRAME_OP_CREATE_PARTITIONS ? META_CREATE_PARTITIONS
									       : META_DELETE_PARTITIONS;
			meta_write(s, p, &c, NULL, effect_topic);
			return;
		}
	case FRAME_OP_CREATE_CONSUMER_GROUP:
	case FRAME_OP_DELETE_CONSUMER_GROUP:
	case FRAME_OP_JOIN_CONSUMER_GROUP:
	case FRAME_OP_LEAVE_CONSUMER_GROUP:
		wire_get_id(&r, &sid);
		wire_get_id(&r, &tid);
		if (hdr->operation == FRAME_OP_CREATE_CONSUMER_GROUP)
			wire_get_name(&r, &name);
		else
			wire_get_id(&r, &gid);
		if (wire_rd_done(&r) != 0)
			break;
		st = find_stream(s, &sid);
		t = find_topic(st, &tid);
		if (st == NULL || t == NULL) {
			reject(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND);
			return;
		}
		c.stream_id = st->id;
		c.topic_id = t->id;
		if (hdr->operation == FRAME_OP_CREATE_CONSUMER_GROUP) {
			if (!allowed(ss, p, AUTH_MANAGE_TOPIC, st->id, t->id))
				return;
			c.type = META_CREATE_GROUP;
			c.name = (const char *)name.ptr;
			c.name_len = (uint8_t)name.len;
			meta_write(s, p, &c, build_group, NULL);
			return;
		}
		struct meta_group *g = find_group(t, &gid);
		if (g == NULL) {
			reject(p, META_E_GROUP_NOT_FOUND);
			return;
		}
		c.group_id = g->id;
		c.client_id = ss->client_id;
		if (hdr->operation == FRAME_OP_DELETE_CONSUMER_GROUP) {
			if (!allowed(ss, p, AUTH_MANAGE_TOPIC, st->id, t->id))
				return;
			c.type = META_DELETE_GROUP;
		} else {
			if (!allowed(ss, p, AUTH_POLL_MESSAGES, st->id, t->id))
				return;
			c.type = hdr->operation == FRAME_OP_JOIN_CONSUMER_GROUP ? META_JOIN_GROUP : META_LEAVE_GROUP;
		}
		meta_write(s, p, &c, NULL, NULL);
		return;
	case FRAME_OP_CREATE_USER: {
		struct wire_str pw;
		wire_get_name(&r, &name);
		wire_get_str8(&r, &pw);
		c.status = wire_get_u8(&r);
		uint8_t has = wire_get_u8(&r);
		struct wire_perms wp = {0};
		if (has == 1) {
			uint32_t plen = wire_get_u32(&r);
			const uint8_t *pb = wire_get_bytes(&r, plen);
			if (wire_rd_error(&r) == 0 && wire_perms_decode(pb, plen, &wp) != 0)
				wire_rd_fail(&r, WIRE_E_VALUE);
		} else if (has != 0) {
			wire_rd_fail(&r, WIRE_E_VALUE);
		}
		wire_get_options(&r, &opts);
		if (wire_rd_done(&r) != 0 || opts.count > 0) {
			wire_perms_free(&wp);
			if (wire_rd_done(&r) != 0)
				break;
			reject(p, E_UNSUPPORTED_OPTION);
			return;
		}
		rv = has ? perms_from_wire(&wp, &perms) : 0;
		wire_perms_free(&wp);
		if (rv != 0 || !allowed(ss, p, AUTH_MANAGE_USERS, 0, 0)) {
			meta_perms_free(&perms);
			if (rv != 0)
				finish(p, E_ERROR, false, NULL, 0);
			return;
		}
		if (pw.len < 3 || pw.len > 100) {
			meta_perms_free(&perms);
			reject(p, 44);
			return;
		}
		c.type = META_CREATE_USER;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		c.has_perms = has == 1;
		pw_job_start(s, p, &c, has == 1 ? &perms : NULL, pw, NULL, (struct wire_str){0}, build_user);
		meta_perms_free(&perms);
		return;
	}
	case FRAME_OP_UPDATE_USER:
	case FRAME_OP_DELETE_USER:
	case FRAME_OP_UPDATE_PERMISSIONS:
	case FRAME_OP_CHANGE_PASSWORD: {
		wire_get_id(&r, &uid);
		struct wire_str cur = {0}, nw = {0};
		struct wire_perms wp = {0};
		uint8_t has = 0;
		if (hdr->operation == FRAME_OP_UPDATE_USER) {
			if (wire_get_u8(&r) == 1) {
				wire_get_name(&r, &name);
				c.name = (const char *)name.ptr;
				c.name_len = (uint8_t)name.len;
			}
			if (wire_get_u8(&r) == 1)
				c.status = wire_get_u8(&r);
			wire_get_options(&r, &opts);
		} else if (hdr->operation == FRAME_OP_UPDATE_PERMISSIONS) {
			has = wire_get_u8(&r);
			if (has == 1) {
				uint32_t plen = wire_get_u32(&r);
				const uint8_t *pb = wire_get_bytes(&r, plen);
				if (wire_rd_error(&r) == 0 && wire_perms_decode(pb, plen, &wp) != 0)
					wire_rd_fail(&r, WIRE_E_VALUE);
			}
		} else if (hdr->operation == FRAME_OP_CHANGE_PASSWORD) {
			wire_get_str8(&r, &cur);
			wire_get_str8(&r, &nw);
		}
		if (wire_rd_done(&r) != 0) {
			wire_perms_free(&wp);
			break;
		}
		struct meta_user *u = find_user(s, &uid);
		struct meta_user *me = session_user(ss);
		if (u == NULL) {
			wire_perms_free(&wp);
			reject(p, META_E_NOT_FOUND);
			return;
		}
		c.user_id = u->id;
		bool self = me != NULL && me->id == u->id;
		if (!(hdr->operation == FRAME_OP_CHANGE_PASSWORD && self) &&
		    !allowed(ss, p, AUTH_MANAGE_USERS, 0, 0)) {
			wire_perms_free(&wp);
			return;
		}
		if (hdr->operation == FRAME_OP_UPDATE_USER) {
			c.type = META_UPDATE_USER;
		} else if (hdr->operation == FRAME_OP_DELETE_USER) {
			c.type = META_DELETE_USER;
			if (self) {
				reject(p, META_E_CANNOT_DELETE_USER);
				return;
			}
		} else if (hdr->operation == FRAME_OP_UPDATE_PERMISSIONS) {
			rv = has == 1 ? perms_from_wire(&wp, &perms) : 0;
			wire_perms_free(&wp);
			if (rv != 0) {
				finish(p, E_ERROR, false, NULL, 0);
				return;
			}
			c.type = META_UPDATE_PERMISSIONS;
			c.has_perms = has == 1;
			c.perms = &perms;
		} else {
			if (nw.len < 3 || nw.len > 100) {
				reject(p, 44);
				return;
			}
			c.type = META_CHANGE_PASSWORD;
			pw_job_start(s, p, &c, NULL, nw, u->password_hash, cur, NULL);
			return;
		}
		meta_write(s, p, &c, NULL, NULL);
		meta_perms_free(&perms);
		return;
	}
	case FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN:
	case FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN: {
		wire_get_name(&r, &name);
		uint64_t expiry = 0;
		if (hdr->operation == FRAME_OP_CREATE_PERSONAL_ACCESS_TOKEN)
			expiry = wire_get_u64(&r);
		if (wire_rd_done(&r) != 0)
			break;
		c.user_id = ss->user_id;
		c.name = (const char *)name.ptr;
		c.name_len = (uint8_t)name.len;
		if (hdr->operation == FRAME_OP_DELETE_PERSONAL_ACCESS_TOKEN) {
			c.type = META_DELETE_PAT;
			meta_write(s, p, &c, NULL, NULL);
			return;
		}
		char token[AUTH_PAT_LEN + 1];
		uint8_t th[32];
		if (auth_pat_generate(token) != 0) {
			finish(p, E_ERROR, false, NULL, 0);
			return;
		}
		auth_pat_hash(token, AUTH_PAT_LEN, th);
		c.type = META_CREATE_PAT;
		c.token_hash = th;
		/* 0 and u64::MAX mean never; so does an expiry beyond the clock's range (no wrap to the past). */
		c.expiry_at = expiry == 0 || expiry > UINT64_MAX - c.ts ? 0 : c.ts + expiry;
		struct meta_result res;
		rv = meta_apply(s->meta, &c, &res);
		if (rv != META_OK) {
			if (rv == META_E_PAT_LIMIT)
				finish(p, META_E_PAT_LIMIT, false, NULL, 0);
			else
				reject(p, (uint32_t)(rv < 0 ? E_ERROR : rv));
			return;
		}
		struct meta_wait *w = calloc(1, sizeof(*w));
		if (w == NULL) {
			finish(p, E_ERROR, false, NULL, 0);
			return;
		}
		w->p = p;
		wire_buf_init(&w->body);
		wire_put_str8(&w->body, token, AUTH_PAT_LEN);
		if (metastore_append(s->ms, &c, meta_durable, w) != 0) {
			glog_error(TAG, "metadata could not be persisted; stopping");
			abort();
		}
		return;
	}
	default:
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	/* A body that does not decode. */
	finish(p, E_INVALID_COMMAND, false, NULL, 0);
}

/* ---- Message plane ---- */

struct send_wait {
	struct plog_append_req req;
	struct pending *p;
	uint32_t stream_id, topic_id, partition_id;
};

static void send_durable(struct plog_append_req *req, int status)
{
	struct send_wait *w = req->data;
	if (status != 0) {
		finish(w->p, E_ERROR, false, NULL, 0);
	} else {
		uint8_t b[24];
		struct wire_buf wb;
		wire_buf_init(&wb);
		wire_put_u32(&wb, 1);
		wire_put_u32(&wb, w->stream_id);
		wire_put_u32(&wb, w->topic_id);
		wire_put_u32(&wb, w->partition_id);
		wire_put_u64(&wb, req->base_offset);
		(void)b;
		finish_buf(w->p, 0, false, &wb);
	}
	free(w);
}

static uint32_t batch_error(int rec_err)
{
	switch (rec_err) {
	case RECORD_E_FRAME_CHECK:
		return E_INVALID_MESSAGE_CHECKSUM;
	case RECORD_E_BATCH_CHECK:
		return E_INVALID_BATCH_CHECKSUM;
	case RECORD_E_RESERVED:
		return 4101;
	default:
		return E_INVALID_COMMAND;
	}
}

struct id_ref {
	const uint8_t *id;
	uint32_t index;
};

static int id_ref_cmp(const void *a, const void *b)
{
	const struct id_ref *x = a, *y = b;
	int c = memcmp(x->id, y->id, 16);
	return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

/*
 * Drops the messages of a verified batch whose id the window remembers or that repeat an id earlier in
 * the same batch (id 0 never counts). Returns the batch's new length, 0 when every message was dropped.
 */
static size_t drop_duplicates(const struct dedup *d, uint8_t *batch, size_t len)
{
	uint32_t n = record_le32(batch + 48);
	struct id_ref *ids = malloc(n * sizeof(*ids));
	bool *keep = malloc(n * sizeof(*keep));
	size_t out = len;
	if (ids == NULL || keep == NULL)
		goto done; /* keep everything: at-least-once, as without a window */
	size_t f = RECORD_BATCH_HEADER_SIZE;
	bool all = true;
	for (uint32_t i = 0; i < n; i++) {
		ids[i] = (struct id_ref){batch + f + 8, i};
		keep[i] = id_is_zero(batch + f + 8) || !dedup_seen(d, batch + f + 8);
		f += RECORD_FRAME_HEADER_SIZE + (size_t)record_le32(batch + f + 36) + record_le32(batch + f + 32);
	}
	qsort(ids, n, sizeof(*ids), id_ref_cmp);
	for (uint32_t i = 1; i < n; i++)
		if (memcmp(ids[i].id, ids[i - 1].id, 16) == 0 && !id_is_zero(ids[i].id))
			keep[ids[i].index] = false;
	for (uint32_t i = 0; i < n; i++)
		all &= keep[i];
	if (!all)
		out = record_batch_filter(batch, len, keep);
done:
	free(ids);
	free(keep);
	return out;
}

static void handle_send(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	uint32_t mlen = wire_get_u32(&r);
	size_t start = r.pos;
	struct wire_id sid, tid;
	struct wire_partitioning part;
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	wire_get_partitioning(&r, &part);
	uint32_t count = wire_get_u32(&r);
	if (wire_rd_error(&r) != 0 || r.pos - start != mlen || len - r.pos < RECORD_BATCH_HEADER_SIZE) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = find_stream(s, &sid);
	struct meta_topic *t = find_topic(st, &tid);
	if (t == NULL) {
		finish(p, E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!auth_allowed(session_user(ss), AUTH_SEND_MESSAGES, st->id, t->id)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct tparts *tp = tparts_find(s, st->id, t->id);
	if (tp == NULL || tp->n == 0) {
		finish(p, E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	uint32_t pid;
	if (part.kind == WIRE_PART_PARTITION_ID)
		pid = part.partition_id;
	else if (part.kind == WIRE_PART_MESSAGES_KEY)
		pid = XXH32(part.key.ptr, part.key.len, 0) % tp->n;
	else
		pid = tp->rr++ % tp->n;
	struct plog *l = pid < tp->n ? tp->logs[pid] : NULL;
	if (l == NULL) {
		finish(p, E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	uint8_t *batch = body + r.pos;
	size_t blen = len - r.pos;
	int rv = record_batch_verify(batch, blen, true);
	if (rv != 0) {
		finish(p, batch_error(rv), false, NULL, 0);
		return;
	}
	if (record_le32(batch + 48) != count) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct dedup *dd = tp->dd != NULL ? tp->dd[pid] : NULL;
	if (dd != NULL) {
		blen = drop_duplicates(dd, batch, blen);
		if (blen == 0) {
			/* Every message is a retry of one already stored: committed, offsets not reported. */
			uint8_t zero[4] = {0};
			finish(p, 0, false, zero, sizeof(zero));
			return;
		}
	}
	struct send_wait *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		finish(p, E_ERROR, false, NULL, 0);
		return;
	}
	w->p = p;
	w->stream_id = st->id;
	w->topic_id = t->id;
	w->partition_id = pid;
	w->req.data = w;
	plog_stamp(l, batch, pid);
	struct plog_entry e = {RECORD_MESSAGES, plog_last_index(l) + 1, 1, batch, (uint32_t)blen};
	rv = plog_append(l, &w->req, &e, send_durable);
	if (rv != 0) {
		free(w);
		finish(p, E_ERROR, false, NULL, 0);
		return;
	}
	if (dd != NULL)
		each_frame(batch, blen, add_frame_id, dd);
}

/* Resolves the consumer of a poll or offset request: kind and numeric id (a group's id). */
static int resolve_consumer(const struct meta_topic *t, const struct wire_consumer *wc, uint8_t *kind, uint32_t *id)
{
	*kind = wc->kind;
	if (wc->kind == WIRE_CONSUMER_GROUP) {
		const struct meta_group *g = find_group(t, &wc->id);
		if (g == NULL)
			return META_E_GROUP_NOT_FOUND;
		*id = g->id;
		return 0;
	}
	*id = wc->id.kind == WIRE_ID_NUMERIC ? wc->id.num : XXH32(wc->id.name.ptr, wc->id.name.len, 0);
	return 0;
}

/*
 * The offset after the last message consumers may see: for fsync topics what is durable (what was
 * acknowledged), for the other policies what is written (they acknowledge on write).
 */
static uint64_t served_next(const struct meta_topic *t, const struct plog *l)
{
	uint64_t next = plog_next_offset(l), durable = plog_durable_next_offset(l);
	if (t->durability != META_DURABILITY_FSYNC || durable > next)
		return next;
	return durable;
}

static void store_offset_async(struct srv *s, const struct meta_topic *t, uint8_t kind, uint32_t cid,
			       uint32_t pid, uint64_t offset)
{
	struct meta_cmd c = {.type = META_STORE_OFFSET, .ts = now_us(), .stream_id = t->stream_id,
			     .topic_id = t->id, .consumer_kind = kind, .consumer_id = cid, .partition_id = pid,
			     .offset = offset};
	commit(s, &c, NULL, NULL, NULL);
}

static void handle_poll(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct wire_consumer wc;
	struct wire_id sid, tid;
	struct wire_opt_partition op;
	struct wire_polling strat;
	wire_get_consumer(&r, &wc);
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	wire_get_opt_partition(&r, &op);
	wire_get_polling(&r, &strat);
	uint32_t count = wire_get_u32(&r);
	uint8_t auto_commit = wire_get_u8(&r);
	if (wire_rd_done(&r) != 0) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = find_stream(s, &sid);
	if (st == NULL) {
		finish(p, META_E_STREAM_NOT_FOUND, false, NULL, 0);
		return;
	}
	struct meta_topic *t = find_topic(st, &tid);
	if (t == NULL) {
		finish(p, META_E_TOPIC_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!auth_allowed(session_user(ss), AUTH_POLL_MESSAGES, st->id, t->id)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	uint8_t kind;
	uint32_t cid;
	if (resolve_consumer(t, &wc, &kind, &cid) != 0) {
		finish(p, META_E_GROUP_NOT_FOUND, false, NULL, 0);
		return;
	}
	uint32_t pid = op.present ? op.id : 0;
	uint8_t prefix[16];
	if (kind == WIRE_CONSUMER_GROUP) {
		const struct meta_member *m = meta_group_member(meta_group(t, cid), ss->client_id);
		bool owns = false;
		for (uint32_t i = 0; m != NULL && i < m->n_partitions; i++)
			owns |= m->partitions[i] == pid;
		if (!op.present || !owns) {
			/* Fenced: an empty poll with the resync sentinel. */
			record_put32(prefix, NO_PARTITION);
			record_put64(prefix + 4, 0);
			record_put32(prefix + 12, 0);
			finish(p, 0, false, prefix, sizeof(prefix));
			return;
		}
	}
	struct plog *l = part_log(s, st->id, t->id, pid);
	if (pid >= t->n_partitions || l == NULL) {
		finish(p, META_E_PARTITION_NOT_FOUND, false, NULL, 0);
		return;
	}
	uint64_t next = served_next(t, l), first = plog_first_offset(l);
	uint64_t current = next > 0 ? next - 1 : 0;
	uint64_t from = 0;
	bool empty = next == first || count == 0;
	const struct meta_offset *stored = meta_offset_get(t, kind, cid, pid);
	switch (strat.kind) {
	case WIRE_POLL_OFFSET:
		from = strat.value;
		break;
	case WIRE_POLL_TIMESTAMP:
		if (plog_find_timestamp(l, strat.value, &from) != 0)
			empty = true;
		break;
	case WIRE_POLL_FIRST:
		from = first;
		break;
	case WIRE_POLL_LAST:
		from = next > count ? next - count : 0;
		break;
	case WIRE_POLL_NEXT:
		from = stored != NULL ? stored->offset + 1 : 0;
		break;
	default:
		empty = true;
		break;
	}
	if (!empty && from < next) {
		int rv = plog_read(l, from, count, POLL_MAX_BYTES, next - 1, &p->slice);
		p->has_slice = true;
		if (rv != 0) {
			glog_error(TAG, "poll read failed: %s", strerror(-rv));
			plog_slice_release(&p->slice);
			p->has_slice = false;
			finish(p, E_ERROR, false, NULL, 0);
			return;
		}
		if (p->slice.messages == 0) {
			plog_slice_release(&p->slice);
			p->has_slice = false;
		}
	}
	uint32_t n = p->has_slice ? p->slice.messages : 0;
	record_put32(prefix, pid);
	record_put64(prefix + 4, current);
	record_put32(prefix + 12, n);
	if (n > 0 && auto_commit)
		store_offset_async(s, t, kind, cid, pid, p->slice.last_offset);
	finish(p, 0, false, prefix, sizeof(prefix));
}

static void offset_durable(void *arg, int status)
{
	struct pending *p = arg;
	if (status != 0)
		finish(p, E_ERROR, false, NULL, 0);
	else
		finish(p, 0, true, NULL, 0);
}

static void handle_offset(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	bool get = hdr->operation == FRAME_OP_NON_REPLICATED;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct wire_consumer wc;
	struct wire_id sid, tid;
	struct wire_opt_partition op;
	wire_get_consumer(&r, &wc);
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	wire_get_opt_partition(&r, &op);
	uint64_t offset = 0;
	if (hdr->operation == FRAME_OP_STORE_CONSUMER_OFFSET)
		offset = wire_get_u64(&r);
	if (!get)
		(void)wire_get_u8(&r); /* ack level */
	if (wire_rd_done(&r) != 0) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = find_stream(s, &sid);
	struct meta_topic *t = find_topic(st, &tid);
	if (t == NULL) {
		finish(p, get ? (st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND) : E_RESOURCE_NOT_FOUND,
		       false, NULL, 0);
		return;
	}
	if (!auth_allowed(session_user(ss), AUTH_POLL_MESSAGES, st->id, t->id)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	uint8_t kind;
	uint32_t cid;
	uint32_t pid = op.present ? op.id : 0;
	struct plog *l = part_log(s, st->id, t->id, pid);
	if (resolve_consumer(t, &wc, &kind, &cid) != 0 || pid >= t->n_partitions || l == NULL) {
		finish(p, get ? META_E_PARTITION_NOT_FOUND : E_RESOURCE_NOT_FOUND, false, NULL, 0);
		return;
	}
	uint64_t next = served_next(t, l);
	if (get) {
		const struct meta_offset *o = meta_offset_get(t, kind, cid, pid);
		if (o == NULL) {
			finish(p, 0, false, NULL, 0);
			return;
		}
		uint8_t b[20];
		record_put32(b, pid);
		record_put64(b + 4, next > 0 ? next - 1 : 0);
		record_put64(b + 12, o->offset);
		finish(p, 0, false, b, sizeof(b));
		return;
	}
	struct meta_cmd c = {.ts = now_us(), .stream_id = st->id, .topic_id = t->id, .consumer_kind = kind,
			     .consumer_id = cid, .partition_id = pid, .offset = offset};
	if (hdr->operation == FRAME_OP_STORE_CONSUMER_OFFSET) {
		if (next == 0 || offset > next - 1) {
			finish(p, META_E_INVALID_OFFSET, false, NULL, 0);
			return;
		}
		c.type = META_STORE_OFFSET;
	} else {
		c.type = META_DELETE_OFFSET;
	}
	int rv = commit(s, &c, NULL, offset_durable, p);
	if (rv != META_OK)
		finish(p, rv == META_E_OFFSET_NOT_FOUND ? META_E_OFFSET_NOT_FOUND : (uint32_t)rv, false, NULL, 0);
}

/* ---- Reads (NonReplicated) ---- */

static void put_stats(struct srv *s, struct wire_buf *b)
{
	uint32_t streams = 0, topics = 0, partitions = 0, segments = 0, groups = 0, clients = 0;
	uint64_t msgs = 0, bytes = 0;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		if (st == NULL)
			continue;
		streams++;
		for (uint32_t k = 0; k < st->n_topics; k++) {
			struct meta_topic *t = st->topics[k];
			if (t == NULL)
				continue;
			topics++;
			partitions += t->n_partitions;
			for (uint32_t g = 0; g < t->n_groups; g++)
				groups += t->groups[g] != NULL;
			uint64_t tb, tm;
			topic_usage(s, t, &tb, &tm);
			bytes += tb;
			msgs += tm;
			for (uint32_t pi = 0; pi < t->n_partitions; pi++) {
				struct plog *l = part_log(s, st->id, t->id, pi);
				segments += l ? plog_segment_count(l) : 0;
			}
		}
	}
	for (struct srv_session *ss = s->sessions; ss != NULL; ss = ss->next)
		clients++;
	long rss_pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f != NULL) {
		long size;
		if (fscanf(f, "%ld %ld", &size, &rss_pages) != 2)
			rss_pages = 0;
		fclose(f);
	}
	long page = sysconf(_SC_PAGESIZE), phys = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
	struct utsname un;
	uname(&un);
	wire_put_u32(b, (uint32_t)getpid());
	wire_put_u32(b, 0); /* cpu_usage f32 */
	wire_put_u32(b, 0); /* total_cpu_usage f32 */
	wire_put_u64(b, (uint64_t)rss_pages * (uint64_t)page);
	wire_put_u64(b, (uint64_t)phys * (uint64_t)page);
	wire_put_u64(b, (uint64_t)avail * (uint64_t)page);
	wire_put_u64(b, now_us() - s->start_us);
	wire_put_u64(b, s->start_us);
	wire_put_u64(b, 0); /* read_bytes */
	wire_put_u64(b, bytes); /* written_bytes */
	wire_put_u64(b, bytes);
	wire_put_u32(b, streams);
	wire_put_u32(b, topics);
	wire_put_u32(b, partitions);
	wire_put_u32(b, segments);
	wire_put_u64(b, msgs);
	wire_put_u32(b, clients);
	wire_put_u32(b, groups);
	wire_put_str32(b, un.nodename, strlen(un.nodename));
	wire_put_str32(b, un.sysname, strlen(un.sysname));
	wire_put_str32(b, un.version, strlen(un.version));
	wire_put_str32(b, un.release, strlen(un.release));
	wire_put_str32(b, SERVER_VERSION, strlen(SERVER_VERSION));
	wire_put_u32(b, 9000); /* semver 0.9.0 */
	wire_put_u32(b, 0);    /* cache metrics */
	wire_put_u32(b, 1);    /* threads */
	struct statvfs vfs;
	uint64_t free_disk = 0, total_disk = 0;
	if (statvfs(s->cfg->node.data_dir, &vfs) == 0) {
		free_disk = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		total_disk = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	}
	wire_put_u64(b, free_disk);
	wire_put_u64(b, total_disk);
}

static void put_cluster(struct srv *s, struct wire_buf *b)
{
	char host[256] = "127.0.0.1";
	uint16_t tcp = 0, quic = 0, http = 0;
	config_split_address(s->cfg->tcp.address, host, sizeof(host), &tcp);
	char h2[256];
	config_split_address(s->cfg->quic.address, h2, sizeof(h2), &quic);
	config_split_address(s->cfg->http.address, h2, sizeof(h2), &http);
	wire_put_str32(b, "single-node", 11);
	wire_put_u32(b, 1);
	char name[32];
	snprintf(name, sizeof(name), "galgo-node-%" PRIu32, s->cfg->node.id);
	wire_put_str32(b, name, strlen(name));
	wire_put_str32(b, host, strlen(host));
	wire_put_u16(b, tcp);
	wire_put_u16(b, s->cfg->quic.enabled ? quic : 0);
	wire_put_u16(b, s->cfg->http.enabled ? http : 0);
	wire_put_u16(b, 0);
	wire_put_u8(b, 0); /* leader */
	wire_put_u8(b, 0); /* healthy */
}

static void handle_read(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body, size_t len)
{
	struct srv *s = ss->srv;
	uint32_t code = hdr->code;
	if (code == FRAME_CODE_POLL_MESSAGES) {
		handle_poll(ss, hdr, body, len);
		return;
	}
	if (code == FRAME_CODE_GET_CONSUMER_OFFSET) {
		handle_offset(ss, hdr, body, len);
		return;
	}
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	wire_rd_init(&r, body, len);
	struct wire_buf b;
	wire_buf_init(&b);
	struct wire_id sid, tid, gid, uid;
	struct meta_stream *st;
	struct meta_topic *t;
	struct meta_user *me = session_user(ss);
	switch (code) {
	case FRAME_CODE_PING:
		break;
	case FRAME_CODE_GET_STATS:
		if (!auth_allowed(me, AUTH_READ_SERVERS, 0, 0))
			goto denied;
		put_stats(s, &b);
		break;
	case FRAME_CODE_GET_CLUSTER_METADATA:
		put_cluster(s, &b);
		break;
	case FRAME_CODE_DESCRIBE_OPTIONS: {
		uint8_t scope = wire_get_u8(&r);
		if (wire_rd_done(&r) != 0 || scope < 1 || scope > 3)
			goto bad;
		if (scope == 1)
			put_topic_option_catalog(&b);
		else
			wire_put_u32(&b, 0);
		break;
	}
	case FRAME_CODE_GET_ME:
		put_client(s, &b, ss, true);
		break;
	case FRAME_CODE_GET_CLIENT: {
		uint32_t id = wire_get_u32(&r);
		if (wire_rd_done(&r) != 0)
			goto bad;
		if (!auth_allowed(me, AUTH_READ_SERVERS, 0, 0))
			goto denied;
		for (struct srv_session *o = s->sessions; o != NULL; o = o->next)
			if (o->client_id == id)
				put_client(s, &b, o, true);
		break;
	}
	case FRAME_CODE_GET_CLIENTS:
		if (!auth_allowed(me, AUTH_READ_SERVERS, 0, 0))
			goto denied;
		for (struct srv_session *o = s->sessions; o != NULL; o = o->next)
			put_client(s, &b, o, false);
		break;
	case FRAME_CODE_GET_USER:
		wire_get_id(&r, &uid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		{
			struct meta_user *u = find_user(s, &uid);
			if (u != NULL && u != me && !auth_allowed(me, AUTH_READ_USERS, 0, 0))
				goto denied;
			if (u != NULL)
				put_user_details(&b, u);
		}
		break;
	case FRAME_CODE_GET_USERS:
		if (!auth_allowed(me, AUTH_READ_USERS, 0, 0))
			goto denied;
		for (uint32_t i = 0; i < s->meta->n_users; i++)
			if (s->meta->users[i] != NULL)
				put_user_header(&b, s->meta->users[i]);
		break;
	case FRAME_CODE_GET_PERSONAL_ACCESS_TOKENS:
		for (uint32_t i = 0; me != NULL && i < me->n_pats; i++) {
			put_name(&b, me->pats[i].name);
			wire_put_u64(&b, me->pats[i].expiry_at);
		}
		break;
	case FRAME_CODE_GET_STREAM:
		wire_get_id(&r, &sid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = find_stream(s, &sid);
		if (st != NULL) {
			if (!auth_allowed(me, AUTH_READ_STREAM, st->id, 0))
				goto denied;
			put_stream_header(s, &b, st);
			for (uint32_t i = 0; i < st->n_topics; i++)
				if (st->topics[i] != NULL)
					put_topic_header(s, &b, st->topics[i]);
		}
		break;
	case FRAME_CODE_GET_STREAMS:
		if (!auth_allowed(me, AUTH_READ_STREAMS, 0, 0))
			goto denied;
		for (uint32_t i = 0; i < s->meta->n_streams; i++)
			if (s->meta->streams[i] != NULL)
				put_stream_header(s, &b, s->meta->streams[i]);
		break;
	case FRAME_CODE_GET_TOPIC:
		wire_get_id(&r, &sid);
		wire_get_id(&r, &tid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = find_stream(s, &sid);
		t = find_topic(st, &tid);
		if (t != NULL) {
			if (!auth_allowed(me, AUTH_READ_TOPIC, st->id, t->id))
				goto denied;
			put_topic_header(s, &b, t);
			put_partitions(s, &b, t);
		}
		break;
	case FRAME_CODE_GET_TOPICS: {
		wire_get_id(&r, &sid);
		if (wire_rd_done(&r) != 0)
			goto bad;
		st = find_stream(s, &sid);
		if (st != NULL && !auth_allowed(me, AUTH_READ_TOPICS, st->id, 0))
			goto denied;
		size_t at = wire_put_reserve(&b, 4);
		uint32_t n = 0;
		for (uint32_t i = 0; st != NULL && i < st->n_topics; i++)
			if (st->topics[i] != NULL) {
				put_topic_header(s, &b, st->topics[i]);
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
		st = find_stream(s, &sid);
		t = find_topic(st, &tid);
		if (t == NULL) {
			wire_buf_free(&b);
			finish(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND, false, NULL, 0);
			return;
		}
		if (!auth_allowed(me, AUTH_READ_TOPIC, st->id, t->id) &&
		    !auth_allowed(me, AUTH_POLL_MESSAGES, st->id, t->id))
			goto denied;
		if (code == FRAME_CODE_GET_CONSUMER_GROUPS) {
			for (uint32_t i = 0; i < t->n_groups; i++)
				if (t->groups[i] != NULL)
					put_group_details(&b, t, t->groups[i], false);
		} else {
			struct meta_group *g = find_group(t, &gid);
			if (g != NULL && code == FRAME_CODE_GET_CONSUMER_GROUP) {
				put_group_details(&b, t, g, true);
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
		finish(p, E_FEATURE_UNAVAILABLE, false, NULL, 0);
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
			flush_queue(ss);
		}
		return;
	default:
		wire_buf_free(&b);
		finish(p, frame_code_is_known(code) ? E_FEATURE_UNAVAILABLE : E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	finish_buf(p, 0, false, &b);
	return;
denied:
	wire_buf_free(&b);
	finish(p, E_UNAUTHORIZED, false, NULL, 0);
	return;
bad:
	wire_buf_free(&b);
	finish(p, E_INVALID_COMMAND, false, NULL, 0);
}

/* DeleteSegments (op 138, not result-framed): the n oldest whole segments of a partition. */
static void handle_delete_segments(struct srv_session *ss, const struct frame_request *hdr, const uint8_t *body,
				   size_t len)
{
	struct srv *s = ss->srv;
	struct pending *p = pending_new(ss, hdr);
	if (p == NULL)
		return;
	struct wire_rd r;
	struct wire_id sid, tid;
	wire_rd_init(&r, body, len);
	wire_get_id(&r, &sid);
	wire_get_id(&r, &tid);
	uint32_t pid = wire_get_u32(&r), n = wire_get_u32(&r);
	if (wire_rd_done(&r) != 0) {
		finish(p, E_INVALID_COMMAND, false, NULL, 0);
		return;
	}
	struct meta_stream *st = find_stream(s, &sid);
	struct meta_topic *t = find_topic(st, &tid);
	if (t == NULL) {
		finish(p, st == NULL ? META_E_STREAM_NOT_FOUND : META_E_TOPIC_NOT_FOUND, false, NULL, 0);
		return;
	}
	if (!auth_allowed(session_user(ss), AUTH_MANAGE_TOPIC, st->id, t->id)) {
		finish(p, E_UNAUTHORIZED, false, NULL, 0);
		return;
	}
	struct plog *l = part_log(s, st->id, t->id, pid);
	if (l == NULL) {
		finish(p, META_E_PARTITION_NOT_FOUND, false, NULL, 0);
		return;
	}
	int rv = plog_drop_segments(l, n, plog_durable_index(l));
	finish(p, rv < 0 ? E_ERROR : 0, false, NULL, 0);
}

/* ---- Dispatch ---- */

void srv_session_frame(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len)
{
	if (ss->closed)
		return;
	ss->srv->tstats[ss->kind <= SRV_HTTP ? ss->kind : 0].requests++;
	if (glog_get_level() <= GLOG_DEBUG)
		glog_debug(TAG, "client %u: %s%s%s, %zu bytes", ss->client_id, frame_op_name(hdr->operation),
			   hdr->operation == FRAME_OP_NON_REPLICATED ? " " : "",
			   hdr->operation == FRAME_OP_NON_REPLICATED ? frame_code_name(hdr->code) : "", len);
	if (frame_request_checksum_verify(hdr, body, len) != 0) {
		struct pending *p = pending_new(ss, hdr);
		if (p != NULL)
			finish(p, E_INVALID_FORMAT, false, NULL, 0);
		return;
	}
	switch (hdr->operation) {
	case FRAME_OP_REGISTER:
		handle_register(ss, hdr, body, len);
		return;
	case FRAME_OP_LOGOUT: {
		if (ss->bound)
			leave_all_groups(ss->srv, ss->client_id);
		ss->bound = false;
		ss->session = 0;
		struct pending *p = pending_new(ss, hdr);
		if (p != NULL)
			finish(p, 0, false, NULL, 0);
		return;
	}
	case FRAME_OP_NON_REPLICATED:
		if (!ss->bound && hdr->code != FRAME_CODE_PING) {
			struct pending *p = pending_new(ss, hdr);
			if (p != NULL)
				finish(p, E_UNAUTHENTICATED, false, NULL, 0);
			return;
		}
		handle_read(ss, hdr, body, len);
		return;
	default:
		break;
	}
	if (!ss->bound) {
		evict(ss, hdr, FRAME_EVICT_NO_SESSION);
		return;
	}
	if (hdr->operation == FRAME_OP_SEND_MESSAGES)
		handle_send(ss, hdr, body, len);
	else if (hdr->operation == FRAME_OP_DELETE_SEGMENTS)
		handle_delete_segments(ss, hdr, body, len);
	else if (hdr->operation == FRAME_OP_STORE_CONSUMER_OFFSET || hdr->operation == FRAME_OP_DELETE_CONSUMER_OFFSET)
		handle_offset(ss, hdr, body, len);
	else if (hdr->operation >= FRAME_OP_CREATE_STREAM && hdr->operation <= FRAME_OP_LEAVE_CONSUMER_GROUP &&
		 hdr->operation != FRAME_OP_DELETE_SEGMENTS)
		handle_meta(ss, hdr, body, len);
	else {
		struct pending *p = pending_new(ss, hdr);
		if (p != NULL)
			finish(p, E_INVALID_COMMAND, false, NULL, 0);
	}
}

/* ---- Lifecycle ---- */

/* Removes partition directories that the metadata does not know (left by a crash during a delete). */
static void remove_orphans(struct srv *s)
{
	char **sn;
	size_t ns;
	if (pio_list(s->pio, s->pdir, &sn, &ns) != 0)
		return;
	for (size_t i = 0; i < ns; i++) {
		char sd[2400];
		snprintf(sd, sizeof(sd), "%.2047s/%.255s", s->pdir, sn[i]);
		char *end;
		unsigned long sid = strtoul(sn[i], &end, 10);
		struct meta_stream *st = *end == '\0' ? meta_stream(s->meta, (uint32_t)sid) : NULL;
		char **tn;
		size_t nt;
		if (st == NULL) {
			glog_warn(TAG, "removing %s: no such stream", sd);
			rm_tree(s->pio, sd);
			continue;
		}
		if (pio_list(s->pio, sd, &tn, &nt) != 0)
			continue;
		for (size_t k = 0; k < nt; k++) {
			char td[2700];
			snprintf(td, sizeof(td), "%.2399s/%.255s", sd, tn[k]);
			unsigned long tid = strtoul(tn[k], &end, 10);
			struct meta_topic *t = *end == '\0' ? meta_topic(st, (uint32_t)tid) : NULL;
			if (t == NULL) {
				glog_warn(TAG, "removing %s: no such topic", td);
				rm_tree(s->pio, td);
				continue;
			}
			char **pn;
			size_t np;
			if (pio_list(s->pio, td, &pn, &np) != 0)
				continue;
			for (size_t q = 0; q < np; q++) {
				unsigned long pid = strtoul(pn[q], &end, 10);
				if (*end != '\0' || pid >= t->n_partitions) {
					char pd[3000];
					snprintf(pd, sizeof(pd), "%.2699s/%.255s", td, pn[q]);
					glog_warn(TAG, "removing %s: no such partition", pd);
					rm_tree(s->pio, pd);
				}
			}
			pio_list_free(pn, np);
		}
		pio_list_free(tn, nt);
	}
	pio_list_free(sn, ns);
}

static int ensure_root(struct srv *s)
{
	if (meta_user(s->meta, 0) != NULL)
		return 0;
	const char *pw = s->cfg->root.password;
	char gen[33];
	if (pw == NULL || pw[0] == '\0') {
		uint8_t raw[16];
		char tok[AUTH_PAT_LEN + 1];
		if (auth_pat_generate(tok) != 0)
			return -EIO;
		memcpy(raw, tok, sizeof(raw));
		for (int i = 0; i < 16; i++)
			snprintf(gen + 2 * i, 3, "%02x", raw[i]);
		pw = gen;
		glog_warn(TAG, "root user '%s' created with the generated password: %s", s->cfg->root.username, pw);
	}
	char hash[AUTH_HASH_MAX];
	int rv = auth_hash_password(pw, strlen(pw), hash);
	if (rv != 0)
		return rv;
	struct meta_perms all;
	auth_perms_all(&all);
	struct meta_cmd c = {.type = META_CREATE_USER, .ts = now_us(), .name = s->cfg->root.username,
			     .name_len = (uint8_t)strlen(s->cfg->root.username), .password_hash = hash,
			     .status = META_USER_ACTIVE, .has_perms = true, .perms = &all};
	return commit(s, &c, NULL, NULL, NULL) == META_OK ? 0 : -EINVAL;
}

int srv_new(uv_loop_t *loop, const struct galgo_config *cfg, struct pio *pio, struct flusher *fl, struct srv **out)
{
	struct srv *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->cfg = cfg;
	s->pio = pio;
	s->fl = fl;
	s->start_us = now_us();
	snprintf(s->pdir, sizeof(s->pdir), "%s/partitions", cfg->node.data_dir);
	char mdir[4096];
	snprintf(mdir, sizeof(mdir), "%s/meta", cfg->node.data_dir);
	int rv = pio_mkdir(pio, s->pdir);
	if (rv == 0)
		rv = metastore_open(pio, fl, mdir, &s->meta, &s->ms);
	if (rv != 0) {
		glog_error(TAG, "metadata cannot be opened: %s", strerror(-rv));
		free(s);
		return rv;
	}
	rv = ensure_root(s);
	if (rv != 0) {
		srv_free(s);
		return rv;
	}
	/* No client survives a restart: empty every group. */
	struct meta_cmd clear = {.type = META_CLEAR_MEMBERS, .ts = now_us()};
	bool members = false;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
			struct meta_topic *t = st->topics[k];
			for (uint32_t g = 0; t != NULL && g < t->n_groups; g++)
				members |= t->groups[g] != NULL && t->groups[g]->n_members > 0;
		}
	}
	if (members)
		commit(s, &clear, NULL, NULL, NULL);
	remove_orphans(s);
	uint32_t opened = 0;
	for (uint32_t i = 0; i < s->meta->n_streams; i++) {
		struct meta_stream *st = s->meta->streams[i];
		for (uint32_t k = 0; st != NULL && k < st->n_topics; k++)
			if (st->topics[k] != NULL) {
				tparts_sync(s, st->topics[k]);
				opened += st->topics[k]->n_partitions;
			}
	}
	glog_info(TAG, "metadata loaded: %u partitions opened", opened);
	*out = s;
	return 0;
}

void srv_free(struct srv *s)
{
	while (s->jobs > 0)
		uv_run(s->loop, UV_RUN_ONCE);
	while (s->sessions != NULL)
		srv_session_close(s->sessions);
	while (s->parts != NULL)
		tparts_drop(s, s->parts->stream_id, s->parts->topic_id, false);
	if (s->ms != NULL)
		metastore_close(s->ms);
	meta_free(s->meta);
	free(s);
}

void srv_tick(struct srv *s)
{
	uint64_t now = now_us();
	for (struct tparts *tp = s->parts; tp != NULL; tp = tp->next) {
		const struct meta_topic *t = meta_topic(meta_stream(s->meta, tp->stream_id), tp->topic_id);
		if (t == NULL)
			continue;
		uint64_t age = t->message_expiry == META_NEVER ? 0 : t->message_expiry;
		uint64_t size = t->max_topic_size == META_NEVER ? 0 : t->max_topic_size / (tp->n ? tp->n : 1);
		if (age == 0 && size == 0)
			continue;
		for (uint32_t i = 0; i < tp->n; i++)
			if (tp->logs[i] != NULL)
				plog_retain(tp->logs[i], now, age, size, plog_durable_index(tp->logs[i]));
	}
}

uint32_t srv_partition_count(const struct srv *s)
{
	uint32_t n = 0;
	for (const struct tparts *tp = s->parts; tp != NULL; tp = tp->next)
		n += tp->n;
	return n;
}

int srv_session_bind_user(struct srv_session *ss, uint32_t user_id)
{
	struct meta_user *u = meta_user(ss->srv->meta, user_id);
	if (u == NULL || u->status != META_USER_ACTIVE)
		return -ENOENT;
	ss->bound = true;
	ss->user_id = user_id;
	ss->session = ++ss->srv->next_session;
	return 0;
}

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

int srv_metrics_text(struct srv *s, char **out, size_t *len)
{
	static const char *const kinds[] = {"", "tcp", "quic", "http"};
	static const struct {
		const char *name, *help;
	} part_metrics[] = {
		{"galgo_partition_messages", "Messages held by the partition."},
		{"galgo_partition_bytes", "Bytes of the message batches held by the partition."},
		{"galgo_partition_current_offset", "Offset of the partition's last message (0 when empty)."},
	};
	struct wire_buf b;
	wire_buf_init(&b);
	for (size_t m = 0; m < 3; m++) {
		metrics_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n", part_metrics[m].name, part_metrics[m].help,
			       part_metrics[m].name);
		for (uint32_t i = 0; i < s->meta->n_streams; i++) {
			const struct meta_stream *st = s->meta->streams[i];
			for (uint32_t k = 0; st != NULL && k < st->n_topics; k++) {
				const struct meta_topic *t = st->topics[k];
				for (uint32_t pid = 0; t != NULL && pid < t->n_partitions; pid++) {
					struct plog *l = part_log(s, st->id, t->id, pid);
					uint64_t next = l != NULL ? plog_next_offset(l) : 0;
					uint64_t v = m == 0   ? (l != NULL ? next - plog_first_offset(l) : 0)
						     : m == 1 ? (l != NULL ? plog_payload_bytes(l) : 0)
							      : (next > 0 ? next - 1 : 0);
					metrics_partition(&b, part_metrics[m].name, st, t, pid, v);
				}
			}
		}
	}
	uint32_t conns[SRV_HTTP + 1] = {0};
	for (const struct srv_session *ss = s->sessions; ss != NULL; ss = ss->next)
		conns[ss->kind <= SRV_HTTP ? ss->kind : 0]++;
	metrics_printf(&b, "# HELP galgo_connections Client sessions open (an HTTP request holds one while it runs).\n"
			   "# TYPE galgo_connections gauge\n");
	for (int k = SRV_TCP; k <= SRV_HTTP; k++)
		metrics_printf(&b, "galgo_connections{transport=\"%s\"} %" PRIu32 "\n", kinds[k], conns[k]);
	metrics_printf(&b, "# HELP galgo_requests_total Request frames received.\n"
			   "# TYPE galgo_requests_total counter\n");
	for (int k = SRV_TCP; k <= SRV_HTTP; k++)
		metrics_printf(&b, "galgo_requests_total{transport=\"%s\"} %" PRIu64 "\n", kinds[k], s->tstats[k].requests);
	metrics_printf(&b, "# HELP galgo_request_duration_seconds Time from a request's arrival to its reply leaving.\n"
			   "# TYPE galgo_request_duration_seconds histogram\n");
	for (int k = SRV_TCP; k <= SRV_HTTP; k++) {
		const struct srv_tstats *t = &s->tstats[k];
		uint64_t cum = 0;
		for (size_t i = 0; i < LAT_BUCKETS; i++) {
			cum += t->latency_buckets[i];
			metrics_printf(&b, "galgo_request_duration_seconds_bucket{transport=\"%s\",le=\"%g\"} %" PRIu64 "\n",
				       kinds[k], (double)lat_bounds_us[i] / 1e6, cum);
		}
		metrics_printf(&b, "galgo_request_duration_seconds_bucket{transport=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
			       kinds[k], t->replies);
		metrics_printf(&b, "galgo_request_duration_seconds_sum{transport=\"%s\"} %.6f\n", kinds[k],
			       (double)t->latency_sum_us / 1e6);
		metrics_printf(&b, "galgo_request_duration_seconds_count{transport=\"%s\"} %" PRIu64 "\n", kinds[k],
			       t->replies);
	}
	wire_put_u8(&b, 0);
	if (wire_buf_error(&b) != 0) {
		wire_buf_free(&b);
		return -ENOMEM;
	}
	*len = b.len - 1;
	*out = (char *)wire_buf_take(&b, &(size_t){0});
	return 0;
}
