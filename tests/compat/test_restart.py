"""Restart: everything galgod acknowledged survives a SIGTERM and a start on the same data directory."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from apache_iggy import (
    AutoCommit,
    AutoLogin,
    Consumer,
    GlobalPermissions,
    IggyClient,
    IggyExpiry,
    MaxTopicSize,
    Permissions,
    PollingStrategy,
    SendMessage,
    StreamPermissions,
    UserStatus,
)

from galgo_compat import (
    ROOT_PASSWORD,
    ROOT_USERNAME,
    expect_error,
    messages,
    numbered,
    offsets_of,
    payloads_of,
    poll,
)

pytestmark = pytest.mark.timeout_s(120)


def snapshot(received):
    """Everything a client can see of polled messages."""
    return [
        (
            m.offset(),
            m.payload(),
            m.id(),
            m.timestamp(),
            m.origin_timestamp(),
            m.checksum(),
            m.partition_id(),
            None if m.user_headers() is None else m.user_headers().to_scalar_dict(),
        )
        for m in received
    ]


async def metadata(c):
    """Streams, topics and partitions as plain tuples, for before/after comparison."""
    out = []
    for s in sorted(await c.get_streams(), key=lambda s: s.id):
        d = await c.get_stream(s.id)
        topics = []
        for t in sorted(d.topics, key=lambda t: t.id):
            td = await c.get_topic(s.id, t.id)
            topics.append(
                (
                    td.id,
                    td.name,
                    td.created_at,
                    td.partitions_count,
                    td.messages_count,
                    td.compression_algorithm,
                    type(td.message_expiry).__name__,
                    type(td.max_topic_size).__name__,
                    [(p.id, p.created_at, p.messages_count, p.current_offset) for p in td.partitions],
                )
            )
        out.append((d.id, d.name, d.created_at, d.topics_count, d.messages_count, topics))
    return out


async def test_streams_topics_partitions_and_messages_survive_a_restart(server):
    """After a restart get_streams/get_topic and polls return exactly what they returned before."""
    c = await server.client()
    await c.create_stream("alpha")
    await c.create_stream("beta")
    await c.create_topic("alpha", "plain", 2)
    await c.create_topic(
        "alpha",
        "tuned",
        1,
        compression_algorithm="gzip",
        message_expiry=IggyExpiry.ExpireDuration(timedelta(days=2)),
        max_topic_size=MaxTopicSize.Custom(4 * 1024**3),
    )
    await c.create_topic("beta", "t", 3)
    await c.send_messages("alpha", "plain", 0, messages(*numbered("a0", 3)))
    await c.send_messages("alpha", "plain", 1, [SendMessage(b"h", user_headers={"k": "v", "n": 7}, id=99)])
    await c.send_messages("alpha", "tuned", 0, [SendMessage(bytes(range(256)))])
    for p in range(3):
        await c.send_messages("beta", "t", p, messages(*numbered(f"b{p}", p + 1)))
    before_meta = await metadata(c)
    before_msgs = {
        (s, t, p): snapshot(await poll(c, s, t, partition_id=p))
        for s, t, p in [("alpha", "plain", 0), ("alpha", "plain", 1), ("alpha", "tuned", 0), ("beta", "t", 0), ("beta", "t", 1), ("beta", "t", 2)]
    }

    server.restart()

    c2 = await server.client()
    assert await metadata(c2) == before_meta
    for (s, t, p), snap in before_msgs.items():
        assert snapshot(await poll(c2, s, t, partition_id=p)) == snap, (s, t, p)
    tuned = await c2.get_topic("alpha", "tuned")
    assert tuned.message_expiry.duration == timedelta(days=2)
    assert tuned.max_topic_size.bytes == 4 * 1024**3
    stats = await c2.get_stats()
    assert (stats.streams_count, stats.topics_count, stats.partitions_count, stats.messages_count) == (2, 3, 6, 11)
    assert stats.process_id == server.pid


async def test_offsets_continue_after_a_restart(server):
    """Messages sent after a restart continue at the next offset of each partition."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    await c.send_messages("s", "t", 0, messages(*numbered("pre", 4)))
    server.restart()
    c = await server.client()
    r0 = await c.send_messages("s", "t", 0, messages(b"post-0"))
    r1 = await c.send_messages("s", "t", 1, messages(b"post-1"))
    assert [(x.partition_id, x.base_offset) for x in r0.confirmations + r1.confirmations] == [(0, 4), (1, 0)]
    got = await poll(c, "s", "t", partition_id=0)
    assert offsets_of(got) == [0, 1, 2, 3, 4]
    assert payloads_of(got) == numbered("pre", 4) + [b"post-0"]


