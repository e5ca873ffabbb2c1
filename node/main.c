/*
 * galgod — the Galgo server process.
 *
 * Startup: read the configuration (exit 2 on a bad one, 0 after --help), lock the data directory (exit 1
 * if that fails), open every partition found under <data_dir>/partitions/<stream>/<topic>/<partition>/
 * and log "galgod ready". A partition that cannot be opened is logged and skipped. SIGINT and SIGTERM
 * stop the process cleanly: every partition log is closed (which flushes it), the loop is torn down,
 * the lock released, and the exit status is 0. SIGHUP is logged and otherwise ignored.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "node/config.h"
#include "node/datadir.h"
#include "node/log.h"
#include "partition/flusher.h"
#include "partition/pio.h"
#include "partition/plog.h"

#define TAG "galgod"

/* One partition found on disk. */
struct galgod_partition {
	uint32_t stream_id, topic_id, partition_id;
	char tag[64];               /* "partition S/T/P": plog's log tag, so it must live as long as the log */
	struct plog *log;
	struct galgod_partition *next;
};

struct galgod {
	struct galgo_config cfg;
	struct datadir *dd;
	uv_loop_t loop;
	bool loop_ready;
	struct flusher *fl;
	struct pio *pio;
	struct galgod_partition *parts, **parts_tail;
	size_t n_open, n_failed;
	uv_signal_t sigint, sigterm, sighup;
	bool signals_ready;
	int stop_signal;            /* the signal that started the shutdown, 0 before */
};

/* True if name is a decimal number that fits in 32 bits; stores it in *out. */
static bool galgod_parse_id(const char *name, uint32_t *out)
{
	uint64_t v = 0;
	if (name[0] == '\0')
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

static int galgod_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/*
 * Lists the subdirectories of dir whose names are decimal ids, in increasing order. *ids is malloc'd.
 * Returns 0 or a negative errno (-ENOENT if dir does not exist).
 */
static int galgod_list_ids(const char *dir, uint32_t **ids, size_t *n)
{
	DIR *d = opendir(dir);
	size_t cap = 0;
	*ids = NULL;
	*n = 0;
	if (d == NULL)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		uint32_t id;
		struct stat st;
		char path[PATH_MAX];
		if (!galgod_parse_id(e->d_name, &id))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
			continue;
		if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (*n == cap) {
			size_t ncap = cap != 0 ? cap * 2 : 16;
			uint32_t *grown = realloc(*ids, ncap * sizeof(**ids));
			if (grown == NULL) {
				closedir(d);
				free(*ids);
				*ids = NULL;
				*n = 0;
				return -ENOMEM;
			}
			*ids = grown;
			cap = ncap;
		}
		(*ids)[(*n)++] = id;
	}
	closedir(d);
	if (*n > 0)
		qsort(*ids, *n, sizeof(**ids), galgod_cmp_u32);
	return 0;
}

/* The plog options that the [storage] settings describe. */
static void galgod_plog_opts(const struct galgo_config *cfg, struct plog_opts *o)
{
	plog_opts_default(o);
	o->segment_size = cfg->storage.segment_size;
	o->index_interval = cfg->storage.index_interval;
	switch (cfg->storage.durability) {
	case CONFIG_DURABILITY_FSYNC:
		o->durability = PLOG_DURABILITY_FSYNC;
		break;
	case CONFIG_DURABILITY_INTERVAL:
		o->durability = PLOG_DURABILITY_INTERVAL;
		break;
	case CONFIG_DURABILITY_NONE:
		o->durability = PLOG_DURABILITY_NONE;
		break;
	}
	o->interval_ms = cfg->storage.interval_ms;
	o->log = glog_sink;
}

