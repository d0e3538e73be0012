"""Sampling: the PS distributions are equivariant sample by sample, q(h·x, h·ε) = h·q(x, ε),
checked on the group elements themselves; GA samples are uniform (Haar); padding stays put."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from workers.symmetry import (
    DenseGIN,
    Group,
    GroupAveraging,
    ProbabilisticSymmetrization,
    RegularScorer,
    VectorInterface,
    transform_inputs,
    transform_noise,
)
from workers.symmetry.groups import GroupElement
from workers.symmetry.testing import FlatMLP, point_clouds, random_graphs


def seeded(seed: int, build):
    """Build a module with a fixed parameter initialisation, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def sample_and_move(distribution, inputs, kinds, mask, h, gen) -> tuple[GroupElement, GroupElement]:
    """(q(h·x, h·ε), h·q(x, ε)) for one fresh noise draw."""
    group = distribution.group
    rows = int(next(iter(inputs.values())).shape[0])
    with torch.no_grad():
        noise = distribution.draw_noise(inputs, mask, rows, gen)
        g, _ = distribution(inputs, noise, mask)
        moved, moved_mask = transform_inputs(group, h, inputs, kinds, mask)
        moved_noise = transform_noise(group, h, noise, distribution.noise_kinds, mask)
        g_moved, _ = distribution(moved, moved_noise, moved_mask)
    return g_moved, group.compose(h, g)


def assert_same_elements(actual: GroupElement, expected: GroupElement) -> None:
    assert (actual.perm is None) == (expected.perm is None)
    assert (actual.rot is None) == (expected.rot is None)
    if expected.perm is not None:
        assert torch.equal(actual.perm, expected.perm)
    if expected.rot is not None:
        assert actual.rot.dtype == torch.float64
        assert float((actual.rot - expected.rot).abs().max()) < 1e-10


# -- sample-wise equivariance of q ------------------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(size=st.integers(3, 9), seed=st.integers(0, 10_000), noise_scale=st.sampled_from([0.0, 0.1, 1.0]))
def test_permutation_distribution_on_padded_graphs(size, seed, noise_scale):
    gen = torch.Generator().manual_seed(seed)
    inputs, mask = random_graphs(4, size, gen)  # distinct node features: no ties even for η = 0
    interface = seeded(seed, lambda: DenseGIN(2, hidden=16).double().eval())
    distribution = ProbabilisticSymmetrization(Group.parse("S_n"), interface, noise_scale).eval()
    h = distribution.group.sample(4, size, mask, gen, torch.float64)
    actual, expected = sample_and_move(distribution, inputs, {"adj": "pair", "x": "node"}, mask, h, gen)
    assert_same_elements(actual, expected)


@settings(max_examples=12, deadline=None)
@given(dim=st.integers(2, 5), extra=st.integers(1, 3), seed=st.integers(0, 10_000),
       special=st.booleans())
