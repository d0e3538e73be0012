"""Interface networks q_ω for probabilistic symmetrization, the PS paper's choices (A.3.1, A.3.2).

- ``GINInterface``: S_n-equivariant node scores from a graph, a GIN with a virtual node on
  torch-geometric (3 layers, hidden 64).
- ``VectorNeurons``: for O(d)/SO(d)/E(d)/SE(d) and S_n × those, a Vector Neurons DGCNN (Deng et al.
  2021) for any d ≥ 2: rotation-invariant, permutation-equivariant node scores and d rotation-
  equivariant, permutation-invariant vectors.

Both follow the contract of ``workers.symmetry.distributions.ProbabilisticSymmetrization``:
``forward(inputs, noise, mask) -> dict`` and an attribute ``noise_channels``. The plain-torch
reference versions live in ``workers.symmetry.interfaces``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
from torch_geometric.nn import GINConv

Tensors = Mapping[str, torch.Tensor]


class GINInterface(nn.Module):
    """Node scores (R, n) from ``adjacency_field`` (R, n, n, 1) and ``node_field`` (R, n, C) + noise.

    Each GIN layer computes MLP((A' + (1 + e)I)H) on the graph plus one virtual node per graph,
    joined to every real node and starting from a learned embedding. Padded nodes are left out of
    the graph (no edges, no influence) and get score 0. As in ``DenseGIN``: SiLU rather than ReLU
    (a random ReLU GIN often ties scores, and ties make the argsort ill-defined) and e initialised
    to 0.1, trainable (with e = 0 nodes with equal closed neighbourhoods tie whatever their noise).
    Any non-zero adjacency entry is an edge (GIN has no edge weights).
    """

    def __init__(self, adjacency_field: str = "adj", node_field: str | None = "x", node_channels: int = 1,
                 layers: int = 3, hidden: int = 64, dropout: float = 0.0):
        super().__init__()
        for key, value in (("layers", layers), ("hidden", hidden)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"symmetrizer.interface.{key}={value!r} is not allowed; expected an integer ≥ 1")
        self.adjacency_field, self.node_field = adjacency_field, node_field
        self.noise_channels = max(int(node_channels), 1)
        self.virtual = nn.Parameter(torch.zeros(self.noise_channels))  # the virtual node's embedding
        widths = [self.noise_channels] + [hidden] * (layers - 1) + [1]
        self.convs = nn.ModuleList(
            GINConv(nn.Sequential(nn.Linear(a, hidden), nn.SiLU(), nn.Linear(hidden, b)), eps=0.1, train_eps=True)
            for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in widths[1:-1])
        self.activation = nn.SiLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: Tensors, noise: Tensors, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        dtype = self.virtual.dtype
        adjacency = inputs[self.adjacency_field][..., 0]  # (R, n, n)
        rows, size = adjacency.shape[:2]
        mask = torch.ones(rows, size, dtype=torch.bool, device=adjacency.device) if mask is None else mask.bool()
        if self.node_field is not None and self.node_field in inputs:
            h = inputs[self.node_field].to(dtype).reshape(rows, size, -1)
        else:
            h = adjacency.new_zeros(rows, size, self.noise_channels, dtype=dtype)
        h = h + noise["node_noise"].to(dtype)  # (R, n, C)
        real = mask.sum()  # V real nodes, numbered row by row; virtual nodes follow: V + r
        number = torch.full((rows, size), -1, dtype=torch.long, device=mask.device)
        number[mask] = torch.arange(int(real), device=mask.device)
        row, target, source = ((adjacency != 0) & mask[:, :, None] & mask[:, None, :]).nonzero(as_tuple=True)
        real_row = mask.nonzero(as_tuple=True)[0]  # (V,) the row of each real node
        virtual = real + real_row
        nodes = torch.arange(int(real), device=mask.device)
        edge_index = torch.stack([torch.cat([number[row, source], nodes, virtual]),
                                  torch.cat([number[row, target], virtual, nodes])])  # (2, E): source -> target
        x = torch.cat([h[mask], self.virtual.expand(rows, -1)])  # (V + R, C)
        for layer, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            if layer < len(self.norms):
                x = self.dropout(self.activation(self.norms[layer](x)))
        scores = x.new_zeros(rows, size)
        scores[mask] = x[: int(real), 0]
        return {"scores": scores}  # (R, n)


class _VNLinear(nn.Module):
    """Channel mixing of vector features (..., C_in, d) -> (..., C_out, d); no bias (equivariance)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.transpose(-1, -2)).transpose(-1, -2)


class _VNLinearLeakyReLU(nn.Module):
    """VN linear layer then VN-LeakyReLU: the part of q = Wx pointing against a learned direction
    k = Ux is removed (scaled by 1 − slope), which commutes with every orthogonal map."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2, eps: float = 1e-6):
        super().__init__()
        self.features, self.direction = _VNLinear(in_channels, out_channels), _VNLinear(in_channels, out_channels)
        self.negative_slope, self.eps = negative_slope, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k = self.features(x), self.direction(x)  # (..., C_out, d)
        dot = (q * k).sum(-1, keepdim=True)
        against = torch.where(dot < 0, dot / ((k * k).sum(-1, keepdim=True) + self.eps), torch.zeros_like(dot))
        return q - (1 - self.negative_slope) * against * k


class VectorNeurons(nn.Module):
    """Scores (R, n) and d vectors (R, d, d) from ``vector_fields`` (R, n, d) and noise vectors.

    A Vector Neurons DGCNN: ``layers`` edge convolutions over the kNN graph of real nodes (``knn``
    nearest including the node itself, by the distance of all input vector channels; edge features
    x_j − x_i and x_i; mean over neighbours), a global layer mixing each node with the mean over
    real nodes, then "vectors" = mean over real nodes of d VN channels (columns) and "scores" from
    the VN invariant layer (inner products with a learned equivariant frame) together with the
    scalar ``node_fields`` (name -> channels). The noise (R, n, ``noise_channels``, d) enters as extra
    vector channels. Dropout drops whole vector channels, which keeps equivariance.
    """

    def __init__(self, dim: int, vector_fields: Sequence[str], node_fields: Mapping[str, int] | None = None,
                 knn: int = 4, layers: int = 2, hidden: int = 16, dropout: float = 0.0,
                 noise_channels: int | None = None):
        super().__init__()
        for key, value in (("dim", dim), ("knn", knn), ("layers", layers), ("hidden", hidden)):
            least = 2 if key == "dim" else 1
            if int(value) < least:
                raise ValueError(f"symmetrizer.interface {key}={value!r} is not allowed; expected an integer ≥ {least}")
        if not vector_fields:
            raise ValueError("VectorNeurons needs at least one input field of kind 'point' or 'vector'")
        self.dim, self.knn, self.dropout = int(dim), int(knn), float(dropout)
        self.vector_fields, self.node_fields = list(vector_fields), dict(node_fields or {})
        self.noise_channels = int(noise_channels or len(self.vector_fields))
        channels = len(self.vector_fields) + self.noise_channels
        self.edge_layers = nn.ModuleList(
            _VNLinearLeakyReLU(2 * width, hidden) for width in [channels] + [hidden] * (layers - 1))
        self.global_layer = _VNLinearLeakyReLU(2 * hidden, hidden)
        self.vector_head = _VNLinear(hidden, self.dim)
        self.frame = _VNLinear(hidden, self.dim)
        invariant_width = hidden * self.dim + sum(self.node_fields.values())
        self.score_head = nn.Sequential(nn.Linear(invariant_width, hidden), nn.SiLU(), nn.Linear(hidden, 1))

    def forward(self, inputs: Tensors, noise: Tensors, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        dtype = self.score_head[0].weight.dtype
        vectors = [inputs[name].to(dtype).unsqueeze(2) for name in self.vector_fields]
        h = torch.cat(vectors + [noise["vector_noise"].to(dtype)], dim=2)  # (R, n, C, d)
        rows, size = h.shape[:2]
        mask = torch.ones(rows, size, dtype=torch.bool, device=h.device) if mask is None else mask.bool()
        keep = mask[..., None, None].to(dtype)  # (R, n, 1, 1)
        h = h * keep
        neighbours, valid = self.neighbours(h, mask)  # (R, n, k) each
        batch = torch.arange(rows, device=h.device)[:, None, None]
        weight = valid.to(dtype)[..., None, None] / valid.sum(2).clamp_min(1)[..., None, None, None]
        for layer in self.edge_layers:
            centre = h[:, :, None].expand(-1, -1, neighbours.shape[2], -1, -1)  # (R, n, k, C, d)
            edges = torch.cat([h[batch, neighbours] - centre, centre], dim=3)  # (R, n, k, 2C, d)
            h = self.drop((layer(edges) * weight).sum(2)) * keep  # (R, n, H, d)
        pooled = h.sum(1, keepdim=True) / mask.sum(1).clamp_min(1)[:, None, None, None].to(dtype)  # (R, 1, H, d)
        h = self.global_layer(torch.cat([h, pooled.expand_as(h)], dim=2)) * keep  # (R, n, H, d)
        columns = self.vector_head(h).sum(1) / mask.sum(1).clamp_min(1)[:, None, None].to(dtype)  # (R, d, d)
        invariants = torch.einsum("rncd,rnfd->rncf", h, self.frame(h)).flatten(2)  # (R, n, H·d)
        scalars = [inputs[name].to(dtype).reshape(rows, size, -1) for name in self.node_fields]
        scores = self.score_head(torch.cat([invariants, *scalars], dim=2))[..., 0] * mask  # (R, n)
        return {"vectors": columns.transpose(1, 2), "scores": scores}

    def neighbours(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (R, n, k) of each node's ``knn`` nearest real nodes (itself included) and which
        of them exist (graphs with fewer real nodes than ``knn``)."""
        flat = h.flatten(2)  # (R, n, C·d); differences, not Gram expansions, for rounding-exact ties
        distance = torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist")  # (R, n, n)
        distance = distance.masked_fill(~mask[:, None, :], float("inf"))
        nearest, index = distance.topk(min(self.knn, h.shape[1]), dim=2, largest=False)
        return index, torch.isfinite(nearest)

    def drop(self, h: torch.Tensor) -> torch.Tensor:
        """Dropout of whole vector channels (R, n, C, d)."""
        if not self.training or self.dropout == 0:
            return h
        return h * nn.functional.dropout(h.new_ones(*h.shape[:-1], 1), self.dropout)
