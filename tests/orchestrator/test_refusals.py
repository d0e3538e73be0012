"""What cannot be run or recovered is refused before anything starts: one line naming the key or file and
the way out, exit status 2, nothing written. In-process (no Ray starts: each refusal comes before it)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.recovery import LOCK_FILE, ExperimentLock
from tests.orchestrator.fakes import STAMP, FakeExperiment, base_config, epoch_metrics
from tests.orchestrator.sweeps import digest

TINY = ["task=nbody", "task.train_size=40", "task.eval_size=20", "group=sn_e", "model.widths=[16]",
        "trainer.epochs=1", "logging.wandb.enabled=false"]


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def experiment(tmp_path: Path) -> Path:
    """A stopped experiment as Ray Tune leaves it: config.json (the real composed one), tuner.pkl, a state file."""
    from orchestrator.config import compose

    config = compose([f"storage={tmp_path}", "name=stopped", *TINY])
    config["name"] = "stopped"
    fake = FakeExperiment(tmp_path / "stopped", config)
    fake.trial({"trainer.seed": 0}, "RUNNING", [epoch_metrics(1, 0.5, 0)])
    fake.save_state()
    (fake.path / "tuner.pkl").write_bytes(pickle.dumps({"state": ["never unpickled by the checks"] * 100}))
    return fake.path


def refused(capsys, argv: list[str], *names: str) -> str:
    assert main(argv) == 2
    line = one_line(capsys)
    for name in names:
        assert name in line, line
    return line


def test_a_corrupted_state_file_is_refused_naming_it(tmp_path, capsys):
    path = experiment(tmp_path)
    state = path / f"experiment_state-{STAMP}.json"
    state.write_text(state.read_text()[:100])
    before = digest(path)
    refused(capsys, ["resume", str(path)], str(state), "launch the sweep again")
    assert digest(path) == before


def test_a_corrupted_newest_state_points_at_the_previous_one(tmp_path, capsys):
    path = experiment(tmp_path)
    newest = path / "experiment_state-2030-01-01_00-00-00.json"
    newest.write_text("{")
    before = digest(path)
    refused(capsys, ["resume", str(path)], str(newest), f"experiment_state-{STAMP}.json")
    assert digest(path) == before


def test_a_deleted_tuner_pkl_is_refused(tmp_path, capsys):
    path = experiment(tmp_path)
    (path / "tuner.pkl").unlink()
    before = digest(path)
    refused(capsys, ["resume", str(path)], str(path / "tuner.pkl"), "symsweep report")
    assert digest(path) == before


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_a_truncated_tuner_pkl_is_refused_before_ray_starts(cut, tmp_path, capsys, monkeypatch):
    """Checked by walking its pickle opcodes (never unpickled): it must end with STOP."""
    import orchestrator.ray_cluster

    monkeypatch.setattr(orchestrator.ray_cluster, "start_ray", lambda cluster: pytest.fail("Ray was started"))
    path = experiment(tmp_path)
    data = (path / "tuner.pkl").read_bytes()
    (path / "tuner.pkl").write_bytes(data[:[0, len(data) // 2, len(data) - 1][cut]])
    before = digest(path)
    refused(capsys, ["resume", str(path)], str(path / "tuner.pkl"), "truncated", "symsweep report")
    assert digest(path) == before


@pytest.mark.slow  # the command line in a subprocess
def test_a_read_only_experiment_is_refused_naming_the_folder(tmp_path):
    """A read-only mount (the same check covers a folder without write permission for its user): one line, exit
    2, before the lock or Ray. In a private mount namespace, so that it also holds when the tests run as root."""
    path = experiment(tmp_path)
    trial = next(p for p in path.iterdir() if p.is_dir())
    before = digest(path)
    for target in (path, trial):
        mount = f"mount --bind {target} {target} && mount -o remount,bind,ro {target}"
        if subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True).returncode != 0:
            pytest.skip("no private mount namespace here (unshare -rm) to make a folder read-only")
        done = subprocess.run(["unshare", "-rm", "sh", "-c", f'{mount} && exec "$@"', "sh", sys.executable, "-m",
                               "orchestrator.cli", "resume", str(path)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert f"{target} is not writable" in lines[0] and "copy" in lines[0], lines[0]
    assert digest(path) == before


def test_a_corrupted_config_json_is_refused_naming_it(tmp_path, capsys):
    path = experiment(tmp_path)
    (path / "config.json").write_text('{"cluster": ')
    before = digest(path)
    refused(capsys, ["resume", str(path)], str(path / "config.json"))
    assert digest(path) == before


def test_a_running_experiment_is_refused_naming_its_holder(tmp_path, capsys):
    path = experiment(tmp_path)
    lock = ExperimentLock(path).acquire("launch")
    before = digest(path)
    try:
        refused(capsys, ["resume", str(path)], f"pid {os.getpid()}", "symsweep launch")
        assert digest(path) == before  # the holder's lock and the experiment untouched
    finally:
        lock.release()


def test_a_stale_lock_of_a_dead_holder_is_taken_over(tmp_path):
    path = experiment(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from orchestrator.recovery import ExperimentLock; "
                               f"lock = ExperimentLock(Path({str(path)!r})).acquire('resume'); "
                               "print('held', flush=True); "
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=f"pid {holder.pid}"):
            ExperimentLock(path).acquire("resume")
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert f"pid {holder.pid}" in (path / LOCK_FILE).read_text()  # its note is still there, its lock is not
    ExperimentLock(path).acquire("resume").release()
    assert not (path / LOCK_FILE).exists()


def test_two_launches_of_one_name_cannot_both_create_it(tmp_path, capsys):
    from orchestrator.experiment import _create

    _create(tmp_path / "twice")
    with pytest.raises(ValueError, match="already exists; continue it with `symsweep resume"):
        _create(tmp_path / "twice")


def test_an_unreachable_address_is_one_line_within_seconds(tmp_path, capsys):
    path = experiment(tmp_path)
    before = digest(path)
    start = time.monotonic()
    refused(capsys, ["resume", str(path), "--address", "127.0.0.1:1"], "cluster.address='127.0.0.1:1'")
    assert time.monotonic() - start < 30
    assert digest(path) == before
    refused(capsys, ["launch", f"storage={tmp_path}", "name=attach", *TINY, "cluster.address=127.0.0.1:1"],
            "cannot connect")
    assert not (tmp_path / "attach").exists(), "a refused launch leaves nothing behind"


@contextlib.contextmanager
def not_ray(kind: str):
    """A loopback TCP server that accepts connections and is not Ray: it says nothing, or answers HTTP garbage."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            held.append(connection)
            if kind == "http":
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno\n")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for connection in held:
            connection.close()


