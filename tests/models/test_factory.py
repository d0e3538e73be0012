"""The factory: every valid (task × group × method) builds, trains one step and is equivariant
(coupled noise: exactly); the bare base model is not; invalid combinations name the key."""

from __future__ import annotations

import itertools

import pytest
import torch

from workers.models.factory import METHODS, build_model, check
from workers.symmetry import Symmetrizer, coupled_equivariance_gap, equivariance_errors
from workers.tasks import get_task

SMALL = {
    "exp_classify": {},
    "nbody": {"train_size": 6, "eval_size": 4},
    "nbody_2d": {"train_size": 6, "eval_size": 4, "dim": 2},
    "pattern": {"train_size": 4, "val_size": 2, "test_size": 2, "patterns": 2, "max_nodes": 100},
    "digits_rot": {"train_size": 6, "val_size": 4, "test_size": 4},
}
GROUPS = ["S_n", "O(d)", "SO(d)", "E(d)", "SE(d)", "S_n x O(d)", "S_n x SO(d)", "S_n x E(d)", "S_n x SE(d)",
          "C_k", "D_k"]
_DATA: dict[str, dict] = {}


def task_and_batch(name: str, rows: int = 3):
    task = get_task(name.removesuffix("_2d"), **SMALL[name])
    if name not in _DATA:
        _DATA[name] = task.load().splits["train"]
    batch = {key: value[:rows] for key, value in _DATA[name].items()}
    return task, batch


def config(group: str, method: str, model: str = "mlp", **model_options) -> dict:
    return {"group": {"name": group, "order": 4},
            "symmetrizer": {"method": method, "train_samples": 2, "eval_samples": 2, "noise_scale": 1.0,
                            "temperature": 0.1, "interface": {"name": "auto", "hidden": 16, "layers": 2}},
            "model": {"name": model, **model_options}}


def _valid(name: str, group: str, method: str) -> bool:
    task = get_task(name.removesuffix("_2d"), **SMALL[name])
    try:
        check(task, config(group, method, widths=[16]))
        return True
    except ValueError:
        return False


VALID = [combo for combo in itertools.product(SMALL, GROUPS, METHODS) if _valid(*combo)]


def test_the_matrix_is_not_trivial():
    assert len(VALID) >= 100
    methods = {method for _, _, method in VALID}
    assert methods == set(METHODS)


def _exact(task_name: str, group: str, method: str) -> bool:
    """Combinations whose symmetrization is exactly sample-wise equivariant with coupled noise."""
    if task_name == "digits_rot" and group not in ("C_k", "D_k"):
        return False  # continuous rotations of pixel images interpolate
    if method in ("fa", "canonical") and task_name in ("exp_classify", "pattern"):
        return False  # ties: Laplacian frames (repeated eigenvalues), noise-free scores (automorphisms)
    return True


@pytest.mark.parametrize("task_name,group,method", VALID, ids=["-".join(c) for c in VALID])
def test_every_valid_combination_trains_and_is_equivariant(task_name, group, method):
    torch.manual_seed(0)
    task, batch = task_and_batch(task_name)
    model = build_model(check(task, config(group, method, widths=[16])))
    inputs = {name: batch[name] for name in task.input_kinds}
    mask = batch.get("mask")
    model.train()
    out = model(inputs, mask)
    loss = task.loss(out.output, batch) + 0.1 * out.penalty
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.base.parameters())
    if isinstance(model, Symmetrizer) and _exact(task_name, group, method):
        model = model.double().eval()
        inputs = {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}
        gap = coupled_equivariance_gap(model, inputs, mask, torch.Generator().manual_seed(1))
        assert gap < 1e-8, gap


@pytest.mark.parametrize("task_name,group", [("nbody", "S_n x E(d)"), ("exp_classify", "S_n"), ("digits_rot", "C_k")])
def test_the_bare_base_model_is_not_equivariant(task_name, group):
    torch.manual_seed(0)
    task, batch = task_and_batch(task_name)
    model = build_model(check(task, config(group, "none", widths=[16]))).double().eval()
    inputs = {k: (batch[k].double() if batch[k].is_floating_point() else batch[k]) for k in task.input_kinds}
    errors = equivariance_errors(lambda x, m: model(x, m).output, inputs, model.group, task.input_kinds,
                                 task.target_kind, batch.get("mask"), samples=4,
                                 generator=torch.Generator().manual_seed(2))
    assert errors["E"] > 1e-3 and errors["E_prime"] > 1e-3, errors


