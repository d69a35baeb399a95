"""Build search documents (``fields.SearchDocument``) from lake rows and extracted text.

One document is one item: a message with its attachments' text folded in, or a file in a
OneDrive or SharePoint library. Calendar events, contacts and Teams channel messages are
built in ``documents_outlook`` and ``documents_teams`` from the helpers here. Folders
are not indexed as documents. A folder has no content of its own, Purview's content search
returns items rather than folders, and every file carries its folder in ``path``, so a
search for a folder's name still finds the files in it.

The functions here are pure: the caller reads the rows and runs extraction (through the
extraction worker pool), then passes both in, so the same document can be built for a
rebuild, for an incremental update and for the test oracle.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import email.utils
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from m365lake.search.extract_mail import decode_header_value
from m365lake.search.fields import FieldValue, SearchDocument

if TYPE_CHECKING:
    from m365lake.search.extract import Extraction, MessageText

logger = logging.getLogger(__name__)

MAIL_WORKLOAD = "mail"
FILES_WORKLOAD = "files"
CALENDAR_WORKLOAD = "calendar"
CONTACTS_WORKLOAD = "contacts"
TEAMS_WORKLOAD = "teams"
# Purview's ``kind`` values for the item types.
MAIL_KIND = "email"
FILES_KIND = "docs"
MEETINGS_KIND = "meetings"
CONTACTS_KIND = "contacts"
TEAMS_KIND = "microsoftteams"

DOC_ID_PREFIXES: Mapping[str, str] = {
    MAIL_WORKLOAD: "mail",
    FILES_WORKLOAD: "file",
    CALENDAR_WORKLOAD: "event",
    CONTACTS_WORKLOAD: "contact",
    TEAMS_WORKLOAD: "teams",
}
"""The ``doc_id`` prefix of each workload."""


def doc_id_of(workload: str, container_id: str, item_id: str) -> str:
    """Return the document key ``<prefix>:<container>:<item>``, prefixed per workload.

    The prefixes are ``mail`` (mailbox, message), ``file`` (drive, item), ``event`` and
    ``contact`` (mailbox, item) and ``teams`` (channel, message).

    NOTE: the keyword analyzer lowercases ``doc_id``, so two Graph ids that differ only in
    letter case would share one document. Graph ids are long base64 strings, so such a
    pair is not expected in one mailbox or drive.
    """
    try:
        prefix = DOC_ID_PREFIXES[workload]
    except KeyError:
        raise ValueError(
            f"unknown workload {workload!r}; the index has: {', '.join(DOC_ID_PREFIXES)}"
        ) from None
    return f"{prefix}:{container_id}:{item_id}"


@dataclass(frozen=True)
class MailboxEntry:
    user_principal_name: str
    display_name: str | None = None


@dataclass(frozen=True)
class SiteEntry:
    name: str | None = None
    display_name: str | None = None
    web_url: str | None = None


@dataclass(frozen=True)
class DriveEntry:
    owner_kind: str | None = None
    """``user`` for a OneDrive, ``site`` for a SharePoint document library."""
    owner_id: str | None = None
    """The owner's Entra object id (the mailbox id) or the site id."""
    owner_name: str | None = None
    """The user principal name of a OneDrive's owner, or the site's name."""
    site_id: str | None = None
    web_url: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class TeamEntry:
    display_name: str | None = None
    web_url: str | None = None


@dataclass(frozen=True)
class ChannelEntry:
    team_id: str
    display_name: str | None = None
    web_url: str | None = None


@dataclass(frozen=True)
class Directory:
    """The lake's mailboxes, drives, sites, teams and channels by id.

    Custodians and locations of items are named from it.
    """

    mailboxes: Mapping[str, MailboxEntry] = field(default_factory=dict)
    drives: Mapping[str, DriveEntry] = field(default_factory=dict)
    sites: Mapping[str, SiteEntry] = field(default_factory=dict)
    teams: Mapping[str, TeamEntry] = field(default_factory=dict)
    channels: Mapping[str, ChannelEntry] = field(default_factory=dict)


@dataclass
class DocumentBuilder:
    """A document under construction; empty and None values are left out."""

    values: dict[str, list[FieldValue]] = field(default_factory=dict)

    def add(self, name: str, *values: FieldValue | None) -> None:
        for value in values:
            if value is None or value == "":
                continue
            if isinstance(value, str):
                value = valid_text(value)
            self.values.setdefault(name, []).append(value)

    def add_all(self, name: str, values: Iterable[FieldValue | None]) -> None:
        self.add(name, *values)


