"""``symsweep resume PATH [--restart-errored] [--address A] [--allow-changed KEY ...]``: continue an experiment
after a failure.

Completed trials are kept as they are; unfinished trials continue from their last checkpoint, and
so do errored trials (``--restart-errored`` starts those from scratch instead). Works after a crash
of the driver or of the whole cluster: Ray Tune's state lives in the experiment directory. An experiment
that was moved or copied is resumed where it is now and writes only there. ``config.json`` must hold what the
experiment was launched with: an edited key is refused, naming it; keys that cannot change results (where
trials run, retries, logging) are accepted with ``--allow-changed KEY``. An experiment whose files hold every planned
trial completed (or stopped early by ASHA) has nothing to resume: that is said, and nothing starts (exit 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("resume", help="continue an interrupted or failed experiment", description=__doc__)
    parser.add_argument("path", help="the experiment directory (<storage>/<name>)")
    parser.add_argument("--restart-errored", action="store_true", help="restart errored trials from scratch")
    parser.add_argument("--address", help="attach to this Ray cluster instead of the experiment's cluster.address")
    parser.add_argument("--allow-changed", action="append", default=[], metavar="KEY",
                        help="accept an edit of config.json for KEY (comma-separated or repeated; only keys that "
                             "cannot change results, e.g. cluster.max_failures)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.experiment import finished_trials, run_experiment
    from orchestrator.plan import validate
    from orchestrator.records import load_trials
    from orchestrator.recovery import check_restorable
    from orchestrator.stopping import planned_trials
    from orchestrator.stored_config import checked_config

    path = Path(args.path).expanduser().resolve()
    check_restorable(path)  # Ray Tune's own files first: what no setting can mend
    allowed = [key.strip() for option in args.allow_changed for key in option.split(",") if key.strip()]
    config = checked_config(path, allowed)
    config["storage"], config["name"] = str(path.parent), path.name  # a moved or copied experiment: here
    if args.address:
        config["cluster"]["address"] = args.address
    plan = validate(config)
    records = load_trials(path)
    done, planned = finished_trials(records), planned_trials(plan, records)  # with a rule: what it asked so far
    if done >= planned:  # decided from the files, before Ray starts
        print(f"symsweep resume: nothing to do: every planned trial completed ({done} of {planned}); the "
              f"results are in {path} (symsweep report {path} writes the tables again)", flush=True)
        return 0
    return run_experiment(plan, path, restart_errored=args.restart_errored)
