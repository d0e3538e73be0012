"""``symsweep train``: one trial in this process, without Ray Tune (for debugging).

A preset's sweep is ignored: swept keys keep their base values (set them with key=value).

The same loop as a sweep's trials (``workers.train.run``), the same metrics and checkpoints:
``<workdir>/progress.jsonl`` (one line per report), ``<workdir>/checkpoint_NNNNNN/state.pt`` and
``<workdir>/result.json`` (the last report). ``--resume`` continues from a checkpoint.

Exit status 0 when training finished; 1 when it ran and failed (a non-finite loss: one line naming the
epoch and the last good checkpoint, which is kept); 2 when refused before anything was written.
``--cfg job`` prints the trial's composed config (YAML; what ``config.json`` gets) and exits; ``--config-dir DIR``
adds config groups and presets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from orchestrator.hydra_options import add_hydra_options


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train one configuration in-process (no Tune)",
                                   description=__doc__)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (as for launch; no sweeps)")
    parser.add_argument("--workdir", help="where checkpoints and logs go (default <storage>/train-<time>)")
    parser.add_argument("--resume", help="a checkpoint directory (or state.pt) to continue from")
    parser.add_argument("--json", action="store_true", help="print each report as one JSON line")
    add_hydra_options(parser, sweeps=False)
    parser.set_defaults(func=run)


def shown_metrics(task) -> set[str]:
    """What a progress line shows of ``task``'s reports (``workers.reporting``): the training loss, every
    evaluation metric, the best validation metrics, entropy, the equivariance errors, the sample count of a
    re-evaluation."""
    from workers import reporting

    selection = [reporting.best(reporting.split_metric(reporting.SELECTION_SPLIT, metric))
                 for metric in reporting.task_metrics(task)]
    return {reporting.TRAIN_LOSS, *reporting.evaluation_metrics(task), *selection, reporting.ENTROPY,
            reporting.EXACT_GAP, reporting.MC_ERROR, reporting.EVAL_SAMPLES}


def _line(metrics: dict, shown: set[str]) -> str:
    from workers.reporting import EPOCH

    parts = [f"epoch {metrics.get(EPOCH, 0)}"]
    for key, value in metrics.items():
        if key in shown and not isinstance(value, dict):
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)


def make_workdir(workdir: Path) -> None:
    """Create ``workdir`` (or accept an existing directory); anything else is a one-line error."""
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"--workdir {workdir} is a file; expected a directory (new or existing)")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--workdir {workdir} cannot be created ({err.strerror or err}); expected a writable "
                         "directory path") from None


def run(args: argparse.Namespace) -> int:
    from orchestrator.config import compose, parse_command_line, trial_config
    from orchestrator.hydra_options import config_yaml, hydra_options

    config_dir = hydra_options(args, "train")
    swept = parse_command_line(args.overrides).sweeps
    if swept:
        key = next(iter(swept))
        raise ValueError(f"{key}={swept[key]}: symsweep train runs one configuration; allowed: one value "
                         f"({key}=<value>); sweep it with symsweep launch")
    config = compose(args.overrides, config_dir)
    if args.cfg:  # Hydra's --cfg: the trial's config (what config.json gets), as composed; nothing written
        print(config_yaml(trial_config(config), args.package), end="")
        return 0
    if config["sweep"]["params"]:
        print(f"symsweep train: one configuration; the preset's swept keys {', '.join(config['sweep']['params'])} "
              "keep their base values (set them with key=value)", file=sys.stderr)
    trial = trial_config(config)
    from workers.settings import check_build, check_config

    checked = check_config(trial)  # every error before any directory is written
    if checked.trainer.devices != 1:
        raise ValueError(f"trainer.devices={checked.trainer.devices} needs Ray Train workers; symsweep train runs one "
                         "process (allowed: 1); use symsweep launch to shard group samples")
    check_build(checked.model)
    if checked.trainer.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("trainer.device='cuda' but this machine has no CUDA device; allowed here: auto, cpu")
    if args.resume:
        from workers.checkpoints import load_checkpoint
        from workers.resumption import check_resume

        check_resume(load_checkpoint(args.resume), checked, args.resume)  # refused before anything is written
    workdir = Path(args.workdir or Path(config["storage"]) / time.strftime("train-%Y%m%d-%H%M%S"))
    make_workdir(workdir)
    (workdir / "config.json").write_text(json.dumps(trial, indent=2))
    progress = (workdir / "progress.jsonl").open("a")
    shown = shown_metrics(checked.task)

    def report(metrics: dict, checkpoint) -> None:
        row = {**metrics, "checkpoint": None if checkpoint is None else str(checkpoint)}
        progress.write(json.dumps(row) + "\n")
        progress.flush()
        print(json.dumps(row) if args.json else _line(metrics, shown), flush=True)

    from workers.train import NonFiniteLoss
    from workers.train import run as train_run

    try:
        result = train_run(trial, report, workdir, args.resume)
    except NonFiniteLoss as err:  # training ran and failed: exit 1, the epoch and the checkpoint kept in one line
        print(f"symsweep train: error: {err}", file=sys.stderr)
        return 1
    finally:
        progress.close()
    (workdir / "result.json").write_text(json.dumps(result, indent=2))
    if not args.json:
        print(f"results in {workdir}")
    return 0
