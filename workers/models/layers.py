"""The parts every base model is built from: the activation table (``model.activation``),
``perceptron``, ``check`` (the project's hyperparameter error) and ``require_layout``, ``masked``
(zero the padded node slots of a field), the output finish (``residual_field``, ``finish_output``:
add the first point input back to a predicted displacement, zero padded slots) and ``Readout``
(per-node features → pooled or per-node head).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from workers.checks import require
from workers.models.spec import FieldSpec, Specs
from workers.symmetry.groups import NODE_KINDS

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
                                           "elu": nn.ELU}
SLOT_KINDS = NODE_KINDS  # kinds whose first axis (or two) are node slots


def check(condition: bool, key: str, value: Any, allowed: str) -> None:
    """``workers.checks.require`` for ``model.<key>`` (model constructors name their own keys)."""
    require(condition, f"model.{key}", value, allowed)


def check_count(key: str, value: Any, least: int = 1) -> int:
    """``value`` as an int, after checking it is an integer >= ``least`` (bools are not integers)."""
    check(type(value) is int and value >= least, key, value, f"an integer >= {least}")
    return value


def check_dropout(value: Any) -> float:
    """A dropout probability in [0, 1)."""
    check(type(value) in (int, float) and 0 <= value < 1, "dropout", value, "a number in [0, 1)")
    return float(value)


def require_layout(model: type, inputs: Specs, output: FieldSpec) -> None:
    """Raise ValueError unless ``model.unsupported(inputs, output)`` is None."""
    reason = model.unsupported(inputs, output)
    if reason is not None:
        raise ValueError(f"model {model.__name__} cannot read this task's layout: it {reason}")


def activation_module(name: Any) -> nn.Module:
    """A fresh activation module from its ``model.activation`` name."""
    check(name in ACTIVATIONS, "activation", name, f"one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def perceptron(sizes: Sequence[int], activation_name: str, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers through ``sizes`` with activation (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        if index:
            layers.append(activation_module(activation_name))
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def masked(value: torch.Tensor, kind: str, mask: torch.Tensor | None) -> torch.Tensor:
    """``value`` (R, ...) with its padded node slots zeroed: rows for node/point/vector fields,
    both node axes for pair fields; other kinds (and ``mask=None``) pass through."""
    if mask is None or kind not in SLOT_KINDS:
        return value
    weight = mask.to(value.dtype)  # (R, n)
    if kind == "pair":
        weight = weight[:, :, None] * weight[:, None, :]  # (R, n, n)
    return value * weight.view(*weight.shape, *([1] * (value.dim() - weight.dim())))


def residual_field(inputs: Specs, output: FieldSpec, residual: bool) -> str | None:
    """The point input a ``point`` output adds back (the model predicts a displacement), or None.

    Like the PS paper's n-body model: the first ``point`` input of the output's shape."""
    check(isinstance(residual, bool), "residual", residual, "true or false")
    if not residual or output.kind != "point":
        return None
    return next((name for name, spec in inputs.items() if spec.kind == "point" and spec.shape == output.shape), None)


def finish_output(out: torch.Tensor, kind: str, inputs: Mapping[str, torch.Tensor], residual: str | None,
                  mask: torch.Tensor | None) -> torch.Tensor:
    """Add the residual point field to ``out`` (R, *output.shape) and zero its padded slots."""
    if residual is not None:
        out = out + inputs[residual].to(out.dtype)
    return masked(out, kind, mask)


class Readout(nn.Module):
    """Per-node features (R, n, H) → the output: a head on the pooled real nodes for an
    ``invariant`` output, a head on every node for ``node``/``point``/``vector`` outputs (plus the
    residual point input, zero on padded slots). The head has one hidden layer of width H."""

    POOLINGS = ("mean", "sum")

    def __init__(self, features: int, output: FieldSpec, activation_name: str, pooling: str, residual: str | None):
        super().__init__()
        check(pooling in self.POOLINGS, "pooling", pooling, f"one of {', '.join(self.POOLINGS)}")
        self.output, self.pooling, self.residual = output, pooling, residual
        per_row = output.size if output.kind == "invariant" else output.size // output.shape[0]
        self.head = perceptron([features, features, per_row], activation_name)

    @staticmethod
    def unsupported(output: FieldSpec, nodes: int | None) -> str | None:
        """Why per-node features over ``nodes`` slots cannot give ``output`` (None if they can)."""
        if output.kind == "invariant":
            return None
        if output.kind not in ("node", "point", "vector"):
            return f"cannot produce a {output.kind!r} output (invariant, node, point or vector only)"
        if output.shape[0] != nodes:
            return f"needs the output's node slots ({output.shape[0]}) to match the inputs' ({nodes})"
        return None

    def forward(self, h: torch.Tensor, inputs: Mapping[str, torch.Tensor], real: torch.Tensor) -> torch.Tensor:
        """``h`` (R, n, H) node features, ``real`` (R, n) bool real slots."""
        if self.output.kind == "invariant":
            weight = real.to(h.dtype)[..., None]  # (R, n, 1)
            pooled = (h * weight).sum(1)  # (R, H)
            if self.pooling == "mean":
                pooled = pooled / weight.sum(1).clamp_min(1)
            return self.head(pooled).view(-1, *self.output.shape)
        out = self.head(h).view(h.shape[0], *self.output.shape)  # (R, n, ...)
        return finish_output(out, self.output.kind, inputs, self.residual, real)
