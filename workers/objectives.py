"""What one training step minimises: one objective per method family, chosen once per trial (the method's
``objective`` in ``workers.methods``: a name of ``OBJECTIVES`` or a builder of its own).

    Supervised     none                               L_task(f(x), y)
    Symmetrized    ps, ps_fixed_noise, canonical,     L_task + entropy_weight · entropy penalty (where an
                   ga, fa                             S_n relaxation is trained)
    Augmentation   augment                            L_equi alone (REMUL with α = 0, β = 1)
    Remul          remul                              α·L_task + β·L_equi, α and β constant or by GradNorm

L_equi is the library's ``equivariance_penalty`` with this module's forward pass, which shards a
symmetrizer's group samples over the workers of a trial (``Shard``). An objective is called with a
batch and the step's generator and returns the loss and its parts for the logs; its ``state_dict``
(GradNorm's weights, else None) is saved in every checkpoint. No ray import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from workers.methods import get_method
from workers.schema import RemulSettings, SymmetrizerSettings
from workers.sharding import Shard, take_noise
from workers.symmetry import GradNorm, Symmetrizer, Transformed, equivariance_penalty, transform_example
from workers.tasks import Task


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


def moved_batch(batch: Mapping[str, torch.Tensor], moved: Transformed) -> dict[str, torch.Tensor]:
    """``batch`` with its inputs, target and mask replaced by their transformed copies (other fields kept)."""
    out = {**batch, **moved.inputs, "y": moved.target}
    if moved.mask is not None:
        out["mask"] = moved.mask
    return out


def transformed_batch(model: torch.nn.Module, task: Task, batch: Mapping[str, torch.Tensor],
                      generator: torch.Generator) -> dict[str, torch.Tensor]:
    """(g·x, g·y) with one uniform random g per example (the library's ``transform_example``)."""
    inputs = {name: batch[name] for name in task.input_kinds}
    return moved_batch(batch, transform_example(model.group, inputs, batch["y"], task.input_kinds, task.target_kind,
                                                batch.get("mask"), generator))


def penalty(model: torch.nn.Module, task: Task, batch: Mapping[str, torch.Tensor], generator: torch.Generator,
            shard: Shard) -> torch.Tensor:
    """L_equi = ℓ(f(g·x), g·y) of one batch: the library's ``equivariance_penalty`` with the loop's sharded
    forward pass and the task's loss on the whole moved batch (moved inputs, target and mask)."""
    inputs = {name: batch[name] for name in task.input_kinds}
    moved_inputs: dict[str, torch.Tensor] = {}

    def apply(moved: dict[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        moved_inputs.update(moved)
        return forward(model, task, moved_batch(batch, Transformed(moved, batch["y"], mask)), generator, shard).output

    def loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return task.loss(prediction, moved_batch(batch, Transformed(moved_inputs, target, mask)))

    return equivariance_penalty(apply, loss, inputs, batch["y"], model.group, task.input_kinds, task.target_kind,
                                batch.get("mask"), generator, masked_loss=True)


NO_GRADNORM_STATE = ("remul.balance='gradnorm' but the checkpoint holds no GradNorm state (it was trained with "
                     "remul.balance='constant'); allowed: the checkpoint's own remul.balance")


@dataclass
class Supervised:
    """Plain supervised training (``none``): the task loss of the model's output."""

    model: torch.nn.Module
    task: Task
    shard: Shard

    def __call__(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """The scalar loss of one batch, and its parts for the logs."""
        task_loss = self.task.loss(forward(self.model, self.task, batch, generator, self.shard).output, batch)
        return task_loss, {"task_loss": task_loss.detach()}

    def state_dict(self) -> dict | None:
        """What a checkpoint keeps of the objective (``None``: nothing beyond the model)."""
        return None

    def load_state_dict(self, state: dict | None) -> None:
        """Nothing to restore."""


@dataclass
class Symmetrized(Supervised):
    """A symmetrized model's task loss, plus ``entropy_weight`` × the permutation entropy penalty when the
    model's S_n relaxation is trained (the penalty has a gradient)."""

    entropy_weight: float = 0.0

    def __call__(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        out = forward(self.model, self.task, batch, generator, self.shard)
        task_loss = self.task.loss(out.output, batch)
        parts = {"task_loss": task_loss.detach()}
        if not (self.entropy_weight and out.penalty.requires_grad):
            return task_loss, parts
        return task_loss + self.entropy_weight * out.penalty, {**parts, "entropy_penalty": out.penalty.detach()}


@dataclass
class Augmentation(Supervised):
    """Data augmentation: the task loss on the batch moved by one random g per example, i.e. REMUL's L_equi
    with α = 0, β = 1 (logged as the task loss: it is the loss the model is trained on)."""

    def __call__(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        loss = penalty(self.model, self.task, batch, generator, self.shard)
        return loss, {"task_loss": loss.detach()}


@dataclass
class Remul(Supervised):
    """REMUL: α·L_task + β·L_equi, with constant (α, β) or, given ``gradnorm``, adapted every training step
    (GradNorm measures both losses' gradients on the base model's last weight matrix)."""

    alpha: float = 1.0
    beta: float = 1.0
    gradnorm: GradNorm | None = None

    def __call__(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        task_loss = self.task.loss(forward(self.model, self.task, batch, generator, self.shard).output, batch)
        equi_loss = penalty(self.model, self.task, batch, generator, self.shard)
        alpha, beta = self.alpha, self.beta
        if self.gradnorm is not None and torch.is_grad_enabled():
            last = [p for p in self.model.base.parameters() if p.dim() >= 2][-1]
            alpha, beta = self.gradnorm.step(task_loss, equi_loss, last)
        return alpha * task_loss + beta * equi_loss, {
            "task_loss": task_loss.detach(), "equivariance_loss": equi_loss.detach(),
            "alpha": torch.tensor(alpha), "beta": torch.tensor(beta)}

    def state_dict(self) -> dict | None:
        return None if self.gradnorm is None else self.gradnorm.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        if self.gradnorm is None:
            return
        if state is None:
            raise ValueError(NO_GRADNORM_STATE)
        self.gradnorm.load_state_dict(state)


def _remul(symmetrizer: SymmetrizerSettings, remul: RemulSettings, model: torch.nn.Module, task: Task,
           shard: Shard) -> Remul:
    gradnorm = None
    if remul.balance == "gradnorm":
        gradnorm = GradNorm(remul.alpha, remul.beta, remul.gradnorm_lr, remul.gradnorm_gamma)
    return Remul(model, task, shard, remul.alpha, remul.beta, gradnorm)


# what a method's ``objective`` names (``workers.methods``): (symmetrizer, remul, model, task, shard) -> objective
OBJECTIVES: dict[str, Callable[..., Supervised]] = {
    "supervised": lambda symmetrizer, remul, model, task, shard: Supervised(model, task, shard),
    "symmetrized": lambda symmetrizer, remul, model, task, shard: Symmetrized(model, task, shard,
                                                                              symmetrizer.entropy_weight),
    "augmentation": lambda symmetrizer, remul, model, task, shard: Augmentation(model, task, shard),
    "remul": _remul,
}


def make_objective(symmetrizer: SymmetrizerSettings, remul: RemulSettings, model: torch.nn.Module, task: Task,
                   shard: Shard) -> Supervised:
    """The objective the trial's ``symmetrizer.method`` names (typed settings: ``check_config``'s plan)."""
    objective = get_method(symmetrizer.method).objective
    build = objective if callable(objective) else OBJECTIVES[objective]
    return build(symmetrizer, remul, model, task, shard)
