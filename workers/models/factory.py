"""The factory: (task, group, method, model config) -> a ready symmetrized model.

``check(task, config)`` does every compatibility check without building anything and returns the
checked ``Plan`` (it is what the orchestrator runs before a sweep starts, and what a trial runs
once); ``build_model(plan)`` builds from it without checking again, so a separation trial that
builds a hundred models checks once. ``config`` is the plain dict of a trial with the sections
``group`` (name, dim, order), ``symmetrizer`` (``workers.schema.SymmetrizerSettings``) and
``model`` (name + the model's hyperparameters).

Methods: ``ps``, ``ps_fixed_noise``, ``canonical``, ``ga``, ``fa`` wrap the base model in a
``Symmetrizer``; ``none``, ``augment`` and ``remul`` train the bare base model (augmentation and
the REMUL penalty are applied by the training loop) behind the same interface (``Unsymmetrized``).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from workers.models.layers import check_dropout
from workers.models.spec import FieldSpec, fields_of
from workers.schema import (
    INTERFACES,
    LEARNED_METHODS,
    METHODS,
    MODEL_DEFAULT,
    UNSYMMETRIZED,
    SymmetrizerSettings,
    load,
)
from workers.symmetry import Group, RegularScorer, Unsymmetrized, symmetrize
from workers.tasks.base import Task

__all__ = ["METHODS", "MODELS", "Plan", "build_interface", "build_model", "check", "model_class"]

MODELS = {
    "mlp": "workers.models.mlp:MLP",
    "transformer": "workers.models.transformer:Transformer",
    "vit": "workers.models.vit:ViT",
    "gin_id": "workers.models.gin_id:GINID",
    "gnn": "workers.models.gnn:GNN",
    "egnn": "workers.models.gnn:EGNN",
    "cnn": "workers.models.cnn:CNN",
}
SCORER_HIDDEN = 32  # width of the C_k/D_k scorer when symmetrizer.interface.hidden is null


def model_class(name: str) -> type[nn.Module]:
    if name not in MODELS:
        raise ValueError(f"model.name={name!r} is not a model; allowed: {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


@dataclass
class Plan:
    """Everything ``build_model`` needs, checked."""

    task: Task
    group: Group
    method: str
    inputs: dict[str, FieldSpec]
    output: FieldSpec
    model_name: str
    model_options: dict[str, Any]
    interface: str | None  # gin / vector_neurons / scorer for learned methods
    symmetrizer: SymmetrizerSettings


def input_specs(task: Task) -> dict[str, FieldSpec]:
    shapes = task.input_shapes()
    return {name: FieldSpec(kind, tuple(shapes[name])) for name, kind in task.input_kinds.items()}


def resolve_group(task: Task, group: Mapping[str, Any]) -> Group:
    """The configured group, with ``group.dim`` defaulting to the task's coordinate dimension."""
    name = group.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"group.name={name!r} is not a group; allowed e.g. S_n, O(d), SO(d), E(d), SE(d), "
                         "S_n x E(d), C_k, D_k (with group.order)")
    specs = input_specs(task)
    coordinates = fields_of(specs, "point", "vector")
    images = fields_of(specs, "image")
    dim = group.get("dim")
    if dim is None:
        dim = specs[coordinates[0]].shape[-1] if coordinates else (2 if images else None)
    if dim is None and "(d)" in name.replace(" ", ""):
        raise ValueError(f"group.name={name!r} does not fit task {task.name!r}: the group acts on coordinates and "
                         f"the task has no input of kind 'point' or 'vector'; allowed groups for this task: "
                         f"{_groups_for(specs)}")
    parsed = Group.parse(name, dim=dim if ("d" in name or "(" in name) else None, order=group.get("order"))
    _check_group_fits(task, parsed, specs, group.get("dim"))
    return parsed


