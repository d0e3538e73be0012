"""An experiment as pandas DataFrames: the Python way to read what a sweep produced.

    from orchestrator.results import load_experiment

    experiment = load_experiment("runs/quickstart")   # <storage>/<name>, during or after the sweep
    experiment.trials        # one row per trial (trials.csv): state, swept values, last and best_* metrics
    experiment.summary       # one row per configuration (summary.csv): mean and std over the seeds
    experiment.comparisons   # sweep.compare (compare.csv): paired differences, std errors, 95 % intervals
    experiment.curves        # one row per trial and report: the learning curves (epoch, train/val metrics)
    experiment.eval_samples  # metric against evaluation samples N per configuration (eval_samples.csv)

    comparison = compare_experiments("runs/before", "runs/after")   # two experiments side by side
    comparison.table         # B − A per matching configuration, paired by seed (compare.csv's columns)
    comparison.unmatched_table   # configurations only one of them ran
    comparison.write("before-vs-after")   # compare.csv, unmatched.csv, compare.md, plots/ (never into A or B)

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
    SEED_KEY,
    Configuration,
    Summary,
    Table,
    _order,
    expand_unused,
    markdown_cell,
    metric_names,
    number,
    summarize,
    summary_rows,
    summary_table,
    swept_keys,
    text,
    trials_table,
    unused_column,
    write_csv,
    write_summary_csv,
    write_trials_csv,
)
from orchestrator.analyses import REGISTRY, Analyses, Analysis, Context
from orchestrator.analyses.compare import Compare, Comparison, by_seed
from orchestrator.config import TRIAL_SECTIONS
from orchestrator.folder import Folder, one_line, plausible
from orchestrator.records import TrialRecord, open_experiment, read_trials
from orchestrator.samples import SamplesPoint, samples_markdown, samples_points, samples_table
from workers import UNUSED


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


# -- two experiments side by side ----------------------------------------------------------------------


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
