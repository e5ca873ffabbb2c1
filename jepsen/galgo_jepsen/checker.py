"""The checker: reads a history (see history.py) and says which safety properties held.

`check(history)` walks the history once in order, pairing every client invoke with the completion of
the same process, and then derives every check from what it collected; the whole thing is linear in the
number of events (dicts and sets, a bisect here and there), so a history of a million events takes
seconds. It returns

  {"checks": [{"name", "passed", "count", "examples": [at most 10], ("reason"), ("informational")}, ...],
   "stats": {...}, "availability": {...}}

Every check passes only with a count of zero, except the one marked informational (it is reported and
never fails the run). `print_table(result)` prints the table, ending with the line `N passed, N failed`.
`python -m galgo_jepsen.checker STORE_DIR` (run from jepsen/) reads STORE_DIR/history.jsonl, writes
STORE_DIR/results.json and STORE_DIR/timeline.png, prints the table and exits 0 iff every check passed.

Words used below. A value is *acked* when its send completed "ok", *failed* when its send completed
"fail" (the server certainly did not take it), *indeterminate* when the send completed "info" or never
completed. A *read* is any list of (partition, offset, value) the history shows: an ok poll, an ok
group_poll, or an ok final_read (one per node asked, after every fault healed). The *known offset* of a
value is where a final read holds it, else where a poll saw it. Ordering between operations is by the
history's index (the order the runner observed), so "A before B" means A completed before B was invoked.
Message values written as strings of digits are read as integers.

The checks, exactly:

lost
    An acked value of partition p that a final read of p does not hold. Every final read of p is looked
    at (one per node), so a value one node lacks counts even when the others have it; the example lists
    the nodes that lack it. A final read that starts above offset 0 (the run used retention) excuses the
    values below its first offset: a value whose known offset is lower, or, with no known offset, a value
    acked before the send of the read's first value was invoked (it must precede it in the log). A
    partition with acked values and no final read at all fails this check with a reason (nothing can be
    shown to be kept).
lost while later offsets visible
    The subset of lost values for which the final read that lacks the value shows something later: an
    offset at or above the value's known offset, or a value whose send was invoked after this value's
    send was acked (so it must sit at a higher offset). These are the certain losses; the others may also
    be a node that lags.
unseen
    An acked value that no final read of any partition holds (and no retention excuse applies). If the
    history holds no ok final_read at all, this check fails with that reason rather than passing.
duplicate
    One value at two different (partition, offset) places, across all reads: at two offsets of one
    partition, or in two partitions.
inconsistent offsets
    One (partition, offset) read with two different values, by any readers (polls, group polls, final
    reads from different nodes).
offsets contiguous
    A final read whose offsets are not first, first+1, first+2, ... in order (first may be above 0 after
    retention, but there may be no gap, repeat or step backwards). The count is the number of breaks.
per-producer order
    For one process and one partition, an acked send whose values land (known offsets) below a value of
    an earlier acked send of the same process (the earlier one completed before the later one was
    invoked); also, within one acked batch, values whose offsets do not increase in the batch's order.
aborted read
    A value whose send completed "fail" appears in some read, the send's code not being 58.
aborted read, 58 committed anyway
    The same for a send that failed with code 58 (the node asked could not prove its metadata current,
    yet the batch was committed): reported apart because that failure is known to be less definite.
phantom
    A value read that no send (in any outcome) ever carried.
read of uncommitted
    A poll or group poll during the run returned value v at (p, o), and either some final read of p
    holds another value at o, or no final read of p holds v at o while one reaches down to o (its first
    offset is at most o: the partition ends below o, the value was rolled back). A node whose read merely
    ends short while another node holds v at o is a lagging replica, reported by lost, not here.
    Partitions without a final read are not judged here (lost reports them).
nonmonotonic poll
    For one consumer (process plus consumer name, or plain process for anonymous polls) and partition: a
    poll whose returned offsets do not strictly increase; or a poll with auto_commit that is not a seek
    (its requested offset is absent or not below the consumer's previous next offset) and returns an
    offset at or below the highest offset the consumer already received since its last seek.
skipped offsets
    A poll with a requested offset o (given explicitly, or, for an auto-commit poll without one, the
    previous next offset when the consumer's previous poll of the partition was ok) whose first returned
    offset is above o while a final read of the partition holds an offset in [o, first returned); and any
    gap between two consecutive returned offsets a < b of a poll or group poll where a final read holds an
    offset strictly between them. Offsets the log no longer holds (retention) are not skips.
stored offsets backwards
    For one stored offset (consumer name or group, and partition) a read-back (get_offset, group_offset)
    lower than what must be stored. What must be stored, the *floor*, is kept thus: an ok store of s sets
    it to s, lowered to any store value concurrent with s (which may have applied after it); the invoke of
    any store (or auto-commit poll with an explicit offset o, which may store as low as o) lowers it to
    that value; a store that ended "info" may apply at any later time, so its value bounds the floor from
    then on; a read-back of r raises it to r (lowered again to any store in flight during that read). A
    read-back is judged against the floor when it was invoked, lowered to every store invoked while it ran.
    A read-back of None (nothing stored) counts as -1. Group polls never lower the floor: a group poll
    with auto-commit serves from the stored offset + 1 and stores the last offset it returned, above
    the one it started from. A group read-back that names the node it was asked of ("via": Galgo answers
    it from that node's copy of the metadata, which may trail the leader's) is judged against the
    read-backs through that same node only: the floor is kept per (group, partition, node).
group undelivered
    When the workload ran consumer groups (an ok group_poll exists), for each such group every value held
    by the final reads (of any partition) must have been delivered by some ok group_poll of that group.
    Excused (counted in stats as group_skipped_by_unknown_polls): an offset that a group poll ending
    "info" may have consumed — Iggy's auto-commit stores the offset when it serves the poll, so a reply
    lost on the way skips those messages (at-most-once delivery, as Iggy documents it); the unknown poll
    must have run between the deliveries of the partition's nearest offsets below and above the run of
    undelivered offsets it belongs to, and such polls excuse at most as many offsets as they asked for.
group owners
    Every "group_members" event (a snapshot of a group's members and the partitions each holds, as one
    node's GetConsumerGroup answered it, sampled during the run and once after it) must hold each
    partition at most once: one owner at a time, as the server assigns them.
group overlap (informational)
    One partition delivered by group polls of two different members of one group with no membership
    event in between: no group_join/group_leave of that group (invoke or completion), and no "info"
    completion of a process that had joined it (a dropped connection leaves the group on the server),
    from the invoke of the earlier poll to the completion of the later. Membership can change in ways a
    history does not show (a client library reconnecting), so this is reported and never fails the run.
corrupt read
    A client received a reply whose records do not verify: a completion (of a poll, a group poll or a
    final read) whose value carries corrupt=true (the C driver's mark for a poll reply that fails its
    frame or batch checksums or its layout; the example gives the offsets it claimed and the frames whose
    checksum failed). Galgo verifies what it reads and never serves a damaged record, so each counts.
replica
    Every checker "replica" event must carry identical=true (the runner compares every node's final
    read of a partition record for record, every field; the example says where they first differ).
nemesis observed
    Every nemesis "observed" event must carry ok=true: a fault whose effect was not seen fails the run.

Availability, per partition: `longest_unavailable_s` is the longest stretch without an ok send while
sends were being attempted: a stretch starts at the first send invoke with no ok since the last ok send
completion (or at that completion when another send was still in flight) and ends at the next ok send
completion (or, if none came, at the last send event of the partition; `ended_unavailable` then says
that the last attempts got no ok). `recovery_s` is the time from
the last nemesis "stop" to the first ok send completion of the partition after it (None if none came).
`recoveries` lists, for every nemesis stop, the time to the first ok send of any partition after it.
"""

