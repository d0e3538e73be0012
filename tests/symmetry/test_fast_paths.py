"""The fast implementations of the S_n post-processing against their plain definitions: the O(n)
Sinkhorn iterations (values and unrolled gradients) against the dense n × n iteration of PS eq. 47,
and the straight-through ``Function`` against ``hard + (P̂x − (P̂x).detach())`` written with autograd."""

from __future__ import annotations

import pytest
import torch

from workers.symmetry import Group, GroupElement
from workers.symmetry.permutations import argsort_permutation, masked_scores, one_hot, sinkhorn_permutation


def dense_sinkhorn(scores: torch.Tensor, mask: torch.Tensor, temperature: float, iterations: int) -> torch.Tensor:
    """PS eq. 47 on the dense kernel, in log space, autograd through every iteration."""
    size = scores.shape[1]
    real = mask.to(scores.dtype)
    normalised = scores * real / (scores * real).norm(dim=1, keepdim=True).clamp_min(1e-12)
    sorted_scores = torch.sort(masked_scores(normalised, mask), dim=1, stable=True).values
    sorted_real = torch.arange(size)[None, :] < mask.sum(1, keepdim=True)
    real_block = mask[:, :, None] & sorted_real[:, None, :]
    distance = (normalised[:, :, None] - sorted_scores.masked_fill(~sorted_real, 0.0)[:, None, :]).abs()
    hard = one_hot(argsort_permutation(scores, mask), scores.dtype).bool()
    logits = torch.where(real_block, -distance / temperature, torch.where(hard, 0.0, -1e9))
    for _ in range(iterations):
        logits = logits - torch.logsumexp(logits, dim=2, keepdim=True)
        logits = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return logits.exp()


@pytest.mark.parametrize("temperature", [1.0, 0.1, 0.01, 0.002])
@pytest.mark.parametrize("size", [1, 2, 9])
def test_sinkhorn_matches_the_dense_iteration(temperature, size):
    gen = torch.Generator().manual_seed(size)
    scores = torch.randn(6, size, generator=gen, dtype=torch.float64)
    mask = torch.arange(size)[None, :] < torch.tensor([[size], [1], [max(1, size - 1)], [size], [0], [size]])
    weight = torch.randn(6, size, size, generator=gen, dtype=torch.float64)
    values, grads = [], []
    for function in (sinkhorn_permutation, dense_sinkhorn):
        leaf = scores.clone().requires_grad_()
        soft = function(leaf, mask, temperature, 7)
        (soft * weight).sum().backward()
        values.append(soft.detach())
        grads.append(leaf.grad)
    assert torch.allclose(values[0], values[1], rtol=0, atol=1e-12)
    # the O(n) form writes each diagonal entry e^0 as e^{x_a} e^{-x_a}: their derivatives cancel up to
    # rounding, an absolute error of about eps / τ where the dense form has exactly 0
    scale = float(grads[1].abs().max())
    assert float((grads[0] - grads[1]).abs().max()) <= 1e-8 * scale + 1e-13 / temperature


def test_sinkhorn_gradient_is_the_unrolled_one():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False], [True] * 4 + [False]])
    for temperature in (0.5, 0.05):
        assert torch.autograd.gradcheck(lambda s: sinkhorn_permutation(s, mask, temperature, 5), (scores,))


@pytest.mark.parametrize("kind,shape", [("node", (5, 6, 3)), ("node", (5, 6, 1)), ("node", (5, 6)),
                                        ("pair", (5, 6, 6, 2)), ("point", (5, 6, 3))])
def test_straight_through_function_matches_autograd(kind, shape):
    gen = torch.Generator().manual_seed(len(shape))
    group = Group.parse("S_n x O(3)" if kind == "point" else "S_n")
    perm = torch.stack([torch.randperm(6, generator=gen) for _ in range(5)])
    soft = torch.rand(5, 6, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    rot = torch.linalg.qr(torch.randn(5, 3, 3, generator=gen, dtype=torch.float64))[0] if kind == "point" else None
    weight = torch.randn(shape, generator=gen, dtype=torch.float64)

    def reference(x, soft):  # the straight-through formula, then the rotation
        def gather(value, axis):
            index = perm.view(5, *([1] * (axis - 1)), 6, *([1] * (value.dim() - axis - 1)))
            return value.gather(axis, index.expand(*value.shape[:axis], 6, *value.shape[axis + 1:]))
        hard = gather(x, 1)
        if kind == "pair":
            hard = gather(hard, 2)
            flat = (torch.einsum("rik,rkj...->rij...", soft, gather(x, 2).detach())
                    + torch.einsum("rik...,rjk->rij...", gather(x, 1).detach(), soft))
        else:
            flat = torch.einsum("rik,rk...->ri...", soft, x.detach())
        out = hard + (flat - flat.detach())
        return out if rot is None else torch.einsum("rij,rnj->rni", rot, out)

    results = []
    for function in (lambda x, s: group.act(GroupElement(perm=perm, soft=s, rot=rot), x, kind), reference):
        leaf_x, leaf_soft = x.clone().requires_grad_(), soft.clone().requires_grad_()
        out = function(leaf_x, leaf_soft)
        (out * weight).sum().backward()
        results.append((out.detach(), leaf_x.grad, leaf_soft.grad))
    for ours, theirs in zip(*results):
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["S_n", "O(d)", "SO(d)", "S_n x E(d)"])
def test_frames_computed_once_per_input_equal_the_per_row_frames(name):
    """FA's eigendecompositions run once per block of N rows of one input; the elements must be the
    ones computed row by row (repeats=1), and a row count that is not a multiple is refused."""
    from workers.symmetry.frames import FrameAveraging
    from workers.symmetry.testing import point_clouds, random_graphs

    gen = torch.Generator().manual_seed(5)
    samples = 3
    group = Group.parse(name, dim=3)
    if group.has_matrix:
        inputs, mask = point_clouds(4, 6, 3, gen)
        frame = FrameAveraging(group, point_field="pos")
    else:
        inputs, mask = random_graphs(4, 7, gen)
        frame = FrameAveraging(group, adjacency_field="adj")
    rows = {k: v.repeat_interleave(samples, 0) for k, v in inputs.items()}
    rmask = mask.repeat_interleave(samples, 0)
    noise = frame.draw_noise(rows, rmask, len(rmask), gen)
    shared, _ = frame(rows, noise, rmask, repeats=samples)
    alone, _ = frame(rows, noise, rmask)
    for part in ("perm", "rot"):
        if getattr(alone, part) is not None:
            assert torch.equal(getattr(shared, part), getattr(alone, part)), part
    with pytest.raises(ValueError, match="repeats=5"):
        frame(rows, noise, rmask, repeats=5)
