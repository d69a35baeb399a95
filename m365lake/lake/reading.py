"""Reads of committed table files, encrypted or not, through DuckDB and pyarrow.

Every read of a lake Parquet file goes through this module, because the reader needs
the key id that the file's manifest entry records (``key_id``, absent when the file is
unencrypted):

- ``connect`` opens a DuckDB connection with the Parquet key of every loaded key id;
- ``TableScan`` turns a set of manifest entries into the SQL source that reads them,
  one ``read_parquet`` per key id joined with UNION ALL BY NAME, because one
  ``read_parquet`` call takes a single key and rejects unencrypted files next to
  encrypted ones;
- ``open_parquet``, ``read_table`` and ``read_metadata`` open one file with pyarrow and
  pass the decryption properties its entry calls for.

Callers hand over manifest entries (lake-relative names), never local paths, so that
the lake can later move to object storage with changes here and in ``storage`` only.

Errors: a key id that is not loaded, or whose loaded key differs from the one that
wrote the file (the entry's ``key_check``), raises LakeKeyError before anything is
read. A read that fails on a file whose bytes no longer match its manifest entry raises
LakeIntegrityError naming that file; AES-GCM makes a changed byte in an encrypted file
fail that way. A file that is missing (a purge removed it meanwhile) keeps the reader's
own error, so callers can tell that race apart from damage.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from m365lake.errors import LakeIntegrityError, LakeKeyError
from m365lake.lake.encryption import WHERE_KEYS_COME_FROM, KeyRing
from m365lake.lake.parquet_keys import decryption_properties, register_duckdb_keys, scan_sql

if TYPE_CHECKING:
    from m365lake.lake.lake import Lake

Entry = Mapping[str, Any]
"""A file's manifest entry: ``path`` (lake-relative), ``sha256``, ``bytes``, ``key_id``…"""

_DECRYPTION_FAILURE = re.compile(r"AES tag|decrypt|encrypted", re.IGNORECASE)
_DAMAGE_SIGNS = re.compile(r"AES tag|decrypt|encrypted|parquet|thrift|corrupt", re.IGNORECASE)


