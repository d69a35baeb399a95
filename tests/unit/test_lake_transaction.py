"""Transactions: buffered Parquet writes, commit, abort and bounded memory."""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m365lake.errors import CommitConflictError, LakeError
from m365lake.lake import Lake

CAPTURED = datetime(2024, 3, 1, 12, tzinfo=UTC)


def message(index: int, *, mailbox: str = "u1", content: bytes | None = None) -> dict[str, Any]:
    return {
        "mailbox_id": mailbox,
        "message_id": f"m{index}",
        "change": "created",
        "captured_at": CAPTURED,
        "subject": f"subject {index}",
        "to_addresses": ["a@contoso.example"],
        "mime_sha256": f"{index:064x}",
        "mime_inline": content,
    }


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.open(tmp_path / "lake")


def parquet_files(lake: Lake) -> list[Path]:
    return sorted((lake.root / "tables").rglob("*.parquet"))


def test_commit_writes_hive_partitioned_zstd_file(lake: Lake) -> None:
    with lake.begin(run_id="run-1", kind="mail", container="u1") as tx:
        tx.write_rows("messages", [message(1), message(2)], partition={"mailbox_id": "u1"})
        manifest = tx.commit(counts={"items_new": 2})

    [entry] = manifest["files"]
    assert entry["path"] == "tables/messages/mailbox_id=u1/run-1-0.parquet"
    assert entry["rows"] == 2
    assert entry["table"] == "messages"
    assert manifest["counts"] == {"items_new": 2}
    metadata = pq.ParquetFile(lake.root / entry["path"]).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert lake.committed_files("messages") == [lake.root / entry["path"]]


def test_commit_fills_run_id_and_captured_at(lake: Lake) -> None:
    with lake.begin(run_id="run-1", kind="mail", container=None) as tx:
        tx.write_rows("failures", [{"outcome": "skipped", "reason": "malware"}], partition={})
        tx.commit()

    table = pq.read_table(lake.committed_files("failures")[0])
    assert table.column("run_id").to_pylist() == ["run-1"]
    assert table.column("captured_at")[0].as_py() == tx.started_at


def test_manifest_lists_file_hash_and_size(lake: Lake) -> None:
    with lake.begin(run_id="run-1", kind="mail", container="u1") as tx:
        tx.write_rows("messages", [message(1)], partition={"mailbox_id": "u1"})
        manifest = tx.commit()

    assert lake.verify() == {"manifests": 1, "files": 1, "blobs": 0}
    entry = manifest["files"][0]
    assert entry["bytes"] == (lake.root / entry["path"]).stat().st_size


def test_exit_without_commit_aborts(lake: Lake) -> None:
    with lake.begin(run_id="run-1", kind="mail", container="u1", flush_rows=1) as tx:
        tx.write_rows("messages", [message(1), message(2)], partition={"mailbox_id": "u1"})
        tx.set_state("mail/u1", "token-1")
        assert parquet_files(lake)

    assert parquet_files(lake) == []
    assert lake.manifests() == []
    assert lake.state("mail/u1") is None


def test_exception_in_block_aborts(lake: Lake) -> None:
    with pytest.raises(RuntimeError), lake.begin(run_id="r", kind="mail", container="u1") as tx:
        tx.write_rows("messages", [message(1)], partition={"mailbox_id": "u1"})
        tx.set_state("mail/u1", "token-1")
        raise RuntimeError("source failed")

    assert lake.manifests() == []
    assert lake.state("mail/u1") is None


def test_write_after_commit_raises(lake: Lake) -> None:
    with lake.begin(run_id="run-1", kind="mail", container="u1") as tx:
        tx.commit()
        with pytest.raises(LakeError, match="already committed"):
            tx.write_rows("messages", [message(1)], partition={"mailbox_id": "u1"})
        with pytest.raises(LakeError, match="already committed"):
            tx.commit()


def test_unknown_column_rejected_at_write(lake: Lake) -> None:
    with lake.begin(run_id="run-1", kind="mail", container="u1") as tx, \
            pytest.raises(ValueError, match="subjekt"):
        tx.write_rows("messages", [{**message(1), "subjekt": "typo"}],
                      partition={"mailbox_id": "u1"})


def test_rejected_write_buffers_nothing(lake: Lake) -> None:
    rows = [message(1), message(2), {**message(3), "subjekt": "typo"}]
    with lake.begin(run_id="run-1", kind="mail", container="u1") as tx:
        with pytest.raises(ValueError):
            tx.write_rows("messages", rows, partition={"mailbox_id": "u1"})
        assert tx.buffered_bytes == 0
        manifest = tx.commit()

    assert manifest["files"] == []


def test_partition_value_must_match_column(lake: Lake) -> None:
    with lake.begin(run_id="run-1", kind="mail", container="u1") as tx, \
            pytest.raises(ValueError, match="partition mailbox_id='u2'"):
        tx.write_rows("messages", [message(1, mailbox="u1")], partition={"mailbox_id": "u2"})


@pytest.mark.parametrize("partition", [{"Bad-Key": "x"}, {"mailbox_id": ""}])
def test_invalid_partition_rejected(lake: Lake, partition: dict[str, str]) -> None:
    with lake.begin(run_id="run-1", kind="mail", container="u1") as tx, \
            pytest.raises(ValueError, match="partition"):
        tx.write_rows("failures", [{"outcome": "failed"}], partition=partition)


def test_partition_value_is_percent_encoded(lake: Lake) -> None:
    with lake.begin(run_id="run-1", kind="mail", container=None) as tx:
        tx.write_rows("failures", [{"outcome": "failed"}], partition={"day": "a/b c"})
        manifest = tx.commit()

    assert manifest["files"][0]["path"] == "tables/failures/day=a%2Fb%20c/run-1-0.parquet"


