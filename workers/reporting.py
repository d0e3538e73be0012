"""What a trial reports: every key of a report, the direction of each metric, and which reports hold it.

The one vocabulary of the reports, next to the loop that writes them: ``workers.train``,
``workers.evaluation``, ``workers.resumption`` and ``workers.separation`` build every report key with the
names and functions below, and the driver reads the same ones (``orchestrator.plan``: what ``sweep.metric``
may name and its mode; ``records``, ``aggregate``, ``plots`` and ``symsweep train``: what to read and show).
Pure Python, no torch: a task is read through its class attributes ``metric``, ``mode``, ``other_metrics``,
``evaluation_splits`` and ``trainable`` (``workers.tasks.base.Task``).

A trainable task's report::

    <split>_<m>           every evaluation split of the task x every metric m of the task (its direction)
    test_<m>_transformed  the ``TRANSFORMED_SPLIT`` scored again on a copy moved by random group elements
    best_<...>            each of the two above at the best ``SELECTION_SPLIT`` epoch (``best_of``)
    LOOP                  the loop's own entries: losses, throughput, time, equivariance, counters
    train_<part>          the epoch mean of each part of the objective's loss (``PARTS``)

A separation task's report (scored at initialisation): ``<split>_<m>`` of its splits and metrics, the isomorphic
control of each split (``control_metrics``: ``<split>_<m>_calibrated`` and ``CONTROL``), and ``SEPARATION``.
A metric has a direction, min or max (``sweep.mode``'s default, how summaries rank); an entry without one is
recorded (a counter, a loss weight, a nested curve) and is never a sweep metric.
``tests/train/test_reporting.py`` trains one tiny trial per task family and fails on any key not named here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

Report = Callable[[dict, Any], None]  # report(metrics, checkpoint directory or None): how a trial hands on results
MIN, MAX = "min", "max"
DIRECTIONS = (MIN, MAX)

TRAINING_SPLIT = "train"  # the split the loop trains on (a trainable task's data has it besides its evaluation splits)
SELECTION_SPLIT = "val"  # model selection: best_* are taken at the best <val>_<task metric>; entropy and E on it
TRANSFORMED_SPLIT = "test"  # also scored on a group-transformed copy; the equivariance measurements' inputs
BEST = "best_"  # prefix of a metric at the best validation epoch
# config.json's record of every metric the trials report with its direction, written at launch (orchestrator.plan)
# so that reading results needs no task code (a task of your own, task=files): ``recorded_directions``
DIRECTIONS_KEY = "metrics"


@dataclass(frozen=True)
class Entry:
    """One report key that is not a task metric: its direction (None: recorded, not a metric), whether
    every report of a trainable trial holds it (ASHA and Optuna read the sweep metric in each), and what it is."""

    direction: str | None
    every_report: bool
    meaning: str


# -- the loop's own keys ------------------------------------------------------------------------------------
EPOCH, STEP, TRAIN_LOSS, LR = "epoch", "step", "train_loss", "lr"
SAMPLES_PER_S, EXAMPLES_PER_S, ELAPSED = "samples_per_s", "examples_per_s", "elapsed_s"
ENTROPY, MC_ERROR, EXACT_GAP, BEST_EPOCH = "entropy", "mc_equivariance_error", "equivariance_gap", "best_epoch"
CURVE, EVAL_SAMPLES = "eval_samples_curve", "eval_samples"

LOOP: dict[str, Entry] = {  # in the order ``sweep.metric``'s error lists them
    TRAIN_LOSS: Entry(MIN, True, "the epoch's mean training loss (the objective's total)"),
    ENTROPY: Entry(MIN, False, "entropy of the mean permutation (S_n relaxations) on the selection split"),
    EXACT_GAP: Entry(MIN, False, "coupled equivariance gap of the best weights in float64, after the last epoch"),
    MC_ERROR: Entry(MIN, False, "E with fresh noise on the selection split, every equivariance_every evaluations"),
    ELAPSED: Entry(MIN, True, "seconds of training so far, resumed runs included"),
    SAMPLES_PER_S: Entry(MAX, True, "training throughput in group samples (examples x train samples) per second"),
    EXAMPLES_PER_S: Entry(MAX, True, "training throughput in examples per second"),
    LR: Entry(MIN, True, "learning rate of the first parameter group after the epoch"),
    BEST_EPOCH: Entry(MIN, False, "the epoch of the best selection metric so far"),
    EPOCH: Entry(MIN, True, "epochs trained (ASHA's time attribute)"),
    STEP: Entry(None, True, "optimiser steps taken"),
    CURVE: Entry(None, False, "{<split>_<m>: {N: {mean, std}}} of the best weights (trainer.eval_samples_curve)"),
    EVAL_SAMPLES: Entry(None, False, "the sample count of a finished checkpoint evaluated anew"),
}
FLIPS, REDRAWN_FLIPS = "test_flips_transformed", "test_flips_redrawn"
DECISIONS: dict[str, Entry] = {  # end of a trial of a task that ``decides`` (a classifier), on the best weights
    FLIPS: Entry(MIN, False, "test examples whose decision differs between the test split and its group-transformed "
                             "copy (S_n: relabelled nodes), best weights, eval samples"),
    REDRAWN_FLIPS: Entry(MIN, False, "test examples whose decision differs between two evaluations of the same "
                                     "inputs with fresh noise (0 for a deterministic model): the noise part of flips"),
}
HEADLINE = (EXACT_GAP, MC_ERROR, ENTROPY, FLIPS, REDRAWN_FLIPS, ELAPSED)  # loop metrics a summary shows too

TASK_LOSS = "task_loss"
PARTS: dict[str, Entry] = {  # the parts of an objective's loss (``workers.objectives``), reported as train_<part>
    TASK_LOSS: Entry(MIN, True, "the task loss alone (every method)"),
    "entropy_penalty": Entry(MIN, True, "the entropy penalty of a trained S_n relaxation"),
    "equivariance_loss": Entry(MIN, True, "L_equi of augmentation and REMUL"),
    "alpha": Entry(None, True, "REMUL's weight of the task loss"),
    "beta": Entry(None, True, "REMUL's weight of L_equi"),
}

NODE_ID = "node_id"  # added to every report by the Ray bridge (``workers.trial``), not the loop: the node that ran it
SEEDS = "seeds"
SEPARATION: dict[str, Entry] = {  # a separation task's report besides its split metrics
    EPOCH: Entry(None, True, "0: nothing is trained"),
    SEEDS: Entry(None, True, "freshly initialised models scored (trainer.separation_seeds)"),
    ELAPSED: Entry(MIN, True, "seconds the protocol took"),
}

# the isomorphic control of a separation task, per evaluation split (``workers.tasks.separation``)
ISOMORPHIC_SEPARATED, ISOMORPHIC_DISTANCE = "isomorphic_separated", "isomorphic_distance_max"
CALIBRATED = "_calibrated"  # suffix of a separation metric counted at the noise-calibrated thresholds
CONTROL: dict[str, Entry] = {
    ISOMORPHIC_SEPARATED: Entry(MIN, True, "graphs whose relabelled, isomorphic copy some seed separates at the "
                                           "1e-3 rule (0 for an invariant measure)"),
    ISOMORPHIC_DISTANCE: Entry(MIN, True, "largest L1 distance between a graph's embedding and its isomorphic "
                                          "copy's, over graphs and seeds"),
}


# -- names ----------------------------------------------------------------------------------------------------
def split_metric(split: str, metric: str) -> str:
    """``<split>_<metric>``: a task metric of one evaluation split."""
    return f"{split}_{metric}"


def calibrated(metric: str) -> str:
    """A separation metric counted with each seed's threshold at its largest isomorphic-copy distance."""
    return metric + CALIBRATED


