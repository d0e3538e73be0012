"""The training loop: one plain-dict config in, metrics and checkpoints out. No ray import.

``run(config, report, workdir, resume, shard)`` trains one symmetrized model on one task:

    data (cached) -> model (factory), objective of the method (``workers.objectives``)
      -> [``restore`` the ``LoopState`` and training objects from a checkpoint]
      -> for each epoch, ``train_epoch``: shuffled batches (order from (seed, epoch))
      -> loss (+ entropy penalty | augmentation | REMUL penalty) -> backward -> clip -> step
      -> ``evaluate`` every ``eval_every`` epochs: every evaluation split with the eval sample count, best
         validation and the test metrics at it, entropy of P̄, a cheap equivariance error
      -> ``save`` every ``checkpoint_every`` epochs: an atomic checkpoint -> ``report(metrics, checkpoint)``
      -> after the last epoch, on the weights of the best validation epoch: the exact (coupled, float64)
         equivariance gap and, when asked, the metric at several evaluation sample counts

All randomness is explicit: group-sample noise of step s comes from a generator seeded by
(seed, s), evaluation noise from (seed, epoch, split), batch order from (seed, epoch), and the
global torch RNG (dropout) is saved in every checkpoint, so resuming from any checkpoint gives the
same metrics at every later epoch as the uninterrupted run (exactly, on CPU). Tasks that are scored
at initialisation (GRAPH8c, EXP) run the separation protocol instead of training.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from workers.checkpoints import (
    CHECKPOINT_KEYS,
    CheckpointError,
    LoopState,
    checkpoints,
    latest_checkpoint,
    load_checkpoint,
    newest_loadable,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from workers.models.factory import Plan, build_model
from workers.objectives import (
    NO_GRADNORM_STATE,
    Supervised,
    forward,
    make_objective,
    transformed_batch,
)
from workers.schema import SECTIONS, RemulSettings, SymmetrizerSettings, TrainerSettings, load
from workers.settings import TrialPlan, check_config, trainer_settings, unused_keys
from workers.sharding import Shard
from workers.symmetry import (
    Symmetrizer,
    coupled_equivariance_gap,
    equivariance_errors,
    permutation_entropy,
)
from workers.tasks import Task, TaskData, iterate_batches
from workers.tasks.separation import separation_count

__all__ = [  # the checkpoint names are part of this module's interface (the trainable and the commands use them)
    "CHECKPOINT_KEYS", "CheckpointError", "LoopState", "NonFiniteLoss", "checkpoints", "evaluate_checkpoint",
    "latest_checkpoint", "load_checkpoint", "newest_loadable", "run", "save_checkpoint",
]

Report = Callable[[dict, "Path | None"], None]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept.

    Deterministic given the seed: retrying from a checkpoint diverges again, so sweeps do not retry it.
    ``epoch`` is the epoch of the last good checkpoint (0: none yet)."""

    def __init__(self, message: str, epoch: int = 0):
        super().__init__(message)
        self.epoch = epoch


# -- set-up -------------------------------------------------------------------------------------------
def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("trainer.device='cuda' but no CUDA device is visible to this trial; allowed here: auto, cpu")
    return torch.device("cuda" if choice in ("cuda", "auto") and torch.cuda.is_available() else "cpu")


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


