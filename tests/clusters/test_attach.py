"""What symsweep checks before a sweep starts on a cluster, without one: shared storage given as a URI,
an address it cannot attach to, and requests no node of the cluster can hold (Ray's node list faked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import ray_cluster
from orchestrator.cli import main
from orchestrator.config import compose


@pytest.mark.parametrize("storage", ["s3://bucket/runs", "gs://bucket/runs"])
def test_uri_storage_is_refused_with_the_supported_alternative(storage, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(["launch", f"storage={storage}", "name=uri"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"storage={storage!r}" in err and "not supported" in err and "NFS" in err
    assert not any(tmp_path.iterdir())  # no ./s3:/bucket/runs directory either


def test_an_address_it_cannot_attach_to_is_one_clear_error(monkeypatch):
    import ray

    def refuse(*args, **kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray_cluster, "check_reachable", lambda address: None)  # (passed: Ray answers, then refuses)
    with pytest.raises(ValueError) as error:
        ray_cluster.start_ray(compose(["cluster.address=10.0.0.1:6379"])["cluster"])
    message = str(error.value)
    assert "cluster.address='10.0.0.1:6379'" in message and "RAY_AUTH_MODE=token" in message
    assert "10.0.0.1:6379" in message.split("cannot connect", 1)[1]  # Ray's reason is kept


@pytest.mark.slow
def test_a_real_control_store_passes_the_address_check(tmp_path):
    """The check that refuses a port that is not Ray (tests/orchestrator/test_refusals.py) lets Ray's own GCS
    through: an embedded Ray is started in a subprocess and its GCS address checked there."""
    code = ("from orchestrator.config import compose; from orchestrator.ray_cluster import start_ray, check_reachable; "
            "import ray; start_ray(compose(['cluster.num_cpus=1'])['cluster']); "
            "address = ray.get_runtime_context().gcs_address; check_reachable(address); print('passed', address); "
            "ray.shutdown()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0 and "passed 127.0.0.1:" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]


def fake_nodes(monkeypatch, *nodes: dict, dead: tuple[dict, ...] = ()) -> None:
    import ray

    listed = [{"Alive": True, "Resources": node} for node in nodes] + [{"Alive": False, "Resources": node}
                                                                         for node in dead]
    monkeypatch.setattr(ray, "nodes", lambda: listed)


def check(*overrides: str, address: str | None = "auto") -> None:
    from orchestrator.plan import validate

    config = compose([*overrides] + ([f"cluster.address={address}"] if address else []))
    ray_cluster.check_resources(validate(config))


def test_a_trial_must_fit_on_one_node_cpus_and_gpus_together(monkeypatch):
    fake_nodes(monkeypatch, {"CPU": 0}, {"CPU": 8}, {"CPU": 2, "GPU": 1}, dead=({"CPU": 16, "GPU": 8},))
    check("cluster.gpus_per_trial=1", "cluster.cpus_per_trial=2")
    check("cluster.cpus_per_trial=8")
    with pytest.raises(ValueError, match=r"cluster.cpus_per_trial=4 with cluster.gpus_per_trial=1 cannot be "
                                         r"satisfied: no node has both \(nodes: .*2 CPUs \+ 1 GPUs"):
        check("cluster.gpus_per_trial=1", "cluster.cpus_per_trial=4")  # 8 CPUs here, the GPU there
    with pytest.raises(ValueError, match="the largest node has 1 GPUs"):
        check("cluster.gpus_per_trial=2")  # the dead node's GPUs do not count


def test_sharded_trials_need_that_many_workers_placed_on_the_nodes(monkeypatch):
    fake_nodes(monkeypatch, {"CPU": 0}, {"CPU": 3, "GPU": 2}, {"CPU": 1.5, "GPU": 1})
    samples = ("symmetrizer.train_samples=60", "symmetrizer.eval_samples=60")  # split evenly over 3, 4 or 5
    check("trainer.devices=3", "cluster.gpus_per_trial=1", *samples)  # 2 + 1 workers
    with pytest.raises(ValueError, match=r"trainer.devices=4 .*hold at most 3 such workers"):
        check("trainer.devices=4", "cluster.gpus_per_trial=1", *samples)
    with pytest.raises(ValueError, match=r"trainer.devices=5 .*hold at most 4 such workers"):
        check("trainer.devices=5", "cluster.gpus_per_trial=0.5", *samples)  # 3 + 1 CPUs: 4 workers; GPUs suffice


def test_on_a_cluster_the_error_says_live_nodes_were_checked(monkeypatch):
    fake_nodes(monkeypatch, {"CPU": 0}, {"CPU": 4})
    with pytest.raises(ValueError, match="no node of this cluster has a GPU.*min_workers: 1"):
        check("cluster.gpus_per_trial=1")
    with pytest.raises(ValueError) as embedded:
        check("cluster.gpus_per_trial=1", address=None)
    assert "min_workers" not in str(embedded.value)  # the embedded local Ray does not autoscale


def test_ray_temp_dirs_fit_unix_socket_paths_under_a_deep_workspace(tmp_path):
    """Ray's plasma socket lives at <temp root>/session_<date>_<time>_<us>_<pid>/sockets/plasma_store and must fit
    107 bytes: a deep preferred folder (a CI checkout's $RAY_TMPDIR) falls back to /tmp, a short one is kept."""
    worst_below = "/rc-abcdefgh/worker12"  # a local cluster's node dir; the embedded Ray's is "/ray-<uid>/ray"
    worst = worst_below + "/session_2026-11-22_20-20-20_763368_4194304/sockets/plasma_store"
    fits = "/" + "s" * (107 - len(worst) - 1)
    assert ray_cluster.socket_safe_base(fits, len(worst_below)) == fits and len(fits + worst) == 107
    assert ray_cluster.socket_safe_base(fits + "x", len(worst_below)) == "/tmp"  # one byte more would overflow
    assert ray_cluster.socket_safe_base(str(tmp_path / ("d" * 60)), len("/ray")) == "/tmp"
    with pytest.raises(RuntimeError, match="RAY_TMPDIR"):
        ray_cluster.socket_safe_base(fits + "x", 107)


def test_the_embedded_rays_temporary_root_is_in_a_private_folder_of_this_user(tmp_path):
    """Ray makes its root 0777 and logs the environment there; the folder above it is this user's, 0700."""
    import stat

    private = tmp_path / "fresh" / f"ray-{os.getuid()}"
    assert ray_cluster.private_ray_root(str(tmp_path / "fresh")) == str(private / "ray")
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / f"ray-{os.getuid()}").symlink_to(elsewhere)  # another user could read through it
    with pytest.raises(ValueError, match="is not a folder of this user.*RAY_TMPDIR"):
        ray_cluster.private_ray_root(str(tmp_path / "link"))
    if os.geteuid() == 0:  # (only root can give a folder to another user)
        (tmp_path / "foreign" / f"ray-{os.getuid()}").mkdir(parents=True)
        os.chown(tmp_path / "foreign" / f"ray-{os.getuid()}", 65534, 65534)
        with pytest.raises(ValueError, match="is not a folder of this user"):
            ray_cluster.private_ray_root(str(tmp_path / "foreign"))


@pytest.mark.slow
def test_the_embedded_ray_starts_under_a_deep_temp_folder(tmp_path):
    """``symsweep`` in a deep workspace: RAY_TMPDIR too long for Ray's sockets still starts (under /tmp)."""
    deep = tmp_path / ("d" * 70)
    deep.mkdir()
    code = ("import ray; from orchestrator.config import compose; from orchestrator.ray_cluster import start_ray; "
            "assert start_ray(compose(['cluster.num_cpus=1'])['cluster']); "
            "print(ray.get(ray.remote(lambda: 'ok').remote()), ray.get_runtime_context().gcs_address); ray.shutdown()")
    env = {**os.environ, "RAY_TMPDIR": str(deep), "TMPDIR": str(deep)}
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    try:
        output, _ = process.communicate(timeout=180)
    finally:
        process.kill()
        for session in Path(f"/tmp/ray-{os.getuid()}/ray").glob(f"session_*_{process.pid}"):  # this driver's
            shutil.rmtree(session, ignore_errors=True)
    assert process.returncode == 0 and "ok" in output, output
