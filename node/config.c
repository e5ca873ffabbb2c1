/*
 * config — galgod's settings and where they come from (see config.h).
 */
#include "node/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "node/log.h"

/* How a setting's value is written and stored. */
enum config_type {
	CT_BOOL,        /* bool */
	CT_U32,         /* uint32_t, decimal */
	CT_SIZE,        /* uint64_t, size with an optional suffix */
	CT_SIZE32,      /* uint32_t, size with an optional suffix */
	CT_STRING,      /* char * */
	CT_ADDRESS,     /* char *, host:port */
	CT_LEVEL,       /* char *, a log level name */
	CT_DURABILITY,  /* enum config_durability */
};

/* One setting: the table below holds every one of them. */
struct config_setting {
	const char *section;
	const char *key;
	enum config_type type;
	size_t offset;          /* of the value in struct galgo_config */
	const char *def;        /* the default, written as a user would write it */
	const char *help;
	uint64_t min, max;      /* bounds of numbers and sizes */
	bool nonempty;          /* strings: the empty string is refused */
	bool secret;            /* never shown by config_dump */
	const char *alias;      /* another environment variable, overridden by the GALGO_ one */
};

#define CFG_OFF(member) offsetof(struct galgo_config, member)

static const struct config_setting config_table[] = {
	{"node", "id", CT_U32, CFG_OFF(node.id), "1",
	 "This node's id in the cluster (1..31).", 1, 31, false, false, NULL},
	{"node", "id_from_hostname", CT_BOOL, CFG_OFF(node.id_from_hostname), "false",
	 "Take node.id from this host's name instead: its trailing number plus one (a StatefulSet's pod\n      "
	 "galgo-0 is node 1, galgo-2 node 3).", 0, 0, false, false, NULL},
	{"node", "advertised_host", CT_STRING, CFG_OFF(node.advertised_host), "",
	 "Host name or IP clients are told to reach this node at (GetClusterMetadata, routes, leader\n      "
	 "hints), when it differs from the roster's host (published ports, a Service); empty: the roster's.",
	 0, 0, false, false, NULL},
	{"node", "data_dir", CT_STRING, CFG_OFF(node.data_dir), "./local_data",
	 "Directory that holds the partitions and the lock file.", 0, 0, true, false, NULL},
	{"tcp", "enabled", CT_BOOL, CFG_OFF(tcp.enabled), "true",
	 "Serve the Iggy binary protocol over TCP.", 0, 0, false, false, NULL},
	{"tcp", "address", CT_ADDRESS, CFG_OFF(tcp.address), "127.0.0.1:8090",
	 "Address the TCP listener binds.", 0, 0, false, false, NULL},
	{"tcp", "advertised_port", CT_U32, CFG_OFF(tcp.advertised_port), "0",
	 "TCP port clients are told to use (with node.advertised_host); 0: the roster's.", 0, 65535, false, false,
	 NULL},
	{"tcp", "tls_enabled", CT_BOOL, CFG_OFF(tcp.tls_enabled), "false",
	 "Wrap the TCP listener in TLS.", 0, 0, false, false, "IGGY_TCP_TLS_ENABLED"},
	{"tcp", "tls_cert", CT_STRING, CFG_OFF(tcp.tls_cert), "",
	 "PEM certificate (chain) of the TLS listener; with tls_key empty too, a self-signed development\n      "
	 "certificate is generated into DATA_DIR/tls on first start and reused later.", 0, 0, false, false,
	 "IGGY_TCP_TLS_CERT_FILE"},
	{"tcp", "tls_key", CT_STRING, CFG_OFF(tcp.tls_key), "",
	 "PEM private key of tls_cert.", 0, 0, false, false, "IGGY_TCP_TLS_KEY_FILE"},
	{"quic", "enabled", CT_BOOL, CFG_OFF(quic.enabled), "true",
	 "Serve the Iggy binary protocol over QUIC.", 0, 0, false, false, NULL},
	{"quic", "address", CT_ADDRESS, CFG_OFF(quic.address), "127.0.0.1:8080",
	 "Address the QUIC listener binds.", 0, 0, false, false, NULL},
	{"quic", "advertised_port", CT_U32, CFG_OFF(quic.advertised_port), "0",
	 "QUIC port clients are told to use (with node.advertised_host); 0: the roster's.", 0, 65535, false,
	 false, NULL},
	{"quic", "tls_cert", CT_STRING, CFG_OFF(quic.tls_cert), "",
	 "PEM certificate (chain) of the QUIC listener (TLS 1.3); with tls_key empty too, the development\n      "
	 "certificate of DATA_DIR/tls (made on first start).", 0, 0, false, false, NULL},
	{"quic", "tls_key", CT_STRING, CFG_OFF(quic.tls_key), "",
	 "PEM private key of quic.tls_cert.", 0, 0, false, false, NULL},
	{"quic", "idle_timeout_ms", CT_U32, CFG_OFF(quic.idle_timeout_ms), "30000",
	 "A QUIC connection silent for this long is dropped (the client's own limit may be lower).", 1000,
	 3600000, false, false, NULL},
	{"quic", "max_streams", CT_U32, CFG_OFF(quic.max_streams), "16",
	 "Request streams a QUIC connection may have open at once.", 1, 1024, false, false, NULL},
	{"quic", "max_connections", CT_U32, CFG_OFF(quic.max_connections), "1024",
	 "QUIC connections served at once; further ones are refused.", 1, 1000000, false, false, NULL},
	{"http", "enabled", CT_BOOL, CFG_OFF(http.enabled), "true",
	 "Serve the Iggy HTTP API.", 0, 0, false, false, NULL},
	{"http", "address", CT_ADDRESS, CFG_OFF(http.address), "127.0.0.1:3000",
	 "Address the HTTP listener binds.", 0, 0, false, false, NULL},
	{"http", "advertised_port", CT_U32, CFG_OFF(http.advertised_port), "0",
	 "HTTP port clients are told to use (with node.advertised_host); 0: the roster's.", 0, 65535, false,
	 false, NULL},
	{"http", "tls_enabled", CT_BOOL, CFG_OFF(http.tls_enabled), "false",
	 "Serve HTTPS (ALPN h2 and http/1.1) instead of plain HTTP.", 0, 0, false, false, "IGGY_HTTP_TLS_ENABLED"},
	{"http", "tls_cert", CT_STRING, CFG_OFF(http.tls_cert), "",
	 "PEM certificate (chain) of HTTPS; with tls_key empty too, the development certificate of\n      "
	 "DATA_DIR/tls (made on first start).", 0, 0, false, false, "IGGY_HTTP_TLS_CERT_FILE"},
	{"http", "tls_key", CT_STRING, CFG_OFF(http.tls_key), "",
	 "PEM private key of http.tls_cert.", 0, 0, false, false, "IGGY_HTTP_TLS_KEY_FILE"},
	{"http", "jwt_secret", CT_STRING, CFG_OFF(http.jwt_secret), "",
	 "Secret that signs the HTTP API's access tokens (HS256); empty means random per start.", 0, 0, false, true,
	 NULL},
	{"http", "metrics_auth", CT_BOOL, CFG_OFF(http.metrics_auth), "false",
	 "Require a Bearer token (JWT or PAT) on GET /metrics; false serves it openly, as Iggy does.", 0, 0, false,
	 false, NULL},
	{"http", "max_request_size", CT_SIZE, CFG_OFF(http.max_request_size), "2MiB",
	 "Largest HTTP request body accepted; larger ones are answered 413.", 1024, UINT32_MAX, false, false, NULL},
	{"websocket", "enabled", CT_BOOL, CFG_OFF(websocket.enabled), "true",
	 "Serve the Iggy binary protocol over WebSocket (one frame per binary message; ws:// in the SDKs).", 0, 0,
	 false, false, NULL},
	{"websocket", "address", CT_ADDRESS, CFG_OFF(websocket.address), "127.0.0.1:8092",
	 "Address the WebSocket listener binds.", 0, 0, false, false, NULL},
	{"websocket", "advertised_port", CT_U32, CFG_OFF(websocket.advertised_port), "0",
	 "WebSocket port clients are told to use (with node.advertised_host); 0: the port of websocket.address.",
	 0, 65535, false, false, NULL},
	{"websocket", "tls_enabled", CT_BOOL, CFG_OFF(websocket.tls_enabled), "false",
	 "Serve WebSocket inside TLS (wss:// in the SDKs).", 0, 0, false, false, "IGGY_WEBSOCKET_TLS_ENABLED"},
	{"websocket", "tls_cert", CT_STRING, CFG_OFF(websocket.tls_cert), "",
	 "PEM certificate (chain) of wss; with tls_key empty too, the development certificate of\n      "
	 "DATA_DIR/tls (made on first start).", 0, 0, false, false, "IGGY_WEBSOCKET_TLS_CERT_FILE"},
	{"websocket", "tls_key", CT_STRING, CFG_OFF(websocket.tls_key), "",
	 "PEM private key of websocket.tls_cert.", 0, 0, false, false, "IGGY_WEBSOCKET_TLS_KEY_FILE"},
	{"cluster", "nodes", CT_STRING, CFG_OFF(cluster.nodes), "",
	 "The cluster's roster: comma-separated ID@HOST:RAFT_PORT[:TCP_PORT[:QUIC_PORT[:HTTP_PORT]]], this node\n      "
	 "included; HOST may be a DNS name (resolved at every connection attempt). Empty: a single node.\n      "
	 "Client ports left out are taken to be this node's own.", 0, 0, false, false, NULL},
	{"cluster", "listen", CT_STRING, CFG_OFF(cluster.listen), "",
	 "Address (IP:PORT) the node-to-node listener binds; empty: 0.0.0.0 and this node's RAFT_PORT.", 0, 0, false,
	 false, NULL},
	{"cluster", "name", CT_STRING, CFG_OFF(cluster.name), "galgo",
	 "Cluster name; nodes of differently named clusters refuse each other.", 0, 0, true, false, NULL},
	{"cluster", "secret", CT_STRING, CFG_OFF(cluster.secret), "",
	 "Shared secret that authenticates nodes to each other (required with more than one node, and for\n      "
	 "a single node that is to take more nodes at runtime).", 0, 0, false,
	 true, NULL},
	{"cluster", "tls_ca", CT_STRING, CFG_OFF(cluster.tls_ca), "",
	 "Mutual TLS between nodes (TLS 1.3): PEM file of the CA every node's certificate must chain to.\n      "
	 "tls_ca, tls_cert and tls_key are set all three (TLS) or none (plain TCP, the secret alone).", 0, 0, false,
	 false, NULL},
	{"cluster", "tls_cert", CT_STRING, CFG_OFF(cluster.tls_cert), "",
	 "PEM certificate (chain) of this node, used as TLS server and client certificate (no extended key\n      "
	 "usage, or both serverAuth and clientAuth); it must name the host peers dial when that is a DNS name.", 0,
	 0, false, false, NULL},
	{"cluster", "tls_key", CT_STRING, CFG_OFF(cluster.tls_key), "",
	 "PEM private key of cluster.tls_cert.", 0, 0, false, false, NULL},
	{"cluster", "replication_factor", CT_U32, CFG_OFF(cluster.replication_factor), "3",
	 "Replicas of each partition (at most the number of nodes).", 1, 7, false, false, NULL},
	{"cluster", "join", CT_BOOL, CFG_OFF(cluster.join), "false",
	 "Join a running cluster instead of bootstrapping one: the node starts with an empty metadata group\n      "
	 "and waits to be added (AddNode, through any member). cluster.nodes lists this node and the members.",
	 0, 0, false, false, NULL},
	{"cluster", "election_timeout_ms", CT_U32, CFG_OFF(cluster.election_timeout_ms), "1000",
	 "Raft election timeout (randomized in [1x, 2x)); heartbeats go out every tenth of it.", 50, 60000, false,
	 false, NULL},
	{"cluster", "max_clock_offset_ms", CT_U32, CFG_OFF(cluster.max_clock_offset_ms), "500",
	 "Largest wall-clock offset tolerated between nodes (measured on the node-to-node links). A node whose\n      "
	 "clock is off by more from most of the cluster leads no partition and stamps no timestamp; past half of\n      "
	 "it a warning is logged. 0: clocks are not compared.",
	 0, 3600000, false, false, NULL},
	{"cluster", "salvage_votes", CT_BOOL, CFG_OFF(cluster.salvage_votes), "false",
	 "Start even though raft/raft.meta holds damaged term-and-vote records: they are dropped, and each\n      "
	 "group that lost its record votes in no election until it has caught up with its leader. Only for an\n      "
	 "operator answering the error that names those records.",
	 0, 0, false, false, NULL},
	{"log", "level", CT_LEVEL, CFG_OFF(log.level), "info",
	 "Lowest level logged: debug, info, warn or error.", 0, 0, false, false, NULL},
	{"storage", "segment_size", CT_SIZE, CFG_OFF(storage.segment_size), "1GiB",
	 "Size at which a partition rolls to a new segment file (4KiB..4GiB-1).", 4096, UINT32_MAX, false, false,
	 NULL},
	{"storage", "index_interval", CT_SIZE32, CFG_OFF(storage.index_interval), "4KiB",
	 "Bytes of messages between two entries of the sparse indexes.", 1, UINT32_MAX, false, false, NULL},
	{"storage", "durability", CT_DURABILITY, CFG_OFF(storage.durability), "fsync",
	 "When an append is acknowledged: fsync (after an fdatasync covers it),\n      "
	 "interval (at once; fdatasync within interval_ms) or none (at once; the OS flushes).", 0, 0, false, false,
	 NULL},
	{"storage", "interval_ms", CT_U32, CFG_OFF(storage.interval_ms), "1000",
	 "Flush interval in milliseconds for durability = interval.", 1, 3600000, false, false, NULL},
	{"storage", "scrub_rate", CT_SIZE, CFG_OFF(storage.scrub_rate), "16MiB",
	 "Bytes per second the scrubber verifies of stored records not yet known good (0: no scrubbing;\n      "
	 "reads still verify what they serve).", 0, UINT64_MAX, false, false, NULL},
	{"root", "username", CT_STRING, CFG_OFF(root.username), "iggy",
	 "Name of the root user.", 0, 0, true, false, "IGGY_ROOT_USERNAME"},
	{"root", "password", CT_STRING, CFG_OFF(root.password), "",
	 "Password of the root user; empty means unset (see --with-default-root-credentials).", 0, 0, false, true,
	 "IGGY_ROOT_PASSWORD"},
};

