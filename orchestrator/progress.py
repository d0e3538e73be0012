"""What the driver shows while a sweep runs.

``Progress`` is a Ray Tune callback: one status line (elapsed time, done/total, running, pending and failed trials,
an ETA, the best result so far over the whole experiment, the running trials' epochs). On a terminal the line is
redrawn in place every second (``\\r``, the line, clear to its end), cut to the terminal's width so that it never
wraps; anywhere else (a log file, a pipe, ``ray job logs``) a plain line is printed every ``interval`` seconds,
without control characters. Every finished trial and every failure (with its exception) gets a line of its own as it
happens. Trials are named by their swept values (``label``: ``ps η=1 N=8 seed=0``), as their W&B runs are
(``orchestrator.wandb_runs``).
"""

from __future__ import annotations

import heapq
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from ray.tune import Callback

from workers import UNUSED

STATES = {"RUNNING": "running", "PENDING": "pending", "TERMINATED": "done", "ERROR": "errored", "PAUSED": "paused"}
MAX_RUNNING_SHOWN = 4  # running trials whose epoch is shown; more are counted
LIVE_EVERY_S = 1.0  # redraws of the line on a terminal
ETA_SMOOTHING_S = 20.0  # time constant over which the shown ETA follows a changed estimate
WIDTH_FALLBACK = 100  # columns when a terminal does not say its width

# Short names of the common swept keys in trial labels (a value alone: the key is obvious from it)
ALIASES = {
    "symmetrizer.method": "", "group.name": "", "model.name": "", "task.name": "", "remul.balance": "",
    "symmetrizer.noise_scale": "η", "symmetrizer.train_samples": "N", "symmetrizer.eval_samples": "N_eval",
    "symmetrizer.temperature": "τ", "symmetrizer.entropy_weight": "λ", "symmetrizer.sinkhorn_iters": "iters",
    "remul.alpha": "α", "remul.beta": "β", "group.dim": "d", "group.order": "k", "trainer.lr": "lr",
    "trainer.seed": "seed", "trainer.epochs": "epochs", "trainer.batch_size": "batch", "task.train_size": "n_train",
}
SEED_KEY = "trainer.seed"


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def label(values: Mapping[str, Any], seed: bool = True) -> str:
    """A trial's swept values in a few characters: ``ps η=1 N=8 seed=0`` (``ALIASES`` for the common keys, the
    last part of the dotted key for the others; a key the configuration does not read, "—", is left out).
    ``seed=False`` leaves the seed out: the name of the configuration the seeds share."""
    from orchestrator.folder import one_line

    parts = []
    for key, value in values.items():
        if value == UNUSED or (key == SEED_KEY and not seed):
            continue
        alias = ALIASES.get(key, key.rsplit(".", 1)[-1])
        parts.append(_value(value) if alias == "" else f"{alias}={_value(value)}")
    return one_line(" ".join(parts))


