"""Calendar restore end to end: archive a series, delete it in the tenant, restore it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from m365lake.backup_calendar import backup_calendars
from m365lake.catalog import refresh_catalog
from m365lake.emulator import EmulatorServer, Tenant
from m365lake.emulator.calendar_records import EventView
from m365lake.emulator.generator import generate_tenant
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.restore.calendar import (
    plan_calendar_restore,
    run_calendar_restore,
    select_events,
    verify_calendar_restore,
)
from m365lake.restore.ledger import RestoreLedger
from m365lake.restore.model import ConflictPolicy, ItemResult, Outcome, RestoreTarget
from m365lake.restore.selection import Selection

WINDOW = (datetime(2023, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


@pytest.fixture
def tenant() -> Tenant:
    tenant = Tenant.from_seed(generate_tenant(seed=3, users=2, messages_per_user=1))
    tenant.app.roles.append("Calendars.ReadWrite")
    return tenant


@pytest.fixture
def emulator(tenant: Tenant, emulator_state: Path) -> Iterator[EmulatorServer]:
    with EmulatorServer(tenant, emulator_state) as server:
        yield server


def owner(tenant: Tenant) -> str:
    return sorted(info.user.user_principal_name for info in tenant.users())[0]


def weekly(tenant: Tenant, upn: str) -> EventView:
    return next(
        view
        for view in tenant.calendar_events(tenant.user_id(upn), None)
        if view.kind == "seriesMaster"
        and (view.master.recurrence or {})["pattern"]["type"] == "weekly"
    )


def shape(tenant: Tenant, upn: str, master_id: str) -> list[tuple[str, datetime, datetime | None]]:
    """Return (type, start, original start) of every instance, the way a user sees the series."""
    views = tenant.instances(tenant.user_id(upn), master_id, *WINDOW)
    return [
        (view.kind, view.start_utc, view.master and view.original_start)
        for view in sorted(views, key=lambda v: v.start_utc)
    ]


def restore_calendar(
    emulator: EmulatorServer,
    lake: Lake,
    selection: Selection,
    policy: ConflictPolicy = ConflictPolicy.SKIP,
) -> tuple[list[ItemResult], list[Any]]:
    async def scenario() -> tuple[list[ItemResult], list[Any]]:
        async with GraphClient(emulator.settings()) as graph:
            rows = select_events(lake, selection)
            ledger = RestoreLedger.load(lake)
            plan = await plan_calendar_restore(lake, graph, rows, RestoreTarget(), policy, ledger)
            results = await run_calendar_restore(
                lake, graph, plan, restore_id="restore-test", policy=policy, ledger=ledger
            )
            findings = await verify_calendar_restore(lake, graph, results)
            return results, findings

    return asyncio.run(scenario())


def test_deleted_series_restored_with_exception_and_cancellation(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    upn = owner(tenant)
    uid = tenant.user_id(upn)
    series = weekly(tenant, upn)
    before = shape(tenant, upn, series.id)
    (moved_original,) = series.master.exceptions
    moved_to = series.master.exceptions[moved_original].start
    (cancelled_original,) = series.master.cancelled
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)
    tenant.delete_event(uid, series.id)
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)

    results, findings = restore_calendar(
        emulator, lake, Selection(item_ids=(series.id,), workloads=("calendar",))
    )

    assert [r.outcome for r in results] == [Outcome.CREATED]
    assert findings == []
    new_id = results[0].target_item_id
    assert new_id is not None and new_id != series.id
    after = shape(tenant, upn, new_id)
    assert len(after) == len(before)
    assert [(kind, start) for kind, start, _ in after] == [
        (kind, start) for kind, start, _ in before
    ]
    restored = tenant.calendar_box(uid).events[new_id]
    assert restored.cancelled == {cancelled_original}
    assert set(restored.exceptions) == {moved_original}
    assert restored.exceptions[moved_original].start == moved_to
    assert restored.properties["subject"] == series.master.properties["subject"]
    calendar = tenant.calendar_box(uid).calendars[restored.calendar_id]
    assert calendar.name == "Calendar"


def test_restore_twice_creates_nothing_new(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    upn = owner(tenant)
    uid = tenant.user_id(upn)
    series = weekly(tenant, upn)
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)
    tenant.delete_event(uid, series.id)
    selection = Selection(item_ids=(series.id,), workloads=("calendar",))

    first, _ = restore_calendar(emulator, lake, selection)
    second, _ = restore_calendar(emulator, lake, selection)

    assert [r.outcome for r in first] == [Outcome.CREATED]
    assert [r.outcome for r in second] == [Outcome.ALREADY_PRESENT]
    assert second[0].target_item_id == first[0].target_item_id


def test_live_event_not_restored_again(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    upn = owner(tenant)
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)
    count = len(tenant.calendar_events(tenant.user_id(upn), None))

    results, _ = restore_calendar(emulator, lake, Selection(custodian=upn, workloads=("calendar",)))

    assert results
    assert {r.outcome for r in results} == {Outcome.ALREADY_PRESENT}
    assert len(tenant.calendar_events(tenant.user_id(upn), None)) == count


def test_collision_skipped_by_default(tenant: Tenant, emulator: EmulatorServer, lake: Lake) -> None:
    upn = owner(tenant)
    uid = tenant.user_id(upn)
    single = next(v for v in tenant.calendar_events(uid, None) if v.kind == "singleInstance")
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)
    tenant.delete_event(uid, single.id)
    # Someone re-created the meeting by hand: same subject, same start, new id.
    tenant.add_calendar_event(
        upn,
        {
            "subject": single.master.properties["subject"],
            "start": {"dateTime": single.start.isoformat(), "timeZone": single.master.time_zone},
            "end": {"dateTime": single.end.isoformat(), "timeZone": single.master.time_zone},
        },
    )
    selection = Selection(item_ids=(single.id,), workloads=("calendar",))

    skipped, _ = restore_calendar(emulator, lake, selection)
    renamed, findings = restore_calendar(emulator, lake, selection, ConflictPolicy.RENAME)

    assert [r.outcome for r in skipped] == [Outcome.SKIPPED]
    assert [r.outcome for r in renamed] == [Outcome.RENAMED]
    assert findings == []
    subjects = [
        v.master.properties.get("subject") for v in tenant.calendar_events(uid, None)
    ].count(single.master.properties["subject"])
    assert subjects == 2


def test_attachment_restored_from_blob(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    upn = owner(tenant)
    uid = tenant.user_id(upn)
    with_file = next(v for v in tenant.calendar_events(uid, None) if v.master.attachments)
    content = with_file.master.attachments[0].content
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)
    tenant.delete_event(uid, with_file.id)

    results, _ = restore_calendar(
        emulator, lake, Selection(item_ids=(with_file.id,), workloads=("calendar",))
    )

    restored = tenant.calendar_box(uid).events[str(results[0].target_item_id)]
    assert [a.content for a in restored.attachments] == [content]


def test_restore_command_brings_series_back(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    import os
    import subprocess
    import sys

    upn = owner(tenant)
    uid = tenant.user_id(upn)
    series = weekly(tenant, upn)
    before = shape(tenant, upn, series.id)
    asyncio.run(backup_calendars(emulator.settings(), lake))
    tenant.delete_event(uid, series.id)
    env = {**os.environ, **emulator.environment(), "M365LAKE_LAKE": str(lake.root)}
    command = [sys.executable, "-m", "m365lake", "restore", "--workload", "calendar"]
    command += ["--id", series.id, "--execute"]

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    assert "calendar" in done.stdout
    masters = [v for v in tenant.calendar_events(uid, None) if v.kind == "seriesMaster"]
    restored = next(
        v for v in masters if v.master.properties["subject"] == series.master.properties["subject"]
    )
    assert [(kind, start) for kind, start, _ in shape(tenant, upn, restored.id)] == [
        (kind, start) for kind, start, _ in before
    ]


def test_mail_restore_by_custodian_leaves_events_alone(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    from m365lake.restore.calendar import select_events

    upn = owner(tenant)
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)

    assert select_events(lake, Selection(custodian=upn)) == []
    assert select_events(lake, Selection(custodian=upn, workloads=("calendar",)))


def test_restore_as_of_before_change(tenant: Tenant, emulator: EmulatorServer, lake: Lake) -> None:
    upn = owner(tenant)
    uid = tenant.user_id(upn)
    single = next(v for v in tenant.calendar_events(uid, None) if v.kind == "singleInstance")
    subject = single.master.properties["subject"]
    asyncio.run(backup_calendars(emulator.settings(), lake))
    between = datetime.now(UTC)
    tenant.update_event(uid, single.id, {"subject": "Renamed later"})
    asyncio.run(backup_calendars(emulator.settings(), lake))
    tenant.delete_event(uid, single.id)
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)

    results, findings = restore_calendar(
        emulator,
        lake,
        Selection(item_ids=(single.id,), as_of=between, workloads=("calendar",)),
    )

    assert [r.outcome for r in results] == [Outcome.CREATED]
    assert findings == []
    restored = tenant.calendar_box(uid).events[str(results[0].target_item_id)]
    assert restored.properties["subject"] == subject


def test_unfinished_series_reported_with_its_id(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    upn = owner(tenant)
    uid = tenant.user_id(upn)
    series = weekly(tenant, upn)
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)
    tenant.delete_event(uid, series.id)
    emulator.inject(path_pattern=r"/instances$", status=400, times=1)

    results, _ = restore_calendar(
        emulator, lake, Selection(item_ids=(series.id,), workloads=("calendar",))
    )

    (result,) = results
    assert result.outcome is Outcome.FAILED
    assert result.target_item_id in tenant.calendar_box(uid).events
    assert result.reason is not None and "not completed" in result.reason


def test_rerun_completes_unfinished_series(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    upn = owner(tenant)
    uid = tenant.user_id(upn)
    series = weekly(tenant, upn)
    before = shape(tenant, upn, series.id)
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)
    tenant.delete_event(uid, series.id)
    selection = Selection(item_ids=(series.id,), workloads=("calendar",))
    emulator.inject(path_pattern=r"/instances$", status=400, times=1)
    (failed,), _ = restore_calendar(emulator, lake, selection)

    (result,), findings = restore_calendar(emulator, lake, selection)

    assert result.outcome is Outcome.CREATED
    assert result.target_item_id == failed.target_item_id
    assert findings == []
    after = shape(tenant, upn, str(result.target_item_id))
    assert [(kind, start) for kind, start, _ in after] == [
        (kind, start) for kind, start, _ in before
    ]
    subject = series.master.properties["subject"]
    masters = [
        view
        for view in tenant.calendar_events(uid, None)
        if view.master.properties.get("subject") == subject
    ]
    assert len(masters) == 1


def test_failed_live_check_fails_only_its_item(
    tenant: Tenant, emulator: EmulatorServer, lake: Lake
) -> None:
    upn = owner(tenant)
    uid = tenant.user_id(upn)
    series = weekly(tenant, upn)
    single = next(v for v in tenant.calendar_events(uid, None) if v.kind == "singleInstance")
    asyncio.run(backup_calendars(emulator.settings(), lake))
    refresh_catalog(lake)
    tenant.delete_event(uid, series.id)
    tenant.delete_event(uid, single.id)
    emulator.inject(path_pattern=rf"/events/{series.id}$", status=400, times=1)

    results, _ = restore_calendar(
        emulator, lake, Selection(item_ids=(series.id, single.id), workloads=("calendar",))
    )

    outcomes = {r.planned.source_item_id: r for r in results}
    assert outcomes[single.id].outcome is Outcome.CREATED
    assert outcomes[series.id].outcome is Outcome.FAILED
    assert outcomes[series.id].target_item_id is None
    assert "400" in (outcomes[series.id].reason or "")
