"""Your own base model and group, named in the config: ``model.target=package.module:Class`` (or a name given
with ``register_model``), ``group.target=package.module:name`` or ``group.generators``.

The contract is the built-in models' (``workers.models.spec``): an ``nn.Module`` whose ``forward(inputs)`` takes
the task's dict of tensors (first axis: rows; plus ``"mask"`` (R, n) where the task pads node sets) and returns
one tensor of the task's output shape. Its constructor takes the ``model.*`` keys of the config as keyword
arguments, and ``inputs`` (name -> ``FieldSpec``) and ``output`` (``FieldSpec``) too if it names them. An optional
classmethod ``unsupported(inputs, output) -> str | None`` refuses layouts it cannot read. The library symmetrizes
it like a built-in model (every method that applies to the group and the task).

Checked before a sweep starts, each failure one line naming ``model.target``: it imports and is an ``nn.Module``
class (``model_target``), its constructor takes the given keys (``check_options``) and, on two examples of the
task's data, it builds and its output has the shape the task's output needs (``check_on_examples``).

A group of your own (``configured_group``) is a ``Group`` or a function returning one (its parameters are the
``group.*`` keys it reads, like a function given to ``register_group``), or the finite group that
``group.generators`` (orthogonal ``matrices`` and/or ``node_permutations``) generate, closed by the library
(``FiniteGroup.from_generators``, at most ``group.limit`` elements). It then meets the same checks as a named
group: the kinds it acts on against the task's, the methods that apply to it.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch
from torch import nn

from workers.models.spec import FieldSpec
from workers.schema import MODEL_DEFAULT
from workers.symmetry import FiniteGroup, Group
from workers.symmetry.finite import MAX_ORDER
from workers.symmetry.groups import build_group, spelled
from workers.targets import refuse_hydra_target, resolve

RESERVED = ("self", "inputs", "output")  # constructor parameters the factory fills, never config keys
GENERATORS = ("matrices", "node_permutations")


def model_of(model: dict[str, Any], named: Any) -> tuple[str, type[nn.Module], str | None]:
    """(name, class, ``model.target`` or None) of a ``model`` section, popping ``name``/``target`` so that only
    the constructor's keys stay in ``model``; ``named(name)`` looks a registered name up."""
    refuse_hydra_target("model", model)
    if "target" not in model:
        name = model.pop("name", MODEL_DEFAULT)
        return name, named(name), None
    target = model.pop("target")
    if "name" in model:
        raise ValueError(f"model.target={target!r} and model.name={model['name']!r} are both given; allowed: one of "
                         "them (in a preset: `- override /model: null` for model.target)")
    return target, model_target(target), target


def model_key(name: str, target: str | None) -> str:
    """How errors name the model: ``model.target='...'`` or ``model.name='...'``."""
    return f"model.target={target!r}" if target is not None else f"model.name={name!r}"


def model_target(spelling: Any) -> type[nn.Module]:
    """The class ``model.target`` names: an ``nn.Module`` subclass, else one line saying what it is."""
    found = resolve("model.target", spelling)
    if not (inspect.isclass(found) and issubclass(found, nn.Module)):
        what = f"the class {found.__name__}" if inspect.isclass(found) else f"a {type(found).__name__}"
        raise ValueError(f"model.target={spelling!r} is {what}, not a torch.nn.Module class; allowed: an nn.Module "
                         "subclass whose forward takes the task's dict of tensors")
    return found


def unsupported(cls: type, inputs: Mapping[str, FieldSpec], output: FieldSpec) -> str | None:
    """Why ``cls`` cannot read this layout (its optional classmethod ``unsupported``), or None."""
    ask = getattr(cls, "unsupported", None)
    return ask(inputs, output) if callable(ask) else None


