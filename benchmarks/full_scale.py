"""What one trial of each full-scale (paper-sized) preset costs: the counts behind the presets'
``cluster.gpus_per_trial`` and the expected wall time per trial.

    python benchmarks/full_scale.py [--presets ps_exp_classify ps_nbody ...] [--steps S] [--batch-fraction f]
                                    [--tflops R] [--launch-us L] [--gpu-gib M] [--json]

For every distinct configuration of each preset (its grid, one seed), the real trial code is used:
the preset composed by Hydra, checked by ``check_config``, the model built by the factory, the
task's real data at the preset's batch size. On one training step (the loop's own loss, backward and
Adam step) and one evaluation batch it measures, on this CPU:

- ``step GFLOP``: matrix-multiply and convolution FLOPs of the training step (forward + backward;
  ``torch.utils.flop_counter``; elementwise work is not counted), and ``eval GFLOP/ex`` per
  evaluation batch with the evaluation sample count (``eval_batch_size`` examples);
- ``ops``: PyTorch operators dispatched by one training step (each is at least one GPU kernel launch);
- ``act GiB``: bytes of the tensors autograd saves for the backward pass (what activations cost on a
  GPU at that batch size), and ``state GiB``: parameters, gradients and Adam's two moments (16 bytes
  per parameter);
- ``CPU s/step``: median seconds of S steps here, on the measured batch (for scale only: the machine is shared).

With ``--batch-fraction f`` the step and the evaluation batch are measured on ``f`` of the preset's
batch and the FLOPs and saved bytes are scaled back by the ratio of the batch sizes (every model
here treats the examples of a batch independently, so both are linear in the batch size; the
operator count is not scaled: it does not depend on the batch size). This keeps the memory of the
measurement small (the full PATTERN step saves about 16 GiB of activations).

These counts do not depend on the hardware. The GPU estimate combines them with two stated
constants, not measurements: a sustained matmul rate of R TFLOP/s (default 20: TF32 on an A100 runs
at about 40 % of its 156 TFLOP/s peak on these small matrices; fp32 without TF32 is 19.5 peak) and
L µs per dispatched operator (default 10: eager PyTorch's launch and Python overhead per op):

    step_s  = max(step_FLOP / R, ops · L)              (compute-bound or launch-bound)
    trial_s = steps_per_epoch · epochs · step_s + evaluations · eval_batches · max(eval_FLOP / R, eval_ops · L)
    GPU share = max(step_FLOP / R / step_s, memory / M)  -> gpus_per_trial: the next of 0.25, 0.5, 1

(``evaluations`` = epochs / eval_every; ``eval_batches`` cover val, test and the transformed test copy.)
A launch-bound trial leaves most of a GPU idle, so several trials can share one.
"""

from __future__ import annotations

import itertools
import math
import statistics
import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _bench  # noqa: E402

_bench.setup_environment()

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

PRESETS = ("ps_exp_classify", "ps_exp_classify_samples", "ps_nbody", "ps_pattern", "remul_gravity",
           "candidate_nbody_dims", "candidate_digits")
SHARES = (0.25, 0.5, 1.0)


class OpCounter(TorchDispatchMode):
    """Counts the operators PyTorch dispatches (each is at least one kernel on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


class SavedBytes:
    """Bytes of the distinct tensors autograd saves for backward during a forward pass."""

    def __init__(self):
        self.seen: dict[tuple, int] = {}

    def pack(self, tensor: torch.Tensor):
        if tensor.device.type != "meta":
            storage = tensor.untyped_storage()
            self.seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return tensor

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def configurations(preset: str):
    """(label, trial config) for every distinct configuration of the preset's grid, one seed."""
    from orchestrator.config import compose, trial_config
    from orchestrator.plan import validate
    from workers.settings import merge

    config = compose([f"experiment={preset}"])
    seen = set()
    for point in validate(config).points:
        params = {key: value for key, value in point.values.items() if key != "sample"}
        trial = merge(trial_config(config), params)
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in params.items() if k != "trainer.seed") or "-"
        if label not in seen:
            seen.add(label)
            yield config, label, trial