def _terminal_width(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size((WIDTH_FALLBACK, 24)).columns


class Progress(Callback):
    """A live view of the sweep: done/total, running, pending and failed trials, a smoothed ETA, the best result
    so far (the experiment's files read at the start, so a resumed sweep keeps the best of before), and a line for
    every finished or failed trial.

    ``total``: the trials the plan runs (else Tune's count); ``experiment``: the experiment directory, read once
    for the results of an earlier run; ``interval``: seconds between lines when the stream is not a terminal;
    ``clock``: seconds (tests pass their own)."""

    def __init__(self, metric: str, mode: str, stream=None, interval: float = 30.0, epochs: int | None = None,
                 total: int | None = None, experiment: str | os.PathLike | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.metric, self.mode, self.epochs = metric, mode, epochs
        self._stream = stream  # None: whatever sys.stdout is where the callback runs (with Ray Client, on the head)
        self.interval = interval
        self.total = total
        self.experiment = None if experiment is None else str(experiment)
        self.clock = clock
        self.best: tuple[float, dict] | None = None
        self.start = clock()
        self.last_print = -math.inf
        self.counts: dict[str, int] = {}
        self.running: list[tuple[str, float, float | None]] = []  # (trial id, epoch reached, epochs)
        self.durations: list[float] = []  # seconds of each finished trial (also those finished before a resume)
        self.started: dict[str, float] = {}  # running trial -> when it started, on this clock (its time before too)
        self.slots = 0  # the most trials seen running at once: how many run side by side
        self.shown_eta: float | None = None
        self.eta_at = 0.0

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info: Any) -> None:
        if self.total is None:
            self.total = total_num_samples
        self.read_experiment()

    @property
    def stream(self):
        """Looked up at each use rather than kept: Tune pickles its callbacks (Ray Client runs them on the head,
        where this process's stdout cannot be unpickled)."""
        return self._stream or sys.stdout

    @property
    def live(self) -> bool:
        """Whether the stream is a terminal (the line is redrawn in place)."""
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty and isatty())
        except (OSError, ValueError):
            return False

    # -- what the line says -----------------------------------------------------------------------------------
    def read_experiment(self) -> None:
        """The best result the experiment's files already hold (trials of an earlier run, before a resume): a view
        must never stop the sweep, so an unreadable folder just starts from nothing."""
        if not self.experiment:
            return
        try:
            from orchestrator.records import load_trials

            for record in load_trials(self.experiment):
                for report in record.history:
                    self._consider(report.get(self.metric), record.params)
        except Exception:  # noqa: BLE001 - see the docstring
            pass

    def _consider(self, value: Any, params: Mapping[str, Any]) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        if self.best is None or (value < self.best[0] if self.mode == "min" else value > self.best[0]):
            self.best = (float(value), dict(params))

    def estimate(self, now: float) -> float | None:
        """Seconds left, unsmoothed: the finished trials' mean duration for each trial still to run, and for each
        running one the mean less the time it has run (at least the share of its epochs left), placed on the
        slots that run side by side (each next trial on the slot that frees first); None before any finished."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        slots = max(1, self.slots, len(self.running))
        busy = []
        for trial_id, epoch, epochs in self.running:
            share = 1 - min(1.0, epoch / epochs) if epochs else 1.0
            busy.append(max(mean - (now - self.started.get(trial_id, now)), mean * share))
        finish = sorted(busy) + [0.0] * (slots - len(busy))
        waiting = self.counts.get("pending", 0) + self.counts.get("paused", 0)
        if self.total is not None:
            waiting += max(0, self.total - sum(self.counts.values()))  # trials the search has not created yet
        if waiting > 100_000:  # too many to place one by one: the same on average
            return (sum(finish) + waiting * mean) / slots
        heapq.heapify(finish)
        for _ in range(waiting):
            heapq.heapreplace(finish, finish[0] + mean)
        return max(finish, default=0.0)

    def eta(self) -> float | None:
        """Seconds left as shown: counts down with the clock and follows a changed estimate (a trial finished
        faster or slower than the mean, one more running) over ``ETA_SMOOTHING_S`` instead of jumping to it."""
        now = self.clock()
        raw = self.estimate(now)
        if raw is None:
            return None
        if self.shown_eta is None or raw == 0:
            self.shown_eta = raw
        else:
            predicted = max(0.0, self.shown_eta - (now - self.eta_at))
            self.shown_eta = predicted + (raw - predicted) * (1 - math.exp(-(now - self.eta_at) / ETA_SMOOTHING_S))
        self.eta_at = now
        return self.shown_eta

    def line(self) -> str:
        """The status line, most important first (a terminal cuts it at its width from the end)."""
        done, failed = self.counts.get("done", 0), self.counts.get("errored", 0)
        known = sum(self.counts.values())  # a stopping rule (orchestrator.stopping) adds trials beyond the plan's
        total = max(self.total, known) if self.total is not None else known
        running = max(len(self.running), self.counts.get("running", 0))
        parts = [f"{done}/{total} done", f"{running} running", f"{self.counts.get('pending', 0)} pending"]
        if failed:
            parts.append(f"{failed} failed")
        eta = self.shown_eta
        parts.append(f"ETA {_clock(eta)}" if eta is not None else "ETA after the first trial")
        if self.best is not None:
            word = "lowest" if self.mode == "min" else "highest"
            where = label(self.best[1])
            parts.append(f"{word} {self.metric} {self.best[0]:.4g}" + (f" ({where})" if where else ""))
        else:
            parts.append(f"no {self.metric} yet")
        if self.running:
            epochs = [f"{epoch:g}" + (f"/{total_epochs:g}" if total_epochs else "")
                      for _, epoch, total_epochs in self.running[:MAX_RUNNING_SHOWN]]
            more = len(self.running) - MAX_RUNNING_SHOWN
            parts.append("epochs " + ", ".join(epochs) + (f", +{more}" if more > 0 else ""))
        return f"[{_clock(self.clock() - self.start)}] " + " · ".join(parts)

    def show(self, event: str | None = None) -> None:
        """Print ``event`` on a line of its own (if any), then the status line: in place on a terminal, cut to its
        width; a plain line elsewhere."""
        from orchestrator.folder import one_line

        line = one_line(self.line())
        if self.live:
            self.stream.write("\r" + (one_line(event) + "\033[K\n" if event else "") + self._fit(line) + "\033[K")
        else:
            self.stream.write((one_line(event) + "\n" if event else "") + line + "\n")
        self.stream.flush()
        self.last_print = self.clock()

    def _fit(self, line: str) -> str:
        """``line`` cut to the terminal's width (its last column left free: some terminals wrap there)."""
        width = max(20, _terminal_width(self.stream) - 1)
        return line if len(line) <= width else line[:width - 1] + "…"

    # -- Tune's hooks -------------------------------------------------------------------------------------------
    def _epochs(self, trial) -> float | None:
        value = trial.config.get("trainer.epochs", self.epochs)
        return float(value) if isinstance(value, (int, float)) else None

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = self.clock()
        self.counts, self.running, durations = {}, [], []
        for trial in trials:
            state = STATES.get(trial.status, trial.status.lower())
            self.counts[state] = self.counts.get(state, 0) + 1
            result = getattr(trial, "last_result", None) or {}
            if state == "running":
                self.running.append((trial.trial_id, float(result.get("epoch", 0)), self._epochs(trial)))
                if trial.trial_id not in self.started:  # a resumed trial has run for time_total_s already
                    self.started[trial.trial_id] = now - float(result.get("time_total_s") or 0)
            elif state == "done" and isinstance(result.get("time_total_s"), (int, float)):
                durations.append(float(result["time_total_s"]))
        self.durations = durations or self.durations
        self.started = {trial_id: self.started[trial_id] for trial_id, _, _ in self.running}
        self.slots = max(self.slots, len(self.running))
        self.eta()
        if now - self.last_print >= (LIVE_EVERY_S if self.live else self.interval):
            self.show()

    def on_trial_result(self, iteration: int, trials: list, trial, result: Mapping[str, Any], **info: Any) -> None:
        self._consider(result.get(self.metric), trial.config)

    def _leaves(self, trial, state: str) -> None:
        """``trial`` stopped running (Tune updates its status after the callbacks): count it as ``state``."""
        if any(entry[0] == trial.trial_id for entry in self.running):
            self.running = [entry for entry in self.running if entry[0] != trial.trial_id]
            self.counts["running"] = max(0, self.counts.get("running", 0) - 1)
            self.counts[state] = self.counts.get(state, 0) + 1
        self.eta()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        result = getattr(trial, "last_result", None) or {}
        seconds = result.get("time_total_s")
        if isinstance(seconds, (int, float)):
            self.durations.append(float(seconds))
        self._leaves(trial, "done")
        value = result.get(self.metric)
        score = f", {self.metric} {value:.4g}" if isinstance(value, (int, float)) else ""
        took = f" in {_clock(seconds)}" if isinstance(seconds, (int, float)) else ""
        self.show(f"finished {_describe(trial)}{took}{score}")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.show(f"failed {_describe(trial)}: {_error_line(trial)}; retrying from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._leaves(trial, "errored")
        error = _error_line(trial)
        repeats = error.split(":")[0].endswith("DeterministicFailure")  # Tune's error file names it with its module
        then = ("not retried: a retry repeats it (change the settings and launch a new experiment)" if repeats
                else "no retries left (symsweep resume continues it)")
        self.show(f"FAILED {_describe(trial)}: {error}; {then}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.live:  # end the line drawn in place, so that what follows starts on a line of its own
            self.stream.write("\r" + self._fit(self.line()) + "\033[K\n")
            self.stream.flush()


def _describe(trial) -> str:
    name = label(trial.config)
    return f"{name} [{trial.trial_id}]" if name else trial.trial_id


def _error_line(trial) -> str:
    """The exception of a failed trial as one line ("Type: message"), from Tune's error file."""
    from orchestrator.records import ANSI, EXCEPTION_LINE

    try:
        lines = [ANSI.sub("", line).strip() for line in Path(trial.error_file).read_text().splitlines()]
    except (OSError, TypeError):
        return "see its error file"
    found = [line for line in lines if EXCEPTION_LINE.match(line)]
    return found[-1][:200] if found else "see its error file"
