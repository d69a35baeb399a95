"""Expansion of Graph's patternedRecurrence into occurrence starts, against a calendar."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import pytest

from m365lake.recurrence import RecurrenceError, occurrence_starts

NINE = time(9, 0)
FAR = datetime(2030, 1, 1)


def series(pattern: dict[str, Any], start: str, **span: Any) -> dict[str, Any]:
    span.setdefault("type", "numbered")
    return {"pattern": pattern, "range": {"startDate": start, **span}}


def days(recurrence: dict[str, Any], until: datetime = FAR) -> list[str]:
    return [m.date().isoformat() for m in occurrence_starts(recurrence, NINE, until=until)]


@pytest.mark.parametrize(
    ("pattern", "start", "span", "expected"),
    [
        (
            {"type": "daily", "interval": 2},
            "2024-02-27",
            {"numberOfOccurrences": 3},
            ["2024-02-27", "2024-02-29", "2024-03-02"],
        ),
        (
            {"type": "weekly", "interval": 2, "daysOfWeek": ["tuesday", "thursday"]},
            "2024-03-06",  # a Wednesday: that week's Tuesday is before the start
            {"numberOfOccurrences": 4},
            ["2024-03-07", "2024-03-19", "2024-03-21", "2024-04-02"],
        ),
        (
            {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 31},
            "2024-01-15",
            {"type": "endDate", "endDate": "2024-06-30"},
            ["2024-01-31", "2024-03-31", "2024-05-31"],
        ),
        (
            {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
            "2024-01-01",
            {"numberOfOccurrences": 3},
            ["2024-01-26", "2024-02-23", "2024-03-29"],
        ),
        (
            {"type": "relativeMonthly", "daysOfWeek": ["monday"], "index": "second"},
            "2024-04-09",  # after April's second Monday (the 8th)
            {"numberOfOccurrences": 2},
            ["2024-05-13", "2024-06-10"],
        ),
        (
            {"type": "absoluteYearly", "interval": 1, "month": 2, "dayOfMonth": 29},
            "2024-01-01",
            {"type": "endDate", "endDate": "2029-01-01"},
            ["2024-02-29", "2028-02-29"],
        ),
        (
            {
                "type": "relativeYearly",
                "month": 11,
                "daysOfWeek": ["thursday"],
                "index": "fourth",
            },
            "2024-12-01",
            {"numberOfOccurrences": 2},
            ["2025-11-27", "2026-11-26"],
        ),
    ],
)
def test_patterns_expand_to_calendar_dates(
    pattern: dict[str, Any], start: str, span: dict[str, Any], expected: list[str]
) -> None:
    assert days(series(pattern, start, **span)) == expected


def test_no_end_stops_at_until() -> None:
    recurrence = series({"type": "daily"}, "2024-01-01", type="noEnd")
    found = days(recurrence, until=datetime(2024, 1, 4, 9, 0))
    assert found == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]


def test_occurrences_keep_local_time() -> None:
    recurrence = series({"type": "daily"}, "2024-01-01", numberOfOccurrences=2)
    starts = list(occurrence_starts(recurrence, time(14, 30), until=FAR))
    assert starts == [datetime(2024, 1, 1, 14, 30), datetime(2024, 1, 2, 14, 30)]


@pytest.mark.parametrize(
    ("recurrence", "message"),
    [
        (series({"type": "hourly"}, "2024-01-01", numberOfOccurrences=1), "pattern type"),
        (series({"type": "weekly"}, "2024-01-01", numberOfOccurrences=1), "daysOfWeek"),
        (series({"type": "daily"}, "2024-01-01", type="sometimes"), "range type"),
        (series({"type": "daily"}, "soon", numberOfOccurrences=1), "startDate"),
        (series({"type": "daily", "interval": 0}, "2024-01-01", numberOfOccurrences=1), "interval"),
    ],
)
def test_invalid_recurrence_rejected(recurrence: dict[str, Any], message: str) -> None:
    with pytest.raises(RecurrenceError, match=message):
        days(recurrence)
