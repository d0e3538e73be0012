"""The models package's interface networks q_ω: each equivariance claim checked in isolation (in
float64, on padded batches whose padding the permutations move around), a check that the same
measurement flags a broken network, and each one driving an exactly equivariant PS model."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.symmetry.helpers import GRAPH_KINDS
from workers.models.interfaces import GINInterface, VectorNeurons
from workers.symmetry import Group, GroupElement, coupled_equivariance_gap, symmetrize
from workers.symmetry.orthogonal import haar_orthogonal
from workers.symmetry.testing import padded_mask, random_graphs, seeded_mlp

PERMUTATIONS = Group.parse("S_n")
POINT_KINDS = {"pos": "point", "vel": "vector", "charge": "node"}


def seeded(build, seed: int = 0):
    """A module built under ``seed`` (global random state untouched), in float64."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().double()


def any_permutation(rows: int, size: int, gen: torch.Generator) -> GroupElement:
    """Uniform permutations of all n slots, so padded slots move between the real ones."""
    return GroupElement(perm=torch.stack([torch.randperm(size, generator=gen) for _ in range(rows)]))


def permute(g: GroupElement, values: dict, kinds: dict) -> dict:
    return {name: PERMUTATIONS.act(g, value, kinds[name]) for name, value in values.items()}


def graph_batch(rows: int, size: int, gen: torch.Generator):
    inputs, mask = random_graphs(rows, size, gen)
    noise = {"node_noise": torch.rand(rows, size, 2, generator=gen, dtype=torch.float64) * mask[..., None]}
    return inputs, noise, mask


@torch.no_grad()
def gin_permutation_gap(interface, inputs, noise, mask, gen) -> float:
    """max |q(g·x, g·ε)_scores − g·q(x, ε)_scores| for random permutations g of all slots."""
    g = any_permutation(mask.shape[0], mask.shape[1], gen)
    scores = interface(inputs, noise, mask)["scores"]
    moved = interface(permute(g, inputs, GRAPH_KINDS), permute(g, noise, {"node_noise": "node"}),
                      PERMUTATIONS.act(g, mask, "node"))["scores"]
    return float((moved - PERMUTATIONS.act(g, scores, "node")).abs().max())


class PositionalGIN(GINInterface):
    """A broken interface: scores depend on the slot index."""

    def forward(self, inputs, noise, mask):
        scores = super().forward(inputs, noise, mask)["scores"]
        return {"scores": scores + 1e-2 * torch.arange(scores.shape[1], dtype=scores.dtype)}


@settings(max_examples=8, deadline=None)
@given(size=st.integers(3, 9), seed=st.integers(0, 10_000))
def test_gin_scores_permute_with_the_nodes(size, seed):
    gen = torch.Generator().manual_seed(seed)
    inputs, noise, mask = graph_batch(4, size, gen)
    interface = seeded(lambda: GINInterface(node_channels=2)).eval()
    assert gin_permutation_gap(interface, inputs, noise, mask, gen) < 1e-12
    assert gin_permutation_gap(seeded(lambda: PositionalGIN(node_channels=2)).eval(),
                               inputs, noise, mask, gen) > 1e-4  # the same check catches a broken net


def test_gin_padding_has_no_influence():
    """A graph alone and the same graph padded (with junk in its padded slots) get the same scores."""
    gen = torch.Generator().manual_seed(1)
    inputs, noise, mask = graph_batch(1, 5, gen)
    mask = torch.ones(1, 5, dtype=torch.bool)
    interface = seeded(lambda: GINInterface(node_channels=2)).eval()
    alone = interface(inputs, noise, mask)["scores"]
    junk = lambda t, shape: torch.cat([t, torch.rand(*shape, generator=gen, dtype=torch.float64)], 1)  # noqa: E731
    adj = junk(inputs["adj"], (1, 3, 5, 1))
    padded = {"adj": junk(adj.transpose(1, 2), (1, 3, 8, 1)).transpose(1, 2), "x": junk(inputs["x"], (1, 3, 2))}
    padding = torch.arange(8)[None] < 5
    out = interface(padded, {"node_noise": junk(noise["node_noise"], (1, 3, 2))}, padding)["scores"]
    assert torch.allclose(out[:, :5], alone, atol=1e-12, rtol=0)
    assert bool((out[:, 5:] == 0).all())
    assert float(alone.std()) > 1e-6  # the nodes are told apart


def point_batch(rows: int, size: int, dim: int, gen: torch.Generator, least: int = 2):
    mask = padded_mask(rows, size, gen, least=least)
    real = mask[..., None].double()
    draw = lambda *shape: torch.randn(rows, size, *shape, generator=gen, dtype=torch.float64)  # noqa: E731
    inputs = {"pos": draw(dim) * real, "vel": draw(dim) * real, "charge": draw(1).sign() * real}
    noise = {"vector_noise": draw(2, dim) * real[..., None]}
    return inputs, noise, mask


