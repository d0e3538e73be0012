"""Checkpoints: what a trial saves to resume exactly (``LoopState`` and the training objects), and the
files (``checkpoint_NNNNNN/state.pt`` written atomically, then ``meta.json`` marking it complete).

A checkpoint is one dict of tensors and plain data, loaded with ``weights_only=True``::

    model, optimizer, scheduler   state dicts
    gradnorm                      GradNorm's state for REMUL with adaptive weights, else None
    rng                           the global torch (and CUDA) RNG state: dropout continues exactly
    loop                          LoopState without its best weights (epoch, step, best, metrics, ...)
    best_model                    the weights of the best validation epoch (None before the first evaluation)
    config                        the trial dict it was trained with
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, truncated, not a symsweep checkpoint); names the file."""


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "rng", "loop", "config")


@dataclass
class LoopState:
    """Where a trial's loop stands: everything about its progress that a checkpoint must carry.

    ``best`` holds ``best_*`` (every evaluation metric at the best validation epoch) and
    ``best_epoch``; ``metrics`` the latest evaluation's metrics; ``history`` every reported metrics
    dict (for a replay); ``best_weights`` the model at the best validation epoch, which the
    end-of-trial measurements use."""

    epoch: int = 0
    step: int = 0
    best: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    evaluations: int = 0
    elapsed: float = 0.0
    history: list = field(default_factory=list)
    best_weights: dict | None = None

    def to_checkpoint(self) -> dict:
        """The checkpoint entries ``loop`` (plain data) and ``best_model`` (tensors)."""
        loop = {name: getattr(self, name) for name in LOOP_FIELDS}
        return {"loop": loop, "best_model": self.best_weights}

    @classmethod
    def from_checkpoint(cls, saved: Mapping[str, Any], source: str | os.PathLike) -> "LoopState":
        """The state of a loaded checkpoint (``source`` names it in the error when its loop state is incomplete)."""
        loop = saved["loop"]
        missing = [name for name in LOOP_FIELDS if not isinstance(loop, Mapping) or name not in loop]
        if missing:
            raise CheckpointError(f"checkpoint {source} lacks the loop state {', '.join(missing)} (a symsweep "
                                  f"checkpoint's loop has {', '.join(LOOP_FIELDS)}); it cannot be resumed")
        return cls(**{name: loop[name] for name in LOOP_FIELDS}, best_weights=saved.get("best_model"))

    def last_metrics(self) -> dict:
        """What a run that trains nothing more returns: the last evaluation and the best so far."""
        return {"epoch": self.epoch, "step": self.step, **self.metrics, **self.best, "elapsed_s": self.elapsed}


LOOP_FIELDS = tuple(f.name for f in fields(LoopState) if f.name != "best_weights")


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# -- files --------------------------------------------------------------------------------------------
def save_checkpoint(directory: Path, state: dict) -> Path:
    """Write ``state`` to ``directory/state.pt`` atomically (temporary file + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".state.pt.{os.getpid()}.tmp"
    try:
        torch.save(state, temporary)
        os.replace(temporary, directory / "state.pt")
    finally:
        temporary.unlink(missing_ok=True)
    (directory / "meta.json").write_text(json.dumps({"epoch": state["loop"]["epoch"]}))
    return directory


def checkpoints(directory: Path) -> list[Path]:
    """The complete checkpoints among ``directory/checkpoint_*``, newest epoch first.

    A checkpoint is complete once its ``meta.json`` exists (written after ``state.pt`` was renamed into
    place); whether its ``state.pt`` still loads is checked by ``newest_loadable``."""
    found = []
    for candidate in directory.glob("checkpoint_*"):
        try:
            found.append((int(json.loads((candidate / "meta.json").read_text())["epoch"]), candidate.name, candidate))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return [path for _, _, path in sorted(found, reverse=True)]


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint of the latest epoch among ``directory/checkpoint_*`` (complete ones only)."""
    found = checkpoints(directory)
    return found[0] if found else None


def newest_loadable(candidates: list[Path]) -> tuple[Path | None, list[str]]:
    """The first of ``candidates`` that loads, and one line per candidate skipped (why)."""
    skipped = []
    for candidate in candidates:
        try:
            load_checkpoint(candidate)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        return candidate, skipped
    return None, skipped


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by ``save_checkpoint`` (a ``checkpoint_NNNNNN`` directory or its ``state.pt``).

    Loaded with ``weights_only=True``: a checkpoint holds tensors and plain data only, so reading a file
    someone else wrote never runs code from it. Every failure is a ``CheckpointError`` naming the file."""
    path = Path(path).expanduser()
    file = path / "state.pt" if path.is_dir() else path
    if not file.is_file():
        what = "does not exist" if not file.exists() else "is not a file"
        raise CheckpointError(f"checkpoint {file} {what}; expected a checkpoint_NNNNNN directory (or its state.pt) "
                              "written by symsweep")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's message advises weights_only=False: never passed on
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        named = f" (the global {found[1]})" if found else ""
        raise CheckpointError(f"checkpoint {file} is not a symsweep checkpoint: it holds objects other than tensors "
                              f"and plain data{named}, and symsweep never loads such files (loading them could run "
                              "code from them); use a checkpoint written by symsweep") from None
    except Exception as err:  # noqa: BLE001 - truncated zip, foreign file: all unusable
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {file} cannot be read ({type(err).__name__}: {reason[:200]}); it is "
                              "truncated or not a symsweep checkpoint (only tensors and plain data are loaded)"
                              ) from None
    if not isinstance(state, dict) or not all(key in state for key in CHECKPOINT_KEYS):
        raise CheckpointError(f"checkpoint {file} is not a symsweep checkpoint: expected a dict with "
                              f"{', '.join(CHECKPOINT_KEYS)}")
    return state
