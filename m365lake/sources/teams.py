"""Incremental backup of one team's channel conversations into the lake.

For each channel the run reads the messages delta from the committed deltaLink, with
``$expand=replies``. Graph's delta page documents its results as reply chains created or
changed, a root post with its replies, so an edited or deleted reply arrives inside its
root's ``replies``. Every message whose etag differs from the archived version gets a
new row. An edit is a new version, and a soft delete is a version with
``soft_deleted_at`` set.

A channel's first run, and a run after its delta token expired, also lists every root
post with its replies, because delta covers only the last eight months.
NOTE: after that listing, changes to threads older than eight months reach the archive
only at the channel's next full listing, which happens only after a 410.

All channels of a team end in one commit, which carries every channel's new deltaLink,
so a token advances only together with the rows it covers. A pasted image (hosted
content) whose download fails is recorded in ``failures`` and tried again by the next
run. Archived messages that a full listing no longer returns are recorded as deleted. A
channel deleted from the team keeps its archived rows and gets no deletion row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from m365lake.errors import (
    AccessDeniedError,
    GraphError,
    ItemNotFoundError,
    SyncStateExpiredError,
)
from m365lake.graph import GraphClient
from m365lake.lake import Lake, Transaction
from m365lake.sources import teams_rows
from m365lake.sources.rows import failure_row, now_utc
from m365lake.sources.teams_list import Channel, Team, list_channels
from m365lake.sources.teams_senders import SenderDirectory
from m365lake.sources.teams_state import (
    DriveItemResolver,
    KnownMessage,
    load_hosted_contents,
    load_team_messages,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 50
"""Graph's maximum ``$top`` for channel messages, replies and their delta."""

MAX_RESYNCS = 3
"""Full listings started after a 410 in one channel, before the team is reported as failed."""


@dataclass
class TeamBackupResult:
    """Counts of one team run, as committed."""

    team: Team
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    commit_seq: int | None = None
    channels: int = 0
    messages_new: int = 0
    messages_updated: int = 0
    messages_deleted: int = 0
    soft_deleted: int = 0
    """New versions that carry a soft delete."""
    parts: int = 0
    hosted_contents_downloaded: int = 0
    bytes_downloaded: int = 0
    blobs_written: int = 0
    full_listings: int = 0
    resyncs: int = 0
    failures: int = 0
    pending_retries: int = 0
    """Hosted contents whose download failed and that the next run tries again."""

    def counts(self) -> dict[str, int]:
        return {
            "channels": self.channels,
            "items_new": self.messages_new,
            "items_updated": self.messages_updated,
            "items_deleted": self.messages_deleted,
            "soft_deleted": self.soft_deleted,
            "parts": self.parts,
            "failures": self.failures,
            "resyncs": self.resyncs,
            "bytes_downloaded": self.bytes_downloaded,
            "blobs_written": self.blobs_written,
        }


def delta_key(team_id: str, channel_id: str) -> str:
    return f"teams/{team_id}/channels/{channel_id}/delta"


def channel_key(team_id: str, channel_id: str) -> str:
    return f"teams/{team_id}/channels/{channel_id}/directory"


def team_key(team_id: str) -> str:
    return f"teams/{team_id}/directory"


def pending_key(team_id: str) -> str:
    return f"teams/{team_id}/pending_hosted_contents"


HostedKey = tuple[str, str, str, str]
"""A hosted content to fetch: channel id, message id, root id ("" for a root), hosted id."""


def protected_api_error(error: AccessDeniedError, team: Team) -> AccessDeniedError:
    """Return the error to raise when Graph refused channel messages with 403.

    Reading channel messages with application permissions needs ChannelMessage.Read.All
    with admin consent, and Microsoft's approval of the app for the Teams protected APIs.
    """
    if "protected api" in str(error).lower():
        advice = (
            f"Teams team {team.team_id}: Graph refused to return channel messages because "
            "Microsoft has not approved this app for the Teams protected APIs. Request "
            "protected API access for the app's client id (see "
            "https://learn.microsoft.com/graph/teams-protected-apis), then run the backup "
            "again; nothing of this team was committed"
        )
    else:
        advice = (
            f"Teams team {team.team_id}: Graph refused to return channel messages. Grant the "
            "app the ChannelMessage.Read.All application permission with admin consent, "
            "then run the backup again; nothing of this team was committed"
        )
    return AccessDeniedError(
        f"{advice} ({error})",
        method=error.method,
        url=error.url,
        status=error.status,
        code=error.code,
        request_id=error.request_id,
    )


