"""Shared helpers of the base-model tests: the n-body layout, random padded batches, seeded models."""

from __future__ import annotations

import torch

from workers.models.spec import FieldSpec


def nbody(dim: int = 3, particles: int = 5) -> tuple[dict[str, FieldSpec], FieldSpec]:
    inputs = {"pos": FieldSpec("point", (particles, dim)), "vel": FieldSpec("vector", (particles, dim)),
              "charges": FieldSpec("node", (particles, 1))}
    return inputs, FieldSpec("point", (particles, dim))


def random_batch(inputs: dict[str, FieldSpec], rows: int, seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """A batch of ``rows`` examples: real slots scattered (as after a permutation), padded slots zero,
    adjacency as bool (as the tasks store it), row 0 without padding."""
    generator = torch.Generator().manual_seed(seed)
    batch: dict[str, torch.Tensor] = {}
    sizes = {spec.shape[0] for spec in inputs.values() if spec.kind != "image"}
    mask = None
    if sizes:
        size = sizes.pop()
        counts = torch.randint(2, size + 1, (rows,), generator=generator)
        counts[0] = size
        order = torch.argsort(torch.rand(rows, size, generator=generator), dim=1)
        mask = order < counts[:, None]  # (R, n) a random subset of `count` real slots
        batch["mask"] = mask
    for name, spec in inputs.items():
        if spec.kind == "pair":
            upper = torch.triu(torch.rand(rows, *spec.shape[:2], generator=generator) < 0.4, 1)
            value = (upper | upper.transpose(1, 2))[..., None] & mask[:, :, None, None] & mask[:, None, :, None]
        else:
            value = torch.randn(rows, *spec.shape, generator=generator, dtype=dtype)
            if mask is not None:
                value = value * mask.view(rows, -1, *([1] * (len(spec.shape) - 1))).to(dtype)
        batch[name] = value
    return batch


def seeded(cls, options: dict, inputs: dict, output: FieldSpec, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(inputs, output, **options)


# a lab's own model, knowing nothing of groups: every input flattened, one linear layer, reshaped to the output
# (its source text, written into a temporary package by the tests of code of your own)
FLAT_NET = """
import torch
from torch import nn


class FlatNet(nn.Module):
    def __init__(self, inputs, output, hidden: int = 8):
        super().__init__()
        self.names, self.shape = list(inputs), output.shape
        self.net = nn.Linear(sum(spec.size for spec in inputs.values()), output.size)

    def forward(self, inputs):
        return self.net(torch.cat([inputs[n].flatten(1) for n in self.names], 1)).view(-1, *self.shape)
"""
