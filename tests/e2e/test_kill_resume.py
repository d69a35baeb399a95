"""A backup killed with SIGKILL at a random point, then run again, loses and duplicates nothing."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from m365lake.catalog import refresh_catalog, run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake

pytestmark = pytest.mark.slow

KILL_ROUNDS = 4
ADDED = 300


@pytest.fixture
def big_tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=3, users=4, messages_per_user=150))


@pytest.fixture
def big_emulator(big_tenant: Tenant, emulator_state: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(big_tenant, emulator_state) as server:
        yield server


CHECKPOINT_EVERY = 40
"""Small enough that kills land between checkpoint commits as well as before the first."""


def _backup_command(server: EmulatorServer, lake_root: Path) -> tuple[list[str], dict[str, str]]:
    environment = {**os.environ, **server.environment(), "M365LAKE_LAKE": str(lake_root)}
    command = [
        sys.executable,
        "-m",
        "m365lake",
        "backup",
        "--checkpoint-every",
        str(CHECKPOINT_EVERY),
    ]
    return command, environment


def _run_to_completion(server: EmulatorServer, lake_root: Path) -> float:
    """Run a backup to its end and return how long the process took, in seconds."""
    command, environment = _backup_command(server, lake_root)
    started = time.monotonic()
    completed = subprocess.run(command, env=environment, capture_output=True, timeout=300)
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")[-2000:]
    return time.monotonic() - started


def _kill_after(server: EmulatorServer, lake_root: Path, delay: float) -> bool:
    """Start a backup and SIGKILL it after ``delay`` seconds; return whether it was killed."""
    command, environment = _backup_command(server, lake_root)
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _tenant_state(tenant: Tenant) -> set[tuple[str, str, str]]:
    state = set()
    for info in tenant.users():
        upn = info.user.user_principal_name
        for message_id, live in tenant.live_messages(upn).items():
            state.add(
                (message_id, "/".join(live.folder_path), hashlib.sha256(live.mime).hexdigest())
            )
    return state


def _archive_state(lake: Lake) -> tuple[set[tuple[str, str, str]], int]:
    refresh_catalog(lake)
    rows = run_sql(lake, "SELECT message_id, folder_path, mime_sha256 FROM messages")[1]
    versions = run_sql(lake, "SELECT count(*) FROM message_versions")[1][0][0]
    return {tuple(row) for row in rows}, int(versions)


def test_killed_first_runs_then_rerun_match_clean_run(
    big_tenant: Tenant, big_emulator: EmulatorServer, tmp_path: Path
):
    rng = random.Random(20261204)
    expected = _tenant_state(big_tenant)
    # Kill points are fractions of a clean run on this machine, so they land from
    # interpreter start-up to the commit whatever the machine's speed.
    # The emulator caches per-message work, so the warm second run is the one to time.
    _run_to_completion(big_emulator, tmp_path / "cold")
    clean_duration = _run_to_completion(big_emulator, tmp_path / "clean")
    killed = 0
    for round_number in range(KILL_ROUNDS):
        lake_root = tmp_path / f"lake-{round_number}"
        for _ in range(2):
            delay = rng.uniform(0.15, 0.85) * clean_duration
            killed += _kill_after(big_emulator, lake_root, delay)
        _run_to_completion(big_emulator, lake_root)

        live, versions = _archive_state(Lake.open(lake_root))
        assert live == expected, f"round {round_number}"
        assert versions == len(expected), f"round {round_number}: duplicate versions"
    assert killed >= KILL_ROUNDS, f"only {killed} of {2 * KILL_ROUNDS} runs were killed"


def test_killed_incremental_run_then_rerun_records_changes_once(
    big_tenant: Tenant, big_emulator: EmulatorServer, tmp_path: Path
):
    lake_root = tmp_path / "lake"
    _run_to_completion(big_emulator, lake_root)
    upn = big_tenant.users()[0].user.user_principal_name
    ids = sorted(big_tenant.live_messages(upn))
    for index in range(ADDED):
        big_tenant.add_message(upn, ("Inbox",), f"Subject: new {index}\r\n\r\nbody\r\n".encode())
    big_tenant.delete_message(upn, ids[0])
    big_tenant.move_message(upn, ids[1], ("Archive",))
    probe_lake = tmp_path / "probe"
    shutil.copytree(lake_root, probe_lake)
    incremental_duration = _run_to_completion(big_emulator, probe_lake)

    assert _kill_after(big_emulator, lake_root, 0.5 * incremental_duration)
    _run_to_completion(big_emulator, lake_root)

    live, versions = _archive_state(Lake.open(lake_root))
    assert live == _tenant_state(big_tenant)
    # Initial messages, plus those added, plus one move; the deletion is a tombstone row.
    initial = len(ids) + sum(
        len(big_tenant.live_messages(info.user.user_principal_name))
        for info in big_tenant.users()[1:]
    )
    assert versions == initial + ADDED + 1


def test_concurrent_backups_of_one_lake_write_each_version_once(
    big_tenant: Tenant, big_emulator: EmulatorServer, tmp_path: Path
):
    lake_root = tmp_path / "lake"
    command, environment = _backup_command(big_emulator, lake_root)
    processes = [
        subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outcomes = [process.communicate(timeout=300) for process in processes]

    for process, (_, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr.decode(errors="replace")[-2000:]
    live, versions = _archive_state(Lake.open(lake_root))
    assert live == _tenant_state(big_tenant)
    assert versions == len(live)
