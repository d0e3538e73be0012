"""The lab's model: a plain perceptron over every point, flattened. It knows nothing of rotations, translations or
the order of the points; symsweep makes it equivariant (GA, PS, ...) or trains it bare (none) to compare."""

from __future__ import annotations

import torch
from torch import nn


class PointMLP(nn.Module):
    """``inputs``/``output``: the task's fields (symsweep passes them because the constructor names them);
    ``hidden``, ``layers``: the keyword arguments the sweep sets as ``model.hidden``, ``model.layers``."""

    def __init__(self, inputs, output, hidden: int = 64, layers: int = 2):
        super().__init__()
        self.names, self.shape = list(inputs), tuple(output.shape)
        sizes = [sum(spec.size for spec in inputs.values()), *[hidden] * layers]
        blocks = [block for fan_in, fan_out in zip(sizes, sizes[1:]) for block in (nn.Linear(fan_in, fan_out),
                                                                                  nn.GELU())]
        self.net = nn.Sequential(*blocks, nn.Linear(sizes[-1], output.size))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        dtype = self.net[-1].weight.dtype
        flat = torch.cat([inputs[name].to(dtype).flatten(1) for name in self.names], dim=1)
        return self.net(flat).view(-1, *self.shape)
