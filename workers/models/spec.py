"""What a base model is told about its inputs and output.

Every base model f_θ is an ``nn.Module`` whose ``forward(inputs: dict[str, Tensor]) -> Tensor`` takes
the task's input fields (batched, first axis = rows) plus an optional ``"mask"`` (R, n) bool of real
node slots, and returns one tensor of the output's shape. Constructors receive the fields' kinds and
per-example shapes as ``FieldSpec``s, so one model class serves every task whose layout it can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from workers.symmetry.groups import NODE_KINDS


@dataclass(frozen=True)
class FieldSpec:
    """A field's kind (``node``/``pair``/``point``/``vector``/``image``/``invariant``) and its
    per-example shape: node (n, C), pair (n, n, C), point/vector (n, d), image (H, W, C),
    invariant (C,) or any shape."""

    kind: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of entries of one example."""
        count = 1
        for extent in self.shape:
            count *= int(extent)
        return count


Specs = Mapping[str, FieldSpec]


def fields_of(specs: Specs, *kinds: str) -> list[str]:
    """Names of the fields of the given kinds, in declaration order."""
    return [name for name, spec in specs.items() if spec.kind in kinds]


def node_count(specs: Specs) -> int | None:
    """The number of node slots n shared by node/pair/point/vector fields (None if there are none)."""
    counts = {spec.shape[0] for spec in specs.values() if spec.kind in NODE_KINDS}
    if len(counts) > 1:
        raise ValueError(f"input fields disagree on the number of nodes: {sorted(counts)}")
    return counts.pop() if counts else None


def row_mask(inputs: Mapping[str, torch.Tensor], rows: int, nodes: int, device: torch.device) -> torch.Tensor:
    """``inputs["mask"]`` (R, n) bool, or all-true when the task has no padding."""
    mask = inputs.get("mask")
    if mask is None:
        return torch.ones(rows, nodes, dtype=torch.bool, device=device)
    return mask.bool()
