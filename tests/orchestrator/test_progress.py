"""WandbRuns: one W&B run per trial written from the driver's background thread (a fake ``wandb``
module records the calls), never stopping the sweep."""

from __future__ import annotations

import pickle
import sys
import types

import pytest

from orchestrator.progress import WandbRuns, safe_wandb


class FakeRun:
    def __init__(self, log, **kwargs):
        self.calls, self.kwargs = log, kwargs
        log.append(("init", kwargs["id"], kwargs["config"]))

    def log(self, metrics):
        self.calls.append(("log", self.kwargs["id"], metrics))

    def finish(self, exit_code=0):
        self.calls.append(("finish", self.kwargs["id"], exit_code))


class Trial:
    def __init__(self, trial_id, config):
        self.trial_id, self.config = trial_id, config

    def __str__(self):
        return f"train_{self.trial_id}"


@pytest.fixture
def fake_wandb(monkeypatch):
    calls = []
    module = types.SimpleNamespace(Settings=lambda **kw: kw, init=lambda **kw: FakeRun(calls, **kw))
    monkeypatch.setitem(sys.modules, "wandb", module)
    return module, calls


def test_one_run_per_trial_with_its_metrics_and_exit_code(fake_wandb, tmp_path):
    _, calls = fake_wandb
    callback = safe_wandb({"enabled": True}, "exp", tmp_path)
    assert isinstance(callback, WandbRuns) and callback.options["mode"] == "offline"
    callback = pickle.loads(pickle.dumps(callback))  # Tune pickles its callbacks
    a, b = Trial("t_0", {"lr": 0.1}), Trial("t_1", {"lr": 0.2})
    callback.on_trial_start(0, [], a)
    callback.on_trial_start(0, [], b)
    callback.on_trial_result(0, [], a, {"val_mse": 0.5, "done": False, "config": {"lr": 0.1}, "hostname": "h",
                                        "nested": {"x": 2}, "training_iteration": 1})
    callback.on_trial_complete(0, [], a)
    callback.on_trial_error(0, [], b)
    callback.on_experiment_end([])
    assert calls == [("init", "t_0", {"lr": 0.1}), ("init", "t_1", {"lr": 0.2}),
                     ("log", "t_0", {"val_mse": 0.5, "nested/x": 2, "training_iteration": 1}),
                     ("finish", "t_0", 0), ("finish", "t_1", 1)]


def test_a_result_of_a_restored_trial_opens_its_run_and_open_runs_are_finished_at_the_end(fake_wandb, tmp_path):
    _, calls = fake_wandb
    callback = safe_wandb({"enabled": True, "project": "p"}, "exp", tmp_path)
    assert callback.options["mode"] == "online" and callback.options["group"] == "exp"
    trial = Trial("t_3", {})
    callback.on_trial_result(0, [], trial, {"val_mse": 1.0})
    callback.on_experiment_end([])
    assert calls == [("init", "t_3", {}), ("log", "t_3", {"val_mse": 1.0}), ("finish", "t_3", 1)]


def test_a_wandb_error_is_reported_once_and_logging_stops(fake_wandb, tmp_path, capsys):
    module, calls = fake_wandb

    def refuse(**kwargs):
        raise RuntimeError("no API key")

    module.init = refuse
    callback = safe_wandb({"enabled": True}, "exp", tmp_path)
    for index in range(3):
        callback.on_trial_start(0, [], Trial(f"t_{index}", {}))
    callback.on_experiment_end([])
    assert capsys.readouterr().err.count("W&B logging stopped after an error (RuntimeError: no API key)") == 1
    assert callback.failed and calls == []


def test_disabled_wandb_gives_no_callback(tmp_path):
    assert safe_wandb({"enabled": False}, "exp", tmp_path) is None
    assert safe_wandb({"enabled": True, "mode": "disabled"}, "exp", tmp_path) is None
