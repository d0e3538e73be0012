"""Hydra users at home: ``--cfg job`` prints the composed config and starts nothing, ``--help`` lists the config
groups and their options, ``-m`` is a no-op for launch (and refused for the one-configuration commands),
``hydra.run.dir=`` and other Hydra runtime settings are refused naming the symsweep keys, ``--config-dir DIR``
adds and replaces config groups and presets, and ``hydra.searchpath=[file://DIR]`` adds them too.

Everything runs in-process through ``orchestrator.cli.main``; every launch here is a ``--cfg`` or a ``--dry-run``,
so nothing is ever started (also not by the code before these options existed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import compose

QUICK = ["experiment=quickstart", "trainer.lr=0.1,0.2", "symmetrizer.noise_scale=0.5"]


def one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


# -- --cfg job ------------------------------------------------------------------------------------------
def test_cfg_job_prints_the_composed_config_and_starts_nothing(tmp_path, capsys):
    overrides = [f"storage={tmp_path}", "name=x", *QUICK]
    assert main(["launch", *overrides, "--cfg", "job"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == compose(overrides)  # command-line sweeps as sweep.params entries, pins applied
    assert printed["sweep"]["params"]["trainer.lr"] == {"grid": [0.1, 0.2]}
    assert "symmetrizer.noise_scale" not in printed["sweep"]["params"]
    assert list(tmp_path.iterdir()) == []  # no experiment directory: nothing started or written
    assert main(["launch", *overrides, "-c", "all", "--package", "sweep.params"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# @package sweep.params\n")
    assert yaml.safe_load(out) == printed["sweep"]["params"]


@pytest.mark.parametrize("command", ["train", "equivariance"])
def test_cfg_job_of_the_one_configuration_commands(command, tmp_path, capsys):
    overrides = [f"storage={tmp_path}", "experiment=quickstart", "trainer.epochs=1"]
    assert main([command, *overrides, "--cfg", "job", "-p", "trainer"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == compose(overrides)["trainer"] and printed["epochs"] == 1
    assert list(tmp_path.iterdir()) == []  # train wrote no workdir


def test_cfg_refusals_are_one_line(capsys):
    assert main(["launch", "experiment=quickstart", "--cfg", "hydra"]) == 2
    one_error_line(capsys, "--cfg hydra", "--cfg job")
    assert main(["launch", "experiment=quickstart", "--package", "trainer"]) == 2
    one_error_line(capsys, "--package trainer", "--cfg job --package trainer")
    assert main(["launch", "experiment=quickstart", "--cfg", "job", "-p", "trainer.nope"]) == 2
    one_error_line(capsys, "trainer has no key 'nope'", "allowed: epochs, batch_size")


# -- --help ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--help"], ["launch", "--help"], ["train", "--help"]])
def test_help_lists_the_config_groups_and_their_options(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "config groups" in out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if ":" in line}
    assert "digits_rot, exp, exp_classify" in lines["task"]
    assert "sn_e" in lines["group"] and "S_n x E(d)" in out  # the files, then the registry's spellings
    assert "transformer" in lines["model"] and "ps_fixed_noise" in lines["symmetrizer"]
    assert "quickstart" in out and "ps_nbody_cpu" in out  # experiment presets (wrapped over lines)
    assert "cluster: local, remote" in out


# -- -m / --multirun ------------------------------------------------------------------------------------
def test_multirun_is_accepted_by_launch_and_changes_nothing(tmp_path, capsys):
    argv = ["launch", f"storage={tmp_path}", "name=x", *QUICK, "--dry-run", "--json"]
    assert main(argv) == 0
    plain = capsys.readouterr()
    assert main(["launch", "-m", *argv[1:]]) == 0 and main(["launch", *argv[1:], "--multirun"]) == 0
    both = capsys.readouterr()
    assert [json.loads(line) for line in both.out.splitlines()] == [json.loads(plain.out)] * 2
    assert both.err.splitlines() == ["symsweep launch: -m/--multirun is not needed: symsweep always sweeps what "
                                     "a,b,c and sweep.params say"] * 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "equivariance"])
def test_multirun_of_a_one_configuration_command_is_refused_naming_launch(command, tmp_path, capsys):
    assert main([command, f"storage={tmp_path}", "-m", "trainer.epochs=1"]) == 2
    one_error_line(capsys, "-m/--multirun", f"symsweep {command} runs one configuration", "symsweep launch")
    assert list(tmp_path.iterdir()) == []


# -- hydra.* runtime settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("override,instead", [
    ("hydra.run.dir=/tmp/elsewhere", "storage=DIR and name=NAME"),
    ("hydra.sweep.dir=/tmp/elsewhere", "storage=DIR and name=NAME"),
    ("hydra.sweep.subdir=x", "storage=DIR and name=NAME"),
    ("hydra/launcher=basic", "cluster="),
    ("hydra.mode=MULTIRUN", "always sweeps"),
    ("hydra.job.name=x", "hydra.searchpath"),
])
def test_hydra_runtime_settings_are_refused_naming_the_symsweep_keys(override, instead, tmp_path, capsys):
    assert main(["launch", f"storage={tmp_path}", "experiment=quickstart", override, "--dry-run"]) == 2
    one_error_line(capsys, override, instead)
    assert list(tmp_path.iterdir()) == []


# -- --config-dir and hydra.searchpath ------------------------------------------------------------------
MY_SWEEP = """# @package _global_
defaults:
  - override /task: nbody
  - override /group: sn_e
