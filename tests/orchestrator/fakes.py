"""Hand-written experiment folders, for the tests of everything that reads one (aggregation, ``report``,
``status``, ``evaluate``, ``resume``'s checks, untrusted folders) without running a sweep.

The fake is written the way Ray Tune 2.60 and symsweep write a real one: ``config.json``,
``experiment_state-*.json`` (trial and runtime JSON strings), one directory per trial with
``params.json``, ``result.json`` (JSON lines with Tune's bookkeeping keys) and error files.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

STAMP = "2026-11-22_17-34-40"
RAY_ERROR = """Failure # 1 (occurred at 2026-11-22_17-40-01)
\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=22503, ip=192.0.2.2, repr=trainable)
  File "/venv/lib/python3.11/site-packages/ray/tune/trainable/trainable.py", line 329, in train
    raise skipped from exception_cause(skipped)
  File "/work/main/workers/train.py", line 280, in run
    loss.backward()
RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB
(see the worker log for details)
"""
SYMSWEEP_ERROR = ("NonFiniteLoss: non-finite training loss (nan) at epoch 2, step 20; "
                  "the last good checkpoint (epoch 1) is kept in /runs/fake/trial\n")


def base_config(tmp: Path, params: dict, epochs: int = 3, seeds: int = 2, task: str = "digits_rot") -> dict:
    """A config as ``launch`` saves it, the metric and mode resolved."""
    from workers import reporting
    from workers.tasks import REGISTRY, task_class

    kind = task_class(task) if task in REGISTRY else None  # a task symsweep does not know: nothing resolved
    metric = reporting.headline(kind) if kind else None
    mode = reporting.reported_metrics(kind)[metric] if kind else None
    return {"task": {"name": task}, "group": {"name": "S_n"}, "symmetrizer": {"method": "ps", "noise_scale": 1.0},
            "model": {"name": "mlp"}, "trainer": {"epochs": epochs, "seed": 0},
            "sweep": {"params": params, "seeds": seeds, "search": "grid", "metric": metric, "mode": mode},
            "cluster": {}, "logging": {}, "remul": {"alpha": 1.0}, "name": "fake", "storage": str(tmp)}


def epoch_metrics(epoch: int, quality: float, seed: int, entropy: float | None = None) -> dict:
    """What symsweep's loop reports at ``epoch``; validation accuracy rises to ``quality`` at epoch 3."""
    val = quality - 0.1 * (3 - epoch)
    return {"epoch": epoch, "step": 10 * epoch, "train_loss": 2.0 - quality - 0.1 * epoch, "lr": 0.001,
            "samples_per_s": 1000.0, "examples_per_s": 100.0, "val_accuracy": val, "test_accuracy": val - 0.05,
            "entropy": 1.0 + seed if entropy is None else entropy, "mc_equivariance_error": 0.01 * (seed + 1),
            "best_val_accuracy": val, "best_test_accuracy": val - 0.05, "best_epoch": epoch,
            "elapsed_s": 10.0 * epoch + seed}


