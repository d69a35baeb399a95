"""Expand Graph's ``patternedRecurrence`` of a calendar series into occurrence start times.

Graph describes a series with a pattern (``daily``, ``weekly``, ``absoluteMonthly``,
``relativeMonthly``, ``absoluteYearly``, ``relativeYearly``) and a range (``endDate``,
``numbered``, ``noEnd``). Occurrences start at the master's time of day on each matching
date, counted in the series' own time zone, so a weekly 09:00 meeting stays at 09:00 local
time across daylight saving changes. Cancelled occurrences still count towards a
``numbered`` range, as in Outlook.

The emulator, the backup (to find cancelled occurrences) and restore verification use this.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEXES = ("first", "second", "third", "fourth", "last")
PATTERN_TYPES = frozenset(
    {"daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly"}
)
RANGE_TYPES = frozenset({"endDate", "numbered", "noEnd"})

MAX_OCCURRENCES = 10_000
"""Occurrences expanded at most per call, so a ``noEnd`` series without a limit stops."""


# Outlook's own zone names, mapped to IANA names; Graph also accepts IANA names directly.
WINDOWS_ZONES = {
    "UTC": "UTC",
    "GMT Standard Time": "Europe/London",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Pacific Standard Time": "America/Los_Angeles",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "India Standard Time": "Asia/Kolkata",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "AUS Eastern Standard Time": "Australia/Sydney",
}


def zone_of(name: str) -> ZoneInfo:
    """Return the zone for a Graph ``timeZone`` value (a Windows or an IANA name).

    Raises ValueError for a name that is neither.
    """
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError):
        # NOTE: only the Windows names in WINDOWS_ZONES are mapped, while Outlook offers about 140.
        raise ValueError(f"unknown time zone {name!r}") from None


def to_utc(local: datetime, zone: str) -> datetime:
    """Return the aware UTC instant of a naive local date-time in ``zone``."""
    return local.replace(tzinfo=zone_of(zone)).astimezone(UTC)


def from_utc(moment: datetime, zone: str) -> datetime:
    """Return the naive local date-time in ``zone`` of an aware instant."""
    return moment.astimezone(zone_of(zone)).replace(tzinfo=None)


class RecurrenceError(ValueError):
    """A ``patternedRecurrence`` is malformed: a missing or invalid property."""


def _weekday_numbers(pattern: Mapping[str, Any]) -> list[int]:
    names = pattern.get("daysOfWeek") or []
    try:
        return sorted({WEEKDAYS.index(str(name).lower()) for name in names})
    except ValueError:
        raise RecurrenceError(
            f"invalid daysOfWeek {names!r}; expected names such as 'monday'"
        ) from None


def _nth_weekday(year: int, month: int, weekdays: list[int], index: str) -> date | None:
    """Return the date of the ``index`` (first..fourth, last) day among ``weekdays`` in a month."""
    days = [
        date(year, month, day)
        for day in range(1, calendar.monthrange(year, month)[1] + 1)
        if date(year, month, day).weekday() in weekdays
    ]
    if not days:
        return None
    if index == "last":
        return days[-1]
    position = INDEXES.index(index)
    return days[position] if position < len(days) else None


def _month_day(year: int, month: int, day: int) -> date | None:
    # A month without that day (31 April) has no occurrence, as in RFC 5545 BYMONTHDAY.
    # NOTE: Outlook may move such an occurrence to the month's last day; not verified.
    if day > calendar.monthrange(year, month)[1]:
        return None
    return date(year, month, day)


def _candidate_dates(pattern: Mapping[str, Any], start: date) -> Iterator[date]:
    """Yield the dates the pattern selects from ``start`` on, in order, without an end."""
    kind = pattern.get("type")
    raw_interval = pattern.get("interval")
    interval = 1 if raw_interval is None else int(raw_interval)
    if interval < 1:
        raise RecurrenceError(f"invalid interval {interval}; it must be at least 1")
    index = str(pattern.get("index") or "first").lower()
    if index not in INDEXES:
        raise RecurrenceError(f"invalid index {index!r}; expected one of {', '.join(INDEXES)}")
    if kind == "daily":
        current = start
        while True:
            yield current
            current += timedelta(days=interval)
    elif kind == "weekly":
        weekdays = _weekday_numbers(pattern)
        if not weekdays:
            raise RecurrenceError("a weekly pattern needs daysOfWeek")
        first_day = WEEKDAYS.index(str(pattern.get("firstDayOfWeek") or "sunday").lower())
        week_start = start - timedelta(days=(start.weekday() - first_day) % 7)
        while True:
            for offset in range(7):
                day = week_start + timedelta(days=offset)
                if day.weekday() in weekdays and day >= start:
                    yield day
            week_start += timedelta(weeks=interval)
    elif kind in ("absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly"):
        yearly = kind.endswith("Yearly")
        step = 12 * interval if yearly else interval
        month = int(pattern.get("month") or start.month) if yearly else start.month
        months = start.year * 12 + (month - 1)
        if months < start.year * 12 + start.month - 1:
            months += 12
        while True:
            year, month_number = divmod(months, 12)
            if kind.startswith("absolute"):
                day_of_month = int(pattern.get("dayOfMonth") or 0)
                if not 1 <= day_of_month <= 31:
                    raise RecurrenceError(f"invalid dayOfMonth {day_of_month}; expected 1 to 31")
                found = _month_day(year, month_number + 1, day_of_month)
            else:
                weekdays = _weekday_numbers(pattern)
                if not weekdays:
                    raise RecurrenceError(f"a {kind} pattern needs daysOfWeek")
                found = _nth_weekday(year, month_number + 1, weekdays, index)
            if found is not None and found >= start:
                yield found
            months += step
    else:
        raise RecurrenceError(
            f"invalid pattern type {kind!r}; expected one of {', '.join(sorted(PATTERN_TYPES))}"
        )


def occurrence_starts(
    recurrence: Mapping[str, Any], start_time: time, *, until: datetime
) -> Iterator[datetime]:
    """Yield the naive local start of each occurrence up to ``until`` (naive, same zone).

    ``start_time`` is the master's local time of day. Cancelled occurrences are included:
    the caller removes them.
    """
    pattern = recurrence.get("pattern") or {}
    span = recurrence.get("range") or {}
    range_type = span.get("type")
    if range_type not in RANGE_TYPES:
        raise RecurrenceError(
            f"invalid range type {range_type!r}; expected one of {', '.join(sorted(RANGE_TYPES))}"
        )
    try:
        first = date.fromisoformat(str(span.get("startDate")))
    except ValueError:
        raise RecurrenceError(f"invalid range startDate {span.get('startDate')!r}") from None
    last: date | None = None
    if range_type == "endDate":
        try:
            last = date.fromisoformat(str(span.get("endDate")))
        except ValueError:
            raise RecurrenceError(f"invalid range endDate {span.get('endDate')!r}") from None
    count = int(span.get("numberOfOccurrences") or 0) if range_type == "numbered" else None
    if count is not None and count < 1:
        raise RecurrenceError("a numbered range needs numberOfOccurrences of at least 1")
    for produced, day in enumerate(_candidate_dates(pattern, first), start=1):
        if last is not None and day > last:
            return
        moment = datetime.combine(day, start_time)
        if moment > until or produced > MAX_OCCURRENCES:
            return
        yield moment
        if count is not None and produced >= count:
            return


def series_end(recurrence: Mapping[str, Any]) -> date | None:
    """Return the range's last date for an ``endDate`` range, else None."""
    span = recurrence.get("range") or {}
    if span.get("type") == "endDate" and span.get("endDate"):
        return date.fromisoformat(str(span["endDate"]))
    return None