/* Opens one partition; a failure is logged and the partition skipped. Returns -ENOMEM only. */
static int galgod_open_partition(struct galgod *g, const char *dir, uint32_t s, uint32_t t, uint32_t p)
{
	struct galgod_partition *part = calloc(1, sizeof(*part));
	struct plog_report rep;
	struct plog_opts opts;

	if (part == NULL)
		return -ENOMEM;
	part->stream_id = s;
	part->topic_id = t;
	part->partition_id = p;
	snprintf(part->tag, sizeof(part->tag), "partition %" PRIu32 "/%" PRIu32 "/%" PRIu32, s, t, p);
	galgod_plog_opts(&g->cfg, &opts);
	opts.log_ud = part->tag;
	memset(&rep, 0, sizeof(rep));

	int rc = plog_open(g->pio, g->fl, dir, &opts, &rep, &part->log);
	if (rc < 0) {
		if (rc == -EBADMSG)
			glog_error(part->tag,
				   "cannot open %s: %s: damage in segment %s at index %" PRIu64 ", position %" PRIu64
				   " (segments %" PRIu32 ", records verified %" PRIu64 "); partition skipped",
				   dir, strerror(-rc), rep.damaged_segment[0] != '\0' ? rep.damaged_segment : "?",
				   rep.damaged_index, rep.damaged_pos, rep.segments, rep.records_verified);
		else
			glog_error(part->tag, "cannot open %s: %s (segments %" PRIu32 "); partition skipped", dir,
				   strerror(-rc), rep.segments);
		free(part);
		g->n_failed++;
		return 0;
	}
	enum glog_level level = rep.indexes_rebuilt != 0 || rep.torn_bytes_cut != 0 ? GLOG_INFO : GLOG_DEBUG;
	glog_log(level, part->tag,
		 "opened: %" PRIu32 " segments, offsets %" PRIu64 "..%" PRIu64 ", %" PRIu32
		 " indexes rebuilt, %" PRIu64 " torn bytes cut, %" PRIu64 " records verified",
		 rep.segments, plog_first_offset(part->log), plog_next_offset(part->log), rep.indexes_rebuilt,
		 rep.torn_bytes_cut, rep.records_verified);
	*g->parts_tail = part;
	g->parts_tail = &part->next;
	g->n_open++;
	return 0;
}

/* Opens every partition under <data_dir>/partitions. Returns 0 or -ENOMEM. */
static int galgod_open_partitions(struct galgod *g)
{
	char root[PATH_MAX], sdir[PATH_MAX], tdir[PATH_MAX], pdir[PATH_MAX];
	uint32_t *streams = NULL, *topics = NULL, *parts = NULL;
	size_t n_streams, n_topics, n_parts;
	int rc;

	if (snprintf(root, sizeof(root), "%s/partitions", g->cfg.node.data_dir) >= (int)sizeof(root))
		return -ENAMETOOLONG;
	rc = galgod_list_ids(root, &streams, &n_streams);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		glog_error(TAG, "cannot list %s: %s", root, strerror(-rc));
		return rc == -ENOMEM ? rc : 0;
	}
	for (size_t i = 0; i < n_streams && rc == 0; i++) {
		if (snprintf(sdir, sizeof(sdir), "%s/%" PRIu32, root, streams[i]) >= (int)sizeof(sdir))
			continue;
		rc = galgod_list_ids(sdir, &topics, &n_topics);
		if (rc < 0) {
			glog_error(TAG, "cannot list %s: %s", sdir, strerror(-rc));
			rc = rc == -ENOMEM ? rc : 0;
			continue;
		}
		for (size_t j = 0; j < n_topics && rc == 0; j++) {
			if (snprintf(tdir, sizeof(tdir), "%s/%" PRIu32, sdir, topics[j]) >= (int)sizeof(tdir))
				continue;
			rc = galgod_list_ids(tdir, &parts, &n_parts);
			if (rc < 0) {
				glog_error(TAG, "cannot list %s: %s", tdir, strerror(-rc));
				rc = rc == -ENOMEM ? rc : 0;
				continue;
			}
			for (size_t k = 0; k < n_parts && rc == 0; k++) {
				if (snprintf(pdir, sizeof(pdir), "%s/%" PRIu32, tdir, parts[k]) >= (int)sizeof(pdir))
					continue;
				rc = galgod_open_partition(g, pdir, streams[i], topics[j], parts[k]);
			}
			free(parts);
			parts = NULL;
		}
		free(topics);
		topics = NULL;
	}
	free(streams);
	return rc;
}

