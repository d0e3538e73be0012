"""Canonicalization versus PS on inputs with inner symmetries (PS paper A.4.5).

On a graph whose stabilizer is trivial, canonicalization (PS with η = 0, one sample) is exactly
S_n equivariant. On a graph with automorphisms an equivariant interface must give automorphic
nodes equal scores, the argsort breaks the tie arbitrarily, and the canonicalized MLP gives
automorphic nodes different embeddings: only relaxed equivariance, φ(σ·x) = σa·φ(x) for some
automorphism a, survives. PS with η > 0 averages over the tie-breaks, so automorphic nodes get
embeddings that agree in expectation; the disagreement shrinks like 1/√N.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from workers.symmetry import Group, symmetrize
from workers.symmetry.testing import FlatMLP, random_graphs

SIZE = 6


def star() -> torch.Tensor:
    adj = torch.zeros(SIZE, SIZE, dtype=torch.float64)
    adj[0, 1:] = adj[1:, 0] = 1.0
    return adj


def cycle() -> torch.Tensor:
    adj = torch.zeros(SIZE, SIZE, dtype=torch.float64)
    for i in range(SIZE):
        adj[i, (i + 1) % SIZE] = adj[(i + 1) % SIZE, i] = 1.0
    return adj


def complete_bipartite() -> torch.Tensor:
    """K_{2,4}: stabilizer S_2 × S_4, two orbits the interface can tell apart by degree."""
    adj = torch.zeros(SIZE, SIZE, dtype=torch.float64)
    adj[:2, 2:] = 1.0
    return adj + adj.T


GRAPHS = {"star": star, "cycle": cycle, "bipartite": complete_bipartite}


def automorphisms(adj: torch.Tensor) -> list[torch.Tensor]:
    """All permutations p (index form) with adj[p][:, p] = adj, by brute force."""
    found = []
    for perm in itertools.permutations(range(adj.shape[0])):
        p = torch.tensor(perm)
        if torch.equal(adj[p][:, p], adj):
            found.append(p)
    return found


def orbits(adj: torch.Tensor) -> list[list[int]]:
    autos = automorphisms(adj)
    seen, out = set(), []
    for node in range(adj.shape[0]):
        if node not in seen:
            orbit = sorted({int(p[node]) for p in autos})
            seen.update(orbit)
            out.append(orbit)
    return out


def orbit_gap(embedding: torch.Tensor, node_orbits: list[list[int]]) -> float:
    """Largest spread of the embeddings (n,) within one automorphism orbit."""
    return max(float(embedding[o].max() - embedding[o].min()) for o in node_orbits)


def mlp_model(method: str, samples: int = 1, **options):
    """An MLP f: R^{n×n} → R^n symmetrized over S_n with the default GIN interface."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(51)
        base = FlatMLP({"adj": (SIZE, SIZE, 1)}, (SIZE,))
        model = symmetrize(base, Group.parse("S_n"), method, {"adj": "pair"}, "node", samples, samples, **options)
    return model.double().eval()


def test_canonicalization_is_exact_on_inputs_with_trivial_stabilizer():
    gen = torch.Generator().manual_seed(52)
    inputs, mask = random_graphs(6, SIZE, gen)  # distinct random node features: no automorphisms
    kinds = {"adj": "pair", "x": "node"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(53)
        base = FlatMLP({"adj": (SIZE, SIZE, 1), "x": (SIZE, 2)}, (SIZE,))
        model = symmetrize(base, Group.parse("S_n"), "canonical", kinds, "node", node_channels={"x": 2})
    model = model.double().eval()
    group = model.group
    with torch.no_grad():
        out = model(inputs, mask).output
        for _ in range(5):
            h = group.sample(6, SIZE, mask, gen)
            moved = {k: group.act(h, v, kinds[k], mask) for k, v in inputs.items()}
            assert float((model(moved, mask).output - group.act(h, out, "node")).abs().max()) < 1e-10


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_canonicalization_separates_automorphic_nodes(graph):
    adj = GRAPHS[graph]()
    node_orbits = orbits(adj)
    assert any(len(o) > 1 for o in node_orbits)  # the stabilizer is non-trivial
    inputs = {"adj": adj[None, :, :, None]}
    model = mlp_model("canonical")
    with torch.no_grad():
        out = model(inputs).output[0]  # (n,)
        # the interface cannot tell automorphic nodes apart: their scores tie (up to rounding)
        scores = model.distribution.interface(inputs, model.draw_noise(inputs), None)["scores"][0]
        assert orbit_gap(scores, node_orbits) < 1e-9
    # h·x = x for an automorphism h, so an equivariant φ would need h·φ(x) = φ(h·x) = φ(x)
    autos = automorphisms(adj)
    violations = [float((out[h] - out).abs().max()) for h in autos]
    assert max(violations) > 0.05
    assert orbit_gap(out, node_orbits) > 0.05


def test_canonicalization_is_relaxed_equivariant_on_the_star():
    """φ(σ·x) = σa·φ(x) for some automorphism a (here: the centre matches, the leaves agree as a
    multiset), but not σ·φ(x) itself for every σ."""
    adj = star()
    model = mlp_model("canonical")
    group = model.group
    gen = torch.Generator().manual_seed(54)
    sigmas = group.sample(20, SIZE, generator=gen)
    inputs = {"adj": adj[None, :, :, None].expand(20, -1, -1, -1)}
    with torch.no_grad():
        out = model(inputs).output  # (20, n), all rows equal
        moved_out = model({"adj": group.act(sigmas, inputs["adj"], "pair")}).output
    expected = group.act(sigmas, out, "node")  # σ·φ(x)
    centre = invert_index(sigmas.perm)[:, 0]  # where σ puts node 0
    rows = torch.arange(20)
    assert torch.allclose(moved_out[rows, centre], expected[rows, centre], atol=1e-12)
    leaves = torch.ones(20, SIZE, dtype=torch.bool)
    leaves[rows, centre] = False
    assert torch.allclose(torch.sort(moved_out[leaves].view(20, -1), 1).values,
                          torch.sort(expected[leaves].view(20, -1), 1).values, atol=1e-12)
    assert float((moved_out - expected).abs().max()) > 0.05


def invert_index(perm: torch.Tensor) -> torch.Tensor:
    return torch.argsort(perm, dim=1)


@pytest.mark.parametrize("graph", list(GRAPHS))
def test_probabilistic_symmetrization_agrees_on_automorphic_nodes_in_expectation(graph):
    adj = GRAPHS[graph]()
    node_orbits = orbits(adj)
    inputs = {"adj": adj[None, :, :, None]}
    gen = torch.Generator().manual_seed(55)
    with torch.no_grad():
        canonical = orbit_gap(mlp_model("canonical")(inputs).output[0], node_orbits)
        few = orbit_gap(mlp_model("ps", 20, noise_scale=1.0)(inputs, generator=gen).output[0], node_orbits)
        many = orbit_gap(mlp_model("ps", 2_000, noise_scale=1.0)(inputs, generator=gen).output[0], node_orbits)
    assert many < 0.2 * canonical, (many, canonical)
    assert many < few, (many, few)
