"""The files under clusters/: cluster-launcher YAMLs valid for the schema Ray ships, KubeRay manifests
with the fields KubeRay requires, a runtime_env Ray accepts, and no secrets anywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

CLUSTERS = Path(__file__).resolve().parents[2] / "clusters"
LAUNCHER_YAMLS = [path for path in sorted(CLUSTERS.glob("*.yaml")) if path.name != "runtime_env.yaml"]
KUBERAY = CLUSTERS / "kuberay"


def load(path: Path):
    return yaml.safe_load(path.read_text())


def documents(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def by_kind(kind: str) -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(KUBERAY.glob("*.yaml")) for doc in documents(path)
            if doc.get("kind") == kind]


# -- Ray cluster launcher ---------------------------------------------------------------------------------
def test_there_is_a_launcher_yaml_per_cloud():
    assert {path.name for path in LAUNCHER_YAMLS} == {"aws.yaml", "gcp.yaml"}


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=lambda path: path.name)
def test_launcher_yaml_validates_against_rays_schema(path):
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = load(path)
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    for name, node_type in types.items():
        assert node_type.get("min_workers", 0) <= node_type.get("max_workers", config["max_workers"]), name
        assert node_type.get("max_workers", 0) <= config["max_workers"], name


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=lambda path: path.name)
def test_launcher_yaml_passes_the_checks_ray_up_makes_before_contacting_the_cloud(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(load(path)))  # the provider's defaults filled in, then validated


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=lambda path: path.name)
def test_launcher_yaml_runs_trials_on_spot_gpu_workers_only(path):
    config = load(path)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"]["CPU"] == 0  # the head runs the driver, never a trial
    assert "--num-cpus=0" in " ".join(config["head_start_ray_commands"])
    workers = [node for name, node in types.items() if name != config["head_node_type"]]
    assert workers and all(node["resources"].get("GPU", 0) >= 1 for node in workers)
    for node in workers:
        assert node["min_workers"] >= 1  # symsweep checks GPU requests against live nodes
        spot = node["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot" or any(
            item.get("preemptible") for item in node["node_config"].get("scheduling", []))
        assert spot, f"{path.name}: worker nodes are spot/preemptible"
    assert "spot" not in json.dumps(head["node_config"]) and "preemptible" not in json.dumps(head["node_config"])


@pytest.mark.parametrize("path", LAUNCHER_YAMLS, ids=lambda path: path.name)
def test_launcher_yaml_installs_symsweep_shares_storage_and_keeps_auth_on(path):
    config = load(path)
    assert any("pip install -c constraints.txt -e ." in command for command in config["setup_commands"])
    assert config["file_mounts"]["~/symsweep"] == "."
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # the token reaches every node
    mounts = " ".join(config["initialization_commands"])
    assert "mount" in mounts and "/mnt/shared" in mounts  # NFS (EFS / Filestore) on every host
    assert "-v /mnt/shared:/mnt/shared" in config["docker"]["run_options"]  # and inside the containers
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(config[key])
        assert "export RAY_AUTH_MODE=token" in start, key
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert "rayproject/ray:2.60.0-py311" in config["docker"]["head_image"]


# -- KubeRay -------------------------------------------------------------------------------------------------
def check_cluster_spec(spec: dict, where: str) -> None:
    """The fields KubeRay needs to build a cluster (and symsweep's choices for them)."""
    assert spec["rayVersion"] == "2.60.0", where
    assert spec["authOptions"] == {"mode": "token"}, where
    head = spec["headGroupSpec"]
    params = head["rayStartParams"]
    assert all(isinstance(value, str) for value in params.values()), f"{where}: rayStartParams are strings"
    assert params["num-cpus"] == "0", where
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", f"{where}: the dashboard stays inside Kubernetes"
    groups = spec["workerGroupSpecs"]
    assert groups, where
    for pod in [head["template"]] + [group["template"] for group in groups]:
        containers = pod["spec"]["containers"]
        assert containers and all(c["name"] and c["image"] for c in containers), where
        mounts = {m["name"]: m["mountPath"] for c in containers for m in c.get("volumeMounts", [])}
        assert mounts.get("shared") == "/mnt/shared", where
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["spec"]["volumes"]}
        assert claims["shared"] == "symsweep-shared", where
    for group in groups:
        assert group["groupName"] and isinstance(group["rayStartParams"], dict), where
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], where
        assert group["minReplicas"] >= 1, f"{where}: keep one GPU pod for symsweep's resource check"
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1, where