@pytest.mark.parametrize("run_id", ["", "../x", "a/b", "-lead", "x" * 200])
def test_invalid_run_id_rejected(lake: Lake, run_id: str) -> None:
    with pytest.raises(ValueError, match="run_id"):
        lake.begin(run_id=run_id, kind="mail", container=None)


def test_reused_run_id_never_overwrites(lake: Lake) -> None:
    paths = []
    for _ in range(2):
        with lake.begin(run_id="same", kind="mail", container="u1") as tx:
            tx.write_rows("messages", [message(1)], partition={"mailbox_id": "u1"})
            paths.append(tx.commit()["files"][0]["path"])

    assert paths == ["tables/messages/mailbox_id=u1/same-0.parquet",
                     "tables/messages/mailbox_id=u1/same-1.parquet"]
    assert lake.verify()["files"] == 2


def test_flush_rows_writes_several_row_groups(lake: Lake) -> None:
    with lake.begin(run_id="r", kind="mail", container="u1", flush_rows=100) as tx:
        for start in range(0, 1000, 30):
            rows = [message(i) for i in range(start, min(start + 30, 1000))]
            tx.write_rows("messages", rows, partition={"mailbox_id": "u1"})
        manifest = tx.commit()

    metadata = pq.ParquetFile(lake.root / manifest["files"][0]["path"]).metadata
    assert metadata.num_rows == 1000
    assert metadata.num_row_groups == 10


def test_memory_stays_bounded_for_large_mailbox(tmp_path: Path) -> None:
    flush_bytes = 8 * 1024 * 1024
    lake = Lake.open(tmp_path / "lake", flush_bytes=flush_bytes)
    content = os.urandom(2048)
    peak_buffered = 0
    baseline = pa.total_allocated_bytes()
    peak_arrow = 0

    with lake.begin(run_id="big", kind="mail", container="u1") as tx:
        for start in range(0, 50_000, 500):
            rows = [message(i, content=content) for i in range(start, start + 500)]
            tx.write_rows("messages", rows, partition={"mailbox_id": "u1"})
            peak_buffered = max(peak_buffered, tx.buffered_bytes)
            peak_arrow = max(peak_arrow, pa.total_allocated_bytes() - baseline)
        row_groups = tx.row_groups_written
        manifest = tx.commit()
        final_row_groups = tx.row_groups_written

    total_content = 50_000 * 2048
    assert row_groups >= total_content // flush_bytes
    assert peak_buffered < flush_bytes
    # Arrow allocates about one row group at a time, far less than the ~100 MB written.
    assert peak_arrow < 4 * flush_bytes
    metadata = pq.ParquetFile(lake.root / manifest["files"][0]["path"]).metadata
    assert metadata.num_rows == 50_000
    assert metadata.num_row_groups == final_row_groups


def test_buffers_flush_across_partitions(lake: Lake) -> None:
    content = b"c" * 1000
    with lake.begin(run_id="r", kind="mail", container=None, flush_bytes=50_000) as tx:
        for i in range(200):
            mailbox = f"u{i % 4}"
            tx.write_rows("messages", [message(i, mailbox=mailbox, content=content)],
                          partition={"mailbox_id": mailbox})
            assert tx.buffered_bytes < 50_000
        manifest = tx.commit()

    assert len(manifest["files"]) == 4
    assert sum(entry["rows"] for entry in manifest["files"]) == 200


def _write_then_die(root: str) -> None:
    lake = Lake.open(root)
    tx = lake.begin(run_id="killed", kind="mail", container="u1", flush_rows=10)
    tx.write_rows("messages", [message(i) for i in range(100)], partition={"mailbox_id": "u1"})
    tx.set_state("mail/u1", "token-from-killed-run")
    os.kill(os.getpid(), signal.SIGKILL)


def test_killed_run_leaves_only_orphans(lake: Lake) -> None:
    process = multiprocessing.get_context("spawn").Process(
        target=_write_then_die, args=(str(lake.root),))
    process.start()
    process.join(60)

    assert process.exitcode == -signal.SIGKILL
    assert parquet_files(lake), "the killed run should have flushed row groups to disk"
    assert lake.manifests() == []
    assert lake.committed_files("messages") == []
    assert lake.state("mail/u1") is None


def test_same_state_key_committed_meanwhile_conflicts(lake: Lake) -> None:
    first = lake.begin(run_id="first", kind="mail", container="u1")
    second = lake.begin(run_id="second", kind="mail", container="u1")
    first.write_rows("runs", [{"run_id": "first"}], partition={})
    first.set_state("mail/u1/delta", "from-first")
    second.write_rows("runs", [{"run_id": "second"}], partition={})
    second.set_state("mail/u1/delta", "from-second")
    second.commit()

    with pytest.raises(CommitConflictError, match="second"):
        first.commit()

    assert lake.state("mail/u1/delta") == "from-second"
    assert [manifest["run_id"] for manifest in lake.manifests()] == ["second"]


def test_other_state_keys_committed_meanwhile_allowed(lake: Lake) -> None:
    first = lake.begin(run_id="first", kind="mail", container="u1")
    second = lake.begin(run_id="second", kind="mail", container="u2")
    first.set_state("mail/u1/delta", "a")
    second.set_state("mail/u2/delta", "b")

    second.commit()
    first.commit()

    assert lake.state("mail/u1/delta") == "a"
    assert lake.state("mail/u2/delta") == "b"
