"""Resuming from a checkpoint gives exactly the metrics of the uninterrupted run at every later epoch.

Each configuration trains for 4 epochs once without interruption, and once interrupted by an
exception raised from ``report`` right after epoch 2's checkpoint (a pre-empted trial); a third
``run(..., resume=checkpoint_000002)`` builds a new model, optimiser and schedule, starts from a
scrambled global RNG and must reproduce epochs 3 and 4 (every metric but wall-clock timings).
Every configuration has dropout, so the saved global RNG state matters, and draws group samples
or REMUL transformations from the per-step generators.
"""

from __future__ import annotations

import pytest
import torch

from tests.train.helpers import (
    NBODY_MLP,
    NBODY_PS,
    Stop,
    assert_same_metrics,
    collector,
    compose_trial,
    shrink_exp_classify,
)
from workers.checkpoints import load_checkpoint
from workers.train import run

CONFIGS = {
    # PS over S_n (GIN interface, entropy penalty), MLP base with dropout, warm-up then cosine decay
    "exp_classify-ps-mlp": ("task=exp_classify", "group=sn", "symmetrizer=ps", "model=mlp", "model.widths=[16]",
                            "model.dropout=0.2", "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2",
                            "symmetrizer.interface.hidden=8", "symmetrizer.interface.layers=1",
                            "symmetrizer.interface.dropout=0.1", "trainer.batch_size=10", "trainer.warmup_epochs=1",
                            "trainer.schedule=cosine"),
    # PS over S_n x E(3) (Vector Neurons), transformer base with dropout
    "nbody-ps-transformer": NBODY_PS + ("model.dropout=0.1",),
    # REMUL with GradNorm (its state is in the checkpoint), MLP base with dropout, gradient clipping
    "nbody_gravity-remul-gradnorm": ("task=nbody_gravity", "task.train_size=6", "task.eval_size=3", "group=e",
                                     "symmetrizer=remul", "remul.balance=gradnorm", "remul.gradnorm_lr=0.1",
                                     "model=mlp", "model.widths=[16]", "model.dropout=0.1", "trainer.batch_size=2",
                                     "trainer.grad_clip=1.0"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_resume_reproduces_every_later_epoch(name, tmp_path, monkeypatch):
    shrink_exp_classify(monkeypatch)
    config = compose_trial(*CONFIGS[name], "trainer.epochs=4")

    full, report = collector()
    run(config, report, tmp_path / "full")
    assert [metrics["epoch"] for metrics, _ in full] == [1, 2, 3, 4]

    head, report = collector(stop_after=2)
    with pytest.raises(Stop):
        run(config, report, tmp_path / "interrupted")
    checkpoint = head[-1][1]
    assert checkpoint == tmp_path / "interrupted" / "checkpoint_000002"
    assert load_checkpoint(checkpoint)["loop"]["epoch"] == 2
    for (before, _), (uninterrupted, _) in zip(head, full):
        assert_same_metrics(before, uninterrupted)

    torch.manual_seed(12345)  # a different process state: nothing may depend on it
    torch.rand(100)
    tail, report = collector()
    last = run(config, report, tmp_path / "interrupted", resume=checkpoint)
    assert [metrics["epoch"] for metrics, _ in tail] == [3, 4]
    for (resumed, _), (uninterrupted, _) in zip(tail, full[2:]):
        assert_same_metrics(resumed, uninterrupted)
    assert_same_metrics(last, full[-1][0])
    assert tail[-1][1] == tmp_path / "interrupted" / "checkpoint_000004"
    # the runs really differ from epoch to epoch (the comparison is not vacuous)
    assert full[2][0]["train_loss"] != full[3][0]["train_loss"]


def test_resume_from_the_last_checkpoint_trains_nothing(tmp_path):
    """A finished trial restored from its final checkpoint returns (and reports at most once more)
    its final metrics, without training or writing another checkpoint."""
    config = compose_trial(*NBODY_MLP, "trainer.epochs=2")
    full, report = collector()
    last = run(config, report, tmp_path)
    again, report = collector()
    resumed = run(config, report, tmp_path, resume=tmp_path / "checkpoint_000002")
    assert len(again) <= 1 and all(checkpoint is None for _, checkpoint in again)
    for metrics in [resumed] + [metrics for metrics, _ in again]:
        for key in ("epoch", "step", "val_mse", "test_mse", "best_val_mse", "best_test_mse", "best_epoch"):
            assert metrics[key] == last[key], key
    assert sorted(path.name for path in tmp_path.glob("checkpoint_*")) == ["checkpoint_000001", "checkpoint_000002"]
