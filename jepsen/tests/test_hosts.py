"""The diskfull nemesis's disks (galgo_jepsen.hosts): a node's own file system is mounted, filled,
unmounted by teardown(), and a dead run's is unmounted by sweep(). Needs root (mount)."""

import errno
import os
from pathlib import Path

import pytest

from galgo_jepsen import hosts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def mounted(path: Path) -> bool:
    return any(target == str(path.resolve()) for _, target in hosts.mounts())


def test_a_disk_fills_up_and_teardown_unmounts_it(tmp_path):
    net = hosts.Net(1, run_id=13998)
    disk = tmp_path / "n1" / "disk"
    try:
        net.mount_disk(1, disk, 4)
        net.mount_disk(1, disk, 4)  # once
        assert mounted(disk) and os.path.ismount(disk)
        with pytest.raises(OSError) as e, open(disk / "filler", "wb", buffering=0) as f:
            for _ in range(8):
                f.write(b"\0" * (1 << 20))
        assert e.value.errno == errno.ENOSPC
        st = os.statvfs(disk)
        assert st.f_bavail == 0
    finally:
        net.teardown()
    assert not mounted(disk) and not os.path.ismount(disk)


def test_sweep_unmounts_a_dead_run_s_disk(tmp_path):
    net = hosts.Net(1, run_id=13997)  # no pid file: a run whose runner is gone
    disk = tmp_path / "disk"
    net.mount_disk(1, disk, 1)
    try:
        assert mounted(disk)
        removed = hosts.sweep()
        assert f"mount {disk.resolve()}" in removed
        assert not mounted(disk)
    finally:
        net.unmount_disks()
