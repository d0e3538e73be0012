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
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from orchestrator.config import DOMAINS, trial_config
from workers import reporting
from workers.checks import fail as _fail
from workers.checks import is_int as _is_int
from workers.checks import is_number as _is_number
from workers.schema import ClusterSettings, LoggingSettings, SweepSettings, load

SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("none", "asha")
TRIAL_SECTIONS = ("task", "group", "symmetrizer", "model", "trainer", "remul")
WANDB_MODES = (None, "offline", "online", "disabled")
_MAX_CHECKED = 2000  # configurations checked one by one; beyond, each value is checked on its own
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=,+-]*$")
DERIVED_KEYS = ("name", "metric", "key", "numerator", "denominator")
LOGLOG_KEYS = ("metric", "key", "complement")  # complement is optional (default false)
COMPARE_KEYS = ("key", "reference", "metric")  # metric is optional (default: the sweep metric)


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
    pair = isinstance(values, list) and len(values) == 2 and all(_is_number(v) for v in values)
    if not pair or values[0] >= values[1]:
        _fail(f"{where}.{kind}", values, "[lo, hi] with numbers lo < hi")
    if kind == "loguniform" and values[0] <= 0:
        _fail(f"{where}.{kind}", values, "[lo, hi] with 0 < lo < hi")
    if kind == "randint" and not all(_is_int(v) for v in values):
        _fail(f"{where}.{kind}", values, "[lo, hi] with integers lo < hi")


def check_sweep(config: Mapping[str, Any]) -> None:
    """Sweep, cluster, logging and naming settings (not the trial configs): each key against its rule
    in ``workers.schema``, then what depends on several keys."""
    sweep = load(SweepSettings, config["sweep"], "sweep")
    load(ClusterSettings, config["cluster"], "cluster")
    load(LoggingSettings, config["logging"], "logging")
    params = sweep.params
    trial = trial_config(dict(config))
    for key, domain in params.items():
        if key.split(".")[0] not in TRIAL_SECTIONS or not _has_key(trial, key):
            raise ValueError(f"sweep.params.{key}: {key!r} is not a key of the trial config; sweepable keys live under "
                             f"{', '.join(TRIAL_SECTIONS)} (e.g. symmetrizer.noise_scale, group.name, trainer.lr)")
        check_domain(key, domain)
    if sweep.seeds > 1 and "trainer.seed" in params:
        raise ValueError("sweep.seeds and sweep.params.trainer.seed both set the seed; use one of them")
    if sweep.metric is not None:
        _check_metric("sweep.metric", sweep.metric, config)
    check_metric_every_report(config)
    if sweep.search == "optuna":
        if any(next(iter(d)) == "grid" for d in params.values()):
            raise ValueError("sweep.search='optuna' cannot take {grid: [...]} domains; use {choice: [...]}")
        if sweep.seeds > 1:
            _fail("sweep.seeds", sweep.seeds, "1 with sweep.search='optuna' (Optuna proposes each trial once)")
    check_derived(config)
    check_loglog(config)
    check_compare(config)
    check_trainer_device(config)
    if config["name"] is not None and not (isinstance(config["name"], str) and _NAME.match(config["name"])):
        _fail("name", config["name"], "letters, digits and _ . = , + - (no slashes or spaces)")
    if not isinstance(config["storage"], str) or not config["storage"]:
        _fail("storage", config["storage"], "a directory path (shared by every node on a multi-node cluster)")


def check_trainer_device(config: Mapping[str, Any]) -> None:
    """``trainer.device=cuda`` in a trial that Ray gives no GPU: Ray hides every GPU from it, so every
    trial would fail."""
    trainer, cluster = config["trainer"], config["cluster"]
    if trainer["device"] == "cuda" and _is_number(cluster["gpus_per_trial"]) and cluster["gpus_per_trial"] == 0:
        _fail("trainer.device", "cuda", "auto or cpu with cluster.gpus_per_trial=0 (Ray shows a trial only the "
              "GPUs it asks for); or set cluster.gpus_per_trial > 0")


def _task(config: Mapping[str, Any]):
    """The class of the config's task (``task.name``; a one-line error for a name that is not a task)."""
    from workers.tasks import task_class

    return task_class(config["task"]["name"])


def reported_metrics(config: Mapping[str, Any]) -> list[str]:
    """The metric names the trials of this task report (what ``sweep.metric`` may name): the vocabulary of
    ``workers.reporting``."""
    return list(reporting.reported_metrics(_task(config)))


def _check_metric(where: str, metric: Any, config: Mapping[str, Any]) -> None:
    """A metric name the trials of this task report: [best_]<split>_<task metric>[_transformed] or a loop metric."""
    allowed = reported_metrics(config)
    if metric not in allowed:
        _fail(where, metric, f"a metric the trials of task {_task(config).name!r} report: {', '.join(allowed)}")


