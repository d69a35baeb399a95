"""Graph JSON of teams, channels and chatMessage resources, as the v1.0 docs show them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from m365lake.emulator.teams import GRAPH_BASE_MARKER, ChannelInfo, ChatMessageInfo, TeamInfo

TEAMS_WEB = "https://teams.microsoft.com/l"


def graph_time(moment: datetime | None) -> str | None:
    """Format a timestamp as Teams does: UTC with milliseconds and a ``Z``."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def team_json(team: TeamInfo) -> dict[str, Any]:
    return {
        "id": team.id,
        "createdDateTime": graph_time(team.created_at),
        "displayName": team.display_name,
        "description": team.description,
        "visibility": team.visibility,
        "isArchived": False,
        "webUrl": f"{TEAMS_WEB}/team/{quote(team.id)}?groupId={team.id}&tenantId={team.tenant_id}",
    }


def group_json(team: TeamInfo) -> dict[str, Any]:
    return {
        "id": team.id,
        "displayName": team.display_name,
        "mailNickname": team.mail_nickname,
        "groupTypes": ["Unified"],
        "visibility": team.visibility.capitalize(),
        "resourceProvisioningOptions": ["Team"] if team.is_team else [],
    }


def channel_json(channel: ChannelInfo) -> dict[str, Any]:
    return {
        "id": channel.id,
        "createdDateTime": graph_time(channel.created_at),
        "displayName": channel.display_name,
        "description": channel.description,
        "isFavoriteByDefault": None,
        "email": "",
        "tenantId": channel.tenant_id,
        "membershipType": channel.membership_type,
        "webUrl": (
            f"{TEAMS_WEB}/channel/{quote(channel.id, safe='')}/"
            f"{quote(channel.display_name)}?groupId={channel.team_id}&tenantId={channel.tenant_id}"
        ),
    }


def _identity(user_id: str, display_name: str | None, tenant_id: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.teamworkUserIdentity",
        "id": user_id,
        "displayName": display_name,
        "userIdentityType": "aadUser",
        "tenantId": tenant_id,
    }


def message_json(message: ChatMessageInfo, graph_base: str) -> dict[str, Any]:
    """Return the chatMessage JSON; ``graph_base`` is the scheme and host of the request."""
    author = message.from_user.display_name if message.from_user else None
    root_id = message.reply_to_id or message.id
    return {
        "@odata.type": "#microsoft.graph.chatMessage",
        "id": message.id,
        "replyToId": message.reply_to_id,
        "etag": str(int(message.modified_at.timestamp() * 1000)),
        "messageType": "message",
        "createdDateTime": graph_time(message.created_at),
        "lastModifiedDateTime": graph_time(message.modified_at),
        "lastEditedDateTime": graph_time(message.edited_at),
        "deletedDateTime": graph_time(message.deleted_at),
        "subject": message.subject,
        "summary": None,
        "chatId": None,
        "importance": message.importance,
        "locale": "en-us",
        "webUrl": (
            f"{TEAMS_WEB}/message/{quote(message.channel_id, safe='')}/{message.id}"
            f"?groupId={message.team_id}&tenantId={message.tenant_id}"
            f"&createdTime={message.id}&parentMessageId={root_id}"
        ),
        "policyViolation": None,
        "eventDetail": None,
        "from": {
            "application": None,
            "device": None,
            "user": _identity(message.from_user_id, author, message.tenant_id),
        },
        "body": {
            "contentType": message.body_type,
            "content": message.body.replace(GRAPH_BASE_MARKER, graph_base),
        },
        "channelIdentity": {"teamId": message.team_id, "channelId": message.channel_id},
        "attachments": [dict(attachment) for attachment in message.attachments],
        "mentions": [
            {
                "id": mention["id"],
                "mentionText": mention["mentionText"],
                "mentioned": {
                    "application": None,
                    "device": None,
                    "conversation": None,
                    "tag": None,
                    "user": _identity(
                        mention["user_id"], mention["mentionText"], message.tenant_id
                    ),
                },
            }
            for mention in message.mentions
        ],
        "reactions": [
            _reaction_json(kind, user_id, at, message.tenant_id)
            for kind, user_id, at in message.reactions
        ],
        "messageHistory": [
            {
                "modifiedDateTime": graph_time(item["modifiedDateTime"]),
                "actions": item["actions"],
                "reaction": _reaction_json(
                    item["reaction"][0], item["reaction"][1], item["reaction"][2], message.tenant_id
                ),
            }
            for item in message.history
        ],
    }


def _reaction_json(kind: str, user_id: str, at: datetime, tenant_id: str) -> dict[str, Any]:
    # Graph leaves the reacting user's displayName null.
    return {
        "reactionType": kind,
        "displayName": None,
        "createdDateTime": graph_time(at),
        "user": {"application": None, "device": None, "user": _identity(user_id, None, tenant_id)},
    }


def hosted_content_json(hosted_id: str) -> dict[str, Any]:
    # The collection leaves contentBytes and contentType null; $value serves the bytes.
    return {"id": hosted_id, "contentBytes": None, "contentType": None}
