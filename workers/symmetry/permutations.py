"""Permutations from node scores: hard argsort, its Sinkhorn relaxation, and the entropy penalty.

Convention used everywhere in ``symmetry``: a permutation g is stored as an index tensor ``perm``
(R, n) with ``(g·x)[i] = x[perm[i]]``; its matrix is ``P[i, perm[i]] = 1`` so ``g·x = P x``.
For scores Z the argsort permutation of PS paper eq. (8), ``P[i, j] = [Z_i = sort(Z)_j]``, has
``perm = rank(Z)``, so ``g⁻¹·x = x[argsort(Z)]`` lists nodes in increasing score. Padded nodes get
score +inf: they sort last and stay in the padding block.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


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

    ``P̂ = Sinkhorn(K)``, ``K = exp(-|Z̄ 1ᵀ - 1 sort(Z̄)ᵀ| / τ)`` with Z̄ the L2-normalised real-node
    scores: ``iterations`` alternating row and column normalisations starting from the rows and
    ending on the columns, ``P̂ = diag(r) K diag(c)``. Padded rows and columns form their own block
    equal to the hard permutation, so they carry no weight and no gradient. S_n equivariant: every
    step commutes with permuting nodes (the iterations run in sorted order, so exactly). The
    gradient is the exact gradient of the unrolled iterations.

    How it is computed (the values of the dense iteration, a fraction of its cost): with rows taken
    in sorted order K becomes ``K'_ab = exp(-|s_a - s_b| / τ)`` for the sorted scores s, the
    exponential kernel of points on a line, so
    ``(K'v)_a = e^{-s_a/τ} Σ_{b≤a} e^{s_b/τ} v_b + e^{s_a/τ} Σ_{b>a} e^{-s_b/τ} v_b``: two cumulative
    sums. The scalings r, c are iterated in float64 at O(n) per row and iteration, with a
    hand-written backward that replays the iterations from their stored (R, n) iterates
    (``_ScalingIterations``; plain autograd in log space with ``logcumsumexp`` for τ < 1/300, where
    e^{1/τ} would overflow). P̂ itself is dense only once, at the end (``_RelaxedMatrix``), in the
    scores' dtype (at least float32). benchmarks/permutations.py compares it with the dense form.
    """
    rows, size = scores.shape
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    real = mask.to(scores.dtype)
    normalised = scores * real / (scores * real).norm(dim=1, keepdim=True).clamp_min(1e-12)  # (R, n)
    order = torch.argsort(masked_scores(normalised.detach(), mask), dim=1, stable=True)  # (R, n): node at position
    rank = invert(order)  # (R, n): position of node
    sorted_scores = normalised.gather(1, order)  # (R, n) ascending over the real positions, 0 on padding
    sorted_real = torch.arange(size, device=scores.device)[None, :] < mask.sum(1, keepdim=True)  # (R, n)
    scaled = sorted_scores.double() / temperature
    if temperature >= _SCALING_MIN_TEMPERATURE:
        log_row, log_col = _ScalingIterations.apply(scaled, sorted_real, iterations)  # (R, n) each, sorted order
    else:
        log_row, log_col = _sinkhorn_log(scaled, sorted_real, iterations)
    dtype = torch.promote_types(scores.dtype, torch.float32)
    padded = not bool(mask.all())
    real_block = mask[:, :, None] & sorted_real[:, None, :] if padded else None  # (R, n, n)
    hard = one_hot(rank, dtype) if padded else None
    soft = _RelaxedMatrix.apply(normalised.to(dtype), sorted_scores.to(dtype), log_row.to(dtype).gather(1, rank),
                                log_col.to(dtype), temperature, real_block, hard)
    return soft.to(scores.dtype)


