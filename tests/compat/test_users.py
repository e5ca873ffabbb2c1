"""Users: create/get/list/update/delete, permissions, change password, login and logout."""

from __future__ import annotations

import pytest
from apache_iggy import (
    Consumer,
    GlobalPermissions,
    Permissions,
    PollingStrategy,
    StreamPermissions,
    TopicPermissions,
    UserInfo,
    UserInfoDetails,
    UserStatus,
)

from galgo_compat import ROOT_PASSWORD, ROOT_USERNAME, expect_error, messages, now_us, poll

ALL_GLOBAL = (
    "manage_servers",
    "read_servers",
    "manage_users",
    "read_users",
    "manage_streams",
    "read_streams",
    "manage_topics",
    "read_topics",
    "poll_messages",
    "send_messages",
)


async def test_root_is_user_0_named_iggy_with_every_permission(server):
    """The root user is id 0, named iggy, active, with all ten global permissions."""
    c = await server.client()
    for ident in (0, ROOT_USERNAME):
        root = await c.get_user(ident)
        assert isinstance(root, UserInfoDetails)
        assert (root.id, root.username, root.status) == (0, ROOT_USERNAME, UserStatus.Active)
        g = root.permissions.global_permissions
        assert {name: getattr(g, name) for name in ALL_GLOBAL} == {name: True for name in ALL_GLOBAL}


async def test_create_user_returns_its_details_and_takes_the_lowest_free_id(server):
    """New users get ids 1, 2; after deleting 1 the next user gets 1 again."""
    c = await server.client()
    before = now_us()
    alice = await c.create_user("alice", "alice-pw")
    after = now_us()
    assert isinstance(alice, UserInfoDetails)
    assert (alice.id, alice.username, alice.status, alice.permissions) == (1, "alice", UserStatus.Active, None)
    assert before - 1_000_000 <= alice.created_at <= after + 1_000_000
    bob = await c.create_user("bob", "bob-pw", UserStatus.Inactive)
    assert (bob.id, bob.status) == (2, UserStatus.Inactive)
    await c.delete_user(1)
    carol = await c.create_user("carol", "carol-pw")
    assert carol.id == 1


async def test_get_user_finds_a_user_by_name_and_by_id(server):
    """get_user by username and by id return the same user; an unknown user gives None."""
    c = await server.client()
    created = await c.create_user("dave", "dave-pw")
    by_name = await c.get_user("dave")
    by_id = await c.get_user(created.id)
    for u in (by_name, by_id):
        assert (u.id, u.username, u.status, u.created_at) == (
            created.id,
            "dave",
            UserStatus.Active,
            created.created_at,
        )
        assert u.permissions is None
    assert await c.get_user("nobody") is None
    assert await c.get_user(77) is None


async def test_get_users_lists_all_users_in_id_order(server):
    """get_users lists root and every created user, ascending by id."""
    c = await server.client()
    await c.create_user("user-a", "pw-a")
    await c.create_user("user-b", "pw-b", UserStatus.Inactive)
    users = await c.get_users()
    assert all(isinstance(u, UserInfo) for u in users)
    assert [(u.id, u.username, u.status) for u in users] == [
        (0, ROOT_USERNAME, UserStatus.Active),
        (1, "user-a", UserStatus.Active),
        (2, "user-b", UserStatus.Inactive),
    ]


async def test_update_user_renames_it_and_changes_its_status(server):
    """update_user changes username and status in place; the id stays the same."""
    c = await server.client()
    u = await c.create_user("before", "pw-123")
    await c.update_user("before", username="after")
    assert await c.get_user("before") is None
    assert (await c.get_user("after")).id == u.id
    await c.update_user(u.id, status=UserStatus.Inactive)
    got = await c.get_user(u.id)
    assert (got.username, got.status) == ("after", UserStatus.Inactive)
    await c.update_user(u.id, username="again", status=UserStatus.Active)
    got = await c.get_user(u.id)
    assert (got.username, got.status) == ("again", UserStatus.Active)


async def test_renaming_a_user_to_a_taken_username_fails(server):
    """update_user to another user's username fails and leaves both users unchanged."""
    c = await server.client()
    await c.create_user("first-user", "pw-1")
    second = await c.create_user("second-user", "pw-2")
    with pytest.raises(RuntimeError):
        await c.update_user(second.id, username="first-user")
    assert (await c.get_user(second.id)).username == "second-user"


