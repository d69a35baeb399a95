"""Reads of committed table files, encrypted or not, through DuckDB and pyarrow.

Every read of a lake Parquet file goes through this module, because the reader needs
the key id that the file's manifest entry records (``key_id``, absent when the file is
unencrypted):

- ``connect`` opens a DuckDB connection for reading the lake;
- ``TableScan`` turns a set of manifest entries into the SQL source that reads them.
  Unencrypted files are read by ``read_parquet``. Encrypted files are decrypted by
  pyarrow and scanned by DuckDB as Arrow datasets registered on the connection,
  because DuckDB 2.0.1 cannot decrypt what pyarrow encrypts beyond the simplest scans
  (``tests/unit/test_lake_parquet_keys.py`` pins the failures);
- ``open_parquet``, ``read_table``, ``iter_batches`` and ``read_metadata`` open one file
  with pyarrow and pass the decryption properties its entry calls for.

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
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from m365lake.errors import LakeIntegrityError, LakeKeyError
from m365lake.lake.encryption import WHERE_KEYS_COME_FROM, KeyRing
from m365lake.lake.parquet_keys import decryption_properties, scan_sql
from m365lake.lake.tables import SCHEMAS

if TYPE_CHECKING:
    from m365lake.lake.lake import Lake

Entry = Mapping[str, Any]
"""A file's manifest entry: ``path`` (lake-relative), ``sha256``, ``bytes``, ``key_id``…"""

_DECRYPTION_FAILURE = re.compile(r"AES tag|decrypt|encrypted", re.IGNORECASE)
_DAMAGE_SIGNS = re.compile(r"AES tag|decrypt|encrypted|parquet|thrift|corrupt", re.IGNORECASE)


