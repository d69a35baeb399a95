"""Build the search document of a Teams channel message (``kind:microsoftteams``).

A root post and each reply are separate documents, as Purview counts them. The sender is
``from`` and ``participants``; users the message mentions are ``mentions`` and are
participants too. ``sent`` and ``received`` are both the time the message was posted,
because a channel message has no separate delivery time. The custodian is the team and
the location is the team's web address, so search statistics group channel messages per
team.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from m365lake.search.documents import (
    TEAMS_KIND,
    TEAMS_WORKLOAD,
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

# How much of a message's text titles a hit when the message has no subject.
TITLE_WORDS = 12
TITLE_CHARACTERS = 80


def channel_message_document(
    row: Mapping[str, Any],
    item: Mapping[str, Any] | None,
    *,
    body: Extraction | str | None,
    directory: Directory,
    deleted_at: dt.datetime | None = None,
    content_issue: str | None = None,
) -> SearchDocument:
    """Build the document of one captured channel message version.

    ``item`` is Graph's ``chatMessage`` JSON, or None when it could not be read (then
    ``content_issue`` gives the reason). ``body`` is the message's text, extracted from its HTML
    or given as plain text. ``deleted_at`` is set when the message was deleted in Teams
    after this version, which keeps the text it had before.
    """
    builder = DocumentBuilder()
    team_id = str(row["team_id"])
    channel_id = str(row["channel_id"])
    add_identity(
        builder,
        workload=TEAMS_WORKLOAD,
        container_id=channel_id,
        item_id=str(row["message_id"]),
        row=row,
        deleted_at=deleted_at,
    )
    team = directory.teams.get(team_id)
    channel = directory.channels.get(channel_id)
    team_name = team.display_name if team and team.display_name else team_id
    builder.add("custodian_key", team_name)
    builder.add("custodian", team_name)
    builder.add("location_key", (team.web_url if team else None) or f"team:{team_id}")
    builder.add("team", team_name)
    builder.add("channel", channel.display_name if channel else None)
    builder.add("kind", TEAMS_KIND)
    builder.add("size", item_size(row.get("size")))
    item = item or {}

    sender = _sender(row, item, directory)
    mentioned = _mentioned(row, item)
    builder.add("from", sender)
    builder.add_all("mentions", mentioned)
    builder.add_all("participants", [sender, *mentioned])
    builder.add("subject", row.get("subject") or item.get("subject"))
    builder.add("sent", index_date(row.get("created_at")))
    builder.add("received", index_date(row.get("created_at")))
    builder.add("lastmodifiedtime", index_date(row.get("modified_at")))
    builder.add("importance", (row.get("importance") or "").lower() or None)

    issues: list[str] = []
    if content_issue:
        issues.append(f"message: {content_issue}")
    text = body if isinstance(body, str) or body is None else body.text
    builder.add("body", text)
    if body is not None and not isinstance(body, str):
        issue = extraction_issue("body", body)
        if issue:
            issues.append(issue)
    if not (row.get("subject") or item.get("subject")):
        builder.add("hit_title", _title(text, row, channel.display_name if channel else None))
    # NOTE: only a shared file's name is folded into the message. The file is indexed as
    # its own ``docs`` item when its drive is archived, so its text matches the file alone.
    names = [
        attachment.get("name")
        for attachment in item.get("attachments") or []
        if isinstance(attachment, Mapping)
    ]
    builder.add_all("attachmentnames", names)
    count = row.get("attachment_count")
    builder.add("hasattachment", bool(count) if count is not None else any(names))
    add_issues(builder, issues)
    return builder.values


def _title(text: str | None, row: Mapping[str, Any], channel: str | None) -> str:
    """Return a title for a message without a subject: its first words, else its place."""
    words = (text or "").split()
    if words:
        shown = " ".join(words[:TITLE_WORDS])
        if len(shown) > TITLE_CHARACTERS:
            shown = shown[: TITLE_CHARACTERS - 1].rstrip()
        elif len(words) <= TITLE_WORDS:
            return shown
        return f"{shown}…"
    kind = "reply" if row.get("reply_to_id") else "post"
    return f"{kind} in {channel or row.get('channel_id')}"


def _sender(row: Mapping[str, Any], item: Mapping[str, Any], directory: Directory) -> str | None:
    name = row.get("from_name")
    address = row.get("from_address")
    if not address:
        # A row archived before backups looked senders up has no address; an archived
        # mailbox of the sender (its id is the user's object id) still names one.
        mailbox = directory.mailboxes.get(str(row.get("from_user_id") or ""))
        address = mailbox.user_principal_name if mailbox else None
    if not name:
        sender = item.get("from") or {}
        identity = sender.get("user") or sender.get("application") or {}
        name = identity.get("displayName") if isinstance(identity, Mapping) else None
    if name and address and str(name).lower() != str(address).lower():
        return f"{name} <{address}>"
    return address or name or None


def _mentioned(row: Mapping[str, Any], item: Mapping[str, Any]) -> list[str]:
    """Return the mentioned users' names, from the JSON, else the row's ``mentions``."""
    names = []
    for mention in item.get("mentions") or []:
        if not isinstance(mention, Mapping):
            continue
        mentioned = mention.get("mentioned") or {}
        user = mentioned.get("user") if isinstance(mentioned, Mapping) else None
        name = (user or {}).get("displayName") if isinstance(user, Mapping) else None
        names.append(str(name or mention.get("mentionText") or "").strip())
    names = [name for name in names if name]
    return names or [str(name) for name in row.get("mentions") or [] if name]
