"""The README's other ways onto a cluster, end to end on a real multi-node Ray (``clusters/local_cluster.py``, token
authentication on): ``ray job submit`` with ``clusters/runtime_env.yaml`` and ``ray job logs``, a driver attached
through Ray Client (``cluster.address=ray://...``), the dashboard of the embedded Ray (``cluster.dashboard=true``,
127.0.0.1 only), and clients without the cluster's token refused by all of them."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from clusters.local_cluster import LocalCluster, ray_executable

REPO = Path(__file__).resolve().parents[2]
TINY = ["task=nbody", "task.train_size=40", "task.eval_size=20", "group=sn_e", "model.widths=[16]",
        "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4",
        "trainer.batch_size=20", "trainer.threads=1", "trainer.epochs=2", "sweep.seeds=2",
        "logging.wandb.enabled=false"]
WRONG_TOKEN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=1, cpus=2, head_cpus=0, client=True) as started:  # the head runs no trial
        yield started


def ray_cli(*args: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([ray_executable(), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=REPO)


def trials(path: Path) -> dict[str, dict]:
    with (path / "trials.csv").open() as file:
        return {row["trial_id"]: row for row in csv.DictReader(file)}


def node_ids(path: Path) -> set[str]:
    return {json.loads(line)["node_id"] for result in path.glob("trainable_*/result.json")
            for line in result.read_text().splitlines() if line.strip()}


def first_trial_started(path: Path) -> float:
    return min(params.stat().st_mtime for params in path.glob("trainable_*/params.json"))


def token() -> str:
    """This machine's Ray token, where Ray reads it from."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").read_text().strip()


def authorised(url: str) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"Authorization": f"Bearer {token()}"})


def without_token(env: dict, home: Path) -> dict:
    """A client that has token authentication on but not this cluster's token."""
    home.mkdir(exist_ok=True)
    env = {key: value for key, value in env.items() if not key.startswith("RAY_AUTH_TOKEN")}
    return {**env, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": WRONG_TOKEN}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_job_submit_runs_a_sweep_with_the_runtime_env(cluster, tmp_path):
    path, job = tmp_path / "job", "symsweep-test-job"
    submitted = time.time()
    # the entrypoint first shows what the runtime environment gave the driver: WANDB_MODE from runtime_env.yaml,
    # and this checkout's code unpacked from the job's package (working_dir)
    show_env = shlex.join(["python", "-c", "import os, orchestrator; "
                           "print('runtime env:', os.environ['WANDB_MODE'], orchestrator.__file__)"])
    sweep = shlex.join(["symsweep", "launch", "cluster=remote", f"storage={tmp_path}", "name=job", *TINY])
    submit = ray_cli("job", "submit", "--address", cluster.dashboard_url, "--no-wait", "--submission-id", job,
                     "--runtime-env", "clusters/runtime_env.yaml", "--", "sh", "-c", f"{show_env} && {sweep}",
                     env=cluster.env, timeout=120)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    logs = ray_cli("job", "logs", "--address", cluster.dashboard_url, "--follow", job, env=cluster.env)
    status = ray_cli("job", "status", "--address", cluster.dashboard_url, job, env=cluster.env)
    assert logs.returncode == 0 and f"Job '{job}' succeeded" in status.stdout, logs.stdout[-3000:] + status.stdout
    print(f"\nray job submit -> first trial running: {first_trial_started(path) - submitted:.1f} s")
    shown = next(line for line in logs.stdout.splitlines() if line.startswith("runtime env:"))
    assert shown.split()[2] == "offline" and "_ray_pkg_" in shown.split()[3], shown
    # the driver's output, followed live: the summary table and where the results are
    assert "| n_seeds | best_val_mse |" in logs.stdout and f"results: {path}" in logs.stdout, logs.stdout[-3000:]
    rows = trials(path)
    assert len(rows) == 2 and all(row["state"] == "completed" for row in rows.values()), rows
    assert json.loads((path / "config.json").read_text())["cluster"]["address"] == "auto"
    assert node_ids(path) == {cluster.node("worker1").node_id}  # trials ran on the worker node, results on storage


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_driver_attaches_through_ray_client(cluster, tmp_path):
    path = tmp_path / "client"
    launch = subprocess.run([sys.executable, "-m", "orchestrator.cli", "launch",
                             f"cluster.address={cluster.client_address}", f"storage={tmp_path}", "name=client", *TINY],
                            capture_output=True, text=True, env=cluster.env, timeout=240, cwd=REPO)
    assert launch.returncode == 0, launch.stdout[-3000:] + launch.stderr[-3000:]
    rows = trials(path)
    assert len(rows) == 2 and all(row["state"] == "completed" for row in rows.values()), rows
    assert node_ids(path) == {cluster.node("worker1").node_id}
    assert "| n_seeds | best_val_mse |" in launch.stdout


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_clients_without_the_token_are_refused(cluster, tmp_path):
    env = without_token(cluster.env, tmp_path / "home")
    jobs = ray_cli("job", "list", "--address", cluster.dashboard_url, env=env, timeout=60)
    assert jobs.returncode != 0 and "token authentication is enabled" in jobs.stderr, jobs.stderr[-2000:]
    request = urllib.request.Request(f"{cluster.dashboard_url}/api/jobs/")
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(request, timeout=30)  # no token at all
    assert http.value.code in (401, 403)
    attaching = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", f"cluster.address={address}",
                                   f"storage={tmp_path}", f"name=refused{index}", *TINY], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
                 for index, address in enumerate((cluster.address, cluster.client_address))]  # GCS, Ray Client
    for attach in attaching:  # side by side: Ray retries for a while before it gives up
        out, err = attach.communicate(timeout=150)
        assert attach.returncode == 2 and "cannot connect" in err and "RAY_AUTH_MODE=token" in err, out + err
    assert not list(tmp_path.glob("refused*/tuner.pkl"))  # nothing ran
    with urllib.request.urlopen(authorised(f"{cluster.dashboard_url}/api/jobs/"), timeout=30) as answer:
        assert answer.status == 200  # with the token the same API answers



