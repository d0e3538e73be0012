"""One experiment directory -> its trial records: swept values, state, reported metrics, error.

An experiment directory ``<storage>/<name>/`` holds symsweep's ``config.json``, Ray Tune's
``experiment_state-*.json`` and one directory per trial (``params.json``, ``result.json``, error
files). ``load_trials`` reads it, on partial and failed experiments too: the newest state file says
each trial's status; trial directories it does not (yet) list are found on disk.

The folder may be someone else's: every file is read through ``orchestrator.folder`` (inside the folder
only, no link followed, regular files of bounded size, bounded JSON nesting). A damaged trial file is left
out and recorded in the folder's ``skipped`` (the trial shows as it can); metric names and swept keys that
are not ``plausible`` identifiers are ignored, so they never reach a table header or a file name.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from orchestrator.folder import MISSING, RESULTS_LIMIT, Folder, FolderError, parse_json, plausible
from workers import reporting
from workers.checks import is_int, is_number

STATES = ("completed", "stopped", "errored", "running", "pending", "unfinished")
FINISHED = ("completed", "stopped")  # a result: trained to its last epoch, or stopped early by ASHA on purpose
TUNE_STATUS = {"ERROR": "errored", "RUNNING": "running", "PENDING": "pending", "PAUSED": "unfinished"}
TUNE_KEYS = frozenset({  # Ray Tune's bookkeeping in every result, not metrics of the model
    "training_iteration", "trial_id", "time_total_s", "time_this_iter_s", "time_since_restore",
    "iterations_since_restore", "timestamp", "done", "should_checkpoint", "config", "date", "pid", "hostname",
    "node_ip", "checkpoint_dir_name", "experiment_tag", "experiment_id", "timesteps_total", "episodes_total",
    "timesteps_since_restore", "warmup_time"})
SEPARATION_KEY = reporting.SEEDS  # in the one report of a separation task (epoch 0): the trial is done
CURVE_KEY = reporting.CURVE  # {<split>_<metric>: {<N>: {mean, std}}} in a trial's last report
EVALUATED_FILE = "eval_samples.json"  # the same written into a trial directory by `symsweep evaluate`
ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(\([\w.]+\))?: ")
STATE_FILE = re.compile(r"experiment_state-.*\.json")
SPEC_KEYS = {"derived": ("name", "metric", "key", "numerator", "denominator"), "loglog": ("metric", "key")}


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




def open_experiment(experiment_dir: str | os.PathLike | Folder) -> tuple[Folder, dict[str, Any]]:
    """The folder and its ``config.json``; a clear one-line ValueError when it is not an experiment."""
    folder = Folder.of(experiment_dir)
    path = folder.path
    expected = "expected a directory with config.json written by `symsweep launch` (<storage>/<name>)"
    if not path.is_dir() or folder.kind("config.json") == MISSING:
        what = "has no config.json" if path.is_dir() else "does not exist" if not path.exists() else "is a file"
        raise ValueError(f"{path} is not a symsweep experiment directory: it {what}; {expected}")
    try:
        config = folder.read_json("config.json")
    except FolderError as err:
        raise ValueError(f"{err}; {expected}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path / 'config.json'} is not a JSON object; {expected}")
    wrong = _misshapen(config)
    if wrong:
        raise ValueError(f"{path / 'config.json'}: {wrong} does not have the shape symsweep launch writes; {expected}")
    params = config["sweep"].get("params") if isinstance(config.get("sweep"), dict) else None
    if params:
        config["sweep"]["params"] = {key: domain for key, domain in params.items() if plausible(key)}
    return folder, config


def _number(value: Any, low: float, high: float) -> bool:
    return is_number(value) and low < value < high


def _misshapen(config: Mapping[str, Any]) -> str | None:
    """The first part of ``config`` the tables read that is not shaped as ``symsweep launch`` writes it (a crafted
    or damaged config.json is refused here in one line, not by a traceback further on), or None."""
    sweep = config.get("sweep") or {}
    checks = {name: isinstance(config.get(name) or {}, dict) for name in ("sweep", "trainer", "task")}
    if checks["sweep"]:
        params, compare = sweep.get("params") or {}, sweep.get("compare")
        checks["sweep.params"] = isinstance(params, dict) and all(
            isinstance(domain, dict) and len(domain) == 1 and isinstance(*domain.values(), list)
            for domain in params.values())
        checks["sweep.seeds"] = is_int(sweep.get("seeds") or 1)
        checks["sweep.metric"] = sweep.get("metric") is None or isinstance(sweep["metric"], str)
        checks["sweep.mode"] = sweep.get("mode") in (None, "min", "max")
        checks["sweep.compare"] = compare is None or isinstance(compare, dict) and "reference" in compare and (
            isinstance(compare.get("key"), str) and isinstance(compare.get("metric") or "", str))
        rule = compare if isinstance(compare, dict) and compare.get("until") is not None else None
        checks["sweep.compare.until"] = rule is None or (  # the stopping rule (analyses.sequential.Rule.of reads it)
            rule["until"] == "resolved" and is_int(rule.get("max_seeds")) and rule["max_seeds"] >= 1
            and _number(rule.get("confidence", 0.95), 0, 1) and (rule.get("delta") is None
                                                                  or _number(rule["delta"], 0, math.inf)))
        for name, keys in SPEC_KEYS.items():
            entries = sweep.get(name) or []
            checks[f"sweep.{name}"] = isinstance(entries, list) and all(
                isinstance(entry, dict) and set(keys) <= set(entry)
                and all(isinstance(entry[key], str) for key in keys if key in ("name", "metric", "key"))
                for entry in entries)
    return next((name for name, ok in checks.items() if not ok), None)


def _results(folder: Folder, trial_dir: str | None) -> list[dict[str, Any]]:
    """The reports in ``result.json``; a torn last line (a trial writing it: no newline yet) is left out quietly,
    any other damaged line is left out and said."""
    name = f"{trial_dir}/result.json"
    text = folder.read_text(name, RESULTS_LIMIT, strict=False) if trial_dir else None
    lines = (text or "").split("\n")
    results = []
    for number, line in enumerate(lines, 1):
        try:
            result = parse_json(line) if line.strip() else None
        except ValueError as err:
            if number < len(lines):
                folder.skip(name, f"line {number}: {err}")
            continue
        if isinstance(result, dict):
            results.append(result)
    return results


def _metrics(result: Mapping[str, Any]) -> dict[str, float]:
    return {key: value for key, value in result.items() if key not in TUNE_KEYS and plausible(key)
            and isinstance(value, (int, float)) and not isinstance(value, bool)}


def _history(results: Iterable[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Metrics per report; reports repeated after a restore from an older checkpoint replace the old ones."""
    history: list[dict[str, float]] = []
    for metrics in map(_metrics, results):
        while history and "epoch" in metrics and history[-1].get("epoch", -math.inf) >= metrics["epoch"]:
            history.pop()
        history.append(metrics)
    return history


