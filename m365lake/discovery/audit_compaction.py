"""Compact the audit trail: merge each month's small event files into one Parquet file.

Every commit that appends audit events writes its own small file, so a busy lake
collects thousands of them. A compaction commit writes one file per period with the
period's events in sequence order. A file's period is the calendar month, in UTC, of its
first event. The commit lists the files it replaces under ``removed``, and they are
deleted after the commit, as a purge deletes the files it replaced.

Event rows are copied unchanged, so every event keeps its hash and its link to the
previous event. The commit records, under the state key
``discovery/audit/compaction/<period>``, which commit first wrote each merged range of
events, and ``check_audit_chain`` uses it to keep checking each event against the audit
head that its commit recorded. The new file is listed with its SHA-256 like any other,
so ``verify`` still detects a flipped byte or a removed event after compaction.

A trail that fails its checks is not compacted: copying damaged events into a new file
would give them a new, valid file hash.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from m365lake.discovery.audit import AUDIT_COMPACT, AUDIT_COMPACTION_PREFIX, record_event
from m365lake.discovery.audit_chain import StoredEvent, check_audit_chain, read_stored_events
from m365lake.discovery.commit_loop import new_run_id
from m365lake.discovery.records import check_actor
from m365lake.errors import CommitConflictError, LakeIntegrityError
from m365lake.lake import Lake

logger = logging.getLogger(__name__)

MIN_FILES = 2
"""A period is compacted when it has at least this many files."""
COMMIT_ATTEMPTS = 5


@dataclass
class AuditCompaction:
    """The periods, events and files that one ``compact_audit_trail`` call merged."""

    periods: dict[str, int] = field(default_factory=dict)
    """Period (``YYYY-MM``) → files merged into its new file."""
    events: int = 0
    files_removed: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "periods": len(self.periods),
            "events": self.events,
            "files_removed": self.files_removed,
        }


@dataclass
class _PeriodPlan:
    period: str
    entries: list[dict[str, Any]]
    """Manifest entries of the files to merge, each with the ``commit`` that listed it."""
    events: list[StoredEvent]


def _check_trail(lake: Lake) -> None:
    """Raise LakeIntegrityError when the trail or one of its files fails verification."""
    _, problems = check_audit_chain(lake)
    for item in lake.live_files():
        if item.entry.get("table") != "audit_events":
            continue
        digest, size = lake.storage.hash_file(item.entry["path"])
        if digest != item.entry["sha256"] or size != item.entry["bytes"]:
            problems.append(
                f"audit file {item.entry['path']} (commit {item.seq}) hashes to {digest} but "
                f"the manifest records {item.entry['sha256']}"
            )
    if problems:
        raise LakeIntegrityError(
            "the audit trail was not compacted because it fails verification, and compaction "
            "would copy the damage into a file with a new hash. Run `m365lake verify`, "
            "restore the damaged files from a copy of the lake, then compact again:\n"
            + "\n".join(problems),
            problems=problems,
        )


def _plan(lake: Lake, min_files: int) -> dict[str, _PeriodPlan]:
    """Return the periods with at least ``min_files`` live audit files, and their events."""
    stored, problems = read_stored_events(lake)
    if problems:
        raise LakeIntegrityError("\n".join(problems), problems=problems)
    by_path: dict[str, list[StoredEvent]] = defaultdict(list)
    for item in stored:
        by_path[item.path].append(item)
    plans: dict[str, _PeriodPlan] = {}
    for live in lake.live_files():
        entry = live.entry
        events = sorted(by_path.get(entry["path"], []), key=lambda item: item.event.seq)
        if entry.get("table") != "audit_events" or not events:
            continue
        period = f"{events[0].event.at:%Y-%m}"
        plan = plans.setdefault(period, _PeriodPlan(period, [], []))
        plan.entries.append({**entry, "commit": live.seq})
        plan.events.extend(events)
    return {period: plan for period, plan in plans.items() if len(plan.entries) >= min_files}


def _origins(events: list[StoredEvent]) -> list[list[int]]:
    """Return [commit, first event, last event] for each run of events from one commit."""
    ranges: list[list[int]] = []
    for item in sorted(events, key=lambda item: item.event.seq):
        last = ranges[-1] if ranges else None
        if last is not None and last[0] == item.commit_seq and last[2] + 1 == item.event.seq:
            last[2] = item.event.seq
        else:
            ranges.append([item.commit_seq, item.event.seq, item.event.seq])
    return ranges


def _compact_period(lake: Lake, period: str, min_files: int) -> _PeriodPlan | None:
    """Merge one period's files in one commit; return what was merged, or None."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        with lake.begin(
            run_id=new_run_id("audit-compaction"), kind="audit-compaction", container=None
        ) as tx:
            # Planned after the transaction began: a compaction of the same period that
            # commits meanwhile rewrites its state key, so this commit conflicts.
            plan = _plan(lake, min_files).get(period)
            if plan is None:
                return None
            events = sorted(plan.events, key=lambda item: item.event.seq)
            tx.write_rows("audit_events", [item.event.row() for item in events], partition={})
            tx.remove_files(plan.entries)
            tx.set_state(
                f"{AUDIT_COMPACTION_PREFIX}{period}",
                {"period": period, "origins": _origins(events)},
            )
            try:
                tx.commit(counts={"audit_events": len(events), "files_removed": len(plan.entries)})
            except CommitConflictError as error:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                logger.info("audit compaction of %s, attempt %d: %s", period, attempt, error)
                continue
        for entry in plan.entries:
            lake.storage.remove(entry["path"])
        return plan
    raise AssertionError("unreachable: the last attempt returns or raises")


def _delete_leftovers(lake: Lake) -> None:
    """Delete audit files that a committed compaction removed but a killed run left behind."""
    for path in lake.removed_files():
        if path.startswith("tables/audit_events/") and lake.storage.exists(path):
            logger.info("deleting audit file %s, which an earlier compaction replaced", path)
            lake.storage.remove(path)


def compact_audit_trail(lake: Lake, *, actor: str, min_files: int = MIN_FILES) -> AuditCompaction:
    """Merge the audit event files of each period that has ``min_files`` or more of them.

    Checks the trail first and raises LakeIntegrityError, compacting nothing, when it
    fails. Records an ``audit.compact`` event when it merged anything; that event's own
    file is merged by the next compaction.
    """
    actor = check_actor(actor)
    if min_files < 2:
        raise ValueError(f"min_files must be at least 2, got {min_files}")
    _delete_leftovers(lake)
    _check_trail(lake)
    result = AuditCompaction()
    for period in sorted(_plan(lake, min_files)):
        plan = _compact_period(lake, period, min_files)
        if plan is None:
            continue
        result.periods[period] = len(plan.entries)
        result.events += len(plan.events)
        result.files_removed += len(plan.entries)
    if result.periods:
        record_event(
            lake, actor, AUDIT_COMPACT, {"periods": sorted(result.periods)}, result.counts()
        )
    logger.info(
        "compacted %d audit events from %d files into %d period files",
        result.events,
        result.files_removed,
        len(result.periods),
    )
    return result
