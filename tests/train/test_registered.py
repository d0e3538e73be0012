"""Groups and methods added from outside symsweep through the public hooks (the recipes "How to add a group"
and "How to add a method" of docs/architecture.md), run the whole way: ``check_config`` (schema, factory fit
checks, ``unused_keys``), ``build_model`` and one epoch of ``workers.train.run``, with their equivariance
claim checked by ``assert_equivariant`` and by the loop's own end-of-trial ``equivariance_gap``.

Toy groups: {I, −I} in d dimensions (reads ``group.dim``) and the cyclic shifts of the n bodies (reads a key
of its own, ``group.nodes``). Toy methods: ``ga_right`` (GA with every sample moved on the right by one fixed
element: still Haar, still exactly equivariant), ``fixed_subset`` (the average over N draws from a fixed random
subset of three elements: not equivariant) and ``half_remul`` (the bare model with a REMUL objective of its
own, α = β = 0.5, applied by the loop)."""

from __future__ import annotations

import pytest
import torch

from tests.train.helpers import NBODY_MLP, collector, compose_trial
from workers.methods import Method, get_method, method_names, register_method, unregister_method
from workers.models.factory import build_model
from workers.objectives import Remul
from workers.settings import check_config, unused_keys
from workers.symmetry import FiniteGroup, GroupAveraging, Symmetrizer, register_group, unregister_group
from workers.symmetry.distributions import Distribution, _node_count
from workers.symmetry.testing import assert_equivariant
from workers.train import run


def point_reflection(dim: int = 3) -> FiniteGroup:
    return FiniteGroup.from_generators(f"Z_2(-I, {dim})", matrices=[-torch.eye(dim, dtype=torch.float64)])


def ring(nodes: int = 5) -> FiniteGroup:
    return FiniteGroup.from_generators(f"C_{nodes} bodies", node_permutations=[[*range(1, nodes), 0]])


class RightShifted(GroupAveraging):
    """GA with each sample u moved to u·s for one fixed element s per row (drawn from a fixed seed and the row's
    mask, which the group keeps): q(x, h·u) = h·u·s = h·q(x, u)."""

    def forward(self, inputs, noise, mask, repeats=1):
        element, _ = super().forward(inputs, noise, mask, repeats)
        like = next(v for v in inputs.values() if v.is_floating_point())
        fixed = self.group.sample(len(element), _node_count(inputs, mask), mask, torch.Generator().manual_seed(7),
                                  like.dtype, like.device)
        fixed.shift = None
        return self.group.compose(element, fixed), {}


class FixedSubset(Distribution):
    """N draws from a fixed random subset of three elements, whatever the input: not equivariant."""

    noise_kinds = {"choice": "index"}

    def draw_noise(self, inputs, mask, rows, generator=None):
        return {"choice": torch.randint(3, (rows,), generator=generator)}

    def forward(self, inputs, noise, mask, repeats=1):
        like = next(v for v in inputs.values() if v.is_floating_point())
        subset = self.group.sample(3, _node_count(inputs, mask), None, torch.Generator().manual_seed(0), like.dtype,
                                   like.device)
        subset.shift = None
        return subset.index(noise["choice"].to(like.device)), {}


def half_remul(symmetrizer, remul, model, task, shard):
    return Remul(model, task, shard, 0.5, 0.5)


TOY_METHODS = [
    Method("ga_right", "GA moved on the right by a fixed element", symmetrized=True,
           distribution=lambda group, kinds, interface, **options: RightShifted(group)),
    Method("fixed_subset", "a fixed random subset of three elements", symmetrized=True,
           distribution=lambda group, kinds, interface, **options: FixedSubset(group)),
    Method("half_remul", "REMUL with α = β = 0.5", symmetrized=False, one_sample=True, objective=half_remul),
]


@pytest.fixture
def registered():
    """The toy groups and methods, registered for the test's duration only."""
    families = [register_group("Flip", point_reflection), register_group("Ring", ring)]
    for method in TOY_METHODS:
        register_method(method)
    yield
    for family in families:
        unregister_group(family)
    for method in TOY_METHODS:
        unregister_method(method.name)


def config(*overrides: str) -> dict:
    return compose_trial(*NBODY_MLP, "trainer.epochs=1", *overrides)


