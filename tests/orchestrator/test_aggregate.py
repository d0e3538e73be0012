"""Aggregation of an experiment directory (trials.csv, summary.csv/.md, plots) on hand-written fakes
(``tests/orchestrator/fakes.py``, written the way Ray Tune 2.60 and symsweep write a real one)."""

from __future__ import annotations

import csv
import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from orchestrator.aggregate import load_trials, status
from orchestrator.figures import log_axis, safe_name
from orchestrator.results import summary_markdown, write_report
from tests.orchestrator.fakes import (
    RAY_ERROR,
    FakeExperiment,
    base_config,
    compare_experiment,
    epoch_metrics,
    mse_report,
    sweep_experiment,
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    path = sweep_experiment(tmp_path_factory.mktemp("storage") / "fake")
    return path, write_report(path)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_states_from_the_newest_state_file(report):
    trials = load_trials(report[0])
    assert [t.trial_id for t in trials] == [f"abcde_{i:05d}" for i in range(10)]
    assert [t.state for t in trials] == ["completed", "completed", "completed", "errored", "completed", "running",
                                         "completed", "completed", "pending", "unfinished"]
    errored, recovered, pending = trials[3], trials[7], trials[8]
    assert errored.error.startswith("NonFiniteLoss: non-finite training loss (nan) at epoch 2")
    assert recovered.error == ""  # it failed once and then completed: its failure count says so, not an error
    assert (errored.num_failures, recovered.num_failures, trials[0].num_failures) == (1, 1, 0)
    assert pending.history == [] and pending.last == {}
    assert trials[0].params == {"symmetrizer.method": "ps", "symmetrizer.noise_scale": 0.1, "trainer.seed": 0}
    assert [h["epoch"] for h in trials[0].history] == [1, 2, 3]
    assert "training_iteration" not in trials[0].last and "pid" not in trials[0].last
    assert trials[1].last["best_val_accuracy"] == 0.9


def test_states_from_trial_directories_without_state_file(report, tmp_path):
    copy = tmp_path / "fake"
    shutil.copytree(report[0], copy)
    for state_file in copy.glob("experiment_state-*.json"):
        state_file.unlink()
    states = [t.state for t in load_trials(copy)]
    assert states == ["completed", "completed", "completed", "errored", "completed", "unfinished", "completed",
                      "completed", "unfinished", "unfinished"]


def test_report_return_value_and_files(report):
    path, result = report
    assert result["trials"] == 10 and result["configurations"] == 5
    assert result["by_state"] == {"completed": 6, "stopped": 0, "errored": 1, "running": 1, "pending": 1,
                                  "unfinished": 1}
    names = {Path(file).relative_to(path).as_posix() for file in result["files"]}
    assert {"trials.csv", "summary.csv", "summary.md", "plots/learning_curves.png",
            "plots/metrics_vs_symmetrizer.noise_scale.png"} <= names
    assert len([name for name in names if name.endswith(".png")]) == 2  # one figure per question
    assert not any("trainer.seed" in name or "vs_symmetrizer.method" in name for name in names)
    for file in result["files"]:
        assert Path(file).stat().st_size > 0
        if file.endswith(".png"):
            assert Path(file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trials_csv(report):
    rows = read_csv(report[0] / "trials.csv")
    assert len(rows) == 10
    header = list(rows[0])
    assert header[:5] == ["trial_id", "state", "symmetrizer.method", "symmetrizer.noise_scale", "trainer.seed"]
    assert header[-3:] == ["num_failures", "error", "dirname"]
    assert header.index("test_accuracy") < header.index("best_val_accuracy")  # final metrics, then best_*
    assert not {"training_iteration", "time_total_s", "pid", "done", "config", "date"} & set(header)
    first, errored, pending = rows[0], rows[3], rows[8]
    assert (first["symmetrizer.method"], first["symmetrizer.noise_scale"], first["trainer.seed"]) == ("ps", "0.1", "0")
    assert float(first["best_val_accuracy"]) == pytest.approx(0.8) and first["epoch"] == "3"
    assert errored["state"] == "errored" and errored["epoch"] == "1" and errored["entropy"] == "nan"
    assert errored["error"].startswith("NonFiniteLoss:") and errored["num_failures"] == "1"
    assert pending["state"] == "pending" and pending["best_val_accuracy"] == ""


def test_summary_csv_mean_and_std_over_seeds(report):
    rows = read_csv(report[0] / "summary.csv")
    order = [(r["symmetrizer.method"], r["symmetrizer.noise_scale"]) for r in rows]
    # sorted by best_val_accuracy (max): 0.85, 0.7, 0.6, 0.55, then the configuration with no completed seed
    assert order == [("ps", "0.1"), ("ga", "0.1"), ("ga", "10"), ("ps", "10"), ("ps", "1")]
    assert list(rows[0])[:7] == ["symmetrizer.method", "symmetrizer.noise_scale", "unused", "n_seeds", "n_stopped",
                                 "n_trials", "best_val_accuracy_mean"]
    best = rows[0]  # seeds 0 and 1: 0.8 and 0.9
    assert (best["n_seeds"], best["n_trials"]) == ("2", "2")
    assert float(best["best_val_accuracy_mean"]) == pytest.approx(0.85)
    assert float(best["best_val_accuracy_std"]) == pytest.approx(math.sqrt(2 * 0.05**2))  # ddof=1: 0.0707
    assert float(best["entropy_mean"]) == pytest.approx(1.5) and float(best["entropy_std"]) == pytest.approx(0.70710678)
    assert float(best["elapsed_s_mean"]) == pytest.approx(30.5)
    assert float(best["test_accuracy_mean"]) == pytest.approx(0.80)
    one_seed = rows[1]  # ga 0.1: seed 1 still running, not counted
    assert (one_seed["n_seeds"], one_seed["n_trials"]) == ("1", "2")
    assert float(one_seed["best_val_accuracy_mean"]) == pytest.approx(0.7)
    assert one_seed["best_val_accuracy_std"] == "0.0"
    ga_10 = rows[2]  # 0.5 and 0.7; one seed reported a NaN entropy
    assert float(ga_10["best_val_accuracy_std"]) == pytest.approx(math.sqrt(2) * 0.1)
    assert ga_10["entropy_mean"] == "nan"
    assert rows[4]["n_seeds"] == "0" and rows[4]["best_val_accuracy_mean"] == ""


def test_summary_markdown(report):
    text = (report[0] / "summary.md").read_text(encoding="utf-8")
    assert text == summary_markdown(report[0])
    lines = text.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| symmetrizer.method | symmetrizer.noise_scale | n_seeds | best_val_accuracy |")
    assert "sorted by best_val_accuracy (max)" in text and "6 completed" in text
    assert table[2].startswith("| ps | 0.1 | 2 | 0.85 ± 0.07071 |")
    assert "| 1.5 ± 0.7071 |" in table[2]
    assert table[-1].startswith("| ps | 1 | 0 | - |")
    assert len(table) == 2 + 5


def test_report_is_deterministic(report):
    path = report[0]
    first = {name: (path / name).read_bytes() for name in ("trials.csv", "summary.csv", "summary.md")}
    write_report(path)
    assert {name: (path / name).read_bytes() for name in first} == first


def test_status(report):
    result = status(report[0])
    assert result["trials"] == 10 and result["by_state"]["running"] == 1
    assert (result["metric"], result["mode"]) == ("best_val_accuracy", "max")
    assert result["best"]["value"] == pytest.approx(0.9) and result["best"]["trial_id"] == "abcde_00001"
    assert result["best"]["params"]["symmetrizer.noise_scale"] == 0.1
    json.dumps(result)  # printable by `symsweep status --json`


def test_partial_experiment_without_any_result(tmp_path):
    fake = FakeExperiment(tmp_path / "partial", base_config(tmp_path, {"trainer.lr": {"loguniform": [1e-4, 1e-2]}}))
    fake.trial({"trainer.lr": 0.001, "trainer.seed": 0}, "PENDING", [], directory=False)
    fake.trial({"trainer.lr": 0.003, "trainer.seed": 1}, "ERROR", [], error=RAY_ERROR)
    fake.save_state()
    result = write_report(fake.path)
    assert result["by_state"]["pending"] == 1 and result["by_state"]["errored"] == 1
    assert result["configurations"] == 2
    assert not [file for file in result["files"] if file.endswith(".png")]
    assert read_csv(fake.path / "trials.csv")[1]["error"].startswith("RuntimeError: CUDA out of memory")
    assert status(fake.path)["best"] is None
    assert "| 0.001 | 0 |" in summary_markdown(fake.path)


def test_empty_experiment_and_separation_task(tmp_path):
    empty = FakeExperiment(tmp_path / "empty", base_config(tmp_path, {}))
    assert write_report(empty.path)["trials"] == 0
    assert (empty.path / "summary.csv").read_text() == "unused,n_seeds,n_stopped,n_trials\n"

    params = {"symmetrizer.noise_scale": {"grid": [0.1, 1.0]}}
    fake = FakeExperiment(tmp_path / "sep", base_config(tmp_path, params, epochs=10, seeds=1, task="graph8c"))
    for noise, pairs in ((0.1, 3.0), (1.0, 0.0)):
        fake.trial({"symmetrizer.noise_scale": noise}, "TERMINATED", [
            {"epoch": 0, "test_unseparated_pairs": pairs, "test_separated_fraction": 1 - pairs / 100,
             "seeds": 100, "elapsed_s": 2.0}])
    assert [t.state for t in load_trials(fake.path)] == ["completed", "completed"]  # one report is all
    result = write_report(fake.path)
    assert status(fake.path)["mode"] == "min" and status(fake.path)["best"]["value"] == 0.0
    assert read_csv(fake.path / "summary.csv")[0]["symmetrizer.noise_scale"] == "1.0"  # fewest unseparated first
    names = [Path(file).name for file in result["files"]]
    assert "metrics_vs_symmetrizer.noise_scale.png" in names
    assert "learning_curves.png" not in names  # nothing trained


def test_swept_epochs_decide_completion(tmp_path):
    fake = FakeExperiment(tmp_path / "epochs", base_config(tmp_path, {"trainer.epochs": {"grid": [1, 3]}}, seeds=1))
    fake.trial({"trainer.epochs": 1}, "TERMINATED", [epoch_metrics(1, 0.5, 0)])
    fake.trial({"trainer.epochs": 3}, "TERMINATED", [epoch_metrics(1, 0.5, 0)])
    assert [t.state for t in load_trials(fake.path)] == ["completed", "unfinished"]


class Payload:
    """Unpickling this object creates ``marker`` (what a crafted error.pkl would do, harmlessly)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_errors_are_read_from_text_and_error_pkl_is_never_unpickled(tmp_path):
    fake = FakeExperiment(tmp_path / "pkl", base_config(tmp_path, {}))
    fake.trial({"trainer.seed": 0}, "ERROR", [epoch_metrics(1, 0.5, 0)], error="the trial died\n")
    trial_dir = next(p for p in fake.path.iterdir() if p.is_dir())
    marker = tmp_path / "pwned"
    (trial_dir / "error.pkl").write_bytes(pickle.dumps(Payload(marker)))
    pickle.loads((trial_dir / "error.pkl").read_bytes())  # the payload is live: unpickling creates the file
    assert marker.exists()
    marker.unlink()
    fake.save_state()
    assert load_trials(fake.path)[0].error == "the trial died"
    write_report(fake.path)
    status(fake.path)
    assert not marker.exists()


def test_not_an_experiment_directory(tmp_path):
    with pytest.raises(ValueError, match=r"missing.*does not exist.*config.json written by `symsweep launch`"):
        write_report(tmp_path / "missing")
    (tmp_path / "runs").mkdir()
    with pytest.raises(ValueError, match=r"runs is not a symsweep experiment directory: it has no config.json"):
        status(tmp_path / "runs")


def test_plot_helpers():
    assert safe_name("accuracy_vs_group.name=S_n x E(d).png") == "accuracy_vs_group.name_S_n_x_E_d_.png"
    assert log_axis([0.1, 1, 10]) and not log_axis([1, 5]) and not log_axis([0, 100])


# -- derived results: sweep.derived ratios and sweep.loglog fits -------------------------------------------
def ratio_experiment(path: Path) -> Path:
    """GNN vs EGNN over task.dim {2, 3, 4} × 2 seeds; EGNN at d = 4 has no completed trial."""
    params = {"task.dim": {"grid": [2, 3, 4]}, "model.name": {"grid": ["gnn", "egnn"]}}
    config = base_config(path.parent, params, epochs=2, task="nbody")
    config["sweep"]["derived"] = [{"name": "mse_ratio_gnn_over_egnn", "metric": "best_test_mse", "key": "model.name",
                                   "numerator": "gnn", "denominator": "egnn"}]
    fake = FakeExperiment(path, config)
    mse = {("gnn", 2): (0.04, 0.06), ("egnn", 2): (0.02, 0.02), ("gnn", 3): (0.09, 0.09), ("egnn", 3): (0.03, 0.03),
           ("gnn", 4): (0.05, 0.05), ("egnn", 4): (0.01, 0.01)}
    for (model, dim), values in mse.items():
        for seed, value in enumerate(values):
            failed = model == "egnn" and dim == 4
            fake.trial({"task.dim": dim, "model.name": model, "trainer.seed": seed},
                       "ERROR" if failed else "TERMINATED", [mse_report(value)], error=RAY_ERROR if failed else None)
    fake.save_state()
    return path


def test_derived_ratio_csv_and_plot(tmp_path):
    path = ratio_experiment(tmp_path / "ratio")
    result = write_report(path)
    rows = read_csv(path / "derived.csv")
    assert list(rows[0])[:5] == ["name", "metric", "task.dim", "ratio", "ratio_std"]
    assert [row["task.dim"] for row in rows] == ["2", "3"]  # d = 4 has no completed EGNN: no pair
    first = rows[0]  # gnn 0.05 ± 0.01414 over egnn 0.02 ± 0
    assert first["name"] == "mse_ratio_gnn_over_egnn" and first["metric"] == "best_test_mse"
    assert float(first["ratio"]) == pytest.approx(2.5)
    assert float(first["ratio_std"]) == pytest.approx(2.5 * math.sqrt(2) * 0.01 / 0.05)
    assert (first["numerator_seeds"], first["denominator_seeds"]) == ("2", "2")
    assert float(first["numerator_mean"]) == pytest.approx(0.05)
    assert float(first["denominator_mean"]) == pytest.approx(0.02)
    assert float(rows[1]["ratio"]) == pytest.approx(3.0) and float(rows[1]["ratio_std"]) == pytest.approx(0.0)
    names = {Path(file).name for file in result["files"]}
    assert {"derived.csv", "derived_mse_ratio_gnn_over_egnn_vs_task.dim.png"} <= names
    assert "fits.csv" not in names  # no sweep.loglog


def test_derived_csv_before_any_result(tmp_path):
    params = {"model.name": {"grid": ["gnn", "egnn"]}}
    config = base_config(tmp_path, params, seeds=1, task="nbody")
    config["sweep"]["derived"] = [{"name": "r", "metric": "best_test_mse", "key": "model.name", "numerator": "gnn",
                                   "denominator": "egnn"}]
    fake = FakeExperiment(tmp_path / "empty", config)
    fake.trial({"model.name": "gnn"}, "PENDING", [], directory=False)
    fake.save_state()
    result = write_report(fake.path)
    assert (fake.path / "derived.csv").read_text().startswith("name,metric,ratio,ratio_std,numerator_mean")
    assert len(read_csv(fake.path / "derived.csv")) == 0
    assert not [file for file in result["files"] if Path(file).name.startswith("derived_")]


def scaling_experiment(path: Path) -> Path:
    """Error = c · n^slope exactly, for two groups × two transforms; a C_4 point lacks one size."""
    params = {"task.transform": {"grid": ["rotate", "flip_rotate"]}, "group.name": {"grid": ["C_4", "SO(2)"]},
              "task.train_size": {"grid": [10, 100, 1000]}}
    config = base_config(path.parent, params, epochs=1, seeds=1)
    config["sweep"]["loglog"] = [{"metric": "best_test_accuracy", "key": "task.train_size", "complement": True}]
    fake = FakeExperiment(path, config)
    slopes = {("rotate", "C_4"): -0.5, ("rotate", "SO(2)"): -0.25, ("flip_rotate", "C_4"): -0.3,
              ("flip_rotate", "SO(2)"): -0.4}
    for (transform, group), slope in slopes.items():
        for size in (10, 100, 1000):
            error = 0.8 * size**slope
            point = {"task.transform": transform, "group.name": group, "task.train_size": size}
            fake.trial(point, "TERMINATED", [{"epoch": 1, "best_val_accuracy": 1 - error,
                                              "best_test_accuracy": 1 - error, "test_accuracy": 1 - error}])
    fake.save_state()
    return path


def test_loglog_fits_csv_and_plot(tmp_path):
    path = scaling_experiment(tmp_path / "scaling")
    result = write_report(path)
    rows = read_csv(path / "fits.csv")
    assert list(rows[0])[:4] == ["quantity", "key", "group.name", "task.transform"]  # config.json sorts its keys
    fitted = {(row["task.transform"], row["group.name"]): row for row in rows}
    assert len(fitted) == 4
    for (transform, group), slope in {("rotate", "C_4"): -0.5, ("rotate", "SO(2)"): -0.25,
                                      ("flip_rotate", "C_4"): -0.3, ("flip_rotate", "SO(2)"): -0.4}.items():
        row = fitted[(transform, group)]
        assert row["quantity"] == "1-best_test_accuracy" and row["key"] == "task.train_size"
        assert float(row["slope"]) == pytest.approx(slope, abs=1e-9)
        assert float(row["intercept"]) == pytest.approx(math.log10(0.8), abs=1e-9)
        assert float(row["r2"]) == pytest.approx(1.0) and float(row["slope_stderr"]) == pytest.approx(0.0, abs=1e-9)
        assert (row["points"], row["x_min"], row["x_max"]) == ("3", "10", "1000")
    names = {Path(file).name for file in result["files"]}
    assert {"fits.csv", "loglog_1-best_test_accuracy_vs_task.train_size.png"} <= names


def test_loglog_fit_of_a_noisy_line_and_too_few_points(tmp_path):
    from orchestrator.aggregate import read_trials, summarize
    from orchestrator.analyses.loglog import fits

    params = {"task.train_size": {"grid": [10, 20, 40, 80]}, "group.name": {"grid": ["C_4", "D_4"]}}
    fake = FakeExperiment(tmp_path / "noisy", base_config(tmp_path, params, epochs=1, seeds=1))
    errors = {10: 0.5, 20: 0.3, 40: 0.22, 80: 0.12}
    for size, error in errors.items():
        fake.trial({"task.train_size": size, "group.name": "C_4"}, "TERMINATED",
                   [{"epoch": 1, "best_val_accuracy": 1 - error, "best_test_accuracy": 1 - error}])
    fake.trial({"task.train_size": 10, "group.name": "D_4"}, "TERMINATED",  # one point: no fit
               [{"epoch": 1, "best_val_accuracy": 0.5, "best_test_accuracy": 0.5}])
    fake.save_state()
    path, config = fake.path, base_config(tmp_path, params, epochs=1, seeds=1)
    summary = summarize(path, config, read_trials(path, config))
    found = fits(summary, {"metric": "best_test_accuracy", "key": "task.train_size", "complement": True})
    assert [fit.values for fit in found] == [{"group.name": "C_4"}]
    x, y = np.log10(list(errors)), np.log10(list(errors.values()))
    slope, intercept = np.polyfit(x, y, 1)
    assert found[0].slope == pytest.approx(slope) and found[0].intercept == pytest.approx(intercept)
    assert 0.9 < found[0].r2 < 1.0 and found[0].slope_stderr > 0
    assert found[0].label() == "group.name=C_4"


def test_learning_curves_show_the_entropy(report):
    from orchestrator.aggregate import read_trials, summarize
    from orchestrator.plots import curve_metrics

    path = report[0]
    config = json.loads((path / "config.json").read_text())
    summary = summarize(path, config, read_trials(path, config))
    assert curve_metrics(summary) == ["val_accuracy", "train_loss", "entropy"]


# -- sweep.compare and evaluation-sample curves --------------------------------------------------------------
def test_paired_comparison_with_a_t_interval(tmp_path):
    from scipy import stats

    path = compare_experiment(tmp_path / "cmp", seeds=3)
    result = write_report(path)
    rows = read_csv(path / "compare.csv")
    assert [(r["value"], r["reference"], r["symmetrizer.noise_scale"], r["pairs"]) for r in rows] == [
        ("ps", "ga", "0.1", "3"), ("ps", "ga", "1.0", "3")]
    differences = np.array([0.10 - 0.20, 0.12 - 0.23, 0.11 - 0.21])
    error = differences.std(ddof=1) / math.sqrt(3)
    half = stats.t.ppf(0.975, 2) * error
    assert float(rows[0]["mean_difference"]) == pytest.approx(differences.mean())
    assert float(rows[0]["std_error"]) == pytest.approx(error)
    assert float(rows[0]["ci95_low"]) == pytest.approx(differences.mean() - half)
    assert float(rows[0]["ci95_high"]) == pytest.approx(differences.mean() + half)
    assert rows[0]["verdict"] == "ps better than ga (95 %)"  # MSE: lower is better
    assert rows[1]["verdict"] == "no significant difference (95 %)"
    assert rows[0]["metric"] == "best_val_mse"  # the sweep metric by default
    markdown = (path / "summary.md").read_text()
    assert "## best_val_mse: each symmetrizer.method against ga, paired by seed" in markdown
    assert "| ps | 0.1 | 3 |" in markdown and "ps better than ga (95 %)" in markdown
    assert "plots/compare_best_val_mse.png" in {Path(f).relative_to(path).as_posix() for f in result["files"]}


def test_a_comparison_on_another_metric_uses_that_metric_s_direction(tmp_path):
    """Digits (accuracy: max) compared on the Monte-Carlo equivariance error (min): lower error is better,
    whatever the direction of the sweep metric."""
    params = {"symmetrizer.method": {"grid": ["ps", "ga"]}}
    config = base_config(tmp_path, params, epochs=3, seeds=3)
    config["sweep"]["compare"] = {"key": "symmetrizer.method", "reference": "ga", "metric": "mc_equivariance_error"}
    fake = FakeExperiment(tmp_path / "direction", config)
    for method, error in (("ps", 0.01), ("ga", 0.5)):
        for seed in range(3):
            report = {**epoch_metrics(3, 0.9, seed), "mc_equivariance_error": error + 0.01 * seed}
            fake.trial({"symmetrizer.method": method, "trainer.seed": seed}, "TERMINATED", [report])
    fake.save_state()
    write_report(fake.path)
    (row,) = read_csv(fake.path / "compare.csv")
    assert row["verdict"] == "ps better than ga (95 %)"
    assert "(lower is better)" in (fake.path / "summary.md").read_text()


def test_a_folder_whose_task_symsweep_does_not_know_is_not_ranked(tmp_path):
    """No sweep.mode in config.json and a task symsweep does not know: the direction of a metric is never guessed
    from its name; the summary keeps the swept-value order and says why, status names no best trial."""
    params = {"symmetrizer.noise_scale": {"grid": [0.1, 1.0]}}
    config = base_config(tmp_path, params, seeds=1, task="mystery")
    config["sweep"]["metric"] = "best_val_loss"
    fake = FakeExperiment(tmp_path / "unknown", config)
    for noise, loss in ((0.1, 0.9), (1.0, 0.1)):
        report = {"epoch": 3, "val_loss": loss, "best_val_loss": loss, "best_epoch": 3, "elapsed_s": 1.0}
        fake.trial({"symmetrizer.noise_scale": noise}, "TERMINATED", [report])
    fake.save_state()
    write_report(fake.path)
    reason = ("the direction of best_val_loss is unknown: config.json gives no sweep.mode and task.name='mystery' "
              "is not a task symsweep knows")
    assert f"not ranked: {reason};" in (fake.path / "summary.md").read_text()
    assert [row["symmetrizer.noise_scale"] for row in read_csv(fake.path / "summary.csv")] == ["0.1", "1.0"]
    state = status(fake.path)
    assert (state["metric"], state["mode"], state["best"], state["unranked"]) == ("best_val_loss", None, None, reason)
    config["sweep"]["mode"] = "min"  # what config.json says is used as it is
    known = FakeExperiment(tmp_path / "saved", config)
    known.trial({"symmetrizer.noise_scale": 1.0}, "TERMINATED", [{"epoch": 3, "best_val_loss": 0.1}])
    known.save_state()
    assert status(known.path)["best"]["value"] == 0.1 and status(known.path)["unranked"] is None


def test_one_seed_says_so_instead_of_zero_uncertainty(tmp_path):
    path = compare_experiment(tmp_path / "one", seeds=1)
    write_report(path)
    rows = read_csv(path / "compare.csv")
    assert [r["pairs"] for r in rows] == ["1", "1"] and rows[0]["std_error"] == "nan"
    assert rows[0]["verdict"].startswith("one seed: no uncertainty")
    markdown = (path / "summary.md").read_text()
    assert "one seed: no uncertainty" in markdown.split("paired by seed")[1] and "± 0 " not in markdown
    assert "| ps | 0.1 | 1 | 0.1 |" in markdown  # the summary row: the value alone


def test_an_analysis_without_a_result_says_why_in_the_summary(tmp_path):
    """A compare the sweep asked for whose reference never ran: summary.md says so in place of its section (and
    compare.csv holds only its header); so does every analysis while no trial has finished."""
    path = compare_experiment(tmp_path / "noref", seeds=2)
    config = json.loads((path / "config.json").read_text())
    config["sweep"]["compare"]["reference"] = "fa"  # asked for, never run
    (path / "config.json").write_text(json.dumps(config))
    write_report(path)
    assert len(read_csv(path / "compare.csv")) == 0
    markdown = (path / "summary.md").read_text()
    assert ("compare: symmetrizer.method: every value against fa, paired by seed, on best_val_mse (compare.csv): "
            "no result; no configuration with symmetrizer.method=fa (the reference) has run.") in markdown
    fresh = FakeExperiment(tmp_path / "fresh", config)
    fresh.trial({"symmetrizer.method": "ps", "symmetrizer.noise_scale": 0.1, "trainer.seed": 0}, "PENDING", [])
    fresh.save_state()
    write_report(fresh.path)
    assert "no result; no trial has finished yet." in (fresh.path / "summary.md").read_text()


def test_evaluation_sample_curves_table_and_plot(tmp_path):
    path = compare_experiment(tmp_path / "curves", seeds=3)
    result = write_report(path)
    rows = read_csv(path / "eval_samples.csv")
    assert len(rows) == 4 * 3  # four configurations × three sample counts
    ps = [r for r in rows if r["symmetrizer.method"] == "ps" and r["symmetrizer.noise_scale"] == "0.1"]
    assert [int(r["eval_samples"]) for r in ps] == [1, 2, 4]
    assert float(ps[1]["mean"]) == pytest.approx(np.mean([0.10, 0.12, 0.11]) / 2)
    assert float(ps[1]["seed_std"]) == pytest.approx(np.std([0.05, 0.06, 0.055], ddof=1))
    assert float(ps[1]["draw_std"]) == pytest.approx(0.005) and ps[1]["seeds"] == "3"
    assert "## Metric against the number of evaluation samples N" in (path / "summary.md").read_text()
    names = {Path(f).relative_to(path).as_posix() for f in result["files"]}
    assert "plots/eval_samples_test_mse.png" in names and "eval_samples.csv" in names
    # `symsweep evaluate` adds points (and replaces reported ones) through eval_samples.json
    trial_dir = next(path.glob("trainable_abcde_00000_*"))
    (trial_dir / "eval_samples.json").write_text(json.dumps({"test_mse": {"8": {"mean": 0.5, "std": 0.0}}}))
    assert set(load_trials(path)[0].curve["test_mse"]) == {"1", "2", "4", "8"}


# -- figures: one per question, legends outside, the task loss apart from the penalty --------------------------
def test_panels_leave_out_best_epoch_final_values_and_duplicates(report):
    from orchestrator.aggregate import read_trials, summarize
    from orchestrator.plots import panel_metrics

    path = report[0]
    config = json.loads((path / "config.json").read_text())
    summary = summarize(path, config, read_trials(path, config))
    assert "best_epoch" in summary.metrics and "val_accuracy" in summary.metrics
    assert panel_metrics(summary) == ["best_val_accuracy", "best_test_accuracy", "mc_equivariance_error", "entropy",
                                      "elapsed_s"]


def penalised_experiment(path: Path) -> Path:
    """PS reports its task loss and its entropy penalty apart; GA has no penalty."""
    params = {"symmetrizer.method": {"grid": ["ps", "ga"]}, "symmetrizer.noise_scale": {"grid": [0.1, 1.0]}}
    fake = FakeExperiment(path, base_config(path.parent, params, epochs=2, seeds=1, task="nbody"))
    for method in ("ps", "ga"):
        for noise in (0.1, 1.0):
            reports = [{**mse_report(0.1 / epoch), "epoch": epoch, "train_task_loss": 0.1 / epoch,
                        **({"train_entropy_penalty": 1.0 + noise, "train_loss": 0.1 / epoch + 0.1 * (1.0 + noise)}
                           if method == "ps" else {})} for epoch in (1, 2)]
            fake.trial({"symmetrizer.method": method, "symmetrizer.noise_scale": noise}, "TERMINATED", reports)
    fake.save_state()
    return path


def test_learning_curves_task_loss_and_penalty_apart_one_colour_per_configuration(tmp_path, monkeypatch):
    from orchestrator import plots
    from orchestrator.aggregate import read_trials, summarize

    path = penalised_experiment(tmp_path / "pen")
    config = json.loads((path / "config.json").read_text())
    summary = summarize(path, config, read_trials(path, config))
    assert plots.curve_metrics(summary) == ["val_mse", "train_task_loss", "train_entropy_penalty"]
    figures = []
    monkeypatch.setattr(plots, "save", lambda figure, file: figures.append(figure) or file)
    plots.learning_curves(summary, tmp_path / "curves.png")
    plots.metrics_vs_key(summary, "symmetrizer.noise_scale", tmp_path / "metrics.png")
    for figure in figures:
        panels = [axes for axes in figure.axes if axes.get_visible()]
        assert all(axes.get_legend() is None for axes in panels) and len(figure.legends) == 1  # outside the data
        colours = {}
        for axes in panels:
            drawn = [(line.get_label(), line.get_color()) for line in axes.get_lines()]
            drawn += [(bars.get_label(), bars.lines[0].get_color()) for bars in axes.containers]  # error bars
            for label, colour in drawn:
                if not label.startswith("_"):
                    assert colours.setdefault(label, colour) == colour, label
        assert len(colours) == len(figure.legends[0].get_texts())
    penalty = figures[0].axes[2]
    assert penalty.get_title() == "train_entropy_penalty"
    assert {line.get_label() for line in penalty.get_lines()} == {"method=ps, noise_scale=0.1",
                                                                  "method=ps, noise_scale=1.0"}
