"""``symsweep status PATH [--json]``: trial counts by state and the best result so far."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("status", help="trial counts by state and the best so far", description=__doc__)
    parser.add_argument("path", help="the experiment directory (<storage>/<name>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from orchestrator import aggregate
    from orchestrator.folder import Folder, one_line

    folder = Folder(args.path)
    state = aggregate.status(folder)
    folder.warn_skipped("status")
    if args.json:
        print(json.dumps(state, default=str))
        return 0
    counts = ", ".join(f"{count} {name}" for name, count in state["by_state"].items() if count)
    print(f"{state['trials']} trial(s): {counts or 'none yet'}")
    best = state.get("best")
    if best:
        params = ", ".join(f"{k}={v}" for k, v in (best.get("params") or {}).items())
        print(one_line(f"best {state['metric']} = {best['value']:.4g} ({best['state']} trial {best['trial_id']}"
                       + (f": {params})" if params else ")")))
    elif state.get("unranked"):
        print(one_line(f"no best trial: {state['unranked']}"))
    else:
        print(one_line(f"no {state['metric'] or 'result'} reported yet"))
    return 0
