"""The tables of an experiment whose task symsweep does not import (``task.target``) read the directions that
launch recorded in config.json (``metrics``): a comparison on a metric other than the sweep metric says which side
is better, as for a built-in task. A headline metric that only some configurations report (GA's entropy beside the
bare model's none) leaves a cell empty, with two seeds too."""

from __future__ import annotations

from orchestrator.results import load_experiment, write_report
from tests.orchestrator.fakes import FakeExperiment, base_config


def own_task_experiment(path, recorded: bool):
    config = base_config(path.parent, {"symmetrizer.method": {"grid": ["ga", "none"]}}, epochs=1, task="radii")
    config["task"] = {"target": "lab.tasks:Radii"}  # never imported by the tables
    config["sweep"].update(metric="best_val_score", mode="max",
                           compare={"key": "symmetrizer.method", "reference": "none", "metric": "best_test_mse"})
    if recorded:
        config["metrics"] = {"best_val_score": "max", "best_test_mse": "min", "entropy": "min", "not a name": "min",
                             "val_score": "sideways"}
    fake = FakeExperiment(path, config)
    for method, mse, entropy in (("ga", 0.1, 1.0), ("none", 0.3, None)):
        for seed in (0, 1):
            report = {"epoch": 1, "best_val_score": -mse, "best_test_mse": mse + 0.01 * seed, "elapsed_s": 1.0}
            fake.trial({"symmetrizer.method": method, "trainer.seed": seed}, "TERMINATED",
                       [report if entropy is None else {**report, "entropy": entropy}])
    fake.save_state()
    return path


def test_a_comparison_reads_the_recorded_direction(tmp_path):
    experiment = load_experiment(own_task_experiment(tmp_path / "own", recorded=True))
    assert experiment.result.directions == {"best_val_score": "max", "best_test_mse": "min", "entropy": "min"}
    (verdict,) = experiment.comparisons["verdict"]
    assert verdict == "ga better than none (95 %)"
    without = load_experiment(own_task_experiment(tmp_path / "old", recorded=False))
    assert "which is better is unknown" in without.comparisons["verdict"][0]  # nothing recorded: not guessed


def test_a_metric_some_configurations_lack_leaves_its_cell_empty(tmp_path):
    experiment = load_experiment(own_task_experiment(tmp_path / "own", recorded=True))
    write_report(experiment)
    table = (tmp_path / "own" / "summary.md").read_text()
    none_row = next(line for line in table.splitlines() if line.startswith("| none |"))
    assert none_row.rstrip().endswith("| - |") or "| - |" in none_row, table
