"""Archived state of one mailbox's calendars: the latest version of each calendar and event."""

from __future__ import annotations

from dataclasses import dataclass, field

from m365lake.discovery.lake_rows import latest_rows
from m365lake.lake import Lake


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


def load_calendar_state(lake: Lake, mailbox_id: str) -> CalendarState:
    """Read the latest committed version of every calendar and event of a mailbox."""
    state = CalendarState()
    # NOTE: latest_rows reads the table of every mailbox and the rows are filtered here;
    # reading only the mailbox's partition would scale better on a large tenant.
    calendars = latest_rows(
        lake,
        "calendars",
        ["mailbox_id", "calendar_id"],
        ["mailbox_id", "calendar_id", "change_key", "name", "change"],
    )
    for row in calendars:
        if row["mailbox_id"] != mailbox_id:
            continue
        state.calendars[row["calendar_id"]] = KnownCalendar(
            row["change_key"], row["name"] or "", row["change"] == "deleted"
        )
    events = latest_rows(
        lake,
        "events",
        ["mailbox_id", "event_id"],
        [
            "mailbox_id",
            "event_id",
            "change_key",
            "calendar_id",
            "event_type",
            "series_master_id",
            "change",
        ],
    )
    for row in events:
        if row["mailbox_id"] != mailbox_id:
            continue
        state.events[row["event_id"]] = KnownEvent(
            row["change_key"],
            row["calendar_id"],
            row["event_type"],
            row["series_master_id"],
            row["change"] == "deleted",
        )
    return state