def measure(trial: dict, steps: int, fraction: float = 1.0) -> dict:
    """The counts of one configuration (see the module docstring)."""
    from workers.objectives import forward, make_objective
    from workers.runtime import build_seeded, step_generator
    from workers.settings import check_config
    from workers.sharding import Shard
    from workers.tasks.base import iterate_batches
    from workers.train import make_optimizer

    plan = check_config(trial)
    task, trainer = plan.task, plan.trainer
    data = task.load()
    model = build_seeded(plan.model, trainer.seed).train()
    optimizer = make_optimizer(model, trainer)
    objective = make_objective(plan.symmetrizer, plan.remul, model, task, Shard())
    measured = max(1, round(trainer.batch_size * fraction))
    batch = next(iterate_batches(data.splits["train"], measured, shuffle=True))
    counter = itertools.count(1)

    def step(saved: SavedBytes | None = None) -> None:
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t) if saved else nullcontext():
            loss, _ = objective(batch, step_generator(0, next(counter)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    saved = SavedBytes()
    with FlopCounterMode(display=False) as flops:
        step(saved=saved)
    ops = OpCounter()
    with ops:
        step()
    times = [_bench.clock(step) for _ in range(steps)]
    model.eval()
    eval_size = trainer.eval_batch_size or trainer.batch_size
    eval_measured = max(1, round(eval_size * fraction))
    eval_batch = next(iterate_batches(data.splits["val"], eval_measured, shuffle=False))
    # with gradients enabled (nothing is backpropagated): under no_grad, nn.TransformerEncoder takes a fused
    # fast path whose FLOPs the counter cannot see; the arithmetic is the same
    with FlopCounterMode(display=False) as eval_flops:
        forward(model, task, eval_batch, step_generator(0, 10**6), Shard())
    eval_ops = OpCounter()
    with torch.no_grad(), eval_ops:
        forward(model, task, eval_batch, step_generator(0, 10**6), Shard())
    sizes = [data.size(name) for name in data.splits if name != "train"] + [data.size("test")]  # + transformed
    parameters = sum(p.numel() for p in model.parameters())
    scale, eval_scale = trainer.batch_size / measured, eval_size / eval_measured
    return {"train_size": data.size("train"), "batch_size": trainer.batch_size, "epochs": trainer.epochs,
            "eval_every": trainer.eval_every, "measured_batch": measured,
            "step_flop": flops.get_total_flops() * scale, "ops": ops.count, "activation_bytes": saved.total * scale,
            "parameters": parameters, "state_bytes": 16 * parameters, "cpu_step_s": statistics.median(times),
            "eval_flop_per_batch": eval_flops.get_total_flops() * eval_scale, "eval_ops_per_batch": eval_ops.count,
            "eval_batches": sum(math.ceil(size / eval_size) for size in sizes), "eval_examples": sum(sizes)}


def estimate(counts: dict, tflops: float, launch_us: float, gpu_gib: float) -> dict:
    """The GPU arithmetic of the module docstring."""
    rate = tflops * 1e12
    compute_s, launch_s = counts["step_flop"] / rate, counts["ops"] * launch_us * 1e-6
    step_s = max(compute_s, launch_s)
    steps = math.ceil(counts["train_size"] / counts["batch_size"]) * counts["epochs"]
    evaluations = math.ceil(counts["epochs"] / counts["eval_every"])
    eval_batch_s = max(counts["eval_flop_per_batch"] / rate, counts["eval_ops_per_batch"] * launch_us * 1e-6)
    eval_s = evaluations * counts["eval_batches"] * eval_batch_s
    memory_gib = (counts["activation_bytes"] + counts["state_bytes"]) / 2**30 + 0.5  # + the CUDA context
    share = max(compute_s / step_s, memory_gib / gpu_gib)
    total_s = steps * step_s + eval_s
    return {"steps": steps, "step_s": step_s, "bound": "compute" if compute_s >= launch_s else "launch",
            "trial_h": total_s / 3600, "eval_share": eval_s / total_s, "memory_gib": memory_gib,
            "gpus_per_trial": next((s for s in SHARES if share <= s), 1.0)}


def main(argv: list[str] | None = None) -> int:
    parser = _bench.parser(__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), help="full-scale presets (configs/experiment)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per configuration")
    parser.add_argument("--batch-fraction", type=float, default=1.0,
                        help="measure on this fraction of the batch and scale FLOPs and saved bytes back")
    parser.add_argument("--tflops", type=float, default=20.0, help="assumed sustained matmul TFLOP/s of one GPU")
    parser.add_argument("--launch-us", type=float, default=10.0, help="assumed µs per dispatched operator")
    parser.add_argument("--gpu-gib", type=float, default=80.0, help="memory of one GPU (GiB)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    info = _bench.machine()
    rows, results = [], []
    for preset in args.presets:
        for config, label, trial in configurations(preset):
            _bench.log(f"{preset} {label} ...")
            counts = measure(trial, args.steps, args.batch_fraction)
            guess = estimate(counts, args.tflops, args.launch_us, args.gpu_gib)
            configured = config["cluster"]["gpus_per_trial"]
            results.append({"preset": preset, "configuration": label, **counts, **guess,
                            "configured_gpus_per_trial": configured})
            rows.append([preset, label, f"{counts['step_flop'] / 1e9:.1f}", counts["ops"],
                         f"{counts['activation_bytes'] / 2**30:.2f}", f"{counts['state_bytes'] / 2**30:.2f}",
                         f"{counts['cpu_step_s']:.2f}", f"{counts['eval_flop_per_batch'] / 1e9:.1f}",
                         f"{guess['steps']:,}", f"{guess['step_s'] * 1e3:.1f} ({guess['bound']})",
                         f"{guess['trial_h']:.1f}", f"{guess['memory_gib']:.1f}", guess["gpus_per_trial"],
                         configured])
    print(f"machine: {_bench.describe(info)}; assumed GPU: {args.tflops:g} TFLOP/s sustained, "
          f"{args.launch_us:g} µs per operator, {args.gpu_gib:g} GiB")
    print(_bench.table(["preset", "configuration", "step GFLOP", "ops", "act GiB", "state GiB", "CPU s/step",
                        "eval GFLOP/batch", "steps", "GPU ms/step", "GPU h/trial", "GPU GiB", "share",
                        "configured"], rows))
    if args.json:
        _bench.emit_json({"machine": info, "assumptions": {"tflops": args.tflops, "launch_us": args.launch_us,
                                                           "gpu_gib": args.gpu_gib}, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
