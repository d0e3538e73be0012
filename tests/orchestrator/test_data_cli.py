"""``symsweep data generate`` and ``symsweep data list`` on the fast digits_rot task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from workers.tasks import cache


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    return tmp_path


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON object, nothing else on stdout


def test_generate_then_reuse_json(capsys, cache_dir):
    first = run_json(capsys, ["data", "generate", "task=digits_rot", "seed=1", "task.train_size=50", "--json"])
    assert first["task"] == "digits_rot" and first["generated"] is True
    assert first["splits"] == {"train": 50, "val": 297, "test": 500}
    assert first["params"]["seed"] == 1 and first["params"]["train_size"] == 50
    assert Path(first["path"]).exists() and Path(first["path"]).is_relative_to(cache_dir)
    assert first["fields"]["train"]["image"] == {"shape": [50, 12, 12, 1], "dtype": "float32"}
    assert first["seconds"] >= 0

    second = run_json(capsys, ["data", "generate", "task=digits_rot", "seed=1", "--json"])
    assert second["generated"] is False and second["path"] == first["path"]
    assert second["splits"]["train"] == 1000


def test_generate_human_readable(capsys):
    assert main(["data", "generate", "task.name=digits_rot", "transform=flip_rotate"]) == 0
    out = capsys.readouterr().out
    assert "digits_rot: generated" in out and "transform=flip_rotate" in out
    assert "train" in out and "(1000, 12, 12, 1)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["task=no_such_task"], "task.name='no_such_task'"),
        (["task=digits_rot", "angle=3"], "task.angle=3"),
        (["task=digits_rot", "task.canvas=9"], "task.canvas=9"),
        (["seed=1"], "task=NAME is required"),
        (["task=digits_rot", "seed"], "'seed' is not of the form key=value"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    assert main(["data", "generate", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_list_shows_cached_datasets(capsys, cache_dir):
    assert run_json(capsys, ["data", "list", "--json"]) == {"root": str(cache_dir), "datasets": []}
    generated = run_json(capsys, ["data", "generate", "task=digits_rot", "--json"])
    listing = run_json(capsys, ["data", "list", "--json"])
    (entry,) = listing["datasets"]
    assert entry["task"] == "digits_rot" and entry["path"] == generated["path"] and entry["bytes"] > 0
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "1 datasets" in out and "digits_rot" in out


@pytest.mark.slow  # a fresh interpreter
def test_console_script_entry_point(cache_dir):
    script = Path(sys.executable).with_name("symsweep")
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    env = {**os.environ, cache.CACHE_ENV: str(cache_dir)}
    result = subprocess.run([str(script), "data", "generate", "task=digits_rot", "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["task"] == "digits_rot" and report["generated"] is True
    assert Path(report["path"]).parent.parent == cache_dir
