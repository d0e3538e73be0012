"""The Ray Tune formats and internals symsweep depends on, checked against the installed Ray: a new Ray release
that changes any of them fails here, loudly, naming the versions tested (``orchestrator.recovery.RAY_TESTED``)
instead of producing wrong tables or a resume that reruns trials.

- ``experiment_state-*.json`` (read directly by ``orchestrator/records.py``): written by
  ``TuneController.save_to_dir`` as ``{"trial_data": [[trial JSON, runtime JSON], ...]}``; the trial JSON
  gives ``trial_id``, ``config``, ``status``, ``relative_logdir``; the runtime JSON ``num_failures`` and
  ``last_result``.
- what resume relies on: ``_create_unique_logdir_name`` (kept trial directories), ``Trial.should_recover``
  (no retry of deterministic failures), ``Tuner._local_tuner._run_config`` (callbacks of a moved experiment),
  the log line "Failed to restore the run state." (``RestoreGuard``), Tune's SIGUSR1 stop, and the JSON
  logger copying ``result.json`` back from storage when a trial with a checkpoint restarts.
"""

from __future__ import annotations

import inspect
import json

import pytest
import ray
from ray.tune.execution import tune_controller
from ray.tune.experiment import trial as trial_module
from ray.tune.logger import json as json_logger
from ray.tune.logger import logger as base_logger

from orchestrator.records import read_trials
from orchestrator.recovery import RAY_SUPPORTED, RAY_TESTED

CHANGED = (f"Ray {ray.__version__} is installed; symsweep's experiment-state reader and resume were tested with "
           f"Ray {', '.join(RAY_TESTED)} (supported: ray{RAY_SUPPORTED}). This Ray changed: ")


def test_the_installed_ray_is_a_tested_release():
    assert ray.__version__ in RAY_TESTED, CHANGED + "version not tested; run tests/orchestrator/test_faults.py " \
                                                    "and this file with it, then add it to RAY_TESTED"


def test_the_project_pins_ray_to_the_supported_range():
    """pyproject.toml's ray requirement is the range RAY_SUPPORTED names (one place says which Ray we read)."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11 on")

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    (ray_requirement,) = [Requirement(line) for line in project["dependencies"] if Requirement(line).name == "ray"]
    assert ray_requirement.specifier == SpecifierSet(RAY_SUPPORTED), (str(ray_requirement), RAY_SUPPORTED)


def test_experiment_state_files_are_read_as_tune_writes_them(tmp_path):
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment.trial import Trial
    from ray.tune.registry import register_trainable

    def trainable(config):
        return None

    register_trainable("trainable", trainable)
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name=None)
    trial = Trial("trainable", config={"trainer.seed": 1}, trial_id="abcde_00000", experiment_tag="0_seed=1",
                  storage=storage)
    trial.relative_logdir = "trainable_abcde_00000_0_seed=1"
    trial.set_status(Trial.ERROR)
    trial.run_metadata.num_failures = 2
    trial.run_metadata.last_result = {"epoch": 3, "val_mse": 0.5, "training_iteration": 3}
    source = inspect.getsource(tune_controller.TuneController.save_to_dir)
    assert '"trial_data"' in source and "_get_trial_checkpoints" in source, CHANGED + "save_to_dir's layout"
    assert tune_controller.TuneController.CKPT_FILE_TMPL == "experiment_state-{}.json", CHANGED + "state file name"
    experiment = tmp_path / "exp"
    experiment.mkdir(exist_ok=True)
    (experiment / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(
        {"trial_data": [list(trial.get_json_state())], "runner_data": {}, "stats": {}}))
    (record,) = read_trials(experiment, {"trainer": {"epochs": 3}})
    assert (record.trial_id, record.params, record.dirname, record.state, record.num_failures) == (
        "abcde_00000", {"trainer.seed": 1}, "trainable_abcde_00000_0_seed=1", "errored", 2), CHANGED + "trial state"
    assert record.last["val_mse"] == 0.5, CHANGED + "last_result"


def test_the_tune_internals_resume_relies_on_are_there():
    from ray.tune import Tuner
    from ray.tune.experiment.trial import Trial

    parameters = inspect.signature(trial_module._create_unique_logdir_name).parameters.keys()
    assert parameters == {"root", "relative_logdir"}, CHANGED + "_create_unique_logdir_name"
    assert "_create_unique_logdir_name(" in inspect.getsource(Trial.init_local_path), CHANGED + "init_local_path"
    assert "should_recover()" in inspect.getsource(tune_controller.TuneController._process_trial_failure), \
        CHANGED + "_process_trial_failure"
    assert "_local_tuner" in inspect.getsource(Tuner.__init__), CHANGED + "Tuner._local_tuner"
    assert "Failed to restore the run state." in inspect.getsource(tune_controller.TuneController.__init__), \
        CHANGED + "the restore failure log line"
    assert "SIGUSR1" in inspect.getsource(__import__("ray.tune.tune", fromlist=["x"])._setup_signal_catching), \
        CHANGED + "Tune's SIGUSR1 stop"
    restore = inspect.getsource(base_logger.LoggerCallback._restore_from_remote)
    assert "if not trial.checkpoint" in restore, CHANGED + "result.json restore from storage"
    assert "_restore_from_remote(EXPR_RESULT_FILE" in inspect.getsource(json_logger.JsonLoggerCallback), \
        CHANGED + "JsonLoggerCallback.log_trial_start"


def test_the_internals_orchestrator_tune_patches_changes_are_there():
    """Atomic copies into the experiment and the storage of a restored searcher (``orchestrator.tune_patches``):
    the syncer's upload command, ``save_to_dir`` writing the state, ``resume`` restoring the searcher, and where
    the searchers keep the experiment's storage."""
    from ray.train._internal.storage import _FilesystemSyncer, _upload_to_fs_path
    from ray.tune.search.basic_variant import _TrialIterator, _VariantIterator
    from ray.tune.search.search_generator import SearchGenerator

    assert "_upload_to_fs_path" in inspect.getsource(_FilesystemSyncer._sync_up_command), CHANGED + "syncer upload"
    assert list(inspect.signature(_upload_to_fs_path).parameters) == ["local_path", "fs", "fs_path", "exclude"], (
        CHANGED + "_upload_to_fs_path's arguments")
    assert "experiment_state_file_name" in inspect.getsource(tune_controller.TuneController.save_to_dir), (
        CHANGED + "save_to_dir")
    assert "restore_from_dir" in inspect.getsource(tune_controller.TuneController.resume), CHANGED + "resume"
    iterator = inspect.getsource(_TrialIterator.__init__)
    assert "self.unresolved_spec = unresolved_spec" in iterator and "self.variants = None" in iterator, (
        CHANGED + "_TrialIterator")
    assert "self.iterable = list(iterable)" in inspect.getsource(_VariantIterator.__init__), CHANGED + "variants"
    assert "self._experiment = experiment_list[0]" in inspect.getsource(SearchGenerator.add_configurations), (
        CHANGED + "SearchGenerator's experiment")
    generator = inspect.getsource(SearchGenerator)  # the stopping rule's searcher asked anew after a resume
    assert "self._finished = state[\"finished\"]" in generator and "self.searcher = searcher" in generator, (
        CHANGED + "SearchGenerator's finished flag and searcher")
