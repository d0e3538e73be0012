"""One source of truth for every setting: the typed sections of ``workers.schema`` hold each key's
default, allowed values and meaning; the YAML tree states the same defaults, the README's config reference is
generated from the schema, and a plain-dict config gets the same model as the Hydra-composed one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from workers import schema
from workers.methods import get_method, method_names
from workers.models import factory
from workers.schema import SECTIONS, SymmetrizerSettings, TrainerSettings, load
from workers.settings import check_config
from workers.symmetry import Symmetrizer

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
BASE_FILES = {"symmetrizer": "symmetrizer/ps.yaml", "trainer": "trainer/default.yaml", "sweep": "sweep/none.yaml",
              "cluster": "cluster/local.yaml", "logging": "logging/default.yaml"}
NBODY = ["task=nbody", "group=sn_e", "task.train_size=20", "task.eval_size=10", "model.widths=[16]"]


def _yaml(relative: str) -> dict:
    return yaml.safe_load((CONFIGS / relative).read_text())


def _base_section(name: str) -> dict:
    if name == "remul":  # not a config group: a section of config.yaml
        return _yaml("config.yaml")["remul"]
    return _yaml(BASE_FILES[name])


# -- the YAML tree ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SECTIONS))
def test_the_base_yaml_holds_exactly_the_schema_defaults(name):
    assert _base_section(name) == schema.defaults(SECTIONS[name])


@pytest.mark.parametrize("path", sorted((CONFIGS / "symmetrizer").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_method_file_is_allowed_by_the_schema(path):
    values = {key: value for key, value in yaml.safe_load(path.read_text()).items() if key != "defaults"}
    merged = {**_base_section("symmetrizer"), **values}
    assert load(SymmetrizerSettings, merged, "symmetrizer").method == path.stem


# -- the README's config reference ----------------------------------------------------------------------
def test_the_readme_holds_the_config_reference_generated_from_the_schema():
    """Each setting's meaning is written once, in ``workers.schema``; the README's table is generated from it and
    the registries (``python -m orchestrator.reference --write``)."""
    from orchestrator import reference

    held = reference.readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert held == reference.block(), "README.md's config reference is stale: python -m orchestrator.reference --write"


def test_the_generated_reference_names_every_key_its_default_and_every_choice():
    from orchestrator import reference

    rows = {key: (default, allowed) for key, default, allowed, _ in reference.schema_rows()}
    for name, cls in SECTIONS.items():
        for key, (default, rule, _) in schema.describe(cls, name).items():
            assert rows[key][0] == reference._value(default) and rows[key][1] == rule, key
    table = reference.table()
    assert "augment, remul |" in table and "`S_n x SE(d)`" in table and "`egnn`" in table  # the registries' names


# -- loading -------------------------------------------------------------------------------------------
def test_load_fills_defaults_converts_and_names_the_key():
    settings = load(SymmetrizerSettings, {"method": "ga", "noise_scale": 2, "interface": {"hidden": 8}}, "symmetrizer")
    assert settings.noise_scale == 2.0 and isinstance(settings.noise_scale, float)
    assert settings.train_samples == 10 and settings.entropy_weight == 0.1 and settings.interface.hidden == 8
    with pytest.raises(ValueError, match=r"^symmetrizer\.noise_scale=-1 is not allowed; expected a number ≥ 0$"):
        load(SymmetrizerSettings, {"noise_scale": -1}, "symmetrizer")
    with pytest.raises(ValueError, match=r"^symmetrizer\.interface\.knn=True is not allowed; expected null or an"):
        load(SymmetrizerSettings, {"interface": {"knn": True}}, "symmetrizer")
    with pytest.raises(ValueError, match=r"^trainer\.epoch=3 is not a trainer option; allowed: epochs, "):
        load(TrainerSettings, {"epoch": 3}, "trainer")


# -- one model, whichever way the config came ------------------------------------------------------------
def _same_model(composed: dict, plain: dict) -> None:
    from workers.runtime import build_seeded

    hydra, bare = check_config(composed), check_config(plain)
    assert (bare.symmetrizer, bare.trainer, bare.remul) == (hydra.symmetrizer, hydra.trainer, hydra.remul)
    first, second = build_seeded(hydra.model, 3).eval(), build_seeded(bare.model, 3).eval()
    assert type(first) is type(second)
    assert getattr(first, "train_samples", 1) == getattr(second, "train_samples", 1)
    assert getattr(first, "eval_samples", 1) == getattr(second, "eval_samples", 1)
    one, two = first.state_dict(), second.state_dict()
    assert one.keys() == two.keys() and all(torch.equal(one[key], two[key]) for key in one)
    data = hydra.task.load().splits["train"]
    batch = {key: value[:4] for key, value in data.items()}
    inputs = {name: batch[name] for name in hydra.task.input_kinds}
    with torch.no_grad():
        out = [model(inputs, batch.get("mask"), generator=torch.Generator().manual_seed(5)).output
               if isinstance(model, Symmetrizer) else model(inputs, batch.get("mask")).output
               for model in (first, second)]
    assert torch.equal(out[0], out[1])


DEFAULT_MODEL = ["task=nbody", "group=sn_e", "task.train_size=20", "task.eval_size=10"]  # model: mlp's YAML


@pytest.mark.parametrize("overrides", [[], DEFAULT_MODEL, [*DEFAULT_MODEL, "symmetrizer=canonical"],
                                       [*DEFAULT_MODEL, "symmetrizer=ga"], [*DEFAULT_MODEL, "symmetrizer=remul"]],
                         ids=["default", "ps", "canonical", "ga", "remul"])
def test_a_plain_dict_naming_only_the_method_builds_the_hydra_model(overrides):
    """Hydra composition (YAML defaults) and a plain dict with only ``task``, ``group.name`` and
    ``symmetrizer.method`` (schema and model-signature defaults) give identical settings, identical
    parameters and identical outputs on the same input and noise."""
    from orchestrator.config import compose, trial_config

    composed = json.loads(json.dumps(trial_config(compose(overrides))))  # plain JSON data, as Ray ships it
    plain = {"task": composed["task"], "group": {"name": composed["group"]["name"]},
             "symmetrizer": {"method": composed["symmetrizer"]["method"]}}
    assert check_config(plain).symmetrizer == SymmetrizerSettings(method=composed["symmetrizer"]["method"])
    _same_model(composed, plain)


@pytest.mark.parametrize("path", sorted((CONFIGS / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_yaml_states_its_constructor_defaults(path):
    """A model's keys are its constructor's arguments: the YAML and the signature give the same default."""
    import inspect

    values = yaml.safe_load(path.read_text())
    parameters = inspect.signature(factory.model_class(values.pop("name")).__init__).parameters
    for key, value in values.items():
        default = parameters[key].default
        assert (list(default) if isinstance(default, tuple) else default) == value, f"{path.stem}: model.{key}"


@pytest.mark.parametrize("path", sorted((CONFIGS / "task").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_task_yaml_states_exactly_its_task_defaults(path):
    """A task's keys are its generator's parameters and ``Task.defaults`` is their one source: the YAML names
    the task (its file name) and states the same values in the same order, so the composed config and a plain
    dict naming only the task build the same task."""
    from orchestrator.config import compose
    from workers.tasks import get_task, task_class

    values = yaml.safe_load(path.read_text())
    assert values.pop("name") == path.stem
    assert list(values.items()) == list(task_class(path.stem).defaults.items())
    composed = dict(compose([f"task={path.stem}"])["task"])
    assert get_task(composed.pop("name"), **composed).params == get_task(path.stem).params


def test_every_task_has_its_yaml():
    from workers.tasks import REGISTRY

    assert {path.stem for path in (CONFIGS / "task").glob("*.yaml")} == set(REGISTRY)


def test_the_one_sample_methods_build_with_one_sample():
    """A method's ``one_sample`` fact (unused_keys, device sharding) agrees with what the library builds, and
    its other facts with the library's own method of the same name."""
    from orchestrator.config import compose, trial_config
    from workers.symmetry import methods as library

    base = trial_config(compose(NBODY))
    for method in method_names(symmetrized=True):
        config = {**base, "symmetrizer": {"method": method, "train_samples": 6, "eval_samples": 4}}
        model = factory.build_model(check_config(config).model)
        expected = (1, 1) if get_method(method).one_sample else (6, 4)
        assert (model.train_samples, model.eval_samples) == expected, method
        assert library.get_method(method).learned == get_method(method).learned, method
        assert library.get_method(method).one_sample == get_method(method).one_sample, method
    assert set(method_names(shardable=True)) | set(method_names(one_sample=True)) == set(method_names())


