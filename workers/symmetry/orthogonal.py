"""Orthogonal matrices: Haar sampling, Gram-Schmidt with a rank guard, the SO(d) determinant fix."""

from __future__ import annotations

import torch


def gram_schmidt(vectors: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Orthonormalise the columns of ``vectors`` (R, d, d) in order; O(d) equivariant.

    Equivariance: ``gram_schmidt(Q @ Z) == Q @ gram_schmidt(Z)`` for orthogonal Q, because it only
    uses inner products and linear combinations of the columns. Rank guard: a column whose
    residual is shorter than ``eps`` times the column scale is replaced by the residual of the
    next standard basis vector that is not, so the result is always orthogonal (equivariance is
    then lost for that degenerate input, as it must be).
    """
    rows, dim, count = vectors.shape
    assert dim == count, f"gram_schmidt expects square (R, d, d) inputs, got {tuple(vectors.shape)}"
    scale = vectors.norm(dim=1).amax(dim=1, keepdim=True).clamp_min(1e-30)  # (R, 1)
    columns: list[torch.Tensor] = []
    eye = torch.eye(dim, dtype=vectors.dtype, device=vectors.device)
    for k in range(dim):
        residual = _residual(vectors[:, :, k], columns)  # (R, d)
        norm = residual.norm(dim=1, keepdim=True)
        degenerate = norm < eps * scale
        if bool(degenerate.any()):
            fallback = _first_independent(columns, eye, rows)
            residual = torch.where(degenerate, fallback, residual)
            norm = residual.norm(dim=1, keepdim=True)
        columns.append(residual / norm)
    return torch.stack(columns, dim=2)


def _residual(vector: torch.Tensor, basis: list[torch.Tensor]) -> torch.Tensor:
    for column in basis:
        vector = vector - (vector * column).sum(dim=1, keepdim=True) * column
    return vector


def _first_independent(basis: list[torch.Tensor], eye: torch.Tensor, rows: int) -> torch.Tensor:
    """For each row, the residual of the standard basis vector that leaves the longest residual."""
    candidates = torch.stack([_residual(eye[j].expand(rows, -1), basis) for j in range(eye.shape[0])], 1)
    best = candidates.norm(dim=2).argmax(dim=1)  # (R,)
    return candidates[torch.arange(rows), best]


def fix_determinant(matrices: torch.Tensor) -> torch.Tensor:
    """Multiply the first column by det(Q) so that det = +1; SO(d) equivariant."""
    det = torch.linalg.det(matrices)  # (R,)
    sign = torch.where(det < 0, -1.0, 1.0).to(matrices.dtype)
    return torch.cat([matrices[:, :, :1] * sign[:, None, None], matrices[:, :, 1:]], dim=2)


def haar_orthogonal(
    rows: int, dim: int, special: bool, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Haar-distributed O(d) (or SO(d) with ``special``) matrices, (R, d, d).

    QR of a Gaussian matrix with the signs of R's diagonal moved into Q (Mezzadri 2007).
    """
    gaussian = torch.randn(rows, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    signs = torch.sign(torch.diagonal(r, dim1=1, dim2=2))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    q = q * signs[:, None, :]
    if special:
        q = fix_determinant(q)
    return q.to(dtype=dtype, device=device)


def rotation_2d(angles: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation matrices (R, 2, 2) for angles (R,) in radians."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
