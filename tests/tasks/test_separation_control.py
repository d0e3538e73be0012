"""The isomorphic control of the separation protocol (``workers.tasks.separation``): relabelled copies,
per-seed thresholds, the control's counts, and the published GRAPH8c/EXP graphs (read-only, tests only)."""

from __future__ import annotations

import itertools
from pathlib import Path

import networkx as nx
import numpy as np
import pynauty
import pytest
import torch

from tests.train.invariant import InvariantGraphNet
from workers.models.spec import FieldSpec
from workers.tasks import get_task
from workers.tasks.separation import THRESHOLD, calibrated_thresholds, copy_distances, relabelled, separation_count

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "reference"
KINDS = {"adj": "pair", "x": "node"}


def padded_graphs(seed: int = 0) -> dict[str, torch.Tensor]:
    """Three random graphs of 5, 3 and 6 real nodes padded to 6, with node features."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [5, 3, 6]
    adjacency = torch.zeros(3, 6, 6, 1)
    features = torch.zeros(3, 6, 2)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    for index, size in enumerate(sizes):
        upper = torch.triu((torch.rand(size, size, generator=generator) < 0.5).float(), 1)
        adjacency[index, :size, :size, 0] = upper + upper.T
        features[index, :size] = torch.randn(size, 2, generator=generator)
        mask[index, :size] = True
    return {"adj": adjacency, "x": features, "mask": mask, "y": torch.arange(3)}


def as_networkx(adjacency: torch.Tensor, features: torch.Tensor, size: int) -> nx.Graph:
    graph = nx.from_numpy_array(adjacency[:size, :size, 0].numpy())
    nx.set_node_attributes(graph, {v: tuple(features[v].tolist()) for v in range(size)}, "x")
    return graph


def test_a_relabelled_copy_is_isomorphic_with_padding_in_place():
    graphs = padded_graphs()
    copy = relabelled(graphs, KINDS, torch.Generator().manual_seed(1))
    assert torch.equal(copy["mask"], graphs["mask"]) and torch.equal(copy["y"], graphs["y"])
    moved = 0
    for index, size in enumerate(graphs["mask"].sum(dim=1).tolist()):
        assert not copy["adj"][index, size:].any() and not copy["x"][index, size:].any()  # padding stays padding
        first = as_networkx(graphs["adj"][index], graphs["x"][index], size)
        second = as_networkx(copy["adj"][index], copy["x"][index], size)
        assert nx.is_isomorphic(first, second, node_match=lambda a, b: a["x"] == b["x"])
        moved += not torch.equal(copy["x"][index], graphs["x"][index])
    assert moved >= 2  # the nodes really move (features are distinct, so a moved node shows)


def test_relabelling_is_deterministic_given_the_generator():
    graphs = padded_graphs()
    first = relabelled(graphs, KINDS, torch.Generator().manual_seed(3))
    again = relabelled(graphs, KINDS, torch.Generator().manual_seed(3))
    other = relabelled(graphs, KINDS, torch.Generator().manual_seed(4))
    assert all(torch.equal(first[key], again[key]) for key in graphs)
    assert not torch.equal(first["x"], other["x"])


def test_relabelling_refuses_inputs_without_nodes():
    with pytest.raises(ValueError, match="input 'img' of kind 'image' has no nodes to relabel"):
        relabelled({"img": torch.zeros(2, 4, 4, 1)}, {"img": "image"}, torch.Generator())


def brute_force(embeddings: list[torch.Tensor], thresholds: list[float]) -> int:
    size = embeddings[0].shape[0]
    return sum(all(float((emb[i] - emb[j]).abs().sum()) <= threshold for emb, threshold in zip(embeddings, thresholds))
               for i, j in itertools.combinations(range(size), 2))


@pytest.mark.parametrize("block_elements", [1, 7, 1 << 20])
def test_per_seed_thresholds_match_brute_force(block_elements):
    generator = torch.Generator().manual_seed(0)
    embeddings = [torch.randint(0, 4, (30, 2), generator=generator).float() * 0.5 for _ in range(3)]
    thresholds = [0.6, 1.1, 0.3]
    expected = brute_force(embeddings, thresholds)
    assert 0 < expected < 435
    assert separation_count(embeddings, threshold=thresholds, block_elements=block_elements) == expected
    assert separation_count(embeddings, threshold=[THRESHOLD] * 3) == separation_count(embeddings)
    with pytest.raises(ValueError, match="2 values for 3 embeddings"):
        separation_count(embeddings, threshold=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"threshold=inf is not allowed"):
        separation_count(embeddings, threshold=[0.1, 0.2, float("inf")])


def test_control_counts_on_hand_made_embeddings():
    task = get_task("graph8c")
    seed_a = torch.tensor([[0.0], [0.2], [1.0], [3.0]])
    seed_b = torch.tensor([[0.0], [0.0], [2.0], [2.5]])
    exact = task.control([seed_a, seed_b], [seed_a.clone(), seed_b.clone()])
    assert exact == {"isomorphic_separated": 0.0, "isomorphic_distance_max": 0.0,
                     **{f"{key}_calibrated": value for key, value in task.score([seed_a, seed_b]).items()}}
    noisy_a = seed_a + torch.tensor([[0.0], [0.0], [0.5], [0.0]])  # graph 2's copy 0.5 away in seed a
    noisy_b = seed_b + torch.tensor([[0.0], [0.0005], [0.0], [0.25]])  # graph 1's copy within 1e-3 in seed b
    control = task.control([seed_a, seed_b], [noisy_a, noisy_b])
    assert calibrated_thresholds(copy_distances([seed_a, seed_b], [noisy_a, noisy_b])) == pytest.approx([0.5, 0.25])
    # seed a at 0.5 separates (0,2), (0,3), (1,2), (1,3), (2,3); seed b at 0.25 separates (0,2), (0,3), (1,2),
    # (1,3), (2,3); (0, 1) (0.2 and 0 apart) is separated by neither
    assert control["isomorphic_separated"] == 2 and control["isomorphic_distance_max"] == pytest.approx(0.5)
    assert control["unseparated_pairs_calibrated"] == 1 and task.score([seed_a, seed_b])["unseparated_pairs"] == 0
    assert control["separated_fraction_calibrated"] == pytest.approx(5 / 6)


def published_graph8c(count: int) -> list[np.ndarray]:
    path = REFERENCE / "graph8c.g6"
    if not path.exists():
        pytest.skip(f"{path} is absent (the published reference data live beside the project, for tests only)")
    lines = path.read_bytes().split()[:count]
    return [nx.to_numpy_array(nx.from_graph6_bytes(line), dtype=np.float32) for line in lines]


def certificate(adjacency: np.ndarray) -> bytes:
    neighbours = {v: [int(u) for u in np.flatnonzero(row)] for v, row in enumerate(adjacency)}
    return pynauty.certificate(pynauty.Graph(len(adjacency), adjacency_dict=neighbours))


def test_relabelled_published_graph8c_graphs_keep_their_isomorphism_class():
    adjacency = np.stack(published_graph8c(200))  # (200, 8, 8)
    split = {"adj": torch.from_numpy(adjacency)[..., None], "mask": torch.ones(200, 8, dtype=torch.bool)}
    copy = relabelled(split, {"adj": "pair"}, torch.Generator().manual_seed(0))["adj"][..., 0].numpy()
    assert [certificate(a) for a in copy] == [certificate(a) for a in adjacency]
    assert sum(not np.array_equal(a, b) for a, b in zip(copy, adjacency)) > 150  # most copies are new matrices


def published_exp(count: int) -> dict[str, torch.Tensor]:
    path = REFERENCE / "exp_graphsat.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent (the published reference data live beside the project, for tests only)")
    data = np.load(path)
    adjacency, features = torch.zeros(count, 64, 64, 1), torch.zeros(count, 64, 1)
    mask = torch.zeros(count, 64, dtype=torch.bool)
    for index in range(count):
        start, stop = int(data["x_ptr"][index]), int(data["x_ptr"][index + 1])
        edges = data["edge_index"][:, int(data["e_ptr"][index]):int(data["e_ptr"][index + 1])].astype(np.int64)
        adjacency[index, edges[0], edges[1], 0] = 1.0
        features[index, : stop - start, 0] = torch.from_numpy(data["x"][start:stop].astype(np.float32))
        mask[index, : stop - start] = True
    return {"adj": adjacency, "x": features, "mask": mask}


def test_an_invariant_model_on_published_exp_pairs_passes_the_control_and_separates_no_pair():
    """The published EXP pairs are 1-WL-equivalent: an invariant degree-sum network (1-WL-bounded) separates none
    of them, and no graph from its relabelled copy (distance at rounding level), whatever the seed."""
    task, graphs = get_task("exp"), published_exp(20)
    copy = relabelled(graphs, task.input_kinds, torch.Generator().manual_seed(0))
    embeddings, copies = [], []
    for seed in range(2):
        torch.manual_seed(seed)
        model = InvariantGraphNet({"adj": FieldSpec("pair", (64, 64, 1)), "x": FieldSpec("node", (64, 1))},
                                  FieldSpec("invariant", (10,)))
        with torch.no_grad():
            embeddings.append(model({**graphs}).double())
            copies.append(model({**copy}).double())
    control = task.control(embeddings, copies)
    assert control["isomorphic_separated"] == 0 and control["isomorphic_distance_max"] < 1e-4
    assert task.score(embeddings)["unseparated_pairs"] == 10 and control["unseparated_pairs_calibrated"] == 10
    assert separation_count(embeddings) < 20 * 19 // 2 - 10  # not a constant model: it separates other pairs
