/*
 * Tests of node/config: defaults, the order of sources, value syntax and error messages.
 *
 * Most tests pass an explicit environment array so that the test runner's environment cannot leak in;
 * the ones about real environment variables use setenv (criterion runs each test in its own process).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/config.h"

/* An empty environment. */
static char *no_env[] = {NULL};

/* A per-test temporary directory, removed by the fini hook. */
static char tmpdir[64];

static void make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/galgo-test-config-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char cmd[128];
	if (tmpdir[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(config, .init = make_tmpdir, .fini = remove_tmpdir);

/* Writes a file named `name` in the temporary directory and returns its path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* Runs config_load on a NULL-terminated argument list (without argv[0]) and an environment. */
static int load(struct galgo_config *cfg, char **env, char *err, size_t errlen, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;
	argv[argc++] = "galgod";
	va_start(ap, errlen);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	return config_load(cfg, argc, argv, env, err, errlen);
}

#define LOAD(cfg, env, err, ...) load(cfg, env, err, sizeof(err), ##__VA_ARGS__, (char *)NULL)

/* Loads and expects failure; returns the message. */
#define EXPECT_ERROR(env, err, ...)                                                                      \
	do {                                                                                             \
		struct galgo_config c_;                                                                  \
		int rc_ = LOAD(&c_, env, err, ##__VA_ARGS__);                                            \
		cr_assert_lt(rc_, 0, "expected an error");                                              \
		config_free(&c_);                                                                        \
	} while (0)

/* config_defaults fills in the documented default of every setting. */
Test(config, defaults_are_the_documented_values)
{
	struct galgo_config c;
	cr_assert_eq(config_defaults(&c), 0);
	cr_assert_eq(c.node.id, 1);
	cr_assert_str_eq(c.node.data_dir, "./local_data");
	cr_assert(c.tcp.enabled);
	cr_assert_str_eq(c.tcp.address, "127.0.0.1:8090");
	cr_assert(!c.tcp.tls_enabled);
	cr_assert_str_eq(c.tcp.tls_cert, "");
	cr_assert_str_eq(c.tcp.tls_key, "");
	cr_assert(c.quic.enabled);
	cr_assert_str_eq(c.quic.address, "127.0.0.1:8080");
	cr_assert(c.http.enabled);
	cr_assert_str_eq(c.http.address, "127.0.0.1:3000");
	cr_assert_str_eq(c.log.level, "info");
	cr_assert_eq(c.storage.segment_size, 1ULL << 30);
	cr_assert_eq(c.storage.index_interval, 4096);
	cr_assert_eq(c.storage.durability, CONFIG_DURABILITY_FSYNC);
	cr_assert_eq(c.storage.interval_ms, 1000);
	cr_assert_str_eq(c.root.username, "iggy");
	cr_assert_str_eq(c.root.password, "");
	cr_assert_null(c.config_file);
	cr_assert(!c.help);
	config_free(&c);
	config_free(&c);
}

/* With no file, no environment and no flags, config_load yields the defaults. */
Test(config, load_without_sources_yields_the_defaults)
{
	struct galgo_config c;
	char err[256];
	cr_assert_eq(chdir(tmpdir), 0);
	cr_assert_eq(LOAD(&c, no_env, err), 0, "%s", err);
	cr_assert_eq(c.node.id, 1);
	cr_assert_str_eq(c.tcp.address, "127.0.0.1:8090");
	cr_assert_eq(c.storage.segment_size, 1ULL << 30);
	cr_assert_null(c.config_file);
	config_free(&c);
}

/* Values in the config file override the defaults; settings it does not name keep their defaults. */
Test(config, file_overrides_defaults)
{
	struct galgo_config c;
	char err[256];
	const char *path = write_file("a.ini", "; comment\n"
					       "# another comment\n"
					       "[node]\n"
					       "id = 7\n"
					       "data_dir = /var/lib/galgo\n"
					       "\n"
					       "[tcp]\n"
					       "address = 0.0.0.0:9000\n"
					       "enabled = false\n"
					       "[storage]\n"
					       "segment_size = 512MiB\n"
					       "durability = interval\n"
					       "interval_ms = 250\n"
					       "[log]\n"
					       "level = DEBUG\n");
	cr_assert_eq(LOAD(&c, no_env, err, "--config", (char *)path), 0, "%s", err);
	cr_assert_eq(c.node.id, 7);
	cr_assert_str_eq(c.node.data_dir, "/var/lib/galgo");
	cr_assert_str_eq(c.tcp.address, "0.0.0.0:9000");
	cr_assert(!c.tcp.enabled);
	cr_assert_eq(c.storage.segment_size, 512ULL << 20);
	cr_assert_eq(c.storage.durability, CONFIG_DURABILITY_INTERVAL);
	cr_assert_eq(c.storage.interval_ms, 250);
	cr_assert_str_eq(c.log.level, "debug");
	cr_assert_str_eq(c.quic.address, "127.0.0.1:8080");
	cr_assert_str_eq(c.config_file, path);
	config_free(&c);
}

/* GALGO_CONFIG names the config file when no --config flag is given, and --config wins over it. */
Test(config, galgo_config_env_names_the_file_and_the_flag_wins)
{
	struct galgo_config c;
	char err[256], envvar[160];
	const char *b = write_file("b.ini", "[node]\nid = 2\n");
	char bpath[128];
	snprintf(bpath, sizeof(bpath), "%s", b);
	const char *a = write_file("a.ini", "[node]\nid = 3\n");
	snprintf(envvar, sizeof(envvar), "GALGO_CONFIG=%s", bpath);
	char *env[] = {envvar, NULL};

	cr_assert_eq(LOAD(&c, env, err), 0, "%s", err);
	cr_assert_eq(c.node.id, 2);
	config_free(&c);

	cr_assert_eq(LOAD(&c, env, err, "--config", (char *)a), 0, "%s", err);
	cr_assert_eq(c.node.id, 3);
	config_free(&c);
}

/* Without --config or GALGO_CONFIG, galgo.ini in the working directory is read when it exists. */
Test(config, default_file_is_read_if_present)
{
	struct galgo_config c;
	char err[256];
	cr_assert_eq(chdir(tmpdir), 0);
	write_file(CONFIG_DEFAULT_FILE, "[http]\naddress = localhost:4000\n");
	cr_assert_eq(LOAD(&c, no_env, err), 0, "%s", err);
	cr_assert_str_eq(c.http.address, "localhost:4000");
	cr_assert_str_eq(c.config_file, CONFIG_DEFAULT_FILE);
	config_free(&c);
}

/* A file named explicitly must exist, and the error names it. */
Test(config, missing_explicit_file_is_an_error)
{
	char err[256], envvar[160];
	char path[128];
	snprintf(path, sizeof(path), "%s/nope.ini", tmpdir);
	EXPECT_ERROR(no_env, err, "--config", path);
	cr_assert(strstr(err, path) != NULL, "%s", err);
	cr_assert(strstr(err, "No such file") != NULL, "%s", err);

	snprintf(envvar, sizeof(envvar), "GALGO_CONFIG=%s", path);
	char *env[] = {envvar, NULL};
	EXPECT_ERROR(env, err);
	cr_assert(strstr(err, path) != NULL, "%s", err);
}

/* Environment variables override the file. */
Test(config, env_overrides_file)
{
	struct galgo_config c;
	char err[256];
	const char *path = write_file("a.ini", "[tcp]\naddress = 10.0.0.1:1000\n[storage]\nsegment_size = 1MiB\n");
	char *env[] = {"GALGO_TCP_ADDRESS=10.0.0.2:2000", "GALGO_STORAGE_SEGMENT_SIZE=2MiB",
		       "GALGO_STORAGE_DURABILITY=none", "GALGO_QUIC_ENABLED=no", "GALGO_UNRELATED_THING=x", NULL};
	cr_assert_eq(LOAD(&c, env, err, "--config", (char *)path), 0, "%s", err);
	cr_assert_str_eq(c.tcp.address, "10.0.0.2:2000");
	cr_assert_eq(c.storage.segment_size, 2ULL << 20);
	cr_assert_eq(c.storage.durability, CONFIG_DURABILITY_NONE);
	cr_assert(!c.quic.enabled);
	config_free(&c);
}

/* The process environment is used when envp is NULL. */
Test(config, process_environment_is_read_when_envp_is_null)
{
	struct galgo_config c;
	char err[256];
	cr_assert_eq(chdir(tmpdir), 0);
	setenv("GALGO_NODE_ID", "29", 1);
	cr_assert_eq(LOAD(&c, NULL, err), 0, "%s", err);
	cr_assert_eq(c.node.id, 29);
	config_free(&c);
	unsetenv("GALGO_NODE_ID");
}

/* Flags override environment variables. */
Test(config, flags_override_env)
{
	struct galgo_config c;
	char err[256];
	char *env[] = {"GALGO_TCP_ADDRESS=10.0.0.2:2000", "GALGO_NODE_ID=5", NULL};
	cr_assert_eq(LOAD(&c, env, err, "--tcp.address=10.0.0.3:3000", "--node.id", "6"), 0, "%s", err);
	cr_assert_str_eq(c.tcp.address, "10.0.0.3:3000");
	cr_assert_eq(c.node.id, 6);
	config_free(&c);
}

/* The TLS settings of the TCP listener come from flags, GALGO_ variables or Iggy's IGGY_TCP_TLS_* names. */
Test(config, tcp_tls_settings_and_their_iggy_aliases)
{
	struct galgo_config c;
	char err[256];
	char *env[] = {"IGGY_TCP_TLS_ENABLED=true", "IGGY_TCP_TLS_CERT_FILE=/a/cert.pem", "IGGY_TCP_TLS_KEY_FILE=/a/key.pem",
		       "GALGO_TCP_TLS_KEY=/b/key.pem", NULL};
	cr_assert_eq(LOAD(&c, env, err), 0, "%s", err);
	cr_assert(c.tcp.tls_enabled);
	cr_assert_str_eq(c.tcp.tls_cert, "/a/cert.pem");
	cr_assert_str_eq(c.tcp.tls_key, "/b/key.pem");
	config_free(&c);
	char *none[] = {NULL};
	cr_assert_eq(LOAD(&c, none, err, "--tcp.tls_enabled"), 0, "%s", err);
	cr_assert(c.tcp.tls_enabled);
	config_free(&c);
}

/* Both --section.key=value and --section.key value are accepted, and a later flag wins. */
Test(config, both_flag_syntaxes_are_accepted)
{
	struct galgo_config c;
	char err[256];
	cr_assert_eq(LOAD(&c, no_env, err, "--http.address=127.0.0.1:1", "--quic.address", "[::1]:4433",
			  "--storage.index_interval", "8KiB", "--storage.interval_ms=20", "--root.username", "admin",
			  "--http.address", "127.0.0.1:2"),
		     0, "%s", err);
	cr_assert_str_eq(c.http.address, "127.0.0.1:2");
	cr_assert_str_eq(c.quic.address, "[::1]:4433");
	cr_assert_eq(c.storage.index_interval, 8192);
	cr_assert_eq(c.storage.interval_ms, 20);
	cr_assert_str_eq(c.root.username, "admin");
	config_free(&c);
}

/* A boolean flag alone means true; it takes the next argument as its value unless that is a flag. */
Test(config, boolean_flags_without_value_mean_true)
{
	struct galgo_config c;
	char err[256];
	char *env[] = {"GALGO_TCP_ENABLED=false", "GALGO_HTTP_ENABLED=false", "GALGO_QUIC_ENABLED=true", NULL};
	cr_assert_eq(LOAD(&c, env, err, "--tcp.enabled", "--quic.enabled", "off", "--http.enabled"), 0, "%s", err);
	cr_assert(c.tcp.enabled);
	cr_assert(!c.quic.enabled);
	cr_assert(c.http.enabled);
	config_free(&c);
}

/* Sizes accept binary and decimal suffixes, any case, with or without a space, and plain numbers. */
Test(config, size_suffixes)
{
	static const struct {
		const char *text;
		uint64_t value;
	} ok[] = {
		{"0", 0}, {"65536", 65536}, {"100B", 100}, {"64KiB", 64 << 10}, {"64k", 64 << 10},
		{"64KB", 64000}, {"512MiB", 512ULL << 20}, {"512 MiB", 512ULL << 20}, {"3M", 3ULL << 20},
		{"2MB", 2000000}, {"1GiB", 1ULL << 30}, {"1gib", 1ULL << 30}, {"1G", 1ULL << 30},
		{"5GB", 5000000000ULL}, {"2TiB", 2ULL << 40}, {"1TB", 1000000000000ULL},
		{"18446744073709551615", UINT64_MAX},
	};
	static const char *const bad[] = {"", "KiB", "1.5GiB", "-1", "12 parsecs", "1GiBB", "0x10", "1 G iB"};
	uint64_t v;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		cr_assert_eq(config_parse_size(ok[i].text, &v), 0, "%s", ok[i].text);
		cr_assert_eq(v, ok[i].value, "%s", ok[i].text);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(config_parse_size(bad[i], &v), -EINVAL, "'%s'", bad[i]);
	cr_assert_eq(config_parse_size("18446744073709551616", &v), -ERANGE);
	cr_assert_eq(config_parse_size("17179869184GiB", &v), -ERANGE);

	struct galgo_config c;
	char err[256];
	cr_assert_eq(LOAD(&c, no_env, err, "--storage.segment_size=64KiB"), 0, "%s", err);
	cr_assert_eq(c.storage.segment_size, 65536);
	config_free(&c);
}

/* Addresses are host:port or [ipv6]:port with a port in 1..65535. */
Test(config, address_syntax)
{
	char host[64];
	uint16_t port;
	cr_assert_eq(config_split_address("127.0.0.1:8090", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "127.0.0.1");
	cr_assert_eq(port, 8090);
	cr_assert_eq(config_split_address("[::1]:65535", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(port, 65535);
	cr_assert_eq(config_split_address("my-host.example:1", host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "my-host.example");
	cr_assert_eq(config_split_address("localhost:80", host, 5, &port), -ENAMETOOLONG);
	static const char *const bad[] = {"", "127.0.0.1", ":8090", "127.0.0.1:", "127.0.0.1:65536",
					  "127.0.0.1:80x", "::1:80", "[::1]80", "[]:80", "a b:80", "host:-1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(config_split_address(bad[i], host, sizeof(host), &port), -EINVAL, "'%s'", bad[i]);
}

/* Errors in the file name the file and the line, and say what is wrong. */
Test(config, file_errors_name_file_and_line)
{
	static const struct {
		const char *text;
		int line;
		const char *what;
	} cases[] = {
		{"[node]\nid = 1\ncolour = blue\n", 3, "unknown key 'colour' in section [node]"},
		{"[node]\n[nodes]\nid = 1\n", 3, "unknown section [nodes]"},
		{"id = 1\n", 1, "outside any [section]"},
		{"[node]\n\nid = one\n", 3, "invalid number 'one'"},
		{"[node]\nid = 0\n", 2, "out of range"},
		{"[node]\nid = 4294967296\n", 2, "out of range"},
		{"[storage]\nsegment_size = 1 parsec\n", 2, "invalid size '1 parsec'"},
		{"[storage]\ndurability = sometimes\n", 2, "invalid durability 'sometimes'"},
		{"[tcp]\nenabled = maybe\n", 2, "invalid boolean 'maybe'"},
		{"[tcp]\naddress = 127.0.0.1:65536\n", 2, "invalid address '127.0.0.1:65536'"},
		{"[log]\nlevel = loud\n", 2, "invalid log level 'loud'"},
		{"[node]\ndata_dir =\n", 2, "must not be empty"},
		{"[node]\nid = 2\nthis line is not ini\n", 3, "syntax error"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256], expect[256];
		const char *path = write_file("bad.ini", cases[i].text);
		char p[128];
		snprintf(p, sizeof(p), "%s", path);
		EXPECT_ERROR(no_env, err, "--config", p);
		snprintf(expect, sizeof(expect), "%s:%d: ", p, cases[i].line);
		cr_assert(strncmp(err, expect, strlen(expect)) == 0, "case %zu: '%s' does not start with '%s'", i, err,
			  expect);
		cr_assert(strstr(err, cases[i].what) != NULL, "case %zu: '%s' lacks '%s'", i, err, cases[i].what);
	}
}

/* A line longer than the parser accepts is an error, not a silently cut value. */
Test(config, overlong_file_line_is_an_error)
{
	char text[1024], err[256], p[128];
	memset(text, 'x', sizeof(text));
	memcpy(text, "[node]\ndata_dir = ", 18);
	text[sizeof(text) - 2] = '\n';
	text[sizeof(text) - 1] = '\0';
	snprintf(p, sizeof(p), "%s", write_file("long.ini", text));
	EXPECT_ERROR(no_env, err, "--config", p);
	cr_assert(strstr(err, ":2: line too long") != NULL, "%s", err);
}

/* Errors in environment variables name the variable. */
Test(config, env_errors_name_the_variable)
{
	char err[256];
	char *env1[] = {"GALGO_STORAGE_DURABILITY=always", NULL};
	EXPECT_ERROR(env1, err);
	cr_assert(strstr(err, "environment variable GALGO_STORAGE_DURABILITY: ") == err, "%s", err);
	cr_assert(strstr(err, "'always'") != NULL, "%s", err);

	char *env2[] = {"GALGO_HTTP_ADDRESS=localhost", NULL};
	EXPECT_ERROR(env2, err);
	cr_assert(strstr(err, "environment variable GALGO_HTTP_ADDRESS: invalid address") == err, "%s", err);

	char *env3[] = {"GALGO_STORAGE_INTERVAL_MS=10s", NULL};
	EXPECT_ERROR(env3, err);
	cr_assert(strstr(err, "environment variable GALGO_STORAGE_INTERVAL_MS: invalid number") == err, "%s", err);

	char *env4[] = {"IGGY_ROOT_USERNAME=", NULL};
	EXPECT_ERROR(env4, err);
	cr_assert(strstr(err, "environment variable IGGY_ROOT_USERNAME: must not be empty") == err, "%s", err);
}

/* Errors in flags name the flag: bad values, unknown flags, missing values and stray arguments. */
Test(config, flag_errors_name_the_flag)
{
	char err[256];
	EXPECT_ERROR(no_env, err, "--tcp.address=nowhere");
	cr_assert(strstr(err, "flag --tcp.address: invalid address 'nowhere'") == err, "%s", err);

	EXPECT_ERROR(no_env, err, "--storage.segment_size", "lots");
	cr_assert(strstr(err, "flag --storage.segment_size: invalid size 'lots'") == err, "%s", err);

	EXPECT_ERROR(no_env, err, "--storage.segment_size=8GiB");
	cr_assert(strstr(err, "flag --storage.segment_size: '8GiB' is out of range") == err, "%s", err);

	EXPECT_ERROR(no_env, err, "--tcp.adress=127.0.0.1:1");
	cr_assert(strstr(err, "unknown flag --tcp.adress") == err, "%s", err);

	EXPECT_ERROR(no_env, err, "--verbose");
	cr_assert(strstr(err, "unknown flag --verbose") == err, "%s", err);

	EXPECT_ERROR(no_env, err, "--node.id");
	cr_assert(strstr(err, "flag --node.id needs a value") == err, "%s", err);

	EXPECT_ERROR(no_env, err, "--config");
	cr_assert(strstr(err, "flag --config needs a value") == err, "%s", err);

	EXPECT_ERROR(no_env, err, "stray");
	cr_assert(strstr(err, "unexpected argument 'stray'") == err, "%s", err);

	EXPECT_ERROR(no_env, err, "--with-default-root-credentials=yes");
	cr_assert(strstr(err, "--with-default-root-credentials takes no value") != NULL, "%s", err);
}

/* A bad flag is reported even when the config file is missing: the command line is checked first. */
Test(config, command_line_is_checked_before_the_file)
{
	char err[256];
	EXPECT_ERROR(no_env, err, "--config", "/nonexistent/galgo.ini", "--bogus");
	cr_assert(strstr(err, "unknown flag --bogus") == err, "%s", err);
}

/* --with-default-root-credentials sets the password to "iggy" only when no source set one. */
Test(config, with_default_root_credentials)
{
	struct galgo_config c;
	char err[256];
	cr_assert_eq(LOAD(&c, no_env, err), 0, "%s", err);
	cr_assert_str_eq(c.root.password, "");
	config_free(&c);

	cr_assert_eq(LOAD(&c, no_env, err, "--with-default-root-credentials"), 0, "%s", err);
	cr_assert_str_eq(c.root.username, "iggy");
	cr_assert_str_eq(c.root.password, "iggy");
	config_free(&c);

	cr_assert_eq(LOAD(&c, no_env, err, "--with-default-root-credentials", "--root.password=s3cret"), 0, "%s",
		     err);
	cr_assert_str_eq(c.root.password, "s3cret");
	config_free(&c);

	char *env[] = {"GALGO_ROOT_PASSWORD=fromenv", NULL};
	cr_assert_eq(LOAD(&c, env, err, "--with-default-root-credentials"), 0, "%s", err);
	cr_assert_str_eq(c.root.password, "fromenv");
	config_free(&c);
}

/* GALGO_ROOT_PASSWORD and IGGY_ROOT_PASSWORD set the password; GALGO_ROOT_PASSWORD wins over the alias. */
Test(config, root_password_environment_variables)
{
	struct galgo_config c;
	char err[256];
	cr_assert_eq(chdir(tmpdir), 0);

	setenv("IGGY_ROOT_PASSWORD", "iggy-pw", 1);
	cr_assert_eq(LOAD(&c, NULL, err), 0, "%s", err);
	cr_assert_str_eq(c.root.password, "iggy-pw");
	config_free(&c);

	setenv("GALGO_ROOT_PASSWORD", "galgo-pw", 1);
	cr_assert_eq(LOAD(&c, NULL, err), 0, "%s", err);
	cr_assert_str_eq(c.root.password, "galgo-pw");
	config_free(&c);

	unsetenv("IGGY_ROOT_PASSWORD");
	cr_assert_eq(LOAD(&c, NULL, err, "--root.password", "flag-pw"), 0, "%s", err);
	cr_assert_str_eq(c.root.password, "flag-pw");
	config_free(&c);

	unsetenv("GALGO_ROOT_PASSWORD");
	setenv("IGGY_ROOT_USERNAME", "boss", 1);
	cr_assert_eq(LOAD(&c, NULL, err), 0, "%s", err);
	cr_assert_str_eq(c.root.username, "boss");
	cr_assert_str_eq(c.root.password, "");
	config_free(&c);
	unsetenv("IGGY_ROOT_USERNAME");
}

/* --help is reported to the caller and wins over everything else on the command line. */
Test(config, help_flag_is_reported)
{
	struct galgo_config c;
	char err[256];
	cr_assert_eq(LOAD(&c, no_env, err, "--bogus", "--help"), 0, "%s", err);
	cr_assert(c.help);
	config_free(&c);
	cr_assert_eq(LOAD(&c, no_env, err, "-h"), 0, "%s", err);
	cr_assert(c.help);
	config_free(&c);
}

/* The help text lists every setting's flag, environment variable and default. */
Test(config, help_lists_every_setting)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	config_help(f, "galgod");
	fclose(f);
	static const char *const expect[] = {
		"--node.id=N", "GALGO_NODE_ID", "--node.data_dir", "GALGO_NODE_DATA_DIR", "\"./local_data\"",
		"--tcp.enabled", "GALGO_TCP_ENABLED", "--tcp.address=HOST:PORT", "GALGO_TCP_ADDRESS",
		"\"127.0.0.1:8090\"", "GALGO_QUIC_ENABLED", "GALGO_QUIC_ADDRESS", "\"127.0.0.1:8080\"",
		"GALGO_HTTP_ENABLED", "GALGO_HTTP_ADDRESS", "\"127.0.0.1:3000\"", "GALGO_LOG_LEVEL",
		"--storage.segment_size=SIZE", "GALGO_STORAGE_SEGMENT_SIZE", "\"1GiB\"", "GALGO_STORAGE_INDEX_INTERVAL",
		"\"4KiB\"", "GALGO_STORAGE_DURABILITY", "\"fsync\"", "GALGO_STORAGE_INTERVAL_MS", "\"1000\"",
		"GALGO_ROOT_USERNAME", "IGGY_ROOT_USERNAME", "GALGO_ROOT_PASSWORD", "IGGY_ROOT_PASSWORD",
		"--with-default-root-credentials", "--config", "GALGO_CONFIG",
	};
	for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++)
		cr_assert(strstr(text, expect[i]) != NULL, "help lacks %s", expect[i]);
	free(text);
}

/* config_dump shows every setting on one line and never the password. */
Test(config, dump_shows_settings_but_not_the_password)
{
	struct galgo_config c;
	char err[256], buf[2048];
	cr_assert_eq(LOAD(&c, no_env, err, "--root.password=hunter2", "--storage.segment_size=65536"), 0, "%s", err);
	cr_assert_eq(config_dump(&c, buf, sizeof(buf)), 0);
	cr_assert(strstr(buf, "node.id=1 ") == buf, "%s", buf);
	cr_assert(strstr(buf, "tcp.address=127.0.0.1:8090") != NULL, "%s", buf);
	cr_assert(strstr(buf, "storage.segment_size=64KiB") != NULL, "%s", buf);
	cr_assert(strstr(buf, "storage.durability=fsync") != NULL, "%s", buf);
	cr_assert(strstr(buf, "root.password=(set)") != NULL, "%s", buf);
	cr_assert(strstr(buf, "hunter2") == NULL, "%s", buf);
	cr_assert(strchr(buf, '\n') == NULL);

	char small[16];
	cr_assert_eq(config_dump(&c, small, sizeof(small)), -ENOSPC);
	cr_assert_lt(strlen(small), sizeof(small));
	config_free(&c);
}

/* node.id_from_hostname: a StatefulSet pod's ordinal plus one; anything else is refused. */
Test(config, a_node_id_comes_from_a_host_name_ending_in_its_ordinal)
{
	uint32_t id = 99;
	cr_assert_eq(config_id_from_hostname("galgo-0", &id), 0);
	cr_assert_eq(id, 1);
	cr_assert_eq(config_id_from_hostname("my-galgo-12", &id), 0);
	cr_assert_eq(id, 13);
	cr_assert_eq(config_id_from_hostname("galgo-30.galgo-peer.default.svc.cluster.local", &id), 0);
	cr_assert_eq(id, 31);
	const char *bad[] = {"galgo", "galgo-", "galgo-31", "galgo-01", "galgo-123", "0", "-1", "galgo1",
			     "galgo-x", "galgo.svc-1", ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		id = 99;
		cr_assert_eq(config_id_from_hostname(bad[i], &id), -EINVAL, "%s", bad[i]);
		cr_assert_eq(id, 99, "%s changed the id", bad[i]);
	}
	/* Through config_load, with this machine's host name: the id it gives, or a clear error. */
	struct galgo_config c;
	char err[256], host[256];
	cr_assert_eq(gethostname(host, sizeof(host)), 0);
	uint32_t want = 0;
	int expect = config_id_from_hostname(host, &want);
	int rv = LOAD(&c, no_env, err, "--node.id_from_hostname");
	cr_assert_eq(rv, expect, "%s: %s", host, err);
	if (rv == 0)
		cr_assert_eq(c.node.id, want);
	else
		cr_assert(strstr(err, "does not end in -N") != NULL, "%s", err);
	config_free(&c);
}
