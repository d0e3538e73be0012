"""A trial's configuration: defaults of the trainer and REMUL sections, and every check that
can be made before any work starts (each error names the key, the value and what is allowed)."""

from __future__ import annotations

import math
from typing import Any, Mapping

from workers import UNUSED  # noqa: F401 - the value a sweep gives a swept key a configuration does not read
from workers.models.factory import check
from workers.tasks import Task, get_task

TRAINER_DEFAULTS: dict[str, Any] = {
    "epochs": 10, "batch_size": 100, "eval_batch_size": None, "optimizer": "adam", "lr": 1e-3,
    "pretrained_lr": None, "weight_decay": 0.0, "warmup_epochs": 0, "schedule": "constant",
    "grad_clip": None, "eval_every": 1, "checkpoint_every": 1, "seed": 0, "device": "auto",
    "precision": "fp32", "devices": 1, "threads": None, "equivariance_every": 1,
    "equivariance_samples": 4, "equivariance_batch": 16, "separation_seeds": 100,
    "eval_samples_curve": None, "eval_samples_repeats": 5,
}
REMUL_DEFAULTS: dict[str, Any] = {"alpha": 1.0, "beta": 1.0, "balance": "constant", "gradnorm_lr": 0.01,
                                  "gradnorm_gamma": 1.0}
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


def settings(config: Mapping[str, Any], section: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``config[section]`` over ``defaults``; unknown keys are an error naming the key."""
    given = dict(config.get(section) or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{section}.{unknown[0]}={given[unknown[0]]!r} is not a {section} option; "
                         f"allowed: {', '.join(defaults)}")
    return {**defaults, **given}


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is not allowed; expected {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_config(config: Mapping[str, Any]) -> tuple[Task, dict, dict]:
    """Validate a trial's config before any work: (task, trainer settings, remul settings)."""
    trainer = settings(config, "trainer", TRAINER_DEFAULTS)
    remul = settings(config, "remul", REMUL_DEFAULTS)
    for key in ("epochs", "batch_size", "eval_every", "checkpoint_every", "devices", "equivariance_samples",
                "equivariance_batch", "separation_seeds"):
        _require(_is_int(trainer[key]) and trainer[key] >= 1, f"trainer.{key}", trainer[key], "an integer ≥ 1")
    curve = trainer["eval_samples_curve"]
    _require(curve is None or (isinstance(curve, list) and curve and all(_is_int(n) and n >= 1 for n in curve)),
             "trainer.eval_samples_curve", curve, "null or a non-empty list of integers ≥ 1, e.g. [1, 2, 5, 10]")
    _require(_is_int(trainer["eval_samples_repeats"]) and trainer["eval_samples_repeats"] >= 1,
             "trainer.eval_samples_repeats", trainer["eval_samples_repeats"], "an integer ≥ 1")
    for key in ("eval_batch_size", "threads"):
        _require(trainer[key] is None or (_is_int(trainer[key]) and trainer[key] >= 1), f"trainer.{key}",
                 trainer[key], "null or an integer ≥ 1")
    for key in ("warmup_epochs", "equivariance_every", "seed"):
        _require(_is_int(trainer[key]) and trainer[key] >= 0, f"trainer.{key}", trainer[key], "an integer ≥ 0")
    _require(_is_number(trainer["lr"]) and trainer["lr"] > 0, "trainer.lr", trainer["lr"], "a number > 0")
    pretrained_lr = trainer["pretrained_lr"]
    _require(pretrained_lr is None or (_is_number(pretrained_lr) and pretrained_lr >= 0),
             "trainer.pretrained_lr", pretrained_lr, "null or a number ≥ 0")
    _require(_is_number(trainer["weight_decay"]) and trainer["weight_decay"] >= 0, "trainer.weight_decay",
             trainer["weight_decay"], "a number ≥ 0")
    _require(trainer["grad_clip"] is None or (_is_number(trainer["grad_clip"]) and trainer["grad_clip"] > 0),
             "trainer.grad_clip", trainer["grad_clip"], "null or a number > 0")
    for key, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("device", DEVICES),
                         ("precision", PRECISIONS)):
        _require(trainer[key] in allowed, f"trainer.{key}", trainer[key], f"one of {', '.join(allowed)}")
    for key in ("alpha", "beta", "gradnorm_lr", "gradnorm_gamma"):
        _require(_is_number(remul[key]) and remul[key] >= 0, f"remul.{key}", remul[key], "a number ≥ 0")
    _require(remul["balance"] in ("constant", "gradnorm"), "remul.balance", remul["balance"],
             "one of constant, gradnorm")
    task_config = dict(config.get("task") or {})
    task = get_task(task_config.pop("name", None), **task_config)
    symmetrizer = dict(config.get("symmetrizer") or {})
    for key in ("train_samples", "eval_samples"):
        value = symmetrizer.get(key, 1)
        _require(_is_int(value) and value >= 1, f"symmetrizer.{key}", value, "an integer ≥ 1")
    for key, low, strict in (("noise_scale", 0, False), ("temperature", 0, True), ("entropy_weight", 0, False)):
        if key in symmetrizer:
            value = symmetrizer[key]
            ok = _is_number(value) and (value > low if strict else value >= low)
            _require(ok, f"symmetrizer.{key}", value, f"a number {'>' if strict else '≥'} {low}")
    value = symmetrizer.get("sinkhorn_iters", 20)
    _require(_is_int(value) and value >= 1, "symmetrizer.sinkhorn_iters", value, "an integer ≥ 1")
    plan = check(task, config)
    if trainer["devices"] > 1:
        if plan.method not in ("ps", "ps_fixed_noise", "ga", "fa"):
            raise ValueError(f"trainer.devices={trainer['devices']} shards group samples, but method "
                             f"{plan.method!r} has one sample; allowed: 1 for methods canonical, none, augment, remul")
        for key in ("train_samples", "eval_samples"):
            samples = symmetrizer.get(key, 1)
            if samples % trainer["devices"]:
                raise ValueError(f"symmetrizer.{key}={samples} cannot be split evenly over trainer.devices="
                                 f"{trainer['devices']}; allowed: a multiple of {trainer['devices']}")
    return task, trainer, remul


