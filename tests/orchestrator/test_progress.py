"""WandbRuns: one W&B run per trial written from the driver's background thread (a fake ``wandb``
module records the calls), never stopping the sweep."""

from __future__ import annotations

import os
import pickle
import sys
import types

import pytest

from orchestrator.wandb_runs import WandbRuns, safe_wandb
from tests.orchestrator.fakes import TuneTrial
from workers.schema import WandbSettings


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
    callback = safe_wandb(WandbSettings(enabled=True), "exp", tmp_path)
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
    assert [call[:2] for call in calls] == [("init", "t_0"), ("init", "t_1"), ("log", "t_0"), ("finish", "t_0"),
                                            ("finish", "t_1")]
    assert calls[0][2]["lr"] == 0.1 and calls[1][2]["lr"] == 0.2
    assert calls[2][2] == {"val_mse": 0.5, "nested/x": 2, "training_iteration": 1}
    assert [call[2] for call in calls[3:]] == [0, 1]


def test_a_result_of_a_restored_trial_opens_its_run_and_open_runs_are_finished_at_the_end(fake_wandb, tmp_path):
    _, calls = fake_wandb
    callback = safe_wandb(WandbSettings(enabled=True, project="p"), "exp", tmp_path)
    assert callback.options["mode"] == "online" and callback.options["group"] == "exp"
    trial = Trial("t_3", {})
    callback.on_trial_result(0, [], trial, {"val_mse": 1.0})
    callback.on_experiment_end([])
    assert [call[:2] for call in calls] == [("init", "t_3"), ("log", "t_3"), ("finish", "t_3")]
    assert calls[1][2] == {"val_mse": 1.0} and calls[2][2] == 1


def test_a_wandb_error_is_reported_once_and_logging_stops(fake_wandb, tmp_path, capsys):
    module, calls = fake_wandb

    def refuse(**kwargs):
        raise RuntimeError("no API key")

    module.init = refuse
    callback = safe_wandb(WandbSettings(enabled=True), "exp", tmp_path)
    for index in range(3):
        callback.on_trial_start(0, [], Trial(f"t_{index}", {}))
    callback.on_experiment_end([])
    assert capsys.readouterr().err.count("W&B logging stopped after an error (RuntimeError: no API key)") == 1
    assert callback.failed and calls == []


def drive_a_sweep(callback, trials: int = 3) -> None:
    """Every hook Tune calls in a sweep of ``trials`` trials: start, two results, complete (one errors), end."""
    started = [Trial(f"t_{index}", {"lr": index}) for index in range(trials)]
    for trial in started:
        callback.on_trial_start(0, [], trial)
    for epoch in (1, 2):
        for trial in started:
            callback.on_trial_result(0, [], trial, {"epoch": epoch, "val_mse": 1.0 / epoch})
    for trial in started[:-1]:
        callback.on_trial_complete(0, [], trial)
    callback.on_trial_error(0, [], started[-1])
    callback.on_experiment_end([])


@pytest.mark.parametrize("failing", ["init", "log", "finish"])
def test_a_failing_wandb_never_stops_the_sweep(failing, fake_wandb, tmp_path, monkeypatch, capsys):
    """Was ``test_sweep_e2e.py::test_a_failing_wandb_never_stops_the_sweep`` (a whole sweep with online W&B and no
    login). Whichever call of the W&B client raises, no Tune hook raises, the error is said once on stderr, and W&B
    is not called again; the sweep's own results do not go through W&B. The real client without a login:
    ``test_the_real_wandb_without_a_login_stops_only_its_logging``; a sweep with it: test_faults.py."""
    module, calls = fake_wandb

    def refuse(*args, **kwargs):
        raise ConnectionError(f"W&B {failing} refused")

    if failing == "init":
        module.init = refuse
    else:
        monkeypatch.setattr(FakeRun, failing, refuse)
    callback = safe_wandb(WandbSettings(enabled=True), "exp", tmp_path)
    drive_a_sweep(callback)
    err = capsys.readouterr().err
    assert err.count("W&B logging stopped after an error") == 1 and f"W&B {failing} refused" in err, err
    assert callback.failed
    before = {"init": 0, "log": 3, "finish": 9}[failing]  # the calls before the failing one: 3 runs opened, 6 logs
    assert [kind for kind, _, _ in calls[:before]] == (["init"] * 3 + ["log"] * 6)[:before], calls
    # after the failure no run is opened or logged; the open ones are only finished, as failed, when the sweep ends
    assert all(kind == "finish" and code == 1 for kind, _, code in calls[before:]), calls


