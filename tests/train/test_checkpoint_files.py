"""Checkpoint files are data, never code: they load with ``weights_only=True``, a crafted ``state.pt`` is
refused without running anything, and a missing, truncated or foreign file is one line naming it (exit 2
from the commands, before anything is written). A truncated newest checkpoint falls back to the previous
complete one."""

from __future__ import annotations

import pathlib

import pytest
import torch

from orchestrator.cli import main
from tests.train.helpers import (
    NBODY_MLP,
    compose_trial,
)
from workers.checkpoints import CheckpointError, checkpoints, load_checkpoint, newest_loadable
from workers.train import run


class Payload:
    """Unpickling this object creates ``marker`` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def trained(tmp_path):
    """Two complete checkpoints of a tiny run (epochs 1 and 2)."""
    run(compose_trial(*NBODY_MLP, "trainer.epochs=2"), None, tmp_path / "run")
    return tmp_path / "run"


def crafted(tmp_path) -> tuple[pathlib.Path, pathlib.Path]:
    """A state.pt whose unpickling creates a file; checks that the payload is live with the unsafe loader."""
    marker, file = tmp_path / "pwned", tmp_path / "evil" / "state.pt"
    file.parent.mkdir()
    torch.save({"model": Payload(marker), "optimizer": {}, "scheduler": {}, "rng": {}, "loop": {}, "config": {}}, file)
    torch.load(file, weights_only=False)  # what the old loader did: the payload runs
    assert marker.exists()
    marker.unlink()
    return file, marker


def truncate(file: pathlib.Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def refuses_without_advice(line: str) -> None:
    """The refusal of a crafted file says what it is and never passes on torch's advice to load it unsafely."""
    assert "weights_only" not in line and "trust" not in line and "\x1b" not in line, line
    assert "other than tensors and plain data" in line and "never loads" in line, line


def test_checkpoints_load_as_weights_only(trained):
    state = torch.load(trained / "checkpoint_000002" / "state.pt", map_location="cpu", weights_only=True)
    assert state["loop"]["epoch"] == 2 and "torch" in state["rng"]
    assert load_checkpoint(trained / "checkpoint_000002")["loop"]["epoch"] == 2


def test_a_crafted_checkpoint_is_refused_without_running_it(tmp_path):
    file, marker = crafted(tmp_path)
    with pytest.raises(CheckpointError, match=str(file)) as raised:
        load_checkpoint(file.parent)
    assert not marker.exists()
    refuses_without_advice(str(raised.value))


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(trained):
    truncate(trained / "checkpoint_000002" / "state.pt")
    found = checkpoints(trained)
    assert [path.name for path in found] == ["checkpoint_000002", "checkpoint_000001"]
    chosen, skipped = newest_loadable(found)
    assert chosen == trained / "checkpoint_000001"
    assert len(skipped) == 1 and str(trained / "checkpoint_000002" / "state.pt") in skipped[0]


@pytest.mark.parametrize("damage", ["missing", "truncated", "not_a_checkpoint", "crafted"])
def test_equivariance_refuses_a_bad_checkpoint_in_one_line(damage, trained, tmp_path, capsys):
    marker = tmp_path / "pwned"
    if damage == "missing":
        path = tmp_path / "nowhere" / "state.pt"
    elif damage == "truncated":
        path = trained / "checkpoint_000002" / "state.pt"
        truncate(path)
    elif damage == "not_a_checkpoint":
        path = tmp_path / "tensor.pt"
        torch.save(torch.zeros(3), path)
    else:
        path, marker = crafted(tmp_path)
    assert main(["equivariance", "--checkpoint", str(path), "--json"]) == 2
    line = one_line_error(capsys)
    assert str(path) in line and "symsweep equivariance: error:" in line
    assert not marker.exists()
    if damage == "crafted":
        refuses_without_advice(line)


@pytest.mark.parametrize("damage", ["missing", "truncated", "crafted"])
def test_train_refuses_a_bad_resume_before_writing(damage, trained, tmp_path, capsys):
    marker = tmp_path / "pwned"
    if damage == "missing":
        path = tmp_path / "nowhere"
    elif damage == "truncated":
        path = trained / "checkpoint_000002"
        truncate(path / "state.pt")
    else:
        path, marker = crafted(tmp_path)
    workdir = tmp_path / "out"
    assert main(["train", *NBODY_MLP, "trainer.epochs=3", "--workdir", str(workdir), "--resume", str(path)]) == 2
    line = one_line_error(capsys)
    assert str(path) in line
    assert not workdir.exists() and not marker.exists()
    if damage == "crafted":
        refuses_without_advice(line)


def test_train_refuses_a_workdir_that_is_a_file(tmp_path, capsys):
    file = tmp_path / "taken"
    file.write_text("x")
    assert main(["train", *NBODY_MLP, "trainer.epochs=1", "--workdir", str(file)]) == 2
    assert str(file) in one_line_error(capsys)
    assert file.read_text() == "x"


def test_a_non_finite_loss_names_a_checkpoint_that_exists(tmp_path):
    from workers.train import NonFiniteLoss

    config = compose_trial(*NBODY_MLP, "trainer.epochs=3", "trainer.lr=1e30")
    with pytest.raises(NonFiniteLoss) as raised:
        run(config, None, tmp_path)
    message = str(raised.value)
    named = [word.rstrip(";,") for word in message.split() if "checkpoint_" in word]
    assert all(pathlib.Path(word).is_dir() for word in named), message
    assert named or "no checkpoint was written" in message