class _TeamRun:
    def __init__(
        self,
        graph: GraphClient,
        lake: Lake,
        tx: Transaction,
        team: Team,
        result: TeamBackupResult,
        senders: SenderDirectory,
    ) -> None:
        self.graph = graph
        self.senders = senders
        self.lake = lake
        self.tx = tx
        self.team = team
        self.result = result
        self.partition = {"team_id": team.team_id}
        self.known: dict[tuple[str, str], KnownMessage] = {}
        self.hosted: dict[tuple[str, str, str], tuple[str, str | None, int | None]] = {}
        self.resolver = DriveItemResolver(lake)
        self.pending: set[HostedKey] = set()
        """Hosted contents whose download failed in this run: the next run retries them."""
        self.retry_left: set[HostedKey] = set()
        """Hosted contents an earlier run left to retry."""

    @property
    def team_id(self) -> str:
        return self.team.team_id

    def load_state(self) -> None:
        self.known = load_team_messages(self.lake, self.team_id)
        self.hosted = load_hosted_contents(self.lake, self.team_id)
        saved = self.lake.state(pending_key(self.team_id)) or []
        self.retry_left = {(str(a), str(b), str(c), str(d)) for a, b, c, d in saved}

    # ---- reading ----------------------------------------------------------------------

    def messages_url(self, channel_id: str) -> str:
        return f"/teams/{self.team_id}/channels/{quote(channel_id, safe=':@')}/messages"

    async def _delta_round(self, url: str, first: bool) -> tuple[list[dict[str, Any]], str]:
        params = {"$top": str(PAGE_SIZE), "$expand": "replies"} if first else None
        roots: list[dict[str, Any]] = []
        delta_link = None
        async for page in self.graph.delta(url, params=params):
            roots.extend(page.items)
            if page.delta_link:
                delta_link = page.delta_link
        if delta_link is None:
            raise GraphError(
                f"team {self.team_id}: channel message delta ended without a deltaLink"
            )
        return roots, delta_link

    async def _list_all(self, channel_id: str) -> list[dict[str, Any]]:
        roots: list[dict[str, Any]] = []
        params = {"$top": str(PAGE_SIZE), "$expand": "replies"}
        async for page in self.graph.iter_pages(self.messages_url(channel_id), params=params):
            roots.extend(page["value"])
        return roots

    async def read_channel(self, channel_id: str) -> tuple[list[dict[str, Any]], str, bool]:
        """Return the root posts (replies expanded), the new deltaLink and whether it was a
        full listing."""
        saved = self.lake.state(delta_key(self.team_id, channel_id))
        delta_url = self.messages_url(channel_id) + "/delta"
        if saved is not None:
            try:
                roots, link = await self._delta_round(str(saved), first=False)
                return roots, link, False
            except SyncStateExpiredError:
                self.result.resyncs += 1
                log.info(
                    "team %s channel %s: delta token expired; listing it again",
                    self.team_id,
                    channel_id,
                )
        for restarts in range(MAX_RESYNCS + 1):
            try:
                # Delta first, then the listing: anything changed between the two reads is
                # in the listing, and the next delta round returns it again.
                _, link = await self._delta_round(delta_url, first=True)
                listed = await self._list_all(channel_id)
                self.result.full_listings += 1
                return listed, link, True
            except SyncStateExpiredError:
                if restarts == MAX_RESYNCS:
                    raise
                self.result.resyncs += 1
        raise AssertionError("unreachable: the last restart returns or raises")

    async def replies_of(self, channel_id: str, root: dict[str, Any]) -> list[dict[str, Any]]:
        """Return the root's replies: the expanded ones, then any beyond Graph's inline limit."""
        replies = list(root.get("replies") or [])
        more = root.get("replies@odata.nextLink")
        if more:
            async for page in self.graph.iter_pages(str(more)):
                replies.extend(page["value"])
        return replies

    # ---- writing ----------------------------------------------------------------------

    async def archive_channel(self, channel: Channel) -> str:
        """Archive the channel's changes; return the deltaLink to commit."""
        channel_id = channel.channel_id
        roots, link, full = await self.read_channel(channel_id)
        seen: set[str] = set()
        for root in roots:
            replies = await self.replies_of(channel_id, root)
            message = {
                key: value for key, value in root.items() if key not in teams_rows.REPLY_ANNOTATIONS
            }
            await self.archive_message(channel_id, message, reply_to=None)
            seen.add(str(message["id"]))
            reply_ids = set()
            for reply in replies:
                await self.archive_message(channel_id, reply, reply_to=str(message["id"]))
                reply_ids.add(str(reply["id"]))
            seen |= reply_ids
            # The root came with its whole reply chain, so an archived reply missing
            # from it is gone from Graph.
            self.write_deletions(
                channel_id,
                {
                    message_id
                    for (channel, message_id), known in self.known.items()
                    if channel == channel_id and known.reply_to_id == message["id"]
                }
                - reply_ids,
            )
        if full:
            self.write_deletions(
                channel_id,
                {message_id for (channel, message_id) in self.known if channel == channel_id}
                - seen,
            )
        return link

    async def archive_message(
        self, channel_id: str, message: dict[str, Any], *, reply_to: str | None
    ) -> None:
        message_id = str(message["id"])
        known = self.known.get((channel_id, message_id))
        version = teams_rows.version_of(message)
        if known is not None and not known.deleted and known.version == version:
            return
        change = "created" if known is None or known.deleted else "updated"
        document = teams_rows.message_json_bytes(message)
        content = self.lake.store_content(document)
        row = teams_rows.message_row(
            team_id=self.team_id,
            channel_id=channel_id,
            message=message,
            change=change,
            content=content,
            run_id=self.result.run_id,
            from_address=await self.senders.address(teams_rows.sender_id(message)),
        )
        if row["reply_to_id"] is None and reply_to is not None:
            row["reply_to_id"] = reply_to
        self.tx.write_rows("channel_messages", [row], partition=self.partition)
        self.known[(channel_id, message_id)] = KnownMessage(row["reply_to_id"], version, False)
        if change == "created":
            self.result.messages_new += 1
        else:
            self.result.messages_updated += 1
        if row["soft_deleted_at"] is not None:
            self.result.soft_deleted += 1
        await self.write_parts(channel_id, message, reply_to)

    async def write_parts(
        self, channel_id: str, message: dict[str, Any], reply_to: str | None
    ) -> None:
        """Write the message version's hosted contents and attachments as part rows."""
        message_id = str(message["id"])
        rows: list[dict[str, Any]] = []
        for hosted_id in teams_rows.hosted_content_ids(message):
            stored = self.hosted.get((channel_id, message_id, hosted_id))
            if stored is None:
                stored = await self.download_hosted(channel_id, message_id, reply_to, hosted_id)
                if stored is None:
                    continue
            digest, content_type, size = stored
            rows.append(
                teams_rows.hosted_part_row(
                    team_id=self.team_id,
                    channel_id=channel_id,
                    message_id=message_id,
                    hosted_id=hosted_id,
                    content_type=content_type,
                    size=size,
                    content_sha256=digest,
                    run_id=self.result.run_id,
                )
            )
        for attachment in message.get("attachments") or []:
            if not isinstance(attachment, dict):
                continue
            location = None
            if attachment.get("contentType") == "reference":
                location = self.resolver.resolve(attachment.get("contentUrl"))
            rows.append(
                teams_rows.attachment_part_row(
                    team_id=self.team_id,
                    channel_id=channel_id,
                    message_id=message_id,
                    attachment=attachment,
                    location=location,
                    run_id=self.result.run_id,
                )
            )
        if rows:
            self.tx.write_rows("channel_message_parts", rows, partition=self.partition)
            self.result.parts += len(rows)

    async def download_hosted(
        self, channel_id: str, message_id: str, reply_to: str | None, hosted_id: str
    ) -> tuple[str, str | None, int | None] | None:
        """Store one hosted content as a blob; on failure record it and return None."""
        path = self.messages_url(channel_id)
        path += f"/{reply_to}/replies/{message_id}" if reply_to else f"/{message_id}"
        url = f"{path}/hostedContents/{hosted_id}/$value"
        key = (channel_id, message_id, reply_to or "", hosted_id)
        try:
            async with self.graph.stream(url) as response:
                data = await response.aread()
                content_type = response.headers.get("content-type")
        except ItemNotFoundError as error:
            # Gone from Graph (the message was deleted since), so there is nothing to retry.
            self.pending.discard(key)
            self.record_failure(
                channel_id,
                message_id,
                "hostedContent",
                "itemNotFound",
                str(error),
                error.request_id,
                outcome="skipped",
            )
            return None
        except GraphError as error:
            # The message version is committed without this part; the next run tries the
            # download again.
            self.pending.add(key)
            self.record_failure(
                channel_id,
                message_id,
                "hostedContent",
                error.code or type(error).__name__,
                str(error),
                error.request_id,
            )
            return None
        self.pending.discard(key)
        digest, created = self.lake.blobs.store(data)
        self.result.hosted_contents_downloaded += 1
        self.result.bytes_downloaded += len(data)
        self.result.blobs_written += int(created)
        stored = (digest, content_type, len(data))
        self.hosted[(channel_id, message_id, hosted_id)] = stored
        return stored

    async def retry_pending(self) -> None:
        """Fetch the hosted contents earlier runs failed to download, and write their parts."""
        for channel_id, message_id, root_id, hosted_id in sorted(self.retry_left):
            if (channel_id, message_id, hosted_id) in self.hosted:
                continue
            stored = await self.download_hosted(channel_id, message_id, root_id or None, hosted_id)
            if stored is None:
                continue
            digest, content_type, size = stored
            row = teams_rows.hosted_part_row(
                team_id=self.team_id,
                channel_id=channel_id,
                message_id=message_id,
                hosted_id=hosted_id,
                content_type=content_type,
                size=size,
                content_sha256=digest,
                run_id=self.result.run_id,
            )
            self.tx.write_rows("channel_message_parts", [row], partition=self.partition)
            self.result.parts += 1

    def write_deletions(self, channel_id: str, message_ids: set[str]) -> None:
        rows = []
        for message_id in sorted(message_ids):
            known = self.known[(channel_id, message_id)]
            if known.deleted:
                continue
            rows.append(
                teams_rows.deletion_row(
                    team_id=self.team_id,
                    channel_id=channel_id,
                    message_id=message_id,
                    reply_to_id=known.reply_to_id,
                    run_id=self.result.run_id,
                )
            )
            self.known[(channel_id, message_id)] = KnownMessage(known.reply_to_id, "", True)
        if rows:
            self.tx.write_rows("channel_messages", rows, partition=self.partition)
            self.result.messages_deleted += len(rows)

    def write_channel(self, channel: Channel) -> None:
        """Write a ``channels`` row when the channel is new or its description changed."""
        entry = channel.row()
        key = channel_key(self.team_id, channel.channel_id)
        previous = self.lake.state(key)
        if previous == entry:
            return
        row = {
            **entry,
            "team_id": self.team_id,
            "change": "created" if previous is None else "updated",
            "run_id": self.result.run_id,
        }
        self.tx.write_rows("channels", [row], partition=self.partition)
        self.tx.set_state(key, entry)

    def record_failure(
        self,
        channel_id: str,
        item_id: str | None,
        stage: str,
        reason: str,
        detail: str,
        request_id: str | None = None,
        *,
        outcome: str = "failed",
    ) -> None:
        log.warning(
            "team %s channel %s: %s of %s %s: %s",
            self.team_id,
            channel_id,
            stage,
            item_id,
            outcome,
            reason,
        )
        row = failure_row(
            workload="teams",
            mailbox_id=None,
            container_id=self.team_id,
            run_id=self.result.run_id,
            item_id=item_id,
            stage=stage,
            outcome=outcome,
            reason=reason,
            detail=detail[:500],
            request_id=request_id,
        )
        self.tx.write_rows("failures", [row], partition={"container_id": self.team_id})
        self.result.failures += 1