class _RelaxedMatrix(torch.autograd.Function):
    """``P̂_ij = exp(log r_i + log c_j − |z_i − s_j| / τ)`` (R, n, n) for node scores z, sorted scores
    s and log scalings (node order for rows, sorted order for columns); the hard permutation
    outside ``real_block``. A Function so that the dense work is a few in-place passes and the
    backward a few reductions instead of autograd's chain of (R, n, n) temporaries."""

    @staticmethod
    def forward(ctx, normalised, sorted_scores, log_row, log_col, temperature, real_block, hard):  # noqa: D102
        soft = (normalised[:, :, None] - sorted_scores[:, None, :]).abs_().mul_(-1.0 / temperature)
        soft = soft.add_(log_row[:, :, None]).add_(log_col[:, None, :]).exp_()  # (R, n, n)
        if real_block is not None:
            soft = torch.where(real_block, soft, hard)
        ctx.save_for_backward(normalised, sorted_scores, soft)
        ctx.temperature, ctx.real_block = temperature, real_block
        return soft

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # noqa: D102
        normalised, sorted_scores, soft = ctx.saved_tensors
        weighted = grad * soft  # (R, n, n): the gradient of the exponent
        if ctx.real_block is not None:
            weighted = weighted.masked_fill_(~ctx.real_block, 0.0)
        grad_row, grad_col = weighted.sum(2), weighted.sum(1)
        signed = (normalised[:, :, None] - sorted_scores[:, None, :]).sign_().mul_(weighted)
        return (signed.sum(2).mul_(-1.0 / ctx.temperature), signed.sum(1).mul_(1.0 / ctx.temperature),
                grad_row, grad_col, None, None, None)


# |s/τ| ≤ 1/τ: the scaling form needs e^{1/τ} (and products with the scalings) in float64 range.
_SCALING_MIN_TEMPERATURE = 1.0 / 300.0


def _kernel_product(rising, falling, padding, vector):
    """K'v (R, n) = e^{-x} ⊙ Σ_{b≤a} e^{x_b} v_b + e^{x} ⊙ Σ_{b>a} e^{-x_b} v_b (+ v on padding), and
    the two partial sums."""
    below = torch.cumsum(rising * vector, dim=1)  # Σ_{b≤a}
    above = torch.zeros_like(below)
    above[:, :-1] = torch.cumsum((falling * vector).flip(1), dim=1).flip(1)[:, 1:]  # Σ_{b>a}
    return below, above, torch.addcmul(padding * vector, falling, below).addcmul_(rising, above)


class _ScalingIterations(torch.autograd.Function):
    """Sinkhorn on ``K'_ab = exp(-|x_a - x_b|)`` for ascending x = ``scaled`` (R, n) float64 over the
    ``real`` positions (K' is the identity on padding): the alternating scalings r = 1/(K'c),
    c = 1/(K'r), ``iterations`` times from c = 1; returns (log r, log c). The backward is the exact gradient
    of the unrolled iterations, written out:
    it replays the kernel products in reverse from the stored (R, n) iterates and partial sums
    (K' is symmetric, so the adjoint of v ↦ K'v is K' itself), with no autograd graph."""

    @staticmethod
    def forward(ctx, scaled, real, iterations):  # noqa: D102
        rising = scaled.exp().masked_fill_(~real, 0.0)  # e^{x_b}, 0 on padding
        falling = scaled.neg().exp_().masked_fill_(~real, 0.0)  # e^{-x_b}
        padding = (~real).to(scaled.dtype)
        vector = torch.ones_like(scaled)
        steps = []  # (input, Σ_{b≤a}, Σ_{b>a}, output) of each half-iteration
        for _ in range(2 * iterations):
            below, above, product = _kernel_product(rising, falling, padding, vector)
            output = product.reciprocal_()
            steps.append((vector, below, above, output))
            vector = output
        ctx.state = (rising, falling, padding, steps)
        return steps[-2][3].log(), steps[-1][3].log()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_log_row, grad_log_col):  # noqa: D102
        rising, falling, padding, steps = ctx.state
        grad_rising, grad_falling = torch.zeros_like(rising), torch.zeros_like(rising)
        # gradient with respect to the output of the step being undone (d log v = dv / v)
        carried = None if grad_log_col is None else grad_log_col / steps[-1][3]
        for index in range(len(steps) - 1, -1, -1):
            vector, below, above, output = steps[index]
            if index == len(steps) - 2 and grad_log_row is not None:  # the returned row scaling
                extra = grad_log_row / output
                carried = extra if carried is None else carried + extra
            if carried is None:
                continue
            grad_product = -(carried * output * output)  # output = 1 / product
            grad_falling.addcmul_(grad_product, below)
            grad_rising.addcmul_(grad_product, above)
            through_below = torch.cumsum((falling * grad_product).flip(1), dim=1).flip(1)  # Σ_{a≥b}
            through_above = torch.zeros_like(through_below)
            through_above[:, 1:] = torch.cumsum(rising * grad_product, dim=1)[:, :-1]  # Σ_{a<b}
            grad_rising.addcmul_(vector, through_below)
            grad_falling.addcmul_(vector, through_above)
            carried = torch.addcmul(padding * grad_product, rising, through_below).addcmul_(falling, through_above)
        return grad_rising.mul_(rising).sub_(grad_falling.mul_(falling)), None, None


