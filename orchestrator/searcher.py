"""The Tune ``Searcher`` of a sweep with a stopping rule (``sweep.compare.until``): the trials of
``orchestrator.stopping.Design``, suggested on demand from the completed results. A module of its own because
it imports Ray Tune (``stopping`` stays importable without Ray: the exit status and the dry run read it)."""

from __future__ import annotations

import math
import pickle
from typing import Any, Iterable

from ray.tune.search import Searcher

from orchestrator.plan import SEED_KEY
from orchestrator.stopping import Design, Result, identity


class StoppingSearcher(Searcher):
    """Suggests the design's trials on demand from the completed results (see the module's docstring)."""

    def __init__(self, design: Design, metric: str, max_concurrent: int | None = None):
        super().__init__(metric=None, mode=None)  # the rule reads its own metric; Tune's metric stays unset
        self.design, self.metric_name, self.max_concurrent = design, metric, max_concurrent
        self.trials: dict[str, tuple[int, int]] = {}  # trial id -> (point, seed)
        self.live: set[str] = set()
        self.results: Result = {}

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.max_concurrent and len(self.live) >= self.max_concurrent:
            return None
        started = set(self.trials.values())
        needs = self.design.needs(self.results)
        for k in range(max(needs, default=0)):  # seed-major: the first seeds of every pair complete first
            for point, need in enumerate(needs):
                key = (point, self.design.seed(k))
                if k < need and key not in started:
                    self.trials[trial_id] = key
                    self.live.add(trial_id)
                    return {**self.design.points[point], SEED_KEY: key[1]}
        return None if self.live else self.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trials:
            return
        self.live.discard(trial_id)
        value = (result or {}).get(self.metric_name)
        ok = not error and isinstance(value, (int, float)) and math.isfinite(value)
        self.results[self.trials[trial_id]] = float(value) if ok else None

    def reconcile(self, trials: Iterable[Any]) -> None:
        """After a restore, Tune's trials are the truth (its state file and this searcher's are saved one after the
        other, so a killed driver can leave either one newer): a trial Tune holds that this checkpoint does not
        know is adopted (never suggested twice), a trial this checkpoint suggested that Tune does not hold is
        forgotten (suggested again), and the trials that finished after the checkpoint are told."""
        trials = list(trials)
        held = {trial.trial_id for trial in trials}
        for trial_id in [t for t in self.trials if t not in held]:
            self.live.discard(trial_id)
            key = self.trials.pop(trial_id)
            if key not in self.trials.values():
                self.results.pop(key, None)
        for trial in trials:
            if trial.trial_id not in self.trials:
                point = self.design.index.get(identity(trial.config))
                if point is None:
                    continue
                self.trials[trial.trial_id] = (point, trial.config.get(SEED_KEY, self.design.base))
                self.live.add(trial.trial_id)
            if trial.trial_id in self.live and trial.status in ("TERMINATED", "ERROR"):
                self.on_trial_complete(trial.trial_id, trial.last_result, error=trial.status == "ERROR")

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump({"trials": self.trials, "live": self.live, "results": self.results}, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            state = pickle.load(file)
        self.trials, self.live, self.results = state["trials"], state["live"], state["results"]
