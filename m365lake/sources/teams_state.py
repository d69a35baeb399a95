"""The archived state of one team: the latest version of each channel message, and where
archived drive items are, so that file links in messages resolve to them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan
from m365lake.lake.transaction import partition_directory

_OPTIONS = (
    "hive_partitioning = false, union_by_name = true, filename = true, file_row_number = true"
)


def _newest_first(keys: str) -> str:
    # Files are passed in commit order, so file position and row number order versions
    # captured at the same instant.
    return (
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY captured_at DESC, "
        "list_position($files, filename) DESC, file_row_number DESC) = 1"
    )


@dataclass(frozen=True)
class KnownMessage:
    """The latest archived version of a channel message."""

    reply_to_id: str | None
    version: str
    """The etag, else the modification time, of the archived version."""
    deleted: bool
    """The archive recorded the message as gone from Graph (not a soft delete)."""


def _team_files(lake: Lake, table: str, team_id: str) -> TableScan:
    directory = partition_directory(table, {"team_id": team_id})
    entries = [
        entry
        for entry in lake.committed_entries(table)
        if entry["path"].startswith(directory + "/")
    ]
    return TableScan(lake, entries)


def load_team_messages(lake: Lake, team_id: str) -> dict[tuple[str, str], KnownMessage]:
    """Return the latest archived version of each message, keyed by (channel id, message id).

    Message ids are creation times in milliseconds, unique only within a channel.
    """
    files = _team_files(lake, "channel_messages", team_id)
    if not files:
        return {}
    with reading.connect(lake) as db, files.errors():
        query = (
            "SELECT channel_id, message_id, reply_to_id, coalesce(etag, strftime(modified_at, "
            "'%Y-%m-%dT%H:%M:%S.%gZ'), ''), change = 'deleted' "
            f"FROM {files.sql(_OPTIONS, connection=db)} "
            f"{_newest_first('channel_id, message_id')}"
        )
        rows = db.execute(query, {"files": files.locations}).fetchall()
    return {
        (row[0], row[1]): KnownMessage(reply_to_id=row[2], version=row[3], deleted=bool(row[4]))
        for row in rows
    }


def load_hosted_contents(
    lake: Lake, team_id: str
) -> dict[tuple[str, str, str], tuple[str, str | None, int | None]]:
    """Return archived hosted contents: (channel, message, part id) → (SHA-256, type, size).

    Hosted contents do not change once posted, so a new version of a message reuses them.
    """
    files = _team_files(lake, "channel_message_parts", team_id)
    if not files:
        return {}
    with reading.connect(lake) as db, files.errors():
        query = (
            "SELECT channel_id, message_id, part_id, content_sha256, content_type, size "
            f"FROM {files.sql(_OPTIONS, connection=db)} "
            "WHERE kind = 'hostedContent' AND content_sha256 IS NOT NULL "
            f"{_newest_first('channel_id, message_id, part_id')}"
        )
        rows = db.execute(query, {"files": files.locations}).fetchall()
    return {(row[0], row[1], row[2]): (row[3], row[4], row[5]) for row in rows}


class DriveItemResolver:
    """Find the archived drive item a Teams file link points at.

    A reference attachment carries the file's URL: the drive's ``webUrl``, a slash, and
    the item's path with each name percent-encoded. The resolver matches that against
    the archived ``drives`` and the live ``drive_items`` paths, reading them on first use.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._drives: list[tuple[str, str]] | None = None
        self._paths: dict[str, dict[str, str]] = {}

    def resolve(self, url: str | None) -> tuple[str, str] | None:
        """Return (drive id, item id) of the archived item at ``url``, or None."""
        if not url:
            return None
        target = unquote(url)
        for drive_id, web_url in self._archived_drives():
            prefix = unquote(web_url).rstrip("/") + "/"
            if target.lower().startswith(prefix.lower()):
                path = target[len(prefix) :].split("?", 1)[0]
                item_id = self._drive_paths(drive_id).get(path.lower())
                return None if item_id is None else (drive_id, item_id)
        return None

    def _archived_drives(self) -> list[tuple[str, str]]:
        if self._drives is None:
            entries = self.lake.committed_entries("drives")
            files = TableScan(self.lake, entries)
            found: list[tuple[str, str]] = []
            if files:
                with reading.connect(self.lake) as db, files.errors():
                    query = (
                        "SELECT drive_id, web_url "
                        f"FROM {files.sql(_OPTIONS, connection=db)} WHERE web_url IS NOT NULL "
                        f"{_newest_first('drive_id')}"
                    )
                    found = [
                        (row[0], row[1])
                        for row in db.execute(query, {"files": files.locations}).fetchall()
                    ]
            # The longest URL first, so a library is not matched by its site's shorter URL.
            self._drives = sorted(found, key=lambda pair: len(pair[1]), reverse=True)
        return self._drives

    def _drive_paths(self, drive_id: str) -> dict[str, str]:
        if drive_id not in self._paths:
            directory = partition_directory("drive_items", {"drive_id": drive_id})
            entries = [
                entry
                for entry in self.lake.committed_entries("drive_items")
                if entry["path"].startswith(directory + "/")
            ]
            files = TableScan(self.lake, entries)
            paths: dict[str, str] = {}
            if files:
                with reading.connect(self.lake) as db, files.errors():
                    query = (
                        "SELECT path, item_id FROM (SELECT path, item_id, change "
                        f"FROM {files.sql(_OPTIONS, connection=db)} {_newest_first('item_id')}) "
                        "WHERE change <> 'deleted' AND path IS NOT NULL"
                    )
                    rows = db.execute(query, {"files": files.locations}).fetchall()
                paths = {str(path).lower(): str(item_id) for path, item_id in rows}
            self._paths[drive_id] = paths
        return self._paths[drive_id]
