"""Which files and partitions an index update reads when the manifests contain purges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from m365lake.lake import Lake
from m365lake.search.changes import committed_files, purged_containers
from m365lake.search.purges import PurgeSchedule


def entry(table: str, container: str, name: str, *, partition: bool = True) -> dict[str, Any]:
    column = {"messages": "mailbox_id", "drive_items": "drive_id"}.get(table, "part")
    value: dict[str, Any] = {
        "path": f"tables/{table}/{column}={container.replace('!', '%21')}/{name}.parquet",
        "table": table,
        "rows": 3,
    }
    if partition:
        value["partition"] = {column: container}
    return value


def backup(seq: int, *files: dict[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "files": list(files)}


def purge(seq: int, removed: list[dict[str, Any]], *copies: dict[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "files": list(copies), "removed": {"files": removed}}


def test_purged_containers_from_partition_or_path():
    manifest = purge(
        3,
        [
            entry("messages", "box-a", "m1"),
            entry("drive_items", "b!drive", "d1", partition=False),
            entry("attachments", "box-a", "a1"),
        ],
    )

    assert purged_containers(manifest) == {("messages", "box-a"), ("drive_items", "b!drive")}
    assert purged_containers(backup(1, entry("messages", "box-a", "m1"))) == set()


def test_committed_files_skip_removed_mark_copies(tmp_path: Path):
    lake = Lake.open(tmp_path / "lake")
    old, other, copy = (
        entry("messages", "box-a", "m1"),
        entry("messages", "box-b", "m2"),
        entry("messages", "box-a", "m3"),
    )
    manifests = [backup(1, old, other), purge(2, [old], copy)]

    files = committed_files(lake, manifests)

    assert [(file.path.rsplit("/", 1)[-1], file.seq, file.purge_copy) for file in files] == [
        ("m2.parquet", 1, False),
        ("m3.parquet", 2, True),
    ]


def test_schedule_checks_partition_at_last_purge():
    first, second = entry("messages", "box-a", "m1"), entry("messages", "box-b", "m2")
    manifests = [
        purge(5, [first, second]),
        backup(6, entry("messages", "box-a", "m3")),
        purge(7, [entry("messages", "box-a", "m4")]),
    ]

    schedule = PurgeSchedule(manifests)

    assert schedule.containers(5, 5) == {"messages": {"box-b"}}
    assert schedule.containers(6, 7) == {"messages": {"box-a"}}
    assert schedule.containers(5, 7) == {"messages": {"box-a", "box-b"}}
    assert schedule.containers(8, 9) == {}
