"""PATTERN: find a planted subgraph in SBM graphs by node classification (benchmarking-gnns).

The construction follows the benchmarking-gnns generator (``generate_SBM_PATTERN``, "v2"):

- ``patterns`` (default 100) pattern graphs, each with U{5..34} nodes, edges with probability
  0.5, and fixed node features uniform over a vocabulary of 3;
- every graph: 5 SBM communities of U{5..34} nodes, edge probability 0.5 inside a community and
  0.35 between communities, node features uniform over the vocabulary; then one pattern is added,
  each pattern node joined to each community node with probability 0.5; then the nodes are
  randomly permuted. Label 1 marks the pattern's nodes (about 17% of all nodes).
- each split is cut into ``patterns`` contiguous blocks of graphs sharing one pattern (the paper's
  100/20/20 graphs per pattern at the default sizes); all splits share the patterns.

Sizes: 30..204 nodes are possible (42..189 in the published set, mean ≈ 118). A graph that
would exceed ``max_nodes`` gets its community sizes redrawn (at the paper's padding of 188 this
touches ≈0.006% of graphs), so every graph fits the padding. Independent random streams for the
patterns and for each split make the validation and test sets independent of ``train_size``.

Storage: each graph's padded (max_nodes × max_nodes) adjacency is stored with its rows packed into
bits (4.5 kB per graph, 63 MB for the full set; storing only one triangle halves that but unpacks
~5x slower, and every trial pays the unpacking). ``to_splits`` unpacks it into a dense *bool*
tensor (14,000 × 188 × 188 × 1 = 0.5 GB); models cast each batch to float
(``batch["adj"].float()``), never the whole split.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from workers.tasks.base import SPLITS, Task, require

COMMUNITIES = 5
SIZE_RANGE = (5, 35)  # community and pattern sizes: U{5..34} (numpy's exclusive upper bound)
P_INSIDE, Q_BETWEEN, Q_PATTERN, P_PATTERN = 0.5, 0.35, 0.5, 0.5
VOCABULARY = 3
PATTERN, PAD = COMMUNITIES, COMMUNITIES + 1  # slot codes next to community ids 0..4
CHUNK = 256  # graphs generated or unpacked at once: bounds temporary memory at ~40 MB


def _pair_probability() -> np.ndarray:
    """(7, 7) edge probability between slot codes; pattern-pattern pairs come from the pattern."""
    table = np.full((PAD + 1, PAD + 1), Q_BETWEEN, dtype=np.float32)
    np.fill_diagonal(table, P_INSIDE)
    table[PATTERN, :], table[:, PATTERN] = Q_PATTERN, Q_PATTERN
    table[PATTERN, PATTERN] = 0.0
    table[PAD, :], table[:, PAD] = 0.0, 0.0
    return table


def _draw_patterns(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pattern sizes (P,), lower-triangle edge bits (P, 561) and node features (P, 34)."""
    largest = SIZE_RANGE[1] - 1
    sizes = rng.integers(*SIZE_RANGE, size=count)
    rows, cols = np.tril_indices(largest, -1)
    inside = rows[None, :] < sizes[:, None]  # both ends inside the pattern (cols < rows)
    edges = (rng.random((count, rows.size)) < P_PATTERN) & inside
    features = rng.integers(VOCABULARY, size=(count, largest)).astype(np.uint8)
    return sizes, edges, features


def _slot_codes(rng: np.random.Generator, pattern_size: np.ndarray, max_nodes: int) -> np.ndarray:
    """(B, N) int8 code per slot before shuffling: pattern (first), communities 0..4, padding."""
    batch, slots = pattern_size.size, np.arange(max_nodes)
    communities = rng.integers(*SIZE_RANGE, size=(batch, COMMUNITIES))
    while (too_big := communities.sum(1) + pattern_size > max_nodes).any():
        communities[too_big] = rng.integers(*SIZE_RANGE, size=(int(too_big.sum()), COMMUNITIES))
    ends = pattern_size[:, None] + np.cumsum(communities, 1)  # (B, 5) end slot of each community
    community = (slots[None, :, None] >= ends[:, None, :]).sum(-1)  # (B, N) 0..4, 5 past the end
    code = np.where(community == COMMUNITIES, PAD, community).astype(np.int8)
    code[slots[None, :] < pattern_size[:, None]] = PATTERN
    return code


