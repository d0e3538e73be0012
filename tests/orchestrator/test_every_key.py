"""Every key of the composed settings is checked before anything starts: a value of the wrong type
and an out-of-range value each give exit status 2 and one line naming the key, with nothing written
and no Ray started. The walk covers every key of the default config and of an n-body config, so a
key added without a check (or without a case here) fails ``test_the_walk_covers_every_key``."""

from __future__ import annotations

import copy

import pytest

from orchestrator.cli import main
from orchestrator.config import compose
from orchestrator.overrides import parse_overrides
from orchestrator.plan import validate
from orchestrator.plan_text import _flat
from workers.settings import merge

NBODY = ["task=nbody", "group=sn_e", "task.train_size=20", "task.eval_size=10"]
# key -> (a value of the wrong type, an out-of-range value); None where the key has no such value
CASES: dict[str, tuple] = {
    "task.name": ("[1]", "no_such_task"),
    "task.seed": ("x", "-1"),
    "task.train_size": ("x", "0"),
    "task.eval_size": ("x", "0"),
    "task.dim": ("x", "0"),
    "task.n_particles": ("x", "0"),
    "task.frame_in": ("x", "-1"),
    "task.frame_out": ("x", "-1"),
    "task.clip_force": ("maybe", None),
    "task.transform": ("1", "spin"),
    "task.canvas": ("x", "9"),
    "task.val_size": ("x", "-1"),
    "task.test_size": ("x", "0"),
    "group.name": ("1", "Z_n"),
    "group.dim": ("x", "2"),
    "group.order": ("x", "0"),
    "symmetrizer.method": ("1", "magic"),
    "symmetrizer.noise_scale": ("x", "-1"),
    "symmetrizer.train_samples": ("x", "0"),
    "symmetrizer.eval_samples": ("x", "0"),
    "symmetrizer.temperature": ("x", "0"),
    "symmetrizer.sinkhorn_iters": ("x", "0"),
    "symmetrizer.entropy_weight": ("x", "-1"),
    "symmetrizer.interface.name": ("1", "foo"),
    "symmetrizer.interface.layers": ("x", "0"),
    "symmetrizer.interface.hidden": ("x", "0"),
    "symmetrizer.interface.dropout": ("x", "1.5"),
    "symmetrizer.interface.knn": ("x", "0"),
    "model.name": ("1", "resnet"),
    "model.widths": ("x", "[-1]"),
    "model.activation": ("1", "swish9"),
    "model.dropout": ("x", "1.5"),
    "model.residual": ("maybe", None),
    "trainer.epochs": ("x", "0"),
    "trainer.batch_size": ("x", "0"),
    "trainer.eval_batch_size": ("x", "0"),
    "trainer.optimizer": ("1", "sgd"),
    "trainer.lr": ("x", "0"),
    "trainer.pretrained_lr": ("x", "-1"),
    "trainer.weight_decay": ("x", "-0.1"),
    "trainer.warmup_epochs": ("x", "-1"),
    "trainer.schedule": ("1", "linear"),
    "trainer.grad_clip": ("x", "0"),
    "trainer.eval_every": ("x", "0"),
    "trainer.checkpoint_every": ("x", "0"),
    "trainer.seed": ("x", "-1"),
    "trainer.device": ("1", "tpu"),
    "trainer.precision": ("16", "fp16"),
    "trainer.devices": ("x", "0"),
    "trainer.threads": ("x", "0"),
    "trainer.equivariance_every": ("x", "-1"),
    "trainer.equivariance_samples": ("x", "0"),
    "trainer.equivariance_batch": ("x", "0"),
    "trainer.separation_seeds": ("x", "0"),
    "trainer.eval_samples_curve": ("x", "[0]"),
    "trainer.eval_samples_repeats": ("x", "0"),
    "trainer.eval_std_repeats": ("x", "1"),
    "remul.alpha": ("x", "-1"),
    "remul.beta": ("x", "-1"),
    "remul.balance": ("1", "adaptive"),
    "remul.gradnorm_lr": ("x", "-1"),
    "remul.gradnorm_gamma": ("x", "-1"),
    "sweep.params": ("x", "{trainer.lr: {grid: []}}"),
    "sweep.seeds": ("x", "0"),
    "sweep.num_samples": ("x", "0"),
    "sweep.search": ("1", "bayes"),
    "sweep.scheduler": ("1", "hyperband"),
    "sweep.metric": ("1", "bogus_metric"),
    "sweep.mode": ("1", "up"),
    "sweep.max_concurrent": ("x", "0"),
    "sweep.derived": ("x", "[{name: r}]"),
    "sweep.loglog": ("x", "[{metric: best_val_mse}]"),
    "sweep.compare": ("x", "{key: symmetrizer.method, reference: nope}"),
    "cluster.address": ("1", None),
    "cluster.cpus_per_trial": ("x", "0"),
    "cluster.gpus_per_trial": ("x", "-1"),
    "cluster.num_cpus": ("x", "0"),
    "cluster.max_failures": ("x", "-2"),
    "cluster.dashboard": ("maybe", None),
    "cluster.runtime_env": ("x", "{pip_install: [torch]}"),
    "logging.wandb.enabled": ("maybe", None),
    "logging.wandb.project": ("1", "''"),
    "logging.wandb.entity": ("1", "''"),
    "logging.wandb.mode": ("1", "sometimes"),
    "logging.progress": ("0", None),
    "name": ("[1]", "a/b"),
    "storage": ("1", "''"),
}
DIGITS = ["task=digits_rot", "group=c"]
BASES = {  # overrides under which a key is used (group.order: a finite group; interface.knn: Vector Neurons)
    "task.transform": DIGITS, "task.canvas": DIGITS, "task.val_size": DIGITS, "task.test_size": DIGITS,
    "task.": NBODY, "group.dim": NBODY, "symmetrizer.interface.knn": NBODY,
    "group.order": DIGITS,
}
WALK = [(key, kind, value) for key, values in CASES.items() for kind, value in zip(("type", "range"), values)
        if value is not None]
