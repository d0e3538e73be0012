"""The ``symsweep`` command line: one program, one subcommand per job.

Each subcommand lives in ``orchestrator/commands/<name>.py`` and provides ``add_parser(subparsers)``
which registers its arguments and sets ``func``. Subcommands take Hydra-style ``key=value``
overrides as positional arguments; heavy imports happen inside the command, not here. The help of
``symsweep`` and of the commands that take overrides ends with the config groups and their options
(``orchestrator.hydra_options.config_groups_help``), built only when help is asked for.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

COMMANDS = ("launch", "resume", "status", "report", "compare", "evaluate", "train", "equivariance", "data", "demo")
COMPOSING = ("launch", "train", "equivariance")  # the commands that compose a config from overrides


class Parser(argparse.ArgumentParser):
    """An argument parser whose help can end with text computed only when the help is printed (``more_help``)."""

    more_help: Callable[[], str] | None = None

    def format_help(self) -> str:
        text = super().format_help()
        return f"{text}\n{self.more_help()}" if self.more_help is not None else text


def build_parser() -> argparse.ArgumentParser:
    from orchestrator.hydra_options import config_groups_help

    parser = Parser(
        prog="symsweep",
        description="Hyperparameter sweeps of symmetrized neural networks on Ray.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f"orchestrator.commands.{name}").add_parser(subparsers)
    parser.more_help = config_groups_help
    for name in COMPOSING:
        subparsers.choices[name].more_help = config_groups_help
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    if os.getcwd() not in sys.path:  # as with `python -m`, and as Ray gives every trial: a package in this folder
        sys.path.append(os.getcwd())  # (model.target=mylab.nets:Net) imports in the driver too
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(token.startswith("-") for token in extra):
        args.overrides = [*args.overrides, *extra]  # key=value after an option: `launch --dry-run a=1`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # configuration errors: one clear line, no traceback
        print(f"symsweep {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before or after a sweep's run (a sweep itself stops cleanly and says how to resume)
        print(f"symsweep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
