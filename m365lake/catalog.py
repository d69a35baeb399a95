"""DuckDB views over the committed lake files, and a read-only SQL entry point.

``refresh_catalog`` writes ``<root>/catalog.duckdb``: a database holding no data, only
views over the Parquet files that manifests list, addressed by absolute path so the
file opens in the duckdb CLI from any working directory. The catalog records the lake
root it was built for, and a lake opened from another path (moved or copied) gets a new
catalog. Files that no manifest lists
(from a run that was killed or aborted) never appear in a view.

Views (columns are the table schemas from ``m365lake.lake.tables``):

- ``<table>_rows`` for every table: every committed row, plus ``commit_seq``,
  ``file_index`` and ``row_index`` that order versions captured at the same instant;
- ``messages`` / ``folders``: the latest version of each item, unless it is a deletion;
- ``message_versions`` / ``folder_versions``: every non-deletion version, with
  ``deleted_at`` taken from the first deletion recorded after it;
- ``messages_as_of(ts)`` / ``folders_as_of(ts)``: table macros with the live items as the
  archive knew them at ``ts`` (latest version captured at or before ``ts``, unless a
  deletion). A ``ts`` string without a UTC offset is read in the session time zone;
- ``drive_items`` / ``drive_item_versions`` / ``drive_items_as_of(ts)``: the same for
  OneDrive and SharePoint items, folders included; ``files`` / ``file_versions`` /
  ``files_as_of(ts)`` keep only the files;
- ``contacts`` / ``contact_versions`` / ``contacts_as_of(ts)`` and ``contact_folders`` /
  ``contact_folder_versions`` / ``contact_folders_as_of(ts)``: the same for Outlook
  contacts and their folders;
- ``events`` / ``event_versions`` / ``events_as_of(ts)`` and ``calendars`` /
  ``calendar_versions`` / ``calendars_as_of(ts)``: the same for calendar events (singles,
  series masters and their exceptions) and calendars;
- ``channel_messages`` / ``channel_message_versions`` / ``channel_messages_as_of(ts)`` and
  ``channels`` / ``channel_versions`` / ``channels_as_of(ts)``: the same for Teams channel
  messages (root posts and replies) and channels; ``teams`` and ``channel_message_parts``
  (hosted contents and file links of the latest version of each message): the latest row
  per key;
- ``mailboxes``, ``attachments``, ``event_attachments``, ``runs``, ``drives``, ``sites``:
  the latest row per key;
  ``failures``: every row;
- ``cases``, ``holds``: the current record per case and per hold, closed cases and
  released holds included; ``case_custodians``, ``case_searches``: the current custodians
  and saved searches of each case (removed and deleted ones only in ``<table>_rows``);
  ``audit_events``: every audit event in sequence order; ``retention_policies``: the
  active retention policies.

Files that a purge removed (listed under a later manifest's ``removed``) are left out.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import platformdirs
import pyarrow as pa

from m365lake.errors import LakeError, QueryError
from m365lake.lake import SCHEMAS, Lake, reading
from m365lake.lake.reading import TableScan
from m365lake.lake.storage import make_private_dirs

logger = logging.getLogger(__name__)

CATALOG_FILE = "catalog.duckdb"


def catalog_path(lake: Lake) -> Path:
    """Return where the lake's catalog lives: in the lake, or in the user's cache if read-only.

    A read-only lake (a snapshot, a write-once mount) must still be queryable and
    verifiable, and the catalog is derived data, so it is then kept outside the lake,
    named after the lake's path. A lake on object storage keeps it in its local folder.
    """
    if lake_is_writable(lake):
        return lake.local_dir / CATALOG_FILE
    digest = hashlib.sha256(lake.location.encode("utf-8")).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("m365lake")) / "catalogs" / f"{digest}.duckdb"


def lake_is_writable(lake: Lake) -> bool:
    """Return whether files can be created in the lake's local folder."""
    if lake.is_remote:
        make_private_dirs(lake.local_dir)
    return os.access(lake.local_dir, os.W_OK)


CATALOG_BLOCK_SIZE = 16 * 1024
DEFAULT_TIMEOUT_SECONDS = 30.0

