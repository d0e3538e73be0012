"""A multi-node Ray cluster on one machine: a head and N worker nodes, each its own ``ray start``.

For trying symsweep's cluster mode without a cloud, and for the tests that kill a node mid-sweep.
Every node is a ``ray start --block`` process started in a session of its own (and the leader of its
process group), so that its raylet, object store, agents and trial workers all belong to that session:
tearing a node down (or killing it, to simulate a crash) signals exactly those processes and nothing
else on the machine — never ``ray stop``, which would stop every Ray on the machine. Each node has its own
temporary directory
(logs, sockets), its own dashboard-agent port, its CPU count, optional fake GPUs (advertised only:
trials see ``CUDA_VISIBLE_DEVICES`` but no device) and a custom resource ``local_node_<name>`` that
tells the nodes apart. Token authentication stays on: every node and every client gets
``RAY_AUTH_MODE=token`` and reads the token from ``~/.ray/auth_token`` (generated if missing),
``RAY_AUTH_TOKEN_PATH`` or ``RAY_AUTH_TOKEN``. The dashboard and jobs server bind to 127.0.0.1.

    python clusters/local_cluster.py --workers 2 --cpus 1 --head-cpus 0 [--gpus 1]
        # prints the address; Ctrl-C stops the nodes it started

    from clusters.local_cluster import LocalCluster
    with LocalCluster(workers=2, cpus=1, head_cpus=0) as cluster:
        subprocess.run(["symsweep", "launch", f"cluster.address={cluster.address}", ...], env=cluster.env)
        cluster.kill("worker1")  # SIGKILL of every process of that node: a crashed machine
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from orchestrator.ray_cluster import socket_safe_base

RESOURCE_PREFIX = "local_node_"
_ROOT_NAME = len("/rc-") + 8  # tempfile.mkdtemp(prefix="rc-") adds 8 random characters

# Connects as a driver (public API only) and prints the alive nodes once `expected` are up, or at the deadline.
_WAIT_FOR_NODES = """
import json, sys, time
import ray
address, expected, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
ray.init(address=address, log_to_driver=False, logging_level="ERROR")
while True:
    alive = [node for node in ray.nodes() if node["Alive"]]
    if len(alive) >= expected or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps([{"node_id": node["NodeID"], "resources": node["Resources"]} for node in alive]))
"""


def wait_for_nodes(address: str, expected: int, timeout: float, env: dict[str, str],
                   exited: Callable[[], str | None] = lambda: None, hint: str = "") -> list[dict[str, Any]]:
    """The alive nodes of the cluster at ``address`` (node id and resources) once ``expected`` are up, or those
    alive at the deadline. Polls from a separate driver process so this one never connects to Ray; raises
    RuntimeError at once when ``exited()`` names a node process that ended while starting."""
    waiter = subprocess.Popen([sys.executable, "-c", _WAIT_FOR_NODES, address, str(expected), str(timeout)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while waiter.poll() is None:
            if reason := exited():
                raise RuntimeError(reason)
            time.sleep(0.2)
        out, err = waiter.communicate()
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    if waiter.returncode != 0:
        raise RuntimeError(f"could not connect to the head at {address}:\n{err[-2000:]}\n{hint}")
    return json.loads(out.strip().splitlines()[-1])


@dataclass
class Node:
    """One ``ray start --block`` process (the leader of its own session) and what it advertises."""

    name: str  # "head", "worker1", ...
    process: subprocess.Popen
    temp_dir: Path
    log: Path
    resources: dict[str, float]
    node_id: str | None = None  # Ray's node id, known once the node is alive

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_executable() -> str:
    """The ``ray`` command of this interpreter's environment."""
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if not found:
        raise RuntimeError(f"no `ray` command next to {sys.executable} or on PATH; install ray first")
    return found


