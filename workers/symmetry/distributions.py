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

from workers.symmetry import permutations
from workers.symmetry.groups import Group, GroupElement
from workers.symmetry.orthogonal import fix_determinant, gram_schmidt

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


class ProbabilisticSymmetrization(Distribution):
    """PS: a learned equivariant interface network q_ω maps (x, ε) to features, post-processed
    into a group element (PS paper §2.2).

    The interface returns ``{"scores": (R, n)}`` for S_n (hard argsort; straight-through gradient
    through a Sinkhorn-relaxed P̂ at ``temperature``), ``{"vectors": (R, d, d)}`` for O(d)/SO(d)
    (Gram-Schmidt; determinant fix for SO(d)), both for products, and ``{"logits": (R, |G|)}`` for
    C_k/D_k (argmax; straight-through through softmax at ``temperature``). Noise: Unif[0, η] per
    node for S_n, N(0, η²) vectors per node when a matrix group is present, Gumbel·η over the
    elements of a finite group. ``fixed_noise`` draws each input's noise from a generator seeded
    by that input's content, so an input always gets the same samples (PS paper Table 1, fixed ε).
    η = 0 with one sample is canonicalization.
    """

    def __init__(self, group: Group, interface: nn.Module, noise_scale: float = 1.0,
                 temperature: float = 0.01, sinkhorn_iters: int = 20, fixed_noise: bool = False):
        super().__init__(group)
        self.interface = interface
        self.noise_scale = float(noise_scale)
        self.temperature = float(temperature)
        self.sinkhorn_iters = int(sinkhorn_iters)
        self.fixed_noise = fixed_noise
        if group.finite is not None:
            self.noise_kinds = {"regular_noise": "regular"}
        elif group.has_matrix:
            self.noise_kinds = {"vector_noise": "vector"}
        else:
            self.noise_kinds = {"node_noise": "node"}

    def draw_noise(self, inputs, mask, rows, generator=None):
        like = _like(inputs)
        channels = int(getattr(self.interface, "noise_channels", 1))
        if self.group.finite is not None:
            shape = (rows, len(self.group.elements))
        elif self.group.has_matrix:
            shape = (rows, _node_count(inputs, mask), channels, self.group.dim)
        else:
            shape = (rows, _node_count(inputs, mask), channels)
        if self.fixed_noise:
            generators = _content_generators(inputs, mask, rows)
            base = torch.stack([self._draw(shape[1:], generator) for generator in generators])
        else:
            base = self._draw(shape, generator)
        (name,) = self.noise_kinds
        base = base.to(dtype=like.dtype, device=like.device)
        if mask is not None and name != "regular_noise":
            base = base * mask.view(*mask.shape, *([1] * (base.dim() - 2))).to(base.dtype)
        return {name: base}

    def _draw(self, shape, generator):
        if self.group.finite is not None:  # Gumbel(0, η)
            uniform = torch.rand(shape, generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
            return -self.noise_scale * torch.log(-torch.log(uniform))
        if self.group.has_matrix:
            return self.noise_scale * torch.randn(shape, generator=generator, dtype=torch.float64)
        return self.noise_scale * torch.rand(shape, generator=generator, dtype=torch.float64)

    def forward(self, inputs, noise, mask, repeats=1):  # q_ω sees each row's own noise: nothing to share
        features = self.interface(inputs, noise, mask)
        element, aux = GroupElement(), {}
        if self.group.finite is not None:
            logits = features["logits"]  # (R, |G|)
            hard = logits.argmax(dim=1)
            element.rot = self.group.elements.to(logits)[hard]
            if self.training and torch.is_grad_enabled() and logits.requires_grad:
                element.weights = torch.softmax(logits / self.temperature, dim=1)
            return element, aux
        if self.group.permutations:
            scores = features["scores"]  # (R, n)
            element.perm = permutations.argsort_permutation(scores, mask)
            if self.training and torch.is_grad_enabled() and scores.requires_grad:
                element.soft = permutations.sinkhorn_permutation(scores, mask, self.temperature, self.sinkhorn_iters)
                aux["entropy"] = permutations.permutation_entropy_penalty(element.soft, mask)
        if self.group.has_matrix:
            vectors = features["vectors"]  # (R, d, d); orthogonalised in float64 for accuracy
            rot = gram_schmidt(vectors.double()).to(vectors.dtype)
            element.rot = fix_determinant(rot) if self.group.special else rot
        return element, aux


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