async def test_delete_user_removes_it_and_its_login(server):
    """After delete_user the user is not found and cannot log in."""
    c = await server.client()
    u = await c.create_user("temp", "temp-pw")
    await c.delete_user("temp")
    assert await c.get_user(u.id) is None
    assert [x.username for x in await c.get_users()] == [ROOT_USERNAME]
    fresh = await server.client(username=None)
    await expect_error(fresh.login_user("temp", "temp-pw"), r"invalid credentials|not found|unauthenticated")
    await expect_error(c.delete_user("temp"), r"not found")


async def test_the_root_user_cannot_be_deleted_or_stripped_of_permissions(server):
    """delete_user(0) and update_permissions(0, ...) fail; root keeps working."""
    c = await server.client()
    with pytest.raises(RuntimeError):
        await c.delete_user(0)
    with pytest.raises(RuntimeError):
        await c.update_permissions(0, None)
    again = await server.client()
    root = await again.get_user(0)
    assert root.permissions.global_permissions.manage_servers is True


async def test_a_new_user_can_log_in_and_is_limited_to_its_permissions(server):
    """A user created without permissions logs in, pings, and is denied reads and writes."""
    root = await server.client()
    await root.create_stream("s")
    u = await root.create_user("limited", "limited-pw")
    c = await server.client("limited", "limited-pw")
    await c.ping()
    await expect_error(c.get_streams(), r"unauthori[sz]ed")
    await expect_error(c.create_stream("not-allowed"), r"unauthori[sz]ed")
    await expect_error(c.get_users(), r"unauthori[sz]ed")
    assert [s.name for s in await root.get_streams()] == ["s"]
    assert u.id == 1


async def test_permissions_round_trip_through_create_and_get_user(server):
    """Global, per-stream and per-topic permissions come back from get_user exactly as created."""
    c = await server.client()
    await c.create_stream("s0")
    await c.create_topic("s0", "t0", 1)
    await c.create_topic("s0", "t1", 1)
    await c.create_stream("s1")
    perms = Permissions(
        GlobalPermissions(read_servers=True, read_users=True),
        {
            0: StreamPermissions(
                read_stream=True,
                send_messages=True,
                topics={
                    0: TopicPermissions(poll_messages=True),
                    1: TopicPermissions(manage_topic=True, read_topic=True, send_messages=True),
                },
            ),
            1: StreamPermissions(manage_stream=True),
        },
    )
    created = await c.create_user("perm-user", "perm-pw", permissions=perms)
    assert created.permissions == perms
    got = await c.get_user("perm-user")
    assert got.permissions == perms
    assert got.permissions.global_permissions.read_servers is True
    assert got.permissions.global_permissions.manage_servers is False
    assert set(got.permissions.streams) == {0, 1}
    s0 = got.permissions.streams[0]
    assert (s0.read_stream, s0.send_messages, s0.manage_stream) == (True, True, False)
    assert set(s0.topics) == {0, 1}
    assert s0.topics[0].poll_messages is True and s0.topics[0].send_messages is False
    assert got.permissions.streams[1].manage_stream is True
    assert got.permissions.streams[1].topics is None


async def test_update_permissions_replaces_them_and_none_removes_them(server):
    """update_permissions overwrites the whole permission set; None leaves the user with none."""
    c = await server.client()
    await c.create_stream("s")
    u = await c.create_user("changing", "changing-pw", permissions=Permissions(GlobalPermissions(read_streams=True)))
    replacement = Permissions(GlobalPermissions(poll_messages=True), {0: StreamPermissions(send_messages=True)})
    await c.update_permissions(u.id, replacement)
    assert (await c.get_user(u.id)).permissions == replacement
    await c.update_permissions("changing", None)
    assert (await c.get_user(u.id)).permissions is None


async def test_update_permissions_applies_to_a_user_already_logged_in(server):
    """A logged-in user denied get_streams may list streams as soon as read_streams is granted."""
    root = await server.client()
    await root.create_stream("visible")
    u = await root.create_user("late-grant", "late-pw")
    c = await server.client("late-grant", "late-pw")
    await expect_error(c.get_streams(), r"unauthori[sz]ed")
    await root.update_permissions(u.id, Permissions(GlobalPermissions(read_streams=True)))
    assert [s.name for s in await c.get_streams()] == ["visible"]
    await root.update_permissions(u.id, None)
    await expect_error(c.get_streams(), r"unauthori[sz]ed")


