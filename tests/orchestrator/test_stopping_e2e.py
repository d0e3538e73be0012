"""``sweep.compare`` with ``until: resolved`` on the embedded Ray, as a user runs it: a tiny sweep whose
reference (no clipping, ``trainer.grad_clip=1e9``) is compared with a value that changes nothing (1e10: the
differences are exactly 0, never resolved: it goes to ``max_seeds``) and with one that stops learning (1e-9:
resolved when its confidence sequence excludes 0). The searcher adds seeds inside Tune; the driver killed
half-way and resumed continues the same rule and ends with the same trials and numbers."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest

from orchestrator.analyses.sequential import Rule
from orchestrator.session import _stat, descendants
from tests.orchestrator.sweeps import TINY, results, symsweep, trial_dirs, wait_for

pytestmark = pytest.mark.slow
RULE = "+sweep.compare={key: trainer.grad_clip, reference: 1e9, until: resolved, max_seeds: 5}"
SWEEP = [*TINY, "trainer.epochs=2", "trainer.batch_size=10", "trainer.lr=0.03", "trainer.grad_clip=1e9,1e10,1e-9",
         "sweep.seeds=4", RULE, "logging.wandb.enabled=false"]


def rows(path: Path, name: str) -> list[dict]:
    with (path / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


def checked(path: Path) -> dict[tuple[str, int], float]:
    """The rule's promises, read from the experiment's files; returns best_val_mse by (grad_clip, seed)."""
    trials = rows(path, "trials.csv")
    assert {row["state"] for row in trials} == {"completed"}
    mse = {(row["trainer.grad_clip"], int(row["trainer.seed"])): float(row["best_val_mse"]) for row in trials}
    assert len(mse) == len(trials), "a configuration ran a seed twice"
    seeds = {clip: sorted(seed for c, seed in mse if c == clip) for clip, _ in mse}
    assert all(found == list(range(len(found))) for found in seeds.values()), seeds
    reference, same, stops = "1000000000.0", "10000000000.0", "1e-09"
    assert [mse[(same, s)] - mse[(reference, s)] for s in range(5)] == [0.0] * 5  # 1e10 changes nothing
    differences = [mse[(stops, s)] - mse[(reference, s)] for s in seeds[stops]]
    needed = Rule("resolved", 5).seeds_needed(differences, initial=4)
    assert len(seeds[same]) == len(seeds[reference]) == 5 and len(seeds[stops]) == needed
    compared = {row["value"]: row for row in rows(path, "compare.csv")}
    assert compared[same]["verdict"] == "unresolved at max_seeds=5 (95 % confidence sequence)"
    assert compared[same]["seeds_used"] == "5" and compared[stops]["seeds_used"] == str(needed)
    assert compared[stops]["verdict"] == f"{reference} better than {stops} (95 % confidence sequence)"
    print(f"1e-09 against 1e9 resolved at {needed} seeds: differences {differences}")
    return mse


def test_seeds_are_added_until_resolved_and_a_resume_continues_the_same_rule(tmp_path):
    done = symsweep("launch", f"storage={tmp_path}", "name=whole", *SWEEP)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "did not complete" not in done.stdout
    whole = checked(tmp_path / "whole")

    path = tmp_path / "killed"
    launch = symsweep("launch", f"storage={tmp_path}", "name=killed", *SWEEP, "sweep.max_concurrent=1",
                      wait=False)
    ray_processes = {}
    try:
        wait_for(lambda: sum(results(t)[-1:] != [] and results(t)[-1].get("epoch") == 2
                             for t in trial_dirs(path)) >= 7, timeout=240)
        ray_processes = descendants(launch.pid)
    finally:
        os.kill(launch.pid, signal.SIGKILL)  # the driver alone: its session watcher reaps its Ray
        launch.communicate(timeout=60)
    wait_for(lambda: not [pid for pid, start in ray_processes.items() if (stat := _stat(pid)) and stat[1] == start],
             timeout=60)
    assert len(trial_dirs(path)) < 14, "the sweep ended before the kill"
    resumed = symsweep("resume", str(path))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert checked(path) == whole

