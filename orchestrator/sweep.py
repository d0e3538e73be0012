"""The sweep spec: validation of everything a sweep needs before anything starts, and the Ray Tune
search space.

``sweep.params`` maps dotted keys of the trial config to one domain each: ``{grid: [...]}``,
``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}`` or ``{randint: [lo, hi]}``
(both ends included). ``sweep.seeds`` repeats every configuration with ``trainer.seed`` = base seed,
base seed + 1, ... Every trial configuration the grid can produce (and both ends of every range) is
checked with the trial's own validation, so a bad combination fails here, not hours later.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any, Mapping

from orchestrator.config import trial_config

DOMAINS = ("grid", "choice", "uniform", "loguniform", "randint")
SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("none", "asha")
TRIAL_SECTIONS = ("task", "group", "symmetrizer", "model", "trainer", "remul")
WANDB_MODES = (None, "offline", "online", "disabled")
_MAX_CHECKED = 2000  # configurations checked one by one; beyond, each value is checked on its own
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=,+-]*$")
DERIVED_KEYS = ("name", "metric", "key", "numerator", "denominator")
LOGLOG_KEYS = ("metric", "key", "complement")  # complement is optional (default false)
COMPARE_KEYS = ("key", "reference", "metric")  # metric is optional (default: the sweep metric)
# reported by every trainable trial besides <split>_<task metric>
LOOP_METRICS = ("train_loss", "entropy", "equivariance_gap", "mc_equivariance_error", "elapsed_s", "samples_per_s",
                "examples_per_s", "lr", "best_epoch", "epoch")


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{key}={value!r} is not allowed; expected {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _has_key(config: Mapping[str, Any], dotted: str) -> bool:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def check_domain(key: str, domain: Any) -> None:
    where = f"sweep.params.{key}"
    if not isinstance(domain, Mapping) or len(domain) != 1 or next(iter(domain)) not in DOMAINS:
        _fail(where, domain, "one of {grid: [...]}, {choice: [...]}, {uniform: [lo, hi]}, {loguniform: [lo, hi]}, "
              "{randint: [lo, hi]}")
    (kind, values), = domain.items()
    if kind in ("grid", "choice"):
        if not isinstance(values, list) or not values:
            _fail(f"{where}.{kind}", values, "a non-empty list of values")
        return
    if not isinstance(values, list) or len(values) != 2 or not all(_is_number(v) for v in values) or values[0] >= values[1]:
        _fail(f"{where}.{kind}", values, "[lo, hi] with numbers lo < hi")
    if kind == "loguniform" and values[0] <= 0:
        _fail(f"{where}.{kind}", values, "[lo, hi] with 0 < lo < hi")
    if kind == "randint" and not all(_is_int(v) for v in values):
        _fail(f"{where}.{kind}", values, "[lo, hi] with integers lo < hi")


def check_sweep(config: Mapping[str, Any]) -> None:
    """Sweep, cluster, logging and naming settings (not the trial configs)."""
    sweep = config["sweep"]
    params = sweep.get("params") or {}
    trial = trial_config(dict(config))
    for key, domain in params.items():
        if key.split(".")[0] not in TRIAL_SECTIONS or not _has_key(trial, key):
            raise ValueError(f"sweep.params.{key}: {key!r} is not a key of the trial config; sweepable keys live under "
                             f"{', '.join(TRIAL_SECTIONS)} (e.g. symmetrizer.noise_scale, group.name, trainer.lr)")
        check_domain(key, domain)
    if not (_is_int(sweep["seeds"]) and sweep["seeds"] >= 1):
        _fail("sweep.seeds", sweep["seeds"], "an integer ≥ 1")
    if sweep["seeds"] > 1 and "trainer.seed" in params:
        raise ValueError("sweep.seeds and sweep.params.trainer.seed both set the seed; use one of them")
    if not (_is_int(sweep["num_samples"]) and sweep["num_samples"] >= 1):
        _fail("sweep.num_samples", sweep["num_samples"], "an integer ≥ 1")
    if sweep["search"] not in SEARCHES:
        _fail("sweep.search", sweep["search"], f"one of {', '.join(SEARCHES)}")
    if sweep["scheduler"] not in SCHEDULERS:
        _fail("sweep.scheduler", sweep["scheduler"], f"one of {', '.join(SCHEDULERS)}")
    if sweep["mode"] not in (None, "min", "max"):
        _fail("sweep.mode", sweep["mode"], "null, min or max")
    if sweep["metric"] is not None and not isinstance(sweep["metric"], str):
        _fail("sweep.metric", sweep["metric"], "null or a reported metric name, e.g. best_val_accuracy")
    if sweep["max_concurrent"] is not None and not (_is_int(sweep["max_concurrent"]) and sweep["max_concurrent"] >= 1):
        _fail("sweep.max_concurrent", sweep["max_concurrent"], "null or an integer ≥ 1")
    if sweep["search"] == "optuna":
        if any(next(iter(d)) == "grid" for d in params.values()):
            raise ValueError("sweep.search='optuna' cannot take {grid: [...]} domains; use {choice: [...]}")
        if sweep["seeds"] > 1:
            _fail("sweep.seeds", sweep["seeds"], "1 with sweep.search='optuna' (Optuna proposes each trial once)")
    check_derived(config)
    check_loglog(config)
    check_compare(config)
    cluster = config["cluster"]
    if cluster["address"] is not None and not isinstance(cluster["address"], str):
        _fail("cluster.address", cluster["address"], "null (embedded local Ray), 'auto' or 'ray://host:port'")
    if not (_is_number(cluster["cpus_per_trial"]) and cluster["cpus_per_trial"] > 0):
        _fail("cluster.cpus_per_trial", cluster["cpus_per_trial"], "a number > 0")
    if not (_is_number(cluster["gpus_per_trial"]) and cluster["gpus_per_trial"] >= 0):
        _fail("cluster.gpus_per_trial", cluster["gpus_per_trial"], "a number ≥ 0 (fractions share a GPU)")
    if cluster["num_cpus"] is not None and not (_is_int(cluster["num_cpus"]) and cluster["num_cpus"] >= 1):
        _fail("cluster.num_cpus", cluster["num_cpus"], "null or an integer ≥ 1")
    if not (_is_int(cluster["max_failures"]) and cluster["max_failures"] >= -1):
        _fail("cluster.max_failures", cluster["max_failures"], "an integer ≥ 0 (or -1: retry forever)")
    if not isinstance(cluster["dashboard"], bool):
        _fail("cluster.dashboard", cluster["dashboard"], "true or false")
    wandb = config["logging"]["wandb"]
    if wandb["mode"] not in WANDB_MODES:
        _fail("logging.wandb.mode", wandb["mode"], "null, offline, online or disabled")
    if config["name"] is not None and not (isinstance(config["name"], str) and _NAME.match(config["name"])):
        _fail("name", config["name"], "letters, digits and _ . = , + - (no slashes or spaces)")
    if not isinstance(config["storage"], str) or not config["storage"]:
        _fail("storage", config["storage"], "a directory path (shared by every node on a multi-node cluster)")


def _check_metric(where: str, metric: Any, config: Mapping[str, Any]) -> None:
    """A metric name the trials of this task report: [best_]<split>_<task metric> or a loop metric."""
    from workers.tasks import task_class

    task = task_class(config["task"]["name"])
    words = [task.metric] + ([] if task.trainable else ["separated_fraction"])
    split_metric = re.compile(rf"^(best_)?(val|test|test_ood)_({'|'.join(map(re.escape, words))})$")
    if not (isinstance(metric, str) and (split_metric.match(metric) or metric in LOOP_METRICS)):
        example = f"test_{task.metric}" if not task.trainable else f"best_test_{task.metric}, best_val_{task.metric}"
        _fail(where, metric, f"a metric the trials of task {task.name!r} report, e.g. {example}, equivariance_gap")


def _swept_domain(config: Mapping[str, Any], where: str, key: Any) -> tuple[str, list]:
    params = config["sweep"].get("params") or {}
    if key not in params:
        _fail(where, key, f"a key of sweep.params (swept here: {', '.join(params) or 'none'})")
    (kind, values), = params[key].items()
    return kind, list(values)


def check_derived(config: Mapping[str, Any]) -> None:
    """``sweep.derived``: ratios of ``metric`` between two values of one swept key (derived.csv)."""
    entries = config["sweep"].get("derived") or []
    shape = "{name: ..., metric: ..., key: <swept key>, numerator: <its value>, denominator: <its value>}"
    if not isinstance(entries, list):
        _fail("sweep.derived", entries, f"a list of {shape}")
    names = set()
    for index, entry in enumerate(entries):
        where = f"sweep.derived[{index}]"
        if not isinstance(entry, Mapping) or set(entry) != set(DERIVED_KEYS):
            wrong = sorted(set(entry) ^ set(DERIVED_KEYS)) if isinstance(entry, Mapping) else []
            _fail(where, entry, shape + (f" (missing or unknown: {', '.join(wrong)})" if wrong else ""))
        name = entry["name"]
        if not (isinstance(name, str) and _NAME.match(name)) or name in names:
            _fail(f"{where}.name", name, "a new name of letters, digits and _ . = , + - (it names a plot file)")
        names.add(name)
        _check_metric(f"{where}.metric", entry["metric"], config)
        kind, values = _swept_domain(config, f"{where}.key", entry["key"])
        if kind not in ("grid", "choice"):
            _fail(f"{where}.key", entry["key"], "a key swept with {grid: [...]} or {choice: [...]} (configurations "
                  "are paired by equal values)")
        for part in ("numerator", "denominator"):
            if entry[part] not in values:
                _fail(f"{where}.{part}", entry[part], f"one of the values of sweep.params.{entry['key']}: {values}")
        if entry["numerator"] == entry["denominator"]:
            _fail(f"{where}.denominator", entry["denominator"], "a value other than the numerator")


def check_loglog(config: Mapping[str, Any]) -> None:
    """``sweep.loglog``: power-law fits of ``metric`` (or 1 − metric) against a positive swept key (fits.csv)."""
    entries = config["sweep"].get("loglog") or []
    shape = "{metric: ..., key: <numeric swept key>} and optionally complement: true (fit 1 - metric)"
    if not isinstance(entries, list):
        _fail("sweep.loglog", entries, f"a list of {shape}")
    for index, entry in enumerate(entries):
        where = f"sweep.loglog[{index}]"
        if not isinstance(entry, Mapping) or not {"metric", "key"} <= set(entry) <= set(LOGLOG_KEYS):
            _fail(where, entry, shape)
        _check_metric(f"{where}.metric", entry["metric"], config)
        kind, values = _swept_domain(config, f"{where}.key", entry["key"])
        positive = all(_is_number(value) and value > 0 for value in values)
        if not positive or (kind in ("grid", "choice") and len(set(values)) < 2):
            _fail(f"{where}.key", entry["key"], f"a key swept over at least two numbers > 0 (sweep.params."
                  f"{entry['key']} has {kind}: {values})")
        if not isinstance(entry.get("complement", False), bool):
            _fail(f"{where}.complement", entry["complement"], "true (fit 1 - metric, e.g. an error rate) or false")


def check_compare(config: Mapping[str, Any]) -> None:
    """``sweep.compare``: every value of a swept key against a reference value, paired by seed (compare.csv)."""
    entry = config["sweep"].get("compare")
    if entry is None:
        return
    shape = "null or {key: <swept key>, reference: <one of its values>} and optionally metric: <reported metric>"
    if not isinstance(entry, Mapping) or not {"key", "reference"} <= set(entry) <= set(COMPARE_KEYS):
        _fail("sweep.compare", entry, shape)
    kind, values = _swept_domain(config, "sweep.compare.key", entry["key"])
    if kind not in ("grid", "choice") or len(values) < 2:
        _fail("sweep.compare.key", entry["key"], "a key swept with {grid: [...]} or {choice: [...]} over at least two "
              "values (configurations are paired by equal values)")
    if entry["reference"] not in values:
        _fail("sweep.compare.reference", entry["reference"], f"one of the values of sweep.params.{entry['key']}: "
              f"{values}")
    if entry.get("metric") is not None:
        _check_metric("sweep.compare.metric", entry["metric"], config)


def _check_values(domain: Mapping[str, list]) -> list[Any]:
    """grid/choice: every value; ranges: both ends."""
    return list(next(iter(domain.values())))


def trial_configs(config: Mapping[str, Any]):
    """The trial configs to check: the full grid when small enough, else each value on its own."""
    from workers.trial import merge

    base = trial_config(dict(config))
    params = config["sweep"].get("params") or {}
    keys = list(params)
    options = [_check_values(params[key]) for key in keys]
    if math.prod(len(o) for o in options) <= _MAX_CHECKED:
        for values in itertools.product(*options):
            yield dict(zip(keys, values)), merge(base, dict(zip(keys, values)))
        return
    for key, values in zip(keys, options):
        for value in values:
            yield {key: value}, merge(base, {key: value})


def validate(config: Mapping[str, Any]) -> int:
    """Everything checkable before Ray starts; returns the number of distinct configurations checked."""
    from workers.settings import check_config

    check_sweep(config)
    checked = 0
    for values, trial in trial_configs(config):
        try:
            check_config(trial)
        except ValueError as err:
            where = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise ValueError(f"{err} (in the sweep configuration {where})" if where else str(err)) from None
        checked += 1
    return checked


def metric_and_mode(config: Mapping[str, Any]) -> tuple[str, str]:
    """The sweep's headline metric: ``sweep.metric`` or best_val_<task metric> (separation: the count)."""
    from workers.tasks import task_class

    task = task_class(config["task"]["name"])
    default = f"test_{task.metric}" if not task.trainable else f"best_val_{task.metric}"
    return config["sweep"]["metric"] or default, config["sweep"]["mode"] or task.mode


def search_space(config: Mapping[str, Any]) -> dict[str, Any]:
    """Tune's param_space: one domain per swept dotted key, plus the seeds."""
    from ray import tune

    space: dict[str, Any] = {}
    for key, domain in (config["sweep"].get("params") or {}).items():
        (kind, values), = domain.items()
        if kind == "grid":
            space[key] = tune.grid_search(list(values))
        elif kind == "choice":
            space[key] = tune.choice(list(values))
        elif kind == "uniform":
            space[key] = tune.uniform(*values)
        elif kind == "loguniform":
            space[key] = tune.loguniform(*values)
        else:
            space[key] = tune.randint(values[0], values[1] + 1)  # inclusive upper end
    seeds = config["sweep"]["seeds"]
    if seeds > 1:
        first = int(config["trainer"]["seed"])
        space["trainer.seed"] = tune.grid_search(list(range(first, first + seeds)))
    return space
