"""Applying permutations and the Sinkhorn-relaxed argsort: what the S_n symmetrizer pays per step.

    python benchmarks/permutations.py [--part apply sinkhorn] [--quick] [--repeats R] [--json]

``apply``: g·x for node tensors (R, n, C) and pair tensors (R, n, n, C) at R = 1,000 rows —
  ``gather`` (the product: ``workers.symmetry.groups.permute_nodes``, one ``torch.gather`` per node
  axis), ``index_select`` (one index over the flattened rows, with a combined index) and
  ``bmm one-hot`` (the dense products P x and P A Pᵀ with one-hot P). Then the straight-through
  application used in training
  (value of the hard permutation, gradient through P̂), forward + backward: ``autograd`` (the
  formula ``hard + (P̂x − (P̂x).detach())``, one product P̂x in the forward and its gradient in the
  backward) against the product's ``Function`` (no product in the forward).
``sinkhorn``: P̂ of PS eq. 47 with 20 iterations, forward and forward + backward (a random
  gradient on P̂), against n from 8 to 188 at about 1,000 rows (fewer rows for large n, so a run
  stays short), τ = 0.01 and 0.1 — ``dense`` (the implementation before this benchmark: the n × n
  kernel in float64, ``diag(u) K diag(v)``, autograd through every iteration) against the product
  (``workers.symmetry.permutations.sinkhorn_permutation``: O(n) cumulative-sum kernel products).
Inputs are float32 like a training step; times are per call (min/median/max over interleaved
repeats); ``×`` columns are ratios within each repeat.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

_bench.setup_environment()

import torch  # noqa: E402

from workers.symmetry.groups import Group, GroupElement, permute_nodes  # noqa: E402
from workers.symmetry.permutations import argsort_permutation, masked_scores, one_hot, sinkhorn_permutation  # noqa: E402

ROWS = 1000


# -- references ---------------------------------------------------------------------------------------
def dense_sinkhorn(scores: torch.Tensor, mask: torch.Tensor, temperature: float, iterations: int = 20) -> torch.Tensor:
    """The Sinkhorn relaxation as it was implemented before (same values as the product): the
    dense (R, n, n) kernel, scaling form in float64 (log space for τ < 1/300), autograd through
    every iteration."""
    rows, size = scores.shape
    real = mask.to(scores.dtype)
    normalised = scores * real / (scores * real).norm(dim=1, keepdim=True).clamp_min(1e-12)
    sorted_scores = torch.sort(masked_scores(normalised, mask), dim=1, stable=True).values
    sorted_real = torch.arange(size)[None, :] < mask.sum(1, keepdim=True)
    real_block = mask[:, :, None] & sorted_real[:, None, :]
    distance = (normalised[:, :, None] - sorted_scores.masked_fill(~sorted_real, 0.0)[:, None, :]).abs()
    logits = torch.where(real_block, -distance / temperature, torch.full_like(distance, -1e9))
    if not bool(mask.all()):
        hard = one_hot(argsort_permutation(scores, mask), scores.dtype).bool()
        logits = torch.where(hard & ~real_block, torch.zeros_like(logits), logits)
    if temperature >= 2.0 / 600.0:
        kernel = logits.double().exp()
        column = torch.ones(rows, size, 1, dtype=kernel.dtype)
        for _ in range(iterations):
            row = 1.0 / (kernel @ column)
            column = 1.0 / (kernel.transpose(1, 2) @ row)
        return (row * kernel * column.transpose(1, 2)).to(scores.dtype)
    for _ in range(iterations):
        logits = logits - torch.logsumexp(logits, dim=2, keepdim=True)
        logits = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return logits.exp()


def flat_permute(x: torch.Tensor, perm: torch.Tensor, pair: bool) -> torch.Tensor:
    """g·x with one ``index_select`` over the flattened rows and a combined (R, n[, n]) index."""
    rows, size = perm.shape
    start = torch.arange(rows)[:, None] * size
    if pair:
        index = (start[:, :, None] + perm[:, :, None]) * size + perm[:, None, :]
        return x.reshape(rows * size * size, -1).index_select(0, index.reshape(-1)).view(x.shape)
    return x.reshape(rows * size, -1).index_select(0, (start + perm).reshape(-1)).view(x.shape)


def matrix_permute(x: torch.Tensor, matrix: torch.Tensor, pair: bool) -> torch.Tensor:
    """g·x as dense products with the one-hot matrix P (R, n, n): P x, or P A Pᵀ per channel."""
    if not pair:
        return torch.bmm(matrix, x)
    rows, size, _, channels = x.shape
    moved = torch.bmm(matrix, x.reshape(rows, size, size * channels)).view(rows, size, size, channels)
    return torch.einsum("rikc,rjk->rijc", moved, matrix)


def autograd_straight_through(x: torch.Tensor, soft: torch.Tensor, perm: torch.Tensor, pair: bool) -> torch.Tensor:
    """``hard + (P̂x − (P̂x).detach())`` written with autograd (the implementation before)."""
    hard = permute_nodes(x, perm, pair)
    if pair:
        left = permute_nodes(x.transpose(1, 2), perm).transpose(1, 2).detach()  # A Pᵀ
        right = permute_nodes(x, perm).detach()  # P A
        flat = torch.einsum("rik,rkj...->rij...", soft, left) + torch.einsum("rik...,rjk->rij...", right, soft)
    else:
        flat = torch.einsum("rik,rk...->ri...", soft, x.detach())
    return hard + (flat - flat.detach())


# -- measurements -------------------------------------------------------------------------------------
def apply_part(sizes, channels, repeats: int) -> list[dict]:
    results = []
    group = Group.parse("S_n")
    for size in sizes:
        for pair in (False, True):
            rows = ROWS if not pair or size <= 64 else max(50, ROWS * 64 * 64 // (size * size))
            gen = torch.Generator().manual_seed(size)
            shape = (rows, size, size, channels) if pair else (rows, size, channels)
            x = torch.randn(shape, generator=gen)
            perm = torch.stack([torch.randperm(size, generator=gen) for _ in range(rows)])
            matrix = one_hot(perm)
            reference = permute_nodes(x, perm, pair)
            assert torch.equal(flat_permute(x, perm, pair), reference)
            assert torch.allclose(matrix_permute(x, matrix, pair), reference)
            soft = torch.softmax(torch.randn(rows, size, size, generator=gen), dim=2)
            weight = torch.randn(shape, generator=gen)
            moved_x = x.clone().requires_grad_()

            def straight(function):
                def run():
                    leaf = soft.clone().requires_grad_()
                    (function(moved_x, leaf) * weight).sum().backward()
                return run

            element = lambda leaf: GroupElement(perm=perm, soft=leaf)  # noqa: E731
            kind = "pair" if pair else "node"
            variants = {
                "gather": lambda: permute_nodes(x, perm, pair),
                "index_select": lambda: flat_permute(x, perm, pair),
                "bmm one-hot": lambda: matrix_permute(x, matrix, pair),
                "ST autograd": straight(lambda v, leaf: autograd_straight_through(v, leaf, perm, pair)),
                "ST Function": straight(lambda v, leaf: group.act(element(leaf), v, kind)),
            }
            for function in variants.values():
                function()
            timed = {name: (lambda f=function: _bench.clock(f, 3)) for name, function in variants.items()}
            times = _bench.interleaved(timed, repeats)
            _bench.log(f"[apply] {kind} n={size} rows={rows}: " + ", ".join(
                f"{k} {1e3 * _bench.stats(v)['median']:.2f} ms" for k, v in times.items()))
            results.append({"kind": kind, "n": size, "rows": rows, "channels": channels,
                            "ms": {k: _bench.stats(1e3 * t for t in v) for k, v in times.items()},
                            "vs_gather": {k: _bench.stats(a / b for a, b in zip(v, times["gather"]))
                                                for k, v in times.items() if not k.startswith("ST")},
                            "ST_autograd_over_Function": _bench.stats(
                                a / b for a, b in zip(times["ST autograd"], times["ST Function"]))})
    return results


def sinkhorn_rows(size: int) -> int:
    """About 1,000 rows; fewer above n = 64 so that the dense reference stays within seconds."""
    return ROWS if size <= 64 else max(100, ROWS * 64 * 64 // (size * size))


def sinkhorn_part(sizes, temperatures, repeats: int) -> list[dict]:
    results = []
    for size in sizes:
        rows = sinkhorn_rows(size)
        gen = torch.Generator().manual_seed(size)
        scores = torch.randn(rows, size, generator=gen)
        mask = torch.arange(size)[None, :] < torch.randint(size // 2 + 1, size + 1, (rows, 1), generator=gen)
        grad = torch.randn(rows, size, size, generator=gen)
        for temperature in temperatures:
            implementations = {"dense": dense_sinkhorn, "product": sinkhorn_permutation}
            with torch.no_grad():
                difference = float((dense_sinkhorn(scores, mask, temperature)
                                    - sinkhorn_permutation(scores, mask, temperature)).abs().max())

            def forward(function):
                def run():
                    with torch.no_grad():
                        function(scores, mask, temperature)
                return run

            def backward(function):
                def run():
                    leaf = scores.clone().requires_grad_()
                    (function(leaf, mask, temperature) * grad).sum().backward()
                return run

            variants = {}
            for name, function in implementations.items():
                variants[f"{name} fwd"] = forward(function)
                variants[f"{name} fwd+bwd"] = backward(function)
            for function in variants.values():
                function()
            timed = {name: (lambda f=function: _bench.clock(f, 1)) for name, function in variants.items()}
            times = _bench.interleaved(timed, repeats)
            row = {"n": size, "rows": rows, "temperature": temperature, "max_abs_difference": difference,
                   "ms": {k: _bench.stats(1e3 * t for t in v) for k, v in times.items()},
                   "speedup_fwd": _bench.stats(a / b for a, b in zip(times["dense fwd"], times["product fwd"])),
                   "speedup_fwd_bwd": _bench.stats(a / b for a, b in zip(times["dense fwd+bwd"],
                                                                         times["product fwd+bwd"]))}
            _bench.log(f"[sinkhorn] n={size} rows={rows} τ={temperature}: speed-up fwd "
                       f"{row['speedup_fwd']['median']:.1f}×, fwd+bwd {row['speedup_fwd_bwd']['median']:.1f}×")
            results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = _bench.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--part", nargs="+", choices=["apply", "sinkhorn"], default=["apply", "sinkhorn"])
    parser.add_argument("--sizes", nargs="+", type=int, default=None, help="node counts n (default 8 16 32 64 128 188)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a one-CPU trial)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = args.sizes or ([8, 64, 188] if args.quick else [8, 16, 32, 64, 128, 188])
    temperatures = [0.01] if args.quick else [0.01, 0.1]
    info = _bench.machine()
    out = {"benchmark": "permutations", "machine": info, "repeats": repeats, "quick": args.quick}
    if "apply" in args.part:
        out["apply"] = apply_part([s for s in sizes if s in (8, 64, 188)] or sizes, 1, repeats)
    if "sinkhorn" in args.part:
        out["sinkhorn"] = sinkhorn_part(sizes, temperatures, repeats)
    print(_bench.describe(info))
    print(f"repeats {repeats}; median [min–max] over repeats\n")
    if "apply" in out:
        print("### Applying g (float32, C = 1): ms per call; × = time / gather time (the product)\n")
        rows = []
        for r in out["apply"]:
            ms, ratio = r["ms"], r["vs_gather"]
            rows.append([r["kind"], r["n"], r["rows"], _bench.triple(ms["gather"]),
                         f"{_bench.triple(ms['index_select'])} ({ratio['index_select']['median']:.1f}×)",
                         f"{_bench.triple(ms['bmm one-hot'])} ({ratio['bmm one-hot']['median']:.1f}×)",
                         _bench.triple(ms["ST autograd"]), _bench.triple(ms["ST Function"]),
                         _bench.triple(r["ST_autograd_over_Function"], 1)])
        print(_bench.table(["kind", "n", "rows", "gather ms", "index_select ms", "bmm one-hot ms",
                            "ST autograd fwd+bwd ms", "ST Function fwd+bwd ms", "autograd / Function"], rows))
        print()
    if "sinkhorn" in out:
        print("### Sinkhorn P̂ (20 iterations, float32 scores): ms per call; speed-up = dense / product\n")
        rows = []
        for r in out["sinkhorn"]:
            ms = r["ms"]
            rows.append([r["n"], r["rows"], r["temperature"], _bench.triple(ms["dense fwd"], 1),
                         _bench.triple(ms["product fwd"], 1), _bench.triple(r["speedup_fwd"], 1),
                         _bench.triple(ms["dense fwd+bwd"], 1), _bench.triple(ms["product fwd+bwd"], 1),
                         _bench.triple(r["speedup_fwd_bwd"], 1), f"{r['max_abs_difference']:.0e}"])
        print(_bench.table(["n", "rows", "τ", "dense fwd", "product fwd", "speed-up", "dense fwd+bwd",
                            "product fwd+bwd", "speed-up", "max |Δ P̂|"], rows))
        print()
    if args.json:
        _bench.emit_json(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
