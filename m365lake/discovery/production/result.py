"""The outcome of an export, as ``export_production`` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ExportResult:
    """The outcome of one export run."""

    export_id: str
    destination: Path
    counts: dict[str, int]
    """hits, out_of_scope, not_found, families, families_produced, documents, attachments,
    duplicates, errors, metadata_only, text_incomplete, native_bytes, files."""
    manifest_sha256: str
    audit_seq: int
    """Sequence number of the audit event that records the export."""
    resumed: bool
    first_control: str | None = None
    last_control: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
