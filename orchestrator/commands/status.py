"""``symsweep status PATH [--json]``: trial counts by state and the best result so far, as the experiment's files
hold them now.

Ray Tune's state file says RUNNING for the trials that ran when its driver last saved it; after a crash (a killed
driver, a lost machine) it still does. Those trials are shown as running only while a driver holds the experiment's
lock (``orchestrator.recovery.lock_holder``: the command that holds it is named); otherwise they are
"interrupted", and ``symsweep resume PATH`` continues them."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("status", help="trial counts by state and the best so far", description=__doc__)
    parser.add_argument("path", help="the experiment directory (<storage>/<name>)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


INTERRUPTED = "interrupted"


def on_disk(state: dict, driver: str | None) -> dict:
    """``aggregate.status``'s state with ``driver`` (who holds the experiment's lock, or None) and, when no driver
    holds it, the trials Tune's state calls running counted as interrupted (listed right after running)."""
    running = state["by_state"].get("running", 0) if driver is None else 0
    by_state = {}
    for name, count in state["by_state"].items():
        by_state[name] = count - running if name == "running" else count
        if name == "running":
            by_state[INTERRUPTED] = running
    best = state.get("best")
    if running and best and best.get("state") == "running":
        best = {**best, "state": INTERRUPTED}
    return {**state, "by_state": by_state, "best": best, "driver": driver}


def run(args: argparse.Namespace) -> int:
    from orchestrator import aggregate
    from orchestrator.folder import Folder, one_line
    from orchestrator.recovery import lock_holder

    folder = Folder(args.path)
    state = on_disk(aggregate.status(folder), lock_holder(folder.path))
    folder.warn_skipped("status")
    if args.json:
        print(json.dumps(state, default=str))
        return 0
    counts = ", ".join(f"{count} {name}" for name, count in state["by_state"].items() if count)
    print(f"{state['trials']} trial(s): {counts or 'none yet'}")
    if state["driver"]:
        print(one_line(f"running: {state['driver']}"))
    elif state["by_state"][INTERRUPTED]:
        print(f"{state['by_state'][INTERRUPTED]} interrupted: no symsweep launch or resume runs this experiment (Ray "
              f"Tune's state still says running); continue it with: symsweep resume {state['experiment']}")
    best = state.get("best")
    if best:
        params = ", ".join(f"{k}={v}" for k, v in (best.get("params") or {}).items())
        word = "lowest" if state["mode"] == "min" else "highest"
        print(one_line(f"{word} {state['metric']} = {best['value']:.4g} ({best['state']} trial {best['trial_id']}"
                       + (f": {params})" if params else ")")))
    elif state.get("unranked"):
        print(one_line(f"no best trial: {state['unranked']}"))
    else:
        print(one_line(f"no {state['metric'] or 'result'} reported yet"))
    return 0
