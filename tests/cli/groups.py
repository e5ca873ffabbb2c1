"""Every command group of iggy-cli 0.14.0, as checks that run against one node over one transport.

Each check takes a `Cli` (one node, one transport) and a tag that makes its names unique, runs the
group's commands and checks what they print (names, ids, counts, payloads), not only their exit status.
The tests (test_single.py, test_cluster.py) run them over each transport; what is known not to work is
listed in XFAILS with the reason, and run as strict xfails.
"""

from __future__ import annotations

import re
import socket
import zipfile
from pathlib import Path

import pytest

from conftest import Cli

KEYRING = "zbus"  # what the CLI's keyring error names here (no D-Bus secret service on this machine)


def rows(table: str) -> list[list[str]]:
    """The data rows of one of the CLI's tables (comfy-table): the cells of each `| a | b |` line, header
    rows included."""
    out = []
    for line in table.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|") and not set(line) <= set("|-+= "):
            out.append([c.strip() for c in line[1:-1].split("|")])
    return out


def prop(table: str, name: str) -> str:
    """The value of property `name` in a two-column Property/Value table."""
    for r in rows(table):
        if len(r) >= 2 and r[0] == name:
            return r[1]
    raise AssertionError(f"no property {name!r} in:\n{table}")


def row_of(table: str, column: int, value: str) -> list[str] | None:
    for r in rows(table):
        if len(r) > column and r[column] == value:
            return r
    return None


def names_in(table: str, column: int) -> list[str]:
    return [r[column] for r in rows(table)[1:] if len(r) > column]


# ----------------------------------------------------------------------------------------- groups


def check_ping(cli: Cli, tag: str) -> None:
    out = cli("ping", "--count", "3")
    assert len(re.findall(r"Ping sequence id: \d+ time: [0-9.]+ ms", out)) == 3, out
    assert "Ping statistics for 3 ping commands" in out, out


def check_me(cli: Cli, tag: str) -> None:
    out = cli("me")
    assert prop(out, "User ID") == "0", out
    assert int(prop(out, "Client ID")) > 0, out
    assert prop(out, "Address").startswith("127.0.0.1:"), out
    assert prop(out, "Transport").lower() == {"tcp": "tcp", "quic": "quic", "ws": "websocket"}[cli.transport], out


def check_stats(cli: Cli, tag: str) -> None:
    name = f"stats-{tag}"
    cli("stream", "create", name)
    cli("topic", "create", name, "t", "3", "none")
    try:
        out = cli("stats")
        assert int(prop(out, "Streams Count")) >= 1, out
        assert int(prop(out, "Topics Count")) >= 1, out
        assert int(prop(out, "Partitions Count")) >= 3, out
        assert int(prop(out, "Iggy Server PID")) > 0, out
        assert int(prop(out, "Clients Count")) >= 1, out
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", prop(out, "Start Time (UTC)")), out
    finally:
        cli("stream", "delete", name)


def check_snapshot(cli: Cli, tag: str) -> None:
    out_dir = cli.home / f"snapshot-{tag}"
    out_dir.mkdir()
    out = cli("snapshot", "-o", str(out_dir))
    path = Path(prop(out, "File Path"))
    assert path.parent == out_dir and path.is_file(), out
    assert int(prop(out, "File Size (bytes)")) == path.stat().st_size, out
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        names = z.namelist()
    assert "server_logs.txt" in names and "filesystem_overview.txt" in names, names


def check_options(cli: Cli, tag: str) -> None:
    out = cli("options", "topic")
    keys = names_in(out, 0)
    for key in ("compression_algorithm", "message_expiry", "max_topic_size", "segment_size"):
        assert key in keys, out
    assert row_of(out, 0, "compression_algorithm")[2] == "none", out
    assert "stream resources accept no options yet" in cli("options", "stream")


