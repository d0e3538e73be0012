"""An anytime-valid confidence sequence for the mean of paired differences, and the stopping rule built on it.

Why not the t-interval: ``sweep.compare`` with ``until: resolved`` looks at the interval after every seed and
stops a comparison as soon as it excludes 0. A fixed-sample 95 % t-interval read that way declares a difference
that is not there far more often than 5 % of the time (``tests/orchestrator/test_sequential.py`` measures it).
A confidence sequence (CS) holds at every number of seeds at once: P(the mean is outside the interval at SOME
n) <= 1 - confidence, so stopping whenever it excludes 0 keeps the error rate.

The method: the scale-invariant Gaussian mixture (a t-test Bayes factor) as an e-process.
For differences X_1, X_2, ... i.i.d. N(mu, sigma^2) with mu and sigma unknown, test mu = m with the
statistics y_i = x_i - m. With the effect size theta = (mean - m) / sigma given a N(0, 1/c) mixture and sigma the
right-Haar prior d sigma / sigma on both hypotheses, the likelihood ratio of the scale-invariant statistics is

    E_n(m) = sqrt(c / (n + c)) * ( S2 / (S2 - S1^2 / (n + c)) ) ^ (n / 2),    S1 = sum y_i,  S2 = sum y_i^2

(E_1 = 1). It is a nonnegative martingale under mu = m (group invariance: Lai 1976, "On confidence sequences",
Ann. Statist. 4(2), the invariant mixture; Perez-Ortiz, Lardy, de Heide & Grunwald 2024, "E-statistics, group
invariance and anytime-valid testing", Ann. Statist. 52(4); the same Bayes factor is the "safe t-test" of
Grunwald, de Heide & Koolen 2024, JRSS-B), so by Ville's inequality P(exists n: E_n(m) >= 1/alpha) <= alpha, and
{m : E_n(m) < 1/alpha} is a (1 - alpha) confidence sequence. E_n(m) grows with |xbar_n - m|, so each set is an
interval around the mean, in closed form (``half_width``); it is unbounded until
((n + c) / c)^((n - 1) / 2) >= 1/alpha (with c = ``PRIOR_PRECISION`` = 0.25 and 95 %: from 4 pairs on).

Why not a library: ``confseq`` (0.0.11, January 2023, the only one on PyPI) ships an sdist only, whose build
needs Boost and CMake (``pip install -c constraints.txt confseq`` fails: "Could NOT find Boost"), and its
boundaries are for sub-Gaussian/sub-exponential or bounded increments with a known scale; the closed form
below is a few lines of numpy.

Assumption, stated honestly: the paired differences are independent, identically distributed and Gaussian
(their variance unknown). Metric differences of seeds are not exactly Gaussian; the guarantee is exact for
Gaussian differences and approximate otherwise (heavy tails or strong skew can break it). The order of the
pairs is the order of the seeds, fixed before any result: a decision at n uses the first n seeds only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from workers.checks import fail, is_int

PRIOR_PRECISION = 0.25  # c: the mixture's effect size theta ~ N(0, 1/c), i.e. a standard deviation of 2 sigma
RULES = ("resolved",)


def log_threshold(confidence: float) -> float:
    return math.log(1.0 / (1.0 - confidence))


def half_width(n: np.ndarray | int, ss: np.ndarray | float, confidence: float,
               c: float = PRIOR_PRECISION) -> np.ndarray:
    """Half-width of the CS's interval at n pairs whose sum of squared deviations from their mean is ``ss``
    (vectorised; inf where the interval is unbounded).

    With d = xbar - m, S2 = ss + n d^2 and S1 = n d, E_n(m) >= 1/alpha reads (ss + n d^2) / (ss + k d^2) >= r with
    k = n c / (n + c) and r = (sqrt((n + c) / c) / alpha)^(2 / n); the boundary is d^2 = ss (r - 1) / (n - r k)."""
    n = np.asarray(n, dtype=float)
    ss = np.asarray(ss, dtype=float)
    log_r = (2.0 / n) * (0.5 * np.log((n + c) / c) + log_threshold(confidence))
    r = np.exp(log_r)
    k = n * c / (n + c)
    denominator = n - r * k
    with np.errstate(divide="ignore", invalid="ignore"):
        width = np.sqrt(ss * (r - 1.0) / denominator)
    return np.where((denominator > 0) & (n >= 2), width, np.inf)


def running_intervals(differences: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the CS after 1, 2, ..., n pairs along the last axis, each the running intersection of the
    intervals so far (still a (1 - alpha) confidence sequence). Vectorised over leading axes."""
    x = np.asarray(differences, dtype=float)
    n = np.arange(1, x.shape[-1] + 1, dtype=float)
    mean = np.cumsum(x, axis=-1) / n
    ss = np.maximum(np.cumsum(x * x, axis=-1) - n * mean * mean, 0.0)
    width = half_width(n, ss, confidence)
    low = np.maximum.accumulate(np.where(np.isfinite(width), mean - width, -np.inf), axis=-1)
    high = np.minimum.accumulate(np.where(np.isfinite(width), mean + width, np.inf), axis=-1)
    return low, high


