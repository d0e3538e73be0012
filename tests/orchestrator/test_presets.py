"""Every experiment preset composes and validates at full scale, and runs one tiny trial in-process.

The tiny run composes ``experiment=<name>`` with overrides that shrink it (tiny datasets, one epoch,
two group samples, two separation seeds, small models), validates the whole sweep grid, then trains
one of its configurations with ``workers.train.run`` (no Ray): the first value of every swept key
for a full-scale preset, the last for a ``_cpu`` one, so both ends of each grid get built. The
metrics the preset's sweep ranks, divides (``sweep.derived``) and fits (``sweep.loglog``) must be
among the reported ones. Also: the validation errors of ``sweep.derived`` and ``sweep.loglog``.
"""

from __future__ import annotations

import math

import pytest

from orchestrator.config import CONFIG_DIR, compose, trial_config
from orchestrator.plan import validate
from workers.settings import merge
from workers.train import run

PRESETS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))
SLOW_TRIALS = {"ps_exp_classify_samples_cpu",  # the whole EXP-classify set, 20 evaluation samples: ~10 s
               # all 11,117 graphs: the separation control's calibrated count compares most of the 61.8 M pairs
               # in each seed (~12 s; tests/train/test_separation_control.py covers the protocol on 60 graphs)
               "ps_graph8c", "ps_graph8c_cpu"}
PAPER_PRESETS = [name for name in PRESETS if name != "quickstart" and not name.endswith("_cpu")]

COMMON = {"trainer.epochs": 1, "trainer.warmup_epochs": 0, "trainer.batch_size": 100, "trainer.eval_batch_size": 200,
          "trainer.eval_every": 1, "trainer.checkpoint_every": 1, "trainer.separation_seeds": 2,
          "trainer.equivariance_every": 1, "trainer.equivariance_samples": 2, "trainer.equivariance_batch": 4,
          "trainer.threads": 1, "trainer.device": "cpu", "trainer.precision": "fp32",
          "symmetrizer.train_samples": 2, "symmetrizer.eval_samples": 2, "symmetrizer.interface.hidden": 4,
          "sweep.seeds": 1, "logging.wandb.enabled": False}
TASKS = {  # tiny datasets (graph8c and EXP have no size parameters)
    "nbody": {"task.train_size": 8, "task.eval_size": 4},
    "nbody_gravity": {"task.train_size": 8, "task.eval_size": 4},
    "pattern": {"task.train_size": 4, "task.val_size": 2, "task.test_size": 2, "task.patterns": 2,
                "task.max_nodes": 100},
    "digits_rot": {"task.train_size": 16, "task.val_size": 8, "task.test_size": 8},
}
MODELS = {  # small models of the same kind
    "mlp": {"model.widths": [16]},
    "transformer": {"model.layers": 1, "model.width": 8, "model.heads": 2},
    "vit": {"model.depth": 1, "model.embed_dim": 16, "model.heads": 2, "model.patch": 10},
    "gnn": {"model.layers": 1, "model.hidden": 8},
    "egnn": {"model.layers": 1, "model.hidden": 8},
    "gin_id": {"model.layers": 1, "model.hidden": 8},
    "cnn": {"model.channels": [4]},
}


def _override(key: str, value) -> str:
    text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value).lower() \
        if isinstance(value, bool) else str(value)
    return f"{key}={text}"


def shrink(name: str) -> dict:
    """The overrides that make preset ``name`` tiny (the trial takes them also for keys the preset sweeps)."""
    config = compose([f"experiment={name}"])
    return {**COMMON, **TASKS.get(config["task"]["name"], {}), **MODELS[config["model"]["name"]]}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_validates_at_full_scale(name):
    config = compose([f"experiment={name}"])
    assert config["sweep"]["params"], f"{name} sweeps nothing"
    assert validate(config).checked >= 1


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_every_paper_preset_has_a_cpu_version_without_gpus(name):
    full, cpu = compose([f"experiment={name}"]), compose([f"experiment={name}_cpu"])
    assert full["cluster"]["gpus_per_trial"] > 0 and cpu["cluster"]["gpus_per_trial"] == 0
    assert cpu["trainer"]["device"] == "cpu" and cpu["cluster"]["num_cpus"] == 2
    assert full["task"]["name"] == cpu["task"]["name"] and set(full["sweep"]["params"]) == set(cpu["sweep"]["params"])
    assert full["sweep"]["derived"] == cpu["sweep"]["derived"] and full["sweep"]["loglog"] == cpu["sweep"]["loglog"]


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_TRIALS else name
                                  for name in PRESETS])