#define CONFIG_N_SETTINGS (sizeof(config_table) / sizeof(config_table[0]))

static const char *const config_durability_names[] = {"fsync", "interval", "none"};

/* Formats a message into errbuf (if there is one). */
static void config_err(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void config_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (errbuf == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

/* Finds a setting by section and key, given as counted strings; case-insensitive. */
static const struct config_setting *config_find(const char *section, size_t slen, const char *key, size_t klen)
{
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const struct config_setting *s = &config_table[i];
		if (strlen(s->section) == slen && strncasecmp(s->section, section, slen) == 0 &&
		    strlen(s->key) == klen && strncasecmp(s->key, key, klen) == 0)
			return s;
	}
	return NULL;
}

/* True if some setting lives in this section. */
static bool config_section_known(const char *section)
{
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		if (strcasecmp(config_table[i].section, section) == 0)
			return true;
	}
	return false;
}

/* Writes the setting's environment variable name (GALGO_SECTION_KEY) into buf. */
static void config_env_name(const struct config_setting *s, char *buf, size_t len)
{
	snprintf(buf, len, "GALGO_%s_%s", s->section, s->key);
	for (char *p = buf; *p != '\0'; p++)
		*p = (char)toupper((unsigned char)*p);
}

/* Looks a variable up in envp, or in the process environment when envp is NULL. */
static const char *config_getenv(char **envp, const char *name)
{
	if (envp == NULL)
		return getenv(name);
	size_t n = strlen(name);
	for (char **e = envp; *e != NULL; e++) {
		if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
			return *e + n + 1;
	}
	return NULL;
}