@pytest.mark.slow  # up to 3 x 10 s: each command waits for its own refusal (run side by side, they would
# compete for the CPU and no longer show what one refusal costs)
@pytest.mark.parametrize("kind", ["silent", "http"])
def test_an_address_that_is_not_ray_is_one_line_within_seconds(kind, tmp_path):
    """A port that accepts TCP but is not Ray: Ray itself would retry for minutes without a word. In subprocesses
    (a hang is a failure, not a stuck test run): resume with Ray dialling this machine's address for 127.0.0.1
    (its default), launch with Ray dialling loopback itself (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: the server is
    reached and must answer), and a Ray Client address."""
    path = experiment(tmp_path)
    before = digest(path)
    with not_ray(kind) as address:
        runs = [(["resume", str(path), "--address", address], address, {}),
                (["launch", f"storage={tmp_path}", "name=attach", *TINY, f"cluster.address={address}"], address,
                 {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}),
                (["resume", str(path), "--address", f"ray://{address}"], f"ray://{address}", {})]
        for argv, named, env in runs:
            start = time.monotonic()
            try:
                done = subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], capture_output=True,
                                      text=True, timeout=45, env={**os.environ, **env})
            except subprocess.TimeoutExpired:
                pytest.fail(f"symsweep {argv[0]} did not give up on {named} within 45 s")
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2 and len(lines) == 1, done.stderr
            assert f"cluster.address={named!r}" in lines[0] and "does not answer as Ray's" in lines[0], lines[0]
            assert time.monotonic() - start < 30
    assert digest(path) == before
    assert not (tmp_path / "attach").exists(), "a refused launch leaves nothing behind"


