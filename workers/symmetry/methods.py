"""The library's symmetrization methods: each name and how it builds its distribution p(g|x).

A method is a ``build(group, input_kinds, interface, **options) -> Distribution`` (options: ``noise_scale``,
``temperature``, ``sinkhorn_iters``; take ``**options`` and ignore what you do not read), whether it is
``learned`` (it uses an interface network q_ω, the group's default one when none is given) and whether it
is ``one_sample`` (deterministic given x: ``symmetrize`` uses one sample whatever N). ``register_method``
adds one; the built-in ones are registered below. A method of a sweep is declared once in
``workers.methods``, which registers its library part here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from torch import nn

from workers.symmetry.distributions import (
    Distribution,
    GroupAveraging,
    ProbabilisticSymmetrization,
    canonicalization,
)
from workers.symmetry.groups import Group

Build = Callable[..., Distribution]


@dataclass(frozen=True)
class SymmetrizationMethod:
    """A library method: its name, how it builds p(g|x), and whether it is learned / takes one sample."""

    name: str
    build: Build
    learned: bool = False
    one_sample: bool = False


_METHODS: dict[str, SymmetrizationMethod] = {}


def register_method(name: str, build: Build, *, learned: bool = False, one_sample: bool = False,
                    replace: bool = False) -> SymmetrizationMethod:
    """Make ``symmetrize(..., method=name)`` build ``build(group, input_kinds, interface, **options)``; a name
    already taken is refused unless ``replace``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"symmetrizer.method={name!r} cannot be registered; allowed: a name like my_method")
    if name in _METHODS and not replace:
        raise ValueError(f"symmetrizer.method={name!r} is already a method; allowed: a new name (or replace=True)")
    _METHODS[name] = SymmetrizationMethod(name, build, learned, one_sample)
    return _METHODS[name]


def unregister_method(name: str) -> None:
    """Forget a method registered with ``register_method`` (tests register for their own duration)."""
    _METHODS.pop(name, None)


def method_names() -> tuple[str, ...]:
    """Every library method, in registration order (the built-in ones first)."""
    return tuple(_METHODS)


def get_method(name: str) -> SymmetrizationMethod:
    if not isinstance(name, str) or name not in _METHODS:
        raise ValueError(f"symmetrizer.method={name!r} is not a method; allowed: {', '.join(_METHODS)}")
    return _METHODS[name]


def _ps(group: Group, input_kinds: Mapping[str, str], interface: nn.Module, noise_scale: float = 1.0,
        temperature: float = 0.01, sinkhorn_iters: int = 20, fixed_noise: bool = False, **options) -> Distribution:
    return ProbabilisticSymmetrization(group, interface, noise_scale, temperature, sinkhorn_iters, fixed_noise)


def _canonical(group, input_kinds, interface, temperature=0.01, sinkhorn_iters=20, **options) -> Distribution:
    return canonicalization(group, interface, temperature, sinkhorn_iters)


register_method("ps", _ps, learned=True)
register_method("ps_fixed_noise", lambda group, kinds, interface, **options: _ps(
    group, kinds, interface, **options, fixed_noise=True), learned=True)
register_method("canonical", _canonical, learned=True, one_sample=True)
register_method("ga", lambda group, kinds, interface, **options: GroupAveraging(group))
register_method("fa", lambda group, kinds, interface, **options: group.frames(kinds))
