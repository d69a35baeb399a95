"""Calendar, contact and Teams rows with Graph JSON, committed as their backups commit them.

The rows follow the lake schemas: ``json_inline`` contains Graph's JSON of the version, or
``json_sha256`` names a blob when the JSON is stored apart. Event attachments and hosted
contents are blobs named by ``content_sha256``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from m365lake.lake import Lake, Transaction
from tests.unit.discovery.lake_fixture import DAY, T0

TEAM_ID = "c5d0e4f8-93a1-4f53-9a0e-1b2a3c4d5e6f"
TEAM_NAME = "Project Falcon"
OTHER_TEAM_ID = "0b7e2c1d-55aa-4c1e-8f00-9e8d7c6b5a40"
OTHER_TEAM_NAME = "Facilities"
GENERAL = "19:3a7c1b2e9f@thread.tacv2"
DESIGN = "19:8d2e4f6a10@thread.tacv2"
LOBBY = "19:55aa77cc99@thread.tacv2"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.0000000")


def event_json(event_id: str, subject: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Return an event as ``GET /users/{id}/events/{id}`` returns it."""
    return {
        "id": event_id,
        "subject": subject,
        "type": "singleInstance",
        "start": {"dateTime": _iso(start), "timeZone": "UTC"},
        "end": {"dateTime": _iso(end), "timeZone": "UTC"},
        "organizer": {"emailAddress": {"name": "Alice", "address": "alice@contoso.example"}},
        "attendees": [
            {
                "type": "required",
                "status": {"response": "accepted", "time": _iso(start - DAY)},
                "emailAddress": {"name": "Bob", "address": "bob@contoso.example"},
            }
        ],
        "body": {"contentType": "html", "content": f"<p>Agenda for {subject}</p>"},
        "hasAttachments": False,
    }


def event(
    mailbox: str,
    event_id: str,
    change: str,
    captured: datetime,
    *,
    start: datetime,
    end: datetime,
    **extra: Any,
) -> dict[str, Any]:
    """Return an ``events`` row of one captured version."""
    subject = extra.pop("subject", f"Meeting {event_id}")
    row: dict[str, Any] = {
        "mailbox_id": mailbox,
        "event_id": event_id,
        "change": change,
        "captured_at": captured,
        "calendar_id": "cal-default",
        "event_type": "singleInstance",
        "subject": subject,
        "organizer_address": "alice@contoso.example",
        "start_at": start,
        "end_at": end,
        "start_timezone": "UTC",
        "end_timezone": "UTC",
    }
    if change == "deleted":
        row["deleted_at"] = captured
    else:
        body = json.dumps(event_json(event_id, subject, start, end)).encode()
        row["json_inline"] = body
        row["size"] = len(body)
    row.update(extra)
    return row


def event_attachment(
    mailbox: str, event_id: str, attachment_id: str, captured: datetime, digest: str, size: int
) -> dict[str, Any]:
    return {
        "mailbox_id": mailbox,
        "event_id": event_id,
        "attachment_id": attachment_id,
        "captured_at": captured,
        "kind": "file",
        "name": f"{attachment_id}.pdf",
        "content_type": "application/pdf",
        "size": size,
        "is_inline": False,
        "content_sha256": digest,
    }


def contact(
    mailbox: str, contact_id: str, change: str, captured: datetime, **extra: Any
) -> dict[str, Any]:
    """Return a ``contacts`` row of one captured version."""
    modified = extra.pop("modified_at", T0)
    name = extra.pop("display_name", f"Contact {contact_id}")
    row: dict[str, Any] = {
        "mailbox_id": mailbox,
        "contact_id": contact_id,
        "change": change,
        "captured_at": captured,
        "folder_id": "contacts",
        "display_name": name,
        "email_addresses": [f"{contact_id}@fabrikam.example"],
        "created_at": T0,
        "modified_at": modified,
    }
    if change == "deleted":
        row["deleted_at"] = captured
    else:
        body = json.dumps(
            {
                "id": contact_id,
                "displayName": name,
                "emailAddresses": [{"name": name, "address": f"{contact_id}@fabrikam.example"}],
                "lastModifiedDateTime": _iso(modified) + "Z",
            }
        ).encode()
        row["json_inline"] = body
        row["size"] = len(body)
    row.update(extra)
    return row


def channel_message(
    team: str, channel: str, message_id: str, change: str, captured: datetime, **extra: Any
) -> dict[str, Any]:
    """Return a ``channel_messages`` row of one captured version of a chatMessage."""
    created = extra.pop("created_at", T0)
    text = extra.pop("text", f"Post {message_id}")
    row: dict[str, Any] = {
        "team_id": team,
        "channel_id": channel,
        "message_id": message_id,
        "change": change,
        "captured_at": captured,
        "message_type": "message",
        "from_user_id": "u-alice",
        "from_name": "Alice",
        "created_at": created,
        "modified_at": created,
        "body_content_type": "html",
    }
    if change == "deleted":
        row["deleted_at"] = captured
    else:
        body = json.dumps(
            {
                "id": message_id,
                "messageType": "message",
                "createdDateTime": _iso(created) + "Z",
                "from": {"user": {"id": "u-alice", "displayName": "Alice"}},
                "body": {"contentType": "html", "content": f"<p>{text}</p>"},
                "channelIdentity": {"teamId": team, "channelId": channel},
            }
        ).encode()
        if "json_sha256" not in extra:
            row["json_inline"] = body
        row["size"] = len(body)
    row.update(extra)
    return row


def hosted_content(
    team: str,
    channel: str,
    message_id: str,
    part_id: str,
    captured: datetime,
    digest: str,
    size: int,
) -> dict[str, Any]:
    return {
        "team_id": team,
        "channel_id": channel,
        "message_id": message_id,
        "part_id": part_id,
        "captured_at": captured,
        "kind": "hostedContent",
        "content_type": "image/png",
        "size": size,
        "content_sha256": digest,
    }


def write_teams_directory(tx: Transaction) -> None:
    tx.write_rows(
        "teams",
        [
            {"team_id": TEAM_ID, "display_name": TEAM_NAME, "captured_at": T0},
            {"team_id": OTHER_TEAM_ID, "display_name": OTHER_TEAM_NAME, "captured_at": T0},
        ],
        partition={},
    )
    tx.write_rows(
        "channels",
        [
            {"team_id": TEAM_ID, "channel_id": GENERAL, "change": "created", "captured_at": T0},
            {"team_id": TEAM_ID, "channel_id": DESIGN, "change": "created", "captured_at": T0},
        ],
        partition={"team_id": TEAM_ID},
    )
    tx.write_rows(
        "channels",
        [{"team_id": OTHER_TEAM_ID, "channel_id": LOBBY, "change": "created", "captured_at": T0}],
        partition={"team_id": OTHER_TEAM_ID},
    )


def seed_teams_directory(lake: Lake) -> None:
    with lake.begin(run_id="seed-teams", kind="teams", container=None) as tx:
        write_teams_directory(tx)
        tx.commit()
