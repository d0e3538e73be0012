"""Symmetry groups: what every group is and does (``Group``), batches of elements, their action on each
kind of tensor, and the registry of ``group.name`` spellings that ``Group.parse`` reads.

A batch of R elements is a ``GroupElement`` of up to three parts, acting as x ↦ P·(Q x + t): a node
permutation P, an orthogonal matrix Q on the last axis of coordinates (and on 2-D images), a translation t of
points. ``Group.act`` applies a batch to a batch of R tensors of a kind:

- ``node``      (R, n, ...)        rows permuted
- ``pair``      (R, n, n, ...)     both node axes permuted
- ``point``     (R, n, ..., d)     rows permuted, last axis rotated, translated
- ``vector``    (R, n, ..., d)     rows permuted, last axis rotated (velocities, displacements)
- ``image``     (R, H, W, C)       rotated/reflected about the centre (2-D matrix groups)
- ``invariant`` anything           untouched
Noise kinds used by distributions: ``group`` (a stacked element, acted on by left multiplication),
``regular`` (R, |G|) noise over a finite group's elements, ``index`` (untouched).

The groups: ``ProductGroup`` (``product.py``: S_n, O(d), SO(d), E(d), SE(d) and S_n × those) and
``FiniteGroup`` (``finite.py``: a finite group given by its elements or generators; C_k and D_k). Code
outside this package asks a group its facts (``permutes_nodes``, ``dim``, ``translations``, ``finite``,
``kinds``, ``ps_noise``, ``relaxation``, ``reads``, ``misfit``) and never compares its name. A new group
subclasses ``Group`` (or is a ``FiniteGroup``) and gets a name with ``register_group``.
"""

from __future__ import annotations

import inspect
from typing import Callable, Mapping

import torch

from workers.symmetry import images, permutations
from workers.symmetry.elements import GroupElement, matrix_of, permute, with_soft
from workers.symmetry.permutations import permute_nodes

NODE_KINDS = ("node", "pair", "point", "vector")  # kinds whose first axis (pair: first two) indexes nodes
DATA_KINDS = (*NODE_KINDS, "image", "invariant")
__all__ = ["DATA_KINDS", "NODE_KINDS", "Group", "GroupElement", "GroupFamily", "build_group", "group_keys",
           "group_spellings", "parse_group", "permute_nodes", "register_group", "spelled", "unregister_group",
           "with_soft"]


