"""Fixtures for the telemetry tests (helpers live in helpers.py)."""

from __future__ import annotations

import pytest

from .helpers import FakeClock


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
