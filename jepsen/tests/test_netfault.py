"""Delay and loss faults between two network namespaces on a throw-away bridge.

The module fixture makes two namespaces joined by veth pairs to a new bridge (all names carry a random
suffix) and, where Docker's FORWARD policy would drop the bridged frames, an ACCEPT rule for that bridge
in DOCKER-USER; everything is removed in a finally block. Each test injects a fault in namespace A,
measures it with pings to B, stops it, and checks that the RTT or loss is back to the baseline and that
no rule or holder program of galgo_jepsen.netfault is left in either namespace. Needs root, `ip netns`,
ping and the netfilterqueue package; skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from galgo_jepsen import netfault  # noqa: E402
from galgo_jepsen.netfault import Delay, Loss, cleanup, leftovers, probe  # noqa: E402


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    for tool in ("ip", "iptables", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` does not work here"
    if importlib.util.find_spec("netfilterqueue") is None:
        return "PyPI netfilterqueue is not installed (needs Debian libnetfilter-queue-dev to build)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


class Net:
    """Two namespaces a and b on one bridge."""

    def __init__(self) -> None:
        sfx = secrets.token_hex(3)
        self.br = f"gnfbr{sfx}"
        self.ns_a, self.ns_b = f"gnf-{sfx}-a", f"gnf-{sfx}-b"
        third = 1 + secrets.randbelow(250)
        self.ip_a, self.ip_b = f"10.251.{third}.1", f"10.251.{third}.2"
        self.created_ns: list[str] = []
        self.created_links: list[str] = []
        self.fwd_rule: list[str] | None = None

    def up(self) -> None:
        sh("ip", "link", "add", self.br, "type", "bridge")
        self.created_links.append(self.br)
        sh("ip", "link", "set", self.br, "up")
        # Docker sets FORWARD to DROP and bridged frames pass through iptables: accept this bridge's.
        chain = "DOCKER-USER" if sh("iptables", "-w", "-S", "DOCKER-USER", check=False).returncode == 0 \
            else "FORWARD"
        self.fwd_rule = [chain, "-i", self.br, "-o", self.br, "-j", "ACCEPT"]
        sh("iptables", "-w", "-I", self.fwd_rule[0], "1", *self.fwd_rule[1:])
        for ns, ip, end in ((self.ns_a, self.ip_a, "a"), (self.ns_b, self.ip_b, "b")):
            sh("ip", "netns", "add", ns)
            self.created_ns.append(ns)
            host, inner = f"{self.br}{end}", f"{self.br}{end}i"
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", inner)
            self.created_links.append(host)
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "link", "set", host, "master", self.br)
            sh("ip", "link", "set", host, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "name", "eth0")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in self.created_ns:
            try:
                cleanup(ns)
            except Exception:
                pass
            sh("ip", "netns", "del", ns, check=False)
        for link in reversed(self.created_links):
            sh("ip", "link", "del", link, check=False)
        if self.fwd_rule:
            sh("iptables", "-w", "-D", *self.fwd_rule, check=False)


@pytest.fixture(scope="module")
def net():
    n = Net()
    try:
        n.up()
        first = probe(n.ns_a, n.ip_b, count=5, interval=0.05)
        assert first.received > 0, "the two namespaces cannot reach each other over the bridge"
        yield n
    finally:
        n.down()
    assert sh("ip", "link", "show", n.br, check=False).returncode != 0
    assert n.ns_a not in sh("ip", "netns", "list").stdout
    assert "-i " + n.br not in sh("iptables", "-w", "-S", check=False).stdout + \
        sh("iptables", "-w", "-S", "DOCKER-USER", check=False).stdout


@pytest.fixture
def baseline(net):
    p = probe(net.ns_a, net.ip_b, count=40)
    assert p.loss == 0 and p.median_ms < 20, p.summary()
    return p


def assert_clean(net) -> None:
    for ns in (net.ns_a, net.ns_b):
        assert leftovers(ns) == {"rules": [], "pids": []}, leftovers(ns)


def assert_restored(net, baseline) -> None:
    after = probe(net.ns_a, net.ip_b, count=40)
    assert after.loss == 0, after.summary()
    assert after.median_ms < baseline.median_ms + 5, (baseline.summary(), after.summary())


def test_delay_100ms(net, baseline):
    d = Delay(net.ns_a, 100)
    d.start(probe=net.ip_b)
    try:
        assert leftovers(net.ns_a)["rules"] and leftovers(net.ns_a)["pids"]
        obs = d.observe()
        print("delay:", obs.effect)
        added = obs.after.median_ms - obs.before.median_ms
        assert added >= 90, obs.effect
        assert obs.after.median_ms < obs.before.median_ms + 150, obs.effect
        assert obs.ok, obs.effect
        assert obs.history_value()["fault"] == "delay"
    finally:
        d.stop()
    assert "released=" in d.stats and "errors=0" in d.stats, d.stats
    assert_clean(net)
    assert_restored(net, baseline)


def test_delay_with_jitter_reorders(net, baseline):
    d = Delay(net.ns_a, 100, jitter_ms=40, seed=1)
    d.start(probe=net.ip_b)
    try:
        obs = d.observe(count=100)
        print("jitter:", obs.effect, "reordered", obs.after.reordered)
        assert obs.ok, obs.effect
        assert 85 <= obs.after.median_ms - obs.before.median_ms <= 125, obs.effect
        assert obs.after.stdev_ms >= 12, obs.effect          # uniform +-40 ms: about 23 ms
        assert max(obs.after.rtts_ms) - min(obs.after.rtts_ms) >= 40, obs.effect
        assert obs.after.reordered > 0, "independent hold times should reorder 10 ms apart pings"
    finally:
        d.stop()
    assert_clean(net)
    assert_restored(net, baseline)


def test_delay_outgoing_and_both_directions(net, baseline):
    d = Delay(net.ns_a, 60, peers=[net.ip_b], direction="out")
    d.start(probe=net.ip_b)
    try:
        obs = d.observe()
        print("out:", obs.effect)
        assert obs.ok and obs.after.median_ms - obs.before.median_ms >= 54, obs.effect
    finally:
        d.stop()
    d = Delay(net.ns_a, 40, direction="both")
    d.start(probe=net.ip_b)
    try:
        obs = d.observe()
        print("both:", obs.effect)
        assert obs.ok and obs.after.median_ms - obs.before.median_ms >= 72, obs.effect
    finally:
        d.stop()
    # a peer list that leaves B out does not delay B
    d = Delay(net.ns_a, 100, peers=["10.251.255.254"])
    d.start()
    try:
        p = probe(net.ns_a, net.ip_b, count=20)
        assert p.median_ms < baseline.median_ms + 5, p.summary()
    finally:
        d.stop()
    assert_clean(net)
    assert_restored(net, baseline)


@pytest.mark.parametrize("direction,drop", [("in", ["INPUT", "-s"]), ("out", ["OUTPUT", "-d"])])
def test_delayed_packets_still_meet_filter_drops(net, baseline, direction, drop):
    """Delay sits in mangle, so a partition's DROP in the filter table still applies after it."""
    d = Delay(net.ns_a, 50, direction=direction)
    d.start()
    drop = [*drop, net.ip_b, "-j", "DROP"]
    sh("ip", "netns", "exec", net.ns_a, "iptables", "-w", "-A", *drop)
    try:
        p = probe(net.ns_a, net.ip_b, count=10, interval=0.02, wait=0.5)
        assert p.received == 0, p.summary()
    finally:
        sh("ip", "netns", "exec", net.ns_a, "iptables", "-w", "-D", *drop)
        d.stop()
    assert "errors=0" in d.stats, d.stats
    assert_clean(net)
    assert_restored(net, baseline)


