"""What keeps an experiment whole under faults: one driver at a time, state checked before Ray restores it,
signals turned into a clean stop, deterministic failures not retried.

- ``ExperimentLock``: an ``flock`` on ``<experiment>/.symsweep.lock``, held while a ``launch``/``resume`` runs;
  a second one is refused naming the holder. The kernel drops the lock when its holder dies, so a stale lock
  (a killed driver) is simply taken over; ``lock_holder`` says whether a driver holds it now (``status``).
- ``check_restorable``: ``tuner.pkl`` and the newest ``experiment_state-*.json`` must be readable before Ray
  Tune is asked to restore them (Tune would otherwise log a traceback and start a new experiment), and the
  experiment's folders writable.
- ``RestoreGuard``: if Ray Tune still fails to restore, stop instead of letting it start trials it did not plan.
- ``StopOnSignal``: SIGINT/SIGTERM/SIGHUP end the sweep the way Tune ends on SIGUSR1 (experiment state saved,
  trials stopped), then the command exits 130 and prints ``symsweep resume PATH``.
- ``no_retry_of_deterministic_failures``: a trial that wrote ``workers.trial.DETERMINISTIC`` is not retried.

The experiment's own files are handled through ``orchestrator.folder``: the lock file is never a link, the state
is read bounded, errored trials are moved only from real directories into a real ``.restarted/``. Ray Tune's
pickles (``tuner.pkl``) are Tune's to read: resume only experiments you or someone you trust wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickletools
import signal
import socket
import sys
import time
from pathlib import Path

from orchestrator.folder import RESULTS_LIMIT, Folder, FolderError
from orchestrator.records import load_trials, state_files
from workers.trial import DETERMINISTIC

LOCK_FILE = ".symsweep.lock"
INTERRUPTED = 130


class ExperimentLock:
    """Exclusive use of one experiment directory by one driver process.

    The lock file exists only while held (removed on release; a killed holder leaves it, and its flock is
    gone with it, so the next driver takes it over). A lock taken on a file that was meanwhile removed is
    retried on the new file, so two drivers never both hold one."""

    def __init__(self, path: Path):
        self.folder = Folder(path)
        self.file = self.folder.path / LOCK_FILE
        self.handle = None

    def _open(self):
        """The lock file, made if missing: a regular file of the experiment, never a link planted there."""
        try:
            return os.fdopen(self.folder.open_file(LOCK_FILE, os.O_RDWR, create=True), "r+")
        except FolderError as err:
            raise ValueError(f"{err}: it cannot be the experiment's lock; remove it, then run symsweep resume "
                             "again") from None

    def acquire(self, command: str) -> "ExperimentLock":
        deadline = time.monotonic() + PROBE_GRACE_S
        while True:
            handle = self._open()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if time.monotonic() < deadline:  # perhaps only `symsweep status` looking (``lock_holder``)
                    handle.close()
                    time.sleep(PROBE_GRACE_S / 10)
                    continue
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise ValueError(f"{self.file.parent} is in use by {holder}; wait for it to end (or stop that "
                                 "process), then run symsweep resume again") from None
            try:
                same = os.fstat(handle.fileno()).st_ino == os.lstat(self.file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()  # the holder released and removed it while we opened it: take the new one
        handle.seek(0)
        handle.truncate()
        handle.write(f"symsweep {command} (pid {os.getpid()} on {socket.gethostname()}, since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.file.unlink(missing_ok=True)  # while still held: nobody can be holding the file removed
            self.handle.close()
            self.handle = None


PROBE_GRACE_S = 0.5  # a lock found taken is tried again for this long: `status` may be probing it (microseconds)


def lock_holder(path: str | os.PathLike | Folder) -> str | None:
    """Who runs the experiment now: the line its driver wrote into the held lock (``symsweep resume (pid ... on
    host, since ...)``), or None when no driver holds the lock (none runs, or the one that did was killed: the kernel
    dropped its lock with it).

    Read only: the lock file is never created, and a shared lock on it is taken and dropped at once (a driver that
    tries to take the lock in that instant tries again, ``PROBE_GRACE_S``). A lock file that is not a regular file
    is no lock any driver holds."""
    folder = Folder.of(path)
    try:
        handle = os.fdopen(folder.open_file(LOCK_FILE), "r", errors="replace")
    except (FolderError, OSError):
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return handle.read(500).strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def check_restorable(path: Path) -> None:
    """Refuse (one line naming the file and the way out) what Ray Tune cannot restore."""
    if not (path / "tuner.pkl").is_file():
        raise ValueError(f"{path / 'tuner.pkl'} is missing: Ray Tune's record of this sweep is gone and it cannot be "
                         f"resumed; its results so far stay readable (symsweep report {path}); to run the sweep again "
                         "use symsweep launch with another name=")
    check_whole_and_writable(path)
    folder = Folder(path)
    states = state_files(folder)
    if not states:
        raise ValueError(f"{path} has no experiment_state-*.json (the sweep never saved its state); launch it again "
                         "with another name=")
    newest = folder.path / states[-1]
    try:
        state = folder.read_json(states[-1], RESULTS_LIMIT)
        if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list):
            raise FolderError(newest, "a JSON value without a trial_data list")
    except FolderError as err:
        older = f"; delete it to resume from the previous state {states[-2]}" if len(states) > 1 else (
            "; no older state file exists: launch the sweep again with another name=")
        raise ValueError(f"{newest} is corrupted: {err.reason}{older}") from None


def check_whole_and_writable(path: Path) -> None:
    """Refuse a truncated ``tuner.pkl`` and a folder resume cannot write to, before Ray starts.

    ``tuner.pkl`` is never unpickled here (that would run code from it): its opcodes are walked without
    executing them (``pickletools.genops``) and must end with STOP. Resuming writes the lock, Tune's state,
    trials' reports and checkpoints into the experiment and its trial directories: each must be writable."""
    pickled = path / "tuner.pkl"
    try:
        with pickled.open("rb") as handle:
            for _ in pickletools.genops(handle):  # raises unless the opcodes end with STOP
                pass
    except (OSError, ValueError) as err:
        raise ValueError(f"{pickled} is truncated or unreadable ({type(err).__name__}: {str(err)[:80]}): Ray Tune's "
                         f"record of this sweep is damaged and it cannot be resumed; its results so far stay readable "
                         f"(symsweep report {path}); to run the sweep again use symsweep launch with another name="
                         ) from None
    for folder, _, _ in os.walk(path):
        if not os.access(folder, os.W_OK):
            raise ValueError(f"{folder} is not writable: symsweep resume writes the lock, Ray Tune's state and the "
                             f"trials' reports and checkpoints there; make it writable (chmod -R u+w {path}) or "
                             f"resume a writable copy (cp -r {path} COPY; symsweep resume COPY)")