@pytest.mark.parametrize("case", ["storage_is_a_file", "storage_cannot_be_created", "name_too_long"])
def test_bad_storage_or_name_is_one_line_before_anything(case, tmp_path, capsys):
    if case == "storage_is_a_file":
        (tmp_path / "file").write_text("x")
        argv, named = ["storage=" + str(tmp_path / "file"), "name=x"], str(tmp_path / "file")
    elif case == "storage_cannot_be_created":
        argv, named = ["storage=/proc/symsweep", "name=x"], "/proc/symsweep"
    else:
        argv, named = [f"storage={tmp_path}", "name=" + "n" * 300], "at most 100"
    refused(capsys, ["launch", *argv, *TINY], named)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["file"] if case == "storage_is_a_file" else [])


def test_a_resumed_experiment_writes_only_into_itself(tmp_path):
    """config.json keeps the launch's storage; a moved experiment is resumed where it is now."""
    from orchestrator.stored_config import load_config

    path = experiment(tmp_path)
    config = load_config(path)
    assert json.loads((path / "config.json").read_text())["storage"] == str(tmp_path)
    assert config["cluster"]["address"] is None


def test_a_failed_restore_stops_instead_of_starting_a_new_experiment():
    """Ray Tune logs this and then runs a NEW experiment (trials it never planned); the guard raises instead."""
    import logging

    from orchestrator.recovery import RestoreFailed, RestoreGuard

    logger = logging.getLogger("ray.tune.execution.tune_controller")
    with RestoreGuard():
        try:
            raise KeyError("trial_data")
        except KeyError:
            with pytest.raises(RestoreFailed, match="trial_data"):
                logger.exception("Failed to restore the run state.")
        hint = logging.LogRecord("ray.tune.tune", logging.WARNING, __file__, 1,
                                 'Resume experiment with: Tuner.restore(path="/x", trainable=...)', None, None)
        assert not logging.getLogger("ray.tune.tune").filter(hint)
    assert logging.getLogger("ray.tune.tune").filter(hint)  # only while a sweep runs


def test_restart_errored_sets_the_old_directory_aside_so_it_is_not_counted_twice(tmp_path):
    from orchestrator.records import load_trials
    from orchestrator.recovery import RESTARTED, set_aside_errored

    fake = FakeExperiment(tmp_path / "errored", base_config(tmp_path, {}))
    fake.trial({"trainer.seed": 0}, "TERMINATED", [epoch_metrics(e, 0.5, 0) for e in (1, 2, 3)])
    fake.trial({"trainer.seed": 1}, "ERROR", [epoch_metrics(1, 0.5, 1)], error="OSError: [Errno 22]\n")
    fake.save_state()
    (moved,) = set_aside_errored(fake.path)
    assert moved.parent == fake.path / RESTARTED and (moved / "result.json").is_file()
    assert [record.state for record in load_trials(fake.path)] == ["completed", "errored"]
    fake.entries.pop()  # Ray Tune's state after the restart: the errored trial replaced by a new one
    fake.trial({"trainer.seed": 1}, "TERMINATED", [epoch_metrics(e, 0.5, 1) for e in (1, 2, 3)])
    fake.save_state("2026-11-22_18-00-00")
    assert [record.state for record in load_trials(fake.path)] == ["completed", "completed"]
