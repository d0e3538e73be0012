"""A swept key's domain: ``{grid: [...]}``, ``{choice: [...]}``, ``{uniform: [lo, hi]}``,
``{loguniform: [lo, hi]}`` or ``{randint: [lo, hi]}`` (both ends included), parsed and checked once into a
``Domain``, which also gives the values checked before a launch and its Ray Tune form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workers.checks import fail, is_int, is_number

KINDS = ("grid", "choice", "uniform", "loguniform", "randint")  # the forms of a sweep.params entry
LISTED = ("grid", "choice")  # every value is written out (configurations pair by equal values)
SHAPES = ("one of {grid: [...]}, {choice: [...]}, {uniform: [lo, hi]}, {loguniform: [lo, hi]}, "
          "{randint: [lo, hi]}")


@dataclass(frozen=True)
class Domain:
    """One swept key's values: listed (grid, choice) or a range (uniform, loguniform, randint)."""

    key: str
    kind: str
    values: tuple  # the listed values, or (lo, hi)

    @classmethod
    def parse(cls, key: str, given: Any) -> "Domain":
        """``given`` as written in ``sweep.params.<key>``; a one-line error naming it when it is not a domain."""
        where = f"sweep.params.{key}"
        if not isinstance(given, dict) or len(given) != 1 or next(iter(given)) not in KINDS:
            fail(where, given, SHAPES)
        (kind, values), = given.items()
        if kind in LISTED:
            if not isinstance(values, list) or not values:
                fail(f"{where}.{kind}", values, "a non-empty list of values")
            return cls(key, kind, tuple(values))
        pair = isinstance(values, list) and len(values) == 2 and all(is_number(v) for v in values)
        if not pair or values[0] >= values[1]:
            fail(f"{where}.{kind}", values, "[lo, hi] with numbers lo < hi")
        if kind == "loguniform" and values[0] <= 0:
            fail(f"{where}.{kind}", values, "[lo, hi] with 0 < lo < hi")
        if kind == "randint" and not all(is_int(v) for v in values):
            fail(f"{where}.{kind}", values, "[lo, hi] with integers lo < hi")
        return cls(key, kind, tuple(values))

    @property
    def listed(self) -> bool:
        return self.kind in LISTED

    @property
    def grid(self) -> bool:
        return self.kind == "grid"

    @property
    def positive_numbers(self) -> bool:
        return all(is_number(value) and value > 0 for value in self.values)

    def draw(self, rng) -> Any:
        """One value of a sampled domain (choice, uniform, loguniform, randint with both ends) from the numpy
        Generator ``rng``, as plain Python data."""
        import math

        if self.kind in LISTED:
            return self.values[int(rng.integers(len(self.values)))]
        low, high = self.values
        if self.kind == "uniform":
            return float(rng.uniform(low, high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        return int(rng.integers(low, high + 1))

    def checked_values(self) -> list[Any]:
        """What is validated before a launch: every listed value, or both ends of a range."""
        return list(self.values)

    def as_config(self) -> dict[str, list]:
        """The domain as ``sweep.params`` holds it (and ``config.json`` keeps it)."""
        return {self.kind: list(self.values)}

    def text(self) -> str:
        shown = ", ".join(value if isinstance(value, str) else json.dumps(value) for value in self.values)
        return f"{self.kind} [{shown}]"

    def tune(self, extra: tuple = ()):
        """Ray Tune's form of the domain; ``extra`` listed values are added to a choice (used for a collapsed
        grid, whose points come from ``points_to_evaluate`` and may hold ``UNUSED``)."""
        from ray import tune

        if extra:
            return tune.choice(list(self.values) + list(extra))
        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "uniform":
            return tune.uniform(*self.values)
        if self.kind == "loguniform":
            return tune.loguniform(*self.values)
        return tune.randint(self.values[0], self.values[1] + 1)  # inclusive upper end
