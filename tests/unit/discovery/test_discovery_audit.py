"""The audit trail: appending events, the hash chain, and tamper detection by verify."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m365lake.discovery import check_audit_chain, read_audit_events, record_event, verify_archive
from m365lake.discovery.audit import AUDIT_HEAD_KEY, event_hash
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake


def record_three(lake: Lake) -> None:
    record_event(lake, "carol", "search", {"kql": "budget", "case": None}, {"hits": 12})
    record_event(lake, "dan", "export", {"format": "eml", "items": ["a", "b"]}, {"items": 2})
    record_event(lake, "erin", "restore", {"to": "bob@contoso.example"}, {"items": 1})


def event_file(lake: Lake, seq: int) -> Path:
    """Return the Parquet file holding audit event ``seq``."""
    for path in lake.committed_files("audit_events"):
        if seq in pq.read_table(path).column("seq").to_pylist():
            return path
    raise AssertionError(f"no file holds audit event {seq}")


def rewrite(path: Path, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Replace a committed Parquet file with a modified copy, as a tamperer would."""
    original = pq.read_table(path)
    rows = change(original.to_pylist())
    copy = path.with_name("tampered.parquet")
    pq.write_table(pa.Table.from_pylist(rows, schema=original.schema), copy)
    os.replace(copy, path)


def problems_of(lake: Lake) -> list[str]:
    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(lake)
    return caught.value.problems


def test_record_event_chains_hashes(lake: Lake) -> None:
    record_three(lake)

    events = read_audit_events(lake)

    assert [event.seq for event in events] == [1, 2, 3]
    assert events[0].prev_hash is None
    assert events[1].prev_hash == events[0].hash
    assert events[2].prev_hash == events[1].hash
    assert lake.state(AUDIT_HEAD_KEY) == {"seq": 3, "hash": events[2].hash}
    assert events[1].parameters_dict() == {"format": "eml", "items": ["a", "b"]}
    assert events[1].counts_dict() == {"items": 2}


def test_event_hash_is_sha256_of_canonical_form(lake: Lake) -> None:
    event = record_event(lake, "carol", "search", {"b": 1, "a": "é"}, {"hits": 0})

    canonical = json.dumps(
        {
            "v": 1,
            "seq": 1,
            "event_id": event.event_id,
            "at": event.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": "carol",
            "action": "search",
            "case_id": None,
            "parameters": '{"a":"é","b":1}',
            "counts": '{"hits":0}',
            "prev_hash": None,
            "run_id": event.run_id,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert event.parameters == '{"a":"é","b":1}'
    assert event.hash == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_parameters_accept_datetimes_and_sets(lake: Lake) -> None:
    moment = datetime(2024, 5, 1, 8, tzinfo=UTC)

    event = record_event(lake, "carol", "export", {"since": moment, "ids": {"b", "a"}}, {})

    assert event.parameters_dict() == {"since": "2024-05-01T08:00:00+00:00", "ids": ["a", "b"]}


@pytest.mark.parametrize(
    ("actor", "action", "parameters", "counts", "message"),
    [
        ("", "search", {}, {}, "actor is empty"),
        ("carol", "Search Now", {}, {}, "invalid audit action"),
        ("carol", "search", {"x": object()}, {}, "not JSON-serialisable"),
        ("carol", "search", {}, {"hits": "12"}, "map names to integers"),
        ("carol", "search", {}, {"hits": True}, "map names to integers"),
    ],
)
def test_record_event_rejects_bad_input(
    lake: Lake, actor: str, action: str, parameters: dict[str, Any], counts: Any, message: str
) -> None:
    with pytest.raises(Exception, match=message):
        record_event(lake, actor, action, parameters, counts)

    assert read_audit_events(lake) == []


def test_intact_chain_passes_verify(lake: Lake) -> None:
    record_three(lake)

    counts = verify_archive(lake)

    assert counts["audit_events"] == 3
    assert check_audit_chain(lake) == (3, [])


def test_edited_event_detected(lake: Lake) -> None:
    record_three(lake)
    path = event_file(lake, 2)

    rewrite(path, lambda rows: [{**row, "actor": "mallory"} for row in rows])

    problems = problems_of(lake)
    relative = lake.storage.relative(path)
    assert any(p.startswith(f"file {relative} listed in commit") for p in problems), problems
    edited = [p for p in problems if p.startswith("audit event 2 (export by mallory")]
    assert len(edited) == 1, problems
    assert "a field of the event was changed after it was written" in edited[0]


def test_edit_with_recomputed_hash_breaks_link(lake: Lake) -> None:
    record_three(lake)
    path = event_file(lake, 2)

    def forge(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        forged = {**rows[0], "counts": '{"items":0}'}
        return [{**forged, "hash": event_hash(forged)}]

    rewrite(path, forge)

    problems = problems_of(lake)
    assert any(
        p.startswith("audit event 3 (restore by erin") and "names prev_hash" in p for p in problems
    ), problems
    assert any("commit" in p and "recorded audit event 2 with hash" in p for p in problems)


def test_dropped_event_detected(lake: Lake) -> None:
    record_three(lake)

    rewrite(event_file(lake, 2), lambda rows: [])

    problems = problems_of(lake)
    assert any(
        p.startswith("audit event(s) 2 are missing: audit event 3 (restore by erin")
        and p.endswith("follows event 1")
        for p in problems
    ), problems
    assert any("should hold event(s) 2, but its files hold none" in p for p in problems)


def test_dropped_last_event_detected(lake: Lake) -> None:
    record_three(lake)

    rewrite(event_file(lake, 3), lambda rows: [])

    problems = problems_of(lake)
    assert any("should hold event(s) 3, but its files hold none" in p for p in problems)


def test_reordered_events_detected(lake: Lake) -> None:
    record_three(lake)
    second, third = event_file(lake, 2), event_file(lake, 3)
    second_bytes, third_bytes = second.read_bytes(), third.read_bytes()

    second.write_bytes(third_bytes)
    third.write_bytes(second_bytes)

    problems = problems_of(lake)
    assert any(
        "moved the audit head to event 2" in p and "its files hold 3" in p for p in problems
    ), problems
    assert any(
        "moved the audit head to event 3" in p and "its files hold 2" in p for p in problems
    ), problems


def test_renumbered_events_detected(lake: Lake) -> None:
    record_three(lake)

    rewrite(event_file(lake, 3), lambda rows: [{**row, "seq": 2} for row in rows])

    problems = problems_of(lake)
    assert any("repeats the sequence number of audit event 2" in p for p in problems), problems
    assert any(
        p.startswith("audit event 2 (restore by erin") and "hashes to" in p for p in problems
    )


def test_unreadable_audit_file_reported(lake: Lake) -> None:
    record_three(lake)
    path = event_file(lake, 1)

    path.write_bytes(b"not parquet")

    problems = problems_of(lake)
    relative = lake.storage.relative(path)
    assert any(p.startswith(f"audit events in {relative}") for p in problems), problems
