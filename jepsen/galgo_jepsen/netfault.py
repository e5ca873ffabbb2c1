"""Packet delay and packet loss inside a node's network namespace, each one undoable and observable.

The nemesis code uses three things from here:

  Delay(ns, ms, jitter_ms=0, peers=None, direction="in")
      start() runs galgo_jepsen.delayq inside the namespace, bound to an NFQUEUE of its own, then adds
      iptables rules in the namespace's mangle table that send the chosen packets to that queue with
      `--queue-bypass`. stop() removes the rules first (so nothing new is queued) and then ends the
      program with SIGTERM, on which it accepts every packet it still holds. The kernel of this machine
      has no netem qdisc, hence the user-space holder. With jitter each packet's hold time is drawn on its
      own, so packets reorder.
  Loss(ns, probability, peers=None, direction="in")
      start()/stop() add and remove `-m statistic --mode random --probability P -j DROP` rules in the
      namespace's filter table.
  cleanup(ns)
      removes every rule and holder program of this module from a namespace, whoever started them: for
      Ctrl-C, and at the start of a run to clear what a crashed run left.

`direction` is "in" (packets the namespace receives: INPUT, the default), "out" (packets it sends:
OUTPUT) or "both". To slow or thin a link between nodes, put the fault on the receiving side of each
direction ("in" in every namespace concerned) rather than on the sending side, because a fault on the
sending side is not what a slow or lossy wire looks like to the sender:
  - a packet held in the sender's OUTPUT hook is still charged to its socket, so TCP's small-queue limit
    and UDP's send buffer throttle the sender: a bulk TCP transfer between two namespaces here ran at
    about 0.6 MB/s with 10 ms "out" delay and 0.16 MB/s with 50 ms, against 280 MB/s and 51 MB/s with
    the same delay "in" (1.3 GB/s undelayed);
  - a packet dropped in OUTPUT makes the sending call fail with EPERM (UDP sendto, hence QUIC, sees
    "Operation not permitted"), whereas a lost packet on a wire is silent.
`peers` limits the fault to packets to (out) or from (in) those IPv4 addresses; None means every packet
except loopback traffic. Rules carry an iptables comment starting with "galgo-netfault", which is how
cleanup and leftovers() recognise them.

Where the rules go matters. A packet that comes back from an NFQUEUE with ACCEPT skips the rest of its
chain, so a delay rule in the filter table would let packets slip past partition DROP rules placed after
it. The delay rules therefore live in the mangle table, whose hooks run before the filter table's: a
delayed packet still meets every filter rule (partitions, Loss) afterwards. Loss rules are inserted at
the head of the filter chains.

Observation: a nemesis must show that its fault took effect. probe(ns, peer) pings a peer from the
namespace and returns the round-trip times and the loss rate. Each fault's start(probe=PEER) measures a
baseline to PEER before it installs anything, and observe() measures again while the fault is active and
compares: the added median RTT for Delay (and the spread, with jitter), the loss rate against the
binomial range expected for Loss. The Observation it returns has `ok`, an `effect` text and the numbers,
and history_value() gives the value of a history "observed" event.

Everything runs through `ip netns exec NS iptables ...` with the machine's default iptables (nft-based
on Debian 12), which works inside namespaces. Only IPv4 is handled.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import select
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TAG = "galgo-netfault"
DELAYQ_MODULE = "galgo_jepsen.delayq"
_PKG_PARENT = str(Path(__file__).resolve().parent.parent)  # the directory holding galgo_jepsen/
_DIRECTIONS = {"out": (("OUTPUT", "-o", "-d"),),
               "in": (("INPUT", "-i", "-s"),),
               "both": (("OUTPUT", "-o", "-d"), ("INPUT", "-i", "-s"))}


class NetfaultError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------- helpers

def _netns(ns: str, *cmd: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise NetfaultError(f"in netns {ns}: {' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def _iptables(ns: str, table: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _netns(ns, "iptables", "-w", "-t", table, *args, check=check)


def _rule_specs(direction: str, peers, match: list[str], target: list[str], tag: str):
    """(chain, spec) for every rule a fault needs; spec is what follows `-I CHAIN 1` / `-D CHAIN`."""
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(_DIRECTIONS)}, not {direction!r}")
    out = []
    for chain, lo_flag, addr_flag in _DIRECTIONS[direction]:
        for peer in (list(peers) if peers else [None]):
            spec = ["!", lo_flag, "lo"]
            if peer is not None:
                spec += [addr_flag, str(peer)]
            spec += match + ["-m", "comment", "--comment", tag] + target
            out.append((chain, spec))
    return out


def _our_rules(ns: str) -> list[tuple[str, list[str]]]:
    """(table, `-A ...` argument list) of every rule of this module in the namespace."""
    found = []
    for table in ("mangle", "filter"):
        r = _iptables(ns, table, "-S", check=False)
        if r.returncode != 0:
            continue
        for line in r.stdout.splitlines():
            if line.startswith("-A ") and TAG in line:
                found.append((table, shlex.split(line)))
    return found


def _our_pids(ns: str) -> list[int]:
    """Pids of holder programs (galgo_jepsen.delayq) running in the namespace."""
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    pids = []
    for tok in r.stdout.split():
        try:
            pid = int(tok)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (ValueError, OSError):
            continue
        if DELAYQ_MODULE.encode() in cmdline:
            pids.append(pid)
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def leftovers(ns: str) -> dict:
    """What of this module is present in the namespace: {"rules": [...], "pids": [...]}."""
    return {"rules": [f"-t {t} " + " ".join(shlex.quote(a) for a in args) for t, args in _our_rules(ns)],
            "pids": _our_pids(ns)}


def cleanup(ns: str, timeout: float = 5.0) -> dict:
    """Remove every rule and end every holder program of this module in `ns`. Returns what it removed."""
    removed = []
    for table, args in _our_rules(ns):
        r = _iptables(ns, table, "-D", *args[1:], check=False)
        if r.returncode == 0:
            removed.append(f"-t {table} " + " ".join(args))
    ended = []
    pids = _our_pids(ns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)  # it accepts what it holds and exits
        except ProcessLookupError:
            continue
        ended.append(pid)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return {"rules": removed, "pids": ended}


# ------------------------------------------------------------------------------------------ observation

@dataclass
class Probe:
    """Result of pinging one peer from a namespace."""
    ns: str
    peer: str
    sent: int
    received: int
    rtts_ms: list[float] = field(default_factory=list)   # by sequence number
    arrival: list[int] = field(default_factory=list)     # sequence numbers in the order replies came

    @property
    def reordered(self) -> int:
        """Replies that arrived after a reply to a later request."""
        n, top = 0, -1
        for seq in self.arrival:
            if seq < top:
                n += 1
            top = max(top, seq)
        return n

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 0.0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.rtts_ms) if self.rtts_ms else math.nan

    @property
    def stdev_ms(self) -> float:
        return statistics.pstdev(self.rtts_ms) if len(self.rtts_ms) > 1 else 0.0

    def summary(self) -> dict:
        r = self.rtts_ms
        return {"peer": self.peer, "sent": self.sent, "received": self.received,
                "loss": round(self.loss, 4),
                "rtt_min_ms": round(min(r), 3) if r else None,
                "rtt_median_ms": round(self.median_ms, 3) if r else None,
                "rtt_max_ms": round(max(r), 3) if r else None,
                "rtt_stdev_ms": round(self.stdev_ms, 3) if r else None,
                "reordered": self.reordered}


_PING_REPLY = re.compile(r"icmp_seq=(\d+) .*time=([\d.]+) ms")
_PING_SENT = re.compile(r"(\d+) packets transmitted")


def probe(ns: str, peer: str, count: int = 40, interval: float = 0.01, wait: float = 1.0) -> Probe:
    """Ping `peer` `count` times from namespace `ns`; a reply later than `wait` seconds counts as lost.

    Intervals under 0.2 s need root (ping refuses them otherwise). `-U` makes ping time each reply when
    it reaches the program: by default it uses the kernel's receive timestamp, taken before the INPUT
    hook, so a delay of incoming packets would not show."""
    cmd = ["ping", "-n", "-U", "-c", str(count), "-i", f"{interval:g}", "-W", f"{wait:g}", peer]
    r = _netns(ns, *cmd, check=False, timeout=count * interval + wait + 30)
    m = _PING_SENT.search(r.stdout)
    if not m:
        raise NetfaultError(f"ping from {ns} to {peer} failed: {r.stderr.strip() or r.stdout.strip()}")
    rtts: dict[int, float] = {}
    arrival: list[int] = []
    for line in r.stdout.splitlines():
        if "DUP!" in line:
            continue
        mm = _PING_REPLY.search(line)
        if mm and int(mm.group(1)) not in rtts:
            rtts[int(mm.group(1))] = float(mm.group(2))
            arrival.append(int(mm.group(1)))
    return Probe(ns, peer, int(m.group(1)), len(rtts), [rtts[k] for k in sorted(rtts)], arrival)


@dataclass
class Observation:
    """Whether a fault's effect was seen, with the numbers it was judged on."""
    fault: str
    ok: bool
    effect: str
    before: Probe
    after: Probe

    def history_value(self) -> dict:
        """Value of the history's nemesis "observed" event."""
        return {"fault": self.fault, "ok": self.ok, "effect": self.effect,
                "before": self.before.summary(), "after": self.after.summary()}


