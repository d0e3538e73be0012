"""``sweep.compare`` — ``{key, reference, metric}``: every other value of a swept key against the reference
value, paired seed by seed among configurations whose other swept values are equal: the differences
metric(value) − metric(reference) of the completed seeds present on both sides, their mean, standard error,
a 95 % t-interval and the number of pairs (``compare.csv``, ``compare_<metric>.png``, a section of
summary.md). One pair has no uncertainty, and says so.

With ``until: resolved`` (and ``max_seeds``, optionally ``confidence`` and an equivalence margin ``delta``) the
sweep adds seeds to each compared pair until it is resolved (``orchestrator.stopping``); the decision interval is
then the anytime-valid confidence sequence of ``orchestrator.analyses.sequential`` over the pairs of the first
seeds in order (a t-interval read after every seed would find differences that are not there), and compare.csv
says the seeds used, the rule and its verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import stats as scipy_stats

from orchestrator.aggregate import SEED_KEY, Configuration, Summary, Table, _order, markdown_cell, text
from orchestrator.analyses import Analysis, Context, register_analysis
from orchestrator.analyses.sequential import RULES, Rule
from orchestrator.folder import one_line
from workers.checks import fail

KEYS = ("key", "reference", "metric")  # metric is optional (default: the sweep metric)
RULE_KEYS = ("until", "max_seeds", "confidence", "delta")  # the stopping rule, all optional (until: none)


@dataclass(frozen=True)
class Comparison:
    """``metric`` at ``key`` = ``value`` minus at ``key`` = ``reference``, paired by seed, other values equal."""

    key: str
    value: Any
    reference: Any
    metric: str
    mode: str | None  # "min" | "max": which sign of the difference is better (None: the direction is unknown)
    values: dict[str, Any]  # the other swept keys
    seeds: list[Any]  # the paired seeds
    differences: list[float]  # value − reference, one per paired seed
    value_mean: float  # over the paired seeds
    reference_mean: float
    rule: Rule | None = None  # sweep.compare's stopping rule: the interval is its confidence sequence
    seeds_used: int = 0  # completed trials of the compared value (the seeds the rule gave this pair)

    @property
    def pairs(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences)) if self.differences else math.nan

    @property
    def std_error(self) -> float:
        return float(np.std(self.differences, ddof=1) / math.sqrt(self.pairs)) if self.pairs > 1 else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % confidence interval of the mean difference (t-distribution, pairs − 1 degrees of freedom); with
        a stopping rule, its confidence sequence's interval (valid whenever the sweep stopped adding seeds)."""
        if self.rule is not None:
            return self.rule.interval(self.differences)
        if self.pairs < 2:
            return math.nan, math.nan
        half = float(scipy_stats.t.ppf(0.975, self.pairs - 1)) * self.std_error
        return self.mean - half, self.mean + half

    def verdict(self) -> str:
        """In words: which side is better at 95 %, or why nothing can be said."""
        if self.rule is not None:
            return self.rule.verdict(self.differences, text(self.value), text(self.reference), self.mode)
        if self.pairs == 0:
            return "no paired seeds"
        if self.pairs == 1:
            return "one seed: no uncertainty (run sweep.seeds >= 2)"
        low, high = self.interval
        if low <= 0 <= high:
            return "no significant difference (95 %)"
        if self.mode is None:
            return f"{text(self.value)} differs from {text(self.reference)} (95 %; which is better is unknown)"
        better = (high < 0) == (self.mode == "min")
        return f"{text(self.value)} {'better' if better else 'worse'} than {text(self.reference)} (95 %)"

    def label(self) -> str:
        return ", ".join([f"{self.key}={text(self.value)}"] + [f"{k}={text(v)}" for k, v in self.values.items()])

    @classmethod
    def paired(cls, key: str, value: Any, reference: Any, metric: str, mode: str | None, values: dict[str, Any],
               ours: Mapping[str, float], theirs: Mapping[str, float], rule: Rule | None = None) -> Comparison:
        """The comparison of two sides' metric by seed (``by_seed``): value − reference on every seed both have.
        One implementation for ``sweep.compare`` (two values of a key in one experiment) and for
        ``orchestrator.comparison.compare_experiments`` (one configuration in two experiments)."""
        seeds = sorted(set(ours) & set(theirs), key=lambda seed: _order(seed))
        first, second = [ours[s] for s in seeds], [theirs[s] for s in seeds]
        return cls(key, value, reference, metric, mode, values, seeds, [a - b for a, b in zip(first, second)],
                   float(np.mean(first)) if seeds else math.nan, float(np.mean(second)) if seeds else math.nan,
                   rule, max(len(ours), len(theirs)))