def step_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of integers (seed, step, ...)."""
    value = 0
    for part in key:
        value = (value * 1_000_003 + int(part)) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# -- evaluation ---------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_split(model, task: Task, split: Mapping[str, torch.Tensor], trainer: TrainerSettings, device,
                   generator: torch.Generator, shard: Shard) -> tuple[dict[str, float], float | None]:
    """Task metrics of a whole split with the eval sample count, and the entropy of P̄ (S_n)."""
    model.eval()
    predictions, entropies = [], []
    size = trainer.eval_batch_size or trainer.batch_size
    for batch in iterate_batches(split, size, shuffle=False):
        batch = to_device(batch, device)
        out = forward(model, task, batch, generator, shard)
        predictions.append(out.output.float())
        perm = getattr(out.elements, "perm", None)
        if perm is not None:
            perms = shard.gather(perm.view(out.samples.shape[0], -1, perm.shape[-1]), dim=1)  # (B, N, n)
            entropies.append(permutation_entropy(perms, batch.get("mask")))
    metrics = task.metrics(torch.cat(predictions), to_device(split, device))
    entropy = float(torch.cat(entropies).mean()) if entropies else None
    return metrics, entropy


TRANSFORMED_SPLIT = "test"  # the split also scored on a randomly group-transformed copy


@torch.no_grad()
def transformed_split(model, task: Task, split: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A copy of ``split`` with one uniform random group element applied to each example (inputs,
    mask and target alike), drawn once per trial from ``seed``.

    A model that is invariant/equivariant scores the same on it as on the split itself (up to its
    own sampling noise); a gap shows a model reading something the symmetry should hide, e.g. a
    dataset whose node order carries the label, or a broken symmetrizer.
    """
    generator = step_generator(seed, 9_001)
    parts = [transformed_batch(model, task, batch, generator) for batch in iterate_batches(split, 512, shuffle=False)]
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def evaluate_transformed(model, task: Task, transformed: Mapping[str, torch.Tensor], trainer: TrainerSettings,
                         device, seed: int, epoch: int, shard: Shard) -> dict[str, float]:
    """``test_<metric>_transformed``: the task metrics on the transformed copy of the test split."""
    values, _ = evaluate_split(model, task, transformed, trainer, device, step_generator(seed, epoch, 2_000), shard)
    return {f"{TRANSFORMED_SPLIT}_{key}_transformed": value for key, value in values.items()}


def evaluation_metrics(model, task: Task, data, trainer: TrainerSettings, device, epoch: int, splits,
                       transformed: Mapping[str, torch.Tensor] | None, shard: Shard) -> dict[str, float]:
    """One evaluation: every split in ``splits`` with the eval sample count (noise from (seed, epoch,
    split)), the entropy of P̄ on val (S_n), and the transformed test split when there is one."""
    seed, metrics = trainer.seed, {}
    for index, split in enumerate(splits):
        values, entropy = evaluate_split(model, task, data.splits[split], trainer, device,
                                         step_generator(seed, epoch, 1_000 + index), shard)
        metrics.update({f"{split}_{key}": value for key, value in values.items()})
        if entropy is not None and split == "val":
            metrics["entropy"] = entropy
    if transformed is not None:
        metrics.update(evaluate_transformed(model, task, transformed, trainer, device, seed, epoch, shard))
    return metrics


def equivariance_error(model, task: Task, split: Mapping[str, torch.Tensor], trainer, device, seed: int) -> float:
    """E (REMUL eq. 12) on the first examples of ``split`` with a few group samples and fresh noise for
    every call: for a sampled symmetrization (PS, GA, FA) mostly the Monte-Carlo spread of the N-sample
    estimate, not a departure from equivariance (reported as ``mc_equivariance_error``; the exact check
    is ``exact_equivariance_gap``)."""
    model.eval()
    batch = to_device({k: v[: trainer.equivariance_batch] for k, v in split.items()}, device)
    inputs = {name: batch[name] for name in task.input_kinds}
    generator = step_generator(seed, 7)

    def apply(x, mask):
        return model(x, mask, generator=generator).output if isinstance(model, Symmetrizer) else model(x, mask).output

    errors = equivariance_errors(apply, inputs, model.group, task.input_kinds, task.target_kind, batch.get("mask"),
                                 samples=trainer.equivariance_samples, generator=step_generator(seed, 8))
    return errors["E"]


# -- end of training: the best weights, measured once ----------------------------------------------------
def exact_equivariance_gap(model, task: Task, split: Mapping[str, torch.Tensor], trainer, device, seed: int) -> float:
    """The coupled gap (noise moved with the input) in float64 on the first examples of ``split``:
    round-off for an exactly equivariant symmetrization, the real departure from equivariance otherwise
    (``none``, ``augment``, ``remul``, interpolated rotations). Unlike E with fresh noise, no
    Monte-Carlo spread enters it."""
    model = model.double().eval()
    rows = {k: v[: trainer.equivariance_batch] for k, v in split.items()}
    batch = {k: v.double() if v.is_floating_point() else v for k, v in to_device(rows, device).items()}
    inputs = {name: batch[name] for name in task.input_kinds}
    return coupled_equivariance_gap(model, inputs, batch.get("mask"), generator=step_generator(seed, 9))


