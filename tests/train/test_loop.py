"""The training loop reports what it promises, checkpoints atomically, follows its schedule, stops on
a non-finite loss, trains every kind of method, scores separation tasks, and rejects bad settings
before any work with an error naming the key."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from tests.train.helpers import (
    NBODY_MLP,
    NBODY_PS,
    collector,
    compose_trial,
    shrink_task,
)
from workers import checkpoints, train
from workers import separation as protocol
from workers.checkpoints import load_checkpoint
from workers.evaluation import transformed_split
from workers.models.factory import build_model
from workers.settings import check_config
from workers.train import NonFiniteLoss, run


def checkpoint_dirs(workdir) -> list[str]:
    return sorted(path.name for path in workdir.glob("checkpoint_*"))


def leftovers(workdir) -> list[str]:
    return [str(path) for path in workdir.rglob("*") if ".tmp" in path.name]


def test_reports_metrics_best_epoch_and_checkpoints(tmp_path):
    config = compose_trial(*NBODY_PS, "trainer.epochs=4", "trainer.checkpoint_every=3")
    reports, report = collector()
    last = run(config, report, tmp_path)

    assert [metrics["epoch"] for metrics, _ in reports] == [1, 2, 3, 4]  # evaluated every epoch
    assert [metrics["step"] for metrics, _ in reports] == [3, 6, 9, 12]  # 6 examples, batches of 2
    assert [checkpoint for _, checkpoint in reports] == [None, None, tmp_path / "checkpoint_000003",
                                                          tmp_path / "checkpoint_000004"]
    assert checkpoint_dirs(tmp_path) == ["checkpoint_000003", "checkpoint_000004"]
    assert leftovers(tmp_path) == []
    assert last == reports[-1][0]

    max_entropy = math.log(5)  # five particles
    for metrics, _ in reports:
        for key in ("train_loss", "train_task_loss", "train_entropy_penalty", "val_mse", "test_mse", "best_val_mse",
                    "best_test_mse", "best_epoch", "entropy", "mc_equivariance_error", "samples_per_s",
                    "examples_per_s", "elapsed_s", "lr"):
            assert key in metrics, key
        assert all(math.isfinite(value) for value in metrics.values())
        assert 0 < metrics["entropy"] <= max_entropy + 1e-9
        assert metrics["mc_equivariance_error"] >= 0
        assert metrics["samples_per_s"] == pytest.approx(2 * metrics["examples_per_s"])  # N = 2 train samples
        assert metrics["train_loss"] > 0
    elapsed = [metrics["elapsed_s"] for metrics, _ in reports]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0

    # best_*: the epoch of the lowest validation MSE so far, and the test MSE of that very epoch
    for index, (metrics, _) in enumerate(reports):
        seen = [m for m, _ in reports[: index + 1]]
        best = min(seen, key=lambda m: m["val_mse"])
        assert metrics["best_epoch"] == best["epoch"]
        assert metrics["best_val_mse"] == best["val_mse"]
        assert metrics["best_test_mse"] == best["test_mse"]
    assert len({m["val_mse"] for m, _ in reports}) == 4  # the model changes from epoch to epoch

    state = load_checkpoint(tmp_path / "checkpoint_000003")
    assert set(state) >= {"model", "optimizer", "scheduler", "rng", "loop", "config"}
    assert state["loop"]["epoch"] == 3 and state["loop"]["step"] == 9
    assert state["config"] == config
    model = build_model(check_config(config).model)
    model.load_state_dict(state["model"])  # strict: every parameter of a fresh model is in it


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A write that fails half-way leaves the previous complete state.pt in place."""
    first = {**{key: {} for key in checkpoints.CHECKPOINT_KEYS}, "loop": {"epoch": 1}}
    directory = checkpoints.save_checkpoint(tmp_path / "checkpoint_000001", first)

    def broken(state, path):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        checkpoints.save_checkpoint(directory, {**first, "loop": {"epoch": 2}})
    monkeypatch.undo()
    assert load_checkpoint(directory) == first


