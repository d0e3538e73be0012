"""``workers.trial.trainable``, the bridge between Ray Tune and the loop, with Tune's side faked in-process.

``FakeTune`` stands in for what a trial calls of Ray Tune: the trial's staging directory, the checkpoint Tune
hands a restarted trial (``tune.get_checkpoint()``) and ``tune.report``, which persists like Tune does: the
metrics as a line of ``result.json`` and the checkpoint copied to ``checkpoint_<n>`` in the trial's directory
of the experiment. A worker killed mid-training is a ``Killed`` raised from ``report``; the restarted trial is
a second call of ``trainable`` on the same directories. The sweeps themselves (Ray, Tune's retries, killed
processes) are tests/orchestrator/test_faults.py.
"""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest

from tests.train.helpers import NBODY_MLP, TIMING_KEYS, assert_same_metrics, collector, compose_trial
from workers.train import run
from workers.trial import DETERMINISTIC, DeterministicFailure, trainable

EPOCHS = 5
NAME = "trainable_abcde_00000_0_method=ga"


class Killed(BaseException):
    """The worker process died (SIGKILL): no handler of the trial runs."""


class FakeTune:
    def __init__(self, tmp_path: Path, checkpoint: Path | None = None, kill_after: int | None = None):
        self.staging = tmp_path / "staging" / NAME  # Tune's trial directory on the worker
        self.own = tmp_path / "experiment" / NAME  # the trial's directory in the experiment's storage
        self.staging.mkdir(parents=True, exist_ok=True)
        self.own.mkdir(parents=True, exist_ok=True)
        self.scratch = tmp_path / "scratch"  # the trial's temporary files
        self.checkpoint, self.kill_after = checkpoint, kill_after
        self.reports: list[dict] = []
        if checkpoint is None:  # Tune restarts a trial without a checkpoint with an empty result.json
            (self.own / "result.json").write_text("")

    def install(self, monkeypatch) -> None:
        import ray
        from ray import tune

        context = types.SimpleNamespace(get_trial_dir=lambda: str(self.staging))
        runtime = types.SimpleNamespace(get_node_id=lambda: "node-1", get_assigned_resources=lambda: {"CPU": 1})
        checkpoint = tune.Checkpoint.from_directory(str(self.checkpoint)) if self.checkpoint else None
        monkeypatch.setattr(tune, "get_context", lambda: context)
        monkeypatch.setattr(tune, "get_checkpoint", lambda: checkpoint)
        monkeypatch.setattr(tune, "report", self.report)
        monkeypatch.setattr(ray, "get_runtime_context", lambda: runtime)

    def report(self, metrics: dict, checkpoint=None) -> None:
        if checkpoint is not None:
            shutil.copytree(checkpoint.path, self.own / f"checkpoint_{len(list(self.own.glob('checkpoint_*'))):06d}")
        with (self.own / "result.json").open("a") as file:
            file.write(json.dumps(metrics) + "\n")
        self.reports.append(metrics)
        if self.kill_after is not None and metrics["epoch"] >= self.kill_after:
            raise Killed

    def run_trial(self, monkeypatch, config: dict, params: dict | None = None) -> None:
        import tempfile

        self.install(monkeypatch)
        monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)  # the trial makes its scratch folder the default
        trainable(params or {}, config, {"cpus": 1, "gpus": 0}, str(self.own.parent), scratch=str(self.scratch))

    def recorded(self) -> list[dict]:
        return [json.loads(line) for line in (self.own / "result.json").read_text().splitlines() if line.strip()]


def comparable(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in TIMING_KEYS and key != "node_id"}


@pytest.fixture
def config():
    return compose_trial(*NBODY_MLP, f"trainer.epochs={EPOCHS}", "trainer.threads=1")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, one_thread_per_module):
    reports, report = collector()
    run(compose_trial(*NBODY_MLP, f"trainer.epochs={EPOCHS}", "trainer.threads=1"), report,
        tmp_path_factory.mktemp("uninterrupted"))
    return [comparable(metrics) for metrics, _ in reports]


@pytest.mark.parametrize("restart", ["with_tunes_checkpoint", "tune_lags_and_the_newest_is_truncated",
                                     "without_a_checkpoint_from_tune"])
