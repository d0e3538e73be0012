"""Symmetrization overhead: a training step of a symmetrized model against the step of its bare base
model on the same expanded batch of B·N rows (the floor: N forward/backward passes of f_θ).

    python benchmarks/symmetrization_overhead.py [--cases exp_classify nbody] [--methods ps ga fa canonical]
                                                 [--quick] [--repeats R] [--steps S] [--json]

Cases (the PS paper's models, built through the real factory ``workers.models.factory.build_model``):

- ``exp_classify``: the paper's MLP 4160→2048→4096→2048→1 (ReLU), S_n, N = 10, B = 100 (1,000 rows of
  64-node graphs), PS with the torch-geometric GIN interface (3 × 64), τ = 0.01, 20 Sinkhorn iterations;
- ``nbody``: the PS paper transformer (8 layers, width 64, 4 heads, 25 pair tokens), S_n × E(3),
  N = 20, B = 100 (2,000 rows of 5 particles), PS with the Vector Neurons interface.

A step is exactly the training loop's: the method's objective (``workers.objectives``: noise from the step's
generator, symmetrized forward, task loss + entropy penalty) → ``zero_grad`` → ``backward`` →
``optimizer.step`` (Adam). The reference ``base`` is method ``none`` (the same base model) on the
batch repeated N times (``repeat_interleave``, B·N rows). Canonicalization uses one sample, so it is
compared with the base model on B rows (``base@B``).

Breakdown, as fractions of the reference step (median time of each piece alone, forward +
backward on the same inputs, / median reference step): ``interface`` the interface network q_ω
(PS, canonical; FA: the frame, GA: nothing to learn),
``sinkhorn`` the relaxed argsort P̂ and its entropy penalty, ``apply g`` g⁻¹ on the inputs and g on
the outputs (gathers + straight-through terms), ``∂f/∂x`` the part of the base model's backward
that only the straight-through needs: the gradient with respect to its (permuted) inputs, which
the bare model never computes (f forward + backward with inputs requiring grad, minus without);
``other`` = median ratio − 1 − the pieces (noise, repeats, loss, cache effects, …).
Every ratio is paired: a method's step (and its pieces) is timed between two steps of its
reference and divided by their mean; min/median/max over repeats are reported.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

_bench.setup_environment()

import torch  # noqa: E402

from workers.models.factory import build_model, check  # noqa: E402
from workers.objectives import make_objective  # noqa: E402
from workers.runtime import step_generator  # noqa: E402
from workers.schema import RemulSettings, TrainerSettings  # noqa: E402
from workers.sharding import Shard  # noqa: E402
from workers.symmetry import permutations  # noqa: E402
from workers.symmetry.groups import with_soft  # noqa: E402
from workers.tasks import get_task  # noqa: E402
from workers.train import make_optimizer  # noqa: E402

TRAINER = TrainerSettings()  # adam, lr 1e-3, no weight decay
REMUL = RemulSettings()
CASES = {
    "exp_classify": {"task": {}, "group": {"name": "S_n"}, "samples": 10, "batch": 100,
                     "model": {"name": "mlp", "widths": [2048, 4096, 2048], "activation": "relu"}},
    "nbody": {"task": {}, "group": {"name": "S_n x E(d)"}, "samples": 20, "batch": 100,
              "model": {"name": "transformer", "tokens": "pair", "layers": 8, "width": 64, "heads": 4}},
}
METHODS = ("ps", "ga", "fa", "canonical")
QUICK = {"exp_classify": {"batch": 20}, "nbody": {"batch": 20}}  # --quick: B·N/5 rows


def symmetrizer_config(method: str, samples: int) -> dict:
    return {"method": method, "train_samples": samples, "eval_samples": samples, "noise_scale": 1.0,
            "temperature": 0.01, "sinkhorn_iters": 20, "entropy_weight": 0.1, "interface": {"name": "auto"}}


def build(task, case: dict, method: str):
    torch.manual_seed(0)
    config = {"group": case["group"], "symmetrizer": symmetrizer_config(method, case["samples"]),
              "model": dict(case["model"])}
    plan = check(task, config)
    return build_model(plan).train(), plan.symmetrizer


def step_function(model, task, batch: dict, method: str, symmetrizer):
    """One training step exactly as ``workers.train.run`` takes it (without clipping or a schedule)."""
    optimizer = make_optimizer(model, TRAINER)
    objective = make_objective(symmetrizer, REMUL, model, task, Shard())
    counter = itertools.count(1)

    def step() -> None:
        loss, _ = objective(batch, step_generator(0, next(counter)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())

    return step


def dense_reference():
    """A context manager swapping in the S_n post-processing as it was before the optimisations
    of the Sinkhorn relaxation and the straight-through term (the references of
    benchmarks/permutations.py: dense float64 Sinkhorn with autograd through every iteration,
    straight-through ``hard + (P̂x − (P̂x).detach())`` with autograd). Same model, same values."""
    import contextlib
    import importlib

    from workers.symmetry import groups

    reference = importlib.import_module("permutations")  # benchmarks/permutations.py

    def sinkhorn(scores, mask, temperature, iterations=20):
        mask = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask
        return reference.dense_sinkhorn(scores, mask, temperature, iterations)

    def permute(x, g, pair):
        perm = g.perm.to(x.device)
        if g.soft is None or not x.is_floating_point() or not torch.is_grad_enabled() or not g.soft.requires_grad:
            return groups.permute_nodes(x, perm, pair)
        return reference.autograd_straight_through(x, g.soft.to(x.dtype), perm, pair)

    @contextlib.contextmanager
    def swapped():
        saved = permutations.sinkhorn_permutation, groups.permute
        permutations.sinkhorn_permutation, groups.permute = sinkhorn, permute
        try:
            yield
        finally:
            permutations.sinkhorn_permutation, groups.permute = saved

    return swapped


_WEIGHTS: dict = {}


def _weighted_sum(tensors) -> torch.Tensor:
    """A scalar whose gradient with respect to each tensor is a fixed random tensor (drawn once,
    outside the timed calls after the warm-up)."""
    total = 0
    for tensor in tensors:
        if tensor is not None and tensor.requires_grad:
            key = (tuple(tensor.shape), tensor.dtype)
            if key not in _WEIGHTS:
                _WEIGHTS[key] = torch.randn(tensor.shape, generator=torch.Generator().manual_seed(len(_WEIGHTS)),
                                            dtype=tensor.dtype)
            total = total + (tensor * _WEIGHTS[key]).sum()
    return total


def piece_functions(model, task, batch: dict, samples: int) -> dict:
    """Forward + backward of each piece of the symmetrized step alone (see the module docstring)."""
    group, distribution = model.group, model.distribution
    inputs = {name: batch[name] for name in task.input_kinds}
    mask = batch.get("mask")
    noise = model.draw_noise(inputs, mask, samples, step_generator(0, 99))
    centred = model.centred(inputs, mask, model.centroid(inputs, mask))
    rows = {k: v.repeat_interleave(samples, 0) for k, v in centred.items()}
    rmask = None if mask is None else mask.repeat_interleave(samples, 0)
    interface = getattr(distribution, "interface", None)
    with torch.no_grad():
        element, _ = distribution.eval()(rows, noise, rmask, repeats=samples)  # hard element, no soft part
        distribution.train()
        inverse = group.inverse(element)
        moved = {k: group.act(inverse, v, model.input_kinds[k], rmask) for k, v in rows.items()}
        if rmask is not None:
            moved["mask"] = group.act(inverse, rmask, "node")
        raw = model.base(moved)  # (B·N, ...) what the base model hands to ``act``
    pieces = {}
    if interface is not None:
        def q():
            _weighted_sum(interface(rows, noise, rmask).values()).backward()
    else:
        def q():
            with torch.no_grad():
                distribution(rows, noise, rmask, repeats=samples)
    pieces["interface"] = q
    scores = None
    if interface is not None and group.permutations:
        with torch.no_grad():
            scores = interface(rows, noise, rmask)["scores"]

        def sinkhorn():
            leaf = scores.detach().requires_grad_()
            soft = permutations.sinkhorn_permutation(leaf, rmask, distribution.temperature, distribution.sinkhorn_iters)
            penalty = permutations.permutation_entropy_penalty(soft, rmask)
            (_weighted_sum([soft]) + 0.1 * penalty).backward()

        pieces["sinkhorn"] = sinkhorn
        with torch.no_grad():
            soft_value = permutations.sinkhorn_permutation(scores, rmask, distribution.temperature,
                                                           distribution.sinkhorn_iters)

    def apply_g():
        g = element if scores is None else with_soft(element, soft_value.detach().requires_grad_())
        inverse = group.inverse(g)
        moved = [group.act(inverse, v, model.input_kinds[k], rmask) for k, v in rows.items()]
        if rmask is not None:
            group.act(inverse, rmask, "node")
        out = group.act(g, raw.detach().requires_grad_(), model.output_kind, None)
        _weighted_sum(moved + [out]).backward()

    pieces["apply g"] = apply_g
    if scores is not None:  # the straight-through term needs ∂L/∂(g⁻¹·x): f's gradient with respect to its inputs
        weight = torch.randn(raw.shape, generator=torch.Generator().manual_seed(7))

        def base_pass(input_grad: bool):
            def run():
                leaves = {k: (v.detach().requires_grad_() if input_grad and v.is_floating_point() else v)
                          for k, v in moved.items()}
                (model.base(leaves) * weight).sum().backward()
            return run

        pieces["f"] = base_pass(False)
        pieces["f+∂x"] = base_pass(True)
    return pieces


PIECES = ("interface", "sinkhorn", "apply g", "∂f/∂x")


def run_case(name: str, case: dict, methods, repeats: int, steps: int, breakdown: bool, dense: bool) -> dict:
    """Each repeat visits the methods in a rotated order; every method (then its pieces) is timed
    between two steps of its reference, and its ratios use the mean of those two (paired ratios:
    a slowdown of the shared machine that lasts a few seconds hits both sides)."""
    task = get_task(name, **case["task"])
    data = task.load().splits["train"]
    samples, size = case["samples"], case["batch"]
    batch = {k: v[:size].clone() for k, v in data.items()}
    expanded = {k: v.repeat_interleave(samples, 0) for k, v in batch.items()}  # (B·N, ...)
    base, base_config = build(task, case, "none")
    references = {"base": step_function(base, task, expanded, "none", base_config)}
    if "canonical" in methods:
        references["base@B"] = step_function(base, task, batch, "none", base_config)
    units, models = {}, {}
    for method in methods:
        model, symmetrizer = build(task, case, method)
        models[method] = model
        units[method] = {method: step_function(model, task, batch, method, symmetrizer)}
        if dense and method in ("ps", "canonical"):
            swapped, step = dense_reference(), step_function(model, task, batch, method, symmetrizer)

            def before(step=step, swapped=swapped):
                with swapped():
                    step()

            units[method][f"{method}@dense"] = before
        if breakdown:
            for piece, function in piece_functions(model, task, batch, model.train_samples).items():
                units[method][f"{method}:{piece}"] = function
    _bench.log(f"[{name}] warm-up")
    for function in [*references.values(), *(f for unit in units.values() for f in unit.values())]:
        function()
    times = {key: [] for key in [*references, *(k for unit in units.values() for k in unit)]}
    ratio = {key: [] for unit in units.values() for key in unit}
    for repeat in range(repeats):
        last = {key: _bench.clock(function, steps) for key, function in references.items()}
        for key, value in last.items():
            times[key].append(value)
        order = list(methods)[repeat % len(methods):] + list(methods)[:repeat % len(methods)]
        for method in order:
            reference = "base@B" if method == "canonical" else "base"
            measured = {key: _bench.clock(function, steps if ":" not in key else 1)
                        for key, function in units[method].items()}
            after = _bench.clock(references[reference], steps)
            times[reference].append(after)
            bracket = 0.5 * (last[reference] + after)
            last[reference] = after
            for key, value in measured.items():
                times[key].append(value)
                ratio[key].append(value / bracket)
        _bench.log(f"[{name}] repeat {repeat + 1}/{repeats}: " + ", ".join(
            f"{m} {ratio[m][-1]:.2f}" for m in methods) + f" (base {times['base'][-1]:.2f} s)")
    result = {"case": name, "rows": size * samples, "batch": size, "samples": samples,
              "base_parameters": sum(p.numel() for p in base.parameters()),
              "seconds": {k: _bench.stats(v) for k, v in times.items()}, "methods": {}}
    median = {key: _bench.stats(values)["median"] for key, values in times.items()}
    for method in methods:
        reference = median["base@B" if method == "canonical" else "base"]
        if f"{method}:f" in median:  # the input-gradient part of f's backward: (f with ∂x) − f
            median[f"{method}:∂f/∂x"] = median[f"{method}:f+∂x"] - median[f"{method}:f"]
        # pieces: median piece time / median reference time (robust to a slow repeat); other: the rest
        parts = {piece: median[f"{method}:{piece}"] / reference for piece in PIECES if f"{method}:{piece}" in median}
        if parts:
            parts["other"] = _bench.stats(ratio[method])["median"] - 1 - sum(parts.values())
        result["methods"][method] = {"reference": "base@B" if method == "canonical" else "base",
                                     "ratio": _bench.stats(ratio[method]), "breakdown": parts,
                                     "step_s": _bench.stats(times[method]),
                                     "interface_parameters": sum(p.numel() for p in models[method].parameters())
                                     - result["base_parameters"]}
        if f"{method}@dense" in ratio:
            result["methods"][f"{method}@dense"] = {
                "reference": result["methods"][method]["reference"], "ratio": _bench.stats(ratio[f"{method}@dense"]),
                "breakdown": {}, "step_s": _bench.stats(times[f"{method}@dense"]),
                "speedup": _bench.stats(a / b for a, b in zip(times[f"{method}@dense"], times[method]))}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = _bench.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--steps", type=int, default=None, help="training steps per timed call (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, what a trial gets with cluster.cpus_per_trial=1)")
    parser.add_argument("--no-breakdown", action="store_true", help="time only the whole steps")
    parser.add_argument("--dense-reference", action="store_true",
                        help="also time PS and canonicalization with the previous dense Sinkhorn and autograd "
                             "straight-through (rows method@dense), in the same run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 5)
    steps = args.steps or 1
    info = _bench.machine()
    results = []
    for name in args.cases:
        case = {**CASES[name], **(QUICK[name] if args.quick else {})}
        results.append(run_case(name, case, args.methods, repeats, steps, not args.no_breakdown, args.dense_reference))
    print(_bench.describe(info))
    print(f"repeats {repeats}, {steps} step(s) per timed call; ratio = step / base step on the same rows, "
          "paired (median [min–max] over repeats); goal ≤ 1.15\n")
    for result in results:
        base = result["seconds"]["base"]
        print(f"### {result['case']}: B = {result['batch']}, N = {result['samples']} "
              f"({result['rows']} rows), base model {result['base_parameters']:,} parameters, "
              f"base step {_bench.triple(base, 3)} s\n")
        rows = []
        for method, row in result["methods"].items():
            parts = row["breakdown"]
            rows.append([method, row["reference"], _bench.triple(row["ratio"]), _bench.triple(row["step_s"], 3),
                         *(f"{parts[p]:.2f}" if p in parts else "-" for p in (*PIECES, "other"))])
        print(_bench.table(["method", "vs", "step / base", "step s", *PIECES, "other"], rows))
        for method, row in result["methods"].items():
            if "speedup" in row:
                print(f"\n{method}: step of the dense reference / step of the product = "
                      f"{_bench.triple(row['speedup'])}")
        print()
    if args.json:
        _bench.emit_json({"benchmark": "symmetrization_overhead", "machine": info, "repeats": repeats,
                          "steps": steps, "quick": args.quick, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
