"""The sweep plan: everything a launch will do, checked and typed once, before anything starts.

``validate(config) -> SweepPlan`` reads the composed config once: the sweep, cluster and logging sections
into their typed settings (``workers.schema``), ``sweep.params`` into ``Domain``s, the metric and its mode
(resolved here, once, and written to config.json), the analyses, and every trial configuration the grid can
produce (both ends of every range) through the trial's own ``check_config`` into a ``TrialPlan``, with the keys
it does not read (``unused_keys``). Configurations of a grid sweep that differ only in such keys run once
(``collapsed``). ``launch``, ``--dry-run``, the Tuner, the progress line, the exit status and ``resume`` (which
rebuilds the plan from config.json with this same function) all take the ``SweepPlan``; nothing after it reads
the sweep, cluster or logging sections of the dict again.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from orchestrator.analyses import Analyses, Context, sequential
from orchestrator.config import OWN, TRIAL_SECTIONS, trial_config
from orchestrator.domains import Domain
from workers import reporting
from workers.checks import fail
from workers.schema import ClusterSettings, LoggingSettings, SweepSettings, TrainerSettings, load

SEED_KEY = "trainer.seed"
MAX_CHECKED = 2000  # configurations checked one by one (and collapsed); beyond, each value is checked on its own
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=,+-]*$")


@dataclass(frozen=True)
class Point:
    """One distinct configuration the sweep runs with every seed: the swept values (``UNUSED`` for a key it
    does not read; a sampled domain as its text), its checked trial plan (None for a sampled configuration,
    whose domains were checked at their ends) and the keys it does not read, with the reason."""

    values: dict[str, Any]
    trial: Any = None  # workers.settings.TrialPlan
    unused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepPlan:
    config: dict[str, Any]  # the composed config as config.json holds it (metric and mode resolved)
    sweep: SweepSettings
    cluster: ClusterSettings
    logging: LoggingSettings
    trainer: TrainerSettings  # the base trainer settings (a swept trainer key varies per point)
    domains: dict[str, Domain]
    metric: str
    mode: str
    seeds: tuple[int, ...]
    points: tuple[Point, ...]  # what runs: the distinct configurations of a grid, or one per draw
    before: int  # configurations of the full grid (without collapsing)
    reasons: dict[str, list[str]]  # swept key -> why it was dropped ("not used by ga"), in first-seen order
    checked: int  # configurations checked
    analyses: Analyses
    explicit: bool = False  # the points are handed to Tune one by one (a collapsed grid, draws shared by seeds)

    @property
    def n_trials(self) -> int:
        return len(self.points) * len(self.seeds)

    @property
    def rule(self):
        """``sweep.compare``'s stopping rule (``analyses.sequential.Rule``), or None: a fixed number of seeds.
        With a rule, ``n_trials`` is the trials at start; ``orchestrator.stopping`` says how many it may add."""
        from orchestrator.analyses.sequential import Rule

        return Rule.of(next((a.spec for a in self.analyses.chosen if a.key == "compare"), None))

    @property
    def collapsed(self) -> bool:
        return bool(self.reasons)

    @property
    def base(self) -> dict[str, Any]:
        """The part of the config a trial receives (its swept values are merged in by the trial)."""
        return trial_config(dict(self.config))

    def describe_collapse(self) -> str | None:
        """``16 configurations -> 12 distinct trials (symmetrizer.noise_scale is not used by ga)``."""
        if not self.collapsed:
            return None
        why = "; ".join(f"{key} is {' / '.join(reasons)}" for key, reasons in self.reasons.items())
        return f"{self.before * len(self.seeds)} configurations -> {self.n_trials} distinct trials ({why})"

    def resources(self) -> tuple[dict[str, float], dict[str, float]]:
        """(resources of the Tune trial, resources of each device worker)."""
        worker = {"cpus": float(self.cluster.cpus_per_trial), "gpus": float(self.cluster.gpus_per_trial)}
        if self.trainer.devices > 1:  # the Tune trial only drives k Ray Train workers, which hold the resources
            return {"CPU": 0, "memory": 64 * 2**20}, worker  # a bundle needs some resource; not a CPU
        return {"CPU": worker["cpus"], "GPU": worker["gpus"]}, worker


def _without_registered(sweep: Mapping[str, Any]) -> Mapping[str, Any]:
    """The sweep section without the keys of analyses registered from outside symsweep (``register_analysis``): the
    schema knows the built-in ones; a registered one is checked by its own ``check``."""
    import dataclasses

    from orchestrator.analyses import REGISTRY

    known = {spec.name for spec in dataclasses.fields(SweepSettings)}
    if not isinstance(sweep, Mapping):
        return sweep
    return {key: value for key, value in sweep.items() if key in known or key not in REGISTRY}


def _has_key(config: Mapping[str, Any], dotted: str) -> bool:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _domains(config: Mapping[str, Any], sweep: SweepSettings) -> dict[str, Domain]:
    base = trial_config(dict(config))
    domains = {}
    for key, given in sweep.params.items():
        section = key.split(".")[0]
        own = section in OWN and any((base.get(section) or {}).get(name) is not None for name in OWN[section])
        if section not in TRIAL_SECTIONS or not (_has_key(base, key) or own):  # your own class: its arguments
            raise ValueError(f"sweep.params.{key}: {key!r} is not a key of the trial config; sweepable keys live under "
                             f"{', '.join(TRIAL_SECTIONS)} (e.g. symmetrizer.noise_scale, group.name, trainer.lr)")
        domains[key] = Domain.parse(key, given)
    return domains


def _check_sweep(config: Mapping[str, Any], sweep: SweepSettings, cluster: ClusterSettings,
                 trainer: TrainerSettings, domains: dict[str, Domain]) -> None:
    """What depends on several keys of the sweep, cluster and trainer sections."""
    sequential.check_sweep(sweep)
    if sweep.seeds > 1 and SEED_KEY in domains:
        raise ValueError("sweep.seeds and sweep.params.trainer.seed both set the seed; use one of them")
    if sweep.search == "optuna":
        if any(domain.grid for domain in domains.values()):
            raise ValueError("sweep.search='optuna' cannot take {grid: [...]} domains; use {choice: [...]}")
        if sweep.seeds > 1:
            fail("sweep.seeds", sweep.seeds, "1 with sweep.search='optuna' (Optuna proposes each trial from the "
                 "results so far and would take one seed's result for the configuration's; run its best "
                 "configurations on several seeds afterwards, with sweep.search=grid)")
    if trainer.device == "cuda" and cluster.gpus_per_trial == 0:
        fail("trainer.device", "cuda", "auto or cpu with cluster.gpus_per_trial=0 (Ray shows a trial only the GPUs it "
             "asks for); or set cluster.gpus_per_trial > 0")
    if config["name"] is not None and not (isinstance(config["name"], str) and NAME.match(config["name"])):
        fail("name", config["name"], "letters, digits and _ . = , + - (no slashes or spaces)")
    if not isinstance(config["storage"], str) or not config["storage"]:
        fail("storage", config["storage"], "a directory path (shared by every node on a multi-node cluster)")


def _metric(config: Mapping[str, Any], sweep: SweepSettings) -> tuple[str, str, dict[str, str], Any]:
    """(metric, mode, every reported metric with its direction, the task class), resolved once from the vocabulary
    of the task's reports (``workers.reporting``)."""
    from workers.tasks import configured_task

    task = configured_task(trial_config(dict(config)).get("task"))  # a task's metrics may follow its parameters
    reported = reporting.reported_metrics(task)
    metric = sweep.metric or reporting.headline(task)
    if metric not in reported:
        fail("sweep.metric", metric, f"a metric the trials of task {task.name!r} report: {', '.join(reported)}")
    return metric, sweep.mode or reported[metric], reported, task