def in_order(side: Mapping[str, float], other: Mapping[str, float], base_seed: Any) -> dict[str, float]:
    """``side`` cut to the seeds base_seed, base_seed + 1, ... that both sides completed, up to the first gap: the
    order a confidence sequence reads its pairs in (fixed before any result)."""
    out, seed = {}, int(base_seed)
    while text(seed) in side and text(seed) in other:
        out[text(seed)] = side[text(seed)]
        seed += 1
    return out


def by_seed(configuration: Configuration, metric: str, base_seed: Any = 0) -> dict[str, float]:
    """``metric`` of each completed trial of ``configuration`` that reported a finite value, by its seed (as text;
    ``base_seed`` for a trial that does not sweep the seed): one side of a paired comparison."""
    return {text(t.params.get(SEED_KEY, base_seed)): t.last[metric] for t in configuration.trials
            if t.state == "completed" and isinstance(t.last.get(metric), (int, float))
            and math.isfinite(t.last[metric])}


def comparisons(summary: Summary, spec: Mapping[str, Any], base_seed: Any = 0) -> list[Comparison]:
    """Every other value of ``spec['key']`` against its reference, per set of other swept values."""
    if not spec or not spec.get("metric"):
        return []
    key, reference, metric = spec["key"], spec["reference"], spec["metric"]
    rule = Rule.of(spec)
    others = [other for other in summary.keys if other != key]

    def same_others(c: Configuration) -> str:
        return repr([text(c.values.get(o)) for o in others])

    references = {same_others(c): c for c in summary.configurations if c.values.get(key) == reference}
    found = []
    for configuration in summary.configurations:
        partner = references.get(same_others(configuration))
        if key not in configuration.values or configuration.values[key] == reference or partner is None:
            continue
        ours, theirs = by_seed(configuration, metric, base_seed), by_seed(partner, metric, base_seed)
        ran = len(ours)  # the seeds this value ran (a reference shared by several pairs may have run more)
        if rule is not None:
            ours, theirs = in_order(ours, theirs, base_seed), in_order(theirs, ours, base_seed)
        found.append(replace(Comparison.paired(key, configuration.values[key], reference, metric,
                                               summary.directions.get(metric),
                                               {o: configuration.values[o] for o in others}, ours, theirs, rule),
                             seeds_used=ran))
    return sorted(found, key=lambda c: [_order(v) for v in (c.value, *c.values.values())])


def _number(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4g}"


def better(mode: str | None) -> str:
    """Which sign of a difference is better, in words."""
    return {"min": "lower is better", "max": "higher is better"}.get(mode, "which is better is unknown")


