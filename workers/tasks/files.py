"""``task=files``: a task made of tensors you already have, in a ``.npz`` or ``.pt`` file; no code.

The file holds named arrays whose first axis is the examples (``np.savez``, or ``torch.save`` of a dict of
tensors, read with ``weights_only=True``). The schema is the task's parameters (``configs/task/files.yaml``):

- ``path``: the file, absolute or relative to the folder the command runs in (on a cluster: a path every node
  sees, or inside ``cluster.runtime_env.working_dir``);
- ``inputs``: ``{array name: kind}`` — node (n, C), pair (n, n, C), point (n, d), vector (n, d), image (H, W, C),
  invariant (any); an array named ``mask`` (n,) bool marks the real node slots of padded sets;
- ``output``, ``output_kind``: the array to predict and its kind;
- ``loss``: ``mse``, ``l1``, ``cross_entropy`` (integer labels, one logit per class: ``classes``, default
  max label + 1) or ``bce`` (0/1 labels, logits);
- ``metrics``: the metrics reported, the first one the headline that selects the best epoch (null: the loss's
  own); each has its direction (``METRICS``), so ``sweep.metric``, its mode and the comparisons need nothing more;
- splits: arrays named ``train/<name>``, ``val/<name>``, ``test/<name>`` are used as they are; otherwise the
  examples are shuffled by ``seed`` and cut into ``sizes`` = [train, val, test] (null: 80 %, 10 %, 10 %).

Everything is checked where the task is built (the driver, before a sweep starts), each error naming
``task.<key>``. Nothing is cached: the file is read as it is (once per process and file version).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from workers.checks import is_int
from workers.symmetry.groups import DATA_KINDS, NODE_KINDS
from workers.tasks.base import SPLITS, Task, TaskData, require

LOSSES = {"mse": ("mse",), "l1": ("mae",), "cross_entropy": ("accuracy", "cross_entropy"), "bce": ("accuracy",)}
METRICS = {"mse": "min", "mae": "min", "rmse": "min", "accuracy": "max", "cross_entropy": "min"}
ALLOWED = {"mse": ("mse", "mae", "rmse"), "l1": ("mae", "mse", "rmse"),
                   "cross_entropy": ("accuracy", "cross_entropy"), "bce": ("accuracy",)}
RANK = {"node": 2, "pair": 3, "point": 2, "vector": 2, "image": 3}  # per-example dimensions of each kind
_READ: dict[tuple, dict[str, torch.Tensor]] = {}  # (path, mtime, size) -> arrays: the last few files read


def read_arrays(path: str) -> dict[str, torch.Tensor]:
    """Every array of a ``.npz`` or ``.pt`` file as tensors (read once per file version in this process)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _READ:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as found:
                arrays = {name: torch.from_numpy(np.ascontiguousarray(found[name])) for name in found.files}
        else:
            found = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(found, dict) or not all(isinstance(v, torch.Tensor) for v in found.values()):
                raise ValueError(f"task.path={path!r} holds a {type(found).__name__}; expected a dict of tensors")
            arrays = {str(name): value for name, value in found.items()}
        if len(_READ) >= 4:
            _READ.clear()
        _READ[key] = arrays
    return _READ[key]


