"""EXP and EXP-classify: 600 SAT/UNSAT pairs of planar formula graphs that 1-WL cannot separate."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import pycosat
import pynauty
import pytest
import torch
import torch.nn.functional as F

from workers.tasks import cache, get_task
from workers.tasks.base import TaskData
from workers.tasks.exp import Exp, ExpClassify, core_formulas, exp_graphs

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "reference" / "exp_graphsat.npz"

Graph = tuple[np.ndarray, np.ndarray]  # adjacency (n, n), node labels (n,) without padding


def graphs_of(fields: dict[str, torch.Tensor]) -> list[Graph]:
    result = []
    adjacency, labels = fields["adj"][..., 0].numpy(), fields["x"][..., 0].numpy()
    for adj, x, size in zip(adjacency, labels, fields["mask"].sum(dim=1).tolist()):
        result.append((adj[:size, :size].astype(np.uint8), x[:size].astype(np.int64)))
    return result


def one_wl_equivalent(first: Graph, second: Graph) -> bool:
    """Colour refinement on the disjoint union, node labels as initial colours."""
    adjacency = np.zeros((len(first[1]) + len(second[1]),) * 2, dtype=np.uint8)
    adjacency[: len(first[1]), : len(first[1])] = first[0]
    adjacency[len(first[1]) :, len(first[1]) :] = second[0]
    neighbours = [np.flatnonzero(row) for row in adjacency]
    nodes = range(len(neighbours))
    colours = list(np.concatenate([first[1], second[1]]))
    while True:
        signatures = [(colours[v], tuple(sorted(colours[u] for u in neighbours[v]))) for v in nodes]
        palette = {signature: index for index, signature in enumerate(sorted(set(signatures)))}
        refined = [palette[signature] for signature in signatures]
        stable = len(set(refined)) == len(set(colours))
        colours = refined
        if stable:
            break
    return Counter(colours[: len(first[1])]) == Counter(colours[len(first[1]) :])


def certificate(graph: Graph) -> bytes:
    neighbours = {v: [int(u) for u in np.flatnonzero(row)] for v, row in enumerate(graph[0])}
    return pynauty.certificate(pynauty.Graph(len(graph[1]), adjacency_dict=neighbours))


def satisfiable(graph: Graph) -> bool:
    """Read the formula back from the graph (literal–literal edges are negations) and solve it."""
    adjacency, literal = graph
    variable: dict[int, int] = {}
    for node in np.flatnonzero(literal):
        if node not in variable:
            (partner,) = [u for u in np.flatnonzero(adjacency[node]) if literal[u]]
            variable[node], variable[partner] = len(variable) // 2 + 1, -(len(variable) // 2 + 1)
    clauses = [[variable[u] for u in np.flatnonzero(row)] for row in adjacency[literal == 0]]
    return pycosat.solve(clauses) != "UNSAT"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict[str, TaskData]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        return {name: get_task(name).load() for name in ("exp", "exp_classify")}


@pytest.fixture(scope="module")
def graphs(loaded) -> list[Graph]:
    return graphs_of(loaded["exp"].splits["test"])


def test_registry_and_layout(loaded):
    assert isinstance(get_task("exp"), Exp) and isinstance(get_task("exp_classify"), ExpClassify)
    assert not get_task("exp").trainable and get_task("exp_classify").trainable
    data = loaded["exp"]
    assert set(data.splits) == {"test"} and data.size("test") == 1200
    fields = data.splits["test"]
    assert fields["adj"].shape == (1200, 64, 64, 1) and fields["adj"].dtype == torch.float32
    assert fields["x"].shape == (1200, 64, 1) and fields["x"].dtype == torch.float32
    assert fields["mask"].shape == (1200, 64) and fields["mask"].dtype == torch.bool
    assert fields["y"].shape == (1200,) and fields["y"].dtype == torch.float32
    assert torch.equal(fields["y"], (torch.arange(1200) % 2 == 0).float())
    sizes = fields["mask"].sum(dim=1)
    assert torch.equal(fields["mask"], torch.arange(64) < sizes[:, None])  # real nodes first
    assert int(sizes.min()) >= 32 and int(sizes.max()) <= 64
    padding = ~fields["mask"]
    assert not fields["x"][padding].any()
    assert not fields["adj"][padding].any() and not fields["adj"].transpose(1, 2)[padding].any()


def test_graphs_are_simple_planar_and_bipartite_over_literals_and_clauses(graphs):
    for adjacency, literal in graphs:
        assert (adjacency == adjacency.T).all() and not adjacency.diagonal().any()
        assert not adjacency[np.ix_(literal == 0, literal == 0)].any()  # no clause–clause edges
        assert (adjacency[np.ix_(literal == 1, literal == 1)].sum(axis=1) == 1).all()  # negations
        assert nx.check_planarity(nx.from_numpy_array(adjacency))[0]


def test_pairs_are_one_wl_equivalent_but_not_isomorphic(graphs):
    for sat, unsat in zip(graphs[0::2], graphs[1::2]):
        assert one_wl_equivalent(sat, unsat)
        assert certificate(sat) != certificate(unsat)


def test_one_wl_check_itself():
    def unlabelled(graph: nx.Graph) -> Graph:
        return nx.to_numpy_array(graph, dtype=np.uint8), np.zeros(len(graph), dtype=np.int64)

    hexagon, triangles = nx.cycle_graph(6), nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3))
    assert one_wl_equivalent(unlabelled(hexagon), unlabelled(triangles))  # the textbook failure
    assert not one_wl_equivalent(unlabelled(nx.path_graph(4)), unlabelled(nx.star_graph(3)))
    labelled = unlabelled(nx.path_graph(4))
    assert not one_wl_equivalent(labelled, (labelled[0], np.array([1, 0, 0, 0])))


def test_labels_match_a_sat_solver(graphs, loaded):
    labels = loaded["exp"].splits["test"]["y"]
    assert [float(satisfiable(graph)) for graph in graphs] == labels.tolist()


@pytest.mark.parametrize("length", [4, 6, 8])
def test_cores(length):
    sat_core, unsat_core = core_formulas(1, length)
    assert pycosat.solve(sat_core) != "UNSAT" and pycosat.solve(unsat_core) == "UNSAT"
    for core in (sat_core, unsat_core):  # clauses of degree 2, literals in two clauses (+ negation)
        assert len(core) == 2 * length and all(len(clause) == 2 for clause in core)
        occurrences = Counter(literal for clause in core for literal in clause)
        assert occurrences == {literal: 2 for v in range(1, length + 1) for literal in (v, -v)}


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"published EXP file not found at {REFERENCE}")
def test_sizes_resemble_published_set(graphs):
    published = np.load(REFERENCE)
    nodes = np.diff(published["x_ptr"])
    edges = np.diff(published["e_ptr"]) // 2
    ours_nodes = np.array([len(literal) for _, literal in graphs])
    ours_edges = np.array([adjacency.sum() // 2 for adjacency, _ in graphs])
    assert abs(ours_nodes.mean() - nodes.mean()) < 2.0
    assert abs(ours_edges.mean() - edges.mean()) < 3.0
    assert abs(ours_nodes.std() - nodes.std()) < 2.0
    literal_share = np.mean([literal.mean() for _, literal in graphs])
    published_share = published["x"].mean()
    assert abs(literal_share - published_share) < 0.05


def test_exp_classify_splits_are_graph_ranges(loaded):
    """Also shows that generation is deterministic: both tasks generated their graphs separately."""
    everything = loaded["exp"].splits["test"]
    splits = loaded["exp_classify"].splits
    ranges = {"val": slice(0, 200), "test": slice(200, 400), "train": slice(400, 1200)}
    for split, rows in ranges.items():
        assert set(splits[split]) == {"adj", "x", "mask", "y"}
        for field, value in splits[split].items():
            assert torch.equal(value, everything[field][rows]), (split, field)
        assert float(splits[split]["y"].mean()) == 0.5


def test_seed_changes_graphs(loaded):
    other = exp_graphs(1)
    same_seed = loaded["exp"].splits["test"]["adj"]
    assert other["adj"].shape == tuple(same_seed.shape)
    assert not np.array_equal(other["adj"], same_seed.numpy())


def test_exp_separation_metrics(loaded):
    task = get_task("exp")
    fields = loaded["exp"].splits["test"]
    invariants = torch.stack(  # (G, 3) node, literal and edge counts: equal within every pair
        [fields["mask"].sum(1), fields["x"].sum(dim=(1, 2)), fields["adj"].sum(dim=(1, 2, 3))], dim=1
    ).float()
    expected = {"unseparated_pairs": 600.0, "separated_fraction": 0.0}
    assert task.metrics(invariants, fields) == expected
    index = torch.arange(1200, dtype=torch.float32)[:, None]
    assert task.metrics(index, fields) == {"unseparated_pairs": 0.0, "separated_fraction": 1.0}
    assert torch.equal(task.pairs(6), torch.tensor([[0, 1], [2, 3], [4, 5]]))
    with pytest.raises(NotImplementedError, match="not trainable"):
        task.loss(index, fields)


def test_exp_classify_loss_and_accuracy():
    task = get_task("exp_classify")
    target = torch.tensor([1.0, 0.0, 1.0, 0.0])
    logits = torch.tensor([2.0, -1.0, -0.5, 0.3])
    batch = {"y": target}
    expected = F.binary_cross_entropy(torch.sigmoid(logits), target)
    assert torch.allclose(task.loss(logits, batch), expected)
    assert torch.allclose(task.loss(logits[:, None], batch), expected)
    assert task.metrics(logits, batch) == {"accuracy": 0.5}
    assert task.metrics(2 * target - 1, batch) == {"accuracy": 1.0}
    assert task.metrics(1 - 2 * target, batch) == {"accuracy": 0.0}
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, 1\)"):
        task.loss(torch.zeros(4, 2), batch)
    assert task.metric == "accuracy" and task.mode == "max"


@pytest.mark.parametrize("name", ["exp", "exp_classify"])
@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_bad_seed_is_rejected(name, seed):
    with pytest.raises(ValueError, match=rf"task\.seed={seed!r}.*non-negative integer"):
        get_task(name, seed=seed)


def test_unknown_parameter_is_rejected():
    with pytest.raises(ValueError, match="task.size"):
        get_task("exp_classify", size=10)



@pytest.fixture(scope="module")
def as_built() -> dict[str, np.ndarray]:
    """Seed 0's graphs in construction order (clauses, x_1..x_V, ¬x_1..¬x_V): relabelling switched off."""
    import workers.tasks.exp as exp_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exp_module, "relabel", lambda graph, rng: graph)
        return exp_module.exp_graphs(0)


