"""Streams: create, get, list, update, delete, purge; 0-based ids that reuse the lowest free slot."""

from __future__ import annotations

from apache_iggy import SendMessage, Stream, StreamDetails

from galgo_compat import expect_error, now_us, poll


async def test_a_new_server_has_no_streams(server):
    """A server started on an empty data directory lists no streams."""
    c = await server.client()
    assert await c.get_streams() == []


async def test_the_first_stream_gets_id_0_and_reports_empty_details(server):
    """The first stream gets id 0; get_stream by name or id returns the same empty details."""
    c = await server.client()
    before = now_us()
    await c.create_stream("orders")
    after = now_us()
    by_name = await c.get_stream("orders")
    by_id = await c.get_stream(0)
    for s in (by_name, by_id):
        assert isinstance(s, StreamDetails)
        assert s.id == 0
        assert s.name == "orders"
        assert s.topics_count == 0
        assert s.messages_count == 0
        assert s.size == 0
        assert s.topics == []
        assert before - 1_000_000 <= s.created_at <= after + 1_000_000
    assert by_name.created_at == by_id.created_at


async def test_a_new_stream_takes_the_lowest_free_id(server):
    """Streams get ids 0, 1, 2; after deleting 1 the next stream gets 1, and the one after gets 3."""
    c = await server.client()
    for name in ("a", "b", "c"):
        await c.create_stream(name)
    assert [(await c.get_stream(n)).id for n in ("a", "b", "c")] == [0, 1, 2]
    await c.delete_stream(1)
    await c.create_stream("d")
    assert (await c.get_stream("d")).id == 1
    await c.create_stream("e")
    assert (await c.get_stream("e")).id == 3
    assert sorted((s.id, s.name) for s in await c.get_streams()) == [
        (0, "a"),
        (1, "d"),
        (2, "c"),
        (3, "e"),
    ]


async def test_get_streams_lists_every_stream_with_its_counts(server):
    """get_streams returns one summary per stream with its topic and message counts and size."""
    c = await server.client()
    await c.create_stream("busy")
    await c.create_stream("idle")
    await c.create_topic("busy", "t1", 2)
    await c.create_topic("busy", "t2", 1)
    await c.send_messages("busy", "t1", 0, [SendMessage(b"x" * 100), SendMessage(b"y" * 100)])
    await c.send_messages("busy", "t2", 0, [SendMessage(b"z" * 100)])
    streams = {s.id: s for s in await c.get_streams()}
    assert all(isinstance(s, Stream) for s in streams.values())
    assert set(streams) == {0, 1}
    busy, idle = streams[0], streams[1]
    assert (busy.name, busy.topics_count, busy.messages_count) == ("busy", 2, 3)
    assert busy.size >= 300
    assert (idle.name, idle.topics_count, idle.messages_count, idle.size) == ("idle", 0, 0, 0)
    details = await c.get_stream("busy")
    assert sorted((t.id, t.name, t.partitions_count, t.messages_count) for t in details.topics) == [
        (0, "t1", 2, 2),
        (1, "t2", 1, 1),
    ]
    assert details.messages_count == 3
    assert details.size == busy.size


async def test_get_stream_of_a_missing_stream_returns_none(server):
    """get_stream of an unknown name or id returns None instead of raising."""
    c = await server.client()
    await c.create_stream("present")
    assert await c.get_stream("absent") is None
    assert await c.get_stream(42) is None


async def test_update_stream_renames_it_and_keeps_its_id(server):
    """update_stream renames a stream in place; renaming it to its own name also succeeds."""
    c = await server.client()
    await c.create_stream("old-name")
    await c.create_topic("old-name", "t", 1)
    await c.update_stream("old-name", "new-name")
    assert await c.get_stream("old-name") is None
    renamed = await c.get_stream("new-name")
    assert (renamed.id, renamed.name, renamed.topics_count) == (0, "new-name", 1)
    await c.update_stream(0, "new-name")
    assert (await c.get_stream(0)).name == "new-name"


async def test_renaming_a_stream_to_a_taken_name_fails(server):
    """update_stream to another stream's name fails with 'already exists' and changes nothing."""
    c = await server.client()
    await c.create_stream("first")
    await c.create_stream("second")
    await expect_error(c.update_stream("second", "first"), r"already exists")
    assert sorted((s.id, s.name) for s in await c.get_streams()) == [(0, "first"), (1, "second")]


async def test_delete_stream_removes_it_with_its_topics_and_messages(server):
    """After delete_stream the stream is gone, and a new stream with its name starts empty."""
    c = await server.client()
    await c.create_stream("doomed")
    await c.create_topic("doomed", "t", 1)
    await c.send_messages("doomed", "t", 0, [SendMessage(b"gone")])
    await c.delete_stream("doomed")
    assert await c.get_stream("doomed") is None
    assert await c.get_streams() == []
    await c.create_stream("doomed")
    reborn = await c.get_stream("doomed")
    assert (reborn.id, reborn.topics_count, reborn.messages_count) == (0, 0, 0)
    assert await c.get_topic("doomed", "t") is None


async def test_deleting_a_missing_stream_fails(server):
    """delete_stream of an unknown stream fails with a not-found error."""
    c = await server.client()
    await expect_error(c.delete_stream("never-created"), r"not found")
    await expect_error(c.delete_stream(5), r"not found")


async def test_purge_stream_removes_messages_but_keeps_topics_and_partitions(server):
    """purge_stream empties every topic of the stream; topics and partitions remain."""
    c = await server.client()
    await c.create_stream("purged")
    await c.create_stream("kept")
    await c.create_topic("purged", "t1", 2)
    await c.create_topic("purged", "t2", 1)
    await c.create_topic("kept", "t", 1)
    await c.send_messages("purged", "t1", 1, [SendMessage(b"1"), SendMessage(b"2")])
    await c.send_messages("purged", "t2", 0, [SendMessage(b"3")])
    await c.send_messages("kept", "t", 0, [SendMessage(b"4")])
    await c.purge_stream("purged")
    s = await c.get_stream("purged")
    assert (s.topics_count, s.messages_count, s.size) == (2, 0, 0)
    t1 = await c.get_topic("purged", "t1")
    assert [p.id for p in t1.partitions] == [0, 1]
    assert [p.messages_count for p in t1.partitions] == [0, 0]
    assert await poll(c, "purged", "t1", partition_id=1) == []
    assert await poll(c, "purged", "t2", partition_id=0) == []
    kept = await poll(c, "kept", "t", partition_id=0)
    assert [m.payload() for m in kept] == [b"4"]
    # Purging an already empty stream succeeds.
    await c.purge_stream("purged")
