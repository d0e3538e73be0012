"""The public API as a user meets it: wrap a plain nn.Module, train it a few steps, stay
equivariant; bad arguments fail early with the config key in the message."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from workers.symmetry import Group, symmetrize
from workers.symmetry.testing import equivariance_gap, point_clouds


class NBodyNet(nn.Module):
    """A user's model: positions and velocities of n bodies in, next positions out."""

    def __init__(self, bodies: int, dim: int, width: int = 32):
        super().__init__()
        self.bodies, self.dim = bodies, dim
        self.net = nn.Sequential(nn.Linear(2 * bodies * dim, width), nn.SiLU(), nn.Linear(width, bodies * dim))

    def forward(self, inputs: dict) -> torch.Tensor:
        flat = torch.cat([inputs["pos"].flatten(1), inputs["vel"].flatten(1)], dim=1)
        return inputs["pos"] + self.net(flat).view(-1, self.bodies, self.dim)


KINDS = {"pos": "point", "vel": "vector"}


def user_model(**options):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(81)
        return symmetrize(NBodyNet(5, 3), Group.parse("S_n x SE(d)", dim=3), method="ps", input_kinds=KINDS,
                          output_kind="point", train_samples=4, eval_samples=4, **options).double()


def test_symmetrized_user_model_trains_and_stays_equivariant():
    gen = torch.Generator().manual_seed(82)
    inputs, mask = point_clouds(8, 5, 3, gen)
    target = (inputs["pos"] + 0.1 * inputs["vel"]) * mask[..., None]  # an equivariant target
    model = user_model(temperature=0.1)
    interface_before = [p.detach().clone() for p in model.distribution.interface.parameters()]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(4):
        out = model(inputs, mask, generator=gen)
        assert out.output.shape == (8, 5, 3) and out.samples.shape == (8, 4, 5, 3)
        loss = (out.output - target).pow(2).sum(-1).mean() + 0.1 * out.penalty
        assert math.isfinite(float(loss.detach()))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    # p_ω(g|x) is learned, through the straight-through estimator
    interface_after = model.distribution.interface.parameters()
    assert max(float((a - b.detach()).abs().max()) for a, b in zip(interface_before, interface_after)) > 0
    model.eval()
    assert equivariance_gap(model, inputs, mask, gen) < 1e-9
    with torch.no_grad():  # translation: the centroid is handled exactly
        out = model(inputs, mask, generator=torch.Generator().manual_seed(1)).output
        shift = torch.tensor([5.0, -2.0, 1.0], dtype=torch.float64)
        shifted = model({"pos": (inputs["pos"] + shift) * mask[..., None], "vel": inputs["vel"]}, mask,
                        generator=torch.Generator().manual_seed(1)).output
    assert float((shifted - (out + shift) * mask[..., None]).abs().max()) < 1e-10


@pytest.mark.parametrize("options,key", [
    ({"method": "bogus"}, "symmetrizer.method='bogus'"),
    ({"noise_scale": -0.5}, "symmetrizer.noise_scale=-0.5"),
    ({"temperature": 0.0}, "symmetrizer.temperature=0.0"),
    ({"temperature": -1.0}, "symmetrizer.temperature=-1.0"),
    ({"train_samples": 0}, "symmetrizer.train_samples=0"),
    ({"eval_samples": 0}, "symmetrizer.eval_samples=0"),
    ({"sinkhorn_iters": 0}, "symmetrizer.sinkhorn_iters=0"),
])
def test_bad_symmetrizer_arguments_name_the_key(options, key):
    arguments = {"method": "ps", "input_kinds": KINDS, "output_kind": "point", **options}
    with pytest.raises(ValueError, match=key.replace(".", r"\.").replace("(", r"\(")):
        symmetrize(NBodyNet(5, 3), Group.parse("S_n x SE(d)", dim=3), **arguments)


@pytest.mark.parametrize("name,dim,key", [
    ("Q(3)", None, "group.name='Q(3)'"),
    ("S_n x", None, "group.name"),
    ("SE(d) x S_n", 3, "group.name"),
    ("O(d)", 1, "group.dim=1"),
    ("SE(1)", None, "group.dim=1"),
    ("O(d)", None, "group.dim=None"),
])
def test_bad_group_arguments_name_the_key(name, dim, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        Group.parse(name, dim=dim)


def test_unknown_kinds_are_rejected():
    with pytest.raises(ValueError, match="'velocity'"):
        symmetrize(NBodyNet(5, 3), Group.parse("S_n x SE(d)", dim=3), "ps", {"pos": "point", "vel": "velocity"},
                   "point")
