"""Consumer groups: create/get/list/delete, join/leave, assignment, group offsets, IggyConsumer."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from apache_iggy import (
    AutoCommit,
    AutoCommitWhen,
    Consumer,
    ConsumerGroup,
    ConsumerGroupDetails,
    ConsumerGroupMember,
    PollingStrategy,
    ReceiveMessage,
)

from galgo_compat import eventually, expect_error, messages, numbered, payloads_of, poll

FAST = timedelta(milliseconds=25)


async def setup_topic(c, partitions: int) -> None:
    await c.create_stream("s")
    await c.create_topic("s", "t", partitions)


async def group_consumer(c, name: str, strategy=None, batch_length: int = 10, auto_commit=None, **kw):
    """IggyClient.consumer_group on s/t with a fast poll interval."""
    return await c.consumer_group(
        name,
        "s",
        "t",
        polling_strategy=PollingStrategy.Next() if strategy is None else strategy,
        batch_length=batch_length,
        auto_commit=AutoCommit.Disabled() if auto_commit is None else auto_commit,
        poll_interval=FAST,
        **kw,
    )


def assignment(group: ConsumerGroupDetails) -> list[list[int]]:
    return sorted(sorted(m.partitions) for m in group.members)


async def settled_split(c, group: str, members: int, partitions: int, timeout: float = 15):
    """Wait until `group` has `members` members whose partitions are disjoint, cover 0..partitions-1
    and are spread evenly; return the group details."""

    async def probe():
        g = await c.get_consumer_group("s", "t", group)
        if g is None or g.members_count != members:
            return None
        owned = [p for m in g.members for p in m.partitions]
        sizes = sorted(len(m.partitions) for m in g.members)
        if sorted(owned) != list(range(partitions)) or sizes[-1] - sizes[0] > 1:
            return None
        return g

    return await eventually(probe, timeout=timeout, what=f"an even split of {partitions} partitions over {members} members")


# ----------------------------------------------------------------------------- metadata


async def test_a_new_consumer_group_gets_id_0_and_no_members(server):
    """create_consumer_group makes group 0 with the topic's partition count and no members."""
    c = await server.client()
    await setup_topic(c, 3)
    await c.create_consumer_group("s", "t", "workers")
    for ident in ("workers", 0):
        g = await c.get_consumer_group("s", "t", ident)
        assert isinstance(g, ConsumerGroupDetails)
        assert (g.id, g.name, g.partitions_count, g.members_count, g.members) == (0, "workers", 3, 0, [])
    assert (await c.get_stats()).consumer_groups_count == 1


async def test_consumer_group_ids_are_monotonic_and_never_reused(server):
    """Groups get ids 0 and 1; after deleting 1 the next group gets 2, not 1."""
    c = await server.client()
    await setup_topic(c, 1)
    await c.create_consumer_group("s", "t", "g0")
    await c.create_consumer_group("s", "t", "g1")
    await c.delete_consumer_group("s", "t", 1)
    await c.create_consumer_group("s", "t", "g2")
    assert [(g.id, g.name) for g in sorted(await c.get_consumer_groups("s", "t"), key=lambda g: g.id)] == [
        (0, "g0"),
        (2, "g2"),
    ]


async def test_get_consumer_groups_lists_the_groups_of_one_topic(server):
    """get_consumer_groups lists the groups of the given topic only, with their counts."""
    c = await server.client()
    await setup_topic(c, 2)
    await c.create_topic("s", "other", 1)
    assert await c.get_consumer_groups("s", "t") == []
    await c.create_consumer_group("s", "t", "a")
    await c.create_consumer_group("s", "t", "b")
    await c.create_consumer_group("s", "other", "c")
    groups = await c.get_consumer_groups("s", "t")
    assert all(isinstance(g, ConsumerGroup) for g in groups)
    assert sorted((g.id, g.name, g.partitions_count, g.members_count) for g in groups) == [
        (0, "a", 2, 0),
        (1, "b", 2, 0),
    ]
    assert [(g.id, g.name) for g in await c.get_consumer_groups(0, 1)] == [(0, "c")]