def test_evaluation_and_equivariance_intervals(tmp_path):
    config = compose_trial(*NBODY_MLP, "trainer.epochs=5", "trainer.eval_every=2", "trainer.checkpoint_every=5",
                           "trainer.equivariance_every=2")
    reports, report = collector()
    run(config, report, tmp_path)
    # reports: evaluations at epochs 2 and 4, the last epoch (evaluated and checkpointed) at 5
    assert [(m["epoch"], c is not None) for m, c in reports] == [(2, False), (4, False), (5, True)]
    assert "mc_equivariance_error" not in reports[0][0]  # the first evaluation: 1 % 2 != 0
    assert "mc_equivariance_error" in reports[1][0]  # the second evaluation
    assert "mc_equivariance_error" not in reports[2][0]  # the third evaluation: measured every second one
    assert checkpoint_dirs(tmp_path) == ["checkpoint_000005"]


def test_entropy_only_for_permutation_groups(tmp_path):
    config = compose_trial(*NBODY_MLP, "group=e", "symmetrizer=ga", "trainer.epochs=1")
    metrics = run(config, None, tmp_path)
    assert "entropy" not in metrics and "train_entropy_penalty" not in metrics
    assert "val_mse" in metrics and "mc_equivariance_error" in metrics
    # GA over E(3) is equivariant in distribution only: E is a Monte-Carlo error, small but not 0
    assert 0 < metrics["mc_equivariance_error"] < 10


def record_learning_rates(monkeypatch) -> list[float]:
    """The learning rate of every optimiser step of the next runs (a hook on their optimiser)."""
    used: list[float] = []
    make_optimizer = train.make_optimizer

    def recording(model, trainer):
        optimizer = make_optimizer(model, trainer)
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
        return optimizer

    monkeypatch.setattr(train, "make_optimizer", recording)
    return used


def test_warmup_then_cosine_schedule(tmp_path, monkeypatch):
    """Linear warm-up to lr over warmup_epochs, then a cosine decay towards 0 at the end of the
    last epoch, step by step."""
    used = record_learning_rates(monkeypatch)
    config = compose_trial(*NBODY_MLP, "trainer.epochs=3", "trainer.warmup_epochs=1", "trainer.schedule=cosine",
                           "trainer.lr=0.01", "trainer.eval_every=3", "trainer.checkpoint_every=3")
    run(config, None, tmp_path)
    warmup, total, lr = 3, 9, 0.01  # 3 steps per epoch
    expected = [lr * (i + 1) / warmup if i < warmup
                else lr * 0.5 * (1 + math.cos(math.pi * (i - warmup) / (total - warmup))) for i in range(total)]
    assert used == pytest.approx(expected, rel=1e-12)
    assert max(used) == pytest.approx(lr) and used[-1] < 0.1 * lr


def test_constant_schedule_keeps_the_learning_rate(tmp_path, monkeypatch):
    used = record_learning_rates(monkeypatch)
    run(compose_trial(*NBODY_MLP, "trainer.epochs=2", "trainer.lr=0.003"), None, tmp_path)
    assert used == [0.003] * 6


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from workers.tasks.nbody import NBody

    calls = {"count": 0}
    loss = NBody.loss

    def poisoned(self, pred, batch):
        calls["count"] += 1
        value = loss(self, pred, batch)
        return value * float("nan") if calls["count"] > 3 else value  # epoch 2 (3 steps per epoch)

    monkeypatch.setattr(NBody, "loss", poisoned)
    config = compose_trial(*NBODY_MLP, "trainer.epochs=3")
    reports, report = collector()
    with pytest.raises(NonFiniteLoss, match=r"at epoch 2\b") as raised:
        run(config, report, tmp_path)
    assert "epoch 1" in str(raised.value)  # names the last good checkpoint
    assert [m["epoch"] for m, _ in reports] == [1]
    assert checkpoint_dirs(tmp_path) == ["checkpoint_000001"] and leftovers(tmp_path) == []
    state = load_checkpoint(tmp_path / "checkpoint_000001")
    assert state["loop"]["epoch"] == 1
    model = build_model(check_config(config).model)
    model.load_state_dict(state["model"])
    assert all(torch.isfinite(p).all() for p in model.parameters())

    monkeypatch.setattr(NBody, "loss", loss)  # the cause fixed: training continues from it
    resumed, report = collector()
    run(config, report, tmp_path, resume=tmp_path / "checkpoint_000001")
    assert [m["epoch"] for m, _ in resumed] == [2, 3]


