"""Fixtures shared by the test modules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SMALL = Path(__file__).resolve().parent / "fixtures" / "captures" / "small"


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A copy of the real small capture (tests/fixtures/captures/small, see its SOURCE.md): loading
    writes a cache beside the capture, so every test gets its own."""
    dest = tmp_path / "capture"
    shutil.copytree(SMALL, dest)
    return dest
