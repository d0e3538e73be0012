"""symsweep's changes to Ray Tune's internals (``orchestrator.tune_patches``), without a sweep: files reach the
experiment whole or not at all, a state file Tune did not finish is never copied, a failure to write is
recorded once and stops the sweep, and a restored searcher creates its new trials in the resumed folder."""

from __future__ import annotations

import errno
import json
import shutil
import signal

import pytest

from orchestrator import tune_patches


@pytest.fixture(autouse=True)
def fresh():
    tune_patches.reset()
    yield
    tune_patches.reset()


@pytest.fixture
def caught_stop():
    """The SIGUSR1 a storage failure sends (Tune's stop), counted instead of stopping pytest."""
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda *args: seen.append(args[0]))
    yield seen
    signal.signal(signal.SIGUSR1, previous)


def staged(tmp_path):
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    (staging / "trainable_a").mkdir(parents=True)
    storage.mkdir()
    return staging, storage


def test_a_reader_never_sees_a_part_of_a_file_being_replaced(tmp_path, monkeypatch):
    """The window behind the duplicated reports: a trial that starts reads its ``result.json`` in the experiment
    while the driver copies it there again. Forced here at its worst point, half of the new file written: the
    reader must see the old file, whole (Ray's own copy truncates first, so it would see a part of it)."""
    staging, storage = staged(tmp_path)
    old = "".join(json.dumps({"epoch": epoch}) + "\n" for epoch in (2, 4, 6, 8))
    (staging / "trainable_a" / "result.json").write_text(old)
    tune_patches.upload_atomically(str(staging), None, str(storage))
    from workers.trial import recorded_epochs

    assert recorded_epochs(storage / "trainable_a") == {2, 4, 6, 8}
    (staging / "trainable_a" / "result.json").write_text(old + json.dumps({"epoch": 10}) + "\n")
    seen = []
    copy = shutil.copyfile

    def copy_halfway(source, destination):
        data = open(source).read()
        with open(destination, "w") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            seen.append(recorded_epochs(storage / "trainable_a"))  # a trial starting right now
        return copy(source, destination)

    monkeypatch.setattr(shutil, "copyfile", copy_halfway)
    tune_patches.upload_atomically(str(staging), None, str(storage))
    assert seen == [{2, 4, 6, 8}]
    assert recorded_epochs(storage / "trainable_a") == {2, 4, 6, 8, 10}
    assert not [p.name for p in (storage / "trainable_a").iterdir() if p.name.endswith(".tmp")]


def test_unchanged_files_are_not_copied_again(tmp_path, monkeypatch):
    staging, storage = staged(tmp_path)
    (staging / "trainable_a" / "result.json").write_text("{}\n")
    (staging / "basic-variant-state-x.json").write_text("{}")
    copies = []
    copy = shutil.copyfile
    monkeypatch.setattr(shutil, "copyfile", lambda s, d: (copies.append(s), copy(s, d))[1])
    tune_patches.upload_atomically(str(staging), None, str(storage))
    tune_patches.upload_atomically(str(staging), None, str(storage))
    assert len(copies) == 2
    (storage / "trainable_a" / "result.json").unlink()  # gone from the experiment: copied again
    tune_patches.upload_atomically(str(staging), None, str(storage))
    assert len(copies) == 3 and (storage / "trainable_a" / "result.json").is_file()


def test_a_state_file_tune_did_not_finish_is_never_copied(tmp_path):
    staging, storage = staged(tmp_path)
    state = staging / "experiment_state-2026-01-01_00-00-00.json"
    state.write_text('{"trial_data": [], "runner_data": {}}')
    tune_patches.upload_atomically(str(staging), None, str(storage))
    tune_patches._complete[str(state)] = tune_patches._signature(str(state))  # what save_to_dir records
    tune_patches.upload_atomically(str(staging), None, str(storage))
    good = (storage / state.name).read_text()
    state.write_text('{"trial_data": [["trunc')  # Tune's json.dump cut short (its disk is full)
    tune_patches.upload_atomically(str(staging), None, str(storage))
    assert (storage / state.name).read_text() == good


