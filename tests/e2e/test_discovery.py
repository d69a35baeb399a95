"""Cases and holds over a lake that the real backups filled from the emulator."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import click
import pytest
from click.testing import CliRunner

from m365lake.backup import backup_mail
from m365lake.backup_files import backup_files
from m365lake.catalog import run_sql
from m365lake.discovery import (
    CustodianNotFoundError,
    HoldCoverage,
    ItemVersion,
    add_custodians,
    create_case,
    load_case,
    place_hold,
    read_audit_events,
    release_hold,
    verify_archive,
)
from m365lake.discovery.cli import register
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.seed import SeedSite
from m365lake.lake import Lake

LARGE = bytes(range(256)) * 8192
"""2 MiB: above the default inline threshold, so archived as a blob."""


def back_up(emulator: EmulatorServer, lake: Lake) -> None:
    mail = asyncio.run(backup_mail(emulator.settings(), lake))
    files = asyncio.run(backup_files(emulator.settings(), lake))
    assert not mail.failed
    assert not files.failed


def all_versions(lake: Lake) -> list[ItemVersion]:
    """Every archived version of every message and file, deletion tombstones included."""
    mail = run_sql(
        lake,
        "SELECT mailbox_id, message_id, captured_at, coalesce(received_at, sent_at) "
        "FROM messages_rows",
    )[1]
    files = run_sql(
        lake,
        "SELECT drive_id, item_id, captured_at, modified_at FROM drive_items_rows "
        "WHERE NOT coalesce(is_folder, false)",
    )[1]
    return [ItemVersion("mail", *row) for row in mail] + [
        ItemVersion("files", *row) for row in files
    ]


@pytest.fixture
def archived(tenant: Tenant, emulator: EmulatorServer, lake: Lake) -> dict[str, Any]:
    """Back up the tenant twice, deleting a message and changing a file in between."""
    tenant.add_site(SeedSite("legal", "Legal"))
    brief = tenant.add_file("site", "legal", "Documents", ("brief.txt",), b"first draft")
    evidence = tenant.add_file("site", "legal", "Documents", ("evidence.bin",), LARGE)
    back_up(emulator, lake)
    alice, bob = [info.user.user_principal_name for info in tenant.users()[:2]]
    deleted = sorted(tenant.live_messages(alice))[0]
    tenant.delete_message(alice, deleted)
    site_drive = tenant.drive_id_for("site", "legal", "Documents")
    tenant.update_file_content(brief, b"second draft")
    back_up(emulator, lake)
    return {
        "alice": alice,
        "bob": bob,
        "deleted": deleted,
        "site_drive": site_drive,
        "brief": brief,
        "evidence": evidence,
        "site_url": run_sql(lake, "SELECT web_url FROM sites WHERE name = 'legal'")[1][0][0],
    }


def mailbox_id(lake: Lake, upn: str) -> str:
    rows = run_sql(lake, f"SELECT mailbox_id FROM mailboxes WHERE user_principal_name = '{upn}'")
    return str(rows[1][0][0])


def test_custodian_hold_covers_deleted_message(lake: Lake, archived: dict[str, Any]) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", archived["alice"])], actor="carol")
    hold = place_hold(lake, "C", actor="carol")
    alice = mailbox_id(lake, archived["alice"])

    coverage = HoldCoverage.load(lake)
    versions = all_versions(lake)
    covered = coverage.covered(versions)

    deleted_versions = [v for v in versions if v.item_id == archived["deleted"]]
    assert len(deleted_versions) == 2  # the captured message and its deletion tombstone
    assert all(covered[v] == [hold.hold_id] for v in deleted_versions)
    assert {v for v in versions if v.container_id == alice} == set(covered)


def test_site_hold_covers_every_file_version(lake: Lake, archived: dict[str, Any]) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("site", archived["site_url"])], actor="carol")
    place_hold(lake, "C", actor="carol")

    covered = HoldCoverage.load(lake).covered(all_versions(lake))

    assert {v.item_id for v in covered} == {archived["brief"], archived["evidence"]}
    assert len([v for v in covered if v.item_id == archived["brief"]]) == 2


def test_onedrive_by_owner_upn(lake: Lake, archived: dict[str, Any]) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    [custodian] = add_custodians(lake, "C", [("onedrive", archived["bob"])], actor="carol")

    drive = run_sql(lake, f"SELECT drive_id FROM drives WHERE owner_name = '{archived['bob']}'")[1][
        0
    ][0]
    assert custodian.custodian_id == f"onedrive:{drive}"


def test_unarchived_user_rejected(lake: Lake, archived: dict[str, Any]) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")

    with pytest.raises(CustodianNotFoundError, match=r"ghost@contoso\.example"):
        add_custodians(lake, "C", [("mailbox", "ghost@contoso.example")], actor="carol")


def test_date_ranged_hold_filters_received(lake: Lake, archived: dict[str, Any]) -> None:
    alice = mailbox_id(lake, archived["alice"])
    sql = "SELECT DISTINCT message_id, received_at FROM message_versions WHERE mailbox_id = ?"
    received = dict(run_sql(lake, sql.replace("?", f"'{alice}'"))[1])
    middle: datetime = sorted(received.values())[len(received) // 2]
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", archived["alice"])], actor="carol")
    place_hold(lake, "C", actor="carol", date_start=middle)

    covered = HoldCoverage.load(lake).covered(all_versions(lake))

    dated = {v.item_id for v in covered if v.item_date is not None}
    assert dated == {item for item, moment in received.items() if moment >= middle}
    # The deletion tombstone carries no received time, so the hold keeps it.
    undated = {v.item_id for v in covered if v.item_date is None}
    assert undated == {archived["deleted"]}


def test_query_hold_through_index(lake: Lake, archived: dict[str, Any]) -> None:
    from m365lake.search import update_index

    update_index(lake)
    alice = mailbox_id(lake, archived["alice"])
    subject = run_sql(
        lake,
        f"SELECT subject FROM message_versions WHERE message_id = '{archived['deleted']}'",
    )[1][0][0]
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", archived["alice"])], actor="carol")
    hold = place_hold(lake, "C", actor="carol", kql=f'subject:"{subject}"')

    covered = HoldCoverage.load(lake).covered(all_versions(lake))

    assert covered
    assert {v.container_id for v in covered} == {alice}
    assert archived["deleted"] in {v.item_id for v in covered}
    assert all(ids == [hold.hold_id] for ids in covered.values())


def test_cli_case_and_hold_on_archive(lake: Lake, archived: dict[str, Any]) -> None:
    @click.group()
    def main() -> None:
        """Stands in for the m365lake command."""

    register(main)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, [*args, "--lake", lake.location, "--actor", "carol"])
        assert result.exit_code == 0, result.output
        return result.output.strip()

    run("case", "create", "Falcon", "--id", "FALCON")
    run(
        "case",
        "add-custodian",
        "FALCON",
        "--mailbox",
        archived["bob"],
        "--site",
        archived["site_url"],
    )
    hold_id = run("hold", "place", "FALCON")
    run("hold", "release", hold_id, "--reason", "settled")
    run("case", "close", "FALCON")
    verified = runner.invoke(main, ["verify", "--lake", lake.location, "--sample", "3"])

    assert load_case(lake, "FALCON").case.status == "closed"
    actions = [event.action for event in read_audit_events(lake, case_id="FALCON")]
    assert actions == ["case.create", "custodian.add", "hold", "release", "case.close"]
    assert verified.exit_code == 0, verified.output
    assert "5 audit events" in verified.output


def test_held_archive_verifies(lake: Lake, archived: dict[str, Any]) -> None:
    create_case(lake, "Matter", actor="carol", case_id="C")
    add_custodians(lake, "C", [("mailbox", archived["alice"])], actor="carol")
    hold = place_hold(lake, "C", actor="carol")
    release_hold(lake, hold.hold_id, actor="dan", reason="settled")

    counts = verify_archive(lake)

    assert counts["audit_events"] == 4
    assert counts["blobs"] >= 1
