"""The validators every configuration check uses, and the one error format they raise:
``key=value is not allowed; expected <what is allowed>`` (one line, naming the key).

Pure Python (no torch), so the driver can check sweep, cluster and logging settings without
importing the trial side."""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, NoReturn


def fail(key: str, value: Any, allowed: str) -> NoReturn:
    """Raise the project's configuration error for ``key=value``."""
    raise ValueError(f"{key}={value!r} is not allowed; expected {allowed}")


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """``fail`` unless ``ok``."""
    if not ok:
        fail(key, value, allowed)


def is_int(value: Any) -> bool:
    """An integer (numpy's too) that is not a bool: YAML's ``true`` must not pass as 1."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number that is not a bool (``nan`` and ``inf`` are refused)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


RUNTIME_ENV_KEYS = ("working_dir", "py_modules", "excludes", "pip", "uv", "conda", "env_vars", "config")


def is_runtime_env(value: Any) -> bool:
    """None, or the fields of Ray's runtime_env that symsweep passes on, each of the shape Ray takes (Ray checks
    the rest): working_dir a path, py_modules and excludes lists of paths, env_vars a mapping of strings."""
    if value is None:
        return True
    if not isinstance(value, Mapping) or not value or set(value) - set(RUNTIME_ENV_KEYS):
        return False

    def paths(given: Any) -> bool:
        return isinstance(given, list) and all(isinstance(path, str) for path in given)

    shapes = {"working_dir": lambda given: isinstance(given, str), "py_modules": paths, "excludes": paths,
              "env_vars": lambda given: isinstance(given, Mapping) and all(isinstance(text, str)
                                                                             for text in (*given, *given.values()))}
    return all(shapes.get(key, lambda given: given is not None)(given) for key, given in value.items())
