"""Fixtures of the WebSocket suite: one galgod per test module, with its WebSocket listener on.

galgod is $GALGOD, else build-asan/galgod, else build/galgod, started on a fresh data directory with the
TCP and WebSocket listeners on free loopback ports (QUIC and HTTP off) and --with-default-root-credentials
(iggy/iggy); `wss` is a second one whose WebSocket listener is inside TLS with the development
certificate. Each is stopped with SIGTERM at the end and must then exit with status 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = float(os.environ.get("GALGO_WS_START_TIMEOUT", "20"))
STOP_TIMEOUT = float(os.environ.get("GALGO_WS_STOP_TIMEOUT", "10"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_galgod() -> Path:
    env = os.environ.get("GALGOD")
    if env:
        return Path(env)
    for candidate in (REPO / "build-asan" / "galgod", REPO / "build" / "galgod"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("no galgod binary: set GALGOD or build build-asan/galgod", pytrace=False)


class Galgod:
    def __init__(self, workdir: Path, tls: bool):
        self.workdir = workdir
        self.tls = tls
        self.tcp_port = free_port()
        self.ws_port = free_port()
        while self.ws_port == self.tcp_port:
            self.ws_port = free_port()
        self.stderr_path = workdir / "galgod.stderr"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://localhost:{self.ws_port}/"

    def start(self) -> None:
        argv = [
            str(find_galgod()),
            f"--node.data_dir={self.workdir / 'data'}",
            f"--tcp.address=127.0.0.1:{self.tcp_port}",
            "--quic.enabled=false",
            "--http.enabled=false",
            f"--websocket.address=127.0.0.1:{self.ws_port}",
            f"--websocket.tls_enabled={'true' if self.tls else 'false'}",
            "--with-default-root-credentials",
        ]
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"galgod exited with {self.proc.returncode}:\n{self.stderr()}", pytrace=False)
            if b"galgod ready" in self.stderr_path.read_bytes():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"galgod not ready within {START_TIMEOUT:g}s:\n{self.stderr()}", pytrace=False)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode(errors="replace")[-4000:]


def _galgod(tmp_path_factory, name: str, tls: bool):
    g = Galgod(tmp_path_factory.mktemp(name), tls)
    g.start()
    yield g
    rc = g.stop()
    assert rc == 0, f"galgod exited with {rc}:\n{g.stderr()}"


@pytest.fixture(scope="module")
def galgod(tmp_path_factory):
    yield from _galgod(tmp_path_factory, "ws", False)


@pytest.fixture(scope="module")
def galgod_tls(tmp_path_factory):
    yield from _galgod(tmp_path_factory, "wss", True)
