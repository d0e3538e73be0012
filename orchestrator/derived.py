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

``sweep.compare`` — ``{key, reference, metric}``: every other value of a swept key against the
reference value, paired seed by seed among configurations whose other swept values are equal: the
differences metric(value) − metric(reference) of the completed seeds present on both sides, their
mean, standard error, a 95 % t-interval and the number of pairs (``compare.csv``). One pair has no
uncertainty, and says so.

``trainer.eval_samples_curve`` — each trial reports its best model's metric at several evaluation
sample counts; ``samples_points`` averages them over the seeds of a configuration (``eval_samples.csv``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import stats as scipy_stats

from orchestrator.aggregate import SEED_KEY, Configuration, Summary, _order, markdown_cell, text, write_csv
from orchestrator.folder import one_line
from workers.schema import TrainerSettings


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


@dataclass(frozen=True)
class Comparison:
    """``metric`` at ``key`` = ``value`` minus at ``key`` = ``reference``, paired by seed, other values equal."""

    key: str
    value: Any
    reference: Any
    metric: str
    mode: str | None  # "min" | "max": which sign of the difference is better (None: the direction is unknown)
    values: dict[str, Any]  # the other swept keys
    seeds: list[Any]  # the paired seeds
    differences: list[float]  # value − reference, one per paired seed
    value_mean: float  # over the paired seeds
    reference_mean: float

    @property
    def pairs(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.differences else math.nan

    @property
    def std_error(self) -> float:
        return float(np.std(self.differences, ddof=1) / math.sqrt(self.pairs)) if self.pairs > 1 else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % confidence interval of the mean difference (t-distribution, pairs − 1 degrees of freedom)."""
        if self.pairs < 2:
            return math.nan, math.nan
        half = float(scipy_stats.t.ppf(0.975, self.pairs - 1)) * self.std_error
        return self.mean - half, self.mean + half

    def verdict(self) -> str:
        """In words: which side is better at 95 %, or why nothing can be said."""
        if self.pairs == 0:
            return "no paired seeds"
        if self.pairs == 1:
            return "one seed: no uncertainty (run sweep.seeds >= 2)"
        low, high = self.interval
        if low <= 0 <= high:
            return "no significant difference (95 %)"
        if self.mode is None:
            return f"{text(self.value)} differs from {text(self.reference)} (95 %; which is better is unknown)"
        lower_is_better = self.mode == "min"
        better = (high < 0) == lower_is_better
        return f"{text(self.value)} {'better' if better else 'worse'} than {text(self.reference)} (95 %)"

    def label(self) -> str:
        return ", ".join([f"{self.key}={text(self.value)}"] + [f"{k}={text(v)}" for k, v in self.values.items()])


@dataclass(frozen=True)
class SamplesPoint:
    """One configuration's ``metric`` evaluated with ``samples`` group samples, over its completed seeds."""

    values: dict[str, Any]
    metric: str  # <split>_<task metric>
    samples: int
    mean: float  # mean over seeds of each trial's mean over draws
    seed_std: float  # std over seeds (ddof 1; NaN for one seed)
    draw_std: float  # mean over seeds of the std over draws: the spread of one evaluation
    seeds: int

    def label(self) -> str:
        return ", ".join(f"{key}={text(value)}" for key, value in self.values.items())


def compare_spec(config: Mapping[str, Any], summary: Summary | None = None) -> dict[str, Any] | None:
    """``sweep.compare`` with its metric filled in (the sweep metric by default), or None."""
    spec = (config.get("sweep") or {}).get("compare")
    if not spec:
        return None
    metric = spec.get("metric") or (summary.metric if summary else None) or (config.get("sweep") or {}).get("metric")
    return {**spec, "metric": metric}


def base_seed(config: Mapping[str, Any]) -> Any:
    """The seed of trials that do not sweep it (``sweep.seeds`` = 1): the config's ``trainer.seed`` (the
    schema's default where a saved config.json names none)."""
    return (config.get("trainer") or {}).get("seed", TrainerSettings().seed)


def _seed(trial, default: Any) -> Any:
    return trial.params.get(SEED_KEY, default)


def comparisons(summary: Summary, spec: Mapping[str, Any] | None, base_seed: Any = 0) -> list[Comparison]:
    """Every other value of ``spec['key']`` against its reference, per set of other swept values."""
    if not spec or not spec.get("metric"):
        return []
    key, reference, metric = spec["key"], spec["reference"], spec["metric"]
    others = [other for other in summary.keys if other != key]

    def same_others(c: Configuration) -> str:
        return repr([text(c.values.get(o)) for o in others])

    references = {same_others(c): c for c in summary.configurations if c.values.get(key) == reference}
    found = []
    for configuration in summary.configurations:
        partner = references.get(same_others(configuration))
        if key not in configuration.values or configuration.values[key] == reference or partner is None:
            continue
        sides = [{text(_seed(t, base_seed)): t.last[metric] for t in c.trials
                  if t.state == "completed" and isinstance(t.last.get(metric), (int, float))
                  and math.isfinite(t.last[metric])} for c in (configuration, partner)]
        seeds = sorted(set(sides[0]) & set(sides[1]), key=lambda seed: _order(seed))
        ours, theirs = [sides[0][s] for s in seeds], [sides[1][s] for s in seeds]
        found.append(Comparison(key, configuration.values[key], reference, metric, summary.directions.get(metric),
                                {o: configuration.values[o] for o in others}, seeds,
                                [a - b for a, b in zip(ours, theirs)],
                                float(np.mean(ours)) if seeds else math.nan,
                                float(np.mean(theirs)) if seeds else math.nan))
    return sorted(found, key=lambda c: [_order(v) for v in (c.value, *c.values.values())])


def samples_points(summary: Summary) -> list[SamplesPoint]:
    """The evaluation-sample curves of the completed trials, per configuration, metric and count."""
    points = []
    for configuration in summary.configurations:
        by_point: dict[tuple[str, int], list[dict[str, float]]] = {}
        for trial in configuration.trials:
            if trial.state != "completed":
                continue
            for metric, curve in trial.curve.items():
                for count, point in curve.items():
                    by_point.setdefault((metric, int(count)), []).append(point)
        for (metric, count), found in sorted(by_point.items()):
            means = np.array([point["mean"] for point in found], dtype=float)
            draws = np.array([point.get("std", math.nan) for point in found], dtype=float)
            points.append(SamplesPoint(configuration.values, metric, count, float(means.mean()),
                                       float(means.std(ddof=1)) if means.size > 1 else math.nan,
                                       float(draws.mean()), int(means.size)))
    return points


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


def compare_table(summary: Summary, found: list[Comparison]) -> tuple[list[str], list[list[Any]]]:
    """``compare.csv``: key, value, reference, the other swept keys, metric, pairs, the mean paired difference,
    its standard error and 95 % interval, both sides' means over the pairs, and the verdict in words."""
    keys = [key for key in summary.keys if any(key in c.values for c in found)]
    header = ["key", "value", "reference", *keys, "metric", "pairs", "mean_difference", "std_error", "ci95_low",
              "ci95_high", "value_mean", "reference_mean", "verdict"]
    return header, [[c.key, c.value, c.reference, *(c.values.get(k) for k in keys), c.metric, c.pairs, c.mean,
                     c.std_error, *c.interval, c.value_mean, c.reference_mean, c.verdict()] for c in found]


def samples_table(summary: Summary, points: list[SamplesPoint]) -> tuple[list[str], list[list[Any]]]:
    """``eval_samples.csv``: the swept values, metric, evaluation samples N, mean over seeds, std over seeds,
    the mean spread over noise draws of one evaluation, and the number of seeds."""
    header = [*summary.keys, "metric", "eval_samples", "mean", "seed_std", "draw_std", "seeds"]
    return header, [[*(p.values.get(k) for k in summary.keys), p.metric, p.samples, p.mean, p.seed_std, p.draw_std,
                     p.seeds] for p in points]


def write_derived(path: Path, config: Mapping[str, Any], summary: Summary) -> list[Path]:
    """``derived.csv``, ``fits.csv`` and ``compare.csv`` when the sweep asks for them (written even before any
    result), and ``eval_samples.csv`` when trials reported evaluation-sample curves."""
    files = []
    spec = compare_spec(config, summary)
    if spec:
        found = comparisons(summary, spec, base_seed(config))
        files.append(write_csv(path / "compare.csv", *compare_table(summary, found)))
    points = samples_points(summary)
    if points:
        files.append(write_csv(path / "eval_samples.csv", *samples_table(summary, points)))
    if derived_specs(config):
        files.append(write_derived_csv(path / "derived.csv", summary, derived_specs(config)))
    if loglog_specs(config):
        files.append(write_fits_csv(path / "fits.csv", summary, loglog_specs(config)))
    return files


def _number(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4g}"


def better(mode: str | None) -> str:
    """Which sign of a difference is better, in words."""
    return {"min": "lower is better", "max": "higher is better"}.get(mode, "which is better is unknown")


def comparison_markdown(found: list[Comparison], summary: Summary) -> str:
    """The paired comparisons as a Markdown section (empty without any)."""
    if not found:
        return ""
    first = found[0]
    keys = [key for key in summary.keys if key in first.values]
    lines = [one_line(f"## {first.metric}: each {first.key} against {text(first.reference)}, paired by seed"), "",
             one_line(f"Difference = {text(first.key)} value − {text(first.reference)} on the same seed "
                      f"({better(first.mode)}); mean ± standard error over the pairs, 95 % t-interval."), "",
             "| " + " | ".join(map(markdown_cell, [first.key, *keys, "pairs", "difference", "95 % interval",
                                                   "verdict"])) + " |",
             "|" + "---|" * (1 + len(keys)) + "---:|---:|---:|---|"]
    for c in found:
        low, high = c.interval
        difference = (f"{_number(c.mean)} ± {_number(c.std_error)}" if c.pairs > 1 else _number(c.mean))
        interval = f"[{_number(low)}, {_number(high)}]" if c.pairs > 1 else "-"
        cells = [text(c.value), *(text(c.values[k]) for k in keys), str(c.pairs), difference, interval, c.verdict()]
        lines.append("| " + " | ".join(map(markdown_cell, cells)) + " |")
    return "\n".join(lines) + "\n"


def samples_markdown(points: list[SamplesPoint], summary: Summary) -> str:
    """The evaluation-sample curves as a Markdown section: one row per configuration and metric, one column
    per sample count N (mean over seeds ± the spread over noise draws of one evaluation)."""
    if not points:
        return ""
    counts = sorted({p.samples for p in points})
    rows: dict[tuple[str, str], dict[int, SamplesPoint]] = {}
    for point in points:
        rows.setdefault((json_key(point.values, summary.keys), point.metric), {})[point.samples] = point
    lines = ["## Metric against the number of evaluation samples N (best epoch's model)", "",
             "Cells: mean over seeds ± the spread (std) over fresh noise draws of one evaluation.", "",
             "| " + " | ".join(map(markdown_cell, [*summary.keys, "metric", *(f"N={n}" for n in counts)])) + " |",
             "|" + "---|" * (len(summary.keys) + 1) + "---:|" * len(counts)]
    for (_, metric), by_count in rows.items():
        values = next(iter(by_count.values())).values
        cells = [text(values.get(k)) for k in summary.keys] + [metric]
        cells += [f"{by_count[n].mean:.4g} ± {by_count[n].draw_std:.2g}" if n in by_count else "-" for n in counts]
        lines.append("| " + " | ".join(map(markdown_cell, cells)) + " |")
    return "\n".join(lines) + "\n"


def json_key(values: Mapping[str, Any], keys: list[str]) -> str:
    return repr([text(values.get(key)) for key in keys])