def connect(
    lake: Lake, database: str = ":memory:", *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB connection that can read the lake's encrypted table files."""
    connection = duckdb.connect(database, read_only=read_only)
    register_keys(connection, lake.keys)
    return connection


def register_keys(connection: duckdb.DuckDBPyConnection, keys: KeyRing) -> None:
    """Add the Parquet key of every loaded key id to ``connection``'s database."""
    register_duckdb_keys(connection, keys)


def check_key(keys: KeyRing, entry: Entry) -> str | None:
    """Return the key id of ``entry``'s file (None: unencrypted) after checking it is loaded.

    Raises LakeKeyError naming the key id and the file when the key is not loaded, or
    when the key loaded under that id is not the one that wrote the file.
    """
    key_id = entry.get("key_id")
    if key_id is None:
        return None
    check = entry.get("key_check")
    if check is None:
        decryption_properties(keys, key_id, entry["path"])
    else:
        keys.key_for(key_id, bytes.fromhex(check), f"table file {entry['path']}")
    return str(key_id)


class TableScan:
    """The committed files one DuckDB query reads, grouped by the key that wrote them.

    ``locations`` lists what ``read_parquet``'s ``filename`` column returns for each
    file, in the order of ``entries``. Pass it as a parameter to order rows by file
    position, as in ``list_position($files, filename)``.
    """

    def __init__(self, lake: Lake, entries: Sequence[Entry]) -> None:
        self.lake = lake
        self.entries = list(entries)
        self.locations = [str(lake.storage.path(entry["path"])) for entry in self.entries]
        self._by_key: dict[str | None, list[str]] = {}
        for entry, location in zip(self.entries, self.locations, strict=True):
            key_id = check_key(lake.keys, entry)
            self._by_key.setdefault(key_id, []).append(location)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def sql(self, options: str = "") -> str:
        """Return a parenthesised subquery over every file, with ``read_parquet`` options.

        ``options`` goes into every ``read_parquet`` call, e.g. ``"union_by_name = true,
        filename = true"``. Use the result where the query would name ``read_parquet``.
        """
        return f"({scan_sql(self._by_key, options)})"

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Raise LakeIntegrityError or LakeKeyError for a read of these files that fails.

        Wrap the statements that execute and fetch the query.
        """
        try:
            yield
        except (duckdb.Error, pa.ArrowException, OSError) as error:
            raise read_error(self.lake, self.entries, error) from error


def read_error(lake: Lake, entries: Sequence[Entry], error: Exception) -> Exception:
    """Return the error to raise after reading ``entries`` failed with ``error``.

    A file missing from the lake keeps ``error``: a purge that committed meanwhile
    deletes the files it replaced, and the caller decides whether to run again. Files
    whose SHA-256 differs from their manifest entry make a LakeIntegrityError that names
    them. A decryption failure on unchanged files means the key differs from the one
    that wrote them (a LakeKeyError). Any other failure keeps ``error``.
    """
    if isinstance(error, (LakeIntegrityError, LakeKeyError)):
        return error
    damaged = []
    for entry in entries:
        try:
            digest, _ = lake.storage.hash_file(entry["path"])
        except FileNotFoundError:
            return error
        if digest != entry.get("sha256"):
            damaged.append(entry["path"])
    reason = _first_line(error)
    if damaged:
        listed = ", ".join(damaged[:5]) + (
            f" and {len(damaged) - 5} more" if len(damaged) > 5 else ""
        )
        return LakeIntegrityError(
            f"failed to read the lake table file(s) {listed} ({reason}): their bytes differ "
            "from the SHA-256 their manifest records, so they were damaged or altered. Run "
            "`m365lake verify` to list every damaged file, restore each one from a copy of "
            "the lake, then run the command again",
            problems=[f"table file {path} differs from its manifest entry" for path in damaged],
        )
    encrypted = [entry for entry in entries if entry.get("key_id") is not None]
    if encrypted and _DECRYPTION_FAILURE.search(str(error)):
        key_ids = sorted({str(entry["key_id"]) for entry in encrypted})
        return LakeKeyError(
            f"failed to decrypt lake table files written under key id(s) "
            f"{', '.join(key_ids)} ({reason}), although their bytes match their manifests: "
            f"the key loaded under that id is not the one that wrote them; "
            f"{WHERE_KEYS_COME_FROM}: put the original key there",
            key_id=key_ids[0],
        )
    return error


def may_be_damage(error: Exception) -> bool:
    """Return whether a reader's error may come from a damaged table file or a wrong key.

    Callers that read many files check this before ``read_error`` rehashes them all.
    """
    return bool(_DAMAGE_SIGNS.search(str(error)))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def open_parquet(lake: Lake, entry: Entry) -> pq.ParquetFile:
    """Open one committed file with pyarrow, decrypting it when its entry names a key id.

    Raises LakeKeyError for a key that is not loaded or differs, and LakeIntegrityError
    when the file fails to open because its bytes changed.
    """
    properties = _decryption(lake, entry)
    try:
        return pq.ParquetFile(lake.storage.path(entry["path"]), decryption_properties=properties)
    except (pa.ArrowException, OSError) as error:
        raise read_error(lake, [entry], error) from error


def read_table(lake: Lake, entry: Entry, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one committed file (``columns`` only, if given) into an Arrow table."""
    properties = _decryption(lake, entry)
    try:
        return pq.read_table(
            lake.storage.path(entry["path"]),
            columns=list(columns) if columns is not None else None,
            decryption_properties=properties,
        )
    except (pa.ArrowException, OSError) as error:
        raise read_error(lake, [entry], error) from error


def iter_batches(lake: Lake, entry: Entry, batch_size: int) -> Iterator[pa.RecordBatch]:
    """Yield the rows of one committed file in record batches of up to ``batch_size`` rows."""
    batches = open_parquet(lake, entry).iter_batches(batch_size=batch_size)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as error:
            raise read_error(lake, [entry], error) from error
        yield batch


def read_metadata(lake: Lake, entry: Entry) -> pq.FileMetaData:
    """Read the Parquet footer of one committed file."""
    return open_parquet(lake, entry).metadata


def _decryption(lake: Lake, entry: Entry) -> Any:
    key_id = check_key(lake.keys, entry)
    if key_id is None:
        return None
    return decryption_properties(lake.keys, key_id, entry["path"])