async def test_get_consumer_group_of_a_missing_group_returns_none(server):
    """get_consumer_group of an unknown name or id returns None."""
    c = await server.client()
    await setup_topic(c, 1)
    assert await c.get_consumer_group("s", "t", "ghost") is None
    assert await c.get_consumer_group("s", "t", 5) is None


async def test_a_group_name_is_unique_within_its_topic(server):
    """A second group with the same name in the same topic fails with 'already exists'."""
    c = await server.client()
    await setup_topic(c, 1)
    await c.create_consumer_group("s", "t", "dup")
    await expect_error(c.create_consumer_group("s", "t", "dup"), r"already exists")
    assert len(await c.get_consumer_groups("s", "t")) == 1


async def test_delete_consumer_group_removes_it(server):
    """delete_consumer_group removes the group; deleting it again fails with not found."""
    c = await server.client()
    await setup_topic(c, 1)
    await c.create_consumer_group("s", "t", "short-lived")
    await c.delete_consumer_group("s", "t", "short-lived")
    assert await c.get_consumer_group("s", "t", "short-lived") is None
    assert await c.get_consumer_groups("s", "t") == []
    await expect_error(c.delete_consumer_group("s", "t", "short-lived"), r"not found")


# ----------------------------------------------------------------------------- membership


async def test_joining_makes_the_client_a_member_owning_every_partition(server):
    """A sole member owns all partitions; joining again is idempotent."""
    c = await server.client()
    await setup_topic(c, 3)
    await c.create_consumer_group("s", "t", "g")
    await c.join_consumer_group("s", "t", "g")
    g = await c.get_consumer_group("s", "t", "g")
    assert g.members_count == 1
    (m,) = g.members
    assert isinstance(m, ConsumerGroupMember)
    assert (m.partitions_count, sorted(m.partitions)) == (3, [0, 1, 2])
    await c.join_consumer_group("s", "t", 0)
    assert (await c.get_consumer_group("s", "t", "g")).members_count == 1


async def test_leaving_removes_the_member_and_leaving_again_fails(server):
    """leave_consumer_group removes the member; a second leave by a non-member fails."""
    c = await server.client()
    await setup_topic(c, 2)
    await c.create_consumer_group("s", "t", "g")
    await c.join_consumer_group("s", "t", "g")
    await c.leave_consumer_group("s", "t", "g")
    g = await c.get_consumer_group("s", "t", "g")
    assert (g.members_count, g.members) == (0, [])
    with pytest.raises(RuntimeError):
        await c.leave_consumer_group("s", "t", "g")


async def test_joining_a_missing_group_fails(server):
    """join_consumer_group of a group that does not exist fails with not found."""
    c = await server.client()
    await setup_topic(c, 1)
    await expect_error(c.join_consumer_group("s", "t", "nope"), r"not found")
    await expect_error(c.join_consumer_group("s", "t", 3), r"not found")


async def test_two_members_split_the_partitions_between_them(server):
    """With two members of a 4-partition group each owns 2 partitions, disjoint, covering all."""
    a = await server.client()
    b = await server.client()
    await setup_topic(a, 4)
    await a.create_consumer_group("s", "t", "g")
    await a.join_consumer_group("s", "t", "g")
    await b.join_consumer_group("s", "t", "g")

    # Members that poll let a cooperative rebalance finish; a poll with nothing to read is harmless.
    async def probe():
        for cl in (a, b):
            await poll(cl, "s", "t", partition_id=None, consumer=Consumer.Group("g"), strategy=PollingStrategy.Next())
        g = await a.get_consumer_group("s", "t", "g")
        return g if g.members_count == 2 and assignment(g) in ([[0, 1], [2, 3]], [[0, 2], [1, 3]], [[0, 3], [1, 2]]) else None

    g = await eventually(probe, timeout=15, what="two members with two partitions each")
    assert [m.partitions_count for m in g.members] == [2, 2]
    assert len({m.id for m in g.members}) == 2


