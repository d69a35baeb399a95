"""Teams half of the emulated tenant: teams, channels and channel messages.

Messages live per channel as root posts with their replies. Every change takes the next
value of a Teams sequence counter of its own. A thread's sequence is the highest of its
root and replies, because Graph's channel message delta returns a root post again when
anything in its reply chain changed. Delta tokens are watermarks on that counter.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from m365lake.emulator import records
from m365lake.emulator.seed import SeedUser

# Graph links inside message bodies are absolute. The serializer puts the request's base
# URL where the model stores this marker, so bodies name the host the client talks to.
GRAPH_BASE_MARKER = "\x00graph-base\x00"

DELTA_WINDOW = timedelta(days=243)
"""About eight months: channel message delta returns no root post created earlier."""


@dataclass
class _Reaction:
    reaction_type: str
    user_id: str
    created_at: datetime


@dataclass
class _ChatMessage:
    id: str
    team_id: str
    channel_id: str
    reply_to_id: str | None
    from_user_id: str
    created_at: datetime
    modified_at: datetime
    body: str
    body_type: str
    subject: str | None
    importance: str
    seq: int
    edited_at: datetime | None = None
    deleted_at: datetime | None = None
    mentions: list[dict[str, Any]] = field(default_factory=list)
    reactions: list[_Reaction] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    hosted: dict[str, tuple[bytes, str]] = field(default_factory=dict)


@dataclass
class _Channel:
    id: str
    team_id: str
    display_name: str
    description: str | None
    membership_type: str
    created_at: datetime
    roots: dict[str, _ChatMessage] = field(default_factory=dict)
    replies: dict[str, dict[str, _ChatMessage]] = field(default_factory=dict)


@dataclass
class _Team:
    id: str
    display_name: str
    description: str
    visibility: str
    mail_nickname: str
    is_team: bool
    """False for a Microsoft 365 group that has no team: /groups lists it, /teams does not."""
    created_at: datetime
    channels: dict[str, _Channel] = field(default_factory=dict)


@dataclass(frozen=True)
class TeamInfo:
    id: str
    display_name: str
    description: str
    visibility: str
    mail_nickname: str
    is_team: bool
    created_at: datetime
    tenant_id: str


@dataclass(frozen=True)
class ChannelInfo:
    id: str
    team_id: str
    display_name: str
    description: str | None
    membership_type: str
    created_at: datetime
    tenant_id: str


@dataclass(frozen=True)
class ChatMessageInfo:
    """A snapshot of one message; ``thread_seq`` is set on root posts only."""

    id: str
    team_id: str
    channel_id: str
    reply_to_id: str | None
    from_user: SeedUser | None
    from_user_id: str
    created_at: datetime
    modified_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    body: str
    body_type: str
    subject: str | None
    importance: str
    mentions: tuple[dict[str, Any], ...]
    reactions: tuple[tuple[str, str, datetime], ...]
    history: tuple[dict[str, Any], ...]
    attachments: tuple[dict[str, Any], ...]
    hosted_ids: tuple[str, ...]
    seq: int
    thread_seq: int
    tenant_id: str


def channel_id_for(team_id: str, name: str) -> str:
    """Return a Teams channel id, shaped like Graph's ``19:<32 hex>@thread.tacv2``."""
    return (
        f"19:{records.derive_uuid('channel', team_id, name.lower()).replace('-', '')}@thread.tacv2"
    )


def hosted_content_id(message_id: str, index: int) -> str:
    return records.derive_id("aWQ9", message_id, str(index), length=40)