class Files(Task):
    """Named arrays from a file, with their kinds, a loss and metrics given in the config."""

    name = "files"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {
        "path": None, "inputs": None, "output": "y", "output_kind": "invariant", "loss": "mse", "metrics": None,
        "sizes": None, "seed": 0, "classes": None,
    }
    input_kinds: ClassVar[dict[str, str]] = {}  # the instance's: task.inputs
    target_kind = "invariant"  # the instance's: task.output_kind
    metric, mode = "mse", "min"  # the instance's: task.metrics[0] and its direction
    configured_metrics = True

    def validate(self) -> None:
        """The parameters alone (the metrics, their directions and the kinds follow from them); the file is read and
        checked against them on first use (``input_shapes``, ``load``), so a trial config is refused, naming
        ``task.<key>``, when the driver checks it."""
        p = self.params
        require(p["path"] is None or isinstance(p["path"], str) and p["path"].endswith((".npz", ".pt")), "path",
                p["path"], "a .npz or .pt file")
        require(p["inputs"] is None or isinstance(p["inputs"], Mapping) and bool(p["inputs"]), "inputs", p["inputs"],
                "a mapping of array name -> kind, e.g. {pos: point, charge: node}")
        for field, kind in (p["inputs"] or {}).items():
            require(kind in DATA_KINDS, f"inputs.{field}", kind, f"one of {', '.join(DATA_KINDS)}")
        require(isinstance(p["output"], str) and p["output"] != "mask", "output", p["output"], "the name of an array")
        require(p["loss"] in LOSSES, "loss", p["loss"], f"one of {', '.join(LOSSES)}")
        require(p["output_kind"] in DATA_KINDS, "output_kind", p["output_kind"], f"one of {', '.join(DATA_KINDS)}")
        require(p["loss"] != "cross_entropy" or p["output_kind"] == "invariant", "output_kind", p["output_kind"],
                "invariant with loss cross_entropy (one label per example)")
        metrics, allowed = p["metrics"] if p["metrics"] is not None else list(LOSSES[p["loss"]]), ALLOWED[p["loss"]]
        require(isinstance(metrics, list) and bool(metrics) and all(m in allowed for m in metrics)
                and len(set(metrics)) == len(metrics), "metrics", metrics,
                f"null or a list of distinct metrics of loss {p['loss']}: {', '.join(allowed)} (the first selects)")
        require(p["sizes"] is None or isinstance(p["sizes"], list) and len(p["sizes"]) == 3
                and all(is_int(size) and size >= 1 for size in p["sizes"]), "sizes", p["sizes"],
                "null or [train, val, test], each an integer ≥ 1")
        require(is_int(p["seed"]) and p["seed"] >= 0, "seed", p["seed"], "an integer ≥ 0")
        require(p["classes"] is None or is_int(p["classes"]) and p["classes"] >= 2, "classes", p["classes"],
                "null or an integer ≥ 2")
        self.input_kinds = dict(p["inputs"] or {})
        self.target_kind = p["output_kind"]
        self.metric, self.mode = metrics[0], METRICS[metrics[0]]
        self.other_metrics = {m: METRICS[m] for m in metrics[1:]}
        self._splits: dict[str, dict[str, torch.Tensor]] | None = None

    def splits(self) -> dict[str, dict[str, torch.Tensor]]:
        """The file's arrays per split (``y`` the output), read and checked against the parameters once."""
        if self._splits is None:
            self._splits = self._read()
        return self._splits

    def file(self) -> str | None:
        """``task.path``; a relative one from the folder the command runs in (a trial's, before Ray Tune moves it
        to its own folder: with ``cluster.runtime_env.working_dir``, the shipped folder)."""
        path = self.params["path"]
        if path is None or os.path.isabs(path):
            return path
        return os.path.join(os.environ.get("TUNE_ORIG_WORKING_DIR") or os.getcwd(), path)

    def _read(self) -> dict[str, dict[str, torch.Tensor]]:
        p, path = self.params, self.file()
        require(isinstance(path, str) and os.path.isfile(path), "path", p["path"], "an existing .npz or .pt file "
                "(task=files reads your file; relative to the folder the command runs in; on a cluster one every node "
                "sees, or shipped with cluster.runtime_env)")
        require(bool(self.input_kinds), "inputs", p["inputs"], "a mapping of array name -> kind, e.g. {pos: point}")
        try:
            arrays = read_arrays(path)
        except (OSError, ValueError, RuntimeError, EOFError, KeyError) as err:
            raise ValueError(f"task.path={path!r} cannot be read ({str(err).strip()[:200]}); expected a .npz file or "
                             "a torch.save'd dict of tensors") from None
        splits = _split(arrays, p)
        fields = splits["train"]
        for field, kind in self.input_kinds.items():
            require(field in fields and field not in ("y", "mask"), "inputs", dict(p["inputs"]),
                    f"names of arrays in the file other than the output and mask: {', '.join(_names(fields))}")
            _check_rank(f"inputs.{field}", kind, fields[field])
        target = fields["y"]
        if p["loss"] == "cross_entropy":
            require(target.dim() == 1 and not target.is_floating_point(), "output", p["output"],
                    "an array of integer labels (one per example) with loss cross_entropy")
            labels = int(max(int(split["y"].max()) for split in splits.values())) + 1
            require(p["classes"] is None or p["classes"] >= labels, "classes", p["classes"],
                    f"null or an integer ≥ {labels} (the largest label + 1)")
        else:
            _check_rank("output", p["output_kind"], target)
        return splits

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        train = self.splits()["train"]
        return {field: tuple(train[field].shape[1:]) for field in self.input_kinds}

    def output_shape(self) -> tuple[int, ...]:
        splits = self.splits()
        if self.params["loss"] == "cross_entropy":
            labels = int(max(int(split["y"].max()) for split in splits.values())) + 1
            return (int(self.params["classes"] or labels),)
        return tuple(splits["train"]["y"].shape[1:]) or (1,)

    def generate(self) -> dict[str, np.ndarray]:
        raise NotImplementedError("task=files reads its file (load); it generates nothing")

    def load(self, root: Path | None = None) -> TaskData:
        start = time.perf_counter()
        splits = {split: {field: _as_input(value, field) for field, value in fields.items()
                          if field in self.input_kinds or field in ("y", "mask")}
                  for split, fields in self.splits().items()}
        for fields in splits.values():
            fields["y"] = _target(fields["y"], self.params["loss"])
        return TaskData(self.name, splits, Path(self.file()), False, time.perf_counter() - start)

    def loss(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        kind = self.params["loss"]
        if kind == "cross_entropy":
            return F.cross_entropy(pred, batch["y"])
        if kind == "bce":
            return F.binary_cross_entropy_with_logits(pred, batch["y"].to(pred.dtype).view_as(pred))
        error = (pred - batch["y"].to(pred.dtype).view_as(pred))
        return self._mean(error.abs() if kind == "l1" else error**2, batch)

    def metrics(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        out: dict[str, float] = {}
        kind, y = self.params["loss"], batch["y"]
        for name in (self.metric, *self.other_metrics):
            if name == "accuracy":
                right = pred.argmax(-1) == y if kind == "cross_entropy" else (pred > 0) == (y.view_as(pred) > 0.5)
                out[name] = float(right.float().mean())
            elif name == "cross_entropy":
                out[name] = float(F.cross_entropy(pred, y))
            else:
                error = pred - y.to(pred.dtype).view_as(pred)
                value = float(self._mean(error.abs() if name == "mae" else error**2, batch))
                out[name] = math.sqrt(value) if name == "rmse" else value
        return out

    def _mean(self, values: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The mean over examples and entries, over real node slots only for a node-indexed output."""
        mask = batch.get("mask")
        if mask is None or self.target_kind not in NODE_KINDS:
            return values.mean()
        weight = mask.to(values.dtype)
        weight = weight[:, :, None] * weight[:, None, :] if self.target_kind == "pair" else weight
        weight = weight.view(*weight.shape, *([1] * (values.dim() - weight.dim()))).expand_as(values)
        return (values * weight).sum() / weight.sum().clamp(min=1)


def _names(fields: Mapping[str, Any]) -> list[str]:
    return sorted(field for field in fields if field not in ("y", "mask"))


def _check_rank(key: str, kind: str, value: torch.Tensor) -> None:
    rank = RANK.get(kind)
    require(rank is None or value.dim() - 1 == rank, key, kind, f"a kind whose per-example shape fits the array's "
            f"{tuple(value.shape[1:])} (node (n, C), pair (n, n, C), point/vector (n, d), image (H, W, C))")


def _split(arrays: Mapping[str, torch.Tensor], p: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """The arrays per split, the output renamed ``y``: the file's own splits, or a seeded cut into ``sizes``."""
    output = p["output"]
    if any("/" in name for name in arrays):
        splits: dict[str, dict[str, torch.Tensor]] = {}
        for name, value in arrays.items():
            split, _, field = name.partition("/")
            require(split in SPLITS and bool(field), "path", p["path"], "arrays named train/<name>, val/<name>, "
                    f"test/<name> (or none split; found {name!r})")
            splits.setdefault(split, {})[field] = value
        require(set(splits) == set(SPLITS), "path", p["path"], f"a file with train, val and test arrays (found "
                f"{', '.join(sorted(splits))})")
    else:
        whole = dict(arrays)
        require(bool(whole), "path", p["path"], "a file with at least one array")
        count = len(next(iter(whole.values())))
        for name, value in whole.items():
            require(value.dim() >= 1 and len(value) == count, "path", p["path"], f"arrays of {count} examples each "
                    f"(the first axis; {name!r} has shape {tuple(value.shape)})")
        sizes = p["sizes"] if p["sizes"] is not None else [count - 2 * (count // 10), count // 10, count // 10]
        require(sum(sizes) <= count and min(sizes) >= 1, "sizes", p["sizes"], f"null or [train, val, test] sizes "
                f"≥ 1 of at most {count} examples in all (the file's)")
        order = torch.randperm(count, generator=torch.Generator().manual_seed(int(p["seed"])))
        starts = np.cumsum([0, *sizes])
        splits = {split: {name: value[order[starts[i]:starts[i + 1]]] for name, value in whole.items()}
                  for i, split in enumerate(SPLITS)}
    for split, fields in splits.items():
        require(output in fields, "output", output, f"an array of the file: {', '.join(sorted(fields))}")
        fields["y"] = fields.pop(output)
        if "mask" in fields:
            require(fields["mask"].dim() == 2, "path", p["path"], "a mask array of shape (examples, n)")
    return splits


def _as_input(value: torch.Tensor, field: str) -> torch.Tensor:
    if field == "mask":
        return value.bool()
    return value if field == "y" else value.float()


def _target(value: torch.Tensor, loss: str) -> torch.Tensor:
    return value.long() if loss == "cross_entropy" else value.float()
