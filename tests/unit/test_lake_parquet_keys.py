"""Parquet encryption as pyarrow writes it and DuckDB reads it, with the installed versions.

These tests pin the facts the Parquet part of encryption at rest is designed on. When a
DuckDB or pyarrow upgrade changes one, a test here fails and the design needs a look.
"""

from __future__ import annotations

import base64
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
import pytest

from m365lake.errors import ConfigError, LakeKeyError
from m365lake.lake.encryption import KeyRing
from m365lake.lake.parquet_keys import (
    decryption_properties,
    duckdb_key_name,
    encryption_properties,
    parquet_key,
    register_duckdb_keys,
    scan_sql,
)

KEYS_1 = KeyRing(keys={"k1": bytes(range(32))}, current="k1")
ROTATED = KeyRing(keys={"k1": bytes(range(32)), "k-2.b": bytes(range(40, 72))}, current="k-2.b")
TABLE = pa.table({"message_id": ["m1", "m2", "m3"], "subject": ["budget", "memo", "o'brien"]})


def write(path: Path, keys: KeyRing | None, table: pa.Table = TABLE) -> Path:
    properties = encryption_properties(keys)[1] if keys is not None else None
    with pq.ParquetWriter(path, table.schema, encryption_properties=properties) as writer:
        writer.write_table(table)
    return path


def session(keys: KeyRing) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    register_duckdb_keys(connection, keys)
    return connection


def test_parquet_key_differs_per_key_id() -> None:
    master = bytes(range(32))

    assert parquet_key(master, "k1") != parquet_key(master, "k2")
    assert parquet_key(master, "k1") != master
    assert len(parquet_key(master, "k1")) == 32


def test_file_encrypted_on_disk(tmp_path: Path) -> None:
    path = write(tmp_path / "e.parquet", KEYS_1)

    data = path.read_bytes()

    assert data.endswith(b"PARE")
    assert b"budget" not in data
    assert b"message_id" not in data


def test_pyarrow_reads_with_decryption_properties(tmp_path: Path) -> None:
    path = write(tmp_path / "e.parquet", KEYS_1)
    properties = decryption_properties(KEYS_1, "k1", str(path))

    assert pq.ParquetFile(path, decryption_properties=properties).read() == TABLE


def test_duckdb_reads_what_pyarrow_wrote(tmp_path: Path) -> None:
    path = write(tmp_path / "e.parquet", KEYS_1)

    rows = session(KEYS_1).execute(scan_sql({"k1": [str(path)]})).fetchall()

    assert sorted(rows) == [("m1", "budget"), ("m2", "memo"), ("m3", "o'brien")]


def test_duckdb_rejects_stored_aad_prefix(tmp_path: Path) -> None:
    """Why files are not bound to their paths by an AAD prefix."""
    key = parquet_key(KEYS_1.keys["k1"], "k1")
    path = tmp_path / "aad.parquet"
    properties = pe.create_encryption_properties(key, aad_prefix=b"tables/runs/aad.parquet")
    pq.write_table(TABLE, path, encryption_properties=properties)

    with pytest.raises(duckdb.InvalidInputException, match="AES tag"):
        session(KEYS_1).execute(scan_sql({"k1": [str(path)]})).fetchall()


def test_duckdb_rejects_mixed_files_in_one_call(tmp_path: Path) -> None:
    encrypted = write(tmp_path / "e.parquet", KEYS_1)
    plain = write(tmp_path / "p.parquet", None)
    statement = (
        f"SELECT count(*) FROM read_parquet(['{encrypted}', '{plain}'], "
        f"encryption_config = {{footer_key: '{duckdb_key_name('k1')}'}})"
    )

    with pytest.raises(duckdb.InvalidInputException, match="is not encrypted"):
        session(KEYS_1).execute(statement).fetchall()