def test_a_diverging_learning_rate_raises(tmp_path):
    config = compose_trial(*NBODY_MLP, "trainer.epochs=3", "trainer.lr=1e30")
    with pytest.raises(NonFiniteLoss, match=r"non-finite training loss .* at epoch \d+, step \d+"):
        run(config, None, tmp_path)


def test_augmentation_trains_on_transformed_examples(tmp_path):
    plain = run(compose_trial(*NBODY_MLP, "symmetrizer=none", "trainer.epochs=2"), None, tmp_path / "none")
    augmented, report = collector()
    run(compose_trial(*NBODY_MLP, "symmetrizer=augment", "trainer.epochs=2"), report, tmp_path / "augment")
    first, second = augmented[0][0], augmented[1][0]
    assert math.isfinite(second["train_loss"]) and second["train_loss"] != first["train_loss"]
    assert "entropy" not in second and "val_mse" in second
    # same initialisation and batches: only the random E(3) x S_n transformations differ
    assert second["train_loss"] != plain["train_loss"]
    assert second["samples_per_s"] == pytest.approx(second["examples_per_s"])  # one sample per example


@pytest.mark.parametrize("balance", ["constant", "gradnorm"])
def test_remul_trains_with_the_equivariance_penalty(tmp_path, balance):
    config = compose_trial(*NBODY_MLP, "symmetrizer=remul", f"remul.balance={balance}", "remul.alpha=1.5",
                           "remul.beta=0.5", "remul.gradnorm_lr=0.5", "trainer.epochs=2")
    reports, report = collector()
    run(config, report, tmp_path)
    for metrics, _ in reports:
        alpha, beta = metrics["train_alpha"], metrics["train_beta"]
        assert metrics["train_equivariance_loss"] > 0
        assert metrics["train_task_loss"] > 0
        if balance == "constant":
            assert (alpha, beta) == (1.5, 0.5)
        else:
            assert alpha + beta == pytest.approx(2.0) and (alpha, beta) != (1.5, 0.5)
        assert "entropy" not in metrics
    assert reports[0][0]["train_loss"] != reports[1][0]["train_loss"]


def test_separation_task_reports_unseparated_pairs(tmp_path, monkeypatch):
    shrink_task(monkeypatch, "exp", {"test": 40})  # 20 SAT/UNSAT pairs
    config = compose_trial("task=exp", "model.widths=[16]", "symmetrizer.eval_samples=2",
                           "symmetrizer.interface.hidden=8", "symmetrizer.interface.layers=1",
                           "trainer.separation_seeds=2")
    reports, report = collector()
    metrics = run(config, report, tmp_path)
    assert reports == [(metrics, None)]
    assert metrics["seeds"] == 2 and metrics["epoch"] == 0
    unseparated = metrics["test_unseparated_pairs"]
    assert unseparated == int(unseparated) and 0 <= unseparated <= 20
    assert metrics["test_separated_fraction"] == pytest.approx(1 - unseparated / 20)
    assert unseparated == 0  # PS over S_n with an MLP separates every 1-WL-equivalent EXP pair
    assert not list(tmp_path.glob("checkpoint_*"))  # nothing is trained


def test_separation_counts_pairs_a_constant_model_cannot_tell_apart(tmp_path, monkeypatch):
    shrink_task(monkeypatch, "exp", {"test": 40})
    config = compose_trial("task=exp", "model.widths=[16]", "symmetrizer=none", "trainer.separation_seeds=2")
    monkeypatch.setattr(protocol, "build_seeded", lambda plan, seed: _Constant(build_model(plan)))
    metrics = run(config, None, tmp_path)
    assert metrics["test_unseparated_pairs"] == 20 and metrics["test_separated_fraction"] == 0


