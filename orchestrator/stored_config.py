"""An experiment's configuration on disk: ``config.json`` for people to read, and symsweep's own record of the
configuration the experiment runs with (``.symsweep-config.json``), so that an edit of ``config.json`` between a
launch and a resume is found and named instead of silently running half of a sweep with other settings.

``resume`` compares the two key by key. Keys that cannot change what a trial computes (``results=False`` in
``workers.schema``: where trials run, retries, logging) may be accepted with ``--allow-changed KEY``; the record
then takes the new value and keeps a line of history. Any other edit is refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from orchestrator.folder import MISSING, Folder, FolderError

CONFIG = "config.json"
RECORD = ".symsweep-config.json"
FROM_THE_FOLDER = ("storage", "name")  # resume takes them from where the experiment is now


def save_config(config: Mapping[str, Any], path: Path, history: list | None = None) -> None:
    """``config.json`` and the record beside it (both replaced atomically, never through a link)."""
    folder = Folder(path)
    folder.write_text(CONFIG, json.dumps(config, indent=2, sort_keys=True))
    folder.write_text(RECORD, json.dumps({"config": config, "history": history or []}, indent=1, sort_keys=True))


def _read(folder: Folder, name: str, what: str) -> Any:
    """A JSON file of the experiment (``orchestrator.folder``'s bounded reader); None when it is missing."""
    if folder.kind(name) == MISSING:
        return None
    try:
        return folder.read_json(name)
    except FolderError as err:
        raise ValueError(f"{err}; {what}") from None


def load_config(path: Path) -> dict[str, Any]:
    """``config.json`` of an experiment: a one-line ValueError when it is missing or not a configuration."""
    folder = Folder(path)
    config = _read(folder, CONFIG, "it is written by symsweep launch and must not be edited: restore it from a copy "
                                   "of the experiment")
    if config is None:
        raise ValueError(f"{path} is not a symsweep experiment: expected a directory with config.json written by "
                         "symsweep launch")
    if not isinstance(config, dict) or not all(isinstance(config.get(key), dict) for key in ("cluster", "sweep")):
        raise ValueError(f"{folder.path / CONFIG} is not a symsweep configuration (a JSON object with cluster and "
                         "sweep sections); restore it from a copy of the experiment")
    return config


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, Mapping) or not node:
        return {prefix[:-1]: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def changed_keys(launched: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (launched value, value now)}`` for every leaf that differs (a missing key is ``None``)."""
    before, after = _flat(launched), _flat(now)
    return {key: (before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if key.split(".")[0] not in FROM_THE_FOLDER and before.get(key) != after.get(key)}


def _shown(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{key} {json.dumps(old)} -> {json.dumps(new)}" for key, (old, new) in changes.items())


def checked_config(path: Path, allow_changed: Iterable[str] = ()) -> dict[str, Any]:
    """``config.json`` as ``resume`` runs it: refused (one line naming each edited key with both values) when it
    differs from the record, except for keys in ``allow_changed`` that cannot change results; an accepted edit
    is written into the record (with a line of history), so the next resume needs no flag."""
    from workers.schema import changes_results

    config = load_config(path)
    record = _read(Folder(path), RECORD, "it is symsweep's record of the experiment's configuration; restore it from a "
                                  "copy of the experiment")
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ValueError(f"{path / RECORD} is missing or not symsweep's record of the configuration, so an edit of "
                         "config.json cannot be ruled out; restore the file from a copy of the experiment, or launch "
                         "the sweep again with another name=")
    allowed = set(allow_changed)
    for key in sorted(allowed):
        if changes_results(key):
            raise ValueError(f"--allow-changed {key}: {key} can change what the trials compute; allowed: keys that "
                             "cannot (cluster.address, cluster.num_cpus, cluster.max_failures, cluster.dashboard, "
                             "sweep.max_concurrent, logging.*); to run other settings launch a new experiment")
    changes = changed_keys(record["config"], config)
    refused = {key: change for key, change in changes.items() if key not in allowed}
    if refused:
        results = {key: change for key, change in refused.items() if changes_results(key)}
        if results:
            raise ValueError(f"{path / CONFIG} was edited after launch ({_shown(results)}): a resumed experiment runs "
                             "what it was launched with; restore those values, or launch a new experiment with them")
        flags = " ".join(f"--allow-changed {key}" for key in refused)
        raise ValueError(f"{path / CONFIG} was edited after launch ({_shown(refused)}); these keys do not change "
                         f"results: accept them with symsweep resume {path} {flags}, or restore config.json")
    if changes:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        history = list(record.get("history") or []) + [
            {"at": stamp, "key": key, "from": old, "to": new} for key, (old, new) in changes.items()]
        save_config(config, path, history)
    return config
