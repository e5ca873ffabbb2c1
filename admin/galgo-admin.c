/*
 * galgo-admin — cluster administration through Galgo's protocol extensions (docs/protocol-extensions.md),
 * over one TCP connection to any node (the node forwards to the metadata leader).
 *
 * usage: galgo-admin [--server H:P] [--username U] [--password P] COMMAND
 *   nodes                                   the roster (each node connected or UNREACHABLE from the
 *                                           asked node, and its metadata role) and the partition map
 *   add-node ID HOST RAFT [TCP [QUIC [HTTP]]]
 *                                           AddNode: start the new node with cluster.join=true first
 *   remove-node ID                          RemoveNode: its replicas move to other nodes
 *   drain [SECONDS]                         Drain the node asked (--server): it hands every leadership to
 *                                           other replicas and takes none; waits (default 60 s) until it
 *                                           leads nothing: exit status 0 then, 1 if time ran out
 *   undrain                                 ends the drain: the node may lead again (a restart ends it too)
 *   health [live|ready] [HOST:PORT]         GET /health/ready (default) or /health/live of a node's HTTP
 *                                           listener (default 127.0.0.1:3000; no login): prints the JSON,
 *                                           exit status 0 when it answers 200 (a probe for containers
 *                                           without a shell), 1 when it answers otherwise
 * Exit status 0 on success, 1 when the server refused (its error code is printed), 2 on bad usage or
 * when no connection could be made. Without --username and --password, GALGO_ADMIN_USERNAME and
 * GALGO_ADMIN_PASSWORD, else GALGO_ROOT_USERNAME and GALGO_ROOT_PASSWORD (as a node's own environment
 * holds them: a Kubernetes preStop hook runs `galgo-admin drain` with no shell), else iggy and iggy.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/gclient.h"
#include "proto/errors.h"
#include "proto/frame.h"
#include "proto/reply.h"
#include "proto/wire.h"

/*
 * Prints a refusal: the server's status code with its name (proto/errors) and what it means for these
 * commands, or the client's own negative errno when no answer came.
 */
static void print_refused(const char *what, const char *server, int rv)
{
	const char *name = rv > 0 ? proto_error_name((uint32_t)rv) : NULL;
	const char *hint = rv == PROTO_E_NODE_EXISTS	  ? " (the node is a member already)"
			   : rv == PROTO_E_NODE_NOT_FOUND  ? " (no such node)"
			   : rv == PROTO_E_NODE_LIMIT	  ? " (the roster is full, or the last node cannot go)"
			   : rv == PROTO_E_NO_LIVE_MAJORITY ? " (a node is down: the nodes left would have no live majority)"
			   : rv == PROTO_E_UNAUTHORIZED	  ? " (not allowed: needs the manage_servers permission)"
							  : "";
	fprintf(stderr, "galgo-admin: %s refused%s%s: %d%s%s%s\n", what, server ? " by " : "", server ? server : "",
		rv, name ? " " : "", name ? name : "", hint);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: galgo-admin [--server H:P] [--username U] [--password P] COMMAND\n"
		   "  nodes\n"
		   "  add-node ID HOST RAFT_PORT [TCP_PORT [QUIC_PORT [HTTP_PORT]]]\n"
		   "  remove-node ID\n"
		   "  drain [SECONDS]\n"
		   "  undrain\n"
		   "  health [live|ready] [HOST:PORT]\n");
}

static int parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

#define ADMIN_MAX_NODES 64

/* The metadata-group role byte of the node-status section (docs/protocol-extensions.md). */
static const char *role_name(uint8_t role)
{
	static const char *const names[] = {"none", "metadata leader", "follower", "standby", "spare"};
	return role < sizeof(names) / sizeof(names[0]) ? names[role] : "unknown";
}

