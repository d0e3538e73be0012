"""A Ray cluster inside one SLURM allocation, and a symsweep driver on it (run by ``symsweep.sbatch``).

    sbatch [sbatch options] clusters/slurm/symsweep.sbatch launch storage=/shared/runs name=NAME [overrides]
    sbatch [sbatch options] clusters/slurm/symsweep.sbatch resume /shared/runs/NAME [--restart-errored]
    sbatch --array=1-N [sbatch options] clusters/slurm/symsweep.sbatch launch storage=/shared/runs @experiments.txt

On the first node of the allocation (where the batch script runs) it starts a Ray head, and with one ``srun``
step a Ray worker on every other node; each node advertises the CPUs and GPUs SLURM gave the job there
(``SLURM_CPUS_ON_NODE``, ``SLURM_GPUS_ON_NODE``), so ``cluster.cpus_per_trial``/``gpus_per_trial`` pack trials
onto what was allocated, and a request no node can hold is refused before anything starts. Token
authentication is on (``RAY_AUTH_MODE=token``; the token in ``~/.ray/auth_token`` is generated once if
missing, or comes from ``RAY_AUTH_TOKEN_PATH``/``RAY_AUTH_TOKEN``). Ray's temporary files and sockets stay on
each node's local disk, in a folder short enough for AF_UNIX socket paths. Once every node is alive it runs
``symsweep launch cluster=remote ...`` (or ``resume ... --address``) as the driver, and stops Ray when the
driver ends.

Signals: SLURM's warning before the time limit (``#SBATCH --signal=B:USR1@120``), ``scancel --batch
--signal=USR1 JOB`` and a SIGTERM or SIGINT of the batch shell ask the driver to stop the way Ray Tune stops
on Ctrl-C: it saves the experiment's state one last time and exits; then Ray is stopped. A plain ``scancel``
also signals Ray's own processes: the driver tries the same, but may lose the race with Ray, and Tune's
state is then its last periodic save. ``symsweep resume`` continues from Tune's saved state and each trial's
latest checkpoint either way.

The ``node`` and ``driver`` subcommands are internal: what ``srun`` starts on each worker node, and the
driver process.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: clusters/ and orchestrator/ of this checkout
    sys.path.insert(0, str(REPO))

from clusters.local_cluster import (  # noqa: E402 - after the path set-up above
    _signal_session,
    ensure_token,
    free_port,
    ray_executable,
    session_alive,
    wait_for_nodes,
)
from orchestrator.ray_cluster import socket_safe_base  # noqa: E402

COMMANDS = ("launch", "resume")
# How long the driver may take to stop after a stop request: Tune saves its state at once, then cleans up. After
# the time-limit warning Ray keeps running and the driver also writes the tables; after a SIGTERM (scancel, or
# the time limit itself) SLURM is stopping Ray's processes too, and the clean-up would only wait for them.
STOP_GRACE_S = {signal.SIGUSR1: 90.0, signal.SIGTERM: 10.0, signal.SIGINT: 10.0}


def log(message: str) -> None:
    print(f"[slurm_ray {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class NodeShare:
    """What SLURM gave this job on the node running this process."""

    cpus: int
    gpus: int


def node_share(env: Mapping[str, str]) -> NodeShare:
    """CPUs and GPUs of the job on this node, from SLURM's variables. GPUs: ``SLURM_GPUS_ON_NODE`` (set for
    ``--gpus*``/``--gres=gpu``), else the devices SLURM put in ``CUDA_VISIBLE_DEVICES``, else none."""
    cpus = env.get("SLURM_CPUS_ON_NODE") or env.get("SLURM_CPUS_PER_TASK") or ""
    if not cpus.isdigit() or int(cpus) < 1:
        raise ValueError(f"SLURM_CPUS_ON_NODE={cpus!r}: expected the job's CPUs on this node (a positive integer); "
                         "run inside a SLURM allocation (sbatch clusters/slurm/symsweep.sbatch ...)")
    gpus = env.get("SLURM_GPUS_ON_NODE", "")
    if gpus.isdigit():
        return NodeShare(int(cpus), int(gpus))
    visible = [device for device in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if device.strip()]
    return NodeShare(int(cpus), len(visible) if env.get("SLURM_JOB_GPUS") or env.get("SLURM_STEP_GPUS") else 0)


def job_nodes(env: Mapping[str, str]) -> list[str]:
    """The allocation's host names, first the one running the batch script (it becomes the head)."""
    listed = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not listed:
        raise ValueError("SLURM_JOB_NODELIST is not set: run inside a SLURM allocation "
                         "(sbatch clusters/slurm/symsweep.sbatch ...)")
    names = subprocess.run(["scontrol", "show", "hostnames", listed], capture_output=True, text=True,
                           check=True).stdout.split()
    here = env.get("SLURMD_NODENAME") or socket.gethostname()
    return sorted(names, key=lambda name: name != here)


