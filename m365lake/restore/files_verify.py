"""Read restored drive items back and compare them with their archived versions.

Files are compared by size and QuickXorHash (the only content hash OneDrive for Business
and SharePoint report) and by ``fileSystemInfo.lastModifiedDateTime``; folders by
existing as folders. SharePoint libraries that promote document properties rewrite
Office documents on upload, so a content difference in such a file is reported as a
rewrite, and so is a name the planner had to change for SharePoint's name rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from m365lake.errors import ItemNotFoundError
from m365lake.graph import GraphClient
from m365lake.lake import Lake
from m365lake.quickxor import QuickXorHash
from m365lake.restore.files_plan import WORKLOAD, FilePlan
from m365lake.restore.files_upload import FileTimes, content_source, inline_contents
from m365lake.restore.model import ItemResult, Outcome, Severity, VerifyFinding

logger = logging.getLogger(__name__)

_WRITTEN = frozenset({Outcome.CREATED, Outcome.REPLACED, Outcome.RENAMED})
_CHECKED = _WRITTEN | {Outcome.ALREADY_PRESENT}
# NOTE: which extensions a library rewrites depends on its columns and settings; these
# are the Office Open XML and legacy formats whose properties SharePoint promotes.
OFFICE_EXTENSIONS = frozenset(
    (
        ".docx",
        ".docm",
        ".dotx",
        ".xlsx",
        ".xlsm",
        ".xltx",
        ".pptx",
        ".pptm",
        ".potx",
        ".doc",
        ".xls",
        ".ppt",
    )
)


def _finding(
    item: FilePlan,
    target_id: str | None,
    field: str,
    expected: object,
    actual: object,
    severity: Severity,
) -> VerifyFinding:
    return VerifyFinding(
        workload=WORKLOAD,
        source_item_id=item.source_item_id,
        target_item_id=target_id,
        field=field,
        expected=None if expected is None else str(expected),
        actual=None if actual is None else str(actual),
        severity=severity,
    )


def compare_item(item: FilePlan, outcome: Outcome, live: dict[str, Any]) -> list[VerifyFinding]:
    """Return the differences between a read-back driveItem and its plan line."""
    target_id = str(live.get("id"))
    findings: list[VerifyFinding] = []
    if item.name_rewrite:
        findings.append(
            _finding(
                item, target_id, "name", item.original_name, live.get("name"), Severity.REWRITE
            )
        )
    if item.kind == "folder":
        if "folder" not in live:
            findings.append(
                _finding(item, target_id, "folder", "folder", "file", Severity.MISMATCH)
            )
        return findings
    hashes = (live.get("file") or {}).get("hashes") or {}
    size_differs = live.get("size") != item.size
    hash_differs = (
        item.quickxor_hash is not None and hashes.get("quickXorHash") != item.quickxor_hash
    )
    office = any(item.name.lower().endswith(ext) for ext in OFFICE_EXTENSIONS)
    severity = Severity.REWRITE if office else Severity.MISMATCH
    if size_differs:
        findings.append(_finding(item, target_id, "size", item.size, live.get("size"), severity))
    if hash_differs:
        findings.append(
            _finding(
                item,
                target_id,
                "quickxor_hash",
                item.quickxor_hash,
                hashes.get("quickXorHash"),
                severity,
            )
        )
    if outcome in _WRITTEN and item.modified_at is not None:
        expected = FileTimes(None, item.modified_at).file_system_info()["lastModifiedDateTime"]
        actual = (live.get("fileSystemInfo") or {}).get("lastModifiedDateTime")
        if actual is None or _seconds(actual) != _seconds(expected):
            findings.append(
                _finding(item, target_id, "modified_at", expected, actual, Severity.MISMATCH)
            )
    return findings


def _seconds(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(UTC).replace(microsecond=0)


async def archived_quickxor(lake: Lake, sha256: str) -> str:
    """Compute the QuickXorHash of archived content, for versions archived without one."""
    source = content_source(lake, sha256, inline_contents(lake, {sha256}).get(sha256))

    def digest() -> str:
        hasher = QuickXorHash()
        for chunk in source():
            hasher.update(chunk)
        return hasher.b64digest()

    return await asyncio.to_thread(digest)


async def verify_files(
    lake: Lake, graph: GraphClient, results: Sequence[ItemResult]
) -> list[VerifyFinding]:
    """Read back every restored or already present item and report each difference.

    The plan lines carry the archived size, hash and times. Graph may report no
    QuickXorHash for a file it has not processed yet, so for such versions the hash is
    computed from the archived content.
    """
    findings: list[VerifyFinding] = []
    checked = 0
    for result in results:
        item = result.planned
        if not isinstance(item, FilePlan) or result.outcome not in _CHECKED:
            continue
        if result.target_item_id is None:
            continue
        checked += 1
        try:
            live = await graph.get_json(
                f"/drives/{item.target_container}/items/{result.target_item_id}"
            )
        except ItemNotFoundError:
            findings.append(
                _finding(item, result.target_item_id, "item", "present", None, Severity.MISSING)
            )
            continue
        if item.kind == "file" and item.quickxor_hash is None:
            item = replace(item, quickxor_hash=await archived_quickxor(lake, item.source_version))
        findings += compare_item(item, result.outcome, live)
    logger.info("files restore verified %d items: %d findings", checked, len(findings))
    return findings
