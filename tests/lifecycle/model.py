"""The pure model of what a Galgo server (Iggy semantics) holds: streams, topics, partitions, messages, stored
consumer offsets and consumer groups. No I/O: `apply(op)` changes the model and says what the server must
answer (a value, or an error matched by a regular expression).

Rules modelled (Iggy 0.9 unless a quirk says otherwise, see QUIRKS):
- stream and topic ids take the lowest free slot from 0; names are unique (streams globally, topics per
  stream); partitions are 0..n-1, CreatePartitions appends, DeletePartitions removes the last ones (not more
  than there are);
- consumer-group ids are per topic, from 0, never reused while the topic lives; a new topic starts again at 0;
- offsets are dense per partition from 0; a purge empties every partition of the topic (or stream) and
  offsets start again at 0; DeleteSegments removes a prefix of whole batches (how much depends on segment
  sizes the model does not know: the runner reads the new first offset and the model adopts it after
  checking it is plausible);
- stored consumer offsets belong to one incarnation of a partition: deleting the stream, topic or
  partition (or the group, for a group's offsets) drops them, so a re-created one with the same ids starts
  with none; Iggy's purge drops the partition's stored offsets too;
- a poll answers at most `count` messages from its start (Offset: the value, First: the first kept,
  Last: next - count, Next: stored + 1 or the first kept), never before the first kept message;
  auto-commit stores the offset of the last message answered;
- StoreConsumerOffset needs 0 <= offset < next offset (so a non-empty partition); DeleteConsumerOffset
  needs a stored one;
- consumer-group membership (one client, "main", joins and leaves) does not survive a restart of the node
  the client is on: the runner leaves every group before restarting only some nodes of a cluster, and a
  restart of every node leaves each group with no member.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

# Where Galgo knowingly differs from Iggy and the runs should still pass, the model can mimic Galgo.
# Each quirk names the behaviour; tests/lifecycle/test_lifecycle.py has a strict xfail per quirk showing it.
QUIRKS = {
    "purge_keeps_offsets": "a purge leaves the stored consumer offsets of the purged partitions in place "
    "(Iggy drops them with the messages)",
}

NOT_FOUND = r"not found|does not exist|not exist"
EXISTS = r"already exists"
INVALID_OFFSET = r"invalid offset"
INVALID_PARTITIONS = r"invalid partitions count"
UNAVAILABLE = r"unavailable"
ANY_ERROR = r"."


@dataclass
class Msg:
    offset: int
    id: int
    payload: bytes
    headers: dict | None  # key -> (type name, value), as the SDK reads them back


@dataclass
class Partition:
    msgs: list = field(default_factory=list)  # index = offset; entries below `low` are deleted
    low: int = 0  # first offset kept (DeleteSegments)
    batch_starts: list = field(default_factory=list)  # base offset of every batch, in order
    offsets: dict = field(default_factory=dict)  # ("c", consumer id) | ("g", group id) -> stored offset

    @property
    def next(self) -> int:
        return len(self.msgs)

    def kept(self) -> list:
        return self.msgs[self.low :]


@dataclass
class Group:
    name: str
    members: set = field(default_factory=set)


@dataclass
class Topic:
    name: str
    partitions: list
    groups: dict = field(default_factory=dict)  # group id -> Group
    next_group_id: int = 0


@dataclass
class Stream:
    name: str
    topics: dict = field(default_factory=dict)  # topic id -> Topic


class Expect:
    """What the server must answer: `value` (compared as is) or an error whose message matches `error`."""

    def __init__(self, value=None, error: str | None = None):
        self.value = value
        self.error = error

    def __repr__(self) -> str:
        return f"error /{self.error}/" if self.error else f"{self.value!r}"


def norm_headers(headers: dict | None) -> dict | None:
    """User headers as compared: key -> (Python type name, value), so that True and 1 differ."""
    return None if not headers else {k: (type(v).__name__, v) for k, v in headers.items()}


def lowest_free(ids) -> int:
    i = 0
    while i in ids:
        i += 1
    return i


class Model:
    def __init__(self, nodes: int = 1, quirks: set | None = None):
        self.nodes = nodes
        self.quirks = set(QUIRKS) if quirks is None else set(quirks)
        self.streams: dict[int, Stream] = {}

    def copy(self) -> "Model":
        return copy.deepcopy(self)

    # ---------------------------------------------------------------- lookups

    def stream_id(self, ref) -> int | None:
        """The id a stream reference (an id or a name) resolves to, None if there is none."""
        if isinstance(ref, int):
            return ref if ref in self.streams else None
        for sid, s in self.streams.items():
            if s.name == ref:
                return sid
        return None

    def topic_id(self, sid: int | None, ref) -> int | None:
        if sid is None:
            return None
        topics = self.streams[sid].topics
        if isinstance(ref, int):
            return ref if ref in topics else None
        for tid, t in topics.items():
            if t.name == ref:
                return tid
        return None

    def topic(self, sref, tref) -> Topic | None:
        sid = self.stream_id(sref)
        tid = self.topic_id(sid, tref)
        return None if tid is None else self.streams[sid].topics[tid]

    def group_id(self, t: Topic, ref) -> int | None:
        if isinstance(ref, int):
            return ref if ref in t.groups else None
        for gid, g in t.groups.items():
            if g.name == ref:
                return gid
        return None

    def partitions(self):
        """(stream id, topic id, partition id, Partition) of every partition."""
        for sid in sorted(self.streams):
            for tid in sorted(self.streams[sid].topics):
                for pid, p in enumerate(self.streams[sid].topics[tid].partitions):
                    yield sid, tid, pid, p

    # ---------------------------------------------------------------- operations

    def apply(self, op) -> Expect:
        return getattr(self, "op_" + op.kind)(**op.args)

    def op_create_stream(self, name):
        if self.stream_id(name) is not None:
            return Expect(error=EXISTS)
        sid = lowest_free(self.streams)
        self.streams[sid] = Stream(name)
        return Expect(sid)

    def op_delete_stream(self, stream):
        sid = self.stream_id(stream)
        if sid is None:
            return Expect(error=NOT_FOUND)
        del self.streams[sid]
        return Expect(None)

    def op_update_stream(self, stream, name):
        sid = self.stream_id(stream)
        if sid is None:
            return Expect(error=NOT_FOUND)
        other = self.stream_id(name)
        if other is not None and other != sid:
            return Expect(error=EXISTS)
        self.streams[sid].name = name
        return Expect(None)

    def op_update_topic(self, stream, topic, name):
        sid = self.stream_id(stream)
        tid = self.topic_id(sid, topic)
        if tid is None:
            return Expect(error=NOT_FOUND)
        other = self.topic_id(sid, name)
        if other is not None and other != tid:
            return Expect(error=EXISTS)
        self.streams[sid].topics[tid].name = name
        return Expect(None)

    def op_create_topic(self, stream, name, partitions):
        sid = self.stream_id(stream)
        if sid is None:
            return Expect(error=NOT_FOUND)
        if self.topic_id(sid, name) is not None:
            return Expect(error=EXISTS)
        topics = self.streams[sid].topics
        tid = lowest_free(topics)
        topics[tid] = Topic(name, [Partition() for _ in range(partitions)])
        return Expect(tid)

    def op_delete_topic(self, stream, topic):
        sid = self.stream_id(stream)
        tid = self.topic_id(sid, topic)
        if tid is None:
            return Expect(error=NOT_FOUND)
        del self.streams[sid].topics[tid]
        return Expect(None)

    def op_create_partitions(self, stream, topic, count):
        t = self.topic(stream, topic)
        if t is None:
            return Expect(error=NOT_FOUND)
        t.partitions.extend(Partition() for _ in range(count))
        return Expect(None)

    def op_delete_partitions(self, stream, topic, count):
        t = self.topic(stream, topic)
        if t is None:
            return Expect(error=NOT_FOUND)
        if count > len(t.partitions):
            return Expect(error=INVALID_PARTITIONS)
        gone = len(t.partitions) - count
        del t.partitions[gone:]
        return Expect(None)

    def _purge(self, t: Topic) -> None:
        for p in t.partitions:
            p.msgs, p.low, p.batch_starts = [], 0, []
            if "purge_keeps_offsets" not in self.quirks:
                p.offsets.clear()

    def op_purge_topic(self, stream, topic):
        t = self.topic(stream, topic)
        if t is None:
            return Expect(error=NOT_FOUND)
        if self.nodes > 1:
            return Expect(error=UNAVAILABLE)
        self._purge(t)
        return Expect(None)

    def op_purge_stream(self, stream):
        sid = self.stream_id(stream)
        if sid is None:
            return Expect(error=NOT_FOUND)
        if self.nodes > 1:
            return Expect(error=UNAVAILABLE)
        for t in self.streams[sid].topics.values():
            self._purge(t)
        return Expect(None)

    def op_send(self, stream, topic, partition, msgs):
        """msgs: [(id, payload, headers)]; answers the base offset."""
        t = self.topic(stream, topic)
        if t is None or partition >= len(t.partitions):
            return Expect(error=NOT_FOUND)
        p = t.partitions[partition]
        base = p.next
        p.batch_starts.append(base)
        for i, (mid, payload, headers) in enumerate(msgs):
            p.msgs.append(Msg(base + i, mid, payload, norm_headers(headers)))
        return Expect(base)

    def _consumer_key(self, t: Topic, consumer):
        """consumer: ("c", numeric id) or ("g", group name or id) -> the offsets key, or None."""
        kind, ref = consumer
        if kind == "c":
            return ("c", ref)
        gid = self.group_id(t, ref)
        return None if gid is None else ("g", gid)

    def op_poll(self, stream, topic, partition, consumer, strategy, value, count, auto_commit):
        """Answers the offsets of the messages polled (the runner compares the messages themselves)."""
        t = self.topic(stream, topic)
        if t is None or partition >= len(t.partitions):
            return Expect(error=NOT_FOUND)
        key = self._consumer_key(t, consumer)
        if key is None:
            return Expect(error=ANY_ERROR)
        p = t.partitions[partition]
        if strategy == "offset":
            start = value
        elif strategy == "first":
            start = 0
        elif strategy == "last":
            start = max(p.next - count, 0)
        else:  # next
            start = p.offsets[key] + 1 if key in p.offsets else 0
        start = max(start, p.low)
        got = p.msgs[start : min(start + count, p.next)] if count > 0 else []
        if auto_commit and got:
            p.offsets[key] = got[-1].offset
        return Expect(got)

    def op_store_offset(self, stream, topic, partition, consumer, offset):
        t = self.topic(stream, topic)
        if t is None or partition >= len(t.partitions):
            return Expect(error=NOT_FOUND)
        key = self._consumer_key(t, consumer)
        if key is None:
            return Expect(error=ANY_ERROR)
        p = t.partitions[partition]
        if offset >= p.next:
            return Expect(error=INVALID_OFFSET)
        p.offsets[key] = offset
        return Expect(None)

    def op_delete_offset(self, stream, topic, partition, consumer):
        t = self.topic(stream, topic)
        if t is None or partition >= len(t.partitions):
            return Expect(error=NOT_FOUND)
        key = self._consumer_key(t, consumer)
        if key is None:
            return Expect(error=ANY_ERROR)
        p = t.partitions[partition]
        if key not in p.offsets:
            return Expect(error=NOT_FOUND)
        del p.offsets[key]
        return Expect(None)

    def op_get_offset(self, stream, topic, partition, consumer):
        """Answers (current offset, stored offset) or None when nothing is stored."""
        t = self.topic(stream, topic)
        if t is None or partition >= len(t.partitions):
            return Expect(error=NOT_FOUND)
        key = self._consumer_key(t, consumer)
        if key is None:
            return Expect(error=ANY_ERROR)
        p = t.partitions[partition]
        if key not in p.offsets:
            return Expect(None)
        return Expect((max(p.next - 1, 0), p.offsets[key]))

    def op_create_group(self, stream, topic, name):
        t = self.topic(stream, topic)
        if t is None:
            return Expect(error=NOT_FOUND)
        if self.group_id(t, name) is not None:
            return Expect(error=EXISTS)
        gid = t.next_group_id
        t.next_group_id += 1
        t.groups[gid] = Group(name)
        return Expect(gid)

    def op_delete_group(self, stream, topic, group):
        t = self.topic(stream, topic)
        gid = None if t is None else self.group_id(t, group)
        if gid is None:
            return Expect(error=NOT_FOUND if t is None else ANY_ERROR)
        del t.groups[gid]
        for p in t.partitions:
            p.offsets.pop(("g", gid), None)
        return Expect(None)

    def op_join_group(self, stream, topic, group):
        t = self.topic(stream, topic)
        gid = None if t is None else self.group_id(t, group)
        if gid is None:
            return Expect(error=ANY_ERROR)
        t.groups[gid].members.add("main")
        return Expect(None)

    def op_leave_group(self, stream, topic, group):
        t = self.topic(stream, topic)
        gid = None if t is None else self.group_id(t, group)
        if gid is None or "main" not in t.groups[gid].members:
            return Expect(error=ANY_ERROR)
        t.groups[gid].members.discard("main")
        return Expect(None)

    def op_delete_segments(self, stream, topic, partition, count):
        """Answers (first kept offset before, next offset, batch starts): the runner reads the new first
        kept offset and calls adopt_low."""
        t = self.topic(stream, topic)
        if t is None or partition >= len(t.partitions):
            return Expect(error=NOT_FOUND)
        p = t.partitions[partition]
        return Expect((p.low, p.next, list(p.batch_starts)))

    def adopt_low(self, stream, topic, partition, low) -> str | None:
        """Takes the first kept offset the server reports after DeleteSegments; says why it cannot be."""
        p = self.topic(stream, topic).partitions[partition]
        if low < p.low:
            return f"first kept offset went back from {p.low} to {low}"
        if low != p.low and low not in p.batch_starts and low != p.next:
            return f"first kept offset {low} is not the start of a batch (batches start at {p.batch_starts})"
        if low > p.next:
            return f"first kept offset {low} is past the next offset {p.next}"
        p.low = low
        return None

    def op_restart(self, how, node):
        """A restart changes nothing a client stored; consumer-group members go (see the module comment)."""
        for s in self.streams.values():
            for t in s.topics.values():
                for g in t.groups.values():
                    g.members.clear()
        return Expect(None)

    def op_check(self):
        return Expect(None)

    # ---------------------------------------------------------------- the whole observable state

    def observable(self) -> dict:
        """Everything the runner reads back after a restart, in the shape it builds from the server."""
        out = {"streams": [], "partitions": {}, "offsets": {}, "groups": {}}
        for sid in sorted(self.streams):
            s = self.streams[sid]
            topics = []
            for tid in sorted(s.topics):
                t = s.topics[tid]
                parts = [(pid, p.next - p.low, max(p.next - 1, 0)) for pid, p in enumerate(t.partitions)]
                topics.append((tid, t.name, len(t.partitions), sum(n for _, n, _ in parts), parts))
                out["groups"][(sid, tid)] = [
                    (gid, g.name, len(t.partitions), len(g.members)) for gid, g in sorted(t.groups.items())
                ]
                for pid, p in enumerate(t.partitions):
                    out["partitions"][(sid, tid, pid)] = [(m.offset, m.id, m.payload, m.headers) for m in p.kept()]
                    out["offsets"][(sid, tid, pid)] = {k: v for k, v in sorted(p.offsets.items())}
            out["streams"].append((sid, s.name, len(s.topics), sum(t[3] for t in topics), topics))
        if self.nodes == 1:
            # GetStats describes the node that answers: checked on one node only.
            topics = [t for s in self.streams.values() for t in s.topics.values()]
            out["stats"] = (len(self.streams), len(topics), sum(len(t.partitions) for t in topics),
                            sum(x[3] for x in out["streams"]), sum(len(t.groups) for t in topics))
        return out
