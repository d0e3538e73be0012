"""Graph separation: counting pairs of graphs that no randomly initialised model tells apart.

The PS paper's separation metric: for every random seed a freshly initialised model embeds every
graph; a pair (i, j) is *separated* in a seed when the L1 distance of its embeddings exceeds a
threshold; the score is the number of pairs that no seed separates (lower is better).

The control (issue 27, item 7): the 1e-3 rule cannot tell separation from sampling noise, since a sampled
symmetrization (PS, GA, FA) embeds one graph differently on every call. Every graph is therefore also embedded as
an isomorphic copy (its real nodes relabelled by a random permutation, ``relabelled``); an invariant measure never
separates a graph from its copy. ``SeparationTask.control`` reports how many copies the 1e-3 rule separates
(``isomorphic_separated``), the largest copy distance, and the task's counts again with each seed's threshold
raised to the largest distance between a graph and its copy in that seed (``calibrated_thresholds``): a pair
then counts as separated only when its distance exceeds everything the seed's own noise produced on isomorphic
graphs.
``SeparationTask`` is the shared base of the tasks scored this way (GRAPH8c, EXP).
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterator, Mapping, Sequence

import torch

from workers.reporting import ISOMORPHIC_DISTANCE, ISOMORPHIC_SEPARATED, MAX, MIN, calibrated
from workers.tasks.base import Task

THRESHOLD = 1e-3  # L1 distance above which a pair counts as separated
BLOCK_ELEMENTS = 1 << 24  # bounds the working memory of the all-pairs count (floats per chunk)
DENSE_SHARE = 0.25  # all pairs are compared block by block when the first seed's filter keeps more than this share


def separation_count(
    embeddings: Sequence[torch.Tensor],
    pairs: torch.Tensor | None = None,
    threshold: float | Sequence[float] = THRESHOLD,
    block_elements: int = BLOCK_ELEMENTS,
) -> int:
    """Number of pairs that no embedding separates (L1 distance > ``threshold``).

    ``embeddings``: one (G, D) tensor per seed, rows in the same graph order.
    ``threshold``: one distance for every seed, or one per seed (the calibrated count).
    ``pairs``: (P, 2) graph indices, or ``None`` for all G·(G−1)/2 pairs, done in chunks of about
    ``block_elements`` floats that carry forward only the pairs not yet separated.
    Embeddings must be finite: a model that outputs NaN or inf cannot be scored.
    """
    if len(embeddings) == 0:
        raise ValueError("separation_count needs at least one embedding (one per seed)")
    thresholds = _per_seed(threshold, len(embeddings))
    tensors = [torch.as_tensor(emb).detach() for emb in embeddings]
    tensors = [emb.to(torch.promote_types(emb.dtype, torch.float32)) for emb in tensors]  # ints: float32
    shape = tensors[0].shape
    if len(shape) != 2 or shape[1] == 0 or any(emb.shape != shape for emb in tensors):
        raise ValueError(
            f"embeddings must all have one shape (G, D), D >= 1; got {[tuple(e.shape) for e in tensors]}"
        )
    for seed, emb in enumerate(tensors):
        if not bool(torch.isfinite(emb).all()):
            raise ValueError(f"embeddings[{seed}] contains NaN or inf; cannot count separated pairs")
    if pairs is None:
        return _count_all_pairs(tensors, thresholds, block_elements)
    pairs = torch.as_tensor(pairs, dtype=torch.long, device=tensors[0].device)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (P, 2); got {tuple(pairs.shape)}")
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= shape[0]):
        raise ValueError(f"pairs index graphs outside 0..{shape[0] - 1}")
    return int(_surviving(tensors, pairs[:, 0], pairs[:, 1], thresholds)[0].numel())


def _per_seed(threshold: float | Sequence[float], seeds: int) -> list[float]:
    """``threshold`` as one float per seed, each a finite distance >= 0."""
    values = [threshold] * seeds if isinstance(threshold, (int, float)) else list(threshold)
    if len(values) != seeds:
        raise ValueError(f"threshold has {len(values)} values for {seeds} embeddings; expected one per seed")
    for value in values:
        if not (isinstance(value, (int, float)) and 0 <= value < float("inf")):
            raise ValueError(f"threshold={value!r} is not allowed; expected a distance >= 0")
    return [float(value) for value in values]


def _unseparated(first: torch.Tensor, second: torch.Tensor, threshold: float) -> torch.Tensor:
    """Row-wise: is the L1 distance of ``first`` and ``second`` (K, D) not above the threshold?"""
    return (first - second).abs().sum(dim=-1) <= threshold  # (K,)


def _surviving(
    embeddings: Sequence[torch.Tensor], left: torch.Tensor, right: torch.Tensor, thresholds: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs (left[k], right[k]) that none of ``embeddings`` separates (seed s at ``thresholds[s]``)."""
    for emb, threshold in zip(embeddings, thresholds):
        if left.numel() == 0:
            break
        keep = _unseparated(emb[left], emb[right], threshold)
        left, right = left[keep], right[keep]
    return left, right


