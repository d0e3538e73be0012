"""Running an experiment: the one function behind ``symsweep launch`` and ``symsweep resume``.

A new experiment gets its directory (created atomically), its lock and ``config.json``; a restored one
is checked first. Then Ray starts (or is attached to), Tune runs or restores the sweep with signals
handled (SIGINT/SIGTERM/SIGHUP stop it cleanly, exit 130), and the tables, plots and summary are
written whatever happened to the trials.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def run_experiment(config: dict, path: Path, new: bool = False, restart_errored: bool = False) -> int:
    """Run a new (``new``: the directory must not exist yet) or restored experiment to the end, then report.

    The one path of ``symsweep launch`` (``new=True``, after its checks) and ``symsweep resume``.

    Exit status: 0 every trial completed, 1 some trial failed, 130 interrupted by a signal (the sweep's
    state is saved; ``symsweep resume PATH`` continues it). Refusals (exit 2) happen before Ray starts."""
    from orchestrator.launcher import save_config
    from orchestrator.recovery import ExperimentLock, check_restorable

    command = "launch" if new else "resume"
    if new:
        _create(path)
    else:
        check_restorable(path)  # before anything is written, the lock included
    lock = ExperimentLock(path)
    try:
        lock.acquire(command)
    except ValueError:
        if new:
            shutil.rmtree(path, ignore_errors=True)  # nothing of ours is in it yet
        raise
    try:
        if new:
            save_config(config, path)
        return _run(config, path, new, restart_errored)
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


def _run(config: dict, path: Path, new: bool, restart_errored: bool) -> int:
    """The sweep with signals handled from start to end: SIGINT/SIGTERM/SIGHUP stop it cleanly (exit 130)."""
    from orchestrator.recovery import INTERRUPTED, StopOnSignal

    with StopOnSignal() as stop:
        try:
            return _fit_and_report(config, path, new, restart_errored, stop)
        except KeyboardInterrupt:  # a signal outside Tune's loop (starting Ray, writing the report) or a second one
            if (path / "tuner.pkl").exists():
                print(f"symsweep: interrupted; the sweep's state is saved. Continue it with: symsweep resume {path}",
                      flush=True)
                return INTERRUPTED
            raise


def _fit_and_report(config: dict, path: Path, new: bool, restart_errored: bool, stop) -> int:
    import ray

    from orchestrator.launcher import check_resources, make_tuner, restore_tuner, start_ray
    from orchestrator.recovery import INTERRUPTED, RestoreFailed, RestoreGuard, set_aside_errored
    from orchestrator.results import load_experiment, report_markdown, write_report
    from orchestrator.session import Session

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables and hints off: Progress is the view
    # Tune saves the experiment's state at most every 10 s by default but deletes a trial's checkpoints beyond
    # the newest two at once: a driver killed in between leaves a state that names a deleted checkpoint, and
    # resuming that trial fails. Saved at every step, the state names one of the two kept checkpoints.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    with Session(embedded=config["cluster"]["address"] is None) as session:
        started = start_ray(config["cluster"])
        stop.install()
        session.started(started)
        try:
            check_resources(config)
            if new:
                tuner = make_tuner(config, path, session.scratch)
            else:
                if restart_errored:
                    set_aside_errored(path)
                tuner = restore_tuner(config, path, restart_errored, session.scratch)
            with RestoreGuard(), stop.tune_listening():
                try:
                    grid = tuner.fit()
                except RestoreFailed as err:
                    raise ValueError(f"Ray Tune cannot restore {path} ({str(err)[:200]}); nothing was run") from None
                except KeyboardInterrupt:  # a second signal: stopped at once
                    grid = None
        finally:
            if started:
                ray.shutdown()
    experiment = load_experiment(path)
    states = write_report(experiment)["by_state"]
    print(report_markdown(experiment))
    print(f"\nresults: {path} (trials.csv, summary.csv, summary.md, plots/)")
    if stop.interrupted or grid is None or _interrupted(grid):
        print(f"symsweep: interrupted; the sweep's state is saved. Continue it with: symsweep resume {path}",
              flush=True)
        return INTERRUPTED
    if grid.errors:
        print(f"symsweep: {len(grid.errors)} trial(s) failed; see trials.csv. Continue them from their last "
              f"checkpoint with: symsweep resume {path}")
        return 1
    short = sum(states.get(state, 0) for state in ("unfinished", "running", "pending"))
    if short and config["sweep"]["scheduler"] != "asha":  # (ASHA stops trials early on purpose)
        # Tune calls them finished, but they did not reach their last epoch: never report that as success
        print(f"symsweep: {short} trial(s) ended before their last epoch; see trials.csv")
        return 1
    return 0


def _interrupted(grid) -> bool:
    """Whether some trial of the finished ``fit`` neither completed nor failed (the sweep was stopped)."""
    trials = getattr(grid, "_experiment_analysis").trials
    return any(trial.status not in ("TERMINATED", "ERROR") for trial in trials)
