"""Advisory leases: one writer per container, stale holders taken over."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from m365lake.lake import Lake, LeaseHeldError


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(tmp_path / "lake")


def test_second_writer_rejected_while_held(lake: Lake):
    lake.acquire_lease("mail-u1", owner="first")

    with pytest.raises(LeaseHeldError, match="first"):
        lake.acquire_lease("mail-u1", owner="second")


def test_other_container_not_blocked(lake: Lake):
    lake.acquire_lease("mail-u1", owner="first")

    lake.acquire_lease("mail-u2", owner="second")


def test_released_lease_can_be_taken(lake: Lake):
    lease = lake.acquire_lease("mail-u1", owner="first")
    lease.release()

    lake.acquire_lease("mail-u1", owner="second")


def test_lease_of_dead_process_taken_over(lake: Lake):
    holder = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lease = lake.acquire_lease("mail-u1", owner="killed")
    path = lake.root / "leases" / "mail-u1.json"
    record = json.loads(path.read_text())
    record["pid"] = int(holder.stdout)
    path.write_text(json.dumps(record))

    lake.acquire_lease("mail-u1", owner="rerun")

    with pytest.raises(Exception, match="taken over"):
        lease.renew()


def test_expired_lease_taken_over(lake: Lake):
    lake.acquire_lease("mail-u1", owner="slow")
    path = lake.root / "leases" / "mail-u1.json"
    record = json.loads(path.read_text())
    record["expires_at"] = time.time() - 1
    record["host"] = "another-host"
    path.write_text(json.dumps(record))

    lake.acquire_lease("mail-u1", owner="next")
