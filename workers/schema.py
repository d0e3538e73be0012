"""Typed settings: every section a trial or the driver reads, each key with its single default, the
values it allows and a one-line meaning.

Plain frozen dataclasses, not Hydra structured configs: a trial receives a plain dict (Ray ships
plain data, and ``workers.train.run(dict)`` is a public entry point), so the defaults must apply
the same way whether or not Hydra composed the dict, and without importing Hydra in a trial.
``load(Section, mapping, "section")`` fills the defaults, refuses unknown keys and checks every
value, raising ``key=value is not allowed; expected ...`` (``workers.checks``). The YAML tree
(``configs/<section>/<base>.yaml``) and the README's config reference state the same defaults;
``tests/settings/test_schema.py`` fails when they drift.

Pure Python (no torch): the driver checks sweep, cluster and logging settings with it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from workers import methods
from workers.checks import RUNTIME_ENV_KEYS, fail, is_int, is_number, is_runtime_env

INTERFACES = ("auto", "gin", "vector_neurons", "scorer")
MODEL_DEFAULT = "mlp"  # model.name when a plain-dict config names none (configs/config.yaml: model: mlp)


# -- rules: what a key allows ------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A test of a value and the words naming what passes it (the ``expected ...`` of an error); ``words`` may
    be a function, for the values of a registry (``symmetrizer.method``)."""

    test: Callable[[Any], bool]
    words: str | Callable[[], str]
    convert: Callable[[Any], Any] | None = None  # applied to an accepted value (int -> float)

    @property
    def text(self) -> str:
        return self.words() if callable(self.words) else self.words


def _convert_float(value: Any) -> Any:
    return None if value is None else float(value)


def integer(low: int, nullable: bool = False) -> Rule:
    text = f"an integer ≥ {low}"
    return Rule(lambda v: (nullable and v is None) or (is_int(v) and v >= low),
                f"null or {text}" if nullable else text, lambda v: None if v is None else int(v))


def number(low: float, strict: bool = False, nullable: bool = False) -> Rule:
    text = f"a number {'>' if strict else '≥'} {low:g}"
    return Rule(lambda v: (nullable and v is None) or (is_number(v) and (v > low if strict else v >= low)),
                f"null or {text}" if nullable else text, _convert_float)


def one_of(*values: Any, text: str | None = None) -> Rule:
    shown = ", ".join("null" if v is None else str(v) for v in values)
    return Rule(lambda v: isinstance(v, (str, type(None))) and v in values, text or f"one of {shown}")


METHOD = Rule(lambda v: isinstance(v, str) and v in methods.method_names(),
              lambda: f"one of {', '.join(methods.method_names())}")  # workers.methods: register_method adds one
BOOLEAN = Rule(lambda v: isinstance(v, bool), "true or false")
DROPOUT = Rule(lambda v: v is None or (is_number(v) and 0 <= v < 1), "null or a number in [0, 1)", _convert_float)
COUNTS = Rule(lambda v: v is None or (isinstance(v, list) and bool(v) and all(is_int(n) and n >= 1 for n in v)),
              "null or a non-empty list of integers ≥ 1, e.g. [1, 2, 5, 10]")
NAME = Rule(lambda v: v is None or (isinstance(v, str) and bool(v)), "null or a non-empty name")
ANY = Rule(lambda v: True, "see README, Sweeps")  # checked in full by orchestrator.plan
RUNTIME_ENV = Rule(is_runtime_env, f"null or a mapping of Ray runtime_env fields ({', '.join(RUNTIME_ENV_KEYS)}): "
                   "working_dir a folder, py_modules and excludes lists of paths, env_vars of strings, e.g. "
                   "{py_modules: [/home/me/mylab]}")


def setting(default: Any, rule: Rule, meaning: str, results: bool = True) -> Any:
    """A dataclass field with its default, its rule and its meaning (``dataclasses.fields(...).metadata``);
    ``results=False`` for a key that cannot change what a trial computes (where it runs, how often it is
    retried, what is logged): ``symsweep resume --allow-changed`` accepts an edit of those alone."""
    metadata = {"rule": rule, "meaning": meaning, "results": results}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls: type, meaning: str) -> Any:
    """A nested section (``symmetrizer.interface``, ``logging.wandb``)."""
    return field(default_factory=cls, metadata={"meaning": meaning})