async def test_stream_level_permissions_apply_to_that_stream_only(server):
    """send_messages on stream 0 lets the user send there but not to stream 1, and not poll."""
    root = await server.client()
    for s in ("s0", "s1"):
        await root.create_stream(s)
        await root.create_topic(s, "t", 1)
    await root.create_user("sender", "sender-pw", permissions=Permissions(streams={0: StreamPermissions(send_messages=True)}))
    c = await server.client("sender", "sender-pw")
    r = await c.send_messages(0, 0, 0, messages(b"allowed"))
    assert [(x.stream_id, x.base_offset) for x in r.confirmations] == [(0, 0)]
    await expect_error(c.send_messages(1, 0, 0, messages(b"denied")), r"unauthori[sz]ed")
    await expect_error(poll(c, 0, 0), r"unauthori[sz]ed")
    assert [m.payload() for m in await poll(root, "s0", "t")] == [b"allowed"]
    assert await poll(root, "s1", "t") == []


async def test_topic_level_permissions_apply_to_that_topic_only(server):
    """poll_messages on topic 0 of stream 0 lets the user poll that topic but not topic 1."""
    root = await server.client()
    await root.create_stream("s")
    await root.create_topic("s", "t0", 1)
    await root.create_topic("s", "t1", 1)
    await root.send_messages("s", "t0", 0, messages(b"m0"))
    await root.send_messages("s", "t1", 0, messages(b"m1"))
    await root.create_user(
        "topic-reader",
        "reader-pw",
        permissions=Permissions(streams={0: StreamPermissions(topics={0: TopicPermissions(poll_messages=True)})}),
    )
    c = await server.client("topic-reader", "reader-pw")
    got = await poll(c, 0, 0, consumer=Consumer.Single("tr"), strategy=PollingStrategy.First())
    assert [m.payload() for m in got] == [b"m0"]
    await expect_error(poll(c, 0, 1), r"unauthori[sz]ed")
    await expect_error(c.send_messages(0, 0, 0, messages(b"no")), r"unauthori[sz]ed")


async def test_change_password_replaces_the_password(server):
    """After change_password the new password logs in and the old one is rejected."""
    root = await server.client()
    u = await root.create_user("rotating", "old-password")
    await root.change_password(u.id, "old-password", "new-password")
    await server.client("rotating", "new-password")
    fresh = await server.client(username=None)
    await expect_error(fresh.login_user("rotating", "old-password"), r"invalid credentials")


async def test_a_user_can_change_its_own_password(server):
    """A user without any permission may change its own password by username."""
    root = await server.client()
    await root.create_user("self-service", "first-pw")
    c = await server.client("self-service", "first-pw")
    await c.change_password("self-service", "first-pw", "second-pw")
    await server.client("self-service", "second-pw")


async def test_change_password_with_a_wrong_current_password_fails(server):
    """change_password with a wrong current password fails and keeps the old password."""
    root = await server.client()
    u = await root.create_user("guarded", "right-pw")
    with pytest.raises(RuntimeError):
        await root.change_password(u.id, "wrong-pw", "hijacked")
    await server.client("guarded", "right-pw")


async def test_logout_ends_the_session_and_login_starts_a_new_one(server):
    """After logout_user requests are unauthenticated; login_user on the same client works again."""
    c = await server.client()
    await c.create_stream("s")
    await c.logout_user()
    await expect_error(c.get_streams(), r"unauthenticated")
    await c.ping()
    await c.login_user(ROOT_USERNAME, ROOT_PASSWORD)
    assert [s.name for s in await c.get_streams()] == ["s"]


async def test_login_as_another_user_switches_the_session_user(server):
    """login_user as a second user on a logged-in client acts with that user's permissions."""
    c = await server.client()
    await c.create_user("switched", "switched-pw")
    await c.login_user("switched", "switched-pw")
    await expect_error(c.get_users(), r"unauthori[sz]ed")
    await c.login_user(ROOT_USERNAME, ROOT_PASSWORD)
    assert len(await c.get_users()) == 2


async def test_an_inactive_user_cannot_log_in(server):
    """A user created or set inactive is rejected at login; reactivated, it logs in."""
    root = await server.client()
    await root.create_user("sleeper", "sleeper-pw", UserStatus.Inactive)
    fresh = await server.client(username=None)
    with pytest.raises(RuntimeError):
        await fresh.login_user("sleeper", "sleeper-pw")
    await root.update_user("sleeper", status=UserStatus.Active)
    await server.client("sleeper", "sleeper-pw")


async def test_creating_a_user_with_a_taken_username_fails(server):
    """create_user with an existing username fails with 'already exists'; only one such user exists."""
    c = await server.client()
    await c.create_user("twin", "pw-one")
    await expect_error(c.create_user("twin", "pw-two"), r"already exists")
    assert [u.username for u in await c.get_users()].count("twin") == 1
