"""Records of the emulated calendars: calendars, events, series exceptions, attachments.

Times of an event are kept as naive local date-times in the event's own time zone, because
a series repeats at the same local time of day. Graph serves them in UTC by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from m365lake.recurrence import to_utc

# Properties of an event that a client may set with POST or PATCH, kept as sent.
WRITABLE_PROPERTIES = (
    "subject",
    "body",
    "importance",
    "sensitivity",
    "showAs",
    "categories",
    "isAllDay",
    "isOnlineMeeting",
    "location",
    "locations",
    "attendees",
    "organizer",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "allowNewTimeProposals",
)


@dataclass
class EventAttachment:
    """A file attachment of an event."""

    id: str
    name: str
    content_type: str
    content: bytes
    is_inline: bool
    modified_at: datetime


@dataclass
class SeriesException:
    """A changed occurrence of a series, keyed in its master by its original start."""

    start: datetime
    end: datetime
    overrides: dict[str, Any]
    created_at: datetime
    modified_at: datetime
    modified_seq: int


@dataclass
class CalendarEvent:
    """A single event or a series master, with the exceptions and cancellations of a series."""

    id: str
    calendar_id: str
    properties: dict[str, Any]
    start: datetime
    end: datetime
    time_zone: str
    recurrence: dict[str, Any] | None
    ical_uid: str
    created_at: datetime
    modified_at: datetime
    created_seq: int
    modified_seq: int
    attachments: list[EventAttachment] = field(default_factory=list)
    cancelled: set[datetime] = field(default_factory=set)
    """Original local starts of cancelled occurrences."""
    exceptions: dict[datetime, SeriesException] = field(default_factory=dict)

    @property
    def is_series(self) -> bool:
        return self.recurrence is not None


@dataclass
class Calendar:
    id: str
    name: str
    color: str
    is_default: bool
    created_seq: int
    modified_seq: int


@dataclass
class CalendarBox:
    """The calendars of one mailbox, with the removals calendarView delta reports."""

    user_id: str
    calendars: dict[str, Calendar] = field(default_factory=dict)
    events: dict[str, CalendarEvent] = field(default_factory=dict)
    occurrence_index: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    """Occurrence id to (master id, original local start)."""
    removed: list[tuple[int, str]] = field(default_factory=list)
    """(sequence number, event id) of each event or occurrence that left the calendar."""
    generation: int = 1
    event_counter: int = 0


@dataclass(frozen=True)
class EventView:
    """One event as a Graph route returns it: a single, a master, an occurrence or an exception."""

    id: str
    kind: str
    """Graph's ``type``: singleInstance, seriesMaster, occurrence or exception."""
    master: CalendarEvent
    start: datetime
    end: datetime
    original_start: datetime | None
    overrides: dict[str, Any]
    modified_seq: int
    modified_at: datetime
    created_at: datetime

    @property
    def start_utc(self) -> datetime:
        return to_utc(self.start, self.master.time_zone)

    @property
    def end_utc(self) -> datetime:
        return to_utc(self.end, self.master.time_zone)