async def test_stored_consumer_offsets_survive_a_restart(server):
    """Single-consumer and consumer-group offsets stored before a restart still drive Next after it."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    await c.send_messages("s", "t", 0, messages(*numbered("p0", 6)))
    await c.send_messages("s", "t", 1, messages(*numbered("p1", 6)))
    nxt = PollingStrategy.Next()
    # Single consumers: "by-name" commits offset 2 on partition 0, consumer 5 commits 4 on partition 1.
    await poll(c, "s", "t", partition_id=0, strategy=nxt, count=3, consumer=Consumer.Single("by-name"), auto_commit=True)
    await poll(c, "s", "t", partition_id=1, strategy=nxt, count=5, consumer=Consumer.Single(5), auto_commit=True)
    # A consumer group stores offset 3 on partition 0 and 1 on partition 1.
    group = await c.consumer_group("g", "s", "t", polling_strategy=nxt, batch_length=1, auto_commit=AutoCommit.Disabled(), poll_interval=timedelta(milliseconds=25))
    await group.store_offset(3, 0)
    await group.store_offset(1, 1)
    await c.leave_consumer_group("s", "t", "g")

    server.restart()

    c = await server.client()
    assert offsets_of(await poll(c, "s", "t", partition_id=0, strategy=nxt, consumer=Consumer.Single("by-name"))) == [3, 4, 5]
    assert offsets_of(await poll(c, "s", "t", partition_id=1, strategy=nxt, consumer=Consumer.Single(5))) == [5]
    assert offsets_of(await poll(c, "s", "t", partition_id=0, strategy=nxt, consumer=Consumer.Single("never-committed"))) == list(range(6))
    await c.join_consumer_group("s", "t", "g")
    resumed = await poll(c, "s", "t", partition_id=0, strategy=nxt, consumer=Consumer.Group("g"))
    assert offsets_of(resumed) == [4, 5]
    resumed = await poll(c, "s", "t", partition_id=1, strategy=nxt, consumer=Consumer.Group("g"))
    assert offsets_of(resumed) == [2, 3, 4, 5]


async def test_consumer_groups_survive_a_restart_and_ids_are_not_reused(server):
    """Groups survive a restart; a group deleted before it leaves its id unused after it."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 3)
    await c.create_consumer_group("s", "t", "kept")
    await c.create_consumer_group("s", "t", "deleted")
    await c.delete_consumer_group("s", "t", "deleted")
    server.restart()
    c = await server.client()
    groups = await c.get_consumer_groups("s", "t")
    assert [(g.id, g.name, g.partitions_count, g.members_count) for g in groups] == [(0, "kept", 3, 0)]
    await c.create_consumer_group("s", "t", "new")
    assert (await c.get_consumer_group("s", "t", "new")).id == 2