def run_row(result: TeamBackupResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "kind": "teams",
        "container": result.team.team_id,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "status": "succeeded",
        "items_new": result.messages_new,
        "items_updated": result.messages_updated,
        "items_deleted": result.messages_deleted,
        "failures": result.failures,
        "bytes_downloaded": result.bytes_downloaded,
        "blobs_written": result.blobs_written,
    }


async def backup_team(
    graph: GraphClient,
    lake: Lake,
    team: Team,
    *,
    run_id: str,
    senders: SenderDirectory | None = None,
) -> TeamBackupResult:
    """Archive the changes in every channel of ``team`` since its last commit, in one commit.

    ``senders`` gives the senders' addresses; a run over several teams shares one.

    Raises AccessDeniedError naming the missing permission or the protected API approval
    when Graph refuses the channel messages; nothing of the team is committed then.
    """
    result = TeamBackupResult(team=team, run_id=run_id, started_at=now_utc())
    tx = lake.begin(run_id=run_id, kind="teams", container=team.team_id)
    try:
        run = _TeamRun(graph, lake, tx, team, result, senders or SenderDirectory(graph))
        # Read the archive after the transaction took its starting point, so a commit
        # by a concurrent run in between is caught as a conflict.
        run.load_state()
        channels = await list_channels(graph, team.team_id)
        result.channels = len(channels)
        for channel in channels:
            try:
                link = await run.archive_channel(channel)
            except AccessDeniedError as error:
                raise protected_api_error(error, team) from error
            run.write_channel(channel)
            tx.set_state(delta_key(team.team_id, channel.channel_id), link)
        await run.retry_pending()
        tx.set_state(pending_key(team.team_id), sorted(run.pending) or None)
        result.pending_retries = len(run.pending)
        entry = team.row()
        if lake.state(team_key(team.team_id)) != entry:
            tx.write_rows("teams", [entry], partition={})
            tx.set_state(team_key(team.team_id), entry)
        result.finished_at = now_utc()
        tx.write_rows("runs", [run_row(result)], partition={})
        manifest = tx.commit(counts=result.counts())
        result.commit_seq = manifest.get("seq")
    finally:
        tx.abort()
    log.info(
        "team %s committed: %d channels, %d new, %d updated, %d deleted, "
        "%d soft-deleted, %d failures",
        team.team_id,
        result.channels,
        result.messages_new,
        result.messages_updated,
        result.messages_deleted,
        result.soft_deleted,
        result.failures,
    )
    return result
