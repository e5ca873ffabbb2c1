"""Integrity: bytes damaged on disk are never served; reads and the scrubber find them and say where."""

from __future__ import annotations

import time

import pytest
from apache_iggy import PollingStrategy

from galgo_compat import messages, offsets_of, payloads_of, poll

pytestmark = pytest.mark.timeout_s(120)


def payload(i: int) -> bytes:
    return f"msg-{i:04d}-".encode() + bytes([65 + i % 26]) * 180


async def test_flipped_bytes_on_disk_are_never_served(server):
    """A byte flipped in a stored message (below the recovery point, where open checks only envelopes) is
    never served: polls return the messages before it and those after it unchanged, a poll of the damaged
    batch gets an error, and the damage is logged with its place, first by a read, then by the scrubber
    alone after a restart."""
    c = await server.client()
    await c.create_stream("s")
    await c.create_topic("s", "t", 1)
    for b in range(10):
        await c.send_messages("s", "t", 0, messages(*[payload(b * 10 + i) for i in range(10)]))
    server.stop()

    (log,) = list((server.data_dir / "partitions").rglob("*.log"))
    data = bytearray(log.read_bytes())
    at = data.index(payload(55)) + 100
    data[at] ^= 0x04
    log.write_bytes(bytes(data))

    server.extra_args = ["--storage.scrub_rate=0"]  # reads alone must catch it
    server.start()
    c = await server.client()
    got = await poll(c, "s", "t", strategy=PollingStrategy.Offset(0), count=1000)
    assert offsets_of(got) == list(range(50))
    assert payloads_of(got) == [payload(i) for i in range(50)]
    with pytest.raises(RuntimeError):
        await poll(c, "s", "t", strategy=PollingStrategy.Offset(50), count=1000)
    later = await poll(c, "s", "t", strategy=PollingStrategy.Offset(60), count=1000)
    assert payloads_of(later) == [payload(i) for i in range(60, 100)]
    assert "fails its checksums: fenced, not served" in server.stderr_tail(200)

    # After a restart with the scrubber on, it finds the damage without any poll.
    server.extra_args = []
    server.restart()
    deadline = time.monotonic() + 10
    while "fails its checksums" not in server.stderr_tail(200):
        assert time.monotonic() < deadline, "the scrubber did not report the damaged record"
        time.sleep(0.1)
    assert "offsets 50..59" in server.stderr_tail(200)
