"""What the end of a trial measures for the evaluation noise and for invariance of decisions (issue 27, item 7):
``best_<split>_<m>_eval_std`` with ``trainer.eval_std_repeats`` (off by default), and the test examples whose
decision flips under the group (``test_flips_transformed``) and between noise draws (``test_flips_redrawn``)."""

from __future__ import annotations

import pytest

from tests.train.helpers import NBODY_PS, compose_trial, shrink_exp_classify, without_timing
from workers import reporting
from workers.tasks import task_class
from workers.train import run

TINY = ("task=exp_classify", "group=sn", "trainer.batch_size=8", "trainer.epochs=1", "trainer.lr=1e-4")
BARE = (*TINY, "symmetrizer=none")
PS = (*TINY, "model.widths=[16]", "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2",
      "symmetrizer.interface.hidden=8", "symmetrizer.interface.layers=1")
SPREADS = ("best_val_accuracy_eval_std", "best_test_accuracy_eval_std")


def test_decisions_flip_under_relabelling_only_for_a_model_reading_the_node_order(monkeypatch, tmp_path):
    """Both models are deterministic and their decisions vary between the 8 test graphs (node counts 32..64 about
    48; the first slot's degree about the mean), so a count that compared the wrong rows would not stay 0."""
    shrink_exp_classify(monkeypatch)
    invariant = run(compose_trial(*BARE, "model.target=tests.train.invariant:NodeCountNet"), None, tmp_path / "inv")
    assert invariant[reporting.FLIPS] == 0 and invariant[reporting.REDRAWN_FLIPS] == 0
    ordered = run(compose_trial(*BARE, "model.target=tests.train.invariant:FirstNodeNet"), None, tmp_path / "first")
    assert ordered[reporting.REDRAWN_FLIPS] == 0 and 0 < ordered[reporting.FLIPS] <= 8
    canonical = run(compose_trial(*PS, "symmetrizer=canonical"), None, tmp_path / "canonical")
    assert canonical[reporting.REDRAWN_FLIPS] == 0 and 0 <= canonical[reporting.FLIPS] <= 8  # one sample, no noise
    assert not any(key in canonical for key in SPREADS)  # the evaluation spread is off unless configured
    assert {reporting.FLIPS, reporting.REDRAWN_FLIPS} <= reporting.report_keys(task_class("exp_classify"))
    assert reporting.FLIPS not in reporting.report_keys(task_class("nbody"))  # a regression makes no decisions


def test_the_evaluation_spread_of_a_sampled_method_and_of_a_deterministic_one(tmp_path):
    sampled = run(compose_trial(*NBODY_PS, "trainer.epochs=1", "trainer.eval_std_repeats=3"), None, tmp_path / "ps")
    assert sampled["best_val_mse_eval_std"] > 0 and sampled["best_test_mse_eval_std"] > 0  # N = 2: noisy
    again = run(compose_trial(*NBODY_PS, "trainer.epochs=1", "trainer.eval_std_repeats=3"), None, tmp_path / "again")
    assert without_timing(again) == without_timing(sampled)  # deterministic given the seed
    bare = run(compose_trial(*NBODY_PS, "trainer.epochs=1", "trainer.eval_std_repeats=3", "symmetrizer=none"), None,
               tmp_path / "none")
    assert bare["best_val_mse_eval_std"] == 0 and bare["best_test_mse_eval_std"] == 0  # nothing is drawn
    assert "best_val_mse_eval_std" not in run(compose_trial(*NBODY_PS, "trainer.epochs=1"), None, tmp_path / "off")


def test_one_repeat_is_refused():
    from workers.settings import check_config

    with pytest.raises(ValueError, match=r"trainer.eval_std_repeats=1 is not allowed; expected 0 \(off\) or an "
                                         r"integer ≥ 2"):
        check_config(compose_trial(*BARE, "trainer.eval_std_repeats=1"))
