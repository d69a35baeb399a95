"""Drive backup against a fake drive: paths, renames, moves, deletions, downloads, gaps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from m365lake.catalog import run_sql
from m365lake.lake import Lake
from m365lake.sources import drives
from m365lake.sources.drive_tree import DriveTree, TreeNode
from m365lake.sources.drives import DriveBackupResult, backup_drive, delta_key, pending_key
from tests.unit.drive_fake import DRIVE, DRIVE_ID, FakeDrive, make_graph

BIG = bytes(range(256)) * 40
"""10,240 bytes: above the test lake's inline threshold, so stored as a blob."""


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(tmp_path / "lake", inline_threshold=1024)


@pytest.fixture
def fake() -> FakeDrive:
    drive = FakeDrive()
    drive.add_folder("f-docs", "Docs")
    drive.add_folder("f-deep", "Deep", parent="f-docs")
    drive.add_file("i-report", "report.txt", b"quarterly report", parent="f-docs")
    drive.add_file("i-big", "big.bin", BIG, parent="f-deep")
    drive.add_file("i-top", "top.txt", b"top level")
    return drive


def backup(fake: FakeDrive, lake: Lake, **options: Any) -> DriveBackupResult:
    async def run() -> DriveBackupResult:
        async with make_graph(fake) as graph:
            return await backup_drive(
                graph, lake, DRIVE, run_id=f"run-{len(lake.manifests())}", **options
            )

    return asyncio.run(run())


def sql(lake: Lake, statement: str) -> list[tuple[Any, ...]]:
    return run_sql(lake, statement)[1]


def live_paths(lake: Lake) -> dict[str, str]:
    return dict(sql(lake, "SELECT item_id, path FROM drive_items"))


def content_requests(fake: FakeDrive) -> list[str]:
    return [str(r.url.path) for r in fake.requests if r.url.path.endswith("/content")]


# ---- the tree ------------------------------------------------------------------------


def test_tree_derives_paths_from_parents() -> None:
    tree = DriveTree(
        {
            "root": TreeNode(None, "root", True),
            "a": TreeNode("root", "A", True),
            "b": TreeNode("a", "B", True),
            "f": TreeNode("b", "f.txt", False),
        }
    )

    assert tree.path("root") == ""
    assert tree.path("a") == "A"
    assert tree.path("f") == "A/B/f.txt"


def test_tree_path_follows_rename() -> None:
    tree = DriveTree({"root": TreeNode(None, "", True), "a": TreeNode("root", "A", True)})
    tree.put("f", TreeNode("a", "f.txt", False))
    assert tree.path("f") == "A/f.txt"

    tree.put("a", TreeNode("root", "Renamed", True))

    assert tree.path("f") == "Renamed/f.txt"


def test_tree_descendants_and_cycle() -> None:
    tree = DriveTree(
        {
            "a": TreeNode("b", "A", True),
            "b": TreeNode("a", "B", True),
            "c": TreeNode("a", "c.txt", False),
        }
    )

    assert tree.descendants({"a"}) == {"a", "b", "c"}
    assert tree.path("c") == "B/A/c.txt"


def test_tree_unknown_parent_keeps_known_part() -> None:
    tree = DriveTree({"f": TreeNode("missing", "f.txt", False)})

    assert tree.path("f") == "f.txt"


# ---- first run -----------------------------------------------------------------------


def test_first_run_archives_every_item(fake: FakeDrive, lake: Lake) -> None:
    result = backup(fake, lake)

    assert result.items_new == 6
    assert result.failures == 0
    assert live_paths(lake) == fake.live_paths()
    assert lake.state(delta_key(DRIVE_ID)) is not None
    assert lake.state(pending_key(DRIVE_ID)) is None


def test_first_run_stores_content_inline_and_as_blob(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)

    rows = dict(
        (item_id, (sha, inline))
        for item_id, sha, inline in sql(
            lake, "SELECT item_id, content_sha256, content_inline FROM files"
        )
    )
    big_sha, big_inline = rows["i-big"]
    small_sha, small_inline = rows["i-report"]
    assert big_inline is None
    assert lake.read_content(big_sha, None) == BIG
    assert small_inline == b"quarterly report"
    assert lake.read_content(small_sha, small_inline) == b"quarterly report"


def test_download_host_never_gets_token(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)

    downloads = [r for r in fake.requests if r.url.host == "download.test"]
    assert len(downloads) == 3
    assert all("authorization" not in r.headers for r in downloads)
    graph_requests = [r for r in fake.requests if r.url.host == "graph.test"]
    assert all(r.headers["authorization"] == "Bearer access-token" for r in graph_requests)


