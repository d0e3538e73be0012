"""What the driver shows while a sweep runs, and the W&B logging that must never stop it.

``Progress`` is a Ray Tune callback: one status line (running / pending / done / errored, best so
far), redrawn in place on a terminal and printed on every trial event otherwise. ``safe_wandb``
returns Ray's ``WandbLoggerCallback`` (one W&B run per trial, grouped by experiment) guarded so
that a W&B failure is reported once and the sweep goes on.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from ray.tune import Callback

STATES = {"RUNNING": "running", "PENDING": "pending", "TERMINATED": "done", "ERROR": "errored", "PAUSED": "paused"}


class Progress(Callback):
    """A live terminal view of the sweep."""

    def __init__(self, metric: str, mode: str, stream=None, interval: float = 30.0):
        self.metric, self.mode = metric, mode
        self.stream = stream or sys.stdout
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = 1.0 if self.live else interval
        self.best: tuple[float, dict] | None = None
        self.start = time.monotonic()
        self.last_print = 0.0
        self.counts: dict[str, int] = {}

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best[0] if self.mode == "min" else value > self.best[0]

    def line(self) -> str:
        elapsed = int(time.monotonic() - self.start)
        clock = f"{elapsed // 3600:02d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
        counts = ", ".join(f"{self.counts.get(state, 0)} {state}" for state in ("running", "pending", "done", "errored"))
        best = "no result yet"
        if self.best is not None:
            params = ", ".join(f"{k}={v}" for k, v in self.best[1].items())
            best = f"best {self.metric} = {self.best[0]:.4g}" + (f" ({params})" if params else "")
        return f"[{clock}] {counts} | {best}"

    def show(self, event: str | None = None) -> None:
        if self.live:
            self.stream.write("\r\033[K" + self.line() + ("\n" if event else ""))
        else:
            self.stream.write(self.line() + (f"  <- {event}" if event else "") + "\n")
        self.stream.flush()
        self.last_print = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.counts = {}
        for trial in trials:
            state = STATES.get(trial.status, trial.status.lower())
            self.counts[state] = self.counts.get(state, 0) + 1
        if time.monotonic() - self.last_print >= self.interval:
            self.show()

    def on_trial_result(self, iteration: int, trials: list, trial, result: Mapping[str, Any], **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and self._better(float(value)):
            self.best = (float(value), dict(trial.config))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.show(f"finished {_describe(trial)}")

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.show(f"failed {_describe(trial)} (retried from its last checkpoint while retries remain)")


def _describe(trial) -> str:
    params = ", ".join(f"{k}={v}" for k, v in trial.config.items())
    return f"{trial.trial_id}" + (f" [{params}]" if params else "")


def safe_wandb(settings: Mapping[str, Any], experiment: str, directory: Path) -> Callback | None:
    """Ray's W&B callback (offline unless a project is named), guarded; None when disabled."""
    mode = settings.get("mode") or ("online" if settings.get("project") else "offline")
    if not settings.get("enabled", True) or mode == "disabled":
        return None
    try:
        from ray.air.integrations.wandb import WandbLoggerCallback
    except ImportError as err:  # W&B is never required
        print(f"symsweep: W&B logging off ({err})", file=sys.stderr)
        return None
    if mode == "offline":
        os.environ["WANDB_MODE"] = "offline"
    directory.mkdir(parents=True, exist_ok=True)
    options = {"project": settings.get("project") or "symsweep", "group": experiment, "mode": mode,
               "dir": str(directory)}
    if settings.get("entity"):
        options["entity"] = settings["entity"]

    class GuardedWandb(WandbLoggerCallback):
        """Any exception of a W&B hook is reported once; logging then stops, the sweep does not."""

        failed = False

        def _guard(self, hook: str, *args, **kwargs):
            if self.failed:
                return None
            try:
                return getattr(super(), hook)(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - W&B must never stop a sweep
                self.failed = True
                print(f"symsweep: W&B logging stopped after an error ({type(err).__name__}: {err}); "
                      "the sweep continues", file=sys.stderr)
                return None

        def setup(self, *args, **kwargs):
            return self._guard("setup", *args, **kwargs)

        def on_trial_start(self, *args, **kwargs):
            return self._guard("on_trial_start", *args, **kwargs)

        def on_trial_result(self, *args, **kwargs):
            return self._guard("on_trial_result", *args, **kwargs)

        def on_trial_complete(self, *args, **kwargs):
            return self._guard("on_trial_complete", *args, **kwargs)

        def on_trial_error(self, *args, **kwargs):
            return self._guard("on_trial_error", *args, **kwargs)

        def on_experiment_end(self, *args, **kwargs):
            return self._guard("on_experiment_end", *args, **kwargs)

    return GuardedWandb(**options)
