"""symsweep on a real multi-node Ray cluster (``clusters/local_cluster.py``: a head that runs no trials
and two worker nodes, each its own ``ray start``): attaching with ``cluster.address``, the resource
check against the nodes' GPUs, and a sweep that loses a worker node mid-training and still finishes
every trial from its checkpoint on the surviving node."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusters.local_cluster import LocalCluster, session_alive

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# tests/orchestrator/sweeps.py's tiny n-body sweep (cluster.num_cpus only sizes an embedded Ray).
TINY = ["task=nbody", "task.train_size=40", "task.eval_size=20", "group=sn_e", "model.widths=[16]",
        "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4",
        "trainer.batch_size=20", "trainer.threads=1"]

# Group samples that split evenly over 3 device workers (the default 10 is refused before the nodes are checked).
SPLIT_IN_3 = ["symmetrizer.train_samples=6", "symmetrizer.eval_samples=6"]

# Runs in a fresh process (as `symsweep launch` would): attach, then check_resources for each override set.
CHECK = """
import json, sys
import ray
from orchestrator.config import compose
from orchestrator.plan import validate
from orchestrator.ray_cluster import check_resources, start_ray
address, cases = sys.argv[1], json.loads(sys.argv[2])
started = start_ray(compose([f"cluster.address={address}"])["cluster"])
out = {"started_here": started, "gcs_address": ray.get_runtime_context().gcs_address,
       "alive": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]), "errors": []}
for overrides in cases:
    try:
        check_resources(validate(compose([f"cluster.address={address}", *overrides])))
        out["errors"].append(None)
    except ValueError as err:
        out["errors"].append(str(err))
