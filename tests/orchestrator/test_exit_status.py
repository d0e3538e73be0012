"""The exit status of ``launch``/``resume`` comes from the experiment's files, not from what Ray Tune returns:
0 only when every planned trial completed on disk (or, under ASHA, was stopped early on purpose)."""

from __future__ import annotations

import pytest

from orchestrator.config import compose
from orchestrator.experiment import _outcome
from orchestrator.plan import validate
from orchestrator.records import TrialRecord
from workers.trial import DETERMINISTIC


def record(index: int, state: str, error: str = "") -> TrialRecord:
    return TrialRecord(trial_id=f"abcde_{index:05d}", dirname=f"trainable_abcde_{index:05d}", params={}, state=state,
                       history=[], last={}, error=error, num_failures=0)


@pytest.fixture
def config(tmp_path):
    return validate(compose([f"storage={tmp_path}", "task=nbody", "group=sn_e", "symmetrizer.method=ga,ps",
                             "sweep.seeds=2"]))


def test_every_planned_trial_completed_is_success(config, tmp_path, capsys):
    assert _outcome(config, tmp_path, [record(i, "completed") for i in range(4)], "hint") == 0
    assert capsys.readouterr().out == ""


def test_trials_that_never_started_or_lost_their_metrics_are_a_failure(config, tmp_path, capsys):
    """What Tune's ResultGrid misses: trials it could not fetch metrics for (no ``errors``), and planned trials
    of which no file exists at all."""
    records = [record(0, "completed"), record(1, "completed"), record(2, "errored", "OutOfMemoryError: killed")]
    assert _outcome(config, tmp_path, records, "symsweep resume X") == 1
    out = capsys.readouterr().out
    assert "2 of 4 planned trial(s) did not complete (1 errored, 1 never started)" in out
    assert "continue them from their last checkpoint with: symsweep resume X" in out


def test_a_failure_that_a_resume_repeats_does_not_suggest_resume(config, tmp_path, capsys):
    records = [record(i, "completed") for i in range(3)] + [record(3, "errored", "NonFiniteLoss: ...")]
    (tmp_path / records[3].dirname).mkdir()
    (tmp_path / records[3].dirname / DETERMINISTIC).write_text("NonFiniteLoss: ...")
    assert _outcome(config, tmp_path, records, "symsweep resume X") == 1
    out = capsys.readouterr().out
    assert "launch a new experiment" in out and "symsweep resume" not in out


def test_asha_stops_trials_early_on_purpose(tmp_path):
    asha = validate(compose([f"storage={tmp_path}", "task=nbody", "group=sn_e", "symmetrizer.method=ga,ps",
                             "sweep.scheduler=asha"]))
    assert _outcome(asha, tmp_path, [record(0, "completed"), record(1, "stopped")], "hint") == 0
    assert _outcome(asha, tmp_path, [record(0, "completed"), record(1, "errored", "x")], "hint") == 1