def test_the_real_wandb_without_a_login_stops_only_its_logging(tmp_path, monkeypatch, capsys):
    """Online W&B, no API key and no login (a fresh HOME): the real client refuses, the callback says so once and
    every hook still returns."""
    for name in [name for name in os.environ if name.startswith("WANDB_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    callback = safe_wandb(WandbSettings(enabled=True, mode="online"), "exp", tmp_path / "experiment")
    assert callback.options["mode"] == "online"
    drive_a_sweep(callback)
    err = capsys.readouterr().err
    assert err.count("W&B logging stopped after an error") == 1 and "API key" in err, err


def test_disabled_wandb_gives_no_callback(tmp_path):
    assert safe_wandb(WandbSettings(enabled=False), "exp", tmp_path) is None
    assert safe_wandb(WandbSettings(enabled=True, mode="disabled"), "exp", tmp_path) is None


# -- the status line -----------------------------------------------------------------------------------------
def test_status_line_counts_running_epochs_eta_and_best():
    import io

    from orchestrator.progress import Progress

    stream = io.StringIO()
    now = [0.0]
    progress = Progress("best_val_mse", "min", stream=stream, interval=1e9, epochs=10, clock=lambda: now[0])
    progress.setup(total_num_samples=6)
    done = TuneTrial("t_0", "TERMINATED", epoch=10, seconds=100.0)
    trials = [done, TuneTrial("t_1", "RUNNING", epoch=5), TuneTrial("t_2", "RUNNING", epoch=0),
              TuneTrial("t_3", "PENDING")]
    progress.on_step_end(0, trials)
    assert progress.line() == ("[00:00:00] 1/6 done · 2 running · 1 pending · ETA 00:05:00 · no best_val_mse yet · "
                               "epochs 5/10, 0/10")
    progress.on_trial_result(0, trials, done, {"best_val_mse": 0.25})
    progress.on_trial_result(0, trials, trials[1], {"best_val_mse": 0.5})  # worse: not the best
    # 2 slots: the running trials take 100 s more (the mean; none of it run yet on this clock), then the pending
    # trial and the 2 not created yet (100 s each) follow on the slot that frees first: 100 + 100 + 100 s
    assert "ETA 00:05:00 · lowest best_val_mse 0.25 (ps) · epochs" in progress.line()


def test_finished_and_failed_trials_get_their_own_lines(tmp_path):
    import io

    from orchestrator.progress import Progress

    error = tmp_path / "error.txt"
    error.write_text("Failure # 1\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
                     "NonFiniteLoss: non-finite training loss (nan) at epoch 3, step 30\n")
    stream = io.StringIO()
    progress = Progress("best_val_mse", "min", stream=stream, interval=1e9, epochs=4, clock=lambda: 0.0)
    trial = TuneTrial("t_0", "RUNNING", epoch=4, seconds=65.0)
    failing = TuneTrial("t_1", "RUNNING", epoch=3, error_file=str(error))
    progress.on_step_end(0, [trial, failing])
    trial.last_result["best_val_mse"] = 0.125
    progress.on_trial_complete(0, [], trial)
    progress.on_trial_recover(0, [], failing)
    progress.on_trial_error(0, [], failing)
    lines = stream.getvalue().splitlines()
    assert lines[1] == "finished ps [t_0] in 00:01:05, best_val_mse 0.125"
    assert lines[2].endswith("1/2 done · 1 running · 0 pending · ETA 00:01:05 · no best_val_mse yet · epochs 3/4")
    assert lines[3] == ("failed ps [t_1]: NonFiniteLoss: non-finite training loss (nan) at "
                        "epoch 3, step 30; retrying from its last checkpoint")
    assert lines[5].startswith("FAILED ps [t_1]: NonFiniteLoss") and "(symsweep resume continues it)" in lines[5]
    assert lines[6].endswith("1/2 done · 0 running · 0 pending · 1 failed · ETA 00:00:00 · no best_val_mse yet")

    # a failure the trial declared deterministic (a retry repeats it): no resume is suggested
    error.write_text("Failure # 1\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
                     "workers.trial.DeterministicFailure: NonFiniteLoss: non-finite training loss (nan) at epoch 3\n")
    diverged = TuneTrial("t_2", "RUNNING", epoch=3, error_file=str(error))
    progress.on_step_end(0, [diverged])
    progress.on_trial_error(0, [], diverged)
    (line,) = [line for line in stream.getvalue().splitlines() if line.startswith("FAILED ps [t_2]")]
    assert line.endswith("; not retried: a retry repeats it (change the settings and launch a new experiment)")
    assert "symsweep resume" not in line
