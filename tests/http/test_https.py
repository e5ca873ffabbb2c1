"""HTTPS (http.tls_enabled): the REST API inside TLS, ALPN h2 and http/1.1, the development certificate,
and a clean exit on SIGTERM whatever half-made connections are open at the time."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time

import pytest

from conftest import Galgod

TIMEOUT = 15
# galgod must be gone this long after SIGTERM even with broken connections open (it takes
# milliseconds; the bound only has to be far below the harness's own kill timeout).
EXIT_BOUND_S = 5.0


def start_https(tmp_path, *extra) -> Galgod:
    tmp_path.mkdir(parents=True, exist_ok=True)
    srv = Galgod(tmp_path, ["--http.tls_enabled=true", *extra])
    srv.start()
    return srv


def tls_context(srv: Galgod, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(srv.workdir / "data" / "tls" / "cert.pem"))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def https_call(srv: Galgod, method: str, path: str, body=None, token: str | None = None):
    conn = http.client.HTTPSConnection("localhost", srv.http_port, timeout=TIMEOUT, context=tls_context(srv))
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture
def https(tmp_path):
    srv = start_https(tmp_path)
    yield srv
    if srv.proc.poll() is None:
        rc = srv.stop()
        assert rc == 0, f"galgod exited with status {rc} after SIGTERM; stderr:\n{srv.stderr()}"


def test_dev_certificate_is_made_and_logged(https):
    cert = https.workdir / "data" / "tls" / "cert.pem"
    assert cert.is_file()
    assert str(cert) in https.stderr() and "HTTPS" in https.stderr()


def test_rest_api_over_https_http11(https):
    status, body = https_call(https, "GET", "/ping")
    assert (status, body) == (200, b"pong")
    status, body = https_call(https, "POST", "/users/login", {"username": "iggy", "password": "iggy"})
    assert status == 200, body
    token = json.loads(body)["access_token"]["token"]
    status, body = https_call(https, "POST", "/streams", {"name": "tls-stream"}, token=token)
    assert status == 200, body
    status, body = https_call(https, "GET", "/streams", token=token)
    assert status == 200 and [s["name"] for s in json.loads(body)] == ["tls-stream"]


@pytest.mark.parametrize("offer,expect", [(["h2", "http/1.1"], "h2"), (["http/1.1"], None), (None, None)])
def test_alpn(https, offer, expect):
    """h2 is chosen when offered; a client offering only http/1.1 (or nothing) gets no ALPN answer and
    is served HTTP/1.1."""
    with socket.create_connection(("127.0.0.1", https.http_port), timeout=TIMEOUT) as raw:
        with tls_context(https, offer).wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == expect
            if expect is None:
                s.sendall(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"pong"), data


def test_untrusted_client_is_refused(https):
    ctx = ssl.create_default_context()  # system roots: the development certificate is not among them
    with socket.create_connection(("127.0.0.1", https.http_port), timeout=TIMEOUT) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    assert https_call(https, "GET", "/ping")[0] == 200


def test_plain_http_on_https_port_is_closed(https):
    with socket.create_connection(("127.0.0.1", https.http_port), timeout=TIMEOUT) as s:
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert b"pong" not in data
    assert https_call(https, "GET", "/ping")[0] == 200


def test_configured_certificate_is_used(tmp_path):
    dev = start_https(tmp_path / "a")
    cert, key = dev.workdir / "data" / "tls" / "cert.pem", dev.workdir / "data" / "tls" / "key.pem"
    try:
        other = start_https(tmp_path / "b", f"--http.tls_cert={cert}", f"--http.tls_key={key}")
        try:
            assert not (other.workdir / "data" / "tls").exists()
            ctx = ssl.create_default_context(cafile=str(cert))
            with socket.create_connection(("127.0.0.1", other.http_port), timeout=TIMEOUT) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost"):
                    pass
        finally:
            assert other.stop() == 0
    finally:
        assert dev.stop() == 0


def test_missing_key_is_a_startup_error(tmp_path):
    srv = Galgod(tmp_path, ["--http.tls_enabled=true", f"--http.tls_cert={tmp_path}/nope.pem"])
    with pytest.raises(BaseException):
        srv.start()  # fails the test through pytest.fail, which is what we expect here
    assert srv.proc.wait(timeout=TIMEOUT) != 0
    assert "TLS (http)" in srv.stderr()


@pytest.mark.parametrize("pattern", ["bare+plain", "plain+bare", "bare+half-hello+plain", "tls-idle+bare+plain"])
def test_sigterm_with_broken_connections_open(tmp_path, pattern):
    """A bare TCP connect and a plain-HTTP request (and other half-made connections) on the HTTPS port just
    before SIGTERM: galgod still exits 0 within EXIT_BOUND_S."""
    srv = start_https(tmp_path)
    opened = []
    try:
        for kind in pattern.split("+"):
            s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=TIMEOUT)
            opened.append(s)
            if kind == "plain":
                s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            elif kind == "half-hello":
                s.sendall(bytes.fromhex("16030102000100"))  # a ClientHello record header, body never sent
            elif kind == "tls-idle":
                opened[-1] = tls_context(srv, ["h2"]).wrap_socket(s, server_hostname="localhost")
        started = time.monotonic()
        rc = srv.stop(timeout=EXIT_BOUND_S)
        took = time.monotonic() - started
        assert rc == 0, f"galgod {'hung' if rc == -999 else f'exited {rc}'} after SIGTERM ({took:.1f}s):\n{srv.stderr()}"
    finally:
        for s in opened:
            s.close()
