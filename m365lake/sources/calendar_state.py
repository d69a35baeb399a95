"""Archived state of one mailbox's calendars: the latest version of each calendar and event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan


@dataclass(frozen=True)
class KnownCalendar:
    """The latest archived version of a calendar."""

    change_key: str | None
    name: str
    deleted: bool


@dataclass(frozen=True)
class KnownEvent:
    """The latest archived version of an event (single, series master or exception)."""

    change_key: str | None
    calendar_id: str | None
    event_type: str | None
    series_master_id: str | None
    deleted: bool


@dataclass
class CalendarState:
    """Archived calendars and events of one mailbox, keyed by Graph id."""

    calendars: dict[str, KnownCalendar] = field(default_factory=dict)
    events: dict[str, KnownEvent] = field(default_factory=dict)

    def live_events_in(self, calendar_id: str) -> set[str]:
        """Return the ids of live singles and series masters archived in ``calendar_id``."""
        return {
            event_id
            for event_id, known in self.events.items()
            if known.calendar_id == calendar_id
            and not known.deleted
            and known.event_type != "exception"
        }

    def live_exceptions_of(self, master_id: str) -> set[str]:
        return {
            event_id
            for event_id, known in self.events.items()
            if known.series_master_id == master_id and not known.deleted
        }


_OPTIONS = (
    "hive_partitioning = false, union_by_name = true, filename = true, file_row_number = true"
)


def _latest(
    lake: Lake, table: str, key: str, columns: Sequence[str], mailbox_id: str
) -> list[dict[str, Any]]:
    """Return ``columns`` of the latest row per ``key`` in the mailbox's partition only."""
    marker = f"mailbox_id={mailbox_id}"
    scan = TableScan(
        lake,
        [
            entry
            for entry in lake.committed_entries(table)
            if marker in PurePosixPath(entry["path"]).parts
        ],
    )
    if not scan:
        return []
    selected = ", ".join(f'"{name}"' for name in columns)
    # Files are listed in commit order, so file position and row number order versions
    # captured at the same instant.
    with reading.connect(lake) as db, scan.errors():
        query = (
            f"SELECT {selected} FROM {scan.sql(_OPTIONS, connection=db)} "
            f'QUALIFY row_number() OVER (PARTITION BY "{key}" ORDER BY captured_at DESC, '
            "list_position($files, filename) DESC, file_row_number DESC) = 1"
        )
        cursor = db.execute(query, {"files": scan.locations})
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def load_calendar_state(lake: Lake, mailbox_id: str) -> CalendarState:
    """Read the latest committed version of every calendar and event of a mailbox."""
    state = CalendarState()
    columns = ["calendar_id", "change_key", "name", "change"]
    for row in _latest(lake, "calendars", "calendar_id", columns, mailbox_id):
        state.calendars[row["calendar_id"]] = KnownCalendar(
            row["change_key"], row["name"] or "", row["change"] == "deleted"
        )
    columns = ["event_id", "change_key", "calendar_id", "event_type", "series_master_id"]
    for row in _latest(lake, "events", "event_id", [*columns, "change"], mailbox_id):
        state.events[row["event_id"]] = KnownEvent(
            row["change_key"],
            row["calendar_id"],
            row["event_type"],
            row["series_master_id"],
            row["change"] == "deleted",
        )
    return state
