"""One experiment directory -> its trial records: swept values, state, reported metrics, error.

An experiment directory ``<storage>/<name>/`` holds symsweep's ``config.json``, Ray Tune's
``experiment_state-*.json`` and one directory per trial (``params.json``, ``result.json``, error
files). ``load_trials`` reads it, on partial and failed experiments too: the newest state file says
each trial's status; trial directories it does not (yet) list are found on disk.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

STATES = ("completed", "errored", "running", "pending", "unfinished")
TUNE_STATUS = {"ERROR": "errored", "RUNNING": "running", "PENDING": "pending", "PAUSED": "unfinished"}
TUNE_KEYS = frozenset({  # Ray Tune's bookkeeping in every result, not metrics of the model
    "training_iteration", "trial_id", "time_total_s", "time_this_iter_s", "time_since_restore",
    "iterations_since_restore", "timestamp", "done", "should_checkpoint", "config", "date", "pid", "hostname",
    "node_ip", "checkpoint_dir_name", "experiment_tag", "experiment_id", "timesteps_total", "episodes_total",
    "timesteps_since_restore", "warmup_time"})
SEPARATION_METRIC = "test_unseparated_pairs"  # separation tasks report once, at epoch 0
CURVE_KEY = "eval_samples_curve"  # {<split>_<metric>: {<N>: {mean, std}}} in a trial's last report
EVALUATED_FILE = "eval_samples.json"  # the same written into a trial directory by `symsweep evaluate`
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
    curve: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # metric at N eval samples




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
    # Text only: Ray Tune's error.pkl next to it is never unpickled (reading a results folder someone shared
    # must not run their code).
    return message[:300], failures


def _curve(results: list[Mapping[str, Any]], trial_dir: Path | None) -> dict[str, dict[str, dict[str, float]]]:
    """The evaluation-sample curve of the last report that has one, with the points of
    ``eval_samples.json`` (``symsweep evaluate``) over it."""
    reported = next((r[CURVE_KEY] for r in reversed(results) if isinstance(r.get(CURVE_KEY), dict)), {})
    evaluated = _read_json(trial_dir / EVALUATED_FILE) if trial_dir else None
    curve: dict[str, dict[str, dict[str, float]]] = {}
    for source in (reported, evaluated if isinstance(evaluated, dict) else {}):
        for metric, points in source.items():
            if isinstance(points, dict):
                curve.setdefault(metric, {}).update({count: point for count, point in points.items()
                                                     if isinstance(point, dict) and "mean" in point})
    return curve


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
    state = _trial_state(status, last, epochs, bool(error or failures))
    return TrialRecord(trial_id=str(trial_id), dirname=dirname, params=params, state=state, history=history,
                       last=last, error="" if state == "completed" else error,  # a recovered failure is no error
                       num_failures=int((runtime or {}).get("num_failures") or failures),
                       curve=_curve(results, trial_dir))


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


def read_trials(path: Path, config: Mapping[str, Any]) -> list[TrialRecord]:
    """Every trial of the opened experiment ``path`` (with its ``config``), sorted by trial id."""
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
    return read_trials(*open_experiment(experiment_dir))


def count_states(trials: Iterable[TrialRecord]) -> dict[str, int]:
    """How many trials are in each of STATES (every state listed, in that order)."""
    states = [trial.state for trial in trials]
    return {state: states.count(state) for state in STATES}