def add_identity(
    builder: DocumentBuilder,
    *,
    workload: str,
    container_id: str,
    item_id: str,
    row: Mapping[str, Any],
    deleted_at: dt.datetime | None,
) -> None:
    builder.add("doc_id", doc_id_of(workload, container_id, item_id))
    builder.add("workload", workload)
    builder.add("container_id", container_id)
    builder.add("item_id", item_id)
    builder.add("captured_at", _utc(row.get("captured_at")))
    builder.add("run_id", row.get("run_id"))
    builder.add("deleted_at", _utc(deleted_at))


def add_issues(builder: DocumentBuilder, issues: Sequence[str]) -> None:
    builder.add("partially_indexed", bool(issues))
    builder.add_all("index_issues", issues)


def valid_text(value: str) -> str:
    """Return ``value`` encodable as UTF-8: surrogate pairs joined, lone surrogates as U+FFFD.

    Text decoded from UTF-16 sources (legacy Office files, some PDFs) can contain lone
    surrogates, which Tantivy cannot store.
    """
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def extraction_issue(part: str, extraction: Extraction) -> str | None:
    """Return ``"<part>: <reason>"`` for an incomplete extraction, or None when complete."""
    if extraction.complete:
        return None
    return f"{part}: {extraction.reason or extraction.status}"


def message_document(
    row: Mapping[str, Any],
    *,
    text: MessageText | None,
    directory: Directory,
    deleted_at: dt.datetime | None = None,
    mime: bytes | None = None,
    content_issue: str | None = None,
) -> SearchDocument:
    """Build the document of one captured message version.

    ``text`` is the extraction of the message's MIME, or None when the MIME could not be
    read; ``content_issue`` then says why, for ``index_issues``. ``mime`` supplies the
    display names of recipients, which the messages table stores as addresses only.
    ``deleted_at`` is when the tenant deleted the item, for a version that is the last
    one before a deletion.
    """
    builder = DocumentBuilder()
    mailbox_id = str(row["mailbox_id"])
    add_identity(
        builder,
        workload=MAIL_WORKLOAD,
        container_id=mailbox_id,
        item_id=str(row["message_id"]),
        row=row,
        deleted_at=deleted_at,
    )
    mailbox = directory.mailboxes.get(mailbox_id)
    upn = mailbox.user_principal_name if mailbox else mailbox_id
    builder.add("custodian_key", upn)
    builder.add("location_key", upn)
    builder.add("custodian", upn, mailbox.display_name if mailbox else None)
    builder.add("kind", MAIL_KIND)
    builder.add("size", item_size(row.get("size")))

    names = recipient_names(mime) if mime else {}
    sender = _mailbox_value(row.get("from_address"), row.get("from_name") or None, names)
    to = [_mailbox_value(address, None, names) for address in row.get("to_addresses") or []]
    cc = [_mailbox_value(address, None, names) for address in row.get("cc_addresses") or []]
    bcc = [_mailbox_value(address, None, names) for address in row.get("bcc_addresses") or []]
    builder.add("from", sender)
    builder.add_all("to", to)
    builder.add_all("cc", cc)
    builder.add_all("bcc", bcc)
    builder.add_all("participants", [sender, *to, *cc, *bcc])
    builder.add_all("recipients", [*to, *cc, *bcc])
    builder.add("subject", row.get("subject"))
    builder.add("importance", (row.get("importance") or "").lower() or None)
    builder.add("isread", row.get("is_read"))
    builder.add("folder", row.get("folder_path"))
    builder.add("sent", _utc(row.get("sent_at")))
    builder.add("received", _utc(row.get("received_at")))
    builder.add_all("category", row.get("categories") or [])

    issues: list[str] = []
    attachments = text.attachments if text is not None else []
    has_attachments = row.get("has_attachments")
    builder.add("hasattachment", bool(attachments) if has_attachments is None else has_attachments)
    if text is None:
        issues.append(f"message: {content_issue or 'the MIME content could not be read'}")
    else:
        builder.add("body", text.body)
        issue = extraction_issue("body", text.body_extraction)
        if issue:
            issues.append(issue)
    for number, attachment in enumerate(attachments, start=1):
        builder.add("attachmentnames", attachment.name)
        builder.add("attachment_text", attachment.extraction.text)
        issue = extraction_issue(
            f"attachment {attachment.name or f'#{number}'}", attachment.extraction
        )
        if issue:
            issues.append(issue)
    add_issues(builder, issues)
    return builder.values


