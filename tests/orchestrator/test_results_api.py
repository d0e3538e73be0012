"""``orchestrator.results.load_experiment``: an experiment as DataFrames, the same numbers as the files
``symsweep report`` writes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from orchestrator.results import load_experiment, write_report
from tests.orchestrator.fakes import compare_experiment, sweep_experiment


def test_frames_hold_what_the_csv_files_hold(tmp_path):
    path = compare_experiment(tmp_path / "cmp", seeds=3)
    write_report(path)
    experiment = load_experiment(path)
    for frame, name in ((experiment.trials, "trials.csv"), (experiment.summary, "summary.csv"),
                        (experiment.comparisons, "compare.csv"), (experiment.eval_samples, "eval_samples.csv")):
        written = pd.read_csv(path / name)
        assert list(frame.columns) == list(written.columns), name
        assert len(frame) == len(written), name
    assert len(experiment.trials) == 12 and set(experiment.trials["state"]) == {"completed"}
    ps = experiment.comparisons.set_index("symmetrizer.noise_scale").loc[0.1]
    assert ps["mean_difference"] == pytest.approx(-0.1033333) and ps["pairs"] == 3
    assert experiment.summary.iloc[0]["best_val_mse_mean"] == pytest.approx(0.11)  # sorted by the sweep metric
    by_count = experiment.eval_samples.query("`symmetrizer.method` == 'ps' and `symmetrizer.noise_scale` == 0.1")
    assert list(by_count["eval_samples"]) == [1, 2, 4]


def test_learning_curves_one_row_per_report(tmp_path):
    path = sweep_experiment(tmp_path / "fake")
    curves = load_experiment(path).curves
    assert len(curves) == 3 + 3 + 3 + 1 + 3 + 2 + 3 + 3 + 0 + 2  # the reports of the ten trials
    assert {"trial_id", "state", "symmetrizer.method", "trainer.seed", "epoch", "val_accuracy"} <= set(curves.columns)
    first = curves[curves["trial_id"] == "abcde_00000"]
    assert list(first["epoch"]) == [1, 2, 3] and math.isclose(first["val_accuracy"].iloc[-1], 0.8)
    mean_by_epoch = curves[curves["symmetrizer.method"] == "ps"].groupby("epoch")["val_accuracy"].mean()
    assert list(mean_by_epoch.index) == [1, 2, 3]


def test_not_an_experiment(tmp_path):
    with pytest.raises(ValueError, match="is not a symsweep experiment directory"):
        load_experiment(tmp_path)
