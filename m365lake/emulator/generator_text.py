"""Invented people, projects and sentences for the mail generators."""

from __future__ import annotations

import html
import random
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime


@dataclass(frozen=True)
class Person:
    name: str
    address: str


# Some names carry accents so that generated headers need RFC 2047 encoded-words.
FIRST_NAMES = (
    "Adele", "Bruno", "Chidi", "Dana", "Émile", "Farah", "Gunnar", "Hana", "Iker", "Jonas",
    "Keiko", "Lars", "Maëlle", "Nikhil", "Olu", "Priya", "Quentin", "Rosa", "Søren", "Tomás",
    "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoë",
)  # fmt: skip
LAST_NAMES = (
    "Albrecht", "Bianchi", "Castillo", "Dubois", "Eriksen", "Fischer", "García", "Horvat",
    "Ito", "Jansen", "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov",
    "Quinn", "Rossi", "Schmidt", "Tanaka", "Umarov", "Vance", "Weber", "Yilmaz", "Zhou",
)  # fmt: skip
PROJECTS = ("Falcon", "Harbor", "Lighthouse", "Northwind Migration", "Vendor Audit")
CATEGORIES = ("Blue category", "Follow up", "Green category", "Red category", "Travel")
EXTERNAL_CONTACTS = (
    Person("Megan Bowers", "megan.bowers@fabrikam.example"),
    Person("Ravi Shah", "ravi.shah@northwind.example"),
    Person("Lucía Ortega", "lucia.ortega@adatum.example"),
    Person("Facilities Desk", "facilities@tailspin.example"),
)

_SUBJECTS = (
    "{project}: kickoff agenda",
    "{project} budget review",
    "Timeline for {project}",
    "{project} - open questions",
    "Draft proposal for {project}",
    "Vendor quotes ({project})",
    "{project} weekly status",
    "Room booking for the {project} workshop",
)
_OPENINGS = (
    "Hi {first},\n\nPlease find the latest notes on {project} below. We agreed to move the "
    "review to Thursday and to keep the scope as it is for now.",
    "Hello {first},\n\nCould you check the figures for {project} before Friday? Finance asked "
    "for the split between hardware and services.",
    "Hi {first},\n\nQuick update on {project}: the supplier confirmed delivery for next week, "
    "and the test plan is ready for comments.",
    "Dear {first},\n\nAs discussed, here is the summary for {project}. Two items are still open: "
    "the licence count and the training dates.",
)
_REPLIES = (
    "Thanks {first}, that works for me. I will update the tracker tonight.",
    "Hi {first},\n\nI have two comments on the numbers; let us go through them tomorrow.",
    "Looks good. Can we add the risk section before it goes to the steering group?",
    "Agreed. I have asked Facilities to hold the room for {project}.",
    "Thanks. One question: does the {project} estimate include travel?",
)
_SIGN_OFFS = ("Best regards", "Thanks", "Kind regards", "Cheers")


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.replace("ø", "o").replace("Ø", "O"))
    return decomposed.encode("ascii", errors="ignore").decode("ascii")


def invented_people(rng: random.Random, count: int, domain: str) -> list[Person]:
    """Pick ``count`` distinct invented people with ``first.last@domain`` addresses."""
    people: list[Person] = []
    addresses: set[str] = set()
    firsts = rng.sample(FIRST_NAMES, len(FIRST_NAMES))
    lasts = rng.sample(LAST_NAMES, len(LAST_NAMES))
    for index in range(count):
        first = firsts[index % len(firsts)]
        last = lasts[(index + index // len(firsts)) % len(lasts)]
        address = f"{_ascii(first)}.{_ascii(last)}".lower() + f"@{domain}"
        if address in addresses:
            address = address.replace("@", f"{len(people)}@", 1)
        addresses.add(address)
        people.append(Person(f"{first} {last}", address))
    return people


def subject_for(rng: random.Random, project: str) -> str:
    return rng.choice(_SUBJECTS).format(project=project)


def _first_name(person: Person) -> str:
    return person.name.split(" ", 1)[0]


def opening_text(rng: random.Random, project: str, recipient: Person) -> str:
    text = rng.choice(_OPENINGS).format(first=_first_name(recipient), project=project)
    return text + "\n\n" + rng.choice(_SIGN_OFFS)


def reply_text(rng: random.Random, project: str, recipient: Person) -> str:
    return rng.choice(_REPLIES).format(first=_first_name(recipient), project=project)


def quote(sender: Person, text: str, date: datetime, *, max_lines: int = 40) -> str:
    """Quote an earlier message the way most clients do, capped at ``max_lines`` lines."""
    lines = text.splitlines()[:max_lines]
    quoted = "\n".join(f"> {line}" if line else ">" for line in lines)
    return f"On {format_datetime(date)}, {sender.name} <{sender.address}> wrote:\n{quoted}"


def html_body(text: str) -> str:
    """Render plain text as simple HTML, quoted lines inside a blockquote."""
    own: list[str] = []
    quoted: list[str] = []
    for line in text.splitlines():
        (quoted if line.startswith(">") else own).append(line.lstrip("> "))
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in own if line)
    block = ""
    if quoted:
        inner = "<br>".join(html.escape(line) for line in quoted)
        style = "border-left:2px solid #ccc;padding-left:8px"
        block = f'<blockquote style="{style}">{inner}</blockquote>'
    return f'<html><body style="font-family:Calibri,sans-serif">{paragraphs}{block}</body></html>'
