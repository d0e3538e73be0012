"""Every module of the base-model tests runs torch on one thread: on tiny tensors, thread hand-offs cost ~100x the
work on a shared 2-core machine (``one_thread_per_module``, tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread_per_module):
    yield
