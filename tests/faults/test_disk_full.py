"""A full disk under the lake: the backup fails with a clear message, the lake stays
consistent, and a rerun with free space archives everything, once."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from m365lake.discovery.integrity import verify_archive
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake
from tests.faults.campaign import run_backup
from tests.faults.lake_vs_tenant import Accounting, compare_files, compare_mail

pytestmark = pytest.mark.faults

REPOSITORY = Path(__file__).resolve().parents[2]


BIG_FILE_BYTES = 3 * 1024 * 1024
"""Above the lake's 1 MiB inline threshold, so the file streams into a blob with direct I/O."""


@pytest.fixture(scope="module")
def disk_tenant() -> Tenant:
    tenant = Tenant.from_seed(generate_tenant(seed=11, users=2, messages_per_user=25))
    upn = tenant.users()[0].user.user_principal_name
    content = random.Random(11).randbytes(BIG_FILE_BYTES)
    tenant.add_file("onedrive", upn, "Documents", ("Scans", "big.bin"), content)
    return tenant


@pytest.fixture(scope="module")
def disk_emulator(
    disk_tenant: Tenant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorServer]:
    with EmulatorServer(disk_tenant, tmp_path_factory.mktemp("disk-emulator")) as server:
        yield server


@pytest.fixture(scope="module")
def full_lake_bytes(disk_emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> int:
    """Bytes a complete backup writes into a new lake, measured under an unlimited quota."""
    folder = tmp_path_factory.mktemp("disk-measure")
    completed = _quota_backup(disk_emulator, folder / "lake", 1 << 40)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return sum(path.stat().st_size for path in (folder / "lake").rglob("*") if path.is_file())


def _quota_backup(
    server: EmulatorServer, lake_root: Path, quota_bytes: int
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        **server.environment(),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])
        ),
    }
    command = [
        sys.executable,
        "-m",
        "tests.faults.enospc",
        str(lake_root),
        str(quota_bytes),
        "backup",
        "--lake",
        str(lake_root),
        "--checkpoint-every",
        "10",
    ]
    return subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=300, cwd=REPOSITORY
    )


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.7, 0.95])
def test_full_disk_then_rerun_loses_nothing(
    fraction: float,
    disk_tenant: Tenant,
    disk_emulator: EmulatorServer,
    full_lake_bytes: int,
    tmp_path: Path,
) -> None:
    lake_root = tmp_path / "lake"
    full = _quota_backup(disk_emulator, lake_root, int(full_lake_bytes * fraction))

    assert full.returncode != 0
    assert "Traceback" not in full.stderr, full.stderr[-3000:]
    assert f"the lake at {lake_root.resolve()} is full (No space left on device)" in full.stderr
    assert "run the backup again" in full.stderr
    assert full.stderr.count("Error: ") == 1
    if "mailboxes could not be archived" in full.stderr:
        # A full disk ends the run: the files backup does not start after the mail backup.
        assert "drives archived" not in full.stdout
    lake = Lake.open(lake_root, create=False)
    verify_archive(lake)
    for comparison in (
        compare_mail(lake, disk_tenant, Accounting(whole_run_failed=True), strict=False),
        compare_files(lake, disk_tenant, Accounting(whole_run_failed=True), strict=False),
    ):
        assert comparison.problems == []

    rerun = run_backup(disk_emulator, lake_root, tmp_path / "rerun.log", kill_after=None)

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    lake = Lake.open(lake_root, create=False)
    verify_archive(lake)
    mail = compare_mail(lake, disk_tenant, Accounting(), strict=True)
    files = compare_files(lake, disk_tenant, Accounting(), strict=True)
    assert mail.problems == []
    assert files.problems == []
    assert mail.archived == mail.items_checked > 0
    assert files.archived == files.items_checked > 0
