"""Equivariance metrics usable on any model, and the diagnostics of the PS estimator.

- E  (REMUL eq. 12): mean over inputs of ‖(1/M) Σ_i ρ(g_i) f(x) − (1/M) Σ_i f(g_i·x)‖₂
- E' (REMUL eq. 13): mean over inputs of (1/M) Σ_i ‖f(g_i·x) − ρ(g_i) f(x)‖₂
- the entropy of the averaged permutation matrix P̄ = (1/N) Σ P_g (PS paper Figure 2)
- the sample variance of the N-sample estimator.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from workers.symmetry.groups import Group, GroupElement
from workers.symmetry.permutations import one_hot

Inputs = Mapping[str, torch.Tensor]


def transform_inputs(group: Group, g: GroupElement, inputs: Inputs, kinds: Mapping[str, str],
                     mask: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """(g·x, g·mask) for a batch of inputs aligned with the elements of g."""
    moved = {name: group.act(g, value, kinds[name], mask) for name, value in inputs.items()}
    return moved, (None if mask is None else group.act(g, mask, "node"))


def transform_noise(group: Group, g: GroupElement, noise: Mapping, kinds: Mapping[str, str],
                    mask: torch.Tensor | None = None) -> dict:
    """g·ε for a distribution's noise (``kinds`` is the distribution's ``noise_kinds``)."""
    out = {}
    for name, value in noise.items():
        if kinds[name] == "group":
            out[name] = group.compose(g, value)
        else:
            out[name] = group.act(g, value, kinds[name], None)
    return out


def equivariance_errors(
    model: Callable[[dict, torch.Tensor | None], torch.Tensor], inputs: Inputs, group: Group,
    input_kinds: Mapping[str, str], output_kind: str, mask: torch.Tensor | None = None,
    samples: int = 100, generator: torch.Generator | None = None, chunk: int = 4096,
) -> dict[str, float]:
    """E and E' of ``model(inputs, mask) -> (B, ...)`` over ``samples`` Haar elements per input."""
    batch = int(next(iter(inputs.values())).shape[0])
    with torch.no_grad():
        reference = model(dict(inputs), mask)  # (B, ...)
        expanded = {k: v.repeat_interleave(samples, 0) for k, v in inputs.items()}
        rmask = None if mask is None else mask.repeat_interleave(samples, 0)
        size = None if rmask is None else rmask.shape[1]
        if size is None:
            size = next((int(v.shape[1]) for k, v in inputs.items() if input_kinds[k] != "invariant"
                         and v.dim() > 1), None)
        like = next(v for v in inputs.values() if v.is_floating_point())
        g = group.sample(batch * samples, size, rmask, generator, like.dtype, like.device)
        moved_outputs, rotated_reference = [], []
        reference_rows = reference.repeat_interleave(samples, 0)
        for start in range(0, batch * samples, chunk):
            rows = slice(start, start + chunk)
            part = g.index(rows)
            sub_inputs = {k: v[rows] for k, v in expanded.items()}
            sub_mask = None if rmask is None else rmask[rows]
            moved, moved_mask = transform_inputs(group, part, sub_inputs, input_kinds, sub_mask)
            moved_outputs.append(model(moved, moved_mask))
            rotated_reference.append(group.act(part, reference_rows[rows], output_kind, sub_mask))
        transformed = torch.cat(moved_outputs).view(batch, samples, -1).double()  # f(g·x)
        expected = torch.cat(rotated_reference).view(batch, samples, -1).double()  # ρ(g) f(x)
    e = (expected.mean(1) - transformed.mean(1)).norm(dim=-1).mean()
    e_prime = (transformed - expected).norm(dim=-1).mean()
    return {"E": float(e), "E_prime": float(e_prime)}


def permutation_entropy(perms: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean row entropy of P̄ = (1/N) Σ_s P_s for perms (B, N, n); averaged over real nodes, (B,)."""
    batch, samples, size = perms.shape
    mean_matrix = one_hot(perms.reshape(batch * samples, size), torch.float64).view(
        batch, samples, size, size).mean(dim=1)  # (B, n, n)
    entropy = -(mean_matrix * mean_matrix.clamp_min(1e-30).log()).sum(dim=2)  # (B, n)
    if mask is None:
        return entropy.mean(dim=1)
    weight = mask.double()
    return (entropy * weight).sum(1) / weight.sum(1).clamp_min(1)


def sample_variance(samples: torch.Tensor) -> torch.Tensor:
    """Variance of the N per-sample outputs (B, N, ...) around their mean, summed over output
    entries and averaged over inputs: the spread that averaging N samples reduces by 1/N."""
    flat = samples.reshape(samples.shape[0], samples.shape[1], -1).double()
    return flat.var(dim=1, unbiased=flat.shape[1] > 1).sum(dim=1).mean()


def coupled_equivariance_gap(model, inputs: Inputs, mask: torch.Tensor | None = None,
                             generator: torch.Generator | None = None, translation_scale: float = 3.0) -> float:
    """max |φ(h·x; h·ε) − h·φ(x; ε)| for a ``Symmetrizer``, one random h per input, with the noise
    ε transformed together with the input. Zero up to rounding for an exactly equivariant
    symmetrization, whatever the number of samples (Monte-Carlo error cancels). A model without
    noise (``Unsymmetrized``: no ``draw_noise``) gets max |f(h·x) − h·f(x)|, its real error."""
    group, kinds = model.group, model.input_kinds
    noisy = hasattr(model, "draw_noise")
    batch = int(next(iter(inputs.values())).shape[0])
    size = None if mask is None else int(mask.shape[1])
    if size is None and group.permutes_nodes:
        size = int(next(iter(inputs.values())).shape[1])
    like = next(v for v in inputs.values() if v.is_floating_point())
    with torch.no_grad():
        noise = model.draw_noise(inputs, mask, generator=generator) if noisy else None
        out = model(inputs, mask, noise=noise).output
        h = group.sample(batch, size, mask, generator, like.dtype, like.device, translation_scale)
        moved, moved_mask = transform_inputs(group, h, inputs, kinds, mask)
        moved_noise = None
        if noisy:
            samples = model.num_samples()
            h_rows = h.index(torch.arange(batch).repeat_interleave(samples))
            rows_mask = None if mask is None else mask.repeat_interleave(samples, 0)
            moved_noise = transform_noise(group, h_rows, noise, model.distribution.noise_kinds, rows_mask)
        out_moved = model(moved, moved_mask, noise=moved_noise).output
        expected = group.act(h, out, model.output_kind, mask)
    return float((out_moved - expected).abs().max())
