"""Two experiments side by side (``symsweep compare`` and ``orchestrator.comparison.compare_experiments``) on
fabricated experiment folders: configurations matched on their swept values, seeds on ``trainer.seed``, the
difference B − A with ``sweep.compare``'s statistics, unmatched configurations listed, the outputs outside both
experiments, which are never written."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from orchestrator.cli import main
from orchestrator.comparison import compare_experiments
from orchestrator.results import load_experiment
from tests.orchestrator.fakes import FakeExperiment, base_config, mse_report
from workers import UNUSED

METHOD, NOISE = "symmetrizer.method", "symmetrizer.noise_scale"
BEFORE = {("ps", 0.1): [0.10, 0.12, 0.11], ("ps", 1.0): [0.30, 0.10, 0.20], ("ga", UNUSED): [0.20, 0.23, 0.21]}
AFTER = {("ps", 0.1): [0.05, 0.06, 0.055], ("ps", 10.0): [0.5, 0.5, 0.5], ("ga", UNUSED): [0.20, 0.23, None]}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def experiment(path: Path, results: dict, noises: list, lr: float = 0.001) -> Path:
    """PS at ``noises`` and GA (which does not read the noise scale: run once, its noise ``UNUSED``) on three seeds;
    a seed whose value is None errored."""
    config = base_config(path.parent, {METHOD: {"grid": ["ps", "ga"]}, NOISE: {"grid": noises}}, epochs=2, seeds=3,
                         task="nbody")
    config["name"], config["trainer"]["lr"] = path.name, lr
    fake = FakeExperiment(path, config)
    for (method, noise), values in results.items():
        for seed, value in enumerate(values):
            params = {METHOD: method, NOISE: noise, "trainer.seed": seed}
            if value is None:
                fake.trial(params, "ERROR", [], error="RuntimeError: boom\n", num_failures=1)
            else:
                fake.trial(params, "TERMINATED", [mse_report(value)])
    fake.save_state()
    return path


def snapshot(path: Path) -> dict[str, tuple[int, float]]:
    """Every entry below ``path`` with its size and modification time: what 'never written' is checked against."""
    return {str(p.relative_to(path)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(path.rglob("*"))}


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    return (experiment(tmp_path / "runs" / "before", BEFORE, [0.1, 1.0]),
            experiment(tmp_path / "cluster2" / "after", AFTER, [0.1, 10.0], lr=0.002))


def test_matching_configurations_and_seeds_give_b_minus_a(pair):
    comparison = compare_experiments(*pair, key="code")
    assert comparison.metric == "best_val_mse" and comparison.mode == "min"  # the sweep metric, lower is better
    table = comparison.table
    assert list(table.columns) == ["key", "value", "reference", METHOD, NOISE, "unused", "metric", "pairs",
                                   "mean_difference", "std_error", "ci95_low", "ci95_high", "value_mean",
                                   "reference_mean", "verdict"]
    assert list(table[METHOD]) == ["ga", "ps"] and set(table["key"]) == {"code"}
    assert set(table["value"]) == {"after"} and set(table["reference"]) == {"before"}
    ga, ps = table.iloc[0], table.iloc[1]
    # GA ran once per seed in both (noise not read): matched, the noise a missing value named in `unused`
    assert math.isnan(ga[NOISE]) and ga["unused"] == NOISE
    assert ga["pairs"] == 2 and ga["mean_difference"] == pytest.approx(0.0)  # seed 2 errored in B: not paired
    assert ga["verdict"] == "no significant difference (95 %)"
    differences = np.array([0.05 - 0.10, 0.06 - 0.12, 0.055 - 0.11])  # after − before, seed by seed
    half = stats.t.ppf(0.975, 2) * differences.std(ddof=1) / math.sqrt(3)
    assert ps[NOISE] == 0.1 and ps["pairs"] == 3
    assert ps["mean_difference"] == pytest.approx(differences.mean())
    assert (ps["ci95_low"], ps["ci95_high"]) == pytest.approx((differences.mean() - half, differences.mean() + half))
    assert ps["value_mean"] == pytest.approx(0.055) and ps["reference_mean"] == pytest.approx(0.11)
    assert ps["verdict"] == "after better than before (95 %)"
    unmatched = comparison.unmatched_table
    assert [(row["experiment"], row[METHOD], row[NOISE]) for _, row in unmatched.iterrows()] == [
        ("before", "ps", 1.0), ("after", "ps", 10.0)]
    assert comparison.differences == {"trainer.lr": (0.001, 0.002)}  # named: the configs differ outside the sweep


def test_a_key_only_one_experiment_sweeps_matches_its_config_value(tmp_path):
    """B swept the method only, with the noise scale 0.1 in its config: it pairs with A's configurations at 0.1
    (and with GA, which reads no noise scale); A's at 1.0 is unmatched."""
    before = experiment(tmp_path / "before", BEFORE, [0.1, 1.0])
    config = base_config(tmp_path, {METHOD: {"grid": ["ps", "ga"]}}, epochs=2, seeds=3, task="nbody")
    config["name"], config["symmetrizer"]["noise_scale"], config["trainer"]["lr"] = "pinned", 0.1, 0.001
    fake = FakeExperiment(tmp_path / "pinned", config)
    for method, values in (("ps", [0.09, 0.11, 0.10]), ("ga", [0.2, 0.2, 0.2])):
        for seed, value in enumerate(values):
            fake.trial({METHOD: method, "trainer.seed": seed}, "TERMINATED", [mse_report(value)])
    fake.save_state()
    comparison = compare_experiments(before, tmp_path / "pinned")
    assert comparison.keys == [METHOD, NOISE]
    assert [(c.values[METHOD], c.values[NOISE], c.pairs) for c in comparison.found] == [("ga", 0.1, 3), ("ps", 0.1, 3)]
    assert [(label, values[NOISE]) for label, values, _ in comparison.unmatched] == [("before", 1.0)]
    assert comparison.differences == {}  # noise_scale is a matching key, not a difference


