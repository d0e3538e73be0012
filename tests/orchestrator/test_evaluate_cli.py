"""``symsweep evaluate``: finished trials' best models at several evaluation sample counts, without
retraining, on an experiment directory whose trials hold real checkpoints of the training loop."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.orchestrator.fakes import FakeExperiment, base_config
from tests.train.helpers import (
    NBODY_MLP,
    collector,
    compose_trial,
)
from workers.train import run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """PS and GA, one epoch each, as a sweep leaves them: result.json and the final checkpoint."""
    root = tmp_path_factory.mktemp("evaluate")
    params = {"symmetrizer.method": {"grid": ["ps", "ga"]}}
    fake = FakeExperiment(root / "exp", base_config(root, params, epochs=1, seeds=1, task="nbody"))
    for method in ("ps", "ga"):
        reports, report = collector()
        run(compose_trial(*NBODY_MLP, "trainer.epochs=1", f"symmetrizer.method={method}"), report, root / method)
        fake.trial({"symmetrizer.method": method}, "TERMINATED", [metrics for metrics, _ in reports])
        trial_dir = next(fake.path.glob(f"trainable_*method={method}_*"))
        shutil.rmtree(trial_dir / "checkpoint_000000")
        shutil.move(str(root / method / "checkpoint_000001"), trial_dir / "checkpoint_000001")
    fake.save_state()
    return fake.path


def rows(path: Path) -> list[dict[str, str]]:
    with (path / "eval_samples.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_evaluate_writes_points_table_and_plot(experiment, capsys):
    argv = ["evaluate", str(experiment), "--eval-samples", "4,1", "--split", "test", "--repeats", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 completed trial(s), N = 1, 4, 3 draw(s) each, splits test" in out
    assert "symmetrizer.method=ps): test_mse: N=1 " in out and "| ga | test_mse |" in out
    table = rows(experiment)
    assert [(r["symmetrizer.method"], r["eval_samples"]) for r in table] == [("ga", "1"), ("ga", "4"),
                                                                            ("ps", "1"), ("ps", "4")]
    assert all(float(r["draw_std"]) > 0 for r in table)  # fresh noise per draw: a spread
    assert (experiment / "plots" / "eval_samples_test_mse.png").is_file()
    saved = json.loads(next(experiment.glob("trainable_*method=ps_*/eval_samples.json")).read_text())
    assert set(saved) == {"test_mse"} and set(saved["test_mse"]) == {"1", "4"}

    assert main(argv) == 0  # deterministic: the same points again
    assert rows(experiment) == table


@pytest.mark.parametrize("options, message", [(["--eval-samples", "0,2"], "--eval-samples='0,2'"),
                                              (["--eval-samples", "two"], "--eval-samples='two'"),
                                              (["--split", "train"], "--split=train"),
                                              (["--repeats", "0"], "--repeats=0")])
def test_bad_options_exit_2_and_write_nothing(experiment, tmp_path, capsys, options, message):
    copy = shutil.copytree(experiment, tmp_path / "copy")
    for old in copy.glob("*/eval_samples.json"):
        old.unlink()
    assert main(["evaluate", str(copy), *options]) == 2
    error = capsys.readouterr().err
    assert error.startswith("symsweep evaluate: error: ") and message in error and len(error.splitlines()) == 1
    assert not list(copy.glob("*/eval_samples.json"))


def test_not_an_experiment_exits_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "is not a symsweep experiment directory" in capsys.readouterr().err
