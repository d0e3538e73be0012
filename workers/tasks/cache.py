"""On-disk dataset cache shared by every trial on a node.

A dataset is stored as one ``.npz`` file named by a hash of (task name, generator version,
generator parameters). Writes are atomic (temporary file + ``os.replace``) and guarded by a file
lock, so several trials that ask for the same dataset at once generate it exactly once. A file
that cannot be read is reported, removed and regenerated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from filelock import FileLock

log = logging.getLogger(__name__)

CACHE_ENV = "SYMSWEEP_CACHE"


class CorruptCacheError(RuntimeError):
    """A cache file exists but cannot be read back."""


def cache_root() -> Path:
    """The cache folder: ``$SYMSWEEP_CACHE`` or ``~/.cache/symsweep``."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "symsweep")
    return Path(root)


def cache_key(task: str, version: int, params: Mapping) -> str:
    """A stable short hash of what determines a dataset's content."""
    blob = json.dumps({"task": task, "version": version, "params": dict(params)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dataset_path(task: str, version: int, params: Mapping, root: Path | None = None) -> Path:
    root = cache_root() if root is None else Path(root)
    return root / task / f"{cache_key(task, version, params)}.npz"


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise CorruptCacheError(f"cache file {path} is unreadable ({type(err).__name__}: {err})") from err


def _write_atomic(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    meta_path = path.with_suffix(".json")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(meta), handle, indent=1, sort_keys=True, default=str)
    os.replace(tmp, meta_path)


def load_or_generate(
    task: str,
    version: int,
    params: Mapping,
    generate: Callable[[], Mapping[str, np.ndarray]],
    root: Path | None = None,
) -> tuple[dict[str, np.ndarray], Path, bool]:
    """Return ``(arrays, path, generated)`` for a dataset, generating it at most once per node.

    ``generate`` is called with the lock held only when no readable file exists.
    """
    path = dataset_path(task, version, params, root)
    if path.exists():
        try:
            return _read(path), path, False
        except CorruptCacheError:
            pass  # reported once and replaced below, under the lock
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():  # another process finished while we waited for the lock
            try:
                return _read(path), path, False
            except CorruptCacheError as err:
                log.warning("%s; regenerating", err)
                path.unlink()
        start = time.perf_counter()
        arrays = {key: np.asarray(value) for key, value in generate().items()}
        seconds = time.perf_counter() - start
        meta = {"task": task, "version": version, "params": dict(params), "seconds": seconds,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write_atomic(path, arrays, meta)
    return arrays, path, True


def list_cached(root: Path | None = None) -> list[dict]:
    """Every cached dataset with its metadata, size and path."""
    root = cache_root() if root is None else Path(root)
    entries = []
    for meta_path in sorted(root.glob("*/*.json")):
        data_path = meta_path.with_suffix(".npz")
        if not data_path.exists():
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        meta["path"] = str(data_path)
        meta["bytes"] = data_path.stat().st_size
        entries.append(meta)
    return entries