def test_kuberay_manifests_parse_and_hold_what_kuberay_requires():
    files = sorted(path.name for path in KUBERAY.glob("*.yaml"))
    assert {"raycluster.yaml", "rayjob.yaml", "shared-storage.yaml"} <= set(files)
    for path in KUBERAY.glob("*.yaml"):
        for doc in documents(path):
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(doc), path.name
            assert doc["metadata"]["name"], path.name
    (_, cluster), = by_kind("RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    check_cluster_spec(cluster["spec"], "RayCluster")
    (_, job), = by_kind("RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    check_cluster_spec(job["spec"]["rayClusterSpec"], "RayJob.rayClusterSpec")
    entrypoint = job["spec"]["entrypoint"]
    assert entrypoint.startswith("symsweep launch ") and "cluster=remote" in entrypoint
    assert "storage=/mnt/shared/" in entrypoint
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert set(yaml.safe_load(job["spec"]["runtimeEnvYAML"])) <= known_runtime_env_fields()
    (_, claim), = by_kind("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "symsweep-shared" and claim["spec"]["accessModes"] == ["ReadWriteMany"]


# -- runtime_env ---------------------------------------------------------------------------------------------
def known_runtime_env_fields() -> set[str]:
    from ray.runtime_env import RuntimeEnv

    return {field for field in RuntimeEnv.known_fields if not field.startswith("_")}


def test_runtime_env_has_only_keys_ray_knows_and_ray_accepts_it():
    from ray.runtime_env import RuntimeEnv

    env = load(CLUSTERS / "runtime_env.yaml")
    assert set(env) <= known_runtime_env_fields(), set(env) - known_runtime_env_fields()
    assert env["working_dir"] == "." and {".git", ".venv", "runs"} <= set(env["excludes"])
    assert all(isinstance(value, str) for value in env["env_vars"].values())
    RuntimeEnv(**env)  # Ray's own validation of every field


# -- no secrets ----------------------------------------------------------------------------------------------
SECRET_PATTERNS = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret key": r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{20,}",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "GCP service account key": r"\"private_key(_id)?\"\s*:",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "assigned secret": r"(?i)(secret|password|passwd|token|api[_-]?key)[\"']?\s*[:=]\s*[\"']?(?!<)"
                       r"[A-Za-z0-9/+_=-]{16,}",
}


def secrets_in(text: str) -> list[str]:
    return [name for name, pattern in SECRET_PATTERNS.items() if re.search(pattern, text)]


@pytest.mark.parametrize("sample", [
    "AKIA" + "ABCDEFGHIJKLMNOP",
    "aws_secret_access_key = " + "abcdEFGHijklMNOPqrstUVWXyz0123456789abcd",
    "-----BEGIN RSA " + "PRIVATE KEY-----",
    "RAY_AUTH_TOKEN: " + "3f9a0c2e7b1d4e6f8a9b0c1d2e3f4a5b",
    '{"private_key": "..."}',
])
def test_the_secret_detector_finds_secrets(sample):
    assert secrets_in(sample)


def test_no_file_under_clusters_holds_a_secret():
    token_file = Path.home() / ".ray" / "auth_token"
    token = token_file.read_text().strip() if token_file.is_file() else None
    for path in sorted(p for p in CLUSTERS.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        text = path.read_text(errors="replace")
        assert not secrets_in(text), f"{path.relative_to(CLUSTERS)} looks like it holds a secret: {secrets_in(text)}"
        assert not (token and token in text), f"{path.relative_to(CLUSTERS)} holds this machine's Ray token"


def test_readme_walks_through_a_cluster_run():
    readme = (CLUSTERS / "README.md").read_text()
    for step in ("ray up", "ray job submit", "symsweep launch cluster=remote storage=/mnt/shared/runs",
                 "symsweep status", "ray job logs", "symsweep resume", "ray down", "RAY_AUTH_MODE=token",
                 "ray dashboard", "kubectl port-forward", "local_cluster.py", "not supported"):
        assert step in readme, step