def samples_curve(model, task: Task, data, trainer: TrainerSettings, device, seed: int, counts, repeats: int,
                  splits) -> dict[str, dict[str, dict[str, float]]]:
    """``{<split>_<metric>: {<N>: {mean, std}}}``: the task metric of every split evaluated with N group
    samples per input, for each N of ``counts``, mean and std (ddof 1) over ``repeats`` fresh draws of the
    noise (the spread a single evaluation with N samples has)."""
    curve: dict[str, dict[str, dict[str, float]]] = {}
    kept = model.eval_samples
    try:
        for split in splits:
            points = curve.setdefault(f"{split}_{task.metric}", {})
            stream = zlib.crc32(split.encode())  # the draws of a split do not depend on the other splits asked
            for count in counts:
                model.eval_samples = int(count)
                values = torch.tensor([
                    evaluate_split(model, task, data.splits[split], trainer, device,
                             step_generator(seed, 3_000, stream, count, draw), Shard())[0][task.metric]
                    for draw in range(repeats)], dtype=torch.float64)
                points[str(int(count))] = {"mean": float(values.mean()),
                                           "std": float(values.std()) if repeats > 1 else 0.0}
    finally:
        model.eval_samples = kept
    return curve


def end_of_trial(plan: Plan, task: Task, data, trainer: TrainerSettings, weights: Mapping,
                 device, splits) -> dict[str, Any]:
    """What is measured once on the best validation epoch's ``weights``: ``equivariance_gap`` on test
    inputs and, with ``trainer.eval_samples_curve``, ``eval_samples_curve`` on every evaluation split."""
    seed = trainer.seed
    model = build_seeded(plan, seed).to(device)
    model.load_state_dict(weights)
    out: dict[str, Any] = {}
    if trainer.eval_samples_curve:
        out["eval_samples_curve"] = samples_curve(model, task, data, trainer, device, seed,
                                                  trainer.eval_samples_curve, trainer.eval_samples_repeats,
                                                  splits)
    split = data.splits["test" if "test" in data.splits else splits[0]]
    out["equivariance_gap"] = exact_equivariance_gap(model, task, split, trainer, device, seed)
    return out


def weights_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


EVALUATION_KEYS = (("symmetrizer", "eval_samples"), ("trainer", "eval_samples_curve"),
                   ("trainer", "eval_samples_repeats"))


