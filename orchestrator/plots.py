"""Plots of one sweep summary, one figure per question.

- ``metrics_vs_<key>.png``: for each swept numeric key, one panel per headline metric (the sweep
  metric, the other best-epoch metrics, the equivariance gap, the Monte-Carlo equivariance error, the
  entropy of P̄, the time) with one line per combination of the other swept discrete values, the mean
  over the completed seeds with the std as error bars. ``best_epoch``, the final ``val_*``/``test_*``
  (the best-epoch ones answer the question) and metrics whose values duplicate another's are left out.
- ``learning_curves.png``: the validation metric, the training task loss, each training penalty
  (entropy, REMUL equivariance loss) on its own and the entropy of P̄ against the epoch.
- ``eval_samples_<metric>.png``: the metric of each configuration's best model against the number
  of evaluation samples N (log x), error bars the spread of one evaluation over noise draws.
- ``compare_<metric>.png``: the paired differences of ``sweep.compare`` with their 95 % intervals.
- ``derived_<name>_vs_<key>.png`` (ratios, a dotted line at 1) and ``loglog_<quantity>_vs_<key>.png``
  (log-log points and fitted lines, slopes in the legend).

Legends sit outside the axes, right of the panels. Drawn on matplotlib ``Figure`` objects with the
Agg canvas: no pyplot state, no display needed. Text from the folder is drawn as it is (no TeX-like math
parsing: a ``$`` in a name cannot fail a figure); file names are made of plausible metric and key names only
(``orchestrator.records``) and ``safe_name``; each figure replaces its file (``orchestrator.folder``), and
``plots/`` is made a real directory of the experiment first (a link there is replaced, never followed).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from orchestrator.aggregate import Summary, text
from orchestrator.derived import (
    Comparison,
    Fit,
    Ratio,
    SamplesPoint,
    better,
    fits,
    json_key,
    lines_by_other_keys,
    quantity,
    ratios,
    samples_points,
)
from orchestrator.folder import Folder, replace_file
from workers import reporting

MAX_LEGEND = 24  # more lines than this: no legend (it would be taller than the figure)
CURVE_EXTRAS = (reporting.ENTROPY,)  # reported per evaluation and drawn as learning curves when present
TRAIN_PARTS = reporting.PENALTIES  # the objective's penalties, drawn apart from the task loss
PANEL_EXTRAS = reporting.HEADLINE  # the loop metrics of the summary
NOT_PLOTTED = (reporting.BEST_EPOCH,)
MAX_NAME = 200  # characters of a file name (the file system allows 255, the temporary name beside it a few more)


def safe_name(name: str) -> str:
    """A file name from metric and key names: anything but letters, digits, '.', '_', '-' becomes '_', and a
    name longer than MAX_NAME keeps its beginning and its extension."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    stem, dot, extension = name.rpartition(".")
    return name if len(name) <= MAX_NAME else stem[:MAX_NAME - len(extension) - 1] + dot + extension


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
        return label

    return shorten


def colors_for(labels) -> dict[str, Any]:
    """One colour per label, the same in every panel of a figure (the legend holds for all of them)."""
    labels = list(dict.fromkeys(labels))
    palette = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: palette(index % palette.N) for index, label in enumerate(labels)}


def _save(figure: Figure, path: Path) -> Path:
    return replace_file(path, lambda handle: figure.savefig(handle, dpi=100, format="png"), binary=True)


def _legend_outside(figure: Figure, axes_list) -> None:
    """One legend for the figure, right of every panel (never over the data)."""
    handles, labels = {}, []
    for axes in axes_list:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels and len(labels) <= MAX_LEGEND:
        figure.legend([handles[label] for label in labels], labels, loc="outside right upper", fontsize="small")


def _panels(count: int, width: float = 4.2, height: float = 3.4, columns: int = 3, legend: bool = True):
    """A figure with ``count`` panels in rows of at most ``columns``, room on the right for a legend."""
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns + (3.2 if legend else 0), height * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, list(axes[:count])


def _errorbar_lines(axes, lines: dict[str, list[tuple[float, float, float]]], colors=None) -> list[float]:
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


def _points_figure(lines: dict[str, list[tuple[float, float, float]]], key: str, ylabel: str, title: str,
                   path: Path, unit_line: bool = False) -> Path | None:
    """Error-bar lines (x, mean, std) per label against ``key`` (log x for a wide positive range),
    saved to ``path``; None when there is no point. ``unit_line`` marks y = 1 (ratios)."""
    figure, (axes,) = _panels(1, 6, 4, legend=any(lines))
    xs = _errorbar_lines(axes, lines)
    if not xs:
        return None
    if unit_line:
        axes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    _x_axis(axes, xs)
    axes.set_xlabel(key)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize="medium")
    if any(lines):
        _legend_outside(figure, [axes])
    return _save(figure, path)


