"""Random search with seeds, end to end: every draw of a sampled domain runs on every seed, so the summary has its
seed statistics, the paired comparison its rows and its figure."""

from __future__ import annotations

import csv

import pytest

from tests.orchestrator.sweeps import TINY, symsweep

pytestmark = pytest.mark.slow


def test_a_sampled_learning_rate_runs_every_draw_on_every_seed(tmp_path):
    done = symsweep("launch", f"storage={tmp_path}", "name=drawn", *TINY, "trainer.epochs=2",
                    "logging.wandb.enabled=false", "symmetrizer.method=ps,ga", "sweep.seeds=2", "sweep.num_samples=2",
                    "sweep.search=random",
                    "+sweep.params.trainer.lr={loguniform: [1.0e-4, 1.0e-2]}",
                    "sweep.compare={key: symmetrizer.method, reference: ga}")
    assert done.returncode == 0, done.stdout + done.stderr
    path = tmp_path / "drawn"
    trials = list(csv.DictReader((path / "trials.csv").open()))
    assert len(trials) == 8
    seeds = {}
    for row in trials:
        seeds.setdefault((row["symmetrizer.method"], row["trainer.lr"]), set()).add(row["trainer.seed"])
    assert len(seeds) == 4 and all(found == {"0", "1"} for found in seeds.values()), seeds
    assert {row["n_seeds"] for row in csv.DictReader((path / "summary.csv").open())} == {"2"}
    compared = list(csv.DictReader((path / "compare.csv").open()))
    assert len(compared) == 2 and {row["pairs"] for row in compared} == {"2"}
    assert (path / "plots" / "compare_best_val_mse.png").is_file()