# --------------------------------------------------------------------------------------------- faults

class _Fault:
    kind = "fault"
    table = "filter"
    probe_count = 40

    def __init__(self, ns: str, peers=None, direction: str = "in") -> None:
        self.ns = ns
        self.peers = list(peers) if peers else None
        self.direction = direction
        self.tag = f"{TAG}:{self.kind}:{secrets.token_hex(4)}"
        self.rules: list[tuple[str, list[str]]] = []  # (chain, spec) installed
        self.baselines: dict[str, Probe] = {}
        _rule_specs(direction, self.peers, [], [], self.tag)  # validate arguments early

    @property
    def running(self) -> bool:
        return bool(self.rules)

    def _specs(self):
        raise NotImplementedError

    def _add_rules(self) -> None:
        try:
            for chain, spec in self._specs():
                _iptables(self.ns, self.table, "-I", chain, "1", *spec)
                self.rules.append((chain, spec))
        except Exception:
            self._remove_rules()
            raise

    def _remove_rules(self) -> list[str]:
        problems = []
        while self.rules:
            chain, spec = self.rules.pop()
            r = _iptables(self.ns, self.table, "-D", chain, *spec, check=False)
            if r.returncode != 0:
                problems.append(r.stderr.strip())
        return problems

    def _measure_baseline(self, probe_peers) -> None:
        if probe_peers is None:
            return
        for peer in ([probe_peers] if isinstance(probe_peers, str) else probe_peers):
            self.baselines[peer] = probe(self.ns, peer, count=self.probe_count)

    def _targets(self, peer: str) -> bool:
        return self.peers is None or peer in self.peers

    def _legs(self) -> int:
        """How many of a ping's two packets (request out, reply in) the fault touches."""
        return 2 if self.direction == "both" else 1

    def observe(self, peer: str | None = None, before: Probe | None = None,
                count: int | None = None) -> Observation:
        """Measure `peer` now and compare with `before` (default: the baseline start(probe=...) took)."""
        if peer is None:
            if len(self.baselines) != 1:
                raise ValueError("observe() needs a peer unless start() probed exactly one")
            peer = next(iter(self.baselines))
        if before is None:
            before = self.baselines.get(peer)
        if before is None:
            raise ValueError(f"no baseline for {peer}: pass before= or start(probe={peer!r})")
        if not self._targets(peer):
            raise ValueError(f"{peer} is not among the peers this fault applies to")
        after = probe(self.ns, peer, count=count or self.probe_count, wait=self._probe_wait())
        ok, effect = self._judge(before, after)
        return Observation(self.kind, ok, effect, before, after)

    def _probe_wait(self) -> float:
        """Seconds after which ping counts a reply as lost while the fault is active."""
        return 1.0

    def _judge(self, before: Probe, after: Probe) -> tuple[bool, str]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Details for the history's nemesis start/stop events."""
        return {"fault": self.kind, "ns": self.ns, "peers": self.peers, "direction": self.direction}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class Delay(_Fault):
    """Hold the namespace's packets for `ms` milliseconds (+- `jitter_ms`, drawn per packet)."""
    kind = "delay"
    table = "mangle"

    def __init__(self, ns: str, ms: float, jitter_ms: float = 0.0, peers=None, direction: str = "in",
                 queue: int | None = None, seed: int | None = None, exit_with_parent: bool = True) -> None:
        if ms < 0 or jitter_ms < 0:
            raise ValueError("ms and jitter_ms must not be negative")
        super().__init__(ns, peers, direction)
        self.ms = ms
        self.jitter_ms = jitter_ms
        self.queue = queue
        self.seed = seed
        self.exit_with_parent = exit_with_parent
        self.proc: subprocess.Popen | None = None
        self.stats: str | None = None

    def _specs(self):
        return _rule_specs(self.direction, self.peers, [],
                           ["-j", "NFQUEUE", "--queue-num", str(self.queue), "--queue-bypass"], self.tag)

    def _free_queue(self) -> int:
        used = set()
        for _, args in _our_rules(self.ns):
            if "--queue-num" in args:
                used.add(int(args[args.index("--queue-num") + 1]))
        q = 100
        while q in used:
            q += 1
        return q

    def start(self, probe=None, ready_timeout: float = 20.0) -> "Delay":
        """Start the holder, then the rules. probe: peer IP(s) whose RTT to measure first as baseline."""
        if self.proc is not None:
            raise NetfaultError("delay already started")
        self._measure_baseline(probe)
        if self.queue is None:
            self.queue = self._free_queue()
        cmd = ["ip", "netns", "exec", self.ns, sys.executable, "-m", DELAYQ_MODULE,
               "--queue", str(self.queue), "--ms", f"{self.ms:g}", "--jitter", f"{self.jitter_ms:g}"]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        if self.exit_with_parent:
            cmd += ["--exit-with-parent"]
        env = dict(os.environ)
        env["PYTHONPATH"] = _PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, start_new_session=True)  # Ctrl-C goes to us, not to it
        line = ""
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if readable:
                line = self.proc.stdout.readline()
                break
            if self.proc.poll() is not None:
                break
        if not line.startswith("ready"):
            self._end_proc(timeout=2.0)
            raise NetfaultError(f"delayq did not start in {self.ns}: {self.stats or 'no output'}")
        try:
            self._add_rules()
        except Exception:
            self._end_proc()
            raise
        return self

    def _end_proc(self, timeout: float = 5.0) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        lines = [ln for ln in (out or "").splitlines() if ln.startswith("stats")]
        self.stats = lines[-1] if lines else (err or "").strip()[-500:] or f"exit {p.returncode}"

    def stop(self) -> None:
        """Remove the rules, then end the holder (it releases every packet it holds)."""
        problems = self._remove_rules()
        self._end_proc()
        if problems:
            raise NetfaultError(f"delay rules in {self.ns} could not be removed: {problems}")

    def _probe_wait(self) -> float:
        return max(1.0, 1.5 * (self.ms + self.jitter_ms) * self._legs() / 1000.0 + 0.5)

    def _judge(self, before: Probe, after: Probe) -> tuple[bool, str]:
        if not after.rtts_ms:
            return False, f"no reply from {after.peer} while delayed"
        expected = self.ms * self._legs()
        added = after.median_ms - before.median_ms
        ok = added >= 0.8 * expected
        effect = (f"median RTT to {after.peer} {before.median_ms:.2f} -> {after.median_ms:.2f} ms "
                  f"(+{added:.1f}, expected +{expected:g})")
        if self.jitter_ms > 0:
            # uniform +-j has a standard deviation of j/sqrt(3) per leg
            want = 0.5 * self.jitter_ms / math.sqrt(3)
            ok = ok and after.stdev_ms >= want
            effect += f", RTT stdev {before.stdev_ms:.2f} -> {after.stdev_ms:.2f} ms (want >= {want:.1f})"
        return ok, effect

    def describe(self) -> dict:
        return {**super().describe(), "ms": self.ms, "jitter_ms": self.jitter_ms, "queue": self.queue}