def test_a_state_file_rewritten_while_it_is_copied_never_replaces_the_good_one(tmp_path, monkeypatch):
    """The race behind an empty ``experiment_state-*.json`` on a full disk: the syncer's thread checks that Tune
    finished the file, then Tune's next save truncates it (``open('w')``) while the thread copies it."""
    staging, storage = staged(tmp_path)
    state = staging / "experiment_state-2026-01-01_00-00-00.json"
    state.write_text('{"trial_data": [], "runner_data": {}}')
    tune_patches._complete[str(state)] = tune_patches._signature(str(state))
    tune_patches.upload_atomically(str(staging), None, str(storage))
    good = (storage / state.name).read_text()
    assert json.loads(good) == {"trial_data": [], "runner_data": {}}
    state.write_text('{"trial_data": [1], "runner_data": {}}')
    tune_patches._complete[str(state)] = tune_patches._signature(str(state))  # a new state, finished
    copy = shutil.copyfile

    def truncated_meanwhile(source, destination):  # Tune starts its next save during the copy
        copied = copy(source, destination)
        if source == str(state):
            state.write_text("")
        return copied

    monkeypatch.setattr(tune_patches.shutil, "copyfile", truncated_meanwhile)
    tune_patches.upload_atomically(str(staging), None, str(storage))
    assert (storage / state.name).read_text() == good  # the copy was thrown away: the last good state stays
    assert not list(storage.glob(".*.tmp"))


def test_a_full_disk_keeps_the_last_good_file_and_stops_the_sweep_once(tmp_path, monkeypatch, caught_stop):
    staging, storage = staged(tmp_path)
    (staging / "trainable_a" / "result.json").write_text("old\n")
    tune_patches.upload_atomically(str(staging), None, str(storage))
    (staging / "trainable_a" / "result.json").write_text("new\n")

    def full(source, destination):
        open(destination, "w").write("ne")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    for _ in range(3):
        with pytest.raises(tune_patches.StorageFailure):
            tune_patches.upload_atomically(str(staging), None, str(storage))
    assert (storage / "trainable_a" / "result.json").read_text() == "old\n"
    assert [p.name for p in (storage / "trainable_a").iterdir()] == ["result.json"]  # no temporary file left
    assert caught_stop == [signal.SIGUSR1]
    line = tune_patches.storage_failure()
    written = storage / "trainable_a" / "result.json"
    assert line.startswith(f"the disk is full: cannot write {written} (") and "MiB free" in line


def test_sync_errors_of_a_recorded_failure_are_not_logged_again():
    import logging

    tune_patches.atomic_storage()
    failure = tune_patches.StorageFailure(errno.ENOSPC, "the disk is full: cannot write x (0.0 MiB free)")
    record = logging.LogRecord("ray.train._internal.syncer", logging.WARNING, __file__, 1,
                               "Last sync command failed with the following error:\n%s", ("... StorageFailure: x",),
                               None)
    assert not tune_patches._FILTER.filter(record)
    record = logging.LogRecord("ray.tune.execution.experiment_state", logging.ERROR, __file__, 1, "Saving failed",
                               (), (type(failure), failure, None))
    assert not tune_patches._FILTER.filter(record)
    assert all(tune_patches._FILTER in logging.getLogger(name).filters for name in tune_patches.SYNC_LOGGERS)


def test_the_patches_reach_rays_syncer_and_controller():
    import pyarrow.fs
    from ray.train._internal.storage import _FilesystemSyncer
    from ray.tune.execution.tune_controller import TuneController

    tune_patches.atomic_storage()
    tune_patches.rebase_restored_searchers()
    syncer = _FilesystemSyncer(storage_filesystem=pyarrow.fs.LocalFileSystem())
    command, kwargs = syncer._sync_up_command(local_path="/a", uri="/b")
    assert command is tune_patches.upload_atomically and kwargs["fs_path"] == "/b"
    assert TuneController.save_to_dir.symsweep and TuneController.resume.symsweep


def test_a_restored_searcher_creates_its_trials_in_the_resumed_folder(tmp_path):
    """A searcher's pickled state names the storage of the launch; the trials it creates after a resume of a
    moved experiment must be set up in the new folder."""
    from ray import cloudpickle
    from ray.tune.experiment import Experiment
    from ray.tune.search import BasicVariantGenerator

    def trainable(config):
        return None

    launched = Experiment("exp", trainable, config={"x": {"grid_search": [1, 2, 3]}},
                          storage_path=str(tmp_path / "before"))
    searcher = BasicVariantGenerator()
    searcher.add_configurations([launched])
    searcher.next_trial()
    restored = BasicVariantGenerator()
    restored.set_state(cloudpickle.loads(cloudpickle.dumps(searcher.get_state())))  # as Tune saves it
    storages = tune_patches._searcher_storages(restored)
    assert storages and all(s.storage_fs_path == str(tmp_path / "before") for s in storages)
    for storage in storages:
        storage.storage_fs_path = str(tmp_path / "after")
    trial = restored.next_trial()
    assert trial.storage.experiment_fs_path == str(tmp_path / "after" / "exp")
