"""Build the search documents of calendar events (``kind:meetings``) and contacts.

Both are read from Graph's JSON of the captured version, which the lake keeps whole, and
from the row's columns. Property names follow Purview's searchable email and contact
properties: an event's organizer is its ``from``, required attendees its ``to`` and
optional ones its ``cc``, as Exchange stores a meeting. ``start``, ``end``, ``location``,
``organizer`` and ``attendees`` are m365lake's own additions for meetings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from m365lake.search.documents import (
    CALENDAR_WORKLOAD,
    CONTACTS_KIND,
    CONTACTS_WORKLOAD,
    MEETINGS_KIND,
    Directory,
    DocumentBuilder,
    add_identity,
    add_issues,
    extraction_issue,
    index_date,
    item_size,
)
from m365lake.search.fields import SearchDocument

if TYPE_CHECKING:
    from m365lake.search.extract import Extraction


@dataclass(frozen=True)
class AttachmentContent:
    """An attachment's name and extracted text, or the reason its content is missing."""

    name: str | None
    extraction: Extraction | None
    problem: str | None = None
    """The reason ``extraction`` is None, e.g. the content was not archived."""


def _mailbox_custodian(builder: DocumentBuilder, mailbox_id: str, directory: Directory) -> None:
    mailbox = directory.mailboxes.get(mailbox_id)
    upn = mailbox.user_principal_name if mailbox else mailbox_id
    builder.add("custodian_key", upn)
    builder.add("location_key", upn)
    builder.add("custodian", upn, mailbox.display_name if mailbox else None)


def email_address_value(value: Any) -> str | None:
    """Return ``Name <address>`` (or either alone) of a Graph ``emailAddress`` object."""
    if not isinstance(value, Mapping):
        return None
    name = str(value.get("name") or "").strip()
    address = str(value.get("address") or "").strip()
    if name and address and name.lower() != address.lower():
        return f"{name} <{address}>"
    return address or name or None


def body_content(item: Mapping[str, Any]) -> tuple[str, str] | None:
    """Return (content type, content) of a Graph ``body``, or None when it is empty."""
    body = item.get("body")
    if not isinstance(body, Mapping) or not body.get("content"):
        return None
    return str(body.get("contentType") or "text").lower(), str(body["content"])


def _body_text(
    builder: DocumentBuilder, body: Extraction | str | None, issues: list[str], part: str = "body"
) -> None:
    if body is None:
        return
    if isinstance(body, str):
        builder.add("body", body)
        return
    builder.add("body", body.text)
    issue = extraction_issue(part, body)
    if issue:
        issues.append(issue)


def event_document(
    row: Mapping[str, Any],
    item: Mapping[str, Any] | None,
    *,
    body: Extraction | str | None,
    attachments: Sequence[AttachmentContent] = (),
    directory: Directory,
    deleted_at: dt.datetime | None = None,
    content_issue: str | None = None,
) -> SearchDocument:
    """Build the document of one captured event version.

    ``item`` is Graph's JSON of the event, or None when it could not be read (then
    ``content_issue`` gives the reason). ``body`` is the body's text: extracted from HTML, given
    as plain text, or None for an event without a body. ``attachments`` are the
    attachments that the same backup run captured.
    """
    builder = DocumentBuilder()
    mailbox_id = str(row["mailbox_id"])
    add_identity(
        builder,
        workload=CALENDAR_WORKLOAD,
        container_id=mailbox_id,
        item_id=str(row["event_id"]),
        row=row,
        deleted_at=deleted_at,
    )
    _mailbox_custodian(builder, mailbox_id, directory)
    builder.add("kind", MEETINGS_KIND)
    builder.add("size", item_size(row.get("size")))
    item = item or {}

    organizer = email_address_value((item.get("organizer") or {}).get("emailAddress"))
    if organizer is None:
        organizer = email_address_value(
            {"name": row.get("organizer_name"), "address": row.get("organizer_address")}
        )
    required, optional, everyone = _attendees(item, row)
    builder.add("from", organizer)
    builder.add("organizer", organizer)
    builder.add_all("to", required)
    builder.add_all("cc", optional)
    builder.add_all("attendees", everyone)
    builder.add_all("recipients", everyone)
    builder.add_all("participants", [organizer, *everyone])
    builder.add("subject", row.get("subject") or item.get("subject"))
    builder.add("location", row.get("location"))
    for place in item.get("locations") or []:
        if isinstance(place, Mapping) and place.get("displayName") != row.get("location"):
            builder.add("location", place.get("displayName"))
    builder.add("start", index_date(row.get("start_at")))
    builder.add("end", index_date(row.get("end_at")))
    builder.add("sent", index_date(row.get("created_at")))
    builder.add("created", index_date(row.get("created_at")))
    builder.add("lastmodifiedtime", index_date(row.get("modified_at")))
    builder.add("importance", (row.get("importance") or "").lower() or None)
    builder.add_all("category", row.get("categories") or [])

    issues: list[str] = []
    if content_issue:
        issues.append(f"event: {content_issue}")
    _body_text(builder, body, issues)
    has_attachments = row.get("has_attachments")
    builder.add("hasattachment", bool(attachments) if has_attachments is None else has_attachments)
    _attachment_texts(builder, attachments, issues)
    add_issues(builder, issues)
    return builder.values


