"""Where a trial runs and how its randomness is drawn: the device, generators seeded by tuples of integers,
models initialised from a seed, batches moved to the device.

Shared by the loop (``workers.train``), the evaluation (``workers.evaluation``), resuming
(``workers.resumption``) and the separation protocol (``workers.separation``), so that each draws from
the same streams: a step's group samples from (seed, step), an evaluation's noise from (seed, epoch,
split), a model's initial weights from its seed without touching the global RNG (which dropout uses).
"""

from __future__ import annotations

from typing import Mapping

import torch

from workers.models.factory import Plan, build_model


def pick_device(choice: str) -> torch.device:
    """``trainer.device`` (auto, cpu, cuda) -> the device; a one-line error for cuda without one."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("trainer.device='cuda' but no CUDA device is visible to this trial; allowed here: auto, cpu")
    return torch.device("cuda" if choice in ("cuda", "auto") and torch.cuda.is_available() else "cpu")


def step_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of integers (seed, step, ...)."""
    value = 0
    for part in key:
        value = (value * 1_000_003 + int(part)) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


def to_device(batch: Mapping[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def build_seeded(plan: Plan, seed: int) -> torch.nn.Module:
    """The model of a checked ``plan`` initialised from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(plan)