def metric_direction(config: Mapping[str, Any], metric: str) -> str:
    """min or max for ``metric``, as the vocabulary of the task's reports says (``workers.reporting``)."""
    return reporting.direction(_task(config), metric)


def check_metric_every_report(config: Mapping[str, Any]) -> None:
    """ASHA and Optuna read ``sweep.metric`` in every report: an evaluation metric must be in the first
    report too (Tune fails every trial otherwise)."""
    sweep, trainer = config["sweep"], config["trainer"]
    if sweep["scheduler"] == "none" and sweep["search"] != "optuna":
        return
    metric, _ = metric_and_mode(config)
    user = "sweep.scheduler=asha" if sweep["scheduler"] == "asha" else "sweep.search=optuna"
    gap, error = reporting.EXACT_GAP, reporting.MC_ERROR
    if metric == gap:
        _fail("sweep.metric", metric, f"a metric of every evaluation with {user} ({gap} is measured once, at the "
              f"end of a trial); e.g. {error} or the task's validation metric")
    if metric == error and trainer["equivariance_every"] != 1:
        _fail("trainer.equivariance_every", trainer["equivariance_every"], f"1 with {user} and "
              f"sweep.metric={error} (it is read in every report)")
    every = reporting.in_every_report(_task(config), metric)
    if every or not all(_is_int(trainer.get(k)) for k in ("checkpoint_every", "eval_every", "epochs")):
        return
    if trainer["checkpoint_every"] < min(trainer["eval_every"], trainer["epochs"]):
        _fail("trainer.checkpoint_every", trainer["checkpoint_every"], f"at least trainer.eval_every="
              f"{trainer['eval_every']} with {user}: a checkpoint report before the first evaluation has no "
              f"{metric}, which {user} reads in every report")


def _swept_domain(config: Mapping[str, Any], where: str, key: Any) -> tuple[str, list]:
    params = config["sweep"]["params"]
    if key not in params:
        _fail(where, key, f"a key of sweep.params (swept here: {', '.join(params) or 'none'})")
    (kind, values), = params[key].items()
    return kind, list(values)


def check_derived(config: Mapping[str, Any]) -> None:
    """``sweep.derived``: ratios of ``metric`` between two values of one swept key (derived.csv)."""
    entries = config["sweep"]["derived"]
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
    entries = config["sweep"]["loglog"]
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
    entry = config["sweep"]["compare"]
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
    from workers.settings import merge

    base = trial_config(dict(config))
    params = config["sweep"]["params"]
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
    """Everything checkable before Ray starts; returns the number of distinct configurations checked.
    Each distinct model (task, group, symmetrizer, model sections) is also built on the meta device."""
    from workers.settings import check_build, check_config

    try:
        check_sweep(config)
    except (TypeError, AttributeError, KeyError) as err:  # a value of an unexpected shape: still one line
        raise ValueError(f"the sweep, cluster or logging settings cannot be read ({type(err).__name__}: {err}); "
                         "see README, Config reference") from None
    checked, built = 0, set()
    for values, trial in trial_configs(config):
        try:
            plan = check_config(trial).model
            model = json.dumps([trial.get(key) for key in ("task", "group", "symmetrizer", "model")], sort_keys=True,
                               default=str)
            if model not in built:
                check_build(plan)
                built.add(model)
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            message = str(err) if isinstance(err, ValueError) else (
                f"a trial setting cannot be read ({type(err).__name__}: {err}); see README, Config reference")
            where = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise ValueError(f"{message} (in the sweep configuration {where})" if where else message) from None
        checked += 1
    return checked


def metric_and_mode(config: Mapping[str, Any]) -> tuple[str, str]:
    """The sweep's headline metric and direction: ``sweep.metric`` or best_val_<task metric> (separation:
    test_<task metric>: ``workers.reporting.headline``), and ``sweep.mode`` or the metric's own direction."""
    metric = config["sweep"]["metric"] or reporting.headline(_task(config))
    return metric, config["sweep"]["mode"] or metric_direction(config, metric)


def resolve_metric(config: dict[str, Any]) -> tuple[str, str]:
    """Write the resolved (metric, mode) into ``config["sweep"]``: decided once at launch, saved in the
    experiment's config.json, and read from there by the Tuner, ASHA, Optuna, the progress line, the
    summary's ordering and ``status``."""
    metric, mode = metric_and_mode(config)
    config["sweep"]["metric"], config["sweep"]["mode"] = metric, mode
    return metric, mode


