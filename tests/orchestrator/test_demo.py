"""``symsweep demo``: every built-in group with each method that applies to it, symmetrizing a random MLP; the exact
ones have a coupled gap of round-off while the bare MLP is far from equivariant."""

from __future__ import annotations

import json

import pytest

from orchestrator.cli import main
from orchestrator.commands.demo import GROUPS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_measures_every_group_and_method_exact_up_to_round_off(capsys):
    assert main(["demo", "batch=2", "samples=2", "group_samples=2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    names = {row["group"] for row in rows}
    assert {"S_n", "O(3)", "SE(3)", "S_n x E(3)", "C_4", "D_4", "C_8"} <= names and len(names) >= len(GROUPS)
    assert {row["method"] for row in rows if row["group"] == "S_n"} == {"ps", "ga", "fa", "canonical"}
    for row in rows:
        if row["group"] == "C_8" and row["method"] != "ga":  # 45° turns of an image are interpolated
            continue
        assert row["coupled_gap"] < 1e-9, row
    assert all(row["E_base"] > 1e-3 for row in rows), "the bare MLP is not equivariant: the check is not vacuous"


def test_a_bad_demo_option_is_one_line(capsys):
    assert main(["demo", "nodes=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nodes=1" in err[0], err
