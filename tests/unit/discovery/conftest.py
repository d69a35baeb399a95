"""Fixtures for the discovery unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from m365lake.lake import Lake
from tests.unit.discovery.lake_fixture import seed_lake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    opened = Lake.open(tmp_path / "lake")
    seed_lake(opened)
    return opened
