"""Progress of an export, kept in ``.m365lake-export/`` until the production is complete.

``export.json`` records what the export is (its id, settings, query and a fingerprint of
the selected item versions). ``journal.jsonl`` gets one JSON line per family in
production order, once the family's files are written: produced (with its load file
records and file hashes), suppressed as a duplicate, or failed. A resumed export replays
the journal, so every decision and control number comes out as in the first run, and
continues with the first family the journal lacks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from m365lake.discovery.production.folder import STATE_DIR, ProductionFolderError
from m365lake.discovery.production.selection import FamilySource

logger = logging.getLogger(__name__)

STATE_FORMAT = 1
HEADER_FILE = "export.json"
JOURNAL_FILE = "journal.jsonl"
PENDING_MANIFEST = "manifest.pending"
SYNC_EVERY = 1_000
"""Journal lines between two fsyncs; a crash loses at most these, and a resume redoes them."""


def fingerprint(settings: dict[str, Any], families: Sequence[FamilySource]) -> str:
    """Return the SHA-256 of the settings and of each selected version, in order."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8"))
    for family in families:
        captured = family.row.get("captured_at")
        line = f"\n{family.source_id}\t{captured.isoformat() if captured else ''}"
        digest.update(f"{line}\t{family.content_sha256 or ''}".encode())
    return digest.hexdigest()


def state_dir(root: Path) -> Path:
    return root / STATE_DIR


def write_header(root: Path, header: dict[str, Any]) -> None:
    folder = state_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f"{HEADER_FILE}.tmp"
    temporary.write_text(json.dumps(header, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temporary, folder / HEADER_FILE)


def read_header(root: Path) -> dict[str, Any]:
    path = state_dir(root) / HEADER_FILE
    try:
        header = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProductionFolderError(
            f"{root} contains no interrupted export to resume ({path} is missing); export into "
            "an empty folder, or use --overwrite to replace what is there"
        ) from None
    except ValueError as error:
        raise ProductionFolderError(
            f"the export state {path} is damaged ({error}); use --overwrite to start again"
        ) from error
    if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
        raise ProductionFolderError(
            f"the export state {path} has an unknown format; use --overwrite to start again"
        )
    return header


def read_journal(root: Path) -> list[dict[str, Any]]:
    """Return the journal's entries; an incomplete last line (a crash mid-write) is dropped."""
    path = state_dir(root) / JOURNAL_FILE
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                logger.info("dropping the incomplete journal line %d of %s", number, path)
                break
            try:
                entries.append(json.loads(line))
            except ValueError as error:
                raise ProductionFolderError(
                    f"line {number} of the export journal {path} is damaged ({error}); use "
                    "--overwrite to start the export again"
                ) from error
    return entries


def iter_journal(root: Path) -> Iterator[dict[str, Any]]:
    """Yield the journal's entries one at a time, for writing the load files."""
    with open(state_dir(root) / JOURNAL_FILE, encoding="utf-8") as handle:
        for line in handle:
            if line.endswith("\n"):
                yield json.loads(line)


class Journal:
    """Append entries to the journal, keeping only the first ``keep`` already there."""

    def __init__(self, root: Path, keep: Sequence[dict[str, Any]]) -> None:
        path = state_dir(root) / JOURNAL_FILE
        temporary = path.with_name(f"{JOURNAL_FILE}.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            for entry in keep:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        self._handle: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self._unsynced = 0

    def append(self, entry: dict[str, Any]) -> None:
        # Not flushed per entry: an entry lost in a crash only makes a resume write its
        # family again, with the same control numbers.
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._unsynced += 1
        if self._unsynced >= SYNC_EVERY:
            self.sync()

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._unsynced = 0

    def close(self) -> None:
        if not self._handle.closed:
            self.sync()
            self._handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
