"""W&B runs worth opening: named by the trial's swept values, grouped by experiment (``group``) and configuration
(``job_type``: the seeds of a configuration together), carrying the trial's whole composed config and the symsweep
version. Checked on the calls (a fake ``wandb``) and on the files an offline sweep writes (read back with W&B's own
record format: no network, no account)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import types
from pathlib import Path

import pytest

from orchestrator.wandb_runs import WandbRuns, safe_wandb, symsweep_version
from workers import UNUSED
from workers.schema import WandbSettings

ROOT = Path(__file__).resolve().parents[2]
BASE = {"task": {"name": "nbody", "train_size": 40}, "symmetrizer": {"method": "ps", "noise_scale": 1.0},
        "trainer": {"epochs": 2, "seed": 0, "lr": 0.001}}


class Trial:
    def __init__(self, trial_id, config):
        self.trial_id, self.config = trial_id, config


@pytest.fixture
def inits(monkeypatch) -> list[dict]:
    calls: list[dict] = []

    class Run:
        def log(self, metrics):
            pass

        def finish(self, exit_code=0):
            pass

    def init(**kwargs):
        calls.append(kwargs)
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Settings=lambda **kw: kw, init=init))
    return calls


def test_a_run_is_named_grouped_and_configured_by_its_trial(inits, tmp_path):
    callback = safe_wandb(WandbSettings(enabled=True), "quick", tmp_path, base=BASE)
    callback.on_trial_start(0, [], Trial("a_00000", {"symmetrizer.method": "ps", "symmetrizer.noise_scale": 0.1,
                                                      "symmetrizer.train_samples": 8, "trainer.seed": 1}))
    callback.on_trial_start(0, [], Trial("a_00001", {"symmetrizer.method": "ga", "symmetrizer.noise_scale": UNUSED,
                                                      "symmetrizer.train_samples": 8, "trainer.seed": 1}))
    callback.on_experiment_end([])
    ps, ga = inits
    assert (ps["name"], ps["group"], ps["job_type"], ps["id"]) == ("ps η=0.1 N=8 seed=1", "quick", "ps η=0.1 N=8",
                                                                   "a_00000")
    assert (ga["name"], ga["job_type"]) == ("ga N=8 seed=1", "ga N=8")  # GA does not read η: not in its name
    config = ps["config"]
    assert config["task"] == {"name": "nbody", "train_size": 40}  # the whole config, not only the swept keys
    assert config["symmetrizer"] == {"method": "ps", "noise_scale": 0.1, "train_samples": 8}
    assert config["trainer"] == {"epochs": 2, "seed": 1, "lr": 0.001}
    assert config["swept"] == {"symmetrizer.method": "ps", "symmetrizer.noise_scale": 0.1,
                               "symmetrizer.train_samples": 8, "trainer.seed": 1}
    assert config["symsweep"] == {"version": symsweep_version(), "experiment": "quick", "trial_id": "a_00000",
                                  "configuration": "ps η=0.1 N=8"}
    assert ga["config"]["symmetrizer"]["noise_scale"] == UNUSED  # as the tables show it
    assert BASE["trainer"]["seed"] == 0  # the base config is not changed


def test_a_long_configuration_fits_wandbs_job_type(inits, tmp_path):
    callback = WandbRuns({"group": "x"}, base=BASE)
    options = callback.run_options("t", {f"model.key{index}": "value" * 3 for index in range(10)})
    assert len(options["job_type"]) == 64 and options["name"].startswith("key0=valuevaluevalue key1=")


def test_without_swept_keys_a_run_is_named_by_its_trial(inits, tmp_path):
    options = WandbRuns({"group": "x"}, base=BASE).run_options("abc_00000", {})
    assert options["name"] == "abc_00000" and options["job_type"] == "default"


# -- an offline sweep's files ------------------------------------------------------------------------------------
def wandb_records(file: Path):
    """The records of a W&B run file (``run-<id>.wandb``): W&B's log format, a 7-byte header (":W&B", 0xBEE1,
    version 0) then blocks of 32 KiB holding records (checksum, length, type: full, first, middle, last), each a
    ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    data = file.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0), file
    block, position, pending = 32768, 7, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:  # padding to the end of the block
            position += left
            continue
        chunk, position = data[position + 7:position + 7 + length], position + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def run_record(file: Path):
    run = next(record.run for record in wandb_records(file) if record.WhichOneof("record_type") == "run")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    return run, config


@pytest.mark.slow
def test_an_offline_sweep_writes_named_grouped_runs_with_the_whole_config(tmp_path):
    from tests.orchestrator.sweeps import TINY

    env = {**os.environ, "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "launch", f"storage={tmp_path}", "name=named",
                           *TINY, "trainer.epochs=1", "symmetrizer.method=ps,ga", "sweep.seeds=2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted((tmp_path / "named" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 4, "one offline run per trial"
    runs = [run_record(file) for file in files]
    assert sorted(run.display_name for run, _ in runs) == ["ga seed=0", "ga seed=1", "ps seed=0", "ps seed=1"]
    for run, config in runs:
        method = run.display_name.split()[0]
        assert run.run_group == "named" and run.job_type == method  # a configuration's seeds together
        assert config["symmetrizer"]["method"] == method and config["task"]["name"] == "nbody"
        assert config["task"]["train_size"] == 40 and config["trainer"]["epochs"] == 1  # not swept, still there
        assert config["trainer"]["seed"] == int(run.display_name[-1])
        assert config["symsweep"]["version"] == symsweep_version() and config["symsweep"]["experiment"] == "named"
    listed = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", str(tmp_path / "named" / "wandb")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert "Would sync 4 run(s)" in listed.stdout + listed.stderr, listed.stdout + listed.stderr  # README, W&B
