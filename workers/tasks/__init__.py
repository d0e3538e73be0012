"""Tasks: offline dataset generators, the on-disk cache, losses and metrics (one module per task).

A task is named in the config by ``task.name`` (the registry below, ``register_task`` adds to it) or given as
your own class, ``task.target=package.module:Class``: a subclass of ``workers.tasks.Task`` (the protocol is
written in ``workers/tasks/base.py`` and the README, "Your own model and data"), checked here before anything
runs, each failure one line naming the key. ``task=files`` reads tensors from a file you already have
(``workers/tasks/files.py``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Mapping

from workers import plugins
from workers.symmetry.groups import DATA_KINDS as KINDS  # the one list of tensor kinds
from workers.tasks.base import Task, TaskData, iterate_batches

# name -> "module:Class" (imported on first use, so that a trial pays only for its task) or a registered class
REGISTRY: dict[str, str | type[Task]] = {
    "graph8c": "workers.tasks.graph8c:Graph8c",
    "exp": "workers.tasks.exp:Exp",
    "exp_classify": "workers.tasks.exp:ExpClassify",
    "nbody": "workers.tasks.nbody:NBody",
    "nbody_gravity": "workers.tasks.nbody_gravity:NBodyGravity",
    "pattern": "workers.tasks.pattern:Pattern",
    "digits_rot": "workers.tasks.digits_rot:DigitsRot",
    "files": "workers.tasks.files:Files",
}


def task_class(name: str) -> type[Task]:
    plugins.load()
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"task.name={name!r} is not a task; allowed: {', '.join(sorted(REGISTRY))} (or task.target="
                         "'package.module:Class')")
    if not isinstance(REGISTRY[name], str):
        return REGISTRY[name]
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_task(name: str, **params: Any) -> Task:
    """Instantiate a task by name with validated parameters."""
    return task_class(name)(**params)


def configured_task(section: Mapping[str, Any] | None) -> Task:
    """The task of a trial config's ``task`` section: ``task.name`` with its parameters, or ``task.target`` (your
    own class) with its parameters (the other keys of the section)."""
    from workers.targets import refuse_hydra_target

    params = dict(section or {})
    refuse_hydra_target("task", params)
    if "target" not in params:
        return get_task(params.pop("name", None), **params)
    target = params.pop("target")
    if "name" in params:
        raise ValueError(f"task.target={target!r} and task.name={params['name']!r} are both given; allowed: one of "
                         "them (in a preset: `- override /task: null` for task.target)")
    cls = task_target(target)
    try:
        return cls(**params)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's constructor or validate: one line naming it
        raise ValueError(f"task.target={target!r} cannot be built with {params!r} ({type(err).__name__}: "
                         f"{str(err).strip()[:300]})") from None


def task_target(spelling: Any) -> type[Task]:
    """The class ``task.target`` names, checked against the task protocol (``check_protocol``)."""
    from workers.targets import resolve

    found = resolve("task.target", spelling)
    where = f"task.target={spelling!r}"
    if not (inspect.isclass(found) and issubclass(found, Task)):
        what = f"the class {found.__name__}" if inspect.isclass(found) else f"a {type(found).__name__}"
        raise ValueError(f"{where} is {what}, not a subclass of workers.tasks.Task; allowed: a Task subclass (README, "
                         "Your own model and data)")
    check_protocol(found, where)
    taken = REGISTRY.get(found.name)
    if taken is not None and taken is not found and taken != f"{found.__module__}:{found.__qualname__}":
        raise ValueError(f"{where} has name {found.name!r}, which is task.name={found.name!r} already; allowed: "
                         "another name (it names the task's cached data)")
    return found


def check_protocol(cls: type[Task], where: str) -> None:
    """What a task class must declare beyond what ``Task`` checks where a class is defined (metric, mode, the
    direction of every metric, the selection split): a name, a version, its parameters' defaults, the kind of
    every input and of the output, and every abstract method implemented."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise ValueError(f"{where} does not implement {', '.join(missing)}; allowed: a Task subclass implementing "
                         "generate, input_shapes, output_shape, loss and metrics")
    facts = {"name": lambda v: isinstance(v, str) and v.isidentifier(), "version": lambda v: type(v) is int,
             "defaults": lambda v: isinstance(v, dict), "metric": lambda v: isinstance(v, str) and bool(v),
             "input_kinds": lambda v: isinstance(v, dict) and bool(v) and all(k in KINDS for k in v.values()),
             "target_kind": lambda v: v in KINDS}
    words = {"name": "a name like my_task", "version": "an integer", "defaults": "a dict of every parameter and its "
             "default", "metric": "the headline metric's name (and mode: min or max)", "input_kinds": "a dict of input "
             f"name -> kind ({', '.join(KINDS)})", "target_kind": f"one of {', '.join(KINDS)}"}
    for fact, test in facts.items():
        if not hasattr(cls, fact) or not test(getattr(cls, fact)):
            shown = repr(getattr(cls, fact)) if hasattr(cls, fact) else "missing"
            raise ValueError(f"{where}: {cls.__name__}.{fact} is {shown}; expected {words[fact]}")


def register_task(cls: type[Task], *, replace: bool = False) -> type[Task]:
    """Make ``task.name=<cls.name>`` mean ``cls`` (checked as ``task.target`` would be) in every process that imports
    the registering module (``SYMSWEEP_PLUGINS``). A name already taken is refused unless ``replace``."""
    where = f"register_task({getattr(cls, '__name__', cls)!r})"
    if not (inspect.isclass(cls) and issubclass(cls, Task)):
        raise ValueError(f"{where}: expected a subclass of workers.tasks.Task")
    check_protocol(cls, where)
    if cls.name in REGISTRY and not replace:
        raise ValueError(f"task.name={cls.name!r} is already a task; allowed: a new name (or replace=True)")
    REGISTRY[cls.name] = cls
    return cls


def unregister_task(name: str) -> None:
    """Forget a task registered with ``register_task`` (tests register for their duration)."""
    if name in REGISTRY and not isinstance(REGISTRY[name], str):
        del REGISTRY[name]


def task_label(section: Mapping[str, Any] | None) -> str:
    """A short name of the configured task without importing it: ``task.name``, or the class ``task.target`` names."""
    section = section or {}
    if section.get("target") is not None:
        return str(section["target"]).replace(":", ".").rsplit(".", 1)[-1]
    return str(section.get("name"))


__all__ = ["KINDS", "REGISTRY", "Task", "TaskData", "check_protocol", "configured_task", "get_task",
           "iterate_batches", "register_task", "task_class", "task_label", "task_target", "unregister_task"]
