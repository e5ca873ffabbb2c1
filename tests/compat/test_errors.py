"""Errors: bad credentials, missing resources, denied permissions, duplicates, unknown commands."""

from __future__ import annotations

import pytest
from apache_iggy import Consumer, GlobalPermissions, Permissions, PollingStrategy

from galgo_compat import ROOT_PASSWORD, ROOT_USERNAME, expect_error, messages, poll


async def test_login_with_a_wrong_password_fails_with_invalid_credentials(server):
    """login_user with the wrong password fails with 'Invalid credentials'; the right one still works."""
    c = await server.client(username=None)
    await expect_error(c.login_user(ROOT_USERNAME, "not-the-password"), r"invalid credentials")
    ok = await server.client(username=None)
    await ok.login_user(ROOT_USERNAME, ROOT_PASSWORD)
    assert await ok.get_streams() == []


async def test_login_of_an_unknown_user_fails_with_invalid_credentials(server):
    """login_user of a username that does not exist fails like a wrong password."""
    c = await server.client(username=None)
    await expect_error(c.login_user("no-such-user", "whatever"), r"invalid credentials")


async def test_requests_on_a_missing_stream_fail_with_not_found(server):
    """Topic creation, update, delete, purge, send and poll on a missing stream fail with not found."""
    c = await server.client()
    await expect_error(c.create_topic("missing", "t", 1), r"not found")
    await expect_error(c.create_topic(3, "t", 1), r"not found")
    await expect_error(c.update_stream("missing", "renamed"), r"not found")
    await expect_error(c.delete_stream("missing"), r"not found")
    await expect_error(c.purge_stream("missing"), r"not found")
    await expect_error(c.send_messages("missing", "t", 0, messages(b"x")), r"not found")
    await expect_error(c.send_messages(3, 0, 0, messages(b"x")), r"not found")
    await expect_error(poll(c, "missing", "t"), r"not found")
    await expect_error(poll(c, 3, 0), r"not found")
    await expect_error(c.create_consumer_group("missing", "t", "g"), r"not found")
    await expect_error(c.get_consumer_groups(3, 0), r"not found")
    assert await c.get_stream("missing") is None
    assert await c.get_streams() == []


async def test_requests_on_a_missing_topic_fail_with_not_found(server):
    """Updates, deletes, partition changes, sends, polls and groups on a missing topic fail with not found."""
    c = await server.client()
    await c.create_stream("s")
    await expect_error(c.update_topic("s", "missing", "renamed"), r"not found")
    await expect_error(c.purge_topic("s", "missing"), r"not found")
    await expect_error(c.create_partitions("s", "missing", 1), r"not found")
    await expect_error(c.delete_partitions("s", 2, 1), r"not found")
    await expect_error(c.send_messages("s", "missing", 0, messages(b"x")), r"not found")
    await expect_error(poll(c, "s", 2), r"not found")
    await expect_error(c.create_consumer_group("s", "missing", "g"), r"not found")
    assert await c.get_topic("s", "missing") is None
    assert (await c.get_stream("s")).topics_count == 0


async def test_a_user_without_permissions_is_denied_sending_and_polling(server):
    """A user without send or poll permission gets Unauthorized and nothing is stored or committed."""
    root = await server.client()
    await root.create_stream("s")
    await root.create_topic("s", "t", 1)
    await root.send_messages("s", "t", 0, messages(b"existing"))
    await root.create_user("nobody", "nobody-pw")
    c = await server.client("nobody", "nobody-pw")
    await expect_error(c.send_messages(0, 0, 0, messages(b"denied")), r"unauthori[sz]ed")
    await expect_error(
        poll(c, 0, 0, consumer=Consumer.Single("nobody"), strategy=PollingStrategy.Next(), auto_commit=True),
        r"unauthori[sz]ed",
    )
    got = await poll(root, "s", "t", consumer=Consumer.Single("nobody"), strategy=PollingStrategy.Next())
    assert [(m.offset(), m.payload()) for m in got] == [(0, b"existing")]


async def test_a_user_with_read_only_permissions_cannot_change_anything(server):
    """A user with read_streams and read_topics may list but not create, update or delete."""
    root = await server.client()
    await root.create_stream("s")
    await root.create_topic("s", "t", 1)
    await root.create_user("viewer", "viewer-pw", permissions=Permissions(GlobalPermissions(read_streams=True, read_topics=True)))
    c = await server.client("viewer", "viewer-pw")
    assert [s.name for s in await c.get_streams()] == ["s"]
    assert [t.name for t in await c.get_topics("s")] == ["t"]
    await expect_error(c.create_stream("new"), r"unauthori[sz]ed")
    await expect_error(c.update_stream("s", "renamed"), r"unauthori[sz]ed")
    await expect_error(c.delete_stream("s"), r"unauthori[sz]ed")
    await expect_error(c.create_topic("s", "t2", 1), r"unauthori[sz]ed")
    await expect_error(c.delete_topic("s", "t"), r"unauthori[sz]ed")
    await expect_error(c.create_partitions("s", "t", 1), r"unauthori[sz]ed")
    await expect_error(c.create_user("sneaky", "sneaky-pw"), r"unauthori[sz]ed")
    assert [s.name for s in await root.get_streams()] == ["s"]
    assert (await root.get_topic("s", "t")).partitions_count == 1


async def test_creating_a_stream_with_a_taken_name_fails(server):
    """create_stream with the name of an existing stream fails with 'already exists'."""
    c = await server.client()
    await c.create_stream("unique")
    await expect_error(c.create_stream("unique"), r"already exists")
    assert [(s.id, s.name) for s in await c.get_streams()] == [(0, "unique")]


async def test_an_unknown_command_code_is_rejected_as_an_invalid_command(server):
    """send_binary_request with code 60000 fails with 'Invalid command'; the connection stays usable."""
    c = await server.client()
    for _ in range(3):
        await expect_error(c.send_binary_request(60000, b""), r"invalid command")
    await expect_error(c.send_binary_request(60000, b"some payload"), r"invalid command")
    await c.ping()
    await c.create_stream("after-error")
    assert [s.name for s in await c.get_streams()] == ["after-error"]


async def test_session_control_codes_are_refused_for_raw_requests(server):
    """Raw requests with the login and logout codes 38, 39, 40, 44 and 45 are refused."""
    c = await server.client()
    for code in (38, 39, 40, 44, 45):
        await expect_error(c.send_binary_request(code, b""), r"invalid command")
    assert await c.get_streams() == []


async def test_an_error_reply_leaves_the_session_logged_in(server):
    """After a failed request the same client keeps its session and permissions."""
    c = await server.client()
    await c.create_stream("s")
    await expect_error(c.create_stream("s"), r"already exists")
    await expect_error(c.delete_topic("s", "nope"), r"not found")
    await expect_error(c.send_messages("s", "nope", 0, messages(b"x")), r"not found")
    await c.create_topic("s", "t", 1)
    r = await c.send_messages("s", "t", 0, messages(b"ok"))
    assert [x.base_offset for x in r.confirmations] == [0]


async def test_polling_with_count_zero_is_rejected(server):
    """poll_messages with count 0 fails with 'Invalid messages count'."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    await c.send_messages("s", "t", 0, messages(b"x"))
    with pytest.raises(RuntimeError, match="(?i)invalid messages count"):
        await poll(c, "s", "t", count=0)