_ORDER = ("captured_at", "commit_seq", "file_index", "row_index")
_INTERNAL = "commit_seq, file_index, row_index"
# Key columns that identify one item across its versions, per table.
_KEYS = {
    "messages": ("mailbox_id", "message_id"),
    "folders": ("mailbox_id", "folder_id"),
    "mailboxes": ("mailbox_id",),
    "attachments": ("mailbox_id", "message_id", "mime_sha256", "part_index"),
    "runs": ("run_id",),
    "drive_items": ("drive_id", "item_id"),
    "drives": ("drive_id",),
    "sites": ("site_id",),
    "cases": ("case_id",),
    "case_custodians": ("case_id", "custodian_id"),
    "case_searches": ("case_id", "search_id"),
    "holds": ("case_id", "hold_id"),
    "retention_policies": ("policy_id",),
    "contacts": ("mailbox_id", "contact_id"),
    "contact_folders": ("mailbox_id", "folder_id"),
    "teams": ("team_id",),
    "channels": ("team_id", "channel_id"),
    "channel_messages": ("team_id", "channel_id", "message_id"),
    "channel_message_parts": ("team_id", "channel_id", "message_id", "part_id"),
    "calendars": ("mailbox_id", "calendar_id"),
    "events": ("mailbox_id", "event_id"),
    "event_attachments": ("mailbox_id", "event_id", "attachment_id"),
}
# Keyed tables whose current view leaves out records that a change ended; their history
# stays in ``<table>_rows``.
_CURRENT_ONLY = {
    "case_custodians": "WHERE status = 'active'",
    "case_searches": "WHERE status = 'active'",
    "retention_policies": "WHERE status = 'active'",
}
_VERSIONED = {
    "messages": "message",
    "folders": "folder",
    "drive_items": "drive_item",
    "contacts": "contact",
    "contact_folders": "contact_folder",
    "channels": "channel",
    "channel_messages": "channel_message",
    "calendars": "calendar",
    "events": "event",
}
# Views over drive_items restricted to files, under the names analysts look for.
_FILE_VIEWS = (
    "CREATE VIEW files AS SELECT * FROM drive_items WHERE NOT coalesce(is_folder, false)",
    "CREATE VIEW file_versions AS SELECT * FROM drive_item_versions "
    "WHERE NOT coalesce(is_folder, false)",
    "CREATE MACRO files_as_of(as_of) AS TABLE "
    "SELECT * FROM drive_items_as_of(as_of) WHERE NOT coalesce(is_folder, false)",
)

ALLOWED_PRAGMAS = (
    "collations",
    "database_list",
    "database_size",
    "functions",
    "metadata_info",
    "platform",
    "show_tables",
    "show_tables_expanded",
    "storage_info",
    "table_info",
    "user_agent",
    "version",
)
ALLOWED_STATEMENTS = (
    "a single read-only statement: SELECT, WITH … SELECT, VALUES, FROM …, DESCRIBE, SHOW, "
    "SUMMARIZE, EXPLAIN [ANALYZE] of one of those, or PRAGMA " + "/".join(ALLOWED_PRAGMAS)
)


def _sql_type(kind: pa.DataType) -> str:
    if pa.types.is_list(kind):
        return f"{_sql_type(kind.value_type)}[]"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    names = {
        pa.string(): "VARCHAR",
        pa.bool_(): "BOOLEAN",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float64(): "DOUBLE",
        pa.binary(): "BLOB",
    }
    try:
        return names[kind]
    except KeyError:
        raise NotImplementedError(f"no DuckDB type mapping for Arrow type {kind}") from None


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _rows_view(table: str, scan: TableScan, connection: duckdb.DuckDBPyConnection) -> str:
    schema = SCHEMAS[table]
    if not scan:
        # An empty view still has the table's columns, so queries written today keep
        # working before the first commit of that table.
        columns = [f'CAST(NULL AS {_sql_type(f.type)}) AS "{f.name}"' for f in schema]
        columns += [
            "CAST(NULL AS BIGINT) AS commit_seq",
            "CAST(NULL AS INTEGER) AS file_index",
            "CAST(NULL AS BIGINT) AS row_index",
        ]
        return f"SELECT {', '.join(columns)} WHERE false"
    # NOTE: the view text lists every committed file, so it grows with the number of
    # commits until compaction merges small files.
    selected = ", ".join(f't."{name}"' for name in schema.names)
    # A column added to a schema later is missing from older files. union_by_name fills
    # it with nulls only when some file has it, so an empty row of the current schema is
    # unioned in by name: it supplies every column and casts them to the schema's types.
    typed = ", ".join(f'CAST(NULL AS {_sql_type(f.type)}) AS "{f.name}"' for f in schema)
    # hive_partitioning is off: partition values are already columns, and a path value
    # must not override (or retype) the value stored in the file.
    source = scan.sql(
        "filename = true, file_row_number = true, hive_partitioning = false, union_by_name = true",
        connection=connection,
    )
    return (
        f"SELECT {selected}, f.commit_seq, f.file_index, t.file_row_number AS row_index "
        f"FROM (SELECT * FROM {source} "
        f"UNION ALL BY NAME SELECT {typed}, CAST(NULL AS VARCHAR) AS filename, "
        f"CAST(NULL AS BIGINT) AS file_row_number WHERE false) AS t "
        f"JOIN lake_files AS f ON f.path = t.filename"
    )


