/*
 * config — galgod's settings and where they come from.
 *
 * Every setting is named SECTION.KEY (node.id, tcp.address, storage.segment_size, ...) and is described
 * once, in a table in config.c, which drives the defaults, the file parser, the environment variables,
 * the command-line flags and --help. config_load fills a struct galgo_config from these sources, each
 * overriding the one before it:
 *
 *   1. the built-in defaults;
 *   2. a configuration file in INI format ([section] headers, key = value lines, ';' and '#' comments).
 *      Its path is taken from the flag --config PATH (or --config=PATH), else from the environment
 *      variable GALGO_CONFIG; a file named so must exist. Without either, CONFIG_DEFAULT_FILE in the
 *      current directory is read if it exists;
 *   3. environment variables GALGO_<SECTION>_<KEY>, upper-cased (GALGO_TCP_ADDRESS,
 *      GALGO_STORAGE_SEGMENT_SIZE); some settings also accept an alias (IGGY_ROOT_PASSWORD and
 *      IGGY_ROOT_USERNAME), which the GALGO_ name overrides. Other GALGO_* variables are ignored;
 *   4. command-line flags --section.key=value or --section.key value. A boolean flag given without a
 *      value (followed by nothing or by another flag) means true.
 *
 * Two more flags: --help (config_load sets cfg->help and reads nothing else; the caller prints
 * config_help) and --with-default-root-credentials (after every source, sets root.password to "iggy" if
 * it is still empty).
 *
 * Value syntax by type: numbers are decimal; sizes are a number with an optional suffix, B, K/KiB,
 * M/MiB, G/GiB, T/TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000), case-insensitive, with
 * optional space ("512MiB", "1 GiB", "65536"); booleans are true/false, yes/no, on/off, 1/0; addresses
 * are host:port or [ipv6]:port with a port in 0..65535 (0: any free port).
 *
 * Errors (unknown sections, keys or flags, bad numbers, sizes, booleans, enum values and addresses, a
 * missing file) make config_load fail with a message that names the source: "FILE:LINE: ...",
 * "environment variable NAME: ..." or "flag --NAME: ...". The library never exits the process.
 */
#ifndef GALGO_CONFIG_H
#define GALGO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The file read when neither --config nor GALGO_CONFIG names one (relative to the working directory). */
#define CONFIG_DEFAULT_FILE "galgo.ini"

/* The password that --with-default-root-credentials sets. */
#define CONFIG_DEFAULT_ROOT_PASSWORD "iggy"

/* storage.durability; the values match enum plog_durability. */
enum config_durability {
	CONFIG_DURABILITY_FSYNC = 0,
	CONFIG_DURABILITY_INTERVAL = 1,
	CONFIG_DURABILITY_NONE = 2,
};

struct config_listener {
	bool enabled;
	char *address;               /* host:port */
};

