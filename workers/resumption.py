"""Continuing from a checkpoint, and evaluating a finished one anew: what the loop does with a checkpoint
besides writing it (``workers.checkpoints`` holds the format and the files).

``check_resume`` refuses a checkpoint a config cannot continue before anything is written; ``restore`` loads
the training objects, the global RNG and the ``LoopState`` (a finished checkpoint returns its result: the
last report, or its best weights evaluated anew when the evaluation settings changed: ``reevaluate``);
``evaluate_checkpoint`` measures a finished trial's best weights at other sample counts (``symsweep evaluate``).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any, Mapping, Sequence

from workers.checkpoints import LoopState, load_checkpoint, set_rng_state
from workers.evaluation import Evaluation, end_of_trial, evaluation_metrics, samples_curve, with_transformed
from workers.objectives import NO_GRADNORM_STATE
from workers.reporting import BEST_EPOCH, ELAPSED, EPOCH, EVAL_SAMPLES, STEP, Report, best_of
from workers.runtime import build_seeded, pick_device
from workers.settings import TrialPlan, check_config, unused_keys
from workers.sharding import Shard

EVALUATION_KEYS = (("symmetrizer", "eval_samples"), ("trainer", "eval_samples_curve"),  # how a finished trial is
                   ("trainer", "eval_samples_repeats"), ("trainer", "eval_std_repeats"))  # evaluated, not trained


def restore(training, resume: str | os.PathLike, report: Report, replay: bool) -> tuple[LoopState, dict | None]:
    """Continue the loop's ``training`` (a ``workers.train.Training``, not imported: the loop imports this
    module) from the checkpoint ``resume``: the training objects, the global RNG and the loop state.

    With ``replay`` the reports it holds are made again. A finished checkpoint returns its final metrics
    as the second value (nothing is trained): the last report, or, when the config changes how it is
    evaluated, its best weights evaluated anew."""
    saved = load_checkpoint(resume)
    then = check_resume(saved, training.plan, resume)
    state = LoopState.from_checkpoint(saved, resume)
    training.model.load_state_dict(saved["model"])
    training.optimizer.load_state_dict(saved["optimizer"])
    training.scheduler.load_state_dict(saved["scheduler"])
    training.objective.load_state_dict(saved.get("gradnorm"))
    set_rng_state(saved["rng"], training.device)
    for metrics in state.history if replay else []:
        report(metrics, None)
    if state.epoch >= training.trainer.epochs and state.history:  # finished before the interruption
        if evaluation_changes(then, training.plan):  # never replay results of other settings
            unsharded = replace(training.evaluation, shard=Shard(), transformed=None)
            metrics = reevaluate(unsharded, training.plan, then, saved)
            report(metrics, None)
            return state, metrics
        if not replay:
            report(state.history[-1], None)
        return state, state.history[-1]
    return state, None


def check_resume(saved: Mapping[str, Any], plan: TrialPlan, source: str | os.PathLike = "checkpoint") -> TrialPlan:
    """Refuse a checkpoint ``plan`` cannot continue, before anything is written: one without the whole loop state,
    one without GradNorm's state where ``plan`` trains with GradNorm, or an unfinished one with another
    ``symmetrizer.eval_samples`` (its best_* so far were measured with its own count, and the two would be mixed;
    a finished one is evaluated anew). Returns the checkpoint's own plan (its config, checked once)."""
    state = LoopState.from_checkpoint(saved, source)
    if "remul.gradnorm_lr" not in unused_keys(plan) and saved.get("gradnorm") is None:  # GradNorm's weights are read
        raise ValueError(f"{source}: {NO_GRADNORM_STATE}")
    then = check_config(saved["config"])
    changed = [change for change in evaluation_changes(then, plan) if change.startswith("symmetrizer.eval_samples=")]
    if changed and not (state.epoch >= plan.trainer.epochs and state.history):
        raise ValueError(f"{changed[0]}: the checkpoint of epoch {state.epoch} is not finished (trainer.epochs="
                         f"{plan.trainer.epochs}) and its best_* metrics were measured with its own count; allowed: "
                         "the checkpoint's symmetrizer.eval_samples (a finished checkpoint is evaluated anew)")
    return then


def evaluation_changes(then: TrialPlan, now: TrialPlan) -> list[str]:
    """The evaluation settings (``EVALUATION_KEYS``) in which plan ``now`` differs from a checkpoint's plan
    ``then``, field by field of the typed settings; a key ``now`` does not read (``unused_keys``: eval_samples of
    canonical) is no difference."""
    unused, changes = unused_keys(now), []
    for section, key in EVALUATION_KEYS:
        value, before = getattr(getattr(now, section), key), getattr(getattr(then, section), key)
        if f"{section}.{key}" not in unused and value != before:
            changes.append(f"{section}.{key}={value!r} (checkpoint: {before!r})")
    return changes


def best_weights(saved: Mapping[str, Any], purpose: str) -> dict:
    """The weights of a checkpoint's best validation epoch; a ValueError saying ``purpose`` cannot be served
    by a checkpoint written before the trial's first evaluation (it has no best epoch yet)."""
    weights = saved.get("best_model")
    if weights is None:
        raise ValueError(f"the checkpoint of epoch {saved['loop']['epoch']} holds no weights of a best epoch (it was "
                         f"written before the trial's first evaluation), so it cannot be {purpose}")
    return weights


def reevaluate(evaluation: Evaluation, plan: TrialPlan, then: TrialPlan, saved: Mapping[str, Any]) -> dict[str, Any]:
    """A finished checkpoint (its plan ``then``) evaluated anew with the evaluation settings of ``plan``: the best
    validation epoch's weights (loaded into ``evaluation.model``) on every evaluation split, and the end-of-trial
    measurements."""
    state, task = saved["loop"], evaluation.task
    weights = best_weights(saved, f"evaluated with {', '.join(evaluation_changes(then, plan))}; "
                                  "allowed: the checkpoint's own evaluation settings")
    evaluation.model.load_state_dict(weights)
    metrics: dict[str, Any] = {EPOCH: state["epoch"], STEP: state["step"],
                               EVAL_SAMPLES: int(getattr(evaluation.model, "eval_samples", 1))}
    metrics.update(evaluation_metrics(with_transformed(evaluation), state["epoch"]))
    metrics.update(best_of(task, metrics))
    metrics[BEST_EPOCH] = state["best"].get(BEST_EPOCH, state["epoch"])
    metrics.update(end_of_trial(evaluation, plan.model, weights))
    metrics[ELAPSED] = state["elapsed"]
    return metrics


def evaluate_checkpoint(saved: Mapping[str, Any], counts: Sequence[int], repeats: int, splits: Sequence[str],
                        device: str = "auto") -> dict[str, dict[str, dict[str, float]]]:
    """A finished trial's best model evaluated at each number of evaluation samples in ``counts`` on
    ``splits`` (``samples_curve``), without training: ``symsweep evaluate``."""
    trial = check_config(saved["config"])
    task, trainer = trial.task, trial.trainer
    missing = [split for split in splits if split not in task.evaluation_splits]
    if missing:
        raise ValueError(f"--split={missing[0]} is not an evaluation split of task {task.name!r}; allowed: "
                         f"{', '.join(task.evaluation_splits)}")
    data = task.load()
    where = pick_device(device)
    model = build_seeded(trial.model, trainer.seed).to(where)
    model.load_state_dict(best_weights(saved, "evaluated at other sample counts"))
    return samples_curve(Evaluation(model, task, data, trainer, where), counts, repeats, splits)