async def test_logging_out_removes_the_client_from_its_groups(server):
    """A member that logs out is no longer a member."""
    root = await server.client()
    await setup_topic(root, 2)
    await root.create_consumer_group("s", "t", "g")
    member = await server.client()
    await member.join_consumer_group("s", "t", "g")
    assert (await root.get_consumer_group("s", "t", "g")).members_count == 1
    await member.logout_user()

    async def gone():
        return (await root.get_consumer_group("s", "t", "g")).members_count == 0

    await eventually(gone, timeout=5, what="the logged-out member to leave the group")


async def test_a_member_is_given_partitions_added_to_the_topic(server):
    """After create_partitions the group's partition count grows and its sole member owns the new ones."""
    c = await server.client()
    await setup_topic(c, 2)
    await c.create_consumer_group("s", "t", "g")
    await c.join_consumer_group("s", "t", "g")
    await c.create_partitions("s", "t", 2)

    async def grown():
        g = await c.get_consumer_group("s", "t", "g")
        return g if g.partitions_count == 4 and assignment(g) == [[0, 1, 2, 3]] else None

    await eventually(grown, timeout=5, what="the member to own partitions 0..3")


async def test_two_members_polling_a_group_consume_every_message_exactly_once(server):
    """Two joined clients polling with Consumer.Group and auto-commit read each message exactly once."""
    a = await server.client()
    b = await server.client()
    await setup_topic(a, 4)
    await a.create_consumer_group("s", "t", "g")
    await a.join_consumer_group("s", "t", "g")
    await b.join_consumer_group("s", "t", "g")
    group = Consumer.Group("g")

    async def group_poll(cl):
        return await poll(cl, "s", "t", partition_id=None, consumer=group, strategy=PollingStrategy.Next(), count=5, auto_commit=True)

    async def split():
        for cl in (a, b):
            assert await group_poll(cl) == []
        g = await a.get_consumer_group("s", "t", "g")
        return g if g.members_count == 2 and all(m.partitions_count == 2 for m in g.members) else None

    await eventually(split, timeout=15, what="two members with two partitions each")
    sent = {}
    for p in range(4):
        batch = numbered(f"p{p}", 10)
        await a.send_messages("s", "t", p, messages(*batch))
        sent.update({payload: p for payload in batch})

    received = {"a": [], "b": []}
    idle_rounds = 0
    while idle_rounds < 5 and len(received["a"]) + len(received["b"]) < 40:
        got_a = await group_poll(a)
        got_b = await group_poll(b)
        received["a"] += got_a
        received["b"] += got_b
        idle_rounds = idle_rounds + 1 if not (got_a or got_b) else 0
    everything = [m.payload() for m in received["a"] + received["b"]]
    assert len(everything) == 40, f"received {len(everything)} of 40 messages"
    assert sorted(everything) == sorted(sent)
    parts_a = {m.partition_id() for m in received["a"]}
    parts_b = {m.partition_id() for m in received["b"]}
    assert parts_a and parts_b and not (parts_a & parts_b)
    for m in received["a"] + received["b"]:
        assert sent[m.payload()] == m.partition_id()
    # Everything was committed: nothing is left for the group.
    assert await group_poll(a) == [] and await group_poll(b) == []


# ----------------------------------------------------------------------------- IggyConsumer


async def test_a_group_consumer_reports_its_name_stream_topic_and_offsets(server):
    """IggyConsumer exposes its group, stream and topic, and tracks no offsets before polling."""
    c = await server.client()
    await setup_topic(c, 1)
    consumer = await group_consumer(c, "meta")
    assert consumer.name() == "meta"
    assert consumer.stream() == "s"
    assert consumer.topic() == "t"
    assert consumer.partition_id() == 0
    assert consumer.get_last_consumed_offset(0) is None
    assert consumer.get_last_stored_offset(0) is None
    g = await c.get_consumer_group("s", "t", "meta")
    assert (g.id, g.members_count, assignment(g)) == (0, 1, [[0]])


