"""Charged n-body: the EGNN "nbody_small" data, and its d-dimensional generalisation.

``n_particles`` (default 5) unit-mass particles with charges ±1 move under
F_i = Σ_j q_i q_j (x_i − x_j) / |x_i − x_j|^d (Coulomb at d = 3, ∝ 1/r^(d−1) in general),
integrated by the original generator's leapfrog (first kick at t = 0, then drift, record, kick;
dt = 0.001, each force component clipped to ±100). A simulation records 49 frames, one every 100
steps; frame k holds the positions after (k + 1)·100 drifts and the velocity after as many kicks.
The task maps positions and velocities at ``frame_in`` (default 30) and the charges to the
positions at ``frame_out`` (default 40).

Random stream (reproduces the published data for the defaults): one legacy
``numpy.random.RandomState(seed)`` is read sequentially for 10,000 training, then 2,000
validation, then 2,000 test simulations. Per simulation it yields, in this order,
  1. ``n`` uniforms (``random_sample``; the original ``choice([-1, 0, 1], p=[½, 0, ½])`` reads
     exactly these): charge −1 where u < ½, else +1;
  2. ``d·n`` normals, laid out (d, n): initial positions × loc_std, loc_std = (n / 5)^(1/d)
     (the original's (n/5)^(1/3) at d = 3, so 1 for five particles);
  3. ``d·n`` normals, laid out (d, n): initial velocities, each rescaled to norm 0.5;
  4. ``2·49·d·n`` normals: the original's zero-variance observation noise, drawn and discarded
     so that the next simulation starts where the original's did.
Initial positions outside the box [−5, 5] are reflected once (velocity pointed inwards). Other
(dim, n_particles, seed) values use the same construction. The reference charges of the
published files are checked in ``tests/tasks/test_nbody.py``; the product never reads them.

Splits: the first ``train_size`` (≤ 10,000) training simulations and the first ``eval_size``
(≤ 2,000) validation and test simulations of the stream, so smaller sets are prefixes of larger
ones. Only those are integrated, and only up to ``frame_out``; both sizes are in the cache key.
Squared distances are computed as |x_i|² + |x_j|² − 2 x_i·x_j like the original (this matters for
reproducing its rounding). The per-component force clip (``clip_force``, on by default as in the
published data) breaks exact rotation equivariance and momentum conservation in the rare close
encounters where it acts; turn it off for exactly E(d)-equivariant dynamics.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from workers.checks import is_int
from workers.tasks.base import Task, require

DT = 0.001
MAX_FORCE = 0.1 / DT  # per component
BOX_SIZE = 5.0
SPEED = 0.5
STEPS_PER_FRAME = 100
FRAMES = 49  # 5,000 steps sampled every 100; the original never records the initial state
NOISE_DRAWS = 2 * FRAMES  # discarded (d, n) normal blocks per simulation
STREAM_SPLITS = (("train", 10_000), ("val", 2_000), ("test", 2_000))  # drawing order and sizes
CHUNK = 1024  # simulations integrated together: keeps the (n, n, d, chunk) temporaries in cache


class States(NamedTuple):
    """Particle states of S simulations."""

    pos: np.ndarray  # (S, n, d)
    vel: np.ndarray  # (S, n, d)
    charges: np.ndarray  # (S, n, 1)


def draw_initial_states(seed: int, n_particles: int, dim: int) -> dict[str, States]:
    """Replay the generator's random stream for all 14,000 simulations; states per split."""
    rng = np.random.RandomState(seed)
    block = dim * n_particles
    uniforms, normals = [], []
    for _, count in STREAM_SPLITS:
        for _ in range(count):
            uniforms.append(rng.random_sample(n_particles))
            normals.append(rng.randn((2 + NOISE_DRAWS) * block)[: 2 * block])
    uniform = np.stack(uniforms)  # (14000, n)
    normal = np.stack(normals).reshape(-1, 2, dim, n_particles)  # (14000, 2, d, n): original layout
    normal = normal.transpose(0, 1, 3, 2)  # (14000, 2, n, d)
    charges = np.where(uniform < 0.5, -1.0, 1.0)[..., None]  # (14000, n, 1)
    pos = normal[:, 0] * (n_particles / 5.0) ** (1.0 / dim)
    vel = normal[:, 1] * SPEED / np.sqrt((normal[:, 1] ** 2).sum(-1, keepdims=True))
    pos, vel = _reflect_into_box(pos, vel)
    states, start = {}, 0
    for split, count in STREAM_SPLITS:
        part = slice(start, start + count)
        states[split] = States(pos[part], vel[part], charges[part])
        start += count
    return states