struct galgo_config {
	struct {
		uint32_t id;             /* this node's id, 1.. */
		bool id_from_hostname;   /* id = the host name's trailing number + 1 (config_id_from_hostname) */
		char *advertised_host;   /* where clients reach this node; empty: the roster's host */
		char *data_dir;          /* where partitions and the lock file live */
	} node;
	struct {
		bool enabled;
		char *address;           /* host:port */
		uint32_t advertised_port;  /* the port clients are told (0: the roster's) */
		bool tls_enabled;        /* TLS around the TCP byte stream */
		char *tls_cert;          /* PEM certificate chain; empty with tls_key empty: a generated one */
		char *tls_key;           /* PEM private key of tls_cert */
	} tcp;
	struct {
		bool enabled;
		char *address;           /* host:port (UDP) */
		uint32_t advertised_port;  /* the port clients are told (0: the roster's) */
		char *tls_cert;          /* PEM certificate chain; empty with tls_key empty: the development one */
		char *tls_key;           /* PEM private key of tls_cert */
		uint32_t idle_timeout_ms;    /* a connection silent this long is dropped */
		uint32_t max_streams;        /* concurrent request streams per connection */
		uint32_t max_connections;    /* connections beyond it are refused */
	} quic;
	struct {
		bool enabled;
		char *address;               /* host:port */
		uint32_t advertised_port;    /* the port clients are told (0: the roster's) */
		bool tls_enabled;            /* HTTPS instead of HTTP */
		char *tls_cert;              /* as tcp.tls_cert */
		char *tls_key;               /* as tcp.tls_key */
		char *jwt_secret;            /* HS256 key of the access tokens; empty: random per start */
		uint64_t max_request_size;   /* bodies above it are answered 413 */
		bool metrics_auth;           /* GET /metrics needs a Bearer token (default: open, as Iggy) */
	} http;
	struct {
		bool enabled;
		char *address;               /* host:port */
		uint32_t advertised_port;    /* the port clients are told (0: the port of address) */
		bool tls_enabled;            /* wss: TLS around the WebSocket connection */
		char *tls_cert;              /* as tcp.tls_cert */
		char *tls_key;               /* as tcp.tls_key */
	} websocket;
	struct {
		char *nodes;             /* roster: ID@HOST:RAFT_PORT[:TCP[:QUIC[:HTTP]]],...; empty: single node */
		char *listen;            /* node-to-node listener IP:PORT; empty: 0.0.0.0:own RAFT_PORT */
		char *name;              /* cluster name */
		char *secret;            /* node-to-node shared secret */
		char *tls_ca;            /* mutual TLS between nodes: CA PEM file; all three empty = plain TCP */
		char *tls_cert;          /* this node's certificate (chain), PEM */
		char *tls_key;           /* its private key, PEM */
		uint32_t replication_factor;
		uint32_t election_timeout_ms;
		uint32_t max_clock_offset_ms; /* 0: clocks are not compared */
		bool salvage_votes;           /* drop damaged raft.meta records (rmeta_open_ex) */
		bool join;                   /* join a running cluster: no bootstrap */
	} cluster;
	struct {
		char *level;             /* debug, info, warn or error (normalized to these names) */
	} log;
	struct {
		uint64_t segment_size;   /* bytes per segment before rolling */
		uint32_t index_interval; /* bytes between sparse index entries */
		enum config_durability durability;
		uint32_t interval_ms;    /* flush interval for the interval policy */
		uint64_t scrub_rate;     /* bytes per second the scrubber verifies (0: off) */
	} storage;
	struct {
		char *username;
		char *password;          /* empty: unset */
	} root;

	/* Not settings: what config_load found. */
	char *config_file;           /* the file that was read, or NULL */
	bool help;                   /* --help was given */
	bool version;                /* --version was given */
};

/* Fills cfg with the built-in defaults (cfg need not be initialized). Returns 0 or -ENOMEM. */
int config_defaults(struct galgo_config *cfg);

/*
 * Loads the configuration from the sources above. argv[0] is the program name and is skipped. envp is a
 * NULL-terminated "NAME=value" array, or NULL to use the process environment. cfg need not be
 * initialized; call config_free on it afterwards whatever this returns. Returns 0 (check cfg->help), or
 * -EINVAL for a bad setting, a negative errno for a file that cannot be read, or -ENOMEM, with a
 * one-line message in errbuf.
 */
int config_load(struct galgo_config *cfg, int argc, char **argv, char **envp, char *errbuf, size_t errlen);

/* Frees what cfg owns and leaves it empty (safe to call twice). */
void config_free(struct galgo_config *cfg);

/*
 * Writes every setting as one line of "section.key=value" pairs separated by spaces, for the startup
 * log; the password is shown only as (set) or (unset). Returns 0, or -ENOSPC if it was cut to fit.
 */
int config_dump(const struct galgo_config *cfg, char *buf, size_t len);
/* The same with `sep` between the settings instead of a space ("\n": one setting a line). */
int config_dump_sep(const struct galgo_config *cfg, char *buf, size_t len, const char *sep);

/* Prints usage: every flag with its environment variable, default and description. */
void config_help(FILE *out, const char *prog);

/* The name of a durability policy ("fsync", "interval", "none"). */
const char *config_durability_name(enum config_durability d);

/*
 * Parses a size as described above. Returns 0 or -EINVAL (not a size) or -ERANGE (above 2^64-1).
 */
int config_parse_size(const char *s, uint64_t *out);

/*
 * The node id a host name gives (node.id_from_hostname): the number after the last '-' of its first label
 * (a StatefulSet pod's ordinal: "galgo-0" or "galgo-0.galgo-peer.ns.svc" is 0) plus one. -EINVAL when the
 * label does not end in "-N" with N a decimal from 0 to 30 without a leading zero.
 */
int config_id_from_hostname(const char *host, uint32_t *id);

/*
 * Splits an address "host:port" or "[ipv6]:port" into host (without brackets) and port. Returns 0,
 * -EINVAL if it is not such an address (empty host, bad characters, port above 65535) or
 * -ENAMETOOLONG if the host does not fit in hostlen bytes.
 */
int config_split_address(const char *addr, char *host, size_t hostlen, uint16_t *port);

#endif /* GALGO_CONFIG_H */
