"""Counts of one drive run, and the state keys a drive run commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from m365lake.sources.drive_list import Drive


@dataclass
class DriveBackupResult:
    """Counts of one drive run, as committed."""

    drive: Drive
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    commit_seq: int | None = None
    commits: int = 0
    """Commits the run made: its checkpoints and the last one."""
    items_new: int = 0
    items_updated: int = 0
    items_deleted: int = 0
    paths_updated: int = 0
    """Versions written only because an ancestor folder was renamed or moved."""
    content_reused: int = 0
    unchanged_replays: int = 0
    failures: int = 0
    resyncs: int = 0
    bytes_downloaded: int = 0
    blobs_written: int = 0
    resumes: int = 0
    pending_retries: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "items_new": self.items_new,
            "items_updated": self.items_updated,
            "items_deleted": self.items_deleted,
            "paths_updated": self.paths_updated,
            "content_reused": self.content_reused,
            "failures": self.failures,
            "resyncs": self.resyncs,
            "bytes_downloaded": self.bytes_downloaded,
            "blobs_written": self.blobs_written,
        }


def delta_key(drive_id: str) -> str:
    return f"files/{drive_id}/delta"


def pending_key(drive_id: str) -> str:
    return f"files/{drive_id}/pending"


def directory_key(drive_id: str) -> str:
    return f"files/{drive_id}/directory"


def run_row(result: DriveBackupResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "kind": "files",
        "container": result.drive.drive_id,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "status": "succeeded",
        "items_new": result.items_new,
        "items_updated": result.items_updated + result.paths_updated,
        "items_deleted": result.items_deleted,
        "failures": result.failures,
        "bytes_downloaded": result.bytes_downloaded,
        "blobs_written": result.blobs_written,
    }
