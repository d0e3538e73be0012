"""``sweep.loglog`` — ``[{metric, key, complement}]``: a power law log10 y = intercept + slope · log10 x is
fitted by least squares on each line (the configurations sharing the values of the other discrete swept keys),
with x the value of ``key`` and y the mean over seeds of ``metric``, or 1 − that mean with ``complement: true``
(the error rate of an accuracy; paper 004: test error vs training-set size). Points with x ≤ 0, y ≤ 0 or no
value are left out. ``fits.csv``: one row per line with at least two points (slope, its standard error from
three points on, intercept, R²); ``loglog_<quantity>_vs_<key>.png``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from orchestrator.aggregate import Summary, Table, lines_by_other_keys, text
from orchestrator.analyses import Analysis, Context, register_analysis
from orchestrator.analyses.ratio import statistic
from workers.checks import fail

KEYS = ("metric", "key", "complement")  # complement is optional (default false)


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


def quantity(spec: Mapping[str, Any]) -> str:
    """What a log-log spec fits: the metric, or ``1-<metric>`` with ``complement``."""
    return f"1-{spec['metric']}" if spec.get("complement") else spec["metric"]


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
            x, stat = configuration.values.get(key), statistic(configuration, metric)
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


@register_analysis
class LogLog(Analysis):
    key = "loglog"
    file = "fits.csv"

    @classmethod
    def check(cls, entry: Any, where: str, context: Context) -> dict[str, Any]:
        shape = "{metric: ..., key: <numeric swept key>} and optionally complement: true (fit 1 - metric)"
        if not isinstance(entry, Mapping) or not {"metric", "key"} <= set(entry) <= set(KEYS):
            fail(where, entry, shape)
        context.check_metric(f"{where}.metric", entry["metric"])
        domain = context.swept(f"{where}.key", entry["key"])
        if not domain.positive_numbers or (domain.listed and len(set(domain.values)) < 2):
            fail(f"{where}.key", entry["key"], f"a key swept over at least two numbers > 0 (sweep.params."
                 f"{entry['key']} has {domain.kind}: {list(domain.values)})")
        if not isinstance(entry.get("complement", False), bool):
            fail(f"{where}.complement", entry["complement"], "true (fit 1 - metric, e.g. an error rate) or false")
        return cls.read(entry, context)

    @classmethod
    def read(cls, entry: Mapping[str, Any], context: Context) -> dict[str, Any]:
        return {"complement": False, **entry}

    def line(self) -> str:
        what = f"1 - {self.spec['metric']}" if self.spec.get("complement") else self.spec["metric"]
        return f"loglog:  log({what}) against log({self.spec['key']}) ({self.file})"

    def compute(self, summary: Summary) -> list[Fit]:
        return fits(summary, self.spec)

    @classmethod
    def table(cls, summary: Summary, found: list[Fit]) -> Table:
        """quantity, key, the line's other swept values, points, slope (± stderr), intercept, R²."""
        keys = [key for key in summary.keys if any(key in fit.values for fit in found)]
        header = ["quantity", "key", *keys, "points", "slope", "slope_stderr", "intercept", "r2", "x_min", "x_max"]
        return header, [[f.quantity, f.key, *(f.values.get(key) for key in keys), len(f.points), f.slope,
                         f.slope_stderr, f.intercept, f.r2, f.points[0][0], f.points[-1][0]] for f in found]

    def figures(self, summary: Summary, found: list[Fit], directory: Path) -> list[Path | None]:
        from orchestrator.figures import safe_name

        mine = [fit for fit in found if fit.quantity == quantity(self.spec) and fit.key == self.spec["key"]]
        name = safe_name(f"loglog_{quantity(self.spec)}_vs_{self.spec['key']}.png")
        return [figure(summary, self.spec, mine, directory / name)] if mine else []


def figure(summary: Summary, spec: Mapping[str, Any], found: list[Fit], path: Path) -> Path:
    """Points (mean ± std over seeds) and their fitted power laws on log-log axes, slopes in the legend."""
    import matplotlib

    from orchestrator.figures import legend_outside, log_scale, panels, save

    drawing, (axes,) = panels(1, 6.5, 4.5)
    colors = matplotlib.colormaps["tab20" if len(found) > 10 else "tab10"]
    for index, fit in enumerate(found):
        x, mean, std = np.array(fit.points).T
        color = colors(index % colors.N)
        axes.errorbar(x, mean, yerr=std, marker="o", linestyle="none", capsize=3, color=color)
        grid = np.geomspace(x.min(), x.max(), 20)
        axes.plot(grid, 10 ** (fit.intercept + fit.slope * np.log10(grid)), color=color,
                  label=f"{fit.label() or 'all'} (slope {fit.slope:.2f})")
    log_scale(axes, "x")
    log_scale(axes, "y")
    axes.set_xlabel(spec["key"])
    axes.set_ylabel(quantity(spec).replace("1-", "1 − ", 1) + " (mean over seeds)")
    axes.set_title(f"{summary.name}: log-log fits of {quantity(spec)}", fontsize="medium")
    legend_outside(drawing, [axes])
    return save(drawing, path)
