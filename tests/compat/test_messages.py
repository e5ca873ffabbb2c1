"""Messages: send with each partitioning, poll with each strategy, auto-commit, headers, ids, bytes."""

from __future__ import annotations

import asyncio
import os

from apache_iggy import (
    Consumer,
    HeaderKey,
    HeaderValue,
    Partitioning,
    PollingStrategy,
    ReceiveMessage,
    SendMessage,
    SendMessagesConfirmation,
    SendMessagesResponse,
)

from galgo_compat import (
    expect_error,
    messages,
    now_us,
    numbered,
    offsets_of,
    payloads_of,
    poll,
    xxh32,
)


async def setup_topic(c, partitions: int = 1, stream: str = "s", topic: str = "t") -> None:
    await c.create_stream(stream)
    await c.create_topic(stream, topic, partitions)


# ----------------------------------------------------------------------------- send


async def test_send_messages_reports_the_committed_partition_and_base_offset(server):
    """send_messages returns one confirmation with stream, topic, partition and the batch base offset."""
    c = await server.client()
    await setup_topic(c, partitions=2)
    first = await c.send_messages("s", "t", 1, messages(b"a", b"b", b"c"))
    second = await c.send_messages("s", "t", 1, messages(b"d", b"e"))
    assert isinstance(first, SendMessagesResponse)
    assert all(isinstance(x, SendMessagesConfirmation) for x in first.confirmations)
    assert [(x.stream_id, x.topic_id, x.partition_id, x.base_offset) for x in first.confirmations] == [
        (0, 0, 1, 0)
    ]
    assert [(x.partition_id, x.base_offset) for x in second.confirmations] == [(1, 3)]
    got = await poll(c, "s", "t", partition_id=1)
    assert [(m.offset(), m.payload()) for m in got] == list(enumerate([b"a", b"b", b"c", b"d", b"e"]))


async def test_offsets_are_dense_from_0_across_batches(server):
    """Batches of 1, 4 and 2 messages get offsets 0..6 in send order."""
    c = await server.client()
    await setup_topic(c)
    sent = []
    for size in (1, 4, 2):
        batch = numbered(f"batch{size}", size)
        sent += batch
        await c.send_messages("s", "t", 0, messages(*batch))
    got = await poll(c, "s", "t")
    assert offsets_of(got) == list(range(7))
    assert payloads_of(got) == sent


async def test_payload_bytes_round_trip_exactly(server):
    """Binary, text, single-byte and 256 KiB payloads come back byte for byte with their length."""
    c = await server.client()
    await setup_topic(c)
    payloads = [
        b"\x00",
        bytes(range(256)),
        b"\xff" * 3 + b"\x00\x01\x02",
        "Zażółć gęślą jaźń 😀".encode(),
        os.urandom(256 * 1024),
    ]
    await c.send_messages("s", "t", 0, [SendMessage(p) for p in payloads])
    await c.send_messages("s", "t", 0, [SendMessage("text payload")])
    got = await poll(c, "s", "t")
    assert payloads_of(got) == payloads + [b"text payload"]
    assert [m.length() for m in got] == [len(p) for p in payloads] + [len(b"text payload")]


async def test_a_large_batch_round_trips_in_order(server):
    """A batch of 1000 messages is stored at offsets 0..999 and polled back in order."""
    c = await server.client()
    await setup_topic(c)
    batch = numbered("bulk", 1000)
    r = await c.send_messages("s", "t", 0, messages(*batch))
    assert [x.base_offset for x in r.confirmations] == [0]
    got = await poll(c, "s", "t", count=1000)
    assert offsets_of(got) == list(range(1000))
    assert payloads_of(got) == batch
    assert (await c.get_topic("s", "t")).messages_count == 1000