@register_analysis
class Compare(Analysis):
    key = "compare"
    many = False
    file = "compare.csv"

    @classmethod
    def check(cls, entry: Any, where: str, context: Context) -> dict[str, Any]:
        shape = ("null or {key: <swept key>, reference: <one of its values>} and optionally metric: <reported metric>,"
                 " until: resolved, max_seeds, confidence, delta")
        if not isinstance(entry, Mapping) or not {"key", "reference"} <= set(entry) <= set(KEYS + RULE_KEYS):
            fail(where, entry, shape)
        check_rule(entry, where)
        domain = context.swept(f"{where}.key", entry["key"])
        if not domain.listed or len(domain.values) < 2:
            fail(f"{where}.key", entry["key"], "a key swept with {grid: [...]} or {choice: [...]} over at least two "
                 "values (configurations are paired by equal values)")
        if entry["reference"] not in domain.values:
            fail(f"{where}.reference", entry["reference"], f"one of the values of sweep.params.{entry['key']}: "
                 f"{list(domain.values)}")
        if entry.get("metric") is not None:
            context.check_metric(f"{where}.metric", entry["metric"])
        return cls.read(entry, context)

    @classmethod
    def read(cls, entry: Mapping[str, Any], context: Context) -> dict[str, Any]:
        return {**entry, "metric": entry.get("metric") or context.metric}

    def line(self) -> str:
        spec, rule = self.spec, Rule.of(self.spec)
        return (f"compare: {spec['key']}: every value against {spec['reference']}, paired by seed, on "
                f"{spec['metric']}" + (f", {rule.text()}" if rule else "") + f" ({self.file})")

    def compute(self, summary: Summary) -> list[Comparison]:
        spec = {**self.spec, "metric": self.spec.get("metric") or summary.metric}
        return comparisons(summary, spec, summary.base_seed)

    def why_empty(self, summary: Summary) -> str:
        key, reference = self.spec["key"], self.spec["reference"]
        if not any(configuration.n_seeds for configuration in summary.configurations):
            return super().why_empty(summary)
        if key not in summary.keys:
            return f"{key} is not swept in this experiment's trials"
        values = {text(c.values.get(key)) for c in summary.configurations}
        if text(reference) not in values:
            return f"no configuration with {key}={text(reference)} (the reference) has run"
        if len(values) < 2:
            return f"no configuration with another value of {key} has run"
        return (f"no configuration of another {key} has the same other swept values as one of {key}="
                f"{text(reference)} (nothing to pair it with)")

    @classmethod
    def table(cls, summary: Summary, found: list[Comparison]) -> Table:
        """key, value, reference, the other swept keys, metric, pairs, the mean paired difference, its standard
        error and 95 % interval, both sides' means over the pairs, and the verdict in words."""
        keys = [key for key in summary.keys if any(key in c.values for c in found)]
        rule = next((c.rule for c in found if c.rule is not None), None)
        low, high = ("cs_low", "cs_high") if rule else ("ci95_low", "ci95_high")  # with a rule: its CS's interval
        header = ["key", "value", "reference", *keys, "metric", "pairs", "mean_difference", "std_error", low, high,
                  "value_mean", "reference_mean", "verdict", *(["seeds_used", "rule"] if rule else [])]
        return header, [[c.key, c.value, c.reference, *(c.values.get(k) for k in keys), c.metric, c.pairs, c.mean,
                         c.std_error, *c.interval, c.value_mean, c.reference_mean, c.verdict(),
                         *([c.seeds_used, rule.text()] if rule else [])] for c in found]

    @classmethod
    def markdown(cls, summary: Summary, found: list[Comparison]) -> str:
        """The paired comparisons as a Markdown section (empty without any)."""
        if not found:
            return ""
        first = found[0]
        keys = [key for key in summary.keys if key in first.values]
        rule = first.rule
        how = (f"the {100 * rule.confidence:g} % confidence sequence of the first seeds in order (anytime-valid; "
               f"seeds were added {rule.text()})") if rule else "95 % t-interval"
        lines = [one_line(f"## {first.metric}: each {first.key} against {text(first.reference)}, paired by seed"), "",
                 one_line(f"Difference = {text(first.key)} value − {text(first.reference)} on the same seed "
                          f"({better(first.mode)}); mean ± standard error over the pairs, {how}."), "",
                 "| " + " | ".join(map(markdown_cell, [first.key, *keys, "pairs", "difference",
                                                       "interval" if rule else "95 % interval", "verdict"])) + " |",
                 "|" + "---|" * (1 + len(keys)) + "---:|---:|---:|---|"]
        for c in found:
            low, high = c.interval
            difference = f"{_number(c.mean)} ± {_number(c.std_error)}" if c.pairs > 1 else _number(c.mean)
            interval = f"[{_number(low)}, {_number(high)}]" if c.pairs > 1 else "-"
            interval = interval.replace("-inf", "−∞").replace("inf", "∞")
            cells = [text(c.value), *(text(c.values[k]) for k in keys), str(c.pairs), difference, interval,
                     c.verdict()]
            lines.append("| " + " | ".join(map(markdown_cell, cells)) + " |")
        return "\n".join(lines) + "\n"

    def figures(self, summary: Summary, found: list[Comparison], directory: Path) -> list[Path | None]:
        from orchestrator.figures import safe_name

        found = [c for c in found if c.pairs]
        return [figure(summary, found, directory / safe_name(f"compare_{found[0].metric}.png"))] if found else []