def _check_every_report(sweep: SweepSettings, trainer: TrainerSettings, metric: str, task: Any) -> None:
    """ASHA and Optuna read ``sweep.metric`` in every report: an evaluation metric must be in the first report
    too (Tune fails every trial otherwise)."""
    if sweep.scheduler == "none" and sweep.search != "optuna":
        return
    user = "sweep.scheduler=asha" if sweep.scheduler == "asha" else "sweep.search=optuna"
    gap, error = reporting.EXACT_GAP, reporting.MC_ERROR
    if metric == gap:
        fail("sweep.metric", metric, f"a metric of every evaluation with {user} ({gap} is measured once, at the end "
             f"of a trial); e.g. {error} or the task's validation metric")
    if metric == error and trainer.equivariance_every != 1:
        fail("trainer.equivariance_every", trainer.equivariance_every, f"1 with {user} and sweep.metric={error} (it is "
             "read in every report)")
    every = reporting.in_every_report(task, metric)
    if not every and trainer.checkpoint_every < min(trainer.eval_every, trainer.epochs):
        fail("trainer.checkpoint_every", trainer.checkpoint_every, f"at least trainer.eval_every="
             f"{trainer.eval_every} with {user}: a checkpoint report before the first evaluation has no {metric}, "
             f"which {user} reads in every report")


