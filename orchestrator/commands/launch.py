"""``symsweep launch [overrides]``: validate, then run the configured sweep on Ray Tune.

Everything is checked before anything starts (config keys and values, every trial configuration of
the grid, resources the cluster can never give): on an error nothing is started or written. The
experiment goes to ``<storage>/<name>``; at the end the tables and plots are written there and the
summary is printed. Exit status 0 when every trial finished, 1 when some failed (resume them with
``symsweep resume``), 2 on a configuration error (nothing started), 130 when stopped by a signal
(Ctrl-C, SIGTERM, SIGHUP; the sweep's state is saved and ``symsweep resume PATH`` continues it).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("launch", help="run a sweep (embedded local Ray, or cluster.address=...)",
                                   description=__doc__)
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides, e.g. experiment=quickstart symmetrizer.noise_scale=0.1,1,10")
    parser.set_defaults(func=run)


def _check_local_gpus(config: dict) -> None:
    """On the embedded local Ray, GPUs this machine lacks are a configuration error before Ray starts."""
    if config["cluster"]["address"] is not None or not config["cluster"]["gpus_per_trial"]:
        return
    import torch

    if torch.cuda.device_count() == 0:
        raise ValueError(f"cluster.gpus_per_trial={config['cluster']['gpus_per_trial']} but this machine has no GPU "
                         "(embedded local Ray); allowed here: 0, or attach to a GPU cluster with cluster.address")


def run(args: argparse.Namespace) -> int:
    from orchestrator.config import compose
    from orchestrator.launcher import experiment_dir
    from orchestrator.sweep import validate

    config = compose(args.overrides)
    checked = validate(config)
    path = experiment_dir(config)
    if path.exists():
        raise ValueError(f"name={path.name!r}: the experiment {path} already exists; continue it with "
                         f"`symsweep resume {path}` or choose another name=")
    _check_local_gpus(config)
    config["name"] = path.name
    print(f"symsweep: {checked} trial configuration(s) checked; experiment {path}", flush=True)
    from orchestrator.commands.resume import execute

    return execute(config, path, new=True)
