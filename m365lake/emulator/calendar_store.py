"""Calendar half of ``Tenant``: calendars, events, series with exceptions, and their changes.

A series is stored once, as its master with the pattern, the cancelled original starts and
the changed occurrences (exceptions), as Exchange stores it. Occurrences are computed from
the pattern when a route requests a window. Exchange keeps exceptions inside the master
item, so changing or cancelling an occurrence also gives the master a new changeKey.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from m365lake import recurrence as patterns
from m365lake.emulator import records
from m365lake.emulator.calendar_records import (
    WRITABLE_PROPERTIES,
    Calendar,
    CalendarBox,
    CalendarEvent,
    EventAttachment,
    EventView,
    SeriesException,
)
from m365lake.emulator.records import SeqCounter
from m365lake.recurrence import from_utc, to_utc, zone_of

DEFAULT_CALENDAR = "Calendar"
EVENT_PREFIX = "AAMkAE"
CALENDAR_PREFIX = "AAMkAC"

INDEX_HORIZON = timedelta(days=5 * 366)
"""How far after its start a series' occurrence ids are indexed and removals are logged.
Occurrences later than that are still served in windows, but a delete of one
by id and delta tombstones for them are not emulated."""


class CalendarExistsError(ValueError):
    """The mailbox already has a calendar of this name (Exchange compares without case)."""


class EventInputError(ValueError):
    """An event payload is missing a property or has an invalid value."""


def _parse_local(value: Any, what: str) -> tuple[datetime, str]:
    """Parse a Graph ``dateTimeTimeZone`` into a naive local date-time and its zone name."""
    if not isinstance(value, dict) or not value.get("dateTime"):
        raise EventInputError(f"{what} needs a dateTimeTimeZone with 'dateTime' and 'timeZone'")
    zone = str(value.get("timeZone") or "UTC")
    try:
        zone_of(zone)
    except ValueError:
        raise EventInputError(f"{what} has an unknown timeZone {zone!r}") from None
    text = str(value["dateTime"]).rstrip("Z")
    # Graph writes seven fractional digits; Python parses at most six.
    head, dot, fraction = text.partition(".")
    if dot:
        text = f"{head}.{fraction[:6]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise EventInputError(f"{what} has an invalid dateTime {value['dateTime']!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment, zone


class CalendarMixin:
    """Calendar half of ``Tenant``; callers pass user ids, as the Graph routes have them."""

    _lock: threading.RLock
    _counter: SeqCounter
    _calendar_boxes: dict[str, CalendarBox]

    # ---- calendars ----------------------------------------------------------------------

    def _init_calendars(self) -> None:
        self._calendar_boxes = {}

    def _create_calendar_box(self, user_id: str) -> None:
        box = CalendarBox(user_id)
        self._calendar_boxes[user_id] = box
        self._new_calendar(box, DEFAULT_CALENDAR, is_default=True)

    def _new_calendar(self, box: CalendarBox, name: str, *, is_default: bool) -> Calendar:
        seq = self._counter.next()
        calendar = Calendar(
            id=records.derive_id(CALENDAR_PREFIX, box.user_id, "calendar", str(seq)),
            name=name,
            color="auto",
            is_default=is_default,
            created_seq=seq,
            modified_seq=seq,
        )
        box.calendars[calendar.id] = calendar
        return calendar

    def calendar_box(self, user_id: str) -> CalendarBox:
        with self._lock:
            return self._calendar_boxes[user_id]

    def calendars(self, user_id: str) -> list[Calendar]:
        with self._lock:
            return list(self._calendar_boxes[user_id].calendars.values())

    def default_calendar(self, user_id: str) -> Calendar:
        with self._lock:
            box = self._calendar_boxes[user_id]
            return next(c for c in box.calendars.values() if c.is_default)

    def create_calendar(self, user_id: str, name: str) -> Calendar:
        with self._lock:
            box = self._calendar_boxes[user_id]
            if any(c.name.casefold() == name.casefold() for c in box.calendars.values()):
                raise CalendarExistsError(name)
            return self._new_calendar(box, name, is_default=False)

    def calendar_named(self, user_id: str, name: str) -> Calendar | None:
        with self._lock:
            box = self._calendar_boxes[user_id]
            wanted = name.casefold()
            return next((c for c in box.calendars.values() if c.name.casefold() == wanted), None)

    # ---- events: writes -----------------------------------------------------------------

    def create_event(
        self, user_id: str, calendar_id: str | None, payload: dict[str, Any]
    ) -> EventView:
        """Create a single event or a series master from a Graph event payload."""
        with self._lock:
            box = self._calendar_boxes[user_id]
            calendar = box.calendars.get(calendar_id) if calendar_id else None
            if calendar_id and calendar is None:
                raise KeyError(f"no calendar {calendar_id!r} in mailbox {user_id}")
            calendar = calendar or self.default_calendar(user_id)
            start, zone = _parse_local(payload.get("start"), "start")
            end, end_zone = _parse_local(payload.get("end"), "end")
            # Store both ends in the start's zone; Graph keeps them apart only for display.
            end = from_utc(to_utc(end, end_zone), zone)
            if end < start:
                raise EventInputError("the end of an event must not be before its start")
            recurrence = payload.get("recurrence")
            # A series may start on a day its pattern does not match; its first occurrence
            # is then the first matching day on or after the range's startDate (Graph's
            # recurrenceRange). NOTE: whether Exchange also moves the master's start to that
            # day, as Outlook's own form does, is unverified; the master keeps its start here.
            if recurrence is not None:
                try:
                    next(patterns.occurrence_starts(recurrence, start.time(), until=start))
                except patterns.RecurrenceError as error:
                    raise EventInputError(str(error)) from None
                except StopIteration:
                    pass
            box.event_counter += 1
            seq = self._counter.next()
            now = datetime.now(UTC)
            event_id = records.derive_id(EVENT_PREFIX, user_id, "event", str(box.event_counter))
            properties = {k: payload[k] for k in WRITABLE_PROPERTIES if k in payload}
            event = CalendarEvent(
                id=event_id,
                calendar_id=calendar.id,
                properties=properties,
                start=start,
                end=end,
                time_zone=zone,
                recurrence=recurrence,
                ical_uid="040000008200E00074C5B7101A82E008"
                + records.derive_id("", event_id, length=40).encode().hex()[:56].upper(),
                created_at=now,
                modified_at=now,
                created_seq=seq,
                modified_seq=seq,
            )
            box.events[event_id] = event
            self._index_occurrences(box, event)
            return self._master_view(event)

    def update_event(self, user_id: str, event_id: str, payload: dict[str, Any]) -> EventView:
        """PATCH an event; changing an occurrence makes it an exception of its series."""
        with self._lock:
            box = self._calendar_boxes[user_id]
            if event_id in box.occurrence_index:
                return self._update_occurrence(box, event_id, payload)
            event = box.events.get(event_id)
            if event is None:
                raise KeyError(event_id)
            if "start" in payload or "end" in payload:
                start, zone = _parse_local(
                    payload.get("start") or self._local(event, "start"), "start"
                )
                end, end_zone = _parse_local(payload.get("end") or self._local(event, "end"), "end")
                event.start, event.time_zone = start, zone
                event.end = from_utc(to_utc(end, end_zone), zone)
            if "recurrence" in payload and event.is_series != (payload["recurrence"] is not None):
                raise EventInputError("PATCH cannot turn a single event into a series or back")
            if payload.get("recurrence") is not None:
                event.recurrence = payload["recurrence"]
            for name in WRITABLE_PROPERTIES:
                if name in payload:
                    event.properties[name] = payload[name]
            self._touch(box, event)
            return self._master_view(event)

    def _local(self, event: CalendarEvent, which: str) -> dict[str, Any]:
        moment = event.start if which == "start" else event.end
        return {"dateTime": moment.isoformat(), "timeZone": event.time_zone}

    def _update_occurrence(
        self, box: CalendarBox, occurrence_id: str, payload: dict[str, Any]
    ) -> EventView:
        master_id, original = box.occurrence_index[occurrence_id]
        master = box.events[master_id]
        if original in master.cancelled:
            raise KeyError(occurrence_id)
        current = master.exceptions.get(original)
        duration = master.end - master.start
        start = current.start if current else original
        end = current.end if current else original + duration
        if "start" in payload:
            moved, zone = _parse_local(payload["start"], "start")
            start = from_utc(to_utc(moved, zone), master.time_zone)
            if "end" not in payload:
                end = start + (end - (current.start if current else original))
        if "end" in payload:
            moved_end, zone = _parse_local(payload["end"], "end")
            end = from_utc(to_utc(moved_end, zone), master.time_zone)
        if "recurrence" in payload and payload["recurrence"] is not None:
            raise EventInputError("an occurrence cannot have its own recurrence")
        overrides = dict(current.overrides) if current else {}
        overrides.update({k: payload[k] for k in WRITABLE_PROPERTIES if k in payload})
        seq = self._counter.next()
        now = datetime.now(UTC)
        master.exceptions[original] = SeriesException(
            start=start,
            end=end,
            overrides=overrides,
            created_at=current.created_at if current else now,
            modified_at=now,
            modified_seq=seq,
        )
        master.modified_seq = seq
        master.modified_at = now
        return self._occurrence_view(master, original)

    def delete_event(self, user_id: str, event_id: str) -> None:
        """Delete a single event or a whole series, or cancel one occurrence of a series."""
        with self._lock:
            box = self._calendar_boxes[user_id]
            if event_id in box.occurrence_index:
                master_id, original = box.occurrence_index[event_id]
                master = box.events[master_id]
                if original in master.cancelled:
                    raise KeyError(event_id)
                master.cancelled.add(original)
                master.exceptions.pop(original, None)
                self._touch(box, master)
                box.occurrence_index.pop(event_id, None)
                box.removed.append((master.modified_seq, event_id))
                return
            event = box.events.pop(event_id, None)
            if event is None:
                raise KeyError(event_id)
            seq = self._counter.next()
            box.removed.append((seq, event_id))
            for occurrence_id in self._occurrence_ids(event):
                box.occurrence_index.pop(occurrence_id, None)
                box.removed.append((seq, occurrence_id))

    def add_event_attachment(
        self,
        user_id: str,
        event_id: str,
        *,
        name: str,
        content_type: str,
        content: bytes,
        is_inline: bool = False,
    ) -> EventAttachment:
        with self._lock:
            box = self._calendar_boxes[user_id]
            event = box.events.get(event_id)
            if event is None:
                raise KeyError(event_id)
            attachment = EventAttachment(
                id=records.derive_id(
                    records.ATTACHMENT_PREFIX, event_id, str(len(event.attachments))
                ),
                name=name,
                content_type=content_type,
                content=bytes(content),
                is_inline=is_inline,
                modified_at=datetime.now(UTC),
            )
            event.attachments.append(attachment)
            self._touch(box, event)
            return attachment

    def expire_calendar_sync_state(self, user_id: str) -> None:
        """Invalidate every calendarView delta and next link issued for the mailbox."""
        with self._lock:
            self._calendar_boxes[user_id].generation += 1

    def _touch(self, box: CalendarBox, event: CalendarEvent) -> None:
        old = self._occurrence_ids(event)
        event.modified_seq = self._counter.next()
        event.modified_at = datetime.now(UTC)
        self._index_occurrences(box, event)
        for occurrence_id in old - self._occurrence_ids(event):
            box.occurrence_index.pop(occurrence_id, None)
            box.removed.append((event.modified_seq, occurrence_id))

    # ---- events: occurrences ------------------------------------------------------------

    def _occurrence_starts(self, event: CalendarEvent, until: datetime) -> list[datetime]:
        assert event.recurrence is not None
        return list(patterns.occurrence_starts(event.recurrence, event.start.time(), until=until))

    def _occurrence_ids(self, event: CalendarEvent) -> set[str]:
        if not event.is_series:
            return set()
        until = event.start + INDEX_HORIZON
        return {
            occurrence_id(event, original)
            for original in self._occurrence_starts(event, until)
            if original not in event.cancelled
        }

    def _index_occurrences(self, box: CalendarBox, event: CalendarEvent) -> None:
        if not event.is_series:
            return
        for original in self._occurrence_starts(event, event.start + INDEX_HORIZON):
            if original in event.cancelled:
                continue
            box.occurrence_index[occurrence_id(event, original)] = (event.id, original)

    def _master_view(self, event: CalendarEvent) -> EventView:
        return EventView(
            id=event.id,
            kind="seriesMaster" if event.is_series else "singleInstance",
            master=event,
            start=event.start,
            end=event.end,
            original_start=None,
            overrides={},
            modified_seq=event.modified_seq,
            modified_at=event.modified_at,
            created_at=event.created_at,
        )

    def _occurrence_view(self, master: CalendarEvent, original: datetime) -> EventView:
        exception = master.exceptions.get(original)
        if exception is None:
            return EventView(
                id=occurrence_id(master, original),
                kind="occurrence",
                master=master,
                start=original,
                end=original + (master.end - master.start),
                original_start=original,
                overrides={},
                modified_seq=master.modified_seq,
                modified_at=master.modified_at,
                created_at=master.created_at,
            )
        return EventView(
            id=occurrence_id(master, original),
            kind="exception",
            master=master,
            start=exception.start,
            end=exception.end,
            original_start=original,
            overrides=exception.overrides,
            modified_seq=max(master.modified_seq, exception.modified_seq),
            modified_at=exception.modified_at,
            created_at=exception.created_at,
        )

    def _series_in_window(
        self, master: CalendarEvent, start: datetime, end: datetime
    ) -> list[EventView]:
        """Return the occurrences and exceptions of ``master`` overlapping [start, end) (UTC)."""
        duration = master.end - master.start
        until = from_utc(end, master.time_zone)
        views = []
        for original in self._occurrence_starts(master, until):
            if original in master.cancelled:
                continue
            if original in master.exceptions:
                continue
            begins = to_utc(original, master.time_zone)
            if begins < end and begins + duration > start:
                views.append(self._occurrence_view(master, original))
        for original in master.exceptions:
            view = self._occurrence_view(master, original)
            if view.start_utc < end and view.end_utc > start:
                views.append(view)
        return views

    # ---- events: reads ------------------------------------------------------------------

    def event_view(self, user_id: str, event_id: str) -> EventView | None:
        with self._lock:
            box = self._calendar_boxes[user_id]
            if event_id in box.events:
                return self._master_view(box.events[event_id])
            found = box.occurrence_index.get(event_id)
            if found is None:
                return None
            master = box.events.get(found[0])
            if master is None or found[1] in master.cancelled:
                return None
            return self._occurrence_view(master, found[1])

    def calendar_events(self, user_id: str, calendar_id: str | None) -> list[EventView]:
        """Return the singles and series masters of one calendar (or all), oldest first."""
        with self._lock:
            box = self._calendar_boxes[user_id]
            views = [
                self._master_view(event)
                for event in box.events.values()
                if calendar_id is None or event.calendar_id == calendar_id
            ]
        return sorted(views, key=lambda v: (v.start_utc, v.id))

    def instances(
        self, user_id: str, master_id: str, start: datetime, end: datetime
    ) -> list[EventView]:
        """Return the occurrences and exceptions of a series in [start, end), by start."""
        with self._lock:
            master = self._calendar_boxes[user_id].events.get(master_id)
            if master is None:
                raise KeyError(master_id)
            views = self._series_in_window(master, start, end) if master.is_series else []
        return sorted(views, key=lambda v: (v.start_utc, v.id))

    def calendar_view(
        self, user_id: str, calendar_id: str | None, start: datetime, end: datetime
    ) -> list[EventView]:
        """Return singles, occurrences and exceptions overlapping [start, end), by start."""
        with self._lock:
            box = self._calendar_boxes[user_id]
            views: list[EventView] = []
            for event in box.events.values():
                if calendar_id is not None and event.calendar_id != calendar_id:
                    continue
                if event.is_series:
                    views.extend(self._series_in_window(event, start, end))
                    continue
                view = self._master_view(event)
                if view.start_utc < end and view.end_utc > start:
                    views.append(view)
        return sorted(views, key=lambda v: (v.start_utc, v.id))

    def calendar_changes(
        self,
        user_id: str,
        calendar_id: str | None,
        start: datetime,
        end: datetime,
        *,
        after: int,
        upto: int,
        cursor: tuple[int, str] | None,
        limit: int,
    ) -> tuple[list[EventView | str], tuple[int, str] | None]:
        """Return up to ``limit`` calendarView changes in (after, upto], past ``cursor``.

        A change is an event view of the window, or the id (a string) of an event that
        left the calendar. ``after == 0`` is an initial round: no removals. The second
        value is the cursor of the next page, or None when this page ends the round.
        """
        with self._lock:
            box = self._calendar_boxes[user_id]
            keyed: list[tuple[tuple[int, str], EventView | str]] = [
                ((view.modified_seq, view.id), view)
                for view in self.calendar_view(user_id, calendar_id, start, end)
                if after < view.modified_seq <= upto
            ]
            if after > 0:
                live = {key[1] for key, _ in keyed}
                keyed.extend(
                    ((seq, event_id), event_id)
                    for seq, event_id in box.removed
                    if after < seq <= upto and event_id not in live
                )
        keyed.sort(key=lambda pair: pair[0])
        if cursor is not None:
            keyed = [pair for pair in keyed if pair[0] > cursor]
        page = keyed[:limit]
        next_cursor = page[-1][0] if len(keyed) > limit else None
        return [item for _, item in page], next_cursor

    def calendar_generation(self, user_id: str) -> int:
        with self._lock:
            return self._calendar_boxes[user_id].generation

    # ---- seeding and test helpers -------------------------------------------------------

    def add_calendar_event(
        self,
        upn: str,
        payload: dict[str, Any],
        *,
        calendar: str = DEFAULT_CALENDAR,
        moved: Iterable[tuple[datetime, datetime]] = (),
        cancelled: Iterable[datetime] = (),
        attachments: Iterable[tuple[str, str, bytes]] = (),
    ) -> str:
        """Create an event in the named calendar (created if missing); return its id.

        ``moved`` contains (original local start, new local start) pairs and ``cancelled``
        original local starts of occurrences of a series.
        """
        with self._lock:
            user_id = self.user_id(upn)
            found = self.calendar_named(user_id, calendar)
            if found is None:
                found = self.create_calendar(user_id, calendar)
            view = self.create_event(user_id, found.id, payload)
            master = self._calendar_boxes[user_id].events[view.id]
            for original, new_start in moved:
                self.update_event(
                    user_id,
                    occurrence_id(master, original),
                    {"start": {"dateTime": new_start.isoformat(), "timeZone": master.time_zone}},
                )
            for original in cancelled:
                self.delete_event(user_id, occurrence_id(master, original))
            for name, content_type, content in attachments:
                self.add_event_attachment(
                    user_id, view.id, name=name, content_type=content_type, content=content
                )
            return view.id

    def user_id(self, upn: str) -> str:
        raise NotImplementedError("Tenant provides user_id")


def occurrence_id(master: CalendarEvent, original: datetime) -> str:
    """Return the id of the occurrence of ``master`` at ``original`` (local start)."""
    return records.derive_id(EVENT_PREFIX, master.id, "occurrence", original.isoformat())
