"""Finite groups given by their elements or generators (``FiniteGroup``): closure, the size limit, refusals,
and exact equivariance of GA, PS and canonicalization (with the regular-representation scorer) for a finite
rotation group of 3-D space on point clouds, a finite group of node permutations on graphs, and a group whose
elements permute nodes and reflect coordinates together; C_k and D_k are instances."""

from __future__ import annotations

import math

import pytest
import torch

from workers.symmetry import FiniteGroup, Group, RegularScorer, symmetrize
from workers.symmetry.testing import assert_equivariant, random_inputs, seeded_mlp

QUARTER_Z = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # 90° about z
QUARTER_X = [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]  # 90° about x
CUBE = FiniteGroup.from_generators("O_cube", matrices=[QUARTER_Z, QUARTER_X])  # the rotations of the cube
RING = FiniteGroup.from_generators("C_6 nodes", node_permutations=[[1, 2, 3, 4, 5, 0]])  # cyclic shifts of 6 nodes


def _hexagonal() -> FiniteGroup:
    """C_6 about z in 3-D (entries cos 60°, not exactly representable)."""
    c, s = math.cos(math.pi / 3), math.sin(math.pi / 3)
    return FiniteGroup.from_generators("C_6 z", matrices=[[[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]])


def _swap_and_flip() -> FiniteGroup:
    """Z_2 acting at once by swapping nodes 0 and 1 and reflecting the first coordinate."""
    return FiniteGroup.from_generators("swap-flip", matrices=[[[-1.0, 0.0], [0.0, 1.0]]],
                                       node_permutations=[[1, 0, 2, 3, 4]])


def test_generators_close_into_the_group():
    assert CUBE.finite == 24 and CUBE.dim == 3 and CUBE.special and not CUBE.permutes_nodes
    assert RING.finite == 6 and RING.nodes == 6 and RING.permutes_nodes and RING.dim is None
    assert _hexagonal().finite == 6 and _swap_and_flip().finite == 2
    assert torch.equal(CUBE.elements[0], torch.eye(3, dtype=torch.float64))  # the identity first
    dihedral = FiniteGroup.from_generators("D", matrices=Group.parse("D_4").elements[[1, 4]])
    mine = {tuple(m.flatten().tolist()) for m in dihedral.elements}
    assert mine == {tuple(m.flatten().tolist()) for m in Group.parse("D_4").elements}
    assert CUBE.kinds == {"point", "vector"} and RING.kinds == {"node", "pair", "point", "vector"}
    assert KLEIN.kinds == {"point", "vector", "image"} and KLEIN.finite == 4
    assert Group.parse("C_4").kinds == {"point", "vector", "image"}  # C_k: a FiniteGroup of 2-D matrices
    assert isinstance(Group.parse("D_k", order=3), FiniteGroup)


def _rotation(axis: list[float], angle: float) -> torch.Tensor:
    """Rodrigues: the rotation by ``angle`` about ``axis``."""
    k = torch.tensor(axis, dtype=torch.float64) / torch.tensor(axis, dtype=torch.float64).norm()
    cross = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def test_rounding_never_splits_an_element():
    """Generators with irrational entries: the icosahedron's rotations (a 5-fold and a 3-fold axis) are 60, a
    one-degree rotation makes 360, however the products' rounding falls."""
    golden = (1 + math.sqrt(5)) / 2
    icosahedral = FiniteGroup.from_generators("I", matrices=[_rotation([0.0, 1.0, golden], 2 * math.pi / 5),
                                                             _rotation([1.0, 1.0, 1.0], 2 * math.pi / 3)])
    assert icosahedral.finite == 60 and icosahedral.special
    degree = math.pi / 180
    turn = FiniteGroup.from_generators("C_360", matrices=[[[math.cos(degree), -math.sin(degree)],
                                                           [math.sin(degree), math.cos(degree)]]])
    assert turn.finite == 360
    assert torch.equal(torch.sort(turn._inverse).values, torch.arange(360))  # inversion is a bijection
    with pytest.raises(ValueError, match="element 1 repeats an earlier one"):
        FiniteGroup("twice", matrices=torch.eye(2, dtype=torch.float64).expand(2, -1, -1))


def test_products_and_inverses_follow_the_action():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(8, 6, 3, generator=gen, dtype=torch.float64)
    for group in (CUBE, RING):
        g, h = group.sample(8, 6, generator=gen, dtype=torch.float64), group.sample(8, 6, generator=gen,
                                                                                    dtype=torch.float64)
        both = group.act(group.compose(g, h), x, "point")
        assert torch.allclose(both, group.act(g, group.act(h, x, "point"), "point"), atol=1e-12)
        back = group.act(group.inverse(g), group.act(g, x, "point"), "point")
        assert torch.allclose(back, x, atol=1e-12)
        index = group.finite_index(group.compose(g, h))
        assert torch.equal(index, group._table[group.finite_index(g), group.finite_index(h)])


def test_more_elements_than_the_limit_is_refused():
    with pytest.raises(ValueError, match=r"more than limit=10 elements; allowed: .*raise limit"):
        FiniteGroup.from_generators("too big", matrices=[QUARTER_Z, QUARTER_X], limit=10)
    assert FiniteGroup.from_generators("fits", matrices=[QUARTER_Z, QUARTER_X], limit=24).finite == 24


@pytest.mark.parametrize("arguments,message", [
    ({}, "expected matrices and/or node_permutations"),
    ({"matrices": [[[1.0, 1.0], [0.0, 1.0]]]}, "not orthogonal"),
    ({"node_permutations": [[0, 0, 1]]}, "permutations of 0..n-1"),
    ({"matrices": [[[1.0]]], "node_permutations": [[0, 1], [1, 0]]}, "one of each per element"),
])
def test_bad_generators_are_refused_in_one_line(arguments, message):
    with pytest.raises(ValueError, match=message) as error:
        FiniteGroup.from_generators("bad", **arguments)
    assert "\n" not in str(error.value)


def test_elements_must_be_a_group():
    with pytest.raises(ValueError, match="not closed under products"):
        FiniteGroup("half", matrices=torch.stack([torch.eye(2, dtype=torch.float64),
                                                  torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)]))
    with pytest.raises(ValueError, match="element 0 must be the identity"):
        FiniteGroup("shifted", node_permutations=[[1, 0], [0, 1]])