# -- the sections -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InterfaceSettings:
    name: str = setting("auto", one_of(*INTERFACES), "q_ω: gin (S_n on graphs), vector_neurons (rotation "
                        "groups and products), scorer (C_k/D_k); auto picks the one that fits")
    layers: int | None = setting(None, integer(1, True), "layers; null: the interface's default (GIN 3, "
                                 "Vector Neurons 2)")
    hidden: int | None = setting(None, integer(1, True), "width; null: GIN 64, Vector Neurons 16, scorer 32")
    dropout: float | None = setting(None, DROPOUT, "dropout; null: 0")
    knn: int | None = setting(None, integer(1, True), "neighbours of the Vector Neurons kNN graph; null: 4")


@dataclass(frozen=True)
class SymmetrizerSettings:
    method: str = setting("ps", METHOD, "how f_θ is made equivariant: probabilistic symmetrization (ps, "
                          "ps_fixed_noise), canonicalization, group averaging (ga), frame averaging (fa), or the bare "
                          "model trained plainly (none), with augmentation or with the REMUL penalty; more with "
                          "register_method")
    noise_scale: float = setting(1.0, number(0), "η of the invariant noise (S_n: Unif[0, η]; O(d): N(0, η²); "
                                 "C_k/D_k: Gumbel·η)")
    train_samples: int = setting(10, integer(1), "N group samples per input in training (canonical and the "
                                 "unsymmetrized methods use 1)")
    eval_samples: int = setting(10, integer(1), "N group samples per input in evaluation")
    temperature: float = setting(0.01, number(0, strict=True), "τ of the Sinkhorn-relaxed argsort "
                                 "(straight-through gradient)")
    sinkhorn_iters: int = setting(20, integer(1), "Sinkhorn iterations")
    entropy_weight: float = setting(0.1, number(0), "weight of the permutation entropy penalty")
    interface: InterfaceSettings = section(InterfaceSettings, "the interface network q_ω")


@dataclass(frozen=True)
class TrainerSettings:
    epochs: int = setting(10, integer(1), "epochs of training")
    batch_size: int = setting(100, integer(1), "training batch size")
    eval_batch_size: int | None = setting(None, integer(1, True), "evaluation batch size; null: batch_size")
    optimizer: str = setting("adam", one_of("adam", "adamw"), "the optimizer")
    lr: float = setting(1e-3, number(0, strict=True), "learning rate")
    pretrained_lr: float | None = setting(None, number(0, nullable=True), "learning rate of parameters "
                                          "loaded from model.weights; null: lr")
    weight_decay: float = setting(0.0, number(0), "weight decay")
    warmup_epochs: int = setting(0, integer(0), "linear warm-up, per step")
    schedule: str = setting("constant", one_of("constant", "cosine"), "after warm-up: constant or cosine to 0")
    grad_clip: float | None = setting(None, number(0, strict=True, nullable=True), "max gradient norm; "
                                      "null: no clipping")
    eval_every: int = setting(1, integer(1), "epochs between evaluations")
    checkpoint_every: int = setting(1, integer(1), "epochs between checkpoints")
    seed: int = setting(0, integer(0), "everything is deterministic given the seed")
    device: str = setting("auto", one_of("auto", "cpu", "cuda"), "auto: CUDA when visible")
    precision: str = setting("fp32", one_of("fp32", "bf16"), "bf16: autocast on a GPU")
    devices: int = setting(1, integer(1), "workers sharing one trial's N group samples (Ray Train; N must be "
                           "divisible by it)")
    threads: int | None = setting(None, integer(1, True), "torch threads; null: the trial's CPUs")
    equivariance_every: int = setting(1, integer(0), "evaluations between the cheap Monte-Carlo equivariance "
                                      "check on validation data (mc_equivariance_error); 0: never")
    equivariance_samples: int = setting(4, integer(1), "group samples per input of that check")
    equivariance_batch: int = setting(16, integer(1), "validation examples of that check (and test inputs of "
                                      "the end-of-trial equivariance_gap)")
    separation_seeds: int = setting(100, integer(1), "seeds of the separation protocol (graph8c, exp)")
    eval_samples_curve: list[int] | None = setting(None, COUNTS, "e.g. [1, 2, 5, 10, 20, 50]: after training, "
                                                   "the best epoch's model evaluated with each number of group "
                                                   "samples N on every evaluation split (eval_samples.csv)")
    eval_samples_repeats: int = setting(5, integer(1), "fresh noise draws per count of that curve (its mean "
                                        "and spread)")
    eval_std_repeats: int = setting(0, Rule(lambda v: is_int(v) and (v == 0 or v >= 2), "0 (off) or an integer ≥ 2",
                                            int), "after training, the best epoch's model evaluated this many "
                                    "times with fresh noise at the evaluation sample count: "
                                    "best_<split>_<m>_eval_std (the evaluation noise); 0: off")


