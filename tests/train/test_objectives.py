"""One objective per method family, chosen once; REMUL and augmentation go through the library's
``equivariance_penalty``; the loop state a checkpoint carries (``LoopState``) and what a checkpoint
that cannot be resumed says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from orchestrator.cli import main
from tests.train.helpers import NBODY_MLP, assert_same_metrics, collector, compose_trial
from workers.checkpoints import LOOP_FIELDS, LoopState, load_checkpoint
from workers.objectives import Augmentation, Remul, Supervised, Symmetrized, make_objective, penalty
from workers.runtime import build_seeded, step_generator
from workers.settings import check_config
from workers.sharding import Shard
from workers.symmetry import GradNorm, equivariance_penalty
from workers.tasks.nbody import masked_mse
from workers.train import run


def objective_of(*overrides: str):
    config = compose_trial(*NBODY_MLP, *overrides)
    plan = check_config(config)
    return make_objective(plan.symmetrizer, plan.remul, build_seeded(plan.model, 0), plan.task, Shard())


@pytest.mark.parametrize("method, family", [("none", Supervised), ("ps", Symmetrized), ("ga", Symmetrized),
                                            ("canonical", Symmetrized), ("augment", Augmentation),
                                            ("remul", Remul)])
def test_each_method_family_has_its_objective(method, family):
    objective = objective_of(f"symmetrizer.method={method}", "symmetrizer.entropy_weight=0.25")
    assert type(objective) is family
    if family is Symmetrized:
        assert objective.entropy_weight == 0.25


def test_remul_weights_are_constant_or_gradnorm():
    constant = objective_of("symmetrizer.method=remul", "remul.alpha=1.5", "remul.beta=0.5")
    assert (constant.alpha, constant.beta, constant.gradnorm) == (1.5, 0.5, None)
    assert constant.state_dict() is None
    adaptive = objective_of("symmetrizer.method=remul", "remul.balance=gradnorm", "remul.gradnorm_lr=0.3")
    assert isinstance(adaptive.gradnorm, GradNorm) and adaptive.gradnorm.lr == 0.3
    assert adaptive.state_dict() == adaptive.gradnorm.state_dict()


def nbody_batch(config: dict) -> tuple:
    task = check_config(config).task
    split = task.load().splits["train"]
    return task, {key: value[:4] for key, value in split.items()}


def test_the_loop_penalty_is_the_library_penalty_with_a_masked_task_loss():
    """L_equi of the loop (its forward pass, the task loss on the moved batch) is exactly
    ``equivariance_penalty`` called with the bare model and the task's masked MSE."""
    config = compose_trial(*NBODY_MLP, "symmetrizer.method=remul")
    task, batch = nbody_batch(config)
    model = build_seeded(check_config(config).model, 0)
    inputs = {name: batch[name] for name in task.input_kinds}
    with torch.no_grad():
        library = equivariance_penalty(lambda x, m: model(x, m).output,
                                       lambda prediction, y, m: masked_mse(prediction, {"y": y, "mask": m}),
                                       inputs, batch["y"], model.group, task.input_kinds, task.target_kind,
                                       batch.get("mask"), step_generator(0, 5), masked_loss=True)
        loop = penalty(model, task, batch, step_generator(0, 5), Shard())
    assert float(loop) == float(library) > 0


@torch.no_grad()
def test_remul_and_augmentation_losses_are_built_from_the_penalty():
    config = compose_trial(*NBODY_MLP, "symmetrizer.method=remul", "remul.alpha=1.5", "remul.beta=0.5")
    task, batch = nbody_batch(config)
    remul = objective_of("symmetrizer.method=remul", "remul.alpha=1.5", "remul.beta=0.5")
    loss, parts = remul(batch, step_generator(0, 7))
    assert float(parts["task_loss"]) == float(masked_mse(remul.model(
        {name: batch[name] for name in task.input_kinds}, batch["mask"]).output, batch))
    assert float(parts["equivariance_loss"]) == float(penalty(remul.model, task, batch, step_generator(0, 7),
                                                              Shard()))
    assert float(loss) == pytest.approx(1.5 * float(parts["task_loss"]) + 0.5 * float(parts["equivariance_loss"]))

    augment = objective_of("symmetrizer.method=augment")  # α = 0, β = 1: the penalty alone, as the task loss
    loss, parts = augment(batch, step_generator(0, 7))
    assert float(loss) == float(parts["task_loss"]) == float(penalty(augment.model, task, batch,
                                                                     step_generator(0, 7), Shard()))


