"""``symsweep launch`` rejects bad configurations before anything starts: exit status 2, one line
naming the key, no Ray started and no directory written."""

from __future__ import annotations

import pytest

from orchestrator.cli import main
from orchestrator.config import compose
from orchestrator.plan import validate
from orchestrator.tuner import search_space

INVALID = [
    (["symmetrizer.noise_scale=-1"], "symmetrizer.noise_scale"),
    (["symmetrizer.train_samples=0"], "symmetrizer.train_samples"),
    (["symmetrizer.temperature=0"], "symmetrizer.temperature"),
    (["symmetrizer.method=magic"], "symmetrizer.method"),
    (["trainer.lr=-0.1"], "trainer.lr"),
    (["trainer.epochs=0"], "trainer.epochs"),
    (["trainer.optimizer=sgd"], "trainer.optimizer"),
    (["trainer.lrr=3"], "trainer.lrr"),
    (["group=sn_e"], "group.name"),
    (["task=digits_rot", "group=sn"], "group.name"),
    (["task=nbody", "group=sn_e", "group.dim=2"], "group.dim"),
    (["task=nbody", "group=sn", "symmetrizer=fa"], "symmetrizer.method"),
    (["model=cnn"], "model.name"),
    (["model.depth=3"], "model.depth"),
    (["+sweep.params.symmetrizer.noise_scale={uniform: [1, 0]}"], "sweep.params.symmetrizer.noise_scale"),
    (["+sweep.params.trainer.nothing={grid: [1, 2]}"], "sweep.params.trainer.nothing"),
    (["+sweep.params.trainer.lr={loguniform: [0, 1]}"], "sweep.params.trainer.lr"),
    (["sweep.search=bayes"], "sweep.search"),
    (["sweep.seeds=0"], "sweep.seeds"),
    (["sweep.scheduler=hyperband"], "sweep.scheduler"),
    (["cluster.gpus_per_trial=-1"], "cluster.gpus_per_trial"),
    (["cluster.cpus_per_trial=0"], "cluster.cpus_per_trial"),
    (["name=a/b"], "name"),
    (["logging.wandb.mode=sometimes"], "logging.wandb.mode"),
    (["symmetrizer.temperature=1,0"], "symmetrizer.temperature"),  # one bad value in a command-line sweep
    (["symmetrizer=fa", "+sweep.params.group.name={grid: [S_n, C_k]}"], "group.name"),
]


@pytest.mark.parametrize("overrides,key", INVALID, ids=[key + f"-{i}" for i, (_, key) in enumerate(INVALID)])
def test_invalid_configurations_name_the_key_and_start_nothing(overrides, key, tmp_path, capsys):
    import ray

    status = main(["launch", f"storage={tmp_path}", "name=should-not-exist", *overrides])
    err = capsys.readouterr().err
    assert status == 2, err
    assert key in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "should-not-exist").exists()
    assert not ray.is_initialized()


def test_gpus_on_a_machine_without_them_fail_before_ray_starts(tmp_path, capsys):
    import ray
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    status = main(["launch", f"storage={tmp_path}", "name=gpu", "cluster.gpus_per_trial=1"])
    err = capsys.readouterr().err
    assert status == 2 and "cluster.gpus_per_trial" in err and "no GPU" in err
    assert not (tmp_path / "gpu").exists() and not ray.is_initialized()


def test_launching_into_an_existing_experiment_says_how_to_resume(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    status = main(["launch", f"storage={tmp_path}", "name=taken"])
    err = capsys.readouterr().err
    assert status == 2 and "symsweep resume" in err and str(tmp_path / "taken") in err


def test_command_line_sweeps_become_grid_params():
    config = compose(["symmetrizer.noise_scale=0.1,1,10", "sweep.seeds=3"])
    assert config["sweep"]["params"]["symmetrizer.noise_scale"] == {"grid": [0.1, 1, 10]}
    plan = validate(config)
    assert plan.checked == 3
    space = search_space(plan)
    assert space["symmetrizer.noise_scale"] == {"grid_search": [0.1, 1, 10]}
    assert space["trainer.seed"] == {"grid_search": [0, 1, 2]}


def test_the_quickstart_preset_is_valid():
    config = compose(["experiment=quickstart"])
    assert validate(config).checked == 8  # 2 methods x 2 noise scales x 2 sample counts
    assert config["sweep"]["seeds"] == 2