class Group:
    """What every group is (its facts) and does (sample, multiply, invert, act).

    The facts are what the rest of symsweep asks instead of the name: the factory's fit checks, the
    interface choice, ``unused_keys``, the demo. The algebra and the actions here serve every group whose
    elements are (P, Q, t) triples; ``sample`` is each group's own, and so are ``from_features`` (PS) and
    ``frames`` (FA) where the group has them. ``Group.parse("S_n x SE(d)", dim=3)``, ``Group.parse("C_k",
    order=4)``, ``Group.parse("D8")``.
    """

    name: str = "a group"
    reads: frozenset[str] = frozenset()  # group.* keys besides name it read (dim, order): its spelling left them open
    permutations: bool = False  # contains every permutation of the nodes, S_n (uniform sampling, argsort PS, frames)
    dim: int | None = None  # dimension d of its matrix part; None: it has none
    special: bool = False  # its matrices have determinant +1
    translations: bool = False  # it translates points (E(d), SE(d))
    finite: int | None = None  # |G| of a finite group whose elements are listed (``FiniteGroup``); None otherwise
    ps_noise: str | None = None  # the kind of noise its PS interface reads: node, vector, regular; None: no PS
    relaxation: frozenset[str] = frozenset()  # options of its PS relaxation (temperature, sinkhorn_iters)
    entropy_penalty: bool = False  # its PS relaxation returns an entropy penalty (weighted by entropy_weight)

    # -- facts -------------------------------------------------------------------------------------------
    @classmethod
    def parse(cls, name: str, dim: int | None = None, order: int | None = None, **keys) -> "Group":
        """The group ``name`` spells (any registered family); ``d``/``k`` in the name come from ``dim``/``order``."""
        return parse_group(name, dim=dim, order=order, **keys)

    def __repr__(self) -> str:
        return f"Group({self.name!r})"

    @property
    def permutes_nodes(self) -> bool:
        """Whether its elements permute node slots (S_n, or a finite group of node permutations)."""
        return self.permutations

    @property
    def has_matrix(self) -> bool:
        return self.dim is not None

    @property
    def kinds(self) -> frozenset[str]:
        """The data kinds it moves (every other kind is invariant): node kinds when it permutes nodes,
        coordinates when it has a matrix part, images when that part is 2-D and nothing else moves."""
        kinds = set(NODE_KINDS) if self.permutes_nodes else set()
        if self.dim is not None:
            kinds |= {"point", "vector"}
            if self.dim == 2 and not self.permutes_nodes and not self.translations:
                kinds.add("image")
        return frozenset(kinds)

    def misfit(self, input_kinds: Mapping[str, str], target_kind: str, nodes: int | None = None) -> str | None:
        """Why the group cannot act on inputs of these kinds, with ``nodes`` node slots, and a target of
        ``target_kind`` (None: it can). The dimension of coordinates is the caller's check (``dim``)."""
        present = set(input_kinds.values())
        if self.permutes_nodes and not present & set(NODE_KINDS):
            return f"{self.name} permutes nodes and the task has no node-indexed input"
        if self.dim is not None:
            if "image" in present:
                if "image" not in self.kinds:
                    return (f"{self.name} does not act on images (rotations and reflections of the plane do, "
                            "without node permutations or translations)")
            elif not present & {"point", "vector"}:
                return "the group acts on coordinates and the task has no input of kind 'point' or 'vector'"
        if self.translations and "point" not in present:
            return "translations need an input of kind 'point'"
        if target_kind in ("point", "vector") and target_kind not in self.kinds:
            return "the group does not act on the task's coordinates"
        return None

    # -- methods that need more than the algebra ---------------------------------------------------------
    def from_features(self, features: Mapping[str, torch.Tensor], mask: torch.Tensor | None, relax: bool,
                      temperature: float, sinkhorn_iters: int) -> tuple[GroupElement, dict]:
        """The elements named by a PS interface's features (PS paper §2.2 post-processing), and extra
        outputs (``entropy``); ``relax`` asks for the straight-through relaxation (training)."""
        raise ValueError(f"symmetrizer.method='ps' has no post-processing for group {self.name}; allowed: ga")

    def frames(self, input_kinds: Mapping[str, str]) -> torch.nn.Module:
        """The frame-averaging ``Distribution`` (``distributions.py``) over inputs of ``input_kinds``."""
        raise ValueError(f"symmetrizer.method='fa' has no frame for group {self.name}; frames exist for S_n on "
                         "graphs and O/SO/E/SE(d) (and S_n x those) on point sets")

    # -- sampling and algebra ----------------------------------------------------------------------------
    def sample(self, rows: int, size: int | None = None, mask: torch.Tensor | None = None,
               generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu", translation_scale: float = 1.0) -> GroupElement:
        """``rows`` random elements, uniform (Haar) where the group has a uniform law; ``size`` is the number
        of node slots, ``mask`` (R, n) the real ones."""
        raise NotImplementedError(f"{type(self).__name__} does not sample")

    def identity(self, rows: int, size: int | None = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> GroupElement:
        element = GroupElement()
        if self.permutes_nodes:
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
                out.soft = matrix_of(g, dtype) @ matrix_of(h, dtype)
        if g.rot is not None:
            out.rot = g.rot @ h.rot
        if g.shift is not None or h.shift is not None:  # a missing shift is the zero shift
            moved = 0 if h.shift is None else torch.einsum("rij,rj->ri", g.rot, h.shift)
            out.shift = moved + (0 if g.shift is None else g.shift)
        return out

    # -- actions -----------------------------------------------------------------------------------------
    def act(self, g: GroupElement, x: torch.Tensor, kind: str, mask: torch.Tensor | None = None) -> torch.Tensor:
        """g·x for a batch (R, ...) of tensors of ``kind``; ``mask`` (R, n) keeps padded rows zero."""
        if kind in ("invariant", "index"):
            return x
        if kind == "group":
            raise ValueError("act on a 'group' noise field with Group.compose")
        if kind == "regular":
            raise ValueError(f"{self.name} has no regular representation: it is not a finite group with listed "
                             "elements")
        if kind == "image":
            if g.rot is None or "image" not in self.kinds:
                raise ValueError(f"{self.name} does not act on images; image groups: 2-D matrix groups without node "
                                 "permutations or translations (C_k, D_k, O(2), SO(2))")
            return images.transform(x, g.rot)
        if kind not in NODE_KINDS:
            raise ValueError(f"unknown tensor kind {kind!r}; allowed: {', '.join(DATA_KINDS)}")
        if g.perm is not None:
            x = permute(x, g, pair=(kind == "pair"))
        if kind in ("point", "vector") and g.rot is not None:
            x = torch.einsum("rij,r...j->r...i", g.rot.to(x.dtype), x)
        if kind == "point" and g.shift is not None:
            x = x + g.shift.to(x.dtype).view(g.shift.shape[0], *([1] * (x.dim() - 2)), -1)
            if mask is not None:
                x = x * self.act(g, mask, "node").view(*mask.shape, *([1] * (x.dim() - 2))).to(x.dtype)
        return x


# -- the registry of group names --------------------------------------------------------------------------
class GroupFamily:
    """A family of ``group.name`` spellings and how to build each group (``C_k``: C_1, C_2, ...).

    ``spellings`` are shown in errors and listings (``O(d)``, ``C_k``); ``keys`` are the ``group.*`` keys
    besides ``name`` that its groups may read (``dim``, ``order``); ``matches(name)`` says whether the family
    spells ``name`` and ``build(name, **keys)`` builds it (raising ValueError naming the key on a bad value)."""

    spellings: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def matches(self, name: str) -> bool:
        raise NotImplementedError

    def build(self, name: str, **keys) -> Group:
        raise NotImplementedError


class _Named(GroupFamily):
    """One spelling, built by a function of the ``group.*`` keys it names (``build(order)``)."""

    def __init__(self, spelling: str, build: Callable[..., Group] | Group):
        self.spellings, self.function = (spelling,), build
        if isinstance(build, Group):
            self.keys = ()
        else:
            kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            self.keys = tuple(n for n, p in inspect.signature(build).parameters.items() if p.kind in kinds)

    def matches(self, name: str) -> bool:
        return _squash(name) == _squash(self.spellings[0])

    def build(self, name: str, **keys) -> Group:
        if isinstance(self.function, Group):
            return self.function
        group = self.function(**{key: keys[key] for key in self.keys if keys.get(key) is not None})
        if not isinstance(group, Group):
            raise TypeError(f"the group {name!r} was built as {type(group).__name__}; expected a Group")
        group.reads = frozenset(self.keys)
        return group


_FAMILIES: list[GroupFamily] = []


def _squash(name: str) -> str:
    return name.replace(" ", "")


def register_group(family: GroupFamily | str, build: Callable[..., Group] | Group | None = None) -> GroupFamily:
    """Make ``group.name`` spell a new group: ``register_group("Q_8", build)`` with a ``Group`` or a function of
    the ``group.*`` keys it reads (``build(order)``, ``build(dim)``), or ``register_group(family)`` with a
    ``GroupFamily``. A spelling that a registered family already claims is refused. Returns the family (for
    ``unregister_group``). Call it at import of your module; ``SYMSWEEP_PLUGINS`` imports it in every trial."""
    if not isinstance(family, GroupFamily):
        if build is None or not isinstance(family, str) or not family:
            raise ValueError(f"register_group({family!r}): expected a non-empty name and a Group or a function "
                             "building one, or a GroupFamily")
        family = _Named(family, build)
    for spelling in family.spellings:
        taken = next((other for other in _FAMILIES if other.matches(spelling)), None)
        if taken is not None:
            raise ValueError(f"group.name={spelling!r} is already a group ({', '.join(taken.spellings)}); allowed: a "
                             "name no registered group spells")
    _FAMILIES.append(family)
    return family


def unregister_group(family: GroupFamily) -> None:
    """Forget a family registered with ``register_group`` (tests register for their own duration)."""
    _FAMILIES.remove(family)


def group_spellings() -> tuple[str, ...]:
    """Every registered spelling, in registration order (the built-in ones first)."""
    return tuple(spelling for family in _FAMILIES for spelling in family.spellings)


def group_keys() -> tuple[str, ...]:
    """Every ``group.*`` key besides ``name`` that some registered group may read."""
    keys: list[str] = []
    for family in _FAMILIES:
        keys += [key for key in family.keys if key not in keys]
    return tuple(keys)


def build_group(spelling: str, build: Callable[..., Group] | Group, **keys) -> tuple[Group, tuple[str, ...]]:
    """(the group ``build`` makes, the ``group.*`` keys it reads) without registering it: a ``Group`` as it is, a
    function called with the keys its signature names (those that are not None), as ``register_group`` would."""
    family = _Named(spelling, build)
    return family.build(spelling, **keys), family.keys


def spelled(name: str) -> bool:
    """Whether a registered family spells ``name`` (``D8``, ``S_n x E(d)``)."""
    return isinstance(name, str) and any(family.matches(name) for family in _FAMILIES)


def parse_group(name: str, **keys) -> Group:
    """The group ``name`` spells, built from the ``group.*`` ``keys`` (dim, order, ...) its family reads."""
    family = next((f for f in _FAMILIES if f.matches(name)), None) if isinstance(name, str) and name else None
    if family is None:
        raise ValueError(f"group.name={name!r} is not a group; allowed: {', '.join(group_spellings())}")
    return family.build(name, **keys)