async def test_users_permissions_and_passwords_survive_a_restart(server):
    """Users keep id, status, permissions and their changed password across a restart."""
    c = await server.client()
    await c.create_stream("s")
    perms = Permissions(GlobalPermissions(read_streams=True), {0: StreamPermissions(send_messages=True)})
    u = await c.create_user("persistent", "first-pw", permissions=perms)
    await c.create_user("dormant", "dormant-pw", UserStatus.Inactive)
    await c.change_password("persistent", "first-pw", "second-pw")
    users_before = [(x.id, x.username, x.status, x.created_at) for x in await c.get_users()]

    server.restart()

    c = await server.client()
    assert [(x.id, x.username, x.status, x.created_at) for x in await c.get_users()] == users_before
    assert (await c.get_user(u.id)).permissions == perms
    user = await server.client("persistent", "second-pw")
    assert [s.name for s in await user.get_streams()] == ["s"]
    fresh = await server.client(username=None)
    await expect_error(fresh.login_user("persistent", "first-pw"), r"invalid credentials")
    fresh = await server.client(username=None)
    with pytest.raises(RuntimeError):
        await fresh.login_user("dormant", "dormant-pw")


async def test_deleted_and_purged_data_stays_gone_after_a_restart(server):
    """Deleted streams and topics, removed partitions and purged messages do not come back."""
    c = await server.client()
    for name in ("s0", "s1", "s2"):
        await c.create_stream(name)
    await c.create_topic("s0", "gone", 1)
    await c.create_topic("s0", "purged", 1)
    await c.create_topic("s0", "shrunk", 3)
    await c.send_messages("s0", "purged", 0, messages(b"x", b"y"))
    await c.send_messages("s0", "shrunk", 2, messages(b"z"))
    await c.delete_topic("s0", "gone")
    await c.purge_topic("s0", "purged")
    await c.delete_partitions("s0", "shrunk", 1)
    await c.delete_stream("s1")

    server.restart()

    c = await server.client()
    assert sorted((s.id, s.name) for s in await c.get_streams()) == [(0, "s0"), (2, "s2")]
    assert sorted(t.name for t in await c.get_topics("s0")) == ["purged", "shrunk"]
    assert await poll(c, "s0", "purged") == []
    assert (await c.get_topic("s0", "shrunk")).partitions_count == 2
    # Freed ids are reused after the restart too.
    await c.create_stream("s1-again")
    assert (await c.get_stream("s1-again")).id == 1
    await c.create_topic("s0", "again", 1)
    assert (await c.get_topic("s0", "again")).id == 0


async def test_data_survives_two_restarts_in_a_row(server):
    """Messages written between two restarts are all there after the second one."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    await c.send_messages("s", "t", 0, messages(b"gen-1"))
    server.restart()
    c = await server.client()
    await c.send_messages("s", "t", 0, messages(b"gen-2"))
    server.restart()
    c = await server.client()
    got = await poll(c, "s", "t")
    assert [(m.offset(), m.payload()) for m in got] == [(0, b"gen-1"), (1, b"gen-2")]


async def test_a_client_with_auto_login_resumes_after_a_restart(server):
    """A client with auto-login and reconnection works again after a restart without login_user."""
    raw = IggyClient(
        server.config(
            auto_login=AutoLogin.username_password(ROOT_USERNAME, ROOT_PASSWORD),
            reconnect=True,
        )
    )
    c = server.wrap(raw)
    await c.connect()
    await c.create_stream("before-restart")
    server.restart()

    async def works():
        try:
            return await c.get_streams(_timeout=5)
        except (RuntimeError, asyncio.TimeoutError):
            await asyncio.sleep(0.2)
            return None

    deadline = asyncio.get_running_loop().time() + 20
    streams = None
    while streams is None and asyncio.get_running_loop().time() < deadline:
        streams = await works()
    assert streams is not None, "the reconnecting client never got an answer after the restart"
    assert [s.name for s in streams] == ["before-restart"]
    await c.create_stream("after-restart")
    assert (await c.get_stream("after-restart")).id == 1


def _stop_and_start(server, how: str) -> None:
    if how == "sigterm":
        server.restart()
    else:
        server.crash_restart()


@pytest.mark.parametrize("how", ["sigterm", "kill"])
async def test_a_stream_deleted_and_created_again_keeps_its_new_messages_across_a_restart(server, how):
    """A stream deleted and created again under the same id (same name, or another) keeps what was sent to the
    new one after a restart, and the old incarnation's stored offsets do not carry over (replaying the old
    delete once wiped the new incarnation's files)."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    await c.send_messages("s", "t", 0, messages(*numbered("old", 10)))
    nxt = PollingStrategy.Next()
    first = await poll(c, "s", "t", strategy=nxt, count=8, consumer=Consumer.Single(3), auto_commit=True)
    assert offsets_of(first) == list(range(8))
    await c.delete_stream("s")
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    await c.send_messages("s", "t", 0, messages(*numbered("new", 5)))
    # Another name on a reused id, twice over.
    await c.create_stream("x")
    await c.create_topic("x", "u", 1)
    await c.send_messages("x", "u", 0, messages(b"x-old"))
    await c.delete_stream("x")
    await c.create_stream("y")
    await c.create_topic("y", "v", 1)
    await c.send_messages("y", "v", 0, messages(*numbered("y", 3)))
    assert (await c.get_stream("y")).id == 1

    _stop_and_start(server, how)

    c = await server.client()
    got = await poll(c, "s", "t")
    assert [(m.offset(), m.payload()) for m in got] == list(enumerate(numbered("new", 5)))
    # Consumer 3 stored offset 7 in the old incarnation: the new one starts it from the first message.
    assert offsets_of(await poll(c, "s", "t", strategy=PollingStrategy.Next(), consumer=Consumer.Single(3))) == list(range(5))
    assert payloads_of(await poll(c, "y", "v")) == numbered("y", 3)
    assert sorted((s.id, s.name) for s in await c.get_streams()) == [(0, "s"), (1, "y")]
    # The partitions still take sends (a cluster once lost their leaders for good).
    r = await c.send_messages("s", "t", 0, messages(b"after"))
    assert [x.base_offset for x in r.confirmations] == [5]


