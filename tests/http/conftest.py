"""Fixtures of the HTTP API suite: one galgod for the whole module, with its HTTP listener on.

galgod is $GALGOD, else build-asan/galgod, else build/galgod, started on a fresh data directory
with the TCP and HTTP listeners on free loopback ports and --with-default-root-credentials
(iggy/iggy). It is stopped with SIGTERM at the end, and must then exit with status 0 (under ASan a
leak would make that fail).
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
START_TIMEOUT = float(os.environ.get("GALGO_HTTP_START_TIMEOUT", "20"))
STOP_TIMEOUT = float(os.environ.get("GALGO_HTTP_STOP_TIMEOUT", "10"))

# The largest request body the test server accepts (--http.max_request_size); above it: 413.
MAX_REQUEST_SIZE = 256 * 1024


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
    def __init__(self, workdir: Path, extra_args: list[str] | None = None):
        self.workdir = workdir
        self.extra_args = list(extra_args or [])
        self.http_port = free_port()
        self.tcp_port = free_port()
        while self.tcp_port == self.http_port:
            self.tcp_port = free_port()
        self.stderr_path = workdir / "galgod.stderr"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [
            str(find_galgod()),
            f"--node.data_dir={self.workdir / 'data'}",
            f"--tcp.address=127.0.0.1:{self.tcp_port}",
            "--quic.enabled=false",
            "--websocket.enabled=false",
            "--http.enabled=true",
            f"--http.address=127.0.0.1:{self.http_port}",
            f"--http.max_request_size={MAX_REQUEST_SIZE}",
            "--with-default-root-credentials",
            *self.extra_args,
        ]
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"galgod exited with {self.proc.returncode}:\n{self.stderr()}", pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    pytest.fail(f"galgod did not listen within {START_TIMEOUT}s:\n{self.stderr()}", pytrace=False)
                time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM; the exit status, or -999 if galgod had to be killed after `timeout` seconds."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -999

    def stderr(self) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-60:])
        except FileNotFoundError:
            return ""


@pytest.fixture(scope="module")
def galgod(tmp_path_factory):
    srv = Galgod(tmp_path_factory.mktemp("galgod-http"))
    srv.start()
    yield srv
    rc = srv.stop()
    assert rc == 0, f"galgod exited with status {rc} after SIGTERM; stderr:\n{srv.stderr()}"
