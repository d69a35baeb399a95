"""A lake with calendar events, contacts and Teams channel messages, written directly.

Rows carry Graph's JSON of each version as a backup stores it: inline in Parquet, or as a
blob for the larger items. Alice's mailbox has a weekly series with one changed
occurrence, a single meeting with an attachment, and two contacts. The Finance team's
General channel has a thread of a root post and three replies, one of which was deleted
in Teams after it was first captured.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from m365lake.lake import Lake

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

ALICE_MAILBOX = "mb-alice"
ALICE = "alice@contoso.example"
BOB = "bob@contoso.example"
TEAM = "team-finance"
TEAM_NAME = "Finance"
TEAM_URL = "https://teams.microsoft.com/l/team/19%3afinance%40thread.tacv2"
CHANNEL = "19:general@thread.tacv2"
CHANNEL_NAME = "General"

SERIES = "evt-series"
EXCEPTION = "evt-series-exc"
SINGLE = "evt-single"
CONTACT_LUCIA = "ct-lucia"
CONTACT_KENJI = "ct-kenji"
ROOT = "1709542800000"
REPLY_ONE = "1709542860000"
REPLY_TWO = "1709542920000"
REPLY_DELETED = "1709542980000"

# Words that occur in exactly one item, so a search for one names that item.
SERIES_WORD = "budgetsync"
SINGLE_WORD = "wharfside"
ATTACHMENT_WORD = "quillmoss"
CONTACT_NOTE_WORD = "marzipan"
REPLY_PHRASE = "the ledger closes on friday"
DELETED_WORD = "snowglobe"
ROOT_WORD = "kickoff"


def _address(name: str, address: str) -> dict[str, str]:
    return {"name": name, "address": address}


def event_json(
    event_id: str,
    subject: str,
    body_html: str,
    start: datetime,
    *,
    event_type: str = "singleInstance",
    series_master_id: str | None = None,
    recurrence: dict[str, Any] | None = None,
    attachments: bool = False,
) -> dict[str, Any]:
    return {
        "@odata.etag": f'W/"{event_id}-etag"',
        "id": event_id,
        "createdDateTime": "2024-03-01T08:00:00Z",
        "lastModifiedDateTime": "2024-03-01T08:30:00Z",
        "changeKey": f"{event_id}-ck",
        "categories": ["Finance"],
        "iCalUId": f"040000008200E00074C5B7101A82E008{event_id}",
        "subject": subject,
        "bodyPreview": "",
        "importance": "normal",
        "sensitivity": "normal",
        "isAllDay": False,
        "isCancelled": False,
        "isOrganizer": True,
        "showAs": "busy",
        "type": event_type,
        "seriesMasterId": series_master_id,
        "hasAttachments": attachments,
        "body": {"contentType": "html", "content": body_html},
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
        "end": {
            "dateTime": (start + HOUR).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
            "timeZone": "UTC",
        },
        "location": {"displayName": "Harbour Room", "locationType": "default"},
        "locations": [{"displayName": "Harbour Room", "locationType": "default"}],
        "recurrence": recurrence,
        "attendees": [
            {
                "type": "required",
                "status": {"response": "accepted", "time": "2024-03-01T09:00:00Z"},
                "emailAddress": _address("Bob Kline", BOB),
            },
            {
                "type": "optional",
                "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                "emailAddress": _address("Lucía Ortega", "lucia.ortega@adatum.example"),
            },
        ],
        "organizer": {"emailAddress": _address("Alice Park", ALICE)},
    }


def event_row(item: dict[str, Any], captured: datetime, lake: Lake) -> dict[str, Any]:
    data = json.dumps(item).encode("utf-8")
    stored = lake.store_content(data)
    start = datetime.fromisoformat(item["start"]["dateTime"][:19]).replace(tzinfo=UTC)
    return {
        "mailbox_id": ALICE_MAILBOX,
        "event_id": item["id"],
        "change": "created",
        "captured_at": captured,
        "calendar_id": "cal-default",
        "event_type": item["type"],
        "series_master_id": item["seriesMasterId"],
        "ical_uid": item["iCalUId"],
        "subject": item["subject"],
        "organizer_address": ALICE,
        "organizer_name": "Alice Park",
        "attendee_addresses": [entry["emailAddress"]["address"] for entry in item["attendees"]],
        "start_at": start,
        "end_at": start + HOUR,
        "start_timezone": "UTC",
        "end_timezone": "UTC",
        "is_all_day": False,
        "is_cancelled": False,
        "is_online_meeting": False,
        "location": item["location"]["displayName"],
        "recurrence": json.dumps(item["recurrence"]) if item["recurrence"] else None,
        "importance": "normal",
        "categories": item["categories"],
        "has_attachments": item["hasAttachments"],
        "attachment_count": 1 if item["hasAttachments"] else 0,
        "body_content_type": "html",
        "created_at": datetime(2024, 3, 1, 8, 0, tzinfo=UTC),
        "modified_at": datetime(2024, 3, 1, 8, 30, tzinfo=UTC),
        "size": len(data),
        "json_sha256": stored.sha256,
        "json_inline": stored.inline,
    }


WEEKLY = {
    "pattern": {
        "type": "weekly",
        "interval": 1,
        "daysOfWeek": ["monday"],
        "firstDayOfWeek": "sunday",
    },
    "range": {"type": "numbered", "startDate": "2024-03-04", "numberOfOccurrences": 4},
}


def contact_json(
    contact_id: str, given: str, surname: str, company: str, **extra: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": contact_id,
        "createdDateTime": "2024-02-01T10:00:00Z",
        "lastModifiedDateTime": "2024-02-02T10:00:00Z",
        "changeKey": f"{contact_id}-ck",
        "categories": [],
        "parentFolderId": "contacts-root",
        "displayName": f"{given} {surname}",
        "givenName": given,
        "surname": surname,
        "nickName": None,
        "fileAs": f"{surname}, {given}",
        "companyName": company,
        "jobTitle": "Controller",
        "officeLocation": "Building 4",
        "manager": None,
        "emailAddresses": [
            {"name": f"{given} {surname}", "address": f"{given.lower()}@{company.lower()}.example"}
        ],
        "imAddresses": [],
        "businessPhones": ["+1 425 555 0100"],
        "homePhones": [],
        "mobilePhone": "+1 425 555 0199",
        "businessAddress": {
            "street": "1 Harbour Way",
            "city": "Seattle",
            "state": "WA",
            "countryOrRegion": "United States",
            "postalCode": "98101",
        },
        "homeAddress": {},
        "otherAddress": {},
        "personalNotes": "",
    }
    item.update(extra)
    return item


def contact_row(item: dict[str, Any], captured: datetime, lake: Lake) -> dict[str, Any]:
    data = json.dumps(item).encode("utf-8")
    stored = lake.store_content(data)
    return {
        "mailbox_id": ALICE_MAILBOX,
        "contact_id": item["id"],
        "change": "created",
        "captured_at": captured,
        "folder_id": "contacts-root",
        "folder_path": "Contacts",
        "display_name": item["displayName"],
        "given_name": item["givenName"],
        "surname": item["surname"],
        "company_name": item["companyName"],
        "job_title": item["jobTitle"],
        "email_addresses": [entry["address"] for entry in item["emailAddresses"]],
        "phone_numbers": item["businessPhones"],
        "categories": [],
        "personal_notes": item["personalNotes"] or None,
        "created_at": datetime(2024, 2, 1, 10, 0, tzinfo=UTC),
        "modified_at": datetime(2024, 2, 2, 10, 0, tzinfo=UTC),
        "size": len(data),
        "json_sha256": stored.sha256,
        "json_inline": stored.inline,
    }


def message_json(
    message_id: str,
    html: str,
    *,
    reply_to: str | None,
    sender: tuple[str, str],
    subject: str | None = None,
    mentions: list[str] = (),  # type: ignore[assignment]
    deleted: datetime | None = None,
) -> dict[str, Any]:
    created = datetime.fromtimestamp(int(message_id) / 1000, tz=UTC)
    return {
        "id": message_id,
        "replyToId": reply_to,
        "etag": message_id,
        "messageType": "message",
        "createdDateTime": created.isoformat().replace("+00:00", "Z"),
        "lastModifiedDateTime": (deleted or created).isoformat().replace("+00:00", "Z"),
        "lastEditedDateTime": None,
        "deletedDateTime": deleted.isoformat().replace("+00:00", "Z") if deleted else None,
        "subject": subject,
        "summary": None,
        "chatId": None,
        "importance": "normal",
        "locale": "en-us",
        "webUrl": f"https://teams.microsoft.com/l/message/{CHANNEL}/{message_id}",
        "channelIdentity": {"teamId": TEAM, "channelId": CHANNEL},
        "from": {
            "application": None,
            "device": None,
            "user": {
                "@odata.type": "#microsoft.graph.teamworkUserIdentity",
                "id": sender[1],
                "displayName": sender[0],
                "userIdentityType": "aadUser",
            },
        },
        "body": {"contentType": "html", "content": "" if deleted else html},
        "attachments": [],
        "mentions": [
            {
                "id": number,
                "mentionText": name,
                "mentioned": {"user": {"id": f"user-{number}", "displayName": name}},
            }
            for number, name in enumerate(mentions)
        ],
        "reactions": [],
    }


def message_row(
    item: dict[str, Any], captured: datetime, lake: Lake, *, address: str, change: str = "created"
) -> dict[str, Any]:
    data = json.dumps(item).encode("utf-8")
    stored = lake.store_content(data)
    created = datetime.fromisoformat(item["createdDateTime"].replace("Z", "+00:00"))
    deleted = item["deletedDateTime"]
    return {
        "team_id": TEAM,
        "channel_id": CHANNEL,
        "message_id": item["id"],
        "change": change,
        "captured_at": captured,
        "reply_to_id": item["replyToId"],
        "message_type": item["messageType"],
        "subject": item["subject"],
        "importance": item["importance"],
        "from_user_id": item["from"]["user"]["id"],
        "from_name": item["from"]["user"]["displayName"],
        "from_address": address,
        "created_at": created,
        "modified_at": datetime.fromisoformat(item["lastModifiedDateTime"].replace("Z", "+00:00")),
        "soft_deleted_at": (
            datetime.fromisoformat(deleted.replace("Z", "+00:00")) if deleted else None
        ),
        "body_content_type": "html",
        "mentions": [mention["mentionText"] for mention in item["mentions"]],
        "reaction_count": 0,
        "attachment_count": 0,
        "hosted_content_count": 0,
        "web_url": item["webUrl"],
        "etag": item["etag"],
        "size": len(data),
        "json_sha256": stored.sha256,
        "json_inline": stored.inline,
    }


ALICE_SENDER = ("Alice Park", "user-alice")
BOB_SENDER = ("Bob Kline", "user-bob")


def seed_workloads(lake: Lake) -> None:
    """Commit the directory rows, then the events, contacts and channel messages."""
    with lake.begin(run_id="seed-directory", kind="directory", container=None) as tx:
        tx.write_rows(
            "mailboxes",
            [{"mailbox_id": ALICE_MAILBOX, "user_principal_name": ALICE, "display_name": "Alice"}],
            partition={},
        )
        tx.write_rows(
            "teams",
            [{"team_id": TEAM, "display_name": TEAM_NAME, "web_url": TEAM_URL}],
            partition={},
        )
        tx.write_rows(
            "channels",
            [
                {
                    "team_id": TEAM,
                    "channel_id": CHANNEL,
                    "change": "created",
                    "display_name": CHANNEL_NAME,
                    "membership_type": "standard",
                }
            ],
            partition={"team_id": TEAM},
        )
        tx.commit()

    seed_calendar(lake)
    seed_contacts(lake)
    seed_channel(lake)
    delete_reply(lake)


def seed_calendar(lake: Lake) -> None:
    series = event_json(
        SERIES,
        "Weekly budget sync",
        f"<html><body><p>Standing {SERIES_WORD} for the quarter.</p></body></html>",
        T0,
        event_type="seriesMaster",
        recurrence=WEEKLY,
    )
    exception = event_json(
        EXCEPTION,
        "Weekly budget sync (moved)",
        f"<html><body><p>Moved {SERIES_WORD} to the afternoon.</p></body></html>",
        T0 + 7 * DAY + 5 * HOUR,
        event_type="exception",
        series_master_id=SERIES,
    )
    single = event_json(
        SINGLE,
        "Audit walkthrough",
        f"<html><body><p>Meet at the <b>{SINGLE_WORD}</b> office.</p></body></html>",
        T0 + 2 * DAY,
        attachments=True,
    )
    attachment = f"Agenda: {ATTACHMENT_WORD} review\n".encode()
    # ``event_attachments`` has no inline column: attachment content is always a blob.
    attachment_sha256 = lake.blobs.put(attachment)
    with lake.begin(run_id="run-calendar", kind="calendar", container=ALICE_MAILBOX) as tx:
        tx.write_rows(
            "events",
            [event_row(item, T0 - DAY, lake) for item in (series, exception, single)],
            partition={"mailbox_id": ALICE_MAILBOX},
        )
        tx.write_rows(
            "event_attachments",
            [
                {
                    "mailbox_id": ALICE_MAILBOX,
                    "event_id": SINGLE,
                    "attachment_id": "att-1",
                    "captured_at": T0 - DAY,
                    "kind": "file",
                    "name": "agenda.txt",
                    "content_type": "text/plain",
                    "size": len(attachment),
                    "is_inline": False,
                    "content_sha256": attachment_sha256,
                }
            ],
            partition={"mailbox_id": ALICE_MAILBOX},
        )
        tx.commit()


def seed_contacts(lake: Lake) -> None:
    lucia = contact_json(
        CONTACT_LUCIA,
        "Lucía",
        "Ortega",
        "Adatum",
        personalNotes=f"Prefers {CONTACT_NOTE_WORD} at meetings",
    )
    kenji = contact_json(CONTACT_KENJI, "Kenji", "Sato", "Fabrikam", nickName="Ken")
    with lake.begin(run_id="run-contacts", kind="contacts", container=ALICE_MAILBOX) as tx:
        tx.write_rows(
            "contacts",
            [contact_row(item, T0 - DAY, lake) for item in (lucia, kenji)],
            partition={"mailbox_id": ALICE_MAILBOX},
        )
        tx.commit()


def thread_messages() -> list[dict[str, Any]]:
    """Return the thread as first captured: the root post and its three replies."""
    return [
        message_json(
            ROOT,
            f"<p>Quarter close {ROOT_WORD}: who owns the ledger?</p>",
            reply_to=None,
            sender=ALICE_SENDER,
            subject="Quarter close",
        ),
        message_json(
            REPLY_ONE,
            "<div>I do. <b>The ledger closes</b> on Friday.</div>",
            reply_to=ROOT,
            sender=BOB_SENDER,
            mentions=["Alice Park"],
        ),
        message_json(REPLY_TWO, "<p>Thanks, noted.</p>", reply_to=ROOT, sender=ALICE_SENDER),
        message_json(
            REPLY_DELETED,
            f"<p>Ignore the {DELETED_WORD} figures.</p>",
            reply_to=ROOT,
            sender=BOB_SENDER,
        ),
    ]


def _address_of(item: dict[str, Any]) -> str:
    return ALICE if item["from"]["user"]["id"] == "user-alice" else BOB


def seed_channel(lake: Lake) -> None:
    with lake.begin(run_id="run-teams-1", kind="teams", container=TEAM) as tx:
        tx.write_rows(
            "channel_messages",
            [message_row(item, T0, lake, address=_address_of(item)) for item in thread_messages()],
            partition={"team_id": TEAM},
        )
        tx.commit()


def delete_reply(lake: Lake) -> None:
    """Capture the last reply again after a user deleted it in Teams: its body is empty."""
    deleted = T0 + 2 * HOUR
    item = message_json(REPLY_DELETED, "", reply_to=ROOT, sender=BOB_SENDER, deleted=deleted)
    with lake.begin(run_id="run-teams-2", kind="teams", container=TEAM) as tx:
        tx.write_rows(
            "channel_messages",
            [message_row(item, T0 + 3 * HOUR, lake, address=BOB, change="updated")],
            partition={"team_id": TEAM},
        )
        tx.commit()
