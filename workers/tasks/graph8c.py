"""GRAPH8c: all 11,117 connected non-isomorphic graphs on 8 nodes, for the separation metric.

Generated offline: every connected graph on 8 nodes has a vertex of minimum degree whose removal
leaves it connected (a leaf block holds one; checked exhaustively, and ``generate`` checks the
count), so it arises from a connected 7-node graph (networkx's graph atlas) plus an 8th vertex of
minimum degree joined to a non-empty subset of the seven. Duplicates are removed by nauty
certificate; graphs are stored in nauty's canonical labelling, sorted by (edge count, adjacency).
"""

from __future__ import annotations

from typing import Any, ClassVar

import networkx as nx
import numpy as np
import pynauty

from workers.tasks.separation import SeparationTask

NODES = 8
GRAPH_COUNT = 11_117


def connected_graphs_on_8() -> np.ndarray:
    """Adjacency matrices (11117, 8, 8) uint8 of the connected graphs on 8 nodes, sorted canonically."""
    subsets = ((np.arange(1, 1 << (NODES - 1))[:, None] >> np.arange(NODES - 1)) & 1).astype(np.uint8)
    members = [np.flatnonzero(subset).tolist() for subset in subsets]  # neighbours of the new vertex
    smalls = [g for g in nx.graph_atlas_g() if g.number_of_nodes() == NODES - 1 and nx.is_connected(g)]
    representatives: dict[bytes, tuple[pynauty.Graph, int, int]] = {}  # -> (graph, small, subset)
    for small_index, small in enumerate(smalls):
        degrees = np.array([small.degree(v) for v in range(NODES - 1)])  # (7,)
        minimum = (degrees + subsets >= subsets.sum(axis=1, keepdims=True)).all(axis=1)  # (127,)
        neighbours = {v: list(small[v]) for v in range(NODES - 1)}
        for subset_index in np.flatnonzero(minimum).tolist():
            graph = pynauty.Graph(NODES, adjacency_dict={**neighbours, NODES - 1: members[subset_index]})
            representatives.setdefault(pynauty.certificate(graph), (graph, small_index, subset_index))
    graphs, small_index, subset_index = zip(*representatives.values())
    small_adjacency = np.stack(  # (853, 7, 7)
        [nx.to_numpy_array(g, nodelist=range(NODES - 1), dtype=np.uint8) for g in smalls]
    )
    adjacency = np.zeros((len(graphs), NODES, NODES), dtype=np.uint8)  # (G, 8, 8)
    adjacency[:, : NODES - 1, : NODES - 1] = small_adjacency[list(small_index)]
    new_rows = subsets[list(subset_index)]  # (G, 7)
    adjacency[:, NODES - 1, : NODES - 1] = adjacency[:, : NODES - 1, NODES - 1] = new_rows
    labels = np.array([pynauty.canon_label(graph) for graph in graphs])  # (G, 8) canonical order
    adjacency = adjacency[np.arange(len(graphs))[:, None, None], labels[:, :, None], labels[:, None, :]]
    rows, cols = np.triu_indices(NODES, 1)
    upper = adjacency[:, rows, cols].astype(np.int64)  # (G, 28) canonical edge indicators
    code = upper @ (1 << np.arange(upper.shape[1] - 1, -1, -1))  # (G,) the indicators as one integer
    order = np.lexsort((code, upper.sum(axis=1)))  # by edge count, then canonical adjacency
    return adjacency[order]


class Graph8c(SeparationTask):
    """GRAPH8c: every pair of the 11,117 graphs counts; a single "test" split, no node features."""

    name: ClassVar[str] = "graph8c"
    version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {}
    input_kinds: ClassVar[dict[str, str]] = {"adj": "pair"}

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"adj": (NODES, NODES, 1)}

    def generate(self) -> dict[str, np.ndarray]:
        adjacency = connected_graphs_on_8()  # (G, 8, 8)
        size = adjacency.shape[0]
        if size != GRAPH_COUNT:
            raise RuntimeError(f"generated {size} graphs on 8 nodes, expected {GRAPH_COUNT}")
        return {
            "test/adj": adjacency[..., None].astype(np.float32),  # (G, 8, 8, 1)
            "test/mask": np.ones((size, NODES), dtype=bool),  # (G, 8)
            "test/y": np.arange(size, dtype=np.int64),  # (G,) graph index
        }
