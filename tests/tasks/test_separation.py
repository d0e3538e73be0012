"""The separation count: pairs of graphs that no seed's embedding separates."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.tasks import separation
from workers.tasks.separation import separation_count


def brute_force(embeddings: list[torch.Tensor], threshold: float) -> int:
    size = embeddings[0].shape[0]
    return sum(
        all(not (float((emb[i] - emb[j]).abs().sum()) > threshold) for emb in embeddings)
        for i, j in itertools.combinations(range(size), 2)
    )


def test_hand_made_embeddings():
    seed_a = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0005]])
    seed_b = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    # (0, 1) is separated only by seed b; (2, 3) by neither (0.0005 <= 1e-3); the rest by seed a
    assert separation_count([seed_a, seed_b]) == 1
    assert separation_count([seed_a]) == 2  # (0, 1) and (2, 3)
    assert separation_count([seed_b]) == 1  # (2, 3)
    assert separation_count([seed_a, seed_b], torch.tensor([[0, 1], [2, 3]])) == 1
    assert separation_count([seed_a, seed_b], torch.tensor([[0, 1]])) == 0
    assert separation_count([seed_a, seed_b], threshold=1e-4) == 0


def test_trivial_cases_give_all_or_nothing():
    size = 50
    constant = [torch.ones(size, 3) for _ in range(4)]
    assert separation_count(constant) == size * (size - 1) // 2
    distinct = [torch.arange(size, dtype=torch.float32)[:, None] for _ in range(4)]
    assert separation_count(distinct) == 0
    pairs = torch.tensor([[0, 1], [2, 3], [4, 5]])
    assert separation_count(constant, pairs) == 3 and separation_count(distinct, pairs) == 0


def test_distance_must_exceed_threshold():
    embedding = torch.tensor([[0.0], [0.5]])
    assert separation_count([embedding], threshold=0.5) == 1
    assert separation_count([embedding], threshold=0.25) == 0
    spread = torch.tensor([[0.0, 0.0], [0.25, -0.25], [0.25, 0.25], [-0.25, 0.5]])
    assert separation_count([spread], threshold=0.5) == 3  # (0, 1), (0, 2), (1, 2): exactly 0.5 apart


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_rejects_non_finite_embeddings(value):
    embedding = torch.tensor([[0.0], [value], [1.0]])
    with pytest.raises(ValueError, match=r"embeddings\[1\] contains NaN or inf"):
        separation_count([torch.zeros(3, 1), embedding])


@settings(max_examples=60, deadline=None)
@given(
    seeds=st.integers(1, 4),
    size=st.integers(1, 12),
    dim=st.integers(1, 3),
    block_elements=st.integers(1, 64),
    scale=st.sampled_from([1.0, 4e-4]),  # 4e-4: many distances within a rounding error of 1e-3
    data=st.data(),
)
def test_matches_brute_force_for_any_blocking(seeds, size, dim, block_elements, scale, data):
    values = st.lists(st.integers(0, 2), min_size=size * dim, max_size=size * dim)
    embeddings = [
        scale * torch.tensor(data.draw(values), dtype=torch.float32).reshape(size, dim)
        for _ in range(seeds)
    ]
    expected = brute_force(embeddings, 1e-3)
    assert separation_count(embeddings, block_elements=block_elements) == expected
    all_pairs = torch.tensor(list(itertools.combinations(range(size), 2)), dtype=torch.long)
    all_pairs = all_pairs.reshape(-1, 2)  # (P, 2), also when P = 0
    assert separation_count(embeddings, all_pairs) == expected


def test_many_graphs_many_seeds():
    """Graphs 0..9 coincide in every seed; graphs 10, 11 only in the first 99 of 100 seeds."""
    generator = torch.Generator().manual_seed(0)
    embeddings = []
    for seed in range(100):
        emb = torch.randn(3000, 10, generator=generator)
        emb[:10] = emb[0]
        if seed < 99:
            emb[11] = emb[10]
        embeddings.append(emb)
    assert separation_count(embeddings) == 45
    assert separation_count(embeddings[:99]) == 46


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        separation_count([])
    with pytest.raises(ValueError, match="one shape"):
        separation_count([torch.zeros(4, 2), torch.zeros(5, 2)])
    with pytest.raises(ValueError, match="one shape"):
        separation_count([torch.zeros(4)])
    with pytest.raises(ValueError, match="one shape"):
        separation_count([torch.zeros(4, 0)])
    with pytest.raises(ValueError, match="threshold=-0.1"):
        separation_count([torch.zeros(4, 2)], threshold=-0.1)
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        separation_count([torch.zeros(4, 2)], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        separation_count([torch.zeros(4, 2)], torch.tensor([[0, 4]]))


@settings(max_examples=60, deadline=None)
@given(
    seeds=st.integers(1, 4),
    size=st.integers(1, 12),
    dim=st.integers(1, 3),
    block_elements=st.integers(1, 64),
    scale=st.sampled_from([1.0, 4e-4]),
    share=st.sampled_from([-1.0, 2.0]),  # -1: every count block by block; 2: every count through the filter
    data=st.data(),
)
def test_both_all_pairs_paths_match_brute_force_with_per_seed_thresholds(seeds, size, dim, block_elements, scale,
                                                                          share, data):
    values = st.lists(st.integers(0, 2), min_size=size * dim, max_size=size * dim)
    embeddings = [scale * torch.tensor(data.draw(values), dtype=torch.float32).reshape(size, dim)
                  for _ in range(seeds)]
    thresholds = [scale * data.draw(st.sampled_from([0.0, 1.0, 2.5])) + 1e-3 for _ in range(seeds)]
    expected = sum(all(float((emb[i] - emb[j]).abs().sum()) <= t for emb, t in zip(embeddings, thresholds))
                   for i, j in itertools.combinations(range(size), 2))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(separation, "DENSE_SHARE", share)
        assert separation_count(embeddings, threshold=thresholds, block_elements=block_elements) == expected
