"""Topics: create (defaults and explicit settings), get, list, update, delete, purge; ids per stream."""

from __future__ import annotations

from datetime import timedelta

from apache_iggy import IggyExpiry, MaxTopicSize, SendMessage, Topic, TopicDetails

from galgo_compat import expect_error, now_us, poll

GIB = 1024**3


async def test_the_first_topic_gets_id_0_with_the_requested_partitions(server):
    """A topic created with 3 partitions gets id 0, partitions 0..2 and the default settings."""
    c = await server.client()
    await c.create_stream("s")
    before = now_us()
    await c.create_topic("s", "events", 3)
    after = now_us()
    by_name = await c.get_topic("s", "events")
    by_id = await c.get_topic(0, 0)
    for t in (by_name, by_id):
        assert isinstance(t, TopicDetails)
        assert (t.id, t.name, t.partitions_count) == (0, "events", 3)
        assert (t.messages_count, t.size) == (0, 0)
        assert [p.id for p in t.partitions] == [0, 1, 2]
        assert all((p.messages_count, p.current_offset, p.size) == (0, 0, 0) for p in t.partitions)
        assert before - 1_000_000 <= t.created_at <= after + 1_000_000
        assert t.compression_algorithm == "none"
        assert isinstance(t.message_expiry, IggyExpiry.NeverExpire)
        assert isinstance(t.max_topic_size, MaxTopicSize.Unlimited)
        assert dict(t.options) == {}
    stream = await c.get_stream("s")
    assert stream.topics_count == 1
    assert [(t.id, t.name) for t in stream.topics] == [(0, "events")]


async def test_a_new_topic_takes_the_lowest_free_id_within_its_stream(server):
    """Topic ids are per stream: 0, 1, 2; after deleting 1 the next topic gets 1; another stream starts at 0."""
    c = await server.client()
    await c.create_stream("s1")
    await c.create_stream("s2")
    for name in ("t0", "t1", "t2"):
        await c.create_topic("s1", name, 1)
    assert [(await c.get_topic("s1", n)).id for n in ("t0", "t1", "t2")] == [0, 1, 2]
    await c.delete_topic("s1", 1)
    await c.create_topic("s1", "t3", 1)
    assert (await c.get_topic("s1", "t3")).id == 1
    await c.create_topic("s1", "t4", 1)
    assert (await c.get_topic("s1", "t4")).id == 3
    await c.create_topic("s2", "other", 1)
    assert (await c.get_topic("s2", "other")).id == 0


async def test_get_topics_lists_the_topics_of_one_stream(server):
    """get_topics returns a summary of each topic of the given stream only."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_stream("unrelated")
    await c.create_topic("s", "a", 1)
    await c.create_topic("s", "b", 4)
    await c.create_topic("unrelated", "c", 1)
    await c.send_messages("s", "b", 3, [SendMessage(b"m1"), SendMessage(b"m2")])
    topics = await c.get_topics("s")
    assert all(isinstance(t, Topic) for t in topics)
    assert sorted((t.id, t.name, t.partitions_count, t.messages_count) for t in topics) == [
        (0, "a", 1, 0),
        (1, "b", 4, 2),
    ]
    assert sorted(t.name for t in await c.get_topics(0)) == ["a", "b"]
    assert [t.name for t in await c.get_topics("unrelated")] == ["c"]


async def test_get_topics_of_a_stream_without_topics_is_empty(server):
    """get_topics of an existing stream with no topics returns an empty list."""
    c = await server.client()
    await c.create_stream("bare")
    assert await c.get_topics("bare") == []


async def test_get_topic_of_a_missing_topic_returns_none(server):
    """get_topic of an unknown topic name or id returns None."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    assert await c.get_topic("s", "nope") is None
    assert await c.get_topic("s", 9) is None


