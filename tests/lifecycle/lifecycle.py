#!/usr/bin/env python3
"""`make lifecycle`: one seeded lifecycle run (tests/lifecycle/README.md).

Usage: lifecycle.py [--seed N] [--ops N] [--nodes 1|3] [--galgod PATH] [--iggy] [--workdir DIR]
Prints the seed first; on a mismatch prints the failing operation, the difference, the sequence so far and
the command that reproduces it, and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner import LifecycleFailure, run_lifecycle  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="the sequence's seed (default: random)")
    ap.add_argument("--ops", type=int, default=300, help="operations to run (default 300)")
    ap.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    ap.add_argument("--galgod", default=os.environ.get("GALGOD"), help="galgod binary ($GALGOD, else build-asan, build)")
    ap.add_argument("--with-known-bugs", action="store_true", help="also run the operations that reach known bugs (ops.KNOWN_BUGS)")
    ap.add_argument("--iggy", action="store_true", help="model Iggy exactly, without Galgo's known quirks (model.QUIRKS)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print each operation and its answer as it runs")
    ap.add_argument("--workdir", default=None, help="keep galgod's data and logs here (default: a temporary directory, removed on success)")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 2**31)
    print(f"lifecycle: seed {seed}, {a.ops} operations, {a.nodes} node(s)", flush=True)
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="galgo-lifecycle-"))
    t0 = time.monotonic()
    try:
        r = asyncio.run(run_lifecycle(work / "galgod", a.nodes, seed, a.ops, Path(a.galgod).resolve() if a.galgod else None,
                                      quirks=set() if a.iggy else None,
                                      known_bugs=a.with_known_bugs,
                                      log=(lambda s: print(s, flush=True)) if a.verbose else None))
    except LifecycleFailure as e:
        print(e, file=sys.stderr)
        print(f"lifecycle: FAILED, seed {seed} (data and logs kept in {work})", file=sys.stderr)
        return 1
    print(f"lifecycle: passed, seed {seed}, {a.ops} operations, {r.restarts} restarts, {time.monotonic() - t0:.0f}s")
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