def _error(folder: Folder, trial_dir: str | None) -> tuple[str, int]:
    """The trial's last exception as one line "Type: message", and how many failures its error file records."""
    text = folder.read_text(f"{trial_dir}/error.txt", strict=False) if trial_dir else None
    lines = [ANSI.sub("", line).rstrip() for line in (text or "").splitlines()]
    failures = sum(line.startswith("Failure # ") for line in lines) or int(bool(lines))
    lines = [line for line in lines if line.strip()]
    indented = [index for index, line in enumerate(lines) if line[0].isspace()]
    after = [line for line in lines[indented[-1] + 1 if indented else 0:] if not line.startswith("Failure # ")]
    message = after[0] if after else ""
    # Text only: Ray Tune's error.pkl next to it is never unpickled (reading a results folder someone shared
    # must not run their code).
    return message[:300], failures


def _points(points: Any) -> dict[str, dict[str, float]]:
    """A metric's curve {N: {mean, std}} with only what is well formed: a count N, numbers."""
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return {count: {key: point[key] for key in ("mean", "std") if number(point.get(key))}
            for count, point in (points.items() if isinstance(points, dict) else ())
            if re.fullmatch(r"[0-9]{1,9}", count) and isinstance(point, dict) and number(point.get("mean"))}


def _curve(folder: Folder, results: list[Mapping[str, Any]], trial_dir: str | None) -> dict[str, dict]:
    """The evaluation-sample curve of the last report that has one, with the points of
    ``eval_samples.json`` (``symsweep evaluate``) over it."""
    reported = next((r[CURVE_KEY] for r in reversed(results) if isinstance(r.get(CURVE_KEY), dict)), {})
    evaluated = folder.read_json(f"{trial_dir}/{EVALUATED_FILE}", strict=False) if trial_dir else None
    curve: dict[str, dict[str, dict[str, float]]] = {}
    for source in (reported, evaluated if isinstance(evaluated, dict) else {}):
        for metric, points in source.items():
            points = _points(points)
            if plausible(metric) and points:
                curve.setdefault(metric, {}).update(points)
    return curve


