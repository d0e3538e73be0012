"""Star-and-planets gravity: the GATr n-body problem with REMUL's rotation-limited test sets.

A system is one star (mass log-uniform in [1, 10], at the origin, at rest) and ``n_planets``
planets (default 3: REMUL's "four objects per sample", GATr's ``num_planets=3``; masses
log-uniform in [0.01, 0.1], uniform in area over the annulus 0.1 ≤ r ≤ 1 of the x–y plane, speed
sqrt(M/r) of a circular orbit, clockwise or counter-clockwise with probability ½ each, plus
N(0, 0.01²) noise on each velocity component). Each sample is then permuted (uniform random
order), rotated (see below) and translated (N(0, 20²) per coordinate), and integrated with G = 1 by
100 symplectic Euler steps (v += dt·a, then x += dt·v) over time 0.1. Samples in which any body
moves more than 2.0 are rejected and replaced by fresh draws. Input: positions, velocities and
masses at t = 0; target: positions at t = 0.1.

Rotation sets (REMUL, appendix B.1): instead of GATr's Haar-random rotation, every sample is
rotated by an angle θ about an axis drawn uniformly from the unit sphere, with θ uniform in
[−10°, 10°] for train, val and test, and |θ| uniform in [90°, 180°] (sign ±1 with probability ½)
for ``test_ood``. A random axis, not the z axis: the un-rotated distribution is invariant under
rotations about z (uniform orbital phase and direction), so z rotations would make the
out-of-distribution set identically distributed to the others. The orbital plane of an
in-distribution sample is therefore tilted by at most 10° from the x–y plane.

Each split draws from its own stream ``numpy.random.default_rng([seed, split index])``, so the
size of one split never changes another.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, NamedTuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from workers.checks import is_int
from workers.tasks.base import Task, require
from workers.tasks.nbody import masked_mse

STAR_MASS = (1.0, 10.0)
PLANET_MASS = (0.01, 0.1)
ORBIT_RADIUS = (0.1, 1.0)
VELOCITY_NOISE = 0.01
SHIFT_STD = 20.0
DURATION = 0.1
STEPS = 100
MAX_DISPLACEMENT = 2.0
IN_DISTRIBUTION_DEGREES = (0.0, 10.0)  # |θ| range
OUT_OF_DISTRIBUTION_DEGREES = (90.0, 180.0)
SPLIT_ANGLES = {"train": IN_DISTRIBUTION_DEGREES, "val": IN_DISTRIBUTION_DEGREES,
                "test": IN_DISTRIBUTION_DEGREES, "test_ood": OUT_OF_DISTRIBUTION_DEGREES}


class Systems(NamedTuple):
    """S gravitational systems."""

    mass: np.ndarray  # (S, n)
    pos: np.ndarray  # (S, n, 3)
    vel: np.ndarray  # (S, n, 3)


def log_uniform(
    rng: np.random.Generator, bounds: tuple[float, float], shape: tuple[int, ...]
) -> np.ndarray:
    """Samples whose logarithm is uniform between the logarithms of ``bounds``."""
    return np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]), size=shape))


def sample_systems(rng: np.random.Generator, count: int, n_planets: int) -> Systems:
    """Star at rest at the origin, planets on near-circular orbits in the x–y plane."""
    star_mass = log_uniform(rng, STAR_MASS, (count, 1))
    planet_mass = log_uniform(rng, PLANET_MASS, (count, n_planets))
    inner, outer = ORBIT_RADIUS
    radius = np.sqrt(rng.uniform(inner**2, outer**2, size=(count, n_planets)))  # uniform in area
    phase = rng.uniform(0.0, 2 * np.pi, size=(count, n_planets))
    direction = rng.choice([-1.0, 1.0], size=(count, n_planets))
    zeros = np.zeros_like(radius)
    planet_pos = np.stack([radius * np.cos(phase), radius * np.sin(phase), zeros], -1)  # (S, p, 3)
    speed = direction * np.sqrt(star_mass / radius)  # (S, p)
    planet_vel = np.stack([-speed * np.sin(phase), speed * np.cos(phase), zeros], -1)  # (S, p, 3)
    planet_vel = planet_vel + rng.normal(0.0, VELOCITY_NOISE, size=planet_vel.shape)
    star = np.zeros((count, 1, 3))
    mass = np.concatenate([star_mass, planet_mass], 1)  # (S, n)
    return Systems(mass, np.concatenate([star, planet_pos], 1), np.concatenate([star, planet_vel], 1))


def random_rotations(rng: np.random.Generator, count: int, degrees: tuple[float, float]) -> np.ndarray:
    """Rotations (count, 3, 3) by ±|θ|, |θ| uniform in ``degrees``, about uniform random axes."""
    axis = rng.normal(size=(count, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.deg2rad(rng.uniform(*degrees, size=count)) * rng.choice([-1.0, 1.0], size=count)
    return Rotation.from_rotvec(axis * angle[:, None]).as_matrix()


def transform(rng: np.random.Generator, systems: Systems, degrees: tuple[float, float]) -> Systems:
    """Random body order, a rotation with angle in ``degrees`` and a N(0, 20²) translation."""
    count, bodies = systems.mass.shape
    order = np.argsort(rng.random((count, bodies)), axis=1)  # uniform random permutations
    mass = np.take_along_axis(systems.mass, order, 1)
    pos = np.take_along_axis(systems.pos, order[..., None], 1)
    vel = np.take_along_axis(systems.vel, order[..., None], 1)
    rotation = random_rotations(rng, count, degrees)  # (S, 3, 3)
    shift = rng.normal(0.0, SHIFT_STD, size=(count, 1, 3))
    rotate = rotation.transpose(0, 2, 1)  # row vectors: x ↦ R x
    return Systems(mass, pos @ rotate + shift, vel @ rotate)


def simulate(systems: Systems, steps: int = STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Positions and velocities (S, n, 3) after symplectic Euler steps of gravity (G = 1)."""
    dt = DURATION / STEPS
    pos, vel = systems.pos.copy(), systems.vel.copy()
    mass = systems.mass[:, None, :, None]  # (S, 1, n, 1): the attracting body j
    for _ in range(steps):
        offset = pos[:, None, :, :] - pos[:, :, None, :]  # (S, n, n, 3): x_j − x_i
        distance = np.linalg.norm(offset, axis=-1, keepdims=True)  # (S, n, n, 1)
        distance[distance == 0.0] = np.inf  # no self-attraction
        vel += dt * (mass * offset / distance**3).sum(2)  # a_i = Σ_j m_j (x_j − x_i)/|x_j − x_i|³
        pos += dt * vel
    return pos, vel