@dataclass(frozen=True)
class RemulSettings:
    alpha: float = setting(1.0, number(0), "α of loss = α·L_task + β·L_equi (method remul)")
    beta: float = setting(1.0, number(0), "β of loss = α·L_task + β·L_equi")
    balance: str = setting("constant", one_of("constant", "gradnorm"), "constant, or gradnorm: α and β adapted by "
                           "GradNorm with gradnorm_lr and asymmetry gradnorm_gamma, α + β kept")
    gradnorm_lr: float = setting(0.01, number(0), "learning rate of GradNorm's weights")
    gradnorm_gamma: float = setting(1.0, number(0), "GradNorm's asymmetry γ")


@dataclass(frozen=True)
class SweepSettings:
    params: dict = setting({}, Rule(lambda v: isinstance(v, Mapping), "a mapping of dotted keys to domains, e.g. "
                                    "{symmetrizer.noise_scale: {grid: [0.1, 1]}}"),
                           "the swept keys: dotted key -> {grid|choice: [...]} or {uniform|loguniform|randint: "
                           "[lo, hi]} (README, Sweeps); a command-line a,b,c sweep adds an entry")
    seeds: int = setting(1, integer(1), "every configuration is repeated with trainer.seed = seed .. seed+seeds-1")
    num_samples: int = setting(1, integer(1), "samples of the non-grid domains (random / optuna search)")
    search: str = setting("grid", one_of("grid", "random", "optuna"), "how trials are searched")
    scheduler: str = setting("none", one_of("none", "asha"), "early stopping of trials")
    metric: str | None = setting(None, Rule(lambda v: v is None or isinstance(v, str), "null or a reported metric"),
                                 "the headline metric; null: best_val_<task metric>")
    mode: str | None = setting(None, one_of(None, "min", "max", text="null, min or max"),
                               "null: the metric's own direction")
    max_concurrent: int | None = setting(None, integer(1, True), "trials at once; null: as resources allow",
                                         results=False)
    derived: list = setting([], ANY, "ratios of a metric between two values of one swept key (derived.csv)")
    loglog: list = setting([], ANY, "power-law fits of a metric against a positive swept key (fits.csv)")
    compare: dict | None = setting(None, ANY, "every value of a swept key against a reference value, paired by seed "
                                   "(compare.csv); until: resolved (with max_seeds, optionally confidence and delta) "
                                   "adds seeds until each comparison is resolved")


@dataclass(frozen=True)
class ClusterSettings:
    address: str | None = setting(None, Rule(lambda v: v is None or isinstance(v, str),
                                             "null (embedded local Ray), 'auto' or 'ray://host:port'"),
                                  "null: embedded local Ray; auto or ray://host:10001: attach (cluster=remote sets "
                                  "auto)", results=False)
    cpus_per_trial: float = setting(1, number(0, strict=True), "CPUs per device worker")
    gpus_per_trial: float = setting(0, Rule(lambda v: is_number(v) and v >= 0, "a number ≥ 0 (fractions share "
                                            "a GPU)"), "GPUs per device worker; fractional GPUs share a GPU between "
                                    "trials")
    num_cpus: int | None = setting(None, integer(1, True), "CPUs of the embedded local Ray; null: all",
                                   results=False)
    max_failures: int = setting(2, Rule(lambda v: is_int(v) and v >= -1, "an integer ≥ 0 (or -1: retry forever)"),
                                "retries of a failed trial from its last checkpoint", results=False)
    dashboard: bool = setting(False, BOOLEAN, "start the embedded Ray's dashboard (127.0.0.1 only; its API asks for "
                              "the Ray token)", results=False)
    runtime_env: dict | None = setting(None, RUNTIME_ENV, "Ray's runtime_env of the sweep (ray.init): your code and "
                                       "settings on every node, e.g. py_modules: [path of your package], working_dir, "
                                       "pip, env_vars; merged with a job's --runtime-env. The embedded Ray also gets "
                                       "the driver's import path (PYTHONPATH)", results=False)


