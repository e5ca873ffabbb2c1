"""A stand-in for galgod used only by test_harness.py to check the start/stop/restart harness.

It takes galgod's flags, listens on --tcp.address, accepts connections and never answers them, and
appends one line per start to <data_dir>/starts. Environment switches:
  FAKE_GALGOD_NO_LISTEN=1     run without ever listening
  FAKE_GALGOD_IGNORE_TERM=1   ignore SIGTERM
  FAKE_GALGOD_EXIT_STATUS=N   exit with status N on SIGTERM (default 0)
  FAKE_GALGOD_FAIL=msg        print msg to stderr and exit 2 at once
  FAKE_GALGOD_IGGY=1          speak a sliver of the Iggy VSR protocol (see MiniIggy) instead of
                              holding connections silently: enough for the SDK to connect, log in,
                              and create, list, rename and delete streams (kept in data_dir)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time


def main() -> int:
    flags = dict(arg[2:].split("=", 1) for arg in sys.argv[1:] if arg.startswith("--") and "=" in arg)
    if os.environ.get("FAKE_GALGOD_FAIL"):
        print(os.environ["FAKE_GALGOD_FAIL"], file=sys.stderr, flush=True)
        return 2
    data_dir = flags["node.data_dir"]
    host, port = flags["tcp.address"].rsplit(":", 1)
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, "starts"), "a") as f:
        f.write(f"{os.getpid()} {' '.join(sys.argv[1:])}\n")
    print(f"fake galgod ready on {host}:{port}", file=sys.stderr, flush=True)

    status = int(os.environ.get("FAKE_GALGOD_EXIT_STATUS", "0"))
    if os.environ.get("FAKE_GALGOD_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(status))

    if os.environ.get("FAKE_GALGOD_NO_LISTEN"):
        while True:
            time.sleep(1)

    if os.environ.get("FAKE_GALGOD_IGGY"):
        asyncio.run(MiniIggy(data_dir, host, int(port)).serve())
        return 0

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(16)
    held = []
    while True:
        conn, _ = srv.accept()
        held.append(conn)  # never answered, never closed


class MiniIggy:
    """Just enough of the Iggy 0.11 VSR protocol (protocol reference §1, §2) to exercise the SDK:
    Register (iggy/iggy only), Logout, Ping, GetClusterMetadata, GetStreams, GetStream, CreateStream,
    UpdateStream, DeleteStream. Other NonReplicated codes get status 3, other writes status 5."""

    def __init__(self, data_dir: str, host: str, port: int):
        self.path = os.path.join(data_dir, "streams.json")
        self.host, self.port = host, port
        self.streams: dict[int, dict] = {}
        if os.path.exists(self.path):
            self.streams = {int(k): v for k, v in json.load(open(self.path)).items()}
        self.next_session = 1

    def save(self) -> None:
        with open(self.path, "w") as f:
            json.dump(self.streams, f)

    async def serve(self) -> None:
        server = await asyncio.start_server(self.handle, self.host, self.port, reuse_address=True)
        async with server:
            await server.serve_forever()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = 0
        try:
            while True:
                head = await reader.readexactly(256)
                (size,) = struct.unpack_from("<I", head, 48)
                body = await reader.readexactly(size - 256)
                client = head[128:144]
                request, op, code = head[168:176], head[176], struct.unpack_from("<I", head, 196)[0]

                def reply(payload: bytes = b"", status: int = 0) -> None:
                    h = bytearray(256)
                    struct.pack_into("<I", h, 48, 256 + len(payload))
                    h[60] = 8
                    h[128:144] = head[144:160]
                    h[160:176] = client
                    h[192:200] = head[160:168]
                    h[200:208] = request
                    h[208] = op
                    struct.pack_into("<I", h, 216, status)
                    writer.write(bytes(h) + payload)

                def evict(reason: int) -> None:
                    h = bytearray(256)
                    struct.pack_into("<I", h, 48, 256)
                    h[60] = 13
                    h[128:144] = client
                    h[255] = reason
                    writer.write(bytes(h))

                if op == 1:  # Register
                    pv, i = struct.unpack_from("<I", body, 0)[0], 4
                    i += 1 + body[i]
                    i += 1 + body[i]
                    user = body[i + 1 : i + 1 + body[i]]
                    i += 1 + body[i]
                    pw = body[i + 1 : i + 1 + body[i]]
                    if (user, pw) != (b"iggy", b"iggy"):
                        evict(9)
                    else:
                        session, self.next_session = self.next_session, self.next_session + 1
                        version = b"fake-0.0.0"
                        reply(struct.pack("<IIQI", 0, 0, session, pv) + bytes([len(version)]) + version)
                elif op == 3:  # Logout
                    session = 0
                    reply()
                elif op == 2 and code == 1:
                    reply()
                elif op == 2 and not session:
                    reply(status=40)
                elif op == 2 and code == 12:
                    name, node, ip = b"single-node", b"iggy-node", self.host.encode()
                    reply(
                        struct.pack("<I", len(name)) + name + struct.pack("<I", 1)
                        + struct.pack("<I", len(node)) + node + struct.pack("<I", len(ip)) + ip
                        + struct.pack("<HHHHBB", self.port, 0, 0, 0, 0, 0)
                    )
                elif op == 2 and code == 201:
                    reply(b"".join(self.header(k) for k in sorted(self.streams)))
                elif op == 2 and code == 200:
                    sid = self.resolve(body, 0)[0]
                    reply(b"" if sid is None else self.header(sid))
                elif op == 2:
                    reply(status=3)
                elif not session:
                    evict(1)
                elif op == 128:  # CreateStream
                    name = body[1 : 1 + body[0]].decode()
                    if any(s["name"] == name for s in self.streams.values()):
                        reply(struct.pack("<III", 1, 0, 1012))
                    else:
                        sid = next(i for i in range(len(self.streams) + 1) if i not in self.streams)
                        self.streams[sid] = {"name": name, "created_at": time.time_ns() // 1000}
                        self.save()
                        reply(struct.pack("<I", 0) + self.header(sid))
                elif op in (129, 130):  # UpdateStream, DeleteStream
                    sid, i = self.resolve(body, 0)
                    if sid is None:
                        reply(struct.pack("<III", 1, 0, 1009))
                        continue
                    if op == 130:
                        del self.streams[sid]
                    else:
                        name = body[i + 1 : i + 1 + body[i]].decode()
                        if any(s["name"] == name and k != sid for k, s in self.streams.items()):
                            reply(struct.pack("<III", 1, 0, 1012))
                            continue
                        self.streams[sid]["name"] = name
                    self.save()
                    reply(struct.pack("<I", 0))
                else:
                    reply(status=5)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def resolve(self, body: bytes, i: int):
        kind, length = body[i], body[i + 1]
        value = body[i + 2 : i + 2 + length]
        end = i + 2 + length
        if kind == 1:
            sid = struct.unpack("<I", value)[0]
            return (sid if sid in self.streams else None), end
        name = value.decode()
        return next((k for k, s in self.streams.items() if s["name"] == name), None), end

    def header(self, sid: int) -> bytes:
        s = self.streams[sid]
        name = s["name"].encode()
        return struct.pack("<IQIQQ", sid, s["created_at"], 0, 0, 0) + bytes([len(name)]) + name + struct.pack("<I", 0)


if __name__ == "__main__":
    sys.exit(main())