def _groups_for(specs: Mapping[str, FieldSpec]) -> str:
    if fields_of(specs, "image"):
        return "C_k, D_k, SO(2), O(2)"
    if fields_of(specs, "point", "vector"):
        dim = specs[fields_of(specs, "point", "vector")[0]].shape[-1]
        allowed = f"S_n, O({dim}), SO({dim}), S_n x O({dim}), S_n x SO({dim})"
        if fields_of(specs, "point"):
            allowed += f", E({dim}), SE({dim}), S_n x E({dim}), S_n x SE({dim})"
        return allowed + (", C_k, D_k" if dim == 2 else "")
    return "S_n"


def _check_group_fits(task: Task, group: Group, specs: Mapping[str, FieldSpec], asked_dim: Any) -> None:
    def reject(reason: str) -> None:
        raise ValueError(f"group.name={group.name!r} does not fit task {task.name!r}: {reason}; "
                         f"allowed groups for this task: {_groups_for(specs)}")

    coordinates = fields_of(specs, "point", "vector")
    images = fields_of(specs, "image")
    if group.permutations and not fields_of(specs, "node", "pair", "point", "vector"):
        reject("S_n permutes nodes and the task has no node-indexed input")
    if group.has_matrix:
        if images:
            if group.permutations or group.translations:
                reject("images are rotated and reflected, not permuted or translated")
        elif not coordinates:
            reject("the group acts on coordinates and the task has no input of kind 'point' or 'vector'")
        else:
            dim = specs[coordinates[0]].shape[-1]
            if group.finite is not None and dim != 2:
                reject(f"{group.name} rotates 2-D coordinates or images and the task's coordinates have "
                       f"dimension {dim}")
            if group.dim != dim:
                key = "group.dim" if asked_dim is not None else "group.name"
                value = asked_dim if asked_dim is not None else group.name
                raise ValueError(f"{key}={value!r} does not fit task {task.name!r}: its coordinates have "
                                 f"dimension {dim}; allowed: {dim}")
        if group.translations and not fields_of(specs, "point"):
            reject("translations need an input of kind 'point'")
    if task.target_kind in ("point", "vector") and not group.has_matrix and not group.permutations:
        reject("the group does not act on the task's coordinates")


def _interface_for(task: Task, group: Group, method: str, specs: Mapping[str, FieldSpec],
                   asked: str) -> str:
    if asked not in INTERFACES:
        raise ValueError(f"symmetrizer.interface.name={asked!r} is not an interface; allowed: {', '.join(INTERFACES)}")
    possible = []
    if group.finite is not None:
        possible = ["scorer"]
    elif group.has_matrix:
        if fields_of(specs, "point", "vector"):
            possible = ["vector_neurons"]
    elif fields_of(specs, "pair"):
        possible = ["gin"]
    if not possible:
        need = ("an input of kind 'pair' (an adjacency) for the GIN interface" if not group.has_matrix
                else "inputs of kind 'point' or 'vector' for the Vector Neurons interface")
        framed_kind = "point" if group.has_matrix else "pair"
        has_frame = group.finite is None and fields_of(specs, framed_kind)
        raise ValueError(f"symmetrizer.method={method!r} over {group.name} on task {task.name!r} needs {need}; "
                         f"allowed methods here: ga, {'fa, ' if has_frame else ''}none, augment, remul")
    if asked != "auto" and asked not in possible:
        raise ValueError(f"symmetrizer.interface.name={asked!r} cannot serve {group.name} on task {task.name!r}; "
                         f"allowed: auto, {', '.join(possible)}")
    return possible[0]