def _latest(source: str, keys: Sequence[str], order: Sequence[str], where: str = "") -> str:
    partition = ", ".join(keys)
    newest_first = ", ".join(f"{column} DESC" for column in order)
    return (
        f"SELECT * FROM {source} {where} "
        f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {newest_first}) = 1"
    )


def _view_statements(table: str) -> list[str]:
    rows = f"{table}_rows"
    keys = _KEYS.get(table)
    order = _ORDER if "captured_at" in SCHEMAS[table].names else _ORDER[1:]
    if table in _VERSIONED:
        singular = _VERSIONED[table]
        partition = ", ".join(keys or ())
        latest = _latest(rows, keys or (), order)
        latest_as_of = _latest(
            rows, keys or (), order, "WHERE captured_at <= CAST(as_of AS TIMESTAMPTZ)"
        )
        return [
            f"CREATE VIEW {table} AS SELECT * EXCLUDE ({_INTERNAL}) FROM ({latest}) "
            "WHERE change <> 'deleted'",
            f"CREATE VIEW {singular}_versions AS "
            f"SELECT * EXCLUDE ({_INTERNAL}, next_deleted_at) "
            "REPLACE (coalesce(deleted_at, next_deleted_at) AS deleted_at) FROM ("
            "SELECT *, first_value(CASE WHEN change = 'deleted' "
            "THEN coalesce(deleted_at, captured_at) END IGNORE NULLS) OVER ("
            f"PARTITION BY {partition} ORDER BY {', '.join(order)} "
            f"ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS next_deleted_at FROM {rows}"
            ") WHERE change <> 'deleted'",
            f"CREATE MACRO {table}_as_of(as_of) AS TABLE "
            f"SELECT * EXCLUDE ({_INTERNAL}) FROM ({latest_as_of}) WHERE change <> 'deleted'",
        ]
    if keys:
        return [
            f"CREATE VIEW {table} AS SELECT * EXCLUDE ({_INTERNAL}) "
            f"FROM ({_latest(rows, keys, order)}) {_CURRENT_ONLY.get(table, '')}"
        ]
    if table == "audit_events":
        return [f"CREATE VIEW {table} AS SELECT * EXCLUDE ({_INTERNAL}) FROM {rows} ORDER BY seq"]
    return [f"CREATE VIEW {table} AS SELECT * EXCLUDE ({_INTERNAL}) FROM {rows}"]


