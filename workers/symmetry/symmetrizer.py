"""The symmetrizer: φ(x) = E_{g~p(g|x)} [ g · f(g⁻¹ · x) ], estimated with N samples.

B inputs become B·N rows (input-major, ``repeat_interleave``); every per-sample tensor (noise,
group elements, masks) uses that order. For groups with translations the inputs are centred on
the masked centroid of the first ``point`` field first and the centroid is added back to
``point`` outputs, which makes E(d)/SE(d) symmetrization exact (PS paper §2.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from workers.symmetry.distributions import Distribution
from workers.symmetry.groups import DATA_KINDS, Group, GroupElement


@dataclass
class SymmetrizedOutput:
    """``output`` (B, ...) the estimate; ``samples`` (B, N, ...) the N per-sample outputs, so that
    ``samples.mean(1) == output`` (for E(d)/SE(d) point outputs each sample includes the centroid);
    ``elements`` the B·N sampled group elements; ``penalty`` the entropy penalty (0 if none)."""

    output: torch.Tensor
    samples: torch.Tensor
    elements: GroupElement
    penalty: torch.Tensor
    aux: dict = field(default_factory=dict)


class Symmetrizer(nn.Module):
    """Wrap any base model ``f(inputs: dict) -> Tensor`` into a G-equivariant model.

    ``input_kinds`` maps input names to kinds (``node``, ``pair``, ``point``, ``vector``,
    ``image``, ``invariant``); ``output_kind`` is the kind of f's output. The base model receives
    the transformed inputs plus ``"mask"`` when a mask is given.
    """

    def __init__(self, base: nn.Module, distribution: Distribution, input_kinds: Mapping[str, str],
                 output_kind: str, train_samples: int = 1, eval_samples: int = 1):
        super().__init__()
        for name, kind in {**input_kinds, "<output>": output_kind}.items():
            if kind not in DATA_KINDS:
                raise ValueError(f"kind {kind!r} of {name!r} is not a kind; allowed: {', '.join(DATA_KINDS)}")
        for key, value in (("train_samples", train_samples), ("eval_samples", eval_samples)):
            if int(value) < 1:
                raise ValueError(f"symmetrizer.{key}={value!r} is not allowed; expected an integer ≥ 1")
        self.base = base
        self.distribution = distribution
        self.input_kinds = dict(input_kinds)
        self.output_kind = output_kind
        self.train_samples = int(train_samples)
        self.eval_samples = int(eval_samples)
        points = [name for name, kind in self.input_kinds.items() if kind == "point"]
        self.centre_field = points[0] if (self.group.translations and points) else None

    @property
    def group(self) -> Group:
        return self.distribution.group

    def num_samples(self) -> int:
        return self.train_samples if self.training else self.eval_samples

    def centroid(self, inputs: Mapping[str, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor | None:
        """Masked centroid (B, d) of the reference point field, or None when not centring."""
        if self.centre_field is None:
            return None
        points = inputs[self.centre_field]  # (B, n, d)
        if mask is None:
            return points.mean(dim=1)
        weight = mask.to(points.dtype)[..., None]
        return (points * weight).sum(1) / weight.sum(1).clamp_min(1)

    def centred(self, inputs: Mapping[str, torch.Tensor], mask: torch.Tensor | None,
                centre: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out = dict(inputs)
        if centre is None:
            return out
        for name, kind in self.input_kinds.items():
            if kind == "point":
                moved = inputs[name] - centre[:, None, :]
                out[name] = moved if mask is None else moved * mask[..., None].to(moved.dtype)
        return out

    def draw_noise(self, inputs: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None,
                   samples: int | None = None, generator: torch.Generator | None = None) -> dict:
        """The noise ε for ``samples`` draws per input (rows input-major), without running f."""
        samples = samples or self.num_samples()
        centred = self.centred(inputs, mask, self.centroid(inputs, mask))
        rows = {k: v.repeat_interleave(samples, 0) for k, v in centred.items()}
        rmask = None if mask is None else mask.repeat_interleave(samples, 0)
        return self.distribution.draw_noise(rows, rmask, len(next(iter(rows.values()))), generator)

    def forward(self, inputs: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None,
                noise: dict | None = None, samples: int | None = None,
                generator: torch.Generator | None = None) -> SymmetrizedOutput:
        samples = samples or self.num_samples()
        batch = int(next(iter(inputs.values())).shape[0])
        centre = self.centroid(inputs, mask)
        centred = self.centred(inputs, mask, centre)
        rows = {k: v.repeat_interleave(samples, 0) for k, v in centred.items()}  # (B·N, ...)
        rmask = None if mask is None else mask.repeat_interleave(samples, 0)  # (B·N, n)
        if noise is None:
            noise = self.distribution.draw_noise(rows, rmask, batch * samples, generator)
        element, aux = self.distribution(rows, noise, rmask, repeats=samples)
        inverse = self.group.inverse(element)
        moved = {k: self.group.act(inverse, v, self.input_kinds[k], rmask) for k, v in rows.items()}
        if rmask is not None:
            moved["mask"] = self.group.act(inverse, rmask, "node")
        raw = self.base(moved)  # (B·N, ...)
        per_sample = self.group.act(element, raw, self.output_kind, None)
        if rmask is not None and self.output_kind in ("node", "point", "vector"):
            per_sample = per_sample * rmask.view(*rmask.shape, *([1] * (per_sample.dim() - 2))).to(per_sample.dtype)
        per_sample = per_sample.view(batch, samples, *per_sample.shape[1:])  # (B, N, ...)
        if centre is not None and self.output_kind == "point":  # undo the centring: samples are outputs too
            per_sample = per_sample + centre.view(batch, 1, *([1] * (per_sample.dim() - 3)), -1)
            if mask is not None:
                per_sample = per_sample * mask.view(batch, 1, *mask.shape[1:],
                                                    *([1] * (per_sample.dim() - 3))).to(per_sample.dtype)
        output = per_sample.mean(dim=1)  # samples.mean(1) == output, always
        penalty = aux.pop("entropy", output.new_zeros(()))
        return SymmetrizedOutput(output, per_sample, element, penalty, aux)


class Unsymmetrized(nn.Module):
    """The bare base model behind the same interface as ``Symmetrizer`` (one "sample", no group
    element): the baseline of a sweep, and the model that augmentation and REMUL train."""

    def __init__(self, base: nn.Module, group: Group, input_kinds: Mapping[str, str], output_kind: str):
        super().__init__()
        for name, kind in {**input_kinds, "<output>": output_kind}.items():
            if kind not in DATA_KINDS:
                raise ValueError(f"kind {kind!r} of {name!r} is not a kind; allowed: {', '.join(DATA_KINDS)}")
        self.base, self._group = base, group
        self.input_kinds, self.output_kind = dict(input_kinds), output_kind
        self.train_samples = self.eval_samples = 1

    @property
    def group(self) -> Group:
        return self._group

    def num_samples(self) -> int:
        return 1

    def forward(self, inputs: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None,
                noise: dict | None = None, samples: int | None = None,
                generator: torch.Generator | None = None) -> SymmetrizedOutput:
        rows = dict(inputs)
        if mask is not None:
            rows["mask"] = mask
        output = self.base(rows)  # (B, ...)
        if mask is not None and self.output_kind in ("node", "point", "vector"):
            output = output * mask.view(*mask.shape, *([1] * (output.dim() - 2))).to(output.dtype)
        return SymmetrizedOutput(output, output.unsqueeze(1), GroupElement(), output.new_zeros(()))
