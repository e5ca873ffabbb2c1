"""TLS on the TCP listener: the official SDK connects over TLS, verifying galgod's development certificate."""

from __future__ import annotations

from pathlib import Path

import pytest
from apache_iggy import AutoLogin, IggyClient, TcpConfig, TcpReconnectionConfig

from galgo_compat import Bounded, GalgodServer, HarnessError, messages, payloads_of, poll


class TlsGalgodServer(GalgodServer):
    """A galgod with --tcp.tls_enabled=true; it makes its certificate in <data_dir>/tls on first start."""

    def argv(self) -> list[str]:
        return super().argv() + ["--tcp.tls_enabled=true"]

    @property
    def cert(self) -> Path:
        return self.data_dir / "tls" / "cert.pem"

    def tls_client(self) -> Bounded:
        config = TcpConfig(
            server_address=self.address,
            auto_login=AutoLogin.disabled(),
            reconnection=TcpReconnectionConfig(enabled=False),
            tls_enabled=True,
            tls_domain="localhost",
            tls_ca_file=str(self.cert),
        )
        return self.wrap(IggyClient(config))


@pytest.fixture
def tls_server(tmp_path: Path):
    """A TLS galgod of its own for this test, stopped (SIGTERM) after it."""
    srv = TlsGalgodServer(tmp_path / "galgod")
    try:
        srv.start()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    yield srv
    srv._clients.clear()
    try:
        srv.stop()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


async def test_sdk_sends_and_polls_over_tls(tls_server):
    """Login, ping, metadata and a poll reply larger than one TLS record, all over a verified TLS session."""
    assert tls_server.cert.exists()
    c = tls_server.tls_client()
    await c.connect()
    await c.login_user("iggy", "iggy")
    await c.ping()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    payloads = [bytes([i % 251]) * 1500 for i in range(100)]
    for i in range(0, len(payloads), 25):
        await c.send_messages("s", "t", 0, messages(*payloads[i : i + 25]))
    got = await poll(c, "s", "t")
    assert payloads_of(got) == payloads
