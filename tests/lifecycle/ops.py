"""The seeded operation generator: one operation at a time, chosen from the model's current state with a
`random.Random(seed)`, so that a seed (with the node count and the op count) names one sequence.

Names and ids come from small pools on purpose: streams s0..s2 and topics t0..t2 are deleted and created
again all the time, so that a new incarnation reuses the ids (and often the names) of an old one, and
restarts come often enough that each incarnation is replayed at start. A few operations aim at things that
do not exist (missing stream, topic, partition, group, offset) and must fail without changing anything.
The generator reads only what the model knows without asking the server (the first kept offset after
DeleteSegments, which the server decides, is never used for a choice), so a seed gives the same sequence
against any server that agrees with the model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from model import Model

STREAM_NAMES = ["s0", "s1", "s2"]
TOPIC_NAMES = ["t0", "t1", "t2"]
GROUP_NAMES = ["g0", "g1"]
SINGLE_CONSUMERS = [1, 2, 3]
HEADER_KEYS = ["k0", "k1", "k2"]


@dataclass
class Op:
    kind: str
    args: dict

    def __repr__(self) -> str:
        parts = []
        for k, v in self.args.items():
            if k == "msgs":
                ids = [m[0] for m in v]
                v = f"<{len(v)} msgs, ids {ids[0]:#x}..{ids[-1]:#x}, {sum(len(m[1]) for m in v)} bytes>"
                parts.append(f"{k}={v}")
            else:
                parts.append(f"{k}={v!r}")
        return f"{self.kind}({', '.join(parts)})"


# Relative weights of the operation kinds.
WEIGHTS = {
    "create_stream": 6,
    "delete_stream": 3,
    "update_stream": 2,
    "update_topic": 2,
    "create_topic": 8,
    "delete_topic": 3,
    "create_partitions": 2,
    "delete_partitions": 2,
    "purge_topic": 1,
    "purge_stream": 1,
    "send": 28,
    "poll": 10,
    "store_offset": 5,
    "delete_offset": 2,
    "get_offset": 3,
    "create_group": 2,
    "delete_group": 1,
    "join_group": 3,
    "leave_group": 2,
    "delete_segments": 2,
    "restart": 6,
    "check": 2,
}


# Known server bugs that a run would hit again and again, hiding everything else: the operations that
# reach them are left out unless asked for (lifecycle.py --with-known-bugs). Each has a strict xfail in
# test_lifecycle.py that shows it.
KNOWN_BUGS = {
    "delete_segments_twice_fails": (
        "DeleteSegments on a partition that appended nothing since its previous DeleteSegments (or since a "
        "restart that followed one) is answered 1 (Error) and deletes nothing: the partition group refuses a "
        "second snapshot at the index of the one it has (rgroup_snapshot: index <= snap.index)",
        {},  # the generator sends to the partition first instead
    ),
    "delete_segments_one_replica": (
        "in a cluster DeleteSegments compacts only the replica of the node the client talks to; the other "
        "replicas keep the segments, so once the client's node changes (the SDK follows the metadata leader, "
        "e.g. after a restart) the deleted messages are back and messages_count goes up again",
        {},  # no DeleteSegments against more than one node
    ),
}


def default_weights(with_known_bugs: bool = False) -> dict:
    w = dict(WEIGHTS)
    if not with_known_bugs:
        for _, changes in KNOWN_BUGS.values():
            w.update(changes)
    return w


class Generator:
    def __init__(self, seed: int, nodes: int = 1, weights: dict | None = None, known_bugs: bool = False):
        self.rng = random.Random(seed)
        self.nodes = nodes
        self.known_bugs = known_bugs
        self.weights = dict(default_weights(known_bugs) if weights is None else weights)
        if nodes > 1 and not known_bugs:
            self.weights["delete_segments"] = 0  # KNOWN_BUGS["delete_segments_one_replica"]
        self.ds_next = {}  # id(model partition) -> its next offset at its last DeleteSegments
        self.next_id = ((seed & 0xFFFFFFFF) << 64) | 1  # message ids: unique in a run, never 0

    # A reference to an existing thing, by id or by name, or (now and then) to a missing one.
    def _stream_ref(self, m: Model, missing: float = 0.05):
        r = self.rng
        if not m.streams or r.random() < missing:
            return r.choice([r.randrange(0, 5), r.choice(STREAM_NAMES + ["nope"])])
        sid = r.choice(sorted(m.streams))
        return sid if r.random() < 0.5 else m.streams[sid].name

    def _topic_ref(self, m: Model, missing: float = 0.05):
        """(stream ref, topic ref), existing unless the dice say otherwise (or there is no topic)."""
        r = self.rng
        pairs = [(sid, tid) for sid, s in m.streams.items() for tid in s.topics]
        if not pairs or r.random() < missing:
            return self._stream_ref(m, missing), r.choice([r.randrange(0, 4), r.choice(TOPIC_NAMES)])
        sid, tid = r.choice(sorted(pairs))
        s = m.streams[sid]
        return (sid if r.random() < 0.5 else s.name), (tid if r.random() < 0.5 else s.topics[tid].name)

    def _partition_ref(self, m: Model, missing: float = 0.03):
        """(stream ref, topic ref, partition id) of a partition (preferring existing ones)."""
        r = self.rng
        cands = [(sid, tid, pid) for sid, tid, pid, _ in m.partitions()]
        if not cands or r.random() < missing:
            sref, tref = self._topic_ref(m)
            return sref, tref, r.randrange(0, 5)
        sid, tid, pid = r.choice(cands)
        s = m.streams[sid]
        return (sid if r.random() < 0.5 else s.name), (tid if r.random() < 0.5 else s.topics[tid].name), pid

    def _headers(self) -> dict | None:
        r = self.rng
        if r.random() < 0.5:
            return None
        out = {}
        for k in r.sample(HEADER_KEYS, r.randint(1, len(HEADER_KEYS))):
            kind = r.randrange(4)
            if kind == 0:
                out[k] = r.choice(["", "x", "value", "ünï"]) or "e"
            elif kind == 1:
                out[k] = r.choice([0, 1, 7, 255, 256, 70000, 2**40])
            elif kind == 2:
                out[k] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
            else:
                out[k] = r.random() < 0.5
        return out

    def _messages(self) -> list:
        r = self.rng
        msgs = []
        for _ in range(r.choice([1, 1, 2, 3, 5, 8])):
            size = r.choice([1, 8, 40, 200, 700]) + r.randrange(8)
            msgs.append((self.next_id, r.randbytes(size), self._headers()))
            self.next_id += 1
        return msgs

    def _consumer(self, m: Model, sref, tref):
        """A single consumer, or the group "main" is a member of (when there is one)."""
        r = self.rng
        t = m.topic(sref, tref)
        member_of = [] if t is None else [gid for gid, g in t.groups.items() if "main" in g.members]
        if member_of and r.random() < 0.4:
            gid = r.choice(sorted(member_of))
            return ("g", gid if r.random() < 0.5 else t.groups[gid].name)
        return ("c", r.choice(SINGLE_CONSUMERS))

    def _group_ref(self, m: Model, sref, tref, member: bool | None = None):
        r = self.rng
        t = m.topic(sref, tref)
        gids = [] if t is None else [
            gid for gid, g in t.groups.items() if member is None or (("main" in g.members) == member)
        ]
        if not gids or r.random() < 0.05:
            return r.choice(GROUP_NAMES + [7])
        gid = r.choice(sorted(gids))
        return gid if r.random() < 0.5 else t.groups[gid].name

    def next(self, m: Model) -> Op:
        r = self.rng
        kinds = list(self.weights)
        kind = r.choices(kinds, weights=[self.weights[k] for k in kinds])[0]
        if kind == "create_stream":
            return Op(kind, {"name": r.choice(STREAM_NAMES)})
        if kind == "update_stream":
            return Op(kind, {"stream": self._stream_ref(m), "name": r.choice(STREAM_NAMES)})
        if kind == "update_topic":
            s, t = self._topic_ref(m)
            return Op(kind, {"stream": s, "topic": t, "name": r.choice(TOPIC_NAMES)})
        if kind in ("delete_stream", "purge_stream"):
            return Op(kind, {"stream": self._stream_ref(m)})
        if kind == "create_topic":
            return Op(kind, {"stream": self._stream_ref(m), "name": r.choice(TOPIC_NAMES), "partitions": r.randint(1, 3)})
        if kind in ("delete_topic", "purge_topic"):
            s, t = self._topic_ref(m)
            return Op(kind, {"stream": s, "topic": t})
        if kind in ("create_partitions", "delete_partitions"):
            s, t = self._topic_ref(m)
            tt = m.topic(s, t)
            if kind == "create_partitions":
                count = r.randint(1, 2) if tt is None or len(tt.partitions) < 5 else 1
            else:
                count = r.randint(1, 2) if tt is None else r.randint(1, max(1, len(tt.partitions) + (r.random() < 0.1)))
            return Op(kind, {"stream": s, "topic": t, "count": count})
        if kind == "send":
            s, t, p = self._partition_ref(m)
            return Op(kind, {"stream": s, "topic": t, "partition": p, "msgs": self._messages()})
        if kind == "poll":
            s, t, p = self._partition_ref(m)
            tt = m.topic(s, t)
            nxt = tt.partitions[p].next if tt is not None and p < len(tt.partitions) else 0
            strategy = r.choice(["offset", "first", "last", "next", "next"])
            value = r.randrange(0, nxt + 2) if strategy == "offset" else 0
            return Op(kind, {"stream": s, "topic": t, "partition": p, "consumer": self._consumer(m, s, t),
                             "strategy": strategy, "value": value, "count": r.choice([1, 2, 3, 10, 1000]),
                             "auto_commit": r.random() < 0.6})
        if kind in ("store_offset", "delete_offset", "get_offset"):
            s, t, p = self._partition_ref(m)
            args = {"stream": s, "topic": t, "partition": p, "consumer": self._consumer(m, s, t)}
            if kind == "store_offset":
                tt = m.topic(s, t)
                nxt = tt.partitions[p].next if tt is not None and p < len(tt.partitions) else 0
                args["offset"] = r.randrange(0, nxt + 1) if r.random() < 0.9 else nxt + r.randrange(3)
            return Op(kind, args)
        if kind == "create_group":
            s, t = self._topic_ref(m)
            return Op(kind, {"stream": s, "topic": t, "name": r.choice(GROUP_NAMES)})
        if kind in ("delete_group", "join_group", "leave_group"):
            s, t = self._topic_ref(m)
            member = {"delete_group": None, "join_group": False, "leave_group": True}[kind]
            return Op(kind, {"stream": s, "topic": t, "group": self._group_ref(m, s, t, member)})
        if kind == "delete_segments":
            s, t, p = self._partition_ref(m)
            tt = m.topic(s, t)
            part = tt.partitions[p] if tt is not None and p < len(tt.partitions) else None
            if part is not None and not self.known_bugs and self.ds_next.get(id(part)) == part.next:
                # KNOWN_BUGS["delete_segments_twice_fails"]: append first.
                return Op("send", {"stream": s, "topic": t, "partition": p, "msgs": self._messages()})
            if part is not None:
                self.ds_next[id(part)] = part.next
            return Op(kind, {"stream": s, "topic": t, "partition": p, "count": r.randint(1, 3)})
        if kind == "restart":
            node = 0 if self.nodes == 1 or r.random() < 0.5 else r.randint(1, self.nodes)
            return Op(kind, {"how": r.choice(["sigterm", "kill"]), "node": node})
        return Op("check", {})
