"""Plots of one sweep summary: headline metrics against swept numeric keys, learning curves, and the
derived results (``sweep.derived`` ratios, ``sweep.loglog`` power-law fits).

``metric_vs_key``: one line per combination of the other swept discrete values (method, group, ...),
the mean over the completed seeds with the std as error bars, a log x-axis when the values are
positive and span more than a decade. ``learning_curves``: the validation counterpart of the sweep
metric, the training loss and, when reported, the entropy of P̄ (PS paper Figure 2) against the
epoch, one line per configuration, mean over its trials. ``ratio_vs_key``: a derived ratio against
each remaining numeric swept key (a dotted line at 1). ``loglog_fits``: points and fitted lines on
log-log axes, each line's slope in the legend. Drawn on matplotlib ``Figure`` objects with the Agg
canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from orchestrator.aggregate import Summary, text
from orchestrator.derived import Fit, Ratio, fits, lines_by_other_keys, quantity, ratios

MAX_LEGEND = 12  # more lines than this: no legend (it would hide the plot)
MAX_FIT_LEGEND = 20  # log-log fits keep their legend (outside the axes): the slopes are the result
CURVE_EXTRAS = ("entropy",)  # reported per evaluation and drawn as learning curves when present


def safe_name(name: str) -> str:
    """A file name from metric and key names: anything but letters, digits, '.', '_', '-' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def numeric_keys(summary: Summary) -> list[str]:
    """Swept keys whose values are all numbers, with at least two distinct values."""
    keys = []
    for key in summary.keys:
        values = [configuration.values[key] for configuration in summary.configurations]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(set(values)) > 1:
            keys.append(key)
    return keys


def log_axis(values: list[float]) -> bool:
    """A log scale for positive values spanning more than a decade."""
    return min(values) > 0 and max(values) / min(values) > 10


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path


