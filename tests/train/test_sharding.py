"""Sample sharding: k = 2 gloo workers sharing a trial's N group samples train exactly like one.

Two spawned processes join a gloo process group (file store) and each call ``workers.train.run``
with ``Shard(rank, 2)`` on two configurations without BatchNorm or dropout (GA over S_n x E(3)
with an MLP base; PS over S_n x E(3) with the Vector Neurons interface, whose entropy penalty is
part of the loss); rank 0 writes its reports to a file. The losses, evaluation metrics and
entropies must match a single-process run within 1e-5 at every epoch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.train.helpers import (
    NBODY_MLP,
    collector,
    compose_trial,
)
from workers.settings import check_config
from workers.sharding import Shard
from workers.train import run

SAMPLES = ("symmetrizer.train_samples=4", "symmetrizer.eval_samples=4", "trainer.epochs=2", "trainer.batch_size=3")
CONFIGS = {
    "ga-mlp": NBODY_MLP + ("symmetrizer=ga",) + SAMPLES,
    "ps-vector_neurons": NBODY_MLP + ("symmetrizer=ps", "symmetrizer.interface.name=vector_neurons") + SAMPLES,
}
COMPARED = ("train_loss", "train_task_loss", "train_entropy_penalty", "val_mse", "test_mse", "entropy",
            "best_val_mse", "best_test_mse")


def _worker(rank: int, world: int, store: str, configs: dict[str, dict], out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)  # two workers on a small machine
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        for name, config in configs.items():
            reports = []
            run(config, lambda metrics, checkpoint: reports.append(metrics), Path(out) / f"{name}-rank{rank}",
                shard=Shard(rank, world))
            if rank == 0:
                (Path(out) / f"{name}.json").write_text(json.dumps(reports))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two worker processes
def test_two_workers_match_one(tmp_path):
    sharded = {}
    for name, overrides in CONFIGS.items():
        sharded[name] = compose_trial(*overrides, "trainer.devices=2")
        check_config(sharded[name])  # 4 samples split over 2 devices: allowed
    torch.multiprocessing.spawn(_worker, args=(2, str(tmp_path / "store"), sharded, str(tmp_path)), nprocs=2,
                                join=True)
    for name, overrides in CONFIGS.items():
        single, report = collector()
        run(compose_trial(*overrides, "trainer.devices=1"), report, tmp_path / f"{name}-single")  # Shard()
        two = json.loads((tmp_path / f"{name}.json").read_text())
        assert [m["epoch"] for m in two] == [m["epoch"] for m, _ in single] == [1, 2]
        for (one, _), other in zip(single, two):
            for key in COMPARED:
                if key not in one:
                    assert name == "ga-mlp" and key == "train_entropy_penalty"  # GA has no penalty
                    continue
                assert math.isclose(one[key], other[key], rel_tol=1e-5, abs_tol=1e-6), (name, one["epoch"], key,
                                                                                      one[key], other[key])
        assert single[0][0]["train_loss"] != single[1][0]["train_loss"]  # it trains: the trajectory moves
    # only rank 0 writes checkpoints
    assert (tmp_path / "ga-mlp-rank0" / "checkpoint_000002" / "state.pt").exists()
    assert not (tmp_path / "ga-mlp-rank1").exists()


@pytest.mark.parametrize("key", ["train_samples", "eval_samples"])
def test_samples_not_divisible_by_devices_are_rejected(key):
    config = compose_trial(*NBODY_MLP, "trainer.devices=2")
    config["symmetrizer"][key] = 3
    with pytest.raises(ValueError, match=rf"symmetrizer\.{key}=3.*trainer\.devices=2"):
        check_config(config)


def test_one_sample_methods_cannot_be_sharded():
    config = compose_trial(*NBODY_MLP, "symmetrizer=augment", "trainer.devices=2")
    with pytest.raises(ValueError, match=r"trainer\.devices=2"):
        check_config(config)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_shards_cover_the_input_major_rows_once(world):
    batch, samples = 3, 4
    rows = [Shard(rank, world).rows(batch, samples, torch.device("cpu")) for rank in range(world)]
    assert torch.equal(torch.cat(rows).sort().values, torch.arange(batch * samples))
    for rank, part in enumerate(rows):  # each input's samples rank·N/k .. (rank+1)·N/k − 1
        share = samples // world
        assert torch.equal(part % samples, torch.arange(rank * share, (rank + 1) * share).repeat(batch))
        assert torch.equal(part // samples, torch.arange(batch).repeat_interleave(share))
