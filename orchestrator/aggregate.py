"""Trial records -> the per-trial table and the sweep summary.

``summarize`` groups an experiment's trials (read by ``records.py``) into configurations (swept values
without the seed: mean ± std over the completed seeds); ``trials_table``/``summary_rows`` are the rows
of ``trials.csv`` and ``summary.csv``, ``summary_table`` the Markdown table. ``results.write_report``
writes them with the derived results and plots. It works on partial and failed experiments, and the same
directory always gives byte-identical tables (rows in a stable order). Text from the folder is escaped where it
is written: one line in every Markdown cell and heading (``markdown_cell``, ``one_line``), and CSV text cells
that no spreadsheet runs as a formula (``_cell``).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from orchestrator.folder import Folder, one_line, replace_file, spreadsheet_text
from orchestrator.records import (  # noqa: F401 - read_trials and load_trials are this floor's too
    FINISHED,
    STATES,
    TrialRecord,
    count_states,
    load_trials,
    open_experiment,
    read_trials,
)
from workers import UNUSED, reporting

SEED_KEY = "trainer.seed"


@dataclass(frozen=True)
class Configuration:
    """The trials sharing one set of swept values (all seeds), and statistics over the finished ones (completed,
    or stopped early by ASHA: the best metric at the epoch reached)."""

    values: dict[str, Any]
    trials: list[TrialRecord]
    stats: dict[str, tuple[float, float]]  # metric -> (mean, std with ddof=1; 0 for one seed)

    @property
    def n_seeds(self) -> int:
        return sum(trial.state in FINISHED for trial in self.trials)

    @property
    def n_stopped(self) -> int:
        return sum(trial.state == "stopped" for trial in self.trials)

    def label(self) -> str:
        return ", ".join(f"{key}={text(value)}" for key, value in self.values.items())


@dataclass(frozen=True)
class Summary:
    """One row per configuration, sorted by the sweep metric (best first)."""

    name: str
    keys: list[str]  # swept keys without the seed
    continuous: frozenset[str]  # keys sampled from continuous domains (uniform, loguniform, randint)
    metrics: list[str]  # headline metrics, the sweep metric first
    metric: str | None
    mode: str | None  # "min" | "max"; None: the direction of the metric is unknown, rows are not ranked
    configurations: list[Configuration]
    by_state: dict[str, int]
    directions: dict[str, str] = field(default_factory=dict)  # every metric of known direction (the task's)
    unranked: str | None = None  # why the rows are not ranked by the sweep metric (its direction is unknown)
    base_seed: Any = 0  # the seed of trials that do not sweep it (sweep.seeds = 1): paired comparisons use it


# -- summarising --------------------------------------------------------------------------------------
def text(value: Any) -> str:
    """A swept value as written in tables: strings as they are, everything else as JSON."""
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _order(value: Any) -> tuple[int, float, str]:
    return (0, float(value), "") if _is_number(value) else (1, 0.0, text(value))


def swept_keys(config: Mapping[str, Any], trials: Iterable[TrialRecord]) -> list[str]:
    """``sweep.params`` keys in config order, other sampled keys found in trials, the seed last."""
    trials = list(trials)
    sweep = config.get("sweep") or {}
    keys = [key for key in sweep.get("params") or {} if key != SEED_KEY]
    keys += sorted({key for trial in trials for key in trial.params} - set(keys) - {SEED_KEY})
    seeded = (sweep.get("seeds") or 1) > 1 or any(SEED_KEY in trial.params for trial in trials)
    return keys + [SEED_KEY] * seeded


def metric_names(trials: Iterable[TrialRecord]) -> list[str]:
    """Every metric of the trials' last reports, in order of first appearance."""
    return list(dict.fromkeys(name for trial in trials for name in trial.last))


def task_of(config: Mapping[str, Any]) -> Any | None:
    """The class of the experiment's task (``task.name`` of config.json), or None when it names no task symsweep
    knows (a name from the folder only ever picks an entry of the registry; ``task.target`` is never imported) or
    its metrics follow its parameters (``task=files``: the directions config.json recorded serve instead)."""
    name = (config.get("task") or {}).get("name")
    from workers.tasks import REGISTRY, task_class

    kind = task_class(name) if isinstance(name, str) and name in REGISTRY else None
    return None if kind is None or kind.configured_metrics else kind


