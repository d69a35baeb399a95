"""Parse date, size and boolean values, and turn comparisons into half-open intervals.

Shared by the parser (which validates values), the compiler and the oracle (which both
need the same interval for a comparison, so a range cannot drift between them).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from m365lake.search.kql.ast import CompareOp, DateSpan, DateValue, RelativeDate, RelativeDateName

UTC = dt.UTC

# Whole years inside the range a Tantivy date field can store (1677-09-21 to 2262-04-11),
# so every accepted date compiles without clamping.
MIN_YEAR = 1678
MAX_YEAR = 2261

RELATIVE_DATES: tuple[RelativeDateName, ...] = (
    "today",
    "yesterday",
    "this week",
    "last week",
    "this month",
    "last month",
    "this year",
    "last year",
)

DATE_FORMS = (
    "YYYY-MM-DD (the whole UTC day), MM/DD/YYYY, an ISO datetime such as "
    "2001-05-01T14:30:00Z or 2001-05-01T16:30+02:00 (no offset means UTC), or one of "
    + ", ".join(RELATIVE_DATES)
    + ' (quote the two-word ones: sent:"this week")'
)
SIZE_FORMS = "a number of bytes, optionally with a B, KB, MB, GB or TB suffix (1 KB = 1024 bytes)"
BOOL_FORMS = "true, false, yes, no, 1 or 0"

_SIZE_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?b)?", re.IGNORECASE)
MAX_SIZE = 2**64 - 1

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_ISO_DATETIME = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
    r"([Zz]|[+-]\d{2}:?\d{2})?"
)

_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


class InvalidValueError(ValueError):
    """A value does not parse; ``expected`` lists the accepted forms."""

    def __init__(self, message: str, expected: str) -> None:
        super().__init__(message)
        self.expected = expected


def parse_bool(text: str) -> bool:
    value = _BOOLS.get(text.strip().lower())
    if value is None:
        raise InvalidValueError(f"{text!r} is not a boolean", BOOL_FORMS)
    return value


def parse_size(text: str) -> int:
    """Parse ``text`` as a size in bytes; the KB, MB, GB and TB suffixes are binary (1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise InvalidValueError(f"{text!r} is not a size", SIZE_FORMS)
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:  # pragma: no cover - the pattern only lets decimals through
        raise InvalidValueError(f"{text!r} is not a size", SIZE_FORMS) from None
    size = number * _SIZE_UNITS[(match.group(2) or "").lower()]
    if size != size.to_integral_value():
        raise InvalidValueError(f"{text!r} is not a whole number of bytes", SIZE_FORMS)
    if size > MAX_SIZE:
        raise InvalidValueError(
            f"{text!r} is larger than the largest size, 2^64-1 bytes", SIZE_FORMS
        )
    return int(size)


def parse_date(text: str) -> DateValue:
    """Parse an absolute date or datetime into a UTC span, or a relative date name."""
    cleaned = " ".join(text.split()).lower()
    for name in RELATIVE_DATES:
        if cleaned == name:
            return RelativeDate(name)

    stripped = text.strip()
    if match := _ISO_DATE.fullmatch(stripped):
        year, month, day = (int(part) for part in match.groups())
        return _day_span(text, year, month, day)
    if match := _US_DATE.fullmatch(stripped):
        month, day, year = (int(part) for part in match.groups())
        return _day_span(text, year, month, day)
    if match := _ISO_DATETIME.fullmatch(stripped):
        return _datetime_span(text, match)

    if cleaned in ("this", "last"):
        raise InvalidValueError(
            f"{text!r} is not a date; a two-word relative date must be quoted, "
            f'e.g. sent:"{cleaned} week"',
            DATE_FORMS,
        )
    raise InvalidValueError(f"{text!r} is not a date", DATE_FORMS)


def _day_span(text: str, year: int, month: int, day: int) -> DateSpan:
    _check_year(text, year)
    try:
        start = dt.datetime(year, month, day, tzinfo=UTC)
    except ValueError as error:
        raise InvalidValueError(f"{text!r} is not a valid date ({error})", DATE_FORMS) from None
    return DateSpan(start, start + dt.timedelta(days=1))


def _datetime_span(text: str, match: re.Match[str]) -> DateSpan:
    year, month, day, hour, minute = (int(match.group(index)) for index in range(1, 6))
    seconds = match.group(6)
    zone = match.group(7)
    _check_year(text, year)
    tzinfo = UTC
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if offset >= dt.timedelta(hours=24):
            raise InvalidValueError(f"{text!r} has an invalid UTC offset", DATE_FORMS)
        tzinfo = dt.timezone(sign * offset)
    try:
        # Fractions of a second are dropped: the index stores dates to the second.
        local = dt.datetime(year, month, day, hour, minute, int(seconds or 0), tzinfo=tzinfo)
    except ValueError as error:
        raise InvalidValueError(f"{text!r} is not a valid datetime ({error})", DATE_FORMS) from None
    start = local.astimezone(UTC)
    length = dt.timedelta(seconds=1) if seconds is not None else dt.timedelta(minutes=1)
    return DateSpan(start, start + length)


def _check_year(text: str, year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidValueError(
            f"{text!r} is outside the dates the index can store ({MIN_YEAR} to {MAX_YEAR})",
            DATE_FORMS,
        )


def resolve_date(value: DateValue, now: dt.datetime) -> DateSpan:
    """Return the UTC span of ``value``; relative dates are taken from ``now``'s UTC day.

    Weeks start on Monday (ISO 8601).
    """
    if isinstance(value, DateSpan):
        return value
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day = dt.timedelta(days=1)
    week_start = today - dt.timedelta(days=today.weekday())
    month_start = today.replace(day=1)
    year_start = month_start.replace(month=1)
    name = value.name
    if name == "today":
        return DateSpan(today, today + day)
    if name == "yesterday":
        return DateSpan(today - day, today)
    if name == "this week":
        return DateSpan(week_start, week_start + 7 * day)
    if name == "last week":
        return DateSpan(week_start - 7 * day, week_start)
    if name == "this month":
        return DateSpan(month_start, _add_months(month_start, 1))
    if name == "last month":
        return DateSpan(_add_months(month_start, -1), month_start)
    if name == "this year":
        return DateSpan(year_start, year_start.replace(year=year_start.year + 1))
    return DateSpan(year_start.replace(year=year_start.year - 1), year_start)


def _add_months(first_of_month: dt.datetime, months: int) -> dt.datetime:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return first_of_month.replace(year=index // 12, month=index % 12 + 1)


Bound = TypeVar("Bound", int, dt.datetime)


def span_interval(op: CompareOp, start: Bound, end: Bound) -> tuple[Bound | None, Bound | None]:
    """Return ``(lower inclusive, upper exclusive)`` for ``op`` applied to the span [start, end).

    None is an open side. ``>`` means after the span and ``<=`` up to its end, so
    ``sent>2001-05-01`` starts at 2001-05-02T00:00Z and ``size<=10`` includes 10 bytes.
    """
    if op == "=":
        return start, end
    if op == "<":
        return None, start
    if op == "<=":
        return None, end
    if op == ">":
        return end, None
    return start, None
