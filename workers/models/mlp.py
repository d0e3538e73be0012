"""Multilayer perceptrons: the flat ``MLP`` base model.

``MLP`` flattens every input field (in declaration order), runs a perceptron and reshapes to the
output — the PS paper's base model for graph separation (A.3.3): GRAPH8c 64→128→64→10 with tanh,
EXP 4160→2048→4096→2048→10 with ReLU (EXP-classify adds →1).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from workers.models.layers import check, check_dropout, finish_output, masked, perceptron, residual_field
from workers.models.spec import FieldSpec, Specs


class MLP(nn.Module):
    """Flatten every input field, perceptron through ``widths``, reshape to the output's shape.

    Padded slots are zeroed before flattening, so they never influence real outputs."""

    def __init__(self, inputs: Specs, output: FieldSpec, widths: Sequence[int] = (128, 128),
                 activation: str = "relu", dropout: float = 0.0, residual: bool = True):
        """``widths``: hidden layer sizes ([] gives a linear model); ``activation``: one of
        relu/gelu/silu/tanh; ``dropout`` after each hidden activation; ``residual``: for a point
        output, predict a displacement added to the matching point input."""
        super().__init__()
        check(isinstance(widths, Sequence) and not isinstance(widths, str)
              and all(type(w) is int and w >= 1 for w in widths), "widths", widths, "a list of integers >= 1")
        self.inputs, self.output = dict(inputs), output
        fan_in = sum(spec.size for spec in inputs.values())
        self.net = perceptron([fan_in, *widths, output.size], activation, check_dropout(dropout))
        self.residual = residual_field(inputs, output, residual)

    @classmethod
    def unsupported(cls, inputs: Specs, output: FieldSpec) -> str | None:
        """The MLP reads any layout."""
        return None

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        dtype = self.net[-1].weight.dtype
        mask = inputs.get("mask")
        flat = torch.cat([masked(inputs[name].to(dtype), spec.kind, mask).flatten(1)
                          for name, spec in self.inputs.items()], dim=1)  # (R, Σ sizes)
        out = self.net(flat).view(-1, *self.output.shape)  # (R, *output.shape)
        return finish_output(out, self.output.kind, inputs, self.residual, mask)