def resolved(low: np.ndarray | float, high: np.ndarray | float, delta: float | None) -> np.ndarray:
    """Whether an interval decides: it excludes 0, or (with ``delta``) lies inside (-delta, delta)."""
    low, high = np.asarray(low), np.asarray(high)
    out = (low > 0) | (high < 0)
    if delta is not None:
        out = out | ((low > -delta) & (high < delta))
    return out


@dataclass(frozen=True)
class Rule:
    """``sweep.compare``'s stopping rule: seeds are added to a compared pair, one at a time, until its
    confidence sequence resolves it or it has ``max_seeds`` seeds."""

    until: str  # "resolved"
    max_seeds: int
    confidence: float = 0.95
    delta: float | None = None

    @classmethod
    def of(cls, spec: dict | None) -> Rule | None:
        if not spec or spec.get("until") is None:
            return None
        return cls(spec["until"], int(spec["max_seeds"]), float(spec.get("confidence") or 0.95), spec.get("delta"))

    def text(self) -> str:
        within = f", equivalence within ±{self.delta:g}" if self.delta is not None else ""
        return (f"until resolved ({100 * self.confidence:g} % confidence sequence{within}), at most "
                f"{self.max_seeds} seeds")

    def interval(self, differences: Sequence[float]) -> tuple[float, float]:
        """The CS's interval after all of ``differences`` (in seed order); (-inf, inf) before two pairs."""
        if len(differences) == 0:
            return -math.inf, math.inf
        low, high = running_intervals(np.asarray(differences, dtype=float), self.confidence)
        return float(low[-1]), float(high[-1])

    def decided(self, differences: Sequence[float]) -> bool:
        """Whether the comparison needs no more seeds: resolved, or at ``max_seeds``."""
        return len(differences) >= self.max_seeds or bool(resolved(*self.interval(differences), self.delta))

    def seeds_needed(self, differences: Sequence[float], initial: int) -> int:
        """How many seeds the rule asks of this pair given the prefix of its differences: the first n at which it
        decided (at least ``initial``), or one more than it has while undecided."""
        for n in range(initial, len(differences) + 1):
            if self.decided(differences[:n]):
                return n
        return min(self.max_seeds, max(initial, len(differences) + 1))

    def verdict(self, differences: Sequence[float], value: str, reference: str, mode: str | None) -> str:
        """In words, naming the values: which is better, equivalent within ±delta, unresolved at max_seeds, or
        still undecided (the sweep has not asked for the next seed yet, or was stopped)."""
        level = f"{100 * self.confidence:g} % confidence sequence"
        n = len(differences)
        low, high = self.interval(differences)
        if low > 0 or high < 0:
            if mode is None:
                return f"{value} differs from {reference} ({level}; which is better is unknown)"
            first_better = (high < 0) == (mode == "min")
            winner, loser = (value, reference) if first_better else (reference, value)
            return f"{winner} better than {loser} ({level})"
        if self.delta is not None and -self.delta < low and high < self.delta:
            return f"{value} equivalent to {reference} within ±{self.delta:g} ({level})"
        if n >= self.max_seeds:
            return f"unresolved at max_seeds={self.max_seeds} ({level})"
        return f"undecided after {n} seed{'s' * (n != 1)} (the sweep stopped before the rule did)"


def check_sweep(sweep: Any) -> None:
    """What a stopping rule (``sweep.compare.until``) needs of the rest of the sweep section (its own keys:
    ``compare.check_rule``); ``sweep`` is ``workers.schema.SweepSettings``."""
    compare = sweep.compare if isinstance(sweep.compare, Mapping) else {}
    if compare.get("until") is None:
        return
    if sweep.search == "optuna":
        fail("sweep.search", "optuna", "grid or random with sweep.compare.until (the rule adds seeds to the plan's "
             "configurations; Optuna proposes new configurations)")
    if sweep.scheduler == "asha":
        fail("sweep.scheduler", "asha", "none with sweep.compare.until (a trial ASHA stops early has no final metric "
             "to pair)")
    if sweep.seeds < 2:
        fail("sweep.seeds", sweep.seeds, "at least 2 with sweep.compare.until (the seeds every configuration starts "
             "with; the rule adds more)")
    if is_int(compare.get("max_seeds")) and compare["max_seeds"] < sweep.seeds:
        fail("sweep.compare.max_seeds", compare["max_seeds"], f"at least sweep.seeds={sweep.seeds}")
