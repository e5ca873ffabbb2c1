"""The database under test: one galgod per host, started inside the host's network namespace.

Node I listens on its own address 10.x.y.I with the same ports on every node (TCP 8090, QUIC 8080,
HTTP 3000, node-to-node 8400), has its data in <store>/nI/data (with a disk size, in <store>/nI/disk/data
on a file system of its own, hosts.Net.mount_disk; `keep_data` copies it to <store>/nI/data) and logs (stdout and stderr, every start
appended, each start preceded by a marker line) to <store>/nI/galgod.log.

`ip netns exec` replaces itself with the program, so the Popen pid is galgod's pid: signals (kill -9,
SIGSTOP/SIGCONT, SIGTERM) go straight to it.

A node's environment can carry preloaded libraries, set per start:
  - the clock: libfaketime with FAKETIME_TIMESTAMP_FILE=<store>/nI/faketime (an offset such as "+0",
    "+30s", "-1h" that the clock nemesis rewrites while galgod runs; re-read every second) and
    FAKETIME_DONT_FAKE_MONOTONIC=1, so only the wall clock moves, as an NTP step or a bad RTC does;
  - power loss: libgalgo-powerloss.so (jepsen/powerloss/) tracking the data directory; the power-loss
    nemesis creates the trigger file and the shim undoes every write not made durable, then exits 137.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from .hosts import Net

TCP_PORT, QUIC_PORT, HTTP_PORT, RAFT_PORT = 8090, 8080, 3000, 8400
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class Node:
    def __init__(self, db: "DB", node_id: int):
        self.db = db
        self.id = node_id
        self.dir = db.store / f"n{node_id}"
        self.disk = self.dir / "disk"  # with a disk size: the mount point of this node's own file system
        self.data = self.disk / "data" if db.disk_mb else self.dir / "data"
        self.log = self.dir / "galgod.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.paused = False
        self.clock_file = self.dir / "faketime"
        self.powerloss_trigger = self.dir / "powerloss.trigger"
        self.powerloss_report = self.dir / "powerloss.report"
        self.join = False  # cluster.join=true: a node added at run time

    @property
    def ip(self) -> str:
        return self.db.net.ip(self.id)

    @property
    def tcp(self) -> str:
        return f"{self.ip}:{TCP_PORT}"

    @property
    def quic(self) -> str:
        return f"{self.ip}:{QUIC_PORT}"

    @property
    def http(self) -> str:
        return f"http://{self.ip}:{HTTP_PORT}"

    def argv(self) -> list[str]:
        a = [str(self.db.galgod), f"--node.id={self.id}", f"--node.data_dir={self.data}",
             f"--tcp.address={self.ip}:{TCP_PORT}", f"--quic.address={self.ip}:{QUIC_PORT}",
             f"--http.address={self.ip}:{HTTP_PORT}", f"--cluster.nodes={self.db.roster()}",
             f"--cluster.listen={self.ip}:{RAFT_PORT}", "--with-default-root-credentials",
             f"--storage.durability={self.db.durability}"]
        if self.join:
            a.append("--cluster.join=true")
        a += self.db.extra_args
        return a

    def env(self, clock: bool, powerloss: bool) -> dict:
        e = dict(os.environ)
        e["GALGO_CLUSTER_SECRET"] = self.db.secret
        pre = []
        if clock:
            if not self.clock_file.exists():
                self.clock_file.write_text("+0\n")
            pre.append(FAKETIME_LIB)
            e["FAKETIME_TIMESTAMP_FILE"] = str(self.clock_file)
            e["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            e["FAKETIME_CACHE_DURATION"] = "1"
        if powerloss and self.db.powerloss_lib:
            pre.append(str(self.db.powerloss_lib))
            e["GALGO_POWERLOSS_DIR"] = str(self.data)
            e["GALGO_POWERLOSS_TRIGGER"] = str(self.powerloss_trigger)
            e["GALGO_POWERLOSS_REPORT"] = str(self.powerloss_report)
            e["GALGO_POWERLOSS_STRICT_DIRS"] = "1"  # a new directory needs its parent synced (POSIX)
        if pre:
            e["LD_PRELOAD"] = ":".join(pre)
        return e

    def start(self) -> None:
        assert not self.alive(), f"node {self.id} already running"
        if self.db.disk_mb:
            self.db.net.mount_disk(self.id, self.disk, self.db.disk_mb)
        self.data.mkdir(parents=True, exist_ok=True)
        try:
            self.powerloss_trigger.unlink()
        except FileNotFoundError:
            pass
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"===== galgo-jepsen start {self.starts} at {time.time():.3f}: "
                      f"{' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.db.net.ns(self.id)] + self.argv(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env(self.db.clock, self.db.powerloss_lib is not None), start_new_session=True)
        self.paused = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9 (after SIGCONT is irrelevant: SIGKILL ends a stopped process too)."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self.paused = False

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; kill -9 if it does not exit within `timeout`. Returns the exit status."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        if self.paused:
            self.resume()
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def listening(self) -> bool:
        try:
            with socket.create_connection((self.ip, TCP_PORT), timeout=0.5):
                return True
        except OSError:
            return False

    def metrics(self, timeout: float = 2.0) -> str | None:
        try:
            with urllib.request.urlopen(f"{self.http}/metrics", timeout=timeout) as r:
                return r.read().decode()
        except Exception:
            return None

    def set_clock(self, offset: str) -> None:
        self.clock_file.write_text(offset + "\n")


def parse_metrics(text: str | None) -> dict[str, list[tuple[dict, float]]]:
    """Prometheus text → {name: [(labels, value), ...]}."""
    out: dict[str, list[tuple[dict, float]]] = {}
    if not text:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            head, val = line.rsplit(" ", 1)
            value = float(val)
        except ValueError:
            continue
        labels = {}
        name = head
        if "{" in head:
            name, rest = head.split("{", 1)
            for part in rest.rstrip("}").split('",'):
                if "=" in part:
                    k, v = part.split("=", 1)
                    labels[k.strip()] = v.strip().strip('"')
        out.setdefault(name, []).append((labels, value))
    return out


class DB:
    def __init__(self, net: Net, store: Path, galgod: Path, *, durability: str = "fsync",
                 clock: bool = False, powerloss_lib: Path | None = None, extra_args: list[str] | None = None,
                 disk_mb: int | None = None):
        self.net = net
        self.disk_mb = disk_mb
        self.store = store
        self.galgod = galgod
        self.durability = durability
        self.clock = clock
        self.powerloss_lib = powerloss_lib
        self.extra_args = extra_args or []
        self.secret = secrets.token_hex(32)
        self.nodes: dict[int, Node] = {n: Node(self, n) for n in net.nodes}
        # a node removed by the member nemesis -> the node that replaced it (clients bound to it move on)
        self.replaced: dict[int, int] = {}
        self.galgo_admin = galgod.parent / "galgo-admin"

    def roster(self) -> str:
        return ",".join(f"{n}@{self.net.ip(n)}:{RAFT_PORT}:{TCP_PORT}:{QUIC_PORT}:{HTTP_PORT}"
                        for n in sorted(self.nodes))

    def add_node(self, node_id: int) -> Node:
        """A node added at run time (its host must exist): it starts with cluster.join=true."""
        n = Node(self, node_id)
        n.dir.mkdir(parents=True, exist_ok=True)
        n.join = True
        self.nodes[node_id] = n
        return n

    def keep_data(self) -> None:
        """With disks of their own: copies each node's data to <store>/nI/data before they are unmounted."""
        if not self.disk_mb:
            return
        import shutil
        for n in self.nodes.values():
            if n.data.exists():
                shutil.copytree(n.data, n.dir / "data", dirs_exist_ok=True, symlinks=True,
                                ignore_dangling_symlinks=True)

    def start_all(self) -> None:
        for n in self.nodes.values():
            n.start()

    def stop_all(self) -> dict[int, int | None]:
        for n in self.nodes.values():
            if n.paused:
                n.resume()
        return {n.id: n.stop() for n in self.nodes.values()}

    def kill_all(self) -> None:
        for n in self.nodes.values():
            n.kill()

    def tcp_addrs(self) -> list[str]:
        return [n.tcp for n in self.nodes.values()]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every running node listens and names a metadata leader in its metrics."""
        deadline = time.monotonic() + timeout
        while True:
            pending = []
            for n in self.nodes.values():
                if not n.alive():
                    if n.proc is not None and n.proc.returncode is not None:
                        raise RuntimeError(f"node {n.id} exited with status {n.proc.returncode}; see {n.log}")
                    continue
                if not n.listening() or self.meta_leader(n) in (None, 0):
                    pending.append(n.id)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes {pending} not ready after {timeout:.0f} s")
            time.sleep(0.3)

    def meta_leader(self, node: Node) -> int | None:
        m = parse_metrics(node.metrics())
        for labels, v in m.get("galgo_raft_leader_id", []):
            if labels.get("group") == "meta":
                return int(v)
        return None

    def terms(self) -> dict[tuple[int, str], float]:
        """(node, group labels) → Raft term, over every node answering /metrics."""
        out = {}
        for n in self.nodes.values():
            if not n.alive() or n.paused:
                continue
            for labels, v in parse_metrics(n.metrics()).get("galgo_raft_term", []):
                out[(n.id, ",".join(f"{k}={labels[k]}" for k in sorted(labels)))] = v
        return out

    def metric_sum(self, name: str) -> dict[int, float]:
        out = {}
        for n in self.nodes.values():
            if n.alive() and not n.paused:
                vals = parse_metrics(n.metrics()).get(name)
                if vals is not None:
                    out[n.id] = sum(v for _, v in vals)
        return out
