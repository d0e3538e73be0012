"""``symsweep evaluate PATH [--eval-samples 1,2,5,10] [--split test] [--repeats R]``: the metric of every
completed trial's best model at several numbers of evaluation samples N, without retraining.

Each trial's latest checkpoint holds the weights of its best validation epoch; they are evaluated with
each N on the chosen splits, ``--repeats`` fresh noise draws per N (mean and spread). The points go to
``<trial>/eval_samples.json`` (added to what the trial reported with ``trainer.eval_samples_curve``),
then ``eval_samples.csv``, ``summary.md`` and ``plots/eval_samples_<metric>.png`` are rewritten.

The trials are evaluated side by side, one Ray task per trial with the trial's resources
(``cluster.cpus_per_trial``, ``cluster.gpus_per_trial``; ``--device cpu`` asks for no GPU) on an embedded local Ray
(``cluster.num_cpus`` of the experiment caps it) or, with ``--address``, on a running cluster (the experiment must
then be on storage its nodes mount); ``--sequential`` evaluates them one after another in this process, without
Ray. Both write the same files: each evaluation runs with the trial's torch threads (``trainer.threads``, else
its CPUs) and its own seeds.

Safe on a folder someone else wrote: a trial is evaluated only in a real directory of the experiment (its
``relative_logdir`` one plain name, no link followed down to the checkpoint), checkpoints load with
``weights_only=True``, nothing is written outside the folder (``orchestrator.folder``), and a checkpoint whose
config names code (``model.target``, ``task.target``, ``group.target``) is refused unless ``--allow-code``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from orchestrator.folder import Folder, one_line
from workers.checks import is_int
from workers.reporting import SELECTION_SPLIT, TRANSFORMED_SPLIT

DEFAULT_COUNTS = [1, 2, 5, 10]
DEFAULT_SPLITS = f"{SELECTION_SPLIT},{TRANSFORMED_SPLIT}"  # the validation and test splits


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate finished trials at several sample counts",
                                   description=__doc__)
    parser.add_argument("path", help="the experiment directory (<storage>/<name>)")
    parser.add_argument("--eval-samples", help="comma-separated counts N (default: the experiment's "
                        "trainer.eval_samples_curve, else 1,2,5,10)")
    parser.add_argument("--split", default=DEFAULT_SPLITS,
                        help=f"comma-separated evaluation splits (default {DEFAULT_SPLITS})")
    parser.add_argument("--repeats", type=int, help="noise draws per count (default: trainer.eval_samples_repeats)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to evaluate")
    parser.add_argument("--allow-code", action="store_true", help="build models whose config names code of its own "
                        "(model.target, task.target, group.target): only for experiments you trust")
    parser.add_argument("--address", help="evaluate on this running Ray cluster (auto or ray://host:10001) instead "
                        "of an embedded local Ray; the experiment must be on storage its nodes mount")
    parser.add_argument("--sequential", action="store_true",
                        help="one trial after another in this process, without Ray (the same files)")
    parser.set_defaults(func=run)


def parse_counts(text: str) -> list[int]:
    """``"1,2,5"`` -> [1, 2, 5]; a ValueError naming ``--eval-samples`` for anything else."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"--eval-samples={text!r} is not allowed; expected comma-separated integers ≥ 1, "
                         "e.g. 1,2,5,10")
    return sorted(set(counts))


def latest_trial_checkpoint(folder: Folder, trial: str) -> Path | None:
    """The checkpoint of the latest epoch of trial directory ``trial``, in it or below it (sharded trials), found
    without following links: a complete one (its ``meta.json`` names its epoch, as ``workers.checkpoints``
    writes it) whose ``state.pt`` is a regular file."""
    found = []
    for directory in folder.tree(trial):
        if directory.rsplit("/", 1)[-1].startswith("checkpoint_"):
            meta = folder.read_json(f"{directory}/meta.json", strict=False)
            epoch = meta.get("epoch") if isinstance(meta, dict) else None
            if is_int(epoch) and folder.kind(f"{directory}/state.pt") == "file":
                found.append((epoch, directory))
    return folder.path / max(found)[1] if found else None