async def test_message_ids_round_trip_and_zero_ids_are_replaced_by_the_sdk(server):
    """An explicit 128-bit id is stored as given; messages without an id get distinct non-zero ids."""
    c = await server.client()
    await setup_topic(c)
    explicit = (1 << 127) + 12345
    await c.send_messages(
        "s",
        "t",
        0,
        [SendMessage(b"with-id", id=explicit), SendMessage(b"small-id", id=7), SendMessage(b"auto-1"), SendMessage(b"auto-2")],
    )
    got = await poll(c, "s", "t")
    ids = [m.id() for m in got]
    assert ids[0] == explicit
    assert ids[1] == 7
    assert ids[2] != 0 and ids[3] != 0 and ids[2] != ids[3]


async def test_user_headers_round_trip_with_their_types(server):
    """Scalar and typed user headers come back with the same keys, values and kinds."""
    c = await server.client()
    await setup_topic(c)
    scalar = {"source": "compat", "attempt": 3, "retry": True, "blob": b"\x00\x01\xfe", "ratio": 1.5}
    typed = {
        HeaderKey.String("u32"): HeaderValue.UnsignedInt32(4_000_000_000),
        HeaderKey.String("i8"): HeaderValue.Int8(-5),
        HeaderKey.String("u128"): HeaderValue.UnsignedInt128((1 << 128) - 1),
        HeaderKey.UnsignedInt16(9): HeaderValue.String("numeric key"),
        HeaderKey.Raw(b"\x01\x02"): HeaderValue.Raw(b"\xff" * 255),
    }
    await c.send_messages(
        "s",
        "t",
        0,
        [SendMessage(b"scalar", user_headers=scalar), SendMessage(b"typed", user_headers=typed)],
    )
    got = await poll(c, "s", "t")
    assert payloads_of(got) == [b"scalar", b"typed"]
    assert got[0].user_headers().to_scalar_dict() == scalar
    headers = got[1].user_headers()
    assert set(headers.keys()) == set(typed.keys())
    for key, value in typed.items():
        assert headers[key] == value, (key, headers[key], value)


async def test_a_message_without_headers_reports_none(server):
    """A message sent without user headers has user_headers() None next to one that has them."""
    c = await server.client()
    await setup_topic(c)
    await c.send_messages("s", "t", 0, [SendMessage(b"plain"), SendMessage(b"h", user_headers={"k": "v"})])
    plain, with_headers = await poll(c, "s", "t")
    assert plain.user_headers() is None
    assert with_headers.user_headers().to_scalar_dict() == {"k": "v"}


async def test_messages_of_one_batch_share_the_server_timestamp_and_later_batches_are_later(server):
    """Each batch is stamped once with the server time; a later batch has a later timestamp."""
    c = await server.client()
    await setup_topic(c)
    before = now_us()
    await c.send_messages("s", "t", 0, messages(b"a1", b"a2", b"a3"))
    await asyncio.sleep(0.01)
    await c.send_messages("s", "t", 0, messages(b"b1", b"b2"))
    after = now_us()
    got = await poll(c, "s", "t")
    stamps = [m.timestamp() for m in got]
    assert stamps[0] == stamps[1] == stamps[2]
    assert stamps[3] == stamps[4]
    assert stamps[3] > stamps[0]
    assert before - 2_000_000 <= stamps[0] <= stamps[3] <= after + 2_000_000


async def test_origin_timestamp_is_the_producer_clock_at_send_time(server):
    """origin_timestamp is the producer's µs clock, within the time the send took."""
    c = await server.client()
    await setup_topic(c)
    before = now_us()
    await c.send_messages("s", "t", 0, messages(b"x", b"y"))
    after = now_us()
    for m in await poll(c, "s", "t"):
        assert before - 1_000_000 <= m.origin_timestamp() <= after + 1_000_000


async def test_checksum_and_metadata_are_stable_across_polls(server):
    """Two polls of the same message return the same checksum, id, offset and timestamps."""
    c = await server.client()
    await setup_topic(c)
    await c.send_messages("s", "t", 0, messages(b"one", b"two"))
    first = await poll(c, "s", "t")
    second = await poll(c, "s", "t", strategy=PollingStrategy.Offset(0))

    def fields(m: ReceiveMessage):
        return (m.checksum(), m.id(), m.offset(), m.timestamp(), m.origin_timestamp(), m.length(), m.payload())

    assert [fields(m) for m in first] == [fields(m) for m in second]
    assert first[0].checksum() != first[1].checksum()
    assert all(isinstance(m, ReceiveMessage) for m in first)


