"""Render Graph calendar events as an RFC 5545 iCalendar file for productions.

A series becomes one VEVENT for the master (RRULE from Graph's ``recurrence``, EXDATE for
cancelled occurrences) plus one VEVENT per exception with RECURRENCE-ID, all under the
master's UID, so a calendar client rebuilds the series as Outlook shows it. Times keep
the event's own zone (``originalStartTimeZone``) with a VTIMEZONE, because a weekly
09:00 meeting must stay at 09:00 local time across daylight saving changes.

Graph v1.0 does not list cancelled occurrences; the archive derives them. A master dict
may carry them under ``cancelledOccurrences`` as UTC ISO-8601 instants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from m365lake.recurrence import WEEKDAYS, RecurrenceError, occurrence_starts, zone_of

PRODID = "-//m365lake//production//EN"
LINE_OCTETS = 75
"""RFC 5545 3.1: lines longer than 75 octets are folded."""

_DAY_CODES = {name: name[:2].upper() for name in WEEKDAYS}
_SET_POSITIONS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_ROLES = {
    "required": "REQ-PARTICIPANT",
    "optional": "OPT-PARTICIPANT",
    "resource": "NON-PARTICIPANT",
}
_PARTSTAT = {
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentativelyAccepted": "TENTATIVE",
    "organizer": "ACCEPTED",
}
_CLASSES = {"private": "PRIVATE", "personal": "PRIVATE", "confidential": "CONFIDENTIAL"}
_PRIORITIES = {"high": "1", "normal": "5", "low": "9"}
_TAG = re.compile(r"<[^>]+>")


class IcsRenderError(ValueError):
    """An event lacks what an iCalendar VEVENT needs (an id, a start or an end)."""


# ---- text and lines ----------------------------------------------------------------------


# RFC 5545 3.1 allows no control character but HTAB in a value; line breaks are escaped.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def escape_text(value: str) -> str:
    """Escape a TEXT value (RFC 5545 3.3.11): backslash, semicolon, comma and newlines.

    Control characters other than tab and line breaks are dropped: RFC 5545 forbids them.
    """
    value = _CONTROL.sub("", value)
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def _param(value: str) -> str:
    # DQUOTE cannot appear in a parameter value; control characters are not allowed.
    cleaned = "".join(ch for ch in value if ch >= " " and ch not in '"\x7f')
    return f'"{cleaned}"' if any(ch in cleaned for ch in ":;,") else cleaned


def fold(line: str) -> bytes:
    """Return one content line folded at 75 octets without splitting a UTF-8 character."""
    data = line.encode("utf-8")
    parts: list[bytes] = []
    limit = LINE_OCTETS
    while len(data) > limit:
        cut = limit
        # Continuation bytes look like 0b10xxxxxx; back up to the start of a character.
        while cut > 0 and data[cut] & 0xC0 == 0x80:
            cut -= 1
        parts.append(data[:cut])
        data = data[cut:]
        limit = LINE_OCTETS - 1  # a continuation line starts with one space
    parts.append(data)
    return b"\r\n ".join(parts) + b"\r\n"


# ---- times ---------------------------------------------------------------------------


def _parse_utc(value: Any) -> datetime | None:
    """Parse a Graph ``dateTimeTimeZone`` dict or an ISO-8601 string into a UTC instant."""
    if isinstance(value, Mapping):
        text = str(value.get("dateTime") or "")
        zone_name = str(value.get("timeZone") or "UTC")
    else:
        text, zone_name = str(value or ""), "UTC"
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=zone_of(zone_name))
        except ValueError:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class _Clock:
    """Writes instants in the series' zone (TZID) or, for UTC and unknown zones, in UTC."""

    def __init__(self, zone_name: str) -> None:
        self.tzid: str | None = None
        self.zone: ZoneInfo | None = None
        try:
            zone = zone_of(zone_name)
        except ValueError:
            zone = None
        if zone is not None and zone.key not in ("UTC", "Etc/UTC"):
            self.zone, self.tzid = zone, zone.key

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone) if self.zone else moment.astimezone(UTC)

    def property(self, name: str, moment: datetime, *, all_day: bool = False) -> str:
        local = self.local(moment)
        if all_day:
            return f"{name};VALUE=DATE:{local:%Y%m%d}"
        if self.tzid:
            return f"{name};TZID={self.tzid}:{local:%Y%m%dT%H%M%S}"
        return f"{name}:{local:%Y%m%dT%H%M%SZ}"


