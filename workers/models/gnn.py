"""Message passing on fully connected particles in any dimension d: ``GNN`` and ``EGNN``
(paper 004 appendix A; Satorras et al. 2021, "E(n) equivariant graph neural networks").

Every real particle sends a message to every other real particle; padded particles neither send
nor receive. Edge attributes a_ij are the products of node features (the charge product c_i c_j of
paper 004) and any pair fields. Both use residual node updates h_i ← h_i + φ_h(h_i, Σ_j m_ij).

- ``GNN`` (eqs. 6–8): h⁰ embeds the node fields and the raw point and vector coordinates;
  m_ij = φ_e(h_i, h_j, a_ij). A head reads h: for a point output a displacement added to the point
  input. Permutation equivariant, but not rotation or translation equivariant.
- ``EGNN`` (eqs. 2–5, with velocities as in Satorras et al.'s n-body model): h⁰ embeds the node
  fields and the norm |v_i| of each vector field; m_ij = φ_e(h_i, h_j, |x_i − x_j|², a_ij);
  x_i ← x_i + C Σ_j (x_i − x_j) φ_x(m_ij) + Σ_v φ_v(h_i) v_i with C = 1 / (real neighbours of i).
  A point output is the final x, a vector output x − x⁰, node and invariant outputs read h:
  E(d) × S_n equivariant by construction, for any d.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from workers.models.layers import (
    SLOT_KINDS,
    Readout,
    activation_module,
    check_count,
    masked,
    perceptron,
    require_layout,
    residual_field,
)
from workers.models.spec import FieldSpec, Specs, fields_of, node_count, row_mask


def edge_attributes(values: Mapping[str, torch.Tensor], inputs: Specs) -> torch.Tensor:
    """(R, n, n, A): products x_i·x_j of every node field's channels, then the pair fields."""
    parts = [values[name][:, :, None, :] * values[name][:, None, :, :] for name in fields_of(inputs, "node")]
    parts += [values[name] for name in fields_of(inputs, "pair")]
    if parts:
        return torch.cat(parts, dim=-1)
    sample = next(iter(values.values()))
    return sample.new_zeros(sample.shape[0], sample.shape[1], sample.shape[1], 0)


