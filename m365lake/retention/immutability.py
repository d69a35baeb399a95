"""Immutability of a lake on S3: Object Lock retention and legal holds on its objects.

A lake on an S3 bucket with Object Lock can have the store reject deletes and
overwrites of its write-once objects (table files, blobs, manifests). Then an attacker
with the lake's credentials, or a rogue administrator, cannot destroy the archive.
The decisions:

- Settings live in the lake, not only in the bucket. ``m365lake immutability set --mode
  governance|compliance --days N`` commits them under the state key
  ``immutability/object_lock`` with an audit event, after checking that the bucket has
  Object Lock enabled (which S3 allows only when the bucket is created). ``show`` prints
  them. The bucket's default retention is left alone: it would also lock the leases
  and locks that the lake rewrites all the time.
- Each upload of a write-once object carries ``ObjectLockMode`` and
  ``ObjectLockRetainUntilDate`` (upload time plus the lock period) on its PutObject or
  CreateMultipartUpload request. The lock period is the configured number of days,
  extended to the longest keep policy, because a version a keep policy protects for K
  days is at most K days old when it is written. S3 requires an integrity header on
  such uploads. botocore 1.36 and later send a CRC32 checksum with every upload,
  which satisfies it. moto ignores lock parameters on multipart uploads, so those
  objects get their retention in a PutObjectRetention request right after.
- Legal holds follow the lake's holds. After a hold is placed or released, and after
  every purge, ``sync_legal_holds`` turns the S3 legal hold ON for every table file
  and blob that stores a version an active hold covers, and OFF for objects no active
  hold needs any more. The objects and their versions are recorded under the state key
  ``immutability/legal_holds``, and every change appends an audit event. A sync that
  finds nothing to change commits nothing, so it can run any number of times.
- The lake writes each write-once name exactly once, so its authentic content is the
  oldest version of the name. On a versioned bucket, a delete without a version id
  only adds a delete marker and an overwrite adds a newer version, and both succeed on
  a locked bucket. The storage layer therefore lists the versions under the lake
  prefix once per process and reads the oldest version of any write-once name that
  has others on top (``m365lake.lake.object_lock.VersionIndex``).
- Purge deletes every version of a removed file or blob, by version id. When Object
  Lock refuses, the purge reports the object, with its retain-until date, and carries
  on. The purge commit still lists the file as removed, so the next purge retries it,
  and ``verify`` logs such a file as pending rather than as damage.

NOTE: Azure immutability (time-based retention and legal holds on blob versions) is not
implemented, because Azurite, the only Azure server the tests can reach, implements
none of it. ``set`` on an Azure lake raises LakeError.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from m365lake.discovery import audit
from m365lake.discovery.commit_loop import commit_with_retry
from m365lake.discovery.coverage import HoldCoverage
from m365lake.discovery.errors import InvalidRequestError
from m365lake.discovery.records import check_actor
from m365lake.errors import LakeError
from m365lake.lake import BlobStore, Lake, Transaction
from m365lake.lake.object_lock import (
    LEGAL_HOLDS_KEY,
    MODES,
    SETTINGS_KEY,
    ObjectLockRule,
    rule_from_state,
)
from m365lake.retention.plan import resolve_query_holds, versions_by_item

if TYPE_CHECKING:
    from m365lake.lake.object_store import ObjectStorage

logger = logging.getLogger(__name__)

OBJECT_LOCK_SET = "immutability.set"
LEGAL_HOLD_SYNC = "immutability.legal_hold"
MAX_LOCK_DAYS = 36_500
"""S3 accepts retain-until dates up to 100 years ahead."""


def _object_storage(lake: Lake, feature: str) -> ObjectStorage:
    storage = _remote_storage(lake)
    if storage is None:
        raise LakeError(
            f"{feature} needs a lake on an S3 bucket with Object Lock; the lake at "
            f"{lake.location} is a local folder, whose files the file system protects"
        )
    return storage


def _remote_storage(lake: Lake) -> ObjectStorage | None:
    if not lake.is_remote:
        return None
    # Imported here: the cloud SDKs take half a second to import, which local lakes skip.
    from m365lake.lake.object_store import ObjectStorage

    return lake.storage if isinstance(lake.storage, ObjectStorage) else None


def set_object_lock(lake: Lake, *, actor: str, mode: str, days: int) -> ObjectLockRule:
    """Commit the Object Lock settings for new write-once objects; return the rule in force.

    ``mode`` is ``governance`` (users with s3:BypassGovernanceRetention may still
    delete) or ``compliance`` (nobody may delete before the date). ``days`` is the
    minimum lock period; keep policies may lengthen it.
    """
    actor = check_actor(actor)
    mode_name = mode.upper()
    if mode_name not in MODES:
        raise InvalidRequestError(
            f"invalid Object Lock mode {mode!r}: use governance or compliance"
        )
    if not 1 <= days <= MAX_LOCK_DAYS:
        raise InvalidRequestError(
            f"invalid lock period {days} days: give 1 to {MAX_LOCK_DAYS} days"
        )
    storage = _object_storage(lake, "Object Lock")
    if not storage.object_lock_enabled():
        raise LakeError(
            f"the bucket of the lake at {lake.location} does not have Object Lock enabled. "
            "S3 enables it only when a bucket is created: create a bucket with Object "
            "Lock and copy the lake into it"
        )
    settings = {"mode": mode_name, "days": days}

    def work(tx: Transaction) -> tuple[None, dict[str, int]]:
        tx.set_state(SETTINGS_KEY, settings)
        audit.append_event(
            tx, lake, actor=actor, action=OBJECT_LOCK_SET, parameters=settings, counts={}
        )
        return None, {"settings": 1}

    commit_with_retry(lake, kind="immutability", container=None, work=work)
    storage.reload_object_lock()
    rule = storage.object_lock_rule
    if rule is None:
        raise LakeError(f"the Object Lock settings of {lake.location} did not take effect")
    logger.info("object lock on %s: %s for %d days", lake.location, rule.mode, rule.days)
    return rule


def object_lock_settings(lake: Lake) -> tuple[dict[str, Any] | None, ObjectLockRule | None]:
    """Return the committed settings and the rule they give with the keep policies."""
    settings = lake.state(SETTINGS_KEY)
    rule = rule_from_state(lake.state_items(""))
    return settings, rule


@dataclass
class LegalHoldChanges:
    """The changes that one ``sync_legal_holds`` made on the store."""

    placed: list[str] = field(default_factory=list)
    """Lake-relative names whose legal hold was turned ON."""
    released: list[str] = field(default_factory=list)
    """Lake-relative names whose legal hold was turned OFF."""
    held: int = 0
    """Objects under a legal hold after the sync."""

    @property
    def changed(self) -> bool:
        return bool(self.placed or self.released)


def wanted_legal_holds(lake: Lake) -> dict[str, list[str]]:
    """Return each table file and blob that stores a held version, with the holds covering it.

    NOTE: rows of ``attachments``, ``event_attachments`` and ``channel_message_parts``
    are not mapped to holds here, so their files and blobs keep only the retention lock.
    """
    coverage = HoldCoverage.load(lake)
    if not coverage.holds:
        return {}
    by_item = versions_by_item(lake)
    resolve_query_holds(lake, coverage, by_item)
    wanted: dict[str, set[str]] = defaultdict(set)
    blobs: dict[str, set[str]] = defaultdict(set)
    for versions in by_item.values():
        for stored in versions:
            holds = coverage.holds_covering(stored.version)
            if not holds:
                continue
            wanted[stored.path].update(holds)
            if stored.sha256:
                blobs[BlobStore.relative_path(stored.sha256)].update(holds)
    for name, blob_holds in blobs.items():
        if lake.storage.exists(name):
            wanted[name].update(blob_holds)
    return {name: sorted(holds) for name, holds in sorted(wanted.items())}


def _recorded_holds(lake: Lake) -> dict[str, list[str]]:
    recorded: dict[str, Any] = lake.state(LEGAL_HOLDS_KEY) or {}
    return {name: list(entry["holds"]) for name, entry in recorded.items()}


def sync_legal_holds(lake: Lake, *, actor: str) -> LegalHoldChanges:
    """Turn S3 legal holds ON where an active hold needs them and OFF where none does.

    Does nothing on a lake without Object Lock settings. Idempotent: a second call
    without hold changes in between changes nothing and commits nothing.
    """
    actor = check_actor(actor)
    storage = _remote_storage(lake)
    if storage is None or lake.state(SETTINGS_KEY) is None:
        return LegalHoldChanges()
    wanted = wanted_legal_holds(lake)
    if _recorded_holds(lake) == wanted:
        return LegalHoldChanges(held=len(wanted))

    def work(tx: Transaction) -> tuple[LegalHoldChanges, dict[str, int]]:
        nonlocal wanted
        recorded: dict[str, Any] = lake.state(LEGAL_HOLDS_KEY) or {}
        if tx_attempts:
            # A retry runs after another commit, which may have changed the holds.
            wanted = wanted_legal_holds(lake)
        tx_attempts.append(tx.run_id)
        changes = LegalHoldChanges(held=len(wanted))
        record: dict[str, Any] = {}
        for name, holds in wanted.items():
            previous = recorded.get(name)
            if previous is None:
                version = storage.set_legal_hold(name, on=True)
                changes.placed.append(name)
            else:
                version = previous["version"]
            record[name] = {"version": version, "holds": holds}
        for name in sorted(set(recorded) - set(wanted)):
            if storage.exists(name):
                storage.set_legal_hold(name, on=False)
            changes.released.append(name)
        if record != recorded:
            tx.set_state(LEGAL_HOLDS_KEY, record)
        if changes.changed:
            audit.append_event(
                tx,
                lake,
                actor=actor,
                action=LEGAL_HOLD_SYNC,
                parameters={"placed": changes.placed, "released": changes.released},
                counts={
                    "placed": len(changes.placed),
                    "released": len(changes.released),
                    "held": changes.held,
                },
            )
        return changes, {"legal_holds": len(record)}

    tx_attempts: list[str] = []
    changes = commit_with_retry(lake, kind="immutability", container=None, work=work)
    if changes.changed:
        logger.info(
            "legal holds on %s: %d placed, %d released, %d objects held",
            lake.location,
            len(changes.placed),
            len(changes.released),
            changes.held,
        )
    return changes
