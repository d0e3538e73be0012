"""The factory: (task, group, method, model config) -> a ready symmetrized model.

``check(task, config)`` does every compatibility check without building anything and returns the
checked ``Plan`` (it is what the orchestrator runs before a sweep starts, and what a trial runs
once); ``build_model(plan)`` builds from it without checking again, so a separation trial that
builds a hundred models checks once. ``config`` is the plain dict of a trial with the sections
``group`` (name, dim, order), ``symmetrizer`` (``workers.schema.SymmetrizerSettings``) and
``model`` (name + the model's hyperparameters).

Methods (``workers.methods``): a symmetrized one (``ps``, ``ps_fixed_noise``, ``canonical``, ``ga``, ``fa``)
wraps the base model in the library's ``Symmetrizer``; the others (``none``, ``augment``, ``remul``) train the
bare base model (augmentation and the REMUL penalty are applied by the training loop) behind the same interface
(``Unsymmetrized``). Groups: any registered ``group.name`` (``workers.symmetry.register_group``); the checks ask
the group its facts (``misfit``, ``dim``, ``reads``, ``ps_noise``) and the library whether a method applies.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from torch import nn

from workers import plugins
from workers.methods import Method, get_method, method_names
from workers.models import custom
from workers.models.layers import check_dropout
from workers.models.spec import FieldSpec, fields_of, node_count
from workers.schema import SymmetrizerSettings, load
from workers.symmetry import Group, RegularScorer, Unsymmetrized, group_spellings, make_distribution, symmetrize
from workers.tasks.base import Task

__all__ = ["MODELS", "Plan", "build_interface", "build_model", "check", "model_class", "register_model"]

MODELS: dict[str, str | type[nn.Module]] = {  # model.name -> "module:Class" (imported on first use) or a class
    "mlp": "workers.models.mlp:MLP",
    "transformer": "workers.models.transformer:Transformer",
    "vit": "workers.models.vit:ViT",
    "gin_id": "workers.models.gin_id:GINID",
    "gnn": "workers.models.gnn:GNN",
    "egnn": "workers.models.gnn:EGNN",
    "cnn": "workers.models.cnn:CNN",
}
SCORER_HIDDEN = 32  # width of the finite groups' scorer when symmetrizer.interface.hidden is null


def __getattr__(name: str):
    if name == "METHODS":  # every registered method now (``workers.methods``), not at import
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_class(name: str) -> type[nn.Module]:
    plugins.load()
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"model.name={name!r} is not a model; allowed: {', '.join(MODELS)} (or model.target="
                         "'package.module:Class')")
    if not isinstance(MODELS[name], str):
        return MODELS[name]
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def register_model(name: str, cls: type[nn.Module], *, replace: bool = False) -> type[nn.Module]:
    """Make ``model.name=<name>`` build ``cls`` (the contract of ``workers.models.custom``), in every process that
    imports the registering module (``SYMSWEEP_PLUGINS``). A name already taken is refused unless ``replace``."""
    module_class = isinstance(cls, type) and issubclass(cls, nn.Module)
    if not (isinstance(name, str) and name.isidentifier() and module_class):
        raise ValueError(f"register_model({name!r}, {cls!r}): expected a name like my_net and an nn.Module class")
    if name in MODELS and not replace:
        raise ValueError(f"model.name={name!r} is already a model; allowed: a new name (or replace=True)")
    MODELS[name] = cls
    return cls


def unregister_model(name: str) -> None:
    """Forget a model registered with ``register_model`` (tests register for their duration)."""
    if name in MODELS and not isinstance(MODELS[name], str):
        del MODELS[name]


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
    target: str | None = None  # model.target: the spelling of your own class (``model_name`` is the same)


def input_specs(task: Task) -> dict[str, FieldSpec]:
    shapes = task.input_shapes()
    return {name: FieldSpec(kind, tuple(shapes[name])) for name, kind in task.input_kinds.items()}


def resolve_group(task: Task, group: Mapping[str, Any]) -> Group:
    """The configured group, built from the keys of the ``group`` section, with ``group.dim`` defaulting to the
    task's coordinate dimension (2 for images), checked against the task: a registered ``group.name``, or your own
    (``group.target``, ``group.generators``: ``workers.models.custom.configured_group``)."""
    plugins.load()
    specs = input_specs(task)
    coordinates, images = fields_of(specs, "point", "vector"), fields_of(specs, "image")
    keys = {key: value for key, value in group.items() if key != "name"}
    if keys.get("dim") is None:
        keys["dim"] = specs[coordinates[0]].shape[-1] if coordinates else (2 if images else None)
    own = custom.configured_group(group, keys)
    if own is not None:
        _check_group_fits(task, own[0], own[1], specs, group.get("dim"))
        return own[1]
    name = group.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"group.name={name!r} is not a group; allowed: {', '.join(group_spellings())} (with "
                         "group.dim, group.order), or group.target, group.generators")
    probe = _probe(name, {**keys, "dim": 2}) if keys["dim"] is None else None
    if probe is not None and "dim" in probe.reads:
        _reject(task, f"group.name={name!r}", specs, "the group acts on coordinates and the task has no input of "
                "kind 'point' or 'vector'")
    parsed = Group.parse(name, **keys)
    _check_group_fits(task, f"group.name={name!r}", parsed, specs, group.get("dim"))
    return parsed


def _probe(name: str, keys: Mapping[str, Any]) -> Group | None:
    """The group ``name`` would be with ``keys`` (None where it cannot be built)."""
    try:
        return Group.parse(name, **keys)
    except ValueError:
        return None


def _reject(task: Task, given: str, specs: Mapping[str, FieldSpec], reason: str) -> None:
    raise ValueError(f"{given} does not fit task {task.name!r}: {reason}; allowed groups for this task: "
                     f"{_groups_for(task, specs)}")


def _coordinate_dim(specs: Mapping[str, FieldSpec]) -> int | None:
    coordinates = fields_of(specs, "point", "vector")
    return specs[coordinates[0]].shape[-1] if coordinates else None


def _groups_for(task: Task, specs: Mapping[str, FieldSpec]) -> str:
    """The registered spellings whose groups fit the task (``d`` at the task's dimension)."""
    dim = _coordinate_dim(specs) or (2 if fields_of(specs, "image") else None)
    kinds, fitting = {name: spec.kind for name, spec in specs.items()}, []
    for spelling in group_spellings():
        group = _probe(spelling, {"dim": dim if dim is not None else 2, "order": 2})
        if (group is not None and _misfit_dim(group, specs) is None
                and group.misfit(kinds, task.target_kind, node_count(specs)) is None):
            fitting.append(spelling.replace("(d)", f"({dim})"))
    return ", ".join(fitting) or "none"


def _misfit_dim(group: Group, specs: Mapping[str, FieldSpec]) -> int | None:
    """The task's coordinate dimension where the group's matrices have another one (None: they fit)."""
    dim = _coordinate_dim(specs)
    if group.dim is None or dim is None or fields_of(specs, "image") or group.dim == dim:
        return None
    return dim


def _check_group_fits(task: Task, given: str, group: Group, specs: Mapping[str, FieldSpec], asked_dim: Any) -> None:
    reason = group.misfit({field: spec.kind for field, spec in specs.items()}, task.target_kind, node_count(specs))
    if reason:
        _reject(task, given, specs, reason)
    dim = _misfit_dim(group, specs)
    if dim is None:
        return
    if asked_dim is not None and "dim" in group.reads:
        raise ValueError(f"group.dim={asked_dim!r} does not fit task {task.name!r}: its coordinates have dimension "
                         f"{dim}; allowed: {dim}")
    _reject(task, given, specs, f"{group.name} acts on {group.dim}-D coordinates and the task's coordinates have "
            f"dimension {dim}")


# the interface network of each PS noise kind (``Group.ps_noise``): its name, the input kinds it reads, what it needs
INTERFACE_OF_NOISE = {
    "node": ("gin", ("pair",), "an input of kind 'pair' (an adjacency) for the GIN interface"),
    "vector": ("vector_neurons", ("point", "vector"), "inputs of kind 'point' or 'vector' for the Vector Neurons "
               "interface"),
    "regular": ("scorer", (), ""),
}


def _method_misfit(task: Task, group: Group, method: Method, specs: Mapping[str, FieldSpec]) -> str | None:
    """Why ``method`` cannot serve ``group`` on the task's inputs, as a one-line error (None: it can). A learned
    method needs the interface of the group's PS noise; another symmetrized one is asked of the library."""
    if not method.symmetrized:
        return None
    if method.learned:
        if group.ps_noise not in INTERFACE_OF_NOISE:
            return f"symmetrizer.method={method.name!r} needs a group with a PS relaxation and {group.name} has none"
        _, kinds, need = INTERFACE_OF_NOISE[group.ps_noise]
        if kinds and not fields_of(specs, *kinds):
            return f"symmetrizer.method={method.name!r} over {group.name} on task {task.name!r} needs {need}"
        return None
    try:
        make_distribution(group, method.name, {name: spec.kind for name, spec in specs.items()})
    except ValueError as error:
        return str(error)
    return None


def check(task: Task, config: Mapping[str, Any]) -> Plan:
    """Validate the (task, group, method, model) combination; raise ValueError naming the key."""
    symmetrizer = load(SymmetrizerSettings, config.get("symmetrizer"), "symmetrizer")
    method = get_method(symmetrizer.method)
    group = resolve_group(task, config.get("group") or {})
    specs = input_specs(task)
    output = FieldSpec(task.target_kind, tuple(task.output_shape()))
    reason = _method_misfit(task, group, method, specs)
    if reason:
        fitting = [name for name in method_names() if _method_misfit(task, group, get_method(name), specs) is None]
        raise ValueError(f"{reason}; allowed methods here: {', '.join(fitting)}")
    interface = None
    if method.learned:
        interface = INTERFACE_OF_NOISE[group.ps_noise][0]
        asked = symmetrizer.interface.name
        if asked != "auto" and asked != interface:
            raise ValueError(f"symmetrizer.interface.name={asked!r} cannot serve {group.name} on task {task.name!r}; "
                             f"allowed: auto, {interface}")
    model = dict(config.get("model") or {})
    name, cls, target = custom.model_of(model, model_class)
    reason = custom.unsupported(cls, specs, output)
    if reason:
        fitting = [other for other in MODELS if custom.unsupported(model_class(other), specs, output) is None]
        raise ValueError(f"{custom.model_key(name, target)} cannot be used on task {task.name!r}: it {reason}; "
                         f"allowed models for this task: {', '.join(fitting)}")
    if "dropout" in model and target is None:
        check_dropout(model["dropout"])
    custom.check_options(cls, model, repr(name))
    return Plan(task, group, symmetrizer.method, specs, output, name, model, interface, symmetrizer, target)


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
    cls = custom.model_target(plan.target) if plan.target is not None else model_class(plan.model_name)
    base = custom.construct(cls, plan.inputs, plan.output, plan.model_options, plan.target)
    kinds = {name: spec.kind for name, spec in plan.inputs.items()}
    if not get_method(plan.method).symmetrized:
        return Unsymmetrized(base, plan.group, kinds, plan.output.kind)
    settings = plan.symmetrizer
    interface = build_interface(plan) if plan.interface else None
    return symmetrize(base, plan.group, plan.method, kinds, plan.output.kind, settings.train_samples,
                      settings.eval_samples, interface=interface, noise_scale=settings.noise_scale,
                      temperature=settings.temperature, sinkhorn_iters=settings.sinkhorn_iters)
