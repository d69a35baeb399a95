"""Transactions: buffered Parquet writes that become visible only through one manifest.

Rows are buffered per (table, partition) and written as Parquet row groups whenever a
buffer reaches ``flush_rows`` rows or all buffers together reach ``flush_bytes``, so the
memory a transaction uses stays bounded however many rows it writes. Each (table,
partition) gets one file per transaction. The file stays open until commit, when it is
closed, fsynced, hashed and listed in the manifest together with the state updates.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from m365lake.errors import CommitConflictError, LakeError
from m365lake.lake.commits import Head, ManifestLog, StateView, apply_state_updates, state_digest
from m365lake.lake.encryption import KeyRing, derive_key_check
from m365lake.lake.parquet_keys import encryption_properties
from m365lake.lake.tables import build_batch, estimate_row_bytes, table_schema

if TYPE_CHECKING:
    from m365lake.lake.storage import Storage

logger = logging.getLogger(__name__)

_PARTITION_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ValueError(
            f"invalid run_id {run_id!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, because it becomes part of file names"
        )
    return run_id


def partition_directory(table: str, partition: Mapping[str, str]) -> str:
    """Return ``tables/<table>/<key>=<value>/…`` with values percent-encoded as Hive does."""
    parts = [f"tables/{table}"]
    for key, value in partition.items():
        if not _PARTITION_KEY.match(key):
            raise ValueError(
                f"invalid partition key {key!r}: use lowercase letters, digits and '_'"
            )
        if not isinstance(value, str) or not value:
            raise ValueError(f"partition value for {key!r} must be a non-empty string")
        parts.append(f"{key}={quote(value, safe='@+-_.~')}")
    return "/".join(parts)


MAX_FILE_NUMBER = 10_000
"""File numbers a run tries per partition before it gives up on finding a free name."""

PARQUET_ZSTD_LEVEL = 9
PARQUET_PAGE_BYTES = 8 * 1024 * 1024


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Return ParquetWriter options that let zstd find repeats across neighbouring messages.

    Binary columns (inline MIME) get neither dictionary encoding nor min/max statistics,
    because their values are unique and the statistics copy whole messages. On the Enron
    maildir, bench/storage.py measured the messages tables at 0.20 of the raw MIME size
    with these options, against 0.33 with pyarrow's defaults (zstd level 1, 1 MiB pages).
    """
    # pyarrow matches these per leaf column, and names a list's leaf <name>.list.element.
    leaves = [
        f"{field.name}.list.element" if pa.types.is_list(field.type) else field.name
        for field in schema
        if not pa.types.is_binary(field.type)
    ]
    return {
        "compression": "zstd",
        "compression_level": PARQUET_ZSTD_LEVEL,
        "data_page_size": PARQUET_PAGE_BYTES,
        "use_dictionary": leaves,
        "write_statistics": leaves,
    }


