"""The checker and the timeline plot on small hand-built histories.

`clean()` builds a history where every check must pass: two producers on two partitions (with a failed
send, one ending in code 58, and an indeterminate send that was committed), offset polls, auto-commit
polls, stored offsets (including an explicit store back to a lower offset), a consumer group whose two
members share the partitions, final reads from three nodes, identical replicas and an observed fault.
Each anomaly test changes that history (or a smaller one) so that it holds exactly one anomaly, and
asserts which checks fail: the one named, plus any check whose definition makes it a consequence.
"""

import json
import struct
import time

import pytest

from galgo_jepsen import checker
from galgo_jepsen.checker import check
from galgo_jepsen.history import load


class H:
    """Builds a history: each event one index and 0.01 s later than the previous one."""

    def __init__(self):
        self.events = []
        self.t = 0.0

    def add(self, process, type_, f, value=None, **extra):
        ev = {"index": len(self.events), "time": round(self.t, 6), "process": process, "type": type_,
              "f": f, "value": value}
        ev.update({k: v for k, v in extra.items() if v is not None})
        self.events.append(ev)
        self.t += 0.01
        return ev

    def op(self, process, f, value, type_="ok", result=None, **extra):
        self.add(process, "invoke", f, value)
        return self.add(process, type_, f, value if result is None else result, **extra)

    def send(self, process, p, values, type_="ok", code=None):
        v = {"partition": p, "values": list(values)}
        self.add(process, "invoke", "send", v)
        self.add(process, type_, "send", v, code=code, error=None if type_ == "ok" else "boom")

    def poll(self, process, p, offset, messages, consumer=None, auto=False, count=10):
        inv = {"partition": p, "offset": offset, "count": count}
        if consumer is not None:
            inv["consumer"] = consumer
        if auto:
            inv["auto_commit"] = True
        self.add(process, "invoke", "poll", inv)
        self.add(process, "ok", "poll", {**inv, "messages": [list(m) for m in messages]})

    def store(self, process, consumer, p, offset, type_="ok"):
        self.op(process, "store_offset", {"partition": p, "consumer": consumer, "offset": offset}, type_)

    def get(self, process, consumer, p, offset):
        self.op(process, "get_offset", {"partition": p, "consumer": consumer},
                result={"partition": p, "consumer": consumer, "offset": offset})

    def group_poll(self, member, group, messages):
        self.op(member, "group_poll", {"group": group, "member": member},
                result={"group": group, "member": member, "messages": [list(m) for m in messages]})

    def group_offset(self, group, p, offset):
        self.add(90, "ok", "group_offset", {"group": group, "partition": p, "offset": offset})

    def final(self, p, node, messages):
        self.op(100 + node, "final_read", {"partition": p, "node": node},
                result={"partition": p, "node": node, "messages": [list(m) for m in messages]})

    def nemesis(self, f, value):
        self.add("nemesis", "info", f, value)


LOG = {0: [1, 2, 3, 4, 21], 1: [10, 11]}


