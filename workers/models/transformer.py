"""A sequence transformer over node tokens or node-pair tokens: f = detokenize ∘ transformer ∘ tokenize
(PS paper eq. 10).

Tokenizers (``model.tokens``):

- ``set``: one token per node slot — the node's node/point/vector features and its row of every
  pair field (n·C values);
- ``pair``: n² tokens, token (i, j) = the pair fields' features, and off the diagonal the products
  x_i·x_j of node features (charge products) and the squared distance |x_i − x_j|² of each point
  field, on the diagonal the node/point/vector features of node i — the PS paper's n-body model
  (A.3.4: 5 particles give 25 tokens);
- ``auto``: pair tokens when an input is a pair or point field (relations live on pairs) and there
  are at most ``AUTO_PAIR_TOKENS`` of them, else set tokens: attention over n² tokens costs n⁴, so
  EXP (64 nodes: 4,096 tokens) and PATTERN (188 nodes) get set tokens, n-body and GRAPH8c pairs.

The encoder is PyTorch's pre-LN ``TransformerEncoder`` (GELU, final LayerNorm) with a learned
positional encoding per token slot; padded tokens are masked as keys (a pair token is real iff both
of its nodes are). Detokenizer (``Readout``): an invariant output reads the mean of the real tokens,
node/point/vector outputs read each node's token (for pair tokens, the diagonal token (i, i)).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from workers.models.layers import (
    SLOT_KINDS,
    Readout,
    check,
    check_count,
    check_dropout,
    masked,
    require_layout,
    residual_field,
)
from workers.models.spec import FieldSpec, Specs, fields_of, node_count, row_mask

TOKENIZERS = ("auto", "set", "pair")
AUTO_PAIR_TOKENS = 256


class Transformer(nn.Module):
    """Pre-LN transformer encoder on set or pair tokens of node-slot inputs."""

    def __init__(self, inputs: Specs, output: FieldSpec, tokens: str = "auto", layers: int = 8, width: int = 64,
                 heads: int = 4, feedforward: int | None = None, dropout: float = 0.0, residual: bool = True):
        """Defaults follow the PS paper's n-body model: 8 layers, width 64, 4 heads, GELU, pre-LN,
        feed-forward blocks as wide as the model (``feedforward=None``; ≈208k parameters).
        ``residual``: for a point output, predict a displacement added to the matching point input."""
        super().__init__()
        check(tokens in TOKENIZERS, "tokens", tokens, f"one of {', '.join(TOKENIZERS)}")
        check_count("layers", layers)
        check_count("width", width)
        check_count("heads", heads)
        check(width % heads == 0, "heads", heads, f"a divisor of model.width={width}")
        feedforward = width if feedforward is None else check_count("feedforward", feedforward)
        require_layout(type(self), inputs, output)
        self.inputs, self.output = dict(inputs), output
        self.nodes = node_count(inputs)
        if tokens == "auto":
            relational = bool(fields_of(inputs, "pair", "point")) and self.nodes ** 2 <= AUTO_PAIR_TOKENS
            tokens = "pair" if relational else "set"
        self.pair_tokens = tokens == "pair"
        own = sum(inputs[name].shape[-1] for name in fields_of(inputs, "node", "point", "vector"))
        pair = sum(inputs[name].shape[-1] for name in fields_of(inputs, "pair"))
        if self.pair_tokens:  # pair, node products, squared distances, own features on the diagonal
            features = pair + sum(inputs[name].shape[-1] for name in fields_of(inputs, "node"))
            features += len(fields_of(inputs, "point")) + own
        else:  # own features and the node's row of each pair field
            features = own + self.nodes * pair
        count = self.nodes ** 2 if self.pair_tokens else self.nodes
        self.embed = nn.Linear(features, width)
        self.position = nn.Parameter(torch.randn(count, width) * 0.02)  # (T, width) learned, per slot
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=feedforward, dropout=check_dropout(dropout),
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.readout = Readout(width, output, "gelu", "mean", residual_field(inputs, output, residual))

    @classmethod
    def unsupported(cls, inputs: Specs, output: FieldSpec) -> str | None:
        """Reads node, pair, point and vector inputs; gives invariant or per-node outputs."""
        others = sorted({spec.kind for spec in inputs.values()} - set(SLOT_KINDS))
        if others:
            return f"reads node, pair, point and vector inputs only (got kind {others[0]!r})"
        if not inputs:
            return "needs an input of kind 'node', 'pair', 'point' or 'vector'"
        return Readout.unsupported(output, node_count(inputs))

    def tokenize(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Token features (R, T, F) from the (masked) input fields."""
        if not self.pair_tokens:
            parts = [values[name] for name in fields_of(self.inputs, "node", "point", "vector")]
            parts += [values[name].flatten(2) for name in fields_of(self.inputs, "pair")]  # (R, n, n·C)
            return torch.cat(parts, dim=-1)  # (R, n, F)
        sample = next(iter(values.values()))
        eye = torch.eye(self.nodes, dtype=sample.dtype, device=sample.device)[..., None]  # (n, n, 1)
        parts = [values[name] for name in fields_of(self.inputs, "pair")]  # (R, n, n, C)
        for name in fields_of(self.inputs, "node"):
            x = values[name]  # (R, n, C)
            parts.append(x[:, :, None, :] * x[:, None, :, :] * (1 - eye))  # (R, n, n, C) x_i·x_j, i ≠ j
        for name in fields_of(self.inputs, "point"):
            x = values[name]  # (R, n, d)
            parts.append((x[:, :, None, :] - x[:, None, :, :]).pow(2).sum(-1, keepdim=True))  # (R, n, n, 1)
        own = torch.cat([values[name] for name in fields_of(self.inputs, "node", "point", "vector")], dim=-1)
        parts.append(own[:, :, None, :] * eye)  # (R, n, n, D) node i's features at (i, i)
        return torch.cat(parts, dim=-1).flatten(1, 2)  # (R, n², F)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        dtype = self.embed.weight.dtype
        mask = inputs.get("mask")
        values = {name: masked(inputs[name].to(dtype), spec.kind, mask) for name, spec in self.inputs.items()}
        rows = next(iter(values.values())).shape[0]
        real = row_mask(inputs, rows, self.nodes, self.embed.weight.device)  # (R, n)
        real_tokens = (real[:, :, None] & real[:, None, :]).flatten(1) if self.pair_tokens else real  # (R, T)
        h = self.embed(self.tokenize(values)) + self.position  # (R, T, width)
        h = self.encoder(h, src_key_padding_mask=~real_tokens)  # (R, T, width)
        if self.pair_tokens and self.output.kind != "invariant":  # node outputs read the diagonal tokens
            h = h.view(rows, self.nodes, self.nodes, -1).diagonal(dim1=1, dim2=2).transpose(1, 2)  # (R, n, width)
            real_tokens = real
        return self.readout(h, inputs, real_tokens)