from __future__ import annotations

import json
import sys
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any

MAX_EXAMPLES = 10
INF = float("inf")

CHECK_NAMES = [
    "lost",
    "lost while later offsets visible",
    "unseen",
    "duplicate",
    "inconsistent offsets",
    "offsets contiguous",
    "per-producer order",
    "aborted read",
    "aborted read, 58 committed anyway",
    "phantom",
    "read of uncommitted",
    "nonmonotonic poll",
    "skipped offsets",
    "stored offsets backwards",
    "group undelivered",
    "group owners",
    "group overlap",
    "corrupt read",
    "replica",
    "nemesis observed",
]
INFORMATIONAL = {"group overlap"}


class _Check:
    __slots__ = ("name", "count", "examples", "reason")

    def __init__(self, name: str):
        self.name = name
        self.count = 0
        self.examples: list = []
        self.reason: str | None = None

    def add(self, example: Any, n: int = 1) -> None:
        self.count += n
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)

    def result(self) -> dict:
        info = self.name in INFORMATIONAL
        out = {"name": self.name, "passed": info or self.count == 0, "count": self.count,
               "examples": self.examples}
        if info:
            out["informational"] = True
        if self.reason:
            out["reason"] = self.reason
        return out


def _val(x: Any) -> Any:
    """A message value as an int when it is one (payloads may come back as digit strings)."""
    if type(x) is int:
        return x
    if isinstance(x, str):
        s = x.strip()
        if s.lstrip("-").isdigit():
            return int(s)
    return x


class _FinalRead:
    __slots__ = ("partition", "node", "index", "offsets", "at", "values", "first", "last", "sorted_offs",
                 "max_send_invoke")

    def __init__(self, partition: int, node: Any, index: int, messages: list):
        self.partition = partition
        self.node = node
        self.index = index
        self.offsets = [m[0] for m in messages]
        self.at = {m[0]: _val(m[1]) for m in messages}
        self.values = set(self.at.values())
        self.sorted_offs = sorted(self.at)
        self.first = self.sorted_offs[0] if self.sorted_offs else None
        self.last = self.sorted_offs[-1] if self.sorted_offs else None
        self.max_send_invoke = -1

    def has_offset_in(self, lo: int, hi: int) -> bool:
        """Whether this read holds some offset o with lo <= o < hi."""
        i = bisect_left(self.sorted_offs, lo)
        return i < len(self.sorted_offs) and self.sorted_offs[i] < hi