def check_stream(cli: Cli, tag: str) -> None:
    a, b = f"st-{tag}", f"st-{tag}-renamed"
    out = cli("stream", "create", a)
    assert f"Stream with name: {a}" in out and "created" in out, out
    out = cli("stream", "get", a)
    assert prop(out, "Stream name") == a and prop(out, "Stream topics count") == "0", out
    sid = prop(out, "Stream ID")
    assert row_of(cli("stream", "list"), 2, a)[0] == sid
    cli("stream", "update", a, b)
    out = cli("stream", "get", sid)  # by numeric id
    assert prop(out, "Stream name") == b, out
    assert row_of(cli("stream", "list"), 2, a) is None
    cli("topic", "create", b, "t", "1", "none")
    cli("message", "send", "-p", "0", b, "t", "one", "two")
    out = cli("stream", "get", b)
    assert prop(out, "Stream message count") == "2" and prop(out, "Stream topics count") == "1", out
    out = cli("stream", "delete", b)
    assert f"Stream with ID: {b} deleted" in out, out
    assert row_of(cli("stream", "list"), 2, b) is None
    out = cli("stream", "get", b)
    assert f"Stream with ID: {b} was not found" in out, out


def check_topic(cli: Cli, tag: str) -> None:
    s = f"tp-{tag}"
    cli("stream", "create", s)
    try:
        out = cli("topic", "create", s, "t1", "3", "none")
        assert "Topic with name: t1, partitions count: 3" in out, out
        cli("topic", "create", s, "t2", "2", "gzip", "1h")
        out = cli("topic", "get", s, "t1")
        assert prop(out, "Topic name") == "t1" and prop(out, "Partitions count") == "3", out
        assert prop(out, "Compression") == "none" and prop(out, "Message expiry") == "unlimited", out
        lst = cli("topic", "list", s)
        assert names_in(lst, 2) == ["t1", "t2"], lst
        t2 = row_of(lst, 2, "t2")
        assert t2[5] == "gzip" and t2[6] == "1h" and t2[8] == "2", lst
        cli("topic", "update", s, "t1", "t1b", "gzip", "2h")
        out = cli("topic", "get", s, "t1b")
        assert prop(out, "Compression") == "gzip" and prop(out, "Message expiry") == "2h", out
        cli("message", "send", "-p", "1", s, "t1b", "a", "b", "c")
        assert prop(cli("topic", "get", s, "t1b"), "Topic message count") == "3"
        out = cli("topic", "delete", s, "t2")
        assert f"Topic with ID: t2 in stream with ID: {s} deleted" in out, out
        assert names_in(cli("topic", "list", s), 2) == ["t1b"]
    finally:
        cli("stream", "delete", s)


def check_purge(cli: Cli, tag: str) -> None:
    """`stream purge` and `topic purge`: the messages go, the topics and partitions stay."""
    s = f"pu-{tag}"
    cli("stream", "create", s)
    try:
        cli("topic", "create", s, "t1", "3", "none")
        cli("topic", "create", s, "t2", "1", "none")
        cli("message", "send", "-p", "1", s, "t1", "a", "b", "c")
        cli("message", "send", "-p", "0", s, "t2", "d")
        out = cli("topic", "purge", s, "t1")
        assert f"Topic with ID: t1 in stream with ID: {s} purged" in out, out
        out = cli("topic", "get", s, "t1")
        assert prop(out, "Topic message count") == "0" and prop(out, "Partitions count") == "3", out
        assert prop(cli("stream", "get", s), "Stream message count") == "1"
        out = cli("stream", "purge", s)
        assert f"Stream with ID: {s} purged" in out, out
        out = cli("stream", "get", s)
        assert prop(out, "Stream message count") == "0" and prop(out, "Stream topics count") == "2", out
    finally:
        cli("stream", "delete", s)


def check_partition(cli: Cli, tag: str) -> None:
    s = f"pa-{tag}"
    cli("stream", "create", s)
    try:
        cli("topic", "create", s, "t", "1", "none")
        out = cli("partition", "create", s, "t", "3")
        assert f"Created 3 partitions for topic with ID: t and stream with ID: {s}" in out, out
        assert prop(cli("topic", "get", s, "t"), "Partitions count") == "4"
        out = cli("partition", "delete", s, "t", "2")
        assert f"Deleted 2 partitions for topic with ID: t and stream with ID: {s}" in out, out
        assert prop(cli("topic", "get", s, "t"), "Partitions count") == "2"
    finally:
        cli("stream", "delete", s)


def check_segment(cli: Cli, tag: str) -> None:
    s = f"sg-{tag}"
    cli("stream", "create", s)
    try:
        cli("topic", "create", s, "t", "1", "none")
        cli("message", "send", "-p", "0", s, "t", "x", "y")
        out = cli("segment", "delete", s, "t", "0", "1")
        assert f"Deleted 1 segment for topic with ID: t, stream with ID: {s} and partition with ID: 0" in out, out
        out = cli("topic", "get", s, "t")
        assert prop(out, "Partitions count") == "1", out
    finally:
        cli("stream", "delete", s)