class Loss(_Fault):
    """Drop each of the namespace's packets with probability `probability`."""
    kind = "loss"
    table = "filter"
    probe_count = 200

    def __init__(self, ns: str, probability: float, peers=None, direction: str = "in") -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        super().__init__(ns, peers, direction)
        self.probability = probability

    def _specs(self):
        return _rule_specs(self.direction, self.peers,
                           ["-m", "statistic", "--mode", "random", "--probability", f"{self.probability:.6f}"],
                           ["-j", "DROP"], self.tag)

    def start(self, probe=None) -> "Loss":
        if self.rules:
            raise NetfaultError("loss already started")
        self._measure_baseline(probe)
        self._add_rules()
        return self

    def stop(self) -> None:
        problems = self._remove_rules()
        if problems:
            raise NetfaultError(f"loss rules in {self.ns} could not be removed: {problems}")

    def expected_loss(self) -> float:
        """Loss rate a ping should see: a request or reply touched by the fault is dropped with P."""
        return 1.0 - (1.0 - self.probability) ** self._legs()

    def _judge(self, before: Probe, after: Probe) -> tuple[bool, str]:
        p = self.expected_loss()
        n = max(after.sent, 1)
        tol = 4.0 * math.sqrt(p * (1.0 - p) / n) + 0.02  # about four standard deviations of a binomial
        ok = abs(after.loss - p) <= tol and (p == 0 or after.loss > before.loss)
        effect = (f"loss to {after.peer} {before.loss:.1%} -> {after.loss:.1%} over {after.sent} pings "
                  f"(expected {p:.1%} +- {tol:.1%})")
        return ok, effect

    def describe(self) -> dict:
        return {**super().describe(), "probability": self.probability}