def _milliseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _truncate_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class TeamsTenantMixin:
    """Teams half of ``Tenant``; ``Tenant.__init__`` calls ``_init_teams``."""

    _lock: threading.RLock
    domain: str
    tenant_id: str
    _users: dict[str, SeedUser]
    _upn_index: dict[str, str]

    def _init_teams(self) -> None:
        self._teams_seq = records.SeqCounter()
        self._teams: dict[str, _Team] = {}
        self._teams_generation = 1

    # ---- teams and channels ------------------------------------------------------------

    def add_team(
        self,
        display_name: str,
        *,
        mail_nickname: str | None = None,
        description: str = "",
        visibility: str = "private",
        is_team: bool = True,
        created_at: datetime | None = None,
    ) -> str:
        """Add a Microsoft 365 group with a team (unless ``is_team`` is false); return its id.

        A team starts with its General channel, as in Teams.
        """
        nickname = mail_nickname or "".join(c for c in display_name if c.isalnum())
        with self._lock:
            team_id = records.derive_uuid("team", self.domain, nickname.lower())
            if team_id in self._teams:
                raise ValueError(f"a group with mail nickname {nickname!r} already exists")
            self._teams[team_id] = _Team(
                id=team_id,
                display_name=display_name,
                description=description,
                visibility=visibility,
                mail_nickname=nickname,
                is_team=is_team,
                created_at=created_at or datetime(2020, 1, 1, tzinfo=UTC),
            )
            if is_team:
                self.add_channel(team_id, "General", description="General channel")
            return team_id

    def add_channel(
        self,
        team_id: str,
        display_name: str,
        *,
        description: str | None = None,
        membership_type: str = "standard",
    ) -> str:
        with self._lock:
            team = self._team_record(team_id)
            channel_id = channel_id_for(team_id, display_name)
            if channel_id in team.channels:
                raise ValueError(f"team {team_id} already has a channel {display_name!r}")
            team.channels[channel_id] = _Channel(
                id=channel_id,
                team_id=team_id,
                display_name=display_name,
                description=description,
                membership_type=membership_type,
                created_at=team.created_at,
            )
            return channel_id

    def channel_id(self, team_id: str, display_name: str) -> str:
        with self._lock:
            for channel in self._team_record(team_id).channels.values():
                if channel.display_name.lower() == display_name.lower():
                    return channel.id
            raise KeyError(f"team {team_id} has no channel {display_name!r}")

    def groups(self) -> list[TeamInfo]:
        with self._lock:
            return [self._team_view(team) for team in self._teams.values()]

    def teams(self) -> list[TeamInfo]:
        return [team for team in self.groups() if team.is_team]

    def team_info(self, team_id: str) -> TeamInfo | None:
        with self._lock:
            team = self._teams.get(team_id.lower())
            if team is None or not team.is_team:
                return None
            return self._team_view(team)

    def channels_of(self, team_id: str) -> list[ChannelInfo]:
        with self._lock:
            team = self._team_record(team_id)
            return [self._channel_view(channel) for channel in team.channels.values()]

    def channel_info(self, team_id: str, channel_id: str) -> ChannelInfo | None:
        with self._lock:
            team = self._teams.get(team_id.lower())
            if team is None or not team.is_team:
                return None
            channel = team.channels.get(channel_id)
            return None if channel is None else self._channel_view(channel)

    # ---- messages ----------------------------------------------------------------------

    def post_channel_message(
        self,
        team_id: str,
        channel_id: str,
        from_upn: str,
        text: str,
        *,
        reply_to: str | None = None,
        subject: str | None = None,
        importance: str = "normal",
        created_at: datetime | None = None,
        mentions: Sequence[str] = (),
        hosted_images: Sequence[tuple[bytes, str]] = (),
        file_links: Sequence[tuple[str, str]] = (),
        body_type: str = "html",
    ) -> str:
        """Post a root message, or a reply to ``reply_to``; return the message id.

        ``text`` is the body as the user typed it (HTML when ``body_type`` is html).
        ``mentions`` are user principal names, each appended as an ``<at>`` tag.
        ``hosted_images`` are (bytes, content type) pairs pasted into the body, and
        ``file_links`` are (drive id, item id) pairs shared as reference attachments.
        """
        with self._lock:
            channel = self._channel_record(team_id, channel_id)
            if reply_to is not None and reply_to not in channel.roots:
                raise KeyError(f"channel {channel_id} has no root message {reply_to!r}")
            author = self._teams_user(from_upn)
            when = _truncate_ms(created_at or datetime.now(UTC))
            while self._chat_message_exists(channel, str(_milliseconds(when))):
                when += timedelta(milliseconds=1)
            message_id = str(_milliseconds(when))
            message = _ChatMessage(
                id=message_id,
                team_id=team_id,
                channel_id=channel_id,
                reply_to_id=reply_to,
                from_user_id=author,
                created_at=when,
                modified_at=when,
                body=text,
                body_type=body_type,
                subject=subject,
                importance=importance,
                seq=self._teams_seq.next(),
            )
            self._chat_add_mentions(message, mentions)
            self._chat_add_hosted_images(message, hosted_images)
            self._chat_add_file_links(message, file_links)
            if reply_to is None:
                channel.roots[message_id] = message
                channel.replies[message_id] = {}
            else:
                channel.replies[reply_to][message_id] = message
            return message_id

    def edit_channel_message(
        self, team_id: str, channel_id: str, message_id: str, text: str
    ) -> None:
        """Replace the body, as an edit in Teams does: ``lastEditedDateTime`` is set."""
        with self._lock:
            message = self._chat_message(team_id, channel_id, message_id)
            if message.deleted_at is not None:
                raise ValueError(f"message {message_id} is deleted and cannot be edited")
            message.body = text + "".join(_tags_after(message.body))
            self._chat_touch(message)
            message.edited_at = message.modified_at

    def soft_delete_channel_message(self, team_id: str, channel_id: str, message_id: str) -> None:
        """Delete a message as a user does in Teams: Graph keeps returning it.

        Graph then reports ``deletedDateTime`` and an empty body; the mentions,
        attachments and hosted contents that belonged to the body are gone too.
        """
        with self._lock:
            message = self._chat_message(team_id, channel_id, message_id)
            self._chat_touch(message)
            message.deleted_at = message.modified_at
            message.body = ""
            message.mentions.clear()
            message.attachments.clear()
            message.hosted.clear()

    def add_reaction(
        self,
        team_id: str,
        channel_id: str,
        message_id: str,
        upn: str,
        reaction_type: str = "like",
    ) -> None:
        with self._lock:
            message = self._chat_message(team_id, channel_id, message_id)
            user_id = self._teams_user(upn)
            self._chat_touch(message)
            message.reactions.append(_Reaction(reaction_type, user_id, message.modified_at))
            message.history.append(
                {
                    "modifiedDateTime": message.modified_at,
                    "actions": "reactionAdded",
                    "reaction": (reaction_type, user_id, message.modified_at),
                }
            )

    def root_messages(self, team_id: str, channel_id: str) -> list[ChatMessageInfo]:
        """Return the channel's root posts, newest first, as Graph lists them."""
        with self._lock:
            channel = self._channel_record(team_id, channel_id)
            roots = sorted(channel.roots.values(), key=lambda m: m.created_at, reverse=True)
            return [self._chat_message_view(channel, message) for message in roots]

    def replies_of(self, team_id: str, channel_id: str, message_id: str) -> list[ChatMessageInfo]:
        """Return the replies of a root post, oldest first."""
        with self._lock:
            channel = self._channel_record(team_id, channel_id)
            if message_id not in channel.roots:
                raise KeyError(message_id)
            replies = sorted(channel.replies[message_id].values(), key=lambda m: m.created_at)
            return [self._chat_message_view(channel, message) for message in replies]

    def channel_message(
        self, team_id: str, channel_id: str, message_id: str, reply_id: str | None = None
    ) -> ChatMessageInfo | None:
        """Return a root post, or with ``reply_id`` one of its replies; None if not found."""
        with self._lock:
            channel = self._channel_record(team_id, channel_id)
            root = channel.roots.get(message_id)
            if root is None:
                return None
            if reply_id is None:
                return self._chat_message_view(channel, root)
            reply = channel.replies[message_id].get(reply_id)
            return None if reply is None else self._chat_message_view(channel, reply)

    def hosted_content(
        self, team_id: str, channel_id: str, message_id: str, hosted_id: str
    ) -> tuple[bytes, str] | None:
        """Return (bytes, content type) of a hosted content of any message in the channel."""
        with self._lock:
            channel = self._channel_record(team_id, channel_id)
            message = self._chat_find_message(channel, message_id)
            return None if message is None else message.hosted.get(hosted_id)

    def channel_changes(
        self, team_id: str, channel_id: str, after_seq: int, upto_seq: int, now: datetime
    ) -> list[ChatMessageInfo]:
        """Return root posts whose thread changed in (after_seq, upto_seq], oldest change first.

        Root posts created before the eight-month delta window are left out, as Graph does.
        """
        with self._lock:
            channel = self._channel_record(team_id, channel_id)
            found = [
                self._chat_message_view(channel, root)
                for root in channel.roots.values()
                if root.created_at >= now - DELTA_WINDOW
            ]
        changed = [info for info in found if after_seq < info.thread_seq <= upto_seq]
        return sorted(changed, key=lambda info: info.thread_seq)

    def expire_teams_delta(self) -> None:
        """Invalidate every channel message delta and next link issued so far."""
        with self._lock:
            self._teams_generation += 1

    def teams_delta_generation(self) -> int:
        with self._lock:
            return self._teams_generation

    def current_teams_seq(self) -> int:
        with self._lock:
            return self._teams_seq.value

    # ---- helpers -------------------------------------------------------------------------

    def _team_record(self, team_id: str) -> _Team:
        team = self._teams.get(team_id.lower())
        if team is None:
            raise KeyError(f"no team {team_id!r}")
        return team

    def _channel_record(self, team_id: str, channel_id: str) -> _Channel:
        channel = self._team_record(team_id).channels.get(channel_id)
        if channel is None:
            raise KeyError(f"team {team_id} has no channel {channel_id!r}")
        return channel

    def _chat_find_message(self, channel: _Channel, message_id: str) -> _ChatMessage | None:
        root = channel.roots.get(message_id)
        if root is not None:
            return root
        for replies in channel.replies.values():
            if message_id in replies:
                return replies[message_id]
        return None

    def _chat_message_exists(self, channel: _Channel, message_id: str) -> bool:
        return self._chat_find_message(channel, message_id) is not None

    def _chat_message(self, team_id: str, channel_id: str, message_id: str) -> _ChatMessage:
        message = self._chat_find_message(self._channel_record(team_id, channel_id), message_id)
        if message is None:
            raise KeyError(f"channel {channel_id} has no message {message_id!r}")
        return message

    def _teams_user(self, upn: str) -> str:
        user_id = self._upn_index.get(upn.lower())
        if user_id is None:
            raise KeyError(f"no user with user principal name {upn!r}")
        return user_id

    def _chat_touch(self, message: _ChatMessage) -> None:
        # The etag is the modification time in milliseconds, so every change must move it.
        now = _truncate_ms(datetime.now(UTC))
        message.modified_at = max(now, message.modified_at + timedelta(milliseconds=1))
        message.seq = self._teams_seq.next()

    def _chat_add_mentions(self, message: _ChatMessage, upns: Sequence[str]) -> None:
        for index, upn in enumerate(upns):
            user_id = self._teams_user(upn)
            name = self._users[user_id].display_name
            message.mentions.append({"id": index, "mentionText": name, "user_id": user_id})
            message.body += f' <at id="{index}">{_escape(name)}</at>'

    def _chat_add_hosted_images(
        self, message: _ChatMessage, images: Sequence[tuple[bytes, str]]
    ) -> None:
        for index, (content, content_type) in enumerate(images):
            hosted_id = hosted_content_id(message.id, index)
            message.hosted[hosted_id] = (content, content_type)
            path = self._chat_message_path(message) + f"/hostedContents/{hosted_id}/$value"
            message.body += (
                f'<p><img src="{GRAPH_BASE_MARKER}{path}" alt="image" '
                f'itemtype="http://schema.skype.com/AMSImage"></p>'
            )

    def _chat_add_file_links(self, message: _ChatMessage, links: Sequence[tuple[str, str]]) -> None:
        for drive_id, item_id in links:
            item = self.item_info(drive_id, item_id)  # type: ignore[attr-defined]
            drive = self.drive_info(drive_id)  # type: ignore[attr-defined]
            if item is None or drive is None:
                raise KeyError(f"no drive item {item_id!r} in drive {drive_id!r}")
            attachment_id = records.derive_uuid("attachment", message.id, item_id)
            url = drive.web_url + "/" + "/".join(quote(name) for name in item.path)
            message.attachments.append(
                {
                    "id": attachment_id,
                    "contentType": "reference",
                    "contentUrl": url,
                    "content": None,
                    "name": item.path[-1],
                    "thumbnailUrl": None,
                    "teamsAppId": None,
                }
            )
            message.body += f'<attachment id="{attachment_id}"></attachment>'

    def _chat_message_path(self, message: _ChatMessage) -> str:
        base = f"/v1.0/teams/{message.team_id}/channels/{message.channel_id}/messages"
        if message.reply_to_id is None:
            return f"{base}/{message.id}"
        return f"{base}/{message.reply_to_id}/replies/{message.id}"

    def _team_view(self, team: _Team) -> TeamInfo:
        return TeamInfo(
            team.id,
            team.display_name,
            team.description,
            team.visibility,
            team.mail_nickname,
            team.is_team,
            team.created_at,
            self.tenant_id,
        )

    def _channel_view(self, channel: _Channel) -> ChannelInfo:
        return ChannelInfo(
            channel.id,
            channel.team_id,
            channel.display_name,
            channel.description,
            channel.membership_type,
            channel.created_at,
            self.tenant_id,
        )

    def _chat_message_view(self, channel: _Channel, message: _ChatMessage) -> ChatMessageInfo:
        thread_seq = message.seq
        if message.reply_to_id is None:
            replies = channel.replies.get(message.id, {})
            thread_seq = max([message.seq, *(reply.seq for reply in replies.values())])
        return ChatMessageInfo(
            id=message.id,
            team_id=message.team_id,
            channel_id=message.channel_id,
            reply_to_id=message.reply_to_id,
            from_user=self._users.get(message.from_user_id),
            from_user_id=message.from_user_id,
            created_at=message.created_at,
            modified_at=message.modified_at,
            edited_at=message.edited_at,
            deleted_at=message.deleted_at,
            body=message.body,
            body_type=message.body_type,
            subject=message.subject,
            importance=message.importance,
            mentions=tuple(dict(mention) for mention in message.mentions),
            reactions=tuple(
                (reaction.reaction_type, reaction.user_id, reaction.created_at)
                for reaction in message.reactions
            ),
            history=tuple(dict(item) for item in message.history),
            attachments=tuple(dict(attachment) for attachment in message.attachments),
            hosted_ids=tuple(message.hosted),
            seq=message.seq,
            thread_seq=thread_seq,
            tenant_id=self.tenant_id,
        )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _tags_after(body: str) -> list[str]:
    """Return the mention, image and attachment markup an edit keeps (Teams keeps them)."""
    kept: list[str] = []
    for start_tag, end_tag in (
        ('<at id="', "</at>"),
        ("<p><img ", "</p>"),
        ("<attachment ", "</attachment>"),
    ):
        position = 0
        while (start := body.find(start_tag, position)) >= 0:
            end = body.find(end_tag, start)
            if end < 0:
                break
            kept.append(body[start : end + len(end_tag)])
            position = end + len(end_tag)
    return kept


__all__ = [
    "DELTA_WINDOW",
    "GRAPH_BASE_MARKER",
    "ChannelInfo",
    "ChatMessageInfo",
    "TeamInfo",
    "TeamsTenantMixin",
    "channel_id_for",
]