def check_message(cli: Cli, tag: str) -> None:
    s = f"ms-{tag}"
    cli("stream", "create", s)
    try:
        cli("topic", "create", s, "t", "2", "none")
        sent = [f"{tag}-p{i}" for i in range(5)]
        out = cli("message", "send", "-p", "1", s, "t", *sent)
        assert f"Sent messages to topic with ID: t and stream with ID: {s}" in out, out
        cli("message", "send", "-p", "0", s, "t", f"{tag}-other")
        out = cli("message", "poll", "--offset", "0", "-m", "10", s, "t", "1")
        assert "Polled 5 messages" in out, out
        table = [r for r in rows(out) if r[0].isdigit()]
        assert [r[0] for r in table] == ["0", "1", "2", "3", "4"], out
        assert [r[4] for r in table] == sent, out
        out = cli("message", "poll", "--offset", "3", "-m", "10", s, "t", "1")
        assert [r[4] for r in rows(out) if r[0].isdigit()] == sent[3:], out
        out = cli("message", "poll", "--first", "-m", "10", s, "t", "0")
        assert [r[4] for r in rows(out) if r[0].isdigit()] == [f"{tag}-other"], out
        out = cli("message", "poll", "--last", "-m", "1", s, "t", "1")
        assert [r[4] for r in rows(out) if r[0].isdigit()] == [sent[-1]], out
        # A keyed message and headers, shown with -s
        cli("message", "send", "-p", "0", "-H", "k1:string:v1", s, "t", f"{tag}-h")
        out = cli("message", "poll", "--offset", "1", "-m", "1", "--show-headers", s, "t", "0")
        assert f"{tag}-h" in out and "k1" in out and "v1" in out, out
        # Into a file, with a consumer that commits: the next poll continues after it.
        path = cli.home / f"poll-{tag}.bin"
        cli("message", "poll", "--offset", "0", "-m", "2", "-c", "7", "--auto-commit", "--output-file", str(path),
            s, "t", "1")
        assert path.stat().st_size > 0
        out = cli("message", "poll", "--next", "-m", "10", "-c", "7", s, "t", "1")
        assert [r[4] for r in rows(out) if r[0].isdigit()] == sent[2:], out
    finally:
        cli("stream", "delete", s)


def check_consumer_group(cli: Cli, tag: str) -> None:
    s = f"cg-{tag}"
    cli("stream", "create", s)
    try:
        cli("topic", "create", s, "t", "4", "none")
        out = cli("consumer-group", "create", s, "t", "g1")
        assert "name: g1 created" in out, out
        cli("consumer-group", "create", s, "t", "g2")
        out = cli("consumer-group", "get", s, "t", "g1")
        assert prop(out, "Consumer group name") == "g1" and prop(out, "Partitions count") == "4", out
        assert prop(out, "Members count") == "0", out
        gid = prop(out, "Consumer group id")
        lst = cli("consumer-group", "list", s, "t")
        assert names_in(lst, 1) == ["g1", "g2"] and row_of(lst, 1, "g1")[0] == gid, lst
        out = cli("consumer-group", "delete", s, "t", "g1")
        assert f"Consumer group with ID: g1 deleted" in out, out
        assert names_in(cli("consumer-group", "list", s, "t"), 1) == ["g2"]
    finally:
        cli("stream", "delete", s)


def check_consumer_offset(cli: Cli, tag: str) -> None:
    s = f"co-{tag}"
    cli("stream", "create", s)
    try:
        cli("topic", "create", s, "t", "2", "none")
        cli("message", "send", "-p", "1", s, "t", "a", "b", "c", "d")
        out = cli("consumer-offset", "set", "5", s, "t", "1", "2")
        assert "set to 2" in out, out
        out = cli("consumer-offset", "get", "5", s, "t", "1")
        assert prop(out, "Consumer ID") == "5" and prop(out, "Partition ID") == "1", out
        assert prop(out, "Stored offset") == "2" and prop(out, "Current offset") == "3", out
        cli("consumer-group", "create", s, "t", "grp")
        cli("consumer-offset", "set", "-k", "consumer-group", "grp", s, "t", "1", "1")
        out = cli("consumer-offset", "get", "-k", "consumer-group", "grp", s, "t", "1")
        assert prop(out, "Consumer ID") == "grp" and prop(out, "Stored offset") == "1", out
        # The stored offset is where a consumer's --next poll resumes.
        out = cli("message", "poll", "--next", "-m", "10", "-c", "5", s, "t", "1")
        assert [r[4] for r in rows(out) if r[0].isdigit()] == ["d"], out
        # iggy-cli 0.14.0 has no `consumer-offset delete`.
        r = cli.run("consumer-offset", "delete", "5", s, "t", "1", ok=False)
        assert r.rc == 2 and "unrecognized subcommand 'delete'" in r.err, r
    finally:
        cli("stream", "delete", s)


