"""``symsweep train``: one epoch of every trainable task at tiny size, EXP's separation protocol,
bad overrides (exit 2, the key named, nothing written) and ``--resume``. In-process via
``orchestrator.cli.main``; EXP and EXP-classify are cut to a few graphs (see tests/train/helpers.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.train.helpers import (
    EXP_CLASSIFY_SIZES,
    NBODY_MLP,
    TIMING_KEYS,
    shrink_task,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_PS = ("model.widths=[16]", "symmetrizer.train_samples=1", "symmetrizer.eval_samples=1",
           "symmetrizer.interface.hidden=8", "symmetrizer.interface.layers=1")
TASKS = {
    "exp_classify": ("task=exp_classify", "group=sn", "trainer.batch_size=12") + TINY_PS,
    "nbody": NBODY_MLP,
    "nbody_gravity": ("task=nbody_gravity", "task.train_size=6", "task.eval_size=3", "group=sn_e",
                      "trainer.batch_size=3") + TINY_PS,
    "pattern": ("task=pattern", "task.train_size=4", "task.val_size=2", "task.test_size=2", "task.patterns=2",
                "task.max_nodes=100", "group=sn", "trainer.batch_size=2") + TINY_PS,
    "digits_rot": ("task=digits_rot", "task.train_size=6", "task.val_size=4", "task.test_size=4", "group=c",
                   "model=cnn", "model.channels=[4,8]", "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2",
                   "symmetrizer.interface.hidden=8", "trainer.batch_size=3"),
}
METRIC = {"exp_classify": "accuracy", "nbody": "mse", "nbody_gravity": "mse", "pattern": "accuracy",
          "digits_rot": "accuracy"}


@pytest.fixture(autouse=True)
def small_exp(monkeypatch):
    shrink_task(monkeypatch, "exp_classify", EXP_CLASSIFY_SIZES)
    shrink_task(monkeypatch, "exp", {"test": 40})


def progress(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / "progress.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("task", list(TASKS))
def test_one_epoch_of_every_trainable_task(task, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["train", *TASKS[task], "trainer.epochs=1", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("epoch 1") and f"results in {workdir}" in out

    rows = progress(workdir)
    assert [row["epoch"] for row in rows] == [1]
    row = rows[0]
    assert row["checkpoint"] == str(workdir / "checkpoint_000001")
    assert (workdir / "checkpoint_000001" / "state.pt").is_file()
    metric = METRIC[task]
    for key in ("train_loss", f"val_{metric}", f"test_{metric}", f"best_val_{metric}", "best_epoch",
                "mc_equivariance_error", "equivariance_gap"):
        assert math.isfinite(row[key]), key
    result = json.loads((workdir / "result.json").read_text())
    assert result == {key: value for key, value in row.items() if key != "checkpoint"}
    config = json.loads((workdir / "config.json").read_text())
    assert config["task"]["name"] == task and set(config) == {"task", "group", "symmetrizer", "model", "trainer",
                                                               "remul"}


def test_separation_task_and_json_lines(tmp_path, capsys):
    workdir = tmp_path / "exp"
    argv = ["train", "task=exp", *TINY_PS, "trainer.separation_seeds=2", "--workdir", str(workdir), "--json"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1  # --json: one JSON object per report and nothing else
    printed = json.loads(lines[0])
    assert printed == progress(workdir)[0]
    assert printed["test_unseparated_pairs"] == 0 and printed["seeds"] == 2 and printed["checkpoint"] is None
    assert json.loads((workdir / "result.json").read_text())["test_unseparated_pairs"] == 0
    assert not list(workdir.glob("checkpoint_*"))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.lr=-1", "trainer.lr"),
        ("trainer.lrr=0.1", "trainer.lrr"),
        ("symmetrizer.temperature=0", "symmetrizer.temperature"),
        ("task.train_size=0", "task.train_size"),
        ("model.depth=3", "model.depth"),
        ("trainer.devices=2", "trainer.devices"),
    ],
)
def test_bad_override_exits_2_and_writes_nothing(override, key, tmp_path, capsys):
    workdir = tmp_path / "never"
    assert main(["train", *NBODY_MLP, override, "--workdir", str(workdir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    error = captured.err.strip()
    assert error.startswith("symsweep train: error:") and key in error and len(error.splitlines()) == 1
    assert not workdir.exists()


def test_resume_continues_where_the_checkpoint_left_off(tmp_path):
    overrides = [*NBODY_MLP, "model.dropout=0.1", "trainer.epochs=3"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", *overrides, "--workdir", str(first)]) == 0
    assert main(["train", *overrides, "--workdir", str(second), "--resume",
                 str(first / "checkpoint_000001")]) == 0
    full, resumed = progress(first), progress(second)
    assert [row["epoch"] for row in resumed] == [2, 3]
    for before, after in zip(full[1:], resumed):
        for key, value in before.items():
            if key not in TIMING_KEYS and key != "checkpoint":
                assert after[key] == value, key
    assert resumed[-1]["checkpoint"] == str(second / "checkpoint_000003")

    # resuming a finished run (its last checkpoint, a state.pt file) trains nothing and succeeds
    assert main(["train", *overrides, "--workdir", str(second), "--resume",
                 str(second / "checkpoint_000003" / "state.pt")]) == 0
    assert all(row["epoch"] == 3 and row["val_mse"] == resumed[-1]["val_mse"] for row in progress(second)[2:])
    result = json.loads((second / "result.json").read_text())
    assert result["epoch"] == 3 and result["val_mse"] == resumed[-1]["val_mse"]
    assert sorted(path.name for path in second.glob("checkpoint_*")) == ["checkpoint_000002", "checkpoint_000003"]


@pytest.mark.parametrize("lr", ["1e30", "3e3"])  # diverges in epoch 1 (no checkpoint yet); in epoch 2 (one kept)
def test_a_diverged_loss_is_one_line_naming_the_epoch_and_checkpoint_exit_1(lr, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["train", *NBODY_MLP, "trainer.epochs=4", f"trainer.lr={lr}", "--workdir", str(workdir)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("symsweep train: error: non-finite training loss") and " at epoch " in line, line
    assert "lower trainer.lr" in line, line
    named = [Path(word.rstrip(";,")) for word in line.split() if "checkpoint_" in word]
    assert all((path / "state.pt").is_file() for path in named), line
    assert named or "no checkpoint was written" in line, line


@pytest.mark.parametrize("sweep", ["symmetrizer.noise_scale=0.1,1", "trainer.lr=interval(1e-4,1e-2)"])
def test_sweep_syntax_is_refused_in_one_line(sweep, tmp_path, capsys):
    """``train`` runs one configuration: a command-line sweep would silently train the base value instead."""
    key = sweep.split("=")[0]
    assert main(["train", "task=nbody", "group=sn_e", sweep, f"--workdir={tmp_path / 'w'}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"symsweep train: error: {key}=") and "symsweep launch" in line
    assert not (tmp_path / "w").exists()
