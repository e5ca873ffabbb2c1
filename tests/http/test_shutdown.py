"""Shutdown: galgod exits 0 within a bound after SIGTERM whatever its clients do, and a request it answers
58 (TransientNotAccepted, "not admitted, retry") during a shutdown never takes effect.

The bound: admitted requests get up to 3 s to be answered (the drain), everything left is closed by 5 s;
EXIT_BOUND_S leaves room for the teardown and a slow machine."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import signal
import socket
import ssl
import struct
import threading
import time

import pytest

from conftest import Galgod, free_port

TIMEOUT = 15
EXIT_BOUND_S = 6.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp_path, *extra) -> Galgod:
    tmp_path.mkdir(parents=True, exist_ok=True)
    srv = Galgod(tmp_path, list(extra))
    srv.start()
    return srv


def stop_within_bound(srv: Galgod) -> float:
    """SIGTERM; asserts exit status 0 within EXIT_BOUND_S and returns the seconds it took."""
    started = time.monotonic()
    rc = srv.stop(timeout=EXIT_BOUND_S)
    took = time.monotonic() - started
    assert rc == 0, f"galgod {'hung' if rc == -999 else f'exited {rc}'} after SIGTERM ({took:.1f}s):\n{srv.stderr()}"
    assert took < EXIT_BOUND_S
    return took


def tls_context(srv: Galgod, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(srv.workdir / "data" / "tls" / "cert.pem"))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def reset_on_close(s: socket.socket) -> None:
    """close() then sends a TCP reset instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# ---- exit within the bound whatever the clients do


def test_sigterm_after_h2_clients_reset_their_tls_connections(tmp_path):
    """Clients that negotiate h2 over TLS and reset the connection without a request (TLS health checks,
    port scanners), and one that stays idle: galgod still exits 0 within the bound."""
    srv = start(tmp_path, "--http.tls_enabled=true")
    idle = None
    try:
        for _ in range(8):
            raw = socket.create_connection(("127.0.0.1", srv.http_port), timeout=TIMEOUT)
            reset_on_close(raw)
            s = tls_context(srv, ["h2", "http/1.1"]).wrap_socket(raw, server_hostname="localhost")
            assert s.selected_alpn_protocol() == "h2"
            time.sleep(0.02)  # the server's SETTINGS arrive, unread: the close is a reset
            s.close()
        raw = socket.create_connection(("127.0.0.1", srv.http_port), timeout=TIMEOUT)
        idle = tls_context(srv, ["h2"]).wrap_socket(raw, server_hostname="localhost")
        time.sleep(0.1)
        stop_within_bound(srv)
    finally:
        if idle is not None:
            idle.close()
        if srv.proc.poll() is None:
            srv.proc.kill()


@pytest.mark.parametrize("kind", ["half-handshake", "plain-http", "bare"])
def test_sigterm_with_a_stuck_client_on_the_https_port(tmp_path, kind):
    """A TLS handshake stopped halfway, a plain HTTP request on the HTTPS port, or a bare TCP connect, held
    open: galgod exits 0 within the bound."""
    srv = start(tmp_path, "--http.tls_enabled=true")
    held = []
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", srv.http_port), timeout=TIMEOUT)
            held.append(s)
            if kind == "half-handshake":
                s.sendall(bytes.fromhex("16030102000100"))  # a ClientHello record header, its body never sent
            elif kind == "plain-http":
                s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        stop_within_bound(srv)
    finally:
        for s in held:
            s.close()
        if srv.proc.poll() is None:
            srv.proc.kill()


