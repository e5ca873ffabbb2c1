"""System calls: ping, get_stats, describe_options, connecting and logging in, raw requests."""

from __future__ import annotations

import socket
import struct
from datetime import timedelta

import pytest
from apache_iggy import (
    AutoLogin,
    GlobalPermissions,
    IggyClient,
    OptionSpec,
    Permissions,
    SendMessage,
    Stats,
)

from galgo_compat import (
    ROOT_PASSWORD,
    ROOT_USERNAME,
    eventually,
    expect_error,
    now_us,
)

# The topic option keys of the reference server's catalog (protocol reference §2.3).
TOPIC_OPTION_KEYS = {
    "compression_algorithm",
    "message_expiry",
    "max_topic_size",
    "segment_size",
    "enforce_fsync",
    "messages_required_to_save",
    "size_of_messages_required_to_save",
    "preallocate_segments",
}


async def test_ping_is_answered_before_and_after_login(server):
    """Ping is the one request allowed before login, and it is answered after login too."""
    c = await server.client(username=None)
    await c.ping()
    await c.login_user(ROOT_USERNAME, ROOT_PASSWORD)
    await c.ping()


async def test_get_stats_reports_this_process_and_the_resources_it_holds(server):
    """get_stats reports galgod's pid, host, start time and exact counts of streams, topics, etc."""
    c = await server.client()
    await server.client()  # a second connected client (server._clients keeps it alive)
    await c.create_stream("stats-a")
    await c.create_stream("stats-b")
    await c.create_topic("stats-a", "t1", 1)
    await c.create_topic("stats-a", "t2", 2)
    await c.create_topic("stats-b", "t3", 3)
    payload_bytes = 0
    for i in range(5):
        await c.send_messages("stats-a", "t1", 0, [SendMessage(f"a-{i}")])
        payload_bytes += len(f"a-{i}")
    await c.send_messages("stats-b", "t3", 2, [SendMessage(b"b-0"), SendMessage(b"b-1")])
    payload_bytes += 6
    await c.create_consumer_group("stats-b", "t3", "g")

    async def settled():
        s = await c.get_stats()
        return s if s.clients_count == 2 else None

    stats = await eventually(settled, timeout=3, what="clients_count == 2 (two connected clients)")
    assert isinstance(stats, Stats)
    assert stats.process_id == server.pid
    assert stats.streams_count == 2
    assert stats.topics_count == 3
    assert stats.partitions_count == 6
    assert stats.segments_count >= 6
    assert stats.messages_count == 7
    assert stats.consumer_groups_count == 1
    assert stats.clients_count == 2
    assert stats.messages_size_bytes >= payload_bytes
    assert stats.hostname == socket.gethostname()
    assert stats.os_name
    assert stats.iggy_server_version
    assert stats.memory_usage > 0
    assert stats.total_memory >= stats.available_memory > 0
    assert stats.threads_count >= 1
    assert stats.total_disk_space >= stats.free_disk_space > 0
    # start_time and run_time have whole-second precision.
    assert server.started_at_us - 2_000_000 <= stats.start_time <= now_us()
    assert timedelta(0) <= stats.run_time <= timedelta(seconds=(now_us() - server.started_at_us) / 1e6 + 2)
    assert stats.cpu_usage >= 0 and stats.total_cpu_usage >= 0
    assert stats.read_bytes >= 0 and stats.written_bytes >= 0
    assert isinstance(stats.cache_metrics, dict)
    assert stats.iggy_server_semver is None or stats.iggy_server_semver > 0


async def test_get_stats_is_denied_to_a_user_without_server_permissions(server):
    """get_stats needs read_servers: a user without it gets Unauthorized, one with it gets stats."""
    root = await server.client()
    await root.create_user("no-servers", "secret-1")
    await root.create_user(
        "reader", "secret-2", permissions=Permissions(GlobalPermissions(read_servers=True))
    )
    plain = await server.client("no-servers", "secret-1")
    await expect_error(plain.get_stats(), r"unauthori[sz]ed")
    reader = await server.client("reader", "secret-2")
    stats = await reader.get_stats()
    assert stats.process_id == server.pid


async def test_describe_options_lists_the_topic_option_catalog(server):
    """describe_options("topic") lists every topic option key once, each with a kind and a description."""
    c = await server.client()
    specs = await c.describe_options("topic")
    assert all(isinstance(s, OptionSpec) for s in specs)
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys)), f"duplicate keys in {keys}"
    assert TOPIC_OPTION_KEYS <= set(keys), f"missing keys: {TOPIC_OPTION_KEYS - set(keys)}"
    for spec in specs:
        assert spec.kind, spec
        assert spec.description, spec


