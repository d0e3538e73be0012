"""symsweep's symmetrization library (pure torch).

Make any ``nn.Module`` f(inputs: dict) -> Tensor exactly equivariant::

    from workers.symmetry import Group, symmetrize
    model = symmetrize(base, Group.parse("S_n x SE(d)", dim=3), method="ps",
                       input_kinds={"pos": "point", "vel": "vector"}, output_kind="point",
                       train_samples=20, eval_samples=20)
    out = model({"pos": pos, "vel": vel}, mask).output

Methods: ``ps`` (learned p_ω(g|x)), ``ps_fixed_noise``, ``canonical`` (η = 0, one sample),
``ga`` (uniform/Haar), ``fa`` (frames). Interface networks default to the small ones in
``interfaces``; pass your own equivariant ``interface`` for PS.
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
from workers.symmetry.frames import FrameAveraging
from workers.symmetry.groups import DATA_KINDS, NODE_KINDS, Group, GroupElement
from workers.symmetry.interfaces import DenseGIN, RegularScorer, VectorInterface
from workers.symmetry.metrics import (
    coupled_equivariance_gap,
    equivariance_errors,
    permutation_entropy,
    sample_variance,
    transform_inputs,
    transform_noise,
)
from workers.symmetry.remul import GradNorm, Transformed, equivariance_penalty, transform_example
from workers.symmetry.symmetrizer import SymmetrizedOutput, Symmetrizer, Unsymmetrized

METHODS = ("ps", "ps_fixed_noise", "canonical", "ga", "fa")


def make_distribution(group: Group, method: str, input_kinds: Mapping[str, str],
                      interface: nn.Module | None = None, noise_scale: float = 1.0,
                      temperature: float = 0.01, sinkhorn_iters: int = 20,
                      node_channels: Mapping[str, int] | None = None) -> Distribution:
    """The distribution p(g|x) of ``method`` for ``group`` over inputs of ``input_kinds``."""
    if method not in METHODS:
        raise ValueError(f"symmetrizer.method={method!r} is not a method; allowed: {', '.join(METHODS)}")
    if noise_scale < 0:
        raise ValueError(f"symmetrizer.noise_scale={noise_scale!r} is not allowed; expected ≥ 0")
    if temperature <= 0:
        raise ValueError(f"symmetrizer.temperature={temperature!r} is not allowed; expected > 0")
    if sinkhorn_iters < 1:
        raise ValueError(f"symmetrizer.sinkhorn_iters={sinkhorn_iters!r} is not allowed; expected ≥ 1")
    by_kind: dict[str, list[str]] = {}
    for name, kind in input_kinds.items():
        by_kind.setdefault(kind, []).append(name)
    if method == "ga":
        return GroupAveraging(group)
    if method == "fa":
        return FrameAveraging(group, adjacency_field=(by_kind.get("pair") or [None])[0],
                              point_field=(by_kind.get("point") or [None])[0])
    if interface is None:
        interface = default_interface(group, input_kinds, node_channels)
    if method == "canonical":
        return canonicalization(group, interface, temperature, sinkhorn_iters)
    return ProbabilisticSymmetrization(group, interface, noise_scale, temperature, sinkhorn_iters,
                                       fixed_noise=(method == "ps_fixed_noise"))


def default_interface(group: Group, input_kinds: Mapping[str, str],
                      node_channels: Mapping[str, int] | None = None) -> nn.Module:
    """A small equivariant interface network that fits ``group`` and the inputs."""
    by_kind: dict[str, list[str]] = {}
    for name, kind in input_kinds.items():
        by_kind.setdefault(kind, []).append(name)
    if group.finite is not None:
        raise ValueError(f"PS over {group.name} needs a scorer network: pass interface=RegularScorer(...)")
    if group.has_matrix:
        fields = by_kind.get("point", []) + by_kind.get("vector", [])
        if not fields:
            raise ValueError(f"group {group.name} needs an input of kind 'point' or 'vector'")
        return VectorInterface(group.dim, fields, node_fields=node_channels)
    if not by_kind.get("pair"):
        raise ValueError("PS over S_n with the default interface needs an adjacency input of kind 'pair'")
    node = (by_kind.get("node") or [None])[0]
    channels = (node_channels or {}).get(node, 1) if node else 1
    return DenseGIN(channels, adjacency_field=by_kind["pair"][0], node_field=node)


def symmetrize(base: nn.Module, group: Group, method: str, input_kinds: Mapping[str, str], output_kind: str,
               train_samples: int = 1, eval_samples: int = 1, **distribution_options) -> Symmetrizer:
    """Wrap ``base`` into a G-equivariant ``Symmetrizer`` (see the module docstring)."""
    if method == "canonical":
        train_samples = eval_samples = 1
    distribution = make_distribution(group, method, input_kinds, **distribution_options)
    return Symmetrizer(base, distribution, input_kinds, output_kind, train_samples, eval_samples)


__all__ = [
    "DATA_KINDS", "NODE_KINDS", "METHODS", "DenseGIN", "Distribution", "FrameAveraging", "GradNorm", "Group",
    "GroupAveraging", "GroupElement", "ProbabilisticSymmetrization", "RegularScorer",
    "SymmetrizedOutput", "Symmetrizer", "Transformed", "Unsymmetrized", "VectorInterface", "canonicalization",
    "coupled_equivariance_gap",
    "default_interface",
    "equivariance_errors", "equivariance_penalty", "make_distribution", "permutation_entropy",
    "sample_variance", "symmetrize", "transform_example", "transform_inputs", "transform_noise",
]
