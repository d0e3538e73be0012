"""Two experiments side by side: ``symsweep compare EXP_A EXP_B`` and, from Python,

    from orchestrator.comparison import compare_experiments

    comparison = compare_experiments("runs/before", "runs/after")   # two experiments side by side
    comparison.table         # B − A per matching configuration, paired by seed (compare.csv's columns)
    comparison.unmatched_table   # configurations only one of them ran
    comparison.write("before-vs-after")   # compare.csv, unmatched.csv, compare.md, plots/ (never into A or B)

Each experiment is read as ``orchestrator.results.load_experiment`` reads it (safely, nothing written into it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.aggregate import (
    SEED_KEY,
    Configuration,
    Summary,
    Table,
    _order,
    markdown_cell,
    metric_names,
    number,
    text,
    unused_column,
    write_csv,
)
from orchestrator.analyses.compare import Compare, Comparison, by_seed
from orchestrator.config import TRIAL_SECTIONS
from orchestrator.folder import Folder, one_line, plausible
from orchestrator.results import Experiment, _frame, load_experiment
from workers import UNUSED


@dataclass
class ExperimentComparison:
    """Experiment B against experiment A (e.g. after and before a code change, or two clusters): each configuration
    of B paired with the configuration of A of the same swept values, and each completed seed with the same seed
    (``trainer.seed``); the difference B − A of ``metric`` per seed, with the statistics of ``sweep.compare``
    (``Comparison``: mean, standard error, 95 % t-interval, verdict). ``key`` names what differs between the two
    (the ``key`` column; its values are the experiments' labels). Nothing is written into A or B."""

    a: Experiment
    b: Experiment
    key: str
    labels: tuple[str, str]  # A's and B's names in the tables (their experiment names; "(A)", "(B)" when equal)
    metric: str
    mode: str | None
    keys: list[str]  # the matching keys: swept in either experiment (the seed aside)
    found: list[Comparison]  # one per matching pair of configurations
    unmatched: list[tuple[str, dict[str, Any], Configuration]]  # (label, values over ``keys``, configuration)
    differences: dict[str, tuple[Any, Any]]  # trial keys outside ``keys`` whose values differ: (A's, B's)

    @property
    def summary(self) -> Summary:
        """What ``Compare``'s table, Markdown and figure read of a summary: the keys, the metric and its direction."""
        return Summary(name=f"{self.labels[0]} vs {self.labels[1]}", keys=self.keys, continuous=frozenset(),
                       metrics=[self.metric], metric=self.metric, mode=self.mode, configurations=[], by_state={},
                       directions={self.metric: self.mode} if self.mode else {})

    def compare_rows(self) -> Table:
        """``compare.csv``: ``Compare.table``'s columns, a key a configuration does not read as a missing value
        named in ``unused`` (as in trials.csv and summary.csv)."""
        header, rows = Compare.table(self.summary, self.found)
        shown = [key for key in self.keys if key in header]
        start = header.index(shown[0]) if shown else 3
        end = start + len(shown)
        return ([*header[:end], "unused", *header[end:]],
                [[*row[:start], *map(number, row[start:end]), unused_column(dict(zip(shown, row[start:end]))),
                  *row[end:]] for row in rows])

    def unmatched_rows(self) -> Table:
        """``unmatched.csv``: each configuration only one experiment ran: which, its values, its trials."""
        header = ["experiment", *self.keys, "unused", "n_seeds", "n_trials"]
        return header, [[label, *(number(values[key]) for key in self.keys), unused_column(values),
                         configuration.n_seeds, len(configuration.trials)]
                        for label, values, configuration in self.unmatched]

    @cached_property
    def table(self) -> pd.DataFrame:
        return _frame(self.compare_rows())

    @cached_property
    def unmatched_table(self) -> pd.DataFrame:
        return _frame(self.unmatched_rows())

    def markdown(self) -> str:
        """``compare.md``: what was compared with what, how, where the configs differ, the paired table (``Compare``'s
        section) and the unmatched configurations."""
        (first, second), sides = self.labels, (self.a, self.b)
        counts = [", ".join(f"{n} {state}" for state, n in side.result.by_state.items() if n) or "no trials"
                  for side in sides]
        lines = [one_line(f"# {second} against {first}: {self.metric}, paired by configuration and seed"), "",
                 one_line(f"A = {first}: {self.a.path} ({counts[0]}); B = {second}: {self.b.path} ({counts[1]})."),
                 "", one_line(f"Configurations match on their swept values ({', '.join(self.keys) or 'none swept'}; "
                              "a key one experiment does not sweep has its config value there, and a key a "
                              f"configuration does not read matches any value), seeds on {SEED_KEY}; "
                              "difference = B − A."), ""]
        if self.differences:
            shown = "; ".join(f"{key}: {text(old)} (A), {text(new)} (B)"
                              for key, (old, new) in self.differences.items())
            lines += [one_line(f"Outside the swept keys the configs differ in: {shown}."), ""]
        else:
            lines += ["Outside the swept keys the configs are the same.", ""]
        section = Compare.markdown(self.summary, self.found)
        lines += [section] if section else ["No configuration of B matches one of A.", ""]
        if self.unmatched:
            header = ["experiment", *self.keys, "trials"]
            lines += [f"## Unmatched configurations ({len(self.unmatched)}): run by one experiment only", "",
                      "| " + " | ".join(map(markdown_cell, header)) + " |",
                      "|" + "---|" * (1 + len(self.keys)) + "---:|"]
            lines += ["| " + " | ".join(map(markdown_cell, [label, *(values[k] for k in self.keys)]))
                      + f" | {len(configuration.trials)} |" for label, values, configuration in self.unmatched]
            lines.append("")
        return "\n".join(lines)

    def write(self, out: str | os.PathLike) -> list[Path]:
        """Write ``compare.csv``, ``unmatched.csv``, ``compare.md`` and ``plots/compare_<metric>.png`` into ``out``
        (made if missing; files of those names replaced). ``out`` must lie outside both experiments: they are
        inputs, maybe someone else's, and are never written."""
        path = Path(out).expanduser().resolve()
        for name, side in zip("AB", (self.a, self.b)):
            if path == side.path or side.path in path.parents:
                raise ValueError(f"out={str(out)!r} is inside experiment {name} ({side.path}); expected a directory "
                                 "outside both experiments (they are only read)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"out={str(out)!r} cannot be made ({err.strerror or err}); expected a writable "
                             "directory") from None
        folder = Folder(path)
        files = [write_csv(path / Compare.file, *self.compare_rows()),
                 write_csv(path / "unmatched.csv", *self.unmatched_rows()),
                 folder.write_text("compare.md", self.markdown())]
        found = [c for c in self.found if c.pairs]
        if found:
            folder.directory("plots")
            spec = {"key": self.key, "reference": self.labels[0], "metric": self.metric}
            files += [file for file in Compare(spec).figures(self.summary, found, path / "plots") if file]
        return files


def _dotted(config: Any, key: str) -> Any:
    """The value at dotted ``key`` of a nested config (None where there is none)."""
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix[:-1]: config} if prefix else {}
    return {key: value for name, child in config.items() for key, value in _flat(child, f"{prefix}{name}.").items()}


