"""``symsweep equivariance``: E and E' of a symmetrized model and of its bare base model, from a
fresh initialisation or from a trial checkpoint.

E and E' are measured with fresh Monte-Carlo samples of p(g|x), so only a deterministic
symmetrization is exactly equivariant call by call: PS over S_n x E(3) at noise scale η = 0 with
one sample (canonicalization by the Vector Neurons interface). With η > 0 the estimate of a
finite N is equivariant in distribution only and E is its Monte-Carlo error.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

NBODY_PS = ["task=nbody", "task.train_size=6", "task.eval_size=4", "group=sn_e", "symmetrizer=ps",
            "model=transformer", "model.layers=1", "model.width=8", "model.heads=2", "model.feedforward=8",
            "symmetrizer.interface.hidden=4"]
EXACT = ["symmetrizer.noise_scale=0", "symmetrizer.train_samples=1", "symmetrizer.eval_samples=1"]
MEASURE = ["--samples", "4", "--batch", "4", "--json"]


def measure(capsys, argv: list[str]) -> dict:
    assert main(["equivariance", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_ps_at_zero_noise_is_exactly_equivariant_and_its_base_is_not(capsys):
    result = measure(capsys, [*NBODY_PS, *EXACT, *MEASURE])
    assert result["E"] < 1e-4 and result["E_prime"] < 1e-4
    assert result["E_base"] > 1e-3 and result["E_prime_base"] > 1e-3
    assert (result["group"], result["method"], result["task"], result["model"]) == ("S_n x E(3)", "ps", "nbody",
                                                                                     "transformer")
    assert (result["samples"], result["batch"], result["split"], result["checkpoint"]) == (4, 4, "test", None)


def test_ps_with_noise_is_equivariant_in_distribution_only(capsys):
    exact = measure(capsys, [*NBODY_PS, *EXACT, *MEASURE])
    noisy = measure(capsys, [*NBODY_PS, "symmetrizer.eval_samples=2", *MEASURE])
    assert noisy["E"] > 100 * exact["E"]  # fresh noise per call: a Monte-Carlo error, not rounding
    assert noisy["E_base"] == exact["E_base"]  # the same base model (same seed)


def test_checkpoint_weights_are_loaded(tmp_path, capsys):
    workdir = tmp_path / "trial"
    assert main(["train", *NBODY_PS, *EXACT, "trainer.epochs=1", "trainer.batch_size=3", "trainer.lr=0.05",
                 "--workdir", str(workdir)]) == 0
    checkpoint = str(workdir / "checkpoint_000001")
    capsys.readouterr()
    trained = measure(capsys, ["--checkpoint", checkpoint, *MEASURE])
    fresh = measure(capsys, [*NBODY_PS, *EXACT, "trainer.epochs=1", "trainer.batch_size=3", "trainer.lr=0.05",
                             *MEASURE])
    assert trained["checkpoint"] == checkpoint and trained["group"] == "S_n x E(3)" and trained["method"] == "ps"
    assert trained["E"] < 1e-4  # still exactly equivariant after training
    assert trained["E_base"] != fresh["E_base"]  # the trained weights, not a fresh initialisation


def test_human_readable_output(capsys):
    assert main(["equivariance", *NBODY_PS, *EXACT, "--samples", "2", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "nbody: ps over S_n x E(3) (transformer base)" in out
    assert "symmetrized  E =" in out and "base model   E =" in out


def test_overrides_with_a_checkpoint_exit_2(tmp_path, capsys):
    assert main(["equivariance", "--checkpoint", str(tmp_path / "checkpoint_000001"), "trainer.seed=1"]) == 2
    error = capsys.readouterr().err
    assert "--checkpoint" in error and "trainer.seed=1" in error


def test_bad_options_exit_2(capsys):
    assert main(["equivariance", *NBODY_PS, "--samples", "0"]) == 2
    assert "--samples=0" in capsys.readouterr().err
    assert main(["equivariance", *NBODY_PS, "symmetrizer.temperature=0"]) == 2
    assert "symmetrizer.temperature" in capsys.readouterr().err


def test_exact_gap_separates_exactness_from_monte_carlo_spread(capsys):
    noisy = measure(capsys, [*NBODY_PS, "symmetrizer.eval_samples=2", "--exact", *MEASURE])
    assert noisy["E"] > 1e-3  # fresh noise: a Monte-Carlo spread ...
    assert noisy["exact_gap"] < 1e-9  # ... of an exactly equivariant model (float64 round-off)
    assert noisy["exact_gap_base"] > 1e-3  # the bare base model is not equivariant
    assert "exact_gap" not in measure(capsys, [*NBODY_PS, *MEASURE])


def test_exact_gap_text_output(capsys):
    assert main(["equivariance", *NBODY_PS, "--exact", "--samples", "2", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "Monte-Carlo spread" in out and "exact (coupled, float64) gap: symmetrized" in out
    gap = float(out.split("gap: symmetrized ")[1].split()[0])
    assert gap < 1e-9
