"""``clusters/slurm/symsweep.sbatch`` against a real SLURM (one node, 2 CPUs, started here; see slurm_service.py):
a tiny sweep submitted with sbatch runs on the Ray cluster the job starts and leaves its summary on the storage;
a sweep stopped mid-way (scancel, or the warning before the time limit) is finished by ``resume`` in a new job,
no finished trial rerun; no job leaves a process behind. Plus the batch helper's reading of SLURM's variables,
without SLURM."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from clusters.slurm import slurm_ray
from tests.clusters.slurm_service import LocalSlurm, unavailable

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "clusters" / "slurm" / "symsweep.sbatch"
TINY = ["task=nbody", "task.train_size=40", "task.eval_size=20", "group=sn_e", "model.widths=[16]",
        "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4",
        "trainer.batch_size=20", "trainer.threads=1", "logging.wandb.enabled=false", "sweep.seeds=2"]


@pytest.fixture(scope="module")
def slurm():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    service = LocalSlurm(cpus=2).start()
    try:
        yield service
    finally:
        service.stop()
    assert not service.alive(), f"SLURM daemons left running: {service.alive()}"


def sbatch(slurm: LocalSlurm, out: Path, *args: str) -> str:
    """Submit the batch script from the checkout with this interpreter's environment (sbatch passes it on)."""
    done = slurm.run("sbatch", "--parsable", "--cpus-per-task=2", f"--output={out}/job-%j.out",
                     f"--chdir={REPO}", str(SBATCH), *args)
    return done.stdout.strip().split(";")[0]


def job_output(out: Path, job: str) -> str:
    file = out / f"job-{job}.out"
    return file.read_text(errors="replace") if file.exists() else ""


def results(trial_dir: Path) -> list[dict]:
    file = trial_dir / "result.json"
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()] if file.exists() else []


def trial_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name.startswith("trainable_")) if path.exists() else []


def table(path: Path) -> dict[str, dict]:
    with (path / "trials.csv").open() as file:
        return {row["trial_id"]: row for row in csv.DictReader(file)}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.3)
    raise TimeoutError(what)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_sweep_submitted_with_sbatch_runs_on_the_jobs_ray_cluster(slurm, tmp_path):
    path = tmp_path / "slurm"
    submitted = time.time()
    job = sbatch(slurm, tmp_path, "launch", f"storage={tmp_path}", "name=slurm", *TINY, "trainer.epochs=2")
    state = slurm.wait_job(job, timeout=240)
    out = job_output(tmp_path, job)
    assert state == "COMPLETED", out[-4000:] + slurm.logs()
    first_trial = min((trial / "params.json").stat().st_mtime for trial in trial_dirs(path))
    print(f"\nsbatch -> first trial running: {first_trial - submitted:.1f} s; whole job: "
          f"{time.time() - submitted:.1f} s")
    assert "2 CPUs, 0 GPUs), 0 worker node(s)" in out and "all 1 Ray nodes alive" in out, out
    rows = table(path)
    assert len(rows) == 2 and all(row["state"] == "completed" for row in rows.values()), rows
    assert (path / "summary.md").is_file() and "best_val_mse" in (path / "summary.md").read_text()
    assert json.loads((path / "config.json").read_text())["cluster"]["address"] == "auto"  # attached, not embedded
    assert all(len(results(trial)) == 2 for trial in trial_dirs(path))
    assert "Ray stopped" in out and not slurm.job_processes(job)  # nothing of the job is left running
    assert not slurm_ray.node_temp_dir({**slurm.env, "SLURM_JOB_ID": job}).exists()  # nor its Ray temp folder