def write_points(folder: Folder, trial: str, curve: dict) -> None:
    """Merge ``curve`` into ``<trial>/eval_samples.json`` (replaced whole, never written through a link)."""
    from orchestrator.records import EVALUATED_FILE

    file = f"{trial}/{EVALUATED_FILE}"
    merged = folder.read_json(file, strict=False)
    merged = merged if isinstance(merged, dict) else {}
    for metric, points in curve.items():
        merged[metric] = {**(merged[metric] if isinstance(merged.get(metric), dict) else {}), **points}
    folder.write_text(file, json.dumps(merged, indent=1, sort_keys=True))


def evaluate_trial(checkpoint: str, counts: Sequence[int], repeats: int, splits: Sequence[str], device: str,
                   cpus: float) -> dict:
    """One trial's best model at each count: the work of one Ray task (or of this process with ``--sequential``).
    Torch runs on the trial's threads (``trainer.threads``, else its CPUs), as the trial did, so the numbers do not
    depend on where it runs."""
    import torch

    from workers.checkpoints import load_checkpoint
    from workers.resumption import evaluate_checkpoint
    from workers.settings import trainer_settings

    saved = load_checkpoint(checkpoint)
    before = torch.get_num_threads()
    torch.set_num_threads(trainer_settings(saved["config"]).threads or max(1, int(cpus)))
    try:
        return evaluate_checkpoint(saved, counts, repeats, splits, device)
    finally:
        torch.set_num_threads(before)


def _refuse_code(checkpoint: Path, trial_id: str) -> None:
    """A checkpoint whose config names code of its own (``model.target``, ...) is refused without ``--allow-code``."""
    from workers.checkpoints import load_checkpoint
    from workers.targets import refuse_untrusted_code

    refuse_untrusted_code(load_checkpoint(checkpoint).get("config"), f"trial {trial_id}'s checkpoint")


def _check_splits(config: Mapping[str, Any], splits: list[str]) -> None:
    """Refuse a split the experiment's task does not evaluate, before anything starts."""
    from orchestrator.aggregate import task_of

    task = task_of(config)
    missing = [split for split in splits if task is not None and split not in task.evaluation_splits]
    if missing:
        raise ValueError(f"--split={missing[0]} is not an evaluation split of task {task.name!r}; allowed: "
                         f"{', '.join(task.evaluation_splits)}")


def _failure(err: BaseException) -> str:
    """A task's exception in one line: the trial's own exception, not Ray's wrapper and traceback."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0][:200] if text else ''}"


def _sequential(jobs: list[tuple[Any, str, str]], work: dict[str, Any], cpus: float):
    """(trial, directory, curve or exception) for each job, one after another in this process."""
    for trial, directory, checkpoint in jobs:
        try:
            yield trial, directory, evaluate_trial(checkpoint, cpus=cpus, **work)
        except Exception as err:  # noqa: BLE001 - one trial's failure is reported, the others go on
            yield trial, directory, err


def _on_ray(jobs: list[tuple[Any, str, str]], work: dict[str, Any], cluster, device: str):
    """(trial, directory, curve or exception) for each job as its Ray task ends: one task per trial, with the
    trial's resources, side by side on the embedded (or attached) Ray."""
    import ray

    from orchestrator.ray_cluster import _capacity, start_ray
    from orchestrator.session import Session

    gpus = 0.0 if device == "cpu" else float(cluster.gpus_per_trial)
    worker = {"cpus": float(cluster.cpus_per_trial), "gpus": gpus}
    with Session(embedded=cluster.address is None) as session:
        started = start_ray(cluster)
        session.started(started)
        try:
            at_once = sum(_capacity(node["Resources"], worker) for node in ray.nodes() if node.get("Alive"))
            if not at_once:
                raise ValueError(f"cluster.cpus_per_trial={worker['cpus']:g} with cluster.gpus_per_trial={gpus:g} (the "
                                 "experiment's) cannot be satisfied by any node of this Ray; allowed: what one node "
                                 "holds (--device cpu asks for no GPU; --address attaches to a larger cluster)")
            print(f"symsweep evaluate: one Ray task per trial ({worker['cpus']:g} CPU(s), {gpus:g} GPU(s) each), "
                  f"{min(at_once, len(jobs))} at once", flush=True)
            task = ray.remote(evaluate_trial)
            pending = {task.options(num_cpus=worker["cpus"], num_gpus=gpus).remote(checkpoint, cpus=worker["cpus"],
                                                                                  **work): (trial, directory)
                       for trial, directory, checkpoint in jobs}
            while pending:
                [ready], _ = ray.wait(list(pending), num_returns=1)
                trial, directory = pending.pop(ready)
                try:
                    yield trial, directory, ray.get(ready)
                except Exception as err:  # noqa: BLE001 - the trial's failure, reported by the caller
                    yield trial, directory, err
        finally:
            if started:
                ray.shutdown()


