"""The library's own equivariance checks (``workers.symmetry.testing``): they pass for exact
symmetrizations, fail for models that are not equivariant, and build inputs of every kind."""

from __future__ import annotations

import re

import pytest
import torch

from workers.symmetry import Group, RegularScorer, Unsymmetrized, symmetrize
from workers.symmetry.testing import FlatMLP, assert_equivariant, equivariance_gap, random_inputs, seeded_mlp

LAYOUTS = {  # group -> (input kinds, output kind, output shape for 6 nodes in 3-D)
    "S_n": ({"adj": "pair", "x": "node"}, "node", (6, 3)),
    "S_n x E(d)": ({"pos": "point", "vel": "vector", "q": "node"}, "point", (6, 3)),
    "SO(d)": ({"pos": "point"}, "vector", (6, 3)),
    "D_4": ({"image": "image"}, "invariant", (2,)),
}


def symmetrized(name: str, method: str, dtype=torch.float32):
    kinds, output_kind, out_shape = LAYOUTS[name]
    group = Group.parse(name, dim=3)
    inputs, mask = random_inputs(kinds, batch=6, nodes=6, dim=3, generator=torch.Generator().manual_seed(2),
                                 dtype=dtype)
    shapes = {k: tuple(v.shape[1:]) for k, v in inputs.items()}
    options = {}
    if group.finite is not None and method != "ga":
        options["interface"] = RegularScorer(group, seeded_mlp(shapes, (1,), 1), kinds)
    if group.permutations and not group.has_matrix and method not in ("ga", "fa"):
        options["node_channels"] = {"x": 2}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = symmetrize(seeded_mlp(shapes, out_shape, 0), group, method, kinds, output_kind, 4, 4, **options)
    return model.to(dtype), inputs, mask


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("method", ["ps", "ga", "canonical"])
def test_exact_symmetrizations_pass_in_float64(name, method):
    model, inputs, mask = symmetrized(name, method)
    gap = assert_equivariant(model, inputs, mask)  # float32 model and inputs, checked on a float64 copy
    assert 0 <= gap < 1e-9
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is left as it was


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_the_bare_model_fails_with_its_gap_in_the_message(name):
    kinds, output_kind, out_shape = LAYOUTS[name]
    group = Group.parse(name, dim=3)
    inputs, mask = random_inputs(kinds, batch=6, nodes=6, dim=3)
    bare = Unsymmetrized(FlatMLP({k: tuple(v.shape[1:]) for k, v in inputs.items()}, out_shape), group, kinds,
                         output_kind).double()
    message = rf"not equivariant under {re.escape(group.name)}: .* = [0-9.e+-]+ > 1\.0e-09"
    with pytest.raises(AssertionError, match=message):
        assert_equivariant(bare, inputs, mask)
    assert equivariance_gap(bare, inputs, mask) > 1e-3


def test_any_callable_with_a_group_is_checked():
    """A hand-written E(3)-equivariant map passes; the same map plus a fixed offset does not."""
    kinds = {"pos": "point"}
    inputs, mask = random_inputs(kinds, batch=5, nodes=4, dim=3)
    group = Group.parse("E(d)", dim=3)

    def towards_centroid(x):  # x_i + 0.5 (c − x_i): commutes with rotations, reflections, translations
        pos, weight = x["pos"], x["mask"].to(x["pos"].dtype)[..., None]
        centre = (pos * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True)
        return (pos + 0.5 * (centre - pos)) * weight

    options = dict(group=group, input_kinds=kinds, output_kind="point")
    assert assert_equivariant(towards_centroid, inputs, mask, **options) < 1e-12
    with pytest.raises(AssertionError, match="not equivariant under E"):
        assert_equivariant(lambda x: towards_centroid(x) + 1.0, inputs, mask, **options)
    with pytest.raises(ValueError, match="needs group, input_kinds and output_kind"):
        equivariance_gap(towards_centroid, inputs, mask)


def test_float32_tolerance_and_rtol():
    model, inputs, mask = symmetrized("S_n x E(d)", "ga")
    assert assert_equivariant(model, inputs, mask, dtype=None) < 1e-4  # float32: default atol 1e-4
    with pytest.raises(AssertionError):
        assert_equivariant(model, inputs, mask, dtype=None, atol=0.0)  # float32 rounding is not zero
    assert assert_equivariant(model, inputs, mask, dtype=None, atol=0.0, rtol=1e-4) < 1e-4


def test_random_inputs_of_every_kind():
    kinds = {"a": "pair", "x": "node", "p": "point", "v": "vector", "i": "image", "z": "invariant"}
    inputs, mask = random_inputs(kinds, batch=4, nodes=5, dim=2, channels=3, image_size=6)
    assert {k: tuple(v.shape) for k, v in inputs.items()} == {
        "a": (4, 5, 5, 1), "x": (4, 5, 3), "p": (4, 5, 2), "v": (4, 5, 2), "i": (4, 6, 6, 3), "z": (4, 3)}
    assert mask.shape == (4, 5) and bool(mask[0].all()) and int(mask.sum(1).min()) >= 3  # d + 1 points
    for name in ("a", "x", "p", "v"):
        padding = ~mask
        assert not inputs[name][padding].any()
    assert torch.equal(inputs["a"], inputs["a"].transpose(1, 2))
    assert random_inputs({"i": "image"})[1] is None
    again, _ = random_inputs(kinds, batch=4, nodes=5, dim=2, channels=3, image_size=6)
    assert all(torch.equal(inputs[k], again[k]) for k in kinds)  # seeded by default
    with pytest.raises(ValueError, match="input 'q' has kind 'edge'; allowed: node, pair"):
        random_inputs({"q": "edge"})


@pytest.mark.parametrize("name", ["E(d)", "SE(d)", "S_n x E(d)"])
def test_samples_average_to_the_output_with_translations(name):
    """For point outputs under groups with translations each sample carries the centroid back."""
    kinds = {"pos": "point", "vel": "vector"}
    group = Group.parse(name, dim=3)
    inputs, mask = random_inputs(kinds, batch=4, nodes=5, dim=3)
    inputs["pos"] = inputs["pos"] + 10.0 * mask[..., None]  # far from the origin
    model = symmetrize(seeded_mlp({k: tuple(v.shape[1:]) for k, v in inputs.items()}, (5, 3), 0), group, "ga",
                       kinds, "point", 4, 4).double().eval()
    with torch.no_grad():
        out = model(inputs, mask)
    assert torch.allclose(out.samples.mean(1), out.output, atol=1e-12)
    assert not out.samples[:, 0][~mask].any()  # padded nodes stay zero in every sample
    assert float(out.output[mask].mean()) > 5.0  # the centroid is in the output