_FAR = -1e200  # the log of "no contribution": finite, so that no gradient becomes NaN


def _sinkhorn_log(scaled: torch.Tensor, real: torch.Tensor, iterations: int):
    """``_ScalingIterations`` in log space (plain autograd), for any τ."""

    def log_kernel_times(log_vector: torch.Tensor) -> torch.Tensor:  # log K'v at real positions
        lower = torch.logcumsumexp(torch.where(real, scaled + log_vector, _FAR), dim=1) - scaled  # Σ_{b≤a}
        above = torch.logcumsumexp(torch.where(real, log_vector - scaled, _FAR).flip(1), dim=1).flip(1)  # Σ_{b≥a}
        upper = torch.cat([above[:, 1:], torch.full_like(above[:, :1], _FAR)], dim=1) + scaled  # Σ_{b>a}
        return torch.logaddexp(lower, upper)

    log_col = torch.zeros_like(scaled)
    log_row = log_col
    for _ in range(iterations):
        log_row = torch.where(real, -log_kernel_times(log_col), 0.0)
        log_col = torch.where(real, -log_kernel_times(log_row), 0.0)
    return log_row, log_col


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


def permute_nodes(x: torch.Tensor, perm: torch.Tensor, pair: bool = False) -> torch.Tensor:
    """``(g·x)[i] = x[perm[i]]`` along axis 1 of x (R, n, ...), and ``[i, j] = x[perm[i], perm[j]]``
    along axes 1 and 2 for pairs (R, n, n, ...), by indexing: one ``gather`` per node axis (a single
    flat index is within ±20 %, products with one-hot matrices up to 37× slower;
    benchmarks/permutations.py)."""
    rows = perm.view(*perm.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    out = x.gather(1, rows)
    if pair:
        cols = perm.view(perm.shape[0], 1, perm.shape[1], *([1] * (x.dim() - 3)))
        out = out.gather(2, cols.expand(-1, x.shape[1], -1, *x.shape[3:]))
    return out


class _StraightThrough(torch.autograd.Function):
    """``g·x`` by indexing, with the straight-through gradient of a relaxed P̂ (R, n, n).

    The value is the hard permutation; the gradient is that of ``hard + (P̂x − (P̂x).detach())``
    (node kinds; ``P̂ A P̂ᵀ`` for pairs, differentiated at P̂ = P: ``dP̂ (A Pᵀ) + (P A) dP̂ᵀ``): x gets
    the gradient of the indexing, P̂ the derivative of P̂x. P̂x itself is never computed: the
    forward costs one index, the backward one batched product per term."""

    @staticmethod
    def forward(ctx, x, soft, perm, pair):  # noqa: D102 (see the class)
        ctx.pair, ctx.soft_dtype = pair, soft.dtype
        ctx.save_for_backward(x, perm)
        return permute_nodes(x, perm, pair)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # noqa: D102
        x, perm = ctx.saved_tensors
        grad_x = grad_soft = None
        if ctx.needs_input_grad[0]:
            grad_x = permute_nodes(grad, invert(perm), ctx.pair)
        if ctx.needs_input_grad[1]:
            rows, size = perm.shape
            if ctx.pair:
                grad = grad.reshape(rows, size, size, -1)  # (R, n, n, C)
                right = permute_nodes(x, perm).reshape(rows, size, size, -1)  # P A: rows permuted
                left = permute_nodes(x.transpose(1, 2), perm).transpose(1, 2).reshape(rows, size, size, -1)  # A Pᵀ
                grad_soft = torch.einsum("rijc,rkjc->rik", grad, left) + torch.einsum("rijc,rikc->rjk", grad, right)
            else:
                grad, x = grad.reshape(rows, size, -1), x.reshape(rows, size, -1)  # (R, n, C)
                if grad.shape[2] == 1:  # an outer product: cheaper as a broadcast than as a product
                    grad_soft = grad * x.transpose(1, 2)
                else:
                    grad_soft = torch.einsum("ric,rkc->rik", grad, x)
            grad_soft = grad_soft.to(ctx.soft_dtype)
        return grad_x, grad_soft, None, None


def straight_through_permute(x: torch.Tensor, soft: torch.Tensor, perm: torch.Tensor, pair: bool) -> torch.Tensor:
    """``g·x`` by indexing with the straight-through gradient of the relaxed P̂ ``soft`` (``_StraightThrough``)."""
    return _StraightThrough.apply(x, soft, perm, pair)