def clean(mutate=None, undelivered=(), replica_ok=True, observed_ok=True):
    h = H()
    h.nemesis("start", {"fault": "partition", "nodes": [1, 2, 3]})
    h.send(0, 0, [1, 2])
    h.send(1, 1, [10, 11])
    h.nemesis("observed", {"fault": "partition", "ok": observed_ok, "effect": "election"})
    h.send(0, 0, [20], "fail", code=4)           # certainly not taken, never read
    h.send(0, 0, [22], "fail", code=58)          # code 58, not taken either
    h.send(0, 0, [3])
    h.send(1, 0, [4])
    h.send(2, 0, [21], "info")                  # indeterminate; committed at offset 4
    h.nemesis("stop", {"fault": "partition"})
    h.poll(2, 0, 0, [(0, 1), (1, 2)], consumer="c", count=2)
    h.poll(2, 0, 2, [(2, 3), (3, 4)], consumer="c", count=2)
    h.poll(2, 0, 4, [], consumer="c")           # nothing new yet: next offset stays 4
    h.poll(3, 1, None, [(0, 10)], consumer="a", auto=True, count=1)
    h.poll(3, 1, None, [(1, 11)], consumer="a", auto=True, count=1)
    h.poll(3, 1, 0, [(0, 10), (1, 11)], consumer="a", auto=True)   # a seek back: not a regression
    h.store(2, "c", 0, 3)
    h.get(2, "c", 0, 3)
    h.store(2, "c", 0, 1)                        # an explicit store may move it back
    h.get(2, "c", 0, 1)
    h.get(2, "x", 0, None)                       # nothing stored for x
    h.op(4, "group_join", {"group": "g", "member": 4})
    h.op(5, "group_join", {"group": "g", "member": 5})
    finals = {n: {p: [(o, v) for o, v in enumerate(vals)] for p, vals in LOG.items()} for n in (1, 2, 3)}
    if mutate:
        mutate(h, finals)
    h.group_poll(4, "g", [(0, o, v) for o, v in finals[1][0] if v not in undelivered])
    h.group_poll(5, "g", [(1, o, v) for o, v in finals[1][1] if v not in undelivered])
    h.group_offset("g", 0, 4)
    h.group_offset("g", 1, 1)
    for n in (1, 2, 3):
        for p in (0, 1):
            h.final(p, n, finals[n][p])
    for p in (0, 1):
        h.add("checker", "info", "replica", {"partition": p, "nodes": {"1": "ab", "2": "ab", "3": "ab"},
                                             "identical": replica_ok, "records": len(LOG[p])})
    return h.events


def failing(result):
    return {c["name"] for c in result["checks"] if not c["passed"]}


def get(result, name):
    return next(c for c in result["checks"] if c["name"] == name)


def test_clean_history_passes_every_check(capsys):
    r = check(clean())
    assert failing(r) == set()
    assert all(c["count"] == 0 for c in r["checks"]), [c for c in r["checks"] if c["count"]]
    assert r["stats"]["acked_values"] == 6
    assert r["stats"]["ops"]["send"] == {"invoke": 7, "ok": 4, "fail": 2, "info": 1}
    assert r["stats"]["read_values"] == 7
    checker.print_table(r)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"{len(checker.CHECK_NAMES)} passed, 0 failed"


# ---- lost / unseen ----------------------------------------------------------------------------------

def test_lost_everywhere_is_lost_and_unseen():
    r = check(clean(lambda h, fin: h.send(0, 0, [5])))
    assert failing(r) == {"lost", "unseen"}
    assert get(r, "lost")["examples"][0]["value"] == 5
    assert get(r, "lost")["examples"][0]["missing_on"] == [1, 2, 3]


def test_lost_on_one_node_only():
    def m(h, fin):
        h.send(0, 0, [5])
        for n in (1, 2):
            fin[n][0].append((5, 5))
    r = check(clean(m))
    assert failing(r) == {"lost"}
    assert get(r, "lost")["examples"][0]["missing_on"] == [3]
    assert get(r, "lost while later offsets visible")["count"] == 0


def test_lost_while_later_offsets_visible():
    def m(h, fin):
        h.send(0, 0, [5])
        h.send(0, 0, [6])                        # invoked after 5 was acked: must sit above it
        for n in (1, 2, 3):
            fin[n][0].append((5, 6))
    r = check(clean(m))
    assert failing(r) == {"lost", "lost while later offsets visible", "unseen"}
    assert get(r, "lost while later offsets visible")["examples"][0]["value"] == 5


def test_lost_known_offset_then_overwritten_is_later_visible():
    h = H()
    h.send(0, 0, [1])
    h.send(1, 0, [2], "info")
    h.poll(2, 0, 0, [(0, 1)])
    h.final(0, 1, [(0, 2)])
    r = check(h.events)
    assert {"lost", "lost while later offsets visible", "unseen"} <= failing(r)


def test_retention_excuses_values_below_the_first_offset():
    h = H()
    h.send(0, 0, [1])
    h.send(0, 0, [2])
    h.send(0, 0, [3])
    h.final(0, 1, [(2, 3)])                      # 1 and 2 expired: acked before 3 was sent
    r = check(h.events)
    assert failing(r) == set()


def test_no_final_read_fails_with_a_reason():
    h = H()
    h.send(0, 0, [1])
    r = check(h.events)
    assert failing(r) == {"lost", "unseen"}
    assert "final_read" in get(r, "unseen")["reason"]
    assert "no final read" in get(r, "lost")["reason"]
    # even with nothing acked, a run without final reads is not a pass
    assert "unseen" in failing(check([]))


