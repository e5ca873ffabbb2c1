/*
 * metastore — the metadata log and its snapshots. Behaviour and the snapshot file format in metastore.h.
 */
#include "node/metastore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "node/log.h"
#include "node/metarec.h"
#include "partition/plog.h"
#include "partition/record.h"
#include "transport/wire.h"

#define TERM 1
#define REPLAY_CHUNK (1u << 20)

struct metastore {
	struct pio *pio;
	struct flusher *fl;
	char *dir;
	char *snap_path, *tmp_path;
	struct plog *log;
	struct meta *state;
	uint64_t snapshot_every;
	uint64_t since_snapshot;     /* commands appended since the last snapshot (or failed attempt) */
	uint64_t snap_index;
	bool failed;
	struct wire_buf buf;         /* encoding scratch */
};

/* One append in flight. */
struct pending {
	struct plog_append_req req;
	struct metastore *ms;
	void (*cb)(void *arg, int status);
	void *arg;
};

void metastore_opts_default(struct metastore_opts *o)
{
	o->segment_size = METASTORE_SEGMENT_SIZE;
	o->snapshot_every = METASTORE_SNAPSHOT_EVERY;
	o->log = glog_sink;
	o->log_ud = (void *)"metastore";
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static uint64_t snapshot_checksum(const uint8_t *hdr, const uint8_t *body, size_t len)
{
	return XXH3_64bits_withSeed(body, len, XXH3_64bits(hdr, 24));
}

/* ---- Loading a snapshot ---- */

/* Reads a whole file. -ENOENT if it does not exist. */
static int read_file(struct pio *pio, const char *path, uint8_t **out, size_t *len)
{
	struct pio_file *f;
	int rv = pio_open(pio, path, PIO_RDONLY, &f);
	if (rv != 0)
		return rv;
	uint64_t size;
	rv = pio_size(pio, f, &size);
	uint8_t *p = NULL;
	if (rv == 0 && size > SIZE_MAX - 1)
		rv = -EFBIG;
	if (rv == 0 && (p = malloc(size ? size : 1)) == NULL)
		rv = -ENOMEM;
	for (uint64_t at = 0; rv == 0 && at < size;) {
		ssize_t n = pio_pread(pio, f, p + at, size - at, at);
		if (n < 0)
			rv = (int)n;
		else if (n == 0)
			size = at; /* The file shrank while we read it: take what is there. */
		else
			at += (uint64_t)n;
	}
	pio_close(pio, f);
	if (rv != 0) {
		free(p);
		return rv;
	}
	*out = p;
	*len = size;
	return 0;
}

/*
 * Checks a snapshot file's header and checksum. Returns 0 (with *index and the body's place), or
 * -EBADMSG if it is not a valid snapshot.
 */
static int snapshot_check(const uint8_t *p, size_t len, uint64_t *index, const uint8_t **body, size_t *body_len)
{
	struct wire_rd r;
	wire_rd_init(&r, p, len);
	uint32_t magic = wire_get_u32(&r);
	uint32_t version = wire_get_u32(&r);
	uint64_t idx = wire_get_u64(&r);
	uint64_t blen = wire_get_u64(&r);
	uint64_t check = wire_get_u64(&r);
	if (wire_rd_error(&r) || magic != METASTORE_SNAPSHOT_MAGIC || version != METASTORE_SNAPSHOT_VERSION ||
	    blen != wire_rd_left(&r))
		return -EBADMSG;
	const uint8_t *b = p + METASTORE_SNAPSHOT_HEADER;
	if (snapshot_checksum(p, b, blen) != check)
		return -EBADMSG;
	*index = idx;
	*body = b;
	*body_len = blen;
	return 0;
}

/*
 * Loads the newest valid snapshot of the two candidates into a new state. With none, the state is new
 * and *index 0.
 */
static int load_snapshot(struct metastore *ms, struct meta **state, uint64_t *index)
{
	const char *paths[2] = {ms->snap_path, ms->tmp_path};
	uint8_t *files[2] = {NULL, NULL};
	const uint8_t *bodies[2] = {NULL, NULL};
	size_t body_lens[2] = {0, 0};
	uint64_t idx[2] = {0, 0};
	int best = -1, rv = 0;
	for (int i = 0; i < 2; i++) {
		size_t len;
		rv = read_file(ms->pio, paths[i], &files[i], &len);
		if (rv == -ENOENT) {
			rv = 0;
			continue;
		}
		if (rv != 0)
			goto out;
		if (snapshot_check(files[i], len, &idx[i], &bodies[i], &body_lens[i]) != 0) {
			glog_warn("metastore", "ignoring %s: not a valid snapshot", paths[i]);
			continue;
		}
		if (best < 0 || idx[i] > idx[best])
			best = i;
	}
	if (best < 0) {
		*state = meta_new();
		*index = 0;
		rv = *state == NULL ? -ENOMEM : 0;
		goto out;
	}
	rv = metarec_snapshot_decode(bodies[best], body_lens[best], state);
	*index = idx[best];
	if (rv == -EBADMSG)
		glog_error("metastore", "%s passes its checksum but does not decode", paths[best]);
out:
	free(files[0]);
	free(files[1]);
	return rv;
}

/* ---- Appending ---- */

static void append_done(struct plog_append_req *req, int status)
{
	struct pending *p = req->data;
	if (status != 0)
		p->ms->failed = true;
	if (p->cb != NULL)
		p->cb(p->arg, status);
	free(p);
}

/* Appends one record of the given type as the next index. */
static int append_record(struct metastore *ms, uint8_t type, const void *payload, size_t len,
			 void (*cb)(void *arg, int status), void *arg)
{
	if (len > UINT32_MAX)
		return -EINVAL;
	struct pending *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->req.data = p;
	p->ms = ms;
	p->cb = cb;
	p->arg = arg;
	struct plog_entry e = {type, plog_last_index(ms->log) + 1, TERM, payload, (uint32_t)len};
	int rv = plog_append(ms->log, &p->req, &e, append_done);
	if (rv != 0)
		free(p);
	return rv;
}

int metastore_append(struct metastore *ms, const struct meta_cmd *c, void (*cb)(void *arg, int status),
		     void *arg)
{
	if (ms->failed)
		return -EIO;
	wire_buf_reset(&ms->buf);
	int rv = metarec_encode(c, &ms->buf);
	if (rv == 0)
		rv = append_record(ms, RECORD_COMMAND, ms->buf.p, ms->buf.len, cb, arg);
	if (rv != 0) {
		ms->failed = true;
		return rv;
	}
	if (ms->snapshot_every != 0 && ++ms->since_snapshot >= ms->snapshot_every) {
		/*
		 * Synchronous, on the loop: encoding and writing the state stalls the loop for as long as that
		 * takes, once every snapshot_every commands. Moving the write to the thread pool (encode on the
		 * loop, write and sync off it) is the way to take it off the hot path when states grow large.
		 */
		ms->since_snapshot = 0;
		int s = metastore_snapshot(ms);
		if (s != 0)
			glog_warn("metastore", "snapshot failed (%s); the log keeps every command", strerror(-s));
	}
	return 0;
}

/* ---- Snapshots ---- */

int metastore_snapshot(struct metastore *ms)
{
	if (ms->failed)
		return -EIO;
	uint64_t index = plog_last_index(ms->log);
	struct wire_buf body, hdr;
	wire_buf_init(&body);
	wire_buf_init(&hdr);
	int rv = metarec_snapshot_encode(ms->state, &body);
	wire_put_u32(&hdr, METASTORE_SNAPSHOT_MAGIC);
	wire_put_u32(&hdr, METASTORE_SNAPSHOT_VERSION);
	wire_put_u64(&hdr, index);
	wire_put_u64(&hdr, body.len);
	if (rv == 0)
		rv = wire_buf_error(&hdr);
	if (rv == 0) {
		wire_put_u64(&hdr, snapshot_checksum(hdr.p, body.p, body.len));
		rv = wire_buf_error(&hdr);
	}
	struct pio_file *f = NULL;
	if (rv == 0)
		rv = pio_open(ms->pio, ms->tmp_path, PIO_CREATE | PIO_RDWR, &f);
	if (rv == 0)
		rv = pio_truncate(ms->pio, f, 0);
	if (rv == 0) {
		struct iovec iov[2] = {{hdr.p, hdr.len}, {body.p, body.len}};
		rv = pio_pwritev(ms->pio, f, iov, body.len > 0 ? 2 : 1, 0);
	}
	if (rv == 0)
		rv = pio_datasync(ms->pio, f);
	if (f != NULL)
		pio_close(ms->pio, f);
	if (rv == 0)
		rv = pio_rename(ms->pio, ms->tmp_path, ms->snap_path);
	if (rv == 0)
		rv = pio_syncdir(ms->pio, ms->dir);
	wire_buf_free(&body);
	wire_buf_free(&hdr);
	if (rv != 0)
		return rv;
	ms->snap_index = index;
	/* Whole segments at or below the snapshot's index go (max_bytes 1: any size is too big). */
	int del = plog_retain(ms->log, 0, 0, 1, index);
	return del < 0 ? del : 0;
}

/* ---- Opening ---- */

/* Replays every command record from index `from` to the log's end. */
static int replay(struct metastore *ms, uint64_t from)
{
	uint64_t last = plog_last_index(ms->log);
	struct meta_perms scratch = {0};
	int rv = 0;
	while (rv == 0 && from <= last) {
		struct plog_slice s;
		uint32_t n = 0;
		rv = plog_read_records(ms->log, from, last, REPLAY_CHUNK, &s, &n);
		uint8_t *buf = NULL;
		if (rv == 0 && (n == 0 || (buf = malloc(s.bytes ? s.bytes : 1)) == NULL))
			rv = n == 0 ? -EBADMSG : -ENOMEM;
		if (rv == 0)
			rv = plog_slice_copy(&s, buf);
		size_t at = 0;
		for (uint32_t i = 0; rv == 0 && i < n; i++) {
			struct record_env env;
			if (s.bytes - at < RECORD_ENVELOPE_SIZE || record_env_decode(buf + at, &env) != 0 ||
			    env.index != from || env.length > s.bytes - at - RECORD_ENVELOPE_SIZE) {
				rv = -EBADMSG;
				break;
			}
			const uint8_t *payload = buf + at + RECORD_ENVELOPE_SIZE;
			if (record_payload_verify(&env, payload, env.length) != 0) {
				rv = -EBADMSG;
				break;
			}
			if (env.type == RECORD_COMMAND) {
				struct meta_cmd c;
				rv = metarec_decode(payload, env.length, &c, &scratch);
				if (rv == 0) {
					int a = meta_apply(ms->state, &c, NULL);
					meta_perms_free(&scratch);
					if (a != META_OK)
						rv = a < 0 ? a : -EBADMSG;
				}
				if (rv != 0)
					glog_error("metastore", "log record %llu does not replay (%d)",
						   (unsigned long long)from, rv);
			}
			at += RECORD_ENVELOPE_SIZE + env.length;
			from++;
		}
		free(buf);
		plog_slice_release(&s);
	}
	return rv;
}

int metastore_open(struct pio *pio, struct flusher *fl, const char *dir, struct meta **state,
		   struct metastore **out)
{
	return metastore_open_opts(pio, fl, dir, NULL, state, out);
}

static void store_free(struct metastore *ms)
{
	wire_buf_free(&ms->buf);
	free(ms->dir);
	free(ms->snap_path);
	free(ms->tmp_path);
	free(ms);
}

int metastore_open_opts(struct pio *pio, struct flusher *fl, const char *dir, const struct metastore_opts *o,
			struct meta **state, struct metastore **out)
{
	*state = NULL;
	*out = NULL;
	struct metastore_opts def;
	if (o == NULL) {
		metastore_opts_default(&def);
		o = &def;
	}
	struct metastore *ms = calloc(1, sizeof(*ms));
	if (ms == NULL)
		return -ENOMEM;
	ms->pio = pio;
	ms->fl = fl;
	ms->snapshot_every = o->snapshot_every;
	wire_buf_init(&ms->buf);
	ms->dir = strdup(dir);
	ms->snap_path = path_join(dir, "snapshot");
	ms->tmp_path = path_join(dir, "snapshot.tmp");
	char *log_dir = path_join(dir, "log");
	int rv = ms->dir && ms->snap_path && ms->tmp_path && log_dir ? 0 : -ENOMEM;
	if (rv == 0)
		rv = pio_mkdir(pio, dir);
	if (rv == 0)
		rv = load_snapshot(ms, &ms->state, &ms->snap_index);
	if (rv == 0) {
		struct plog_opts po;
		plog_opts_default(&po);
		po.segment_size = o->segment_size ? o->segment_size : METASTORE_SEGMENT_SIZE;
		po.durability = PLOG_DURABILITY_FSYNC;
		po.first_index = ms->snap_index + 1;
		po.log = o->log;
		po.log_ud = o->log_ud;
		rv = plog_open(pio, fl, log_dir, &po, NULL, &ms->log);
	}
	free(log_dir);
	if (rv == 0 && plog_first_index(ms->log) > ms->snap_index + 1) {
		glog_error("metastore", "the log starts at %llu but the snapshot ends at %llu: commands are missing",
			   (unsigned long long)plog_first_index(ms->log), (unsigned long long)ms->snap_index);
		rv = -EBADMSG;
	}
	if (rv == 0)
		rv = replay(ms, ms->snap_index + 1);
	/* A log that lost a tail the snapshot holds continues after the snapshot. */
	while (rv == 0 && plog_last_index(ms->log) < ms->snap_index)
		rv = append_record(ms, RECORD_BARRIER, NULL, 0, NULL, NULL);
	if (rv != 0) {
		if (ms->log != NULL)
			plog_close(ms->log);
		meta_free(ms->state);
		store_free(ms);
		return rv;
	}
	uint64_t last = plog_last_index(ms->log);
	ms->since_snapshot = last > ms->snap_index ? last - ms->snap_index : 0;
	*state = ms->state;
	*out = ms;
	return 0;
}

int metastore_close(struct metastore *ms)
{
	int rv = plog_close(ms->log);
	if (rv == 0 && ms->failed)
		rv = -EIO;
	store_free(ms);
	return rv;
}

void metastore_set_snapshot_every(struct metastore *ms, uint64_t n)
{
	ms->snapshot_every = n;
}

uint64_t metastore_last_index(const struct metastore *ms)
{
	return plog_last_index(ms->log);
}

uint64_t metastore_snapshot_index(const struct metastore *ms)
{
	return ms->snap_index;
}

uint64_t metastore_first_index(const struct metastore *ms)
{
	return plog_first_index(ms->log);
}

bool metastore_failed(const struct metastore *ms)
{
	return ms->failed;
}
