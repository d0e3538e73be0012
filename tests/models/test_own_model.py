"""Your own base model, named in the config (``model.target=package.module:Class``) or registered
(``register_model``): a module that exists only in a temporary folder, built with the task's ``FieldSpec``s where its
constructor names them, symmetrized by every method that applies and exactly equivariant under
``assert_equivariant``, trained by the loop; every mistake one line naming ``model.target``, before anything runs."""

from __future__ import annotations

import sys
import textwrap

import pytest

from tests.train.helpers import NBODY_MLP, collector, compose_trial
from workers.methods import get_method, method_names
from workers.models.factory import MODELS, build_model, register_model, unregister_model
from workers.settings import check_build, check_config, check_on_data
from workers.symmetry import Symmetrizer
from workers.symmetry.testing import assert_equivariant
from workers.train import run

pytestmark = pytest.mark.usefixtures("one_thread")

NETS = textwrap.dedent('''
    """A lab's own networks: they know nothing of groups."""
    import torch
    from torch import nn

    class FlatNet(nn.Module):
        """Every input flattened, a perceptron, reshaped to the output (given the task's FieldSpecs)."""

        def __init__(self, inputs, output, hidden: int = 16):
            super().__init__()
            self.names, self.shape = list(inputs), output.shape
            size = sum(spec.size for spec in inputs.values())
            self.net = nn.Sequential(nn.Linear(size, hidden), nn.Tanh(), nn.Linear(hidden, output.size))

        def forward(self, inputs):
            dtype = self.net[0].weight.dtype
            flat = torch.cat([inputs[name].to(dtype).flatten(1) for name in self.names], 1)
            return self.net(flat).view(-1, *self.shape)


    class Bare(nn.Module):
        """No inputs/output in its constructor: only its own keyword arguments (and any other)."""

        def __init__(self, points: int = 5, dim: int = 3, **extra):
            super().__init__()
            self.points, self.dim, self.extra = points, dim, extra
            self.linear = nn.Linear(points * dim, points * dim)

        def forward(self, inputs):
            return self.linear(inputs["pos"].to(self.linear.weight.dtype).flatten(1)).view(-1, self.points, self.dim)


    class WrongShape(FlatNet):
        def forward(self, inputs):
            return super().forward(inputs).flatten(1)


    class Broken(FlatNet):
        def forward(self, inputs):
            return inputs["velocity"]


    class Fussy(FlatNet):
        def __init__(self, inputs, output, hidden: int = 16):
            if hidden > 100:
                raise TypeError("hidden must stay small")
            super().__init__(inputs, output, hidden)


    def not_a_class():
        return None


    class NotAModule:
        pass
''')


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """``own_nets`` importable from a temporary folder only, for the test's duration."""
    (tmp_path / "own_nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "own_nets"
    sys.modules.pop("own_nets", None)


NBODY = tuple(o for o in NBODY_MLP if not o.startswith("model"))  # the tiny n-body trial, no model chosen


def config(*overrides: str) -> dict:
    return compose_trial(*NBODY_MLP, "trainer.epochs=1", *overrides)


def own(target: str, *overrides: str, **options) -> dict:
    trial = config(*overrides)
    trial["model"] = {"target": target, **options}
    return trial


def test_the_command_line_gives_your_model_its_own_section(nets):
    """``model.target`` on the command line drops the model group's YAML; its keyword arguments need no ``+``."""
    trial = compose_trial(*NBODY, "model.target=own_nets:FlatNet", "model.hidden=8")
    assert trial["model"] == {"target": "own_nets:FlatNet", "hidden": 8}  # no widths, activation, ... of mlp
    plan = check_config(trial).model
    assert plan.model_name == plan.target == "own_nets:FlatNet" and plan.model_options == {"hidden": 8}


@pytest.mark.parametrize("method", [name for name in method_names() if name in
                                    ("ps", "ps_fixed_noise", "canonical", "ga", "fa", "none", "augment", "remul")])
def test_your_model_is_symmetrized_by_every_method_that_applies(nets, method):
    plan = check_config(own("own_nets:FlatNet", f"symmetrizer.method={method}", hidden=8)).model
    model = build_model(plan)
    assert type(model.base).__name__ == "FlatNet" and model.base.net[0].out_features == 8
    assert isinstance(model, Symmetrizer) == get_method(method).symmetrized
    data = plan.task.load().splits["test"]
    inputs = {name: data[name][:4] for name in plan.task.input_kinds}
    if get_method(method).symmetrized:
        assert assert_equivariant(model, inputs, data["mask"][:4]) < 1e-9
    else:  # the bare model, trained towards equivariance by the loop: not exactly equivariant
        with pytest.raises(AssertionError, match="not equivariant under"):
            assert_equivariant(model, inputs, data["mask"][:4])


def test_your_model_trains_and_the_loop_measures_its_gap(nets, tmp_path):
    trial = own("own_nets:FlatNet", "symmetrizer.method=ga", hidden=8)
    check_on_data(check_config(trial))  # what the driver tries before a sweep starts
    reports, report = collector()
    last = run(trial, report, tmp_path)
    assert [metrics["epoch"] for metrics, _ in reports] == [1] and last["equivariance_gap"] < 1e-9
    assert "test_mse_transformed" in last and "best_val_mse" in last


def test_a_constructor_without_inputs_gets_only_its_options(nets):
    plan = check_config(own("own_nets:Bare", "symmetrizer.method=ga", points=5, colour="red")).model
    model = build_model(plan)
    assert (model.base.points, model.base.extra) == (5, {"colour": "red"})  # **extra takes any key
    check_build(plan)


def test_register_model_names_your_class(nets):
    import own_nets

    register_model("flat", own_nets.FlatNet)
    try:
        plan = check_config(config("symmetrizer.method=ga") | {"model": {"name": "flat", "hidden": 4}})
        assert type(build_model(plan.model).base) is own_nets.FlatNet
        with pytest.raises(ValueError, match=r"^model\.name='flat' is already a model; allowed: a new name"):
            register_model("flat", own_nets.FlatNet)
        with pytest.raises(ValueError, match=r"expected a name like my_net and an nn\.Module class"):
            register_model("bad", own_nets.NotAModule)
    finally:
        unregister_model("flat")
    assert "flat" not in MODELS


@pytest.mark.parametrize("target,options,message", [
    ("no_such_lab.nets:Net", {}, r"^model\.target='no_such_lab\.nets:Net' cannot be imported \(No module named "
     r"'no_such_lab'\); allowed: 'package\.module:Name' importable in the driver and in every trial"),
    ("own_nets:Missing", {}, r"^model\.target='own_nets:Missing': module 'own_nets' has no 'Missing'; allowed: "),
    ("own_nets:not_a_class", {}, r"^model\.target='own_nets:not_a_class' is a function, not a torch\.nn\.Module "
     r"class; allowed: an nn\.Module subclass"),
    ("own_nets:NotAModule", {}, r"^model\.target='own_nets:NotAModule' is the class NotAModule, not a torch\.nn"
     r"\.Module class"),
    ("own_nets", {}, r"^model\.target='own_nets' is not allowed; expected 'package\.module:Name'"),
    ("own_nets:FlatNet", {"depth": 3}, r"^model\.depth=3 is not an option of model 'own_nets:FlatNet'; allowed: "
     r"hidden$"),
    ("own_nets:FlatNet", {"name": "mlp"}, r"^model\.target='own_nets:FlatNet' and model\.name='mlp' are both given; "
     r"allowed: one of them"),
    ("own_nets:Fussy", {"hidden": 500}, r"^model\.target='own_nets:Fussy' cannot be built with \{'hidden': 500\} "
     r"\(TypeError: hidden must stay small\)$"),
])
def test_a_wrong_model_target_is_one_line_naming_it(nets, target, options, message):
    with pytest.raises(ValueError, match=message):
        check_build(check_config(own(target, **options)).model)


def test_hydras_target_key_is_refused_with_a_pointer(nets):
    trial = config()
    trial["model"] = {"_target_": "own_nets:FlatNet"}
    with pytest.raises(ValueError, match=r"^model\._target_='own_nets:FlatNet' is Hydra's key, which symsweep does "
                                         r"not read \(a trial never runs Hydra\); allowed: model\.target="):
        check_config(trial)


@pytest.mark.parametrize("target,message", [
    ("own_nets:WrongShape", r"^model\.target='own_nets:WrongShape' returned shape \(2, 15\) on two examples of the "
     r"'train' split of task 'nbody'; expected one tensor of shape \(2, 5, 3\) \(the task's output: kind 'point', "
     r"shape \(5, 3\) per example\)$"),
    ("own_nets:Broken", r"^model\.target='own_nets:Broken' failed on a forward pass of two examples of the 'train' "
     r"split of task 'nbody' \(KeyError: 'velocity'\); expected forward\(inputs\) with inputs \['charges', 'mask', "
     r"'pos', 'vel'\]$"),
])
def test_one_forward_on_two_examples_checks_the_output_shape(nets, target, message):
    trial = check_config(own(target))
    check_build(trial.model)  # builds: only a forward pass shows the mistake
    with pytest.raises(ValueError, match=message):
        check_on_data(trial)