def check_user(cli: Cli, tag: str) -> None:
    a, b = f"alice{tag}", f"bob{tag}"
    out = cli("user", "create", a, "secret-1")
    assert f"User with username: {a} created" in out, out
    out = cli("user", "get", a)
    assert prop(out, "Username") == a and prop(out, "Status") == "active", out
    uid = prop(out, "User ID")
    assert row_of(cli("user", "list"), 0, uid)[3] == a
    cli("user", "permissions", "-g", "m_srv,r_srv,p_msg", a)
    out = cli("user", "get", a)
    assert "Manage Servers | true" in out and "Poll Messages  | true" in out, out
    assert "Manage Users   | false" in out, out
    cli("user", "name", a, b)
    cli("user", "status", b, "inactive")
    out = cli("user", "get", uid)
    assert prop(out, "Username") == b and prop(out, "Status") == "inactive", out
    lst = cli("user", "list")
    assert row_of(lst, 0, uid)[2:] == ["inactive", b], lst
    out = cli("user", "password", b, "secret-1", "secret-2")
    assert f"Password for user with ID: {b} changed" in out, out
    cli("user", "status", b, "active")
    # The new password logs in, the old one does not.
    # (`ping` needs no login; `stats` does, and read_servers, which the user has.)
    assert "Iggy Server PID" in cli.run("-u", b, "-p", "secret-2", "stats", login=False).out
    bad = cli.run("-u", b, "-p", "secret-1", "stats", login=False, ok=False)
    assert bad.rc != 0 and "Invalid credentials" in bad.out + bad.err, bad
    out = cli("user", "delete", b)
    assert f"User with ID: {b} deleted" in out, out
    assert row_of(cli("user", "list"), 0, uid) is None
    assert names_in(cli("user", "list"), 3) == ["iggy"]


def check_pat(cli: Cli, tag: str) -> None:
    name = f"tok-{tag}"
    out = cli("pat", "create", name)
    assert f"Personal access token with name: {name}" in out and "created" in out, out
    token = re.search(r"Token: (\S+)", out).group(1)
    assert len(token) >= 32, out
    assert row_of(cli("pat", "list"), 0, name)[1] == "unlimited"
    cli("pat", "create", f"{name}-x", "1h")
    assert row_of(cli("pat", "list"), 0, f"{name}-x")[1] != "unlimited"
    # The token logs in (-t) in place of a username and password.
    assert "Executing list streams" in cli.run("-t", token, "stream", "list", login=False).out
    # `pat delete` deletes the token on the server, then fails removing it from the (absent) keyring.
    for n in (name, f"{name}-x"):
        r = cli.run("pat", "delete", n, ok=False)
        assert row_of(cli("pat", "list"), 0, n) is None, r
        assert r.rc == 1 and "No default store has been set" in r.out + r.err, r


def check_client(cli: Cli, tag: str, nodes) -> None:
    # A TCP connection held open by the test is a client the CLI's own (short) connections can look at.
    # One is held on every node: against a cluster, Iggy's SDK moves a binary-transport connection to the
    # metadata leader, so the node that answers need not be the one named on the command line.
    held = [socket.create_connection(("127.0.0.1", n.tcp)) for n in nodes]
    try:
        ports = {f"127.0.0.1:{h.getsockname()[1]}" for h in held}
        lst = cli("client", "list")
        found = [r for r in rows(lst)[1:] if len(r) > 3 and r[2] in ports]
        assert len(found) == 1, lst  # clients are the answering node's own
        row = found[0]
        # The binary transports name it "TCP", Galgo's HTTP API "tcp" (transport/http_reply.c).
        assert row[3].upper() == "TCP" and row[1] == "", lst
        out = cli("client", "get", row[0])
        assert prop(out, "Client ID") == row[0] and prop(out, "Address") == row[2], out
        assert prop(out, "Transport").upper() == "TCP" and prop(out, "User ID") == "None", out
    finally:
        for h in held:
            h.close()
    out = cli("client", "get", "4000000000")
    assert "Client with ID: 4000000000 was not found" in out, out


