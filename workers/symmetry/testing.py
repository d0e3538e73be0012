"""Equivariance checks that ship with the library: random inputs of every kind, a plain
(non-equivariant) base model, and ``assert_equivariant``.

Use them to check a symmetrized model, or any model claimed to be equivariant, in a few lines::

    from workers.symmetry import Group, symmetrize
    from workers.symmetry.testing import FlatMLP, assert_equivariant, random_inputs

    kinds = {"pos": "point", "vel": "vector"}
    inputs, mask = random_inputs(kinds, batch=8, nodes=6, dim=3)
    base = FlatMLP({k: tuple(v.shape[1:]) for k, v in inputs.items()}, (6, 3))
    model = symmetrize(base, Group.parse("S_n x E(d)", dim=3), "ps", kinds, "point", 10, 10)
    assert_equivariant(model, inputs, mask)       # float64 copy; raises AssertionError with the gap

For a symmetrizer the check is the *coupled* gap max |φ(h·x; h·ε) − h·φ(x; ε)|: the noise ε is
moved together with the input, so Monte-Carlo error cancels and an exact method lands at round-off
whatever N is. Any other model is checked as max |f(h·x) − h·f(x)| under the ``group`` and kinds
given. Float64 by default: in float32 the hard argsort of S_n methods can flip on a near-tie of two
scores for a few inputs in a hundred, which is rounding, not a broken symmetry.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Mapping

import torch
from torch import nn

from workers.symmetry.groups import DATA_KINDS, NODE_KINDS, Group
from workers.symmetry.metrics import coupled_equivariance_gap, transform_inputs

Inputs = dict[str, torch.Tensor]


class FlatMLP(nn.Module):
    """A base model with no symmetry at all: flatten the named inputs, tanh MLP, reshape to ``out_shape``."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], out_shape: tuple[int, ...], width: int = 32):
        super().__init__()
        self.fields, self.out_shape = list(shapes), tuple(out_shape)
        fan_in = sum(math.prod(s) for s in shapes.values())
        self.net = nn.Sequential(nn.Linear(fan_in, width), nn.Tanh(), nn.Linear(width, math.prod(out_shape)))

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        dtype = self.net[0].weight.dtype
        flat = torch.cat([inputs[f].reshape(inputs[f].shape[0], -1).to(dtype) for f in self.fields], 1)
        return self.net(flat).view(-1, *self.out_shape)


