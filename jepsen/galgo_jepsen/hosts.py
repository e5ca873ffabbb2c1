"""Hosts for the suite: one network namespace per node, joined by veth pairs to one bridge.

Layout of a run with id R (a short number unique among the suites running on this machine) and N nodes:

  bridge   gjR          in the runner's own namespace, address 10.R1.R2.254/24 (the runner and its
                        clients live in the runner's namespace and reach the nodes through it)
  netns    gjRnI        node I (1..N): interface eth0 = 10.R1.R2.I/24, loopback up
  veth     gjRvI        the bridge side of node I's eth0

The subnet is 10.(200 + R // 256).(R % 256).0/24 (R < 14000), so concurrent runs never share addresses.

Docker's FORWARD policy is DROP and bridged frames pass through iptables (bridge-nf-call-iptables), so
frames between two namespaces on the bridge are dropped unless accepted: the suite inserts
`-i gjR -o gjR -j ACCEPT` at the top of FORWARD (and of DOCKER-USER when that chain exists), each with
the comment "galgo-jepsen R", and deletes exactly those rules at the end.

Faults between nodes are iptables rules in the nodes' own namespaces, in a chain GJFAULT that INPUT and
OUTPUT jump to: a partition drops packets by peer address in one or both directions. The runner's
address (the bridge) is never dropped, so clients keep reaching every node, as in Jepsen's partitions
between replicas ("clients still reach the deposed leader"). `heal()` flushes GJFAULT everywhere.

With a disk size (the diskfull nemesis), each node's data lives on a file system of its own: a tmpfs of
that size mounted at <store>/nI/disk with the source name "galgo-jepsen-R-nI" (`mount_disk`), so one
node's disk can be filled without touching the others'. teardown() unmounts them; so does sweep() for a
dead run's.

Everything made here is removed by `teardown()`, which is also registered with atexit and runs on
SIGINT/SIGTERM through the runner; `sweep()` removes what a killed earlier run (a dead runner pid)
left behind: its namespaces, bridge, veths, iptables rules and disks.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

COMMENT = "galgo-jepsen"
RUNS_DIR = Path("/run/galgo-jepsen")


def sh(*args: str, check: bool = True, ns: str | None = None, capture: bool = True) -> str:
    """Runs a command (inside netns `ns` when given); returns stdout; raises on failure if `check`."""
    argv = list(args)
    if ns is not None:
        argv = ["ip", "netns", "exec", ns] + argv
    p = subprocess.run(argv, stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE,
                       text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout or ""


def _chain_exists(table: str, chain: str) -> bool:
    return subprocess.run(["iptables", "-t", table, "-nL", chain], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def usable() -> str | None:
    """None when this machine can host a run, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the suite needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables"):
        if subprocess.run(["which", tool], stdout=subprocess.DEVNULL).returncode != 0:
            return f"{tool} is not installed (scripts/install-deps)"
    return None


