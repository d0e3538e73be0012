"""Rotating and reflecting images (R, H, W, C) about their centre by 2×2 orthogonal matrices.

Coordinates: pixel (row r, column c) sits at x = c − (W−1)/2, y = (H−1)/2 − r (y up), and
``(g·img)(u) = img(Q⁻¹u)``. Matrices whose entries are all 0 or ±1 (multiples of 90°, with or
without reflection) move pixel centres onto pixel centres and are applied exactly, by indexing,
on square images. Every other angle is interpolated bilinearly (zeros outside the image): those
actions are only approximately equivariant, and composing two of them is not exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def is_exact(rot: torch.Tensor) -> torch.Tensor:
    """(R,) True where the matrix is a signed permutation (a multiple of 90°, maybe reflected)."""
    return ((rot - rot.round()).abs() < 1e-6).flatten(1).all(dim=1)


def transform(image: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """g·image for images (R, H, W, C) and matrices (R, 2, 2)."""
    rows, height, width, _ = image.shape
    exact = is_exact(rot) & (height == width)
    out = torch.empty_like(image)
    if bool(exact.any()):
        out[exact] = _exact(image[exact], rot[exact])
    if bool((~exact).any()):
        out[~exact] = _bilinear(image[~exact], rot[~exact])
    return out


def _centred_grid(height: int, width: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(H, W, 2) centred (x, y) coordinates of the pixel centres."""
    ys = (height - 1) / 2 - torch.arange(height, dtype=dtype, device=device)
    xs = torch.arange(width, dtype=dtype, device=device) - (width - 1) / 2
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def _exact(image: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    rows, height, width, channels = image.shape
    grid = _centred_grid(height, width, torch.float64, image.device)  # (H, W, 2)
    source = torch.einsum("rji,hwj->rhwi", rot.double(), grid)  # Q⁻¹u = Qᵀu
    cols = (source[..., 0] + (width - 1) / 2).round().long()
    rws = ((height - 1) / 2 - source[..., 1]).round().long()
    flat = (rws * width + cols).view(rows, -1, 1).expand(-1, -1, channels)
    return image.reshape(rows, -1, channels).gather(1, flat).view_as(image)


def _bilinear(image: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    rows, height, width, _ = image.shape
    grid = _centred_grid(height, width, image.dtype, image.device)
    source = torch.einsum("rji,hwj->rhwi", rot.to(image.dtype), grid)
    # grid_sample wants (x, y) normalised to [-1, 1] with y pointing down (align_corners=False)
    normalised = torch.stack([source[..., 0] * 2 / width, -source[..., 1] * 2 / height], dim=-1)
    sampled = F.grid_sample(image.permute(0, 3, 1, 2), normalised, mode="bilinear",
                            padding_mode="zeros", align_corners=False)
    return sampled.permute(0, 2, 3, 1)
