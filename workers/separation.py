"""The separation protocol of the PS paper: a task scored at initialisation instead of trained (GRAPH8c, EXP).

For seeds 0..S-1 (``trainer.separation_seeds``) a freshly initialised model embeds every graph of each
evaluation split of the task with the evaluation sample count; the task counts the pairs no seed separates
(``SeparationTask.score``). The control: every graph is also embedded as an isomorphic copy, its real nodes
relabelled by a permutation drawn from ``trainer.seed`` (the same copies for every model seed), with the noise
of its own stream; ``SeparationTask.control`` reports how many copies the 1e-3 rule separates and the
noise-calibrated counts. One report, keys from ``workers.reporting``: ``<split>_<m>`` of each split and its
control (``control_metrics``), ``epoch`` 0, ``seeds`` and ``elapsed_s``. Deterministic given ``trainer.seed``.
"""

from __future__ import annotations

import time
from typing import Mapping

import torch

from workers.objectives import forward
from workers.reporting import ELAPSED, EPOCH, SEEDS, Report, split_metric
from workers.runtime import build_seeded, step_generator, to_device
from workers.settings import TrialPlan
from workers.sharding import Shard
from workers.tasks import Task, TaskData, iterate_batches
from workers.tasks.separation import relabelled

RELABEL_STREAM, COPY_STREAM = 11_000, 1  # generator keys: the copies' permutations, the copies' noise


def embed(model: torch.nn.Module, task: Task, split: Mapping[str, torch.Tensor], batch_size: int,
          generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(G, D) float64 embeddings of every graph of ``split``, in order, noise drawn from ``generator``."""
    with torch.no_grad():
        parts = [forward(model, task, to_device(batch, device), generator, Shard()).output.double().cpu()
                 for batch in iterate_batches(split, batch_size, False)]
    return torch.cat(parts)


def separation(plan: TrialPlan, data: TaskData, device: torch.device, report: Report) -> dict[str, float]:
    """Score ``plan``'s model at initialisation over ``trainer.separation_seeds`` seeds, with the isomorphic
    control; report once and return the metrics."""
    task, trainer = plan.task, plan.trainer
    start = time.perf_counter()
    size = trainer.eval_batch_size or trainer.batch_size
    metrics: dict[str, float] = {EPOCH: 0}
    for index, split in enumerate(task.evaluation_splits):
        graphs = data.splits[split]
        copies = relabelled(graphs, task.input_kinds, step_generator(trainer.seed, RELABEL_STREAM + index))
        embeddings, copy_embeddings = [], []
        for seed in range(trainer.separation_seeds):
            model = build_seeded(plan.model, seed).to(device).eval()
            embeddings.append(embed(model, task, graphs, size, step_generator(trainer.seed, seed), device))
            copy_embeddings.append(embed(model, task, copies, size,
                                         step_generator(trainer.seed, seed, COPY_STREAM), device))
        measured = {**task.score(embeddings), **task.control(embeddings, copy_embeddings)}
        metrics.update({split_metric(split, key): value for key, value in measured.items()})
    metrics.update({SEEDS: trainer.separation_seeds, ELAPSED: time.perf_counter() - start})
    report(metrics, None)
    return metrics