/* SIGINT and SIGTERM start the shutdown (once); SIGHUP is ignored for now. */
static void galgod_on_signal(uv_signal_t *h, int signum)
{
	struct galgod *g = h->data;
	if (signum == SIGHUP) {
		glog_info(TAG, "received SIGHUP; ignored");
		return;
	}
	if (g->stop_signal != 0) {
		glog_info(TAG, "received %s; already shutting down", strsignal(signum));
		return;
	}
	g->stop_signal = signum;
	glog_info(TAG, "received %s; shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
	uv_stop(&g->loop);
}

static int galgod_start_signals(struct galgod *g)
{
	uv_signal_t *hs[] = {&g->sigint, &g->sigterm, &g->sighup};
	int sigs[] = {SIGINT, SIGTERM, SIGHUP};
	for (int i = 0; i < 3; i++) {
		int rc = uv_signal_init(&g->loop, hs[i]);
		if (rc == 0) {
			hs[i]->data = g;
			rc = uv_signal_start(hs[i], galgod_on_signal, sigs[i]);
		}
		if (rc < 0) {
			glog_error(TAG, "cannot handle signal %d: %s", sigs[i], uv_strerror(rc));
			return rc;
		}
	}
	g->signals_ready = true;
	return 0;
}

static void galgod_close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Closes every partition, the flusher, the loop and the lock: whatever startup got to open. */
static void galgod_shutdown(struct galgod *g)
{
	size_t closed = 0;
	while (g->parts != NULL) {
		struct galgod_partition *p = g->parts;
		g->parts = p->next;
		int rc = plog_close(p->log);
		if (rc < 0)
			glog_error(p->tag, "final flush failed: %s", strerror(-rc));
		free(p);
		closed++;
	}
	g->parts_tail = &g->parts;
	if (closed > 0)
		glog_info(TAG, "closed %zu partitions", closed);
	if (g->fl != NULL) {
		flusher_close(g->fl);
		g->fl = NULL;
	}
	if (g->pio != NULL) {
		pio_destroy(g->pio);
		g->pio = NULL;
	}
	if (g->loop_ready) {
		uv_walk(&g->loop, galgod_close_walk, NULL);
		uv_run(&g->loop, UV_RUN_DEFAULT);
		int rc = uv_loop_close(&g->loop);
		if (rc < 0)
			glog_warn(TAG, "event loop did not close cleanly: %s", uv_strerror(rc));
		g->loop_ready = false;
	}
	if (g->dd != NULL) {
		datadir_close(g->dd);
		g->dd = NULL;
	}
}

/* Logs "galgod ready" with the configured addresses. */
static void galgod_log_ready(const struct galgod *g)
{
	const struct galgo_config *c = &g->cfg;
	glog_info(TAG, "galgod ready: node %" PRIu32 ", data dir %s, tcp %s, quic %s, http %s", c->node.id,
		  c->node.data_dir, c->tcp.enabled ? c->tcp.address : "disabled",
		  c->quic.enabled ? c->quic.address : "disabled", c->http.enabled ? c->http.address : "disabled");
}

int main(int argc, char **argv)
{
	static struct galgod g;
	char err[512], dump[2048];
	enum glog_level level;
	int rc;

	g.parts_tail = &g.parts;
	rc = config_load(&g.cfg, argc, argv, NULL, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "galgod: %s\n(see galgod --help)\n", err);
		config_free(&g.cfg);
		return 2;
	}
	if (g.cfg.help) {
		config_help(stdout, "galgod");
		config_free(&g.cfg);
		return 0;
	}
	if (glog_parse_level(g.cfg.log.level, &level) == 0)
		glog_set_level(level);
	signal(SIGPIPE, SIG_IGN);

	config_dump(&g.cfg, dump, sizeof(dump));
	glog_info(TAG, "starting (pid %ld), config file %s", (long)getpid(),
		  g.cfg.config_file != NULL ? g.cfg.config_file : "(none)");
	glog_info(TAG, "config: %s", dump);

	rc = datadir_open(g.cfg.node.data_dir, &g.dd, err, sizeof(err));
	if (rc < 0) {
		glog_error(TAG, "%s", err);
		config_free(&g.cfg);
		return 1;
	}

	rc = uv_loop_init(&g.loop);
	if (rc < 0) {
		glog_error(TAG, "cannot create the event loop: %s", uv_strerror(rc));
		goto fail;
	}
	g.loop_ready = true;
	rc = flusher_new(&g.loop, false, &g.fl);
	if (rc < 0) {
		glog_error(TAG, "cannot create the flusher: %s", strerror(-rc));
		goto fail;
	}
	g.pio = pio_real_new();
	if (g.pio == NULL) {
		glog_error(TAG, "cannot create the file I/O backend");
		goto fail;
	}

	rc = galgod_open_partitions(&g);
	if (rc < 0) {
		glog_error(TAG, "cannot open partitions: %s", strerror(-rc));
		goto fail;
	}
	uint64_t messages = 0;
	for (struct galgod_partition *p = g.parts; p != NULL; p = p->next)
		messages += plog_next_offset(p->log) - plog_first_offset(p->log);
	glog_info(TAG, "partitions opened: %zu (%zu failed), messages: %" PRIu64, g.n_open, g.n_failed, messages);

	if (galgod_start_signals(&g) < 0)
		goto fail;
	galgod_log_ready(&g);

	uv_run(&g.loop, UV_RUN_DEFAULT);

	if (g.stop_signal == 0)
		glog_warn(TAG, "event loop stopped unexpectedly; shutting down");
	galgod_shutdown(&g);
	glog_info(TAG, "galgod stopped");
	config_free(&g.cfg);
	return 0;

fail:
	galgod_shutdown(&g);
	config_free(&g.cfg);
	return 1;
}