def connect(
    lake: Lake, database: str = ":memory:", *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB connection to read the lake through ``TableScan``.

    The keys stay in this process: encrypted files reach DuckDB as decrypted Arrow
    batches, so the connection contains no key. For a lake on object storage the
    lake's fsspec file system is registered on the connection, so DuckDB reads the
    ``s3://`` or ``az://`` names without its own extensions, which it could not
    download on a machine without internet access.
    """
    connection = duckdb.connect(database, read_only=read_only)
    lake.storage.register(connection)
    return connection


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

    ``locations`` lists what the ``filename`` column returns for each file, in the order
    of ``entries``. Pass it as a parameter to order rows by file position, as in
    ``list_position($files, filename)``.
    """

    def __init__(self, lake: Lake, entries: Sequence[Entry]) -> None:
        self.lake = lake
        self.entries = list(entries)
        self.locations = [lake.storage.url(entry["path"]) for entry in self.entries]
        self._by_key: dict[str | None, list[int]] = {}
        for index, entry in enumerate(self.entries):
            key_id = check_key(lake.keys, entry)
            self._by_key.setdefault(key_id, []).append(index)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def sql(self, options: str = "", *, connection: duckdb.DuckDBPyConnection | None = None) -> str:
        """Return a parenthesised subquery over every file, with ``read_parquet`` options.

        ``options`` goes into every ``read_parquet`` call, e.g. ``"union_by_name = true,
        filename = true"``. Use the result where the query would name ``read_parquet``,
        on ``connection``: encrypted files are registered there as Arrow datasets, so a
        scan of encrypted files raises ValueError without it. Encrypted files always
        have every column of their table's schema, as ``union_by_name`` would give.
        """
        plain = [self.locations[index] for index in self._by_key.get(None, [])]
        parts = [scan_sql({None: plain}, options)] if plain else []
        for key_id, group in self._by_key.items():
            if key_id is None:
                continue
            if connection is None:
                raise ValueError(
                    "TableScan.sql needs connection= to read encrypted files, because they "
                    "are registered on that connection as Arrow datasets"
                )
            parts.append(self._encrypted_sql(connection, group, options))
        if not parts:
            raise ValueError("a scan needs at least one file")
        return "(" + " UNION ALL BY NAME ".join(parts) + ")"

    def register(self, connection: duckdb.DuckDBPyConnection) -> None:
        """Register the encrypted files on ``connection`` under the names ``sql`` uses.

        A view that ``sql`` wrote into a database file needs this in every session.
        """
        for key_id, group in self._by_key.items():
            if key_id is not None:
                for index in group:
                    connection.register(
                        _dataset_name([self.locations[index]]), self._dataset([index])
                    )
                locations = [self.locations[index] for index in group]
                connection.register(_dataset_name(locations), self._dataset(group))

    def _encrypted_sql(
        self, connection: duckdb.DuckDBPyConnection, indexes: list[int], options: str
    ) -> str:
        wanted = [
            column
            for column in _POSITION_COLUMNS
            if re.search(rf"\b{column}\s*=\s*true", options, re.IGNORECASE)
        ]
        if not wanted:
            name = _dataset_name([self.locations[index] for index in indexes])
            connection.register(name, self._dataset(indexes))
            return f"SELECT * FROM {name}"
        # NOTE: one UNION branch per file, so planning a query slows down as encrypted
        # files add up, where read_parquet takes one list of plain files.
        parts = []
        for index in indexes:
            location = self.locations[index]
            name = _dataset_name([location])
            connection.register(name, self._dataset([index]))
            columns = {
                "filename": "'" + location.replace("'", "''") + "' AS filename",
                # NOTE: this relies on DuckDB numbering the rows of an Arrow dataset scan
                # in file order. No column records the row number, so a test pins it.
                "file_row_number": "CAST(row_number() OVER () - 1 AS BIGINT) AS file_row_number",
            }
            added = ", ".join(columns[column] for column in wanted)
            parts.append(f"SELECT *, {added} FROM {name}")
        return " UNION ALL BY NAME ".join(parts)

    def _dataset(self, indexes: list[int]) -> ds.Dataset:
        """Return a lazy Arrow dataset that decrypts the files at ``indexes`` as DuckDB reads."""
        entries = [self.entries[index] for index in indexes]
        key_id = check_key(self.lake.keys, entries[0])
        assert key_id is not None
        properties = decryption_properties(self.lake.keys, key_id, entries[0]["path"])
        scan_options = ds.ParquetFragmentScanOptions(decryption_properties=properties)
        return ds.dataset(
            [arrow_path(self.lake, entry) for entry in entries],
            filesystem=self.lake.storage.arrow_filesystem(),
            schema=_schema_of(self.lake, entries),
            format=ds.ParquetFileFormat(default_fragment_scan_options=scan_options),
        )

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Raise LakeIntegrityError or LakeKeyError for a read of these files that fails.

        Wrap the statements that execute and fetch the query.
        """
        try:
            yield
        except (duckdb.Error, pa.ArrowException, OSError) as error:
            raise read_error(self.lake, self.entries, error) from error


_POSITION_COLUMNS = ("filename", "file_row_number")


def _dataset_name(locations: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(locations).encode("utf-8")).hexdigest()[:24]
    return f"m365lake_files_{digest}"


def _schema_of(lake: Lake, entries: Sequence[Entry]) -> pa.Schema:
    """Return the schema of the table the files belong to, else the union of theirs."""
    tables = {entry.get("table") for entry in entries}
    if len(tables) == 1:
        [table] = tables
        if table in SCHEMAS:
            return SCHEMAS[str(table)]
    return pa.unify_schemas([open_parquet(lake, entry).schema_arrow for entry in entries])


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
        return pq.ParquetFile(
            arrow_path(lake, entry),
            decryption_properties=properties,
            filesystem=lake.storage.arrow_filesystem(),
        )
    except (pa.ArrowException, OSError) as error:
        raise read_error(lake, [entry], error) from error


def read_table(lake: Lake, entry: Entry, columns: Sequence[str] | None = None) -> pa.Table:
    """Read one committed file (``columns`` only, if given) into an Arrow table."""
    properties = _decryption(lake, entry)
    try:
        return pq.read_table(
            arrow_path(lake, entry),
            filesystem=lake.storage.arrow_filesystem(),
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


def arrow_path(lake: Lake, entry: Entry) -> str:
    """Return the name of an entry's file on ``lake.storage.arrow_filesystem()``."""
    return str(lake.storage.path(entry["path"]))


def _decryption(lake: Lake, entry: Entry) -> Any:
    key_id = check_key(lake.keys, entry)
    if key_id is None:
        return None
    return decryption_properties(lake.keys, key_id, entry["path"])