# ----------------------------------------------------------------------------- partitioning


async def test_partition_id_partitioning_targets_that_partition(server):
    """An int and Partitioning.partition_id both send to exactly the given partition."""
    c = await server.client()
    await setup_topic(c, partitions=3)
    r1 = await c.send_messages("s", "t", 2, messages(b"int"))
    r2 = await c.send_messages("s", "t", Partitioning.partition_id(2), messages(b"explicit"))
    r3 = await c.send_messages("s", "t", Partitioning.partition_id(0), messages(b"zero"))
    assert [(x.partition_id, x.base_offset) for r in (r1, r2, r3) for x in r.confirmations] == [
        (2, 0),
        (2, 1),
        (0, 0),
    ]
    assert payloads_of(await poll(c, "s", "t", partition_id=2)) == [b"int", b"explicit"]
    assert payloads_of(await poll(c, "s", "t", partition_id=0)) == [b"zero"]
    assert await poll(c, "s", "t", partition_id=1) == []


async def test_balanced_partitioning_spreads_batches_round_robin(server):
    """Six balanced single-message batches to 3 partitions land 2 per partition, cycling in order."""
    c = await server.client()
    await setup_topic(c, partitions=3)
    parts = []
    for i in range(6):
        r = await c.send_messages("s", "t", Partitioning.balanced(), messages(f"m{i}"))
        assert len(r.confirmations) == 1
        parts.append(r.confirmations[0].partition_id)
    assert sorted(parts[:3]) == [0, 1, 2]
    assert parts[3:] == parts[:3]
    t = await c.get_topic("s", "t")
    assert [p.messages_count for p in t.partitions] == [2, 2, 2]


async def test_messages_key_partitioning_maps_a_key_to_xxh32_modulo_partitions(server):
    """Batches with a messages key land on partition xxh32(key) % count, the same one every time."""
    c = await server.client()
    await setup_topic(c, partitions=5)
    keys = ["user-1", "user-2", "order-77", b"\x00\x01binary-key"]
    for key in keys:
        raw = key.encode() if isinstance(key, str) else key
        expected = xxh32(raw) % 5
        for _ in range(2):
            r = await c.send_messages("s", "t", Partitioning.messages_key(key), messages(raw))
            assert [x.partition_id for x in r.confirmations] == [expected], key
    total = sum(p.messages_count for p in (await c.get_topic("s", "t")).partitions)
    assert total == 2 * len(keys)


# ----------------------------------------------------------------------------- poll strategies


async def test_poll_first_starts_at_offset_0_and_returns_at_most_count(server):
    """PollingStrategy.First returns messages from offset 0, at most `count` of them."""
    c = await server.client()
    await setup_topic(c)
    sent = numbered("f", 5)
    await c.send_messages("s", "t", 0, messages(*sent))
    assert payloads_of(await poll(c, "s", "t", count=2)) == sent[:2]
    assert payloads_of(await poll(c, "s", "t", count=1)) == sent[:1]
    assert payloads_of(await poll(c, "s", "t", count=100)) == sent


async def test_poll_offset_starts_at_exactly_that_offset(server):
    """PollingStrategy.Offset(n) returns messages from offset n; beyond the last offset, none."""
    c = await server.client()
    await setup_topic(c)
    sent = numbered("o", 6)
    await c.send_messages("s", "t", 0, messages(*sent[:3]))
    await c.send_messages("s", "t", 0, messages(*sent[3:]))
    got = await poll(c, "s", "t", strategy=PollingStrategy.Offset(2), count=3)
    assert [(m.offset(), m.payload()) for m in got] == [(2, sent[2]), (3, sent[3]), (4, sent[4])]
    assert offsets_of(await poll(c, "s", "t", strategy=PollingStrategy.Offset(5))) == [5]
    assert await poll(c, "s", "t", strategy=PollingStrategy.Offset(6)) == []
    assert await poll(c, "s", "t", strategy=PollingStrategy.Offset(1000)) == []