/* Parses a non-empty run of decimal digits at *p, advancing *p. Returns 0, -EINVAL or -ERANGE. */
static int config_parse_digits(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
			return -ERANGE;
	}
	*p = s;
	*out = v;
	return 0;
}

/* Parses a plain decimal number, the whole string. */
static int config_parse_u64(const char *s, uint64_t *out)
{
	int rc = config_parse_digits(&s, out);
	if (rc < 0)
		return rc;
	return *s == '\0' ? 0 : -EINVAL;
}

int config_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {
		{"", 1}, {"b", 1},
		{"k", 1ULL << 10}, {"kib", 1ULL << 10}, {"kb", 1000ULL},
		{"m", 1ULL << 20}, {"mib", 1ULL << 20}, {"mb", 1000000ULL},
		{"g", 1ULL << 30}, {"gib", 1ULL << 30}, {"gb", 1000000000ULL},
		{"t", 1ULL << 40}, {"tib", 1ULL << 40}, {"tb", 1000000000000ULL},
	};
	uint64_t v;

	if (s == NULL)
		return -EINVAL;
	while (isspace((unsigned char)*s))
		s++;
	int rc = config_parse_digits(&s, &v);
	if (rc < 0)
		return rc;
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strlen(units[i].suffix) == n && strncasecmp(units[i].suffix, s, n) == 0) {
			if (__builtin_mul_overflow(v, units[i].mult, &v))
				return -ERANGE;
			*out = v;
			return 0;
		}
	}
	return -EINVAL;
}

