"""The lake: Parquet tables, blobs and the manifest chain under one root folder."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from m365lake.errors import LakeError, LakeIntegrityError
from m365lake.lake.blobs import BlobStore, ContentRef, sha256_hex
from m365lake.lake.commits import COMMIT_DIR, Head, ManifestLog, StateView
from m365lake.lake.storage import LocalStorage, open_storage
from m365lake.lake.tables import SCHEMAS
from m365lake.lake.transaction import Transaction

logger = logging.getLogger(__name__)

# NOTE: 64 KiB is a placeholder; a benchmark of packed versus blob storage will set it.
DEFAULT_INLINE_THRESHOLD = 64 * 1024
DEFAULT_FLUSH_ROWS = 50_000
DEFAULT_FLUSH_BYTES = 32 * 1024 * 1024

_LAYOUT = ("tables", "blobs/sha256", COMMIT_DIR, "state")


class Lake:
    """A lake root: open it, store content, write through transactions, read committed state."""

    def __init__(
        self,
        storage: LocalStorage,
        *,
        inline_threshold: int = DEFAULT_INLINE_THRESHOLD,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        flush_bytes: int = DEFAULT_FLUSH_BYTES,
    ) -> None:
        if inline_threshold < 0:
            raise ValueError("inline_threshold must be zero or more bytes")
        self.storage = storage
        self.root: Path = storage.root
        self.blobs = BlobStore(storage)
        self.inline_threshold = inline_threshold
        """Size limit in bytes for content stored inline in Parquet; larger content is a blob."""
        self.flush_rows = flush_rows
        self.flush_bytes = flush_bytes
        self._log = ManifestLog(storage)
        self._state = StateView(storage, self._log)

    @classmethod
    def open(
        cls,
        location: str | Path,
        *,
        create: bool = True,
        inline_threshold: int = DEFAULT_INLINE_THRESHOLD,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        flush_bytes: int = DEFAULT_FLUSH_BYTES,
    ) -> Lake:
        """Open the lake at ``location`` (a local folder), creating its layout if ``create``."""
        storage = open_storage(location)
        if not storage.is_dir(COMMIT_DIR):
            if not create:
                raise LakeError(
                    f"no lake at {storage.root}: the folder has no {COMMIT_DIR}/ directory. "
                    "Check the path, or open it with create=True to start a new lake."
                )
            for directory in _LAYOUT:
                storage.make_dirs(directory)
            logger.info("created lake at %s", storage.root)
        return cls(
            storage,
            inline_threshold=inline_threshold,
            flush_rows=flush_rows,
            flush_bytes=flush_bytes,
        )

    def __repr__(self) -> str:
        return f"Lake({str(self.root)!r})"

    def store_content(self, data: bytes) -> ContentRef:
        """Return a reference to ``data``: inline when small, otherwise written as a blob."""
        if len(data) <= self.inline_threshold:
            return ContentRef(sha256_hex(data), len(data), data)
        return ContentRef(self.blobs.put(data), len(data), None)

    def read_content(self, sha256: str, inline: bytes | None) -> bytes:
        """Return content by hash, from ``inline`` if given, else from the blob store.

        Inline bytes are hashed too, so damaged Parquet content raises LakeIntegrityError
        just as a damaged blob does.
        """
        if inline is None:
            return self.blobs.read(sha256)
        actual = sha256_hex(inline)
        if actual != sha256:
            raise LakeIntegrityError(
                f"inline content recorded as {sha256} hashes to {actual}; "
                "the Parquet file holding it was damaged or altered"
            )
        return inline

    def begin(
        self,
        *,
        run_id: str,
        kind: str,
        container: str | None,
        flush_rows: int | None = None,
        flush_bytes: int | None = None,
    ) -> Transaction:
        """Start a transaction; nothing it writes is visible until ``commit()``."""
        return Transaction(
            self.storage,
            self._log,
            self._state,
            run_id=run_id,
            kind=kind,
            container=container,
            flush_rows=self.flush_rows if flush_rows is None else flush_rows,
            flush_bytes=self.flush_bytes if flush_bytes is None else flush_bytes,
        )

    def state(self, key: str) -> Any | None:
        """Return the latest committed value of a state key, or None."""
        return copy.deepcopy(self._state.current().get(key))

    def state_items(self, prefix: str) -> dict[str, Any]:
        """Return every committed state key starting with ``prefix`` and its value."""
        values = self._state.current()
        return {
            key: copy.deepcopy(value)
            for key, value in sorted(values.items())
            if key.startswith(prefix)
        }

    def head(self) -> Head:
        """Return the sequence number and SHA-256 of the newest manifest (0 and None if none)."""
        return self._log.head()

    def manifests(self) -> list[dict[str, Any]]:
        """Return every manifest in sequence order, checking the prev-hash chain."""
        return self._log.read_all()

    def committed_files(self, table: str) -> list[Path]:
        """Return the absolute paths of ``table``'s committed Parquet files in commit order."""
        if table not in SCHEMAS:
            raise ValueError(f"unknown table {table!r}; the lake has: {', '.join(sorted(SCHEMAS))}")
        return [
            self.storage.path(entry["path"])
            for manifest in self.manifests()
            for entry in manifest.get("files", [])
            if entry.get("table") == table
        ]

    def verify(self, *, blobs: bool = True) -> dict[str, int]:
        """Recompute the manifest chain, every committed file hash and, optionally, every blob.

        Raises LakeIntegrityError at the first mismatch; returns what was checked.
        """
        manifests = self.manifests()
        files = 0
        for manifest in manifests:
            for entry in manifest.get("files", []):
                try:
                    digest, size = self.storage.hash_file(entry["path"])
                except FileNotFoundError:
                    raise LakeIntegrityError(
                        f"file {entry['path']} listed in commit {manifest['seq']} is missing"
                    ) from None
                if digest != entry["sha256"] or size != entry["bytes"]:
                    raise LakeIntegrityError(
                        f"file {entry['path']} listed in commit {manifest['seq']} hashes to "
                        f"{digest} ({size} bytes) but the manifest records {entry['sha256']} "
                        f"({entry['bytes']} bytes)"
                    )
                files += 1
        blob_count = self.blobs.verify_all() if blobs else 0
        return {"manifests": len(manifests), "files": files, "blobs": blob_count}
