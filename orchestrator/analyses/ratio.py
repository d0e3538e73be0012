"""``sweep.derived`` — ``[{name, metric, key, numerator, denominator}]``: each configuration whose ``key`` is
``numerator`` is paired with the configuration whose ``key`` is ``denominator`` and whose other swept values are
the same, and the means over seeds of ``metric`` are divided (paper 004: MSE_GNN / MSE_EGNN at each dimension
d). The std propagates the two stds over seeds to first order, std(r) = |r| · sqrt((s_num / m_num)² +
(s_den / m_den)²). ``derived.csv``: one row per pair; ``derived_<name>_vs_<key>.png`` against each other
numeric swept key."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from orchestrator.aggregate import Configuration, Summary, Table, _order, text
from orchestrator.analyses import Analysis, Context, register_analysis
from workers.checks import fail

KEYS = ("name", "metric", "key", "numerator", "denominator")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=,+-]*$")


@dataclass(frozen=True)
class Ratio:
    """``metric`` at ``key`` = numerator over ``metric`` at ``key`` = denominator, other values equal."""

    name: str
    metric: str
    values: dict[str, Any]  # the other swept keys
    numerator: tuple[float, float, int]  # mean, std over seeds, completed seeds
    denominator: tuple[float, float, int]

    @property
    def value(self) -> float:
        top, bottom = self.numerator[0], self.denominator[0]
        return top / bottom if bottom else math.nan

    @property
    def std(self) -> float:
        (top, top_std, _), (bottom, bottom_std, _) = self.numerator, self.denominator
        if not (top and bottom):
            return math.nan
        return abs(self.value) * math.hypot(top_std / top, bottom_std / bottom)


def statistic(configuration: Configuration, metric: str) -> tuple[float, float, int] | None:
    """(mean, std, completed seeds) of ``metric`` in a configuration, None without a finite mean."""
    mean, std = configuration.stats.get(metric, (math.nan, math.nan))
    return (mean, std, configuration.n_seeds) if math.isfinite(mean) else None


def ratios(summary: Summary, spec: Mapping[str, Any]) -> list[Ratio]:
    """Every numerator/denominator pair of ``spec`` in the summary, in the order of the other values."""
    key, others = spec["key"], [other for other in summary.keys if other != spec["key"]]
    groups: dict[str, list[Configuration]] = {}
    for configuration in summary.configurations:
        if key in configuration.values:
            groups.setdefault(repr([text(configuration.values[o]) for o in others]), []).append(configuration)
    found = []
    for group in groups.values():
        top, bottom = (next((c for c in group if c.values[key] == spec[part]), None)
                       for part in ("numerator", "denominator"))  # by value: 2 == 2.0
        top_stat = top and statistic(top, spec["metric"])
        bottom_stat = bottom and statistic(bottom, spec["metric"])
        if top_stat and bottom_stat:
            found.append(Ratio(spec["name"], spec["metric"], {o: top.values[o] for o in others}, top_stat, bottom_stat))
    return sorted(found, key=lambda ratio: [_order(value) for value in ratio.values.values()])


@register_analysis
class Derived(Analysis):
    key = "derived"
    file = "derived.csv"

    @classmethod
    def check(cls, entry: Any, where: str, context: Context) -> dict[str, Any]:
        shape = "{name: ..., metric: ..., key: <swept key>, numerator: <its value>, denominator: <its value>}"
        if not isinstance(entry, Mapping) or set(entry) != set(KEYS):
            wrong = sorted(set(entry) ^ set(KEYS)) if isinstance(entry, Mapping) else []
            fail(where, entry, shape + (f" (missing or unknown: {', '.join(wrong)})" if wrong else ""))
        name = entry["name"]
        if not (isinstance(name, str) and NAME.match(name)):
            fail(f"{where}.name", name, "a name of letters, digits and _ . = , + - (it names a plot file)")
        context.check_metric(f"{where}.metric", entry["metric"])
        domain = context.swept(f"{where}.key", entry["key"])
        if not domain.listed:
            fail(f"{where}.key", entry["key"], "a key swept with {grid: [...]} or {choice: [...]} (configurations "
                 "are paired by equal values)")
        for part in ("numerator", "denominator"):
            if entry[part] not in domain.values:
                fail(f"{where}.{part}", entry[part], f"one of the values of sweep.params.{entry['key']}: "
                     f"{list(domain.values)}")
        if entry["numerator"] == entry["denominator"]:
            fail(f"{where}.denominator", entry["denominator"], "a value other than the numerator")
        return dict(entry)

    @classmethod
    def check_together(cls, specs: list[dict[str, Any]]) -> None:
        names = [spec["name"] for spec in specs]
        for index, name in enumerate(names):
            if name in names[:index]:
                fail(f"sweep.derived[{index}].name", name, "a new name (it names a plot file and derived.csv rows)")

    def line(self) -> str:
        s = self.spec
        return (f"derived: {s['name']} = {s['metric']} at {s['key']}={s['numerator']} / at {s['key']}="
                f"{s['denominator']} ({self.file})")

    def compute(self, summary: Summary) -> list[Ratio]:
        return ratios(summary, self.spec)

    @classmethod
    def table(cls, summary: Summary, found: list[Ratio]) -> Table:
        """name, metric, the other swept keys, ratio ± std, numerator and denominator statistics."""
        keys = [key for key in summary.keys if any(key in ratio.values for ratio in found)]
        parts = ("mean", "std", "seeds")
        header = ["name", "metric", *keys, "ratio", "ratio_std", *(f"numerator_{p}" for p in parts),
                  *(f"denominator_{p}" for p in parts)]
        return header, [[r.name, r.metric, *(r.values.get(key) for key in keys), r.value, r.std, *r.numerator,
                         *r.denominator] for r in found]

    def figures(self, summary: Summary, found: list[Ratio], directory: Path) -> list[Path | None]:
        from orchestrator.figures import numeric_keys, safe_name

        name = self.spec["name"]
        mine = [ratio for ratio in found if ratio.name == name]
        return [figure(summary, self.spec, mine, key, directory / safe_name(f"derived_{name}_vs_{key}.png"))
                for key in numeric_keys(summary) if key != self.spec["key"]]


def figure(summary: Summary, spec: Mapping[str, Any], found: list[Ratio], key: str, path: Path) -> Path | None:
    """One ratio (± propagated std) against ``key``; lines by the remaining keys; a dotted line at 1."""
    from orchestrator.figures import points_figure

    others = [other for other in summary.keys if other not in (key, spec["key"]) and other not in summary.continuous]
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for ratio in found:
        if math.isfinite(ratio.value) and isinstance(ratio.values.get(key), (int, float)):
            label = ", ".join(f"{o}={text(ratio.values[o])}" for o in others)
            lines.setdefault(label, []).append((float(ratio.values[key]), ratio.value, ratio.std))
    ylabel = f"{spec['metric']}: {text(spec['numerator'])} / {text(spec['denominator'])} (± propagated std)"
    return points_figure(dict(sorted(lines.items())), key, ylabel, f"{summary.name}: {spec['name']}", path,
                         unit_line=True)