def _x_axis(axes, xs: list[float]) -> None:
    """Log scale for a wide positive range; ticks at the swept values themselves when there are few."""
    if xs and log_axis(xs):
        axes.set_xscale("log")
    if 0 < len(set(xs)) <= 8:
        axes.set_xticks(sorted(set(xs)), [f"{x:g}" for x in sorted(set(xs))])
        axes.minorticks_off()


def panel_metrics(summary: Summary) -> list[str]:
    """The metrics worth a panel: the sweep metric, the best-epoch metrics, ``PANEL_EXTRAS``; without
    ``best_epoch``, without final ``val_*``/``test_*`` and without any metric whose means equal an
    earlier one's in every configuration (a duplicate)."""
    wanted = [name for name in summary.metrics if name.startswith(reporting.BEST) or name in PANEL_EXTRAS
              or name == summary.metric]
    chosen: list[str] = []
    for name in wanted:
        if name in NOT_PLOTTED:
            continue
        means = [c.stats.get(name, (math.nan,))[0] for c in summary.configurations]
        if not any(math.isfinite(mean) for mean in means):
            continue
        if any(np.allclose(means, [c.stats.get(other, (math.nan,))[0] for c in summary.configurations],
                           rtol=0, atol=0, equal_nan=True) for other in chosen):
            continue
        chosen.append(name)
    return chosen


def metrics_vs_key(summary: Summary, key: str, path: Path) -> Path | None:
    """Every panel metric (mean ± std over seeds) against ``key``, one line per other-values combination."""
    metrics = panel_metrics(summary)
    if not metrics:
        return None
    figure, panels = _panels(len(metrics))
    shorten = short_names(summary)
    groups = {shorten(label): members for label, members in lines_by_other_keys(summary, key).items()}
    colors = colors_for(groups)
    for axes, metric in zip(panels, metrics):
        lines = {label: [(float(c.values[key]), *c.stats[metric]) for c in members
                         if metric in c.stats and math.isfinite(c.stats[metric][0])]
                 for label, members in groups.items()}
        xs = _errorbar_lines(axes, lines, colors)
        _x_axis(axes, xs)
        means = [mean for points in lines.values() for _, mean, _ in points]
        if means and min(means) > 0 and max(means) / min(means) > 100:
            axes.set_yscale("log")  # e.g. equivariance gaps: round-off next to real errors
        axes.set_xlabel(key)
        note = {summary.metric: " (sweep metric)", reporting.EXACT_GAP: " (exact: ≲ 1e-9)"}.get(metric, "")
        axes.set_title(metric + note, fontsize="medium")
    figure.suptitle(f"{summary.name}: metrics vs {key} (mean ± std over seeds)", fontsize="medium")
    _legend_outside(figure, panels)
    return _save(figure, path)


def _reported(summary: Summary) -> list[str]:
    return list(dict.fromkeys(name for c in summary.configurations for trial in c.trials
                              for report in trial.history for name in report))


def curve_metrics(summary: Summary) -> list[str]:
    """The validation counterpart of the sweep metric (else the first val_* metric), the training task loss
    (``train_task_loss``, else ``train_loss``), each training penalty on its own, and the reported
    ``CURVE_EXTRAS`` (entropy of P̄). A penalised method's total loss is not comparable with another
    method's task loss, so the total is drawn only when no task loss is reported."""
    reported, selection = _reported(summary), reporting.SELECTION_SPLIT
    wanted = (summary.metric or "").removeprefix(reporting.BEST)
    validation = wanted if reporting.on_split(wanted, selection) and wanted in reported else next(
        (name for name in reported if reporting.on_split(name, selection)), None)
    task_loss = reporting.train_part(reporting.TASK_LOSS)
    loss = task_loss if task_loss in reported else reporting.TRAIN_LOSS
    return [name for name in (validation, loss, *TRAIN_PARTS, *CURVE_EXTRAS) if name in reported]


def learning_curves(summary: Summary, path: Path) -> Path | None:
    """Curve metrics against the epoch, one line per configuration (mean over its trials); None without epochs."""
    metrics = curve_metrics(summary)
    epoch = reporting.EPOCH
    trained = any(report.get(epoch, 0) >= 1 for c in summary.configurations for t in c.trials for report in t.history)
    if not metrics or not trained:
        return None
    figure, panels = _panels(len(metrics), 4.5, 3.6)
    shorten = short_names(summary)
    colors = colors_for(shorten(c.label()) or "all" for c in summary.configurations)
    for axes, metric in zip(panels, metrics):
        for configuration in summary.configurations:
            by_epoch: dict[float, list[float]] = {}
            for trial in configuration.trials:
                for report in trial.history:
                    if epoch in report and metric in report:
                        by_epoch.setdefault(report[epoch], []).append(report[metric])
            if by_epoch:
                epochs = sorted(by_epoch)
                label = shorten(configuration.label()) or "all"
                axes.plot(epochs, [np.mean(by_epoch[epoch]) for epoch in epochs], marker=".", label=label,
                          color=colors[label])
        axes.set_xlabel(epoch)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(metric, fontsize="medium")
    figure.suptitle(f"{summary.name}: learning curves (mean over seeds)", fontsize="medium")
    if any(c.values for c in summary.configurations):
        _legend_outside(figure, panels)
    return _save(figure, path)


