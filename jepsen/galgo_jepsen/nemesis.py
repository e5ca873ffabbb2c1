"""Nemeses: the faults the suite injects, each one observable.

A fault has start() (returns what it did, for the history), stop() (undoes it: heals, restarts,
resumes) and observed() -> (ok, effect): whether its effect was seen. A fault whose effect cannot be
seen fails the run's "nemesis observed" check, so a nemesis that silently does nothing (a rule that did
not apply, a signal to a dead process) cannot pass for a tested fault.

  kill        kill -9 of one node, or of a majority (2 of 3); restarted at stop.
              Seen: the process ended by SIGKILL, and it listens again after the restart.
  pause       SIGSTOP of one node, preferring a partition leader; SIGCONT at stop.
              Seen: the node stopped answering /metrics while paused, and some Raft group on another node
              moved to a higher term (an election) when the paused node led one.
  restart     SIGTERM (graceful) of one node, started again at once.
              Seen: it exited with status 0 and listens again.
  partition   iptables drops between nodes: one node isolated, a majority/minority split, a bridge (one
              node sees both halves, the halves not each other), or one-way drops from one node.
              Seen: ping across the cut fails (one-way: the rules are in place), and heal restores it.
  delay/loss  NFQUEUE delay (100 ms +- 50) or 20% random loss on one node's outgoing packets (netfault).
              Seen: measured RTT or loss from that node.
  clock       the wall clock of one node jumps or drifts (libfaketime; +-250 ms .. +-60 s; the monotonic
              clock is untouched). Seen: another node's galgo_clock_offset_seconds for it.
  powerloss   one node, or (one time in three) every node at once, loses every write it did not
              fdatasync (jepsen/powerloss), as in a power cut, then starts again. Seen: each exited 137
              through the shim, with its report.
  powerswap   the schedule that lost acknowledged writes in NATS JetStream: SIGSTOP of a minority (A),
              2 s of writes to the rest, a power cut (as powerloss) of one of the rest (B), started again
              at once, then SIGCONT of A and SIGSTOP of as many others (C), so A and B, one stale and one
              that lost what it had not synced, make the majority; C resumes at stop.
              Seen: A and C stopped answering while paused; B exited 137 through the shim, with its
              report, and listens again.
  diskfull    one node's data directory (on a small file system of its own, hosts.Net.mount_disk) runs
              out of space: a filler file takes every free byte; removed at stop.
              Seen: the file system's free space is 0 once filled and above 0 after; the node's log
              lines naming the full disk or a failed write are counted in the effect.
  corrupt     one node is stopped, bytes of one of its files are damaged (a flipped byte in the middle of a
              partition segment, a truncated segment, a flipped byte of an index, of a snapshot, or of one
              copy of raft.meta), and it starts again. Seen: the file changed; the checker verifies that
              no damaged record was served and the replicas end identical.
  member      membership under load: remove a node (the metadata leader, or another), then add it back as a
              new member; or add a spare node and remove it. Seen: the roster (galgo-admin nodes) changed.
"""

from __future__ import annotations

import errno
import os
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from . import hosts
from .db import DB, RAFT_PORT, TCP_PORT, QUIC_PORT, HTTP_PORT, parse_metrics
from .history import History


class Fault:
    name = "fault"

    def __init__(self, db: DB, rng: random.Random):
        self.db = db
        self.net = db.net
        self.rng = rng
        self._ok = False
        self._effect = "not started"

    def start(self) -> dict:
        raise NotImplementedError

    def stop(self) -> dict:
        return {}

    def observed(self) -> tuple[bool, str]:
        return self._ok, self._effect

    def _see(self, ok: bool, effect: str) -> None:
        self._ok, self._effect = ok, effect

    # helpers
    def live(self) -> list[int]:
        return [n for n, x in self.db.nodes.items() if x.alive() and not x.paused]

    def leaders(self) -> dict[int, int]:
        """node → how many Raft groups it leads (by its own metrics)."""
        out = {}
        for n in self.live():
            m = parse_metrics(self.db.nodes[n].metrics())
            out[n] = int(sum(v for _, v in m.get("galgo_raft_leader", [])))
        return out


