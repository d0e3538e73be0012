"""W&B runs worth opening: named by the trial's swept values, grouped by experiment (``group``) and configuration
(``job_type``: the seeds of a configuration together), carrying the trial's whole composed config and the symsweep
version. Checked here on the calls (a fake ``wandb``); the files a real offline sweep writes are read back with W&B's
own record format in ``tests/orchestrator/test_sweep_e2e.py`` (no network, no account)."""

from __future__ import annotations

import sys
import types

import pytest

from orchestrator.wandb_runs import WandbRuns, safe_wandb, symsweep_version
from workers import UNUSED
from workers.schema import WandbSettings

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
