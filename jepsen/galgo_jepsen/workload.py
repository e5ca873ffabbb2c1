"""Workloads: what the clients do while the nemesis works, and the final reads after it healed.

append   producers send batches of 1..4 fresh values (unique over the run) to random partitions of
         stream "jepsen", topic "append" (PARTITIONS partitions, replication factor min(3, nodes),
         dedup window on). Producers are spread over the transports: Python SDK over TCP, QUIC and HTTP,
         and the C client, leader-following ("leader") and pinned to one node ("pinned"). Each producer is
         bound to one node (round robin) and reconnects after a failure.
group    the append producers, plus three members of one consumer group (Python SDK over TCP) polling
         with Next and auto-commit, leaving and joining again now and then; after the faults they drain.
         One reader per node (C client pinned to it) reads the group's stored offset of every partition
         every 0.5 s (group_offset events; it must never go back), and a sampler asks for the group's
         members and their partitions once a second (group_members events: one owner per partition).
read     the append producers, plus readers: per partition one reader polling by offset from 0 (next =
         last offset read + 1) and one Python SDK consumer polling with PollingStrategy.Next and
         auto_commit (its stored offset must never go backwards).

Every operation goes into the history (history.py). A client whose operation ended "info" continues as
a new process number (the old one may still have that operation in flight, as in Jepsen).

Final reads. After the nemesis healed everything and the cluster had time to recover, each partition is
read whole (offset 0 to the end, in pages) once from every node through the C client pinned to that node
(a node serves polls of partitions it hosts from its own replica), so each final read is that node's
replica; the checker compares them with each other and with every acknowledged send. Final reads ask for
whole records ("full": each message with its timestamps, frame checksum and user headers length), so the
runner's replica comparison covers every byte of every message; a page whose reply does not verify is
recorded (a "fail" final_read with "corrupt") and read again.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from .client import CClient, PyClient
from .db import DB
from .history import History

STREAM, TOPIC = "jepsen", "append"


@dataclass
class Ctx:
    db: DB
    history: History
    cclient: Path | None
    partitions: int
    rng: random.Random
    timeout: float = 5.0
    rate: float = 50.0  # target sends per second over all producers
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _values: itertools.count = field(default_factory=lambda: itertools.count(1))
    _procs: itertools.count = field(default_factory=lambda: itertools.count(0))
    n_clients: int = 0
    group_streaks: dict = field(default_factory=dict)  # group member -> empty polls in a row while draining

    def fresh(self, k: int) -> list[int]:
        return [next(self._values) for _ in range(k)]

    def new_process(self) -> int:
        return next(self._procs)


def _node_ids(ctx: Ctx) -> list[int]:
    return sorted(ctx.db.nodes)


def make_client(ctx: Ctx, kind: str, node: int):
    """kind: tcp | quic | http (Python SDK) | c-leader | c-pinned (C client)."""
    n = ctx.db.nodes[node]
    if kind.startswith("c-"):
        servers = [n.tcp] + [ctx.db.nodes[i].tcp for i in _node_ids(ctx) if i != node]
        return CClient(ctx.cclient, servers if kind == "c-leader" else [n.tcp], kind[2:], ctx.timeout)
    return PyClient(kind, n.ip, ctx.timeout)


async def setup(ctx: Ctx, deadline_s: float = 60.0) -> None:
    """Creates the stream and topic through any node (retrying while the cluster settles)."""
    rf = min(3, len(ctx.db.nodes))
    t_end = time.monotonic() + deadline_s
    last = ""
    created_stream = False
    while time.monotonic() < t_end:
        for node in _node_ids(ctx):
            c = PyClient("tcp", ctx.db.nodes[node].ip, ctx.timeout)
            try:
                await c.open()
                if not created_stream:
                    try:
                        await asyncio.wait_for(c.c.create_stream(STREAM), ctx.timeout)
                    except Exception as e:
                        if "exist" not in str(e).lower():
                            raise
                    created_stream = True
                try:
                    await asyncio.wait_for(c.c.create_topic(
                        STREAM, TOPIC, ctx.partitions,
                        options={"replication_factor": str(rf), "dedup_window": "65536"}), ctx.timeout)
                except Exception as e:
                    if "exist" not in str(e).lower():
                        raise
                try:
                    await asyncio.wait_for(c.c.create_consumer_group(STREAM, TOPIC, GROUP), ctx.timeout)
                except Exception as e:
                    if "exist" not in str(e).lower():
                        raise
                return
            except Exception as e:
                last = f"node {node}: {e}"
            await asyncio.sleep(0.5)
    raise RuntimeError(f"could not create {STREAM}/{TOPIC}: {last}")


def _home(ctx: Ctx, node: int) -> int:
    """The node a client bound to `node` talks to now: itself, or, once the member nemesis removed it,
    the node that replaced it (the same id until the replacement exists; _open then finds no node)."""
    seen = set()
    while node not in ctx.db.nodes and node in ctx.db.replaced and node not in seen:
        seen.add(node)
        node = ctx.db.replaced[node]
    return node


async def _open(ctx: Ctx, kind: str, node: int):
    if node not in ctx.db.nodes:
        return None
    c = make_client(ctx, kind, node)
    try:
        await c.open()
        return c
    except Exception:
        try:
            await c.close()
        except Exception:
            pass
        return None


def _transport(kind: str) -> str:
    return "c" if kind.startswith("c-") else kind


async def producer(ctx: Ctx, kind: str, node: int, rate: float) -> None:
    proc = ctx.new_process()
    c = None
    h = ctx.history
    while not ctx.stop.is_set():
        if c is None:
            node = _home(ctx, node)
            c = await _open(ctx, kind, node)
            if c is None:
                await _sleep(ctx, 0.5)
                continue
        p = ctx.rng.randrange(ctx.partitions)
        vals = ctx.fresh(ctx.rng.randint(1, 4))
        val = {"partition": p, "values": vals}
        h.add(proc, "invoke", "send", val, node=node, transport=_transport(kind))
        r = await c.send(STREAM, TOPIC, p, vals)
        if r[0] == "ok":
            h.add(proc, "ok", "send", val, node=node, transport=_transport(kind))
        else:
            h.add(proc, r[0], "send", val, node=node, transport=_transport(kind), error=r[1], code=r[2])
            if r[0] == "info":
                proc = ctx.new_process()
            await c.close()
            c = None
        await _sleep(ctx, ctx.rng.expovariate(rate) if rate > 0 else 0)
    if c is not None:
        await c.close()


async def offset_reader(ctx: Ctx, kind: str, node: int, partition: int) -> None:
    """Polls one partition by offset, from 0, continuing after the last offset read."""
    proc = ctx.new_process()
    c = None
    nxt = 0
    h = ctx.history
    while not ctx.stop.is_set():
        if c is None:
            node = _home(ctx, node)
            c = await _open(ctx, kind, node)
            if c is None:
                await _sleep(ctx, 0.5)
                continue
        inv = {"partition": partition, "offset": nxt, "count": 100}
        h.add(proc, "invoke", "poll", inv, node=node, transport=_transport(kind))
        r = await c.poll(STREAM, TOPIC, partition, nxt, 100)
        if r[0] == "ok":
            msgs = r[1] or []
            h.add(proc, "ok", "poll", {**inv, "messages": msgs}, node=node, transport=_transport(kind))
            if msgs:
                nxt = msgs[-1][0] + 1
            else:
                await _sleep(ctx, 0.2)
        else:
            h.add(proc, r[0], "poll", {**inv, **_extra(r)}, node=node, transport=_transport(kind), error=r[1],
                  code=r[2])
            await c.close()
            c = None
            await _sleep(ctx, 0.2)
    if c is not None:
        await c.close()


def _extra(r: tuple) -> dict:
    """What a failed poll's outcome adds to its completion event: a reply that did not verify
    ("corrupt", the offsets it claimed, the frames whose checksum failed; client.corrupt_of)."""
    return r[3] if len(r) > 3 else {}


async def next_consumer(ctx: Ctx, kind: str, node: int, partition: int, name: str) -> None:
    """An Iggy consumer: PollingStrategy.Next with auto_commit (the server stores its offset)."""
    proc = ctx.new_process()
    c = None
    h = ctx.history
    while not ctx.stop.is_set():
        if c is None:
            node = _home(ctx, node)
            c = await _open(ctx, kind, node)
            if c is None:
                await _sleep(ctx, 0.5)
                continue
        inv = {"partition": partition, "offset": None, "count": 50, "consumer": name, "auto_commit": True}
        h.add(proc, "invoke", "poll", inv, node=node, transport=_transport(kind))
        r = await c.poll(STREAM, TOPIC, partition, None, 50, consumer=name, auto_commit=True)
        if r[0] == "ok":
            h.add(proc, "ok", "poll", {**inv, "messages": r[1] or []}, node=node, transport=_transport(kind))
            if not r[1]:
                await _sleep(ctx, 0.2)
        else:
            h.add(proc, r[0], "poll", inv, node=node, transport=_transport(kind), error=r[1], code=r[2])
            if r[0] == "info":
                proc = ctx.new_process()
            await c.close()
            c = None
            await _sleep(ctx, 0.2)
    if c is not None:
        await c.close()


GROUP = "jepsen-group"


async def group_member(ctx: Ctx, node: int, drain_s: float = 20.0) -> None:
    """A consumer-group member (Python SDK over TCP; groups are not served over HTTP): joins GROUP,
    polls with Next and auto-commit (the server assigns its partitions), and now and then leaves and
    joins again, so partitions move between members during the faults. Once the clients are told to
    stop it goes on polling until two polls in a row come back empty (at most drain_s), so that every
    message has had its chance to be delivered."""
    me = object()  # this member's entry in ctx.group_streaks, whatever its process number becomes
    proc = ctx.new_process()
    c = None
    joined = False
    h = ctx.history
    drain_end = None
    drain_from = None
    empties = 0
    ctx.group_streaks[me] = 0
    while True:
        if ctx.stop.is_set():
            if drain_end is None:
                drain_from = time.monotonic()
                drain_end = drain_from + drain_s
            ctx.group_streaks[me] = empties
            # every member stops together, once each has seen two empty polls in a row, at least 3 s
            # after the producers stopped (their last sends may still land): a member leaving early
            # would hand its partitions to members that have already stopped
            done = time.monotonic() - drain_from > 3 and all(v >= 2 for v in ctx.group_streaks.values())
            if done or time.monotonic() > drain_end:
                break
        if c is None:
            node = _home(ctx, node)
            c = await _open(ctx, "tcp", node)
            joined = False
            if c is None:
                await asyncio.sleep(0.5)
                continue
        val = {"group": GROUP, "member": proc}
        if not joined:
            h.add(proc, "invoke", "group_join", val, node=node, transport="tcp")
            r = await c._call(c.c.join_consumer_group(STREAM, TOPIC, GROUP), write=True)
            h.add(proc, r[0], "group_join", val, node=node, transport="tcp",
                  **({} if r[0] == "ok" else {"error": r[1], "code": r[2]}))
            if r[0] != "ok":
                if r[0] == "info":
                    proc = ctx.new_process()
                await c.close()
                c = None
                await asyncio.sleep(0.5)
                continue
            joined = True
        if drain_end is None and ctx.rng.random() < 0.03:
            h.add(proc, "invoke", "group_leave", val, node=node, transport="tcp")
            r = await c._call(c.c.leave_consumer_group(STREAM, TOPIC, GROUP), write=True)
            h.add(proc, r[0], "group_leave", val, node=node, transport="tcp",
                  **({} if r[0] == "ok" else {"error": r[1], "code": r[2]}))
            joined = False
            if r[0] == "info":
                proc = ctx.new_process()
                await c.close()
                c = None
            await _sleep(ctx, 1.0)
            continue
        h.add(proc, "invoke", "group_poll", {**val, "count": 50}, node=node, transport="tcp")
        r = await c.group_poll(STREAM, TOPIC, GROUP, 50)
        if r[0] == "ok":
            h.add(proc, "ok", "group_poll", {**val, "messages": r[1]}, node=node, transport="tcp")
            empties = empties + 1 if not r[1] and drain_from is not None and time.monotonic() - drain_from > 3 else 0
            if not r[1]:
                await asyncio.sleep(0.2)
        else:
            h.add(proc, r[0], "group_poll", val, node=node, transport="tcp", error=r[1], code=r[2])
            if r[0] == "info":
                proc = ctx.new_process()
            await c.close()
            c = None
            await asyncio.sleep(0.3)
    if c is not None:
        await c.close()


async def group_offset_reader(ctx: Ctx, node: int, interval: float = 0.5) -> None:
    """Reads GROUP's stored offset of every partition from one node (C client pinned to it; any node
    answers it from its own copy of the metadata) every `interval` seconds: group_offset events, each
    naming the node asked ("via"), since a node's metadata may trail the leader's (docs/ARCHITECTURE.md,
    "Metadata reads") and so read-backs are compared per node. A read changes nothing: errors are "fail"."""
    proc = ctx.new_process()
    c = None
    h = ctx.history
    while not ctx.stop.is_set():
        if c is None:
            node = _home(ctx, node)
            c = await _open(ctx, "c-pinned", node)
            if c is None:
                await _sleep(ctx, 0.5)
                continue
        for p in range(ctx.partitions):
            val = {"group": GROUP, "partition": p, "via": node}
            h.add(proc, "invoke", "group_offset", val, node=node, transport="c")
            r = await c.get_offset(STREAM, TOPIC, p, group=GROUP)
            if r[0] == "ok":
                h.add(proc, "ok", "group_offset", {**val, "offset": r[1]}, node=node, transport="c")
            else:
                h.add(proc, r[0], "group_offset", val, node=node, transport="c", error=r[1], code=r[2])
                await c.close()
                c = None
                break
        await _sleep(ctx, interval)
    if c is not None:
        await c.close()


async def group_owner_sampler(ctx: Ctx, node: int, interval: float = 1.0) -> None:
    """Asks one node for GROUP's members and the partitions each holds (Python SDK over TCP,
    GetConsumerGroup) every `interval` seconds: "group_members" events. Each is one snapshot of the
    assignment, in which no partition may be held by two members (the checker's "group owners")."""
    proc = ctx.new_process()
    c = None
    h = ctx.history
    while not ctx.stop.is_set():
        if c is None:
            node = _home(ctx, node)
            c = await _open(ctx, "tcp", node)
            if c is None:
                await _sleep(ctx, 0.5)
                continue
        val = {"group": GROUP, "node": node}
        try:
            d = await asyncio.wait_for(c.c.get_consumer_group(STREAM, TOPIC, GROUP), ctx.timeout)
            members = [] if d is None else [[m.id, list(m.partitions)] for m in d.members]
            h.add(proc, "ok", "group_members", {**val, "members": members}, node=node, transport="tcp")
        except Exception as e:  # a read: any failure just ends this sample
            h.add(proc, "fail", "group_members", val, node=node, transport="tcp", error=str(e)[:200])
            await c.close()
            c = None
        await _sleep(ctx, interval)
    if c is not None:
        await c.close()


async def _sleep(ctx: Ctx, s: float) -> None:
    try:
        await asyncio.wait_for(ctx.stop.wait(), s)
    except asyncio.TimeoutError:
        pass


def tasks(ctx: Ctx, workload: str, kinds: list[str]) -> list:
    """The coroutines of a workload (not started)."""
    nodes = _node_ids(ctx)
    per = ctx.rate / max(1, len(kinds))
    out = [producer(ctx, kind, nodes[i % len(nodes)], per) for i, kind in enumerate(kinds)]
    if workload == "group":
        for i in range(3):
            out.append(group_member(ctx, nodes[i % len(nodes)]))
        if ctx.cclient:
            out += [group_offset_reader(ctx, n) for n in nodes]
        out.append(group_owner_sampler(ctx, nodes[0]))
    if workload == "read":
        for p in range(ctx.partitions):
            rk = "c-pinned" if ctx.cclient else "tcp"
            out.append(offset_reader(ctx, rk, nodes[p % len(nodes)], p))
            out.append(next_consumer(ctx, "tcp", nodes[(p + 1) % len(nodes)], p, f"consumer-{p}"))
    return out


def _replicas_agree(db: DB) -> bool:
    """Whether every partition replica reports the same last offset on every node hosting it, and no
    node has Raft entries it does not know committed or has not applied."""
    from .db import parse_metrics
    seen: dict[tuple, set] = {}
    for n in db.nodes.values():
        m = parse_metrics(n.metrics())
        if not m:
            return False
        # entries not yet known committed (a follower learns the commit index with the leader's next
        # message) or committed and not applied: a poll there does not serve them yet
        if any(v > 0 for _, v in m.get("galgo_raft_apply_lag", []) + m.get("galgo_raft_commit_lag", [])):
            return False
        for labels, v in m.get("galgo_partition_current_offset", []):
            seen.setdefault(tuple(sorted(labels.items())), set()).add(v)
    return all(len(vs) == 1 for vs in seen.values())


async def quiesce(ctx: Ctx, timeout_s: float = 30.0) -> float:
    """Waits until the replicas agree (a follower may lag its leader by a heartbeat or two once the
    clients stop); returns the seconds waited. Replicas that never agree are left to the checks."""
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    while time.monotonic() - t0 < timeout_s:
        if await loop.run_in_executor(None, _replicas_agree, ctx.db):
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


async def group_members(ctx: Ctx) -> None:
    """Records the consumer group's members and their partitions as every node sees them (a checker
    event "group_members"), after the members stopped: a member left behind (a client that went away
    without its connection closing) would keep partitions from everyone else."""
    for node in _node_ids(ctx):
        c = await _open(ctx, "tcp", node)
        if c is None:
            continue
        try:
            d = await asyncio.wait_for(c.c.get_consumer_group(STREAM, TOPIC, GROUP), ctx.timeout)
            members = [] if d is None else [[m.id, list(m.partitions)] for m in d.members]
            ctx.history.add("checker", "info", "group_members", {"group": GROUP, "node": node, "members": members})
        except Exception as e:
            ctx.history.add("checker", "info", "group_members", {"group": GROUP, "node": node, "error": str(e)[:200]})
        await c.close()


async def final_reads(ctx: Ctx, page: int = 1000, deadline_s: float = 60.0) -> None:
    """Reads every partition whole from every node's own replica (C client pinned to that node), once
    the replicas agree (quiesce)."""
    h = ctx.history
    waited = await quiesce(ctx)
    h.add("checker", "info", "quiesce", {"seconds": round(waited, 3)})
    for node in _node_ids(ctx):
        for p in range(ctx.partitions):
            proc = ctx.new_process()
            t_end = time.monotonic() + deadline_s
            while True:
                c = await _open(ctx, "c-pinned" if ctx.cclient else "tcp", node)
                msgs: list = []
                err = None
                if c is not None:
                    nxt = 0
                    while True:
                        r = await (c.poll(STREAM, TOPIC, p, nxt, page, full=True) if isinstance(c, CClient)
                                   else c.poll(STREAM, TOPIC, p, nxt, page))
                        if r[0] != "ok":
                            err = r[1]
                            if _extra(r):  # a reply that did not verify: recorded, then asked again
                                h.add(proc, "fail", "final_read", {"partition": p, "node": node, **_extra(r)},
                                      node=node, error=err)
                            break
                        if not r[1]:
                            break
                        msgs += r[1]
                        nxt = r[1][-1][0] + 1
                    await c.close()
                else:
                    err = "no connection"
                if err is None:
                    h.add(proc, "ok", "final_read", {"partition": p, "node": node, "messages": msgs}, node=node)
                    break
                if time.monotonic() > t_end:
                    h.add(proc, "fail", "final_read", {"partition": p, "node": node}, node=node, error=err)
                    break
                await asyncio.sleep(1.0)
