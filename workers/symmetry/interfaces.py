"""Small equivariant interface networks q_ω for PS, in plain torch.

They are the defaults of the public API and the reference the tests check against; the models
package adds larger ones (a torch-geometric GIN with a virtual node, Vector Neurons).

- ``DenseGIN``: S_n-equivariant node scores from an adjacency and node features (PS paper
  A.3.1: GIN layers H ↦ MLP((A' + (1+e)I)H) with a virtual node joined to every node).
- ``VectorInterface``: for O(d)/SO(d)/E(d)/SE(d) and S_n × those. Rotation-invariant,
  permutation-equivariant node scores, and d permutation-invariant, rotation-equivariant vectors
  Σ_i w_ik(invariants_i) v_i (the H×K recipe of PS paper §2.2).
- ``RegularScorer``: for finite groups (C_k, D_k, ``FiniteGroup``), logits_j = s(g_j⁻¹·x), equivariant in the
  regular representation for exactly-implemented actions.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from workers.symmetry.groups import Group


class _MaskedBatchNorm(nn.Module):
    """BatchNorm over real nodes only (statistics are permutation invariant)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(h)
        out[mask] = self.norm(h[mask])
        return out


class DenseGIN(nn.Module):
    """Node scores (R, n) from ``adjacency_field`` (R, n, n, 1) and ``node_field`` (R, n, C) + noise."""

    def __init__(self, in_channels: int, hidden: int = 64, layers: int = 3, dropout: float = 0.0,
                 adjacency_field: str = "adj", node_field: str | None = "x", virtual_node: bool = True,
                 activation: type[nn.Module] = nn.SiLU):
        """``activation`` defaults to SiLU rather than the paper's ReLU: a randomly initialised
        ReLU GIN often maps different nodes to exactly equal scores (all units inactive), and a
        tie makes the argsort, and so canonicalization, ill-defined."""
        super().__init__()
        self.adjacency_field, self.node_field = adjacency_field, node_field
        self.in_channels = max(int(in_channels), 1)
        self.noise_channels = self.in_channels
        self.virtual = nn.Parameter(torch.zeros(self.in_channels)) if virtual_node else None
        widths = [self.in_channels] + [hidden] * (layers - 1) + [1]
        # e starts at 0.1, not 0: with e = 0 two nodes with the same closed neighbourhood get
        # identical sums (A + I)H whatever their noise, and their scores tie.
        self.eps = nn.Parameter(torch.full((layers,), 0.1))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(a, hidden), activation(), nn.Linear(hidden, b)) for a, b in zip(widths, widths[1:])
        )
        self.norms = nn.ModuleList(_MaskedBatchNorm(b) for b in widths[1:-1])
        self.dropout = nn.Dropout(dropout)
        self.activation = activation()

    def forward(self, inputs: Mapping[str, torch.Tensor], noise: Mapping[str, torch.Tensor],
                mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        dtype = self.eps.dtype
        adjacency = inputs[self.adjacency_field][..., 0].to(dtype)  # (R, n, n)
        rows, size = adjacency.shape[:2]
        mask = torch.ones(rows, size, dtype=torch.bool, device=adjacency.device) if mask is None else mask
        if self.node_field is not None and self.node_field in inputs:
            h = inputs[self.node_field].to(dtype)
        else:
            h = adjacency.new_zeros(rows, size, self.in_channels)
        h = (h + noise["node_noise"].to(dtype)) * mask[..., None]  # (R, n, C)
        if self.virtual is not None:  # append the virtual node, joined to every real node
            h = torch.cat([h, self.virtual.expand(rows, 1, -1)], dim=1)
            link = mask.to(dtype)
            adjacency = torch.cat([torch.cat([adjacency, link[:, :, None]], 2),
                                   torch.cat([link[:, None, :], adjacency.new_zeros(rows, 1, 1)], 2)], 1)
            mask = torch.cat([mask, mask.new_ones(rows, 1)], dim=1)
        for layer, mlp in enumerate(self.mlps):
            h = mlp(adjacency @ h + (1 + self.eps[layer]) * h) * mask[..., None]
            if layer < len(self.norms):
                h = self.dropout(self.activation(self.norms[layer](h, mask)))
        return {"scores": h[:, :size, 0]}


class VectorInterface(nn.Module):
    """Features for O(d)/SO(d) (and S_n × O(d)) from ``point``/``vector`` fields of shape (R, n, d)."""

    def __init__(self, dim: int, vector_fields: list[str], node_fields: Mapping[str, int] | None = None,
                 hidden: int = 32, noise_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.dim, self.vector_fields = int(dim), list(vector_fields)
        self.node_fields = dict(node_fields or {})
        self.noise_channels = int(noise_channels or len(self.vector_fields))
        channels = len(self.vector_fields) + self.noise_channels
        invariant_width = channels * (channels + 1) // 2 + sum(self.node_fields.values())
        self.node_mlp = nn.Sequential(nn.Linear(invariant_width, hidden), nn.SiLU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, hidden))
        self.weight_head = nn.Linear(2 * hidden, channels * self.dim)
        self.score_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, inputs, noise, mask):
        dtype = self.weight_head.weight.dtype
        vectors = [inputs[name].to(dtype).unsqueeze(2) for name in self.vector_fields]
        vectors.append(noise["vector_noise"].to(dtype))
        v = torch.cat(vectors, dim=2)  # (R, n, c, d)
        rows, size, channels, _ = v.shape
        mask = torch.ones(rows, size, dtype=torch.bool, device=v.device) if mask is None else mask
        gram = torch.einsum("rnid,rnjd->rnij", v, v)  # (R, n, c, c), rotation invariant
        upper = torch.triu_indices(channels, channels, device=v.device)
        features = [gram[:, :, upper[0], upper[1]]]
        features += [inputs[name].to(dtype).reshape(rows, size, -1) for name in self.node_fields]
        h = self.node_mlp(torch.cat(features, dim=2)) * mask[..., None]  # (R, n, H)
        pooled = h.sum(1, keepdim=True) / mask.sum(1).clamp_min(1)[:, None, None]  # S_n invariant
        h = torch.cat([h, pooled.expand(-1, size, -1)], dim=2) * mask[..., None]
        weights = self.weight_head(h).view(rows, size, channels, self.dim) * mask[..., None, None]
        out = {"vectors": torch.einsum("rnck,rncd->rdk", weights, v)}  # (R, d, d): columns
        out["scores"] = self.score_head(h)[..., 0]  # (R, n)
        return out


class RegularScorer(nn.Module):
    """Logits over a finite group's elements: logits_j = scorer(g_j⁻¹·x) + ε_j (any ``FiniteGroup``: matrices,
    node permutations or both, on the kinds it moves)."""

    def __init__(self, group: Group, scorer: nn.Module, input_kinds: Mapping[str, str]):
        super().__init__()
        if group.finite is None:
            raise ValueError(f"RegularScorer needs a finite group with listed elements and {group.name} is not one")
        self.group, self.scorer, self.input_kinds = group, scorer, dict(input_kinds)
        self.noise_channels = 1

    def forward(self, inputs, noise, mask):
        like = noise["regular_noise"]
        rows, count = like.shape
        every = torch.arange(count)
        inverse = self.group.inverse(self.group.element(every, like.dtype, like.device)).index(every.repeat(rows))
        moved = {name: self.group.act(inverse, value.repeat_interleave(count, 0), self.input_kinds[name])
                 for name, value in inputs.items()}
        if mask is not None and self.group.permutes_nodes:
            moved["mask"] = self.group.act(inverse, mask.repeat_interleave(count, 0), "node")
        logits = self.scorer(moved).view(rows, count)
        return {"logits": logits + like.to(logits.dtype)}
