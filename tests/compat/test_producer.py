"""The high-level producer (IggyClient.producer / IggyProducer) in direct and background mode."""

from __future__ import annotations

from datetime import timedelta

import pytest
from apache_iggy import (
    BackgroundProducerConfig,
    DirectProducerConfig,
    Partitioning,
    SendMessage,
)

from galgo_compat import expect_error, messages, numbered, payloads_of, poll


async def test_a_producer_creates_its_stream_and_topic_when_missing(server):
    """producer() with the default flags creates the stream (id 0) and a topic with the asked partitions."""
    c = await server.client()
    p = await c.producer("made-by-producer", "orders", topic_partitions_count=3)
    s = await c.get_stream("made-by-producer")
    assert s.id == 0
    t = await c.get_topic("made-by-producer", "orders")
    assert (t.id, t.partitions_count) == (0, 3)
    await p.shutdown()


async def test_a_producer_uses_an_existing_stream_and_topic_as_they_are(server):
    """producer() on an existing stream and topic leaves them unchanged and sends to them."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    p = await c.producer("s", "t", Partitioning.partition_id(1), topic_partitions_count=7)
    await p.send(messages(b"hello"))
    await p.shutdown()
    t = await c.get_topic("s", "t")
    assert t.partitions_count == 2
    assert [m.payload() for m in await poll(c, "s", "t", partition_id=1)] == [b"hello"]


async def test_a_direct_producer_send_reports_the_committed_confirmation(server):
    """A direct producer's send and send_one return the partition and base offset they committed."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    p = await c.producer("s", "t", Partitioning.partition_id(1), mode=DirectProducerConfig())
    r1 = await p.send(messages(b"a", b"b", b"c"))
    r2 = await p.send_one(SendMessage(b"d"))
    assert [(x.stream_id, x.topic_id, x.partition_id, x.base_offset) for x in r1.confirmations] == [(0, 0, 1, 0)]
    assert [(x.partition_id, x.base_offset) for x in r2.confirmations] == [(1, 3)]
    await p.shutdown()
    assert payloads_of(await poll(c, "s", "t", partition_id=1)) == [b"a", b"b", b"c", b"d"]


async def test_a_direct_producer_splits_batches_longer_than_its_batch_length(server):
    """With batch_length 2, sending 5 messages commits 3 batches at offsets 0, 2 and 4."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    p = await c.producer("s", "t", Partitioning.partition_id(0), mode=DirectProducerConfig(batch_length=2))
    sent = numbered("split", 5)
    r = await p.send(messages(*sent))
    assert sorted(x.base_offset for x in r.confirmations) == [0, 2, 4]
    await p.shutdown()
    assert payloads_of(await poll(c, "s", "t")) == sent


async def test_send_with_partitioning_overrides_the_producer_partitioning(server):
    """send_with_partitioning sends to the given partition instead of the producer's own."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 3)
    p = await c.producer("s", "t", Partitioning.partition_id(0))
    r = await p.send_with_partitioning(messages(b"to-2"), Partitioning.partition_id(2))
    assert [(x.partition_id, x.base_offset) for x in r.confirmations] == [(2, 0)]
    r = await p.send_with_partitioning(messages(b"default"))
    assert [x.partition_id for x in r.confirmations] == [0]
    await p.shutdown()
    assert payloads_of(await poll(c, "s", "t", partition_id=2)) == [b"to-2"]
    assert payloads_of(await poll(c, "s", "t", partition_id=0)) == [b"default"]


async def test_send_to_writes_to_another_existing_topic(server):
    """send_to sends to another stream and topic, which must already exist."""
    c = await server.client()
    await c.create_stream("home")
    await c.create_topic("home", "t", 1)
    await c.create_stream("away")
    await c.create_topic("away", "other", 2)
    p = await c.producer("home", "t", Partitioning.partition_id(0))
    r = await p.send_to("away", "other", messages(b"elsewhere"), Partitioning.partition_id(1))
    assert [(x.stream_id, x.topic_id, x.partition_id, x.base_offset) for x in r.confirmations] == [(1, 0, 1, 0)]
    with pytest.raises(RuntimeError):
        await p.send_to("away", "missing-topic", messages(b"lost"), Partitioning.partition_id(0))
    await p.shutdown()
    assert payloads_of(await poll(c, "away", "other", partition_id=1)) == [b"elsewhere"]
    assert await poll(c, "home", "t") == []


async def test_a_background_producer_delivers_every_message_by_shutdown(server):
    """Background sends return no confirmations; after shutdown every message is stored in order."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    p = await c.producer(
        "s",
        "t",
        Partitioning.partition_id(0),
        mode=BackgroundProducerConfig(linger_time=timedelta(milliseconds=5), batch_length=10),
    )
    sent = numbered("bg", 50)
    for i in range(0, 50, 5):
        r = await p.send(messages(*sent[i : i + 5]))
        assert r.confirmations == []
    await p.shutdown()
    await p.shutdown()  # repeated shutdowns are safe
    got = await poll(c, "s", "t")
    assert payloads_of(got) == sent
    assert [m.offset() for m in got] == list(range(50))


async def test_a_producer_works_as_an_async_context_manager(server):
    """`async with producer` sends inside the block and shuts the producer down on exit."""
    c = await server.client()
    p = await c.producer("ctx", "t", Partitioning.partition_id(0))
    async with p:
        await p.send_one(SendMessage(b"inside"))
    assert payloads_of(await poll(c, "ctx", "t")) == [b"inside"]


async def test_a_producer_without_auto_create_fails_for_a_missing_stream(server):
    """producer() with create_stream_if_not_exists=False fails for a stream that does not exist."""
    c = await server.client()
    with pytest.raises(RuntimeError):
        await c.producer("nowhere", "t", create_stream_if_not_exists=False, send_retries=0)
    assert await c.get_streams() == []


async def test_a_dedup_window_given_as_an_sdk_option_drops_a_resent_message_id(server):
    """Galgo's topic option dedup_window reaches it from the SDK as a decimal string (the SDK sends keys
    it does not know as strings): a batch resent with the same message ids is stored once; a new id is
    stored. A malformed value is refused and creates nothing."""
    c = await server.client()
    await c.create_stream("s")
    await expect_error(c.create_topic("s", "bad", 1, options={"dedup_window": "12x"}), r"invalid option")
    assert await c.get_topic("s", "bad") is None
    await c.create_topic("s", "t", 1, options={"dedup_window": "1000"})
    batch = [SendMessage(b"first", id=7), SendMessage(b"second", id=8)]
    await c.send_messages("s", "t", 0, batch)
    await c.send_messages("s", "t", 0, [SendMessage(b"first", id=7), SendMessage(b"second", id=8)])
    await c.send_messages("s", "t", 0, [SendMessage(b"third", id=9)])
    assert payloads_of(await poll(c, "s", "t")) == [b"first", b"second", b"third"]
