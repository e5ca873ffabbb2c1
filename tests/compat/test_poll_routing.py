"""Iggy's poll routing on the wire (node/srv_poll.c, "Poll routing"): 103/123 name a primary and a parent
session, 14 attaches a data connection to it, 104 polls there with the parent's group membership. The
SDK only uses this exchange against more than one node; these tests drive it raw, so they run on every
binary transport and prove that bad input gets its error code and changes nothing."""

from __future__ import annotations

import asyncio
import struct

import pytest
from apache_iggy import Consumer, PollingStrategy, SendMessage

from galgo_compat import expect_error, payloads_of, poll

STREAM, TOPIC = 0, 0


def ident(n: int) -> bytes:
    """A numeric Identifier."""
    return bytes([1, 4]) + struct.pack("<I", n)


def consumer(kind: int, n: int) -> bytes:
    """A Consumer: kind 1 single consumer, 2 consumer group."""
    return bytes([kind]) + ident(n)


def offset_prefix(kind: int = 1, cid: int = 7, stream: int = STREAM, topic: int = TOPIC, pid: int = 0) -> bytes:
    """[Consumer][stream][topic][flag 1][partition]: a GetConsumerOffset body, the body of 123."""
    return consumer(kind, cid) + ident(stream) + ident(topic) + bytes([1]) + struct.pack("<I", pid)


def poll_body(kind: int = 1, cid: int = 7, stream: int = STREAM, topic: int = TOPIC, pid: int = 0, count: int = 10,
              auto_commit: int = 1) -> bytes:
    """A PollMessages body with the Next strategy: the body of 100, 103 and 104."""
    return offset_prefix(kind, cid, stream, topic, pid) + bytes([5]) + struct.pack("<QIB", 0, count, auto_commit)


def parse_node(body: bytes, at: int) -> tuple[tuple, int]:
    """One node of GetClusterMetadata at `at`: ((name, ip, tcp, quic, http, ws, role, status), end)."""
    (n,) = struct.unpack_from("<I", body, at)
    name = body[at + 4 : at + 4 + n]
    at += 4 + n
    (n,) = struct.unpack_from("<I", body, at)
    ip = body[at + 4 : at + 4 + n]
    at += 4 + n
    return (name, ip) + struct.unpack_from("<HHHHBB", body, at), at + 10


def cluster_nodes(body: bytes) -> list[tuple]:
    """The nodes of a GetClusterMetadata (12) reply."""
    (n,) = struct.unpack_from("<I", body, 0)
    (count,) = struct.unpack_from("<I", body, 4 + n)
    at, nodes = 8 + n, []
    for _ in range(count):
        node, at = parse_node(body, at)
        nodes.append(node)
    return nodes


async def my_client_id(c) -> int:
    """GetMe (20): the session's client id."""
    return struct.unpack_from("<I", await c.send_binary_request(20, b""), 0)[0]


async def stored_offset(c, kind: int = 1, cid: int = 7) -> int | None:
    """GetConsumerOffset (120) on partition 0: the stored offset, None when there is none."""
    body = await c.send_binary_request(120, offset_prefix(kind, cid))
    return None if body == b"" else struct.unpack_from("<Q", body, 12)[0]


async def setup(c, n: int = 3) -> None:
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    await c.send_messages("s", "t", 0, [SendMessage(f"m{i}") for i in range(n)])


async def test_a_poll_route_names_the_answering_node_and_the_session_to_attach_to(server):
    """103 and 123 answer [client id u128][session u64][watermark u64] and this node as listed in code 12."""
    c = await server.client()
    await setup(c)
    route = await c.send_binary_request(103, poll_body())
    client_lo, client_hi, session, _watermark = struct.unpack_from("<QQQQ", route, 0)
    node, end = parse_node(route, 32)
    assert end == len(route) >= 52
    assert (client_lo, client_hi) == (await my_client_id(c), 0)
    assert session > 0
    assert node[6:] == (0, 0)  # role 0 (the primary), healthy
    listed = [n for n in cluster_nodes(await c.send_binary_request(12, b"")) if n[0] == node[0]]
    assert len(listed) == 1 and listed[0][:6] == node[:6]
    assert node[2] != 0  # a TCP port the SDK can dial
    offset_route = await c.send_binary_request(123, offset_prefix())
    assert offset_route == route[:24] + offset_route[24:32] + route[32:]
    assert await stored_offset(c) is None  # routing stores nothing


async def test_an_attached_data_session_polls_with_104_and_commits_the_consumers_offset(server):
    """14 with a route's first 32 bytes attaches a second connection; 104 there polls like 100 and auto-commits."""
    parent = await server.client()
    await setup(parent, 3)
    route = await parent.send_binary_request(103, poll_body())
    data = await server.client()
    assert await data.send_binary_request(14, route[:32]) == b""
    reply = await data.send_binary_request(104, poll_body(count=2))
    pid, current, count = struct.unpack_from("<IQI", reply, 0)
    assert (pid, current, count) == (0, 2, 2)
    assert await stored_offset(parent) == 1
    reply = await data.send_binary_request(104, poll_body(count=10))
    assert struct.unpack_from("<IQI", reply, 0) == (0, 2, 1)
    assert await stored_offset(parent) == 2