static int print_nodes(struct gclient *c, const char *server)
{
	const uint8_t *r;
	size_t len;
	/* Flag 1 asks for the node-status section; a server that predates it refuses the byte (3), so the
	 * plain request follows and the nodes are listed without liveness. */
	const uint8_t flags = 1;
	bool with_status = true;
	int rv = gclient_raw(c, FRAME_CODE_GALGO_PARTITION_LEADERS, &flags, 1, &r, &len);
	if (rv == PROTO_E_INVALID_COMMAND) {
		with_status = false;
		rv = gclient_raw(c, FRAME_CODE_GALGO_PARTITION_LEADERS, NULL, 0, &r, &len);
	}
	if (rv != 0) {
		fprintf(stderr, "galgo-admin: GetPartitionLeaders: %d\n", rv);
		return rv < 0 ? 2 : 1;
	}
	struct wire_rd rd;
	wire_rd_init(&rd, r, len);
	uint32_t n = wire_get_u32(&rd);
	struct {
		uint32_t id;
		struct wire_str host;
		uint16_t tcp, quic, http;
	} nodes[ADMIN_MAX_NODES];
	if (n > ADMIN_MAX_NODES) {
		fprintf(stderr, "galgo-admin: %" PRIu32 " nodes, more than %d\n", n, ADMIN_MAX_NODES);
		return 2;
	}
	for (uint32_t i = 0; i < n && !wire_rd_error(&rd); i++) {
		struct reply_leaders_node ln;
		reply_get_leaders_node(&rd, &ln);
		nodes[i].id = ln.id;
		nodes[i].host = ln.host;
		nodes[i].tcp = ln.tcp;
		nodes[i].quic = ln.quic;
		nodes[i].http = ln.http;
	}
	uint32_t mleader = wire_get_u32(&rd);
	uint64_t mterm = wire_get_u64(&rd);
	/* The partitions come before the node status on the wire but are printed after the nodes. */
	size_t parts_at = rd.pos;
	uint32_t np = wire_get_u32(&rd);
	for (uint32_t i = 0; i < np && !wire_rd_error(&rd); i++) {
		struct reply_leaders_part lp;
		reply_get_leaders_part(&rd, &lp);
	}
	struct reply_node_status status[ADMIN_MAX_NODES] = {0};
	for (uint32_t i = 0; with_status && i < n; i++)
		reply_get_node_status(&rd, &status[i]);
	if (wire_rd_done(&rd) != 0) {
		fprintf(stderr, "galgo-admin: the reply does not decode\n");
		return 2;
	}
	printf("nodes (liveness as seen by %s):\n", server);
	for (uint32_t i = 0; i < n; i++) {
		printf("  %" PRIu32 "  %.*s  tcp %u quic %u http %u", nodes[i].id, (int)nodes[i].host.len,
		       (const char *)nodes[i].host.ptr, nodes[i].tcp, nodes[i].quic, nodes[i].http);
		if (with_status)
			printf("  %s  %s", status[i].connected ? "connected" : "UNREACHABLE", role_name(status[i].role));
		printf("\n");
	}
	printf("metadata leader: %" PRIu32 " (term %" PRIu64 ")\npartitions (stream/topic/partition: leader "
	       "epoch replicas):\n",
	       mleader, mterm);
	wire_rd_init(&rd, r, len);
	rd.pos = parts_at;
	np = wire_get_u32(&rd);
	for (uint32_t i = 0; i < np && !wire_rd_error(&rd); i++) {
		struct reply_leaders_part lp;
		if (reply_get_leaders_part(&rd, &lp) != 0)
			break;
		printf("  %" PRIu32 "/%" PRIu32 "/%" PRIu32 ": %" PRIu32 " %" PRIu64 " ", lp.stream_id, lp.topic_id,
		       lp.partition_id, lp.leader, lp.epoch);
		for (uint8_t k = 0; k < lp.replica_count; k++)
			printf("%s%" PRIu32, k ? "," : "", reply_leaders_part_replica(&lp, k));
		printf("\n");
	}
	return 0;
}

/*
 * Drain (10005) of the node c is connected to, or its end; a drain then asks again (mode 2, report only)
 * every 200 ms until the node leads nothing or wait_s have passed.
 */
static int drain(struct gclient *c, const char *server, bool on, uint32_t wait_s)
{
	uint8_t mode = on ? 1 : 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		const uint8_t *r;
		size_t len;
		int rv = gclient_raw(c, FRAME_CODE_GALGO_DRAIN, &mode, 1, &r, &len);
		if (rv != 0 || len != 5) {
			print_refused("drain", server, rv);
			return rv < 0 ? 2 : 1;
		}
		uint32_t led;
		memcpy(&led, r + 1, 4);
		if (!on) {
			printf("drain ended: %s may lead again (it leads %" PRIu32 " groups)\n", server, led);
			return 0;
		}
		if (led == 0) {
			printf("drained: %s leads no group another node could take, and takes no leadership until undrain "
			       "or a restart\n",
			       server);
			return 0;
		}
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= (time_t)wait_s) {
			fprintf(stderr, "galgo-admin: %s still leads %" PRIu32 " groups after %" PRIu32 " s\n", server, led,
				wait_s);
			return 1;
		}
		mode = 2;
		struct timespec pause = {0, 200 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
}

/*
 * GET /health/<what> of the HTTP listener at addr (HOST:PORT, or [IPv6]:PORT) over plain HTTP/1.0, within
 * 5 s: prints the body; 0 when the status is 200, 1 for another status, 2 when no answer came.
 */