def sweep_metric(config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(metric, mode) as resolved at launch (``config.json``); for a config that names none (a folder made by hand),
    the same resolution from the vocabulary of its task (``workers.reporting``: the headline metric, its direction).

    A direction is never guessed from a metric's name: where config.json gives no ``sweep.mode`` and names no
    task symsweep knows (or a metric its task does not report), the mode is None; the summary is then not
    ranked and says why (``unranked``), and ``status`` names no best trial."""
    sweep = config.get("sweep") or {}
    metric, mode = sweep.get("metric"), sweep.get("mode")
    if metric and mode:
        return metric, mode
    task = task_of(config)
    if task is not None:
        metric = metric or reporting.headline(task)
        mode = mode or reporting.reported_metrics(task).get(metric)
    return metric, mode or (reporting.recorded_directions(config).get(metric) if metric else None)


def unranked(config: Mapping[str, Any], metric: str | None, mode: str | None) -> str | None:
    """Why the trials cannot be ranked (``sweep_metric`` found no metric or no direction), or None."""
    if metric is not None and mode is not None:
        return None
    task = task_of(config)
    what = f"the direction of {metric} is unknown" if metric else "no sweep metric is known"
    why = (f"task {task.name!r} does not report {metric}" if task is not None
           else f"task.name={(config.get('task') or {}).get('name')!r} is not a task symsweep knows")
    return f"{what}: config.json gives no sweep.{'mode' if metric else 'metric'} and {why}"


def headline_metrics(names: list[str], metric: str | None, task: Any | None = None) -> list[str]:
    """The sweep metric, best_* metrics, the final evaluation metrics of the task's splits (without a known task:
    those with a best_* counterpart), then ``workers.reporting.HEADLINE`` (equivariance errors, entropy, time)."""
    best = [name for name in names if name.startswith(reporting.BEST)]
    scored = (reporting.evaluation_metrics(task) if task is not None
              else {name.removeprefix(reporting.BEST) for name in best} - set(reporting.LOOP))
    chosen = best + [name for name in names if name in scored] + [name for name in reporting.HEADLINE if name in names]
    return [metric] * (metric in names) + [name for name in chosen if name != metric]


def directions(config: Mapping[str, Any], metric: str | None, mode: str | None) -> dict[str, str]:
    """The direction of every metric the experiment's task reports, the sweep metric's saved mode over it."""
    task = task_of(config)
    known = reporting.recorded_directions(config) or (dict(reporting.reported_metrics(task)) if task else {})
    if metric and mode:
        known[metric] = mode
    return known


def _stats(trials: list[TrialRecord], metrics: list[str]) -> dict[str, tuple[float, float]]:
    stats = {}
    for metric in metrics:
        values = np.array([trial.last[metric] for trial in trials if metric in trial.last], dtype=float)
        if values.size:
            stats[metric] = (float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0)
    return stats


def summarize(path: Path, config: Mapping[str, Any], trials: list[TrialRecord]) -> Summary:
    """Group trials by their swept values without the seed; mean ± std over the completed seeds."""
    keys = [key for key in swept_keys(config, trials) if key != SEED_KEY]
    names = metric_names(trials)
    metric, mode = sweep_metric(config)
    metrics = headline_metrics(names, metric, task_of(config))
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        groups.setdefault(json.dumps([text(trial.params.get(key)) for key in keys]), []).append(trial)
    configurations = [Configuration({key: members[0].params.get(key) for key in keys}, members,
                                    _stats([trial for trial in members if trial.state in FINISHED], metrics))
                      for members in groups.values()]

    def rank(configuration: Configuration) -> tuple:
        mean = configuration.stats.get(metric, (math.nan, 0.0))[0] if metric and mode else math.nan
        missing = not math.isfinite(mean)
        score = 0.0 if missing else mean if mode == "min" else -mean
        return missing, score, [_order(value) for value in configuration.values.values()]

    params = (config.get("sweep") or {}).get("params") or {}
    continuous = frozenset(key for key, domain in params.items()
                           if isinstance(domain, Mapping) and not {"grid", "choice"} & set(domain))
    return Summary(name=str(config.get("name") or path.name), keys=keys, continuous=continuous, metrics=metrics,
                   metric=metric, mode=mode, configurations=sorted(configurations, key=rank),
                   by_state=count_states(trials), directions=directions(config, metric, mode),
                   unranked=unranked(config, metric, mode), base_seed=base_seed(config))


def base_seed(config: Mapping[str, Any]) -> Any:
    """The seed of trials that do not sweep it (``sweep.seeds`` = 1): the config's ``trainer.seed`` (the
    schema's default where a saved config.json names none)."""
    from workers.schema import TrainerSettings

    trainer = config.get("trainer")
    return trainer.get("seed", TrainerSettings().seed) if isinstance(trainer, Mapping) else TrainerSettings().seed


