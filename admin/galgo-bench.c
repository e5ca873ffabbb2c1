/*
 * galgo-bench — throughput and latency of a running galgod (or any server of Iggy's protocol 0.11) over
 * TCP, with the modes of Iggy's bench tool. Every producer and consumer is a thread with its own
 * connection (client/gclient.h), logged in with --username/--password.
 *
 * Modes (the bench streams are "galgo-bench-1" .. "galgo-bench-S", each with one topic "topic-1"):
 *   pinned-producer               producer i writes stream (i mod S) + 1, to partition 0, or round robin
 *                                 over the topic's partitions when --partitions > 1; S = producers.
 *   pinned-consumer               consumer i reads streams i+1, i+1+C, ... (all their partitions, from
 *                                 offset 0, with the Offset strategy) up to what they held at the start;
 *                                 S = consumers. Run it after a pinned-producer run with --keep (same
 *                                 --streams). If any of the S streams is missing or empty, all S are
 *                                 first recreated and seeded by an unmeasured pinned-producer phase with
 *                                 one producer per stream (and the volume options).
 *   pinned-producer-and-consumer  both at once: consumer i reads what the producers of its streams write.
 *   balanced-producer             every producer writes stream 1 with Balanced partitioning (the server
 *                                 spreads batches round robin); --partitions defaults to the producers.
 *   balanced-consumer-group       consumers join group "galgo-bench-group" on stream 1, get their
 *                                 partitions with SyncConsumerGroup (606) and poll them with the Next
 *                                 strategy and auto-commit up to what the partitions held at the start
 *                                 (the group is created afresh). An empty or missing stream 1 is first
 *                                 seeded by a balanced-producer phase. --partitions defaults to the
 *                                 consumers.
 *   end-to-end                    pinned producers and consumers at once; every message carries its send
 *                                 time (CLOCK_REALTIME ns, payload bytes 0..8) and the consumer records
 *                                 receive time − send time for every message.
 *
 * Data volume: --total-data is split evenly over the producers (consumers, in pinned-consumer and
 * balanced-consumer-group) and rounded up to whole batches; --message-batches counts batches per actor.
 * Without either, each actor moves 1000 batches, except the pure consumer modes, which read everything.
 *
 * Figures: MB is 10^6 bytes and counts message payloads only (message size × messages). An actor's
 * throughput is its bytes over its own time (first request to last reply); the aggregate is all bytes
 * over the time from the first actor's start to the last one's end. Latencies: per batch round trip for
 * producers (send to reply, so with --inflight K it includes the wait behind earlier batches), per
 * non-empty poll for consumers, and per message send-to-receive for end-to-end; percentiles come from a
 * log-linear histogram (≤ 3 % relative error). With --server-pid, /proc/<pid>/stat and status are read
 * every 100 ms: peak RSS and the average CPU use of galgod over the run (100 % = one core).
 *
 * Cluster: with --cluster HOST:PORT,... producers use client/gcluster.h: each keeps one connection per
 * partition leader (in redirect mode, docs/protocol-extensions.md) and sends every batch straight to its
 * partition's leader, following NotLeader replies and lost connections (balanced-producer then picks
 * the partitions round robin itself). Setup, consumers and cleanup use the first node of the list (a
 * node forwards metadata writes to the metadata leader). How many replicas a partition has is the
 * cluster's setting; --durability picks the topic's acknowledgement: fsync = after a quorum flushed,
 * none = after a quorum has it in memory.
 *
 * The bench streams are deleted at the end unless --keep. Exit status: 0 when every actor finished,
 * 1 when one failed, 2 on bad usage or setup failures.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "client/gclient.h"
#include "client/gcluster.h"

#define MB 1e6
#define TOPIC_NAME "topic-1"
#define GROUP_NAME "galgo-bench-group"
#define STREAM_PREFIX "galgo-bench-"
#define MAX_ACTORS 1024
#define MAX_PARTITIONS 1000
#define STALL_S 30.0
#define SAMPLE_MS 100

enum mode {
	M_PINNED_PRODUCER,
	M_PINNED_CONSUMER,
	M_PINNED_BOTH,
	M_BALANCED_PRODUCER,
	M_BALANCED_GROUP,
	M_END_TO_END,
};

static const char *const mode_names[] = {
	"pinned-producer", "pinned-consumer", "pinned-producer-and-consumer", "balanced-producer",
	"balanced-consumer-group", "end-to-end",
};

struct opts {
	enum mode mode;
	const char *address;
	const char *cluster;     /* seeds of --cluster, NULL: a single server */
	const char *username;
	const char *password;
	uint32_t producers, consumers, streams, partitions;
	bool streams_set, partitions_set, consumers_set;
	uint32_t message_size;
	uint32_t per_batch;
	uint64_t total_data;     /* 0: not given */
	uint64_t message_batches; /* 0: not given */
	double rate_limit;       /* bytes/s over all producers; 0 = unlimited */
	const char *durability;
	uint32_t inflight;
	const char *json;
	bool keep;
	bool verify;
	int server_pid;          /* 0: none */
};

/* ---- Time ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_s(double s)
{
	if (s <= 0)
		return;
	time_t whole = (time_t)s;
	struct timespec ts = {.tv_sec = whole, .tv_nsec = (long)((s - (double)whole) * 1e9)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- Latency histogram: log-linear buckets of nanoseconds, 32 per octave ---- */

#define H_SUB 32
#define H_BUCKETS (2 * H_SUB + (64 - 6) * H_SUB)

struct hist {
	uint64_t count;
	uint64_t min, max;
	double sum;
	uint64_t b[H_BUCKETS];
};

