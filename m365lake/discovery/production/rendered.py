"""Render the natives of calendar, contacts and Teams families from Graph's JSON.

A series (master and exceptions) or a single event becomes one ``.ics``, a contact one
``.vcf``, and a Teams thread an ``.html`` page followed by the same messages as ``.json``.
The renderers live beside this module (``ics``, ``vcf``, ``teams_thread``). This module
reads each member's archived JSON, calls them, and fills the load file fields that make
sense per kind.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from m365lake.discovery.production.workload_rows import series_members, thread_members
from m365lake.errors import LakeError
from m365lake.lake import Lake

RECORD_TYPES: Mapping[str, str] = {
    "calendar": "Meeting",
    "contacts": "Contact",
    "teams": "Teams Thread",
}
THREAD_JSON_RECORD_TYPE = "Teams Thread JSON"


class RenderError(Exception):
    """A family's content could not be read or rendered; only that family fails."""


@dataclass(frozen=True)
class RenderedNative:
    """One native of a rendered family, with its load file fields."""

    name: str
    """The original-style file name: the subject, contact or thread name and extension."""
    extension: str
    content: bytes
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)
    header: str = ""
    """Text written before the native's extracted text."""


def _iso(moment: Any) -> str:
    if not isinstance(moment, datetime):
        return ""
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _renderer(module: str, name: str) -> Callable[..., bytes]:
    """Return a renderer function, or raise RenderError when it is not installed."""
    try:
        found = getattr(importlib.import_module(f"m365lake.discovery.production.{module}"), name)
    except (ModuleNotFoundError, AttributeError) as error:
        raise RenderError(
            f"m365lake.discovery.production.{module}.{name} is not available in this "
            f"installation ({error}), so this item has no native. Install a complete "
            "m365lake and export again"
        ) from error
    renderer: Callable[..., bytes] = found
    return renderer


def item_json(lake: Lake, row: Mapping[str, Any]) -> dict[str, Any]:
    """Return Graph's JSON of one archived version; RenderError when it cannot be read."""
    inline = row.get("json_inline")
    sha256 = row.get("json_sha256")
    try:
        if sha256 is not None:
            data = lake.read_content(str(sha256), bytes(inline) if inline is not None else None)
        elif inline is not None:
            data = bytes(inline)
        else:
            raise RenderError("Graph's JSON of this version was not archived")
        item = json.loads(data)
    except (LakeError, OSError, ValueError) as error:
        raise RenderError(f"Graph's JSON of this version could not be read: {error}") from error
    if not isinstance(item, dict):
        raise RenderError("Graph's JSON of this version is not an object")
    return item


def _address(value: Any) -> str:
    if not isinstance(value, Mapping):
        return ""
    email = value.get("emailAddress") if "emailAddress" in value else value
    if not isinstance(email, Mapping):
        return ""
    name = str(email.get("name") or "").strip()
    address = str(email.get("address") or "").strip()
    if name and address and name.lower() != address.lower():
        return f"{name} <{address}>"
    return address or name


def _attendees(item: Mapping[str, Any], kind: str) -> str:
    return "; ".join(
        _address(attendee)
        for attendee in item.get("attendees") or []
        if isinstance(attendee, Mapping) and str(attendee.get("type") or "").lower() == kind
    )


def _last_modified(members: Sequence[Mapping[str, Any]]) -> datetime | None:
    moments = [member["modified_at"] for member in members if member.get("modified_at")]
    return max(moments) if moments else None


