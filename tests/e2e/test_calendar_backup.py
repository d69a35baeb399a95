"""Calendar backup end to end: the real client against the emulator, into a real lake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from m365lake.backup_calendar import CalendarBackupSummary, backup_calendars
from m365lake.discovery.lake_rows import latest_rows
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.calendar_store import occurrence_id
from m365lake.emulator.generator import generate_tenant
from m365lake.lake import Lake

EVENT_COLUMNS = [
    "mailbox_id",
    "event_id",
    "change",
    "event_type",
    "series_master_id",
    "original_start",
    "start_at",
    "subject",
    "change_key",
    "cancelled_occurrences",
    "deleted_at",
    "run_id",
    "json_sha256",
    "json_inline",
]


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.from_seed(generate_tenant(seed=11, users=2, messages_per_user=2))


@pytest.fixture
def emulator(tenant: Tenant, emulator_state: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tenant, emulator_state) as server:
        yield server


def run_backup(emulator: EmulatorServer, lake: Lake) -> CalendarBackupSummary:
    summary = asyncio.run(backup_calendars(emulator.settings(), lake))
    assert summary.failed == {}
    return summary


def latest_events(lake: Lake) -> dict[str, dict[str, Any]]:
    rows = latest_rows(lake, "events", ["mailbox_id", "event_id"], EVENT_COLUMNS)
    return {row["event_id"]: row for row in rows}


def event_versions(lake: Lake) -> int:
    rows = latest_rows(lake, "events", ["run_id", "event_id"], ["run_id", "event_id"])
    return len(rows)


def weekly_master(tenant: Tenant, upn: str) -> Any:
    uid = tenant.user_id(upn)
    return next(
        v.master
        for v in tenant.calendar_events(uid, None)
        if v.kind == "seriesMaster" and (v.master.recurrence or {})["pattern"]["type"] == "weekly"
    )


def test_first_run_archives_series_exceptions_cancellations(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    summary = run_backup(emulator, lake)

    assert summary.total("failures") == 0
    events = latest_events(lake)
    for info in tenant.users():
        uid = info.id
        live = {v.id for v in tenant.calendar_events(uid, None)}
        archived = {
            e for e, row in events.items() if row["mailbox_id"] == uid and not row["deleted_at"]
        }
        master = weekly_master(tenant, info.user.user_principal_name)
        exception_ids = {occurrence_id(master, original) for original in master.exceptions}
        assert archived == live | exception_ids

        row = events[master.id]
        assert row["event_type"] == "seriesMaster"
        (cancelled,) = master.cancelled
        berlin_offset = timedelta(hours=1 if cancelled.month < 4 else 2)
        assert row["cancelled_occurrences"] == [
            (cancelled - berlin_offset).strftime("%Y-%m-%dT%H:%M:%SZ")
        ]
        (exception_id,) = exception_ids
        exception = events[exception_id]
        assert exception["event_type"] == "exception"
        assert exception["series_master_id"] == master.id
        (original,) = master.exceptions
        moved = master.exceptions[original]
        assert exception["start_at"] != exception["original_start"]
        assert exception["start_at"].replace(tzinfo=None) == moved.start - (
            timedelta(hours=1 if moved.start.month < 4 else 2)
        )
        stored = json.loads(lake.read_content(exception["json_sha256"], exception["json_inline"]))
        assert stored["type"] == "exception"

    attachments = latest_rows(
        lake, "event_attachments", ["event_id", "attachment_id"], ["name", "content_sha256"]
    )
    assert len(attachments) == len(tenant.users())
    for attachment in attachments:
        assert lake.blobs.read(attachment["content_sha256"]).startswith(b"Agenda for ")


def test_unchanged_second_run_writes_no_events(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    run_backup(emulator, lake)
    before = event_versions(lake)

    summary = run_backup(emulator, lake)

    assert summary.total("events_new") == 0
    assert summary.total("events_updated") == 0
    assert event_versions(lake) == before


def test_changes_give_versions_and_deletions(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    run_backup(emulator, lake)
    upn = sorted(info.user.user_principal_name for info in tenant.users())[0]
    uid = tenant.user_id(upn)
    singles = [v for v in tenant.calendar_events(uid, None) if v.kind == "singleInstance"]
    changed, deleted = singles[0].id, singles[1].id
    tenant.update_event(uid, changed, {"subject": "Renamed workshop"})
    tenant.delete_event(uid, deleted)
    master = weekly_master(tenant, upn)
    second = sorted(
        original
        for original in tenant._occurrence_starts(master, master.start + timedelta(days=400))
        if original not in master.cancelled and original not in master.exceptions
    )[-1]
    tenant.update_event(
        uid,
        occurrence_id(master, second),
        {"start": {"dateTime": (second + timedelta(hours=3)).isoformat(), "timeZone": "UTC"}},
    )
    created = tenant.add_calendar_event(
        upn,
        {
            "subject": "New planning",
            "start": {"dateTime": "2024-06-03T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2024-06-03T11:00:00", "timeZone": "UTC"},
        },
    )

    summary = run_backup(emulator, lake)

    events = latest_events(lake)
    assert events[changed]["subject"] == "Renamed workshop"
    assert events[changed]["change"] == "updated"
    assert events[deleted]["change"] == "deleted"
    assert events[deleted]["deleted_at"] is not None
    assert events[created]["change"] == "created"
    assert events[master.id]["change"] == "updated"
    new_exception = events[occurrence_id(master, second)]
    assert new_exception["event_type"] == "exception"
    assert new_exception["change"] == "created"
    assert summary.total("events_deleted") == 1
    # The untouched events of the other mailbox wrote nothing.
    other = [r for r in events.values() if r["mailbox_id"] != uid]
    assert len({r["run_id"] for r in other}) == 1


def test_deleted_series_deletes_its_exceptions(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    run_backup(emulator, lake)
    upn = sorted(info.user.user_principal_name for info in tenant.users())[0]
    master = weekly_master(tenant, upn)
    exception_ids = {occurrence_id(master, original) for original in master.exceptions}
    tenant.delete_event(tenant.user_id(upn), master.id)

    run_backup(emulator, lake)

    events = latest_events(lake)
    assert events[master.id]["change"] == "deleted"
    for exception_id in exception_ids:
        assert events[exception_id]["change"] == "deleted"


def test_missing_calendar_role_fails_mailbox(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    tenant.app.roles.remove("Calendars.Read")

    summary = asyncio.run(backup_calendars(emulator.settings(), lake))

    assert summary.results == []
    assert len(summary.failed) == len(tenant.users())
    assert all("AccessDenied" in reason for reason in summary.failed.values())
    assert latest_rows(lake, "events", ["event_id"], ["event_id"]) == []


def test_window_covers_whole_numbered_series() -> None:
    from m365lake.sources.calendar import series_window

    master = {
        "start": {"dateTime": "2024-03-04T08:00:00.0000000", "timeZone": "UTC"},
        "originalStartTimeZone": "Europe/Berlin",
        "recurrence": {
            "pattern": {"type": "weekly", "daysOfWeek": ["monday"]},
            "range": {"type": "numbered", "startDate": "2024-03-04", "numberOfOccurrences": 52},
        },
    }
    start, end = series_window(master, datetime(2024, 1, 1, tzinfo=UTC))
    assert start < datetime(2024, 3, 4, 8, tzinfo=UTC)
    assert end > datetime(2025, 2, 24, 8, tzinfo=UTC)


def test_catalog_views_list_events(tenant: Tenant, emulator: EmulatorServer, lake: Lake) -> None:
    from m365lake.catalog import refresh_catalog, run_sql

    run_backup(emulator, lake)
    refresh_catalog(lake)

    _, rows = run_sql(lake, "SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 1")
    counts = dict(rows)
    assert counts["exception"] == len(tenant.users())
    assert counts["seriesMaster"] == 4 * len(tenant.users())
    _, calendars = run_sql(lake, "SELECT count(*) FROM calendars")
    assert calendars[0][0] == 2 * len(tenant.users())
    _, attachments = run_sql(lake, "SELECT count(*) FROM event_attachments")
    assert attachments[0][0] == len(tenant.users())


def test_cli_backup_calendar_workload(
    tenant: Tenant, emulator: EmulatorServer, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, **emulator.environment(), "M365LAKE_LAKE": str(tmp_path / "cli-lake")}
    backup = subprocess.run(
        [sys.executable, "-m", "m365lake", "backup", "--workload", "calendar"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert backup.returncode == 0, backup.stderr
    assert "calendars of 2 mailboxes archived" in backup.stdout
    lake = Lake.open(tmp_path / "cli-lake")
    assert latest_rows(lake, "events", ["event_id"], ["event_id"])
    assert latest_rows(lake, "messages", ["message_id"], ["message_id"]) == []


def test_failed_instances_recorded_and_retried(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    # 400 is not retried by the client, so the request fails for this run only.
    emulator.inject(path_pattern=r"/instances$", status=400, times=1)

    first = run_backup(emulator, lake)

    assert first.total("failures") == 1
    failures = latest_rows(
        lake, "failures", ["run_id", "item_id"], ["workload", "stage", "outcome", "item_id"]
    )
    assert [(f["workload"], f["stage"], f["outcome"]) for f in failures] == [
        ("calendar", "fetch", "failed")
    ]
    missing = failures[0]["item_id"]
    assert missing not in latest_events(lake)

    second = run_backup(emulator, lake)

    assert second.total("failures") == 0
    assert second.total("events_new") >= 1
    assert latest_events(lake)[missing]["event_type"] == "seriesMaster"


def test_checkpoints_end_in_same_archive(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake, tmp_path: Path
) -> None:
    from m365lake.graph import GraphClient
    from m365lake.sources.calendar import backup_calendars_of
    from m365lake.sources.mailboxes import get_mailbox

    upn = sorted(info.user.user_principal_name for info in tenant.users())[0]

    async def scenario() -> int:
        async with GraphClient(emulator.settings()) as graph:
            mailbox = await get_mailbox(graph, upn)
            result = await backup_calendars_of(
                graph, lake, mailbox, run_id="run-checkpoints", checkpoint_events=1
            )
            return result.commits

    commits = asyncio.run(scenario())

    assert commits == 3  # after each of the two calendars, then the final commit
    uid = tenant.user_id(upn)
    live = {v.id for v in tenant.calendar_events(uid, None)}
    archived = {e for e, row in latest_events(lake).items() if row["event_type"] != "exception"}
    assert archived == live


def test_unknown_zone_derives_no_cancellations() -> None:
    from m365lake.sources.calendar import expected_starts, series_window, series_zone

    master = {
        "start": {"dateTime": "2024-03-04T08:00:00.0000000", "timeZone": "UTC"},
        "originalStartTimeZone": "Customized Time Zone",
        "recurrence": {
            "pattern": {"type": "daily"},
            "range": {"type": "numbered", "startDate": "2024-03-04", "numberOfOccurrences": 3},
        },
    }

    assert series_zone(master) is None
    with pytest.raises(ValueError, match="Customized Time Zone"):
        expected_starts(master, until=None)
    start, end = series_window(master, datetime(2024, 1, 1, tzinfo=UTC))
    assert start < datetime(2024, 3, 4, 8, tzinfo=UTC) < datetime(2024, 3, 6, 8, tzinfo=UTC) < end

    master["recurrence"]["range"]["recurrenceTimeZone"] = "W. Europe Standard Time"
    assert series_zone(master) == "W. Europe Standard Time"
    assert len(expected_starts(master, until=None)) == 3
