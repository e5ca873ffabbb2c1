"""Harness for the Iggy-compatibility suite: start/stop/restart galgod, bounded SDK calls, helpers.

Everything here is plain Python (no pytest-asyncio): the async tests are run by the
`pytest_pyfunc_call` hook in conftest.py with `asyncio.run`, and every SDK await goes through
`Bounded`, which wraps it in `asyncio.wait_for` so that a hung server fails the test quickly with
the name of the call that hung.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import signal
import socket
import subprocess
import time
import atexit
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apache_iggy import (
    AutoLogin,
    Consumer,
    HttpConfig,
    IggyClient,
    IggyConsumer,
    IggyProducer,
    PollingStrategy,
    QuicConfig,
    QuicReconnectionConfig,
    SendMessage,
    TcpConfig,
    TcpReconnectionConfig,
    WebSocketConfig,
    WebSocketReconnectionConfig,
)

REPO = Path(__file__).resolve().parents[2]

# Seconds; each can be overridden from the environment.
START_TIMEOUT = float(os.environ.get("GALGO_COMPAT_START_TIMEOUT", "20"))
STOP_TIMEOUT = float(os.environ.get("GALGO_COMPAT_STOP_TIMEOUT", "10"))
CALL_TIMEOUT = float(os.environ.get("GALGO_COMPAT_CALL_TIMEOUT", "15"))
TEST_TIMEOUT = float(os.environ.get("GALGO_COMPAT_TEST_TIMEOUT", "90"))

ROOT_USERNAME = "iggy"
ROOT_PASSWORD = "iggy"


class HarnessError(Exception):
    """The galgod process could not be started or stopped as the harness expects."""


def now_us() -> int:
    """Wall-clock time in microseconds since the Unix epoch (the unit of every Iggy timestamp)."""
    return time.time_ns() // 1000


_given_ports: set[int] = set()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A TCP (or, with SOCK_DGRAM, UDP) port on 127.0.0.1 that nothing is bound to right now, and not one
    handed out before in this session (the kernel may offer the same port twice in a row)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port


# The transports the `server` fixture runs every test over (comma-separated in GALGO_COMPAT_TRANSPORTS):
# "tcp", "quic", "http" (the REST API; tests of what the SDK has only on the binary transports are
# skipped there, see conftest.py) and "ws" (WebSocket, the SDK's WebSocketConfig).
TRANSPORTS = [t for t in os.environ.get("GALGO_COMPAT_TRANSPORTS", "tcp,quic,http,ws").split(",") if t]


def find_galgod() -> Path:
    """$GALGOD, else build-asan/galgod, else build/galgod; raise HarnessError if none is usable."""
    env = os.environ.get("GALGOD")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise HarnessError(f"GALGOD={env!r} is not an executable file")
        return path
    for candidate in (REPO / "build-asan" / "galgod", REPO / "build" / "galgod"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise HarnessError(
        "no galgod binary: set GALGOD=/path/to/galgod or build build-asan/galgod or build/galgod"
    )


START_MARKER = "----- galgod start #"


def _tail(path: Path, lines: int = 60, last_run_only: bool = False) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    if last_run_only and START_MARKER in text:
        text = text[text.rindex(START_MARKER) :].split("\n", 1)[-1]
    return "\n".join(text.splitlines()[-lines:])


# Servers started and not yet stopped: killed at interpreter exit (e.g. after Ctrl-C) so no galgod
# outlives the test run.
_live: set["GalgodServer"] = set()


@atexit.register
def _kill_leftovers() -> None:
    for srv in list(_live):
        srv._kill()


# Set when galgod once ran but never accepted a TCP connection: every later start in the same
# pytest session fails at once with this reason instead of waiting START_TIMEOUT again.
_never_listened: str | None = None


class GalgodServer:
    """One galgod process on a private data directory and a free loopback port.

    `start()`, `stop()` and `restart()` are synchronous (they may be called from inside an async
    test); `restart()` keeps the data directory and the port, so clients reconnect to the same
    address and the server must recover everything it had committed.
    """

    def __init__(self, workdir: Path, binary: Path | None = None, transport: str = "tcp"):
        if transport not in ("tcp", "quic", "http", "ws", "cluster"):
            raise HarnessError(f"unknown transport {transport!r}")
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.binary = binary
        self.transport = transport  # what server.client() connects with
        self.port = free_port()
        self.quic_port = free_port(socket.SOCK_DGRAM) if transport == "quic" else 0
        self.http_port = free_port() if transport == "http" else 0
        self.ws_port = free_port() if transport == "ws" else 0
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        self.generation = 0  # how many times galgod was started
        self.started_at_us = 0  # wall clock of the last start, µs since the epoch
        self.stderr_path = self.workdir / "galgod.stderr"
        self.stdout_path = self.workdir / "galgod.stdout"
        self._clients: list[Bounded] = []
        self.extra_args: list[str] = []  # more galgod flags, for every node
        # transport "cluster": this process is node 1 of three (TCP; the clients connect to node 1, and the
        # SDK moves to the metadata leader after login); nodes 2 and 3 are `peers`. Partition leaders are
        # spread over the nodes, so sends are forwarded between them.
        self.peers: list[subprocess.Popen | None] = []
        if transport == "cluster":
            self.raft_ports = [free_port() for _ in range(3)]
            self.tcp_ports = [self.port, free_port(), free_port()]
            self.roster = ",".join(
                f"{i + 1}@127.0.0.1:{self.raft_ports[i]}:{self.tcp_ports[i]}" for i in range(3)
            )

    # ----------------------------------------------------------------- process control

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def quic_address(self) -> str:
        return f"{self.host}:{self.quic_port}"

    @property
    def ws_address(self) -> str:
        return f"{self.host}:{self.ws_port}"

    def argv(self) -> list[str]:
        quic = ["--quic.enabled=false"]
        if self.transport == "quic":
            quic = ["--quic.enabled=true", f"--quic.address={self.quic_address}"]
        http = ["--http.enabled=false"]
        if self.transport == "http":
            http = ["--http.enabled=true", f"--http.address={self.host}:{self.http_port}"]
        ws = ["--websocket.enabled=false"]
        if self.transport == "ws":
            ws = ["--websocket.enabled=true", f"--websocket.address={self.ws_address}"]
        return self.node_argv(1) if self.transport == "cluster" else [
            str(self.binary),
            f"--node.data_dir={self.data_dir}",
            f"--tcp.address={self.address}",
            *quic,
            *http,
            *ws,
            "--with-default-root-credentials",
            *self.extra_args,
        ]

    def node_argv(self, node: int) -> list[str]:
        """The command line of cluster node `node` (1..3)."""
        data = self.data_dir if node == 1 else self.workdir / f"data{node}"
        return [
            str(self.binary),
            f"--node.id={node}",
            f"--node.data_dir={data}",
            f"--tcp.address={self.host}:{self.tcp_ports[node - 1]}",
            "--quic.enabled=false",
            "--http.enabled=false",
            "--websocket.enabled=false",
            f"--cluster.nodes={self.roster}",
            "--cluster.secret=compat-suite",
            "--cluster.election_timeout_ms=500",
            "--with-default-root-credentials",
            *self.extra_args,
        ]

    def _start_peers(self) -> None:
        self.peers = []
        for node in (2, 3):
            (self.workdir / f"data{node}").mkdir(parents=True, exist_ok=True)
            log = open(self.workdir / f"node{node}.log", "ab")
            try:
                self.peers.append(subprocess.Popen(
                    self.node_argv(node), cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                ))
            finally:
                log.close()

    def _wait_peers(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        for node, port in ((2, self.tcp_ports[1]), (3, self.tcp_ports[2])):
            while True:
                try:
                    with socket.create_connection((self.host, port), timeout=0.5):
                        break
                except OSError:
                    pass
                if time.monotonic() >= deadline:
                    raise HarnessError(f"cluster node {node} did not listen on {port}")
                time.sleep(0.05)

    def _stop_peers(self, kill: bool = False) -> None:
        problems = []
        for node, proc in zip((2, 3), self.peers):
            if proc is None or proc.poll() is not None:
                if proc is not None and proc.returncode != 0 and not kill:
                    problems.append(f"node {node} had exited with status {proc.returncode}")
                continue
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                rc = proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                problems.append(f"node {node} did not exit within {STOP_TIMEOUT:g}s of SIGTERM")
                continue
            if rc != 0 and not kill:
                problems.append(f"node {node} exited with status {rc}")
        self.peers = []
        if problems:
            log = "\n".join(_tail(self.workdir / f"node{n}.log", 30) for n in (2, 3))
            raise HarnessError("; ".join(problems) + "\n" + log)

    def start(self) -> None:
        if self.proc is not None:
            raise HarnessError("galgod is already running")
        if _never_listened is not None:
            raise HarnessError(
                "not starting galgod: earlier in this session it never accepted TCP connections "
                f"({_never_listened})"
            )
        if self.binary is None:
            self.binary = find_galgod()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.generation += 1
        self.started_at_us = now_us()
        # Append: a restart keeps the log of the previous run, separated by a marker.
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        marker = f"{START_MARKER}{self.generation}: {' '.join(self.argv())}\n".encode()
        out.write(marker)
        err.write(marker)
        out.flush()
        err.flush()
        if self.transport == "cluster":
            self._start_peers()
        try:
            # cwd = workdir so a ./galgo.ini in the caller's directory is never picked up.
            self.proc = subprocess.Popen(
                self.argv(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        finally:
            out.close()
            err.close()
        _live.add(self)
        self._wait_until_listening()
        if self.transport == "cluster":
            self._wait_peers()
            # Logins work once the elected metadata leader has created the root user and node 1 applied it.
            deadline = time.monotonic() + START_TIMEOUT
            while "metadata ready" not in _tail(self.stderr_path, 400, True):
                if time.monotonic() >= deadline:
                    raise HarnessError(f"the cluster's metadata did not become ready; stderr:\n{self.stderr_tail()}")
                time.sleep(0.05)

    def _wait_until_listening(self) -> None:
        global _never_listened
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._forget()
                raise HarnessError(
                    f"galgod ({self.binary}) exited with status {rc} before accepting TCP "
                    f"connections on {self.address}; stderr:\n{self.stderr_tail() or '(empty)'}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    # QUIC, HTTP and WebSocket are bound after the TCP listener: the "ready" line says when.
                    if self.transport == "tcp" or "galgod ready" in _tail(self.stderr_path, 400, True):
                        return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                reason = (
                    f"galgod ({self.binary}, pid {self.proc.pid}) did not accept a TCP connection "
                    f"on {self.address} within {START_TIMEOUT:g}s"
                )
                _never_listened = reason
                self._kill()
                raise HarnessError(f"{reason}; stderr:\n{self.stderr_tail() or '(empty)'}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, wait up to STOP_TIMEOUT; then SIGKILL and raise. Also raise on a non-zero exit."""
        if self.proc is None:
            return
        proc = self.proc
        rc = proc.poll()
        if rc is not None:
            self._forget()
            raise HarnessError(
                f"galgod (pid {proc.pid}) had already exited with status {rc} before it was "
                f"asked to stop; stderr:\n{self.stderr_tail()}"
            )
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill()
            raise HarnessError(
                f"galgod (pid {proc.pid}) did not exit within {STOP_TIMEOUT:g}s of SIGTERM and "
                f"was killed; stderr:\n{self.stderr_tail()}"
            ) from None
        self._forget()
        if rc != 0:
            self._stop_peers(kill=True)
            raise HarnessError(
                f"galgod (pid {proc.pid}) exited with status {rc} after SIGTERM (expected 0); "
                f"stderr:\n{self.stderr_tail()}"
            )
        self._stop_peers()

    def restart(self) -> None:
        """Stop galgod cleanly and start it again on the same data directory and port."""
        self.stop()
        self.start()

    def crash_restart(self) -> None:
        """kill -9 galgod (every node of a cluster) and start it again on the same data directory and port."""
        self._kill()
        self.start()

    def _kill(self) -> None:
        self._stop_peers(kill=True)
        if self.proc is None:
            return
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._forget()

    def _forget(self) -> None:
        """The process is gone (or was never started): drop it."""
        self.proc = None
        _live.discard(self)

    def stderr_tail(self, lines: int = 60) -> str:
        """The last lines galgod's most recent run wrote to stderr."""
        return _tail(self.stderr_path, lines, last_run_only=True)

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            text = _tail(path, lines)
            if text:
                parts.append(f"[{label}]\n{text}")
        return "\n".join(parts)

    # ----------------------------------------------------------------- clients

    def tcp_config(self, *, auto_login: AutoLogin | None = None, reconnect: bool = False) -> TcpConfig:
        """TCP config for this server. Reconnection is off unless asked for, so a dead server
        fails a call at once instead of leaving it in the SDK's (by default endless) retry loop."""
        if reconnect:
            reconnection = TcpReconnectionConfig(
                enabled=True,
                max_retries=40,
                interval=timedelta(milliseconds=250),
                reestablish_after=timedelta(0),
            )
        else:
            reconnection = TcpReconnectionConfig(enabled=False)
        return TcpConfig(
            server_address=self.address,
            auto_login=auto_login or AutoLogin.disabled(),
            reconnection=reconnection,
        )

    def quic_config(self, *, auto_login: AutoLogin | None = None, reconnect: bool = False) -> QuicConfig:
        """QUIC config for this server (the development certificate is not validated, as Iggy's SDK
        defaults); reconnection as in tcp_config."""
        if reconnect:
            reconnection = QuicReconnectionConfig(
                enabled=True,
                max_retries=40,
                interval=timedelta(milliseconds=250),
                reestablish_after=timedelta(0),
            )
        else:
            reconnection = QuicReconnectionConfig(enabled=False)
        return QuicConfig(
            server_address=self.quic_address,
            auto_login=auto_login or AutoLogin.disabled(),
            reconnection=reconnection,
        )

    def ws_config(self, *, auto_login: AutoLogin | None = None, reconnect: bool = False) -> WebSocketConfig:
        """WebSocket config for this server (ws://, the SDK's own framing defaults); reconnection as in
        tcp_config."""
        if reconnect:
            reconnection = WebSocketReconnectionConfig(
                enabled=True,
                max_retries=40,
                interval=timedelta(milliseconds=250),
                reestablish_after=timedelta(0),
            )
        else:
            reconnection = WebSocketReconnectionConfig(enabled=False)
        return WebSocketConfig(
            server_address=self.ws_address,
            auto_login=auto_login or AutoLogin.disabled(),
            reconnection=reconnection,
        )

    def http_config(self, *, auto_login: AutoLogin | None = None, reconnect: bool = False) -> HttpConfig:
        """HTTP config for this server: no automatic replays (as the binary transports); HttpConfig has no
        auto-login and no reconnection, so neither may be asked for."""
        assert auto_login is None and not reconnect, "HttpConfig has no auto-login or reconnection"
        return HttpConfig(api_url=f"http://{self.host}:{self.http_port}", retries=0)

    def config(
        self, *, auto_login: AutoLogin | None = None, reconnect: bool = False
    ) -> TcpConfig | QuicConfig | HttpConfig | WebSocketConfig:
        """The SDK config of this server's transport (see `transport`)."""
        make = {"quic": self.quic_config, "http": self.http_config, "ws": self.ws_config}.get(
            self.transport, self.tcp_config
        )
        return make(auto_login=auto_login, reconnect=reconnect)

    async def client(
        self,
        username: str | None = ROOT_USERNAME,
        password: str | None = ROOT_PASSWORD,
        *,
        connect: bool = True,
        reconnect: bool = False,
    ) -> "Bounded":
        """A new connected IggyClient; logged in with `login_user(username, password)` unless
        `username` is None."""
        c = Bounded(IggyClient(self.config(reconnect=reconnect)), "IggyClient")
        self._clients.append(c)
        if connect:
            await c.connect()
            if username is not None:
                await c.login_user(username, password)
        return c

    def wrap(self, raw: IggyClient) -> "Bounded":
        c = Bounded(raw, "IggyClient")
        self._clients.append(c)
        return c