def _combinations(domains: dict[str, Domain]) -> tuple[list[dict[str, Any]], bool]:
    """The configurations to check: the full product of the checked values when small enough (True), else
    each value on its own (False)."""
    keys, options = list(domains), [domains[key].checked_values() for key in domains]
    if math.prod(len(o) for o in options) <= MAX_CHECKED:
        return [dict(zip(keys, values)) for values in itertools.product(*options)], True
    return [{key: value} for key, values in zip(keys, options) for value in values], False


def _check_trials(config: Mapping[str, Any], domains: dict[str, Domain], sweep: SweepSettings, metric: str,
                  task: Any):
    """Every configuration through the trial's own checks (each distinct model also built on the meta device);
    returns [(values, TrialPlan)] and whether that is the whole grid."""
    from workers.settings import check_build, check_config, check_on_data, merge, own_code

    base = trial_config(dict(config))
    combinations, whole = _combinations(domains)
    checked, built = [], set()
    for values in combinations or [{}]:
        trial_dict = merge(base, values)
        try:
            trial = check_config(trial_dict)
            model = json.dumps([trial_dict.get(k) for k in ("task", "group", "symmetrizer", "model")], sort_keys=True,
                               default=str)
            if model not in built:
                check_build(trial.model)
                if own_code(trial):
                    check_on_data(trial)
                built.add(model)
            _check_reports(trial.task, metric)
            _check_every_report(sweep, trial.trainer, metric, task)
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            message = str(err) if isinstance(err, ValueError) else (
                f"a trial setting cannot be read ({type(err).__name__}: {err}); see README, Config reference")
            where = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise ValueError(f"{message} (in the sweep configuration {where})" if where else message) from None
        checked.append((values, trial))
    return checked, whole


def _check_reports(task: Any, metric: str) -> None:
    """Every configuration's task reports the sweep metric (a swept ``task.*`` key may change what it reports)."""
    reported = reporting.reported_metrics(task)
    if metric not in reported:
        fail("sweep.metric", metric, f"a metric the trials of task {task.name!r} report: {', '.join(reported)}")


def _draws(domains: dict[str, Domain], sweep: SweepSettings, seed: int) -> list[dict[str, Any]]:
    """The ``sweep.num_samples`` draws of the sampled domains (choice, uniform, loguniform, randint), made here from
    a generator seeded by ``trainer.seed``: each draw then runs on every seed and every grid combination (Tune would
    draw anew for each seed, leaving every configuration with one seed). The same config gives the same draws."""
    import numpy as np

    rng = np.random.default_rng([seed, 0x5EED])
    sampled = [key for key, domain in domains.items() if not domain.grid]
    return [{key: domains[key].draw(rng) for key in sampled} for _ in range(sweep.num_samples)]


