"""Parsing of Hydra-style ``key=value`` command-line overrides into plain values."""

from __future__ import annotations

from typing import Any

import yaml


def parse_value(text: str) -> Any:
    """``"0.1"`` -> 0.1, ``"true"`` -> True, ``"[1,2]"`` -> [1, 2], anything else stays a string."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a.b": 1, "c": "x"}``; reject tokens without ``=``."""
    parsed: dict[str, Any] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        key = key.strip().lstrip("+")
        if not sep or not key:
            raise ValueError(f"override {token!r} is not of the form key=value")
        parsed[key] = parse_value(value)
    return parsed
