"""``symsweep equivariance``: how equivariant is the configured model, and its bare base model?

Builds the model of the composed config (freshly initialised from ``trainer.seed``, or the weights
of a trial checkpoint), takes a batch of the task's data and measures E (PS paper eq. 12: error of
the mean over M group samples) and E' (eq. 13: mean per-sample error) for the symmetrized model in
evaluation mode and for its base model f_θ alone. E and E' draw fresh noise for every call, so
for a sampled symmetrization (PS, GA, FA) they measure the Monte-Carlo spread of the N-sample
estimate. ``--exact`` adds the coupled gap (the noise transformed together with the input, float64):
round-off for an exactly equivariant symmetrization, the real error of the base model.
``--cfg job`` prints the configuration it would measure (YAML: the composed one, or the checkpoint's) and exits.
"""

from __future__ import annotations

import argparse
import json

from orchestrator.hydra_options import add_hydra_options


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("equivariance", help="measure E and E' of a model and of its base model",
                                   description=__doc__)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (as for launch)")
    parser.add_argument("--checkpoint", help="a trial checkpoint (directory or state.pt); its config is used")
    parser.add_argument("--samples", type=int, default=20, help="group samples M per input (default 20)")
    parser.add_argument("--batch", type=int, default=16, help="examples of the evaluation split (default 16)")
    parser.add_argument("--exact", action="store_true",
                        help="also the coupled gap in float64 (exact_gap, exact_gap_base): round-off when exact")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_hydra_options(parser, sweeps=False)
    parser.add_argument("--allow-code", action="store_true", help="with --checkpoint: build a model whose config "
                        "names code of its own (model.target, ...): only for checkpoints you trust")
    parser.set_defaults(func=run)


def measure(config: dict, checkpoint: str | None, samples: int, batch_size: int, exact: bool = False) -> dict:
    import dataclasses

    import torch

    from workers.checkpoints import load_checkpoint
    from workers.evaluation import Evaluation, exact_equivariance_gap
    from workers.reporting import gap_split
    from workers.runtime import build_seeded, step_generator
    from workers.settings import check_config
    from workers.symmetry import Unsymmetrized, equivariance_errors

    trial = check_config(config)
    task, trainer = trial.task, trial.trainer
    model = build_seeded(trial.model, trainer.seed)
    if checkpoint is not None:
        model.load_state_dict(load_checkpoint(checkpoint)["model"])
    model.eval()
    data = task.load()
    split = gap_split(task)
    batch = {key: value[:batch_size] for key, value in data.splits[split].items()}
    inputs = {name: batch[name] for name in task.input_kinds}
    mask = batch.get("mask")
    generator = step_generator(trainer.seed, 11)

    def symmetrized(x, m):
        return model(x, m, generator=generator).output

    def base(x, m):
        out = model.base(x if m is None else {**x, "mask": m})
        if m is not None and task.target_kind in ("node", "point", "vector"):
            out = out * m.view(*m.shape, *([1] * (out.dim() - 2))).to(out.dtype)
        return out

    kinds, kind = task.input_kinds, task.target_kind
    full = equivariance_errors(symmetrized, inputs, model.group, kinds, kind, mask, samples,
                               step_generator(trainer.seed, 12))
    bare = equivariance_errors(base, inputs, model.group, kinds, kind, mask, samples,
                               step_generator(trainer.seed, 12))
    result = {"E": full["E"], "E_prime": full["E_prime"], "E_base": bare["E"], "E_prime_base": bare["E_prime"],
              "group": model.group.name, "method": trial.model.method, "samples": samples,
              "eval_samples": getattr(model, "eval_samples", 1), "task": task.name, "split": split,
              "batch": int(next(iter(inputs.values())).shape[0]), "model": trial.model.model_name,
              "checkpoint": checkpoint, "dtype": str(torch.get_default_dtype()).removeprefix("torch.")}
    if exact:
        evaluation = Evaluation(model, task, data, dataclasses.replace(trainer, equivariance_batch=batch_size),
                                torch.device("cpu"))
        result["exact_gap"] = exact_equivariance_gap(evaluation, batch)
        bare_model = Unsymmetrized(model.base, model.group, task.input_kinds, task.target_kind)
        result["exact_gap_base"] = exact_equivariance_gap(dataclasses.replace(evaluation, model=bare_model), batch)
    return result


def run(args: argparse.Namespace) -> int:
    from orchestrator.hydra_options import config_yaml, hydra_options

    if args.samples < 1 or args.batch < 1:
        raise ValueError(f"--samples={args.samples} / --batch={args.batch} are not allowed; expected integers ≥ 1")
    config_dir = hydra_options(args, "equivariance")
    if args.checkpoint:
        from workers.checkpoints import load_checkpoint

        if args.overrides or config_dir:
            given = " ".join([*args.overrides, *([f"--config-dir {args.config_dir}"] if config_dir else [])])
            raise ValueError(f"--checkpoint fixes the configuration (the trial's own); drop {given}")
        config = load_checkpoint(args.checkpoint)["config"]  # refuses a missing or unreadable file (one line)
        if not isinstance(config, dict):
            raise ValueError(f"checkpoint {args.checkpoint} holds no trial configuration; expected a checkpoint "
                             "written by symsweep")
        if not args.allow_code:
            from workers.targets import refuse_untrusted_code

            refuse_untrusted_code(config, f"checkpoint {args.checkpoint}")
    else:
        from orchestrator.config import compose, trial_config

        config = trial_config(compose(args.overrides, config_dir))
    if args.cfg:  # Hydra's --cfg: the configuration it would measure; nothing built or measured
        print(config_yaml(config, args.package), end="")
        return 0
    result = measure(config, args.checkpoint, args.samples, args.batch, args.exact)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['task']}: {result['method']} over {result['group']} ({result['model']} base), "
          f"{result['batch']} {result['split']} examples, M = {result['samples']} group samples")
    print(f"  symmetrized  E = {result['E']:.3e}   E' = {result['E_prime']:.3e}   (N = {result['eval_samples']})")
    print(f"  base model   E = {result['E_base']:.3e}   E' = {result['E_prime_base']:.3e}")
    print("  E, E': fresh noise per call, so for a sampled method (PS, GA, FA) mostly Monte-Carlo spread"
          + ("" if args.exact else "; --exact measures exactness"))
    if args.exact:
        print(f"  exact (coupled, float64) gap: symmetrized {result['exact_gap']:.3e}   "
              f"base model {result['exact_gap_base']:.3e}   (round-off, ~1e-12, means exactly equivariant)")
    return 0
