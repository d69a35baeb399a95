"""Fixtures of the hostile-input campaign."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def emulator_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One CA for the session: creating RSA keys is the slow part of the emulator's start.
    return tmp_path_factory.mktemp("emulator-state")
