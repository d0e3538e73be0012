"""How to add an analysis: a kind registered from outside symsweep (``orchestrator.analyses.register_analysis``)
is checked at launch like the built-in ones, computed and written by ``symsweep report`` (its CSV, its section of
summary.md, its figure), and read by the Python API — without editing any symsweep module."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from orchestrator.aggregate import Summary, Table
from orchestrator.analyses import REGISTRY, Analysis, Context, register_analysis
from orchestrator.config import compose
from orchestrator.plan import validate
from orchestrator.results import load_experiment, write_report
from tests.orchestrator.fakes import FakeExperiment, base_config, epoch_metrics
from workers.checks import fail


class Spread(Analysis):
    """``sweep.spread: [{metric}]``: the range (max − min over configurations) of a metric's mean."""

    key = "spread"
    file = "spread.csv"

    @classmethod
    def check(cls, entry: Any, where: str, context: Context) -> dict[str, Any]:
        if not isinstance(entry, dict) or set(entry) != {"metric"}:
            fail(where, entry, "{metric: <a reported metric>}")
        context.check_metric(f"{where}.metric", entry["metric"])
        return dict(entry)

    def line(self) -> str:
        return f"spread: max - min of {self.spec['metric']} over configurations ({self.file})"

    def compute(self, summary: Summary) -> list[tuple[str, float]]:
        means = [c.stats[self.spec["metric"]][0] for c in summary.configurations if self.spec["metric"] in c.stats]
        return [(self.spec["metric"], max(means) - min(means))] if means else []

    @classmethod
    def table(cls, summary: Summary, found: list) -> Table:
        return ["metric", "spread"], [list(row) for row in found]

    @classmethod
    def markdown(cls, summary: Summary, found: list) -> str:
        return "## Spread\n\n" + "\n".join(f"- {metric}: {value:.4g}" for metric, value in found) + "\n"

    def figures(self, summary: Summary, found: list, directory: Path) -> list:
        from orchestrator.figures import panels, save

        figure, (axes,) = panels(1, legend=False)
        axes.bar([metric for metric, _ in found], [value for _, value in found])
        return [save(figure, directory / "spread.png")]


@pytest.fixture
def spread():
    register_analysis(Spread)
    yield Spread
    del REGISTRY[Spread.key]


def test_a_registered_analysis_is_checked_at_launch(spread):
    ok = compose(["task=nbody", "group=sn_e", "symmetrizer.method=ps,ga", "+sweep.spread=[{metric: best_val_mse}]"])
    assert validate(ok).analyses.lines() == ["spread: max - min of best_val_mse over configurations (spread.csv)"]
    bad = compose(["task=nbody", "group=sn_e", "+sweep.spread=[{metric: best_val_accuracy}]"])
    with pytest.raises(ValueError, match=r"^sweep.spread\[0\].metric='best_val_accuracy' is not allowed"):
        validate(bad)
    with pytest.raises(ValueError, match="sweep.spread is taken"):
        register_analysis(type("Other", (Spread,), {}))


def test_a_registered_analysis_is_written_by_the_report_and_read_by_the_api(spread, tmp_path):
    config = base_config(tmp_path, {"symmetrizer.noise_scale": {"grid": [0.1, 1.0]}}, seeds=1)
    config["sweep"]["spread"] = [{"metric": "best_val_accuracy"}]
    fake = FakeExperiment(tmp_path / "spread", config)
    for noise, quality in ((0.1, 0.9), (1.0, 0.6)):
        fake.trial({"symmetrizer.noise_scale": noise}, "TERMINATED",
                   [epoch_metrics(epoch, quality, 0) for epoch in (1, 2, 3)])
    fake.save_state()
    write_report(fake.path)
    rows = list(csv.DictReader((fake.path / "spread.csv").open()))
    assert [(row["metric"], round(float(row["spread"]), 6)) for row in rows] == [("best_val_accuracy", 0.3)]
    assert "## Spread" in (fake.path / "summary.md").read_text()
    assert (fake.path / "plots" / "spread.png").is_file()
    assert load_experiment(fake.path).table("spread")["spread"].round(6).tolist() == [0.3]
