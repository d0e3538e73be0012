"""GRAPH8c: the 11,117 connected graphs on 8 nodes, generated offline."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pynauty
import pytest
import torch

from workers.tasks import cache, get_task
from workers.tasks.base import TaskData
from workers.tasks.graph8c import Graph8c

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "reference" / "graph8c.g6"


def certificate(adjacency: np.ndarray) -> bytes:
    """nauty certificate of an (n, n) adjacency matrix."""
    neighbours = {v: [int(u) for u in np.flatnonzero(row)] for v, row in enumerate(adjacency)}
    return pynauty.certificate(pynauty.Graph(len(adjacency), adjacency_dict=neighbours))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TaskData:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        loaded = get_task("graph8c").load()
        assert loaded.generated
        reloaded = get_task("graph8c").load()
    assert not reloaded.generated and reloaded.path == loaded.path
    assert torch.equal(reloaded.splits["test"]["adj"], loaded.splits["test"]["adj"])
    return loaded


@pytest.fixture(scope="module")
def adjacency(data) -> np.ndarray:
    return data.splits["test"]["adj"][..., 0].numpy().astype(np.uint8)  # (G, 8, 8)


def test_registry_and_layout(data):
    task = get_task("graph8c")
    assert isinstance(task, Graph8c) and not task.trainable
    assert set(data.splits) == {"test"} and data.size("test") == 11_117
    fields = data.splits["test"]
    assert set(fields) == {"adj", "mask", "y"}  # no node features
    assert fields["adj"].shape == (11_117, 8, 8, 1) and fields["adj"].dtype == torch.float32
    assert fields["mask"].shape == (11_117, 8) and fields["mask"].dtype == torch.bool
    assert bool(fields["mask"].all())
    assert torch.equal(fields["y"], torch.arange(11_117))
    assert task.input_kinds == {"adj": "pair"} and task.target_kind == "invariant"


def test_simple_undirected_and_connected(adjacency):
    assert set(np.unique(adjacency)) == {0, 1}
    assert (adjacency == adjacency.transpose(0, 2, 1)).all()
    assert (np.diagonal(adjacency, axis1=1, axis2=2) == 0).all()
    reach = adjacency.astype(np.int64) + np.eye(8, dtype=np.int64)  # paths of length <= 1
    for _ in range(3):  # <= 2, 4, 8
        reach = np.minimum(reach @ reach, 1)
    assert (reach == 1).all()


def test_sorted_by_edge_count(adjacency):
    edges = adjacency.sum(axis=(1, 2)) // 2
    assert edges[0] == 7 and edges[-1] == 28 and (np.diff(edges) >= 0).all()


def test_pairwise_non_isomorphic(adjacency):
    assert len({certificate(matrix) for matrix in adjacency}) == 11_117


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"published GRAPH8c file not found at {REFERENCE}")
def test_equals_published_set(adjacency):
    published = {
        certificate(nx.to_numpy_array(nx.from_graph6_bytes(line.strip()), dtype=np.uint8))
        for line in REFERENCE.read_bytes().splitlines()
        if line.strip()
    }
    assert len(published) == 11_117
    assert {certificate(matrix) for matrix in adjacency} == published


def test_metrics_of_one_embedding(data):
    task = get_task("graph8c")
    fields = data.splits["test"]
    distinct = fields["adj"].flatten(1)  # (G, 64): canonical adjacency, one per class
    assert task.metrics(distinct, fields) == {"unseparated_pairs": 0.0, "separated_fraction": 1.0}
    subset = {key: value[:300] for key, value in fields.items()}
    edge_count = subset["adj"].sum(dim=(1, 2))  # (300, 1): many graphs share an edge count
    counts = torch.bincount(edge_count[:, 0].long())
    same_count = int((counts * (counts - 1) // 2).sum())
    result = task.metrics(edge_count, subset)
    assert result["unseparated_pairs"] == same_count > 0
    assert result["separated_fraction"] == pytest.approx(1 - same_count / (300 * 299 / 2))


def test_not_trainable_and_no_parameters():
    task = get_task("graph8c")
    with pytest.raises(NotImplementedError, match="not trainable"):
        task.loss(torch.zeros(3, 10), {})
    with pytest.raises(ValueError, match="task.seed"):
        get_task("graph8c", seed=1)
