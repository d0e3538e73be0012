"""Where symsweep changes Ray Tune's internals, and why: each change keeps an experiment whole under a fault
that Tune alone would turn into lost or wrong results. ``tests/orchestrator/test_ray_format.py`` checks that
every internal used here still exists in the installed Ray.

- ``atomic_storage``: Tune copies its staging folder (``experiment_state-*.json``, the searcher's state, each
  trial's ``result.json``) into the experiment with ``pyarrow.fs.copy_files``, which truncates each file and
  writes it anew. A full disk then leaves a truncated state that no ``resume`` can read, and a trial that starts
  while its ``result.json`` is being rewritten reads a torn file (too few recorded epochs: the reports it
  missed are made again, so ``result.json`` holds them twice). Here every file is written to a temporary name
  in its folder and renamed over the old one (readers see the old or the new file, never a part), files that
  did not change since the last copy are skipped (so saving the state at every step stays cheap), a
  state file that Tune did not finish writing is never copied, and a copy during which its source changed (Tune
  truncates its state file to save the next one while the syncer's thread copies the last) is thrown away.
  A failure to write (a full disk, a read-only folder) is recorded once and stops the sweep the way a signal
  does; ``storage_failure`` says what failed.
- ``rebase_restored_searchers``: the searcher's state (pickled by Tune) keeps the experiment's storage as it
  was at launch; trials it creates after a ``resume`` of a moved or copied experiment would write into the old
  folder. After Tune restores the searcher, its storage is pointed at the experiment being resumed, and a
  searcher with ``reconcile`` (``orchestrator.searcher``) is told of the trials that finished after its last
  checkpoint (else it would wait for their results forever) and asked anew even if it had finished (an errored
  trial that a resume completes can make the stopping rule ask for more seeds; it says FINISHED again if not).
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_copied: dict[str, tuple[int, int]] = {}  # destination -> (size, mtime_ns) of the source last copied there
_complete: dict[str, tuple[int, int]] = {}  # staged state file -> its signature when Tune finished writing it
_failure: list[str] = []  # the first storage failure, as one line


class StorageFailure(OSError):
    """Writing into the experiment failed (a full disk, a read-only folder); the message is one line."""


def _signature(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _free(path: Path) -> str:
    for folder in (path, *path.parents):
        try:
            usage = shutil.disk_usage(folder)
        except OSError:
            continue
        return f"{usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.0f} MiB"
    return "free space unknown"


def record_failure(err: OSError, where: Path | str) -> str:
    """Note the first failure to write into the experiment and ask Tune to stop (as on SIGUSR1: trials stopped,
    the last good state kept); returns the one line that describes it."""
    where = Path(where)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        line = f"the disk is full: cannot write {where} ({_free(where)})"
    else:
        line = f"cannot write {where} ({err.strerror or err})"
    with _lock:
        first = not _failure
        if first:
            _failure.append(line)
    if first:
        os.kill(os.getpid(), signal.SIGUSR1)
    return line


def storage_failure() -> str | None:
    """The first failure to write into the experiment since ``reset``, as one line; None when there was none."""
    return _failure[0] if _failure else None


def reset() -> None:
    with _lock:
        _failure.clear()
        _copied.clear()
        _complete.clear()


def _copy_atomically(source: str, destination: str) -> None:
    signature = _signature(source)
    if signature is None or (_copied.get(destination) == signature and os.path.exists(destination)):
        return
    if fnmatch.fnmatch(os.path.basename(source), "experiment_state-*.json") and _complete.get(source) != signature:
        return  # Tune is still writing it (or failed to): the last good state stays in the experiment
    folder, name = os.path.split(destination)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        shutil.copyfile(source, temporary)
        if _signature(source) != signature or os.path.getsize(temporary) != signature[0]:
            os.unlink(temporary)  # the source was rewritten while it was copied (Tune's next save truncates it
            return  # first): this copy may hold a part of it; the next sync copies the file whole
        os.replace(temporary, destination)
    except OSError as err:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise StorageFailure(err.errno, record_failure(err, destination)) from None
    _copied[destination] = signature


def upload_atomically(local_path: str, fs: Any, fs_path: str, exclude: list[str] | None = None) -> None:
    """Ray's ``_upload_to_fs_path`` for a local experiment folder: the same files, each replaced atomically."""
    exclude = exclude or []
    if os.path.isfile(local_path):
        _copy_atomically(local_path, fs_path)
        return
    for root, folders, files in os.walk(local_path):
        relative_root = os.path.relpath(root, local_path)
        for name in sorted(files):
            relative = os.path.normpath(os.path.join(relative_root, name))
            if any(fnmatch.fnmatch(relative, pattern) for pattern in exclude):
                continue
            _copy_atomically(os.path.join(root, name), os.path.join(fs_path, relative))


