"""``symsweep resume`` of an experiment whose files hold every planned trial completed: nothing to do, said in one
line, exit 0, and Ray is not started (decided from the folder and the plan, ``plan.n_trials``)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.orchestrator.fakes import FakeExperiment

TINY = ["task=nbody", "task.train_size=40", "task.eval_size=20", "group=sn_e", "model.widths=[16]",
        "trainer.epochs=2", "symmetrizer.method=ps,ga"]


def experiment(root: Path, states: list[str], overrides: tuple[str, ...] = ()) -> Path:
    """The files a sweep of PS and GA over two epochs leaves, the trials in ``states`` (Tune's statuses)."""
    from orchestrator.config import compose
    from orchestrator.plan import validate

    plan = validate(compose([f"storage={root}", "name=done", *TINY, *overrides]))
    fake = FakeExperiment(root / "done", plan.config)
    for method, status in zip(("ps", "ga"), states):
        epochs = 2 if status == "TERMINATED" else 1
        fake.trial({"symmetrizer.method": method}, status,
                   [{"epoch": epoch, "best_val_mse": 1.0 / epoch} for epoch in range(1, epochs + 1)])
    fake.save_state()
    (fake.path / "tuner.pkl").write_bytes(pickle.dumps({}))  # what check_restorable reads (never unpickled)
    return fake.path


@pytest.fixture
def ray_started(monkeypatch) -> list:
    """Every way to Ray from `resume` goes through run_experiment: record the calls instead."""
    import orchestrator.experiment

    calls = []
    monkeypatch.setattr(orchestrator.experiment, "run_experiment", lambda *args, **kwargs: calls.append(args) or 0)
    return calls


def test_a_finished_experiment_has_nothing_to_resume(tmp_path, capsys, ray_started):
    path = experiment(tmp_path, ["TERMINATED", "TERMINATED"])
    assert main(["resume", str(path)]) == 0
    assert main(["resume", str(path), "--restart-errored"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"symsweep resume: nothing to do: every planned trial completed (2 of 2); the results are in "
                      f"{path} (symsweep report {path} writes the tables again)") and out[0] == out[1]
    assert ray_started == []


def test_trials_stopped_early_by_asha_are_done_too(tmp_path, capsys, ray_started):
    path = experiment(tmp_path, ["TERMINATED", "TERMINATED"], ("trainer.epochs=4", "sweep.scheduler=asha",
                                                                "sweep.metric=best_val_mse"))
    assert main(["resume", str(path)]) == 0  # ASHA stopped both before epoch 4: as planned
    assert "nothing to do" in capsys.readouterr().out and ray_started == []


@pytest.mark.parametrize("states", [["TERMINATED", "RUNNING"], ["TERMINATED", "ERROR"], ["TERMINATED"]])
def test_an_experiment_short_of_its_plan_is_resumed(tmp_path, capsys, ray_started, states):
    path = experiment(tmp_path, states)  # a trial interrupted, failed, or never created
    assert main(["resume", str(path)]) == 0
    assert len(ray_started) == 1 and "nothing to do" not in capsys.readouterr().out