def recorded_finished(path: Path, trial_dir: Path) -> bool:
    """Whether Tune's saved experiment state already lists the trial of this directory as finished."""
    for state in path.glob("experiment_state-*.json"):
        try:
            trials = [json.loads(trial) for trial, _ in json.loads(state.read_text())["trial_data"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced
        if any(trial.get("status") == "TERMINATED" and trial_dir.name.startswith(f"trainable_{trial['trial_id']}")
               for trial in trials):
            return True
    return False


# how the first job is stopped: a plain scancel (SIGTERM to every process of the job, Ray's included, at once),
# and the warning before the time limit (#SBATCH --signal=B:USR1@120; the same as `scancel --signal=USR1 --batch`)
STOPS = {"scancel": (["scancel"], "SIGTERM", "CANCELLED"),
         "time-limit warning": (["scancel", "--signal=USR1", "--batch"], "SIGUSR1", "FAILED")}


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("stop", list(STOPS))
def test_a_stopped_job_is_finished_by_resume_in_a_new_job(slurm, tmp_path, stop):
    path, epochs = tmp_path / "cancel", 8
    command, signal_name, final_state = STOPS[stop]
    job = sbatch(slurm, tmp_path, "launch", f"storage={tmp_path}", "name=cancel", *TINY, f"trainer.epochs={epochs}",
                 "task.train_size=200", "sweep.max_concurrent=1", "trainer.checkpoint_every=1")

    def one_done_one_midway():  # the trials run one after the other: cancel in the second, after the first ended
        runs = {trial: results(trial) for trial in trial_dirs(path)}
        done = [trial for trial, lines in runs.items() if lines and lines[-1]["epoch"] == epochs]
        midway = [trial for trial, lines in runs.items() if lines and 2 <= lines[-1]["epoch"] < epochs - 2]
        return (done[0], midway[0]) if done and midway and recorded_finished(path, done[0]) else None

    try:
        finished, interrupted = wait_for(one_done_one_midway, 240, "a finished and a half-way trial")
    except TimeoutError:
        pytest.fail(f"no finished and half-way trial; job {job} output:\n{job_output(tmp_path, job)[-4000:]}")
    slurm.run(*command, job)
    assert slurm.wait_job(job, timeout=90) == final_state  # FAILED: the job says the sweep did not finish
    wait_for(lambda: not slurm.job_processes(job), 60, f"processes of job {job} to end")  # Ray stopped with it
    out = job_output(tmp_path, job)
    assert f"received {signal_name}: asking the driver to save" in out and "Ray stopped" in out, out[-4000:]
    if signal_name == "SIGUSR1":  # a gentle stop: Tune's state saved, the tables written, then Ray stopped
        request = out.index("received SIGUSR1")
        assert "Wrote the latest version of all result files and experiment state" in out[request:], out[-4000:]
        # 130: the sweep stopped on a signal with its state saved (symsweep's exit status for an interrupted sweep)
        assert "driver exited with status 130" in out and (path / "trials.csv").is_file()
    finished_lines = (finished / "result.json").read_text()
    before = results(interrupted)
    assert before[-1]["epoch"] < epochs

    job2 = sbatch(slurm, tmp_path, "resume", str(path))
    state = slurm.wait_job(job2, timeout=240)
    assert state == "COMPLETED", job_output(tmp_path, job2)[-4000:]
    rows = table(path)
    assert len(rows) == 2 and all(row["state"] == "completed" for row in rows.values()), rows
    assert (finished / "result.json").read_text() == finished_lines  # the finished trial was not rerun
    after = results(interrupted)[len(before):]
    assert after and after[0]["epoch"] > 1  # continued from its checkpoint, not from scratch
    assert {line["epoch"] for line in results(interrupted)} == set(range(1, epochs + 1))  # nothing lost
    assert not slurm.job_processes(job2)


# -- the helper's reading of SLURM's variables, without SLURM ------------------------------------------------------
def test_each_node_advertises_the_cpus_and_gpus_slurm_gave_the_job():
    assert slurm_ray.node_share({"SLURM_CPUS_ON_NODE": "16", "SLURM_GPUS_ON_NODE": "4"}) == slurm_ray.NodeShare(16, 4)
    assert slurm_ray.node_share({"SLURM_CPUS_ON_NODE": "8"}) == slurm_ray.NodeShare(8, 0)
    gres = {"SLURM_CPUS_ON_NODE": "8", "SLURM_JOB_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1"}
    assert slurm_ray.node_share(gres) == slurm_ray.NodeShare(8, 2)
    assert slurm_ray.node_share({"SLURM_CPUS_ON_NODE": "8", "CUDA_VISIBLE_DEVICES": "0,1"}).gpus == 0  # not SLURM's
    with pytest.raises(ValueError, match="SLURM_CPUS_ON_NODE"):
        slurm_ray.node_share({})
    command = slurm_ray.ray_start(slurm_ray.NodeShare(8, 2), "10.0.0.5", Path("/tmp/ray-7"), head="10.0.0.1:6379")
    assert "--num-cpus=8" in command and "--num-gpus=2" in command and "--address=10.0.0.1:6379" in command


def test_a_worker_node_joins_with_its_address_towards_the_head():
    assert slurm_ray.address_towards("127.0.0.1:6379") == "127.0.0.1"


def test_the_driver_attaches_to_the_jobs_ray():
    launch = slurm_ray.driver_command(["launch", "experiment=quickstart"], "10.0.0.1:6379")
    assert launch[-3:] == ["launch", "cluster=remote", "experiment=quickstart"]
    resume = slurm_ray.driver_command(["resume", "/shared/runs/x"], "10.0.0.1:6379")
    assert resume[-4:] == ["resume", "/shared/runs/x", "--address", "10.0.0.1:6379"]


def test_a_job_array_runs_one_experiment_per_task(tmp_path):
    listed = tmp_path / "experiments.txt"
    listed.write_text("# name and preset\nexperiment=ps_exp name=exp\n\nexperiment=ps_graph8c name='graph 8c'\n")
    args = ["launch", "storage=/shared/runs", f"@{listed}"]
    assert slurm_ray.expand_array(args, {"SLURM_ARRAY_TASK_ID": "2"}) == [
        "launch", "storage=/shared/runs", "experiment=ps_graph8c", "name=graph 8c"]
    with pytest.raises(ValueError, match="TASK_ID=3 but the file lists 2 experiments; allowed: --array=1-2"):
        slurm_ray.expand_array(args, {"SLURM_ARRAY_TASK_ID": "3"})
    with pytest.raises(ValueError, match="needs a job array"):
        slurm_ray.expand_array(args, {})


@pytest.mark.parametrize("args, message", [
    (["lunch", "x=1"], "command 'lunch': allowed: launch, resume"),
    (["launch", "cluster.address=auto"], "cluster= and cluster.address= are set by the batch script"),
])
def test_bad_arguments_are_one_line_before_anything_starts(args, message, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "2")
    monkeypatch.setattr(slurm_ray, "run_job", lambda argv: pytest.fail("started"))
    assert slurm_ray.main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
