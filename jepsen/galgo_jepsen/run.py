"""The runner: `python -m galgo_jepsen.run` (from jepsen/; `make jepsen` does it).

One run = one workload under one nemesis (a fault, or "all" faults mixed) on a fresh cluster:

  1. hosts: N network namespaces on a bridge (hosts.py); galgod started in each (db.py), with
     libfaketime and the power-loss shim preloaded when the nemesis needs them;
  2. setup: stream "jepsen", topic "append" (replication factor 3, dedup window on);
  3. for TIME seconds the workload's clients work (workload.py) while the nemesis injects faults
     (nemesis.py); then the nemesis stops and everything is healed (partitions flushed, paused nodes
     resumed, dead nodes restarted, clocks reset); the clients go on for RECOVER seconds more, so the
     checker can measure the time from heal to full service;
  4. final reads of every partition from every node's own replica, whole records; replica comparison
     (record for record, every field: see replica_events);
  5. every node stopped with SIGTERM: each must exit 0 and its log must hold no sanitizer report;
  6. the checker (checker.py) writes results.json and timeline.png and prints the table of checks.

Store: jepsen/store/<time>-<workload>-<nemesis>/ holds history.jsonl, results.json, timeline.png, and
per node nI/galgod.log (nI/data is deleted after a passing run unless JEPSEN_KEEP_DATA=1).

A matrix runs several such runs and ends with `N passed, N failed` over all of their checks; the exit
status is 0 iff every check of every run passed. Matrices:
  default  every nemesis once, the append, read and group workloads in turn (`make jepsen`, ~12 min)
  ci       a short selection within the CI budget (`make jepsen-ci`)
or choose with --workload/--nemesis (comma-separated lists run as their product).
Everything started is stopped on exit and on SIGINT/SIGTERM: galgods, namespaces, bridge, iptables rules,
disks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

from . import hosts, nemesis, workload
from .db import DB
from .history import History, load

HERE = Path(__file__).resolve().parent
JEPSEN = HERE.parent
REPO = JEPSEN.parent

ALL_FAULTS = ["partition", "kill", "pause", "restart", "clock", "delay", "loss", "powerloss", "powerswap",
              "corrupt", "member", "diskfull"]
MATRICES = {
    "default": [("append", "partition"), ("read", "kill"), ("group", "pause"), ("read", "clock"),
                ("append", "delay"), ("group", "loss"), ("append", "powerloss"), ("read", "corrupt"),
                ("append", "member"), ("group", "restart"), ("group", "powerswap"), ("append", "diskfull"), ("read", "all")],
    "ci": [("append", "partition"), ("group", "kill"), ("read", "pause"), ("read", "corrupt"),
           ("append", "powerloss"), ("append", "diskfull"), ("group", "all")],
}
# Producer kinds: the Python SDK over each transport and the C client in both modes.
KINDS = ["tcp", "quic", "http", "c-leader", "c-pinned", "tcp"]


def _find(build_env: str, name: str) -> Path | None:
    for d in [os.environ.get(build_env), REPO / "build"]:
        if d and (Path(d) / name).exists():
            return Path(d) / name
    return None


def faults_of(nem: str) -> list[str]:
    return ALL_FAULTS if nem == "all" else [f for f in nem.split("+") if f]


class Interrupted(Exception):
    pass


def one_run(args, wl: str, nem: str, seed: int) -> dict:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    store = JEPSEN / "store" / f"{stamp}-{wl}-{nem}"
    store.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    faults = faults_of(nem)
    for f in faults:
        if f not in nemesis.FAULTS:
            raise SystemExit(f"unknown nemesis {f!r} (known: {', '.join(sorted(nemesis.FAULTS))}, all)")
    galgod = Path(args.galgod)
    shim = [f for f in faults if f in ("powerloss", "powerswap")]
    plib = _find("GALGO_BUILD", "libgalgo-powerloss.so") if shim else None
    if shim and plib is None:
        raise SystemExit(f"{shim[0]} needs build/libgalgo-powerloss.so (make build)")
    cclient = _find("GALGO_BUILD", "galgo-jepsen-client")
    print(f"== run {store.name}: seed {seed}, {args.nodes} nodes, {args.time:.0f} s, faults {faults}", flush=True)
    net = hosts.Net(args.nodes)
    db = None
    hist = History(store / "history.jsonl")
    (store / "run.json").write_text(json.dumps({"workload": wl, "nemesis": nem, "seed": seed, "nodes": args.nodes,
                                                "time": args.time, "galgod": str(galgod)}, indent=1))
    extra: list[dict] = []
    passed = False
    try:
        net.setup()
        db = DB(net, store, galgod, durability=args.durability, clock="clock" in faults, powerloss_lib=plib,
                disk_mb=args.disk_mb if "diskfull" in faults else None)
        for n in db.nodes.values():
            n.dir.mkdir(parents=True, exist_ok=True)
        db.start_all()
        db.wait_ready(60)
        ctx = workload.Ctx(db=db, history=hist, cclient=cclient, partitions=args.partitions, rng=rng,
                           rate=args.rate)
        kinds = KINDS if cclient else [k for k in KINDS if not k.startswith("c-")]
        nem_thread = nemesis.Nemesis(db, hist, faults, rng, interval=args.interval, duration=args.duration)

        async def main():
            await workload.setup(ctx)
            ts = [asyncio.create_task(t) for t in workload.tasks(ctx, wl, kinds)]
            nem_thread.start()
            await asyncio.sleep(args.time)
            nem_thread.done.set()
            await asyncio.get_running_loop().run_in_executor(None, nem_thread.join)
            await asyncio.get_running_loop().run_in_executor(None, heal_all, db, hist)
            await asyncio.sleep(args.recover)
            ctx.stop.set()
            await asyncio.wait(ts, timeout=30)
            if wl == "group":
                await workload.group_members(ctx)
            await workload.final_reads(ctx)

        asyncio.run(main())
        replica_events(hist, store)
        exits = db.stop_all()
        for n, code in sorted(exits.items()):
            extra.append({"name": f"node {n} stopped cleanly", "passed": code == 0,
                          "count": 0 if code == 0 else 1, "examples": [] if code == 0 else [f"exit status {code}"]})
        for n in db.nodes.values():
            bad = [line for line in n.log.read_text(errors="replace").splitlines()
                   if "AddressSanitizer" in line or "runtime error:" in line or "LeakSanitizer" in line]
            extra.append({"name": f"node {n.id} log free of sanitizer reports", "passed": not bad,
                          "count": len(bad), "examples": bad[:5]})
        if nem_thread.error:
            extra.append({"name": "nemesis ran", "passed": False, "count": 1, "examples": [nem_thread.error]})
        extra.append({"name": "nemesis injected faults", "passed": nem_thread.count > 0,
                      "count": nem_thread.count, "examples": []})
    finally:
        if db is not None:
            for n in db.nodes.values():
                n.kill()
            try:
                db.keep_data()
            except OSError as e:
                print(f"node data not copied off its disk: {e}", file=sys.stderr)
        net.teardown()
        for d in store.glob("n*/disk"):
            try:
                d.rmdir()
            except OSError:
                pass
        hist.close()
    results = check(store, extra)
    passed = results["failed"] == 0
    if passed and not os.environ.get("JEPSEN_KEEP_DATA"):
        for d in store.glob("n*/data"):
            shutil.rmtree(d, ignore_errors=True)
    return results


def heal_all(db: DB, hist: History) -> None:
    db.net.heal()
    for n in list(db.nodes.values()):
        if n.paused:
            n.resume()
        if n.clock_file.exists():
            n.set_clock("+0")
        if not n.alive():
            n.start()
    hist.add("nemesis", "info", "stop", {"fault": "heal", "nodes": sorted(db.nodes)})


FIELDS = ["offset", "value", "timestamp", "origin_timestamp", "checksum", "headers_len"]


def first_difference(nodes: dict) -> dict | None:
    """Where final reads of one partition (node -> messages, each [offset, value, timestamp,
    origin_timestamp, checksum, headers_len]) first differ from the lowest node's: the node, the index,
    the offset and the field that differs with both nodes' values, or "length" when one read is a
    prefix of the other. None when all are identical."""
    ref = min(nodes, key=str)
    a = nodes[ref]
    for n in sorted(nodes, key=str):
        b = nodes[n]
        if n == ref or b == a:
            continue
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                for k in range(max(len(x), len(y))):
                    if k >= len(x) or k >= len(y) or x[k] != y[k]:
                        name = FIELDS[k] if k < len(FIELDS) else f"field {k}"
                        return {"nodes": [ref, n], "index": i, "offset": x[0], "field": name,
                                "values": [x[k] if k < len(x) else None, y[k] if k < len(y) else None]}
        return {"nodes": [ref, n], "index": min(len(a), len(b)), "field": "length", "values": [len(a), len(b)]}
    return None


def replica_events(hist: History, store: Path) -> None:
    """One "replica" event per partition: whether every node's final read of it is the same, record for
    record (offset, value, both timestamps, frame checksum, user headers length: with the message id,
    which the driver checks is the value, every byte of each message), and if not, where they first
    differ."""
    per: dict[int, dict[int, list]] = {}
    for ev in load(store / "history.jsonl"):
        if ev["f"] == "final_read" and ev["type"] == "ok":
            v = ev["value"]
            per.setdefault(v["partition"], {})[v["node"]] = v["messages"]
    for p, nodes in sorted(per.items()):
        digests = {n: hash(json.dumps(m)) & 0xFFFFFFFFFFFF for n, m in nodes.items()}
        diff = first_difference(nodes)
        ev = {"partition": p, "nodes": {str(k): f"{v:012x}" for k, v in digests.items()},
              "identical": diff is None, "records": max(len(m) for m in nodes.values()),
              "full": all(len(m) >= len(FIELDS) for ms in nodes.values() for m in ms)}
        if diff is not None:
            ev["difference"] = diff
        hist.add("checker", "info", "replica", ev)


def check(store: Path, extra: list[dict]) -> dict:
    from . import checker
    history = load(store / "history.jsonl")
    res = checker.check(history)
    res["checks"] = list(res.get("checks", [])) + extra
    res["passed"] = sum(1 for c in res["checks"] if c["passed"])
    res["failed"] = sum(1 for c in res["checks"] if not c["passed"])
    (store / "results.json").write_text(json.dumps(res, indent=1, default=str))
    try:
        from . import plot
        plot.timeline(history, store / "timeline.png")
    except Exception as e:  # the plot is a convenience; a failure to draw is reported, not fatal
        print(f"timeline not drawn: {e}", file=sys.stderr)
    if hasattr(checker, "print_table"):
        checker.print_table(res)
    else:
        for c in res["checks"]:
            print(f"  {'PASS' if c['passed'] else 'FAIL'}  {c['name']}  {c.get('count', '')}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="galgo_jepsen.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--matrix", choices=sorted(MATRICES), help="a predefined list of runs")
    ap.add_argument("--workload", default=os.environ.get("JEPSEN_WORKLOAD", ""))
    ap.add_argument("--nemesis", default=os.environ.get("JEPSEN_NEMESIS", ""))
    ap.add_argument("--time", type=float, default=float(os.environ.get("JEPSEN_TIME", "35")))
    ap.add_argument("--recover", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=int(os.environ["JEPSEN_SEED"]) if os.environ.get("JEPSEN_SEED") else None)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rate", type=float, default=60.0, help="sends per second over all producers")
    ap.add_argument("--interval", type=float, default=4.0, help="seconds between faults")
    ap.add_argument("--duration", type=float, default=6.0, help="seconds a fault lasts")
    ap.add_argument("--durability", default="fsync")
    ap.add_argument("--disk-mb", type=int, default=256,
                    help="with the diskfull nemesis: the size of each node's own file system (MiB)")
    ap.add_argument("--galgod", default=os.environ.get("GALGOD") or str(REPO / "build" / "galgod"))
    args = ap.parse_args(argv)

    why = hosts.usable()
    if why:
        print(f"jepsen: cannot run here: {why}", file=sys.stderr)
        return 2
    swept = hosts.sweep()
    if swept:
        print(f"removed leftovers of earlier runs: {', '.join(swept)}", flush=True)
    if args.workload or args.nemesis:
        runs = [(w, n) for w in (args.workload or "append").split(",") for n in (args.nemesis or "all").split(",")]
    else:
        runs = MATRICES[args.matrix or "default"]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    total_pass = total_fail = 0
    lines = []
    try:
        for i, (wl, nem) in enumerate(runs):
            res = one_run(args, wl, nem, seed + i)
            total_pass += res["passed"]
            total_fail += res["failed"]
            lines.append(f"{wl:8} {nem:10} seed {seed + i:<11} {res['passed']} passed, {res['failed']} failed")
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    print("\n== summary (JEPSEN_SEED=%d reproduces the matrix)" % seed)
    for line in lines:
        print("  " + line)
    print(f"{total_pass} passed, {total_fail} failed")
    return 0 if total_fail == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
