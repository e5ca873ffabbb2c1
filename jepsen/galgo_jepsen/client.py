"""The suite's clients: Iggy's official Python SDK (TCP, QUIC, HTTP) and Galgo's C client.

Both offer the same coroutines (open, send, poll, store_offset, get_offset, close) and report outcomes
as history types, raising nothing for server answers:

  ("ok", result)            the operation certainly happened (a read: it returned `result`)
  ("fail", error, code)     it certainly did not happen
  ("info", error, code)     nobody knows (a timeout, a dropped connection, an answer that does not say)

How the Python SDK's errors are classified. The SDK reports a failure as an exception whose text names
the Iggy error; it retries 58 TransientNotAccepted itself (for up to its 30 s budget), and Galgo answers
58 only for requests it certainly did not admit. A send is "fail" only when the text names a refusal
that cannot have stored anything: a missing stream, topic or partition, a permission or login refusal,
invalid input, or 58 itself. Everything else — timeouts (each call is bounded by asyncio.wait_for),
disconnects, error 1, text we do not know — is "info". Reads (poll, get_offset) have no effect, so any
failure of a read is "fail", except a poll with auto_commit (it stores an offset): "info".

Message payloads are the decimal ASCII of the value and the message id is the value, so the server's
dedup window (topic option dedup_window) drops a send the SDK replays after an unknown outcome.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from apache_iggy import (  # type: ignore
    AutoLogin,
    Consumer,
    HttpConfig,
    IggyClient,
    PollingStrategy,
    QuicConfig,
    QuicReconnectionConfig,
    SendMessage,
    TcpConfig,
    TcpReconnectionConfig,
)

from .db import HTTP_PORT, QUIC_PORT, TCP_PORT

USER, PASSWORD = "iggy", "iggy"
DEFINITE = re.compile(r"not found|does not exist|unauthori[sz]ed|permission|invalid credentials|"
                      r"invalid (format|command|identifier|stream|topic|partition)|"
                      r"transient.?not.?accepted|not accepted", re.I)
CODE = re.compile(r"\b(\d{1,5})\b")


def _code_of(text: str) -> int | None:
    m = re.search(r"\bcode[: =]+(\d+)|\((\d+)\)|error (\d+)", text, re.I)
    if m:
        return int(next(g for g in m.groups() if g))
    if re.search(r"transient.?not.?accepted", text, re.I):
        return 58
    return None


def _value(m) -> int | str:
    """The value a received message carries (its payload's decimal digits; anything else as text, which the
    checker then reports as a phantom)."""
    text = bytes(m.payload()).decode(errors="replace")
    try:
        return int(text)
    except ValueError:
        return text


class PyClient:
    """One IggyClient of the official Python SDK, connected to one node."""

    def __init__(self, transport: str, ip: str, timeout: float):
        self.transport = transport
        self.ip = ip
        self.timeout = timeout
        self.c: IggyClient | None = None

    def _config(self):
        if self.transport == "quic":
            # the SDK binds its UDP socket to 127.0.0.1 unless told otherwise: bind where the nodes are reached
            return QuicConfig(server_address=f"{self.ip}:{QUIC_PORT}", client_address="0.0.0.0:0",
                              auto_login=AutoLogin.disabled(),
                              reconnection=QuicReconnectionConfig(enabled=False))
        if self.transport == "http":
            return HttpConfig(api_url=f"http://{self.ip}:{HTTP_PORT}", retries=0)
        return TcpConfig(server_address=f"{self.ip}:{TCP_PORT}", auto_login=AutoLogin.disabled(),
                         reconnection=TcpReconnectionConfig(enabled=False))

    async def open(self) -> None:
        c = IggyClient(self._config())
        await asyncio.wait_for(c.connect(), self.timeout)
        await asyncio.wait_for(c.login_user(USER, PASSWORD), self.timeout)
        self.c = c

    async def close(self) -> None:
        self.c = None  # the SDK closes its connection when the object is dropped

    async def _call(self, aw, *, write: bool):
        try:
            r = await asyncio.wait_for(aw, self.timeout)
            return ("ok", r)
        except asyncio.TimeoutError:
            return ("info" if write else "fail", "timeout", None)
        except Exception as e:  # the SDK raises RuntimeError (and ValueError/TypeError on bad input)
            text = f"{type(e).__name__}: {e}"
            code = _code_of(text)
            if not write or DEFINITE.search(text):
                return ("fail", text, code)
            return ("info", text, code)

    async def send(self, stream: str, topic: str, partition: int, values: list[int]):
        msgs = [SendMessage(str(v).encode(), id=v) for v in values]
        r = await self._call(self.c.send_messages(stream, topic, partition, msgs), write=True)
        return ("ok", None) if r[0] == "ok" else r

    async def poll(self, stream: str, topic: str, partition: int, offset: int | None, count: int,
                   consumer: str = "jepsen", auto_commit: bool = False):
        r = await self._call(self.c.poll_messages(
            stream, topic, consumer=Consumer.Single(consumer),
            polling_strategy=PollingStrategy.Next() if offset is None else PollingStrategy.Offset(offset),
            count=count, auto_commit=auto_commit, partition_id=partition), write=auto_commit)
        if r[0] != "ok":
            return r
        return ("ok", [[m.offset(), _value(m)] for m in r[1]])

    async def group_poll(self, stream: str, topic: str, group: str, count: int):
        """A consumer-group poll (Next, auto-commit; the server picks the member's partition)."""
        r = await self._call(self.c.poll_messages(
            stream, topic, consumer=Consumer.Group(group), polling_strategy=PollingStrategy.Next(),
            count=count, auto_commit=True, partition_id=None), write=True)
        if r[0] != "ok":
            return r
        return ("ok", [[m.partition_id(), m.offset(), _value(m)] for m in r[1]])

    # Iggy's Python SDK 0.9 has no store/get consumer offset calls: its consumers store offsets through
    # polls with auto_commit (PollingStrategy.Next continues from the stored offset).

def corrupt_of(r: dict) -> dict:
    """What a driver reply says of a poll reply that did not verify (empty for any other reply)."""
    if r.get("corrupt") is not True:
        return {}
    return {"corrupt": True, "offsets": r.get("offsets", []), "bad_frames": r.get("bad_frames", [])}


class CClient:
    """Galgo's C client through jepsen/client/galgo-jepsen-client (one subprocess per client): JSON
    requests on its stdin, one JSON reply per line on its stdout (the protocol is specified at the top
    of galgo-jepsen-client.c). mode "pinned" talks to one node, "leader" follows partition leaders."""

    def __init__(self, binary: Path, servers: list[str], mode: str, timeout: float):
        self.binary = binary
        self.servers = servers
        self.mode = mode
        self.timeout = timeout
        self.p: asyncio.subprocess.Process | None = None

    async def open(self) -> None:
        self.p = await asyncio.create_subprocess_exec(
            str(self.binary), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, limit=64 << 20)  # a reply line may be a page of full records
        r = await self._req({"op": "connect", "servers": ",".join(self.servers), "mode": self.mode,
                             "username": USER, "password": PASSWORD,
                             "timeout_ms": int(self.timeout * 1000)}, write=False)
        if r.get("type") != "ok":
            await self.close()
            raise ConnectionError(r.get("error", "connect failed"))

    async def close(self) -> None:
        if self.p is not None:
            try:
                self.p.kill()
            except ProcessLookupError:
                pass
            try:
                await asyncio.wait_for(self.p.wait(), 5)
            except asyncio.TimeoutError:
                pass
            self.p = None

    async def _req(self, req: dict, *, write: bool) -> dict:
        assert self.p is not None and self.p.stdin is not None and self.p.stdout is not None
        try:
            self.p.stdin.write((json.dumps(req) + "\n").encode())
            await self.p.stdin.drain()
            # leader mode may spend a few hops and a leader wait, each up to the timeout
            line = await asyncio.wait_for(self.p.stdout.readline(), self.timeout * (6 if self.mode == "leader" else 1) + 5)
        except (asyncio.TimeoutError, BrokenPipeError, ConnectionResetError):
            await self.close()
            return {"type": "info" if write else "fail", "error": "driver did not answer"}
        if not line:
            await self.close()
            return {"type": "info" if write else "fail", "error": "driver exited"}
        return json.loads(line)

    @staticmethod
    def _out(r: dict, result=None):
        if r.get("type") == "ok":
            return ("ok", result)
        return (r.get("type", "info"), r.get("error", ""), r.get("code"))

    async def send(self, stream, topic, partition, values):
        r = await self._req({"op": "send", "stream": stream, "topic": topic, "partition": partition,
                             "values": values}, write=True)
        return self._out(r)

    async def poll(self, stream, topic, partition, offset, count, consumer="jepsen", auto_commit=False,
                   full=False):
        """("ok", messages) — with full=True each message is [offset, value, timestamp, origin_timestamp,
        checksum, headers_len] —, or (type, error, code, extra): extra holds "corrupt", "offsets" and
        "bad_frames" when the reply did not verify (the driver's header), else nothing."""
        req = {"op": "poll", "stream": stream, "topic": topic, "partition": partition, "offset": offset,
               "count": count, "consumer": consumer, "auto_commit": auto_commit}
        if full:
            req["full"] = True
        r = await self._req(req, write=auto_commit)
        if r.get("type") != "ok":
            return self._out(r) + (corrupt_of(r),)
        return self._out(r, r.get("messages"))

    async def store_offset(self, stream, topic, partition, consumer, offset):
        r = await self._req({"op": "store_offset", "stream": stream, "topic": topic, "partition": partition,
                             "consumer": consumer, "offset": offset}, write=True)
        return self._out(r)

    async def get_offset(self, stream, topic, partition, consumer=None, group=None):
        """The stored offset of a consumer, or (group given) of a consumer group: ("ok", offset or None)."""
        req = {"op": "get_offset", "stream": stream, "topic": topic, "partition": partition}
        req.update({"group": group} if group is not None else {"consumer": consumer})
        r = await self._req(req, write=False)
        return self._out(r, r.get("offset"))

    async def raw(self, req: dict) -> dict:
        return await self._req(req, write=True)
