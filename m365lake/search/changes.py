"""Find the item versions an index update needs, and read those rows from the lake.

The index contains one document per item: the latest captured version that is not a
deletion, with ``deleted_at`` set when the tenant deleted the item afterwards. These are
the rows that the catalog's ``message_versions`` and ``file_versions`` views show with
the newest ``captured_at`` per item, so a hit joins back to them.

An update reads the manifests committed since the index's last one. Only the identity
and version columns of their files are scanned to pick each changed item's version, so
content columns are read only for the rows that are indexed. An item whose newest rows
are all deletions needs its last live version from older files; those are looked up in
the same partition (mailbox or drive) only.

Versions are ordered as the catalog orders them: ``captured_at``, then commit order, then
the row's position in its file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from m365lake.lake import Lake, reading
from m365lake.lake.reading import TableScan
from m365lake.search.documents import (
    ChannelEntry,
    Directory,
    DriveEntry,
    MailboxEntry,
    SiteEntry,
    TeamEntry,
)

logger = logging.getLogger(__name__)

ITEM_TABLES: Mapping[str, tuple[str, str]] = {
    "messages": ("mailbox_id", "message_id"),
    "drive_items": ("drive_id", "item_id"),
    "events": ("mailbox_id", "event_id"),
    "contacts": ("mailbox_id", "contact_id"),
    # Graph's channel ids ("19:…@thread.tacv2") are unique in the tenant, and message ids
    # are unique in their channel, so the channel is the container.
    "channel_messages": ("channel_id", "message_id"),
}
"""The tables whose items become documents, with their (container, item) key columns."""

PARTITION_COLUMNS: Mapping[str, str] = {"channel_messages": "team_id"}
"""The column that partitions a table's files, where it is not the container column.

The Teams backup writes one partition per team, while a document's container is the
channel, so a purge names the team and every channel of it is checked again."""


def partition_column(table: str) -> str:
    """Return the partition column of an item table's files."""
    return PARTITION_COLUMNS.get(table, ITEM_TABLES[table][0])


# A version that hides its item from searches, and when that happened, per table. Teams
# keeps a message that a user deleted, with ``deletedDateTime`` set and its body emptied.
# Such a version counts as a deletion here, so the document keeps the text of the last
# version before it and sets ``deleted_at``, as for an item deleted in the tenant. A
# message first captured after its deletion is indexed from that version.
REMOVAL_SQL: Mapping[str, tuple[str, str]] = {
    "channel_messages": (
        "change = 'deleted' OR soft_deleted_at IS NOT NULL",
        "coalesce(deleted_at, soft_deleted_at, captured_at)",
    ),
}
_DEFAULT_REMOVAL_SQL = ("change = 'deleted'", "coalesce(deleted_at, captured_at)")

# DuckDB may use this much memory to order the identity columns of every version. A
# rebuild of a million items needs well under it; beyond it DuckDB spills to disk.
DUCKDB_MEMORY_LIMIT = "2GB"


@dataclass(frozen=True)
class CommittedFile:
    """A Parquet file that a manifest lists, in commit order."""

    path: str
    table: str
    seq: int
    rows: int
    partition: Mapping[str, str]
    entry: Mapping[str, Any]
    """The file's manifest entry, which ``m365lake.lake.reading`` needs to read it."""
    purge_copy: bool = False
    """Listed by a purge commit: a copy of older rows that the purge kept, not new rows."""


