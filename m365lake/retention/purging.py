"""Purge: the only way data leaves the lake.

Parquet files are write-once, so a purge removes rows by rewriting. For every partition
(a mailbox's or a drive's folder of one table) that contains a purged row, the purge writes
one replacement file with all the partition's other rows, in commit order, so the order
of an item's versions is unchanged. Its manifest lists the replacement files as usual and,
under ``removed``, the files they replace and the content hashes of the purged versions.
After the commit the replaced files are deleted, then every blob among those hashes that
no remaining row references.

The search index follows a purge on its next update: it re-reads the rewritten
partitions and drops or replaces the documents of purged items.

A purge killed before its commit leaves only unlisted files, which no reader sees. One
killed after its commit leaves files and blobs that the next purge (or ``finish_purges``)
deletes. Until then ``verify`` reports each such file.

Blobs are deleted under the lake's exclusive blob lease (``m365lake.lake.blob_users``):
a backup running meanwhile may already have found a blob present and reference it in
a row it has not committed, so the purge waits until no backup or restore is
registered before it reads which blobs rows reference. When they do not finish within
the wait, the purge's commit remains and its blobs are left for the next purge.

On an S3 bucket with Object Lock, a removed file or blob may be locked for a while
(``m365lake.retention.immutability``). Every version of it is deleted by version id
once the store allows it: until then the purge reports it in ``locked`` and each later
purge tries again, because the purge commit keeps listing it as removed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from m365lake.discovery import audit
from m365lake.discovery.commit_loop import commit_with_retry
from m365lake.discovery.coverage import HoldCoverage
from m365lake.discovery.records import check_actor, utc_now
from m365lake.errors import M365LakeError
from m365lake.lake import SCHEMAS, BlobStore, Lake, Transaction, reading
from m365lake.lake.blob_users import DEFAULT_PURGE_WAIT_SECONDS, BlobsInUseError, exclusive_blobs
from m365lake.lake.object_lock import LockedObjectError
from m365lake.lake.reading import TableScan
from m365lake.retention.immutability import sync_legal_holds
from m365lake.retention.plan import PurgePlan, build_plan
from m365lake.retention.policies import list_policies

logger = logging.getLogger(__name__)

PURGE_STATE_KEY = "retention/purge"
"""Rewritten by every purge commit, so two purges running at once conflict."""
PURGE_CLEANUP = "purge.cleanup"
READ_BATCH_ROWS = 1_000


@dataclass
class PurgeResult:
    """The decisions of one purge and, unless it was a dry run, the counts of what it removed."""

    plan: PurgePlan
    applied: bool
    files_replaced: int = 0
    files_deleted: int = 0
    blobs_deleted: int = 0
    blobs_deferred: str | None = None
    """The reason unreferenced blobs were left for the next purge, naming the runs that
    still used blobs; None when every unreferenced blob was deleted."""
    locked: list[LockedObjectError] = field(default_factory=list)
    """Removed files and blobs that Object Lock kept; a later purge deletes them."""

    def counts(self) -> dict[str, int]:
        return {
            **self.plan.counts(),
            "files_replaced": self.files_replaced,
            "files_deleted": self.files_deleted,
            "blobs_deleted": self.blobs_deleted,
            "objects_locked": len(self.locked),
        }


def plan_purge(lake: Lake, *, now: datetime | None = None) -> PurgePlan:
    """Return what a purge at ``now`` (default: the current time) would remove."""
    moment = now or utc_now()
    return build_plan(lake, list_policies(lake), HoldCoverage.load(lake), moment)


def purge(
    lake: Lake,
    *,
    actor: str,
    apply: bool = False,
    now: datetime | None = None,
    blob_wait_seconds: float = DEFAULT_PURGE_WAIT_SECONDS,
) -> PurgeResult:
    """Remove expired, unheld versions and their unreferenced blobs; a dry run unless ``apply``.

    The plan is made inside the purge's transaction, after it began: a hold or policy
    change committed meanwhile appends an audit event, which makes the purge commit
    conflict, and the retry plans again with the new holds. Raises SearchIndexError when
    a query hold cannot be resolved, because purging without it could remove held items.
    Blobs are deleted once no backup or restore uses blobs; after ``blob_wait_seconds``
    they are left for the next purge and ``blobs_deferred`` names the runs waited for.
    """
    actor = check_actor(actor)
    if not apply:
        return PurgeResult(plan=plan_purge(lake, now=now), applied=False)
    # Leftovers of killed purges: their blobs are deleted with this purge's, below.
    finish_purges(lake, actor=actor, delete_blobs=False)

    def work(tx: Transaction) -> tuple[PurgeResult, dict[str, int]]:
        plan = plan_purge(lake, now=now)
        replaced = _rewrite_partitions(lake, tx, plan)
        tx.remove_files(replaced, blob_candidates=plan.blob_candidates())
        tx.set_state(PURGE_STATE_KEY, {"run_id": tx.run_id, "at": plan.now.isoformat()})
        result = PurgeResult(plan=plan, applied=True, files_replaced=len(replaced))
        audit.append_event(
            tx,
            lake,
            actor=actor,
            action=audit.PURGE,
            parameters={
                "now": plan.now,
                "policies": [policy.to_state() for policy in plan.policies],
                "held_by": sorted({h for ids in plan.held.values() for h in ids}),
            },
            counts=result.counts(),
        )
        return result, {"versions_purged": len(plan.purge), "files_replaced": len(replaced)}

    result = commit_with_retry(lake, kind="purge", container=None, work=work)
    # The replaced files may carry S3 legal holds for held rows that their replacements
    # now store, so the legal holds move over before the deletes.
    try:
        sync_legal_holds(lake, actor=actor)
    except (M365LakeError, OSError) as error:
        logger.warning(
            "the S3 legal holds of the lake at %s were not updated after the purge: %s. "
            "Files that keep one are reported as locked; run `m365lake immutability sync`",
            lake.location,
            error,
        )
    try:
        deleted_files, deleted_blobs = finish_purges(
            lake, actor=actor, blob_wait_seconds=blob_wait_seconds, locked=result.locked
        )
    except BlobsInUseError as error:
        logger.warning("%s", error)
        deleted_files, deleted_blobs = error.files_deleted, 0
        result.blobs_deferred = str(error)
    result.files_deleted, result.blobs_deleted = deleted_files, deleted_blobs
    logger.info(
        "purged %d versions: %d files replaced, %d files and %d blobs deleted, "
        "%d objects locked for a later purge",
        len(result.plan.purge),
        result.files_replaced,
        deleted_files,
        deleted_blobs,
        len(result.locked),
    )
    return result


def _partition_of(entry: Mapping[str, Any]) -> dict[str, str]:
    """Return a file's partition values from its manifest entry, or from its path."""
    partition = entry.get("partition")
    if isinstance(partition, dict):
        return {str(key): str(value) for key, value in partition.items()}
    parts = PurePosixPath(entry["path"]).parts[2:-1]
    return {key: unquote(value) for key, _, value in (part.partition("=") for part in parts)}


