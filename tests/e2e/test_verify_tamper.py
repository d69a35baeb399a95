"""Flipping one byte of any blob, table file, manifest or audit entry is reported by verify."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.discovery import add_custodians, create_case, place_hold, verify_archive
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.seed import SeedSite
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake

LARGE = bytes(range(256)) * 8192
"""2 MiB: above the inline threshold, so the file is archived as a blob."""


@pytest.fixture
def archived(tenant: Tenant, emulator: EmulatorServer, lake: Lake) -> Lake:
    tenant.add_site(SeedSite("legal", "Legal"))
    tenant.add_file("site", "legal", "Documents", ("evidence.bin",), LARGE)
    assert not asyncio.run(backup_mail(emulator.settings(), lake)).failed
    assert not asyncio.run(backup_files(emulator.settings(), lake)).failed
    upn = tenant.users()[0].user.user_principal_name
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", upn)], actor="carol")
    place_hold(lake, "C", actor="carol")
    verify_archive(lake)
    return lake


def _targets(lake: Lake) -> dict[str, Path]:
    blob = next(iter(lake.blobs.iter_hashes()))
    return {
        "blob": lake.root / lake.blobs.relative_path(blob),
        "table file": lake.committed_files("messages")[0],
        "manifest": sorted((lake.root / "commits").glob("*.json"))[1],
        "audit entry": lake.committed_files("audit_events")[-1],
    }


@pytest.mark.parametrize("kind", ["blob", "table file", "manifest", "audit entry"])
def test_flipped_byte_reported(archived: Lake, tmp_path: Path, kind: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(archived.root, copy)
    lake = Lake.open(copy, create=False)
    target = _targets(lake)[kind]
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x01
    target.write_bytes(bytes(data))

    with pytest.raises(LakeIntegrityError) as raised:
        verify_archive(lake)

    relative = target.relative_to(copy).as_posix()
    named = relative if kind != "blob" else target.name
    assert raised.value.problems
    assert any(named in problem for problem in raised.value.problems), raised.value.problems
