"""Fixtures shared by the whole suite, and the check that keeps the quick run quick.

Shared code that is not a fixture lives in plain helper modules (``tests/train/helpers.py``,
``tests/orchestrator/fakes.py``, ``tests/orchestrator/sweeps.py``, ``tests/models/helpers.py``,
``tests/symmetry/helpers.py``); no test module imports another (``tests/test_imports.py`` checks it).
Autouse fixtures live in conftest files only: ``tests/train/conftest.py`` and ``tests/models/conftest.py`` run
their tests on one torch thread.

``slow`` marks a test that starts Ray, a sweep or a cluster, or takes more than a few seconds: the quick run
leaves them out (``pytest -m "not slow"``), CI runs everything. A test not marked ``slow`` that takes longer than
``QUICK_LIMIT_S`` (setup, call and teardown) is listed at the end of the run, to be marked or made cheaper.
"""

from __future__ import annotations

import contextlib

import pytest

QUICK_LIMIT_S = 3.0

_quick_durations: dict[str, float] = {}


@contextlib.contextmanager
def _torch_on_one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (tiny tensors on a shared two-core machine: threads only contend), and
    the thread count as it was afterwards."""
    with _torch_on_one_thread():
        yield


@pytest.fixture(scope="module")
def one_thread_per_module():
    """``one_thread`` for a whole module (for modules whose fixtures are module-scoped too)."""
    with _torch_on_one_thread():
        yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "slow" not in report.keywords:
        _quick_durations[report.nodeid] = _quick_durations.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    over = {nodeid: seconds for nodeid, seconds in _quick_durations.items() if seconds > QUICK_LIMIT_S}
    if over:
        terminalreporter.section(f"tests not marked slow that took over {QUICK_LIMIT_S:g} s")
        for nodeid, seconds in sorted(over.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}  (mark it slow, or make it cheaper)")
