"""REMUL (paper 003): the equivariance penalty L_equi = ℓ(f(g·x), g·y) and GradNorm (Algorithm 1).

Direction of GradNorm, derived from Algorithm 1: with training rates L̃ = L/L(0), r = mean(L̃),
r_α = L̃_obj/r, r_β = L̃_equi/r, the targets are Ḡ·r^γ. A loss that falls faster than the other has
the smaller rate, hence the smaller target; its weighted gradient norm then exceeds the target,
∇ of |w·G − target| w.r.t. its weight is positive, and gradient descent lowers that weight. So when
L_equi decreases faster than L_task, β decreases relative to α (and vice versa).
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.symmetry.helpers import POINT_KINDS, build
from workers.symmetry import GradNorm, Group, equivariance_penalty, transform_example
from workers.symmetry.testing import point_clouds, seeded_mlp


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).mean()


# -- the penalty -----------------------------------------------------------------------------------

def test_penalty_is_zero_for_the_identity_on_points():
    """f(x) = pos with target y = pos is exactly S_n × SE(3) equivariant: L_equi = 0."""
    gen = torch.Generator().manual_seed(71)
    inputs, mask = point_clouds(6, 5, 3, gen)
    identity = lambda x, m: x["pos"]  # noqa: E731
    penalty = equivariance_penalty(identity, mse, inputs, inputs["pos"], Group.parse("S_n x SE(3)"), POINT_KINDS,
                                   "point", mask, gen)
    assert float(penalty) < 1e-28


def test_penalty_is_zero_for_a_canonicalized_model_and_positive_for_its_base():
    gen = torch.Generator().manual_seed(72)
    inputs, mask = point_clouds(6, 5, 3, gen)
    group = Group.parse("S_n x SE(3)")
    model = build(group, "canonical", inputs, POINT_KINDS, "point", (5, 3)).eval()
    symmetrized = lambda x, m: model(x, m).output  # noqa: E731
    bare = lambda x, m: model.base({**x, "mask": m})  # noqa: E731
    with torch.no_grad():
        target = symmetrized(inputs, mask)  # the task loss is 0 for both: only equivariance is measured
        penalty = equivariance_penalty(symmetrized, mse, inputs, target, group, POINT_KINDS, "point", mask, gen)
        assert float(penalty) < 1e-20
    bare_target = bare(inputs, mask).detach()
    penalty = equivariance_penalty(bare, mse, inputs, bare_target, group, POINT_KINDS, "point", mask, gen)
    assert float(penalty.detach()) > 1e-3
    penalty.backward()  # the penalty trains the base model
    assert float(model.base.net[0].weight.grad.norm()) > 0


def test_penalty_is_deterministic_given_a_generator():
    gen = torch.Generator().manual_seed(73)
    inputs, mask = point_clouds(4, 5, 2, gen)
    base = seeded_mlp({"pos": (5, 2), "vel": (5, 2)}, (5, 2), 73).double()
    model = lambda x, m: base(x)  # noqa: E731
    group = Group.parse("O(2)")
    with torch.no_grad():
        values = [float(equivariance_penalty(model, mse, inputs, inputs["vel"], group, POINT_KINDS, "vector", mask,
                                             torch.Generator().manual_seed(5))) for _ in range(2)]
    assert values[0] == values[1] > 0


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real nodes only (padding rows ignored)."""
    weights = mask.to(prediction.dtype)[..., None]
    return ((prediction - target) ** 2 * weights).sum() / (weights.sum() * prediction.shape[-1])


