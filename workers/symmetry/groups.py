"""Symmetry groups, batches of their elements, and how they act on each kind of tensor.

Every group here is a product of up to three parts: node permutations (S_n), a matrix group
(O(d), SO(d), or the finite planar groups C_k, D_k), and translations (E(d), SE(d)). A batch of R
elements is a ``GroupElement``; ``Group.act`` applies it to a batch of R tensors of a given kind:

- ``node``      (R, n, ...)        rows permuted
- ``pair``      (R, n, n, ...)     both node axes permuted
- ``point``     (R, n, ..., d)     rows permuted, last axis rotated, translated
- ``vector``    (R, n, ..., d)     rows permuted, last axis rotated (velocities, displacements)
- ``image``     (R, H, W, C)       rotated/reflected about the centre (2-D matrix groups)
- ``invariant`` anything           untouched
Noise kinds used by distributions: ``group`` (a stacked element, acted on by left
multiplication), ``regular`` (R, |G|) noise over a finite group's elements, ``index`` (untouched).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch
from torch.autograd.function import once_differentiable

from workers.symmetry import images, orthogonal, permutations

NODE_KINDS = ("node", "pair", "point", "vector")  # kinds whose first axis (pair: first two) indexes nodes
DATA_KINDS = (*NODE_KINDS, "image", "invariant")


@dataclass
class GroupElement:
    """R group elements. ``perm`` (R, n) long, ``soft`` (R, n, n) relaxed P̂ for straight-through
    gradients, ``rot`` (R, d, d), ``shift`` (R, d), ``weights`` (R, |G|) relaxed one-hot over a
    finite group's elements for straight-through gradients; a part is None when not used."""

    perm: torch.Tensor | None = None
    soft: torch.Tensor | None = None
    rot: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def __len__(self) -> int:
        part = next(t for t in (self.perm, self.rot, self.shift) if t is not None)
        return int(part.shape[0])

    def detach(self) -> "GroupElement":
        return GroupElement(self.perm, None, None if self.rot is None else self.rot.detach(),
                            None if self.shift is None else self.shift.detach())

    def index(self, rows: torch.Tensor | slice) -> "GroupElement":
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return GroupElement(pick(self.perm), pick(self.soft), pick(self.rot), pick(self.shift),
                            pick(self.weights))


_NAME = re.compile(r"^(?:(S_n)(?:$|[x×](?=S?[OE]\()))?(?:(O|SO|E|SE)\((\d+|d)\)|(C|D)_?(\d+|k))?$")  # no spaces


