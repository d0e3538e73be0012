"""Your own finite group from the config: ``group.target=package.module:name`` (a ``Group``, or a function returning
one whose parameters are ``group.*`` keys) or ``group.generators`` closed by the library (at most ``group.limit``
elements). It states the kinds it acts on, is checked against the task like a named group, works with GA, PS and
canonicalization through the finite-group scorer (``assert_equivariant``), is refused by FA (no frame), and every
mistake — a target that does not import or is no group, generators that do not close — is one line."""

from __future__ import annotations

import sys
import textwrap

import pytest

from tests.train.helpers import collector, compose_trial
from workers.models.factory import build_model
from workers.settings import check_config, unused_keys
from workers.symmetry import FiniteGroup
from workers.symmetry.testing import assert_equivariant
from workers.train import run

pytestmark = pytest.mark.usefixtures("one_thread")

GROUPS = textwrap.dedent('''
    """A lab's groups."""
    import math

    import torch

    from workers.symmetry import FiniteGroup

    ONE = torch.eye(4, dtype=torch.float64)
    I = torch.tensor([[0., -1, 0, 0], [1, 0, 0, 0], [0, 0, 0, -1], [0, 0, 1, 0]], dtype=torch.float64)
    J = torch.tensor([[0., 0, -1, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0, -1, 0, 0]], dtype=torch.float64)

    def q8():
        """The quaternion group {±1, ±i, ±j, ±k}, acting on R^4 by left multiplication."""
        return FiniteGroup.from_generators("Q_8", matrices=[I, J])


    KLEIN = FiniteGroup.from_generators("V_4", matrices=[torch.diag(torch.tensor([-1., 1, 1, 1])).double(),
                                                         torch.diag(torch.tensor([1., -1, 1, 1])).double()])


    def turns(order: int = 4):
        """Rotations of the plane by multiples of 2π/order."""
        angle = 2 * math.pi / order
        return FiniteGroup.from_generators(f"turns_{order}", matrices=[[[math.cos(angle), -math.sin(angle)],
                                                                         [math.sin(angle), math.cos(angle)]]])


    NOT_A_GROUP = 42
''')
NBODY4 = ("task=nbody", "task.dim=4", "task.train_size=6", "task.eval_size=4", "model.widths=[16]",
          "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4",
          "trainer.batch_size=2", "trainer.epochs=1")
NBODY2 = tuple(o.replace("task.dim=4", "task.dim=2") for o in NBODY4)
SQUARE = "group.generators.matrices=[[[0,-1],[1,0]],[[1,0],[0,-1]]]"  # a quarter turn and a reflection: D_4


@pytest.fixture
def groups(tmp_path, monkeypatch):
    (tmp_path / "own_groups.py").write_text(GROUPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("own_groups", None)


def test_a_group_of_your_own_states_where_it_acts(groups):
    config = compose_trial(*NBODY4, "group.target=own_groups:q8", "symmetrizer.method=ga")
    assert config["group"] == {"target": "own_groups:q8"}  # the default group's keys are gone
    group = check_config(config).model.group
    assert (group.name, group.finite, group.dim) == ("Q_8", 8, 4)
    assert group.kinds == {"point", "vector"}  # node and invariant inputs (the charges) are left as they are
    assert unused_keys(config)["group.order"] == "not used by Q_8"


@pytest.mark.parametrize("target,method", [("own_groups:q8", "ga"), ("own_groups:q8", "ps"),
                                           ("own_groups:KLEIN", "canonical"), ("own_groups:q8", "ps_fixed_noise")])
def test_ga_ps_and_canonicalization_over_your_group_are_exact(groups, target, method):
    plan = check_config(compose_trial(*NBODY4, f"group.target={target}", f"symmetrizer.method={method}")).model
    assert plan.interface == ("scorer" if method != "ga" else None)  # PS: the finite-group scorer
    model = build_model(plan)
    data = plan.task.load().splits["test"]
    inputs = {name: data[name][:4] for name in plan.task.input_kinds}
    assert assert_equivariant(model, inputs, data["mask"][:4]) < 1e-9


def test_a_function_reads_the_group_keys_it_names(groups):
    group = check_config(compose_trial(*NBODY2, "group.target=own_groups:turns", "group.order=6",
                                       "symmetrizer.method=ga")).model.group
    assert (group.name, group.finite) == ("turns_6", 6)
    with pytest.raises(ValueError, match=r"^group\.speed=3 is not a parameter of group\.target='own_groups:turns'; "
                                         r"allowed: order$"):
        check_config(compose_trial(*NBODY2, "group.target=own_groups:turns", "group.speed=3"))


def test_generators_in_the_config_are_closed_and_train_exactly(groups, tmp_path):
    config = compose_trial(*NBODY2, SQUARE, "group.name=square", "symmetrizer.method=ps")
    plan = check_config(config).model
    assert isinstance(plan.group, FiniteGroup) and (plan.group.name, plan.group.finite) == ("square", 8)
    last = run(config, collector()[1], tmp_path)
    assert last["equivariance_gap"] < 1e-9
    bodies = check_config(compose_trial(*NBODY2, "group.generators.node_permutations=[[1,2,3,4,0]]",
                                        "symmetrizer.method=ga")).model.group
    assert (bodies.finite, bodies.permutes_nodes, bodies.dim) == (5, True, None)


def test_fa_has_no_frame_for_a_finite_group(groups):
    with pytest.raises(ValueError, match=r"^symmetrizer\.method='fa' has no frame for group Q_8; .*allowed methods "
                                         r"here: ps, ps_fixed_noise, canonical, ga, none, augment, remul$"):
        check_config(compose_trial(*NBODY4, "group.target=own_groups:q8", "symmetrizer.method=fa"))


@pytest.mark.parametrize("overrides,message", [
    (("group.target=no_such_lab.groups:q8",), r"^group\.target='no_such_lab\.groups:q8' cannot be imported \(No "
     r"module named 'no_such_lab'\)"),
    (("group.target=own_groups:NOT_A_GROUP",), r"^group\.target='own_groups:NOT_A_GROUP' is a int; allowed: a Group, "
     r"or a function returning one$"),
    (("group.target=torch.nn:Linear",), r"^group\.target='torch\.nn:Linear' is the class Linear; allowed: a Group"),
    (("group.target=own_groups:q8",), r"^group\.target='own_groups:q8' does not fit task 'nbody': Q_8 acts on 4-D "
     r"coordinates and the task's coordinates have dimension 2"),
    (("group.generators.matrices=[[[0.6,-0.8],[0.8,0.6]]]",), r"^group\.generators: group 'generated': its "
     r"generators make more than limit=1024 elements; allowed: a group of at most limit elements \(raise limit\)$"),
    ((SQUARE, "group.limit=4"), r"^group\.generators: group 'generated': its generators make more than limit=4 "
     r"elements"),
    ((SQUARE, "group.name=D_4"), r"^group\.generators with group\.name='D_4', a registered group; allowed: a name of "
     r"your own for the generated group \(a label\), or none$"),
    (("group.generators.matrices=[[[1,1],[0,1]]]",), r"^group\.generators: group 'generated': a matrix is not "
     r"orthogonal"),
    (("group.generators.rotations=[[[0,-1],[1,0]]]",), r"^group\.generators=\{'rotations': .*is not allowed; "
     r"expected a mapping with matrices \(k, d, d: orthogonal\) and/or node_permutations"),
])
def test_a_wrong_group_is_one_line(groups, overrides, message):
    with pytest.raises(ValueError, match=message):
        check_config(compose_trial(*NBODY2, "symmetrizer.method=ga", *overrides))
