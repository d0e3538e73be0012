"""Permutations from node scores: the argsort of PS eq. (8), its Sinkhorn relaxation P̂ (padding,
temperature, equivariance), straight-through gradients into q_ω, and the entropy penalty."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.symmetry.helpers import GRAPH_KINDS, build
from workers.symmetry import Group
from workers.symmetry.permutations import (
    argsort_permutation,
    invert,
    one_hot,
    permutation_entropy_penalty,
    sinkhorn_permutation,
)
from workers.symmetry.testing import random_graphs


def prefix_mask(batch: int, size: int, gen: torch.Generator, least: int = 1) -> torch.Tensor:
    counts = torch.randint(least, size + 1, (batch,), generator=gen)
    counts[0] = size
    return torch.arange(size)[None, :] < counts[:, None]  # (B, n), real nodes first


def separated_scores(batch: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Scores (B, n) that are shuffled integers plus a little jitter: gaps ≥ 0.8."""
    ranks = torch.stack([torch.randperm(size, generator=gen) for _ in range(batch)]).double()
    return ranks + 0.2 * torch.rand(batch, size, generator=gen, dtype=torch.float64)


def random_permutations(batch: int, size: int, gen: torch.Generator, mask: torch.Tensor | None = None):
    return Group.parse("S_n").sample(batch, size, mask, gen).perm


# -- argsort ---------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 12), batch=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_argsort_matches_eq8(size, batch, seed):
    """P[i, j] = [Z_i = sort(Z)_j] for tie-free scores, with g·x = P x = x[perm]."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, size, generator=gen, dtype=torch.float64)
    perm = argsort_permutation(scores)
    eq8 = (scores[:, :, None] == torch.sort(scores, dim=1).values[:, None, :]).double()
    assert torch.equal(one_hot(perm, torch.float64), eq8)
    x = torch.randn(batch, size, 3, generator=gen, dtype=torch.float64)
    assert torch.equal(eq8 @ x, x.gather(1, perm[..., None].expand(-1, -1, 3)))


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 12), batch=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_argsort_with_padding_sorts_real_nodes_first(size, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    mask = prefix_mask(batch, size, gen)
    scores = torch.randn(batch, size, generator=gen, dtype=torch.float64) * 5  # padded scores: anything
    perm = argsort_permutation(scores, mask)
    index = torch.arange(size).expand(batch, -1)
    assert torch.equal(perm[~mask], index[~mask])  # padding stays in place
    for row in range(batch):
        real = int(mask[row].sum())
        expected = argsort_permutation(scores[row : row + 1, :real])[0]
        assert torch.equal(perm[row, :real], expected)


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 12), batch=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_invert(size, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    perm = random_permutations(batch, size, gen)
    inverse = invert(perm)
    index = torch.arange(size).expand(batch, -1)
    assert torch.equal(perm.gather(1, inverse), index)
    assert torch.equal(inverse.gather(1, perm), index)
    assert torch.equal(invert(inverse), perm)
    assert torch.equal(one_hot(inverse), one_hot(perm).transpose(1, 2))


@settings(max_examples=20, deadline=None)
@given(size=st.integers(2, 10), seed=st.integers(0, 10_000))
def test_argsort_is_equivariant(size, seed):
    """argsort(h·Z) = h·argsort(Z): perm' = perm[h.perm]."""
    gen = torch.Generator().manual_seed(seed)
    mask = prefix_mask(4, size, gen)
    scores = torch.randn(4, size, generator=gen, dtype=torch.float64)
    h = random_permutations(4, size, gen, mask)
    assert torch.equal(argsort_permutation(scores.gather(1, h), mask), argsort_permutation(scores, mask).gather(1, h))


# -- Sinkhorn relaxation ---------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(size=st.integers(2, 10), seed=st.integers(0, 10_000),
       temperature=st.sampled_from([1.0, 0.3, 0.1, 0.03, 0.01]))
