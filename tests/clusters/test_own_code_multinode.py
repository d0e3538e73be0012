"""Your code on every node of a real multi-node Ray cluster (``clusters/local_cluster.py``: a head that runs no trials
and two worker nodes, each its own ``ray start``): a package that exists only in a temporary folder on the driver's
side — never installed, not on the nodes' import path, not in the driver's working folder — is shipped with
``cluster.runtime_env.py_modules`` and imported by the trials on both worker nodes, from each node's own copy."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clusters.local_cluster import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
NETS = textwrap.dedent('''
    """A lab's network that writes down where it was imported from, each time it is built."""
    import os

    import torch
    from torch import nn


    class FlatNet(nn.Module):
        def __init__(self, inputs, output, hidden: int = 8, trace: str = ""):
            super().__init__()
            if trace:
                with open(trace, "a") as out:
                    out.write(f"{os.getpid()} {__file__}\\n")
            self.names, self.shape = list(inputs), output.shape
            size = sum(spec.size for spec in inputs.values())
            self.net = nn.Sequential(nn.Linear(size, hidden), nn.Tanh(), nn.Linear(hidden, output.size))

        def forward(self, inputs):
            return self.net(torch.cat([inputs[n].flatten(1) for n in self.names], 1)).view(-1, *self.shape)
''')
TINY = ["task=nbody", "task.train_size=20", "task.eval_size=10", "group=sn_e", "symmetrizer.method=ga",
        "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "trainer.batch_size=10", "trainer.threads=1",
        "trainer.epochs=2", "sweep.seeds=2", "logging.wandb.enabled=false"]


def test_a_package_only_the_driver_has_is_imported_by_trials_on_every_node(tmp_path):
    package = tmp_path / "driver_side" / "lab_shipped"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(NETS)
    trace = tmp_path / "trace.txt"
    with LocalCluster(workers=2, cpus=1, gpus=0, head_cpus=0) as cluster:
        # the driver imports it from its folder (for the checks before Ray starts); the nodes never had that folder
        env = {**cluster.env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(package.parent)])}
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "launch", f"cluster.address={cluster.address}",
             f"storage={tmp_path / 'runs'}", "name=shipped", *TINY, "model.target=lab_shipped.nets:FlatNet",
             f"model.trace={trace}", f"cluster.runtime_env={{py_modules: [{package}]}}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        workers = {node.name: node.temp_dir for node in cluster.nodes if node.name != "head"}
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with (tmp_path / "runs" / "shipped" / "trials.csv").open() as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 2 and all(row["state"] == "completed" for row in rows), rows
    files = [line.split(" ", 1)[1] for line in trace.read_text().splitlines()]
    driver = [file for file in files if file.startswith(str(package))]
    shipped = [file for file in files if not file.startswith(str(package))]
    assert driver and shipped, files  # the driver's forward check, then the trials
    nodes = {name for file in shipped for name, folder in workers.items() if file.startswith(str(folder))}
    assert nodes == {"worker1", "worker2"}, files  # each trial's node imported its own copy of the package
    assert all("py_modules_files" in file for file in shipped), files