def _points(config: Mapping[str, Any], domains: dict[str, Domain], sweep: SweepSettings, trainer: TrainerSettings,
            checked, whole: bool):
    """(the points that run, configurations before collapsing, why keys were dropped, whether the points are given
    to Tune one by one). Points that differ only in keys they do not read run once (collapsed): a grid's, and the
    draws' (each draw combined with every grid value)."""
    from workers.settings import unused_keys

    grid = {key: d for key, d in domains.items() if d.grid}
    if not domains:
        return (Point({}, checked[0][1], unused_keys(checked[0][1])),), 1, {}, False
    if sweep.search == "optuna":  # Optuna draws each trial from what it learnt: the domains, not values
        sampled = {key: d.text() for key, d in domains.items() if not d.grid}
        points = tuple(Point({**sampled, "sample": i + 1}) for i in range(sweep.num_samples))
        return points, sweep.num_samples, {}, False
    drawn = len(grid) < len(domains)
    if not drawn and sweep.num_samples == 1 and whole:
        candidates = tuple(Point(values, trial, unused_keys(trial)) for values, trial in checked)  # in grid order
    else:
        combinations = [dict(zip(grid, values)) for values in itertools.product(*(d.values for d in grid.values()))]
        repeat = not drawn and sweep.num_samples > 1  # a grid run num_samples times
        candidates = _checked(config, tuple(Point({**values, **draw, **({"sample": i + 1} if repeat else {})})
                                            for i, draw in enumerate(_draws(domains, sweep, trainer.seed))
                                            for values in combinations))
    points, reasons = _collapse(candidates)
    return points, len(candidates), reasons, drawn or bool(reasons)


def _collapse(candidates: tuple[Point, ...]) -> tuple[tuple[Point, ...], dict[str, list[str]]]:
    """The distinct points once the keys each does not read are set to ``UNUSED``, and why keys were dropped."""
    from workers import UNUSED

    points, seen, reasons = [], set(), {}
    for candidate in candidates:
        point = dict(candidate.values)
        for key in candidate.values:
            if key in candidate.unused and key != SEED_KEY:
                point[key] = UNUSED
                reasons.setdefault(key, [])
                if candidate.unused[key] not in reasons[key]:
                    reasons[key].append(candidate.unused[key])
        identity = json.dumps(point, sort_keys=True, default=str)
        if identity not in seen:
            seen.add(identity)
            points.append(Point(point, candidate.trial, candidate.unused))
    return tuple(points), reasons if len(points) < len(candidates) else {}


def _checked(config: Mapping[str, Any], points: tuple[Point, ...]) -> tuple[Point, ...]:
    """Drawn points, each through the trial's own checks too (the domains' ends were checked already)."""
    from workers.settings import check_config, merge, unused_keys

    if len(points) > MAX_CHECKED:
        return points
    base, out = trial_config(dict(config)), []
    for point in points:
        values = {key: value for key, value in point.values.items() if key != "sample"}
        try:
            trial = check_config(merge(base, values))
        except ValueError as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise ValueError(f"{err} (in the drawn configuration {shown})") from None
        out.append(Point(point.values, trial, unused_keys(trial)))
    return tuple(out)


def validate(config: dict[str, Any]) -> SweepPlan:
    """Everything checkable before Ray starts, read once into the plan; ``config``'s ``sweep.metric`` and
    ``sweep.mode`` are set to the resolved ones (config.json keeps them). Any error is one line (ValueError)."""
    from workers import plugins

    plugins.load()  # researchers' registrations (groups, methods, analyses) before anything is looked up
    try:
        sweep = load(SweepSettings, _without_registered(config["sweep"]), "sweep")
        cluster = load(ClusterSettings, config["cluster"], "cluster")
        logging = load(LoggingSettings, config["logging"], "logging")
        trainer = load(TrainerSettings, config["trainer"], "trainer")
        domains = _domains(config, sweep)
        _check_sweep(config, sweep, cluster, trainer, domains)
        metric, mode, reported, task = _metric(config, sweep)
        context = Context(domains, reported, metric, mode, task.name)
        analyses = Analyses.from_sweep(config["sweep"], context)
    except (TypeError, AttributeError, KeyError) as err:  # a value of an unexpected shape: still one line
        raise ValueError(f"the sweep, cluster or logging settings cannot be read ({type(err).__name__}: {err}); "
                         "see README, Config reference") from None
    checked, whole = _check_trials(config, domains, sweep, metric, task)
    points, before, reasons, explicit = _points(config, domains, sweep, trainer, checked, whole)
    config["sweep"]["metric"], config["sweep"]["mode"] = metric, mode
    config[reporting.DIRECTIONS_KEY] = reported  # read by the tables, which never import the task's code
    seeds = tuple(range(trainer.seed, trainer.seed + sweep.seeds))
    return SweepPlan(config, sweep, cluster, logging, trainer, domains, metric, mode, seeds, points, before,
                     reasons, len(checked), analyses, explicit)