def _close_in_projection(
    projection: torch.Tensor, reach: float, budget: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Chunks of index pairs (i, j), i != j, with |projection[i] − projection[j]| <= reach, each pair
    once; a chunk holds about ``budget`` pairs (at least all partners of one index)."""
    size = projection.numel()
    values, order = torch.sort(projection)
    ends = torch.searchsorted(values, values + reach, right=True)  # (U,) first sorted index out of reach
    partners = (ends - torch.arange(size) - 1).clamp(min=0)  # (U,) later sorted indices within reach
    total = torch.cumsum(partners, dim=0)  # (U,)
    start = 0
    while start < size:
        done = int(total[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(total, done + budget, right=True)))
        per_row = partners[start:stop]  # (rows,)
        left = torch.repeat_interleave(torch.arange(start, stop), per_row)  # (K,) sorted positions
        first = torch.repeat_interleave(torch.cumsum(per_row, dim=0) - per_row, per_row)  # (K,)
        right = left + 1 + torch.arange(left.numel()) - first  # (K,)
        yield order[left], order[right]
        start = stop


def _count_all_pairs(embeddings: list[torch.Tensor], thresholds: Sequence[float], block_elements: int) -> int:
    """All pairs. Graphs embedded identically in every seed are merged (their pairs are never
    separated) and weighted by multiplicity; of the others, only pairs whose first-seed embeddings
    are close along a fixed random direction w, |w_k| <= 1, are checked: |w·(a − b)| <= |a − b|_1."""
    seeds, dim = len(embeddings), embeddings[0].shape[1]
    flat = torch.cat(embeddings, dim=1)  # (G, S*D)
    unique, weights = torch.unique(flat, dim=0, return_counts=True)  # (U, S*D), (U,)
    distinct = unique.view(len(unique), seeds, dim).unbind(dim=1)  # S x (U, D)
    count = int((weights * (weights - 1) // 2).sum())
    generator = torch.Generator().manual_seed(0)
    direction = 1 - 2 * torch.rand(dim, generator=generator, dtype=torch.float64)
    direction /= direction.abs().max()  # (D,) generic, so that discrete embeddings rarely tie
    projection = distinct[0].double().cpu() @ direction  # (U,) float64: rounding << the slack
    reach, size = thresholds[0] * (1 + 1e-4), len(projection)
    values = torch.sort(projection).values
    candidates = int((torch.searchsorted(values, values + reach, right=True) - torch.arange(size) - 1).sum())
    if candidates > DENSE_SHARE * size * (size - 1) / 2:  # the filter keeps most pairs (a threshold at the noise)
        return count + _count_dense(distinct, weights, thresholds, block_elements)
    budget = max(1, block_elements // max(1, dim))
    device = distinct[0].device
    for left, right in _close_in_projection(projection, reach, budget):
        left, right = _surviving(distinct, left.to(device), right.to(device), thresholds)
        count += int((weights[left] * weights[right]).sum())
    return count


def _count_dense(embeddings: Sequence[torch.Tensor], weights: torch.Tensor, thresholds: Sequence[float],
                 block_elements: int) -> int:
    """Weighted pairs i < j of the (U, D) ``embeddings`` that no seed separates, a block of rows against every
    later row at a time (about ``block_elements`` floats): no index lists, for thresholds at which most pairs
    are candidates."""
    size, dim = embeddings[0].shape
    rows = max(1, block_elements // max(1, size * dim))
    index = torch.arange(size, device=weights.device)
    count = 0
    for start in range(0, size - 1, rows):
        stop = min(size - 1, start + rows)
        alive = index[None, start + 1:] > index[start:stop, None]  # (b, U - start - 1) j > i
        for emb, threshold in zip(embeddings, thresholds):
            if not bool(alive.any()):
                break
            alive &= (emb[start:stop, None, :] - emb[None, start + 1:, :]).abs().sum(dim=-1) <= threshold
        count += int((weights[start:stop, None] * weights[None, start + 1:])[alive].sum())
    return count


def relabelled(split: Mapping[str, torch.Tensor], input_kinds: Mapping[str, str],
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A copy of ``split`` whose graphs are isomorphic to the originals: in each graph the real nodes (``mask``;
    all nodes without one) trade places by a uniform random permutation drawn from ``generator``, padding slots
    stay where they are. ``node``/``point``/``vector`` inputs are permuted along their node axis, ``pair``
    inputs along both; other fields (``y``, ``mask``) are kept."""
    kinds = {name: input_kinds[name] for name in input_kinds if name in split}
    first = split[next(iter(kinds))]
    graphs, size = int(first.shape[0]), int(first.shape[1])
    mask = split.get("mask", torch.ones(graphs, size, dtype=torch.bool)).bool()  # (G, n)
    keys = torch.rand(graphs, size, generator=generator, dtype=torch.float64)  # (G, n)
    keys = keys.masked_fill(~mask, float("inf"))
    shuffled = torch.argsort(keys, dim=1, stable=True)  # (G, n) the real nodes in random order, then padding
    slots = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (G, n) real slots in order, then padding
    order = torch.empty_like(shuffled).scatter_(1, slots, shuffled)  # (G, n) slot p now holds node order[p]
    rows = torch.arange(graphs)[:, None]  # (G, 1)
    out = dict(split)
    for name, kind in kinds.items():
        value = split[name]
        if kind == "pair":
            out[name] = value[rows[:, :, None], order[:, :, None], order[:, None, :]]
        elif kind in ("node", "point", "vector"):
            out[name] = value[rows, order]
        else:
            raise ValueError(f"input {name!r} of kind {kind!r} has no nodes to relabel; the separation control "
                             "relabels node, point, vector and pair inputs")
    return out


def copy_distances(embeddings: Sequence[torch.Tensor], copies: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per seed, the (G,) L1 distances between each graph's embedding and its isomorphic copy's."""
    if len(embeddings) != len(copies) or any(e.shape != c.shape for e, c in zip(embeddings, copies)):
        raise ValueError("copies must hold one embedding per seed, each of its graphs' shape")
    return [(e.double() - c.double()).abs().sum(dim=-1) for e, c in zip(embeddings, copies)]


def calibrated_thresholds(distances: Sequence[torch.Tensor]) -> list[float]:
    """Per seed, the threshold of the calibrated count: the largest isomorphic-copy distance of that seed, and
    never below ``THRESHOLD`` (so the calibrated count never separates a pair the 1e-3 rule leaves)."""
    return [max(THRESHOLD, float(d.max()) if d.numel() else 0.0) for d in distances]


class SeparationTask(Task):
    """A task evaluated at initialisation by how many graph pairs its embeddings separate."""

    target_kind: ClassVar[str] = "invariant"
    metric: ClassVar[str] = "unseparated_pairs"
    mode: ClassVar[str] = MIN
    other_metrics: ClassVar[Mapping[str, str]] = {"separated_fraction": MAX}
    trainable: ClassVar[bool] = False
    evaluation_splits: ClassVar[tuple[str, ...]] = ("test",)  # the graphs every seed embeds

    embedding_size: ClassVar[int] = 10  # the PS paper's separation MLPs end in 10 units

    def output_shape(self) -> tuple[int, ...]:
        return (self.embedding_size,)

    def pairs(self, size: int) -> torch.Tensor | None:
        """The (P, 2) graph pairs that count, for a split of ``size`` graphs; ``None``: all pairs."""
        return None

    def loss(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError(
            f"task '{self.name}' is not trainable (it is scored at initialisation with "
            "separation_count over seeds); it has no training loss"
        )

    def score(self, embeddings: Sequence[torch.Tensor],
              threshold: float | Sequence[float] = THRESHOLD) -> dict[str, float]:
        """The pairs that no (G, D) embedding of ``embeddings`` (one per seed, same graph order) separates, and
        the share of the pairs that count that some seed separates (at ``threshold``: one, or one per seed)."""
        size = int(embeddings[0].shape[0])
        pairs = self.pairs(size)
        total = size * (size - 1) // 2 if pairs is None else int(pairs.shape[0])
        unseparated = separation_count(embeddings, pairs, threshold)
        return {
            "unseparated_pairs": float(unseparated),
            "separated_fraction": 1.0 - unseparated / total if total else 1.0,
        }

    def control(self, embeddings: Sequence[torch.Tensor], copies: Sequence[torch.Tensor]) -> dict[str, float]:
        """The isomorphic control of ``score`` (``copies``: the embeddings of each graph's relabelled copy, one
        (G, D) per seed): ``isomorphic_separated`` (graphs whose copy some seed separates at ``THRESHOLD``),
        ``isomorphic_distance_max`` (the largest copy distance over graphs and seeds) and every metric of
        ``score`` again as ``<m>_calibrated``, each seed at its ``calibrated_thresholds``."""
        distances = copy_distances(embeddings, copies)
        separated = torch.stack([d > THRESHOLD for d in distances]).any(dim=0)  # (G,)
        counts = self.score(embeddings, calibrated_thresholds(distances))
        return {
            ISOMORPHIC_SEPARATED: float(separated.sum()),
            ISOMORPHIC_DISTANCE: max((float(d.max()) for d in distances if d.numel()), default=0.0),
            **{calibrated(name): value for name, value in counts.items()},
        }

    def metrics(self, pred: torch.Tensor, batch: Mapping[str, Any]) -> dict[str, float]:
        """One seed's score (``score`` of its embedding alone)."""
        return self.score([pred])