class _Stored:
    """The floor of one stored offset (see 'stored offsets backwards' above)."""
    __slots__ = ("floor", "info_min", "inflight", "conc", "reads")

    def __init__(self):
        self.floor = -INF
        self.info_min = INF
        self.inflight: dict[int, float] = {}   # op key -> value of a store in flight
        self.conc: dict[int, float] = {}       # op key -> lowest other store value seen while in flight
        self.reads: dict[int, list] = {}       # op key -> [bound, lowest store value during the read]

    def store_invoke(self, key: int, s: float) -> None:
        lowest = min(self.inflight.values(), default=INF)
        for k in self.inflight:
            if s < self.conc[k]:
                self.conc[k] = s
        self.inflight[key] = s
        self.conc[key] = lowest
        if s < self.floor:
            self.floor = s
        for r in self.reads.values():
            if s < r[0]:
                r[0] = s
            if s < r[1]:
                r[1] = s

    def store_complete(self, key: int, s: float, type_: str) -> None:
        if key in self.inflight:
            del self.inflight[key]
            conc = self.conc.pop(key)
        else:
            conc = INF
        if type_ == "ok":
            self.floor = min(s, conc, self.info_min)
        elif type_ == "info":
            self.info_min = min(self.info_min, s)
            self.floor = min(self.floor, s)

    def read_invoke(self, key: int) -> None:
        self.reads[key] = [self.floor, min(self.inflight.values(), default=INF)]

    def read_complete(self, key: int, r: float) -> float | None:
        """Returns the bound the read fell below, or None when it is fine."""
        bound, during = self.reads.pop(key, (self.floor, INF))
        bad = bound if r < bound else None
        raised = min(r, during, self.info_min, min(self.inflight.values(), default=INF))
        if raised > self.floor:
            self.floor = raised
        return bad


def _fmt_num(x: float) -> float | None:
    if x is None or x in (INF, -INF):
        return None
    return round(x, 6)



_RANK = {"ok": 3, "info": 2, "fail": 1}


def _stored_key(v: dict, group: bool = False) -> tuple | None:
    """Which stored offset an operation is about: ("consumer", name, p) or ("group", name, p); a group
    read-back through one node ("via") is ("group", name, p, "via", node)."""
    p = v.get("partition")
    if group and v.get("group") is not None:
        if v.get("via") is not None:
            return ("group", v["group"], p, "via", v["via"])
        return ("group", v["group"], p)
    if v.get("consumer") is not None:
        return ("consumer", v["consumer"], p)
    if v.get("group") is not None:
        return ("group", v["group"], p)
    return None


class _Send:
    __slots__ = ("partition", "type", "process", "inv_index", "index", "inv_time", "time", "code")

    def __init__(self, partition, type_, process, inv_index, index, inv_time, time, code):
        self.partition = partition
        self.type = type_
        self.process = process
        self.inv_index = inv_index
        self.index = index
        self.inv_time = inv_time
        self.time = time
        self.code = code