class FakeExperiment:
    """Writes config.json (and symsweep's record of it), trial directories and the experiment state file like
    symsweep and Ray Tune do."""

    def __init__(self, path: Path, config: dict):
        from orchestrator.stored_config import save_config

        self.path, self.entries = path, []
        path.mkdir(parents=True)
        save_config(config, path)

    def trial(self, params: dict, status: str, reports: list[dict], error: str | None = None,
              num_failures: int = 0, directory: bool = True) -> str:
        index = len(self.entries)
        trial_id = f"abcde_{index:05d}"
        tag = ",".join(f"{key.split('.')[-1]}={value}" for key, value in params.items())
        dirname = f"trainable_{trial_id}_{index}_{tag}_{STAMP}"
        results = [{**metrics, "timestamp": 1795368882 + i, "checkpoint_dir_name": f"checkpoint_{i:06d}",
                    "should_checkpoint": True, "done": False, "training_iteration": i + 1, "trial_id": trial_id,
                    "date": STAMP, "time_this_iter_s": 0.5, "time_total_s": 0.5 * (i + 1), "pid": 22503,
                    "hostname": "vm", "node_ip": "192.0.2.2", "config": params, "time_since_restore": 0.5,
                    "iterations_since_restore": i + 1} for i, metrics in enumerate(reports)]
        if directory:
            trial_dir = self.path / dirname
            trial_dir.mkdir()
            (trial_dir / "params.json").write_text(json.dumps(params, indent=2))
            (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
            for i in range(len(reports)):
                (trial_dir / f"checkpoint_{i:06d}").mkdir()
            if error:
                (trial_dir / "error.txt").write_text(error)
        trial = {"trial_id": trial_id, "config": params, "status": status, "relative_logdir": dirname,
                 "evaluated_params": params, "experiment_tag": f"{index}_{tag}"}
        runtime = {"num_failures": num_failures, "error_filename": "error.txt" if error else None,
                   "pickled_error_filename": None, "last_result": results[-1] if results else {}}
        self.entries.append([json.dumps(trial), json.dumps(runtime)])
        return trial_id

    def save_state(self, date: str = STAMP, mtime: float | None = None) -> Path:
        path = self.path / f"experiment_state-{date}.json"
        path.write_text(json.dumps({"trial_data": self.entries, "runner_data": {}, "stats": {}}))
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path


def sweep_experiment(path: Path) -> Path:
    """Two methods × noise scales {0.1, 1, 10} × two seeds, in every state a sweep can leave behind."""
    params = {"symmetrizer.method": {"grid": ["ps", "ga"]}, "symmetrizer.noise_scale": {"grid": [0.1, 1, 10]}}
    fake = FakeExperiment(path, base_config(path.parent, params))

    def run(method, noise, seed, status, epochs, quality, **kwargs):
        point = {"symmetrizer.method": method, "symmetrizer.noise_scale": noise, "trainer.seed": seed}
        entropy = kwargs.pop("entropy", None)
        return fake.trial(point, status, [epoch_metrics(e, quality, seed, entropy) for e in range(1, epochs + 1)],
                          **kwargs)

    fake.save_state("2026-11-22_17-00-00", mtime=1_000_000)  # an older state: nothing had started
    run("ps", 0.1, 0, "TERMINATED", 3, 0.8)  # 00000 completed
    run("ps", 0.1, 1, "TERMINATED", 3, 0.9)  # 00001 completed
    run("ps", 10, 0, "TERMINATED", 3, 0.55)  # 00002 completed
    run("ps", 10, 1, "ERROR", 1, 0.7, error=SYMSWEEP_ERROR, num_failures=1, entropy=math.nan)  # 00003 errored
    run("ga", 0.1, 0, "TERMINATED", 3, 0.7)  # 00004 completed
    run("ga", 0.1, 1, "RUNNING", 2, 0.75)  # 00005 running
    run("ga", 10, 0, "TERMINATED", 3, 0.5, entropy=math.nan)  # 00006 completed, NaN entropy
    run("ga", 10, 1, "TERMINATED", 3, 0.7, error=RAY_ERROR, num_failures=1)  # 00007 failed once, recovered
    run("ps", 1, 0, "PENDING", 0, 0.0)  # 00008 pending: empty result.json
    run("ps", 1, 1, "TERMINATED", 2, 0.6)  # 00009 stopped early: unfinished
    fake.save_state()
    return path


def mse_report(mse: float) -> dict:
    return {"epoch": 2, "train_loss": mse, "val_mse": mse, "test_mse": mse, "best_val_mse": mse, "best_test_mse": mse,
            "mc_equivariance_error": 0.0, "elapsed_s": 1.0}


def curve(mse: float, draws: float = 0.01) -> dict:
    return {"test_mse": {str(n): {"mean": mse / n, "std": draws / n} for n in (1, 2, 4)}}


def compare_experiment(path: Path, seeds: int) -> Path:
    """PS vs GA at noise scales {0.1, 1}; PS at 0.1 is better than GA on every seed, at 1 the seeds disagree."""
    params = {"symmetrizer.method": {"grid": ["ps", "ga"]}, "symmetrizer.noise_scale": {"grid": [0.1, 1.0]}}
    config = base_config(path.parent, params, epochs=2, seeds=seeds, task="nbody")
    config["sweep"]["compare"] = {"key": "symmetrizer.method", "reference": "ga"}
    fake = FakeExperiment(path, config)
    mse = {("ps", 0.1): [0.10, 0.12, 0.11], ("ga", 0.1): [0.20, 0.23, 0.21],
           ("ps", 1.0): [0.30, 0.10, 0.20], ("ga", 1.0): [0.20, 0.20, 0.21]}
    for (method, noise), values in mse.items():
        for seed in range(seeds):
            params = {"symmetrizer.method": method, "symmetrizer.noise_scale": noise}
            params |= {"trainer.seed": seed} if seeds > 1 else {}
            fake.trial(params, "TERMINATED", [{**mse_report(values[seed]), "eval_samples_curve": curve(values[seed])}])
    fake.save_state()
    return path


class TuneTrial:
    """What Progress reads of a Tune trial."""

    def __init__(self, trial_id, status, epoch=None, seconds=None, error_file=None, config=None):
        self.trial_id, self.status, self.error_file = trial_id, status, error_file
        self.config = config if config is not None else {"symmetrizer.method": "ps"}
        self.last_result = {} if epoch is None else {"epoch": epoch, "time_total_s": seconds}
