"""A sweep over PS and GA at two noise scales runs GA once (GA does not read the noise scale): the
launch says so, the summary shows GA's noise scale as "—", and the derived GA/PS ratio still pairs
GA with PS at each noise scale. Such a sweep resumes after its driver is killed."""

from __future__ import annotations

import csv
import os
import signal

import pytest

from tests.orchestrator.sweeps import TINY, results, symsweep, trial_dirs, wait_for

pytestmark = pytest.mark.slow

COMPARE = "sweep.compare={key: symmetrizer.method, reference: ga}"
RATIO = ("sweep.derived=[{name: ga_over_ps, metric: best_val_mse, key: symmetrizer.method, numerator: ga, "
         "denominator: ps}]")


def test_configurations_differing_only_in_unused_keys_run_once(tmp_path):
    done = symsweep("launch", f"storage={tmp_path}", "name=collapsed", *TINY, "trainer.epochs=1",
                    "symmetrizer.method=ps,ga", "symmetrizer.noise_scale=0.1,1.0", RATIO, COMPARE,
                    "logging.progress=false", "logging.wandb.enabled=false")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 configurations -> 3 distinct trials (symmetrizer.noise_scale is not used by ga)" in done.stdout
    path = tmp_path / "collapsed"
    with (path / "trials.csv").open() as handle:
        trials = list(csv.DictReader(handle))
    assert sorted((row["symmetrizer.method"], row["symmetrizer.noise_scale"]) for row in trials) == [
        ("ga", "—"), ("ps", "0.1"), ("ps", "1.0")]
    assert all(row["state"] == "completed" for row in trials)
    assert "| ga | — |" in (path / "summary.md").read_text()
    with (path / "derived.csv").open() as handle:
        ratios = list(csv.DictReader(handle))
    assert sorted(row["symmetrizer.noise_scale"] for row in ratios) == ["0.1", "1.0"]
    assert all(float(row["ratio"]) > 0 for row in ratios)
    # the comparison pairs PS at each noise scale with the one GA configuration, in compare.csv and summary.md
    with (path / "compare.csv").open() as handle:
        compared = list(csv.DictReader(handle))
    assert sorted((row["value"], row["symmetrizer.noise_scale"], row["pairs"]) for row in compared) == [
        ("ps", "0.1", "1"), ("ps", "1.0", "1")]
    assert "against ga, paired by seed" in (path / "summary.md").read_text()


def test_a_collapsed_sweep_resumes_after_a_killed_driver(tmp_path):
    """The distinct configurations live in Tune's search state: a resumed driver runs the remaining
    ones (and no configuration twice)."""
    path = tmp_path / "crash"
    launch = symsweep("launch", f"storage={tmp_path}", "name=crash", *TINY, "trainer.epochs=4",
                      "symmetrizer.method=ps,ga", "symmetrizer.noise_scale=0.1,1.0", "sweep.seeds=2",
                      "sweep.max_concurrent=1", "logging.wandb.enabled=false", wait=False)
    try:
        wait_for(lambda: [t for t in trial_dirs(path) if results(t) and results(t)[-1].get("epoch") == 4])
    finally:
        os.killpg(launch.pid, signal.SIGKILL)  # the driver and its embedded Ray die
        launch.communicate(timeout=60)
    resumed = symsweep("resume", str(path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with (path / "trials.csv").open() as handle:
        trials = list(csv.DictReader(handle))
    assert all(row["state"] == "completed" for row in trials)
    assert sorted((row["symmetrizer.method"], row["symmetrizer.noise_scale"], row["trainer.seed"]) for row in trials) \
        == [("ga", "—", "0"), ("ga", "—", "1"), ("ps", "0.1", "0"), ("ps", "0.1", "1"), ("ps", "1.0", "0"),
            ("ps", "1.0", "1")]
