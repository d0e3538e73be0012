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
    argv = ["evaluate", str(experiment), "--eval-samples", "4,1", "--split", "test", "--repeats", "3", "--sequential"]
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


# -- on Ray: one task per trial with the trial's resources, side by side on an embedded local Ray, writing exactly
# the files the sequential evaluation (--sequential, in this process) writes
OPTIONS = ["--eval-samples", "1,3", "--split", "val,test", "--repeats", "2"]


def fresh_copy(source: Path, target: Path) -> Path:
    copy = Path(shutil.copytree(source, target))
    for old in [*copy.glob("*/eval_samples.json"), copy / "eval_samples.csv"]:
        old.unlink(missing_ok=True)
    return copy


def written(path: Path) -> dict[str, bytes]:
    """What evaluate writes: each trial's eval_samples.json, the tables, summary.md and the figures."""
    names = [*path.glob("*/eval_samples.json"), *path.glob("*.csv"), path / "summary.md", *path.glob("plots/*.png")]
    return {str(name.relative_to(path)): name.read_bytes() for name in names}


@pytest.mark.slow
def test_trials_are_evaluated_as_ray_tasks_and_write_what_the_sequential_evaluation_writes(experiment, tmp_path,
                                                                                            capsys):
    sequential, parallel = fresh_copy(experiment, tmp_path / "sequential"), fresh_copy(experiment, tmp_path / "ray")
    assert main(["evaluate", str(sequential), *OPTIONS, "--sequential"]) == 0
    alone = capsys.readouterr().out
    assert main(["evaluate", str(parallel), *OPTIONS]) == 0
    out = capsys.readouterr().out
    assert "one Ray task per trial (1 CPU(s), 0 GPU(s) each), 2 at once" in out and "Ray task" not in alone
    assert "[1/2 " in out and "[2/2 " in out  # progress: each trial as its task ends
    files = written(parallel)
    assert len([name for name in files if name.endswith("eval_samples.json")]) == 2 and "eval_samples.csv" in files
    assert files == written(sequential)  # byte for byte
    points = json.loads(next(parallel.glob("trainable_*method=ps_*/eval_samples.json")).read_text())
    assert set(points) == {"val_mse", "test_mse"} and set(points["test_mse"]) == {"1", "3"}


@pytest.mark.slow
def test_resources_no_node_holds_are_refused_in_one_line(experiment, tmp_path, capsys):
    copy = fresh_copy(experiment, tmp_path / "gpu")
    config = json.loads((copy / "config.json").read_text())
    config["cluster"] = {**config["cluster"], "gpus_per_trial": 1}  # trained on GPUs; this machine has none
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(copy), *OPTIONS]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "cluster.gpus_per_trial=1 (the experiment's) cannot be satisfied" in error
    assert "--device cpu" in error and not list(copy.glob("*/eval_samples.json"))
    assert main(["evaluate", str(copy), *OPTIONS, "--device", "cpu"]) == 0  # asks for no GPU
    assert "(1 CPU(s), 0 GPU(s) each)" in capsys.readouterr().out
