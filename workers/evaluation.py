"""Scoring a model: every evaluation split, the transformed test split, the equivariance errors, and what is
measured once on the best weights at the end of a trial. No training here, and nothing of the loop's state.

Every helper takes one ``Evaluation`` (the model, its task and data, the trainer settings, the device, the
shard of a sharded trial, the transformed test split once drawn) and the one thing that varies between its
calls (an epoch, a split, counts). Report keys come from ``workers.reporting``. Evaluation noise is drawn
from (seed, epoch, split), so an evaluation repeated on the same weights gives the same numbers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import torch

from workers.models.factory import Plan
from workers.objectives import forward, transformed_batch
from workers.reporting import (
    CURVE,
    ENTROPY,
    EXACT_GAP,
    FLIPS,
    REDRAWN_FLIPS,
    SELECTION_SPLIT,
    TRANSFORMED_SPLIT,
    best,
    eval_std,
    gap_split,
    split_metric,
    transformed_metric,
)
from workers.runtime import build_seeded, step_generator, to_device
from workers.schema import TrainerSettings
from workers.sharding import Shard
from workers.symmetry import Symmetrizer, coupled_equivariance_gap, equivariance_errors, permutation_entropy
from workers.tasks import Task, TaskData, iterate_batches

Split = Mapping[str, torch.Tensor]  # one split's tensors (or a batch of them)


@dataclass(frozen=True)
class Evaluation:
    """What scoring one model needs: the model, its task and data, the trainer settings (seed, batch sizes,
    equivariance sizes, sample-count curve), the device, the shard of a sharded trial, and the transformed
    copy of the test split (``with_transformed``; None before it is drawn, or without a test split)."""

    model: torch.nn.Module
    task: Task
    data: TaskData
    trainer: TrainerSettings
    device: torch.device
    shard: Shard = field(default_factory=Shard)
    transformed: dict[str, torch.Tensor] | None = None

    @property
    def seed(self) -> int:
        return self.trainer.seed


@torch.no_grad()
def score(evaluation: Evaluation, split: Split, generator: torch.Generator) -> tuple[dict[str, float], float | None]:
    """Task metrics of a whole split with the eval sample count, and the entropy of P̄ (S_n; else None)."""
    model, shard, device = evaluation.model, evaluation.shard, evaluation.device
    model.eval()
    predictions, entropies = [], []
    size = evaluation.trainer.eval_batch_size or evaluation.trainer.batch_size
    for batch in iterate_batches(split, size, shuffle=False):
        batch = to_device(batch, device)
        out = forward(model, evaluation.task, batch, generator, shard)
        predictions.append(out.output.float())
        perm = getattr(out.elements, "perm", None)
        if perm is not None:
            perms = shard.gather(perm.view(out.samples.shape[0], -1, perm.shape[-1]), dim=1)  # (B, N, n)
            entropies.append(permutation_entropy(perms, batch.get("mask")))
    metrics = evaluation.task.metrics(torch.cat(predictions), to_device(split, device))
    entropy = float(torch.cat(entropies).mean()) if entropies else None
    return metrics, entropy


@torch.no_grad()
def decisions(evaluation: Evaluation, split: Split, generator: torch.Generator) -> torch.Tensor:
    """(B,) the task's decision for every example of ``split`` (a task that ``decides``), eval sample count."""
    model, size = evaluation.model.eval(), evaluation.trainer.eval_batch_size or evaluation.trainer.batch_size
    parts = [evaluation.task.decide(forward(model, evaluation.task, to_device(batch, evaluation.device), generator,
                                            evaluation.shard).output.float()).cpu()
             for batch in iterate_batches(split, size, shuffle=False)]
    return torch.cat(parts)


