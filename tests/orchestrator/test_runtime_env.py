"""How your code reaches the trials (``orchestrator.ray_cluster.runtime_env``): the embedded Ray's trials get the
driver's import path beyond what a fresh Python of this installation has (Ray itself passes only the working
folder), and ``cluster.runtime_env`` (Ray's own runtime_env: ``py_modules``, ``working_dir``, ``pip``,
``env_vars``) is handed to ``ray.init`` for the embedded Ray and for an attached cluster alike. The end-to-end
proofs: ``tests/orchestrator/test_api_launch.py`` (embedded) and ``tests/clusters/test_own_code_multinode.py``."""

from __future__ import annotations

import os
import sys

import pytest

from orchestrator import ray_cluster
from workers.schema import ClusterSettings, load


def settings(**given) -> ClusterSettings:
    return load(ClusterSettings, given, "cluster")


def test_the_embedded_ray_gets_the_folders_the_driver_added_to_its_import_path(tmp_path, monkeypatch):
    inherited = os.pathsep.join(path for path in sys.path if path)  # as if all of it came from PYTHONPATH
    monkeypatch.setenv("PYTHONPATH", inherited)
    monkeypatch.chdir(tmp_path)
    assert ray_cluster.runtime_env(settings()) is None  # nothing beyond what a trial has anyway
    monkeypatch.syspath_prepend(str(tmp_path / "lab"))  # a notebook's sys.path.insert; not a folder yet
    assert ray_cluster.runtime_env(settings()) is None
    (tmp_path / "lab").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))  # the working folder: Ray passes it itself
    env = ray_cluster.runtime_env(settings())
    *kept, added = env["env_vars"]["PYTHONPATH"].split(os.pathsep)
    assert set(env) == {"env_vars"} and added == str(tmp_path / "lab") and set(kept) == set(inherited.split(os.pathsep))


def test_cluster_runtime_env_is_passed_as_given_and_its_pythonpath_wins(tmp_path, monkeypatch):
    (tmp_path / "lab").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path / "lab"))
    shipped = {"py_modules": ["/home/me/lab"], "env_vars": {"LAB_MODE": "fast"}}
    attached = ray_cluster.runtime_env(settings(address="auto", runtime_env=shipped))
    assert attached == shipped  # a cluster's nodes do not see this machine's folders: Ray ships py_modules
    embedded = ray_cluster.runtime_env(settings(runtime_env=shipped))
    assert embedded["py_modules"] == ["/home/me/lab"] and embedded["env_vars"]["LAB_MODE"] == "fast"
    assert str(tmp_path / "lab") in embedded["env_vars"]["PYTHONPATH"].split(os.pathsep)
    own = ray_cluster.runtime_env(settings(runtime_env={"env_vars": {"PYTHONPATH": "/mine"}}))
    assert own == {"env_vars": {"PYTHONPATH": "/mine"}}


def test_start_ray_hands_the_runtime_env_to_ray_init(tmp_path, monkeypatch):
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: calls.append(options))
    monkeypatch.setattr(ray_cluster, "check_reachable", lambda address: None)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")  # start_ray sets it to 0 for the embedded Ray
    shipped = {"working_dir": "/home/me/lab", "pip": ["einops"]}
    ray_cluster.start_ray(settings(address="ray://head:10001", runtime_env=shipped))
    ray_cluster.start_ray(settings(runtime_env=shipped))
    assert calls[0]["address"] == "ray://head:10001" and calls[0]["runtime_env"] == shipped
    assert calls[1]["address"] == "local" and calls[1]["runtime_env"]["working_dir"] == "/home/me/lab"


@pytest.mark.parametrize("value", [{"pip_install": ["x"]}, {"py_modules": "/home/me/lab"}, {"env_vars": {"N": 1}},
                                   {}, "py_modules"])
def test_a_runtime_env_symsweep_does_not_pass_on_is_one_line(value):
    with pytest.raises(ValueError, match=r"^cluster\.runtime_env=.* is not allowed; expected null or a mapping of "
                                         r"Ray runtime_env fields \(working_dir, py_modules, excludes, pip, uv, conda, "
                                         r"env_vars, config\)"):
        settings(runtime_env=value)
