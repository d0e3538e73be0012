"""``symsweep data``: generate (or reuse) a task's dataset in the on-disk cache; list the cache.

    symsweep data generate task=NAME [key=value | task.key=value ...] [--json]
    symsweep data list [--json]

The cache folder is ``$SYMSWEEP_CACHE`` (default ``~/.cache/symsweep``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from orchestrator.overrides import parse_overrides

TASK_KEYS = ("task", "task.name")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="generate or list cached datasets", description=__doc__.split("\n\n")[0]
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    generate = actions.add_parser(
        "generate", help="generate (or reuse) one dataset and print its statistics",
        description="Generate a task's dataset into the cache, or reuse the cached copy.",
    )
    generate.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                          help="task=NAME, then task parameters as key=value or task.key=value")
    generate.add_argument("--json", action="store_true", help="print exactly one JSON object")
    generate.set_defaults(func=run_generate)
    listing = actions.add_parser("list", help="show the cached datasets", description="Show the cached datasets.")
    listing.add_argument("--json", action="store_true", help="print exactly one JSON object")
    listing.set_defaults(func=run_list)


def split_task_overrides(tokens: list[str]) -> tuple[str, dict[str, Any]]:
    """``["task=pattern", "seed=1", "task.max_nodes=200"]`` -> ``("pattern", {"seed": 1, "max_nodes": 200})``."""
    from workers.tasks import REGISTRY

    name, params = None, {}
    for key, value in parse_overrides(tokens).items():
        if key in TASK_KEYS:
            name = value
        else:
            params[key.removeprefix("task.")] = value
    if name is None:
        raise ValueError(f"task=NAME is required; allowed: {', '.join(sorted(REGISTRY))}")
    return str(name), params


def run_generate(args: argparse.Namespace) -> int:
    from workers.tasks import get_task

    name, params = split_task_overrides(args.overrides)
    task = get_task(name, **params)
    data = task.load()
    fields = {
        split: {key: {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
                for key, value in tensors.items()}
        for split, tensors in data.splits.items()
    }
    report = {
        "task": data.task,
        "params": task.params,
        "path": str(data.path),
        "bytes": data.path.stat().st_size,
        "generated": data.generated,
        "seconds": round(data.seconds, 3),
        "splits": {split: data.size(split) for split in data.splits},
        "fields": fields,
    }
    if args.json:
        print(json.dumps(report, default=str))
        return 0
    action = "generated" if data.generated else "reused from the cache"
    print(f"{data.task}: {action} in {data.seconds:.2f} s")
    print(f"path:   {data.path} ({report['bytes'] / 1e6:.1f} MB)")
    print("params: " + " ".join(f"{key}={value}" for key, value in task.params.items()))
    for split, tensors in fields.items():
        shapes = ", ".join(f"{key} {tuple(info['shape'])} {info['dtype']}" for key, info in tensors.items())
        print(f"  {split:<5} {report['splits'][split]:>7}  {shapes}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from workers.tasks.cache import cache_root, list_cached

    entries = list_cached()
    if args.json:
        print(json.dumps({"root": str(cache_root()), "datasets": entries}, default=str))
        return 0
    print(f"cache: {cache_root()} ({len(entries)} datasets)")
    for entry in entries:
        params = " ".join(f"{key}={value}" for key, value in entry.get("params", {}).items())
        print(f"  {entry.get('task', '?'):<14} v{entry.get('version', '?')}  {entry['bytes'] / 1e6:8.1f} MB  "
              f"{entry.get('created', '')}  {params}\n      {entry['path']}")
    return 0