def head_ip(nodes: Sequence[str], env: Mapping[str, str]) -> str:
    """Where the other nodes reach the head: ``SYMSWEEP_RAY_HEAD_IP`` if set; 127.0.0.1 for a one-node job
    (nothing is exposed); else the address the head's host name resolves to."""
    if env.get("SYMSWEEP_RAY_HEAD_IP"):
        return env["SYMSWEEP_RAY_HEAD_IP"]
    if len(nodes) == 1:
        return "127.0.0.1"
    address = socket.gethostbyname(nodes[0])
    if address.startswith("127."):
        raise ValueError(f"the head node {nodes[0]!r} resolves to {address}, which other nodes cannot reach; set "
                         "SYMSWEEP_RAY_HEAD_IP to its address on the cluster network")
    return address


def node_temp_dir(env: Mapping[str, str]) -> Path:
    """This job's Ray temporary folder on this node's local disk (logs, sockets, spilled objects)."""
    job = env.get("SLURM_JOB_ID", str(os.getpid()))
    preferred = env.get("SYMSWEEP_RAY_TMPDIR") or env.get("TMPDIR") or tempfile.gettempdir()
    return Path(socket_safe_base(preferred, len(f"/ray-{job}"))) / f"ray-{job}"


def ray_start(share: NodeShare, ip: str, temp_dir: Path, head: str | None) -> list[str]:
    """``ray start --block`` for the head (``head`` None) or for a worker joining ``head``."""
    role = ["--head", f"--port={free_port()}", "--include-dashboard=false"] if head is None else [f"--address={head}"]
    return [ray_executable(), "start", "--block", *role, f"--node-ip-address={ip}", f"--num-cpus={share.cpus}",
            f"--num-gpus={share.gpus}", f"--temp-dir={temp_dir}", "--disable-usage-stats"]


def expand_array(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``@FILE`` stands for the overrides on line ``SLURM_ARRAY_TASK_ID`` of FILE (counting lines that are neither
    empty nor ``#`` comments, from 1): one experiment per task of a job array."""
    out = []
    for arg in args:
        if not arg.startswith("@"):
            out.append(arg)
            continue
        task = env.get("SLURM_ARRAY_TASK_ID", "")
        if not task.isdigit():
            raise ValueError(f"{arg}: a list of experiments needs a job array (sbatch --array=1-N); "
                             f"SLURM_ARRAY_TASK_ID={task!r}")
        try:
            lines = [line.strip() for line in Path(arg[1:]).read_text().splitlines()]
        except OSError as err:
            raise ValueError(f"{arg}: cannot read the list of experiments ({err.strerror})") from None
        experiments = [line for line in lines if line and not line.startswith("#")]
        if not 1 <= int(task) <= len(experiments):
            raise ValueError(f"{arg}: SLURM_ARRAY_TASK_ID={task} but the file lists {len(experiments)} experiments; "
                             f"allowed: --array=1-{len(experiments)}")
        out.extend(shlex.split(experiments[int(task) - 1]))
    return out


def driver_command(args: Sequence[str], address: str) -> list[str]:
    """The symsweep command the driver runs, attached to this job's Ray."""
    if not args or args[0] not in COMMANDS:
        raise ValueError(f"command {args[0] if args else ''!r}: allowed: {', '.join(COMMANDS)} "
                         "(e.g. launch storage=/shared/runs name=NAME experiment=quickstart)")
    if args[0] == "launch":
        if any(arg.startswith(("cluster=", "cluster.address=")) for arg in args[1:]):
            raise ValueError("launch: cluster= and cluster.address= are set by the batch script (it attaches to the "
                             "Ray cluster of this job); leave them out")
        return [sys.executable, __file__, "driver", "launch", "cluster=remote", *args[1:]]
    return [sys.executable, __file__, "driver", *args, "--address", address]


def start_head(env: dict[str, str], nodes: Sequence[str]) -> tuple[subprocess.Popen, str, Path]:
    ip, temp_dir = head_ip(nodes, env), node_temp_dir(env)
    temp_dir.mkdir(parents=True, exist_ok=True)
    command = ray_start(node_share(env), ip, temp_dir, head=None)
    port = command[command.index("--head") + 1].split("=", 1)[1]
    head = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    return head, f"{ip}:{port}", temp_dir


def start_workers(env: dict[str, str], nodes: Sequence[str], address: str) -> subprocess.Popen | None:
    """One ``srun`` step: a Ray worker on every node but the head."""
    others = nodes[1:]
    if not others:
        return None
    command = ["srun", f"--nodes={len(others)}", f"--ntasks={len(others)}", "--ntasks-per-node=1",
               f"--nodelist={','.join(others)}", "--overlap", "--kill-on-bad-exit=0",
               sys.executable, __file__, "node", address]
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen | None, grace: float = 20.0) -> None:
    """SIGTERM to a ``ray start --block`` (or to the ``srun`` running them: it forwards it), then SIGKILL to
    what is left of its session."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 10.0
    while session_alive(process.pid) and time.monotonic() < deadline:
        _signal_session(process.pid, signal.SIGKILL)
        time.sleep(0.2)
    if process.poll() is None:
        process.wait(timeout=10)


def run_job(args: Sequence[str]) -> int:
    """The batch script's work: Ray up on every node, the driver, Ray down. Returns the driver's status."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    nodes = job_nodes(env)
    ensure_token(env)
    head, address, temp_dir = start_head(env, nodes)
    workers, driver, stopping, status = None, None, [], 1

    def request_stop(signum, frame):  # noqa: ARG001 - signal handler signature
        stopping.append((signum, time.monotonic()))
        log(f"received {signal.Signals(signum).name}: asking the driver to save the sweep's state and stop")
        if driver is not None and driver.poll() is None:
            # symsweep stops a sweep on SIGTERM the way Ray Tune does on SIGUSR1 (trials stopped, state saved) and
            # then exits 130 with the resume line
            driver.send_signal(signal.SIGTERM)

    for signum in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    try:
        workers = start_workers(env, nodes, address)
        share = node_share(env)
        log(f"Ray head at {address} on {nodes[0]} ({share.cpus} CPUs, {share.gpus} GPUs), "
            f"{len(nodes) - 1} worker node(s); temporary files in {temp_dir}")

        def exited() -> str | None:
            for name, process in (("head", head), ("workers' srun", workers)):
                if process is not None and process.poll() is not None:
                    return f"the Ray {name} exited with status {process.returncode} while starting"
            return None

        alive = wait_for_nodes(address, len(nodes), 180.0, env, exited)
        if len(alive) < len(nodes) or stopping:
            log(f"stopping: {len(alive)} of {len(nodes)} Ray nodes alive" + (" (stop requested)" if stopping else ""))
            return 1
        log(f"all {len(nodes)} Ray nodes alive; driver: symsweep {' '.join(args)}")
        driver = subprocess.Popen(driver_command(args, address), env={**env, "RAY_ADDRESS": address},
                                  stdin=subprocess.DEVNULL)
        status = wait_driver(driver, stopping)
        log(f"driver exited with status {status}")
        if stopping and status == 0:
            status = 1  # interrupted: not every trial finished
        if stopping:
            log("interrupted; continue with: sbatch clusters/slurm/symsweep.sbatch resume <storage>/<name>")
        return status
    finally:  # after a stop request SLURM has signalled Ray too, and kills what is left after its KillWait
        grace = 5.0 if stopping else 20.0
        stop(workers, grace)
        stop(head, grace)
        log("Ray stopped")
        if status == 0:  # Ray's logs on this node are kept only when something went wrong
            shutil.rmtree(temp_dir, ignore_errors=True)


def wait_driver(driver: subprocess.Popen, stopping: list[tuple[int, float]]) -> int:
    """The driver's exit status; after a stop request it gets ``STOP_GRACE_S`` to stop, then SIGKILL."""
    while True:
        try:
            return driver.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if stopping and time.monotonic() > min(since + STOP_GRACE_S[signum] for signum, since in stopping):
            log("the driver did not stop in time after the stop request; killing it (Tune saved its state "
                "when the request came)")
            driver.kill()
            return driver.wait()


def address_towards(head: str) -> str:
    """This node's address on the network that reaches ``head`` ("ip:port"): the source address the kernel
    picks for it (a host name may resolve to 127.0.1.1, which the head could not reach)."""
    host, port = head.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, int(port)))  # UDP: nothing is sent
        return probe.getsockname()[0]