sweep:
  params:
    symmetrizer.method: {grid: [ps, ga]}
    trainer.lr: {grid: [0.001, 0.01, 0.1]}
  seeds: 2
trainer:
  epochs: 2
"""


def user_configs(root: Path) -> Path:
    """A researcher's config directory: a preset of their own and a model file replacing symsweep's."""
    (root / "experiment").mkdir(parents=True)
    (root / "experiment" / "my_sweep.yaml").write_text(MY_SWEEP)
    (root / "model").mkdir()
    (root / "model" / "mlp.yaml").write_text("name: mlp\nwidths: [7, 7]\nactivation: gelu\ndropout: 0.0\n"
                                             "residual: true\n")
    return root


def test_config_dir_adds_presets_and_replaces_files(tmp_path, capsys):
    mine = user_configs(tmp_path / "mine")
    storage = tmp_path / "runs"
    argv = ["launch", f"storage={storage}", "name=x", "experiment=my_sweep", "--dry-run", "--json"]
    assert main([*argv, "--config-dir", str(mine)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["swept"] == {"symmetrizer.method": {"grid": ["ps", "ga"]}, "trainer.lr": {"grid": [0.001, 0.01, 0.1]}}
    assert plan["n_trials"] == 2 * 3 * 2
    assert main(["launch", "-cd", str(mine), "experiment=my_sweep", "--cfg", "job", "-p", "model"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["widths"] == [7, 7]  # the user's model/mlp.yaml wins
    assert main(["launch", "experiment=quickstart", "--cfg", "job", "-p", "model"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["widths"] == [64, 64]  # without it: symsweep's
    assert main(["train", "--config-dir", str(mine), "experiment=my_sweep", "--cfg", "job"]) == 0
    trial = yaml.safe_load(capsys.readouterr().out)  # the trial's sections, what train's config.json gets
    assert list(trial) == ["task", "group", "symmetrizer", "model", "trainer", "remul"]
    assert trial["task"]["name"] == "nbody" and trial["model"]["widths"] == [7, 7]
    assert not storage.exists()


def test_config_dir_errors_are_one_line(tmp_path, capsys):
    mine = user_configs(tmp_path / "mine")
    assert main(["launch", "--config-dir", str(mine), "experiment=my_swep", "--dry-run"]) == 2
    err = one_error_line(capsys, "experiment/my_swep", "allowed experiment:")
    assert "my_sweep" in err and "quickstart" in err  # the user's presets and symsweep's
    assert main(["launch", "--config-dir", str(tmp_path / "nowhere"), "experiment=my_sweep", "--dry-run"]) == 2
    one_error_line(capsys, "--config-dir", "does not exist", "DIR/experiment/my_sweep.yaml")
    assert main(["launch", "experiment=my_sweep", "--dry-run"]) == 2  # without the directory: not found
    one_error_line(capsys, "experiment/my_sweep")


def test_searchpath_adds_a_config_directory_and_a_missing_one_is_refused(tmp_path, capsys):
    mine = user_configs(tmp_path / "mine")
    assert main(["launch", f"hydra.searchpath=[file://{mine}]", "experiment=my_sweep", "--cfg", "job"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["task"]["name"] == "nbody" and printed["trainer"]["epochs"] == 2
    assert printed["model"]["widths"] == [128, 128]  # searched after configs/: symsweep's own mlp.yaml wins
    assert main(["launch", f"hydra.searchpath=[file://{tmp_path / 'nowhere'}]", "--dry-run"]) == 2
    one_error_line(capsys, "hydra.searchpath", "nowhere", "is not available")