/* Parses a boolean word. */
static int config_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* True for the characters a host name or IPv4 address may hold. */
static bool config_host_char(char c)
{
	return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

int config_split_address(const char *addr, char *host, size_t hostlen, uint16_t *port)
{
	const char *h, *colon;
	size_t hlen;

	if (addr == NULL)
		return -EINVAL;
	if (addr[0] == '[') {
		/* An IPv6 address in brackets: hex digits, colons, dots (mapped IPv4) and a %zone. */
		const char *close = strchr(addr, ']');
		if (close == NULL || close[1] != ':')
			return -EINVAL;
		h = addr + 1;
		hlen = (size_t)(close - h);
		if (hlen == 0)
			return -EINVAL;
		for (size_t i = 0; i < hlen; i++) {
			char c = h[i];
			if (!isalnum((unsigned char)c) && c != ':' && c != '.' && c != '%')
				return -EINVAL;
		}
		if (memchr(h, ':', hlen) == NULL)
			return -EINVAL;
		colon = close + 1;
	} else {
		colon = strchr(addr, ':');
		if (colon == NULL || strchr(colon + 1, ':') != NULL)
			return -EINVAL;
		h = addr;
		hlen = (size_t)(colon - addr);
		if (hlen == 0)
			return -EINVAL;
		for (size_t i = 0; i < hlen; i++) {
			if (!config_host_char(h[i]))
				return -EINVAL;
		}
	}
	uint64_t p;
	if (config_parse_u64(colon + 1, &p) < 0 || p > 65535)
		return -EINVAL;
	if (host != NULL) {
		if (hlen + 1 > hostlen)
			return -ENAMETOOLONG;
		memcpy(host, h, hlen);
		host[hlen] = '\0';
	}
	if (port != NULL)
		*port = (uint16_t)p;
	return 0;
}

const char *config_durability_name(enum config_durability d)
{
	if ((int)d < 0 || (size_t)d >= sizeof(config_durability_names) / sizeof(config_durability_names[0]))
		return "?";
	return config_durability_names[d];
}

/* Replaces a string field with a copy of v. */
static int config_set_string(char **field, const char *v)
{
	char *copy = strdup(v);
	if (copy == NULL)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

/*
 * Parses v as the value of setting s and stores it in cfg. On error returns -EINVAL (or -ENOMEM) and
 * describes the problem in why, without naming the source (the caller adds it).
 */
static int config_set(struct galgo_config *cfg, const struct config_setting *s, const char *v, char *why,
		      size_t whylen)
{
	void *field = (char *)cfg + s->offset;
	uint64_t n;
	int rc;

	switch (s->type) {
	case CT_BOOL:
		if (config_parse_bool(v, (bool *)field) < 0) {
			config_err(why, whylen, "invalid boolean '%s' (expected true or false)", v);
			return -EINVAL;
		}
		return 0;
	case CT_U32:
	case CT_SIZE:
	case CT_SIZE32:
		if (s->type == CT_U32)
			rc = config_parse_u64(v, &n);
		else
			rc = config_parse_size(v, &n);
		if (rc == -EINVAL) {
			if (s->type == CT_U32)
				config_err(why, whylen, "invalid number '%s' (expected a decimal integer)", v);
			else
				config_err(why, whylen,
					   "invalid size '%s' (expected a number with an optional suffix such as "
					   "KiB, MiB or GiB)", v);
			return -EINVAL;
		}
		if (rc < 0 || n < s->min || n > s->max) {
			config_err(why, whylen, "'%s' is out of range (%" PRIu64 "..%" PRIu64 ")", v, s->min, s->max);
			return -EINVAL;
		}
		if (s->type == CT_SIZE)
			*(uint64_t *)field = n;
		else
			*(uint32_t *)field = (uint32_t)n;
		return 0;
	case CT_STRING:
		if (s->nonempty && v[0] == '\0') {
			config_err(why, whylen, "must not be empty");
			return -EINVAL;
		}
		break;
	case CT_ADDRESS:
		if (config_split_address(v, NULL, 0, NULL) < 0) {
			config_err(why, whylen, "invalid address '%s' (expected host:port with a port in 0..65535)", v);
			return -EINVAL;
		}
		break;
	case CT_LEVEL: {
		enum glog_level level;
		if (glog_parse_level(v, &level) < 0) {
			config_err(why, whylen, "invalid log level '%s' (expected debug, info, warn or error)", v);
			return -EINVAL;
		}
		v = glog_level_name(level);
		break;
	}
	case CT_DURABILITY:
		for (size_t i = 0; i < sizeof(config_durability_names) / sizeof(config_durability_names[0]); i++) {
			if (strcasecmp(v, config_durability_names[i]) == 0) {
				*(enum config_durability *)field = (enum config_durability)i;
				return 0;
			}
		}
		config_err(why, whylen, "invalid durability '%s' (expected fsync, interval or none)", v);
		return -EINVAL;
	}
	rc = config_set_string((char **)field, v);
	if (rc < 0)
		config_err(why, whylen, "out of memory");
	return rc;
}

void config_free(struct galgo_config *cfg)
{
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const struct config_setting *s = &config_table[i];
		if (s->type == CT_STRING || s->type == CT_ADDRESS || s->type == CT_LEVEL) {
			char **field = (char **)((char *)cfg + s->offset);
			free(*field);
			*field = NULL;
		}
	}
	free(cfg->config_file);
	cfg->config_file = NULL;
}

int config_defaults(struct galgo_config *cfg)
{
	char why[128];
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		int rc = config_set(cfg, &config_table[i], config_table[i].def, why, sizeof(why));
		if (rc < 0) {
			config_free(cfg);
			return rc;
		}
	}
	return 0;
}

