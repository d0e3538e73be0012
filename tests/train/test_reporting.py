"""One vocabulary of report keys (``workers.reporting``): the loop reports nothing it does not name, it names
nothing the loop never reports, and every metric of every task has a direction.

One tiny trial per task family (every task of the registry, each method family's loss parts, the
end-of-trial curve, a finished checkpoint evaluated anew) is trained with ``workers.train.run``; every
key of every report must be one of ``report_keys(task)``, and every numeric one that is a metric must have
its direction in ``reported_metrics(task)``, the list ``sweep.metric`` is checked against.
"""

from __future__ import annotations

import pytest

from tests.train.helpers import (
    NBODY_MLP,
    NBODY_PS,
    collector,
    compose_trial,
    shrink_exp_classify,
    shrink_task,
)
from workers import reporting
from workers.reporting import DIRECTIONS, report_keys, reported_metrics
from workers.tasks import REGISTRY, Task, get_task, task_class
from workers.train import run

TINY_GRAPHS = ("model.widths=[16]", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=8",
               "symmetrizer.interface.layers=1", "trainer.separation_seeds=2")
FAMILIES = {  # one tiny configuration per task; together they cover every method family's loss parts
    "nbody-ps-curve": (*NBODY_PS, "trainer.epochs=2", "trainer.eval_samples_curve=[1,2]",
                       "trainer.equivariance_every=1", "trainer.eval_std_repeats=2"),
    "nbody-remul-gradnorm": (*NBODY_MLP, "symmetrizer=remul", "remul.balance=gradnorm", "trainer.epochs=2"),
    "nbody-augment": (*NBODY_MLP, "symmetrizer=augment", "trainer.epochs=1"),
    "nbody_gravity-ga": ("task=nbody_gravity", "task.train_size=4", "task.eval_size=2", "group=e", "symmetrizer=ga",
                         "model=mlp", "model.widths=[16]", "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2",
                         "trainer.batch_size=2", "trainer.epochs=1"),
    "digits_rot-ga": ("task=digits_rot", "task.train_size=8", "task.val_size=4", "task.test_size=4", "group=c",
                      "symmetrizer=ga", "model=cnn", "model.channels=[4]", "trainer.batch_size=4", "trainer.epochs=1"),
    "pattern-ps": ("task=pattern", "task.train_size=2", "task.val_size=1", "task.test_size=1", "task.patterns=2",
                   "task.max_nodes=100", "group=sn", "model=mlp", "model.widths=[8]", "symmetrizer.train_samples=2",
                   "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4", "symmetrizer.interface.layers=1",
                   "trainer.batch_size=2", "trainer.epochs=1"),
    "exp_classify-ps": ("task=exp_classify", "group=sn", *TINY_GRAPHS, "symmetrizer.train_samples=2",
                        "trainer.batch_size=8", "trainer.epochs=1"),
    "exp-separation": ("task=exp", "group=sn", *TINY_GRAPHS),
    "graph8c-separation": ("task=graph8c", "group=sn", *TINY_GRAPHS),
}


def trial_reports(name: str, monkeypatch, tmp_path) -> tuple[type[Task], list[dict]]:
    """Every report of the tiny trial ``name`` (a finished nbody trial is also resumed with another sample count:
    the re-evaluation's report)."""
    shrink_exp_classify(monkeypatch)
    shrink_task(monkeypatch, "exp", {"test": 40})
    shrink_task(monkeypatch, "graph8c", {"test": 40})
    overrides = FAMILIES[name]
    config = compose_trial(*overrides)
    reports, report = collector()
    run(config, report, tmp_path)
    if name == "nbody-ps-curve":
        evaluated = compose_trial(*overrides, "symmetrizer.eval_samples=4")
        run(evaluated, report, tmp_path / "again", resume=tmp_path / "checkpoint_000002")
    return task_class(config["task"]["name"]), [metrics for metrics, _ in reports]


@pytest.mark.parametrize("name", FAMILIES)
def test_every_reported_key_is_in_the_vocabulary_with_its_direction(name, monkeypatch, tmp_path):
    task, reports = trial_reports(name, monkeypatch, tmp_path)
    known, metrics = report_keys(task), reported_metrics(task)
    for report in reports:
        unknown = sorted(set(report) - known)
        assert not unknown, f"{name} reports {unknown}, which workers.reporting does not name"
    assert reporting.headline(task) in reports[-1] and reporting.headline(task) in metrics  # the default metric
    trained = [report for report in reports if reporting.EVAL_SAMPLES not in report]  # not a re-evaluation
    for key in {key for report in trained for key in report if reporting.in_every_report(task, key)}:
        assert all(key in report for report in trained), f"{key} is said to be in every report of {name}"


def test_the_vocabulary_names_nothing_the_loop_never_reports(monkeypatch, tmp_path):
    """n-body with PS (entropy, curve, re-evaluation), REMUL and augmentation: together every name of the
    vocabulary of a trainable task is reported."""
    seen: set[str] = set()
    for index, name in enumerate(("nbody-ps-curve", "nbody-remul-gradnorm", "nbody-augment")):
        task, reports = trial_reports(name, monkeypatch, tmp_path / str(index))
        seen.update(key for report in reports for key in report)
    assert seen == report_keys(task)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_task_declares_the_direction_of_its_metrics_and_its_splits(name, tmp_path):
    task = task_class(name)
    assert reporting.task_metrics(task) and set(reporting.task_metrics(task).values()) <= set(DIRECTIONS)
    assert set(reported_metrics(task).values()) <= set(DIRECTIONS)
    assert reporting.headline(task) in reported_metrics(task)
    if name in ("nbody", "nbody_gravity"):  # the others load their (cached) data in the loop test above
        data = get_task(name, train_size=2, eval_size=2).load(tmp_path)
        assert tuple(split for split in data.splits if split != reporting.TRAINING_SPLIT) == task.evaluation_splits


def _task(**attributes) -> type:
    return type("Made", (Task,), {"name": "made", **attributes})


@pytest.mark.parametrize("attributes, message", [
    ({"metric": "mse"}, r"^task class Made has no mode; every task declares its metric and its mode \(min or max\)$"),
    ({"metric": "mse", "mode": "low"}, r"^task class Made: metric 'mse' has direction 'low'; allowed: min, max$"),
    ({"metric": "mse", "mode": "min", "other_metrics": {"r2": None}}, r"metric 'r2' has direction None"),
    ({"metric": "mse", "mode": "min", "evaluation_splits": ("test",)}, r"lacks 'val', the split model selection"),
])
def test_a_task_without_a_direction_fails_where_it_is_defined(attributes, message):
    with pytest.raises(TypeError, match=message):
        _task(**attributes)
    assert _task(metric="mse", mode="min", trainable=False, evaluation_splits=("test",)).mode == "min"


def test_an_unknown_metric_has_no_direction():
    with pytest.raises(ValueError, match=r"^metric 'best_val_accuracy' is not reported by task 'nbody'; allowed: "
                                         r"best_val_mse, best_test_mse, val_mse"):
        reporting.direction(task_class("nbody"), "best_val_accuracy")
    assert reporting.direction(task_class("exp"), "test_separated_fraction") == "max"
    assert reporting.direction(task_class("nbody"), "samples_per_s") == "max"
