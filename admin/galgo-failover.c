/*
 * galgo-failover — how long a Galgo cluster makes a producer wait when a partition leader dies.
 *
 * It creates stream "galgo-failover" with one single-partition topic (--durability), produces to it
 * continuously through client/gcluster.h with one batch always in flight, and after --before-ms kills
 * the partition leader's process with SIGKILL (its pid is taken from --pids ID:PID,...; the leader from
 * the partition map). It reports the milliseconds from the kill to the first acknowledged send whose
 * reply came from the successor (the map then names a leader other than the killed node), keeps
 * producing for --after-ms to show the rate recovered, and deletes the stream unless --keep. The killed
 * node is not restarted: run it against a fresh cluster each time.
 *
 * usage: galgo-failover --cluster H:P,H:P,H:P --pids 1:PID,2:PID,3:PID [--durability fsync|none]
 *                       [--message-size 1000] [--messages-per-batch 100] [--before-ms 2000]
 *                       [--after-ms 1000] [--username U --password P] [--keep]
 * Exit status 0 on a measurement, 1 when the successor never acknowledged, 2 on bad usage or setup.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/gclient.h"
#include "client/gcluster.h"

#define STREAM "galgo-failover"
#define TOPIC "topic-1"
#define MAX_NODES 16

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void pause_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: galgo-failover --cluster H:P,... --pids ID:PID,... [--durability fsync|none]\n"
		   "       [--message-size B] [--messages-per-batch N] [--before-ms MS] [--after-ms MS]\n"
		   "       [--username U] [--password P] [--keep]\n");
}

/* Metadata writes are refused with 58 while the metadata group elects: issue them again (30 s at most). */
static int retry58(struct gcluster *gc, int which)
{
	struct wire_id s = gclient_id_name(STREAM);
	double end = now_ms() + 30000;
	int rv;
	do {
		struct gclient *c = gcluster_any(gc);
		if (c == NULL)
			return -EHOSTUNREACH;
		if (which == 0) {
			rv = gclient_delete_stream(c, &s);
			if (rv == 1009)
				rv = 0;
		} else if (which == 1) {
			rv = gclient_create_stream(c, STREAM, NULL);
		} else {
			rv = gclient_create_topic(c, &s, TOPIC, 1, which == 2 ? "fsync" : "none", NULL);
		}
		if (rv == 58)
			pause_ms(50);
	} while (rv == 58 && now_ms() < end);
	return rv;
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"cluster", required_argument, NULL, 'c'},    {"pids", required_argument, NULL, 'k'},
		{"durability", required_argument, NULL, 'd'}, {"message-size", required_argument, NULL, 'm'},
		{"messages-per-batch", required_argument, NULL, 'b'}, {"before-ms", required_argument, NULL, 'B'},
		{"after-ms", required_argument, NULL, 'A'},   {"username", required_argument, NULL, 'u'},
		{"password", required_argument, NULL, 'p'},   {"keep", no_argument, NULL, 'K'},
		{"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0},
	};
	const char *cluster = NULL, *pids = NULL, *durability = "fsync", *user = "iggy", *pass = "iggy";
	long msize = 1000, per_batch = 100, before = 2000, after = 1000;
	int keep = 0, ch;
	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (ch) {
		case 'c': cluster = optarg; break;
		case 'k': pids = optarg; break;
		case 'd': durability = optarg; break;
		case 'm': msize = strtol(optarg, NULL, 10); break;
		case 'b': per_batch = strtol(optarg, NULL, 10); break;
		case 'B': before = strtol(optarg, NULL, 10); break;
		case 'A': after = strtol(optarg, NULL, 10); break;
		case 'u': user = optarg; break;
		case 'p': pass = optarg; break;
		case 'K': keep = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (cluster == NULL || pids == NULL || msize < 1 || per_batch < 1 || before < 0 || after < 0 ||
	    (strcmp(durability, "fsync") != 0 && strcmp(durability, "none") != 0)) {
		usage(stderr);
		return 2;
	}
	uint32_t node_ids[MAX_NODES];
	pid_t node_pids[MAX_NODES];
	int n_nodes = 0;
	for (const char *p = pids; *p != '\0' && n_nodes < MAX_NODES;) {
		unsigned id;
		int pid, used;
		if (sscanf(p, "%u:%d%n", &id, &pid, &used) != 2 || pid <= 0) {
			fprintf(stderr, "galgo-failover: bad --pids '%s'\n", pids);
			return 2;
		}
		node_ids[n_nodes] = id;
		node_pids[n_nodes++] = pid;
		p += used;
		if (*p == ',')
			p++;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	struct gcluster *gc;
	struct gcluster_opts o = {.username = user, .password = pass, .leader_wait_ms = 60000,
				  .conn = {.io_timeout_ms = 30000}};
	char e[128];
	int rv = gcluster_open(cluster, &o, &gc);
	if (rv == 0)
		rv = retry58(gc, 0);
	if (rv == 0)
		rv = retry58(gc, 1);
	if (rv == 0)
		rv = retry58(gc, strcmp(durability, "fsync") == 0 ? 2 : 3);
	if (rv != 0) {
		fprintf(stderr, "galgo-failover: setup: %s\n", gclient_strerror(rv, e, sizeof(e)));
		gcluster_close(gc);
		return 2;
	}
	uint8_t *payload = malloc((size_t)msize);
	const void **ptrs = calloc((size_t)per_batch, sizeof(*ptrs));
	uint32_t *lens = calloc((size_t)per_batch, sizeof(*lens));
	if (payload == NULL || ptrs == NULL || lens == NULL)
		return 2;
	memset(payload, 'f', (size_t)msize);
	for (long i = 0; i < per_batch; i++) {
		ptrs[i] = payload;
		lens[i] = (uint32_t)msize;
	}
	struct wire_id s = gclient_id_name(STREAM), t = gclient_id_name(TOPIC);

	/* Warm up: the first send resolves the names and opens the leader's connection. */
	struct gclient_sent sent;
	rv = gcluster_send(gc, &s, &t, 0, (uint32_t)per_batch, ptrs, lens, &sent);
	const struct gcluster_part *part = NULL;
	if (rv == 0) {
		for (size_t i = 0; i < gcluster_partition_count(gc); i++) {
			const struct gcluster_part *pp = gcluster_partition(gc, i);
			if (pp->stream_id == sent.stream_id && pp->topic_id == sent.topic_id && pp->partition_id == 0)
				part = pp;
		}
	}
	if (rv != 0 || part == NULL) {
		fprintf(stderr, "galgo-failover: first send: %s %s\n", gclient_strerror(rv, e, sizeof(e)),
			gcluster_last_error(gc));
		return 2;
	}
	uint32_t sid = sent.stream_id, tid = sent.topic_id;
	uint32_t victim = part->leader;
	uint64_t epoch = part->epoch;
	pid_t victim_pid = 0;
	for (int i = 0; i < n_nodes; i++)
		if (node_ids[i] == victim)
			victim_pid = node_pids[i];
	if (victim_pid == 0) {
		fprintf(stderr, "galgo-failover: no pid given for the leader, node %u\n", victim);
		return 2;
	}
	printf("galgo-failover: partition leader node %u (pid %d, epoch %" PRIu64 "), durability %s, %ld x %ld B per batch\n",
	       victim, (int)victim_pid, epoch, durability, per_batch, msize);

	/* Produce with one batch in flight; kill the leader while a batch is in flight. */
	double t0 = now_ms(), t_kill = 0, t_ack = 0, t_end = 0;
	uint64_t before_acks = 0, after_acks = 0, bytes_after = 0;
	double max_gap_before = 0, last_ack = t0;
	int status = 1;
	rv = gcluster_send_async(gc, &s, &t, 0, (uint32_t)per_batch, ptrs, lens);
	while (rv == 0) {
		if (t_kill == 0 && now_ms() - t0 >= (double)before) {
			t_kill = now_ms();
			if (kill(victim_pid, SIGKILL) != 0) {
				fprintf(stderr, "galgo-failover: kill %d: %s\n", (int)victim_pid, strerror(errno));
				break;
			}
		}
		rv = gcluster_wait(gc, &sent);
		double tn = now_ms();
		if (rv != 0)
			break;
		const struct gcluster_part *pp = gcluster_lookup(gc, sid, tid, 0);
		if (t_kill == 0) {
			before_acks++;
			if (tn - last_ack > max_gap_before)
				max_gap_before = tn - last_ack;
		} else if (t_ack == 0 && pp != NULL && pp->leader != victim) {
			t_ack = tn;
			printf("first acknowledged send on the successor (node %u, epoch %" PRIu64 ") %.1f ms after kill -9\n",
			       pp->leader, pp->epoch, t_ack - t_kill);
			status = 0;
		} else if (t_ack > 0) {
			after_acks++;
			bytes_after += (uint64_t)per_batch * (uint64_t)msize;
		}
		last_ack = tn;
		if (t_ack > 0 && tn - t_ack >= (double)after) {
			t_end = tn;
			break;
		}
		rv = gcluster_send_async(gc, &s, &t, 0, (uint32_t)per_batch, ptrs, lens);
	}
	if (rv != 0)
		fprintf(stderr, "galgo-failover: send: %s (%s)\n", gclient_strerror(rv, e, sizeof(e)), gcluster_last_error(gc));
	struct gcluster_stats st;
	gcluster_get_stats(gc, &st);
	printf("before the kill: %" PRIu64 " batches in %.0f ms (longest gap %.1f ms); after the successor's first ack: "
	       "%.1f MB/s (%" PRIu64 " batches); redirect hops %" PRIu64 ", map reads %" PRIu64 ", connections %" PRIu64 "\n",
	       before_acks, t_kill - t0, max_gap_before,
	       t_end > t_ack ? (double)bytes_after / 1e6 / ((t_end - t_ack) / 1e3) : 0, after_acks, st.hops, st.refreshes, st.connects);
	if (status == 0)
		printf("failover_ms %.1f\n", t_ack - t_kill);
	while (gcluster_inflight(gc) > 0)
		gcluster_wait(gc, NULL);
	if (!keep && retry58(gc, 0) != 0)
		fprintf(stderr, "galgo-failover: could not delete the stream\n");
	gcluster_close(gc);
	free(payload);
	free(ptrs);
	free(lens);
	return status;
}
