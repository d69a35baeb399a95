"""The files written once every family is done: load files, reports and the manifest.

They are written from the journal, in production order, so a resumed export writes the
same load files as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m365lake.discovery.production.folder import (
    CSV_FILE,
    CUSTODY_FILE,
    DAT_FILE,
    DUPLICATES_FILE,
    MANIFEST_FILE,
    ProductionFolder,
    hash_file,
)
from m365lake.discovery.production.loadfile import ENCODING, LoadFileWriter
from m365lake.discovery.production.state import iter_journal

DUPLICATE_COLUMNS = (
    "SUPPRESSED_SOURCEID",
    "SUPPRESSED_CUSTODIAN",
    "SUPPRESSED_SOURCEPATH",
    "SUPPRESSED_CAPTUREDAT",
    "MASTER_BATES",
    "MASTER_SOURCEID",
    "MASTER_CUSTODIAN",
    "DEDUPHASH",
)


@dataclass
class ProductionCounts:
    """Counts of what the journal records, for the custody report and the audit event."""

    families_produced: int = 0
    documents: int = 0
    attachments: int = 0
    duplicates: int = 0
    errors: int = 0
    metadata_only: int = 0
    """Documents without a native, because their content was not archived."""
    text_incomplete: int = 0
    native_bytes: int = 0
    first_control: str | None = None
    last_control: str | None = None
    error_items: list[dict[str, str]] = field(default_factory=list)
    issue_items: list[dict[str, str]] = field(default_factory=list)
    documents_by_type: dict[str, int] = field(default_factory=dict)
    """Produced documents per RECORDTYPE (Email, Attachment, File, Meeting, Contact …)."""

    def to_json(self) -> dict[str, int]:
        """Return the counts, with ``documents_<record type>`` for each record type found."""
        by_type = {
            "documents_" + kind.lower().replace(" ", "_"): count
            for kind, count in sorted(self.documents_by_type.items())
        }
        return by_type | {
            "families_produced": self.families_produced,
            "documents": self.documents,
            "attachments": self.attachments,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "metadata_only": self.metadata_only,
            "text_incomplete": self.text_incomplete,
            "native_bytes": self.native_bytes,
        }


def _duplicate_masters(root: Path) -> dict[int, list[str]]:
    """Return master ordinal → custodians of the families suppressed as its duplicates."""
    masters: dict[int, list[str]] = defaultdict(list)
    for entry in iter_journal(root):
        if entry["status"] == "duplicate":
            masters[int(entry["master"])].append(str(entry["custodian"]))
    return masters


def write_load_files(folder: ProductionFolder) -> tuple[ProductionCounts, dict[str, str]]:
    """Write the DAT and CSV load files and the duplicates report from the journal.

    Returns the counts and the SHA-256 of every native and text file the journal lists.
    """
    masters = _duplicate_masters(folder.root)
    counts = ProductionCounts()
    hashes: dict[str, str] = {}
    produced: dict[int, dict[str, Any]] = {}
    folder.path(DAT_FILE).parent.mkdir(parents=True, exist_ok=True)
    folder.path(DUPLICATES_FILE).parent.mkdir(parents=True, exist_ok=True)
    with (
        LoadFileWriter(folder.path(DAT_FILE), folder.path(CSV_FILE)) as writer,
        open(folder.path(DUPLICATES_FILE), "w", encoding=ENCODING, newline="") as duplicates,
    ):
        duplicate_rows = csv.writer(duplicates, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        duplicate_rows.writerow(DUPLICATE_COLUMNS)
        for entry in iter_journal(folder.root):
            ordinal = int(entry["i"])
            if entry["status"] == "error":
                counts.errors += 1
                counts.error_items.append(
                    {"source_id": entry["source_id"], "message": entry.get("message", "")}
                )
            elif entry["status"] == "duplicate":
                counts.duplicates += 1
                master = produced[int(entry["master"])]
                duplicate_rows.writerow(
                    [
                        entry["source_id"],
                        entry["custodian"],
                        entry["source_path"],
                        entry["captured_at"],
                        master["control"],
                        master["source_id"],
                        master["custodian"],
                        entry["hash"] or "",
                    ]
                )
            else:
                family_custodians = [entry["custodian"], *masters.get(ordinal, [])]
                _write_family(writer, entry, family_custodians, counts, hashes)
                if ordinal in masters:
                    produced[ordinal] = {
                        "control": entry["documents"][0]["record"]["BEGBATES"],
                        "source_id": entry["source_id"],
                        "custodian": entry["custodian"],
                    }
    return counts, hashes


def _write_family(
    writer: LoadFileWriter,
    entry: dict[str, Any],
    family_custodians: list[str],
    counts: ProductionCounts,
    hashes: dict[str, str],
) -> None:
    counts.families_produced += 1
    all_custodians = "; ".join(dict.fromkeys(family_custodians))
    for position, document in enumerate(entry["documents"]):
        record = dict(document["record"])
        record["ALLCUSTODIANS"] = all_custodians
        record["DUPLICATECOUNT"] = str(len(family_custodians) - 1)
        writer.write(record)
        counts.documents += 1
        kind = record.get("RECORDTYPE") or "unknown"
        counts.documents_by_type[kind] = counts.documents_by_type.get(kind, 0) + 1
        counts.attachments += position > 0
        counts.first_control = counts.first_control or record["BEGBATES"]
        counts.last_control = record["BEGBATES"]
        native = document.get("native")
        if native is None:
            counts.metadata_only += 1
        else:
            counts.native_bytes += int(native["size"])
            hashes[native["path"]] = native["sha256"]
        hashes[document["text"]["path"]] = document["text"]["sha256"]
        if not document.get("text_complete", True):
            counts.text_incomplete += 1
        if record.get("ISSUES"):
            counts.issue_items.append(
                {
                    "control": record["BEGBATES"],
                    "source_id": record["SOURCEID"],
                    "issues": record["ISSUES"],
                }
            )


def write_custody_report(folder: ProductionFolder, report: dict[str, Any]) -> None:
    path = folder.path(CUSTODY_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")


def manifest_text(folder: ProductionFolder, known: dict[str, str]) -> str:
    """Return the manifest: one ``<sha256>  <path>`` line per file, as ``sha256sum`` writes.

    Hashes of natives and text files come from the journal, which recorded them as the
    files were written and checked them again on resume. Every other file is read.
    """
    lines = []
    for relative in folder.files():
        if relative == MANIFEST_FILE:
            continue
        digest = known.get(relative)
        if digest is None:
            digest = hash_file(folder.root / relative)[2]
        lines.append(f"{digest}  {relative}\n")
    return "".join(lines)


def sync_tree() -> None:
    """Flush every written file to disk before the manifest declares the production complete."""
    if hasattr(os, "sync"):
        os.sync()