/* State of one configuration file while inih parses it. */
struct config_ini {
	struct galgo_config *cfg;
	const char *path;
	FILE *f;
	int line;               /* lines read so far */
	int max_line;           /* the longest line inih accepts, from the reader's num */
	int err_line;           /* line of the first error found here (0: none) */
	int err;
	char msg[256];
};

/* Records the first error found in the file. */
static void config_ini_fail(struct config_ini *ci, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void config_ini_fail(struct config_ini *ci, int err, const char *fmt, ...)
{
	va_list ap;
	if (ci->err_line != 0)
		return;
	ci->err_line = ci->line;
	ci->err = err;
	va_start(ap, fmt);
	vsnprintf(ci->msg, sizeof(ci->msg), fmt, ap);
	va_end(ap);
}

/* inih's reader: reads one line, counting lines and refusing (rather than splitting) long ones. */
static char *config_ini_reader(char *str, int num, void *stream)
{
	struct config_ini *ci = stream;
	if (fgets(str, num, ci->f) == NULL)
		return NULL;
	ci->line++;
	size_t n = strlen(str);
	if ((n == 0 || str[n - 1] != '\n') && !feof(ci->f)) {
		int c;
		config_ini_fail(ci, -EINVAL, "line too long (over %d characters)", num - 3);
		while ((c = fgetc(ci->f)) != EOF && c != '\n')
			;
	}
	return str;
}

/* inih's handler: one key = value pair. Returns nonzero on success. */
static int config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct config_ini *ci = user;
	char why[200];

	if (section[0] == '\0') {
		config_ini_fail(ci, -EINVAL, "key '%s' is outside any [section]", name);
		return 0;
	}
	const struct config_setting *s = config_find(section, strlen(section), name, strlen(name));
	if (s == NULL) {
		if (config_section_known(section))
			config_ini_fail(ci, -EINVAL, "unknown key '%s' in section [%s]", name, section);
		else
			config_ini_fail(ci, -EINVAL, "unknown section [%s]", section);
		return 0;
	}
	int rc = config_set(ci->cfg, s, value, why, sizeof(why));
	if (rc < 0) {
		config_ini_fail(ci, rc, "%s.%s: %s", s->section, s->key, why);
		return 0;
	}
	return 1;
}