print(json.dumps(out))
"""


def symsweep(*args: str, env: dict, log: Path | None = None):
    """Run the CLI to the end, or (with ``log``) start it in the background writing its output there."""
    command = [sys.executable, "-m", "orchestrator.cli", *args]
    if log is None:
        return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def results(trial_dir: Path) -> list[dict]:
    file = trial_dir / "result.json"
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()] if file.exists() else []


def trial_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name.startswith("trainable_")) if path.exists() else []


def wait_for(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.5)
    raise TimeoutError("condition not reached")


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def test_attach_and_gpu_requests_are_checked_against_the_nodes_fake_gpus():
    with LocalCluster(workers=2, cpus=1, gpus=1, head_cpus=0) as cluster:
        head, one, two = (cluster.node(name) for name in ("head", "worker1", "worker2"))
        assert head.resources["CPU"] == 0 and one.resources["GPU"] == two.resources["GPU"] == 1
        assert len({head.node_id, one.node_id, two.node_id}) == 3  # three Ray nodes, each alive
        cases = [["cluster.gpus_per_trial=1"], ["cluster.gpus_per_trial=1", "trainer.devices=2"],
                 ["cluster.gpus_per_trial=1", "trainer.devices=3", *SPLIT_IN_3], ["cluster.gpus_per_trial=2"],
                 ["cluster.cpus_per_trial=2"]]
        done = subprocess.run([sys.executable, "-c", CHECK, cluster.address, json.dumps(cases)], capture_output=True,
                              text=True, timeout=120, env=cluster.env, cwd=Path(__file__).parents[2])
        assert done.returncode == 0, done.stderr[-3000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
    # stopped: every process of the three nodes is gone, and so is their temporary directory
    assert not any(session_alive(node.process.pid) for node in (head, one, two)) and not cluster.root.exists()
    assert out["started_here"] is False  # attached: no embedded Ray was started
    assert out["gcs_address"].rsplit(":", 1)[1] == cluster.address.rsplit(":", 1)[1]
    assert out["alive"] == sorted([head.node_id, one.node_id, two.node_id])
    fits, sharded, too_many, two_gpus, two_cpus = out["errors"]
    assert fits is None and sharded is None  # one GPU per trial; two device workers on two GPU nodes
    assert "trainer.devices=3" in too_many and "at most 2" in too_many
    assert "cluster.gpus_per_trial=2" in two_gpus and "the largest node has 1 GPUs" in two_gpus
    assert "cluster.cpus_per_trial=2" in two_cpus and "the largest node has 1 CPUs" in two_cpus


def test_a_sweep_survives_a_killed_worker_node(tmp_path):
    path, epochs = tmp_path / "multinode", 12
    with LocalCluster(workers=2, cpus=1, gpus=0, head_cpus=0) as cluster:
        # No node has a GPU: refused before anything starts, in one line (attached as a job's driver is:
        # cluster=remote, with the address in RAY_ADDRESS).
        refused = symsweep("launch", "cluster=remote", f"storage={tmp_path}", "name=gpu", *TINY,
                           "cluster.gpus_per_trial=1", env={**cluster.env, "RAY_ADDRESS": cluster.address})
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "cluster.gpus_per_trial=1" in refused.stderr and "no node of this cluster has a GPU" in refused.stderr
        assert not (tmp_path / "gpu").exists()

        launch = symsweep("launch", f"cluster.address={cluster.address}", f"storage={tmp_path}", "name=multinode",
                          *TINY, f"trainer.epochs={epochs}", "trainer.checkpoint_every=1", "task.train_size=200",
                          "sweep.seeds=2", "logging.wandb.enabled=false", env=cluster.env, log=tmp_path / "launch.log")
        try:
            def one_mid_training():  # both trials started (one per worker node), one of them a few epochs in
                lasts = [lines[-1] for lines in map(results, trial_dirs(path)) if lines]
                middle = [last for last in lasts if 2 <= last["epoch"] < epochs - 3]
                return (middle[0], lasts) if len(lasts) == 2 and middle else None

            victim, lasts = wait_for(one_mid_training, timeout=180)
            assert {cluster.name_of(last["node_id"]) for last in lasts} == {"worker1", "worker2"}, lasts
            killed_node = cluster.name_of(victim["node_id"])
            cluster.kill(killed_node)  # the machine of a running trial dies
            assert not session_alive(cluster.node(killed_node).process.pid)
            assert not running(victim["pid"])  # the trial's worker process died with its node
            survivor = next(node.node_id for node in cluster.nodes if node.name not in ("head", killed_node))
            status = symsweep("status", str(path), "--json", env=cluster.env)  # watching works meanwhile
            assert status.returncode == 0 and json.loads(status.stdout)["trials"] == 2, status.stderr
            launch.wait(timeout=200)
        finally:
            if launch.poll() is None:
                os.killpg(launch.pid, signal.SIGKILL)
                launch.wait(timeout=30)
    assert launch.returncode == 0, (tmp_path / "launch.log").read_text()[-4000:]
    with (path / "trials.csv").open() as table:
        rows = {row["trial_id"]: row for row in csv.DictReader(table)}
    assert len(rows) == 2 and all(row["state"] == "completed" for row in rows.values()), rows
    assert "node_id" not in next(iter(rows.values()))  # a string metric: the tables keep numbers only
    assert int(rows[victim["trial_id"]]["num_failures"]) >= 1
    killed = next(t for t in trial_dirs(path) if results(t)[0]["trial_id"] == victim["trial_id"])
    lines = results(killed)
    before = [line for line in lines if line["node_id"] == victim["node_id"]]
    after = lines[len(before):]
    assert after and all(line["node_id"] == survivor for line in after), [(x["epoch"], x["node_id"]) for x in lines]
    restored_from = after[0]["epoch"] - 1
    assert 1 <= restored_from and after[0]["epoch"] <= before[-1]["epoch"] + 1  # from a checkpoint, not epoch 1
    assert [line["epoch"] for line in after] == list(range(after[0]["epoch"], epochs + 1))
    assert {line["epoch"] for line in lines} == set(range(1, epochs + 1))  # nothing lost