def check_build(task: Task, config: Mapping[str, Any]) -> None:
    """Build the trial's model on PyTorch's meta device (no memory, no data): the model and interface
    constructors check their own hyperparameters (``model.widths=[-1]``, ``symmetrizer.interface.hidden=0``)
    and raise a ValueError naming the key, before any trial starts. A model that cannot be built on the
    meta device (a constructor reading tensor values) is left to the trial itself."""
    import torch

    from workers.models.factory import build_model

    try:
        with torch.device("meta"):
            build_model(task, config)
    except ValueError:
        raise
    except (RuntimeError, NotImplementedError):  # meta tensors have no values to read
        return


LEARNED_METHODS = ("ps", "ps_fixed_noise", "canonical")  # methods with an interface network q_ω
NOISY_METHODS = ("ps", "ps_fixed_noise")  # methods that draw the invariant noise
ONE_SAMPLE_METHODS = ("canonical", "none", "augment", "remul")  # one forward pass per input, whatever N is
INTERFACE_OPTIONS = ("name", "layers", "hidden", "dropout", "knn")


def unused_keys(config: Mapping[str, Any]) -> dict[str, str]:
    """The settings this trial configuration never reads, each with the reason (``"not used by ga"``).

    Two configurations that differ only in these keys train the same model on the same data with the
    same random streams, so a sweep runs them once. Deliberately short and conservative: a key is
    listed only where the code that would read it is not reached (``tests/train/test_unused_keys.py``
    trains both ways and compares every metric)."""
    symmetrizer = config.get("symmetrizer") or {}
    method = symmetrizer.get("method", "ps")
    group = str((config.get("group") or {}).get("name") or "").replace(" ", "")
    unused: dict[str, str] = {}
    if method not in NOISY_METHODS:
        unused["symmetrizer.noise_scale"] = f"not used by {method}"
    relaxed = method in LEARNED_METHODS and group.startswith("S_n")  # a trained S_n relaxation (Sinkhorn)
    for key in ("sinkhorn_iters", "entropy_weight"):
        if not relaxed:
            unused[f"symmetrizer.{key}"] = f"not used by {method} over {group or 'this group'}"
    if not (relaxed or (method in LEARNED_METHODS and group[:2] in ("C_", "D_"))):  # softmax over C_k/D_k
        unused["symmetrizer.temperature"] = f"not used by {method} over {group or 'this group'}"
    if method in ONE_SAMPLE_METHODS:
        unused["symmetrizer.train_samples"] = unused["symmetrizer.eval_samples"] = f"not used by {method}"
    if method not in LEARNED_METHODS:
        for key in INTERFACE_OPTIONS:
            unused[f"symmetrizer.interface.{key}"] = f"not used by {method}"
    if method != "remul":
        for key in REMUL_DEFAULTS:
            unused[f"remul.{key}"] = f"not used by {method}"
    elif (config.get("remul") or {}).get("balance", "constant") != "gradnorm":
        unused["remul.gradnorm_lr"] = unused["remul.gradnorm_gamma"] = "not used by remul.balance=constant"
    if "(" not in group:
        unused["group.dim"] = f"not used by {group or 'this group'}"
    if not group.endswith("_k"):
        unused["group.order"] = f"not used by {group or 'this group'}"
    return unused
