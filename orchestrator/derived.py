"""Results across configurations: ratios between two values of a swept key, and log-log fits.

``sweep.derived`` — ``[{name, metric, key, numerator, denominator}]``: each configuration whose
``key`` is ``numerator`` is paired with the configuration whose ``key`` is ``denominator`` and whose
other swept values are the same, and the means over seeds of ``metric`` are divided (paper 004:
MSE_GNN / MSE_EGNN at each dimension d). The std propagates the two stds over seeds to first
order, std(r) = |r| · sqrt((s_num / m_num)² + (s_den / m_den)²). ``derived.csv``: one row per pair.

``sweep.loglog`` — ``[{metric, key, complement}]``: a power law log10 y = intercept + slope · log10 x
is fitted by least squares on each line (the configurations sharing the values of the other discrete
swept keys), with x the value of ``key`` and y the mean over seeds of ``metric``, or 1 − that mean
with ``complement: true`` (the error rate of an accuracy; paper 004: test error vs training-set
size). Points with x ≤ 0, y ≤ 0 or no value are left out. ``fits.csv``: one row per line with at
least two points (slope, its standard error from three points on, intercept, R²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from orchestrator.aggregate import Configuration, Summary, _order, text, write_csv


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


@dataclass(frozen=True)
class Fit:
    """A least-squares line through (log10 x, log10 y) of one line of configurations."""

    quantity: str  # the metric, or "1-<metric>" with complement
    key: str
    values: dict[str, Any]  # the other discrete swept keys that define the line
    points: list[tuple[float, float, float]]  # (x as swept, y mean, y std) in x order
    slope: float
    slope_stderr: float  # NaN with two points
    intercept: float
    r2: float

    def label(self) -> str:
        return ", ".join(f"{key}={text(value)}" for key, value in self.values.items())


def derived_specs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((config.get("sweep") or {}).get("derived") or [])


def loglog_specs(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"complement": False, **spec} for spec in (config.get("sweep") or {}).get("loglog") or []]


def quantity(spec: Mapping[str, Any]) -> str:
    """What a log-log spec fits: the metric, or ``1-<metric>`` with ``complement``."""
    return f"1-{spec['metric']}" if spec.get("complement") else spec["metric"]


def lines_by_other_keys(summary: Summary, key: str) -> dict[str, list[Configuration]]:
    """Configurations grouped by the values of the other discrete swept keys (label -> members)."""
    others = [other for other in summary.keys if other != key and other not in summary.continuous]
    lines: dict[str, list[Configuration]] = {}
    for configuration in summary.configurations:
        label = ", ".join(f"{other}={text(configuration.values[other])}" for other in others)
        lines.setdefault(label, []).append(configuration)
    return dict(sorted(lines.items()))


def _statistic(configuration: Configuration, metric: str) -> tuple[float, float, int] | None:
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
        top_stat = top and _statistic(top, spec["metric"])
        bottom_stat = bottom and _statistic(bottom, spec["metric"])
        if top_stat and bottom_stat:
            found.append(Ratio(spec["name"], spec["metric"], {o: top.values[o] for o in others}, top_stat, bottom_stat))
    return sorted(found, key=lambda ratio: [_order(value) for value in ratio.values.values()])


def _line_fit(points: list[tuple[float, float, float]]) -> tuple[float, float, float, float]:
    """(slope, slope standard error, intercept, R²) of log10 y on log10 x."""
    x, y = np.log10([p[0] for p in points]), np.log10([p[1] for p in points])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    spread = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / spread if spread > 0 else 1.0
    stderr = math.nan
    if len(points) > 2 and float(((x - x.mean()) ** 2).sum()) > 0:
        stderr = math.sqrt(float((residual**2).sum()) / (len(points) - 2) / float(((x - x.mean()) ** 2).sum()))
    return float(slope), stderr, float(intercept), r2


def fits(summary: Summary, spec: Mapping[str, Any]) -> list[Fit]:
    """One power-law fit per line of ``spec['key']`` with at least two usable points."""
    key, metric = spec["key"], spec["metric"]
    others = [other for other in summary.keys if other != key and other not in summary.continuous]
    found = []
    for members in lines_by_other_keys(summary, key).values():
        points = []
        for configuration in members:
            x, stat = configuration.values.get(key), _statistic(configuration, metric)
            if stat is None or not isinstance(x, (int, float)) or isinstance(x, bool):
                continue
            y = 1.0 - stat[0] if spec.get("complement") else stat[0]
            if x > 0 and y > 0:
                points.append((x, y, stat[1]))
        if len({p[0] for p in points}) >= 2:
            points.sort()
            found.append(Fit(quantity(spec), key, {o: members[0].values[o] for o in others}, points,
                             *_line_fit(points)))
    return found


def _columns(summary: Summary, keys: set[str]) -> list[str]:
    return [key for key in summary.keys if key in keys]


def write_derived_csv(path: Path, summary: Summary, specs: list[Mapping[str, Any]]) -> Path:
    """``derived.csv``: name, metric, the other swept keys, ratio ± std, numerator and denominator statistics."""
    rows = [ratio for spec in specs for ratio in ratios(summary, spec)]
    keys = _columns(summary, {key for spec in specs for key in summary.keys if key != spec["key"]})
    parts = ("mean", "std", "seeds")
    header = ["name", "metric", *keys, "ratio", "ratio_std", *(f"numerator_{p}" for p in parts),
              *(f"denominator_{p}" for p in parts)]
    return write_csv(path, header, ([r.name, r.metric, *(r.values.get(key) for key in keys), r.value, r.std,
                                     *r.numerator, *r.denominator] for r in rows))


def write_fits_csv(path: Path, summary: Summary, specs: list[Mapping[str, Any]]) -> Path:
    """``fits.csv``: quantity, key, the line's other swept values, points, slope (± stderr), intercept, R²."""
    rows = [fit for spec in specs for fit in fits(summary, spec)]
    keys = _columns(summary, {key for fit in rows for key in fit.values})
    header = ["quantity", "key", *keys, "points", "slope", "slope_stderr", "intercept", "r2", "x_min", "x_max"]
    return write_csv(path, header, ([f.quantity, f.key, *(f.values.get(key) for key in keys), len(f.points), f.slope,
                                     f.slope_stderr, f.intercept, f.r2, f.points[0][0], f.points[-1][0]]
                                    for f in rows))


def write_derived(path: Path, config: Mapping[str, Any], summary: Summary) -> list[Path]:
    """``derived.csv`` and ``fits.csv`` when the sweep asks for them (written even before any result)."""
    files = []
    if derived_specs(config):
        files.append(write_derived_csv(path / "derived.csv", summary, derived_specs(config)))
    if loglog_specs(config):
        files.append(write_fits_csv(path / "fits.csv", summary, loglog_specs(config)))
    return files
