"""S_n, O(d), SO(d), E(d), SE(d) and S_n × those: ``ProductGroup``, a product of up to three parts (node
permutations, an orthogonal matrix group, translations), and the family of their ``group.name`` spellings.

PS: the interface returns ``{"scores": (R, n)}`` for S_n (hard argsort; straight-through gradient through a
Sinkhorn-relaxed P̂), ``{"vectors": (R, d, d)}`` for O(d)/SO(d) (Gram-Schmidt; determinant fix for SO(d)),
both for products. FA: Laplacian frames for S_n on graphs, PCA frames on point sets (``frames.py``).
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from workers.symmetry import orthogonal, permutations
from workers.symmetry.frames import FrameAveraging
from workers.symmetry.groups import Group, GroupElement, GroupFamily

_NAME = re.compile(r"^(?:(S_n)(?:$|[x×](?=S?[OE]\()))?(?:(O|SO|E|SE)\((\d+|d)\))?$")  # no spaces


class ProductGroup(Group):
    """An optional S_n, an optional O(d)/SO(d) and optional translations (E(d), SE(d))."""

    def __init__(self, permutations: bool = False, dim: int | None = None, special: bool = False,
                 translations: bool = False):
        self.permutations, self.dim, self.special, self.translations = permutations, dim, special, translations
        self.reads = frozenset()
        self.ps_noise = "vector" if dim is not None else "node"  # S_n × O(d): scores from the vector interface
        self.relaxation = frozenset({"temperature", "sinkhorn_iters"}) if permutations else frozenset()
        self.entropy_penalty = permutations

    @property
    def name(self) -> str:
        parts = ["S_n"] if self.permutations else []
        if self.dim is not None:
            parts.append(f"{'S' if self.special else ''}{'E' if self.translations else 'O'}({self.dim})")
        return " x ".join(parts)

    def sample(self, rows, size=None, mask=None, generator=None, dtype=torch.float32, device="cpu",
               translation_scale=1.0) -> GroupElement:
        """Uniform (Haar) samples. Translations, which have no Haar probability measure, are drawn
        from N(0, translation_scale²); use them for testing, not for averaging."""
        element = GroupElement()
        if self.permutations:
            if size is None:
                raise ValueError(f"sampling {self.name} needs the number of nodes")
            element.perm = permutations.uniform_permutation(rows, size, mask, generator, device)
        if self.dim is not None:
            element.rot = orthogonal.haar_orthogonal(rows, self.dim, self.special, generator, dtype, device)
        if self.translations:
            shift = torch.randn(rows, self.dim, generator=generator, dtype=torch.float64)
            element.shift = (translation_scale * shift).to(dtype=dtype, device=device)
        return element

    def from_features(self, features, mask, relax, temperature, sinkhorn_iters):
        element, aux = GroupElement(), {}
        if self.permutations:
            scores = features["scores"]  # (R, n)
            element.perm = permutations.argsort_permutation(scores, mask)
            if relax and scores.requires_grad:
                element.soft = permutations.sinkhorn_permutation(scores, mask, temperature, sinkhorn_iters)
                aux["entropy"] = permutations.permutation_entropy_penalty(element.soft, mask)
        if self.dim is not None:
            vectors = features["vectors"]  # (R, d, d); orthogonalised in float64 for accuracy
            rot = orthogonal.gram_schmidt(vectors.double()).to(vectors.dtype)
            element.rot = orthogonal.fix_determinant(rot) if self.special else rot
        return element, aux

    def frames(self, input_kinds: Mapping[str, str]) -> FrameAveraging:
        """Frames from the first adjacency (``pair``) and the first ``point`` input."""
        first = lambda kind: next((name for name, k in input_kinds.items() if k == kind), None)  # noqa: E731
        return FrameAveraging(self, adjacency_field=first("pair"), point_field=first("point"))


class ProductFamily(GroupFamily):
    """``S_n``, ``O(d)``, ``SO(3)``, ``S_n x SE(d)``, ...: ``d`` is read from ``group.dim``."""

    spellings = ("S_n", "O(d)", "SO(d)", "E(d)", "SE(d)", "S_n x O(d)", "S_n x SO(d)", "S_n x E(d)", "S_n x SE(d)")
    keys = ("dim",)

    def matches(self, name: str) -> bool:
        squashed = name.replace(" ", "")
        return bool(squashed) and _NAME.match(squashed) is not None

    def build(self, name: str, dim: int | None = None, **keys) -> ProductGroup:
        sym, matrix, mdim = _NAME.match(name.replace(" ", "")).groups()
        if matrix is None:
            return ProductGroup(permutations=True)
        value = dim if mdim == "d" else int(mdim)
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise ValueError(f"group.dim={value!r} is not allowed for {name}; expected an integer ≥ 2")
        if dim is not None and mdim != "d" and dim != value:
            raise ValueError(f"group.dim={dim} contradicts group.name={name!r}")
        group = ProductGroup(bool(sym), value, matrix in ("SO", "SE"), matrix in ("E", "SE"))
        group.reads = frozenset({"dim"}) if mdim == "d" else frozenset()
        return group