class _Run:
    """State of one pass over a history; feed() every event in order, then finish()."""

    def __init__(self):
        self.c = {name: _Check(name) for name in CHECK_NAMES}
        self.counts: dict[str, dict[str, int]] = {}
        self.open_ops: dict[Any, dict] = {}
        self.sends: dict[Any, _Send] = {}
        self.sent_values: set = set()
        self.producer: dict[tuple, list] = {}
        self.final_reads: dict[Any, list[_FinalRead]] = {}
        self.final_read_failures = 0
        self.polls: list[tuple] = []          # (partition, [(o, v)...], source, requested or None)
        self.consumers: dict[tuple, list] = {}  # (process, consumer, p) -> [prev_next, max_recv, prev_ok]
        self.stored: dict[tuple, _Stored] = {}
        self.delivered: dict[Any, set] = {}
        self.delivered_at: dict[Any, dict] = {}   # group -> partition -> [(offset, completion time)]
        self.group_unknown: dict[Any, list] = {}  # group -> [(invoke time, completion time)] of info polls
        self.group_excused = 0
        self.group_epoch: dict[Any, int] = {}
        self.member_groups: dict[Any, set] = {}
        self.group_last: dict[tuple, tuple] = {}
        self.inv_epoch: dict[Any, dict] = {}
        self.avail: dict[Any, dict] = {}
        self.ok_times: dict[Any, list[float]] = {}
        self.stops: list[float] = []
        self.faults: dict[str, int] = {}
        self.replica_events = 0
        self.observed_events = 0
        self.first_time: float | None = None
        self.last_time = 0.0
        self.events = 0

    # -- helpers ----------------------------------------------------------------------------------
    def av(self, p) -> dict:
        a = self.avail.get(p)
        if a is None:
            a = self.avail[p] = {"wstart": None, "pending": 0, "max": 0.0, "window": None,
                                 "attempts": 0, "ok": 0, "last_event": 0.0}
        return a

    def st(self, key: tuple) -> _Stored:
        s = self.stored.get(key)
        if s is None:
            s = self.stored[key] = _Stored()
        return s

    def bump(self, g) -> None:
        self.group_epoch[g] = self.group_epoch.get(g, 0) + 1

    # -- the pass ---------------------------------------------------------------------------------
    def feed(self, ev: dict) -> None:
        self.events += 1
        typ = ev.get("type")
        f = ev.get("f")
        proc = ev.get("process")
        t = ev.get("time") or 0.0
        if self.first_time is None:
            self.first_time = t
        if t > self.last_time:
            self.last_time = t
        fc = self.counts.setdefault(str(f), {})
        fc[str(typ)] = fc.get(str(typ), 0) + 1
        val = ev.get("value")
        v = val if isinstance(val, dict) else {}

        if proc == "nemesis":
            if f == "start":
                name = str(v.get("fault"))
                self.faults[name] = self.faults.get(name, 0) + 1
            elif f == "stop":
                self.stops.append(t)
            elif f == "observed":
                self.observed_events += 1
                if v.get("ok") is not True:
                    self.c["nemesis observed"].add({"index": ev.get("index"), "time": t,
                                                    "fault": v.get("fault"), "effect": v.get("effect")})
            return
        if f == "group_members":  # a snapshot, not an operation of the workload
            held: dict = {}
            for m in v.get("members") or ():
                if not isinstance(m, (list, tuple)) or len(m) != 2:
                    continue
                for p in m[1] or ():
                    if p in held:
                        self.c["group owners"].add({"index": ev.get("index"), "group": v.get("group"),
                                                    "node": v.get("node"), "partition": p,
                                                    "members": [held[p], m[0]]})
                    else:
                        held[p] = m[0]
            return
        if f == "replica":
            self.replica_events += 1
            if v.get("identical") is not True:
                self.c["replica"].add({"partition": v.get("partition"), "nodes": v.get("nodes"),
                                       "records": v.get("records"), "difference": v.get("difference")})
            return

        if typ == "invoke":
            if proc in self.open_ops:   # an invoke without a completion: indeterminate
                prev = self.open_ops.pop(proc)
                self.complete(prev, {"type": "info", "f": prev.get("f"), "process": proc,
                                     "index": ev.get("index", 0), "time": t})
            self.open_ops[proc] = ev
            self.invoke(ev, f, proc, t, v)
            return
        inv = self.open_ops.get(proc)
        if inv is not None and inv.get("f") == f:
            del self.open_ops[proc]
        else:
            inv = None
        self.complete(inv, ev)

    def invoke(self, ev, f, proc, t, v) -> None:
        idx = ev.get("index", 0)
        if f == "send":
            for x in v.get("values") or ():
                self.sent_values.add(_val(x))
            a = self.av(v.get("partition"))
            a["attempts"] += 1
            a["pending"] += 1
            a["last_event"] = t
            if a["wstart"] is None:
                a["wstart"] = t
        elif f == "store_offset":
            key = _stored_key(v)
            if key is not None and v.get("offset") is not None:
                self.st(key).store_invoke(idx, v["offset"])
        elif f in ("get_offset", "group_offset"):
            key = _stored_key(v, group=(f == "group_offset"))
            if key is not None:
                self.st(key).read_invoke(idx)
        elif f == "poll":
            if v.get("auto_commit") and v.get("consumer") is not None and v.get("offset") is not None:
                self.st(("consumer", v["consumer"], v.get("partition"))).store_invoke(idx, v["offset"])
        elif f == "group_poll":
            self.inv_epoch[proc] = dict(self.group_epoch)
        elif f in ("group_join", "group_leave"):
            self.bump(v.get("group"))

    def complete(self, inv: dict | None, ev: dict) -> None:
        typ = ev.get("type")
        f = ev.get("f") if ev.get("f") is not None else (inv or {}).get("f")
        proc = ev.get("process")
        idx = ev.get("index", 0)
        t = ev.get("time") or 0.0
        iv = inv.get("value") if inv is not None and isinstance(inv.get("value"), dict) else {}
        cv = ev.get("value") if isinstance(ev.get("value"), dict) else {}
        v = {**iv, **cv} if iv else cv
        inv_idx = inv.get("index", idx) if inv is not None else idx
        inv_t = (inv.get("time") or 0.0) if inv is not None else t

        if cv.get("corrupt") is True:
            self.c["corrupt read"].add({"f": f, "process": proc, "index": idx, "time": t,
                                        "partition": cv.get("partition", iv.get("partition")),
                                        "node": ev.get("node"), "offsets": (cv.get("offsets") or [])[:20],
                                        "bad_frames": (cv.get("bad_frames") or [])[:20]})

        if typ == "info" and proc in self.member_groups:
            for g in self.member_groups[proc]:
                self.bump(g)

        if f == "send":
            self._send(inv, ev, typ, proc, idx, t, v, inv_idx, inv_t)
        elif f == "final_read":
            if typ == "ok":
                fr = _FinalRead(v.get("partition"), v.get("node", ev.get("node")), idx,
                                v.get("messages") or [])
                self.final_reads.setdefault(fr.partition, []).append(fr)
            else:
                self.final_read_failures += 1
        elif f == "poll":
            self._poll(inv, typ, proc, idx, t, v, iv, inv_idx)
        elif f == "group_poll":
            self._group_poll(typ, proc, idx, t, v, inv_t)
        elif f in ("group_join", "group_leave"):
            g = v.get("group")
            self.bump(g)
            if typ == "ok":
                member = v.get("member", proc)
                if f == "group_join":
                    self.member_groups.setdefault(member, set()).add(g)
                else:
                    self.member_groups.get(member, set()).discard(g)
        elif f == "store_offset":
            key = _stored_key(v)
            if key is not None and v.get("offset") is not None:
                s = self.st(key)
                if inv is None:
                    s.store_invoke(inv_idx, v["offset"])
                s.store_complete(inv_idx, v["offset"], typ)
        elif f in ("get_offset", "group_offset"):
            key = _stored_key(v, group=(f == "group_offset"))
            if key is None:
                return
            s = self.st(key)
            if inv is None:
                s.read_invoke(inv_idx)
            if typ != "ok":
                s.reads.pop(inv_idx, None)
                return
            r = v.get("offset")
            r = -1 if r is None else r
            bad = s.read_complete(inv_idx, r)
            if bad is not None:
                self.c["stored offsets backwards"].add(
                    {"key": list(key), "read": r, "must_be_at_least": bad, "f": f, "process": proc,
                     "index": idx, "time": t})

    def _send(self, inv, ev, typ, proc, idx, t, v, inv_idx, inv_t) -> None:
        p = v.get("partition")
        values = [_val(x) for x in v.get("values") or ()]
        rank = _RANK.get(typ, 2)
        for x in values:
            self.sent_values.add(x)
            old = self.sends.get(x)
            if old is None or _RANK.get(old.type, 2) < rank:
                self.sends[x] = _Send(p, typ, proc, inv_idx, idx, inv_t, t, ev.get("code"))
        a = self.av(p)
        if inv is None:
            a["attempts"] += 1
        elif a["pending"] > 0:
            a["pending"] -= 1
        a["last_event"] = t
        if typ == "ok":
            a["ok"] += 1
            self.ok_times.setdefault(p, []).append(t)
            if a["wstart"] is not None:
                w = t - a["wstart"]
                if w > a["max"]:
                    a["max"] = w
                    a["window"] = [a["wstart"], t]
            a["wstart"] = t if a["pending"] > 0 else None
            self.producer.setdefault((proc, p), []).append(values)

    def _poll(self, inv, typ, proc, idx, t, v, iv, inv_idx) -> None:
        p = v.get("partition")
        consumer = v.get("consumer")
        auto = bool(v.get("auto_commit"))
        req = iv.get("offset") if inv is not None else v.get("offset")
        if auto and consumer is not None and req is not None:
            # the poll may have stored as low as req; it never makes the floor higher
            self.st(("consumer", consumer, p)).store_complete(inv_idx, req, "info" if typ == "info" else "fail")
        ck = (proc, consumer, p)
        cs = self.consumers.get(ck)
        if cs is None:
            cs = self.consumers[ck] = [None, None, False]
        if typ != "ok":
            cs[2] = False
            return
        msgs = [(m[0], _val(m[1])) for m in v.get("messages") or ()]
        offs = [m[0] for m in msgs]
        who = {"process": proc, "consumer": consumer, "partition": p, "requested": req, "index": idx,
               "time": t}
        for a, b in zip(offs, offs[1:]):
            if b <= a:
                self.c["nonmonotonic poll"].add({**who, "kind": "offsets not increasing within a poll",
                                                 "offsets": offs[:20]})
                break
        prev_next, max_recv, prev_ok = cs
        seek = req is not None and prev_next is not None and req < prev_next
        if auto and not seek and max_recv is not None and offs and min(offs) <= max_recv:
            self.c["nonmonotonic poll"].add({**who, "kind": "auto-commit poll went back",
                                             "already_received_up_to": max_recv, "first": min(offs)})
        eff = req
        if eff is None and auto and prev_ok and prev_next is not None:
            eff = prev_next
        if msgs:
            self.polls.append((p, msgs, ("poll", proc, consumer), eff, idx, t))
        if seek:
            max_recv = None
        if offs:
            m = max(offs)
            max_recv = m if max_recv is None or m > max_recv else max_recv
            prev_next = offs[-1] + 1
        elif req is not None:
            prev_next = req
        cs[0], cs[1], cs[2] = prev_next, max_recv, True

    def _group_poll(self, typ, proc, idx, t, v, inv_t=None) -> None:
        epochs = self.inv_epoch.pop(proc, {})
        g = v.get("group")
        if typ == "info":
            # with auto-commit the server may have stored an offset past messages nobody saw
            self.group_unknown.setdefault(g, []).append((inv_t if inv_t is not None else t, t, v.get("count") or 0))
        if typ != "ok":
            return
        member = v.get("member", proc)
        by_p: dict[Any, list] = {}
        delivered = self.delivered.setdefault(g, set())
        at = self.delivered_at.setdefault(g, {})
        for m in v.get("messages") or ():
            x = _val(m[2])
            by_p.setdefault(m[0], []).append((m[1], x))
            delivered.add(x)
            at.setdefault(m[0], []).append((m[1], t))
        now = self.group_epoch.get(g, 0)
        for p, msgs in by_p.items():
            self.polls.append((p, msgs, ("group_poll", g, member), None, idx, t))
            last = self.group_last.get((g, p))
            if last is not None and last[0] != member and last[1] == now:
                self.c["group overlap"].add({"group": g, "partition": p, "earlier_member": last[0],
                                             "earlier_index": last[2], "member": member, "index": idx})
            self.group_last[(g, p)] = (member, epochs.get(g, 0), idx)

    @staticmethod
    def _unknown_budget(deliveries: list, lo: int, hi: int, unknown: list) -> int:
        """How many messages group polls of unknown outcome may have consumed from the run of offsets
        lo..hi of a partition that the group never delivered: the counts of those that ran between the
        last delivery of an offset below lo and the first delivery of an offset above hi."""
        t_lo, t_hi = float("-inf"), float("inf")
        for off, t in deliveries:
            if off < lo and t > t_lo:
                t_lo = t
            elif off > hi and t < t_hi:
                t_hi = t
        return sum(count for inv_t, done_t, count in unknown if inv_t <= t_hi and done_t >= t_lo)

    # -- after the pass ---------------------------------------------------------------------------
    def finish(self) -> dict:
        for proc in list(self.open_ops):
            inv = self.open_ops.pop(proc)
            self.complete(inv, {"type": "info", "f": inv.get("f"), "process": proc,
                                "index": inv.get("index", 0), "time": self.last_time})
        c = self.c
        sends = self.sends
        final_reads = self.final_reads

        # every read, final reads first (so a value's known offset is a final read's when there is one)
        where: dict[Any, tuple] = {}
        dup: dict[Any, set] = {}
        at: dict[tuple, tuple] = {}
        inconsistent: dict[tuple, dict] = {}

        def see(p, o, x, source):
            w = where.get(x)
            if w is None:
                where[x] = (p, o)
            elif w != (p, o):
                s = dup.get(x)
                if s is None:
                    s = dup[x] = {w}
                s.add((p, o))
            a = at.get((p, o))
            if a is None:
                at[(p, o)] = (x, source)
            elif a[0] != x:
                d = inconsistent.get((p, o))
                if d is None:
                    d = inconsistent[(p, o)] = {a[0]: a[1]}
                d.setdefault(x, source)

        for p, frs in final_reads.items():
            for i, fr in enumerate(frs):
                # a read equal to one already seen adds nothing (the usual case: every node agrees)
                if not any(fr.offsets == g.offsets and fr.at == g.at for g in frs[:i]):
                    src = f"final_read node={fr.node}"
                    for o in fr.offsets:
                        see(p, o, fr.at[o], src)
                prev = None
                for o in fr.offsets:
                    if prev is not None and o != prev + 1:
                        c["offsets contiguous"].add({"partition": p, "node": fr.node, "after": prev,
                                                     "got": o})
                    prev = o
        for p, msgs, source, _req, _idx, _t in self.polls:
            src = "%s %s" % (source[0], "/".join(str(s) for s in source[1:]))
            for o, x in msgs:
                see(p, o, x, src)

        for x, places in dup.items():
            c["duplicate"].add({"value": x, "places": sorted(([p, o] for p, o in places), key=str)})
        for (p, o), d in inconsistent.items():
            c["inconsistent offsets"].add({"partition": p, "offset": o,
                                           "values": [[x, s] for x, s in d.items()]})

        for x, (p, o) in where.items():
            s = sends.get(x)
            if x not in self.sent_values:
                c["phantom"].add({"value": x, "partition": p, "offset": o})
            elif s is not None and s.type == "fail":
                ex = {"value": x, "partition": p, "offset": o, "send_index": s.index, "code": s.code,
                      "process": s.process}
                c["aborted read, 58 committed anyway" if s.code == 58 else "aborted read"].add(ex)

        # read of uncommitted, skipped offsets
        flagged: set = set()
        for p, msgs, source, req, idx, t in self.polls:
            frs = final_reads.get(p)
            if not frs:
                continue
            for o, x in msgs:
                held = False
                other = None
                for fr in frs:
                    y = fr.at.get(o, _MISSING)
                    if y == x:
                        held = True
                    elif y is not _MISSING or fr.first is None or fr.first <= o:
                        if other is None or y is not _MISSING:
                            other = (fr.node, None if y is _MISSING else y)
                if other is not None and (not held or other[1] is not None) and (p, o, x) not in flagged:
                    flagged.add((p, o, x))
                    c["read of uncommitted"].add(
                        {"partition": p, "offset": o, "value": x, "read_by": list(source), "index": idx,
                         "final_node": other[0], "final_value": other[1]})
            offs = [m[0] for m in msgs]
            if req is not None and offs and offs[0] > req:
                for fr in frs:
                    if fr.has_offset_in(req, offs[0]):
                        c["skipped offsets"].add({"partition": p, "read_by": list(source), "index": idx,
                                                  "requested": req, "first_returned": offs[0],
                                                  "final_node": fr.node})
                        break
            for a, b in zip(offs, offs[1:]):
                if b > a + 1:
                    for fr in frs:
                        if fr.has_offset_in(a + 1, b):
                            c["skipped offsets"].add({"partition": p, "read_by": list(source),
                                                      "index": idx, "gap_after": a, "next": b,
                                                      "final_node": fr.node})
                            break

        # lost, lost while later offsets visible, unseen
        any_final = any(final_reads.values())
        union_final: set = set()
        for frs in final_reads.values():
            for fr in frs:
                union_final |= fr.values
                m = -1
                for x in fr.values:
                    s = sends.get(x)
                    if s is not None and s.inv_index > m:
                        m = s.inv_index
                fr.max_send_invoke = m
        unread: dict[Any, int] = {}
        acked = 0
        for x, s in sends.items():
            if s.type != "ok":
                continue
            acked += 1
            p = s.partition
            frs = final_reads.get(p)
            if not frs:
                unread[p] = unread.get(p, 0) + 1
                if any_final and x not in union_final:
                    c["unseen"].add({"value": x, "partition": p, "acked_index": s.index,
                                     "reason": "no final read of its partition"})
                continue
            w = where.get(x)
            ko = w[1] if w is not None and w[0] == p else None
            missing = []
            later = False
            for fr in frs:
                if x in fr.values:
                    continue
                if fr.first is not None and fr.first > 0:
                    if ko is not None and ko < fr.first:
                        continue
                    if ko is None:
                        head = sends.get(fr.at[fr.first])
                        if head is not None and head.inv_index > s.index:
                            continue
                missing.append(fr.node)
                if (ko is not None and fr.last is not None and fr.last >= ko) or fr.max_send_invoke > s.index:
                    later = True
            if not missing:
                continue
            ex = {"value": x, "partition": p, "missing_on": missing, "final_reads": len(frs),
                  "known_offset": ko, "process": s.process, "acked_index": s.index, "acked_time": s.time}
            c["lost"].add(ex)
            if later:
                c["lost while later offsets visible"].add(ex)
            if x not in union_final:
                c["unseen"].add(ex)
        for p, n in sorted(unread.items(), key=lambda kv: str(kv[0])):
            c["lost"].add({"partition": p, "acked_values": n, "reason": "no final read of this partition"}, n)
            c["lost"].reason = "some partition with acked values has no final read"
        if not any_final:
            c["unseen"].count = max(acked, 1)
            c["unseen"].examples = [{"reason": "the history holds no ok final_read"}]
            c["unseen"].reason = "the history holds no ok final_read: nothing shows the acked values kept"

        # per-producer order
        for (proc, p), batches in self.producer.items():
            hi = None  # (offset, value) highest among earlier batches
            for values in batches:
                offs = []
                for x in values:
                    w = where.get(x)
                    if w is not None and w[0] == p:
                        offs.append((w[1], x))
                for (o1, x1), (o2, x2) in zip(offs, offs[1:]):
                    if o2 <= o1:
                        c["per-producer order"].add({"process": proc, "partition": p,
                                                     "kind": "within one batch", "earlier": [x1, o1],
                                                     "later": [x2, o2]})
                        break
                if offs:
                    lo = min(offs)
                    if hi is not None and lo[0] < hi[0]:
                        c["per-producer order"].add({"process": proc, "partition": p,
                                                     "kind": "later send at lower offset",
                                                     "earlier": [hi[1], hi[0]], "later": [lo[1], lo[0]]})
                    top = max(offs)
                    if hi is None or top[0] > hi[0]:
                        hi = top

        # consumer groups: undelivered
        if self.delivered:
            placed = []
            for p, frs in final_reads.items():
                seen_p: set = set()
                for fr in frs:
                    for o in fr.offsets:
                        x = fr.at[o]
                        if x not in seen_p:
                            seen_p.add(x)
                            placed.append((x, p, o))
            by_part: dict[Any, list] = {}
            for x, p, o in placed:
                by_part.setdefault(p, []).append((o, x))
            for g, got in self.delivered.items():
                at = self.delivered_at.get(g, {})
                unknown = self.group_unknown.get(g, [])
                for p, ox in by_part.items():
                    ox.sort()
                    runs: list[list] = []
                    for o, x in ox:
                        if x in got:
                            continue
                        if runs and runs[-1][-1][0] == o - 1:
                            runs[-1].append((o, x))
                        else:
                            runs.append([(o, x)])
                    for run in runs:
                        if unknown and len(run) <= self._unknown_budget(at.get(p, []), run[0][0], run[-1][0], unknown):
                            self.group_excused += len(run)
                            continue
                        for o, x in run:
                            c["group undelivered"].add({"group": g, "value": x, "partition": p, "offset": o})

        return {"checks": [c[n].result() for n in CHECK_NAMES],
                "stats": self.stats(acked, where, union_final),
                "availability": self.availability()}

    def stats(self, acked: int, where: dict, union_final: set) -> dict:
        return {
            "events": self.events,
            "group_skipped_by_unknown_polls": self.group_excused,
            "duration_s": _fmt_num(self.last_time - (self.first_time or 0.0)),
            "ops": self.counts,
            "processes": len({k[0] for k in self.producer} | {k[0] for k in self.consumers}),
            "sent_values": len(self.sent_values),
            "acked_values": acked,
            "failed_values": sum(1 for s in self.sends.values() if s.type == "fail"),
            "indeterminate_values": sum(1 for s in self.sends.values() if s.type == "info"),
            "read_values": len(where),
            "final_read_values": len(union_final),
            "final_reads": sum(len(v) for v in self.final_reads.values()),
            "final_read_failures": self.final_read_failures,
            "partitions": sorted({*self.avail, *self.final_reads}, key=str),
            "nemesis_faults": self.faults,
            "nemesis_stops": len(self.stops),
            "observed_events": self.observed_events,
            "replica_events": self.replica_events,
            "groups": sorted(self.delivered, key=str),
        }

    def availability(self) -> dict:
        last_stop = self.stops[-1] if self.stops else None
        parts = {}
        for p, a in sorted(self.avail.items(), key=lambda kv: str(kv[0])):
            longest, window = a["max"], a["window"]
            ongoing = a["wstart"] is not None   # the last attempts got no ok
            if ongoing:
                w = max(a["last_event"], a["wstart"]) - a["wstart"]
                if w > longest or a["ok"] == 0:
                    longest, window = w, [a["wstart"], a["last_event"]]
            times = sorted(self.ok_times.get(p, ()))
            rec = None
            if last_stop is not None:
                i = bisect_right(times, last_stop)
                rec = _fmt_num(times[i] - last_stop) if i < len(times) else None
            parts[str(p)] = {
                "longest_unavailable_s": _fmt_num(longest),
                "window": [_fmt_num(x) for x in window] if window else None,
                "ended_unavailable": ongoing,
                "send_attempts": a["attempts"], "send_ok": a["ok"],
                "recovery_s": rec,
            }
        all_ok = sorted(t for ts in self.ok_times.values() for t in ts)
        recoveries = []
        for s in self.stops:
            i = bisect_right(all_ok, s)
            recoveries.append({"stop": _fmt_num(s),
                               "recovery_s": _fmt_num(all_ok[i] - s) if i < len(all_ok) else None})
        return {"partitions": parts, "last_stop": _fmt_num(last_stop), "recoveries": recoveries}


