"""What every figure of a report shares: file names made safe, colours, panels, legends outside the axes, error-bar
lines, axes that switch to a log scale over a wide range, and saving that replaces a file (never writes through a
link: ``orchestrator.folder``). Drawn on matplotlib ``Figure`` objects with the Agg canvas: no pyplot state, no
display needed."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from orchestrator.aggregate import Summary
from orchestrator.folder import replace_file

LONG_NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d{4,}(?:[eE][-+]?\d+)?(?![\w.])")  # drawn with 3 significant digits
MAX_LEGEND = 24  # more lines than this: no legend (it would be taller than the figure)
MAX_NAME = 200  # characters of a file name (the file system allows 255, the temporary name beside it a few more)


def safe_name(name: str) -> str:
    """A file name from metric and key names: anything but letters, digits, '.', '_', '-' becomes '_', and a
    name longer than MAX_NAME keeps its beginning and its extension."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    stem, dot, extension = name.rpartition(".")
    return name if len(name) <= MAX_NAME else stem[:MAX_NAME - len(extension) - 1] + dot + extension


def numeric_keys(summary: Summary) -> list[str]:
    """Swept keys whose values are all numbers (a configuration that does not read the key aside), with at least
    two distinct values."""
    from workers import UNUSED

    keys = []
    for key in summary.keys:
        values = [c.values[key] for c in summary.configurations if c.values[key] != UNUSED]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and len(set(values)) > 1:
            keys.append(key)
    return keys


def log_axis(values: list[float]) -> bool:
    """A log scale for positive values spanning more than a decade."""
    return min(values) > 0 and max(values) / min(values) > 10


def short_names(summary: Summary):
    """A function shortening the swept keys in a label to their last part (``symmetrizer.method=ps`` ->
    ``method=ps``) where that part names one key only: legends and tick labels stay readable."""
    last = [key.rsplit(".", 1)[-1] for key in summary.keys]
    renames = [(f"{key}=", f"{short}=") for key, short in zip(summary.keys, last)
               if last.count(short) == 1 and short != "name"]  # model.name=egnn, not name=egnn
    renames.sort(key=lambda pair: -len(pair[0]))

    def shorten(label: str) -> str:
        for old, new in renames:
            label = label.replace(old, new)
        return LONG_NUMBER.sub(lambda number: f"{float(number.group()):.3g}", label)

    return shorten


def colors_for(labels) -> dict[str, Any]:
    """One colour per label, the same in every panel of a figure (the legend holds for all of them)."""
    labels = list(dict.fromkeys(labels))
    palette = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: palette(index % palette.N) for index, label in enumerate(labels)}


def save(figure: Figure, path: Path) -> Path:
    return replace_file(path, lambda handle: figure.savefig(handle, dpi=100, format="png"), binary=True)


def legend_outside(figure: Figure, axes_list) -> None:
    """One legend for the figure, right of every panel (never over the data)."""
    handles, labels = {}, []
    for axes in axes_list:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels and len(labels) <= MAX_LEGEND:
        figure.legend([handles[label] for label in labels], labels, loc="outside right upper", fontsize="small")


def panels(count: int, width: float = 4.2, height: float = 3.4, columns: int = 3, legend: bool = True):
    """A figure with ``count`` panels in rows of at most ``columns``, room on the right for a legend."""
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns + (3.2 if legend else 0), height * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, list(axes[:count])


def errorbar_lines(axes, lines: dict[str, list[tuple[float, float, float]]], colors=None) -> list[float]:
    """Error-bar lines (x, mean, std) per label on ``axes`` (``colors``: label -> colour); the x values drawn."""
    colors = colors or colors_for(lines)
    xs = []
    for label, points in lines.items():
        if points:
            x, mean, std = np.array(sorted(points)).T
            axes.errorbar(x, mean, yerr=np.nan_to_num(std), marker="o", capsize=3, label=label or "all",
                          color=colors[label])
            xs.extend(x)
    return xs


def points_figure(lines: dict[str, list[tuple[float, float, float]]], key: str, ylabel: str, title: str,
                   path: Path, unit_line: bool = False) -> Path | None:
    """Error-bar lines (x, mean, std) per label against ``key`` (log x for a wide positive range),
    saved to ``path``; None when there is no point. ``unit_line`` marks y = 1 (ratios)."""
    figure, (axes,) = panels(1, 6, 4, legend=any(lines))
    xs = errorbar_lines(axes, lines)
    if not xs:
        return None
    if unit_line:
        axes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    x_axis(axes, xs)
    axes.set_xlabel(key)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize="medium")
    if any(lines):
        legend_outside(figure, [axes])
    return save(figure, path)


def log_scale(axes, which: str = "y") -> None:
    """A log scale whose tick labels are plain text with 3 significant digits (figures draw text without math
    parsing, so matplotlib's default ``10^{-13}`` labels would show as TeX source)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis = axes.yaxis if which == "y" else axes.xaxis
    (axes.set_yscale if which == "y" else axes.set_xscale)("log")
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))
    axis.set_minor_formatter(NullFormatter())


def x_axis(axes, xs: list[float]) -> None:
    """Log scale for a wide positive range; ticks at the swept values themselves when there are few."""
    if xs and log_axis(xs):
        log_scale(axes, "x")
    if 0 < len(set(xs)) <= 8:
        axes.set_xticks(sorted(set(xs)), [f"{x:.3g}" for x in sorted(set(xs))])
        axes.minorticks_off()
