"""``symsweep evaluate PATH [--eval-samples 1,2,5,10] [--split test] [--repeats R]``: the metric of every
completed trial's best model at several numbers of evaluation samples N, without retraining.

Each trial's latest checkpoint holds the weights of its best validation epoch; they are evaluated with
each N on the chosen splits, ``--repeats`` fresh noise draws per N (mean and spread). The points go to
``<trial>/eval_samples.json`` (added to what the trial reported with ``trainer.eval_samples_curve``),
then ``eval_samples.csv``, ``summary.md`` and ``plots/eval_samples_<metric>.png`` are rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

DEFAULT_COUNTS = [1, 2, 5, 10]


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate finished trials at several sample counts",
                                   description=__doc__)
    parser.add_argument("path", help="the experiment directory (<storage>/<name>)")
    parser.add_argument("--eval-samples", help="comma-separated counts N (default: the experiment's "
                        "trainer.eval_samples_curve, else 1,2,5,10)")
    parser.add_argument("--split", default="val,test", help="comma-separated evaluation splits (default val,test)")
    parser.add_argument("--repeats", type=int, help="noise draws per count (default: trainer.eval_samples_repeats)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to evaluate")
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


def latest_trial_checkpoint(trial_dir: Path) -> Path | None:
    """The trial's checkpoint of the latest epoch, in the trial directory or below it (sharded trials)."""
    from workers.train import latest_checkpoint

    found = [latest_checkpoint(directory) for directory in
             [trial_dir, *sorted({meta.parent.parent for meta in trial_dir.glob("*/**/checkpoint_*/meta.json")})]]
    found = [(json.loads((c / "meta.json").read_text())["epoch"], str(c)) for c in found if c is not None]
    return Path(max(found)[1]) if found else None


def write_points(trial_dir: Path, curve: dict) -> None:
    """Merge ``curve`` into ``<trial>/eval_samples.json`` (atomically)."""
    from orchestrator.records import EVALUATED_FILE

    file = trial_dir / EVALUATED_FILE
    try:
        merged = json.loads(file.read_text())
    except (OSError, ValueError):
        merged = {}
    for metric, points in curve.items():
        merged.setdefault(metric, {}).update(points)
    temporary = trial_dir / f".{EVALUATED_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(merged, indent=1, sort_keys=True))
    os.replace(temporary, file)


def run(args: argparse.Namespace) -> int:
    from orchestrator import aggregate
    from orchestrator.derived import samples_markdown
    from orchestrator.records import open_experiment, read_trials
    from orchestrator.results import load_experiment, write_report
    from workers.settings import trainer_settings

    path, config = open_experiment(Path(args.path).expanduser().resolve())
    trainer = trainer_settings(config)
    counts = parse_counts(args.eval_samples) if args.eval_samples else (trainer.eval_samples_curve or DEFAULT_COUNTS)
    repeats = args.repeats if args.repeats is not None else trainer.eval_samples_repeats
    if repeats < 1:
        raise ValueError(f"--repeats={repeats} is not allowed; expected an integer ≥ 1")
    splits = [split.strip() for split in args.split.split(",") if split.strip()]
    if not splits:
        raise ValueError(f"--split={args.split!r} is not allowed; expected evaluation splits, e.g. test or val,test")
    trials = [trial for trial in read_trials(path, config) if trial.state == "completed"]
    if not trials:
        print(f"symsweep evaluate: {path} has no completed trial yet; nothing evaluated")
        return 1
    from workers.train import evaluate_checkpoint, load_checkpoint

    print(f"symsweep evaluate: {len(trials)} completed trial(s), N = {', '.join(map(str, counts))}, "
          f"{repeats} draw(s) each, splits {', '.join(splits)}", flush=True)
    skipped = 0
    for trial in trials:
        checkpoint = latest_trial_checkpoint(path / trial.dirname)
        label = ", ".join(f"{key}={aggregate.text(value)}" for key, value in trial.params.items())
        if checkpoint is None:
            print(f"  {trial.trial_id}: no checkpoint on disk; skipped")
            skipped += 1
            continue
        curve = evaluate_checkpoint(load_checkpoint(checkpoint), counts, repeats, splits, args.device)
        write_points(path / trial.dirname, curve)
        shown = "; ".join(f"{metric}: " + ", ".join(f"N={n} {point['mean']:.4g}" for n, point in points.items())
                          for metric, points in curve.items())
        print(f"  {trial.trial_id} ({label}): {shown}", flush=True)
    experiment = load_experiment(path)
    write_report(experiment)
    print()
    print(samples_markdown(experiment.points, experiment.result))
    print(f"wrote eval_samples.csv, summary.md and plots/eval_samples_*.png in {path}")
    return 1 if skipped else 0
