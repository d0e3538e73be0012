"""The training loop: one plain-dict config in, metrics and checkpoints out. No ray import.

``run(config, report, workdir, resume, shard)`` trains one symmetrized model on one task:

    data (cached) -> model (factory), objective of the method (``workers.objectives``)
      -> [``restore`` the ``LoopState`` and training objects from a checkpoint (``workers.resumption``)]
      -> for each epoch, ``train_epoch``: shuffled batches (order from (seed, epoch))
      -> loss (+ entropy penalty | augmentation | REMUL penalty) -> backward -> clip -> step
      -> ``evaluate`` every ``eval_every`` epochs (``workers.evaluation``): every evaluation split with the eval
         sample count, best validation and the test metrics at it, entropy of P̄, a cheap equivariance error
      -> ``save`` every ``checkpoint_every`` epochs: an atomic checkpoint -> ``report(metrics, checkpoint)``
      -> after the last epoch, on the weights of the best validation epoch: the exact (coupled, float64)
         equivariance gap and, when asked, the metric at several evaluation sample counts

Every report key comes from ``workers.reporting``. All randomness is explicit (``workers.runtime``):
group-sample noise of step s comes from a generator seeded by (seed, s), evaluation noise from (seed,
epoch, split), batch order from (seed, epoch), and the global torch RNG (dropout) is saved in every
checkpoint, so resuming from any checkpoint gives the same metrics at every later epoch as the
uninterrupted run (exactly, on CPU). Tasks that are scored at initialisation (GRAPH8c, EXP) run the
separation protocol (``workers.separation``) instead of training.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from workers.checkpoints import LoopState, rng_state, save_checkpoint
from workers.evaluation import Evaluation, end_of_trial, equivariance_error, evaluation_metrics, with_transformed
from workers.objectives import Supervised, make_objective
from workers.reporting import (
    BEST_EPOCH,
    ELAPSED,
    EPOCH,
    EXAMPLES_PER_S,
    LR,
    MC_ERROR,
    MIN,
    SAMPLES_PER_S,
    STEP,
    TRAIN_LOSS,
    TRAINING_SPLIT,
    Report,
    best,
    best_of,
    selection_metric,
    train_part,
)
from workers.resumption import restore
from workers.runtime import build_seeded, pick_device, step_generator, to_device
from workers.schema import TrainerSettings
from workers.separation import separation
from workers.settings import TrialPlan, check_config
from workers.sharding import Shard
from workers.tasks import Task, TaskData, iterate_batches


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept.

    Deterministic given the seed: retrying from a checkpoint diverges again, so sweeps do not retry it.
    ``epoch`` is the epoch of the last good checkpoint (0: none yet)."""

    def __init__(self, message: str, epoch: int = 0):
        super().__init__(message)
        self.epoch = epoch


# -- set-up -------------------------------------------------------------------------------------------
def make_optimizer(model: torch.nn.Module, trainer: TrainerSettings) -> torch.optim.Optimizer:
    """Adam/AdamW; parameters loaded from a pretrained weights file get ``pretrained_lr``."""
    names = set(getattr(getattr(model, "base", None), "pretrained_parameter_names", lambda: [])())
    pretrained = [p for n, p in model.named_parameters() if n.removeprefix("base.") in names and n.startswith("base.")]
    pretrained_names = {f"base.{name}" for name in names}
    others = [p for n, p in model.named_parameters() if n not in pretrained_names]
    groups = [{"params": others, "lr": trainer.lr}]
    if pretrained:
        groups.append({"params": pretrained, "lr": trainer.pretrained_lr if trainer.pretrained_lr is not None
                       else trainer.lr})
    cls = torch.optim.AdamW if trainer.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, weight_decay=trainer.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, trainer: TrainerSettings, steps_per_epoch: int):
    """Linear warm-up over ``warmup_epochs``, then constant or cosine decay to 0, per step."""
    warmup, total = trainer.warmup_epochs * steps_per_epoch, trainer.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if trainer.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_splits(task: Task, data: TaskData) -> None:
    """The task's data holds every split it declares (its evaluation splits; the training split if trainable)."""
    wanted = [*task.evaluation_splits, *([TRAINING_SPLIT] if task.trainable else [])]
    missing = [split for split in wanted if split not in data.splits]
    if missing:
        raise ValueError(f"task.name={task.name!r}: its data has no split {missing[0]!r} (it has "
                         f"{', '.join(data.splits)}); expected the splits it declares: {', '.join(wanted)}")


