"""The suite's own harness, checked against a stand-in process (fake_galgod.py), not against galgod."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path

import pytest

import galgo_compat
from galgo_compat import Bounded, GalgodServer, HarnessError, xxh32

FAKE = Path(__file__).resolve().parent / "fake_galgod.py"


@pytest.fixture(autouse=True)
def isolated_harness(monkeypatch):
    """Harness tests neither see nor leave behind the suite's "galgod never listened" verdict."""
    monkeypatch.setattr(galgo_compat, "_never_listened", None)


@pytest.fixture
def fake_binary(tmp_path: Path) -> Path:
    """An executable that runs fake_galgod.py with this interpreter."""
    path = tmp_path / "fake-galgod"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_env(monkeypatch):
    """Set fake_galgod.py switches for this test only."""

    def set_switch(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)

    return set_switch


def test_the_harness_starts_galgod_with_the_agreed_flags(tmp_path, fake_binary):
    """start() passes data dir, TCP address, QUIC/HTTP off and default root credentials, then connects."""
    srv = GalgodServer(tmp_path / "w", binary=fake_binary)
    srv.start()
    try:
        line = (srv.data_dir / "starts").read_text().splitlines()[0]
        assert line.split(" ", 1)[1] == (
            f"--node.data_dir={srv.data_dir} --tcp.address=127.0.0.1:{srv.port} "
            "--quic.enabled=false --http.enabled=false --websocket.enabled=false --with-default-root-credentials"
        )
    finally:
        srv.stop()
    assert srv.proc is None


def test_restart_reuses_the_data_directory_and_port(tmp_path, fake_binary):
    """restart() stops the process and starts a new one on the same data directory and port."""
    srv = GalgodServer(tmp_path / "w", binary=fake_binary)
    srv.start()
    first_pid, port = srv.pid, srv.port
    srv.restart()
    try:
        starts = (srv.data_dir / "starts").read_text().splitlines()
        assert len(starts) == 2
        assert srv.pid != first_pid and srv.port == port
        assert all(f"--tcp.address=127.0.0.1:{port}" in s for s in starts)
    finally:
        srv.stop()


def test_a_galgod_that_exits_at_once_fails_fast_with_its_stderr(tmp_path, fake_binary, fake_env):
    """A process that exits before listening fails start() at once, quoting its status and stderr."""
    fake_env("FAKE_GALGOD_FAIL", "cannot open data dir: disk on fire")
    srv = GalgodServer(tmp_path / "w", binary=fake_binary)
    t0 = time.monotonic()
    with pytest.raises(HarnessError, match=r"(?s)exited with status 2 .*stderr:\ncannot open data dir: disk on fire$"):
        srv.start()
    assert time.monotonic() - t0 < 5


def test_bin_false_as_galgod_fails_fast(tmp_path):
    """GALGOD=/bin/false fails start() immediately with its exit status."""
    srv = GalgodServer(tmp_path / "w", binary=Path("/bin/false"))
    t0 = time.monotonic()
    with pytest.raises(HarnessError, match=r"exited with status 1 before accepting TCP connections"):
        srv.start()
    assert time.monotonic() - t0 < 5


def test_a_galgod_that_never_listens_fails_once_then_at_once(tmp_path, fake_binary, fake_env, monkeypatch):
    """A process that never listens fails after the start timeout; later starts fail immediately."""
    fake_env("FAKE_GALGOD_NO_LISTEN", "1")
    monkeypatch.setattr(galgo_compat, "START_TIMEOUT", 1.0)
    srv = GalgodServer(tmp_path / "w", binary=fake_binary)
    with pytest.raises(HarnessError, match=r"did not accept a TCP connection .* within 1s"):
        srv.start()
    assert srv.proc is None
    t0 = time.monotonic()
    with pytest.raises(HarnessError, match=r"earlier in this session it never accepted"):
        GalgodServer(tmp_path / "w2", binary=fake_binary).start()
    assert time.monotonic() - t0 < 0.5


def test_a_galgod_ignoring_sigterm_is_killed_and_reported(tmp_path, fake_binary, fake_env, monkeypatch):
    """stop() SIGKILLs a process that outlives the stop timeout and raises."""
    fake_env("FAKE_GALGOD_IGNORE_TERM", "1")
    monkeypatch.setattr(galgo_compat, "STOP_TIMEOUT", 1.0)
    srv = GalgodServer(tmp_path / "w", binary=fake_binary)
    srv.start()
    pid = srv.pid
    with pytest.raises(HarnessError, match=r"did not exit within 1s of SIGTERM"):
        srv.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_non_zero_exit_on_sigterm_is_reported(tmp_path, fake_binary, fake_env):
    """stop() raises when the process exits with a non-zero status after SIGTERM."""
    fake_env("FAKE_GALGOD_EXIT_STATUS", "3")
    srv = GalgodServer(tmp_path / "w", binary=fake_binary)
    srv.start()
    with pytest.raises(HarnessError, match=r"exited with status 3 after SIGTERM"):
        srv.stop()


async def test_a_hung_sdk_call_times_out_naming_the_call(tmp_path, fake_binary):
    """A server that accepts but never answers makes a bounded call fail with the call's name."""
    srv = GalgodServer(tmp_path / "w", binary=fake_binary)
    srv.start()
    try:
        c = await srv.client(username=None, connect=False)
        assert isinstance(c, Bounded)
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError, match=r"IggyClient\.(connect|login_user)\(\.\.\.\) did not complete within 1s"):
            await c.connect(_timeout=1)
            await c.login_user("iggy", "iggy", _timeout=1)
        assert time.monotonic() - t0 < 5
    finally:
        srv.stop()


def test_xxh32_matches_reference_vectors():
    """The suite's XXH32 matches the published test vectors of the reference implementation."""
    assert xxh32(b"") == 0x02CC5D05
    assert xxh32(b"a") == 0x550D7456
    assert xxh32(b"abc") == 0x32D153FF
    assert xxh32(b"Nobody inspects the spammish repetition") == 0xE2293B2F
    assert xxh32(b"", seed=1) == 0x0B2CB792


async def test_the_sdk_connects_logs_in_and_survives_a_restart_through_the_harness(tmp_path, fake_binary, fake_env):
    """Against a stand-in speaking a sliver of the protocol, server.client() logs in and restart() keeps data."""
    fake_env("FAKE_GALGOD_IGGY", "1")
    srv = GalgodServer(tmp_path / "w", binary=fake_binary)
    srv.start()
    try:
        c = await srv.client()
        await c.create_stream("kept")
        await c.create_stream("second")
        await c.delete_stream(0)
        srv.restart()
        c = await srv.client()
        assert [(s.id, s.name) for s in await c.get_streams()] == [(1, "second")]
        await c.create_stream("again")
        assert (await c.get_stream("again")).id == 0
    finally:
        srv.stop()
