"""``orchestrator.api.launch``: a sweep from Python (a notebook) through the same composition, checks and
``run_experiment`` as ``symsweep launch``, returning the ``Experiment`` that ``load_experiment`` gives. The notebook's
package is only on its ``sys.path`` (inserted at run time, as a notebook does): the embedded Ray's trials import it
too. A refusal is the CLI's one line, raised, with nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from orchestrator.api import launch

ROOT = Path(__file__).resolve().parents[2]
NETS = textwrap.dedent('''
    import torch
    from torch import nn


    class FlatNet(nn.Module):
        def __init__(self, inputs, output, hidden: int = 8):
            super().__init__()
            self.names, self.shape = list(inputs), output.shape
            size = sum(spec.size for spec in inputs.values())
            self.net = nn.Sequential(nn.Linear(size, hidden), nn.Tanh(), nn.Linear(hidden, output.size))

        def forward(self, inputs):
            return self.net(torch.cat([inputs[n].flatten(1) for n in self.names], 1)).view(-1, *self.shape)
''')
NOTEBOOK = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, sys.argv[1])                     # the notebook's own folder of code
    from orchestrator.api import launch, load_experiment

    preset = {"defaults": [{"override /task": "files"}, {"override /group": "sn_e"}, {"override /model": None}],
              "task": {"path": sys.argv[2], "inputs": {"pos": "point"}, "output": "centred", "output_kind": "point"},
              "model": {"target": "nb_lab.nets:FlatNet", "hidden": 8},
              "symmetrizer": {"train_samples": 2, "eval_samples": 2},
              "trainer": {"epochs": 2, "batch_size": 10, "threads": 1},
              "sweep": {"params": {"symmetrizer.method": {"grid": ["ga", "none"]}}, "seeds": 2,
                        "compare": {"key": "symmetrizer.method", "reference": "none"}}}
    common = [f"storage={sys.argv[3]}", "logging.wandb.enabled=false", "logging.progress=false"]
    plan = launch([*common, "name=planned"], config=preset, dry_run=True)
    experiment = launch([*common, "name=nb"], config=preset)
    again = load_experiment(experiment.path)
    print(json.dumps({
        "n_trials": plan["n_trials"], "outcome": experiment.outcome,
        "states": sorted(experiment.trials["state"]), "same_summary": experiment.summary.equals(again.summary),
        "same_trials": experiment.trials.equals(again.trials), "compared": len(experiment.comparisons),
        "gaps": {row["symmetrizer.method"]: row["equivariance_gap_mean"] for _, row in experiment.summary.iterrows()},
        "metric": experiment.config["sweep"]["metric"],
        "planned_written": (experiment.path.parent / "planned").exists(),
    }))
''')


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_notebook_launches_a_sweep_of_its_own_model_and_gets_the_experiment(tmp_path):
    (tmp_path / "code" / "nb_lab").mkdir(parents=True)
    (tmp_path / "code" / "nb_lab" / "__init__.py").write_text("")
    (tmp_path / "code" / "nb_lab" / "nets.py").write_text(NETS)
    pos = np.random.default_rng(0).normal(size=(40, 4, 3)).astype(np.float32)
    np.savez(tmp_path / "clouds.npz", pos=pos, centred=pos - pos.mean(1, keepdims=True))
    (tmp_path / "work").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, "-c", NOTEBOOK, str(tmp_path / "code"), str(tmp_path / "clouds.npz"),
                           str(tmp_path / "runs")], cwd=tmp_path / "work", env=env, capture_output=True, text=True,
                          timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["n_trials"] == 4 and out["outcome"] == 0 and out["states"] == ["completed"] * 4
    assert out["same_summary"] and out["same_trials"] and out["compared"] == 1
    assert out["gaps"]["ga"] < 1e-9 < out["gaps"]["none"]  # GA exact; the bare model is not
    assert out["metric"] == "best_val_mse" and not out["planned_written"]  # a dry run writes nothing


def test_a_refusal_is_the_clis_one_line_raised_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"^model\.target='no_such_lab\.nets:Net' cannot be imported \(No module "
                                         r"named 'no_such_lab'\); allowed: "):
        launch([f"storage={tmp_path}", "name=refused", "task=nbody", "group=sn_e",
                "model.target=no_such_lab.nets:Net"])
    with pytest.raises(ValueError, match=r"^launch\(config=\.\.\.\) is a preset itself; allowed: config= or an "
                                         r"experiment= override, not both$"):
        launch(["experiment=quickstart"], config={"trainer": {"epochs": 1}})
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_from_python_is_the_clis_plan(tmp_path):
    plan = launch([f"storage={tmp_path}", "task=nbody", "group=sn_e", "symmetrizer.method=ga,ps"],
                  config={"trainer": {"epochs": 3}, "sweep": {"seeds": 2}}, dry_run=True)
    assert plan["n_trials"] == 4 and plan["epochs"] == 3 and plan["swept"] == {
        "symmetrizer.method": {"grid": ["ga", "ps"]}}
    assert list(tmp_path.iterdir()) == []