def expand_unused(summary: Summary, config: Mapping[str, Any]) -> Summary:
    """For derived results and plots: a configuration run once for a swept key it does not read (its
    value ``UNUSED``, e.g. GA's noise scale) stands for every value of that key, so ratios and lines
    pair it with each of them. The table (``summary.md``) shows it once, with "—"."""
    params = (config.get("sweep") or {}).get("params") or {}
    configurations = []
    for configuration in summary.configurations:
        options = [list(next(iter(params[key].values()))) if value == UNUSED and key in params else [value]
                   for key, value in configuration.values.items()]
        for values in itertools.product(*options):
            configurations.append(replace(configuration, values=dict(zip(configuration.values, values))))
    return replace(summary, configurations=configurations)


def lines_by_other_keys(summary: Summary, key: str) -> dict[str, list[Configuration]]:
    """Configurations grouped by the values of the other discrete swept keys (label -> members)."""
    others = [other for other in summary.keys if other != key and other not in summary.continuous]
    lines: dict[str, list[Configuration]] = {}
    for configuration in summary.configurations:
        label = ", ".join(f"{other}={text(configuration.values[other])}" for other in others)
        lines.setdefault(label, []).append(configuration)
    return dict(sorted(lines.items()))



# -- writing -------------------------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    """A CSV cell: numbers as they are, text in one line and never a spreadsheet formula."""
    return "" if value is None else value if _is_number(value) else spreadsheet_text(text(value))


def write_csv(path: Path, header: list[str], rows: Iterable[list[Any]]) -> Path:
    """``path`` (in the experiment directory) replaced by the table: never written through a link there."""
    def fill(handle) -> None:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([_cell(name) for name in header])
        writer.writerows([[_cell(value) for value in row] for row in rows])

    return replace_file(path, fill)


Table = tuple[list[str], list[list[Any]]]  # (header, rows): what a CSV file and a DataFrame are made of


def number(value: Any) -> Any:
    """A swept value in a table: ``UNUSED`` (a key the configuration does not read) is a missing value (empty in
    CSV, NaN/None in a DataFrame), so a column of numbers stays numeric; the ``unused`` column names the key."""
    return None if value == UNUSED else value


def unused_column(values: Mapping[str, Any]) -> str:
    """The swept keys a configuration does not read (``UNUSED``), space-separated: why a value is missing."""
    return " ".join(key for key, value in values.items() if value == UNUSED)


def trials_table(config: Mapping[str, Any], trials: list[TrialRecord]) -> Table:
    """One row per trial: id, state, swept values (missing where not read, named in ``unused``), last metrics,
    best_* metrics, failures, error, directory."""
    keys, names = swept_keys(config, trials), metric_names(trials)
    best = [name for name in names if name.startswith(reporting.BEST)]
    metrics = [name for name in names if name not in best] + best
    header = ["trial_id", "state", *keys, "unused", *metrics, "num_failures", "error", "dirname"]
    return header, [[trial.trial_id, trial.state, *(number(trial.params.get(key)) for key in keys),
                     unused_column({key: trial.params.get(key) for key in keys}),
                     *(trial.last.get(name) for name in metrics), trial.num_failures, trial.error, trial.dirname]
                    for trial in trials]