# -- the loop state in a checkpoint --------------------------------------------------------------------

def test_a_checkpoint_carries_the_loop_state_in_the_format_resume_reads(tmp_path):
    """The checkpoint layout is the one earlier symsweep versions wrote (``loop`` a plain dict of the
    same fields, the best weights in ``best_model``), so their checkpoints resume as before."""
    config = compose_trial(*NBODY_MLP, "trainer.epochs=2")
    reports, report = collector()
    run(config, report, tmp_path)
    saved = load_checkpoint(reports[-1][1])
    assert set(saved) == {"model", "optimizer", "scheduler", "gradnorm", "rng", "loop", "config", "best_model"}
    assert LOOP_FIELDS == ("epoch", "step", "best", "metrics", "evaluations", "elapsed", "history")
    assert set(saved["loop"]) == set(LOOP_FIELDS)
    state = LoopState.from_checkpoint(saved, reports[-1][1])
    assert (state.epoch, state.step, state.evaluations) == (2, 6, 2)
    assert state.history == [metrics for metrics, _ in reports]
    assert state.to_checkpoint()["best_model"] is saved["best_model"]
    assert state.last_metrics()["epoch"] == 2 and state.last_metrics()["elapsed_s"] == state.elapsed


def damaged_checkpoint(tmp_path: Path, damage: str) -> tuple[tuple[str, ...], Path]:
    """A checkpoint of a run that cannot be continued, and the overrides of the run that tries."""
    method = ("symmetrizer=remul",) if damage == "gradnorm" else ()
    run(compose_trial(*NBODY_MLP, *method, "trainer.epochs=2"), None, tmp_path / "trained")
    if damage == "gradnorm":  # trained with constant weights; continued with GradNorm
        return (*method, "remul.balance=gradnorm"), tmp_path / "trained" / "checkpoint_000001"
    saved = load_checkpoint(tmp_path / "trained" / "checkpoint_000001")
    del saved["loop"]["evaluations"]
    torch.save(saved, tmp_path / "broken.pt")
    return (), tmp_path / "broken.pt"


MESSAGES = {"loop_state": r"broken\.pt lacks the loop state evaluations",
            "gradnorm": r"checkpoint_000001: remul\.balance='gradnorm' but the checkpoint holds no GradNorm state"}


@pytest.mark.parametrize("damage", list(MESSAGES))
def test_a_checkpoint_that_cannot_be_continued_is_refused_before_writing(damage, tmp_path, capsys):
    overrides, path = damaged_checkpoint(tmp_path, damage)
    with pytest.raises(ValueError, match=MESSAGES[damage]):
        run(compose_trial(*NBODY_MLP, *overrides, "trainer.epochs=2"), None, tmp_path / "resumed", resume=path)
    assert not (tmp_path / "resumed").exists()
    capsys.readouterr()
    workdir = tmp_path / "out"
    assert main(["train", *NBODY_MLP, *overrides, "trainer.epochs=3", "--workdir", str(workdir),
                 "--resume", str(path)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(MESSAGES[damage], lines[0]), lines
    assert not workdir.exists()


def test_a_checkpoint_written_before_loop_state_existed_resumes_to_the_uninterrupted_result(tmp_path):
    """``data/checkpoint_before_loop_state.pt``: epoch 1 of ``NBODY_MLP, model.dropout=0.1,
    trainer.epochs=2``, written by the loop as it was before ``LoopState`` and the objectives (a string-keyed
    loop dict). Resumed now, epoch 2 is exactly the epoch 2 of an uninterrupted run of today's loop: the
    format reads as before and no random stream moved."""
    config = compose_trial(*NBODY_MLP, "model.dropout=0.1", "trainer.epochs=2")
    full, report = collector()
    run(config, report, tmp_path / "full")
    old = Path(__file__).parent / "data" / "checkpoint_before_loop_state.pt"
    assert load_checkpoint(old)["loop"]["epoch"] == 1
    tail, report = collector()
    run(config, report, tmp_path / "resumed", resume=old)
    assert [metrics["epoch"] for metrics, _ in tail] == [2]
    assert_same_metrics(tail[0][0], full[1][0], tolerance=0.0)
