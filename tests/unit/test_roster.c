/*
 * The roster syntax (cluster.nodes, node/cluster.h): ID@HOST:RAFT_PORT[:TCP_PORT[:QUIC_PORT[:HTTP_PORT]]],
 * comma-separated, ids 1..31, sorted by id on the way out; what it refuses and why.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "node/cluster.h"

static int parse(const char *s, struct clu_node *out, char *err)
{
	return clu_roster_parse(s, out, CLU_MAX_NODES, err, 256);
}

Test(roster, nodes_come_out_sorted_by_id_with_the_ports_given)
{
	struct clu_node n[CLU_MAX_NODES];
	char err[256];
	cr_assert_eq(parse("3@galgo-2.galgo.svc:8400:8090, 1@10.0.0.1:7000,2@h_2:1:2:3:4", n, err), 3, "%s", err);
	cr_assert_eq(n[0].id, 1);
	cr_assert_str_eq(n[0].host, "10.0.0.1");
	cr_assert(n[0].raft_port == 7000 && n[0].tcp_port == 0 && n[0].quic_port == 0 && n[0].http_port == 0);
	cr_assert_eq(n[1].id, 2);
	cr_assert(n[1].raft_port == 1 && n[1].tcp_port == 2 && n[1].quic_port == 3 && n[1].http_port == 4);
	cr_assert_eq(n[2].id, 3);
	cr_assert_str_eq(n[2].host, "galgo-2.galgo.svc");
	cr_assert_eq(n[2].tcp_port, 8090);
}

Test(roster, a_client_port_may_be_0_the_raft_port_may_not)
{
	struct clu_node n[CLU_MAX_NODES];
	char err[256];
	cr_assert_eq(parse("1@h:8400:0:0:8300", n, err), 1, "%s", err);
	cr_assert(n[0].tcp_port == 0 && n[0].http_port == 8300);
	cr_assert_eq(parse("1@h:0:8100", n, err), -EINVAL);
	cr_assert_neq(strstr(err, "bad port"), NULL, "%s", err);
}

Test(roster, bad_rosters_are_refused_with_a_reason)
{
	struct clu_node n[CLU_MAX_NODES];
	char err[256];
	static const struct {
		const char *roster, *why;
	} bad[] = {
		{"", "empty roster"},
		{" , ", "empty roster"},
		{"0@h:1", "ID 1..31"},
		{"32@h:1", "ID 1..31"},
		{"x@h:1", "ID 1..31"},
		{"1@:1", "bad host"},
		{"1@h", "bad host"},
		{"1@h!:1", "bad character in host"},
		{"1@h:65536", "bad port"},
		{"1@h:1:2:3:4:5", "unexpected ':'"},
		{"1@h:1x", "unexpected 'x'"},
		{"1@h:1,1@g:2", "listed twice"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(parse(bad[i].roster, n, err), -EINVAL, "'%s' was taken", bad[i].roster);
		cr_assert_neq(strstr(err, bad[i].why), NULL, "'%s': '%s', expected '%s'", bad[i].roster, err, bad[i].why);
	}
	char many[1024] = "";
	for (int id = 1; id <= CLU_MAX_NODES + 1; id++) {
		size_t l = strlen(many);
		snprintf(many + l, sizeof(many) - l, "%s%d@h:%d", id > 1 ? "," : "", id, 1000 + id);
	}
	cr_assert_eq(parse(many, n, err), -EINVAL);
	cr_assert_neq(strstr(err, "more than"), NULL, "%s", err);
}
