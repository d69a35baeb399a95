"""Finish an export: reports, the audit event, and the manifest as the last file written."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from m365lake.discovery import audit
from m365lake.discovery.audit_chain import read_audit_events
from m365lake.discovery.production.dedup import MAIL_HASH_VERSION
from m365lake.discovery.production.folder import (
    CSV_FILE,
    DAT_FILE,
    DUPLICATES_FILE,
    MANIFEST_FILE,
    ProductionFolder,
)
from m365lake.discovery.production.loadfile import FIELDS
from m365lake.discovery.production.reports import (
    ProductionCounts,
    manifest_text,
    sync_tree,
    write_custody_report,
    write_load_files,
)
from m365lake.discovery.production.result import ExportResult
from m365lake.discovery.production.selection import Selection
from m365lake.discovery.production.state import PENDING_MANIFEST, state_dir, write_header
from m365lake.discovery.records import utc_now
from m365lake.lake import Lake

logger = logging.getLogger(__name__)

CUSTODY_FORMAT = 1
SKIPPED_REASON = (
    "the search index returned the item, but the lake has no version of it that is not a "
    "deletion: it was purged after indexing"
)
DEDUP_DEFINITION = {
    "files": "SHA-256 of the native (the archived bytes)",
    "mail": (
        f"SHA-256 of a canonical JSON object (version {MAIL_HASH_VERSION}) of: sender "
        "address; to, cc and bcc addresses (lowercased, sorted); subject (white space "
        "collapsed); sent time (UTC, to the second); SHA-256 of the body's text/plain and "
        "text/html parts (decoded, line ends as LF, trailing blanks removed); sorted "
        "SHA-256 of each attachment's decoded content"
    ),
    "unit": "family: a message with its attachments, or a file",
    "master": "the first family in production order with the hash",
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _recorded_event(lake: Lake, header: dict[str, Any]) -> dict[str, Any] | None:
    """Return the audit record of this export's completion, when an earlier run made one."""
    if header.get("audit"):
        return dict(header["audit"])
    case_id = header["settings"]["case_id"]
    for event in read_audit_events(lake, case_id=case_id, action=audit.EXPORT):
        parameters = event.parameters_dict()
        if parameters.get("export_id") == header["export_id"] and (
            parameters.get("status") == "complete"
        ):
            return {
                "seq": event.seq,
                "hash": event.hash,
                "manifest_sha256": parameters.get("manifest_sha256"),
                "counts": event.counts_dict(),
                "first_control": parameters.get("first_control"),
                "last_control": parameters.get("last_control"),
            }
    return None


def _custody_report(
    lake: Lake,
    selection: Selection,
    header: dict[str, Any],
    counts: dict[str, int],
    production: ProductionCounts,
) -> dict[str, Any]:
    settings = header["settings"]
    return {
        "format": CUSTODY_FORMAT,
        "export_id": header["export_id"],
        "case": {"case_id": settings["case_id"], "name": header.get("case_name")},
        "query": {
            "kql": settings["kql"],
            "search_id": settings["search_id"],
            "search_name": settings["search_name"],
        },
        "custodians": [
            {
                "custodian_id": custodian.custodian_id,
                "kind": custodian.kind,
                "label": custodian.label,
                "container_id": custodian.container_id,
            }
            for custodian in selection.custodians
        ],
        "actor": header["actor"],
        "started_at": header["started_at"],
        "finished_at": utc_now().isoformat(),
        "tool": {"name": "m365lake", "version": header["runs"][-1]["tool_version"]},
        "source": {"lake_root": lake.location, "runs": header["runs"]},
        "settings": settings["options"],
        "deduplication": {"scope": settings["options"]["dedup"], **DEDUP_DEFINITION},
        "dates": "ISO 8601 in UTC, to the second",
        "load_file": {"dat": DAT_FILE, "csv": CSV_FILE, "fields": list(FIELDS)},
        "reports": {"duplicates": DUPLICATES_FILE, "manifest": MANIFEST_FILE},
        "first_control": production.first_control,
        "last_control": production.last_control,
        "counts": counts,
        "skipped": [
            {"source_id": source_id, "reason": SKIPPED_REASON} for source_id in selection.not_found
        ],
        "errors": production.error_items,
        "documents_with_issues": production.issue_items,
    }


def finish_production(
    lake: Lake,
    folder: ProductionFolder,
    selection: Selection,
    header: dict[str, Any],
    *,
    actor: str,
    resumed: bool,
) -> ExportResult:
    """Write the reports, record the audit event, then put the manifest in place."""
    root = folder.root
    pending = state_dir(root) / PENDING_MANIFEST
    recorded = _recorded_event(lake, header)
    if (
        recorded is not None
        and pending.exists()
        and _sha256(pending.read_bytes()) == recorded["manifest_sha256"]
    ):
        logger.info(
            "export %s was recorded before it stopped; installing its manifest",
            header["export_id"],
        )
        _install_manifest(pending, root)
        return ExportResult(
            export_id=header["export_id"],
            destination=root,
            counts=dict(recorded["counts"]),
            manifest_sha256=str(recorded["manifest_sha256"]),
            audit_seq=int(recorded["seq"]),
            resumed=resumed,
            first_control=recorded.get("first_control"),
            last_control=recorded.get("last_control"),
        )

    production, hashes = write_load_files(folder)
    counts = {
        "hits": selection.hits,
        "out_of_scope": selection.out_of_scope,
        "not_found": len(selection.not_found),
        "families": len(selection.families),
        **production.to_json(),
    }
    write_custody_report(folder, _custody_report(lake, selection, header, counts, production))
    sync_tree()
    text = manifest_text(folder, hashes).encode("utf-8")
    counts["files"] = text.count(b"\n")
    _write_durably(pending, text)
    manifest_sha256 = _sha256(text)
    event = audit.record_event(
        lake,
        actor,
        audit.EXPORT,
        {
            "export_id": header["export_id"],
            "status": "complete",
            "destination": str(root),
            **header["settings"],
            "resumed": resumed,
            "manifest_sha256": manifest_sha256,
            "first_control": production.first_control,
            "last_control": production.last_control,
            "lake_head": header["runs"][-1]["lake_head"],
            "index_seq": header["runs"][-1]["index_seq"],
        },
        counts,
        case_id=header["settings"]["case_id"],
    )
    header["audit"] = {
        "seq": event.seq,
        "hash": event.hash,
        "manifest_sha256": manifest_sha256,
        "counts": counts,
        "first_control": production.first_control,
        "last_control": production.last_control,
    }
    write_header(root, header)
    _install_manifest(pending, root)
    logger.info(
        "export %s complete: %d documents, %d duplicates suppressed, %d errors",
        header["export_id"],
        production.documents,
        production.duplicates,
        production.errors,
    )
    return ExportResult(
        export_id=header["export_id"],
        destination=root,
        counts=counts,
        manifest_sha256=manifest_sha256,
        audit_seq=event.seq,
        resumed=resumed,
        first_control=production.first_control,
        last_control=production.last_control,
        errors=production.error_items,
    )


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _install_manifest(pending: Path, root: Path) -> None:
    """Move the manifest into place, the step that marks the production complete."""
    os.replace(pending, root / MANIFEST_FILE)
    if hasattr(os, "O_DIRECTORY"):
        descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    shutil.rmtree(state_dir(root), ignore_errors=True)
