"""Gram-Schmidt (orthogonality, O(d) equivariance, rank guard), the SO(d) determinant fix, and Haar
sampling of orthogonal matrices."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.symmetry.orthogonal import fix_determinant, gram_schmidt, haar_orthogonal


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def assert_orthogonal(q: torch.Tensor, tolerance: float = 1e-10) -> None:
    eye = torch.eye(q.shape[-1], dtype=q.dtype).expand_as(q)
    assert bool(torch.isfinite(q).all())
    assert max_error(q.transpose(1, 2) @ q, eye) < tolerance
    assert max_error(q @ q.transpose(1, 2), eye) < tolerance


def well_conditioned(rows: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """Gaussian (R, d, d) matrices, redrawn until their condition number is below 1e3."""
    z = torch.randn(rows, dim, dim, generator=gen, dtype=torch.float64)
    while True:
        bad = torch.linalg.cond(z) > 1e3
        if not bool(bad.any()):
            return z
        z[bad] = torch.randn(int(bad.sum()), dim, dim, generator=gen, dtype=torch.float64)


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_gram_schmidt_is_orthogonal_and_keeps_the_flag(dim, seed):
    gen = torch.Generator().manual_seed(seed)
    z = well_conditioned(8, dim, gen)
    q = gram_schmidt(z)
    assert q.shape == z.shape and q.dtype == torch.float64
    assert_orthogonal(q)
    # Gram-Schmidt, not any orthogonalisation: Z = Q R with R upper triangular, positive diagonal
    r = q.transpose(1, 2) @ z
    assert max_error(torch.tril(r, diagonal=-1), torch.zeros_like(r)) < 1e-10
    assert bool((torch.diagonal(r, dim1=1, dim2=2) > 0).all())


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_gram_schmidt_is_orthogonally_equivariant(dim, seed):
    """GS(R Z) = R GS(Z) for every R in O(d), reflections included."""
    gen = torch.Generator().manual_seed(seed)
    z = well_conditioned(8, dim, gen)
    rot = haar_orthogonal(8, dim, special=False, generator=gen, dtype=torch.float64)
    assert max_error(gram_schmidt(rot @ z), rot @ gram_schmidt(z)) < 1e-10


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_fix_determinant_gives_special_orthogonal_and_is_equivariant(dim, seed):
    gen = torch.Generator().manual_seed(seed)
    q = gram_schmidt(well_conditioned(8, dim, gen))
    fixed = fix_determinant(q)
    assert_orthogonal(fixed)
    assert torch.allclose(torch.linalg.det(fixed), torch.ones(8, dtype=torch.float64), atol=1e-10)
    positive = torch.linalg.det(q) > 0
    assert torch.equal(fixed[positive], q[positive])  # already in SO(d): untouched
    assert torch.equal(fixed[~positive][:, :, 1:], q[~positive][:, :, 1:])  # only the first column flips
    rot = haar_orthogonal(8, dim, special=True, generator=gen, dtype=torch.float64)
    assert max_error(fix_determinant(rot @ q), rot @ fix_determinant(q)) < 1e-10
    # ...but not O(d) equivariant: a reflection R flips the first column of R·fix(Q)
    reflection = torch.diag(torch.tensor([-1.0] + [1.0] * (dim - 1), dtype=torch.float64)).expand(8, -1, -1)
    assert max_error(fix_determinant(reflection @ q), reflection @ fix_determinant(q)) > 0.1


@pytest.mark.parametrize("dim", [2, 3, 4, 6])
def test_rank_guard_returns_an_orthogonal_matrix(dim):
    gen = torch.Generator().manual_seed(41)
    z = torch.randn(5, dim, dim, generator=gen, dtype=torch.float64)
    z[0, :, 1] = z[0, :, 0]  # two equal columns
    z[1, :, dim - 1] = 0.0  # a zero column
    z[2] = 0.0  # nothing at all
    z[3, :, 1] = -3.0 * z[3, :, 0]  # parallel columns
    q = gram_schmidt(z)
    assert_orthogonal(q)
    assert max_error(q[0, :, 0], z[0, :, 0] / z[0, :, 0].norm()) < 1e-12  # the leading column survives
    # a full-rank row in the same batch is not disturbed by its degenerate neighbours
    assert max_error(q[4], gram_schmidt(z[4:5])[0]) < 1e-14


def test_rank_guard_threshold_is_relative_to_the_column_scale():
    """A tiny but independent input is orthonormalised as usual, not sent to the fallback."""
    gen = torch.Generator().manual_seed(42)
    z = well_conditioned(4, 3, gen)
    assert max_error(gram_schmidt(1e-8 * z), gram_schmidt(z)) < 1e-10


@pytest.mark.parametrize("special", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_haar_orthogonal_shape_dtype_and_determinism(special, dtype):
    for dim in (2, 3, 5):
        q = haar_orthogonal(7, dim, special, torch.Generator().manual_seed(43), dtype)
        assert q.shape == (7, dim, dim) and q.dtype == dtype and q.device.type == "cpu"
        assert_orthogonal(q.double(), 1e-5 if dtype == torch.float32 else 1e-12)
        det = torch.linalg.det(q.double())
        if special:
            assert torch.allclose(det, torch.ones_like(det), atol=1e-5)
        again = haar_orthogonal(7, dim, special, torch.Generator().manual_seed(43), dtype)
        assert torch.equal(q, again)
    both = haar_orthogonal(2_000, 3, special, torch.Generator().manual_seed(44), torch.float64)
    det = torch.linalg.det(both)
    fraction_reflections = float((det < 0).double().mean())
    assert fraction_reflections == 0.0 if special else 0.45 < fraction_reflections < 0.55