def test_transform_example_moves_inputs_target_and_mask_with_one_element():
    """Under S_n x SE(3) the target g·pos of f = pos is the moved input, every example keeps its real
    nodes (a uniform permutation of them; padding stays last) and padding rows stay zero."""
    gen = torch.Generator().manual_seed(76)
    inputs, mask = point_clouds(6, 5, 3, gen)
    group = Group.parse("S_n x SE(3)")
    moved = transform_example(group, inputs, inputs["pos"], POINT_KINDS, "point", mask,
                              torch.Generator().manual_seed(3))
    torch.testing.assert_close(moved.target, moved.inputs["pos"], rtol=0, atol=1e-12)
    assert torch.equal(moved.mask, mask)
    assert not torch.allclose(moved.inputs["pos"], inputs["pos"])
    assert float(moved.inputs["vel"][~moved.mask].abs().max()) == 0.0
    again = transform_example(group, inputs, inputs["pos"], POINT_KINDS, "point", mask,
                              torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(again.inputs.values(), moved.inputs.values()))


def test_a_masked_loss_sees_the_moved_mask_and_any_forward_callable_serves_as_model():
    """``masked_loss``: the loss gets the moved mask, so a loss over the real nodes is the penalty a padded
    batch needs; the model may be any callable of (inputs, mask), e.g. a training loop's own forward pass."""
    gen = torch.Generator().manual_seed(77)
    inputs, mask = point_clouds(6, 5, 3, gen)
    group = Group.parse("S_n x SE(3)")
    base = seeded_mlp({"pos": (5, 3), "vel": (5, 3)}, (5, 3), 77).double()
    calls = []

    def forward(x: dict, m: torch.Tensor) -> torch.Tensor:
        calls.append(m)
        return base(x) * m[..., None]

    with torch.no_grad():
        target = base(inputs) * mask[..., None]
        penalty = equivariance_penalty(forward, masked_mse, inputs, target, group, POINT_KINDS, "point", mask,
                                       torch.Generator().manual_seed(4), masked_loss=True)
        moved = transform_example(group, inputs, target, POINT_KINDS, "point", mask, torch.Generator().manual_seed(4))
        by_hand = masked_mse(forward(moved.inputs, moved.mask), moved.target, moved.mask)
    assert torch.equal(calls[0], moved.mask)
    assert float(penalty) == float(by_hand) > 1e-3  # the MLP is not equivariant


# -- GradNorm --------------------------------------------------------------------------------------

