"""Polls through a node that hosts no replica of the partition (node/srv_poll.c poll_forward_to; POLL_FWD in
node/cluster.h). Against the three-node cluster a topic created with replication_factor 1 puts each of its
three partitions on one node, so the node the SDK talks to (node 1) hosts at most one of them: the SDK's
routed auto-commit polls (103, 14, 104 on node 1) and its plain polls of the others are forwarded to their
replica and relayed. Elsewhere (one node hosts everything) the same test checks nothing new but must pass."""

from __future__ import annotations

import pytest
from apache_iggy import Consumer, PollingStrategy

from galgo_compat import messages, numbered, offsets_of, payloads_of, poll

PARTS, N = 3, 6


async def setup_rf1(c) -> None:
    await c.create_stream("s")
    await c.create_topic("s", "t", PARTS, options={"replication_factor": "1"})
    for pid in range(PARTS):
        await c.send_messages("s", "t", pid, messages(*numbered(f"p{pid}", N)))


async def test_an_sdk_consumer_polls_every_partition_of_a_replication_factor_1_topic_with_auto_commit(server):
    """Each partition is read whole through node 1, by offset and with Next and auto-commit, in steps."""
    if server.transport == "http":
        pytest.skip("the HTTP listener forwards topic options as it maps them (not the SDK's extra keys)")
    c = await server.client()
    await setup_rf1(c)
    for pid in range(PARTS):
        want = numbered(f"p{pid}", N)
        got = await poll(c, "s", "t", partition_id=pid, strategy=PollingStrategy.Offset(0), count=100)
        assert payloads_of(got) == want
        assert offsets_of(got) == list(range(N))
        reader, nxt = Consumer.Single(f"reader-{pid}"), PollingStrategy.Next()
        first = await poll(c, "s", "t", partition_id=pid, strategy=nxt, count=4, consumer=reader, auto_commit=True)
        rest = await poll(c, "s", "t", partition_id=pid, strategy=nxt, count=100, consumer=reader, auto_commit=True)
        assert payloads_of(first) == want[:4]
        assert payloads_of(rest) == want[4:]
        assert await poll(c, "s", "t", partition_id=pid, strategy=nxt, count=100, consumer=reader,
                          auto_commit=True) == []


async def test_a_consumer_group_member_reads_every_partition_once_through_one_node(server):
    """A group's only member owns the three partitions and reads each message once with auto-commit."""
    if server.transport == "http":
        pytest.skip("the HTTP listener forwards topic options as it maps them (not the SDK's extra keys)")
    c = await server.client()
    await setup_rf1(c)
    await c.create_consumer_group("s", "t", "g")
    await c.join_consumer_group("s", "t", "g")
    group, nxt = Consumer.Group("g"), PollingStrategy.Next()
    for pid in range(PARTS):
        got = await poll(c, "s", "t", partition_id=pid, strategy=nxt, count=100, consumer=group, auto_commit=True)
        assert payloads_of(got) == numbered(f"p{pid}", N)
        assert await poll(c, "s", "t", partition_id=pid, strategy=nxt, count=100, consumer=group,
                          auto_commit=True) == []
