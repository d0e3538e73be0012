"""Permutations from node scores: hard argsort, its Sinkhorn relaxation, and the entropy penalty.

Convention used everywhere in ``symmetry``: a permutation g is stored as an index tensor ``perm``
(R, n) with ``(g·x)[i] = x[perm[i]]``; its matrix is ``P[i, perm[i]] = 1`` so ``g·x = P x``.
For scores Z the argsort permutation of PS paper eq. (8), ``P[i, j] = [Z_i = sort(Z)_j]``, has
``perm = rank(Z)``, so ``g⁻¹·x = x[argsort(Z)]`` lists nodes in increasing score. Padded nodes get
score +inf: they sort last and stay in the padding block.
"""

from __future__ import annotations

import torch

_BIG = 1e9


def masked_scores(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Scores with padded nodes set to +inf so they sort after every real node."""
    if mask is None:
        return scores
    return scores.masked_fill(~mask, float("inf"))


def argsort_permutation(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The hard argsort permutation (R, n) of PS eq. (8) in index form (``perm = rank``)."""
    order = torch.argsort(masked_scores(scores.detach(), mask), dim=1, stable=True)  # g⁻¹ as index
    return invert(order)


def invert(perm: torch.Tensor) -> torch.Tensor:
    """Inverse permutations (R, n): ``invert(p)[p[i]] = i``."""
    inverse = torch.empty_like(perm)
    inverse.scatter_(1, perm, torch.arange(perm.shape[1], device=perm.device).expand_as(perm))
    return inverse


def one_hot(perm: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Permutation matrices (R, n, n) with ``P[i, perm[i]] = 1``."""
    matrix = torch.zeros(*perm.shape, perm.shape[1], dtype=dtype, device=perm.device)
    return matrix.scatter_(2, perm.unsqueeze(2), 1.0)


def sinkhorn_permutation(
    scores: torch.Tensor, mask: torch.Tensor | None, temperature: float, iterations: int = 20
) -> torch.Tensor:
    """Differentiable relaxation P̂ ≈ P of the argsort permutation, (R, n, n) (PS eq. 47).

    ``P̂ = Sinkhorn(-|Z̄ 1ᵀ - 1 sort(Z̄)ᵀ| / τ)`` with Z̄ the L2-normalised real-node scores, in log
    space. Padded rows and columns form their own block equal to the hard permutation, so they
    carry no weight and no gradient. S_n equivariant: every step commutes with permuting nodes.
    """
    rows, size = scores.shape
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    real = mask.to(scores.dtype)
    normalised = scores * real / (scores * real).norm(dim=1, keepdim=True).clamp_min(1e-12)  # (R, n)
    padded = masked_scores(normalised, mask)
    sorted_scores = torch.sort(padded, dim=1, stable=True).values  # (R, n), +inf at the tail
    sorted_real = torch.arange(size, device=scores.device)[None, :] < mask.sum(1, keepdim=True)  # (R, n)
    real_block = mask[:, :, None] & sorted_real[:, None, :]  # (R, n, n)
    distance = (normalised[:, :, None] - sorted_scores.masked_fill(~sorted_real, 0.0)[:, None, :]).abs()
    logits = torch.where(real_block, -distance / temperature, torch.full_like(distance, -_BIG))
    if not bool(mask.all()):
        hard = one_hot(argsort_permutation(scores, mask), scores.dtype).bool()
        logits = torch.where(hard & ~real_block, torch.zeros_like(logits), logits)
    if temperature >= _SCALING_MIN_TEMPERATURE:
        return _sinkhorn_scaling(logits, iterations).to(scores.dtype)
    for _ in range(iterations):
        logits = logits - torch.logsumexp(logits, dim=2, keepdim=True)
        logits = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return logits.exp()


# Real-block logits are ≥ −2/τ (|Z̄_i| ≤ 1); float64 exp is exact enough down to about e^−700.
_SCALING_MIN_TEMPERATURE = 2.0 / 600.0


def _sinkhorn_scaling(logits: torch.Tensor, iterations: int) -> torch.Tensor:
    """The same alternating row/column normalisation as the log-space loop, in the scaling form
    P = diag(u) K diag(v) with K = exp(logits) in float64: one exponential instead of two per
    iteration and entry, and autograd keeps only K and the (R, n) scaling vectors."""
    kernel = logits.double().exp()  # (R, n, n); every row and column holds an entry e^0 = 1
    column = torch.ones(kernel.shape[0], kernel.shape[2], 1, dtype=kernel.dtype, device=kernel.device)
    for _ in range(iterations):
        row = 1.0 / (kernel @ column)  # (R, n, 1)
        column = 1.0 / (kernel.transpose(1, 2) @ row)  # (R, n, 1)
    return row * kernel * column.transpose(1, 2)


def permutation_entropy_penalty(soft: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of the row-wise and column-wise entropies of P̂ over real nodes (scalar)."""
    plogp = -(soft * soft.clamp_min(1e-30).log())  # (R, n, n)
    row_entropy = plogp.sum(dim=2)  # (R, n)
    col_entropy = plogp.sum(dim=1)  # (R, n) indexed by sorted position
    if mask is None:
        return 0.5 * (row_entropy.mean() + col_entropy.mean())
    sorted_real = torch.arange(soft.shape[1], device=soft.device)[None, :] < mask.sum(1, keepdim=True)
    weight = mask.to(soft.dtype)
    rows = (row_entropy * weight).sum() / weight.sum().clamp_min(1)
    cols = (col_entropy * sorted_real).sum() / sorted_real.sum().clamp_min(1)
    return 0.5 * (rows + cols)


def uniform_permutation(
    rows: int, size: int, mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Uniformly random permutations of the real nodes of each row (padding stays last), (R, n)."""
    scores = torch.rand(rows, size, generator=generator).to(device)
    return argsort_permutation(scores, mask)
