"""The progress line as a person sees it: one line that fits the terminal and is redrawn in place, a plain log
line every so often elsewhere, an ETA that changes smoothly, the best result of the whole experiment (an earlier
run's included) in words, and trials named by their swept values."""

from __future__ import annotations

import io
import re

import pytest

from orchestrator.progress import Progress, label
from tests.orchestrator.fakes import TuneTrial, sweep_experiment
from workers import UNUSED


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def many_running(count: int = 8) -> list[TuneTrial]:
    config = {"symmetrizer.method": "ps", "symmetrizer.noise_scale": 0.1, "symmetrizer.train_samples": 8,
              "symmetrizer.temperature": 0.01, "group.name": "S_n x SE(d)", "trainer.lr": 0.000123456,
              "trainer.seed": 3}
    return [TuneTrial(f"abcde_{index:05d}", "RUNNING", epoch=index, config=config) for index in range(count)]


def test_label_names_a_trial_by_its_swept_values():
    values = {"symmetrizer.method": "ps", "symmetrizer.noise_scale": 1.0, "symmetrizer.train_samples": 8,
              "model.widths": [16, 16], "trainer.seed": 0}
    assert label(values) == "ps η=1 N=8 widths=[16,16] seed=0"
    assert label(values, seed=False) == "ps η=1 N=8 widths=[16,16]"
    assert label({"symmetrizer.method": "ga", "symmetrizer.noise_scale": UNUSED}) == "ga"  # not read: not named
    assert label({"task.name": "a\nb"}) == "a b"  # one line, whatever the value


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_on_a_terminal_the_line_is_redrawn_in_place_and_never_wider_than_it(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    stream, clock = Terminal(), Clock()
    progress = Progress("best_val_mse", "min", stream=stream, epochs=12, total=200, clock=clock)
    trials = many_running()
    progress.on_trial_result(0, trials, trials[0], {"best_val_mse": 0.012345})
    for second in range(5):
        clock.now = float(second)
        progress.on_step_end(0, trials)
    text = stream.getvalue()
    assert "\n" not in text, "a redraw never starts a new line"
    draws = text.split("\r")[1:]
    assert len(draws) == 5 and all(draw.endswith("\033[K") for draw in draws)  # once a second, cleared to the end
    for draw in draws:
        assert len(draw.removesuffix("\033[K")) < columns
    start = "[00:00:04] 0/200 done · 8 running · 0 pending · ETA after the first trial · lowest best_val_mse 0.01235"
    assert draws[-1].startswith(start[:columns - 2])  # the most important first: a narrow terminal cuts the end


def test_events_get_lines_of_their_own_above_the_redrawn_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    stream = Terminal()
    progress = Progress("best_val_mse", "min", stream=stream, epochs=12, clock=Clock())
    trial = TuneTrial("abcde_00000", "RUNNING", epoch=12, seconds=30.0, config={"symmetrizer.method": "ga"})
    progress.on_step_end(0, [trial])
    progress.on_trial_complete(0, [], trial)
    progress.on_experiment_end([])
    lines = stream.getvalue().split("\n")
    assert lines[0].endswith("\rfinished ga [abcde_00000] in 00:00:30\033[K")
    assert lines[-1] == "" and "\r[00:00:00] 1/1 done" in lines[-2]  # ended: what follows starts below it


def test_elsewhere_a_plain_line_every_interval_without_control_characters():
    stream, clock = io.StringIO(), Clock()
    progress = Progress("best_val_mse", "min", stream=stream, interval=30, epochs=12, total=8, clock=clock)
    trials = many_running(2)
    for clock.now in (0.0, 10.0, 29.0, 30.0, 45.0, 61.0):
        progress.on_step_end(0, trials)
    lines = stream.getvalue().splitlines()
    assert [line[:10] for line in lines] == ["[00:00:00]", "[00:00:30]", "[00:01:01]"]
    assert not re.search(r"[\x00-\x1f\x7f]", stream.getvalue().replace("\n", ""))


def test_the_eta_changes_smoothly_as_trials_finish_and_start():
    """Trials of 100 s, then a few of 300 s, two at a time with a moment between one ending and the next starting:
    the shown ETA never moves by more than a few seconds per second, and still comes to the estimate."""
    stream, clock = io.StringIO(), Clock()
    progress = Progress("best_val_mse", "min", stream=stream, interval=1e9, epochs=10, total=12, clock=clock)
    durations = [100.0] * 4 + [300.0] * 8
    trials = [TuneTrial(f"t_{index:05d}", "PENDING") for index in range(12)]
    started: dict[int, float] = {}
    shown = []
    for second in range(0, 1600):
        clock.now = float(second)
        for index, trial in enumerate(trials):  # each ends after its duration; the next waits a second to start
            if trial.status == "RUNNING" and second - started[index] >= durations[index]:
                trial.status, trial.last_result = "TERMINATED", {"epoch": 10, "time_total_s": durations[index]}
                progress.on_trial_complete(0, trials, trial)
            running = sum(t.status == "RUNNING" for t in trials)
            if trial.status == "PENDING" and running < 2 and index not in started and second % 7 != 0:
                trial.status, started[index] = "RUNNING", float(second)
            if trial.status == "RUNNING":
                trial.last_result = {"epoch": int(10 * (second - started[index]) / durations[index]),
                                     "time_total_s": second - started[index]}
        progress.on_step_end(0, trials)
        eta = progress.shown_eta
        if eta is not None:
            shown.append((second, eta))
    steps = [abs(later - earlier) for (_, earlier), (_, later) in zip(shown, shown[1:])]
    assert max(steps) < 12, f"the ETA jumped by {max(steps):.0f} s in one second"
    assert progress.estimate(clock.now) == 0 and shown[-1][1] == 0


def test_the_best_so_far_includes_what_the_experiment_holds_from_before(tmp_path):
    """A resumed sweep starts its line with the best result of the trials run before (read from the folder)."""
    path = sweep_experiment(tmp_path / "fake")  # best_val_accuracy (max): 0.9, ps η=0.1 seed=1
    progress = Progress("best_val_accuracy", "max", stream=io.StringIO(), interval=1e9, experiment=path,
                        clock=Clock())
    progress.setup(total_num_samples=12)
    assert progress.best == (0.9, {"symmetrizer.method": "ps", "symmetrizer.noise_scale": 0.1, "trainer.seed": 1})
    progress.on_trial_result(0, [], TuneTrial("x", "RUNNING", config={"symmetrizer.method": "ga"}),
                             {"best_val_accuracy": 0.85})  # worse than before the resume
    line = progress.line()
    assert "highest best_val_accuracy 0.9 (ps η=0.1 seed=1)" in line and "best best_" not in line


def test_an_unreadable_experiment_leaves_the_view_empty_not_broken(tmp_path):
    progress = Progress("best_val_mse", "min", stream=io.StringIO(), experiment=tmp_path / "missing", clock=Clock())
    progress.setup()
    assert progress.best is None and "no best_val_mse yet" in progress.line()
