"""DuckDB catalog views over committed files and the read-only SQL guard."""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from m365lake import catalog
from m365lake.errors import QueryError
from m365lake.lake import SCHEMAS, Lake

T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def msg(message_id: str, change: str, at: datetime, **fields: Any) -> dict[str, Any]:
    row = {"mailbox_id": "u1", "message_id": message_id, "change": change, "captured_at": at,
           "subject": fields.pop("subject", message_id), "folder_id": "inbox"}
    if change == "deleted":
        row["deleted_at"] = at
    row.update(fields)
    return row


def folder(folder_id: str, change: str, at: datetime, name: str) -> dict[str, Any]:
    row = {"mailbox_id": "u1", "folder_id": folder_id, "change": change, "captured_at": at,
           "display_name": name, "folder_path": name}
    if change == "deleted":
        row["deleted_at"] = at
    return row


def commit(lake: Lake, run_id: str, **tables: list[dict[str, Any]]) -> dict[str, Any]:
    with lake.begin(run_id=run_id, kind="mail", container="u1") as tx:
        for table, rows in tables.items():
            partition = {"mailbox_id": "u1"} if table in ("messages", "folders") else {}
            tx.write_rows(table, rows, partition=partition)
        return tx.commit()


def query(lake: Lake, sql: str) -> list[tuple[Any, ...]]:
    return catalog.run_sql(lake, sql)[1]


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(tmp_path / "lake")


@pytest.fixture
def history(lake: Lake) -> Lake:
    """Three runs: m1 edited, m2 deleted, m3 deleted then seen again; one folder removed."""
    commit(lake, "r1",
           messages=[msg("m1", "created", T0, subject="v1"), msg("m2", "created", T0),
                     msg("m3", "created", T0)],
           folders=[folder("inbox", "created", T0, "Inbox"), folder("old", "created", T0, "Old")],
           mailboxes=[{"mailbox_id": "u1", "display_name": "Before", "captured_at": T0}])
    commit(lake, "r2",
           messages=[msg("m1", "updated", T0 + DAY, subject="v2"),
                     msg("m2", "deleted", T0 + DAY), msg("m3", "deleted", T0 + DAY)],
           folders=[folder("old", "deleted", T0 + DAY, "Old"),
                    folder("inbox", "updated", T0 + DAY, "Inbox renamed")],
           mailboxes=[{"mailbox_id": "u1", "display_name": "After", "captured_at": T0 + DAY}])
    commit(lake, "r3", messages=[msg("m3", "created", T0 + 2 * DAY, subject="m3 again")])
    return lake


def test_messages_are_latest_live_versions(history: Lake) -> None:
    rows = query(history, "SELECT message_id, subject, change, deleted_at FROM messages ORDER BY 1")

    assert rows == [("m1", "v2", "updated", None), ("m3", "m3 again", "created", None)]


def test_message_versions_fill_deleted_at(history: Lake) -> None:
    rows = query(history, "SELECT message_id, subject, deleted_at FROM message_versions "
                          "ORDER BY message_id, captured_at")

    assert rows == [
        ("m1", "v1", None),
        ("m1", "v2", None),
        ("m2", "m2", T0 + DAY),
        ("m3", "m3", T0 + DAY),
        ("m3", "m3 again", None),
    ]


def test_messages_as_of_point_in_time(history: Lake) -> None:
    def live(ts: str) -> list[tuple[Any, ...]]:
        return query(history, f"SELECT message_id, subject FROM messages_as_of('{ts}') ORDER BY 1")

    assert live("2023-12-31T00:00:00Z") == []
    assert live("2024-01-01T12:00:00Z") == [("m1", "v1"), ("m2", "m2"), ("m3", "m3")]
    assert live("2024-01-02T12:00:00Z") == [("m1", "v2")]
    assert live("2024-01-03T00:00:00Z") == [("m1", "v2"), ("m3", "m3 again")]


def test_folders_are_current(history: Lake) -> None:
    assert query(history, "SELECT folder_id, display_name FROM folders") == [
        ("inbox", "Inbox renamed")]
    assert query(history, "SELECT folder_id, deleted_at FROM folder_versions "
                          "WHERE folder_id = 'old'") == [("old", T0 + DAY)]


def test_mailboxes_latest_per_id(history: Lake) -> None:
    assert query(history, "SELECT mailbox_id, display_name FROM mailboxes") == [("u1", "After")]


def test_same_instant_versions_ordered_by_commit(lake: Lake) -> None:
    commit(lake, "r1", messages=[msg("m1", "created", T0, subject="first")])
    commit(lake, "r2", messages=[msg("m1", "updated", T0, subject="second")])

    assert query(lake, "SELECT subject FROM messages") == [("second",)]


