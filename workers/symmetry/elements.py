"""A batch of group elements (``GroupElement``) and the node-permutation part of their action.

An element has up to three parts, acting as x ↦ P·(Q x + t): a node permutation ``perm`` (index form,
``(g·x)[i] = x[perm[i]]``, see ``permutations``), an orthogonal matrix ``rot`` and a translation ``shift``;
``soft`` and ``weights`` carry the relaxations of PS for straight-through gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from workers.symmetry import permutations
from workers.symmetry.permutations import permute_nodes


@dataclass
class GroupElement:
    """R group elements. ``perm`` (R, n) long, ``soft`` (R, n, n) relaxed P̂ for straight-through
    gradients, ``rot`` (R, d, d), ``shift`` (R, d), ``weights`` (R, |G|) relaxed one-hot over a
    finite group's elements for straight-through gradients; a part is None when not used."""

    perm: torch.Tensor | None = None
    soft: torch.Tensor | None = None
    rot: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def __len__(self) -> int:
        part = next(t for t in (self.perm, self.rot, self.shift) if t is not None)
        return int(part.shape[0])

    def detach(self) -> "GroupElement":
        return GroupElement(self.perm, None, None if self.rot is None else self.rot.detach(),
                            None if self.shift is None else self.shift.detach())

    def index(self, rows: torch.Tensor | slice) -> "GroupElement":
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return GroupElement(pick(self.perm), pick(self.soft), pick(self.rot), pick(self.shift),
                            pick(self.weights))


def matrix_of(g: GroupElement, dtype: torch.dtype) -> torch.Tensor:
    return g.soft if g.soft is not None else permutations.one_hot(g.perm, dtype)


def permute(x: torch.Tensor, g: GroupElement, pair: bool) -> torch.Tensor:
    """Index the node axis (and the second one for pairs); straight-through through P̂ if set."""
    perm = g.perm.to(x.device)
    if g.soft is None or not x.is_floating_point() or not torch.is_grad_enabled() or not g.soft.requires_grad:
        return permute_nodes(x, perm, pair)
    return permutations.straight_through_permute(x, g.soft, perm, pair)


def with_soft(g: GroupElement, soft: torch.Tensor | None) -> GroupElement:
    """A copy of g carrying a relaxed permutation for straight-through gradients."""
    return replace(g, soft=soft)
