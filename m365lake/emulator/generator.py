"""Generate believable, deterministic tenants and mailboxes for tests and benchmarks.

The same arguments give byte-identical MIME on every run: randomness comes from
``random.Random`` seeded with strings (hashed with SHA-512, so PYTHONHASHSEED does not
matter), dates count from a fixed start, and every multipart boundary is derived from the
message number. The people, companies and projects are invented.
"""

from __future__ import annotations

import email
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime

from m365lake.emulator import samplefiles
from m365lake.emulator.generator_calendar import generate_events
from m365lake.emulator.generator_contacts import generate_contacts
from m365lake.emulator.generator_files import generate_drive_files
from m365lake.emulator.generator_text import (
    CATEGORIES,
    EXTERNAL_CONTACTS,
    LAST_NAMES,
    PROJECTS,
    Person,
    html_body,
    invented_people,
    opening_text,
    quote,
    reply_text,
    subject_for,
)
from m365lake.emulator.large_mailbox import LARGE_MAILBOX_USER, generate_large_mailbox
from m365lake.emulator.seed import SeedMessage, SeedTenant, SeedUser

__all__ = ["LARGE_MAILBOX_USER", "generate_large_mailbox", "generate_tenant"]

# Internet mail uses CRLF line ends, and 78 is the line length RFC 5322 recommends.
MIME_POLICY = email_policy.default.clone(linesep="\r\n", max_line_length=78)
START = datetime(2024, 3, 4, 8, 30, tzinfo=UTC)

SENT = ("Sent Items",)
INBOX = ("Inbox",)
DELETED = ("Deleted Items",)
ATTACHMENT_KINDS = ("pdf", "docx", "xlsx", "png", "csv", "txt", "forward")


@dataclass
class _Mailbox:
    """Generation state of one user's mailbox."""

    owner: Person
    rng: random.Random
    seed: int
    number: int
    messages: list[SeedMessage]
    attachment_turn: int = 0
    message_count: int = 0


def generate_tenant(
    *,
    seed: int = 7,
    users: int = 5,
    messages_per_user: int = 40,
    domain: str = "contoso.example",
    files_per_user: int = 4,
) -> SeedTenant:
    """Build a tenant of ``users`` mailboxes with ``messages_per_user`` messages each.

    Mail comes in threads (replies carry In-Reply-To and References and quote the earlier
    text) and lands in Inbox, Sent Items, Deleted Items and ``Archive/Projects/<name>``.
    Attachments rotate through PDF, DOCX, XLSX, PNG (attached or inline), CSV, text and a
    forwarded message/rfc822, so a tenant of the default size contains every kind. About a
    third of the received mail is unread, and some messages carry categories. Each user's
    OneDrive gets ``files_per_user`` small DOCX, PDF, CSV and text files, and two sites get
    libraries with nested folders. Every mailbox gets calendar events, including a weekly
    series with a moved and a cancelled occurrence (``generator_calendar``), and contacts
    in a few contact folders (``generator_contacts``).
    """
    if users < 1 or messages_per_user < 0:
        raise ValueError(
            f"generate_tenant needs users >= 1 and messages_per_user >= 0, "
            f"got users={users}, messages_per_user={messages_per_user}"
        )
    people = invented_people(random.Random(f"people:{seed}"), users, domain)
    tenant = SeedTenant(domain=domain)
    tenant.users = [
        SeedUser(user_principal_name=person.address, display_name=person.name, mail=person.address)
        for person in people
    ]
    for number, owner in enumerate(people):
        mailbox = _Mailbox(
            owner=owner,
            rng=random.Random(f"mailbox:{seed}:{number}"),
            seed=seed,
            number=number,
            messages=[],
        )
        colleagues = [person for person in people if person != owner]
        while mailbox.message_count < messages_per_user:
            _add_thread(mailbox, colleagues, messages_per_user - mailbox.message_count)
        tenant.messages.extend(mailbox.messages)
        tenant.folders.append((owner.address, ("Archive",)))
        tenant.folders.extend((owner.address, ("Archive", "Projects", p)) for p in PROJECTS)
        tenant.folders.append((owner.address, ("Drafts",)))
    tenant.sites, tenant.files = generate_drive_files(
        people, seed=seed, start=START, files_per_user=files_per_user
    )
    tenant.contact_folders, tenant.contacts = generate_contacts(people, seed=seed)
    tenant.events = generate_events(people, seed=seed)
    return tenant


def _add_thread(mailbox: _Mailbox, colleagues: list[Person], budget: int) -> None:
    rng = mailbox.rng
    project = rng.choice(PROJECTS)
    pool = colleagues + list(EXTERNAL_CONTACTS) if colleagues else list(EXTERNAL_CONTACTS)
    counterpart = rng.choice(pool)
    cc = [person for person in rng.sample(pool, k=min(2, len(pool))) if person != counterpart]
    cc = cc[: rng.choice((0, 0, 1, 2))]
    length = min(budget, rng.choice((1, 1, 1, 1, 2, 2, 3, 4, 5)))
    owner_starts = rng.random() < 0.2
    subject = subject_for(rng, project)
    date = START + timedelta(days=rng.randrange(0, 150), minutes=rng.randrange(0, 600))
    archived = rng.random() < 0.35
    deleted = not archived and rng.random() < 0.08

    references: list[str] = []
    previous: tuple[Person, str, datetime] | None = None
    for position in range(length):
        from_owner = (position % 2 == 0) == owner_starts
        sender, recipient = (
            (mailbox.owner, counterpart) if from_owner else (counterpart, mailbox.owner)
        )
        if previous is None:
            text = opening_text(rng, project, recipient)
        else:
            text = reply_text(rng, project, recipient) + "\n\n" + quote(*previous)
        message_id = _message_id(mailbox, sender)
        message = _message(
            sender=sender,
            to=[recipient],
            cc=cc,
            subject=subject if position == 0 else f"RE: {subject}",
            date=date,
            message_id=message_id,
            references=references,
            text=text,
            with_html=rng.random() < 0.5,
            importance="high" if rng.random() < 0.07 else None,
        )
        if position == 0 and rng.random() < 0.45:
            _attach(mailbox, message, project)
        folder: tuple[str, ...]
        if from_owner:
            folder = SENT
        elif deleted:
            folder = DELETED
        elif archived:
            folder = ("Archive", "Projects", project)
        else:
            folder = INBOX
        _finish(mailbox, message, folder, date, unread=not from_owner and rng.random() < 0.35)

        references = [*references, message_id]
        previous = (sender, text, date)
        date += timedelta(minutes=rng.randrange(12, 900))