class Net:
    def __init__(self, nodes: int, run_id: int | None = None):
        self.run_id = run_id if run_id is not None else os.getpid() % 14000
        r = self.run_id
        self.prefix = f"10.{200 + r // 256}.{r % 256}"
        self.bridge = f"gj{r}"
        self.nodes = list(range(1, nodes + 1))
        self.host_ip = f"{self.prefix}.254"
        self._up = False
        self._fwd_rules: list[tuple[str, ...]] = []
        self._mounts: list[Path] = []

    # names and addresses
    def ns(self, node: int) -> str:
        return f"gj{self.run_id}n{node}"

    def veth(self, node: int) -> str:
        return f"gj{self.run_id}v{node}"

    def ip(self, node: int) -> str:
        return f"{self.prefix}.{node}"

    def node_of_ip(self, ip: str) -> int | None:
        for n in self.nodes:
            if self.ip(n) == ip:
                return n
        return None

    # life cycle
    def setup(self) -> None:
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
        (RUNS_DIR / f"{self.run_id}.pid").write_text(str(os.getpid()))
        self._up = True
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        tag = f"{COMMENT} {self.run_id}"
        for chain in ("FORWARD", "DOCKER-USER"):
            if _chain_exists("filter", chain):
                rule = (chain, "-i", self.bridge, "-o", self.bridge, "-m", "comment", "--comment", tag,
                        "-j", "ACCEPT")
                sh("iptables", "-I", *rule)
                self._fwd_rules.append(rule)
        for n in self.nodes:
            self.add_host(n)

    def add_host(self, n: int) -> None:
        ns = self.ns(n)
        if n not in self.nodes:
            self.nodes.append(n)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", self.veth(n), "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", self.veth(n), "master", self.bridge)
        sh("ip", "link", "set", self.veth(n), "up")
        sh("ip", "addr", "add", f"{self.ip(n)}/24", "dev", "eth0", ns=ns)
        sh("ip", "link", "set", "eth0", "up", ns=ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("iptables", "-N", "GJFAULT", ns=ns)
        sh("iptables", "-I", "INPUT", "-j", "GJFAULT", ns=ns)
        sh("iptables", "-I", "OUTPUT", "-j", "GJFAULT", ns=ns)

    def mount_disk(self, node: int, path: Path, size_mb: int) -> None:
        """Node's own small file system at `path` (a tmpfs of size_mb MiB), once."""
        path = Path(path).resolve()
        if path in self._mounts:
            return
        path.mkdir(parents=True, exist_ok=True)
        sh("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", f"{COMMENT}-{self.run_id}-n{node}",
           str(path))
        self._mounts.append(path)

    def unmount_disks(self) -> None:
        for path in self._mounts:
            sh("umount", "-l", str(path), check=False)
        self._mounts = []

    def teardown(self) -> None:
        self.unmount_disks()
        if not self._up:
            return
        self._up = False
        for n in self.nodes:
            sh("ip", "netns", "del", self.ns(n), check=False)
            sh("ip", "link", "del", self.veth(n), check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        for rule in self._fwd_rules:
            sh("iptables", "-D", *rule, check=False)
        self._fwd_rules = []
        try:
            (RUNS_DIR / f"{self.run_id}.pid").unlink()
        except FileNotFoundError:
            pass

    # faults between nodes
    def drop(self, node: int, peer: int, direction: str = "both") -> None:
        """Drops what `node` receives from `peer` ("in"), sends to it ("out"), or both."""
        ns, pip = self.ns(node), self.ip(peer)
        if direction in ("in", "both"):
            sh("iptables", "-A", "GJFAULT", "-s", pip, "-j", "DROP", ns=ns)
        if direction in ("out", "both"):
            sh("iptables", "-A", "GJFAULT", "-d", pip, "-j", "DROP", ns=ns)

    def partition(self, groups: list[list[int]]) -> None:
        """Cuts every link between nodes of different groups (both directions)."""
        side = {n: i for i, g in enumerate(groups) for n in g}
        for a in self.nodes:
            for b in self.nodes:
                if a != b and a in side and b in side and side[a] != side[b]:
                    self.drop(a, b, "in")

    def heal(self) -> None:
        for n in self.nodes:
            sh("iptables", "-F", "GJFAULT", ns=self.ns(n), check=False)

    def fault_rules(self, node: int) -> int:
        """How many fault rules node's namespace holds now (the partition nemesis checks it)."""
        out = sh("iptables", "-S", "GJFAULT", ns=self.ns(node), check=False)
        return sum(1 for line in out.splitlines() if line.startswith("-A GJFAULT"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep() -> list[str]:
    """Removes what runs whose runner died left behind; returns what was removed."""
    removed = []
    dead: set[int] = set()
    if RUNS_DIR.is_dir():
        for f in RUNS_DIR.glob("*.pid"):
            try:
                pid = int(f.read_text())
            except ValueError:
                pid = 0
            if not _pid_alive(pid):
                dead.add(int(f.stem))
                f.unlink()
    live = set()
    if RUNS_DIR.is_dir():
        live = {int(f.stem) for f in RUNS_DIR.glob("*.pid")}
    for name in sh("ip", "netns", "list", check=False).split():
        m = re.fullmatch(r"gj(\d+)n\d+", name)
        if m and int(m.group(1)) not in live:
            # the galgods of a dead run may still hold the namespace's sockets; kill them first
            for pid in sh("ip", "netns", "pids", name, check=False).split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    for line in sh("ip", "-o", "link", "show", check=False).splitlines():
        m = re.match(r"\d+: (gj(\d+)(v\d+)?)[@:]", line)
        if m and int(m.group(2)) not in live:
            sh("ip", "link", "del", m.group(1), check=False)
            removed.append(m.group(1))
    for src, target in mounts():
        m = re.fullmatch(rf"{COMMENT}-(\d+)-n\d+", src)
        if m and int(m.group(1)) not in live:
            sh("umount", "-l", target, check=False)
            removed.append(f"mount {target}")
    for chain in ("FORWARD", "DOCKER-USER"):
        if not _chain_exists("filter", chain):
            continue
        for line in sh("iptables", "-S", chain, check=False).splitlines():
            m = re.search(r'--comment "?galgo-jepsen (\d+)"?', line)
            if m and int(m.group(1)) not in live:
                spec = line.split()[1:]  # drop "-A"
                sh("iptables", "-D", *[s.strip('"') for s in _rejoin(spec)], check=False)
                removed.append(f"iptables {chain} rule of run {m.group(1)}")
    return removed


def mounts() -> list[tuple[str, str]]:
    """(source, mount point) of every mount of the suite's disks (source galgo-jepsen-R-nI)."""
    out = []
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        f = line.split()
        if len(f) >= 2 and f[0].startswith(COMMENT + "-"):
            out.append((f[0], f[1].replace("\\040", " ")))
    return out


def _rejoin(spec: list[str]) -> list[str]:
    """iptables -S quotes a comment with spaces; put the quoted words back together."""
    out, cur = [], None
    for w in spec:
        if cur is not None:
            cur += " " + w
            if w.endswith('"'):
                out.append(cur)
                cur = None
        elif w.startswith('"') and not (w.endswith('"') and len(w) > 1):
            cur = w
        else:
            out.append(w)
    return out


def ping(net: Net, src: int | None, dst: int, timeout_s: float = 1.0) -> bool:
    """Whether node `dst` answers one ping from node `src` (None: from the runner's namespace)."""
    argv = ["ping", "-c1", "-W", str(max(1, int(timeout_s))), net.ip(dst)]
    if src is not None:
        argv = ["ip", "netns", "exec", net.ns(src)] + argv
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
