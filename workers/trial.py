"""The only bridge to Ray: a Ray Tune function trainable around ``workers.train.run``.

``trainable(params, base, experiment_dir)`` is one trial. ``base`` is the trial part of the
composed config (a plain dict), ``params`` the values Tune sampled for the swept dotted keys; a key
whose value is ``UNUSED`` ("—": the configuration does not read it, see ``workers.settings``)
keeps its base value. The
trial resumes from ``ray.tune.get_checkpoint()`` (a retry after a failure, or ``symsweep resume``),
reports every evaluation with ``ray.tune.report`` (plus ``node_id``, the Ray node that ran it) and
attaches a checkpoint when the loop wrote one.

With ``trainer.devices = k > 1`` the trial drives a Ray Train ``TorchTrainer`` of k workers (NCCL on
GPUs, gloo on CPUs), each computing its share of the N group samples (``workers.sharding``); rank 0
writes the checkpoints into Ray Train's storage under the trial directory, and a restarted trial
continues from the latest of them (Ray Train restores a run of the same name and storage).
Never compose Hydra configs here: trials see plain dicts only.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Mapping


def _threads(plan) -> None:
    """Torch threads = the CPUs Ray gave this trial (at least 1), unless ``trainer.threads`` is set."""
    import ray
    import torch

    if plan.trainer.threads:
        return
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


DETERMINISTIC = "deterministic_failure.txt"  # in a trial directory: its failure would repeat on every retry


class DeterministicFailure(RuntimeError):
    """A failure that a retry repeats exactly (a non-finite loss, a configuration error): not retried."""


def _quiet() -> None:
    """No "Checkpoint successfully created" line per checkpoint from Ray's storage (INFO in every trial)."""
    import logging

    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _write_error(trial_dir: Path) -> None:
    """The failure's traceback next to the trial's results (``trials.csv`` shows its last line)."""
    try:
        (trial_dir / "error.txt").write_text(traceback.format_exc())
    except OSError:
        pass


def trainable(params: dict[str, Any], base: Mapping[str, Any], resources: Mapping[str, float],
              experiment_dir: str, scratch: str | None = None) -> None:
    """One trial of a sweep (a Ray Tune function trainable); ``resources`` holds ``cpus`` and
    ``gpus`` per device worker (used by sharded trials); ``experiment_dir`` is the shared results
    directory of the experiment; ``scratch`` the folder of the trial's temporary files (None: the system's),
    which the driver removes when the sweep ends, whatever killed a worker."""
    if scratch:  # every temporary file of this worker (also folders made on import: timm imports W&B) goes there
        os.makedirs(scratch, exist_ok=True)
        tempfile.tempdir = scratch
    from ray import tune

    from workers.settings import UNUSED, check_config, merge
    from workers.train import NonFiniteLoss

    _quiet()
    config = merge(base, {key: value for key, value in params.items() if value != UNUSED})  # unused: base value
    trial_dir = Path(tune.get_context().get_trial_dir())
    own_dir = Path(experiment_dir) / trial_dir.name  # the trial's directory in the experiment's storage
    marker = own_dir / DETERMINISTIC
    try:
        if marker.is_file():  # a retry of a deterministic failure: fail again at once, with the same message
            raise DeterministicFailure(marker.read_text().strip())
        plan = check_config(config)  # once per trial: the loop, the threads and the sharding read this plan
        if plan.trainer.devices > 1:
            _sharded(plan, trial_dir, resources)
        else:
            _single(plan, trial_dir, experiment_dir, scratch)
    except (NonFiniteLoss, ValueError) as err:
        message = _deterministic_message(err, own_dir)
        _write_error(trial_dir)
        try:
            marker.write_text(message + "\n")
        except OSError:
            pass
        raise DeterministicFailure(message) from None
    except Exception:
        _write_error(trial_dir)
        raise


def _deterministic_message(err: Exception, own_dir: Path) -> str:
    """The failure in one line, naming the trial's newest checkpoint that exists (not a temporary copy)."""
    from workers.checkpoints import latest_checkpoint
    from workers.train import NonFiniteLoss

    message = str(err).split("; ")[0] if isinstance(err, NonFiniteLoss) else str(err)
    if isinstance(err, NonFiniteLoss):
        kept = latest_checkpoint(own_dir)
        message += (f"; the last good checkpoint is {kept}" if kept is not None
                    else "; no checkpoint was written before it")
        message += " (not retried: the same seed diverges again; lower trainer.lr or set trainer.grad_clip)"
    return f"{type(err).__name__}: {message}"


