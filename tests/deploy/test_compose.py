"""The deploy tests (`make compose-test`, stage `deploy` of `make test`; needs Docker).

The image (scripts/build-image) and the three-node compose cluster (deploy/compose, scripts/compose) as a
user meets them: Iggy's official Python SDK on the host, through the ports compose publishes on
127.0.0.1, over TCP, QUIC and HTTP; then container faults (docker kill, docker pause, docker network
disconnect, docker stop) while a producer sends with acknowledgements, every acknowledged message read
back afterwards from every node.

The cluster runs as compose project GALGO_COMPOSE_PROJECT (default galgo-test) and is removed with its
volumes at the end, whatever happened.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from apache_iggy import (  # type: ignore
    AutoLogin,
    Consumer,
    HttpConfig,
    IggyClient,
    PollingStrategy,
    QuicConfig,
    QuicReconnectionConfig,
    SendMessage,
    TcpConfig,
    TcpReconnectionConfig,
    WebSocketConfig,
    WebSocketReconnectionConfig,
)

ROOT = Path(__file__).resolve().parents[2]
PROJECT = os.environ.get("GALGO_COMPOSE_PROJECT", "galgo-test")
ENV = {**os.environ, "GALGO_COMPOSE_PROJECT": PROJECT}
NODES = 3
TIMEOUT = 10.0


def sh(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=ENV, check=check, timeout=timeout)


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(str(ROOT / "scripts" / "compose"), *args, check=check)


def container(i: int) -> str:
    out = sh("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}",
             "--filter", f"label=com.docker.compose.service=galgo-{i}").stdout.split()
    assert len(out) == 1, f"galgo-{i}: {out}"
    return out[0]


def http_json(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def http_token(port: int) -> str:
    """A JWT of the root user from the node's HTTP API."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/users/login", method="POST",
                                 data=json.dumps({"username": "iggy", "password": "iggy"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["access_token"]["token"]


def http_get(port: int, path: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {http_token(port)}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def cluster():
    if sh("docker", "info", check=False).returncode != 0:
        pytest.fail("the Docker daemon is not reachable: the deploy tests need it")
    compose("down", check=False)
    try:
        up = compose("up", check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        yield
    finally:
        logs = sh("docker-compose", "-p", PROJECT, "-f", str(ROOT / "deploy/compose/docker-compose.yml"),
                  "logs", "--no-color", "--tail=200", check=False).stdout
        (ROOT / "build").mkdir(exist_ok=True)
        (ROOT / "build" / "deploy-test.log").write_text(logs)
        compose("down", check=False)


def config(transport: str, node: int):
    if transport == "quic":
        return QuicConfig(server_address=f"127.0.0.1:{8201 + node}", client_address="0.0.0.0:0",
                          auto_login=AutoLogin.disabled(), reconnection=QuicReconnectionConfig(enabled=False))
    if transport == "http":
        return HttpConfig(api_url=f"http://127.0.0.1:{8301 + node}", retries=0)
    if transport == "ws":
        return WebSocketConfig(server_address=f"127.0.0.1:{8501 + node}", auto_login=AutoLogin.disabled(),
                               reconnection=WebSocketReconnectionConfig(enabled=False))
    return TcpConfig(server_address=f"127.0.0.1:{8101 + node}", auto_login=AutoLogin.disabled(),
                     reconnection=TcpReconnectionConfig(enabled=False))


async def connect(transport: str, node: int) -> IggyClient:
    c = IggyClient(config(transport, node))
    await asyncio.wait_for(c.connect(), TIMEOUT)
    await asyncio.wait_for(c.login_user("iggy", "iggy"), TIMEOUT)
    return c


async def read_all(c: IggyClient, stream: str, topic: str, partition: int) -> list[str]:
    out: list[str] = []
    while True:
        got = await asyncio.wait_for(c.poll_messages(
            stream, topic, consumer=Consumer.Single("deploy-test"), polling_strategy=PollingStrategy.Offset(len(out)),
            count=500, auto_commit=False, partition_id=partition), TIMEOUT)
        if not got:
            return out
        out += [bytes(m.payload()).decode() for m in got]


async def assert_every_node_holds(stream: str, topic: str, partition: int, want: set[str]) -> None:
    """Every node's replica of the partition holds every message of `want` (waiting up to 30 s for a
    node that lags), each once."""
    for node in range(NODES):
        r = await connect("tcp", node)
        deadline = time.monotonic() + 30
        while True:
            got = await read_all(r, stream, topic, partition)
            if want <= set(got) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        missing = sorted(want - set(got))
        assert not missing, f"node {node + 1} partition {partition} lacks {len(missing)} acknowledged: {missing[:5]}"
        assert len(got) == len(set(got)), f"node {node + 1} partition {partition} holds duplicates"


def test_the_image_is_small_runs_as_a_user_and_builds_the_same_twice():
    first = sh(str(ROOT / "scripts" / "build-image"), str(ROOT / "build"))
    again = sh(str(ROOT / "scripts" / "build-image"), str(ROOT / "build"))
    ids = [l.split("id ")[1].split(",")[0] for l in (first.stdout, again.stdout)]
    assert ids[0] == ids[1], f"two builds of the same binaries gave {ids}"
    info = json.loads(sh("docker", "image", "inspect", "galgo:latest").stdout)[0]
    assert info["Id"] == ids[0]
    assert info["Config"]["User"] == "10001:10001"
    assert "/var/lib/galgo" in info["Config"]["Volumes"]
    assert info["Size"] < 60e6, f"image of {info['Size']} bytes"


def test_every_node_is_ready_and_advertises_the_published_addresses(cluster):
    for i in range(NODES):
        status, body = http_json(8301 + i, "/health/ready")
        assert status == 200 and body["ready"], body
        assert body["node_id"] == i + 1, body
        status, body = http_json(8301 + i, "/health/live")
        assert status == 200 and body["live"]
    nodes = sh("docker", "exec", container(0), "galgo-admin", "--server", "127.0.0.1:8090", "nodes").stdout
    assert nodes.count("connected") >= NODES, nodes

    # GetClusterMetadata as the HTTP API gives it, from every node: every node at its published address
    for i in range(NODES):
        m = http_get(8301 + i, "/cluster/metadata")
        nodes = sorted((n["ip"], n["endpoints"]["tcp"], n["endpoints"]["quic"], n["endpoints"]["http"],
                        n["endpoints"]["websocket"]) for n in m["nodes"])
        assert nodes == [("127.0.0.1", 8101 + k, 8201 + k, 8301 + k, 8501 + k) for k in range(NODES)], (i, nodes)


@pytest.mark.parametrize("transport", ["tcp", "quic", "http", "ws"])
def test_the_python_sdk_on_the_host_sends_and_polls(cluster, transport):
    stream, topic = f"deploy-{transport}", "t"

    async def run():
        c = await connect(transport, 0)
        await asyncio.wait_for(c.create_stream(stream), TIMEOUT)
        await asyncio.wait_for(c.create_topic(stream, topic, 3, options={"replication_factor": "3"}), TIMEOUT)
        for p in range(3):
            msgs = [SendMessage(f"{transport}-{p}-{k}".encode()) for k in range(20)]
            await asyncio.wait_for(c.send_messages(stream, topic, p, msgs), TIMEOUT)
        # every node serves what was sent through node 1, over the same transport
        for node in range(NODES):
            r = await connect(transport, node)
            for p in range(3):
                deadline = time.monotonic() + 20
                while True:
                    got = await read_all(r, stream, topic, p)
                    if len(got) >= 20 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
                assert got == [f"{transport}-{p}-{k}" for k in range(20)], (node, p, got)

    asyncio.run(run())


def network() -> str:
    nets = sh("docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
              "--format", "{{.Name}}").stdout.split()
    assert len(nets) == 1, nets
    return nets[0]


FAULTS = {
    "kill": (["docker", "kill", "{c}"], ["docker", "start", "{c}"]),
    "pause": (["docker", "pause", "{c}"], ["docker", "unpause", "{c}"]),
    "disconnect": (["docker", "network", "disconnect", "{net}", "{c}"],
                   ["docker", "network", "connect", "--alias", "galgo-2.galgo-peer", "{net}", "{c}"]),
    "stop": (["docker", "stop", "-t", "30", "{c}"], ["docker", "start", "{c}"]),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_container_fault_heals_without_losing_an_acknowledged_message(cluster, fault):
    """A producer on the host sends one message at a time, with acknowledgement, retrying through the
    other nodes while node 3's container suffers the fault; once healed and ready again, every node holds
    every acknowledged message (dedup on: a retried send is stored once)."""
    stream, topic = f"fault-{fault}", "t"
    c = container(2)
    subst = {"c": c, "net": network()}
    start, heal = ([a.format(**subst) for a in cmd] for cmd in FAULTS[fault])
    acked: list[int] = []
    stats = {"retries": 0}

    async def produce(stop: asyncio.Event):
        k, node, cl = 0, 0, None
        while not stop.is_set():
            try:
                if cl is None:
                    cl = await connect("tcp", node)
                await asyncio.wait_for(cl.send_messages(stream, topic, 0, [SendMessage(f"m-{k}".encode(), id=k + 1)]),
                                       TIMEOUT)
                acked.append(k)
                k += 1
            except Exception:
                stats["retries"] += 1
                cl, node = None, (node + 1) % 2  # nodes 1 and 2 (node 3 is the one that suffers)
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.02)

    async def run():
        admin = await connect("tcp", 0)
        await asyncio.wait_for(admin.create_stream(stream), TIMEOUT)
        await asyncio.wait_for(admin.create_topic(stream, topic, 1, options={"replication_factor": "3",
                                                                             "dedup_window": "65536"}), TIMEOUT)
        stop = asyncio.Event()
        task = asyncio.create_task(produce(stop))
        await asyncio.sleep(2)
        t0 = time.monotonic()
        r = await asyncio.to_thread(sh, *start, check=False)
        assert r.returncode == 0, r.stderr
        took = time.monotonic() - t0
        code = json.loads(sh("docker", "inspect", c).stdout)[0]["State"]["ExitCode"] if fault == "stop" else 0
        await asyncio.sleep(4)
        during = len(acked)
        r = await asyncio.to_thread(sh, *heal, check=False)
        assert r.returncode == 0, r.stderr
        w = await asyncio.to_thread(compose, "wait", check=False)
        assert w.returncode == 0, w.stdout + w.stderr
        await asyncio.sleep(2)
        stop.set()
        await task
        return took, during, code

    took, during, code = asyncio.run(run())
    assert len(acked) > during > 0, f"no progress: {during} acked during the fault, {len(acked)} in all"
    if fault == "stop":
        assert took < 10, f"docker stop took {took:.1f} s: galgod as PID 1 did not stop on SIGTERM"
        assert code == 0, f"galgod exited with {code} on SIGTERM"

    asyncio.run(assert_every_node_holds(stream, topic, 0, {f"m-{k}" for k in acked}))


def leaders() -> dict[str, tuple[int, int]]:
    """Each partition of stream "rolling": (leader, preferred leader), from galgo-admin nodes on node 1."""
    out = sh("docker", "exec", container(0), "galgo-admin", "--server", "127.0.0.1:8090", "nodes").stdout
    got = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].count("/") == 2 and parts[0].endswith(":"):
            got[parts[0][:-1]] = (int(parts[1]), int(parts[3].split(",")[0]))
    return got


def test_a_rolling_restart_with_drains_fails_no_send_and_loses_nothing(cluster):
    """Each node in turn is drained (galgo-admin drain in its container), stopped, started and waited
    ready, while a producer on the host sends to three partitions with acknowledgements through a node
    that stays up (reconnected after each drain, so the SDK follows the metadata leader to a node that is
    not the next to stop): no send fails, every node holds every acknowledged message once, and
    leadership returns to the preferred replicas."""
    stream, topic = "rolling", "t"
    acked: list[tuple[int, int]] = []
    failures: list[str] = []
    via = {"node": 1, "gen": 0}

    async def produce(stop: asyncio.Event):
        k, cl, gen = 0, None, -1
        while not stop.is_set():
            if cl is None or gen != via["gen"]:
                gen = via["gen"]
                cl = await connect("tcp", via["node"])
            p = k % 3
            try:
                await asyncio.wait_for(cl.send_messages(stream, topic, p, [SendMessage(f"r-{k}".encode(), id=k + 1)]),
                                       TIMEOUT)
                acked.append((p, k))
                k += 1
            except Exception as e:  # a failed send is what this test forbids
                failures.append(f"{type(e).__name__}: {e}")
                cl = None
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.01)

    async def run():
        admin = await connect("tcp", 0)
        await asyncio.wait_for(admin.create_stream(stream), TIMEOUT)
        await asyncio.wait_for(admin.create_topic(stream, topic, 3, options={"replication_factor": "3",
                                                                             "dedup_window": "65536"}), TIMEOUT)
        stop = asyncio.Event()
        task = asyncio.create_task(produce(stop))
        await asyncio.sleep(2)
        for i in range(NODES):
            c = container(i)
            d = await asyncio.to_thread(sh, "docker", "exec", c, "galgo-admin", "--server", "127.0.0.1:8090",
                                        "drain", "30", check=False)
            assert d.returncode == 0, d.stdout + d.stderr
            via["node"], via["gen"] = (i + 1) % NODES, via["gen"] + 1
            await asyncio.sleep(1)
            for cmd in (["docker", "stop", "-t", "30", c], ["docker", "start", c]):
                r = await asyncio.to_thread(sh, *cmd, check=False)
                assert r.returncode == 0, r.stderr
            w = await asyncio.to_thread(compose, "wait", check=False)
            assert w.returncode == 0, w.stdout + w.stderr
            await asyncio.sleep(1)
        stop.set()
        await task

    asyncio.run(run())
    assert not failures, f"{len(failures)} sends failed, the first: {failures[:3]}"
    assert len(acked) > 100

    for p in range(3):
        asyncio.run(assert_every_node_holds(stream, topic, p, {f"r-{k}" for q, k in acked if q == p}))
    deadline = time.monotonic() + 30
    while True:
        ls = {k: v for k, v in leaders().items() if k.startswith(f"{stream_id('rolling')}/")}
        if ls and all(leader == pref for leader, pref in ls.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert ls and all(leader == pref for leader, pref in ls.values()), f"leaders not back on preferred: {ls}"


def stream_id(name: str) -> int:
    return http_get(8301, f"/streams/{name}")["id"]
