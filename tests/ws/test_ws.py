"""The WebSocket listener (transport/ws.c) with real clients: the `websockets` package (RFC 6455, pinned
in scripts/install-deps) for whole Iggy frames by hand, a raw socket for what no proper client sends,
and Iggy's Python SDK (WebSocketConfig) over wss."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path
from datetime import timedelta

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from apache_iggy import (
    AutoLogin,
    Consumer,
    IggyClient,
    PollingStrategy,
    SendMessage,
    WebSocketConfig,
    WebSocketReconnectionConfig,
)

PING_CODE = 1
NON_REPLICATED = 2


def request(code: int, request_no: int, body: bytes = b"", client: int = 0x1234) -> bytes:
    """An Iggy request frame (reference §1.2): a NonReplicated operation carrying its command code."""
    h = bytearray(256)
    struct.pack_into("<I", h, 48, 256 + len(body))
    h[60] = 5  # Request
    h[128:144] = client.to_bytes(16, "little")
    struct.pack_into("<Q", h, 168, request_no)
    h[176] = NON_REPLICATED
    struct.pack_into("<I", h, 196, code)
    return bytes(h) + body


def reply_fields(frame: bytes) -> tuple[int, int, int, int]:
    """(command, size, request, status) of a reply frame (reference §1.3)."""
    return frame[60], struct.unpack_from("<I", frame, 48)[0], struct.unpack_from("<Q", frame, 200)[0], \
        struct.unpack_from("<I", frame, 216)[0]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def ping(url: str, ssl_ctx=None, request_no: int = 7) -> None:
    async with websockets.connect(url, ssl=ssl_ctx, max_size=None) as ws:
        await ws.send(request(PING_CODE, request_no))
        got = await ws.recv()
        assert isinstance(got, bytes) and len(got) == 256
        assert reply_fields(got) == (8, 256, request_no, 0)


def test_a_ping_frame_in_one_binary_message_is_answered_by_one_binary_message(galgod):
    """A binary message holding one Ping request gets one binary message: a 256-byte reply, status 0."""
    run(ping(galgod.url))


def test_two_pipelined_requests_are_answered_in_order_each_in_its_own_message(galgod):
    """Two requests sent before reading get two replies, in request order, one message each."""
    async def go():
        async with websockets.connect(galgod.url) as ws:
            await ws.send(request(PING_CODE, 1))
            await ws.send(request(PING_CODE, 2))
            first, second = await ws.recv(), await ws.recv()
            assert reply_fields(first)[2:] == (1, 0) and reply_fields(second)[2:] == (2, 0)
    run(go())


def test_a_request_split_into_fragments_is_reassembled(galgod):
    """A message sent as several frames (a fragmented message) is one request."""
    async def go():
        async with websockets.connect(galgod.url) as ws:
            frame = request(PING_CODE, 3)
            await ws.send([frame[:10], frame[10:200], frame[200:]])
            assert reply_fields(await ws.recv())[2:] == (3, 0)
    run(go())


def test_pings_get_pongs_and_a_close_gets_a_close(galgod):
    """A WebSocket ping is answered with a pong; a close from the client is answered with a close (1000)."""
    async def go():
        ws = await websockets.connect(galgod.url)
        await asyncio.wait_for(await ws.ping(b"are you there"), 5)
        await ws.close()
        assert ws.close_code == 1000
    run(go())


@pytest.mark.parametrize("message, code", [
    (request(PING_CODE, 1)[:200], 1007),                          # shorter than a header
    (request(PING_CODE, 1) + b"extra", 1007),                     # longer than its size field says
    (request(PING_CODE, 1) + request(PING_CODE, 2), 1007),        # two frames in one message
    ("a text message", 1003),
], ids=["short", "longer-than-size", "two-frames", "text"])
def test_a_message_that_is_not_one_iggy_frame_closes_that_connection_only(galgod, message, code):
    """The server closes with a status code saying why, and goes on serving another client."""
    async def go():
        async with websockets.connect(galgod.url) as other:
            async with websockets.connect(galgod.url) as ws:
                await ws.send(message)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == code
            await other.send(request(PING_CODE, 9))
            assert reply_fields(await other.recv())[2:] == (9, 0)
    run(go())
    assert galgod.alive()


def raw_upgrade(port: int, version: str = "13") -> tuple[socket.socket, str, bytes]:
    """A raw connection after a WebSocket upgrade: (socket, the key sent, the server's answer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return s, key, head


def close_code(s: socket.socket) -> int:
    """The status code of the close frame the server sends next (unmasked, RFC 6455 §5.5.1)."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) >= 4 and data[0] == 0x88:
            return struct.unpack_from(">H", data, 2)[0]
    raise AssertionError(f"no close frame, got {data[:40]!r}")


def test_the_handshake_answers_101_with_the_accept_key_of_rfc_6455(galgod):
    """Sec-WebSocket-Accept is base64(SHA-1(key + GUID)); no subprotocol is chosen."""
    s, key, head = raw_upgrade(galgod.ws_port)
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: " + want + b"\r\n" in head
    assert b"Sec-WebSocket-Protocol" not in head
    s.close()


@pytest.mark.parametrize("req, status", [
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", b"426"),
    (b"GET / HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n", b"431"),
], ids=["plain-get", "post", "version-8", "huge"])
def test_a_request_that_is_not_an_upgrade_is_refused_and_closed(galgod, req, status):
    """400 for a malformed or plain request, 426 for another WebSocket version, 431 for a huge one."""
    s = socket.create_connection(("127.0.0.1", galgod.ws_port), timeout=5)
    s.sendall(req)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    assert got.startswith(b"HTTP/1.1 " + status), got[:80]
    s.close()


def test_an_unmasked_frame_is_a_protocol_error(galgod):
    """A client frame without a mask is closed with 1002 (RFC 6455 §5.1)."""
    s, _, _ = raw_upgrade(galgod.ws_port)
    s.sendall(bytes([0x82, 126]) + struct.pack(">H", 256) + request(PING_CODE, 1))
    assert close_code(s) == 1002
    s.close()


def test_a_message_announced_larger_than_any_frame_is_refused_before_it_arrives(galgod):
    """A frame announcing 2^40 bytes is closed with 1009 at once, and the server does not buffer it."""
    s, _, _ = raw_upgrade(galgod.ws_port)
    s.sendall(bytes([0x82, 0x80 | 127]) + struct.pack(">Q", 1 << 40) + b"\0\0\0\0" + b"x" * 1000)
    assert close_code(s) == 1009
    s.close()
    run(ping(galgod.url))


def test_a_large_reply_arrives_whole_in_one_message(galgod):
    """A 1 MiB payload sent and polled through the SDK over ws comes back unchanged."""
    async def go():
        c = IggyClient(WebSocketConfig(server_address=f"127.0.0.1:{galgod.ws_port}",
                                       reconnection=WebSocketReconnectionConfig(enabled=False)))
        await c.connect()
        await c.login_user("iggy", "iggy")
        await c.create_stream("big")
        await c.create_topic("big", "t", partitions_count=1)
        payload = os.urandom(1 << 20)
        await c.send_messages("big", "t", 0, [SendMessage(payload)])
        got = await c.poll_messages("big", "t", consumer=Consumer.Single("r"),
                                    polling_strategy=PollingStrategy.First(), count=10, auto_commit=False,
                                    partition_id=0)
        assert [m.payload() for m in got] == [payload]
    run(go())


def test_wss_serves_the_same_frames_inside_tls(galgod_tls):
    """With websocket.tls_enabled the listener is wss with the development certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    run(ping(galgod_tls.url, ctx))


def test_the_iggy_sdk_logs_in_sends_and_polls_over_wss(galgod_tls):
    """Iggy's Python SDK (WebSocketConfig with TLS, the certificate not validated) works end to end."""
    async def go():
        c = IggyClient(WebSocketConfig(
            server_address=f"localhost:{galgod_tls.ws_port}", tls_enabled=True, tls_domain="localhost",
            tls_validate_certificate=False, reconnection=WebSocketReconnectionConfig(enabled=False),
            auto_login=AutoLogin.username_password("iggy", "iggy"), heartbeat_interval=timedelta(seconds=5)))
        await c.connect()
        await c.create_stream("secure")
        await c.create_topic("secure", "t", partitions_count=1)
        await c.send_messages("secure", "t", 0, [SendMessage(b"over wss %d" % i) for i in range(3)])
        got = await c.poll_messages("secure", "t", consumer=Consumer.Single("r"),
                                    polling_strategy=PollingStrategy.First(), count=10, auto_commit=False,
                                    partition_id=0)
        assert [m.payload() for m in got] == [b"over wss %d" % i for i in range(3)]
    run(go())


def _start_and_wait(argv: list[str], log: Path, timeout: float = 20.0) -> tuple[subprocess.Popen, bool]:
    """Starts galgod; (its process, True once it printed 'galgod ready' / False once it exited)."""
    out = open(log, "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    out.close()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if b"galgod ready" in log.read_bytes():
            return p, True
        if p.poll() is not None:
            return p, False
        time.sleep(0.05)
    p.kill()
    p.wait()
    pytest.fail(f"galgod neither ready nor exited:\n{log.read_text(errors='replace')}")


def _holding(addr: tuple[str, int]) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(addr)
        s.listen(1)
        return s
    except OSError:  # someone else holds it already: as good for this test
        s.close()
        return None


def test_a_taken_default_websocket_port_does_not_stop_a_node_but_a_taken_chosen_one_does(tmp_path):
    """Several galgods on one host, set up before the WebSocket listener existed, name no WebSocket
    address: the second finds the default one taken and must still serve its other transports. An address
    chosen on purpose that is taken stops the node, as for every other listener."""
    from conftest import find_galgod, free_port

    holder = _holding(("127.0.0.1", 8092))
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        base = [str(find_galgod()), "--quic.enabled=false", "--http.enabled=false",
                "--with-default-root-credentials"]
        tcp = free_port()
        p, ready = _start_and_wait(base + [f"--node.data_dir={tmp_path / 'a'}", f"--tcp.address=127.0.0.1:{tcp}"],
                                   tmp_path / "a.log")
        try:
            log = (tmp_path / "a.log").read_text(errors="replace")
            assert ready, f"galgod stopped on a taken default WebSocket address:\n{log}"
            assert "default WebSocket address 127.0.0.1:8092 is in use" in log
            with socket.create_connection(("127.0.0.1", tcp), timeout=5) as c:  # TCP still serves
                c.sendall(request(1, 1))
                assert len(c.recv(64)) >= 8
        finally:
            p.terminate()
            assert p.wait(10) == 0
        port = taken.getsockname()[1]
        p, ready = _start_and_wait(base + [f"--node.data_dir={tmp_path / 'b'}", f"--tcp.address=127.0.0.1:{free_port()}",
                                           f"--websocket.address=127.0.0.1:{port}"], tmp_path / "b.log")
        if ready:
            p.terminate()
            p.wait(10)
        assert not ready and p.returncode != 0, "a node started without the WebSocket address it was given"
    finally:
        taken.close()
        if holder is not None:
            holder.close()