def test_preset_runs_one_tiny_trial(name, tmp_path):
    tiny = shrink(name)
    swept = compose([f"experiment={name}"])["sweep"]["params"]  # a command-line value would pin a swept key
    config = compose([f"experiment={name}",
                      *(_override(key, value) for key, value in tiny.items() if key not in swept)])
    plan = validate(config)
    pick = -1 if name.endswith("_cpu") else 0
    point = {key: next(iter(domain.values()))[pick] for key, domain in config["sweep"]["params"].items()}
    trial = merge(merge(trial_config(config), point), {k: v for k, v in tiny.items() if k.split(".")[0] != "sweep"
                                                        and not k.startswith("logging.")})
    reports = []
    result = run(trial, lambda metrics, checkpoint: reports.append(metrics), tmp_path / "trial")
    assert reports and result == reports[-1]
    metric = plan.metric
    wanted = [metric] + [spec["metric"] for spec in config["sweep"]["derived"] + config["sweep"]["loglog"]]
    for key in wanted:
        assert key in result and math.isfinite(result[key]), (key, sorted(result))


DERIVED = "{name: r, metric: best_test_mse, key: model.name, numerator: gnn, denominator: egnn}"
BAD_SWEEPS = [  # (extra overrides of candidate_nbody_dims_cpu, the key the error must name)
    (["sweep.derived=[{name: r, metric: best_test_mse, key: model.name, numerator: mlp, denominator: egnn}]"],
     "sweep.derived[0].numerator"),
    (["sweep.derived=[{name: r, metric: best_test_mes, key: model.name, numerator: gnn, denominator: egnn}]"],
     "sweep.derived[0].metric"),
    (["sweep.derived=[{name: r, metric: best_test_mse, key: trainer.lr, numerator: gnn, denominator: egnn}]"],
     "sweep.derived[0].key"),
    (["sweep.derived=[{name: r, metric: best_test_mse, key: model.name, numerator: gnn, denominator: gnn}]"],
     "sweep.derived[0].denominator"),
    (["sweep.derived=[{name: r, metric: best_test_mse, key: model.name, numerator: gnn}]"], "sweep.derived[0]"),
    ([f"sweep.derived=[{DERIVED}, {DERIVED}]"], "sweep.derived[1].name"),
    (["sweep.derived=[{name: 'a b', metric: best_test_mse, key: model.name, numerator: gnn, denominator: egnn}]"],
     "sweep.derived[0].name"),
    (["sweep.loglog=[{metric: best_test_mse, key: model.name}]"], "sweep.loglog[0].key"),
    (["sweep.loglog=[{metric: best_test_mse, key: task.dim, complement: maybe}]"], "sweep.loglog[0].complement"),
    (["sweep.loglog=[{metric: best_test_mse}]"], "sweep.loglog[0]"),
    (["sweep.loglog=[{metric: best_test_mse, key: task.dim}]", "task.dim=3,3"], "sweep.loglog[0].key"),
    (["+sweep.params.trainer.lr={uniform: [0.0, 0.1]}", "sweep.derived=[]",
      "sweep.loglog=[{metric: test_mse, key: trainer.lr}]"], "sweep.loglog[0].key"),
    (["sweep.compare={key: model.name, reference: mlp}"], "sweep.compare.reference"),
    (["sweep.compare={key: trainer.lr, reference: 0.001}"], "sweep.compare.key"),
    (["~sweep.compare", "+sweep.compare={key: model.name}"], "sweep.compare"),
    (["sweep.compare={key: model.name, reference: egnn, metric: best_test_mes}"], "sweep.compare.metric"),
]


@pytest.mark.parametrize("overrides,key", BAD_SWEEPS)
def test_derived_and_loglog_errors_name_the_key(overrides, key):
    config = compose(["experiment=candidate_nbody_dims_cpu", *overrides])
    with pytest.raises(ValueError, match=r"^" + key.replace("[", r"\[").replace("]", r"\]") + "="):
        validate(config)


def test_good_derived_and_loglog_specs_pass():
    config = compose(["experiment=candidate_nbody_dims_cpu",
                      "sweep.loglog=[{metric: mc_equivariance_error, key: task.dim}]",
                      "sweep.compare={key: model.name, reference: egnn, metric: equivariance_gap}"])
    assert validate(config).checked == 10
