"""Sweeps end to end on an embedded local Ray: the files and the table, offline W&B, a sharded trial on Ray Train,
the privacy of Ray's session logs. Each launch runs in its own process (as a user would run it). Faults (killed
workers and drivers, a diverging loss, a failing W&B, a full disk, ...): test_faults.py; a killed trial's restart
in detail: tests/train/test_trial.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.orchestrator.sweeps import TINY, results, symsweep, trial_dirs

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
