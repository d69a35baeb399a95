"""Graph JSON of calendars, events and event attachments, as the v1.0 routes return them."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

from m365lake.emulator import records
from m365lake.emulator.calendar_records import Calendar, EventAttachment, EventView
from m365lake.emulator.seed import SeedUser
from m365lake.recurrence import to_utc

_TAG = re.compile(r"<[^>]+>")

CALENDAR_PROPERTIES = frozenset(
    {
        "id",
        "name",
        "color",
        "hexColor",
        "isDefaultCalendar",
        "changeKey",
        "canShare",
        "canViewPrivateItems",
        "canEdit",
        "allowedOnlineMeetingProviders",
        "defaultOnlineMeetingProvider",
        "isTallyingResponses",
        "isRemovable",
        "owner",
    }
)


def graph_time(moment: datetime) -> str:
    """Format a naive UTC date-time as Graph's ``dateTime`` (seven fractional digits)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.0000000")


def offset_time(moment: datetime) -> str:
    """Format an aware date-time as Graph's DateTimeOffset in UTC, with ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def calendar_json(calendar: Calendar, owner: SeedUser) -> dict[str, Any]:
    change_key = records.change_key_for(calendar.id, calendar.modified_seq)
    return {
        "id": calendar.id,
        "name": calendar.name,
        "color": calendar.color,
        "hexColor": "",
        "isDefaultCalendar": calendar.is_default,
        "changeKey": change_key,
        "canShare": True,
        "canViewPrivateItems": True,
        "canEdit": True,
        "allowedOnlineMeetingProviders": ["teamsForBusiness"],
        "defaultOnlineMeetingProvider": "teamsForBusiness",
        "isTallyingResponses": True,
        "isRemovable": not calendar.is_default,
        "owner": {"name": owner.display_name, "address": owner.mail or owner.user_principal_name},
    }


def _organizer(view: EventView, owner: SeedUser) -> dict[str, Any]:
    organizer = view.overrides.get("organizer") or view.master.properties.get("organizer")
    if organizer:
        return dict(organizer)
    address = owner.mail or owner.user_principal_name
    return {"emailAddress": {"name": owner.display_name, "address": address}}


def _attendee(attendee: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": attendee.get("type") or "required",
        "status": attendee.get("status") or {"response": "none", "time": "0001-01-01T00:00:00Z"},
        "emailAddress": dict(attendee.get("emailAddress") or {}),
    }


def event_json(view: EventView, owner: SeedUser) -> dict[str, Any]:
    """Return every v1.0 property of one event view, times in UTC (Graph's default).

    NOTE: ``Prefer: outlook.timezone`` is not honoured; times are always served in UTC.
    """
    master = view.master
    properties = {**master.properties, **view.overrides}
    change_key = records.change_key_for(view.id, view.modified_seq)
    body = properties.get("body") or {"contentType": "text", "content": ""}
    text = _TAG.sub(" ", str(body.get("content") or ""))
    location = properties.get("location") or {"displayName": ""}
    locations = properties.get("locations")
    if locations is None:
        locations = [location] if location.get("displayName") else []
    organizer = _organizer(view, owner)
    owner_address = (owner.mail or owner.user_principal_name).lower()
    organizer_address = str((organizer.get("emailAddress") or {}).get("address") or "").lower()
    ical_uid = master.ical_uid
    if view.original_start is not None:
        ical_uid = records.derive_id("", master.ical_uid, view.original_start.isoformat())
    return {
        "@odata.etag": f'W/"{change_key}"',
        "id": view.id,
        "createdDateTime": offset_time(view.created_at),
        "lastModifiedDateTime": offset_time(view.modified_at),
        "changeKey": change_key,
        "categories": list(properties.get("categories") or []),
        "transactionId": None,
        "originalStartTimeZone": master.time_zone,
        "originalEndTimeZone": master.time_zone,
        "iCalUId": ical_uid,
        "reminderMinutesBeforeStart": properties.get("reminderMinutesBeforeStart", 15),
        "isReminderOn": properties.get("isReminderOn", True),
        "hasAttachments": bool(master.attachments) and view.kind != "occurrence",
        "subject": properties.get("subject") or "",
        "bodyPreview": " ".join(text.split())[:255],
        "importance": properties.get("importance") or "normal",
        "sensitivity": properties.get("sensitivity") or "normal",
        "isAllDay": bool(properties.get("isAllDay", False)),
        "isCancelled": False,
        "isOrganizer": organizer_address in ("", owner_address),
        "responseRequested": properties.get("responseRequested", True),
        "seriesMasterId": master.id if view.original_start is not None else None,
        "showAs": properties.get("showAs") or "busy",
        "type": view.kind,
        "webLink": "https://outlook.office365.com/owa/?itemid="
        + quote(view.id, safe="")
        + "&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": bool(properties.get("isOnlineMeeting", False)),
        "onlineMeetingProvider": "unknown",
        "allowNewTimeProposals": properties.get("allowNewTimeProposals", True),
        "isDraft": False,
        "hideAttendees": False,
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "body": {"contentType": body.get("contentType") or "text", "content": body.get("content")},
        "start": {"dateTime": graph_time(view.start_utc.replace(tzinfo=None)), "timeZone": "UTC"},
        "end": {"dateTime": graph_time(view.end_utc.replace(tzinfo=None)), "timeZone": "UTC"},
        **(
            {"originalStart": offset_time(_utc(view, view.original_start))}
            if view.original_start is not None
            else {}
        ),
        "location": dict(location),
        "locations": [dict(item) for item in locations],
        "recurrence": master.recurrence if view.kind == "seriesMaster" else None,
        "attendees": [_attendee(a) for a in properties.get("attendees") or []],
        "organizer": organizer,
        "onlineMeeting": None,
    }


def _utc(view: EventView, local: datetime) -> datetime:
    return to_utc(local, view.master.time_zone)


def attachment_json(attachment: EventAttachment, *, with_content: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": attachment.content_type,
        "id": attachment.id,
        "lastModifiedDateTime": offset_time(attachment.modified_at),
        "name": attachment.name,
        "contentType": attachment.content_type,
        "size": len(attachment.content),
        "isInline": attachment.is_inline,
        "contentId": None,
        "contentLocation": None,
    }
    if with_content:
        body["contentBytes"] = base64.b64encode(attachment.content).decode()
    return body