class RestoreFailed(RuntimeError):
    """Ray Tune could not restore the experiment's state (it would have started a new experiment instead)."""


class RestoreGuard(logging.Filter):
    """Ray Tune logs "Failed to restore the run state." and goes on with a NEW experiment (trials it never
    planned, no swept values). This filter, on Tune's controller logger, turns that log record into an
    exception that leaves ``Tuner.fit``. It also drops Tune's own "Tuner.restore(...)" hints and its "Stop
    signal received (e.g. via SIGINT/Ctrl+C)" (symsweep says why it stops, and prints ``symsweep resume PATH``)."""

    LOGGERS = ("ray.tune.execution.tune_controller", "ray.tune.tune", "ray.tune.analysis.experiment_analysis")
    # Tune's hints and its per-failure tracebacks: symsweep prints its own line for each (the progress line's
    # "failed ..." with the error, the final counts and ``symsweep resume PATH``); error.txt keeps the traceback
    DROPPED = ("Tuner.restore(", "Restarting experiment", "Stop signal received", "Trial task failed for trial",
               "Trials did not complete", "Failed to fetch metrics for")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Failed to restore the run state"):
            raise RestoreFailed(str(record.exc_info[1]) if record.exc_info else message)
        return not any(text in message for text in self.DROPPED)

    def __enter__(self) -> "RestoreGuard":
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


