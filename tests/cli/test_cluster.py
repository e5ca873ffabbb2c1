"""iggy-cli 0.14.0, every command group, against a three-node cluster: any node serves every request.

Every group runs against each of the three nodes, each over a different transport (node 1 over TCP and
WebSocket, node 2 over QUIC, node 3 over HTTP), and what one node did is seen through another.
"""

from __future__ import annotations

import pytest

from conftest import Cli
from groups import GROUPS, names_in, prop, row_of, rows, run_group, xfail_param

_PURGE = ("a purge is refused by a cluster of more than one node (FeatureUnavailable): it must become a "
          "partition-log entry (as in tests/compat's CLUSTER_SKIPS)")
CLUSTER_XFAILS = {("purge", t): _PURGE for t in ("tcp", "quic", "http", "ws")}

TARGETS = [(1, "tcp"), (2, "quic"), (3, "http"), (1, "ws")]


def _params():
    out = []
    for node_id, transport in TARGETS:
        for g in GROUPS:
            p = xfail_param(g, transport, CLUSTER_XFAILS)
            out.append(pytest.param(node_id, *p.values, marks=p.marks, id=f"node{node_id}-{p.id}"))
    return out


@pytest.mark.parametrize("node_id,group,transport", _params())
def test_command_group_on_a_node(cluster, home, node_id, group, transport):
    node = cluster[node_id - 1]
    run_group(group, Cli(node, transport, home), f"n{node_id}{transport}", cluster)


@pytest.mark.parametrize("transport", ["tcp", "quic", "http", "ws"])
def test_what_one_node_creates_every_node_lists(cluster, home, transport):
    one, two, three = (Cli(n, transport, home) for n in cluster)
    s = f"across-{transport}"
    one("stream", "create", s)
    try:
        one("topic", "create", s, "t", "2", "none")
        assert row_of(three("stream", "list"), 2, s) is not None
        assert prop(two("topic", "get", s, "t"), "Partitions count") == "2"
        sent = [f"{transport}-{i}" for i in range(3)]
        two("message", "send", "-p", "1", s, "t", *sent)
        out = three("message", "poll", "--offset", "0", "-m", "10", s, "t", "1")
        assert [r[4] for r in rows(out) if r[0].isdigit()] == sent, out
        three("user", "create", f"carol{transport}", "secret-1")
        assert f"carol{transport}" in names_in(one("user", "list"), 3)
        one("user", "delete", f"carol{transport}")
        assert f"carol{transport}" not in names_in(two("user", "list"), 3)
    finally:
        three("stream", "delete", s)
    assert row_of(one("stream", "list"), 2, s) is None
