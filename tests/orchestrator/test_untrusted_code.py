"""Reading someone else's results never runs code from them, also now that a config can name code
(``model.target``, ``task.target``, ``group.target``): ``evaluate`` and ``equivariance --checkpoint`` build a
checkpoint's model only with ``--allow-code`` when its config names code; ``report``/``status``/``load_experiment``
never import it (the tables read the directions config.json recorded). A crafted checkpoint naming ``os:system``
as a group function runs nothing."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.models.helpers import FLAT_NET
from tests.orchestrator.fakes import FakeExperiment, base_config
from tests.train.helpers import NBODY_MLP, collector, compose_trial
from workers.train import run

pytestmark = pytest.mark.usefixtures("one_thread")

NETS = FLAT_NET
NBODY = tuple(o for o in NBODY_MLP if not o.startswith("model"))


@pytest.fixture
def experiment(tmp_path, monkeypatch):
    """A finished GA trial of a model of its own, as a sweep leaves it: result.json and its final checkpoint."""
    (tmp_path / "trusted_nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    params = {"symmetrizer.method": {"grid": ["ga"]}}
    fake = FakeExperiment(tmp_path / "exp", base_config(tmp_path, params, epochs=1, seeds=1, task="nbody"))
    reports, report = collector()
    trial = compose_trial(*NBODY, "trainer.epochs=1", "symmetrizer.method=ga", "model.target=trusted_nets:FlatNet")
    run(trial, report, tmp_path / "ga")
    fake.trial({"symmetrizer.method": "ga"}, "TERMINATED", [metrics for metrics, _ in reports])
    trial_dir = next(fake.path.glob("trainable_*method=ga_*"))
    shutil.rmtree(trial_dir / "checkpoint_000000")
    shutil.move(str(tmp_path / "ga" / "checkpoint_000001"), trial_dir / "checkpoint_000001")
    fake.save_state()
    yield fake.path, trial_dir / "checkpoint_000001"
    sys.modules.pop("trusted_nets", None)


def test_evaluate_builds_a_model_of_its_own_only_when_allowed(experiment, capsys):
    path, _ = experiment
    argv = ["evaluate", str(path), "--eval-samples", "1", "--split", "test", "--repeats", "1", "--sequential"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("symsweep evaluate: error: trial abcde_00000's checkpoint names code of its own "
                          "(model.target='trusted_nets:FlatNet'), which building the model would import and run; "
                          "allowed: --allow-code if you trust where it comes from") and "\n" not in err
    assert not (path / "eval_samples.csv").exists()
    assert main([*argv, "--allow-code"]) == 0
    assert (path / "eval_samples.csv").is_file()


def test_equivariance_of_a_checkpoint_naming_code_needs_allow_code(experiment, capsys):
    _, checkpoint = experiment
    assert main(["equivariance", "--checkpoint", str(checkpoint), "--samples", "2", "--batch", "2"]) == 2
    assert "names code of its own (model.target='trusted_nets:FlatNet')" in capsys.readouterr().err
    assert main(["equivariance", "--checkpoint", str(checkpoint), "--samples", "2", "--batch", "2", "--json",
                 "--allow-code"]) == 0


def test_a_crafted_group_function_is_never_called(tmp_path, capsys):
    import torch

    marker = tmp_path / "ran"
    trial = compose_trial(*NBODY_MLP, "trainer.epochs=1")
    trial["group"] = {"target": "os:system", "command": f"touch {marker}"}
    torch.save({"config": trial, **{key: {} for key in ("model", "optimizer", "scheduler", "rng", "loop")}},
               tmp_path / "state.pt")
    assert main(["equivariance", "--checkpoint", str(tmp_path / "state.pt")]) == 2
    assert "group.target='os:system'" in capsys.readouterr().err and not marker.exists()


def test_the_tables_of_an_experiment_naming_code_never_import_it(tmp_path, capsys):
    config = base_config(tmp_path, {"symmetrizer.method": {"grid": ["ga"]}}, epochs=1, seeds=1)
    config["model"] = {"target": "never_imported_lab.nets:Net"}
    config["task"] = {"target": "never_imported_lab.data:Task"}
    fake = FakeExperiment(tmp_path / "exp", config)
    fake.trial({"symmetrizer.method": "ga"}, "TERMINATED", [{"epoch": 1, "best_val_accuracy": 0.5}])
    fake.save_state()
    assert main(["report", str(fake.path)]) == 0 and main(["status", str(fake.path)]) == 0
    assert "never_imported_lab" not in sys.modules and Path(fake.path / "summary.md").is_file()
