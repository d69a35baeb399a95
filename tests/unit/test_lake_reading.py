"""Encrypted table files: what Transaction writes, and how reading.py reads them back."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from m365lake.errors import LakeIntegrityError, LakeKeyError
from m365lake.lake import Lake
from m365lake.lake.encryption import ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_FILE
from m365lake.lake.reading import TableScan, connect, read_metadata, read_table

CAPTURED = datetime(2024, 3, 1, 12, tzinfo=UTC)
K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(50, 82))).decode()
OTHER = base64.b64encode(bytes(range(100, 132))).decode()
SUBJECT = "Quarterly lanternfish forecast"


def message(index: int, subject: str = SUBJECT) -> dict[str, Any]:
    return {
        "mailbox_id": "u1",
        "message_id": f"m{index}",
        "change": "created",
        "captured_at": CAPTURED,
        "subject": f"{subject} {index}",
        "to_addresses": ["dana.whitfield@contoso.example"],
        "mime_sha256": f"{index:064x}",
        "mime_inline": f"Subject: {subject}\r\n\r\nbody {index}".encode(),
    }


def use_key(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    monkeypatch.delenv(ENV_ENCRYPTION_KEY_FILE, raising=False)
    if value is None:
        monkeypatch.delenv(ENV_ENCRYPTION_KEY, raising=False)
    else:
        monkeypatch.setenv(ENV_ENCRYPTION_KEY, value)


def use_key_file(
    monkeypatch: pytest.MonkeyPatch, path: Path, current: str, keys: dict[str, str]
) -> None:
    path.write_text(json.dumps({"current": current, "keys": keys}))
    path.chmod(0o600)
    monkeypatch.delenv(ENV_ENCRYPTION_KEY, raising=False)
    monkeypatch.setenv(ENV_ENCRYPTION_KEY_FILE, str(path))


def commit(lake: Lake, run_id: str, indices: range) -> dict[str, Any]:
    with lake.begin(run_id=run_id, kind="mail", container="u1") as tx:
        tx.write_rows("messages", [message(i) for i in indices], partition={"mailbox_id": "u1"})
        manifest = tx.commit()
    [entry] = manifest["files"]
    return entry


def subjects(lake: Lake) -> list[str]:
    scan = TableScan(lake, lake.committed_entries("messages"))
    with connect(lake) as db, scan.errors():
        source = scan.sql("union_by_name = true", connection=db)
        rows = db.execute(f"SELECT subject, to_addresses FROM {source}").fetchall()
    # A list column, which DuckDB cannot decrypt itself, reads back too.
    assert {tuple(addresses) for _, addresses in rows} == {("dana.whitfield@contoso.example",)}
    return sorted(subject for subject, _ in rows)


def test_encrypted_file_hides_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, f"k1:{K1}")
    lake = Lake.open(tmp_path / "lake")

    entry = commit(lake, "run-1", range(3))

    data = (lake.root / entry["path"]).read_bytes()
    assert data.endswith(b"PARE")
    assert SUBJECT.encode() not in data
    assert b"dana.whitfield" not in data
    assert b"mailbox_id" not in data
    assert entry["key_id"] == "k1"
    assert len(bytes.fromhex(entry["key_check"])) == 8


def test_unencrypted_entry_has_no_key_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, None)
    lake = Lake.open(tmp_path / "lake")

    entry = commit(lake, "run-1", range(2))

    assert "key_id" not in entry
    assert SUBJECT.encode() in (lake.root / entry["path"]).read_bytes()


def test_scan_reads_encrypted_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, f"k1:{K1}")
    lake = Lake.open(tmp_path / "lake")
    commit(lake, "run-1", range(3))

    assert subjects(lake) == [f"{SUBJECT} {i}" for i in range(3)]


def test_plaintext_then_rotated_keys_all_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_key(monkeypatch, None)
    first = commit(Lake.open(tmp_path / "lake"), "run-1", range(0, 2))
    use_key(monkeypatch, f"k1:{K1}")
    second = commit(Lake.open(tmp_path / "lake"), "run-2", range(2, 4))
    use_key_file(monkeypatch, tmp_path / "keys.json", "k2", {"k1": K1, "k2": K2})
    lake = Lake.open(tmp_path / "lake")
    third = commit(lake, "run-3", range(4, 6))

    assert [entry.get("key_id") for entry in (first, second, third)] == [None, "k1", "k2"]
    assert subjects(lake) == [f"{SUBJECT} {i}" for i in range(6)]
    for entry in (first, second, third):
        assert read_table(lake, entry, ["message_id"]).num_rows == 2


def test_file_position_orders_rows_across_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_key(monkeypatch, None)
    commit(Lake.open(tmp_path / "lake"), "run-1", range(0, 1))
    use_key(monkeypatch, f"k1:{K1}")
    lake = Lake.open(tmp_path / "lake")
    commit(lake, "run-2", range(1, 2))
    scan = TableScan(lake, lake.committed_entries("messages"))

    with connect(lake) as db:
        query = (
            "SELECT message_id, list_position($files, filename) AS position, "
            "file_row_number, to_addresses "
            f"FROM {scan.sql('filename = true, file_row_number = true', connection=db)} "
            "ORDER BY position"
        )
        rows = db.execute(query, {"files": scan.locations}).fetchall()

    address = ["dana.whitfield@contoso.example"]
    assert rows == [("m0", 1, 0, address), ("m1", 2, 0, address)]


def test_scan_without_position_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, f"k1:{K1}")
    lake = Lake.open(tmp_path / "lake")
    commit(lake, "run-1", range(2))
    scan = TableScan(lake, lake.committed_entries("messages"))

    with connect(lake) as db:
        columns = db.execute(f"SELECT * FROM {scan.sql(connection=db)}").description

    names = [column[0] for column in columns or []]
    assert "filename" not in names
    assert "file_row_number" not in names
    assert "to_addresses" in names


def test_nested_scan_needs_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, f"k1:{K1}")
    lake = Lake.open(tmp_path / "lake")
    commit(lake, "run-1", range(2))

    with pytest.raises(ValueError, match="needs connection="):
        TableScan(lake, lake.committed_entries("messages")).sql()


def test_missing_key_names_key_id_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, f"k1:{K1}")
    entry = commit(Lake.open(tmp_path / "lake"), "run-1", range(2))
    use_key(monkeypatch, f"k2:{K2}")
    lake = Lake.open(tmp_path / "lake")

    with pytest.raises(LakeKeyError, match="key id 'k1', which is not loaded") as raised:
        TableScan(lake, lake.committed_entries("messages"))

    assert entry["path"] in str(raised.value)
    assert ENV_ENCRYPTION_KEY in str(raised.value)
    with pytest.raises(LakeKeyError, match="'k1'"):
        read_table(lake, entry)


def test_wrong_key_under_right_id_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, f"k1:{K1}")
    entry = commit(Lake.open(tmp_path / "lake"), "run-1", range(2))
    use_key(monkeypatch, f"k1:{OTHER}")
    lake = Lake.open(tmp_path / "lake")

    with pytest.raises(LakeKeyError, match="different key") as raised:
        TableScan(lake, lake.committed_entries("messages"))

    assert entry["path"] in str(raised.value)
    with pytest.raises(LakeKeyError, match="different key"):
        read_metadata(lake, entry)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_fails_integrity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, f"k1:{K1}")
    lake = Lake.open(tmp_path / "lake")
    commit(lake, "run-1", range(2))
    entry = commit(lake, "run-2", range(2, 4))
    flip_byte(lake.root / entry["path"])

    with pytest.raises(LakeIntegrityError, match="differ from the SHA-256") as raised:
        subjects(lake)

    assert entry["path"] in str(raised.value)
    with pytest.raises(LakeIntegrityError, match=entry["path"]):
        read_table(lake, entry)
    _, problems = lake.check(blobs=False)
    assert len(problems) == 1
    assert entry["path"] in problems[0]


def test_verify_needs_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_key(monkeypatch, f"k1:{K1}")
    entry = commit(Lake.open(tmp_path / "lake"), "run-1", range(2))
    flip_byte(tmp_path / "lake" / entry["path"])
    use_key(monkeypatch, None)

    _, problems = Lake.open(tmp_path / "lake").check(blobs=False)

    assert len(problems) == 1
    assert entry["path"] in problems[0]


def test_missing_file_keeps_reader_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A purge deletes replaced files after its commit; callers treat that as a race."""
    use_key(monkeypatch, f"k1:{K1}")
    lake = Lake.open(tmp_path / "lake")
    entry = commit(lake, "run-1", range(2))
    (lake.root / entry["path"]).unlink()

    with pytest.raises(OSError):
        read_table(lake, entry)