def test_sinkhorn_is_doubly_stochastic_over_real_nodes(size, seed, temperature):
    gen = torch.Generator().manual_seed(seed)
    mask = prefix_mask(4, size, gen)
    scores = torch.randn(4, size, generator=gen, dtype=torch.float64)
    soft = sinkhorn_permutation(scores, mask, temperature)  # (B, n, n)
    assert soft.shape == (4, size, size) and bool((soft >= 0).all())
    hard = one_hot(argsort_permutation(scores, mask), torch.float64)
    for row in range(4):
        real = int(mask[row].sum())
        block = soft[row, :real, :real]
        # 20 iterations end on a column normalisation: columns are exact, rows close
        assert torch.allclose(block.sum(0), torch.ones(real, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(block.sum(1), torch.ones(real, dtype=torch.float64), atol=5e-2)
        # padded rows and columns are the hard permutation: no weight crosses the padding
        assert torch.equal(soft[row, real:], hard[row, real:])
        assert torch.equal(soft[row, :, real:], hard[row, :, real:])
    # more iterations bring the rows closer to 1 (Sinkhorn's row error never grows)
    row_error = float((soft.sum(2) - 1)[mask].abs().max())
    longer = sinkhorn_permutation(scores, mask, temperature, iterations=200)
    assert float((longer.sum(2) - 1)[mask].abs().max()) <= min(row_error + 1e-15, 1e-2)


def test_sinkhorn_approaches_the_hard_permutation_as_temperature_falls():
    gen = torch.Generator().manual_seed(31)
    mask = prefix_mask(6, 8, gen, least=2)
    scores = separated_scores(6, 8, gen)
    hard = one_hot(argsort_permutation(scores, mask), torch.float64)
    errors = [float((sinkhorn_permutation(scores, mask, t) - hard).abs().max())
              for t in (1.0, 0.3, 0.1, 0.03, 0.01, 1e-3)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 0.1  # a warm relaxation is far from hard
    assert errors[-1] < 1e-3


@settings(max_examples=20, deadline=None)
@given(size=st.integers(2, 10), seed=st.integers(0, 10_000), temperature=st.sampled_from([0.5, 0.1, 0.01]))
def test_sinkhorn_is_equivariant(size, seed, temperature):
    """sinkhorn(h·Z) = P_h P̂: the rows of P̂ permuted like the nodes."""
    gen = torch.Generator().manual_seed(seed)
    mask = prefix_mask(4, size, gen)
    scores = torch.randn(4, size, generator=gen, dtype=torch.float64)
    h = random_permutations(4, size, gen, mask)
    soft = sinkhorn_permutation(scores, mask, temperature)
    moved = sinkhorn_permutation(scores.gather(1, h), mask.gather(1, h), temperature)
    expected = soft.gather(1, h[..., None].expand(-1, -1, size))
    assert float((moved - expected).abs().max()) < 1e-12


def test_sinkhorn_rescaling_scores_changes_nothing():
    """P̂ uses L2-normalised scores Z̄ (PS eq. 47), so scaling Z by a positive constant is harmless."""
    gen = torch.Generator().manual_seed(32)
    mask = prefix_mask(3, 7, gen)
    scores = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    assert torch.allclose(sinkhorn_permutation(scores, mask, 0.1), sinkhorn_permutation(40 * scores, mask, 0.1))


# -- straight-through gradients --------------------------------------------------------------------

def test_straight_through_gradients_reach_the_interface():
    gen = torch.Generator().manual_seed(33)
    inputs, mask = random_graphs(4, 6, gen)
    model = build(Group.parse("S_n"), "ps", inputs, GRAPH_KINDS, "node", (6, 2), temperature=0.1).train()
    out = model(inputs, mask, generator=gen)
    assert out.elements.soft is not None and out.elements.soft.requires_grad
    target = torch.randn(out.output.shape, generator=gen, dtype=torch.float64)
    loss = (out.output - target).pow(2).mean()  # no entropy penalty: the task loss alone
    loss.backward()
    interface = model.distribution.interface
    grads = {name: p.grad for name, p in interface.named_parameters()}
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads.values()), grads.keys()
    total = sum(float(g.norm()) for g in grads.values())
    assert total > 0
    # every layer of the scorer receives signal, not only the last bias
    for layer in interface.mlps:
        assert float(layer[0].weight.grad.norm()) > 0


def test_no_soft_permutation_in_eval_mode():
    gen = torch.Generator().manual_seed(34)
    inputs, mask = random_graphs(3, 5, gen)
    model = build(Group.parse("S_n"), "ps", inputs, GRAPH_KINDS, "node", (5, 2)).eval()
    out = model(inputs, mask, generator=gen)
    assert out.elements.soft is None and float(out.penalty) == 0.0


# -- entropy penalty -------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [2, 5, 9])
def test_entropy_penalty_hard_versus_uniform(size):
    gen = torch.Generator().manual_seed(35)
    hard = one_hot(random_permutations(3, size, gen), torch.float64)
    assert float(permutation_entropy_penalty(hard)) < 1e-12
    uniform = torch.full((3, size, size), 1.0 / size, dtype=torch.float64)
    assert math.isclose(float(permutation_entropy_penalty(uniform)), math.log(size), rel_tol=1e-12)


def test_entropy_penalty_counts_real_nodes_only():
    mask = torch.tensor([[True, True, True, False, False]])
    soft = torch.zeros(1, 5, 5, dtype=torch.float64)
    soft[0, :3, :3] = 1.0 / 3  # uniform over the real block
    soft[0, 3, 3] = soft[0, 4, 4] = 1.0  # hard padding
    assert math.isclose(float(permutation_entropy_penalty(soft, mask)), math.log(3), rel_tol=1e-12)
    sharp = sinkhorn_permutation(separated_scores(1, 5, torch.Generator().manual_seed(36)), mask, 1e-3)
    warm = sinkhorn_permutation(separated_scores(1, 5, torch.Generator().manual_seed(36)), mask, 1.0)
    assert float(permutation_entropy_penalty(sharp, mask)) < 1e-6 < float(permutation_entropy_penalty(warm, mask))
