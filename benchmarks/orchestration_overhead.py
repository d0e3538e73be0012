"""Orchestration overhead: a real ``symsweep launch`` sweep of short trials on an embedded Ray with
two concurrent slots, against the ideal wall time (sum of trial times / slots).

    python benchmarks/orchestration_overhead.py [--trials 16] [--trial-seconds 5] [--repeats 2]
                                                [--quick] [--keep] [--json]

Each launch is the user's command (``python -m orchestrator.cli launch ...``, a fresh process) on a
tiny n-body PS configuration whose trials take about ``--trial-seconds`` (the epoch count is
calibrated in-process first), ``sweep.seeds=<trials>``, ``cluster.num_cpus=2``,
``cluster.cpus_per_trial=1``, ``trainer.threads=1``, four evaluations + checkpoints per trial.
The launch process is started through a small wrapper that records when ``Tuner.fit`` starts and
ends (nothing else changes). Per launch, from each trial's ``result.json``:

- trial time ``time_total_s`` (Ray's clock: the trainable from its start to its last report, i.e.
  imports, data, model, training loop) and ``elapsed_s`` (the training loop's own clock);
- ``fit / ideal`` = Tuner.fit wall time / (Σ trial times / slots) — the figure Ray Tune publishes
  (10,000 trials of 1 s on 16 CPUs: 715 s against 625 s, 1.14; docs.ray.io, "Scalability and
  Overhead Benchmarks for Ray Tune");
- ``command / ideal`` = the whole command (Python start, Hydra, validation, Ray start and stop,
  tables, plots) / the same ideal;
- ``fit / loop ideal``: the same with the training loops' own times (Σ ``elapsed_s`` / slots): every
  per-trial cost outside the loop counts as overhead;
- per-trial start-up: in the trial, before its loop (first report's ``time_total_s − elapsed_s``:
  imports in a fresh actor, data, model; median and max — with ``reuse_actors=True`` only the first
  trial of each actor imports torch & co.), and around it (slot time inside no trial:
  (slots × fit − Σ trial times) / trials: scheduling, actor reuse, result handling).
W&B on (the default, offline) and off (``logging.wandb.enabled=false``) are interleaved; their
difference is the W&B cost. Ratios are per launch; min/median/max over repeats.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

_bench.setup_environment()

ROOT = Path(__file__).resolve().parent.parent
SLOTS = 2
BASE = ["task=nbody", "task.train_size=200", "task.eval_size=20", "group=sn_e", "symmetrizer=ps",
        "model=mlp", "model.widths=[16]", "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2",
        "symmetrizer.interface.hidden=4", "trainer.batch_size=20", "trainer.threads=1",
        f"cluster.num_cpus={SLOTS}", "cluster.cpus_per_trial=1"]
REPORTS = 4  # evaluations + checkpoints per trial

# Runs the CLI in this process after wrapping Tuner.fit with a clock (benchmark-only instrumentation).
WRAPPER = """
import json, os, sys, time
import ray.tune
fit = ray.tune.Tuner.fit
def timed(self, *args, **kwargs):
    start = time.time()
    try:
        return fit(self, *args, **kwargs)
    finally:
        with open(os.environ["SYMSWEEP_BENCH_FIT"], "w") as file:
            json.dump({"fit_start": start, "fit_end": time.time()}, file)