def _model(group: Group, method: str, inputs: dict, kinds: dict, output_kind: str, out_shape: tuple):
    shapes = {k: tuple(v.shape[1:]) for k, v in inputs.items()}
    interface = RegularScorer(group, seeded_mlp(shapes, (1,), 1), kinds) if method != "ga" else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return symmetrize(seeded_mlp(shapes, out_shape, 0), group, method, kinds, output_kind, 4, 4,
                          interface=interface)


KLEIN = FiniteGroup.from_generators("V_4", matrices=[[[-1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, -1.0]]])

CASES = {  # group -> (input kinds, output kind, output shape), 6 nodes in 3-D (5 in 2-D for swap-flip)
    "cube": (CUBE, {"pos": "point", "vel": "vector"}, "vector", (6, 3)),
    "hexagonal": (_hexagonal(), {"pos": "point", "vel": "vector"}, "point", (6, 3)),
    "ring-node": (RING, {"adj": "pair", "x": "node"}, "node", (6, 2)),
    "ring-invariant": (RING, {"adj": "pair", "x": "node"}, "invariant", (3,)),
    "swap-flip": (_swap_and_flip(), {"pos": "point", "x": "node"}, "point", (5, 2)),
    "klein-image": (KLEIN, {"image": "image"}, "invariant", (3,)),  # 2-D matrices act on images too
    "klein-image-out": (KLEIN, {"image": "image"}, "image", (8, 8, 2)),
}


@pytest.mark.parametrize("method", ["ga", "ps", "canonical", "ps_fixed_noise"])
@pytest.mark.parametrize("case", list(CASES))
def test_symmetrizations_over_finite_groups_are_exact(case, method):
    group, kinds, output_kind, out_shape = CASES[case]
    dim = group.dim or 3
    inputs, mask = random_inputs(kinds, batch=6, nodes=out_shape[0] if output_kind != "invariant" else 6, dim=dim,
                                 generator=torch.Generator().manual_seed(4))
    model = _model(group, method, inputs, kinds, output_kind, out_shape)
    assert assert_equivariant(model, inputs, mask) < 1e-9
    bare = model.base
    with pytest.raises(AssertionError, match=f"not equivariant under {group.name}"):
        assert_equivariant(bare, inputs, mask, group=group, input_kinds=kinds, output_kind=output_kind)


def test_ps_over_a_node_group_trains_its_scorer():
    """The straight-through gradient reaches the scorer through Σ_j w_j (g_j·x) (node permutations)."""
    kinds = {"adj": "pair", "x": "node"}
    inputs, mask = random_inputs(kinds, batch=4, nodes=6, dim=3, generator=torch.Generator().manual_seed(5))
    model = _model(RING, "ps", inputs, kinds, "node", (6, 2)).double().train()
    out = model(inputs, mask, generator=torch.Generator().manual_seed(6))
    out.output.square().sum().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.distribution.interface.parameters())


def test_a_node_group_refuses_inputs_of_another_size():
    with pytest.raises(ValueError, match="permutes 6 node slots and the inputs have 5; allowed: inputs with 6"):
        RING.sample(2, 5)


def test_fa_over_a_finite_group_names_the_key():
    with pytest.raises(ValueError, match=r"symmetrizer\.method='fa' has no frame for group O_cube"):
        _model(CUBE, "fa", *random_inputs({"pos": "point"}, batch=2, nodes=4)[:1], {"pos": "point"}, "point", (4, 3))
