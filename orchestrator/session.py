"""Nothing of a sweep's embedded Ray outlives its driver, however the driver ends.

``Session`` (around one ``launch``/``resume``) makes the folder for the trials' temporary files (and the
driver's W&B folders, see ``import_wandb_into``) and starts a small watcher process in its own session
(``python -m orchestrator.session``). The watcher records, every half second, the Ray processes descending
from the driver (Ray's control store, raylet, agents, workers: identified by process id AND start time, so a
reused id is never hit). When the driver ends — normally, by a signal, or SIGKILL (its end of a pipe closes in
every case) — the watcher kills the recorded processes still alive and removes the temporary folder. A clean
end (``ray.shutdown``) leaves it nothing to kill.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WATCH_EVERY_S = 0.5


class Session:
    """The temporary folder of a sweep's trials (``scratch``) and, for an embedded Ray, its watcher."""

    def __init__(self, embedded: bool):
        self.embedded = embedded
        self.scratch: str | None = None
        self.watcher: subprocess.Popen | None = None

    def __enter__(self) -> "Session":
        if not self.embedded:  # on a cluster the trials run elsewhere: the system's temporary folder there
            return self
        self.scratch = tempfile.mkdtemp(prefix="symsweep-run-")
        with contextlib.suppress(ImportError):
            import_wandb_into(self.scratch)
        self.watcher = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.session", str(os.getpid()), self.scratch], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                                            os.environ.get("PYTHONPATH")]))})
        return self

    def started(self, started: bool) -> None:
        """Tell the watcher the embedded Ray is up (it records from now on)."""
        if self.watcher is not None and started:
            self.watcher.stdin.write(b"watch\n")
            self.watcher.stdin.flush()

    def __exit__(self, *exc) -> None:
        if self.watcher is None:
            return
        self.watcher.stdin.close()  # the same signal the watcher gets when this process is killed
        try:
            self.watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def import_wandb_into(folder: str) -> None:
    """Import W&B (ImportError when it is not installed) with ``folder`` as the temporary root, unless imported.

    On import W&B makes folders in the temporary root (``tmp*wandb-media``, ``tmp*wandb-artifacts``) that only a
    normal exit removes, and Ray Tune imports it in every sweep, W&B logging on or off: in the sweep's scratch
    folder they go with it, also when the driver is SIGKILLed."""
    if "wandb" in sys.modules:
        return
    before, tempfile.tempdir = tempfile.tempdir, folder
    try:
        import wandb  # noqa: F401
    finally:
        tempfile.tempdir = before


# -- the watcher process ----------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _is_ray(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"ray" in command


def descendants(root: int) -> dict[int, int]:
    """Ray processes below ``root``: pid -> start time."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[1]
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in starts and pid != os.getpid():
            if _is_ray(pid):
                found[pid] = starts[pid]
            todo.extend(children.get(pid, []))
    return found


def reap(tracked: dict[int, int]) -> list[int]:
    """SIGKILL every tracked process still alive (same pid and start time); returns their pids."""
    killed = []
    for pid, start in tracked.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


def watch(driver: int, scratch: str) -> None:
    tracked: dict[int, int] = {}
    watching = False
    while True:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], WATCH_EVERY_S)
        if ready:
            data = os.read(sys.stdin.fileno(), 4096)
            if not data:
                break  # the driver ended (or was killed)
            watching = True
        if watching:
            tracked.update(descendants(driver))
    tracked.update(descendants(driver))  # a process that outlived its driver is reparented: still recorded ones
    for _ in range(3):  # a raylet killed last may have started a worker meanwhile: look again
        children = {pid: start for parent in list(tracked) for pid, start in descendants(parent).items()}
        tracked.update(children)
        if not reap(tracked):
            break
        time.sleep(0.2)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is for the driver, not for us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(int(sys.argv[1]), sys.argv[2])
