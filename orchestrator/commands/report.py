"""``symsweep report PATH``: (re)write trials.csv, summary.csv, summary.md and plots/ from the
experiment directory, at any time: during a sweep, after it, or after a failure.

Safe on a folder someone else wrote: it reads and writes only inside it (``orchestrator.folder``); a damaged
trial file is skipped and named on stderr, and the trial shows as it can."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write the tables and plots of an experiment", description=__doc__)
    parser.add_argument("path", help="the experiment directory (<storage>/<name>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator.folder import Folder
    from orchestrator.results import load_experiment, report_markdown, write_report

    folder = Folder(args.path)
    path = folder.path
    experiment = load_experiment(folder)
    written = write_report(experiment)
    folder.warn_skipped("report")
    print(report_markdown(experiment))
    counts = ", ".join(f"{count} {state}" for state, count in written["by_state"].items() if count)
    print(f"\n{written['trials']} trial(s) ({counts or 'none yet'}); wrote {len(written['files'])} file(s) in {path}")
    return 0
