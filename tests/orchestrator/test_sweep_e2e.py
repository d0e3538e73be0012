"""Sweeps end to end on an embedded local Ray: the files and the table, offline W&B (runs named, grouped, with the
whole config; ``wandb sync --dry-run`` lists them), a sharded trial on Ray Train,
the privacy of Ray's session logs. Each launch runs in its own process (as a user would run it). Faults (killed
workers and drivers, a diverging loss, a failing W&B, a full disk, ...): test_faults.py; a killed trial's restart
in detail: tests/train/test_trial.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.wandb_runs import symsweep_version
from tests.orchestrator.sweeps import TINY, results, run_record, symsweep, trial_dirs

pytestmark = pytest.mark.slow


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
    finished = [line for line in output.splitlines() if line.startswith("finished ")]  # one line per trial ...
    assert "4/4 done" in output and len(finished) == 4, output  # ... in symsweep's progress view ...
    assert "Checkpoint successfully created" not in output and "tensorboard" not in output.lower()  # ... not Ray's
    assert "paired by seed" in done.stdout and "| ps | 2 |" in done.stdout
    rows = (path / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and all(",completed," in row for row in rows[1:])
    table = (path / "summary.md").read_text()
    assert "| ps |" in table and "| ga |" in table and "best_val_mse" in table
    assert "best_val_mse" in done.stdout  # the summary is printed at the end
    files = sorted((path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 4, "one offline W&B run per trial"
    runs = [run_record(file) for file in files]  # named by the swept values, grouped, with the whole config
    assert sorted(run.display_name for run, _ in runs) == ["ga seed=0", "ga seed=1", "ps seed=0", "ps seed=1"]
    for (run, config), file in zip(runs, files):
        method = run.display_name.split()[0]
        assert run.run_group == "small" and run.job_type == method  # a configuration's seeds together
        assert config["symmetrizer"]["method"] == method and config["task"]["name"] == "nbody"
        assert config["task"]["train_size"] == 40 and config["trainer"]["epochs"] == 2  # not swept, still there
        assert config["trainer"]["seed"] == int(run.display_name[-1])
        assert config["symsweep"]["version"] == symsweep_version() and config["symsweep"]["experiment"] == "small"
        data = file.read_bytes()  # the history: every report's metrics
        assert data.count(b"val_mse") >= 2 and b"train_loss" in data, file
    env = {**os.environ, "WANDB_MODE": "offline"}
    listed = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", str(path / "wandb")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert "Would sync 4 run(s)" in listed.stdout + listed.stderr, listed.stdout + listed.stderr  # README, W&B
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


def test_a_sharded_trial_on_ray_train_matches_one_device(tmp_path, one_thread):
    from orchestrator.config import compose, trial_config
    from workers.train import run

    common = [*TINY, "symmetrizer=ga", "symmetrizer.train_samples=4", "symmetrizer.eval_samples=4",
              "trainer.epochs=2", "logging.wandb.enabled=false"]
    sharded = symsweep("launch", f"storage={tmp_path}", "name=sharded", *common, "trainer.devices=2")
    assert sharded.returncode == 0, sharded.stdout + sharded.stderr
    (trial,) = trial_dirs(tmp_path / "sharded")
    expected = []  # the same trial on one device, in this process (the loop of ``symsweep train``)
    run(trial_config(compose(common)), lambda metrics, checkpoint: expected.append(metrics), tmp_path / "single")
    got = results(trial)
    assert [r["epoch"] for r in got] == [r["epoch"] for r in expected]
    for ours, reference in zip(got, expected):
        for key in ("train_loss", "val_mse", "test_mse", "best_val_mse"):
            assert abs(ours[key] - reference[key]) < 1e-5, (key, ours[key], reference[key])


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
