"""The README's examples work as copied: a sweep preset pasted into a file of its own composes and plans (``launch
--dry-run`` from a ``--config-dir``), the library example runs as written, and the From-Python example runs its two
sweeps and reads the folder its first one writes, and the two-experiments example compares two copies of one — at a
tiny size, through overrides the README documents
(``task.train_size``, ``trainer.epochs``, ...), appended to each ``launch``'s own. (The springs example is run end to
end by ``tests/test_examples.py``; the install and quickstart commands are CI's own steps and sweeps.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCED = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCED.findall(README) if lang == language]


def preset(name: str) -> str:
    """The README's YAML block that is ``configs/experiment/<name>.yaml``."""
    (found,) = [body for body in blocks("yaml") if f"configs/experiment/{name}.yaml" in body.split("defaults:")[0]]
    return found


def symsweep(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


def test_every_preset_in_the_readme_starts_with_its_package_line():
    """Hydra reads ``# @package`` only in a file's first lines of comments before anything else; the README's presets
    carry it first, so that a copy is a preset of the global package (not of ``experiment``)."""
    presets = [body for body in blocks("yaml") if "configs/experiment/" in body.split("\n", 2)[1]]
    assert len(presets) >= 2
    for body in presets:
        assert body.startswith("# @package _global_\n"), body.splitlines()[:2]


@pytest.mark.slow  # a subprocess composing and checking 27 configurations
def test_the_sweeps_preset_plans_as_copied(tmp_path):
    folder = tmp_path / "sweeps" / "experiment"
    folder.mkdir(parents=True)
    (folder / "my_sweep.yaml").write_text(preset("my_sweep"))
    done = symsweep("launch", "--config-dir", str(tmp_path / "sweeps"), "experiment=my_sweep", "--dry-run",
                    f"storage={tmp_path / 'runs'}", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # 3 methods x 3 noise scales, GA and canonicalization reading no noise scale: 5 configurations, each of the
    # 4 draws of lr run on every one of the 3 seeds (the same draw on each seed)
    assert "trials: 60 = 20 configuration(s) x 3 seed(s)" in done.stdout, done.stdout
    assert not (tmp_path / "runs").exists()


def test_the_library_example_runs_as_written(tmp_path):
    (example,) = [body for body in blocks("python") if "symmetrize(MyModel()" in body]
    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-4  # the coupled gap it prints: rounding in float32


TINY = ["task.train_size=40", "task.eval_size=20", "model.widths=[16]",
        "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4", "trainer.batch_size=20", "trainer.epochs=2",
        "trainer.threads=1", "cluster.num_cpus=2"]
SMALL = f"""
import orchestrator.api
_launch = orchestrator.api.launch
orchestrator.api.launch = lambda overrides, **options: _launch([*overrides, *{TINY!r}], **options)
"""


@pytest.mark.slow  # two small sweeps on an embedded Ray
def test_the_python_example_runs_and_loads_the_folder_its_launch_writes(tmp_path):
    (example,) = [body for body in blocks("python") if "from orchestrator.api import launch" in body]
    names = re.findall(r'launch\(\[[^\]]*"name=(\w+)"', example)
    loaded = re.findall(r'load_experiment\("runs/(\w+)"\)', example)
    assert names and loaded and set(loaded) <= set(names), (names, loaded)
    shown = example.replace("experiment.outcome ", "print('outcome', experiment.outcome) ")
    shown += "\nprint('trials', len(experiment.trials), 'curves', len(experiment.curves))\n"
    # the two-experiments example, on two copies of the second sweep named as it names them
    (comparing,) = [body for body in blocks("python") if "compare_experiments(" in body]
    shown += ("import shutil\nfor name in ('before', 'after'):\n    shutil.copytree('runs/nb2', f'runs/{name}')\n"
              + comparing + "\nprint('compared', len(comparison.table))\n")
    done = subprocess.run([sys.executable, "-c", SMALL + shown], cwd=tmp_path, capture_output=True, text=True,
                          timeout=400, env={**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "outcome 0" in done.stdout and "trials 12 " in done.stdout, done.stdout[-2000:]  # the quickstart's 12
    assert {p.name for p in (tmp_path / "runs").iterdir()} == {"nb1", "nb2", "before", "after"}
    assert "compared 2" in done.stdout and (tmp_path / "before-vs-after" / "compare.csv").is_file()