async def test_poll_last_returns_the_last_count_messages_in_order(server):
    """PollingStrategy.Last with count n returns the last n messages, oldest first."""
    c = await server.client()
    await setup_topic(c)
    sent = numbered("l", 5)
    await c.send_messages("s", "t", 0, messages(*sent))
    assert [(m.offset(), m.payload()) for m in await poll(c, "s", "t", strategy=PollingStrategy.Last(), count=1)] == [
        (4, sent[4])
    ]
    assert payloads_of(await poll(c, "s", "t", strategy=PollingStrategy.Last(), count=2)) == sent[3:]
    assert payloads_of(await poll(c, "s", "t", strategy=PollingStrategy.Last(), count=50)) == sent


async def test_poll_timestamp_starts_at_the_first_batch_stamped_at_or_after_it(server):
    """PollingStrategy.Timestamp(t) returns every message whose batch timestamp is >= t."""
    c = await server.client()
    await setup_topic(c)
    sent = numbered("ts", 5)
    for p in sent:
        await c.send_messages("s", "t", 0, messages(p))
        await asyncio.sleep(0.01)
    everything = await poll(c, "s", "t")
    stamps = [m.timestamp() for m in everything]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    got = await poll(c, "s", "t", strategy=PollingStrategy.Timestamp(stamps[2]))
    assert payloads_of(got) == sent[2:]
    assert offsets_of(got) == [2, 3, 4]
    got = await poll(c, "s", "t", strategy=PollingStrategy.Timestamp(stamps[2] - 1))
    assert payloads_of(got) == sent[2:]
    assert await poll(c, "s", "t", strategy=PollingStrategy.Timestamp(stamps[-1] + 1)) == []
    assert payloads_of(await poll(c, "s", "t", strategy=PollingStrategy.Timestamp(0))) == sent


async def test_poll_next_without_a_stored_offset_starts_at_0(server):
    """PollingStrategy.Next for a consumer that never committed starts at offset 0."""
    c = await server.client()
    await setup_topic(c)
    sent = numbered("n", 3)
    await c.send_messages("s", "t", 0, messages(*sent))
    got = await poll(c, "s", "t", strategy=PollingStrategy.Next(), consumer=Consumer.Single("fresh"))
    assert offsets_of(got) == [0, 1, 2]


async def test_auto_commit_stores_the_last_returned_offset_and_next_resumes_after_it(server):
    """With auto_commit, a poll stores the offset of its last message and Next continues from there."""
    c = await server.client()
    await setup_topic(c)
    sent = numbered("ac", 5)
    await c.send_messages("s", "t", 0, messages(*sent))
    reader = Consumer.Single("committer")
    nxt = PollingStrategy.Next()
    assert payloads_of(await poll(c, "s", "t", strategy=nxt, count=2, consumer=reader, auto_commit=True)) == sent[:2]
    assert payloads_of(await poll(c, "s", "t", strategy=nxt, count=2, consumer=reader, auto_commit=True)) == sent[2:4]
    # A First poll with auto-commit moves the stored offset back to its last message.
    assert payloads_of(await poll(c, "s", "t", count=1, consumer=reader, auto_commit=True)) == sent[:1]
    assert offsets_of(await poll(c, "s", "t", strategy=nxt, count=10, consumer=reader, auto_commit=True)) == [1, 2, 3, 4]
    assert await poll(c, "s", "t", strategy=nxt, count=10, consumer=reader, auto_commit=True) == []
    more = numbered("ac-late", 2)
    await c.send_messages("s", "t", 0, messages(*more))
    assert payloads_of(await poll(c, "s", "t", strategy=nxt, count=10, consumer=reader, auto_commit=True)) == more


async def test_polling_without_auto_commit_does_not_move_next(server):
    """Polls without auto_commit store nothing: Next keeps returning from offset 0."""
    c = await server.client()
    await setup_topic(c)
    await c.send_messages("s", "t", 0, messages(*numbered("nc", 3)))
    reader = Consumer.Single("looker")
    for _ in range(2):
        got = await poll(c, "s", "t", strategy=PollingStrategy.Next(), count=2, consumer=reader)
        assert offsets_of(got) == [0, 1]


