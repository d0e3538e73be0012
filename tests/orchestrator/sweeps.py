"""Sweeps run as a user runs them: each ``symsweep`` command in its own process (an embedded local Ray per
launch), and what to read back from the experiment folder. Shared by the end-to-end and fault tests."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import time
from pathlib import Path

# a tiny n-body sweep: two steps per epoch, one torch thread per trial, an embedded Ray of two CPUs
TINY = ["task=nbody", "task.train_size=40", "task.eval_size=20", "group=sn_e", "model.widths=[16]",
        "symmetrizer.train_samples=2", "symmetrizer.eval_samples=2", "symmetrizer.interface.hidden=4",
        "trainer.batch_size=20", "trainer.threads=1", "cluster.num_cpus=2"]


def symsweep(*args: str, wait: bool = True, **kwargs):
    command = [sys.executable, "-m", "orchestrator.cli", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, **kwargs)
    return subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)


def results(trial_dir: Path) -> list[dict]:
    file = trial_dir / "result.json"
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()] if file.exists() else []


def trial_dirs(path: Path) -> list[Path]:
    if not path.exists():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name.startswith("trainable_"))


def wait_for(condition, timeout: float = 300.0, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not reached")


def digest(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` -> its sha256."""
    return {str(file.relative_to(directory)): hashlib.sha256(file.read_bytes()).hexdigest()
            for file in sorted(directory.rglob("*")) if file.is_file()}


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