class Group:
    """A product of optional S_n, a matrix group and translations (see the module docstring).

    ``Group.parse("S_n x SE(d)", dim=3)``, ``Group.parse("C_k", order=4)``, ``Group.parse("D8")``.
    """

    def __init__(self, permutations: bool = False, dim: int | None = None, special: bool = False,
                 translations: bool = False, finite: tuple[str, int] | None = None):
        if finite is not None and dim not in (None, 2):
            raise ValueError(f"group.dim={dim} is not allowed for {finite[0]}_{finite[1]}; allowed: 2")
        self.permutations = permutations
        self.dim = 2 if finite is not None else dim
        self.special = special
        self.translations = translations
        self.finite = finite
        self.reads: frozenset[str] = frozenset()  # the keys of the group section the name left open (dim, order)
        self._elements = _finite_elements(*finite) if finite is not None else None
        if self._elements is not None:
            self._table = _product_table(self._elements)  # (|G|, |G|): index of a·b
            self._inverse = _inverse_index(self._table)  # (|G|,): index of a⁻¹

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def parse(cls, name: str, dim: int | None = None, order: int | None = None) -> "Group":
        """Build a group from its name; ``d``/``k`` in the name are taken from ``dim``/``order``."""
        match = _NAME.match(name.replace(" ", ""))
        if not name or match is None:
            raise ValueError(
                f"group.name={name!r} is not a group; allowed: S_n, O(d), SO(d), E(d), SE(d), "
                "S_n x O(d), S_n x SO(d), S_n x E(d), S_n x SE(d), C_k, D_k")
        sym, matrix, mdim, finite, forder = match.groups()
        if matrix is not None:
            value = dim if mdim == "d" else int(mdim)
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise ValueError(f"group.dim={value!r} is not allowed for {name}; expected an integer ≥ 2")
            if dim is not None and mdim != "d" and dim != value:
                raise ValueError(f"group.dim={dim} contradicts group.name={name!r}")
            return cls(bool(sym), value, matrix in ("SO", "SE"), matrix in ("E", "SE"))._reading(mdim == "d", "dim")
        if finite is not None:
            value = order if forder == "k" else int(forder)
            if sym or not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"group.order={value!r} is not allowed for {name}; expected an integer ≥ 1")
            return cls(finite=(finite, value))._reading(forder == "k", "order")
        return cls(permutations=True)

    def _reading(self, reads: bool, key: str) -> "Group":
        self.reads = frozenset({key}) if reads else frozenset()
        return self

    @property
    def name(self) -> str:
        if self.finite is not None:
            return f"{self.finite[0]}_{self.finite[1]}"
        parts = ["S_n"] if self.permutations else []
        if self.dim is not None:
            parts.append(f"{'S' if self.special else ''}{'E' if self.translations else 'O'}({self.dim})")
        return " x ".join(parts)

    def __repr__(self) -> str:
        return f"Group({self.name!r})"

    @property
    def has_matrix(self) -> bool:
        return self.dim is not None

    @property
    def elements(self) -> torch.Tensor:
        """Matrices (|G|, 2, 2) of a finite group, in a fixed order."""
        if self._elements is None:
            raise ValueError(f"{self.name} is not a finite group")
        return self._elements

    # -- sampling and algebra -------------------------------------------------------------------
    def sample(self, rows: int, size: int | None = None, mask: torch.Tensor | None = None,
               generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu", translation_scale: float = 1.0) -> GroupElement:
        """Uniform (Haar) samples. Translations, which have no Haar probability measure, are drawn
        from N(0, translation_scale²); use them for testing, not for averaging."""
        element = GroupElement()
        if self.permutations:
            if size is None:
                raise ValueError(f"sampling {self.name} needs the number of nodes")
            element.perm = permutations.uniform_permutation(rows, size, mask, generator, device)
        if self.finite is not None:
            choice = torch.randint(len(self.elements), (rows,), generator=generator)
            element.rot = self.elements[choice].to(dtype=dtype, device=device)
        elif self.dim is not None:
            element.rot = orthogonal.haar_orthogonal(rows, self.dim, self.special, generator, dtype, device)
        if self.translations:
            shift = torch.randn(rows, self.dim, generator=generator, dtype=torch.float64)
            element.shift = (translation_scale * shift).to(dtype=dtype, device=device)
        return element

    def identity(self, rows: int, size: int | None = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> GroupElement:
        element = GroupElement()
        if self.permutations:
            element.perm = torch.arange(size, device=device).expand(rows, -1).clone()
        if self.dim is not None:
            element.rot = torch.eye(self.dim, dtype=dtype, device=device).expand(rows, -1, -1).clone()
        if self.translations:
            element.shift = torch.zeros(rows, self.dim, dtype=dtype, device=device)
        return element

    def inverse(self, g: GroupElement) -> GroupElement:
        out = GroupElement()
        if g.perm is not None:
            out.perm = permutations.invert(g.perm)
            out.soft = None if g.soft is None else g.soft.transpose(1, 2)
        if g.rot is not None:
            out.rot = g.rot.transpose(1, 2)
        if g.weights is not None:  # weight of M_j moves to M_j⁻¹ (inverse is an involution)
            out.weights = g.weights[:, self._inverse.to(g.weights.device)]
        if g.shift is not None:
            out.shift = -torch.einsum("rji,rj->ri", g.rot, g.shift)
        return out

    def compose(self, g: GroupElement, h: GroupElement) -> GroupElement:
        """The element gh, acting as ``act(gh, x) = act(g, act(h, x))``."""
        out = GroupElement()
        if g.perm is not None:
            out.perm = h.perm.gather(1, g.perm)
            if g.soft is not None or h.soft is not None:
                dtype = (g.soft if g.soft is not None else h.soft).dtype
                out.soft = _matrix(g, dtype) @ _matrix(h, dtype)
        if g.rot is not None:
            out.rot = g.rot @ h.rot
        if g.shift is not None or h.shift is not None:  # a missing shift is the zero shift
            moved = 0 if h.shift is None else torch.einsum("rij,rj->ri", g.rot, h.shift)
            out.shift = moved + (0 if g.shift is None else g.shift)
        return out

    def finite_index(self, g: GroupElement) -> torch.Tensor:
        """Index (R,) of each element's matrix in ``elements`` (finite groups)."""
        distance = (g.rot[:, None] - self.elements.to(g.rot)[None]).abs().flatten(2).amax(2)
        return distance.argmin(dim=1)

    # -- actions --------------------------------------------------------------------------------
    def act(self, g: GroupElement, x: torch.Tensor, kind: str, mask: torch.Tensor | None = None) -> torch.Tensor:
        """g·x for a batch (R, ...) of tensors of ``kind``; ``mask`` (R, n) keeps padded rows zero."""
        if kind in ("invariant", "index"):
            return x
        if kind == "group":
            raise ValueError("act on a 'group' noise field with Group.compose")
        if kind == "regular":
            return self._act_regular(g, x)
        if kind == "image":
            if g.rot is None or self.dim != 2:
                raise ValueError(f"{self.name} does not act on images; image groups: C_k, D_k, O(2), SO(2)")
            return self._straight_through(g, images.transform(x, g.rot), x, kind)
        if kind not in NODE_KINDS:
            raise ValueError(f"unknown tensor kind {kind!r}; allowed: {', '.join(DATA_KINDS)}")
        if g.perm is not None:
            x = _permute(x, g, pair=(kind == "pair"))
        if kind in ("point", "vector") and g.rot is not None:
            x = self._straight_through(g, torch.einsum("rij,r...j->r...i", g.rot.to(x.dtype), x), x, kind)
        if kind == "point" and g.shift is not None:
            x = x + g.shift.to(x.dtype).view(g.shift.shape[0], *([1] * (x.dim() - 2)), -1)
            if mask is not None:
                x = x * self.act(g, mask, "node").view(*mask.shape, *([1] * (x.dim() - 2))).to(x.dtype)
        return x

    def _straight_through(self, g: GroupElement, hard: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
        """For finite-group PS: the value of the hard action, the gradient of Σ_j w_j (M_j·x)."""
        if g.weights is None or not x.is_floating_point() or not torch.is_grad_enabled() or not g.weights.requires_grad:
            return hard
        rows, count = g.weights.shape
        mats = self.elements.to(x).repeat(rows, 1, 1)  # (R·|G|, 2, 2)
        expanded = x.detach().repeat_interleave(count, dim=0)
        if kind == "image":
            moved = images.transform(expanded, mats)
        else:
            moved = torch.einsum("rij,r...j->r...i", mats, expanded)
        moved = moved.view(rows, count, *x.shape[1:])
        soft = (g.weights.to(x.dtype).view(rows, count, *([1] * (x.dim() - 1))) * moved).sum(1)
        return hard + (soft - soft.detach())

    def _act_regular(self, g: GroupElement, noise: torch.Tensor) -> torch.Tensor:
        """(g·ε)_h = ε_{g⁻¹h} for noise (R, |G|) over a finite group's elements."""
        g_inverse = self._inverse[self.finite_index(g)]  # (R,)
        source = self._table[g_inverse]  # (R, |G|): index of g⁻¹h for each h
        return noise.gather(1, source.to(noise.device))


def _matrix(g: GroupElement, dtype: torch.dtype) -> torch.Tensor:
    return g.soft if g.soft is not None else permutations.one_hot(g.perm, dtype)


def _permute(x: torch.Tensor, g: GroupElement, pair: bool) -> torch.Tensor:
    """Index the node axis (and the second one for pairs); straight-through through P̂ if set."""
    perm = g.perm.to(x.device)
    if g.soft is None or not x.is_floating_point() or not torch.is_grad_enabled() or not g.soft.requires_grad:
        return permute_nodes(x, perm, pair)
    return _StraightThrough.apply(x, g.soft, perm, pair)


def permute_nodes(x: torch.Tensor, perm: torch.Tensor, pair: bool = False) -> torch.Tensor:
    """``(g·x)[i] = x[perm[i]]`` along axis 1 of x (R, n, ...), and ``[i, j] = x[perm[i], perm[j]]``
    along axes 1 and 2 for pairs (R, n, n, ...), by indexing: one ``gather`` per node axis (a single
    flat index is within ±20 %, products with one-hot matrices up to 37× slower;
    benchmarks/permutations.py)."""
    rows = perm.view(*perm.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    out = x.gather(1, rows)
    if pair:
        cols = perm.view(perm.shape[0], 1, perm.shape[1], *([1] * (x.dim() - 3)))
        out = out.gather(2, cols.expand(-1, x.shape[1], -1, *x.shape[3:]))
    return out


class _StraightThrough(torch.autograd.Function):
    """``g·x`` by indexing, with the straight-through gradient of a relaxed P̂ (R, n, n).

    The value is the hard permutation; the gradient is that of ``hard + (P̂x − (P̂x).detach())``
    (node kinds; ``P̂ A P̂ᵀ`` for pairs, differentiated at P̂ = P: ``dP̂ (A Pᵀ) + (P A) dP̂ᵀ``): x gets
    the gradient of the indexing, P̂ the derivative of P̂x. P̂x itself is never computed: the
    forward costs one index, the backward one batched product per term."""

    @staticmethod
    def forward(ctx, x, soft, perm, pair):  # noqa: D102 (see the class)
        ctx.pair, ctx.soft_dtype = pair, soft.dtype
        ctx.save_for_backward(x, perm)
        return permute_nodes(x, perm, pair)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # noqa: D102
        x, perm = ctx.saved_tensors
        grad_x = grad_soft = None
        if ctx.needs_input_grad[0]:
            grad_x = permute_nodes(grad, permutations.invert(perm), ctx.pair)
        if ctx.needs_input_grad[1]:
            rows, size = perm.shape
            if ctx.pair:
                grad = grad.reshape(rows, size, size, -1)  # (R, n, n, C)
                right = permute_nodes(x, perm).reshape(rows, size, size, -1)  # P A: rows permuted
                left = permute_nodes(x.transpose(1, 2), perm).transpose(1, 2).reshape(rows, size, size, -1)  # A Pᵀ
                grad_soft = torch.einsum("rijc,rkjc->rik", grad, left) + torch.einsum("rijc,rikc->rjk", grad, right)
            else:
                grad, x = grad.reshape(rows, size, -1), x.reshape(rows, size, -1)  # (R, n, C)
                if grad.shape[2] == 1:  # an outer product: cheaper as a broadcast than as a product
                    grad_soft = grad * x.transpose(1, 2)
                else:
                    grad_soft = torch.einsum("ric,rkc->rik", grad, x)
            grad_soft = grad_soft.to(ctx.soft_dtype)
        return grad_x, grad_soft, None, None


def _finite_elements(family: str, order: int) -> torch.Tensor:
    """C_k: rotations by 2πj/k; D_k: those followed by the reflection y -> -y. Entries that are
    exactly 0 or ±1 (multiples of 90°) are stored exactly so those actions are exact."""
    angles = torch.arange(order, dtype=torch.float64) * (2 * math.pi / order)
    mats = orthogonal.rotation_2d(angles)
    mats = torch.where((mats - mats.round()).abs() < 1e-12, mats.round(), mats)
    if family == "D":
        flip = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
        mats = torch.cat([mats, mats @ flip])
    return mats


def _product_table(elements: torch.Tensor) -> torch.Tensor:
    products = torch.einsum("aij,bjk->abik", elements.double(), elements.double())
    distance = (products[:, :, None] - elements.double()[None, None]).abs().flatten(3).amax(3)
    return distance.argmin(dim=2)


def _inverse_index(table: torch.Tensor) -> torch.Tensor:
    identity = int(table[0, 0])  # element 0 is the identity (angle 0, no flip)
    return (table == identity).int().argmax(dim=1)


def with_soft(g: GroupElement, soft: torch.Tensor | None) -> GroupElement:
    """A copy of g carrying a relaxed permutation for straight-through gradients."""
    return replace(g, soft=soft)