def _utc_stamp(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def _vtimezone(zone: ZoneInfo, around: datetime) -> list[str]:
    """Return a VTIMEZONE with the STANDARD and DAYLIGHT rules in force around ``around``."""
    lines = ["BEGIN:VTIMEZONE", f"TZID:{zone.key}"]
    year = around.year
    transitions = []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    previous = moment.astimezone(zone).utcoffset()
    # Hourly steps find the transitions of the year; zones change on the hour or half hour,
    # and the exact minute is searched below.
    while moment.year == year:
        step = moment + timedelta(hours=1)
        offset = step.astimezone(zone).utcoffset()
        if offset != previous:
            exact = moment
            while exact.astimezone(zone).utcoffset() == previous:
                exact += timedelta(minutes=1)
            transitions.append((exact, previous, offset))
            previous = offset
        moment = step
    if not transitions:
        offset = around.astimezone(zone).utcoffset() or timedelta(0)
        lines += [
            "BEGIN:STANDARD",
            "DTSTART:19700101T000000",
            f"TZOFFSETFROM:{_offset(offset)}",
            f"TZOFFSETTO:{_offset(offset)}",
            "END:STANDARD",
        ]
    for instant, before, after in transitions:
        assert before is not None and after is not None
        kind = "DAYLIGHT" if after > before else "STANDARD"
        wall = (instant + before).replace(tzinfo=None)
        week = (wall.day - 1) // 7 + 1
        last_week = (wall + timedelta(days=7)).month != wall.month
        position = -1 if last_week else week
        day = WEEKDAYS[wall.weekday()][:2].upper()
        lines += [
            f"BEGIN:{kind}",
            f"DTSTART:{wall:%Y%m%dT%H%M%S}",
            f"RRULE:FREQ=YEARLY;BYMONTH={wall.month};BYDAY={position}{day}",
            f"TZOFFSETFROM:{_offset(before)}",
            f"TZOFFSETTO:{_offset(after)}",
            f"TZNAME:{(instant + timedelta(hours=1)).astimezone(zone).tzname()}",
            f"END:{kind}",
        ]
    lines.append("END:VTIMEZONE")
    return lines


def _offset(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{rest:02d}"


# ---- properties ----------------------------------------------------------------------


def rrule(recurrence: Mapping[str, Any], clock: _Clock, start: datetime) -> str:
    """Translate Graph's ``patternedRecurrence`` into an RRULE value."""
    pattern = recurrence.get("pattern") or {}
    span = recurrence.get("range") or {}
    kind = str(pattern.get("type") or "")
    frequency = {
        "daily": "DAILY",
        "weekly": "WEEKLY",
        "absoluteMonthly": "MONTHLY",
        "relativeMonthly": "MONTHLY",
        "absoluteYearly": "YEARLY",
        "relativeYearly": "YEARLY",
    }.get(kind)
    if frequency is None:
        raise IcsRenderError(f"unknown recurrence pattern type {kind!r}")
    parts = [f"FREQ={frequency}", f"INTERVAL={int(pattern.get('interval') or 1)}"]
    days = ",".join(_DAY_CODES[str(d).lower()] for d in pattern.get("daysOfWeek") or [])
    if kind.endswith("Yearly"):
        parts.append(f"BYMONTH={int(pattern.get('month') or 1)}")
    if kind.startswith("absolute"):
        parts.append(f"BYMONTHDAY={int(pattern.get('dayOfMonth') or 1)}")
    if kind == "weekly":
        parts.append(f"BYDAY={days}")
        first_day = str(pattern.get("firstDayOfWeek") or "sunday").lower()
        parts.append(f"WKST={_DAY_CODES[first_day]}")
    if kind.startswith("relative"):
        index = str(pattern.get("index") or "first").lower()
        parts += [f"BYDAY={days}", f"BYSETPOS={_SET_POSITIONS[index]}"]
    if span.get("type") == "numbered":
        parts.append(f"COUNT={int(span.get('numberOfOccurrences') or 1)}")
    elif span.get("type") == "endDate" and span.get("endDate"):
        last_day = date.fromisoformat(str(span["endDate"]))
        local_start = clock.local(start)
        until = datetime.combine(last_day, local_start.timetz())
        # RFC 5545: with a TZID start, UNTIL is a UTC instant.
        parts.append(f"UNTIL={_utc_stamp(until)}")
    return ";".join(parts)


def _person(entry: Any) -> tuple[str, str]:
    email = (entry or {}).get("emailAddress") or {}
    # The address is written unescaped after "mailto:", so its control characters go here.
    return str(email.get("name") or ""), _CONTROL.sub("", str(email.get("address") or ""))


def _body_lines(event: Mapping[str, Any]) -> list[str]:
    body = event.get("body") or {}
    content = str(body.get("content") or "")
    if not content:
        return []
    if str(body.get("contentType") or "").lower() == "html":
        text = " ".join(_TAG.sub(" ", content).split())
        return [
            f"DESCRIPTION:{escape_text(text)}",
            f"X-ALT-DESC;FMTTYPE=text/html:{escape_text(content)}",
        ]
    return [f"DESCRIPTION:{escape_text(content)}"]


def _first_occurrence(recurrence: Mapping[str, Any], clock: _Clock, start: datetime) -> datetime:
    """Return the first occurrence of a series whose master starts at ``start``.

    Graph lets a series start on a day its pattern does not match, such as a "first Monday"
    series from a second Monday. Its first occurrence is then the first matching day on or
    after the range's ``startDate``. RFC 5545 counts DTSTART as an occurrence, so DTSTART
    must be that day, or a calendar client shows an extra meeting.
    """
    local = clock.local(start).replace(tzinfo=None)
    # Ten years bound the search, so a pattern that never matches ends it.
    try:
        first = next(
            occurrence_starts(recurrence, local.time(), until=local + timedelta(days=3660)), None
        )
    except RecurrenceError:
        return start
    if first is None or first == local:
        return start
    zone = clock.zone or UTC
    return first.replace(tzinfo=zone).astimezone(UTC)


def _vevent(
    event: Mapping[str, Any], uid: str, clock: _Clock, master: Mapping[str, Any] | None
) -> list[str]:
    start = _parse_utc(event.get("start"))
    end = _parse_utc(event.get("end"))
    if start is None or end is None:
        raise IcsRenderError(f"event {event.get('id')!r} has no usable start or end")
    if master is None and event.get("recurrence"):
        first = _first_occurrence(event["recurrence"], clock, start)
        start, end = first, first + (end - start)
    all_day = bool(event.get("isAllDay"))
    stamp = _parse_utc(event.get("lastModifiedDateTime")) or datetime.now(UTC)
    lines = ["BEGIN:VEVENT", f"UID:{escape_text(uid)}", f"DTSTAMP:{_utc_stamp(stamp)}"]
    lines.append(clock.property("DTSTART", start, all_day=all_day))
    lines.append(clock.property("DTEND", end, all_day=all_day))
    if master is not None:
        original = _parse_utc(event.get("originalStart"))
        assert original is not None, "render_ics passes only exceptions with originalStart"
        lines.append(clock.property("RECURRENCE-ID", original, all_day=all_day))
    elif event.get("recurrence"):
        lines.append(f"RRULE:{rrule(event['recurrence'], clock, start)}")
        for text in event.get("cancelledOccurrences") or []:
            cancelled = _parse_utc(str(text))
            if cancelled is not None:
                lines.append(clock.property("EXDATE", cancelled, all_day=all_day))
    lines.append(f"SUMMARY:{escape_text(str(event.get('subject') or ''))}")
    location = str((event.get("location") or {}).get("displayName") or "")
    if location:
        lines.append(f"LOCATION:{escape_text(location)}")
    lines += _body_lines(event)
    name, address = _person(event.get("organizer"))
    if address:
        lines.append(f"ORGANIZER;CN={_param(name or address)}:mailto:{address}")
    for attendee in event.get("attendees") or []:
        name, address = _person(attendee)
        if not address:
            continue
        role = _ROLES.get(str(attendee.get("type") or "required"), "REQ-PARTICIPANT")
        response = str((attendee.get("status") or {}).get("response") or "")
        status = _PARTSTAT.get(response, "NEEDS-ACTION")
        lines.append(
            f"ATTENDEE;CN={_param(name or address)};ROLE={role};PARTSTAT={status}:mailto:{address}"
        )
    categories = [escape_text(str(c)) for c in event.get("categories") or []]
    if categories:
        lines.append(f"CATEGORIES:{','.join(categories)}")
    lines.append(f"CLASS:{_CLASSES.get(str(event.get('sensitivity') or ''), 'PUBLIC')}")
    lines.append(f"PRIORITY:{_PRIORITIES.get(str(event.get('importance') or 'normal'), '5')}")
    lines.append("TRANSP:" + ("TRANSPARENT" if event.get("showAs") == "free" else "OPAQUE"))
    lines.append("STATUS:" + ("CANCELLED" if event.get("isCancelled") else "CONFIRMED"))
    for name, key in (("CREATED", "createdDateTime"), ("LAST-MODIFIED", "lastModifiedDateTime")):
        moment = _parse_utc(event.get(key))
        if moment is not None:
            lines.append(f"{name}:{_utc_stamp(moment)}")
    lines.append("END:VEVENT")
    return lines


def render_ics(events: Sequence[Mapping[str, Any]]) -> bytes:
    """Render a single event, or a series master with its exceptions, as one VCALENDAR.

    ``events`` are Graph event JSON objects. For a series the master comes first or is
    found by ``type``; exceptions are the members with ``type`` exception.
    """
    if not events:
        raise IcsRenderError("render_ics needs at least one event")
    master = next((e for e in events if e.get("type") == "seriesMaster"), events[0])
    exceptions = [e for e in events if e is not master and e.get("type") == "exception"]
    uid = str(master.get("iCalUId") or master.get("id") or "")
    if not uid:
        raise IcsRenderError("the event has neither iCalUId nor id")
    clock = _Clock(str(master.get("originalStartTimeZone") or "UTC"))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN"]
    lines.append("METHOD:PUBLISH")
    start = _parse_utc(master.get("start"))
    if clock.zone is not None and start is not None:
        lines += _vtimezone(clock.zone, start)
    lines += _vevent(master, uid, clock, None)
    for exception in exceptions:
        if _parse_utc(exception.get("originalStart")) is None:
            # Without its original start the exception cannot name the occurrence it
            # replaces, so it stays a separate event rather than being dropped.
            own_uid = str(exception.get("iCalUId") or exception.get("id") or uid)
            lines += _vevent({**exception, "recurrence": None}, own_uid, clock, None)
            continue
        lines += _vevent(exception, uid, clock, master)
    lines.append("END:VCALENDAR")
    return b"".join(fold(line) for line in lines)
