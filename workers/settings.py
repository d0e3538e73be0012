"""A trial's configuration: ``check_config`` turns a plain-dict config into the checked, typed
``TrialPlan`` (the sections' defaults, allowed values and meanings live in ``workers.schema``), every
check that can be made before any work starts (each error names the key, the value and what is
allowed); ``unused_keys`` says which keys a configuration does not read; ``merge`` sets dotted keys."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from workers import UNUSED  # noqa: F401 - the value a sweep gives a swept key a configuration does not read
from workers.methods import get_method, method_names
from workers.models.factory import Plan, check
from workers.schema import RemulSettings, SymmetrizerSettings, TrainerSettings, describe, load
from workers.symmetry import group_keys
from workers.tasks import Task, configured_task


@dataclass(frozen=True)
class TrialPlan:
    """A trial's configuration, checked and typed: what ``check_config`` returns and the loop reads."""

    task: Task
    trainer: TrainerSettings
    remul: RemulSettings
    symmetrizer: SymmetrizerSettings
    model: Plan  # what ``workers.models.factory.build_model`` builds
    # the plain dict it was checked from: what a checkpoint records (plain data); no setting is read from it again
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def merge(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with every dotted key of ``params`` (e.g. ``symmetrizer.noise_scale``) set."""
    config = copy.deepcopy(dict(base))
    for dotted, value in params.items():
        *parents, leaf = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def trainer_settings(config: Mapping[str, Any]) -> TrainerSettings:
    """The checked ``trainer`` section of a trial config (its defaults where it names none)."""
    return load(TrainerSettings, config.get("trainer"), "trainer")


def check_config(config: Mapping[str, Any]) -> TrialPlan:
    """Validate a trial's config before any work; every key is checked once, here."""
    trainer = trainer_settings(config)
    remul = load(RemulSettings, config.get("remul"), "remul")
    task = configured_task(config.get("task"))
    plan = check(task, config)
    symmetrizer = plan.symmetrizer
    if trainer.devices > 1:
        if not get_method(plan.method).shardable:
            raise ValueError(f"trainer.devices={trainer.devices} shards group samples, but method {plan.method!r} "
                             f"has no samples to shard; allowed: 1 for methods "
                             f"{', '.join(n for n in method_names() if not get_method(n).shardable)}")
        for key in ("train_samples", "eval_samples"):
            samples = getattr(symmetrizer, key)
            if samples % trainer.devices:
                raise ValueError(f"symmetrizer.{key}={samples} cannot be split evenly over trainer.devices="
                                 f"{trainer.devices}; allowed: a multiple of {trainer.devices}")
    return TrialPlan(task, trainer, remul, symmetrizer, plan, copy.deepcopy(dict(config)))


def check_build(plan: Plan) -> None:
    """Build the trial's model on PyTorch's meta device (no memory, no data): the model and interface
    constructors check their own hyperparameters (``model.widths=[-1]``, ``symmetrizer.interface.hidden=0``)
    and raise a ValueError naming the key, before any trial starts. A model that cannot be built on the
    meta device (a constructor reading tensor values) is left to the trial itself."""
    import torch

    from workers.models.factory import build_model

    try:
        with torch.device("meta"):
            build_model(plan)
    except ValueError:
        raise
    except (RuntimeError, NotImplementedError):  # meta tensors have no values to read
        return


def own_code(trial: TrialPlan) -> bool:
    """Whether the trial's model or task comes from outside symsweep (``model.target``, ``task.target``, a registered
    one) or is read from a file (``task=files``): what ``check_on_data`` tries before a sweep starts."""
    from workers.models.factory import MODELS

    registered = not isinstance(MODELS.get(trial.model.model_name), str)
    module = type(trial.task).__module__
    return registered or not module.startswith("workers.tasks.") or module == "workers.tasks.files"


def check_on_data(trial: TrialPlan) -> None:
    """Try the trial's model and task on two examples of the task's data, before a sweep starts: the model builds
    and returns the shape the task's output needs, the task's loss is a scalar tensor and its metrics are exactly
    the ones it declares (each with its direction). Each failure is one ValueError naming the key."""
    from workers.models.custom import check_on_examples, model_key, model_target
    from workers.models.factory import model_class
    from workers.reporting import TRAINING_SPLIT, task_metrics

    task, plan = trial.task, trial.model
    given = trial.config.get("task") or {}
    task_key = f"task.target={given['target']!r}" if given.get("target") else f"task.name={task.name!r}"
    data = task.load()
    wanted = [*task.evaluation_splits, *([TRAINING_SPLIT] if task.trainable else [])]
    missing = [split for split in wanted if split not in data.splits]
    if missing:
        raise ValueError(f"{task_key}: its data has no split {missing[0]!r} (it has {', '.join(data.splits)}); "
                         f"expected the splits it declares: {', '.join(wanted)}")
    split = TRAINING_SPLIT if task.trainable else task.evaluation_splits[0]
    batch = {name: value[:2] for name, value in data.splits[split].items()}
    where = f"two examples of the {split!r} split of task {task.name!r}"
    cls = model_target(plan.target) if plan.target is not None else model_class(plan.model_name)
    out = check_on_examples(cls, plan.inputs, plan.output, plan.model_options, model_key(plan.model_name, plan.target),
                            plan.target, batch, where)
    try:
        loss, metrics = task.loss(out, batch), task.metrics(out, batch)
    except Exception as err:  # noqa: BLE001 - the task's own code: one line naming it
        raise ValueError(f"{task_key}: loss or metrics failed on the model's output for {where} ({type(err).__name__}: "
                         f"{str(err).strip()[:200]})") from None
    import torch

    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.is_floating_point()):
        raise ValueError(f"{task_key}: loss returned {type(loss).__name__} {getattr(loss, 'shape', '')} on {where}; "
                         "expected a scalar floating-point tensor")
    declared = task_metrics(task)
    if not isinstance(metrics, dict) or set(metrics) != set(declared) or not all(
            isinstance(value, (int, float)) for value in metrics.values()):
        shown = sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__
        raise ValueError(f"{task_key}: metrics returned {shown} on {where}; expected numbers for exactly its declared "
                         f"metrics {sorted(declared)} (metric, other_metrics: each with its direction)")


