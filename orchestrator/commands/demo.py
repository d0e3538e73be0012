"""``symsweep demo``: symmetrize a random MLP for every group and method and print how exactly
equivariant it is, next to the bare MLP. A real run of the symmetry library, in seconds."""

from __future__ import annotations

import argparse
import json
import math
import time

from orchestrator.overrides import parse_overrides

DEFAULTS = {"dim": 3, "nodes": 6, "batch": 8, "samples": 10, "group_samples": 20, "seed": 0}
GROUPS = ["S_n", "O(d)", "SO(d)", "E(d)", "SE(d)", "S_n x O(d)", "S_n x SO(d)", "S_n x E(d)", "S_n x SE(d)",
          "C_4", "D_4", "C_8"]


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

    from workers.symmetry import Group, RegularScorer, coupled_equivariance_gap, equivariance_errors, symmetrize

    torch.manual_seed(options["seed"])
    gen = torch.Generator().manual_seed(options["seed"])
    rows = []
    if not args.json:
        print(f"{'group':14s} {'method':15s} {'coupled gap':>12s} {'E':>10s} {'E_prime':>10s} "
              f"{'E bare MLP':>11s} {'seconds':>8s}")
    for name in GROUPS:
        group = Group.parse(name, dim=options["dim"])
        inputs, kinds, output_kind, mask = _inputs(group, options, gen)
        shapes = {k: tuple(v.shape[1:]) for k, v in inputs.items()}
        out_shape = tuple(next(iter(inputs.values())).shape[1:]) if output_kind != "invariant" else (4,)
        methods = ["ga", "ps", "canonical"] if group.finite else ["ps", "ga", "fa", "canonical"]
        for method in methods:
            start = time.perf_counter()
            interface = RegularScorer(group, _MLP(shapes, (1,)), kinds) if group.finite and method != "ga" else None
            extra = {"node_channels": {"x": 2}} if group.permutations and not group.has_matrix else {}
            model = symmetrize(_MLP(shapes, out_shape), group, method, kinds, output_kind,
                               options["samples"], options["samples"], interface=interface, **extra).double().eval()
            gap = coupled_equivariance_gap(model, inputs, mask, gen)
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


class _MLP:
    def __new__(cls, shapes, out_shape):
        import torch
        from torch import nn

        class FlatMLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.fields = list(shapes)
                fan_in = sum(math.prod(s) for s in shapes.values())
                self.net = nn.Sequential(nn.Linear(fan_in, 64), nn.Tanh(), nn.Linear(64, math.prod(out_shape)))

            def forward(self, inputs):
                dtype = self.net[0].weight.dtype
                flat = torch.cat([inputs[f].reshape(inputs[f].shape[0], -1).to(dtype) for f in self.fields], 1)
                return self.net(flat).view(-1, *out_shape)

        return FlatMLP()


def _inputs(group, options, gen):
    import torch

    batch, nodes, dim = options["batch"], options["nodes"], options["dim"]
    counts = torch.randint(max(2, dim + 1), nodes + 1, (batch,), generator=gen).clamp(max=nodes)
    mask = torch.arange(nodes)[None] < counts[:, None]
    if group.finite is not None:
        image = torch.rand(batch, 8, 8, 1, generator=gen, dtype=torch.float64)
        return {"image": image}, {"image": "image"}, "invariant", None
    if group.has_matrix:
        pos = torch.randn(batch, nodes, dim, generator=gen, dtype=torch.float64) * mask[..., None]
        vel = torch.randn(batch, nodes, dim, generator=gen, dtype=torch.float64) * mask[..., None]
        return {"pos": pos, "vel": vel}, {"pos": "point", "vel": "vector"}, "point", mask
    upper = torch.triu((torch.rand(batch, nodes, nodes, generator=gen) < 0.5).double(), 1)
    adj = (upper + upper.transpose(1, 2)) * mask[:, :, None] * mask[:, None, :]
    x = torch.rand(batch, nodes, 2, generator=gen, dtype=torch.float64) * mask[..., None]
    return {"adj": adj[..., None], "x": x}, {"adj": "pair", "x": "node"}, "node", mask