def test_scan_reads_plain_and_rotated_files(tmp_path: Path) -> None:
    plain = write(tmp_path / "p.parquet", None)
    old = write(tmp_path / "old.parquet", KEYS_1)
    new_table = TABLE.append_column("size", pa.array([1, 2, 3], pa.int64()))
    new = write(tmp_path / "new.parquet", ROTATED, new_table)
    statement = scan_sql(
        {None: [str(plain)], "k1": [str(old)], "k-2.b": [str(new)]}, "union_by_name = true"
    )

    rows = session(ROTATED).execute(f"SELECT subject, size FROM ({statement})").fetchall()

    assert len(rows) == 9
    assert sorted(size for _, size in rows if size is not None) == [1, 2, 3]
    assert sum(subject == "o'brien" for subject, _ in rows) == 3


def test_scan_quotes_paths(tmp_path: Path) -> None:
    folder = tmp_path / "it's here"
    folder.mkdir()
    path = write(folder / "e.parquet", KEYS_1)

    rows = session(KEYS_1).execute(f"SELECT count(*) FROM ({scan_sql({'k1': [str(path)]})})")

    assert rows.fetchall() == [(3,)]


def test_flipped_byte_fails_in_both_readers(tmp_path: Path) -> None:
    path = write(tmp_path / "e.parquet", KEYS_1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(duckdb.InvalidInputException, match="AES tag"):
        session(KEYS_1).execute(scan_sql({"k1": [str(path)]})).fetchall()
    with pytest.raises(OSError, match="decryption"):
        pq.ParquetFile(path, decryption_properties=decryption_properties(KEYS_1, "k1", "e")).read()


def test_wrong_key_fails_in_duckdb(tmp_path: Path) -> None:
    path = write(tmp_path / "e.parquet", KEYS_1)
    other = KeyRing(keys={"k1": bytes(range(1, 33))}, current="k1")

    with pytest.raises(duckdb.InvalidInputException, match="AES tag"):
        session(other).execute(scan_sql({"k1": [str(path)]})).fetchall()


def test_missing_key_names_key_id() -> None:
    with pytest.raises(LakeKeyError, match="key id 'k9', which is not loaded") as raised:
        decryption_properties(KEYS_1, "k9", "tables/runs/x.parquet")

    assert raised.value.key_id == "k9"


def test_no_current_key_rejected() -> None:
    with pytest.raises(ConfigError, match="no current encryption key"):
        encryption_properties(KeyRing())


def test_scan_needs_a_file() -> None:
    with pytest.raises(ValueError, match="at least one file"):
        scan_sql({"k1": []})


def test_registered_key_is_the_derived_key(tmp_path: Path) -> None:
    """A file written with the derived key directly reads through the registered name."""
    key = parquet_key(KEYS_1.keys["k1"], "k1")
    path = tmp_path / "direct.parquet"
    pq.write_table(TABLE, path, encryption_properties=pe.create_encryption_properties(key))
    connection = duckdb.connect()
    connection.execute(
        f"PRAGMA add_parquet_key('direct', '{base64.b64encode(key).decode('ascii')}')"
    )

    rows = connection.execute(
        f"SELECT count(*) FROM read_parquet('{path}', encryption_config = {{footer_key: 'direct'}})"
    ).fetchall()

    assert rows == [(3,)]


def test_duckdb_fails_nested_and_filtered_reads(tmp_path: Path) -> None:
    """Why lake/reading.py decrypts with pyarrow instead of handing DuckDB the key.

    DuckDB 2.0.1 fails the AES tag of a nested column, and of any scan that a filter
    is pushed into, in files pyarrow encrypted. When this test fails, DuckDB reads
    them and the reads could go back to ``read_parquet``.
    """
    nested = TABLE.append_column("to", pa.array([["a"], [], ["b", "c"]], pa.list_(pa.string())))
    path = write(tmp_path / "nested.parquet", KEYS_1, nested)
    connection = session(KEYS_1)
    source = f"({scan_sql({'k1': [str(path)]})})"

    assert connection.execute(f"SELECT count(*) FROM {source}").fetchall() == [(3,)]
    with pytest.raises(duckdb.InvalidInputException, match="AES tag"):
        connection.execute(f'SELECT "to" FROM {source}').fetchall()
    with pytest.raises(duckdb.InvalidInputException, match="AES tag"):
        connection.execute(f"SELECT subject FROM {source} WHERE message_id = 'm2'").fetchall()
