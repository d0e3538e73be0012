"""Fault injection on real sweeps (embedded local Ray, each command in its own process as a user runs it):
a killed driver, a killed worker, a moved experiment, a corrupted or missing state, two drivers at once,
signals, a diverging loss, a truncated checkpoint. The promise checked every time: continue from the newest
complete checkpoint in the same trial directory, every evaluation in ``result.json`` exactly once, no trial
Tune did not plan, nothing written outside the experiment, completed trials' files unchanged, and no process
or temporary folder of the sweep left behind."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.session import descendants
from tests.orchestrator.sweeps import TINY, digest, results, symsweep, trial_dirs, wait_for

pytestmark = pytest.mark.slow
QUIET = ["logging.wandb.enabled=false"]


def environment(tmp_path: Path) -> dict:
    """The sweep's own temporary root, to see what it leaves there."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(scratch)}


def epochs_of(trial_dir: Path) -> list[int]:
    return [line["epoch"] for line in results(trial_dir)]


def alive(pids: dict[int, int]) -> list[int]:
    from orchestrator.session import _stat

    return [pid for pid, start in pids.items() if (stat := _stat(pid)) is not None and stat[1] == start]


def leftovers(env: dict) -> list[str]:
    """What the sweep left in its temporary root: the trials' folders, W&B's (``tmp*wandb-media``, ...)."""
    return sorted(path.name for path in Path(env["TMPDIR"]).iterdir() if "symsweep-" in path.name
                  or "wandb" in path.name)


def csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def listening(pids) -> list[str]:
    """The TCP addresses ``pids`` listen on ("ip:port"), from /proc."""
    import ipaddress

    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw, port = fields[1].split(":")
            packed = bytes.fromhex(raw)
            words = b"".join(packed[i:i + 4][::-1] for i in range(0, len(packed), 4))
            address = ipaddress.ip_address(words)
            if address.version == 6 and address.ipv4_mapped:
                address = address.ipv4_mapped
            found.append(f"{address}:{int(port, 16)}")
    return found


def kill_driver_when(path: Path, launch: subprocess.Popen, condition) -> dict[int, int]:
    """SIGKILL the driver process alone (not its group) once ``condition()`` holds; returns the Ray processes
    that were running under it. Checks on the way that every one of them listens on loopback only."""
    try:
        wait_for(condition, timeout=240)
        ray_processes = descendants(launch.pid)
        assert ray_processes, "an embedded Ray runs under the driver"
        addresses = listening([launch.pid, *ray_processes])
        assert addresses and all(address.startswith("127.") for address in addresses), addresses
    finally:
        os.kill(launch.pid, signal.SIGKILL)
        launch.communicate(timeout=60)
    return ray_processes


def metrics_of(trial_dir: Path) -> list[dict]:
    """The trial's reports without Ray's bookkeeping (times, hosts, ids), to compare two runs of it."""
    skip = {"time_this_iter_s", "time_total_s", "timestamp", "date", "pid", "hostname", "node_ip", "node_id",
            "time_since_restore", "iterations_since_restore", "training_iteration", "elapsed_s", "samples_per_s",
            "examples_per_s", "experiment_id", "checkpoint_dir_name", "done", "should_checkpoint"}
    return [{k: v for k, v in line.items() if k not in skip} for line in results(trial_dir)]


