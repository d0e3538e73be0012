"""Fixed-noise PS: each input always gets the same N noises, and they differ between its N samples."""

from __future__ import annotations

import torch

from workers.symmetry import DenseGIN, Group, ProbabilisticSymmetrization


def test_fixed_noise_is_per_input_and_per_sample():
    distribution = ProbabilisticSymmetrization(Group.parse("S_n"), DenseGIN(1, hidden=8), fixed_noise=True)
    adjacency = (torch.rand(2, 5, 5, 1, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    samples = 3
    rows = {"adj": adjacency.repeat_interleave(samples, 0)}  # (B·N, n, n, 1), input-major
    first = distribution.draw_noise(rows, None, 2 * samples)["node_noise"].view(2, samples, 5, -1)
    again = distribution.draw_noise(rows, None, 2 * samples)["node_noise"].view(2, samples, 5, -1)
    assert torch.equal(first, again)  # the same every time
    assert not torch.equal(first[0, 0], first[0, 1]) and not torch.equal(first[0, 1], first[0, 2])
    alone = distribution.draw_noise({"adj": adjacency[1:].repeat_interleave(samples, 0)}, None, samples)
    assert torch.equal(alone["node_noise"].view(samples, 5, -1), first[1])  # independent of the batch
