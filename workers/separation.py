"""The separation protocol of the PS paper: a task scored at initialisation instead of trained (GRAPH8c, EXP).

For seeds 0..S-1 (``trainer.separation_seeds``) a freshly initialised model embeds every graph of each
evaluation split of the task with the evaluation sample count; the task counts the pairs no seed separates
(``SeparationTask.score``). One report, keys from ``workers.reporting``: ``<split>_<m>`` of each split,
``epoch`` 0, ``seeds`` and ``elapsed_s``.
"""

from __future__ import annotations

import time

import torch

from workers.objectives import forward
from workers.reporting import ELAPSED, EPOCH, SEEDS, Report, split_metric
from workers.runtime import build_seeded, step_generator, to_device
from workers.settings import TrialPlan
from workers.sharding import Shard
from workers.tasks import TaskData, iterate_batches


def separation(plan: TrialPlan, data: TaskData, device: torch.device, report: Report) -> dict[str, float]:
    """Score ``plan``'s model at initialisation over ``trainer.separation_seeds`` seeds; report once and return
    the metrics."""
    task, trainer = plan.task, plan.trainer
    start = time.perf_counter()
    metrics: dict[str, float] = {EPOCH: 0}
    for split in task.evaluation_splits:
        embeddings = []
        for seed in range(trainer.separation_seeds):
            model = build_seeded(plan.model, seed).to(device).eval()
            generator = step_generator(trainer.seed, seed)
            with torch.no_grad():
                batches = iterate_batches(data.splits[split], trainer.eval_batch_size or trainer.batch_size, False)
                parts = [forward(model, task, to_device(batch, device), generator, Shard()).output.double().cpu()
                         for batch in batches]
            embeddings.append(torch.cat(parts))
        metrics.update({split_metric(split, key): value for key, value in task.score(embeddings).items()})
    metrics.update({SEEDS: trainer.separation_seeds, ELAPSED: time.perf_counter() - start})
    report(metrics, None)
    return metrics