class _PartitionFile:
    """The open Parquet file and pending rows of one (table, partition)."""

    def __init__(
        self,
        storage: Storage,
        table: str,
        partition: Mapping[str, str],
        run_id: str,
        keys: KeyRing,
    ) -> None:
        self.storage = storage
        self.keys = keys
        self.key_id: str | None = None
        self.table = table
        self.partition = dict(partition)
        self.directory = partition_directory(table, partition)
        self.run_id = run_id
        self.pending: list[dict[str, Any]] = []
        self.pending_bytes = 0
        self.rows_written = 0
        self.row_groups = 0
        self.number = 0
        self.relative: str | None = None
        self._handle: BinaryIO | None = None
        self._writer: pq.ParquetWriter | None = None

    def _open(self) -> None:
        # Exclusive creation never overwrites a committed file, even when a run id is reused.
        for number in range(MAX_FILE_NUMBER):
            relative = self._name(number)
            try:
                self._handle = self.storage.open_new(relative)
            except FileExistsError:
                continue
            self.number, self.relative = number, relative
            schema = table_schema(self.table)
            options = parquet_options(schema)
            if self.keys.enabled:
                self.key_id, options["encryption_properties"] = encryption_properties(self.keys)
            self._writer = pq.ParquetWriter(self._handle, schema, **options)
            return
        raise self._no_free_name()

    def _name(self, number: int) -> str:
        return f"{self.directory}/{self.run_id}-{number}.parquet"

    def _no_free_name(self) -> LakeError:
        return LakeError(
            f"no free file name for run {self.run_id!r} in {self.directory}: "
            f"{MAX_FILE_NUMBER} names are taken. Start the run under a new run id"
        )

    def _store(self, handle: BinaryIO) -> tuple[str, int]:
        """Store the closed file under a free name; return its SHA-256 and size.

        Object storage claims the name only on upload, so a writer that reuses this
        run id can take it after ``_open`` saw it free. The same bytes then go under
        the next free number, and no row is lost.
        """
        try:
            return self.storage.close_durably(handle)
        except FileExistsError:
            logger.info(
                "%s was taken by another writer; storing the file under the next number",
                self.relative,
            )
        for number in range(self.number + 1, MAX_FILE_NUMBER):
            relative = self._name(number)
            if self.storage.exists(relative):
                continue
            try:
                digest = self.storage.upload_as(handle, relative)
            except FileExistsError:
                continue
            self.number, self.relative = number, relative
            return digest
        raise self._no_free_name()

    def flush(self) -> int:
        """Write pending rows as one row group; return the bytes of memory released."""
        if not self.pending:
            return 0
        batch = build_batch(self.table, self.pending)
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write_batch(batch)
        released = self.pending_bytes
        self.rows_written += len(self.pending)
        self.row_groups += 1
        self.pending, self.pending_bytes = [], 0
        return released

    def close(self) -> dict[str, Any] | None:
        """Finish the file durably and return its manifest entry (None if nothing was written)."""
        self.flush()
        if self._writer is None or self._handle is None or self.relative is None:
            return None
        self._writer.close()
        self._writer = None
        digest, size = self._store(self._handle)
        self._handle = None
        entry: dict[str, Any] = {
            "path": self.relative,
            "sha256": digest,
            "bytes": size,
            "rows": self.rows_written,
            "table": self.table,
        }
        if self.key_id is not None:
            # The check lets a reader tell a different key under this id from damage.
            entry["key_id"] = self.key_id
            entry["key_check"] = derive_key_check(self.keys.keys[self.key_id]).hex()
        return entry

    def discard(self) -> None:
        self.pending, self.pending_bytes = [], 0
        # A failure while closing must not mask the exception that caused the abort.
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception as error:
            logger.debug("closing aborted file %s failed: %s", self.relative, error)
        if self._handle is not None:
            # Not stored yet: the name may belong to another writer by now.
            self.storage.abandon_new(self._handle)
        elif self.relative is not None:
            self.storage.remove(self.relative)
        self._writer, self._handle, self.relative = None, None, None


