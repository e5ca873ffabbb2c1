"""A replica cut off from its partition's leader but still connected to another replica (the "bridge"
topology: one node sees both sides of a partition) keeps taking sends: it asks the replica it reaches to
relay them to the leader (docs/ARCHITECTURE.md, "A send").

Three real galgods, each in a network namespace of its own (galgo_jepsen.hosts), one partition
replicated on all three. The links between the partition's leader L and another replica O are cut in
both directions (iptables in the nodes' namespaces); the third replica R still sees both. A producer
pinned to O (Galgo's C client through galgo-jepsen-client) sends one new value every 100 ms. Once O has
given up on L (its election timeout, and the node-to-node link's idle timeout), every send must be
acknowledged, none refused with 58 (before the relay, O answered 58 for as long as the cut lasted), and
O's galgo_sends_via_peer_total must have grown. After the heal every node's replica holds every
acknowledged value exactly once, and no value refused with 58.

Needs root (network namespaces, iptables); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from galgo_jepsen import hosts  # noqa: E402
from galgo_jepsen.client import CClient  # noqa: E402
from galgo_jepsen.db import DB, parse_metrics  # noqa: E402

BUILD = Path(os.environ.get("GALGO_BUILD", Path(__file__).resolve().parents[2] / "build"))
GALGOD = BUILD / "galgod"
DRIVER = BUILD / "galgo-jepsen-client"


def _skip_reason() -> str | None:
    why = hosts.usable()
    if why is not None:
        return why
    if not GALGOD.exists() or not DRIVER.exists():
        return f"{GALGOD} or {DRIVER} is not built"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


PARTITIONS = 3


def _partition_leaders(db: DB) -> dict[int, set[int]]:
    """partition -> the leaders the nodes know for it."""
    out: dict[int, set[int]] = {}
    for n in db.nodes.values():
        for labels, v in parse_metrics(n.metrics()).get("galgo_raft_leader_id", []):
            if labels.get("group") == "partition":
                out.setdefault(int(labels["partition"]), set()).add(int(v))
    return out


def _metric(db: DB, node: int, name: str) -> float:
    vals = parse_metrics(db.nodes[node].metrics()).get(name, [])
    return sum(v for _, v in vals)


@pytest.fixture
def cluster(tmp_path):
    net = hosts.Net(3)
    db = None
    try:
        net.setup()
        db = DB(net, tmp_path, GALGOD)
        for n in db.nodes.values():
            n.dir.mkdir(parents=True, exist_ok=True)
        db.start_all()
        db.wait_ready(60)
        yield db
    finally:
        if db is not None:
            codes = db.stop_all()
            assert all(c == 0 for c in codes.values()), f"exit statuses {codes}"
        net.teardown()


async def _client(db: DB, node: int, timeout: float = 30.0, reply_s: float = 5.0) -> CClient:
    """A C client pinned to `node`, logged in (a login the node cannot prove current is refused, 58: retried)."""
    deadline = time.monotonic() + timeout
    while True:
        c = CClient(DRIVER, [db.nodes[node].tcp], "pinned", reply_s)
        try:
            await c.open()
            return c
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _scenario(db: DB) -> None:
    setup = await _client(db, 1)
    r = await setup.raw({"op": "create_stream", "stream": "bridge"})
    assert r["type"] == "ok", r
    r = await setup.raw({"op": "create_topic", "stream": "bridge", "topic": "t", "partitions": PARTITIONS,
                         "replication_factor": 3})
    assert r["type"] == "ok", r
    await setup.close()
    # every node agrees on one leader of each partition; one led by a node other than the metadata
    # leader is chosen, so that the producer's node still reaches the metadata (a login there must prove
    # its metadata current: tests of issue #11) and only the partition's leader is out of its reach
    deadline = time.monotonic() + 30
    while True:
        views = _partition_leaders(db)
        metas = {db.meta_leader(n) for n in db.nodes.values()}
        agreed = {p: ls.pop() for p, ls in views.items() if len(ls) == 1 and 0 not in ls}
        meta = metas.pop() if len(metas) == 1 else None
        pick = [p for p, l in sorted(agreed.items()) if meta and l != meta]
        if len(agreed) == PARTITIONS and meta and pick:
            break
        assert time.monotonic() < deadline, f"no agreed leaders: {views}, metadata leader {metas}"
        await asyncio.sleep(0.2)
    part = pick[0]
    leader = agreed[part]
    origin = next(n for n in sorted(db.nodes) if n not in (leader, meta))
    relay = next(n for n in sorted(db.nodes) if n not in (leader, origin))
    # replies may take the server's 10 s send deadline (a send in flight into the cut): the connection
    # is kept rather than dropped by a shorter client timeout
    prod = await _client(db, origin, reply_s=15.0)
    value = 0
    acked: list[int] = []
    refused: list[int] = []
    unknown: list[int] = []
    errors: list[tuple] = []

    async def send() -> str:
        nonlocal value
        value += 1
        t0 = time.monotonic()
        r = await prod.send("bridge", "t", part, [value])
        {"ok": acked, "fail": refused}.get(r[0], unknown).append(value)
        if r[0] != "ok":
            errors.append((value, r[0], r[2], r[1][:60], round(time.monotonic() - t0, 2)))
        return r[0]

    for _ in range(5):
        assert await send() == "ok", errors
    before = _metric(db, origin, "galgo_sends_via_peer_total")
    db.net.drop(origin, leader, "both")
    db.net.drop(leader, origin, "both")
    # O gives up on L after its election timeout (1-2 s; the link's idle timeout is 5 s); a send in flight
    # into the cut meanwhile has an unknown outcome (answered 1 at the 10 s deadline)
    t_cut = time.monotonic()
    while await send() != "ok":
        assert time.monotonic() - t_cut < 20, f"no send through node {origin} acknowledged; errors {errors[-8:]}"
        await asyncio.sleep(0.1)
    first_ok = time.monotonic() - t_cut
    outcomes = []
    t_steady = time.monotonic()
    while time.monotonic() - t_steady < 5:
        outcomes.append((value + 1, await send()))
        await asyncio.sleep(0.1)
    relayed = _metric(db, origin, "galgo_sends_via_peer_total") - before
    db.net.heal()
    bad = [(v, o) for v, o in outcomes if o != "ok"]
    assert not bad, (f"sends through node {origin} cut from leader {leader} (relay {relay}) not acknowledged: "
                     f"{bad[:10]} ({len(bad)} of {len(outcomes)}); errors {errors[-8:]}")
    assert relayed >= len(outcomes), f"galgo_sends_via_peer_total grew by {relayed} for {len(outcomes)} sends"
    print(f"first acknowledged send {first_ok:.1f} s after the cut; then {len(outcomes)} of {len(outcomes)} "
          f"acknowledged; before: {errors}")
    # after the heal: one more send through O, then every replica holds every acked value once
    deadline = time.monotonic() + 30
    while await send() != "ok":
        assert time.monotonic() < deadline, "no acknowledged send after the heal"
        await asyncio.sleep(0.3)
    await prod.close()
    deadline = time.monotonic() + 30
    for node in db.nodes:
        while True:
            c = await _client(db, node)
            r = await c.poll("bridge", "t", part, 0, 1000)
            await c.close()
            vals = [v for _, v in r[1]] if r[0] == "ok" else None
            if vals is not None and set(acked) <= set(vals):
                break
            assert time.monotonic() < deadline, f"node {node}: {r[0]}, lacks {sorted(set(acked) - set(vals or []))[:10]}"
            await asyncio.sleep(0.5)
        assert len(vals) == len(set(vals)), f"node {node} holds a value twice"
        assert not set(refused) & set(vals), f"node {node} holds values refused with 58: {set(refused) & set(vals)}"


def test_a_replica_cut_from_the_leader_sends_through_another_replica(cluster):
    asyncio.run(_scenario(cluster))