def search_space(config: Mapping[str, Any]) -> dict[str, Any]:
    """Tune's param_space: one domain per swept dotted key, plus the seeds."""
    from ray import tune

    from workers.settings import UNUSED

    space: dict[str, Any] = {}
    collapsed = collapse(config)
    for key, domain in (config["sweep"]["params"]).items():
        (kind, values), = domain.items()
        if collapsed is not None and collapsed.collapsed:  # every value comes from points_to_evaluate
            space[key] = tune.choice(list(values) + [UNUSED])
        elif kind == "grid":
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


# -- the plan: what a launch will run ------------------------------------------------------------------
def _domain_text(domain: Mapping[str, list]) -> str:
    (kind, values), = domain.items()
    shown = ", ".join(value if isinstance(value, str) else json.dumps(value) for value in values)
    return f"{kind} [{shown}]"


def seeds_of(config: Mapping[str, Any]) -> list[int]:
    """The seeds every configuration runs with."""
    first = int(config["trainer"]["seed"])
    return list(range(first, first + int(config["sweep"]["seeds"])))


@dataclass(frozen=True)
class Collapse:
    """A grid sweep's configurations with the swept keys each one does not read set to ``UNUSED``
    (``workers.settings.unused_keys``), duplicates removed: what Tune runs (every seed of each)."""

    points: list[dict[str, Any]]  # the distinct configurations, in grid order
    before: int  # configurations of the full grid
    reasons: dict[str, list[str]]  # swept key -> why it was dropped ("not used by ga"), in first-seen order

    @property
    def collapsed(self) -> bool:
        return len(self.points) < self.before

    def describe(self, seeds: int) -> str:
        """``16 configurations -> 12 distinct trials (symmetrizer.noise_scale is not used by ga)``."""
        why = "; ".join(f"{key} is {' / '.join(reasons)}" for key, reasons in self.reasons.items())
        return f"{self.before * seeds} configurations -> {len(self.points) * seeds} distinct trials ({why})"


def collapse(config: Mapping[str, Any]) -> Collapse | None:
    """The distinct configurations of a grid sweep (only ``{grid: [...]}`` domains, one sample, no
    Optuna); None for other sweeps, which run as Tune draws them. Seeds are never collapsed."""
    from workers.settings import UNUSED, merge, unused_keys

    params = config["sweep"]["params"]
    sweep = config["sweep"]
    if (not params or sweep["search"] == "optuna" or int(sweep["num_samples"]) != 1
            or any(next(iter(domain)) != "grid" for domain in params.values())):
        return None
    base = trial_config(dict(config))
    keys = list(params)
    points, seen, reasons = [], set(), {}
    combinations = list(itertools.product(*(params[key]["grid"] for key in keys)))
    for values in combinations:
        point = dict(zip(keys, values))
        unused = unused_keys(merge(base, point))
        for key in keys:
            if key in unused and key != "trainer.seed":
                point[key] = UNUSED
                reasons.setdefault(key, [])
                if unused[key] not in reasons[key]:
                    reasons[key].append(unused[key])
        identity = json.dumps(point, sort_keys=True, default=str)
        if identity not in seen:
            seen.add(identity)
            points.append(point)
    return Collapse(points, len(combinations), reasons if len(points) < len(combinations) else {})