def summary_rows(summary: Summary) -> Table:
    """One row per configuration: swept values (missing where not read, named in ``unused``), n_seeds (finished:
    completed or stopped early), n_stopped, n_trials, <metric>_mean and <metric>_std (over the finished seeds)."""
    header = [*summary.keys, "unused", "n_seeds", "n_stopped", "n_trials"] + [
        f"{m}_{s}" for m in summary.metrics for s in ("mean", "std")]
    return header, [[*map(number, c.values.values()), unused_column(c.values), c.n_seeds, c.n_stopped, len(c.trials),
                     *(part for m in summary.metrics for part in c.stats.get(m, (None, None)))]
                    for c in summary.configurations]


def write_trials_csv(path: Path, config: Mapping[str, Any], trials: list[TrialRecord]) -> Path:
    return write_csv(path, *trials_table(config, trials))


def write_summary_csv(path: Path, summary: Summary) -> Path:
    return write_csv(path, *summary_rows(summary))


def markdown_cell(value: Any) -> str:
    """A value in a Markdown table cell: one line, ``|`` escaped."""
    return one_line(text(value)).replace("|", "\\|")


def summary_table(source: Summary) -> str:
    """The Markdown summary table ("mean ± std" cells, 4 significant digits) of a summary (``summary.md``
    adds the comparisons and evaluation-sample curves: ``results.summary_markdown``)."""
    counts = ", ".join(f"{count} {state}" for state, count in source.by_state.items() if count)
    order = (f"sorted by {source.metric} ({source.mode}); " if source.metric and source.mode
             else f"not ranked: {source.unranked}; " if source.unranked else "")
    header = [*source.keys, "n_seeds", *source.metrics]
    stopped = sum(c.n_stopped for c in source.configurations)
    unread = any(value == UNUSED for c in source.configurations for value in c.values.values())
    lines = [f"# {source.name}", "", f"{sum(source.by_state.values())} trials ({counts or 'none yet'}); {order}"
             "cells are mean ± std over the finished seeds (n_seeds; with one seed the value alone: no spread is "
             "known)" + (f"; {stopped} of them stopped early by ASHA (their best metric at the epoch they reached)"
                         if stopped else "") + (f"; {UNUSED}: a key the configuration does not read" if unread else "")
             + "."]
    lines = [*map(one_line, lines), "",
             "| " + " | ".join(map(markdown_cell, header)) + " |",
             "|" + "---|" * len(source.keys) + "---:|" * (1 + len(source.metrics))]
    for configuration in source.configurations:
        cells = [markdown_cell(value) for value in configuration.values.values()] + [str(configuration.n_seeds)]
        for metric in source.metrics:
            mean, std = configuration.stats.get(metric, (None, None))
            spread = f" ± {std:.4g}" if configuration.n_seeds >= 2 and mean is not None else ""  # one seed: none known
            cells.append("-" if mean is None else f"{mean:.4g}{spread}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def status(experiment_dir: str | os.PathLike | Folder) -> dict[str, Any]:
    """Counts by state and the best trial so far (any state) by the sweep metric; no files written."""
    folder, config = open_experiment(experiment_dir)
    path, trials = folder.path, read_trials(folder, config)
    metric, mode = sweep_metric(config)
    scored = [trial for trial in trials if metric in trial.last and math.isfinite(trial.last[metric])]
    best = None
    if scored and mode:
        pick = min if mode == "min" else max
        trial = pick(scored, key=lambda candidate: candidate.last[metric])
        best = {"value": trial.last[metric], "trial_id": trial.trial_id, "state": trial.state, "params": trial.params}
    return {"experiment": str(path), "name": str(config.get("name") or path.name), "trials": len(trials),
            "by_state": count_states(trials),
            "metric": metric, "mode": mode, "best": best, "unranked": unranked(config, metric, mode)}
