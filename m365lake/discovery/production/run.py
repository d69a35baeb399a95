"""Write the families of a selection into a production folder, resumably.

The main thread walks the families in production order: it reads content, decides on
duplicates, numbers each family and writes its natives. Text extraction of each family
runs in a small thread pool that waits on the extraction worker processes, so reading
and writing go on while a document is parsed. Journal entries are appended strictly in
production order, which makes the journal a replayable prefix of the production.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from m365lake.discovery.production.content import read_inline, windows
from m365lake.discovery.production.dedup import Deduplicator
from m365lake.discovery.production.families import FamilyWriter, Numbering, PreparedFamily
from m365lake.discovery.production.folder import (
    FileRecord,
    ProductionFolder,
    ProductionFolderError,
    hash_file,
)
from m365lake.discovery.production.options import ExportOptions
from m365lake.discovery.production.selection import FamilySource
from m365lake.discovery.production.state import Journal
from m365lake.discovery.production.text import TextExtractor, TextResult, extract_family
from m365lake.lake import Lake

logger = logging.getLogger(__name__)

DEFAULT_IN_FLIGHT = 8
DEFAULT_IN_FLIGHT_BYTES = 256 * 1024 * 1024
"""Families, and bytes of their content, waiting for text extraction at once."""

ProgressCallback = Callable[[int, int], None]
"""Called with (families done, families in all) as families reach the journal."""


@contextlib.contextmanager
def default_extractor(extractor: TextExtractor | None) -> Iterator[TextExtractor]:
    """Yield ``extractor``, or the extraction worker pool, closed afterwards."""
    if extractor is not None:
        yield extractor
        return
    from m365lake.search.extract import ExtractionPool

    with ExtractionPool() as pool:
        yield pool


def _verify_files(folder: ProductionFolder, entry: dict[str, Any]) -> bool:
    """Return whether every file a journal entry lists is present with its recorded hash."""
    for document in entry.get("documents", []):
        for value in (document.get("native"), document.get("text")):
            if value is None:
                continue
            record = FileRecord.from_json(value)
            path = folder.path(record.path)
            if not path.is_file() or hash_file(path) != (record.size, record.md5, record.sha256):
                logger.info("%s no longer matches the journal; redoing from there", record.path)
                return False
    return True


def replay_journal(
    folder: ProductionFolder,
    entries: Sequence[dict[str, Any]],
    families: Sequence[FamilySource],
    dedup: Deduplicator,
    numbering: Numbering,
) -> list[dict[str, Any]]:
    """Apply the journaled decisions again and return the entries that still hold.

    Replay stops at the first family whose files are missing or changed, so it and every
    later family are written again. A journal that disagrees with the selection (other
    items, other numbers) raises ProductionFolderError, because its production would not
    be the one this export describes.
    """
    replayed: list[dict[str, Any]] = []
    for entry in entries:
        ordinal = int(entry["i"])
        if ordinal != len(replayed) or ordinal >= len(families):
            raise _inconsistent(folder, f"journal entry {ordinal} is out of order")
        family = families[ordinal]
        if entry["source_id"] != family.source_id:
            raise _inconsistent(folder, f"journal entry {ordinal} is {entry['source_id']}")
        if entry["status"] == "produced" and not _verify_files(folder, entry):
            break
        master = dedup.check(ordinal, family.custodian_id, entry.get("hash"))
        expected = entry.get("master") if entry["status"] == "duplicate" else None
        if master != expected:
            raise _inconsistent(folder, f"family {ordinal} decides duplicates differently")
        if entry["status"] == "produced":
            controls = numbering.take(len(entry["documents"]))
            recorded = [document["record"]["BEGBATES"] for document in entry["documents"]]
            if [control for control, _ in controls] != recorded:
                raise _inconsistent(folder, f"family {ordinal} has other control numbers")
        replayed.append(entry)
    return replayed


def _inconsistent(folder: ProductionFolder, detail: str) -> ProductionFolderError:
    return ProductionFolderError(
        f"the interrupted export in {folder.root} cannot be resumed: {detail}. Export "
        "again with --overwrite"
    )


def _journal_entry(prepared: PreparedFamily, results: Sequence[TextResult]) -> dict[str, Any]:
    """Return the family's journal entry with its text files and JSON-ready records."""
    entry = prepared.entry
    for document, result in zip(entry.get("documents", []), results, strict=True):
        document["record"]["TEXTSTATUS"] = result.status
        document["text"] = result.file.to_json()
        document["text_complete"] = result.complete
    for document in entry.get("documents", []):
        native = document.get("native")
        document["native"] = native.to_json() if isinstance(native, FileRecord) else native
    return entry


@dataclass
class _Pipeline:
    """Families between their natives and their journal entry."""

    journal: Journal
    next_ordinal: int
    total: int
    progress: ProgressCallback | None
    pending: dict[concurrent.futures.Future[list[TextResult]], tuple[int, PreparedFamily]]
    ready: dict[int, dict[str, Any]]

    @property
    def pending_bytes(self) -> int:
        return sum(prepared.content_bytes for _, prepared in self.pending.values())

    def collect(self, *, block: bool) -> None:
        """Move finished extractions to the ready entries, waiting for one if ``block``."""
        if not self.pending:
            return
        done, _ = concurrent.futures.wait(
            self.pending,
            timeout=None if block else 0,
            return_when=concurrent.futures.FIRST_COMPLETED,
        )
        for future in done:
            ordinal, prepared = self.pending.pop(future)
            self.ready[ordinal] = _journal_entry(prepared, future.result())

    def flush(self) -> None:
        """Append ready entries to the journal while they continue the production order."""
        while self.next_ordinal in self.ready:
            self.journal.append(self.ready.pop(self.next_ordinal))
            self.next_ordinal += 1
            if self.progress is not None:
                self.progress(self.next_ordinal, self.total)


def write_families(
    lake: Lake,
    folder: ProductionFolder,
    families: Sequence[FamilySource],
    journal: Journal,
    writer: FamilyWriter,
    extractor: TextExtractor,
    options: ExportOptions,
    *,
    start: int,
    in_flight: int = DEFAULT_IN_FLIGHT,
    progress: ProgressCallback | None = None,
) -> None:
    """Produce ``families[start:]``, appending each to ``journal`` in order."""
    pipeline = _Pipeline(journal, start, len(families), progress, {}, {})
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, in_flight), thread_name_prefix="export-text"
    ) as threads:
        for window in windows(families[start:]):
            inline, problems = read_inline(lake, window)
            for family in window:
                if family.ordinal in problems:
                    message = problems[family.ordinal]
                    logger.warning(
                        "could not read the content of %s: %s", family.source_id, message
                    )
                    prepared = writer.error(family, message)
                else:
                    prepared = writer.prepare(family, inline.pop(family.ordinal, None))
                if prepared.text_parts:
                    future = threads.submit(
                        extract_family,
                        folder,
                        extractor,
                        prepared.text_parts,
                        max_chars=options.max_text_chars,
                    )
                    pipeline.pending[future] = (family.ordinal, prepared)
                else:
                    pipeline.ready[family.ordinal] = _journal_entry(prepared, [])
                pipeline.collect(block=False)
                while pipeline.pending and (
                    len(pipeline.pending) >= in_flight
                    or pipeline.pending_bytes >= DEFAULT_IN_FLIGHT_BYTES
                ):
                    pipeline.collect(block=True)
                pipeline.flush()
        while pipeline.pending:
            pipeline.collect(block=True)
        pipeline.flush()
    journal.sync()
