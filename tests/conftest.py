"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The sample CT folder ../shared/data (never copied into the repo); skips the test if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not found: sample CT needed for this test")
    return SHARED_DATA