def _rewrite_partitions(lake: Lake, tx: Transaction, plan: PurgePlan) -> list[dict[str, Any]]:
    """Write each affected partition again without the purged rows; return the replaced files."""
    rows_by_file = plan.rows_by_file()
    live = lake.live_files()
    affected = {(table, str(PurePosixPath(path).parent)) for table, path in rows_by_file}
    replaced = []
    for item in live:
        seq, entry = item.seq, item.entry
        key = (entry["table"], str(PurePosixPath(entry["path"]).parent))
        if key not in affected:
            continue
        dropped = rows_by_file.get((entry["table"], entry["path"]), set())
        _copy_rows(lake, tx, entry, dropped)
        replaced.append({**entry, "commit": seq})
    return replaced


def _copy_rows(lake: Lake, tx: Transaction, entry: Mapping[str, Any], dropped: set[int]) -> None:
    partition = _partition_of(entry)
    offset = 0
    for batch in reading.iter_batches(lake, entry, READ_BATCH_ROWS):
        rows = batch.to_pylist()
        kept = [row for number, row in enumerate(rows, start=offset) if number not in dropped]
        offset += len(rows)
        if kept:
            tx.write_rows(entry["table"], kept, partition=partition)


def finish_purges(
    lake: Lake,
    *,
    actor: str,
    delete_blobs: bool = True,
    blob_wait_seconds: float = DEFAULT_PURGE_WAIT_SECONDS,
    locked: list[LockedObjectError] | None = None,
) -> tuple[int, int]:
    """Delete what committed purges removed but a killed run left behind; return the counts.

    Deletes every file a manifest lists under ``removed`` that still exists, then, unless
    ``delete_blobs`` is false, every blob among the removed content hashes that no
    committed row references, under the exclusive blob lease. Records a
    ``purge.cleanup`` audit event when it deleted anything. Raises BlobsInUseError
    (with ``files_deleted``) when backups or restores kept using blobs for
    ``blob_wait_seconds``. Files and blobs that Object Lock keeps are appended to
    ``locked`` and left for a later call.
    """
    refused: list[LockedObjectError] = [] if locked is None else locked
    already = len(refused)
    files_deleted = 0
    for path in lake.removed_files():
        if lake.storage.exists(path) and _delete(lake, path, refused):
            files_deleted += 1
    unreferenced: list[str] = []
    try:
        if delete_blobs:
            unreferenced = _delete_unreferenced_blobs(lake, actor, blob_wait_seconds, refused)
    except BlobsInUseError as error:
        error.files_deleted = files_deleted
        raise
    finally:
        kept = refused[already:]
        if files_deleted or unreferenced or kept:
            audit.record_event(
                lake,
                actor,
                PURGE_CLEANUP,
                {
                    "blobs": unreferenced,
                    "locked": [
                        {"path": error.relative, "reason": error.describe()} for error in kept
                    ],
                },
                {
                    "files_deleted": files_deleted,
                    "blobs_deleted": len(unreferenced),
                    "objects_locked": len(kept),
                },
            )
    return files_deleted, len(unreferenced)