def figure(summary: Summary, found: list[Comparison], path: Path) -> Path:
    """Each paired difference (value − reference) with its 95 % interval, a line at 0."""
    from matplotlib.figure import Figure

    from orchestrator.figures import save, short_names

    shorten = short_names(summary)
    ticks = [f"{shorten(c.label())} ({c.pairs} pair{'s' * (c.pairs != 1)})" for c in found]
    drawing = Figure(figsize=(5 + 0.075 * max(map(len, ticks)), 1.8 + 0.45 * len(found)), layout="constrained")
    axes = drawing.subplots()
    rows = np.arange(len(found))[::-1]
    for row, comparison in zip(rows, found):
        low, high = comparison.interval
        if comparison.pairs > 1 and math.isfinite(low) and math.isfinite(high):
            axes.errorbar(comparison.mean, row, xerr=[[comparison.mean - low], [high - comparison.mean]], marker="o",
                          capsize=3, color="tab:blue")
        else:
            axes.plot(comparison.mean, row, marker="o", markerfacecolor="none", color="tab:grey")
    axes.axvline(0.0, color="black", linewidth=1)
    axes.set_yticks(rows, ticks, fontsize="small")
    axes.set_xlabel(f"{found[0].metric}: value − {text(found[0].reference)}, same seed ({better(found[0].mode)})")
    one = any(c.pairs == 1 for c in found)
    kind = "confidence sequences" if found[0].rule else "95 % t-intervals"
    drawing.suptitle(f"{summary.name}: paired differences against {text(found[0].reference)}, {kind}"
                     + ("\n(hollow: one pair, no interval)" if one else ""), fontsize="medium")
    return save(drawing, path)


def check_rule(entry: Mapping[str, Any], where: str) -> None:
    """The stopping rule's keys of ``sweep.compare`` (those that depend on sweep.seeds: ``plan._check_sweep``)."""
    from workers.checks import is_int, is_number

    until = entry.get("until")
    if until is None:
        for key in RULE_KEYS[1:]:
            if entry.get(key) is not None:
                fail(f"{where}.{key}", entry[key], f"absent without {where}.until (set until: resolved to add seeds "
                     "until each comparison is resolved)")
        return
    if until not in RULES:
        fail(f"{where}.until", until, f"one of {', '.join(RULES)} (or absent: a fixed number of seeds)")
    seeds = entry.get("max_seeds")
    if not is_int(seeds) or seeds < 2:
        fail(f"{where}.max_seeds", seeds, f"an integer >= 2 (and >= sweep.seeds) with {where}.until")
    confidence = entry.get("confidence", 0.95)
    if not is_number(confidence) or not 0 < confidence < 1:
        fail(f"{where}.confidence", confidence, "a number strictly between 0 and 1 (default 0.95)")
    delta = entry.get("delta")
    if delta is not None and (not is_number(delta) or not 0 < delta < math.inf):
        fail(f"{where}.delta", delta, "a number > 0 (the equivalence margin, in units of the metric) or absent")
