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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from orchestrator.folder import Folder, one_line, replace_file, spreadsheet_text
from orchestrator.records import STATES, TrialRecord, count_states, load_trials, open_experiment, read_trials  # noqa: F401
from workers import UNUSED

SEED_KEY = "trainer.seed"
MIN_WORDS = ("mse", "loss", "error", "unseparated")  # metric names that are minimised


@dataclass(frozen=True)
class Configuration:
    """The trials sharing one set of swept values (all seeds), and statistics over the completed ones."""

    values: dict[str, Any]
    trials: list[TrialRecord]
    stats: dict[str, tuple[float, float]]  # metric -> (mean, std with ddof=1; 0 for one seed)

    @property
    def n_seeds(self) -> int:
        return sum(trial.state == "completed" for trial in self.trials)

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
    mode: str  # "min" | "max"
    configurations: list[Configuration]
    by_state: dict[str, int]
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


def sweep_metric(config: Mapping[str, Any], names: list[str]) -> tuple[str | None, str]:
    """(metric, mode) as resolved at launch (``config.json``); for a config that names none (a hand-made folder),
    the first best_val_* metric."""
    sweep = config.get("sweep") or {}
    if sweep.get("metric") and sweep.get("mode"):
        return sweep["metric"], sweep["mode"]
    metric = sweep.get("metric") or next((name for name in names if name.startswith("best_val_")), None) or next(
        (name for name in names if name.startswith(("val_", "test_"))), None)
    mode = sweep.get("mode") or ("min" if metric and any(word in metric for word in MIN_WORDS) else "max")
    return metric, mode


def headline_metrics(names: list[str], metric: str | None) -> list[str]:
    """The sweep metric, best_* metrics, final val/test metrics, equivariance error, entropy, elapsed time."""
    chosen = ([name for name in names if name.startswith("best_")]
              + [name for name in names if name.startswith(("val_", "test_"))]
              + [name for name in ("equivariance_gap", "mc_equivariance_error", "entropy", "elapsed_s")
                 if name in names])
    return [metric] * (metric in names) + [name for name in chosen if name != metric]


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
    metric, mode = sweep_metric(config, names)
    metrics = headline_metrics(names, metric)
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        groups.setdefault(json.dumps([text(trial.params.get(key)) for key in keys]), []).append(trial)
    configurations = [Configuration({key: members[0].params.get(key) for key in keys}, members,
                                    _stats([trial for trial in members if trial.state == "completed"], metrics))
                      for members in groups.values()]

    def rank(configuration: Configuration) -> tuple:
        mean = configuration.stats.get(metric, (math.nan, 0.0))[0] if metric else math.nan
        missing = not math.isfinite(mean)
        score = 0.0 if missing else mean if mode == "min" else -mean
        return missing, score, [_order(value) for value in configuration.values.values()]

    params = (config.get("sweep") or {}).get("params") or {}
    continuous = frozenset(key for key, domain in params.items()
                           if isinstance(domain, Mapping) and not {"grid", "choice"} & set(domain))
    return Summary(name=str(config.get("name") or path.name), keys=keys, continuous=continuous, metrics=metrics,
                   metric=metric, mode=mode, configurations=sorted(configurations, key=rank),
                   by_state=count_states(trials), base_seed=base_seed(config))


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


def trials_table(config: Mapping[str, Any], trials: list[TrialRecord]) -> Table:
    """One row per trial: id, state, swept values, last metrics, best_* metrics, failures, error, directory."""
    keys, names = swept_keys(config, trials), metric_names(trials)
    metrics = [name for name in names if not name.startswith("best_")] + [n for n in names if n.startswith("best_")]
    header = ["trial_id", "state", *keys, *metrics, "num_failures", "error", "dirname"]
    return header, [[trial.trial_id, trial.state, *(trial.params.get(key) for key in keys),
                     *(trial.last.get(name) for name in metrics), trial.num_failures, trial.error, trial.dirname]
                    for trial in trials]


def summary_rows(summary: Summary) -> Table:
    """One row per configuration: swept values, n_seeds, n_trials, <metric>_mean and <metric>_std."""
    header = [*summary.keys, "n_seeds", "n_trials"] + [f"{m}_{s}" for m in summary.metrics for s in ("mean", "std")]
    return header, [[*c.values.values(), c.n_seeds, len(c.trials), *(part for m in summary.metrics
                                                                        for part in c.stats.get(m, (None, None)))]
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
    order = f"sorted by {source.metric} ({source.mode}); " if source.metric else ""
    header = [*source.keys, "n_seeds", *source.metrics]
    lines = [f"# {source.name}", "", f"{sum(source.by_state.values())} trials ({counts or 'none yet'}); {order}"
             "cells are mean ± std over the completed seeds (n_seeds; with one seed the value alone: no spread is "
             "known)."]
    lines = [*map(one_line, lines), "",
             "| " + " | ".join(map(markdown_cell, header)) + " |",
             "|" + "---|" * len(source.keys) + "---:|" * (1 + len(source.metrics))]
    for configuration in source.configurations:
        cells = [markdown_cell(value) for value in configuration.values.values()] + [str(configuration.n_seeds)]
        for metric in source.metrics:
            mean, std = configuration.stats.get(metric, (None, None))
            spread = f" ± {std:.4g}" if configuration.n_seeds >= 2 else ""  # one seed: no spread is known
            cells.append("-" if mean is None else f"{mean:.4g}{spread}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def status(experiment_dir: str | os.PathLike | Folder) -> dict[str, Any]:
    """Counts by state and the best trial so far (any state) by the sweep metric; no files written."""
    folder, config = open_experiment(experiment_dir)
    path, trials = folder.path, read_trials(folder, config)
    metric, mode = sweep_metric(config, metric_names(trials))
    scored = [trial for trial in trials if metric in trial.last and math.isfinite(trial.last[metric])]
    best = None
    if scored:
        pick = min if mode == "min" else max
        trial = pick(scored, key=lambda candidate: candidate.last[metric])
        best = {"value": trial.last[metric], "trial_id": trial.trial_id, "state": trial.state, "params": trial.params}
    return {"experiment": str(path), "name": str(config.get("name") or path.name), "trials": len(trials),
            "by_state": count_states(trials),
            "metric": metric, "mode": mode, "best": best}
