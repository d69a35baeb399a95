"""Calendar, contact and Teams rows with Graph JSON, committed as their backups commit them.

The rows follow the lake schemas: ``json_inline`` contains Graph's JSON of the version, or
``json_sha256`` names a blob when the JSON is stored apart. Event attachments and hosted
contents are blobs named by ``content_sha256``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
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
        if "json_sha256" not in extra:
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


NOW = T0 + 100 * DAY
HOUR = timedelta(hours=1)


class _Blobs:
    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.digests: dict[str, str] = {}

    def put(self, name: str, data: bytes) -> str:
        digest = self.lake.blobs.put(data)
        self.digests[name] = digest
        return digest


def seed_workloads(lake: Lake) -> dict[str, str]:
    """Commit events, contacts and channel messages beside the mail and files of ``lake``.

    Returns the SHA-256 of each blob written, by name: ``agenda`` (an attachment of
    Alice's kick-off), ``minutes`` (attached to two of Bob's events), ``big_json`` (the
    JSON of Alice's all-hands), ``picture`` and ``lobby_picture`` (hosted contents).
    """
    stored = _Blobs(lake)
    agenda = stored.put("agenda", b"%PDF-1.7 agenda of the kick-off " * 64)
    minutes = stored.put("minutes", b"%PDF-1.7 minutes shared by two events " * 64)
    big_json = json.dumps(
        event_json("e-big", "All hands", T0, T0 + HOUR) | {"body": {"content": "x" * 9000}}
    ).encode()
    stored.put("big_json", big_json)
    picture = stored.put("picture", b"\x89PNG picture pasted in General " * 64)
    lobby_picture = stored.put("lobby_picture", b"\x89PNG picture pasted in Lobby " * 64)
    with lake.begin(run_id="seed-outlook", kind="calendar", container=None) as tx:
        tx.write_rows(
            "events",
            [
                event("mb-alice", "e-kickoff", "created", T0, start=T0, end=T0 + HOUR),
                event("mb-alice", "e-kickoff", "updated", T0 + DAY, start=T0, end=T0 + HOUR),
                event(
                    "mb-alice",
                    "e-big",
                    "created",
                    T0,
                    start=T0,
                    end=T0 + HOUR,
                    json_sha256=stored.digests["big_json"],
                    size=len(big_json),
                ),
            ],
            partition={"mailbox_id": "mb-alice"},
        )
        tx.write_rows(
            "events",
            [
                event("mb-bob", "e-review", "created", T0, start=T0, end=T0 + HOUR),
                event("mb-bob", "e-review", "deleted", T0 + 2 * DAY, start=T0, end=T0 + HOUR),
                # Planned long ago for a date after NOW: its end has not passed.
                event("mb-bob", "e-offsite", "created", T0, start=NOW + DAY, end=NOW + DAY + HOUR),
                event(
                    "mb-bob",
                    "e-weekly",
                    "created",
                    T0,
                    start=T0,
                    end=T0 + HOUR,
                    event_type="seriesMaster",
                    recurrence=json.dumps(
                        {
                            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                            "range": {"type": "noEnd", "startDate": "2024-01-01"},
                        }
                    ),
                ),
                event(
                    "mb-bob",
                    "e-sprint",
                    "created",
                    T0,
                    start=T0,
                    end=T0 + HOUR,
                    event_type="seriesMaster",
                    recurrence=json.dumps(
                        {
                            "pattern": {"type": "daily", "interval": 1},
                            "range": {
                                "type": "endDate",
                                "startDate": "2024-01-01",
                                "endDate": "2024-01-12",
                            },
                        }
                    ),
                ),
                # Moved from T0 to after NOW: the first version expired, the second not.
                event("mb-bob", "e-moved", "created", T0, start=T0, end=T0 + HOUR),
                event(
                    "mb-bob",
                    "e-moved",
                    "updated",
                    T0 + DAY,
                    start=NOW + 5 * DAY,
                    end=NOW + 5 * DAY + HOUR,
                ),
            ],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.write_rows(
            "event_attachments",
            [
                event_attachment("mb-alice", "e-kickoff", "a1", T0, agenda, 2048),
                event_attachment("mb-alice", "e-kickoff", "a1", T0 + DAY, agenda, 2048),
            ],
            partition={"mailbox_id": "mb-alice"},
        )
        tx.write_rows(
            "event_attachments",
            [
                event_attachment("mb-bob", "e-review", "a2", T0, minutes, 2432),
                event_attachment("mb-bob", "e-moved", "a3", T0, minutes, 2432),
            ],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.write_rows(
            "contacts",
            [
                contact("mb-alice", "c-fabrikam", "created", T0),
                contact("mb-alice", "c-fabrikam", "updated", T0 + DAY, modified_at=T0 + DAY),
            ],
            partition={"mailbox_id": "mb-alice"},
        )
        tx.write_rows(
            "contacts",
            [
                contact("mb-bob", "c-litware", "created", T0),
                contact("mb-bob", "c-recent", "created", NOW, modified_at=NOW - DAY),
            ],
            partition={"mailbox_id": "mb-bob"},
        )
        tx.commit()
    with lake.begin(run_id="seed-teams", kind="teams", container=None) as tx:
        write_teams_directory(tx)
        tx.write_rows(
            "channel_messages",
            [
                channel_message(TEAM_ID, GENERAL, "1700000000001", "created", T0),
                channel_message(
                    TEAM_ID,
                    GENERAL,
                    "1700000000001",
                    "updated",
                    T0 + DAY,
                    text="Post edited",
                    edited_at=T0 + DAY,
                ),
                channel_message(
                    TEAM_ID,
                    GENERAL,
                    "1700000000002",
                    "created",
                    T0,
                    reply_to_id="1700000000001",
                ),
            ],
            partition={"team_id": TEAM_ID, "channel_id": GENERAL},
        )
        tx.write_rows(
            "channel_messages",
            [channel_message(TEAM_ID, DESIGN, "1700000000001", "created", T0)],
            partition={"team_id": TEAM_ID, "channel_id": DESIGN},
        )
        tx.write_rows(
            "channel_messages",
            [channel_message(OTHER_TEAM_ID, LOBBY, "1700000000009", "created", T0)],
            partition={"team_id": OTHER_TEAM_ID, "channel_id": LOBBY},
        )
        tx.write_rows(
            "channel_message_parts",
            [
                hosted_content(TEAM_ID, GENERAL, "1700000000001", "h1", T0, picture, 1984),
                hosted_content(TEAM_ID, GENERAL, "1700000000001", "h1", T0 + DAY, picture, 1984),
            ],
            partition={"team_id": TEAM_ID, "channel_id": GENERAL},
        )
        tx.write_rows(
            "channel_message_parts",
            [hosted_content(OTHER_TEAM_ID, LOBBY, "1700000000009", "h9", T0, lobby_picture, 1920)],
            partition={"team_id": OTHER_TEAM_ID, "channel_id": LOBBY},
        )
        tx.commit()
    return stored.digests
