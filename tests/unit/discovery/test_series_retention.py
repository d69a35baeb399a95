"""Retention treats a calendar series (master, exceptions, their attachments) as one unit."""

from __future__ import annotations

import json
from typing import Any

from m365lake import catalog
from m365lake.discovery import create_case, place_hold
from m365lake.lake import Lake
from m365lake.retention import add_policy, purge
from m365lake.search import update_index
from tests.e2e.test_search_index import InlineExtractor
from tests.unit.discovery.lake_fixture import DAY, T0
from tests.unit.discovery.workload_fixture import HOUR, NOW, event, event_attachment

MAILBOX = "mb-bob"


def weekly(range_: dict[str, Any]) -> str:
    pattern = {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]}
    return json.dumps({"pattern": pattern, "range": {"startDate": "2024-01-01"} | range_})


def seed_series(lake: Lake, series_range: dict[str, Any]) -> str:
    """Commit a weekly series with one moved occurrence whose end passed long ago."""
    digest = lake.blobs.put(b"%PDF-1.7 slides of the moved occurrence " * 64)
    with lake.begin(run_id="seed-series", kind="calendar", container=None) as tx:
        tx.write_rows(
            "events",
            [
                event(
                    MAILBOX,
                    "e-series",
                    "created",
                    T0,
                    start=T0,
                    end=T0 + HOUR,
                    event_type="seriesMaster",
                    recurrence=weekly(series_range),
                ),
                event(
                    MAILBOX,
                    "e-series-x1",
                    "created",
                    T0 + DAY,
                    start=T0 + 8 * DAY,
                    end=T0 + 8 * DAY + HOUR,
                    event_type="exception",
                    series_master_id="e-series",
                    subject="Budget review moved to the offsite",
                ),
            ],
            partition={"mailbox_id": MAILBOX},
        )
        tx.write_rows(
            "event_attachments",
            [event_attachment(MAILBOX, "e-series-x1", "a-x1", T0 + DAY, digest, 2560)],
            partition={"mailbox_id": MAILBOX},
        )
        tx.commit()
    return digest


def delete_calendar_after(lake: Lake, days: int, **options: Any) -> None:
    add_policy(
        lake,
        actor="erin",
        name=f"calendar {days}d",
        workload="calendar",
        action="delete",
        days=days,
        **options,
    )


def table_rows(lake: Lake, table: str, columns: str) -> list[tuple[Any, ...]]:
    return sorted(catalog.run_sql(lake, f"SELECT {columns} FROM {table}_rows")[1])


def test_exception_stays_while_its_master_is_kept(lake: Lake) -> None:
    digest = seed_series(lake, {"type": "numbered", "numberOfOccurrences": 50})
    delete_calendar_after(lake, 1)

    purge(lake, actor="erin", apply=True, now=NOW)

    assert table_rows(lake, "events", "event_id") == [("e-series",), ("e-series-x1",)]
    assert table_rows(lake, "event_attachments", "event_id") == [("e-series-x1",)]
    assert lake.blobs.exists(digest)


def test_exception_goes_with_its_ended_master(lake: Lake) -> None:
    digest = seed_series(lake, {"type": "endDate", "endDate": "2024-02-26"})
    delete_calendar_after(lake, 30)

    result = purge(lake, actor="erin", apply=True, now=NOW)

    assert table_rows(lake, "events", "event_id") == []
    assert table_rows(lake, "event_attachments", "event_id") == []
    assert not lake.blobs.exists(digest)
    assert result.counts()["part_rows"] == 1


def test_exception_waits_for_series_end(lake: Lake) -> None:
    # The series ends after NOW, so neither the master nor its moved occurrence expires.
    seed_series(lake, {"type": "endDate", "endDate": "2024-12-30"})
    delete_calendar_after(lake, 30)

    purge(lake, actor="erin", apply=True, now=NOW)

    assert table_rows(lake, "events", "event_id") == [("e-series",), ("e-series-x1",)]


def test_deleted_exception_waits_for_its_live_master(lake: Lake) -> None:
    seed_series(lake, {"type": "numbered", "numberOfOccurrences": 50})
    with lake.begin(run_id="cancel", kind="calendar", container=None) as tx:
        tx.write_rows(
            "events",
            [
                event(
                    MAILBOX,
                    "e-series-x1",
                    "deleted",
                    T0 + 2 * DAY,
                    start=T0 + 8 * DAY,
                    end=T0 + 8 * DAY + HOUR,
                    event_type="exception",
                    series_master_id="e-series",
                )
            ],
            partition={"mailbox_id": MAILBOX},
        )
        tx.commit()
    delete_calendar_after(lake, 30, basis="deleted")

    result = purge(lake, actor="erin", apply=True, now=NOW)

    assert table_rows(lake, "events", "event_id, change") == [
        ("e-series", "created"),
        ("e-series-x1", "created"),
        ("e-series-x1", "deleted"),
    ]
    assert result.counts()["series_kept"] == 2


def test_hold_on_exception_keeps_its_master(lake: Lake) -> None:
    seed_series(lake, {"type": "endDate", "endDate": "2024-02-26"})
    update_index(lake, extractor=InlineExtractor())
    create_case(lake, "Matter", actor="carol", case_id="C")
    hold_id = place_hold(lake, "C", actor="carol", kql="offsite", all_locations=True).hold_id
    delete_calendar_after(lake, 30)

    result = purge(lake, actor="erin", apply=True, now=NOW)

    assert table_rows(lake, "events", "event_id") == [("e-series",), ("e-series-x1",)]
    assert table_rows(lake, "event_attachments", "event_id") == [("e-series-x1",)]
    held = {stored.version.item_id: ids for stored, ids in result.plan.held.items()}
    assert held == {"e-series": [hold_id], "e-series-x1": [hold_id]}
