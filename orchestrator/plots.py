"""Plots of one sweep summary: each headline metric against each swept numeric key, and learning curves.

``metric_vs_key``: one line per combination of the other swept discrete values (method, group, ...),
the mean over the completed seeds with the std as error bars, a log x-axis when the values are
positive and span more than a decade. ``learning_curves``: the validation counterpart of the sweep
metric and the training loss against the epoch, one line per configuration, mean over its trials.
Drawn on matplotlib ``Figure`` objects with the Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from orchestrator.aggregate import Configuration, Summary, text

MAX_LEGEND = 12  # more lines than this: no legend (it would hide the plot)


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


def lines_by_other_keys(summary: Summary, key: str) -> dict[str, list[Configuration]]:
    """Configurations grouped by the values of the other discrete swept keys (label -> members)."""
    others = [other for other in summary.keys if other != key and other not in summary.continuous]
    lines: dict[str, list[Configuration]] = {}
    for configuration in summary.configurations:
        label = ", ".join(f"{other}={text(configuration.values[other])}" for other in others)
        lines.setdefault(label, []).append(configuration)
    return dict(sorted(lines.items()))


def log_axis(values: list[float]) -> bool:
    """A log scale for positive values spanning more than a decade."""
    return min(values) > 0 and max(values) / min(values) > 10


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path


def metric_vs_key(summary: Summary, metric: str, key: str, path: Path) -> Path | None:
    """``metric`` (mean ± std over seeds) against ``key``; None when no configuration has a value."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    xs_all, lines = [], lines_by_other_keys(summary, key)
    for label, members in lines.items():
        points = sorted((float(c.values[key]), *c.stats[metric]) for c in members
                        if metric in c.stats and math.isfinite(c.stats[metric][0]))
        if points:
            x, mean, std = np.array(points).T
            axes.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=label or None)
            xs_all.extend(x)
    if not xs_all:
        return None
    if log_axis(xs_all):
        axes.set_xscale("log")
    axes.set_xlabel(key)
    axes.set_ylabel(f"{metric} (mean ± std over seeds)")
    axes.set_title(f"{summary.name}: {metric} vs {key}", fontsize="medium")
    if any(lines) and len(lines) <= MAX_LEGEND:
        axes.legend(fontsize="small")
    return _save(figure, path)


def curve_metrics(summary: Summary) -> list[str]:
    """The validation counterpart of the sweep metric (else the first val_* metric), and train_loss."""
    reported = list(dict.fromkeys(name for c in summary.configurations for trial in c.trials
                                  for report in trial.history for name in report))
    wanted = (summary.metric or "").removeprefix("best_")
    validation = wanted if wanted.startswith("val_") and wanted in reported else next(
        (name for name in reported if name.startswith("val_")), None)
    return [name for name in (validation, "train_loss") if name in reported]


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


def write_plots(summary: Summary, directory: Path) -> list[Path]:
    """Every plot of the summary into ``directory`` (old PNGs there are replaced); the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in sorted(directory.glob("*.png")):
        old.unlink()
    files = [metric_vs_key(summary, metric, key, directory / safe_name(f"{metric}_vs_{key}.png"))
             for key in numeric_keys(summary) for metric in summary.metrics]
    files.append(learning_curves(summary, directory / "learning_curves.png"))
    return [file for file in files if file is not None]