def test_a_killed_driver_then_a_copy_and_a_move_resume_where_they_are(tmp_path):
    """Items: the driver SIGKILLed while a trial trains and others wait (not yet created by Tune); its Ray
    processes and temp folders do not survive. A copy (``cp -a``) of the experiment resumes into itself with
    the original untouched, byte for byte; then the original, moved (``mv``), resumes where it is now and
    nothing reappears at its old place. In both, every trial — finished, interrupted, never started — ends in
    its own directory with every epoch reported once, and both end with the same reports. The grid is collapsed
    (GA does not read the noise scale: 4 configurations, 3 trials), whose distinct configurations live in Tune's
    search state: the resumed drivers run the remaining ones and no configuration twice (this was
    ``test_collapse_e2e.py::test_a_collapsed_sweep_resumes_after_a_killed_driver``)."""
    env = environment(tmp_path)
    path = tmp_path / "crash"
    launch = symsweep("launch", f"storage={tmp_path}", "name=crash", *TINY, *QUIET, "trainer.epochs=8",
                      "task.train_size=400", "symmetrizer.method=ga,ps", "symmetrizer.noise_scale=0.1,1.0",
                      "sweep.max_concurrent=1", wait=False, env=env)

    def newest_epoch(trial: Path) -> int:
        from workers.checkpoints import checkpoints

        found = checkpoints(trial)  # written into the trial directory at once (result.json only now and then)
        return json.loads((found[0] / "meta.json").read_text())["epoch"] if found else 0

    def one_done_one_training_others_waiting():  # GA first (fast), then PS at 0.1 (training), PS at 1.0 (waiting)
        epochs = [newest_epoch(t) for t in trial_dirs(path)]
        return 8 in epochs and any(2 <= epoch < 8 for epoch in epochs) and len(epochs) < 3

    ray_processes = kill_driver_when(path, launch, one_done_one_training_others_waiting)
    wait_for(lambda: not alive(ray_processes) and not leftovers(env), timeout=30)
    started = [t.name for t in trial_dirs(path)]
    finished = [t.name for t in trial_dirs(path) if epochs_of(t)[-1:] == [8]]
    assert len(started) < 3, "some trial had not started when the driver died"
    original = digest(path)

    copy = tmp_path / "copied" / "crash"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(path), str(copy.parent)], check=True)
    resumed = symsweep("resume", str(copy), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert digest(path) == original, "resuming the copy changed the original experiment"
    moved = tmp_path / "moved" / "crash"
    moved.parent.mkdir()
    path.rename(moved)
    again = symsweep("resume", str(moved), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not path.exists(), "the moved experiment wrote into its old place"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copied", "moved", "tmp"]

    for where in (copy, moved):
        trials = trial_dirs(where)
        assert len(trials) == 3 and [t.name for t in trials if t.name in started] == started
        for trial in trials:
            assert epochs_of(trial) == list(range(1, 9)), (where, trial.name, epochs_of(trial))
        for name in finished:
            assert digest(where / name) == {k.removeprefix(name + "/"): v for k, v in original.items()
                                            if k.startswith(name + "/")}, f"completed trial {name} was touched"
        rows = csv_rows(where / "trials.csv")
        assert len(rows) == 3 and {row["state"] for row in rows} == {"completed"}
        assert sorted((row["symmetrizer.method"], row["symmetrizer.noise_scale"]) for row in rows) == [
            ("ga", ""), ("ps", "0.1"), ("ps", "1.0")]  # GA reads no noise scale: the cell is empty
    for one, other in zip(trial_dirs(copy), trial_dirs(moved), strict=True):
        assert metrics_of(one) == metrics_of(other), one.name
    assert "Tuner.restore" not in resumed.stdout + resumed.stderr + again.stdout + again.stderr
    assert not leftovers(env)


def test_a_killed_driver_with_wandb_leaves_no_wandb_folder_in_the_temporary_root(tmp_path):
    """W&B makes folders in the temporary root when it is imported (removed only at a normal exit), and Ray Tune
    imports it in every sweep: the driver's go to the sweep's scratch folder, which the watcher removes. (With
    W&B off, the other tests here check the same through ``leftovers``.)"""
    env = {**environment(tmp_path), "WANDB_MODE": "offline"}
    path = tmp_path / "wandb"
    launch = symsweep("launch", f"storage={tmp_path}", "name=wandb", *TINY, "logging.wandb.enabled=true",
                      "trainer.epochs=8", "task.train_size=1000", "symmetrizer.method=ps", wait=False, env=env)
    ray_processes = kill_driver_when(path, launch, lambda: any((t / "checkpoint_000001").is_dir()
                                                                for t in trial_dirs(path)))
    wait_for(lambda: not alive(ray_processes), timeout=30)
    time.sleep(1)
    assert not leftovers(env), leftovers(env)
    assert list((path / "wandb").glob("offline-run-*")), "the W&B run is in the experiment"
    resumed = symsweep("resume", str(path), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not leftovers(env), leftovers(env)


def test_a_diverging_trial_fails_once_and_a_failing_wandb_stops_only_its_logging(tmp_path):
    """Items: a diverging loss, and W&B failing (online, no login). The diverged trial fails once (not retried,
    though ``cluster.max_failures=2``), its error names the non-finite loss and what is kept; W&B says once that
    its logging stopped; the other trial completes all the same. (Was ``test_a_diverging_loss_fails_once_naming_
    what_is_kept`` here and ``test_sweep_e2e.py::test_a_failing_wandb_never_stops_the_sweep``; the trial's
    and the callback's sides in detail: tests/train/test_trial.py, tests/orchestrator/test_progress.py.)"""
    path = tmp_path / "diverged"
    env = {k: v for k, v in environment(tmp_path).items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no W&B login, no API key: online W&B cannot start
    done = symsweep("launch", f"storage={tmp_path}", "name=diverged", *TINY, "trainer.epochs=3",
                    "trainer.lr=1e30,0.001", "logging.wandb.mode=online", "cluster.max_failures=2", env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    rows = {float(row["trainer.lr"]) > 1: row for row in csv_rows(path / "trials.csv")}
    row, other = rows[True], rows[False]
    assert row["state"] == "errored" and row["num_failures"] == "1", row
    assert "non-finite training loss" in row["error"] and "not retried" in row["error"]
    named = [word.rstrip(";,") for word in row["error"].split() if "checkpoint_" in word]
    assert all(Path(word).is_dir() for word in named) and "kept in" not in row["error"]
    assert "symsweep resume" not in done.stdout and "launch a new experiment" in done.stdout  # a resume repeats it
    assert other["state"] == "completed", other
    assert output.count("W&B logging stopped") == 1, output


SOAK = [*TINY, *QUIET, "task.train_size=200", "trainer.epochs=16", "symmetrizer.method=ps,ga",
        "cluster.max_failures=3"]
EPOCHS = 16


def training_worker(driver: int) -> int | None:
    """The pid of a trial actor of this driver's Ray that is running a trial now (found in the process tree,
    not in result.json, which Tune copies to the experiment only now and then)."""
    for pid in descendants(driver):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ImplicitFunc" in command:
            return pid
    return None


def with_two_checkpoints(path: Path) -> Path | None:
    """A trial that has not finished and has two complete checkpoints (one to fall back on)."""
    from workers.checkpoints import checkpoints

    for trial in trial_dirs(path):
        found = checkpoints(trial)
        if len(found) >= 2 and epochs_of(trial)[-1:] != [EPOCHS]:
            return found[0]
    return None


def truncate_newest_checkpoint(path: Path) -> bool:
    newest = with_two_checkpoints(path)
    if newest is None:
        return False
    state = newest / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    return True


def test_soak_driver_and_workers_killed_again_and_again_end_as_an_uninterrupted_run(tmp_path):
    """Five kills at seeded random points (worker SIGKILL, driver SIGINT, driver SIGKILL + a truncated newest
    checkpoint, worker SIGKILL, driver SIGTERM), resumed each time: the reports equal an uninterrupted run's,
    epoch by epoch, each exactly once, in the first directory of each trial."""
    import random

    from orchestrator.config import compose, trial_config
    from workers.train import run

    env = environment(tmp_path)
    path = tmp_path / "soak"
    rng = random.Random(15)
    kills, truncated = [], False

    def start(*args):
        return symsweep(*args, wait=False, env=env)

    launch = start("launch", f"storage={tmp_path}", "name=soak", *SOAK)
    names = None
    for kind in ("worker", "sigint", "sigkill", "worker", "sigterm"):
        pid = wait_for(lambda: training_worker(launch.pid), timeout=240)  # a trial trains now...
        time.sleep(rng.uniform(0.5, 1.2))  # ...and is killed at a random point of its training
        if kind == "sigkill":  # with a newest checkpoint to truncate and an older one to fall back on
            wait_for(lambda: with_two_checkpoints(path), timeout=120)
        assert launch.poll() is None, "the sweep ended before the kill: give it more epochs"
        names = names or [t.name for t in trial_dirs(path)]
        if kind == "worker":
            os.kill(pid, signal.SIGKILL)
            kills.append(kind)
            continue
        ray_processes = descendants(launch.pid)
        os.kill(launch.pid, {"sigint": signal.SIGINT, "sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM}[kind])
        output, _ = launch.communicate(timeout=180)
        kills.append(kind)
        if kind != "sigkill":
            assert launch.returncode == 130, output
            assert f"symsweep resume {path}" in output and "Tuner.restore" not in output
        wait_for(lambda: not alive(ray_processes) and not leftovers(env), timeout=30)
        if kind == "sigkill":
            truncated = truncate_newest_checkpoint(path)
        launch = start("resume", str(path))
    output, _ = launch.communicate(timeout=300)
    assert launch.returncode == 0, output
    assert len(kills) == 5 and truncated, (kills, truncated)

    assert [t.name for t in trial_dirs(path)] == names, "each trial kept its first directory"
    base = trial_config(compose([f"storage={tmp_path}", *SOAK]))
    rows = {row["symmetrizer.method"]: row for row in csv_rows(path / "trials.csv")}
    for trial in trial_dirs(path):
        lines = results(trial)
        assert [line["epoch"] for line in lines] == list(range(1, EPOCHS + 1)), trial.name
        method = lines[0]["config"]["symmetrizer.method"]
        config = {**base, "symmetrizer": {**base["symmetrizer"], "method": method}}
        reference = []
        run(config, lambda metrics, checkpoint: reference.append(metrics), tmp_path / f"reference-{method}")
        for ours, theirs in zip(lines, reference, strict=True):
            for key in ("train_loss", "val_mse", "test_mse", "best_val_mse", "best_test_mse", "mc_equivariance_error"):
                assert ours[key] == theirs[key], (method, ours["epoch"], key)
        assert rows[method]["state"] == "completed" and rows[method]["error"] == ""
    assert not leftovers(env)


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MiB tmpfs of its own, to fill up; skipped (saying why) where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"a small file system is needed to fill up and `mount -t tmpfs` failed here ({made.stderr.strip()}"
                    "); it needs root with CAP_SYS_ADMIN, as in CI")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` (the sweep's next write fails with ENOSPC)."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 2**20)
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_stops_the_sweep_in_one_line_and_resume_continues_once_space_is_freed(tmp_path, small_disk):
    """Item: storage fills up mid-sweep. The sweep stops (exit 1) with one line naming the path and the free space
    and the resume hint; Tune's state is not left truncated; after space is freed, resume continues to the
    uninterrupted result, every epoch once."""
    from orchestrator.config import compose, trial_config
    from workers.train import run

    env = environment(tmp_path)
    settings = [*TINY, *QUIET, "trainer.epochs=10", "task.train_size=400", "symmetrizer.method=ga,ps",
                "sweep.max_concurrent=1", "cluster.max_failures=1"]
    path = small_disk / "full"
    launch = symsweep("launch", f"storage={small_disk}", "name=full", *settings, wait=False, env=env)
    try:
        wait_for(lambda: any(len(epochs_of(t)) >= 2 for t in trial_dirs(path)), timeout=240)
        filler = fill(small_disk)
        output, _ = launch.communicate(timeout=240)
    finally:
        if launch.poll() is None:
            launch.kill()
    assert launch.returncode == 1, output
    stops = [line for line in output.splitlines() if "the disk is full: cannot write" in line]
    assert len(stops) == 1 and str(path) in stops[0] and "MiB free" in stops[0], output
    assert f"symsweep resume {path}" in stops[0]
    assert output.count("Traceback") <= 4, output  # trials' own failures at most, never one per copy
    for state in path.glob("experiment_state-*.json"):
        json.loads(state.read_text())  # whole: the last complete state

    filler.unlink()
    resumed = symsweep("resume", str(path), env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    base = trial_config(compose([f"storage={small_disk}", *settings]))
    for trial in trial_dirs(path):
        lines = results(trial)
        assert [line["epoch"] for line in lines] == list(range(1, 11)), (trial.name, [x["epoch"] for x in lines])
        method = lines[0]["config"]["symmetrizer.method"]
        reference = []
        config = {**base, "symmetrizer": {**base["symmetrizer"], "method": method}}
        run(config, lambda metrics, checkpoint: reference.append(metrics), tmp_path / f"reference-{method}")
        assert [line["val_mse"] for line in lines] == [r["val_mse"] for r in reference], method
    assert {row["state"] for row in csv_rows(path / "trials.csv")} == {"completed"}


def test_trials_killed_by_rays_memory_monitor_are_failed_trials_and_resume_completes_them(tmp_path):
    """Item: low memory. Ray's memory monitor (its threshold set below what the machine uses now) kills every trial
    actor: each is a failed trial, retried as configured; the driver never shows a traceback, writes trials.csv
    and the summary, says how to resume and exits 1. Resumed with memory to spare, every trial completes."""
    import psutil

    memory = psutil.virtual_memory()
    used = (memory.total - memory.available) / memory.total
    env = {**environment(tmp_path), "RAY_memory_usage_threshold": f"{max(0.01, used / 2):.3f}",
           "RAY_memory_monitor_refresh_ms": "50"}
    path = tmp_path / "oom"
    done = symsweep("launch", f"storage={tmp_path}", "name=oom", *TINY, *QUIET, "trainer.epochs=2",
                    "symmetrizer.method=ga,ps", "cluster.max_failures=1", env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    assert f"symsweep resume {path}" in output and "2 of 2 planned trial(s) did not complete" in output, output
    assert {row["state"] for row in csv_rows(path / "trials.csv")} == {"errored"}
    assert (path / "summary.md").is_file()
    resumed = symsweep("resume", str(path), env=environment(tmp_path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [epochs_of(trial) for trial in trial_dirs(path)] == [[1, 2], [1, 2]]
    assert {row["state"] for row in csv_rows(path / "trials.csv")} == {"completed"}
