"""Checking one container's newest commit: its files, and a sample of the blobs it references."""

from __future__ import annotations

import asyncio

import pytest

from m365lake.backup_files import backup_files
from m365lake.discovery.integrity import check_container_chain, sample_commit_blobs
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.seed import SeedSite
from m365lake.lake import Lake

LARGE = bytes(range(256)) * 8192
"""2 MiB: above the inline threshold, so each file is archived as a blob."""


@pytest.fixture
def drive_id(tenant: Tenant, emulator: EmulatorServer, lake: Lake) -> str:
    tenant.add_site(SeedSite("legal", "Legal"))
    for index in range(3):
        tenant.add_file(
            "site", "legal", "Documents", (f"evidence-{index}.bin",), LARGE + bytes([index])
        )
    drive = tenant.drive_id_for("site", "legal", "Documents")
    assert not asyncio.run(backup_files(emulator.settings(), lake, drives=[drive])).failed
    return drive


def test_sample_reads_requested_blobs(lake: Lake, drive_id: str) -> None:
    counts, problems = sample_commit_blobs(lake, drive_id, sample=2, seed=7)

    assert problems == []
    assert counts["blobs_referenced"] == 3
    assert counts["blobs_checked"] == 2
    assert counts["blob_seed"] == 7
    assert counts["commit_seq"] == lake.head().seq


def test_sample_reports_missing_blob(lake: Lake, drive_id: str) -> None:
    for digest in list(lake.blobs.iter_hashes()):
        (lake.root / lake.blobs.relative_path(digest)).unlink()

    counts, problems = sample_commit_blobs(lake, drive_id, sample=10)

    assert counts["blobs_checked"] == 3
    assert len(problems) == 3
    assert all("missing" in problem for problem in problems)


def test_container_without_commit_passes(lake: Lake, drive_id: str) -> None:
    counts, problems = sample_commit_blobs(lake, "b!no-such-drive", sample=5)
    chain_counts, chain_problems = check_container_chain(lake, "b!no-such-drive")

    assert problems == []
    assert counts["commit_seq"] == 0
    assert chain_problems == []
    assert chain_counts["commit_seq"] == 0
    assert chain_counts["files"] == 0


def test_negative_sample_rejected(lake: Lake, drive_id: str) -> None:
    with pytest.raises(ValueError, match="zero or more"):
        sample_commit_blobs(lake, drive_id, sample=-1)


def test_missing_commit_file_reported(lake: Lake, drive_id: str) -> None:
    counts, problems = check_container_chain(lake, drive_id)
    assert problems == []
    commit = lake.manifests()[counts["commit_seq"] - 1]
    (lake.root / commit["files"][0]["path"]).unlink()

    _, problems = check_container_chain(lake, drive_id)

    assert len(problems) == 1
    assert "is missing" in problems[0]
