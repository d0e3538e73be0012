"""The worked example ``examples/springs`` (README, "Your own model and data"), run as its README says, from a copy
of its folder: its script writes the data file, ``launch --dry-run`` shows the plan, and a small real sweep of its own
model on its own file finishes with the paired comparison of GA against the bare model."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "springs"


def run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=280)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_springs_example_runs_end_to_end(tmp_path):
    folder = tmp_path / "springs"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", "runs", "__pycache__"))
    written = run(folder, "-m", "springlab.data")
    assert written.returncode == 0 and (folder / "data" / "springs.npz").is_file(), written.stderr
    launch = ["-m", "orchestrator.cli", "launch", "--config-dir", "configs", "experiment=springs"]
    small = ["storage=runs", "name=small", "trainer.epochs=2", "sweep.seeds=2", "logging.wandb.enabled=false"]

    dry = run(folder, *launch, *small, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert (plan["metric"], plan["mode"], plan["n_trials"]) == ("best_val_mse", "min", 4)
    assert plan["swept"] == {"symmetrizer.method": {"grid": ["ga", "none"]}} and not (folder / "runs").exists()

    done = run(folder, *launch, *small)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    path = folder / "runs" / "small"
    with (path / "trials.csv").open() as table:
        assert [row["state"] for row in csv.DictReader(table)] == ["completed"] * 4
    with (path / "compare.csv").open() as table:
        (row,) = list(csv.DictReader(table))
    assert (row["key"], row["value"], row["reference"], row["pairs"]) == ("symmetrizer.method", "ga", "none", "2")
    with (path / "summary.csv").open() as table:
        gaps = {row["symmetrizer.method"]: float(row["equivariance_gap_mean"]) for row in csv.DictReader(table)}
    assert gaps["ga"] < 1e-9 < gaps["none"]  # the lab's model, made exactly equivariant by symsweep
    config = json.loads((path / "config.json").read_text())
    assert config["task"]["path"] == "data/springs.npz" and config["model"]["target"] == "springlab.nets:PointMLP"
