"""Finite groups from their generators: every element (``close``) and the table of products (``product_table``),
both robust to rounding.

An element is a pair (orthogonal matrix (d, d), node permutation (n,)), either part absent; it acts as
act(b·a, x) = act(b, act(a, x)), so the matrix of b·a is M_b M_a and its permutation p_a[p_b]. Two elements
are the same when no entry of their matrices differs by more than ``TOLERANCE`` and their permutations are
equal. Elements are found by a random projection of their entries (sorted, searched) and then compared
entry by entry, so neither a rounding boundary nor the order of products can split one element in two.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import torch

TOLERANCE = 1e-9


def as_tensor(values, dtype: torch.dtype) -> torch.Tensor | None:
    """A tensor from a tensor, nested lists, or a list of tensors (None stays None)."""
    if values is None:
        return None
    if isinstance(values, (list, tuple)) and values and all(torch.is_tensor(v) for v in values):
        values = torch.stack(list(values))
    return values.to(dtype) if torch.is_tensor(values) else torch.as_tensor(values, dtype=dtype)


def check(name: str, mats: torch.Tensor | None, perms: torch.Tensor | None, what: str = "elements") -> None:
    """One-line errors for matrices that are not orthogonal (k, d, d), permutations that are not (k, n)."""
    if mats is None and perms is None:
        raise ValueError(f"group {name!r}: expected matrices and/or node_permutations")
    if mats is not None:
        if mats.dim() != 3 or mats.shape[1] != mats.shape[2] or mats.shape[1] < 1 or not len(mats):
            raise ValueError(f"group {name!r}: matrices of shape {tuple(mats.shape)}; allowed: ({what}, d, d)")
        eye = torch.eye(mats.shape[1], dtype=torch.float64)
        if float((mats.transpose(1, 2) @ mats - eye).abs().max()) > TOLERANCE:
            raise ValueError(f"group {name!r}: a matrix is not orthogonal; allowed: orthogonal matrices (QᵀQ = I)")
    if perms is not None:
        if perms.dim() != 2 or not len(perms) or not torch.equal(perms.sort(1).values,
                                                                  torch.arange(perms.shape[1]).expand_as(perms)):
            raise ValueError(f"group {name!r}: node_permutations must be ({what}, n) permutations of 0..n-1")
    if mats is not None and perms is not None and len(mats) != len(perms):
        raise ValueError(f"group {name!r}: {len(mats)} matrices and {len(perms)} node permutations; allowed: one "
                         "of each per element")


def flat(mats: torch.Tensor | None, perms: torch.Tensor | None) -> torch.Tensor:
    """(k, F) float64: each element's matrix entries, then its permutation."""
    parts = [] if mats is None else [mats.reshape(len(mats), -1)]
    parts += [] if perms is None else [perms.double()]
    return torch.cat(parts, dim=1)


class _Lookup:
    """Elements as flat vectors, found by a random projection key and checked entry by entry."""

    def __init__(self, width: int):
        self.weights = torch.randn(width, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.slack = 10 * TOLERANCE * float(self.weights.abs().sum())  # the most two equal elements' keys differ
        self.vectors: list[torch.Tensor] = []
        self.keys: list[float] = []  # sorted
        self.order: list[int] = []  # the element of each sorted key
        self._tensors: tuple[torch.Tensor, ...] | None = None  # keys, order, vectors as tensors (find_all)

    def find(self, vector: torch.Tensor) -> int | None:
        key = float(vector @ self.weights)
        for index in self.order[bisect_left(self.keys, key - self.slack):bisect_right(self.keys, key + self.slack)]:
            if float((self.vectors[index] - vector).abs().max()) <= TOLERANCE:
                return index
        return None

    def add(self, vector: torch.Tensor) -> int:
        key = float(vector @ self.weights)
        at = bisect_left(self.keys, key)
        self.keys.insert(at, key)
        self.order.insert(at, len(self.vectors))
        self.vectors.append(vector)
        self._tensors = None
        return len(self.vectors) - 1

    def find_all(self, vectors: torch.Tensor) -> torch.Tensor:
        """(Q,) the index of each query (Q, F), −1 where none is equal."""
        if self._tensors is None:
            self._tensors = (torch.tensor(self.keys, dtype=torch.float64), torch.tensor(self.order),
                             torch.stack(self.vectors))
        keys, order, elements = self._tensors
        query = vectors @ self.weights
        low = torch.searchsorted(keys, query - self.slack)
        high = torch.searchsorted(keys, query + self.slack, right=True)
        found = torch.full((len(vectors),), -1, dtype=torch.long)
        for step in range(int((high - low).max()) if len(vectors) else 0):
            where = (low + step).clamp(max=len(keys) - 1)
            candidate = order[where]
            equal = (low + step < high) & ((elements[candidate] - vectors).abs().amax(1) <= TOLERANCE) & (found < 0)
            found[equal] = candidate[equal]
        return found


def close(name: str, mats: torch.Tensor | None, perms: torch.Tensor | None,
          limit: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Every element the generators make, the identity first, breadth first; ValueError above ``limit``."""
    found_m = None if mats is None else [torch.eye(mats.shape[1], dtype=torch.float64)]
    found_p = None if perms is None else [torch.arange(perms.shape[1])]
    lookup = _Lookup(flat(mats, perms).shape[1])
    lookup.add(flat(_stack(found_m), _stack(found_p))[0])
    frontier = [0]
    while frontier:  # every element times every generator, until nothing is new
        newer = []
        for a in frontier:
            for b in range(len(mats if mats is not None else perms)):
                m = None if mats is None else mats[b] @ found_m[a]
                p = None if perms is None else found_p[a][perms[b]]
                vector = flat(None if m is None else m[None], None if p is None else p[None])[0]
                if lookup.find(vector) is not None:
                    continue
                if len(lookup.vectors) >= limit:
                    raise ValueError(f"group {name!r}: its generators make more than limit={limit} elements; "
                                     "allowed: a group of at most limit elements (raise limit)")
                newer.append(lookup.add(vector))
                if m is not None:
                    found_m.append(m)
                if p is not None:
                    found_p.append(p)
        frontier = newer
    return _stack(found_m), _stack(found_p)


def product_table(name: str, mats: torch.Tensor | None, perms: torch.Tensor | None) -> torch.Tensor:
    """(|G|, |G|): the index of a·b, checked (the elements are distinct and closed under products)."""
    lookup = _Lookup(flat(mats, perms).shape[1])
    elements = flat(mats, perms)
    for index, vector in enumerate(elements):
        if lookup.find(vector) is not None:
            raise ValueError(f"group {name!r}: element {index} repeats an earlier one; allowed: distinct elements")
        lookup.add(vector)
    rows, count = [], len(elements)
    chunk = max(1, 2**20 // count)  # products tabled a block of rows at a time
    for start in range(0, count, chunk):
        a = torch.arange(start, min(start + chunk, count))
        m = None if mats is None else (mats[a, None] @ mats[None]).flatten(0, 1)  # M_a M_b, b fastest
        p = None if perms is None else perms[None].expand(len(a), -1, -1).gather(
            2, perms[a, None].expand(-1, count, -1)).flatten(0, 1)  # p_b[p_a]
        rows.append(lookup.find_all(flat(m, p)).view(len(a), count))
    table = torch.cat(rows)
    if bool((table < 0).any()):
        raise ValueError(f"group {name!r}: the elements are not closed under products; allowed: every element of a "
                         "group (FiniteGroup.from_generators closes generators)")
    return table


def _stack(parts: list[torch.Tensor] | None) -> torch.Tensor | None:
    return None if parts is None else torch.stack(parts)
