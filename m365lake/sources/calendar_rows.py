"""Rows for the calendar tables, built from Graph's calendar, event and attachment JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from m365lake.lake import ContentRef
from m365lake.recurrence import to_utc
from m365lake.sources.rows import now_utc, parse_graph_time


def event_json_bytes(event: dict[str, Any]) -> bytes:
    """Return the JSON kept for one event version: Graph's object, keys sorted, UTF-8."""
    return json.dumps(event, sort_keys=True, ensure_ascii=False).encode("utf-8")


def parse_date_time_zone(value: Any) -> datetime | None:
    """Return the UTC instant of a Graph ``dateTimeTimeZone``, or None if it is unusable."""
    if not isinstance(value, dict) or not value.get("dateTime"):
        return None
    text = str(value["dateTime"]).rstrip("Z")
    head, dot, fraction = text.partition(".")
    # Graph writes seven fractional digits; Python reads at most six.
    text = f"{head}.{fraction[:6]}" if dot else head
    try:
        local = datetime.fromisoformat(text)
        if local.tzinfo is not None:
            return local.astimezone(UTC)
        return to_utc(local, str(value.get("timeZone") or "UTC"))
    except ValueError:
        return None


def _address(entry: Any) -> tuple[str | None, str | None]:
    email = (entry or {}).get("emailAddress") or {}
    return email.get("address"), email.get("name")


def _location(event: dict[str, Any]) -> str | None:
    location = event.get("location") or {}
    return location.get("displayName") or None


def event_row(
    *,
    mailbox_id: str,
    event: dict[str, Any],
    calendar_id: str,
    change: str,
    run_id: str,
    content: ContentRef,
    attachment_count: int | None,
    cancelled_occurrences: list[str],
) -> dict[str, Any]:
    """Build one captured version of an event; ``content`` is its JSON."""
    organizer_address, organizer_name = _address(event.get("organizer"))
    attendees = [_address(entry)[0] for entry in event.get("attendees") or []]
    recurrence = event.get("recurrence")
    return {
        "mailbox_id": mailbox_id,
        "event_id": event["id"],
        "change": change,
        "captured_at": now_utc(),
        "run_id": run_id,
        "deleted_at": None,
        "calendar_id": calendar_id,
        "event_type": event.get("type"),
        "series_master_id": event.get("seriesMasterId"),
        "ical_uid": event.get("iCalUId"),
        "original_start": parse_graph_time(event.get("originalStart")),
        "subject": event.get("subject"),
        "organizer_address": organizer_address,
        "organizer_name": organizer_name,
        "attendee_addresses": [address for address in attendees if address],
        "start_at": parse_date_time_zone(event.get("start")),
        "end_at": parse_date_time_zone(event.get("end")),
        "start_timezone": event.get("originalStartTimeZone"),
        "end_timezone": event.get("originalEndTimeZone"),
        "is_all_day": event.get("isAllDay"),
        "is_cancelled": event.get("isCancelled"),
        "is_online_meeting": event.get("isOnlineMeeting"),
        "location": _location(event),
        "recurrence": json.dumps(recurrence, sort_keys=True) if recurrence else None,
        "cancelled_occurrences": cancelled_occurrences,
        "sensitivity": event.get("sensitivity"),
        "show_as": event.get("showAs"),
        "importance": event.get("importance"),
        "categories": [str(name) for name in event.get("categories") or []],
        "has_attachments": event.get("hasAttachments"),
        "attachment_count": attachment_count,
        "body_content_type": (event.get("body") or {}).get("contentType"),
        "created_at": parse_graph_time(event.get("createdDateTime")),
        "modified_at": parse_graph_time(event.get("lastModifiedDateTime")),
        "change_key": event.get("changeKey"),
        "size": content.size,
        "json_sha256": content.sha256,
        "json_inline": content.inline,
    }


def event_deletion_row(
    *,
    mailbox_id: str,
    event_id: str,
    calendar_id: str | None,
    event_type: str | None,
    series_master_id: str | None,
    run_id: str,
) -> dict[str, Any]:
    """Build the version that records when an event was found gone (identity only)."""
    deleted_at = now_utc()
    return {
        "mailbox_id": mailbox_id,
        "event_id": event_id,
        "change": "deleted",
        "captured_at": deleted_at,
        "run_id": run_id,
        "deleted_at": deleted_at,
        "calendar_id": calendar_id,
        "event_type": event_type,
        "series_master_id": series_master_id,
        "attendee_addresses": [],
        "categories": [],
        "cancelled_occurrences": [],
    }


def calendar_row(
    *, mailbox_id: str, calendar: dict[str, Any], change: str, run_id: str
) -> dict[str, Any]:
    captured_at = now_utc()
    owner = calendar.get("owner") or {}
    return {
        "mailbox_id": mailbox_id,
        "calendar_id": calendar["id"],
        "change": change,
        "captured_at": captured_at,
        "run_id": run_id,
        "deleted_at": captured_at if change == "deleted" else None,
        "name": calendar.get("name"),
        "color": calendar.get("color"),
        "is_default": calendar.get("isDefaultCalendar"),
        "can_edit": calendar.get("canEdit"),
        "owner_address": owner.get("address"),
        "owner_name": owner.get("name"),
        "change_key": calendar.get("changeKey"),
    }


def attachment_row(
    *,
    mailbox_id: str,
    event_id: str,
    attachment: dict[str, Any],
    content_sha256: str | None,
    run_id: str,
) -> dict[str, Any]:
    kind = str(attachment.get("@odata.type") or "").rsplit(".", 1)[-1] or None
    return {
        "mailbox_id": mailbox_id,
        "event_id": event_id,
        "attachment_id": attachment["id"],
        "captured_at": now_utc(),
        "run_id": run_id,
        "kind": kind,
        "name": attachment.get("name"),
        "content_type": attachment.get("contentType"),
        "size": attachment.get("size"),
        "is_inline": attachment.get("isInline"),
        "content_id": attachment.get("contentId"),
        "content_sha256": content_sha256,
    }