_MISSING = object()


def check(history: list[dict]) -> dict:
    """Checks a history (a list of events, see history.py) and returns the results (see above)."""
    run = _Run()
    for ev in history:
        run.feed(ev)
    return run.finish()


def print_table(result: dict, file=None) -> None:
    """Prints one line per check, its examples' first for a failure, and `N passed, N failed`."""
    out = file or sys.stdout
    checks = result["checks"]
    width = max(len(ch["name"]) for ch in checks) + 2
    print(f"{'check':<{width}}{'result':<8}{'count':>8}  first example", file=out)
    for ch in checks:
        status = "info" if ch.get("informational") else ("ok" if ch["passed"] else "FAIL")
        ex = ""
        if ch.get("reason") and not ch["passed"]:
            ex = ch["reason"]
        elif ch["examples"] and (not ch["passed"] or ch.get("informational")):
            ex = json.dumps(ch["examples"][0], default=str)
        if len(ex) > 110:
            ex = ex[:107] + "..."
        print(f"{ch['name']:<{width}}{status:<8}{ch['count']:>8}  {ex}", file=out)
    av = result.get("availability", {}).get("partitions", {})
    if av:
        worst = max(av.items(), key=lambda kv: kv[1]["longest_unavailable_s"] or 0)
        recs = [x["recovery_s"] for x in av.values() if x["recovery_s"] is not None]
        line = (f"availability: longest window without an ok send {worst[1]['longest_unavailable_s']} s "
                f"(partition {worst[0]})")
        if recs:
            line += f"; recovery after the last stop {max(recs)} s (slowest partition)"
        print(line, file=out)
    npass = sum(1 for ch in checks if ch["passed"])
    print(f"{npass} passed, {len(checks) - npass} failed", file=out)


def all_passed(result: dict) -> bool:
    return all(ch["passed"] for ch in result["checks"])


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .history import load

    ap = argparse.ArgumentParser(prog="python -m galgo_jepsen.checker",
                                 description="Checks STORE_DIR/history.jsonl; writes results.json and "
                                             "timeline.png there; exits 0 iff every check passed.")
    ap.add_argument("store_dir", type=Path)
    ap.add_argument("--no-plot", action="store_true", help="do not write timeline.png")
    args = ap.parse_args(argv)
    history = load(args.store_dir / "history.jsonl")
    result = check(history)
    with open(args.store_dir / "results.json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)
        f.write("\n")
    if not args.no_plot:
        from .plot import timeline
        timeline(history, args.store_dir / "timeline.png")
    print_table(result)
    return 0 if all_passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