SETTINGS_KEYS = (*describe(SymmetrizerSettings, "symmetrizer"), *describe(RemulSettings, "remul"))


def _covers(keys: set[str], key: str) -> bool:
    """Whether ``key`` is one of ``keys`` or inside a section among them (``symmetrizer.interface``)."""
    return any(key == read or key.startswith(read + ".") for read in keys)


def unused_keys(config: TrialPlan | Mapping[str, Any]) -> dict[str, str]:
    """The settings this trial configuration never reads, each with the reason (``"not used by ga"``).

    Decided from the checked plan (a plain-dict config is checked first): the method says which keys it reads
    (``workers.methods.Method.reads``: its family facts, its own keys, the parsed group's PS relaxation) and
    which of its keys the other settings leave unread (``Method.unread``: REMUL's GradNorm keys with a constant
    balance); the parsed group (whatever its spelling: ``D8``, ``D_8``, ``D_k``) says which ``group.*`` keys it
    read (``Group.reads``). Two configurations that differ only in these keys train the same model on the same
    data with the same random streams, so a sweep runs them once. Deliberately short and conservative: a key is
    listed only where the code that would read it is not reached (``tests/train/test_unused_keys.py`` trains
    both ways and compares every metric)."""
    trial = config if isinstance(config, TrialPlan) else check_config(config)
    method, group = get_method(trial.model.method), trial.model.group
    read, anywhere = method.reads(group), method.reads(None)
    unused: dict[str, str] = {}
    for key in SETTINGS_KEYS:
        if not _covers(read, key):
            where = f"{method.name} over {group.name}" if _covers(anywhere, key) else method.name
            unused[key] = f"not used by {where}"
    for key, setting in (method.unread(trial) if method.unread else {}).items():
        unused[key] = f"not used by {setting}"
    for key in group_keys():
        if key not in group.reads:
            unused[f"group.{key}"] = f"not used by {group.name}"
    return unused
