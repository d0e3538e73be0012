"""``symsweep evaluate PATH [--eval-samples 1,2,5,10] [--split test] [--repeats R]``: the metric of every
completed trial's best model at several numbers of evaluation samples N, without retraining.

Each trial's latest checkpoint holds the weights of its best validation epoch; they are evaluated with
each N on the chosen splits, ``--repeats`` fresh noise draws per N (mean and spread). The points go to
``<trial>/eval_samples.json`` (added to what the trial reported with ``trainer.eval_samples_curve``),
then ``eval_samples.csv``, ``summary.md`` and ``plots/eval_samples_<metric>.png`` are rewritten.

Safe on a folder someone else wrote: a trial is evaluated only in a real directory of the experiment (its
``relative_logdir`` one plain name, no link followed down to the checkpoint), checkpoints load with
``weights_only=True``, nothing is written outside the folder (``orchestrator.folder``), and a checkpoint whose
config names code (``model.target``, ``task.target``, ``group.target``) is refused unless ``--allow-code``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def run(args: argparse.Namespace) -> int:
    from orchestrator import aggregate
    from orchestrator.records import open_experiment, read_trials
    from orchestrator.results import load_experiment, write_report
    from orchestrator.samples import samples_markdown
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
    trials = [trial for trial in read_trials(folder, config) if trial.state == "completed"]
    if not trials:
        print(f"symsweep evaluate: {path} has no completed trial yet; nothing evaluated")
        return 1
    from workers.checkpoints import load_checkpoint
    from workers.resumption import evaluate_checkpoint

    print(f"symsweep evaluate: {len(trials)} completed trial(s), N = {', '.join(map(str, counts))}, "
          f"{repeats} draw(s) each, splits {', '.join(splits)}", flush=True)
    skipped = 0
    for trial in trials:
        directory = folder.trial_directory(trial.dirname)
        checkpoint = latest_trial_checkpoint(folder, directory) if directory else None
        label = ", ".join(f"{key}={aggregate.text(value)}" for key, value in trial.params.items())
        if checkpoint is None:
            print(one_line(f"  {trial.trial_id}: no checkpoint " + ("on disk" if directory else "in a trial directory "
                           "of the experiment") + "; skipped"))
            skipped += 1
            continue
        saved = load_checkpoint(checkpoint)
        if not args.allow_code:
            from workers.targets import refuse_untrusted_code

            refuse_untrusted_code(saved.get("config"), f"trial {trial.trial_id}'s checkpoint")
        curve = evaluate_checkpoint(saved, counts, repeats, splits, args.device)
        write_points(folder, directory, curve)
        shown = "; ".join(f"{metric}: " + ", ".join(f"N={n} {point['mean']:.4g}" for n, point in points.items())
                          for metric, points in curve.items())
        print(one_line(f"  {trial.trial_id} ({label}): {shown}"), flush=True)
    experiment = load_experiment(folder)
    write_report(experiment)
    folder.warn_skipped("evaluate")
    print()
    print(samples_markdown(experiment.points, experiment.result))
    print(f"wrote eval_samples.csv, summary.md and plots/eval_samples_*.png in {path}")
    return 1 if skipped else 0
