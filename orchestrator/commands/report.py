"""``symsweep report PATH``: (re)write trials.csv, summary.csv, summary.md and plots/ from the
experiment directory, at any time: during a sweep, after it, or after a failure."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write the tables and plots of an experiment", description=__doc__)
    parser.add_argument("path", help="the experiment directory (<storage>/<name>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.results import load_experiment, report_markdown, write_report

    path = Path(args.path).expanduser().resolve()
    experiment = load_experiment(path)
    written = write_report(experiment)
    print(report_markdown(experiment))
    counts = ", ".join(f"{count} {state}" for state, count in written["by_state"].items() if count)
    print(f"\n{written['trials']} trial(s) ({counts or 'none yet'}); wrote {len(written['files'])} file(s) in {path}")
    return 0
