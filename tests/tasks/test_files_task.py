"""``task=files``: tensors you already have, in a ``.npz`` or ``.pt`` file, with a small schema in the config (the
inputs and their kinds, the output and its kind, a loss and metrics with their directions, split sizes or split
arrays); no code. Trained by the loop with the transformed-test metrics and the equivariance gap, its metrics'
directions recorded at launch so the tables never need the file; every mistake one line naming ``task.<key>``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train.helpers import collector, compose_trial
from workers import reporting
from workers.settings import check_config, check_on_data
from workers.train import run

COMMON = ("task=files", "symmetrizer.method=ga", "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2",
          "model.widths=[8]", "trainer.epochs=2", "trainer.batch_size=10")

pytestmark = pytest.mark.usefixtures("one_thread")


def springs(path, examples: int = 50, points: int = 4, seed: int = 0) -> str:
    """Points in the plane, each pulled towards the others: forces are E(2) x S_n equivariant vectors; a label
    says whether the cloud is wide (an invariant)."""
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(examples, points, 2)).astype(np.float32)
    force = (pos[:, None, :, :] - pos[:, :, None, :]).sum(2)
    wide = (np.linalg.norm(pos - pos.mean(1, keepdims=True), axis=-1).mean(1) > 1.1).astype(np.int64)
    np.savez(path, pos=pos, force=force, wide=wide)
    return str(path)


def trial(*overrides: str, **params) -> dict:
    config = compose_trial(*COMMON, *overrides)
    config["task"].update(params)
    return config


def test_a_regression_from_a_npz_file_trains_exactly_equivariant(tmp_path):
    path = springs(tmp_path / "springs.npz")
    config = trial("group=sn_e", path=path, inputs={"pos": "point"}, output="force", output_kind="vector",
                   metrics=["mse", "mae"])
    plan = check_config(config)
    check_on_data(plan)
    task = plan.task
    assert (task.metric, task.mode, dict(task.other_metrics)) == ("mse", "min", {"mae": "min"})
    data = task.load()
    assert {split: data.size(split) for split in data.splits} == {"train": 40, "val": 5, "test": 5}  # 80/10/10 %
    assert set(data.splits["train"]) == {"pos", "y"} and data.splits["train"]["y"].shape == (40, 4, 2)
    reports, report = collector()
    last = run(config, report, tmp_path / "trial")
    assert {"best_val_mse", "best_test_mae", "test_mse_transformed", "test_mae_transformed"} <= set(last)
    assert last["equivariance_gap"] < 1e-9 and set(last) <= reporting.report_keys(task)


def test_split_sizes_and_a_seed_cut_the_examples(tmp_path):
    path = springs(tmp_path / "springs.npz")
    first = check_config(trial("group=sn_e", path=path, inputs={"pos": "point"}, output="force",
                               output_kind="vector", sizes=[20, 10, 5], seed=3)).task.load()
    again = check_config(trial("group=sn_e", path=path, inputs={"pos": "point"}, output="force",
                               output_kind="vector", sizes=[20, 10, 5], seed=3)).task.load()
    other = check_config(trial("group=sn_e", path=path, inputs={"pos": "point"}, output="force",
                               output_kind="vector", sizes=[20, 10, 5], seed=4)).task.load()
    assert [first.size(split) for split in ("train", "val", "test")] == [20, 10, 5]
    assert torch.equal(first.splits["val"]["pos"], again.splits["val"]["pos"])
    assert not torch.equal(first.splits["val"]["pos"], other.splits["val"]["pos"])


def test_a_classification_from_a_pt_file_with_its_own_splits_and_a_mask(tmp_path):
    """Per-split arrays (``train/<name>``, ...), padded node sets (``mask``), integer labels: cross entropy, and
    accuracy as the headline metric, whose direction is max."""
    generator = torch.Generator().manual_seed(0)
    arrays = {}
    for split, count in (("train", 30), ("val", 10), ("test", 10)):
        pos = torch.randn(count, 5, 2, generator=generator)
        mask = torch.ones(count, 5, dtype=torch.bool)
        mask[::2, -1] = False
        arrays |= {f"{split}/pos": pos * mask[..., None], f"{split}/mask": mask,
                   f"{split}/label": (pos.norm(dim=-1).mean(1) > 1.2).long()}
    torch.save(arrays, tmp_path / "clouds.pt")
    config = trial("group=sn_e", path=str(tmp_path / "clouds.pt"), inputs={"pos": "point"}, output="label",
                   loss="cross_entropy", metrics=["accuracy", "cross_entropy"], classes=3)
    plan = check_config(config)
    check_on_data(plan)
    assert plan.model.output.shape == (3,) and reporting.reported_metrics(plan.task)["best_val_accuracy"] == "max"
    data = plan.task.load()
    assert data.splits["test"]["mask"].dtype == torch.bool and data.splits["test"]["y"].dtype == torch.long
    last = run(config, collector()[1], tmp_path / "trial")
    assert 0 <= last["best_test_accuracy"] <= 1 and "test_accuracy_transformed" in last
    assert last["equivariance_gap"] < 1e-9


def test_the_directions_are_recorded_at_launch_and_read_back_without_the_file(tmp_path):
    from orchestrator.aggregate import directions, task_of
    from orchestrator.config import compose
    from orchestrator.plan import validate

    path = springs(tmp_path / "springs.npz")
    config = compose([*COMMON, "group=sn_e", f"task.path={path}", "task.inputs={pos: point}", "task.output=wide",
                      "task.loss=bce", "task.output_kind=invariant", "sweep.metric=best_test_accuracy",
                      f"storage={tmp_path}"])
    plan = validate(config)
    assert (plan.metric, plan.mode) == ("best_test_accuracy", "max")
    assert config["metrics"]["best_val_accuracy"] == "max" and config["metrics"]["train_loss"] == "min"
    assert task_of(config) is None  # the tables never build task=files: its metrics follow its parameters
    assert directions(config, plan.metric, plan.mode)["test_accuracy_transformed"] == "max"


@pytest.mark.parametrize("params,message", [
    ({"path": "missing.npz"}, r"^task\.path='missing\.npz' is not allowed; expected an existing \.npz or \.pt file"),
    ({"path": "data.csv"}, r"^task\.path='data\.csv' is not allowed; expected a \.npz or \.pt file$"),
    ({"inputs": {"velocity": "vector"}}, r"^task\.inputs=\{'velocity': 'vector'\} is not allowed; expected names of "
     r"arrays in the file other than the output and mask: pos, wide$"),
    ({"inputs": {"pos": "pair"}}, r"^task\.inputs\.pos='pair' is not allowed; expected a kind whose per-example shape "
     r"fits the array's \(4, 2\)"),
    ({"inputs": {"pos": "points"}}, r"^task\.inputs\.pos='points' is not allowed; expected one of node, pair, point"),
    ({"output": "speed"}, r"^task\.output='speed' is not allowed; expected an array of the file: force, pos, wide$"),
    ({"metrics": ["accuracy"]}, r"^task\.metrics=\['accuracy'\] is not allowed; expected null or a list of distinct "
     r"metrics of loss mse: mse, mae, rmse \(the first selects\)$"),
    ({"loss": "hinge"}, r"^task\.loss='hinge' is not allowed; expected one of mse, l1, cross_entropy, bce$"),
    ({"sizes": [40, 10, 10]}, r"^task\.sizes=\[40, 10, 10\] is not allowed; expected null or \[train, val, test\] "
     r"sizes ≥ 1 of at most 50 examples"),
    ({"output": "wide", "loss": "cross_entropy", "classes": 1}, r"^task\.classes=1 is not allowed; expected null or "
     r"an integer ≥ 2$"),
])
def test_a_wrong_schema_is_one_line_naming_the_key(tmp_path, monkeypatch, params, message):
    monkeypatch.chdir(tmp_path)  # relative paths are relative to the folder the command runs in
    springs(tmp_path / "springs.npz")
    given = {"path": "springs.npz", "inputs": {"pos": "point"}, "output": "force", "output_kind": "vector", **params}
    if given.get("loss") == "cross_entropy":
        given["output_kind"] = "invariant"
    with pytest.raises(ValueError, match=message):
        check_config(trial("group=sn", **given))
