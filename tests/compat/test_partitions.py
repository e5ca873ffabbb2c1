"""Partitions: create_partitions appends, delete_partitions removes the last ones; per-partition stats."""

from __future__ import annotations

import pytest
from apache_iggy import Partition, SendMessage

from galgo_compat import expect_error, messages, now_us, poll


async def test_create_partitions_appends_ids_after_the_highest(server):
    """A 2-partition topic given 3 more partitions has partitions 0..4."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    before = now_us()
    await c.create_partitions("s", "t", 3)
    t = await c.get_topic("s", "t")
    assert t.partitions_count == 5
    assert [p.id for p in t.partitions] == [0, 1, 2, 3, 4]
    assert all(isinstance(p, Partition) for p in t.partitions)
    assert all(p.created_at >= before - 1_000_000 for p in t.partitions[2:])
    assert (await c.get_stats()).partitions_count == 5


async def test_messages_sent_to_an_added_partition_start_at_offset_0(server):
    """A partition added later starts its own offsets at 0."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    await c.send_messages("s", "t", 0, messages(b"a", b"b"))
    await c.create_partitions("s", "t", 1)
    r = await c.send_messages("s", "t", 1, messages(b"c"))
    assert [(x.partition_id, x.base_offset) for x in r.confirmations] == [(1, 0)]
    got = await poll(c, "s", "t", partition_id=1)
    assert [(m.offset(), m.payload()) for m in got] == [(0, b"c")]


async def test_delete_partitions_removes_the_last_ones_and_their_messages(server):
    """Deleting 2 of 4 partitions leaves partitions 0 and 1 with their messages intact."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 4)
    await c.send_messages("s", "t", 0, messages(b"p0"))
    await c.send_messages("s", "t", 1, messages(b"p1"))
    await c.send_messages("s", "t", 3, messages(b"p3a", b"p3b"))
    await c.delete_partitions("s", "t", 2)
    t = await c.get_topic("s", "t")
    assert t.partitions_count == 2
    assert [p.id for p in t.partitions] == [0, 1]
    assert t.messages_count == 2
    assert [m.payload() for m in await poll(c, "s", "t", partition_id=0)] == [b"p0"]
    assert [m.payload() for m in await poll(c, "s", "t", partition_id=1)] == [b"p1"]
    await expect_error(poll(c, "s", "t", partition_id=3), r"not found")


async def test_partitions_deleted_then_added_again_are_empty(server):
    """After deleting the last partition and adding one, the new partition has no old messages."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    await c.send_messages("s", "t", 1, messages(b"old-1", b"old-2"))
    await c.delete_partitions("s", "t", 1)
    await c.create_partitions("s", "t", 1)
    t = await c.get_topic("s", "t")
    assert [p.id for p in t.partitions] == [0, 1]
    assert t.partitions[1].messages_count == 0
    assert await poll(c, "s", "t", partition_id=1) == []


async def test_deleting_more_partitions_than_exist_fails(server):
    """delete_partitions of more partitions than the topic has fails and deletes nothing."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    with pytest.raises(RuntimeError):
        await c.delete_partitions("s", "t", 3)
    assert (await c.get_topic("s", "t")).partitions_count == 2


async def test_partition_stats_track_the_messages_sent_to_it(server):
    """A partition reports current_offset = last offset, messages_count, size and segments."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    await c.send_messages("s", "t", 1, [SendMessage(b"x" * 1000) for _ in range(3)])
    await c.send_messages("s", "t", 1, [SendMessage(b"y" * 1000) for _ in range(2)])
    p0, p1 = (await c.get_topic("s", "t")).partitions
    assert (p0.id, p0.messages_count, p0.current_offset, p0.size) == (0, 0, 0, 0)
    assert (p1.id, p1.messages_count, p1.current_offset) == (1, 5, 4)
    assert p1.size >= 5000
    assert p1.segments_count >= 1


async def test_sending_to_a_missing_partition_fails(server):
    """send_messages to a partition id the topic does not have fails and stores nothing."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    await expect_error(c.send_messages("s", "t", 2, messages(b"lost")), r"not found")
    assert (await c.get_topic("s", "t")).messages_count == 0


async def test_polling_a_missing_partition_fails(server):
    """poll_messages from a partition id the topic does not have fails with a not-found error."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    await c.send_messages("s", "t", 0, messages(b"a"))
    await expect_error(poll(c, "s", "t", partition_id=1), r"not found")
