"""Fixtures and hooks of the Iggy-compatibility suite (see README.md).

* `server`: a fresh galgod for each test (own data directory, own port), stopped with SIGTERM at
  the end of the test; `server.restart()` restarts it on the same data directory and port.
* Clients are made inside the test (they must live in the test's event loop):
  `c = await server.client()` is connected and logged in as iggy/iggy; see `GalgodServer.client`.
* `async def test_...` functions are run with `asyncio.run`, bounded by GALGO_COMPAT_TEST_TIMEOUT
  (no pytest-asyncio needed); tests marked `@pytest.mark.timeout_s(N)` get N seconds instead.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from galgo_compat import TEST_TIMEOUT, TRANSPORTS, GalgodServer, HarnessError  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timeout_s(seconds): overall time limit of one async test")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """Run `async def` tests in a fresh event loop, bounded by a per-test time limit."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    marker = pyfuncitem.get_closest_marker("timeout_s")
    limit = float(marker.args[0]) if marker else TEST_TIMEOUT
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def bounded():
        try:
            await asyncio.wait_for(pyfuncitem.obj(**kwargs), limit)
        except asyncio.TimeoutError as e:
            if str(e):  # a single SDK call timed out: its message names the call
                raise
            pytest.fail(f"test did not finish within {limit:g}s", pytrace=False)

    asyncio.run(bounded())
    return True


@pytest.fixture(params=TRANSPORTS)
def server(request, tmp_path: Path):
    """A galgod of its own for this test, started before and stopped (SIGTERM) after it; the test runs
    once per transport of TRANSPORTS (its clients connect over that one)."""
    srv = GalgodServer(tmp_path / "galgod", transport=request.param)
    problem = None
    try:
        srv.start()
    except HarnessError as e:
        problem = str(e)
    if problem:
        pytest.fail(problem, pytrace=False)
    yield srv
    srv._clients.clear()  # the test's SDK clients are dropped with their server
    if srv.proc is not None and srv.proc.poll() is not None:
        rc = srv.proc.returncode
        srv._forget()
        pytest.fail(f"galgod exited during the test with status {rc}; stderr:\n{srv.stderr_tail()}", pytrace=False)
    try:
        srv.stop()
    except HarnessError as e:
        problem = str(e)
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Attach the tail of galgod's log to the report of a failed test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        srv = getattr(item, "funcargs", {}).get("server")
        if isinstance(srv, GalgodServer):
            log = srv.log_tail(80)
            if log:
                report.sections.append(("galgod log (tail)", log))