def _reflect_into_box(pos: np.ndarray, vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The original's one-off clamp: reflect coordinates beyond ±BOX_SIZE, velocity inwards."""
    over = pos > BOX_SIZE
    pos = np.where(over, 2 * BOX_SIZE - pos, pos)
    vel = np.where(over, -np.abs(vel), vel)
    under = pos < -BOX_SIZE
    pos = np.where(under, -2 * BOX_SIZE - pos, pos)
    vel = np.where(under, np.abs(vel), vel)
    return pos, vel


def frame_step(frame: int) -> int:
    """The integration step whose state a recorded frame holds."""
    return (frame + 1) * STEPS_PER_FRAME


def simulate(states: States, save_steps: Sequence[int], clip_force: bool = True) -> list[States]:
    """Integrate every simulation (float64) and return the states after each of ``save_steps``."""
    count = states.pos.shape[0]
    chunks = [States(*(field[start : start + CHUNK] for field in states))
              for start in range(0, count, CHUNK)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    run = partial(_simulate_chunk, save_steps=list(save_steps), clip_force=clip_force)
    with ThreadPoolExecutor(max_workers=max(1, min(len(chunks), cpus))) as pool:  # numpy frees the GIL
        parts = list(pool.map(run, chunks))  # [chunk][save step] -> (pos, vel)
    return [
        States(np.concatenate([part[index][0] for part in parts]),
               np.concatenate([part[index][1] for part in parts]), states.charges)
        for index in range(len(save_steps))
    ]


def _simulate_chunk(
    states: States, save_steps: list[int], clip_force: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The original generator's leapfrog, simulations on the last (contiguous) axis."""
    pos = np.ascontiguousarray(states.pos.transpose(1, 2, 0))  # (n, d, S)
    vel = np.ascontiguousarray(states.vel.transpose(1, 2, 0))  # (n, d, S)
    charge = states.charges[..., 0].T  # (n, S)
    coupling = charge[:, None] * charge[None, :]  # (n, n, S)
    dim, last = pos.shape[1], max(save_steps)
    saved: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    vel += DT * _forces(pos, coupling, dim, clip_force)
    for step in range(1, last + 1):
        pos += DT * vel
        if step in save_steps:
            saved[step] = (pos.transpose(2, 0, 1).copy(), vel.transpose(2, 0, 1).copy())  # (S, n, d)
        if step < last:
            vel += DT * _forces(pos, coupling, dim, clip_force)
    return [saved[step] for step in save_steps]


def _forces(pos: np.ndarray, coupling: np.ndarray, dim: int, clip_force: bool) -> np.ndarray:
    """F_i = Σ_j q_i q_j (x_i − x_j)/|x_i − x_j|^d with the original's squared distances."""
    norms = (pos * pos).sum(1)  # (n, S)
    by_sim = pos.transpose(2, 0, 1)  # (S, n, d) view
    dots = np.matmul(by_sim, by_sim.transpose(0, 2, 1)).transpose(1, 2, 0)  # (n, n, S), like A·Aᵀ
    squared = norms[:, None] + norms[None, :] - 2 * dots  # (n, n, S)
    with np.errstate(divide="ignore", invalid="ignore"):
        size = coupling / np.power(squared, dim / 2.0)  # (n, n, S)
    diagonal = np.arange(pos.shape[0])
    size[diagonal, diagonal] = 0.0  # no self-force
    force = (size[:, :, None] * (pos[:, None] - pos[None, :])).sum(1)  # (n, d, S)
    if clip_force:
        np.clip(force, -MAX_FORCE, MAX_FORCE, out=force)
    return force


def masked_mse(pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared error over the real particles' coordinates: pred, y (B, n, d), mask (B, n)."""
    mask = batch["mask"].to(pred.dtype)[..., None]  # (B, n, 1)
    squared = (pred - batch["y"].to(pred.dtype)) ** 2 * mask
    return squared.sum() / (mask.sum() * pred.shape[-1])


class NBody(Task):
    """Charged particles: predict positions at ``frame_out`` from the state at ``frame_in``."""

    name = "nbody"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {
        "train_size": 3000, "eval_size": 2000, "dim": 3, "n_particles": 5, "seed": 43,
        "frame_in": 30, "frame_out": 40, "clip_force": True,
    }
    input_kinds = {"pos": "point", "vel": "vector", "charges": "node"}
    target_kind = "point"
    metric = "mse"
    mode = "min"

    def validate(self) -> None:
        p = self.params
        train_total, eval_total = STREAM_SPLITS[0][1], STREAM_SPLITS[1][1]
        require(is_int(p["train_size"]) and 1 <= p["train_size"] <= train_total, "train_size",
                p["train_size"], f"an integer in [1, {train_total}] (training simulations)")
        require(is_int(p["eval_size"]) and 1 <= p["eval_size"] <= eval_total, "eval_size",
                p["eval_size"], f"an integer in [1, {eval_total}] (validation and test each)")
        require(is_int(p["dim"]) and p["dim"] >= 2, "dim", p["dim"], "an integer >= 2")
        require(is_int(p["n_particles"]) and p["n_particles"] >= 2, "n_particles", p["n_particles"],
                "an integer >= 2")
        require(is_int(p["seed"]) and 0 <= p["seed"] < 2**32, "seed", p["seed"],
                "an integer in [0, 2**32)")
        require(is_int(p["frame_in"]) and 0 <= p["frame_in"] < FRAMES - 1, "frame_in", p["frame_in"],
                f"an integer in [0, {FRAMES - 2}]")
        require(is_int(p["frame_out"]) and p["frame_in"] < p["frame_out"] < FRAMES, "frame_out",
                p["frame_out"], f"an integer in [frame_in + 1, {FRAMES - 1}]")
        require(isinstance(p["clip_force"], bool), "clip_force", p["clip_force"], "true or false")

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        n, d = self.params["n_particles"], self.params["dim"]
        return {"pos": (n, d), "vel": (n, d), "charges": (n, 1)}

    def output_shape(self) -> tuple[int, ...]:
        return (self.params["n_particles"], self.params["dim"])

    def generate(self) -> dict[str, np.ndarray]:
        p = self.params
        stream = draw_initial_states(p["seed"], p["n_particles"], p["dim"])
        sizes = {"train": p["train_size"], "val": p["eval_size"], "test": p["eval_size"]}
        initial = States(*(np.concatenate([stream[split][field][:size] for split, size in sizes.items()])
                           for field in range(3)))  # (train + 2·eval, n, ·), in stream order
        steps = [frame_step(p["frame_in"]), frame_step(p["frame_out"])]
        start_state, end_state = simulate(initial, steps, p["clip_force"])
        arrays, start = {}, 0
        for split, size in sizes.items():
            part = slice(start, start + size)
            arrays[f"{split}/pos"] = start_state.pos[part]  # (size, n, d)
            arrays[f"{split}/vel"] = start_state.vel[part]  # (size, n, d)
            arrays[f"{split}/charges"] = initial.charges[part]  # (size, n, 1)
            arrays[f"{split}/mask"] = np.ones((size, p["n_particles"]), dtype=bool)
            arrays[f"{split}/y"] = end_state.pos[part]  # (size, n, d)
            start += size
        return arrays

    def loss(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return masked_mse(pred, batch)

    def metrics(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return {"mse": float(masked_mse(pred, batch))}
