"""The training loop: one plain-dict config in, metrics and checkpoints out. No ray import.

``run(config, report, workdir, resume, shard)`` trains one symmetrized model on one task:

    data (cached) -> model (factory) -> for each epoch: shuffled batches (order from (seed, epoch))
      -> loss (+ entropy penalty | augmentation | REMUL penalty) -> backward -> clip -> step
      -> every ``eval_every`` epochs: every evaluation split with the eval sample count, best
         validation and the test metrics at it, entropy of P̄, a cheap equivariance error
      -> every ``checkpoint_every`` epochs: an atomic checkpoint -> ``report(metrics, checkpoint)``
      -> after the last epoch, on the weights of the best validation epoch: the exact (coupled, float64)
         equivariance gap and, when asked, the metric at several evaluation sample counts

All randomness is explicit: group-sample noise of step s comes from a generator seeded by
(seed, s), evaluation noise from (seed, epoch, split), batch order from (seed, epoch), and the
global torch RNG (dropout) is saved in every checkpoint, so resuming from any checkpoint gives the
same metrics at every later epoch as the uninterrupted run (exactly, on CPU). Tasks that are scored
at initialisation (GRAPH8c, EXP) run the separation protocol instead of training.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from workers.models.factory import Plan, build_model
from workers.schema import SECTIONS, RemulSettings, SymmetrizerSettings, TrainerSettings, load
from workers.settings import check_config, trainer_settings, unused_keys
from workers.sharding import Shard, take_noise
from workers.symmetry import (
    NODE_KINDS,
    Symmetrizer,
    coupled_equivariance_gap,
    equivariance_errors,
    permutation_entropy,
    transform_inputs,
)
from workers.tasks import Task, iterate_batches
from workers.tasks.separation import separation_count

Report = Callable[[dict, "Path | None"], None]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept.

    Deterministic given the seed: retrying from a checkpoint diverges again, so sweeps do not retry it.
    ``epoch`` is the epoch of the last good checkpoint (0: none yet)."""

    def __init__(self, message: str, epoch: int = 0):
        super().__init__(message)
        self.epoch = epoch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, truncated, not a symsweep checkpoint); names the file."""


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "loop", "config")


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


# -- one forward pass -----------------------------------------------------------------------------------
def forward(model: torch.nn.Module, task: Task, batch: Mapping[str, torch.Tensor], generator: torch.Generator,
            shard: Shard, samples: int | None = None):
    """The model's output on a batch; a ``Symmetrizer``'s samples are sharded over workers."""
    inputs = {name: batch[name] for name in task.input_kinds}
    mask = batch.get("mask")
    if not isinstance(model, Symmetrizer):
        return model(inputs, mask)
    samples = samples or model.num_samples()
    noise = model.draw_noise(inputs, mask, samples, generator)  # every worker: all B·N rows
    if not shard.active:
        return model(inputs, mask, noise=noise, samples=samples)
    rows = shard.rows(int(next(iter(inputs.values())).shape[0]), samples, mask.device if mask is not None
                      else next(iter(inputs.values())).device)
    local = model(inputs, mask, noise=take_noise(noise, rows), samples=shard.share(samples))
    local.output = shard.mean(local.output)
    local.penalty = shard.mean(local.penalty)  # the loss of all N samples; gradients are unchanged
    return local


def transformed_batch(model: torch.nn.Module, task: Task, batch: Mapping[str, torch.Tensor],
                      generator: torch.Generator) -> dict[str, torch.Tensor]:
    """(g·x, g·y) with one uniform random g per example: augmentation and the REMUL penalty."""
    group, kinds = model.group, task.input_kinds
    mask = batch.get("mask")
    target = batch["y"]
    like = next(v for v in batch.values() if v.is_floating_point())
    size = None if mask is None else int(mask.shape[1])
    if size is None:
        size = next((int(batch[k].shape[1]) for k, kind in kinds.items() if kind in NODE_KINDS), None)
    g = group.sample(int(target.shape[0]), size, mask, generator, like.dtype, like.device)
    moved, moved_mask = transform_inputs(group, g, {k: batch[k] for k in kinds}, kinds, mask)
    out = {**batch, **moved, "y": group.act(g, target, task.target_kind, mask)}
    if moved_mask is not None:
        out["mask"] = moved_mask
    return out


def training_loss(model, task: Task, batch, generator: torch.Generator, shard: Shard, method: str,
                  symmetrizer: SymmetrizerSettings, remul: RemulSettings, gradnorm) -> tuple[torch.Tensor, dict]:
    """The scalar loss of one batch, and its parts for the logs."""
    if method == "augment":
        batch = transformed_batch(model, task, batch, generator)
    out = forward(model, task, batch, generator, shard)
    task_loss = task.loss(out.output, batch)
    parts = {"task_loss": task_loss.detach()}
    loss = task_loss
    weight = symmetrizer.entropy_weight
    if weight and out.penalty.requires_grad:
        loss = loss + weight * out.penalty
        parts["entropy_penalty"] = out.penalty.detach()
    if method == "remul":
        moved = transformed_batch(model, task, batch, generator)
        equi_loss = task.loss(forward(model, task, moved, generator, shard).output, moved)
        alpha, beta = remul.alpha, remul.beta
        if gradnorm is not None and torch.is_grad_enabled():
            last = [p for p in model.base.parameters() if p.dim() >= 2][-1]
            alpha, beta = gradnorm.step(task_loss, equi_loss, last)
        loss = alpha * task_loss + beta * equi_loss
        parts.update(equivariance_loss=equi_loss.detach(), alpha=torch.tensor(alpha), beta=torch.tensor(beta))
    return loss, parts


# -- evaluation ---------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, task: Task, split: Mapping[str, torch.Tensor], trainer: TrainerSettings, device,
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
    values, _ = evaluate(model, task, transformed, trainer, device, step_generator(seed, epoch, 2_000), shard)
    return {f"{TRANSFORMED_SPLIT}_{key}_transformed": value for key, value in values.items()}


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
                    evaluate(model, task, data.splits[split], trainer, device,
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
    def value(source, section, key):
        return getattr(load(SECTIONS[section], source.get(section), section), key)

    unused = unused_keys(config)
    return [f"{section}.{key}={value(config, section, key)!r} (checkpoint: {value(saved, section, key)!r})"
            for section, key in EVALUATION_KEYS
            if f"{section}.{key}" not in unused and value(config, section, key) != value(saved, section, key)]


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


def check_resume(saved: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Refuse to continue an unfinished checkpoint with another ``symmetrizer.eval_samples``: its best_* so
    far were measured with its own count, and the two would be mixed (a finished one is evaluated anew)."""
    state, epochs = saved["loop"], trainer_settings(config).epochs
    changed = [change for change in evaluation_changes(saved["config"], config)
               if change.startswith("symmetrizer.eval_samples=")]
    if changed and not (state["epoch"] >= epochs and state["history"]):
        raise ValueError(f"{changed[0]}: the checkpoint of epoch {state['epoch']} is not finished (trainer.epochs="
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
    for index, split in enumerate(splits):
        values, entropy = evaluate(model, task, data.splits[split], trainer, device,
                                   step_generator(trainer.seed, state["epoch"], 1_000 + index), Shard())
        metrics.update({f"{split}_{key}": value for key, value in values.items()})
        if entropy is not None and split == "val":
            metrics["entropy"] = entropy
    if TRANSFORMED_SPLIT in data.splits:
        transformed = transformed_split(model, task, data.splits[TRANSFORMED_SPLIT], trainer.seed)
        metrics.update(evaluate_transformed(model, task, transformed, trainer, device, trainer.seed,
                                            state["epoch"], Shard()))
    metrics.update({f"best_{k}": v for k, v in metrics.items() if k.split("_")[0] in splits})
    metrics["best_epoch"] = state["best"].get("best_epoch", state["epoch"])
    metrics.update(end_of_trial(plan, task, data, trainer, weights, device, splits))
    metrics["elapsed_s"] = state["elapsed"]
    return metrics


# -- checkpoints --------------------------------------------------------------------------------------
def save_checkpoint(directory: Path, state: dict) -> Path:
    """Write ``state`` to ``directory/state.pt`` atomically (temporary file + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".state.pt.{os.getpid()}.tmp"
    try:
        torch.save(state, temporary)
        os.replace(temporary, directory / "state.pt")
    finally:
        temporary.unlink(missing_ok=True)
    (directory / "meta.json").write_text(json.dumps({"epoch": state["loop"]["epoch"]}))
    return directory


def checkpoints(directory: Path) -> list[Path]:
    """The complete checkpoints among ``directory/checkpoint_*``, newest epoch first.

    A checkpoint is complete once its ``meta.json`` exists (written after ``state.pt`` was renamed into
    place); whether its ``state.pt`` still loads is checked by ``newest_loadable``."""
    found = []
    for candidate in directory.glob("checkpoint_*"):
        try:
            found.append((int(json.loads((candidate / "meta.json").read_text())["epoch"]), candidate.name, candidate))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return [path for _, _, path in sorted(found, reverse=True)]


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint of the latest epoch among ``directory/checkpoint_*`` (complete ones only)."""
    found = checkpoints(directory)
    return found[0] if found else None


def newest_loadable(candidates: list[Path]) -> tuple[Path | None, list[str]]:
    """The first of ``candidates`` that loads, and one line per candidate skipped (why)."""
    skipped = []
    for candidate in candidates:
        try:
            load_checkpoint(candidate)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        return candidate, skipped
    return None, skipped


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by ``save_checkpoint`` (a ``checkpoint_NNNNNN`` directory or its ``state.pt``).

    Loaded with ``weights_only=True``: a checkpoint holds tensors and plain data only, so reading a file
    someone else wrote never runs code from it. Every failure is a ``CheckpointError`` naming the file."""
    path = Path(path).expanduser()
    file = path / "state.pt" if path.is_dir() else path
    if not file.is_file():
        what = "does not exist" if not file.exists() else "is not a file"
        raise CheckpointError(f"checkpoint {file} {what}; expected a checkpoint_NNNNNN directory (or its state.pt) "
                              "written by symsweep")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated zip, foreign pickle, refused global: all unusable
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {file} cannot be read ({type(err).__name__}: {reason[:200]}); it is "
                              "truncated or not a symsweep checkpoint (only tensors and plain data are loaded)"
                              ) from None
    if not isinstance(state, dict) or not all(key in state for key in CHECKPOINT_KEYS):
        raise CheckpointError(f"checkpoint {file} is not a symsweep checkpoint: expected a dict with "
                              f"{', '.join(CHECKPOINT_KEYS)}")
    return state


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def build_seeded(plan: Plan, seed: int) -> torch.nn.Module:
    """The model of a checked ``plan`` initialised from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(plan)


# -- the loop -------------------------------------------------------------------------------------------
def run(config: Mapping[str, Any], report: Report | None = None, workdir: str | os.PathLike | None = None,
        resume: str | os.PathLike | None = None, shard: Shard = Shard(), replay: bool = False) -> dict[str, float]:
    """Train (or, for separation tasks, score) one configuration; return the last reported metrics.

    ``report(metrics, checkpoint_dir)`` is called after every evaluation or checkpoint (the
    directory is None when no checkpoint was written). ``resume`` is a checkpoint to continue from;
    with ``replay`` the reports made before that checkpoint are made again first (for a caller
    whose log was lost). Only rank 0 of a sharded trial writes checkpoints.
    """
    trial = check_config(config)
    task, trainer, remul = trial.task, trial.trainer, trial.remul
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    device = pick_device(trainer.device)
    workdir = Path(workdir or Path.cwd() / "trial")
    report = report or (lambda metrics, checkpoint: None)
    data = task.load()
    if not task.trainable:
        return separation(task, trial.model, trainer, data, device, report)
    seed, method = trainer.seed, trial.symmetrizer.method
    model = build_seeded(trial.model, seed).to(device)
    optimizer = make_optimizer(model, trainer)
    train_split = data.splits["train"]
    steps_per_epoch = math.ceil(data.size("train") / trainer.batch_size)
    scheduler = make_schedule(optimizer, trainer, steps_per_epoch)
    gradnorm = None
    if method == "remul" and remul.balance == "gradnorm":
        from workers.symmetry import GradNorm

        gradnorm = GradNorm(remul.alpha, remul.beta, remul.gradnorm_lr, remul.gradnorm_gamma)
    torch.manual_seed(seed + 1)  # the global stream: dropout
    state = {"epoch": 0, "step": 0, "best": {}, "metrics": {}, "evaluations": 0, "elapsed": 0.0, "history": []}
    evaluation_splits = [name for name in data.splits if name != "train"]
    best_weights = None  # the model at the best validation epoch: what the end-of-trial measurements use
    if resume is not None:
        saved = load_checkpoint(resume)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if gradnorm is not None:
            gradnorm.load_state_dict(saved["gradnorm"])
        set_rng_state(saved["rng"], device)
        state = saved["loop"]
        best_weights = saved.get("best_model")
        for metrics in state["history"] if replay else []:
            report(metrics, None)
        if state["epoch"] >= trainer.epochs and state["history"]:  # finished before the interruption
            if evaluation_changes(saved["config"], config):  # never replay results of other settings
                metrics = reevaluate(model, config, trial.model, data, trainer, saved, device, evaluation_splits)
                report(metrics, None)
                return metrics
            if not replay:
                report(state["history"][-1], None)
            return state["history"][-1]
        check_resume(saved, config)
    transformed = (transformed_split(model, task, data.splits[TRANSFORMED_SPLIT], seed)
                   if TRANSFORMED_SPLIT in data.splits else None)
    autocast = trainer.precision == "bf16" and device.type == "cuda"
    symmetrizer = trial.symmetrizer
    start = time.perf_counter() - state["elapsed"]
    # what a run resumed from its final checkpoint returns: the last evaluation, nothing trained
    metrics = {"epoch": state["epoch"], "step": state["step"], **state["metrics"], **state["best"],
               "elapsed_s": state["elapsed"]}
    for epoch in range(state["epoch"] + 1, trainer.epochs + 1):
        model.train()
        epoch_start, losses, examples, sums = time.perf_counter(), [], 0, {}
        for batch in iterate_batches(train_split, trainer.batch_size, shuffle=True, seed=seed, epoch=epoch):
            state["step"] += 1
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss, parts = training_loss(model, task, batch, step_generator(seed, state["step"]), shard,
                                            method, symmetrizer, remul, gradnorm)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(non_finite_message(float(loss.detach()), epoch, state, workdir), state["epoch"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            shard.average_gradients(model.parameters())
            if trainer.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            for name, value in parts.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            examples += int(batch["y"].shape[0])
        seconds = time.perf_counter() - epoch_start
        metrics = {"epoch": epoch, "step": state["step"], "train_loss": sum(losses) / max(1, len(losses)),
                   "samples_per_s": examples * getattr(model, "train_samples", 1) / max(seconds, 1e-9),
                   "examples_per_s": examples / max(seconds, 1e-9), "lr": optimizer.param_groups[0]["lr"]}
        for name, value in sums.items():  # epoch means, like train_loss
            metrics[f"train_{name}"] = value / max(1, len(losses))
        evaluate_now = epoch % trainer.eval_every == 0 or epoch == trainer.epochs
        if evaluate_now:
            state["evaluations"] += 1
            for index, split in enumerate(evaluation_splits):
                values, entropy = evaluate(model, task, data.splits[split], trainer, device,
                                           step_generator(seed, epoch, 1_000 + index), shard)
                metrics.update({f"{split}_{key}": value for key, value in values.items()})
                if entropy is not None and split == "val":
                    metrics["entropy"] = entropy
            if transformed is not None:
                metrics.update(evaluate_transformed(model, task, transformed, trainer, device, seed, epoch, shard))
            every = trainer.equivariance_every
            if every and state["evaluations"] % every == 0:
                metrics["mc_equivariance_error"] = equivariance_error(model, task, data.splits["val"], trainer, device,
                                                                   seed * 7919 + epoch)
            state["best"] = best_so_far(state["best"], metrics, task, epoch, evaluation_splits)
            if state["best"].get("best_epoch") == epoch:
                best_weights = weights_copy(model)
            state["metrics"] = {k: v for k, v in metrics.items() if k.split("_")[0] in evaluation_splits
                                or k in ("entropy", "mc_equivariance_error")}
        metrics.update(state["metrics"])
        metrics.update(state["best"])
        state["epoch"], state["elapsed"] = epoch, time.perf_counter() - start
        metrics["elapsed_s"] = state["elapsed"]
        if epoch == trainer.epochs and best_weights is not None:
            metrics.update(end_of_trial(trial.model, task, data, trainer, best_weights, device, evaluation_splits))
        checkpoint = None
        checkpoint_now = epoch % trainer.checkpoint_every == 0 or epoch == trainer.epochs
        if evaluate_now or checkpoint_now:
            state["history"].append(dict(metrics))
        if checkpoint_now:
            if shard.rank == 0:
                checkpoint = save_checkpoint(workdir / f"checkpoint_{epoch:06d}", {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "gradnorm": None if gradnorm is None else gradnorm.state_dict(),
                    "rng": rng_state(device), "loop": dict(state), "config": dict(config),
                    "best_model": best_weights})
        if evaluate_now or checkpoint_now:  # every worker of a sharded trial reports together
            report(metrics, checkpoint)
    return metrics


def non_finite_message(loss: float, epoch: int, state: Mapping[str, Any], workdir: Path) -> str:
    """Where the failure happened and which checkpoint is good (one that exists now, or none)."""
    message = f"non-finite training loss ({loss}) at epoch {epoch}, step {state['step']}"
    kept = workdir / f"checkpoint_{state['epoch']:06d}"
    if state["epoch"] and (kept / "state.pt").is_file():
        return f"{message}; the last good checkpoint (epoch {state['epoch']}) is {kept}"
    if state["epoch"]:
        return f"{message}; the last good checkpoint is of epoch {state['epoch']}"
    return f"{message}; no checkpoint was written before it (lower trainer.lr or set trainer.grad_clip)"


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


def separation(task: Task, plan: Plan, trainer, data, device, report: Report) -> dict[str, float]:
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