async def test_a_topic_created_with_explicit_settings_reports_them(server):
    """compression, message expiry and max size given at create are reported by get_topic."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic(
        "s",
        "tuned",
        2,
        compression_algorithm="gzip",
        message_expiry=IggyExpiry.ExpireDuration(timedelta(hours=1)),
        max_topic_size=MaxTopicSize.Custom(2 * GIB),
    )
    t = await c.get_topic("s", "tuned")
    assert t.partitions_count == 2
    assert t.compression_algorithm == "gzip"
    assert isinstance(t.message_expiry, IggyExpiry.ExpireDuration)
    assert t.message_expiry.duration == timedelta(hours=1)
    assert isinstance(t.max_topic_size, MaxTopicSize.Custom)
    assert t.max_topic_size.bytes == 2 * GIB
    explicit = t.options.to_scalar_dict()
    assert explicit.get("compression_algorithm") == "gzip"
    assert explicit.get("message_expiry") == 3_600_000_000
    assert explicit.get("max_topic_size") == 2 * GIB
    summary = [x for x in await c.get_topics("s") if x.name == "tuned"][0]
    assert summary.compression_algorithm == "gzip"
    assert summary.message_expiry.duration == timedelta(hours=1)
    assert summary.max_topic_size.bytes == 2 * GIB


async def test_update_topic_renames_it_and_changes_only_the_given_settings(server):
    """update_topic is a patch: the new name and max size apply, compression and expiry stay."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic(
        "s",
        "before",
        1,
        compression_algorithm="gzip",
        message_expiry=IggyExpiry.ExpireDuration(timedelta(minutes=30)),
    )
    await c.send_messages("s", "before", 0, [SendMessage(b"kept")])
    await c.update_topic("s", "before", "after", max_topic_size=MaxTopicSize.Custom(3 * GIB))
    assert await c.get_topic("s", "before") is None
    t = await c.get_topic("s", "after")
    assert (t.id, t.name, t.messages_count) == (0, "after", 1)
    assert t.compression_algorithm == "gzip"
    assert t.message_expiry.duration == timedelta(minutes=30)
    assert t.max_topic_size.bytes == 3 * GIB
    await c.update_topic("s", 0, "after", message_expiry=IggyExpiry.NeverExpire())
    t = await c.get_topic("s", 0)
    assert isinstance(t.message_expiry, IggyExpiry.NeverExpire)
    assert t.max_topic_size.bytes == 3 * GIB
    assert [m.payload() for m in await poll(c, "s", "after")] == [b"kept"]


async def test_renaming_a_topic_to_a_taken_name_fails(server):
    """update_topic to the name of another topic of the stream fails with 'already exists'."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "x", 1)
    await c.create_topic("s", "y", 1)
    await expect_error(c.update_topic("s", "y", "x"), r"already exists")
    assert sorted(t.name for t in await c.get_topics("s")) == ["x", "y"]


async def test_delete_topic_removes_it_and_its_messages(server):
    """delete_topic removes the topic; a topic created again with that name is empty."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 2)
    await c.send_messages("s", "t", 1, [SendMessage(b"old")])
    await c.delete_topic("s", "t")
    assert await c.get_topic("s", "t") is None
    assert (await c.get_stream("s")).topics_count == 0
    await c.create_topic("s", "t", 2)
    t = await c.get_topic("s", "t")
    assert (t.id, t.messages_count) == (0, 0)
    assert await poll(c, "s", "t", partition_id=1) == []


async def test_deleting_a_missing_topic_fails(server):
    """delete_topic of an unknown topic fails with a not-found error."""
    c = await server.client()
    await c.create_stream("s")
    await expect_error(c.delete_topic("s", "ghost"), r"not found")
    await expect_error(c.delete_topic("s", 3), r"not found")


async def test_purge_topic_removes_its_messages_and_keeps_its_partitions(server):
    """purge_topic empties every partition of the topic and leaves sibling topics alone."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "purged", 2)
    await c.create_topic("s", "sibling", 1)
    await c.send_messages("s", "purged", 0, [SendMessage(b"a")])
    await c.send_messages("s", "purged", 1, [SendMessage(b"b"), SendMessage(b"c")])
    await c.send_messages("s", "sibling", 0, [SendMessage(b"d")])
    await c.purge_topic("s", "purged")
    t = await c.get_topic("s", "purged")
    assert (t.partitions_count, t.messages_count, t.size) == (2, 0, 0)
    assert [p.messages_count for p in t.partitions] == [0, 0]
    assert await poll(c, "s", "purged", partition_id=0) == []
    assert await poll(c, "s", "purged", partition_id=1) == []
    assert [m.payload() for m in await poll(c, "s", "sibling")] == [b"d"]
    assert (await c.get_topic("s", "sibling")).messages_count == 1


async def test_a_topic_name_is_unique_within_its_stream_only(server):
    """A second topic with the same name fails in the same stream but succeeds in another stream."""
    c = await server.client()
    await c.create_stream("s1")
    await c.create_stream("s2")
    await c.create_topic("s1", "same", 1)
    await expect_error(c.create_topic("s1", "same", 1), r"already exists")
    await c.create_topic("s2", "same", 1)
    assert [t.name for t in await c.get_topics("s1")] == ["same"]
    assert [t.name for t in await c.get_topics("s2")] == ["same"]


async def test_topic_and_stream_counts_follow_the_messages_sent(server):
    """messages_count of partition, topic and stream add up after sends to several partitions."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 3)
    await c.send_messages("s", "t", 0, [SendMessage(b"0a"), SendMessage(b"0b")])
    await c.send_messages("s", "t", 2, [SendMessage(b"2a")])
    await c.send_messages("s", "t", 2, [SendMessage(b"2b"), SendMessage(b"2c"), SendMessage(b"2d")])
    t = await c.get_topic("s", "t")
    assert [p.messages_count for p in t.partitions] == [2, 0, 4]
    assert [p.current_offset for p in t.partitions] == [1, 0, 3]
    assert t.messages_count == 6
    assert t.size >= 12
    s = await c.get_stream("s")
    assert s.messages_count == 6
    assert s.size == t.size
