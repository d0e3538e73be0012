"""Start-up of a sweep on a running Ray cluster: ``ray job submit`` against a direct ``symsweep launch cluster=remote``.

    python benchmarks/cluster_startup.py [--repeats 3] [--json]

On one local multi-node cluster (``clusters/local_cluster.py``: a head with 0 CPUs and one worker node with
2 CPUs, token authentication on) the same tiny two-trial sweep is started, in turn within each repeat (the
order alternates), as

- ``direct``: ``symsweep launch cluster=remote ...`` in a fresh process on this machine (``RAY_ADDRESS`` set,
  as a driver on the head would be), and
- ``job``: ``ray job submit --no-wait --runtime-env clusters/runtime_env.yaml -- symsweep launch cluster=remote
  ...`` (the checkout packaged and uploaded, the driver started by the job server on the head).

Each figure is the time from the command's start to the first trial's start (its ``params.json``, which Tune
writes when the trial starts) and to the whole sweep's end; ``job - direct`` is taken inside each repeat
(the machine's load changes slowly, both sides see it alike); min / median / max over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._bench import machine  # noqa: E402
from clusters.local_cluster import LocalCluster, ray_executable  # noqa: E402

TINY = ["task=nbody", "task.train_size=40", "task.eval_size=20", "group=sn_e", "model.widths=[16]",
        "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4",
        "trainer.batch_size=20", "trainer.threads=1", "trainer.epochs=2", "sweep.seeds=2",
        "logging.wandb.enabled=false"]


def first_trial(path: Path, timeout: float = 300.0) -> float:
    """When the first trial of the experiment at ``path`` started (wall clock), waiting for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = [params.stat().st_mtime for params in path.glob("trainable_*/params.json")]
        if started:
            return min(started)
        time.sleep(0.05)
    raise TimeoutError(f"no trial started under {path}")


def direct(cluster: LocalCluster, storage: Path, name: str) -> dict[str, float]:
    start = time.time()
    process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", "cluster=remote",
                                f"storage={storage}", f"name={name}", *TINY], cwd=REPO,
                               env={**cluster.env, "RAY_ADDRESS": cluster.address},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = first_trial(storage / name)
    if process.wait(timeout=300) != 0:
        raise RuntimeError(f"direct launch {name} failed")
    return {"first_trial_s": first - start, "total_s": time.time() - start}


def job(cluster: LocalCluster, storage: Path, name: str) -> dict[str, float]:
    start = time.time()
    ray = ray_executable()
    submit = subprocess.run([ray, "job", "submit", "--address", cluster.dashboard_url, "--no-wait",
                             "--submission-id", name, "--runtime-env", "clusters/runtime_env.yaml", "--",
                             "symsweep", "launch", "cluster=remote", f"storage={storage}", f"name={name}", *TINY],
                            cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=300)
    if submit.returncode != 0:
        raise RuntimeError(submit.stderr[-2000:])
    first = first_trial(storage / name)
    subprocess.run([ray, "job", "logs", "--address", cluster.dashboard_url, "--follow", name], cwd=REPO,
                   env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    status = subprocess.run([ray, "job", "status", "--address", cluster.dashboard_url, name], cwd=REPO,
                            env=cluster.env, capture_output=True, text=True, timeout=120).stdout
    if f"Job '{name}' succeeded" not in status:
        raise RuntimeError(f"job {name} did not succeed:\n{status[-2000:]}")
    return {"first_trial_s": first - start, "total_s": time.time() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="startup-") as folder, \
            LocalCluster(workers=1, cpus=2, head_cpus=0) as cluster:
        storage = Path(folder)
        job(cluster, storage, "warmup")  # the first job also starts the head's job agent and packages the code
        for repeat in range(args.repeats):
            order = [("direct", direct), ("job", job)][:: 1 if repeat % 2 == 0 else -1]
            row = {kind: run(cluster, storage, f"{kind}{repeat}") for kind, run in order}
            row["extra_first_trial_s"] = row["job"]["first_trial_s"] - row["direct"]["first_trial_s"]
            row["extra_total_s"] = row["job"]["total_s"] - row["direct"]["total_s"]
            rows.append(row)
    summary = {key: {"min": min(r[key] for r in rows), "median": statistics.median(r[key] for r in rows),
                     "max": max(r[key] for r in rows)} for key in ("extra_first_trial_s", "extra_total_s")}
    for kind in ("direct", "job"):
        summary[f"{kind}_first_trial_s"] = statistics.median(r[kind]["first_trial_s"] for r in rows)
    if args.json:
        print(json.dumps({"machine": machine(), "repeats": rows, "summary": summary}, indent=2))
        return 0
    print(f"machine: {json.dumps(machine())}")
    print("| repeat | direct: first trial (s) | job: first trial (s) | job - direct, first trial (s) "
          "| job - direct, whole sweep (s) |\n|---:|---:|---:|---:|---:|")
    for index, row in enumerate(rows):
        print(f"| {index} | {row['direct']['first_trial_s']:.1f} | {row['job']['first_trial_s']:.1f} | "
              f"{row['extra_first_trial_s']:+.1f} | {row['extra_total_s']:+.1f} |")
    extra = summary["extra_first_trial_s"]
    print(f"\njob submit's extra start-up (first trial): median {extra['median']:+.1f} s "
          f"(min {extra['min']:+.1f}, max {extra['max']:+.1f}) over {len(rows)} repeats")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    sys.exit(main())