def run_node(address: str) -> int:
    """What ``srun`` runs on each worker node: a Ray worker with this node's share, until stopped."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    temp_dir = node_temp_dir(env)
    temp_dir.mkdir(parents=True, exist_ok=True)
    ip = env.get("SYMSWEEP_RAY_NODE_IP") or address_towards(address)
    os.execve(ray_executable(), ray_start(node_share(env), ip, temp_dir, head=address), env)
    return 0  # not reached


def run_driver(args: Sequence[str]) -> int:
    """The symsweep CLI, with SIGTERM handled like SIGUSR1: Ray Tune saves the experiment's state and stops.

    ``ray.init`` installs a crash handler for SIGTERM that aborts the driver at once (losing Tune's latest
    state), so the handler is installed again once Ray is initialised."""
    import ray

    def as_usr1(signum, frame):
        handler = signal.getsignal(signal.SIGUSR1)
        if callable(handler):
            handler(signal.SIGUSR1, frame)
        else:
            raise SystemExit(128 + signum)

    init = ray.init

    def init_keeping_sigterm(*args, **kwargs):
        context = init(*args, **kwargs)
        signal.signal(signal.SIGTERM, as_usr1)
        return context

    signal.signal(signal.SIGTERM, as_usr1)
    ray.init = init_keeping_sigterm
    from orchestrator.cli import main as symsweep

    return symsweep(list(args))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["node"]:
        return run_node(argv[1])
    if argv[:1] == ["driver"]:
        return run_driver(argv[1:])
    try:
        argv = expand_array(argv, os.environ)
        driver_command(argv, "")  # bad arguments: one line, before anything starts
        node_share(os.environ)
        nodes = job_nodes(os.environ)
        head_ip(nodes, os.environ)
    except (ValueError, subprocess.CalledProcessError) as err:
        print(f"symsweep.sbatch: error: {err}", file=sys.stderr)
        return 2
    return run_job(argv)


if __name__ == "__main__":
    sys.exit(main())
