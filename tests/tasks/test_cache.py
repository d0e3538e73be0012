"""The on-disk dataset cache: reuse, invalidation, corrupt files, concurrent generation."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from workers.tasks import cache


class CountingGenerator:
    """A generator that records how often it ran."""

    def __init__(self, value: int = 7):
        self.calls = 0
        self.value = value

    def __call__(self) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"train/x": np.full((4, 3), self.value, dtype=np.float32), "test/y": np.arange(5)}


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    return tmp_path


def test_cache_root_follows_environment(root):
    path = cache.dataset_path("toy", 1, {"seed": 0})
    assert path.parent == root / "toy" and path.suffix == ".npz"


def test_second_load_reuses_file_without_generating(root):
    generate = CountingGenerator()
    first, path, generated = cache.load_or_generate("toy", 1, {"seed": 0}, generate)
    assert generated and generate.calls == 1 and path.exists()
    second, path2, generated2 = cache.load_or_generate("toy", 1, {"seed": 0}, generate)
    assert not generated2 and generate.calls == 1 and path2 == path
    assert set(second) == {"train/x", "test/y"}
    np.testing.assert_array_equal(second["train/x"], first["train/x"])
    assert second["train/x"].dtype == np.float32


def test_parameter_change_gives_new_file(root):
    generate = CountingGenerator()
    _, path_a, _ = cache.load_or_generate("toy", 1, {"seed": 0, "size": 10}, generate)
    _, path_b, generated = cache.load_or_generate("toy", 1, {"seed": 0, "size": 11}, generate)
    assert generated and generate.calls == 2 and path_a != path_b
    assert path_a.exists() and path_b.exists()
    # the key ignores the order in which parameters are given
    assert cache.cache_key("toy", 1, {"size": 10, "seed": 0}) == path_a.stem


def test_generator_version_change_regenerates(root):
    generate = CountingGenerator()
    _, path_v1, _ = cache.load_or_generate("toy", 1, {"seed": 0}, generate)
    _, path_v2, generated = cache.load_or_generate("toy", 2, {"seed": 0}, generate)
    assert generated and generate.calls == 2 and path_v1 != path_v2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_file_is_reported_and_regenerated(root, caplog, damage):
    generate = CountingGenerator()
    _, path, _ = cache.load_or_generate("toy", 1, {"seed": 0}, generate)
    content = path.read_bytes()
    damaged = {"garbage": b"this is not an npz file" * 10, "truncated": content[: len(content) // 2], "empty": b""}
    path.write_bytes(damaged[damage])

    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        arrays, path2, generated = cache.load_or_generate("toy", 1, {"seed": 0}, generate)
    assert generated and generate.calls == 2 and path2 == path
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and str(path) in warnings[0] and "unreadable" in warnings[0]
    np.testing.assert_array_equal(arrays["train/x"], np.full((4, 3), 7))
    _, _, generated_again = cache.load_or_generate("toy", 1, {"seed": 0}, generate)
    assert not generated_again and generate.calls == 2


def test_list_cached_reports_metadata(root):
    cache.load_or_generate("toy", 3, {"seed": 5}, CountingGenerator())
    (entry,) = cache.list_cached()
    assert entry["task"] == "toy" and entry["version"] == 3 and entry["params"] == {"seed": 5}
    assert Path(entry["path"]).exists() and entry["bytes"] == Path(entry["path"]).stat().st_size


WORKER = textwrap.dedent(
    """
    import importlib.util, json, sys, time
    from pathlib import Path
    import numpy as np

    root, marker, start, ready, module = (Path(arg) for arg in sys.argv[1:6])
    # load cache.py alone: the workers.tasks package imports torch, which is slow to start
    spec = importlib.util.spec_from_file_location("cache", module)
    cache = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cache)

    def generate():
        with open(marker, "a") as handle:
            handle.write("ran\\n")
        time.sleep(1.0)
        return {"train/x": np.arange(100_000)}

    ready.touch()
    while not start.exists():  # start both generations at the same moment
        time.sleep(0.005)
    arrays, path, generated = cache.load_or_generate("toy", 1, {"seed": 0}, generate, root)
    print(json.dumps({"generated": generated, "sum": int(arrays["train/x"].sum()), "path": str(path)}))
    """
)


def test_concurrent_generation_runs_generator_once(tmp_path):
    marker, start = tmp_path / "marker.txt", tmp_path / "start"
    root = tmp_path / "cache"
    ready = [tmp_path / f"ready{index}" for index in range(2)]
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(root), str(marker), str(start), str(flag), cache.__file__],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for flag in ready
    ]
    deadline = time.monotonic() + 60
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.01)  # both imported and waiting at the start line
    start.touch()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        results.append(json.loads(out))

    assert marker.read_text().count("ran") == 1
    assert sorted(result["generated"] for result in results) == [False, True]
    assert all(result["sum"] == sum(range(100_000)) for result in results)
    assert results[0]["path"] == results[1]["path"]
    assert [p.name for p in (root / "toy").glob("*.npz")] == [Path(results[0]["path"]).name]
    assert not list((root / "toy").glob("*.tmp"))