def test_partition_without_final_read_fails_lost():
    h = H()
    h.send(0, 0, [1])
    h.send(0, 1, [2])
    h.final(0, 1, [(0, 1)])
    r = check(h.events)
    assert failing(r) == {"lost", "unseen"}
    assert get(r, "lost")["examples"][0]["partition"] == 1


# ---- placement -------------------------------------------------------------------------------------

def test_duplicate_at_two_offsets():
    def m(h, fin):
        for n in (1, 2, 3):
            fin[n][0].append((5, 1))
    r = check(clean(m))
    assert failing(r) == {"duplicate"}
    assert get(r, "duplicate")["examples"][0]["value"] == 1


def test_duplicate_in_two_partitions():
    def m(h, fin):
        for n in (1, 2, 3):
            fin[n][1].append((2, 3))
    r = check(clean(m))
    assert failing(r) == {"duplicate"}
    assert sorted(get(r, "duplicate")["examples"][0]["places"]) == [[0, 2], [1, 2]]


def mini(finals, sends=((0, 0, [1], "ok"), (0, 0, [2], "info"), (0, 0, [3], "info"))):
    h = H()
    for proc, p, vals, typ in sends:
        h.send(proc, p, vals, typ)
    for node, msgs in finals.items():
        h.final(0, node, msgs)
    return h.events


def test_mini_clean():
    assert failing(check(mini({1: [(0, 1), (1, 2)], 2: [(0, 1), (1, 2)]}))) == set()


def test_inconsistent_offsets_between_nodes():
    r = check(mini({1: [(0, 1), (1, 2)], 2: [(0, 1), (1, 3)]}))
    assert failing(r) == {"inconsistent offsets"}
    ex = get(r, "inconsistent offsets")["examples"][0]
    assert (ex["partition"], ex["offset"]) == (0, 1)
    assert sorted(v for v, _ in ex["values"]) == [2, 3]


def test_inconsistent_offsets_between_a_poll_and_a_final_read():
    h = H()
    h.send(0, 0, [1], "info")
    h.send(1, 0, [2], "info")
    h.poll(2, 0, 0, [(0, 1)])
    h.final(0, 1, [(0, 2)])
    r = check(h.events)
    assert failing(r) == {"inconsistent offsets", "read of uncommitted"}


def test_offsets_with_a_gap():
    r = check(mini({1: [(0, 1), (2, 2)]}))
    assert failing(r) == {"offsets contiguous"}


def test_offsets_out_of_order():
    r = check(mini({1: [(1, 2), (0, 1)]}))
    assert failing(r) == {"offsets contiguous"}


def test_offsets_may_start_above_zero():
    assert failing(check(mini({1: [(5, 1), (6, 2)]}))) == set()


def test_per_producer_order_across_sends():
    r = check(mini({1: [(0, 2), (1, 1)]}, sends=((0, 0, [1], "ok"), (0, 0, [2], "ok"))))
    assert failing(r) == {"per-producer order"}
    assert get(r, "per-producer order")["examples"][0]["kind"] == "later send at lower offset"


def test_per_producer_order_within_a_batch():
    r = check(mini({1: [(0, 2), (1, 1)]}, sends=((0, 0, [1, 2], "ok"),)))
    assert failing(r) == {"per-producer order"}
    assert get(r, "per-producer order")["examples"][0]["kind"] == "within one batch"


def test_concurrent_producers_may_interleave():
    assert failing(check(mini({1: [(0, 2), (1, 1)]}, sends=((0, 0, [1], "ok"), (1, 0, [2], "ok"))))) == set()


# ---- what reads may hold -------------------------------------------------------------------------

def test_aborted_read():
    def m(h, fin):
        for n in (1, 2, 3):
            fin[n][0].append((5, 20))
    r = check(clean(m))
    assert failing(r) == {"aborted read"}
    assert get(r, "aborted read")["examples"][0]["value"] == 20


def test_aborted_read_code_58_reported_apart():
    def m(h, fin):
        for n in (1, 2, 3):
            fin[n][0].append((5, 22))
    r = check(clean(m))
    assert failing(r) == {"aborted read, 58 committed anyway"}