def test_build_model_checks_nothing_again(monkeypatch):
    """A checked plan builds without ``factory.check`` (a separation trial builds a hundred models)."""
    from orchestrator.config import compose, trial_config

    plan = check_config(trial_config(compose(NBODY))).model

    def refuse(*args, **kwargs):
        raise AssertionError("factory.check called while building")

    monkeypatch.setattr(factory, "check", refuse)
    monkeypatch.setattr(factory, "load", refuse)
    assert isinstance(factory.build_model(plan), Symmetrizer)


def test_a_checkpoint_of_a_one_sample_method_resumes_across_the_sample_count_default():
    """Written when canonical's YAML set eval_samples 1: the count is not read by canonical, so resuming with
    the base value is no evaluation change (``check_resume`` would refuse an unfinished one); for PS it is."""
    from orchestrator.config import compose, trial_config
    from workers.resumption import evaluation_changes

    for method, changed in (("canonical", []), ("ps", ["symmetrizer.eval_samples=10 (checkpoint: 1)"])):
        config = trial_config(compose([*NBODY, f"symmetrizer={method}"]))
        saved = json.loads(json.dumps(config))
        saved["symmetrizer"]["eval_samples"] = 1
        assert evaluation_changes(check_config(saved), check_config(config)) == changed, method
