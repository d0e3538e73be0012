"""Metric against the number of evaluation samples N: each trial with ``trainer.eval_samples_curve`` (or
``symsweep evaluate``) reports its best model's metric at several N; here they are averaged over the seeds of a
configuration (``eval_samples.csv``, a section of summary.md, ``eval_samples_<metric>.png``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from orchestrator.aggregate import Summary, Table, markdown_cell, text


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


def samples_table(summary: Summary, points: list[SamplesPoint]) -> Table:
    """``eval_samples.csv``: the swept values, metric, evaluation samples N, mean over seeds, std over seeds,
    the mean spread over noise draws of one evaluation, and the number of seeds."""
    header = [*summary.keys, "metric", "eval_samples", "mean", "seed_std", "draw_std", "seeds"]
    return header, [[*(p.values.get(k) for k in summary.keys), p.metric, p.samples, p.mean, p.seed_std, p.draw_std,
                     p.seeds] for p in points]


def json_key(values: Mapping[str, Any], keys: list[str]) -> str:
    return repr([text(values.get(key)) for key in keys])


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


def samples_curves(summary: Summary, points: list[SamplesPoint], metric: str, path: Path) -> Path | None:
    """``metric`` of each configuration's best model against the evaluation samples N (log x), error bars
    the spread over noise draws of one evaluation; None without points."""
    from orchestrator.figures import errorbar_lines, legend_outside, log_scale, panels, save, short_names

    lines: dict[str, list[tuple[float, float, float]]] = {}
    labels: dict[str, str] = {}
    shorten = short_names(summary)
    for point in points:
        if point.metric == metric and math.isfinite(point.mean):
            key = json_key(point.values, summary.keys)
            labels[key] = shorten(point.label()) or "all"
            lines.setdefault(key, []).append((float(point.samples), point.mean, point.draw_std))
    if not lines:
        return None
    figure, (axes,) = panels(1, 6, 4)
    errorbar_lines(axes, {labels[key]: found for key, found in lines.items()})
    log_scale(axes, "x")
    counts = sorted({x for found in lines.values() for x, _, _ in found})
    axes.set_xticks(counts, [f"{count:g}" for count in counts])
    axes.minorticks_off()
    axes.set_xlabel("evaluation samples N")
    axes.set_ylabel(f"{metric} (mean over seeds)")
    axes.set_title(f"{summary.name}: {metric} of the best model\n(error bars: spread over noise draws)",
                   fontsize="medium")
    legend_outside(figure, [axes])
    return save(figure, path)
