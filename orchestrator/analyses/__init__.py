"""Analyses across configurations: what a sweep asks the report to compute beyond the summary.

Each kind of analysis is one ``Analysis`` subclass, registered under the ``sweep.<key>`` that configures it
(``compare``, ``derived``, ``loglog`` are the built-in ones; ``register_analysis`` adds yours). A kind goes
through the same five steps everywhere:

    spec (config) -> ``check`` (before Ray starts; one-line errors naming sweep.<key>...) -> ``line`` (the
    launch plan) -> ``compute`` (from the summary, each time a report is written) -> ``table`` (its CSV, and
    the Python API's DataFrame), ``markdown`` (its section of summary.md) and ``figures`` (its plots)

``Analyses`` is the set a sweep configured, built once from the sweep section (``from_sweep``): checked at
launch against the swept domains and the metrics the task reports, and read back from ``config.json`` for a
report without those checks (a folder is read as it was launched).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from orchestrator.aggregate import Summary, Table
from orchestrator.domains import Domain
from workers.checks import fail


@dataclass(frozen=True)
class Context:
    """What an analysis is checked against: the swept domains, the metrics this task's trials report (with
    their direction; None: not checked, e.g. a report of a saved folder), the sweep's metric and mode."""

    domains: Mapping[str, Domain]
    metrics: Mapping[str, str] | None
    metric: str | None
    mode: str = "min"
    task: str = ""

    def check_metric(self, where: str, metric: Any) -> None:
        if self.metrics is not None and metric not in self.metrics:
            fail(where, metric, f"a metric the trials of task {self.task!r} report: {', '.join(self.metrics)}")

    def swept(self, where: str, key: Any) -> Domain:
        if key not in self.domains:
            fail(where, key, f"a key of sweep.params (swept here: {', '.join(self.domains) or 'none'})")
        return self.domains[key]


class Analysis:
    """One kind of analysis. Subclasses set the class attributes and implement ``check``, ``line``,
    ``compute`` and ``table`` (``markdown`` and ``figures`` are optional)."""

    key: ClassVar[str]  # sweep.<key> configures it
    many: ClassVar[bool] = True  # a list of entries (else one mapping or null)
    file: ClassVar[str]  # the CSV it writes

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec

    @classmethod
    def check(cls, entry: Any, where: str, context: Context) -> dict[str, Any]:
        """The entry checked (one-line errors naming ``where``), normalised (defaults filled in)."""
        raise NotImplementedError

    @classmethod
    def read(cls, entry: Mapping[str, Any], context: Context) -> dict[str, Any]:
        """An entry of a saved ``config.json``, normalised without the launch's checks."""
        return dict(entry)

    @classmethod
    def check_together(cls, specs: list[dict[str, Any]]) -> None:
        """What the entries of one kind must satisfy together (e.g. distinct names); after each is checked."""

    def line(self) -> str:
        """What the launch plan says it will compute."""
        raise NotImplementedError

    def compute(self, summary: Summary) -> list[Any]:
        raise NotImplementedError

    @classmethod
    def table(cls, summary: Summary, found: list[Any]) -> Table:
        """The CSV (and DataFrame) of every entry of this kind together."""
        raise NotImplementedError

    @classmethod
    def markdown(cls, summary: Summary, found: list[Any]) -> str:
        return ""

    def why_empty(self, summary: Summary) -> str:
        """Why ``compute`` found nothing (said in summary.md in place of the section)."""
        if not any(configuration.n_seeds for configuration in summary.configurations):
            return "no trial has finished yet"
        return "the finished configurations hold none of the configurations it needs (see its line in the plan)"

    def figures(self, summary: Summary, found: list[Any], directory: Path) -> list[Path | None]:
        return []


REGISTRY: dict[str, type[Analysis]] = {}


def register_analysis(kind: type[Analysis]) -> type[Analysis]:
    """Add a kind of analysis (usable as a class decorator); its ``key`` must be new."""
    if not (isinstance(kind, type) and issubclass(kind, Analysis)):
        raise ValueError(f"register_analysis({kind!r}): expected a subclass of orchestrator.analyses.Analysis")
    if kind.key in REGISTRY and REGISTRY[kind.key] is not kind:
        raise ValueError(f"register_analysis({kind.__name__}): sweep.{kind.key} is taken by "
                         f"{REGISTRY[kind.key].__name__}; choose another key")
    REGISTRY[kind.key] = kind
    return kind


@dataclass
class Analyses:
    """The analyses one sweep configured, in registry order, each with its checked spec."""

    chosen: list[Analysis] = field(default_factory=list)

    @classmethod
    def from_sweep(cls, sweep: Mapping[str, Any], context: Context, checked: bool = True) -> "Analyses":
        """``sweep``'s analysis entries: checked (launch) or read as saved (report)."""
        chosen = []
        for key, kind in REGISTRY.items():
            given = sweep.get(key)
            if given is None or given == []:
                continue
            if kind.many and not isinstance(given, list):
                fail(f"sweep.{key}", given, "a list of entries (see README, Sweeps)")
            entries = list(enumerate(given)) if kind.many else [(None, given)]
            specs = []
            for index, entry in entries:
                where = f"sweep.{key}" + (f"[{index}]" if index is not None else "")
                specs.append(kind.check(entry, where, context) if checked else kind.read(entry, context))
            if checked:
                kind.check_together(specs)
            chosen += [kind(spec) for spec in specs]
        return cls(chosen)

    def kinds(self) -> dict[type[Analysis], list[Analysis]]:
        grouped: dict[type[Analysis], list[Analysis]] = {}
        for analysis in self.chosen:
            grouped.setdefault(type(analysis), []).append(analysis)
        return grouped

    def lines(self) -> list[str]:
        return [analysis.line() for analysis in self.chosen]

    def compute(self, summary: Summary) -> dict[type[Analysis], list[Any]]:
        """Every result, by kind (an empty list when a kind found nothing yet)."""
        return {kind: [row for analysis in members for row in analysis.compute(summary)]
                for kind, members in self.kinds().items()}


def unswept_analyses(sweep: dict[str, Any], unswept: set[str], named_keys: set[str]) -> None:
    """Drop, in place, a preset's analysis entries over a key the command line pinned or unswept
    (``experiment=ps_nbody_cpu symmetrizer.method=ps`` runs PS only, with nothing to compare it with); entries
    the command line set itself (``named_keys``) are kept and checked as usual."""
    gone = unswept - set(sweep.get("params") or {})
    for key, kind in REGISTRY.items():
        if any(name == f"sweep.{key}" or name.startswith(f"sweep.{key}.") for name in named_keys):
            continue
        given = sweep.get(key)
        if kind.many and isinstance(given, list):
            sweep[key] = [entry for entry in given if not (isinstance(entry, dict) and entry.get("key") in gone)]
        elif isinstance(given, dict) and given.get("key") in gone:
            sweep[key] = None


from orchestrator.analyses import compare, loglog, ratio  # noqa: E402,F401 - the built-in kinds register here
