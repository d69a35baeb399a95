"""Rows of the ``channel_messages`` and ``channel_message_parts`` tables from Graph JSON."""

from __future__ import annotations

import json
import re
from typing import Any

from m365lake.lake import ContentRef
from m365lake.sources.rows import now_utc, parse_graph_time

# The path of a hosted content inside a message body; Graph writes absolute URLs.
_HOSTED_CONTENT = re.compile(r"/hostedContents/([A-Za-z0-9_=\-]+)/\$value")

# Annotations of an expanded root post that belong to the reply list, not to the message.
REPLY_ANNOTATIONS = ("replies", "replies@odata.context", "replies@odata.nextLink")


def message_json_bytes(message: dict[str, Any]) -> bytes:
    """Return the message's JSON as archived: compact, keys in Graph's order."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def version_of(message: dict[str, Any]) -> str:
    """Return what identifies a message version: the etag, else the modification time."""
    return str(message.get("etag") or message.get("lastModifiedDateTime") or "")


def hosted_content_ids(message: dict[str, Any]) -> list[str]:
    """Return the ids of the hosted contents the body refers to, in order, once each."""
    content = str((message.get("body") or {}).get("content") or "")
    return list(dict.fromkeys(_HOSTED_CONTENT.findall(content)))


def _user(identity: Any) -> dict[str, Any]:
    if not isinstance(identity, dict):
        return {}
    user = identity.get("user")
    return user if isinstance(user, dict) else {}


def sender_id(message: dict[str, Any]) -> str | None:
    """Return the Entra object id of the user who sent ``message``, if a user did."""
    user_id = _user(message.get("from")).get("id")
    return str(user_id) if user_id else None


def message_row(
    *,
    team_id: str,
    channel_id: str,
    message: dict[str, Any],
    change: str,
    content: ContentRef,
    run_id: str,
    from_address: str | None = None,
) -> dict[str, Any]:
    """Build one ``channel_messages`` row; ``content`` is the archived JSON of the version.

    Graph's chatMessage names its sender without an address: ``from_address`` is the one
    the tenant directory gives for the sender's object id.
    """
    author = _user(message.get("from"))
    body = message.get("body") or {}
    mentions = [
        str(mention.get("mentionText") or _user(mention.get("mentioned")).get("displayName"))
        for mention in message.get("mentions") or []
        if isinstance(mention, dict)
    ]
    return {
        "team_id": team_id,
        "channel_id": channel_id,
        "message_id": str(message["id"]),
        "change": change,
        "run_id": run_id,
        "reply_to_id": message.get("replyToId"),
        "message_type": message.get("messageType"),
        "subject": message.get("subject"),
        "importance": message.get("importance"),
        "from_user_id": author.get("id"),
        "from_name": author.get("displayName"),
        "from_address": from_address,
        "created_at": parse_graph_time(message.get("createdDateTime")),
        "modified_at": parse_graph_time(message.get("lastModifiedDateTime")),
        "edited_at": parse_graph_time(message.get("lastEditedDateTime")),
        "soft_deleted_at": parse_graph_time(message.get("deletedDateTime")),
        "body_content_type": body.get("contentType"),
        "mentions": mentions,
        "reaction_count": len(message.get("reactions") or []),
        "attachment_count": len(message.get("attachments") or []),
        "hosted_content_count": len(hosted_content_ids(message)),
        "web_url": message.get("webUrl"),
        "etag": message.get("etag"),
        "size": content.size,
        "json_sha256": content.sha256,
        "json_inline": content.inline,
    }


def deletion_row(
    *, team_id: str, channel_id: str, message_id: str, reply_to_id: str | None, run_id: str
) -> dict[str, Any]:
    """Build the row that records a message as gone from Graph."""
    now = now_utc()
    return {
        "team_id": team_id,
        "channel_id": channel_id,
        "message_id": message_id,
        "change": "deleted",
        "run_id": run_id,
        "captured_at": now,
        "deleted_at": now,
        "reply_to_id": reply_to_id,
    }


def attachment_part_row(
    *,
    team_id: str,
    channel_id: str,
    message_id: str,
    attachment: dict[str, Any],
    location: tuple[str, str] | None,
    run_id: str,
) -> dict[str, Any]:
    """Build the part row of an attachment; ``location`` is the archived (drive, item)."""
    kind = str(attachment.get("contentType") or "unknown")
    return {
        "team_id": team_id,
        "channel_id": channel_id,
        "message_id": message_id,
        "part_id": str(attachment.get("id") or ""),
        "run_id": run_id,
        "kind": "reference" if kind == "reference" else kind,
        "name": attachment.get("name"),
        "content_type": None if kind == "reference" else kind,
        "content_url": attachment.get("contentUrl"),
        "drive_id": location[0] if location else None,
        "item_id": location[1] if location else None,
    }


def hosted_part_row(
    *,
    team_id: str,
    channel_id: str,
    message_id: str,
    hosted_id: str,
    content_type: str | None,
    size: int | None,
    content_sha256: str | None,
    run_id: str,
) -> dict[str, Any]:
    return {
        "team_id": team_id,
        "channel_id": channel_id,
        "message_id": message_id,
        "part_id": hosted_id,
        "run_id": run_id,
        "kind": "hostedContent",
        "content_type": content_type,
        "size": size,
        "content_sha256": content_sha256,
    }
