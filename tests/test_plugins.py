"""``SYMSWEEP_PLUGINS``: a researcher's module that registers a group and a method is imported before the first
look-up, so ``check_config`` in any process (the driver, a fresh trial) knows them without an import of its own;
a module that cannot be imported is a one-line error naming the variable."""

from __future__ import annotations

import sys
import textwrap

import pytest

from workers import plugins
from workers.methods import method_names, unregister_method
from workers.symmetry import Group, unregister_group

PLUGIN = textwrap.dedent('''
    """A lab's own group and method."""
    import torch

    from workers.methods import Method, register_method
    from workers.symmetry import FiniteGroup, GroupAveraging, register_group

    FAMILY = register_group("Flip", lambda dim=3: FiniteGroup.from_generators(
        "Flip", matrices=[-torch.eye(dim, dtype=torch.float64)]))
    register_method(Method("lab_ga", "GA, the lab's way", symmetrized=True,
                           distribution=lambda group, kinds, interface, **options: GroupAveraging(group)))
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "lab_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.VARIABLE, " lab_plugin , ")
    yield
    module = sys.modules.pop("lab_plugin", None)
    if module is not None:
        unregister_group(module.FAMILY)
        unregister_method("lab_ga")
    plugins._loaded.discard("lab_plugin")


def test_a_plugin_is_imported_before_the_first_look_up(plugin):
    from tests.train.helpers import NBODY_MLP, compose_trial
    from workers.settings import check_config

    assert "lab_ga" in method_names()  # the look-up imported the module
    plan = check_config(compose_trial(*NBODY_MLP, "group.name=Flip", "symmetrizer.method=lab_ga")).model
    assert plan.method == "lab_ga" and plan.group.name == "Flip" and plan.group.finite == 2
    assert isinstance(Group.parse("Flip"), Group)


def test_a_missing_plugin_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv(plugins.VARIABLE, "no_such_lab_module")
    with pytest.raises(ValueError, match=r"^SYMSWEEP_PLUGINS='no_such_lab_module': module 'no_such_lab_module' "
                                         r"cannot be imported \(No module named 'no_such_lab_module'\); allowed: "):
        method_names()
    assert "no_such_lab_module" not in plugins._loaded  # asked again next time