# Runs as `symsweep launch cluster.dashboard=true` starts its embedded Ray; prints where the dashboard listens
# and what a request without the token, with it, and to this machine's other address get.
DASHBOARD = """
import json, socket, sys, urllib.error, urllib.request
import ray
from ray._private.services import get_node_ip_address
from ray._private.worker import global_worker
from orchestrator.config import compose
from orchestrator.ray_cluster import start_ray
assert start_ray(compose(["cluster.num_cpus=1", "cluster.dashboard=true"])["cluster"])
host, port = global_worker.node.address_info["webui_url"].rsplit(":", 1)
def status(headers):
    try:
        return urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/api/jobs/", headers=headers),
                                      timeout=30).status
    except urllib.error.HTTPError as err:
        return err.code
other = get_node_ip_address()
with socket.socket() as probe:
    probe.settimeout(5)
    elsewhere = probe.connect_ex((other, int(port))) == 0 if not other.startswith("127.") else None
print(json.dumps({"host": host, "no_token": status({}), "token": status({"Authorization": "Bearer " + sys.argv[1]}),
                  "other_address": other, "reached_elsewhere": elsewhere}))
ray.shutdown()
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_embedded_rays_dashboard_listens_on_loopback_with_token_authentication():
    done = subprocess.run([sys.executable, "-c", DASHBOARD, token()], capture_output=True, text=True, timeout=150,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["host"] == "127.0.0.1" and out["reached_elsewhere"] is not True, out
    assert out["no_token"] == 401 and out["token"] == 200, out


def test_the_progress_callback_pickles_without_the_drivers_stdout(tmp_path, monkeypatch):
    """Ray Client runs Tune, callbacks included, on the head: the callback must pickle where the driver's stdout
    is a file (a log, a pipe) and then print to the stdout of the process it runs in."""
    import pickle

    from orchestrator.progress import Progress

    with (tmp_path / "driver.log").open("a") as driver_log:
        monkeypatch.setattr(sys, "stdout", driver_log)
        copy = pickle.loads(pickle.dumps(Progress("best_val_mse", "min")))
    with (tmp_path / "head.log").open("a") as head_log:
        monkeypatch.setattr(sys, "stdout", head_log)
        copy.show("started")
    assert "started" in (tmp_path / "head.log").read_text() and not (tmp_path / "driver.log").read_text()