def _attendees(
    item: Mapping[str, Any], row: Mapping[str, Any]
) -> tuple[list[str], list[str], list[str]]:
    """Return required, optional and all attendees, from the JSON, else the row's addresses."""
    required: list[str] = []
    optional: list[str] = []
    everyone: list[str] = []
    for attendee in item.get("attendees") or []:
        if not isinstance(attendee, Mapping):
            continue
        value = email_address_value(attendee.get("emailAddress"))
        if value is None:
            continue
        everyone.append(value)
        kind = str(attendee.get("type") or "").lower()
        if kind == "required":
            required.append(value)
        elif kind == "optional":
            optional.append(value)
    if not everyone:
        everyone = [str(address) for address in row.get("attendee_addresses") or [] if address]
    return required, optional, everyone


def _attachment_texts(
    builder: DocumentBuilder,
    attachments: Iterable[AttachmentContent],
    issues: list[str],
) -> None:
    for number, attachment in enumerate(attachments, start=1):
        builder.add("attachmentnames", attachment.name)
        label = f"attachment {attachment.name or f'#{number}'}"
        if attachment.extraction is None:
            issues.append(f"{label}: {attachment.problem or 'the content was not archived'}")
            continue
        builder.add("attachment_text", attachment.extraction.text)
        issue = extraction_issue(label, attachment.extraction)
        if issue:
            issues.append(issue)


def contact_document(
    row: Mapping[str, Any],
    item: Mapping[str, Any] | None,
    *,
    directory: Directory,
    deleted_at: dt.datetime | None = None,
    content_issue: str | None = None,
) -> SearchDocument:
    """Build the document of one captured contact version.

    ``item`` is Graph's JSON of the contact, or None when it could not be read (then
    ``content_issue`` gives the reason and only the row's columns are indexed).
    """
    builder = DocumentBuilder()
    mailbox_id = str(row["mailbox_id"])
    add_identity(
        builder,
        workload=CONTACTS_WORKLOAD,
        container_id=mailbox_id,
        item_id=str(row["contact_id"]),
        row=row,
        deleted_at=deleted_at,
    )
    _mailbox_custodian(builder, mailbox_id, directory)
    builder.add("kind", CONTACTS_KIND)
    builder.add("size", item_size(row.get("size")))
    item = item or {}

    builder.add("displayname", row.get("display_name") or item.get("displayName"))
    builder.add("givenname", row.get("given_name") or item.get("givenName"))
    builder.add("surname", row.get("surname") or item.get("surname"))
    builder.add("nickname", item.get("nickName"))
    builder.add("fileas", item.get("fileAs"))
    builder.add("companyname", row.get("company_name") or item.get("companyName"))
    builder.add("jobtitle", row.get("job_title") or item.get("jobTitle"))
    builder.add("officelocation", item.get("officeLocation"))
    builder.add("manager", item.get("manager"))
    addresses = [email_address_value(entry) for entry in item.get("emailAddresses") or []]
    if not any(addresses):
        addresses = list(row.get("email_addresses") or [])
    builder.add_all("emailaddress", addresses)
    builder.add_all("imaddress", item.get("imAddresses") or [])
    builder.add_all("businessphone", item.get("businessPhones") or [])
    builder.add_all("homephone", item.get("homePhones") or [])
    builder.add("mobilephone", item.get("mobilePhone"))
    if not item:
        builder.add_all("businessphone", row.get("phone_numbers") or [])
    for name, key in (
        ("businessaddress", "businessAddress"),
        ("homeaddress", "homeAddress"),
        ("otheraddress", "otherAddress"),
    ):
        builder.add(name, postal_address(item.get(key)))
    builder.add("body", row.get("personal_notes") or item.get("personalNotes"))
    builder.add("folder", row.get("folder_path"))
    builder.add_all("category", row.get("categories") or [])
    builder.add("created", index_date(row.get("created_at")))
    builder.add("lastmodifiedtime", index_date(row.get("modified_at")))
    add_issues(builder, [f"contact: {content_issue}"] if content_issue else [])
    return builder.values


def postal_address(value: Any) -> str | None:
    """Return a Graph ``physicalAddress`` as one line, or None when it has no part."""
    if not isinstance(value, Mapping):
        return None
    keys = ("street", "city", "state", "postalCode", "countryOrRegion")
    parts = [str(value[key]).strip() for key in keys if value.get(key)]
    return ", ".join(part for part in parts if part) or None
