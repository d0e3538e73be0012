"""Shared by the separation-control tests: an exactly S_n-invariant graph embedding, used as
``model.target=tests.train.invariant:InvariantGraphNet`` with ``symmetrizer=none``.

Every output is a sum over real nodes (and edges) of functions of a node's own features and degree, so
relabelling a graph's nodes changes it only by the rounding of the sums (~1e-6 here, far below the
separation threshold 1e-3). Like every 1-WL-bounded network it cannot tell the graphs of an EXP pair apart.
"""

from __future__ import annotations

import torch
from torch import nn


class InvariantGraphNet(nn.Module):
    """Degree and node features -> tanh layer -> sums over nodes and over edges -> linear head."""

    def __init__(self, inputs, output, hidden: int = 16):
        super().__init__()
        self.node_fields = [name for name, spec in inputs.items() if spec.kind == "node"]
        channels = 1 + sum(int(inputs[name].shape[-1]) for name in self.node_fields)
        self.node = nn.Linear(channels, hidden)
        self.head = nn.Linear(2 * hidden, output.size)
        self.shape = tuple(output.shape)

    def forward(self, inputs):
        adjacency = inputs["adj"][..., 0]  # (R, n, n)
        mask = inputs.get("mask")
        real = torch.ones(adjacency.shape[:2], dtype=adjacency.dtype) if mask is None else mask.to(adjacency.dtype)
        features = torch.cat([adjacency.sum(dim=2, keepdim=True), *(inputs[name] for name in self.node_fields)], -1)
        h = torch.tanh(self.node(features)) * real[..., None]  # (R, n, H)
        edges = (adjacency @ h * h).sum(dim=1)  # (R, H) sum over edges (i, j) of h_i * h_j
        return self.head(torch.cat([h.sum(dim=1), edges], dim=-1)).reshape(-1, *self.shape)


class NodeCountNet(nn.Module):
    """An exactly invariant, deterministic classifier with mixed decisions: logit = scale·(real nodes − 48) (EXP
    graphs have 32..64 nodes)."""

    def __init__(self, inputs, output):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.shape = tuple(output.shape)

    def forward(self, inputs):
        count = inputs["mask"].sum(dim=1).to(self.scale.dtype)  # (R,)
        return (self.scale * (count - 48.0)).reshape(-1, *self.shape)


class FirstNodeNet(nn.Module):
    """A deterministic classifier that reads the node order: logit = scale·(degree of slot 0 − mean real degree)."""

    def __init__(self, inputs, output):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.shape = tuple(output.shape)

    def forward(self, inputs):
        degrees = inputs["adj"][..., 0].sum(dim=2)  # (R, n)
        mean = degrees.sum(dim=1) / inputs["mask"].sum(dim=1).clamp(min=1)  # (R,)
        return (self.scale * (degrees[:, 0] - mean + 0.25)).reshape(-1, *self.shape)
