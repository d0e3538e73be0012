"""What the driver shows while a sweep runs, and the W&B logging that must never stop it.

``Progress`` is a Ray Tune callback: one status line (done/total, the running trials with their current
epoch, pending and failed trials, an ETA from the finished trials' times, the best so far), redrawn in
place on a terminal and printed every ``interval`` seconds otherwise; every finished trial and every
failure (with its exception) gets a line of its own as it happens. ``safe_wandb``
returns ``WandbRuns`` (one W&B run per trial, grouped by experiment, written from a background
thread of the driver) or None; a W&B failure is reported once and the sweep goes on.
"""

from __future__ import annotations

import math
import queue
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from ray.tune import Callback

from orchestrator.session import import_wandb_into
from workers.schema import WandbSettings

STATES = {"RUNNING": "running", "PENDING": "pending", "TERMINATED": "done", "ERROR": "errored", "PAUSED": "paused"}
MAX_RUNNING_SHOWN = 4  # running trials listed by id and epoch; more are counted


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress(Callback):
    """A live terminal view of the sweep: done/total, the running trials with their epoch, an ETA from the
    finished trials' times, the best result so far; every finished or failed trial on its own line."""

    def __init__(self, metric: str, mode: str, stream=None, interval: float = 30.0, epochs: int | None = None):
        self.metric, self.mode, self.epochs = metric, mode, epochs
        self._stream = stream  # None: whatever sys.stdout is where the callback runs (with Ray Client, on the head)
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = 1.0 if self.live else interval
        self.best: tuple[float, dict] | None = None
        self.start = time.monotonic()
        self.last_print = 0.0
        self.counts: dict[str, int] = {}
        self.total: int | None = None
        self.running: list[tuple[str, float, float]] = []  # (trial id, epoch reached, epochs)
        self.durations: list[float] = []  # seconds of each trial finished in this session

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info: Any) -> None:
        self.total = total_num_samples

    @property
    def stream(self):
        """Looked up at each use rather than kept: Tune pickles its callbacks (Ray Client runs them on the head,
        where this process's stdout cannot be unpickled)."""
        return self._stream or sys.stdout

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best[0] if self.mode == "min" else value > self.best[0]

    def eta(self) -> float | None:
        """Seconds left: the mean time of the trials finished so far times the work left (pending trials and the
        unfinished epochs of running ones), spread over the trials running at once; None before any finished."""
        if not self.durations:
            return None
        running = max(1, len(self.running), self.counts.get("running", 0))
        left = self.counts.get("pending", 0) + sum(1 - min(1.0, epoch / epochs) if epochs else 1.0
                                                   for _, epoch, epochs in self.running)
        if self.total is not None:
            left += max(0, self.total - sum(self.counts.values()))  # trials the search has not created yet
        return sum(self.durations) / len(self.durations) * left / running

    def line(self) -> str:
        done, failed = self.counts.get("done", 0), self.counts.get("errored", 0)
        total = self.total if self.total is not None else sum(self.counts.values())
        parts = [f"{done}/{total} done"]
        if self.running:
            shown = [f"{trial} epoch {epoch:g}" + (f"/{epochs:g}" if epochs else "")
                     for trial, epoch, epochs in self.running[:MAX_RUNNING_SHOWN]]
            more = len(self.running) - MAX_RUNNING_SHOWN
            parts.append(f"{len(self.running)} running ({', '.join(shown)}{f', +{more}' if more > 0 else ''})")
        elif self.counts.get("running"):
            parts.append(f"{self.counts['running']} running")
        parts.append(f"{self.counts.get('pending', 0)} pending")
        if failed:
            parts.append(f"{failed} failed")
        eta = self.eta()
        parts.append("ETA " + (_clock(eta) if eta is not None else "after the first trial"))
        best = "no result yet"
        if self.best is not None:
            params = ", ".join(f"{k}={v}" for k, v in self.best[1].items())
            best = f"best {self.metric} = {self.best[0]:.4g}" + (f" ({params})" if params else "")
        return f"[{_clock(time.monotonic() - self.start)}] {', '.join(parts)} | {best}"

    def show(self, event: str | None = None) -> None:
        if self.live:
            if event:
                self.stream.write("\r\033[K" + event + "\n")
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write((event + "\n" if event else "") + self.line() + "\n")
        self.stream.flush()
        self.last_print = time.monotonic()

    def _epochs(self, trial) -> float | None:
        value = trial.config.get("trainer.epochs", self.epochs)
        return float(value) if isinstance(value, (int, float)) else None

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.counts = {}
        self.running = []
        for trial in trials:
            state = STATES.get(trial.status, trial.status.lower())
            self.counts[state] = self.counts.get(state, 0) + 1
            if state == "running":
                epoch = (getattr(trial, "last_result", None) or {}).get("epoch", 0)
                self.running.append((trial.trial_id, float(epoch), self._epochs(trial)))
        if time.monotonic() - self.last_print >= self.interval:
            self.show()

    def on_trial_result(self, iteration: int, trials: list, trial, result: Mapping[str, Any], **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and self._better(float(value)):
            self.best = (float(value), dict(trial.config))

    def _leaves(self, trial, state: str) -> None:
        """``trial`` stopped running (Tune updates its status after the callbacks): count it as ``state``."""
        if any(entry[0] == trial.trial_id for entry in self.running):
            self.running = [entry for entry in self.running if entry[0] != trial.trial_id]
            self.counts["running"] = max(0, self.counts.get("running", 0) - 1)
            self.counts[state] = self.counts.get(state, 0) + 1

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._leaves(trial, "done")
        seconds = (getattr(trial, "last_result", None) or {}).get("time_total_s")
        if isinstance(seconds, (int, float)):
            self.durations.append(float(seconds))
        self.show(f"finished {_describe(trial)}" + (f" in {_clock(seconds)}" if isinstance(seconds, (int, float))
                                                     else ""))

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.show(f"failed {_describe(trial)}: {_error_line(trial)}; retrying from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._leaves(trial, "errored")
        self.show(f"FAILED {_describe(trial)}: {_error_line(trial)}; no retries left (symsweep resume continues it)")


def _describe(trial) -> str:
    params = ", ".join(f"{k}={v}" for k, v in trial.config.items())
    return f"{trial.trial_id}" + (f" [{params}]" if params else "")


def _error_line(trial) -> str:
    """The exception of a failed trial as one line ("Type: message"), from Tune's error file."""
    from orchestrator.records import ANSI, EXCEPTION_LINE

    try:
        lines = [ANSI.sub("", line).strip() for line in Path(trial.error_file).read_text().splitlines()]
    except (OSError, TypeError):
        return "see its error file"
    found = [line for line in lines if EXCEPTION_LINE.match(line)]
    return found[-1][:200] if found else "see its error file"


def safe_wandb(wandb_settings: WandbSettings, experiment: str, directory: Path) -> Callback | None:
    """One W&B run per trial (offline unless a project is named); None when disabled or not installed.
    ``wandb_settings`` is the checked ``logging.wandb`` section (the sweep plan's)."""
    mode = wandb_settings.mode or ("online" if wandb_settings.project else "offline")
    if not wandb_settings.enabled or mode == "disabled":
        return None
    folder = directory / "wandb" / WANDB_TEMPORARY  # when no Session imported W&B into its scratch folder (a
    if "wandb" not in sys.modules:  # cluster): in the experiment, one driver at a time; a killed one's are cleared
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    try:
        import_wandb_into(str(folder))
    except ImportError as err:  # W&B is never required
        print(f"symsweep: W&B logging off ({err})", file=sys.stderr)
        return None
    directory.mkdir(parents=True, exist_ok=True)
    options = {"project": wandb_settings.project or "symsweep", "group": experiment, "mode": mode,
               "dir": str(directory)}
    if wandb_settings.entity:
        options["entity"] = wandb_settings.entity
    return WandbRuns(options)


WANDB_TEMPORARY = ".tmp"  # below the experiment's wandb/: the folders W&B makes on import, on a cluster


class WandbRuns(Callback):
    """One W&B run per trial (id = Tune's trial id, so a resumed trial continues its run), written by
    one background thread of the driver through one W&B service process.

    Ray's ``WandbLoggerCallback`` starts a logging actor (a Python process) and a W&B service per
    trial; on a small machine those take their CPU from the trials (benchmarks/orchestration_overhead.py
    measured the same 16-trial sweep 2.1× slower with it). Here a run costs a fraction of a second of
    the driver's time, and the Tune loop never waits for W&B: hooks only queue work. Any W&B error
    is reported once; logging then stops, the sweep does not."""

    SKIP = {"done", "pid", "timestamp", "should_checkpoint"}

    def __init__(self, options: Mapping[str, Any], finish_timeout: float = 120.0):
        self.options = dict(options)
        self.finish_timeout = finish_timeout
        self.__setstate__(self.__getstate__())

    def __getstate__(self) -> dict:  # Tune pickles its callbacks with the run config: no thread, no queue
        return {"options": self.options, "finish_timeout": self.finish_timeout}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.failed = False
        self.runs: dict[str, Any] = {}  # the W&B thread's open runs
        self._opened: set[str] = set()  # trials whose run the driver has asked for
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    # -- Tune hooks (driver thread): queue only --------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self._open(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._open(trial)  # a trial restored by `resume` reports without starting here
        self._submit("log", trial.trial_id, self.metrics(result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, 0)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, 1)

    def on_experiment_end(self, trials, **info):
        self.close()

    @classmethod
    def metrics(cls, result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
        """The result's numbers (nested dicts flattened with '/'), without Tune's bookkeeping and config."""
        out: dict[str, float] = {}
        for key, value in result.items():
            if key in cls.SKIP or key == "config":
                continue
            if isinstance(value, Mapping):
                out.update(cls.metrics(value, f"{prefix}{key}/"))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{prefix}{key}"] = value
        return out

    def close(self) -> None:
        """Finish every open run and wait (at most ``finish_timeout``) for W&B to write them."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(self.finish_timeout)
        if self._thread.is_alive():
            print(f"symsweep: W&B was still writing after {self.finish_timeout:g} s; its runs may be incomplete "
                  "(the sweep's own results are not affected)", file=sys.stderr)
        self._thread = None

    # -- the W&B thread -------------------------------------------------------------------------------
    def _open(self, trial) -> None:
        if trial.trial_id not in self._opened:
            self._opened.add(trial.trial_id)
            self._submit("open", trial.trial_id, (str(trial), dict(trial.config)))

    def _finish(self, trial, exit_code: int) -> None:
        if trial.trial_id in self._opened:
            self._opened.discard(trial.trial_id)
            self._submit("finish", trial.trial_id, exit_code)

    def _submit(self, kind: str, trial_id: str, payload) -> None:
        if self.failed:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="symsweep-wandb", daemon=True)
            self._thread.start()
        self._queue.put((kind, trial_id, payload))

    def _work(self) -> None:
        wandb = None
        while (task := self._queue.get()) is not None:
            if self.failed:
                continue
            try:
                if wandb is None:
                    import wandb
                self._apply(wandb, *task)
            except Exception as err:  # noqa: BLE001 - W&B must never stop a sweep
                self.failed = True
                print(f"symsweep: W&B logging stopped after an error ({type(err).__name__}: {err}); "
                      "the sweep continues", file=sys.stderr)
        for run in self.runs.values():  # trials still open when the sweep ended (interrupted)
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass
        self.runs.clear()

    def _apply(self, wandb, kind: str, trial_id: str, payload) -> None:
        if kind == "open":
            name, config = payload
            settings = wandb.Settings(console="off", silent=True, save_code=False, disable_git=True,
                                      x_disable_stats=True)
            self.runs[trial_id] = wandb.init(id=trial_id, name=name, config=config, resume="allow",
                                             reinit="create_new", settings=settings, **self.options)
        elif kind == "log" and payload:
            self.runs[trial_id].log(payload)
        elif kind == "finish":
            self.runs.pop(trial_id).finish(exit_code=payload)