def test_views_split_files_and_folders(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)

    files = {row[0] for row in sql(lake, "SELECT path FROM files")}
    items = {row[0] for row in sql(lake, "SELECT path FROM drive_items")}
    assert files == {"Docs/report.txt", "Docs/Deep/big.bin", "top.txt"}
    assert items == files | {"", "Docs", "Docs/Deep"}
    assert sql(lake, "SELECT drive_id, owner_kind FROM drives") == [(DRIVE_ID, "user")]


# ---- incremental runs ----------------------------------------------------------------


def test_second_run_without_changes_writes_nothing(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    fake.requests.clear()

    result = backup(fake, lake)

    assert result.items_new + result.items_updated + result.items_deleted == 0
    assert content_requests(fake) == []


def test_folder_rename_updates_descendant_paths(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    fake.rename("f-docs", "Papers")
    fake.requests.clear()

    result = backup(fake, lake)

    assert live_paths(lake) == fake.live_paths()
    assert live_paths(lake)["i-big"] == "Papers/Deep/big.bin"
    assert result.items_updated == 1
    assert result.paths_updated == 3
    assert content_requests(fake) == []
    history = sql(
        lake, "SELECT path FROM file_versions WHERE item_id = 'i-report' ORDER BY captured_at"
    )
    assert history == [("Docs/report.txt",), ("Papers/report.txt",)]


def test_moved_descendant_keeps_inline_content(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    fake.rename("f-docs", "Papers")

    backup(fake, lake)

    [(sha, inline)] = sql(
        lake, "SELECT content_sha256, content_inline FROM files WHERE item_id = 'i-report'"
    )
    assert lake.read_content(sha, inline) == b"quarterly report"


def test_file_move_between_folders(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    fake.move("i-top", "f-deep")

    result = backup(fake, lake)

    assert live_paths(lake)["i-top"] == "Docs/Deep/top.txt"
    assert result.items_updated == 1
    assert result.content_reused == 1


def test_folder_move_updates_subtree(fake: FakeDrive, lake: Lake) -> None:
    fake.add_folder("f-archive", "Archive")
    backup(fake, lake)
    fake.move("f-deep", "f-archive")

    backup(fake, lake)

    assert live_paths(lake) == fake.live_paths()
    assert live_paths(lake)["i-big"] == "Archive/Deep/big.bin"


def test_content_change_downloads_new_version(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    fake.set_content("i-report", b"revised report")

    result = backup(fake, lake)

    [(sha, inline)] = sql(
        lake, "SELECT content_sha256, content_inline FROM files WHERE item_id = 'i-report'"
    )
    assert lake.read_content(sha, inline) == b"revised report"
    assert result.items_updated == 1
    versions = sql(lake, "SELECT count(*) FROM file_versions WHERE item_id = 'i-report'")
    assert versions == [(2,)]


def test_metadata_change_reuses_content(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    fake.touch("i-big")
    fake.requests.clear()

    result = backup(fake, lake)

    assert result.items_updated == 1
    assert result.content_reused == 1
    assert content_requests(fake) == []


def test_folder_deletion_deletes_descendants(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    fake.delete("f-docs")

    result = backup(fake, lake)

    assert set(live_paths(lake)) == {"root", "i-top"}
    assert result.items_deleted == 4
    deleted = sql(
        lake,
        "SELECT item_id, path FROM file_versions WHERE deleted_at IS NOT NULL ORDER BY item_id",
    )
    assert deleted == [("i-big", "Docs/Deep/big.bin"), ("i-report", "Docs/report.txt")]


def test_expired_token_resyncs_and_reconciles(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    # The deletion is not in the change log, so only the full listing can reveal it.
    fake.deleted.add("i-top")
    fake.expire_delta = True

    result = backup(fake, lake)

    assert result.resyncs == 1
    assert "i-top" not in live_paths(lake)
    assert result.items_deleted == 1
    restarted = [r for r in fake.requests if "restart=1" in str(r.url)]
    assert len(restarted) == 1


# ---- downloads -----------------------------------------------------------------------


def test_broken_download_resumes_with_range(fake: FakeDrive, lake: Lake) -> None:
    fake.break_after["i-big"] = 4000

    result = backup(fake, lake)

    assert result.resumes == 1
    [(sha,)] = sql(lake, "SELECT content_sha256 FROM files WHERE item_id = 'i-big'")
    assert lake.read_content(sha, None) == BIG
    ranges = [r.headers.get("range") for r in fake.requests if r.url.host == "download.test"]
    assert "bytes=4000-" in ranges
    assert len(content_requests(fake)) == 3


def test_expired_download_url_gets_fresh_one(fake: FakeDrive, lake: Lake) -> None:
    fake.break_after["i-big"] = 5000
    fake.revoke_after_break = True

    result = backup(fake, lake)

    assert result.failures == 0
    [(sha,)] = sql(lake, "SELECT content_sha256 FROM files WHERE item_id = 'i-big'")
    assert lake.read_content(sha, None) == BIG
    big_content = [path for path in content_requests(fake) if "i-big" in path]
    assert len(big_content) == 2
    last = [r for r in fake.requests if r.url.host == "download.test"][-1]
    assert last.headers["range"] == "bytes=5000-"


def test_server_ignoring_range_still_resumes(fake: FakeDrive, lake: Lake) -> None:
    fake.break_after["i-big"] = 3000
    fake.ignore_range = True

    backup(fake, lake)

    [(sha,)] = sql(lake, "SELECT content_sha256 FROM files WHERE item_id = 'i-big'")
    assert lake.read_content(sha, None) == BIG


def test_hash_mismatch_is_failure_then_retried(fake: FakeDrive, lake: Lake) -> None:
    fake.reported_hash["i-big"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="

    first = backup(fake, lake)

    assert first.failures == 1
    assert "i-big" not in live_paths(lake)
    assert sql(lake, "SELECT workload, container_id, item_id, outcome, reason FROM failures") == [
        ("files", DRIVE_ID, "i-big", "failed", "hashMismatch")
    ]
    assert lake.state(pending_key(DRIVE_ID)) == ["i-big"]
    assert not any(lake.blobs.iter_hashes())

    del fake.reported_hash["i-big"]
    second = backup(fake, lake)

    assert second.items_new == 1
    assert live_paths(lake)["i-big"] == "Docs/Deep/big.bin"
    assert lake.state(pending_key(DRIVE_ID)) is None


def test_coverage_gaps_recorded(fake: FakeDrive, lake: Lake) -> None:
    fake.add_file("i-huge", "huge.iso", b"x" * 20_000)
    fake.items["i-note"] = {
        "id": "i-note",
        "name": "Notebook",
        "package": {"type": "oneNote"},
        "parentReference": {"driveId": DRIVE_ID, "id": "root"},
    }
    fake.touch("i-note")
    fake.add_file("i-virus", "virus.exe", b"EICAR")
    fake.items["i-virus"]["malware"] = {"description": "test"}

    result = backup(fake, lake, max_file_size=len(BIG))

    gaps = sql(lake, "SELECT item_id, outcome, reason FROM failures ORDER BY item_id")
    assert gaps == [
        ("i-huge", "skipped", "fileTooLarge"),
        ("i-note", "skipped", "packageWithoutContent"),
        ("i-virus", "skipped", "malwareDetected"),
    ]
    assert result.failures == 3
    rows = sql(lake, "SELECT item_id, package_type, content_sha256 FROM files ORDER BY item_id")
    recorded = {item_id: (package, sha) for item_id, package, sha in rows}
    assert recorded["i-note"] == ("oneNote", None)
    assert recorded["i-huge"] == (None, None)
    assert not any("i-huge" in path for path in content_requests(fake))


def test_deleted_before_download_is_skipped(fake: FakeDrive, lake: Lake) -> None:
    original = fake.handler

    def delete_on_download(request: Any) -> Any:
        if request.url.path.endswith("/i-top/content"):
            fake.deleted.add("i-top")
        return original(request)

    fake.handler = delete_on_download  # type: ignore[method-assign]

    result = backup(fake, lake)

    assert sql(lake, "SELECT item_id, outcome FROM failures") == [("i-top", "skipped")]
    assert result.failures == 1


def test_retried_update_is_updated_version(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    fake.set_content("i-report", b"revised report")
    fake.reported_hash["i-report"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    backup(fake, lake)
    del fake.reported_hash["i-report"]

    result = backup(fake, lake)

    assert result.items_updated == 1
    changes = sql(
        lake, "SELECT change FROM file_versions WHERE item_id = 'i-report' ORDER BY captured_at"
    )
    assert changes == [("created",), ("updated",)]
    [(sha, inline)] = sql(
        lake, "SELECT content_sha256, content_inline FROM files WHERE item_id = 'i-report'"
    )
    assert lake.read_content(sha, inline) == b"revised report"


def test_folder_tombstone_alone_deletes_subtree(fake: FakeDrive, lake: Lake) -> None:
    backup(fake, lake)
    # Only the folder's deletion reaches the feed, as OneDrive may report it.
    fake.deleted.update({"f-deep", "i-big", "i-report"})
    fake.deleted.add("f-docs")
    fake.log.append("f-docs")

    result = backup(fake, lake)

    assert set(live_paths(lake)) == {"root", "i-top"}
    assert result.items_deleted == 4


# ---- checkpoints ---------------------------------------------------------------------


def add_files(fake: FakeDrive, count: int) -> list[str]:
    item_ids = [f"i-file-{index}" for index in range(count)]
    for index, item_id in enumerate(item_ids):
        fake.add_file(item_id, f"file {index}.txt", f"content {index}".encode(), parent="f-docs")
    return item_ids


def version_rows(lake: Lake) -> list[tuple[Any, ...]]:
    """Every version, without the columns that differ between runs."""
    return sql(
        lake,
        "SELECT item_id, path, change, content_sha256, deleted_at IS NULL FROM file_versions "
        "ORDER BY item_id, captured_at",
    )


def die_on_content(fake: FakeDrive, item_id: str) -> None:
    """Make the download of ``item_id`` raise as if the process were killed there."""
    original = fake.handler

    def handler(request: Any) -> Any:
        if request.url.path.endswith(f"/{item_id}/content"):
            raise RuntimeError("backup process killed")
        return original(request)

    fake.handler = handler  # type: ignore[method-assign]


def test_checkpoints_commit_before_delta_link(fake: FakeDrive, lake: Lake) -> None:
    add_files(fake, 6)

    result = backup(fake, lake, checkpoint_files=3, fetch_concurrency=1)

    manifests = lake.manifests()
    assert result.commits == len(manifests)
    assert result.commits >= 3
    for manifest in manifests[:-1]:
        assert delta_key(DRIVE_ID) not in (manifest.get("state") or {})
    assert delta_key(DRIVE_ID) in manifests[-1]["state"]
    assert live_paths(lake) == fake.live_paths()
    assert result.items_new == 12


def test_run_killed_after_checkpoint_resumes(fake: FakeDrive, lake: Lake, tmp_path: Path) -> None:
    item_ids = add_files(fake, 8)
    clean = Lake.open(tmp_path / "clean", inline_threshold=1024)
    backup(fake, clean)
    original = fake.handler
    die_on_content(fake, item_ids[5])

    with pytest.raises(RuntimeError, match="killed"):
        backup(fake, lake, checkpoint_files=2, fetch_concurrency=1)

    archived = set(live_paths(lake))
    assert archived & set(item_ids)
    assert item_ids[5] not in archived
    assert lake.state(delta_key(DRIVE_ID)) is None

    fake.handler = original  # type: ignore[method-assign]
    fake.requests.clear()
    result = backup(fake, lake)

    downloaded = {path.split("/")[-2] for path in content_requests(fake)}
    assert item_ids[5] in downloaded
    assert downloaded.isdisjoint(archived)
    assert result.unchanged_replays == len(archived)
    assert version_rows(lake) == version_rows(clean)
    assert lake.state(delta_key(DRIVE_ID)) is not None


def test_killed_after_checkpointed_retry_not_retried_again(
    fake: FakeDrive, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.reported_hash["i-big"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    backup(fake, lake)
    assert lake.state(pending_key(DRIVE_ID)) == ["i-big"]
    del fake.reported_hash["i-big"]
    add_files(fake, 3)

    def killed(*args: Any) -> None:
        raise RuntimeError("backup process killed")

    # The retry and the new files are checkpointed, then the run dies before its end.
    with monkeypatch.context() as patch:
        patch.setattr("m365lake.sources.drives._DriveRun.write_deletions", killed)
        with pytest.raises(RuntimeError, match="killed"):
            backup(fake, lake, checkpoint_files=1, fetch_concurrency=1)

    assert "i-big" in live_paths(lake)
    assert lake.state(pending_key(DRIVE_ID)) is None
    fake.requests.clear()
    result = backup(fake, lake)

    assert "i-big" not in {path.split("/")[-2] for path in content_requests(fake)}
    assert result.failures == 0
    assert live_paths(lake) == fake.live_paths()
    versions = sql(lake, "SELECT count(*) FROM file_versions WHERE item_id = 'i-big'")
    assert versions == [(1,)]


def test_failed_worker_stops_the_others(
    fake: FakeDrive, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_files(fake, 8)
    real_download = drives.download_content

    async def download(graph: Any, lake: Lake, drive_id: str, item_id: str, **options: Any) -> Any:
        # The first file queued fails at once, while the other workers have files left.
        if item_id == "i-report":
            raise RuntimeError("backup process killed")
        # The fake transport never suspends, so a download would otherwise run in one step.
        await asyncio.sleep(0)
        return await real_download(graph, lake, drive_id, item_id, **options)

    monkeypatch.setattr(drives, "download_content", download)

    async def run() -> tuple[int, int, int, int]:
        async with make_graph(fake) as graph:
            with pytest.raises(RuntimeError, match="killed"):
                await backup_drive(
                    graph, lake, DRIVE, run_id="run-0", checkpoint_files=1, fetch_concurrency=4
                )
            requests, commits = len(fake.requests), len(lake.manifests())
            for _ in range(50):
                await asyncio.sleep(0)
            return requests, len(fake.requests), commits, len(lake.manifests())

    requests_at_failure, requests_later, commits_at_failure, commits_later = asyncio.run(run())

    assert requests_later == requests_at_failure
    assert commits_later == commits_at_failure
    assert lake.state(delta_key(DRIVE_ID)) is None