def check_cluster(cli: Cli, tag: str, nodes) -> None:
    out = cli("cluster", "metadata")
    assert "Cluster name: galgo" in out, out
    listed = [r for r in rows(out)[1:]]
    assert len(listed) == len(nodes), out
    for n in nodes:
        r = row_of(out, 2, str(n.tcp))
        assert r is not None, out
        assert r[0] == f"galgo-node-{n.id}" and r[1] == "127.0.0.1", out
        assert r[3:5] == [str(n.quic), str(n.http)], out
        assert r[7] == "healthy", out
    assert sorted(r[6] for r in listed).count("leader") == 1, out


def check_context(cli: Cli, tag: str) -> None:
    name = f"ctx-{tag}"
    assert "default*" in names_in(cli("context", "list"), 0)
    out = cli("context", "create", name, "--transport", "tcp", "--tcp-server-address", f"127.0.0.1:{cli.node.tcp}")
    assert f"context '{name}' created successfully" in out, out
    assert name in names_in(cli("context", "list"), 0)
    out = cli("context", "show", name)
    assert prop(out, "Transport") == "tcp" and prop(out, "TCP Server Address") == f"127.0.0.1:{cli.node.tcp}", out
    assert f"active context set to '{name}'" in cli("context", "use", name)
    assert f"{name}*" in names_in(cli("context", "list"), 0)
    cli("context", "use", "default")
    out = cli("context", "delete", name)
    assert f"context '{name}' deleted successfully" in out, out
    assert name not in names_in(cli("context", "list"), 0)


def check_session(cli: Cli, tag: str) -> None:
    out = cli("session", "status")
    assert prop(out, "Session Active") == "No", out
    addr = cli.node.address(cli.transport)[1].replace("http://", "")
    assert prop(out, "Server Address") == addr, out
    out = cli("logout")
    assert f"Successfully logged out from Iggy server {addr}" in out, out


def check_login(cli: Cli, tag: str) -> None:
    """`login` keeps a session token in the system keyring: there is none here, so it must fail cleanly
    (an error naming the keyring, no panic) and the session stays inactive."""
    r = cli.run("login", ok=False)
    assert r.rc == 1 and KEYRING in r.out + r.err and "panicked" not in r.err, r
    assert prop(cli("session", "status"), "Session Active") == "No"
    # It made its session token on the server before failing; remove it (the CLI cannot, with no keyring).
    if row_of(cli("pat", "list"), 0, "iggy-cli-session") is not None:
        cli.run("pat", "delete", "iggy-cli-session", ok=False)
    assert row_of(cli("pat", "list"), 0, "iggy-cli-session") is None


GROUPS = ["ping", "me", "stats", "snapshot", "options", "stream", "topic", "purge", "partition", "segment", "message",
          "consumer_group", "consumer_offset", "user", "pat", "client", "cluster", "context", "session", "login"]

_WS_NO_ADDRESS = ("iggy-cli 0.14.0 bug: for --transport ws, Args::get_server_address() knows only \"websocket\" "
                  "(iggy_common 0.11.0 args/mod.rs), so main.rs unwraps None and panics; "
                  "--transport websocket is refused (InvalidTransport)")

# (group, transport) -> reason: run as strict xfails (they must fail, and for this reason alone).
XFAILS = {
    ("me", "http"): "Iggy's HTTP client (iggy 0.11.0 http/system.rs) has no get_me: FeatureUnavailable",
    ("pat", "ws"): _WS_NO_ADDRESS,
    ("session", "ws"): _WS_NO_ADDRESS,
    ("login", "ws"): _WS_NO_ADDRESS,
}


def run_group(group: str, cli: Cli, tag: str, nodes) -> None:
    fn = globals()[f"check_{group}"]
    if group in ("cluster", "client"):
        fn(cli, tag, nodes)
    else:
        fn(cli, tag)


def xfail_param(group: str, transport: str, extra: dict | None = None):
    reason = (extra or {}).get((group, transport)) or XFAILS.get((group, transport))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(group, transport, marks=marks, id=f"{group}-{transport}")
