"""Distributions p(g|x) over group elements: PS (learned), GA, canonicalization, FA.

Every distribution is written as ``g = q(x, ε)`` with noise ε drawn by ``draw_noise`` and a
deterministic map ``forward``. ``noise_kinds`` says how the group acts on each noise field, so a
test (or the coupled equivariance metric) can transform the noise together with the input and
check the sample-wise equivariance ``q(h·x, h·ε) = h·q(x, ε)`` exactly. Inputs here are already
repeated to R = B·N rows (input-major) and, for groups with translations, centred.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import torch
from torch import nn

from workers.symmetry.groups import Group, GroupElement

Tensors = Mapping[str, torch.Tensor]


class Distribution(nn.Module):
    """Base class: ``draw_noise`` then ``forward(inputs, noise, mask, repeats) -> (g, aux)``.

    The rows come input-major in blocks of ``repeats`` copies of one input that differ only in their
    noise (the symmetrizer's B·N rows), so a distribution may compute what depends on the input
    alone once per block."""

    noise_kinds: dict[str, str] = {}

    def __init__(self, group: Group):
        super().__init__()
        self.group = group

    def draw_noise(self, inputs: Tensors, mask: torch.Tensor | None, rows: int,
                   generator: torch.Generator | None = None) -> dict:
        return {}

    def forward(self, inputs: Tensors, noise: dict, mask: torch.Tensor | None,
                repeats: int = 1) -> tuple[GroupElement, dict]:
        raise NotImplementedError


def _node_count(inputs: Tensors, mask: torch.Tensor | None) -> int | None:
    if mask is not None:
        return int(mask.shape[1])
    for value in inputs.values():
        if value.dim() >= 2:
            return int(value.shape[1])
    return None


def _like(inputs: Tensors) -> torch.Tensor:
    return next(v for v in inputs.values() if v.is_floating_point())


class GroupAveraging(Distribution):
    """GA: g uniform (Haar) on G, ignoring x. Its noise *is* the element (kind ``group``), and
    q(x, u) = u, so transforming the noise by left multiplication makes the estimate exactly
    equivariant sample by sample."""

    noise_kinds = {"element": "group"}

    def draw_noise(self, inputs, mask, rows, generator=None):
        like = _like(inputs)
        element = self.group.sample(rows, _node_count(inputs, mask), mask, generator, like.dtype, like.device)
        element.shift = None  # translations are handled by centring, never averaged
        return {"element": element}

    def forward(self, inputs, noise, mask, repeats=1):
        element = noise["element"]
        return GroupElement(element.perm, None, element.rot), {}


NOISE_FIELDS = {"node": "node_noise", "vector": "vector_noise", "regular": "regular_noise"}  # PS noise kind -> field


class ProbabilisticSymmetrization(Distribution):
    """PS: a learned equivariant interface network q_ω maps (x, ε) to features, which the group turns
    into an element (``Group.from_features``, PS paper §2.2): scores -> argsort for S_n, vectors ->
    Gram-Schmidt for O(d)/SO(d), both for products, logits -> argmax for finite groups, each with its
    straight-through relaxation at ``temperature`` in training.

    The noise is of the kind the group names (``Group.ps_noise``): ``node``, Unif[0, η] per node;
    ``vector``, N(0, η²) vectors per node; ``regular``, Gumbel·η over the elements of a finite group.
    ``fixed_noise`` draws each input's noise from a generator seeded by that input's content, so an
    input always gets the same samples (PS paper Table 1, fixed ε). η = 0 with one sample is
    canonicalization.
    """

    def __init__(self, group: Group, interface: nn.Module, noise_scale: float = 1.0,
                 temperature: float = 0.01, sinkhorn_iters: int = 20, fixed_noise: bool = False):
        super().__init__(group)
        if group.ps_noise not in NOISE_FIELDS:
            raise ValueError(f"symmetrizer.method='ps' needs a group with a PS relaxation and {group.name} has none; "
                             "allowed: ga")
        self.interface = interface
        self.noise_scale = float(noise_scale)
        self.temperature = float(temperature)
        self.sinkhorn_iters = int(sinkhorn_iters)
        self.fixed_noise = fixed_noise
        self.noise_kinds = {NOISE_FIELDS[group.ps_noise]: group.ps_noise}

    def draw_noise(self, inputs, mask, rows, generator=None):
        like = _like(inputs)
        channels = int(getattr(self.interface, "noise_channels", 1))
        kind = self.group.ps_noise
        if kind == "regular":
            shape = (rows, self.group.finite)
        elif kind == "vector":
            shape = (rows, _node_count(inputs, mask), channels, self.group.dim)
        else:
            shape = (rows, _node_count(inputs, mask), channels)
        if self.fixed_noise:
            generators = _content_generators(inputs, mask, rows)
            base = torch.stack([self._draw(shape[1:], generator) for generator in generators])
        else:
            base = self._draw(shape, generator)
        base = base.to(dtype=like.dtype, device=like.device)
        if mask is not None and kind != "regular":
            base = base * mask.view(*mask.shape, *([1] * (base.dim() - 2))).to(base.dtype)
        return {NOISE_FIELDS[kind]: base}

    def _draw(self, shape, generator):
        kind = self.group.ps_noise
        if kind == "regular":  # Gumbel(0, η)
            uniform = torch.rand(shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
            return -self.noise_scale * torch.log(-torch.log(uniform))
        if kind == "vector":
            return self.noise_scale * torch.randn(shape, generator=generator, dtype=torch.float64)
        return self.noise_scale * torch.rand(shape, generator=generator, dtype=torch.float64)

    def forward(self, inputs, noise, mask, repeats=1):  # q_ω sees each row's own noise: nothing to share
        features = self.interface(inputs, noise, mask)
        relax = self.training and torch.is_grad_enabled()
        return self.group.from_features(features, mask, relax, self.temperature, self.sinkhorn_iters)


def _content_generators(inputs: Tensors, mask: torch.Tensor | None, rows: int) -> list[torch.Generator]:
    """One generator per row, seeded by the row's content and by how many earlier rows had the same
    content: the N copies of an input get N different noises, the same ones every time."""
    seen: dict[bytes, int] = {}
    generators = []
    for row in range(rows):
        digest = hashlib.sha256()
        for key in sorted(inputs):
            digest.update(inputs[key][row].detach().cpu().contiguous().numpy().tobytes())
        if mask is not None:
            digest.update(mask[row].cpu().numpy().tobytes())
        content = digest.digest()
        copy = seen.get(content, 0)
        seen[content] = copy + 1
        seed = int.from_bytes(hashlib.sha256(content + copy.to_bytes(4, "little")).digest()[:7], "little")
        generators.append(torch.Generator().manual_seed(seed))
    return generators


def canonicalization(group: Group, interface: nn.Module, temperature: float = 0.01,
                     sinkhorn_iters: int = 20) -> ProbabilisticSymmetrization:
    """Canonicalization: PS with η = 0 (use it with one sample)."""
    return ProbabilisticSymmetrization(group, interface, 0.0, temperature, sinkhorn_iters)
