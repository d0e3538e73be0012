"""PATTERN: the SBM generator's statistics, layout, determinism, loss and class-averaged accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.tasks import cache, get_task
from workers.tasks.pattern import Pattern, class_averaged_accuracy

SMALL = {"train_size": 40, "val_size": 10, "test_size": 10, "patterns": 10}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))


@pytest.fixture(scope="module")
def moderate():
    """2,000 training graphs over the paper's 100 patterns: enough for the statistics."""
    task = Pattern(seed=3, train_size=2000, val_size=20, test_size=20)
    return task.to_splits(task.generate())["train"]


def test_layout_and_dtypes():
    data = get_task("pattern", seed=0, **SMALL).load()
    assert data.generated and {data.size(split) for split in ("train", "val", "test")} == {40, 10}
    train = data.splits["train"]
    assert train["adj"].shape == (40, 188, 188, 1) and train["adj"].dtype == torch.bool
    assert train["x"].shape == (40, 188, 3) and train["x"].dtype == torch.float32
    assert train["mask"].shape == (40, 188) and train["mask"].dtype == torch.bool
    assert train["y"].shape == (40, 188) and train["y"].dtype == torch.int64
    again = get_task("pattern", seed=0, **SMALL).load()
    assert not again.generated and torch.equal(again.splits["train"]["adj"], train["adj"])


def test_graphs_are_simple_undirected_and_padding_is_empty():
    splits = Pattern(seed=1, **SMALL).to_splits(Pattern(seed=1, **SMALL).generate())
    for fields in splits.values():
        adj, mask, x, y = fields["adj"][..., 0], fields["mask"], fields["x"], fields["y"]
        assert torch.equal(adj, adj.transpose(1, 2))
        assert not adj.diagonal(dim1=1, dim2=2).any()
        assert not (adj & ~mask[:, :, None]).any()
        assert torch.equal(x.sum(-1), mask.float())  # one-hot on real nodes, zero on padding
        assert torch.equal(y < 0, ~mask) and set(y[mask].unique().tolist()) == {0, 1}
        # real nodes are the first slots
        counts = mask.sum(1)
        assert torch.equal(mask, torch.arange(188)[None, :] < counts[:, None])


def test_node_counts_positive_share_and_densities(moderate):
    mask, y, adj = moderate["mask"], moderate["y"], moderate["adj"][..., 0]
    nodes = mask.sum(1)
    assert 30 <= nodes.min() and nodes.max() <= 188  # 5+5*5 .. padding
    assert 110 < nodes.float().mean() < 125  # published mean ≈ 117.5
    share = (y == 1).sum() / mask.sum()
    assert 0.14 < share < 0.20  # E[pattern] / E[nodes] = 19.5 / 117 ≈ 0.167
    pattern = y == 1
    rest = mask & ~pattern
    across = (adj & pattern[:, :, None] & rest[:, None, :]).sum() / (pattern.sum(1) * rest.sum(1)).sum()
    assert abs(across - 0.5) < 0.01  # pattern nodes join every other node with probability 0.5
    within_rest = (adj & rest[:, :, None] & rest[:, None, :]).sum() / (rest.sum(1) * (rest.sum(1) - 1)).sum()
    assert 0.36 < within_rest < 0.40  # 0.5 inside, 0.35 between communities ≈ 0.38 overall
    edges = adj.sum((1, 2)).float().mean()  # directed edges per graph, ≈ 5,800 expected
    assert 5000 < edges < 6500


def test_graphs_of_one_pattern_share_it():
    task = Pattern(seed=2, train_size=20, val_size=5, test_size=5, patterns=4)
    train = task.to_splits(task.generate())["train"]  # graphs 0-4 use pattern 0, 5-9 pattern 1, ...

    def signature(index: int) -> tuple:
        nodes = train["y"][index] == 1
        sub = train["adj"][index, nodes][:, nodes, 0]
        return sorted(sub.sum(1).tolist()), train["x"][index, nodes].sum(0).tolist()

    first = [signature(index) for index in range(5)]
    assert all(sig == first[0] for sig in first)
    assert signature(5) != first[0] or signature(10) != first[0]


def test_determinism_by_seed_and_independent_splits():
    arrays = Pattern(seed=4, **SMALL).generate()
    again = Pattern(seed=4, **SMALL).generate()
    other = Pattern(seed=5, **SMALL).generate()
    assert all(np.array_equal(arrays[key], again[key]) for key in arrays)
    assert not np.array_equal(arrays["train/adj_bits"], other["train/adj_bits"])
    bigger = Pattern(seed=4, **{**SMALL, "train_size": 60}).generate()
    assert np.array_equal(arrays["test/adj_bits"], bigger["test/adj_bits"])  # test set ignores train_size


def test_small_max_nodes_redraws_big_graphs():
    task = Pattern(seed=0, train_size=200, val_size=5, test_size=5, max_nodes=100)
    mask = task.to_splits(task.generate())["train"]["mask"]
    assert mask.shape[1] == 100 and mask.sum(1).max() <= 100


def test_class_averaged_accuracy_by_hand():
    target = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    predicted = torch.tensor([0, 0, 0, 1, 1, 1, 1, 0])
    assert class_averaged_accuracy(predicted, target) == pytest.approx((3 / 6 + 1 / 2) / 2)
    assert class_averaged_accuracy(torch.zeros(8, dtype=torch.long), target) == pytest.approx(0.5)
    # the metric ignores padding: logits at padded slots do not count
    pred = torch.zeros(1, 4, 2)
    pred[0, :, 1] = torch.tensor([-1.0, 1.0, 1.0, 1.0])  # node 0 -> class 0, others -> 1
    batch = {"mask": torch.tensor([[True, True, True, False]]), "y": torch.tensor([[0, 1, 0, -1]])}
    assert Pattern().metrics(pred, batch)["accuracy"] == pytest.approx((1 / 2 + 1) / 2)


def test_loss_is_class_weighted_cross_entropy_over_real_nodes():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 5, 2, generator=generator)
    batch = {"mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], dtype=torch.bool),
             "y": torch.tensor([[0, 0, 1, 0, -1], [0, 1, 0, -1, -1]])}
    logits, target = pred[batch["mask"]], batch["y"][batch["mask"]]  # 7 nodes, 2 positive
    weight = torch.tensor([2 / 7, 5 / 7])
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight)
    assert Pattern().loss(pred, batch) == pytest.approx(float(expected))
    plain = Pattern(class_weighted=False).loss(pred, batch)
    assert plain == pytest.approx(float(torch.nn.functional.cross_entropy(logits, target)))
    pred[~batch["mask"]] = 100.0  # padding does not enter the loss
    assert Pattern().loss(pred, batch) == pytest.approx(float(expected))
    only_negative = {"mask": batch["mask"], "y": batch["y"].clamp(max=0)}
    single = torch.nn.functional.cross_entropy(logits, only_negative["y"][batch["mask"]])
    assert Pattern().loss(pred, only_negative) == pytest.approx(float(single))  # finite, not 0/0


@pytest.mark.parametrize(("key", "value"), [("max_nodes", 50), ("train_size", 0), ("seed", -1), ("patterns", 1.5)])
def test_bad_parameters_name_the_key(key, value):
    with pytest.raises(ValueError, match=rf"task\.{key}="):
        Pattern(**{key: value})


def test_loss_parameter_does_not_change_the_cache_key():
    assert Pattern(class_weighted=False).generator_params() == Pattern().generator_params()
