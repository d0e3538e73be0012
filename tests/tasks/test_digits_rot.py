"""Rotated digits: layout, determinism, train_size slicing, and that the rotation is real."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workers.tasks import cache, get_task
from workers.tasks.digits_rot import DigitsRot, canvas_digits, rotate_images


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))


@pytest.fixture(scope="module")
def variants() -> dict[str, dict[str, np.ndarray]]:
    transforms = ("none", "rotate", "flip_rotate")
    return {transform: DigitsRot(seed=0, transform=transform).generate() for transform in transforms}


def test_shapes_and_default_sizes():
    data = get_task("digits_rot").load()
    sizes = {split: data.size(split) for split in ("train", "val", "test")}
    assert sizes == {"train": 1000, "val": 297, "test": 500}
    for fields in data.splits.values():
        assert fields["image"].shape[1:] == (12, 12, 1) and fields["image"].dtype == torch.float32
        assert fields["y"].dtype == torch.int64 and set(fields["y"].tolist()) <= set(range(10))
    assert DigitsRot(canvas=16).to_splits(DigitsRot(canvas=16).generate())["test"]["image"].shape == (500, 16, 16, 1)


def test_determinism_and_seed_dependence(variants):
    again = DigitsRot(seed=0, transform="rotate").generate()
    other = DigitsRot(seed=1, transform="rotate").generate()
    assert all(np.array_equal(again[key], variants["rotate"][key]) for key in again)
    assert not np.allclose(other["test/image"], again["test/image"])
    # the test and validation digits are the same for every seed; only their rotation changes
    assert np.array_equal(other["test/y"], again["test/y"]) and np.array_equal(other["val/y"], again["val/y"])


def test_train_size_slices_a_nested_training_set():
    full = get_task("digits_rot", seed=2).load()
    small = get_task("digits_rot", seed=2, train_size=100).load()
    assert not small.generated and small.path == full.path  # train_size is not in the cache key
    assert small.size("train") == 100 and small.size("test") == 500
    assert torch.equal(small.splits["train"]["image"], full.splits["train"]["image"][:100])
    assert torch.equal(small.splits["test"]["y"], full.splits["test"]["y"])


def test_rotation_changes_images_but_keeps_their_mass(variants):
    upright, rotated = variants["none"]["train/image"], variants["rotate"]["train/image"]
    assert np.array_equal(variants["none"]["train/y"], variants["rotate"]["train/y"])
    changed = np.abs(rotated - upright).max(axis=(1, 2, 3))
    assert np.median(changed) > 0.3  # a typical image moves a lot
    mass_ratio = rotated.sum(axis=(1, 2, 3)) / upright.sum(axis=(1, 2, 3))
    assert np.all(np.abs(mass_ratio - 1) < 0.06) and abs(mass_ratio.mean() - 1) < 0.01
    # the canvas is large enough: the border stays empty before rotation
    assert upright[:, :2].max() == 0 and upright[:, :, :2].max() == 0


def test_flip_rotate_mirrors_about_half_of_the_digits(variants):
    rotated, flipped = variants["rotate"]["train/image"], variants["flip_rotate"]["train/image"]
    same = np.all(np.isclose(rotated, flipped), axis=(1, 2, 3))
    assert 0.4 < same.mean() < 0.6  # identical angles; unflipped digits coincide


def test_rotate_images_quarter_turn_is_exact_and_counter_clockwise():
    images, _ = canvas_digits(12)
    quarter = rotate_images(images[:5], np.full(5, math.pi / 2))
    np.testing.assert_allclose(quarter, np.rot90(images[:5], 1, axes=(1, 2)), atol=1e-9)


def test_loss_and_accuracy():
    pred = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])
    batch = {"y": torch.tensor([0, 1, 1])}
    task = DigitsRot()
    assert task.metrics(pred, batch)["accuracy"] == pytest.approx(2 / 3)
    assert float(task.loss(pred, batch)) == pytest.approx(float(torch.nn.functional.cross_entropy(pred, batch["y"])))


@pytest.mark.parametrize(("key", "value"),
                         [("transform", "shear"), ("canvas", 9), ("train_size", 1001), ("val_size", 1500)])
def test_bad_parameters_name_the_key(key, value):
    with pytest.raises(ValueError, match=rf"task\.{key}="):
        DigitsRot(**{key: value})