async def test_a_data_session_polls_a_group_as_its_parent_and_leaving_it_keeps_the_parents_membership(server):
    """104 checks group ownership against the parent; the data session's logout leaves the parent a member."""
    parent = await server.client()
    await setup(parent, 2)
    await parent.create_consumer_group("s", "t", "g")
    await parent.join_consumer_group("s", "t", "g")
    body = poll_body(kind=2, cid=0)
    route = await parent.send_binary_request(103, body)
    data = await server.client()
    # Not attached yet: 104 is refused, and 100 as itself (no member) gets the resync sentinel.
    await expect_error(data.send_binary_request(104, body), r"unauthenticated")
    fenced = await data.send_binary_request(100, body)
    assert struct.unpack_from("<IQI", fenced, 0) == (0xFFFFFFFF, 0, 0)
    assert await data.send_binary_request(14, route[:32]) == b""
    reply = await data.send_binary_request(104, body)
    assert struct.unpack_from("<IQI", reply, 0) == (0, 1, 2)
    assert await stored_offset(parent, kind=2, cid=0) == 1
    await data.logout_user()
    group = await parent.get_consumer_group("s", "t", "g")
    assert group.members_count == 1


async def test_bad_routing_and_attach_requests_get_their_error_and_change_nothing(server):
    """Malformed bodies get 3, missing resources their not-found code, a wrong parent 30, 104 unattached 40."""
    c = await server.client()
    await setup(c)
    for code in (103, 123):
        body = poll_body() if code == 103 else offset_prefix()
        await expect_error(c.send_binary_request(code, body[:-1]), r"invalid command")
        await expect_error(c.send_binary_request(code, body + b"\0"), r"invalid command")
        await expect_error(c.send_binary_request(code, (poll_body(stream=9) if code == 103 else offset_prefix(stream=9))),
                           r"stream .*not found|stream_not_found|1009")
        await expect_error(c.send_binary_request(code, (poll_body(topic=9) if code == 103 else offset_prefix(topic=9))),
                           r"topic .*not found|topic_not_found|2010")
        await expect_error(c.send_binary_request(code, (poll_body(pid=5) if code == 103 else offset_prefix(pid=5))),
                           r"partition .*not found|partition_not_found|3007")
        await expect_error(c.send_binary_request(code, (poll_body(kind=2, cid=4) if code == 103
                                                        else offset_prefix(kind=2, cid=4))),
                           r"consumer group .*not found|group_not_found|5000")
    await expect_error(c.send_binary_request(103, poll_body(auto_commit=0)), r"invalid command")
    route = await c.send_binary_request(103, poll_body())
    data = await server.client()
    await expect_error(data.send_binary_request(104, poll_body()), r"unauthenticated")
    await expect_error(data.send_binary_request(14, route[:31]), r"invalid command")
    await expect_error(data.send_binary_request(14, route[:32] + b"\0"), r"invalid command")
    wrong_session = route[:16] + struct.pack("<Q", struct.unpack_from("<Q", route, 16)[0] + 1000) + route[24:32]
    await expect_error(data.send_binary_request(14, wrong_session), r"stale")
    wrong_client = struct.pack("<QQ", 0, 1) + route[16:32]
    await expect_error(data.send_binary_request(14, wrong_client), r"stale")
    # Another user cannot borrow this session.
    await c.create_user("other", "secret-pw", permissions=None)
    other = await server.client("other", "secret-pw")
    await expect_error(other.send_binary_request(14, route[:32]), r"stale")
    # Nor ask for a route of a topic it may not poll.
    await expect_error(other.send_binary_request(103, poll_body()), r"unauthori[sz]ed")
    await expect_error(other.send_binary_request(123, offset_prefix()), r"unauthori[sz]ed")
    # None of it attached anything or stored an offset.
    await expect_error(data.send_binary_request(104, poll_body()), r"unauthenticated")
    assert await stored_offset(c) is None
    # Once the parent logs out, an attached session's polls are stale.
    assert await data.send_binary_request(14, route[:32]) == b""
    await c.logout_user()
    await expect_error(data.send_binary_request(104, poll_body()), r"stale")  # (the SDK then drops the connection)
    again = await server.client()
    assert await stored_offset(again) is None


@pytest.mark.timeout_s(90)
async def test_a_routed_data_connection_idle_past_the_heartbeat_timeout_keeps_serving(server):
    """The SDK never pings its data connection: 40 s of silence (timeout 36 s) must not cost a poll (57)."""
    if server.transport != "cluster":
        pytest.skip("the SDK routes polls only against more than one node")
    c = await server.client()
    await setup(c, 2)
    reader, nxt = Consumer.Single("idle"), PollingStrategy.Next()
    assert payloads_of(await poll(c, "s", "t", strategy=nxt, count=1, consumer=reader, auto_commit=True)) == [b"m0"]
    await asyncio.sleep(40)
    assert payloads_of(await poll(c, "s", "t", strategy=nxt, count=1, consumer=reader, auto_commit=True)) == [b"m1"]
