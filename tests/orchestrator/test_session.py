"""``orchestrator.session`` without Ray: the processes it counts as the driver's Ray (descendants whose command line
names Ray, by pid and start time), what it kills, and the watcher process, which kills what it recorded and
removes the trials' temporary folder when the driver's end of its pipe closes. With real sweeps and killed
drivers: test_faults.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.session import Session, descendants, reap


def ray_like() -> subprocess.Popen:
    """A child of this process whose command line names Ray (as Ray's raylet and workers do)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "fake-raylet"])


def wait_dead(process: subprocess.Popen, timeout: float = 30) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def test_descendants_are_the_ray_processes_below_and_reap_kills_only_the_recorded_ones():
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # not Ray: never counted
    child = ray_like()
    try:
        found = descendants(os.getpid())
        assert child.pid in found and other.pid not in found
        assert reap({child.pid: found[child.pid] + 1}) == []  # the same pid started at another time: not ours
        assert child.poll() is None
        assert reap({child.pid: found[child.pid]}) == [child.pid]
        assert wait_dead(child) == -9
    finally:
        for process in (child, other):
            process.kill()
            process.wait()


def test_the_watcher_kills_what_it_recorded_and_removes_the_scratch_folder_when_the_driver_ends(tmp_path,
                                                                                                monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setitem(sys.modules, "wandb", sys.modules.get("wandb") or object())  # (its import: test_faults.py)
    assert Session(embedded=False).__enter__().scratch is None  # on a cluster: no folder, no watcher
    child = None
    try:
        with Session(embedded=True) as session:
            scratch = Path(session.scratch)
            assert scratch.is_dir() and scratch.parent == tmp_path and scratch.name.startswith("symsweep-run-")
            child = ray_like()
            session.started(True)
            deadline = time.monotonic() + 30  # the watcher records every half second: let it see the child
            while child.pid not in descendants(os.getpid()) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.5)
        assert session.watcher.returncode == 0
        assert wait_dead(child) == -9, "the watcher killed the Ray process it recorded"
        assert not scratch.exists()
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