def _delete(lake: Lake, relative: str, locked: list[LockedObjectError]) -> bool:
    """Delete a removed file or blob; return False, noting why, when Object Lock keeps it."""
    try:
        lake.storage.remove(relative)
    except LockedObjectError as error:
        logger.info("purge left %s", error)
        locked.append(error)
        return False
    return True


def _delete_unreferenced_blobs(
    lake: Lake, actor: str, wait_seconds: float, locked: list[LockedObjectError]
) -> list[str]:
    """Delete the removed content hashes' blobs that no committed row references."""
    candidates = {
        digest
        for digest in lake.removed_blob_candidates()
        if lake.storage.exists(BlobStore.relative_path(digest))
    }
    if not candidates:
        return []
    with exclusive_blobs(
        lake.storage, owner=f"purge by {actor}", wait_seconds=wait_seconds
    ) as lock:
        # No blob user is registered now, so every row that may reference a candidate
        # is committed, and runs that start later wait for the lock.
        unreferenced = sorted(candidates - referenced_hashes(lake, candidates))
        deleted = []
        for digest in unreferenced:
            lock.keep_alive()
            if _delete(lake, BlobStore.relative_path(digest), locked):
                deleted.append(digest)
    return deleted


def _hash_columns() -> dict[str, list[str]]:
    """Return table → columns that store content hashes (``*_sha256``)."""
    return {
        table: [name for name in schema.names if name.endswith("sha256")]
        for table, schema in SCHEMAS.items()
        if any(name.endswith("sha256") for name in schema.names)
    }


def referenced_hashes(lake: Lake, candidates: set[str]) -> set[str]:
    """Return the hashes among ``candidates`` that some committed row still references."""
    if not candidates:
        return set()
    found: set[str] = set()
    with reading.connect(lake) as db:
        db.register("candidates", pa.table({"digest": sorted(candidates)}))
        for table, columns in _hash_columns().items():
            scan = TableScan(lake, lake.committed_entries(table))
            if not scan:
                continue
            source = scan.sql("union_by_name = true, hive_partitioning = false", connection=db)
            for column in columns:
                query = (
                    f'SELECT DISTINCT "{column}" FROM {source} WHERE "{column}" IN '
                    "(SELECT digest FROM candidates)"
                )
                with scan.errors():
                    rows = db.execute(query).fetchall()
                found.update(row[0] for row in rows)
    return found