def _draw_graphs(
    rng: np.random.Generator, pattern_ids: np.ndarray, patterns: tuple, max_nodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjacency rows packed into bits (G, N, ⌈N/8⌉), features (G, N) uint8, labels (G, N) int8."""
    pattern_sizes, pattern_edges, pattern_features = patterns
    rows, cols = np.tril_indices(max_nodes, -1)  # pair t = (rows[t], cols[t]), cols < rows
    table = _pair_probability().ravel()
    largest = pattern_features.shape[1]
    bits, features, labels = [], [], []
    for start in range(0, pattern_ids.size, CHUNK):
        pid = pattern_ids[start : start + CHUNK]
        code = _slot_codes(rng, pattern_sizes[pid], max_nodes)  # (B, N)
        probability = table[code[:, rows] * (PAD + 1) + code[:, cols]]  # (B, T)
        edges = rng.random(probability.shape, dtype=np.float32) < probability
        edges[:, : pattern_edges.shape[1]] |= pattern_edges[pid]  # the first 34 slots' pairs lead

        feature = rng.integers(VOCABULARY, size=code.shape).astype(np.uint8)
        in_pattern = code[:, :largest] == PATTERN
        feature[:, :largest] = np.where(in_pattern, pattern_features[pid], feature[:, :largest])
        label = np.where(code == PAD, -1, code == PATTERN).astype(np.int8)

        # random relabelling of the real nodes; padding stays at the end
        shuffle_keys = rng.random(code.shape)
        shuffle_keys[code == PAD] = 2.0
        order = np.argsort(shuffle_keys, axis=1)  # order[b, new] = old
        new_index = np.argsort(order, axis=1)  # new_index[b, old] = new
        graph, pair = np.nonzero(edges)
        ends = new_index[graph, rows[pair]], new_index[graph, cols[pair]]
        shuffled = np.zeros(code.shape + (max_nodes,), dtype=bool)  # (B, N, N)
        shuffled[graph, ends[0], ends[1]] = True
        shuffled[graph, ends[1], ends[0]] = True

        bits.append(np.packbits(shuffled, axis=-1))
        features.append(np.take_along_axis(feature, order, 1))
        labels.append(np.take_along_axis(label, order, 1))
    return np.concatenate(bits), np.concatenate(features), np.concatenate(labels)


def unpack_adjacency(bits: np.ndarray) -> torch.Tensor:
    """Adjacency rows packed into bits (G, N, ⌈N/8⌉) -> dense bool adjacency (G, N, N, 1)."""
    graphs, nodes = bits.shape[:2]
    dense = np.empty((graphs, nodes, nodes), dtype=bool)
    for start in range(0, graphs, CHUNK):  # chunks that stay in cache are several times faster
        dense[start : start + CHUNK] = np.unpackbits(bits[start : start + CHUNK], axis=-1, count=nodes).view(bool)
    return torch.from_numpy(dense).unsqueeze(-1)


class Pattern(Task):
    """Binary node classification: which nodes belong to the planted pattern."""

    name: ClassVar[str] = "pattern"
    version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {
        "seed": 0,
        "train_size": 10_000,
        "val_size": 2_000,
        "test_size": 2_000,
        "patterns": 100,
        "max_nodes": 188,
        "class_weighted": True,  # loss weighted inversely by class frequency, as in the paper
    }
    input_kinds: ClassVar[dict[str, str]] = {"adj": "pair", "x": "node"}
    target_kind: ClassVar[str] = "node"
    metric: ClassVar[str] = "accuracy"
    mode: ClassVar[str] = "max"

    def validate(self) -> None:
        params = self.params
        require(type(params["seed"]) is int and params["seed"] >= 0, "seed", params["seed"], "an integer >= 0")
        for key in ("train_size", "val_size", "test_size", "patterns"):
            value = params[key]
            require(type(value) is int and value >= 1, key, value, "an integer >= 1")
        value = params["max_nodes"]
        require(type(value) is int and 100 <= value <= 256, "max_nodes", value,
                "an integer in [100, 256] (graphs have up to 204 nodes; 188 in the paper)")
        value = params["class_weighted"]
        require(isinstance(value, bool), "class_weighted", value, "true or false")

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        nodes = self.params["max_nodes"]
        return {"adj": (nodes, nodes, 1), "x": (nodes, VOCABULARY)}

    def output_shape(self) -> tuple[int, ...]:
        return (self.params["max_nodes"], 2)  # logits: not in the pattern / in the pattern

    def generator_params(self) -> dict[str, Any]:
        return {key: value for key, value in self.params.items() if key != "class_weighted"}

    def generate(self) -> dict[str, np.ndarray]:
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(self.params["seed"]).spawn(4)]
        count = self.params["patterns"]
        patterns = _draw_patterns(streams[0], count)
        arrays: dict[str, np.ndarray] = {}
        for split, rng in zip(SPLITS, streams[1:]):
            size = self.params[f"{split}_size"]
            pattern_ids = np.arange(size) * count // size  # contiguous blocks per pattern
            bits, features, labels = _draw_graphs(rng, pattern_ids, patterns, self.params["max_nodes"])
            arrays.update({f"{split}/adj_bits": bits, f"{split}/features": features, f"{split}/labels": labels})
        return arrays

    def to_splits(self, arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, torch.Tensor]]:
        splits = {}
        for split in SPLITS:
            labels = torch.from_numpy(arrays[f"{split}/labels"].astype(np.int64))  # (G, N)
            mask = labels >= 0
            features = torch.from_numpy(arrays[f"{split}/features"].astype(np.int64))
            splits[split] = {
                "adj": unpack_adjacency(arrays[f"{split}/adj_bits"]),  # (G, N, N, 1)
                "x": F.one_hot(features, VOCABULARY).float() * mask.unsqueeze(-1),  # (G, N, 3)
                "mask": mask,  # (G, N)
                "y": labels,  # (G, N), -1 on padding
            }
        return splits

    def loss(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy over real nodes; pred (B, N, 2) logits."""
        mask = batch["mask"]
        logits, target = pred[mask], batch["y"][mask]  # (V, 2), (V,)
        weight = None
        if self.params["class_weighted"]:  # benchmarking-gnns: weight_c = 1 - share of class c
            counts = torch.bincount(target, minlength=2).to(logits.dtype)
            weight = (1 - counts / target.numel()).clamp_min(1e-6)  # one-class batch: plain mean, not 0/0
        return F.cross_entropy(logits, target, weight=weight)

    def metrics(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        mask = batch["mask"]
        return {"accuracy": class_averaged_accuracy(pred[mask].argmax(-1), batch["y"][mask])}


def class_averaged_accuracy(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over the classes present in ``target`` of the fraction of that class predicted right."""
    per_class = [(predicted[target == c] == c).float().mean() for c in torch.unique(target)]
    return float(torch.stack(per_class).mean()) if per_class else float("nan")