def seeded_mlp(shapes: Mapping[str, tuple[int, ...]], out_shape: tuple[int, ...], seed: int,
               width: int = 32) -> FlatMLP:
    """A ``FlatMLP`` initialised from ``seed`` without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FlatMLP(shapes, out_shape, width)


def padded_mask(batch: int, size: int, generator: torch.Generator, least: int = 2) -> torch.Tensor:
    """(B, n) bool: real nodes first, between max(least, n // 2) and n of them; the first row is full."""
    counts = torch.randint(min(size, max(least, size // 2)), size + 1, (batch,), generator=generator)
    counts[0] = size
    return torch.arange(size)[None, :] < counts[:, None]


def random_graphs(batch: int, size: int, generator: torch.Generator, dtype=torch.float64, mask=None):
    """Random undirected graphs (B, n, n, 1) with simple Laplacian spectra (so frames are unique) and
    node features (B, n, 2); returns (inputs, mask)."""
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
    """Padded Gaussian positions and velocities (B, n, d), at least d + 1 real points each (generic
    enough for frames); returns (inputs, mask)."""
    mask = padded_mask(batch, size, generator, least=dim + 1)
    pos = torch.randn(batch, size, dim, generator=generator, dtype=dtype) * mask[..., None]
    vel = torch.randn(batch, size, dim, generator=generator, dtype=dtype) * mask[..., None]
    return {"pos": pos, "vel": vel}, mask


def random_inputs(input_kinds: Mapping[str, str], batch: int = 8, nodes: int = 6, dim: int = 3,
                  generator: torch.Generator | None = None, dtype=torch.float64, channels: int = 2,
                  image_size: int = 8) -> tuple[Inputs, torch.Tensor | None]:
    """Random inputs for every named field of ``input_kinds`` and a padded mask (None when no field is
    node-level). ``pair`` fields are random graphs with simple Laplacian spectra, ``point``/``vector``
    fields Gaussian (B, n, dim), ``node`` fields uniform (B, n, channels), ``image`` fields uniform
    (B, image_size, image_size, channels), ``invariant`` fields Gaussian (B, channels)."""
    generator = generator or torch.Generator().manual_seed(0)
    unknown = sorted(name for name, kind in input_kinds.items() if kind not in DATA_KINDS)
    if unknown:
        raise ValueError(f"input {unknown[0]!r} has kind {input_kinds[unknown[0]]!r}; allowed: "
                         f"{', '.join(DATA_KINDS)}")
    node_level = any(kind in NODE_KINDS for kind in input_kinds.values())
    least = dim + 1 if any(kind in ("point", "vector") for kind in input_kinds.values()) else 2
    mask = padded_mask(batch, nodes, generator, least=least) if node_level else None
    inputs: Inputs = {}
    for name, kind in input_kinds.items():
        if kind == "pair":
            graphs, _ = random_graphs(batch, nodes, generator, dtype, mask)
            inputs[name] = graphs["adj"]
        elif kind in ("point", "vector"):
            inputs[name] = torch.randn(batch, nodes, dim, generator=generator, dtype=dtype) * mask[..., None]
        elif kind == "node":
            inputs[name] = torch.rand(batch, nodes, channels, generator=generator, dtype=dtype) * mask[..., None]
        elif kind == "image":
            inputs[name] = torch.rand(batch, image_size, image_size, channels, generator=generator, dtype=dtype)
        else:
            inputs[name] = torch.randn(batch, channels, generator=generator, dtype=dtype)
    return inputs, mask


def equivariance_gap(model: nn.Module | Callable, inputs: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None,
                     generator: torch.Generator | None = None, *, group: Group | None = None,
                     input_kinds: Mapping[str, str] | None = None, output_kind: str | None = None) -> float:
    """max |model(h·x) − h·model(x)| over one random h per input; for a symmetrizer (a module with
    ``draw_noise``) the coupled gap, noise moved with the input. ``group``, ``input_kinds`` and
    ``output_kind`` default to the model's own attributes."""
    generator = generator or torch.Generator().manual_seed(0)
    if hasattr(model, "draw_noise"):
        return coupled_equivariance_gap(model, dict(inputs), mask, generator)
    group = group or getattr(model, "group", None)
    input_kinds = input_kinds or getattr(model, "input_kinds", None)
    output_kind = output_kind or getattr(model, "output_kind", None)
    if group is None or input_kinds is None or output_kind is None:
        raise ValueError("equivariance_gap needs group, input_kinds and output_kind for a model that does not "
                         "carry them (a symmetrizer does)")

    def call(x: Mapping[str, torch.Tensor], m: torch.Tensor | None) -> torch.Tensor:
        out = model(dict(x), m) if hasattr(model, "output_kind") else model({**x, "mask": m} if m is not None else x)
        return getattr(out, "output", out)

    batch = int(next(iter(inputs.values())).shape[0])
    size = None if mask is None else int(mask.shape[1])
    like = next(v for v in inputs.values() if v.is_floating_point())
    with torch.no_grad():
        out = call(inputs, mask)
        h = group.sample(batch, size, mask, generator, like.dtype, like.device)
        moved, moved_mask = transform_inputs(group, h, dict(inputs), input_kinds, mask)
        return float((call(moved, moved_mask) - group.act(h, out, output_kind, mask)).abs().max())


def assert_equivariant(model: nn.Module | Callable, inputs: Mapping[str, torch.Tensor],
                       mask: torch.Tensor | None = None, *, group: Group | None = None,
                       input_kinds: Mapping[str, str] | None = None, output_kind: str | None = None,
                       dtype: torch.dtype | None = torch.float64, atol: float | None = None, rtol: float = 0.0,
                       generator: torch.Generator | None = None) -> float:
    """Raise ``AssertionError`` unless ``model`` is equivariant on ``inputs`` up to ``atol`` (+ ``rtol``
    × the largest output); return the measured gap.

    The check runs on a float64 copy of the model and inputs (``dtype=None`` keeps them as they are);
    ``atol`` defaults to 1e-9 in float64 and 1e-4 otherwise. ``group``, ``input_kinds`` and
    ``output_kind`` are needed only for a model that does not carry them.
    """
    if dtype is not None:
        model = copy.deepcopy(model).to(dtype) if isinstance(model, nn.Module) else model
        inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    was_training = getattr(model, "training", None)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        gap = equivariance_gap(model, inputs, mask, group=group, input_kinds=input_kinds, output_kind=output_kind,
                               generator=generator)
    finally:
        if isinstance(model, nn.Module) and was_training:
            model.train()
    like = next(v for v in inputs.values() if v.is_floating_point())
    if atol is None:
        atol = 1e-9 if like.dtype == torch.float64 else 1e-4
    scale = 0.0
    if rtol:
        with torch.no_grad():
            out = model(dict(inputs), mask) if hasattr(model, "output_kind") else model(dict(inputs))
        scale = float(getattr(out, "output", out).abs().max())
    tolerance = atol + rtol * scale
    if not gap <= tolerance:
        name = getattr(getattr(model, "group", None) or group, "name", "the group")
        raise AssertionError(f"not equivariant under {name}: max |f(h·x) − h·f(x)| = {gap:.3e} > {tolerance:.1e} "
                             f"({like.dtype})")
    return gap
