"""The symmetry tests' one-line symmetrizer factory and input layouts. Random inputs, the plain MLP
base model and the equivariance gap are the library's own (``workers.symmetry.testing``)."""

from __future__ import annotations

import torch

from workers.symmetry import Group, RegularScorer, symmetrize
from workers.symmetry.testing import seeded_mlp

GRAPH_KINDS = {"adj": "pair", "x": "node"}
POINT_KINDS = {"pos": "point", "vel": "vector"}


def build(group: Group, method: str, inputs: dict, kinds: dict, output_kind: str, out_shape, samples: int = 4,
          dtype=torch.float64, **options):
    shapes = {k: tuple(v.shape[1:]) for k, v in inputs.items()}
    interface = None
    if group.finite is not None and method != "ga":
        interface = RegularScorer(group, seeded_mlp(shapes, (1,), 1), kinds)
    if group.permutations and not group.has_matrix and method != "ga" and method != "fa":
        options.setdefault("node_channels", {"x": inputs["x"].shape[-1]})
    with torch.random.fork_rng(devices=[]):  # deterministic parameters, global state untouched
        torch.manual_seed(0)
        model = symmetrize(seeded_mlp(shapes, out_shape, 0), group, method, kinds, output_kind, samples, samples,
                           interface=interface, **options)
    return model.to(dtype)

