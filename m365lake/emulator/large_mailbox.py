"""Stream a very large, deterministic mailbox for benchmarks.

Messages are formatted from string templates instead of ``email.message.EmailMessage``,
whose header folding made it about 50 times slower per message on a development laptop,
so 100,000 messages take seconds. The output is still
well-formed MIME with CRLF line ends: encoded-words come from ``email.utils.formataddr``
and attachment bodies are base64 blocks computed once.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formataddr

from m365lake.emulator import samplefiles
from m365lake.emulator.generator_text import (
    EXTERNAL_CONTACTS,
    PROJECTS,
    Person,
    invented_people,
    opening_text,
    quote,
    reply_text,
    subject_for,
)
from m365lake.emulator.seed import SeedMessage, SeedUser

LARGE_MAILBOX_USER = SeedUser(
    user_principal_name="bench.user@contoso.example",
    display_name="Bench User",
    mail="bench.user@contoso.example",
)
"""Owner of every message that ``generate_large_mailbox`` yields."""

_OWNER = Person(LARGE_MAILBOX_USER.display_name, LARGE_MAILBOX_USER.user_principal_name)
_START = datetime(2019, 1, 7, 7, 0, tzinfo=UTC)
_FOLDERS = (
    (("Inbox",), 55),
    (("Sent Items",), 15),
    (("Inbox", "Newsletters"), 5),
    (("Archive", "2019"), 8),
    (("Archive", "2020"), 8),
    (("Archive", "2021"), 9),
)
_RECENT_THREADS = 64


def _base64_lines(data: bytes) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return "\r\n".join(encoded[start : start + 76] for start in range(0, len(encoded), 76))


def _attachment_templates() -> list[tuple[str, str, str]]:
    """Return (content type, file name, base64 body) for the attachments to rotate through."""
    rows: list[list[str | int | float]] = [["Month", "Tickets", "Hours"]]
    rows += [[f"2020-{month:02d}", 40 + month * 3, 12.5 * month] for month in range(1, 13)]
    return [
        (
            "application/pdf",
            "report.pdf",
            _base64_lines(samplefiles.pdf_document("Monthly report", ["Figures attached."])),
        ),
        ("image/png", "chart.png", _base64_lines(samplefiles.png_image(40, 30, shade=50))),
        ("text/csv", "tickets.csv", _base64_lines(samplefiles.csv_text(rows))),
    ]


def generate_large_mailbox(count: int, *, seed: int = 11) -> Iterator[SeedMessage]:
    """Yield ``count`` messages of one mailbox (LARGE_MAILBOX_USER), lazily.

    About 40 % of the messages reply to a recent thread, 5 % carry a PDF, PNG or CSV
    attachment, 10 % are unread, and dates advance about 15 minutes per message from
    2019-01-07.
    """
    rng = random.Random(f"large-mailbox:{seed}")
    people = invented_people(random.Random(f"large-people:{seed}"), 40, "contoso.example")
    people += list(EXTERNAL_CONTACTS)
    header_address = {person: formataddr((person.name, person.address)) for person in people}
    header_address[_OWNER] = formataddr((_OWNER.name, _OWNER.address))
    attachments = _attachment_templates()
    folders = [folder for folder, _weight in _FOLDERS]
    weights = [weight for _folder, weight in _FOLDERS]
    recent: list[tuple[str, str, str, Person, str, datetime]] = []

    date = _START
    for number in range(count):
        date += timedelta(seconds=rng.randrange(60, 1740))
        folder = rng.choices(folders, weights)[0]
        counterpart = rng.choice(people)
        sent = folder == ("Sent Items",)
        sender, recipient = (_OWNER, counterpart) if sent else (counterpart, _OWNER)
        message_id = f"<{seed:x}.{number:08x}.{rng.getrandbits(32):08x}@bench.contoso.example>"

        if recent and rng.random() < 0.4:
            root_id, parent_id, subject, parent_sender, parent_text, parent_date = rng.choice(
                recent
            )
            text = reply_text(rng, "the project", recipient) + "\n\n"
            text += quote(parent_sender, parent_text, parent_date, max_lines=12)
            thread_headers = f"In-Reply-To: {parent_id}\r\nReferences: {root_id} {parent_id}\r\n"
            if root_id == parent_id:
                thread_headers = f"In-Reply-To: {parent_id}\r\nReferences: {parent_id}\r\n"
            subject = subject if subject.startswith("RE: ") else f"RE: {subject}"
        else:
            root_id = message_id
            subject = subject_for(rng, rng.choice(PROJECTS))
            text = opening_text(rng, rng.choice(PROJECTS), recipient)
            thread_headers = ""
        recent.append((root_id, message_id, subject, sender, text, date))
        if len(recent) > _RECENT_THREADS:
            recent.pop(0)

        headers = (
            f"From: {header_address[sender]}\r\n"
            f"To: {header_address[recipient]}\r\n"
            f"Subject: {subject}\r\n"
            f"Date: {format_datetime(date)}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"{thread_headers}"
            "MIME-Version: 1.0\r\n"
        )
        body = text.replace("\n", "\r\n") + "\r\n"
        if rng.random() < 0.05:
            content_type, filename, encoded = attachments[number % len(attachments)]
            boundary = f"_bench_{seed}_{number}"
            mime = (
                f'{headers}Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
                f'--{boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}"
                f"--{boundary}\r\nContent-Type: {content_type}\r\n"
                f'Content-Disposition: attachment; filename="{filename}"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n"
                f"--{boundary}--\r\n"
            )
        else:
            mime = (
                f'{headers}Content-Type: text/plain; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}"
            )
        yield SeedMessage(
            user_principal_name=LARGE_MAILBOX_USER.user_principal_name,
            folder_path=folder,
            mime=mime.encode("utf-8"),
            received_at=date + timedelta(seconds=rng.randrange(1, 30)),
            is_read=sent or rng.random() >= 0.1,
            source=f"generated-large:{seed}:{number}",
        )