def check(task: Task, config: Mapping[str, Any]) -> Plan:
    """Validate the (task, group, method, model) combination; raise ValueError naming the key."""
    symmetrizer = load(SymmetrizerSettings, config.get("symmetrizer"), "symmetrizer")
    method = symmetrizer.method
    group = resolve_group(task, config.get("group") or {})
    specs = input_specs(task)
    output = FieldSpec(task.target_kind, tuple(task.output_shape()))
    if method == "fa":
        if group.finite is not None or fields_of(specs, "image"):
            raise ValueError(f"symmetrizer.method='fa' has no frame for group {group.name} on task {task.name!r}; "
                             "frames exist for S_n on graphs and O/SO/E/SE(d) (and S_n x those) on point sets; "
                             "allowed methods here: ps, ps_fixed_noise, canonical, ga, none, augment, remul")
        if group.has_matrix and not fields_of(specs, "point"):
            raise ValueError(f"symmetrizer.method='fa' over {group.name} needs an input of kind 'point'; "
                             f"task {task.name!r} has none")
        if not group.has_matrix and not fields_of(specs, "pair"):
            raise ValueError(f"symmetrizer.method='fa' over S_n needs an adjacency (kind 'pair'); task "
                             f"{task.name!r} has none; allowed methods here: ps, ga, none, augment, remul")
    interface = None
    if method in LEARNED_METHODS:
        interface = _interface_for(task, group, method, specs, symmetrizer.interface.name)
    model = dict(config.get("model") or {})
    name = model.pop("name", MODEL_DEFAULT)
    cls = model_class(name)
    reason = cls.unsupported(specs, output)
    if reason:
        fitting = [other for other in MODELS if model_class(other).unsupported(specs, output) is None]
        raise ValueError(f"model.name={name!r} cannot be used on task {task.name!r}: it {reason}; "
                         f"allowed models for this task: {', '.join(fitting)}")
    if "dropout" in model:
        check_dropout(model["dropout"])
    parameters = inspect.signature(cls.__init__).parameters
    for key in model:
        if key not in parameters or key in ("self", "inputs", "output"):
            allowed = [p for p in parameters if p not in ("self", "inputs", "output")]
            raise ValueError(f"model.{key}={model[key]!r} is not an option of model {name!r}; "
                             f"allowed: {', '.join(allowed)}")
    return Plan(task, group, method, specs, output, name, model, interface, symmetrizer)


def build_interface(plan: Plan) -> nn.Module:
    """The interface network q_ω of a learned method."""
    from workers.models import interfaces

    specs, group = plan.inputs, plan.group
    node_fields = {name: specs[name].shape[-1] for name in fields_of(specs, "node")}
    options = plan.symmetrizer.interface
    given = {key: getattr(options, key) for key in ("layers", "hidden", "dropout", "knn")
             if getattr(options, key) is not None}
    if plan.interface == "gin":
        given.pop("knn", None)
        node = (fields_of(specs, "node") or [None])[0]
        return interfaces.GINInterface(adjacency_field=fields_of(specs, "pair")[0], node_field=node,
                                       node_channels=node_fields.get(node, 1) if node else 1, **given)
    if plan.interface == "vector_neurons":
        return interfaces.VectorNeurons(dim=group.dim, vector_fields=fields_of(specs, "point", "vector"),
                                        node_fields=node_fields, **given)
    # scorer: a small network of the task's layout scoring each transformed input (regular repr.)
    scorer_kind = "cnn" if fields_of(specs, "image") else "mlp"
    hidden = options.hidden if options.hidden is not None else SCORER_HIDDEN
    scorer_options = {"channels": [hidden // 2 or 1, hidden]} if scorer_kind == "cnn" else {"widths": [hidden]}
    scorer = model_class(scorer_kind)(specs, FieldSpec("invariant", (1,)), **scorer_options)
    return RegularScorer(group, scorer, {name: spec.kind for name, spec in specs.items()})


def build_model(plan: Plan) -> nn.Module:
    """A model ``forward(inputs, mask) -> SymmetrizedOutput`` for a checked ``plan`` (``check``): the
    library's ``symmetrize`` around the base model, or the bare base model for the unsymmetrized methods.
    Nothing is checked again here (the model and interface constructors check their own values)."""
    base = model_class(plan.model_name)(plan.inputs, plan.output, **plan.model_options)
    kinds = {name: spec.kind for name, spec in plan.inputs.items()}
    if plan.method in UNSYMMETRIZED:
        return Unsymmetrized(base, plan.group, kinds, plan.output.kind)
    settings = plan.symmetrizer
    interface = build_interface(plan) if plan.interface else None
    return symmetrize(base, plan.group, plan.method, kinds, plan.output.kind, settings.train_samples,
                      settings.eval_samples, interface=interface, noise_scale=settings.noise_scale,
                      temperature=settings.temperature, sinkhorn_iters=settings.sinkhorn_iters)
