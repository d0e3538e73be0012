"""Shared helpers of the training-loop tests (also used by the command-line tests): tiny composed configs and a
report collector. (Torch on one thread: the ``one_thread`` fixture of tests/conftest.py, autouse in tests/train.)

Configs are composed through the real Hydra tree (``orchestrator.config``), once per override
list, so the tests exercise exactly what ``symsweep train`` and the sweeps hand to a trial.
EXP and EXP-classify have no size parameter (1,200 graphs of 64 nodes); ``shrink_task`` cuts their
splits for the duration of one test so that a run takes well under a second on two cores.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable

TIMING_KEYS = ("elapsed_s", "samples_per_s", "examples_per_s")

# nbody, S_n x E(3) PS with the Vector Neurons interface and a one-layer transformer: 3 steps/epoch
NBODY_PS = ("task=nbody", "task.train_size=6", "task.eval_size=4", "group=sn_e", "symmetrizer=ps",
            "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4",
            "model=transformer", "model.layers=1", "model.width=8", "model.heads=2", "model.feedforward=8",
            "trainer.batch_size=2")
# nbody with an MLP base: the cheapest trainable configuration
NBODY_MLP = ("task=nbody", "task.train_size=6", "task.eval_size=4", "group=sn_e", "model=mlp", "model.widths=[16]",
             "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4",
             "trainer.batch_size=2")

_COMPOSED: dict[tuple[str, ...], dict] = {}
_SHRUNK: dict[tuple, Any] = {}
EXP_CLASSIFY_SIZES = {"train": 24, "val": 8, "test": 8}


def compose_trial(*overrides: str) -> dict:
    """The plain trial dict for ``overrides`` (composed once per list; a fresh deep copy each call)."""
    if overrides not in _COMPOSED:
        from orchestrator.config import compose, trial_config

        _COMPOSED[overrides] = trial_config(compose(list(overrides)))
    return copy.deepcopy(_COMPOSED[overrides])


def shrink_task(monkeypatch, name: str, sizes: dict[str, int]) -> None:
    """Make task ``name``'s ``load`` return the first ``sizes[split]`` examples of every split,
    reading the cached file once per test session (EXP graphs alternate SAT/UNSAT, so even cuts
    keep whole pairs)."""
    from workers.tasks import task_class

    cls = task_class(name)
    original = cls.load

    def load(self, root=None):
        key = (name, tuple(sorted(self.params.items())), tuple(sorted(sizes.items())))
        if key not in _SHRUNK:
            data = original(self, root)
            data.splits = {split: {field: value[: sizes[split]].clone() for field, value in fields.items()}
                           for split, fields in data.splits.items()}
            _SHRUNK[key] = data
        return copy.copy(_SHRUNK[key])

    monkeypatch.setattr(cls, "load", load)


def shrink_exp_classify(monkeypatch) -> None:
    shrink_task(monkeypatch, "exp_classify", EXP_CLASSIFY_SIZES)


class Stop(Exception):
    """Raised from a report callback to interrupt a run after a given epoch."""


def collector(stop_after: int | None = None) -> tuple[list[tuple[dict, Path | None]], Callable]:
    """A list of (metrics, checkpoint) and a ``report`` appending to it (raising ``Stop`` after
    the report of epoch ``stop_after``, as a pre-empted trial would die)."""
    reports: list[tuple[dict, Path | None]] = []

    def report(metrics: dict, checkpoint: Path | None) -> None:
        reports.append((dict(metrics), checkpoint))
        if stop_after is not None and metrics["epoch"] >= stop_after:
            raise Stop(f"stopped after epoch {metrics['epoch']}")

    return reports, report


def without_timing(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in TIMING_KEYS}


def assert_same_metrics(first: dict, second: dict, tolerance: float = 1e-12) -> None:
    """Same keys and, for every non-timing key, values equal within ``tolerance`` (NaN == NaN)."""
    first, second = without_timing(first), without_timing(second)
    assert first.keys() == second.keys()
    for key, value in first.items():
        other = second[key]
        if isinstance(value, float) and math.isnan(value):
            assert isinstance(other, float) and math.isnan(other), key
        else:
            assert abs(value - other) <= tolerance, (key, value, other)
