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

import copy
import shutil
import tempfile
import traceback
from pathlib import Path
from typing import Any, Mapping


def merge(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with every dotted key of ``params`` (e.g. ``symmetrizer.noise_scale``) set."""
    config = copy.deepcopy(dict(base))
    for dotted, value in params.items():
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def _threads(config: dict[str, Any]) -> None:
    """Torch threads = the CPUs Ray gave this trial (at least 1), unless ``trainer.threads`` is set."""
    import ray
    import torch

    if config["trainer"].get("threads"):
        return
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


def _write_error(trial_dir: Path) -> None:
    """The failure's traceback next to the trial's results (``trials.csv`` shows its last line)."""
    try:
        (trial_dir / "error.txt").write_text(traceback.format_exc())
    except OSError:
        pass


def trainable(params: dict[str, Any], base: Mapping[str, Any], resources: Mapping[str, float],
              experiment_dir: str) -> None:
    """One trial of a sweep (a Ray Tune function trainable); ``resources`` holds ``cpus`` and
    ``gpus`` per device worker (used by sharded trials); ``experiment_dir`` is the shared results
    directory of the experiment."""
    from ray import tune

    from workers.settings import UNUSED

    config = merge(base, {key: value for key, value in params.items() if value != UNUSED})  # unused: base value
    trial_dir = Path(tune.get_context().get_trial_dir())
    try:
        if int(config["trainer"].get("devices", 1)) > 1:
            _sharded(config, trial_dir, resources)
        else:
            _single(config, trial_dir, experiment_dir)
    except Exception:
        _write_error(trial_dir)
        raise


def _single(config: dict[str, Any], trial_dir: Path, experiment_dir: str) -> None:
    import ray
    from ray import tune

    from workers.train import latest_checkpoint, run

    _threads(config)
    workdir = Path(tempfile.mkdtemp(prefix="symsweep-trial-"))
    node_id = ray.get_runtime_context().get_node_id()  # the Ray node that ran each report (multi-node clusters)

    def report(metrics: dict, checkpoint: Path | None) -> None:
        metrics = {**metrics, "node_id": node_id}
        if checkpoint is None:
            tune.report(metrics)
            return
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)))
        shutil.rmtree(checkpoint, ignore_errors=True)  # Tune has persisted it to the storage

    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            # Tune's state may lag behind the trial directory when the driver crashed: continue from
            # the trial's own latest checkpoint, replaying the reports Tune no longer has.
            on_disk = latest_checkpoint(Path(experiment_dir) / trial_dir.name)
            run(config, report, workdir, resume=on_disk, replay=on_disk is not None)
        else:
            with checkpoint.as_directory() as path:
                run(config, report, workdir, resume=path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _sharded(config: dict[str, Any], trial_dir: Path, resources: Mapping[str, float]) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    devices = int(config["trainer"]["devices"])
    gpus, cpus = float(resources.get("gpus", 0)), float(resources.get("cpus", 1))
    per_worker = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    trainer = TorchTrainer(
        _shard_worker,
        train_loop_config={"config": config},
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

    from workers.sharding import Shard
    from workers.train import run

    config = loop_config["config"]
    context = ray.train.get_context()
    shard = Shard(context.get_world_rank(), context.get_world_size())
    _threads(config)
    workdir = Path(tempfile.mkdtemp(prefix=f"symsweep-shard{shard.rank}-"))

    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict, checkpoint: Path | None) -> None:
        attached = ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint is not None else None
        ray.train.report({**metrics, "node_id": node_id}, checkpoint=attached)
        if checkpoint is not None:
            shutil.rmtree(checkpoint, ignore_errors=True)

    # Every worker resumes from the same checkpoint (all of them need the weights).
    checkpoint = ray.train.get_checkpoint()
    try:
        if checkpoint is None:
            run(config, report, workdir, shard=shard)
        else:
            with checkpoint.as_directory() as path:
                run(config, report, workdir, resume=path, shard=shard)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