def real_links(real: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(R, n, n): 1 for pairs i ≠ j of real particles, 0 otherwise."""
    eye = torch.eye(real.shape[1], dtype=torch.bool, device=real.device)
    return (real[:, :, None] & real[:, None, :] & ~eye).to(dtype)


class MessageLayer(nn.Module):
    """h_i ← h_i + φ_h(h_i, Σ_j m_ij) with m_ij = φ_e(h_i, h_j, e_ij) over real pairs i ≠ j.

    ``updates_features=False`` leaves h as it is (an EGNN's last layer when only x is read), so
    that no parameter goes without a gradient."""

    def __init__(self, hidden: int, edge_channels: int, activation_name: str, updates_features: bool = True):
        super().__init__()
        self.edge = nn.Sequential(perceptron([2 * hidden + edge_channels, hidden, hidden], activation_name),
                                  activation_module(activation_name))
        self.node = perceptron([2 * hidden, hidden, hidden], activation_name) if updates_features else None

    def messages(self, h: torch.Tensor, edges: torch.Tensor, links: torch.Tensor) -> torch.Tensor:
        """m_ij (R, n, n, H), zero unless (i, j) is a real pair; h (R, n, H), edges (R, n, n, E)."""
        size = h.shape[1]
        senders = h[:, None, :, :].expand(-1, size, -1, -1)  # (R, n, n, H) h_j at (i, j)
        receivers = h[:, :, None, :].expand(-1, -1, size, -1)  # (R, n, n, H) h_i at (i, j)
        return self.edge(torch.cat([receivers, senders, edges], dim=-1)) * links[..., None]

    def update(self, h: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
        if self.node is None:
            return h
        return h + self.node(torch.cat([h, messages.sum(2)], dim=-1))  # (R, n, H)

    def forward(self, h: torch.Tensor, edges: torch.Tensor, links: torch.Tensor) -> torch.Tensor:
        return self.update(h, self.messages(h, edges, links))


class EquivariantLayer(MessageLayer):
    """An EGNN layer: messages see |x_i − x_j|²; coordinates move along x_i − x_j and the velocities."""

    def __init__(self, hidden: int, edge_channels: int, velocities: int, activation_name: str,
                 updates_features: bool = True):
        super().__init__(hidden, edge_channels + 1, activation_name, updates_features)
        last = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)  # small first steps, as Satorras et al.
        self.coordinate = nn.Sequential(nn.Linear(hidden, hidden), activation_module(activation_name), last)
        self.velocity = nn.ModuleList(perceptron([hidden, hidden, 1], activation_name) for _ in range(velocities))

    def forward(self, h: torch.Tensor, x: torch.Tensor, velocities: list[torch.Tensor], edges: torch.Tensor,
                links: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """New (h (R, n, H), x (R, n, d)); velocities are (R, n, d) each."""
        offsets = x[:, :, None, :] - x[:, None, :, :]  # (R, n, n, d) x_i − x_j
        squared = offsets.pow(2).sum(-1, keepdim=True)  # (R, n, n, 1)
        messages = self.messages(h, torch.cat([squared, edges], dim=-1), links)
        neighbours = links.sum(2, keepdim=True).clamp_min(1)  # (R, n, 1)
        moved = x + (offsets * self.coordinate(messages) * links[..., None]).sum(2) / neighbours
        for velocity, scale in zip(velocities, self.velocity):
            moved = moved + scale(h) * velocity
        return self.update(h, messages), moved


class _ParticleModel(nn.Module):
    """What GNN and EGNN share: option checks, field bookkeeping, masking, links and edge attributes."""

    def __init__(self, inputs: Specs, output: FieldSpec, layers: int, hidden: int):
        super().__init__()
        require_layout(type(self), inputs, output)
        check_count("layers", layers)
        check_count("hidden", hidden)
        self.inputs, self.output = dict(inputs), output
        self.nodes = node_count(inputs)
        self.edge_channels = sum(inputs[n].shape[-1] for n in fields_of(inputs, "node", "pair"))

    @staticmethod
    def _layout(inputs: Specs) -> str | None:
        others = sorted({spec.kind for spec in inputs.values()} - set(SLOT_KINDS))
        if others:
            return f"reads point, vector, node and pair inputs only (got kind {others[0]!r})"
        if not fields_of(inputs, "point"):
            return "needs an input of kind 'point' (particle positions)"
        return None

    def prepare(self, inputs: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor,
                                                                    torch.Tensor, torch.Tensor]:
        """The masked fields in the model's dtype, the real slots (R, n) bool, the real links
        (R, n, n) and the edge attributes (R, n, n, A)."""
        dtype = next(self.parameters()).dtype
        mask = inputs.get("mask")
        values = {name: masked(inputs[name].to(dtype), spec.kind, mask) for name, spec in self.inputs.items()}
        sample = next(iter(values.values()))
        real = row_mask(inputs, sample.shape[0], self.nodes, sample.device)
        return values, real, real_links(real, dtype), edge_attributes(values, self.inputs)


class GNN(_ParticleModel):
    """Message passing on fully connected particles from raw coordinates (not E(d)-equivariant)."""

    def __init__(self, inputs: Specs, output: FieldSpec, layers: int = 4, hidden: int = 64,
                 activation: str = "silu", pooling: str = "sum", residual: bool = True):
        """``layers`` message-passing layers of width ``hidden`` (paper 004: 4 layers; 64 as Satorras
        et al.); ``pooling`` over real particles for invariant outputs; ``residual``: for a point
        output, predict a displacement added to the point input."""
        super().__init__(inputs, output, layers, hidden)
        self.features = fields_of(inputs, "node", "point", "vector")
        self.embed = nn.Linear(sum(inputs[name].shape[-1] for name in self.features), hidden)
        self.layers = nn.ModuleList(MessageLayer(hidden, self.edge_channels, activation) for _ in range(layers))
        self.readout = Readout(hidden, output, activation, pooling, residual_field(inputs, output, residual))

    @classmethod
    def unsupported(cls, inputs: Specs, output: FieldSpec) -> str | None:
        """Needs a point field; reads vector, node and pair fields too."""
        return cls._layout(inputs) or Readout.unsupported(output, node_count(inputs))

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values, real, links, edges = self.prepare(inputs)
        h = self.embed(torch.cat([values[name] for name in self.features], dim=-1))  # (R, n, hidden)
        for layer in self.layers:
            h = layer(h, edges, links)
        return self.readout(h, inputs, real)


class EGNN(_ParticleModel):
    """E(d) × S_n-equivariant message passing (Satorras et al.) for any dimension d."""

    def __init__(self, inputs: Specs, output: FieldSpec, layers: int = 4, hidden: int = 64,
                 activation: str = "silu", pooling: str = "sum"):
        """``layers`` EGNN layers of width ``hidden`` (paper 004: 4 layers; 64 as Satorras et al.);
        ``pooling`` over real particles for invariant outputs."""
        super().__init__(inputs, output, layers, hidden)
        self.position = fields_of(inputs, "point")[0]
        self.velocities = fields_of(inputs, "vector")
        self.scalars = fields_of(inputs, "node")
        scalar_channels = sum(inputs[name].shape[-1] for name in self.scalars) + len(self.velocities)
        self.embed = nn.Linear(max(scalar_channels, 1), hidden)  # a constant input when there are no scalars
        reads_features = output.kind in ("node", "invariant")  # point/vector outputs read the coordinates
        self.layers = nn.ModuleList(
            EquivariantLayer(hidden, self.edge_channels, len(self.velocities), activation,
                             updates_features=reads_features or index < layers - 1)
            for index in range(layers)
        )
        self.readout = Readout(hidden, output, activation, pooling, None) if reads_features else None

    @classmethod
    def unsupported(cls, inputs: Specs, output: FieldSpec) -> str | None:
        """Needs exactly one point field (positions); vector fields (velocities) of the same shape."""
        reason = cls._layout(inputs)
        if reason is not None:
            return reason
        points = fields_of(inputs, "point")
        if len(points) > 1:
            return "needs exactly one input of kind 'point' (particle positions)"
        shape = inputs[points[0]].shape
        if any(inputs[name].shape != shape for name in fields_of(inputs, "vector")):
            return f"needs its vector inputs to have the point input's shape {shape}"
        if output.kind in ("point", "vector") and output.shape != shape:
            return f"needs a {output.kind} output of the point input's shape {shape}"
        return Readout.unsupported(output, node_count(inputs))

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        values, real, links, edges = self.prepare(inputs)
        velocities = [values[name] for name in self.velocities]  # (R, n, d) each
        scalars = [values[name] for name in self.scalars] + [v.norm(dim=-1, keepdim=True) for v in velocities]
        start = values[self.position]  # (R, n, d)
        h = self.embed(torch.cat(scalars, dim=-1) if scalars else start.new_ones(*start.shape[:2], 1))  # (R, n, H)
        x = start
        for layer in self.layers:
            h, x = layer(h, x, velocities, edges, links)
        if self.readout is not None:
            return self.readout(h, inputs, real)
        out = x if self.output.kind == "point" else x - start  # (R, n, d)
        return masked(out, "node", real)