@torch.no_grad()
def transformed_split(model, task: Task, split: Split, seed: int) -> dict[str, torch.Tensor]:
    """A copy of ``split`` with one uniform random group element applied to each example (inputs,
    mask and target alike), drawn once per trial from ``seed``.

    A model that is invariant/equivariant scores the same on it as on the split itself (up to its
    own sampling noise); a gap shows a model reading something the symmetry should hide, e.g. a
    dataset whose node order carries the label, or a broken symmetrizer.
    """
    generator = step_generator(seed, 9_001)
    parts = [transformed_batch(model, task, batch, generator) for batch in iterate_batches(split, 512, shuffle=False)]
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def with_transformed(evaluation: Evaluation) -> Evaluation:
    """``evaluation`` with the transformed copy of its task's test split (unchanged without one)."""
    if TRANSFORMED_SPLIT not in evaluation.task.evaluation_splits:
        return evaluation
    moved = transformed_split(evaluation.model, evaluation.task, evaluation.data.splits[TRANSFORMED_SPLIT],
                              evaluation.seed)
    return replace(evaluation, transformed=moved)


def evaluation_metrics(evaluation: Evaluation, epoch: int) -> dict[str, float]:
    """One evaluation: every evaluation split of the task with the eval sample count (noise from (seed, epoch,
    split)), the entropy of P̄ on the selection split (S_n), and the transformed test split when drawn."""
    seed, metrics = evaluation.seed, {}
    for index, split in enumerate(evaluation.task.evaluation_splits):
        values, entropy = score(evaluation, evaluation.data.splits[split], step_generator(seed, epoch, 1_000 + index))
        metrics.update({split_metric(split, key): value for key, value in values.items()})
        if entropy is not None and split == SELECTION_SPLIT:
            metrics[ENTROPY] = entropy
    if evaluation.transformed is not None:
        values, _ = score(evaluation, evaluation.transformed, step_generator(seed, epoch, 2_000))
        metrics.update({transformed_metric(key): value for key, value in values.items()})
    return metrics


def equivariance_error(evaluation: Evaluation, epoch: int) -> float:
    """E (REMUL eq. 12) on the first examples of the selection split with a few group samples and fresh noise
    for every epoch: for a sampled symmetrization (PS, GA, FA) mostly the Monte-Carlo spread of the N-sample
    estimate, not a departure from equivariance (reported as ``mc_equivariance_error``; the exact check is
    ``exact_equivariance_gap``)."""
    model, task, trainer = evaluation.model, evaluation.task, evaluation.trainer
    seed = evaluation.seed * 7919 + epoch
    model.eval()
    split = evaluation.data.splits[SELECTION_SPLIT]
    batch = to_device({k: v[: trainer.equivariance_batch] for k, v in split.items()}, evaluation.device)
    inputs = {name: batch[name] for name in task.input_kinds}
    generator = step_generator(seed, 7)

    def apply(x, mask):
        return model(x, mask, generator=generator).output if isinstance(model, Symmetrizer) else model(x, mask).output

    errors = equivariance_errors(apply, inputs, model.group, task.input_kinds, task.target_kind, batch.get("mask"),
                                 samples=trainer.equivariance_samples, generator=step_generator(seed, 8))
    return errors["E"]


# -- the best weights, measured once ----------------------------------------------------------------------------
def exact_equivariance_gap(evaluation: Evaluation, split: Split) -> float:
    """The coupled gap (noise moved with the input) in float64 on the first ``equivariance_batch`` examples of
    ``split``: round-off for an exactly equivariant symmetrization, the real departure from equivariance
    otherwise (``none``, ``augment``, ``remul``, interpolated rotations). Unlike E with fresh noise, no
    Monte-Carlo spread enters it. The model is turned to float64 in place."""
    model = evaluation.model.double().eval()
    rows = {k: v[: evaluation.trainer.equivariance_batch] for k, v in split.items()}
    batch = {k: v.double() if v.is_floating_point() else v for k, v in to_device(rows, evaluation.device).items()}
    inputs = {name: batch[name] for name in evaluation.task.input_kinds}
    return coupled_equivariance_gap(model, inputs, batch.get("mask"), generator=step_generator(evaluation.seed, 9))


