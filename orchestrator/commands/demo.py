"""``symsweep demo``: symmetrize a random MLP for every group and method and print how exactly
equivariant it is, next to the bare MLP. A real run of the symmetry library, in seconds.

The groups and methods are a showcase of the built-in ones and every other registered one
(``workers.symmetry.register_group``, ``register_method``, ``SYMSWEEP_PLUGINS``), each method where it applies
to the group; the inputs and the interface are chosen from the group's facts."""

from __future__ import annotations

import argparse
import json
import time

from orchestrator.overrides import parse_overrides

DEFAULTS = {"dim": 3, "nodes": 6, "batch": 8, "samples": 10, "group_samples": 20, "seed": 0}
GROUPS = ["S_n", "O(d)", "SO(d)", "E(d)", "SE(d)", "S_n x O(d)", "S_n x SO(d)", "S_n x E(d)", "S_n x SE(d)",
          "C_4", "D_4", "C_8"]
SHOWN = (*GROUPS[:9], "C_k", "D_k")  # the registered spellings GROUPS stands for
METHODS = ["ps", "ga", "fa", "canonical"]
SHOWN_METHODS = (*METHODS, "ps_fixed_noise")  # the registered methods METHODS stands for


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="measure the equivariance of symmetrized random MLPs",
                                   description=__doc__)
    parser.add_argument("overrides", nargs="*", help=f"key=value; keys: {', '.join(DEFAULTS)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = {**DEFAULTS, **parse_overrides(args.overrides)}
    for key, value in options.items():
        if key not in DEFAULTS:
            raise ValueError(f"{key}={value!r} is not a demo option; allowed: {', '.join(DEFAULTS)}")
        if not isinstance(value, int) or value < (2 if key in ("dim", "nodes") else 0 if key == "seed" else 1):
            raise ValueError(f"{key}={value!r} is not allowed; expected a positive integer")
    import torch  # heavy imports only once the arguments are known

    from workers.symmetry import (
        Group,
        RegularScorer,
        equivariance_errors,
        get_method,
        group_spellings,
        method_names,
        symmetrize,
    )
    from workers.symmetry.testing import FlatMLP, equivariance_gap

    torch.manual_seed(options["seed"])
    gen = torch.Generator().manual_seed(options["seed"])
    rows = []
    if not args.json:
        print(f"{'group':14s} {'method':15s} {'coupled gap':>12s} {'E':>10s} {'E_prime':>10s} "
              f"{'E bare MLP':>11s} {'seconds':>8s}")
    for name in GROUPS + [spelling for spelling in group_spellings() if spelling not in SHOWN]:
        try:
            group = Group.parse(name, dim=options["dim"], order=4)
        except ValueError as error:  # a registered group that needs keys the demo does not have
            print(f"{name:14s} skipped: {error}")
            continue
        inputs, kinds, output_kind, mask = _inputs(group, options, gen)
        shapes = {k: tuple(v.shape[1:]) for k, v in inputs.items()}
        out_shape = tuple(next(iter(inputs.values())).shape[1:]) if output_kind != "invariant" else (4,)
        for method in METHODS + [name for name in method_names() if name not in SHOWN_METHODS]:
            start = time.perf_counter()
            learned = get_method(method).learned
            scorer = learned and group.ps_noise == "regular"
            interface = RegularScorer(group, FlatMLP(shapes, (1,), 64), kinds) if scorer else None
            extra = {"node_channels": {"x": 2}} if learned and group.ps_noise == "node" else {}
            try:
                model = symmetrize(FlatMLP(shapes, out_shape, 64), group, method, kinds, output_kind,
                                   options["samples"], options["samples"], interface=interface, **extra)
                model = model.double().eval()
            except ValueError:  # the method does not apply to this group (FA over C_k)
                continue
            gap = equivariance_gap(model, inputs, mask, gen)
            call = lambda x, m: model(x, m).output  # noqa: E731
            errors = equivariance_errors(call, inputs, group, kinds, output_kind, mask, options["group_samples"], gen)
            base = lambda x, m: model.base({**x, "mask": m} if m is not None else x)  # noqa: E731
            bare = equivariance_errors(base, inputs, group, kinds, output_kind, mask, options["group_samples"], gen)
            row = {"group": group.name, "method": method, "coupled_gap": gap, "E": errors["E"],
                   "E_prime": errors["E_prime"], "E_base": bare["E"], "E_prime_base": bare["E_prime"],
                   "seconds": time.perf_counter() - start}
            rows.append(row)
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{row['group']:14s} {method:15s} {gap:12.2e} {row['E']:10.2e} {row['E_prime']:10.2e} "
                      f"{row['E_base']:11.2e} {row['seconds']:8.2f}")
    if not args.json:
        print("\ncoupled gap: max |φ(h·x; h·ε) − h·φ(x; ε)| with the noise moved with the input (exactness);"
              "\nE, E': REMUL eqs. 12-13 with fresh samples (Monte-Carlo error of N samples included)."
              "\nC_8 acts on images by interpolation (45°), so it is only approximately equivariant."
              "\nS_n FA: graphs with repeated Laplacian eigenvalues are equivariant in distribution only.")
    return 0


def _inputs(group, options, gen):
    """The demo's inputs for ``group``, from its facts: images for a finite group that rotates images, point
    clouds for a group with a matrix part, graphs otherwise (a finite group of node permutations: on as many
    nodes as it permutes); returns (inputs, kinds, output kind, mask)."""
    from workers.symmetry.testing import random_inputs

    images = group.finite is not None and "image" in group.kinds
    if images:
        kinds, output_kind = {"image": "image"}, "invariant"
    elif group.has_matrix:
        kinds, output_kind = {"pos": "point", "vel": "vector"}, "point"
    else:
        kinds, output_kind = {"adj": "pair", "x": "node"}, "node"
    nodes = getattr(group, "nodes", None) or options["nodes"]
    inputs, mask = random_inputs(kinds, options["batch"], nodes, group.dim or options["dim"], gen,
                                 channels=1 if images else 2)
    return inputs, kinds, output_kind, mask
