"""Runs a generated operation sequence against real galgod processes and the model, side by side.

Every operation is applied to the model (which says what the server must answer) and sent to the server
with Iggy's Python SDK (raw requests where the SDK has no call: GetConsumerOffset 120, StoreConsumerOffset
121, DeleteConsumerOffset 122, DeleteSegments 503); the answer must match. After every restart (and at
`check` operations and the end) the whole observable state is read back and must equal the model's:
streams, topics, partitions and their message counts and current offsets, every kept message's offset,
id, payload and user headers, the consumer groups, and the stored offset of every consumer the run uses on
every partition. After a restart the state must come back within RECOVERY_TIMEOUT (a cluster elects
leaders first); between restarts a read must equal the model at once.

A mismatch raises LifecycleFailure, whose message gives the seed, the operation that failed, what was
expected and what came, and the whole sequence run so far.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compat"))

from apache_iggy import Consumer, PollingStrategy, SendMessage  # noqa: E402

from galgo_compat import (  # noqa: E402
    START_MARKER,
    START_TIMEOUT,
    STOP_TIMEOUT,
    GalgodServer,
    HarnessError,
    _live,
    _tail,
)
from model import Model, norm_headers  # noqa: E402
from ops import SINGLE_CONSUMERS, Generator, Op  # noqa: E402

RECOVERY_TIMEOUT = float(os.environ.get("GALGO_LIFECYCLE_RECOVERY_TIMEOUT", "30"))
SEGMENT_SIZE = "4KiB"  # small segments, so that DeleteSegments has whole segments to delete
POLL_PAGE = 1000


class LifecycleFailure(AssertionError):
    pass


class LifecycleServer(GalgodServer):
    """GalgodServer that can also stop and start one node of a cluster (node 1 is `proc`, nodes 2 and 3 are
    `peers`); `restart_nodes(how, 0)` restarts every node."""

    def _proc(self, node: int):
        return self.proc if node == 1 else (self.peers[node - 2] if len(self.peers) >= node - 1 else None)

    def stop_node(self, node: int, kill: bool) -> None:
        proc = self._proc(node)
        if proc is None:
            return
        if proc.poll() is not None:
            raise HarnessError(f"node {node} had exited with status {proc.returncode}\n{self.node_log(node)}")
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise HarnessError(f"node {node} did not exit within {STOP_TIMEOUT:g}s of SIGTERM\n{self.node_log(node)}")
        if node == 1:
            self._forget()
        else:
            self.peers[node - 2] = None
        if not kill and rc != 0:
            raise HarnessError(f"node {node} exited with status {rc} after SIGTERM\n{self.node_log(node)}")

    def start_node(self, node: int) -> None:
        if node == 1:
            self.generation += 1
            out = open(self.stdout_path, "ab")
            err = open(self.stderr_path, "ab")
            marker = f"{START_MARKER}{self.generation}: {' '.join(self.argv())}\n".encode()
            out.write(marker)
            err.write(marker)
            out.flush()
            err.flush()
            try:
                self.proc = subprocess.Popen(self.argv(), cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            finally:
                out.close()
                err.close()
            _live.add(self)
            self._wait_until_listening()
            return
        log = open(self.workdir / f"node{node}.log", "ab")
        try:
            self.peers[node - 2] = subprocess.Popen(
                self.node_argv(node), cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection((self.host, self.tcp_ports[node - 1]), timeout=0.5):
                    return
            except OSError:
                pass
            if self.peers[node - 2].poll() is not None or time.monotonic() >= deadline:
                raise HarnessError(f"cluster node {node} did not listen again\n{self.node_log(node)}")
            time.sleep(0.05)

    def restart_nodes(self, how: str, node: int) -> None:
        kill = how == "kill"
        if node == 0 and kill:
            self.crash_restart()
        elif node == 0:
            self.restart()
        else:
            self.stop_node(node, kill)
            self.start_node(node)

    def node_log(self, node: int, lines: int = 40) -> str:
        if node == 1:
            return self.stderr_tail(lines)
        return _tail(self.workdir / f"node{node}.log", lines)

    def logs(self, lines: int = 40) -> str:
        nodes = (1, 2, 3) if self.transport == "cluster" else (1,)
        return "\n".join(f"--- node {n} (last {lines} lines)\n{self.node_log(n, lines)}" for n in nodes)


def make_server(workdir: Path, nodes: int, binary: Path | None = None) -> LifecycleServer:
    binary = Path(binary).resolve() if binary else None
    srv = LifecycleServer(workdir, binary=binary, transport="cluster" if nodes > 1 else "tcp")
    srv.extra_args = [f"--storage.segment_size={SEGMENT_SIZE}"]
    return srv


# ------------------------------------------------------------------------------------------- wire helpers


def ident(ref) -> bytes:
    """An Iggy Identifier: numeric (kind 1) for an int, string (kind 2) for a str."""
    if isinstance(ref, int):
        return bytes([1, 4]) + struct.pack("<I", ref)
    raw = ref.encode()
    return bytes([2, len(raw)]) + raw


def consumer_bytes(consumer) -> bytes:
    kind, ref = consumer
    return bytes([1 if kind == "c" else 2]) + ident(ref)


def offset_body(stream, topic, partition, consumer) -> bytes:
    return consumer_bytes(consumer) + ident(stream) + ident(topic) + bytes([1]) + struct.pack("<I", partition)


def sdk_consumer(consumer):
    kind, ref = consumer
    return Consumer.Single(ref) if kind == "c" else Consumer.Group(ref)


def sdk_strategy(strategy: str, value: int):
    return {
        "offset": lambda: PollingStrategy.Offset(value=value),
        "first": PollingStrategy.First,
        "last": PollingStrategy.Last,
        "next": PollingStrategy.Next,
    }[strategy]()


def msg_tuple(m) -> tuple:
    uh = m.user_headers()
    return (m.offset(), m.id(), m.payload(), norm_headers(None if uh is None else uh.to_scalar_dict()))


def diff(expected: dict, got: dict) -> str:
    """The entries of two observable states that differ, one a line."""
    lines = []
    for section in expected.keys() | got.keys():
        e, g = expected.get(section), got.get(section)
        if e == g:
            continue
        if isinstance(e, dict) and isinstance(g, dict):
            for k in sorted(e.keys() | g.keys(), key=repr):
                if e.get(k, "<missing>") != g.get(k, "<missing>"):
                    lines.append(f"{section}[{k}]: model {_short(e.get(k, '<missing>'))}\n"
                                 f"{' ' * (len(section) + len(repr(k)) + 4)}server {_short(g.get(k, '<missing>'))}")
        else:
            lines.append(f"{section}: model {_short(e)}\n{' ' * len(section)}  server {_short(g)}")
    return "\n".join(lines)


def _short(v, limit: int = 600) -> str:
    if isinstance(v, list) and v and isinstance(v[0], tuple) and len(v[0]) == 4 and isinstance(v[0][2], bytes):
        v = [(o, hex(i), f"<{len(p)} bytes {p[:6].hex()}..>", h) for o, i, p, h in v]
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


# ------------------------------------------------------------------------------------------- the runner


class Runner:
    def __init__(self, srv: LifecycleServer, nodes: int, seed: int, n_ops: int, quirks=None, weights=None,
                 log=None, script: list | None = None, known_bugs: bool = False):
        self.srv = srv
        self.nodes = nodes
        self.seed = seed
        self.n_ops = n_ops
        self.model = Model(nodes, quirks)
        self.gen = Generator(seed, nodes, weights, known_bugs)
        self.script = script  # a fixed operation list instead of the generator's
        self.history: list[tuple[Op, str]] = []
        self.log = log or (lambda s: None)
        self.c = None
        self.restarts = 0

    def fail(self, what: str) -> None:
        ops = "\n".join(f"  {i:4d} {op!r} -> {res}" for i, (op, res) in enumerate(self.history))
        raise LifecycleFailure(
            f"lifecycle seed={self.seed} nodes={self.nodes} ops={self.n_ops}: op {len(self.history) - 1} "
            f"{self.history[-1][0]!r} failed\n{what}\n"
            + ("" if self.script is not None else
               f"reproduce: make lifecycle SEED={self.seed} OPS={self.n_ops} NODES={self.nodes}\n")
            + f"operations so far:\n{ops}"
        )

    async def connect(self, timeout: float = RECOVERY_TIMEOUT) -> None:
        """A new client logged in as root (after a restart the cluster may answer 58 for a while)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.c = await self.srv.client()
                await self.c.ping()
                return
            except (RuntimeError, asyncio.TimeoutError, OSError) as e:
                if time.monotonic() >= deadline:
                    self.fail(f"no client could log in within {timeout:g}s: {e}\n{self.srv.logs()}")
                await asyncio.sleep(0.2)

    async def run(self) -> None:
        await self.connect()
        ops = iter(self.script) if self.script is not None else (self.gen.next(self.model) for _ in range(self.n_ops))
        for op in ops:
            self.history.append((op, "..."))
            res = await self.execute(op)
            self.history[-1] = (op, res)
            self.log(f"{len(self.history) - 1:4d} {op!r} -> {res}")
        self.history.append((Op("check", {"final": True}), "..."))
        await self.check_all(eventual=self.restarts > 0)
        self.history[-1] = (self.history[-1][0], "ok")

    # ---------------------------------------------------------------- one operation

    async def execute(self, op: Op) -> str:
        if op.kind == "restart":
            return await self.restart(op)
        if op.kind == "check":
            await self.check_all(eventual=False)
            return "ok"
        exp = self.model.apply(op)
        try:
            got = await getattr(self, "do_" + op.kind)(**op.args)
            err = None
        except (RuntimeError, ValueError) as e:
            got, err = None, str(e)
        if exp.error is not None:
            if err is None:
                self.fail(f"expected an error matching /{exp.error}/, the server answered {_short(got)}")
            if not re.search(exp.error, err, re.IGNORECASE):
                self.fail(f"expected an error matching /{exp.error}/, got {err!r}")
            return f"error {err!r}"
        if err is not None:
            self.fail(f"expected {_short(exp.value)}, got the error {err!r}")
        if op.kind == "delete_segments":
            return await self.after_delete_segments(op, exp.value)
        want = exp.value
        if op.kind == "poll":
            want = [(m.offset, m.id, m.payload, m.headers) for m in exp.value]
        if got != want:
            self.fail(f"expected {_short(want)}\n     got {_short(got)}")
        if op.kind == "poll":
            return f"offsets {[m[0] for m in got]}" if len(got) < 12 else f"{len(got)} msgs from {got[0][0]}"
        return "ok" if got is None else repr(got)

    async def do_create_stream(self, name):
        await self.c.create_stream(name)
        s = await self.c.get_stream(name)
        return None if s is None else s.id

    async def do_delete_stream(self, stream):
        await self.c.delete_stream(stream)

    async def do_update_stream(self, stream, name):
        await self.c.update_stream(stream, name)

    async def do_update_topic(self, stream, topic, name):
        await self.c.update_topic(stream, topic, name)

    async def do_create_topic(self, stream, name, partitions):
        await self.c.create_topic(stream, name, partitions)
        t = await self.c.get_topic(stream, name)
        return None if t is None else t.id

    async def do_delete_topic(self, stream, topic):
        await self.c.delete_topic(stream, topic)

    async def do_create_partitions(self, stream, topic, count):
        await self.c.create_partitions(stream, topic, count)

    async def do_delete_partitions(self, stream, topic, count):
        await self.c.delete_partitions(stream, topic, count)

    async def do_purge_topic(self, stream, topic):
        await self.c.purge_topic(stream, topic)

    async def do_purge_stream(self, stream):
        await self.c.purge_stream(stream)

    async def do_send(self, stream, topic, partition, msgs):
        batch = [SendMessage(payload, id=mid, user_headers=headers) for mid, payload, headers in msgs]
        r = await self.c.send_messages(stream, topic, partition, batch)
        return [x.base_offset for x in r.confirmations][0] if len(r.confirmations) == 1 else [
            (x.partition_id, x.base_offset) for x in r.confirmations]

    async def do_poll(self, stream, topic, partition, consumer, strategy, value, count, auto_commit):
        got = await self.c.poll_messages(stream, topic, consumer=sdk_consumer(consumer),
                                         polling_strategy=sdk_strategy(strategy, value), count=count,
                                         auto_commit=auto_commit, partition_id=partition)
        return [msg_tuple(m) for m in got]

    async def do_store_offset(self, stream, topic, partition, consumer, offset):
        body = offset_body(stream, topic, partition, consumer) + struct.pack("<Q", offset) + b"\x01"
        await self.c.send_binary_request(121, body)

    async def do_delete_offset(self, stream, topic, partition, consumer):
        await self.c.send_binary_request(122, offset_body(stream, topic, partition, consumer) + b"\x01")

    async def do_get_offset(self, stream, topic, partition, consumer):
        body = await self.c.send_binary_request(120, offset_body(stream, topic, partition, consumer))
        if body == b"":
            return None
        pid, current, stored = struct.unpack_from("<IQQ", body, 0)
        return (current, stored)

    async def do_create_group(self, stream, topic, name):
        await self.c.create_consumer_group(stream, topic, name)
        g = await self.c.get_consumer_group(stream, topic, name)
        return None if g is None else g.id

    async def do_delete_group(self, stream, topic, group):
        await self.c.delete_consumer_group(stream, topic, group)

    async def do_join_group(self, stream, topic, group):
        await self.c.join_consumer_group(stream, topic, group)

    async def do_leave_group(self, stream, topic, group):
        await self.c.leave_consumer_group(stream, topic, group)

    async def do_delete_segments(self, stream, topic, partition, count):
        await self.c.send_binary_request(503, ident(stream) + ident(topic) + struct.pack("<II", partition, count))

    async def after_delete_segments(self, op: Op, before) -> str:
        """Reads the partition's first kept offset (messages_count and a First poll) and lets the model adopt it."""
        a = op.args
        low_before, nxt, _ = before
        t = await self.c.get_topic(a["stream"], a["topic"])
        count = t.partitions[a["partition"]].messages_count
        low = nxt - count
        first = await self.c.poll_messages(a["stream"], a["topic"], consumer=Consumer.Single(SINGLE_CONSUMERS[0]),
                                           polling_strategy=PollingStrategy.First(), count=1, auto_commit=False,
                                           partition_id=a["partition"])
        if count and [m.offset() for m in first] != [low]:
            self.fail(f"messages_count {count} says the first kept offset is {low}, a First poll answered "
                      f"{[m.offset() for m in first]}")
        why = self.model.adopt_low(a["stream"], a["topic"], a["partition"], low)
        if why:
            self.fail(why)
        return f"first kept {low_before} -> {low} (next {nxt})"

    # ---------------------------------------------------------------- restarts

    async def restart(self, op: Op) -> str:
        how, node = op.args["how"], op.args["node"]
        if node != 0:
            # Only some nodes restart: the client's own node may survive, and with it its memberships; the
            # model has none across a restart, so the client leaves every group first.
            for sid, s in self.model.streams.items():
                for tid, t in s.topics.items():
                    for gid, g in t.groups.items():
                        if "main" in g.members:
                            try:
                                await self.c.leave_consumer_group(sid, tid, gid)
                            except RuntimeError as e:
                                self.fail(f"leaving group {gid} of {sid}/{tid} before the restart failed: {e}")
        self.model.apply(op)
        self.c = None
        t0 = time.monotonic()
        try:
            self.srv.restart_nodes(how, node)
        except HarnessError as e:
            self.fail(f"restart failed: {e}")
        self.restarts += 1
        await self.connect()
        await self.check_all(eventual=True)
        return f"ok ({time.monotonic() - t0:.1f}s to the same state)"

    # ---------------------------------------------------------------- the whole state

    async def observe(self) -> dict:
        c = self.c
        out = {"streams": [], "partitions": {}, "offsets": {}, "groups": {}}
        for s in sorted(await c.get_streams(), key=lambda s: s.id):
            d = await c.get_stream(s.id)
            topics = []
            for t in sorted(d.topics, key=lambda t: t.id):
                td = await c.get_topic(s.id, t.id)
                parts = [(p.id, p.messages_count, p.current_offset) for p in td.partitions]
                topics.append((td.id, td.name, td.partitions_count, td.messages_count, parts))
                groups = sorted(await c.get_consumer_groups(s.id, t.id), key=lambda g: g.id)
                out["groups"][(s.id, t.id)] = [(g.id, g.name, g.partitions_count, g.members_count) for g in groups]
                consumers = [("c", n) for n in SINGLE_CONSUMERS] + [("g", g.id) for g in groups]
                for p in td.partitions:
                    out["partitions"][(s.id, t.id, p.id)] = await self.read_partition(s.id, t.id, p.id)
                    stored = {}
                    for k in consumers:
                        body = await c.send_binary_request(120, offset_body(s.id, t.id, p.id, k))
                        if body:
                            stored[k] = struct.unpack_from("<IQQ", body, 0)[2]
                    out["offsets"][(s.id, t.id, p.id)] = stored
            out["streams"].append((d.id, d.name, d.topics_count, d.messages_count, topics))
        if self.nodes == 1:
            st = await c.get_stats()
            out["stats"] = (st.streams_count, st.topics_count, st.partitions_count, st.messages_count,
                            st.consumer_groups_count)
        return out

    async def read_partition(self, sid: int, tid: int, pid: int) -> list:
        msgs, at = [], 0
        while True:
            got = await self.c.poll_messages(sid, tid, consumer=Consumer.Single(SINGLE_CONSUMERS[0]),
                                             polling_strategy=PollingStrategy.Offset(value=at), count=POLL_PAGE,
                                             auto_commit=False, partition_id=pid)
            msgs += [msg_tuple(m) for m in got]
            if len(got) < POLL_PAGE:
                return msgs
            at = msgs[-1][0] + 1

    async def check_all(self, eventual: bool) -> None:
        """The server's whole state equals the model's: at once, or (after a restart) within RECOVERY_TIMEOUT."""
        expected = self.model.observable()
        deadline = time.monotonic() + (RECOVERY_TIMEOUT if eventual else 0)
        last = ""
        while True:
            try:
                got = await self.observe()
                if got == expected:
                    return
                last = diff(expected, got)
            except (RuntimeError, asyncio.TimeoutError) as e:
                last = f"reading the state failed: {e}"
                if eventual:
                    try:
                        await self.connect(5)
                    except LifecycleFailure:
                        pass
            if time.monotonic() >= deadline:
                when = f"within {RECOVERY_TIMEOUT:g}s of the restart" if eventual else "(no restart since)"
                self.fail(f"the server's state differs from the model's {when}:\n{last}")
            await asyncio.sleep(0.3)


async def run_lifecycle(workdir: Path, nodes: int, seed: int, n_ops: int, binary: Path | None = None,
                        quirks=None, weights=None, log=None, script: list | None = None,
                        known_bugs: bool = False) -> Runner:
    """Starts galgod (one node or three), runs the sequence, stops galgod (SIGTERM: it must exit 0)."""
    srv = make_server(workdir, nodes, binary)
    srv.start()
    runner = Runner(srv, nodes, seed, n_ops, quirks, weights, log, script, known_bugs)
    try:
        await runner.run()
    except BaseException as e:
        runner.c = None
        srv._clients.clear()
        logs = srv.logs()
        srv._kill()
        if isinstance(e, LifecycleFailure):
            raise LifecycleFailure(f"{e}\n{logs}") from None
        raise
    runner.c = None
    srv._clients.clear()
    srv.stop()
    return runner
