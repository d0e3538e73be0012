"""Shared builders for the symmetry tests: random padded batches and a plain MLP base model."""

from __future__ import annotations

import math

import torch
from torch import nn

from workers.symmetry import Group, RegularScorer, symmetrize
from workers.symmetry.metrics import coupled_equivariance_gap


class FlatMLP(nn.Module):
    """Base model f: flatten the named inputs, MLP, reshape to ``out_shape``."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], out_shape: tuple[int, ...], width: int = 32):
        super().__init__()
        self.fields, self.out_shape = list(shapes), tuple(out_shape)
        fan_in = sum(math.prod(s) for s in shapes.values())
        self.net = nn.Sequential(nn.Linear(fan_in, width), nn.Tanh(), nn.Linear(width, math.prod(out_shape)))

    def forward(self, inputs: dict) -> torch.Tensor:
        dtype = self.net[0].weight.dtype
        flat = torch.cat([inputs[f].reshape(inputs[f].shape[0], -1).to(dtype) for f in self.fields], 1)
        return self.net(flat).view(-1, *self.out_shape)


def seeded_mlp(shapes: dict[str, tuple[int, ...]], out_shape: tuple[int, ...], seed: int) -> FlatMLP:
    """A ``FlatMLP`` initialised from ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FlatMLP(shapes, out_shape)


def padded_mask(batch: int, size: int, generator: torch.Generator, least: int = 2) -> torch.Tensor:
    counts = torch.randint(min(size, max(least, size // 2)), size + 1, (batch,), generator=generator)
    counts[0] = size
    return torch.arange(size)[None, :] < counts[:, None]


def random_graphs(batch: int, size: int, generator: torch.Generator, dtype=torch.float64, mask=None):
    """Random undirected graphs (B, n, n, 1) with simple Laplacian spectra (for FA) and features."""
    mask = padded_mask(batch, size, generator) if mask is None else mask
    adjs = []
    for row in range(batch):
        while True:
            upper = torch.triu((torch.rand(size, size, generator=generator) < 0.5).double(), 1)
            adj = (upper + upper.T) * mask[row][:, None] * mask[row][None, :]
            real = int(mask[row].sum())
            lap = (torch.diag(adj.sum(1)) - adj)[:real, :real]  # padding sits at the end
            gaps = torch.linalg.eigvalsh(lap).diff()
            if bool((gaps > 1e-3).all()):
                break
        adjs.append(adj)
    adj = torch.stack(adjs).to(dtype)[..., None]
    features = torch.rand(batch, size, 2, generator=generator, dtype=dtype) * mask[..., None]
    return {"adj": adj, "x": features}, mask


def point_clouds(batch: int, size: int, dim: int, generator: torch.Generator, dtype=torch.float64):
    mask = padded_mask(batch, size, generator, least=dim + 1)  # frames need d + 1 generic points
    pos = torch.randn(batch, size, dim, generator=generator, dtype=dtype) * mask[..., None]
    vel = torch.randn(batch, size, dim, generator=generator, dtype=dtype) * mask[..., None]
    return {"pos": pos, "vel": vel}, mask


GRAPH_KINDS = {"adj": "pair", "x": "node"}
POINT_KINDS = {"pos": "point", "vel": "vector"}


def build(group: Group, method: str, inputs: dict, kinds: dict, output_kind: str, out_shape, samples: int = 4,
          dtype=torch.float64, **options):
    shapes = {k: tuple(v.shape[1:]) for k, v in inputs.items()}
    interface = None
    if group.finite is not None and method != "ga":
        interface = RegularScorer(group, seeded_mlp(shapes, (1,), 1), kinds)
    if group.permutations and not group.has_matrix and method != "ga" and method != "fa":
        options.setdefault("node_channels", {"x": inputs["x"].shape[-1]})
    with torch.random.fork_rng(devices=[]):  # deterministic parameters, global state untouched
        torch.manual_seed(0)
        model = symmetrize(seeded_mlp(shapes, out_shape, 0), group, method, kinds, output_kind, samples, samples,
                           interface=interface, **options)
    return model.to(dtype)


def equivariance_gap(model, inputs: dict, mask, generator: torch.Generator) -> float:
    """max |φ(h·x; h·ε) − h·φ(x; ε)| (see ``coupled_equivariance_gap``)."""
    return coupled_equivariance_gap(model, inputs, mask, generator)