def test_phantom():
    def m(h, fin):
        for n in (1, 2, 3):
            fin[n][0].append((5, 999))
    r = check(clean(m))
    assert failing(r) == {"phantom"}
    assert get(r, "phantom")["examples"][0] == {"value": 999, "partition": 0, "offset": 5}


def test_read_of_uncommitted():
    def m(h, fin):
        h.send(0, 0, [23], "info")
        h.poll(2, 0, 5, [(5, 23)], consumer="c")  # seen during the run, gone from the final log
    r = check(clean(m))
    assert failing(r) == {"read of uncommitted"}
    ex = get(r, "read of uncommitted")["examples"][0]
    assert (ex["partition"], ex["offset"], ex["value"], ex["final_value"]) == (0, 5, 23, None)


def test_digit_string_payloads_are_values():
    h = H()
    h.send(0, 0, [1])
    h.final(0, 1, [(0, "1")])
    assert failing(check(h.events)) == set()


# ---- consumers -----------------------------------------------------------------------------------

def test_nonmonotonic_within_a_poll():
    r = check(clean(lambda h, fin: h.poll(2, 0, 0, [(0, 1), (1, 2), (1, 2)], consumer="c")))
    assert failing(r) == {"nonmonotonic poll"}
    assert get(r, "nonmonotonic poll")["examples"][0]["kind"] == "offsets not increasing within a poll"


def test_nonmonotonic_auto_commit_poll_goes_back():
    r = check(clean(lambda h, fin: h.poll(3, 1, None, [(0, 10)], consumer="a", auto=True)))
    assert failing(r) == {"nonmonotonic poll"}
    assert get(r, "nonmonotonic poll")["examples"][0]["kind"] == "auto-commit poll went back"


def test_skipped_offset_at_the_start():
    r = check(clean(lambda h, fin: h.poll(2, 0, 1, [(2, 3)], consumer="c")))
    assert failing(r) == {"skipped offsets"}


def test_skipped_offset_in_a_poll():
    r = check(clean(lambda h, fin: h.poll(2, 0, 0, [(0, 1), (2, 3)], consumer="c")))
    assert failing(r) == {"skipped offsets"}


def test_skipped_auto_commit_next():
    # the consumer received 10 (next 1); its next auto-commit poll without an offset starts at 2
    def m(h, fin):
        for n in (1, 2, 3):
            fin[n][1].append((2, 12))
        h.send(1, 1, [12])
        h.poll(6, 1, None, [(0, 10)], consumer="b", auto=True, count=1)
        h.poll(6, 1, None, [(2, 12)], consumer="b", auto=True, count=1)
    r = check(clean(m))
    assert failing(r) == {"skipped offsets"}


def test_stored_offset_backwards():
    r = check(clean(lambda h, fin: h.get(2, "c", 0, 0)))
    assert failing(r) == {"stored offsets backwards"}
    ex = get(r, "stored offsets backwards")["examples"][0]
    assert (ex["read"], ex["must_be_at_least"]) == (0, 1)


def test_stored_offset_forgotten():
    r = check(clean(lambda h, fin: h.get(2, "c", 0, None)))
    assert failing(r) == {"stored offsets backwards"}


def test_group_offset_backwards():
    def m(h, fin):
        h.group_offset("g", 1, 1)
        h.group_offset("g", 1, 0)
    r = check(clean(m))
    assert failing(r) == {"stored offsets backwards"}


def test_group_offset_backwards_through_one_node():
    h = H()
    h.op(91, "group_offset", {"group": "g", "partition": 0, "via": 1},
         result={"group": "g", "partition": 0, "via": 1, "offset": 7})
    # another node's copy of the metadata may trail: not a regression
    h.op(92, "group_offset", {"group": "g", "partition": 0, "via": 2},
         result={"group": "g", "partition": 0, "via": 2, "offset": 3})
    h.op(91, "group_offset", {"group": "g", "partition": 0, "via": 1}, type_="fail", error="timeout")
    h.group_poll(4, "g", [(0, 8, 30)])                       # group polls never lower the floor
    h.final(0, 1, [])
    assert get(check(h.events), "stored offsets backwards")["count"] == 0
    h.op(91, "group_offset", {"group": "g", "partition": 0, "via": 1},
         result={"group": "g", "partition": 0, "via": 1, "offset": 6})
    r = get(check(h.events), "stored offsets backwards")
    assert r["count"] == 1 and r["examples"][0]["read"] == 6 and r["examples"][0]["must_be_at_least"] == 7