async def test_describe_options_for_the_stream_and_user_scopes_is_empty(server):
    """The stream and user option catalogs are empty."""
    c = await server.client()
    assert await c.describe_options("stream") == []
    assert await c.describe_options("user") == []


async def test_describe_options_rejects_an_unknown_scope(server):
    """describe_options with a scope other than topic, stream or user raises ValueError."""
    c = await server.client()
    with pytest.raises(ValueError):
        await c.describe_options("partition")


async def test_a_client_from_a_connection_string_logs_in_on_connect(server):
    """IggyClient.from_connection_string with credentials is authenticated right after connect()."""
    # iggy:// is TCP; the QUIC run uses the iggy+quic:// scheme on the QUIC port (whose option for the
    # same thing is named reconnection_max_retries), the WebSocket run iggy+ws:// on the WebSocket port.
    if server.transport == "quic":
        url = f"iggy+quic://{ROOT_USERNAME}:{ROOT_PASSWORD}@{server.quic_address}?reconnection_max_retries=0"
    elif server.transport == "ws":
        url = f"iggy+ws://{ROOT_USERNAME}:{ROOT_PASSWORD}@{server.ws_address}?reconnection_retries=0"
    else:
        url = f"iggy://{ROOT_USERNAME}:{ROOT_PASSWORD}@{server.address}?reconnection_retries=0"
    raw = IggyClient.from_connection_string(url)
    c = server.wrap(raw)
    await c.connect()
    await c.create_stream("via-connection-string")
    assert [s.name for s in await c.get_streams()] == ["via-connection-string"]


async def test_a_client_with_auto_login_is_authenticated_after_connect(server):
    """A TcpConfig (QuicConfig) with AutoLogin.username_password logs in during connect()."""
    raw = IggyClient(server.config(auto_login=AutoLogin.username_password(ROOT_USERNAME, ROOT_PASSWORD)))
    c = server.wrap(raw)
    await c.connect()
    assert await c.get_streams() == []


async def test_requests_before_login_are_rejected_as_unauthenticated(server):
    """Before login a read fails with Unauthenticated and a write fails without creating anything."""
    anon = await server.client(username=None)
    await expect_error(anon.get_streams(), r"unauthenticated")
    await expect_error(anon.get_users(), r"unauthenticated")
    with pytest.raises(RuntimeError):
        await anon.create_stream("must-not-exist")
    root = await server.client()
    assert await root.get_streams() == []


async def test_a_raw_ping_returns_an_empty_body(server):
    """send_binary_request(1 = Ping) returns an empty body."""
    c = await server.client()
    assert await c.send_binary_request(1, b"") == b""


async def test_a_raw_get_stats_returns_the_stats_layout(server):
    """send_binary_request(10 = GetStats) returns the Stats layout: pid at 0, streams_count at 76."""
    c = await server.client()
    await c.create_stream("raw-stats")
    body = await c.send_binary_request(10, b"")
    assert len(body) >= 108 + 5 * 4 + 4 + 4 + 4 + 8 + 8
    (pid,) = struct.unpack_from("<I", body, 0)
    streams, topics, partitions = struct.unpack_from("<III", body, 76)
    assert pid == server.pid
    assert (streams, topics, partitions) == (1, 0, 0)


async def test_a_raw_get_streams_returns_stream_headers_in_wire_layout(server):
    """send_binary_request(201 = GetStreams) returns one 33-byte+name+options header per stream."""
    c = await server.client()
    before = now_us()
    await c.create_stream("raw-alpha")
    after = now_us()
    body = await c.send_binary_request(201, b"")
    stream_id, created_at, topics_count, size, messages_count = struct.unpack_from("<IQIQQ", body, 0)
    name_len = body[32]
    name = body[33 : 33 + name_len]
    (options_len,) = struct.unpack_from("<I", body, 33 + name_len)
    assert (stream_id, topics_count, size, messages_count) == (0, 0, 0, 0)
    assert before - 1_000_000 <= created_at <= after + 1_000_000
    assert name == b"raw-alpha"
    assert options_len == 0
    assert len(body) == 33 + name_len + 4


async def test_a_raw_get_stream_of_a_numeric_id_returns_its_header(server):
    """send_binary_request(200 = GetStream) with a numeric Identifier returns that stream's header."""
    c = await server.client()
    await c.create_stream("raw-a")
    await c.create_stream("raw-b")
    body = await c.send_binary_request(200, bytes([1, 4]) + struct.pack("<I", 1))
    (stream_id,) = struct.unpack_from("<I", body, 0)
    assert stream_id == 1
    assert body[33 : 33 + body[32]] == b"raw-b"
    missing = await c.send_binary_request(200, bytes([1, 4]) + struct.pack("<I", 7))
    assert missing == b""
