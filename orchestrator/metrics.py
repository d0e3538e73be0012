"""What the trials of a task report, and the direction of each metric (for ``sweep.metric``/``sweep.mode``, the
analyses' checks and the summary's order)."""

from __future__ import annotations

from typing import Any

# reported by every trainable trial besides <split>_<task metric>
LOOP_METRICS = ("train_loss", "entropy", "equivariance_gap", "mc_equivariance_error", "elapsed_s", "samples_per_s",
                "examples_per_s", "lr", "best_epoch", "epoch")
MAXIMISED_LOOP_METRICS = ("samples_per_s", "examples_per_s")  # throughput; the other loop metrics are minimised
EVERY_REPORT = ("train_loss", "elapsed_s", "samples_per_s", "examples_per_s", "lr", "epoch")  # in every report


def reported_metrics(task: Any) -> dict[str, str]:
    """``{metric: "min" | "max"}`` of every metric the trials of ``task`` (a Task class) report."""
    if not task.trainable:
        names = [f"test_{word}" for word in (task.metric, "separated_fraction")] + ["elapsed_s"]
    else:
        splits = [f"{prefix}{split}_{task.metric}" for prefix in ("best_", "") for split in task.evaluation_splits]
        transformed = [f"{prefix}test_{task.metric}_transformed" for prefix in ("best_", "")]
        names = splits + transformed + list(LOOP_METRICS)
    return {name: direction(task, name) for name in names}


def direction(task: Any, metric: str) -> str:
    """min or max for ``metric``: the task's direction for its own metric (and its split variants), max for
    throughput and the separated fraction, min for every other loop metric (losses, errors, time)."""
    if metric in LOOP_METRICS:
        return "max" if metric in MAXIMISED_LOOP_METRICS else "min"
    if metric.endswith("separated_fraction"):
        return "max"
    return task.mode


def default_metric(task: Any) -> str:
    """The sweep's metric when ``sweep.metric`` names none: best_val_<task metric> (separation: test_<metric>)."""
    return f"best_val_{task.metric}" if task.trainable else f"test_{task.metric}"
