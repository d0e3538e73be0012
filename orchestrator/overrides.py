"""``key=value`` command-line overrides read with Hydra's own grammar, as ``launch`` reads them.

Every command reads its overrides with the same parser, so ``train_size=1e2`` is the number 100.0
for ``data generate`` exactly as for ``launch`` (and is then refused or accepted by the same checks).
"""

from __future__ import annotations

from typing import Any


def parse_hydra(tokens: list[str]) -> list:
    """Hydra ``Override`` objects, one per token; any text Hydra cannot read is a ValueError naming
    the token (never a traceback)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = []
    for token in tokens:
        try:
            parsed += parser.parse_overrides([token])
        except Exception as err:  # noqa: BLE001 - Hydra raises several kinds for malformed text
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"cannot parse the override {token!r}: {reason}; allowed: key=value in Hydra's "
                             "syntax; quote values with spaces or parentheses, e.g. group.name='S_n x E(d)'") from None
    return parsed


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a.b": 1, "c": "x"}``; a token without ``=``, a sweep
    (``a=1,2``) or a deletion (``~a``) is refused in one line."""
    from hydra.core.override_parser.types import OverrideType

    for token in tokens:
        key, sep, _ = token.partition("=")
        if not sep or not key.strip().lstrip("+~"):
            raise ValueError(f"override {token!r} is not of the form key=value")
    values: dict[str, Any] = {}
    for override, token in zip(parse_hydra(tokens), tokens):
        if override.is_sweep_override() or override.type == OverrideType.DEL:
            raise ValueError(f"override {token!r}: this command takes one value per key (key=value), "
                             "not a sweep or a deletion")
        values[override.key_or_group] = override.value()
    return values
