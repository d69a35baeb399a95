"""Verification of the blobs that events, contacts and channel messages reference."""

from __future__ import annotations

import pytest

from m365lake.discovery import verify_archive
from m365lake.discovery.integrity import check_blob_references, sample_commit_blobs
from m365lake.errors import LakeIntegrityError
from m365lake.lake import Lake
from tests.unit.discovery.lake_fixture import T0
from tests.unit.discovery.workload_fixture import (
    GENERAL,
    TEAM_ID,
    channel_message,
    hosted_content,
    seed_workloads,
)


def flip_byte(lake: Lake, digest: str) -> None:
    path = lake.storage.path(lake.blobs.relative_path(digest))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def remove_blob(lake: Lake, digest: str) -> None:
    lake.storage.path(lake.blobs.relative_path(digest)).unlink()


def test_flipped_event_attachment_byte_found(lake: Lake) -> None:
    digests = seed_workloads(lake)
    flip_byte(lake, digests["agenda"])

    with pytest.raises(LakeIntegrityError) as caught:
        verify_archive(lake)

    [problem] = caught.value.problems
    assert problem.startswith(f"blob {digests['agenda']} ")


def test_new_tables_blobs_counted(lake: Lake) -> None:
    seed_workloads(lake)

    referenced, problems = check_blob_references(lake)

    # agenda, minutes, the all-hands JSON, and two hosted contents.
    assert referenced == 5
    assert problems == []


@pytest.mark.parametrize(
    ("name", "table"),
    [
        ("agenda", "event_attachments"),
        ("big_json", "events"),
        ("picture", "channel_message_parts"),
    ],
)
def test_missing_blob_names_its_row(lake: Lake, name: str, table: str) -> None:
    digests = seed_workloads(lake)
    remove_blob(lake, digests[name])

    _referenced, problems = check_blob_references(lake)

    [problem] = problems
    assert problem.startswith(f"blob {digests[name]} is missing but {table} row ")


def test_commit_sample_reads_team_blobs(lake: Lake) -> None:
    picture = lake.blobs.put(b"\x89PNG whiteboard photo " * 64)
    message_json = lake.blobs.put(b'{"id": "1700000000003", "body": "' + b"x" * 9000 + b'"}')
    with lake.begin(run_id="teams-run", kind="teams", container=TEAM_ID) as tx:
        tx.write_rows(
            "channel_messages",
            [
                channel_message(
                    TEAM_ID, GENERAL, "1700000000003", "created", T0, json_sha256=message_json
                )
            ],
            partition={"team_id": TEAM_ID, "channel_id": GENERAL},
        )
        tx.write_rows(
            "channel_message_parts",
            [hosted_content(TEAM_ID, GENERAL, "1700000000003", "h3", T0, picture, 1472)],
            partition={"team_id": TEAM_ID, "channel_id": GENERAL},
        )
        tx.commit()
    flip_byte(lake, picture)

    counts, problems = sample_commit_blobs(lake, TEAM_ID, sample=10, seed=1)

    assert counts["blobs_referenced"] == 2
    assert counts["blobs_checked"] == 2
    [problem] = problems
    assert picture in problem
