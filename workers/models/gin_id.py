"""GIN-ID: a graph isomorphism network whose node features carry a one-hot node identifier.

The graph is the single one-channel pair field (the adjacency); node features are the node,
point and vector fields of each node plus the one-hot index of its slot. A plain GIN is
permutation equivariant and cannot tell 1-WL-equivalent graphs apart; with the slot index as an ID
it can, and symmetrization restores the symmetry: after the symmetrizer applies a sampled
permutation, the slot index is the node's position in that permutation (PS paper Table 7, GIN-ID
of Puny et al.). Layers are torch_geometric's ``DenseGINConv`` (h ← MLP((1 + ε)h + A h), trainable
ε) on the dense adjacency, so gradients reach the adjacency entries — PS's straight-through
permutation gradient flows through them.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch_geometric.nn import DenseGINConv

from workers.models.layers import (
    SLOT_KINDS,
    Readout,
    activation_module,
    check_count,
    check_dropout,
    masked,
    perceptron,
    require_layout,
    residual_field,
)
from workers.models.spec import FieldSpec, Specs, fields_of, node_count, row_mask


class GINID(nn.Module):
    """GIN over the adjacency pair field, node features + one-hot slot IDs; pooled or per-node head."""

    def __init__(self, inputs: Specs, output: FieldSpec, layers: int = 3, hidden: int = 64, dropout: float = 0.0,
                 activation: str = "relu", pooling: str = "sum", residual: bool = True):
        """``layers`` GIN layers of width ``hidden`` (each a 2-layer MLP, as the PS paper's GIN);
        ``dropout`` after each layer; ``pooling`` (sum or mean over real nodes) for invariant
        outputs; ``residual``: for a point output, predict a displacement added to the point input."""
        super().__init__()
        require_layout(type(self), inputs, output)
        check_count("layers", layers)
        check_count("hidden", hidden)
        self.nodes = node_count(inputs)
        self.adjacency = fields_of(inputs, "pair")[0]
        self.features = fields_of(inputs, "node", "point", "vector")
        channels = sum(inputs[name].shape[-1] for name in self.features) + self.nodes  # fields + one-hot ID
        self.convs = nn.ModuleList(
            DenseGINConv(perceptron([width, hidden, hidden], activation), train_eps=True)
            for width in [channels] + [hidden] * (layers - 1)
        )
        self.activation = activation_module(activation)
        self.dropout = nn.Dropout(check_dropout(dropout))
        self.readout = Readout(hidden, output, activation, pooling, residual_field(inputs, output, residual))

    @classmethod
    def unsupported(cls, inputs: Specs, output: FieldSpec) -> str | None:
        """Needs one one-channel pair field (the graph); reads node/point/vector fields as features."""
        others = sorted({spec.kind for spec in inputs.values()} - set(SLOT_KINDS))
        if others:
            return f"reads pair, node, point and vector inputs only (got kind {others[0]!r})"
        pairs = fields_of(inputs, "pair")
        if len(pairs) != 1 or inputs[pairs[0]].shape[-1] != 1:
            return "needs exactly one input of kind 'pair' with one channel (the adjacency)"
        return Readout.unsupported(output, node_count(inputs))

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        dtype = self.readout.head[-1].weight.dtype
        mask = inputs.get("mask")
        adjacency = masked(inputs[self.adjacency].to(dtype), "pair", mask)[..., 0]  # (R, n, n)
        rows = adjacency.shape[0]
        real = row_mask(inputs, rows, self.nodes, adjacency.device)  # (R, n)
        identity = torch.eye(self.nodes, dtype=dtype, device=adjacency.device).expand(rows, -1, -1)  # (R, n, n)
        fields = [masked(inputs[name].to(dtype), "node", mask) for name in self.features]
        h = torch.cat([*fields, identity], dim=-1)  # (R, n, C + n)
        for index, conv in enumerate(self.convs):
            h = conv(h, adjacency, real)  # (R, n, hidden), zero on padded slots
            if index < len(self.convs) - 1:
                h = self.dropout(self.activation(h))
        return self.readout(h, inputs, real)
