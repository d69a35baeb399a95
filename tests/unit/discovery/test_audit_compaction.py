"""Audit compaction: one file per month, the same chain, and verify still catches tampering."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import m365lake.discovery.audit as audit_module
from m365lake.catalog import run_sql
from m365lake.discovery import read_audit_events, record_event, verify_archive
from m365lake.discovery.audit_chain import check_audit_chain
from m365lake.discovery.audit_compaction import compact_audit_trail
from m365lake.discovery.cli import register
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake

MARCH = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
APRIL = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)


def _audit_files(lake: Lake) -> list[str]:
    return [
        item.entry["path"] for item in lake.live_files() if item.entry["table"] == "audit_events"
    ]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    """The time audit events are stamped with; tests set ``clock[0]``."""
    now = [MARCH]
    monkeypatch.setattr(audit_module, "utc_now", lambda: now[0])
    yield now


@pytest.fixture
def trail(lake: Lake, clock: list[datetime]) -> Lake:
    """Five events in March and three in April, each in its own commit and file."""
    for number in range(5):
        record_event(lake, "carol", "search", {"query": f"march {number}"}, {"hits": number})
    clock[0] = APRIL
    for number in range(3):
        record_event(lake, "dave", "export", {"query": f"april {number}"}, {"items": number})
    return lake


def test_one_file_per_month(trail: Lake) -> None:
    before = read_audit_events(trail)
    small_files = _audit_files(trail)

    result = compact_audit_trail(trail, actor="erin")

    assert len(small_files) == 8
    assert result.periods == {"2026-03": 5, "2026-04": 3}
    assert result.events == 8
    # The two merged files plus the compaction's own event.
    assert len(_audit_files(trail)) == 3
    assert not any(trail.storage.exists(path) for path in small_files)
    after = read_audit_events(trail)
    assert [(e.seq, e.hash) for e in after[:-1]] == [(e.seq, e.hash) for e in before]
    assert after[-1].action == "audit.compact"
    assert after[-1].counts_dict() == {"events": 8, "files_removed": 8, "periods": 2}


def test_chain_verifies_after_compaction(trail: Lake) -> None:
    compact_audit_trail(trail, actor="erin")

    assert check_audit_chain(trail) == (9, [])
    assert verify_archive(trail)["audit_events"] == 9
    assert run_sql(trail, "SELECT count(*) FROM audit_events")[1][0][0] == 9


def test_second_compaction_merges_new_events(trail: Lake, clock: list[datetime]) -> None:
    compact_audit_trail(trail, actor="erin")
    record_event(trail, "carol", "search", {"query": "later"}, {"hits": 1})

    result = compact_audit_trail(trail, actor="erin")

    # April: the first compacted file, the first compaction's event and the new search.
    assert result.periods == {"2026-04": 3}
    assert check_audit_chain(trail) == (11, [])
    assert len(_audit_files(trail)) == 3


def test_nothing_to_compact(lake: Lake, clock: list[datetime]) -> None:
    record_event(lake, "carol", "search", {"query": "one"}, {"hits": 1})

    result = compact_audit_trail(lake, actor="erin")

    assert result.periods == {}
    assert len(read_audit_events(lake)) == 1


def _compacted_file(lake: Lake, month: str) -> str:
    for path in _audit_files(lake):
        events = pq.read_table(lake.storage.path(path)).to_pylist()
        if len(events) > 1 and f"{events[0]['at']:%Y-%m}" == month:
            return path
    raise AssertionError(f"no compacted file for {month}")


def test_flipped_byte_detected_after_compaction(trail: Lake) -> None:
    compact_audit_trail(trail, actor="erin")
    path = _compacted_file(trail, "2026-03")
    data = bytearray(trail.storage.read_bytes(path))
    data[len(data) // 2] ^= 0x01
    trail.storage.path(path).write_bytes(bytes(data))

    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(trail, blobs=False)

    assert any(path in problem for problem in caught.value.problems)


def test_deleted_event_detected_after_compaction(trail: Lake) -> None:
    compact_audit_trail(trail, actor="erin")
    path = _compacted_file(trail, "2026-03")
    table = pq.read_table(trail.storage.path(path))
    rows = [row for row in table.to_pylist() if row["seq"] != 3]
    without_third = table.from_pylist(rows, schema=table.schema)
    pq.write_table(without_third, trail.storage.path(path))

    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(trail, blobs=False)

    problems = caught.value.problems
    assert any(problem.startswith("audit event(s) 3 are missing") for problem in problems)
    assert any(path in problem for problem in problems)


def test_damaged_trail_not_compacted(trail: Lake) -> None:
    path = _audit_files(trail)[1]
    data = bytearray(trail.storage.read_bytes(path))
    data[len(data) // 2] ^= 0x01
    trail.storage.path(path).write_bytes(bytes(data))
    head = trail.head().seq

    with pytest.raises(LakeIntegrityError, match="not compacted"):
        compact_audit_trail(trail, actor="erin")

    assert trail.head().seq == head
    assert trail.storage.exists(path)


def test_cli_audit_compact(trail: Lake) -> None:
    @click.group()
    def main() -> None:
        """The m365lake command, for this test."""

    register(main)
    runner = CliRunner()

    compacted = runner.invoke(
        main, ["audit", "compact", "--actor", "erin", "--lake", str(trail.root)]
    )
    listed = runner.invoke(main, ["audit", "--format", "json", "--lake", str(trail.root)])

    assert compacted.exit_code == 0, compacted.output
    assert "2026-03: merged 5 files" in compacted.output
    assert "2026-04: merged 3 files" in compacted.output
    assert listed.exit_code == 0, listed.output
    assert listed.output.count('"seq"') == 9


def test_leftover_of_killed_compaction_deleted(trail: Lake) -> None:
    # A compaction killed after its commit leaves the files it replaced on disk.
    small_files = _audit_files(trail)
    kept = {path: trail.storage.read_bytes(path) for path in small_files[:2]}
    compact_audit_trail(trail, actor="erin")
    for path, data in kept.items():
        trail.storage.path(path).write_bytes(data)
    with pytest.raises(LakeIntegrityError):
        verify_archive(trail, blobs=False)

    compact_audit_trail(trail, actor="erin")

    assert not any(trail.storage.exists(path) for path in kept)
    assert verify_archive(trail, blobs=False)["audit_events"] == 10
