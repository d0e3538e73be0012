"""Exact equivariance of the symmetrized model for every group × distribution, with the noise
transformed together with the input, on padded batches of different sizes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.symmetry.helpers import GRAPH_KINDS, POINT_KINDS, build
from workers.symmetry import Group, transform_inputs
from workers.symmetry.testing import equivariance_gap, point_clouds, random_graphs

METHODS = ["ps", "ps_fixed_noise", "canonical", "ga", "fa"]
POINT_GROUPS = ["O(d)", "SO(d)", "E(d)", "SE(d)", "S_n x O(d)", "S_n x SO(d)", "S_n x E(d)", "S_n x SE(d)"]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", METHODS)
def test_permutation_group_on_graphs(method, dtype):
    gen = torch.Generator().manual_seed(1)
    inputs, mask = random_graphs(5, 7, gen, dtype)
    for output_kind, shape in (("node", (7, 3)), ("invariant", (4,))):
        model = build(Group.parse("S_n"), method, inputs, GRAPH_KINDS, output_kind, shape, dtype=dtype).eval()
        assert equivariance_gap(model, inputs, mask, gen) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", POINT_GROUPS)
def test_point_groups(name, method, dtype):
    gen = torch.Generator().manual_seed(2)
    for dim in (2, 3):
        inputs, mask = point_clouds(4, 5, dim, gen, dtype)
        group = Group.parse(name, dim=dim)
        for output_kind, shape in (("point", (5, dim)), ("vector", (5, dim)), ("invariant", (3,))):
            model = build(group, method, inputs, POINT_KINDS, output_kind, shape, dtype=dtype).eval()
            gap = equivariance_gap(model, inputs, mask, gen)
            assert gap < TOLERANCE[dtype] * 10, f"{name} d={dim} {method} {output_kind}: {gap}"


@settings(max_examples=15, deadline=None)
@given(dim=st.integers(2, 5), extra=st.integers(1, 4), seed=st.integers(0, 10_000),
       method=st.sampled_from(["ps", "ga", "fa", "canonical"]), name=st.sampled_from(POINT_GROUPS))
def test_point_groups_property(dim, extra, seed, method, name):
    size = dim + extra  # frames need at least d + 1 points in general position
    gen = torch.Generator().manual_seed(seed)
    inputs, mask = point_clouds(3, size, dim, gen)
    model = build(Group.parse(name, dim=dim), method, inputs, POINT_KINDS, "point", (size, dim)).eval()
    assert equivariance_gap(model, inputs, mask, gen) < 1e-9


@pytest.mark.parametrize("name", ["C_4", "D_4", "C_2", "D_1"])
@pytest.mark.parametrize("method", ["ga", "ps", "canonical"])
def test_finite_groups_on_images_exact(name, method):
    """Multiples of 90° move pixel centres onto pixel centres: exact."""
    gen = torch.Generator().manual_seed(3)
    images = {"image": torch.rand(4, 9, 9, 1, generator=gen, dtype=torch.float64)}
    for output_kind, shape in (("invariant", (5,)), ("image", (9, 9, 1))):
        model = build(Group.parse(name), method, images, {"image": "image"}, output_kind, shape).eval()
        assert equivariance_gap(model, images, None, gen) < 1e-12


@pytest.mark.parametrize("name", ["C_8", "D_8"])
def test_finite_groups_on_images_interpolated(name):
    """45° rotations are interpolated: far from exact on an image, but close on a smooth blob."""
    gen = torch.Generator().manual_seed(4)
    noise_image = {"image": torch.rand(4, 9, 9, 1, generator=gen, dtype=torch.float64)}
    model = build(Group.parse(name), "ga", noise_image, {"image": "image"}, "image", (9, 9, 1)).eval()
    assert equivariance_gap(model, noise_image, None, gen) > 1e-3


@pytest.mark.parametrize("name", ["C_3", "C_8", "D_5", "D_8"])
@pytest.mark.parametrize("method", ["ga", "ps"])
def test_finite_groups_on_coordinates_exact(name, method):
    gen = torch.Generator().manual_seed(5)
    points = {"pos": torch.randn(4, 6, 2, generator=gen, dtype=torch.float64)}
    model = build(Group.parse(name), method, points, {"pos": "point"}, "point", (6, 2)).eval()
    assert equivariance_gap(model, points, None, gen) < 1e-10


def test_bare_base_model_is_not_equivariant():
    """The same check on the unsymmetrized base model fails clearly."""
    gen = torch.Generator().manual_seed(6)
    inputs, mask = point_clouds(4, 5, 3, gen)
    group = Group.parse("S_n x O(d)", dim=3)
    model = build(group, "ga", inputs, POINT_KINDS, "point", (5, 3)).eval()
    h = group.sample(4, 5, mask, gen, torch.float64)
    moved, moved_mask = transform_inputs(group, h, inputs, POINT_KINDS, mask)
    base = model.base
    expected = group.act(h, base({**inputs, "mask": mask}), "point", mask)
    gap = (base({**moved, "mask": moved_mask}) - expected).abs().max()
    assert float(gap) > 1e-2


def test_equivariant_in_training_mode_with_straight_through():
    """Training mode adds the straight-through terms; values (and equivariance) are unchanged."""
    gen = torch.Generator().manual_seed(7)
    inputs, mask = random_graphs(4, 6, gen)
    model = build(Group.parse("S_n"), "ps", inputs, GRAPH_KINDS, "node", (6, 2))
    model.train()
    model.distribution.interface.eval()  # batch statistics differ between the two batches
    model.distribution.train()
    assert equivariance_gap(model, inputs, mask, gen) < 1e-10
