"""What a trial measures once, on the weights of its best validation epoch: the exact (coupled, float64)
equivariance gap, the metric at several evaluation sample counts, and a finished checkpoint resumed
with other evaluation settings (evaluated anew, never a replay of the stored result)."""

from __future__ import annotations

import pytest
import torch

from tests.train.helpers import (
    NBODY_MLP,
    collector,
    compose_trial,
)
from workers.checkpoints import load_checkpoint
from workers.resumption import evaluate_checkpoint
from workers.settings import check_config
from workers.train import run

CURVE = ("trainer.eval_samples_curve=[1,4]", "trainer.eval_samples_repeats=3")


@pytest.mark.parametrize("method, exact", [("ps", True), ("ga", True), ("canonical", True), ("none", False),
                                           ("remul", False)])
def test_equivariance_gap_is_round_off_for_exact_methods_only(method, exact, tmp_path):
    config = compose_trial(*NBODY_MLP, "trainer.epochs=2", f"symmetrizer.method={method}")
    reports, report = collector()
    last = run(config, report, tmp_path)
    assert "equivariance_gap" not in reports[0][0]  # measured once, after the last epoch
    gap = last["equivariance_gap"]
    if exact:
        assert 0 <= gap < 1e-9, gap  # float64 round-off, whatever the Monte-Carlo error
        assert last["mc_equivariance_error"] > 1e-3 or method == "canonical"  # fresh noise: not exact
    else:
        assert gap > 1e-2, gap


def test_samples_curve_on_every_split_with_its_spread(tmp_path):
    config = compose_trial(*NBODY_MLP, "trainer.epochs=1", *CURVE)
    last = run(config, collector()[1], tmp_path / "a")
    curve = last["eval_samples_curve"]
    assert set(curve) == {"val_mse", "test_mse"} and all(set(points) == {"1", "4"} for points in curve.values())
    for points in curve.values():
        assert all(point["mean"] > 0 and point["std"] > 0 for point in points.values())  # PS: noise matters
    again = run(config, collector()[1], tmp_path / "b")
    assert again["eval_samples_curve"] == curve  # deterministic given the seed
    # `symsweep evaluate` on the finished checkpoint gives the very same points, for any choice of splits
    saved = load_checkpoint(tmp_path / "a" / "checkpoint_000001")
    assert evaluate_checkpoint(saved, [4], 3, ["test"], "cpu") == {"test_mse": {"4": curve["test_mse"]["4"]}}


def test_best_epoch_weights_are_kept_in_every_checkpoint(tmp_path):
    config = compose_trial(*NBODY_MLP, "trainer.epochs=3", "trainer.lr=0.05")
    last = run(config, collector()[1], tmp_path)
    final = load_checkpoint(tmp_path / "checkpoint_000003")
    best = load_checkpoint(tmp_path / f"checkpoint_{last['best_epoch']:06d}")
    for name, value in final["best_model"].items():
        assert torch.equal(value, best["model"][name]), name


def test_a_checkpoint_before_the_first_evaluation_has_no_best_weights_to_evaluate(tmp_path):
    """``best_model`` is the only source of a checkpoint's best weights (never its final ``model``)."""
    config = compose_trial(*NBODY_MLP, "trainer.epochs=2", "trainer.eval_every=2", "trainer.checkpoint_every=1")
    run(config, collector()[1], tmp_path)
    saved = load_checkpoint(tmp_path / "checkpoint_000001")
    assert saved["best_model"] is None
    message = (r"^the checkpoint of epoch 1 holds no weights of a best epoch \(it was written before the trial's first "
               r"evaluation\), so it cannot be evaluated at other sample counts$")
    with pytest.raises(ValueError, match=message):
        evaluate_checkpoint(saved, [1], 1, ["test"], "cpu")


def test_finished_checkpoint_resumed_with_other_eval_samples_is_evaluated_anew(tmp_path):
    config = compose_trial(*NBODY_MLP, "trainer.epochs=2")
    trained = run(config, collector()[1], tmp_path)
    checkpoint = tmp_path / "checkpoint_000002"

    same, report = collector()
    assert run(config, report, tmp_path / "same", resume=checkpoint) == trained  # same settings: the stored result

    values = {}
    for count in (1, 16):
        changed = compose_trial(*NBODY_MLP, "trainer.epochs=2", f"symmetrizer.eval_samples={count}")
        reports, report = collector()
        values[count] = run(changed, report, tmp_path / f"n{count}", resume=checkpoint)
        assert reports == [(values[count], None)]  # one fresh report, no checkpoint
        assert values[count]["eval_samples"] == count and values[count]["best_epoch"] == trained["best_epoch"]
        assert values[count]["best_test_mse"] == values[count]["test_mse"]  # the best epoch's weights
    assert len({trained["best_test_mse"], values[1]["test_mse"], values[16]["test_mse"]}) == 3


def test_unfinished_checkpoint_resumed_with_other_eval_samples_is_refused(tmp_path):
    run(compose_trial(*NBODY_MLP, "trainer.epochs=1"), collector()[1], tmp_path)
    longer = compose_trial(*NBODY_MLP, "trainer.epochs=2", "symmetrizer.eval_samples=4")
    reports, report = collector()
    with pytest.raises(ValueError, match=r"^symmetrizer\.eval_samples=4 \(checkpoint: 2\): the checkpoint of epoch 1 "
                                         r"is not finished"):
        run(longer, report, tmp_path / "more", resume=tmp_path / "checkpoint_000001")
    assert reports == [] and not (tmp_path / "more").exists()
    same = compose_trial(*NBODY_MLP, "trainer.epochs=2")  # the same count: training continues
    assert run(same, collector()[1], tmp_path / "more", resume=tmp_path / "checkpoint_000001")["epoch"] == 2


def test_bad_curve_settings_are_rejected_naming_the_key():
    for override, key in (("trainer.eval_samples_curve=[0,2]", "trainer.eval_samples_curve"),
                          ("trainer.eval_samples_curve=[]", "trainer.eval_samples_curve"),
                          ("trainer.eval_samples_repeats=0", "trainer.eval_samples_repeats")):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            check_config(compose_trial(*NBODY_MLP, override))


def test_cli_refuses_before_writing_anything(tmp_path, capsys):
    from orchestrator.cli import main

    run(compose_trial(*NBODY_MLP, "trainer.epochs=1"), collector()[1], tmp_path)
    workdir = tmp_path / "more"
    argv = ["train", *NBODY_MLP, "trainer.epochs=2", "symmetrizer.eval_samples=4", "--workdir", str(workdir),
            "--resume", str(tmp_path / "checkpoint_000001")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("symsweep train: error: symmetrizer.eval_samples=4") and len(error.splitlines()) == 1
    assert not workdir.exists()