MODEL_CASES = [
    ("nbody", "S_n x E(d)", "ps", "transformer", {"layers": 1, "width": 16, "heads": 2}),
    ("nbody", "S_n x E(d)", "ga", "egnn", {"layers": 1, "hidden": 8}),
    ("nbody", "S_n x SE(d)", "canonical", "gnn", {"layers": 1, "hidden": 8}),
    ("exp_classify", "S_n", "ps", "gin_id", {"layers": 1, "hidden": 8}),
    ("pattern", "S_n", "ps", "vit",
     {"arch": "vit_tiny_patch16_224", "patch": 20, "depth": 1, "embed_dim": 16, "heads": 2}),
    ("digits_rot", "D_k", "ps", "cnn", {"channels": [4]}),
    # batch norm (running statistics in evaluation) and pooling between blocks
    ("digits_rot", "C_k", "ga", "cnn",
     {"channels": [4, 4, 8], "batch_norm": True, "pool_every": 2, "activation": "elu"}),
]


@pytest.mark.parametrize("task_name,group,method,model_name,options", MODEL_CASES,
                         ids=[case[3] for case in MODEL_CASES])
def test_every_base_model_symmetrizes(task_name, group, method, model_name, options):
    torch.manual_seed(0)
    task, batch = task_and_batch(task_name, rows=2)
    model = build_model(check(task, config(group, method, model_name, **options)))
    inputs = {name: batch[name] for name in task.input_kinds}
    out = model(inputs, batch.get("mask"))
    task.loss(out.output, batch).backward()
    model = model.double().eval()
    double = {k: (v.double() if v.is_floating_point() else v) for k, v in inputs.items()}
    assert coupled_equivariance_gap(model, double, batch.get("mask"), torch.Generator().manual_seed(1)) < 1e-8


REJECTED = [
    ("exp_classify", {"group": {"name": "S_n x O(d)"}}, "group.name"),
    ("exp_classify", {"group": {"name": "C_k", "order": 4}}, "group.name"),
    ("digits_rot", {"group": {"name": "S_n"}}, "group.name"),
    ("digits_rot", {"group": {"name": "C_k", "order": 4}, "symmetrizer": {"method": "fa"}}, "symmetrizer.method"),
    ("digits_rot", {"group": {"name": "SO(d)"}, "symmetrizer": {"method": "ps"}}, "symmetrizer.method"),
    ("nbody", {"group": {"name": "S_n"}, "symmetrizer": {"method": "fa"}}, "symmetrizer.method"),
    ("nbody", {"group": {"name": "O(d)", "dim": 2}}, "group.dim"),
    ("nbody", {"group": {"name": "C_k", "order": 4}}, "group.name"),
    ("nbody", {"group": {"name": "E(d)"}, "symmetrizer": {"method": "magic"}}, "symmetrizer.method"),
    ("nbody", {"group": {"name": "E(d)"}, "model": {"name": "cnn"}}, "model.name"),
    ("nbody", {"group": {"name": "E(d)"}, "model": {"name": "resnet"}}, "model.name"),
    ("nbody", {"group": {"name": "E(d)"}, "model": {"name": "mlp", "depth": 3}}, "model.depth"),
    ("exp_classify", {"group": {"name": "S_n"}, "model": {"name": "egnn"}}, "model.name"),
    ("exp_classify",
     {"group": {"name": "S_n"}, "symmetrizer": {"method": "ps", "interface": {"name": "vector_neurons"}}},
     "symmetrizer.interface.name"),
    ("exp_classify", {"group": {"name": "Q(3)"}}, "group.name"),
]


@pytest.mark.parametrize("task_name,override,key", REJECTED, ids=[f"{t}-{k}" for t, _, k in REJECTED])
def test_rejected_combinations_name_the_key(task_name, override, key):
    task = get_task(task_name.removesuffix("_2d"), **SMALL[task_name])
    base = {"group": {"name": "S_n"}, "symmetrizer": {"method": "ps"}, "model": {"name": "mlp"}}
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as error:
        check(task, {**base, **override})
    assert "allowed" in str(error.value)
