"""``symsweep resume PATH [--restart-errored]``: continue an experiment after a failure.

Completed trials are kept as they are; unfinished trials continue from their last checkpoint, and
so do errored trials (``--restart-errored`` starts those from scratch instead). Works after a crash
of the driver or of the whole cluster: Ray Tune's state lives in the experiment directory.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("resume", help="continue an interrupted or failed experiment", description=__doc__)
    parser.add_argument("path", help="the experiment directory (<storage>/<name>)")
    parser.add_argument("--restart-errored", action="store_true", help="restart errored trials from scratch")
    parser.add_argument("--address", help="attach to this Ray cluster instead of the experiment's cluster.address")
    parser.set_defaults(func=run)


def execute(config: dict, path: Path, tuner=None, restart_errored: bool = False) -> int:
    """Run a new (``tuner`` None and no directory) or restored experiment to the end, then report."""
    import ray

    from orchestrator import aggregate
    from orchestrator.launcher import check_resources, make_tuner, restore_tuner, save_config, start_ray

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own tables and hints off: Progress is the view
    started = start_ray(config["cluster"])
    try:
        check_resources(config)
        if not path.exists():
            save_config(config, path)
            tuner = make_tuner(config, path)
        else:
            tuner = restore_tuner(config, path, restart_errored)
        grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    aggregate.write_report(path)
    print(aggregate.summary_table(path))
    print(f"\nresults: {path} (trials.csv, summary.csv, summary.md, plots/)")
    if grid.errors:
        print(f"symsweep: {len(grid.errors)} trial(s) failed; see trials.csv. Continue them from their last "
              f"checkpoint with: symsweep resume {path}")
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    from orchestrator.launcher import load_config

    path = Path(args.path).expanduser().resolve()
    config = load_config(path)
    if args.address:
        config["cluster"]["address"] = args.address
    return execute(config, path, restart_errored=args.restart_errored)
