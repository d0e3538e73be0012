"""REMUL: equivariance as a penalty (paper 003). loss = α·L_task + β·L_equi with
L_equi = ℓ(f(g·x), g·y) for a fresh random g per example; α, β constant or adapted by GradNorm
(Algorithm 1). Data augmentation is the special case α = 0, β = 1: the same L_equi is the whole loss.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import torch

from workers.symmetry.groups import NODE_KINDS, Group
from workers.symmetry.metrics import transform_inputs


class Transformed(NamedTuple):
    """(g·x, g·y, g·mask) for one batch: what the model and the loss see under a random g."""

    inputs: dict[str, torch.Tensor]
    target: torch.Tensor
    mask: torch.Tensor | None


def transform_example(group: Group, inputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                      input_kinds: Mapping[str, str], target_kind: str, mask: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> Transformed:
    """Inputs, target and mask moved by one Haar-random g per example (translations N(0, 1)).

    g is drawn in the dtype of the first floating input (else of a floating target, else float32) on
    the target's device, so that a given generator yields the same elements for the same batch."""
    batch = int(target.shape[0])
    size = None if mask is None else int(mask.shape[1])
    if size is None:
        size = next((int(v.shape[1]) for k, v in inputs.items() if input_kinds[k] in NODE_KINDS), None)
    like = next((v for v in (*inputs.values(), target) if v.is_floating_point()), None)
    g = group.sample(batch, size, mask, generator, torch.float32 if like is None else like.dtype, target.device)
    moved, moved_mask = transform_inputs(group, g, inputs, input_kinds, mask)
    return Transformed(moved, group.act(g, target, target_kind, mask), moved_mask)


def equivariance_penalty(
    model: Callable[[dict, torch.Tensor | None], torch.Tensor],
    loss: Callable[..., torch.Tensor],
    inputs: Mapping[str, torch.Tensor], target: torch.Tensor, group: Group, input_kinds: Mapping[str, str],
    target_kind: str, mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
    masked_loss: bool = False,
) -> torch.Tensor:
    """L_equi = ℓ(f(g·x), g·y), with g Haar-random per example (``transform_example``).

    ``model(inputs, mask)`` may be any callable: a training loop passes its own forward pass (e.g. one
    that shards group samples over workers). ``loss(prediction, target)`` is called with the moved
    target; with ``masked_loss`` it is called as ``loss(prediction, target, mask)`` with the moved mask,
    for a loss over the real rows of a padded batch."""
    moved = transform_example(group, inputs, target, input_kinds, target_kind, mask, generator)
    prediction = model(moved.inputs, moved.mask)
    return loss(prediction, moved.target, moved.mask) if masked_loss else loss(prediction, moved.target)


class GradNorm:
    """Adaptive (α, β) by GradNorm (paper 003, Algorithm 1).

    Each step measures G = ‖∇_W (w·L)‖₂ for both losses on the last layer's weights W, the
    training rates L̃ = L / L(0), and moves α and β by ``lr`` along the gradient of
    |G_obj − Ḡ·r_α^γ| + |G_equi − Ḡ·r_β^γ| with Ḡ and the targets held constant; the weights
    are then clamped at 0 and rescaled so that α + β keeps its initial sum (a step that would
    clamp both to 0 is skipped: no rescaling could bring them back).
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, lr: float = 0.01, gamma: float = 1.0):
        self.alpha, self.beta, self.lr, self.gamma = float(alpha), float(beta), float(lr), float(gamma)
        self.total = self.alpha + self.beta
        self.initial: tuple[float, float] | None = None

    def state_dict(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "lr": self.lr, "gamma": self.gamma,
                "total": self.total, "initial": self.initial}

    def load_state_dict(self, state: dict) -> None:
        self.alpha, self.beta = float(state["alpha"]), float(state["beta"])
        self.lr, self.gamma, self.total = float(state["lr"]), float(state["gamma"]), float(state["total"])
        self.initial = None if state["initial"] is None else tuple(state["initial"])

    def step(self, task_loss: torch.Tensor, equi_loss: torch.Tensor, last_layer: torch.Tensor) -> tuple[float, float]:
        """Update and return (α, β); call before the optimiser step, losses still attached."""
        grad_task = torch.autograd.grad(task_loss, last_layer, retain_graph=True, allow_unused=True)[0]
        grad_equi = torch.autograd.grad(equi_loss, last_layer, retain_graph=True, allow_unused=True)[0]
        norm_task = 0.0 if grad_task is None else float(grad_task.norm())
        norm_equi = 0.0 if grad_equi is None else float(grad_equi.norm())
        losses = (float(task_loss.detach()), float(equi_loss.detach()))
        if self.initial is None:
            self.initial = tuple(max(v, 1e-12) for v in losses)
        g_task, g_equi = self.alpha * norm_task, self.beta * norm_equi
        mean_grad = 0.5 * (g_task + g_equi)
        rates = (losses[0] / self.initial[0], losses[1] / self.initial[1])
        mean_rate = max(0.5 * (rates[0] + rates[1]), 1e-12)
        target_task = mean_grad * (rates[0] / mean_rate) ** self.gamma
        target_equi = mean_grad * (rates[1] / mean_rate) ** self.gamma
        # d|αG_t − c|/dα = sign(αG_t − c)·G_t (Ḡ and the targets are constants)
        alpha = max(self.alpha - self.lr * _sign(g_task - target_task) * norm_task, 0.0)
        beta = max(self.beta - self.lr * _sign(g_equi - target_equi) * norm_equi, 0.0)
        if alpha + beta > 0:
            scale = self.total / (alpha + beta)
            self.alpha, self.beta = alpha * scale, beta * scale
        return self.alpha, self.beta


def _sign(value: float) -> float:
    return (value > 0) - (value < 0)
