"""Ctrl-C (SIGINT) while the backup waits out a long Retry-After stops it at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from m365lake.discovery.integrity import verify_archive
from m365lake.emulator import EmulatorServer, FaultPlan, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from tests.faults.campaign import run_backup
from tests.faults.lake_vs_tenant import Accounting, compare_files, compare_mail

pytestmark = pytest.mark.faults

RETRY_AFTER_SECONDS = 600
"""Far longer than the test waits for the process to end after SIGINT."""


def _wait_for_throttling(server: EmulatorServer, path_part: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(r.status == 429 and path_part in r.path for r in server.requests):
            return
        time.sleep(0.05)
    raise AssertionError(f"the backup never reached a throttled {path_part} request")


@pytest.mark.parametrize(
    ("workload", "path_pattern"),
    [("mail", r"/messages/delta$"), ("files", r"/root/delta$")],
)
def test_sigint_during_retry_after(workload: str, path_pattern: str, tmp_path: Path) -> None:
    tenant = Tenant.from_seed(generate_tenant(seed=5, users=2, messages_per_user=10))
    lake_root = tmp_path / "lake"
    with EmulatorServer(tenant, tmp_path / "state") as server:
        server.inject(
            path_pattern=path_pattern, status=429, times=1000, retry_after=str(RETRY_AFTER_SECONDS)
        )
        environment = {**os.environ, **server.environment(), "M365LAKE_LAKE": str(lake_root)}
        command = [sys.executable, "-m", "m365lake", "backup", "--workload", workload]
        process = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            _wait_for_throttling(server, path_pattern.strip("$").replace("\\", ""))
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

        assert process.returncode != 0
        assert "Aborted" in stderr
        assert "Traceback" not in stderr
        verify_archive(Lake.open(lake_root, create=False))

        server.app.state.faults = FaultPlan()
        rerun = run_backup(server, lake_root, tmp_path / "rerun.log", kill_after=None)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        lake = Lake.open(lake_root, create=False)
        assert compare_mail(lake, tenant, Accounting(), strict=True).problems == []
        assert compare_files(lake, tenant, Accounting(), strict=True).problems == []