class StopOnSignal:
    """While active, SIGINT, SIGTERM and SIGHUP stop the sweep cleanly. Inside Tune's loop
    (``tune_listening``) the first one asks Ray Tune to stop the way it does on SIGUSR1 (trials stopped, the
    sweep's state saved); outside it, or a second one, raises KeyboardInterrupt (Ray is shut down on the way
    out). ``interrupted`` says whether a signal arrived."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.interrupted = False
        self.listening = False
        self.previous: dict = {}

    def _handle(self, signum, frame) -> None:
        first = not self.interrupted
        self.interrupted = True
        if not (first and self.listening):
            raise KeyboardInterrupt
        print(f"\nsymsweep: {signal.Signals(signum).name} received: stopping the trials and saving the sweep's "
              "state (again to stop at once)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)

    @contextlib.contextmanager
    def tune_listening(self):
        """Ray Tune's loop runs (its SIGUSR1 handler is installed by ``fit``); a signal that arrived before is
        passed on at once."""
        self.listening = True
        before = signal.signal(signal.SIGUSR1, _stop_now)  # until Tune installs its own: stop at once, cleanly
        try:
            yield self
        finally:
            self.listening = False
            signal.signal(signal.SIGUSR1, before)

    def __enter__(self) -> "StopOnSignal":
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune keeps its SIGUSR1 handler: that is the one used
        for signum in self.SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def install(self) -> None:
        """Take the signals back: ``ray.init`` installs its own SIGTERM handler (which only logs and exits)."""
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _stop_now(signum, frame) -> None:
    raise KeyboardInterrupt


def no_retry_of_deterministic_failures() -> None:
    """A trial whose worker marked its failure deterministic (``workers.trial.DETERMINISTIC``: a non-finite loss,
    a configuration error) fails for good instead of being retried ``cluster.max_failures`` times: the retry
    would fail the same way. Ray Tune asks ``Trial.should_recover`` after each failure and has no hook before
    that decision, so the check is added there (in this driver process only). Should the mark not be visible
    yet, the retried trial sees it and fails at once by itself."""
    from ray.tune.experiment.trial import Trial

    original = Trial.should_recover
    if getattr(original, "symsweep", False):
        return

    def should_recover(self) -> bool:
        try:
            where = self.path  # the trial directory in the experiment's storage (where the worker writes the mark)
        except RuntimeError:  # no directory yet: it never ran
            where = None
        if where and (Path(where) / DETERMINISTIC).is_file():
            return False
        return original(self)

    should_recover.symsweep = True
    Trial.should_recover = should_recover


RESTARTED = ".restarted"


def set_aside_errored(path: Path) -> list[Path]:
    """Before ``--restart-errored``: move each errored trial's directory to ``<experiment>/.restarted/`` (kept,
    not counted). Ray Tune restarts such a trial under a new id and directory; the old one would otherwise
    stay in the experiment and be counted as a second trial of the same configuration."""
    folder = Folder(path)
    moved = []
    for record in load_trials(folder):
        name = folder.trial_directory(record.dirname) if record.state == "errored" else None
        if name:
            folder.directory(RESTARTED)  # a real directory of the experiment (a link there is replaced)
            folder.remove(f"{RESTARTED}/{name}")
            moved.append(folder.move(name, f"{RESTARTED}/{name}"))
    return moved


# Ray releases whose experiment-state files (read directly by orchestrator/records.py) and Tune internals (the
# patched above, in tuner.py and tune_patches.py) tests/orchestrator/test_ray_format.py was run against. pyproject.toml
# pins ray to RAY_SUPPORTED; widen both only after that test (and test_faults.py) pass on the new release.
RAY_TESTED = ("2.60.0",)
RAY_SUPPORTED = ">=2.60,<2.61"