# -- the loop -------------------------------------------------------------------------------------------
@dataclass
class Training:
    """What a trial's epochs work on, built once from the config (``LoopState`` is what changes); the model,
    task, data, settings, device and shard are its ``evaluation``'s."""

    plan: TrialPlan  # the config, checked and typed (its plain dict is what a checkpoint records)
    workdir: Path
    optimizer: torch.optim.Optimizer
    scheduler: Any
    objective: Supervised
    evaluation: Evaluation  # the transformed test split is drawn once training starts

    @property
    def model(self) -> torch.nn.Module:
        return self.evaluation.model

    @property
    def task(self) -> Task:
        return self.evaluation.task

    @property
    def data(self) -> TaskData:
        return self.evaluation.data

    @property
    def trainer(self) -> TrainerSettings:
        return self.evaluation.trainer

    @property
    def device(self) -> torch.device:
        return self.evaluation.device

    @property
    def shard(self) -> Shard:
        return self.evaluation.shard


def run(config: TrialPlan | Mapping[str, Any], report: Report | None = None, workdir: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None, shard: Shard = Shard(), replay: bool = False) -> dict[str, float]:
    """Train (or, for separation tasks, score) one configuration; return the last reported metrics.

    ``report(metrics, checkpoint_dir)`` is called after every evaluation or checkpoint (the
    directory is None when no checkpoint was written). ``resume`` is a checkpoint to continue from;
    with ``replay`` the reports made before that checkpoint are made again first (for a caller
    whose log was lost). Only rank 0 of a sharded trial writes checkpoints. ``config`` is a plain dict (checked
    here) or its already checked ``TrialPlan``.
    """
    plan = config if isinstance(config, TrialPlan) else check_config(config)
    task, trainer = plan.task, plan.trainer
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    device = pick_device(trainer.device)
    report = report or (lambda metrics, checkpoint: None)
    data = task.load()
    check_splits(task, data)
    if not task.trainable:
        return separation(plan, data, device, report)
    training = set_up(plan, data, device, shard, Path(workdir or Path.cwd() / "trial"))
    state = LoopState()
    if resume is not None:
        state, finished = restore(training, resume, report, replay)
        if finished is not None:
            return finished
    training.evaluation = with_transformed(training.evaluation)
    start = time.perf_counter() - state.elapsed
    metrics = state.last_metrics()  # what a run resumed from its final checkpoint returns: nothing trained
    for epoch in range(state.epoch + 1, trainer.epochs + 1):
        metrics = train_epoch(training, state, epoch)
        evaluate_now = epoch % trainer.eval_every == 0 or epoch == trainer.epochs
        if evaluate_now:
            evaluate(training, state, epoch, metrics)
        metrics.update(state.metrics)
        metrics.update(state.best)
        state.epoch, state.elapsed = epoch, time.perf_counter() - start
        metrics[ELAPSED] = state.elapsed
        if epoch == trainer.epochs and state.best_weights is not None:
            metrics.update(end_of_trial(training.evaluation, plan.model, state.best_weights))
        checkpoint_now = epoch % trainer.checkpoint_every == 0 or epoch == trainer.epochs
        if evaluate_now or checkpoint_now:  # every worker of a sharded trial reports together
            state.history.append(dict(metrics))
            report(metrics, save(training, state) if checkpoint_now else None)
    return metrics


def set_up(plan: TrialPlan, data: TaskData, device: torch.device, shard: Shard, workdir: Path) -> Training:
    """The seeded model, its optimiser, schedule and objective; then the global RNG (dropout) is seeded."""
    trainer = plan.trainer
    model = build_seeded(plan.model, trainer.seed).to(device)
    optimizer = make_optimizer(model, trainer)
    scheduler = make_schedule(optimizer, trainer, math.ceil(data.size(TRAINING_SPLIT) / trainer.batch_size))
    objective = make_objective(plan.symmetrizer, plan.remul, model, plan.task, shard)
    torch.manual_seed(trainer.seed + 1)  # the global stream: dropout
    return Training(plan, workdir, optimizer, scheduler, objective,
                    Evaluation(model, plan.task, data, trainer, device, shard))