# --------------------------------------------------------------------------- bounded SDK calls


class Bounded:
    """Proxy for an SDK object whose every awaitable result is wrapped in asyncio.wait_for.

    `await client.get_streams()` behaves as usual but raises `asyncio.TimeoutError` naming the
    call if it does not complete within CALL_TIMEOUT; pass `_timeout=` to a call to change it.
    Returned IggyConsumer / IggyProducer objects are wrapped too, as are `iter_messages()`
    iterators. `.raw` is the wrapped object.
    """

    __slots__ = ("raw", "_label")

    def __init__(self, raw: Any, label: str):
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "_label", label)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if not callable(attr):
            return attr
        label = f"{self._label}.{name}"

        def call(*args: Any, _timeout: float | None = None, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                return _bounded_await(result, label, _timeout or CALL_TIMEOUT)
            if name == "iter_messages":
                return BoundedIterator(result, label)
            return result

        return call

    async def __aenter__(self) -> "Bounded":
        await _bounded_await(self.raw.__aenter__(), f"{self._label}.__aenter__", CALL_TIMEOUT)
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await _bounded_await(self.raw.__aexit__(*exc), f"{self._label}.__aexit__", CALL_TIMEOUT)

    def __repr__(self) -> str:
        return f"Bounded({self.raw!r})"


async def _bounded_await(awaitable: Any, label: str, timeout: float) -> Any:
    try:
        result = await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise asyncio.TimeoutError(f"{label}(...) did not complete within {timeout:g}s") from None
    if isinstance(result, IggyConsumer):
        return Bounded(result, "IggyConsumer")
    if isinstance(result, IggyProducer):
        return Bounded(result, "IggyProducer")
    return result


class BoundedIterator:
    """`async for` over IggyConsumer.iter_messages() with a bounded wait for each message."""

    def __init__(self, raw: Any, label: str):
        self.raw = raw
        self.label = label

    def __aiter__(self) -> "BoundedIterator":
        return self

    async def __anext__(self, timeout: float | None = None) -> Any:
        return await _bounded_await(self.raw.__anext__(), f"{self.label}.__anext__", timeout or CALL_TIMEOUT)

    async def next(self, timeout: float | None = None) -> Any:
        return await self.__anext__(timeout)


# --------------------------------------------------------------------------- assertions helpers


async def expect_error(awaitable: Any, pattern: str, exc_type: type = RuntimeError) -> BaseException:
    """Await `awaitable`, assert it raises `exc_type` whose message matches `pattern` (re.search,
    case-insensitive); return the exception."""
    with pytest.raises(exc_type) as info:
        await awaitable
    message = str(info.value)
    assert re.search(pattern, message, re.IGNORECASE), (
        f"expected an error matching {pattern!r}, got {type(info.value).__name__}: {message!r}"
    )
    return info.value


async def eventually(probe, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    """Await `probe()` until it returns a truthy value; return that value or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} did not hold within {timeout:g}s (last value: {last!r})")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- XXH32

_P1, _P2, _P3, _P4, _P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
_M32 = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def xxh32(data: bytes, seed: int = 0) -> int:
    """XXH32 (the hash Iggy uses to map a messages key to a partition: xxh32(key, 0) % count)."""
    n = len(data)
    i = 0
    if n >= 16:
        v = [(seed + _P1 + _P2) & _M32, (seed + _P2) & _M32, seed & _M32, (seed - _P1) & _M32]
        while i + 16 <= n:
            for lane in range(4):
                word = int.from_bytes(data[i : i + 4], "little")
                v[lane] = (_rotl((v[lane] + word * _P2) & _M32, 13) * _P1) & _M32
                i += 4
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M32
    else:
        h = (seed + _P5) & _M32
    h = (h + n) & _M32
    while i + 4 <= n:
        h = (h + int.from_bytes(data[i : i + 4], "little") * _P3) & _M32
        h = (_rotl(h, 17) * _P4) & _M32
        i += 4
    while i < n:
        h = (h + data[i] * _P5) & _M32
        h = (_rotl(h, 11) * _P1) & _M32
        i += 1
    h ^= h >> 15
    h = (h * _P2) & _M32
    h ^= h >> 13
    h = (h * _P3) & _M32
    h ^= h >> 16
    return h


# --------------------------------------------------------------------------- message helpers

DEFAULT_CONSUMER = "compat-reader"


def messages(*payloads: bytes | str) -> list[SendMessage]:
    """SendMessage objects for the given payloads."""
    return [SendMessage(p) for p in payloads]


def numbered(prefix: str, n: int, start: int = 0) -> list[bytes]:
    """n distinct payloads: b"prefix-<start>" .. b"prefix-<start+n-1>"."""
    return [f"{prefix}-{i}".encode() for i in range(start, start + n)]


async def poll(
    client: Bounded,
    stream: str | int,
    topic: str | int,
    partition_id: int | None = 0,
    strategy: Any = None,
    count: int = 1000,
    consumer: Any = None,
    auto_commit: bool = False,
) -> list:
    """poll_messages with the suite's defaults: single consumer "compat-reader", First, no commit."""
    return await client.poll_messages(
        stream,
        topic,
        consumer=consumer if consumer is not None else Consumer.Single(DEFAULT_CONSUMER),
        polling_strategy=strategy if strategy is not None else PollingStrategy.First(),
        count=count,
        auto_commit=auto_commit,
        partition_id=partition_id,
    )


def payloads_of(received: list) -> list[bytes]:
    return [m.payload() for m in received]


def offsets_of(received: list) -> list[int]:
    return [m.offset() for m in received]
