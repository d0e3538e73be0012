"""The W&B logging of a sweep, which must never stop it.

``safe_wandb`` returns ``WandbRuns`` (one W&B run per trial, named by its swept values as the progress line names
it, grouped by experiment and configuration, carrying the trial's whole config; written from a background thread of
the driver) or None; a W&B failure is reported once and the sweep goes on.
"""

from __future__ import annotations

import queue
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

from ray.tune import Callback

from orchestrator.progress import label
from orchestrator.session import import_wandb_into
from workers.schema import WandbSettings


def symsweep_version() -> str:
    """The installed symsweep's version ("unknown" where the checkout runs without being installed)."""
    from importlib import metadata

    try:
        return metadata.version("symsweep")
    except metadata.PackageNotFoundError:
        return "unknown"


def safe_wandb(wandb_settings: WandbSettings, experiment: str, directory: Path,
               base: Mapping[str, Any] | None = None) -> Callback | None:
    """One W&B run per trial (offline unless a project is named); None when disabled or not installed.
    ``wandb_settings`` is the checked ``logging.wandb`` section (the sweep plan's); ``base`` the trial part of the
    composed config (``SweepPlan.base``), which each run records with its trial's swept values set."""
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
    return WandbRuns(options, base=base)


WANDB_TEMPORARY = ".tmp"  # below the experiment's wandb/: the folders W&B makes on import, on a cluster
WANDB_TEXT_LIMIT = 64  # characters W&B allows in a job type or a tag


class WandbRuns(Callback):
    """One W&B run per trial (id = Tune's trial id, so a resumed trial continues its run), written by
    one background thread of the driver through one W&B service process.

    A run is named by its trial's swept values (``label``: ``ps η=1 N=8 seed=0``); its ``group`` is the experiment
    and its ``job_type`` the configuration (the label without the seed), so W&B groups a configuration's seeds;
    its config is the trial's whole composed config (``base`` with the swept values set; "—" for a swept key the
    configuration does not read), the swept values once more under ``swept``, and ``symsweep`` (version,
    experiment, trial id, configuration).

    Ray's ``WandbLoggerCallback`` starts a logging actor (a Python process) and a W&B service per
    trial; on a small machine those take their CPU from the trials (benchmarks/orchestration_overhead.py
    measured the same 16-trial sweep 2.1× slower with it). Here a run costs a fraction of a second of
    the driver's time, and the Tune loop never waits for W&B: hooks only queue work. Any W&B error
    is reported once; logging then stops, the sweep does not."""

    SKIP = {"done", "pid", "timestamp", "should_checkpoint"}

    def __init__(self, options: Mapping[str, Any], finish_timeout: float = 120.0,
                 base: Mapping[str, Any] | None = None):
        self.options = dict(options)
        self.finish_timeout = finish_timeout
        self.base = dict(base or {})
        self.__setstate__(self.__getstate__())

    def __getstate__(self) -> dict:  # Tune pickles its callbacks with the run config: no thread, no queue
        return {"options": self.options, "finish_timeout": self.finish_timeout, "base": self.base}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("base", {})
        self.failed = False
        self.runs: dict[str, Any] = {}  # the W&B thread's open runs
        self._opened: set[str] = set()  # trials whose run the driver has asked for
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def run_options(self, trial_id: str, swept: Mapping[str, Any]) -> dict[str, Any]:
        """What ``wandb.init`` gets for a trial besides the experiment's options: name, job type, config."""
        from workers.settings import merge

        configuration = label(swept, seed=False)
        experiment = self.options.get("group", "")
        config = merge(self.base, swept)
        config["swept"] = dict(swept)
        config["symsweep"] = {"version": symsweep_version(), "experiment": experiment, "trial_id": trial_id,
                              "configuration": configuration}
        return {"name": label(swept) or trial_id, "job_type": (configuration or "default")[:WANDB_TEXT_LIMIT],
                "config": config}

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
            self._submit("open", trial.trial_id, dict(trial.config))

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
            settings = wandb.Settings(console="off", silent=True, save_code=False, disable_git=True,
                                      x_disable_stats=True)
            self.runs[trial_id] = wandb.init(id=trial_id, resume="allow", reinit="create_new", settings=settings,
                                             **self.run_options(trial_id, payload), **self.options)
        elif kind == "log" and payload:
            self.runs[trial_id].log(payload)
        elif kind == "finish":
            self.runs.pop(trial_id).finish(exit_code=payload)