def atomic_storage() -> None:
    """Install the atomic copy into Ray's syncer (local storage only) and the state-file bookkeeping into
    ``TuneController.save_to_dir``; idempotent."""
    import pyarrow.fs
    from ray.train._internal import storage
    from ray.tune.execution.tune_controller import TuneController

    syncer = storage._FilesystemSyncer  # noqa: SLF001
    if not getattr(syncer._sync_up_command, "symsweep", False):  # noqa: SLF001
        original_command = syncer._sync_up_command  # noqa: SLF001

        def _sync_up_command(self, local_path: str, uri: str, exclude: list | None = None):
            command, kwargs = original_command(self, local_path=local_path, uri=uri, exclude=exclude)
            if isinstance(kwargs.get("fs"), pyarrow.fs.LocalFileSystem):
                return upload_atomically, kwargs
            return command, kwargs

        _sync_up_command.symsweep = True
        syncer._sync_up_command = _sync_up_command  # noqa: SLF001

    if not getattr(TuneController.save_to_dir, "symsweep", False):
        original_save = TuneController.save_to_dir

        def save_to_dir(self) -> None:
            staged = os.path.join(self._storage.experiment_driver_staging_path,  # noqa: SLF001
                                  self.experiment_state_file_name)
            try:
                original_save(self)
            except OSError as err:
                record_failure(err, staged)
                return
            _complete[staged] = _signature(staged)

        save_to_dir.symsweep = True
        TuneController.save_to_dir = save_to_dir
    _quiet_repeated_sync_errors()


class _OneLineSyncErrors(logging.Filter):
    """Tune logs a traceback for every failed copy (hundreds on a full disk): a ``StorageFailure`` is already
    recorded and reported in one line at the end, so its records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, StorageFailure) or "StorageFailure" in record.getMessage())


_FILTER = _OneLineSyncErrors()
SYNC_LOGGERS = ("ray.train._internal.syncer", "ray.tune.execution.experiment_state",
                "ray.tune.execution.tune_controller")


def _quiet_repeated_sync_errors() -> None:
    for name in SYNC_LOGGERS:
        handlers = logging.getLogger(name)
        if _FILTER not in handlers.filters:
            handlers.addFilter(_FILTER)


def rebase_restored_searchers() -> None:
    """After ``TuneController.resume`` restored the searcher, point the storage it creates new trials with at
    the experiment being resumed (it still names the folder of the launch); idempotent."""
    from ray.tune.execution.tune_controller import TuneController

    if getattr(TuneController.resume, "symsweep", False):
        return
    original = TuneController.resume

    def resume(self, resume_config) -> None:
        original(self, resume_config)
        for storage in _searcher_storages(self._search_alg):  # noqa: SLF001
            storage.storage_filesystem = self._storage.storage_filesystem  # noqa: SLF001
            storage.storage_fs_path = self._storage.storage_fs_path  # noqa: SLF001
            storage.experiment_dir_name = self._storage.experiment_dir_name  # noqa: SLF001
        searcher = getattr(self._search_alg, "searcher", None)  # noqa: SLF001
        if hasattr(searcher, "reconcile"):  # orchestrator.searcher: trials that finished after its checkpoint
            searcher.reconcile(self._trials)  # noqa: SLF001
            self._search_alg._finished = False  # noqa: SLF001 - asked anew: an errored trial resumed may need seeds

    resume.symsweep = True
    TuneController.resume = resume


def _searcher_storages(search_alg: Any) -> list:
    """The storage contexts a restored search algorithm creates trials with: the experiment spec of each of a
    ``BasicVariantGenerator``'s iterators and of the variants it has generated but not yet made trials of, or
    a ``SearchGenerator``'s experiment."""
    specs = []
    for iterator in getattr(search_alg, "_iterators", []) or []:
        specs.append(getattr(iterator, "unresolved_spec", None))
        variants = getattr(iterator, "variants", None)
        if variants is not None and not getattr(variants, "lazy_eval", True):
            specs += [spec for _, spec in variants.iterable]
    found = [spec["storage"] for spec in specs if isinstance(spec, dict) and spec.get("storage") is not None]
    experiment = getattr(search_alg, "_experiment", None)
    if experiment is not None and getattr(experiment, "storage", None) is not None:
        found.append(experiment.storage)
    return found