def _message_id(mailbox: _Mailbox, sender: Person) -> str:
    host = sender.address.rsplit("@", 1)[-1]
    token = f"{mailbox.seed:x}{mailbox.number:02x}{mailbox.message_count:05x}"
    return f"<{token}.{mailbox.rng.getrandbits(40):010x}@{host}>"


def _message(
    *,
    sender: Person,
    to: list[Person],
    cc: list[Person],
    subject: str,
    date: datetime,
    message_id: str,
    references: list[str],
    text: str,
    with_html: bool,
    importance: str | None,
) -> EmailMessage:
    message = EmailMessage(policy=MIME_POLICY)
    message["From"] = _address(sender)
    message["To"] = [_address(person) for person in to]
    if cc:
        message["Cc"] = [_address(person) for person in cc]
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    if references:
        message["In-Reply-To"] = references[-1]
        message["References"] = " ".join(references)
    if importance:
        message["Importance"] = importance
    message["MIME-Version"] = "1.0"
    message.set_content(text)
    if with_html:
        message.add_alternative(html_body(text), subtype="html")
    return message


def _address(person: Person) -> Address:
    username, domain = person.address.split("@", 1)
    return Address(display_name=person.name, username=username, domain=domain)


def _attach(mailbox: _Mailbox, message: EmailMessage, project: str) -> None:
    kind = ATTACHMENT_KINDS[mailbox.attachment_turn % len(ATTACHMENT_KINDS)]
    mailbox.attachment_turn += 1
    turn = mailbox.attachment_turn
    rows: list[list[str | int | float]] = [["Item", "Owner", "Hours", "Cost (EUR)"]]
    for index, last in enumerate(LAST_NAMES[:6]):
        rows.append([f"{project} task {index + 1}", last, 4 + (turn * index) % 17, 120.5 * index])

    if kind == "pdf":
        lines = [f"Project {project}: status as of week {turn}.", "Prepared for internal review."]
        data = samplefiles.pdf_document(f"{project} status report", lines)
        message.add_attachment(data, "application", "pdf", filename=f"{project} status {turn}.pdf")
    elif kind == "docx":
        data = samplefiles.docx_document([f"{project} meeting notes", "Decisions and actions."])
        message.add_attachment(
            data,
            "application",
            "vnd.openxmlformats-officedocument.wordprocessingml.document",
            filename=f"Réunion {project}.docx",
        )
    elif kind == "xlsx":
        message.add_attachment(
            samplefiles.xlsx_workbook(rows),
            "application",
            "vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            filename=f"{project} budget.xlsx",
        )
    elif kind == "png" and isinstance(html_part := message.get_body(("html",)), MIMEPart):
        html_part.add_related(
            samplefiles.png_image(48, 32, shade=turn * 9),
            "image",
            "png",
            cid=f"<logo{turn}@{mailbox.owner.address.rsplit('@', 1)[-1]}>",
            disposition="inline",
            filename="logo.png",
        )
    elif kind == "png":
        image = samplefiles.png_image(64, 48, shade=turn * 7)
        message.add_attachment(image, "image", "png", filename=f"diagram-{turn}.png")
    elif kind == "csv":
        message.add_attachment(
            samplefiles.csv_text(rows), "text", "csv", filename=f"{project.lower()}-hours.csv"
        )
    elif kind == "forward" and mailbox.messages:
        earlier = email.message_from_bytes(mailbox.messages[-1].mime, policy=MIME_POLICY)
        message.add_attachment(earlier)
    else:
        note = f"Checklist for {project}:\r\n- confirm scope\r\n- book the room\r\n"
        message.add_attachment(note.encode("utf-8"), "text", "plain", filename="checklist.txt")


def _finish(
    mailbox: _Mailbox,
    message: EmailMessage,
    folder: tuple[str, ...],
    date: datetime,
    *,
    unread: bool,
) -> None:
    for index, part in enumerate(message.walk()):
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            boundary = f"_m365lake_{mailbox.seed}_{mailbox.number}_{mailbox.message_count}_{index}"
            part.set_boundary(boundary)
    categories: tuple[str, ...] = ()
    if mailbox.rng.random() < 0.2:
        categories = tuple(sorted(mailbox.rng.sample(CATEGORIES, k=mailbox.rng.choice((1, 1, 2)))))
    mailbox.messages.append(
        SeedMessage(
            user_principal_name=mailbox.owner.address,
            folder_path=folder,
            mime=message.as_bytes(policy=MIME_POLICY),
            received_at=date + timedelta(seconds=mailbox.rng.randrange(2, 40)),
            is_read=not unread,
            categories=categories,
            source=f"generated:{mailbox.seed}:{mailbox.number}:{mailbox.message_count}",
        )
    )
    mailbox.message_count += 1