def samples_curves(summary: Summary, points: list[SamplesPoint], metric: str, path: Path) -> Path | None:
    """``metric`` of each configuration's best model against the evaluation samples N (log x), error bars
    the spread over noise draws of one evaluation; None without points."""
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
    figure, (axes,) = _panels(1, 6, 4)
    _errorbar_lines(axes, {labels[key]: found for key, found in lines.items()})
    axes.set_xscale("log")
    counts = sorted({x for found in lines.values() for x, _, _ in found})
    axes.set_xticks(counts, [f"{count:g}" for count in counts])
    axes.minorticks_off()
    axes.set_xlabel("evaluation samples N")
    axes.set_ylabel(f"{metric} (mean over seeds)")
    axes.set_title(f"{summary.name}: {metric} of the best model\n(error bars: spread over noise draws)",
                   fontsize="medium")
    _legend_outside(figure, [axes])
    return _save(figure, path)


def comparison_figure(summary: Summary, found: list[Comparison], path: Path) -> Path | None:
    """Each paired difference (value − reference) with its 95 % interval, a line at 0; None without pairs."""
    found = [c for c in found if c.pairs]
    if not found:
        return None
    shorten = short_names(summary)
    ticks = [f"{shorten(c.label())} ({c.pairs} pair{'s' * (c.pairs != 1)})" for c in found]
    figure = Figure(figsize=(5 + 0.075 * max(map(len, ticks)), 1.8 + 0.45 * len(found)), layout="constrained")
    axes = figure.subplots()
    rows = np.arange(len(found))[::-1]
    for row, comparison in zip(rows, found):
        low, high = comparison.interval
        if comparison.pairs > 1:
            axes.errorbar(comparison.mean, row, xerr=[[comparison.mean - low], [high - comparison.mean]], marker="o",
                          capsize=3, color="tab:blue")
        else:
            axes.plot(comparison.mean, row, marker="o", markerfacecolor="none", color="tab:grey")
    axes.axvline(0.0, color="black", linewidth=1)
    axes.set_yticks(rows, ticks, fontsize="small")
    axes.set_xlabel(f"{found[0].metric}: value − {text(found[0].reference)}, same seed ({better(found[0].mode)})")
    one = any(c.pairs == 1 for c in found)
    figure.suptitle(f"{summary.name}: paired differences against {text(found[0].reference)}, 95 % t-intervals"
                    + ("\n(hollow: one pair, no interval)" if one else ""), fontsize="medium")
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
    figure, (axes,) = _panels(1, 6.5, 4.5)
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
    _legend_outside(figure, [axes])
    return _save(figure, path)


def write_plots(summary: Summary, directory: Path, derived=(), loglog=(), compared: list[Comparison] = (),
                runs: Summary | None = None) -> list[Path]:
    """Every plot of the summary into ``directory`` (old PNGs there are replaced); the files written.
    ``derived`` and ``loglog`` are the sweep's ``sweep.derived`` and ``sweep.loglog`` entries,
    ``compared`` the comparisons of ``sweep.compare``. ``summary`` pairs a configuration run once for a key
    it does not read with every value of that key (a flat line against it); ``runs``, the configurations as
    they ran, draws the per-configuration curves (learning, sample count) once each."""
    runs = runs or summary
    Folder(directory.parent).directory(directory.name, clear=".png")
    with matplotlib.rc_context({"text.parse_math": False}):  # a "$" in a name is text, not math to parse
        files = [metrics_vs_key(summary, key, directory / safe_name(f"metrics_vs_{key}.png"))
                 for key in numeric_keys(summary)]
        files.append(learning_curves(runs, directory / "learning_curves.png"))
        points = samples_points(runs)
        files += [samples_curves(runs, points, metric, directory / safe_name(f"eval_samples_{metric}.png"))
                  for metric in dict.fromkeys(point.metric for point in points)]
        if compared:
            files.append(comparison_figure(summary, list(compared),
                                           directory / safe_name(f"compare_{compared[0].metric}.png")))
        for spec in derived:
            found = ratios(summary, spec)
            files += [ratio_vs_key(summary, spec, found, key,
                                   directory / safe_name(f"derived_{spec['name']}_vs_{key}.png"))
                      for key in numeric_keys(summary) if key != spec["key"]]
        for spec in loglog:
            name = f"loglog_{quantity(spec)}_vs_{spec['key']}.png"
            files.append(loglog_fits(summary, spec, fits(summary, spec), directory / safe_name(name)))
    return [file for file in files if file is not None]
