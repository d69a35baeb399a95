"""The .ics renderer, checked by parsing its output back with the icalendar package."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import pytest
from dateutil.rrule import rruleset, rrulestr

from m365lake.discovery.production.ics import IcsRenderError, fold, render_ics
from m365lake.emulator import Tenant
from m365lake.emulator.calendar_json import event_json
from m365lake.emulator.seed import SeedEvent, SeedTenant, SeedUser
from m365lake.sources.calendar import expected_starts, utc_text

OWNER = "ada@contoso.example"
FIRST = datetime(2024, 3, 4, 9, 0)  # a Monday in Berlin winter time
WINDOW = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))


def build_series(pattern: dict[str, Any], count: int, zone: str = "Europe/Berlin") -> Tenant:
    seed = SeedTenant(users=[SeedUser(OWNER, "Ada Lovelace", mail=OWNER)])
    payload = {
        "subject": "Weekly sync; budget, plans",
        "body": {"contentType": "html", "content": "<p>Agenda: <b>numbers</b></p>"},
        "start": {"dateTime": FIRST.isoformat(), "timeZone": zone},
        "end": {"dateTime": (FIRST + timedelta(minutes=45)).isoformat(), "timeZone": zone},
        "location": {"displayName": "Room 4.12, west wing"},
        "attendees": [
            {"type": "required", "emailAddress": {"name": "Bob, B.", "address": "bob@x.example"}},
            {"type": "optional", "emailAddress": {"name": "Cy", "address": "cy@x.example"}},
        ],
        "recurrence": {
            "pattern": pattern,
            "range": {"type": "numbered", "startDate": "2024-03-04", "numberOfOccurrences": count},
        },
    }
    seed.events = [
        SeedEvent(
            OWNER,
            payload,
            moved=((FIRST + timedelta(weeks=3), FIRST + timedelta(weeks=3, days=1, hours=2)),),
            cancelled=(FIRST + timedelta(weeks=5),),
        )
    ]
    return Tenant.from_seed(seed)


def series_json(tenant: Tenant) -> tuple[list[dict[str, Any]], list[datetime]]:
    """Return the master (with cancelledOccurrences) and exceptions, and the instance starts."""
    uid = tenant.user_id(OWNER)
    owner = tenant.resolve_user(uid)
    assert owner is not None
    master_view = tenant.calendar_events(uid, None)[0]
    instances = tenant.instances(uid, master_view.id, *WINDOW)
    master = event_json(master_view, owner.user)
    present = {utc_text(view.start_utc) for view in instances if view.kind == "occurrence"}
    exceptions = [event_json(v, owner.user) for v in instances if v.kind == "exception"]
    present |= {e["originalStart"] for e in exceptions}
    expected = {utc_text(moment) for moment in expected_starts(master, until=WINDOW[1])}
    master["cancelledOccurrences"] = sorted(expected - present)
    return [master, *exceptions], [view.start_utc for view in instances]


def parse(raw: bytes) -> Any:
    """Parse iCalendar bytes; typed Any because icalendar's value types are loosely typed."""
    return icalendar.Calendar.from_ical(raw)


def expand(calendar: Any) -> list[datetime]:
    """Expand the parsed series as a calendar client would: RRULE, EXDATE, RECURRENCE-ID."""
    events = list(calendar.walk("VEVENT"))
    master = next(e for e in events if "RRULE" in e)
    start = master.decoded("DTSTART")
    rules = rruleset()
    rules.rrule(rrulestr(master["RRULE"].to_ical().decode(), dtstart=start))
    exdates = master.get("EXDATE")
    for group in exdates if isinstance(exdates, list) else [exdates] if exdates else []:
        for item in group.dts:
            rules.exdate(item.dt)
    moved = {
        e.decoded("RECURRENCE-ID"): e.decoded("DTSTART") for e in events if "RECURRENCE-ID" in e
    }
    starts = [moved.get(moment, moment) for moment in rules]
    return sorted(moment.astimezone(UTC) for moment in starts)


