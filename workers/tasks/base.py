"""What every task module provides, and the plumbing they share.

A task is a class with a name, a generator version, default parameters, an offline generator
(deterministic from its parameters, which include the seed), and the task's loss and metrics. Every metric
``metrics`` returns is declared with its direction (``metric``/``mode``, ``other_metrics``), checked when the
class is defined: ``workers.reporting`` builds every report key and every sweep metric's mode from them.
Generated arrays are cached on disk (``cache.py``); ``load`` returns torch tensors per split.

Data layout (what models and the symmetrizer see). Every split is a dict of tensors whose first
axis is the example axis, padded to a fixed shape:

- ``"mask"`` (n,) bool: which node slots are real (graph and particle tasks);
- inputs, each with a *kind* that says how a group acts on it (``input_kinds``):
  ``node`` (n, C) rows permuted by S_n; ``pair`` (n, n, C) both node axes permuted;
  ``point`` (n, d) permuted, rotated and translated; ``vector`` (n, d) permuted and rotated,
  not translated; ``image`` (H, W, C) rotated/flipped; ``invariant`` untouched;
- ``"y"``: the target, of kind ``target_kind``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np
import torch

from workers import checks
from workers.reporting import DIRECTIONS, SELECTION_SPLIT, task_metrics
from workers.tasks import cache

SPLITS = ("train", "val", "test")


@dataclass
class TaskData:
    """A loaded dataset: tensors per split, and where it came from."""

    task: str
    splits: dict[str, dict[str, torch.Tensor]]
    path: Path
    generated: bool
    seconds: float

    def size(self, split: str) -> int:
        fields = self.splits[split]
        return int(next(iter(fields.values())).shape[0]) if fields else 0


class Task(ABC):
    """Base class of a task module. Subclasses fill the class attributes and the methods."""

    name: ClassVar[str]
    version: ClassVar[int]  # bump when the generator's output changes
    defaults: ClassVar[dict[str, Any]]  # every accepted parameter and its default
    input_kinds: ClassVar[dict[str, str]]
    target_kind: ClassVar[str]
    metric: ClassVar[str]  # the headline metric reported for model selection
    mode: ClassVar[str]  # "min" or "max" for ``metric``
    other_metrics: ClassVar[Mapping[str, str]] = {}  # any other metric ``metrics`` returns -> "min" or "max"
    trainable: ClassVar[bool] = True  # False for tasks evaluated at initialisation (separation)
    # the splits a trial reports <split>_<metric> of: every split of the data but the training split, in its order
    evaluation_splits: ClassVar[tuple[str, ...]] = ("val", "test")
    # True where an instance's metric/mode/other_metrics follow its parameters (task=files): read them from an
    # instance, never from the class (the driver records them in config.json; the tables read that record)
    configured_metrics: ClassVar[bool] = False
    # True where ``decide`` turns predictions into discrete decisions (a class): the loop then counts the test
    # examples whose decision flips under the group and between noise draws (``workers.reporting.DECISIONS``)
    decides: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A task (a class with a ``name`` or a ``metric``) declares the direction of every metric it reports,
        and a trainable one evaluates the selection split; anything else fails where the class is defined."""
        super().__init_subclass__(**kwargs)
        if not (hasattr(cls, "name") or hasattr(cls, "metric")):
            return
        missing = next((key for key in ("metric", "mode") if not hasattr(cls, key)), None)
        if missing:
            raise TypeError(f"task class {cls.__name__} has no {missing}; every task declares its metric and "
                            "its mode (min or max)")
        wrong = next(((m, way) for m, way in task_metrics(cls).items() if way not in DIRECTIONS), None)
        if wrong:
            raise TypeError(f"task class {cls.__name__}: metric {wrong[0]!r} has direction {wrong[1]!r}; allowed: "
                            f"{', '.join(DIRECTIONS)}")
        if cls.trainable and SELECTION_SPLIT not in cls.evaluation_splits:
            raise TypeError(f"task class {cls.__name__}: evaluation_splits={cls.evaluation_splits!r} lacks "
                            f"{SELECTION_SPLIT!r}, the split model selection reads; allowed: splits including it")

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"task.{unknown[0]}={params[unknown[0]]!r} is not a parameter of task "
                f"'{self.name}'; allowed: {', '.join(sorted(self.defaults))}"
            )
        self.params = {**self.defaults, **params}
        self.validate()

    # -- to implement -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming ``task.<key>``, the value and what is allowed."""

    def generator_params(self) -> dict[str, Any]:
        """The parameters that determine the generated arrays (the cache key). Default: all."""
        return dict(self.params)

    @abstractmethod
    def generate(self) -> dict[str, np.ndarray]:
        """Produce every array of the dataset, keyed ``"<split>/<field>"``; deterministic."""

    def to_splits(self, arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, torch.Tensor]]:
        """Arrays -> tensors per split (override to slice ``train_size`` or derive fields)."""
        splits: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in arrays.items():
            split, field = key.split("/", 1)
            tensor = torch.from_numpy(np.ascontiguousarray(value))
            if tensor.dtype == torch.float64:
                tensor = tensor.float()
            splits.setdefault(split, {})[field] = tensor
        return splits

    @abstractmethod
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-example shape of every input field (without generating the data)."""

    @abstractmethod
    def output_shape(self) -> tuple[int, ...]:
        """Per-example shape of the prediction a model must return (of kind ``target_kind``)."""

    @abstractmethod
    def loss(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Scalar training loss of a batch."""

    @abstractmethod
    def metrics(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Metrics of a whole split, given predictions for every example of it."""

    def decide(self, pred: torch.Tensor) -> torch.Tensor:
        """(B,) the decision (class) of each example's prediction; only tasks with ``decides``."""
        raise NotImplementedError(f"task {self.name!r} makes no discrete decisions (decides = False)")

    # -- shared ---------------------------------------------------------------------------------
    def load(self, root: Path | None = None) -> TaskData:
        """Generate (or reuse from the cache) and return the dataset as tensors."""
        start = time.perf_counter()
        arrays, path, generated = cache.load_or_generate(
            self.name, self.version, self.generator_params(), self.generate, root
        )
        return TaskData(self.name, self.to_splits(arrays), path, generated, time.perf_counter() - start)


def iterate_batches(
    fields: Mapping[str, torch.Tensor], batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0
) -> Iterator[dict[str, torch.Tensor]]:
    """Mini-batches of a split; the order depends only on (seed, epoch), so resume is exact."""
    size = int(next(iter(fields.values())).shape[0])
    if shuffle:
        generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        order = torch.randperm(size, generator=generator)
    else:
        order = torch.arange(size)
    for start in range(0, size, batch_size):
        index = order[start : start + batch_size]
        yield {key: value[index] for key, value in fields.items()}


def require(condition: bool, key: str, value: Any, allowed: str) -> None:
    """``workers.checks.require`` for ``task.<key>`` (task constructors name their own keys)."""
    checks.require(condition, f"task.{key}", value, allowed)
