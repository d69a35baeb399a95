"""OneDrive and SharePoint backup against the emulator over HTTPS on loopback."""

from __future__ import annotations

import asyncio

import pytest

from m365lake.backup_files import FilesBackupSummary, backup_files
from m365lake.catalog import run_sql
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.seed import SeedSite
from m365lake.lake import Lake

LARGE = bytes(range(256)) * 8192
"""2 MiB: above the default inline threshold, so archived as a blob."""


@pytest.fixture
def site_drive(tenant: Tenant) -> str:
    tenant.add_site(SeedSite("legal", "Legal"))
    tenant.add_file("site", "legal", "Documents", ("Cases", "2024", "brief.txt"), b"brief")
    tenant.add_file("site", "legal", "Documents", ("Cases", "evidence.bin"), LARGE)
    tenant.add_file("site", "legal", "Documents", ("readme.txt",), b"read me")
    return tenant.drive_id_for("site", "legal", "Documents")


def run_backup(emulator: EmulatorServer, lake: Lake, **options: object) -> FilesBackupSummary:
    return asyncio.run(backup_files(emulator.settings(), lake, **options))  # type: ignore[arg-type]


def archived_files(lake: Lake, drive_id: str) -> dict[str, bytes]:
    rows = run_sql(
        lake,
        "SELECT path, content_sha256, content_inline FROM files "
        f"WHERE drive_id = '{drive_id}' AND content_sha256 IS NOT NULL",
    )[1]
    return {path: lake.read_content(sha, inline) for path, sha, inline in rows}


def tenant_files(tenant: Tenant, drive_id: str) -> dict[str, bytes]:
    return {"/".join(path): data for path, data, _ in tenant.live_files(drive_id).values()}


def item_id_at(tenant: Tenant, drive_id: str, path: str) -> str:
    for item_id, (parts, _, _) in tenant.live_files(drive_id).items():
        if "/".join(parts) == path:
            return item_id
    raise KeyError(path)


def test_backup_archives_every_drive(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    summary = run_backup(emulator, lake)

    assert summary.failed == {}
    assert archived_files(lake, site_drive) == tenant_files(tenant, site_drive)
    kinds = dict(run_sql(lake, "SELECT owner_kind, count(*) FROM drives GROUP BY 1")[1])
    mailbox_users = [user for user in tenant.users() if user.has_mailbox]
    site_libraries = [drive for site in tenant.sites() for drive in tenant.drives_of_site(site.id)]
    assert kinds == {"user": len(mailbox_users), "site": len(site_libraries)}
    site_names = {row[0] for row in run_sql(lake, "SELECT name FROM sites")[1]}
    assert site_names == {site.name for site in tenant.sites()}
    assert "legal" in site_names
    assert lake.verify()["blobs"] >= 1


def test_second_run_downloads_nothing(
    emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    run_backup(emulator, lake)

    summary = run_backup(emulator, lake, drives=[site_drive])

    [result] = summary.results
    assert result.items_new + result.items_updated + result.items_deleted == 0
    assert result.bytes_downloaded == 0


def test_rename_move_delete_follow_tenant(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    run_backup(emulator, lake, drives=[site_drive])
    brief = item_id_at(tenant, site_drive, "Cases/2024/brief.txt")
    year_folder = tenant.item_info(site_drive, brief).parent_id  # type: ignore[union-attr]
    readme = item_id_at(tenant, site_drive, "readme.txt")
    tenant.rename_item(year_folder, "2025")
    tenant.move_item(item_id_at(tenant, site_drive, "Cases/evidence.bin"), year_folder)
    tenant.delete_item(readme)
    tenant.update_file_content(brief, b"brief, second draft")

    summary = run_backup(emulator, lake, drives=[site_drive])

    assert archived_files(lake, site_drive) == tenant_files(tenant, site_drive)
    [result] = summary.results
    assert result.items_deleted == 1
    history = run_sql(
        lake,
        f"SELECT path FROM file_versions WHERE item_id = '{brief}' ORDER BY captured_at",
    )[1]
    assert history == [("Cases/2024/brief.txt",), ("Cases/2025/brief.txt",)]


def test_expired_delta_resyncs(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    run_backup(emulator, lake, drives=[site_drive])
    tenant.delete_item(item_id_at(tenant, site_drive, "readme.txt"))
    tenant.expire_drive_delta(site_drive)

    summary = run_backup(emulator, lake, drives=[site_drive])

    [result] = summary.results
    assert result.resyncs == 1
    assert archived_files(lake, site_drive) == tenant_files(tenant, site_drive)


def test_broken_download_resumes(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    evidence = item_id_at(tenant, site_drive, "Cases/evidence.bin")
    emulator.app.state.downloads.inject_broken_download(evidence, after_bytes=100_000)

    summary = run_backup(emulator, lake, drives=[site_drive])

    [result] = summary.results
    assert result.resumes == 1
    assert result.failures == 0
    assert archived_files(lake, site_drive)["Cases/evidence.bin"] == LARGE


def test_coverage_gaps_become_failures(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    tenant.add_package("site", "legal", "Documents", ("Notebook",))
    tenant.add_file("site", "legal", "Documents", ("bad.exe",), b"EICAR", malware="Eicar")

    run_backup(emulator, lake, drives=[site_drive], max_file_size=1024 * 1024)

    failures = run_sql(
        lake, "SELECT reason, outcome FROM failures WHERE workload = 'files' ORDER BY reason"
    )[1]
    assert failures == [
        ("fileTooLarge", "skipped"),
        ("malwareDetected", "skipped"),
        ("packageWithoutContent", "skipped"),
    ]


def test_sharing_scope_captured_per_version(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, site_drive: str
) -> None:
    brief = item_id_at(tenant, site_drive, "Cases/2024/brief.txt")
    run_backup(emulator, lake, drives=[site_drive])
    user = tenant.users()[0].user.user_principal_name
    tenant.share_item(brief, "organization", by=user)

    run_backup(emulator, lake, drives=[site_drive])

    history = run_sql(
        lake,
        "SELECT shared_scope, shared_by, shared_at IS NOT NULL FROM file_versions "
        f"WHERE item_id = '{brief}' ORDER BY captured_at",
    )[1]
    assert history == [(None, None, False), ("organization", user, True)]
