"""Generate calendar events for the built-in tenant: singles and series with exceptions.

Every mailbox gets a weekly team meeting with one occurrence moved and one cancelled. It
repeats in Europe/Berlin, so daylight saving matters. Each mailbox also gets a daily, a
monthly and a yearly series, a few single meetings (the first with a file attachment) and
a second calendar. Dates count
from a fixed start, so the same seed gives the same events.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from m365lake.emulator.generator_text import PROJECTS, Person
from m365lake.emulator.seed import SeedEvent

START = datetime(2024, 3, 4, 9, 0)
"""Local start of the first weekly meeting: a Monday."""

WEEKLY_OCCURRENCES = 12
AGENDA_NAME = "agenda.txt"


def _when(moment: datetime, zone: str) -> dict[str, str]:
    return {"dateTime": moment.isoformat(), "timeZone": zone}


def _attendee(person: Person, kind: str = "required") -> dict[str, object]:
    return {"type": kind, "emailAddress": {"name": person.name, "address": person.address}}


def _organizer(person: Person) -> dict[str, object]:
    return {"emailAddress": {"name": person.name, "address": person.address}}


def _series(pattern: dict[str, object], first: datetime, count: int) -> dict[str, object]:
    return {
        "pattern": pattern,
        "range": {
            "type": "numbered",
            "startDate": first.date().isoformat(),
            "numberOfOccurrences": count,
            "recurrenceTimeZone": "UTC",
        },
    }


def generate_events(people: list[Person], *, seed: int) -> list[SeedEvent]:
    """Return the events of every person's mailbox (deterministic for ``seed``)."""
    events: list[SeedEvent] = []
    for number, owner in enumerate(people):
        rng = random.Random(f"calendar:{seed}:{number}")
        others = [person for person in people if person != owner] or [owner]
        project = rng.choice(PROJECTS)
        guests = [_attendee(person) for person in rng.sample(others, k=min(2, len(others)))]
        first = START + timedelta(days=7 * (number % 2))
        weekly = {
            "subject": f"{project} weekly sync",
            "body": {"contentType": "html", "content": f"<p>Status of {project}.</p>"},
            "start": _when(first, "Europe/Berlin"),
            "end": _when(first + timedelta(minutes=30), "Europe/Berlin"),
            "location": {"displayName": "Room 4.12"},
            "attendees": guests,
            "organizer": _organizer(owner),
            "recurrence": {
                "pattern": {
                    "type": "weekly",
                    "interval": 1,
                    "daysOfWeek": ["monday"],
                    "firstDayOfWeek": "monday",
                },
                "range": {
                    "type": "numbered",
                    "startDate": first.date().isoformat(),
                    "numberOfOccurrences": WEEKLY_OCCURRENCES,
                    "recurrenceTimeZone": "Europe/Berlin",
                },
            },
        }
        moved_from = first + timedelta(weeks=3)
        events.append(
            SeedEvent(
                owner.address,
                weekly,
                moved=((moved_from, moved_from + timedelta(days=1, hours=2)),),
                cancelled=(first + timedelta(weeks=5),),
            )
        )
        standup = first.replace(hour=8, minute=45)
        events.append(
            SeedEvent(
                owner.address,
                {
                    "subject": "Daily stand-up",
                    "start": _when(standup, "UTC"),
                    "end": _when(standup + timedelta(minutes=15), "UTC"),
                    "isOnlineMeeting": True,
                    "recurrence": _series({"type": "daily", "interval": 1}, standup, 10),
                },
            )
        )
        review = first.replace(hour=14)
        events.append(
            SeedEvent(
                owner.address,
                {
                    "subject": "Monthly budget review",
                    "start": _when(review, "UTC"),
                    "end": _when(review + timedelta(hours=1), "UTC"),
                    "attendees": [_attendee(others[0], "optional")],
                    "recurrence": _series(
                        {
                            "type": "relativeMonthly",
                            "interval": 1,
                            "daysOfWeek": [review.strftime("%A").lower()],
                            "index": "first",
                        },
                        review,
                        6,
                    ),
                },
            )
        )
        events.append(
            SeedEvent(
                owner.address,
                {
                    "subject": "Company anniversary",
                    "isAllDay": True,
                    "showAs": "free",
                    "start": _when(datetime(2024, 4, 2), "UTC"),
                    "end": _when(datetime(2024, 4, 3), "UTC"),
                    "recurrence": _series(
                        {"type": "absoluteYearly", "interval": 1, "month": 4, "dayOfMonth": 2},
                        datetime(2024, 4, 2),
                        3,
                    ),
                },
                calendar="Team events",
            )
        )
        for index in range(3):
            begins = first + timedelta(days=2 + 3 * index, hours=rng.choice((1, 2, 4, 5)))
            events.append(
                SeedEvent(
                    owner.address,
                    {
                        "subject": f"{rng.choice(PROJECTS)} workshop {index + 1}",
                        "body": {"contentType": "text", "content": "Bring your notes."},
                        "start": _when(begins, "UTC"),
                        "end": _when(begins + timedelta(hours=1), "UTC"),
                        "importance": "high" if index == 0 else "normal",
                        "categories": ["Blue category"] if index == 1 else [],
                        "attendees": [_attendee(rng.choice(others))],
                        "organizer": _organizer(owner),
                    },
                    attachments=(
                        ((AGENDA_NAME, "text/plain", f"Agenda for {owner.name}\n".encode()),)
                        if index == 0
                        else ()
                    ),
                )
            )
    return events
