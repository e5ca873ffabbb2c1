/*
 * server — the request dispatcher of a galgod: sessions, authentication and permissions, the metadata
 * commands (replicated by the metadata Raft group and applied through node/meta once committed), and the
 * message plane (send, poll, consumer offsets) on the partition replicas, each a Raft group (node/cluster).
 *
 * It knows no transport: a transport creates a session per client connection (srv_session_open) with a
 * send function, hands it every decoded request frame (srv_session_frame) and closes it when the
 * connection ends. Replies leave through the send function in request order, even when some are
 * completed asynchronously (after a flush): each request takes a slot in its session's reply queue and
 * replies are released from the head.
 *
 * Threading: everything runs on the server's loop.
 */
#ifndef GALGO_SERVER_H
#define GALGO_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "node/config.h"
#include "partition/flusher.h"
#include "partition/pio.h"
#include "proto/frame.h"

struct srv;
struct srv_session;

/* A piece of a reply: memory (mem != NULL) or a file range (fd, off). */
struct srv_piece {
	const void *mem;
	int fd;
	uint64_t off;
	size_t len;
};

/* Transport kinds as GetClients reports them (Iggy's numbers: 3 is its legacy HTTP, 4 WebSocket). */
enum srv_transport { SRV_TCP = 1, SRV_QUIC = 2, SRV_HTTP = 3, SRV_WS = 4, SRV_TRANSPORT_LAST = SRV_WS };

/*
 * Sends a whole reply (pieces in order). Memory pieces may be referenced until done; file ranges must be
 * readable until done. done(arg, status) is called exactly once, also on failure.
 */
typedef int (*srv_send_fn)(void *ctx, const struct srv_piece *pieces, size_t n, void (*done)(void *arg, int status),
			   void *arg);

int srv_new(uv_loop_t *loop, const struct galgo_config *cfg, struct pio *pio, struct flusher *fl,
	    struct srv **out);

/*
 * Closes the node-to-node links. In a shutdown this comes after the drain (docs/ARCHITECTURE.md,
 * "Shutdown"): while the clients' admitted requests finish, forwarded ones still need their answers and
 * sends their replication.
 */
void srv_stop_network(struct srv *s);

/* Stops: fails pending work, closes every partition and the metadata store. */
void srv_free(struct srv *s);

/* Sessions. peer is "ip:port". client_id is ignored: the server gives each session an id unique in the
 * cluster (GetMe's client_id; see srv_session_open in server.c). */
struct srv_session *srv_session_open(struct srv *s, enum srv_transport kind, const char *peer, uint32_t client_id,
				     srv_send_fn send, void *ctx);
/* Hands over one request. The body may be modified in place during the call (stamping). */
void srv_session_frame(struct srv_session *ss, const struct frame_request *hdr, uint8_t *body, size_t len);
/* Replies the session still owes (requests whose reply has not been handed to the transport yet). */
size_t srv_session_owed(const struct srv_session *ss);
/* Replies owed by every open session: requests admitted (handed to srv_session_frame) and not answered
 * yet. A shutdown drains until this is 0. */
size_t srv_owed(const struct srv *s);
/* The connection is gone: the session leaves its consumer groups and is freed once nothing is pending. */
void srv_session_close(struct srv_session *ss);
/*
 * The connection missed its heartbeats: sends eviction 13 and returns true (the transport then closes
 * it). Returns false and sends nothing for a data session attached to a parent that is still logged in
 * (poll routing, see server.c): Iggy's SDK never pings a data connection, the parent's heartbeats stand
 * for both, so the transport keeps it and looks again after the next silence.
 */
bool srv_session_stale(struct srv_session *ss);
/*
 * Binds a session to a user authenticated by the transport itself (the HTTP API's access tokens), as a
 * successful login would. Returns 0, or -ENOENT when the user does not exist or is inactive.
 */
int srv_session_bind_user(struct srv_session *ss, uint32_t user_id);

/* Background work (retention): called by a timer in main. */
void srv_tick(struct srv *s);

/*
 * 0, or the error that stopped this node's replica of the metadata group (a write or flush of the
 * metadata log failed: a full disk, an I/O error). Such a node can neither change its metadata nor prove
 * it current, and its metadata state cannot be rebuilt in place: main stops the process (fail-stop, exit
 * status 1), and a supervisor restarts it from its disk once the disk takes writes again.
 */
int srv_fatal(const struct srv *s);

/* Statistics for logs and tests. */
uint32_t srv_partition_count(const struct srv *s);

/*
 * The metrics in the Prometheus text format (version 0.0.4): per partition (labels stream_id, stream,
 * topic_id, topic, partition) the gauges galgo_partition_messages, galgo_partition_bytes and
 * galgo_partition_current_offset; per transport (label transport: tcp, quic, http) the gauge
 * galgo_connections (open sessions), the counter galgo_requests_total (request frames) and the histogram
 * galgo_request_duration_seconds (arrival of a request to its reply leaving). *out is a NUL-terminated
 * malloc'd string of *len bytes (free it). Returns 0 or -ENOMEM.
 */
int srv_metrics_text(struct srv *s, char **out, size_t *len);

/*
 * Health for probes (HTTP GET /health/live and /health/ready). Live: the node's loop answers (always 200
 * when this is called). Ready (200, else 503): the node is not shutting down, its metadata group has a
 * known leader, it has applied every metadata entry it knows committed and replayed its log, the root
 * user exists (logins can succeed), and every partition replica it hosts has a known leader. *out is a
 * malloc'd JSON object of *len bytes naming each condition:
 *   {"live":true,"ready":B,"node_id":N,"metadata_leader":N,"metadata_commit":N,"metadata_applied":N,
 *    "partitions":N,"partitions_without_leader":N}
 * Returns the HTTP status (200 or 503), or -ENOMEM.
 */
int srv_health(struct srv *s, bool ready, char **out, size_t *len);

/*
 * Starts (on) or ends the drain of this node: while draining it takes no leadership and hands every one it
 * holds to another replica (node/server.c, drain_tick). Returns how many groups (partitions and the
 * metadata group) it still leads that another replica could take (one that is connected, not draining,
 * its clock agreeing): the drain is done at 0 (at once for a node without peers, or whose peers are all
 * down or draining).
 */
uint32_t srv_drain(struct srv *s, bool on);

#endif /* GALGO_SERVER_H */