def test_a_killed_trial_continues_from_its_checkpoint_and_reports_every_epoch_once(restart, config, uninterrupted,
                                                                                     tmp_path, monkeypatch, capsys):
    """Was ``test_sweep_e2e.py::test_a_killed_trial_is_resumed_from_its_checkpoint`` (a whole sweep, its worker
    SIGKILLed, then ``symsweep resume``). The restarted trial continues from the newest checkpoint of its own
    directory that loads — also one newer than Tune's saved state (a driver killed before Tune saved it), and
    the previous one when the newest is truncated — reports only what ``result.json`` lacks, and ends with every
    epoch once, equal to the uninterrupted run. Real worker kills and Tune's retries: test_faults.py's soak."""
    killed = FakeTune(tmp_path, kill_after=3)
    with pytest.raises(Killed):
        killed.run_trial(monkeypatch, config)
    assert [m["epoch"] for m in killed.recorded()] == [1, 2, 3]
    saved = sorted(killed.own.glob("checkpoint_*"))
    assert len(saved) == 3

    if restart == "with_tunes_checkpoint":
        tune_checkpoint, resumed_from = saved[-1], 3
    elif restart == "tune_lags_and_the_newest_is_truncated":
        state = saved[-1] / "state.pt"
        state.write_bytes(state.read_bytes()[:1000])
        tune_checkpoint, resumed_from = saved[0], 2
    else:
        tune_checkpoint, resumed_from = None, 3
    restarted = FakeTune(tmp_path, checkpoint=tune_checkpoint)
    restarted.run_trial(monkeypatch, config)

    reported = [m["epoch"] for m in restarted.reports]
    if tune_checkpoint is None:  # Tune's result.json starts empty: the checkpoint's history is reported again
        assert reported == [1, 2, 3, 4, 5]
    else:  # only what result.json lacks
        assert reported == [4, 5]
    assert [m["epoch"] for m in restarted.recorded()] == list(range(1, EPOCHS + 1))
    for ours, reference in zip(restarted.recorded(), uninterrupted, strict=True):  # not from scratch: the same run
        assert_same_metrics(comparable(ours), reference)
    err = capsys.readouterr().err
    assert ("skipped an unusable checkpoint" in err) == (resumed_from == 2), err
    assert not list(restarted.scratch.glob("symsweep-trial-*")), "the trial's work directory is removed"


def test_a_diverging_loss_fails_once_naming_what_is_kept(config, tmp_path, monkeypatch):
    """Was ``test_faults.py::test_a_diverging_loss_fails_once_naming_what_is_kept`` in part (the sweep's part stays
    there, with a failing W&B). The failure is marked deterministic: one line naming the non-finite loss and a
    checkpoint of the trial's own directory that exists (or none), "not retried"; a retry fails at once with the
    same line without training, and Tune's retry decision says no."""
    from ray.tune.experiment.trial import Trial

    from orchestrator.recovery import no_retry_of_deterministic_failures

    config = {**config, "trainer": {**config["trainer"], "lr": 1e30}}
    first = FakeTune(tmp_path)
    with pytest.raises(DeterministicFailure) as raised:
        first.run_trial(monkeypatch, config)
    message = str(raised.value)
    assert message.startswith("NonFiniteLoss: non-finite training loss") and "not retried" in message, message
    named = [word.rstrip(";,") for word in message.split() if "checkpoint_" in word]
    assert all(Path(word).is_dir() and Path(word).parent == first.own for word in named), message
    assert named or "no checkpoint was written before it" in message
    assert "kept in" not in message  # the loop's temporary copy is never named
    assert (first.own / DETERMINISTIC).read_text().strip() == message
    assert "NonFiniteLoss" in (first.staging / "error.txt").read_text()

    retry = FakeTune(tmp_path, checkpoint=sorted(first.own.glob("checkpoint_*"))[-1] if named else None)
    monkeypatch.setattr("workers.train.run", lambda *args, **kwargs: pytest.fail("a retry trained again"))
    with pytest.raises(DeterministicFailure) as again:
        retry.run_trial(monkeypatch, config)
    assert str(again.value) == message and retry.reports == []

    monkeypatch.setattr(Trial, "should_recover", Trial.should_recover)  # restored after the test
    no_retry_of_deterministic_failures()
    failures = types.SimpleNamespace(num_failures=1)
    assert Trial.should_recover(types.SimpleNamespace(path=str(first.own), run_metadata=failures, max_failures=2)) \
        is False
    assert Trial.should_recover(types.SimpleNamespace(path=str(tmp_path), run_metadata=failures, max_failures=2))


def test_a_key_the_configuration_does_not_read_keeps_its_base_value(config, tmp_path, monkeypatch):
    """A collapsed configuration's unused key arrives as "—" (``workers.UNUSED``) and the trial runs with the base
    value; every other swept value is set."""
    from workers import UNUSED

    seen = []
    monkeypatch.setattr("workers.train.run", lambda config, *args, **kwargs: seen.append(config))
    base_noise = config["symmetrizer"]["noise_scale"]
    FakeTune(tmp_path).run_trial(monkeypatch, config, {"symmetrizer.method": "ga", "symmetrizer.noise_scale": UNUSED,
                                                       "trainer.seed": 1})
    (plan,) = seen  # the trial hands the loop its checked plan; the dict it was checked from rides along
    used = plan.config
    assert plan.symmetrizer.method == "ga" and plan.symmetrizer.noise_scale == base_noise
    assert used["symmetrizer"]["method"] == "ga" and used["trainer"]["seed"] == 1
    assert used["symmetrizer"]["noise_scale"] == base_noise
