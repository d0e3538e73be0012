"""Every task declares the per-example shapes of its inputs and prediction without generating data;
the declaration must match what the generator produces."""

from __future__ import annotations

import pytest

from workers.tasks import REGISTRY, get_task

SMALL = {
    "graph8c": {},
    "exp": {},
    "exp_classify": {},
    "nbody": {"train_size": 4, "eval_size": 3, "dim": 2, "n_particles": 4},
    "nbody_gravity": {"train_size": 3, "eval_size": 2, "n_planets": 2},
    "pattern": {"train_size": 3, "val_size": 2, "test_size": 2, "patterns": 2},
    "digits_rot": {"train_size": 5, "val_size": 4, "test_size": 4},
}


def test_every_task_is_covered():
    assert set(SMALL) | {"files"} == set(REGISTRY)  # files reads your file: tests/tasks/test_files_task.py


@pytest.mark.parametrize("name", sorted(SMALL))
def test_declared_shapes_match_generated_data(name, tmp_path):
    task = get_task(name, **SMALL[name])
    data = task.load(tmp_path)
    split = next(iter(data.splits.values()))
    declared = task.input_shapes()
    assert set(declared) == set(task.input_kinds)
    for field, shape in declared.items():
        assert tuple(split[field].shape[1:]) == shape, field
    output = task.output_shape()
    if task.target_kind in ("point", "vector"):
        assert tuple(split["y"].shape[1:]) == output
    elif task.target_kind == "node":
        assert output[0] == tuple(split["y"].shape[1:])[0]