/* Reads a configuration file. A missing file is an error only if `required`. */
static int config_read_file(struct galgo_config *cfg, const char *path, bool required, char *errbuf,
			    size_t errlen)
{
	struct config_ini ci = {.cfg = cfg, .path = path};

	ci.f = fopen(path, "r");
	if (ci.f == NULL) {
		int err = errno;
		if (err == ENOENT && !required)
			return 0;
		config_err(errbuf, errlen, "config file %s: %s", path, strerror(err));
		return -err;
	}
	int r = ini_parse_stream(config_ini_reader, &ci, config_ini_handler, &ci);
	bool read_error = ferror(ci.f);
	fclose(ci.f);
	if (ci.err_line != 0 && (r <= 0 || ci.err_line <= r)) {
		config_err(errbuf, errlen, "%s:%d: %s", path, ci.err_line, ci.msg);
		return ci.err;
	}
	if (r == -2) {
		config_err(errbuf, errlen, "config file %s: out of memory", path);
		return -ENOMEM;
	}
	if (r > 0) {
		config_err(errbuf, errlen, "%s:%d: syntax error (expected [section] or key = value)", path, r);
		return -EINVAL;
	}
	if (read_error) {
		config_err(errbuf, errlen, "config file %s: read error", path);
		return -EIO;
	}
	cfg->config_file = strdup(path);
	if (cfg->config_file == NULL)
		return -ENOMEM;
	return 0;
}

/* Applies the environment variables of every setting: the alias first, then the GALGO_ name. */
static int config_read_env(struct galgo_config *cfg, char **envp, char *errbuf, size_t errlen)
{
	char name[96], why[200];

	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const struct config_setting *s = &config_table[i];
		config_env_name(s, name, sizeof(name));
		const char *names[2] = {s->alias, name};
		for (int j = 0; j < 2; j++) {
			if (names[j] == NULL)
				continue;
			const char *v = config_getenv(envp, names[j]);
			if (v == NULL)
				continue;
			int rc = config_set(cfg, s, v, why, sizeof(why));
			if (rc < 0) {
				config_err(errbuf, errlen, "environment variable %s: %s", names[j], why);
				return rc;
			}
		}
	}
	return 0;
}

/* What the walk over the command line found besides settings. */
struct config_flags {
	const char *config_path;    /* from --config, or NULL */
	bool default_root;          /* --with-default-root-credentials */
};

/*
 * Walks the command-line arguments. With apply false it only checks them and fills *fl; with apply true
 * it stores every setting flag's value in cfg, in order.
 */