def run(args: argparse.Namespace) -> int:
    from orchestrator import aggregate
    from orchestrator.records import open_experiment, read_trials
    from orchestrator.results import load_experiment, write_report
    from orchestrator.samples import samples_markdown
    from workers.schema import ClusterSettings, load
    from workers.settings import trainer_settings

    folder, config = open_experiment(args.path)
    path = folder.path
    trainer = trainer_settings(config)
    counts = parse_counts(args.eval_samples) if args.eval_samples else (trainer.eval_samples_curve or DEFAULT_COUNTS)
    repeats = args.repeats if args.repeats is not None else trainer.eval_samples_repeats
    if repeats < 1:
        raise ValueError(f"--repeats={repeats} is not allowed; expected an integer ≥ 1")
    splits = [split.strip() for split in args.split.split(",") if split.strip()]
    if not splits:
        raise ValueError(f"--split={args.split!r} is not allowed; expected evaluation splits, e.g. test or val,test")
    _check_splits(config, splits)
    cluster = load(ClusterSettings, {**(config.get("cluster") or {}), "address": args.address}, "cluster")
    trials = [trial for trial in read_trials(folder, config) if trial.state == "completed"]
    if not trials:
        print(f"symsweep evaluate: {path} has no completed trial yet; nothing evaluated")
        return 1
    print(f"symsweep evaluate: {len(trials)} completed trial(s), N = {', '.join(map(str, counts))}, "
          f"{repeats} draw(s) each, splits {', '.join(splits)}", flush=True)
    skipped, jobs = 0, []
    for trial in trials:
        directory = folder.trial_directory(trial.dirname)
        checkpoint = latest_trial_checkpoint(folder, directory) if directory else None
        if checkpoint is None:
            print(one_line(f"  {trial.trial_id}: no checkpoint " + ("on disk" if directory else "in a trial directory "
                           "of the experiment") + "; skipped"))
            skipped += 1
        else:
            if not args.allow_code:  # decided here, before any evaluation starts: building the model runs its code
                _refuse_code(checkpoint, trial.trial_id)
            jobs.append((trial, directory, str(checkpoint)))
    work = {"counts": counts, "repeats": repeats, "splits": splits, "device": args.device}
    start = time.monotonic()
    results = (_sequential(jobs, work, cluster.cpus_per_trial) if args.sequential or not jobs
               else _on_ray(jobs, work, cluster, args.device))
    for done, (trial, directory, curve) in enumerate(results, 1):
        label = ", ".join(f"{key}={aggregate.text(value)}" for key, value in trial.params.items())
        clock = f"[{done}/{len(jobs)} {time.monotonic() - start:.0f} s]"
        if isinstance(curve, BaseException):
            print(one_line(f"  {clock} {trial.trial_id} ({label}): failed ({_failure(curve)}); skipped"), flush=True)
            skipped += 1
            continue
        write_points(folder, directory, curve)
        shown = "; ".join(f"{metric}: " + ", ".join(f"N={n} {point['mean']:.4g}" for n, point in points.items())
                          for metric, points in curve.items())
        print(one_line(f"  {clock} {trial.trial_id} ({label}): {shown}"), flush=True)
    experiment = load_experiment(folder)
    write_report(experiment)
    folder.warn_skipped("evaluate")
    print()
    print(samples_markdown(experiment.points, experiment.result))
    print(f"wrote eval_samples.csv, summary.md and plots/eval_samples_*.png in {path}")
    return 1 if skipped else 0
