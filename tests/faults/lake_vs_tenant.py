"""Compare an archive with the emulated tenant it was taken from.

The comparison reads the committed Parquet files directly, not the catalog views, so a
bug in the views cannot hide a bug in the backup. Content is read back from the lake
(inline bytes or blobs, each checked against its SHA-256) and compared with the SHA-256
of the emulator's own bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from m365lake.emulator import Tenant
from m365lake.lake import Lake, reading


@dataclass
class Accounting:
    """The containers and items a run left out or saw change, which excuse missing or
    outdated items in the comparison after that run."""

    failed_containers: set[str] = field(default_factory=set)
    """Mailbox user principal names and drive ids that the run reported as failed."""
    whole_run_failed: bool = False
    """The run stopped before reporting per container, or was killed."""
    changed_during_run: set[str] = field(default_factory=set)
    """Ids of messages and files that changed while the run was going on."""


@dataclass
class Comparison:
    """Outcome of one comparison: counts and one message per problem."""

    items_checked: int = 0
    archived: int = 0
    excused: int = 0
    """Live items not archived (or not up to date) but recorded in ``failures`` or in a
    failed container."""
    problems: list[str] = field(default_factory=list)


def _rows(lake: Lake, table: str, columns: str) -> list[tuple[Any, ...]]:
    files = reading.TableScan(lake, lake.committed_entries(table))
    if not files:
        return []
    with reading.connect(lake) as db, files.errors():
        source = files.sql("union_by_name = true, hive_partitioning = false", connection=db)
        query = f"SELECT {columns} FROM {source} ORDER BY captured_at"
        return db.execute(query).fetchall()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def failed_item_ids(lake: Lake) -> set[str]:
    return {row[0] for row in _rows(lake, "failures", "item_id, captured_at") if row[0]}


def compare_mail(lake: Lake, tenant: Tenant, accounting: Accounting, *, strict: bool) -> Comparison:
    """Compare every mailbox: each live message archived once with the right MIME.

    ``strict`` allows no excuse: every live message must be archived and up to date.
    Otherwise a message may be missing or outdated when ``failures`` names it or its
    mailbox failed.
    """
    result = Comparison()
    rows = _rows(
        lake,
        "messages",
        "mailbox_id, message_id, change, change_key, folder_id, mime_sha256, mime_inline, "
        "captured_at, attachment_count",
    )
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    versions: dict[tuple[str, str, str, str], int] = {}
    # Each version with attachments has its own attachment rows.
    versions_with_parts: dict[tuple[str, str], int] = {}
    for row in rows:
        mailbox_id, message_id, change, change_key, folder_id = row[:5]
        latest[(mailbox_id, message_id)] = row
        if change != "deleted":
            key = (mailbox_id, message_id, change_key, folder_id)
            versions[key] = versions.get(key, 0) + 1
            if row[8]:
                content = (message_id, row[5])
                versions_with_parts[content] = versions_with_parts.get(content, 0) + 1
    for key, count in versions.items():
        if count > 1:
            result.problems.append(f"message version {key} archived {count} times")
    parts: dict[tuple[str, str, int], int] = {}
    for message_id, mime_sha256, part_index, _ in _rows(
        lake, "attachments", "message_id, mime_sha256, part_index, captured_at"
    ):
        key = (message_id, mime_sha256, part_index)
        parts[key] = parts.get(key, 0) + 1
    for (message_id, mime_sha256, part_index), count in parts.items():
        expected = versions_with_parts.get((message_id, mime_sha256), 0)
        if count != expected:
            result.problems.append(
                f"attachment {part_index} of message {message_id} (MIME {mime_sha256}) has "
                f"{count} rows for {expected} archived versions"
            )
    failed = failed_item_ids(lake)

    for info in tenant.users():
        if not info.has_mailbox:
            continue
        upn = info.user.user_principal_name
        excusable = not strict and (
            accounting.whole_run_failed or upn in accounting.failed_containers
        )
        live = tenant.live_messages(upn)
        for message_id, message in live.items():
            result.items_checked += 1
            row = latest.get((info.id, message_id))
            expected = (message.change_key, message.folder_id, _sha256(message.mime))
            actual = None if row is None or row[2] == "deleted" else (row[3], row[4], row[5])
            if actual is not None and actual[2] == expected[2]:
                problem = _content_problem(lake, row[5], row[6], f"message {message_id}")
                if problem:
                    result.problems.append(problem)
            if actual == expected:
                result.archived += 1
            elif not strict and (
                excusable or message_id in failed or message_id in accounting.changed_during_run
            ):
                result.excused += 1
            else:
                result.problems.append(
                    f"mailbox {upn}: live message {message_id} archived as {actual}, "
                    f"expected (change key, folder, MIME SHA-256) {expected}"
                )
        for (mailbox_id, message_id), row in latest.items():
            if mailbox_id != info.id or row[2] == "deleted" or message_id in live:
                continue
            if not excusable and message_id not in accounting.changed_during_run:
                result.problems.append(
                    f"mailbox {upn}: message {message_id} is gone from the tenant but its "
                    "latest archived version is not a deletion"
                )
    return result


def tenant_drive_ids(tenant: Tenant) -> list[str]:
    drives = []
    for info in tenant.users():
        drive = tenant.onedrive_of(info.id)
        if drive is not None:
            drives.append(drive.id)
    for site in tenant.sites():
        drives.extend(drive.id for drive in tenant.drives_of_site(site.id))
    return drives


def compare_files(
    lake: Lake, tenant: Tenant, accounting: Accounting, *, strict: bool
) -> Comparison:
    """Compare every drive: each live file archived once at its path with the right bytes."""
    result = Comparison()
    rows = _rows(
        lake,
        "drive_items",
        "drive_id, item_id, change, path, etag, content_sha256, content_inline, is_folder, "
        "captured_at",
    )
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    versions: dict[tuple[str, str, str, str], int] = {}
    for row in rows:
        drive_id, item_id, change, path, etag = row[:5]
        latest[(drive_id, item_id)] = row
        if change != "deleted":
            key = (drive_id, item_id, etag, path)
            versions[key] = versions.get(key, 0) + 1
    for key, count in versions.items():
        if count > 1:
            result.problems.append(f"drive item version {key} archived {count} times")
    failed = failed_item_ids(lake)

    for drive_id in tenant_drive_ids(tenant):
        excusable = not strict and (
            accounting.whole_run_failed or drive_id in accounting.failed_containers
        )
        live = tenant.live_files(drive_id)
        for item_id, (parts, content, _) in live.items():
            result.items_checked += 1
            row = latest.get((drive_id, item_id))
            expected = ("/".join(parts), _sha256(content))
            actual = None if row is None or row[2] == "deleted" else (row[3], row[5])
            if actual is not None and actual[1] == expected[1]:
                problem = _content_problem(lake, row[5], row[6], f"file {item_id}")
                if problem:
                    result.problems.append(problem)
            if actual == expected:
                result.archived += 1
            elif not strict and (
                excusable or item_id in failed or item_id in accounting.changed_during_run
            ):
                result.excused += 1
            else:
                result.problems.append(
                    f"drive {drive_id}: live file {item_id} archived as {actual}, "
                    f"expected (path, content SHA-256) {expected}"
                )
        for (row_drive, item_id), row in latest.items():
            if row_drive != drive_id or row[2] == "deleted" or row[7] or item_id in live:
                continue
            if not excusable and item_id not in accounting.changed_during_run:
                result.problems.append(
                    f"drive {drive_id}: file {item_id} is gone from the tenant but its latest "
                    "archived version is not a deletion"
                )
    return result


def _content_problem(lake: Lake, sha256: str, inline: bytes | None, what: str) -> str | None:
    try:
        data = lake.read_content(sha256, inline)
    except Exception as error:
        return f"{what}: content {sha256} could not be read back: {error}"
    if _sha256(data) != sha256:
        return f"{what}: content read back does not hash to {sha256}"
    return None