static int config_walk_flags(struct galgo_config *cfg, int argc, char **argv, bool apply, struct config_flags *fl,
			     char *errbuf, size_t errlen)
{
	char why[200];

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
			config_err(errbuf, errlen, "unexpected argument '%s' (settings are given as --section.key=value)",
				   arg);
			return -EINVAL;
		}
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
		const char *value = eq != NULL ? eq + 1 : NULL;

		if (nlen == strlen("with-default-root-credentials") &&
		    strncmp(name, "with-default-root-credentials", nlen) == 0) {
			if (value != NULL) {
				config_err(errbuf, errlen, "flag --with-default-root-credentials takes no value");
				return -EINVAL;
			}
			fl->default_root = true;
			continue;
		}

		const struct config_setting *s = NULL;
		bool is_config = nlen == strlen("config") && strncmp(name, "config", nlen) == 0;
		if (!is_config) {
			const char *dot = memchr(name, '.', nlen);
			if (dot != NULL)
				s = config_find(name, (size_t)(dot - name), dot + 1, nlen - (size_t)(dot - name) - 1);
			if (s == NULL) {
				config_err(errbuf, errlen, "unknown flag --%.*s (see --help)", (int)nlen, name);
				return -EINVAL;
			}
		}

		if (value == NULL) {
			if (s != NULL && s->type == CT_BOOL) {
				/* A boolean flag takes the next argument as its value only if it is not a flag. */
				if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
					value = argv[++i];
				else
					value = "true";
			} else if (i + 1 < argc) {
				value = argv[++i];
			} else {
				config_err(errbuf, errlen, "flag --%.*s needs a value", (int)nlen, name);
				return -EINVAL;
			}
		}

		if (is_config) {
			if (value[0] == '\0') {
				config_err(errbuf, errlen, "flag --config needs a value");
				return -EINVAL;
			}
			fl->config_path = value;
			continue;
		}
		if (!apply)
			continue;
		int rc = config_set(cfg, s, value, why, sizeof(why));
		if (rc < 0) {
			config_err(errbuf, errlen, "flag --%.*s: %s", (int)nlen, name, why);
			return rc;
		}
	}
	return 0;
}

int config_id_from_hostname(const char *host, uint32_t *id)
{
	const char *dot = strchr(host, '.');
	size_t len = dot != NULL ? (size_t)(dot - host) : strlen(host);
	size_t at = len;
	while (at > 0 && host[at - 1] >= '0' && host[at - 1] <= '9')
		at--;
	if (at == len || at < 2 || host[at - 1] != '-' || len - at > 2 || (len - at == 2 && host[at] == '0'))
		return -EINVAL;
	uint32_t n = 0;
	for (size_t i = at; i < len; i++)
		n = n * 10 + (uint32_t)(host[i] - '0');
	if (n > 30)
		return -EINVAL;
	*id = n + 1;
	return 0;
}

int config_load(struct galgo_config *cfg, int argc, char **argv, char **envp, char *errbuf, size_t errlen)
{
	struct config_flags fl = {0};
	int rc;

	config_err(errbuf, errlen, "%s", "");
	rc = config_defaults(cfg);
	if (rc < 0) {
		config_err(errbuf, errlen, "out of memory");
		return rc;
	}
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			cfg->help = true;
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
			cfg->version = true;
			return 0;
		}
	}

	/* The command line is checked first, so that its errors are reported before the file is read. */
	rc = config_walk_flags(cfg, argc, argv, false, &fl, errbuf, errlen);
	if (rc < 0)
		return rc;

	const char *path = fl.config_path;
	if (path == NULL) {
		path = config_getenv(envp, "GALGO_CONFIG");
		if (path != NULL && path[0] == '\0')
			path = NULL;
	}
	rc = config_read_file(cfg, path != NULL ? path : CONFIG_DEFAULT_FILE, path != NULL, errbuf, errlen);
	if (rc < 0)
		return rc;

	rc = config_read_env(cfg, envp, errbuf, errlen);
	if (rc < 0)
		return rc;

	rc = config_walk_flags(cfg, argc, argv, true, &fl, errbuf, errlen);
	if (rc < 0)
		return rc;

	if (cfg->node.id_from_hostname) {
		char host[256];
		if (gethostname(host, sizeof(host)) != 0) {
			config_err(errbuf, errlen, "node.id_from_hostname: the host name cannot be read: %s", strerror(errno));
			return -errno;
		}
		host[sizeof(host) - 1] = '\0';
		rc = config_id_from_hostname(host, &cfg->node.id);
		if (rc < 0) {
			config_err(errbuf, errlen,
				   "node.id_from_hostname: the host name \"%s\" does not end in -N with N from 0 to 30", host);
			return rc;
		}
	}
	const char *ah = cfg->node.advertised_host;
	bool ah_ok = strlen(ah) <= 253;
	for (const char *q = ah; ah_ok && *q != '\0'; q++)
		ah_ok = isalnum((unsigned char)*q) || *q == '.' || *q == '-' || *q == ':' || *q == '_';
	if (!ah_ok) {
		config_err(errbuf, errlen, "node.advertised_host: \"%s\" is not a host name or IP address", ah);
		return -EINVAL;
	}
	if (fl.default_root && cfg->root.password[0] == '\0') {
		rc = config_set_string(&cfg->root.password, CONFIG_DEFAULT_ROOT_PASSWORD);
		if (rc < 0) {
			config_err(errbuf, errlen, "out of memory");
			return rc;
		}
	}
	return 0;
}