async def test_a_group_consumer_without_auto_create_needs_an_existing_group(server):
    """consumer_group(create_consumer_group_if_not_exists=False) fails for a missing group, works for an existing one."""
    c = await server.client()
    await setup_topic(c, 1)
    with pytest.raises(RuntimeError):
        await group_consumer(c, "absent", create_consumer_group_if_not_exists=False)
    await c.create_consumer_group("s", "t", "present")
    consumer = await group_consumer(c, "present", create_consumer_group_if_not_exists=False)
    assert consumer.name() == "present"


async def test_iter_messages_yields_messages_in_order_and_tracks_the_consumed_offset(server):
    """iter_messages yields every message once in offset order, across polls of batch_length 2."""
    c = await server.client()
    await setup_topic(c, 1)
    sent = numbered("it", 5)
    await c.send_messages("s", "t", 0, messages(*sent))
    consumer = await group_consumer(c, "iter", strategy=PollingStrategy.First(), batch_length=2)
    it = consumer.iter_messages()
    got = [await it.next() for _ in range(5)]
    assert all(isinstance(m, ReceiveMessage) for m in got)
    assert payloads_of(got) == sent
    assert [m.offset() for m in got] == [0, 1, 2, 3, 4]
    assert consumer.get_last_consumed_offset(0) == 4
    assert consumer.partition_id() == 0
    late = numbered("it-late", 2)
    await c.send_messages("s", "t", 0, messages(*late))
    assert payloads_of([await it.next(), await it.next()]) == late


async def test_consume_messages_calls_back_for_each_message_until_shutdown(server):
    """consume_messages passes each new message to the callback and returns once the event is set."""
    c = await server.client()
    await setup_topic(c, 1)
    consumer = await group_consumer(c, "callback")
    sent = numbered("cb", 4)
    got: list[bytes] = []
    done = asyncio.Event()

    async def on_message(m: ReceiveMessage) -> None:
        got.append(m.payload())
        if len(got) == len(sent):
            done.set()

    async def produce():
        await asyncio.sleep(0.05)
        await c.send_messages("s", "t", 0, messages(*sent))

    await asyncio.gather(consumer.consume_messages(on_message, done, _timeout=20), produce())
    assert got == sent
    assert consumer.get_last_consumed_offset(0) == 3


async def test_a_stored_group_offset_lets_a_new_member_resume_after_it(server):
    """store_offset(1) on the group makes the next member's Next poll start at offset 2."""
    first = await server.client()
    await setup_topic(first, 1)
    sent = numbered("so", 5)
    await first.send_messages("s", "t", 0, messages(*sent))
    consumer = await group_consumer(first, "resumers", strategy=PollingStrategy.First())
    it = consumer.iter_messages()
    assert payloads_of([await it.next(), await it.next()]) == sent[:2]
    await consumer.store_offset(1, 0)
    assert consumer.get_last_stored_offset(0) == 1
    await first.leave_consumer_group("s", "t", "resumers")

    second = await server.client()
    follower = await group_consumer(second, "resumers", strategy=PollingStrategy.Next())
    it2 = follower.iter_messages()
    resumed = [await it2.next() for _ in range(3)]
    assert [m.offset() for m in resumed] == [2, 3, 4]
    assert payloads_of(resumed) == sent[2:]