@dataclass(frozen=True)
class WandbSettings:
    enabled: bool = setting(True, BOOLEAN, "one W&B run per trial (its id the trial's, so a resumed trial continues "
                            "its run), grouped by experiment, written from one thread of the driver; a W&B failure "
                            "never stops a sweep", results=False)
    project: str | None = setting(None, NAME, "naming a project makes the runs online; null: offline files",
                                  results=False)
    entity: str | None = setting(None, NAME, "the W&B entity", results=False)
    mode: str | None = setting(None, one_of(None, "offline", "online", "disabled",
                                            text="null, offline, online or disabled"),
                               "null: online when project is set, else offline", results=False)


@dataclass(frozen=True)
class LoggingSettings:
    wandb: WandbSettings = section(WandbSettings, "W&B logging")
    progress: bool = setting(True, BOOLEAN, "the live status line: done/total, running trials and their epoch, "
                             "ETA, best so far; finished and failed trials as they happen", results=False)


SECTIONS: dict[str, type] = {"symmetrizer": SymmetrizerSettings, "trainer": TrainerSettings,
                             "remul": RemulSettings, "sweep": SweepSettings, "cluster": ClusterSettings,
                             "logging": LoggingSettings}


# -- loading ------------------------------------------------------------------------------------------
def _nested(cls: type, name: str) -> type | None:
    """The dataclass type of a nested section field, else None."""
    hint = typing.get_type_hints(cls)[name]
    return hint if dataclasses.is_dataclass(hint) else None


def load(cls: type, given: Mapping[str, Any] | None, where: str) -> Any:
    """``given`` (a config section, None: empty) checked against ``cls``: every key's rule, unknown keys
    refused, missing keys at their default. ``where`` is the section's dotted name, for the errors."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        fail(where, given, f"the {where} settings (a mapping)")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in given if key not in names]
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}={given[unknown[0]]!r} is not a {where} option; "
                         f"allowed: {', '.join(names)}")
    values = {}
    for spec in dataclasses.fields(cls):
        if spec.name not in given:
            continue
        value, key = given[spec.name], f"{where}.{spec.name}"
        nested = _nested(cls, spec.name)
        if nested is not None:
            values[spec.name] = load(nested, value, key)
            continue
        rule = spec.metadata["rule"]
        if not rule.test(value):
            fail(key, value, rule.text)
        values[spec.name] = rule.convert(value) if rule.convert else value
    return cls(**values)


def defaults(cls: type) -> dict[str, Any]:
    """Every key of ``cls`` at its default, as the plain nested dict a YAML file would hold."""
    return dataclasses.asdict(cls())


def describe(cls: type, prefix: str) -> dict[str, tuple[Any, str, str]]:
    """``{dotted key: (default, allowed, meaning)}`` of every key of ``cls`` (nested sections flattened)."""
    out: dict[str, tuple[Any, str, str]] = {}
    instance = cls()
    for spec in dataclasses.fields(cls):
        key = f"{prefix}.{spec.name}"
        nested = _nested(cls, spec.name)
        if nested is not None:
            out.update(describe(nested, key))
        else:
            out[key] = (getattr(instance, spec.name), spec.metadata["rule"].text, spec.metadata["meaning"])
    return out


def changes_results(key: str) -> bool:
    """Whether the dotted ``key`` can change what a trial computes (False only for the keys declared with
    ``results=False``: where trials run, retries, logging); a key outside the typed sections (task, group,
    model) always can."""
    section, _, rest = key.partition(".")
    cls = SECTIONS.get(section)
    parts = rest.split(".") if rest else []
    while cls is not None and parts:
        spec = {f.name: f for f in dataclasses.fields(cls)}.get(parts[0])
        if spec is None:
            return True
        nested = _nested(cls, parts[0])
        if nested is None:
            return len(parts) > 1 or spec.metadata.get("results", True)
        cls, parts = nested, parts[1:]
    return True