class Transaction:
    """Buffered writes plus state updates that one manifest makes visible atomically.

    Use it as a context manager and call ``commit()`` explicitly: leaving the block
    without a commit aborts and deletes the uncommitted files. Not thread-safe.
    """

    def __init__(
        self,
        storage: Storage,
        log: ManifestLog,
        state: StateView,
        *,
        run_id: str,
        kind: str,
        container: str | None,
        flush_rows: int,
        flush_bytes: int,
        keys: KeyRing | None = None,
    ) -> None:
        if flush_rows < 1 or flush_bytes < 1:
            raise ValueError("flush_rows and flush_bytes must be positive")
        self._storage = storage
        self._log = log
        self._state_view = state
        self.run_id = check_run_id(run_id)
        self.kind = kind
        self.container = container
        self.started_at = datetime.now(UTC)
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        self._begin_seq = log.head().seq
        self._files: dict[tuple[str, str], _PartitionFile] = {}
        self._state: dict[str, Any] = {}
        self._removed_files: list[dict[str, Any]] = []
        self._blob_candidates: set[str] = set()
        self._buffered_bytes = 0
        self._status = "open"
        self._keys = keys if keys is not None else KeyRing()

    @property
    def buffered_bytes(self) -> int:
        """Estimated bytes of rows held in memory and not yet written as a row group."""
        return self._buffered_bytes

    @property
    def row_groups_written(self) -> int:
        return sum(part.row_groups for part in self._files.values())

    def write_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, partition: Mapping[str, str]
    ) -> None:
        """Buffer rows for ``table`` under ``partition``, writing row groups as buffers fill.

        Missing ``run_id`` and ``captured_at`` values are filled from the transaction.
        A partition key that is also a column must equal that column in every row. Rows
        are checked before any is buffered, so a rejected call buffers nothing.
        """
        self._require_open()
        records = self._prepare(table, rows, partition)
        directory = partition_directory(table, partition)
        part = self._files.get((table, directory))
        if part is None:
            part = _PartitionFile(self._storage, table, partition, self.run_id, self._keys)
            self._files[(table, directory)] = part

        for record in records:
            size = estimate_row_bytes(record)
            part.pending.append(record)
            part.pending_bytes += size
            self._buffered_bytes += size
            if len(part.pending) >= self.flush_rows:
                self._buffered_bytes -= part.flush()
            if self._buffered_bytes >= self.flush_bytes:
                self._flush_largest()

    def _prepare(
        self, table: str, rows: Sequence[Mapping[str, Any]], partition: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        schema = table_schema(table)
        columns = set(schema.names)
        pinned = {key: value for key, value in partition.items() if key in columns}
        records = []
        for row in rows:
            record = dict(row)
            unknown = record.keys() - columns
            if unknown:
                raise ValueError(
                    f"row for table {table!r} has unknown columns {sorted(unknown)}; "
                    f"the columns are: {', '.join(schema.names)}"
                )
            if "run_id" in columns and record.get("run_id") is None:
                record["run_id"] = self.run_id
            if "captured_at" in columns and record.get("captured_at") is None:
                record["captured_at"] = self.started_at
            for key, value in pinned.items():
                if record.get(key) != value:
                    raise ValueError(
                        f"row for {table!r} has {key}={record.get(key)!r} but is written to "
                        f"partition {key}={value!r}"
                    )
            records.append(record)
        return records

    def _flush_largest(self) -> None:
        while self._buffered_bytes >= self.flush_bytes:
            largest = max(self._files.values(), key=lambda part: part.pending_bytes)
            if not largest.pending:
                break
            self._buffered_bytes -= largest.flush()

    def set_state(self, key: str, value: Any) -> None:
        """Record a JSON state update that takes effect with this commit; None deletes the key."""
        self._require_open()
        if not isinstance(key, str) or not key:
            raise ValueError("state keys must be non-empty strings")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"state value for {key!r} is not JSON-serialisable: {error}") from None
        self._state[key] = value

    def remove_files(
        self, entries: Sequence[Mapping[str, Any]], *, blob_candidates: Sequence[str] = ()
    ) -> None:
        """Take committed files out of the lake with this commit; only a purge does this.

        ``entries`` are the files' manifest entries. The manifest lists them, and the
        content hashes in ``blob_candidates`` whose blobs may be left unreferenced, under
        ``removed``. Readers stop seeing the files at this commit. Deleting the files and
        the unreferenced blobs afterwards is the caller's job.
        """
        self._require_open()
        for entry in entries:
            if not isinstance(entry.get("path"), str):
                raise ValueError(f"a removed file entry needs its lake path, got {dict(entry)!r}")
            self._removed_files.append(dict(entry))
        self._blob_candidates.update(blob_candidates)

    def commit(self, *, counts: Mapping[str, int] | None = None) -> dict[str, Any]:
        """Write out every buffer, then publish the manifest; return the manifest."""
        self._require_open()
        try:
            files = []
            for part in self._files.values():
                entry = part.close()
                if entry is not None:
                    entry["partition"] = part.partition
                    files.append(entry)
            body = {
                "run_id": self.run_id,
                "kind": self.kind,
                "container": self.container,
                "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "files": files,
                "state": self._state,
                "counts": dict(counts or {}),
            }
            if self._removed_files or self._blob_candidates:
                body["removed"] = {
                    "files": self._removed_files,
                    "blob_candidates": sorted(self._blob_candidates),
                }
            manifest = self._log.append(body, self._state_fields)
        except BaseException:
            self.abort()
            raise
        self._status = "committed"
        self._buffered_bytes = 0
        logger.info(
            "committed run %s as seq %d: %d files, %d rows, %d state updates",
            self.run_id,
            manifest["seq"],
            len(files),
            sum(entry["rows"] for entry in files),
            len(self._state),
        )
        return manifest

    def _state_fields(self, head: Head) -> dict[str, Any]:
        self._reject_concurrent_state(head.seq)
        values = dict(self._state_view.at(head))
        apply_state_updates(values, self._state)
        return {"state_sha256": state_digest(values)}

    def abort(self) -> None:
        """Drop buffered rows and delete this transaction's uncommitted files."""
        if self._status != "open":
            return
        for part in self._files.values():
            part.discard()
        self._status = "aborted"
        self._buffered_bytes = 0
        logger.info("aborted run %s: nothing was committed", self.run_id)

    def _reject_concurrent_state(self, head_seq: int) -> None:
        """Raise CommitConflictError if a manifest since ``begin`` updated any of our state keys.

        Two writers that advance the same delta token both read the state as it was
        before either committed, so the later one would commit rows the first already
        wrote. Rejecting it keeps one version per change; its rerun starts from the
        other writer's token.
        """
        if not self._state:
            return
        for other in range(self._begin_seq + 1, head_seq + 1):
            manifest, _ = self._log.read(other)
            overlap = sorted(set(manifest.get("state") or {}) & set(self._state))
            if overlap:
                shown = ", ".join(overlap[:3]) + (" …" if len(overlap) > 3 else "")
                raise CommitConflictError(
                    f"run {self.run_id!r} was not committed: run {manifest.get('run_id')!r} "
                    f"(commit {other}) updated the same state ({shown}) after this run "
                    "began, so two backups of the same container ran at once. "
                    "Run it again; it continues from the other run's state."
                )

    def _require_open(self) -> None:
        if self._status != "open":
            raise LakeError(f"transaction for run {self.run_id!r} is already {self._status}")

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abort()