def _equal(ours: Any, theirs: Any) -> bool:
    """Equal values, numbers by value (1 and 1.0 alike) but never a boolean and a number."""
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return type(ours) is type(theirs) and ours == theirs
    return bool(ours == theirs)


def _same(ours: Any, theirs: Any) -> bool:
    """Two configurations' values of one key match: equal, or one of them does not read the key (``UNUSED``: its
    other values, equal on both sides, make the key irrelevant there)."""
    return ours == UNUSED or theirs == UNUSED or _equal(ours, theirs)


def _experiment(source: str | os.PathLike | Folder | Experiment) -> Experiment:
    return source if isinstance(source, Experiment) else load_experiment(source)


def compare_experiments(a: str | os.PathLike | Folder | Experiment, b: str | os.PathLike | Folder | Experiment,
                        key: str = "experiment", metric: str | None = None) -> ExperimentComparison:
    """Experiment ``b`` against experiment ``a``, configuration by configuration and seed by seed (see
    ``ExperimentComparison``). ``metric`` defaults to the experiments' sweep metric (refused when the two differ);
    it must be one both experiments' trials report. Reads both folders (safely: ``load_experiment``), writes
    nothing; ``.write(out)`` writes the tables and the figure."""
    if not plausible(key):
        raise ValueError(f"key={key!r} is not allowed; expected a plain name (letters, digits, _ . -), e.g. "
                         "code_version: what differs between the two experiments")
    a, b = _experiment(a), _experiment(b)
    labels = (a.result.name, b.result.name)
    if labels[0] == labels[1]:
        labels = (f"{labels[0]} (A)", f"{labels[1]} (B)")
    common = [name for name in metric_names(a.records) if name in set(metric_names(b.records))]
    if metric is None:
        chosen = {m for m in (a.result.metric, b.result.metric) if m}
        if len(chosen) != 1:
            what = (f"the sweep metrics differ ({a.result.metric} in A, {b.result.metric} in B)" if chosen
                    else "neither experiment names a sweep metric")
            raise ValueError(f"metric: {what}; choose one with --metric (allowed: {', '.join(common) or 'none yet'})")
        metric = chosen.pop()
    if metric not in common:
        raise ValueError(f"metric={metric!r}: not reported by the trials of both experiments; allowed: "
                         f"{', '.join(common) or 'none yet (no reports in one of them)'}")
    modes = {m for m in (a.result.directions.get(metric), b.result.directions.get(metric)) if m}
    mode = modes.pop() if len(modes) == 1 else None  # unknown, or the two disagree: no better or worse

    keys = list(dict.fromkeys([*a.result.keys, *b.result.keys]))

    def values(side: Experiment, configuration: Configuration) -> dict[str, Any]:
        return {k: configuration.values[k] if k in configuration.values else _dotted(side.config, k) for k in keys}

    ours = [(c, values(a, c)) for c in a.result.configurations]
    theirs = [(c, values(b, c)) for c in b.result.configurations]
    found, matched_a, matched_b = [], set(), set()
    for i, (first, first_values) in enumerate(ours):
        for j, (second, second_values) in enumerate(theirs):
            if not all(_same(first_values[k], second_values[k]) for k in keys):
                continue
            matched_a.add(i)
            matched_b.add(j)
            merged = {k: second_values[k] if first_values[k] == UNUSED else first_values[k] for k in keys}
            found.append(Comparison.paired(key, labels[1], labels[0], metric, mode, merged,
                                           by_seed(second, metric, b.result.base_seed),
                                           by_seed(first, metric, a.result.base_seed)))
    found.sort(key=lambda c: [_order(v) for v in c.values.values()])
    unmatched = [(labels[0], v, c) for i, (c, v) in enumerate(ours) if i not in matched_a]
    unmatched += [(labels[1], v, c) for j, (c, v) in enumerate(theirs) if j not in matched_b]
    trial_a, trial_b = (_flat({s: side.config.get(s) for s in TRIAL_SECTIONS if s in side.config}) for side in (a, b))
    differences = {k: (trial_a.get(k), trial_b.get(k)) for k in dict.fromkeys([*trial_a, *trial_b])
                   if k not in keys and plausible(k) and not _equal(trial_a.get(k), trial_b.get(k))}
    return ExperimentComparison(a, b, key, labels, metric, mode, keys, found, unmatched, differences)
