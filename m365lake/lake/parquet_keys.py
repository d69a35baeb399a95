"""Parquet Modular Encryption keys, and the DuckDB facts that shaped how tables are read.

``Transaction`` encrypts each table file with ``encryption_properties`` and
``m365lake.lake.reading`` decrypts with ``decryption_properties``, both in pyarrow.

Facts the design rests on, each checked in ``tests/unit/test_lake_parquet_keys.py``
against the installed pyarrow and DuckDB:

- pyarrow writes uniform encryption (one key for the footer and every column) with a
  key it is given directly, and reads it back with the same key;
- DuckDB's ``read_parquet(..., encryption_config = {footer_key: ...})`` reads such a file
  only in the simplest scans. DuckDB 2.0.1 fails the AES tag of any nested column and of
  any scan a filter is pushed into, so the lake's readers never hand DuckDB a key:
  pyarrow decrypts and DuckDB scans Arrow data (see ``reading``);
- DuckDB rejects a file when pyarrow also stored an AAD prefix, and one ``read_parquet``
  call takes one key and rejects unencrypted files next to encrypted ones. Files are
  therefore not bound to their paths by an AAD prefix, which keeps DuckDB's own reader
  an option once it reads these files;
- a changed byte fails GCM authentication in both pyarrow and DuckDB.

``register_duckdb_keys`` and the key form of ``scan_sql`` are kept for those checks and
for an analyst who reads the flat columns of an encrypted file in a plain DuckDB
session. The product reads unencrypted files only with ``scan_sql``.

The Parquet key of a key id is derived from its master key with HKDF-SHA256, so blob
keys and Parquet keys differ. Every file of one key id shares that key.

NOTE: a GCM key used with random 12-byte nonces should be replaced well before 2**32
encryptions. Each page, page header and footer is one encryption, so an estimate puts
that at billions of pages under one key id: rotate keys yearly to stay far from it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import duckdb
import pyarrow.parquet.encryption as pe
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from m365lake.errors import ConfigError, LakeKeyError
from m365lake.lake.encryption import KEY_BYTES, WHERE_KEYS_COME_FROM, KeyRing

_HKDF_INFO = b"m365lake parquet v1"


def parquet_key(master: bytes, key_id: str) -> bytes:
    """Return the AES-256 key that encrypts the Parquet files of key id ``key_id``."""
    derived = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=key_id.encode(), info=_HKDF_INFO
    )
    return derived.derive(master)


def duckdb_key_name(key_id: str) -> str:
    """Return the name under which DuckDB stores the Parquet key of ``key_id``."""
    return f"m365lake_{key_id.replace('.', '_').replace('-', '_')}"


def encryption_properties(keys: KeyRing) -> tuple[str, pe.FileEncryptionProperties]:
    """Return the current key id and the properties that make pyarrow encrypt with it."""
    if keys.current is None:
        raise ConfigError(f"no current encryption key; {WHERE_KEYS_COME_FROM}")
    key = parquet_key(keys.keys[keys.current], keys.current)
    return keys.current, pe.create_encryption_properties(key)


def decryption_properties(keys: KeyRing, key_id: str, location: str) -> pe.FileDecryptionProperties:
    """Return the properties that let pyarrow read ``location``, written under ``key_id``."""
    master = keys.keys.get(key_id)
    if master is None:
        loaded = ", ".join(sorted(keys.keys)) or "none"
        raise LakeKeyError(
            f"{location} is encrypted with key id {key_id!r}, which is not loaded "
            f"(loaded: {loaded}); {WHERE_KEYS_COME_FROM}: add key {key_id!r} there",
            key_id=key_id,
        )
    return pe.create_decryption_properties(parquet_key(master, key_id))


def register_duckdb_keys(connection: duckdb.DuckDBPyConnection, keys: KeyRing) -> None:
    """Add the Parquet key of every loaded key id to a DuckDB session.

    DuckDB keeps them in memory for the session only. The statement cannot take
    parameters, so the key is written into it. Key ids are letters, digits, '.', '_'
    and '-', and base64 has no quote, so neither can break out of the literal.
    """
    for key_id, master in keys.keys.items():
        encoded = base64.b64encode(parquet_key(master, key_id)).decode("ascii")
        connection.execute(f"PRAGMA add_parquet_key('{duckdb_key_name(key_id)}', '{encoded}')")


def scan_sql(files_by_key: Mapping[str | None, Sequence[str]], options: str = "") -> str:
    """Return a query over every file, one ``read_parquet`` per key id (None: unencrypted).

    ``options`` is added to every call, e.g. ``"union_by_name = true, filename = true"``.
    Paths are quoted as SQL string literals, and the parts are joined with UNION ALL BY
    NAME so files of different schema versions line up as ``union_by_name`` does.
    """
    parts = []
    for key_id, files in sorted(files_by_key.items(), key=lambda item: item[0] or ""):
        if not files:
            continue
        listed = ", ".join("'" + str(path).replace("'", "''") + "'" for path in files)
        settings = [options] if options else []
        if key_id is not None:
            settings.append(f"encryption_config = {{footer_key: '{duckdb_key_name(key_id)}'}}")
        arguments = ", ".join([f"[{listed}]", *settings])
        parts.append(f"SELECT * FROM read_parquet({arguments})")
    if not parts:
        raise ValueError("scan_sql needs at least one file")
    return " UNION ALL BY NAME ".join(parts)
