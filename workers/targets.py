"""Your own code named in a config: ``model.target``, ``task.target``, ``group.target`` = ``package.module:Name``.

``resolve(key, spelling)`` imports the module and returns the object it names, or raises one line naming the key,
the spelling and what went wrong (``model.target='mylab.nets:Net' cannot be imported (No module named 'mylab');
allowed: ...``). The key is ``target``, not Hydra's ``_target_``: a trial never runs Hydra (it receives a plain
dict, also from ``workers.train.run(dict)``), and symsweep does not instantiate the object with the section's keys
as Hydra's ``instantiate`` would: it hands a model the task's ``FieldSpec``s, a task its parameters, a group
function the ``group.*`` keys it names, and checks each before a sweep starts. ``_target_`` is refused with a
pointer to ``target``, so the two are never confused.

Pure Python. The module must be importable in the driver and in every trial: installed, on ``PYTHONPATH``, in
the folder the command runs in (Ray puts the driver's working folder on the trials' path), or shipped with
``cluster.runtime_env`` (README, "Your own model and data").
"""

from __future__ import annotations

import importlib
import re
from typing import Any

SPELLING = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*([:.][A-Za-z_][\w]*)(\.[A-Za-z_][\w]*)*$")
ALLOWED = "'package.module:Name' importable in the driver and in every trial (README, Your own model and data)"


def split(spelling: str) -> tuple[str, str]:
    """(module, attribute path) of ``package.module:Name`` (or ``package.module.Name``, as Hydra spells it)."""
    if ":" in spelling:
        module, _, attribute = spelling.partition(":")
    else:
        module, _, attribute = spelling.rpartition(".")
    return module, attribute


def resolve(key: str, spelling: Any) -> Any:
    """The object ``spelling`` names; a ValueError naming ``key`` when it is not one."""
    if not isinstance(spelling, str) or not SPELLING.match(spelling):
        raise ValueError(f"{key}={spelling!r} is not allowed; expected {ALLOWED}")
    module_name, attribute = split(spelling)
    try:
        node = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any failure while importing user code is one line
        reason = f"{type(err).__name__}: {err}" if not isinstance(err, ImportError) else str(err)
        raise ValueError(f"{key}={spelling!r} cannot be imported ({_line(reason)}); allowed: {ALLOWED}") from None
    for part in attribute.split("."):
        if not hasattr(node, part):
            raise ValueError(f"{key}={spelling!r}: module {module_name!r} has no {attribute!r}; allowed: {ALLOWED}")
        node = getattr(node, part)
    return node


def named_code(config: Any) -> list[str]:
    """The code a trial config names (``model.target='mylab.nets:Net'``, ...): what building it imports and runs."""
    if not isinstance(config, dict):
        return []
    return [f"{section}.target={config[section]['target']!r}" for section in ("task", "group", "model")
            if isinstance(config.get(section), dict) and config[section].get("target") is not None]


def refuse_untrusted_code(config: Any, where: str, option: str = "--allow-code") -> None:
    """For commands that read someone else's files (a checkpoint's config): a config naming code is refused unless
    the user said they trust it (``option``), since building the model would import and run that code."""
    found = named_code(config)
    if found:
        raise ValueError(f"{where} names code of its own ({', '.join(found)}), which building the model would import "
                         f"and run; allowed: {option} if you trust where it comes from")


def refuse_hydra_target(section: str, given: Any) -> None:
    """``<section>._target_`` is Hydra's key, which symsweep does not read: one line pointing at ``target``."""
    if isinstance(given, dict) and "_target_" in given:
        raise ValueError(f"{section}._target_={given['_target_']!r} is Hydra's key, which symsweep does not read (a "
                         f"trial never runs Hydra); allowed: {section}.target={given['_target_']!r}")


def _line(text: str) -> str:
    """The first line of ``text``, at most 300 characters (errors are one line)."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:300]