def evaluation_changes(saved: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """The evaluation settings (``EVALUATION_KEYS``) in which ``config`` differs from a checkpoint's config;
    a key the configuration does not read (``unused_keys``: eval_samples of canonical) is no difference."""
    def sections(source: Mapping[str, Any]) -> dict[str, Any]:
        return {name: load(SECTIONS[name], source.get(name), name) for name in {s for s, _ in EVALUATION_KEYS}}

    unused, now, then = unused_keys(config), sections(config), sections(saved)
    changes = []
    for section, key in EVALUATION_KEYS:
        value, before = getattr(now[section], key), getattr(then[section], key)
        if f"{section}.{key}" not in unused and value != before:
            changes.append(f"{section}.{key}={value!r} (checkpoint: {before!r})")
    return changes


def best_weights(saved: Mapping[str, Any], purpose: str) -> dict:
    """The weights of a checkpoint's best validation epoch (the final ones when that epoch is the last);
    a ValueError saying ``purpose`` cannot be served when a checkpoint of an older symsweep lacks them."""
    state = saved["loop"]
    weights = saved.get("best_model")
    if weights is None and state["best"].get("best_epoch") == state["epoch"]:
        weights = saved["model"]
    if weights is None:
        raise ValueError(f"the checkpoint of epoch {state['epoch']} holds no weights of its best epoch "
                         f"({state['best'].get('best_epoch')}) (written by an older symsweep), so it cannot be "
                         f"{purpose}")
    return weights


def evaluate_checkpoint(saved: Mapping[str, Any], counts, repeats: int, splits, device: str = "auto"
                        ) -> dict[str, dict[str, dict[str, float]]]:
    """A finished trial's best model evaluated at each number of evaluation samples in ``counts`` on
    ``splits`` (``samples_curve``), without training: ``symsweep evaluate``."""
    trial = check_config(saved["config"])
    task, trainer = trial.task, trial.trainer
    data = task.load()
    missing = [split for split in splits if split not in data.splits or split == "train"]
    if missing:
        allowed = ", ".join(name for name in data.splits if name != "train")
        raise ValueError(f"--split={missing[0]} is not an evaluation split of task {task.name!r}; allowed: {allowed}")
    where = pick_device(device)
    model = build_seeded(trial.model, trainer.seed).to(where)
    model.load_state_dict(best_weights(saved, "evaluated at other sample counts"))
    return samples_curve(model, task, data, trainer, where, trainer.seed, counts, repeats, splits)


def check_resume(saved: Mapping[str, Any], config: Mapping[str, Any], source: str | os.PathLike = "checkpoint") -> None:
    """Refuse a checkpoint ``config`` cannot continue, before anything is written: one without the whole
    loop state, one without GradNorm's state for REMUL with ``remul.balance=gradnorm``, or an unfinished
    one with another ``symmetrizer.eval_samples`` (its best_* so far were measured with its own count,
    and the two would be mixed; a finished one is evaluated anew)."""
    state = LoopState.from_checkpoint(saved, source)
    remul = load(RemulSettings, config.get("remul"), "remul")
    method = load(SymmetrizerSettings, config.get("symmetrizer"), "symmetrizer").method
    if method == "remul" and remul.balance == "gradnorm" and saved.get("gradnorm") is None:
        raise ValueError(f"{source}: {NO_GRADNORM_STATE}")
    epochs = trainer_settings(config).epochs
    changed = [change for change in evaluation_changes(saved["config"], config)
               if change.startswith("symmetrizer.eval_samples=")]
    if changed and not (state.epoch >= epochs and state.history):
        raise ValueError(f"{changed[0]}: the checkpoint of epoch {state.epoch} is not finished (trainer.epochs="
                         f"{epochs}) and its best_* metrics were measured with its own count; allowed: the "
                         "checkpoint's symmetrizer.eval_samples (a finished checkpoint is evaluated anew)")


def reevaluate(model, config: Mapping[str, Any], plan: Plan, data, trainer, saved: Mapping[str, Any], device,
               splits) -> dict[str, Any]:
    """A finished checkpoint evaluated anew with the evaluation settings of ``config``: the best
    validation epoch's weights on every evaluation split, and the end-of-trial measurements."""
    state, task = saved["loop"], plan.task
    weights = best_weights(saved, f"evaluated with {', '.join(evaluation_changes(saved['config'], config))}; "
                                  "allowed: the checkpoint's own evaluation settings")
    model.load_state_dict(weights)
    metrics: dict[str, Any] = {"epoch": state["epoch"], "step": state["step"],
                               "eval_samples": int(getattr(model, "eval_samples", 1))}
    transformed = (transformed_split(model, task, data.splits[TRANSFORMED_SPLIT], trainer.seed)
                   if TRANSFORMED_SPLIT in data.splits else None)
    metrics.update(evaluation_metrics(model, task, data, trainer, device, state["epoch"], splits, transformed, Shard()))
    metrics.update({f"best_{k}": v for k, v in metrics.items() if k.split("_")[0] in splits})
    metrics["best_epoch"] = state["best"].get("best_epoch", state["epoch"])
    metrics.update(end_of_trial(plan, task, data, trainer, weights, device, splits))
    metrics["elapsed_s"] = state["elapsed"]
    return metrics


def build_seeded(plan: Plan, seed: int) -> torch.nn.Module:
    """The model of a checked ``plan`` initialised from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(plan)


# -- the loop -------------------------------------------------------------------------------------------
@dataclass
class Training:
    """What a trial's epochs work on, built once from the config (``LoopState`` is what changes)."""

    config: Mapping[str, Any]
    plan: TrialPlan  # the config, checked and typed
    task: Task
    trainer: TrainerSettings
    data: TaskData
    device: torch.device
    shard: Shard
    workdir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    objective: Supervised
    splits: list[str]  # the evaluation splits: every split but train
    transformed: dict[str, torch.Tensor] | None = None  # the transformed test split, once training starts


def run(config: Mapping[str, Any], report: Report | None = None, workdir: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None, shard: Shard = Shard(), replay: bool = False) -> dict[str, float]:
    """Train (or, for separation tasks, score) one configuration; return the last reported metrics.

    ``report(metrics, checkpoint_dir)`` is called after every evaluation or checkpoint (the
    directory is None when no checkpoint was written). ``resume`` is a checkpoint to continue from;
    with ``replay`` the reports made before that checkpoint are made again first (for a caller
    whose log was lost). Only rank 0 of a sharded trial writes checkpoints.
    """
    plan = check_config(config)
    task, trainer = plan.task, plan.trainer
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    device = pick_device(trainer.device)
    report = report or (lambda metrics, checkpoint: None)
    data = task.load()
    if not task.trainable:
        return separation(task, plan.model, trainer, data, device, report)
    training = set_up(config, plan, data, device, shard, Path(workdir or Path.cwd() / "trial"))
    state = LoopState()
    if resume is not None:
        state, finished = restore(training, resume, report, replay)
        if finished is not None:
            return finished
    if TRANSFORMED_SPLIT in data.splits:
        training.transformed = transformed_split(training.model, task, data.splits[TRANSFORMED_SPLIT], trainer.seed)
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
        metrics["elapsed_s"] = state.elapsed
        if epoch == trainer.epochs and state.best_weights is not None:
            metrics.update(end_of_trial(plan.model, task, data, trainer, state.best_weights, device, training.splits))
        checkpoint_now = epoch % trainer.checkpoint_every == 0 or epoch == trainer.epochs
        if evaluate_now or checkpoint_now:  # every worker of a sharded trial reports together
            state.history.append(dict(metrics))
            report(metrics, save(training, state) if checkpoint_now else None)
    return metrics


def set_up(config: Mapping[str, Any], plan: TrialPlan, data, device: torch.device, shard: Shard,
           workdir: Path) -> Training:
    """The seeded model, its optimiser, schedule and objective; then the global RNG (dropout) is seeded."""
    trainer = plan.trainer
    model = build_seeded(plan.model, trainer.seed).to(device)
    optimizer = make_optimizer(model, trainer)
    scheduler = make_schedule(optimizer, trainer, math.ceil(data.size("train") / trainer.batch_size))
    objective = make_objective(plan.symmetrizer, plan.remul, model, plan.task, shard)
    torch.manual_seed(trainer.seed + 1)  # the global stream: dropout
    splits = [name for name in data.splits if name != "train"]
    return Training(config, plan, plan.task, trainer, data, device, shard, workdir, model, optimizer, scheduler,
                    objective, splits)


def train_epoch(training: Training, state: LoopState, epoch: int) -> dict[str, float]:
    """One pass over the shuffled training split (order from (seed, epoch), group-sample noise of step s
    from (seed, s)); the epoch's training metrics."""
    trainer, model, device = training.trainer, training.model, training.device
    autocast = trainer.precision == "bf16" and device.type == "cuda"
    model.train()
    epoch_start, losses, examples, sums = time.perf_counter(), [], 0, {}
    for batch in iterate_batches(training.data.splits["train"], trainer.batch_size, shuffle=True,
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
    metrics = {"epoch": epoch, "step": state.step, "train_loss": sum(losses) / max(1, len(losses)),
               "samples_per_s": examples * getattr(model, "train_samples", 1) / max(seconds, 1e-9),
               "examples_per_s": examples / max(seconds, 1e-9), "lr": training.optimizer.param_groups[0]["lr"]}
    for name, value in sums.items():  # epoch means, like train_loss
        metrics[f"train_{name}"] = value / max(1, len(losses))
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
    trainer, model, splits = training.trainer, training.model, training.splits
    state.evaluations += 1
    metrics.update(evaluation_metrics(model, training.task, training.data, trainer, training.device, epoch, splits,
                                      training.transformed, training.shard))
    every = trainer.equivariance_every
    if every and state.evaluations % every == 0:
        metrics["mc_equivariance_error"] = equivariance_error(model, training.task, training.data.splits["val"],
                                                           trainer, training.device, trainer.seed * 7919 + epoch)
    state.best = best_so_far(state.best, metrics, training.task, epoch, splits)
    if state.best.get("best_epoch") == epoch:
        state.best_weights = weights_copy(model)
    state.metrics = {k: v for k, v in metrics.items() if k.split("_")[0] in splits
                     or k in ("entropy", "mc_equivariance_error")}


def save(training: Training, state: LoopState) -> Path | None:
    """The checkpoint of ``state.epoch`` (rank 0 of a sharded trial only; the others return None)."""
    if training.shard.rank != 0:
        return None
    return save_checkpoint(training.workdir / f"checkpoint_{state.epoch:06d}", {
        "model": training.model.state_dict(), "optimizer": training.optimizer.state_dict(),
        "scheduler": training.scheduler.state_dict(), "gradnorm": training.objective.state_dict(),
        "rng": rng_state(training.device), **state.to_checkpoint(), "config": dict(training.config)})


def restore(training: Training, resume: str | os.PathLike, report: Report, replay: bool
            ) -> tuple[LoopState, dict | None]:
    """Continue from the checkpoint ``resume``: the training objects, the global RNG and the loop state.

    With ``replay`` the reports it holds are made again. A finished checkpoint returns its final metrics
    as the second value (nothing is trained): the last report, or, when ``config`` changes how it is
    evaluated, its best weights evaluated anew."""
    saved = load_checkpoint(resume)
    check_resume(saved, training.config, resume)
    state = LoopState.from_checkpoint(saved, resume)
    training.model.load_state_dict(saved["model"])
    training.optimizer.load_state_dict(saved["optimizer"])
    training.scheduler.load_state_dict(saved["scheduler"])
    training.objective.load_state_dict(saved.get("gradnorm"))
    set_rng_state(saved["rng"], training.device)
    for metrics in state.history if replay else []:
        report(metrics, None)
    if state.epoch >= training.trainer.epochs and state.history:  # finished before the interruption
        if evaluation_changes(saved["config"], training.config):  # never replay results of other settings
            metrics = reevaluate(training.model, training.config, training.plan.model, training.data,
                                 training.trainer, saved, training.device, training.splits)
            report(metrics, None)
            return state, metrics
        if not replay:
            report(state.history[-1], None)
        return state, state.history[-1]
    return state, None


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


def best_so_far(best: dict, metrics: Mapping[str, float], task: Task, epoch: int, splits: list[str]) -> dict:
    """Best validation metric so far, and every evaluation metric at that epoch (``best_*``)."""
    key = f"val_{task.metric}"
    if key not in metrics:
        return best
    current = best.get(f"best_{key}")
    better = current is None or (metrics[key] < current if task.mode == "min" else metrics[key] > current)
    if not better:
        return best
    out = {f"best_{k}": v for k, v in metrics.items() if k.split("_")[0] in splits}
    out["best_epoch"] = epoch
    return out


def separation(task: Task, plan: Plan, trainer: TrainerSettings, data, device, report: Report) -> dict[str, float]:
    """PS paper protocol: for seeds 0..S-1 embed every graph with a freshly initialised model (eval
    samples); count the pairs no seed separates."""
    split = data.splits["test"]
    embeddings, start = [], time.perf_counter()
    for seed in range(trainer.separation_seeds):
        model = build_seeded(plan, seed).to(device).eval()
        generator = step_generator(trainer.seed, seed)
        with torch.no_grad():
            parts = [forward(model, task, to_device(batch, device), generator, Shard()).output.double().cpu()
                     for batch in iterate_batches(split, trainer.eval_batch_size or trainer.batch_size, False)]
        embeddings.append(torch.cat(parts))
    size = data.size("test")
    pairs = task.pairs(size)
    total = size * (size - 1) // 2 if pairs is None else int(pairs.shape[0])
    unseparated = separation_count(embeddings, pairs)
    metrics = {"epoch": 0, "test_unseparated_pairs": float(unseparated),
               "test_separated_fraction": 1.0 - unseparated / total if total else 1.0,
               "seeds": trainer.separation_seeds, "elapsed_s": time.perf_counter() - start}
    report(metrics, None)
    return metrics