def _points_figure(lines: dict[str, list[tuple[float, float, float]]], key: str, ylabel: str, title: str,
                   path: Path, unit_line: bool = False) -> Path | None:
    """Error-bar lines (x, mean, std) per label against ``key`` (log x for a wide positive range),
    saved to ``path``; None when there is no point. ``unit_line`` marks y = 1 (ratios)."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    xs = []
    for label, points in lines.items():
        if points:
            x, mean, std = np.array(sorted(points)).T
            axes.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=label or None)
            xs.extend(x)
    if not xs:
        return None
    if unit_line:
        axes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    if log_axis(xs):
        axes.set_xscale("log")
    axes.set_xlabel(key)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize="medium")
    if any(lines) and len(lines) <= MAX_LEGEND:
        axes.legend(fontsize="small")
    return _save(figure, path)


def metric_vs_key(summary: Summary, metric: str, key: str, path: Path) -> Path | None:
    """``metric`` (mean ± std over seeds) against ``key``; None when no configuration has a value."""
    lines = {label: [(float(c.values[key]), *c.stats[metric]) for c in members
                     if metric in c.stats and math.isfinite(c.stats[metric][0])]
             for label, members in lines_by_other_keys(summary, key).items()}
    return _points_figure(lines, key, f"{metric} (mean ± std over seeds)", f"{summary.name}: {metric} vs {key}", path)


def curve_metrics(summary: Summary) -> list[str]:
    """The validation counterpart of the sweep metric (else the first val_* metric), train_loss, and
    the reported ``CURVE_EXTRAS`` (entropy of P̄)."""
    reported = list(dict.fromkeys(name for c in summary.configurations for trial in c.trials
                                  for report in trial.history for name in report))
    wanted = (summary.metric or "").removeprefix("best_")
    validation = wanted if wanted.startswith("val_") and wanted in reported else next(
        (name for name in reported if name.startswith("val_")), None)
    return [name for name in (validation, "train_loss", *CURVE_EXTRAS) if name in reported]


def learning_curves(summary: Summary, path: Path) -> Path | None:
    """Curve metrics against the epoch, one line per configuration (mean over its trials); None without epochs."""
    metrics = curve_metrics(summary)
    trained = any(report.get("epoch", 0) >= 1 for c in summary.configurations for t in c.trials for report in t.history)
    if not metrics or not trained:
        return None
    figure = Figure(figsize=(6 * len(metrics), 4), layout="constrained")
    for axes, metric in zip(np.atleast_1d(figure.subplots(1, len(metrics))), metrics):
        for configuration in summary.configurations:
            by_epoch: dict[float, list[float]] = {}
            for trial in configuration.trials:
                for report in trial.history:
                    if "epoch" in report and metric in report:
                        by_epoch.setdefault(report["epoch"], []).append(report[metric])
            if by_epoch:
                epochs = sorted(by_epoch)
                axes.plot(epochs, [np.mean(by_epoch[epoch]) for epoch in epochs], marker=".",
                          label=configuration.label() or None)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(f"{metric} (mean over seeds)")
        axes.set_title(f"{summary.name}: {metric}", fontsize="medium")
        if 0 < len(summary.configurations) <= MAX_LEGEND and any(c.values for c in summary.configurations):
            axes.legend(fontsize="small")
    return _save(figure, path)


def ratio_vs_key(summary: Summary, spec, found: list[Ratio], key: str, path: Path) -> Path | None:
    """One ``sweep.derived`` ratio (± propagated std) against ``key``; lines by the remaining keys."""
    others = [other for other in summary.keys if other not in (key, spec["key"]) and other not in summary.continuous]
    lines: dict[str, list[tuple[float, float, float]]] = {}
    for ratio in found:
        if math.isfinite(ratio.value) and isinstance(ratio.values.get(key), (int, float)):
            label = ", ".join(f"{o}={text(ratio.values[o])}" for o in others)
            lines.setdefault(label, []).append((float(ratio.values[key]), ratio.value, ratio.std))
    ylabel = f"{spec['metric']}: {text(spec['numerator'])} / {text(spec['denominator'])} (± propagated std)"
    return _points_figure(dict(sorted(lines.items())), key, ylabel, f"{summary.name}: {spec['name']}", path,
                          unit_line=True)


def loglog_fits(summary: Summary, spec, found: list[Fit], path: Path) -> Path | None:
    """Points (mean ± std over seeds) and their fitted power laws on log-log axes, slopes in the legend."""
    if not found:
        return None
    figure = Figure(figsize=(9.5, 4.5), layout="constrained")
    axes = figure.subplots()
    colors = matplotlib.colormaps["tab20" if len(found) > 10 else "tab10"]
    for index, fit in enumerate(found):
        x, mean, std = np.array(fit.points).T
        color = colors(index % colors.N)
        axes.errorbar(x, mean, yerr=std, marker="o", linestyle="none", capsize=3, color=color)
        grid = np.geomspace(x.min(), x.max(), 20)
        axes.plot(grid, 10 ** (fit.intercept + fit.slope * np.log10(grid)), color=color,
                  label=f"{fit.label() or 'all'} (slope {fit.slope:.2f})")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(spec["key"])
    axes.set_ylabel(quantity(spec).replace("1-", "1 − ", 1) + " (mean over seeds)")
    axes.set_title(f"{summary.name}: log-log fits of {quantity(spec)}", fontsize="medium")
    if len(found) <= MAX_FIT_LEGEND:
        axes.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(figure, path)


def write_plots(summary: Summary, directory: Path, derived=(), loglog=()) -> list[Path]:
    """Every plot of the summary into ``directory`` (old PNGs there are replaced); the files written.
    ``derived`` and ``loglog`` are the sweep's ``sweep.derived`` and ``sweep.loglog`` entries."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in sorted(directory.glob("*.png")):
        old.unlink()
    files = [metric_vs_key(summary, metric, key, directory / safe_name(f"{metric}_vs_{key}.png"))
             for key in numeric_keys(summary) for metric in summary.metrics]
    files.append(learning_curves(summary, directory / "learning_curves.png"))
    for spec in derived:
        found = ratios(summary, spec)
        files += [ratio_vs_key(summary, spec, found, key, directory / safe_name(f"derived_{spec['name']}_vs_{key}.png"))
                  for key in numeric_keys(summary) if key != spec["key"]]
    for spec in loglog:
        name = f"loglog_{quantity(spec)}_vs_{spec['key']}.png"
        files.append(loglog_fits(summary, spec, fits(summary, spec), directory / safe_name(name)))
    return [file for file in files if file is not None]