def on_split(name: str, split: str) -> bool:
    """Whether report key ``name`` is a metric of ``split`` (``val_mse`` of ``val``)."""
    return name.startswith(split_metric(split, ""))


def transformed_metric(metric: str) -> str:
    """The task metric ``metric`` of the group-transformed copy of ``TRANSFORMED_SPLIT``."""
    return f"{split_metric(TRANSFORMED_SPLIT, metric)}_transformed"


def best(name: str) -> str:
    """``name`` at the best validation epoch."""
    return BEST + name


def train_part(part: str) -> str:
    """The report key of a part of the objective's loss."""
    return f"train_{part}"


PENALTIES = tuple(train_part(part) for part, entry in PARTS.items() if part != TASK_LOSS and entry.direction)


# -- a task's reports -------------------------------------------------------------------------------------------
def task_metrics(task: Any) -> dict[str, str]:
    """Every metric a task's ``metrics`` returns, with its direction: ``metric`` (``mode``) first."""
    return {task.metric: task.mode, **task.other_metrics}


def split_metrics(task: Any) -> dict[str, str]:
    """``<split>_<m>`` of every evaluation split and every metric of ``task``, split by split."""
    return {split_metric(split, m): way for split in task.evaluation_splits for m, way in task_metrics(task).items()}