@pytest.mark.parametrize(
    "pattern",
    [
        {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"], "firstDayOfWeek": "monday"},
        {"type": "daily", "interval": 7},
    ],
)
def test_series_expands_like_outlook(pattern: dict[str, Any]) -> None:
    tenant = build_series(pattern, count=10)
    members, instance_starts = series_json(tenant)

    calendar = parse(render_ics(members))

    assert expand(calendar) == sorted(instance_starts)
    assert len(instance_starts) == 9  # ten occurrences, one cancelled
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 2
    assert len({str(e["UID"]) for e in events}) == 1


def test_times_keep_zone_with_vtimezone() -> None:
    tenant = build_series({"type": "weekly", "daysOfWeek": ["monday"]}, count=10)
    members, _ = series_json(tenant)

    calendar = parse(render_ics(members))

    (zone,) = calendar.walk("VTIMEZONE")
    assert str(zone["TZID"]) == "Europe/Berlin"
    assert {c.name for c in zone.subcomponents} == {"STANDARD", "DAYLIGHT"}
    master = next(e for e in calendar.walk("VEVENT") if "RRULE" in e)
    assert master["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert master.decoded("DTSTART").replace(tzinfo=None) == FIRST
    exdate = master["EXDATE"].dts[0].dt
    assert exdate.replace(tzinfo=None) == FIRST + timedelta(weeks=5)


def test_text_fields_survive_parsing() -> None:
    tenant = build_series({"type": "weekly", "daysOfWeek": ["monday"]}, count=10)
    members, _ = series_json(tenant)

    master = next(e for e in parse(render_ics(members)).walk("VEVENT") if "RRULE" in e)

    assert str(master["SUMMARY"]) == "Weekly sync; budget, plans"
    assert str(master["LOCATION"]) == "Room 4.12, west wing"
    assert str(master["ORGANIZER"]) == f"mailto:{OWNER}"
    attendees = {str(a): a.params for a in master["ATTENDEE"]}
    assert attendees["mailto:bob@x.example"]["CN"] == "Bob, B."
    assert attendees["mailto:bob@x.example"]["ROLE"] == "REQ-PARTICIPANT"
    assert attendees["mailto:cy@x.example"]["ROLE"] == "OPT-PARTICIPANT"
    assert str(master["DESCRIPTION"]) == "Agenda: numbers"


def test_lines_folded_crlf_utf8() -> None:
    subject = "Überprüfung; der Zahlen, " + "é" * 80 + "\nzweite Zeile"
    event = {
        "id": "AAMk1",
        "iCalUId": "uid-1",
        "type": "singleInstance",
        "subject": subject,
        "start": {"dateTime": "2024-05-01T10:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2024-05-01T11:00:00.0000000", "timeZone": "UTC"},
        "originalStartTimeZone": "UTC",
    }

    raw = render_ics([event])

    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    for line in raw.split(b"\r\n"):
        assert len(line) <= 75
        line.decode("utf-8")  # no character split across lines
    (parsed,) = parse(raw).walk("VEVENT")
    assert str(parsed["SUMMARY"]) == subject
    assert parsed.decoded("DTSTART") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert "RRULE" not in parsed


def test_fold_splits_between_characters() -> None:
    folded = fold("X:" + "€" * 40)

    lines = folded.split(b"\r\n")
    assert all(len(line) <= 75 for line in lines)
    assert b"".join(line.removeprefix(b" ") for line in lines).decode() == "X:" + "€" * 40


def test_all_day_yearly_uses_dates() -> None:
    event = {
        "id": "AAMk2",
        "iCalUId": "uid-2",
        "type": "seriesMaster",
        "subject": "Anniversary",
        "isAllDay": True,
        "showAs": "free",
        "start": {"dateTime": "2024-04-02T00:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2024-04-03T00:00:00.0000000", "timeZone": "UTC"},
        "originalStartTimeZone": "UTC",
        "recurrence": {
            "pattern": {"type": "absoluteYearly", "interval": 1, "month": 4, "dayOfMonth": 2},
            "range": {"type": "endDate", "startDate": "2024-04-02", "endDate": "2026-12-31"},
        },
    }

    (parsed,) = parse(render_ics([event])).walk("VEVENT")

    assert str(parsed.decoded("DTSTART")) == "2024-04-02"
    rule = parsed["RRULE"]
    assert rule["FREQ"] == ["YEARLY"]
    assert rule["BYMONTH"] == [4]
    assert rule["BYMONTHDAY"] == [2]
    assert str(parsed["TRANSP"]) == "TRANSPARENT"


def test_relative_monthly_rule() -> None:
    event = {
        "id": "AAMk3",
        "type": "seriesMaster",
        "start": {"dateTime": "2024-03-01T14:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2024-03-01T15:00:00.0000000", "timeZone": "UTC"},
        "recurrence": {
            "pattern": {"type": "relativeMonthly", "daysOfWeek": ["friday"], "index": "last"},
            "range": {"type": "numbered", "startDate": "2024-03-01", "numberOfOccurrences": 3},
        },
    }

    (parsed,) = parse(render_ics([event])).walk("VEVENT")
    start = parsed.decoded("DTSTART")
    starts = list(rrulestr(parsed["RRULE"].to_ical().decode(), dtstart=start))

    assert [s.date().isoformat() for s in starts] == ["2024-03-29", "2024-04-26", "2024-05-31"]


def test_event_without_start_rejected() -> None:
    with pytest.raises(IcsRenderError, match="start"):
        render_ics([{"id": "x", "type": "singleInstance"}])
    with pytest.raises(IcsRenderError):
        render_ics([])


def test_exception_without_original_start_kept_apart() -> None:
    tenant = build_series({"type": "weekly", "daysOfWeek": ["monday"]}, count=10)
    members, _ = series_json(tenant)
    broken = {k: v for k, v in members[1].items() if k != "originalStart"}

    events = list(parse(render_ics([members[0], broken])).walk("VEVENT"))

    assert len(events) == 2
    assert "RECURRENCE-ID" not in events[1]
    assert str(events[1]["UID"]) != str(events[0]["UID"])


def test_series_starting_off_its_pattern_starts_on_its_first_occurrence() -> None:
    # A "first Monday" series whose master starts on the second Monday of March.
    off_pattern = datetime(2024, 3, 11, 9, 0)
    seed = SeedTenant(users=[SeedUser(OWNER, "Ada Lovelace", mail=OWNER)])
    payload = {
        "subject": "Monthly budget review",
        "start": {"dateTime": off_pattern.isoformat(), "timeZone": "Europe/Berlin"},
        "end": {
            "dateTime": (off_pattern + timedelta(hours=1)).isoformat(),
            "timeZone": "Europe/Berlin",
        },
        "recurrence": {
            "pattern": {"type": "relativeMonthly", "daysOfWeek": ["monday"], "index": "first"},
            "range": {"type": "numbered", "startDate": "2024-03-11", "numberOfOccurrences": 6},
        },
    }
    seed.events = [SeedEvent(OWNER, payload)]
    members, instance_starts = series_json(Tenant.from_seed(seed))

    (master,) = parse(render_ics(members)).walk("VEVENT")
    start = master.decoded("DTSTART")
    # RFC 5545: DTSTART is the first instance, and COUNT counts it.
    rule = rrulestr(master["RRULE"].to_ical().decode(), dtstart=start)
    starts = [start, *(moment for moment in rule if moment != start)][:6]

    assert start.replace(tzinfo=None) == datetime(2024, 4, 1, 9, 0)
    assert master.decoded("DTEND") - start == timedelta(hours=1)
    assert [moment.astimezone(UTC) for moment in starts] == sorted(instance_starts)


def test_control_characters_are_dropped_from_text() -> None:
    event = {
        "id": "AAMk9",
        "subject": "Budget\x00 review\x07",
        "body": {"contentType": "text", "content": "Line one\x00\nline\ttwo\x1b"},
        "location": {"displayName": "Room\x00 1"},
        "start": {"dateTime": "2024-03-01T14:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2024-03-01T15:00:00.0000000", "timeZone": "UTC"},
        "organizer": {"emailAddress": {"name": "Ada\x00", "address": "ada@x.example\x00"}},
    }

    raw = render_ics([event])
    (parsed,) = parse(raw).walk("VEVENT")

    assert not any(byte < 0x20 and byte not in b"\t\r\n" for byte in raw)
    assert str(parsed["SUMMARY"]) == "Budget review"
    assert str(parsed["DESCRIPTION"]) == "Line one\nline\ttwo"
    assert str(parsed["LOCATION"]) == "Room 1"
    assert str(parsed["ORGANIZER"]) == "mailto:ada@x.example"