def test_row_numbers_follow_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Encrypted files get file_row_number from the scan order, which must be file order."""
    use_key(monkeypatch, f"k1:{K1}")
    lake = Lake.open(tmp_path / "lake", flush_rows=997)
    commit(lake, "run-1", range(20_000))
    [entry] = lake.committed_entries("messages")
    assert read_metadata(lake, entry).num_row_groups > 10
    scan = TableScan(lake, [entry])

    with connect(lake) as db:
        db.execute("SET threads = 4")
        source = scan.sql("file_row_number = true", connection=db)
        misplaced = db.execute(
            f"SELECT count(*) FROM {source} "
            "WHERE message_id <> 'm' || CAST(file_row_number AS VARCHAR)"
        ).fetchone()

    assert misplaced == (0,)


def test_filters_and_joins_on_encrypted_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Query shapes that make DuckDB skip data; its own decryption fails on each of them."""
    use_key(monkeypatch, f"k1:{K1}")
    lake = Lake.open(tmp_path / "lake", flush_rows=500)
    commit(lake, "run-1", range(3000))
    scan = TableScan(lake, lake.committed_entries("messages"))

    with connect(lake) as db:
        source = scan.sql("union_by_name = true", connection=db)
        filtered = db.execute(f"SELECT subject FROM {source} WHERE message_id = 'm7'").fetchall()
        top = db.execute(
            f"SELECT message_id FROM {source} ORDER BY mime_sha256 DESC LIMIT 1"
        ).fetchall()
        joined = db.execute(
            f"SELECT count(*) FROM {source} AS m JOIN (VALUES ('m1'), ('m2')) AS k(id) "
            "ON m.message_id = k.id"
        ).fetchall()
        nested = db.execute(
            f"SELECT count(*) FROM {source} "
            "WHERE list_contains(to_addresses, 'dana.whitfield@contoso.example')"
        ).fetchall()

    assert filtered == [(f"{SUBJECT} 7",)]
    assert top == [("m2999",)]
    assert joined == [(2,)]
    assert nested == [(3000,)]
