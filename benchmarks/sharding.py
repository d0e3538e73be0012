"""Sharding a trial's N group samples over k devices: step time with k = 1 and k = 2 CPU (gloo)
workers at fixed N, and the start-up cost of a sharded trial through Ray Train.

    python benchmarks/sharding.py [--part steps launch] [--quick] [--repeats R] [--json]

``steps``: two processes (``torch.multiprocessing``, a gloo process group, as
tests/train/test_sharding.py) take training steps exactly as ``workers.train.run`` does
(``training_loss`` with ``Shard(rank, k)``, backward, gradient all-reduce, Adam) on n-body,
S_n × E(3) PS with the PS paper transformer, B = 100, N = 20 (quick: B = 20). Interleaved in
each repeat: ``k=1 ×1 thread`` (rank 0 alone, the other process waits), ``k=1 ×2 threads``
(rank 0 alone with both cores) and ``k=2 ×1 thread`` (both processes, N/2 = 10 samples each).
Speed-up = k=1 step / k=2 step within the repeat. On a 2-core machine k = 2 can at best halve
the step of a 1-thread trial, and gains little or nothing over one 2-thread process; it exists
for machines with several GPUs.
``launch``: one-trial sweeps through the real CLI (``symsweep launch``, a fresh process) with
``trainer.devices=1`` and ``trainer.devices=2`` (Ray Train, 2 gloo workers): Tuner.fit wall time,
the training loop's own time (``elapsed_s``) and the start-up = fit − loop: the price of a
sharded trial (worker group, process group, imports in two fresh processes) against an unsharded
one.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

_bench.setup_environment()

from workers.schema import TrainerSettings  # noqa: E402

CASE = {"group": {"name": "S_n x E(d)"}, "samples": 20, "batch": 100,
        "model": {"name": "transformer", "tokens": "pair", "layers": 8, "width": 64, "heads": 4}}
TRAINER = TrainerSettings()  # adam, lr 1e-3, no weight decay


def _worker(rank: int, world: int, store: str, batch_size: int, repeats: int, steps: int, out: str) -> None:
    """Rank r of the k = 2 group; rank 0 also times the k = 1 variants while rank 1 waits."""
    import json

    import torch
    import torch.distributed as dist

    from workers.models.factory import build_model, check
    from workers.objectives import make_objective
    from workers.runtime import step_generator
    from workers.schema import RemulSettings
    from workers.sharding import Shard
    from workers.tasks import get_task
    from workers.train import make_optimizer

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    task = get_task("nbody")
    data = task.load().splits["train"]
    batch = {k: v[:batch_size].clone() for k, v in data.items()}
    symmetrizer = {"method": "ps", "train_samples": CASE["samples"], "eval_samples": CASE["samples"],
                   "noise_scale": 1.0, "temperature": 0.01, "sinkhorn_iters": 20, "entropy_weight": 0.1,
                   "interface": {"name": "auto"}}
    torch.manual_seed(0)
    plan = check(task, {"group": CASE["group"], "symmetrizer": symmetrizer, "model": dict(CASE["model"])})
    model = build_model(plan)
    model.train()
    optimizer = make_optimizer(model, TRAINER)
    counter = iter(range(1, 10**9))

    def step(shard: Shard) -> None:
        objective = make_objective(plan.symmetrizer, RemulSettings(), model, task, shard)
        loss, _ = objective(batch, step_generator(0, next(counter)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        shard.average_gradients(model.parameters())
        optimizer.step()

    def timed(shard: Shard, threads: int) -> float:
        torch.set_num_threads(threads)
        step(shard)  # warm
        start = time.perf_counter()
        for _ in range(steps):
            step(shard)
        return (time.perf_counter() - start) / steps

    results = {"k=1 ×1 thread": [], "k=1 ×2 threads": [], "k=2 ×1 thread": []}
    single = Shard()
    done = Path(out).with_suffix(".done")
    for repeat in range(repeats):
        order = ["single1", "single2", "sharded"]
        order = order[repeat % 3:] + order[:repeat % 3]
        for index, variant in enumerate(order):
            dist.barrier()
            if variant == "sharded":
                results["k=2 ×1 thread"].append(timed(Shard(rank, world), 1))
            elif rank == 0:
                key = "k=1 ×1 thread" if variant == "single1" else "k=1 ×2 threads"
                results[key].append(timed(single, 1 if variant == "single1" else 2))
                Path(f"{done}.{repeat}.{index}").touch()
            else:  # sleep while rank 0 works alone (a collective would keep this process busy-polling)
                while not Path(f"{done}.{repeat}.{index}").exists():
                    time.sleep(0.05)
    if rank == 0:
        Path(out).write_text(json.dumps(results))
    dist.destroy_process_group()


def steps_part(batch_size: int, repeats: int, steps: int) -> dict:
    import json

    import torch.multiprocessing as mp

    from workers.tasks import get_task

    get_task("nbody").load()  # cached before the workers start
    with tempfile.TemporaryDirectory(dir=os.environ["TMPDIR"]) as directory:
        out = Path(directory) / "steps.json"
        mp.spawn(_worker, args=(2, str(Path(directory) / "store"), batch_size, repeats, steps, str(out)), nprocs=2,
                 join=True)
        times = json.loads(out.read_text())
    result = {"batch": batch_size, "samples": CASE["samples"], "steps_per_call": steps,
              "step_s": {k: _bench.stats(v) for k, v in times.items()}}
    result["speedup_vs_1_thread"] = _bench.stats(a / b for a, b in zip(times["k=1 ×1 thread"], times["k=2 ×1 thread"]))
    result["speedup_vs_2_threads"] = _bench.stats(a / b for a, b in zip(times["k=1 ×2 threads"],
                                                                        times["k=2 ×1 thread"]))
    return result


def launch_part(repeats: int, epochs: int) -> dict:
    from orchestration_overhead import BASE, launch

    overrides = [o for o in BASE if not o.startswith("symmetrizer.") or "interface" in o] + [
        "symmetrizer.train_samples=4", "symmetrizer.eval_samples=4"]
    storage = Path(tempfile.mkdtemp(prefix="symsweep-sharding-", dir=os.environ["TMPDIR"]))
    runs = {1: [], 2: []}
    try:
        for repeat in range(repeats):
            for devices in ((1, 2) if repeat % 2 == 0 else (2, 1)):
                name = f"r{repeat}-devices{devices}"
                result = launch(storage, name, epochs, 1, False, base=overrides + [f"trainer.devices={devices}"])
                runs[devices].append(result)
                _bench.log(f"[launch] {name}: fit {result['fit_s']:.1f} s, loop {result['loop_s_mean']:.1f} s, "
                           f"trial {result['trial_s_mean']:.1f} s")
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    out = {}
    for devices, results in runs.items():
        out[f"devices={devices}"] = {
            "fit_s": _bench.stats(r["fit_s"] for r in results),
            "loop_s": _bench.stats(r["loop_s_mean"] for r in results),
            "startup_s": _bench.stats(r["fit_s"] - r["loop_s_mean"] for r in results),
            "command_s": _bench.stats(r["command_s"] for r in results)}
    out["extra_startup_s"] = _bench.stats((a["fit_s"] - a["loop_s_mean"]) - (b["fit_s"] - b["loop_s_mean"])
                                          for a, b in zip(runs[2], runs[1]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = _bench.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--part", nargs="+", choices=["steps", "launch"], default=None,
                        help="default: both (--quick: steps only; the launches take minutes)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed call (default 2; quick 1)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    args.part = args.part or (["steps"] if args.quick else ["steps", "launch"])
    info = _bench.machine()
    out = {"benchmark": "sharding", "machine": info, "repeats": repeats, "quick": args.quick}
    if "steps" in args.part:
        out["steps"] = steps_part(20 if args.quick else CASE["batch"], repeats, args.steps or (1 if args.quick else 2))
    if "launch" in args.part:
        out["launch"] = launch_part(1 if args.quick else 2, 2)
    print(_bench.describe(info))
    print(f"repeats {repeats}; median [min–max] over repeats\n")
    if "steps" in out:
        s = out["steps"]
        print(f"### Step time, n-body PS transformer, B = {s['batch']}, N = {s['samples']} (gloo, 2 processes)\n")
        rows = [[k, _bench.triple(v, 3)] for k, v in s["step_s"].items()]
        rows.append(["speed-up k=2 vs k=1 ×1 thread", _bench.triple(s["speedup_vs_1_thread"])])
        rows.append(["speed-up k=2 vs k=1 ×2 threads", _bench.triple(s["speedup_vs_2_threads"])])
        print(_bench.table(["variant", "step s"], rows))
        print()
    if "launch" in out:
        launch_result = out["launch"]
        print("### One-trial sweeps through `symsweep launch` (n-body PS, N = 4, 2 epochs, W&B off)\n")
        rows = [[k, _bench.triple(v["fit_s"], 1), _bench.triple(v["loop_s"], 1), _bench.triple(v["startup_s"], 1),
                 _bench.triple(v["command_s"], 1)] for k, v in launch_result.items() if k.startswith("devices")]
        print(_bench.table(["trainer.devices", "Tuner.fit s", "loop s", "start-up (fit − loop) s", "command s"], rows))
        print(f"\nextra start-up of a sharded trial: {_bench.triple(launch_result['extra_startup_s'], 1)} s")
    if args.json:
        _bench.emit_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
