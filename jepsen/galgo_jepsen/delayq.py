"""Hold packets from an NFQUEUE for a while, then let them go: the delay half of the network nemesis.

This kernel has no netem qdisc, so packet delay is built from two parts. iptables rules (installed by
galgo_jepsen.netfault) send the packets to be delayed to an NFQUEUE with `--queue-bypass`; this program,
run inside the same network namespace, binds that queue, keeps every packet it is handed in a heap keyed
by its release time and gives the kernel an ACCEPT verdict for it when that time comes.

Each packet's hold time is drawn on its own: `ms` plus a uniform offset in [-jitter, +jitter] (never
below zero). Packets drawn independently overtake each other whenever the jitter is larger than the gap
between them, so reordering comes with jitter without anything further.

The program never drops a packet it was handed. On SIGTERM, SIGINT or SIGHUP it accepts everything still
held (in release order) and everything queued meanwhile, unbinds the queue and exits 0. If it dies
without that (SIGKILL), the kernel discards what it held (TCP retransmits it) and, because the rules say
`--queue-bypass`, later packets pass unheld instead of being dropped. With `--exit-with-parent` it also
shuts down cleanly when the process that started it goes away, so a crashed test runner leaves at most
rules that let everything through (netfault.cleanup removes those).

Invocation: `python -m galgo_jepsen.delayq --queue N --ms 100 [--jitter 20]`. It writes `ready queue=N`
on standard output once the queue is bound, and one `stats ...` line when it exits.
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import select
import signal
import sys
import time


class Holder:
    """The heap of held packets and the verdicts given on them."""

    def __init__(self, ms: float, jitter_ms: float, max_held: int, rng: random.Random) -> None:
        self.delay = ms / 1000.0
        self.jitter = jitter_ms / 1000.0
        self.max_held = max_held
        self.rng = rng
        self.heap: list[tuple[float, int, object]] = []
        self.seq = 0
        self.draining = False
        self.received = 0
        self.released = 0
        self.passed_at_once = 0
        self.errors = 0
        self.most_held = 0

    def hold_time(self) -> float:
        t = self.delay
        if self.jitter > 0:
            t += self.rng.uniform(-self.jitter, self.jitter)
        return max(0.0, t)

    def on_packet(self, packet) -> None:
        """Callback of the queue: remember the packet with its release time."""
        self.received += 1
        if self.draining or len(self.heap) >= self.max_held:
            # Shutting down, or so many held that the kernel queue could overflow and drop: let it go.
            self.passed_at_once += 1
            self._accept(packet)
            return
        self.seq += 1
        heapq.heappush(self.heap, (time.monotonic() + self.hold_time(), self.seq, packet))
        if len(self.heap) > self.most_held:
            self.most_held = len(self.heap)

    def _accept(self, packet) -> None:
        try:
            packet.accept()
            self.released += 1
        except Exception:  # a verdict the kernel refused; nothing more can be done for that packet
            self.errors += 1

    def release_due(self, now: float) -> None:
        while self.heap and self.heap[0][0] <= now:
            _, _, packet = heapq.heappop(self.heap)
            self._accept(packet)

    def next_timeout(self, now: float) -> float | None:
        if not self.heap:
            return None
        return max(0.0, self.heap[0][0] - now)

    def release_all(self) -> None:
        self.draining = True
        while self.heap:
            _, _, packet = heapq.heappop(self.heap)
            self._accept(packet)

    def stats(self) -> str:
        return (f"stats received={self.received} released={self.released} "
                f"passed_at_once={self.passed_at_once} errors={self.errors} most_held={self.most_held}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m galgo_jepsen.delayq", description=__doc__.split("\n\n")[0])
    ap.add_argument("--queue", type=int, required=True, help="NFQUEUE number to bind (per namespace)")
    ap.add_argument("--ms", type=float, required=True, help="mean hold time in milliseconds")
    ap.add_argument("--jitter", type=float, default=0.0, help="uniform +- spread of the hold time, ms")
    ap.add_argument("--max-held", type=int, default=20000, help="beyond this many held, pass at once")
    ap.add_argument("--seed", type=int, default=None, help="seed of the hold-time draws")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="release everything and exit when the starting process goes away")
    args = ap.parse_args(argv)
    if args.ms < 0 or args.jitter < 0:
        ap.error("--ms and --jitter must not be negative")

    from netfilterqueue import COPY_META, NetfilterQueue  # imported late so --help works without it

    stop = False

    def on_signal(signum, frame):  # noqa: ARG001
        nonlocal stop
        stop = True

    # A signal makes the wake-up pipe readable, which ends the select below at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    holder = Holder(args.ms, args.jitter, args.max_held, random.Random(args.seed))
    nfq = NetfilterQueue()
    # COPY_META: the kernel keeps the payload, only the packet's id comes up; the verdict leaves it as is.
    nfq.bind(args.queue, holder.on_packet, max_len=args.max_held + 1024, mode=COPY_META)
    fd = nfq.get_fd()
    parent = os.getppid()
    print(f"ready queue={args.queue}", flush=True)

    try:
        while not stop:
            now = time.monotonic()
            holder.release_due(now)
            timeout = holder.next_timeout(now)
            if args.exit_with_parent:
                timeout = 1.0 if timeout is None else min(timeout, 1.0)
            readable, _, _ = select.select([fd, wake_r], [], [], timeout)
            if fd in readable:
                nfq.run(block=False)
            if wake_r in readable:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            if args.exit_with_parent and os.getppid() != parent:
                stop = True
    finally:
        # Never leak a packet: let go of everything held, then of whatever was queued meanwhile.
        holder.release_all()
        try:
            nfq.run(block=False)
        except OSError:
            pass
        holder.release_all()
        nfq.unbind()
        print(holder.stats(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
