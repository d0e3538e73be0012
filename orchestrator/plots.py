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

The figures of the sweep's analyses (``compare_*``, ``derived_*``, ``loglog_*``) are drawn by their analysis
(``orchestrator.analyses``); the shared drawing helpers are in ``orchestrator.figures``. Legends sit outside the
axes, right of the panels. Text from the folder is drawn as it is (no TeX-like math
parsing: a ``$`` in a name cannot fail a figure); file names are made of plausible metric and key names only
(``orchestrator.records``) and ``safe_name``; each figure replaces its file (``orchestrator.folder``), and
``plots/`` is made a real directory of the experiment first (a link there is replaced, never followed).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.ticker import MaxNLocator

from orchestrator.aggregate import Summary, lines_by_other_keys
from orchestrator.figures import (
    colors_for,
    errorbar_lines,
    legend_outside,
    log_scale,
    numeric_keys,
    panels,
    safe_name,
    save,
    short_names,
    x_axis,
)
from orchestrator.folder import Folder
from orchestrator.samples import samples_curves, samples_points
from workers import UNUSED, reporting

CURVE_EXTRAS = (reporting.ENTROPY,)  # reported per evaluation and drawn as learning curves when present
TRAIN_PARTS = reporting.PENALTIES  # the objective's penalties, drawn apart from the task loss
PANEL_EXTRAS = reporting.HEADLINE  # the loop metrics of the summary
NOT_PLOTTED = (reporting.BEST_EPOCH,)
LOG_METRICS = (reporting.EXACT_GAP, reporting.MC_ERROR)  # errors that span decades by nature: on a log axis


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
    """Every panel metric (mean ± std over seeds) against ``key``, one line per other-values combination, drawn only
    at the values each configuration ran; a configuration that does not read ``key`` (GA's noise scale) is a
    dashed horizontal reference line across the axis."""
    metrics = panel_metrics(summary)
    if not metrics:
        return None
    figure, grid = panels(len(metrics))
    shorten = short_names(summary)
    groups = {shorten(label): members for label, members in lines_by_other_keys(summary, key).items()}
    colors = colors_for(groups)
    for axes, metric in zip(grid, metrics):
        def ran(members, read: bool) -> list:
            return [c for c in members if metric in c.stats and math.isfinite(c.stats[metric][0])
                    and (c.values.get(key) != UNUSED) == read]

        lines = {label: [(float(c.values[key]), *c.stats[metric]) for c in ran(members, True)]
                 for label, members in groups.items()}
        xs = errorbar_lines(axes, lines, colors)
        means = [mean for points in lines.values() for _, mean, _ in points]
        for label, members in groups.items():
            for configuration in ran(members, False):
                mean = configuration.stats[metric][0]
                axes.axhline(mean, color=colors[label], linestyle="--", linewidth=1.2,
                             label=f"{label or 'all'} (does not read {key.rsplit('.', 1)[-1]})")
                means.append(mean)
        x_axis(axes, xs)
        if means and min(means) > 0 and (max(means) / min(means) > 10 or metric in LOG_METRICS):
            log_scale(axes)  # e.g. equivariance gaps: round-off next to real errors
        axes.set_xlabel(key)
        note = {summary.metric: " (sweep metric)", reporting.EXACT_GAP: " (exact: ≲ 1e-9)",
                reporting.ELAPSED: " (machine-dependent)"}.get(metric, "")
        axes.set_title(metric + note, fontsize="medium")
    figure.suptitle(f"{summary.name}: metrics vs {key} (mean ± std over seeds)", fontsize="medium")
    legend_outside(figure, grid)
    return save(figure, path)


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
    figure, grid = panels(len(metrics), 4.5, 3.6)
    shorten = short_names(summary)
    colors = colors_for(shorten(c.label()) or "all" for c in summary.configurations)
    for axes, metric in zip(grid, metrics):
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
        legend_outside(figure, grid)
    return save(figure, path)


def write_plots(summary: Summary, directory: Path, analyses=None, results: dict | None = None,
                runs: Summary | None = None) -> list[Path]:
    """Every plot of the summary into ``directory`` (old PNGs there are replaced); the files written.
    ``analyses`` (``orchestrator.analyses.Analyses``) with their computed ``results`` draw their own figures.
    ``summary`` pairs a configuration run once for a key it does not read with every value of that key (what the
    analyses pair); ``runs``, the configurations as they ran, draws the metrics against each key (a configuration
    that does not read the key as a reference line) and the per-configuration curves (learning, sample count)."""
    runs = runs or summary
    Folder(directory.parent).directory(directory.name, clear=".png")
    with matplotlib.rc_context({"text.parse_math": False}):  # a "$" in a name is text, not math to parse
        files = [metrics_vs_key(runs, key, directory / safe_name(f"metrics_vs_{key}.png"))
                 for key in numeric_keys(runs)]
        files.append(learning_curves(runs, directory / "learning_curves.png"))
        points = samples_points(runs)
        files += [samples_curves(runs, points, metric, directory / safe_name(f"eval_samples_{metric}.png"))
                  for metric in dict.fromkeys(point.metric for point in points)]
        for analysis in (analyses.chosen if analyses is not None else []):
            files += analysis.figures(summary, (results or {}).get(type(analysis), []), directory)
    return [file for file in files if file is not None]