ray.tune.Tuner.fit = timed
from orchestrator.cli import main
sys.exit(main(sys.argv[1:]))
"""


def overrides(epochs: int, base: list[str] | None = None) -> list[str]:
    every = max(1, epochs // REPORTS)
    return (BASE if base is None else base) + [f"trainer.epochs={epochs}", f"trainer.eval_every={every}",
                                               f"trainer.checkpoint_every={every}"]


def calibrate(target: float) -> tuple[int, float]:
    """Epochs for a trial of about ``target`` seconds, from a short in-process run (also generates
    and caches the dataset, so no trial pays for it)."""
    import torch

    from orchestrator.config import compose, trial_config
    from workers.train import run

    torch.set_num_threads(1)
    probe = 4
    config = trial_config(compose(overrides(probe)))
    with tempfile.TemporaryDirectory() as workdir:
        run(config, None, workdir)  # warm: data generation, imports
        start = time.perf_counter()
        run(config, None, workdir + "/again")
        seconds = (time.perf_counter() - start) / probe
    return max(REPORTS, round(target / seconds)), seconds


def launch(storage: Path, name: str, epochs: int, trials: int, wandb: bool, base: list[str] | None = None) -> dict:
    """One ``symsweep launch`` in a fresh process; the timings of the launch and of its trials."""
    fit_file = storage / f"{name}.fit.json"
    command = [sys.executable, "-c", WRAPPER, "launch", f"storage={storage}", f"name={name}", *overrides(epochs, base),
               f"sweep.seeds={trials}", f"logging.wandb.enabled={'true' if wandb else 'false'}"]
    env = {**os.environ, "SYMSWEEP_BENCH_FIT": str(fit_file)}
    start = time.time()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.time() - start
    if done.returncode != 0:
        raise RuntimeError(f"launch {name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    fit = json.loads(fit_file.read_text())
    trial_times, loop_times, startups = [], [], []
    for trial in sorted((storage / name).glob("trainable_*")):
        lines = [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]
        trial_times.append(lines[-1]["time_total_s"])
        loop_times.append(lines[-1]["elapsed_s"])
        startups.append(lines[0]["time_total_s"] - lines[0]["elapsed_s"])  # before the loop's first epoch ended
    if len(trial_times) != trials:
        raise RuntimeError(f"launch {name}: {len(trial_times)} trial results, expected {trials}")
    fit_wall = fit["fit_end"] - fit["fit_start"]
    total = sum(trial_times)
    ideal = total / SLOTS
    startups.sort()
    return {"wandb": wandb, "command_s": wall, "fit_s": fit_wall, "trial_s_sum": total,
            "trial_s_mean": total / trials, "loop_s_mean": sum(loop_times) / trials, "ideal_s": ideal,
            "fit_over_ideal": fit_wall / ideal, "command_over_ideal": wall / ideal,
            "fit_over_loop_ideal": fit_wall / (sum(loop_times) / SLOTS),
            "startup_median_s": startups[len(startups) // 2], "startup_max_s": startups[-1],
            "gap_per_trial_s": (SLOTS * fit_wall - total) / trials,
            "outside_fit_s": wall - fit_wall}


def main(argv: list[str] | None = None) -> int:
    parser = _bench.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=None, help="trials per sweep (default 16; quick 8)")
    parser.add_argument("--trial-seconds", type=float, default=None, help="target trial length (default 5; quick 2)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: calibrated)")
    parser.add_argument("--no-wandb-comparison", action="store_true",
                        help="only the default (W&B on); --quick runs only W&B off")
    parser.add_argument("--keep", action="store_true", help="keep the experiment directories (printed)")
    args = parser.parse_args(argv)
    trials = args.trials or (8 if args.quick else 16)
    target = args.trial_seconds or (2.0 if args.quick else 5.0)
    repeats = args.repeats or (1 if args.quick else 2)
    info = _bench.machine()
    if args.epochs:
        epochs, per_epoch = args.epochs, None
    else:
        epochs, per_epoch = calibrate(target)
        _bench.log(f"calibration: {per_epoch:.3f} s per epoch in-process -> {epochs} epochs per trial")
    storage = Path(tempfile.mkdtemp(prefix="symsweep-orchestration-", dir=os.environ["TMPDIR"]))
    if args.quick:  # one launch: W&B off (a launch with W&B takes as long again)
        variants = [False]
    else:
        variants = [True] if args.no_wandb_comparison else [True, False]
    runs = {True: [], False: []}
    try:
        for repeat in range(repeats):
            for wandb in (variants if repeat % 2 == 0 else variants[::-1]):
                name = f"r{repeat}-{'wandb' if wandb else 'nowandb'}"
                result = launch(storage, name, epochs, trials, wandb)
                runs[wandb].append(result)
                _bench.log(f"{name}: command {result['command_s']:.1f} s, fit {result['fit_s']:.1f} s, "
                           f"ideal {result['ideal_s']:.1f} s (fit/ideal {result['fit_over_ideal']:.3f}), "
                           f"trial {result['trial_s_mean']:.2f} s")
    finally:
        if args.keep:
            print(f"experiments kept in {storage}")
        else:
            shutil.rmtree(storage, ignore_errors=True)
    keys = ("fit_over_ideal", "command_over_ideal", "fit_over_loop_ideal", "trial_s_mean", "loop_s_mean",
            "startup_median_s", "startup_max_s", "gap_per_trial_s", "fit_s", "command_s", "outside_fit_s")
    summary = {("wandb" if w else "no_wandb"): {k: _bench.stats(r[k] for r in rs) for k in keys}
               for w, rs in runs.items() if rs}
    if len(runs[False]) and len(runs[True]):
        paired = list(zip(runs[True], runs[False]))
        summary["wandb_cost"] = {
            "fit_ratio": _bench.stats(a["fit_s"] / b["fit_s"] for a, b in paired),
            "per_trial_s": _bench.stats(SLOTS * (a["fit_s"] - b["fit_s"]) / trials for a, b in paired),
            "command_ratio": _bench.stats(a["command_s"] / b["command_s"] for a, b in paired)}
    print(_bench.describe(info))
    print(f"{trials} trials × {epochs} epochs (≈{target:g} s target) per sweep, {SLOTS} slots, {repeats} repeat(s); "
          "median [min–max] over repeats; goal fit/ideal ≤ 1.15 (Ray Tune: 1.14 for 1 s trials)\n")
    rows = []
    for label, values in summary.items():
        if label == "wandb_cost":
            continue
        rows.append([label.replace("_", " "), _bench.triple(values["fit_over_ideal"], 3),
                     _bench.triple(values["command_over_ideal"], 3), _bench.triple(values["fit_over_loop_ideal"], 3),
                     _bench.triple(values["trial_s_mean"]), _bench.triple(values["loop_s_mean"]),
                     _bench.triple(values["startup_median_s"]), _bench.triple(values["startup_max_s"]),
                     _bench.triple(values["gap_per_trial_s"]), _bench.triple(values["outside_fit_s"], 1)])
    print(_bench.table(["W&B", "fit / ideal", "command / ideal", "fit / loop ideal", "trial s", "loop s",
                        "start-up median s", "start-up max s", "gap per trial s", "outside fit s"], rows))
    if "wandb_cost" in summary:
        cost = summary["wandb_cost"]
        print(f"\nW&B (offline) cost: fit time × {_bench.triple(cost['fit_ratio'], 3)}, "
              f"{_bench.triple(cost['per_trial_s'])} s per trial, command × {_bench.triple(cost['command_ratio'], 3)}")
    if args.json:
        _bench.emit_json({"benchmark": "orchestration_overhead", "machine": info, "trials": trials, "epochs": epochs,
                          "seconds_per_epoch_in_process": per_epoch, "slots": SLOTS, "repeats": repeats,
                          "runs": {("wandb" if w else "no_wandb"): rs for w, rs in runs.items() if rs},
                          "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
