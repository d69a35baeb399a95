"""Read the audit trail back and check its hash chain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from m365lake.discovery.audit import (
    AUDIT_COMPACTION_PREFIX,
    AUDIT_HEAD_KEY,
    AuditEvent,
    event_hash,
)
from m365lake.errors import LakeError
from m365lake.lake import Lake, reading


@dataclass(frozen=True)
class StoredEvent:
    """An audit event with the commit and file it was read from."""

    event: AuditEvent
    commit_seq: int
    path: str

    def describe(self) -> str:
        event = self.event
        return (
            f"audit event {event.seq} ({event.action} by {event.actor} at "
            f"{event.at.isoformat()}, in {self.path}, commit {self.commit_seq})"
        )


def _event_from_row(row: dict[str, Any]) -> AuditEvent:
    values: dict[str, Any] = {name: row.get(name) for name in AuditEvent.__dataclass_fields__}
    return AuditEvent(**values)


def read_audit_events(
    lake: Lake,
    *,
    case_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
) -> list[AuditEvent]:
    """Return the committed audit events in sequence order, optionally filtered."""
    stored, _unreadable = _read_stored(lake)
    events = sorted((item.event for item in stored), key=lambda event: event.seq)
    return [
        event
        for event in events
        if (case_id is None or event.case_id == case_id)
        and (action is None or event.action == action)
        and (since is None or event.at >= since)
    ]


def _origins(manifest: Mapping[str, Any]) -> list[tuple[int, int, int]]:
    """Return (commit, first event, last event) of the events a compaction commit merged."""
    found: list[tuple[int, int, int]] = []
    for key, value in (manifest.get("state") or {}).items():
        if key.startswith(AUDIT_COMPACTION_PREFIX) and isinstance(value, dict):
            found.extend((int(c), int(first), int(last)) for c, first, last in value["origins"])
    return found


def _origin_commit(origins: list[tuple[int, int, int]], event_seq: int, default: int) -> int:
    for commit, first, last in origins:
        if first <= event_seq <= last:
            return commit
    return default


def _read_stored(lake: Lake) -> tuple[list[StoredEvent], list[str]]:
    """Read every committed audit event in commit order, with one message per unreadable file.

    Files a later commit removed (merged by an audit compaction) are skipped. An event
    in a compacted file is attributed to the commit that first wrote it, as the
    compaction commit recorded, so the checks against the audit head still apply.
    """
    stored: list[StoredEvent] = []
    problems: list[str] = []
    manifests = lake.manifests()
    removed = {
        entry["path"]
        for manifest in manifests
        for entry in (manifest.get("removed") or {}).get("files") or []
    }
    for manifest in manifests:
        origins = _origins(manifest)
        for entry in manifest.get("files", []):
            if entry.get("table") != "audit_events" or entry["path"] in removed:
                continue
            path = entry["path"]
            try:
                rows = reading.read_table(lake, entry).to_pylist()
            except (OSError, ValueError, LakeError) as error:
                problems.append(
                    f"audit events in {path} (commit {manifest['seq']}) could not be read: {error}"
                )
                continue
            for row in rows:
                event = _event_from_row(row)
                commit = _origin_commit(origins, event.seq, manifest["seq"])
                stored.append(StoredEvent(event, commit, path))
    return stored, problems


def read_stored_events(lake: Lake) -> tuple[list[StoredEvent], list[str]]:
    """Return every committed audit event with its commit and file, and unreadable files."""
    return _read_stored(lake)


def _head_updates(lake: Lake) -> list[tuple[int, dict[str, Any]]]:
    """Return each commit that moved the audit head, with the head it recorded."""
    return [
        (manifest["seq"], manifest["state"][AUDIT_HEAD_KEY])
        for manifest in lake.manifests()
        if isinstance((manifest.get("state") or {}).get(AUDIT_HEAD_KEY), dict)
    ]


def check_audit_chain(
    lake: Lake, *, anchor: tuple[int, str] | None = None
) -> tuple[int, list[str]]:
    """Recompute the audit chain; return the number of events and one message per problem.

    Checks each event's hash, that sequence numbers run 1, 2, 3 … without gaps or
    repeats, that each ``prev_hash`` names the previous event's hash, that each commit
    which moved the audit head contains exactly the events up to that head, and that the
    head in the lake state is the last event.

    Removing the newest manifests together with their events leaves a shorter chain that
    is consistent in itself. ``anchor`` catches that: it is an event's sequence number and
    hash kept outside the lake (``m365lake audit`` prints the head), and the chain must
    still contain that event with that hash.
    """
    stored, problems = _read_stored(lake)
    if anchor is not None:
        problems.extend(_anchor_problems(stored, anchor))
    for item in stored:
        recomputed = event_hash(item.event.row())
        if recomputed != item.event.hash:
            problems.append(
                f"{item.describe()} hashes to {recomputed} but records {item.event.hash}: "
                "a field of the event was changed after it was written"
            )
    problems.extend(_sequence_problems(stored))
    problems.extend(_commit_problems(lake, stored))
    return len(stored), problems


def _anchor_problems(stored: list[StoredEvent], anchor: tuple[int, str]) -> list[str]:
    seq, expected = anchor
    found = [item for item in stored if item.event.seq == seq]
    if not found:
        newest = max((item.event.seq for item in stored), default=0)
        return [
            f"audit event {seq} (hash {expected}), recorded outside the lake, is missing: the "
            f"trail ends at event {newest}, so events were removed from its end"
        ]
    return [
        f"{item.describe()} records hash {item.event.hash}, but the hash recorded outside "
        f"the lake for event {seq} is {expected}"
        for item in found
        if item.event.hash != expected
    ]


def _sequence_problems(stored: list[StoredEvent]) -> list[str]:
    problems: list[str] = []
    by_seq: dict[int, StoredEvent] = {}
    for item in stored:
        earlier = by_seq.get(item.event.seq)
        if earlier is not None:
            problems.append(
                f"{item.describe()} repeats the sequence number of {earlier.describe()}"
            )
            continue
        by_seq[item.event.seq] = item
    previous: StoredEvent | None = None
    for seq in sorted(by_seq):
        item = by_seq[seq]
        expected = 1 if previous is None else previous.event.seq + 1
        if seq > expected:
            after = "the start of the trail" if previous is None else f"event {expected - 1}"
            missing = str(expected) if seq == expected + 1 else f"{expected}-{seq - 1}"
            problems.append(
                f"audit event(s) {missing} are missing: {item.describe()} follows {after}"
            )
        elif previous is not None and item.event.prev_hash != previous.event.hash:
            problems.append(
                f"{item.describe()} names prev_hash {item.event.prev_hash} but event "
                f"{previous.event.seq} hashes to {previous.event.hash}: the chain was altered"
            )
        elif previous is None and seq == 1 and item.event.prev_hash is not None:
            problems.append(
                f"{item.describe()} is the first event but names prev_hash "
                f"{item.event.prev_hash}: events before it were removed"
            )
        previous = item
    return problems


def _commit_problems(lake: Lake, stored: list[StoredEvent]) -> list[str]:
    """Check the events against the audit head each commit recorded in its state."""
    problems: list[str] = []
    events_by_commit: dict[int, list[StoredEvent]] = {}
    for item in stored:
        events_by_commit.setdefault(item.commit_seq, []).append(item)
    previous_head = 0
    for commit_seq, head in _head_updates(lake):
        found = sorted(item.event.seq for item in events_by_commit.pop(commit_seq, []))
        expected = list(range(previous_head + 1, int(head["seq"]) + 1))
        if found != expected:
            problems.append(
                f"commit {commit_seq} moved the audit head to event {head['seq']} and should "
                f"hold event(s) {_span(expected)}, but its files hold {_span(found)}: events "
                "were moved between commits, removed or reordered"
            )
        else:
            last = next(
                item
                for item in stored
                if item.commit_seq == commit_seq and item.event.seq == head["seq"]
            )
            if last.event.hash != head["hash"]:
                problems.append(
                    f"commit {commit_seq} recorded audit event {head['seq']} with hash "
                    f"{head['hash']}, but {last.describe()} records {last.event.hash}"
                )
        previous_head = int(head["seq"])
    for commit_seq, items in sorted(events_by_commit.items()):
        problems.append(
            f"commit {commit_seq} holds audit event(s) "
            f"{_span([item.event.seq for item in items])} but did not move the audit head: "
            "the events were added to a commit after it was written"
        )
    head_seq, head_hash = _state_head(lake)
    if head_seq != previous_head:
        problems.append(
            f"the lake state names audit event {head_seq} ({head_hash}) as the newest, but "
            f"the commits record event {previous_head} last"
        )
    return problems


def _state_head(lake: Lake) -> tuple[int, str | None]:
    head = lake.state(AUDIT_HEAD_KEY)
    if not isinstance(head, dict):
        return 0, None
    return int(head["seq"]), str(head["hash"])


def _span(values: list[int]) -> str:
    if not values:
        return "none"
    if values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}-{values[-1]}"
    return ", ".join(str(value) for value in values)