def refresh_catalog(lake: Lake) -> Path:
    """Rewrite the catalog (see ``catalog_path``) to match the committed files; return its path.

    The new catalog is built under a temporary name and renamed into place, so open
    connections keep the old one and concurrent refreshes never see a half-built file.
    """
    head = lake.head()
    live = lake.live_files()
    files: list[tuple[str, str, int, int, str]] = [
        (
            lake.storage.url(item.entry["path"]),
            item.entry["table"],
            item.seq,
            item.position,
            item.run_id,
        )
        for item in live
    ]
    # TableScan checks every file's key, so a missing key fails before the catalog is written.
    scans = {
        table: TableScan(lake, [item.entry for item in live if item.entry["table"] == table])
        for table in SCHEMAS
    }

    target = catalog_path(lake)
    # The catalog lists the lake's paths; outside the lake it gets a private folder too.
    make_private_dirs(target.parent)
    temp = target.parent / f".tmp-catalog-{uuid.uuid4().hex}.duckdb"
    try:
        with reading.connect(lake) as connection:
            # 16 KiB blocks instead of DuckDB's 256 KiB: the catalog holds views and a
            # small file list, and the default block size made it about 1 MiB on disk.
            connection.execute(
                f"ATTACH {_quote_literal(str(temp))} AS catalog_build "
                f"(BLOCK_SIZE {CATALOG_BLOCK_SIZE})"
            )
            connection.execute("USE catalog_build")
            connection.execute(
                "CREATE TABLE lake_files (path VARCHAR PRIMARY KEY, table_name VARCHAR, "
                "commit_seq BIGINT, file_index INTEGER, run_id VARCHAR)"
            )
            if files:
                connection.executemany("INSERT INTO lake_files VALUES (?, ?, ?, ?, ?)", files)
            connection.execute(
                "CREATE TABLE catalog_head AS SELECT ?::BIGINT AS commit_seq, "
                "?::VARCHAR AS manifest_sha256, ?::VARCHAR AS lake_root, "
                "now() AS refreshed_at",
                [head.seq, head.sha256, lake.location],
            )
            for table in SCHEMAS:
                rows_view = _rows_view(table, scans[table], connection)
                connection.execute(f"CREATE VIEW {table}_rows AS {rows_view}")
                for statement in _view_statements(table):
                    connection.execute(statement)
            for statement in _FILE_VIEWS:
                connection.execute(statement)
            connection.execute("USE memory")
            connection.execute("DETACH catalog_build")
        os.replace(temp, target)
    except (OSError, duckdb.IOException) as error:
        raise LakeError(
            f"could not write the catalog {target}: {error}. Make the lake folder "
            "writable, or run the command as a user who can write it"
        ) from error
    finally:
        for leftover in (temp, temp.with_name(temp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    logger.info("refreshed catalog %s at commit %d (%d files)", target, head.seq, len(files))
    return target


def _catalog_is_current(lake: Lake, path: Path) -> bool:
    """Return whether the catalog lists the files of the head commit at this lake root.

    The views address files by absolute path, so a lake that was moved or copied needs a
    new catalog even when its head commit is unchanged.
    """
    if not path.exists():
        return False
    try:
        with duckdb.connect(str(path), read_only=True) as connection:
            row = connection.execute(
                "SELECT commit_seq, manifest_sha256, lake_root FROM catalog_head"
            ).fetchone()
    except duckdb.Error as error:
        logger.info("catalog %s is unreadable or outdated (%s); rebuilding it", path, error)
        return False
    head = lake.head()
    if row is not None and row[2] != lake.location:
        logger.info("catalog %s was built for the lake at %s; rebuilding it", path, row[2])
    return row == (head.seq, head.sha256, lake.location)


def connect(lake: Lake, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the catalog, refreshing it first if commits were added since it was written."""
    path = catalog_path(lake)
    if not _catalog_is_current(lake, path):
        refresh_catalog(lake)
    connection = reading.connect(lake, str(path), read_only=read_only)
    register_encrypted_files(lake, connection)
    return connection


def register_encrypted_files(lake: Lake, connection: duckdb.DuckDBPyConnection) -> None:
    """Register the encrypted files the views read, as Arrow datasets, in this session.

    pyarrow decrypts them as DuckDB scans, because DuckDB cannot decrypt them itself
    (see ``m365lake.lake.reading``). The datasets live in the session only, so the views
    of an encrypted lake work in ``m365lake sql`` and ``connect`` but not in a plain
    duckdb CLI session, where only the unencrypted files can be read.
    """
    live = lake.live_files()
    for table in SCHEMAS:
        entries = [item.entry for item in live if item.entry["table"] == table]
        if any(entry.get("key_id") for entry in entries):
            TableScan(lake, entries).register(connection)


_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_EXPLAIN_PREFIX = re.compile(r"^explain\s+(?:analy[sz]e\s+)?", re.IGNORECASE)
_PRAGMA_NAME = re.compile(r"^pragma\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
_FIRST_KEYWORD = re.compile(r"^([a-z]+)", re.IGNORECASE)


def _query_error(sql: str, message: str) -> QueryError:
    error = QueryError(message)
    # Carried as an attribute so logs and Dagster metadata can show the statement.
    error.sql = sql  # type: ignore[attr-defined]
    return error


def _reject(sql: str, reason: str) -> QueryError:
    return _query_error(sql, f"{reason}. `m365lake sql` runs only {ALLOWED_STATEMENTS}.")


def _parse_one(sql: str) -> duckdb.Statement:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        # DuckDB's message shows the line and a caret under the position; the list of
        # allowed statements would only bury it.
        detail = str(error).removeprefix("Parser Error: ")
        raise _query_error(sql, f"the SQL could not be parsed: {detail}") from error
    if len(statements) != 1:
        raise _reject(sql, f"expected one statement, got {len(statements)}")
    return statements[0]


def check_read_only(sql: str) -> None:
    """Raise QueryError unless ``sql`` is one statement that only reads.

    DuckDB's own parser classifies the statement. Text matching is used only to read
    what the parser does not expose: the statement inside EXPLAIN and the PRAGMA name.
    """
    statement = _parse_one(sql)
    kind = statement.type
    body = _LEADING_COMMENTS.sub("", statement.query, count=1)
    if kind == duckdb.StatementType.SELECT:
        return
    if kind == duckdb.StatementType.EXPLAIN:
        inner = _EXPLAIN_PREFIX.sub("", body, count=1)
        if inner != body and _parse_one(inner).type == duckdb.StatementType.SELECT:
            return
        raise _reject(sql, "EXPLAIN is allowed only for a read-only query")
    if kind == duckdb.StatementType.PRAGMA:
        match = _PRAGMA_NAME.match(body)
        if match and match.group(1).lower() in ALLOWED_PRAGMAS:
            return
        name = match.group(1) if match else "?"
        raise _reject(sql, f"PRAGMA {name} is not one of the read-only pragmas")
    raise _reject(sql, f"{_statement_name(kind, body)} statements are not allowed")


def _statement_name(kind: duckdb.StatementType, body: str) -> str:
    """Name a statement by its first keyword, which the user wrote.

    DuckDB's statement type can name another statement: it reports INSTALL as LOAD,
    CHECKPOINT as CALL, USE and RESET as SET, ANALYZE as VACUUM. A statement that starts
    with WITH is named by its type (INSERT, DELETE, …).
    """
    match = _FIRST_KEYWORD.match(body)
    if match is None or match.group(1).upper() == "WITH":
        return kind.name
    return match.group(1).upper()


def _open_sandboxed(lake: Lake) -> duckdb.DuckDBPyConnection:
    path = catalog_path(lake)
    if not _catalog_is_current(lake, path):
        refresh_catalog(lake)
    # The keys are registered before the configuration is locked below.
    connection = reading.connect(lake, str(path), read_only=True)
    register_encrypted_files(lake, connection)
    # The views read Parquet under tables/; every other file, extension and setting is
    # closed, and the lock stops a query from reopening them.
    separator = "/" if lake.is_remote else os.sep
    tables_dirs = [url + separator for url in lake.storage.url_aliases("tables")]
    connection.execute("SET allowed_directories = ?", [tables_dirs])
    connection.execute("SET enable_external_access = false")
    connection.execute("SET autoinstall_known_extensions = false")
    connection.execute("SET autoload_known_extensions = false")
    connection.execute("SET lock_configuration = true")
    return connection


def run_sql(
    lake: Lake,
    sql: str,
    *,
    timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
    max_rows: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only statement against the catalog; return column names and rows.

    The statement is checked with ``check_read_only``, then runs on a read-only
    connection that can read only the lake's tables. A query still running after
    ``timeout_seconds`` is interrupted and raises QueryError. ``max_rows`` caps the rows
    returned.
    """
    check_read_only(sql)
    connection = _open_sandboxed(lake)
    timer = None
    if timeout_seconds is not None:
        timer = threading.Timer(timeout_seconds, connection.interrupt)
        timer.daemon = True
        timer.start()
    try:
        result = connection.execute(sql)
        columns = [column[0] for column in result.description or []]
        rows = result.fetchall() if max_rows is None else result.fetchmany(max_rows)
    except duckdb.InterruptException as error:
        raise _query_error(
            sql,
            f"the query timed out after {timeout_seconds} s and was interrupted; "
            "narrow it with filters or a LIMIT, or allow more time "
            "(`m365lake sql --timeout`, or run_sql's timeout_seconds)",
        ) from error
    except duckdb.Error as error:
        if reading.may_be_damage(error):
            entries = [item.entry for item in lake.live_files()]
            damage = reading.read_error(lake, entries, error)
            if damage is not error:
                raise damage from error
        raise _query_error(sql, f"the query failed in DuckDB: {error}") from error
    finally:
        if timer is not None:
            timer.cancel()
        connection.close()
    return columns, rows