def losses(weights: nn.Parameter, task_value: float, equi_value: float, task_grad: torch.Tensor,
           equi_grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two losses with chosen values and chosen gradients w.r.t. ``weights`` (the last layer)."""
    moved = weights - weights.detach()  # zero, with gradient identity
    return task_value + (moved * task_grad).sum(), equi_value + (moved * equi_grad).sum()


def test_gradnorm_first_step_with_balanced_gradients_changes_nothing():
    weights = nn.Parameter(torch.zeros(4))
    grad = torch.tensor([1.0, 0.0, 0.0, 0.0])
    balancer = GradNorm(alpha=1.0, beta=1.0, lr=0.1)
    assert balancer.step(*losses(weights, 2.0, 5.0, grad, grad), weights) == (1.0, 1.0)


def test_gradnorm_lowers_the_weight_of_the_loss_that_falls_faster():
    weights = nn.Parameter(torch.zeros(4))
    grad = torch.tensor([0.0, 1.0, 0.0, 0.0])
    equi_faster = GradNorm(lr=0.05)
    equi_faster.step(*losses(weights, 1.0, 1.0, grad, grad), weights)  # L(0) = (1, 1)
    ratios = []
    for step in range(1, 6):
        alpha, beta = equi_faster.step(*losses(weights, 1.0 - 0.02 * step, 0.5 ** step, grad, grad), weights)
        ratios.append(beta / alpha)
    assert ratios[0] < 1 and all(b < a for a, b in zip(ratios, ratios[1:])), ratios

    task_faster = GradNorm(lr=0.05)
    task_faster.step(*losses(weights, 1.0, 1.0, grad, grad), weights)
    alpha, beta = task_faster.step(*losses(weights, 0.3, 0.9, grad, grad), weights)
    assert alpha < 1.0 < beta


def test_gradnorm_lowers_the_weight_of_the_larger_gradient_at_equal_rates():
    weights = nn.Parameter(torch.zeros(3))
    balancer = GradNorm(lr=0.01)
    big, small = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 1.0, 0.0])
    alpha, beta = balancer.step(*losses(weights, 1.0, 1.0, big, small), weights)
    assert alpha < 1.0 < beta


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.floats(0.0, 3.0), beta=st.floats(0.1, 3.0),
       lr=st.sampled_from([0.001, 0.05, 0.5, 5.0]), gamma=st.sampled_from([0.5, 1.0, 2.0]))
def test_gradnorm_keeps_the_sum_and_non_negative_weights(seed, alpha, beta, lr, gamma):
    gen = torch.Generator().manual_seed(seed)
    weights = nn.Parameter(torch.zeros(5))
    balancer = GradNorm(alpha, beta, lr, gamma)
    for _ in range(15):
        values = torch.rand(2, generator=gen, dtype=torch.float64) * 3 + 0.01
        grads = torch.randn(2, 5, generator=gen)
        new_alpha, new_beta = balancer.step(*losses(weights, float(values[0]), float(values[1]), *grads), weights)
        assert new_alpha >= 0.0 and new_beta >= 0.0
        assert math.isclose(new_alpha + new_beta, alpha + beta, rel_tol=1e-9, abs_tol=1e-12)
        assert (new_alpha, new_beta) == (balancer.alpha, balancer.beta)


def test_gradnorm_never_collapses_both_weights():
    """γ < 1 lets both weighted gradients exceed their targets; a large step then clamps both at
    0, where no rescaling can restore α + β. Such a step must not be taken."""
    weights = nn.Parameter(torch.zeros(2))
    balancer = GradNorm(alpha=1.0, beta=1.0, lr=5.0, gamma=0.5)
    balancer.step(*losses(weights, 1.0, 1.0, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])), weights)
    alpha, beta = balancer.step(*losses(weights, 1.9, 0.1, torch.tensor([1.5, 0.0]), torch.tensor([0.5, 0.0])),
                                weights)
    assert alpha >= 0 and beta >= 0 and math.isclose(alpha + beta, 2.0)


def test_gradnorm_on_a_real_model_has_finite_weights():
    gen = torch.Generator().manual_seed(74)
    inputs, mask = point_clouds(8, 5, 3, gen)
    base = seeded_mlp({"pos": (5, 3), "vel": (5, 3)}, (5, 3), 74).double()
    model = lambda x, m: base(x)  # noqa: E731
    group = Group.parse("O(3)")
    optimiser = torch.optim.SGD(base.parameters(), lr=0.05)
    balancer = GradNorm(lr=0.01)
    for _ in range(5):
        task = mse(model(inputs, mask), inputs["vel"])
        equi = equivariance_penalty(model, mse, inputs, inputs["vel"], group, POINT_KINDS, "vector", mask, gen)
        alpha, beta = balancer.step(task, equi, base.net[-1].weight)
        optimiser.zero_grad()
        (alpha * task + beta * equi).backward()
        optimiser.step()
        assert math.isfinite(alpha) and math.isfinite(beta) and math.isclose(alpha + beta, 2.0)


def test_gradnorm_state_dict_round_trip():
    gen = torch.Generator().manual_seed(75)
    weights = nn.Parameter(torch.zeros(4))
    schedule = [(torch.rand(2, generator=gen) + 0.1, torch.randn(2, 4, generator=gen)) for _ in range(8)]
    original = GradNorm(alpha=1.5, beta=0.5, lr=0.1, gamma=1.5)
    for values, grads in schedule[:4]:
        original.step(*losses(weights, float(values[0]), float(values[1]), *grads), weights)
    restored = GradNorm(alpha=1.5, beta=0.5, lr=0.1, gamma=1.5)
    restored.load_state_dict(original.state_dict())
    assert restored.state_dict() == original.state_dict()
    for values, grads in schedule[4:]:
        args = (weights, float(values[0]), float(values[1]), *grads)
        assert restored.step(*losses(*args), weights) == original.step(*losses(*args), weights)
    fresh = GradNorm()
    assert fresh.state_dict()["initial"] is None
