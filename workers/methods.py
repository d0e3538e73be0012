"""Every value of ``symmetrizer.method``: what each method is and does, written once (``Method``), and the
hook that adds one (``register_method``).

A method declares its family facts — symmetrized by the library (a ``Symmetrizer`` around the base model)
or applied by the loop to the bare model; learned (an interface network q_ω); noisy (draws the invariant
noise); one sample (one forward pass per input whatever N) — the keys it reads beyond those facts, the
objective the loop minimises (a name of ``workers.objectives.OBJECTIVES`` or a builder) and, for a
symmetrized method the library does not know yet, how to build its distribution p(g|x). Every other module
asks the method: ``workers.schema`` (the allowed values), ``workers.models.factory`` (what to build),
``workers.objectives`` (the loss), ``workers.settings`` (sharding, ``unused_keys``).

Pure Python (no torch at import): ``workers.schema`` imports it and the driver imports the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from workers import plugins

OBJECTIVES = ("supervised", "symmetrized", "augmentation", "remul")  # the keys of workers.objectives.OBJECTIVES
RELAXATION_KEYS = ("temperature", "sinkhorn_iters")  # PS relaxation options a group may read (Group.relaxation)


@dataclass(frozen=True)
class Method:
    """One method of a sweep. ``keys`` are the further keys it reads (a section name stands for all its keys,
    e.g. ``remul``); ``unread(trial)`` names those of them a trial's other settings leave unread, each with the
    setting that decides (``{"remul.gradnorm_lr": "remul.balance=constant"}``). ``distribution`` is
    ``build(group, input_kinds, interface, **options)`` of ``workers.symmetry.register_method``, for a
    symmetrized method the library does not have."""

    name: str
    meaning: str
    symmetrized: bool  # the library's Symmetrizer wraps the base model; else the bare model, the loop applies it
    learned: bool = False  # has an interface network q_ω (reads symmetrizer.interface.* and the group's relaxation)
    noisy: bool = False  # draws the invariant noise (reads symmetrizer.noise_scale)
    one_sample: bool = False  # one forward pass per input whatever N (does not read train/eval_samples)
    objective: str | Callable[..., Any] = "symmetrized"  # what the loop minimises
    keys: tuple[str, ...] = ()
    unread: Callable[[Any], Mapping[str, str]] | None = None
    distribution: Callable[..., Any] | None = None

    @property
    def shardable(self) -> bool:
        """Whether a trial's N group samples can be split over workers (``trainer.devices``)."""
        return self.symmetrized and not self.one_sample

    def reads(self, group: Any | None = None) -> set[str]:
        """The ``symmetrizer.*`` and ``remul.*`` keys it reads over ``group`` (None: over some group); a section
        name (``symmetrizer.interface``) stands for every key in it."""
        keys = {"symmetrizer.method", *self.keys}
        if self.noisy:
            keys.add("symmetrizer.noise_scale")
        if not self.one_sample:
            keys |= {"symmetrizer.train_samples", "symmetrizer.eval_samples"}
        if self.learned:
            keys.add("symmetrizer.interface")
            relaxation = RELAXATION_KEYS if group is None else group.relaxation
            keys |= {f"symmetrizer.{key}" for key in relaxation}
            if group is None or group.entropy_penalty:
                keys.add("symmetrizer.entropy_weight")
        return keys


_METHODS: dict[str, Method] = {}


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Make ``symmetrizer.method=<method.name>`` mean ``method`` everywhere (settings, factory, loop); a name
    already taken is refused unless ``replace``. A symmetrized method with a ``distribution`` is registered
    with the library too. Call it at import of your module; ``SYMSWEEP_PLUGINS`` imports it in every trial."""
    if not isinstance(method, Method) or not method.name.isidentifier():
        raise ValueError(f"register_method({method!r}): expected a Method whose name is like my_method")
    if method.name in _METHODS and not replace:
        raise ValueError(f"symmetrizer.method={method.name!r} is already a method; allowed: a new name "
                         "(or replace=True)")
    if isinstance(method.objective, str) and method.objective not in OBJECTIVES:
        raise ValueError(f"method {method.name!r}: objective={method.objective!r} is not an objective; allowed: "
                         f"{', '.join(OBJECTIVES)} or a builder")
    if method.distribution is not None:
        if not method.symmetrized:
            raise ValueError(f"method {method.name!r} has a distribution but symmetrized=False; allowed: "
                             "symmetrized=True with a distribution, or no distribution")
        from workers.symmetry import methods as library  # torch: only when a symmetrized method is added

        library.register_method(method.name, method.distribution, learned=method.learned,
                                one_sample=method.one_sample, replace=replace)
    _METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Forget a method (and its library part, if it was registered here) — tests register for their duration."""
    method = _METHODS.pop(name, None)
    if method is not None and method.distribution is not None:
        from workers.symmetry import methods as library

        library.unregister_method(name)


def get_method(name: str) -> Method:
    """The method ``name``; ValueError naming ``symmetrizer.method`` and the allowed values."""
    plugins.load()
    if not isinstance(name, str) or name not in _METHODS:
        raise ValueError(f"symmetrizer.method={name!r} is not a method; allowed: {', '.join(_METHODS)}")
    return _METHODS[name]


def method_names(**facts: bool) -> tuple[str, ...]:
    """The registered methods, in registration order, having every given fact (``method_names(one_sample=True)``)."""
    plugins.load()
    return tuple(name for name, method in _METHODS.items()
                 if all(getattr(method, fact) == value for fact, value in facts.items()))


def _remul_unread(trial: Any) -> dict[str, str]:
    if trial.remul.balance == "gradnorm":
        return {}
    reason = f"remul.balance={trial.remul.balance}"
    return {"remul.gradnorm_lr": reason, "remul.gradnorm_gamma": reason}


for _method in (
    Method("ps", "probabilistic symmetrization: p_ω(g|x) learned by an interface network, averaged over N samples",
           symmetrized=True, learned=True, noisy=True),
    Method("ps_fixed_noise", "PS with each input's noise fixed by its content (PS paper Table 1)",
           symmetrized=True, learned=True, noisy=True),
    Method("canonical", "canonicalization: PS with η = 0, one sample", symmetrized=True, learned=True,
           one_sample=True),
    Method("ga", "group averaging: g uniform (Haar) on G", symmetrized=True),
    Method("fa", "frame averaging: g uniform on an equivariant frame F(x)", symmetrized=True),
    Method("none", "the bare base model", symmetrized=False, one_sample=True, objective="supervised"),
    Method("augment", "the bare base model trained on inputs moved by a random g", symmetrized=False,
           one_sample=True, objective="augmentation"),
    Method("remul", "the bare base model with the REMUL equivariance penalty", symmetrized=False, one_sample=True,
           objective="remul", keys=("remul",), unread=_remul_unread),
):
    register_method(_method)
