"""The history of a run: what every client and the nemesis did, as Jepsen records it.

File format (history.jsonl in the run's store directory): one JSON object per line, in the order the
runner observed the events (`index` increases by one per line). Every object has

  index      int, 0, 1, 2, ...
  time       float, seconds since the run started (the runner's monotonic clock)
  process    int for a client (each client is one process; a client that lost track of an operation
             gets a new process number, as in Jepsen), or the string "nemesis"
  type       "invoke" (the operation starts), "ok" (it certainly happened), "fail" (it certainly did
             not happen), "info" (nobody knows: a timeout, a dropped connection, an answer that does not
             say). Every invoke of a client is followed by exactly one completion of that process.
  f          the operation (below)
  value      what the operation is about (below); the completion carries the result
and optionally
  node       the node id the client sent the request to
  transport  "tcp", "quic", "http" (Iggy's Python SDK) or "c" (Galgo's C client)
  error      text of the failure (fail and info)
  code       the Iggy status code the server answered, when there was one

Client operations (partition ids are Iggy's, starting at 0 here and below; every value is a unique
integer over the whole run, sent as the message payload b"<value>" with message id = value):

  send          invoke/ok/fail/info value {"partition": p, "values": [v, ...]}   one batch
  poll          invoke value {"partition": p, "offset": o, "count": n}
                ok     value {"partition": p, "offset": o, "messages": [[offset, v], ...]}
                (a polling consumer also carries "consumer": name; with auto-commit "auto_commit": true)
  store_offset  invoke/ok value {"partition": p, "consumer": name, "offset": o}
  get_offset    invoke value {"partition": p, "consumer": name}
                ok     value {"partition": p, "consumer": name, "offset": o or None}
  group_join / group_leave
                invoke/ok value {"group": name, "member": process}
  group_poll    invoke value {"group": name, "member": process, "count": n}
                ok     value {"group": name, "member": process, "messages": [[p, offset, v], ...]}
  group_offset  ok     value {"group": name, "partition": p, "offset": o}   a committed offset read back
  final_read    ok     value {"partition": p, "node": n, "messages": [[offset, v], ...]}
                the whole partition read after every fault healed (one per node that was asked)

Nemesis events (process "nemesis", type "info"):

  start / stop  value {"fault": name, ...details: "nodes", "targets", ...}
  observed      value {"fault": name, "ok": bool, "effect": text}   whether the fault's effect was
                seen (an election, a refused connection, a clock offset, ...)

After the run the runner adds (process "checker", type "info"):

  group_members value {"group": name, "node": n, "members": [[client id, [partitions]], ...]}   the
                group as node n sees it once the group workload's members stopped
  quiesce       value {"seconds": s}   how long the runner waited, after the clients stopped, for every
                replica to report the same last offset (at most 30 s) before the final reads
  replica       value {"partition": p, "nodes": {node: digest}, "identical": bool, "records": n}
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class History:
    """Appends events to history.jsonl as they happen; safe to use from several threads."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._f = open(self.path, "w", encoding="utf-8")
        self._lock = threading.Lock()
        self._index = 0
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def add(self, process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> dict:
        with self._lock:
            ev = {"index": self._index, "time": round(self.now(), 6), "process": process,
                  "type": type_, "f": f, "value": value}
            for k, v in extra.items():
                if v is not None:
                    ev[k] = v
            self._index += 1
            self._f.write(json.dumps(ev, separators=(",", ":")) + "\n")
            self._f.flush()
            return ev

    def close(self) -> None:
        with self._lock:
            self._f.close()


def load(path: Path) -> list[dict]:
    """Reads a history.jsonl back (a torn last line, from a runner killed mid-write, is dropped)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return out
