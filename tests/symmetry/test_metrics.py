"""Equivariance errors E and E' (REMUL eqs. 12-13), the permutation entropy of P̄ and the sample
variance of the N-sample estimator.

E and E' use fresh Haar samples of the input transformation and no coupling of the model's own
noise, so they are exactly zero only for a deterministic equivariant model: canonicalization
(η = 0, one sample). GA, FA and PS draw fresh group elements on every call and are equivariant
only in distribution (their E is the Monte-Carlo error of N samples).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests.symmetry.helpers import GRAPH_KINDS, POINT_KINDS, build
from workers.symmetry import Group, equivariance_errors, permutation_entropy, sample_variance
from workers.symmetry.testing import point_clouds, random_graphs


def setup(name: str, gen: torch.Generator):
    if name == "S_n":
        inputs, mask = random_graphs(5, 6, gen)
        return Group.parse("S_n"), inputs, mask, GRAPH_KINDS, "node", (6, 2)
    inputs, mask = point_clouds(5, 6, 3, gen)
    return Group.parse(name, dim=3), inputs, mask, POINT_KINDS, "point", (6, 3)


@pytest.mark.parametrize("name", ["S_n", "O(3)", "S_n x SE(3)"])
def test_errors_vanish_for_canonicalization_and_not_for_the_base_model(name):
    gen = torch.Generator().manual_seed(61)
    group, inputs, mask, kinds, output_kind, shape = setup(name, gen)
    model = build(group, "canonical", inputs, kinds, output_kind, shape).eval()
    symmetrized = lambda x, m: model(x, m).output  # noqa: E731
    bare = lambda x, m: model.base({**x, "mask": m})  # noqa: E731
    errors = equivariance_errors(symmetrized, inputs, group, kinds, output_kind, mask, samples=30, generator=gen)
    assert errors["E"] < 1e-6 and errors["E_prime"] < 1e-6, errors
    bare_errors = equivariance_errors(bare, inputs, group, kinds, output_kind, mask, samples=30, generator=gen)
    assert bare_errors["E"] > 1e-2 and bare_errors["E_prime"] > 1e-2, bare_errors
    assert bare_errors["E"] <= bare_errors["E_prime"] + 1e-12  # ‖mean‖ ≤ mean ‖·‖


def test_errors_of_a_constant_vector_have_their_closed_form():
    """f(x) = c with a vector output under O(3): f(g·x) = c but ρ(g)f(x) = gc. For Haar g,
    E → ‖c − E[gc]‖ = ‖c‖ and E' → E‖c − gc‖ = (4/3)‖c‖ (cos∠(c, gc) is Unif[-1, 1])."""
    gen = torch.Generator().manual_seed(62)
    c = torch.tensor([0.0, 3.0, 4.0], dtype=torch.float64)  # ‖c‖ = 5
    inputs = {"pos": torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)}
    constant = lambda x, m: c.expand(x["pos"].shape[0], 3)  # noqa: E731
    errors = equivariance_errors(constant, inputs, Group.parse("O(3)"), {"pos": "vector"}, "vector",
                                 samples=3_000, generator=gen, chunk=1_000)
    assert math.isclose(errors["E"], 5.0, rel_tol=0.03), errors
    assert math.isclose(errors["E_prime"], 20 / 3, rel_tol=0.03), errors


def test_errors_of_an_invariant_output_under_an_equivariant_map_are_zero():
    """f(x) = Σ_i pos_i with a vector output is O(3) equivariant and deterministic."""
    gen = torch.Generator().manual_seed(63)
    inputs = {"pos": torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)}
    total = lambda x, m: x["pos"].sum(1)  # noqa: E731
    errors = equivariance_errors(total, inputs, Group.parse("O(3)"), {"pos": "vector"}, "vector",
                                 samples=50, generator=gen)
    assert errors["E"] < 1e-12 and errors["E_prime"] < 1e-12


# -- permutation entropy ---------------------------------------------------------------------------

def test_permutation_entropy_is_zero_when_all_samples_agree():
    gen = torch.Generator().manual_seed(64)
    perm = Group.parse("S_n").sample(3, 7, generator=gen).perm  # (3, 7)
    perms = perm[:, None, :].expand(-1, 10, -1)  # (B, N, n): the same permutation N times
    assert torch.equal(permutation_entropy(perms), torch.zeros(3, dtype=torch.float64))


def test_permutation_entropy_is_log_n_when_samples_are_uniform():
    every = torch.tensor(list(itertools.permutations(range(4))))  # all 24 elements of S_4
    assert torch.allclose(permutation_entropy(every[None]), torch.tensor([math.log(4)], dtype=torch.float64))
    gen = torch.Generator().manual_seed(65)
    sampled = Group.parse("S_n").sample(2 * 4_000, 6, generator=gen).perm.view(2, 4_000, 6)
    entropy = permutation_entropy(sampled)
    assert bool((entropy < math.log(6)).all()) and bool((entropy > math.log(6) - 0.01).all())


def test_permutation_entropy_averages_over_real_nodes():
    """Padded nodes are fixed (entropy 0) and do not dilute the average over real ones."""
    real = torch.tensor(list(itertools.permutations(range(3))))  # (6, 3)
    perms = torch.cat([real, torch.tensor([3, 4]).expand(6, -1)], dim=1)[None]  # (1, 6, 5)
    mask = torch.tensor([[True, True, True, False, False]])
    assert torch.allclose(permutation_entropy(perms, mask), torch.tensor([math.log(3)], dtype=torch.float64))
    assert torch.allclose(permutation_entropy(perms), torch.tensor([3 * math.log(3) / 5], dtype=torch.float64))


# -- sample variance -------------------------------------------------------------------------------

def test_sample_variance_matches_torch_var():
    samples = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]],  # input 0: N = 3 samples of 2 entries
                            [[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]], dtype=torch.float64)  # input 1: identical
    # input 0: var of (1, 3, 5) = 4 and of (0, 2, 4) = 4, summed = 8; input 1: 0; mean over inputs = 4
    assert math.isclose(float(sample_variance(samples)), 4.0, rel_tol=1e-12)
    gen = torch.Generator().manual_seed(66)
    random = torch.randn(4, 9, 3, 2, generator=gen, dtype=torch.float64)
    expected = torch.var(random.reshape(4, 9, 6), dim=1).sum(1).mean()
    assert math.isclose(float(sample_variance(random)), float(expected), rel_tol=1e-12)
    assert float(sample_variance(random)) > 0


def test_sample_variance_is_zero_for_identical_samples_and_one_sample():
    same = torch.randn(3, 1, 5, generator=torch.Generator().manual_seed(67)).expand(-1, 8, -1)
    assert float(sample_variance(same)) == 0.0
    assert float(sample_variance(same[:, :1])) == 0.0


def test_sample_variance_of_ga_outputs_is_positive_and_canonical_zero():
    gen = torch.Generator().manual_seed(68)
    inputs, mask = point_clouds(3, 5, 3, gen)
    group = Group.parse("O(3)")
    ga = build(group, "ga", inputs, POINT_KINDS, "vector", (5, 3), samples=8).eval()
    with torch.no_grad():
        assert float(sample_variance(ga(inputs, mask, generator=gen).samples)) > 1e-4
        canonical = build(group, "canonical", inputs, POINT_KINDS, "vector", (5, 3)).eval()
        assert float(sample_variance(canonical(inputs, mask, samples=4).samples)) < 1e-20
