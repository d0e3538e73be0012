"""Your own task (``task.target=package.module:Class`` or ``register_task``): a ``workers.tasks.Task`` subclass that
exists only in a temporary folder, checked against the task protocol where it is named, trained by the loop with
its own metrics and their directions, the transformed-test metrics and the equivariance gap as for a built-in
task; every mistake one line naming ``task.target``."""

from __future__ import annotations

import sys
import textwrap

import pytest

from tests.train.helpers import collector, compose_trial
from workers import reporting
from workers.settings import check_config, check_on_data
from workers.tasks import REGISTRY, register_task, task_label, unregister_task
from workers.train import run

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = textwrap.dedent('''
    """A lab's own data: noisy points in the plane; predict each point's distance to the centroid, and the mean."""
    import numpy as np
    import torch

    from workers.tasks import Task

    class Radii(Task):
        name = "radii"
        version = 1
        defaults = {"examples": 40, "points": 4, "seed": 0}
        input_kinds = {"pos": "point"}
        target_kind = "node"
        metric, mode = "score", "max"            # higher is better: the headline, for model selection
        other_metrics = {"mse": "min"}

        def validate(self):
            if self.params["points"] < 2:
                raise ValueError(f"task.points={self.params['points']!r} is not allowed; expected an integer >= 2")

        def generate(self):
            p, rng = self.params, np.random.default_rng(self.params["seed"])
            arrays = {}
            for split, count in (("train", p["examples"]), ("val", 10), ("test", 10)):
                pos = rng.normal(size=(count, p["points"], 2))
                arrays[f"{split}/pos"] = pos
                arrays[f"{split}/mask"] = np.ones((count, p["points"]), dtype=bool)
                arrays[f"{split}/y"] = np.linalg.norm(pos - pos.mean(1, keepdims=True), axis=-1)[..., None]
            return arrays

        def input_shapes(self):
            return {"pos": (self.params["points"], 2)}

        def output_shape(self):
            return (self.params["points"], 1)

        def loss(self, pred, batch):
            return ((pred - batch["y"]) ** 2).mean()

        def metrics(self, pred, batch):
            mse = float(((pred - batch["y"]) ** 2).mean())
            return {"score": -mse, "mse": mse}


    class Unfinished(Task):
        name, version, defaults = "unfinished", 1, {}
        input_kinds, target_kind, metric, mode = {"pos": "point"}, "node", "mse", "min"


    class BadKinds(Radii):
        name = "bad_kinds"
        input_kinds = {"pos": "points"}


    class Chatty(Radii):
        name = "chatty"

        def metrics(self, pred, batch):
            return {**super().metrics(pred, batch), "extra": 1.0}


    class NotATask:
        pass
''')

NO_DIRECTION = textwrap.dedent('''
    from workers.tasks import Task


    class Undirected(Task):
        name, version, defaults = "undirected", 1, {}
        metric = "mse"                           # no mode: which way is better is unknown
''')


@pytest.fixture
def tasks(tmp_path, monkeypatch):
    """``own_tasks`` (and ``own_undirected``) importable from a temporary folder only, for the test's duration."""
    (tmp_path / "own_tasks.py").write_text(TASKS)
    (tmp_path / "own_undirected.py").write_text(NO_DIRECTION)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SYMSWEEP_CACHE", str(tmp_path / "cache"))
    yield
    for name in ("own_tasks", "own_undirected"):
        sys.modules.pop(name, None)


def trial(target: str = "own_tasks:Radii", *overrides: str, **params) -> dict:
    config = compose_trial("group=sn_e", "symmetrizer.method=ga", "symmetrizer.train_samples=2",
                           "symmetrizer.eval_samples=2", "model.widths=[8]", "trainer.epochs=2",
                           "trainer.batch_size=10", f"task.target={target}", *overrides)
    config["task"].update(params)
    return config


def test_the_command_line_gives_your_task_its_own_section(tasks):
    config = trial("own_tasks:Radii", "task.points=5")
    assert config["task"] == {"target": "own_tasks:Radii", "points": 5}  # exp_classify's keys are gone
    assert task_label(config["task"]) == "Radii"
    task = check_config(config).task
    assert type(task).__name__ == "Radii" and task.params == {"examples": 40, "points": 5, "seed": 0}


