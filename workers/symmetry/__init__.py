"""symsweep's symmetrization library (pure torch).

Make any ``nn.Module`` f(inputs: dict) -> Tensor exactly equivariant::

    from workers.symmetry import Group, symmetrize
    model = symmetrize(base, Group.parse("S_n x SE(d)", dim=3), method="ps",
                       input_kinds={"pos": "point", "vel": "vector"}, output_kind="point",
                       train_samples=20, eval_samples=20)
    out = model({"pos": pos, "vel": vel}, mask).output

Methods (``methods.py``): ``ps`` (learned p_ω(g|x)), ``ps_fixed_noise``, ``canonical`` (η = 0, one
sample), ``ga`` (uniform/Haar), ``fa`` (frames); ``register_method`` adds one. Groups: every spelling of
``group_spellings()`` (``product.py``: S_n, O(d), ..., S_n x SE(d); ``finite.py``: C_k, D_k and any
``FiniteGroup`` from elements or generators); ``register_group`` adds one. Interface networks default to
the small ones in ``interfaces``; pass your own equivariant ``interface`` for PS.
"""

from __future__ import annotations

from typing import Mapping

from torch import nn

from workers.symmetry.distributions import (
    Distribution,
    GroupAveraging,
    ProbabilisticSymmetrization,
    canonicalization,
)
from workers.symmetry.finite import FiniteGroup, PlanarFamily
from workers.symmetry.frames import FrameAveraging
from workers.symmetry.groups import (
    DATA_KINDS,
    NODE_KINDS,
    Group,
    GroupElement,
    GroupFamily,
    group_keys,
    group_spellings,
    register_group,
    unregister_group,
)
from workers.symmetry.interfaces import DenseGIN, RegularScorer, VectorInterface
from workers.symmetry.methods import get_method, method_names, register_method, unregister_method
from workers.symmetry.metrics import (
    coupled_equivariance_gap,
    equivariance_errors,
    permutation_entropy,
    sample_variance,
    transform_inputs,
    transform_noise,
)
from workers.symmetry.product import ProductFamily, ProductGroup
from workers.symmetry.remul import GradNorm, Transformed, equivariance_penalty, transform_example
from workers.symmetry.symmetrizer import SymmetrizedOutput, Symmetrizer, Unsymmetrized

register_group(ProductFamily())  # S_n, O(d), SO(d), E(d), SE(d), S_n x those (their spellings first in errors)
register_group(PlanarFamily())  # C_k, D_k


def __getattr__(name: str):
    if name == "METHODS":  # the registered methods now, not when this module was imported
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_distribution(group: Group, method: str, input_kinds: Mapping[str, str],
                      interface: nn.Module | None = None, noise_scale: float = 1.0,
                      temperature: float = 0.01, sinkhorn_iters: int = 20,
                      node_channels: Mapping[str, int] | None = None) -> Distribution:
    """The distribution p(g|x) of ``method`` for ``group`` over inputs of ``input_kinds``."""
    spec = get_method(method)
    if noise_scale < 0:
        raise ValueError(f"symmetrizer.noise_scale={noise_scale!r} is not allowed; expected ≥ 0")
    if temperature <= 0:
        raise ValueError(f"symmetrizer.temperature={temperature!r} is not allowed; expected > 0")
    if sinkhorn_iters < 1:
        raise ValueError(f"symmetrizer.sinkhorn_iters={sinkhorn_iters!r} is not allowed; expected ≥ 1")
    if spec.learned and interface is None:
        interface = default_interface(group, input_kinds, node_channels)
    return spec.build(group, dict(input_kinds), interface, noise_scale=noise_scale, temperature=temperature,
                      sinkhorn_iters=sinkhorn_iters)


def default_interface(group: Group, input_kinds: Mapping[str, str],
                      node_channels: Mapping[str, int] | None = None) -> nn.Module:
    """A small equivariant interface network that reads the group's PS noise (``Group.ps_noise``)."""
    by_kind: dict[str, list[str]] = {}
    for name, kind in input_kinds.items():
        by_kind.setdefault(kind, []).append(name)
    if group.ps_noise == "regular":
        raise ValueError(f"PS over {group.name} needs a scorer network: pass interface=RegularScorer(...)")
    if group.ps_noise == "vector":
        fields = by_kind.get("point", []) + by_kind.get("vector", [])
        if not fields:
            raise ValueError(f"group {group.name} needs an input of kind 'point' or 'vector'")
        return VectorInterface(group.dim, fields, node_fields=node_channels)
    if group.ps_noise != "node":
        raise ValueError(f"PS over {group.name} has no default interface; pass interface=...")
    if not by_kind.get("pair"):
        raise ValueError(f"PS over {group.name} with the default interface needs an adjacency input of kind 'pair'")
    node = (by_kind.get("node") or [None])[0]
    channels = (node_channels or {}).get(node, 1) if node else 1
    return DenseGIN(channels, adjacency_field=by_kind["pair"][0], node_field=node)


def symmetrize(base: nn.Module, group: Group, method: str, input_kinds: Mapping[str, str], output_kind: str,
               train_samples: int = 1, eval_samples: int = 1, **distribution_options) -> Symmetrizer:
    """Wrap ``base`` into a G-equivariant ``Symmetrizer`` (see the module docstring)."""
    if get_method(method).one_sample:
        train_samples = eval_samples = 1
    distribution = make_distribution(group, method, input_kinds, **distribution_options)
    return Symmetrizer(base, distribution, input_kinds, output_kind, train_samples, eval_samples)


__all__ = [
    "DATA_KINDS", "NODE_KINDS", "METHODS", "DenseGIN", "Distribution", "FiniteGroup", "FrameAveraging", "GradNorm",
    "Group", "GroupAveraging", "GroupElement", "GroupFamily", "ProbabilisticSymmetrization", "ProductGroup",
    "RegularScorer", "SymmetrizedOutput", "Symmetrizer", "Transformed", "Unsymmetrized", "VectorInterface",
    "canonicalization", "coupled_equivariance_gap", "default_interface", "equivariance_errors",
    "equivariance_penalty", "get_method", "group_keys", "group_spellings", "make_distribution", "method_names",
    "permutation_entropy", "register_group", "register_method", "sample_variance", "symmetrize", "transform_example",
    "transform_inputs", "transform_noise", "unregister_group", "unregister_method",
]
