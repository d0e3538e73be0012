"""``sweep.compare`` with ``until: resolved``: seeds added inside Ray Tune until every comparison is resolved.

``Design`` is the rule on the plan's points: which configurations are compared (each value of the compared key
with the reference configurations whose other swept values are equal, a key one of them does not read standing
for every value) and how many seeds each configuration needs given the results so far: ``sweep.seeds`` to
start with, then one more seed at a time to both sides of every pair whose confidence sequence
(``orchestrator.analyses.sequential``) is still undecided, up to ``max_seeds``. A reference shared by several
pairs runs as many seeds as its most demanding pair.

``orchestrator.searcher.StoppingSearcher`` is that design as a Tune ``Searcher``: ``suggest`` hands out
(point, seed) trials in seed order as the design asks for them (None while a result is awaited, or while
``sweep.max_concurrent`` trials run; ``Searcher.FINISHED`` when nothing runs and nothing more is asked), and its
state travels in Tune's searcher checkpoint, so ``symsweep resume`` continues the same rule (``reconcile`` feeds
it the trials that finished after its last checkpoint; ``tune_patches.rebase_restored_searchers`` calls it).

``planned_trials`` recomputes the design's decision from the experiment's files: the exit status compares it
with the finished trials (``experiment._outcome``).
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping

from orchestrator.analyses.sequential import Rule
from orchestrator.plan import SEED_KEY, SweepPlan

Result = dict  # (point index, seed) -> the metric (float), or None: the trial failed or reported no finite value


def identity(values: Mapping[str, Any]) -> str:
    """A configuration's swept values (without the seed) as text, equal for a point and its trials' params."""
    return json.dumps({k: v for k, v in values.items() if k != SEED_KEY}, sort_keys=True, default=str)


class Design:
    def __init__(self, points: list[dict[str, Any]], key: str, reference: Any, rule: Rule, seeds: tuple[int, ...],
                 metric: str = ""):
        self.points, self.rule, self.initial, self.base = points, rule, len(seeds), seeds[0]
        self.metric = metric  # the compared metric (sweep.compare.metric, by default the sweep's)
        self.index = {identity(values): i for i, values in enumerate(points)}
        references = [r for r, values in enumerate(points) if values.get(key) == reference]
        self.pairs = [(i, r) for i, values in enumerate(points) if key in values and values[key] != reference
                      for r in references if _same_others(values, points[r], key)]

    @classmethod
    def of(cls, plan: SweepPlan) -> Design | None:
        rule = plan.rule
        if rule is None:
            return None
        spec = next(a.spec for a in plan.analyses.chosen if a.key == "compare")
        return cls([dict(point.values) for point in plan.points], spec["key"], spec["reference"], rule, plan.seeds,
                   spec.get("metric") or plan.metric)

    def seed(self, k: int) -> int:
        return self.base + k

    def differences(self, pair: tuple[int, int], results: Result) -> tuple[list[float], bool]:
        """(the pair's differences over the seeds in order, up to the first seed not done on both sides; whether
        that seed failed on a side: the pair can go no further)."""
        out, k = [], 0
        while True:
            a, b = (results.get((i, self.seed(k)), math.nan) for i in pair)
            if a is None or b is None:
                return out, True
            if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
                return out, False
            out.append(a - b)
            k += 1

    def needs(self, results: Result) -> list[int]:
        """Seeds each point needs now (the design's decision so far)."""
        need = [self.initial] * len(self.points)
        for pair in self.pairs:
            differences, blocked = self.differences(pair, results)
            asked = self.rule.seeds_needed(differences, self.initial)
            if blocked:  # a failed seed ends the pair where it failed (the failed trial counts as run)
                asked = max(self.initial, len(differences) + 1)
            for i in pair:
                need[i] = max(need[i], asked)
        return need

    def results_of(self, records: Iterable[Any]) -> Result:
        """The results the experiment's files hold (``records.TrialRecord``s): the compared metric of a completed
        trial, None for a trial that ended without it; a trial still to run or interrupted has none yet."""
        results: Result = {}
        for record in records:
            point, seed = self.index.get(identity(record.params)), record.params.get(SEED_KEY, self.base)
            if point is None or record.state in ("pending", "running", "unfinished"):  # no result yet
                continue
            value = record.last.get(self.metric)
            ok = record.state == "completed" and isinstance(value, (int, float)) and math.isfinite(value)
            results[(point, seed)] = float(value) if ok else None
        return results

    def at_most(self) -> int:
        compared = {i for pair in self.pairs for i in pair}
        return sum(self.rule.max_seeds if i in compared else self.initial for i in range(len(self.points)))


def _same_others(one: Mapping[str, Any], other: Mapping[str, Any], key: str) -> bool:
    """Whether two points are compared: their other swept values are equal, a key one of them does not read
    (``UNUSED``) standing for every value (as ``aggregate.expand_unused`` pairs them in compare.csv)."""
    from workers import UNUSED

    return all(one.get(k) == other.get(k) or UNUSED in (one.get(k), other.get(k))
               for k in set(one) | set(other) if k not in (key, SEED_KEY))


def planned_trials(plan: SweepPlan, records: Iterable[Any]) -> int:
    """The trials the plan asks for: ``n_trials``, or with a stopping rule what the rule asks given the
    experiment's files (each completed trial's metric; a finished trial without it counts as failed)."""
    design = Design.of(plan)
    return plan.n_trials if design is None else sum(design.needs(design.results_of(records)))
