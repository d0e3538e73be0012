"""One experiment directory -> its trials, their states, the per-trial table and the sweep summary.

An experiment directory ``<storage>/<name>/`` holds symsweep's ``config.json``, Ray Tune's
``experiment_state-*.json`` and one directory per trial (``params.json``, ``result.json``, error
files). ``write_report`` turns it into ``trials.csv`` (one row per trial), ``summary.csv`` and
``summary.md`` (one row per configuration, i.e. swept values without the seed: mean ± std over the
completed seeds) and ``plots/*.png``. It works on partial and failed experiments, and the same
directory always gives byte-identical tables (rows in a stable order).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

SEED_KEY = "trainer.seed"
STATES = ("completed", "errored", "running", "pending", "unfinished")
TUNE_STATUS = {"ERROR": "errored", "RUNNING": "running", "PENDING": "pending", "PAUSED": "unfinished"}
TUNE_KEYS = frozenset({  # Ray Tune's bookkeeping in every result, not metrics of the model
    "training_iteration", "trial_id", "time_total_s", "time_this_iter_s", "time_since_restore",
    "iterations_since_restore", "timestamp", "done", "should_checkpoint", "config", "date", "pid", "hostname",
    "node_ip", "checkpoint_dir_name", "experiment_tag", "experiment_id", "timesteps_total", "episodes_total",
    "timesteps_since_restore", "warmup_time"})
SEPARATION_METRIC = "test_unseparated_pairs"  # separation tasks report once, at epoch 0
MIN_WORDS = ("mse", "loss", "error", "unseparated")  # metric names that are minimised
ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(\([\w.]+\))?: ")


@dataclass(frozen=True)
class TrialRecord:
    """One trial as found on disk: swept values, state, reported metrics (Tune's keys removed)."""

    trial_id: str
    dirname: str
    params: dict[str, Any]
    state: str  # one of STATES
    history: list[dict[str, float]]  # one dict per report, in epoch order
    last: dict[str, float]  # the last report's metrics
    error: str  # "ExceptionType: first line of the message", or ""
    num_failures: int


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


# -- reading ----------------------------------------------------------------------------------------
def open_experiment(experiment_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The directory and its ``config.json``; a clear ValueError when it is not an experiment."""
    path = Path(experiment_dir).expanduser()
    expected = "expected a directory with config.json written by `symsweep launch` (<storage>/<name>)"
    if not (path / "config.json").is_file():
        what = "has no config.json" if path.is_dir() else "does not exist" if not path.exists() else "is a file"
        raise ValueError(f"{path} is not a symsweep experiment directory: it {what}; {expected}")
    config = _read_json(path / "config.json")
    if not isinstance(config, dict):
        raise ValueError(f"{path / 'config.json'} is not a JSON object; {expected}")
    return path, config


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _read_json(path: Path) -> Any:
    try:
        return _loads(path.read_text())
    except OSError:
        return None


def _results(trial_dir: Path | None) -> list[dict[str, Any]]:
    """The lines of ``result.json``; a torn last line (a trial writing) is skipped."""
    try:
        lines = (trial_dir / "result.json").read_text().splitlines() if trial_dir else []
    except OSError:
        lines = []
    return [result for result in map(_loads, lines) if isinstance(result, dict)]


def _metrics(result: Mapping[str, Any]) -> dict[str, float]:
    return {key: value for key, value in result.items() if key not in TUNE_KEYS
            and isinstance(value, (int, float)) and not isinstance(value, bool)}


def _history(results: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Metrics per report; reports repeated after a restore from an older checkpoint replace the old ones."""
    history: list[dict[str, float]] = []
    for metrics in map(_metrics, results):
        while history and "epoch" in metrics and history[-1].get("epoch", -math.inf) >= metrics["epoch"]:
            history.pop()
        history.append(metrics)
    return history


def _error(trial_dir: Path | None) -> tuple[str, int]:
    """The trial's last exception as one line "Type: message", and how many failures its error file records."""
    if trial_dir is None:
        return "", 0
    try:
        lines = [ANSI.sub("", line).rstrip() for line in (trial_dir / "error.txt").read_text().splitlines()]
    except OSError:
        lines = []
    failures = sum(line.startswith("Failure # ") for line in lines) or int(bool(lines))
    lines = [line for line in lines if line.strip()]
    indented = [index for index, line in enumerate(lines) if line[0].isspace()]
    after = [line for line in lines[indented[-1] + 1 if indented else 0:] if not line.startswith("Failure # ")]
    message = after[0] if after else ""
    if not EXCEPTION_LINE.match(message) and (trial_dir / "error.pkl").is_file():
        message = _pickled_error(trial_dir / "error.pkl") or message
        failures = failures or 1
    return message[:300], failures


def _pickled_error(path: Path) -> str:
    try:
        from ray import cloudpickle

        error = cloudpickle.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - an unreadable pickle (other Ray version, missing class) is no error text
        return ""
    cause = getattr(error, "cause", None) or error
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


def _trial_state(status: str | None, last: Mapping[str, float], epochs: Any, failed: bool) -> str:
    """Tune's status refined by the epochs reached; without a status, the trial directory alone."""
    reached = SEPARATION_METRIC in last or (isinstance(epochs, (int, float)) and last.get("epoch", -1) >= epochs)
    if status is None:
        return "completed" if reached else "errored" if failed else "unfinished"
    if status == "TERMINATED":
        return "completed" if reached or epochs is None else "unfinished"
    return TUNE_STATUS.get(status, "unfinished")


def _record(path: Path, config: Mapping[str, Any], dirname: str, trial_id: str | None, params: Any,
            status: str | None, runtime: Mapping[str, Any] | None) -> TrialRecord:
    trial_dir = path / dirname if dirname and (path / dirname).is_dir() else None
    results = _results(trial_dir)
    history = _history(results)
    last = history[-1] if history else _metrics((runtime or {}).get("last_result") or {})
    if not isinstance(params, dict):
        params = (_read_json(trial_dir / "params.json") if trial_dir else None) or {}
    error, failures = _error(trial_dir)
    epochs = params.get("trainer.epochs", (config.get("trainer") or {}).get("epochs"))
    found_id = re.search(r"[0-9a-f]{5}_\d{5}", dirname)
    trial_id = trial_id or (results[-1].get("trial_id") if results else None) or (
        found_id.group(0) if found_id else dirname)
    return TrialRecord(trial_id=str(trial_id), dirname=dirname, params=params,
                       state=_trial_state(status, last, epochs, bool(error or failures)), history=history, last=last,
                       error=error, num_failures=int((runtime or {}).get("num_failures") or failures))


def _tune_trials(path: Path) -> list[tuple[dict, dict]]:
    """(trial, runtime) pairs of the newest ``experiment_state-*.json``; none when absent or unreadable."""
    # Newest by the date in the name: Tune rewrites every state file when it syncs, so mtimes tie.
    files = sorted(path.glob("experiment_state-*.json"), key=lambda file: file.name)
    state = _read_json(files[-1]) if files else None
    pairs = []
    for entry in (state or {}).get("trial_data", []) if isinstance(state, dict) else []:
        try:
            trial, runtime = (json.loads(part) if isinstance(part, str) else part for part in entry)
        except (TypeError, ValueError):
            continue
        if isinstance(trial, dict):
            pairs.append((trial, runtime if isinstance(runtime, dict) else {}))
    return pairs


def _load(path: Path, config: Mapping[str, Any]) -> list[TrialRecord]:
    records, known = [], set()
    for trial, runtime in _tune_trials(path):
        dirname = trial.get("relative_logdir") or ""
        known.add(dirname)
        records.append(_record(path, config, dirname, trial.get("trial_id"), trial.get("config"),
                               trial.get("status"), runtime))
    for trial_dir in sorted(path.iterdir()):  # trial directories the state file does not (yet) list
        if trial_dir.name not in known and trial_dir.is_dir() and any(
                (trial_dir / name).is_file() for name in ("params.json", "result.json")):
            records.append(_record(path, config, trial_dir.name, None, None, None, None))
    return sorted(records, key=lambda record: (record.trial_id, record.dirname))


def load_trials(experiment_dir: str | os.PathLike) -> list[TrialRecord]:
    """Every trial of an experiment directory, sorted by trial id."""
    return _load(*open_experiment(experiment_dir))


# -- summarising --------------------------------------------------------------------------------------
def text(value: Any) -> str:
    """A swept value as written in tables: strings as they are, everything else as JSON."""
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _order(value: Any) -> tuple[int, float, str]:
    return (0, float(value), "") if _is_number(value) else (1, 0.0, text(value))


def count_states(trials: Iterable[TrialRecord]) -> dict[str, int]:
    """How many trials are in each of STATES (every state listed, in that order)."""
    states = [trial.state for trial in trials]
    return {state: states.count(state) for state in STATES}


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
    """(metric, mode): ``sweep.metric``/``sweep.mode``, else the first best_val_* metric; min for losses."""
    sweep = config.get("sweep") or {}
    metric = sweep.get("metric") or next((name for name in names if name.startswith("best_val_")), None) or next(
        (name for name in names if name.startswith(("val_", "test_"))), None)
    mode = sweep.get("mode") or ("min" if metric and any(word in metric for word in MIN_WORDS) else "max")
    return metric, mode


def headline_metrics(names: list[str], metric: str | None) -> list[str]:
    """The sweep metric, best_* metrics, final val/test metrics, equivariance error, entropy, elapsed time."""
    chosen = ([name for name in names if name.startswith("best_")]
              + [name for name in names if name.startswith(("val_", "test_"))]
              + [name for name in ("equivariance_error", "entropy", "elapsed_s") if name in names])
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
                   by_state=count_states(trials))


# -- writing -------------------------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    return "" if value is None else value if _is_number(value) else text(value)


def _write_csv(path: Path, header: list[str], rows: Iterable[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([[_cell(value) for value in row] for row in rows])
    return path


def write_trials_csv(path: Path, config: Mapping[str, Any], trials: list[TrialRecord]) -> Path:
    """One row per trial: id, state, swept values, last metrics, best_* metrics, failures, error, directory."""
    keys, names = swept_keys(config, trials), metric_names(trials)
    metrics = [name for name in names if not name.startswith("best_")] + [n for n in names if n.startswith("best_")]
    header = ["trial_id", "state", *keys, *metrics, "num_failures", "error", "dirname"]
    return _write_csv(path, header, ([trial.trial_id, trial.state, *(trial.params.get(key) for key in keys),
                                      *(trial.last.get(name) for name in metrics), trial.num_failures, trial.error,
                                      trial.dirname] for trial in trials))


def write_summary_csv(path: Path, summary: Summary) -> Path:
    """One row per configuration: swept values, n_seeds, n_trials, <metric>_mean and <metric>_std."""
    header = [*summary.keys, "n_seeds", "n_trials"] + [f"{m}_{s}" for m in summary.metrics for s in ("mean", "std")]
    rows = ([*c.values.values(), c.n_seeds, len(c.trials), *(part for m in summary.metrics
                                                                 for part in c.stats.get(m, (None, None)))]
            for c in summary.configurations)
    return _write_csv(path, header, rows)


def _markdown(value: Any) -> str:
    return text(value).replace("|", "\\|")


def summary_table(source: str | os.PathLike | Summary) -> str:
    """The Markdown summary ("mean ± std" cells, 4 significant digits) of an experiment directory."""
    if not isinstance(source, Summary):
        path, config = open_experiment(source)
        source = summarize(path, config, _load(path, config))
    counts = ", ".join(f"{count} {state}" for state, count in source.by_state.items() if count)
    order = f"sorted by {source.metric} ({source.mode}); " if source.metric else ""
    header = [*source.keys, "n_seeds", *source.metrics]
    lines = [f"# {source.name}", "", f"{sum(source.by_state.values())} trials ({counts or 'none yet'}); {order}"
             "cells are mean ± std over the completed seeds (n_seeds).", "",
             "| " + " | ".join(map(_markdown, header)) + " |",
             "|" + "---|" * len(source.keys) + "---:|" * (1 + len(source.metrics))]
    for configuration in source.configurations:
        cells = [_markdown(value) for value in configuration.values.values()] + [str(configuration.n_seeds)]
        for metric in source.metrics:
            mean, std = configuration.stats.get(metric, (None, None))
            cells.append("-" if mean is None else f"{mean:.4g} ± {std:.4g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(experiment_dir: str | os.PathLike) -> dict[str, Any]:
    """Write trials.csv, summary.csv, summary.md and plots/*.png into the experiment directory."""
    from orchestrator.plots import write_plots  # matplotlib only when plotting

    path, config = open_experiment(experiment_dir)
    trials = _load(path, config)
    summary = summarize(path, config, trials)
    files = [write_trials_csv(path / "trials.csv", config, trials), write_summary_csv(path / "summary.csv", summary)]
    (path / "summary.md").write_text(summary_table(summary), encoding="utf-8")
    files += [path / "summary.md", *write_plots(summary, path / "plots")]
    return {"trials": len(trials), "by_state": summary.by_state, "configurations": len(summary.configurations),
            "files": [str(file) for file in files]}


def status(experiment_dir: str | os.PathLike) -> dict[str, Any]:
    """Counts by state and the best trial so far (any state) by the sweep metric; no files written."""
    path, config = open_experiment(experiment_dir)
    trials = _load(path, config)
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