def test_stop_releases_held_packets(net, baseline):
    """SIGTERM makes the holder accept what it holds: pings sent just before stop() return early."""
    d = Delay(net.ns_a, 1500)
    d.start()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "p", probe(net.ns_a, net.ip_b, count=5, interval=0.02, wait=3)))
    t.start()
    time.sleep(0.4)
    t0 = time.monotonic()
    d.stop()
    stopped_in = time.monotonic() - t0
    t.join(10)
    p = result["p"]
    print("released on stop:", p.summary(), d.stats, f"stop took {stopped_in:.2f}s")
    assert p.received == 5, p.summary()
    assert max(p.rtts_ms) < 1400, p.summary()   # released before their 1.5 s were up
    assert "received=5 released=5" in d.stats, d.stats
    assert_clean(net)


def test_loss_30_percent(net, baseline):
    loss = Loss(net.ns_a, 0.3)
    loss.start(probe=net.ip_b)
    try:
        assert leftovers(net.ns_a)["rules"]
        obs = loss.observe(count=200)
        print("loss:", obs.effect)
        assert 0.18 <= obs.after.loss <= 0.42, obs.effect
        assert obs.ok, obs.effect
    finally:
        loss.stop()
    assert_clean(net)
    assert_restored(net, baseline)


def test_cleanup_removes_leftovers_of_a_crashed_run(net, baseline):
    d = Delay(net.ns_a, 100, jitter_ms=10)
    d.start()
    Loss(net.ns_a, 0.5, direction="both").start()
    pid = leftovers(net.ns_a)["pids"][0]
    d.proc = None  # forget it, as a crashed runner would (the process runs on)
    assert len(leftovers(net.ns_a)["rules"]) == 3
    removed = cleanup(net.ns_a)
    assert len(removed["rules"]) == 3 and removed["pids"] == [pid], removed
    assert not Path(f"/proc/{pid}").exists() or not netfault._alive(pid)
    assert_clean(net)
    assert_restored(net, baseline)
    assert cleanup(net.ns_a) == {"rules": [], "pids": []}


def test_killed_holder_lets_packets_pass(net, baseline):
    """--queue-bypass: with the holder gone (SIGKILL), packets pass undelayed although the rules remain."""
    d = Delay(net.ns_a, 100)
    d.start()
    try:
        d.proc.kill()
        d.proc.wait(5)
        assert leftovers(net.ns_a)["rules"]
        p = probe(net.ns_a, net.ip_b, count=20)
        assert p.loss == 0 and p.median_ms < baseline.median_ms + 5, p.summary()
    finally:
        d.stop()
    assert_clean(net)


def test_holder_exits_with_its_starter(net, baseline, tmp_path):
    """A runner that dies without stop() leaves only rules that let everything pass; cleanup takes them."""
    script = tmp_path / "starter.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(netfault.__file__).parent.parent)!r})\n"
        "from galgo_jepsen.netfault import Delay\n"
        f"Delay({net.ns_a!r}, 100).start()\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n")
    starter = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout.readline().strip() == "started"
        assert leftovers(net.ns_a)["pids"]
        starter.kill()
        starter.wait(5)
        deadline = time.monotonic() + 5
        while leftovers(net.ns_a)["pids"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert leftovers(net.ns_a)["pids"] == []
        p = probe(net.ns_a, net.ip_b, count=20)
        assert p.median_ms < baseline.median_ms + 5, p.summary()
    finally:
        if starter.poll() is None:
            starter.kill()
        removed = cleanup(net.ns_a)
    assert len(removed["rules"]) == 1, removed
    assert_clean(net)
