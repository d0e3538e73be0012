"""Shared helpers of the benchmark scripts: the machine description, interleaved timing, statistics
over repeats and the printed table. Not a benchmark itself.

Every figure a benchmark reports is a *ratio measured within one run*: the variants are timed in
turn inside each repeat (the order rotates from repeat to repeat), the ratio is taken inside the
repeat, and min / median / max are reported over repeats. A shared, noisy machine slows everything
down for a while; it slows the numerator and denominator of one repeat alike.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence


def machine() -> dict[str, Any]:
    """nproc, the CPU model (/proc/cpuinfo), torch version and threads, Python, load average."""
    import torch

    model = "unknown"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory = None
    return {"nproc": nproc, "cpu": model, "memory_gib": memory, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
            "platform": platform.platform(), "loadavg_at_start": load}


def describe(info: Mapping[str, Any]) -> str:
    return (f"{info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, torch {info['torch']} "
            f"({info['torch_threads']} threads), Python {info['python']}, load average {info['loadavg_at_start']}")


def stats(values: Iterable[float]) -> dict[str, float]:
    """min / median / max (and the count) of a list of measurements."""
    values = sorted(float(v) for v in values)
    if not values:
        return {"min": float("nan"), "median": float("nan"), "max": float("nan"), "n": 0}
    return {"min": values[0], "median": statistics.median(values), "max": values[-1], "n": len(values)}


def triple(summary: Mapping[str, float], digits: int = 2) -> str:
    """``median [min–max]`` of a ``stats`` dict."""
    if not summary.get("n"):
        return "-"
    return f"{summary['median']:.{digits}f} [{summary['min']:.{digits}f}–{summary['max']:.{digits}f}]"


def clock(function: Callable[[], Any], calls: int = 1) -> float:
    """Seconds per call of ``function`` (``calls`` calls after a garbage collection)."""
    gc.collect()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def interleaved(variants: Mapping[str, Callable[[], float]], repeats: int,
                progress: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Run every variant once per repeat, rotating the order each repeat; each call returns its own
    measurement (seconds). Returns name -> list of measurements (one per repeat, repeat order)."""
    names = list(variants)
    out: dict[str, list[float]] = {name: [0.0] * repeats for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            out[name][repeat] = variants[name]()
        if progress:
            progress(f"repeat {repeat + 1}/{repeats}: " + ", ".join(f"{n} {out[n][repeat]:.3f}s" for n in names))
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (so the output can be pasted into docs/benchmarks.md)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares: --quick, --json, --repeats."""
    out = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    out.add_argument("--quick", action="store_true", help="a short run (about a minute) with fewer repeats/sizes")
    out.add_argument("--json", action="store_true", help="also print one JSON object (last line of the output)")
    out.add_argument("--repeats", type=int, default=None, help="repeats of the interleaved measurement")
    return out


def log(message: str) -> None:
    """Progress on stderr (the table and the JSON go to stdout)."""
    print(message, file=sys.stderr, flush=True)


def emit_json(payload: Mapping[str, Any]) -> None:
    print(json.dumps(payload, default=float))


def setup_environment() -> None:
    """Keep datasets, temporary files and W&B offline inside the checkout unless the caller chose."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cache = os.path.join(root, ".cache")
    os.environ.setdefault("SYMSWEEP_CACHE", os.path.join(cache, "datasets"))
    os.environ.setdefault("TMPDIR", os.path.join(cache, "tmp"))
    os.environ.setdefault("RAY_TMPDIR", os.path.join(cache, "tmp"))
    os.environ.setdefault("WANDB_MODE", "offline")
    os.makedirs(os.environ["TMPDIR"], exist_ok=True)