def test_sigterm_with_bare_connects_on_every_listener(tmp_path):
    """Bare TCP connects (nothing sent) held open on the binary TCP port, the HTTP port and the node-to-node
    Raft port: galgod exits 0 within the bound."""
    raft = free_port()
    srv = Galgod(tmp_path, [])
    srv.extra_args = [f"--cluster.nodes=1@127.0.0.1:{raft}:{srv.tcp_port}", "--cluster.secret=shutdown-test"]
    srv.start()
    held = []
    try:
        for port in (srv.tcp_port, srv.http_port, raft):
            for _ in range(2):
                held.append(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
        time.sleep(0.1)
        stop_within_bound(srv)
    finally:
        for s in held:
            s.close()
        if srv.proc.poll() is None:
            srv.proc.kill()


def test_sigterm_with_idle_quic_connections(tmp_path):
    """Logged-in QUIC clients that stay idle: galgod exits 0 within the bound."""
    from apache_iggy import AutoLogin, IggyClient, QuicConfig, QuicReconnectionConfig

    qport = free_udp_port()
    srv = start(tmp_path, "--quic.enabled=true", f"--quic.address=127.0.0.1:{qport}")

    async def run():
        clients = []
        for _ in range(3):
            c = IggyClient(QuicConfig(server_address=f"127.0.0.1:{qport}", auto_login=AutoLogin.disabled(),
                                      reconnection=QuicReconnectionConfig(enabled=False)))
            await asyncio.wait_for(c.connect(), TIMEOUT)
            await asyncio.wait_for(c.login_user("iggy", "iggy"), TIMEOUT)
            await asyncio.wait_for(c.ping(), TIMEOUT)
            clients.append(c)
        await asyncio.sleep(0.1)
        took = await asyncio.get_running_loop().run_in_executor(None, stop_within_bound, srv)
        return clients, took

    try:
        asyncio.run(run())
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()


def ping_frame(client: bytes, request: int) -> bytes:
    """A Ping request (operation 2 NonReplicated, code 1) with no body: proto/frame.h, section 3."""
    h = bytearray(256)
    struct.pack_into("<I", h, 48, 256)
    h[60] = 5
    h[128:144] = client
    struct.pack_into("<Q", h, 168, request)
    h[176] = 2
    struct.pack_into("<I", h, 196, 1)
    return bytes(h)


def test_sigterm_with_a_slow_reader_on_tcp(tmp_path):
    """A TCP client that sends thousands of pings and never reads a reply (the server's write queue and the
    socket buffers fill up): galgod exits 0 within the bound."""
    srv = start(tmp_path)
    s = socket.create_connection(("127.0.0.1", srv.tcp_port), timeout=TIMEOUT)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client = os.urandom(15) + b"\x01"
        frames = b"".join(ping_frame(client, i + 1) for i in range(120000))
        s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 3
        while sent < len(frames) and time.monotonic() < deadline:
            try:
                sent += s.send(frames[sent:])
            except BlockingIOError:
                time.sleep(0.01)
        # The server stopped reading (backpressure) long before all of it went out.
        assert sent < len(frames)
        stop_within_bound(srv)
    finally:
        s.close()
        if srv.proc.poll() is None:
            srv.proc.kill()


# ---- a 58 during a shutdown is never committed


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rest(port: int, method: str, path: str, body=None, token: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def login(port: int) -> str:
    status, body = rest(port, "POST", "/users/login", {"username": "iggy", "password": "iggy"})
    assert status == 200, body
    return json.loads(body)["access_token"]["token"]


def all_payloads(port: int, token: str) -> list[bytes]:
    got, offset = [], 0
    while True:
        status, body = rest(port, "GET", "/streams/s/topics/t/messages?consumer_id=1&partition_id=0"
                                         f"&kind=offset&value={offset}&count=1000", token=token)
        assert status == 200, body
        msgs = json.loads(body)["messages"]
        if not msgs:
            return got
        got += [base64.b64decode(m["payload"]) for m in msgs]
        offset = msgs[-1]["header"]["offset"] + 1


def test_sends_in_flight_at_sigterm_answered_58_are_never_committed(tmp_path):
    """Many concurrent HTTP sends (fsync durability) while galgod gets SIGTERM: after a restart, every send
    answered 201 is in the log and none answered 58 (TransientNotAccepted, which an SDK re-issues) is."""
    srv = start(tmp_path)
    token = login(srv.http_port)
    assert rest(srv.http_port, "POST", "/streams", {"name": "s"}, token)[0] == 200
    assert rest(srv.http_port, "POST", "/streams/s/topics", {"name": "t", "partitions_count": 1}, token)[0] == 200

    ok, refused, unknown = set(), set(), set()
    lock = threading.Lock()
    stop = threading.Event()

    def producer(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=TIMEOUT)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        i = 0
        while not stop.is_set():
            payload = f"p{n}-{i}".encode()
            i += 1
            body = {"partitioning": {"kind": "partition_id", "value": b64((0).to_bytes(4, "little"))},
                    "messages": [{"id": 0, "payload": b64(payload)}]}
            try:
                conn.request("POST", "/streams/s/topics/t/messages", body=json.dumps(body).encode(), headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                status = resp.status
            except ConnectionRefusedError:
                conn.close()  # the listener is closed: nothing was sent
                if srv.proc.poll() is not None:
                    return
                time.sleep(0.01)
                continue
            except (OSError, http.client.HTTPException):
                with lock:
                    unknown.add(payload)
                conn.close()
                if srv.proc.poll() is not None:
                    return
                conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=TIMEOUT)
                continue
            with lock:
                if status == 201:
                    ok.add(payload)
                elif status == 503 and json.loads(raw).get("id") == 58:
                    refused.add(payload)
                else:
                    unknown.add(payload)
        conn.close()

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        stop_within_bound(srv)
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
        if srv.proc.poll() is None:
            srv.proc.kill()
    print(f"sends: {len(ok)} answered 201, {len(refused)} answered 58, {len(unknown)} without an answer")
    assert ok, "no send succeeded before the shutdown"

    again = Galgod(tmp_path, [])
    again.start()
    try:
        present = set(all_payloads(again.http_port, login(again.http_port)))
    finally:
        assert again.stop() == 0
    missing = ok - present
    committed_58 = refused & present
    assert not missing, f"{len(missing)} sends answered 201 are not in the log, e.g. {sorted(missing)[:3]}"
    assert not committed_58, (f"{len(committed_58)} of {len(refused)} sends answered 58 were committed anyway, "
                              f"e.g. {sorted(committed_58)[:3]}")


def retry(fn, what: str, seconds: float = 20.0):
    """fn() until it returns something true (a cluster electing its leaders answers 58 meanwhile)."""
    deadline = time.monotonic() + seconds
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not done within {seconds}s"
        time.sleep(0.1)


def test_forwarded_sends_in_flight_at_sigterm_answered_58_are_never_committed(tmp_path):
    """A 3-node cluster; HTTP sends to 3 partitions through node 2, which forwards those of the partitions it
    does not lead, while node 2 gets SIGTERM: node 2 exits 0 within the bound, and read through node 1
    every send answered 201 is in the log and none answered 58 is."""
    nodes = [Galgod(tmp_path / f"n{i}", []) for i in (1, 2, 3)]
    raft = [free_port() for _ in nodes]
    roster = ",".join(f"{i + 1}@127.0.0.1:{raft[i]}:{n.tcp_port}:0:{n.http_port}" for i, n in enumerate(nodes))
    for i, n in enumerate(nodes):
        n.workdir.mkdir(parents=True, exist_ok=True)
        n.extra_args = [f"--node.id={i + 1}", f"--cluster.nodes={roster}", "--cluster.secret=shutdown-test",
                        "--cluster.election_timeout_ms=300", "--http.jwt_secret=shutdown-test"]
    try:
        for n in nodes:
            n.start()
        port1, port2 = nodes[0].http_port, nodes[1].http_port

        def try_login(port):
            status, body = rest(port, "POST", "/users/login", {"username": "iggy", "password": "iggy"})
            return json.loads(body)["access_token"]["token"] if status == 200 else None

        token = retry(lambda: try_login(port1), "login")
        retry(lambda: rest(port1, "POST", "/streams", {"name": "s"}, token)[0] == 200, "create stream")
        retry(lambda: rest(port1, "POST", "/streams/s/topics", {"name": "t", "partitions_count": 3}, token)[0] == 200,
              "create topic")
        for p in range(3):
            retry(lambda: rest(port2, "GET", f"/streams/s/topics/t/messages?consumer_id=1&partition_id={p}"
                                             "&kind=first&count=1", token=token)[0] == 200, f"partition {p} ready")

        ok, refused, unknown = set(), set(), set()
        lock = threading.Lock()
        stop = threading.Event()

        def producer(n: int) -> None:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
            conn = http.client.HTTPConnection("127.0.0.1", port2, timeout=TIMEOUT)
            i = 0
            while not stop.is_set():
                pid = (n + i) % 3
                payload = f"p{n}-{i}".encode()
                i += 1
                body = {"partitioning": {"kind": "partition_id", "value": b64(pid.to_bytes(4, "little"))},
                        "messages": [{"id": 0, "payload": b64(payload)}]}
                try:
                    conn.request("POST", "/streams/s/topics/t/messages", body=json.dumps(body).encode(),
                                 headers=headers)
                    resp = conn.getresponse()
                    raw, status = resp.read(), resp.status
                except ConnectionRefusedError:
                    conn.close()  # the listener is closed: nothing was sent
                    if nodes[1].proc.poll() is not None:
                        return
                    time.sleep(0.01)
                    continue
                except (OSError, http.client.HTTPException):
                    with lock:
                        unknown.add((pid, payload))
                    conn.close()
                    if nodes[1].proc.poll() is not None:
                        return
                    conn = http.client.HTTPConnection("127.0.0.1", port2, timeout=TIMEOUT)
                    continue
                with lock:
                    if status == 201:
                        ok.add((pid, payload))
                    elif status == 503 and json.loads(raw).get("id") == 58:
                        refused.add((pid, payload))
                    else:
                        unknown.add((pid, payload))
            conn.close()

        threads = [threading.Thread(target=producer, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)
            stop_within_bound(nodes[1])
        finally:
            stop.set()
            for t in threads:
                t.join(TIMEOUT)
        print(f"sends: {len(ok)} answered 201, {len(refused)} answered 58, {len(unknown)} without an answer")
        assert ok, "no send succeeded before the shutdown"

        def read_partition(pid):
            got, offset = [], 0
            while True:
                status, body = rest(port1, "GET", f"/streams/s/topics/t/messages?consumer_id=1&partition_id={pid}"
                                                  f"&kind=offset&value={offset}&count=1000", token=token)
                if status != 200:
                    return None  # a new leader is being elected: read again
                msgs = json.loads(body)["messages"]
                if not msgs:
                    # A replica serving the read may learn the commit index a heartbeat late: the marker last.
                    return got if got and got[-1] == b"m" else None
                got += [base64.b64decode(m["payload"]) for m in msgs]
                offset = msgs[-1]["header"]["offset"] + 1

        # A new leader commits its predecessor's entries with the first entry of its own term: one more send.
        marker = {"partitioning": {"kind": "partition_id", "value": ""}, "messages": [{"id": 0, "payload": b64(b"m")}]}
        for pid in range(3):
            marker["partitioning"]["value"] = b64(pid.to_bytes(4, "little"))
            retry(lambda: rest(port1, "POST", "/streams/s/topics/t/messages", marker, token)[0] == 201,
                  f"marker on partition {pid}")
        present = set()
        for pid in range(3):
            present |= {(pid, p) for p in retry(lambda: read_partition(pid), f"read partition {pid}")}
        missing = ok - present
        committed_58 = refused & present
        assert not missing, f"{len(missing)} sends answered 201 are not in the log, e.g. {sorted(missing)[:3]}"
        assert not committed_58, (f"{len(committed_58)} of {len(refused)} sends answered 58 were committed anyway, "
                                  f"e.g. {sorted(committed_58)[:3]}")
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                assert n.stop() == 0
