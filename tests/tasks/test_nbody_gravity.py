"""Star-and-planets gravity task: construction, rotation sets, rejection, physics, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from workers.tasks import get_task
from workers.tasks import nbody_gravity as gravity
from workers.tasks.cache import CACHE_ENV
from workers.tasks.nbody_gravity import NBodyGravity, Systems

SMALL = {"train_size": 40, "eval_size": 300}


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        return get_task("nbody_gravity", **SMALL).load()


def rotation_degrees(rotation: np.ndarray) -> np.ndarray:
    """Rotation angle of each (3, 3) matrix, in degrees."""
    cosine = (np.trace(rotation, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def orbital_tilt_degrees(arrays: dict[str, np.ndarray], split: str) -> np.ndarray:
    """Angle between the initial orbital plane (star and two planets) and the x–y plane."""
    pos, mass = arrays[f"{split}/pos"], arrays[f"{split}/mass"][..., 0]
    order = np.argsort(-mass, axis=1)  # star first
    ranked = np.take_along_axis(pos, order[..., None], 1)
    normal = np.cross(ranked[:, 1] - ranked[:, 0], ranked[:, 2] - ranked[:, 0])
    return np.degrees(np.arccos(np.abs(normal[:, 2]) / np.linalg.norm(normal, axis=1)))


def rotation_axes(rotation: np.ndarray) -> np.ndarray:
    """Unit rotation axes of (S, 3, 3) matrices."""
    rotvec = Rotation.from_matrix(rotation).as_rotvec()
    return rotvec / np.linalg.norm(rotvec, axis=1, keepdims=True)


def test_layout(data) -> None:
    assert set(data.splits) == {"train", "val", "test", "test_ood"}
    assert data.size("train") == 40 and data.size("test_ood") == 300
    fields = data.splits["test"]
    assert set(fields) == {"pos", "vel", "mass", "mask", "y"}
    for name in ("pos", "vel", "y"):
        assert fields[name].shape == (300, 4, 3) and fields[name].dtype == torch.float32
    assert fields["mass"].shape == (300, 4, 1) and bool(fields["mask"].all())


def test_rejection_rule_holds(data) -> None:
    for fields in data.splits.values():
        displacement = (fields["y"] - fields["pos"]).norm(dim=-1).amax(1)
        assert float(displacement.max()) <= gravity.MAX_DISPLACEMENT + 1e-4  # float32 storage


def test_rejected_samples_are_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    candidates = gravity.transform(rng, gravity.sample_systems(rng, 400, 3), (0.0, 10.0))
    final, _ = gravity.simulate(candidates)
    threshold = 0.4  # rejects a sizeable share, unlike the rare rejections at 2.0
    assert (np.linalg.norm(final - candidates.pos, axis=-1).max(1) > threshold).mean() > 0.05
    monkeypatch.setattr(gravity, "MAX_DISPLACEMENT", threshold)
    systems, final = gravity.sample_split(np.random.default_rng(1), 200, 3, (0.0, 10.0))
    assert systems.pos.shape == (200, 4, 3) and final.shape == (200, 4, 3)
    assert np.linalg.norm(final - systems.pos, axis=-1).max() <= threshold


def test_rotation_angles_measured_back() -> None:
    rng = np.random.default_rng(0)
    for degrees in (gravity.IN_DISTRIBUTION_DEGREES, gravity.OUT_OF_DISTRIBUTION_DEGREES):
        rotation = gravity.random_rotations(rng, 2000, degrees)
        identity = np.broadcast_to(np.eye(3), rotation.shape)
        np.testing.assert_allclose(rotation @ rotation.transpose(0, 2, 1), identity, atol=1e-12)
        np.testing.assert_allclose(np.linalg.det(rotation), 1.0, atol=1e-12)
        angle = rotation_degrees(rotation)
        low, high = degrees
        assert angle.min() >= low - 1e-6 and angle.max() <= high + 1e-6
        assert angle.min() < low + 1.0 and angle.max() > high - 1.0  # the whole range is used
        axis_z = np.abs(rotation_axes(rotation)[:, 2])
        assert 0.4 < axis_z.mean() < 0.6  # uniform axes: E|a_z| = ½


def test_split_rotation_ranges_in_the_data() -> None:
    arrays = NBodyGravity(**SMALL).generate()  # float64, before the cast to float32
    for split in ("train", "val", "test"):
        tilt = orbital_tilt_degrees(arrays, split)
        assert tilt.max() <= 10.0 + 1e-6 and tilt.max() > 5.0, split
    ood = orbital_tilt_degrees(arrays, "test_ood")
    assert (ood > 10.0).mean() > 0.8 and ood.max() > 80.0


def test_canonical_systems_follow_the_construction() -> None:
    systems = gravity.sample_systems(np.random.default_rng(0), 500, 3)
    star, planets = systems.mass[:, 0], systems.mass[:, 1:]
    assert 1.0 <= star.min() and star.max() <= 10.0 and 0.01 <= planets.min() and planets.max() <= 0.1
    assert np.all(systems.pos[:, 0] == 0) and np.all(systems.vel[:, 0] == 0)
    assert np.all(systems.pos[:, 1:, 2] == 0)
    radius = np.linalg.norm(systems.pos[:, 1:], axis=-1)
    assert 0.1 <= radius.min() and radius.max() <= 1.0
    circular = np.sqrt(star[:, None] / radius)
    assert np.abs(np.linalg.norm(systems.vel[:, 1:], axis=-1) - circular).max() < 0.06  # noise 0.01
    assert abs(np.abs(systems.vel[:, 1:, 2]).mean() - 0.01 * np.sqrt(2 / np.pi)) < 1e-3
    turn = np.sign(np.cross(systems.pos[:, 1:], systems.vel[:, 1:])[..., 2])
    assert 0.4 < (turn > 0).mean() < 0.6  # clockwise or counter-clockwise with probability ½


def test_generation_is_deterministic_per_seed() -> None:
    first, again = NBodyGravity(**SMALL).generate(), NBodyGravity(**SMALL).generate()
    assert all(np.array_equal(first[key], again[key]) for key in first)
    other = NBodyGravity(seed=7, **SMALL).generate()
    assert not np.array_equal(first["test/pos"], other["test/pos"])
    larger = NBodyGravity(train_size=50, eval_size=300).generate()
    assert np.array_equal(first["test/y"], larger["test/y"])  # splits draw from their own streams


def test_momentum_conserved() -> None:
    rng = np.random.default_rng(3)
    systems = gravity.transform(rng, gravity.sample_systems(rng, 200, 3), (0.0, 10.0))
    _, vel = gravity.simulate(systems)
    weight = systems.mass[..., None]  # (S, n, 1)
    np.testing.assert_allclose((weight * vel).sum(1), (weight * systems.vel).sum(1), atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_simulator_is_permutation_rotation_translation_equivariant(seed: int) -> None:
    rng = np.random.default_rng(seed)
    systems = gravity.sample_systems(rng, 8, 3)
    order = rng.permutation(4)
    rotation = gravity.random_rotations(rng, 1, (0.0, 180.0))[0]
    shift = rng.normal(0.0, 20.0, size=3)
    moved = Systems(systems.mass[:, order], systems.pos[:, order] @ rotation.T + shift,
                    systems.vel[:, order] @ rotation.T)
    # a short horizon: close planets amplify the rounding of the translated positions chaotically
    expected, _ = gravity.simulate(systems, steps=10)
    actual, _ = gravity.simulate(moved, steps=10)
    np.testing.assert_allclose(actual, expected[:, order] @ rotation.T + shift, atol=1e-8)


def test_metrics_name() -> None:
    task = NBodyGravity(**SMALL)
    y = torch.randn(5, 4, 3)
    batch = {"y": y, "mask": torch.ones(5, 4, dtype=torch.bool)}
    assert task.metrics(y, batch) == {"mse": 0.0}
    assert task.metric == "mse" and task.mode == "min"


@pytest.mark.parametrize("key, value", [
    ("train_size", 0), ("eval_size", -3), ("n_planets", 0), ("seed", -1), ("seed", 1.5),
])
def test_invalid_parameters_are_rejected(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"task\.{key}={value!r}.*expected"):
        get_task("nbody_gravity", **{key: value})
