"""The repository's scripts, driven as a person or `make` runs them, with stand-ins for what they start.

* scripts/cluster with a stand-in galgod that records its arguments and environment: every listener on
  127.0.0.1, a random secret per cluster directory (mode 0600, reused on restart, never on the command
  line), CLUSTER_SECRET overriding it.
* scripts/test-stages with its stage list replaced by stand-in stages: every stage runs after one fails,
  a summary names each stage with its result, and the exit status is 1 if any failed.
* scripts/install-iggy-cli with a stand-in cargo: built once (pinned, --locked, -jN, into the cache),
  then reused; without cargo, a clear error.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STUB = """#!/bin/sh
# Records what scripts/cluster gave this node, then exits.
for a in "$@"; do case "$a" in --node.id=*) id=${a#--node.id=};; esac; done
printf '%s\\n' "$@" > "$OUT/args.$id"
printf '%s' "${GALGO_CLUSTER_SECRET:-}" > "$OUT/secret.$id"
"""


def run_cluster(tmp_path: Path, cluster_dir: Path, **env) -> dict[int, tuple[list[str], str]]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    stub = tmp_path / "galgod-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    e = {k: v for k, v in os.environ.items() if k != "CLUSTER_SECRET"}
    e.update(OUT=str(out), CLUSTER_DIR=str(cluster_dir), **env)
    subprocess.run([str(ROOT / "scripts/cluster"), str(stub)], env=e, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {i: ((out / f"args.{i}").read_text().splitlines(), (out / f"secret.{i}").read_text())
            for i in (1, 2, 3)}


def test_cluster_binds_loopback_and_makes_a_private_secret_per_directory(tmp_path):
    d = tmp_path / "cluster"
    nodes = run_cluster(tmp_path, d)
    secret_file = d / "secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", secret), secret
    for i, (args, env_secret) in nodes.items():
        assert env_secret == secret
        assert f"--cluster.listen=127.0.0.1:840{i}" in args
        assert not any(a.startswith("--cluster.secret") for a in args), "the secret is visible in ps"
        addrs = [a.split("=", 1)[1] for a in args if a.split("=", 1)[0].endswith(".address")]
        assert addrs and all(a.startswith("127.0.0.1:") for a in addrs), args
    # A restart on the same directory reuses it; another directory gets another one.
    assert {s for _, s in run_cluster(tmp_path, d).values()} == {secret}
    other = {s for _, s in run_cluster(tmp_path, tmp_path / "other").values()}
    assert len(other) == 1 and other != {secret}


def test_cluster_secret_given_is_used_and_nothing_is_stored(tmp_path):
    d = tmp_path / "cluster"
    nodes = run_cluster(tmp_path, d, CLUSTER_SECRET="given-secret")
    assert {s for _, s in nodes.values()} == {"given-secret"}
    assert not (d / "secret").exists()


def test_test_stages_runs_every_stage_and_summarises(tmp_path):
    text = (ROOT / "scripts/test-stages").read_text()
    stages = '\n'.join([
        'STAGES=(',
        '\t"first   true"',
        '\t"broken  echo ran-broken; exit 3"',
        '\t"after   echo ran-after"',
        '\t"leftovers echo ran-leftovers"',
        ')'])
    patched, n = re.subn(r"^STAGES=\(\n.*?^\)$", stages, text, flags=re.S | re.M)
    assert n == 1, "the stage list is no longer a STAGES=( ... ) block"
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "test-stages"
    script.write_text(patched)
    script.chmod(0o755)
    r = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "ran-after" in r.stdout and "ran-leftovers" in r.stdout, "stages after a failure did not run"
    summary = {m[0]: m[1] for m in re.findall(r"^(\S+)\s+(PASS|FAIL)\s+\d+$", r.stdout, re.M)}
    assert summary == {"first": "PASS", "broken": "FAIL", "after": "PASS", "leftovers": "PASS"}
    r = subprocess.run([str(script), "first", "after"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ran-broken" not in r.stdout


FAKE_CARGO = """#!/bin/sh
# Records its arguments and installs a stand-in iggy under --root.
printf '%s\\n' "$@" >> "$OUT/cargo.args"
while [ $# -gt 0 ]; do [ "$1" = --root ] && root=$2; shift; done
mkdir -p "$root/bin" && printf '#!/bin/sh\\n' > "$root/bin/iggy" && chmod +x "$root/bin/iggy"
"""


def test_install_iggy_cli_builds_once_into_the_cache_and_then_reuses_it(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    cargo = bindir / "cargo"
    cargo.write_text(FAKE_CARGO)
    cargo.chmod(0o755)
    env = dict(os.environ, GALGO_CACHE=str(tmp_path / "cache"), OUT=str(tmp_path), PATH=f"{bindir}:/usr/bin:/bin")
    want = tmp_path / "cache" / "iggy-cli-0.14.0" / "bin" / "iggy"
    for _ in range(2):
        r = subprocess.run([str(ROOT / "scripts/install-iggy-cli")], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{want}\n"
    args = (tmp_path / "cargo.args").read_text().split("\n")
    assert args.count("install") == 1, "built again although cached"
    assert args[:5] == ["install", "--locked", "iggy-cli", "--version", "0.14.0"], args
    assert f"-j{os.cpu_count()}" in args or any(a.startswith("-j") for a in args), args


def test_install_iggy_cli_without_cargo_says_so(tmp_path):
    env = dict(os.environ, GALGO_CACHE=str(tmp_path / "cache"), PATH="/nonexistent")
    r = subprocess.run(["/bin/bash", str(ROOT / "scripts/install-iggy-cli")], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ""
    assert "cargo not found" in r.stderr, r.stderr
