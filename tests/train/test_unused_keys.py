"""``unused_keys``: a key it declares unused does not change the trained model. Each configuration is
trained twice with the same seed, the second time with every key it declares unused set to another
valid value: every metric but wall-clock time must be identical. A key that is used (PS's noise
scale) does change them, so the comparison can fail."""

from __future__ import annotations

import pytest

from tests.train.helpers import (
    NBODY_MLP,
    TIMING_KEYS,
    collector,
    compose_trial,
)
from workers.settings import check_config, merge, unused_keys
from workers.train import run

OTHER_VALUE = {  # a valid value different from the configs' own, per leaf key
    "noise_scale": 3.7, "temperature": 0.5, "sinkhorn_iters": 3, "entropy_weight": 0.9, "train_samples": 3,
    "eval_samples": 3, "name": "gin", "layers": 1, "hidden": 5, "dropout": 0.3, "knn": 2, "alpha": 0.3, "beta": 2.0,
    "balance": "gradnorm", "gradnorm_lr": 0.5, "gradnorm_gamma": 0.5, "dim": 5, "order": 6,
}
CONFIGS = {
    "ga": ("symmetrizer.method=ga",),
    "canonical": ("symmetrizer=canonical",),
    "none": ("symmetrizer.method=none",),
    "remul-constant": ("symmetrizer.method=remul",),
    "ps-over-O(3)": ("symmetrizer.method=ps", "group=o"),
    "ps-over-S_n-x-E(3)": ("symmetrizer.method=ps",),
}


def _train(config, tmp_path, name):
    reports, report = collector()
    run(config, report, tmp_path / name)
    return [{key: value for key, value in metrics.items() if key not in TIMING_KEYS} for metrics, _ in reports]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_keys_declared_unused_do_not_change_the_trained_model(name, tmp_path):
    config = compose_trial(*NBODY_MLP, "trainer.epochs=2", *CONFIGS[name])
    unused = unused_keys(config)
    assert unused, name
    changed = merge(config, {key: OTHER_VALUE[key.rsplit(".", 1)[1]] for key in unused})
    check_config(changed)  # the other values are valid
    assert unused_keys(changed).keys() == unused.keys()
    assert _train(config, tmp_path, "a") == _train(changed, tmp_path, "b")


def test_a_used_key_changes_the_metrics(tmp_path):
    config = compose_trial(*NBODY_MLP, "trainer.epochs=2", "symmetrizer.method=ps")
    assert "symmetrizer.noise_scale" not in unused_keys(config)
    changed = merge(config, {"symmetrizer.noise_scale": OTHER_VALUE["noise_scale"]})
    assert _train(config, tmp_path, "a") != _train(changed, tmp_path, "b")


def test_what_each_method_reads():
    ga = unused_keys(compose_trial(*NBODY_MLP, "symmetrizer.method=ga"))
    assert ga["symmetrizer.noise_scale"] == "not used by ga"
    assert "symmetrizer.train_samples" not in ga and "group.dim" not in ga and "group.order" in ga
    ps = unused_keys(compose_trial(*NBODY_MLP, "symmetrizer.method=ps"))
    assert not {"symmetrizer.noise_scale", "symmetrizer.temperature", "symmetrizer.sinkhorn_iters",
                "symmetrizer.entropy_weight", "symmetrizer.interface.hidden"} & set(ps)
    assert "remul.alpha" in ps
    remul = unused_keys(compose_trial(*NBODY_MLP, "symmetrizer.method=remul", "remul.balance=gradnorm"))
    assert "remul.alpha" not in remul and "remul.gradnorm_lr" not in remul


@pytest.mark.parametrize("spelling", [("D8", None), ("D_8", None), ("D_k", 8), ("C4", None), ("C_4", None),
                                      ("C_k", 4)])
def test_every_spelling_of_a_finite_group_reads_the_temperature_of_a_learned_method(spelling):
    """The parsed group decides, not the name's text: ``D8`` is D_8 (a softmax over its elements reads τ)."""
    name, order = spelling
    config = compose_trial("task=digits_rot", f"group.name={name}", f"group.order={order}".replace("None", "null"),
                           "symmetrizer=ps", "model=mlp")
    unused = unused_keys(config)
    assert "symmetrizer.temperature" not in unused and "symmetrizer.sinkhorn_iters" in unused
    assert ("group.order" in unused) == (order is None) and "group.dim" in unused
    ga = unused_keys(merge(config, {"symmetrizer.method": "ga"}))
    assert "symmetrizer.temperature" in ga


def test_a_temperature_sweep_over_D8_is_not_merged():
    """The sweep that used to run one trial for two temperatures (a string test of the group's name)."""
    from orchestrator.config import compose
    from orchestrator.plan import validate

    config = compose(["task=digits_rot", "group.name=D8", "group.order=null", "symmetrizer=ps", "model=mlp",
                      "symmetrizer.temperature=0.01,1"])
    plan = validate(config)
    assert not plan.collapsed and len(plan.points) == 2
