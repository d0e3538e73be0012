"""A sweep over PS and GA at two noise scales runs GA once (GA does not read the noise scale): the
launch says so, the summary shows GA's noise scale as "—", and the derived GA/PS ratio still pairs
GA with PS at each noise scale."""

from __future__ import annotations

import csv

import pytest

from tests.orchestrator.test_sweep_e2e import TINY, symsweep

pytestmark = pytest.mark.slow

RATIO = ("sweep.derived=[{name: ga_over_ps, metric: best_val_mse, key: symmetrizer.method, numerator: ga, "
         "denominator: ps}]")


def test_configurations_differing_only_in_unused_keys_run_once(tmp_path):
    done = symsweep("launch", f"storage={tmp_path}", "name=collapsed", *TINY, "trainer.epochs=1",
                    "symmetrizer.method=ps,ga", "symmetrizer.noise_scale=0.1,1.0", RATIO, "logging.progress=false",
                    "logging.wandb.enabled=false")
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