def _header(pairs: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{label}: {value}" for label, value in pairs if value) + "\n\n"


def render_series(lake: Lake, head: Mapping[str, Any]) -> list[RenderedNative]:
    """Render a series with its exceptions, or a single event, as one ``.ics``."""
    members = series_members(lake, head) if head.get("event_type") == "seriesMaster" else []
    if not members:
        members = [dict(head)]
    items = [item_json(lake, row) for row in members]
    cancelled = members[0].get("cancelled_occurrences")
    if cancelled:
        # Graph v1.0 JSON does not list them; the backup derived them for the master row.
        items[0]["cancelledOccurrences"] = list(cancelled)
    content = _renderer("ics", "render_ics")(items)
    first, row = items[0], members[0]
    subject = row.get("subject") or first.get("subject") or ""
    organizer = _address(first.get("organizer"))
    fields = {
        "SUBJECT": subject,
        "FROM": organizer,
        "TO": _attendees(first, "required"),
        "CC": _attendees(first, "optional"),
        "DATESENT": _iso(row.get("created_at")),
        "DATECREATED": _iso(row.get("created_at")),
        "DATEMODIFIED": _iso(_last_modified(members)),
        "MESSAGEID": row.get("ical_uid") or "",
    }
    header = _header(
        [
            ("Subject", subject),
            ("Organizer", organizer),
            ("Required", fields["TO"]),
            ("Optional", fields["CC"]),
            ("Start", _iso(row.get("start_at"))),
            ("End", _iso(row.get("end_at"))),
            ("Location", row.get("location") or ""),
            ("Exceptions", str(len(members) - 1) if len(members) > 1 else ""),
        ]
    )
    return [
        RenderedNative(
            name=f"{subject or 'event'}.ics",
            extension=".ics",
            content=content,
            content_type="text/calendar",
            fields=fields,
            header=header,
        )
    ]


def render_contact(lake: Lake, head: Mapping[str, Any]) -> list[RenderedNative]:
    """Render a contact as one ``.vcf``."""
    item = item_json(lake, head)
    content = _renderer("vcf", "render_vcard")(item)
    name = head.get("display_name") or item.get("displayName") or ""
    fields = {
        "SUBJECT": name,
        "DATECREATED": _iso(head.get("created_at")),
        "DATEMODIFIED": _iso(head.get("modified_at")),
    }
    header = _header(
        [
            ("Name", name),
            ("Company", head.get("company_name") or ""),
            ("Email", "; ".join(head.get("email_addresses") or [])),
        ]
    )
    return [
        RenderedNative(
            name=f"{name or 'contact'}.vcf",
            extension=".vcf",
            content=content,
            content_type="text/vcard",
            fields=fields,
            header=header,
        )
    ]


def render_thread(lake: Lake, head: Mapping[str, Any]) -> list[RenderedNative]:
    """Render a Teams thread as ``.html`` and ``.json``, its messages in posting order.

    A message deleted in Teams is rendered from the version before its deletion, as the
    search index keeps it, and marked deleted: Graph returns it without its body since.
    """
    members = thread_members(lake, head) or [dict(head)]
    items = [item_json(lake, row) for row in members]
    deleted = {
        str(row["message_id"]): _iso(row["deleted_at"])
        for row in members
        if row.get("deleted_at") is not None
    }
    html = _renderer("teams_thread", "render_thread_html")(items, deleted=deleted)
    as_json = _renderer("teams_thread", "render_thread_json")(items, deleted=deleted)
    root = members[0]
    subject = root.get("subject") or ""
    sender = _address({"name": root.get("from_name"), "address": root.get("from_address")})
    fields = {
        "SUBJECT": subject,
        "FROM": sender,
        "DATESENT": _iso(root.get("created_at")),
        "DATECREATED": _iso(root.get("created_at")),
        "DATEMODIFIED": _iso(_last_modified(members)),
        "MESSAGEID": str(root.get("message_id") or ""),
        "CONVERSATIONID": f"{root.get('channel_id')}/{root.get('message_id')}",
    }
    header = _header(
        [
            ("Subject", subject),
            ("From", sender),
            ("Sent", fields["DATESENT"]),
            ("Messages", str(len(members))),
        ]
    )
    name = subject or f"thread {root.get('message_id')}"
    return [
        RenderedNative(f"{name}.html", ".html", html, "text/html", fields, header),
        RenderedNative(f"{name}.json", ".json", as_json, "application/json", dict(fields)),
    ]


RENDERERS: Mapping[str, Callable[[Lake, Mapping[str, Any]], list[RenderedNative]]] = {
    "calendar": render_series,
    "contacts": render_contact,
    "teams": render_thread,
}