def file_document(
    row: Mapping[str, Any],
    *,
    extraction: Extraction | None,
    directory: Directory,
    deleted_at: dt.datetime | None = None,
    content_issue: str | None = None,
) -> SearchDocument:
    """Build the document of one captured file version.

    ``extraction`` is the text of the file's content, or None when the content was not
    archived (OneNote packages, malware, failed downloads) or could not be read, in which
    case ``content_issue`` says why.
    """
    builder = DocumentBuilder()
    drive_id = str(row["drive_id"])
    add_identity(
        builder,
        workload=FILES_WORKLOAD,
        container_id=drive_id,
        item_id=str(row["item_id"]),
        row=row,
        deleted_at=deleted_at,
    )
    drive = directory.drives.get(drive_id, DriveEntry())
    site = directory.sites.get(drive.site_id or row.get("site_id") or "")
    if drive.owner_kind == "user":
        mailbox = directory.mailboxes.get(drive.owner_id or "")
        owner = mailbox.user_principal_name if mailbox else drive.owner_name
        builder.add("custodian_key", owner)
        builder.add("custodian", owner, mailbox.display_name if mailbox else None)
    location = (site.web_url if site else None) or drive.web_url or f"drive:{drive_id}"
    builder.add("location_key", location)
    builder.add("kind", FILES_KIND)
    builder.add("size", item_size(row.get("size")))

    name = row.get("name") or ""
    builder.add("filename", name)
    builder.add("fileextension", file_extension(name))
    path = row.get("path")
    builder.add("path", f"/{path}" if path else None, row.get("web_url"))
    if site is not None:
        builder.add("site", site.display_name, site.name, site.web_url)
    builder.add("createdby", row.get("created_by"))
    builder.add("modifiedby", row.get("modified_by"))
    builder.add("created", _utc(row.get("created_at")))
    builder.add("lastmodifiedtime", _utc(row.get("modified_at")))

    issues: list[str] = []
    author = None
    if extraction is None:
        issues.append(f"content: {content_issue or 'the content was not archived'}")
    else:
        builder.add("content", extraction.text)
        builder.add("title", extraction.title)
        author = extraction.author
        issue = extraction_issue("content", extraction)
        if issue:
            issues.append(issue)
    builder.add("author", author or row.get("created_by"))
    add_issues(builder, issues)
    return builder.values


def file_extension(name: str) -> str | None:
    """Return the lowercased extension without the dot, or None (``.bashrc`` has none)."""
    suffix = PurePosixPath(name).suffix
    return suffix[1:].lower() if len(suffix) > 1 else None


def recipient_names(mime: bytes) -> dict[str, str]:
    """Return display names by lowercased address, read from a message's address headers.

    Only the header block is parsed, with compat32, which keeps each header's raw text:
    the email package's header registry raises AttributeError or IndexError on group
    syntax it half-parses (``To: unlisted-recipients:; (none)``), and one such header
    must not stop an index run. Names are decoded after the raw value is split, because a
    decoded name may contain a comma.
    """
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(mime)
    except (ValueError, TypeError, IndexError, LookupError) as error:
        logger.debug("message headers could not be parsed for recipient names: %s", error)
        return {}
    names: dict[str, str] = {}
    for header in ("From", "Sender", "To", "Cc", "Bcc", "Reply-To"):
        values = [str(value) for value in headers.get_all(header, [])]
        for raw_name, address in email.utils.getaddresses(values):
            name = decode_header_value(raw_name) if raw_name else ""
            if name and address:
                names.setdefault(address.lower(), name)
    return names


def _mailbox_value(address: str | None, name: str | None, names: Mapping[str, str]) -> str | None:
    """Return ``Name <address>``, the address alone when no name is known, or None."""
    if not address:
        return name
    name = name or names.get(address.lower())
    if not name or name.lower() == address.lower():
        return address
    return f"{name} <{address}>"


# Tantivy stores dates as nanoseconds in a signed 64-bit integer, so it rejects dates
# outside these bounds (tantivy.MIN_DATETIME and MAX_DATETIME in tantivy-py 0.27).
EARLIEST_DATE = dt.datetime(1677, 9, 22, tzinfo=dt.UTC)
LATEST_DATE = dt.datetime(2262, 4, 11, tzinfo=dt.UTC)


def index_date(value: Any) -> dt.datetime | None:
    """Return a datetime as a document stores it: in UTC, or None outside the storable range."""
    return _utc(value)


def _utc(value: Any) -> dt.datetime | None:
    """Return ``value`` in UTC, or None for a date the index cannot store.

    Mail clients write sent dates such as year 1 or 9999. Such a date is left out of the
    document, so date restrictions do not match the item, rather than failing it.
    """
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__} {value!r}")
    try:
        utc = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    except OverflowError:
        return None
    if not EARLIEST_DATE <= utc <= LATEST_DATE:
        logger.debug("date %s is outside the range the index stores; left out", utc)
        return None
    return utc


def item_size(value: Any) -> int | None:
    """Return a size in bytes as a document stores it: non-negative, or None."""
    if value is None:
        return None
    return max(int(value), 0)