def ensure_token(env: dict[str, str]) -> None:
    """Token authentication needs a token before ``ray start``: ``ray get-auth-token --generate`` writes
    ``~/.ray/auth_token`` when no token is configured (as ``ray.init()`` does for a local cluster)."""
    if env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH") or (Path.home() / ".ray" / "auth_token").is_file():
        return
    subprocess.run([ray_executable(), "get-auth-token", "--generate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # never print the token


@dataclass
class LocalCluster:
    """A head and ``workers`` worker nodes on this machine; ``start()`` returns once all are alive."""

    workers: int = 2
    cpus: int = 1  # CPUs of each worker node
    gpus: int = 0  # fake GPUs advertised by each worker node
    head_cpus: int = 0  # 0: the head runs no trials (only the driver, GCS and dashboard)
    object_store_mb: int = 100
    keep_logs: bool = False  # keep the nodes' temporary directories (logs) after stop()
    client: bool = False  # also run a Ray Client server on the head (``ray://127.0.0.1:<port>``)
    nodes: list[Node] = field(default_factory=list, init=False)
    address: str = field(default="", init=False)  # GCS address, "127.0.0.1:<port>"
    dashboard_url: str = field(default="", init=False)  # jobs API: ray job submit --address <this>
    root: Path | None = field(default=None, init=False)
    client_address: str = field(default="", init=False)  # "ray://127.0.0.1:<port>" when ``client``

    @property
    def env(self) -> dict[str, str]:
        """The environment of the nodes and of a client of this cluster (``symsweep launch cluster.address=...``):
        this interpreter's scripts first on PATH, so ``symsweep`` in a job's entrypoint is this installation's."""
        scripts = str(Path(sys.executable).parent)
        return {**os.environ, "RAY_AUTH_MODE": "token", "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)

    def name_of(self, node_id: str) -> str | None:
        """The name of the node with this Ray node id (None if it is not one of ours)."""
        return next((node.name for node in self.nodes if node.node_id == node_id), None)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> "LocalCluster":
        if self.nodes:
            raise RuntimeError("this LocalCluster is already started")
        env = self.env
        ensure_token(env)
        # each node's temp dir is <root>/<node>: keep Ray's socket paths under it within the AF_UNIX limit
        below = _ROOT_NAME + 1 + max(len("head"), len(f"worker{self.workers}"))
        base = socket_safe_base(os.environ.get("TMPDIR") or tempfile.gettempdir(), below)
        self.root = Path(tempfile.mkdtemp(prefix="rc-", dir=base))
        atexit.register(self.stop)
        port, dashboard = free_port(), free_port()
        self.address, self.dashboard_url = f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}"
        head = ["--head", f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}"]
        if self.client:
            client_port = free_port()
            self.client_address = f"ray://127.0.0.1:{client_port}"
            head.append(f"--ray-client-server-port={client_port}")
        try:
            self._launch("head", self.head_cpus, 0, env, head)
            for index in range(1, self.workers + 1):
                self._launch(f"worker{index}", self.cpus, self.gpus, env, [f"--address={self.address}"])
            self._wait_alive(env, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, name: str, cpus: int, gpus: int, env: dict[str, str], extra: list[str]) -> None:
        temp_dir = self.root / name
        temp_dir.mkdir()
        resources = {f"{RESOURCE_PREFIX}{name}": 1.0}
        command = [ray_executable(), "start", "--block", *extra, "--node-ip-address=127.0.0.1",
                   f"--num-cpus={cpus}", f"--num-gpus={gpus}", f"--resources={json.dumps(resources)}",
                   f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={free_port()}",
                   f"--object-store-memory={self.object_store_mb * 2**20}", "--disable-usage-stats"]
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
        self.nodes.append(Node(name, process, temp_dir, log,
                               {"CPU": cpus, "GPU": gpus, **resources}))

    def _wait_alive(self, env: dict[str, str], timeout: float) -> None:
        """Until every node is alive in the GCS; fails at once if a node's ``ray start`` exits."""

        def exited() -> str | None:
            for node in self.nodes:
                if node.process.poll() is not None:
                    return (f"node {node.name} exited with status {node.process.returncode} while starting; "
                            f"its log ({node.log}) ends with:\n{node.tail()}")
            return None

        alive = wait_for_nodes(self.address, len(self.nodes), timeout, env, exited,
                               hint=f"head log:\n{self.node('head').tail()}")
        for info in alive:
            names = [key[len(RESOURCE_PREFIX):] for key in info["resources"] if key.startswith(RESOURCE_PREFIX)]
            for node in self.nodes:
                if node.name in names:
                    node.node_id = info["node_id"]
        missing = [node.name for node in self.nodes if node.node_id is None]
        if missing:
            raise TimeoutError(f"nodes {', '.join(missing)} not alive after {timeout:g} s; logs in {self.root}")

    def kill(self, name: str, timeout: float = 30.0) -> None:
        """SIGKILL every process of one node at once, as if its machine had crashed."""
        node = self.node(name)
        _signal_session(node.process.pid, signal.SIGKILL)
        _wait_gone(node, timeout)

    def stop(self, grace: float = 20.0) -> None:
        """Stop the nodes this object started, nothing else: SIGTERM to each ``ray start`` (which stops its
        node's processes in order), then SIGKILL to whatever of their sessions is left after ``grace``."""
        for node in reversed(self.nodes):  # workers first, the head last
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for node in reversed(self.nodes):
            _wait_gone(node, max(0.0, deadline - time.monotonic()))
            if session_alive(node.process.pid):
                _signal_session(node.process.pid, signal.SIGKILL)
                _wait_gone(node, 10.0)
        self.nodes = []
        if self.root is not None and not self.keep_logs:
            shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> "LocalCluster":
        return self.start() if not self.nodes else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# A node's processes: its `ray start` leads a session of its own (start_new_session), and everything it
# starts stays in that session, also Ray's worker processes, which move to process groups of their own.
# Linux never reuses a process id that still names a session, so the session id is ours while any member runs.
def _members(session: int) -> list[int]:
    """The running (not zombie) processes of this session; without /proc, its leader's process group."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(session, 0)
            return [session]
        except ProcessLookupError:
            return []
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # state ppid pgrp session
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(pid))
    return members


def session_alive(session: int) -> bool:
    """Whether any process a node started (the node's session) still runs."""
    return bool(_members(session))


def _signal_session(session: int, sig: int) -> None:
    for pid in _members(session):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(node: Node, timeout: float) -> None:
    """Until the node's ``ray start`` is reaped and nothing of its session runs, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (node.process.poll() is None or session_alive(node.process.pid)):
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker nodes (default 2)")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs of each worker node (default 1)")
    parser.add_argument("--gpus", type=int, default=0, help="fake GPUs each worker node advertises (default 0)")
    parser.add_argument("--head-cpus", type=int, default=0, help="CPUs of the head; 0 runs no trials there (default)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the nodes' temporary directories")
    parser.add_argument("--client", action="store_true", help="also run a Ray Client server (ray:// address)")
    args = parser.parse_args(argv)
    cluster = LocalCluster(workers=args.workers, cpus=args.cpus, gpus=args.gpus, head_cpus=args.head_cpus,
                           keep_logs=args.keep_logs, client=args.client)

    def stop(signum, frame):  # noqa: ARG001 - signal handler signature
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)  # also where SIGINT was ignored (started in the background)
    signal.signal(signal.SIGTERM, stop)
    try:
        with cluster:
            print(f"Ray cluster of {len(cluster.nodes)} nodes up: address {cluster.address}, "
                  f"dashboard/jobs {cluster.dashboard_url} (127.0.0.1 only), logs under {cluster.root}"
                  + (f", Ray Client {cluster.client_address}" if cluster.client else ""))
            for node in cluster.nodes:
                print(f"  {node.name}: node id {node.node_id}, {node.resources}")
            print(f"\nexport RAY_AUTH_MODE=token  # an explicit address never turns token authentication on\n"
                  f"symsweep launch cluster.address={cluster.address} storage=./runs experiment=quickstart\n"
                  f"ray job submit --address {cluster.dashboard_url} --runtime-env clusters/runtime_env.yaml -- "
                  "symsweep launch cluster=remote ...\n"
                  "Ctrl-C stops these nodes.", flush=True)
            while all(node.process.poll() is None for node in cluster.nodes):
                time.sleep(1.0)
            print("a node exited; stopping the others", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\nstopped the nodes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