def test_concurrent_stores_may_apply_in_either_order():
    h = H()
    h.add(0, "invoke", "store_offset", {"partition": 0, "consumer": "c", "offset": 5})
    h.add(1, "invoke", "store_offset", {"partition": 0, "consumer": "c", "offset": 3})
    h.add(1, "ok", "store_offset", {"partition": 0, "consumer": "c", "offset": 3})
    h.add(0, "ok", "store_offset", {"partition": 0, "consumer": "c", "offset": 5})
    h.get(2, "c", 0, 3)                          # 5 applied first, then 3: fine
    h.get(2, "c", 0, 3)
    h.final(0, 1, [])
    assert get(check(h.events), "stored offsets backwards")["count"] == 0
    h.get(2, "c", 0, 2)                          # below both
    assert get(check(h.events), "stored offsets backwards")["count"] == 1


def test_indeterminate_store_may_apply_later():
    h = H()
    h.store(0, "c", 0, 5)
    h.store(1, "c", 0, 2, "info")                # may take effect at any time
    h.store(0, "c", 0, 7)
    h.get(2, "c", 0, 2)
    h.final(0, 1, [])
    assert get(check(h.events), "stored offsets backwards")["count"] == 0


def test_read_back_raises_the_floor():
    h = H()
    h.group_offset("g", 0, 4)
    h.group_offset("g", 0, 3)
    h.final(0, 1, [])
    assert get(check(h.events), "stored offsets backwards")["count"] == 1


def test_group_undelivered():
    r = check(clean(undelivered={21}))          # the last of partition 0 (a middle one is also a skip)
    assert failing(r) == {"group undelivered"}
    assert get(r, "group undelivered")["examples"][0]["value"] == 21
    assert failing(check(clean(undelivered={3}))) == {"group undelivered", "skipped offsets"}


def test_group_overlap_is_informational():
    def m(h, fin):
        h.group_poll(4, "g", [(1, 0, 10)])       # member 4 takes partition 1...
    r = check(clean(m))                          # ...then member 5 polls it with no rebalance between
    ov = get(r, "group overlap")
    assert ov["count"] == 1 and ov["passed"] and ov["informational"]
    assert failing(r) == set()

    def m2(h, fin):
        h.group_poll(4, "g", [(1, 0, 10)])
        h.op(6, "group_join", {"group": "g", "member": 6})   # a rebalance
    assert get(check(clean(m2)), "group overlap")["count"] == 0


def test_group_owners():
    """A snapshot of a group's assignment in which one partition has two members fails "group owners";
    snapshots that keep the partitions apart (one sampled, one at the end, both ok) pass."""
    def ok(h, fin):
        h.add(9, "ok", "group_members", {"group": "g", "node": 1, "members": [[4, [0]], [5, [1, 2]]]})
        h.add("checker", "info", "group_members", {"group": "g", "node": 2, "members": [[5, [0, 1, 2]]]})
    r = check(clean(ok))
    assert failing(r) == set() and get(r, "group owners")["count"] == 0

    def two(h, fin):
        h.add(9, "ok", "group_members", {"group": "g", "node": 1, "members": [[4, [0, 1]], [5, [1, 2]]]})
    r = check(clean(two))
    assert failing(r) == {"group owners"}
    ex = get(r, "group owners")["examples"][0]
    assert ex["partition"] == 1 and ex["members"] == [4, 5]


def test_replica_differs():
    r = check(clean(replica_ok=False))
    assert failing(r) == {"replica"}


