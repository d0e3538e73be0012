"""What a researcher reads stays usable: a key a configuration does not read is a missing value (so numeric columns
stay numeric in CSVs, DataFrames and the dry run's JSON) and is named in ``unused``; a trial ASHA stopped early is
a result ("stopped", its best metric at the epoch reached), counted in the summary and the exit status."""

from __future__ import annotations

import json

import pandas as pd

from orchestrator.cli import main
from orchestrator.results import load_experiment, write_report
from tests.orchestrator.fakes import FakeExperiment, base_config, epoch_metrics
from workers import UNUSED


def noise_experiment(tmp_path, scheduler: str = "none") -> FakeExperiment:
    params = {"symmetrizer.method": {"grid": ["ps", "ga"]}, "symmetrizer.noise_scale": {"grid": [0.1, 1.0]}}
    config = base_config(tmp_path, params, seeds=1)
    config["sweep"]["scheduler"] = scheduler
    return FakeExperiment(tmp_path / "noise", config)


def test_an_unread_key_is_a_missing_number_named_in_unused(tmp_path):
    fake = noise_experiment(tmp_path)
    for method, noise, quality in (("ps", 0.1, 0.7), ("ps", 1.0, 0.8), ("ga", UNUSED, 0.6)):
        fake.trial({"symmetrizer.method": method, "symmetrizer.noise_scale": noise}, "TERMINATED",
                   [epoch_metrics(epoch, quality, 0) for epoch in (1, 2, 3)])
    fake.save_state()
    write_report(fake.path)
    experiment = load_experiment(fake.path)
    for frame in (experiment.summary, experiment.trials):
        assert pd.api.types.is_float_dtype(frame["symmetrizer.noise_scale"])
        assert set(frame.loc[frame["symmetrizer.noise_scale"] > 0.5, "symmetrizer.method"]) == {"ps"}
        ga = frame[frame["symmetrizer.method"] == "ga"]
        assert ga["symmetrizer.noise_scale"].isna().all() and set(ga["unused"]) == {"symmetrizer.noise_scale"}
    assert pd.read_csv(fake.path / "summary.csv")["symmetrizer.noise_scale"].dtype == float
    assert f"{UNUSED}: a key the configuration does not read" in (fake.path / "summary.md").read_text()


def test_the_dry_runs_json_holds_null_for_an_unread_key(tmp_path, capsys):
    assert main(["launch", "--dry-run", "--json", f"storage={tmp_path}", "experiment=quickstart"]) == 0
    plan = json.loads(capsys.readouterr().out)
    ga = [row for row in plan["configurations"] if row["symmetrizer.method"] == "ga"]
    assert ga and all(row["symmetrizer.noise_scale"] is None and row["unused"] == ["symmetrizer.noise_scale"]
                      for row in ga)
    assert all(isinstance(row["symmetrizer.noise_scale"], float) for row in plan["configurations"]
               if row["symmetrizer.method"] == "ps")


def test_a_trial_asha_stopped_early_is_a_result(tmp_path):
    fake = noise_experiment(tmp_path, scheduler="asha")
    fake.trial({"symmetrizer.method": "ps", "symmetrizer.noise_scale": 0.1}, "TERMINATED",
               [epoch_metrics(epoch, 0.8, 0) for epoch in (1, 2, 3)])
    fake.trial({"symmetrizer.method": "ps", "symmetrizer.noise_scale": 1.0}, "TERMINATED", [epoch_metrics(1, 0.5, 0)])
    fake.save_state()
    write_report(fake.path)
    experiment = load_experiment(fake.path)
    assert list(experiment.trials["state"]) == ["completed", "stopped"]
    stopped = experiment.summary[experiment.summary["symmetrizer.noise_scale"] == 1.0].iloc[0]
    assert (stopped["n_seeds"], stopped["n_stopped"]) == (1, 1)
    assert stopped["best_val_accuracy_mean"] == epoch_metrics(1, 0.5, 0)["best_val_accuracy"]
    assert "1 of them stopped early by ASHA" in (fake.path / "summary.md").read_text()
    assert experiment.trials.loc[1, "error"] in ("", None) or pd.isna(experiment.trials.loc[1, "error"])


def test_plots_draw_a_configuration_only_at_values_it_ran(tmp_path, monkeypatch):
    """GA does not read the noise scale: a dashed reference line across the axis, not a line at each noise value;
    the equivariance gap on a log axis with plain-text ticks; long numbers in legends at 3 significant digits."""
    from orchestrator import plots
    from orchestrator.aggregate import read_trials, summarize
    from orchestrator.figures import numeric_keys, short_names
    from orchestrator.records import open_experiment

    fake = noise_experiment(tmp_path)
    for method, noise, quality in (("ps", 0.1, 0.7), ("ps", 1.0, 0.8), ("ga", UNUSED, 0.6)):
        reports = [{**epoch_metrics(epoch, quality, 0), "equivariance_gap": 1e-14 if method == "ga" else 1e-12}
                   for epoch in (1, 2, 3)]
        fake.trial({"symmetrizer.method": method, "symmetrizer.noise_scale": noise}, "TERMINATED", reports)
    fake.save_state()
    folder, config = open_experiment(fake.path)
    summary = summarize(folder.path, config, read_trials(folder, config))
    assert numeric_keys(summary) == ["symmetrizer.noise_scale"]
    figures = []
    monkeypatch.setattr(plots, "save", lambda figure, file: figures.append(figure) or file)
    plots.metrics_vs_key(summary, "symmetrizer.noise_scale", tmp_path / "m.png")
    axes = {ax.get_title(): ax for ax in figures[0].axes}
    reference = [line for line in axes["best_val_accuracy (sweep metric)"].lines if line.get_linestyle() == "--"]
    assert [line.get_label() for line in reference] == ["method=ga (does not read noise_scale)"]
    gap = axes["equivariance_gap (exact: ≲ 1e-9)"]
    figures[0].canvas.draw()
    assert gap.get_yscale() == "log" and not any("$" in tick.get_text() for tick in gap.get_yticklabels())
    assert short_names(summary)("trainer.lr=0.0012994336959743964") == "trainer.lr=0.0013"