def planned_trials(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The distinct configurations a launch runs (each with every seed): the grid's product, without
    configurations that differ only in keys they do not read (``collapse``); a sampled domain
    (choice, uniform, ...) appears as its domain, drawn ``sweep.num_samples`` times."""
    collapsed = collapse(config)
    if collapsed is not None and collapsed.collapsed:
        return [dict(point) for point in collapsed.points]
    params = config["sweep"]["params"]
    grid = {key: next(iter(d.values())) for key, d in params.items() if next(iter(d)) == "grid"}
    sampled = {key: _domain_text(d) for key, d in params.items() if next(iter(d)) != "grid"}
    samples = int(config["sweep"]["num_samples"])
    configurations = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if config["sweep"]["search"] == "optuna":
        return [{**sampled, "sample": index + 1} for index in range(samples)]
    return [{**values, **sampled, **({"sample": index + 1} if samples > 1 else {})}
            for index in range(samples) for values in configurations]


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, Mapping) or not node:
        return {prefix.rstrip("."): node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def pinned_values(config: Mapping[str, Any], defaults: Mapping[str, Any] | None,
                  command_line: Iterable[str] = ()) -> dict[str, Any]:
    """Trial keys set on the command line, and those whose value differs from ``defaults`` (the same
    config groups without key overrides); swept keys left out."""
    swept = set(config["sweep"]["params"])
    ours = _flat(trial_config(dict(config)))
    theirs = _flat(trial_config(dict(defaults))) if defaults is not None else ours
    named = {key for key in command_line if key in ours}
    return {key: value for key, value in ours.items()
            if key not in swept and not any(key.startswith(k + ".") for k in swept)
            and (key in named or theirs.get(key) != value)}


def trial_resources(config: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(resources of the Tune trial, resources of each device worker)."""
    cluster, devices = config["cluster"], int(config["trainer"]["devices"])
    worker = {"cpus": float(cluster["cpus_per_trial"]), "gpus": float(cluster["gpus_per_trial"])}
    if devices > 1:  # the Tune trial only drives k Ray Train workers, which hold the resources
        return {"CPU": 0, "memory": 64 * 2**20}, worker  # a bundle needs some resource; not a CPU
    return {"CPU": worker["cpus"], "GPU": worker["gpus"]}, worker


def plan(config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None,
         command_line: Iterable[str] = ()) -> dict[str, Any]:
    """Everything a launch of ``config`` will do, as one JSON-ready dict (``--dry-run --json``)."""
    metric, mode = metric_and_mode(config)
    trials = planned_trials(config)
    seeds = seeds_of(config)
    _, worker = trial_resources(config)
    devices = int(config["trainer"]["devices"])
    collapsed = collapse(config)
    return {"metric": metric, "mode": mode, "search": config["sweep"]["search"],
            "collapsed": collapsed.describe(len(seeds)) if collapsed is not None and collapsed.collapsed else None,
            "scheduler": config["sweep"]["scheduler"],
            "swept": {key: dict(domain) for key, domain in (config["sweep"]["params"]).items()},
            "pinned": pinned_values(config, defaults, command_line), "seeds": seeds, "configurations": trials,
            "n_trials": len(trials) * len(seeds),
            "resources_per_trial": {"cpus": worker["cpus"] * devices, "gpus": worker["gpus"] * devices},
            "max_concurrent": config["sweep"]["max_concurrent"], "epochs": config["trainer"]["epochs"],
            "analyses": analyses(config["sweep"], metric)}


def analyses(sweep: Mapping[str, Any], metric: str) -> list[str]:
    """What the report will compute beyond the summary (the comparison, derived ratios, log-log fits),
    one line each; ``metric``: the sweep's metric, the comparison's default."""
    lines = []
    compare = sweep.get("compare")
    if compare:
        lines.append(f"compare: {compare['key']}: every value against {compare['reference']}, "
                     f"paired by seed, on {compare.get('metric') or metric} (compare.csv)")
    for entry in sweep.get("derived") or []:
        lines.append(f"derived: {entry['name']} = {entry['metric']} at {entry['key']}={entry['numerator']} / "
                     f"at {entry['key']}={entry['denominator']} (derived.csv)")
    for entry in sweep.get("loglog") or []:
        what = f"1 - {entry['metric']}" if entry.get("complement") else entry["metric"]
        lines.append(f"loglog:  log({what}) against log({entry['key']}) (fits.csv)")
    return lines


def plan_lines(summary: Mapping[str, Any]) -> list[str]:
    """The plan as the launch prints it: swept keys with their domains, pinned values, trials, metric."""
    lines = [f"metric: {summary['metric']} ({summary['mode']}); search {summary['search']}, "
             f"scheduler {summary['scheduler']}"]
    for key, domain in summary["swept"].items():
        lines.append(f"swept:  {key}: {_domain_text(domain)}")
    for key, value in summary["pinned"].items():
        lines.append(f"pinned: {key}={value if isinstance(value, str) else json.dumps(value)}")
    resources = summary["resources_per_trial"]
    if summary.get("collapsed"):
        lines.append(f"collapsed: {summary['collapsed']}")
    lines.append(f"trials: {summary['n_trials']} = {len(summary['configurations'])} configuration(s) x "
                 f"{len(summary['seeds'])} seed(s) {summary['seeds']}; each {resources['cpus']:g} CPU(s), "
                 f"{resources['gpus']:g} GPU(s), {summary['epochs']} epochs")
    lines.extend(summary.get("analyses", []))
    return lines


def plan_table(summary: Mapping[str, Any]) -> str:
    """The distinct configurations as a Markdown table (one row each; every row runs every seed)."""
    rows = summary["configurations"]
    keys = list(dict.fromkeys(key for row in rows for key in row))
    header = ["#", *keys, "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    seeds = ",".join(map(str, summary["seeds"]))
    for index, row in enumerate(rows, 1):
        cells = [row.get(key) for key in keys]
        lines.append("| " + " | ".join([str(index)] + [c if isinstance(c, str) else json.dumps(c) for c in cells]
                                       + [seeds]) + " |")
    return "\n".join(lines)