class _Constant(torch.nn.Module):
    """A model whose output ignores the graph: no pair is separated."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, inputs, mask=None, **kwargs):
        out = self.model(inputs, mask, **kwargs)
        out.output = torch.zeros_like(out.output)
        return out


INVALID = [
    ("trainer", "lr", -1), ("trainer", "lr", float("nan")), ("trainer", "lr", "fast"), ("trainer", "epochs", 0),
    ("trainer", "batch_size", 2.5), ("trainer", "eval_every", True), ("trainer", "warmup_epochs", -1),
    ("trainer", "optimizer", "sgd"), ("trainer", "schedule", "linear"), ("trainer", "grad_clip", 0),
    ("trainer", "device", "tpu"), ("trainer", "precision", "fp16"), ("trainer", "weight_decay", -0.1),
    ("trainer", "eval_batch_size", 0), ("trainer", "unknown_key", 1),
    ("symmetrizer", "temperature", 0), ("symmetrizer", "train_samples", 0), ("symmetrizer", "eval_samples", 1.5),
    ("symmetrizer", "noise_scale", -1), ("symmetrizer", "entropy_weight", -0.1), ("symmetrizer", "sinkhorn_iters", 0),
    ("symmetrizer", "method", "magic"),
    ("remul", "balance", "foo"), ("remul", "alpha", -1), ("remul", "gradnorm_lr", -0.1),
    ("remul", "gradnorm_gamma", "high"), ("remul", "unknown_key", 1),
]


@pytest.mark.parametrize(("section", "key", "value"), INVALID, ids=[f"{s}.{k}={v}" for s, k, v in INVALID])
def test_invalid_settings_name_the_key(section, key, value):
    config = compose_trial(*NBODY_MLP)
    check_config(config)  # the valid base passes
    config[section][key] = value
    with pytest.raises(ValueError, match=re.escape(f"{section}.{key}=")):
        check_config(config)


def test_test_split_is_also_scored_group_transformed(tmp_path):
    """``test_<metric>_transformed`` scores a randomly group-transformed copy of the test split: equal to the
    plain score for an exactly invariant model (canonicalization: one deterministic sample), different for the
    bare base model, and kept in ``best_*`` like every test metric."""
    canonical = run(compose_trial(*NBODY_MLP, "symmetrizer=canonical", "trainer.epochs=2"), None, tmp_path / "c")
    bare = run(compose_trial(*NBODY_MLP, "symmetrizer=none", "trainer.epochs=2"), None, tmp_path / "n")
    for metrics in (canonical, bare):
        assert {"test_mse_transformed", "best_test_mse_transformed"} <= set(metrics)
        assert "val_mse_transformed" not in metrics
    assert canonical["test_mse_transformed"] == pytest.approx(canonical["test_mse"], rel=1e-4)
    assert abs(bare["test_mse_transformed"] - bare["test_mse"]) > 1e-2 * bare["test_mse"]


def test_transformed_split_moves_every_example_by_a_group_element():
    """S_n x E(3) on n-body: each transformed system keeps its pairwise distances, charges move with their
    particles, and targets move with the inputs; the draw depends on the seed only."""
    config = compose_trial(*NBODY_MLP)
    trial = check_config(config)
    task, model = trial.task, build_model(trial.model)
    split = task.load().splits["test"]
    moved = transformed_split(model, task, split, seed=3)
    assert set(moved) == set(split)
    again = transformed_split(model, task, split, seed=3)
    assert all(torch.equal(moved[key], again[key]) for key in moved)
    assert not torch.allclose(moved["pos"], split["pos"])
    assert not torch.allclose(moved["y"], split["y"])
    point_keys = [key for key, kind in task.input_kinds.items() if kind == "point"]
    for key in point_keys:
        assert torch.allclose(torch.cdist(moved[key], moved[key]).sort(-1).values.sort(-2).values,
                              torch.cdist(split[key], split[key]).sort(-1).values.sort(-2).values, atol=1e-4)
    other = transformed_split(model, task, split, seed=4)
    assert not torch.allclose(other[point_keys[0]], moved[point_keys[0]])