_COMPOSED: dict[tuple, dict] = {}


def _base(key: str) -> list[str]:
    if key == "task.name":
        return []
    return next((overrides for prefix, overrides in BASES.items() if key.startswith(prefix)), [])


def _composed(overrides: list[str]) -> dict:
    if tuple(overrides) not in _COMPOSED:
        _COMPOSED[tuple(overrides)] = compose(overrides)
    return copy.deepcopy(_COMPOSED[tuple(overrides)])


def test_the_walk_covers_every_key():
    keys = set()
    for overrides in ([], *BASES.values()):
        keys |= set(_flat(compose(overrides)))
    keys.discard("sweep.params")  # an empty mapping: flattened as itself
    assert keys - set(CASES) == set(), "keys without a wrong-value case"


@pytest.mark.parametrize("key,kind,value", WALK, ids=[f"{key}-{kind}" for key, kind, _ in WALK])
def test_a_wrong_value_of_every_key_is_refused(key, kind, value):
    """The value as the command line reads it, set into the composed config, fails ``validate`` (what
    ``launch`` runs before anything starts) with one line naming the key."""
    config = merge(_composed(_base(key)), parse_overrides([f"{key}={value}"]))
    with pytest.raises(ValueError) as error:
        validate(config)
    message = str(error.value)
    assert key in message and "\n" not in message, message


CLI = ["task.name=[1]", "sweep.params=x", "group.name=1", "trainer.epochs=x", "trainer.device=tpu",
       "trainer.device=cuda",
       "model.widths=[-1]", "symmetrizer.interface.hidden=0", "logging.wandb.enabled=maybe", "logging.progress=0",
       "sweep.metric=bogus_metric", "cluster.num_cpus=0", "remul.balance=adaptive"]


@pytest.mark.parametrize("override", CLI)
def test_the_command_line_exits_2_with_one_line_and_writes_nothing(override, tmp_path, capsys):
    import ray

    status = main(["launch", f"storage={tmp_path}", "name=walk", override])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and override.split("=")[0] in lines[0], err
    assert list(tmp_path.iterdir()) == [] and not ray.is_initialized()
