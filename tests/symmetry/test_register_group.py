"""A group added from outside the library through the public hook ``register_group`` (the recipe "How to add a
group" of docs/architecture.md): ``Group.parse`` knows its spelling and the keys it reads, the library's methods
symmetrize a real model over it, and ``assert_equivariant`` finds the result exact; a spelling already taken
is refused and an unknown one lists the registered ones."""

from __future__ import annotations

import re

import pytest
import torch

from workers.symmetry import (
    FiniteGroup,
    Group,
    GroupFamily,
    RegularScorer,
    group_keys,
    group_spellings,
    register_group,
    symmetrize,
    unregister_group,
)
from workers.symmetry.testing import assert_equivariant, random_inputs, seeded_mlp


def point_reflection(dim: int = 3) -> FiniteGroup:
    """{I, −I} in d dimensions: a toy group, built from its one generator."""
    return FiniteGroup.from_generators(f"Z_2(-I, {dim})", matrices=[-torch.eye(dim, dtype=torch.float64)])


class ReversalFamily(GroupFamily):
    """``Rev_n`` (``Rev_k`` with group.nodes): reversing the order of n nodes — a family with its own key."""

    spellings = ("Rev_k",)
    keys = ("nodes",)

    def matches(self, name: str) -> bool:
        return re.fullmatch(r"Rev_(\d+|k)", name.replace(" ", "")) is not None

    def build(self, name: str, nodes: int | None = None, **keys) -> Group:
        spelled = name.replace(" ", "").removeprefix("Rev_")
        count = nodes if spelled == "k" else int(spelled)
        if not isinstance(count, int) or count < 2:
            raise ValueError(f"group.nodes={count!r} is not allowed for {name}; expected an integer ≥ 2")
        group = FiniteGroup.from_generators(f"Rev_{count}", node_permutations=[list(reversed(range(count)))])
        group.reads = frozenset({"nodes"}) if spelled == "k" else frozenset()
        return group


@pytest.fixture
def registered():
    """The toy groups, registered for the test's duration only."""
    families = [register_group("Z2(-I)", point_reflection), register_group(ReversalFamily())]
    yield
    for family in families:
        unregister_group(family)


def test_the_hook_names_the_groups_and_their_keys(registered):
    group = Group.parse("Z2(-I)", dim=2)
    assert group.name == "Z_2(-I, 2)" and group.finite == 2 and group.dim == 2 and group.reads == {"dim"}
    assert Group.parse("Z2 (-I)").dim == 3  # spaces are ignored; the function's default applies
    reversal = Group.parse("Rev_k", nodes=5)
    assert reversal.name == "Rev_5" and reversal.nodes == 5 and reversal.reads == {"nodes"}
    assert Group.parse("Rev_4").reads == frozenset()
    assert group_spellings()[-2:] == ("Z2(-I)", "Rev_k") and {"dim", "order", "nodes"} <= set(group_keys())
    with pytest.raises(ValueError, match=r"group\.nodes=1 is not allowed for Rev_k"):
        Group.parse("Rev_k", nodes=1)


def test_a_taken_spelling_is_refused_and_an_unknown_one_lists_the_registered(registered):
    with pytest.raises(ValueError, match=r"group\.name='C_5' is already a group \(C_k, D_k\)"):
        register_group("C_5", point_reflection)
    with pytest.raises(ValueError, match=r"group\.name='Q_8' is not a group; allowed: S_n, .*, Z2\(-I\), Rev_k$"):
        Group.parse("Q_8")


def test_unregistering_forgets_the_spelling():
    family = register_group("Z2(-I)", point_reflection)
    unregister_group(family)
    with pytest.raises(ValueError, match="is not a group"):
        Group.parse("Z2(-I)")


@pytest.mark.parametrize("method", ["ga", "ps", "canonical"])
@pytest.mark.parametrize("name,kinds,output_kind,out_shape", [
    ("Z2(-I)", {"pos": "point", "vel": "vector"}, "vector", (5, 3)),
    ("Rev_5", {"adj": "pair", "x": "node"}, "node", (5, 2)),
])
def test_a_registered_group_symmetrizes_a_real_model_exactly(registered, name, kinds, output_kind, out_shape, method):
    group = Group.parse(name, dim=3)
    inputs, mask = random_inputs(kinds, batch=6, nodes=5, dim=3, generator=torch.Generator().manual_seed(9))
    shapes = {k: tuple(v.shape[1:]) for k, v in inputs.items()}
    interface = RegularScorer(group, seeded_mlp(shapes, (1,), 1), kinds) if method != "ga" else None
    model = symmetrize(seeded_mlp(shapes, out_shape, 0), group, method, kinds, output_kind, 4, 4, interface=interface)
    assert assert_equivariant(model, inputs, mask) < 1e-9
    with pytest.raises(AssertionError, match=re.escape(f"not equivariant under {group.name}")):
        assert_equivariant(model.base, inputs, mask, group=group, input_kinds=kinds, output_kind=output_kind)
