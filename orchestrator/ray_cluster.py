"""Ray itself: start an embedded local Ray or attach to a cluster, and check that the cluster can hold a trial.

Without ``cluster.address`` the driver starts an embedded local Ray (``address="local"``: never a running
cluster by accident) reachable from this machine only, with its temporary root in a folder of this user alone,
and stops it at the end; ``auto`` or ``ray://host:port`` attaches to a cluster (also when this command is the
entrypoint of ``ray job submit``), after checking in seconds that Ray answers there.

Your code reaches the trials (``runtime_env``): Ray puts the driver's working folder on every trial's import path
by itself; the embedded Ray's trials also get the rest of the driver's import path (folders added to ``sys.path``
at run time, e.g. in a notebook) through ``PYTHONPATH``; ``cluster.runtime_env`` (``py_modules``, ``working_dir``,
``pip``, ``env_vars``) is Ray's own way to ship code and settings to every node of a cluster.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from typing import TYPE_CHECKING, Any, Mapping

from workers.schema import ClusterSettings, load

if TYPE_CHECKING:
    from orchestrator.plan import SweepPlan

SOCKET_LIMIT = 107  # bytes in an AF_UNIX socket path (Linux)
# what Ray puts below a node's temporary root: session_<date>_<time>_<microseconds>_<pid ≤ 7 digits>/sockets/…
SESSION_SOCKET = len("/session_2026-11-22_20-20-20_123456_1234567/sockets/plasma_store")


def socket_safe_base(preferred: str, below: int) -> str:
    """``preferred`` when a Ray node whose temporary root is ``below`` characters longer than it keeps its
    socket paths within the AF_UNIX limit, else ``/tmp``: in a deep workspace (a CI checkout with
    ``RAY_TMPDIR`` inside it) ``ray start``/``ray.init`` would otherwise fail with an OSError."""
    room = SOCKET_LIMIT - SESSION_SOCKET - below
    for base in (preferred, "/tmp"):
        if len(os.path.abspath(base)) <= room:
            return base
    raise RuntimeError(f"no temporary folder is short enough for Ray's sockets: {preferred!r} and /tmp must be "
                       f"at most {room} characters long; set RAY_TMPDIR to a shorter folder")


def start_ray(cluster: ClusterSettings | Mapping[str, Any]) -> bool:
    """Start an embedded local Ray or attach to ``cluster.address``; True when started here."""
    import ray

    if ray.is_initialized():
        return False
    if not isinstance(cluster, ClusterSettings):
        cluster = load(ClusterSettings, cluster, "cluster")
    options: dict[str, Any] = {"include_dashboard": bool(cluster.dashboard), "dashboard_host": "127.0.0.1",
                               "log_to_driver": True, "configure_logging": False}
    if cluster.address is None:  # Ray's own default temp root is <RAY_TMPDIR or TMPDIR or /tmp>/ray
        preferred = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or tempfile.gettempdir()
        options["_temp_dir"] = private_ray_root(socket_safe_base(preferred, len(f"/{_private_folder()}/ray")))
        loopback_only()
        quiet_token_notice()
        ray.init(address="local", num_cpus=cluster.num_cpus, **_with_env(options, runtime_env(cluster)))
        return True
    check_reachable(cluster.address)
    try:
        ray.init(address=cluster.address, log_to_driver=True, **_with_env({}, runtime_env(cluster)))
    except ConnectionError as err:  # Ray's own message is a traceback; the usual cause is authentication
        raise ValueError(f"cluster.address={cluster.address!r}: cannot connect ({err}); check the address, and "
                         "for a cluster with token authentication set RAY_AUTH_MODE=token (an explicit address "
                         "never turns it on by itself) with the cluster's token in ~/.ray/auth_token, "
                         "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN") from None
    return False


def runtime_env(cluster: ClusterSettings) -> dict[str, Any] | None:
    """The runtime_env of the sweep's Ray job: ``cluster.runtime_env``, and for the embedded Ray the driver's import
    path (``driver_path``) as the trials' ``PYTHONPATH`` unless ``cluster.runtime_env.env_vars`` sets one."""
    env = {key: value for key, value in (cluster.runtime_env or {}).items()}
    extra = driver_path() if cluster.address is None else []
    variables = dict(env.get("env_vars") or {})
    if extra and "PYTHONPATH" not in variables:
        inherited = [part for part in os.environ.get("PYTHONPATH", "").split(os.pathsep) if part]
        variables["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*inherited, *extra]))
        env["env_vars"] = variables
    return env or None


def driver_path() -> list[str]:
    """The folders on this process's import path that a fresh Python of the same installation would not have:
    neither the installation's own (standard library, site-packages) nor ``PYTHONPATH``'s nor the working folder
    (Ray gives the trials that one itself); e.g. a folder a notebook added to ``sys.path``."""
    import site
    import sys

    own = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    sites = {os.path.realpath(p) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    inherited = {os.path.realpath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    inherited.add(os.path.realpath(os.getcwd()))  # Ray adds the working folder itself
    found = []
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if (not entry or not os.path.isdir(entry) or real in inherited or real in sites
                or any(real == root or real.startswith(root + os.sep) for root in own)):
            continue
        found.append(os.path.abspath(entry))
    return list(dict.fromkeys(found))


def _with_env(options: dict[str, Any], env: dict[str, Any] | None) -> dict[str, Any]:
    return {**options, "runtime_env": env} if env else options


TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"  # what Ray's default says at every start


def _not_the_token_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(TOKEN_NOTICE)


def quiet_token_notice() -> None:
    """Drop the warning Ray logs at every start of a local cluster, "Token authentication is enabled for this Ray
    cluster. Set RAY_AUTH_MODE=disabled to opt out...": authentication on is Ray's default and symsweep's (README,
    Security), and the line reads like a fault. Only that record of Ray's authentication logger is dropped; its
    other warnings (authentication disabled, a token missing) still show."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_not_the_token_notice)


def _private_folder() -> str:
    return f"ray-{os.getuid()}"


def private_ray_root(base: str) -> str:
    """``<base>/ray-<uid>/ray``: the embedded Ray's temporary root, inside a folder only this user can enter.

    Ray makes its root and everything below it world-writable (0777) and writes its processes' environment in
    plain text into the session logs (``logs/runtime_env_agent.log``: AWS_SECRET_ACCESS_KEY and the like). Ray
    never touches the folder above its root, so with that folder 0700 no other user reaches any of it, at any
    time. A folder of that name that is a link or belongs to someone else is refused: they could read through
    it."""
    private = os.path.join(base, _private_folder())
    os.makedirs(private, mode=0o700, exist_ok=True)
    found = os.lstat(private)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        raise ValueError(f"{private} is not a folder of this user (uid {os.getuid()}), and the embedded Ray keeps its "
                         "logs there, which hold the environment's secrets; remove it, or set RAY_TMPDIR to a folder "
                         "of yours")
    os.chmod(private, 0o700)
    return os.path.join(private, "ray")


def loopback_only() -> None:
    """Make the embedded Ray reachable from this machine only: node address 127.0.0.1, and with it every port
    of its control store, raylet, agents, driver and workers bound to loopback.

    ``ray.init(_node_ip_address="127.0.0.1")`` does not do it: Ray replaces a loopback node address by the
    machine's address. Ray's own switch for single-machine use (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the
    default on macOS and Windows) does; it is set for this process and inherited by the Ray processes it
    starts (the constant is also set in case Ray was imported before)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


CONNECT_TIMEOUT_S = 10.0


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, in one line, unless ``host:port`` (or ``ray://host:port``) is Ray: Ray itself retries an
    address for minutes, without a word, when nothing answers there or when something that is not Ray does.

    First a TCP connection (a refused or unreachable port fails at once); then Ray's own first call, on Ray's own
    channel (its TLS and token settings), at the address Ray dials (it turns 127.0.0.1 or localhost into this
    machine's address): the control store's ``GetClusterId`` for a cluster address, the Ray Client server's
    ``PING`` for ``ray://``. A peer that refuses the call for want of a token is Ray too (``ray.init`` then says
    so). ``auto`` is resolved by Ray (it fails fast on its own)."""
    import socket

    target = address.split("://", 1)[-1]
    if address == "auto" or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise ValueError(f"cluster.address={address!r}: cannot connect to {target} within {timeout:g} s ({reason}); "
                         "check that the cluster's head node is running and the address and port are right (for a "
                         "cluster with token authentication also set RAY_AUTH_MODE=token)") from None
    client = address.startswith("ray://")
    dialed, reason = _ray_answers(target, client, timeout)
    if reason:
        what, usual = ("Ray's client server", "ray://<head>:10001") if client else (
            "Ray's control store (GCS)", "<head>:6379, the port of ray start --head")
        at = f" at {dialed} (where Ray dials it)" if dialed != target else ""
        raise ValueError(f"cluster.address={address!r}: {target} accepts connections but does not answer as {what}"
                         f"{at} within {timeout:g} s ({reason}); check the address and port ({usual})")


def _ray_answers(target: str, client: bool, timeout: float) -> tuple[str, str | None]:
    """(the address Ray dials, None when Ray's first call there is answered, else why not)."""
    import grpc
    from ray._private.gcs_utils import create_gcs_channel
    from ray._private.services import canonicalize_bootstrap_address
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc, ray_client_pb2, ray_client_pb2_grpc

    dialed = target if client else canonicalize_bootstrap_address(target) or target
    channel = create_gcs_channel(dialed)
    try:
        if client:
            ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(
                ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING), timeout=timeout)
        else:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)
    except grpc.RpcError as err:
        if err.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            detail = (err.details() or "").partition("\n")[0][:120]
            return dialed, f"{err.code().name.lower()}, {detail}"
    finally:
        channel.close()
    return dialed, None


def _capacity(node: Mapping[str, float], worker: Mapping[str, float]) -> int:
    """How many device workers (or single-device trials) of ``worker``'s size one node holds at once."""
    counts = [int(node.get("CPU", 0) / worker["cpus"] + 1e-9)]
    if worker["gpus"]:
        counts.append(int(node.get("GPU", 0) / worker["gpus"] + 1e-9))
    return min(counts)


def check_resources(plan: SweepPlan) -> None:
    """Fail now, with a clear message, if no node can ever hold one trial (Ray would wait forever).

    A trial (each device worker of a sharded one) must fit on ONE node: CPUs and GPUs of that node
    together. The cluster is checked as it is now, so an autoscaling cluster must keep one node of
    each needed kind running."""
    import ray

    _, worker = plan.resources()
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    hint = "" if plan.cluster.address is None else (
        " (this cluster's live nodes were checked: keep one node of the needed kind running, e.g. min_workers: 1)")
    capacity = [_capacity(node, worker) for node in nodes]
    if not any(capacity):
        most_cpus = max((node.get("CPU", 0) for node in nodes), default=0)
        most_gpus = max((node.get("GPU", 0) for node in nodes), default=0)
        if worker["gpus"] > most_gpus:
            where = ("no node of this cluster has a GPU" if most_gpus == 0
                     else f"the largest node has {most_gpus:g} GPUs")
            raise ValueError(f"cluster.gpus_per_trial={worker['gpus']:g} cannot be satisfied: {where}; allowed here: "
                             f"at most {most_gpus:g} (0 trains on CPUs){hint}")
        if worker["cpus"] > most_cpus:
            raise ValueError(f"cluster.cpus_per_trial={worker['cpus']:g} cannot be satisfied: the largest node has "
                             f"{most_cpus:g} CPUs; allowed here: at most {most_cpus:g}{hint}")
        shapes = ", ".join(sorted({f"{node.get('CPU', 0):g} CPUs + {node.get('GPU', 0):g} GPUs" for node in nodes}))
        raise ValueError(f"cluster.cpus_per_trial={worker['cpus']:g} with cluster.gpus_per_trial={worker['gpus']:g} "
                         f"cannot be satisfied: no node has both (nodes: {shapes}); allowed here: what one node "
                         f"holds{hint}")
    devices = plan.trainer.devices
    if devices > 1 and devices > sum(capacity):
        raise ValueError(f"trainer.devices={devices} with cluster.cpus_per_trial={worker['cpus']:g} and "
                         f"cluster.gpus_per_trial={worker['gpus']:g}: the nodes of this cluster hold at most "
                         f"{sum(capacity)} such workers at once; allowed here: trainer.devices ≤ {sum(capacity)}"
                         f"{hint}")