def sample_split(rng: np.random.Generator, count: int, n_planets: int,
                 degrees: tuple[float, float]) -> tuple[Systems, np.ndarray]:
    """``count`` accepted samples (initial systems, final positions), drawn in rounds."""
    kept: list[tuple[Systems, np.ndarray]] = []
    missing = count
    while missing > 0:
        candidates = sample_systems(rng, int(np.ceil(1.1 * missing)), n_planets)
        systems = transform(rng, candidates, degrees)
        final, _ = simulate(systems)
        accepted = np.linalg.norm(final - systems.pos, axis=-1).max(1) <= MAX_DISPLACEMENT  # (S,)
        kept.append((Systems(*(field[accepted] for field in systems)), final[accepted]))
        missing -= int(accepted.sum())
    fields = (np.concatenate([part[0][field] for part in kept])[:count] for field in range(3))
    return Systems(*fields), np.concatenate([part[1] for part in kept])[:count]


class NBodyGravity(Task):
    """Predict the bodies' positions after time 0.1 from masses, positions and velocities."""

    name = "nbody_gravity"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {
        "train_size": 100, "eval_size": 5000, "n_planets": 3, "seed": 42,
    }
    input_kinds = {"pos": "point", "vel": "vector", "mass": "node"}
    target_kind = "point"
    metric = "mse"
    mode = "min"
    evaluation_splits = ("val", "test", "test_ood")

    def validate(self) -> None:
        p = self.params
        require(is_int(p["train_size"]) and p["train_size"] >= 1, "train_size", p["train_size"],
                "an integer >= 1")
        require(is_int(p["eval_size"]) and p["eval_size"] >= 1, "eval_size", p["eval_size"],
                "an integer >= 1 (size of val, test and test_ood each)")
        require(is_int(p["n_planets"]) and p["n_planets"] >= 1, "n_planets", p["n_planets"],
                "an integer >= 1")
        require(is_int(p["seed"]) and p["seed"] >= 0, "seed", p["seed"], "an integer >= 0")

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        bodies = 1 + self.params["n_planets"]
        return {"pos": (bodies, 3), "vel": (bodies, 3), "mass": (bodies, 1)}

    def output_shape(self) -> tuple[int, ...]:
        return (1 + self.params["n_planets"], 3)

    def generate(self) -> dict[str, np.ndarray]:
        p = self.params
        arrays: dict[str, np.ndarray] = {}
        for index, (split, degrees) in enumerate(SPLIT_ANGLES.items()):
            size = p["train_size"] if split == "train" else p["eval_size"]
            rng = np.random.default_rng([p["seed"], index])
            systems, final = sample_split(rng, size, p["n_planets"], degrees)
            arrays[f"{split}/pos"] = systems.pos  # (size, n, 3)
            arrays[f"{split}/vel"] = systems.vel  # (size, n, 3)
            arrays[f"{split}/mass"] = systems.mass[..., None]  # (size, n, 1)
            arrays[f"{split}/mask"] = np.ones(systems.mass.shape, dtype=bool)  # (size, n)
            arrays[f"{split}/y"] = final  # (size, n, 3)
        return arrays

    def loss(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return masked_mse(pred, batch)

    def metrics(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return {"mse": float(masked_mse(pred, batch))}