def test_orthogonal_distribution(dim, extra, seed, special):
    gen = torch.Generator().manual_seed(seed)
    inputs, mask = point_clouds(3, dim + extra, dim, gen)
    group = Group.parse("SO(d)" if special else "O(d)", dim=dim)
    interface = seeded(seed, lambda: VectorInterface(dim, ["pos", "vel"]).double().eval())
    distribution = ProbabilisticSymmetrization(group, interface, noise_scale=1.0).eval()
    h = group.sample(3, None, None, gen, torch.float64)
    actual, expected = sample_and_move(distribution, inputs, {"pos": "point", "vel": "vector"}, mask, h, gen)
    assert_same_elements(actual, expected)
    eye = torch.eye(dim, dtype=torch.float64)
    assert float((actual.rot.transpose(1, 2) @ actual.rot - eye).abs().max()) < 1e-10
    if special:
        assert torch.allclose(torch.linalg.det(actual.rot), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("method", ["ps", "ga"])
def test_permutation_times_orthogonal_distribution(method):
    gen = torch.Generator().manual_seed(11)
    group = Group.parse("S_n x O(3)")
    for _ in range(3):
        inputs, mask = point_clouds(4, 7, 3, gen)
        if method == "ps":
            interface = seeded(11, lambda: VectorInterface(3, ["pos", "vel"]).double().eval())
            distribution = ProbabilisticSymmetrization(group, interface, noise_scale=1.0).eval()
        else:
            distribution = GroupAveraging(group)
        h = group.sample(4, 7, mask, gen, torch.float64)
        actual, expected = sample_and_move(distribution, inputs, {"pos": "point", "vel": "vector"}, mask, h, gen)
        assert_same_elements(actual, expected)
        assert actual.perm is not None and actual.rot is not None


@pytest.mark.parametrize("name", ["C_4", "D_4"])
@pytest.mark.parametrize("noise_scale", [0.0, 1.0])
def test_finite_distribution_on_images(name, noise_scale):
    gen = torch.Generator().manual_seed(12)
    group = Group.parse(name)
    kinds = {"image": "image"}
    images = {"image": torch.rand(6, 9, 9, 1, generator=gen, dtype=torch.float64)}
    scorer = seeded(12, lambda: RegularScorer(group, FlatMLP({"image": (9, 9, 1)}, (1,)), kinds).double())
    distribution = ProbabilisticSymmetrization(group, scorer, noise_scale).eval()
    h = group.sample(6, dtype=torch.float64, generator=gen)
    actual, expected = sample_and_move(distribution, images, kinds, None, h, gen)
    assert_same_elements(actual, expected)
    assert torch.equal(group.finite_index(actual), group.finite_index(expected))


# -- uniformity of GA sampling --------------------------------------------------------------------

def test_symmetric_group_samples_are_uniform():
    gen = torch.Generator().manual_seed(21)
    perms = Group.parse("S_n").sample(24_000, 4, generator=gen).perm  # (24000, 4)
    codes = (perms * torch.tensor([1, 4, 16, 64])).sum(1)
    every = [sum(p[i] * 4 ** i for i in range(4)) for p in itertools.permutations(range(4))]
    counts = [int((codes == code).sum()) for code in every]
    assert sum(counts) == 24_000  # every sample is a permutation of 0..3
    assert stats.chisquare(counts).pvalue > 1e-3


def test_symmetric_group_samples_with_padding_are_uniform_on_real_nodes():
    gen = torch.Generator().manual_seed(22)
    mask = torch.arange(6)[None, :] < 4  # 4 real nodes, 2 padded
    perms = Group.parse("S_n").sample(12_000, 6, mask.expand(12_000, -1), generator=gen).perm
    assert torch.equal(perms[:, 4:], torch.tensor([4, 5]).expand(12_000, -1))
    codes = (perms[:, :4] * torch.tensor([1, 4, 16, 64])).sum(1)
    counts = torch.bincount(codes, minlength=256)
    every = [sum(p[i] * 4 ** i for i in range(4)) for p in itertools.permutations(range(4))]
    assert int(counts[every].sum()) == 12_000
    assert stats.chisquare(counts[every].tolist()).pvalue > 1e-3


@pytest.mark.parametrize("special", [False, True])
def test_orthogonal_samples_have_haar_moments(special):
    gen = torch.Generator().manual_seed(23 + special)
    rows = 20_000
    q = Group.parse("SO(3)" if special else "O(3)").sample(rows, generator=gen, dtype=torch.float64).rot
    assert q.shape == (rows, 3, 3)
    assert float((q.transpose(1, 2) @ q - torch.eye(3, dtype=torch.float64)).abs().max()) < 1e-12
    assert float(q.mean(0).abs().max()) < 0.02  # E[Q] = 0, std of each mean ≈ 0.004
    assert float((q.pow(2).mean(0) - 1 / 3).abs().max()) < 0.015  # E[Q_ij²] = 1/d, std ≈ 0.002
    det = torch.linalg.det(q)
    if special:
        assert torch.allclose(det, torch.ones_like(det))
    else:
        assert torch.allclose(det.abs(), torch.ones_like(det))
        assert abs(float(det.mean())) < 0.04  # E[det] = 0, std ≈ 0.007
    # a column of a Haar matrix is uniform on the sphere: each coordinate is Unif[-1, 1]
    # (Archimedes). QR without the sign fix fails this (its first column has a fixed sign).
    for entry in (q[:, 0, 0], q[:, 2, 1]):
        assert stats.kstest(entry.numpy(), stats.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3


def test_rotation_angles_in_two_dimensions_are_uniform():
    gen = torch.Generator().manual_seed(25)
    q = Group.parse("SO(2)").sample(5_000, generator=gen, dtype=torch.float64).rot
    angles = torch.atan2(q[:, 1, 0], q[:, 0, 0])
    assert stats.kstest(angles.numpy(), stats.uniform(loc=-math.pi, scale=2 * math.pi).cdf).pvalue > 1e-3


@pytest.mark.parametrize("name,order", [("C_5", 5), ("D_4", 8), ("C_1", 1)])
def test_finite_group_samples_are_uniform(name, order):
    gen = torch.Generator().manual_seed(26)
    group = Group.parse(name)
    g = group.sample(order * 1_000, generator=gen, dtype=torch.float64)
    index = group.finite_index(g)
    assert torch.equal(group.elements[index], g.rot)  # every sample is an element of G
    counts = torch.bincount(index, minlength=order)
    assert counts.shape == (order,) and int(counts.sum()) == order * 1_000
    if order > 1:
        assert stats.chisquare(counts.tolist()).pvalue > 1e-3


# -- padding ---------------------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(size=st.integers(2, 12), batch=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_ga_permutations_never_move_real_nodes_into_padding(size, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, size + 1, (batch,), generator=gen)
    mask = torch.arange(size)[None, :] < counts[:, None]  # (B, n), real nodes first
    inputs = {"x": torch.rand(batch, size, 2, generator=gen, dtype=torch.float64) * mask[..., None]}
    distribution = GroupAveraging(Group.parse("S_n"))
    noise = distribution.draw_noise(inputs, mask, batch, gen)
    g, _ = distribution(inputs, noise, mask)
    index = torch.arange(size).expand(batch, -1)
    # real slots receive real nodes, padded slots keep their own padded node
    assert bool(((g.perm < counts[:, None]) | ~mask).all())
    assert torch.equal(g.perm[~mask], index[~mask])
    assert torch.equal(torch.sort(g.perm, dim=1).values, index)  # a permutation
    group = distribution.group
    assert torch.equal(group.act(g, mask, "node"), mask)
    assert torch.equal(group.act(group.inverse(g), mask, "node"), mask)
    moved, _ = transform_inputs(group, group.inverse(g), inputs, {"x": "node"}, mask)
    assert float(moved["x"][~mask].abs().sum()) == 0.0
