"""``symsweep evaluate`` on Ray: one task per trial with the trial's resources, side by side on an embedded local
Ray, writing exactly the files the sequential evaluation (``--sequential``, in this process) writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from orchestrator.cli import main
from tests.orchestrator.test_evaluate_cli import experiment  # noqa: F401 (fixture: PS and GA trials, 1 epoch)
from tests.train import one_thread  # noqa: F401 (autouse fixture)

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


def test_trials_are_evaluated_as_ray_tasks_and_write_what_the_sequential_evaluation_writes(experiment, tmp_path,  # noqa: F811
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


def test_resources_no_node_holds_are_refused_in_one_line(experiment, tmp_path, capsys):  # noqa: F811
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