def test_your_task_trains_with_its_metrics_their_directions_and_the_equivariance_checks(tasks, tmp_path):
    config = trial()
    plan = check_config(config)
    check_on_data(plan)
    task = plan.task
    reported = reporting.reported_metrics(task)
    assert reporting.headline(task) == "best_val_score" and reported["best_val_score"] == "max"
    assert reported["best_test_mse"] == "min" and reported["test_score_transformed"] == "max"
    reports, report = collector()
    last = run(config, report, tmp_path)
    assert [metrics["epoch"] for metrics, _ in reports] == [1, 2]
    assert {"best_val_score", "best_test_mse", "test_score_transformed", "test_mse_transformed"} <= set(last)
    assert last["equivariance_gap"] < 1e-9  # GA over S_n x E(2): exact, measured by the loop
    assert set(last) <= reporting.report_keys(task)  # nothing the vocabulary does not name
    assert last["best_val_score"] == max(metrics["val_score"] for metrics, _ in reports)  # selected by its mode


def test_register_task_names_your_class(tasks):
    import own_tasks

    register_task(own_tasks.Radii)
    try:
        config = trial()
        config["task"] = {"name": "radii", "points": 3}
        assert check_config(config).task.params["points"] == 3
        with pytest.raises(ValueError, match=r"^task\.name='radii' is already a task; allowed: a new name"):
            register_task(own_tasks.Radii)
        with pytest.raises(ValueError, match=r"^register_task\('Unfinished'\) does not implement generate, "):
            register_task(own_tasks.Unfinished)
    finally:
        unregister_task("radii")
    assert "radii" not in REGISTRY


@pytest.mark.parametrize("target,message", [
    ("no_such_lab.data:Task", r"^task\.target='no_such_lab\.data:Task' cannot be imported \(No module named "
     r"'no_such_lab'\); allowed: 'package\.module:Name'"),
    ("own_tasks:NotATask", r"^task\.target='own_tasks:NotATask' is the class NotATask, not a subclass of workers\."
     r"tasks\.Task; allowed: a Task subclass"),
    ("own_tasks:Unfinished", r"^task\.target='own_tasks:Unfinished' does not implement generate, input_shapes, "
     r"loss, metrics, output_shape; allowed: a Task subclass implementing"),
    ("own_tasks:BadKinds", r"^task\.target='own_tasks:BadKinds': BadKinds\.input_kinds is \{'pos': 'points'\}; "
     r"expected a dict of input name -> kind \(node, pair, point, vector, image, invariant\)$"),
    ("own_undirected:Undirected", r"^task\.target='own_undirected:Undirected' cannot be imported \(TypeError: task "
     r"class Undirected has no mode; every task declares its metric and its mode \(min or max\)\)"),
])
def test_a_wrong_task_target_is_one_line_naming_it(tasks, target, message):
    with pytest.raises(ValueError, match=message):
        check_config(trial(target))


def test_your_tasks_parameters_are_checked_by_it(tasks):
    with pytest.raises(ValueError, match=r"^task\.points=1 is not allowed; expected an integer >= 2$"):
        check_config(trial(points=1))
    with pytest.raises(ValueError, match=r"^task\.colour='red' is not a parameter of task 'radii'; allowed: "
                                         r"examples, points, seed$"):
        check_config(trial(colour="red"))
    config = trial()
    config["task"]["name"] = "nbody"
    with pytest.raises(ValueError, match=r"^task\.target='own_tasks:Radii' and task\.name='nbody' are both given"):
        check_config(config)


def test_metrics_that_are_not_declared_are_refused_before_anything_runs(tasks):
    with pytest.raises(ValueError, match=r"^task\.target='own_tasks:Chatty': metrics returned \['extra', 'mse', "
                                         r"'score'\] on two examples of the 'train' split of task 'chatty'; expected "
                                         r"numbers for exactly its declared metrics \['mse', 'score'\]"):
        check_on_data(check_config(trial("own_tasks:Chatty")))