def _trial_state(status: str | None, last: Mapping[str, float], epochs: Any, failed: bool, early: bool) -> str:
    """Tune's status refined by the epochs reached; without a status, the trial directory alone. A trial Tune
    ended before its last epoch under ASHA (``early``) was stopped on purpose ("stopped": its best metric at
    the epoch it reached is its result); without a scheduler that is "unfinished"."""
    epoch = last.get(reporting.EPOCH, -1)
    reached = SEPARATION_KEY in last or (isinstance(epochs, (int, float)) and epoch >= epochs)
    if status is None:
        return "completed" if reached else "errored" if failed else "unfinished"
    if status == "TERMINATED":
        return "completed" if reached or epochs is None else "stopped" if early and epoch > 0 else "unfinished"
    return TUNE_STATUS.get(status, "unfinished")


def _record(folder: Folder, config: Mapping[str, Any], dirname: str, trial_id: Any, params: Any, status: Any,
            runtime: Mapping[str, Any]) -> TrialRecord:
    trial_dir = folder.trial_directory(dirname)
    results = _results(folder, trial_dir)
    history = _history(results)
    reported = runtime.get("last_result")
    last = history[-1] if history else _metrics(reported if isinstance(reported, dict) else {})
    if not isinstance(params, dict):
        params = folder.read_json(f"{trial_dir}/params.json", strict=False) if trial_dir else None
    params = {key: value for key, value in (params if isinstance(params, dict) else {}).items() if plausible(key)}
    error, failures = _error(folder, trial_dir)
    epochs = params.get("trainer.epochs", (config.get("trainer") or {}).get("epochs"))
    found_id = re.search(r"[0-9a-f]{5}_\d{5}", dirname)
    trial_id = trial_id or (results[-1].get("trial_id") if results else None) or (
        found_id.group(0) if found_id else dirname)
    early = (config.get("sweep") or {}).get("scheduler") == "asha"
    state = _trial_state(None if status is None else str(status), last, epochs, bool(error or failures), early)
    counted = runtime.get("num_failures")
    return TrialRecord(trial_id=str(trial_id), dirname=dirname, params=params, state=state, history=history,
                       last=last, error="" if state in FINISHED else error,  # a recovered failure is no error
                       num_failures=counted if is_int(counted) and counted else failures,
                       curve=_curve(folder, results, trial_dir))


def state_files(folder: Folder) -> list[str]:
    """The names of the ``experiment_state-*.json`` files, newest last: by the date in the name, as Tune rewrites
    every state file when it syncs (their mtimes tie)."""
    return sorted(name for name in folder.entries() if STATE_FILE.fullmatch(name))


def _tune_trials(folder: Folder) -> list[tuple[dict, dict]]:
    """(trial, runtime) pairs of the newest ``experiment_state-*.json``; none when absent or unreadable."""
    files = state_files(folder)
    state = folder.read_json(files[-1], RESULTS_LIMIT, strict=False) if files else None
    entries = state.get("trial_data") if isinstance(state, dict) else None
    pairs = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        try:
            if not (isinstance(entry, list) and len(entry) == 2):
                raise ValueError("not a [trial, runtime] pair")
            trial, runtime = (parse_json(part) if isinstance(part, str) else part for part in entry)
        except ValueError as err:
            folder.skip(f"{files[-1]} trial_data[{index}]", str(err))
            continue
        if isinstance(trial, dict):
            pairs.append((trial, runtime if isinstance(runtime, dict) else {}))
    return pairs


def read_trials(path: str | os.PathLike | Folder, config: Mapping[str, Any]) -> list[TrialRecord]:
    """Every trial of the opened experiment ``path`` (with its ``config``), sorted by trial id."""
    folder = Folder.of(path)
    records, known = [], set()
    for trial, runtime in _tune_trials(folder):
        dirname = trial.get("relative_logdir") if isinstance(trial.get("relative_logdir"), str) else ""
        known.add(dirname)
        records.append(_record(folder, config, dirname, trial.get("trial_id"), trial.get("config"),
                               trial.get("status"), runtime))
    for name, kind in sorted(folder.entries().items()):  # trial directories the state file does not (yet) list
        if name not in known and kind in ("directory", "link") and folder.trial_directory(name) and any(
                folder.kind(f"{name}/{file}") != MISSING for file in ("params.json", "result.json")):
            records.append(_record(folder, config, name, None, None, None, {}))
    return sorted(records, key=lambda record: (record.trial_id, record.dirname))


def load_trials(experiment_dir: str | os.PathLike | Folder) -> list[TrialRecord]:
    """Every trial of an experiment directory, sorted by trial id."""
    return read_trials(*open_experiment(experiment_dir))


def count_states(trials: Iterable[TrialRecord]) -> dict[str, int]:
    """How many trials are in each of STATES (every state listed, in that order)."""
    states = [trial.state for trial in trials]
    return {state: states.count(state) for state in STATES}