def test_the_hooks_reach_the_schema_and_the_settings(registered):
    assert method_names()[-3:] == ("ga_right", "fixed_subset", "half_remul")
    assert get_method("ga_right").shardable and not get_method("half_remul").shardable
    unused = unused_keys(config("symmetrizer.method=ga_right", "group.name=Flip"))
    assert unused["symmetrizer.noise_scale"] == "not used by ga_right" and "symmetrizer.train_samples" not in unused
    assert "group.dim" not in unused and unused["group.order"] == "not used by Z_2(-I, 3)"
    assert unused["group.nodes"] == "not used by Z_2(-I, 3)"  # a key of another registered group
    unused = unused_keys(config("symmetrizer.method=ps", "group.name=Ring", "+group.nodes=5"))
    assert "group.nodes" not in unused and "symmetrizer.temperature" not in unused  # the softmax over C_5
    assert "symmetrizer.sinkhorn_iters" in unused
    unused = unused_keys(config("symmetrizer.method=half_remul"))
    assert {"symmetrizer.train_samples", "remul.alpha", "remul.balance"} <= set(unused)
    with pytest.raises(ValueError, match=r"trainer\.devices=2 .*method 'half_remul'.*allowed: 1 for methods "
                                         r"canonical, none, augment, remul, half_remul$"):
        check_config(config("symmetrizer.method=half_remul", "trainer.devices=2"))


def test_unregistered_names_are_refused_with_the_registered_ones_listed():
    with pytest.raises(ValueError, match=r"^symmetrizer\.method='ga_right' is not allowed; expected one of ps, "):
        check_config(config("symmetrizer.method=ga_right"))
    with pytest.raises(ValueError, match=r"group\.name='Ring' is not a group; allowed: S_n, .*, D_k"):
        check_config(config("group.name=Ring"))


def test_a_registered_group_fits_only_where_it_acts(registered):
    with pytest.raises(ValueError, match=r"group\.name='Ring' does not fit task 'digits_rot': C_5 bodies permutes "
                                         r"nodes.*allowed groups for this task: O\(2\), SO\(2\), C_k, D_k, Flip$"):
        check_config(compose_trial("task=digits_rot", "group.name=Ring"))
    with pytest.raises(ValueError, match=r"symmetrizer\.method='fa' has no frame for group C_5 bodies.*allowed "
                                         r"methods here: ps, ps_fixed_noise, canonical, ga, none, augment, remul, "
                                         r"ga_right, fixed_subset, half_remul$"):
        check_config(config("group.name=Ring", "symmetrizer.method=fa"))
    with pytest.raises(ValueError, match=r"group\.name='Ring' does not fit task 'nbody': C_4 bodies permutes 4 node "
                                         r"slots and the inputs have 5"):
        check_config(config("group.name=Ring", "+group.nodes=4"))


@pytest.mark.parametrize("group,method,exact", [
    ("Flip", "ps", True), ("Flip", "ga", True), ("Ring", "canonical", True), ("Ring", "ga_right", True),
    ("sn_e", "ga_right", True), ("sn_e", "fixed_subset", False), ("Flip", "half_remul", False),
])
def test_registered_groups_and_methods_train_and_keep_their_claim(registered, tmp_path, group, method, exact):
    trial = config(f"group.name={group}" if group != "sn_e" else "group=sn_e", f"symmetrizer.method={method}")
    plan = check_config(trial).model
    model = build_model(plan)
    assert isinstance(model, Symmetrizer) == get_method(method).symmetrized
    task, data = plan.task, plan.task.load().splits["test"]
    inputs = {name: data[name][:6] for name in task.input_kinds}
    if exact:
        assert assert_equivariant(model, inputs, data["mask"][:6]) < 1e-9
    else:
        with pytest.raises(AssertionError, match="not equivariant under"):
            assert_equivariant(model, inputs, data["mask"][:6])
    reports, report = collector()
    last = run(trial, report, tmp_path)  # one epoch: the loop trains it and measures its gap itself
    assert [metrics["epoch"] for metrics, _ in reports] == [1] and torch.isfinite(torch.tensor(last["train_loss"]))
    assert (last["equivariance_gap"] < 1e-9) == exact, last["equivariance_gap"]
