"""Tasks: offline dataset generators, the on-disk cache, losses and metrics (one module per task)."""

from __future__ import annotations

import importlib
from typing import Any

from workers.symmetry.groups import DATA_KINDS as KINDS  # the one list of tensor kinds
from workers.tasks.base import Task, TaskData, iterate_batches

# name -> "module:Class"; modules are imported on first use so that a trial pays only for its task.
REGISTRY: dict[str, str] = {
    "graph8c": "workers.tasks.graph8c:Graph8c",
    "exp": "workers.tasks.exp:Exp",
    "exp_classify": "workers.tasks.exp:ExpClassify",
    "nbody": "workers.tasks.nbody:NBody",
    "nbody_gravity": "workers.tasks.nbody_gravity:NBodyGravity",
    "pattern": "workers.tasks.pattern:Pattern",
    "digits_rot": "workers.tasks.digits_rot:DigitsRot",
}


def task_class(name: str) -> type[Task]:
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"task.name={name!r} is not a task; allowed: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_task(name: str, **params: Any) -> Task:
    """Instantiate a task by name with validated parameters."""
    return task_class(name)(**params)


__all__ = ["KINDS", "REGISTRY", "Task", "TaskData", "get_task", "iterate_batches", "task_class"]
