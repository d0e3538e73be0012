"""The lab's data: ``python -m springlab.data [PATH]`` writes PATH (default ``data/springs.npz``).

Each example is ``points`` particles in the plane joined pairwise by springs of rest length 1; the target is the
net spring force on each particle, F_i = Σ_j (|x_j − x_i| − 1) (x_j − x_i) / |x_j − x_i|. The forces turn with
the plane, ignore translations and follow any renumbering of the particles: the task is S_n × E(2)-equivariant.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def springs(examples: int = 600, points: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(examples, points, 2))
    towards = pos[:, None, :, :] - pos[:, :, None, :]  # [b, i, j] = x_j - x_i
    length = np.linalg.norm(towards, axis=-1, keepdims=True)
    unit = np.divide(towards, length, out=np.zeros_like(towards), where=length > 0)
    force = ((length - 1.0) * unit).sum(axis=2)  # the j = i terms are 0
    return {"pos": pos.astype(np.float32), "force": force.astype(np.float32)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0] if argv else "data/springs.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **springs())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
