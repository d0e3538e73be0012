"""Running an experiment: the one function behind ``symsweep launch`` and ``symsweep resume``.

A new experiment gets its directory (created atomically), its lock and ``config.json``; a restored one
is checked first. Then Ray starts (or is attached to), Tune runs or restores the sweep with signals
handled (SIGINT/SIGTERM/SIGHUP stop it cleanly, exit 130), and the tables, plots and summary are
written whatever happened to the trials.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from orchestrator.plan import SweepPlan

MAX_NAME = 100


def experiment_dir(config: Mapping[str, Any]) -> Path:
    from workers.tasks import task_label

    name = config["name"] or f"{task_label(config['task'])}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "://" in config["storage"]:  # Path() would turn s3://b/x into a local directory ./s3:/b/x
        raise ValueError(f"storage={config['storage']!r}: URI storage (s3://, gs://, ...) is not supported yet; "
                         "allowed: a directory path, on a multi-node cluster one every node mounts (NFS, EFS, "
                         "Filestore), e.g. storage=/mnt/shared/runs")
    if len(name) > MAX_NAME:  # the trial directories below it need room within the file system's 255 bytes
        raise ValueError(f"name={name[:40]!r}... has {len(name)} characters; allowed: at most {MAX_NAME}")
    storage = Path(config["storage"]).expanduser().resolve()
    if storage.exists() and not storage.is_dir():
        raise ValueError(f"storage={config['storage']!r}: {storage} is a file; expected a directory (new or "
                         "existing) for the experiments")
    return storage / name


def run_experiment(plan: SweepPlan, path: Path, new: bool = False, restart_errored: bool = False) -> int:
    """Run a new (``new``: the directory must not exist yet) or restored experiment to the end, then report.

    The one path of ``symsweep launch`` (``new=True``, after its checks) and ``symsweep resume``.

    Exit status: 0 every trial completed, 1 some trial failed, 130 interrupted by a signal (the sweep's
    state is saved; ``symsweep resume PATH`` continues it). Refusals (exit 2) happen before Ray starts."""
    from orchestrator.recovery import ExperimentLock
    from orchestrator.stored_config import save_config

    command = "launch" if new else "resume"
    if new:
        _create(path)  # (resume checked Ray Tune's files before anything is written, the lock included)
    lock = ExperimentLock(path)
    try:
        lock.acquire(command)
    except ValueError:
        if new:
            shutil.rmtree(path, ignore_errors=True)  # nothing of ours is in it yet
        raise
    try:
        if new:
            save_config(plan.config, path)
        return _run(plan, path, new, restart_errored)
    except BaseException:
        if new and not (path / "tuner.pkl").exists():  # refused or stopped before the sweep existed
            lock.release()
            shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        lock.release()


def _create(path: Path) -> None:
    """The experiment directory, created here and now (two launches of one name cannot both get it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError:
        raise ValueError(f"name={path.name!r}: the experiment {path} already exists; continue it with "
                         f"`symsweep resume {path}` or choose another name=") from None
    except OSError as err:
        raise ValueError(f"storage={str(path.parent)!r}: cannot create {path} ({err.strerror or err}); expected a "
                         "writable directory") from None


def _run(plan: SweepPlan, path: Path, new: bool, restart_errored: bool) -> int:
    """The sweep with signals handled from start to end: SIGINT/SIGTERM/SIGHUP stop it cleanly (exit 130)."""
    from orchestrator.recovery import INTERRUPTED, StopOnSignal

    with StopOnSignal() as stop:
        try:
            return _fit_and_report(plan, path, new, restart_errored, stop)
        except KeyboardInterrupt:  # a signal outside Tune's loop (starting Ray, writing the report) or a second one
            if (path / "tuner.pkl").exists():
                print(f"symsweep: interrupted; the sweep's state is saved. Continue it with: symsweep resume {path}",
                      flush=True)
                return INTERRUPTED
            raise


def _fit_and_report(plan: SweepPlan, path: Path, new: bool, restart_errored: bool, stop) -> int:
    import ray

    from orchestrator import tune_patches
    from orchestrator.ray_cluster import check_resources, start_ray
    from orchestrator.recovery import RestoreFailed, RestoreGuard, set_aside_errored
    from orchestrator.session import Session
    from orchestrator.tuner import make_tuner, restore_tuner

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables and hints off: Progress is the view
    # Tune saves the experiment's state at most every 10 s by default but deletes a trial's checkpoints beyond
    # the newest two at once: a driver killed in between leaves a state that names a deleted checkpoint, and
    # resuming that trial fails. Saved at every step, the state names one of the two kept checkpoints (each save
    # copies only the files that changed, each replaced atomically: orchestrator.tune_patches).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    # A trial stopped with the sweep (a signal, a full disk) can leave its last error unread: Ray would print it
    # with a traceback as "Unhandled error" at exit; the trial's own error file holds it.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    tune_patches.reset()
    grid, crashed = None, None
    with Session(embedded=plan.cluster.address is None) as session:
        started = start_ray(plan.cluster)
        stop.install()
        session.started(started)
        try:
            check_resources(plan)
            with RestoreGuard():  # from the restore on: Tune's "Failed to fetch metrics" of unstarted trials, ...
                if new:
                    tuner = make_tuner(plan, path, session.scratch)
                else:
                    if restart_errored:
                        set_aside_errored(path)
                    tuner = restore_tuner(plan, path, restart_errored, session.scratch)
                with stop.tune_listening():
                    try:
                        grid = tuner.fit()
                    except RestoreFailed as err:
                        raise ValueError(f"Ray Tune cannot restore {path} ({str(err)[:200]}); nothing was run"
                                         ) from None
                    except KeyboardInterrupt:  # a second signal: stopped at once
                        stop.interrupted = True
                    except Exception as err:  # Ray's own failure (e.g. its memory monitor): the report still follows
                        crashed = _crash_line(err, path)
        finally:
            if started:
                ray.shutdown()
    return _report(plan, path, grid, stop.interrupted, crashed)


def _crash_line(err: Exception, path: Path) -> str:
    """One line for an exception that ended Ray Tune's loop; its traceback goes to ``driver_error.txt``."""
    import traceback

    from orchestrator.folder import Folder

    try:
        where = f"; traceback in {Folder(path).write_text('driver_error.txt', traceback.format_exc())}"
    except OSError:
        where = ""
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}{where}"


