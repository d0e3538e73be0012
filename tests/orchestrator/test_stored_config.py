"""An edited ``config.json`` is refused on resume, naming each key that changed with both values; keys that
cannot change results are accepted with ``--allow-changed`` (and recorded), others never. No Ray: the check
runs before anything starts."""

from __future__ import annotations

import json

import pytest

from orchestrator.cli import main
from orchestrator.config import compose
from orchestrator.stored_config import RECORD, changed_keys, checked_config, save_config
from workers.schema import changes_results


@pytest.fixture
def ran(monkeypatch) -> list:
    """``run_experiment`` replaced by a recorder: a resume that passes every check before Ray records its plan."""
    import orchestrator.experiment

    plans: list = []
    monkeypatch.setattr(orchestrator.experiment, "run_experiment", lambda plan, *a, **k: plans.append(plan) or 0)
    return plans


@pytest.fixture
def experiment(tmp_path, ran):
    """A launched experiment (its Tune files present)."""
    import pickle

    config = compose([f"storage={tmp_path}", "name=edited", "task=nbody", "group=sn_e"])
    path = tmp_path / "edited"
    path.mkdir()
    save_config(config, path)
    (path / "tuner.pkl").write_bytes(pickle.dumps({"a": 1}))
    (path / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    return path


def edit(path, section: str, key: str, value) -> None:
    config = json.loads((path / "config.json").read_text())
    config[section][key] = value
    (path / "config.json").write_text(json.dumps(config, indent=2))


def resume(capsys, *argv) -> tuple[int, str]:
    code = main(["resume", *argv])
    return code, capsys.readouterr().err


def test_an_unedited_experiment_passes_and_its_record_is_untouched(experiment):
    before = (experiment / RECORD).read_bytes()
    assert checked_config(experiment)["trainer"]["lr"] == 0.001
    assert (experiment / RECORD).read_bytes() == before


def test_an_edit_that_changes_results_is_refused_naming_the_key_and_both_values(experiment, capsys):
    edit(experiment, "trainer", "lr", 0.01)
    code, err = resume(capsys, str(experiment))
    assert code == 2 and err.count("\n") == 1, err
    assert "trainer.lr 0.001 -> 0.01" in err and "launch a new experiment" in err
    code, err = resume(capsys, str(experiment), "--allow-changed", "trainer.lr")
    assert code == 2 and "--allow-changed trainer.lr: trainer.lr can change what the trials compute" in err


def test_an_operational_edit_needs_allow_changed_and_is_then_recorded(experiment, ran, capsys):
    edit(experiment, "cluster", "max_failures", 5)
    code, err = resume(capsys, str(experiment))
    assert code == 2 and "cluster.max_failures 2 -> 5" in err and "--allow-changed cluster.max_failures" in err
    code, err = resume(capsys, str(experiment), "--allow-changed", "cluster.max_failures")
    assert code == 0 and err == "" and ran[0].cluster.max_failures == 5
    record = json.loads((experiment / RECORD).read_text())
    assert record["config"]["cluster"]["max_failures"] == 5
    assert [(h["key"], h["from"], h["to"]) for h in record["history"]] == [("cluster.max_failures", 2, 5)]
    assert checked_config(experiment)["cluster"]["max_failures"] == 5  # the next resume needs no flag


def test_a_deleted_or_damaged_record_is_refused(experiment, capsys):
    (experiment / RECORD).write_text("{not json")
    code, err = resume(capsys, str(experiment))
    assert code == 2 and RECORD in err
    (experiment / RECORD).unlink()
    code, err = resume(capsys, str(experiment))
    assert code == 2 and "cannot be ruled out" in err


def test_added_and_removed_keys_count_as_edits():
    assert changed_keys({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == {"a.c": (None, 2)}
    assert changed_keys({"a": {"b": 1}, "name": "x"}, {"a": {}, "name": "y"}) == {"a": (None, {}), "a.b": (1, None)}


@pytest.mark.parametrize("key", ["cluster.max_failures", "cluster.address", "cluster.num_cpus", "cluster.dashboard",
                                 "sweep.max_concurrent", "logging.progress", "logging.wandb.mode"])
def test_keys_that_cannot_change_results(key):
    assert not changes_results(key)


@pytest.mark.parametrize("key", ["trainer.lr", "trainer.threads", "cluster.gpus_per_trial", "cluster.cpus_per_trial",
                                 "sweep.seeds", "sweep.params", "task.train_size", "model.widths", "logging",
                                 "trainer.lr.x"])
def test_keys_that_can_change_results(key):
    assert changes_results(key)
