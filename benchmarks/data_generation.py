"""Time the offline dataset generation of every registered task, each in a fresh temporary cache.

    python benchmarks/data_generation.py [--tasks pattern digits_rot ...] [--quick] [--json]

Per task (default parameters): ``generate`` alone (as recorded by the cache), the first load
(generate + write + tensors), a second load from the cache, the file size and the split sizes.
A task whose module is missing or fails is reported in the table and does not stop the others.
``--quick`` leaves out the two slowest generators (nbody, pattern).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

from workers.tasks import REGISTRY, get_task  # noqa: E402

SLOW = ("nbody", "pattern")
GENERATED = sorted(name for name in REGISTRY if name != "files")  # task=files reads a file you have: nothing to time


def time_task(name: str) -> dict:
    """Generate ``name`` into an empty cache, then load it again; return the timings."""
    with tempfile.TemporaryDirectory(prefix=f"symsweep-bench-{name}-") as root:
        try:
            start = time.perf_counter()
            task = get_task(name)
            imported = time.perf_counter() - start
            first = task.load(Path(root))
            second = task.load(Path(root))
        except Exception as err:  # report and go on with the other tasks
            return {"task": name, "error": f"{type(err).__name__}: {err}",
                    "detail": traceback.format_exc(limit=3)}
        meta = json.loads(first.path.with_suffix(".json").read_text())
        return {
            "task": name,
            "import_s": round(imported, 3),
            "generate_s": round(meta["seconds"], 3),
            "first_load_s": round(first.seconds, 3),
            "reload_s": round(second.seconds, 3),
            "reused": not second.generated,
            "megabytes": round(first.path.stat().st_size / 1e6, 2),
            "splits": {split: first.size(split) for split in first.splits},
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", metavar="NAME", default=GENERATED,
                        help=f"tasks to time (default: all of {', '.join(GENERATED)})")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help=f"leave out the slowest tasks ({', '.join(SLOW)})")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks = [name for name in args.tasks if name not in SLOW]
    unknown = sorted(set(args.tasks) - set(REGISTRY))
    if unknown:
        parser.error(f"unknown task {unknown[0]!r}; allowed: {', '.join(sorted(REGISTRY))}")

    machine = _bench.machine()
    results = [time_task(name) for name in args.tasks]
    if args.json:
        print(json.dumps({"machine": machine, "results": results}))
        return 0
    print(_bench.describe(machine))
    print(f"{'task':<15}{'generate s':>11}{'1st load s':>11}{'reload s':>10}{'MB':>8}  splits")
    for row in results:
        if "error" in row:
            print(f"{row['task']:<15} failed: {row['error']}")
            continue
        splits = "/".join(str(size) for size in row["splits"].values())
        print(f"{row['task']:<15}{row['generate_s']:>11.2f}{row['first_load_s']:>11.2f}"
              f"{row['reload_s']:>10.2f}{row['megabytes']:>8.1f}  {splits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
