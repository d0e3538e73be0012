"""A real one-node SLURM on this machine for the tests: munged, slurmctld and slurmd (Debian's slurm-wlm, installed
by ``.ci/setup-services``) in the foreground, as root, with a configuration of their own (a folder of ours holds
the configuration, the munge key and socket, state, spool and logs; ports are free ones), so nothing of a system
SLURM is used or touched. ``stop()`` cancels the jobs and stops exactly the daemons it started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clusters.local_cluster import _signal_session, free_port, session_alive
from orchestrator.ray_cluster import socket_safe_base

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "srun")
NODE = "symsweep1"


def unavailable() -> str | None:
    """Why a SLURM cannot be started here, or None."""
    missing = [tool for tool in (*DAEMONS, *CLIENTS) if shutil.which(tool) is None]
    if missing:
        return (f"SLURM is not installed ({', '.join(missing)} missing): run .ci/setup-services as root "
                "(apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        return "the test SLURM runs its daemons as root; these tests are not running as root"
    return None


CONFIG = """\
ClusterName=symsweeptest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.sock
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
KillWait=30
InactiveLimit=0
MinJobAge=600
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """munged + slurmctld + slurmd for one node of ``cpus`` CPUs; ``env`` is a client's environment."""

    def __init__(self, cpus: int = 2):
        self.cpus = cpus
        self.root = Path(tempfile.mkdtemp(prefix="slurm-", dir=socket_safe_base(
            os.environ.get("TMPDIR") or tempfile.gettempdir(), len("/slurm-abcdefgh/munge.sock.lock"))))
        self.conf = self.root / "slurm.conf"
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf), "SYMSWEEP_PYTHON": sys.executable}

    def start(self, timeout: float = 60.0) -> "LocalSlurm":
        for folder in ("state", "spool"):
            (self.root / folder).mkdir()
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(CONFIG.format(host=socket.gethostname().split(".")[0], root=self.root, node=NODE,
                                           cpus=self.cpus, ctld_port=free_port(), slurmd_port=free_port()))
        try:
            self._spawn("munged", ["munged", "-F", "-f", f"--socket={self.root}/munge.sock", f"--key-file={key}",
                                   f"--log-file={self.root}/munged.log", f"--pid-file={self.root}/munged.pid",
                                   f"--seed-file={self.root}/munged.seed"])
            self._until(lambda: (self.root / "munge.sock").exists(), timeout, "munged did not create its socket")
            self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._spawn("slurmd", ["slurmd", "-D", "-N", NODE, "-f", str(self.conf)])
            self._until(lambda: self.node_state() == "idle", timeout, "the SLURM node did not become idle")
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, command: list[str]) -> None:
        with (self.root / f"{name}.out").open("wb") as out:
            self.processes[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def _until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {process.returncode}:\n{self.logs(name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} within {timeout:g} s:\n{self.logs()}")
            time.sleep(0.3)

    def logs(self, *names: str, lines: int = 20) -> str:
        out = []
        for name in names or DAEMONS:
            for file in (self.root / f"{name}.out", self.root / f"{name}.log"):
                if file.exists():
                    out.append(f"--- {file.name}\n" + "\n".join(file.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, env=self.env, check=check, timeout=60)

    def node_state(self) -> str:
        done = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    def job_state(self, job: str) -> str:
        """PENDING, RUNNING, COMPLETED, CANCELLED, FAILED, ... (kept MinJobAge seconds after the end)."""
        done = self.run("scontrol", "show", "job", job, "-o", check=False)
        fields = dict(item.split("=", 1) for item in done.stdout.split() if "=" in item)
        return fields.get("JobState", "")

    def wait_job(self, job: str, timeout: float) -> str:
        """The job's final state, once it has ended."""
        deadline = time.monotonic() + timeout
        while (state := self.job_state(job)) in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", ""):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job} still {state or 'unknown'} after {timeout:g} s")
            time.sleep(0.5)
        return state

    def job_processes(self, job: str) -> list[int]:
        """Processes still running for this job (their environment holds its SLURM_JOB_ID)."""
        found = []
        marker = f"SLURM_JOB_ID={job}".encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    found.append(int(pid))
            except OSError:
                continue
        return found

    def stop(self) -> None:
        """Cancel every job, wait for them to end, then stop the daemons (slurmd first), nothing else."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--user=root", check=False)
            deadline = time.monotonic() + 60
            while self.run("squeue", "-h", check=False).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if session_alive(process.pid):
                _signal_session(process.pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def alive(self) -> list[str]:
        return [name for name, process in self.processes.items()
                if process.poll() is None or session_alive(process.pid)]
