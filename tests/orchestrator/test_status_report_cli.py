"""The text output of ``symsweep status`` and ``symsweep report`` (what a person reads), on the fake
sweep of ``fakes.sweep_experiment`` in every state a sweep leaves behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.orchestrator.fakes import FakeExperiment, base_config, sweep_experiment


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return sweep_experiment(tmp_path_factory.mktemp("cli") / "fake")


def test_status_text_names_the_counts_and_the_best_trial(sweep, capsys):
    assert main(["status", str(sweep)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["10 trial(s): 6 completed, 1 errored, 1 interrupted, 1 pending, 1 unfinished",  # no driver
                     f"1 interrupted: no symsweep launch or resume runs this experiment (Ray Tune's state still says "
                     f"running); continue it with: symsweep resume {sweep}",
                     "highest best_val_accuracy = 0.9 (completed trial abcde_00001: symmetrizer.method=ps, "
                     "symmetrizer.noise_scale=0.1, trainer.seed=1)"]


def test_status_text_before_any_result(tmp_path, capsys):
    fake = FakeExperiment(tmp_path / "new", base_config(tmp_path, {"symmetrizer.noise_scale": {"grid": [1.0]}}))
    fake.trial({"symmetrizer.noise_scale": 1.0, "trainer.seed": 0}, "PENDING", [], directory=False)
    fake.save_state()
    assert main(["status", str(fake.path)]) == 0
    assert capsys.readouterr().out.splitlines() == ["1 trial(s): 1 pending", "no best_val_accuracy reported yet"]


def test_status_json_is_the_same_state(sweep, capsys):
    assert main(["status", str(sweep), "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["best"]["trial_id"] == "abcde_00001" and state["metric"] == "best_val_accuracy"


def test_report_text_prints_the_summary_and_what_it_wrote(sweep, capsys):
    assert main(["report", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# fake\n\n10 trials (6 completed, 1 errored, 1 running, 1 pending, 1 unfinished)")
    assert "| ps | 0.1 | 2 | 0.85 ± 0.07071 |" in out
    assert out.rstrip().endswith(f"in {sweep}")
    assert "10 trial(s) (6 completed, 1 errored, 1 running, 1 pending, 1 unfinished); wrote 5 file(s)" in out


def test_status_and_report_of_a_missing_directory_exit_2(tmp_path, capsys):
    for command in ("status", "report"):
        assert main([command, str(tmp_path / "missing")]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"symsweep {command}: error: ") and "does not exist" in error