def orthogonal_with_both_signs(rows: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    rot = haar_orthogonal(rows, dim, True, gen, torch.float64)  # (R, d, d), det +1
    rot[1::2, :, 0] *= -1  # every other one a reflection, det −1
    return rot


@torch.no_grad()
def vector_gaps(interface, inputs, noise, mask, gen) -> dict[str, float]:
    """Rotation (O(d), det ±1) and permutation equivariance gaps of scores and vectors."""
    rows, size, dim = inputs["pos"].shape
    out = interface(inputs, noise, mask)
    rot = orthogonal_with_both_signs(rows, dim, gen)
    turn = lambda t: torch.einsum("rij,r...j->r...i", rot, t)  # noqa: E731
    turned = interface({**inputs, "pos": turn(inputs["pos"]), "vel": turn(inputs["vel"])},
                       {"vector_noise": turn(noise["vector_noise"])}, mask)
    g = any_permutation(rows, size, gen)
    kinds = {name: "node" for name in inputs}
    moved = interface(permute(g, inputs, kinds), permute(g, noise, {"vector_noise": "node"}),
                      PERMUTATIONS.act(g, mask, "node"))
    return {
        "rotation_scores": float((turned["scores"] - out["scores"]).abs().max()),
        "rotation_vectors": float((turned["vectors"] - rot @ out["vectors"]).abs().max()),
        "permutation_scores": float((moved["scores"] - PERMUTATIONS.act(g, out["scores"], "node")).abs().max()),
        "permutation_vectors": float((moved["vectors"] - out["vectors"]).abs().max()),
    }


class OffsetVectorNeurons(VectorNeurons):
    """A broken interface: a fixed vector added to every column (not rotation equivariant)."""

    def forward(self, inputs, noise, mask):
        out = super().forward(inputs, noise, mask)
        return {**out, "vectors": out["vectors"] + 1e-2}


@settings(max_examples=8, deadline=None)
@given(dim=st.sampled_from([2, 3, 4]), size=st.integers(2, 8), knn=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_vector_neurons_equivariance(dim, size, knn, seed):
    gen = torch.Generator().manual_seed(seed)
    inputs, noise, mask = point_batch(4, size, dim, gen)
    interface = seeded(lambda: VectorNeurons(dim, ["pos", "vel"], {"charge": 1}, knn=knn)).eval()
    gaps = vector_gaps(interface, inputs, noise, mask, gen)
    assert max(gaps.values()) < 1e-12, gaps
    out = interface(inputs, noise, mask)
    assert out["vectors"].shape == (4, dim, dim) and out["scores"].shape == (4, size)
    assert bool((out["scores"][~mask] == 0).all())


@pytest.mark.parametrize("dim", [2, 3, 4])
def test_the_vector_checks_catch_a_broken_network(dim):
    gen = torch.Generator().manual_seed(dim)
    inputs, noise, mask = point_batch(4, 6, dim, gen)
    broken = seeded(lambda: OffsetVectorNeurons(dim, ["pos", "vel"], {"charge": 1})).eval()
    gaps = vector_gaps(broken, inputs, noise, mask, gen)
    assert gaps["rotation_vectors"] > 1e-4 and gaps["permutation_vectors"] < 1e-12


def test_vector_neurons_outputs_are_full_rank():
    """Gram-Schmidt needs d independent vectors; a collapsed head would make it ill-defined."""
    gen = torch.Generator().manual_seed(3)
    inputs, noise, mask = point_batch(8, 5, 3, gen, least=4)
    interface = seeded(lambda: VectorNeurons(3, ["pos", "vel"], {"charge": 1})).eval()
    singular = torch.linalg.svdvals(interface(inputs, noise, mask)["vectors"])  # (R, d)
    assert float((singular[:, -1] / singular[:, 0]).min()) > 1e-4


def graph_model():
    inputs, mask = random_graphs(4, 7, torch.Generator().manual_seed(4))
    interface = seeded(lambda: GINInterface(node_channels=2), seed=1)
    model = symmetrize(seeded_mlp({"adj": (7, 7, 1), "x": (7, 2)}, (7, 3), 0), PERMUTATIONS, "ps", GRAPH_KINDS,
                       "node", train_samples=3, eval_samples=3, interface=interface)
    return model.double(), inputs, mask


def point_model():
    gen = torch.Generator().manual_seed(5)
    inputs, _, mask = point_batch(4, 5, 3, gen, least=4)
    interface = seeded(lambda: VectorNeurons(3, ["pos", "vel"], {"charge": 1}), seed=1)
    shapes = {"pos": (5, 3), "vel": (5, 3), "charge": (5, 1)}
    model = symmetrize(seeded_mlp(shapes, (5, 3), 0), Group.parse("S_n x E(d)", dim=3), "ps", POINT_KINDS,
                       "point", train_samples=3, eval_samples=3, interface=interface)
    return model.double(), inputs, mask


@pytest.mark.parametrize("build", [graph_model, point_model], ids=["gin_S_n", "vector_neurons_S_n_x_E3"])
def test_ps_with_the_interface_is_exactly_equivariant(build):
    model, inputs, mask = build()
    gen = torch.Generator().manual_seed(6)
    assert coupled_equivariance_gap(model.eval(), inputs, mask, gen) < 1e-9


@pytest.mark.parametrize("build", [graph_model, point_model], ids=["gin_S_n", "vector_neurons_S_n_x_E3"])
def test_gradients_reach_the_interface(build):
    model, inputs, mask = build()
    result = model.train()(inputs, mask, generator=torch.Generator().manual_seed(7))
    (result.output.square().sum() + result.penalty).backward()
    for name, parameter in model.distribution.interface.named_parameters():
        assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), name
