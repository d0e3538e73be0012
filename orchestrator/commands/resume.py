"""``symsweep resume PATH [--restart-errored]``: continue an experiment after a failure.

Completed trials are kept as they are; unfinished trials continue from their last checkpoint, and
so do errored trials (``--restart-errored`` starts those from scratch instead). Works after a crash
of the driver or of the whole cluster: Ray Tune's state lives in the experiment directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("resume", help="continue an interrupted or failed experiment", description=__doc__)
    parser.add_argument("path", help="the experiment directory (<storage>/<name>)")
    parser.add_argument("--restart-errored", action="store_true", help="restart errored trials from scratch")
    parser.add_argument("--address", help="attach to this Ray cluster instead of the experiment's cluster.address")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.experiment import run_experiment
    from orchestrator.launcher import load_config

    path = Path(args.path).expanduser().resolve()
    config = load_config(path)
    config["storage"], config["name"] = str(path.parent), path.name  # a moved or copied experiment: here
    if args.address:
        config["cluster"]["address"] = args.address
    return run_experiment(config, path, restart_errored=args.restart_errored)
