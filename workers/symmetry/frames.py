"""Frame averaging (Puny et al. 2022): g drawn uniformly from an equivariant frame F(x).

- S_n on graphs: nodes ordered lexicographically by the leading non-trivial eigenvectors of the
  graph Laplacian; each eigenvector's sign is fixed by its third moment and then flipped by the
  frame's sign choice; ties (e.g. automorphic nodes) are broken uniformly at random, so the frame
  holds every ordering consistent with the eigenvector keys.
- O(d)/SO(d)/E(d)/SE(d) on point sets: PCA axes of the centred points, each sign fixed by the
  third moment of the projections, times one of the 2^d sign choices; SO(d) keeps det = +1 by
  flipping the first axis.
- S_n × those: the rotation frame above, then nodes ordered by their coordinates in that frame.
Sample-wise equivariance ``F(h·x, h·ε) = h·F(x, ε)`` holds for inputs with a simple spectrum and
non-zero third moments (generic inputs); the frame as a set is equivariant in general.
"""

from __future__ import annotations

import torch

from workers.symmetry import permutations
from workers.symmetry.distributions import Distribution, _node_count
from workers.symmetry.groups import Group, GroupElement
from workers.symmetry.orthogonal import fix_determinant

_KEY_DECIMALS = 6  # keys equal to this many decimals are ties


class FrameAveraging(Distribution):
    """FA for S_n (needs a ``pair`` adjacency field), O/SO/E/SE(d) and their products with S_n
    (need a ``point`` field): the frames of ``ProductGroup.frames``. ``eigenvectors`` is the number of
    Laplacian eigenvectors in the key."""

    def __init__(self, group: Group, adjacency_field: str | None = None, point_field: str | None = None,
                 eigenvectors: int = 2):
        super().__init__(group)
        if group.finite is not None:
            raise ValueError(f"symmetrizer.method='fa' has no frame for group {group.name}; frames exist for S_n on "
                             "graphs and O/SO/E/SE(d) (and S_n x those) on point sets")
        if group.has_matrix and point_field is None:
            raise ValueError(f"symmetrizer.method='fa' over {group.name} needs an input of kind 'point'")
        if not group.has_matrix and adjacency_field is None:
            raise ValueError(f"symmetrizer.method='fa' over {group.name} needs an input of kind 'pair' (an adjacency)")
        self.adjacency_field = adjacency_field
        self.point_field = point_field
        self.eigenvectors = int(eigenvectors)
        self.noise_kinds = {"signs": "index"}
        if group.permutations:
            self.noise_kinds["tiebreak"] = "node"

    def draw_noise(self, inputs, mask, rows, generator=None):
        like = next(v for v in inputs.values() if v.is_floating_point())
        count = self.group.dim if self.group.has_matrix else self.eigenvectors
        signs = torch.randint(0, 2, (rows, count), generator=generator).to(like) * 2 - 1
        noise = {"signs": signs}
        if self.group.permutations:
            noise["tiebreak"] = torch.rand(rows, _node_count(inputs, mask), generator=generator).to(like)
        return noise

    def forward(self, inputs, noise, mask, repeats=1):
        """The frame's eigendecompositions depend on the input alone: they run once per block of
        ``repeats`` rows (one input, different noise) and are shared by the block."""
        element = GroupElement()
        once = _first_of_blocks(len(noise["signs"]), mask, repeats)
        if self.group.has_matrix:
            points = inputs[self.point_field]  # (R, n, d), centred
            axes = _pca_axes(points[::repeats], once).repeat_interleave(repeats, 0)
            axes = axes * noise["signs"].to(points.dtype)[:, None, :]
            element.rot = fix_determinant(axes) if self.group.special else axes
            if self.group.permutations:
                keys = torch.einsum("rnd,rdk->rnk", points.double(), element.rot.double())  # frame coordinates
                element.perm = _lexicographic_permutation(keys, noise["tiebreak"], mask)
        else:
            adjacency = inputs[self.adjacency_field][..., 0]  # (R, n, n)
            keys = _laplacian_keys(adjacency[::repeats], once, self.eigenvectors).repeat_interleave(repeats, 0)
            keys = keys * noise["signs"].double()[:, None, :]
            element.perm = _lexicographic_permutation(keys, noise["tiebreak"], mask)
        return element, {}


def _first_of_blocks(rows: int, mask: torch.Tensor | None, repeats: int) -> torch.Tensor | None:
    """The mask of each block's first row (the rows are blocks of ``repeats`` copies of one input)."""
    if repeats < 1 or rows % repeats:
        raise ValueError(f"{rows} rows cannot be blocks of repeats={repeats} copies of one input")
    return None if mask is None else mask[::repeats]


def _third_moment_signs(projections: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Signs (R, k) making Σ_i p_ik³ ≥ 0 over real nodes."""
    cubes = projections.pow(3)
    if mask is not None:
        cubes = cubes * mask[..., None].to(cubes.dtype)
    return torch.where(cubes.sum(dim=1) < 0, -1.0, 1.0).to(projections.dtype)


def _pca_axes(points: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Principal axes (R, d, d) as columns, ascending variance, third-moment signs."""
    dtype, points = points.dtype, points.detach().double()  # frames are computed in float64
    weights = torch.ones(points.shape[:2], dtype=points.dtype, device=points.device) if mask is None \
        else mask.double()
    centred = points * weights[..., None]
    covariance = torch.einsum("rni,rnj->rij", centred, centred)
    _, axes = torch.linalg.eigh(covariance)
    signs = _third_moment_signs(torch.einsum("rnd,rdk->rnk", centred, axes), mask)
    return (axes * signs[:, None, :]).to(dtype)


def _laplacian_keys(adjacency: torch.Tensor, mask: torch.Tensor | None, count: int) -> torch.Tensor:
    """Per-node keys (R, n, k): the k eigenvectors after the first of L = D − A (real nodes)."""
    adjacency = adjacency.double()
    laplacian = torch.diag_embed(adjacency.sum(dim=2)) - adjacency
    if mask is not None:  # push padded nodes' eigenvalues past every real one
        laplacian = laplacian + torch.diag_embed((~mask).double() * 1e6)
    _, vectors = torch.linalg.eigh(laplacian)
    keys = vectors[:, :, 1 : 1 + count]
    keys = keys * _third_moment_signs(keys, mask)[:, None, :]
    if keys.shape[2] < count:  # tiny graphs: pad with constant keys
        keys = torch.cat([keys, keys.new_zeros(*keys.shape[:2], count - keys.shape[2])], dim=2)
    return keys


def _lexicographic_permutation(keys: torch.Tensor, tiebreak: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The permutation (index form) that lists nodes in lexicographic order of rounded keys (R, n, k),
    ties ordered by ``tiebreak`` (R, n), padded nodes last."""
    keys = torch.round(keys.double(), decimals=_KEY_DECIMALS)
    order = torch.argsort(permutations.masked_scores(tiebreak.double(), mask), dim=1, stable=True)
    for column in reversed(range(keys.shape[2])):
        key = keys[:, :, column]
        if mask is not None:
            key = key.masked_fill(~mask, float("inf"))
        order = order.gather(1, torch.argsort(key.gather(1, order), dim=1, stable=True))
    return permutations.invert(order)