def train_epoch(training: Training, state: LoopState, epoch: int) -> dict[str, float]:
    """One pass over the shuffled training split (order from (seed, epoch), group-sample noise of step s
    from (seed, s)); the epoch's training metrics."""
    trainer, model, device = training.trainer, training.model, training.device
    autocast = trainer.precision == "bf16" and device.type == "cuda"
    model.train()
    epoch_start, losses, examples, sums = time.perf_counter(), [], 0, {}
    for batch in iterate_batches(training.data.splits[TRAINING_SPLIT], trainer.batch_size, shuffle=True,
                                 seed=trainer.seed, epoch=epoch):
        state.step += 1
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss, parts = training.objective(batch, step_generator(trainer.seed, state.step))
        if not torch.isfinite(loss):
            raise NonFiniteLoss(non_finite_message(float(loss.detach()), epoch, state, training.workdir), state.epoch)
        optimizer_step(training, loss)
        losses.append(float(loss.detach()))
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + float(value)
        examples += int(batch["y"].shape[0])
    seconds = time.perf_counter() - epoch_start
    metrics = {EPOCH: epoch, STEP: state.step, TRAIN_LOSS: sum(losses) / max(1, len(losses)),
               SAMPLES_PER_S: examples * getattr(model, "train_samples", 1) / max(seconds, 1e-9),
               EXAMPLES_PER_S: examples / max(seconds, 1e-9), LR: training.optimizer.param_groups[0]["lr"]}
    for name, value in sums.items():  # epoch means, like train_loss
        metrics[train_part(name)] = value / max(1, len(losses))
    return metrics


def optimizer_step(training: Training, loss: torch.Tensor) -> None:
    """Backward, gradients averaged over the workers of a sharded trial, clipping, optimiser and schedule."""
    training.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    training.shard.average_gradients(training.model.parameters())
    if training.trainer.grad_clip:
        torch.nn.utils.clip_grad_norm_(training.model.parameters(), training.trainer.grad_clip)
    training.optimizer.step()
    training.scheduler.step()


def evaluate(training: Training, state: LoopState, epoch: int, metrics: dict) -> None:
    """One evaluation into ``metrics``: every evaluation split, the transformed test split, every
    ``equivariance_every`` evaluations the Monte-Carlo equivariance error; then the best so far (and its
    weights) and the latest evaluation metrics in ``state``."""
    state.evaluations += 1
    scores = evaluation_metrics(training.evaluation, epoch)
    every = training.trainer.equivariance_every
    if every and state.evaluations % every == 0:
        scores[MC_ERROR] = equivariance_error(training.evaluation, epoch)
    metrics.update(scores)
    state.best = best_so_far(state.best, metrics, training.task, epoch)
    if state.best.get(BEST_EPOCH) == epoch:
        state.best_weights = weights_copy(training.model)
    state.metrics = dict(scores)


def best_so_far(so_far: dict, metrics: Mapping[str, float], task: Task, epoch: int) -> dict:
    """Best validation metric so far, and every evaluation metric at that epoch (``best_*``)."""
    key = selection_metric(task)
    if key not in metrics:
        return so_far
    current = so_far.get(best(key))
    better = current is None or (metrics[key] < current if task.mode == MIN else metrics[key] > current)
    if not better:
        return so_far
    return {**best_of(task, metrics), BEST_EPOCH: epoch}


def weights_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def save(training: Training, state: LoopState) -> Path | None:
    """The checkpoint of ``state.epoch`` (rank 0 of a sharded trial only; the others return None)."""
    if training.shard.rank != 0:
        return None
    return save_checkpoint(training.workdir / f"checkpoint_{state.epoch:06d}", {
        "model": training.model.state_dict(), "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(), "gradnorm": training.objective.state_dict(),
        "rng": rng_state(training.device), **state.to_checkpoint(), "config": dict(training.plan.config)})


def non_finite_message(loss: float, epoch: int, state: LoopState, workdir: Path) -> str:
    """Where the failure happened and which checkpoint is good (one that exists now, or none)."""
    message = f"non-finite training loss ({loss}) at epoch {epoch}, step {state.step}"
    kept = workdir / f"checkpoint_{state.epoch:06d}"
    if state.epoch and (kept / "state.pt").is_file():
        message += f"; the last good checkpoint (epoch {state.epoch}) is {kept}"
    elif state.epoch:
        message += f"; the last good checkpoint is of epoch {state.epoch}"
    else:
        message += "; no checkpoint was written before it"
    return f"{message} (the same seed diverges again: lower trainer.lr or set trainer.grad_clip)"