def removed_entries(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Return the file entries a purge commit lists under ``removed`` (none for other commits)."""
    section = manifest.get("removed") or {}
    return list(section.get("files") or [])


def committed_files(lake: Lake, manifests: Sequence[Mapping[str, Any]]) -> list[CommittedFile]:
    """Return the files the manifests list that no purge among them removed, in commit order.

    A purge deletes the files it removed after its commit, and its replacement files
    contain every row of those files that it kept, so the removed files are left out.
    """
    removed = {entry["path"] for manifest in manifests for entry in removed_entries(manifest)}
    return [
        CommittedFile(
            path=lake.storage.url(entry["path"]),
            table=entry["table"],
            seq=int(manifest["seq"]),
            rows=int(entry.get("rows") or 0),
            partition=dict(entry.get("partition") or {}),
            entry=entry,
            purge_copy=bool(removed_entries(manifest)),
        )
        for manifest in manifests
        for entry in manifest.get("files", [])
        if entry["path"] not in removed
    ]


def purged_containers(manifest: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Return (table, partition value) of each item partition whose files a purge replaced.

    The value is the container id (mailbox, drive), or the team id for channel messages
    (see ``partition_column``).
    """
    found = set()
    for entry in removed_entries(manifest):
        table = str(entry.get("table"))
        if table not in ITEM_TABLES:
            continue
        container = _partition_values(entry).get(partition_column(table))
        if container is not None:
            found.add((table, container))
    return found


def _partition_values(entry: Mapping[str, Any]) -> dict[str, str]:
    """Return a file's partition values from its manifest entry, else from its path.

    Paths are ``tables/<table>/<column>=<value>/.../<file>`` with URL-quoted values.
    """
    partition = entry.get("partition")
    if isinstance(partition, Mapping):
        return {str(key): str(value) for key, value in partition.items()}
    parts = PurePosixPath(str(entry["path"])).parts[2:-1]
    return {key: unquote(value) for key, _, value in (part.partition("=") for part in parts)}


IDENTITY_COLUMNS = ("container_id", "item_id", "captured_at", "run_id", "deleted_at")
"""The columns of a located version that its document stores to name the version."""


@dataclass(frozen=True)
class ItemVersion:
    """The version of one item to index, located by file and row."""

    table: str
    container_id: str
    item_id: str
    path: str
    row_index: int
    deleted_at: Any
    """When the tenant deleted the item after this version (a datetime), or None."""
    entry: Mapping[str, Any]
    """The manifest entry of the file at ``path``."""


@dataclass(frozen=True)
class _Located:
    """Located versions of one table in Arrow form, sorted by file and row."""

    files: Sequence[CommittedFile]
    rows: pa.Table
    """Columns container_id, item_id, file_pos (1-based into ``files``), row_index, and
    captured_at, run_id and deleted_at of the version."""


@dataclass
class VersionSet:
    """The item versions one update indexes, kept in Arrow form until they are read.

    A million versions take tens of megabytes this way; as Python objects they would
    take several hundred.
    """

    table: str
    parts: list[_Located]
    folders_skipped: int = 0

    def __len__(self) -> int:
        return sum(part.rows.num_rows for part in self.parts)

    def identities(self) -> Iterator[dict[str, Any]]:
        """Yield container_id, item_id, captured_at, run_id and deleted_at of each version."""
        for part in self.parts:
            yield from part.rows.select(list(IDENTITY_COLUMNS)).to_pylist()

    def where(self, keep: Callable[[dict[str, Any]], bool]) -> VersionSet:
        """Return the versions whose identity (as ``identities`` yields it) ``keep`` accepts."""
        parts = []
        for part in self.parts:
            identities = part.rows.select(list(IDENTITY_COLUMNS)).to_pylist()
            mask = pa.array([keep(identity) for identity in identities], type=pa.bool_())
            parts.append(_Located(part.files, part.rows.filter(mask)))
        return VersionSet(self.table, parts, self.folders_skipped)

    def keys_in(self, containers: Collection[str]) -> set[tuple[str, str]]:
        """Return (container_id, item_id) of the versions in ``containers``."""
        wanted = pa.array(sorted(containers), type=pa.string())
        keys: set[tuple[str, str]] = set()
        for part in self.parts:
            selected = part.rows.filter(pc.is_in(part.rows["container_id"], value_set=wanted))
            keys.update(
                zip(
                    selected["container_id"].to_pylist(),
                    selected["item_id"].to_pylist(),
                    strict=True,
                )
            )
        return keys

    def versions(self) -> Iterator[list[ItemVersion]]:
        """Yield the versions one file at a time, in row order."""
        for part in self.parts:
            if part.rows.num_rows == 0:
                continue
            file_positions = part.rows["file_pos"].combine_chunks()
            run_ends = pc.run_end_encode(file_positions).run_ends.to_pylist()
            start = 0
            for end in run_ends:
                chunk = part.rows.slice(start, end - start).to_pylist()
                start = end
                yield [
                    ItemVersion(
                        table=self.table,
                        container_id=row["container_id"],
                        item_id=row["item_id"],
                        path=part.files[row["file_pos"] - 1].path,
                        row_index=int(row["row_index"]),
                        deleted_at=row["deleted_at"],
                        entry=part.files[row["file_pos"] - 1].entry,
                    )
                    for row in chunk
                ]


def _locate_sql(table: str, keyed: bool) -> str:
    """Return a query that picks each item's latest live version and its deletion time.

    ``deleted_at`` is the first deletion recorded after that version, and only when the
    newest row of the item is a deletion (a restored item is live again). ``file_pos`` is
    NULL for an item with no live version in the files read. ``version_removed`` is true
    when the only version left to index is itself a removal (a Teams message captured
    after its deletion): older files may still hold a live one. What counts as a deletion
    is ``REMOVAL_SQL``.
    """
    container, item = ITEM_TABLES[table]
    removed, removed_at = REMOVAL_SQL.get(table, _DEFAULT_REMOVAL_SQL)
    folder = "coalesce(is_folder, false)" if table == "drive_items" else "false"
    key_filter = (
        f"AS t SEMI JOIN wanted_keys AS k "
        f"ON t.{container} = k.container_id AND t.{item} = k.item_id"
        if keyed
        else ""
    )
    return f"""
        WITH versions AS (
            SELECT {container} AS container_id, {item} AS item_id, captured_at, run_id,
                   ({removed}) AS removed, {removed_at} AS removed_at,
                   change = 'deleted' AS hard_deleted,
                   {partition_column(table)} AS partition_id,
                   {folder} AS is_folder,
                   list_position($files, filename) AS file_pos,
                   file_row_number AS row_index
            FROM {{source}}
            {key_filter}
        ),
        numbered AS (
            SELECT *, row_number() OVER (
                PARTITION BY container_id, item_id
                ORDER BY captured_at DESC, file_pos DESC, row_index DESC
            ) AS newest_rank
            FROM versions
        ),
        live AS (
            SELECT container_id, item_id,
                   coalesce(min(newest_rank) FILTER (WHERE NOT removed),
                            min(newest_rank) FILTER (WHERE NOT hard_deleted)) AS live_rank
            FROM numbered GROUP BY ALL
        )
        SELECT n.container_id, n.item_id, any_value(n.partition_id) AS partition_id,
               any_value(n.file_pos) FILTER (WHERE n.newest_rank = l.live_rank) AS file_pos,
               any_value(n.row_index) FILTER (WHERE n.newest_rank = l.live_rank) AS row_index,
               any_value(n.captured_at) FILTER (WHERE n.newest_rank = l.live_rank)
                   AS captured_at,
               any_value(n.run_id) FILTER (WHERE n.newest_rank = l.live_rank) AS run_id,
               coalesce(any_value(n.is_folder) FILTER (WHERE n.newest_rank = l.live_rank),
                        false) AS is_folder,
               coalesce(any_value(n.removed) FILTER (WHERE n.newest_rank = l.live_rank),
                        false) AS version_removed,
               CASE WHEN bool_or(n.newest_rank = 1 AND n.removed) THEN
                   arg_max(n.removed_at, n.newest_rank)
                       FILTER (WHERE n.removed AND n.newest_rank <= l.live_rank)
               END AS deleted_at
        FROM numbered AS n LEFT JOIN live AS l USING (container_id, item_id)
        GROUP BY n.container_id, n.item_id, l.live_rank
        ORDER BY file_pos, row_index
    """


_SOURCE_OPTIONS = (
    "filename = true, file_row_number = true, hive_partitioning = false, union_by_name = true"
)


def _connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    connection = reading.connect(lake)
    connection.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    return connection


def _scan(lake: Lake, files: Sequence[CommittedFile]) -> TableScan:
    return TableScan(lake, [file.entry for file in files])


def _locate(
    connection: duckdb.DuckDBPyConnection,
    scan: TableScan,
    table: str,
    keys: pa.Table | None = None,
) -> pa.Table:
    if keys is not None:
        connection.register("wanted_keys", keys)
    try:
        sql = _locate_sql(table, keys is not None).format(
            source=scan.sql(_SOURCE_OPTIONS, connection=connection)
        )
        with scan.errors():
            return connection.sql(sql, params={"files": scan.locations}).to_arrow_table()
    finally:
        if keys is not None:
            connection.unregister("wanted_keys")


def _split(
    files: Sequence[CommittedFile], located: pa.Table, *, complete: bool = True
) -> tuple[_Located, pa.Table, int]:
    """Split located rows into live versions to index, keys without one, and folder count.

    When ``files`` are not every file of the items' partitions (``complete`` false), an
    item whose chosen version is itself a removal counts as one without a live version,
    so that the older files are searched for the version before the removal.
    """
    has_version = pc.is_valid(located["file_pos"])
    if not complete:
        has_version = pc.and_(has_version, pc.invert(located["version_removed"]))
    is_folder = located["is_folder"]
    found = located.filter(pc.and_(has_version, pc.invert(is_folder)))
    folders = located.filter(pc.and_(has_version, is_folder)).num_rows
    missing = located.filter(pc.invert(has_version)).select(
        ["container_id", "item_id", "partition_id"]
    )
    columns = [
        "container_id",
        "item_id",
        "file_pos",
        "row_index",
        "captured_at",
        "run_id",
        "deleted_at",
    ]
    return _Located(files, found.select(columns)), missing, folders


def changed_versions(
    lake: Lake,
    table: str,
    all_files: Sequence[CommittedFile],
    new_files: Sequence[CommittedFile],
) -> VersionSet:
    """Return the version to index of every item with rows in ``new_files``.

    ``all_files`` is every committed file up to the last new manifest, in commit order;
    ``new_files`` is its tail that the index has not seen. Items whose chosen version is
    a folder, and items deleted before any version was captured, are left out.
    """
    new = [file for file in new_files if file.table == table]
    result = VersionSet(table, [])
    if not new:
        return result
    # A rebuild reads every file at once; an update reads only the new ones.
    complete = len(new) == sum(1 for file in all_files if file.table == table)
    with _connect(lake) as connection:
        located = _locate(connection, _scan(lake, new), table)
        found, missing, folders = _split(new, located, complete=complete)
        result.parts.append(found)
        result.folders_skipped += folders
        if missing.num_rows:
            files = _partition_files(table, all_files, missing)
            located = _locate(connection, _scan(lake, files), table, missing)
            older, gone, folders = _split(files, located)
            result.parts.append(older)
            result.folders_skipped += folders
            if gone.num_rows:
                logger.info("%d deleted %s had no archived version to index", gone.num_rows, table)
    return result


def container_versions(
    lake: Lake, table: str, all_files: Sequence[CommittedFile], containers: Collection[str]
) -> VersionSet:
    """Return the version to index of every item of ``table`` in ``containers``.

    ``containers`` are values of the table's ``partition_column``: mailbox, drive or team
    ids. Every file of their partitions among ``all_files`` is read. Folders and items
    without a live version are left out.
    """
    container_column = partition_column(table)
    files = [
        file
        for file in all_files
        if file.table == table and file.partition.get(container_column) in containers
    ]
    result = VersionSet(table, [])
    if files:
        with _connect(lake) as connection:
            found, _, _ = _split(files, _locate(connection, _scan(lake, files), table))
        result.parts.append(found)
    return result


def all_versions(lake: Lake, table: str, all_files: Sequence[CommittedFile]) -> VersionSet:
    """Return the version to index of every item in ``table`` (for a rebuild)."""
    return changed_versions(lake, table, all_files, all_files)


def _partition_files(
    table: str, all_files: Sequence[CommittedFile], keys: pa.Table
) -> list[CommittedFile]:
    """Return the files of ``table`` in the partitions (mailboxes, drives, teams) of ``keys``."""
    container_column = partition_column(table)
    containers = set(keys["partition_id"].to_pylist())
    return [
        file
        for file in all_files
        if file.table == table and file.partition.get(container_column) in containers
    ]


def read_rows(
    lake: Lake, versions: Sequence[ItemVersion]
) -> Iterator[tuple[ItemVersion, dict[str, Any]]]:
    """Yield each version of one file with its full row, one Parquet row group at a time.

    ``versions`` must all be in one file, sorted by row. Memory contains one row group's
    selected rows at a time. A file that a purge deleted meanwhile raises the reader's
    OSError, so the update can run again; a damaged one raises LakeIntegrityError.
    """
    if not versions:
        return
    entry = versions[0].entry
    parquet = reading.open_parquet(lake, entry)
    try:
        yield from _read_file_rows(parquet, versions)
    except (pa.ArrowException, OSError) as exc:
        raise reading.read_error(lake, [entry], exc) from exc
    finally:
        parquet.close()


def _read_file_rows(
    parquet: pq.ParquetFile, wanted: Sequence[ItemVersion]
) -> Iterator[tuple[ItemVersion, dict[str, Any]]]:
    position = 0
    first_row = 0
    for group in range(parquet.metadata.num_row_groups):
        group_rows = parquet.metadata.row_group(group).num_rows
        end_row = first_row + group_rows
        selected: list[ItemVersion] = []
        while position < len(wanted) and wanted[position].row_index < end_row:
            selected.append(wanted[position])
            position += 1
        if selected:
            rows = parquet.read_row_group(group)
            indices = pa.array([version.row_index - first_row for version in selected])
            yield from zip(selected, rows.take(indices).to_pylist(), strict=True)
        first_row = end_row
        if position >= len(wanted):
            return


_LATEST_SQL = """
    SELECT * EXCLUDE (filename, file_row_number)
    FROM {source}
    QUALIFY row_number() OVER (
        PARTITION BY {key}
        ORDER BY captured_at DESC, list_position($files, filename) DESC, file_row_number DESC
    ) = 1
"""


def _latest_rows(
    connection: duckdb.DuckDBPyConnection, scan: TableScan, key: str
) -> list[dict[str, Any]]:
    if not scan:
        return []
    with scan.errors():
        cursor = connection.execute(
            _LATEST_SQL.format(key=key, source=scan.sql(_SOURCE_OPTIONS, connection=connection)),
            {"files": scan.locations},
        )
        names = [column[0] for column in cursor.description or []]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def load_directory(lake: Lake, all_files: Sequence[CommittedFile]) -> Directory:
    """Read the latest row of every mailbox, drive, site, team and channel from the files."""

    def paths(table: str) -> TableScan:
        return _scan(lake, [file for file in all_files if file.table == table])

    with _connect(lake) as connection:
        mailboxes = {
            row["mailbox_id"]: MailboxEntry(
                user_principal_name=row["user_principal_name"] or row["mailbox_id"],
                display_name=row["display_name"],
            )
            for row in _latest_rows(connection, paths("mailboxes"), "mailbox_id")
        }
        drives = {
            row["drive_id"]: DriveEntry(
                owner_kind=row["owner_kind"],
                owner_id=row["owner_id"],
                owner_name=row["owner_name"],
                site_id=row["site_id"],
                web_url=row["web_url"],
                name=row["name"],
            )
            for row in _latest_rows(connection, paths("drives"), "drive_id")
        }
        sites = {
            row["site_id"]: SiteEntry(
                name=row["name"], display_name=row["display_name"], web_url=row["web_url"]
            )
            for row in _latest_rows(connection, paths("sites"), "site_id")
        }
        teams = {
            row["team_id"]: TeamEntry(display_name=row["display_name"], web_url=row["web_url"])
            for row in _latest_rows(connection, paths("teams"), "team_id")
        }
        channels = {
            row["channel_id"]: ChannelEntry(
                team_id=row["team_id"], display_name=row["display_name"], web_url=row["web_url"]
            )
            for row in _latest_rows(connection, paths("channels"), "channel_id")
        }
    return Directory(
        mailboxes=mailboxes, drives=drives, sites=sites, teams=teams, channels=channels
    )