def check_options(cls: type, options: Mapping[str, Any], label: str, key: str = "model") -> None:
    """Every ``model.<option>`` must be a keyword of the constructor (any, when it takes ``**kwargs``)."""
    parameters = inspect.signature(cls.__init__).parameters
    open_ended = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    allowed = [name for name, p in parameters.items() if name not in RESERVED
               and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    for option, value in options.items():
        if option in RESERVED or not (open_ended or option in allowed):
            raise ValueError(f"{key}.{option}={value!r} is not an option of model {label}; allowed: "
                             f"{', '.join(allowed) or 'none (its constructor takes no keyword arguments)'}")


def construct(cls: type, inputs: Mapping[str, FieldSpec], output: FieldSpec, options: Mapping[str, Any],
              label: str | None = None) -> nn.Module:
    """``cls(**options)``, with ``inputs``/``output`` where its constructor names them. For your own class
    (``label``: its spelling) a failure is one line naming it; a RuntimeError or NotImplementedError stays one (the
    meta-device build of ``workers.settings.check_build`` leaves those to the check on data)."""
    parameters = inspect.signature(cls.__init__).parameters
    given = dict(options)
    for name, spec in (("inputs", dict(inputs)), ("output", output)):
        if name in parameters:
            given[name] = spec
    try:
        model = cls(**given)
    except (RuntimeError, NotImplementedError):
        raise
    except Exception as err:  # noqa: BLE001 - the user's constructor: one line naming it
        if label is None:
            raise
        raise ValueError(f"model.target={label!r} cannot be built with {dict(options)!r} ({type(err).__name__}: "
                         f"{_first_line(err)})") from None
    if label is not None and not isinstance(model, nn.Module):
        raise ValueError(f"model.target={label!r} built a {type(model).__name__}, not an nn.Module")
    return model


def check_on_examples(cls: type, inputs: Mapping[str, FieldSpec], output: FieldSpec, options: Mapping[str, Any],
                      key: str, target: str | None, batch: Mapping[str, torch.Tensor], where: str) -> torch.Tensor:
    """Build the model (``key`` names it in errors; ``target``: your own class's spelling) and run one forward pass
    on ``batch`` (a few examples: ``where`` says which); the output must be one tensor of shape (examples,
    *output.shape). Returns it, for the task's loss and metrics."""
    try:
        model = construct(cls, inputs, output, options, target)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - one line naming the model
        raise ValueError(f"{key} cannot be built with {dict(options)!r} ({type(err).__name__}: {_first_line(err)})"
                         ) from None
    rows = int(next(iter(batch.values())).shape[0])
    fields = {name: batch[name] for name in (*inputs, "mask") if name in batch}
    model.eval()
    try:
        with torch.no_grad():
            out = model(fields)
    except Exception as err:  # noqa: BLE001 - the model's forward: one line naming it
        raise ValueError(f"{key} failed on a forward pass of {where} ({type(err).__name__}: {_first_line(err)}); "
                         f"expected forward(inputs) with inputs {sorted(fields)}") from None
    expected = (rows, *output.shape)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ValueError(f"{key} returned {got} on {where}; expected one tensor of shape {expected} (the task's "
                         f"output: kind {output.kind!r}, shape {tuple(output.shape)} per example)")
    return out


def configured_group(section: Mapping[str, Any], keys: Mapping[str, Any]) -> tuple[str, Group] | None:
    """(how errors name it, the group) of ``group.target`` or ``group.generators``; None for a ``group.name``.
    ``keys`` are the section's keys with ``dim`` defaulted to the task's coordinate dimension."""
    refuse_hydra_target("group", section)
    given = [key for key in ("target", "generators") if section.get(key) is not None]
    if not given:
        return None
    if len(given) > 1 or section.get("name") not in (None, "generated") and "target" in given:
        other = "group.generators" if len(given) > 1 else f"group.name={section.get('name')!r}"
        raise ValueError(f"group.target={section['target']!r} and {other} are both given; allowed: one of them")
    if "target" in given:
        return _target_group(section["target"], {k: v for k, v in keys.items() if k not in ("target", "generators")})
    return "group.generators", _generated_group(section)


def _target_group(spelling: str, keys: Mapping[str, Any]) -> tuple[str, Group]:
    where = f"group.target={spelling!r}"
    found = resolve("group.target", spelling)
    if not (isinstance(found, Group) or callable(found)) or inspect.isclass(found) and not issubclass(found, Group):
        what = f"the class {found.__name__}" if inspect.isclass(found) else f"a {type(found).__name__}"
        raise ValueError(f"{where} is {what}; allowed: a Group, or a function returning one")
    if callable(found) and not isinstance(found, Group):
        reads = [n for n, p in inspect.signature(found).parameters.items()
                 if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
        unknown = [k for k, v in keys.items() if k not in reads and k not in ("dim", "order") and v is not None]
        if unknown:
            raise ValueError(f"group.{unknown[0]}={keys[unknown[0]]!r} is not a parameter of {where}; allowed: "
                             f"{', '.join(reads) or 'none'}")
    try:
        group, _ = build_group(spelling, found, **keys)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {_first_line(err)}") from None
    return where, group


def _generated_group(section: Mapping[str, Any]) -> Group:
    generators, limit = section["generators"], section.get("limit", MAX_ORDER)
    if not isinstance(generators, Mapping) or not generators or set(generators) - set(GENERATORS):
        raise ValueError(f"group.generators={generators!r} is not allowed; expected a mapping with matrices (k, d, d: "
                         "orthogonal) and/or node_permutations (k, n: index form)")
    if not (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1):
        raise ValueError(f"group.limit={limit!r} is not allowed; expected an integer ≥ 1 (the most elements)")
    name = section.get("name") or "generated"
    if spelled(str(name)):
        raise ValueError(f"group.generators with group.name={name!r}, a registered group; allowed: a name of your own "
                         "for the generated group (a label), or none")
    try:
        return FiniteGroup.from_generators(str(name), matrices=generators.get("matrices"),
                                           node_permutations=generators.get("node_permutations"), limit=limit)
    except (ValueError, TypeError, RuntimeError) as err:
        raise ValueError(f"group.generators: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else "")[:300]