def test_corrupt_read():
    def m(h, fin):
        inv = {"partition": 0, "offset": 0, "count": 10}
        h.add(7, "invoke", "poll", inv)
        h.add(7, "fail", "poll", {**inv, "corrupt": True, "offsets": [0, 1], "bad_frames": [1]},
              error="poll: the reply does not verify (checksums or layout)")
    r = check(clean(m))
    assert failing(r) == {"corrupt read"}
    ex = get(r, "corrupt read")["examples"][0]
    assert (ex["f"], ex["partition"], ex["offsets"], ex["bad_frames"]) == ("poll", 0, [0, 1], [1])
    # a plain failed poll is no corrupt read
    def m2(h, fin):
        h.op(7, "poll", {"partition": 0, "offset": 0, "count": 10}, type_="fail", error="timeout")
    assert failing(check(clean(m2))) == set()


def test_corrupt_final_read_page():
    def m(h, fin):
        h.add(108, "fail", "final_read", {"partition": 1, "node": 3, "corrupt": True, "offsets": [0, 1],
                                           "bad_frames": [0]}, error="poll: the reply does not verify")
    r = check(clean(m))
    assert failing(r) == {"corrupt read"}
    assert get(r, "corrupt read")["examples"][0]["f"] == "final_read"


def test_replica_comparison_names_the_field_that_differs():
    from galgo_jepsen.run import first_difference
    rec = [[0, 1, 1700000000000000, 1699999999999000, "00112233445566ff", 0],
           [1, 2, 1700000000000100, 1699999999999100, "0123456789abcdef", 0]]
    same = {1: rec, 2: [list(m) for m in rec], 3: [list(m) for m in rec]}
    assert first_difference(same) is None
    for k, field, other in ((4, "checksum", "0123456789abcdee"), (2, "timestamp", 1700000000000101),
                            (3, "origin_timestamp", 0), (5, "headers_len", 8), (1, "value", 3)):
        d = {n: [list(m) for m in rec] for n in (1, 2, 3)}
        d[3][1][k] = other
        diff = first_difference(d)
        assert (diff["nodes"], diff["offset"], diff["field"], diff["values"][1]) == ([1, 3], 1, field, other)
    d = {1: rec, 2: rec[:1]}
    assert first_difference(d)["field"] == "length"


def test_fault_not_observed():
    r = check(clean(observed_ok=False))
    assert failing(r) == {"nemesis observed"}
    assert get(r, "nemesis observed")["examples"][0]["fault"] == "partition"


def test_unclosed_invoke_is_indeterminate():
    h = H()
    h.add(0, "invoke", "send", {"partition": 0, "values": [1]})
    h.final(0, 1, [(0, 1)])
    r = check(h.events)
    assert failing(r) == set()
    assert r["stats"]["indeterminate_values"] == 1


# ---- availability ------------------------------------------------------------------------------------

def test_availability_windows_and_recovery():
    h = H()
    h.send(0, 0, [1])                           # t 0.00 .. 0.01
    h.nemesis("start", {"fault": "kill"})       # 0.02
    h.t = 1.0
    h.add(0, "invoke", "send", {"partition": 0, "values": [2]})
    h.t = 3.0
    h.add(0, "info", "send", {"partition": 0, "values": [2]})
    h.add(1, "invoke", "send", {"partition": 0, "values": [3]})   # 3.01
    h.t = 4.0
    h.nemesis("stop", {"fault": "kill"})        # 4.00
    h.t = 4.5
    h.add(1, "ok", "send", {"partition": 0, "values": [3]})
    h.final(0, 1, [(0, 1), (1, 2), (2, 3)])
    r = check(h.events)
    a = r["availability"]["partitions"]["0"]
    assert a["longest_unavailable_s"] == pytest.approx(3.5)
    assert a["window"] == [pytest.approx(1.0), pytest.approx(4.5)]
    assert a["recovery_s"] == pytest.approx(0.5)
    assert r["availability"]["recoveries"][0]["recovery_s"] == pytest.approx(0.5)
    assert failing(r) == set()


def test_availability_never_recovered():
    h = H()
    h.send(0, 0, [1])
    h.nemesis("stop", {"fault": "kill"})
    h.t = 2.0
    h.send(0, 0, [2], "fail")
    a = check(h.events)["availability"]["partitions"]["0"]
    assert a["recovery_s"] is None
    assert a["ended_unavailable"]


# ---- scale, plot, CLI ----------------------------------------------------------------------------