static int health(const char *what, const char *addr)
{
	char host[256], port[8];
	const char *colon = strrchr(addr, ':');
	size_t hl = colon != NULL ? (size_t)(colon - addr) : 0;
	if (hl > 1 && addr[0] == '[' && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	}
	if (colon == NULL || hl == 0 || hl >= sizeof(host) || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(port)) {
		usage(stderr);
		return 2;
	}
	memcpy(host, addr, hl);
	host[hl] = '\0';
	snprintf(port, sizeof(port), "%s", colon + 1);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
	int rv = getaddrinfo(host, port, &hints, &res);
	if (rv != 0) {
		fprintf(stderr, "galgo-admin: %s: %s\n", host, gai_strerror(rv));
		return 2;
	}
	int fd = -1;
	for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fprintf(stderr, "galgo-admin: cannot connect to %s: %s\n", addr, strerror(errno));
		return 2;
	}
	char req[400], resp[4096];
	int n = snprintf(req, sizeof(req), "GET /health/%s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", what, host);
	size_t got = 0;
	bool ok = send(fd, req, (size_t)n, MSG_NOSIGNAL) == n;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (ok && got < sizeof(resp) - 1) {
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		long left = 5000 - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&pfd, 1, (int)left) != 1) {
			ok = false;
			break;
		}
		ssize_t r = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	resp[got] = '\0';
	int status = 0;
	const char *body = strstr(resp, "\r\n\r\n");
	if (!ok || sscanf(resp, "HTTP/1.%*d %d", &status) != 1 || body == NULL) {
		fprintf(stderr, "galgo-admin: no HTTP answer from %s\n", addr);
		return 2;
	}
	printf("%s\n", body + 4);
	return status == 200 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *server = "127.0.0.1:8090", *user = "iggy", *pass = "iggy";
	const char *const user_env[] = {"GALGO_ADMIN_USERNAME", "GALGO_ROOT_USERNAME"};
	const char *const pass_env[] = {"GALGO_ADMIN_PASSWORD", "GALGO_ROOT_PASSWORD"};
	for (int i = 1; i >= 0; i--) {
		const char *u = getenv(user_env[i]), *p = getenv(pass_env[i]);
		if (u != NULL && *u != '\0')
			user = u;
		if (p != NULL && *p != '\0')
			pass = p;
	}
	static const struct option opts[] = {{"server", required_argument, NULL, 's'},
					     {"username", required_argument, NULL, 'u'},
					     {"password", required_argument, NULL, 'p'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "s:u:p:h", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			server = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'p':
			pass = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	int nargs = argc - optind - 1;
	char **a = argv + optind + 1;
	if (strcmp(cmd, "health") == 0 && nargs <= 2) {
		const char *what = "ready", *addr = "127.0.0.1:3000";
		for (int i = 0; i < nargs; i++) {
			if (strcmp(a[i], "live") == 0 || strcmp(a[i], "ready") == 0)
				what = a[i];
			else
				addr = a[i];
		}
		return health(what, addr);
	}
	uint8_t body[300];
	size_t blen = 0;
	uint32_t code, wait_s = 60;
	if (strcmp(cmd, "nodes") == 0 && nargs == 0) {
		code = FRAME_CODE_GALGO_PARTITION_LEADERS;
	} else if (strcmp(cmd, "add-node") == 0 && nargs >= 3 && nargs <= 6) {
		uint32_t id, port[4] = {0, 0, 0, 0};
		size_t hl = strlen(a[1]);
		if (parse_u32(a[0], 31, &id) != 0 || id == 0 || hl == 0 || hl > 255) {
			usage(stderr);
			return 2;
		}
		for (int i = 2; i < nargs; i++)
			if (parse_u32(a[i], 65535, &port[i - 2]) != 0) {
				usage(stderr);
				return 2;
			}
		code = FRAME_CODE_GALGO_ADD_NODE;
		memcpy(body, &id, 4);
		body[4] = (uint8_t)hl;
		memcpy(body + 5, a[1], hl);
		blen = 5 + hl;
		for (int i = 0; i < 4; i++) {
			uint16_t v = (uint16_t)port[i];
			memcpy(body + blen, &v, 2);
			blen += 2;
		}
	} else if ((strcmp(cmd, "drain") == 0 && nargs <= 1) || (strcmp(cmd, "undrain") == 0 && nargs == 0)) {
		code = FRAME_CODE_GALGO_DRAIN;
		body[0] = cmd[0] == 'd' ? 1 : 0;
		blen = 1;
		if (nargs == 1 && (parse_u32(a[0], 86400, &wait_s) != 0)) {
			usage(stderr);
			return 2;
		}
	} else if (strcmp(cmd, "remove-node") == 0 && nargs == 1) {
		uint32_t id;
		if (parse_u32(a[0], 31, &id) != 0 || id == 0) {
			usage(stderr);
			return 2;
		}
		code = FRAME_CODE_GALGO_REMOVE_NODE;
		memcpy(body, &id, 4);
		blen = 4;
	} else {
		usage(stderr);
		return 2;
	}
	struct gclient_opts co = {.connect_timeout_ms = 5000, .io_timeout_ms = 15000};
	struct gclient *c = NULL;
	int rv = gclient_connect(server, &co, &c);
	if (rv == 0)
		rv = gclient_login(c, user, pass);
	if (rv != 0) {
		fprintf(stderr, "galgo-admin: cannot log in to %s: %d\n", server, rv);
		gclient_close(c);
		return 2;
	}
	int status;
	if (code == FRAME_CODE_GALGO_PARTITION_LEADERS) {
		status = print_nodes(c, server);
	} else if (code == FRAME_CODE_GALGO_DRAIN) {
		status = drain(c, server, body[0] == 1, wait_s);
	} else {
		rv = gclient_raw(c, code, body, blen, NULL, NULL);
		status = rv == 0 ? 0 : rv < 0 ? 2 : 1;
		if (rv == 0)
			printf("ok\n");
		else
			print_refused(cmd, NULL, rv);
	}
	gclient_close(c);
	return status;
}
