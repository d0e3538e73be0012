"""``symsweep launch`` with your own code: a package in the folder the command runs in (not installed), named by
``model.target``/``task.target``/``group.target``, or a sweep preset of your own (``--config-dir``). Every mistake is
refused before Ray starts, in one line naming the key, exit status 2, nothing written; ``--dry-run`` shows the plan
with your task's own metric and direction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.models.helpers import FLAT_NET

ROOT = Path(__file__).resolve().parents[2]
LAB = {
    "nets.py": textwrap.indent(FLAT_NET, " " * 8) + '''

        class Flat(FlatNet):
            def forward(self, inputs):
                return super().forward(inputs).flatten(1)


        class NotAModule:
            pass
    ''',
    "tasks.py": '''
        from workers.tasks import Task


        class Undirected(Task):
            name, version, defaults = "undirected", 1, {}
            metric = "mse"                              # no mode
    ''',
    "__init__.py": "",
}
TINY = ["task=nbody", "task.train_size=6", "task.eval_size=4", "group=sn_e", "symmetrizer.method=ga",
        "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "trainer.epochs=1"]
SETTINGS = TINY[4:]  # for a task or group of your own
SWEEP = textwrap.dedent('''
    # @package _global_
    defaults:
      - override /task: files
      - override /group: sn_e
      - override /model: null
    task:
      path: points.npz
      inputs: {pos: point}
      output: target
      output_kind: vector
      metrics: [mae, mse]
    model:
      target: lab.nets:FlatNet
      hidden: 8
    sweep:
      params:
        symmetrizer.method: {grid: [ga, ps]}
      compare: {key: symmetrizer.method, reference: ga}
''')


@pytest.fixture
def lab(tmp_path):
    """A folder with the package ``lab`` (never installed), a data file and a preset folder of its own."""
    for name, text in LAB.items():
        (tmp_path / "lab").mkdir(exist_ok=True)
        (tmp_path / "lab" / name).write_text(textwrap.dedent(text))
    pos = np.random.default_rng(0).normal(size=(30, 4, 3)).astype(np.float32)
    np.savez(tmp_path / "points.npz", pos=pos, target=pos - pos.mean(1, keepdims=True))
    (tmp_path / "configs" / "experiment").mkdir(parents=True)
    (tmp_path / "configs" / "experiment" / "mine.yaml").write_text(SWEEP)
    return tmp_path


def symsweep(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI run from ``folder`` (its package importable there only), symsweep's code from this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("overrides,message", [
    (["model.target=no_such_lab.nets:Net"], "model.target='no_such_lab.nets:Net' cannot be imported (No module "
     "named 'no_such_lab'); allowed: 'package.module:Name' importable in the driver and in every trial"),
    (["model.target=lab.nets:NotAModule"], "model.target='lab.nets:NotAModule' is the class NotAModule, not a "
     "torch.nn.Module class; allowed: an nn.Module subclass"),
    (["model.target=lab.nets:Flat"], "model.target='lab.nets:Flat' returned shape (2, 15) on two examples of the "
     "'train' split of task 'nbody'; expected one tensor of shape (2, 5, 3)"),
    (["task.target=lab.tasks:Undirected", *SETTINGS], "task.target='lab.tasks:Undirected' cannot be imported "
     "(TypeError: task class Undirected has no mode; every task declares its metric and its mode (min or max))"),
    (["group.generators.matrices=[[[0.6,-0.8,0],[0.8,0.6,0],[0,0,1]]]", *TINY[:3], *SETTINGS], "group.generators: "
     "group 'generated': its generators make more than limit=1024 elements; allowed: a group of at most limit "
     "elements (raise limit)"),
])
def test_bad_code_of_your_own_is_refused_before_ray_starts(lab, overrides, message):
    given = overrides if len(overrides) > 1 else [*TINY, *overrides]
    done = symsweep(lab, "launch", *given, f"storage={lab / 'runs'}", "name=refused")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"symsweep launch: error: {message}"), done.stderr
    assert not (lab / "runs").exists()  # nothing written


def test_a_preset_of_your_own_with_your_model_and_your_file(lab):
    done = symsweep(lab, "launch", "--config-dir", "configs", "experiment=mine", "--dry-run", "--json",
                    "model.hidden=4,8", f"storage={lab / 'runs'}")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert (plan["metric"], plan["mode"]) == ("best_val_mae", "min")  # the first of task.metrics, its direction
    assert plan["swept"] == {"symmetrizer.method": {"grid": ["ga", "ps"]}, "model.hidden": {"grid": [4, 8]}}
    assert len(plan["configurations"]) == plan["n_trials"] == 4
    assert plan["experiment"].startswith(str(lab / "runs" / "files-")) and not (lab / "runs").exists()


def test_a_preset_section_of_your_own_takes_new_keys_from_the_command_line(lab):
    """A preset's own model (``override /model: null``) takes keyword arguments it does not list, without ``+``;
    a key its class does not take is named."""
    done = symsweep(lab, "launch", "--config-dir", "configs", "experiment=mine", "--dry-run", "model.depth=2",
                    f"storage={lab / 'runs'}")
    assert done.returncode == 2
    assert done.stderr.strip() == ("symsweep launch: error: model.depth=2 is not an option of model "
                                   "'lab.nets:FlatNet'; allowed: hidden (in the sweep configuration "
                                   "symmetrizer.method='ga')")


def test_the_sweep_metric_must_be_one_your_task_reports(lab):
    done = symsweep(lab, "launch", "--config-dir", "configs", "experiment=mine", "--dry-run",
                    "sweep.metric=best_val_accuracy", f"storage={lab / 'runs'}")
    assert done.returncode == 2
    assert done.stderr.startswith("symsweep launch: error: sweep.metric='best_val_accuracy' is not allowed; expected "
                                  "a metric the trials of task 'files' report: best_val_mae, best_val_mse, ")


def test_a_config_dir_that_is_not_a_folder_is_one_line(lab):
    done = symsweep(lab, "launch", "--config-dir", "nowhere", "experiment=mine", "--dry-run")
    assert done.returncode == 2 and done.stderr.strip() == (
        "symsweep launch: error: --config-dir nowhere: does not exist; expected a directory of config groups and "
        "presets, e.g. DIR/experiment/my_sweep.yaml")