def big_history(n_sends):
    h = H()
    h.nemesis("start", {"fault": "partition"})
    vals = {0: [], 1: []}
    for i in range(n_sends):
        p = i % 2
        h.send(i % 5, p, [i], "info" if i % 97 == 0 else "ok")
        vals[p].append(i)
        if i == n_sends // 2:
            h.nemesis("stop", {"fault": "partition"})
    for p in (0, 1):
        for node in (1, 2, 3):
            h.final(p, node, list(enumerate(vals[p])))
    return h.events


def test_a_larger_history_is_fast():
    events = big_history(30000)
    t0 = time.monotonic()
    r = check(events)
    assert time.monotonic() - t0 < 5
    assert failing(r) == set()
    assert r["stats"]["acked_values"] == 30000 - len(range(0, 30000, 97))


def test_timeline_writes_a_png(tmp_path):
    from galgo_jepsen.plot import timeline
    path = timeline(clean() + big_history(2000), tmp_path / "t.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, hgt = struct.unpack(">II", data[16:24])
    assert w > 500 and hgt > 300


def test_timeline_of_an_empty_history(tmp_path):
    from galgo_jepsen.plot import timeline
    assert timeline([], tmp_path / "e.png").stat().st_size > 0


def write_history(d, events):
    with open(d / "history.jsonl", "w") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
        f.write('{"index": 99999, "torn')          # a torn last line is dropped by load()
    assert len(load(d / "history.jsonl")) == len(events)


def test_cli(tmp_path, capsys):
    write_history(tmp_path, clean())
    assert checker.main([str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert {c["name"] for c in res["checks"]} == set(checker.CHECK_NAMES)
    assert (tmp_path / "timeline.png").stat().st_size > 0
    assert capsys.readouterr().out.strip().endswith("passed, 0 failed")

    bad = tmp_path / "bad"
    bad.mkdir()
    write_history(bad, clean(replica_ok=False))
    assert checker.main([str(bad), "--no-plot"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"{len(checker.CHECK_NAMES) - 1} passed, 1 failed"


def test_a_group_gap_is_excused_only_next_to_a_group_poll_of_unknown_outcome():
    """With auto-commit a group poll whose reply was lost may have consumed messages nobody saw: an
    undelivered offset is excused when such a poll ran between the deliveries around it, not otherwise."""
    def history(with_unknown: bool):
        h = []
        t = [0.0]

        def ev(process, type_, f, value):
            t[0] += 1.0
            h.append({"index": len(h), "time": t[0], "process": process, "type": type_, "f": f, "value": value})

        for v in (1, 2, 3):
            ev(0, "invoke", "send", {"partition": 0, "values": [v]})
            ev(0, "ok", "send", {"partition": 0, "values": [v]})
        ev(1, "invoke", "group_join", {"group": "g", "member": 1})
        ev(1, "ok", "group_join", {"group": "g", "member": 1})
        ev(1, "invoke", "group_poll", {"group": "g", "member": 1})
        ev(1, "ok", "group_poll", {"group": "g", "member": 1, "messages": [[0, 0, 1]]})
        ev(1, "invoke", "group_poll", {"group": "g", "member": 1, "count": 1})
        if with_unknown:
            ev(1, "info", "group_poll", {"group": "g", "member": 1})
        else:
            ev(1, "ok", "group_poll", {"group": "g", "member": 1, "messages": []})
        ev(1, "invoke", "group_poll", {"group": "g", "member": 1})
        ev(1, "ok", "group_poll", {"group": "g", "member": 1, "messages": [[0, 2, 3]]})
        ev(9, "ok", "final_read", {"partition": 0, "node": 1, "messages": [[0, 1], [1, 2], [2, 3]]})
        return h

    # a poll of unknown outcome excuses at most as many offsets as it asked for
    h = history(True)
    for e in h:
        if e["f"] == "group_poll" and e["type"] == "invoke":
            e["value"]["count"] = 0
    assert not {c["name"]: c for c in check(h)["checks"]}["group undelivered"]["passed"]
    bad = {c["name"]: c for c in check(history(False))["checks"]}
    assert not bad["group undelivered"]["passed"]
    res = check(history(True))
    ok = {c["name"]: c for c in res["checks"]}
    assert ok["group undelivered"]["passed"]
    assert res["stats"]["group_skipped_by_unknown_polls"] == 1
