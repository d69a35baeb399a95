"""Fixtures that run the real client against the emulator over HTTPS on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from m365lake.backup import BackupSummary, backup_mail
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake


@pytest.fixture(scope="session")
def emulator_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One CA for the whole session: creating RSA keys is the slow part of start-up.
    return tmp_path_factory.mktemp("emulator-state")


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=7, users=3, messages_per_user=25))


@pytest.fixture
def emulator(tenant: Tenant, emulator_state: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tenant, emulator_state) as server:
        yield server


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(tmp_path / "lake")


BackupRunner = Callable[..., BackupSummary]
SqlRunner = Callable[[str], list[tuple[Any, ...]]]


@pytest.fixture
def backup(emulator: EmulatorServer, lake: Lake) -> BackupRunner:
    """Run the mail backup of the emulated tenant into ``lake`` and refresh the catalog."""

    def run(users: Sequence[str] | None = None) -> BackupSummary:
        summary = asyncio.run(backup_mail(emulator.settings(), lake, users=users))
        refresh_catalog(lake)
        return summary

    return run


@pytest.fixture
def sql(lake: Lake) -> SqlRunner:
    return lambda statement: run_sql(lake, statement)[1]