def _report(plan: SweepPlan, path: Path, grid, interrupted: bool, crashed: str | None) -> int:
    """Write the tables and plots, print the summary, and decide the exit status from the experiment's files:
    0 only when every planned trial completed (or was stopped early on purpose by ASHA)."""
    from orchestrator import tune_patches
    from orchestrator.folder import FolderError
    from orchestrator.recovery import INTERRUPTED
    from orchestrator.results import load_experiment, report_markdown, write_report

    hint = f"symsweep resume {path}"
    experiment = load_experiment(path)
    try:
        write_report(experiment)
    except (OSError, FolderError) as err:  # a full disk, a folder made read-only meanwhile: the sweep's files stay
        reason = err if isinstance(err, FolderError) else f"{err.strerror or err}: {err.filename or path}"
        print(f"symsweep: the tables and plots could not be written ({reason}); write them later with: symsweep "
              f"report {path}", flush=True)
    print(report_markdown(experiment))
    print(f"\nresults: {path} (trials.csv, summary.csv, summary.md, plots/)")
    failure = tune_patches.storage_failure()
    if failure:
        print(f"symsweep: {failure}; the sweep stopped and its last complete state is kept. Free space (or make the "
              f"folder writable), then continue it with: {hint}", flush=True)
        return 1
    if crashed:
        print(f"symsweep: Ray stopped the sweep ({crashed}); its state is saved. Continue it with: {hint}", flush=True)
        return 1
    if interrupted or grid is None or _interrupted(grid):
        print(f"symsweep: interrupted; the sweep's state is saved. Continue it with: {hint}", flush=True)
        return INTERRUPTED
    return _outcome(plan, path, experiment.records, hint)


def finished_trials(records) -> int:
    """How many of the experiment's trials (``records``, read from its files) are done as planned: completed, or
    stopped early by ASHA on purpose (``records.FINISHED``). The exit status is 0 when they are the plan's
    planned trials (``stopping.planned_trials``), and ``resume`` then has nothing to do."""
    from orchestrator.records import FINISHED

    return sum(record.state in FINISHED for record in records)


def _outcome(plan: SweepPlan, path: Path, records, hint: str) -> int:
    """Exit status 0 when the files hold every planned trial completed; else one line saying what is short."""
    from collections import Counter

    from orchestrator.folder import Folder
    from orchestrator.records import FINISHED
    from orchestrator.stopping import planned_trials
    from workers.trial import DETERMINISTIC

    planned = planned_trials(plan, records)  # with a stopping rule: what the rule asked, recomputed from the files
    short = planned - finished_trials(records)
    if short <= 0:
        return 0
    counts = Counter(record.state for record in records if record.state not in FINISHED)
    counts["never started"] = planned - len(records)
    what = ", ".join(f"{count} {state}" for state, count in counts.items() if count > 0)
    print(f"symsweep: {short} of {planned} planned trial(s) did not complete ({what}); see trials.csv.", flush=True)
    folder = Folder(path)
    repeat = sum(record.state == "errored" and bool(record.dirname)
                 and folder.kind(f"{record.dirname}/{DETERMINISTIC}") == "file" for record in records)
    if repeat >= short:
        print(f"symsweep: {repeat} trial(s) failed in a way a resume repeats (a non-finite loss or a setting the trial "
              "refused; see trials.csv): change the settings and launch a new experiment", flush=True)
    else:
        also = f" ({repeat} failed in a way a resume repeats; see trials.csv)" if repeat else ""
        print(f"symsweep: continue them from their last checkpoint with: {hint}{also}", flush=True)
    return 1


def _interrupted(grid) -> bool:
    """Whether some trial of the finished ``fit`` neither completed nor failed (the sweep was stopped)."""
    trials = getattr(grid, "_experiment_analysis").trials
    return any(trial.status not in ("TERMINATED", "ERROR") for trial in trials)
