"""Sample sharding: one trial's N group samples split over k workers (Ray Train, NCCL or gloo).

Every worker sees the same batch and draws the same noise for all B·N rows (from a generator
seeded by (seed, step)), then runs the base model only on its contiguous share of N/k samples of
every input. The per-worker averages are all-gathered with autograd and averaged, so the
symmetrized output — and therefore the loss — is exactly the one a single worker computes; after
``backward`` each worker holds k × its own samples' share of the gradient, and averaging the
gradients over workers gives the full gradient. No ray import here: the process group is set up by
whoever starts the workers (``workers.trial``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from workers.symmetry import GroupElement


@dataclass(frozen=True)
class Shard:
    """This worker's place among ``world`` workers sharing one trial."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, samples: int) -> int:
        if samples % self.world:
            raise ValueError(f"symmetrizer samples={samples} cannot be split evenly over trainer.devices="
                             f"{self.world}; allowed: a number of samples divisible by the number of devices")
        return samples // self.world

    def rows(self, batch: int, samples: int, device: torch.device) -> torch.Tensor:
        """Row indices (B·N/k,) of this worker's samples in the input-major B·N layout."""
        share = self.share(samples)
        first = torch.arange(batch, device=device)[:, None] * samples + self.rank * share
        return (first + torch.arange(share, device=device)).reshape(-1)

    def mean(self, local: torch.Tensor) -> torch.Tensor:
        """Average of equal-share partial means over workers, differentiable (autograd all-gather)."""
        if not self.active:
            return local
        import torch.distributed.nn.functional as dist_fn

        return torch.stack(dist_fn.all_gather(local)).mean(dim=0)

    def gather(self, local: torch.Tensor, dim: int) -> torch.Tensor:
        """Concatenate every worker's ``local`` along ``dim`` (no gradient), in rank order."""
        if not self.active:
            return local
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts, dim=dim)

    def average_gradients(self, parameters) -> None:
        if not self.active:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad /= self.world


def take_noise(noise: dict, rows: torch.Tensor) -> dict:
    """The noise of the given rows (tensors and sampled group elements alike)."""
    out = {}
    for name, value in noise.items():
        if isinstance(value, GroupElement):
            out[name] = value.index(rows.to(_element_device(value)))
        else:
            out[name] = value[rows.to(value.device)]
    return out


def _element_device(element: GroupElement) -> torch.device:
    for part in (element.perm, element.rot, element.shift, element.soft, element.weights):
        if part is not None:
            return part.device
    return torch.device("cpu")
