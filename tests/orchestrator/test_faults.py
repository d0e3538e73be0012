"""Fault injection on real sweeps (embedded local Ray, each command in its own process as a user runs it):
a killed driver, a killed worker, a moved experiment, a corrupted or missing state, two drivers at once,
signals, a diverging loss, a truncated checkpoint. The promise checked every time: continue from the newest
complete checkpoint in the same trial directory, every evaluation in ``result.json`` exactly once, no trial
Tune did not plan, nothing written outside the experiment, completed trials' files unchanged, and no process
or temporary folder of the sweep left behind."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.session import descendants
from tests.orchestrator.test_sweep_e2e import TINY, results, symsweep, trial_dirs, wait_for

pytestmark = pytest.mark.slow
QUIET = ["logging.wandb.enabled=false"]


def environment(tmp_path: Path) -> dict:
    """The sweep's own temporary root, to see what it leaves there."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(scratch)}


def digest(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` -> its sha256."""
    return {str(file.relative_to(directory)): hashlib.sha256(file.read_bytes()).hexdigest()
            for file in sorted(directory.rglob("*")) if file.is_file()}


def epochs_of(trial_dir: Path) -> list[int]:
    return [line["epoch"] for line in results(trial_dir)]


def alive(pids: dict[int, int]) -> list[int]:
    from orchestrator.session import _stat

    return [pid for pid, start in pids.items() if (stat := _stat(pid)) is not None and stat[1] == start]


def leftovers(env: dict) -> list[str]:
    return sorted(path.name for path in Path(env["TMPDIR"]).glob("symsweep-*"))


def csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def kill_driver_when(path: Path, launch: subprocess.Popen, condition) -> dict[int, int]:
    """SIGKILL the driver process alone (not its group) once ``condition()`` holds; returns the Ray processes
    that were running under it."""
    try:
        wait_for(condition, timeout=240)
        ray_processes = descendants(launch.pid)
        assert ray_processes, "an embedded Ray runs under the driver"
    finally:
        os.kill(launch.pid, signal.SIGKILL)
        launch.communicate(timeout=60)
    return ray_processes


def test_a_killed_driver_then_a_moved_copy_resumes_in_place(tmp_path):
    """Items: the driver SIGKILLed while a trial trains; its Ray processes and temp folders do not survive;
    the copy of the experiment resumes into itself (the original is untouched), the interrupted trial in its
    own directory from its newest checkpoint, the finished one untouched, every epoch reported once."""
    env = environment(tmp_path)
    path = tmp_path / "crash"
    launch = symsweep("launch", f"storage={tmp_path}", "name=crash", *TINY, *QUIET, "trainer.epochs=6",
                      "symmetrizer.method=ps,ga", "sweep.max_concurrent=1", wait=False, env=env)

    def first_done_second_training():
        dirs = trial_dirs(path)
        done = [t for t in dirs if epochs_of(t)[-1:] == [6]]
        training = [t for t in dirs if 2 <= len(epochs_of(t)) < 6]
        return done and training

    ray_processes = kill_driver_when(path, launch, first_done_second_training)
    wait_for(lambda: not alive(ray_processes) and not leftovers(env), timeout=30)

    names = [t.name for t in trial_dirs(path)]
    finished = [t.name for t in trial_dirs(path) if epochs_of(t)[-1:] == [6]]
    original = digest(path)
    copy = tmp_path / "moved" / "crash"
    shutil.copytree(path, copy)
    resumed = symsweep("resume", str(copy), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert digest(path) == original, "resuming the copy changed the original experiment"
    assert [t.name for t in trial_dirs(copy)] == names, "no new trial directory"
    for trial in trial_dirs(copy):
        assert epochs_of(trial) == [1, 2, 3, 4, 5, 6], (trial.name, epochs_of(trial))
    for name in finished:
        assert digest(copy / name) == {k.removeprefix(name + "/"): v for k, v in original.items()
                                       if k.startswith(name + "/")}, f"completed trial {name} was touched"
    rows = csv_rows(copy / "trials.csv")
    assert len(rows) == 2 and {row["state"] for row in rows} == {"completed"}
    assert "Tuner.restore" not in resumed.stdout + resumed.stderr
    assert not leftovers(env)


def test_a_killed_worker_is_retried_without_gaps_or_an_error_row(tmp_path):
    path = tmp_path / "worker"
    launch = symsweep("launch", f"storage={tmp_path}", "name=worker", *TINY, *QUIET, "trainer.epochs=8",
                      "task.train_size=200", "cluster.max_failures=2", wait=False, env=environment(tmp_path))
    try:
        def training():
            trials = trial_dirs(path)
            lines = results(trials[0]) if trials else []
            return lines[-1] if lines and 2 <= lines[-1]["epoch"] < 8 else None

        os.kill(wait_for(training)["pid"], signal.SIGKILL)
        output, _ = launch.communicate(timeout=600)
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
    assert launch.returncode == 0, output
    (trial,) = trial_dirs(path)
    assert epochs_of(trial) == list(range(1, 9))
    (row,) = csv_rows(path / "trials.csv")
    assert row["state"] == "completed" and row["error"] == "" and row["num_failures"] == "1"


def test_a_diverging_loss_fails_once_naming_what_is_kept(tmp_path):
    path = tmp_path / "diverged"
    done = symsweep("launch", f"storage={tmp_path}", "name=diverged", *TINY, *QUIET, "trainer.epochs=3",
                    "trainer.lr=1e30", "cluster.max_failures=2", env=environment(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    (row,) = csv_rows(path / "trials.csv")
    assert row["state"] == "errored" and row["num_failures"] == "1", row
    assert "non-finite training loss" in row["error"] and "not retried" in row["error"]
    named = [word.rstrip(";,") for word in row["error"].split() if "checkpoint_" in word]
    assert all(Path(word).is_dir() for word in named) and "kept in" not in row["error"]
    assert "symsweep resume" in done.stdout


def test_ctrl_c_exits_130_with_the_resume_line_and_resume_finishes(tmp_path):
    path = tmp_path / "stop"
    env = environment(tmp_path)
    launch = symsweep("launch", f"storage={tmp_path}", "name=stop", *TINY, *QUIET, "trainer.epochs=8",
                      "task.train_size=200", wait=False, env=env)
    try:
        wait_for(lambda: trial_dirs(path) and len(epochs_of(trial_dirs(path)[0])) >= 2)
        os.kill(launch.pid, signal.SIGINT)
        output, _ = launch.communicate(timeout=120)
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
    assert launch.returncode == 130, output
    assert f"symsweep resume {path}" in output and "Tuner.restore" not in output
    assert not leftovers(env)
    resumed = symsweep("resume", str(path), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    (trial,) = trial_dirs(path)
    assert epochs_of(trial) == list(range(1, 9))