def order_probe_accuracy(train: dict[str, torch.Tensor], test: dict[str, torch.Tensor]) -> float:
    """Test accuracy of a logistic regression on the flattened adjacency and node features *in stored
    order*: a model with no symmetry at all, so anything above chance is read off the node order."""
    from sklearn.linear_model import LogisticRegression

    def features(fields):
        return torch.cat([fields["adj"].flatten(1), fields["x"].flatten(1)], dim=1).numpy()

    probe = LogisticRegression(C=1.0, max_iter=2000).fit(features(train), train["y"].numpy())
    return float(probe.score(features(test), test["y"].numpy()))


@pytest.mark.slow  # builds seed 0's graphs again and fits two probes: seconds
def test_node_order_does_not_carry_the_label(loaded, as_built):
    """The stored order leaks nothing; the construction order leaks the label almost perfectly,
    which shows the probe would catch a regression."""
    from workers.tasks.exp import GRAPH_SPLITS

    splits = loaded["exp_classify"].splits
    assert order_probe_accuracy(splits["train"], splits["test"]) < 0.65  # 200 test graphs: chance + 4 sd
    built = {split: {field: torch.from_numpy(value[rows]) for field, value in as_built.items()}
             for split, rows in GRAPH_SPLITS.items()}
    assert order_probe_accuracy(built["train"], built["test"]) > 0.9


def test_relabelling_only_reorders_nodes(loaded, as_built):
    """Each stored graph is isomorphic to the one built in order, with its nodes moved."""
    stored = graphs_of(loaded["exp"].splits["test"])
    built = graphs_of({field: torch.from_numpy(value) for field, value in as_built.items()})
    assert np.array_equal(as_built["y"], loaded["exp"].splits["test"]["y"].numpy())
    moved = 0
    for (adjacency, literal), (built_adjacency, built_literal) in zip(stored[::37], built[::37]):
        assert certificate((adjacency, literal)) == certificate((built_adjacency, built_literal))
        assert sorted(literal) == sorted(built_literal)
        moved += not np.array_equal(literal, built_literal)
    assert moved >= len(stored[::37]) - 1
