"""Researchers' own groups, methods, models and tasks, in every process: ``SYMSWEEP_PLUGINS`` names modules
(comma-separated, e.g. ``mylab.groups,mylab.methods``) that call ``workers.symmetry.register_group``,
``workers.methods.register_method``, ``workers.models.factory.register_model`` or ``workers.tasks.register_task``
when imported. They are imported once, before the first look-up of a method, a group, a model or a task
(``workers.methods``, ``workers.models.factory``, ``workers.tasks``), so the driver's checks and every trial (a
fresh Ray worker inherits the driver's environment; on an attached cluster set the variable in
``cluster.runtime_env.env_vars`` or ``clusters/runtime_env``) know the same names. Without registering anything,
``model.target``/``task.target``/``group.target`` name your code directly (``workers.targets``). Pure Python.
"""

from __future__ import annotations

import importlib
import os

VARIABLE = "SYMSWEEP_PLUGINS"
_loaded: set[str] = set()


def load() -> None:
    """Import every module ``SYMSWEEP_PLUGINS`` names that is not imported yet; a missing one is a one-line error."""
    for name in (part.strip() for part in os.environ.get(VARIABLE, "").split(",")):
        if not name or name in _loaded:
            continue
        _loaded.add(name)  # first: a plugin that looks a method up while importing must not import itself again
        try:
            importlib.import_module(name)
        except ImportError as error:
            _loaded.discard(name)
            raise ValueError(f"{VARIABLE}={os.environ[VARIABLE]!r}: module {name!r} cannot be imported ({error}); "
                             "allowed: importable modules that register groups, methods, models or tasks") from None