def transformed_metrics(task: Any) -> dict[str, str]:
    """``test_<m>_transformed`` of a trainable task that has a test split (the loop scores the moved copy)."""
    if not task.trainable or TRANSFORMED_SPLIT not in task.evaluation_splits:
        return {}
    return {transformed_metric(m): way for m, way in task_metrics(task).items()}


def control_metrics(task: Any) -> dict[str, str]:
    """A separation task's isomorphic control, split by split: ``<split>_<m>_calibrated`` of every metric of the
    task, ``<split>_isomorphic_separated`` and ``<split>_isomorphic_distance_max`` (none for a trainable task)."""
    if task.trainable:
        return {}
    own = {**{calibrated(m): way for m, way in task_metrics(task).items()},
           **{name: entry.direction for name, entry in CONTROL.items()}}
    return {split_metric(split, m): way for split in task.evaluation_splits for m, way in own.items()}


def evaluation_metrics(task: Any) -> dict[str, str]:
    """What one evaluation scores: ``split_metrics``, ``transformed_metrics`` (the keys ``best_of`` keeps) and a
    separation task's ``control_metrics``."""
    return {**split_metrics(task), **transformed_metrics(task), **control_metrics(task)}


def selection_metric(task: Any) -> str:
    """What model selection reads: the task's metric on ``SELECTION_SPLIT``."""
    return split_metric(SELECTION_SPLIT, task.metric)


def headline(task: Any) -> str:
    """The sweep's default metric: best_val_<metric>; a separation task's own metric on its first split."""
    if not task.trainable:
        return split_metric(task.evaluation_splits[0], task.metric)
    return best(selection_metric(task))


def gap_split(task: Any) -> str:
    """The split the equivariance measurements take their inputs from: the test split, else the first one."""
    splits = task.evaluation_splits
    return TRANSFORMED_SPLIT if TRANSFORMED_SPLIT in splits else splits[0]


def best_of(task: Any, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``best_<key>`` for every evaluation metric of ``task`` among ``metrics``, in their order."""
    scored = evaluation_metrics(task)
    return {best(key): value for key, value in metrics.items() if key in scored}


def eval_std(name: str) -> str:
    """The spread (std, ddof 1) of metric ``name`` over repeated evaluations of the same weights with fresh noise."""
    return f"{name}_eval_std"


def eval_std_keys(task: Any) -> list[str]:
    """``best_<split>_<m>_eval_std`` of every evaluation split and metric (``trainer.eval_std_repeats``)."""
    return [eval_std(best(name)) for name in split_metrics(task)] if task.trainable else []


def _entries(task: Any) -> dict[str, Entry]:
    if not task.trainable:
        return dict(SEPARATION)
    spread = Entry(None, False, "std over trainer.eval_std_repeats evaluations of the best weights with fresh noise")
    return {**LOOP, **{train_part(part): entry for part, entry in PARTS.items()},
            **(DECISIONS if getattr(task, "decides", False) else {}), **{key: spread for key in eval_std_keys(task)}}


def reported_metrics(task: Any) -> dict[str, str]:
    """Every metric the trials of ``task`` report, with its direction (what ``sweep.metric`` may name)."""
    own = {name: entry.direction for name, entry in _entries(task).items() if entry.direction}
    if not task.trainable:
        return {**split_metrics(task), **control_metrics(task), **own}
    splits, moved = split_metrics(task), transformed_metrics(task)
    return {**{best(n): way for n, way in splits.items()}, **splits, **{best(n): way for n, way in moved.items()},
            **moved, **own}


def report_keys(task: Any) -> set[str]:
    """Every key a report of ``task`` may hold: its metrics and the recorded entries."""
    return set(reported_metrics(task)) | set(_entries(task))


def direction(task: Any, metric: str) -> str:
    """min or max for a metric the trials of ``task`` report; a ValueError naming the reported ones otherwise."""
    metrics = reported_metrics(task)
    if metric not in metrics:
        raise ValueError(f"metric {metric!r} is not reported by task {task.name!r}; allowed: {', '.join(metrics)}")
    return metrics[metric]


def recorded_directions(config: Mapping[str, Any]) -> dict[str, str]:
    """The directions a config.json recorded at launch (``DIRECTIONS_KEY``), plausible entries only (the file may
    come from anyone: names are identifiers, directions min or max)."""
    found = config.get(DIRECTIONS_KEY)
    if not isinstance(found, Mapping):
        return {}
    return {name: way for name, way in found.items()
            if isinstance(name, str) and name.isidentifier() and way in DIRECTIONS}


def in_every_report(task: Any, metric: str) -> bool:
    """Whether every report of a trial of ``task`` holds ``metric`` (not only those after an evaluation)."""
    entry = _entries(task).get(metric)
    return not task.trainable or (entry is not None and entry.every_report)