/* Writes a size as bytes, or with the largest binary suffix that divides it exactly. */
static void config_format_size(uint64_t v, char *buf, size_t len)
{
	static const char *const suffixes[] = {"TiB", "GiB", "MiB", "KiB"};
	for (int i = 0; i < 4; i++) {
		uint64_t unit = 1ULL << (10 * (4 - i));
		if (v != 0 && v % unit == 0) {
			snprintf(buf, len, "%" PRIu64 "%s", v / unit, suffixes[i]);
			return;
		}
	}
	snprintf(buf, len, "%" PRIu64, v);
}

/* Writes a setting's current value as a user would write it. */
static void config_format(const struct galgo_config *cfg, const struct config_setting *s, char *buf, size_t len)
{
	const void *field = (const char *)cfg + s->offset;
	const char *str;

	switch (s->type) {
	case CT_BOOL:
		snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false");
		return;
	case CT_U32:
		snprintf(buf, len, "%" PRIu32, *(const uint32_t *)field);
		return;
	case CT_SIZE:
		config_format_size(*(const uint64_t *)field, buf, len);
		return;
	case CT_SIZE32:
		config_format_size(*(const uint32_t *)field, buf, len);
		return;
	case CT_DURABILITY:
		snprintf(buf, len, "%s", config_durability_name(*(const enum config_durability *)field));
		return;
	case CT_STRING:
	case CT_ADDRESS:
	case CT_LEVEL:
		str = *(char *const *)field;
		if (s->secret)
			snprintf(buf, len, "%s", str != NULL && str[0] != '\0' ? "(set)" : "(unset)");
		else
			snprintf(buf, len, "%s", str != NULL ? str : "");
		return;
	}
}

int config_dump(const struct galgo_config *cfg, char *buf, size_t len)
{
	return config_dump_sep(cfg, buf, len, " ");
}

int config_dump_sep(const struct galgo_config *cfg, char *buf, size_t len, const char *sep)
{
	size_t used = 0;
	bool cut = false;
	char value[512];

	if (len == 0)
		return -ENOSPC;
	buf[0] = '\0';
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const struct config_setting *s = &config_table[i];
		config_format(cfg, s, value, sizeof(value));
		int n = snprintf(buf + used, len - used, "%s%s.%s=%s", i > 0 ? sep : "", s->section, s->key, value);
		if (n < 0 || (size_t)n >= len - used) {
			cut = true;
			break;
		}
		used += (size_t)n;
	}
	return cut ? -ENOSPC : 0;
}

/* The placeholder shown for a setting's value in --help. */
static const char *config_metavar(const struct config_setting *s)
{
	switch (s->type) {
	case CT_BOOL:
		return "BOOL";
	case CT_U32:
		return "N";
	case CT_SIZE:
	case CT_SIZE32:
		return "SIZE";
	case CT_ADDRESS:
		return "HOST:PORT";
	case CT_LEVEL:
		return "LEVEL";
	case CT_DURABILITY:
		return "POLICY";
	case CT_STRING:
		break;
	}
	return "STRING";
}

void config_help(FILE *out, const char *prog)
{
	char env[96];

	fprintf(out,
		"Usage: %s [--config PATH] [--SECTION.KEY=VALUE | --SECTION.KEY VALUE]...\n"
		"\n"
		"Galgo message-streaming server.\n"
		"\n"
		"Each setting is taken from, in increasing priority: its default; the [SECTION] KEY of the\n"
		"config file (INI); its environment variable; its flag.\n"
		"\n"
		"Options:\n"
		"  --help                           print this help and exit\n"
		"  --version                        print the version and exit\n"
		"  --config PATH                    config file to read (env GALGO_CONFIG; without either,\n"
		"                                   ./" CONFIG_DEFAULT_FILE " is read if it exists)\n"
		"  --with-default-root-credentials  set root.password to \"" CONFIG_DEFAULT_ROOT_PASSWORD
		"\" unless it is set\n"
		"\n"
		"Sizes take a suffix: K/KiB, M/MiB, G/GiB, T/TiB (powers of 1024) or KB, MB, GB, TB\n"
		"(powers of 1000). Booleans: true/false, yes/no, on/off, 1/0.\n"
		"\n"
		"Settings:\n",
		prog != NULL ? prog : "galgod");
	for (size_t i = 0; i < CONFIG_N_SETTINGS; i++) {
		const struct config_setting *s = &config_table[i];
		config_env_name(s, env, sizeof(env));
		fprintf(out, "  --%s.%s=%s\n", s->section, s->key, config_metavar(s));
		fprintf(out, "      env %s%s%s, default \"%s\"\n", env, s->alias != NULL ? " or " : "",
			s->alias != NULL ? s->alias : "", s->def);
		fprintf(out, "      %s\n", s->help);
	}
}
