"""``symsweep launch [overrides]``: validate, then run the configured sweep on Ray Tune.

Everything is checked before anything starts (config keys and values, every trial configuration of
the grid, resources the cluster can never give): on an error nothing is started or written. The
experiment goes to ``<storage>/<name>``; at the end the tables and plots are written there and the
summary is printed. The launch prints its plan first (swept keys and domains, pinned values, trials,
metric and mode); ``--dry-run`` prints it with one row per configuration and stops there (``--json``:
one JSON object). Exit status 0 when every trial finished, 1 when some failed (resume them with
``symsweep resume``), 2 on a configuration error (nothing started), 130 when stopped by a signal
(Ctrl-C, SIGTERM, SIGHUP; the sweep's state is saved and ``symsweep resume PATH`` continues it).
``--cfg job`` prints the composed config (YAML) and exits; ``--config-dir DIR`` adds config groups and presets;
``-m`` is accepted and changes nothing (every launch sweeps).
"""

from __future__ import annotations

import argparse

from orchestrator.hydra_options import add_hydra_options


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("launch", help="run a sweep (embedded local Ray, or cluster.address=...)",
                                   description=__doc__)
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides, e.g. experiment=quickstart symmetrizer.noise_scale=0.1,1,10")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything and print the trials that would run; start nothing, write nothing")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print the plan as one JSON object")
    add_hydra_options(parser, sweeps=True)
    parser.set_defaults(func=run)


def _check_local_gpus(plan) -> None:
    """On the embedded local Ray, GPUs this machine lacks are a configuration error before Ray starts."""
    if plan.cluster.address is not None or not plan.cluster.gpus_per_trial:
        return
    import torch

    if torch.cuda.device_count() == 0:
        raise ValueError(f"cluster.gpus_per_trial={plan.cluster.gpus_per_trial:g} but this machine has no GPU "
                         "(embedded local Ray); allowed here: 0, or attach to a GPU cluster with cluster.address")


def _defaults(overrides: list[str], config_dir: str | None = None) -> tuple[dict | None, list[str]]:
    """The config of the same groups (and preset) without the command line's key overrides, and the
    keys the command line pins."""
    from omegaconf import OmegaConf

    from orchestrator.config import composed_keys, parse_command_line

    line = parse_command_line(overrides)
    composed = composed_keys(line.plain, config_dir)
    return (None if composed is None else OmegaConf.to_container(composed, resolve=True)), list(line.pinned)


def prepare(overrides: list[str], config_dir: str | None = None):
    """Everything before Ray: (the sweep plan, experiment path, what the plan prints). Any error is a ValueError
    (one line, exit 2), also for a key deleted with ``~`` that the sweep needs. ``config_dir``: ``--config-dir``."""
    from orchestrator.config import compose
    from orchestrator.experiment import experiment_dir
    from orchestrator.plan import validate
    from orchestrator.plan_text import describe

    config = compose(overrides, config_dir)
    plan = validate(config)
    path = experiment_dir(config)
    if path.exists():
        raise ValueError(f"name={path.name!r}: the experiment {path} already exists; continue it with "
                         f"`symsweep resume {path}` or choose another name=")
    _check_local_gpus(plan)
    config["name"] = path.name
    try:
        summary = describe(plan, *_defaults(overrides, config_dir))
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"the configuration cannot be read ({type(err).__name__}: {err}); was a key the sweep "
                         "needs deleted with ~ or given a value of another shape? See README, Config reference"
                         ) from None
    return plan, path, summary


def run(args: argparse.Namespace) -> int:
    import json

    from orchestrator.config import compose
    from orchestrator.hydra_options import config_yaml, hydra_options
    from orchestrator.plan_text import plan_lines, plan_table

    if args.json and not args.dry_run:
        raise ValueError("--json is an option of --dry-run; allowed: launch --dry-run --json")
    config_dir = hydra_options(args, "launch")
    if args.cfg:  # Hydra's --cfg: the composed config, before the plan checks it (--dry-run checks everything)
        print(config_yaml(compose(args.overrides, config_dir), args.package), end="")
        return 0
    plan, path, summary = prepare(args.overrides, config_dir)
    if args.dry_run:
        if args.json:
            print(json.dumps({"experiment": str(path), **summary}, default=str))
            return 0
        print(f"symsweep launch --dry-run: {plan.checked} trial configuration(s) checked; nothing started or written "
              f"(experiment would be {path})")
        print("\n".join(plan_lines(summary)))
        print(plan_table(summary))
        return 0
    print(f"symsweep: {plan.checked} trial configuration(s) checked; experiment {path}", flush=True)
    print("\n".join(plan_lines(summary)), flush=True)
    from orchestrator.experiment import run_experiment

    return run_experiment(plan, path, new=True)