@pytest.mark.parametrize("how", ["sigterm", "kill"])
async def test_a_topic_or_partition_deleted_and_created_again_keeps_its_new_messages_across_a_restart(server, how):
    """delete_topic + create_topic and delete_partitions + create_partitions reuse ids; what the new incarnation
    holds survives a restart."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    await c.send_messages("s", "t", 0, messages(*numbered("old-t", 4)))
    await c.delete_topic("s", "t")
    await c.create_topic("s", "t2", 2)
    assert (await c.get_topic("s", "t2")).id == 0
    await c.send_messages("s", "t2", 0, messages(*numbered("new-t", 2)))
    await c.send_messages("s", "t2", 1, messages(*numbered("old-p", 6)))
    await c.delete_partitions("s", "t2", 1)
    await c.create_partitions("s", "t2", 1)
    await c.send_messages("s", "t2", 1, messages(*numbered("new-p", 3)))

    _stop_and_start(server, how)

    c = await server.client()
    assert payloads_of(await poll(c, "s", "t2", partition_id=0)) == numbered("new-t", 2)
    assert payloads_of(await poll(c, "s", "t2", partition_id=1)) == numbered("new-p", 3)
    r = await c.send_messages("s", "t2", 1, messages(b"after"))
    assert [x.base_offset for x in r.confirmations] == [3]


async def test_a_partition_directory_of_the_old_layout_is_taken_over(server):
    """A data directory that keeps a partition as partitions/<stream>/<topic>/<partition> (the layout before
    directories were named by group id) still serves its messages after a restart."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    await c.send_messages("s", "t", 0, messages(*numbered("kept", 3)))
    server.stop()
    pdir = server.data_dir / "partitions"
    (gid_dir,) = [d for d in pdir.iterdir() if len(d.name) == 16]
    (pdir / "0" / "0").mkdir(parents=True)
    gid_dir.rename(pdir / "0" / "0" / "0")
    server.start()
    c = await server.client()
    assert payloads_of(await poll(c, "s", "t")) == numbered("kept", 3)
    assert [d.name for d in pdir.iterdir()] == [gid_dir.name]