static unsigned h_index(uint64_t v)
{
	if (v < 2 * H_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - 5;
	return 2 * H_SUB + (msb - 6) * H_SUB + (unsigned)((v >> shift) - H_SUB);
}

/* The middle of a bucket's range (its lower bound for the exact small buckets). */
static double h_value(unsigned i)
{
	if (i < 2 * H_SUB)
		return (double)i;
	unsigned msb = (i - 2 * H_SUB) / H_SUB + 6;
	unsigned shift = msb - 5;
	uint64_t lo = ((uint64_t)((i - 2 * H_SUB) % H_SUB) + H_SUB) << shift;
	return (double)lo + (double)(1ull << shift) / 2;
}

static void h_add(struct hist *h, uint64_t ns)
{
	if (h->count == 0 || ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
	h->count++;
	h->sum += (double)ns;
	h->b[h_index(ns)]++;
}

static void h_merge(struct hist *into, const struct hist *h)
{
	if (h->count == 0)
		return;
	if (into->count == 0 || h->min < into->min)
		into->min = h->min;
	if (h->max > into->max)
		into->max = h->max;
	into->count += h->count;
	into->sum += h->sum;
	for (unsigned i = 0; i < H_BUCKETS; i++)
		into->b[i] += h->b[i];
}

/* Nearest-rank percentile in ms, p in (0, 1], clamped to the observed min and max. */
static double h_pct_ms(const struct hist *h, double p)
{
	if (h->count == 0)
		return 0;
	double r = p * (double)h->count;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t cum = 0;
	for (unsigned i = 0; i < H_BUCKETS; i++) {
		cum += h->b[i];
		if (cum >= rank) {
			double v = h_value(i);
			if (v < (double)h->min)
				v = (double)h->min;
			if (v > (double)h->max)
				v = (double)h->max;
			return v / 1e6;
		}
	}
	return (double)h->max / 1e6;
}

static const double pcts[] = {0.50, 0.95, 0.99, 0.999, 0.9999};
static const char *const pct_names[] = {"p50", "p95", "p99", "p999", "p9999"};
#define N_PCTS (sizeof(pcts) / sizeof(pcts[0]))

/* ---- Actors ---- */

enum actor_kind { A_PRODUCER, A_CONSUMER };

struct bench;

struct actor {
	struct bench *b;
	enum actor_kind kind;
	uint32_t index;            /* 0-based within its kind */
	uint32_t streams[64];      /* 1-based bench stream numbers it works on */
	uint32_t n_streams;
	uint64_t batches;          /* producer: batches to send */
	uint64_t target;           /* consumer: messages to read (0: what the streams hold at the start) */
	bool balanced;             /* producer: Balanced partitioning */
	bool group;                /* consumer: member of the bench group */
	bool e2e;
	pthread_t thread;
	/* Results. */
	uint64_t messages, bytes, requests, empty_polls;
	double start, end;
	struct hist lat;           /* batch round trip or poll round trip */
	struct hist e2e_lat;       /* end-to-end, consumers of the end-to-end mode */
	uint64_t hops;             /* cluster producers: redirect hops taken */
	int error;
	char errmsg[512];
};

struct sample_stats {
	bool ok;
	uint32_t samples;
	long peak_rss_kb;
	double avg_cpu, max_cpu;
};

struct bench {
	struct opts o;
	struct actor *actors;
	uint32_t n_actors;
	pthread_barrier_t start_barrier;
	pthread_barrier_t group_barrier; /* group consumers leave together, so no one's exit rebalances */
	uint32_t n_group;
	double t_start;            /* set by the main thread after the barrier */
	volatile int stop_sampler;
	struct sample_stats server;
};

static void actor_fail(struct actor *a, int rv, const char *what)
{
	char e[128];
	if (a->error != 0)
		return;
	a->error = rv != 0 ? rv : -EIO;
	snprintf(a->errmsg, sizeof(a->errmsg), "%s: %s", what, gclient_strerror(rv, e, sizeof(e)));
}

static void stream_name(uint32_t n, char *buf, size_t len)
{
	snprintf(buf, len, STREAM_PREFIX "%" PRIu32, n);
}

static int client_open(const struct opts *o, struct gclient **out)
{
	struct gclient_opts co = {.connect_timeout_ms = 5000, .io_timeout_ms = 60000,
				  .sndbuf = 4 << 20, .rcvbuf = 4 << 20};
	int rv = gclient_connect(o->address, &co, out);
	if (rv != 0)
		return rv;
	rv = gclient_login(*out, o->username, o->password);
	if (rv != 0) {
		gclient_close(*out);
		*out = NULL;
	}
	return rv;
}

/* ---- Producer ---- */

/* A producer's way to the server: one connection, or a cluster client with one per leader. */
struct pconn {
	struct gclient *c;
	struct gcluster *gc;
};

static int pconn_open(const struct opts *o, struct pconn *pc)
{
	if (o->cluster == NULL)
		return client_open(o, &pc->c);
	struct gcluster_opts co = {.username = o->username, .password = o->password,
				   .conn = {.connect_timeout_ms = 5000, .io_timeout_ms = 60000,
					    .sndbuf = 4 << 20, .rcvbuf = 4 << 20}};
	return gcluster_open(o->cluster, &co, &pc->gc);
}

static int pconn_send(struct pconn *pc, const struct wire_id *s, const struct wire_id *t, uint32_t part, uint32_t n,
		      const void *const *ptrs, const uint32_t *lens)
{
	return pc->gc ? gcluster_send_async(pc->gc, s, t, part, n, ptrs, lens)
		      : gclient_send_async(pc->c, s, t, part, n, ptrs, lens);
}

static int pconn_wait(struct pconn *pc, struct gclient_sent *sent)
{
	return pc->gc ? gcluster_wait(pc->gc, sent) : gclient_wait(pc->c, sent);
}

static uint32_t pconn_inflight(const struct pconn *pc)
{
	return pc->gc ? gcluster_inflight(pc->gc) : pc->c ? gclient_inflight(pc->c) : 0;
}

/* A failure, with gcluster's own account of it when there is one. */
static void pconn_fail(struct actor *a, const struct pconn *pc, int rv, const char *what)
{
	actor_fail(a, rv, what);
	if (pc->gc != NULL && gcluster_last_error(pc->gc)[0] != '\0') {
		size_t l = strlen(a->errmsg);
		snprintf(a->errmsg + l, sizeof(a->errmsg) - l, " (%s)", gcluster_last_error(pc->gc));
	}
}

static void pconn_close(struct actor *a, struct pconn *pc)
{
	if (pc->gc != NULL) {
		struct gcluster_stats st;
		gcluster_get_stats(pc->gc, &st);
		a->hops = st.hops;
	}
	gcluster_close(pc->gc);
	gclient_close(pc->c);
}

static void *producer_main(void *arg)
{
	struct actor *a = arg;
	const struct opts *o = &a->b->o;
	struct pconn pc = {0};
	uint32_t n = o->per_batch;
	uint8_t *payload = malloc(o->message_size > 0 ? o->message_size : 1);
	const void **ptrs = calloc(n, sizeof(*ptrs));
	uint32_t *lens = calloc(n, sizeof(*lens));
	double *sent_at = calloc(o->inflight, sizeof(*sent_at));
	int rv = payload && ptrs && lens && sent_at ? pconn_open(o, &pc) : -ENOMEM;
	pthread_barrier_wait(&a->b->start_barrier);
	if (rv != 0) {
		actor_fail(a, rv, "connect and login");
		goto out;
	}
	for (uint32_t i = 0; i < o->message_size; i++)
		payload[i] = (uint8_t)('a' + (i + a->index) % 26);
	for (uint32_t i = 0; i < n; i++) {
		ptrs[i] = payload;
		lens[i] = o->message_size;
	}
	char sname[64];
	stream_name(a->streams[0], sname, sizeof(sname));
	struct wire_id s = gclient_id_name(sname), t = gclient_id_name(TOPIC_NAME);
	uint32_t partitions = o->partitions;
	double batch_bytes = (double)n * o->message_size;
	double rate = o->rate_limit > 0 ? o->rate_limit / o->producers : 0;
	uint32_t head = 0; /* ring of send times, oldest at head */
	a->start = now_s();
	for (uint64_t k = 0; k < a->batches || pconn_inflight(&pc) > 0;) {
		bool can_send = k < a->batches && pconn_inflight(&pc) < o->inflight;
		if (can_send && rate > 0) {
			double slot = a->start + (double)k * batch_bytes / rate;
			double wait = slot - now_s();
			if (wait > 0 && pconn_inflight(&pc) > 0)
				can_send = false; /* collect a reply while waiting for the slot */
			else
				sleep_s(wait);
		}
		if (can_send) {
			uint32_t part = a->balanced ? GCLIENT_BALANCED : partitions > 1 ? (uint32_t)(k % partitions) : 0;
			double t0 = now_s();
			if (a->e2e && o->message_size >= 8) {
				uint64_t ts = realtime_ns();
				memcpy(payload, &ts, sizeof(ts));
			}
			rv = pconn_send(&pc, &s, &t, part, n, ptrs, lens);
			if (rv != 0) {
				pconn_fail(a, &pc, rv, "send");
				break;
			}
			sent_at[(head + pconn_inflight(&pc) - 1) % o->inflight] = t0;
			k++;
			continue;
		}
		struct gclient_sent sent;
		rv = pconn_wait(&pc, &sent);
		double t1 = now_s();
		if (rv != 0) {
			pconn_fail(a, &pc, rv, "send reply");
			break;
		}
		h_add(&a->lat, (uint64_t)((t1 - sent_at[head]) * 1e9));
		head = (head + 1) % o->inflight;
		a->requests++;
		a->messages += n;
		a->bytes += (uint64_t)n * o->message_size;
	}
	a->end = now_s();
out:
	pconn_close(a, &pc);
	free(payload);
	free(ptrs);
	free(lens);
	free(sent_at);
	return NULL;
}

/* ---- Consumers ---- */

/* One partition a consumer reads: where it is and where it stops. */
struct cpart {
	uint32_t stream;   /* bench stream number */
	uint32_t id;
	uint64_t next;     /* the next offset to read */
	uint64_t end;      /* stop after this many messages were read from the partition; 0 = no limit */
	bool done;
};

/* Walks the messages of a poll: counts payload bytes, checks offsets, records end-to-end latency. */
static int consume_reply(struct actor *a, const struct gclient_polled *p, uint64_t expect_first, uint64_t *last)
{
	if (a->b->o.verify && gclient_polled_verify(p) != 0)
		return -EBADMSG;
	struct gclient_msg_iter it;
	struct gclient_msg m;
	gclient_msg_iter_init(&it, p);
	uint64_t expect = expect_first, now = a->e2e ? realtime_ns() : 0;
	int rv;
	while ((rv = gclient_msg_next(&it, &m)) == 1) {
		if (expect != UINT64_MAX && m.offset != expect)
			return -EILSEQ;
		expect = m.offset + 1;
		*last = m.offset;
		a->bytes += m.payload_len;
		if (a->e2e && m.payload_len >= 8) {
			uint64_t ts;
			memcpy(&ts, m.payload, sizeof(ts));
			h_add(&a->e2e_lat, now > ts ? now - ts : 0);
		}
	}
	return rv;
}

/* Reads the actor's partitions with the Offset strategy (pinned modes). */
static void pinned_consume(struct actor *a, struct gclient *c, struct cpart *parts, uint32_t n_parts)
{
	const struct opts *o = &a->b->o;
	struct wire_consumer cons = gclient_consumer(1000 + a->index);
	struct wire_id t = gclient_id_name(TOPIC_NAME);
	double last_progress = now_s();
	uint32_t remaining = n_parts;
	for (uint32_t i = 0; i < n_parts; i++)
		if (parts[i].done)
			remaining--;
	while (remaining > 0 && (a->target == 0 || a->messages < a->target)) {
		bool progress = false;
		for (uint32_t i = 0; i < n_parts && (a->target == 0 || a->messages < a->target); i++) {
			struct cpart *cp = &parts[i];
			if (cp->done)
				continue;
			char sname[64];
			stream_name(cp->stream, sname, sizeof(sname));
			struct wire_id s = gclient_id_name(sname);
			uint32_t count = o->per_batch;
			if (cp->end > 0 && cp->end - cp->next < count)
				count = (uint32_t)(cp->end - cp->next);
			struct gclient_polled p;
			double t0 = now_s();
			int rv = gclient_poll(c, &cons, &s, &t, cp->id, (struct wire_polling){WIRE_POLL_OFFSET, cp->next},
					      count, false, &p);
			double t1 = now_s();
			if (rv != 0) {
				actor_fail(a, rv, "poll");
				return;
			}
			a->requests++;
			if (p.count == 0) {
				a->empty_polls++;
				continue;
			}
			h_add(&a->lat, (uint64_t)((t1 - t0) * 1e9));
			uint64_t last = 0;
			rv = consume_reply(a, &p, cp->next, &last);
			if (rv != 0) {
				actor_fail(a, rv, "poll reply");
				return;
			}
			a->messages += p.count;
			cp->next = last + 1;
			progress = true;
			if (cp->end > 0 && cp->next >= cp->end) {
				cp->done = true;
				remaining--;
			}
		}
		double now = now_s();
		if (progress) {
			last_progress = now;
		} else {
			if (now - last_progress > STALL_S) {
				actor_fail(a, -ETIMEDOUT, "no new messages");
				return;
			}
			sleep_s(100e-6);
		}
	}
}

/* Reads the partitions the group assigns with the Next strategy and auto-commit. */
static void group_consume(struct actor *a, struct gclient *c)
{
	const struct opts *o = &a->b->o;
	char sname[64];
	stream_name(1, sname, sizeof(sname));
	struct wire_id s = gclient_id_name(sname), t = gclient_id_name(TOPIC_NAME), g = gclient_id_name(GROUP_NAME);
	struct wire_consumer cons = gclient_group_consumer(g);
	static __thread struct gclient_partition tparts[MAX_PARTITIONS];
	struct gclient_topic topic;
	int rv = gclient_get_topic(c, &s, &t, &topic, tparts, MAX_PARTITIONS);
	if (rv != 0) {
		actor_fail(a, rv, "get topic");
		return;
	}
	uint32_t mine[MAX_PARTITIONS], n = 0;
	uint64_t gen;
	bool done[MAX_PARTITIONS];
	uint64_t next[MAX_PARTITIONS];
	bool sync = true;
	double last_progress = now_s(), last_sync = last_progress;
	for (;;) {
		if (sync) {
			rv = gclient_sync_group(c, &s, &t, &g, &gen, mine, MAX_PARTITIONS, &n);
			if (rv != 0) {
				actor_fail(a, rv, "sync group");
				return;
			}
			for (uint32_t i = 0; i < n; i++) {
				done[i] = mine[i] >= topic.partitions_count || tparts[mine[i]].messages_count == 0;
				next[i] = UINT64_MAX;
			}
			sync = false;
		}
		bool all_done = true, progress = false;
		for (uint32_t i = 0; i < n && !sync; i++) {
			if (done[i])
				continue;
			all_done = false;
			struct gclient_polled p;
			double t0 = now_s();
			rv = gclient_poll(c, &cons, &s, &t, mine[i], (struct wire_polling){WIRE_POLL_NEXT, 0}, o->per_batch,
					  true, &p);
			double t1 = now_s();
			if (rv != 0) {
				actor_fail(a, rv, "poll");
				return;
			}
			a->requests++;
			if (p.partition_id == GCLIENT_RESYNC_PARTITION) {
				sync = true;
				break;
			}
			if (p.count == 0) {
				/* Nothing new: done if the group has already read the partition to its end. */
				struct gclient_offset off;
				a->empty_polls++;
				rv = gclient_get_offset(c, &cons, &s, &t, mine[i], &off);
				if (rv != 0 && rv != -ENOENT) {
					actor_fail(a, rv, "get group offset");
					return;
				}
				if (rv == 0 && off.stored_offset >= tparts[mine[i]].current_offset)
					done[i] = true;
				continue;
			}
			h_add(&a->lat, (uint64_t)((t1 - t0) * 1e9));
			uint64_t last = 0;
			rv = consume_reply(a, &p, next[i], &last);
			if (rv != 0) {
				actor_fail(a, rv, "poll reply");
				return;
			}
			a->messages += p.count;
			next[i] = last + 1;
			progress = true;
			if (last >= tparts[mine[i]].current_offset)
				done[i] = true;
		}
		if (sync)
			continue;
		if (all_done)
			return;
		double now = now_s();
		if (progress) {
			last_progress = now;
			last_sync = now;
		} else if (now - last_progress > STALL_S) {
			actor_fail(a, -ETIMEDOUT, "no new messages");
			return;
		} else if (now - last_sync > 1.0) {
			sync = true; /* idle for a second: the assignment may have changed (as the SDK's heartbeat) */
			last_sync = now;
		} else {
			sleep_s(100e-6);
		}
	}
}

static void *consumer_main(void *arg)
{
	struct actor *a = arg;
	const struct opts *o = &a->b->o;
	struct gclient *c = NULL;
	struct cpart *parts = NULL;
	uint32_t n_parts = 0;
	int rv = client_open(o, &c);
	const char *what = "connect and login";
	if (rv == 0 && a->group) {
		char sname[64];
		stream_name(1, sname, sizeof(sname));
		struct wire_id s = gclient_id_name(sname), t = gclient_id_name(TOPIC_NAME),
			       g = gclient_id_name(GROUP_NAME);
		rv = gclient_join_group(c, &s, &t, &g);
		what = "join group";
	} else if (rv == 0) {
		/* The partitions of its streams and, for static data, where each ends. */
		parts = calloc((size_t)a->n_streams * o->partitions, sizeof(*parts));
		rv = parts ? 0 : -ENOMEM;
		for (uint32_t i = 0; i < a->n_streams && rv == 0; i++) {
			static __thread struct gclient_partition tp[MAX_PARTITIONS];
			struct gclient_topic topic;
			char sname[64];
			stream_name(a->streams[i], sname, sizeof(sname));
			struct wire_id s = gclient_id_name(sname), t = gclient_id_name(TOPIC_NAME);
			rv = gclient_get_topic(c, &s, &t, &topic, tp, MAX_PARTITIONS);
			what = "get topic";
			for (uint32_t k = 0; rv == 0 && k < topic.partitions_count && k < o->partitions; k++) {
				struct cpart *cp = &parts[n_parts++];
				cp->stream = a->streams[i];
				cp->id = k;
				if (o->mode == M_PINNED_CONSUMER) {
					cp->end = tp[k].messages_count > 0 ? tp[k].current_offset + 1 : 0;
					cp->done = tp[k].messages_count == 0;
				}
			}
		}
	}
	pthread_barrier_wait(&a->b->start_barrier);
	if (rv != 0) {
		actor_fail(a, rv, what);
		goto out;
	}
	a->start = now_s();
	if (!a->group && o->mode != M_PINNED_CONSUMER && a->target == 0)
		; /* no producer writes its streams */
	else if (a->group)
		group_consume(a, c);
	else
		pinned_consume(a, c, parts, n_parts);
	a->end = now_s();
out:
	/*
	 * A member that disconnects makes the server deal its partitions again, possibly taking an unread
	 * partition from a member that is still reading: members stay until every one has finished.
	 */
	if (a->group)
		pthread_barrier_wait(&a->b->group_barrier);
	free(parts);
	gclient_close(c);
	return NULL;
}

/* ---- Server sampling (/proc/<pid>) ---- */

/* utime + stime of a process in clock ticks, or -1. */
static long long proc_cpu_ticks(int pid)
{
	char path[64], buf[2048];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	/* Fields after the command name start with field 3 (state); utime and stime are fields 14 and 15. */
	unsigned long long ut = 0, st = 0;
	int field = 2;
	for (char *tok = strtok(p + 1, " "); tok != NULL; tok = strtok(NULL, " ")) {
		field++;
		if (field == 14)
			ut = strtoull(tok, NULL, 10);
		else if (field == 15) {
			st = strtoull(tok, NULL, 10);
			return (long long)(ut + st);
		}
	}
	return -1;
}

static long proc_rss_kb(int pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	long kb = -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kb = strtol(line + 6, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

static void *sampler_main(void *arg)
{
	struct bench *b = arg;
	struct sample_stats *st = &b->server;
	double hz = (double)sysconf(_SC_CLK_TCK);
	long long first = proc_cpu_ticks(b->o.server_pid), prev = first;
	double t_first = now_s(), t_prev = t_first;
	if (first < 0)
		return NULL;
	st->ok = true;
	st->peak_rss_kb = proc_rss_kb(b->o.server_pid);
	while (!b->stop_sampler) {
		/* Sleeps up to SAMPLE_MS, and takes the last sample as soon as the run ends. */
		for (int slept = 0; slept < SAMPLE_MS && !b->stop_sampler; slept += 10)
			sleep_s(0.010);
		long long ticks = proc_cpu_ticks(b->o.server_pid);
		long rss = proc_rss_kb(b->o.server_pid);
		double t = now_s();
		if (ticks < 0)
			break;
		st->samples++;
		if (rss > st->peak_rss_kb)
			st->peak_rss_kb = rss;
		double cpu = (double)(ticks - prev) / hz / (t - t_prev) * 100.0;
		if (cpu > st->max_cpu && t - t_prev >= SAMPLE_MS / 2000.0)
			st->max_cpu = cpu; /* a short last interval is too coarse (clock ticks) for a maximum */
		st->avg_cpu = (double)(ticks - first) / hz / (t - t_first) * 100.0;
		prev = ticks;
		t_prev = t;
	}
	return NULL;
}

/* ---- Setup ---- */

/*
 * A cluster answers metadata writes with 58 (TransientNotAccepted) while its metadata group elects a
 * leader, e.g. just after it started: such a write changed nothing and is issued again, for up to 30 s.
 */
#define RETRY_58(call)                                                                                     \
	({                                                                                                 \
		int rv_;                                                                                   \
		double end_ = now_s() + 30;                                                                \
		while ((rv_ = (call)) == 58 && now_s() < end_)                                             \
			sleep_s(0.05);                                                                     \
		rv_;                                                                                       \
	})

/* Deletes a bench stream if it exists. */
static int drop_stream(struct gclient *c, uint32_t n)
{
	char sname[64];
	stream_name(n, sname, sizeof(sname));
	struct wire_id s = gclient_id_name(sname);
	int rv = RETRY_58(gclient_delete_stream(c, &s));
	return rv == 1009 ? 0 : rv; /* StreamIdNotFound: nothing to delete */
}

/* (Re)creates bench streams 1..n, each with one topic of `partitions` partitions. */
static int create_streams(const struct opts *o, struct gclient *c, uint32_t n)
{
	char e[128];
	for (uint32_t i = 1; i <= n; i++) {
		char sname[64];
		stream_name(i, sname, sizeof(sname));
		struct wire_id s = gclient_id_name(sname);
		int rv = drop_stream(c, i);
		if (rv == 0)
			rv = RETRY_58(gclient_create_stream(c, sname, NULL));
		if (rv == 0)
			rv = RETRY_58(gclient_create_topic(c, &s, TOPIC_NAME, o->partitions, o->durability, NULL));
		if (rv != 0) {
			fprintf(stderr, "galgo-bench: cannot create %s: %s\n", sname, gclient_strerror(rv, e, sizeof(e)));
			return rv;
		}
	}
	return 0;
}

/* Messages stored in a bench stream's topic; -ENOENT when the stream or topic is missing. */
static int stream_messages(struct gclient *c, uint32_t n, uint64_t *msgs)
{
	char sname[64];
	stream_name(n, sname, sizeof(sname));
	struct wire_id s = gclient_id_name(sname), t = gclient_id_name(TOPIC_NAME);
	struct gclient_topic topic;
	int rv = gclient_get_topic(c, &s, &t, &topic, NULL, 0);
	if (rv == 0)
		*msgs = topic.messages_count;
	return rv;
}

/* Batches per producer (or messages to read per consumer, / per_batch) for `actors` actors. */
static uint64_t batches_per_actor(const struct opts *o, uint32_t actors)
{
	if (o->message_batches > 0)
		return o->message_batches;
	if (o->total_data > 0) {
		uint64_t batch = (uint64_t)o->message_size * o->per_batch, per = o->total_data / actors;
		uint64_t n = (per + batch - 1) / batch;
		return n > 0 ? n : 1;
	}
	return 1000;
}

/* ---- Running actors ---- */

static int run_actors(struct bench *b)
{
	pthread_t sampler;
	bool sampling = false;
	pthread_barrier_init(&b->start_barrier, NULL, b->n_actors + 1);
	b->n_group = 0;
	for (uint32_t i = 0; i < b->n_actors; i++)
		b->n_group += b->actors[i].group;
	if (b->n_group > 0)
		pthread_barrier_init(&b->group_barrier, NULL, b->n_group);
	for (uint32_t i = 0; i < b->n_actors; i++) {
		struct actor *a = &b->actors[i];
		a->b = b;
		int rv = pthread_create(&a->thread, NULL, a->kind == A_PRODUCER ? producer_main : consumer_main, a);
		if (rv != 0) {
			fprintf(stderr, "galgo-bench: cannot start a thread: %s\n", strerror(rv));
			exit(2);
		}
	}
	pthread_barrier_wait(&b->start_barrier);
	b->t_start = now_s();
	if (b->o.server_pid > 0) {
		b->stop_sampler = 0;
		sampling = pthread_create(&sampler, NULL, sampler_main, b) == 0;
	}
	int failed = 0;
	for (uint32_t i = 0; i < b->n_actors; i++) {
		pthread_join(b->actors[i].thread, NULL);
		if (b->actors[i].error != 0)
			failed++;
	}
	if (sampling) {
		b->stop_sampler = 1;
		pthread_join(sampler, NULL);
	}
	pthread_barrier_destroy(&b->start_barrier);
	if (b->n_group > 0)
		pthread_barrier_destroy(&b->group_barrier);
	return failed;
}

/* ---- Reporting ---- */

struct agg {
	uint32_t actors;
	uint64_t messages, bytes, requests, hops;
	double start, end;
	double sum_mb_s;
	struct hist lat;
	struct hist e2e;
};

static void aggregate(const struct bench *b, enum actor_kind kind, struct agg *g)
{
	memset(g, 0, sizeof(*g));
	g->start = b->t_start;
	for (uint32_t i = 0; i < b->n_actors; i++) {
		const struct actor *a = &b->actors[i];
		if (a->kind != kind)
			continue;
		if (a->start > 0 && a->start < g->start)
			g->start = a->start; /* the first actor may start before the main thread reads the clock */
		g->actors++;
		g->messages += a->messages;
		g->bytes += a->bytes;
		g->requests += a->requests;
		g->hops += a->hops;
		if (a->end > g->end)
			g->end = a->end;
		if (a->end > a->start)
			g->sum_mb_s += (double)a->bytes / MB / (a->end - a->start);
		h_merge(&g->lat, &a->lat);
		h_merge(&g->e2e, &a->e2e_lat);
	}
}

static void print_lat(const char *label, const struct hist *h)
{
	printf("%s", label);
	for (size_t i = 0; i < N_PCTS; i++)
		printf(" %s %.3f", pct_names[i], h_pct_ms(h, pcts[i]));
	printf(" max %.3f ms\n", (double)h->max / 1e6);
}

static void print_actor(const struct actor *a)
{
	double s = a->end - a->start;
	const char *kind = a->kind == A_PRODUCER ? "producer" : "consumer";
	if (a->error != 0) {
		printf("  %s %u: FAILED (%s)\n", kind, a->index + 1, a->errmsg);
		return;
	}
	printf("  %s %u: %" PRIu64 " msgs in %.2f s: %.1f MB/s, %.0f msgs/s;", kind, a->index + 1, a->messages, s,
	       s > 0 ? (double)a->bytes / MB / s : 0, s > 0 ? (double)a->messages / s : 0);
	print_lat(a->kind == A_PRODUCER ? " batch rtt ms" : " poll rtt ms", &a->lat);
}

static void print_agg(const char *what, const struct agg *g, bool e2e)
{
	double s = g->end - g->start;
	printf("%s (%u): %" PRIu64 " msgs, %.1f MB in %.2f s: %.1f MB/s (sum of actors %.1f), %.0f msgs/s\n", what,
	       g->actors, g->messages, (double)g->bytes / MB, s, s > 0 ? (double)g->bytes / MB / s : 0, g->sum_mb_s,
	       s > 0 ? (double)g->messages / s : 0);
	if (g->hops > 0)
		printf("  redirect hops: %" PRIu64 "\n", g->hops);
	print_lat(strcmp(what, "producers") == 0 ? "  batch round trip ms:" : "  poll round trip ms:", &g->lat);
	if (e2e)
		print_lat("  end-to-end latency ms:", &g->e2e);
}

static void json_hist(FILE *f, const char *name, const struct hist *h)
{
	fprintf(f, "\"%s\": {\"count\": %" PRIu64, name, h->count);
	for (size_t i = 0; i < N_PCTS; i++)
		fprintf(f, ", \"%s\": %.4f", pct_names[i], h_pct_ms(h, pcts[i]));
	fprintf(f, ", \"min\": %.4f, \"max\": %.4f, \"mean\": %.4f}", (double)h->min / 1e6, (double)h->max / 1e6,
		h->count ? h->sum / (double)h->count / 1e6 : 0);
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", (unsigned char)*s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void json_side(FILE *f, const struct bench *b, enum actor_kind kind, const struct agg *g, bool e2e)
{
	fprintf(f, "{\"actors\": [");
	bool first = true;
	for (uint32_t i = 0; i < b->n_actors; i++) {
		const struct actor *a = &b->actors[i];
		if (a->kind != kind)
			continue;
		double s = a->end - a->start;
		fprintf(f, "%s\n    {\"id\": %u, \"streams\": [", first ? "" : ",", a->index + 1);
		for (uint32_t k = 0; k < a->n_streams; k++)
			fprintf(f, "%s%u", k ? ", " : "", a->streams[k]);
		fprintf(f, "], \"ok\": %s, ", a->error ? "false" : "true");
		if (a->error) {
			fprintf(f, "\"error\": ");
			json_string(f, a->errmsg);
			fprintf(f, ", ");
		}
		fprintf(f, "\"messages\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"requests\": %" PRIu64
			   ", \"empty_polls\": %" PRIu64 ", \"seconds\": %.6f, \"mb_per_s\": %.3f, \"msgs_per_s\": %.1f, ",
			a->messages, a->bytes, a->requests, a->empty_polls, s, s > 0 ? (double)a->bytes / MB / s : 0,
			s > 0 ? (double)a->messages / s : 0);
		json_hist(f, kind == A_PRODUCER ? "batch_latency_ms" : "poll_latency_ms", &a->lat);
		if (e2e && kind == A_CONSUMER) {
			fprintf(f, ", ");
			json_hist(f, "end_to_end_latency_ms", &a->e2e_lat);
		}
		fprintf(f, "}");
		first = false;
	}
	double s = g->end - g->start;
	fprintf(f, "],\n   \"aggregate\": {\"actors\": %u, \"messages\": %" PRIu64 ", \"bytes\": %" PRIu64
		   ", \"redirect_hops\": %" PRIu64 ", \"seconds\": %.6f, \"mb_per_s\": %.3f, \"sum_of_actors_mb_per_s\": %.3f, \"msgs_per_s\": %.1f, ",
		g->actors, g->messages, g->bytes, g->hops, s, s > 0 ? (double)g->bytes / MB / s : 0, g->sum_mb_s,
		s > 0 ? (double)g->messages / s : 0);
	json_hist(f, kind == A_PRODUCER ? "batch_latency_ms" : "poll_latency_ms", &g->lat);
	if (e2e && kind == A_CONSUMER) {
		fprintf(f, ", ");
		json_hist(f, "end_to_end_latency_ms", &g->e2e);
	}
	fprintf(f, "}}");
}

static int write_json(const struct bench *b, const struct agg *prod, const struct agg *cons, bool e2e,
		      double client_cpu)
{
	const struct opts *o = &b->o;
	FILE *f = fopen(o->json, "w");
	if (f == NULL) {
		fprintf(stderr, "galgo-bench: cannot write %s: %s\n", o->json, strerror(errno));
		return -1;
	}
	fprintf(f, "{\n  \"tool\": \"galgo-bench\",\n  \"mode\": \"%s\",\n  \"address\": ", mode_names[o->mode]);
	json_string(f, o->address);
	fprintf(f, ",\n  \"cluster\": ");
	if (o->cluster != NULL)
		json_string(f, o->cluster);
	else
		fprintf(f, "null");
	fprintf(f, ",\n  \"params\": {\"producers\": %u, \"consumers\": %u, \"streams\": %u, \"partitions\": %u, "
		   "\"message_size\": %u, \"messages_per_batch\": %u, \"total_data\": %" PRIu64
		   ", \"message_batches\": %" PRIu64 ", \"rate_limit_bytes_per_s\": %.0f, \"durability\": ",
		o->producers, o->consumers, o->streams, o->partitions, o->message_size, o->per_batch, o->total_data,
		o->message_batches, o->rate_limit);
	json_string(f, o->durability ? o->durability : "default");
	fprintf(f, ", \"inflight\": %u},\n  \"mb\": 1000000,\n", o->inflight);
	if (prod->actors > 0) {
		fprintf(f, "  \"producers\": ");
		json_side(f, b, A_PRODUCER, prod, e2e);
		fprintf(f, ",\n");
	}
	if (cons->actors > 0) {
		fprintf(f, "  \"consumers\": ");
		json_side(f, b, A_CONSUMER, cons, e2e);
		fprintf(f, ",\n");
	}
	fprintf(f, "  \"client_cpu_percent\": %.1f,\n", client_cpu);
	if (b->server.ok)
		fprintf(f, "  \"server\": {\"pid\": %d, \"samples\": %u, \"interval_ms\": %d, \"peak_rss_bytes\": %ld, "
			   "\"avg_cpu_percent\": %.1f, \"max_cpu_percent\": %.1f}\n",
			o->server_pid, b->server.samples, SAMPLE_MS, b->server.peak_rss_kb * 1024, b->server.avg_cpu,
			b->server.max_cpu);
	else
		fprintf(f, "  \"server\": null\n");
	fprintf(f, "}\n");
	return fclose(f) == 0 ? 0 : -1;
}

/* ---- Options ---- */

/* "1GB", "512MiB", "1.5e9": bytes (KB/MB/GB/TB = 10^3.., KiB/MiB/GiB/TiB = 2^10..). */
static int parse_size(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || v < 0)
		return -1;
	static const struct {
		const char *unit;
		double mul;
	} units[] = {{"", 1},        {"b", 1},           {"kb", 1e3},           {"mb", 1e6},
		     {"gb", 1e9},    {"tb", 1e12},       {"kib", 1024.0},       {"mib", 1048576.0},
		     {"gib", 1073741824.0}, {"tib", 1099511627776.0}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(end, units[i].unit) == 0) {
			*out = v * units[i].mul;
			return 0;
		}
	return -1;
}

static int parse_rate(const char *s, double *out)
{
	char buf[64];
	size_t n = strlen(s);
	if (n >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	if (n > 2 && strcasecmp(buf + n - 2, "/s") == 0)
		buf[n - 2] = '\0';
	return parse_size(buf, out);
}

static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: galgo-bench MODE [options]\n"
		"modes: pinned-producer, pinned-consumer, pinned-producer-and-consumer, balanced-producer,\n"
		"       balanced-consumer-group, end-to-end\n"
		"  --address HOST:PORT        server (default 127.0.0.1:8090; with --cluster, its first node)\n"
		"  --cluster H:P,H:P,...      a Galgo cluster: producers send to partition leaders (gcluster)\n"
		"  --username U --password P  login (default iggy / iggy)\n"
		"  --producers N              producer threads (default 8)\n"
		"  --consumers N              consumer threads (default: the producers)\n"
		"  --streams N                bench streams (default: the actors of pinned modes, 1 for balanced)\n"
		"  --partitions N             partitions per topic (default 1; balanced modes: the actors)\n"
		"  --message-size BYTES       payload size (default 1000)\n"
		"  --messages-per-batch N     messages per batch and per poll (default 1000)\n"
		"  --total-data SIZE          data to move, split over the actors (e.g. 1GB, 512MiB)\n"
		"  --message-batches N        batches per actor (default 1000 when --total-data is not given)\n"
		"  --rate-limit RATE          total producer rate, e.g. 100MB/s (default 0 = unlimited)\n"
		"  --durability D             topic option: fsync, none or interval (default fsync)\n"
		"  --inflight K               batches in flight per producer (default 1)\n"
		"  --json FILE                write the report as JSON\n"
		"  --keep                     keep the bench streams at the end\n"
		"  --verify                   verify every checksum of every poll reply\n"
		"  --server-pid PID           sample galgod's RSS and CPU every 100 ms\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option lopts[] = {
		{"address", required_argument, NULL, 'a'},      {"username", required_argument, NULL, 'u'},
		{"password", required_argument, NULL, 'p'},     {"producers", required_argument, NULL, 'P'},
		{"consumers", required_argument, NULL, 'C'},    {"streams", required_argument, NULL, 'S'},
		{"partitions", required_argument, NULL, 'N'},   {"message-size", required_argument, NULL, 'm'},
		{"messages-per-batch", required_argument, NULL, 'b'}, {"total-data", required_argument, NULL, 't'},
		{"message-batches", required_argument, NULL, 'B'}, {"rate-limit", required_argument, NULL, 'r'},
		{"durability", required_argument, NULL, 'd'},   {"inflight", required_argument, NULL, 'i'},
		{"json", required_argument, NULL, 'j'},         {"keep", no_argument, NULL, 'k'},
		{"verify", no_argument, NULL, 'v'},             {"server-pid", required_argument, NULL, 's'},
		{"cluster", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},               {NULL, 0, NULL, 0},
	};
	*o = (struct opts){.address = "127.0.0.1:8090", .username = "iggy", .password = "iggy", .producers = 8,
			   .consumers = 8, .streams = 0, .partitions = 1, .message_size = 1000, .per_batch = 1000,
			   .durability = "fsync", .inflight = 1};
	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		usage(stderr);
		return -1;
	}
	bool found = false;
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (strcmp(argv[1], mode_names[i]) == 0) {
			o->mode = (enum mode)i;
			found = true;
		}
	if (!found) {
		fprintf(stderr, "galgo-bench: unknown mode '%s'\n", argv[1]);
		usage(stderr);
		return -1;
	}
	optind = 2;
	int ch;
	double v = 0;
	uint32_t u = 0;
	bool address_set = false;
	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		int bad = 0;
		switch (ch) {
		case 'a':
			o->address = optarg;
			address_set = true;
			break;
		case 'c':
			o->cluster = optarg;
			bad = strchr(optarg, ':') == NULL;
			break;
		case 'u':
			o->username = optarg;
			break;
		case 'p':
			o->password = optarg;
			break;
		case 'P':
			bad = parse_u32(optarg, 1, MAX_ACTORS / 2, &o->producers);
			break;
		case 'C':
			bad = parse_u32(optarg, 1, MAX_ACTORS / 2, &o->consumers);
			o->consumers_set = true;
			break;
		case 'S':
			bad = parse_u32(optarg, 1, 100000, &o->streams);
			o->streams_set = true;
			break;
		case 'N':
			bad = parse_u32(optarg, 1, MAX_PARTITIONS, &o->partitions);
			o->partitions_set = true;
			break;
		case 'm':
			bad = parse_u32(optarg, 1, 10000000, &o->message_size);
			break;
		case 'b':
			bad = parse_u32(optarg, 1, 1000000, &o->per_batch);
			break;
		case 't':
			bad = parse_size(optarg, &v) || v < 1;
			o->total_data = (uint64_t)v;
			break;
		case 'B':
			bad = parse_u32(optarg, 1, UINT32_MAX, &u);
			o->message_batches = u;
			break;
		case 'r':
			bad = parse_rate(optarg, &o->rate_limit);
			break;
		case 'd':
			o->durability = strcmp(optarg, "default") == 0 ? NULL : optarg;
			bad = o->durability != NULL && strcmp(optarg, "fsync") != 0 && strcmp(optarg, "none") != 0 &&
			      strcmp(optarg, "interval") != 0;
			break;
		case 'i':
			bad = parse_u32(optarg, 1, 1024, &o->inflight);
			break;
		case 'j':
			o->json = optarg;
			break;
		case 'k':
			o->keep = true;
			break;
		case 'v':
			o->verify = true;
			break;
		case 's':
			bad = parse_u32(optarg, 1, INT32_MAX, &u);
			o->server_pid = (int)u;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
		if (bad) {
			const char *name = "?";
			for (size_t i = 0; lopts[i].name != NULL; i++)
				if (lopts[i].val == ch)
					name = lopts[i].name;
			fprintf(stderr, "galgo-bench: bad value for --%s: '%s'\n", name, optarg);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "galgo-bench: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (o->cluster != NULL && !address_set) {
		static char first[256];
		size_t l = strcspn(o->cluster, ",");
		if (l >= sizeof(first))
			l = sizeof(first) - 1;
		memcpy(first, o->cluster, l);
		first[l] = '\0';
		o->address = first;
	}
	if (o->total_data > 0 && o->message_batches > 0) {
		fprintf(stderr, "galgo-bench: give --total-data or --message-batches, not both\n");
		return -1;
	}
	if (!o->consumers_set)
		o->consumers = o->producers;
	if (o->mode == M_END_TO_END && o->message_size < 8) {
		fprintf(stderr, "galgo-bench: end-to-end needs --message-size ≥ 8 (the send time)\n");
		return -1;
	}
	if ((uint64_t)o->per_batch * (o->message_size + 48u) + 256 > (60u << 20)) {
		fprintf(stderr, "galgo-bench: a batch must stay under 60 MiB\n");
		return -1;
	}
	bool balanced = o->mode == M_BALANCED_PRODUCER || o->mode == M_BALANCED_GROUP;
	if (!o->streams_set)
		o->streams = balanced ? 1 : o->mode == M_PINNED_CONSUMER ? o->consumers : o->producers;
	if (balanced && o->streams != 1) {
		fprintf(stderr, "galgo-bench: balanced modes use one stream\n");
		return -1;
	}
	if (!o->partitions_set && balanced)
		o->partitions = o->mode == M_BALANCED_PRODUCER ? o->producers : o->consumers;
	return 0;
}

/*
 * A new topic's partitions elect their leaders after it is created (an election timeout or so): wait
 * for every partition of the cluster to have one, so the run measures sending, not elections.
 */
static int await_leaders(const struct opts *o)
{
	struct gcluster *gc = NULL;
	struct gcluster_opts co = {.username = o->username, .password = o->password};
	int rv = gcluster_open(o->cluster, &co, &gc);
	for (double end = now_s() + 30; rv == 0;) {
		size_t n = gcluster_partition_count(gc), led = 0;
		for (size_t i = 0; i < n; i++)
			led += gcluster_partition(gc, i)->leader != 0;
		if (n > 0 && led == n)
			break;
		if (now_s() > end)
			rv = -ETIMEDOUT;
		else {
			sleep_s(0.05);
			rv = gcluster_refresh(gc);
		}
	}
	if (rv != 0) {
		char e[128];
		fprintf(stderr, "galgo-bench: partition leaders: %s\n", gclient_strerror(rv, e, sizeof(e)));
	}
	gcluster_close(gc);
	return rv;
}

/* ---- Phases ---- */

static struct actor *add_actor(struct bench *b, enum actor_kind kind, uint32_t index)
{
	struct actor *a = &b->actors[b->n_actors++];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->index = index;
	return a;
}

/* Producers 0..n-1 of a pinned or balanced layout. */
static void add_producers(struct bench *b, uint32_t n, bool balanced, bool e2e, uint64_t batches)
{
	for (uint32_t i = 0; i < n; i++) {
		struct actor *a = add_actor(b, A_PRODUCER, i);
		a->streams[a->n_streams++] = balanced ? 1 : i % b->o.streams + 1;
		a->batches = batches;
		a->balanced = balanced;
		a->e2e = e2e;
	}
}

/* Runs an unmeasured producer phase that fills streams 1..streams (pinned) or stream 1 (balanced). */
static int seed(const struct opts *o, struct gclient **admin, bool balanced)
{
	struct bench sb = {.o = *o};
	uint32_t n = balanced ? o->producers : o->streams;
	sb.o.producers = n;
	sb.o.rate_limit = 0;
	sb.o.server_pid = 0;
	uint64_t batches = batches_per_actor(o, n);
	printf("seeding %s with %u producer(s) x %" PRIu64 " batches ...\n", balanced ? "stream 1" : "the streams", n,
	       batches);
	fflush(stdout);
	if (create_streams(o, *admin, balanced ? 1 : o->streams) != 0)
		return -1;
	sb.actors = calloc(n, sizeof(*sb.actors));
	if (sb.actors == NULL)
		return -1;
	add_producers(&sb, n, balanced, false, batches);
	gclient_close(*admin); /* idle through the phase: it would be evicted as stale */
	*admin = NULL;
	int failed = run_actors(&sb);
	int rv = client_open(o, admin);
	if (rv != 0) {
		char e[128];
		fprintf(stderr, "galgo-bench: cannot log in again: %s\n", gclient_strerror(rv, e, sizeof(e)));
		failed++;
	}
	for (uint32_t i = 0; i < sb.n_actors; i++)
		if (sb.actors[i].error)
			fprintf(stderr, "galgo-bench: seeding producer %u: %s\n", i + 1, sb.actors[i].errmsg);
	free(sb.actors);
	return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
	static struct bench b;
	char e[128];
	if (parse_args(argc, argv, &b.o) != 0)
		return 2;
	struct opts *o = &b.o;
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct gclient *admin;
	int rv = client_open(o, &admin);
	if (rv != 0) {
		fprintf(stderr, "galgo-bench: cannot log in to %s: %s\n", o->address, gclient_strerror(rv, e, sizeof(e)));
		return 2;
	}
	b.actors = calloc(MAX_ACTORS, sizeof(*b.actors));
	if (b.actors == NULL)
		return 2;
	bool produce = o->mode != M_PINNED_CONSUMER && o->mode != M_BALANCED_GROUP;
	bool consume = o->mode == M_PINNED_CONSUMER || o->mode == M_BALANCED_GROUP || o->mode == M_PINNED_BOTH ||
		       o->mode == M_END_TO_END;
	bool balanced = o->mode == M_BALANCED_PRODUCER || o->mode == M_BALANCED_GROUP;
	bool e2e = o->mode == M_END_TO_END;

	/* Streams: fresh ones for producer modes; existing (or seeded) ones for the consumer modes. */
	if (produce) {
		if (create_streams(o, admin, o->streams) != 0)
			return 2;
	} else {
		bool need = false;
		for (uint32_t i = 1; i <= o->streams; i++) {
			uint64_t msgs = 0;
			rv = stream_messages(admin, i, &msgs);
			if (rv != 0 && rv != -ENOENT && rv != 1009 && rv != 2010) {
				fprintf(stderr, "galgo-bench: cannot read stream %u: %s\n", i, gclient_strerror(rv, e, sizeof(e)));
				return 2;
			}
			need |= rv != 0 || msgs == 0;
		}
		if (need && seed(o, &admin, balanced) != 0)
			return 2;
		if (o->mode == M_BALANCED_GROUP) {
			char sname[64];
			stream_name(1, sname, sizeof(sname));
			struct wire_id s = gclient_id_name(sname), t = gclient_id_name(TOPIC_NAME),
				       g = gclient_id_name(GROUP_NAME);
			struct gclient_topic topic;
			if (gclient_get_topic(admin, &s, &t, &topic, NULL, 0) == 0)
				o->partitions = topic.partitions_count;
			rv = gclient_delete_group(admin, &s, &t, &g);
			if (rv == 0 || rv == 5000)
				rv = gclient_create_group(admin, &s, &t, GROUP_NAME, NULL);
			if (rv != 0) {
				fprintf(stderr, "galgo-bench: cannot create the group: %s\n", gclient_strerror(rv, e, sizeof(e)));
				return 2;
			}
		} else {
			/* Read every partition the streams have. */
			for (uint32_t i = 1; i <= o->streams; i++) {
				char sname[64];
				stream_name(i, sname, sizeof(sname));
				struct wire_id s = gclient_id_name(sname), t = gclient_id_name(TOPIC_NAME);
				struct gclient_topic topic;
				if (gclient_get_topic(admin, &s, &t, &topic, NULL, 0) == 0 && topic.partitions_count > o->partitions)
					o->partitions = topic.partitions_count;
			}
		}
	}

	if (produce && o->cluster != NULL && await_leaders(o) != 0)
		return 2;
	uint64_t batches = batches_per_actor(o, o->producers);
	if (produce)
		add_producers(&b, o->producers, balanced, e2e, batches);
	if (consume) {
		for (uint32_t i = 0; i < o->consumers; i++) {
			struct actor *a = add_actor(&b, A_CONSUMER, i);
			a->e2e = e2e;
			if (o->mode == M_BALANCED_GROUP) {
				a->group = true;
				a->streams[a->n_streams++] = 1;
				continue;
			}
			if (o->consumers <= o->streams) {
				for (uint32_t s = i; s < o->streams && a->n_streams < 64; s += o->consumers)
					a->streams[a->n_streams++] = s + 1;
			} else {
				a->streams[a->n_streams++] = i % o->streams + 1;
			}
			if (o->mode == M_PINNED_CONSUMER) {
				/* Everything stored, or the amount asked for. */
				if (o->total_data > 0 || o->message_batches > 0)
					a->target = batches_per_actor(o, o->consumers) * o->per_batch;
			} else {
				/* What the producers of its streams will send. */
				for (uint32_t k = 0; k < a->n_streams; k++)
					for (uint32_t p = 0; p < o->producers; p++)
						if (p % o->streams + 1 == a->streams[k])
							a->target += batches * o->per_batch;
			}
		}
	}

	printf("galgo-bench %s: %s%s%s, %u producer(s), %u consumer(s), %u stream(s) x %u partition(s), "
	       "%u B messages, %u per batch, %s%s, inflight %u\n",
	       mode_names[o->mode], o->address, o->cluster ? ", producers to partition leaders of " : "",
	       o->cluster ? o->cluster : "", produce ? o->producers : 0, consume ? o->consumers : 0, o->streams,
	       o->partitions, o->message_size, o->per_batch, produce ? "durability " : "reading existing streams",
	       produce ? (o->durability ? o->durability : "default") : "", o->inflight);
	if (produce)
		printf("  %" PRIu64 " batches per producer (%.1f MB each), rate limit %s\n", batches,
		       (double)batches * o->per_batch * o->message_size / MB,
		       o->rate_limit > 0 ? "on" : "none");
	/* The admin connection would sit idle through the run (and be evicted as stale): reopen it after. */
	gclient_close(admin);
	admin = NULL;
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	int failed = run_actors(&b);
	getrusage(RUSAGE_SELF, &ru1);

	struct agg prod, cons;
	aggregate(&b, A_PRODUCER, &prod);
	aggregate(&b, A_CONSUMER, &cons);
	double t0 = prod.actors > 0 && (cons.actors == 0 || prod.start < cons.start) ? prod.start : cons.start;
	double wall = (prod.end > cons.end ? prod.end : cons.end) - t0;
	double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	double client_cpu = wall > 0 ? cpu / wall * 100 : 0;
	for (uint32_t i = 0; i < b.n_actors; i++)
		print_actor(&b.actors[i]);
	if (prod.actors > 0)
		print_agg("producers", &prod, false);
	if (cons.actors > 0)
		print_agg("consumers", &cons, e2e);
	printf("bench client CPU: %.0f %% (100 %% = one core)\n", client_cpu);
	if (b.server.ok)
		printf("galgod (pid %d): peak RSS %.1f MiB, CPU %.0f %% average, %.0f %% max per %d ms (%u samples)\n",
		       o->server_pid, (double)b.server.peak_rss_kb / 1024, b.server.avg_cpu, b.server.max_cpu, SAMPLE_MS,
		       b.server.samples);
	else if (o->server_pid > 0)
		printf("galgod (pid %d): could not be sampled\n", o->server_pid);
	if (o->json != NULL && write_json(&b, &prod, &cons, e2e, client_cpu) != 0)
		failed++;

	if (!o->keep && (rv = client_open(o, &admin)) != 0) {
		fprintf(stderr, "galgo-bench: cannot log in to delete the streams: %s\n", gclient_strerror(rv, e, sizeof(e)));
		failed++;
	} else if (!o->keep) {
		if (o->mode == M_BALANCED_GROUP) {
			char sname[64];
			stream_name(1, sname, sizeof(sname));
			struct wire_id s = gclient_id_name(sname), t = gclient_id_name(TOPIC_NAME),
				       g = gclient_id_name(GROUP_NAME);
			gclient_delete_group(admin, &s, &t, &g);
		}
		for (uint32_t i = 1; i <= o->streams; i++) {
			rv = drop_stream(admin, i);
			if (rv != 0)
				fprintf(stderr, "galgo-bench: cannot delete stream %u: %s\n", i, gclient_strerror(rv, e, sizeof(e)));
		}
	}
	gclient_close(admin);
	free(b.actors);
	return failed ? 1 : 0;
}
