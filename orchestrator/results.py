"""An experiment as pandas DataFrames: the Python way to read what a sweep produced.

    from orchestrator.results import load_experiment

    experiment = load_experiment("runs/quickstart")   # <storage>/<name>, during or after the sweep
    experiment.trials        # one row per trial (trials.csv): state, swept values, last and best_* metrics
    experiment.summary       # one row per configuration (summary.csv): mean and std over the seeds
    experiment.comparisons   # sweep.compare (compare.csv): paired differences, std errors, 95 % intervals
    experiment.curves        # one row per trial and report: the learning curves (epoch, train/val metrics)
    experiment.eval_samples  # metric against evaluation samples N per configuration (eval_samples.csv)

Every table is built from the same rows as the file ``symsweep report`` writes (``write_report``
loads the experiment through this module), so the two never disagree. Nothing is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.aggregate import Summary, expand_unused, summarize, summary_rows, swept_keys, trials_table
from orchestrator.derived import (
    Comparison,
    SamplesPoint,
    base_seed,
    compare_spec,
    compare_table,
    comparisons,
    samples_points,
    samples_table,
)
from orchestrator.records import TrialRecord, open_experiment, read_trials


@dataclass
class Experiment:
    """One experiment directory, read once; the DataFrames are built on first use."""

    path: Path
    config: dict[str, Any]
    records: list[TrialRecord]
    result: Summary  # the configurations, their statistics, the sweep metric and mode
    compared: list[Comparison] = field(default_factory=list)
    points: list[SamplesPoint] = field(default_factory=list)

    @cached_property
    def trials(self) -> pd.DataFrame:
        return _frame(trials_table(self.config, self.records))

    @cached_property
    def summary(self) -> pd.DataFrame:
        return _frame(summary_rows(self.result))

    @cached_property
    def comparisons(self) -> pd.DataFrame:
        return _frame(compare_table(self.result, self.compared))

    @cached_property
    def eval_samples(self) -> pd.DataFrame:
        return _frame(samples_table(self.result, self.points))

    @cached_property
    def curves(self) -> pd.DataFrame:
        """One row per report of every trial: trial_id, state, swept values (with the seed), then its metrics."""
        keys = swept_keys(self.config, self.records)
        rows = [{"trial_id": trial.trial_id, "state": trial.state, **{key: trial.params.get(key) for key in keys},
                 **report} for trial in self.records for report in trial.history]
        return pd.DataFrame(rows, columns=list(dict.fromkeys(
            ["trial_id", "state", *keys, *(name for row in rows for name in row)])))


def _frame(table: tuple[list[str], list[list[Any]]]) -> pd.DataFrame:
    header, rows = table
    return pd.DataFrame(rows, columns=header)


def load_experiment(experiment_dir: str | os.PathLike) -> Experiment:
    """Read an experiment directory (a clear ValueError when it is not one)."""
    path, config = open_experiment(experiment_dir)
    records = read_trials(path, config)
    result = summarize(path, config, records)
    expanded = expand_unused(result, config)  # a configuration run once for an unused key pairs with each value
    compared = comparisons(expanded, compare_spec(config, expanded), base_seed(config))
    return Experiment(path, config, records, result, compared, samples_points(result))
