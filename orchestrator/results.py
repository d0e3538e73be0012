"""An experiment as pandas DataFrames: the Python way to read what a sweep produced.

    from orchestrator.results import load_experiment

    experiment = load_experiment("runs/quickstart")   # <storage>/<name>, during or after the sweep
    experiment.trials        # one row per trial (trials.csv): state, swept values, last and best_* metrics
    experiment.summary       # one row per configuration (summary.csv): mean and std over the seeds
    experiment.comparisons   # sweep.compare (compare.csv): paired differences, std errors, 95 % intervals
    experiment.curves        # one row per trial and report: the learning curves (epoch, train/val metrics)
    experiment.eval_samples  # metric against evaluation samples N per configuration (eval_samples.csv)

Two experiments side by side: ``orchestrator.comparison.compare_experiments``.
``orchestrator.api.launch(...)`` runs a sweep from Python and returns the same ``Experiment``.

Every table is built from the same rows as the files ``symsweep report`` writes (``write_report``, below,
writes them from the same ``Experiment``), so the two never disagree. Loading writes nothing.

Reading a folder someone else wrote is safe: everything is read through ``orchestrator.folder`` (inside the
folder only, no link followed, bounded, no code run); what was left out as damaged is in
``experiment.folder.skipped``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.aggregate import (
    Summary,
    expand_unused,
    summarize,
    summary_rows,
    summary_table,
    swept_keys,
    trials_table,
    write_csv,
    write_summary_csv,
    write_trials_csv,
)
from orchestrator.analyses import REGISTRY, Analyses, Analysis, Context
from orchestrator.analyses.compare import Compare, Comparison
from orchestrator.folder import Folder, one_line
from orchestrator.records import TrialRecord, open_experiment, read_trials
from orchestrator.samples import SamplesPoint, samples_markdown, samples_points, samples_table


@dataclass
class Experiment:
    """One experiment directory, read once; the DataFrames are built on first use."""

    folder: Folder  # where it was read, and what was skipped there
    config: dict[str, Any]
    records: list[TrialRecord]
    result: Summary  # the configurations, their statistics, the sweep metric and mode
    analyses: Analyses = field(default_factory=Analyses)  # what the sweep asked for beyond the summary
    found: dict[type[Analysis], list] = field(default_factory=dict)  # their results, by kind
    points: list[SamplesPoint] = field(default_factory=list)
    outcome: int | None = None  # ``orchestrator.api.launch``: the run's exit status (0, 1, 130); None when loaded

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def compared(self) -> list[Comparison]:
        return self.found.get(Compare, [])

    @cached_property
    def trials(self) -> pd.DataFrame:
        return _frame(trials_table(self.config, self.records))

    @cached_property
    def summary(self) -> pd.DataFrame:
        return _frame(summary_rows(self.result))

    @cached_property
    def comparisons(self) -> pd.DataFrame:
        return self.table("compare")

    @cached_property
    def eval_samples(self) -> pd.DataFrame:
        return _frame(samples_table(self.result, self.points))

    def table(self, key: str) -> pd.DataFrame:
        """The table of the analysis configured as ``sweep.<key>`` (``compare``, ``derived``, ``loglog`` or a
        registered one): what its CSV holds; empty (with its columns) when the sweep did not ask for it."""
        if key not in REGISTRY:
            raise ValueError(f"{key!r} is not an analysis; allowed: {', '.join(REGISTRY)}")
        kind = REGISTRY[key]
        return _frame(kind.table(self.result, self.found.get(kind, [])))

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


def load_experiment(experiment_dir: str | os.PathLike | Folder) -> Experiment:
    """Read an experiment directory (a clear ValueError when it is not one)."""
    from workers import plugins

    plugins.load()  # analyses registered by researchers' modules (SYMSWEEP_PLUGINS) compute their results too
    folder, config = open_experiment(experiment_dir)
    records = read_trials(folder, config)
    result = summarize(folder.path, config, records)
    expanded = expand_unused(result, config)  # a configuration run once for an unused key pairs with each value
    context = Context(domains={}, metrics=None, metric=result.metric, mode=result.mode)
    analyses = Analyses.from_sweep(config.get("sweep") or {}, context, checked=False)
    return Experiment(folder, config, records, result, analyses, analyses.compute(expanded), samples_points(result))


def report_markdown(experiment: Experiment) -> str:
    """``summary.md``: the summary table, then each analysis's section and the evaluation-sample curves."""
    summary = experiment.result
    sections = [summary_table(summary)]
    members = experiment.analyses.kinds()
    for kind, found in experiment.found.items():  # an analysis the sweep asked for says why it has no result
        sections.append(kind.markdown(summary, found) if found else "".join(
            one_line(f"{analysis.line()}: no result; {analysis.why_empty(summary)}.") + "\n\n"
            for analysis in members.get(kind, [])).rstrip("\n") + "\n")
    sections.append(samples_markdown(experiment.points, summary))
    return "\n".join(section for section in sections if section)


def summary_markdown(experiment_dir: str | os.PathLike) -> str:
    """The whole ``summary.md`` of an experiment directory, as ``write_report`` writes it."""
    return report_markdown(load_experiment(experiment_dir))


def write_report(source: str | os.PathLike | Experiment) -> dict[str, Any]:
    """Write trials.csv, summary.csv, summary.md, each analysis's CSV (written as soon as the sweep asks for it,
    before any result), eval_samples.csv (when trials reported sample-count curves) and plots/*.png into the
    experiment directory (read here unless ``source`` is already loaded)."""
    from orchestrator.plots import write_plots  # matplotlib only when plotting

    experiment = source if isinstance(source, Experiment) else load_experiment(source)
    folder, config, trials, summary = experiment.folder, experiment.config, experiment.records, experiment.result
    path = folder.path
    files = [write_trials_csv(path / "trials.csv", config, trials), write_summary_csv(path / "summary.csv", summary),
             folder.write_text("summary.md", report_markdown(experiment))]
    expanded = expand_unused(summary, config)
    for kind, found in experiment.found.items():
        files.append(write_csv(path / kind.file, *kind.table(expanded, found)))
    if experiment.points:  # (like the analyses: a configuration run once for an unused key, at each of its values)
        files.append(write_csv(path / "eval_samples.csv", *samples_table(expanded, samples_points(expanded))))
    files += write_plots(expanded, path / "plots", experiment.analyses, experiment.found, runs=summary)
    return {"trials": len(trials), "by_state": summary.by_state, "configurations": len(summary.configurations),
            "files": [str(file) for file in files]}