def test_views_match_table_columns(history: Lake) -> None:
    for table in ("messages", "folders", "mailboxes", "attachments", "failures", "runs"):
        columns, _ = catalog.run_sql(history, f"SELECT * FROM {table} LIMIT 0")
        assert columns == SCHEMAS[table].names, table
    columns, _ = catalog.run_sql(history, "SELECT * FROM message_versions LIMIT 0")
    assert columns == SCHEMAS["messages"].names


def test_files_older_than_a_column_read_it_as_null(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    added = ("shared_scope", "shared_by", "shared_at")
    current = SCHEMAS["drive_items"]
    older = pa.schema([field for field in current if field.name not in added])
    row = {"drive_id": "d1", "item_id": "i1", "change": "created", "captured_at": T0,
           "name": "plan.docx", "is_folder": False}
    with monkeypatch.context() as patched:
        patched.setitem(SCHEMAS, "drive_items", older)
        with lake.begin(run_id="r1", kind="files", container="d1") as tx:
            tx.write_rows("drive_items", [row], partition={"drive_id": "d1"})
            tx.commit()

    columns, rows = catalog.run_sql(lake, "SELECT * FROM files")

    assert columns == current.names
    assert len(rows) == 1
    values = dict(zip(columns, rows[0], strict=True))
    assert values["name"] == "plan.docx"
    assert [values[name] for name in added] == [None, None, None]


def test_empty_lake_has_typed_empty_views(lake: Lake) -> None:
    path = catalog.refresh_catalog(lake)

    with duckdb.connect(str(path), read_only=True) as connection:
        for table in SCHEMAS:
            assert connection.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        types = dict(connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'messages'").fetchall())
    assert types["captured_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["to_addresses"] == "VARCHAR[]"
    assert types["mime_inline"] == "BLOB"
    assert types["attachment_count"] == "INTEGER"


def test_catalog_file_opens_with_duckdb(history: Lake) -> None:
    path = catalog.refresh_catalog(history)

    assert path == history.root / "catalog.duckdb"
    with duckdb.connect(str(path), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM messages").fetchone() == (2,)


def test_connect_refreshes_after_new_commit(lake: Lake) -> None:
    commit(lake, "r1", messages=[msg("m1", "created", T0)])
    with catalog.connect(lake) as connection:
        assert connection.execute("SELECT count(*) FROM messages").fetchone() == (1,)

    commit(lake, "r2", messages=[msg("m2", "created", T0)])

    with catalog.connect(lake) as connection:
        assert connection.execute("SELECT count(*) FROM messages").fetchone() == (2,)


def test_connect_is_read_only_by_default(history: Lake) -> None:
    with catalog.connect(history) as connection, pytest.raises(duckdb.Error):
        connection.execute("CREATE TABLE x (a INTEGER)")


def test_uncommitted_files_invisible(lake: Lake) -> None:
    commit(lake, "r1", messages=[msg("m1", "created", T0)])
    tx = lake.begin(run_id="open", kind="mail", container="u1", flush_rows=1)
    tx.write_rows("messages", [msg("m2", "created", T0), msg("m3", "created", T0)],
                  partition={"mailbox_id": "u1"})

    assert len(list((lake.root / "tables" / "messages").rglob("*.parquet"))) == 2
    assert query(lake, "SELECT message_id FROM messages") == [("m1",)]
    tx.abort()


def _write_then_die(root: str) -> None:
    lake = Lake.open(root)
    tx = lake.begin(run_id="killed", kind="mail", container="u1", flush_rows=5)
    tx.write_rows("messages", [msg(f"k{i}", "created", T0) for i in range(20)],
                  partition={"mailbox_id": "u1"})
    os.kill(os.getpid(), signal.SIGKILL)


def test_killed_run_invisible_to_catalog(lake: Lake) -> None:
    commit(lake, "r1", messages=[msg("m1", "created", T0)])
    process = multiprocessing.get_context("spawn").Process(
        target=_write_then_die, args=(str(lake.root),))
    process.start()
    process.join(60)

    assert process.exitcode == -signal.SIGKILL
    assert any(p.name.startswith("killed-") for p in (lake.root / "tables").rglob("*.parquet"))
    assert query(lake, "SELECT message_id FROM messages") == [("m1",)]
    assert query(lake, "SELECT count(*) FROM messages_rows") == [(1,)]


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
    "VALUES (1), (2)",
    "FROM messages",
    "DESCRIBE messages",
    "SHOW TABLES",
    "SUMMARIZE SELECT 1",
    "EXPLAIN SELECT * FROM messages",
    "PRAGMA show_tables",
    "PRAGMA table_info('messages')",
    "-- leading comment\nSELECT 2",
])
def test_run_sql_accepts_read_only(history: Lake, sql: str) -> None:
    columns, _ = catalog.run_sql(history, sql)

    assert columns


@pytest.mark.parametrize(("sql", "reason"), [
    ("INSERT INTO lake_files VALUES ('x', 'messages', 1, 0, 'r')", "INSERT"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("COPY messages TO '/tmp/out.csv'", "COPY"),
    ("ATTACH '/tmp/other.duckdb' AS other", "ATTACH"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("SELECT 1; DROP VIEW messages", "one statement"),
    ("WITH a AS (SELECT 1) INSERT INTO lake_files SELECT * FROM a", "INSERT"),
    ("EXPLAIN ANALYZE DELETE FROM lake_files", "EXPLAIN"),
    ("PRAGMA enable_profiling", "PRAGMA enable_profiling"),
    ("SET threads = 1", "SET"),
    ("INSTALL httpfs", "INSTALL statements"),
    ("LOAD httpfs", "LOAD statements"),
    ("CHECKPOINT", "CHECKPOINT statements"),
    ("USE memory", "USE statements"),
    ("RESET threads", "RESET statements"),
    ("CALL pragma_show_tables()", "CALL"),
    ("", "one statement"),
])
def test_run_sql_rejects_writes(history: Lake, sql: str, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        catalog.run_sql(history, sql)

    message = str(caught.value)
    assert reason in message
    assert "`m365lake sql` runs only" in message
    assert "SELECT" in message
    assert "DESCRIBE" in message
    assert "show_tables" in message
    assert "run_sql accepts" not in message
    assert caught.value.attrs()["sql"] == sql


def test_run_sql_syntax_error_shows_position_only(history: Lake) -> None:
    with pytest.raises(QueryError) as caught:
        catalog.run_sql(history, "SELECT 1 FORM messages")

    message = str(caught.value)
    assert "could not be parsed" in message
    assert "syntax error" in message
    assert "LINE 1" in message
    assert "^" in message
    assert "DESCRIBE" not in message


def test_allowed_pragmas_all_run(history: Lake) -> None:
    arguments = {"table_info": "('messages')", "storage_info": "('lake_files')"}
    for name in catalog.ALLOWED_PRAGMAS:
        statement = f"PRAGMA {name}{arguments.get(name, '')}"

        columns, _ = catalog.run_sql(history, statement)

        assert columns, statement


def test_moved_lake_rebuilds_catalog(history: Lake, tmp_path: Path) -> None:
    catalog.refresh_catalog(history)
    moved = tmp_path / "moved"
    history.root.rename(moved)

    rows = query(Lake.open(moved, create=False), "SELECT message_id FROM messages ORDER BY 1")

    assert rows == [("m1",), ("m3",)]
    with duckdb.connect(str(moved / "catalog.duckdb"), read_only=True) as connection:
        paths = [row[0] for row in connection.execute("SELECT path FROM lake_files").fetchall()]
        root = connection.execute("SELECT lake_root FROM catalog_head").fetchone()
    assert paths
    assert all(path.startswith(str(moved)) for path in paths)
    assert root == (str(moved),)


def test_copied_lake_does_not_read_original(history: Lake, tmp_path: Path) -> None:
    import shutil

    catalog.refresh_catalog(history)
    copy = tmp_path / "copy"
    shutil.copytree(history.root, copy)
    shutil.rmtree(history.root / "tables")

    rows = query(Lake.open(copy, create=False), "SELECT count(*) FROM messages")

    assert rows == [(2,)]


def test_run_sql_cannot_read_outside_tables(history: Lake, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for analysts")

    with pytest.raises(QueryError, match="disabled by configuration"):
        catalog.run_sql(history, f"SELECT * FROM read_text('{secret}')")


def test_run_sql_times_out(lake: Lake) -> None:
    with pytest.raises(QueryError, match="timed out"):
        catalog.run_sql(lake, "SELECT count(*) FROM range(1000000000000) AS a",
                        timeout_seconds=0.2)


def test_run_sql_max_rows(history: Lake) -> None:
    columns, rows = catalog.run_sql(history, "SELECT * FROM range(100)", max_rows=7)

    assert columns == ["range"]
    assert len(rows) == 7


def test_read_only_lake_still_queryable(
    history: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, which file modes do not stop, so the read-only lake is simulated
    # at the two points that write: the catalog location and the state cache.
    monkeypatch.setattr(catalog, "lake_is_writable", lambda lake: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (history.root / "state" / "cache.json").unlink(missing_ok=True)
    reopened = Lake.open(history.root, create=False)

    def read_only_publish(*args: Any, **kwargs: Any) -> None:
        raise PermissionError("Read-only file system")

    monkeypatch.setattr(reopened.storage, "publish", read_only_publish)

    rows = query(reopened, "SELECT count(*) FROM message_versions")

    assert rows[0][0] > 0
    assert not (history.root / "catalog.duckdb").exists()
    assert catalog.catalog_path(reopened).is_relative_to(tmp_path / "cache")
    assert reopened.state_items("") is not None