def recorded_epochs(trial_dir: Path) -> set[int]:
    """The epochs the trial's ``result.json`` (in the experiment's storage) holds."""
    import json

    from workers.reporting import EPOCH

    epochs = set()
    try:
        lines = (trial_dir / "result.json").read_text().splitlines()
    except OSError:
        return epochs
    for line in lines:
        try:
            epochs.add(int(json.loads(line)[EPOCH]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line, or a report without an epoch
    return epochs


def resume_point(own_dir: Path, tune_checkpoint) -> Path | None:
    """The newest checkpoint of the trial that loads: its own directory first (it may be newer than what
    Tune's state knows after a driver crash), a truncated newest one skipped for the previous one."""
    from workers.checkpoints import checkpoints, newest_loadable

    candidates = checkpoints(own_dir)
    tune_path = Path(tune_checkpoint.path) if tune_checkpoint is not None else None
    if tune_path is not None and tune_path.is_dir() and tune_path not in candidates:
        candidates.append(tune_path)
    chosen, skipped = newest_loadable(candidates)
    for line in skipped:
        print(f"symsweep: skipped an unusable checkpoint: {line}", file=sys.stderr, flush=True)
    return chosen


def _single(plan, trial_dir: Path, experiment_dir: str, scratch: str | None) -> None:
    """Continue from the newest loadable checkpoint in the trial's own directory and report every evaluation
    that ``result.json`` does not hold yet, exactly once: the reports a crash lost (replayed from the
    checkpoint's history, or recomputed, which training's determinism makes identical) and the new ones."""
    import ray
    from ray import tune

    from workers.reporting import EPOCH, NODE_ID
    from workers.train import run

    _threads(plan)
    own_dir = Path(experiment_dir) / trial_dir.name
    workdir = Path(tempfile.mkdtemp(prefix="symsweep-trial-", dir=scratch))
    node_id = ray.get_runtime_context().get_node_id()  # the Ray node that ran each report (multi-node clusters)
    tune_checkpoint = tune.get_checkpoint()
    # What result.json holds for this run of the trial: Ray Tune's driver writes result.json in a staging folder
    # and copies it to the trial directory now and then; when it restarts a trial WITH a checkpoint it first
    # copies the trial directory's result.json back, so that file is the record. Without one it starts an empty
    # file, which the next copy makes the record: every evaluation is then reported again (from the checkpoint's
    # history, or recomputed exactly).
    recorded = recorded_epochs(own_dir) if tune_checkpoint is not None else set()

    def report(metrics: dict, checkpoint: Path | None) -> None:
        if metrics.get(EPOCH) in recorded:  # already in result.json: reported before the interruption
            if checkpoint is not None:
                shutil.rmtree(checkpoint, ignore_errors=True)
            return
        metrics = {**metrics, NODE_ID: node_id}
        if checkpoint is None:
            tune.report(metrics)
            return
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)))
        shutil.rmtree(checkpoint, ignore_errors=True)  # Tune has persisted it to the storage

    try:
        resume = resume_point(own_dir, tune_checkpoint)
        run(plan, report, workdir, resume=resume, replay=resume is not None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _sharded(plan, trial_dir: Path, resources: Mapping[str, float]) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    devices = plan.trainer.devices
    gpus, cpus = float(resources.get("gpus", 0)), float(resources.get("cpus", 1))
    per_worker = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    trainer = TorchTrainer(
        _shard_worker,
        train_loop_config={"config": plan.config},  # plain data to the workers: each checks it once
        torch_config=ray.train.torch.TorchConfig(backend="nccl" if gpus else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=devices, use_gpu=bool(gpus),
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(name="shards", storage_path=str(trial_dir),
                                       callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _shard_worker(loop_config: dict[str, Any]) -> None:
    """One of the k Ray Train workers of a sharded trial."""
    import ray.train

    from workers.reporting import NODE_ID
    from workers.settings import check_config
    from workers.sharding import Shard
    from workers.train import run

    _quiet()
    plan = check_config(loop_config["config"])
    context = ray.train.get_context()
    shard = Shard(context.get_world_rank(), context.get_world_size())
    _threads(plan)
    workdir = Path(tempfile.mkdtemp(prefix=f"symsweep-shard{shard.rank}-"))

    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, checkpoint: Path | None) -> None:
        attached = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint is not None else None
        ray.train.report({**metrics, NODE_ID: node_id}, checkpoint=attached)
        if checkpoint is not None:
            shutil.rmtree(checkpoint, ignore_errors=True)

    # Every worker resumes from the same checkpoint (all of them need the weights).
    checkpoint = ray.train.get_checkpoint()
    try:
        if checkpoint is None:
            run(plan, report, workdir, shard=shard)
        else:
            with checkpoint.as_directory() as path:
                run(plan, report, workdir, resume=path, shard=shard)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