async def test_auto_commit_when_polling_stores_the_group_offset(server):
    """AutoCommit.When(PollingMessages) commits each poll, so the next member resumes after it."""
    first = await server.client()
    await setup_topic(first, 1)
    sent = numbered("acp", 6)
    await first.send_messages("s", "t", 0, messages(*sent))
    consumer = await group_consumer(
        first,
        "committers",
        strategy=PollingStrategy.Next(),
        batch_length=3,
        auto_commit=AutoCommit.When(AutoCommitWhen.PollingMessages()),
    )
    it = consumer.iter_messages()
    assert payloads_of([await it.next() for _ in range(3)]) == sent[:3]
    # The offset is committed by the server during the poll (auto_commit=1 in PollMessages), so the
    # SDK's local last-stored cache is not updated; what matters is that the next member resumes at 3.
    await first.leave_consumer_group("s", "t", "committers")

    second = await server.client()
    with pytest.raises(RuntimeError):  # not a member yet
        await poll(second, "s", "t", partition_id=None, consumer=Consumer.Group("committers"), strategy=PollingStrategy.Next())
    await second.join_consumer_group("s", "t", "committers")
    got = await poll(second, "s", "t", partition_id=None, consumer=Consumer.Group("committers"), strategy=PollingStrategy.Next())
    assert [m.offset() for m in got] == [3, 4, 5]


async def test_delete_offset_makes_the_group_start_again_from_offset_0(server):
    """delete_offset fails while nothing is stored; after store and delete, Next starts at 0."""
    first = await server.client()
    await setup_topic(first, 1)
    await first.send_messages("s", "t", 0, messages(*numbered("del", 3)))
    consumer = await group_consumer(first, "forgetful", strategy=PollingStrategy.First())
    with pytest.raises(RuntimeError):
        await consumer.delete_offset(0)
    await consumer.store_offset(2, 0)
    await consumer.delete_offset(0)
    await first.leave_consumer_group("s", "t", "forgetful")

    second = await server.client()
    follower = await group_consumer(second, "forgetful", strategy=PollingStrategy.Next())
    it = follower.iter_messages()
    assert (await it.next()).offset() == 0


async def test_two_group_consumers_consume_every_message_exactly_once(server):
    """Two IggyConsumers of one group on 4 partitions split them and each message is read exactly once."""
    a = await server.client()
    b = await server.client()
    await setup_topic(a, 4)
    commit = AutoCommit.When(AutoCommitWhen.PollingMessages())
    ca = await group_consumer(a, "pair", batch_length=5, auto_commit=commit)
    cb = await group_consumer(b, "pair", batch_length=5, auto_commit=commit)
    seen: dict[str, list[ReceiveMessage]] = {"a": [], "b": []}
    total = 40
    all_in = asyncio.Event()

    async def drain(label, consumer):
        # The raw iterator: its waits are bounded by the asyncio.wait below, not per message.
        async for m in consumer.raw.iter_messages():
            seen[label].append(m)
            if len(seen["a"]) + len(seen["b"]) >= total:
                all_in.set()

    tasks = [asyncio.ensure_future(drain("a", ca)), asyncio.ensure_future(drain("b", cb))]
    waiter = asyncio.ensure_future(all_in.wait())
    try:
        g = await settled_split(a, "pair", members=2, partitions=4)
        owner = {p: m.id for m in g.members for p in m.partitions}
        sent = {}
        for p in range(4):
            batch = numbered(f"pair{p}", 10)
            await a.send_messages("s", "t", p, messages(*batch))
            sent.update({x: p for x in batch})
        await asyncio.wait([waiter, *tasks], timeout=20, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done():
                t.result()  # a consumer that stopped early raises its error here
        assert all_in.is_set(), f"received {len(seen['a']) + len(seen['b'])} of {total} messages in 20s"
        await asyncio.sleep(0.3)  # anything extra (a duplicate) would arrive now
    finally:
        for t in (*tasks, waiter):
            t.cancel()
        await asyncio.gather(*tasks, waiter, return_exceptions=True)
    everything = [m.payload() for m in seen["a"] + seen["b"]]
    assert len(everything) == total
    assert sorted(everything) == sorted(sent)
    parts_a = {m.partition_id() for m in seen["a"]}
    parts_b = {m.partition_id() for m in seen["b"]}
    assert parts_a and parts_b and not (parts_a & parts_b)
    assert len({owner[p] for p in parts_a}) == 1 and len({owner[p] for p in parts_b}) == 1