def _wait(cond, timeout: float, step: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


class Kill(Fault):
    name = "kill"

    def start(self):
        live = self.live()
        k = 1 if self.rng.random() < 0.7 or len(live) < 3 else len(self.db.nodes) // 2 + 1
        self.targets = self.rng.sample(live, min(k, len(live)))
        codes = {}
        for n in self.targets:
            self.db.nodes[n].kill()
            codes[n] = self.db.nodes[n].proc.returncode
        ok = all(c == -signal.SIGKILL for c in codes.values())
        self._see(ok, f"exit codes {codes}")
        return {"nodes": self.targets}

    def stop(self):
        for n in self.targets:
            self.db.nodes[n].start()
        back = _wait(lambda: all(self.db.nodes[n].listening() for n in self.targets), 30)
        self._see(self._ok and back, self._effect + ("; listening again" if back else "; NOT listening after restart"))
        return {"nodes": self.targets}


class Pause(Fault):
    name = "pause"

    def start(self):
        led = self.leaders()
        live = self.live()
        self.terms0 = self.db.terms()
        cands = [n for n in live if led.get(n, 0) > 0] or live
        self.target = self.rng.choice(cands)
        self.was_leader = led.get(self.target, 0) > 0
        self.db.nodes[self.target].pause()
        return {"nodes": [self.target], "led_groups": led.get(self.target, 0)}

    def _moved(self) -> bool:
        return any(v > self.terms0.get(k, v) for k, v in self.db.terms().items() if k[0] != self.target)

    def stop(self):
        silent = self.db.nodes[self.target].metrics(timeout=1.0) is None
        moved = self._moved()
        if self.was_leader and not moved:
            # a pause cut short by the end of the run may end before any election timeout passed: it
            # stays paused (at most 10 s more) until the others have elected, so its effect is seen
            moved = _wait(self._moved, 10, step=0.2)
        self.db.nodes[self.target].resume()
        ok = silent and (moved or not self.was_leader)
        self._see(ok, f"paused node silent: {silent}; election elsewhere: {moved} (it led groups: {self.was_leader})")
        return {"nodes": [self.target]}


class Restart(Fault):
    name = "restart"

    def start(self):
        self.target = self.rng.choice(self.live())
        st = self.db.nodes[self.target].stop()
        self.db.nodes[self.target].start()
        back = _wait(lambda: self.db.nodes[self.target].listening(), 30)
        self._see(st == 0 and back, f"exit status {st}; listening again: {back}")
        return {"nodes": [self.target], "exit": st}


class Partition(Fault):
    name = "partition"

    def start(self):
        nodes = sorted(self.db.nodes)
        mode = self.rng.choice(["isolate", "halves", "bridge", "oneway"])
        if len(nodes) < 3 and mode in ("halves", "bridge"):
            mode = "isolate"
        shuffled = nodes[:]
        self.rng.shuffle(shuffled)
        self.mode = mode
        self.cut: list[tuple[int, int]] = []  # pairs that must not reach each other
        if mode == "isolate":
            a, rest = shuffled[0], shuffled[1:]
            self.net.partition([[a], rest])
            self.cut = [(a, b) for b in rest]
            desc = {"groups": [[a], rest]}
        elif mode == "halves":
            k = len(shuffled) // 2
            g1, g2 = shuffled[:k], shuffled[k:]
            self.net.partition([g1, g2])
            self.cut = [(a, b) for a in g1 for b in g2]
            desc = {"groups": [g1, g2]}
        elif mode == "bridge":
            b = shuffled[0]
            rest = shuffled[1:]
            k = len(rest) // 2
            g1, g2 = rest[:k] or rest[:1], rest[k:]
            for x in g1:
                for y in g2:
                    self.net.drop(x, y, "in")
                    self.net.drop(y, x, "in")
            self.cut = [(x, y) for x in g1 for y in g2]
            desc = {"bridge": b, "sides": [g1, g2]}
        else:
            a, b = shuffled[0], shuffled[1]
            self.net.drop(a, b, "out")
            self.cut = []
            self.oneway = (a, b)
            desc = {"from": a, "to": b}
        ok = True
        if self.cut:
            x, y = self.cut[0]
            ok = not hosts.ping(self.net, x, y)
            eff = f"ping {x}->{y} across the cut {'fails' if ok else 'STILL WORKS'}"
        else:
            a, b = self.oneway
            ok = self.net.fault_rules(a) > 0 and not hosts.ping(self.net, a, b)
            eff = f"node {a} drops what it sends to {b}: {ok}"
        self._see(ok, eff)
        return {"mode": mode, **desc}

    def stop(self):
        self.net.heal()
        if self.cut:
            x, y = self.cut[0]
            healed = _wait(lambda: hosts.ping(self.net, x, y), 5)
        else:
            healed = hosts.ping(self.net, *self.oneway)
        self._see(self._ok and healed, self._effect + ("; healed" if healed else "; NOT healed"))
        return {"mode": self.mode}


class Clock(Fault):
    name = "clock"

    def start(self):
        self.target = self.rng.choice(sorted(self.db.nodes))
        mag = self.rng.choice([0.25, 2, 30, 60])
        self.offset = mag * self.rng.choice([-1, 1])
        self.db.nodes[self.target].set_clock(f"{self.offset:+g}s")
        return {"nodes": [self.target], "offset_s": self.offset}

    def _measured(self) -> float | None:
        for n in self.live():
            if n == self.target:
                continue
            for labels, v in parse_metrics(self.db.nodes[n].metrics()).get("galgo_clock_offset_seconds", []):
                if labels.get("peer") == str(self.target):
                    return v
        return None

    def stop(self):
        def close():
            m = self._measured()
            return m is not None and abs(m - self.offset) < max(0.2, abs(self.offset) * 0.2)
        seen = _wait(close, 6)
        m = self._measured()
        self.db.nodes[self.target].set_clock("+0")
        self._see(seen, f"offset set {self.offset:+g} s, measured by a peer {m}")
        return {"nodes": [self.target]}


class Powerloss(Fault):
    """One node (two times in three), or every node at once, loses what it did not fdatasync."""
    name = "powerloss"

    def start(self):
        live = self.live()
        self.targets = live if (len(live) > 1 and self.rng.random() < 1 / 3) else [self.rng.choice(live)]
        nodes = [self.db.nodes[n] for n in self.targets]
        for node in nodes:
            try:
                node.powerloss_report.unlink()
            except FileNotFoundError:
                pass
        for node in nodes:  # as close to one instant as files allow
            node.powerloss_trigger.write_text("now\n")
        exited = _wait(lambda: all(not node.alive() for node in nodes), 10)
        codes, reports = {}, {}
        for node in nodes:
            codes[node.id] = node.proc.returncode if not node.alive() else None
            if node.alive():
                node.kill()
            reports[node.id] = node.powerloss_report.read_text().strip() if node.powerloss_report.exists() else ""
        ok = exited and all(c == 137 for c in codes.values()) and all(reports.values())
        self._see(ok, f"exit {codes}; shim reports {reports}")
        return {"nodes": self.targets, "reports": {k: v[:300] for k, v in reports.items()}}

    def stop(self):
        for n in self.targets:
            self.db.nodes[n].start()
        back = _wait(lambda: all(self.db.nodes[n].listening() for n in self.targets), 30)
        if not back:
            self._see(False, self._effect + "; not listening after restart")
        return {"nodes": self.targets}


def _power_cut(node, timeout: float = 10.0) -> tuple[int | None, str]:
    """Cuts one node's power through the shim: (its exit status, the shim's report). A node the shim did
    not stop within `timeout` is killed (and its status is then not 137)."""
    try:
        node.powerloss_report.unlink()
    except FileNotFoundError:
        pass
    node.powerloss_trigger.write_text("now\n")
    _wait(lambda: not node.alive(), timeout)
    code = node.proc.returncode if not node.alive() else None
    if node.alive():
        node.kill()
    report = node.powerloss_report.read_text().strip() if node.powerloss_report.exists() else ""
    return code, report


class Powerswap(Fault):
    """Pause a minority (A), let writes pile up on the rest, cut the power of one of the rest (B) and start
    it again, then resume A and pause as many others (C): the majority is now A, which missed the writes,
    and B, which lost whatever it had not synced. C resumes at stop."""
    name = "powerswap"
    pile_s = 2.0

    def start(self):
        live = sorted(self.live())
        if len(live) < 3 or len(live) < len(self.db.nodes):
            self._see(False, f"needs every node up (live {live})")
            return {"nodes": []}
        k = (len(live) - 1) // 2
        order = live[:]
        self.rng.shuffle(order)
        self.a, self.b, self.c = order[:k], order[k], order[k + 1:2 * k + 1]
        self.paused: list[int] = []
        for n in self.a:
            self.db.nodes[n].pause()
            self.paused.append(n)
        time.sleep(0.5)
        silent_a = all(self.db.nodes[n].metrics(timeout=1.0) is None for n in self.a)
        time.sleep(self.pile_s)  # the writes go on to the others
        code, report = _power_cut(self.db.nodes[self.b])
        self.db.nodes[self.b].start()
        back = _wait(self.db.nodes[self.b].listening, 30)
        for n in self.a:
            self.db.nodes[n].resume()
            self.paused.remove(n)
        for n in self.c:
            self.db.nodes[n].pause()
            self.paused.append(n)
        time.sleep(0.5)
        silent_c = all(self.db.nodes[n].metrics(timeout=1.0) is None for n in self.c)
        ok = silent_a and code == 137 and bool(report) and back and silent_c
        self._see(ok, f"paused {self.a} silent: {silent_a}; power cut of {self.b}: exit {code}, shim report "
                      f"{report[:200]!r}; listening again: {back}; then paused {self.c} silent: {silent_c}")
        return {"nodes": sorted(live), "paused_first": self.a, "power_cut": self.b, "paused_then": self.c,
                "exit": code, "report": report[:300]}

    def stop(self):
        for n in list(getattr(self, "paused", [])):
            self.db.nodes[n].resume()
        self.paused = []
        return {"nodes": getattr(self, "c", [])}


class Diskfull(Fault):
    """One node's file system (hosts.Net.mount_disk) filled up by a filler file next to its data
    directory; the filler removed at stop."""
    name = "diskfull"

    def _free(self) -> int:
        st = os.statvfs(self.disk)
        return st.f_bavail * st.f_frsize

    def _log_size(self) -> int:
        try:
            return self.db.nodes[self.target].log.stat().st_size
        except (FileNotFoundError, KeyError):
            return 0

    def start(self):
        self.target = self.rng.choice(self.live())
        node = self.db.nodes[self.target]
        self.disk = node.disk
        self.filler = node.disk / "filler"
        if not os.path.ismount(self.disk):
            self._see(False, f"node {self.target}'s data is not on a disk of its own")
            return {"nodes": [self.target]}
        self.log_from = self._log_size()
        before = self._free()
        chunk = b"\0" * (1 << 20)
        filled = 0
        with open(self.filler, "wb", buffering=0) as f:
            while True:
                try:
                    filled += f.write(chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
                if filled > (1 << 34):  # never: a tmpfs has a size
                    break
        after = self._free()
        self._see(after == 0, f"node {self.target}: {before >> 10} KiB free, filler {filled >> 10} KiB, "
                              f"then {after >> 10} KiB free")
        return {"nodes": [self.target], "free_before": before, "filler": filled, "free_after": after}

    def _refused(self) -> list[str]:
        """The node's log lines since the fault began that name a full disk or a failed write."""
        node = self.db.nodes.get(self.target)
        if node is None:
            return []
        with open(node.log, "rb") as f:
            f.seek(self.log_from)
            text = f.read().decode(errors="replace")
        return [line for line in text.splitlines()
                if re.search(r"no space|ENOSPC|write.*fail|fail.*write|sync.*fail", line, re.I)]

    def stop(self):
        try:
            self.filler.unlink()
        except (FileNotFoundError, AttributeError):
            pass
        if not hasattr(self, "disk") or not os.path.ismount(self.disk):
            return {"nodes": [self.target]}
        freed = self._free()
        refused = self._refused()
        ok = self._ok and freed > 0
        self._see(ok, self._effect + f"; freed: {freed >> 10} KiB free; node log lines naming the full disk: "
                                     f"{len(refused)}" + (f" (first: {refused[0][:200]!r})" if refused else ""))
        return {"nodes": [self.target], "free": freed, "log_lines": len(refused)}


class Corrupt(Fault):
    name = "corrupt"

    def _files(self, data: Path, kind: str) -> list[Path]:
        if kind in ("segment-flip", "segment-truncate"):
            return [p for p in data.glob("partitions/*/*.log") if p.stat().st_size > 4096]
        if kind == "index":
            return [p for p in data.glob("partitions/*/*.oix") if p.stat().st_size > 32]
        if kind == "snapshot":
            return [p for p in data.glob("raft/snap/*/snapshot") if p.stat().st_size > 64]
        if kind == "raft.meta":
            p = data / "raft" / "raft.meta"
            return [p] if p.exists() and p.stat().st_size >= 64 else []
        return []

    def start(self):
        self.target = self.rng.choice(self.live())
        node = self.db.nodes[self.target]
        node.stop()
        kinds = ["segment-flip", "segment-flip", "segment-truncate", "index", "snapshot", "raft.meta"]
        self.rng.shuffle(kinds)
        for kind in kinds:
            files = self._files(node.data, kind)
            if files:
                break
        else:
            node.start()
            self._see(False, "no file to damage")
            return {"nodes": [self.target], "kind": None}
        f = self.rng.choice(sorted(files))
        size = f.stat().st_size
        before = f.read_bytes()
        if kind == "segment-truncate":
            cut = self.rng.randrange(64 + (size - 64) // 4, size - 1)
            os.truncate(f, cut)
            what = f"truncated {size} -> {cut}"
        elif kind == "raft.meta":
            # raft.meta holds two copies; damage only one (both damaged is an operator's case:
            # cluster.salvage_votes, tested in tests/proc/test_cluster.c)
            half = size // 2
            pos = self.rng.randrange(0, half)
            self._flip(f, pos)
            what = f"flipped byte {pos} of one copy"
        else:
            lo = 64 if kind.startswith("segment") else 0
            pos = self.rng.randrange(lo + (size - lo) // 4, size - (size - lo) // 4)
            n = self.rng.randint(1, 4)
            for i in range(n):
                self._flip(f, min(size - 1, pos + i))
            what = f"flipped {n} byte(s) at {pos}"
        changed = f.read_bytes() != before
        node.start()
        self._see(changed, f"{kind} {f.relative_to(node.data)}: {what}")
        return {"nodes": [self.target], "kind": kind, "file": str(f.relative_to(node.data)), "what": what}

    @staticmethod
    def _flip(f: Path, pos: int) -> None:
        with open(f, "r+b") as fh:
            fh.seek(pos)
            b = fh.read(1)
            fh.seek(pos)
            fh.write(bytes([b[0] ^ 0x5A]))

    def stop(self):
        node = self.db.nodes[self.target]
        back = _wait(node.listening, 30)
        if not back:
            self._see(False, self._effect + "; not listening after restart")
            return {"nodes": [self.target]}
        # what the node itself reports of the damage (informational: a damaged tail past the recovery
        # point is cut without being counted, and the check that matters is that nothing damaged is
        # served and the replicas end identical)
        m = parse_metrics(node.metrics())
        repairs = sum(v for _, v in m.get("galgo_partition_repairs_total", []))
        damaged = sum(v for _, v in m.get("galgo_partition_damaged_records", []))
        self._see(self._ok, self._effect + f"; node reports repairs {repairs:g}, damaged records {damaged:g}")
        return {"nodes": [self.target], "repairs": repairs, "damaged_records": damaged}


class NetFault(Fault):
    """delay or loss on what one node receives from its peers (netfault.py: "in", so senders are not
    throttled by held packets and UDP senders see no errors, as on a real lossy link)."""

    def __init__(self, db, rng, kind: str):
        super().__init__(db, rng)
        self.kind = kind
        self.name = kind

    def start(self):
        from . import netfault
        self.target = self.rng.choice(sorted(self.db.nodes))
        ns = self.net.ns(self.target)
        peers = [self.net.ip(n) for n in sorted(self.db.nodes) if n != self.target]
        if self.kind == "delay":
            self.f = netfault.Delay(ns, 100, jitter_ms=50, peers=peers)
        else:
            self.f = netfault.Loss(ns, 0.2, peers=peers)
        self.f.start(probe=peers[0])
        try:
            o = self.f.observe(peers[0])
            self._see(o.ok, o.effect)
        except Exception as e:  # an observation that fails is an unseen fault
            self._see(False, f"observation failed: {e}")
        return {"nodes": [self.target], **{k: v for k, v in self.f.describe().items() if k != "fault"}}

    def stop(self):
        self.f.stop()
        return {"nodes": [self.target]}


class Member(Fault):
    name = "member"

    def __init__(self, db, rng):
        super().__init__(db, rng)
        self.removed = False
        self.target = None

    def admin(self, *args: str) -> tuple[int, str]:
        servers = [self.db.nodes[n].tcp for n in self.live()]
        last = (2, "no live node")
        for s in servers:
            p = subprocess.run([str(self.db.galgo_admin), "--server", s, *args], capture_output=True, text=True,
                               timeout=30)
            last = (p.returncode, p.stdout + p.stderr)
            if p.returncode == 0:
                return last
        return last

    def members(self) -> set[int] | None:
        """The roster as a node lists it, or None when no node could say (no metadata leader reachable)."""
        rc, out = self.admin("nodes")
        # "  ID  HOST  tcp ..." lines between the "nodes" heading and "metadata leader:"
        if rc != 0:
            return None
        return {int(m) for m in re.findall(r"^  (\d+)  \S+  tcp ", out, re.M)}

    def _dropped(self) -> bool:
        m = self.members()
        return m is not None and self.target not in m

    def start(self):
        before = self.members() or set()
        meta = {n: self.db.meta_leader(self.db.nodes[n]) for n in self.live()}
        leader = next((v for v in meta.values() if v), None)
        cands = sorted(n for n in before if n in self.db.nodes)
        self.target = leader if (leader in cands and self.rng.random() < 0.5) else self.rng.choice(cands)
        rc, out = self.admin("remove-node", str(self.target))
        # The removal completes once the node's replicas have moved: wait until a roster read shows it gone.
        # Until then the node is still needed (its replicas may be part of a quorum) and it keeps running;
        # a roster that cannot be read (another fault took the metadata's quorum) proves nothing.
        self.removed = rc == 0 and _wait(self._dropped, 30, step=1.0)
        after = self.members()
        shown = sorted(after) if after is not None else "unreadable"
        pending = rc == 0 and not self.removed
        # With another node down (another fault), Galgo refuses a removal that would leave the nodes left
        # without a live majority (10063) and changes nothing: a correct answer, if the roster still holds it.
        refused = rc != 0 and "refused: 10063" in out
        kept = refused and after is not None and self.target in after
        self._see(rc == 0 or kept, f"remove-node {self.target}: rc {rc}" +
                  (" (10063: the nodes left would have no live majority)" if refused else "") +
                  f"; roster {shown}" + ("; not yet complete (the node keeps running)" if pending else ""))
        return {"nodes": [self.target], "was_meta_leader": self.target == leader, "rc": rc, "pending": pending,
                "refused": refused, "out": out[-300:]}

    def stop(self):
        if not self.removed:
            return {"nodes": [self.target]}
        # the removed node comes back as a new, empty member with a new id
        old = self.db.nodes.pop(self.target)
        old.kill()
        new_id = max(max(self.db.nodes), max(self.net.nodes)) + 1
        self.net.add_host(new_id)
        node = self.db.add_node(new_id)
        self.db.replaced[self.target] = new_id
        node.join = True
        node.start()
        ip = self.net.ip(new_id)
        ok = _wait(node.listening, 20)
        rc, out = self.admin("add-node", str(new_id), ip, str(RAFT_PORT), str(TCP_PORT), str(QUIC_PORT),
                             str(HTTP_PORT))
        if rc == 0:
            _wait(lambda: new_id in (self.members() or ()), 20, step=1.0)
        after = self.members() or set()
        good = ok and rc == 0 and new_id in after
        self._see(self._ok and good, self._effect + f"; add-node {new_id}: rc {rc}; roster {sorted(after)}")
        return {"nodes": [new_id], "replaces": self.target, "rc": rc}


FAULTS = {
    "kill": Kill,
    "pause": Pause,
    "restart": Restart,
    "partition": Partition,
    "clock": Clock,
    "powerloss": Powerloss,
    "powerswap": Powerswap,
    "diskfull": Diskfull,
    "corrupt": Corrupt,
    "member": Member,
    "delay": lambda db, rng: NetFault(db, rng, "delay"),
    "loss": lambda db, rng: NetFault(db, rng, "loss"),
}


class Nemesis(threading.Thread):
    """Runs faults one after another until stopped: wait `interval`, start one fault of `names` (chosen at
    random), hold it `duration`, stop it. Each start, stop and observation goes into the history."""

    def __init__(self, db: DB, history: History, names: list[str], rng: random.Random,
                 interval: float = 5.0, duration: float = 8.0):
        super().__init__(daemon=True)
        self.db, self.history, self.names, self.rng = db, history, names, rng
        self.interval, self.duration = interval, duration
        self.done = threading.Event()
        self.error: str | None = None
        self.count = 0

    def run(self):
        try:
            while not self.done.wait(self.interval):
                name = self.rng.choice(self.names)
                f = FAULTS[name](self.db, self.rng)
                started = False
                try:
                    det = f.start()
                    started = True
                    self.history.add("nemesis", "info", "start", {"fault": name, **det})
                    self.done.wait(self.duration)
                finally:
                    det = {}
                    err = None
                    try:
                        det = f.stop() if started else {}
                    except Exception as e:
                        err = f"stop failed: {type(e).__name__}: {e}"
                    self.history.add("nemesis", "info", "stop", {"fault": name, **det})
                    ok, eff = f.observed()
                    if err or not started:
                        ok, eff = False, err or f"start failed; {eff}"
                    self.history.add("nemesis", "info", "observed", {"fault": name, "ok": ok, "effect": eff})
                    self.count += 1
        except Exception as e:  # the run fails with this recorded
            self.error = f"{type(e).__name__}: {e}"
            self.history.add("nemesis", "info", "observed", {"fault": "nemesis", "ok": False,
                                                             "effect": f"nemesis crashed: {self.error}"})
