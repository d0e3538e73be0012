"""Rotated or flipped-and-rotated handwritten digits: a small rotated-MNIST for group alignment.

Follows Mahan et al. (paper 004, rotated / flipped-and-rotated MNIST) on scikit-learn's 1,797 8×8
digits, which ship with scikit-learn (no download). Every image gets its own angle, drawn once
uniformly in [0, 2π): ``transform="rotate"`` makes an SO(2)-invariant task; ``"flip_rotate"``
first mirrors the image left-right with probability ½ (O(2)-invariant); ``"none"`` keeps the
digits upright (a control). Angles and flips do not depend on ``transform``, so the three variants
of one seed differ only by the transform. The training-set size is swept with ``train_size``.

Pixels are scaled to [0, 1]; the 8×8 digit is zero-padded to the centre of a ``canvas``×``canvas``
image (12 by default, so that rotated corners stay inside: half-diagonal 4√2 ≈ 5.7 < 6) and rotated
about the canvas centre with bilinear interpolation (torch ``grid_sample``, zero fill), which keeps
the ink mass to within a few percent.

Splits: a fixed permutation (the same for every seed) picks the test and validation images, so all
seeds are scored on the same digits; the remaining pool (1,000 images at the default sizes) is
ordered by ``seed`` and the training set is its first ``train_size`` images, so smaller training
sets are nested in larger ones. ``train_size`` is applied at load time and is not in the cache key.
MNIST itself is not provided: it is not installed and nothing may be downloaded.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from workers.tasks.base import Task, require

TRANSFORMS = ("rotate", "flip_rotate", "none")
DIGITS, SIDE = 1797, 8
SPLIT_SEED = 20_231_797  # fixes which digits are test / validation, independently of ``seed``


def rotate_images(images: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotate square images (M, H, W) counter-clockwise (row 0 on top) by ``angles`` (M,) radians.

    Rotation about the image centre with bilinear interpolation; a quarter turn is exact.
    """
    cos, sin, zero = np.cos(angles), np.sin(angles), np.zeros_like(angles)
    theta = torch.from_numpy(np.stack([np.stack([cos, -sin, zero], 1), np.stack([sin, cos, zero], 1)], 1))
    batch = torch.from_numpy(images).double().unsqueeze(1)  # (M, 1, H, W)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)  # (M, H, W, 2)
    rotated = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return rotated[:, 0].numpy()


def canvas_digits(canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """All digits in [0, 1] centred on a blank canvas (1797, canvas, canvas), and their labels."""
    from sklearn.datasets import load_digits  # slow to import: only when generating

    digits = load_digits()
    margin = (canvas - SIDE) // 2
    images = np.zeros((DIGITS, canvas, canvas))
    images[:, margin : margin + SIDE, margin : margin + SIDE] = digits.images / 16.0
    return images, digits.target.astype(np.int64)


class DigitsRot(Task):
    """Classify 8×8 digits that were randomly rotated (and flipped)."""

    name: ClassVar[str] = "digits_rot"
    version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {
        "seed": 0,
        "transform": "rotate",
        "canvas": 12,
        "train_size": None,  # None: the whole pool left after validation and test
        "val_size": 297,
        "test_size": 500,
    }
    input_kinds: ClassVar[dict[str, str]] = {"image": "image"}
    target_kind: ClassVar[str] = "invariant"
    metric: ClassVar[str] = "accuracy"
    decides: ClassVar[bool] = True
    mode: ClassVar[str] = "max"

    def validate(self) -> None:
        params = self.params
        require(type(params["seed"]) is int and params["seed"] >= 0, "seed", params["seed"], "an integer >= 0")
        require(params["transform"] in TRANSFORMS, "transform", params["transform"], f"one of {', '.join(TRANSFORMS)}")
        canvas = params["canvas"]
        require(type(canvas) is int and 8 <= canvas <= 64 and canvas % 2 == 0, "canvas", canvas,
                "an even integer in [8, 64] (12 or more keeps rotated corners inside)")
        for key in ("val_size", "test_size"):
            require(type(params[key]) is int and params[key] >= 1, key, params[key], "an integer >= 1")
        pool = self.pool_size()
        require(pool >= 1, "val_size", params["val_size"],
                f"val_size + test_size < {DIGITS} (test_size={params['test_size']})")
        size = params["train_size"]
        require(size is None or (type(size) is int and 1 <= size <= pool), "train_size", size,
                f"null or an integer in [1, {pool}] ({DIGITS} digits minus val_size and test_size)")

    def pool_size(self) -> int:
        """Images left for training after the validation and test sets."""
        return DIGITS - self.params["val_size"] - self.params["test_size"]

    def generator_params(self) -> dict[str, Any]:
        return {key: value for key, value in self.params.items() if key != "train_size"}

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"image": (self.params["canvas"], self.params["canvas"], 1)}

    def output_shape(self) -> tuple[int, ...]:
        return (10,)  # logits over the digits 0..9

    def generate(self) -> dict[str, np.ndarray]:
        images, labels = canvas_digits(self.params["canvas"])  # (1797, H, W), (1797,)
        rng = np.random.default_rng(self.params["seed"])
        angles = rng.uniform(0.0, 2 * math.pi, DIGITS)
        flips = rng.random(DIGITS) < 0.5
        transform = self.params["transform"]
        if transform == "flip_rotate":
            images = np.where(flips[:, None, None], images[:, :, ::-1], images)
        if transform != "none":
            images = rotate_images(images, angles)

        order = np.random.default_rng(SPLIT_SEED).permutation(DIGITS)
        test_size, val_size = self.params["test_size"], self.params["val_size"]
        pool = order[test_size + val_size :]
        index = {
            "train": pool[rng.permutation(pool.size)],
            "val": order[test_size : test_size + val_size],
            "test": order[:test_size],
        }
        arrays = {}
        for split, rows in index.items():
            arrays[f"{split}/image"] = images[rows, :, :, None].astype(np.float32)  # (M, H, W, 1)
            arrays[f"{split}/y"] = labels[rows]  # (M,)
        return arrays

    def to_splits(self, arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, torch.Tensor]]:
        splits = super().to_splits(arrays)
        size = self.params["train_size"]
        if size is not None:
            splits["train"] = {key: value[:size] for key, value in splits["train"].items()}
        return splits

    def loss(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy; pred (B, 10) logits."""
        return F.cross_entropy(pred, batch["y"])

    def metrics(self, pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return {"accuracy": float((pred.argmax(-1) == batch["y"]).float().mean())}

    def decide(self, pred: torch.Tensor) -> torch.Tensor:
        """The predicted digit, as ``metrics`` scores it."""
        return pred.argmax(-1)