async def test_each_consumer_keeps_its_own_offset(server):
    """Named and numeric consumers commit independently of one another."""
    c = await server.client()
    await setup_topic(c)
    await c.send_messages("s", "t", 0, messages(*numbered("ind", 6)))
    nxt = PollingStrategy.Next()
    by_name = Consumer.Single("alice")
    other_name = Consumer.Single("bob")
    by_number = Consumer.Single(7)
    assert offsets_of(await poll(c, "s", "t", strategy=nxt, count=4, consumer=by_name, auto_commit=True)) == [0, 1, 2, 3]
    assert offsets_of(await poll(c, "s", "t", strategy=nxt, count=1, consumer=by_number, auto_commit=True)) == [0]
    assert offsets_of(await poll(c, "s", "t", strategy=nxt, count=10, consumer=other_name)) == [0, 1, 2, 3, 4, 5]
    assert offsets_of(await poll(c, "s", "t", strategy=nxt, count=10, consumer=by_name)) == [4, 5]
    assert offsets_of(await poll(c, "s", "t", strategy=nxt, count=10, consumer=by_number)) == [1, 2, 3, 4, 5]


async def test_a_consumer_keeps_one_offset_per_partition(server):
    """A consumer's committed offset on one partition does not move it on another."""
    c = await server.client()
    await setup_topic(c, partitions=2)
    await c.send_messages("s", "t", 0, messages(*numbered("p0", 3)))
    await c.send_messages("s", "t", 1, messages(*numbered("p1", 3)))
    reader = Consumer.Single("per-partition")
    nxt = PollingStrategy.Next()
    await poll(c, "s", "t", partition_id=0, strategy=nxt, count=3, consumer=reader, auto_commit=True)
    got = await poll(c, "s", "t", partition_id=1, strategy=nxt, count=10, consumer=reader)
    assert [(m.partition_id(), m.offset()) for m in got] == [(1, 0), (1, 1), (1, 2)]
    assert await poll(c, "s", "t", partition_id=0, strategy=nxt, consumer=reader) == []


async def test_polling_an_empty_partition_returns_nothing_with_every_strategy(server):
    """First, Last, Next, Offset(0) and Timestamp(0) on an empty partition return no messages."""
    c = await server.client()
    await setup_topic(c)
    for strategy in (
        PollingStrategy.First(),
        PollingStrategy.Last(),
        PollingStrategy.Next(),
        PollingStrategy.Offset(0),
        PollingStrategy.Timestamp(0),
    ):
        assert await poll(c, "s", "t", strategy=strategy, auto_commit=True) == [], strategy


async def test_polling_without_a_partition_reads_partition_0(server):
    """A single consumer that names no partition reads partition 0."""
    c = await server.client()
    await setup_topic(c, partitions=2)
    await c.send_messages("s", "t", 0, messages(b"zero"))
    await c.send_messages("s", "t", 1, messages(b"one"))
    got = await poll(c, "s", "t", partition_id=None)
    assert [(m.partition_id(), m.payload()) for m in got] == [(0, b"zero")]


async def test_received_messages_report_their_partition(server):
    """Each polled message reports the partition it was read from."""
    c = await server.client()
    await setup_topic(c, partitions=3)
    for p in range(3):
        await c.send_messages("s", "t", p, messages(f"in-{p}".encode()))
    for p in range(3):
        got = await poll(c, "s", "t", partition_id=p)
        assert [(m.partition_id(), m.payload()) for m in got] == [(p, f"in-{p}".encode())]


async def test_sending_to_a_missing_topic_fails(server):
    """send_messages to a topic that does not exist fails with a not-found error."""
    c = await server.client()
    await c.create_stream("s")
    await expect_error(c.send_messages("s", "missing", 0, messages(b"x")), r"not found")
    await expect_error(c.send_messages("s", 4, 0, messages(b"x")), r"not found")
