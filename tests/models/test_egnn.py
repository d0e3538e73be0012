"""EGNN is E(d) × S_n equivariant in any dimension; the plain GNN is only S_n equivariant."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.models.helpers import nbody, random_batch, seeded
from workers.models.gnn import EGNN, GNN
from workers.models.spec import FieldSpec

PARTICLES = 6


def random_motion(dim: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random orthogonal matrix (d, d) — a reflection half of the time — and a translation (d,)."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.rand(1, generator=generator) < 0.5:
        q[:, 0] = -q[:, 0]
    return q, 3 * torch.randn(dim, generator=generator, dtype=torch.float64)


def moved(batch: dict, rotation: torch.Tensor, shift: torch.Tensor, perm: torch.Tensor) -> dict:
    """g·x: rotate/reflect positions and velocities, translate real positions, permute particles."""
    real = batch["mask"][..., None].double()
    out = {"pos": (batch["pos"] @ rotation.T + shift) * real, "vel": batch["vel"] @ rotation.T,
           "charges": batch["charges"], "mask": batch["mask"]}
    return {name: value[:, perm] for name, value in out.items()}


def acted_output(out: torch.Tensor, kind: str, rotation, shift, perm, mask) -> torch.Tensor:
    """g·f(x) for an output of ``kind``."""
    if kind == "invariant":
        return out
    if kind == "point":
        out = (out @ rotation.T + shift) * mask[..., None].double()
    elif kind == "vector":
        out = out @ rotation.T
    return out[:, perm]


def equivariance_error(cls, dim: int, kind: str, seed: int, rotate: bool = True) -> float:
    inputs, _ = nbody(dim, PARTICLES)
    output = {"point": FieldSpec("point", (PARTICLES, dim)), "vector": FieldSpec("vector", (PARTICLES, dim)),
              "node": FieldSpec("node", (PARTICLES, 2)), "invariant": FieldSpec("invariant", (3,))}[kind]
    model = seeded(cls, {"hidden": 16}, inputs, output, seed).double()
    batch = random_batch(inputs, rows=4, seed=seed, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed + 1)
    rotation, shift = random_motion(dim, generator)
    if not rotate:
        rotation, shift = torch.eye(dim, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64)
    perm = torch.randperm(PARTICLES, generator=generator)
    with torch.no_grad():
        out, out_moved = model(batch), model(moved(batch, rotation, shift, perm))
    return float((out_moved - acted_output(out, kind, rotation, shift, perm, batch["mask"])).abs().max())


@settings(max_examples=24, deadline=None)
@given(dim=st.sampled_from([2, 3, 5]), kind=st.sampled_from(["point", "vector", "node", "invariant"]),
       seed=st.integers(0, 10_000))
def test_egnn_is_euclidean_and_permutation_equivariant(dim, kind, seed):
    assert equivariance_error(EGNN, dim, kind, seed) < 1e-9


@settings(max_examples=6, deadline=None)
@given(dim=st.sampled_from([2, 3, 5]), seed=st.integers(0, 10_000))
def test_gnn_is_permutation_equivariant_but_not_rotation_equivariant(dim, seed):
    assert equivariance_error(GNN, dim, "point", seed, rotate=False) < 1e-9
    assert equivariance_error(GNN, dim, "point", seed) > 1e-3


def test_egnn_moves_particles_by_their_velocity_and_interactions():
    """The point output is not just the input positions: the layers move the particles."""
    inputs, output = nbody(3, PARTICLES)
    model = seeded(EGNN, {"hidden": 16}, inputs, output).double()
    batch = random_batch(inputs, rows=2, seed=11, dtype=torch.float64)
    with torch.no_grad():
        displacement = model(batch) - batch["pos"]
    assert displacement[batch["mask"]].abs().max() > 1e-4