def samples_curve(evaluation: Evaluation, counts: Sequence[int], repeats: int, splits: Sequence[str]
                  ) -> dict[str, dict[str, dict[str, float]]]:
    """``{<split>_<metric>: {<N>: {mean, std}}}``: the task metric of every split evaluated with N group
    samples per input, for each N of ``counts``, mean and std (ddof 1) over ``repeats`` fresh draws of the
    noise (the spread a single evaluation with N samples has)."""
    model, metric, seed = evaluation.model, evaluation.task.metric, evaluation.seed
    curve: dict[str, dict[str, dict[str, float]]] = {}
    kept = model.eval_samples
    try:
        for split in splits:
            points = curve.setdefault(split_metric(split, metric), {})
            stream = zlib.crc32(split.encode())  # the draws of a split do not depend on the other splits asked
            for count in counts:
                model.eval_samples = int(count)
                values = torch.tensor([
                    score(evaluation, evaluation.data.splits[split],
                          step_generator(seed, 3_000, stream, count, draw))[0][metric]
                    for draw in range(repeats)], dtype=torch.float64)
                points[str(int(count))] = {"mean": float(values.mean()),
                                           "std": float(values.std()) if repeats > 1 else 0.0}
    finally:
        model.eval_samples = kept
    return curve


def decision_flips(evaluation: Evaluation) -> dict[str, int]:
    """``test_flips_transformed``: test examples whose decision differs between the test split and its transformed
    copy (``with_transformed``: one random group element per example; S_n relabels the nodes), and
    ``test_flips_redrawn``: those whose decision differs between two evaluations of the test split with fresh noise.
    For a deterministic model the second is 0 and the first counts its departures from invariance (canonicalization's
    score ties); for a sampled one both include the noise of one N-sample estimate."""
    evaluation = evaluation if evaluation.transformed is not None else with_transformed(evaluation)
    stored, seed = evaluation.data.splits[TRANSFORMED_SPLIT], evaluation.seed
    first = decisions(evaluation, stored, step_generator(seed, 4_000))
    redrawn = decisions(evaluation, stored, step_generator(seed, 4_001))
    moved = decisions(evaluation, evaluation.transformed, step_generator(seed, 4_002))
    return {FLIPS: int((first != moved).sum()), REDRAWN_FLIPS: int((first != redrawn).sum())}


def evaluation_spread(evaluation: Evaluation, repeats: int) -> dict[str, float]:
    """``best_<split>_<m>_eval_std``: the std (ddof 1) of every task metric of every evaluation split over
    ``repeats`` evaluations of the same weights with fresh noise at the evaluation sample count (streams of their
    own: not the draws of the reported best_<split>_<m>)."""
    out, seed = {}, evaluation.seed
    for index, split in enumerate(evaluation.task.evaluation_splits):
        rows = evaluation.data.splits[split]
        draws = [score(evaluation, rows, step_generator(seed, 5_000, index, draw))[0] for draw in range(repeats)]
        for metric in draws[0]:
            values = torch.tensor([draw[metric] for draw in draws], dtype=torch.float64)
            out[eval_std(best(split_metric(split, metric)))] = float(values.std())
    return out


def best_model(evaluation: Evaluation, plan: Plan, weights: Mapping[str, torch.Tensor]) -> Evaluation:
    """An evaluation of the model of ``plan`` with ``weights`` (a fresh model: unsharded, nothing drawn yet)."""
    model = build_seeded(plan, evaluation.seed).to(evaluation.device)
    model.load_state_dict(weights)
    return Evaluation(model, evaluation.task, evaluation.data, evaluation.trainer, evaluation.device)


def end_of_trial(evaluation: Evaluation, plan: Plan, weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What is measured once on the best validation epoch's ``weights``: ``equivariance_gap`` on test
    inputs; with ``trainer.eval_samples_curve``, ``eval_samples_curve`` on every evaluation split; with
    ``trainer.eval_std_repeats``, ``evaluation_spread``; for a task that ``decides``, ``decision_flips``."""
    best = best_model(evaluation, plan, weights)
    trainer, out = best.trainer, {}
    if trainer.eval_std_repeats:
        out.update(evaluation_spread(best, trainer.eval_std_repeats))
    if best.task.decides and TRANSFORMED_SPLIT in best.task.evaluation_splits:
        out.update(decision_flips(replace(best, transformed=evaluation.transformed)))
    if trainer.eval_samples_curve:
        out[CURVE] = samples_curve(best, trainer.eval_samples_curve, trainer.eval_samples_repeats,
                                   best.task.evaluation_splits)
    out[EXACT_GAP] = exact_equivariance_gap(best, best.data.splits[gap_split(best.task)])
    return out
