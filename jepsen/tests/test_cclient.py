"""galgo-jepsen-client (jepsen/client/galgo-jepsen-client.c) driven as the Jepsen runner drives it.

Each test starts real galgod processes on loopback ports and runs the client binary as a subprocess,
one JSON request per line. The binaries come from $GALGO_BUILD (default <repo>/build): galgod and
galgo-jepsen-client must be built there.

Run: /work/main/.venv/bin/python -m pytest jepsen/tests/test_cclient.py
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("GALGO_BUILD", REPO / "build"))
GALGOD = BUILD / "galgod"
CLIENT = BUILD / "galgo-jepsen-client"

pytestmark = pytest.mark.skipif(
    not (GALGOD.exists() and CLIENT.exists()),
    reason=f"build galgod and galgo-jepsen-client in {BUILD} (or set GALGO_BUILD)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise AssertionError(f"nothing listens on 127.0.0.1:{port}")
            time.sleep(0.05)


class Node:
    """One galgod; `cluster` is (node id, roster) for a cluster member, None for a single node."""

    def __init__(self, workdir: Path, port: int, cluster: tuple[int, str] | None = None):
        self.workdir, self.port, self.cluster = workdir, port, cluster
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        a = [str(GALGOD), f"--node.data_dir={self.data}", f"--tcp.address=127.0.0.1:{self.port}",
             "--quic.enabled=false", "--http.enabled=false", "--websocket.enabled=false",
             "--with-default-root-credentials"]
        if self.cluster:
            node, roster = self.cluster
            a += [f"--node.id={node}", f"--cluster.nodes={roster}", "--cluster.secret=jepsen-cclient",
                  "--cluster.election_timeout_ms=500"]
        return a

    def start(self) -> None:
        with open(self.workdir / "galgod.log", "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_listening(self.port)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)


class Client:
    """galgo-jepsen-client as a subprocess: request() writes one line and reads exactly one reply."""

    def __init__(self):
        self.proc = subprocess.Popen([str(CLIENT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)

    def raw(self, line: str, timeout: float = 30.0) -> dict:
        self.write(line)
        return self.read(line, timeout)

    def write(self, line: str) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, line: str = "", timeout: float = 30.0) -> dict:
        assert self.proc.stdout
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"no reply within {timeout}s to {line!r}"
        out = self.proc.stdout.readline()
        assert out.endswith("\n"), f"client died? {out!r}, stderr: {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        return json.loads(out)

    def request(self, timeout: float = 30.0, **req) -> dict:
        return self.raw(json.dumps(req), timeout)

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="jepsen-cclient-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def single(workdir):
    n = Node(workdir, free_port())
    n.start()
    yield n
    n.kill()


@pytest.fixture
def client():
    c = Client()
    yield c
    c.close()


S, T = "jepsen", "t"


def setup_topic(c: Client, partitions: int, rf: int | None = None, deadline_s: float = 20.0) -> None:
    """create_stream and create_topic, asked again while the cluster is still electing."""
    end = time.monotonic() + deadline_s
    for op, extra in (("create_stream", {}), ("create_topic", {"topic": T, "partitions": partitions,
                                                               **({"replication_factor": rf} if rf else {})})):
        while True:
            r = c.request(op=op, stream=S, **extra)
            if r["type"] == "ok":
                break
            assert time.monotonic() < end, r
            time.sleep(0.2)


def poll_all(c: Client, partition: int = 0) -> list[list[int]]:
    r = c.request(op="poll", stream=S, topic=T, partition=partition, offset=0, count=100000)
    assert r["type"] == "ok", r
    assert "bad_ids" not in r, r
    return r["messages"]


# ------------------------------------------------------------------------------------ single node


def test_setup_sends_and_polls_exact_values(single, client):
    r = client.request(op="connect", servers=f"127.0.0.1:{single.port}", mode="pinned", timeout_ms=3000)
    assert r["type"] == "ok" and r["mode"] == "pinned", r
    setup_topic(client, partitions=2)
    # Idempotent setup.
    assert client.request(op="create_stream", stream=S)["existed"] is True
    assert client.request(op="create_topic", stream=S, topic=T, partitions=2)["existed"] is True

    r = client.request(op="send", stream=S, topic=T, partition=0, values=[1, 2, 3])
    assert (r["type"], r["partition"], r["offset"]) == ("ok", 0, 0), r
    r = client.request(op="send", stream=S, topic=T, partition=0, values=[7])
    assert (r["type"], r["offset"]) == ("ok", 3), r
    r = client.request(op="send", stream=S, topic=T, partition=1, values=[2**62 + 5, 0])
    assert (r["type"], r["partition"], r["offset"]) == ("ok", 1, 0), r

    # Every message's payload and id are its value (the client checks the ids: no "bad_ids").
    assert poll_all(client, 0) == [[0, 1], [1, 2], [2, 3], [3, 7]]
    assert poll_all(client, 1) == [[0, 2**62 + 5], [1, 0]]
    r = client.request(op="poll", stream=S, topic=T, partition=0, offset=2, count=1)
    assert (r["type"], r["messages"], r["current_offset"]) == ("ok", [[2, 3]], 3), r
    assert client.request(op="poll", stream=S, topic=T, partition=0, offset=9, count=5)["messages"] == []

    # Consumer offsets: none stored, stored by auto-commit, stored explicitly, refused beyond the end.
    assert client.request(op="get_offset", stream=S, topic=T, partition=0, consumer="c")["offset"] is None
    r = client.request(op="poll", stream=S, topic=T, partition=0, offset=0, count=2, consumer="c", auto_commit=True)
    assert r["messages"] == [[0, 1], [1, 2]], r
    assert client.request(op="get_offset", stream=S, topic=T, partition=0, consumer="c")["offset"] == 1
    assert client.request(op="store_offset", stream=S, topic=T, partition=0, consumer="c", offset=3)["type"] == "ok"
    r = client.request(op="get_offset", stream=S, topic=T, partition=0, consumer="c")
    assert (r["offset"], r["current_offset"]) == (3, 3), r
    r = client.request(op="store_offset", stream=S, topic=T, partition=0, consumer="c", offset=50)
    assert (r["type"], r["code"]) == ("fail", 4100), r
    r = client.request(op="poll", stream=S, topic=T, partition=0, strategy="next", count=10, consumer=7)
    assert r["messages"] == [[0, 1], [1, 2], [2, 3], [3, 7]], r  # consumer 7 stored nothing

    assert client.request(op="quit") == {"type": "ok"}
    assert client.proc.wait(timeout=5) == 0


def test_full_poll_gives_every_field_of_each_record(single, client):
    assert client.request(op="connect", servers=f"127.0.0.1:{single.port}")["type"] == "ok"
    setup_topic(client, partitions=1)
    before = time.time() * 1e6
    assert client.request(op="send", stream=S, topic=T, partition=0, values=[5, 6])["type"] == "ok"
    assert client.request(op="send", stream=S, topic=T, partition=0, values=[5000])["type"] == "ok"
    after = time.time() * 1e6
    r = client.request(op="poll", stream=S, topic=T, partition=0, offset=0, count=10, full=True)
    assert r["type"] == "ok" and "corrupt" not in r, r
    msgs = r["messages"]
    assert [m[:2] for m in msgs] == [[0, 5], [1, 6], [2, 5000]], msgs
    for o, v, ts, origin, checksum, hlen in msgs:
        assert before - 1e6 <= ts <= after + 1e6, (ts, before, after)      # server append time, µs
        assert 0 < origin <= after + 1e6, origin                            # the producer's time, µs
        assert len(checksum) == 16 and int(checksum, 16) != 0, checksum
        assert hlen == 0
    assert msgs[0][2] == msgs[1][2] <= msgs[2][2]                # one batch, one append time
    assert len({m[4] for m in msgs}) == 3                        # the checksum covers id and payload
    # the same records read again are the same bytes; without "full" only [offset, value]
    assert client.request(op="poll", stream=S, topic=T, partition=0, offset=0, count=10, full=True)["messages"] == msgs
    assert poll_all(client, 0) == [m[:2] for m in msgs]


def test_group_offsets_are_a_group_s(single, client):
    assert client.request(op="connect", servers=f"127.0.0.1:{single.port}")["type"] == "ok"
    setup_topic(client, partitions=1)
    # a single consumer named "g" has no stored offset yet; a group "g" does not exist
    r = client.request(op="get_offset", stream=S, topic=T, partition=0, consumer="g")
    assert (r["type"], r["offset"]) == ("ok", None), r
    r = client.request(op="get_offset", stream=S, topic=T, partition=0, group="g")
    assert r["type"] == "fail" and r.get("code") in (3007, 5000), r  # Galgo answers 3007 for it
    r = client.request(op="get_offset", stream=S, topic=T, partition=0, group="g", consumer="g")
    assert r["type"] == "fail" and r["error"].startswith("bad request"), r


def test_send_to_a_missing_partition_stream_or_topic_fails(single, client):
    assert client.request(op="connect", servers=f"127.0.0.1:{single.port}")["type"] == "ok"
    setup_topic(client, partitions=1)
    for req in ({"stream": S, "topic": T, "partition": 1}, {"stream": S, "topic": "nope", "partition": 0},
                {"stream": "nope", "topic": T, "partition": 0}):
        r = client.request(op="send", values=[100], **req)
        assert r["type"] == "fail" and r.get("code") in (20, 1009, 2010, 3007), (req, r)
    # A read of a missing partition is a plain failure too.
    r = client.request(op="poll", stream=S, topic=T, partition=4, offset=0, count=1)
    assert r["type"] == "fail", r
    assert poll_all(client, 0) == []


def test_bad_lines_never_crash_and_eof_exits(single, client):
    bad = ["garbage", "[1,2]", "{}", '{"op":42}', '{"op":"frob"}', '{"op":"send"}',
           '{"op":"send","stream":"s","topic":"t","partition":0,"values":[]}',
           '{"op":"send","stream":"s","topic":"t","partition":0,"values":[-1]}',
           '{"op":"send","stream":"s","topic":"t","partition":0,"values":["1"]}',
           '{"op":"send","stream":"s","topic":"t","partition":-1,"values":[1]}',
           '{"op":"poll","stream":"s","topic":"t","partition":0,"strategy":"sideways"}',
           '{"op":"connect","servers":"127.0.0.1:1","mode":"sideways"}', '{"op":"connect"}',
           '{"op":"send","stream":"s","topic":"t","values":[1]}',  # valid, but not connected yet
           '{"op":"poll","stream":"' + "x" * 300 + '","topic":"t","partition":0,"offset":0}',
           '\x01\x02', '{"op":"send","values":[1e400]}']
    for line in bad:
        r = client.raw(line)
        assert r["type"] == "fail" and r["error"], (line, r)
    assert client.raw('{"op":"poll","stream":"s","topic":"t","partition":0,"offset":0}')["error"].startswith("not connected")
    # Blank lines get no reply; the next request still gets exactly its own.
    r = client.raw("\n\n" + json.dumps({"op": "connect", "servers": f"127.0.0.1:{single.port}"}))
    assert r["type"] == "ok", r
    # A server that refuses the connection: connect fails (nothing happened) and is retried lazily.
    r = client.request(op="connect", servers="127.0.0.1:1", timeout_ms=1000)
    assert r["type"] == "fail", r
    assert client.request(op="create_stream", stream=S)["type"] == "fail"
    client.proc.stdin.close()
    assert client.proc.wait(timeout=5) == 0


def test_send_to_a_stopped_server_is_info_and_to_a_dead_one_fail(single, client, workdir):
    assert client.request(op="connect", servers=f"127.0.0.1:{single.port}", timeout_ms=1000)["type"] == "ok"
    setup_topic(client, partitions=1)
    assert client.request(op="send", stream=S, topic=T, partition=0, values=[1])["type"] == "ok"

    # The request reaches the socket of a server that never answers: unknown, so info.
    single.signal(signal.SIGSTOP)
    r = client.request(op="send", stream=S, topic=T, partition=0, values=[2])
    assert r["type"] == "info" and "code" not in r, r
    # A read that times out changes nothing: fail.
    r = client.request(op="poll", stream=S, topic=T, partition=0, offset=0, count=10)
    assert r["type"] == "fail", r

    # The server is gone: the client reconnects lazily, the connection is refused, nothing was
    # written: certainly not admitted.
    single.kill()
    r = client.request(op="send", stream=S, topic=T, partition=0, values=[3])
    assert r["type"] == "fail" and "connect" in r["error"], r

    # Back on the same data: the next request reconnects by itself.
    single.start()
    deadline = time.monotonic() + 15
    while True:
        r = client.request(op="send", stream=S, topic=T, partition=0, values=[4])
        if r["type"] == "ok":
            break
        assert r["type"] == "fail" and time.monotonic() < deadline, r  # 58 while it starts up
        time.sleep(0.2)
    got = [v for _, v in poll_all(client, 0)]
    assert got[0] == 1 and got[-1] == 4 and 3 not in got and set(got) <= {1, 2, 4}, got


# ----------------------------------------------------------------------------- 3-node cluster


@pytest.fixture
def cluster(workdir):
    tcp = [free_port() for _ in range(3)]
    raft = [free_port() for _ in range(3)]
    roster = ",".join(f"{i + 1}@127.0.0.1:{raft[i]}:{tcp[i]}" for i in range(3))
    nodes = {i + 1: Node(workdir / f"node{i + 1}", tcp[i], (i + 1, roster)) for i in range(3)}
    for n in nodes.values():
        with open(n.workdir / "galgod.log", "ab") as log:
            n.proc = subprocess.Popen(n.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    for n in nodes.values():
        wait_listening(n.port)
    yield nodes
    for n in nodes.values():
        n.kill()


def test_leader_mode_survives_a_leader_kill(cluster):
    servers = ",".join(f"127.0.0.1:{n.port}" for n in cluster.values())
    c = Client()
    try:
        deadline = time.monotonic() + 20
        while (r := c.request(op="connect", servers=servers, mode="leader", timeout_ms=2000))["type"] != "ok":
            assert time.monotonic() < deadline, r
            time.sleep(0.2)
        setup_topic(c, partitions=1, rf=3)

        results: dict[int, str] = {}  # value -> ok / fail / info
        value = 0

        def send_batch(client: Client = c, during=None) -> dict:
            """One batch of 3 new values; `during` runs once the request is written."""
            nonlocal value
            vals = [value + 1, value + 2, value + 3]
            value += 3
            line = json.dumps({"op": "send", "stream": S, "topic": T, "partition": 0, "values": vals})
            client.write(line)
            if during:
                during()
            r = client.read(line, timeout=60)
            assert r["type"] in ("ok", "fail", "info"), r
            for v in vals:
                results[v] = r["type"]
            return r

        deadline = time.monotonic() + 20
        leader = None
        while leader is None or sum(t == "ok" for t in results.values()) < 30:
            r = send_batch()
            if r["type"] == "ok":
                leader = r["node"]
            assert time.monotonic() < deadline, r

        # A pinned client on a follower that survives: its sends are forwarded to the leader.
        follower = next(i for i in cluster if i != leader)
        pinned = Client()
        try:
            r = pinned.request(op="connect", servers=f"127.0.0.1:{cluster[follower].port}", timeout_ms=3000)
            assert (r["type"], r["node"]) == ("ok", follower), r
            assert send_batch(pinned)["type"] == "ok"
            # The leader dies while a batch is on its way (or just committed): ok or info, never fail.
            r = send_batch(during=cluster[leader].kill)
            assert r["type"] in ("ok", "info"), r
            oks_before = sum(t == "ok" for t in results.values())
            new_leaders = set()
            deadline = time.monotonic() + 25
            while sum(t == "ok" for t in results.values()) < oks_before + 30:
                r = send_batch()
                if r["type"] == "ok":
                    new_leaders.add(r["node"])
                send_batch(pinned)
                assert time.monotonic() < deadline, (r, results)
        finally:
            pinned.close()
        assert new_leaders and leader not in new_leaders, (leader, new_leaders)
        print("leader", leader, "->", new_leaders, {t: sum(x == t for x in results.values()) for t in ("ok", "fail", "info")})

        # Every acknowledged value is readable afterwards, from each surviving node; a value whose
        # send failed is nowhere; every message's id is its value (poll_all checks "bad_ids").
        for node_id, node in cluster.items():
            if node_id == leader:
                continue
            reader = Client()
            try:
                assert reader.request(op="connect", servers=f"127.0.0.1:{node.port}")["type"] == "ok"
                deadline = time.monotonic() + 15
                while True:
                    msgs = poll_all(reader, 0)
                    seen = {v for _, v in msgs}
                    missing = {v for v, t in results.items() if t == "ok"} - seen
                    if not missing:
                        break
                    assert time.monotonic() < deadline, f"node {node_id} lacks acknowledged values {sorted(missing)}"
                    time.sleep(0.2)
                assert [o for o, _ in msgs] == list(range(len(msgs))), msgs
                print("node", node_id, "messages", len(msgs), "distinct values", len(seen))
                failed = {v for v, t in results.items() if t == "fail"}
                assert not (failed & seen), sorted(failed & seen)
                assert seen <= set(results), sorted(seen - set(results))
            finally:
                reader.close()
    finally:
        c.close()
