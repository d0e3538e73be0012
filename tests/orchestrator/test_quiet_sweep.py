"""What a sweep prints is symsweep's own: no Ray start-up or shutdown chatter at a launch, an interrupted launch or
a resume, and the progress line of a resumed sweep starts from the best result of the run before. A resume of the
finished sweep then says there is nothing to do, and prints nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orchestrator.sweeps import TINY, symsweep

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# what Ray and Ray Tune print by themselves at a start, a restore or an end (symsweep says each in its own words)
CHATTER = ("Token authentication is enabled", "Failed to fetch metrics", "Trials did not complete",
           "Started a local Ray instance", "View the dashboard", "Tuner.restore", "Restarting experiment",
           "Stop signal received", "Traceback")


def assert_quiet(output: str) -> None:
    found = [text for text in CHATTER if text in output]
    assert not found, f"Ray's own lines {found} in:\n{output}"


def test_launch_interrupt_and_resume_print_only_symsweeps_lines(tmp_path):
    path = tmp_path / "quiet"
    launch = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", f"storage={tmp_path}", "name=quiet",
                               *TINY, "trainer.epochs=1", "sweep.seeds=3", "cluster.num_cpus=1"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    try:
        for line in launch.stdout:  # Ctrl-C once the first trial finished: one CPU, so one trial has not started
            lines.append(line)
            if line.startswith("finished "):
                os.kill(launch.pid, signal.SIGINT)
                break
        lines.append(launch.communicate(timeout=300)[0])
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)
            launch.wait(timeout=30)
    output = "".join(lines)
    assert launch.returncode == 130, output
    assert_quiet(output)
    first = next(line for line in lines if line.startswith("finished ")).split(", best_val_mse ")[1].strip()

    resumed = symsweep("resume", str(path))  # a trial that never started has no files yet: Tune would say so
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_quiet(resumed.stdout + resumed.stderr)
    status = [line for line in resumed.stdout.splitlines() if line.startswith("[")]
    assert "lowest best_val_mse" in status[0] and " done · " in status[0]  # the best of before the resume ...
    best = float(status[0].split("lowest best_val_mse ")[1].split()[0])
    assert best <= float(first)  # ... at once, before any trial of this run finished
    assert "3/3 done" in resumed.stdout

    again = symsweep("resume", str(path))
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert again.stdout.startswith("symsweep resume: nothing to do: every planned trial completed (3 of 3)")
