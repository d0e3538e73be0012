"""The validators every configuration check uses, and the one error format they raise:
``key=value is not allowed; expected <what is allowed>`` (one line, naming the key).

Pure Python (no torch), so the driver can check sweep, cluster and logging settings without
importing the trial side."""

from __future__ import annotations

import math
import numbers
from typing import Any, NoReturn


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
