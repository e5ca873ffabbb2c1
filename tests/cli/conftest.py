"""Fixtures of the CLI suite: Iggy's own command-line client (iggy-cli 0.14.0) against galgod.

* galgod is $GALGOD, else build-asan/galgod, else build/galgod; `iggy` is $IGGY_CLI, else the one
  scripts/install-iggy-cli puts in ${GALGO_CACHE:-~/.cache/galgo}/iggy-cli-0.14.0/bin/iggy.
* `single` (one per test module): one galgod on free loopback ports, TCP, QUIC, HTTP and WebSocket each
  on its own, --with-default-root-credentials (iggy/iggy).
* `cluster` (one per test module): three galgod on loopback, each with the four listeners, one roster.
* `Cli(node, transport, home)` runs `iggy --transport T <address of node for T> -u iggy -p iggy ...` with
  a time limit; HOME is a directory of the module (the CLI keeps its contexts in ~/.iggy). There is no
  system keyring here: the CLI warns about it on stderr and everything that must store a secret fails.
Every galgod is stopped with SIGTERM at the end and must then exit with status 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = float(os.environ.get("GALGO_CLI_START_TIMEOUT", "30"))
STOP_TIMEOUT = float(os.environ.get("GALGO_CLI_STOP_TIMEOUT", "15"))
CALL_TIMEOUT = float(os.environ.get("GALGO_CLI_CALL_TIMEOUT", "30"))
IGGY_CLI_VERSION = "0.14.0"
TRANSPORTS = ("tcp", "quic", "http", "ws")

_used_ports: set[int] = set()


def free_port() -> int:
    """A loopback port free for both TCP and UDP (QUIC), never handed out twice in this session."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in _used_ports:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        _used_ports.add(port)
        return port


def find_galgod() -> Path:
    env = os.environ.get("GALGOD")
    if env:
        return Path(env)
    for candidate in (REPO / "build-asan" / "galgod", REPO / "build" / "galgod"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no galgod binary: set GALGOD or build build-asan/galgod", pytrace=False)


def find_iggy() -> Path:
    env = os.environ.get("IGGY_CLI")
    if env:
        return Path(env)
    cache = Path(os.environ.get("GALGO_CACHE") or Path.home() / ".cache" / "galgo")
    path = cache / f"iggy-cli-{IGGY_CLI_VERSION}" / "bin" / "iggy"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"no iggy-cli at {path}: run scripts/install-iggy-cli (or set IGGY_CLI)", pytrace=False)
    return path


@dataclass
class Node:
    """One galgod: its id, ports and process."""

    id: int
    workdir: Path
    tcp: int = field(default_factory=free_port)
    quic: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    ws: int = field(default_factory=free_port)
    raft: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"node{self.id}.log"

    def argv(self, cluster: list["Node"] | None) -> list[str]:
        argv = [
            str(find_galgod()),
            f"--node.data_dir={self.workdir / f'data{self.id}'}",
            f"--tcp.address=127.0.0.1:{self.tcp}",
            "--quic.enabled=true",
            f"--quic.address=127.0.0.1:{self.quic}",
            "--http.enabled=true",
            f"--http.address=127.0.0.1:{self.http}",
            "--websocket.enabled=true",
            f"--websocket.address=127.0.0.1:{self.ws}",
            "--with-default-root-credentials",
        ]
        if cluster:
            roster = ",".join(f"{n.id}@127.0.0.1:{n.raft}:{n.tcp}:{n.quic}:{n.http}" for n in cluster)
            argv += [
                f"--node.id={self.id}",
                f"--cluster.nodes={roster}",
                f"--cluster.listen=127.0.0.1:{self.raft}",
                "--cluster.secret=cli-suite",
                "--cluster.election_timeout_ms=500",
            ]
        return argv

    def start(self, cluster: list["Node"] | None = None) -> None:
        (self.workdir / f"data{self.id}").mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv(cluster), cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"galgod node {self.id} exited with {self.proc.returncode}:\n{self.log()[-4000:]}",
                            pytrace=False)
            if text in self.log():
                return
            time.sleep(0.05)
        pytest.fail(f"galgod node {self.id}: no '{text}' within {START_TIMEOUT:g}s:\n{self.log()[-4000:]}",
                    pytrace=False)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def address(self, transport: str) -> list[str]:
        return {
            "tcp": ["--tcp-server-address", f"127.0.0.1:{self.tcp}"],
            "quic": ["--quic-server-address", f"127.0.0.1:{self.quic}"],
            "http": ["--http-api-url", f"http://127.0.0.1:{self.http}"],
            "ws": ["--websocket-server-address", f"127.0.0.1:{self.ws}"],
        }[transport]


class CliError(AssertionError):
    pass


@dataclass
class Result:
    argv: list[str]
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\nexit {self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Cli:
    """iggy-cli bound to one node and one transport, logging in as iggy/iggy on every call."""

    def __init__(self, node: Node, transport: str, home: Path):
        self.node = node
        self.transport = transport
        self.home = home

    def run(self, *args: str, ok: bool = True, login: bool = True) -> Result:
        argv = [str(find_iggy()), "--transport", self.transport, *self.node.address(self.transport)]
        if login:
            argv += ["-u", "iggy", "-p", "iggy"]
        argv += list(args)
        env = dict(os.environ, HOME=str(self.home), RUST_BACKTRACE="0", RUST_LIB_BACKTRACE="0", NO_COLOR="1")
        env.pop("IGGY_HOME", None)
        try:
            p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=CALL_TIMEOUT, cwd=self.home)
        except subprocess.TimeoutExpired as e:
            raise CliError(f"$ {' '.join(argv)}\ndid not finish within {CALL_TIMEOUT:g}s\n"
                           f"{(e.stdout or b'').decode(errors='replace')}") from None
        r = Result(argv, p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))
        if ok and r.rc != 0:
            raise CliError(f"iggy failed:\n{r}")
        return r

    def __call__(self, *args: str) -> str:
        """Runs the command, which must succeed, and returns its standard output."""
        return self.run(*args).out


def _home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    return home


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    node = Node(1, tmp_path_factory.mktemp("galgod"))
    node.start()
    try:
        node.wait_for("galgod ready")
        yield node
    finally:
        rc = node.stop()
    assert rc == 0, f"galgod exited with {rc}:\n{node.log()[-4000:]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cluster")
    nodes = [Node(i, workdir) for i in (1, 2, 3)]
    for n in nodes:
        n.start(nodes)
    try:
        for n in nodes:
            n.wait_for("galgod ready")
        for n in nodes:
            n.wait_for("metadata ready")
        yield nodes
    finally:
        rcs = [n.stop() for n in nodes]
    for n, rc in zip(nodes, rcs):
        assert rc == 0, f"node {n.id} exited with {rc}:\n{n.log()[-4000:]}"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return _home(tmp_path_factory)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Attach the tail of the galgod logs to the report of a failed test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        nodes = []
        if isinstance(funcargs.get("single"), Node):
            nodes = [funcargs["single"]]
        elif isinstance(funcargs.get("cluster"), list):
            nodes = funcargs["cluster"]
        for n in nodes:
            report.sections.append((f"galgod node {n.id} log (tail)", n.log()[-3000:]))
