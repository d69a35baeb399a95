"""Every ready-made query in queries/ has a header comment and runs on an archived tenant.

The queries that have a second source of truth (the purge plan, the tenant's sharing,
the hold rules) are checked against it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from m365lake.backup_files import backup_files
from m365lake.catalog import refresh_catalog, run_sql
from m365lake.discovery import add_custodians, create_case, place_hold
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.lake import Lake
from m365lake.retention import add_policy, plan_purge
from tests.e2e.conftest import BackupRunner

QUERY_DIR = Path(__file__).resolve().parents[2] / "queries"
QUERIES = sorted(QUERY_DIR.glob("*.sql"))
ACTOR = "analyst@contoso.example"


def run_query(lake: Lake, name: str) -> list[dict[str, Any]]:
    """Run ``queries/<name>.sql``; return its rows as dicts keyed by column name."""
    columns, rows = run_sql(lake, (QUERY_DIR / f"{name}.sql").read_text())
    return [dict(zip(columns, row, strict=True)) for row in rows]


def scalar(lake: Lake, statement: str) -> Any:
    return run_sql(lake, statement)[1][0][0]


def back_up_files(emulator: EmulatorServer, lake: Lake) -> None:
    asyncio.run(backup_files(emulator.settings(), lake))
    refresh_catalog(lake)


def test_queries_folder_not_empty():
    assert len(QUERIES) >= 5


@pytest.fixture
def archived(tenant: Tenant, emulator: EmulatorServer, lake: Lake, backup: BackupRunner) -> None:
    backup()
    upn = tenant.users()[0].user.user_principal_name
    tenant.delete_message(upn, sorted(tenant.live_messages(upn))[0])
    backup()
    back_up_files(emulator, lake)


@pytest.mark.parametrize("path", QUERIES, ids=[path.stem for path in QUERIES])
def test_query_runs_on_archived_tenant(path: Path, archived, sql):
    text = path.read_text()

    rows = sql(text)

    assert text.startswith("-- "), f"{path.name} must open with a comment saying what it answers"
    if path.stem in {
        "volume_per_mailbox_month",
        "top_sender_domains",
        "deleted_in_tenant",
        "external_file_sharing",
        "archived_per_site_and_user",
    }:
        assert rows, f"{path.name} returned no rows on a tenant that has data for it"


def mailbox_id(lake: Lake, upn: str) -> str:
    return str(
        scalar(lake, f"SELECT mailbox_id FROM mailboxes WHERE user_principal_name = '{upn}'")
    )


def onedrive_id(lake: Lake, upn: str) -> str:
    return str(
        scalar(
            lake, f"SELECT drive_id FROM drives WHERE owner_kind = 'user' AND owner_name = '{upn}'"
        )
    )


def test_items_on_hold_per_hold(tenant: Tenant, archived, lake: Lake) -> None:
    first, second = (user.user.user_principal_name for user in tenant.users()[:2])
    case = create_case(lake, "Harbour contract", actor=ACTOR)
    added = add_custodians(
        lake, case.case_id, [("mailbox", first), ("onedrive", second)], actor=ACTOR
    )
    whole = place_hold(lake, case.case_id, actor=ACTOR, name="everything")
    mail_custodian = next(c.custodian_id for c in added if c.kind == "mailbox")
    dates = sorted(
        row[0]
        for row in run_sql(
            lake,
            "SELECT coalesce(received_at, sent_at) FROM message_versions "
            f"WHERE mailbox_id = '{mailbox_id(lake, first)}'",
        )[1]
    )
    start, end = dates[len(dates) // 4], dates[len(dates) // 2]
    ranged = place_hold(
        lake,
        case.case_id,
        actor=ACTOR,
        custodian_ids=[mail_custodian],
        date_start=start,
        date_end=end,
    )
    query = place_hold(lake, case.case_id, actor=ACTOR, kql="subject:contract", all_locations=True)

    rows = {row["hold_id"]: row for row in run_query(lake, "items_on_hold")}

    box, drive = mailbox_id(lake, first), onedrive_id(lake, second)
    mail_versions, mail_items, mail_bytes = run_sql(
        lake,
        "SELECT count(*), count(DISTINCT message_id), sum(size) FROM message_versions "
        f"WHERE mailbox_id = '{box}'",
    )[1][0]
    file_versions, file_items, file_bytes = run_sql(
        lake,
        "SELECT count(*), count(DISTINCT item_id), sum(size) FROM file_versions "
        f"WHERE drive_id = '{drive}'",
    )[1][0]
    assert set(rows) == {whole.hold_id, ranged.hold_id, query.hold_id}
    assert rows[whole.hold_id]["case_name"] == "Harbour contract"
    assert rows[whole.hold_id]["mail_items"] == mail_items
    assert rows[whole.hold_id]["file_items"] == file_items > 0
    assert rows[whole.hold_id]["versions"] == mail_versions + file_versions
    assert rows[whole.hold_id]["bytes"] == mail_bytes + file_bytes
    in_range = [moment for moment in dates if start <= moment < end]
    assert 0 < len(in_range) < len(dates)
    assert rows[ranged.hold_id]["versions"] == len(in_range)
    assert rows[ranged.hold_id]["file_items"] == 0
    assert rows[query.hold_id]["kind"] == "query"
    assert rows[query.hold_id]["versions"] is None


def test_retention_candidates_match_purge_plan(tenant: Tenant, archived, lake: Lake) -> None:
    kept_upn, held_upn = (user.user.user_principal_name for user in tenant.users()[:2])
    policy = add_policy(
        lake, actor=ACTOR, name="mail after a day", workload="mail", action="delete", days=0
    )
    add_policy(
        lake,
        actor=ACTOR,
        name="keep the chair's mail",
        workload="mail",
        action="keep",
        days=36_500,
        locations=[("mailbox", kept_upn)],
    )
    case = create_case(lake, "Audit", actor=ACTOR)
    add_custodians(lake, case.case_id, [("mailbox", held_upn)], actor=ACTOR)
    place_hold(lake, case.case_id, actor=ACTOR)

    [row] = run_query(lake, "retention_candidates")

    plan = plan_purge(lake)
    versions = int(scalar(lake, "SELECT count(*) FROM message_versions"))
    per_mailbox = dict(
        run_sql(lake, "SELECT mailbox_id, count(*) FROM message_versions GROUP BY ALL")[1]
    )
    purged = [stored for stored in plan.purge if not stored.tombstone]
    held = [stored for stored in plan.held if not stored.tombstone]
    assert row["policy_id"] == policy.policy_id
    assert row["expired"] == versions
    assert row["protected"] == plan.protected == per_mailbox[mailbox_id(lake, kept_upn)]
    assert row["held"] == len(held) == per_mailbox[mailbox_id(lake, held_upn)]
    assert row["candidates"] == len(purged) > 0
    assert row["candidate_bytes"] == sum(stored.size or 0 for stored in purged)


def test_external_sharing_matches_tenant(tenant: Tenant, archived, lake: Lake) -> None:
    rows = run_query(lake, "external_file_sharing")

    expected = set()
    for (drive_id,) in run_sql(lake, "SELECT drive_id FROM drives")[1]:
        for item_id, (path, _, _) in tenant.live_files(drive_id).items():
            info = tenant.item_info(drive_id, item_id)
            assert info is not None
            if info.sharing is not None and info.sharing.scope in ("anonymous", "users"):
                expected.add((info.sharing.scope, "/".join(path)))
    scopes = [row["scope"] for row in rows]
    assert {(row["scope"], row["path"]) for row in rows} == expected
    assert {"anonymous", "users"} <= set(scopes)
    assert scopes == sorted(scopes)
    assert all(isinstance(row["shared_at"], datetime) for row in rows)


def test_coverage_gaps_close_after_retry(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, backup: BackupRunner
) -> None:
    upn = tenant.users()[0].user.user_principal_name
    backup()
    tenant.add_message(upn, ("Inbox",), b"From: a@contoso.example\r\nSubject: late\r\n\r\nx\r\n")
    emulator.inject(
        path_pattern=r"/messages/[^/]+/\$value$", status=400, code="ErrorInvalidRequest"
    )
    tenant.add_package("onedrive", upn, "Documents", ("Team notes",))
    backup()
    back_up_files(emulator, lake)

    gaps = {(row["workload"], row["outcome"]): row for row in run_query(lake, "coverage_gaps")}

    failures = {(row["workload"], row["location"]) for row in run_query(lake, "failures_by_reason")}
    assert ("files", f"{upn} / OneDrive") in failures
    assert set(gaps) == {("mail", "failed"), ("files", "skipped")}
    assert gaps[("mail", "failed")]["location"] == upn
    assert gaps[("mail", "failed")]["items"] == 1
    assert gaps[("files", "skipped")]["items"] == 1

    backup()
    back_up_files(emulator, lake)

    reopened = {(row["workload"], row["outcome"]) for row in run_query(lake, "coverage_gaps")}
    assert reopened == {("files", "skipped")}
