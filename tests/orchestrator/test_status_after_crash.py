"""``symsweep status`` shows the state on disk: a trial Ray Tune's state file calls RUNNING is running only while a
driver holds the experiment's lock; after a crash (no holder: a killed driver's lock is gone with it) it is
"interrupted", with the way to continue it. Checked on a fabricated folder, with the lock held in this process, in
another process that is then killed, and with a stale lock file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.recovery import LOCK_FILE, ExperimentLock, lock_holder
from tests.orchestrator.fakes import FakeExperiment, base_config, epoch_metrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def crashed(tmp_path) -> Path:
    """One trial completed, one RUNNING in Tune's state (its driver died mid-epoch), one pending."""
    fake = FakeExperiment(tmp_path / "crashed", base_config(tmp_path, {"symmetrizer.noise_scale": {"grid": [1, 2, 3]}},
                                                            seeds=1))
    fake.trial({"symmetrizer.noise_scale": 1}, "TERMINATED", [epoch_metrics(e, 0.8, 0) for e in (1, 2, 3)])
    fake.trial({"symmetrizer.noise_scale": 2}, "RUNNING", [epoch_metrics(1, 1.15, 0)])  # val_accuracy 0.95
    fake.trial({"symmetrizer.noise_scale": 3}, "PENDING", [], directory=False)
    fake.save_state()
    return fake.path


def status(path: Path, capsys, *options: str) -> list[str]:
    assert main(["status", str(path), *options]) == 0
    return capsys.readouterr().out.splitlines()


def test_without_a_driver_running_trials_are_interrupted(crashed, capsys):
    lines = status(crashed, capsys)
    assert lines[0] == "3 trial(s): 1 completed, 1 interrupted, 1 pending"
    assert lines[1] == (f"1 interrupted: no symsweep launch or resume runs this experiment (Ray Tune's state still "
                        f"says running); continue it with: symsweep resume {crashed}")
    assert lines[2].startswith("highest best_val_accuracy = 0.95 (interrupted trial abcde_00001")
    state = json.loads(status(crashed, capsys, "--json")[0])
    assert state["by_state"] == {"completed": 1, "errored": 0, "running": 0, "interrupted": 1, "pending": 1,
                                 "unfinished": 0, "stopped": 0}
    assert state["driver"] is None and state["best"]["state"] == "interrupted"
    assert not (crashed / LOCK_FILE).exists()  # looking never makes a lock file


def test_with_the_lock_held_they_are_running_and_the_driver_is_named(crashed, capsys):
    lock = ExperimentLock(crashed).acquire("resume")
    try:
        lines = status(crashed, capsys)
        assert lines[0] == "3 trial(s): 1 completed, 1 running, 1 pending"
        assert lines[1].startswith("running: symsweep resume (pid ")
        state = json.loads(status(crashed, capsys, "--json")[0])
        assert state["by_state"]["running"] == 1 and state["by_state"]["interrupted"] == 0
        assert state["driver"].startswith("symsweep resume (pid ")
    finally:
        lock.release()
    assert status(crashed, capsys)[0] == "3 trial(s): 1 completed, 1 interrupted, 1 pending"


def test_a_driver_killed_with_the_lock_leaves_its_trials_interrupted(crashed, capsys):
    code = ("import sys, time; from pathlib import Path; from orchestrator.recovery import ExperimentLock; "
            "lock = ExperimentLock(Path(sys.argv[1])).acquire('launch'); print('held', flush=True); time.sleep(120)")
    driver = subprocess.Popen([sys.executable, "-c", code, str(crashed)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "held"
        assert status(crashed, capsys)[0] == "3 trial(s): 1 completed, 1 running, 1 pending"
        with pytest.raises(ValueError, match="is in use by symsweep launch"):
            ExperimentLock(crashed).acquire("resume")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    assert (crashed / LOCK_FILE).exists()  # a killed driver leaves the file, not the lock
    assert lock_holder(crashed) is None
    assert status(crashed, capsys)[0] == "3 trial(s): 1 completed, 1 interrupted, 1 pending"


def test_a_lock_file_that_is_not_a_file_is_no_driver(crashed, capsys, tmp_path):
    (crashed / LOCK_FILE).symlink_to(tmp_path / "elsewhere")
    assert lock_holder(crashed) is None
    assert status(crashed, capsys)[0] == "3 trial(s): 1 completed, 1 interrupted, 1 pending"