def test_refusals_are_one_line_values_errors(pair, tmp_path):
    with pytest.raises(ValueError, match=r"metric='nope': not reported by the trials of both experiments; "
                                         r"allowed: .*best_val_mse"):
        compare_experiments(*pair, metric="nope")
    with pytest.raises(ValueError, match=r"key='a b' is not allowed"):
        compare_experiments(*pair, key="a b")
    with pytest.raises(ValueError, match="is not a symsweep experiment directory"):
        compare_experiments(pair[0], tmp_path)
    comparison = compare_experiments(*pair)
    for inside in (pair[0], pair[1] / "plots"):
        with pytest.raises(ValueError, match=r"is inside experiment [AB] .*expected a directory outside both"):
            comparison.write(inside)


def test_compare_command_writes_the_paired_table_and_plot_outside_both(pair, tmp_path, capsys, monkeypatch):
    before = {path: snapshot(path) for path in pair}
    out = tmp_path / "side-by-side"
    assert main(["compare", str(pair[0]), str(pair[1]), "--key", "code", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "# after against before: best_val_mse, paired by configuration and seed" in printed
    assert "after better than before (95 %)" in printed and "## Unmatched configurations (2)" in printed
    assert "trainer.lr: 0.001 (A), 0.002 (B)" in printed
    assert f"2 matching configuration(s) (2 with paired seeds), 2 unmatched; wrote 4 file(s) in {out}" in printed
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "compare.csv", "compare.md", "plots", "plots/compare_best_val_mse.png", "unmatched.csv"]
    rows = read_csv(out / "compare.csv")
    assert [(r["key"], r["value"], r["reference"], r[METHOD], r[NOISE], r["unused"], r["pairs"]) for r in rows] == [
        ("code", "after", "before", "ga", "", NOISE, "2"), ("code", "after", "before", "ps", "0.1", "", "3")]
    assert pd.read_csv(out / "compare.csv")[NOISE].dtype == float  # numbers stay numbers
    assert [(r["experiment"], r[NOISE]) for r in read_csv(out / "unmatched.csv")] == [("before", "1.0"),
                                                                                       ("after", "10.0")]
    assert {path: snapshot(path) for path in pair} == before  # the inputs were only read
    # without --out: a new folder under the current directory, printed; a second run does not overwrite it
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(pair[0]), str(pair[1])]) == 0
    assert main(["compare", str(pair[0]), str(pair[1])]) == 0
    printed = capsys.readouterr().out
    first, second = tmp_path / "compare-before-vs-after", tmp_path / "compare-before-vs-after-2"
    assert f"in {first}\n" in printed and f"in {second}\n" in printed
    assert (first / "compare.csv").read_text() == (second / "compare.csv").read_text()
    assert read_csv(first / "compare.csv")[0]["key"] == "experiment"  # the default key


def test_compare_command_refuses_in_one_line(pair, tmp_path, capsys):
    assert main(["compare", str(pair[0]), str(pair[1]), "--metric", "nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("symsweep compare: error: metric='nope'")
    assert main(["compare", str(pair[0]), str(pair[1]), "--out", str(pair[0] / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is inside experiment A" in err
    assert not (tmp_path / "o").exists() and not (pair[0] / "cmp").exists()


def test_same_names_are_told_apart_and_the_api_takes_loaded_experiments(tmp_path):
    a = experiment(tmp_path / "one" / "sweep", BEFORE, [0.1, 1.0])
    b = experiment(tmp_path / "two" / "sweep", BEFORE, [0.1, 1.0])
    comparison = compare_experiments(load_experiment(a), load_experiment(b))
    assert comparison.labels == ("sweep (A)", "sweep (B)")
    assert all(c.pairs == 3 and c.mean == 0 for c in comparison.found) and not comparison.unmatched
    assert len(comparison.found) == 3
    written = comparison.write(tmp_path / "out")
    assert {Path(p).name for p in written} == {"compare.csv", "unmatched.csv", "compare.md",
                                               "compare_best_val_mse.png"}
    assert os.listdir(a) == os.listdir(b)  # nothing added to either
