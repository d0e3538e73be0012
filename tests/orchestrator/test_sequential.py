"""The confidence sequence of ``sweep.compare``'s stopping rule, proven by simulation (vectorised, seconds):
valid under optional stopping where a peeked t-interval is not, and cheaper than a fixed design of equal power."""

import math

import numpy as np
import pytest
from scipy import stats

from orchestrator.analyses import sequential
from orchestrator.analyses.sequential import Rule, half_width, resolved, running_intervals

SWEEPS, MAX_SEEDS, INITIAL = 4000, 20, 2


def e_value(x: np.ndarray, m: float, c: float = sequential.PRIOR_PRECISION) -> float:
    """E_n(m) written out from its definition (the docstring's formula), for the closed form to be checked against."""
    y = x - m
    n, s1, s2 = len(y), y.sum(), (y * y).sum()
    return math.sqrt(c / (n + c)) * (s2 / (s2 - s1 * s1 / (n + c))) ** (n / 2)


def first_decision(low: np.ndarray, high: np.ndarray, delta=None) -> tuple[np.ndarray, np.ndarray]:
    """(decided at some n in INITIAL..MAX_SEEDS, the seeds used: the first such n, else MAX_SEEDS)."""
    hits = resolved(low, high, delta)[:, INITIAL - 1:]
    decided = hits.any(axis=-1)
    return decided, np.where(decided, hits.argmax(axis=-1) + INITIAL, MAX_SEEDS)


def test_the_closed_form_is_the_boundary_of_the_e_value():
    rng = np.random.default_rng(3)
    alpha = 0.05
    for n in (4, 5, 9, 30):
        x = rng.normal(0.3, 2.0, n)
        width = float(half_width(n, ((x - x.mean()) ** 2).sum(), 1 - alpha))
        assert math.isfinite(width)
        assert e_value(x, x.mean() + 0.999 * width) < 1 / alpha < e_value(x, x.mean() + 1.001 * width)
        assert e_value(x, x.mean() - 1.001 * width) > 1 / alpha
    # unbounded while ((n + c) / c)^((n - 1) / 2) < 1/alpha: n = 2, 3 at c = 0.25 and 95 %
    assert np.isinf(half_width(np.array([1, 2, 3]), np.array([1.0, 1.0, 1.0]), 0.95)).all()
    assert np.isfinite(half_width(4, 1.0, 0.95))


def test_no_true_difference_the_cs_keeps_its_error_rate_and_the_peeked_t_interval_does_not():
    rng = np.random.default_rng(20261208)
    x = rng.normal(0.0, 1.0, (SWEEPS, MAX_SEEDS))
    declared, _ = first_decision(*running_intervals(x, 0.95))
    rate = declared.mean()
    # the t-interval read after every seed, stopping at the first that excludes 0
    n = np.arange(1, MAX_SEEDS + 1)
    mean = np.cumsum(x, axis=-1) / n
    sd = np.sqrt(np.maximum(np.cumsum(x * x, axis=-1) - n * mean ** 2, 0) / np.maximum(n - 1, 1))
    quantile = stats.t.ppf(0.975, np.maximum(n - 1, 1))
    peeked = (np.abs(mean) > quantile * sd / np.sqrt(n))[:, INITIAL - 1:].any(axis=-1).mean()
    print(f"false discoveries in {SWEEPS} sweeps: CS {rate:.4f}, peeked t-interval {peeked:.4f}")
    slack = 3 * math.sqrt(0.05 * 0.95 / SWEEPS)  # Monte-Carlo error of a rate of exactly 0.05
    assert rate <= 0.05 + slack
    assert peeked > 0.05 and stats.binomtest(int(peeked * SWEEPS), SWEEPS, 0.05, "greater").pvalue < 1e-6


def test_a_true_difference_resolves_in_fewer_seeds_than_a_fixed_design_of_equal_power():
    rng = np.random.default_rng(7)
    effect = 1.5  # in units of the differences' standard deviation
    x = rng.normal(effect, 1.0, (SWEEPS, MAX_SEEDS))
    low, high = running_intervals(x, 0.95)
    decided, used = first_decision(low, high)
    right = decided & (low[np.arange(SWEEPS), used - 1] > 0)
    power = right.mean()

    def fixed_power(k: int) -> float:
        critical = stats.t.ppf(0.975, k - 1)
        return float(stats.nct.sf(critical, k - 1, effect * math.sqrt(k)))

    fixed = next(k for k in range(2, 200) if fixed_power(k) >= power)
    print(f"power {power:.4f}: mean seeds {used.mean():.2f} against a fixed design of {fixed} seeds")
    assert power > 0.95
    assert used.mean() < fixed - 2


def test_equivalence_within_delta_and_the_rule_decisions():
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 0.1, (SWEEPS, MAX_SEEDS))
    low, high = running_intervals(x, 0.95)
    decided, used = first_decision(low, high, delta=0.5)
    inside = (low[np.arange(SWEEPS), used - 1] > -0.5) & (high[np.arange(SWEEPS), used - 1] < 0.5)
    assert decided.mean() > 0.99 and inside[decided].all()
    # a true difference of 2 delta is called equivalent at most 1 - confidence of the time
    y = rng.normal(1.0, 1.0, (SWEEPS, MAX_SEEDS))
    low, high = running_intervals(y, 0.95)
    wrong = ((low > -0.5) & (high < 0.5)).any(axis=-1).mean()
    assert wrong <= 0.05


def test_the_rule_asks_for_one_more_seed_until_decided():
    rule = Rule("resolved", max_seeds=6)
    assert rule.seeds_needed([0.1, -0.2], initial=2) == 3
    assert rule.seeds_needed([0.1, -0.2, 0.3, -0.1, 0.2, 0.0], initial=2) == 6  # at max_seeds: decided
    clear = [10.0, 10.1, 9.9, 10.05]
    assert rule.seeds_needed(clear, initial=2) == 4  # unbounded before 4 pairs at 95 %
    assert rule.seeds_needed(clear + [10.0, 10.0], initial=2) == 4  # a later seed does not move the decision
    assert Rule.of({"key": "k", "reference": 1}) is None
    with pytest.raises(KeyError):
        Rule.of({"until": "resolved"})


def test_the_verdicts_name_the_values():
    rule = Rule("resolved", max_seeds=6, delta=0.5)
    lower = [-1.0, -1.1, -0.9, -1.05]  # value − reference < 0 on every seed
    assert rule.verdict(lower, "ps", "ga", "min") == "ps better than ga (95 % confidence sequence)"
    assert rule.verdict(lower, "ps", "ga", "max") == "ga better than ps (95 % confidence sequence)"
    assert rule.verdict(lower, "ps", "ga", None) == "ps differs from ga (95 % confidence sequence; which is " \
        "better is unknown)"
    same = [0.01, -0.01, 0.0, 0.005, -0.004, 0.002]
    assert rule.verdict(same, "ps", "ga", "min") == "ps equivalent to ga within ±0.5 (95 % confidence sequence)"
    noisy = [1.0, -1.2, 0.3, -0.2, 0.9, -1.0]
    assert rule.verdict(noisy, "ps", "ga", "min") == "unresolved at max_seeds=6 (95 % confidence sequence)"
    assert rule.verdict(noisy[:3], "ps", "ga", "min") == "undecided after 3 seeds (the sweep stopped before the " \
        "rule did)"
    assert Rule("resolved", 6, confidence=0.9).verdict(lower, "a", "b", "min") == "a better than b (90 % " \
        "confidence sequence)"
