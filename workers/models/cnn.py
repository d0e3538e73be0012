"""A small convolutional network for image classification (the rotated-digits task: 12×12×1 → 10).

Images arrive channels-last (R, H, W, C); every image input is concatenated along channels. Each
block is a same-padded convolution, optional batch normalisation and an activation; with
``pool_every=k`` a 2×2 average pooling follows every k-th block except the last (paper 004's CNNs:
six blocks, batch norm, ELU, pooling after every two). Global average pooling and a linear head give
the invariant output. Without pooling between blocks, a two-block CNN sees only a local window
before the global average and learns the 8×8 digits slowly (about 33 % test accuracy after 30
epochs on 1,000 rotated digits, against 86 % for the six-block pooled network with batch norm).
Plain CNNs are translation- but not rotation-equivariant, which makes them the base model that
symmetrization over C_k/D_k/O(2) has to fix.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from workers.models.layers import activation_module, check, check_dropout, require_layout
from workers.models.spec import FieldSpec, Specs, fields_of


class CNN(nn.Module):
    """Convolutions through ``channels``, global average pooling, linear head."""

    def __init__(self, inputs: Specs, output: FieldSpec, channels: Sequence[int] = (32, 64), kernel: int = 3,
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False, pool_every: int = 0):
        """``channels``: output channels of each convolution; ``kernel``: an odd kernel size
        (same padding keeps H × W); ``batch_norm`` after each convolution; ``pool_every``: 2×2
        average pooling after every that many blocks except the last (0: none); ``dropout`` before
        the head. In evaluation, batch norm uses its running statistics, so the network is a
        function of each image alone (group averaging stays exactly invariant)."""
        super().__init__()
        require_layout(type(self), inputs, output)
        check(isinstance(channels, Sequence) and not isinstance(channels, str) and len(channels) >= 1
              and all(type(c) is int and c >= 1 for c in channels), "channels", channels,
              "a non-empty list of integers >= 1")
        check(type(kernel) is int and kernel >= 1 and kernel % 2 == 1, "kernel", kernel, "an odd integer >= 1")
        check(type(batch_norm) is bool, "batch_norm", batch_norm, "true or false")
        check(type(pool_every) is int and pool_every >= 0, "pool_every", pool_every, "an integer >= 0 (0: no pooling)")
        self.images, self.output = fields_of(inputs, "image"), output
        widths = [sum(inputs[name].shape[-1] for name in self.images), *channels]
        pools = [index for index in range(1, len(channels)) if pool_every and index % pool_every == 0]
        height, width = inputs[self.images[0]].shape[:2]
        check(height % 2 ** len(pools) == 0 and width % 2 ** len(pools) == 0, "pool_every", pool_every,
              f"a value whose {len(pools)} 2x2 pooling(s) each halve an even height and width "
              f"(the images are {height} x {width}: 2^{len(pools)} must divide both)")
        layers: list[nn.Module] = []
        for index, (fan_in, fan_out) in enumerate(zip(widths, widths[1:]), start=1):
            layers.append(nn.Conv2d(fan_in, fan_out, kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(fan_out))
            layers.append(activation_module(activation))
            if index in pools:
                layers.append(nn.AvgPool2d(2))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(check_dropout(dropout))
        self.head = nn.Linear(widths[-1], output.size)

    @classmethod
    def unsupported(cls, inputs: Specs, output: FieldSpec) -> str | None:
        """Reads image inputs of one height and width; gives an invariant output."""
        images = fields_of(inputs, "image")
        if not images:
            return "needs an input of kind 'image'"
        if len(images) != len(inputs):
            return "reads image inputs only"
        if len({inputs[name].shape[:2] for name in images}) > 1:
            return "needs its image inputs to share one height and width"
        if output.kind != "invariant":
            return f"gives invariant outputs only (not {output.kind!r})"
        return None

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        dtype = self.head.weight.dtype
        image = torch.cat([inputs[name].to(dtype) for name in self.images], dim=-1)  # (R, H, W, C)
        h = self.features(image.permute(0, 3, 1, 2))  # (R, channels[-1], H', W')
        pooled = self.dropout(h.mean(dim=(2, 3)))  # (R, channels[-1])
        return self.head(pooled).view(-1, *self.output.shape)
