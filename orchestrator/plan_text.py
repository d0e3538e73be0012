"""The sweep plan in words: what ``launch`` prints before it starts, and ``launch --dry-run [--json]``."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from orchestrator.config import trial_config
from orchestrator.domains import Domain
from orchestrator.plan import SweepPlan


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, Mapping) or not node:
        return {prefix.rstrip("."): node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def pinned_values(plan: SweepPlan, defaults: Mapping[str, Any] | None, command_line: Iterable[str] = ()
                  ) -> dict[str, Any]:
    """Trial keys set on the command line, and those whose value differs from ``defaults`` (the same config groups
    without key overrides); swept keys left out."""
    swept = set(plan.domains)
    ours = _flat(plan.base)
    theirs = _flat(trial_config(dict(defaults))) if defaults is not None else ours
    named = {key for key in command_line if key in ours}
    return {key: value for key, value in ours.items()
            if key not in swept and not any(key.startswith(k + ".") for k in swept)
            and (key in named or theirs.get(key) != value)}


def _configuration(values: Mapping[str, Any]) -> dict[str, Any]:
    """A point as JSON: a key it does not read is null (numbers stay numbers) and listed under ``unused``."""
    from workers import UNUSED

    unused = [key for key, value in values.items() if value == UNUSED]
    return {**{key: None if key in unused else value for key, value in values.items()},
            **({"unused": unused} if unused else {})}


def describe(plan: SweepPlan, defaults: Mapping[str, Any] | None = None, command_line: Iterable[str] = ()
             ) -> dict[str, Any]:
    """Everything a launch of ``plan`` will do, as one JSON-ready dict (``--dry-run --json``)."""
    from orchestrator.stopping import Design

    _, worker = plan.resources()
    devices = plan.trainer.devices
    design = Design.of(plan)  # a stopping rule: n_trials at start, up to n_trials_at_most
    rule = {"rule": plan.rule.text(), "n_trials_at_most": design.at_most(), "compared_pairs": len(design.pairs)
            } if design is not None else {}
    return {"metric": plan.metric, "mode": plan.mode, "search": plan.sweep.search,
            "collapsed": plan.describe_collapse(), "scheduler": plan.sweep.scheduler,
            "swept": {key: domain.as_config() for key, domain in plan.domains.items()},
            "pinned": pinned_values(plan, defaults, command_line), "seeds": list(plan.seeds),
            "configurations": [_configuration(point.values) for point in plan.points], "n_trials": plan.n_trials,
            "resources_per_trial": {"cpus": worker["cpus"] * devices, "gpus": worker["gpus"] * devices},
            "max_concurrent": plan.sweep.max_concurrent, "epochs": plan.trainer.epochs,
            "analyses": plan.analyses.lines(), **rule}


def plan_lines(summary: Mapping[str, Any]) -> list[str]:
    """The plan as the launch prints it: swept keys with their domains, pinned values, trials, metric, analyses."""
    lines = [f"metric: {summary['metric']} ({summary['mode']}); search {summary['search']}, "
             f"scheduler {summary['scheduler']}"]
    for key, domain in summary["swept"].items():
        lines.append(f"swept:  {key}: {Domain.parse(key, domain).text()}")
    for key, value in summary["pinned"].items():
        lines.append(f"pinned: {key}={value if isinstance(value, str) else json.dumps(value)}")
    resources = summary["resources_per_trial"]
    if summary.get("collapsed"):
        lines.append(f"collapsed: {summary['collapsed']}")
    start = " at start" if "n_trials_at_most" in summary else ""
    lines.append(f"trials: {summary['n_trials']}{start} = {len(summary['configurations'])} configuration(s) x "
                 f"{len(summary['seeds'])} seed(s) {summary['seeds']}; each {resources['cpus']:g} CPU(s), "
                 f"{resources['gpus']:g} GPU(s), {summary['epochs']} epochs")
    if "n_trials_at_most" in summary:
        lines.append(f"trials: at most {summary['n_trials_at_most']}: seeds are added one at a time to both sides "
                     f"of each of the {summary['compared_pairs']} compared pair(s) still unresolved, "
                     f"{summary['rule']}")
    lines.extend(summary.get("analyses", []))
    return lines


def plan_table(summary: Mapping[str, Any]) -> str:
    """The distinct configurations as a Markdown table (one row each; every row runs every seed)."""
    from workers import UNUSED

    rows = summary["configurations"]
    keys = list(dict.fromkeys(key for row in rows for key in row if key != "unused"))
    header = ["#", *keys, "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    seeds = ",".join(map(str, summary["seeds"]))
    for index, row in enumerate(rows, 1):
        cells = [UNUSED if key in row.get("unused", ()) else row.get(key) for key in keys]
        lines.append("| " + " | ".join([str(index)] + [c if isinstance(c, str) else json.dumps(c) for c in cells]
                                       + [seeds]) + " |")
    return "\n".join(lines)
