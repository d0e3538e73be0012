"""Sweeps end to end on an embedded local Ray: the files and the table, offline W&B, a trial that
dies and is resumed from its checkpoint (a killed driver and other faults: test_faults.py). Each launch runs
in its own process (as a user would run it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = ["task=nbody", "task.train_size=40", "task.eval_size=20", "group=sn_e", "model.widths=[16]",
        "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4",
        "trainer.batch_size=20", "trainer.threads=1", "cluster.num_cpus=2"]


def symsweep(*args: str, wait: bool = True, **kwargs):
    command = [sys.executable, "-m", "orchestrator.cli", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, **kwargs)
    return subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)


def results(trial_dir: Path) -> list[dict]:
    file = trial_dir / "result.json"
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()] if file.exists() else []


def trial_dirs(path: Path) -> list[Path]:
    if not path.exists():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name.startswith("trainable_"))


def wait_for(condition, timeout: float = 300.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not reached")


def test_a_small_sweep_writes_its_tables_plots_and_offline_wandb(tmp_path):
    done = symsweep("launch", f"storage={tmp_path}", "name=small", *TINY, "trainer.epochs=2",
                    "symmetrizer.method=ps,ga", "sweep.seeds=2", "trainer.eval_samples_curve=[1,4]",
                    "trainer.eval_samples_repeats=2", "sweep.compare={key: symmetrizer.method, reference: ga}")
    assert done.returncode == 0, done.stdout + done.stderr
    path = tmp_path / "small"
    for name in ("config.json", "trials.csv", "summary.csv", "summary.md", "compare.csv", "eval_samples.csv"):
        assert (path / name).is_file(), name
    assert {p.name for p in (path / "plots").glob("*.png")} == {
        "learning_curves.png", "compare_best_val_mse.png", "eval_samples_val_mse.png", "eval_samples_test_mse.png"}
    output = done.stdout + done.stderr
    assert "4/4 done" in output and output.count("finished ") == 4  # symsweep's progress view ...
    assert "Checkpoint successfully created" not in output and "tensorboard" not in output.lower()  # ... not Ray's
    assert "paired by seed" in done.stdout and "| ps | 2 |" in done.stdout
    rows = (path / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and all(",completed," in row for row in rows[1:])
    table = (path / "summary.md").read_text()
    assert "| ps |" in table and "| ga |" in table and "best_val_mse" in table
    assert "best_val_mse" in done.stdout  # the summary is printed at the end
    runs = sorted((path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 4, "one offline W&B run per trial"
    for run in runs:  # W&B's record log stores keys as plain strings: each run has the trial's config and metrics
        data = run.read_bytes()
        assert b"symmetrizer.method" in data and data.count(b"val_mse") >= 2 and b"train_loss" in data, run
    before = {name: (path / name).read_bytes() for name in ("trials.csv", "summary.csv", "summary.md")}
    again = symsweep("report", str(path))
    assert again.returncode == 0, again.stderr
    assert before == {name: (path / name).read_bytes() for name in before}
    status = symsweep("status", str(path), "--json")
    assert json.loads(status.stdout)["by_state"]["completed"] == 4
    assert symsweep("status", str(path)).stdout.startswith("4 trial(s): 4 completed\nlowest best_val_mse = ")
    header = rows[0].split(",")
    gaps = [float(row.split(",")[header.index("equivariance_gap")]) for row in rows[1:]]
    assert all(gap < 1e-9 for gap in gaps)  # PS and GA are exactly equivariant


def test_a_killed_trial_is_resumed_from_its_checkpoint(tmp_path):
    path = tmp_path / "killed"
    launch = symsweep("launch", f"storage={tmp_path}", "name=killed", *TINY, "trainer.epochs=12",
                      "task.train_size=200", "cluster.max_failures=0", "sweep.seeds=2", wait=False)
    try:
        def trial_with_checkpoint():
            for trial in trial_dirs(path):
                lines = results(trial)
                if lines and lines[-1].get("epoch", 0) >= 3 and lines[-1]["epoch"] < 12:
                    return trial, lines[-1]
            return None

        trial, last = wait_for(trial_with_checkpoint)
        os.kill(last["pid"], signal.SIGKILL)  # the trial's worker dies mid-training
        output, _ = launch.communicate(timeout=600)
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
    assert launch.returncode == 1, output
    assert "symsweep resume" in output
    killed_at = results(trial)[-1]["epoch"]
    resumed = symsweep("resume", str(path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    epochs = [line["epoch"] for line in results(trial)]
    assert epochs[-1] == 12
    after_kill = epochs[epochs.index(killed_at) + 1:] if killed_at in epochs else epochs
    assert after_kill and after_kill[0] > 1, f"resumed from a checkpoint, not from scratch: {epochs}"
    rows = (path / "trials.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and all(",completed," in row for row in rows)


def test_a_sharded_trial_on_ray_train_matches_one_device(tmp_path):
    common = [*TINY, "symmetrizer=ga", "symmetrizer.train_samples=4", "symmetrizer.eval_samples=4",
              "trainer.epochs=2", "logging.wandb.enabled=false"]
    sharded = symsweep("launch", f"storage={tmp_path}", "name=sharded", *common, "trainer.devices=2")
    assert sharded.returncode == 0, sharded.stdout + sharded.stderr
    (trial,) = trial_dirs(tmp_path / "sharded")
    single = symsweep("train", *common, "--workdir", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    expected = [json.loads(line) for line in (tmp_path / "single" / "progress.jsonl").read_text().splitlines()]
    got = results(trial)
    assert [r["epoch"] for r in got] == [r["epoch"] for r in expected]
    for ours, reference in zip(got, expected):
        for key in ("train_loss", "val_mse", "test_mse", "best_val_mse"):
            assert abs(ours[key] - reference[key]) < 1e-5, (key, ours[key], reference[key])


def test_a_failing_wandb_never_stops_the_sweep(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no W&B login, no API key: online W&B cannot start
    done = symsweep("launch", f"storage={tmp_path}", "name=nowandb", *TINY, "trainer.epochs=1",
                    "logging.wandb.mode=online", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "W&B logging stopped" in done.stdout + done.stderr
    assert ",completed," in (tmp_path / "nowandb" / "trials.csv").read_text()


def test_the_embedded_rays_session_logs_are_private(tmp_path):
    """Ray's session logs hold the driver's environment in plain text (``runtime_env_agent.log``: secrets such as
    AWS_SECRET_ACCESS_KEY): the embedded Ray's temporary root is made 0700, so no other user reaches them."""
    import shutil
    import stat
    import tempfile

    from orchestrator.ray_cluster import socket_safe_base

    base = Path(tempfile.mkdtemp(prefix="ss-", dir=socket_safe_base(tempfile.gettempdir(),
                                                                     len("/ss-12345678/ray-1234567/ray"))))
    secret = f"symsweep-secret-{os.getpid()}-{time.time_ns()}"
    try:
        done = symsweep("launch", f"storage={tmp_path}", "name=private", *TINY, "trainer.epochs=1",
                        "logging.wandb.enabled=false", env={**os.environ, "RAY_TMPDIR": str(base),
                                                            "AWS_SECRET_ACCESS_KEY": secret})
        assert done.returncode == 0, done.stdout + done.stderr
        root = base / f"ray-{os.getuid()}"  # Ray's own root, ray/ below it, is world-writable whatever one does
        assert stat.S_IMODE(root.stat().st_mode) == 0o700, oct(root.stat().st_mode)
        assert list(root.glob("ray/session_*/logs/runtime_env_agent.log")), "the session is in it"
        holding = [file for file in base.rglob("*") if file.is_file() and not file.is_symlink()
                   and secret.encode() in file.read_bytes()]
        assert holding, "Ray wrote the environment into its session logs (else this test checks nothing)"
        assert all(root in file.parents for file in holding), holding
    finally:
        shutil.rmtree(base, ignore_errors=True)
